// AutoTokenizer / PreTrainedTokenizer against the hand-made fixtures in tests/fixtures/tokenizer (see build.mjs there
// for the vocabularies and merges; every id below is worked out by hand from them).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { access, readFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { AddressInfo } from "node:net";
import { build } from "esbuild";
import { registerFileSystem } from "../src/io/platform.js";
import { openFileSource, readFileBytes, writeFileBytes } from "../src/io/node-source.js";
import { ConfigError, ShiraError } from "../src/errors.js";
import { AutoTokenizer, PreTrainedTokenizer, type ChatMessage } from "../src/models/tokenizer.js";

// directory sources need the Node file system (what src/node.ts registers)
registerFileSystem({
  readFile: readFileBytes,
  writeFile: writeFileBytes,
  openSource: openFileSource,
  join,
  exists: (p) => access(p).then(() => true, () => false),
});

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "fixtures", "tokenizer");
const BL = join(FIXTURES, "bytelevel-bpe"); // Qwen2-style byte-level BPE with ChatML
const SP = join(FIXTURES, "sentencepiece-bpe"); // Llama-style SentencePiece BPE with byte fallback
const bytes = (dir: string, name: string): Uint8Array => new Uint8Array(readFileSync(join(dir, name)));
const json = (dir: string, name: string): Record<string, unknown> => JSON.parse(readFileSync(join(dir, name), "utf8"));

const qwen = await AutoTokenizer.fromPretrained(BL);
const llama = await AutoTokenizer.fromPretrained(SP);

// byte-level ids: a byte's index in GPT-2's bytes_to_unicode order
const B = { T: 51, a: 64, c: 66, e: 68, h: 71, i: 72, r: 81, s: 82, u: 84, "!": 0, "\n": 198, " ": 220 };
const Q = { "Ġt": 256, he: 257, "Ġthe": 258, the: 259, at: 260, "Ġc": 261, "Ġcat": 262, endoftext: 263, im_start: 264, im_end: 265 };
// sentencepiece ids
const L = { unk: 0, bos: 1, eos: 2, byte: (b: number) => 3 + b, "▁": 259, t: 260, h: 261, e: 262, c: 263, a: 264, "▁t": 265, he: 266, "▁the": 267, at: 268, "▁c": 269, "▁cat": 270 };

const EMOJI_BL = [172, 253, 246, 222]; // 😀 = F0 9F 98 80 as byte-level tokens
const EMOJI_SP = [0xf0, 0x9f, 0x98, 0x80].map(L.byte); // ... and as <0xNN> tokens

function assertThrowsCode(fn: () => unknown, cls: typeof ShiraError, code: string, re?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${String(e)}`);
    assert.equal((e as ShiraError).code, code, (e as Error).message);
    if (re) assert.match((e as Error).message, re);
    return true;
  });
}

async function assertRejectsCode(p: Promise<unknown>, cls: typeof ShiraError, code: string, re?: RegExp): Promise<ShiraError> {
  let caught: ShiraError | undefined;
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${String(e)}`);
    assert.equal((e as ShiraError).code, code, (e as Error).message);
    if (re) assert.match((e as Error).message, re);
    caught = e as ShiraError;
    return true;
  });
  return caught!;
}

// ------------------------------------------------------------------------------------------------------------
// byte-level BPE (Qwen2)

test("byte-level BPE: ids follow the merge ranks", () => {
  // "the" = t,h,e -> t he (rank 1) -> the (rank 3); " cat" = Ġ,c,a,t -> Ġ,c,at (rank 4) -> Ġc,at (5) -> Ġcat (6)
  assert.deepEqual(qwen.encode("the cat"), [Q.the, Q["Ġcat"]]);
  // "The": no "T h" merge, so T, he
  assert.deepEqual(qwen.encode("The cat"), [B.T, Q.he, Q["Ġcat"]]);
  assert.deepEqual(qwen.encode(" the"), [Q["Ġthe"]]);
  // Qwen2 adds no special tokens around a text
  assert.deepEqual(qwen.encode("the cat", { addSpecialTokens: false }), [Q.the, Q["Ġcat"]]);
  // é = C3 A9, 😀 = F0 9F 98 80, 日 = E6 97 A5, 本 = E6 9C AC, each byte one token
  assert.deepEqual(qwen.encode("hé 😀 日本"), [B.h, 127, 102, B[" "], ...EMOJI_BL, B[" "], 162, 245, 98, 162, 250, 105]);
  assert.deepEqual(qwen.encode(""), []);
});

test("byte-level BPE: special tokens in text are matched; skipSpecialTokens drops them", () => {
  const ids = qwen.encode("<|im_start|>user\nthe cat<|im_end|>");
  assert.deepEqual(ids, [Q.im_start, B.u, B.s, B.e, B.r, B["\n"], Q.the, Q["Ġcat"], Q.im_end]);
  assert.equal(qwen.decode(ids), "<|im_start|>user\nthe cat<|im_end|>");
  assert.equal(qwen.decode(ids, { skipSpecialTokens: true }), "user\nthe cat");
  assert.equal(qwen.decode([]), "");
  assert.equal(qwen.decode([Q.the, 99999, Q["Ġcat"]]), "the cat"); // ids with no token are dropped, as in Rust
});

test("byte-level BPE: decode(encode(x)) == x for ASCII, accents, emoji, CJK, whitespace and control bytes", () => {
  for (const s of ["the cat", "The cat sat on the mat.", "héllo wörld ñ", "😀👍🏽 🇫🇷", "日本語のテキスト", "a\tb\n\n  c  ", "\u0000\u007f"]) {
    assert.equal(qwen.decode(qwen.encode(s)), s, JSON.stringify(s));
  }
});

test("byte-level BPE: vocabulary, special tokens and getters", () => {
  assert.equal(qwen.vocabSize, 266);
  assert.equal(qwen.bosTokenId, null);
  assert.equal(qwen.eosTokenId, Q.im_end);
  assert.equal(qwen.padTokenId, Q.endoftext);
  assert.equal(qwen.unkTokenId, null);
  assert.deepEqual(qwen.specialTokens, { bos: null, eos: "<|im_end|>", pad: "<|endoftext|>", unk: null, all: ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] });
  assert.equal(qwen.tokenToId("Ġcat"), 262);
  assert.equal(qwen.tokenToId("<|im_start|>"), 264);
  assert.equal(qwen.tokenToId("nope"), null);
  assert.equal(qwen.idToToken(220), "Ġ");
  assert.equal(qwen.idToToken(265), "<|im_end|>");
  assert.equal(qwen.idToToken(266), null);
});

test("batchEncode pads left by default with padTokenId and masks the padding", () => {
  const r = qwen.batchEncode(["the cat", "The cat", "the"]);
  assert.deepEqual(r.inputIds, [
    [Q.endoftext, Q.the, Q["Ġcat"]],
    [B.T, Q.he, Q["Ġcat"]],
    [Q.endoftext, Q.endoftext, Q.the],
  ]);
  assert.deepEqual(r.attentionMask, [
    [0, 1, 1],
    [1, 1, 1],
    [0, 0, 1],
  ]);
  const right = qwen.batchEncode(["the cat", "the"], { padding: "longest", paddingSide: "right" });
  assert.deepEqual(right.inputIds, [
    [Q.the, Q["Ġcat"]],
    [Q.the, Q.endoftext],
  ]);
  assert.deepEqual(right.attentionMask, [
    [1, 1],
    [1, 0],
  ]);
  assert.deepEqual(qwen.batchEncode([]), { inputIds: [], attentionMask: [] });
  assertThrowsCode(() => qwen.batchEncode(["a"], { paddingSide: "middle" as "left" }), ConfigError, "CONFIG_INVALID", /paddingSide/);
});

// ------------------------------------------------------------------------------------------------------------
// SentencePiece BPE with byte fallback (Llama)

test("sentencepiece BPE: Metaspace + merges, exactly one <s> from add_bos_token", () => {
  // "▁the▁cat": ▁t (0), he (1), ▁the (2), at (3), ▁c (4), ▁cat (5)
  assert.deepEqual(llama.encode("the cat"), [L.bos, L["▁the"], L["▁cat"]]);
  assert.deepEqual(llama.encode("the cat", { addSpecialTokens: false }), [L["▁the"], L["▁cat"]]);
  // T is not in the vocabulary: <0x54>
  assert.deepEqual(llama.encode("The cat"), [L.bos, L["▁"], L.byte(0x54), L.he, L["▁cat"]]);
  // byte fallback for é (C3 A9) and 😀
  assert.deepEqual(llama.encode("é 😀", { addSpecialTokens: false }), [L["▁"], L.byte(0xc3), L.byte(0xa9), L["▁"], ...EMOJI_SP]);
  // <s> written in the text plus the added one: the post-processor is not applied on top of add_bos_token
  assert.deepEqual(llama.encode("<s>the"), [L.bos, L.bos, L.t, L.he]);
  assert.equal(llama.vocabSize, 271);
  assert.deepEqual([llama.bosTokenId, llama.eosTokenId, llama.padTokenId, llama.unkTokenId], [1, 2, null, 0]);
  assert.equal(llama.idToToken(L.byte(0x0a)), "<0x0A>");
});

test("sentencepiece BPE: decode strips the leading Metaspace space, keeps or skips <s> </s>; round trips", () => {
  assert.equal(llama.decode([L.bos, L["▁the"], L["▁cat"], L.eos]), "<s> the cat</s>");
  assert.equal(llama.decode([L.bos, L["▁the"], L["▁cat"], L.eos], { skipSpecialTokens: true }), "the cat");
  for (const s of ["the cat", "The cat sat on the mat.", "héllo wörld ñ", "😀👍🏽 🇫🇷", "日本語のテキスト", "a\tb\nc"]) {
    assert.equal(llama.decode(llama.encode(s), { skipSpecialTokens: true }), s, JSON.stringify(s));
  }
});

test("add_bos_token / add_eos_token in tokenizer_config.json replace the post-processor's choice", async () => {
  const tokenizerJson = json(SP, "tokenizer.json");
  const config = json(SP, "tokenizer_config.json");
  const eosOnly = new PreTrainedTokenizer(tokenizerJson, { ...config, add_bos_token: false, add_eos_token: true });
  assert.deepEqual(eosOnly.encode("the cat"), [L["▁the"], L["▁cat"], L.eos]);
  assert.deepEqual(eosOnly.encode("the cat", { addSpecialTokens: false }), [L["▁the"], L["▁cat"]]);
  // no flags in the config: tokenizer.json's TemplateProcessing adds <s>
  const { add_bos_token: _b, add_eos_token: _e, ...noFlags } = config;
  const fromPostProcessor = new PreTrainedTokenizer(tokenizerJson, noFlags);
  assert.deepEqual(fromPostProcessor.encode("the cat"), [L.bos, L["▁the"], L["▁cat"]]);
});

test("batchEncode without a pad token pads with eos", () => {
  const r = llama.batchEncode(["the cat", "The cat"]);
  assert.deepEqual(r.inputIds, [
    [L.eos, L.eos, L.bos, L["▁the"], L["▁cat"]],
    [L.bos, L["▁"], L.byte(0x54), L.he, L["▁cat"]],
  ]);
  assert.deepEqual(r.attentionMask, [
    [0, 0, 1, 1, 1],
    [1, 1, 1, 1, 1],
  ]);
});

// ------------------------------------------------------------------------------------------------------------
// chat templates

const conversation: ChatMessage[] = [
  { role: "system", content: "You are terse." },
  { role: "user", content: "the cat?" },
  { role: "assistant", content: "Sat." },
];

test("ChatML template: exact text with and without the generation prompt, and its ids", () => {
  const expected = "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nthe cat?<|im_end|>\n<|im_start|>assistant\nSat.<|im_end|>\n";
  assert.equal(qwen.applyChatTemplate(conversation), expected);
  assert.equal(qwen.applyChatTemplate(conversation, { addGenerationPrompt: false }), expected);
  assert.equal(qwen.applyChatTemplate(conversation, { addGenerationPrompt: true }), expected + "<|im_start|>assistant\n");
  // no system message: the template's default one
  assert.equal(
    qwen.applyChatTemplate([{ role: "user", content: "the cat?" }], { addGenerationPrompt: true }),
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nthe cat?<|im_end|>\n<|im_start|>assistant\n",
  );
  const ids = qwen.applyChatTemplate([{ role: "user", content: "the cat" }], { tokenize: true });
  assert.deepEqual(ids.slice(0, 2), [Q.im_start, B.s]);
  assert.deepEqual(ids.slice(-10), [Q.im_start, B.u, B.s, B.e, B.r, B["\n"], Q.the, Q["Ġcat"], Q.im_end, B["\n"]]);
  assert.equal(qwen.decode(ids), qwen.applyChatTemplate([{ role: "user", content: "the cat" }]));
});

test("ChatML template: tools are rendered with tojson as Python's json.dumps", () => {
  const tools = [
    {
      type: "function",
      function: { name: "get_weather", description: "Weather in a city", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } },
    },
  ];
  assert.equal(
    qwen.applyChatTemplate([{ role: "user", content: "the cat?" }], { tools, addGenerationPrompt: true }),
    "<|im_start|>system\nYou are a helpful assistant.\n\n# Tools\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n" +
      '{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}' +
      "\n</tools><|im_end|>\n<|im_start|>user\nthe cat?<|im_end|>\n<|im_start|>assistant\n",
  );
});

test("Llama-2 template: exact text (it has no generation prompt), one <s> when tokenized, raise_exception", () => {
  const expected = "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nthe cat? [/INST] Sat. </s>";
  assert.equal(llama.applyChatTemplate(conversation), expected);
  assert.equal(llama.applyChatTemplate(conversation, { addGenerationPrompt: true }), expected);
  const ids = llama.applyChatTemplate(conversation, { tokenize: true });
  assert.equal(ids[0], L.bos);
  assert.equal(ids.filter((id) => id === L.bos).length, 1);
  assert.equal(ids.at(-1), L.eos);
  assert.equal(llama.decode(ids), expected);
  assertThrowsCode(
    () => llama.applyChatTemplate([{ role: "user", content: "a" }, { role: "user", content: "b" }]),
    ConfigError,
    "CONFIG_INVALID",
    /chat template failed: Conversation roles must alternate user\/assistant/,
  );
});

test("chat templates: named list, a template string as chatTemplate, chat_template.jinja, errors", async () => {
  const tokenizerJson = bytes(BL, "tokenizer.json");
  const enc = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));
  const listed = await AutoTokenizer.fromPretrained({
    "tokenizer.json": tokenizerJson,
    "tokenizer_config.json": enc({
      eos_token: "<|im_end|>",
      chat_template: [
        { name: "default", template: "D{{ messages | length }}{{ eos_token }}" },
        { name: "tool_use", template: "T{{ tools | length }}" },
      ],
    }),
  });
  assert.equal(listed.applyChatTemplate(conversation), "D3<|im_end|>");
  assert.equal(listed.applyChatTemplate(conversation, { chatTemplate: "tool_use", tools: [{}, {}] }), "T2");
  assert.equal(listed.applyChatTemplate(conversation, { chatTemplate: "{{ messages[1].content }}|{{ greeting }}", templateArgs: { greeting: "hi" } }), "the cat?|hi");
  // chat_template.jinja replaces the config's default
  const fromFile = await AutoTokenizer.fromPretrained({
    "tokenizer.json": tokenizerJson,
    "tokenizer_config.json": bytes(BL, "tokenizer_config.json"),
    "chat_template.jinja": new TextEncoder().encode("{% for m in messages %}[{{ m.role }}]{% endfor %}"),
  });
  assert.equal(fromFile.applyChatTemplate(conversation), "[system][user][assistant]");
  // no template at all
  const bare = await AutoTokenizer.fromPretrained({ "tokenizer.json": tokenizerJson });
  assert.equal(bare.chatTemplate, null);
  assertThrowsCode(() => bare.applyChatTemplate(conversation), ConfigError, "CONFIG_INVALID", /has no chat template/);
  // only named templates, none called "default"
  const onlyNamed = new PreTrainedTokenizer(json(BL, "tokenizer.json"), { chat_template: [{ name: "rag", template: "R" }] });
  assertThrowsCode(() => onlyNamed.applyChatTemplate(conversation), ConfigError, "CONFIG_INVALID", /no default chat template.*"rag"/);
  assert.equal(onlyNamed.applyChatTemplate(conversation, { chatTemplate: "rag" }), "R");
  // a template that does not parse
  assertThrowsCode(() => bare.applyChatTemplate(conversation, { chatTemplate: "{% if %}" }), ConfigError, "CONFIG_INVALID", /chat template/);
});

// ------------------------------------------------------------------------------------------------------------
// streaming detokenizer

function streamPieces(tok: PreTrainedTokenizer, ids: number[], skipSpecialTokens = false): string[] {
  const s = tok.createDecodeStream({ skipSpecialTokens });
  return ids.map((id) => s.push(id)).concat([s.flush()]);
}

test("decode stream: a byte-level emoji split over 4 tokens comes out once, whole, with no U+FFFD", () => {
  const ids = qwen.encode("hi 😀!");
  assert.deepEqual(ids, [B.h, B.i, B[" "], ...EMOJI_BL, B["!"]]);
  assert.deepEqual(streamPieces(qwen, ids), ["h", "i", " ", "", "", "", "😀", "!", ""]);
});

test("decode stream: <0xNN> byte fallback and Metaspace spaces, special tokens kept or skipped", () => {
  const ids = llama.encode("the 😀 cat");
  assert.deepEqual(ids, [L.bos, L["▁the"], L["▁"], ...EMOJI_SP, L["▁cat"]]);
  assert.deepEqual(streamPieces(llama, [...ids, L.eos], true), ["", "the", " ", "", "", "", "😀", " cat", "", ""]);
  assert.deepEqual(streamPieces(llama, [...ids, L.eos], false), ["<s>", " the", " ", "", "", "", "😀", " cat", "</s>", ""]);
});

test("decode stream: pieces concatenate to decode() and never contain U+FFFD", () => {
  const texts = ["héllo wörld 😀👍🏽 日本語 the cat", "🇫🇷🇫🇷 à la carte", "日本\n語"];
  for (const tok of [qwen, llama]) {
    for (const text of texts) {
      for (const skip of [false, true]) {
        const ids = tok.encode(text);
        const pieces = streamPieces(tok, ids, skip);
        assert.equal(pieces.join(""), tok.decode(ids, { skipSpecialTokens: skip }), JSON.stringify(text));
        for (const p of pieces) assert.ok(!p.includes("\uFFFD"), `U+FFFD emitted for ${JSON.stringify(text)}: ${JSON.stringify(pieces)}`);
      }
    }
  }
  // a sequence that never completes is held, then flushed as U+FFFD
  const s = qwen.createDecodeStream();
  assert.equal(s.push(EMOJI_BL[0]), "");
  assert.equal(s.push(EMOJI_BL[1]), "");
  assert.equal(s.flush(), "\uFFFD");
});

// ------------------------------------------------------------------------------------------------------------
// sources and load errors

test("fromPretrained reads a file map (Uint8Array, ArrayBuffer, Blob), with special_tokens_map.json as fallback", async () => {
  const tok = await AutoTokenizer.fromPretrained({
    "tokenizer.json": bytes(SP, "tokenizer.json"),
    "special_tokens_map.json": new Blob([readFileSync(join(SP, "special_tokens_map.json"))]),
  });
  // no tokenizer_config.json: bos/eos/unk from special_tokens_map.json, <s> from the post-processor
  assert.deepEqual([tok.bosTokenId, tok.eosTokenId, tok.unkTokenId, tok.padTokenId], [1, 2, 0, null]);
  assert.deepEqual(tok.encode("the cat"), [L.bos, L["▁the"], L["▁cat"]]);
  const buf = bytes(BL, "tokenizer.json");
  const tok2 = await AutoTokenizer.fromPretrained({ "tokenizer.json": buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer });
  assert.deepEqual(tok2.encode("the cat"), [Q.the, Q["Ġcat"]]);
  assert.equal(tok2.eosTokenId, null);
});

test("fromPretrained reads a URL (local HTTP server)", async () => {
  const server: Server = createServer(async (req, res) => {
    try {
      const body = await readFile(join(FIXTURES, decodeURIComponent(new URL(req.url!, "http://x").pathname)));
      res.writeHead(200, { "content-length": body.length }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const tok = await AutoTokenizer.fromPretrained(`${base}/bytelevel-bpe`);
    assert.deepEqual(tok.encode("the cat"), [Q.the, Q["Ġcat"]]);
    assert.equal(tok.padTokenId, Q.endoftext);
    assert.equal(tok.applyChatTemplate(conversation), qwen.applyChatTemplate(conversation));
    const viaUrl = await AutoTokenizer.fromPretrained(new URL(`${base}/sentencepiece-bpe/`));
    assert.deepEqual(viaUrl.encode("the cat"), [L.bos, L["▁the"], L["▁cat"]]);
    const e = await assertRejectsCode(AutoTokenizer.fromPretrained(`${base}/nothing-here`), ShiraError, "IO", /no file "tokenizer\.json"/);
    assert.equal(e.details.file, "tokenizer.json");
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
});

test("load errors: missing tokenizer.json (directory, file map), malformed JSON, aborted", async () => {
  const dirErr = await assertRejectsCode(AutoTokenizer.fromPretrained(FIXTURES), ShiraError, "IO", /no file "tokenizer\.json"/);
  assert.equal(dirErr.details.file, "tokenizer.json");
  assert.ok((dirErr.message as string).includes(FIXTURES), dirErr.message);
  await assertRejectsCode(AutoTokenizer.fromPretrained({ "tokenizer_config.json": bytes(BL, "tokenizer_config.json") }), ShiraError, "IO", /files: .*tokenizer\.json/);
  await assertRejectsCode(
    AutoTokenizer.fromPretrained({ "tokenizer.json": bytes(BL, "tokenizer.json"), "tokenizer_config.json": new TextEncoder().encode("{oops") }),
    ShiraError,
    "CONFIG_INVALID",
    /tokenizer_config\.json is not valid JSON/,
  );
  await assertRejectsCode(
    AutoTokenizer.fromPretrained({ "tokenizer.json": new TextEncoder().encode('{"model": {"type": "Nope"}}') }),
    ConfigError,
    "CONFIG_INVALID",
    /tokenizer\.json is not supported/,
  );
  const ac = new AbortController();
  ac.abort(new Error("stop"));
  await assertRejectsCode(AutoTokenizer.fromPretrained(BL, { signal: ac.signal }), ShiraError, "ABORTED", /stop/);
});

test("src/models/tokenizer.ts bundles for browsers (no Node built-ins)", async () => {
  const out = await build({
    entryPoints: [fileURLToPath(new URL("../src/models/tokenizer.ts", import.meta.url))],
    bundle: true,
    platform: "browser",
    format: "esm",
    write: false,
    logLevel: "silent",
  });
  assert.equal(out.errors.length, 0);
  const code = out.outputFiles[0].text;
  assert.ok(!/from\s+["']node:|require\(["'](node:)?(fs|path|url)["']\)/.test(code), "the browser bundle imports a Node built-in");
  assert.ok(code.includes("PreTrainedTokenizer = class"), "the bundle holds the tokenizer");
  assert.ok(code.includes("Template = class") && code.includes("Tokenizer = class"), "the bundle holds @huggingface/jinja and @huggingface/tokenizers");
});
