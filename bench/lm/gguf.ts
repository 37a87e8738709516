// Converts a float32 Hugging Face Qwen2 checkpoint folder (config.json + model.safetensors) into a GGUF v3 file
// that llama.cpp (and so wllama) loads as architecture `qwen2`, tensors kept in F32.
//
//   writeGgufF32(checkpointDir, "/tmp/model.gguf")
//
// Layout (llama.cpp's gguf format, little-endian): magic "GGUF", version u32 = 3, tensor count u64, KV count u64,
// the KV pairs (key: u64 length + UTF-8 bytes; value type u32; value), the tensor infos (name, n_dims u32, dims u64
// innermost first — i.e. the PyTorch shape reversed —, ggml type u32 = 0 (F32), data offset u64 relative to the
// data section, each a multiple of the alignment), zero padding to `general.alignment` = 32, then the data, each
// tensor padded to 32. Weights are row-major in both formats, so a tensor's bytes are copied unchanged; Qwen2 needs
// no q/k permutation (llama.cpp uses NEOX rope for it, which is HF's rotate_half).
//
// Names (llama.cpp's tensor map for qwen2): model.embed_tokens → token_embd, model.norm → output_norm,
// layers.N.input_layernorm → blk.N.attn_norm, post_attention_layernorm → ffn_norm, self_attn.{q,k,v}_proj →
// attn_{q,k,v} (weight + bias), o_proj → attn_output, mlp.{gate,up,down}_proj → ffn_{gate,up,down}; lm_head →
// output only when the checkpoint stores it (tied models have no `output.weight`: llama.cpp reuses token_embd).
//
// Tokenizer metadata: llama.cpp refuses a model without a vocabulary, so a synthetic GPT-2-style vocabulary of
// exactly vocab_size tokens is written (`tokenizer.ggml.model` = "gpt2", `pre` = "qwen2", no merges). Ids 0..255
// are byte tokens in GPT-2's bytes_to_unicode order (as in Qwen2's real vocabulary), but only the 94 printable
// ASCII bytes keep their byte-level character ("!".."~"); the 162 others are named "<0xHH>" (ASCII text). Reason:
// every token must detokenize to valid UTF-8, or llama-server's JSON response (nlohmann::json::dump) throws
// "invalid UTF-8 byte" and the request dies; a greedy random model may emit any id. The eos id (from
// config.json) is `<|endoftext|>` (CONTROL; a distinct bos is `<|bos|>`), and in Qwen2's 151936 vocabulary ids
// 151644/151645 are `<|im_start|>` / `<|im_end|>` (CONTROL), ids past 151645 in a 151936 vocabulary are `[PAD<i>]` (UNUSED, like convert_hf_to_gguf's padding),
// every other id is the ASCII string `t<i>` (NORMAL). `tokenizer.ggml.merges` is an empty string array (the key
// must exist). With no merges, text made of printable ASCII tokenizes to exactly one byte token per character,
// which is how ./wllama-peer.ts writes token-id prompts (wllama 3 only takes text). The data is streamed from the
// safetensors file in chunks of 64 MB.
import { closeSync, existsSync, openSync, readFileSync, readSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";

const GGUF_VERSION = 3;
/** Bumped whenever the bytes this writer produces change (invalidates reused files). */
const WRITER_VERSION = 1;
const ALIGN = 32;
const CHUNK = 64 << 20;

const enum T {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
}

/** llama.cpp token types (gguf-py TokenType). */
export const TOKEN_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

type KV =
  | { type: T.U32 | T.I32 | T.F32 | T.BOOL | T.U64; value: number }
  | { type: T.STRING; value: string }
  | { type: T.ARRAY; elem: T.STRING; value: string[] }
  | { type: T.ARRAY; elem: T.I32; value: Int32Array };

/** A growable little-endian byte writer for the header. */
class Bytes {
  private buf = Buffer.alloc(1 << 20);
  length = 0;
  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const b = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(b, 0, 0, this.length);
    this.buf = b;
  }
  u32(x: number): void {
    this.ensure(4);
    this.buf.writeUInt32LE(x >>> 0, this.length);
    this.length += 4;
  }
  i32(x: number): void {
    this.ensure(4);
    this.buf.writeInt32LE(x, this.length);
    this.length += 4;
  }
  u64(x: number | bigint): void {
    this.ensure(8);
    this.buf.writeBigUInt64LE(BigInt(x), this.length);
    this.length += 8;
  }
  f32(x: number): void {
    this.ensure(4);
    this.buf.writeFloatLE(x, this.length);
    this.length += 4;
  }
  u8(x: number): void {
    this.ensure(1);
    this.buf[this.length++] = x;
  }
  str(s: string): void {
    const b = Buffer.from(s, "utf8");
    this.u64(b.length);
    this.ensure(b.length);
    b.copy(this.buf, this.length);
    this.length += b.length;
  }
  pad(align: number): void {
    const n = (align - (this.length % align)) % align;
    this.ensure(n);
    this.buf.fill(0, this.length, this.length + n);
    this.length += n;
  }
  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

function writeKv(w: Bytes, key: string, kv: KV): void {
  w.str(key);
  w.u32(kv.type);
  switch (kv.type) {
    case T.U32:
      w.u32(kv.value);
      break;
    case T.I32:
      w.i32(kv.value);
      break;
    case T.F32:
      w.f32(kv.value);
      break;
    case T.BOOL:
      w.u8(kv.value ? 1 : 0);
      break;
    case T.U64:
      w.u64(kv.value);
      break;
    case T.STRING:
      w.str(kv.value);
      break;
    case T.ARRAY:
      w.u32(kv.elem);
      w.u64(kv.value.length);
      if (kv.elem === T.STRING) for (const s of kv.value as string[]) w.str(s);
      else for (const x of kv.value as Int32Array) w.i32(x);
      break;
  }
}

// ------------------------------------------------------------------------------------------- vocabulary

/**
 * The 256 byte tokens in the order of GPT-2's bytes_to_unicode table: printable ASCII bytes as themselves, the
 * other bytes as "<0xHH>" (see the top of this file for why not GPT-2's stand-in characters).
 */
export function gpt2ByteTokens(): string[] {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  return cs.map((c, i) => (bs[i] >= 0x21 && bs[i] <= 0x7e ? String.fromCodePoint(c) : `<0x${bs[i].toString(16).toUpperCase().padStart(2, "0")}>`));
}

/**
 * The 256 byte tokens, GPT-2 order, except that every id of `asciiIds` is made a printable-ASCII byte (swapped
 * with a free printable id), so that a prompt of those ids can be written as text (wllama takes text prompts).
 */
export function byteTokenTable(asciiIds: number[] = []): string[] {
  const table = gpt2ByteTokens();
  const printable = (c: string) => c.length === 1;
  const want = new Set(asciiIds);
  let free = 0;
  for (const id of want) {
    if (id < 0 || id > 255) throw new Error(`byteTokenTable: ${id} is not a byte-token id`);
    if (printable(table[id])) continue;
    while (free < 256 && (want.has(free) || !printable(table[free]))) free++;
    if (free === 256) throw new Error("byteTokenTable: not enough printable bytes");
    [table[id], table[free]] = [table[free], table[id]];
    free++;
  }
  return table;
}

export interface SyntheticVocab {
  tokens: string[];
  types: Int32Array;
}

/** The synthetic byte-level vocabulary described at the top of this file. */
export function syntheticVocab(vocabSize: number, bos: number, eos: number, asciiIds: number[] = []): SyntheticVocab {
  const tokens = new Array<string>(vocabSize);
  const types = new Int32Array(vocabSize).fill(TOKEN_TYPE.NORMAL);
  const bytes = vocabSize >= 260 ? byteTokenTable(asciiIds) : [];
  for (let i = 0; i < vocabSize; i++) tokens[i] = i < bytes.length ? bytes[i] : `t${i}`;
  if (vocabSize === 151936) {
    for (let i = 151646; i < vocabSize; i++) {
      tokens[i] = `[PAD${i}]`;
      types[i] = TOKEN_TYPE.UNUSED;
    }
    tokens[151644] = "<|im_start|>";
    types[151644] = TOKEN_TYPE.CONTROL;
  }
  if (vocabSize === 151936) {
    tokens[151645] = "<|im_end|>";
    types[151645] = TOKEN_TYPE.CONTROL;
  }
  // eos is "<|endoftext|>" (llama.cpp recognizes it as end-of-generation); a distinct bos gets a name llama.cpp
  // does not treat as end-of-generation, so that a greedy path through it is not cut (cf. the transformers fixture)
  if (bos !== eos && bos >= 0 && bos < vocabSize) {
    tokens[bos] = "<|bos|>";
    types[bos] = TOKEN_TYPE.CONTROL;
  }
  if (eos >= 0 && eos < vocabSize) {
    tokens[eos] = "<|endoftext|>";
    types[eos] = TOKEN_TYPE.CONTROL;
  }
  if (new Set(tokens).size !== vocabSize) throw new Error("synthetic vocabulary: duplicate token strings");
  return { tokens, types };
}

// ------------------------------------------------------------------------------------------- conversion

interface StEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

function readSafetensorsHeader(path: string): { dataStart: number; entries: Map<string, StEntry> } {
  const fd = openSync(path, "r");
  try {
    const len = Buffer.alloc(8);
    readSync(fd, len, 0, 8, 0);
    const n = Number(len.readBigUInt64LE(0));
    const json = Buffer.alloc(n);
    readSync(fd, json, 0, n, 8);
    const obj = JSON.parse(json.toString("utf8")) as Record<string, StEntry>;
    delete (obj as Record<string, unknown>).__metadata__;
    return { dataStart: 8 + n, entries: new Map(Object.entries(obj)) };
  } finally {
    closeSync(fd);
  }
}

/** HF Qwen2 name → llama.cpp name (null: not a tensor llama.cpp loads). */
export function ggufTensorName(hf: string): string | null {
  const n = hf.startsWith("model.") ? hf.slice(6) : hf;
  if (n === "embed_tokens.weight") return "token_embd.weight";
  if (n === "norm.weight") return "output_norm.weight";
  if (hf === "lm_head.weight") return "output.weight";
  const m = /^layers\.(\d+)\.(.+)$/.exec(n);
  if (!m) return null;
  const map: Record<string, string> = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
  };
  const t = map[m[2]];
  return t ? `blk.${m[1]}.${t}` : null;
}

const ORDER = ["attn_norm.weight", "attn_q.weight", "attn_q.bias", "attn_k.weight", "attn_k.bias", "attn_v.weight", "attn_v.bias", "attn_output.weight", "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"];

function orderKey(name: string): [number, number] {
  if (name === "token_embd.weight") return [-1, 0];
  if (name === "output_norm.weight") return [1e9, 0];
  if (name === "output.weight") return [1e9, 1];
  const m = /^blk\.(\d+)\.(.+)$/.exec(name)!;
  return [Number(m[1]), ORDER.indexOf(m[2])];
}

export interface GgufOptions {
  /** `general.name`. Default "synthetic-qwen2". */
  name?: string;
  /** `qwen2.context_length`; default config.json's max_position_embeddings. */
  contextLength?: number;
  /** Byte-token ids to make printable ASCII (see byteTokenTable); for probes with given prompt ids. */
  asciiIds?: number[];
  log?: (line: string) => void;
}

export interface GgufInfo {
  path: string;
  bytes: number;
  tensors: number;
  /** Byte offset of the data section. */
  dataOffset: number;
  vocab: number;
  bos: number;
  eos: number;
  /** The byte-token strings of ids 0..255 (for idsToText). */
  byteTokens: string[];
  /** True when an up-to-date file was already there. */
  reused: boolean;
}

/**
 * Writes a GGUF v3 (`qwen2`, F32) from a float32 HF Qwen2 folder. Reuses `outPath` when it exists, is newer than
 * model.safetensors, has the expected size and its stamp (`<outPath>.stamp.json`: writer version, options)
 * matches.
 */
export function writeGgufF32(checkpointDir: string, outPath: string, opts: GgufOptions = {}): GgufInfo {
  const log = opts.log ?? (() => {});
  const cfg = JSON.parse(readFileSync(join(checkpointDir, "config.json"), "utf8")) as Record<string, unknown>;
  if (cfg.model_type !== "qwen2") throw new Error(`writeGgufF32: model_type ${String(cfg.model_type)} is not qwen2`);
  const stPath = join(checkpointDir, "model.safetensors");
  const { dataStart, entries } = readSafetensorsHeader(stPath);
  const num = (k: string) => {
    const v = cfg[k];
    if (typeof v !== "number") throw new Error(`writeGgufF32: config.json has no numeric ${k}`);
    return v;
  };
  const vocab = num("vocab_size");
  const bos = typeof cfg.bos_token_id === "number" ? cfg.bos_token_id : -1;
  const eos = typeof cfg.eos_token_id === "number" ? cfg.eos_token_id : bos;

  // tensors
  const tensors: { name: string; dims: number[]; src: number; bytes: number; offset: number }[] = [];
  for (const [hf, e] of entries) {
    const name = ggufTensorName(hf);
    if (!name) throw new Error(`writeGgufF32: no llama.cpp name for tensor ${hf}`);
    if (e.dtype !== "F32") throw new Error(`writeGgufF32: ${hf} is ${e.dtype}; only F32 checkpoints are converted`);
    tensors.push({ name, dims: [...e.shape].reverse(), src: dataStart + e.data_offsets[0], bytes: e.data_offsets[1] - e.data_offsets[0], offset: 0 });
  }
  tensors.sort((a, b) => {
    const [x, y] = [orderKey(a.name), orderKey(b.name)];
    return x[0] - y[0] || x[1] - y[1];
  });
  let off = 0;
  for (const t of tensors) {
    t.offset = off;
    off += t.bytes + ((ALIGN - (t.bytes % ALIGN)) % ALIGN);
  }
  const dataBytes = off;

  // metadata
  const { tokens, types } = syntheticVocab(vocab, bos, eos, opts.asciiIds);
  const kvs: [string, KV][] = [
    ["general.architecture", { type: T.STRING, value: "qwen2" }],
    ["general.type", { type: T.STRING, value: "model" }],
    ["general.name", { type: T.STRING, value: opts.name ?? "synthetic-qwen2" }],
    ["general.file_type", { type: T.U32, value: 0 }], // LlamaFileType.ALL_F32
    ["general.alignment", { type: T.U32, value: ALIGN }],
    ["qwen2.block_count", { type: T.U32, value: num("num_hidden_layers") }],
    ["qwen2.context_length", { type: T.U32, value: opts.contextLength ?? num("max_position_embeddings") }],
    ["qwen2.embedding_length", { type: T.U32, value: num("hidden_size") }],
    ["qwen2.feed_forward_length", { type: T.U32, value: num("intermediate_size") }],
    ["qwen2.attention.head_count", { type: T.U32, value: num("num_attention_heads") }],
    ["qwen2.attention.head_count_kv", { type: T.U32, value: num("num_key_value_heads") }],
    ["qwen2.rope.freq_base", { type: T.F32, value: num("rope_theta") }],
    ["qwen2.attention.layer_norm_rms_epsilon", { type: T.F32, value: num("rms_norm_eps") }],
    ["tokenizer.ggml.model", { type: T.STRING, value: "gpt2" }],
    ["tokenizer.ggml.pre", { type: T.STRING, value: "qwen2" }],
    ["tokenizer.ggml.tokens", { type: T.ARRAY, elem: T.STRING, value: tokens }],
    ["tokenizer.ggml.token_type", { type: T.ARRAY, elem: T.I32, value: types }],
    ["tokenizer.ggml.merges", { type: T.ARRAY, elem: T.STRING, value: [] }],
  ];
  if (bos >= 0) kvs.push(["tokenizer.ggml.bos_token_id", { type: T.U32, value: bos }]);
  if (eos >= 0) kvs.push(["tokenizer.ggml.eos_token_id", { type: T.U32, value: eos }]);
  if (bos >= 0) kvs.push(["tokenizer.ggml.padding_token_id", { type: T.U32, value: bos }]);
  kvs.push(["tokenizer.ggml.add_bos_token", { type: T.BOOL, value: 0 }]);

  const w = new Bytes();
  w.u8(0x47), w.u8(0x47), w.u8(0x55), w.u8(0x46); // "GGUF"
  w.u32(GGUF_VERSION);
  w.u64(tensors.length);
  w.u64(kvs.length);
  for (const [k, v] of kvs) writeKv(w, k, v);
  for (const t of tensors) {
    w.str(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(0); // GGML_TYPE_F32
    w.u64(t.offset);
  }
  w.pad(ALIGN);
  const header = w.bytes();
  const total = header.length + dataBytes;
  const info = { path: outPath, bytes: total, tensors: tensors.length, dataOffset: header.length, vocab, bos, eos, byteTokens: tokens.slice(0, Math.min(256, vocab)) };

  // reuse: same size, newer than the checkpoint, and the same writer version + options (sidecar stamp)
  const stampPath = outPath + ".stamp.json";
  const stamp = JSON.stringify({ version: WRITER_VERSION, checkpoint: stPath, checkpointMtime: statSync(stPath).mtimeMs, opts: { name: opts.name, contextLength: opts.contextLength, asciiIds: opts.asciiIds }, bytes: total });
  if (existsSync(outPath) && existsSync(stampPath)) {
    const s = statSync(outPath);
    if (s.size === total && s.mtimeMs >= statSync(stPath).mtimeMs && readFileSync(stampPath, "utf8") === stamp) return { ...info, reused: true };
  }
  rmSync(stampPath, { force: true });
  const t0 = performance.now();
  const tmp = outPath + ".partial";
  const src = openSync(stPath, "r");
  const dst = openSync(tmp, "w");
  try {
    writeSync(dst, header);
    const buf = Buffer.alloc(Math.min(CHUNK, Math.max(ALIGN, ...tensors.map((t) => t.bytes))));
    const zeros = Buffer.alloc(ALIGN);
    for (const t of tensors) {
      for (let done = 0; done < t.bytes; ) {
        const n = Math.min(buf.length, t.bytes - done);
        let got = 0;
        while (got < n) {
          const r = readSync(src, buf, got, n - got, t.src + done + got);
          if (r <= 0) throw new Error(`writeGgufF32: short read in ${t.name}`);
          got += r;
        }
        writeSync(dst, buf, 0, n);
        done += n;
      }
      const pad = (ALIGN - (t.bytes % ALIGN)) % ALIGN;
      if (pad) writeSync(dst, zeros, 0, pad);
    }
  } finally {
    closeSync(src);
    closeSync(dst);
  }
  if (statSync(tmp).size !== total) throw new Error(`writeGgufF32: wrote ${statSync(tmp).size} bytes, expected ${total}`);
  // rename last: a killed run never leaves a truncated file under the final name
  renameSync(tmp, outPath);
  writeFileSync(stampPath, stamp);
  log(`  wrote ${outPath} (${(total / 1e9).toFixed(2)} GB, ${tensors.length} tensors) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return { ...info, reused: false };
}
