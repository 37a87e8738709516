/**
 * Byte-level BPE, GPT-2 style: a trainer that writes a Hugging Face `tokenizer.json` (the file `@huggingface/tokenizers`,
 * transformers' fast tokenizers and {@link AutoTokenizer} load), and a fast encoder for bulk corpus encoding that
 * gives exactly the ids `@huggingface/tokenizers` gives for the same file.
 *
 * The tokenizer: no normalizer; pre-tokenizer ByteLevel (GPT-2's split regex, `add_prefix_space: false`); model BPE
 * over the 256 byte symbols; decoder ByteLevel; special tokens as `added_tokens`. Algorithms follow GPT-2's
 * `encoder.py` (bytes_to_unicode, the regex, rank-ordered merges) and the training loop of the Rust `tokenizers`
 * `BpeTrainer` (pair counts updated incrementally, a max-heap with lazy re-insertion).
 *
 * Ids: 0-255 are the byte symbols in GPT-2's `bytes_to_unicode` order (`!` is 0, space `Ġ` is 220, `\n` `Ċ` is 198),
 * then one id per merge in training order, then the special tokens, last (GPT-2's convention): with the default
 * `["<|endoftext|>"]` and a corpus large enough to reach `vocabSize`, `<|endoftext|>` is `vocabSize - 1`.
 *
 * ```ts
 * const tok = trainBpe(docs.map((d) => d.text), { vocabSize: 4096 });
 * writeFileSync("tok/tokenizer.json", tokenizerJsonString(tok));
 * writeFileSync("tok/tokenizer_config.json", JSON.stringify(bpeTokenizerConfig(tok), null, 2));
 * const { encode, decode } = bpeEncoder(tok);
 * const ids = encode("The jury said.");   // the ids AutoTokenizer.fromPretrained("tok") gives
 * ```
 */
import { ConfigError } from "../errors.js";

// ---- tokenizer.json types ------------------------------------------------------------------------------------

/** An entry of `added_tokens` (the fields the Rust `tokenizers` library writes). */
export type AddedTokenJson = {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
};

/** The ByteLevel pre-tokenizer, decoder or post-processor. */
export type ByteLevelJson = { type: "ByteLevel"; add_prefix_space: boolean; trim_offsets: boolean; use_regex: boolean };

/**
 * The BPE model: `vocab` token -> id (from {@link trainBpe}: an object without prototype, since a token may be
 * `__proto__`), `merges` in rank order (`"a b"`, or `["a", "b"]` as newer files write them; both are read).
 */
export type BpeModelJson = {
  type: "BPE";
  dropout: number | null;
  unk_token: string | null;
  continuing_subword_prefix: string | null;
  end_of_word_suffix: string | null;
  fuse_unk: boolean;
  byte_fallback: boolean;
  ignore_merges: boolean;
  vocab: Record<string, number>;
  merges: (string | [string, string])[];
};

/** A byte-level BPE `tokenizer.json`, as {@link trainBpe} writes it and {@link bpeEncoder} reads it. */
export type TokenizerJson = {
  version: string;
  truncation: null;
  padding: null;
  added_tokens: AddedTokenJson[];
  normalizer: null;
  pre_tokenizer: ByteLevelJson;
  post_processor: ByteLevelJson | null;
  decoder: ByteLevelJson;
  model: BpeModelJson;
};

export interface TrainBpeOptions {
  /** Size of the vocabulary, special tokens included (the model's `vocab_size`). At least 256 + the special tokens. */
  vocabSize: number;
  /** Special tokens, given ids after the learned vocabulary, in this order. Default `["<|endoftext|>"]`; `[]` for none. */
  specialTokens?: string[];
  /** Stop when the most frequent pair occurs fewer times than this (the vocabulary is then smaller). Default 2. */
  minFrequency?: number;
  /** Called every 64 merges and at the end with (merges done, merges wanted = vocabSize - 256 - specials). */
  onProgress?: (done: number, total: number) => void;
}

// ---- GPT-2's byte alphabet and split regex -------------------------------------------------------------------

/**
 * GPT-2's `bytes_to_unicode` order: `BYTE_ORDER[id]` is the byte of token `id` (0-255). The printable bytes `!`-`~`,
 * `¡`-`¬`, `®`-`ÿ` come first and stand for themselves; the other 68 follow, as U+0100 + n (see {@link BYTE_CHARS}).
 */
export const BYTE_ORDER: readonly number[] = (() => {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const printable = new Set(bs);
  for (let b = 0; b < 256; b++) if (!printable.has(b)) bs.push(b);
  return Object.freeze(bs);
})();

/** `BYTE_CHARS[b]` is the character of byte `b` in byte-level tokens (`BYTE_CHARS[32] === "Ġ"`). */
export const BYTE_CHARS: readonly string[] = (() => {
  const chars = new Array<string>(256);
  let n = 0;
  for (const b of BYTE_ORDER) chars[b] = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff) ? String.fromCharCode(b) : String.fromCharCode(256 + n++);
  return Object.freeze(chars);
})();

const CHAR_TO_BYTE = new Map<string, number>(BYTE_CHARS.map((c, b) => [c, b]));

/** GPT-2's pre-tokenizer regex, as the ByteLevel pre-tokenizer of `@huggingface/tokenizers` writes it. */
export const GPT2_SPLIT_PATTERN = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`;
const SPLIT_RE = new RegExp(GPT2_SPLIT_PATTERN, "gu");

/** Largest vocabulary (pairs are keyed by `left * MAX_VOCAB + right` in a float64). */
const MAX_VOCAB = 1 << 21;

const utf8 = new TextEncoder();

/** Splits `text` around the special tokens (leftmost, longest first); calls `onText` / `onSpecial` in order. */
function makeSpecialSplitter(specials: readonly string[]): ((text: string, onText: (s: string) => void, onSpecial: (s: string) => void) => void) | null {
  if (specials.length === 0) return null;
  const sorted = [...specials].sort((a, b) => b.length - a.length);
  const re = new RegExp(sorted.map((s) => s.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&")).join("|"), "g");
  return (text, onText, onSpecial) => {
    re.lastIndex = 0;
    let from = 0;
    let m: RegExpExecArray | null;
    while ((m = re.exec(text)) !== null) {
      if (m.index > from) onText(text.slice(from, m.index));
      onSpecial(m[0]);
      from = m.index + m[0].length;
    }
    if (from < text.length) onText(from === 0 ? text : text.slice(from));
  };
}

/** Calls `fn` for every pre-token (GPT-2 regex match) of `text`. */
function forEachPreToken(text: string, fn: (word: string) => void): void {
  const re = SPLIT_RE;
  re.lastIndex = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) fn(m[0]);
}

function checkSpecials(specials: unknown, where: string): string[] {
  if (!Array.isArray(specials) || specials.some((s) => typeof s !== "string" || s.length === 0)) {
    throw new ConfigError("CONFIG_INVALID", `${where}: specialTokens must be an array of non-empty strings, got ${JSON.stringify(specials)}`, { field: "specialTokens" });
  }
  if (new Set(specials).size !== specials.length) throw new ConfigError("CONFIG_INVALID", `${where}: specialTokens has duplicates: ${JSON.stringify(specials)}`, { field: "specialTokens" });
  return specials as string[];
}

// ---- training ------------------------------------------------------------------------------------------------

/**
 * A max-heap of (count, pair) with ties broken by the pair's token strings (left, then right, in code-unit order), so
 * training is deterministic. Entries may be stale (the caller re-checks the count when it pops one).
 */
class PairHeap {
  private counts: number[] = [];
  private keys: number[] = [];
  constructor(private readonly tokens: string[]) {}

  get size(): number {
    return this.keys.length;
  }

  /** Whether entry i should be above entry j. */
  private above(i: number, j: number): boolean {
    const ci = this.counts[i];
    const cj = this.counts[j];
    if (ci !== cj) return ci > cj;
    const ki = this.keys[i];
    const kj = this.keys[j];
    const li = Math.floor(ki / MAX_VOCAB);
    const lj = Math.floor(kj / MAX_VOCAB);
    if (li !== lj) return this.tokens[li] < this.tokens[lj];
    return this.tokens[ki - li * MAX_VOCAB] < this.tokens[kj - lj * MAX_VOCAB];
  }

  private swap(i: number, j: number): void {
    const c = this.counts[i];
    this.counts[i] = this.counts[j];
    this.counts[j] = c;
    const k = this.keys[i];
    this.keys[i] = this.keys[j];
    this.keys[j] = k;
  }

  push(key: number, count: number): void {
    this.keys.push(key);
    this.counts.push(count);
    let i = this.keys.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.above(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }

  /** Removes the top entry into `out` ([key, count]); false when empty. */
  pop(out: [number, number]): boolean {
    const n = this.keys.length;
    if (n === 0) return false;
    out[0] = this.keys[0];
    out[1] = this.counts[0];
    const lastKey = this.keys.pop()!;
    const lastCount = this.counts.pop()!;
    if (n > 1) {
      this.keys[0] = lastKey;
      this.counts[0] = lastCount;
      let i = 0;
      const m = n - 1;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= m) break;
        const r = l + 1;
        const c = r < m && this.above(r, l) ? r : l;
        if (!this.above(c, i)) break;
        this.swap(c, i);
        i = c;
      }
    }
    return true;
  }
}

/**
 * Trains a byte-level BPE tokenizer (GPT-2 style) and returns its `tokenizer.json` object.
 *
 * The texts are split with GPT-2's regex (and around special tokens written in them); the distinct pieces are
 * counted; then, until the vocabulary holds `vocabSize - specials` tokens, the most frequent adjacent pair of symbols
 * (over all piece occurrences) becomes a new token, its occurrences are merged left to right, and the counts of the
 * pairs around them are updated. Ties go to the pair whose left, then right, token string is smallest (code-unit
 * order), so the same texts give the same file, in any order. (The Rust trainer breaks ties by its internal ids, so
 * among equally frequent pairs its merge order can differ; the files each writes load and encode the same way in
 * both libraries.) A merge whose text is already a token (two ways to spell one string) adds a merge but no token, as
 * the Rust trainer does. Training stops early when the best pair occurs fewer than `minFrequency` times; the special
 * tokens then follow the smaller vocabulary (read their ids from `added_tokens`).
 *
 * Throws `ConfigError` (`CONFIG_INVALID`) for a `vocabSize` below 256 + specials or above 2^21, a bad
 * `minFrequency` or special token, or a special token already in the vocabulary (a byte symbol or a learned token).
 *
 * ```ts
 * const tok = trainBpe(["aaab aab"], { vocabSize: 260, specialTokens: [], minFrequency: 1 });
 * tok.model.merges;   // ["a a", "a b", "aa ab", "aa b"]: tokens "aa" (256), "ab", "aaab", "aab" (259)
 * const big = trainBpe(loadBrown().map((d) => d.text), { vocabSize: 4096 });   // 3,839 merges, ~1.5 s
 * big.added_tokens[0];  // { id: 4095, content: "<|endoftext|>", special: true, ... }
 * ```
 */
export function trainBpe(texts: Iterable<string>, opts: TrainBpeOptions): TokenizerJson {
  if (opts === null || typeof opts !== "object") throw new ConfigError("CONFIG_INVALID", `trainBpe: opts must be an object with vocabSize, got ${String(opts)}`);
  const specials = checkSpecials(opts.specialTokens ?? ["<|endoftext|>"], "trainBpe");
  const { vocabSize } = opts;
  if (!Number.isInteger(vocabSize) || vocabSize < 256 + specials.length || vocabSize > MAX_VOCAB) {
    throw new ConfigError("CONFIG_INVALID", `trainBpe: vocabSize must be an integer in [${256 + specials.length}, ${MAX_VOCAB}] (256 bytes + ${specials.length} special tokens), got ${vocabSize}`, {
      field: "vocabSize",
      value: vocabSize,
    });
  }
  const minFrequency = opts.minFrequency ?? 2;
  if (!Number.isInteger(minFrequency) || minFrequency < 1) {
    throw new ConfigError("CONFIG_INVALID", `trainBpe: minFrequency must be a positive integer, got ${minFrequency}`, { field: "minFrequency", value: minFrequency });
  }
  const target = vocabSize - specials.length;
  const totalMerges = target - 256;

  // 1. count the pre-tokens
  const wordCounts = new Map<string, number>();
  const count = (w: string) => wordCounts.set(w, (wordCounts.get(w) ?? 0) + 1);
  const countText = (t: string) => forEachPreToken(t, count);
  const split = makeSpecialSplitter(specials);
  for (const text of texts) {
    if (typeof text !== "string") throw new ConfigError("CONFIG_INVALID", `trainBpe: texts must be strings, got ${typeof text}`);
    if (split) split(text, countText, () => {});
    else countText(text);
  }

  // 2. the words as byte symbols; tokens 0-255 are the bytes in GPT-2's order
  const tokens: string[] = BYTE_ORDER.map((b) => BYTE_CHARS[b]);
  const tokenId = new Map<string, number>(tokens.map((t, i) => [t, i]));
  const byteId = new Int32Array(256);
  BYTE_ORDER.forEach((b, i) => (byteId[b] = i));
  const nWords = wordCounts.size;
  const words: Int32Array[] = new Array(nWords);
  const lens = new Int32Array(nWords);
  const freq = new Float64Array(nWords);
  const pairCounts = new Map<number, number>();
  const where = new Map<number, number[]>(); // pair -> words holding it (may hold stale entries, duplicates)
  let w = 0;
  for (const [word, c] of wordCounts) {
    const bytes = utf8.encode(word);
    const s = new Int32Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) s[i] = byteId[bytes[i]];
    words[w] = s;
    lens[w] = s.length;
    freq[w] = c;
    for (let i = 0; i + 1 < s.length; i++) {
      const k = s[i] * MAX_VOCAB + s[i + 1];
      pairCounts.set(k, (pairCounts.get(k) ?? 0) + c);
      const list = where.get(k);
      if (!list) where.set(k, [w]);
      else if (list[list.length - 1] !== w) list.push(w);
    }
    w++;
  }
  wordCounts.clear();

  // 3. merge the most frequent pair until the vocabulary is full
  const heap = new PairHeap(tokens);
  for (const [k, c] of pairCounts) heap.push(k, c);
  const merges: string[] = [];
  const seen = new Int32Array(nWords).fill(-1);
  const top: [number, number] = [0, 0];
  const touched = new Set<number>();
  const add = (k: number, c: number) => {
    const v = (pairCounts.get(k) ?? 0) + c;
    if (v === 0) pairCounts.delete(k);
    else pairCounts.set(k, v);
  };
  let reported = -1;
  const report = () => {
    if (reported === merges.length) return;
    reported = merges.length;
    opts.onProgress?.(merges.length, totalMerges);
  };
  while (tokens.length < target && heap.pop(top)) {
    const [key, stored] = top;
    const current = pairCounts.get(key) ?? 0;
    if (stored !== current) {
      if (current > 0) heap.push(key, current); // the count went down since this entry was pushed
      continue;
    }
    if (current < minFrequency) break;
    const a = Math.floor(key / MAX_VOCAB);
    const b = key - a * MAX_VOCAB;
    const text = tokens[a] + tokens[b];
    let id = tokenId.get(text);
    if (id === undefined) {
      id = tokens.length;
      tokens.push(text);
      tokenId.set(text, id);
    }
    merges.push(`${tokens[a]} ${tokens[b]}`);
    const stamp = merges.length;
    touched.clear();
    for (const wi of where.get(key) ?? []) {
      if (seen[wi] === stamp) continue;
      seen[wi] = stamp;
      const s = words[wi];
      const n = lens[wi];
      let at = -1;
      for (let i = 0; i + 1 < n; i++) {
        if (s[i] === a && s[i + 1] === b) {
          at = i;
          break;
        }
      }
      if (at < 0) continue; // stale: merged away by an earlier merge
      const f = freq[wi];
      // remove the pairs of the word around the first occurrence onwards, merge, add the new pairs back
      const from = Math.max(0, at - 1);
      for (let i = from; i + 1 < n; i++) add(s[i] * MAX_VOCAB + s[i + 1], -f);
      let j = at;
      for (let i = at; i < n; ) {
        if (i + 1 < n && s[i] === a && s[i + 1] === b) {
          s[j++] = id;
          i += 2;
        } else s[j++] = s[i++];
      }
      lens[wi] = j;
      for (let i = from; i + 1 < j; i++) {
        const k = s[i] * MAX_VOCAB + s[i + 1];
        add(k, f);
        if (s[i] === id || s[i + 1] === id) {
          touched.add(k);
          const list = where.get(k);
          if (!list) where.set(k, [wi]);
          else if (list[list.length - 1] !== wi) list.push(wi);
        }
      }
    }
    where.delete(key);
    for (const k of touched) {
      const c = pairCounts.get(k);
      if (c !== undefined) heap.push(k, c);
    }
    if (merges.length % 64 === 0) report();
  }
  report(); // once more at the end (when not just done)

  // 4. the tokenizer.json object
  const vocab: Record<string, number> = Object.create(null); // a token may be "__proto__"
  tokens.forEach((t, i) => (vocab[t] = i));
  const added: AddedTokenJson[] = specials.map((content, i) => {
    if (tokenId.has(content)) throw new ConfigError("CONFIG_INVALID", `trainBpe: special token ${JSON.stringify(content)} is already in the vocabulary`, { field: "specialTokens", token: content });
    const id = tokens.length + i;
    vocab[content] = id;
    return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
  });
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}

/**
 * The text of a `tokenizer.json` object, indented by 2 like the files on the Hub, with `vocab` in id order (a plain
 * `JSON.stringify` would put number-like tokens such as `"0"` first; the content is the same either way).
 *
 * ```ts
 * writeFileSync(join(dir, "tokenizer.json"), tokenizerJsonString(trainBpe(texts, { vocabSize: 4096 })));
 * ```
 */
export function tokenizerJsonString(tok: TokenizerJson): string {
  const marker = "\u0000vocab\u0000";
  const text = JSON.stringify({ ...tok, model: { ...tok.model, vocab: marker } }, null, 2);
  const entries = Object.entries(tok.model.vocab).sort((x, y) => x[1] - y[1]);
  const vocab = entries.length === 0 ? "{}" : `{\n${entries.map(([t, id]) => `      ${JSON.stringify(t)}: ${id}`).join(",\n")}\n    }`;
  return text.replace(JSON.stringify(marker), () => vocab) + "\n";
}

/**
 * A `tokenizer_config.json` for a trained tokenizer: the first special token as bos, eos and unk (GPT-2's
 * convention; nothing is added around texts), no clean-up of spaces (decode gives the text back exactly).
 *
 * ```ts
 * writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(bpeTokenizerConfig(tok, { modelMaxLength: 256 }), null, 2));
 * ```
 */
export function bpeTokenizerConfig(tok: TokenizerJson, opts: { modelMaxLength?: number } = {}): Record<string, unknown> {
  const first = tok.added_tokens.find((t) => t.special)?.content ?? null;
  const decoder: Record<string, unknown> = {};
  for (const t of tok.added_tokens) decoder[String(t.id)] = { content: t.content, lstrip: t.lstrip, normalized: t.normalized, rstrip: t.rstrip, single_word: t.single_word, special: t.special };
  return {
    tokenizer_class: "PreTrainedTokenizerFast",
    add_prefix_space: false,
    added_tokens_decoder: decoder,
    bos_token: first,
    eos_token: first,
    unk_token: first,
    clean_up_tokenization_spaces: false,
    model_max_length: opts.modelMaxLength ?? 1024,
  };
}

// ---- encoding ------------------------------------------------------------------------------------------------

/** A fast byte-level BPE encoder (see {@link bpeEncoder}). */
export interface BpeEncoder {
  /** Token ids of a text: special tokens written in it become their ids; nothing is added around it. */
  encode(text: string): number[];
  /** The text of token ids (UTF-8 decoded, malformed sequences as U+FFFD); ids with no token are dropped. */
  decode(ids: ArrayLike<number>): string;
  /** Number of ids (vocabulary and added tokens). */
  readonly vocabSize: number;
}

/** Words longer than this (in bytes) are merged with a heap instead of rescanning. */
const SCAN_LIMIT = 48;
/** Pre-tokens cached at most (the cache is cleared when full); Brown has ~56k distinct ones. */
const CACHE_LIMIT = 200_000;

function unsupported(what: string, value: unknown): never {
  throw new ConfigError("CONFIG_INVALID", `bpeEncoder: unsupported tokenizer.json: ${what} (got ${JSON.stringify(value)}); it reads byte-level BPE files as trainBpe writes them`, {
    field: what,
  });
}

/**
 * A fast encoder for a byte-level BPE `tokenizer.json` (GPT-2 style, as {@link trainBpe} writes), for encoding whole
 * corpora: it caches the ids of each pre-token, and gives exactly the ids of `@huggingface/tokenizers`' `Tokenizer`
 * (and so of {@link AutoTokenizer}) for the same file: the same regex, merges applied lowest rank first (leftmost
 * first among equal ranks), special tokens split out first (leftmost, longest). Throws `ConfigError` for files it does
 * not support (a normalizer, `add_prefix_space`, byte fallback, suffixes, a byte symbol missing from the vocabulary).
 *
 * ```ts
 * const enc = bpeEncoder(JSON.parse(readFileSync("tok/tokenizer.json", "utf8")));
 * const ids = enc.encode("The jury said.");
 * enc.decode(ids);   // "The jury said."
 * ```
 */
export function bpeEncoder(tok: TokenizerJson): BpeEncoder {
  const model = tok?.model;
  if (!model || model.type !== "BPE") unsupported("model.type", model?.type);
  if (tok.normalizer != null) unsupported("normalizer", tok.normalizer);
  const pre = tok.pre_tokenizer;
  if (!pre || pre.type !== "ByteLevel") unsupported("pre_tokenizer", pre);
  if (pre.add_prefix_space) unsupported("pre_tokenizer.add_prefix_space", pre.add_prefix_space);
  if (pre.use_regex === false) unsupported("pre_tokenizer.use_regex", pre.use_regex);
  if (!tok.decoder || tok.decoder.type !== "ByteLevel") unsupported("decoder", tok.decoder);
  if (model.byte_fallback) unsupported("model.byte_fallback", model.byte_fallback);
  if (model.end_of_word_suffix) unsupported("model.end_of_word_suffix", model.end_of_word_suffix);
  if (model.continuing_subword_prefix) unsupported("model.continuing_subword_prefix", model.continuing_subword_prefix);
  if (model.dropout) unsupported("model.dropout", model.dropout);

  // ids -> token strings (added tokens override, as in @huggingface/tokenizers)
  const vocab = new Map<string, number>(Object.entries(model.vocab));
  const added = new Map<string, number>();
  for (const t of tok.added_tokens ?? []) {
    if (t.lstrip || t.rstrip) unsupported("added_tokens lstrip/rstrip", t.content);
    added.set(t.content, t.id);
    vocab.set(t.content, t.id);
  }
  let size = 0;
  for (const id of vocab.values()) size = Math.max(size, id + 1);
  if (size > MAX_VOCAB) unsupported("vocabulary size", size);
  const idToken: (string | undefined)[] = new Array(size);
  for (const [t, id] of vocab) idToken[id] = t;

  const byteId = new Int32Array(256);
  for (let b = 0; b < 256; b++) {
    const id = vocab.get(BYTE_CHARS[b]);
    if (id === undefined) unsupported(`byte symbol ${JSON.stringify(BYTE_CHARS[b])} (byte ${b}) in model.vocab`, null);
    byteId[b] = id;
  }

  // merges: pair -> rank (a later duplicate wins, as in @huggingface/tokenizers), rank -> merged id
  const ranks = new Map<number, number>();
  const mergedId = new Int32Array(model.merges.length);
  model.merges.forEach((m, rank) => {
    const [l, r] = typeof m === "string" ? m.split(" ", 2) : m;
    const li = vocab.get(l);
    const ri = vocab.get(r);
    const mi = vocab.get(l + r);
    if (li === undefined || ri === undefined || mi === undefined) unsupported(`merge ${rank} (its tokens must be in model.vocab)`, m);
    ranks.set(li * MAX_VOCAB + ri, rank);
    mergedId[rank] = mi;
  });

  // bytes of each id, for decoding
  const idBytes: (Uint8Array | undefined)[] = new Array(size);
  for (let id = 0; id < size; id++) {
    const t = idToken[id];
    if (t === undefined || added.has(t)) continue;
    const bytes = new Uint8Array(t.length);
    for (let i = 0; i < t.length; i++) bytes[i] = CHAR_TO_BYTE.get(t[i]) ?? 0;
    idBytes[id] = bytes;
  }
  const addedById = new Map<number, string>([...added].map(([t, id]) => [id, t]));
  const ignoreMerges = model.ignore_merges === true;

  /** Applies the merges to one pre-token's symbols: lowest rank first, leftmost among equals. */
  const mergeScan = (s: number[]): number[] => {
    let n = s.length;
    for (;;) {
      let best = Infinity;
      let at = -1;
      for (let i = 0; i + 1 < n; i++) {
        const r = ranks.get(s[i] * MAX_VOCAB + s[i + 1]);
        if (r !== undefined && r < best) {
          best = r;
          at = i;
        }
      }
      if (at < 0) break;
      s[at] = mergedId[best];
      s.copyWithin(at + 1, at + 2, n);
      n--;
    }
    s.length = n;
    return s;
  };

  /** The same with a linked list and a heap of (rank, position), for long pre-tokens (runs of digits or spaces). */
  const mergeHeap = (s: number[]): number[] => {
    const n = s.length;
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const alive = new Uint8Array(n).fill(1);
    const heap: number[] = []; // rank * n + position
    const push = (v: number) => {
      heap.push(v);
      let i = heap.length - 1;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (heap[p] <= v) break;
        heap[i] = heap[p];
        i = p;
      }
      heap[i] = v;
    };
    const pop = (): number => {
      const topV = heap[0];
      const last = heap.pop()!;
      if (heap.length > 0) {
        let i = 0;
        const m = heap.length;
        for (;;) {
          const l = 2 * i + 1;
          if (l >= m) break;
          const c = l + 1 < m && heap[l + 1] < heap[l] ? l + 1 : l;
          if (heap[c] >= last) break;
          heap[i] = heap[c];
          i = c;
        }
        heap[i] = last;
      }
      return topV;
    };
    const tryPush = (i: number) => {
      const j = next[i];
      if (j < 0) return;
      const r = ranks.get(s[i] * MAX_VOCAB + s[j]);
      if (r !== undefined) push(r * n + i);
    };
    for (let i = 0; i + 1 < n; i++) tryPush(i);
    while (heap.length > 0) {
      const v = pop();
      const rank = Math.floor(v / n);
      const i = v - rank * n;
      const j = next[i];
      if (!alive[i] || j < 0 || ranks.get(s[i] * MAX_VOCAB + s[j]) !== rank) continue; // stale
      s[i] = mergedId[rank];
      alive[j] = 0;
      next[i] = next[j];
      if (next[j] >= 0) prev[next[j]] = i;
      if (prev[i] >= 0) tryPush(prev[i]);
      tryPush(i);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) out.push(s[i]);
    return out;
  };

  const cache = new Map<string, number[]>();
  const encodeWord = (word: string): number[] => {
    const hit = cache.get(word);
    if (hit !== undefined) return hit;
    const bytes = utf8.encode(word);
    let ids: number[];
    const whole = ignoreMerges ? vocab.get(Array.from(bytes, (b) => BYTE_CHARS[b]).join("")) : undefined;
    if (whole !== undefined) ids = [whole];
    else {
      const s = new Array<number>(bytes.length);
      for (let i = 0; i < bytes.length; i++) s[i] = byteId[bytes[i]];
      ids = s.length <= 1 ? s : s.length <= SCAN_LIMIT ? mergeScan(s) : mergeHeap(s);
    }
    if (cache.size >= CACHE_LIMIT) cache.clear();
    cache.set(word, ids);
    return ids;
  };

  const split = makeSpecialSplitter([...added.keys()]);
  const decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

  return {
    vocabSize: size,
    encode(text: string): number[] {
      if (typeof text !== "string") throw new ConfigError("CONFIG_INVALID", `bpeEncoder.encode: text must be a string, got ${typeof text}`);
      const out: number[] = [];
      const onText = (t: string) =>
        forEachPreToken(t, (w) => {
          const ids = encodeWord(w);
          for (let i = 0; i < ids.length; i++) out.push(ids[i]);
        });
      if (split) split(text, onText, (sp) => out.push(added.get(sp)!));
      else onText(text);
      return out;
    },
    decode(ids: ArrayLike<number>): string {
      let text = "";
      let buf = new Uint8Array(256);
      let n = 0;
      const flush = () => {
        if (n > 0) text += decoder.decode(buf.subarray(0, n));
        n = 0;
      };
      for (let k = 0; k < ids.length; k++) {
        const id = ids[k];
        const special = addedById.get(id);
        if (special !== undefined) {
          flush();
          text += special;
          continue;
        }
        const bytes = idBytes[id];
        if (bytes === undefined) continue;
        if (n + bytes.length > buf.length) {
          const bigger = new Uint8Array(Math.max(buf.length * 2, n + bytes.length));
          bigger.set(buf.subarray(0, n));
          buf = bigger;
        }
        buf.set(bytes, n);
        n += bytes.length;
      }
      flush();
      return text;
    },
  };
}
