// Vector helpers over f32 arrays.
//   f32_fill, f32_copy, f32_axpy (y += a x), f32_scale (x *= s), f32_add (out = a + b),
//   f32_sum_sq (sum of squares in f64), f32_find_nonfinite (index of the first NaN/Inf or -1),
//   f32_transpose (dst[c, r] = src[r, c])
//
// SIMD forms are bit-identical to the scalar twins, except f32_sum_sq, which keeps 4 f64 partial sums
// (relative difference from the sequential twin ~ n * 2^-53). f32_add is addVec of util/simd.ts.

import { lo, hi, addVec } from "./util/simd";

// ---------------------------------------------------------------- scalar twins

export function f32_fill_scalar(p: usize, v: f32, n: i32): void {
  for (let i = 0; i < n; i++) store<f32>(p + (<usize>i << 2), v);
}
export function f32_axpy_scalar(a: f32, x: usize, y: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(y + o, load<f32>(y + o) + a * load<f32>(x + o));
  }
}
export function f32_scale_scalar(x: usize, s: f32, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(x + o, load<f32>(x + o) * s);
  }
}
export function f32_add_scalar(a: usize, b: usize, out: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, load<f32>(a + o) + load<f32>(b + o));
  }
}
export function f32_sum_sq_scalar(x: usize, n: i32): f64 {
  let s: f64 = 0;
  for (let i = 0; i < n; i++) {
    const v = <f64>load<f32>(x + (<usize>i << 2));
    s += v * v;
  }
  return s;
}
export function f32_find_nonfinite_scalar(x: usize, n: i32): i32 {
  for (let i = 0; i < n; i++) {
    const v = load<f32>(x + (<usize>i << 2));
    if (!isFinite<f32>(v)) return i;
  }
  return -1;
}
export function f32_transpose_scalar(src: usize, dst: usize, rows: i32, cols: i32): void {
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      store<f32>(dst + ((<usize>c * <usize>rows + <usize>r) << 2), load<f32>(src + ((<usize>r * <usize>cols + <usize>c) << 2)));
    }
  }
}

// ---------------------------------------------------------------- SIMD kernels

export function f32_fill(p: usize, v: f32, n: i32): void {
  const vv = f32x4.splat(v);
  let i = 0;
  for (; i + 16 <= n; i += 16) {
    const q = p + (<usize>i << 2);
    v128.store(q, vv);
    v128.store(q, vv, 16);
    v128.store(q, vv, 32);
    v128.store(q, vv, 48);
  }
  for (; i + 4 <= n; i += 4) v128.store(p + (<usize>i << 2), vv);
  for (; i < n; i++) store<f32>(p + (<usize>i << 2), v);
}

/** dst[0..n) = src[0..n) (memory.copy: the engine's memmove; overlapping ranges are fine). */
export function f32_copy(src: usize, dst: usize, n: i32): void {
  memory.copy(dst, src, <usize>n << 2);
}

export function f32_axpy(a: f32, x: usize, y: usize, n: i32): void {
  const av = f32x4.splat(a);
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const o = <usize>i << 2;
    v128.store(y + o, f32x4.add(v128.load(y + o), f32x4.mul(av, v128.load(x + o))));
    v128.store(y + o, f32x4.add(v128.load(y + o, 16), f32x4.mul(av, v128.load(x + o, 16))), 16);
  }
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(y + o, f32x4.add(v128.load(y + o), f32x4.mul(av, v128.load(x + o))));
  }
  if (i < n) f32_axpy_scalar(a, x + (<usize>i << 2), y + (<usize>i << 2), n - i);
}

export function f32_scale(x: usize, s: f32, n: i32): void {
  const sv = f32x4.splat(s);
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const o = <usize>i << 2;
    v128.store(x + o, f32x4.mul(v128.load(x + o), sv));
    v128.store(x + o, f32x4.mul(v128.load(x + o, 16), sv), 16);
  }
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(x + o, f32x4.mul(v128.load(x + o), sv));
  }
  if (i < n) f32_scale_scalar(x + (<usize>i << 2), s, n - i);
}

export function f32_add(a: usize, b: usize, out: usize, n: i32): void {
  addVec(a, b, out, n);
}

/** Sum of squares in f64: 4 f64 partial sums (lanes 0,1 and 2,3 of each f32x4), then the tail. */
export function f32_sum_sq(x: usize, n: i32): f64 {
  let s0 = f64x2.splat(0), s1 = s0;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const v = v128.load(x + (<usize>i << 2));
    const a = lo(v), b = hi(v);
    s0 = f64x2.add(s0, f64x2.mul(a, a));
    s1 = f64x2.add(s1, f64x2.mul(b, b));
  }
  const t = f64x2.add(s0, s1);
  let s = f64x2.extract_lane(t, 0) + f64x2.extract_lane(t, 1);
  for (; i < n; i++) {
    const v = <f64>load<f32>(x + (<usize>i << 2));
    s += v * v;
  }
  return s;
}

/** First index of a NaN or +-Inf (exponent bits all ones), 16 floats per test, or -1. */
export function f32_find_nonfinite(x: usize, n: i32): i32 {
  const mask = i32x4.splat(0x7fffffff), inf = i32x4.splat(0x7f800000);
  let i = 0;
  for (; i + 16 <= n; i += 16) {
    const q = x + (<usize>i << 2);
    const a = i32x4.ge_s(v128.and(v128.load(q), mask), inf);
    const b = i32x4.ge_s(v128.and(v128.load(q, 16), mask), inf);
    const c = i32x4.ge_s(v128.and(v128.load(q, 32), mask), inf);
    const d = i32x4.ge_s(v128.and(v128.load(q, 48), mask), inf);
    if (v128.any_true(v128.or(v128.or(a, b), v128.or(c, d)))) break;
  }
  const r = f32_find_nonfinite_scalar(x + (<usize>i << 2), n - i);
  return r < 0 ? -1 : i + r;
}

/**
 * dst[cols, rows] = src[rows, cols]^T in 4x4 blocks (4 row loads, 8 shuffles, 4 column stores), walked in
 * 32x32 tiles so both sides stay in L1; ragged edges scalar.
 */
export function f32_transpose(src: usize, dst: usize, rows: i32, cols: i32): void {
  const ss = <usize>cols << 2, ds = <usize>rows << 2;
  const r4 = rows & ~3, c4 = cols & ~3;
  for (let r0 = 0; r0 < r4; r0 += 32) {
    const r1 = min(r0 + 32, r4);
    for (let c0 = 0; c0 < c4; c0 += 32) {
      const c1 = min(c0 + 32, c4);
      for (let r = r0; r < r1; r += 4) {
        for (let c = c0; c < c1; c += 4) {
          const s = src + <usize>r * ss + (<usize>c << 2);
          const a0 = v128.load(s), a1 = v128.load(s + ss), a2 = v128.load(s + 2 * ss), a3 = v128.load(s + 3 * ss);
          const t0 = v128.shuffle<f32>(a0, a1, 0, 4, 1, 5), t1 = v128.shuffle<f32>(a0, a1, 2, 6, 3, 7);
          const t2 = v128.shuffle<f32>(a2, a3, 0, 4, 1, 5), t3 = v128.shuffle<f32>(a2, a3, 2, 6, 3, 7);
          const d = dst + <usize>c * ds + (<usize>r << 2);
          v128.store(d, v128.shuffle<f32>(t0, t2, 0, 1, 4, 5));
          v128.store(d + ds, v128.shuffle<f32>(t0, t2, 2, 3, 6, 7));
          v128.store(d + 2 * ds, v128.shuffle<f32>(t1, t3, 0, 1, 4, 5));
          v128.store(d + 3 * ds, v128.shuffle<f32>(t1, t3, 2, 3, 6, 7));
        }
      }
    }
  }
  // ragged edges: columns c4.. of every row, and rows r4.. of the first c4 columns
  for (let r = 0; r < rows; r++) {
    for (let c = r < r4 ? c4 : 0; c < cols; c++) {
      store<f32>(dst + <usize>c * ds + (<usize>r << 2), load<f32>(src + <usize>r * ss + (<usize>c << 2)));
    }
  }
}
