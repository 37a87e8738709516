// Dense products over row-major f32 matrices (PyTorch's nn.Linear layout: W is [N, K]).
//
//   f32_gemm_nt: y[B,N] = (acc ? y : 0) + x[B,K] . W[N,K]^T (+ bias[N] when bias != 0)   forward
//   f32_gemm_nn: y[B,K] = (acc ? y : 0) + a[B,N] . W[N,K]                                input gradient
//   f32_gemm_tn: g[N,K] = (acc ? g : 0) + gy[B,N]^T . x[B,K]                            weight gradient
//   f32_bias_grad: gb[N] = (acc ? gb : 0) + sum_b gy[b,N]
//
// Each has a `_scalar` twin (plain loops, same summation contract) used by the tests.
//
// Where the SIMD kernels come from: the register-blocked micro-kernel + cache-blocking structure of
// GotoBLAS/BLIS (Goto & van de Geijn, "Anatomy of high-performance matrix multiplication", TOMS 2008) in the
// broadcast ("loadsplat") form of XNNPACK's f32-gemm wasmsimd kernels, transposed so that the weight is never
// re-laid-out: W stays [N, K] and is read in place; only x (small) is packed per call. Small batches (B <= 3,
// GEMV-like, bandwidth bound) use dot products along K instead (ggml's vec_dot layout), reading W once.
//
// Summation order (what the tests rely on):
//   * gemm_nn, gemm_tn, bias_grad: same order as the scalar twins (sequential over the reduced index), so the
//     plain-SIMD build is bit-identical to them.
//   * gemm_nt, B >= 4: per output, sequential over k within each K block of KC floats, blocks added to y in
//     order; bit-identical to the scalar twin when K <= KC. B <= 3: 4 lane partial sums reduced at the end of
//     each K block (relative difference ~ K * 2^-24 against the twin).
//   * The relaxed-SIMD build may fuse multiply-adds: compare it with a tolerance.

import { madd, hsum4, hsum1 } from "./util/simd";
import { packTransposed } from "./util/pack";
import {
  KC, BC, KC_DOT, DOT_MAX_B, NN_ROWS, PACK, ensureScratch, partStart, ADD_BIAS, LOAD_Y, finish, finish1,
  micro4x8, micro4x4, micro1x8, micro1x4, panelWidth, nn4x8, nn1x8, nn4x4, nn1x4,
} from "./util/gemm";

// ---------------------------------------------------------------- scalar twins

export function f32_gemm_nt_scalar(x: usize, w: usize, bias: usize, y: usize, B: i32, K: i32, N: i32, acc: i32): void {
  for (let b = 0; b < B; b++) {
    const xr = x + (<usize>b * <usize>K << 2);
    const yr = y + (<usize>b * <usize>N << 2);
    for (let n = 0; n < N; n++) {
      const wr = w + (<usize>n * <usize>K << 2);
      let s: f32 = 0;
      for (let k = 0; k < K; k++) s += load<f32>(xr + (<usize>k << 2)) * load<f32>(wr + (<usize>k << 2));
      if (bias) s += load<f32>(bias + (<usize>n << 2));
      const yp = yr + (<usize>n << 2);
      store<f32>(yp, acc ? load<f32>(yp) + s : s);
    }
  }
}

export function f32_gemm_nn_scalar(a: usize, w: usize, y: usize, B: i32, N: i32, K: i32, acc: i32): void {
  for (let b = 0; b < B; b++) {
    const ar = a + (<usize>b * <usize>N << 2);
    const yr = y + (<usize>b * <usize>K << 2);
    if (!acc) memory.fill(yr, 0, <usize>K << 2);
    for (let n = 0; n < N; n++) {
      const av = load<f32>(ar + (<usize>n << 2));
      const wr = w + (<usize>n * <usize>K << 2);
      for (let k = 0; k < K; k++) {
        const yp = yr + (<usize>k << 2);
        store<f32>(yp, load<f32>(yp) + av * load<f32>(wr + (<usize>k << 2)));
      }
    }
  }
}

export function f32_gemm_tn_scalar(gy: usize, x: usize, g: usize, B: i32, N: i32, K: i32, acc: i32): void {
  if (!acc) memory.fill(g, 0, <usize>N * <usize>K << 2);
  for (let b = 0; b < B; b++) {
    const gr = gy + (<usize>b * <usize>N << 2);
    const xr = x + (<usize>b * <usize>K << 2);
    for (let n = 0; n < N; n++) {
      const gv = load<f32>(gr + (<usize>n << 2));
      const out = g + (<usize>n * <usize>K << 2);
      for (let k = 0; k < K; k++) {
        const p = out + (<usize>k << 2);
        store<f32>(p, load<f32>(p) + gv * load<f32>(xr + (<usize>k << 2)));
      }
    }
  }
}

export function f32_bias_grad_scalar(gy: usize, gb: usize, B: i32, N: i32, acc: i32): void {
  if (!acc) memory.fill(gb, 0, <usize>N << 2);
  for (let b = 0; b < B; b++) {
    const gr = gy + (<usize>b * <usize>N << 2);
    for (let n = 0; n < N; n++) {
      const p = gb + (<usize>n << 2);
      store<f32>(p, load<f32>(p) + load<f32>(gr + (<usize>n << 2)));
    }
  }
}

// ================================================================ f32_gemm_nt (forward)
//
// Path "panels" (B >= 4). Per K block of KC floats and chunk of up to BC rows of x:
//
//   1. pack x^T panels into PACK (8 rows of x per panel; 4 for a short last panel; missing rows are 0):
//
//        x[B,K] rows b0..b0+7, cols k0..k0+kl          panel p (kl * 8 floats, 32 bytes per k)
//        b0 : x00 x01 x02 ...                          k0   : x00 x10 x20 x30 | x40 x50 x60 x70
//        b0+1: x10 x11 x12 ...          ---->           k0+1 : x01 x11 x21 x31 | x41 x51 x61 x71
//        ...                                           ...    (4x4 transposes, v128 stores)
//
//   2. for every 4 rows n0..n0+3 of W (read in place, row-major, never copied) and every panel, the 4x8
//      micro-kernel keeps 8 accumulators (4 W rows x 2 vectors of 4 batch rows):
//
//        W row n0   --load32_splat-->  [w w w w] --*-- p[k][0..3] -> c00     --*-- p[k][4..7] -> c01
//        W row n0+1 --load32_splat-->  [w w w w] --*-- p[k][0..3] -> c10     --*-- p[k][4..7] -> c11
//        W row n0+2 ...                                            -> c20                        -> c21
//        W row n0+3 ...                                            -> c30                        -> c31
//
//      i.e. c[j][q] lane l = sum_k W[n0+j, k] * x[b0+4q+l, k]: one W scalar broadcast feeds 2 madds, one
//      panel vector feeds 4. Per k: 4 splat loads + 2 vector loads, 8 mul+add, 5 pointer bumps. 8 + 2 + 1 + 1
//      live vectors (V8 x64 has 16 xmm). At the end, 4x4 transposes turn columns of y into rows:
//
//        (c00, c10, c20, c30) --transpose--> y[b0+l, n0..n0+3] for l = 0..3   (v128 read-modify-write)
//
//      The W tile (4 rows x KC floats = 16 KiB) stays in L1 while every panel of the chunk streams past it
//      from L2 (chunk: BC x KC floats = 512 KiB): W is read from memory once per chunk.
//
//      Tile choice (measured on the 2-core Sapphire Rapids VM, Node 20 / V8 11.3): TurboFan emits every load
//      of a loop iteration before its arithmetic, so the live set is loads + accumulators (+ 1 temporary for
//      mul/add). 4x8 = 6 loads + 8 accumulators is the largest tile without spills; 5x8, 6x8 spill, 3x12 and
//      4x12 were no faster (relaxed) or slower (plain); packing the W tile to cut the pointer bumps to 2 was not
//      faster either; unrolling k makes TurboFan group each accumulator's chain and spill. The plain build runs
//      at ~27-29 GF/s, the measured mul+add peak of this VM; the relaxed build (vfmadd231ps) at ~32-34 GF/s,
//      where 8 chains x 4-cycle FMA latency is the bound.
//
// Path "dot" (B <= 3, GEMV-like: bandwidth bound, W must be read exactly once): 2x4 tiles of dot products
// along K (2 rows of x x 4 rows of W, SIMD over k, 8 accumulators), then a 1x4 tile for an odd row against the
// same 4 W rows, still in L1; reduced with hsum4 into one v128 of y. K is blocked by KC_DOT when B > 1:
//
//        x row b   : [x0 x1 x2 x3][x4 ...]         c[b][j] += x[b, k..k+3] * W[n0+j, k..k+3]
//        W row n0+j: [w0 w1 w2 w3][w4 ...]         y[b, n0..n0+3] = hsum4(c[b][0], c[b][1], c[b][2], c[b][3])
//
//      (a 3x4 tile would hold 7 loads + 12 accumulators: it spills and ran slower than 2x4 + 1x4.)

function gemmNtPanels(x: usize, w: usize, bias: usize, y: usize, B: i32, K: i32, N: i32, acc: i32, ys: usize): void {
  const xs = <usize>K << 2; // row stride of x and of W
  for (let k0 = 0; k0 < K; k0 += KC) {
    const kl = min(KC, K - k0);
    const flags = (k0 == 0 && bias ? ADD_BIAS : 0) | (acc || k0 > 0 ? LOAD_Y : 0);
    const xk = x + (<usize>k0 << 2);
    const wk = w + (<usize>k0 << 2);
    for (let c0 = 0; c0 < B; c0 += BC) {
      const cb = min(BC, B - c0);
      const xc = xk + <usize>c0 * xs;
      const yc = y + <usize>c0 * ys;
      let off: usize = 0;
      for (let r = 0; r < cb; ) {
        const pw = panelWidth(cb - r);
        // panel of width pw (4 or 8): PACK[off + k * pw + r] = x[r, k], zero rows past the end
        packTransposed(xc + <usize>r * xs, xs, min(pw, cb - r), kl, PACK + off, pw);
        off += <usize>(pw * kl) << 2;
        r += pw;
      }
      let n0 = 0;
      for (; n0 + 4 <= N; n0 += 4) {
        const wp = wk + <usize>n0 * xs;
        const bp = bias + (<usize>n0 << 2);
        const yn = yc + (<usize>n0 << 2);
        off = 0;
        for (let r = 0; r < cb; ) {
          const pw = panelWidth(cb - r);
          const nb = min(pw, cb - r);
          if (pw == 8) micro4x8(wp, xs, PACK + off, kl, yn + <usize>r * ys, ys, bp, flags, nb);
          else micro4x4(wp, xs, PACK + off, kl, yn + <usize>r * ys, ys, bp, flags, nb);
          off += <usize>(pw * kl) << 2;
          r += pw;
        }
      }
      for (; n0 < N; n0++) {
        const wp = wk + <usize>n0 * xs;
        const bp = bias + (<usize>n0 << 2);
        const yn = yc + (<usize>n0 << 2);
        off = 0;
        for (let r = 0; r < cb; ) {
          const pw = panelWidth(cb - r);
          const nb = min(pw, cb - r);
          if (pw == 8) micro1x8(wp, PACK + off, kl, yn + <usize>r * ys, ys, bp, flags, nb);
          else micro1x4(wp, PACK + off, kl, yn + <usize>r * ys, ys, bp, flags, nb);
          off += <usize>(pw * kl) << 2;
          r += pw;
        }
      }
    }
  }
}

/** Scalar dot product of the last n (< 4) floats (the K tail of the dot path). */
// @ts-ignore: decorator
@inline function dotTail(x: usize, w: usize, n: i32): f32 {
  let s: f32 = load<f32>(x) * load<f32>(w);
  if (n > 1) s += load<f32>(x, 4) * load<f32>(w, 4);
  if (n > 2) s += load<f32>(x, 8) * load<f32>(w, 8);
  return s;
}

// @ts-ignore: decorator
@inline function tail4(x: usize, w0: usize, ws: usize, n: i32): v128 {
  let t = f32x4.splat(dotTail(x, w0, n));
  t = f32x4.replace_lane(t, 1, dotTail(x, w0 + ws, n));
  t = f32x4.replace_lane(t, 2, dotTail(x, w0 + 2 * ws, n));
  return f32x4.replace_lane(t, 3, dotTail(x, w0 + 3 * ws, n));
}

/** Dot tile: 1 row of x x 4 rows of W over kl floats -> y[0, 0..3]. */
function dot1x4(x: usize, w: usize, ws: usize, kl: i32, y: usize, bias: usize, flags: i32): void {
  let w0 = w, w1 = w + ws, w2 = w1 + ws, w3 = w2 + ws;
  let c0 = f32x4.splat(0), c1 = c0, c2 = c0, c3 = c0;
  const xe = x + (<usize>(kl & ~3) << 2);
  while (x < xe) {
    const a = v128.load(x);
    c0 = madd(a, v128.load(w0), c0);
    c1 = madd(a, v128.load(w1), c1);
    c2 = madd(a, v128.load(w2), c2);
    c3 = madd(a, v128.load(w3), c3);
    x += 16;
    w0 += 16;
    w1 += 16;
    w2 += 16;
    w3 += 16;
  }
  let r = hsum4(c0, c1, c2, c3);
  if (kl & 3) r = f32x4.add(r, tail4(x, w0, ws, kl & 3));
  v128.store(y, finish(r, y, bias, flags));
}

/**
 * Dot tile for decode (B = 1): 1 row of x x 8 rows of W -> y[0, 0..7]. Eight weight streams in flight read W at
 * ~20-22 GB/s here against ~16-18 for four (a gemv is bound by streaming W once). Each row keeps its own
 * accumulator and the same reduction as {@link dot1x4}, so the results are bit-identical to it.
 */
function dot1x8(x: usize, w: usize, ws: usize, kl: i32, y: usize, bias: usize, flags: i32): void {
  let p = w;
  let c0 = f32x4.splat(0), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
  const xe = x + (<usize>(kl & ~3) << 2);
  while (x < xe) {
    const a = v128.load(x);
    c0 = madd(a, v128.load(p), c0);
    c1 = madd(a, v128.load(p + ws), c1);
    c2 = madd(a, v128.load(p + 2 * ws), c2);
    c3 = madd(a, v128.load(p + 3 * ws), c3);
    c4 = madd(a, v128.load(p + 4 * ws), c4);
    c5 = madd(a, v128.load(p + 5 * ws), c5);
    c6 = madd(a, v128.load(p + 6 * ws), c6);
    c7 = madd(a, v128.load(p + 7 * ws), c7);
    x += 16;
    p += 16;
  }
  let r0 = hsum4(c0, c1, c2, c3), r1 = hsum4(c4, c5, c6, c7);
  if (kl & 3) {
    r0 = f32x4.add(r0, tail4(x, p, ws, kl & 3));
    r1 = f32x4.add(r1, tail4(x, p + 4 * ws, ws, kl & 3));
  }
  v128.store(y, finish(r0, y, bias, flags));
  v128.store(y + 16, finish(r1, y + 16, bias + 16, flags));
}

/** Dot tile: 2 rows of x (stride xs) x 4 rows of W -> y[0..1, 0..3]. */
function dot2x4(x: usize, xs: usize, w: usize, ws: usize, kl: i32, y: usize, ys: usize, bias: usize, flags: i32): void {
  let x0 = x, x1 = x + xs;
  let w0 = w, w1 = w + ws, w2 = w1 + ws, w3 = w2 + ws;
  let c00 = f32x4.splat(0), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00;
  const xe = x0 + (<usize>(kl & ~3) << 2);
  while (x0 < xe) {
    const a0 = v128.load(x0), a1 = v128.load(x1);
    let b = v128.load(w0);
    c00 = madd(a0, b, c00);
    c10 = madd(a1, b, c10);
    b = v128.load(w1);
    c01 = madd(a0, b, c01);
    c11 = madd(a1, b, c11);
    b = v128.load(w2);
    c02 = madd(a0, b, c02);
    c12 = madd(a1, b, c12);
    b = v128.load(w3);
    c03 = madd(a0, b, c03);
    c13 = madd(a1, b, c13);
    x0 += 16;
    x1 += 16;
    w0 += 16;
    w1 += 16;
    w2 += 16;
    w3 += 16;
  }
  let r0 = hsum4(c00, c01, c02, c03), r1 = hsum4(c10, c11, c12, c13);
  if (kl & 3) {
    r0 = f32x4.add(r0, tail4(x0, w0, ws, kl & 3));
    r1 = f32x4.add(r1, tail4(x1, w0, ws, kl & 3));
  }
  v128.store(y, finish(r0, y, bias, flags));
  v128.store(y + ys, finish(r1, y + ys, bias, flags));
}

/** Dot of one row of x with one row of W over kl floats (the N % 4 tail of the dot path). */
function dot1x1(x: usize, w: usize, kl: i32): f32 {
  let c = f32x4.splat(0);
  const xe = x + (<usize>(kl & ~3) << 2);
  while (x < xe) {
    c = madd(v128.load(x), v128.load(w), c);
    x += 16;
    w += 16;
  }
  let s = hsum1(c);
  if (kl & 3) s += dotTail(x, w, kl & 3);
  return s;
}

function gemmNtDot(x: usize, w: usize, bias: usize, y: usize, B: i32, K: i32, N: i32, acc: i32, ys: usize): void {
  const xs = <usize>K << 2;
  const kc = B == 1 ? K : KC_DOT;
  for (let k0 = 0; k0 < K; k0 += kc) {
    const kl = min(kc, K - k0);
    const flags = (k0 == 0 && bias ? ADD_BIAS : 0) | (acc || k0 > 0 ? LOAD_Y : 0);
    const xk = x + (<usize>k0 << 2);
    const wk = w + (<usize>k0 << 2);
    let n0 = 0;
    if (B == 1) {
      for (; n0 + 8 <= N; n0 += 8) dot1x8(xk, wk + <usize>n0 * xs, xs, kl, y + (<usize>n0 << 2), bias + (<usize>n0 << 2), flags);
    }
    for (; n0 + 4 <= N; n0 += 4) {
      const wp = wk + <usize>n0 * xs;
      const bp = bias + (<usize>n0 << 2);
      const yp = y + (<usize>n0 << 2);
      // pairs of x rows against the same 4 W rows (L1-resident after the first pair), then the odd row
      let b = 0;
      for (; b + 2 <= B; b += 2) dot2x4(xk + <usize>b * xs, xs, wp, xs, kl, yp + <usize>b * ys, ys, bp, flags);
      if (b < B) dot1x4(xk + <usize>b * xs, wp, xs, kl, yp + <usize>b * ys, bp, flags);
    }
    for (; n0 < N; n0++) {
      const wp = wk + <usize>n0 * xs;
      const bp = bias + (<usize>n0 << 2);
      for (let b = 0; b < B; b++) {
        const yp = y + <usize>b * ys + (<usize>n0 << 2);
        store<f32>(yp, finish1(dot1x1(xk + <usize>b * xs, wp, kl), yp, bp, flags));
      }
    }
  }
}

export function f32_gemm_nt(x: usize, w: usize, bias: usize, y: usize, B: i32, K: i32, N: i32, acc: i32): void {
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
  ensureScratch();
  if (B <= DOT_MAX_B) gemmNtDot(x, w, bias, y, B, K, N, acc, <usize>N << 2);
  else gemmNtPanels(x, w, bias, y, B, K, N, acc, <usize>N << 2);
}

/**
 * Part t of nt of {@link f32_gemm_nt} (the thread pool runs t = 0..nt-1 at once): the output columns
 * [n0, n1), split in blocks of 8 (W rows n0..n1-1, y columns n0..n1-1 of every row). Every y element takes the path
 * and reduction it takes in f32_gemm_nt (the tiles of 8/4 W rows stay aligned; the K == 0 case runs in part 0), so
 * the parts together write exactly f32_gemm_nt's result, whatever nt.
 */
export function f32_gemm_nt_mt(x: usize, w: usize, bias: usize, y: usize, B: i32, K: i32, N: i32, acc: i32, t: i32, nt: i32): void {
  if (B <= 0 || N <= 0) return;
  if (K <= 0) {
    if (t == 0) f32_gemm_nt(x, w, bias, y, B, K, N, acc);
    return;
  }
  const n0 = partStart(N, 8, t, nt), n1 = partStart(N, 8, t + 1, nt);
  if (n0 >= n1) return;
  ensureScratch();
  const wp = w + <usize>n0 * (<usize>K << 2), bp = bias ? bias + (<usize>n0 << 2) : 0, yp = y + (<usize>n0 << 2);
  if (B <= DOT_MAX_B) gemmNtDot(x, wp, bp, yp, B, K, n1 - n0, acc, <usize>N << 2);
  else gemmNtPanels(x, wp, bp, yp, B, K, n1 - n0, acc, <usize>N << 2);
}

// ================================================================ f32_gemm_nn (input gradient)
//
// y[B,K] = (acc ? y : 0) + a[B,N] . W[N,K]: row b of y is a combination of the rows of W. Tiles of 4 rows of
// a x 8 columns of W/y, 8 accumulators held over the whole reduction n = 0..N-1 (sequential, as the twin):
//
//        a row b0..b0+3 --load32_splat a[b, n]--> [a a a a] --*-- W[n, k0..k0+3] -> c[b][0]
//                                                           --*-- W[n, k0+4..k0+7] -> c[b][1]
//        W is read in place: a column panel W[0..N-1, k0..k0+7] (one cache line per row) stays in L1/L2
//        while every tile of 4 rows of a streams past it.

export function f32_gemm_nn(a: usize, w: usize, y: usize, B: i32, N: i32, K: i32, acc: i32): void {
  if (B <= 0 || K <= 0) return;
  gemmNn(a, w, y, B, N, K, acc, <usize>K << 2);
}

/**
 * Part t of nt of {@link f32_gemm_nn} by output columns (for few rows: decode through GPT-2's Conv1D): the columns
 * [k0, k1) of W and y in blocks of 8, so the 8- and 4-column strips stay aligned and each y element is the same
 * sequential sum over n as in f32_gemm_nn.
 */
export function f32_gemm_nn_mt(a: usize, w: usize, y: usize, B: i32, N: i32, K: i32, acc: i32, t: i32, nt: i32): void {
  if (B <= 0 || K <= 0) return;
  const k0 = partStart(K, 8, t, nt), k1 = partStart(K, 8, t + 1, nt);
  if (k0 >= k1) return;
  gemmNn(a, w + (<usize>k0 << 2), y + (<usize>k0 << 2), B, N, k1 - k0, acc, <usize>K << 2);
}

/** y[B, 0..K) (+)= a[B,N] . W[N, 0..K) for W and y rows `rs` bytes apart (K of their columns). */
function gemmNn(a: usize, w: usize, y: usize, B: i32, N: i32, K: i32, acc: i32, rs: usize): void {
  const as = <usize>N << 2;
  const ws = rs;
  const ys = rs;
  // blocks of NN_ROWS rows, each through every 8- and 4-column strip: each y element is still one tile's full
  // sequential sum over n, so the result is the same as strip by strip over all rows
  for (let b0 = 0; b0 < B; b0 += NN_ROWS) {
    const bEnd = B - b0 < NN_ROWS ? B : b0 + NN_ROWS;
    let k0 = 0;
    for (; k0 + 8 <= K; k0 += 8) {
      const wk = w + (<usize>k0 << 2);
      let b = b0;
      for (; b + 4 <= bEnd; b += 4) nn4x8(a + <usize>b * as, as, wk, ws, N, y + <usize>b * ys + (<usize>k0 << 2), ys, acc);
      for (; b < bEnd; b++) nn1x8(a + <usize>b * as, wk, ws, N, y + <usize>b * ys + (<usize>k0 << 2), acc);
    }
    if (k0 + 4 <= K) {
      const wk = w + (<usize>k0 << 2);
      let b = b0;
      for (; b + 4 <= bEnd; b += 4) nn4x4(a + <usize>b * as, as, wk, ws, N, y + <usize>b * ys + (<usize>k0 << 2), ys, acc);
      for (; b < bEnd; b++) nn1x4(a + <usize>b * as, wk, ws, N, y + <usize>b * ys + (<usize>k0 << 2), acc);
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
      for (let n = 0; n < N; n++) s += load<f32>(ar + (<usize>n << 2)) * load<f32>(w + <usize>n * ws + (<usize>k0 << 2));
      store<f32>(yp, s);
    }
  }
}


// ================================================================ f32_gemm_tn (weight gradient)
//
// g[N,K] = (acc ? g : 0) + gy[B,N]^T . x[B,K]: a sum of B outer products. Tiles of 4 rows of g x 8 columns,
// 8 accumulators held over b = 0..B-1 (sequential, as the twin); g is written once:
//
//        gy row b: [.. gy[b,n0] gy[b,n0+1] gy[b,n0+2] gy[b,n0+3] ..] --load32_splat--> s0 s1 s2 s3
//        x row b : [.. x[b,k0..k0+3] | x[b,k0+4..k0+7] ..]            --v128.load---> v0 v1
//        c[i][j] += s_i * v_j                  (one gy pointer and one x pointer, bumped by a row per b)

function tn4x8(gy: usize, gs: usize, x: usize, xs: usize, B: i32, g: usize, ks: usize, acc: i32): void {
  const g0 = g, g1 = g + ks, g2 = g1 + ks, g3 = g2 + ks;
  let c00 = f32x4.splat(0), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  if (acc) {
    c00 = v128.load(g0);
    c01 = v128.load(g0, 16);
    c10 = v128.load(g1);
    c11 = v128.load(g1, 16);
    c20 = v128.load(g2);
    c21 = v128.load(g2, 16);
    c30 = v128.load(g3);
    c31 = v128.load(g3, 16);
  }
  for (let b = 0; b < B; b++) {
    const v0 = v128.load(x), v1 = v128.load(x, 16);
    let s = v128.load32_splat(gy);
    c00 = madd(s, v0, c00);
    c01 = madd(s, v1, c01);
    s = v128.load32_splat(gy, 4);
    c10 = madd(s, v0, c10);
    c11 = madd(s, v1, c11);
    s = v128.load32_splat(gy, 8);
    c20 = madd(s, v0, c20);
    c21 = madd(s, v1, c21);
    s = v128.load32_splat(gy, 12);
    c30 = madd(s, v0, c30);
    c31 = madd(s, v1, c31);
    gy += gs;
    x += xs;
  }
  v128.store(g0, c00);
  v128.store(g0, c01, 16);
  v128.store(g1, c10);
  v128.store(g1, c11, 16);
  v128.store(g2, c20);
  v128.store(g2, c21, 16);
  v128.store(g3, c30);
  v128.store(g3, c31, 16);
}

function tn1x8(gy: usize, gs: usize, x: usize, xs: usize, B: i32, g: usize, acc: i32): void {
  let c0 = f32x4.splat(0), c1 = c0;
  if (acc) {
    c0 = v128.load(g);
    c1 = v128.load(g, 16);
  }
  for (let b = 0; b < B; b++) {
    const s = v128.load32_splat(gy);
    c0 = madd(s, v128.load(x), c0);
    c1 = madd(s, v128.load(x, 16), c1);
    gy += gs;
    x += xs;
  }
  v128.store(g, c0);
  v128.store(g, c1, 16);
}

function tn4x4(gy: usize, gs: usize, x: usize, xs: usize, B: i32, g: usize, ks: usize, acc: i32): void {
  const g0 = g, g1 = g + ks, g2 = g1 + ks, g3 = g2 + ks;
  let c0 = f32x4.splat(0), c1 = c0, c2 = c0, c3 = c0;
  if (acc) {
    c0 = v128.load(g0);
    c1 = v128.load(g1);
    c2 = v128.load(g2);
    c3 = v128.load(g3);
  }
  for (let b = 0; b < B; b++) {
    const v = v128.load(x);
    c0 = madd(v128.load32_splat(gy), v, c0);
    c1 = madd(v128.load32_splat(gy, 4), v, c1);
    c2 = madd(v128.load32_splat(gy, 8), v, c2);
    c3 = madd(v128.load32_splat(gy, 12), v, c3);
    gy += gs;
    x += xs;
  }
  v128.store(g0, c0);
  v128.store(g1, c1);
  v128.store(g2, c2);
  v128.store(g3, c3);
}

function tn1x4(gy: usize, gs: usize, x: usize, xs: usize, B: i32, g: usize, acc: i32): void {
  let c = acc ? v128.load(g) : f32x4.splat(0);
  for (let b = 0; b < B; b++) {
    c = madd(v128.load32_splat(gy), v128.load(x), c);
    gy += gs;
    x += xs;
  }
  v128.store(g, c);
}

/** Rows of gy and x per pass of f32_gemm_tn (a block of x stays in cache while every output tile reads it). */
const TN_ROWS: i32 = 128;

export function f32_gemm_tn(gy: usize, x: usize, g: usize, B: i32, N: i32, K: i32, acc: i32): void {
  if (N <= 0 || K <= 0) return;
  gemmTn(gy, <usize>N << 2, x, g, B, N, K, acc);
}

/**
 * Part t of nt of {@link f32_gemm_tn}: the rows [n0, n1) of g (columns of gy), split in blocks of 4 (the 4-row tiles
 * stay aligned), so the parts write f32_gemm_tn's result.
 */
export function f32_gemm_tn_mt(gy: usize, x: usize, g: usize, B: i32, N: i32, K: i32, acc: i32, t: i32, nt: i32): void {
  if (N <= 0 || K <= 0) return;
  const n0 = partStart(N, 4, t, nt), n1 = partStart(N, 4, t + 1, nt);
  if (n0 >= n1) return;
  gemmTn(gy + (<usize>n0 << 2), <usize>N << 2, x, g + <usize>n0 * (<usize>K << 2), B, n1 - n0, K, acc);
}

/** g[N,K] (+)= gy^T x for gy rows gs bytes apart (N of its columns used). */
function gemmTn(gy: usize, gs: usize, x: usize, g: usize, B: i32, N: i32, K: i32, acc: i32): void {
  // Passes over blocks of TN_ROWS rows, each accumulating into g: every output element still sums its products in
  // row order (an accumulator stored and reloaded between passes keeps its value), so the result is unchanged
  // while x is read from cache instead of from memory once per 4 output rows.
  if (B > TN_ROWS) {
    for (let b0 = 0; b0 < B; b0 += TN_ROWS) {
      const rows = B - b0 < TN_ROWS ? B - b0 : TN_ROWS;
      gemmTnBlock(gy + <usize>b0 * gs, gs, x + (<usize>b0 * <usize>K << 2), g, rows, N, K, b0 == 0 ? acc : 1);
    }
    return;
  }
  gemmTnBlock(gy, gs, x, g, B, N, K, acc);
}

function gemmTnBlock(gy: usize, gs: usize, x: usize, g: usize, B: i32, N: i32, K: i32, acc: i32): void {
  const xs = <usize>K << 2;
  let n = 0;
  for (; n < N; ) {
    const rows = N - n >= 4 ? 4 : 1;
    const gyn = gy + (<usize>n << 2);
    const gn = g + <usize>n * xs;
    let k0 = 0;
    for (; k0 + 8 <= K; k0 += 8) {
      const ko = <usize>k0 << 2;
      if (rows == 4) tn4x8(gyn, gs, x + ko, xs, B, gn + ko, xs, acc);
      else tn1x8(gyn, gs, x + ko, xs, B, gn + ko, acc);
    }
    if (k0 + 4 <= K) {
      const ko = <usize>k0 << 2;
      if (rows == 4) tn4x4(gyn, gs, x + ko, xs, B, gn + ko, xs, acc);
      else tn1x4(gyn, gs, x + ko, xs, B, gn + ko, acc);
      k0 += 4;
    }
    // last K % 4 columns: scalar, same order
    for (; k0 < K; k0++) {
      for (let r = 0; r < rows; r++) {
        const p = gn + <usize>r * xs + (<usize>k0 << 2);
        let s: f32 = acc ? load<f32>(p) : 0;
        for (let b = 0; b < B; b++) s += load<f32>(gyn + <usize>b * gs + (<usize>r << 2)) * load<f32>(x + <usize>b * xs + (<usize>k0 << 2));
        store<f32>(p, s);
      }
    }
    n += rows;
  }
}

// ================================================================ f32_bias_grad
//
// gb[N] = (acc ? gb : 0) + sum_b gy[b, :]: 4 vectors (16 columns) of accumulators down the rows of gy,
// sequential over b as the twin.

export function f32_bias_grad(gy: usize, gb: usize, B: i32, N: i32, acc: i32): void {
  if (N <= 0) return;
  const gs = <usize>N << 2;
  let n = 0;
  for (; n + 16 <= N; n += 16) {
    const p = gb + (<usize>n << 2);
    let c0 = f32x4.splat(0), c1 = c0, c2 = c0, c3 = c0;
    if (acc) {
      c0 = v128.load(p);
      c1 = v128.load(p, 16);
      c2 = v128.load(p, 32);
      c3 = v128.load(p, 48);
    }
    let r = gy + (<usize>n << 2);
    for (let b = 0; b < B; b++) {
      c0 = f32x4.add(c0, v128.load(r));
      c1 = f32x4.add(c1, v128.load(r, 16));
      c2 = f32x4.add(c2, v128.load(r, 32));
      c3 = f32x4.add(c3, v128.load(r, 48));
      r += gs;
    }
    v128.store(p, c0);
    v128.store(p, c1, 16);
    v128.store(p, c2, 32);
    v128.store(p, c3, 48);
  }
  for (; n + 4 <= N; n += 4) {
    const p = gb + (<usize>n << 2);
    let c = acc ? v128.load(p) : f32x4.splat(0);
    let r = gy + (<usize>n << 2);
    for (let b = 0; b < B; b++) {
      c = f32x4.add(c, v128.load(r));
      r += gs;
    }
    v128.store(p, c);
  }
  for (; n < N; n++) {
    const p = gb + (<usize>n << 2);
    let s: f32 = acc ? load<f32>(p) : 0;
    for (let b = 0; b < B; b++) s += load<f32>(gy + <usize>b * gs + (<usize>n << 2));
    store<f32>(p, s);
  }
}
