// SIMD helpers shared by the kernels (f32x4 on wasm SIMD; relaxed SIMD where the build enables it).

/**
 * `c + a * b` per lane. In the plain-SIMD build this is a multiply then an add, each rounded to f32, exactly
 * like the scalar `s += a * b` of the twins. In the relaxed-SIMD build (`ASC_FEATURE_RELAXED_SIMD`) it is
 * `f32x4.relaxed_madd`, which the engine may fuse (one rounding) or not: results then differ in the last bits.
 */
// @ts-ignore: decorator
@inline export function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(c, f32x4.mul(a, b));
}

/**
 * Horizontal sums of four vectors in one vector: `[sum a0, sum a1, sum a2, sum a3]`.
 * Lane order of the additions: `(l0 + l2) + (l1 + l3)` (unpack, add, move-halves, add).
 */
// @ts-ignore: decorator
@inline export function hsum4(a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  const u = f32x4.add(v128.shuffle<f32>(a0, a1, 0, 4, 1, 5), v128.shuffle<f32>(a0, a1, 2, 6, 3, 7));
  const v = f32x4.add(v128.shuffle<f32>(a2, a3, 0, 4, 1, 5), v128.shuffle<f32>(a2, a3, 2, 6, 3, 7));
  return f32x4.add(v128.shuffle<f32>(u, v, 0, 1, 4, 5), v128.shuffle<f32>(u, v, 2, 3, 6, 7));
}

/** Horizontal sum of one vector, `(l0 + l2) + (l1 + l3)` (same order as {@link hsum4}). */
// @ts-ignore: decorator
@inline export function hsum1(a: v128): f32 {
  const t = f32x4.add(a, v128.shuffle<f32>(a, a, 2, 3, 0, 1));
  return f32x4.extract_lane(t, 0) + f32x4.extract_lane(t, 1);
}

/** `v128.load` of 4 floats at `p` with the lanes past `n` (0 < n < 4) read as 0 and never touched in memory. */
// @ts-ignore: decorator
@inline export function loadPartial(p: usize, n: i32): v128 {
  let v = f32x4.splat(0);
  v = f32x4.replace_lane(v, 0, load<f32>(p));
  if (n > 1) v = f32x4.replace_lane(v, 1, load<f32>(p, 4));
  if (n > 2) v = f32x4.replace_lane(v, 2, load<f32>(p, 8));
  return v;
}

/** Stores lanes `0 .. n-1` (0 < n <= 4) of `v` at `p`. */
// @ts-ignore: decorator
@inline export function storePartial(p: usize, v: v128, n: i32): void {
  if (n == 4) {
    v128.store(p, v);
    return;
  }
  store<f32>(p, f32x4.extract_lane(v, 0));
  if (n > 1) store<f32>(p, f32x4.extract_lane(v, 1), 4);
  if (n > 2) store<f32>(p, f32x4.extract_lane(v, 2), 8);
}
