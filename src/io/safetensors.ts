/**
 * safetensors reader and writer (the format HuggingFace PEFT saves adapters in).
 *
 * ```
 *  0        8                    8 + N                                 8 + N + D
 *  +--------+--------------------+-------------------------------------+
 *  | N (u64 | header: N bytes of | data section: D bytes, tensors at   |
 *  |   LE)  | UTF-8 JSON, padded | data_offsets relative to byte 8 + N |
 *  |        | with spaces        |                                     |
 *  +--------+--------------------+-------------------------------------+
 * ```
 *
 * The header is `{"__metadata__": {string: string}?, "<name>": {"dtype", "shape", "data_offsets": [b, e]}, ...}`.
 * Everything here follows the reference implementation (`safetensors` Rust crate, used by the Python package):
 * the same validation (in the same order, so each malformed file gets the same category of error) and the same
 * serialization (so a file written by Python is reproduced byte for byte).
 *
 * Byte order: safetensors data is little-endian and this module reinterprets it with typed arrays, which use the
 * host's byte order. Every WebAssembly host and every mainstream JS engine/CPU is little-endian; big-endian hosts
 * are not supported. `DataView` is only used for the 8-byte header length.
 *
 * No Node built-ins are imported here: the module is bundled for browsers. Node file access is in `node-source.ts`,
 * other byte sources in `byte-source.ts`.
 */

import { FormatError, ShapeError, ShiraError } from "../errors.js";
import type { ByteSource } from "./byte-source.js";

// ---------------------------------------------------------------------------------------------------------------
// dtypes
// ---------------------------------------------------------------------------------------------------------------

/** A safetensors element type supported by this library. */
export type Dtype = "BOOL" | "U8" | "I8" | "I16" | "U16" | "F16" | "BF16" | "I32" | "U32" | "F32" | "F64" | "I64" | "U64";

/**
 * All supported dtypes, in the order of the reference serializer's `Dtype` enum (smallest first). Files are
 * written with tensors sorted by this order *descending*, then by name.
 *
 * ```ts
 * DTYPES.includes("F16"); // true
 * ```
 */
export const DTYPES: readonly Dtype[] = Object.freeze([
  "BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64",
] as const);

/**
 * Size in bytes of one element of each dtype.
 *
 * ```ts
 * DTYPE_SIZE.BF16; // 2
 * ```
 */
export const DTYPE_SIZE: Readonly<Record<Dtype, number>> = Object.freeze({
  BOOL: 1, U8: 1, I8: 1, I16: 2, U16: 2, F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4, F64: 8, I64: 8, U64: 8,
});

const DTYPE_RANK: Readonly<Record<Dtype, number>> = Object.freeze(
  Object.fromEntries(DTYPES.map((d, i) => [d, i])) as Record<Dtype, number>,
);

/**
 * Whether `x` names a supported dtype.
 *
 * ```ts
 * isDtype("F32"); // true
 * isDtype("Q7");  // false
 * ```
 */
export function isDtype(x: unknown): x is Dtype {
  return typeof x === "string" && Object.prototype.hasOwnProperty.call(DTYPE_SIZE, x);
}

/** Largest accepted header (JSON) size in bytes, as in the reference implementation. */
export const MAX_HEADER_BYTES = 100_000_000;

// ---------------------------------------------------------------------------------------------------------------
// scalar conversions: binary16 and bfloat16
// ---------------------------------------------------------------------------------------------------------------

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** float32 bit pattern of the binary16 value with bits `h` (exact; keeps the sign of zero and NaN payloads). */
function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0; // inf / NaN (payload kept)
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0; // normal: rebias 15 -> 127
  if (mant === 0) return sign >>> 0; // +-0
  // subnormal: mant * 2^-24, normalise
  let e = 113; // exponent field of 2^-14 in float32 (127 - 14)
  let m = mant;
  while ((m & 0x400) === 0) {
    m <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((m & 0x3ff) << 13)) >>> 0;
}

/**
 * Decodes an IEEE 754 binary16 (`F16`) bit pattern to a number (exact, including subnormals, infinities, NaN).
 *
 * ```ts
 * f16ToF32(0x3c00); // 1
 * f16ToF32(0x0001); // 5.960464477539063e-8 (smallest subnormal, 2^-24)
 * ```
 */
export function f16ToF32(h: number): number {
  scratchU32[0] = f16BitsToF32Bits(h & 0xffff);
  return scratchF32[0]!;
}

/**
 * Rounds a number to IEEE binary16 (nearest, ties to even; overflow gives infinity, NaN stays NaN) and returns
 * the 16-bit pattern. The number is first rounded to float32 (as when a Float32Array is converted).
 *
 * ```ts
 * f32ToF16(1);       // 0x3c00
 * f32ToF16(65520);   // 0x7c00 (rounds to infinity)
 * ```
 */
export function f32ToF16(x: number): number {
  scratchF32[0] = x;
  const b = scratchU32[0]!;
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0); // inf / quiet NaN
  const e = exp - 112; // binary16 exponent field (127 - 15 = 112)
  if (e >= 0x1f) return sign | 0x7c00; // overflow
  if (e <= 0) {
    // subnormal or zero result: value in units of 2^-24 is m * 2^(e - 14)
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e; // 14 ..= 24
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1) !== 0)) h++;
    return sign | h;
  }
  let h = sign | (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) !== 0)) h++; // a carry into the exponent (or to inf) is correct
  return h;
}

/**
 * Decodes a bfloat16 (`BF16`) bit pattern: the float32 whose upper 16 bits are `h` (exact).
 *
 * ```ts
 * bf16ToF32(0x3f80); // 1
 * ```
 */
export function bf16ToF32(h: number): number {
  scratchU32[0] = (h & 0xffff) << 16;
  return scratchF32[0]!;
}

/**
 * Rounds a number to bfloat16 (nearest, ties to even, after rounding to float32) and returns the 16-bit pattern.
 * NaN keeps its sign and upper payload bits and is made quiet.
 *
 * ```ts
 * f32ToBf16(1);          // 0x3f80
 * f32ToBf16(1 + 2 ** -8); // 0x3f80 (tie, rounds to even)
 * ```
 */
export function f32ToBf16(x: number): number {
  scratchF32[0] = x;
  const b = scratchU32[0]!;
  if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0) return (b >>> 16) | 0x0040;
  const rounded = b + 0x7fff + ((b >>> 16) & 1); // may carry into the exponent, which is the correct result
  return (rounded >>> 16) & 0xffff;
}

// ---------------------------------------------------------------------------------------------------------------
// header parsing and validation (shared by the in-memory and the lazy reader)
// ---------------------------------------------------------------------------------------------------------------

/** One tensor's header entry. */
export interface TensorEntry {
  readonly name: string;
  readonly dtype: Dtype;
  readonly shape: readonly number[];
  /** `[begin, end)` relative to the start of the data section, as stored in the file. */
  readonly dataOffsets: readonly [number, number];
  /** Number of elements, `product(shape)` (1 for a scalar `[]`). */
  readonly numel: number;
  /** `end - begin` = `numel * DTYPE_SIZE[dtype]`. */
  readonly byteLength: number;
}

/** A tensor's raw little-endian bytes. */
export interface RawTensor {
  readonly name: string;
  readonly dtype: Dtype;
  readonly shape: readonly number[];
  readonly bytes: Uint8Array;
}

/** A validated safetensors header. */
export interface SafetensorsHeader {
  /** `N`, the JSON header's length in bytes (including padding). */
  readonly headerLength: number;
  /** Absolute byte offset of the data section (`8 + N`). */
  readonly dataStart: number;
  /** Length of the data section (end of the last tensor). */
  readonly dataLength: number;
  /** `__metadata__`, or `null` when the header has none. */
  readonly metadata: Readonly<Record<string, string>> | null;
  /** Tensor entries in header order. */
  readonly entries: ReadonlyMap<string, TensorEntry>;
}

const q = (s: string): string => JSON.stringify(s);
const fmtShape = (shape: readonly unknown[]): string => `[${shape.map((d) => (typeof d === "string" ? q(d) : String(d))).join(", ")}]`;
const fmtValue = (v: unknown): string => {
  try {
    const s = JSON.stringify(v);
    if (s === undefined) return String(v);
    return s.length > 80 ? `${s.slice(0, 77)}...` : s;
  } catch {
    return String(v);
  }
};

function u32le(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

/**
 * Reads and checks the 8-byte little-endian header length `N` at the start of a file of `fileSize` bytes.
 * Throws `SAFETENSORS_HEADER_LENGTH` when the file is shorter than 8 bytes, `N` exceeds
 * {@link MAX_HEADER_BYTES} or `8 + N` exceeds the file. Nothing is allocated from `N` before these checks.
 *
 * ```ts
 * const n = readHeaderLength(bytes.subarray(0, 8), bytes.length);
 * ```
 */
export function readHeaderLength(prefix: Uint8Array, fileSize: number): number {
  if (fileSize < 8 || prefix.length < 8) {
    throw new FormatError(
      "SAFETENSORS_HEADER_LENGTH",
      `safetensors: file has ${Math.min(fileSize, prefix.length)} bytes, fewer than the 8-byte header length`,
      { field: "header_length", fileSize },
    );
  }
  const lo = u32le(prefix, 0);
  const hi = u32le(prefix, 4);
  const n = hi * 2 ** 32 + lo; // inexact above 2^53, which only matters for the message (exact below)
  const exact = ((BigInt(hi) << 32n) | BigInt(lo)).toString();
  if (n > MAX_HEADER_BYTES) {
    throw new FormatError(
      "SAFETENSORS_HEADER_LENGTH",
      `safetensors: header length ${exact} exceeds the limit of ${MAX_HEADER_BYTES} bytes`,
      { field: "header_length", headerLength: exact, limit: MAX_HEADER_BYTES, fileSize },
    );
  }
  if (8 + n > fileSize) {
    throw new FormatError(
      "SAFETENSORS_HEADER_LENGTH",
      `safetensors: header length ${exact} is larger than the file (${fileSize} bytes, ${fileSize - 8} after the length)`,
      { field: "header_length", headerLength: n, fileSize },
    );
  }
  return n;
}

/** Byte offset of the first invalid UTF-8 sequence (WHATWG / Rust `from_utf8` rules), or -1. */
function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  const n = b.length;
  const cont = (k: number, lo = 0x80, hi = 0xbf): boolean => k < n && b[k]! >= lo && b[k]! <= hi;
  while (i < n) {
    const c = b[i]!;
    if (c < 0x80) i += 1;
    else if (c >= 0xc2 && c <= 0xdf) {
      if (!cont(i + 1)) return i;
      i += 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      const lo = c === 0xe0 ? 0xa0 : 0x80;
      const hi = c === 0xed ? 0x9f : 0xbf;
      if (!cont(i + 1, lo, hi) || !cont(i + 2)) return i;
      i += 3;
    } else if (c >= 0xf0 && c <= 0xf4) {
      const lo = c === 0xf0 ? 0x90 : 0x80;
      const hi = c === 0xf4 ? 0x8f : 0xbf;
      if (!cont(i + 1, lo, hi) || !cont(i + 2) || !cont(i + 3)) return i;
      i += 4;
    } else return i;
  }
  return -1;
}

const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const utf8Encoder = new TextEncoder();

/**
 * Lists the top-level keys of a syntactically valid JSON object text in order, and rejects a key that appears
 * twice in any object (`JSON.parse` silently keeps the last one). Iterative, linear time.
 */
function scanKeys(text: string): string[] {
  interface Frame {
    readonly obj: boolean;
    readonly keys: Set<string> | null;
    readonly parent: string | null; // key under which this object sits (null at top level / inside arrays)
    expectKey: boolean;
    lastKey: string | null;
  }
  const stack: Frame[] = [];
  const top: string[] = [];
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      for (;;) {
        const d = text.charCodeAt(j);
        if (d === 0x5c /* \ */) j += 2;
        else if (d === 0x22 || j >= n) break;
        else j++;
      }
      const f = stack[stack.length - 1];
      if (f !== undefined && f.obj && f.expectKey) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        f.expectKey = false;
        f.lastKey = key;
        if (f.keys!.has(key)) duplicateKey(stack.length, f.parent, key);
        f.keys!.add(key);
        if (stack.length === 1) top.push(key);
      }
      i = j + 1;
      continue;
    }
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      const parent = stack[stack.length - 1];
      const obj = c === 0x7b;
      stack.push({
        obj,
        keys: obj ? new Set() : null,
        parent: parent !== undefined && parent.obj ? parent.lastKey : null,
        expectKey: obj,
        lastKey: null,
      });
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
    } else if (c === 0x2c /* , */) {
      const f = stack[stack.length - 1];
      if (f !== undefined && f.obj) f.expectKey = true;
    }
    i++;
  }
  return top;
}

function duplicateKey(depth: number, parent: string | null, key: string): never {
  if (depth === 1) {
    if (key === "__metadata__") {
      throw new FormatError("SAFETENSORS_METADATA", `safetensors: "__metadata__" appears twice in the header`, {
        field: "__metadata__",
      });
    }
    throw new FormatError("SAFETENSORS_DUPLICATE", `safetensors: tensor ${q(key)} appears more than once in the header`, {
      tensor: key,
    });
  }
  if (depth === 2 && parent === "__metadata__") {
    throw new FormatError("SAFETENSORS_METADATA", `safetensors: __metadata__ key ${q(key)} appears more than once`, {
      field: "__metadata__",
      key,
    });
  }
  if (depth === 2 && parent !== null) {
    throw new FormatError("SAFETENSORS_HEADER", `safetensors: tensor ${q(parent)} has the field ${q(key)} more than once`, {
      tensor: parent,
      field: key,
    });
  }
  throw new FormatError("SAFETENSORS_HEADER", `safetensors: header has the key ${q(key)} more than once in a nested object`, {
    field: key,
  });
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const hasOwn = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);
const ENTRY_FIELDS = new Set(["dtype", "shape", "data_offsets"]);

function parseMetadata(v: unknown): Record<string, string> {
  if (!isPlainObject(v)) {
    throw new FormatError("SAFETENSORS_METADATA", `safetensors: __metadata__ must be a map of strings to strings, got ${fmtValue(v)}`, {
      field: "__metadata__",
      value: v,
    });
  }
  const out: [string, string][] = [];
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== "string") {
      throw new FormatError(
        "SAFETENSORS_METADATA",
        `safetensors: __metadata__ value for key ${q(k)} must be a string, got ${fmtValue(val)}`,
        { field: "__metadata__", key: k, value: val },
      );
    }
    out.push([k, val]);
  }
  return Object.freeze(Object.fromEntries(out)) as Record<string, string>;
}

interface PartialEntry {
  name: string;
  dtype: Dtype;
  shape: readonly number[];
  begin: number;
  end: number;
}

function parseEntry(name: string, v: unknown): PartialEntry {
  const bad = (msg: string, extra: Record<string, unknown> = {}): never => {
    throw new FormatError("SAFETENSORS_HEADER", `safetensors: tensor ${q(name)} ${msg}`, { tensor: name, ...extra });
  };
  if (!isPlainObject(v)) bad(`must be an object {dtype, shape, data_offsets}, got ${fmtValue(v)}`, { value: v });
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!ENTRY_FIELDS.has(k)) bad(`has an unknown field ${q(k)} (expected dtype, shape, data_offsets)`, { field: k });
  }
  for (const k of ENTRY_FIELDS) if (!hasOwn(o, k)) bad(`is missing the field ${q(k)}`, { field: k });
  const dtype = o["dtype"];
  if (typeof dtype !== "string") bad(`has a dtype that is not a string: ${fmtValue(dtype)}`, { field: "dtype", dtype });
  if (!isDtype(dtype)) {
    throw new FormatError(
      "SAFETENSORS_DTYPE",
      `safetensors: tensor ${q(name)} has unknown dtype ${q(dtype as string)} (supported: ${DTYPES.join(", ")})`,
      { tensor: name, dtype },
    );
  }
  const shape = o["shape"];
  if (!Array.isArray(shape)) bad(`has a shape that is not an array: ${fmtValue(shape)}`, { field: "shape", shape });
  for (const [i, d] of (shape as unknown[]).entries()) {
    if (typeof d !== "number" || !Number.isSafeInteger(d) || d < 0) {
      bad(`has shape ${fmtValue(shape)} whose dimension ${i} (${fmtValue(d)}) is not a non-negative integer`, {
        field: "shape",
        shape,
        dim: i,
      });
    }
  }
  const offs = o["data_offsets"];
  const badOffsets = (msg: string): never => {
    throw new FormatError("SAFETENSORS_OFFSETS", `safetensors: tensor ${q(name)} has data_offsets ${fmtValue(offs)}: ${msg}`, {
      tensor: name,
      dataOffsets: offs,
    });
  };
  if (!Array.isArray(offs) || offs.length !== 2) badOffsets("expected an array [begin, end]");
  const [b, e] = offs as unknown[];
  for (const x of [b, e]) {
    if (typeof x !== "number" || !Number.isSafeInteger(x) || x < 0) badOffsets(`${fmtValue(x)} is not a non-negative integer`);
  }
  if ((b as number) > (e as number)) badOffsets("begin is after end");
  return { name, dtype: dtype as Dtype, shape: Object.freeze((shape as number[]).slice()), begin: b as number, end: e as number };
}

function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) if (d === 0) return 0;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Parses and validates the JSON header (the `N` bytes after the length) of a safetensors file of `fileSize`
 * bytes. This single function is used by both {@link readSafetensors} and {@link openSafetensors}.
 *
 * Checks, in the reference implementation's order: UTF-8 and JSON (`SAFETENSORS_HEADER`), starts with `{`,
 * duplicate names (`SAFETENSORS_DUPLICATE`), `__metadata__` (`SAFETENSORS_METADATA`), each entry's fields
 * (`SAFETENSORS_HEADER`, unknown dtype `SAFETENSORS_DTYPE`, bad offsets `SAFETENSORS_OFFSETS`), then walking the
 * tensors sorted by offset: contiguous from 0 (`SAFETENSORS_OFFSETS`) and `end - begin == numel * size`
 * (`SAFETENSORS_TENSOR_SIZE`), and finally `8 + N + end == fileSize` (`SAFETENSORS_INCOMPLETE`).
 *
 * ```ts
 * const n = readHeaderLength(bytes.subarray(0, 8), bytes.length);
 * const header = parseSafetensorsHeader(bytes.subarray(8, 8 + n), bytes.length);
 * header.entries.get("lin0.weight")?.shape; // [20, 10]
 * ```
 */
export function parseSafetensorsHeader(header: Uint8Array, fileSize: number): SafetensorsHeader {
  const headerLength = header.length;
  let text: string;
  try {
    text = utf8Decoder.decode(header);
  } catch {
    const at = firstInvalidUtf8(header);
    const shown = at >= 0 ? Array.from(header.subarray(at, at + 4), (x) => x.toString(16).padStart(2, "0")).join(" ") : "?";
    throw new FormatError("SAFETENSORS_HEADER", `safetensors: header is not valid UTF-8 (at header byte ${at}: ${shown})`, {
      field: "header",
      offset: at,
    });
  }
  if (text.charCodeAt(0) !== 0x7b) {
    throw new FormatError(
      "SAFETENSORS_HEADER",
      `safetensors: header must start with "{", starts with ${q(text.slice(0, 16))}`,
      { field: "header", start: text.slice(0, 16) },
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new FormatError("SAFETENSORS_HEADER", `safetensors: header is not valid JSON (${(e as Error).message})`, {
      field: "header",
    });
  }
  if (!isPlainObject(json)) {
    throw new FormatError("SAFETENSORS_HEADER", `safetensors: header must be a JSON object`, { field: "header" });
  }
  const keys = scanKeys(text);

  let metadata: Record<string, string> | null = null;
  const partial: PartialEntry[] = [];
  for (const key of keys) {
    const v = json[key];
    if (key === "__metadata__") metadata = parseMetadata(v);
    else partial.push(parseEntry(key, v));
  }

  const sorted = partial.slice().sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let prev: PartialEntry | null = null;
  for (const t of sorted) {
    if (t.begin !== cursor) {
      const span = `data_offsets [${t.begin}, ${t.end}]`;
      const msg =
        prev === null
          ? `${span}, but the first tensor of the data section must start at 0`
          : t.begin < cursor
            ? `${span}, which overlaps tensor ${q(prev.name)} at [${prev.begin}, ${prev.end}]`
            : `${span}, which leaves a gap of ${t.begin - cursor} bytes after tensor ${q(prev.name)} at [${prev.begin}, ${prev.end}]`;
      throw new FormatError("SAFETENSORS_OFFSETS", `safetensors: tensor ${q(t.name)} has ${msg}`, {
        tensor: t.name,
        dataOffsets: [t.begin, t.end],
        previous: prev === null ? null : { tensor: prev.name, dataOffsets: [prev.begin, prev.end] },
      });
    }
    const numel = numelOf(t.shape);
    const need = numel * DTYPE_SIZE[t.dtype];
    const have = t.end - t.begin;
    if (!Number.isSafeInteger(need) || need !== have) {
      const needStr = Number.isSafeInteger(need) ? `${need} bytes` : "more bytes than can be addressed";
      throw new FormatError(
        "SAFETENSORS_TENSOR_SIZE",
        `safetensors: tensor ${q(t.name)} has data_offsets [${t.begin}, ${t.end}] (${have} bytes) but ${t.dtype} ${fmtShape(t.shape)} needs ${needStr}`,
        { tensor: t.name, dtype: t.dtype, shape: t.shape, dataOffsets: [t.begin, t.end], bytes: have, expectedBytes: need },
      );
    }
    cursor = t.end;
    prev = t;
  }
  const expected = 8 + headerLength + cursor;
  if (expected !== fileSize) {
    let msg: string;
    let tensor: string | null = prev === null ? null : prev.name;
    if (fileSize < expected) {
      const available = fileSize - 8 - headerLength;
      const cut = sorted.find((t) => t.end > available);
      if (cut !== undefined) tensor = cut.name;
      msg =
        `file has ${fileSize} bytes but the header describes ${expected} (8 + ${headerLength} header + ${cursor} data); ` +
        `${expected - fileSize} bytes are missing` +
        (cut === undefined ? "" : `, the data section ends inside tensor ${q(cut.name)} at [${cut.begin}, ${cut.end}] (${available} data bytes present)`);
    } else {
      msg = `file has ${fileSize - expected} extra bytes after the end of the data section (${expected} bytes${
        tensor === null ? "" : `, ending with tensor ${q(tensor)}`
      })`;
    }
    throw new FormatError("SAFETENSORS_INCOMPLETE", `safetensors: ${msg}`, { tensor, fileSize, expectedSize: expected });
  }

  const entries = new Map<string, TensorEntry>();
  for (const t of partial) {
    const numel = numelOf(t.shape);
    entries.set(
      t.name,
      Object.freeze({
        name: t.name,
        dtype: t.dtype,
        shape: t.shape,
        dataOffsets: Object.freeze([t.begin, t.end]) as readonly [number, number],
        numel,
        byteLength: t.end - t.begin,
      }),
    );
  }
  return { headerLength, dataStart: 8 + headerLength, dataLength: cursor, metadata, entries };
}

// ---------------------------------------------------------------------------------------------------------------
// tensor conversions
// ---------------------------------------------------------------------------------------------------------------

/** `bytes` itself if its offset is a multiple of `align`, else an aligned copy. */
function aligned(bytes: Uint8Array, align: number): Uint8Array {
  return bytes.byteOffset % align === 0 ? bytes : bytes.slice();
}

function positionOf(shape: readonly number[], flat: number): number[] {
  const pos = new Array<number>(shape.length).fill(0);
  let r = flat;
  for (let d = shape.length - 1; d >= 0; d--) {
    const n = shape[d]!;
    pos[d] = n === 0 ? 0 : r % n;
    r = n === 0 ? 0 : Math.floor(r / n);
  }
  return pos;
}

function rangeError(t: RawTensor, index: number, value: string, why: string): never {
  const pos = positionOf(t.shape, index);
  throw new FormatError(
    "SAFETENSORS_VALUE_RANGE",
    `safetensors: tensor ${q(t.name)} (${t.dtype} ${fmtShape(t.shape)}) element ${index} (position ${fmtShape(pos)}) = ${value} ${why}`,
    { tensor: t.name, dtype: t.dtype, shape: t.shape, index, position: pos, value },
  );
}

function checkRaw(t: RawTensor): number {
  if (!isDtype(t.dtype)) {
    throw new FormatError("SAFETENSORS_DTYPE", `safetensors: tensor ${q(t.name)} has unknown dtype ${q(String(t.dtype))}`, {
      tensor: t.name,
      dtype: t.dtype,
    });
  }
  const size = DTYPE_SIZE[t.dtype];
  if (t.bytes.length % size !== 0) {
    throw new ShapeError("SHAPE_MISMATCH", `safetensors: tensor ${q(t.name)} has ${t.bytes.length} bytes, not a multiple of the ${t.dtype} size ${size}`, {
      tensor: t.name,
      dtype: t.dtype,
      bytes: t.bytes.length,
    });
  }
  return t.bytes.length / size;
}

/** Exact float32 rounding of the 64-bit integer `hi * 2^32 + lo` (hi signed for I64, unsigned for U64). */
function int64ToNumber(hi: number, lo: number): number {
  if (hi >= -0x200000 && hi < 0x200000) return hi * 4294967296 + lo; // |v| < 2^53: exact
  // Round to odd at 53 bits, so that the final rounding to float32 (24 bits) is not a double rounding.
  let v = (BigInt(hi) << 32n) | BigInt(lo);
  const neg = v < 0n;
  if (neg) v = -v;
  const bits = v.toString(2).length;
  const drop = BigInt(bits - 53);
  let m = v >> drop;
  if ((v & ((1n << drop) - 1n)) !== 0n) m |= 1n;
  const r = Number(m) * 2 ** Number(drop);
  return neg ? -r : r;
}

/**
 * Converts a tensor to float32: `F32` is returned as a zero-copy view of `t.bytes` when its byte offset is
 * 4-aligned (a copy otherwise); `F16` and `BF16` are widened exactly (NaN payloads kept); `F64` is rounded to
 * nearest float32; integers are converted with float32 rounding (exact up to 2^24); `BOOL` gives 0 or 1.
 *
 * A view shares memory with the file's bytes: writing to it changes them. Use `.slice()` for a private copy.
 *
 * ```ts
 * const w = toFloat32(file.get("base_model.model.lin0.shira_weight")); // Float32Array(30)
 * ```
 */
export function toFloat32(t: RawTensor): Float32Array {
  const n = checkRaw(t);
  const b = t.bytes;
  switch (t.dtype) {
    case "F32": {
      const a = aligned(b, 4);
      return new Float32Array(a.buffer, a.byteOffset, n);
    }
    case "F16": {
      const a = aligned(b, 2);
      const src = new Uint16Array(a.buffer, a.byteOffset, n);
      const out = new Float32Array(n);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = f16BitsToF32Bits(src[i]!);
      return out;
    }
    case "BF16": {
      const a = aligned(b, 2);
      const src = new Uint16Array(a.buffer, a.byteOffset, n);
      const out = new Float32Array(n);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = src[i]! << 16;
      return out;
    }
    case "F64": {
      const a = aligned(b, 8);
      return Float32Array.from(new Float64Array(a.buffer, a.byteOffset, n));
    }
    case "I64":
    case "U64": {
      const a = aligned(b, 4);
      const w = new Uint32Array(a.buffer, a.byteOffset, 2 * n);
      const out = new Float32Array(n);
      const signed = t.dtype === "I64";
      for (let i = 0; i < n; i++) out[i] = int64ToNumber(signed ? w[2 * i + 1]! | 0 : w[2 * i + 1]!, w[2 * i]!);
      return out;
    }
    case "BOOL": {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = b[i] !== 0 ? 1 : 0;
      return out;
    }
    default:
      return Float32Array.from(intView(t, n));
  }
}

function intView(t: RawTensor, n: number): Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array {
  const a = aligned(t.bytes, DTYPE_SIZE[t.dtype]);
  switch (t.dtype) {
    case "I8":
      return new Int8Array(a.buffer, a.byteOffset, n);
    case "U8":
      return new Uint8Array(a.buffer, a.byteOffset, n);
    case "I16":
      return new Int16Array(a.buffer, a.byteOffset, n);
    case "U16":
      return new Uint16Array(a.buffer, a.byteOffset, n);
    case "I32":
      return new Int32Array(a.buffer, a.byteOffset, n);
    case "U32":
      return new Uint32Array(a.buffer, a.byteOffset, n);
    default:
      throw new FormatError("SAFETENSORS_DTYPE", `safetensors: tensor ${q(t.name)}: ${t.dtype} is not a 8/16/32-bit integer dtype`, {
        tensor: t.name,
        dtype: t.dtype,
      });
  }
}

/**
 * Converts a tensor to int32 without ever wrapping: `I32` is a zero-copy view when 4-aligned (else a copy);
 * 8/16-bit integers and `BOOL` are widened; `U32`, `I64`, `U64` values must lie in [-2^31, 2^31 - 1]; float dtypes
 * (`F32`, `F16`, `BF16`, `F64`; PEFT on Windows saves `shira_indices` as F32) must hold exact integers in that
 * range. Anything else throws `SAFETENSORS_VALUE_RANGE` naming the tensor, the element index and the value.
 *
 * ```ts
 * const idx = toInt32(file.get("base_model.model.lin0.shira_indices")); // Int32Array(60)
 * ```
 */
export function toInt32(t: RawTensor): Int32Array {
  const n = checkRaw(t);
  const b = t.bytes;
  switch (t.dtype) {
    case "I32": {
      const a = aligned(b, 4);
      return new Int32Array(a.buffer, a.byteOffset, n);
    }
    case "I8":
    case "U8":
    case "I16":
    case "U16":
      return Int32Array.from(intView(t, n));
    case "BOOL": {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) out[i] = b[i] !== 0 ? 1 : 0;
      return out;
    }
    case "U32": {
      const src = intView(t, n);
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const v = src[i]!;
        if (v > 0x7fffffff) rangeError(t, i, String(v), "does not fit in int32");
        out[i] = v;
      }
      return out;
    }
    case "I64":
    case "U64": {
      const a = aligned(b, 4);
      const w = new Uint32Array(a.buffer, a.byteOffset, 2 * n);
      const out = new Int32Array(n);
      const signed = t.dtype === "I64";
      for (let i = 0; i < n; i++) {
        const lo = w[2 * i]!;
        const hi = w[2 * i + 1]!;
        const ok = (hi === 0 && lo <= 0x7fffffff) || (signed && hi === 0xffffffff && lo >= 0x80000000);
        if (!ok) {
          const big = (BigInt(hi) << 32n) | BigInt(lo);
          rangeError(t, i, (signed ? BigInt.asIntN(64, big) : big).toString(), "does not fit in int32");
        }
        out[i] = lo | 0;
      }
      return out;
    }
    case "F32":
    case "F16":
    case "BF16":
    case "F64": {
      let src: Float32Array | Float64Array;
      if (t.dtype === "F64") {
        const a = aligned(b, 8);
        src = new Float64Array(a.buffer, a.byteOffset, n);
      } else src = toFloat32(t);
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const v = src[i]!;
        if (!Number.isInteger(v)) rangeError(t, i, String(v), "is not an integer");
        if (v < -0x80000000 || v > 0x7fffffff) rangeError(t, i, String(v), "does not fit in int32");
        out[i] = v;
      }
      return out;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// readers
// ---------------------------------------------------------------------------------------------------------------

/**
 * What the in-memory ({@link SafetensorsFile}) and the lazy ({@link SafetensorsSource}) reader have in common: the
 * validated header. Useful as a parameter type for code that only needs names, dtypes and shapes.
 *
 * ```ts
 * function describe(f: SafetensorsIndex) { return f.entries().map((e) => `${e.name} ${e.dtype} [${e.shape}]`); }
 * ```
 */
export abstract class SafetensorsIndex {
  /** `__metadata__` (e.g. `{ format: "pt" }`), or `null` if the file has none. */
  readonly metadata: Readonly<Record<string, string>> | null;
  /** `N`, the JSON header's byte length. */
  readonly headerLength: number;
  /** Absolute byte offset of the data section (`8 + N`). */
  readonly dataStart: number;
  protected readonly index: ReadonlyMap<string, TensorEntry>;

  protected constructor(h: SafetensorsHeader) {
    this.metadata = h.metadata;
    this.headerLength = h.headerLength;
    this.dataStart = h.dataStart;
    this.index = h.entries;
  }

  /** Tensor names in header order (without `__metadata__`). `file.names() // ["lin0.bias", ...]` */
  names(): string[] {
    return [...this.index.keys()];
  }

  /** Whether the file holds a tensor called `name`. `file.has("lin0.weight") // true` */
  has(name: string): boolean {
    return this.index.has(name);
  }

  /** All entries in header order. `file.entries().filter((e) => e.dtype === "F16")` */
  entries(): TensorEntry[] {
    return [...this.index.values()];
  }

  /**
   * The header entry of `name` (dtype, shape, offsets); `SAFETENSORS_MISSING` if absent.
   * `file.entry("lin0.weight") // { dtype: "F32", shape: [20, 10], dataOffsets: [80, 880], ... }`
   */
  entry(name: string): TensorEntry {
    const e = this.index.get(name);
    if (e === undefined) {
      const names = this.names();
      const list = names.slice(0, 8).map(q).join(", ") + (names.length > 8 ? `, ... (${names.length} in all)` : "");
      throw new FormatError("SAFETENSORS_MISSING", `safetensors: no tensor ${q(name)} in the file (it has ${list || "no tensors"})`, {
        tensor: name,
      });
    }
    return e;
  }
}

/**
 * A safetensors file held in memory. Tensors are views into the file's bytes (no copies).
 *
 * ```ts
 * const file = readSafetensors(bytes);
 * file.names();                 // header order
 * file.f32("lin0.weight");      // Float32Array(200)
 * ```
 */
export class SafetensorsFile extends SafetensorsIndex {
  readonly bytes: Uint8Array;

  /** Use {@link readSafetensors}. */
  constructor(bytes: Uint8Array, header: SafetensorsHeader) {
    super(header);
    this.bytes = bytes;
  }

  /**
   * Raw bytes of a tensor (a view into the file, no copy).
   *
   * ```ts
   * const { dtype, shape, bytes } = file.get("lin0.bias"); // "F32", [20], Uint8Array(80)
   * ```
   */
  get(name: string): RawTensor {
    const e = this.entry(name);
    const start = this.dataStart + e.dataOffsets[0];
    return { name, dtype: e.dtype, shape: e.shape, bytes: this.bytes.subarray(start, start + e.byteLength) };
  }

  /** The tensor as float32 ({@link toFloat32}: zero-copy for aligned `F32`). `file.f32("x")` */
  f32(name: string): Float32Array {
    return toFloat32(this.get(name));
  }

  /** The tensor as int32 ({@link toInt32}: range-checked, zero-copy for aligned `I32`). `file.i32("idx")` */
  i32(name: string): Int32Array {
    return toInt32(this.get(name));
  }
}

/**
 * Parses a whole safetensors file held in memory and validates it completely (header, offsets, sizes, file
 * length). The returned object's tensors are views into `bytes` (which must not be modified meanwhile).
 *
 * ```ts
 * const file = readSafetensors(await readFileBytes("adapter_model.safetensors"));
 * const w = file.f32("base_model.model.lin0.shira_weight");
 * const idx = file.i32("base_model.model.lin0.shira_indices");
 * ```
 */
export function readSafetensors(bytes: Uint8Array | ArrayBuffer): SafetensorsFile {
  // a plain Uint8Array view (also for a Node Buffer), no copy
  const u8 = bytes instanceof Uint8Array ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : new Uint8Array(bytes);
  const n = readHeaderLength(u8.subarray(0, 8), u8.length);
  const header = parseSafetensorsHeader(u8.subarray(8, 8 + n), u8.length);
  return new SafetensorsFile(u8, header);
}

/**
 * A safetensors file read lazily from a {@link ByteSource}: only the header is in memory, and each `get` reads
 * just that tensor's bytes.
 *
 * ```ts
 * const file = await openSafetensors(await openFileSource("model.safetensors"));
 * const w = await file.f32("lin0.weight");
 * await file.close();
 * ```
 */
export class SafetensorsSource extends SafetensorsIndex {
  readonly source: ByteSource;

  /** Use {@link openSafetensors}. */
  constructor(source: ByteSource, header: SafetensorsHeader) {
    super(header);
    this.source = source;
  }

  /** Reads the raw bytes of one tensor. `await file.get("lin0.bias")` */
  async get(name: string): Promise<RawTensor> {
    const e = this.entry(name);
    const bytes = await readExact(this.source, this.dataStart + e.dataOffsets[0], e.byteLength);
    return { name, dtype: e.dtype, shape: e.shape, bytes };
  }

  /** Reads one tensor as float32 ({@link toFloat32}). `await file.f32("lin0.weight")` */
  async f32(name: string): Promise<Float32Array> {
    return toFloat32(await this.get(name));
  }

  /** Reads one tensor as int32 ({@link toInt32}). `await file.i32("idx")` */
  async i32(name: string): Promise<Int32Array> {
    return toInt32(await this.get(name));
  }

  /** Closes the underlying source (if it has a `close`). `await file.close()` */
  async close(): Promise<void> {
    await this.source.close?.();
  }
}

async function readExact(source: ByteSource, offset: number, length: number): Promise<Uint8Array> {
  const b = await source.read(offset, length);
  if (!(b instanceof Uint8Array) || b.length !== length) {
    throw new ShiraError("IO", `safetensors: byte source returned ${b?.length} bytes at offset ${offset}, expected ${length}`, {
      offset,
      length,
    });
  }
  return b;
}

/**
 * Opens a safetensors file lazily: reads the 8-byte length and the header only, validates them against
 * `source.size` (with the same checks as {@link readSafetensors}), and returns an object whose async
 * `get`/`f32`/`i32` read one tensor at a time. A multi-gigabyte file is never held in memory.
 *
 * ```ts
 * const file = await openSafetensors(blobSource(fileInput.files[0]));
 * file.names();
 * const idx = await file.i32("base_model.model.lin0.shira_indices");
 * ```
 */
export async function openSafetensors(source: ByteSource): Promise<SafetensorsSource> {
  const size = source.size;
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new ShiraError("IO", `safetensors: byte source has an invalid size ${String(size)}`, { size });
  }
  if (size < 8) readHeaderLength(new Uint8Array(0), size); // throws SAFETENSORS_HEADER_LENGTH
  const n = readHeaderLength(await readExact(source, 0, 8), size);
  const header = parseSafetensorsHeader(await readExact(source, 8, n), size);
  return new SafetensorsSource(source, header);
}

// ---------------------------------------------------------------------------------------------------------------
// writer
// ---------------------------------------------------------------------------------------------------------------

/** Element data accepted by the writer: a typed array matching the dtype, or raw little-endian bytes. */
export type TensorData =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigInt64Array
  | BigUint64Array;

/** One tensor to write. */
export interface TensorInput {
  readonly dtype: Dtype;
  readonly shape: readonly number[];
  /**
   * `Float32Array` for F32, `Float64Array` for F64, `Int8/16/32Array` for I8/I16/I32, `Uint8/16/32Array` for
   * U8/U16/U32 (`Uint8Array` also for BOOL), `BigInt64Array`/`BigUint64Array` for I64/U64; for F16 and BF16 either a
   * `Uint16Array` of bit patterns or a `Float32Array` (rounded to nearest, ties to even). A `Uint8Array` is always
   * accepted as the raw little-endian bytes of any dtype.
   */
  readonly data: TensorData;
}

const DATA_CLASS: Readonly<Record<Dtype, readonly string[]>> = {
  BOOL: ["Uint8Array"],
  U8: ["Uint8Array"],
  I8: ["Int8Array"],
  I16: ["Int16Array"],
  U16: ["Uint16Array"],
  F16: ["Uint16Array", "Float32Array"],
  BF16: ["Uint16Array", "Float32Array"],
  I32: ["Int32Array"],
  U32: ["Uint32Array"],
  F32: ["Float32Array"],
  F64: ["Float64Array"],
  I64: ["BigInt64Array"],
  U64: ["BigUint64Array"],
};

function compareUtf8(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

function hasLoneSurrogate(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
      else return true;
    } else if (c >= 0xdc00 && c <= 0xdfff) return true;
  }
  return false;
}

interface Prepared {
  name: string;
  utf8: Uint8Array;
  dtype: Dtype;
  shape: readonly number[];
  bytes: Uint8Array;
}

function prepare(name: string, t: TensorInput): Prepared {
  if (typeof name !== "string" || hasLoneSurrogate(name) || name === "__metadata__") {
    throw new FormatError("SAFETENSORS_HEADER", `safetensors: ${q(String(name))} cannot be used as a tensor name`, { tensor: name });
  }
  if (t === null || typeof t !== "object") {
    throw new FormatError("SAFETENSORS_HEADER", `safetensors: tensor ${q(name)} must be { dtype, shape, data }, got ${fmtValue(t)}`, {
      tensor: name,
    });
  }
  const { dtype, shape, data } = t;
  if (!isDtype(dtype)) {
    throw new FormatError("SAFETENSORS_DTYPE", `safetensors: tensor ${q(name)} has unknown dtype ${fmtValue(dtype)} (supported: ${DTYPES.join(", ")})`, {
      tensor: name,
      dtype,
    });
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new ShapeError("SHAPE_MISMATCH", `safetensors: tensor ${q(name)} has shape ${fmtValue(shape)}, expected an array of non-negative integers`, {
      tensor: name,
      shape,
    });
  }
  const numel = numelOf(shape);
  const size = DTYPE_SIZE[dtype];
  const tag = ArrayBuffer.isView(data) ? (data as unknown as { [Symbol.toStringTag]: string })[Symbol.toStringTag] : typeof data;
  const mismatch = (have: string, need: string): never => {
    throw new ShapeError("SHAPE_MISMATCH", `safetensors: tensor ${q(name)} is ${dtype} ${fmtShape(shape)} (${need}) but its data has ${have}`, {
      tensor: name,
      dtype,
      shape,
    });
  };
  if (!Number.isSafeInteger(numel * size)) mismatch("fewer", `${numel} elements, too many to store`);
  const frozenShape = Object.freeze(shape.slice());
  const utf8 = utf8Encoder.encode(name);
  const view = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

  if (tag === "Uint8Array") {
    // raw little-endian bytes, for any dtype
    const u8 = data as Uint8Array;
    if (u8.length !== numel * size) mismatch(`${u8.length} bytes`, `${numel * size} bytes`);
    return { name, utf8, dtype, shape: frozenShape, bytes: u8 };
  }
  if (!DATA_CLASS[dtype].includes(tag)) {
    throw new FormatError(
      "SAFETENSORS_DTYPE",
      `safetensors: tensor ${q(name)} has dtype ${dtype}, which needs ${DATA_CLASS[dtype].join(" or ")} (or raw Uint8Array bytes), but its data is ${tag}`,
      { tensor: name, dtype, data: tag },
    );
  }
  const arr = data as Exclude<TensorData, BigInt64Array | BigUint64Array> | BigInt64Array | BigUint64Array;
  if (arr.length !== numel) mismatch(`${arr.length} elements`, `${numel} elements`);
  if ((dtype === "F16" || dtype === "BF16") && tag === "Float32Array") {
    const src = arr as Float32Array;
    const out = new Uint16Array(numel);
    const conv = dtype === "F16" ? f32ToF16 : f32ToBf16;
    for (let i = 0; i < numel; i++) out[i] = conv(src[i]!);
    return { name, utf8, dtype, shape: frozenShape, bytes: view(out) };
  }
  return { name, utf8, dtype, shape: frozenShape, bytes: view(arr) };
}

/**
 * Serializes tensors to safetensors bytes, exactly as the reference (Python/Rust) serializer does: data laid out
 * sorted by dtype descending (`BOOL < U8 < I8 < I16 < U16 < F16 < BF16 < I32 < U32 < F32 < F64 < I64 < U64`), then
 * by name (UTF-8 byte order); compact JSON header with `__metadata__` first (omitted when `metadata` is
 * `undefined`/`null`; its keys sorted for determinism), then the tensors in data order; header padded with spaces
 * to a multiple of 8. Data length must match the shape (`ShapeError` `SHAPE_MISMATCH`), and the typed array must
 * suit the dtype (`FormatError` `SAFETENSORS_DTYPE`).
 *
 * ```ts
 * const bytes = writeSafetensors(
 *   { "lin0.weight": { dtype: "F32", shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
 *     "lin0.idx": { dtype: "I64", shape: [2], data: new BigInt64Array([0n, 3n]) } },
 *   { format: "pt" },
 * );
 * ```
 */
export function writeSafetensors(
  tensors: Readonly<Record<string, TensorInput>> | ReadonlyMap<string, TensorInput>,
  metadata?: Readonly<Record<string, string>> | null,
): Uint8Array {
  const list: Prepared[] = [];
  const seen = new Set<string>();
  const items: Iterable<[string, TensorInput]> = tensors instanceof Map ? tensors.entries() : Object.entries(tensors);
  for (const [name, t] of items) {
    if (seen.has(name)) {
      throw new FormatError("SAFETENSORS_DUPLICATE", `safetensors: tensor ${q(name)} given more than once`, { tensor: name });
    }
    seen.add(name);
    list.push(prepare(name, t));
  }
  list.sort((a, b) => DTYPE_RANK[b.dtype] - DTYPE_RANK[a.dtype] || compareUtf8(a.utf8, b.utf8));

  const parts: string[] = [];
  if (metadata !== undefined && metadata !== null) {
    if (!isPlainObject(metadata)) {
      throw new FormatError("SAFETENSORS_METADATA", `safetensors: metadata must be a map of strings to strings, got ${fmtValue(metadata)}`, {
        field: "__metadata__",
      });
    }
    const kv: { k: string; u: Uint8Array; v: string }[] = [];
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string" || hasLoneSurrogate(k) || hasLoneSurrogate(v)) {
        throw new FormatError("SAFETENSORS_METADATA", `safetensors: metadata value for key ${q(k)} must be a (well-formed) string, got ${fmtValue(v)}`, {
          field: "__metadata__",
          key: k,
          value: v,
        });
      }
      kv.push({ k, u: utf8Encoder.encode(k), v });
    }
    kv.sort((a, b) => compareUtf8(a.u, b.u));
    parts.push(`"__metadata__":{${kv.map(({ k, v }) => `${q(k)}:${q(v)}`).join(",")}}`);
  }
  let offset = 0;
  for (const t of list) {
    const end = offset + t.bytes.length;
    parts.push(`${q(t.name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(",")}],"data_offsets":[${offset},${end}]}`);
    offset = end;
  }
  const json = utf8Encoder.encode(`{${parts.join(",")}}`);
  const n = Math.ceil(json.length / 8) * 8;
  if (n > MAX_HEADER_BYTES) {
    throw new FormatError("SAFETENSORS_HEADER_LENGTH", `safetensors: header would be ${n} bytes, over the limit of ${MAX_HEADER_BYTES}`, {
      field: "header_length",
      headerLength: n,
    });
  }
  const out = new Uint8Array(8 + n + offset);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, n, true); // n < 2^32, so the high word stays 0
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + n);
  let p = 8 + n;
  for (const t of list) {
    out.set(t.bytes, p);
    p += t.bytes.length;
  }
  return out;
}
