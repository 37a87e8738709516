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

// f32x4 <-> two f64x2 halves: the f64 kernels (activation.ts, softmax.ts, norm.ts, vector.ts, backward.ts,
// util/norm.ts, util/attention.ts) widen each f32x4 into lo = [x0 x1] and hi = [x2 x3], run the scalar twin's f64
// operations on them, and round back once with pack. add2 keeps an f64 sum sequential (the lanes added one by one, in index order), so a sum over
// add2(add2(s, lo), hi) is bit-identical to the scalar loop `s += x[i]`.

/** Lanes 0, 1 of an f32x4 as an f64x2 (exact). */
// @ts-ignore: decorator
@inline export function lo(v: v128): v128 {
  return f64x2.promote_low_f32x4(v);
}

/** Lanes 2, 3 of an f32x4 as an f64x2 (exact). */
// @ts-ignore: decorator
@inline export function hi(v: v128): v128 {
  return f64x2.promote_low_f32x4(v128.shuffle<f32>(v, v, 2, 3, 2, 3));
}

/** Two f64x2 rounded to f32 (each lane once) into one f32x4: `[a0 a1 b0 b1]`. */
// @ts-ignore: decorator
@inline export function pack(a: v128, b: v128): v128 {
  return v128.shuffle<f32>(f32x4.demote_f64x2_zero(a), f32x4.demote_f64x2_zero(b), 0, 1, 4, 5);
}

/** `s` plus the two lanes of the f64x2 `v`, in order: `(s + v0) + v1`. */
// @ts-ignore: decorator
@inline export function add2(s: f64, v: v128): f64 {
  s += f64x2.extract_lane(v, 0);
  return s + f64x2.extract_lane(v, 1);
}

/** `out[0..n) = a[0..n) + b[0..n)` (f32x4 adds, 8 then 4 floats a step, scalar tail; one f32 add per element, each
 * step's loads before its stores, so out may equal a or b). */
// @ts-ignore: decorator
@inline export function addVec(a: usize, b: usize, out: usize, n: i32): void {
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const o = <usize>i << 2;
    v128.store(out + o, f32x4.add(v128.load(a + o), v128.load(b + o)));
    v128.store(out + o, f32x4.add(v128.load(a + o, 16), v128.load(b + o, 16)), 16);
  }
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, f32x4.add(v128.load(a + o), v128.load(b + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, load<f32>(a + o) + load<f32>(b + o));
  }
}

/** The maximum of x[0..n) (n >= 0; -inf when n == 0), NaN if any element is NaN: f32x4.max over 16 floats a step, then
 * the lanes and the tail (max is order-free). */
// @ts-ignore: decorator
@inline export function maxOf(x: usize, n: i32): f32 {
  let m: f32 = -Infinity;
  let i = 0;
  if (n >= 16) {
    let a = v128.load(x), b = v128.load(x, 16), c = v128.load(x, 32), d = v128.load(x, 48);
    for (i = 16; i + 16 <= n; i += 16) {
      const p = x + (<usize>i << 2);
      a = f32x4.max(a, v128.load(p));
      b = f32x4.max(b, v128.load(p, 16));
      c = f32x4.max(c, v128.load(p, 32));
      d = f32x4.max(d, v128.load(p, 48));
    }
    const v = f32x4.max(f32x4.max(a, b), f32x4.max(c, d));
    m = max(max(f32x4.extract_lane(v, 0), f32x4.extract_lane(v, 1)), max(f32x4.extract_lane(v, 2), f32x4.extract_lane(v, 3)));
  }
  for (; i < n; i++) m = max(m, load<f32>(x + (<usize>i << 2)));
  return m;
}
