// Sparse kernels: spmm (unfused delta forward) and sddmm (sparse-value gradient) against their scalar twins,
// batch sizes around the lane/chunk widths (1..33), empty rows and empty nnz, random duplicate-free positions.
//   spmm: exact (per output the twin's CSR order; SIMD only runs independent rows / batch rows side by side).
//   sddmm: exact for B = 1; for B >= 2 the batch sum runs in 4 lanes, so within the reordered-sum bound
//   |simd - scalar| <= 2 (B + 2) 2^-24 * (the same computation on |gy|, |x|, |g|).
import { f32_spmm_csr, f32_spmm_csr_scalar, f32_spmm_csr_scratch } from "../spmm";
import { f32_sddmm_csr, f32_sddmm_csr_scalar, f32_sddmm_csr_scratch } from "../sddmm";
import { allocRandom, allocCopy, allocAbs, allocZero, bitDiffs, boundDiffs, Positions, U32 } from "./helpers";
import { packTransposed } from "../util/pack";
import { madd, hsum4, hsum1 } from "../util/simd";

/**
 * f32_sddmm_csr for B >= 2 as it was before gy was packed by blocks of rows (kept here as the reference the
 * blocked kernel must equal bit for bit): gyT[N, Bp] and xT[K, Bp] packed whole into `scratch` ((N + K) * Bp floats).
 */
function sddmmWhole(gy: usize, x: usize, rowPtr: usize, idx: usize, rowLen: i32, g: usize, scale: f32, B: i32, K: i32, N: i32, acc: i32, scratch: usize): void {
  const Bp = (B + 3) & ~3;
  const gyT = scratch, xT = scratch + (<usize>N * <usize>Bp << 2);
  packTransposed(gy, <usize>N << 2, B, N, gyT, Bp);
  packTransposed(x, <usize>K << 2, B, K, xT, Bp);
  const rs = <usize>Bp << 2;
  const sv = f32x4.splat(scale);
  for (let n = 0; n < N; n++) {
    let j = load<i32>(rowPtr + (<usize>n << 2));
    const j1 = load<i32>(rowPtr + (<usize>n << 2), 4);
    const gr = gyT + <usize>n * rs;
    const ge = gr + rs;
    const xn = xT - <usize>n * <usize>rowLen * rs;
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

const BATCHES: i32[] = [1, 2, 3, 4, 5, 8, 9, 16, 17, 33];
const SHAPES: i32[] = [1, 1, 3, 5, 17, 65, 64, 33, 5, 300]; // (N, K) pairs
const DENSITIES: f64[] = [0, 0.05, 0.5];

describe("f32_spmm_csr", () => {
  it("is bit-identical to the scalar twin", () => {
    let seed: u32 = 1;
    for (let ib = 0; ib < BATCHES.length; ib++) {
      for (let is = 0; is < SHAPES.length; is += 2) {
        for (let id = 0; id < DENSITIES.length; id++) {
          const B = BATCHES[ib], N = SHAPES[is], K = SHAPES[is + 1];
          const pos = new Positions(N, K, <i32>(<f64>(N * K) * DENSITIES[id]), seed);
          const nnz = pos.nnz;
          const x = allocRandom(B * K, seed + 1), val = allocRandom(nnz, seed + 2), y0 = allocRandom(B * N, seed + 3);
          const y1 = allocCopy(y0, B * N), y2 = allocCopy(y0, B * N);
          const scratch = allocZero(f32_spmm_csr_scratch(B, K, N));
          f32_spmm_csr(x, pos.rowPtr, pos.flat, K, val, 0.75, y1, B, K, N, scratch);
          f32_spmm_csr_scalar(x, pos.rowPtr, pos.flat, K, val, 0.75, y2, B, K, N, 0);
          expect<i32>(bitDiffs(y1, y2, B * N)).toBe(0);
          heap.free(x);
          heap.free(val);
          heap.free(y0);
          heap.free(y1);
          heap.free(y2);
          heap.free(scratch);
          pos.free();
          seed += 11;
        }
      }
    }
  });

  it("needs no scratch at B = 1 and K * roundup(B, 4) floats otherwise", () => {
    expect<i32>(f32_spmm_csr_scratch(1, 100, 7)).toBe(0);
    expect<i32>(f32_spmm_csr_scratch(5, 100, 7)).toBe(800);
    expect<i32>(f32_spmm_csr_scratch(8, 100, 7)).toBe(800);
  });

  it("adds scale * S x to y (a known case)", () => {
    // S = [[0, 2, 0], [0, 0, 0], [1, 0, -1]], x = [[1, 2, 3], [4, 5, 6]], scale 0.5; flat positions r * 3 + c
    const rowPtr = heap.alloc(16), idx = heap.alloc(12), val = heap.alloc(12), x = heap.alloc(24), y = allocZero(6);
    store<i32>(rowPtr, 0);
    store<i32>(rowPtr, 1, 4);
    store<i32>(rowPtr, 1, 8);
    store<i32>(rowPtr, 3, 12);
    store<i32>(idx, 1);
    store<i32>(idx, 6, 4);
    store<i32>(idx, 8, 8);
    store<f32>(val, 2);
    store<f32>(val, 1, 4);
    store<f32>(val, -1, 8);
    for (let i = 0; i < 6; i++) store<f32>(x + (<usize>i << 2), <f32>(i + 1));
    const scratch = allocZero(f32_spmm_csr_scratch(2, 3, 3));
    f32_spmm_csr(x, rowPtr, idx, 3, val, 0.5, y, 2, 3, 3, scratch);
    const want: f32[] = [2, 0, -1, 5, 0, -1];
    for (let i = 0; i < 6; i++) expect<f32>(load<f32>(y + (<usize>i << 2))).toBe(want[i]);
    heap.free(rowPtr);
    heap.free(idx);
    heap.free(val);
    heap.free(x);
    heap.free(y);
    heap.free(scratch);
  });
});

describe("f32_sddmm_csr", () => {
  it("matches the scalar twin (exact at B = 1, within the reordered-sum bound otherwise), accumulate on/off", () => {
    let seed: u32 = 500;
    for (let ib = 0; ib < BATCHES.length; ib++) {
      for (let is = 0; is < SHAPES.length; is += 2) {
        for (let id = 0; id < DENSITIES.length; id++) {
          const B = BATCHES[ib], N = SHAPES[is], K = SHAPES[is + 1];
          const acc = <i32>(seed & 1);
          const pos = new Positions(N, K, <i32>(<f64>(N * K) * DENSITIES[id]), seed);
          const nnz = pos.nnz;
          const gy = allocRandom(B * N, seed + 1), x = allocRandom(B * K, seed + 2), g0 = allocRandom(nnz, seed + 3);
          const g1 = allocCopy(g0, nnz), g2 = allocCopy(g0, nnz);
          const scratch = allocZero(f32_sddmm_csr_scratch(B, K, N));
          f32_sddmm_csr(gy, x, pos.rowPtr, pos.flat, K, g1, 1.25, B, K, N, acc, scratch);
          f32_sddmm_csr_scalar(gy, x, pos.rowPtr, pos.flat, K, g2, 1.25, B, K, N, acc, 0);
          if (B == 1) expect<i32>(bitDiffs(g1, g2, nnz)).toBe(0, "B = 1 exact");
          const agy = allocAbs(gy, B * N), ax = allocAbs(x, B * K), ag = allocAbs(g0, nnz);
          f32_sddmm_csr_scalar(agy, ax, pos.rowPtr, pos.flat, K, ag, 1.25, B, K, N, acc, 0);
          expect<i32>(boundDiffs(g1, g2, ag, nnz, 2.0 * <f64>(B + 2) * U32)).toBe(0, "bound");
          heap.free(gy);
          heap.free(x);
          heap.free(g0);
          heap.free(g1);
          heap.free(g2);
          heap.free(agy);
          heap.free(ax);
          heap.free(ag);
          heap.free(scratch);
          pos.free();
          seed += 13;
        }
      }
    }
  });

  it("is bit-identical to the kernel that packed gyT whole, across row blocks of 16 (N = 15..200)", () => {
    // the blocked kernel must give every position the same dot product as before: compare with that kernel's code
    // (sddmmWhole below), with N around and across the 16-row blocks, batches around the lane width, dense and sparse rows
    const NS: i32[] = [15, 16, 17, 63, 65, 200];
    const BS: i32[] = [2, 3, 5, 8, 17, 64];
    const KS: i32[] = [1, 7, 100];
    let seed: u32 = 7000;
    let cases = 0;
    for (let in_ = 0; in_ < NS.length; in_++) {
      for (let ib = 0; ib < BS.length; ib++) {
        for (let ik = 0; ik < KS.length; ik++) {
          const B = BS[ib], N = NS[in_], K = KS[ik];
          const acc = <i32>(seed & 1);
          const pos = new Positions(N, K, max(1, (N * K) / 3), seed);
          const nnz = pos.nnz;
          const gy = allocRandom(B * N, seed + 1), x = allocRandom(B * K, seed + 2), g0 = allocRandom(nnz, seed + 3);
          const g1 = allocCopy(g0, nnz), g2 = allocCopy(g0, nnz);
          const scratch = allocZero(f32_sddmm_csr_scratch(B, K, N));
          const whole = allocZero((N + K) * ((B + 3) & ~3));
          f32_sddmm_csr(gy, x, pos.rowPtr, pos.flat, K, g1, 1.25, B, K, N, acc, scratch);
          sddmmWhole(gy, x, pos.rowPtr, pos.flat, K, g2, 1.25, B, K, N, acc, whole);
          expect<i32>(bitDiffs(g1, g2, nnz)).toBe(0);
          heap.free(gy);
          heap.free(x);
          heap.free(g0);
          heap.free(g1);
          heap.free(g2);
          heap.free(scratch);
          heap.free(whole);
          pos.free();
          seed += 17;
          cases++;
        }
      }
    }
    expect<i32>(cases).toBe(108);
  });

  it("needs no scratch at B = 1 and (K + min(N, 16)) * roundup(B, 4) floats otherwise", () => {
    expect<i32>(f32_sddmm_csr_scratch(1, 100, 7)).toBe(0);
    expect<i32>(f32_sddmm_csr_scratch(5, 100, 7)).toBe(107 * 8);
    expect<i32>(f32_sddmm_csr_scratch(64, 1024, 1024)).toBe((1024 + 16) * 64);
    expect<i32>(f32_sddmm_csr_scratch(64, 784, 10)).toBe((784 + 10) * 64);
    expect<i32>(f32_sddmm_csr_scratch(3, 1, 300)).toBe((1 + 16) * 4);
  });

  it("computes g[j] = scale * sum_b gy[b, row_j] x[b, col_j] (a known case)", () => {
    // positions (0, 1) and (1, 0) of a [2, 2] weight (flat 1, 2); gy = [[1, 2], [3, 4]], x = [[5, 6], [7, 8]]
    const rowPtr = heap.alloc(12), idx = heap.alloc(8), gy = heap.alloc(16), x = heap.alloc(16), g = allocZero(2);
    store<i32>(rowPtr, 0);
    store<i32>(rowPtr, 1, 4);
    store<i32>(rowPtr, 2, 8);
    store<i32>(idx, 1);
    store<i32>(idx, 2, 4);
    const gv: f32[] = [1, 2, 3, 4], xv: f32[] = [5, 6, 7, 8];
    for (let i = 0; i < 4; i++) {
      store<f32>(gy + (<usize>i << 2), gv[i]);
      store<f32>(x + (<usize>i << 2), xv[i]);
    }
    const scratch = allocZero(f32_sddmm_csr_scratch(2, 2, 2));
    f32_sddmm_csr(gy, x, rowPtr, idx, 2, g, 2, 2, 2, 2, 0, scratch);
    // g0 = 2 (gy[0,0] x[0,1] + gy[1,0] x[1,1]) = 2 (6 + 24) = 60;  g1 = 2 (gy[0,1] x[0,0] + gy[1,1] x[1,0]) = 2 (10 + 28) = 76
    expect<f32>(load<f32>(g)).toBe(60);
    expect<f32>(load<f32>(g, 4)).toBe(76);
    heap.free(rowPtr);
    heap.free(idx);
    heap.free(gy);
    heap.free(x);
    heap.free(g);
    heap.free(scratch);
  });
});

// ---------------------------------------------------------------- f32_spmm_csr_t (transposed: CSR by input row)
import { f32_spmm_csr_t, f32_spmm_csr_t_scalar } from "../spmm";

describe("f32_spmm_csr_t", () => {
  it("is bit-identical to the scalar twin and matches a dense x . S (f64)", () => {
    let seed: u32 = 900;
    for (let ib = 0; ib < BATCHES.length; ib++) {
      for (let is = 0; is < SHAPES.length; is += 2) {
        for (let id = 0; id < DENSITIES.length; id++) {
          const B = BATCHES[ib], N = SHAPES[is], K = SHAPES[is + 1];
          const pos = new Positions(K, N, <i32>(<f64>(N * K) * DENSITIES[id]), seed); // CSR over the K input rows
          const nnz = pos.nnz;
          const x = allocRandom(B * K, seed + 1), val = allocRandom(nnz, seed + 2), y0 = allocRandom(B * N, seed + 3);
          const y1 = allocCopy(y0, B * N), y2 = allocCopy(y0, B * N);
          f32_spmm_csr_t(x, pos.rowPtr, pos.flat, N, val, 0.75, y1, B, K, N);
          f32_spmm_csr_t_scalar(x, pos.rowPtr, pos.flat, N, val, 0.75, y2, B, K, N);
          expect<i32>(bitDiffs(y1, y2, B * N)).toBe(0);
          // dense reference in f64: y0 + 0.75 * sum_k x[b, k] S[k, n]
          let bad = 0;
          for (let b = 0; b < B; b++) {
            for (let n = 0; n < N; n++) {
              let s: f64 = 0, sa: f64 = 0;
              for (let k = 0; k < K; k++) {
                for (let j = load<i32>(pos.rowPtr + (<usize>k << 2)); j < load<i32>(pos.rowPtr + (<usize>(k + 1) << 2)); j++) {
                  if (load<i32>(pos.col + (<usize>j << 2)) != n) continue;
                  const t = <f64>load<f32>(val + (<usize>j << 2)) * <f64>load<f32>(x + (<usize>(b * K + k) << 2));
                  s += t;
                  sa += abs(t);
                }
              }
              const want = <f64>load<f32>(y0 + (<usize>(b * N + n) << 2)) + 0.75 * s;
              const got = <f64>load<f32>(y1 + (<usize>(b * N + n) << 2));
              if (!(abs(got - want) <= 4.0 * <f64>(K + 2) * U32 * (sa + abs(want)) + 1e-30)) bad++;
            }
          }
          expect<i32>(bad).toBe(0, "dense reference");
          heap.free(x);
          heap.free(val);
          heap.free(y0);
          heap.free(y1);
          heap.free(y2);
          pos.free();
          seed += 7;
        }
      }
    }
  });

  it("computes y[b, col_j] += scale * val_j * x[b, k] (a known case)", () => {
    // S over K = 2 input rows, N = 3 outputs: (k 0, n 2) = 1, (k 1, n 0) = 2, (k 1, n 2) = 3 (flat k * 3 + n)
    const rowPtr = heap.alloc(12), idx = heap.alloc(12), val = heap.alloc(12), x = heap.alloc(16), y = allocZero(6);
    store<i32>(rowPtr, 0);
    store<i32>(rowPtr, 1, 4);
    store<i32>(rowPtr, 3, 8);
    store<i32>(idx, 2);
    store<i32>(idx, 3, 4);
    store<i32>(idx, 5, 8);
    store<f32>(val, 1);
    store<f32>(val, 2, 4);
    store<f32>(val, 3, 8);
    const xv: f32[] = [5, 6, 7, 8]; // x = [[5, 6], [7, 8]]
    for (let i = 0; i < 4; i++) store<f32>(x + (<usize>i << 2), xv[i]);
    f32_spmm_csr_t(x, rowPtr, idx, 3, val, 2, y, 2, 2, 3);
    // row 0: y = 2 * [2*6, 0, 1*5 + 3*6] = [24, 0, 46];  row 1: 2 * [2*8, 0, 7 + 24] = [32, 0, 62]
    expect<f32>(load<f32>(y)).toBe(24);
    expect<f32>(load<f32>(y, 4)).toBe(0);
    expect<f32>(load<f32>(y, 8)).toBe(46);
    expect<f32>(load<f32>(y, 12)).toBe(32);
    expect<f32>(load<f32>(y, 16)).toBe(0);
    expect<f32>(load<f32>(y, 20)).toBe(62);
    heap.free(rowPtr);
    heap.free(idx);
    heap.free(val);
    heap.free(x);
    heap.free(y);
  });
});
