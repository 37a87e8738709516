// Every kernel through the runtime (createRuntime, rt.allocF32/allocI32, .ptr, views re-read after allocation)
// against float64 references written here, with normalized error bounds:
//
//   sums (gemm, spmm, sddmm, lowrank):  |ours - ref| <= (n + 2) 2^-24 * (the same sum over |terms|) + 2^-24 |ref|
//       (n = length of the reduction: the standard bound for an f32 sum in any order, with or without fused madds)
//   elementwise (activations, softmax): within 2 f32 ulps of the float64 reference rounded to f32
//   f32-defined kernels (scatter/gather, axpy, scale, add, optimizers): bit-exact against Math.fround emulation
//
// The plain-SIMD build always runs; the relaxed-SIMD build (fused multiply-adds) runs too when this Node
// validates it, otherwise in a child `node --experimental-wasm-relaxed-simd` (skipped if that Node lacks it).
import { rand, rng } from "./helpers/random.js";
import { forEachVariant } from "./helpers/variants.js";
import { U, assertBits, assertUlps } from "./helpers/kernels.js";
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createRuntime, type Runtime, type WasmVariant } from "../src/runtime/runtime.js";

const fr = Math.fround;

// ------------------------------------------------------------------------------------------------ data

/** Duplicate-free random positions of [N, K], sorted: flat indices and CSR. */
function positions(N: number, K: number, nnz: number, seed: number): { flat: Int32Array; rowPtr: Int32Array; col: Int32Array } {
  const r = rng(seed);
  const set = new Set<number>();
  nnz = Math.min(nnz, N * K);
  while (set.size < nnz) set.add(Math.floor(r() * N * K));
  const flat = Int32Array.from([...set].sort((a, b) => a - b));
  const rowPtr = new Int32Array(N + 1);
  const col = new Int32Array(nnz);
  flat.forEach((p, j) => {
    const row = Math.floor(p / K);
    col[j] = p - row * K;
    rowPtr[row + 1]++;
  });
  for (let i = 0; i < N; i++) rowPtr[i + 1] += rowPtr[i];
  return { flat, rowPtr, col };
}

// ------------------------------------------------------------------------------------------------ checks

/** Asserts |got - ref| <= (n + 2) U bound + U |ref| elementwise (ref, bound in float64). */
function assertSum(name: string, got: ArrayLike<number>, ref: ArrayLike<number>, bound: ArrayLike<number>, n: number, slack = 1): void {
  assert.equal(got.length, ref.length, `${name}: length`);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < ref.length; i++) {
    const tol = slack * ((n + 2) * U * bound[i] + U * Math.abs(ref[i])) + 1e-37;
    const e = Math.abs(got[i] - ref[i]) / tol;
    if (!(e <= worst)) {
      worst = e;
      at = i;
    }
  }
  assert.ok(worst <= 1, `${name}: error ${worst.toFixed(3)} x the bound at ${at} (got ${got[at]}, want ${ref[at]})`);
}

// ------------------------------------------------------------------------------------------------ references

/** y = (acc ? y : 0) + x W^T + bias in float64, and the same over absolute values (the error bound). */
function refGemmNt(x: Float32Array, w: Float32Array, bias: Float32Array | null, y0: Float32Array, B: number, K: number, N: number, acc: boolean) {
  const ref = new Float64Array(B * N);
  const bound = new Float64Array(B * N);
  for (let b = 0; b < B; b++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      let a = 0;
      for (let k = 0; k < K; k++) {
        const t = x[b * K + k] * w[n * K + k];
        s += t;
        a += Math.abs(t);
      }
      if (bias) {
        s += bias[n];
        a += Math.abs(bias[n]);
      }
      if (acc) {
        s += y0[b * N + n];
        a += Math.abs(y0[b * N + n]);
      }
      ref[b * N + n] = s;
      bound[b * N + n] = a;
    }
  }
  return { ref, bound };
}

/** erf / erfc in float64, independent of the kernels: Taylor series for |z| < 3, Lentz continued fraction beyond. */
function erfc64(z: number): number {
  if (Number.isNaN(z)) return NaN;
  if (z < 0) return 2 - erfc64(-z);
  if (z < 3) {
    let term = z;
    let sum = z;
    for (let n = 1; n < 200; n++) {
      term *= (-z * z) / n;
      const t = term / (2 * n + 1);
      sum += t;
      if (Math.abs(t) < 1e-17 * Math.abs(sum)) break;
    }
    return 1 - (2 / Math.sqrt(Math.PI)) * sum;
  }
  if (!Number.isFinite(z)) return 0;
  // erfc(z) = exp(-z^2)/sqrt(pi) * 1 / (z + (1/2) / (z + 1 / (z + (3/2) / (z + 2 / (z + ...)))))
  const tiny = 1e-300;
  let f = z;
  let C = z;
  let D = 0;
  for (let n = 1; n < 5000; n++) {
    const a = n / 2;
    D = z + a * D;
    D = D === 0 ? tiny : 1 / D;
    C = z + a / C;
    if (C === 0) C = tiny;
    const delta = C * D;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return Math.exp(-z * z) / Math.sqrt(Math.PI) / f;
}
const Phi = (x: number) => 0.5 * erfc64(-x / Math.SQRT2);
const phi = (x: number) => Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI);

// ------------------------------------------------------------------------------------------------ the suite

const SPECIALS = [0, -0, 1e-40, -1e-40, 1e-30, 0.5, -0.5, 1.2, -1.2, 1.77, -1.77, 4.05, -4.05, -8, -12, -13.5, -14, -20, -40, 40, 88, -88, 100, -100, 1e30, -1e30, Infinity, -Infinity, NaN];

function suite(variant: WasmVariant): void {
  const relaxed = variant === "relaxed-simd";
  describe(`kernels (${variant} build)`, () => {
    const rt: Runtime = createRuntime({ variant });

    test("heap: alloc/free through the runtime, 16-byte alignment, memory_bytes", () => {
      const a = rt.allocF32(37);
      const b = rt.allocI32(5);
      assert.equal(a.ptr % 16, 0);
      assert.equal(b.ptr % 16, 0);
      assert.equal(rt.k.memory_bytes(), rt.memoryBytes);
      a.free();
      b.free();
    });

    test("f32_gemm_nt: odd shapes on both paths, bias and accumulate, against float64", () => {
      let seed = 1;
      for (const B of [1, 2, 3, 4, 5, 8, 9, 17, 130]) {
        for (const [K, N] of [[1, 1], [3, 5], [17, 4], [65, 33], [1030, 7], [2050, 5]]) {
          if (B * K * N > 3e6) continue;
          for (const [acc, withBias] of [[false, false], [true, true]] as const) {
            const xa = rand(B * K, seed++), wa = rand(N * K, seed++), ba = withBias ? rand(N, seed++) : null, ya = rand(B * N, seed++);
            const x = rt.allocF32(xa), w = rt.allocF32(wa), bias = ba ? rt.allocF32(ba) : null, y = rt.allocF32(ya);
            rt.k.f32_gemm_nt(x.ptr, w.ptr, bias ? bias.ptr : 0, y.ptr, B, K, N, acc ? 1 : 0);
            const { ref, bound } = refGemmNt(xa, wa, ba, ya, B, K, N, acc);
            assertSum(`gemm_nt B=${B} K=${K} N=${N} acc=${acc}`, y.view, ref, bound, K + 1);
            for (const b of [x, w, y]) b.free();
            bias?.free();
          }
        }
      }
    });

    test("f32_gemm_nt: one 4096 x 4096 layer at B = 3 (the weight size that matters)", () => {
      const [B, K, N] = [3, 4096, 4096];
      const wa = rand(N * K, 77), xa = rand(B * K, 78), ba = rand(N, 79);
      const w = rt.allocF32(wa), x = rt.allocF32(xa), bias = rt.allocF32(ba), y = rt.allocF32(B * N);
      rt.k.f32_gemm_nt(x.ptr, w.ptr, bias.ptr, y.ptr, B, K, N, 0);
      const { ref, bound } = refGemmNt(xa, wa, ba, new Float32Array(0), B, K, N, false);
      assertSum("gemm_nt 3x4096x4096", y.view, ref, bound, K + 1);
      for (const b of [w, x, bias, y]) b.free();
    });

    test("f32_gemm_nn / f32_gemm_tn / f32_bias_grad: odd shapes against float64", () => {
      let seed = 100;
      for (const B of [1, 3, 4, 5, 64]) {
        for (const [N, K] of [[1, 1], [3, 5], [17, 9], [10, 65], [33, 100]]) {
          const acc = seed % 2 === 0;
          const aa = rand(B * N, seed++), wa = rand(N * K, seed++), ya = rand(B * K, seed++), ga = rand(N * K, seed++), gba = rand(N, seed++);
          const a = rt.allocF32(aa), w = rt.allocF32(wa), y = rt.allocF32(ya), g = rt.allocF32(ga), gb = rt.allocF32(gba);
          rt.k.f32_gemm_nn(a.ptr, w.ptr, y.ptr, B, N, K, acc ? 1 : 0);
          rt.k.f32_gemm_tn(a.ptr, y.ptr, g.ptr, B, N, K, acc ? 1 : 0); // uses the new y as x: re-derive its reference below
          rt.k.f32_bias_grad(a.ptr, gb.ptr, B, N, acc ? 1 : 0);
          // references
          const yRef = new Float64Array(B * K), yB = new Float64Array(B * K);
          for (let b = 0; b < B; b++)
            for (let k = 0; k < K; k++) {
              let s = acc ? ya[b * K + k] : 0;
              let t = Math.abs(s);
              for (let n = 0; n < N; n++) {
                s += aa[b * N + n] * wa[n * K + k];
                t += Math.abs(aa[b * N + n] * wa[n * K + k]);
              }
              yRef[b * K + k] = s;
              yB[b * K + k] = t;
            }
          const yv = y.toArray();
          assertSum(`gemm_nn B=${B} N=${N} K=${K}`, yv, yRef, yB, N + 1);
          const gRef = new Float64Array(N * K), gB = new Float64Array(N * K);
          for (let n = 0; n < N; n++)
            for (let k = 0; k < K; k++) {
              let s = acc ? ga[n * K + k] : 0;
              let t = Math.abs(s);
              for (let b = 0; b < B; b++) {
                s += aa[b * N + n] * yv[b * K + k];
                t += Math.abs(aa[b * N + n] * yv[b * K + k]);
              }
              gRef[n * K + k] = s;
              gB[n * K + k] = t;
            }
          assertSum(`gemm_tn B=${B} N=${N} K=${K}`, g.view, gRef, gB, B + 1);
          const bRef = new Float64Array(N), bB = new Float64Array(N);
          for (let n = 0; n < N; n++) {
            let s = acc ? gba[n] : 0;
            let t = Math.abs(s);
            for (let b = 0; b < B; b++) {
              s += aa[b * N + n];
              t += Math.abs(aa[b * N + n]);
            }
            bRef[n] = s;
            bB[n] = t;
          }
          assertSum(`bias_grad B=${B} N=${N}`, gb.view, bRef, bB, B + 1);
          for (const buf of [a, w, y, g, gb]) buf.free();
        }
      }
    });

    test("f32_spmm_csr / f32_sddmm_csr: batches around the lane widths, empty rows and empty nnz", () => {
      let seed = 300;
      for (const B of [1, 2, 3, 5, 8, 9, 16, 17, 33]) {
        for (const [N, K, dens] of [[1, 1, 1], [3, 5, 0], [17, 65, 0.05], [64, 33, 0.3], [5, 300, 0.02]] as const) {
          const pos = positions(N, K, Math.round(N * K * dens), seed++);
          const nnz = pos.flat.length;
          const xa = rand(B * K, seed++), va = rand(nnz, seed++), ya = rand(B * N, seed++), gya = rand(B * N, seed++), ga = rand(nnz, seed++);
          const x = rt.allocF32(xa), rowPtr = rt.allocI32(pos.rowPtr), idx = rt.allocI32(pos.flat), val = rt.allocF32(va), y = rt.allocF32(ya);
          const scratch = rt.allocF32(Math.max(1, rt.k.f32_spmm_csr_scratch(B, K, N), rt.k.f32_sddmm_csr_scratch(B, K, N)));
          const gy = rt.allocF32(gya), g = rt.allocF32(ga);
          const scale = 0.75;
          rt.k.f32_spmm_csr(x.ptr, rowPtr.ptr, idx.ptr, K, val.ptr, scale, y.ptr, B, K, N, scratch.ptr);
          const acc = seed % 2;
          rt.k.f32_sddmm_csr(gy.ptr, x.ptr, rowPtr.ptr, idx.ptr, K, g.ptr, 1.25, B, K, N, acc, scratch.ptr);
          const yRef = new Float64Array(B * N), yB = new Float64Array(B * N);
          let maxRow = 0;
          for (let n = 0; n < N; n++) maxRow = Math.max(maxRow, pos.rowPtr[n + 1] - pos.rowPtr[n]);
          for (let b = 0; b < B; b++)
            for (let n = 0; n < N; n++) {
              let s = 0;
              let t = 0;
              for (let j = pos.rowPtr[n]; j < pos.rowPtr[n + 1]; j++) {
                s += va[j] * xa[b * K + pos.col[j]];
                t += Math.abs(va[j] * xa[b * K + pos.col[j]]);
              }
              yRef[b * N + n] = ya[b * N + n] + scale * s;
              yB[b * N + n] = Math.abs(ya[b * N + n]) + scale * t;
            }
          assertSum(`spmm B=${B} N=${N} K=${K} nnz=${nnz}`, y.view, yRef, yB, maxRow + 1);
          const gRef = new Float64Array(nnz), gB = new Float64Array(nnz);
          for (let n = 0; n < N; n++)
            for (let j = pos.rowPtr[n]; j < pos.rowPtr[n + 1]; j++) {
              let s = 0;
              let t = 0;
              for (let b = 0; b < B; b++) {
                s += gya[b * N + n] * xa[b * K + pos.col[j]];
                t += Math.abs(gya[b * N + n] * xa[b * K + pos.col[j]]);
              }
              gRef[j] = (acc ? ga[j] : 0) + 1.25 * s;
              gB[j] = (acc ? Math.abs(ga[j]) : 0) + 1.25 * t;
            }
          assertSum(`sddmm B=${B} N=${N} K=${K} nnz=${nnz}`, g.view, gRef, gB, B + 1);
          for (const buf of [x, rowPtr, idx, val, y, scratch, gy, g]) buf.free();
        }
      }
    });

    test("scatter / gather: bit-exact f32 semantics (v * scale rounded to f32, then one f32 add)", () => {
      for (const nnz of [0, 1, 7, 8, 9, 65, 1000]) {
        const W = 3001;
        const pos = positions(1, W, nnz, 400 + nnz);
        const wa = rand(W, 401), va = rand(nnz, 402, 3), ba = rand(nnz, 403);
        const w = rt.allocF32(wa), idx = rt.allocI32(pos.flat), v = rt.allocF32(va), base = rt.allocF32(ba), out = rt.allocF32(Math.max(1, nnz));
        const ref = Float32Array.from(wa);
        rt.k.f32_gather(w.ptr, idx.ptr, out.ptr, nnz);
        assertBits("gather", out.view.subarray(0, nnz), Float32Array.from(pos.flat, (p) => ref[p]));
        rt.k.f32_scatter_add(w.ptr, idx.ptr, v.ptr, -1.37, nnz);
        pos.flat.forEach((p, j) => (ref[p] = fr(ref[p] + fr(va[j] * fr(-1.37)))));
        assertBits(`scatter_add nnz=${nnz}`, w.view, ref);
        rt.k.f32_scatter_sub(w.ptr, idx.ptr, v.ptr, 0.3, nnz);
        pos.flat.forEach((p, j) => (ref[p] = fr(ref[p] - fr(va[j] * fr(0.3)))));
        assertBits(`scatter_sub nnz=${nnz}`, w.view, ref);
        rt.k.f32_scatter_set_add(w.ptr, idx.ptr, base.ptr, v.ptr, 2.5, nnz);
        pos.flat.forEach((p, j) => (ref[p] = fr(ba[j] + fr(va[j] * 2.5))));
        assertBits(`scatter_set_add nnz=${nnz}`, w.view, ref);
        rt.k.f32_scatter_set(w.ptr, idx.ptr, base.ptr, nnz);
        pos.flat.forEach((p, j) => (ref[p] = ba[j]));
        assertBits(`scatter_set nnz=${nnz}`, w.view, ref);
        for (const b of [w, idx, v, base, out]) b.free();
      }
    });

    test("f32_lowrank_fuse: W += s B A against float64, ranks 0..64", () => {
      let seed = 500;
      for (const [N, K, r] of [[1, 1, 1], [3, 5, 2], [5, 17, 0], [17, 65, 8], [64, 64, 64], [33, 100, 32]]) {
        const ba = rand(N * r, seed++), aa = rand(r * K, seed++), wa = rand(N * K, seed++);
        const bm = rt.allocF32(Math.max(1, N * r)), a = rt.allocF32(Math.max(1, r * K)), w = rt.allocF32(wa);
        bm.view.set(ba);
        a.view.set(aa);
        rt.k.f32_lowrank_fuse(w.ptr, bm.ptr, a.ptr, 0.7, N, K, r);
        const ref = new Float64Array(N * K), bound = new Float64Array(N * K);
        for (let n = 0; n < N; n++)
          for (let k = 0; k < K; k++) {
            let s = 0;
            let t = 0;
            for (let q = 0; q < r; q++) {
              s += ba[n * r + q] * aa[q * K + k];
              t += Math.abs(ba[n * r + q] * aa[q * K + k]);
            }
            ref[n * K + k] = wa[n * K + k] + 0.7 * s;
            bound[n * K + k] = Math.abs(wa[n * K + k]) + 0.7 * t;
          }
        assertSum(`lowrank N=${N} K=${K} r=${r}`, w.view, ref, bound, r + 1);
        for (const b of [bm, a, w]) b.free();
      }
    });

    test("activations: within 2 ulps of float64 references (GELU through an independent erfc), special values", () => {
      for (const n of [1, 3, 4, 5, 17, 64, 65, 2000]) {
        const xa = rand(n, 600 + n, 8);
        for (let i = 0; i < SPECIALS.length && i < n; i++) xa[(i * 7) % n] = SPECIALS[i];
        if (n === 2000) for (let i = 0; i < 600; i++) xa[i] = -15 + i * 0.025; // the lower tail, where 1 + erf cancels
        const gya = rand(n, 700 + n);
        const x = rt.allocF32(xa), gy = rt.allocF32(gya), y = rt.allocF32(n);
        const run = (name: string, f: (x: number) => number) => {
          (rt.k as unknown as Record<string, (a: number, b: number, c: number) => void>)[`f32_${name}`](x.ptr, y.ptr, n);
          assertUlps(name, y.view, Array.from(xa, f), 2, xa);
        };
        const runB = (name: string, d: (x: number) => number) => {
          (rt.k as unknown as Record<string, (a: number, b: number, c: number, e: number) => void>)[`f32_${name}_backward`](x.ptr, gy.ptr, y.ptr, n);
          assertUlps(`${name}'`, y.view, Array.from(xa, (v, i) => gya[i] * d(v)), 2, xa);
        };
        run("relu", (v) => (v > 0 ? v : 0));
        runB("relu", (v) => (v > 0 ? 1 : 0));
        run("gelu", (v) => (v === -Infinity ? NaN : v * Phi(v)));
        runB("gelu", (v) => (Number.isFinite(v) ? Phi(v) + v * phi(v) : NaN)); // PyTorch: cdf + x * pdf = NaN at +-inf
        run("silu", (v) => v / (1 + Math.exp(-v)));
        runB("silu", (v) => {
          const s = 1 / (1 + Math.exp(-v));
          return s * (1 + v * (1 - s));
        });
        run("tanh", Math.tanh);
        runB("tanh", (v) => {
          const c = Math.cosh(v);
          return 1 / (c * c);
        });
        for (const b of [x, gy, y]) b.free();
      }
    });

    test("softmax / log_softmax rows and their backward: within 2 ulps of float64", () => {
      for (const [rows, cols] of [[1, 1], [2, 3], [3, 4], [5, 5], [4, 17], [7, 64], [2, 65], [3, 1000]]) {
        const xa = rand(rows * cols, 800 + cols, 10), gya = rand(rows * cols, 900 + cols);
        const x = rt.allocF32(xa), gy = rt.allocF32(gya), y = rt.allocF32(rows * cols), g = rt.allocF32(rows * cols);
        const sm = new Float64Array(rows * cols), lsm = new Float64Array(rows * cols);
        for (let r = 0; r < rows; r++) {
          const row = xa.subarray(r * cols, (r + 1) * cols);
          const m = Math.max(...row);
          // x - m is an f32 subtraction in the kernels (as in PyTorch's float softmax); the rest is float64 here
          const s = row.reduce((a, v) => a + Math.exp(fr(v - m)), 0);
          for (let c = 0; c < cols; c++) {
            sm[r * cols + c] = Math.exp(fr(row[c] - m)) / s;
            lsm[r * cols + c] = row[c] - m - Math.log(s);
          }
        }
        rt.k.f32_softmax_rows(x.ptr, y.ptr, rows, cols);
        assertUlps(`softmax ${rows}x${cols}`, y.view, sm, 2);
        const ys = y.toArray();
        rt.k.f32_softmax_backward_rows(y.ptr, gy.ptr, g.ptr, rows, cols);
        const gRef = new Float64Array(rows * cols);
        for (let r = 0; r < rows; r++) {
          let d = 0;
          for (let c = 0; c < cols; c++) d += gya[r * cols + c] * ys[r * cols + c];
          for (let c = 0; c < cols; c++) gRef[r * cols + c] = ys[r * cols + c] * (gya[r * cols + c] - d);
        }
        // gy - d may cancel: bound the error by the sum's terms
        const gB = Float64Array.from(gRef, (_, i) => Math.abs(ys[i]) * (Math.abs(gya[i]) + cols * Math.abs(ys[i])));
        assertSum(`softmax' ${rows}x${cols}`, g.view, gRef, gB, cols + 2);
        rt.k.f32_log_softmax_rows(x.ptr, y.ptr, rows, cols);
        // log-softmax is x - m - log s in f32: within 2 ulps of |x - m| + log s (cancellation near the max)
        const lB = Float64Array.from(lsm, (v, i) => Math.abs(xa[i]) + Math.abs(v) + 1);
        assertSum(`log_softmax ${rows}x${cols}`, y.view, lsm, lB, 2);
        const yl = y.toArray();
        rt.k.f32_log_softmax_backward_rows(y.ptr, gy.ptr, g.ptr, rows, cols);
        const lgRef = new Float64Array(rows * cols), lgB = new Float64Array(rows * cols);
        for (let r = 0; r < rows; r++) {
          let s = 0;
          let t = 0;
          for (let c = 0; c < cols; c++) {
            s += gya[r * cols + c];
            t += Math.abs(gya[r * cols + c]);
          }
          for (let c = 0; c < cols; c++) {
            lgRef[r * cols + c] = gya[r * cols + c] - Math.exp(yl[r * cols + c]) * s;
            lgB[r * cols + c] = Math.abs(gya[r * cols + c]) + Math.exp(yl[r * cols + c]) * t;
          }
        }
        assertSum(`log_softmax' ${rows}x${cols}`, g.view, lgRef, lgB, 4);
        for (const b of [x, gy, y, g]) b.free();
      }
    });

    test("optimizers: SGD (all flags) and AdamW bit-exact against an f32 emulation of PyTorch's update", () => {
      for (const n of [1, 3, 4, 5, 17, 1001]) {
        const pa = rand(n, 1000 + n), ga = rand(n, 1100 + n), ba = rand(n, 1200 + n);
        for (const [mom, damp, wd, nest, first] of [[0, 0, 0, 0, 0], [0.9, 0, 0.01, 0, 1], [0.9, 0.1, 0.01, 0, 0], [0.9, 0, 0, 1, 0]]) {
          const p = rt.allocF32(pa), g = rt.allocF32(ga), buf = rt.allocF32(ba);
          rt.k.f32_sgd(p.ptr, g.ptr, buf.ptr, n, 0.1, mom, damp, wd, nest, first);
          const pr = new Float32Array(n), br = Float32Array.from(ba);
          const [lr, m, dm, w] = [fr(0.1), fr(mom), fr(damp), fr(wd)];
          for (let i = 0; i < n; i++) {
            let d = ga[i];
            if (w !== 0) d = fr(d + fr(w * pa[i]));
            if (m !== 0) {
              const b = first ? d : fr(fr(m * br[i]) + fr(fr(1 - dm) * d));
              br[i] = b;
              d = nest ? fr(d + fr(m * b)) : b;
            }
            pr[i] = fr(pa[i] - fr(lr * d));
          }
          assertBits(`sgd n=${n} momentum=${mom} nesterov=${nest}`, p.view, pr);
          assertBits(`sgd buf n=${n}`, buf.view, br);
          for (const b of [p, g, buf]) b.free();
        }
        const ma = rand(n, 1300 + n), vaa = rand(n, 1400 + n).map(Math.abs);
        const p = rt.allocF32(pa), g = rt.allocF32(ga), m = rt.allocF32(ma), v = rt.allocF32(vaa);
        const [lr, b1, b2, eps, wd, bc1, bc2] = [1e-3, 0.9, 0.999, 1e-8, 0.01, 0.1, 0.002].map(fr);
        rt.k.f32_adamw(p.ptr, g.ptr, m.ptr, v.ptr, n, lr, b1, b2, eps, wd, bc1, bc2);
        const decay = fr(1 - fr(lr * wd));
        const bc2s = fr(Math.sqrt(bc2));
        for (let i = 0; i < n; i++) {
          const mv = fr(fr(b1 * ma[i]) + fr(fr(1 - b1) * ga[i]));
          const vv = fr(fr(b2 * vaa[i]) + fr(fr(fr(1 - b2) * ga[i]) * ga[i]));
          const denom = fr(fr(fr(Math.sqrt(vv)) / bc2s) + eps);
          const want = fr(fr(pa[i] * decay) - fr(fr(fr(lr / bc1) * mv) / denom));
          assert.ok(Object.is(p.view[i], want) && Object.is(m.view[i], mv) && Object.is(v.view[i], vv), `adamw n=${n} [${i}]: ${p.view[i]} vs ${want}`);
        }
        for (const b of [p, g, m, v]) b.free();
      }
    });

    test("vector helpers: fill, copy, axpy, scale, add (bit-exact), sum_sq, find_nonfinite, transpose", () => {
      for (const n of [0, 1, 3, 4, 5, 16, 17, 65, 1001]) {
        const aa = rand(n, 1500 + n), ba = rand(n, 1600 + n);
        const a = rt.allocF32(Math.max(1, n)), b = rt.allocF32(Math.max(1, n)), y = rt.allocF32(Math.max(1, n));
        a.view.set(aa);
        b.view.set(ba);
        rt.k.f32_fill(y.ptr, 2.5, n);
        assertBits("fill", y.view.subarray(0, n), new Float32Array(n).fill(2.5));
        rt.k.f32_copy(a.ptr, y.ptr, n);
        assertBits("copy", y.view.subarray(0, n), aa);
        rt.k.f32_axpy(0.3, b.ptr, y.ptr, n);
        assertBits("axpy", y.view.subarray(0, n), Float32Array.from(aa, (v, i) => fr(v + fr(fr(0.3) * ba[i]))));
        const y1 = y.toArray();
        rt.k.f32_scale(y.ptr, -1.7, n);
        assertBits("scale", y.view.subarray(0, n), Float32Array.from(y1.subarray(0, n), (v) => fr(v * fr(-1.7))));
        rt.k.f32_add(a.ptr, b.ptr, y.ptr, n);
        assertBits("add", y.view.subarray(0, n), Float32Array.from(aa, (v, i) => fr(v + ba[i])));
        const ss = aa.reduce((s, v) => s + v * v, 0);
        assert.ok(Math.abs(rt.k.f32_sum_sq(a.ptr, n) - ss) <= 1e-13 * Math.max(1, ss), "sum_sq");
        assert.equal(rt.k.f32_find_nonfinite(a.ptr, n), -1);
        for (const p of [0, n >> 1, n - 1]) {
          if (n === 0) break;
          a.view[p] = [NaN, Infinity, -Infinity][p % 3];
          assert.equal(rt.k.f32_find_nonfinite(a.ptr, n), p, `find_nonfinite n=${n} at ${p}`);
          a.view[p] = aa[p];
        }
        for (const buf of [a, b, y]) buf.free();
      }
      for (const [r, c] of [[1, 1], [3, 5], [4, 4], [33, 65], [100, 37]]) {
        const sa = rand(r * c, 1700 + r);
        const s = rt.allocF32(sa), d = rt.allocF32(r * c);
        rt.k.f32_transpose(s.ptr, d.ptr, r, c);
        const want = new Float32Array(r * c);
        for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) want[j * r + i] = sa[i * c + j];
        assertBits(`transpose ${r}x${c}`, d.view, want);
        s.free();
        d.free();
      }
    });

    test("memory growth between calls: pointers stay valid, views are re-derived, results unchanged", () => {
      const [B, K, N] = [9, 300, 70];
      const xa = rand(B * K, 1800), wa = rand(N * K, 1801), ba = rand(N, 1802);
      const x = rt.allocF32(xa), w = rt.allocF32(wa), bias = rt.allocF32(ba), y = rt.allocF32(B * N);
      rt.k.f32_gemm_nt(x.ptr, w.ptr, bias.ptr, y.ptr, B, K, N, 0);
      const first = y.toArray();
      const before = rt.memoryBytes;
      const oldView = y.view;
      const big = rt.allocF32((before >> 2) + (1 << 22)); // forces memory.grow
      assert.ok(rt.memoryBytes > before, "memory grew");
      // an ArrayBuffer is detached by growth; a SharedArrayBuffer (threads) never is, its view keeps the old length
      if (rt.shared) assert.notEqual(oldView.buffer, rt.memory.buffer, "memory.buffer is a new object");
      else assert.equal(oldView.byteLength, 0, "the old view was detached");
      assert.equal(y.view.buffer, rt.memory.buffer, "the view is re-derived");
      rt.k.f32_gemm_nt(x.ptr, w.ptr, bias.ptr, y.ptr, B, K, N, 0);
      assertBits("gemm_nt after growth", y.view, first);
      // a sparse kernel whose scratch lives past the old end of memory
      const pos = positions(N, K, 500, 1803);
      const rowPtr = rt.allocI32(pos.rowPtr), idx = rt.allocI32(pos.flat), val = rt.allocF32(rand(500, 1804));
      const scratch = rt.allocF32(rt.k.f32_spmm_csr_scratch(B, K, N));
      const y2 = rt.allocF32(first);
      rt.k.f32_spmm_csr(x.ptr, rowPtr.ptr, idx.ptr, K, val.ptr, 1, y2.ptr, B, K, N, scratch.ptr);
      rt.k.f32_spmm_csr_scalar(x.ptr, rowPtr.ptr, idx.ptr, K, val.ptr, 1, y.ptr, B, K, N, 0);
      assertBits(relaxed ? "spmm after growth (relaxed: vs twin within bound)" : "spmm after growth", relaxed ? y2.view.map((v, i) => (Math.abs(v - y.view[i]) < 1e-5 ? y.view[i] : v)) : y2.view, y.view);
      for (const b of [x, w, bias, y, big, rowPtr, idx, val, scratch, y2]) b.free();
    });
  });
}

// ------------------------------------------------------------------------------------------------ which builds

forEachVariant("kernels", import.meta.url, suite, { minPassed: 10, timeoutMs: 120000 });
