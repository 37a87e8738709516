// Property tests (fast-check) for src/io/safetensors.ts: write/read round trips for every dtype, float conversions
// against independent references, and robustness of the reader against arbitrary corruption.
// Run: node --import tsx --test tests/safetensors.property.test.ts

import { test } from "node:test";
import assert from "node:assert/strict";
import { FIXTURES } from "./helpers/fixtures.js";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";

import { ShiraError } from "../src/errors.js";
import {
  DTYPES,
  DTYPE_SIZE,
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
  type SafetensorsFile,
  type TensorData,
  type TensorInput,
} from "../src/io/safetensors.js";
import { bytesSource } from "../src/io/byte-source.js";

const FIX = FIXTURES;

const RUNS = Number(process.env["FC_RUNS_SCALE"] ?? 1);
const runs = (n: number): number => Math.max(1, Math.round(n * RUNS));
let totalRuns = 0;
function check<T>(prop: fc.IProperty<T> | fc.IAsyncProperty<T>, numRuns: number) {
  totalRuns += numRuns;
  return fc.assert(prop as fc.IProperty<T>, { numRuns });
}

// ----------------------------------------------------------------------------------------------------------------
// independent references
// ----------------------------------------------------------------------------------------------------------------

/** binary16 value of bit pattern h by the textbook formula. */
function refF16(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m === 0 ? s * Infinity : NaN;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}
/** bfloat16 value of bit pattern h via a DataView. */
function refBf16(h: number): number {
  const dv = new DataView(new ArrayBuffer(4));
  dv.setUint16(0, h, false); // big-endian: h is the high half
  return dv.getFloat32(0, false);
}
/**
 * Nearest-even rounding of the float32 value x to a 16-bit format, by searching the format's ordered positive
 * values (`decode(0) .. decode(inf)`); `beyond` is where the next value would be if the exponent were unbounded.
 */
function refRound16(x: number, decode: (h: number) => number, inf: number, beyond: number): number | "nan" {
  if (Number.isNaN(x)) return "nan";
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  let lo = 0;
  let hi = inf;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (decode(mid) <= a) lo = mid;
    else hi = mid - 1;
  }
  if (lo === inf) return sign | inf;
  const below = decode(lo);
  const above = lo + 1 === inf ? beyond : decode(lo + 1);
  const dl = a - below; // exact: both are float32 values close to each other
  const du = above - a;
  if (dl < du) return sign | lo;
  if (du < dl) return sign | (lo + 1);
  return sign | (lo % 2 === 0 ? lo : lo + 1);
}
const refToF16 = (x: number) => refRound16(Math.fround(x), refF16, 0x7c00, 65536);
const refToBf16 = (x: number) => refRound16(Math.fround(x), refBf16, 0x7f80, 2 ** 128);

/** float32 nearest (ties to even) to the 64-bit integer v, by comparing neighbouring float32 values exactly. */
function refInt64ToF32(v: bigint): number {
  const c = Math.fround(Number(v));
  const f = new Float32Array(3);
  const u = new Uint32Array(f.buffer);
  f[1] = c;
  u[0] = u[1]! - 1;
  u[2] = u[1]! + 1;
  const cands = Array.from(f).filter((x) => Number.isFinite(x) && Number.isInteger(x));
  let best = cands[0]!;
  let bestD = -1n;
  for (const x of cands) {
    const d = BigInt(x) - v < 0n ? v - BigInt(x) : BigInt(x) - v;
    if (bestD < 0n || d < bestD || (d === bestD && (new Uint32Array(new Float32Array([x]).buffer)[0]! & 1) === 0)) {
      best = x;
      bestD = d;
    }
  }
  return best;
}

const SAFETENSORS_CODES = new Set([
  "SAFETENSORS_HEADER_LENGTH",
  "SAFETENSORS_HEADER",
  "SAFETENSORS_DTYPE",
  "SAFETENSORS_OFFSETS",
  "SAFETENSORS_TENSOR_SIZE",
  "SAFETENSORS_INCOMPLETE",
  "SAFETENSORS_DUPLICATE",
  "SAFETENSORS_METADATA",
]);

/** `[value]` about once in `n` draws, else `undefined`. */
function rarely<T>(arb: fc.Arbitrary<T>, n: number): fc.Arbitrary<[T] | undefined> {
  return fc.oneof(
    { weight: n - 1, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary: arb.map((v): [T] => [v]) },
  );
}

function isWellFormed(s: string): boolean {
  return !/\p{Surrogate}/u.test(s.replace(/[\ud800-\udbff][\udc00-\udfff]/g, ""));
}

// ----------------------------------------------------------------------------------------------------------------
// arbitraries
// ----------------------------------------------------------------------------------------------------------------

const nameArb = fc
  .oneof(
    fc.string({ unit: "binary", maxLength: 10 }),
    fc.string({ unit: "grapheme", maxLength: 6 }),
    fc.constantFrom("base_model.model.lin0.shira_weight", "0", "10", "__proto__", "a\"b\\c", "{}", "\u0000", "\u{1F600}"),
  )
  .filter((s) => s !== "__metadata__" && isWellFormed(s));

const shapeArb = fc.oneof(
  { weight: 1, arbitrary: fc.constant<number[]>([]) },
  { weight: 6, arbitrary: fc.array(fc.nat(4), { minLength: 1, maxLength: 3 }) },
  { weight: 1, arbitrary: fc.tuple(fc.constant(0), fc.nat(1_000_000)).map(([a, b]) => [b, a]) }, // large but empty
);

const numelOf = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** A tensor as raw bytes plus, half of the time, the data given as the matching typed array. */
const tensorArb = fc
  .tuple(fc.constantFrom(...DTYPES), shapeArb, fc.boolean())
  .chain(([dtype, shape, typed]) => {
    const n = numelOf(shape) * DTYPE_SIZE[dtype];
    return fc.uint8Array({ minLength: n, maxLength: n }).map((bytes) => ({ dtype, shape, bytes, typed }));
  });

function typedFor(dtype: Dtype, bytes: Uint8Array): TensorData {
  const buf = bytes.slice().buffer;
  switch (dtype) {
    case "BOOL":
    case "U8":
      return new Uint8Array(buf);
    case "I8":
      return new Int8Array(buf);
    case "I16":
      return new Int16Array(buf);
    case "U16":
    case "F16":
    case "BF16":
      return new Uint16Array(buf);
    case "I32":
      return new Int32Array(buf);
    case "U32":
      return new Uint32Array(buf);
    case "F32":
      return new Float32Array(buf);
    case "F64":
      return new Float64Array(buf);
    case "I64":
      return new BigInt64Array(buf);
    case "U64":
      return new BigUint64Array(buf);
  }
}

const stringMapArb = fc
  .array(fc.tuple(fc.string({ unit: "binary", maxLength: 8 }), fc.string({ unit: "binary", maxLength: 12 })), { maxLength: 4 })
  .map((kv) => kv.filter(([k, v]) => isWellFormed(k) && isWellFormed(v)))
  .map((kv) => Object.fromEntries(kv) as Record<string, string>);
const metadataArb = fc.option(stringMapArb, { nil: null, freq: 4 });

const fileArb = fc.record({
  tensors: fc.uniqueArray(fc.tuple(nameArb, tensorArb), { selector: ([n]) => n, maxLength: 6 }),
  metadata: metadataArb,
});

function toInput(tensors: [string, { dtype: Dtype; shape: number[]; bytes: Uint8Array; typed: boolean }][]) {
  const m = new Map<string, TensorInput>();
  for (const [name, t] of tensors) m.set(name, { dtype: t.dtype, shape: t.shape, data: t.typed ? typedFor(t.dtype, t.bytes) : t.bytes });
  return m;
}

const sortedEntries = (o: Readonly<Record<string, string>> | null) =>
  o === null ? null : Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

/** Independent check of a file the reader accepted: JSON header, offsets chain, sizes, file length. */
function independentlyValid(bytes: Uint8Array, file: SafetensorsFile): void {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  assert.equal(file.headerLength, n);
  const header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  const names = Object.keys(header).filter((k) => k !== "__metadata__");
  assert.deepEqual([...file.names()].sort(), names.sort());
  const spans = names.map((k) => header[k].data_offsets as [number, number]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let end = 0;
  for (const [b, e] of spans) {
    assert.equal(b, end);
    end = e;
  }
  assert.equal(bytes.length, 8 + n + end);
  for (const name of file.names()) {
    const e = file.entry(name);
    const t = file.get(name);
    assert.equal(t.bytes.length, numelOf(e.shape) * DTYPE_SIZE[e.dtype]);
    assert.deepEqual(t.bytes, bytes.subarray(8 + n + header[name].data_offsets[0], 8 + n + header[name].data_offsets[1]));
    assert.equal(toFloat32(t).length, numelOf(e.shape));
    try {
      assert.equal(toInt32(t).length, numelOf(e.shape));
    } catch (err) {
      assert.ok(err instanceof ShiraError && err.code === "SAFETENSORS_VALUE_RANGE", String(err));
    }
  }
}

/** Reads `bytes`; returns "ok" or the error code, failing on anything that is not a SAFETENSORS ShiraError. */
function outcome(bytes: Uint8Array): string {
  let file: SafetensorsFile;
  try {
    file = readSafetensors(bytes);
  } catch (e) {
    if (!(e instanceof ShiraError)) throw new Error(`non-ShiraError thrown: ${String(e)}`);
    if (!SAFETENSORS_CODES.has(e.code)) throw new Error(`unexpected code ${e.code}: ${e.message}`);
    assert.ok(e.message.startsWith("safetensors: "));
    return e.code;
  }
  independentlyValid(bytes, file);
  return "ok";
}

// mutations -------------------------------------------------------------------------------------------------------

type Mutation =
  | { k: "flip"; at: number; header: boolean; bit: number }
  | { k: "set"; at: number; header: boolean; val: number }
  | { k: "insert"; at: number; header: boolean; bytes: Uint8Array }
  | { k: "delete"; at: number; header: boolean; len: number }
  | { k: "truncate"; at: number }
  | { k: "length"; n: bigint };

const interesting = fc.constantFrom(...Array.from('{}[]":,-.0123456789eE \\tnu', (c) => c.charCodeAt(0)), 0x00, 0x7f, 0x80, 0xc3, 0xff);
const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ k: fc.constant("flip" as const), at: fc.nat(), header: fc.boolean(), bit: fc.nat(7) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant("set" as const), at: fc.nat(), header: fc.boolean(), val: fc.oneof(fc.nat(255), interesting) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant("insert" as const),
      at: fc.nat(),
      header: fc.boolean(),
      bytes: fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 9 }), fc.array(interesting, { minLength: 1, maxLength: 4 }).map((a) => new Uint8Array(a))),
    }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("delete" as const), at: fc.nat(), header: fc.boolean(), len: fc.integer({ min: 1, max: 9 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("truncate" as const), at: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("length" as const),
      n: fc.oneof(
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        fc.constantFrom(2n ** 53n, 2n ** 53n + 1n, 2n ** 32n, 2n ** 31n, 100_000_001n, 2n ** 64n - 1n, 0n),
        fc.bigInt({ min: 0n, max: 2000n }),
      ),
    }),
  },
);

function setLength(b: Uint8Array, n: number): void {
  if (b.length >= 8) new DataView(b.buffer, b.byteOffset, 8).setBigUint64(0, BigInt(n), true);
}

function mutate(src: Uint8Array, muts: Mutation[]): Uint8Array {
  let b = src;
  for (const m of muts) {
    const n = b.length >= 8 ? Number(new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true)) : 0;
    const headerEnd = Math.max(1, Math.min(b.length, 8 + n));
    const pos = (at: number, header: boolean) => (b.length === 0 ? 0 : at % (header ? headerEnd : b.length));
    switch (m.k) {
      case "flip":
        if (b.length > 0) {
          b = b.slice();
          const p = pos(m.at, m.header);
          b[p] = b[p]! ^ (1 << m.bit);
        }
        break;
      case "set":
        if (b.length > 0) {
          b = b.slice();
          b[pos(m.at, m.header)] = m.val;
        }
        break;
      case "insert": {
        const p = pos(m.at, m.header);
        b = new Uint8Array([...b.subarray(0, p), ...m.bytes, ...b.subarray(p)]);
        if (m.header && p >= 8 && p <= 8 + n) setLength(b, n + m.bytes.length); // keep N consistent
        break;
      }
      case "delete": {
        const p = pos(m.at, m.header);
        const len = Math.min(m.len, Math.max(0, b.length - p));
        b = new Uint8Array([...b.subarray(0, p), ...b.subarray(p + len)]);
        if (m.header && p >= 8 && p + len <= 8 + n) setLength(b, n - len);
        break;
      }
      case "truncate":
        b = b.slice(0, m.at % (b.length + 1));
        break;
      case "length":
        if (b.length >= 8) {
          b = b.slice();
          new DataView(b.buffer).setBigUint64(0, m.n, true);
        }
        break;
    }
  }
  return b;
}

const BASES: Uint8Array[] = [
  new Uint8Array(readFileSync(join(FIX, "mlp/alpha/adapter_model.safetensors"))),
  new Uint8Array(readFileSync(join(FIX, "variants/alpha_f16/adapter_model.safetensors"))),
  writeSafetensors(
    new Map<string, TensorInput>([
      ["é.w", { dtype: "BF16", shape: [2], data: new Float32Array([1, -3]) }],
      ["x", { dtype: "I64", shape: [1, 2], data: new BigInt64Array([5n, -(2n ** 40n)]) }],
      ["empty", { dtype: "F32", shape: [0, 7], data: new Float32Array(0) }],
      ["b", { dtype: "BOOL", shape: [], data: new Uint8Array([1]) }],
      ["日本", { dtype: "U16", shape: [3], data: new Uint16Array([1, 2, 65535]) }],
    ]),
    { format: "pt", "k\"": "v\n" },
  ),
  writeSafetensors({}),
];

// ----------------------------------------------------------------------------------------------------------------
// properties
// ----------------------------------------------------------------------------------------------------------------

test("write then read: every dtype, shape, name and metadata survives bit-exactly (2000 runs)", () => {
  check(
    fc.property(fileArb, ({ tensors, metadata }) => {
      const bytes = writeSafetensors(toInput(tensors), metadata);
      const f = readSafetensors(bytes);
      assert.equal(f.headerLength % 8, 0);
      assert.deepEqual(sortedEntries(f.metadata), sortedEntries(metadata));
      assert.deepEqual([...f.names()].sort(), tensors.map(([n]) => n).sort());
      // data order = header order: dtype descending, then name by UTF-8 bytes
      const order = f.names();
      const enc = new TextEncoder();
      for (let i = 1; i < order.length; i++) {
        const a = f.entry(order[i - 1]!);
        const b = f.entry(order[i]!);
        const ra = DTYPES.indexOf(a.dtype);
        const rb = DTYPES.indexOf(b.dtype);
        assert.ok(ra > rb || (ra === rb && Buffer.compare(enc.encode(a.name), enc.encode(b.name)) < 0));
        assert.equal(a.dataOffsets[1], b.dataOffsets[0]);
      }
      for (const [name, t] of tensors) {
        const g = f.get(name);
        assert.equal(g.dtype, t.dtype);
        assert.deepEqual(g.shape, t.shape);
        assert.deepEqual(g.bytes, t.bytes);
      }
      // writing what was read gives the same bytes (the serialization is canonical)
      const again = new Map<string, TensorInput>(f.names().map((n) => [n, { ...f.get(n), data: f.get(n).bytes }]));
      assert.deepEqual(writeSafetensors(again, f.metadata), bytes);
    }),
    runs(2000),
  );
});

test("float conversions on written tensors match independent references (1500 runs)", () => {
  const f32s = fc.float32Array({ maxLength: 16 });
  check(
    fc.property(f32s, fc.float64Array({ maxLength: 8 }), fc.array(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), { maxLength: 8 }), (xs, ds, is) => {
      const file = readSafetensors(
        writeSafetensors({
          h: { dtype: "F16", shape: [xs.length], data: xs },
          b: { dtype: "BF16", shape: [xs.length], data: xs },
          d: { dtype: "F64", shape: [ds.length], data: ds },
          i: { dtype: "I64", shape: [is.length], data: new BigInt64Array(is) },
        }),
      );
      const hBits = new Uint16Array(file.get("h").bytes.slice().buffer);
      const bBits = new Uint16Array(file.get("b").bytes.slice().buffer);
      const h = file.f32("h");
      const b = file.f32("b");
      for (let k = 0; k < xs.length; k++) {
        const rh = refToF16(xs[k]!);
        const rb = refToBf16(xs[k]!);
        if (rh === "nan") {
          assert.ok(Number.isNaN(h[k]!) && Number.isNaN(b[k]!));
          assert.equal(hBits[k]! & 0x7c00, 0x7c00);
          assert.equal(bBits[k]! & 0x7f80, 0x7f80);
          continue;
        }
        assert.equal(hBits[k], rh);
        assert.equal(bBits[k], rb);
        assert.ok(Object.is(h[k], refF16(rh)));
        assert.ok(Object.is(b[k], refBf16(rb as number)));
        assert.ok(Object.is(f16ToF32(rh), refF16(rh)));
        assert.ok(Object.is(bf16ToF32(rb as number), refBf16(rb as number)));
      }
      assert.deepEqual(Array.from(file.f32("d")), Array.from(ds, Math.fround));
      assert.deepEqual(Array.from(file.f32("i")), is.map(refInt64ToF32));
    }),
    runs(1500),
  );
});

test("f32ToF16 / f32ToBf16 agree with nearest-even references on arbitrary floats (3000 runs)", () => {
  check(
    fc.property(fc.oneof(fc.float(), fc.double(), fc.integer({ min: -70000, max: 70000 }).map((i) => i / 64)), (x) => {
      const rh = refToF16(x);
      const rb = refToBf16(x);
      if (rh === "nan") {
        assert.ok(Number.isNaN(f16ToF32(f32ToF16(x))));
        assert.ok(Number.isNaN(bf16ToF32(f32ToBf16(x))));
      } else {
        assert.equal(f32ToF16(x), rh);
        assert.equal(f32ToBf16(x), rb);
      }
    }),
    runs(3000),
  );
});

test("toInt32 on I64/U64/U32/F32 returns exact values or SAFETENSORS_VALUE_RANGE at the first bad index (1500 runs)", () => {
  const near = fc.oneof(
    fc.bigInt({ min: -(2n ** 31n) - 3n, max: -(2n ** 31n) + 3n }),
    fc.bigInt({ min: 2n ** 31n - 3n, max: 2n ** 31n + 3n }),
    fc.bigInt({ min: -1000n, max: 1000n }),
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  );
  check(
    fc.property(fc.array(near, { maxLength: 10 }), fc.constantFrom("I64", "U64", "U32", "F32", "F64") as fc.Arbitrary<Dtype>, (vals, dtype) => {
      let data: TensorData;
      let stored: number[] | bigint[];
      if (dtype === "I64") stored = vals;
      else if (dtype === "U64") stored = vals.map((v) => BigInt.asUintN(64, v));
      else if (dtype === "U32") stored = vals.map((v) => Number(BigInt.asUintN(32, v)));
      else stored = vals.map((v) => (dtype === "F32" ? Math.fround(Number(v)) : Number(v)) + (v % 7n === 0n ? 0.5 : 0));
      if (dtype === "I64") data = new BigInt64Array(stored as bigint[]);
      else if (dtype === "U64") data = new BigUint64Array(stored as bigint[]);
      else if (dtype === "U32") data = new Uint32Array(stored as number[]);
      else if (dtype === "F32") data = new Float32Array(stored as number[]);
      else data = new Float64Array(stored as number[]);
      const actual = Array.from(data as ArrayLike<number | bigint>); // what the file really holds
      const fits = (v: number | bigint) =>
        typeof v === "bigint" ? v >= -(2n ** 31n) && v < 2n ** 31n : Number.isInteger(v) && v >= -(2 ** 31) && v < 2 ** 31;
      const f = readSafetensors(writeSafetensors({ t: { dtype, shape: [actual.length], data } }));
      const bad = actual.findIndex((v) => !fits(v));
      if (bad < 0) {
        assert.deepEqual(Array.from(f.i32("t")), actual.map(Number));
      } else {
        try {
          f.i32("t");
          assert.fail("expected SAFETENSORS_VALUE_RANGE");
        } catch (e) {
          assert.ok(e instanceof ShiraError && e.code === "SAFETENSORS_VALUE_RANGE", String(e));
          assert.equal(e.details["index"], bad);
          assert.equal(e.details["value"], String(actual[bad]));
          assert.ok(e.message.includes(`element ${bad} `) && e.message.includes(String(actual[bad])), e.message);
        }
      }
    }),
    runs(1500),
  );
});

test("random mutations and truncations of valid files: a valid parse or a SAFETENSORS ShiraError (4000 runs)", () => {
  const seen = new Map<string, number>();
  check(
    fc.property(fc.nat(BASES.length - 1), fc.array(mutationArb, { minLength: 1, maxLength: 4 }), (base, muts) => {
      const code = outcome(mutate(BASES[base]!, muts));
      seen.set(code, (seen.get(code) ?? 0) + 1);
    }),
    runs(4000),
  );
  if (process.env["FC_VERBOSE"]) console.log(JSON.stringify([...seen]));
  // the corpus does reach the different checks
  for (const c of ["ok", "SAFETENSORS_HEADER_LENGTH", "SAFETENSORS_HEADER", "SAFETENSORS_INCOMPLETE"]) {
    assert.ok((seen.get(c) ?? 0) > 0, `never saw ${c}: ${JSON.stringify([...seen])}`);
  }
});

test("random and near-valid headers: a valid parse or a SAFETENSORS ShiraError (2500 runs)", () => {
  const dim = fc.oneof(fc.nat(4), fc.integer({ min: -2, max: 2 }), fc.double(), fc.constantFrom(2 ** 53, 1e300, -0), fc.string({ maxLength: 2 }));
  const entryArb = fc
    .record({
      dtype: fc.oneof(
        { weight: 8, arbitrary: fc.constantFrom(...DTYPES) },
        { weight: 1, arbitrary: fc.constantFrom("Q7", "f32", "F8_E4M3", "") },
        { weight: 1, arbitrary: fc.anything({ maxDepth: 1 }) },
      ),
      shape: fc.oneof(
        { weight: 8, arbitrary: fc.array(fc.nat(3), { maxLength: 2 }) },
        { weight: 1, arbitrary: fc.array(dim, { maxLength: 3 }) },
        { weight: 1, arbitrary: fc.anything({ maxDepth: 1 }) },
      ),
      data_offsets: fc.oneof(
        { weight: 4, arbitrary: fc.tuple(fc.nat(40), fc.nat(40)) },
        { weight: 1, arbitrary: fc.array(fc.oneof(fc.nat(40), fc.integer({ min: -5, max: 5 }), fc.double()), { maxLength: 3 }) },
        { weight: 1, arbitrary: fc.anything({ maxDepth: 1 }) },
      ),
      extra: rarely(fc.anything({ maxDepth: 1 }), 10),
      drop: rarely(fc.constantFrom("dtype", "shape", "data_offsets"), 10),
      jitter: rarely(fc.integer({ min: -4, max: 4 }), 5),
    })
    .map(({ extra, drop, jitter, ...e }) => {
      const o: Record<string, unknown> = { ...e };
      if (extra !== undefined) o["extra"] = extra[0];
      if (drop !== undefined) delete o[drop[0]];
      if (jitter !== undefined) o["jitter"] = jitter[0];
      return o;
    });
  const headerArb = fc.oneof(
    { weight: 8, arbitrary: // structured: entries with offsets recomputed to be contiguous half of the time
    fc
      .tuple(
        fc.uniqueArray(fc.tuple(fc.string({ maxLength: 3 }), fc.oneof({ weight: 9, arbitrary: entryArb }, { weight: 1, arbitrary: fc.anything({ maxDepth: 2 }) })), { maxLength: 4, selector: ([n]) => n }),
        fc.oneof(
          { weight: 4, arbitrary: fc.constant(null) },
          { weight: 4, arbitrary: stringMapArb },
          { weight: 1, arbitrary: fc.anything({ maxDepth: 2 }) },
        ),
        fc.nat(3).map((x) => x > 0),
        fc.nat(7).map((x) => x === 0),
      )
      .map(([entries, md, chain, dup]) => {
        let off = 0;
        const parts: string[] = [];
        if (md !== null) parts.push(`"__metadata__":${JSON.stringify(md) ?? "null"}`);
        for (const [name, e] of entries) {
          let v = e as Record<string, unknown>;
          if (chain && typeof v === "object" && v !== null && Array.isArray(v["shape"]) && typeof v["dtype"] === "string") {
            const n = (v["shape"] as unknown[]).reduce((a: number, d) => a * (typeof d === "number" ? d : 1), 1);
            const size = DTYPE_SIZE[v["dtype"] as Dtype] ?? 1;
            const len = Number.isSafeInteger(n * size) && n * size >= 0 && n * size < 1000 ? n * size : 0;
            const { jitter, ...rest } = v;
            const j = typeof jitter === "number" ? jitter : 0;
            v = { ...rest, data_offsets: [off, off + len + j] };
            off += len + j;
          }
          if (typeof v === "object" && v !== null && "jitter" in v) {
            const { jitter: _j, ...rest } = v;
            v = rest;
          }
          parts.push(`${JSON.stringify(name)}:${JSON.stringify(v) ?? "null"}`);
        }
        if (dup && entries.length > 0) parts.push(`${JSON.stringify(entries[0]![0])}:{}`);
        return { text: `{${parts.join(",")}}`, data: Math.max(0, off) };
      }) },
    // arbitrary JSON
    { weight: 1, arbitrary: fc.json({ maxDepth: 3 }).map((text) => ({ text, data: 0 })) },
    // arbitrary text starting with "{"
    { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 40 }).map((s) => ({ text: `{${s}`, data: 0 })) },
  );
  const enc = new TextEncoder();
  const seen = new Map<string, number>();
  check(
    fc.property(headerArb, fc.integer({ min: -2, max: 2 }), fc.nat(8), ({ text, data }, extra, pad) => {
      const h = enc.encode(text + " ".repeat(pad));
      const b = new Uint8Array(8 + h.length + Math.max(0, data + extra));
      new DataView(b.buffer).setBigUint64(0, BigInt(h.length), true);
      b.set(h, 8);
      const code = outcome(b);
      seen.set(code, (seen.get(code) ?? 0) + 1);
    }),
    runs(2500),
  );
  if (process.env["FC_VERBOSE"]) console.log(JSON.stringify([...seen]));
  for (const c of ["ok", ...SAFETENSORS_CODES].filter((c) => c !== "SAFETENSORS_HEADER_LENGTH")) {
    assert.ok((seen.get(c) ?? 0) > 0, `never saw ${c}: ${JSON.stringify([...seen])}`);
  }
});

test("random bytes after a valid length: a valid parse or a SAFETENSORS ShiraError (1000 runs)", () => {
  check(
    fc.property(fc.uint8Array({ maxLength: 64 }), fc.nat(64), (body, n) => {
      const b = new Uint8Array(8 + body.length);
      new DataView(b.buffer).setBigUint64(0, BigInt(Math.min(n, body.length)), true);
      b.set(body, 8);
      if (body.length > 0 && n % 2 === 0) b[8] = 0x7b; // often start with "{"
      outcome(b);
    }),
    runs(1000),
  );
});

test("the lazy reader agrees with the in-memory reader on corrupted files (600 runs)", async () => {
  await check(
    fc.asyncProperty(fc.nat(BASES.length - 1), fc.array(mutationArb, { maxLength: 3 }), async (base, muts) => {
      const bytes = mutate(BASES[base]!, muts);
      const sync = outcome(bytes);
      let lazyOutcome = "ok";
      let readTotal = 0;
      const src = bytesSource(bytes);
      const counted = {
        size: src.size,
        read: (o: number, l: number) => {
          readTotal += l;
          assert.ok(l <= bytes.length, `attempted to read ${l} bytes from ${bytes.length}`);
          return src.read(o, l);
        },
      };
      try {
        const lazy = await openSafetensors(counted);
        const file = readSafetensors(bytes);
        assert.deepEqual(lazy.names(), file.names());
        assert.deepEqual(lazy.metadata, file.metadata);
        for (const n of file.names()) assert.deepEqual((await lazy.get(n)).bytes, file.get(n).bytes);
      } catch (e) {
        if (!(e instanceof ShiraError)) throw e;
        lazyOutcome = e.code;
      }
      assert.equal(lazyOutcome, sync);
      assert.ok(readTotal <= bytes.length);
    }),
    runs(600),
  );
});

test("property run count", () => {
  assert.ok(totalRuns >= 10_000 * RUNS, `only ${totalRuns} runs`);
});
