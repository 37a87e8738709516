/**
 * SHiRA mask functions: which `nnz = r * (out + in)` positions of a `[out, in]` weight an adapter trains.
 *
 * Every mask function returns the positions as sorted, unique flat indices `row * inFeatures + col` in an
 * `Int32Array` of exactly `nnz` entries (so `out * in` must stay below 2^31). PEFT's on-disk form, `shira_indices`
 * `[2, nnz]` (rows, then columns), is {@link flatToRowsCols} of it.
 *
 * | strategy | function | rule |
 * |---|---|---|
 * | `random` | {@link randomMask} | PEFT's `random_mask`: first `nnz` entries of `torch.randperm(out*in)` (bit exact) |
 * | `wm` | {@link wmMask} | the `nnz` largest `|W|` |
 * | `grad` | {@link gradMask} | the `nnz` largest accumulated `sum_b |dL_b/dW|` |
 * | `snip` | {@link snipMask} | the `nnz` largest `|W * sum_b dL_b/dW|` (SNIP connection sensitivity) |
 * | `struct` | {@link structMask} | strided rows and columns plus the diagonal, filled to exactly `nnz` |
 *
 * Ties (in every top-k strategy) go to the lower flat index; NaN scores rank below every number.
 *
 * A user's own mask function ({@link MaskFn}) may return a dense 0/1 mask or positions; {@link normalizeMask}
 * validates it and converts it to the sorted flat form.
 *
 * @module
 */

import { ConfigError, ShapeError } from "../errors.js";
import { randpermPrefix, TORCH_DEFAULT_SEED, type RandpermOptions, type TorchSeed } from "./randperm.js";

/** The layer a {@link MaskFn} is asked about (PEFT passes `base_layer`; the weight is row-major `[out, in]`). */
export interface MaskLayer {
  /** Module path, e.g. `"model.layers.0.self_attn.q_proj"`. */
  name: string;
  outFeatures: number;
  inFeatures: number;
  /** Row-major `[outFeatures, inFeatures]` base weight. */
  weight: Float32Array;
}

/**
 * What a mask function may return (see {@link normalizeMask}):
 * - a dense 0/1 mask of `out * in` entries: `Uint8Array`, `Float32Array`, `Float64Array`, `number[]`,
 *   `boolean[]`, or `number[][]` (`out` rows of `in`);
 * - positions: an `Int32Array` / `number[]` of `nnz` flat indices `row * in + col`, or `{ rows, cols }`.
 */
export type MaskResult =
  | Uint8Array
  | Float32Array
  | Float64Array
  | Int32Array
  | number[]
  | boolean[]
  | number[][]
  | { rows: ArrayLike<number>; cols: ArrayLike<number> };

/**
 * A custom mask function (PEFT's `config.mask_fn = my_mask_fn`): given the layer and `r`, choose exactly
 * `r * (outFeatures + inFeatures)` positions. `options` are the config's `maskOptions` (plus `randomSeed` for the
 * random strategy), PEFT's `**kwargs`.
 *
 * ```ts
 * const firstRows: MaskFn = (layer, r) => {
 *   const nnz = r * (layer.outFeatures + layer.inFeatures);
 *   return Int32Array.from({ length: nnz }, (_, i) => i); // the first nnz positions in row-major order
 * };
 * ```
 */
export type MaskFn = (layer: MaskLayer, r: number, options: Record<string, unknown>) => MaskResult;

/** Largest `out * in` for which flat indices fit an `Int32Array`. */
export const MAX_FLAT_SIZE = 2147483647;

// ---------------------------------------------------------------------------------------------------------------
// budget and shape checks

function checkDim(name: string, v: number, where: string): void {
  if (!Number.isSafeInteger(v) || v <= 0) {
    throw new ConfigError("CONFIG_INVALID", `${where}: \`${name}\` must be a positive integer, got ${v}`, {
      field: name,
      value: v,
    });
  }
}

/**
 * Check `out`, `in`, `r` as PEFT does and return `nnz = r * (out + in)`.
 *
 * Errors: `CONFIG_R` for `r` not a positive integer (PEFT's message); `CONFIG_MASK` when `nnz > out * in` (PEFT
 * refuses more SHiRA parameters than the layer has) or `out * in > 2^31 - 1`; `CONFIG_INVALID` for bad shapes.
 *
 * ```ts
 * maskBudget(20, 10, 1); // 30
 * ```
 */
export function maskBudget(outFeatures: number, inFeatures: number, r: number, where = "mask"): number {
  checkDim("outFeatures", outFeatures, where);
  checkDim("inFeatures", inFeatures, where);
  if (typeof r !== "number" || !Number.isSafeInteger(r) || r <= 0) {
    throw new ConfigError("CONFIG_R", `\`r\` should be a positive integer value but the value passed is ${String(r)}`, {
      field: "r",
      value: r,
    });
  }
  const n = outFeatures * inFeatures;
  if (n > MAX_FLAT_SIZE) {
    throw new ConfigError(
      "CONFIG_MASK",
      `${where}: a [${outFeatures}, ${inFeatures}] layer has ${n} weights; flat indices are limited to 2^31 - 1`,
      { outFeatures, inFeatures, n },
    );
  }
  const nnz = r * (outFeatures + inFeatures);
  if (nnz > n) {
    throw new ConfigError(
      "CONFIG_MASK",
      `The set rank ${r} results in more shira params than the total number of params in the base layer ${n} ` +
        `and this is not allowed: r * (out + in) = ${r} * (${outFeatures} + ${inFeatures}) = ${nnz} > ` +
        `${outFeatures} * ${inFeatures} = ${n} for a [${outFeatures}, ${inFeatures}] layer`,
      { outFeatures, inFeatures, r, nnz, n },
    );
  }
  return nnz;
}

function checkLength(name: string, actual: number, expected: number, out: number, inF: number): void {
  if (actual !== expected) {
    throw new ShapeError(
      "SHAPE_MISMATCH",
      `\`${name}\` has ${actual} elements, expected out * in = ${out} * ${inF} = ${expected}`,
      { field: name, expected, actual },
    );
  }
}

// ---------------------------------------------------------------------------------------------------------------
// random

/**
 * PEFT's `random_mask`, bit exact: a fresh CPU generator seeded with `seed` (PyTorch's default seed
 * 67280421310721 when `null`/omitted, i.e. PEFT's `random_seed=None`), `torch.randperm(out * in)`, its first
 * `nnz = r * (out + in)` entries, sorted.
 *
 * ```ts
 * randomMask(20, 10, 1, 3);    // PEFT alpha's lin0 mask: 30 sorted flat indices
 * randomMask(40, 20, 2, null); // PEFT beta's lin1 mask (default seed)
 * ```
 *
 * @param options `largeN` for layers with `out * in >= 214748364` (see `RandpermOptions`)
 */
export function randomMask(
  outFeatures: number,
  inFeatures: number,
  r: number,
  seed?: TorchSeed | null,
  options: RandpermOptions = {},
): Int32Array {
  const nnz = maskBudget(outFeatures, inFeatures, r, "randomMask");
  const perm = randpermPrefix(outFeatures * inFeatures, nnz, seed ?? TORCH_DEFAULT_SEED, options);
  return Int32Array.from(perm).sort();
}

// ---------------------------------------------------------------------------------------------------------------
// top-k selection

const HIST_SIZE = 65536;

// Keys are int32 values whose signed order is the score order, so every comparison stays on small integers.
const KEY_NAN = -2147483648; // below every number's key

/** Order-preserving int32 key of float32 bits `b` (an int32): -0 maps as +0, NaN lowest. Branch-free sign flip. */
function f32KeySigned(b: number): number {
  if ((b & 0x7fffffff) > 0x7f800000) return KEY_NAN;
  if (b === -2147483648) return 0; // -0
  return b ^ ((b >> 31) & 0x7fffffff); // negative: reverse the magnitude order
}

/** Order-preserving int32 key of `|x|` from float32 bits `b`: NaN lowest. */
function f32KeyAbs(b: number): number {
  const a = b & 0x7fffffff;
  return a > 0x7f800000 ? KEY_NAN : a;
}

/** Order-preserving 16-bit digit of the high half of an int32 key. */
function hiDigit(key: number): number {
  return (key >>> 16) ^ 0x8000;
}

/** Pick, from a histogram, the bucket holding the `need`-th largest key; returns [bucket, count above it]. */
function pickBucket(hist: Uint32Array, need: number): [number, number] {
  let above = 0;
  for (let d = HIST_SIZE - 1; d >= 0; d--) {
    const c = hist[d]!;
    if (above + c >= need) return [d, above];
    above += c;
  }
  throw new Error("unreachable: histogram holds fewer than k keys");
}

/**
 * Radix select over int32 keys of float32 bits: a histogram of the high 16 bits, one of the low 16 bits inside
 * the chosen bucket, then one collecting pass in index order. The loops are written out per key kind so that
 * V8 inlines the key function.
 */
function topKF32Bits(bits: Int32Array, k: number, abs: boolean): Int32Array {
  const n = bits.length;
  const hist = new Uint32Array(HIST_SIZE);
  if (abs) for (let i = 0; i < n; i++) hist[hiDigit(f32KeyAbs(bits[i]!))]!++;
  else for (let i = 0; i < n; i++) hist[hiDigit(f32KeySigned(bits[i]!))]!++;
  const [d1, above1] = pickBucket(hist, k);
  const top = ((d1 ^ 0x8000) << 16) >> 16; // the chosen bucket as `key >> 16`
  hist.fill(0);
  if (abs) {
    for (let i = 0; i < n; i++) {
      const key = f32KeyAbs(bits[i]!);
      if (key >> 16 === top) hist[key & 0xffff]!++;
    }
  } else {
    for (let i = 0; i < n; i++) {
      const key = f32KeySigned(bits[i]!);
      if (key >> 16 === top) hist[key & 0xffff]!++;
    }
  }
  const [d2, above2] = pickBucket(hist, k - above1);
  const threshold = (top << 16) | d2;
  let takeEqual = k - above1 - above2;
  const out = new Int32Array(k);
  let p = 0;
  for (let i = 0; i < n && p < k; i++) {
    const key = abs ? f32KeyAbs(bits[i]!) : f32KeySigned(bits[i]!);
    if (key > threshold) out[p++] = i;
    else if (key === threshold && takeEqual > 0) {
      out[p++] = i;
      takeEqual--;
    }
  }
  return out;
}

/** Radix select over 64-bit keys of float64 bits (four 16-bit passes, then one collecting pass). */
function topKF64Bits(words: Uint32Array, k: number, abs: boolean): Int32Array {
  const n = words.length >>> 1;
  let kh = 0;
  let kl = 0;
  const keyAt = (i: number): void => {
    const lo = words[2 * i]!; // little-endian: low word first
    const hi = words[2 * i + 1]!;
    const ah = hi & 0x7fffffff;
    if (ah > 0x7ff00000 || (ah === 0x7ff00000 && lo !== 0)) {
      kh = 0; // NaN: lowest
      kl = 0;
    } else if (abs) {
      kh = ah + 1;
      kl = lo;
    } else if (ah === 0 && lo === 0) {
      kh = 0x80000000; // +0 and -0
      kl = 0;
    } else if (hi & 0x80000000) {
      kh = ~hi >>> 0;
      kl = ~lo >>> 0;
    } else {
      kh = (hi | 0x80000000) >>> 0;
      kl = lo;
    }
  };
  const hist = new Uint32Array(HIST_SIZE);
  let th = 0; // threshold key, built digit by digit
  let tl = 0;
  let above = 0;
  for (let level = 0; level < 4; level++) {
    hist.fill(0);
    for (let i = 0; i < n; i++) {
      keyAt(i);
      let digit: number;
      if (level === 0) digit = kh >>> 16;
      else if (level === 1) {
        if (kh >>> 16 !== th >>> 16) continue;
        digit = kh & 0xffff;
      } else if (level === 2) {
        if (kh !== th) continue;
        digit = kl >>> 16;
      } else {
        if (kh !== th || kl >>> 16 !== tl >>> 16) continue;
        digit = kl & 0xffff;
      }
      hist[digit]!++;
    }
    const [d, a] = pickBucket(hist, k - above);
    above += a;
    if (level === 0) th = d * HIST_SIZE;
    else if (level === 1) th += d;
    else if (level === 2) tl = d * HIST_SIZE;
    else tl += d;
  }
  let takeEqual = k - above;
  const out = new Int32Array(k);
  let p = 0;
  for (let i = 0; i < n && p < k; i++) {
    keyAt(i);
    if (kh > th || (kh === th && kl > tl)) out[p++] = i;
    else if (kh === th && kl === tl && takeEqual > 0) {
      out[p++] = i;
      takeEqual--;
    }
  }
  return out;
}

function selectTopK(scores: Float32Array | Float64Array, k: number, abs: boolean, where: string): Int32Array {
  const n = scores.length;
  if (!Number.isSafeInteger(k) || k < 0 || k > n) {
    throw new ConfigError("CONFIG_MASK", `${where}: k must be an integer in [0, ${n}], got ${k}`, { k, n });
  }
  if (n > MAX_FLAT_SIZE) {
    throw new ConfigError("CONFIG_MASK", `${where}: ${n} scores exceed 2^31 - 1 flat indices`, { n });
  }
  if (k === 0) return new Int32Array(0);
  if (k === n) return Int32Array.from({ length: n }, (_, i) => i);
  if (scores instanceof Float32Array) {
    return topKF32Bits(new Int32Array(scores.buffer, scores.byteOffset, n), k, abs);
  }
  if (scores instanceof Float64Array) {
    return topKF64Bits(new Uint32Array(scores.buffer, scores.byteOffset, 2 * n), k, abs);
  }
  throw new ConfigError("CONFIG_MASK", `${where}: scores must be a Float32Array or Float64Array`, {});
}

/**
 * Flat indices of the `k` largest scores, sorted ascending. Ties go to the lower index; NaN ranks below every
 * number (including `-Infinity`), so NaNs are chosen only when fewer than `k` numbers exist, lowest index first;
 * `-0` and `+0` are equal.
 *
 * O(n) time and O(k) extra memory: an exact radix select on the order-preserving integer image of the float bits
 * (16-bit histograms: two passes for float32, four for float64) finds the k-th largest key, and one final scan in
 * index order collects every larger key plus the first equal ones, already sorted. Assumes a little-endian host
 * (every JavaScript engine in practice).
 *
 * ```ts
 * topKIndices(new Float32Array([0.5, 2, 2, NaN, -1]), 2); // Int32Array [1, 2]
 * topKIndices(new Float32Array([1, 3, 3, 3]), 2);         // Int32Array [1, 2] (tie: lower index first)
 * ```
 */
export function topKIndices(scores: Float32Array | Float64Array, k: number): Int32Array {
  return selectTopK(scores, k, false, "topKIndices");
}

/**
 * SHiRA-WM (weight magnitude): the `nnz = r * (out + in)` positions with the largest `|W|` (ties to the lower
 * flat index, NaN lowest). Works on the float bits directly, without an `|W|` copy.
 *
 * ```ts
 * const idx = wmMask(layer.weight, 4096, 4096, 32); // 262144 sorted flat indices
 * ```
 */
export function wmMask(weight: Float32Array, outFeatures: number, inFeatures: number, r: number): Int32Array {
  const nnz = maskBudget(outFeatures, inFeatures, r, "wmMask");
  checkLength("weight", weight.length, outFeatures * inFeatures, outFeatures, inFeatures);
  return selectTopK(weight, nnz, true, "wmMask");
}

/**
 * SHiRA-Grad: the `nnz` positions with the largest accumulated gradient magnitude. The caller accumulates
 * `gradAbsSum[p] = sum_b |dL_b/dW[p]|` over calibration batches `b` (so gradients of opposite sign in different
 * batches do not cancel) and passes it in; the values are ranked as given (ties to the lower flat index, NaN lowest).
 *
 * ```ts
 * const acc = new Float32Array(out * inF);
 * for (const g of batchGrads) for (let p = 0; p < acc.length; p++) acc[p] += Math.abs(g[p]);
 * const idx = gradMask(acc, out, inF, 32);
 * ```
 */
export function gradMask(
  gradAbsSum: Float32Array | Float64Array,
  outFeatures: number,
  inFeatures: number,
  r: number,
): Int32Array {
  const nnz = maskBudget(outFeatures, inFeatures, r, "gradMask");
  checkLength("gradAbsSum", gradAbsSum.length, outFeatures * inFeatures, outFeatures, inFeatures);
  return selectTopK(gradAbsSum, nnz, false, "gradMask");
}

/**
 * SHiRA-SNIP: the `nnz` positions with the largest SNIP connection sensitivity `|W ⊙ G|` where
 * `G = sum_b dL_b/dW` is the plain (signed) gradient of the loss summed over the calibration batches.
 *
 * Why `|W ⊙ sum_b g_b|` and not `sum_b |W ⊙ g_b|`: SNIP (Lee et al., 2019) scores connection `j` by
 * `|dL/dc_j| = |w_j * dL/dw_j|`, the derivative of the loss over the whole calibration set with respect to a
 * multiplicative gate `c_j`; the loss over several batches is their sum, so its gradient is `sum_b g_b`, taken
 * before the absolute value. (Summing magnitudes per batch is what {@link gradMask} does for the Grad strategy.)
 * It also needs just one signed accumulator, the ordinary gradient accumulation.
 *
 * The score is computed as float32 `|fround(W[p] * G[p])|`, as PyTorch's `(W * G).abs()` does for float32
 * tensors (the double product of two float32 values is exact, so the rounding is a single float32 rounding);
 * this allocates one `Float32Array(out * in)` of scores. Ties go to the lower flat index, NaN lowest.
 *
 * ```ts
 * const gSum = new Float32Array(out * inF);
 * for (const g of batchGrads) for (let p = 0; p < gSum.length; p++) gSum[p] += g[p];
 * const idx = snipMask(layer.weight, gSum, out, inF, 32);
 * ```
 */
export function snipMask(
  weight: Float32Array,
  gradSum: Float32Array | Float64Array,
  outFeatures: number,
  inFeatures: number,
  r: number,
): Int32Array {
  const nnz = maskBudget(outFeatures, inFeatures, r, "snipMask");
  const n = outFeatures * inFeatures;
  checkLength("weight", weight.length, n, outFeatures, inFeatures);
  checkLength("gradSum", gradSum.length, n, outFeatures, inFeatures);
  const scores = new Float32Array(n);
  for (let p = 0; p < n; p++) scores[p] = Math.abs(weight[p]! * gradSum[p]!);
  return selectTopK(scores, nnz, false, "snipMask");
}

// ---------------------------------------------------------------------------------------------------------------
// struct

/** How {@link structMask} spends its budget (for documentation, tests and logging). */
export interface StructMaskPlan {
  /** `nnz = r * (out + in)`. */
  nnz: number;
  /** The stride `f` (rows and columns `0, f, 2f, ...`), or `null` when no stride fits and only the diagonal is kept. */
  stride: number | null;
  /** Number of strided rows, `ceil(out / f)` (0 without a stride). */
  rows: number;
  /** Number of strided columns, `ceil(in / f)` (0 without a stride). */
  cols: number;
  /** Diagonal positions `(i, i)`, `i < min(out, in)`, not already in a strided row or column. */
  diagonal: number;
  /** Size of the union of strided rows, strided columns and the diagonal. */
  core: number;
  /** Positions added by the deterministic fill: `nnz - core`. */
  fill: number;
}

function structCore(out: number, inF: number, f: number): [number, number, number, number] {
  const m = Math.min(out, inF);
  const rows = Math.ceil(out / f);
  const cols = Math.ceil(inF / f);
  const diag = m - Math.ceil(m / f); // (i, i) lies in a strided row/column iff f divides i
  return [rows, cols, diag, out * inF - (out - rows) * (inF - cols) + diag];
}

/**
 * The budget rule of {@link structMask}, without building the mask. O(out + in).
 *
 * ```ts
 * structMaskPlan(4096, 4096, 32); // { stride: 133, rows: 31, cols: 31, diagonal: 4065, core: 257056, fill: 5088, ... }
 * ```
 */
export function structMaskPlan(outFeatures: number, inFeatures: number, r: number): StructMaskPlan {
  const nnz = maskBudget(outFeatures, inFeatures, r, "structMask");
  const maxF = Math.max(outFeatures, inFeatures);
  for (let f = 1; f <= maxF; f++) {
    const [rows, cols, diagonal, core] = structCore(outFeatures, inFeatures, f);
    if (core <= nnz) return { nnz, stride: f, rows, cols, diagonal, core, fill: nnz - core };
  }
  const diagonal = Math.min(outFeatures, inFeatures);
  return { nnz, stride: null, rows: 0, cols: 0, diagonal, core: diagonal, fill: nnz - diagonal };
}

/**
 * SHiRA-Struct: strided rows and columns plus the diagonal (which makes the adapter high rank), filled to exactly
 * `nnz = r * (out + in)` positions. The rule, precisely:
 *
 * 1. **Core.** For a stride `f`, the core is the union of rows `{0, f, 2f, ...} ∩ [0, out)` (all columns),
 *    columns `{0, f, 2f, ...} ∩ [0, in)` (all rows) and the diagonal `{(i, i) : i < min(out, in)}`. Its size is
 *    `out*in - (out - ceil(out/f)) * (in - ceil(in/f)) + m - ceil(m/f)` with `m = min(out, in)`. The stride is
 *    the **smallest** `f` in `1 .. max(out, in)` whose core fits (`<= nnz`). If none fits (e.g. `r = 1` on a
 *    square layer, where even row 0 + column 0 + the diagonal exceed `out + in`), the core is the diagonal alone
 *    (`m <= nnz` always holds).
 * 2. **Fill.** The remaining `nnz - core` positions are taken from wrapped diagonals in this order, skipping core
 *    positions: if `out >= in`, diagonal `t = 0, 1, ..., in-1` is `(i, (i + t) mod in)` for `i = 0 .. out-1`;
 *    otherwise diagonal `t = 0, 1, ..., out-1` is `((j + t) mod out, j)` for `j = 0 .. in-1`. These diagonals
 *    partition the matrix, so the fill always completes; diagonal 0 first completes the main diagonal's
 *    wrap-around (one entry in every row and column), then the next diagonals spread evenly.
 *
 * Deterministic, independent of the weight values. Time O(nnz log nnz + out + in) (the final sort), memory
 * O(nnz); the `out * in` matrix is never materialized.
 *
 * ```ts
 * structMask(4, 4, 1); // 8 positions: the diagonal (0,0) (1,1) (2,2) (3,3) + diagonal 1: (0,1) (1,2) (2,3) (3,0)
 * ```
 */
export function structMask(outFeatures: number, inFeatures: number, r: number): Int32Array {
  const plan = structMaskPlan(outFeatures, inFeatures, r);
  const { nnz, stride: f } = plan;
  const out = new Int32Array(nnz);
  let p = 0;
  const m = Math.min(outFeatures, inFeatures);
  if (f !== null) {
    for (let row = 0; row < outFeatures; row += f) {
      const base = row * inFeatures;
      for (let c = 0; c < inFeatures; c++) out[p++] = base + c;
    }
    for (let c = 0; c < inFeatures; c += f) {
      for (let row = 0; row < outFeatures; row++) if (row % f !== 0) out[p++] = row * inFeatures + c;
    }
    for (let i = 0; i < m; i++) if (i % f !== 0) out[p++] = i * inFeatures + i;
  } else {
    for (let i = 0; i < m; i++) out[p++] = i * inFeatures + i;
  }
  const inCore =
    f === null
      ? (row: number, col: number) => row === col
      : (row: number, col: number) => row === col || row % f === 0 || col % f === 0;
  if (outFeatures >= inFeatures) {
    for (let t = 0; t < inFeatures && p < nnz; t++) {
      for (let i = 0; i < outFeatures && p < nnz; i++) {
        const col = (i + t) % inFeatures;
        if (!inCore(i, col)) out[p++] = i * inFeatures + col;
      }
    }
  } else {
    for (let t = 0; t < outFeatures && p < nnz; t++) {
      for (let j = 0; j < inFeatures && p < nnz; j++) {
        const row = (j + t) % outFeatures;
        if (!inCore(row, j)) out[p++] = row * inFeatures + j;
      }
    }
  }
  if (p !== nnz) throw new Error(`structMask: internal error, filled ${p} of ${nnz}`);
  return out.sort();
}

// ---------------------------------------------------------------------------------------------------------------
// custom masks

function maskError(moduleName: string, message: string, details: Record<string, unknown>): ConfigError {
  return new ConfigError("CONFIG_MASK", `mask for module "${moduleName}": ${message}`, {
    module: moduleName,
    ...details,
  });
}

function describe(v: unknown): string {
  if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") return String(v);
  if (v === undefined) return "undefined";
  if (v === null) return "null";
  return typeof v === "string" ? JSON.stringify(v) : typeof v;
}

/** Dense 0/1 mask -> sorted flat indices. */
function denseToFlat(mask: ArrayLike<unknown>, nnz: number, moduleName: string): Int32Array {
  const n = mask.length;
  let ones = 0;
  for (let i = 0; i < n; i++) {
    const v = mask[i];
    if (v === 1 || v === true) ones++;
    else if (v !== 0 && v !== false) {
      throw maskError(moduleName, `dense mask values must be 0 or 1, found ${describe(v)} at flat index ${i}`, {
        index: i,
        value: v,
      });
    }
  }
  if (ones !== nnz) {
    throw maskError(moduleName, `dense mask has ${ones} ones, expected nnz = r * (out + in) = ${nnz}`, {
      expected: nnz,
      actual: ones,
    });
  }
  const out = new Int32Array(nnz);
  let p = 0;
  for (let i = 0; i < n; i++) if (mask[i] === 1 || mask[i] === true) out[p++] = i;
  return out;
}

/** Positions -> sorted flat indices, checking range, integrality and duplicates. */
function positionsToFlat(flat: ArrayLike<unknown>, n: number, nnz: number, moduleName: string): Int32Array {
  if (flat.length !== nnz) {
    throw maskError(moduleName, `got ${flat.length} positions, expected nnz = r * (out + in) = ${nnz}`, {
      expected: nnz,
      actual: flat.length,
    });
  }
  const out = new Int32Array(nnz);
  for (let i = 0; i < nnz; i++) {
    const v = flat[i];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v >= n) {
      throw maskError(
        moduleName,
        `position ${describe(v)} (entry ${i}) is not an integer flat index in [0, ${n})`,
        { index: i, value: v },
      );
    }
    out[i] = v;
  }
  out.sort();
  for (let i = 1; i < nnz; i++) {
    if (out[i] === out[i - 1]) {
      throw maskError(moduleName, `duplicate position ${out[i]}`, { value: out[i] });
    }
  }
  return out;
}

/**
 * Validate what a custom {@link MaskFn} returned and convert it to sorted flat indices (`row * in + col`).
 *
 * Accepted forms:
 * - dense 0/1 masks of exactly `out * in` entries: `Uint8Array`, `Float32Array`, `Float64Array`, `boolean[]`,
 *   `number[][]` (`out` rows of `in`), or a `number[]` of length `out * in`; values must be exactly 0 or 1 and
 *   there must be exactly `nnz` ones;
 * - positions: an `Int32Array` or `number[]` of `nnz` flat indices, or `{ rows, cols }` (two arrays of `nnz`
 *   row and column indices); every position must be an integer in range, with no duplicates, in any order.
 *
 * A `number[]` whose length is both `out * in` and `nnz` (a mask of the whole layer) is read as dense when every
 * entry is 1, else as positions.
 *
 * Errors: `ConfigError` `CONFIG_MASK` naming the module, the expected and actual counts or the offending value
 * (stricter than PEFT, which silently keeps `mask == 1` and only fails later on a count mismatch).
 *
 * ```ts
 * normalizeMask(new Uint8Array([0, 1, 1, 0]), 2, 2, 2, "lin0");  // Int32Array [1, 2]
 * normalizeMask({ rows: [1, 0], cols: [0, 1] }, 2, 2, 2, "lin0"); // Int32Array [1, 2]
 * ```
 */
export function normalizeMask(
  result: MaskResult | unknown,
  outFeatures: number,
  inFeatures: number,
  nnz: number,
  moduleName: string,
): Int32Array {
  const n = outFeatures * inFeatures;
  const checkDenseLength = (len: number): void => {
    if (len !== n) {
      throw maskError(moduleName, `dense mask has ${len} entries, expected out * in = ${outFeatures} * ${inFeatures} = ${n}`, {
        expected: n,
        actual: len,
      });
    }
  };
  if (result instanceof Uint8Array || result instanceof Float32Array || result instanceof Float64Array) {
    checkDenseLength(result.length);
    return denseToFlat(result, nnz, moduleName);
  }
  if (result instanceof Int32Array) return positionsToFlat(result, n, nnz, moduleName);
  if (Array.isArray(result)) {
    if (result.length > 0 && Array.isArray(result[0])) {
      // number[][]: out rows of in
      if (result.length !== outFeatures) {
        throw maskError(moduleName, `2-D mask has ${result.length} rows, expected out = ${outFeatures}`, {
          expected: outFeatures,
          actual: result.length,
        });
      }
      const flat: unknown[] = [];
      for (let row = 0; row < result.length; row++) {
        const rowArr: unknown = result[row];
        if (!Array.isArray(rowArr) || rowArr.length !== inFeatures) {
          throw maskError(
            moduleName,
            `2-D mask row ${row} has ${Array.isArray(rowArr) ? rowArr.length : describe(rowArr)} entries, expected in = ${inFeatures}`,
            { expected: inFeatures, actual: Array.isArray(rowArr) ? rowArr.length : rowArr, row },
          );
        }
        for (const v of rowArr) flat.push(v);
      }
      return denseToFlat(flat, nnz, moduleName);
    }
    if (result.length > 0 && typeof result[0] === "boolean") {
      checkDenseLength(result.length);
      return denseToFlat(result, nnz, moduleName);
    }
    const len = result.length;
    if (len === n && len !== nnz) return denseToFlat(result, nnz, moduleName);
    if (len === nnz && len !== n) return positionsToFlat(result, n, nnz, moduleName);
    if (len === n && len === nnz) {
      return result.every((v) => v === 1) ? denseToFlat(result, nnz, moduleName) : positionsToFlat(result, n, nnz, moduleName);
    }
    throw maskError(
      moduleName,
      `array of ${len} entries is neither a dense mask (out * in = ${n}) nor nnz = ${nnz} positions`,
      { expected: nnz, actual: len },
    );
  }
  if (typeof result === "object" && result !== null && "rows" in result && "cols" in result) {
    const { rows, cols } = result as { rows: unknown; cols: unknown };
    const isArrayLike = (a: unknown): a is ArrayLike<unknown> =>
      Array.isArray(a) || (ArrayBuffer.isView(a) && !(a instanceof DataView));
    if (!isArrayLike(rows) || !isArrayLike(cols)) {
      throw maskError(moduleName, "`rows` and `cols` must be arrays of integers", {});
    }
    if (rows.length !== cols.length) {
      throw maskError(moduleName, `\`rows\` has ${rows.length} entries but \`cols\` has ${cols.length}`, {
        expected: rows.length,
        actual: cols.length,
      });
    }
    if (rows.length !== nnz) {
      throw maskError(moduleName, `got ${rows.length} positions, expected nnz = r * (out + in) = ${nnz}`, {
        expected: nnz,
        actual: rows.length,
      });
    }
    const flat = new Array<number>(nnz);
    for (let i = 0; i < nnz; i++) {
      const rv = rows[i];
      const cv = cols[i];
      if (typeof rv !== "number" || !Number.isInteger(rv) || rv < 0 || rv >= outFeatures) {
        throw maskError(moduleName, `row ${describe(rv)} (entry ${i}) is not an integer in [0, ${outFeatures})`, {
          index: i,
          value: rv,
        });
      }
      if (typeof cv !== "number" || !Number.isInteger(cv) || cv < 0 || cv >= inFeatures) {
        throw maskError(moduleName, `column ${describe(cv)} (entry ${i}) is not an integer in [0, ${inFeatures})`, {
          index: i,
          value: cv,
        });
      }
      flat[i] = rv * inFeatures + cv;
    }
    return positionsToFlat(flat, n, nnz, moduleName);
  }
  throw maskError(
    moduleName,
    `unsupported mask of type ${result === null ? "null" : typeof result === "object" ? (result as object).constructor?.name ?? "object" : typeof result}; ` +
      "expected a dense 0/1 mask (Uint8Array, Float32Array, number[]) or positions (Int32Array, number[], { rows, cols })",
    {},
  );
}

// ---------------------------------------------------------------------------------------------------------------
// index helpers

/**
 * Split flat indices into PEFT's `shira_indices` rows (output index) and columns (input index).
 *
 * ```ts
 * flatToRowsCols(Int32Array.of(0, 11, 25), 10); // { rows: [0, 1, 2], cols: [0, 1, 5] }
 * ```
 */
export function flatToRowsCols(flat: ArrayLike<number>, inFeatures: number): { rows: Int32Array; cols: Int32Array } {
  const n = flat.length;
  const rows = new Int32Array(n);
  const cols = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const v = flat[i]!;
    const row = Math.floor(v / inFeatures);
    rows[i] = row;
    cols[i] = v - row * inFeatures;
  }
  return { rows, cols };
}

/**
 * Join rows and columns into flat indices `row * inFeatures + col` (no sorting or validation; see
 * {@link normalizeMask} for that).
 *
 * ```ts
 * rowsColsToFlat([0, 1, 2], [0, 1, 5], 10); // Int32Array [0, 11, 25]
 * ```
 */
export function rowsColsToFlat(rows: ArrayLike<number>, cols: ArrayLike<number>, inFeatures: number): Int32Array {
  if (rows.length !== cols.length) {
    throw new ShapeError("SHAPE_MISMATCH", `rows has ${rows.length} entries but cols has ${cols.length}`, {
      expected: rows.length,
      actual: cols.length,
    });
  }
  const out = new Int32Array(rows.length);
  for (let i = 0; i < rows.length; i++) out[i] = rows[i]! * inFeatures + cols[i]!;
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// built-in strategies as MaskFn

/** The mask strategies this library implements (PEFT itself knows only `"random"`). */
export const BUILTIN_MASK_TYPES = ["random", "wm", "grad", "snip", "struct"] as const;
/** One of {@link BUILTIN_MASK_TYPES}. */
export type BuiltinMaskType = (typeof BUILTIN_MASK_TYPES)[number];

function gradientFor(options: Record<string, unknown>, layer: MaskLayer, maskType: string): Float32Array | Float64Array {
  const g = options["gradients"];
  let v: unknown;
  if (g instanceof Map) v = g.get(layer.name);
  else if (typeof g === "object" && g !== null) v = (g as Record<string, unknown>)[layer.name];
  if (!(v instanceof Float32Array || v instanceof Float64Array)) {
    throw new ConfigError(
      "CONFIG_MASK",
      `mask_type "${maskType}" needs maskOptions.gradients["${layer.name}"] (a Float32Array of out * in accumulated ` +
        `gradients${maskType === "grad" ? " magnitudes, sum_b |g_b|" : ", sum_b g_b"}), got ${describe(v)}`,
      { module: layer.name, maskType },
    );
  }
  return v;
}

/**
 * The {@link MaskFn} of a built-in strategy. Options read (from the config's `maskOptions`, plus `randomSeed`):
 * - `random`: `randomSeed` (number | bigint | null), `largeN` (`"legacy"` | `"random64"`);
 * - `grad`: `gradients`, a `Map` or record from module name to `sum_b |dL_b/dW|` (see {@link gradMask});
 * - `snip`: `gradients`, a `Map` or record from module name to `sum_b dL_b/dW` (see {@link snipMask});
 * - `wm`, `struct`: nothing.
 *
 * ```ts
 * const fn = builtinMaskFn("wm");
 * const idx = normalizeMask(fn(layer, 8, {}), layer.outFeatures, layer.inFeatures, 8 * (layer.outFeatures + layer.inFeatures), layer.name);
 * ```
 */
export function builtinMaskFn(maskType: BuiltinMaskType): MaskFn {
  switch (maskType) {
    case "random":
      return (layer, r, options) => {
        const largeN = options["largeN"];
        return randomMask(
          layer.outFeatures,
          layer.inFeatures,
          r,
          (options["randomSeed"] as TorchSeed | null | undefined) ?? null,
          largeN === undefined ? {} : { largeN: largeN as RandpermOptions["largeN"] },
        );
      };
    case "wm":
      return (layer, r) => wmMask(layer.weight, layer.outFeatures, layer.inFeatures, r);
    case "grad":
      return (layer, r, options) =>
        gradMask(gradientFor(options, layer, "grad"), layer.outFeatures, layer.inFeatures, r);
    case "snip":
      return (layer, r, options) =>
        snipMask(layer.weight, gradientFor(options, layer, "snip"), layer.outFeatures, layer.inFeatures, r);
    case "struct":
      return (layer, r) => structMask(layer.outFeatures, layer.inFeatures, r);
    default:
      throw new ConfigError("CONFIG_INVALID", `unknown mask type ${JSON.stringify(maskType)}`, {
        field: "mask_type",
        value: maskType,
      });
  }
}
