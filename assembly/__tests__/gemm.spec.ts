// gemm family: SIMD kernels against their scalar twins over edge shapes (not multiples of the vector width or
// of the tiles), accumulate on/off, bias on/off.
//   gemm_nn, gemm_tn, bias_grad: exact (same summation order as the twins).
//   gemm_nt: exact on the panels path (B >= 4) when K <= KC (1024); otherwise (dot path B <= 3, or K blocked)
//   within the reordered-sum bound |simd - scalar| <= 2 (K + 2) 2^-24 * (same product on |x|, |W|, |bias|, |y|).
import { f32_gemm_nt, f32_gemm_nt_scalar, f32_gemm_nn, f32_gemm_nn_scalar, f32_gemm_tn, f32_gemm_tn_scalar, f32_bias_grad, f32_bias_grad_scalar } from "../gemm";
import { allocRandom, allocCopy, allocAbs, bitDiffs, boundDiffs, U32 } from "./helpers";

const SIZES: i32[] = [1, 3, 4, 5, 17, 64, 65];
const BATCHES: i32[] = [1, 2, 3, 4, 5, 8, 9];

/** Runs gemm_nt and its twin; returns [bit differences, out-of-bound differences]. */
function checkNt(B: i32, K: i32, N: i32, acc: i32, withBias: bool, seed: u32): StaticArray<i32> {
  const x = allocRandom(B * K, seed), w = allocRandom(N * K, seed + 1), bias = withBias ? allocRandom(N, seed + 2) : 0;
  const y0 = allocRandom(B * N, seed + 3);
  const y1 = allocCopy(y0, B * N), y2 = allocCopy(y0, B * N);
  f32_gemm_nt(x, w, bias, y1, B, K, N, acc);
  f32_gemm_nt_scalar(x, w, bias, y2, B, K, N, acc);
  // bound: the same product on absolute values
  const ax = allocAbs(x, B * K), aw = allocAbs(w, N * K), ab = withBias ? allocAbs(bias, N) : 0, ay = allocAbs(y0, B * N);
  f32_gemm_nt_scalar(ax, aw, ab, ay, B, K, N, acc);
  const r = new StaticArray<i32>(2);
  r[0] = bitDiffs(y1, y2, B * N);
  r[1] = boundDiffs(y1, y2, ay, B * N, 2.0 * <f64>(K + 2) * U32);
  heap.free(x);
  heap.free(w);
  if (bias) heap.free(bias);
  heap.free(y0);
  heap.free(y1);
  heap.free(y2);
  heap.free(ax);
  heap.free(aw);
  if (ab) heap.free(ab);
  heap.free(ay);
  return r;
}

describe("f32_gemm_nt", () => {
  it("matches the scalar twin on every edge shape (exact on the panels path, bounded on the dot path)", () => {
    let seed: u32 = 1;
    for (let ib = 0; ib < BATCHES.length; ib++) {
      for (let ik = 0; ik < SIZES.length; ik++) {
        for (let iN = 0; iN < SIZES.length; iN++) {
          const B = BATCHES[ib], K = SIZES[ik], N = SIZES[iN];
          const acc = <i32>(seed & 1), withBias = (seed & 2) != 0;
          const r = checkNt(B, K, N, acc, withBias, seed);
          if (B >= 4) expect<i32>(r[0]).toBe(0, "bit-exact on the panels path");
          expect<i32>(r[1]).toBe(0, "within the reordered-sum bound");
          seed += 7;
        }
      }
    }
  });

  it("covers accumulate x bias on every path", () => {
    for (let acc = 0; acc < 2; acc++) {
      for (let b = 0; b < 2; b++) {
        const r1 = checkNt(1, 37, 9, acc, b == 1, 100 + acc * 2 + b);
        expect<i32>(r1[1]).toBe(0);
        const r3 = checkNt(3, 37, 9, acc, b == 1, 200 + acc * 2 + b);
        expect<i32>(r3[1]).toBe(0);
        const r6 = checkNt(6, 37, 9, acc, b == 1, 300 + acc * 2 + b);
        expect<i32>(r6[0]).toBe(0);
      }
    }
  });

  it("blocks over K (K > KC = 1024 on the panels path, K > KC_DOT = 2048 on the dot path) within the bound", () => {
    let r = checkNt(5, 1100, 7, 0, true, 11);
    expect<i32>(r[1]).toBe(0);
    r = checkNt(9, 2051, 6, 1, false, 12);
    expect<i32>(r[1]).toBe(0);
    r = checkNt(2, 2100, 5, 1, true, 13);
    expect<i32>(r[1]).toBe(0);
    r = checkNt(1, 4099, 5, 0, true, 14);
    expect<i32>(r[1]).toBe(0);
  });

  it("chunks the batch (B > BC = 128) bit-exactly", () => {
    const r = checkNt(133, 20, 6, 1, true, 21);
    expect<i32>(r[0]).toBe(0);
  });

  it("K = 0 gives y = (acc ? y : 0) + bias", () => {
    const r = checkNt(5, 0, 3, 1, true, 31);
    expect<i32>(r[0]).toBe(0);
    const r2 = checkNt(2, 0, 3, 0, true, 32);
    expect<i32>(r2[0]).toBe(0);
  });

  it("computes a known product", () => {
    // x = [[1, 2, 3]], W = [[1, 0, 0], [0, 1, 0], [1, 1, 1], [2, 2, 2], [0, 0, -1]], bias = 0.5
    const x = heap.alloc(12), w = heap.alloc(60), bias = heap.alloc(20), y = heap.alloc(20);
    store<f32>(x, 1);
    store<f32>(x, 2, 4);
    store<f32>(x, 3, 8);
    const wv: f32[] = [1, 0, 0, 0, 1, 0, 1, 1, 1, 2, 2, 2, 0, 0, -1];
    for (let i = 0; i < 15; i++) store<f32>(w + (<usize>i << 2), wv[i]);
    for (let i = 0; i < 5; i++) store<f32>(bias + (<usize>i << 2), 0.5);
    f32_gemm_nt(x, w, bias, y, 1, 3, 5, 0);
    const want: f32[] = [1.5, 2.5, 6.5, 12.5, -2.5];
    for (let i = 0; i < 5; i++) expect<f32>(load<f32>(y + (<usize>i << 2))).toBe(want[i]);
    heap.free(x);
    heap.free(w);
    heap.free(bias);
    heap.free(y);
  });
});

describe("f32_gemm_nn / f32_gemm_tn / f32_bias_grad", () => {
  it("are bit-identical to their scalar twins on every edge shape, accumulate on/off", () => {
    let seed: u32 = 1000;
    const bs: i32[] = [1, 2, 3, 4, 5, 9, 64, 300]; // 300: gemm_tn in blocks of 128 rows
    for (let ib = 0; ib < bs.length; ib++) {
      for (let iN = 0; iN < SIZES.length; iN++) {
        for (let ik = 0; ik < SIZES.length; ik++) {
          const B = bs[ib], N = SIZES[iN], K = SIZES[ik];
          const acc = <i32>(seed & 1);
          // nn: a[B,N] W[N,K] -> y[B,K]
          const a = allocRandom(B * N, seed), w = allocRandom(N * K, seed + 1), y0 = allocRandom(B * K, seed + 2);
          const y1 = allocCopy(y0, B * K), y2 = allocCopy(y0, B * K);
          f32_gemm_nn(a, w, y1, B, N, K, acc);
          f32_gemm_nn_scalar(a, w, y2, B, N, K, acc);
          expect<i32>(bitDiffs(y1, y2, B * K)).toBe(0, "gemm_nn");
          // tn: gy[B,N]^T x[B,K] -> g[N,K]  (a as gy, y0 as x)
          const g0 = allocRandom(N * K, seed + 3), g1 = allocCopy(g0, N * K), g2 = allocCopy(g0, N * K);
          f32_gemm_tn(a, y0, g1, B, N, K, acc);
          f32_gemm_tn_scalar(a, y0, g2, B, N, K, acc);
          expect<i32>(bitDiffs(g1, g2, N * K)).toBe(0, "gemm_tn");
          // bias_grad: gy[B,N] -> gb[N]
          const b0 = allocRandom(N, seed + 4), b1 = allocCopy(b0, N), b2 = allocCopy(b0, N);
          f32_bias_grad(a, b1, B, N, acc);
          f32_bias_grad_scalar(a, b2, B, N, acc);
          expect<i32>(bitDiffs(b1, b2, N)).toBe(0, "bias_grad");
          heap.free(a);
          heap.free(w);
          heap.free(y0);
          heap.free(y1);
          heap.free(y2);
          heap.free(g0);
          heap.free(g1);
          heap.free(g2);
          heap.free(b0);
          heap.free(b1);
          heap.free(b2);
          seed += 5;
        }
      }
    }
  });
});
