// Row normalizations over [rows, D] (decoder LMs: Llama/Qwen2/Mistral use RMSNorm, OPT/GPT-2 LayerNorm).
//   rmsnorm:    var = f32(sum(x^2) / D)            (sum in f64)
//               r = f32(1 / sqrt(f64(var + eps)))  (var + eps in f32, as transformers' LlamaRMSNorm in f32)
//               y = f32(w * f32(x * r))            (w == 0: no weight, y = f32(x * r))
//   layernorm:  mean = sum(x) / D, var = sum((x - mean)^2) / D   (f64, two passes, biased as PyTorch)
//               rstd = 1 / sqrt(var + eps)                       (f64)
//               n = f32((x - mean) rstd);  y = n * w + b          (f32; w, b == 0: absent)
// y may equal x (in place): every output is written after its row's sums are complete.
//
// SIMD forms: the f64 sums widen each f32x4 into two f64x2 halves and add the lanes one by one in index
// order (lo/hi/add2 of util/simd.ts), the elementwise part is f32x4/f64x2 with the scalar operations in the scalar
// order, so both kernels are bit-identical to their `_scalar` twins. The row statistics (rmsFactor, rowMean,
// rowRstd) are in util/norm.ts, shared with the backward kernels (backward.ts):
//
//        x[i..i+3] --promote--> [x0 x1] [x2 x3] (f64x2) --mul--> s += l0; s += l1; s += l2; s += l3
//        x[i..i+3] (f32x4) * r --> * w[i..i+3] --> y[i..i+3]

import { lo, hi, pack, add2 } from "./util/simd";
import { rmsFactor, rowMean, rowRstd } from "./util/norm";

// ---------------------------------------------------------------- scalar twins

export function f32_rmsnorm_scalar(x: usize, w: usize, y: usize, rows: i32, D: i32, eps: f32): void {
  for (let r = 0; r < rows; r++) {
    const xr = x + (<usize>r * <usize>D << 2);
    const yr = y + (<usize>r * <usize>D << 2);
    let s: f64 = 0;
    for (let i = 0; i < D; i++) {
      const v = <f64>load<f32>(xr + (<usize>i << 2));
      s += v * v;
    }
    const f = rmsFactor(s, D, eps);
    for (let i = 0; i < D; i++) {
      const o = <usize>i << 2;
      const n = load<f32>(xr + o) * f;
      store<f32>(yr + o, w ? load<f32>(w + o) * n : n);
    }
  }
}

export function f32_layernorm_scalar(x: usize, w: usize, b: usize, y: usize, rows: i32, D: i32, eps: f32): void {
  for (let r = 0; r < rows; r++) {
    const xr = x + (<usize>r * <usize>D << 2);
    const yr = y + (<usize>r * <usize>D << 2);
    let s: f64 = 0;
    for (let i = 0; i < D; i++) s += <f64>load<f32>(xr + (<usize>i << 2));
    const mean = s / <f64>D;
    let s2: f64 = 0;
    for (let i = 0; i < D; i++) {
      const d = <f64>load<f32>(xr + (<usize>i << 2)) - mean;
      s2 += d * d;
    }
    const rstd = 1.0 / Math.sqrt(s2 / <f64>D + <f64>eps);
    for (let i = 0; i < D; i++) {
      const o = <usize>i << 2;
      let v = <f32>((<f64>load<f32>(xr + o) - mean) * rstd);
      if (w) v = v * load<f32>(w + o);
      if (b) v = v + load<f32>(b + o);
      store<f32>(yr + o, v);
    }
  }
}

// ---------------------------------------------------------------- SIMD kernels

/** sum of x^2 in f64, lanes added in index order (bit-identical to the scalar loop). */
function sumSq(xr: usize, D: i32): f64 {
  let s: f64 = 0;
  let i = 0;
  for (; i + 4 <= D; i += 4) {
    const v = v128.load(xr + (<usize>i << 2));
    const a = lo(v), b = hi(v);
    const a2 = f64x2.mul(a, a), b2 = f64x2.mul(b, b);
    s = add2(add2(s, a2), b2);
  }
  for (; i < D; i++) {
    const v = <f64>load<f32>(xr + (<usize>i << 2));
    s += v * v;
  }
  return s;
}

export function f32_rmsnorm(x: usize, w: usize, y: usize, rows: i32, D: i32, eps: f32): void {
  for (let r = 0; r < rows; r++) {
    const xr = x + (<usize>r * <usize>D << 2);
    const yr = y + (<usize>r * <usize>D << 2);
    const f = rmsFactor(sumSq(xr, D), D, eps);
    const fv = f32x4.splat(f);
    let i = 0;
    if (w) {
      for (; i + 4 <= D; i += 4) {
        const o = <usize>i << 2;
        v128.store(yr + o, f32x4.mul(v128.load(w + o), f32x4.mul(v128.load(xr + o), fv)));
      }
      for (; i < D; i++) {
        const o = <usize>i << 2;
        store<f32>(yr + o, load<f32>(w + o) * (load<f32>(xr + o) * f));
      }
    } else {
      for (; i + 4 <= D; i += 4) {
        const o = <usize>i << 2;
        v128.store(yr + o, f32x4.mul(v128.load(xr + o), fv));
      }
      for (; i < D; i++) {
        const o = <usize>i << 2;
        store<f32>(yr + o, load<f32>(xr + o) * f);
      }
    }
  }
}

export function f32_layernorm(x: usize, w: usize, b: usize, y: usize, rows: i32, D: i32, eps: f32): void {
  for (let r = 0; r < rows; r++) {
    const xr = x + (<usize>r * <usize>D << 2);
    const yr = y + (<usize>r * <usize>D << 2);
    const mean = rowMean(xr, D), rstd = rowRstd(xr, D, mean, eps);
    const mv = f64x2.splat(mean), rv = f64x2.splat(rstd);
    // y = f32((x - mean) rstd) * w + b
    let i = 0;
    for (; i + 4 <= D; i += 4) {
      const o = <usize>i << 2;
      const v = v128.load(xr + o);
      let n = pack(f64x2.mul(f64x2.sub(lo(v), mv), rv), f64x2.mul(f64x2.sub(hi(v), mv), rv));
      if (w) n = f32x4.mul(n, v128.load(w + o));
      if (b) n = f32x4.add(n, v128.load(b + o));
      v128.store(yr + o, n);
    }
    for (; i < D; i++) {
      const o = <usize>i << 2;
      let v = <f32>((<f64>load<f32>(xr + o) - mean) * rstd);
      if (w) v = v * load<f32>(w + o);
      if (b) v = v + load<f32>(b + o);
      store<f32>(yr + o, v);
    }
  }
}
