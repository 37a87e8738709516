// Masked matmul (SDDMM): the gradient of SHiRA's sparse values, O(B * nnz), never a dense [N,K] gradient.
//   g[j] = (acc ? g[j] : 0) + scale * sum_b gy[b, row_j] * x[b, col_j]
// Positions in CSR by output row: rowPtr i32[N+1], idx i32[nnz] (flat positions n * rowLen + col, ascending;
// rowLen = K for a dense [N, K] weight): row_j is the CSR row n holding j, col_j = idx[j] - n * rowLen (no column
// array is stored; the SIMD path moves the xT base back by n * rowLen rows once per row instead of subtracting per
// position, so only where the column comes from changed, not the order of the float operations).
// `scratch` points to f32_sddmm_csr_scratch(B, K, N) floats the kernel may use.
//
// B == 1 (no scratch): one product per position, the twin's order exactly (bit-identical).
// B >= 2 (scratch = (K + min(N, 16)) * Bp floats, Bp = B rounded up to 4): x is transposed once into
// xT[K, Bp], and gy one block of 16 CSR rows (ROW_BLOCK) at a time into gyT[16, Bp] (util/pack.ts, zero padded),
// so both factors of every position are contiguous batch vectors; 4 positions of a row run together (4
// accumulators, the gy vector loaded once for the 4), reduced by one hsum4 into a v128 of g (the SDDMM layout of
// "sampled dense-dense" kernels: dot products along the dense dimension, here the batch):
//
//        gyT row n      : [g0 g1 g2 g3 | g4 ...]             acc[i] += gyT[n, 4q..4q+3] * xT[col[j+i], 4q..4q+3]
//        xT row col[j+i]: [x0 x1 x2 x3 | x4 ...]             g[j..j+3] = (acc ? g : 0) + scale * hsum4(acc[0..3])
//
// The batch sum then runs in 4 lanes and is reduced at the end: relative difference from the sequential twin
// ~ B * 2^-24 (tests use a tolerance).
//
// Why gy is packed by blocks of rows: the CSR rows are visited in order, so a row's gy vector is needed only while
// its block runs, whereas the columns of a row are arbitrary, so xT is needed whole. Packing gyT whole doubled the
// scratch for a square layer ((N + K) * Bp: at B = 64 and N = K = 1024, 512 KiB, twice the input gradient the
// backward allocates next, and the peak of a training step; now 260 KiB). Every position's dot product still runs over the same
// two vectors in the same order, so the result is bit-identical to packing gyT whole (assembly/__tests__/sparse.spec.ts
// keeps that form as a reference and checks it bit for bit, with blocks crossed).

import { packTransposed } from "./util/pack";
import { madd, hsum4, hsum1 } from "./util/simd";

/** CSR rows whose gy vectors are packed together (a gyT block of ROW_BLOCK * Bp floats: 4 KiB at B = 64;
 * the block size does not change the speed measurably: 16, 64 and whole were within noise of each other). */
const ROW_BLOCK: i32 = 16;

export function f32_sddmm_csr_scratch(B: i32, K: i32, N: i32): i32 {
  return B <= 1 ? 0 : (K + min(N, ROW_BLOCK)) * ((B + 3) & ~3);
}

export function f32_sddmm_csr_scalar(gy: usize, x: usize, rowPtr: usize, idx: usize, rowLen: i32, g: usize, scale: f32, B: i32, K: i32, N: i32, acc: i32, scratch: usize): void {
  for (let n = 0; n < N; n++) {
    const j0 = load<i32>(rowPtr + (<usize>n << 2));
    const j1 = load<i32>(rowPtr + (<usize>(n + 1) << 2));
    const base = n * rowLen;
    for (let j = j0; j < j1; j++) {
      const c = load<i32>(idx + (<usize>j << 2)) - base;
      let s: f32 = 0;
      for (let b = 0; b < B; b++) {
        s += load<f32>(gy + ((<usize>b * <usize>N + <usize>n) << 2)) * load<f32>(x + ((<usize>b * <usize>K + <usize>c) << 2));
      }
      const gp = g + (<usize>j << 2);
      store<f32>(gp, acc ? load<f32>(gp) + scale * s : scale * s);
    }
  }
}

/** B == 1: g[j] = (acc ? g : 0) + scale * (0 + gy[n] * x[col[j]]), col[j] = idx[j] - n * rowLen. */
function sddmvRows(gy: usize, x: usize, rowPtr: usize, idx: usize, rowLen: i32, g: usize, scale: f32, N: i32, acc: i32): void {
  for (let n = 0; n < N; n++) {
    const j0 = load<i32>(rowPtr + (<usize>n << 2)), j1 = load<i32>(rowPtr + (<usize>n << 2), 4);
    const gv = load<f32>(gy + (<usize>n << 2));
    const xn = x - (<usize>n * <usize>rowLen << 2); // wrapping; xn + idx[j] * 4 = x + col[j] * 4
    for (let j = j0; j < j1; j++) {
      let s: f32 = 0;
      s += gv * load<f32>(xn + (<usize>load<i32>(idx + (<usize>j << 2)) << 2));
      const gp = g + (<usize>j << 2);
      store<f32>(gp, acc ? load<f32>(gp) + scale * s : scale * s);
    }
  }
}

export function f32_sddmm_csr(gy: usize, x: usize, rowPtr: usize, idx: usize, rowLen: i32, g: usize, scale: f32, B: i32, K: i32, N: i32, acc: i32, scratch: usize): void {
  if (N <= 0) return;
  if (B <= 1) {
    if (B == 1) sddmvRows(gy, x, rowPtr, idx, rowLen, g, scale, N, acc);
    else f32_sddmm_csr_scalar(gy, x, rowPtr, idx, rowLen, g, scale, B, K, N, acc, scratch);
    return;
  }
  const Bp = (B + 3) & ~3;
  const rb = min(N, ROW_BLOCK);
  const xT = scratch, gyT = scratch + (<usize>K * <usize>Bp << 2);
  packTransposed(x, <usize>K << 2, B, K, xT, Bp);
  const rs = <usize>Bp << 2; // bytes per transposed row
  const sv = f32x4.splat(scale);
  for (let n = 0; n < N; n++) {
    const nb = n % rb;
    // the gy vectors of rows n .. n + rb - 1: gyT[nb] = gy[:, n]
    if (nb == 0) packTransposed(gy + (<usize>n << 2), <usize>N << 2, B, min(rb, N - n), gyT, Bp);
    let j = load<i32>(rowPtr + (<usize>n << 2));
    const j1 = load<i32>(rowPtr + (<usize>n << 2), 4);
    const gr = gyT + <usize>nb * rs;
    const ge = gr + rs;
    const xn = xT - <usize>n * <usize>rowLen * rs; // wrapping; xn + idx[j] * rs = xT + col[j] * rs
    for (; j + 4 <= j1; j += 4) {
      const cp = idx + (<usize>j << 2);
      let p0 = xn + <usize>load<i32>(cp) * rs, p1 = xn + <usize>load<i32>(cp, 4) * rs;
      let p2 = xn + <usize>load<i32>(cp, 8) * rs, p3 = xn + <usize>load<i32>(cp, 12) * rs;
      let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
      for (let q = gr; q < ge; q += 16) {
        const v = v128.load(q);
        a0 = madd(v, v128.load(p0), a0);
        a1 = madd(v, v128.load(p1), a1);
        a2 = madd(v, v128.load(p2), a2);
        a3 = madd(v, v128.load(p3), a3);
        p0 += 16;
        p1 += 16;
        p2 += 16;
        p3 += 16;
      }
      const gp = g + (<usize>j << 2);
      let r = f32x4.mul(sv, hsum4(a0, a1, a2, a3));
      if (acc) r = f32x4.add(v128.load(gp), r);
      v128.store(gp, r);
    }
    for (; j < j1; j++) {
      let p = xn + <usize>load<i32>(idx + (<usize>j << 2)) * rs;
      let a = f32x4.splat(0);
      for (let q = gr; q < ge; q += 16) {
        a = madd(v128.load(q), v128.load(p), a);
        p += 16;
      }
      const gp = g + (<usize>j << 2);
      const r = scale * hsum1(a);
      store<f32>(gp, acc ? load<f32>(gp) + r : r);
    }
  }
}
