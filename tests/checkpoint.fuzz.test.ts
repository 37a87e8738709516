// Issue 12, decoder checkpoints: fuzzing `AutoModelForCausalLM.fromPretrained` with mutated checkpoint folders built
// in memory from the tiny fixtures (llama, gpt2, opt, qwen2, and the sharded llama): config.json (fields deleted,
// altered, of the wrong type, huge/negative/float numbers, rope_scaling shapes, kv heads not dividing, __proto__
// keys, broken JSON), model.safetensors.index.json (missing shards, keys mapped to the wrong file, bad JSON, path
// traversal names) and the shards' bytes (header length, header JSON, dtypes, shapes, offsets, truncation, bit flips).
//
// Each attempt must either resolve to a model (a short forward must then work or throw a ShiraError; the model is
// disposed) or reject with a ShiraError (FormatError, ConfigError, ShapeError, RuntimeError, StateError; plain
// ShiraError only with code IO, for a missing file), within 5 s, and `runtime().liveBytes` must come back to its value
// before the attempt.
// Seeded: CKPT_SEED=<n> CKPT_RUNS=<n>; CKPT_ONLY=<index> replays one attempt. A failure prints the seed, the attempt
// index and the mutations.
// Run: node --import tsx --test tests/checkpoint.fuzz.test.ts

import { Sfc32 as Rng } from "./helpers/random.js";
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { AutoModelForCausalLM, ConfigError, FormatError, RuntimeError, ShapeError, ShiraError, StateError, runtime } from "../src/node.js";
import { TRANSFORMERS } from "./helpers/transformers.js";

const rt = runtime();
const SEED = Number(process.env["CKPT_SEED"] ?? 0xc4e7);
const RUNS = Number(process.env["CKPT_RUNS"] ?? 12_000);
const ONLY = process.env["CKPT_ONLY"] === undefined ? null : Number(process.env["CKPT_ONLY"]);
const TIMEOUT_MS = 5000;

// ----------------------------------------------------------------------------------------------------------------
// the base checkpoints
// ----------------------------------------------------------------------------------------------------------------

type Files = Record<string, Uint8Array>;
const BASES: { name: string; files: Files }[] = [
  ["llama", "model"],
  ["gpt2", "model"],
  ["opt", "model"],
  ["qwen2", "model"],
  ["llama", "model_sharded"],
].map(([fam, sub]) => {
  const dir = join(TRANSFORMERS, fam, sub);
  const files: Files = {};
  for (const f of readdirSync(dir)) files[f] = new Uint8Array(readFileSync(join(dir, f)));
  return { name: `${fam}/${sub}`, files };
});

const enc = new TextEncoder();
const dec = new TextDecoder();
const INDEX = "model.safetensors.index.json";

// ----------------------------------------------------------------------------------------------------------------
// mutations
// ----------------------------------------------------------------------------------------------------------------

const SIZE_KEYS = [
  "hidden_size",
  "n_embd",
  "num_attention_heads",
  "n_head",
  "num_hidden_layers",
  "n_layer",
  "num_key_value_heads",
  "intermediate_size",
  "ffn_dim",
  "n_inner",
  "vocab_size",
  "max_position_embeddings",
  "n_positions",
  "head_dim",
  "word_embed_proj_dim",
  "sliding_window",
];
const OTHER_KEYS = [
  "model_type",
  "rms_norm_eps",
  "layer_norm_epsilon",
  "rope_theta",
  "partial_rotary_factor",
  "rope_scaling",
  "tie_word_embeddings",
  "hidden_act",
  "activation_function",
  "do_layer_norm_before",
  "enable_bias",
  "attention_bias",
  "mlp_bias",
  "use_sliding_window",
  "_remove_final_layer_norm",
  "layer_norm_elementwise_affine",
  "scale_attn_weights",
  "scale_attn_by_inverse_layer_idx",
  "bos_token_id",
  "eos_token_id",
  "pad_token_id",
];
// numbers that fail fast when they are too large (one block, or the whole model, over wasm32's 4 GiB), or are small
const SIZE_VALUES: unknown[] = [0, -1, 1, 2, 3, 4, 5, 7, 8, 16, 32, 63, 65, 96, 128, 256, 1.5, 64.5, 1e-9, -64, 1e9, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, 1e300, -1e300];
const WEIRD_VALUES: unknown[] = ["64", "sixty-four", "", null, true, false, [], [64], [2, 2], {}, { value: 64 }, { __proto__: null }];
const ROPE_SCALINGS: unknown[] = [
  null,
  {},
  [],
  "linear",
  5,
  { type: "linear", factor: 2 },
  { rope_type: "linear", factor: 1 },
  { type: "linear", factor: 0.5 },
  { type: "linear", factor: "2" },
  { type: "linear" },
  { type: "dynamic", factor: 4 },
  { rope_type: "dynamic", factor: -1 },
  { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 },
  { rope_type: "llama3", factor: 8, low_freq_factor: 4, high_freq_factor: 1, original_max_position_embeddings: 64 },
  { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 0 },
  { rope_type: "llama3", factor: 8, low_freq_factor: 0, high_freq_factor: 1e-300, original_max_position_embeddings: -5 },
  { rope_type: "llama3", factor: 8 },
  { rope_type: "yarn", factor: 4 },
  { rope_type: "longrope", short_factor: [1], long_factor: [2] },
  { rope_type: "default" },
  { rope_type: "__proto__" },
  { rope_type: "constructor", factor: 2 },
  { rope_type: 5 },
  { type: null, rope_type: "linear", factor: 1e308 },
];
const MODEL_TYPES: unknown[] = ["llama", "mistral", "qwen2", "opt", "gpt2", "bert", "gpt_neox", "__proto__", "constructor", "toString", "hasOwnProperty", "", "LLAMA", 5, null, ["llama"], { llama: 1 }];

type Mut = string; // a description, printed on failure

function mutateConfigObject(rng: Rng, c: Record<string, unknown>, log: Mut[]): void {
  const kind = rng.int(11);
  const set = (k: string, v: unknown) => {
    c[k] = v;
    log.push(`config.${k} = ${JSON.stringify(v) ?? String(v)}`);
  };
  switch (kind) {
    case 0: {
      const k = rng.pick([...SIZE_KEYS, ...OTHER_KEYS, ...Object.keys(c)]);
      delete c[k];
      log.push(`config: delete ${k}`);
      return;
    }
    case 1:
    case 2:
      return set(rng.pick(SIZE_KEYS), rng.chance(0.8) ? rng.pick(SIZE_VALUES) : rng.pick(WEIRD_VALUES));
    case 3:
      return set("model_type", rng.pick(MODEL_TYPES));
    case 4:
      return set("num_key_value_heads", rng.pick([3, 5, 6, 8, 0, 1, 2, 4, -2, 2.5]));
    case 5:
      return set("rope_scaling", rng.pick(ROPE_SCALINGS));
    case 6:
      return set(rng.pick(["rope_theta", "partial_rotary_factor", "rms_norm_eps", "layer_norm_epsilon"]), rng.pick([0, -1, 0.5, 2, 0.25, 1e308, 1e-300, 0.1, "1", null, [], -0]));
    case 7:
      return set(rng.pick(OTHER_KEYS.slice(6)), rng.pick([true, false, "true", 0, 1, null, "silu", "gelu", "relu", "gelu_new", "gelu_pytorch_tanh", "swish", -1, 1e9, [], [1, 2], [2.5], "1", 2.5]));
    case 8: {
      // own __proto__ / constructor keys (JSON.parse makes them own properties)
      const k = rng.pick(["__proto__", "constructor", "toString", "hasOwnProperty", "valueOf"]);
      const v = rng.pick<unknown>([{ model_type: "gpt2", hidden_size: 1e9 }, { num_hidden_layers: 1e9 }, null, "x", 5, []]);
      Object.defineProperty(c, k, { value: v, enumerable: true, writable: true, configurable: true });
      log.push(`config: own key ${k} = ${JSON.stringify(v)}`);
      return;
    }
    case 9: {
      // a plausible-looking family switch with matching sizes (often a valid config for the wrong weights)
      const mt = rng.pick(["llama", "mistral", "qwen2", "opt", "gpt2"]);
      set("model_type", mt);
      if (mt === "gpt2") Object.assign(c, { n_embd: c["hidden_size"] ?? 64, n_head: c["num_attention_heads"] ?? 4, n_layer: c["num_hidden_layers"] ?? 2 });
      return;
    }
    default:
      return set(rng.pick(["tie_word_embeddings", "do_layer_norm_before", "use_sliding_window", "attention_bias", "mlp_bias", "enable_bias"]), rng.chance(0.5));
  }
}

function mutateText(rng: Rng, text: string, what: string, log: Mut[]): Uint8Array {
  const kind = rng.int(9);
  switch (kind) {
    case 0: {
      const n = rng.int(text.length + 1);
      log.push(`${what}: truncated to ${n} chars`);
      return enc.encode(text.slice(0, n));
    }
    case 1: {
      const tok = rng.pick(["NaN", "Infinity", "-Infinity", "undefined", "1e999", "-1e999", "0x10", "'x'", "//", ",", "}", "{", "[", "\u0000", "\uFEFF", "\\u0000"]);
      const at = rng.int(text.length + 1);
      log.push(`${what}: insert ${JSON.stringify(tok)} at ${at}`);
      return enc.encode(text.slice(0, at) + tok + text.slice(at));
    }
    case 2: {
      // a number replaced by an out-of-range JSON number
      const v = rng.pick(["1e999", "-1e999", "1e308", "9007199254740993", "-0", "0.0000001", "1E2"]);
      const out = text.replace(/(?<=: )-?\d+(\.\d+)?(e-?\d+)?/i, v);
      log.push(`${what}: first number -> ${v}`);
      return enc.encode(out);
    }
    case 3: {
      const dup = rng.pick([`"hidden_size": 32`, `"model_type": "bert"`, `"num_hidden_layers": 1`, `"weight_map": {}`, `"__proto__": {"x": 1}`, `"vocab_size": 1e999`]);
      const at = text.lastIndexOf("}");
      log.push(`${what}: duplicate key ${dup}`);
      return enc.encode(at < 0 ? text : text.slice(0, at) + `, ${dup}` + text.slice(at));
    }
    case 4: {
      const v = rng.pick(["", "null", "[]", "5", '"x"', "true", "{}", "[{}]", " ", "\uFEFF{}"]);
      log.push(`${what}: replaced by ${JSON.stringify(v)}`);
      return enc.encode(v);
    }
    case 5: {
      const b = enc.encode(text);
      const at = rng.int(b.length);
      const v = rng.pick([0x00, 0xff, 0xc3, 0x80, 0x22, 0x5c, 0x7b, 0x7d]);
      log.push(`${what}: byte ${at} = 0x${v.toString(16)}`);
      const out = b.slice();
      out[at] = v;
      return out;
    }
    case 6: {
      log.push(`${what}: UTF-8 BOM prefix`);
      return enc.encode("\uFEFF" + text);
    }
    case 7: {
      const b = enc.encode(text);
      const at = rng.int(b.length);
      const bit = rng.int(8);
      log.push(`${what}: flip bit ${bit} of byte ${at}`);
      const out = b.slice();
      out[at] ^= 1 << bit;
      return out;
    }
    default: {
      log.push(`${what}: deeply nested value`);
      return enc.encode(text.replace(/\{/, `{"deep": ${"[".repeat(5000)}${"]".repeat(5000)}, `));
    }
  }
}

function mutateConfig(rng: Rng, files: Files, log: Mut[]): void {
  const text = dec.decode(files["config.json"]);
  const x = rng.float();
  if (x < 0.03) {
    delete files["config.json"];
    log.push("delete config.json");
  } else if (x < 0.2) {
    files["config.json"] = mutateText(rng, text, "config.json", log);
  } else {
    let c: Record<string, unknown>;
    try {
      c = JSON.parse(text) as Record<string, unknown>;
      if (typeof c !== "object" || c === null) throw new Error("not an object");
    } catch {
      files["config.json"] = mutateText(rng, text, "config.json", log); // an earlier mutation broke it
      return;
    }
    const n = 1 + rng.int(3);
    for (let i = 0; i < n; i++) mutateConfigObject(rng, c, log);
    try {
      files["config.json"] = enc.encode(JSON.stringify(c));
    } catch {
      files["config.json"] = mutateText(rng, text, "config.json (too deep to re-encode)", log);
    }
  }
}

function mutateGenerationConfig(rng: Rng, files: Files, log: Mut[]): void {
  const g = files["generation_config.json"];
  if (!g || rng.chance(0.2)) {
    delete files["generation_config.json"];
    log.push("delete generation_config.json");
    return;
  }
  files["generation_config.json"] = mutateText(rng, dec.decode(g), "generation_config.json", log);
}

const BAD_FILE_NAMES: unknown[] = [
  "../model-00001-of-00002.safetensors",
  "/model-00001-of-00002.safetensors",
  "sub/../model-00001-of-00002.safetensors",
  "..",
  "....//model.safetensors",
  "..\\model-00001-of-00002.safetensors",
  "sub/model-00001-of-00002.safetensors",
  "model-00003-of-00002.safetensors",
  "",
  "model-00001-of-00002.safetensors\u0000",
  "MODEL-00001-OF-00002.SAFETENSORS",
  INDEX,
  "config.json",
  "generation_config.json",
  "__proto__",
  "constructor",
  5,
  null,
  true,
  [],
  {},
];

function mutateIndex(rng: Rng, files: Files, log: Mut[]): void {
  const text = dec.decode(files[INDEX]);
  const shards = Object.keys(files).filter((f) => f.endsWith(".safetensors"));
  const kind = rng.int(10);
  if (kind === 0) {
    files[INDEX] = mutateText(rng, text, INDEX, log);
    return;
  }
  if (kind === 1) {
    const s = rng.pick([INDEX, ...shards]);
    delete files[s];
    log.push(`delete ${s}`);
    return;
  }
  let idx: { weight_map: Record<string, unknown>; [k: string]: unknown };
  try {
    idx = JSON.parse(text);
    if (typeof idx.weight_map !== "object" || idx.weight_map === null || Object.keys(idx.weight_map).length === 0) throw new Error("no weight_map");
  } catch {
    files[INDEX] = mutateText(rng, text, INDEX, log); // an earlier mutation broke it
    return;
  }
  const keys = Object.keys(idx.weight_map);
  const key = rng.pick(keys);
  switch (kind) {
    case 2:
      delete idx.weight_map[key];
      log.push(`index: delete ${key}`);
      break;
    case 3: {
      const other = shards.find((s) => s !== idx.weight_map[key]) ?? "model-00009-of-00002.safetensors";
      idx.weight_map[key] = other;
      log.push(`index: ${key} -> ${other} (the wrong shard)`);
      break;
    }
    case 4:
    case 5: {
      const v = rng.pick(BAD_FILE_NAMES);
      idx.weight_map[key] = v;
      log.push(`index: ${key} -> ${JSON.stringify(v)}`);
      break;
    }
    case 6: {
      const extra = rng.pick(["model.extra.weight", "lm_head.bias", "__proto__", "constructor", "model.layers.2.mlp.up_proj.weight", ""]);
      Object.defineProperty(idx.weight_map, extra, { value: rng.pick(shards), enumerable: true, writable: true, configurable: true });
      log.push(`index: extra key ${JSON.stringify(extra)} -> ${String(idx.weight_map[extra])}`);
      break;
    }
    case 7: {
      const v = rng.pick<unknown>([null, [], "x", 5, [["a", "b"]], undefined]);
      if (v === undefined) delete (idx as Record<string, unknown>)["weight_map"];
      else (idx as Record<string, unknown>)["weight_map"] = v;
      log.push(`index: weight_map = ${JSON.stringify(v) ?? "deleted"}`);
      break;
    }
    case 8: {
      // every key of one shard moved to the other
      const [a, b = "model-00009-of-00002.safetensors"] = shards;
      for (const k of keys) if (idx.weight_map[k] === a) idx.weight_map[k] = b;
      log.push(`index: every ${a} key -> ${b}`);
      break;
    }
    default: {
      idx["metadata"] = rng.pick<unknown>([null, [], "x", { total_size: -1 }, { total_size: 1e300 }, { total_size: "big" }]);
      log.push(`index: metadata = ${JSON.stringify(idx["metadata"])}`);
    }
  }
  try {
    files[INDEX] = enc.encode(JSON.stringify(idx));
  } catch {
    files[INDEX] = mutateText(rng, text, `${INDEX} (too deep to re-encode)`, log);
  }
}

const DTYPES: unknown[] = ["F32", "F16", "BF16", "F64", "I32", "I64", "U8", "I8", "BOOL", "U16", "U32", "U64", "I16", "F8_E4M3", "Q4", "f32", "", 5, null, []];

function splitSafetensors(b: Uint8Array): { header: Record<string, unknown>; data: Uint8Array } | null {
  if (b.length < 8) return null;
  const n = Number(new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true));
  if (8 + n > b.length) return null;
  try {
    return { header: JSON.parse(dec.decode(b.subarray(8, 8 + n))), data: b.subarray(8 + n) };
  } catch {
    return null;
  }
}

function joinSafetensors(headerText: string, data: Uint8Array, pad = 0): Uint8Array {
  const h = enc.encode(headerText + " ".repeat(pad));
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

function mutateShard(rng: Rng, files: Files, log: Mut[]): void {
  const shards = Object.keys(files).filter((f) => f.endsWith(".safetensors"));
  const name = rng.pick(shards);
  const b = files[name];
  if (b.length < 16) {
    log.push(`${name}: (${b.length} bytes, left as is)`);
    return;
  }
  const n = Math.min(b.length - 8, Number(new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true)));
  const what = (s: string) => log.push(`${name}: ${s}`);
  const kind = rng.int(12);
  if (kind <= 4) {
    // structured header edits, re-encoded with the right length
    const st = splitSafetensors(b);
    if (!st) {
      what("(header unreadable, left as is)");
      return;
    }
    const h = st.header;
    const names = Object.keys(h).filter((k) => k !== "__metadata__");
    const t = rng.pick(names);
    const e = h[t] as { dtype: unknown; shape: unknown; data_offsets: unknown };
    const sub = rng.int(10);
    if (sub === 0) {
      e.dtype = rng.pick(DTYPES);
      what(`${t}.dtype = ${JSON.stringify(e.dtype)}`);
    } else if (sub === 1) {
      const shape = e.shape as number[];
      const v = rng.pick<unknown>([[], [0], [shape[0]], [...shape].reverse(), [shape[0] + 1, ...shape.slice(1)], [...shape, 1], [-1, 4], [1.5], ["4"], null, 5, [2 ** 53], [2 ** 31, 2 ** 31]]);
      e.shape = v;
      what(`${t}.shape = ${JSON.stringify(v)}`);
    } else if (sub === 2) {
      const [a, z] = e.data_offsets as [number, number];
      const v = rng.pick<unknown>([[a, z - 4], [a + 4, z + 4], [z, a], [a, a], [0, z - a], [a, 2 ** 53], [-4, z], [a, z + 0.5], [a], [a, z, 0], null, "0,4", [String(a), z]]);
      e.data_offsets = v;
      what(`${t}.data_offsets = ${JSON.stringify(v)}`);
    } else if (sub === 3) {
      delete h[t];
      what(`delete entry ${t}`);
    } else if (sub === 4) {
      const nn = rng.pick([t + "x", t.replace(/^model\./, ""), t.replace(/^model\./, "transformer."), "__proto__", "constructor", t.toUpperCase(), ""]);
      delete h[t];
      Object.defineProperty(h, nn, { value: e, enumerable: true, writable: true, configurable: true });
      what(`rename ${t} -> ${JSON.stringify(nn)}`);
    } else if (sub === 5) {
      const md = rng.pick<unknown>([{}, { format: "pt" }, { a: 1 }, [], "x", null, { format: { x: 1 } }]);
      h["__metadata__"] = md;
      what(`__metadata__ = ${JSON.stringify(md)}`);
    } else if (sub === 6) {
      // an extra tensor: sometimes a valid one appended at the end of the data
      const len = st.data.length;
      const extra = rng.chance(0.5) ? { dtype: "F32", shape: [0], data_offsets: [len, len] } : { dtype: "F32", shape: [1], data_offsets: [len, len + 4] };
      Object.defineProperty(h, rng.pick(["model.extra", "lm_head.bias", t + ".extra", "__proto__"]), { value: extra, enumerable: true, writable: true, configurable: true });
      what(`extra tensor ${JSON.stringify(extra)}`);
    } else if (sub === 7) {
      // a consistent reinterpretation: F32 [a, b] as F16 [a, 2b] (a valid file with the wrong shape)
      const shape = e.shape as number[];
      e.dtype = rng.pick(["F16", "BF16", "I16", "U16"]);
      e.shape = [...shape.slice(0, -1), (shape[shape.length - 1] ?? 1) * 2];
      what(`${t} reinterpreted as ${String(e.dtype)} ${JSON.stringify(e.shape)}`);
    } else if (sub === 8) {
      // two tensors swap their data (same sizes or not)
      const u = rng.pick(names);
      const ut = h[u] as { data_offsets: unknown };
      [e.data_offsets, ut.data_offsets] = [ut.data_offsets, e.data_offsets];
      what(`swap data_offsets of ${t} and ${u}`);
    } else {
      e.dtype = rng.pick(["I32", "U32", "F64", "I64"]);
      what(`${t}.dtype = ${String(e.dtype)} (integer / wider data)`);
    }
    files[name] = joinSafetensors(JSON.stringify(h), st.data, rng.chance(0.2) ? rng.int(9) : 0);
    return;
  }
  const out = b.slice();
  const dv = new DataView(out.buffer);
  switch (kind) {
    case 5: {
      const v = rng.pick<bigint>([0n, 1n, 2n, BigInt(n - 1), BigInt(n + 1), BigInt(n + 8), BigInt(b.length), BigInt(b.length - 8), BigInt(b.length - 7), 2n ** 32n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n, 100_000_001n]);
      dv.setBigUint64(0, v, true);
      what(`header length ${n} -> ${v}`);
      break;
    }
    case 6:
    case 7: {
      const k = 1 + rng.int(3);
      const flips: string[] = [];
      for (let i = 0; i < k; i++) {
        const at = 8 + rng.int(n);
        const bit = rng.int(8);
        out[at] ^= 1 << bit;
        flips.push(`${at}:${bit}`);
      }
      what(`header bit flips ${flips.join(" ")}`);
      break;
    }
    case 8: {
      const at = rng.chance(0.5) ? rng.int(8 + n + 1) : rng.int(b.length);
      files[name] = b.subarray(0, at);
      what(`truncated to ${at} of ${b.length} bytes`);
      return;
    }
    case 9: {
      const k = 1 + rng.int(16);
      const ext = new Uint8Array(b.length + k);
      ext.set(b);
      what(`${k} bytes appended`);
      files[name] = ext;
      return;
    }
    case 10: {
      const at = 8 + n + rng.int(b.length - 8 - n);
      out[at] ^= 1 << rng.int(8);
      if (rng.chance(0.5)) for (let i = 0; i < 4 && at + i < out.length; i++) out[at + i] = 0xff; // a NaN
      what(`data bytes changed at ${at}`);
      break;
    }
    default: {
      const v = rng.pick([new Uint8Array(0), new Uint8Array(7), new Uint8Array(8), Uint8Array.from({ length: 64 }, () => rng.int(256)), enc.encode("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 451936\n")]);
      files[name] = v;
      what(`replaced by ${v.length} other bytes`);
      return;
    }
  }
  files[name] = out;
}

function makeCase(rng: Rng): { base: number; files: Files; log: Mut[] } {
  const base = rng.int(BASES.length);
  const files: Files = { ...BASES[base].files };
  const log: Mut[] = [`base ${BASES[base].name}`];
  const sharded = INDEX in files;
  const n = rng.chance(0.75) ? 1 : 2 + rng.int(2);
  for (let i = 0; i < n; i++) {
    const x = rng.float();
    if (x < 0.45) mutateConfig(rng, files, log);
    else if (x < 0.5) mutateGenerationConfig(rng, files, log);
    else if (sharded && x < 0.7 && INDEX in files) mutateIndex(rng, files, log);
    else if (Object.keys(files).some((f) => f.endsWith(".safetensors"))) mutateShard(rng, files, log);
  }
  return { base, files, log };
}

// ----------------------------------------------------------------------------------------------------------------
// the property
// ----------------------------------------------------------------------------------------------------------------

const TYPED = [FormatError, ConfigError, ShapeError, RuntimeError, StateError];

function classify(e: unknown): string {
  if (!(e instanceof ShiraError)) throw new Error(`not a ShiraError: ${e instanceof Error ? `${e.constructor.name}: ${e.message}\n${e.stack}` : String(e)}`);
  const sub = TYPED.find((c) => e instanceof c);
  if (!sub && e.code !== "IO") throw new Error(`a plain ShiraError (no subclass) with code ${e.code}: ${e.message}`);
  assert.equal(typeof e.code, "string");
  assert.ok(e.message.length > 0);
  return `${sub ? sub.name : "ShiraError"} ${e.code}`;
}

async function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t0 = performance.now();
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer after ${TIMEOUT_MS} ms (a hang)`)), TIMEOUT_MS);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    // a synchronous loop cannot be interrupted by the timer: measure it too
    const ms = performance.now() - t0;
    if (ms > TIMEOUT_MS) throw new Error(`${what}: took ${ms.toFixed(0)} ms (over ${TIMEOUT_MS} ms)`);
  }
}

/** One attempt: returns "ok" or the error class and code. */
async function attempt(files: Files): Promise<string> {
  let model;
  try {
    model = await withTimeout(AutoModelForCausalLM.fromPretrained(files), "fromPretrained");
  } catch (e) {
    if (e instanceof Error && /no answer after|took \d+ ms/.test(e.message)) throw e;
    return classify(e);
  }
  try {
    // a loaded model runs (or refuses with a typed error)
    const V = model.config.vocabSize;
    try {
      const y = model.forward([[0, Math.min(1, V - 1)]], { logits: "last" });
      assert.deepEqual(y.shape, [1, 1, V]);
      y.free();
    } catch (e) {
      return `ok, forward: ${classify(e)}`;
    }
    return "ok";
  } finally {
    model.dispose();
  }
}

test(`fromPretrained on ${RUNS} mutated checkpoints: a model or a typed ShiraError, no hang, no leak`, async (t) => {
  const counts = new Map<string, number>();
  const t0 = performance.now();
  let slowest = 0;
  let slowestCase = "";
  for (let i = 0; i < RUNS; i++) {
    const rng = new Rng((SEED * 1_000_003 + i) >>> 0);
    const c = makeCase(rng);
    if (ONLY !== null && i !== ONLY) continue;
    const live = rt.liveBytes;
    const blocks = rt.liveBlocks;
    const a0 = performance.now();
    let outcome: string;
    try {
      outcome = await attempt(c.files);
      assert.equal(rt.liveBytes, live, `liveBytes after the attempt (outcome ${outcome})`);
      assert.equal(rt.liveBlocks, blocks, `liveBlocks after the attempt (outcome ${outcome})`);
    } catch (e) {
      throw new Error(`checkpoint fuzz failed: CKPT_SEED=${SEED} attempt ${i} (replay: CKPT_SEED=${SEED} CKPT_RUNS=${i + 1} CKPT_ONLY=${i})\nmutations:\n  ${c.log.join("\n  ")}\n${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    const ms = performance.now() - a0;
    if (ms > slowest) {
      slowest = ms;
      slowestCase = `${i}: ${c.log.join("; ")} -> ${outcome}`;
    }
    counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
  }
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  const sorted = [...counts].sort((a, b) => b[1] - a[1]);
  const ok = sorted.filter(([k]) => k.startsWith("ok")).reduce((a, [, v]) => a + v, 0);
  t.diagnostic(`seed ${SEED}: ${total} mutated checkpoints in ${((performance.now() - t0) / 1000).toFixed(1)} s; ${ok} loaded, ${total - ok} refused with a typed error`);
  for (const [k, v] of sorted) t.diagnostic(`  ${String(v).padStart(6)}  ${k}`);
  t.diagnostic(`slowest attempt: ${slowest.toFixed(0)} ms (${slowestCase.slice(0, 300)})`);
  if (ONLY === null && RUNS >= 10_000) {
    assert.ok(ok > 500, `only ${ok} mutated checkpoints loaded`);
    for (const c of ["FormatError", "ConfigError", "ShapeError", "RuntimeError"]) {
      assert.ok(sorted.some(([k]) => k.startsWith(c)), `never saw a ${c}`);
    }
  }
});

// ----------------------------------------------------------------------------------------------------------------
// cases this fuzzer found (fixed; kept as regression tests)
// ----------------------------------------------------------------------------------------------------------------

const llamaWith = (patch: Record<string, unknown>): Files => {
  const files: Files = { ...BASES[0].files };
  files["config.json"] = enc.encode(JSON.stringify({ ...JSON.parse(dec.decode(files["config.json"])), ...patch }));
  return files;
};

test(
  "found: a config.json that describes more weights than the checkpoint holds is refused before the model is allocated",
  async () => {
    const files = llamaWith({ num_hidden_layers: 200 });
    const weights = files["model.safetensors"].length;
    const live = rt.liveBytes;
    rt.resetPeak();
    await assert.rejects(AutoModelForCausalLM.fromPretrained(files), (e: unknown) => e instanceof ShapeError && e.code === "STATE_DICT_MISMATCH");
    assert.equal(rt.liveBytes, live);
    const peak = rt.peakLiveBytes - live;
    assert.ok(peak <= 2 * weights, `a load refused for a layer-count mismatch allocated ${peak} bytes first (the checkpoint holds ${weights})`);
  },
);

test(
  "a missing shard is a ShiraError with code IO naming the file (I/O errors are ShiraError itself, see docs/errors.md)",
  async () => {
    const files: Files = { ...BASES[4].files };
    delete files["model-00002-of-00002.safetensors"];
    await assert.rejects(AutoModelForCausalLM.fromPretrained(files), (e: unknown) => {
      assert.ok(e instanceof ShiraError && e.code === "IO", String(e));
      assert.match((e as Error).message, /model-00002-of-00002\.safetensors/);
      return true;
    });
  },
);

test("config.json RoPE fields that cannot build the tables are ConfigErrors (fixed in src/models/config.ts)", async () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ partial_rotary_factor: 1e308 }, "partial_rotary_factor"],
    [{ partial_rotary_factor: 0 }, "partial_rotary_factor"],
    [{ partial_rotary_factor: -1 }, "partial_rotary_factor"],
    [{ partial_rotary_factor: 2 }, "partial_rotary_factor"],
    [{ partial_rotary_factor: 0.1 }, "partial_rotary_factor"], // 16 * 0.1 = 1 rotated dimension
    [{ head_dim: 15 }, "head_dim"], // odd
    [{ rope_theta: 0 }, "rope_theta"],
    [{ rope_theta: -10000 }, "rope_theta"],
  ];
  for (const [patch, field] of cases) {
    const live = rt.liveBytes;
    await assert.rejects(
      AutoModelForCausalLM.fromPretrained(llamaWith(patch)),
      (e: unknown) => e instanceof ConfigError && e.code === "CONFIG_INVALID" && e.details["field"] === field,
      JSON.stringify(patch),
    );
    assert.equal(rt.liveBytes, live);
  }
  // a valid partial rotation still loads (the weights do not depend on it)
  const m = await AutoModelForCausalLM.fromPretrained(llamaWith({ partial_rotary_factor: 0.5 }));
  assert.equal(m.config.rope!.dim, 8);
  m.dispose();
});

test("a config.json whose weights cannot fit in wasm32 memory is refused at once (fixed in src/models/config.ts)", async () => {
  for (const patch of [{ num_hidden_layers: 1e9 }, { num_hidden_layers: 2 ** 31 }, { intermediate_size: 2 ** 40 }, { hidden_size: 2 ** 20, num_attention_heads: 2 ** 14 }]) {
    const t0 = performance.now();
    await assert.rejects(AutoModelForCausalLM.fromPretrained(llamaWith(patch)), (e: unknown) => e instanceof RuntimeError && e.code === "OUT_OF_MEMORY", JSON.stringify(patch));
    assert.ok(performance.now() - t0 < 1000, `${JSON.stringify(patch)}: refused only after ${(performance.now() - t0).toFixed(0)} ms`);
  }
});
