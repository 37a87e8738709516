// Row statistics of the normalizations, shared by norm.ts (forward) and backward.ts (the gradients), so that the
// backward recomputes exactly the forward's factors. The f64 sums are sequential (lanes added in index order), so
// each SIMD helper is bit-identical to the scalar loop of the `_scalar` twins.

import { lo, hi, add2 } from "./simd";

/** The RMSNorm factor of a row from its f64 sum of squares: f32(1 / sqrt(f64(f32(ss / D) + eps))). */
// @ts-ignore: decorator
@inline export function rmsFactor(ss: f64, D: i32, eps: f32): f32 {
  const v = <f32>(ss / <f64>D);
  return <f32>(1.0 / Math.sqrt(<f64>(v + eps)));
}

/** LayerNorm mean of the D floats at xr: sum in f64, index order, / D. */
// @ts-ignore: decorator
@inline export function rowMean(xr: usize, D: i32): f64 {
  let s: f64 = 0;
  let i = 0;
  for (; i + 4 <= D; i += 4) {
    const v = v128.load(xr + (<usize>i << 2));
    s += <f64>f32x4.extract_lane(v, 0);
    s += <f64>f32x4.extract_lane(v, 1);
    s += <f64>f32x4.extract_lane(v, 2);
    s += <f64>f32x4.extract_lane(v, 3);
  }
  for (; i < D; i++) s += <f64>load<f32>(xr + (<usize>i << 2));
  return s / <f64>D;
}

/** LayerNorm 1 / sqrt(var + eps) of the D floats at xr, var = sum (x - mean)^2 / D (f64, index order, biased). */
// @ts-ignore: decorator
@inline export function rowRstd(xr: usize, D: i32, mean: f64, eps: f32): f64 {
  const mv = f64x2.splat(mean);
  let s2: f64 = 0;
  let i = 0;
  for (; i + 4 <= D; i += 4) {
    const v = v128.load(xr + (<usize>i << 2));
    const a = f64x2.sub(lo(v), mv), c = f64x2.sub(hi(v), mv);
    s2 = add2(add2(s2, f64x2.mul(a, a)), f64x2.mul(c, c));
  }
  for (; i < D; i++) {
    const d = <f64>load<f32>(xr + (<usize>i << 2)) - mean;
    s2 += d * d;
  }
  return 1.0 / Math.sqrt(s2 / <f64>D + <f64>eps);
}
