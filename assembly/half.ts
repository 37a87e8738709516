// Half-precision weights (issue #13): BF16 or F16 base weights kept as raw u16 bit patterns in wasm memory, widened
// to f32 on load; every sum is f32, in the order of the f32 kernel it mirrors. `dtype`: 0 = BF16, 1 = F16 (IEEE
// binary16 with subnormals, infinities and NaNs).
//
//   h16_gemm_nt(x, w, bias, y, B, K, N, acc, dtype)     y[B,N] = (acc ? y : 0) + x[B,K] . W[N,K]^T (+ bias[N] if bias)
//   h16_gemm_nn(a, w, y, B, N, K, acc, dtype)           y[B,K] = (acc ? y : 0) + a[B,N] . W[N,K]   (dL/dx, frozen W)
//   h16_embedding(w, ids, out, rows, D, dtype)          out[i, :] = f32(w[ids[i], :])
//   h16_to_f32(src, dst, n, dtype)                      dst[i] = f32(src[i])                        exact
//   f32_to_h16(src, dst, n, dtype)                      dst[i] = half(src[i])                       round to nearest even
//   h16_gather(w, idx, out, nnz)                        out[j] = w[idx[j]]                          (u16 bits)
//   h16_scatter_set(w, idx, saved, nnz)                 w[idx[j]] = saved[j]                        (u16 bits)
//   h16_gather_scatter_add(w, idx, saved, v, scale, nnz, dtype)
//                                                       saved[j] = w[idx[j]];  w[idx[j]] = half(f32(saved[j]) + f32(v[j] * scale))
//   h16_switch_merge(w, idxA, savedA, nA, idxB, savedB, vB, scale, nB, dtype)
//                                                       f32_switch_merge (switch.ts) on half weights
//
// Each has a `_scalar` twin (plain loops, scalar conversions) used by the tests.
//
// Exactness contract (what the tests check):
//   * h16_gemm_nt / h16_gemm_nn are bit-identical to f32_gemm_nt / f32_gemm_nn (gemm.ts) run on the f32-widened
//     copy of W, in the same build (plain or relaxed SIMD): the same tiles, K blocks (KC, KC_DOT) and reductions.
//     The per-row result of the dot path does not depend on the tile (dot1x8, dot1x4 and dot1x1 reduce a row
//     alike), so the tiles below are chosen for speed. The scalar twins equal f32_gemm_nt_scalar / _nn_scalar on
//     the widened W. (NaN outputs compare as NaN: their payloads are not specified by wasm arithmetic.)
//   * Widening is exact. f32 -> half rounds to nearest, ties to even, overflow to +-inf (as torch's
//     `.to(torch.bfloat16)` / `.to(torch.float16)` for every non-NaN input); a NaN becomes the canonical quiet NaN
//     of its sign (BF16 0x7FC0 / 0xFFC0, F16 0x7E00 / 0xFE00). torch 1.13 CPU writes F16 NaNs the same way and BF16
//     NaNs as 0xFFFF (vectorized path) or 0x7FC0 (scalar c10::BFloat16): NaN either way.
//   * Switching (rule checked against torch 1.13): PEFT's SHiRA merge is `weight += sparse_coo(idx, v * scale)`
//     with v f32 (get_peft_model's autocast_adapter_dtype=True keeps adapter weights f32 over a bf16/f16 base).
//     torch computes the product in f32 (`v * scale` with a Python float scale: f32(v * f32(scale))), upcasts the
//     half weight to f32, adds once in f32 and rounds once to the half dtype. h16_gather_scatter_add does exactly
//     that, and the saved u16 bits make a restore bit-identical (PEFT's `weight -= delta` drifts).
//
// Widening W lanes (wasm SIMD has no f16 instruction):
//
//   BF16: the f32 with the same top 16 bits: interleave with zero halves (one shuffle per 4 lanes, punpck[lh]wd):
//        v = [h0 h1 .. h7] (u16)  ->  lo = [0 h0 | 0 h1 | 0 h2 | 0 h3]  hi = [0 h4 | .. | 0 h7]   (u16 pairs = f32)
//
//   F16 (Giesen's "half_to_float_fast" with the inf/NaN fix-up moved before the multiply, 16-bit lanes where possible):
//        hi16 = s 000 eeeee mmmmmmm   (i16x8.shr_s(v, 3) & 0x8fff; exponent field 111eeeee when e = 31)
//        lo16 = mmm 0000000000000     (i16x8.shl(v, 13))
//        f    = f32(lo16 | hi16 << 16) * 2^112     (two shuffles; f32x4.mul)
//      The bits s | e << 23 | m << 13 read as an f32 ("raw") are 2^-112 times the half's value for normal (e = 1..30)
//      and subnormal (e = 0: an f32 subnormal) halves, so the exact product by 2^112 is the value (wasm has no
//      flush-to-zero). Infinities and NaNs get an all-ones exponent first and stay inf / NaN. 11 SIMD ops per 8
//      halves. h16_to_f32 / h16_embedding OR the exponent in after the multiply instead, so NaN payloads are kept
//      bit for bit (the multiply would quiet a signaling NaN).
//
//   F16 decode (B <= 3, the "F16Raw" form): the 2^112 moves to x. With x' = x * 2^112 (exact while |x| < 2^16,
//      checked once per call) and w' the raw bits, x' * w' is the same real number as x * f32(h), so every
//      product, madd and sum is bit-identical to the f32 kernel's, and the multiply and the fix-up leave the loop.
//      Infinities and NaNs are instead detected (a running i16x8.max_u of v << 1, >= 0xf800) and a tile that met
//      one is recomputed with the exact form on the caller's x; so is the whole call when some |x| >= 2^16 or x has
//      a NaN. 7 SIMD ops per 8 halves.
//
// Where W is reused (B >= 4 panels, gemm_nn strips) a tile of W is widened into a small f32 scratch (WIDE) and the
// f32 micro-kernels of gemm.ts, ported here unchanged, run on it; on the dot path (B <= 3: decode) the W stream is
// widened in registers, so W is read once, at half the bytes of the f32 kernel.
//
// Measured (AMD EPYC Zen 4 VM, Node 20, one thread, a second process busy; medians of interleaved runs), gemv
// y = x W^T with W [N, K]:
//                      4096 x 4096                 11008 x 4096                4096 x 11008
//   plain SIMD:    f32 3.38 BF16 2.16 F16 3.29 | f32 9.15 BF16 5.79 F16 8.98 | f32 7.56 BF16 4.92 F16 8.20 ms
//   relaxed SIMD:  f32 3.25 BF16 2.43 F16 2.85 | f32 8.98 BF16 6.47 F16 7.53 | f32 7.60 BF16 5.17 F16 6.75 ms
// (W uniform in +-0.05: 0.12 % of its F16 values are subnormal.) BF16, 5 SIMD ops per 8 halves, streams W at ~15 GB/s
// against the f32 gemv's ~19 GB/s: 1.35-1.6x, not the 2x of half the bytes. F16 is bound by its widening (twice the
// ops) and, in the plain build, by F16 subnormals (real weights: ~0.1-0.3 %): f32x4.mul with a subnormal operand
// takes a microcode assist on this CPU (~100 cycles; the relaxed build's fused madd does not); without subnormals
// the plain F16 gemv runs at ~1.25x too. B >= 32 runs at parity with f32 (WIDE costs 1/BC-th of the
// multiply-adds); B = 4..16 at 0.6-0.9x (each 4-row W tile is widened from memory before its one or two panels
// run, so the memory latency is not hidden behind the multiply-adds as in gemm.ts). h16_gemm_nn is faster than
// f32_gemm_nn (up to ~2.8x at B = 128): its widened strips are contiguous where f32_gemm_nn reads W columns in place.

import { madd, hsum4, hsum1 } from "./util/simd";
import { packTransposed } from "./util/pack";
import {
  KC, BC, KC_DOT, DOT_MAX_B, NN_ROWS, NN_CHUNK, PACK, WIDE, ensureScratch, partStart, ADD_BIAS, LOAD_Y, finish, finish1,
  micro4x8, micro4x4, micro1x8, micro1x4, panelWidth, nn4x8, nn1x8, nn4x4, nn1x4,
} from "./util/gemm";

// ---------------------------------------------------------------- formats
//
// The kernels are generic over a format tag resolved at compile time (one specialized copy per format):
// Bf16 = i16, F16 = u16, F16Raw = u8 (tested through isF16<T>() and isRaw<T>() only).

type Bf16 = i16;
type F16 = u16;
/**
 * F16 read "raw": the bits s | e << 23 | m << 13 as an f32, i.e. 2^-112 times the value for finite halves (inf/NaN
 * not fixed up). Used by the decode path with x scaled by 2^112 (exact while |x| < 2^16), so that each product
 * equals x * f32(h) bit for bit, and a tile that meets an inf/NaN half is recomputed with the exact F16 form.
 */
type F16Raw = u8;

// @ts-ignore: decorator
@inline function isF16<T>(): bool {
  return !isSigned<T>();
}

// @ts-ignore: decorator
@inline function isRaw<T>(): bool {
  return sizeof<T>() == 1;
}

const DT_F16: i32 = 1;

/** 2^-24, the F16 subnormal unit. */
const F16_TINY: f32 = 5.9604644775390625e-8;
/** 2^112: scales the F16 bits read as an f32 (see the header). */
const F16_SCALE: f32 = 5.192296858534828e33;

// @ts-ignore: decorator
@inline function bf16ToF32(h: u32): f32 {
  return reinterpret<f32>(h << 16);
}

/** Exact F16 -> f32 (NaN payloads kept). Not inlined (branches; tails and switching only): keeps the module small. */
function f16ToF32(h: u32): f32 {
  const s = (h & 0x8000) << 16;
  const em = h & 0x7fff;
  if (em >= 0x7c00) return reinterpret<f32>(s | 0x7f800000 | ((em & 0x3ff) << 13));
  if (em >= 0x0400) return reinterpret<f32>(s | ((em << 13) + 0x38000000));
  return reinterpret<f32>(s | reinterpret<u32>(<f32>em * F16_TINY));
}

/** f32 -> BF16 bits, round to nearest even (overflow to inf); NaN -> quiet NaN of the same sign. */
// @ts-ignore: decorator
@inline function f32ToBf16(f: f32): u32 {
  const x = reinterpret<u32>(f);
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >> 16) & 0x8000) | 0x7fc0;
  return (x + 0x7fff + ((x >> 16) & 1)) >> 16;
}

/** f32 -> F16 bits, round to nearest even (|f| >= 65520 -> inf, subnormals rounded); NaN -> quiet NaN of the same sign. */
function f32ToF16(f: f32): u32 {
  const x = reinterpret<u32>(f);
  const s = (x >> 16) & 0x8000;
  const a = x & 0x7fffffff;
  if (a > 0x7f800000) return s | 0x7e00;
  if (a >= 0x477ff000) return s | 0x7c00;
  if (a >= 0x38800000) {
    // normal half: rebias the exponent (127 -> 15), round away 13 mantissa bits (a carry may bump the exponent)
    const r = a - 0x38000000;
    return s | ((r + 0x0fff + ((r >> 13) & 1)) >> 13);
  }
  // |f| < 2^-14: |f| + 0.5 rounds |f| to a multiple of 2^-24 (the f32 ulp at 0.5), ties to even; the mantissa is the count
  return s | (reinterpret<u32>(reinterpret<f32>(a) + <f32>0.5) - 0x3f000000);
}

// @ts-ignore: decorator
@inline function widen1<T>(h: u32): f32 {
  if (isRaw<T>()) return reinterpret<f32>(((h & 0x8000) << 16) | ((h & 0x7fff) << 13));
  if (isF16<T>()) return f16ToF32(h);
  return bf16ToF32(h);
}

// @ts-ignore: decorator
@inline function round1<T>(f: f32): u32 {
  if (isF16<T>()) return f32ToF16(f);
  return f32ToBf16(f);
}

/** Widened half at byte address p. */
// @ts-ignore: decorator
@inline function ldh<T>(p: usize): f32 {
  return widen1<T>(<u32>load<u16>(p));
}

// runtime-dtype forms for the scalar twins
function widenScalar(h: u32, dtype: i32): f32 {
  return dtype == DT_F16 ? f16ToF32(h) : bf16ToF32(h);
}
function roundScalar(f: f32, dtype: i32): u32 {
  return dtype == DT_F16 ? f32ToF16(f) : f32ToBf16(f);
}
// @ts-ignore: decorator
@inline function ldhs(p: usize, dtype: i32): f32 {
  return widenScalar(<u32>load<u16>(p), dtype);
}

// ---------------------------------------------------------------- SIMD widening

// @ts-ignore: decorator
@inline function zero(): v128 {
  return i32x4.splat(0);
}

/** Lanes 0..3 of the u16 pairs (lo, hi) as 32-bit lanes lo | hi << 16 (punpcklwd). */
// @ts-ignore: decorator
@inline function joinLo(lo: v128, hi: v128): v128 {
  return v128.shuffle<u16>(lo, hi, 0, 8, 1, 9, 2, 10, 3, 11);
}

/** Lanes 4..7 of the u16 pairs (lo, hi) as 32-bit lanes (punpckhwd). */
// @ts-ignore: decorator
@inline function joinHi(lo: v128, hi: v128): v128 {
  return v128.shuffle<u16>(lo, hi, 4, 12, 5, 13, 6, 14, 7, 15);
}

/** F16 hi16 word: s 000 eeeee mmmmmmm (the top half of s | e << 23 | m << 13). */
// @ts-ignore: decorator
@inline function f16Bits(v: v128): v128 {
  return v128.and(i16x8.shr_s(v, 3), i16x8.splat(<i16>0x8fff));
}

/** F16 hi16 word with inf/NaN pre-fixed: s 000 eeeee mmmmmmm, or s 111 11111 mmmmmmm when e = 31 (see the header). */
// @ts-ignore: decorator
@inline function f16Top(v: v128): v128 {
  const infNan = i16x8.eq(v128.and(v, i16x8.splat(0x7c00)), i16x8.splat(0x7c00));
  return v128.or(f16Bits(v), v128.and(infNan, i16x8.splat(0x7000)));
}

/** Running detector of F16 inf/NaN halves: max over (v << 1) (the sign dropped); inf/NaN iff >= 0xf800. */
// @ts-ignore: decorator
@inline function special(det: v128, v: v128): v128 {
  return i16x8.max_u(det, i16x8.add(v, v));
}

// @ts-ignore: decorator
@inline function anySpecial(det: v128): bool {
  return v128.any_true(i16x8.ge_u(det, i16x8.splat(<i16>0xf800)));
}

// @ts-ignore: decorator
@inline function f16Scale(bits: v128): v128 {
  return f32x4.mul(bits, f32x4.splat(F16_SCALE));
}

/** Halves 0..3 of v (8 halves) as f32x4. */
// @ts-ignore: decorator
@inline function widenLo<T>(v: v128): v128 {
  if (isRaw<T>()) return joinLo(i16x8.shl(v, 13), f16Bits(v));
  if (isF16<T>()) return f16Scale(joinLo(i16x8.shl(v, 13), f16Top(v)));
  return joinLo(zero(), v);
}

/** Halves 4..7 of v as f32x4. */
// @ts-ignore: decorator
@inline function widenHi<T>(v: v128): v128 {
  if (isRaw<T>()) return joinHi(i16x8.shl(v, 13), f16Bits(v));
  if (isF16<T>()) return f16Scale(joinHi(i16x8.shl(v, 13), f16Top(v)));
  return joinHi(zero(), v);
}

/** 8 halves at s -> 8 f32 at d. */
// @ts-ignore: decorator
@inline function widen8<T>(s: usize, d: usize): void {
  const v = v128.load(s);
  if (isF16<T>()) {
    const l = i16x8.shl(v, 13), h = f16Top(v);
    v128.store(d, f16Scale(joinLo(l, h)));
    v128.store(d, f16Scale(joinHi(l, h)), 16);
  } else {
    v128.store(d, joinLo(zero(), v));
    v128.store(d, joinHi(zero(), v), 16);
  }
}

/** dst[0..n) = f32(src[0..n)): 8 halves per step (one v128 load, two v128 stores), then 4, then scalar. */
function widenRow<T>(src: usize, dst: usize, n: i32): void {
  let i = 0;
  for (; i + 8 <= n; i += 8) widen8<T>(src + (<usize>i << 1), dst + (<usize>i << 2));
  if (i + 4 <= n) {
    v128.store(dst + (<usize>i << 2), widenLo<T>(v128.load64_zero(src + (<usize>i << 1))));
    i += 4;
  }
  for (; i < n; i++) store<f32>(dst + (<usize>i << 2), ldh<T>(src + (<usize>i << 1)));
}

/**
 * 4 rows x n halves (rows `ss` bytes apart) -> 4 x n f32 at dst (rows n floats apart). The four rows are read
 * together: four streams in flight (one row at a time runs at the latency of its short run of cache lines).
 */
function widenRows4<T>(src: usize, ss: usize, n: i32, dst: usize): void {
  const ds = <usize>n << 2;
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const s = src + (<usize>i << 1);
    const d = dst + (<usize>i << 2);
    widen8<T>(s, d);
    widen8<T>(s + ss, d + ds);
    widen8<T>(s + 2 * ss, d + 2 * ds);
    widen8<T>(s + 3 * ss, d + 3 * ds);
  }
  if (i < n) {
    for (let r = 0; r < 4; r++) widenRow<T>(src + <usize>r * ss + (<usize>i << 1), dst + <usize>r * ds + (<usize>i << 2), n - i);
  }
}

// ---------------------------------------------------------------- conversions

export function h16_to_f32_scalar(src: usize, dst: usize, n: i32, dtype: i32): void {
  for (let i = 0; i < n; i++) store<f32>(dst + (<usize>i << 2), ldhs(src + (<usize>i << 1), dtype));
}

export function f32_to_h16_scalar(src: usize, dst: usize, n: i32, dtype: i32): void {
  for (let i = 0; i < n; i++) store<u16>(dst + (<usize>i << 1), <u16>roundScalar(load<f32>(src + (<usize>i << 2)), dtype));
}

/** Exact F16 widening of 8 halves with NaN payloads kept: the exponent of inf/NaN lanes is ORed in after the multiply. */
// @ts-ignore: decorator
@inline function f16ExactPair(v: v128, d: usize): void {
  const l = i16x8.shl(v, 13);
  const h = f16Bits(v);
  const exp = v128.and(i16x8.eq(v128.and(v, i16x8.splat(0x7c00)), i16x8.splat(0x7c00)), i16x8.splat(0x7f80));
  v128.store(d, v128.or(f16Scale(joinLo(l, h)), joinLo(zero(), exp)));
  v128.store(d, v128.or(f16Scale(joinHi(l, h)), joinHi(zero(), exp)), 16);
}

/** dst[0..n) = f32(src[0..n)), NaN payloads kept (widenRow quiets F16 signaling NaNs: its multiply sees them). */
function widenRowExact<T>(src: usize, dst: usize, n: i32): void {
  if (!isF16<T>()) {
    widenRow<T>(src, dst, n);
    return;
  }
  let i = 0;
  for (; i + 8 <= n; i += 8) f16ExactPair(v128.load(src + (<usize>i << 1)), dst + (<usize>i << 2));
  for (; i < n; i++) store<f32>(dst + (<usize>i << 2), f16ToF32(<u32>load<u16>(src + (<usize>i << 1))));
}

export function h16_to_f32(src: usize, dst: usize, n: i32, dtype: i32): void {
  if (dtype == DT_F16) widenRowExact<F16>(src, dst, n);
  else widenRowExact<Bf16>(src, dst, n);
}

/** 4 f32 lanes -> BF16 bits in the low 16 bits of each 32-bit lane. */
// @ts-ignore: decorator
@inline function toBf16x4(x: v128): v128 {
  const top = i32x4.shr_u(x, 16);
  const r = i32x4.shr_u(i32x4.add(x, i32x4.add(i32x4.splat(0x7fff), v128.and(top, i32x4.splat(1)))), 16);
  const nan = i32x4.gt_s(v128.and(x, i32x4.splat(0x7fffffff)), i32x4.splat(0x7f800000));
  return v128.bitselect(v128.or(v128.and(top, i32x4.splat(0x8000)), i32x4.splat(0x7fc0)), r, nan);
}

/** 4 f32 lanes -> F16 bits in the low 16 bits of each 32-bit lane (the branches of f32ToF16 as selects). */
// @ts-ignore: decorator
@inline function toF16x4(x: v128): v128 {
  const a = v128.and(x, i32x4.splat(0x7fffffff));
  const r = i32x4.sub(a, i32x4.splat(0x38000000));
  const nrm = i32x4.shr_u(i32x4.add(r, i32x4.add(i32x4.splat(0x0fff), v128.and(i32x4.shr_u(r, 13), i32x4.splat(1)))), 13);
  const sub = i32x4.sub(f32x4.add(a, f32x4.splat(0.5)), i32x4.splat(0x3f000000));
  let h = v128.bitselect(sub, nrm, i32x4.lt_s(a, i32x4.splat(0x38800000)));
  h = v128.bitselect(i32x4.splat(0x7c00), h, i32x4.ge_s(a, i32x4.splat(0x477ff000)));
  h = v128.bitselect(i32x4.splat(0x7e00), h, i32x4.gt_s(a, i32x4.splat(0x7f800000)));
  return v128.or(h, v128.and(i32x4.shr_u(x, 16), i32x4.splat(0x8000)));
}

export function f32_to_h16(src: usize, dst: usize, n: i32, dtype: i32): void {
  let i = 0;
  if (dtype == DT_F16) {
    for (; i + 8 <= n; i += 8) {
      const s = src + (<usize>i << 2);
      v128.store(dst + (<usize>i << 1), i16x8.narrow_i32x4_u(toF16x4(v128.load(s)), toF16x4(v128.load(s, 16))));
    }
  } else {
    for (; i + 8 <= n; i += 8) {
      const s = src + (<usize>i << 2);
      v128.store(dst + (<usize>i << 1), i16x8.narrow_i32x4_u(toBf16x4(v128.load(s)), toBf16x4(v128.load(s, 16))));
    }
  }
  for (; i < n; i++) store<u16>(dst + (<usize>i << 1), <u16>roundScalar(load<f32>(src + (<usize>i << 2)), dtype));
}

// ---------------------------------------------------------------- embedding

export function h16_embedding_scalar(w: usize, ids: usize, out: usize, rows: i32, D: i32, dtype: i32): void {
  for (let i = 0; i < rows; i++) {
    const src = w + (<usize>load<i32>(ids + (<usize>i << 2)) * <usize>D << 1);
    const dst = out + (<usize>i * <usize>D << 2);
    for (let d = 0; d < D; d++) store<f32>(dst + (<usize>d << 2), ldhs(src + (<usize>d << 1), dtype));
  }
}

export function h16_embedding(w: usize, ids: usize, out: usize, rows: i32, D: i32, dtype: i32): void {
  if (dtype == DT_F16) embeddingRows<F16>(w, ids, out, rows, D);
  else embeddingRows<Bf16>(w, ids, out, rows, D);
}

function embeddingRows<T>(w: usize, ids: usize, out: usize, rows: i32, D: i32): void {
  const rb = <usize>D << 1;
  const ob = <usize>D << 2;
  for (let i = 0; i < rows; i++) widenRowExact<T>(w + <usize>load<i32>(ids + (<usize>i << 2)) * rb, out + <usize>i * ob, D);
}

// ================================================================ h16_gemm_nt (forward)
//
// The structure of f32_gemm_nt (gemm.ts: read its header), with W rows K halves (2K bytes) apart:
//
//   B >= 4  panels: per K block of KC and chunk of BC rows, x^T packed into PACK (as gemm.ts), then per 4 W rows
//           the tile W[n0..n0+3, k0..k0+kl) is widened into WIDE (4 x KC f32 = 16 KiB, L1; the four rows read
//           together) and the 4x8 / 4x4 / 1x8 / 1x4 micro-kernels of gemm.ts run on it.
//   B <= 3  dot: the tiles of gemm.ts (per K block of KC_DOT when B > 1; one block for B = 1) with W widened in
//           registers, 8 halves per v128 load:
//
//             x  : [x0 .. x3][x4 .. x7]                  a0, a1  (two f32x4 loads)
//             W r: [h0 h1 h2 h3 h4 h5 h6 h7]             one v128 load per row -> lo (h0..h3), hi (h4..h7)
//             c_r = madd(a1, hi, madd(a0, lo, c_r))       = the f32 kernel's two k-steps, in the same order
//
//           then one 4-half step (v128.load64_zero) when kl & 4, hsum4 of the lane sums, the scalar tail of kl & 3
//           (gemm.ts's dotTail order) and the bias / y finish. B = 1: tiles of 8 W rows (BF16: eight streams in
//           flight) or 4 (F16: 8 rows of accumulators and the widening would not fit the 16 xmm registers); B = 2,3:
//           dot2x4 (each W vector widened once for two rows of x) and dot1x4 for the odd row, as gemm.ts.


// ---------------------------------------------------------------- scalar twins

export function h16_gemm_nt_scalar(x: usize, w: usize, bias: usize, y: usize, B: i32, K: i32, N: i32, acc: i32, dtype: i32): void {
  for (let b = 0; b < B; b++) {
    const xr = x + (<usize>b * <usize>K << 2);
    const yr = y + (<usize>b * <usize>N << 2);
    for (let n = 0; n < N; n++) {
      const wr = w + (<usize>n * <usize>K << 1);
      let s: f32 = 0;
      for (let k = 0; k < K; k++) s += load<f32>(xr + (<usize>k << 2)) * ldhs(wr + (<usize>k << 1), dtype);
      if (bias) s += load<f32>(bias + (<usize>n << 2));
      const yp = yr + (<usize>n << 2);
      store<f32>(yp, acc ? load<f32>(yp) + s : s);
    }
  }
}

export function h16_gemm_nn_scalar(a: usize, w: usize, y: usize, B: i32, N: i32, K: i32, acc: i32, dtype: i32): void {
  for (let b = 0; b < B; b++) {
    const ar = a + (<usize>b * <usize>N << 2);
    const yr = y + (<usize>b * <usize>K << 2);
    if (!acc) memory.fill(yr, 0, <usize>K << 2);
    for (let n = 0; n < N; n++) {
      const av = load<f32>(ar + (<usize>n << 2));
      const wr = w + (<usize>n * <usize>K << 1);
      for (let k = 0; k < K; k++) {
        const yp = yr + (<usize>k << 2);
        store<f32>(yp, load<f32>(yp) + av * ldhs(wr + (<usize>k << 1), dtype));
      }
    }
  }
}

// ---------------------------------------------------------------- panels path (B >= 4): the micro-kernels of util/gemm.ts on WIDE

function gemmNtPanels(x: usize, w: usize, bias: usize, y: usize, B: i32, K: i32, N: i32, acc: i32, dtype: i32, ys: usize): void {
  const xs = <usize>K << 2; // row stride of x
  const whs = <usize>K << 1; // row stride of W (halves)
  for (let k0 = 0; k0 < K; k0 += KC) {
    const kl = min(KC, K - k0);
    const ts = <usize>kl << 2; // row stride of the widened tile
    const flags = (k0 == 0 && bias ? ADD_BIAS : 0) | (acc || k0 > 0 ? LOAD_Y : 0);
    const xk = x + (<usize>k0 << 2);
    const wk = w + (<usize>k0 << 1);
    for (let c0 = 0; c0 < B; c0 += BC) {
      const cb = min(BC, B - c0);
      const xc = xk + <usize>c0 * xs;
      const yc = y + <usize>c0 * ys;
      let off: usize = 0;
      for (let r = 0; r < cb; ) {
        const pw = panelWidth(cb - r);
        packTransposed(xc + <usize>r * xs, xs, min(pw, cb - r), kl, PACK + off, pw);
        off += <usize>(pw * kl) << 2;
        r += pw;
      }
      let n0 = 0;
      for (; n0 + 4 <= N; n0 += 4) {
        if (dtype == DT_F16) widenRows4<F16>(wk + <usize>n0 * whs, whs, kl, WIDE);
        else widenRows4<Bf16>(wk + <usize>n0 * whs, whs, kl, WIDE);
        const bp = bias + (<usize>n0 << 2);
        const yn = yc + (<usize>n0 << 2);
        off = 0;
        for (let r = 0; r < cb; ) {
          const pw = panelWidth(cb - r);
          const nb = min(pw, cb - r);
          if (pw == 8) micro4x8(WIDE, ts, PACK + off, kl, yn + <usize>r * ys, ys, bp, flags, nb);
          else micro4x4(WIDE, ts, PACK + off, kl, yn + <usize>r * ys, ys, bp, flags, nb);
          off += <usize>(pw * kl) << 2;
          r += pw;
        }
      }
      for (; n0 < N; n0++) {
        if (dtype == DT_F16) widenRow<F16>(wk + <usize>n0 * whs, WIDE, kl);
        else widenRow<Bf16>(wk + <usize>n0 * whs, WIDE, kl);
        const bp = bias + (<usize>n0 << 2);
        const yn = yc + (<usize>n0 << 2);
        off = 0;
        for (let r = 0; r < cb; ) {
          const pw = panelWidth(cb - r);
          const nb = min(pw, cb - r);
          if (pw == 8) micro1x8(WIDE, PACK + off, kl, yn + <usize>r * ys, ys, bp, flags, nb);
          else micro1x4(WIDE, PACK + off, kl, yn + <usize>r * ys, ys, bp, flags, nb);
          off += <usize>(pw * kl) << 2;
          r += pw;
        }
      }
    }
  }
}

// ---------------------------------------------------------------- dot path (B <= 3): W widened in registers
//
// Every tile returns true, except an F16Raw tile that met an F16 inf/NaN: it stores nothing and returns false, and
// the driver recomputes that tile with the exact F16 form on the caller's x.

/** gemm.ts's dotTail (x0 w0 + x1 w1 + x2 w2, in that order) with a half W row. */
// @ts-ignore: decorator
@inline function dotTailH<T>(x: usize, w: usize, n: i32): f32 {
  let s: f32 = load<f32>(x) * ldh<T>(w);
  if (n > 1) s += load<f32>(x, 4) * ldh<T>(w + 2);
  if (n > 2) s += load<f32>(x, 8) * ldh<T>(w + 4);
  return s;
}

// @ts-ignore: decorator
@inline function tail4H<T>(x: usize, w0: usize, ws: usize, n: i32): v128 {
  let t = f32x4.splat(dotTailH<T>(x, w0, n));
  t = f32x4.replace_lane(t, 1, dotTailH<T>(x, w0 + ws, n));
  t = f32x4.replace_lane(t, 2, dotTailH<T>(x, w0 + 2 * ws, n));
  return f32x4.replace_lane(t, 3, dotTailH<T>(x, w0 + 3 * ws, n));
}

/** True when one of the n halves of `rows` rows (ws bytes apart) at w is an F16 inf/NaN (the K tail of a raw tile). */
function tailSpecial(w: usize, ws: usize, rows: i32, n: i32): bool {
  let any = false;
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < n; i++) any |= (load<u16>(w + <usize>r * ws + (<usize>i << 1)) & 0x7c00) == 0x7c00;
  }
  return any;
}

/** c + a0 . lo(v) + a1 . hi(v) (two madds, lo first: the f32 kernel's two k-steps). */
// @ts-ignore: decorator
@inline function madd8<T>(a0: v128, a1: v128, v: v128, c: v128): v128 {
  if (isRaw<T>()) {
    const l = i16x8.shl(v, 13), h = f16Bits(v);
    return madd(a1, joinHi(l, h), madd(a0, joinLo(l, h), c));
  }
  if (isF16<T>()) {
    const l = i16x8.shl(v, 13), h = f16Top(v);
    return madd(a1, f16Scale(joinHi(l, h)), madd(a0, f16Scale(joinLo(l, h)), c));
  }
  return madd(a1, joinHi(zero(), v), madd(a0, joinLo(zero(), v), c));
}

/** 1 row of x x 4 half W rows (ws bytes apart) over kl -> y[0, 0..3] (gemm.ts dot1x4, 8 halves per load). */
function dot1x4H<T>(x: usize, w: usize, ws: usize, kl: i32, y: usize, bias: usize, flags: i32): bool {
  let p = w;
  let c0 = f32x4.splat(0), c1 = c0, c2 = c0, c3 = c0;
  let det = i32x4.splat(0);
  const xe = x + (<usize>(kl & ~7) << 2);
  while (x < xe) {
    const a0 = v128.load(x), a1 = v128.load(x, 16);
    let v = v128.load(p);
    if (isRaw<T>()) det = special(det, v);
    c0 = madd8<T>(a0, a1, v, c0);
    v = v128.load(p + ws);
    if (isRaw<T>()) det = special(det, v);
    c1 = madd8<T>(a0, a1, v, c1);
    v = v128.load(p + 2 * ws);
    if (isRaw<T>()) det = special(det, v);
    c2 = madd8<T>(a0, a1, v, c2);
    v = v128.load(p + 3 * ws);
    if (isRaw<T>()) det = special(det, v);
    c3 = madd8<T>(a0, a1, v, c3);
    x += 32;
    p += 16;
  }
  if (kl & 4) {
    const a = v128.load(x);
    let v = v128.load64_zero(p);
    if (isRaw<T>()) det = special(det, v);
    c0 = madd(a, widenLo<T>(v), c0);
    v = v128.load64_zero(p + ws);
    if (isRaw<T>()) det = special(det, v);
    c1 = madd(a, widenLo<T>(v), c1);
    v = v128.load64_zero(p + 2 * ws);
    if (isRaw<T>()) det = special(det, v);
    c2 = madd(a, widenLo<T>(v), c2);
    v = v128.load64_zero(p + 3 * ws);
    if (isRaw<T>()) det = special(det, v);
    c3 = madd(a, widenLo<T>(v), c3);
    x += 16;
    p += 8;
  }
  if (isRaw<T>()) {
    if (anySpecial(det) || tailSpecial(p, ws, 4, kl & 3)) return false;
  }
  let r = hsum4(c0, c1, c2, c3);
  if (kl & 3) r = f32x4.add(r, tail4H<T>(x, p, ws, kl & 3));
  v128.store(y, finish(r, y, bias, flags));
  return true;
}

/** 1 row of x x 8 half W rows -> y[0, 0..7] (BF16 decode: eight W streams in flight, as gemm.ts's dot1x8). */
function dot1x8H<T>(x: usize, w: usize, ws: usize, kl: i32, y: usize, bias: usize, flags: i32): void {
  let p = w;
  let c0 = f32x4.splat(0), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
  const xe = x + (<usize>(kl & ~7) << 2);
  while (x < xe) {
    const a0 = v128.load(x), a1 = v128.load(x, 16);
    c0 = madd8<T>(a0, a1, v128.load(p), c0);
    c1 = madd8<T>(a0, a1, v128.load(p + ws), c1);
    c2 = madd8<T>(a0, a1, v128.load(p + 2 * ws), c2);
    c3 = madd8<T>(a0, a1, v128.load(p + 3 * ws), c3);
    c4 = madd8<T>(a0, a1, v128.load(p + 4 * ws), c4);
    c5 = madd8<T>(a0, a1, v128.load(p + 5 * ws), c5);
    c6 = madd8<T>(a0, a1, v128.load(p + 6 * ws), c6);
    c7 = madd8<T>(a0, a1, v128.load(p + 7 * ws), c7);
    x += 32;
    p += 16;
  }
  if (kl & 4) {
    const a = v128.load(x);
    c0 = madd(a, widenLo<T>(v128.load64_zero(p)), c0);
    c1 = madd(a, widenLo<T>(v128.load64_zero(p + ws)), c1);
    c2 = madd(a, widenLo<T>(v128.load64_zero(p + 2 * ws)), c2);
    c3 = madd(a, widenLo<T>(v128.load64_zero(p + 3 * ws)), c3);
    c4 = madd(a, widenLo<T>(v128.load64_zero(p + 4 * ws)), c4);
    c5 = madd(a, widenLo<T>(v128.load64_zero(p + 5 * ws)), c5);
    c6 = madd(a, widenLo<T>(v128.load64_zero(p + 6 * ws)), c6);
    c7 = madd(a, widenLo<T>(v128.load64_zero(p + 7 * ws)), c7);
    x += 16;
    p += 8;
  }
  let r0 = hsum4(c0, c1, c2, c3), r1 = hsum4(c4, c5, c6, c7);
  if (kl & 3) {
    r0 = f32x4.add(r0, tail4H<T>(x, p, ws, kl & 3));
    r1 = f32x4.add(r1, tail4H<T>(x, p + 4 * ws, ws, kl & 3));
  }
  v128.store(y, finish(r0, y, bias, flags));
  v128.store(y + 16, finish(r1, y + 16, bias + 16, flags));
}

/** 2 rows of x (xs bytes apart) x 4 half W rows -> y[0..1, 0..3] (gemm.ts dot2x4: each W vector widened once for both rows). */
function dot2x4H<T>(x: usize, xs: usize, w: usize, ws: usize, kl: i32, y: usize, ys: usize, bias: usize, flags: i32): bool {
  let x0 = x, x1 = x + xs;
  let p = w;
  let c00 = f32x4.splat(0), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00;
  let det = i32x4.splat(0);
  const xe = x0 + (<usize>(kl & ~7) << 2);
  while (x0 < xe) {
    const a0 = v128.load(x0), a1 = v128.load(x0, 16), b0 = v128.load(x1), b1 = v128.load(x1, 16);
    let v = v128.load(p);
    if (isRaw<T>()) det = special(det, v);
    let lo = widenLo<T>(v), hi = widenHi<T>(v);
    c00 = madd(a1, hi, madd(a0, lo, c00));
    c10 = madd(b1, hi, madd(b0, lo, c10));
    v = v128.load(p + ws);
    if (isRaw<T>()) det = special(det, v);
    lo = widenLo<T>(v);
    hi = widenHi<T>(v);
    c01 = madd(a1, hi, madd(a0, lo, c01));
    c11 = madd(b1, hi, madd(b0, lo, c11));
    v = v128.load(p + 2 * ws);
    if (isRaw<T>()) det = special(det, v);
    lo = widenLo<T>(v);
    hi = widenHi<T>(v);
    c02 = madd(a1, hi, madd(a0, lo, c02));
    c12 = madd(b1, hi, madd(b0, lo, c12));
    v = v128.load(p + 3 * ws);
    if (isRaw<T>()) det = special(det, v);
    lo = widenLo<T>(v);
    hi = widenHi<T>(v);
    c03 = madd(a1, hi, madd(a0, lo, c03));
    c13 = madd(b1, hi, madd(b0, lo, c13));
    x0 += 32;
    x1 += 32;
    p += 16;
  }
  if (kl & 4) {
    const a = v128.load(x0), b = v128.load(x1);
    let v = v128.load64_zero(p);
    if (isRaw<T>()) det = special(det, v);
    let lo = widenLo<T>(v);
    c00 = madd(a, lo, c00);
    c10 = madd(b, lo, c10);
    v = v128.load64_zero(p + ws);
    if (isRaw<T>()) det = special(det, v);
    lo = widenLo<T>(v);
    c01 = madd(a, lo, c01);
    c11 = madd(b, lo, c11);
    v = v128.load64_zero(p + 2 * ws);
    if (isRaw<T>()) det = special(det, v);
    lo = widenLo<T>(v);
    c02 = madd(a, lo, c02);
    c12 = madd(b, lo, c12);
    v = v128.load64_zero(p + 3 * ws);
    if (isRaw<T>()) det = special(det, v);
    lo = widenLo<T>(v);
    c03 = madd(a, lo, c03);
    c13 = madd(b, lo, c13);
    x0 += 16;
    x1 += 16;
    p += 8;
  }
  if (isRaw<T>()) {
    if (anySpecial(det) || tailSpecial(p, ws, 4, kl & 3)) return false;
  }
  let r0 = hsum4(c00, c01, c02, c03), r1 = hsum4(c10, c11, c12, c13);
  if (kl & 3) {
    r0 = f32x4.add(r0, tail4H<T>(x0, p, ws, kl & 3));
    r1 = f32x4.add(r1, tail4H<T>(x1, p, ws, kl & 3));
  }
  v128.store(y, finish(r0, y, bias, flags));
  v128.store(y + ys, finish(r1, y + ys, bias, flags));
  return true;
}

/** 1 row of x . 1 half W row over kl -> y[0] (gemm.ts dot1x1: hsum1 of the lane sums, then the tail; then the finish). */
function dot1x1H<T>(x: usize, w: usize, kl: i32, y: usize, bias: usize, flags: i32): bool {
  let c = f32x4.splat(0);
  let det = i32x4.splat(0);
  const xe = x + (<usize>(kl & ~7) << 2);
  while (x < xe) {
    const v = v128.load(w);
    if (isRaw<T>()) det = special(det, v);
    c = madd8<T>(v128.load(x), v128.load(x, 16), v, c);
    x += 32;
    w += 16;
  }
  if (kl & 4) {
    const v = v128.load64_zero(w);
    if (isRaw<T>()) det = special(det, v);
    c = madd(v128.load(x), widenLo<T>(v), c);
    x += 16;
    w += 8;
  }
  if (isRaw<T>()) {
    if (anySpecial(det) || tailSpecial(w, 0, 1, kl & 3)) return false;
  }
  let s = hsum1(c);
  if (kl & 3) s += dotTailH<T>(x, w, kl & 3);
  store<f32>(y, finish1(s, y, bias, flags));
  return true;
}

/**
 * y[0, 0..rows) for one row of x against `rows` F16 W rows with the exact widening, one row at a time (dot1x1H: the
 * same per-output result as any tile). The F16 path when x cannot be scaled (some |x| >= 2^16, or a NaN), and the
 * recomputation of an F16Raw tile that met an inf/NaN: rare, so kept small rather than fast.
 */
function exactRows(x: usize, w: usize, ws: usize, kl: i32, y: usize, bias: usize, flags: i32, rows: i32): void {
  for (let r = 0; r < rows; r++) dot1x1H<F16>(x, w + <usize>r * ws, kl, y + (<usize>r << 2), bias + (<usize>r << 2), flags);
}

/**
 * The dot path over K blocks (B = 1: one block; else KC_DOT), as gemm.ts's gemmNtDot. `x` is what the T-kernels read
 * (for F16Raw: the caller's x times 2^112), `xo` the caller's x (the exact F16 recomputation of a tile that met an
 * inf/NaN).
 */
function gemmNtDot<T>(x: usize, xo: usize, w: usize, bias: usize, y: usize, B: i32, K: i32, N: i32, acc: i32, ys: usize): void {
  const xs = <usize>K << 2;
  const whs = <usize>K << 1;
  const kc = B == 1 ? K : KC_DOT;
  for (let k0 = 0; k0 < K; k0 += kc) {
    const kl = min(kc, K - k0);
    const flags = (k0 == 0 && bias ? ADD_BIAS : 0) | (acc || k0 > 0 ? LOAD_Y : 0);
    const xk = x + (<usize>k0 << 2);
    const xok = xo + (<usize>k0 << 2);
    const wk = w + (<usize>k0 << 1);
    let n0 = 0;
    if (B == 1) {
      // BF16: 8 W rows per tile (bandwidth); F16: 4 (the widening is the bound, 8 rows of accumulators spill)
      if (!isF16<T>()) {
        for (; n0 + 8 <= N; n0 += 8) dot1x8H<T>(xk, wk + <usize>n0 * whs, whs, kl, y + (<usize>n0 << 2), bias + (<usize>n0 << 2), flags);
      }
      for (; n0 + 4 <= N; n0 += 4) {
        const wp = wk + <usize>n0 * whs, yp = y + (<usize>n0 << 2), bp = bias + (<usize>n0 << 2);
        if (isRaw<T>()) {
          if (!dot1x4H<T>(xk, wp, whs, kl, yp, bp, flags)) exactRows(xok, wp, whs, kl, yp, bp, flags, 4);
        } else if (isF16<T>()) exactRows(xk, wp, whs, kl, yp, bp, flags, 4);
        else dot1x4H<T>(xk, wp, whs, kl, yp, bp, flags);
      }
    } else {
      for (; n0 + 4 <= N; n0 += 4) {
        const wp = wk + <usize>n0 * whs;
        const bp = bias + (<usize>n0 << 2);
        const yp = y + (<usize>n0 << 2);
        // pairs of x rows against the same 4 W rows, then the odd row (the 4 W rows are then in L1)
        let b = 0;
        for (; b + 2 <= B; b += 2) {
          const o = <usize>b * xs, yb = yp + <usize>b * ys;
          if (isRaw<T>()) {
            if (!dot2x4H<T>(xk + o, xs, wp, whs, kl, yb, ys, bp, flags)) {
              exactRows(xok + o, wp, whs, kl, yb, bp, flags, 4);
              exactRows(xok + o + xs, wp, whs, kl, yb + ys, bp, flags, 4);
            }
          } else if (isF16<T>()) {
            exactRows(xk + o, wp, whs, kl, yb, bp, flags, 4);
            exactRows(xk + o + xs, wp, whs, kl, yb + ys, bp, flags, 4);
          } else dot2x4H<T>(xk + o, xs, wp, whs, kl, yb, ys, bp, flags);
        }
        if (b < B) {
          const o = <usize>b * xs, yb = yp + <usize>b * ys;
          if (isRaw<T>()) {
            if (!dot1x4H<T>(xk + o, wp, whs, kl, yb, bp, flags)) exactRows(xok + o, wp, whs, kl, yb, bp, flags, 4);
          } else if (isF16<T>()) exactRows(xk + o, wp, whs, kl, yb, bp, flags, 4);
          else dot1x4H<T>(xk + o, wp, whs, kl, yb, bp, flags);
        }
      }
    }
    for (; n0 < N; n0++) {
      const wp = wk + <usize>n0 * whs;
      const bp = bias + (<usize>n0 << 2);
      for (let b = 0; b < B; b++) {
        const o = <usize>b * xs, yp = y + <usize>b * ys + (<usize>n0 << 2);
        if (isRaw<T>()) {
          if (!dot1x1H<T>(xk + o, wp, kl, yp, bp, flags)) exactRows(xok + o, wp, whs, kl, yp, bp, flags, 1);
        } else dot1x1H<T>(xk + o, wp, kl, yp, bp, flags);
      }
    }
  }
}

/** Floats of PACK (the x^T panels of the B >= 4 path; the scaled x of the F16 dot path). */
const PACK_FLOATS: i32 = KC * (BC + 8);

/**
 * dst[0..n) = src[0..n) * 2^112 (exact) when every |src[i]| < 2^16, so that the products with F16Raw weights equal
 * the products with the widened weights bit for bit; returns false (dst then unused) otherwise or on a NaN.
 */
function scaleForRaw(src: usize, dst: usize, n: i32): bool {
  let m = f32x4.splat(0);
  const s = f32x4.splat(F16_SCALE);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const v = v128.load(src + (<usize>i << 2));
    m = f32x4.max(m, f32x4.abs(v));
    v128.store(dst + (<usize>i << 2), f32x4.mul(v, s));
  }
  let mx = max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
  for (; i < n; i++) {
    const v = load<f32>(src + (<usize>i << 2));
    mx = max(mx, abs(v));
    store<f32>(dst + (<usize>i << 2), v * F16_SCALE);
  }
  return mx < 65536; // false for NaN
}

export function h16_gemm_nt(x: usize, w: usize, bias: usize, y: usize, B: i32, K: i32, N: i32, acc: i32, dtype: i32): void {
  if (B <= 0 || N <= 0) return;
  if (K <= 0) {
    // empty reduction: y = (acc ? y : 0) + bias
    for (let b = 0; b < B; b++) {
      const yr = y + <usize>b * (<usize>N << 2);
      for (let n = 0; n < N; n++) {
        const p = yr + (<usize>n << 2);
        const s: f32 = bias ? load<f32>(bias + (<usize>n << 2)) : 0;
        store<f32>(p, acc ? load<f32>(p) + s : s);
      }
    }
    return;
  }
  gemmNt(x, w, bias, y, B, K, N, acc, dtype, <usize>N << 2);
}

/** h16_gemm_nt for K > 0 with y rows ys bytes apart (N of its columns written). */
function gemmNt(x: usize, w: usize, bias: usize, y: usize, B: i32, K: i32, N: i32, acc: i32, dtype: i32, ys: usize): void {
  ensureScratch();
  if (dtype == DT_F16) {
    if (B > DOT_MAX_B) gemmNtPanels(x, w, bias, y, B, K, N, acc, dtype, ys);
    else if (<i64>B * <i64>K <= <i64>PACK_FLOATS && scaleForRaw(x, PACK, B * K)) gemmNtDot<F16Raw>(PACK, x, w, bias, y, B, K, N, acc, ys);
    else gemmNtDot<F16>(x, x, w, bias, y, B, K, N, acc, ys);
  } else {
    if (B > DOT_MAX_B) gemmNtPanels(x, w, bias, y, B, K, N, acc, dtype, ys);
    else gemmNtDot<Bf16>(x, x, w, bias, y, B, K, N, acc, ys);
  }
}

/**
 * Part t of nt of {@link h16_gemm_nt}: output columns [n0, n1) in blocks of 8, as f32_gemm_nt_mt (each thread scales
 * or packs x into its own PACK), so the parts write exactly h16_gemm_nt's result.
 */
export function h16_gemm_nt_mt(x: usize, w: usize, bias: usize, y: usize, B: i32, K: i32, N: i32, acc: i32, dtype: i32, t: i32, nt: i32): void {
  if (B <= 0 || N <= 0) return;
  if (K <= 0) {
    if (t == 0) h16_gemm_nt(x, w, bias, y, B, K, N, acc, dtype);
    return;
  }
  const n0 = partStart(N, 8, t, nt), n1 = partStart(N, 8, t + 1, nt);
  if (n0 >= n1) return;
  gemmNt(x, w + <usize>n0 * (<usize>K << 1), bias ? bias + (<usize>n0 << 2) : 0, y + (<usize>n0 << 2), B, K, n1 - n0, acc, dtype, <usize>N << 2);
}

// ================================================================ h16_gemm_nn (input gradient)
//
// f32_gemm_nn's tiles (4 rows of a x 8 columns of W/y, 8 accumulators over the whole sequential reduction over n)
// on a widened column strip: per block of NN_ROWS rows of a and strip of 8 (then 4) columns, the strip is widened
// NN_CHUNK rows at a time into WIDE (contiguous, 32 bytes per row) and the tiles run over the chunk, storing their
// accumulators into y and reloading them for the next chunk (an f32 store/load keeps the value: the same
// sequential sum, bit for bit):
//
//        W[n, k0..k0+7] (8 halves, one v128 load)  --widen-->  WIDE[n - n0] = [f f f f | f f f f]   n0 <= n < n0+NN_CHUNK
//        nn4x8(a + n0, WIDE, stride 32, rows = chunk, acc = acc || n0 > 0)

/** WIDE[r, 0..8) = f32(W[n0 + r, k0..k0+8)) for r < rows (W rows whs bytes apart, w at column k0). */
function widenStrip8<T>(w: usize, whs: usize, rows: i32): void {
  let d = WIDE;
  for (let r = 0; r < rows; r++) {
    const v = v128.load(w);
    if (isF16<T>()) {
      const l = i16x8.shl(v, 13), h = f16Top(v);
      v128.store(d, f16Scale(joinLo(l, h)));
      v128.store(d, f16Scale(joinHi(l, h)), 16);
    } else {
      v128.store(d, joinLo(zero(), v));
      v128.store(d, joinHi(zero(), v), 16);
    }
    w += whs;
    d += 32;
  }
}

/** WIDE[r, 0..4) = f32(W[n0 + r, k0..k0+4)). */
function widenStrip4<T>(w: usize, whs: usize, rows: i32): void {
  let d = WIDE;
  for (let r = 0; r < rows; r++) {
    v128.store(d, widenLo<T>(v128.load64_zero(w)));
    w += whs;
    d += 16;
  }
}

function gemmNn(a: usize, w: usize, y: usize, B: i32, N: i32, K: i32, acc: i32, dtype: i32, rowLen: i32): void {
  const as = <usize>N << 2;
  const whs = <usize>rowLen << 1;
  const ys = <usize>rowLen << 2;
  for (let b0 = 0; b0 < B; b0 += NN_ROWS) {
    const bEnd = B - b0 < NN_ROWS ? B : b0 + NN_ROWS;
    let k0 = 0;
    for (; k0 + 8 <= K; k0 += 8) {
      const yk = y + (<usize>k0 << 2);
      for (let n0 = 0; n0 < N; n0 += NN_CHUNK) {
        const nl = min(NN_CHUNK, N - n0);
        if (dtype == DT_F16) widenStrip8<F16>(w + <usize>n0 * whs + (<usize>k0 << 1), whs, nl);
        else widenStrip8<Bf16>(w + <usize>n0 * whs + (<usize>k0 << 1), whs, nl);
        const an = a + (<usize>n0 << 2);
        const ac = acc || n0 > 0 ? 1 : 0;
        let b = b0;
        for (; b + 4 <= bEnd; b += 4) nn4x8(an + <usize>b * as, as, WIDE, 32, nl, yk + <usize>b * ys, ys, ac);
        for (; b < bEnd; b++) nn1x8(an + <usize>b * as, WIDE, 32, nl, yk + <usize>b * ys, ac);
      }
    }
    if (k0 + 4 <= K) {
      const yk = y + (<usize>k0 << 2);
      for (let n0 = 0; n0 < N; n0 += NN_CHUNK) {
        const nl = min(NN_CHUNK, N - n0);
        if (dtype == DT_F16) widenStrip4<F16>(w + <usize>n0 * whs + (<usize>k0 << 1), whs, nl);
        else widenStrip4<Bf16>(w + <usize>n0 * whs + (<usize>k0 << 1), whs, nl);
        const an = a + (<usize>n0 << 2);
        const ac = acc || n0 > 0 ? 1 : 0;
        let b = b0;
        for (; b + 4 <= bEnd; b += 4) nn4x4(an + <usize>b * as, as, WIDE, 16, nl, yk + <usize>b * ys, ys, ac);
        for (; b < bEnd; b++) nn1x4(an + <usize>b * as, WIDE, 16, nl, yk + <usize>b * ys, ac);
      }
    }
  }
  let k0 = K & ~7;
  if (k0 + 4 <= K) k0 += 4;
  // last K % 4 columns: scalar, same order
  for (; k0 < K; k0++) {
    for (let b = 0; b < B; b++) {
      const yp = y + <usize>b * ys + (<usize>k0 << 2);
      let s: f32 = acc ? load<f32>(yp) : 0;
      const ar = a + <usize>b * as;
      for (let n = 0; n < N; n++) s += load<f32>(ar + (<usize>n << 2)) * ldhs(w + <usize>n * whs + (<usize>k0 << 1), dtype);
      store<f32>(yp, s);
    }
  }
}

export function h16_gemm_nn(a: usize, w: usize, y: usize, B: i32, N: i32, K: i32, acc: i32, dtype: i32): void {
  if (B <= 0 || K <= 0) return;
  if (N <= 0) {
    // empty reduction (f32_gemm_nn: tiles store their initial accumulators)
    if (!acc) for (let b = 0; b < B; b++) memory.fill(y + <usize>b * (<usize>K << 2), 0, <usize>K << 2);
    return;
  }
  ensureScratch();
  gemmNn(a, w, y, B, N, K, acc, dtype, K);
}

/** Part t of nt of {@link h16_gemm_nn} by output columns in blocks of 8, as f32_gemm_nn_mt. */
export function h16_gemm_nn_mt(a: usize, w: usize, y: usize, B: i32, N: i32, K: i32, acc: i32, dtype: i32, t: i32, nt: i32): void {
  if (B <= 0 || K <= 0) return;
  if (N <= 0) {
    if (t == 0) h16_gemm_nn(a, w, y, B, N, K, acc, dtype);
    return;
  }
  const k0 = partStart(K, 8, t, nt), k1 = partStart(K, 8, t + 1, nt);
  if (k0 >= k1) return;
  ensureScratch();
  gemmNn(a, w + (<usize>k0 << 1), y + (<usize>k0 << 2), B, N, k1 - k0, acc, dtype, K);
}


// ================================================================ switching on half weights
//
// The f32 forms are in scatter.ts and switch.ts (read switch.ts's header for the chunked single sweep). Here w holds
// u16 bits, the saved values are u16 bits (a restore writes back exactly what was there), and a fuse is
//
//        w[p] = half(f32(saved) + f32(v * scale))      one f32 product, one f32 add, one rounding to the half dtype
//
// which is what torch does for PEFT's merge on a bf16/f16 base (see the file header). Gathers and scatters are
// scalar memory operations, unrolled with the loads first; h16_switch_merge is switch.ts's chunked single sweep
// (A restored chunk by chunk, A's lines touched a chunk ahead), and the fuse of B runs in blocks of GATHER_BLOCK
// positions, all loads first, then the arithmetic and stores. Measured on [11008, 4096], r = 32 (483,328 positions
// per adapter, cold weights, medians): f32_switch_merge 6.8 ms, BF16 7.1 ms, F16 7.6 ms.

/** Positions of A restored per chunk in h16_switch_merge (switch.ts CHUNK). */
const CHUNK: i32 = 512;
/** A's mean gap (in halves) above which its lines are touched a chunk ahead: switch.ts's 20 floats = 80 bytes. */
const TOUCH_GAP: i32 = 40;

// ---------------------------------------------------------------- scalar twins

export function h16_gather_scalar(w: usize, idx: usize, out: usize, nnz: i32): void {
  for (let j = 0; j < nnz; j++) store<u16>(out + (<usize>j << 1), load<u16>(w + (<usize>load<i32>(idx + (<usize>j << 2)) << 1)));
}

export function h16_scatter_set_scalar(w: usize, idx: usize, saved: usize, nnz: i32): void {
  for (let j = 0; j < nnz; j++) store<u16>(w + (<usize>load<i32>(idx + (<usize>j << 2)) << 1), load<u16>(saved + (<usize>j << 1)));
}

export function h16_gather_scatter_add_scalar(w: usize, idx: usize, saved: usize, v: usize, scale: f32, nnz: i32, dtype: i32): void {
  for (let j = 0; j < nnz; j++) {
    const wp = w + (<usize>load<i32>(idx + (<usize>j << 2)) << 1);
    const s = load<u16>(wp);
    store<u16>(saved + (<usize>j << 1), s);
    const d: f32 = load<f32>(v + (<usize>j << 2)) * scale;
    store<u16>(wp, <u16>roundScalar(widenScalar(<u32>s, dtype) + d, dtype));
  }
}

export function h16_switch_merge_scalar(w: usize, idxA: usize, savedA: usize, nA: i32, idxB: usize, savedB: usize, vB: usize, scale: f32, nB: i32, dtype: i32): void {
  let i = 0;
  let j = 0;
  while (i < nA && j < nB) {
    const pa = load<i32>(idxA + (<usize>i << 2));
    const pb = load<i32>(idxB + (<usize>j << 2));
    if (pa < pb) {
      store<u16>(w + (<usize>pa << 1), load<u16>(savedA + (<usize>i << 1)));
      i++;
    } else {
      const wp = w + (<usize>pb << 1);
      let s: u16;
      if (pa == pb) {
        s = load<u16>(savedA + (<usize>i << 1));
        i++;
      } else {
        s = load<u16>(wp);
      }
      store<u16>(savedB + (<usize>j << 1), s);
      const d: f32 = load<f32>(vB + (<usize>j << 2)) * scale;
      store<u16>(wp, <u16>roundScalar(widenScalar(<u32>s, dtype) + d, dtype));
      j++;
    }
  }
  for (; i < nA; i++) store<u16>(w + (<usize>load<i32>(idxA + (<usize>i << 2)) << 1), load<u16>(savedA + (<usize>i << 1)));
  for (; j < nB; j++) {
    const wp = w + (<usize>load<i32>(idxB + (<usize>j << 2)) << 1);
    const s = load<u16>(wp);
    store<u16>(savedB + (<usize>j << 1), s);
    const d: f32 = load<f32>(vB + (<usize>j << 2)) * scale;
    store<u16>(wp, <u16>roundScalar(widenScalar(<u32>s, dtype) + d, dtype));
  }
}

// ---------------------------------------------------------------- range helpers (unrolled by 4)

/** w[idx[j]] = src[j] (u16) for j in [j0, j1). */
// @ts-ignore: decorator
@inline function setRange(w: usize, idx: usize, src: usize, j0: i32, j1: i32): void {
  let j = j0;
  for (; j + 4 <= j1; j += 4) {
    const o = <usize>j << 2;
    const h = <usize>j << 1;
    const p0 = load<i32>(idx + o);
    const p1 = load<i32>(idx + o, 4);
    const p2 = load<i32>(idx + o, 8);
    const p3 = load<i32>(idx + o, 12);
    const s0 = load<u16>(src + h);
    const s1 = load<u16>(src + h, 2);
    const s2 = load<u16>(src + h, 4);
    const s3 = load<u16>(src + h, 6);
    store<u16>(w + (<usize>p0 << 1), s0);
    store<u16>(w + (<usize>p1 << 1), s1);
    store<u16>(w + (<usize>p2 << 1), s2);
    store<u16>(w + (<usize>p3 << 1), s3);
  }
  for (; j < j1; j++) store<u16>(w + (<usize>load<i32>(idx + (<usize>j << 2)) << 1), load<u16>(src + (<usize>j << 1)));
}

/** out[j] = w[idx[j]] (u16) for j in [j0, j1): loads only, unrolled by 8, so many cache misses are in flight. */
// @ts-ignore: decorator
@inline function gatherRange(w: usize, idx: usize, out: usize, j0: i32, j1: i32): void {
  let j = j0;
  for (; j + 8 <= j1; j += 8) {
    const q = idx + (<usize>j << 2), o = out + (<usize>j << 1);
    const s0 = load<u16>(w + (<usize>load<i32>(q) << 1));
    const s1 = load<u16>(w + (<usize>load<i32>(q, 4) << 1));
    const s2 = load<u16>(w + (<usize>load<i32>(q, 8) << 1));
    const s3 = load<u16>(w + (<usize>load<i32>(q, 12) << 1));
    const s4 = load<u16>(w + (<usize>load<i32>(q, 16) << 1));
    const s5 = load<u16>(w + (<usize>load<i32>(q, 20) << 1));
    const s6 = load<u16>(w + (<usize>load<i32>(q, 24) << 1));
    const s7 = load<u16>(w + (<usize>load<i32>(q, 28) << 1));
    store<u16>(o, s0);
    store<u16>(o, s1, 2);
    store<u16>(o, s2, 4);
    store<u16>(o, s3, 6);
    store<u16>(o, s4, 8);
    store<u16>(o, s5, 10);
    store<u16>(o, s6, 12);
    store<u16>(o, s7, 14);
  }
  for (; j < j1; j++) store<u16>(out + (<usize>j << 1), load<u16>(w + (<usize>load<i32>(idx + (<usize>j << 2)) << 1)));
}

/** Positions per block of gatherAddRange: the gathered lines (<= 16 KiB) are still in L1/L2 when they are written. */
const GATHER_BLOCK: i32 = 256;

/**
 * saved[j] = w[idx[j]]; w[idx[j]] = half(f32(saved[j]) + f32(v[j] * scale)) for j in [j0, j1), per block: first all
 * the loads (the misses overlap), then the arithmetic and the stores into lines now in cache (with the rounding
 * between a load and its store, loads and arithmetic interleaved left few misses in flight: ~1.6x slower). Indices
 * are unique, so the order of the two phases does not change the result. Not inlined: one copy per format.
 */
function gatherAddRange<T>(w: usize, idx: usize, saved: usize, v: usize, scale: f32, j0: i32, j1: i32): void {
  for (let b0 = j0; b0 < j1; b0 += GATHER_BLOCK) {
    const b1 = min(b0 + GATHER_BLOCK, j1);
    gatherRange(w, idx, saved, b0, b1);
    for (let j = b0; j < b1; j++) {
      const d: f32 = load<f32>(v + (<usize>j << 2)) * scale;
      const s = widen1<T>(<u32>load<u16>(saved + (<usize>j << 1)));
      store<u16>(w + (<usize>load<i32>(idx + (<usize>j << 2)) << 1), <u16>round1<T>(s + d));
    }
  }
}

/** Loads w at idx[j] for j in [j0, j1) (a software prefetch: the values are only OR-ed together). */
// @ts-ignore: decorator
@inline function touchRange(w: usize, idx: usize, j0: i32, j1: i32): i32 {
  let a0 = 0;
  let a1 = 0;
  let a2 = 0;
  let a3 = 0;
  let j = j0;
  for (; j + 4 <= j1; j += 4) {
    const o = <usize>j << 2;
    a0 |= <i32>load<u16>(w + (<usize>load<i32>(idx + o) << 1));
    a1 |= <i32>load<u16>(w + (<usize>load<i32>(idx + o, 4) << 1));
    a2 |= <i32>load<u16>(w + (<usize>load<i32>(idx + o, 8) << 1));
    a3 |= <i32>load<u16>(w + (<usize>load<i32>(idx + o, 12) << 1));
  }
  for (; j < j1; j++) a0 |= <i32>load<u16>(w + (<usize>load<i32>(idx + (<usize>j << 2)) << 1));
  return a0 | a1 | a2 | a3;
}

/** Keeps the touch loads of h16_switch_merge alive. */
let touchSink: i32 = 0;

// ---------------------------------------------------------------- kernels

export function h16_gather(w: usize, idx: usize, out: usize, nnz: i32): void {
  gatherRange(w, idx, out, 0, nnz);
}

export function h16_scatter_set(w: usize, idx: usize, saved: usize, nnz: i32): void {
  setRange(w, idx, saved, 0, nnz);
}

// @ts-ignore: decorator
@inline function gatherAdd(w: usize, idx: usize, saved: usize, v: usize, scale: f32, j0: i32, j1: i32, dtype: i32): void {
  if (dtype == DT_F16) gatherAddRange<F16>(w, idx, saved, v, scale, j0, j1);
  else gatherAddRange<Bf16>(w, idx, saved, v, scale, j0, j1);
}

export function h16_gather_scatter_add(w: usize, idx: usize, saved: usize, v: usize, scale: f32, nnz: i32, dtype: i32): void {
  gatherAdd(w, idx, saved, v, scale, 0, nnz, dtype);
}

/**
 * Restores adapter A (savedA: the u16 bits from before A was fused) and fuses adapter B in one sweep, as
 * f32_switch_merge: p only in A: w[p] = savedA[i]; p only in B: savedB[j] = w[p], w[p] = half(f32(savedB[j]) +
 * f32(vB[j] * scale)); p in both: savedB[j] = savedA[i], w[p] = half(f32(savedA[i]) + f32(vB[j] * scale)).
 * Bit-identical to h16_scatter_set(A); h16_gather(B); the fuse of B.
 */
export function h16_switch_merge(w: usize, idxA: usize, savedA: usize, nA: i32, idxB: usize, savedB: usize, vB: usize, scale: f32, nB: i32, dtype: i32): void {
  // sparse A (positions in different cache lines): prefetch its lines one chunk ahead; dense A: streams anyway
  const touch = nA > 0 && <i64>(load<i32>(idxA + (<usize>(nA - 1) << 2)) - load<i32>(idxA)) >= <i64>TOUCH_GAP * <i64>nA;
  let i = 0;
  let j = 0;
  let sink = touch ? touchRange(w, idxA, 0, min(CHUNK, nA)) : 0;
  while (i < nA) {
    const iEnd = min(i + CHUNK, nA);
    if (touch) sink |= touchRange(w, idxA, iEnd, min(iEnd + CHUNK, nA));
    const last = load<i32>(idxA + (<usize>(iEnd - 1) << 2));
    let jEnd = j;
    while (jEnd < nB && load<i32>(idxB + (<usize>jEnd << 2)) <= last) jEnd++;
    setRange(w, idxA, savedA, i, iEnd);
    gatherAdd(w, idxB, savedB, vB, scale, j, jEnd, dtype);
    i = iEnd;
    j = jEnd;
  }
  gatherAdd(w, idxB, savedB, vB, scale, j, nB, dtype);
  touchSink = sink;
}
