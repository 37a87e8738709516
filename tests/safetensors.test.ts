// Tests for src/io/safetensors.ts, byte-source.ts and node-source.ts against the PEFT fixtures and hand-made files.
// Run: node --import tsx --test tests/safetensors.test.ts

import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { FIXTURES } from "./helpers/fixtures.js";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import { FormatError, ShapeError, ShiraError } from "../src/errors.js";
import {
  DTYPE_SIZE,
  DTYPES,
  MAX_HEADER_BYTES,
  bf16ToF32,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  openSafetensors,
  readSafetensors,
  toFloat32,
  toInt32,
  writeSafetensors,
  type Dtype,
  type TensorInput,
} from "../src/io/safetensors.js";
import { blobSource, bytesSource, urlSource, type ByteSource } from "../src/io/byte-source.js";
import { openFileSource, readFileBytes, writeFileBytes } from "../src/io/node-source.js";

// ----------------------------------------------------------------------------------------------------------------
// helpers
// ----------------------------------------------------------------------------------------------------------------

const FIX = FIXTURES;

const fx = (p: string): Uint8Array => new Uint8Array(readFileSync(join(FIX, p)));

/** Independent decoding of one tensor straight from the file bytes with a DataView. */
function rawTensorBytes(file: Uint8Array, name: string): { dtype: string; shape: number[]; bytes: Uint8Array } {
  const dv = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const n = Number(dv.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + n)));
  const e = header[name];
  return { dtype: e.dtype, shape: e.shape, bytes: file.subarray(8 + n + e.data_offsets[0], 8 + n + e.data_offsets[1]) };
}
function dvF32(b: Uint8Array): number[] {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return Array.from({ length: b.length / 4 }, (_, i) => dv.getFloat32(4 * i, true));
}
function dvI32(b: Uint8Array): number[] {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return Array.from({ length: b.length / 4 }, (_, i) => dv.getInt32(4 * i, true));
}
function dvI64(b: Uint8Array): bigint[] {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return Array.from({ length: b.length / 8 }, (_, i) => dv.getBigInt64(8 * i, true));
}
/** Reference binary16 decoding by the textbook formula (not bit manipulation). */
function refF16(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m === 0 ? s * Infinity : NaN;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}
const sameBits = (a: Float32Array, b: Float32Array): void =>
  assert.deepEqual(new Uint32Array(a.buffer, a.byteOffset, a.length), new Uint32Array(b.buffer, b.byteOffset, b.length));

/** Builds a file from a header string (padded to 8 unless `pad: false`) and data bytes; `n` overrides N. */
function mk(header: string, data: Uint8Array | number = 0, opts: { n?: bigint; pad?: boolean } = {}): Uint8Array {
  let h = new TextEncoder().encode(header);
  if (opts.pad !== false && h.length % 8 !== 0) {
    const p = new Uint8Array(Math.ceil(h.length / 8) * 8).fill(0x20);
    p.set(h);
    h = p;
  }
  return mkRaw(h, typeof data === "number" ? new Uint8Array(data) : data, opts.n);
}
function mkRaw(headerBytes: Uint8Array, data: Uint8Array, n?: bigint): Uint8Array {
  const out = new Uint8Array(8 + headerBytes.length + data.length);
  new DataView(out.buffer).setBigUint64(0, n ?? BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  out.set(data, 8 + headerBytes.length);
  return out;
}
const entry = (dtype: string, shape: unknown[], offs: unknown[]): string =>
  JSON.stringify({ dtype, shape, data_offsets: offs });

/** Asserts that fn throws a FormatError (or `cls`) with `code`, and returns it. */
function throwsCode(fn: () => unknown, code: string, cls: Function = FormatError): ShiraError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err !== undefined, `expected ${code}, nothing was thrown`);
  assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
  assert.equal((err as ShiraError).code, code, (err as Error).message);
  return err as ShiraError;
}
async function rejectsCode(p: Promise<unknown>, code: string): Promise<ShiraError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof ShiraError, String(e));
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected ${code}, nothing was thrown`);
}

/** Wraps a source and counts the bytes read. */
function counting(src: ByteSource): ByteSource & { bytesRead: number; reads: [number, number][] } {
  const c = {
    size: src.size,
    bytesRead: 0,
    reads: [] as [number, number][],
    async read(offset: number, length: number) {
      c.bytesRead += length;
      c.reads.push([offset, length]);
      return src.read(offset, length);
    },
    async close() {
      await src.close?.();
    },
  };
  return c;
}

const ALL_FIXTURES = [
  "mlp/model.safetensors",
  "mlp/alpha/adapter_model.safetensors",
  "mlp/beta/adapter_model.safetensors",
  "mlp/cases.safetensors",
  "randperm/randperm.safetensors",
  "variants/alpha_windows/adapter_model.safetensors",
  "variants/alpha_windows/expected.safetensors",
  "variants/alpha_bf16/adapter_model.safetensors",
  "variants/alpha_bf16/expected.safetensors",
  "variants/alpha_f16/adapter_model.safetensors",
  "variants/alpha_f16/expected.safetensors",
];

// ----------------------------------------------------------------------------------------------------------------
// fixtures
// ----------------------------------------------------------------------------------------------------------------

describe("PEFT fixtures", () => {
  test("mlp/model.safetensors: names, dtypes, shapes, values", () => {
    const bytes = fx("mlp/model.safetensors");
    const f = readSafetensors(bytes);
    assert.deepEqual(f.metadata, { format: "pt" });
    assert.deepEqual(f.names(), [
      "lin0.bias", "lin0.weight", "lin1.bias", "lin1.weight", "lin2.bias", "lin2.weight", "lin3.bias", "lin3.weight",
    ]);
    const shapes: Record<string, number[]> = {
      "lin0.bias": [20], "lin0.weight": [20, 10], "lin1.bias": [40], "lin1.weight": [40, 20],
      "lin2.bias": [30], "lin2.weight": [30, 40], "lin3.bias": [10], "lin3.weight": [10, 30],
    };
    for (const [name, shape] of Object.entries(shapes)) {
      const e = f.entry(name);
      assert.equal(e.dtype, "F32");
      assert.deepEqual(e.shape, shape);
      assert.equal(e.numel, shape.reduce((a, b) => a * b, 1));
      assert.equal(e.byteLength, e.numel * 4);
      const w = f.f32(name);
      assert.equal(w.length, e.numel);
      assert.deepEqual(Array.from(w), dvF32(rawTensorBytes(bytes, name).bytes));
    }
    assert.equal(f.headerLength, 592);
    assert.equal(f.dataStart, 600);
    assert.deepEqual(f.entry("lin3.weight").dataOffsets, [9200, 10400]);
    // PyTorch's default Linear init: |w| <= 1/sqrt(in_features)
    assert.ok(f.f32("lin0.weight").every((v) => Math.abs(v) <= 1 / Math.sqrt(10)));
  });

  test("F32 tensors are zero-copy views when aligned, copies otherwise", () => {
    const bytes = fx("mlp/model.safetensors");
    const f = readSafetensors(bytes);
    const w = f.f32("lin0.weight");
    assert.equal(w.buffer, bytes.buffer);
    assert.equal(w.byteOffset, bytes.byteOffset + 600 + 80);
    // same file at an odd offset inside a bigger buffer: values equal, but copied
    const shifted = new Uint8Array(bytes.length + 1);
    shifted.set(bytes, 1);
    const g = readSafetensors(shifted.subarray(1));
    const w2 = g.f32("lin0.weight");
    assert.notEqual(w2.buffer, shifted.buffer);
    sameBits(w2, w);
    // also from an ArrayBuffer
    const h = readSafetensors(bytes.slice().buffer);
    sameBits(h.f32("lin0.weight"), w);
  });

  test("mlp/alpha and mlp/beta: adapter tensors, indices agree with cases' dense deltas", () => {
    const cases = readSafetensors(fx("mlp/cases.safetensors"));
    const layers = {
      alpha: { lin0: [20, 10, 30], lin2: [30, 40, 70] },
      beta: { lin1: [40, 20, 120], lin2: [30, 40, 140], lin3: [10, 30, 80] },
    } as const;
    for (const [adapter, mods] of Object.entries(layers)) {
      const bytes = fx(`mlp/${adapter}/adapter_model.safetensors`);
      const f = readSafetensors(bytes);
      const ms = Object.keys(mods);
      assert.deepEqual(f.names(), [
        ...ms.map((m) => `base_model.model.${m}.shira_weight`),
        ...ms.map((m) => `base_model.model.${m}.shira_indices`),
      ]);
      for (const [m, [out, inn, nnz]] of Object.entries(mods) as [string, readonly number[]][]) {
        const we = f.entry(`base_model.model.${m}.shira_weight`);
        const ie = f.entry(`base_model.model.${m}.shira_indices`);
        assert.equal(we.dtype, "F32");
        assert.deepEqual(we.shape, [nnz]);
        assert.equal(ie.dtype, "I32");
        assert.deepEqual(ie.shape, [2, nnz]);
        const w = f.f32(we.name);
        const idx = f.i32(ie.name);
        assert.deepEqual(Array.from(idx), dvI32(rawTensorBytes(bytes, ie.name).bytes));
        const delta = cases.f32(`delta.${adapter}.${m}`);
        let prev = -1;
        for (let j = 0; j < nnz!; j++) {
          const r = idx[j]!;
          const c = idx[nnz! + j]!;
          assert.ok(r >= 0 && r < out! && c >= 0 && c < inn!);
          const flat = r * inn! + c;
          assert.ok(flat > prev, "indices sorted row-major and unique");
          prev = flat;
          assert.equal(delta[flat], w[j]);
        }
      }
    }
  });

  test("mlp/cases.safetensors: 24 F32 tensors with the documented shapes", () => {
    const f = readSafetensors(fx("mlp/cases.safetensors"));
    assert.equal(f.names().length, 24);
    assert.deepEqual(f.names(), [...f.names()].sort());
    for (const e of f.entries()) assert.equal(e.dtype, "F32");
    assert.deepEqual(f.entry("x").shape, [4, 10]);
    assert.deepEqual(f.entry("effective.both.lin2.weight").shape, [30, 40]);
    // out.* are log-probabilities: each row's exp sums to 1
    const out = f.f32("out.base");
    for (let r = 0; r < 4; r++) {
      let s = 0;
      for (let c = 0; c < 10; c++) s += Math.exp(out[r * 10 + c]!);
      assert.ok(Math.abs(s - 1) < 1e-5);
    }
  });

  test("randperm: I64 tensors convert to int32 and float32; permutation prefixes", () => {
    const bytes = fx("randperm/randperm.safetensors");
    const f = readSafetensors(bytes);
    for (const name of f.names()) {
      const e = f.entry(name);
      assert.equal(e.dtype, "I64");
      const ref = dvI64(rawTensorBytes(bytes, name).bytes);
      assert.equal(ref.length, e.numel);
      if (name.startsWith("n")) {
        const n = Number(/^n(\d+)_/.exec(name)![1]);
        assert.equal(e.numel, Math.min(n, 500));
        const v = f.i32(name);
        assert.deepEqual(Array.from(v, BigInt), ref);
        assert.equal(new Set(v).size, v.length, "no repeats in a permutation");
        assert.ok(v.every((x) => x >= 0 && x < n));
        assert.deepEqual(Array.from(f.f32(name)), Array.from(v)); // all < 2^24: exact
      }
    }
    // raw mt19937 outputs are 32-bit unsigned: int32 conversion must refuse (not wrap) the first one >= 2^31
    const mt = dvI64(rawTensorBytes(bytes, "mt19937_seed3").bytes);
    const first = mt.findIndex((v) => v >= 2n ** 31n);
    assert.ok(first >= 0);
    const err = throwsCode(() => f.i32("mt19937_seed3"), "SAFETENSORS_VALUE_RANGE");
    assert.match(err.message, /"mt19937_seed3"/);
    assert.ok(err.message.includes(`element ${first} `), err.message);
    assert.ok(err.message.includes(String(mt[first])), err.message);
    assert.equal(err.details["tensor"], "mt19937_seed3");
    assert.equal(err.details["index"], first);
    assert.equal(err.details["value"], String(mt[first]));
    // float32 of 32-bit values: correctly rounded
    const f32 = f.f32("mt19937_seed3");
    for (let i = 0; i < mt.length; i++) assert.equal(f32[i], Math.fround(Number(mt[i])));
  });

  test("variants: F16, BF16 and F32-index adapters decode to the expected float32 values", () => {
    const alpha = readSafetensors(fx("mlp/alpha/adapter_model.safetensors"));
    for (const [variant, wDtype, iDtype] of [
      ["alpha_f16", "F16", "I32"],
      ["alpha_bf16", "BF16", "I32"],
      ["alpha_windows", "F32", "F32"],
    ] as const) {
      const bytes = fx(`variants/${variant}/adapter_model.safetensors`);
      const f = readSafetensors(bytes);
      const exp = readSafetensors(fx(`variants/${variant}/expected.safetensors`));
      for (const m of ["lin0", "lin2"]) {
        const we = f.entry(`base_model.model.${m}.shira_weight`);
        assert.equal(we.dtype, wDtype);
        assert.equal(f.entry(`base_model.model.${m}.shira_indices`).dtype, iDtype);
        const w = f.f32(we.name);
        sameBits(w, exp.f32(`shira_weight_f32.${m}`));
        // independent decoding of the 16-bit patterns
        if (wDtype !== "F32") {
          const raw = rawTensorBytes(bytes, we.name).bytes;
          const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
          for (let i = 0; i < w.length; i++) {
            const h = dv.getUint16(2 * i, true);
            const ref: number = wDtype === "F16" ? refF16(h) : new DataView(new Uint32Array([h * 65536]).buffer).getFloat32(0, true);
            assert.equal(w[i], ref);
          }
          // the rounded values are the nearest 16-bit values to alpha's float32 values
          const a = alpha.f32(`base_model.model.${m}.shira_weight`);
          const back = Array.from(a, wDtype === "F16" ? f32ToF16 : f32ToBf16);
          assert.deepEqual(Array.from(new Uint16Array(raw.slice().buffer)), back);
        }
        // indices: identical to mlp/alpha's, whatever the stored dtype
        assert.deepEqual(f.i32(`base_model.model.${m}.shira_indices`), alpha.i32(`base_model.model.${m}.shira_indices`));
      }
    }
    // windows weights are mlp/alpha's exactly
    const win = readSafetensors(fx("variants/alpha_windows/adapter_model.safetensors"));
    sameBits(win.f32("base_model.model.lin2.shira_weight"), alpha.f32("base_model.model.lin2.shira_weight"));
  });

  test("writing what was read reproduces every fixture byte for byte", () => {
    for (const p of ALL_FIXTURES) {
      const bytes = fx(p);
      const f = readSafetensors(bytes);
      assert.deepEqual(f.metadata, { format: "pt" });
      const rec: Record<string, TensorInput> = {};
      // insert in reverse to prove the writer orders by itself
      for (const name of f.names().reverse()) {
        const t = f.get(name);
        rec[name] = { dtype: t.dtype, shape: t.shape, data: t.bytes };
      }
      const out = writeSafetensors(rec, { format: "pt" });
      assert.equal(out.length, bytes.length, p);
      assert.ok(Buffer.from(out).equals(Buffer.from(bytes)), `${p} differs`);
    }
    // and with typed arrays (not raw bytes) through a Map
    const alphaBytes = fx("mlp/alpha/adapter_model.safetensors");
    const alpha = readSafetensors(alphaBytes);
    const m = new Map<string, TensorInput>();
    for (const e of alpha.entries()) {
      m.set(e.name, { dtype: e.dtype, shape: e.shape, data: e.dtype === "F32" ? alpha.f32(e.name) : alpha.i32(e.name) });
    }
    assert.ok(Buffer.from(writeSafetensors(m, { format: "pt" })).equals(Buffer.from(alphaBytes)));
  });

  test("rewriting alpha's F32 weights as F16/BF16 from Float32Array reproduces the variant files", () => {
    const alpha = readSafetensors(fx("mlp/alpha/adapter_model.safetensors"));
    for (const [variant, dtype] of [["alpha_f16", "F16"], ["alpha_bf16", "BF16"]] as const) {
      const rec: Record<string, TensorInput> = {};
      for (const e of alpha.entries()) {
        rec[e.name] = e.dtype === "F32" ? { dtype, shape: e.shape, data: alpha.f32(e.name) } : { dtype: "I32", shape: e.shape, data: alpha.i32(e.name) };
      }
      const out = writeSafetensors(rec, { format: "pt" });
      assert.ok(Buffer.from(out).equals(Buffer.from(fx(`variants/${variant}/adapter_model.safetensors`))), variant);
    }
  });

  test("bad/: the five safetensors-level cases give the manifest's code, the other five parse", () => {
    const manifest = JSON.parse(readFileSync(join(FIX, "bad", "manifest.json"), "utf8")) as {
      cases: { name: string; defective_file: string; error: string }[];
    };
    assert.equal(manifest.cases.length, 10);
    let rejected = 0;
    for (const c of manifest.cases) {
      const bytes = fx(`bad/${c.name}/adapter_model.safetensors`);
      if (c.error.startsWith("SAFETENSORS_")) {
        const err = throwsCode(() => readSafetensors(bytes), c.error);
        assert.ok(err.message.startsWith("safetensors: "));
        rejected++;
      } else {
        const f = readSafetensors(bytes);
        assert.equal(f.names().length, 4, c.name);
        for (const e of f.entries()) (e.dtype === "F32" ? f.f32(e.name) : f.i32(e.name));
      }
    }
    assert.equal(rejected, 5);
  });

  test("bad/: messages name the tensor and the offending values", () => {
    const msg = (c: string) => throwsCode(() => readSafetensors(fx(`bad/${c}/adapter_model.safetensors`)), "" + codeOf(c));
    const codeOf = (c: string) =>
      ({
        truncated: "SAFETENSORS_INCOMPLETE",
        header_length_too_large: "SAFETENSORS_HEADER_LENGTH",
        overlapping_offsets: "SAFETENSORS_OFFSETS",
        byte_length_mismatch: "SAFETENSORS_TENSOR_SIZE",
        unknown_dtype: "SAFETENSORS_DTYPE",
      })[c];
    let e = msg("byte_length_mismatch");
    assert.equal(
      e.message,
      'safetensors: tensor "base_model.model.lin2.shira_weight" has data_offsets [120, 396] (276 bytes) but F32 [70] needs 280 bytes',
    );
    assert.equal(e.details["tensor"], "base_model.model.lin2.shira_weight");
    assert.equal(e.details["expectedBytes"], 280);
    e = msg("overlapping_offsets");
    assert.match(e.message, /"base_model\.model\.lin2\.shira_weight" has data_offsets \[116, 396\].*overlaps.*"base_model\.model\.lin0\.shira_weight" at \[0, 120\]/);
    assert.equal(e.details["tensor"], "base_model.model.lin2.shira_weight");
    e = msg("unknown_dtype");
    assert.match(e.message, /"base_model\.model\.lin0\.shira_weight" has unknown dtype "Q7"/);
    assert.equal(e.details["dtype"], "Q7");
    e = msg("header_length_too_large");
    assert.match(e.message, /header length 65536 is larger than the file \(1616 bytes/);
    e = msg("truncated");
    assert.match(e.message, /1019 bytes.*1616.*inside tensor "base_model\.model\.lin0\.shira_indices"/);
    assert.equal(e.details["tensor"], "base_model.model.lin0.shira_indices");
  });
});

// ----------------------------------------------------------------------------------------------------------------
// hand-made malformed files
// ----------------------------------------------------------------------------------------------------------------

describe("malformed headers", () => {
  const ok = `{"__metadata__":{"format":"pt"},"a":${entry("F32", [2], [0, 8])},"b":${entry("I32", [1], [8, 12])}}`;

  test("the base case is valid", () => {
    const f = readSafetensors(mk(ok, 12));
    assert.deepEqual(f.names(), ["a", "b"]);
    assert.deepEqual(f.metadata, { format: "pt" });
  });

  test("file shorter than 8 bytes -> SAFETENSORS_HEADER_LENGTH", () => {
    for (let n = 0; n < 8; n++) {
      const e = throwsCode(() => readSafetensors(new Uint8Array(n)), "SAFETENSORS_HEADER_LENGTH");
      assert.match(e.message, new RegExp(`file has ${n} bytes`));
    }
  });

  test("N larger than the file or the limit -> SAFETENSORS_HEADER_LENGTH (no allocation)", () => {
    const file = mk(ok, 12);
    const big = (n: bigint) => {
      const b = file.slice();
      new DataView(b.buffer).setBigUint64(0, n, true);
      return b;
    };
    throwsCode(() => readSafetensors(big(BigInt(file.length - 7))), "SAFETENSORS_HEADER_LENGTH");
    for (const n of [2n ** 53n, 2n ** 64n - 1n, 2n ** 32n, BigInt(MAX_HEADER_BYTES + 1)]) {
      const e = throwsCode(() => readSafetensors(big(n)), "SAFETENSORS_HEADER_LENGTH");
      assert.ok(e.message.includes(n.toString()), e.message);
      assert.match(e.message, /limit of 100000000/);
    }
    // a header length just over the limit, in a file that is actually that big: still refused by the limit
    const huge = new Uint8Array(8 + MAX_HEADER_BYTES + 8);
    new DataView(huge.buffer).setBigUint64(0, BigInt(MAX_HEADER_BYTES + 8), true);
    huge[8] = 0x7b;
    throwsCode(() => readSafetensors(huge), "SAFETENSORS_HEADER_LENGTH");
  });

  test("header not starting with '{' -> SAFETENSORS_HEADER", () => {
    for (const h of [` ${ok}`, `[1]`, `"x"`, `\ufeff${ok}`, ``]) {
      const e = throwsCode(() => readSafetensors(mk(h, 12)), "SAFETENSORS_HEADER");
      assert.match(e.message, /must start with "\{"/);
    }
  });

  test("invalid UTF-8 -> SAFETENSORS_HEADER with the byte offset", () => {
    for (const bad of [[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf4, 0x90, 0x80, 0x80]]) {
      const pre = new TextEncoder().encode('{"a');
      const post = new TextEncoder().encode(`":${entry("F32", [0], [0, 0])}}`);
      const h = new Uint8Array([...pre, ...bad, ...post]);
      const e = throwsCode(() => readSafetensors(mkRaw(h, new Uint8Array(0))), "SAFETENSORS_HEADER");
      assert.match(e.message, /not valid UTF-8 \(at header byte 3:/);
    }
  });

  test("invalid JSON -> SAFETENSORS_HEADER", () => {
    for (const h of [`{`, `{"a":}`, `{"a":1,}`, `{} x`, `{'a':1}`, `{"a":${entry("F32", [0], [0, 0])}}}`]) {
      const e = throwsCode(() => readSafetensors(mk(h, 0)), "SAFETENSORS_HEADER");
      assert.match(e.message, /not valid JSON/);
    }
  });

  test("trailing whitespace padding is accepted; unpadded headers too", () => {
    const h = `{"a":${entry("U8", [3], [0, 3])}}`;
    assert.deepEqual(readSafetensors(mk(h + "          ", new Uint8Array([1, 2, 3]), { pad: false })).i32("a"), new Int32Array([1, 2, 3]));
    assert.deepEqual(readSafetensors(mk(h, new Uint8Array([1, 2, 3]), { pad: false })).i32("a"), new Int32Array([1, 2, 3]));
  });

  test("metadata that is not a map of strings -> SAFETENSORS_METADATA", () => {
    for (const [md, bad] of [
      [`{"format":1}`, "1"],
      [`{"format":"pt","x":null}`, "null"],
      [`{"x":{"y":"z"}}`, '{"y":"z"}'],
      [`{"x":["a"]}`, '["a"]'],
      [`"pt"`, '"pt"'],
      [`null`, "null"],
      [`["format","pt"]`, '["format","pt"]'],
    ]) {
      const e = throwsCode(() => readSafetensors(mk(`{"__metadata__":${md}}`)), "SAFETENSORS_METADATA");
      assert.ok(e.message.includes(bad!), e.message);
    }
    throwsCode(() => readSafetensors(mk(`{"__metadata__":{"a":"1","a":"2"}}`)), "SAFETENSORS_METADATA");
    throwsCode(() => readSafetensors(mk(`{"__metadata__":{},"__metadata__":{}}`)), "SAFETENSORS_METADATA");
    // empty metadata and no metadata are fine (and distinguished)
    assert.deepEqual(readSafetensors(mk(`{"__metadata__":{}}`)).metadata, {});
    assert.equal(readSafetensors(mk(`{}`)).metadata, null);
  });

  test("duplicate tensor names -> SAFETENSORS_DUPLICATE (also through escapes)", () => {
    const a = entry("F32", [1], [0, 4]);
    const b = entry("F32", [1], [4, 8]);
    let e = throwsCode(() => readSafetensors(mk(`{"w":${a},"w":${b}}`, 8)), "SAFETENSORS_DUPLICATE");
    assert.match(e.message, /tensor "w" appears more than once/);
    assert.equal(e.details["tensor"], "w");
    e = throwsCode(() => readSafetensors(mk(`{"w":${a}, "\\u0077" :${b}}`, 8)), "SAFETENSORS_DUPLICATE");
    assert.equal(e.details["tensor"], "w");
    // names that merely contain quotes, braces and escapes are not duplicates
    const tricky = ['a"b', "a\\b", "{", "}", ",", "a\\", "é", "日本", "😀", "__proto__", "0", "constructor"];
    const tensors = new Map<string, TensorInput>();
    for (const n of tricky) tensors.set(n, { dtype: "U8", shape: [1], data: new Uint8Array([n.length]) });
    const f = readSafetensors(writeSafetensors(tensors));
    assert.deepEqual([...f.names()].sort(), [...tricky].sort());
    for (const n of tricky) assert.deepEqual(f.i32(n), new Int32Array([n.length]));
    // a duplicated field inside an entry
    e = throwsCode(() => readSafetensors(mk(`{"w":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 4)), "SAFETENSORS_HEADER");
    assert.match(e.message, /tensor "w" has the field "dtype" more than once/);
  });

  test("names() keeps header order, including integer-like names", () => {
    const h = `{"z":${entry("U8", [1], [0, 1])},"10":${entry("U8", [1], [1, 2])},"a":${entry("U8", [1], [2, 3])},"2":${entry("U8", [1], [3, 4])}}`;
    const f = readSafetensors(mk(h, new Uint8Array([1, 2, 3, 4])));
    assert.deepEqual(f.names(), ["z", "10", "a", "2"]);
    assert.deepEqual(f.i32("2"), new Int32Array([4]));
  });

  test("entry fields: unknown, missing, wrong types -> SAFETENSORS_HEADER; unknown dtype -> SAFETENSORS_DTYPE", () => {
    const cases: [string, string, RegExp][] = [
      [`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}}`, "SAFETENSORS_HEADER", /"w" has an unknown field "extra"/],
      [`{"w":{"dtype":"F32","shape":[1]}}`, "SAFETENSORS_HEADER", /"w" is missing the field "data_offsets"/],
      [`{"w":{"shape":[1],"data_offsets":[0,4]}}`, "SAFETENSORS_HEADER", /"w" is missing the field "dtype"/],
      [`{"w":[1,2]}`, "SAFETENSORS_HEADER", /"w" must be an object/],
      [`{"w":"F32"}`, "SAFETENSORS_HEADER", /"w" must be an object/],
      [`{"w":{"dtype":7,"shape":[1],"data_offsets":[0,4]}}`, "SAFETENSORS_HEADER", /dtype that is not a string: 7/],
      [`{"w":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}`, "SAFETENSORS_DTYPE", /"w" has unknown dtype "f32"/],
      [`{"w":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}}`, "SAFETENSORS_DTYPE", /unknown dtype "F8_E4M3"/],
      [`{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, "SAFETENSORS_HEADER", /shape \[-1\] whose dimension 0 \(-1\)/],
      [`{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`, "SAFETENSORS_HEADER", /dimension 0 \(1\.5\)/],
      [`{"w":{"dtype":"F32","shape":[1,"2"],"data_offsets":[0,8]}}`, "SAFETENSORS_HEADER", /dimension 1 \("2"\)/],
      [`{"w":{"dtype":"F32","shape":[1e300],"data_offsets":[0,4]}}`, "SAFETENSORS_HEADER", /is not a non-negative integer/],
      [`{"w":{"dtype":"F32","shape":1,"data_offsets":[0,4]}}`, "SAFETENSORS_HEADER", /shape that is not an array: 1/],
      [`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}}`, "SAFETENSORS_OFFSETS", /data_offsets \[0\]: expected an array/],
      [`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, "SAFETENSORS_OFFSETS", /expected an array \[begin, end\]/],
      [`{"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}`, "SAFETENSORS_OFFSETS", /-4 is not a non-negative integer/],
      [`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4.5]}}`, "SAFETENSORS_OFFSETS", /4\.5 is not/],
      [`{"w":{"dtype":"F32","shape":[1],"data_offsets":"0,4"}}`, "SAFETENSORS_OFFSETS", /expected an array/],
      [`{"w":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}`, "SAFETENSORS_OFFSETS", /\[4,0\]: begin is after end/],
    ];
    for (const [h, code, re] of cases) {
      const e = throwsCode(() => readSafetensors(mk(h, 4)), code);
      assert.match(e.message, re);
      assert.equal(e.details["tensor"], "w");
    }
  });

  test("offsets: gap, not starting at 0, overlap -> SAFETENSORS_OFFSETS", () => {
    let e = throwsCode(
      () => readSafetensors(mk(`{"a":${entry("F32", [1], [0, 4])},"b":${entry("F32", [1], [8, 12])}}`, 12)),
      "SAFETENSORS_OFFSETS",
    );
    assert.match(e.message, /"b" has data_offsets \[8, 12\], which leaves a gap of 4 bytes after tensor "a" at \[0, 4\]/);
    e = throwsCode(() => readSafetensors(mk(`{"a":${entry("F32", [1], [4, 8])}}`, 8)), "SAFETENSORS_OFFSETS");
    assert.match(e.message, /"a" has data_offsets \[4, 8\], but the first tensor of the data section must start at 0/);
    e = throwsCode(
      () => readSafetensors(mk(`{"a":${entry("F32", [2], [0, 8])},"b":${entry("F32", [2], [4, 12])}}`, 12)),
      "SAFETENSORS_OFFSETS",
    );
    assert.match(e.message, /"b" has data_offsets \[4, 12\], which overlaps tensor "a" at \[0, 8\]/);
    // the same range twice
    throwsCode(
      () => readSafetensors(mk(`{"a":${entry("F32", [1], [0, 4])},"b":${entry("F32", [1], [0, 4])}}`, 4)),
      "SAFETENSORS_OFFSETS",
    );
    // header order does not matter, only offsets
    const f = readSafetensors(mk(`{"b":${entry("F32", [1], [4, 8])},"a":${entry("F32", [1], [0, 4])}}`, 8));
    assert.deepEqual(f.names(), ["b", "a"]);
    // zero-size tensors may sit anywhere along the chain
    const z = readSafetensors(
      mk(`{"a":${entry("F32", [1], [0, 4])},"e":${entry("F32", [0, 3], [4, 4])},"b":${entry("I8", [2], [4, 6])}}`, 6),
    );
    assert.equal(z.f32("e").length, 0);
    assert.deepEqual(z.entry("e").shape, [0, 3]);
  });

  test("byte length != numel * size -> SAFETENSORS_TENSOR_SIZE", () => {
    let e = throwsCode(() => readSafetensors(mk(`{"a":${entry("F16", [2, 3], [0, 8])}}`, 8)), "SAFETENSORS_TENSOR_SIZE");
    assert.equal(e.message, 'safetensors: tensor "a" has data_offsets [0, 8] (8 bytes) but F16 [2, 3] needs 12 bytes');
    assert.deepEqual(e.details["shape"], [2, 3]);
    e = throwsCode(
      () => readSafetensors(mk(`{"a":${entry("F32", [2 ** 40, 2 ** 40], [0, 8])}}`, 8)),
      "SAFETENSORS_TENSOR_SIZE",
    );
    assert.match(e.message, /more bytes than can be addressed/);
    // scalar: shape [] is one element
    const s = readSafetensors(mk(`{"a":${entry("F64", [], [0, 8])}}`, new Uint8Array(new Float64Array([2.5]).buffer)));
    assert.deepEqual(s.f32("a"), new Float32Array([2.5]));
    assert.equal(s.entry("a").numel, 1);
  });

  test("file length != 8 + N + data end -> SAFETENSORS_INCOMPLETE (shorter and longer)", () => {
    let e = throwsCode(() => readSafetensors(mk(ok, 11)), "SAFETENSORS_INCOMPLETE");
    assert.match(e.message, /1 bytes are missing, the data section ends inside tensor "b"/);
    e = throwsCode(() => readSafetensors(mk(ok, 13)), "SAFETENSORS_INCOMPLETE");
    assert.match(e.message, /1 extra bytes after the end of the data section/);
    throwsCode(() => readSafetensors(mk(`{}`, 1)), "SAFETENSORS_INCOMPLETE");
    assert.deepEqual(readSafetensors(mk(`{}`)).names(), []);
  });

  test("check order follows the reference: HEADER_LENGTH < HEADER < DUPLICATE < entries < OFFSETS/TENSOR_SIZE < INCOMPLETE", () => {
    // a wrong dtype is reported before bad offsets elsewhere
    throwsCode(
      () => readSafetensors(mk(`{"a":${entry("F32", [1], [4, 8])},"b":${entry("Q7", [1], [0, 4])}}`, 8)),
      "SAFETENSORS_DTYPE",
    );
    // offsets walk in sorted order: the first bad tensor by offset decides
    throwsCode(
      () => readSafetensors(mk(`{"b":${entry("F32", [1], [6, 10])},"a":${entry("F32", [1], [0, 6])}}`, 10)),
      "SAFETENSORS_TENSOR_SIZE",
    );
    // size problems win over a wrong file length
    throwsCode(() => readSafetensors(mk(`{"a":${entry("F32", [2], [0, 4])}}`, 100)), "SAFETENSORS_TENSOR_SIZE");
  });

  test("missing tensor -> SAFETENSORS_MISSING naming it and listing the others", () => {
    const f = readSafetensors(mk(ok, 12));
    for (const fn of [() => f.get("c"), () => f.f32("c"), () => f.i32("c"), () => f.entry("c")]) {
      const e = throwsCode(fn, "SAFETENSORS_MISSING");
      assert.match(e.message, /no tensor "c" in the file \(it has "a", "b"\)/);
      assert.equal(e.details["tensor"], "c");
    }
    assert.equal(f.has("a"), true);
    assert.equal(f.has("__metadata__"), false);
    assert.equal(f.has("toString"), false);
  });
});

// ----------------------------------------------------------------------------------------------------------------
// conversions
// ----------------------------------------------------------------------------------------------------------------

describe("dtype conversions", () => {
  test("DTYPE_SIZE and DTYPES", () => {
    assert.deepEqual(DTYPES, ["BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64"]);
    assert.deepEqual(
      DTYPES.map((d) => DTYPE_SIZE[d]),
      [1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8],
    );
  });

  test("f16ToF32: all 65536 patterns against the textbook formula; f32ToF16 inverts it", () => {
    for (let h = 0; h < 65536; h++) {
      const v = f16ToF32(h);
      const r = refF16(h);
      if (Number.isNaN(r)) {
        assert.ok(Number.isNaN(v));
        assert.equal(f32ToF16(v) & 0x7c00, 0x7c00);
        assert.notEqual(f32ToF16(v) & 0x3ff, 0);
      } else {
        assert.ok(Object.is(v, r), `h=${h.toString(16)}`);
        assert.equal(f32ToF16(v), h, `roundtrip h=${h.toString(16)}`);
      }
    }
  });

  test("f32ToF16 rounding: ties to even, subnormals, overflow", () => {
    assert.equal(f32ToF16(1 + 2 ** -11), 0x3c00); // tie -> even (down)
    assert.equal(f32ToF16(1 + 3 * 2 ** -11), 0x3c02); // tie -> even (up)
    assert.equal(f32ToF16(1 + 2 ** -11 + 2 ** -20), 0x3c01);
    assert.equal(f32ToF16(2 ** -24), 0x0001);
    assert.equal(f32ToF16(2 ** -25), 0x0000); // tie between 0 and 2^-24 -> 0
    assert.equal(f32ToF16(2 ** -25 + 2 ** -40), 0x0001);
    assert.equal(f32ToF16(3 * 2 ** -25), 0x0002); // 1.5 ulp -> 2
    assert.equal(f32ToF16(-(2 ** -14)), 0x8400);
    assert.equal(f32ToF16(2 ** -14 - 2 ** -25), 0x0400); // rounds up into the normal range
    assert.equal(f32ToF16(65504), 0x7bff);
    assert.equal(f32ToF16(65519), 0x7bff);
    assert.equal(f32ToF16(65520), 0x7c00);
    assert.equal(f32ToF16(-Infinity), 0xfc00);
    assert.equal(f32ToF16(-0), 0x8000);
    assert.equal(f32ToF16(1e-30), 0);
  });

  test("bf16: decode is u16 << 16, encode is nearest-even", () => {
    assert.equal(bf16ToF32(0x3f80), 1);
    assert.equal(bf16ToF32(0xc000), -2);
    assert.ok(Object.is(bf16ToF32(0x8000), -0));
    assert.equal(bf16ToF32(0x7f80), Infinity);
    assert.ok(Number.isNaN(bf16ToF32(0x7fc0)));
    assert.equal(f32ToBf16(1 + 2 ** -8), 0x3f80); // tie -> even
    assert.equal(f32ToBf16(1 + 3 * 2 ** -8), 0x3f82);
    assert.equal(f32ToBf16(1 + 2 ** -8 + 2 ** -20), 0x3f81);
    assert.equal(f32ToBf16(3.4028234663852886e38), 0x7f80); // max float rounds to inf
    const nan = f32ToBf16(NaN);
    assert.equal(nan & 0x7f80, 0x7f80);
    assert.notEqual(nan & 0x7f, 0);
    for (let h = 0; h < 65536; h++) {
      const v = bf16ToF32(h);
      if (!Number.isNaN(v)) assert.equal(f32ToBf16(v), h);
    }
  });

  const raw = (dtype: Dtype, shape: number[], data: ArrayBufferView) => ({
    name: "t",
    dtype,
    shape,
    bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  });

  test("toFloat32 for every dtype", () => {
    assert.deepEqual(toFloat32(raw("F64", [3], new Float64Array([0.1, -1e300, 2 ** -149 / 2 + 2 ** -160]))), new Float32Array([0.1, -Infinity, 2 ** -149]));
    assert.deepEqual(toFloat32(raw("I8", [2], new Int8Array([-128, 127]))), new Float32Array([-128, 127]));
    assert.deepEqual(toFloat32(raw("U16", [1], new Uint16Array([65535]))), new Float32Array([65535]));
    assert.deepEqual(toFloat32(raw("U32", [1], new Uint32Array([2 ** 32 - 1]))), new Float32Array([2 ** 32]));
    assert.deepEqual(toFloat32(raw("I32", [1], new Int32Array([16777217]))), new Float32Array([16777216]));
    assert.deepEqual(toFloat32(raw("BOOL", [3], new Uint8Array([0, 1, 2]))), new Float32Array([0, 1, 1]));
    // 64-bit integers: correctly rounded to float32, no double rounding
    const i64 = [0n, -1n, 2n ** 63n - 1n, -(2n ** 63n), 2n ** 24n + 1n, 2n ** 53n + 1n,
      // 2^60 + 2^36 + 1: halfway between two float32 plus a tiny bit: must round up, a double rounding goes down
      2n ** 60n + 2n ** 36n + 1n];
    const f = toFloat32(raw("I64", [i64.length], new BigInt64Array(i64)));
    assert.deepEqual(Array.from(f), [0, -1, 2 ** 63, -(2 ** 63), 2 ** 24, 2 ** 53, 2 ** 60 + 2 ** 37]);
    assert.deepEqual(toFloat32(raw("U64", [1], new BigUint64Array([2n ** 64n - 1n]))), new Float32Array([2 ** 64]));
  });

  test("toInt32: integers widened, out-of-range values refused with index and value", () => {
    assert.deepEqual(toInt32(raw("U16", [2], new Uint16Array([0, 65535]))), new Int32Array([0, 65535]));
    assert.deepEqual(toInt32(raw("I64", [3], new BigInt64Array([-(2n ** 31n), 2n ** 31n - 1n, -1n]))), new Int32Array([-(2 ** 31), 2 ** 31 - 1, -1]));
    assert.deepEqual(toInt32(raw("U64", [1], new BigUint64Array([2n ** 31n - 1n]))), new Int32Array([2 ** 31 - 1]));
    const cases: [Dtype, number[], ArrayBufferView, number, string][] = [
      ["I64", [2, 2], new BigInt64Array([0n, 1n, 2n, 2n ** 31n]), 3, "2147483648"],
      ["I64", [3], new BigInt64Array([0n, -(2n ** 31n) - 1n, 0n]), 1, "-2147483649"],
      ["I64", [1], new BigInt64Array([-(2n ** 63n)]), 0, "-9223372036854775808"],
      ["I64", [1], new BigInt64Array([2n ** 32n]), 0, "4294967296"], // low word 0: a wrapping conversion would give 0
      ["U64", [2], new BigUint64Array([1n, 2n ** 64n - 1n]), 1, "18446744073709551615"],
      ["U32", [1], new Uint32Array([2 ** 31]), 0, "2147483648"],
      ["F32", [3], new Float32Array([1, 2, 2.5]), 2, "2.5"],
      ["F32", [2], new Float32Array([1, NaN]), 1, "NaN"],
      ["F32", [1], new Float32Array([2 ** 31]), 0, "2147483648"],
      ["F64", [1], new Float64Array([-(2 ** 31) - 1]), 0, "-2147483649"],
      ["F16", [2], new Uint16Array([0x3c00, 0x3800]), 1, "0.5"],
      ["BF16", [1], new Uint16Array([0x7f80]), 0, "Infinity"],
    ];
    for (const [dtype, shape, data, index, value] of cases) {
      const e = throwsCode(() => toInt32(raw(dtype, shape, data)), "SAFETENSORS_VALUE_RANGE");
      assert.ok(e.message.includes(`element ${index} `), e.message);
      assert.ok(e.message.includes(`= ${value} `), e.message);
      assert.match(e.message, /tensor "t"/);
      assert.equal(e.details["index"], index);
      assert.equal(e.details["value"], value);
    }
    assert.match(
      throwsCode(() => toInt32(raw("I64", [2, 2], new BigInt64Array([0n, 1n, 2n, 2n ** 31n]))), "SAFETENSORS_VALUE_RANGE").message,
      /element 3 \(position \[1, 1\]\)/,
    );
    // exact integers stored as floats are fine (PEFT on Windows)
    assert.deepEqual(toInt32(raw("F32", [3], new Float32Array([0, -0, 16777216]))), new Int32Array([0, 0, 16777216]));
    assert.deepEqual(toInt32(raw("F64", [2], new Float64Array([2 ** 31 - 1, -(2 ** 31)]))), new Int32Array([2 ** 31 - 1, -(2 ** 31)]));
    assert.deepEqual(toInt32(raw("BF16", [1], new Uint16Array([0x4040]))), new Int32Array([3]));
  });

  test("I32 views are zero-copy when aligned", () => {
    const buf = new Int32Array([5, 6, 7]);
    const t = raw("I32", [3], buf);
    assert.equal(toInt32(t).buffer, buf.buffer);
    const odd = new Uint8Array(13);
    odd.set(t.bytes, 1);
    const v = toInt32({ ...t, bytes: odd.subarray(1) });
    assert.deepEqual(v, new Int32Array([5, 6, 7]));
    assert.notEqual(v.buffer, odd.buffer);
  });
});

// ----------------------------------------------------------------------------------------------------------------
// writer
// ----------------------------------------------------------------------------------------------------------------

describe("writer", () => {
  test("layout: dtype descending then name, compact header, metadata first, padded to 8", () => {
    const out = writeSafetensors(
      {
        b8: { dtype: "U8", shape: [3], data: new Uint8Array([1, 2, 3]) },
        z: { dtype: "F32", shape: [1], data: new Float32Array([1.5]) },
        a: { dtype: "F32", shape: [1, 1], data: new Float32Array([2.5]) },
        i: { dtype: "I64", shape: [1], data: new BigInt64Array([-7n]) },
        h: { dtype: "F16", shape: [2], data: new Float32Array([1, 0.1]) },
        bool: { dtype: "BOOL", shape: [2], data: new Uint8Array([1, 0]) },
      },
      { z: "1", format: "pt" },
    );
    const n = Number(new DataView(out.buffer).getBigUint64(0, true));
    assert.equal(n % 8, 0);
    const header = new TextDecoder().decode(out.subarray(8, 8 + n));
    assert.equal(
      header.trimEnd(),
      '{"__metadata__":{"format":"pt","z":"1"},' +
        '"i":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},' +
        '"a":{"dtype":"F32","shape":[1,1],"data_offsets":[8,12]},' +
        '"z":{"dtype":"F32","shape":[1],"data_offsets":[12,16]},' +
        '"h":{"dtype":"F16","shape":[2],"data_offsets":[16,20]},' +
        '"b8":{"dtype":"U8","shape":[3],"data_offsets":[20,23]},' +
        '"bool":{"dtype":"BOOL","shape":[2],"data_offsets":[23,25]}}',
    );
    assert.match(header, /} *$/);
    assert.equal(out.length, 8 + n + 25);
    const f = readSafetensors(out);
    assert.deepEqual(Array.from(new Uint16Array(f.get("h").bytes.slice().buffer)), [0x3c00, 0x2e66]);
    assert.deepEqual(f.f32("h"), new Float32Array([1, f16ToF32(0x2e66)]));
  });

  test("names sort by UTF-8 bytes like the Rust serializer (not UTF-16 code units)", () => {
    // U+FF61 (UTF-8 EF BD A1) sorts before U+1F600 (F0 9F 98 80) in UTF-8, after it in UTF-16
    const out = writeSafetensors({
      "\u{1F600}": { dtype: "U8", shape: [1], data: new Uint8Array([1]) },
      "\uFF61": { dtype: "U8", shape: [1], data: new Uint8Array([2]) },
    });
    assert.deepEqual(readSafetensors(out).names(), ["\uFF61", "\u{1F600}"]);
  });

  test("no metadata vs empty metadata; empty file", () => {
    const none = writeSafetensors({});
    assert.equal(new TextDecoder().decode(none.subarray(8)), "{}      ");
    assert.equal(readSafetensors(none).metadata, null);
    const empty = writeSafetensors({}, {});
    assert.equal(new TextDecoder().decode(empty.subarray(8)), '{"__metadata__":{}}     ');
    assert.deepEqual(readSafetensors(empty).metadata, {});
  });

  test("validation: data length, array type, dtype, shape, names, metadata", () => {
    let e = throwsCode(() => writeSafetensors({ w: { dtype: "F32", shape: [2, 3], data: new Float32Array(5) } }), "SHAPE_MISMATCH", ShapeError);
    assert.match(e.message, /tensor "w" is F32 \[2, 3\] \(6 elements\) but its data has 5 elements/);
    assert.equal(e.details["tensor"], "w");
    e = throwsCode(() => writeSafetensors({ w: { dtype: "I32", shape: [2], data: new Uint8Array(7) } }), "SHAPE_MISMATCH", ShapeError);
    assert.match(e.message, /\(8 bytes\) but its data has 7 bytes/);
    e = throwsCode(() => writeSafetensors({ w: { dtype: "F32", shape: [2], data: new Int32Array(2) } }), "SAFETENSORS_DTYPE");
    assert.match(e.message, /tensor "w" has dtype F32, which needs Float32Array .* but its data is Int32Array/);
    throwsCode(() => writeSafetensors({ w: { dtype: "Q7" as Dtype, shape: [1], data: new Uint8Array(1) } }), "SAFETENSORS_DTYPE");
    throwsCode(() => writeSafetensors({ w: { dtype: "F32", shape: [-1], data: new Float32Array(0) } }), "SHAPE_MISMATCH", ShapeError);
    throwsCode(() => writeSafetensors({ w: { dtype: "F32", shape: [1.5], data: new Float32Array(1) } }), "SHAPE_MISMATCH", ShapeError);
    throwsCode(() => writeSafetensors({ __metadata__: { dtype: "U8", shape: [1], data: new Uint8Array(1) } }), "SAFETENSORS_HEADER");
    throwsCode(() => writeSafetensors({ "\ud800": { dtype: "U8", shape: [1], data: new Uint8Array(1) } }), "SAFETENSORS_HEADER");
    throwsCode(() => writeSafetensors({}, { format: 1 as unknown as string }), "SAFETENSORS_METADATA");
    // raw bytes for any dtype, Uint16Array bits or Float32Array values for F16/BF16
    const a = writeSafetensors({ w: { dtype: "BF16", shape: [2], data: new Uint16Array([0x3f80, 0xc000]) } });
    const b = writeSafetensors({ w: { dtype: "BF16", shape: [2], data: new Float32Array([1, -2]) } });
    const c = writeSafetensors({ w: { dtype: "BF16", shape: [2], data: new Uint8Array([0x80, 0x3f, 0x00, 0xc0]) } });
    assert.deepEqual(a, b);
    assert.deepEqual(a, c);
    assert.deepEqual(readSafetensors(a).f32("w"), new Float32Array([1, -2]));
  });
});

// ----------------------------------------------------------------------------------------------------------------
// lazy reader and byte sources
// ----------------------------------------------------------------------------------------------------------------

describe("lazy reader", () => {
  const bytes = fx("mlp/beta/adapter_model.safetensors");
  const sync = readSafetensors(bytes);

  async function checkSource(src: ByteSource): Promise<void> {
    const c = counting(src);
    const lazy = await openSafetensors(c);
    assert.equal(c.bytesRead, 8 + sync.headerLength, "open reads only the length and the header");
    assert.deepEqual(c.reads, [[0, 8], [8, sync.headerLength]]);
    assert.deepEqual(lazy.names(), sync.names());
    assert.deepEqual(lazy.metadata, sync.metadata);
    assert.deepEqual(lazy.entries(), sync.entries());
    const name = "base_model.model.lin2.shira_weight";
    const before = c.bytesRead;
    const w = await lazy.f32(name);
    assert.equal(c.bytesRead - before, sync.entry(name).byteLength, "f32 reads only that tensor");
    sameBits(w, sync.f32(name));
    for (const n of sync.names()) {
      const t = await lazy.get(n);
      assert.deepEqual(t.bytes, sync.get(n).bytes);
      assert.equal(t.dtype, sync.entry(n).dtype);
      assert.deepEqual(t.shape, sync.entry(n).shape);
    }
    assert.deepEqual(await lazy.i32("base_model.model.lin3.shira_indices"), sync.i32("base_model.model.lin3.shira_indices"));
    assert.equal(c.bytesRead, 8 + sync.headerLength + sync.entry(name).byteLength + (bytes.length - sync.dataStart) + sync.entry("base_model.model.lin3.shira_indices").byteLength);
    await rejectsCode(lazy.get("nope"), "SAFETENSORS_MISSING");
    await lazy.close();
  }

  test("bytesSource", async () => {
    await checkSource(bytesSource(bytes));
    await checkSource(bytesSource(bytes.slice().buffer));
  });

  test("blobSource", async () => {
    await checkSource(blobSource(new Blob([bytes.slice()])));
  });

  test("openFileSource on a temp file; readFileBytes / writeFileBytes", async () => {
    const dir = await mkdtemp(join(tmpdir(), "shira-st-"));
    try {
      const path = join(dir, "nested", "deeper", "beta.safetensors");
      await writeFileBytes(path, bytes);
      assert.equal(statSync(path).size, bytes.length);
      const back = await readFileBytes(path);
      assert.ok(!Buffer.isBuffer(back));
      assert.deepEqual(back, bytes);
      const src = await openFileSource(path);
      assert.equal(src.size, bytes.length);
      await checkSource(src);
      await rejectsCode(src.read(0, 1), "IO"); // closed by lazy.close()
      await rejectsCode(openFileSource(join(dir, "missing.safetensors")), "IO");
      await rejectsCode(readFileBytes(join(dir, "missing.safetensors")), "IO");
      const s2 = await openFileSource(path);
      await rejectsCode(s2.read(bytes.length - 2, 3), "IO");
      await s2.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("the five bad fixtures fail the same way lazily, before reading any data", async () => {
    for (const [c, code] of [
      ["truncated", "SAFETENSORS_INCOMPLETE"],
      ["header_length_too_large", "SAFETENSORS_HEADER_LENGTH"],
      ["overlapping_offsets", "SAFETENSORS_OFFSETS"],
      ["byte_length_mismatch", "SAFETENSORS_TENSOR_SIZE"],
      ["unknown_dtype", "SAFETENSORS_DTYPE"],
    ] as const) {
      const b = fx(`bad/${c}/adapter_model.safetensors`);
      const src = counting(bytesSource(b));
      const e = await rejectsCode(openSafetensors(src), code);
      assert.ok(e instanceof FormatError);
      assert.ok(src.bytesRead <= 8 + 408);
    }
    await rejectsCode(openSafetensors(bytesSource(new Uint8Array(5))), "SAFETENSORS_HEADER_LENGTH");
    // a source claiming an enormous size with a header length of 2^53: refused from the first 8 bytes
    const huge = new Uint8Array(8);
    new DataView(huge.buffer).setBigUint64(0, 2n ** 53n, true);
    const fake: ByteSource = { size: 2 ** 52, read: async (o, l) => (o === 0 && l === 8 ? huge : assert.fail("read past the length")) };
    await rejectsCode(openSafetensors(fake), "SAFETENSORS_HEADER_LENGTH");
  });

  test("urlSource: Range requests when the server supports them, one download otherwise", async () => {
    let requests: { range: string | undefined; auth: string | undefined }[] = [];
    let mode: "range" | "plain" | "404" = "range";
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const range = req.headers.range;
      requests.push({ range, auth: req.headers.authorization });
      if (mode === "404") {
        res.writeHead(404).end();
        return;
      }
      const m = range ? /^bytes=(\d+)-(\d+)$/.exec(range) : null;
      if (mode === "range" && m) {
        const a = Number(m[1]);
        const b = Math.min(Number(m[2]), bytes.length - 1);
        res.writeHead(206, { "Content-Range": `bytes ${a}-${b}/${bytes.length}`, "Content-Length": b - a + 1 });
        res.end(Buffer.from(bytes.subarray(a, b + 1)));
      } else {
        res.writeHead(200, { "Content-Length": bytes.length });
        res.end(Buffer.from(bytes));
      }
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/beta.safetensors`;
    try {
      const src = await urlSource(url, { headers: { Authorization: "Bearer t" } });
      assert.equal(src.size, bytes.length);
      await checkSource(src);
      assert.ok(requests.length > 3);
      assert.ok(requests.every((r) => r.range !== undefined && r.auth === "Bearer t"));
      assert.equal(requests[0]!.range, "bytes=0-0");

      mode = "plain";
      requests = [];
      const plain = await urlSource(url);
      assert.equal(plain.size, bytes.length);
      await checkSource(plain);
      assert.equal(requests.length, 1, "served from the single full download");

      mode = "404";
      await rejectsCode(urlSource(url), "IO");
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

// ----------------------------------------------------------------------------------------------------------------
// every fixture file in the folder is covered
// ----------------------------------------------------------------------------------------------------------------

test("ALL_FIXTURES lists every valid .safetensors fixture", () => {
  const found: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(join(FIX, d), { withFileTypes: true })) {
      const p = d ? `${d}/${e.name}` : e.name;
      if (e.isDirectory()) {
        if (p !== "bad") walk(p);
      } else if (p.endsWith(".safetensors")) found.push(p);
    }
  };
  walk("");
  assert.deepEqual(found.sort(), [...ALL_FIXTURES].sort());
  for (const p of found) assert.doesNotThrow(() => readSafetensors(fx(p)));
});
