// Low-rank fuse for the LoRA baseline:  W[N,K] += scale * Bm[N,r] . A[r,K]
//
// The engine's best dense product applied to LoRA, so the comparison with SHiRA's O(nnz) switch is fair:
// the gemm_nn micro-kernel (4 rows x 8 columns, 8 f32x4 accumulators, GotoBLAS-style register blocking)
// with the update fused into its store, so W is read and written exactly once, row after row:
//
//        Bm rows n0..n0+3 --load32_splat Bm[n, q]--> [b b b b] --*-- A[q, k0..k0+3]   -> c[n][0]
//                                                              --*-- A[q, k0+4..k0+7] -> c[n][1]
//        after q = 0..r-1 (sequential, as the twin):  W[n, k0..k0+7] = W + scale * c   (v128 RMW)
//
// A (r x K floats, <= 1 MiB at r = 64, K = 4096) stays in L2 while the 4 W rows stream through.
// Summation order is the twin's (sequential over q, then one multiply and one add), so the plain-SIMD build
// is bit-identical to f32_lowrank_fuse_scalar.

import { madd } from "./util/simd";

export function f32_lowrank_fuse_scalar(w: usize, bm: usize, a: usize, scale: f32, N: i32, K: i32, r: i32): void {
  for (let n = 0; n < N; n++) {
    const wr = w + (<usize>n * <usize>K << 2);
    for (let k = 0; k < K; k++) {
      let s: f32 = 0;
      for (let q = 0; q < r; q++) {
        s += load<f32>(bm + ((<usize>n * <usize>r + <usize>q) << 2)) * load<f32>(a + ((<usize>q * <usize>K + <usize>k) << 2));
      }
      const p = wr + (<usize>k << 2);
      store<f32>(p, load<f32>(p) + scale * s);
    }
  }
}

// @ts-ignore: decorator
@inline function update(p: usize, c: v128, sv: v128): void {
  v128.store(p, f32x4.add(v128.load(p), f32x4.mul(sv, c)));
}

/** W[n0..n0+3, k0..k0+7] += scale * Bm[n0..n0+3, :] . A[:, k0..k0+7]. */
function fuse4x8(w: usize, ws: usize, bm: usize, bs: usize, a: usize, as: usize, r: i32, sv: v128): void {
  let b0 = bm, b1 = bm + bs, b2 = b1 + bs, b3 = b2 + bs;
  let c00 = f32x4.splat(0), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  const be = b0 + (<usize>r << 2);
  while (b0 < be) {
    const v0 = v128.load(a), v1 = v128.load(a, 16);
    let s = v128.load32_splat(b0);
    c00 = madd(s, v0, c00);
    c01 = madd(s, v1, c01);
    s = v128.load32_splat(b1);
    c10 = madd(s, v0, c10);
    c11 = madd(s, v1, c11);
    s = v128.load32_splat(b2);
    c20 = madd(s, v0, c20);
    c21 = madd(s, v1, c21);
    s = v128.load32_splat(b3);
    c30 = madd(s, v0, c30);
    c31 = madd(s, v1, c31);
    b0 += 4;
    b1 += 4;
    b2 += 4;
    b3 += 4;
    a += as;
  }
  update(w, c00, sv);
  update(w + 16, c01, sv);
  update(w + ws, c10, sv);
  update(w + ws + 16, c11, sv);
  update(w + 2 * ws, c20, sv);
  update(w + 2 * ws + 16, c21, sv);
  update(w + 3 * ws, c30, sv);
  update(w + 3 * ws + 16, c31, sv);
}

/** One row of W, 8 columns. */
function fuse1x8(w: usize, bm: usize, a: usize, as: usize, r: i32, sv: v128): void {
  let c0 = f32x4.splat(0), c1 = c0;
  const be = bm + (<usize>r << 2);
  while (bm < be) {
    const s = v128.load32_splat(bm);
    c0 = madd(s, v128.load(a), c0);
    c1 = madd(s, v128.load(a, 16), c1);
    bm += 4;
    a += as;
  }
  update(w, c0, sv);
  update(w + 16, c1, sv);
}

/** One row of W, 4 columns. */
function fuse1x4(w: usize, bm: usize, a: usize, as: usize, r: i32, sv: v128): void {
  let c = f32x4.splat(0);
  const be = bm + (<usize>r << 2);
  while (bm < be) {
    c = madd(v128.load32_splat(bm), v128.load(a), c);
    bm += 4;
    a += as;
  }
  update(w, c, sv);
}

/** One row of W, `cols` (< 4) columns, scalar (same order as the twin). A has row stride `as` bytes. */
function fuseTail(w: usize, bm: usize, a: usize, as: usize, r: i32, scale: f32, cols: i32): void {
  for (let k = 0; k < cols; k++) {
    let s: f32 = 0;
    for (let q = 0; q < r; q++) s += load<f32>(bm + (<usize>q << 2)) * load<f32>(a + <usize>q * as + (<usize>k << 2));
    const p = w + (<usize>k << 2);
    store<f32>(p, load<f32>(p) + scale * s);
  }
}

export function f32_lowrank_fuse(w: usize, bm: usize, a: usize, scale: f32, N: i32, K: i32, r: i32): void {
  if (r <= 0) {
    // empty product: W += scale * 0 (keeps -0 + 0 = 0 and NaN * 0 semantics of the twin)
    f32_lowrank_fuse_scalar(w, bm, a, scale, N, K, r);
    return;
  }
  const ws = <usize>K << 2, bs = <usize>r << 2, as = <usize>K << 2;
  const sv = f32x4.splat(scale);
  const k8 = K & ~7, k4 = K & ~3;
  let n = 0;
  for (; n + 4 <= N; n += 4) {
    const wn = w + <usize>n * ws, bn = bm + <usize>n * bs;
    for (let k = 0; k < k8; k += 8) fuse4x8(wn + (<usize>k << 2), ws, bn, bs, a + (<usize>k << 2), as, r, sv);
    for (let i = 0; i < 4; i++) {
      if (k8 < k4) fuse1x4(wn + <usize>i * ws + (<usize>k8 << 2), bn + <usize>i * bs, a + (<usize>k8 << 2), as, r, sv);
      if (k4 < K) fuseTail(wn + <usize>i * ws + (<usize>k4 << 2), bn + <usize>i * bs, a + (<usize>k4 << 2), as, r, scale, K - k4);
    }
  }
  for (; n < N; n++) {
    const wn = w + <usize>n * ws, bn = bm + <usize>n * bs;
    for (let k = 0; k < k8; k += 8) fuse1x8(wn + (<usize>k << 2), bn, a + (<usize>k << 2), as, r, sv);
    if (k8 < k4) fuse1x4(wn + (<usize>k8 << 2), bn, a + (<usize>k8 << 2), as, r, sv);
    if (k4 < K) fuseTail(wn + (<usize>k4 << 2), bn, a + (<usize>k4 << 2), as, r, scale, K - k4);
  }
}
