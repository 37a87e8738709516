// trainBpe / bpeEncoder against independent references: a naive BPE trainer written here (recounts every pair at
// every step), @huggingface/tokenizers' Tokenizer and our AutoTokenizer reading the written files, GPT-2's byte
// table (the Qwen2-style fixture's vocabulary and known GPT-2 ids), and merges worked out by hand.
import { test } from "node:test";
import assert from "node:assert/strict";
import { access, mkdtemp, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Tokenizer } from "@huggingface/tokenizers";
import { registerFileSystem } from "../src/io/platform.js";
import { openFileSource, readFileBytes, writeFileBytes } from "../src/io/node-source.js";
import { ConfigError } from "../src/errors.js";
import { AutoTokenizer } from "../src/models/tokenizer.js";
import { loadBrown, splitBrown } from "../src/demo/brown.js";
import { BYTE_CHARS, BYTE_ORDER, bpeEncoder, bpeTokenizerConfig, tokenizerJsonString, trainBpe, type TokenizerJson } from "../src/models/bpe.js";

registerFileSystem({
  readFile: readFileBytes,
  writeFile: writeFileBytes,
  openSource: openFileSource,
  join,
  exists: (p) => access(p).then(() => true, () => false),
});

const { train, heldOut } = splitBrown(loadBrown());
const subset = train.filter((_, i) => i % 12 === 0).map((d) => d.text); // 40 documents, ~0.5 M characters
const tok = trainBpe(subset, { vocabSize: 1024 });
const enc = bpeEncoder(tok);
const hf = new Tokenizer(tok, { clean_up_tokenization_spaces: false });
const hfIds = (text: string): number[] => hf.encode(text, { add_special_tokens: true }).ids;

/** Texts that stress the pre-tokenizer and the byte mapping. */
const ODD = [
  "",
  " ",
  "a",
  "   leading and trailing   ",
  "two  spaces,   three\tand a tab\n\nand blank lines\n \n",
  "\r\nWindows\r\nlines\r\n",
  "héllo wörld, naïve café, Ærøskøbing",
  "e\u0301 (combining acute), ﬁ ligature, ǅ titlecase",
  "😀 👍🏽 🇫🇷 emoji and 👨‍👩‍👧 a family",
  "日本語のテキスト and 中文 and 한국어",
  "digits 0123456789 1,234.56 3.14159 1/2 ½ Ⅻ ٣",
  "1".repeat(120) + " long number, " + "x".repeat(90) + " long word, " + "!?".repeat(40),
  "it's we're they've I'm you'll he'd don't IT'S",
  "\u00a0no-break\u2028line sep\ufeffbom \u200bzwsp",
  "<|endoftext|> inside <|endoftext|><|endoftext|>text <|endof",
  "tabs\t\t\tand\u000bvertical\u000cform feed",
];

// ---- a naive reference trainer ---------------------------------------------------------------------------------

/** GPT-2's bytes_to_unicode, written out again. */
function gpt2ByteChars(): { chars: string[]; order: number[] } {
  const bs: number[] = [];
  for (let b = "!".charCodeAt(0); b <= "~".charCodeAt(0); b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const chars: string[] = [];
  bs.forEach((b, i) => (chars[b] = String.fromCharCode(cs[i])));
  return { chars, order: bs };
}

/** BPE training the slow way: recount all pairs after every merge; ties to the smallest (left, right) strings. */
function naiveMerges(texts: string[], vocabSize: number, minFrequency: number): string[] {
  const { chars } = gpt2ByteChars();
  const counts = new Map<string, number>();
  for (const t of texts) for (const w of t.match(/'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu) ?? []) counts.set(w, (counts.get(w) ?? 0) + 1);
  const words = [...counts].map(([w, c]) => ({ s: Array.from(new TextEncoder().encode(w), (b) => chars[b]), c }));
  const vocab = new Set(chars);
  const merges: string[] = [];
  while (vocab.size < vocabSize) {
    const pairs = new Map<string, number>();
    for (const { s, c } of words) for (let i = 0; i + 1 < s.length; i++) pairs.set(s[i] + " " + s[i + 1], (pairs.get(s[i] + " " + s[i + 1]) ?? 0) + c);
    let best: [string, string] | null = null;
    let bestCount = 0;
    for (const [p, c] of pairs) {
      const [l, r] = p.split(" ");
      if (c > bestCount || (c === bestCount && best !== null && (l < best[0] || (l === best[0] && r < best[1])))) {
        best = [l, r];
        bestCount = c;
      }
    }
    if (best === null || bestCount < minFrequency) break;
    const [l, r] = best;
    merges.push(`${l} ${r}`);
    vocab.add(l + r);
    for (const w of words) {
      const out: string[] = [];
      for (let i = 0; i < w.s.length; ) {
        if (i + 1 < w.s.length && w.s[i] === l && w.s[i + 1] === r) {
          out.push(l + r);
          i += 2;
        } else out.push(w.s[i++]);
      }
      w.s = out;
    }
  }
  return merges;
}

// ---- tests -----------------------------------------------------------------------------------------------------

test("the byte alphabet is GPT-2's bytes_to_unicode, in GPT-2's id order", () => {
  const ref = gpt2ByteChars();
  assert.deepEqual([...BYTE_CHARS], ref.chars);
  assert.deepEqual([...BYTE_ORDER], ref.order);
  // known GPT-2 vocab.json ids: "!" 0, "Ā" (byte 0) 188, "ĉ" (tab) 197, "Ċ" (\n) 198, "Ġ" (space) 220, "ġ" (DEL) 221, "Ń" (soft hyphen) 255
  const v = tok.model.vocab;
  assert.deepEqual([v["!"], v["Ā"], v["ĉ"], v["Ċ"], v["Ġ"], v["ġ"], v["Ń"]], [0, 188, 197, 198, 220, 221, 255]);
  assert.deepEqual([BYTE_CHARS[0], BYTE_CHARS[9], BYTE_CHARS[10], BYTE_CHARS[32], BYTE_CHARS[127], BYTE_CHARS[173]], ["Ā", "ĉ", "Ċ", "Ġ", "ġ", "Ń"]);
  // the same 256 tokens and ids as the hand-made Qwen2-style fixture
  const fixture = JSON.parse(readFileSync(join(dirname(fileURLToPath(import.meta.url)), "fixtures", "tokenizer", "bytelevel-bpe", "tokenizer.json"), "utf8"));
  for (let id = 0; id < 256; id++) {
    const t = BYTE_CHARS[BYTE_ORDER[id]];
    assert.equal(tok.model.vocab[t], id);
    assert.equal(fixture.model.vocab[t], id, t);
  }
});

test("hand-checked merges: counts over all positions, left-to-right merging, ties by token strings", () => {
  // "aaab", "Ġaab": (a,a) 2+1 = 3 -> "a a". Then [aa,a,b] and [Ġ,aa,b]: (aa,a) (a,b) (Ġ,aa) (aa,b) all 1; the
  // smallest left string is "a" ("a" < "aa" < "Ġ"): "a b". Then [aa,ab], [Ġ,aa,b]: "aa ab" < "aa b" < "Ġ aa".
  const t = trainBpe(["aaab aab"], { vocabSize: 260, specialTokens: [], minFrequency: 1 });
  assert.deepEqual(t.model.merges, ["a a", "a b", "aa ab", "aa b"]);
  assert.deepEqual(
    Object.entries(t.model.vocab).filter(([, id]) => id >= 256),
    [["aa", 256], ["ab", 257], ["aaab", 258], ["aab", 259]],
  );
  assert.deepEqual(bpeEncoder(t).encode("aaab aab"), [258, tok.model.vocab["Ġ"], 259]);
  // "aaaa" has (a,a) 3 times; one merge makes [aa, aa], the next (aa,aa) -> aaaa
  assert.deepEqual(trainBpe(["aaaa"], { vocabSize: 258, specialTokens: [], minFrequency: 1 }).model.merges, ["a a", "aa aa"]);
  // default minFrequency 2: only (a,a), seen 3 times, is merged; the special token follows the smaller vocabulary
  const t2 = trainBpe(["aaab aab"], { vocabSize: 300 });
  assert.deepEqual(t2.model.merges, ["a a"]);
  assert.deepEqual(t2.added_tokens, [{ id: 257, content: "<|endoftext|>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }]);
  assert.equal(t2.model.vocab["<|endoftext|>"], 257);
});

test("trainBpe gives the merges of a naive BPE trainer (incremental counts are exact)", () => {
  const texts = heldOut.slice(0, 3).map((d) => d.text); // ~35 k characters
  const t = trainBpe(texts, { vocabSize: 256 + 300 + 1 });
  assert.deepEqual(t.model.merges, naiveMerges(texts, 256 + 300, 2));
  const few = texts.map((x) => x.slice(0, 4000));
  const mf = trainBpe(few, { vocabSize: 2000, specialTokens: [], minFrequency: 3 });
  assert.deepEqual(mf.model.merges, naiveMerges(few, 2000, 3));
  assert.ok(mf.model.merges.length < 2000 - 256); // stopped by minFrequency
});

test("tokenizer.json layout: GPT-2 pre-tokenizer and decoder, bytes, merges in order, special tokens last", () => {
  assert.equal(tok.version, "1.0");
  assert.equal(tok.normalizer, null);
  assert.deepEqual(tok.pre_tokenizer, { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true });
  assert.equal(tok.decoder.type, "ByteLevel");
  assert.equal(tok.model.type, "BPE");
  assert.equal(tok.model.merges.length, 1024 - 1 - 256);
  const ids = Object.values(tok.model.vocab).sort((a, b) => a - b);
  assert.deepEqual(ids, Array.from({ length: 1024 }, (_, i) => i));
  const byId = new Map(Object.entries(tok.model.vocab).map(([t, id]) => [id, t]));
  tok.model.merges.forEach((m, i) => {
    const [l, r] = (m as string).split(" ");
    assert.equal(tok.model.vocab[l + r], 256 + i, m as string); // no two merges spell the same token here
    assert.ok(tok.model.vocab[l] < 256 + i && tok.model.vocab[r] < 256 + i);
  });
  assert.equal(byId.get(1023), "<|endoftext|>");
  assert.deepEqual(tok.added_tokens, [{ id: 1023, content: "<|endoftext|>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }]);
  assert.deepEqual(tok.model.merges.slice(0, 4), ["Ġ t", "h e", "Ġ a", "i n"]); // " the", " a", "in" lead English
  // the file text: the same object, vocab in id order
  const text = tokenizerJsonString(tok);
  const parsed = JSON.parse(text) as TokenizerJson;
  assert.deepEqual({ ...parsed, model: { ...parsed.model, vocab: null } }, { ...tok, model: { ...tok.model, vocab: null } });
  assert.deepEqual(new Map(Object.entries(parsed.model.vocab)), new Map(Object.entries(tok.model.vocab)));
  const vocabText = text.slice(text.indexOf('"vocab": {'), text.indexOf('"merges": ['));
  const order = vocabText.split("\n").flatMap((l) => /^ {6}".*": (\d+),?$/.exec(l)?.[1] ?? []).map(Number);
  assert.deepEqual(order, ids);
  assert.ok(text.startsWith('{\n  "version": "1.0",') && text.includes('\n      "!": 0,\n      "\\"": 1,'));
  // several special tokens keep their order
  const two = trainBpe(subset.slice(0, 3), { vocabSize: 400, specialTokens: ["<|endoftext|>", "<pad>"] });
  assert.deepEqual(two.added_tokens.map((t) => [t.id, t.content]), [[398, "<|endoftext|>"], [399, "<pad>"]]);
});

test("deterministic: the same texts give the same file, in any order", () => {
  const again = trainBpe(subset, { vocabSize: 1024 });
  assert.equal(tokenizerJsonString(again), tokenizerJsonString(tok));
  const shuffled = subset.slice().reverse();
  shuffled.push(shuffled.shift()!);
  assert.equal(tokenizerJsonString(trainBpe(shuffled, { vocabSize: 1024 })), tokenizerJsonString(tok));
});

test("bpeEncoder gives @huggingface/tokenizers' ids: held-out corpus text, odd strings, special tokens", () => {
  const corpus = heldOut.slice(0, 4).map((d) => d.text); // ~8,000 words the tokenizer was not trained on
  assert.ok(corpus.join(" ").split(/\s+/).length > 7000);
  for (const text of [...corpus, ...ODD]) assert.deepEqual(enc.encode(text), hfIds(text), JSON.stringify(text.slice(0, 80)));
  // word by word too (every pre-token through the cache and through a fresh encoder)
  const fresh = bpeEncoder(tok);
  for (const w of corpus[0].split(" ").slice(0, 2000)) assert.deepEqual(fresh.encode(" " + w), hfIds(" " + w), w);
  // special tokens written in a text are split out
  const eot = tok.model.vocab["<|endoftext|>"];
  assert.deepEqual(enc.encode("<|endoftext|>"), [eot]);
  const ids = enc.encode("a<|endoftext|> b");
  assert.deepEqual(ids, [tok.model.vocab["a"], eot, tok.model.vocab["Ġb"]]);
  // decode agrees with the library's decode (no clean-up), also across special tokens and cut UTF-8
  const emoji = enc.encode("😀!");
  for (const seq of [enc.encode(corpus[1]), [...emoji.slice(0, 2), eot, ...emoji.slice(2)], [eot, eot], enc.encode(ODD[8])]) {
    assert.equal(enc.decode(seq), hf.decode(seq, { clean_up_tokenization_spaces: false }));
  }
  assert.equal(enc.decode([...emoji.slice(0, 2), eot]), "\uFFFD<|endoftext|>");
  assert.equal(enc.decode([5000, -1, 0.5, tok.model.vocab["a"]]), "a"); // ids with no token are dropped
  assert.equal(enc.vocabSize, 1024);
});

test("decode(encode(x)) === x for corpus text and odd strings", () => {
  for (const text of [...heldOut.map((d) => d.text), ...ODD]) assert.equal(enc.decode(enc.encode(text)), text, JSON.stringify(text.slice(0, 60)));
  assert.equal(enc.decode(enc.encode("lone \ud800 surrogate")), "lone \uFFFD surrogate"); // as UTF-8 encoding does
});

test("AutoTokenizer reads the written files and encodes like bpeEncoder", async () => {
  const dir = await mkdtemp(join(tmpdir(), "shira-bpe-"));
  try {
    await writeFile(join(dir, "tokenizer.json"), tokenizerJsonString(tok));
    await writeFile(join(dir, "tokenizer_config.json"), JSON.stringify(bpeTokenizerConfig(tok, { modelMaxLength: 512 }), null, 2));
    const auto = await AutoTokenizer.fromPretrained(dir);
    assert.equal(auto.vocabSize, 1024);
    assert.deepEqual([auto.eosTokenId, auto.bosTokenId], [1023, 1023]);
    assert.deepEqual(auto.specialTokens.all, ["<|endoftext|>"]);
    for (const text of [heldOut[5].text, ...ODD]) {
      const ids = enc.encode(text);
      assert.deepEqual(auto.encode(text), ids, JSON.stringify(text.slice(0, 60))); // nothing added around the text
      if (ids.length > 0) assert.equal(auto.decode(ids), enc.decode(ids));
    }
    assert.equal(auto.decode(enc.encode("it 's a test <|endoftext|>"), { skipSpecialTokens: true }), "it 's a test ");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("options: onProgress, argument errors, files bpeEncoder does not read", () => {
  const calls: [number, number][] = [];
  trainBpe(subset.slice(0, 2), { vocabSize: 400, onProgress: (d, t) => calls.push([d, t]) });
  assert.deepEqual(calls, [[64, 143], [128, 143], [143, 143]]);
  const bad = (o: Parameters<typeof trainBpe>[1], re: RegExp) => assert.throws(() => trainBpe(["x"], o), (e: unknown) => e instanceof ConfigError && re.test(e.message));
  bad({ vocabSize: 256 }, /vocabSize must be an integer in \[257, 2097152\].*got 256/);
  assert.deepEqual(trainBpe(["xx"], { vocabSize: 256, specialTokens: [] }).model.merges, []); // bytes only
  bad({ vocabSize: 300.5 }, /vocabSize/);
  bad({ vocabSize: 300, minFrequency: 0 }, /minFrequency must be a positive integer/);
  bad({ vocabSize: 300, specialTokens: ["<a>", "<a>"] }, /duplicates/);
  bad({ vocabSize: 300, specialTokens: [""] }, /non-empty strings/);
  bad({ vocabSize: 300, specialTokens: ["a"] }, /special token "a" is already in the vocabulary/);
  const variant = (patch: (t: TokenizerJson) => void, re: RegExp) => {
    const t = JSON.parse(tokenizerJsonString(tok)) as TokenizerJson;
    patch(t);
    assert.throws(() => bpeEncoder(t), (e: unknown) => e instanceof ConfigError && re.test(e.message));
  };
  variant((t) => (t.pre_tokenizer.add_prefix_space = true), /add_prefix_space/);
  variant((t) => ((t as { normalizer: unknown }).normalizer = { type: "NFC" }), /normalizer/);
  variant((t) => (t.model.byte_fallback = true), /byte_fallback/);
  variant((t) => delete t.model.vocab["Ġ"], /byte symbol "Ġ" \(byte 32\)/);
  // the newer merges format (pairs) reads the same
  const pairs = JSON.parse(tokenizerJsonString(tok)) as TokenizerJson;
  pairs.model.merges = pairs.model.merges.map((m) => (m as string).split(" ") as [string, string]);
  assert.deepEqual(bpeEncoder(pairs).encode(heldOut[0].text.slice(0, 2000)), enc.encode(heldOut[0].text.slice(0, 2000)));
});
