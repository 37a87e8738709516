// Elementwise activations, forward and backward (gx = gy * f'(x), from the pre-activation x).
//   relu:  y = x > 0 ? x : 0                  gx = x > 0 ? gy : 0
//   gelu:  y = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))  (exact GELU, PyTorch's default)
//          gx = gy (Phi(x) + x phi(x)),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
//   silu:  y = x / (1 + exp(-x))             gx = gy s (1 + x (1 - s)),  s = 1 / (1 + exp(-x))
//   tanh:  y = tanh x                         gx = gy (1 - tanh^2 x), evaluated as gy sech^2 x = gy 4 (e + 1) / (e + 2)^2
//          with e = expm1(2 |x|), which keeps full precision where 1 - tanh^2 cancels (|x| > ~4)
//   gelu_tanh (transformers' gelu_new / NewGELUActivation, GPT-2):
//          y = 0.5 x (1 + tanh u),  u = sqrt(2/pi) (x + 0.044715 x^3), evaluated as x / (1 + exp(-2u)) (the same
//          function: 0.5 (1 + tanh u) = sigmoid(2u)), which keeps full precision where 1 + tanh u cancels (x < ~-3)
//          gx = gy (s + 2 x s (1 - s) u'),  s = sigmoid(2u), 1 - s = e s with e = exp(-2u), u' = sqrt(2/pi) (1 + 3 0.044715 x^2)
//   silu_mul (SwiGLU, Llama/Qwen2/Mistral MLPs): out = f32(silu(gate)) * up   (silu as above, then one f32 multiply)
// All but relu are computed in f64 and rounded once to f32. Phi comes from FreeBSD's erf/erfc rational
// approximations and exp from a Cody-Waite/Taylor exp (see util/math.ts): GELU is within 1 ulp of the
// correctly rounded value, including the far lower tail where 1 + erf(x / sqrt 2) cancels.
//
// SIMD forms: relu on f32x4 (bit-identical selects); the others widen each f32x4 into two f64x2 halves and
// run the f64x2 twins of the scalar math (same IEEE operations in the same order), so every SIMD kernel is
// bit-identical to its `_scalar` twin:
//
//        x[i..i+3] (f32x4) --promote_low--> [x0 x1] (f64x2) --f--> [y0 y1] --demote--> \
//                          --promote(hi)--> [x2 x3] (f64x2) --f--> [y2 y3] --demote-->  +--> y[i..i+3] (f32x4)
//
// (lo = promote_low, hi = promote(hi), pack = the two demotes: util/simd.ts)

import { exp64, exp64x2, expm1pos, expm1posx2, phi64, phi64x2 } from "./util/math";
import { lo, hi, pack } from "./util/simd";

const INV_SQRT_2PI: f64 = 0.3989422804014327;
const TANH_CLAMP: f64 = 20.0; // tanh(20) rounds to 1 in f64

/** tanh in f64: sign(v) e / (e + 2), e = expm1(2 |v|) (no cancellation near 0). */
function tanh64(v: f64): f64 {
  const e = expm1pos(2.0 * min(abs(v), TANH_CLAMP));
  return copysign<f64>(e / (e + 2.0), v);
}

const SECH_CLAMP: f64 = 350.0; // sech^2(350) * f32 max rounds to 0; e = expm1(700) stays finite

/** 1 - tanh^2 v = sech^2 v = (4 / (e + 2)) ((e + 1) / (e + 2)), e = expm1(2 |v|) (no overflow, no cancellation). */
function sech2_64(v: f64): f64 {
  const e = expm1pos(2.0 * min(abs(v), SECH_CLAMP));
  return (4.0 / (e + 2.0)) * ((e + 1.0) / (e + 2.0));
}

// @ts-ignore: decorator
@inline function sech2_64x2(v: v128): v128 {
  const e = expm1posx2(f64x2.mul(f64x2.splat(2.0), f64x2.min(f64x2.abs(v), f64x2.splat(SECH_CLAMP))));
  const d = f64x2.add(e, f64x2.splat(2.0));
  return f64x2.mul(f64x2.div(f64x2.splat(4.0), d), f64x2.div(f64x2.add(e, f64x2.splat(1.0)), d));
}

// @ts-ignore: decorator
@inline function tanh64x2(v: v128): v128 {
  const e = expm1posx2(f64x2.mul(f64x2.splat(2.0), f64x2.min(f64x2.abs(v), f64x2.splat(TANH_CLAMP))));
  const t = f64x2.div(e, f64x2.add(e, f64x2.splat(2.0)));
  const sign = i64x2.splat(0x8000000000000000);
  return v128.or(v128.andnot(t, sign), v128.and(v, sign));
}

// ---------------------------------------------------------------- scalar twins

export function f32_relu_scalar(x: usize, y: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const v = load<f32>(x + (<usize>i << 2));
    store<f32>(y + (<usize>i << 2), v > 0 ? v : 0);
  }
}
export function f32_relu_backward_scalar(x: usize, gy: usize, gx: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(gx + o, load<f32>(x + o) > 0 ? load<f32>(gy + o) : 0);
  }
}
export function f32_gelu_scalar(x: usize, y: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const v = <f64>load<f32>(x + (<usize>i << 2));
    store<f32>(y + (<usize>i << 2), <f32>(v * phi64(v)));
  }
}
export function f32_gelu_backward_scalar(x: usize, gy: usize, gx: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    const v = <f64>load<f32>(x + o);
    const pdf = exp64(-0.5 * v * v) * INV_SQRT_2PI;
    store<f32>(gx + o, <f32>(<f64>load<f32>(gy + o) * (phi64(v) + v * pdf)));
  }
}
export function f32_silu_scalar(x: usize, y: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const v = <f64>load<f32>(x + (<usize>i << 2));
    store<f32>(y + (<usize>i << 2), <f32>(v / (1.0 + exp64(-v))));
  }
}
export function f32_silu_backward_scalar(x: usize, gy: usize, gx: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    const v = <f64>load<f32>(x + o);
    const s = 1.0 / (1.0 + exp64(-v));
    store<f32>(gx + o, <f32>(<f64>load<f32>(gy + o) * s * (1.0 + v * (1.0 - s))));
  }
}
export function f32_tanh_scalar(x: usize, y: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    store<f32>(y + (<usize>i << 2), <f32>tanh64(<f64>load<f32>(x + (<usize>i << 2))));
  }
}
export function f32_tanh_backward_scalar(x: usize, gy: usize, gx: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(gx + o, <f32>(<f64>load<f32>(gy + o) * sech2_64(<f64>load<f32>(x + o))));
  }
}

// ---------------------------------------------------------------- SIMD kernels (4 floats per step, scalar tail)

export function f32_relu(x: usize, y: usize, n: i32): void {
  const z = f32x4.splat(0);
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const o = <usize>i << 2;
    const a = v128.load(x + o), b = v128.load(x + o, 16);
    v128.store(y + o, v128.bitselect(a, z, f32x4.gt(a, z)));
    v128.store(y + o, v128.bitselect(b, z, f32x4.gt(b, z)), 16);
  }
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const a = v128.load(x + o);
    v128.store(y + o, v128.bitselect(a, z, f32x4.gt(a, z)));
  }
  if (i < n) f32_relu_scalar(x + (<usize>i << 2), y + (<usize>i << 2), n - i);
}

export function f32_relu_backward(x: usize, gy: usize, gx: usize, n: i32): void {
  const z = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(gx + o, v128.and(v128.load(gy + o), f32x4.gt(v128.load(x + o), z)));
  }
  if (i < n) f32_relu_backward_scalar(x + (<usize>i << 2), gy + (<usize>i << 2), gx + (<usize>i << 2), n - i);
}

export function f32_gelu(x: usize, y: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const v = v128.load(x + o);
    const a = lo(v), b = hi(v);
    v128.store(y + o, pack(f64x2.mul(a, phi64x2(a)), f64x2.mul(b, phi64x2(b))));
  }
  if (i < n) f32_gelu_scalar(x + (<usize>i << 2), y + (<usize>i << 2), n - i);
}

// @ts-ignore: decorator
@inline function geluGrad2(v: v128, g: v128): v128 {
  const pdf = f64x2.mul(exp64x2(f64x2.mul(f64x2.mul(f64x2.splat(-0.5), v), v)), f64x2.splat(INV_SQRT_2PI));
  return f64x2.mul(g, f64x2.add(phi64x2(v), f64x2.mul(v, pdf)));
}

export function f32_gelu_backward(x: usize, gy: usize, gx: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const v = v128.load(x + o), g = v128.load(gy + o);
    v128.store(gx + o, pack(geluGrad2(lo(v), lo(g)), geluGrad2(hi(v), hi(g))));
  }
  if (i < n) f32_gelu_backward_scalar(x + (<usize>i << 2), gy + (<usize>i << 2), gx + (<usize>i << 2), n - i);
}

// @ts-ignore: decorator
@inline function silu2(v: v128): v128 {
  return f64x2.div(v, f64x2.add(f64x2.splat(1.0), exp64x2(f64x2.neg(v))));
}

export function f32_silu(x: usize, y: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const v = v128.load(x + o);
    v128.store(y + o, pack(silu2(lo(v)), silu2(hi(v))));
  }
  if (i < n) f32_silu_scalar(x + (<usize>i << 2), y + (<usize>i << 2), n - i);
}

// @ts-ignore: decorator
@inline function siluGrad2(v: v128, g: v128): v128 {
  const one = f64x2.splat(1.0);
  const s = f64x2.div(one, f64x2.add(one, exp64x2(f64x2.neg(v))));
  return f64x2.mul(f64x2.mul(g, s), f64x2.add(one, f64x2.mul(v, f64x2.sub(one, s))));
}

export function f32_silu_backward(x: usize, gy: usize, gx: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const v = v128.load(x + o), g = v128.load(gy + o);
    v128.store(gx + o, pack(siluGrad2(lo(v), lo(g)), siluGrad2(hi(v), hi(g))));
  }
  if (i < n) f32_silu_backward_scalar(x + (<usize>i << 2), gy + (<usize>i << 2), gx + (<usize>i << 2), n - i);
}

export function f32_tanh(x: usize, y: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const v = v128.load(x + o);
    v128.store(y + o, pack(tanh64x2(lo(v)), tanh64x2(hi(v))));
  }
  if (i < n) f32_tanh_scalar(x + (<usize>i << 2), y + (<usize>i << 2), n - i);
}

// @ts-ignore: decorator
@inline function tanhGrad2(v: v128, g: v128): v128 {
  return f64x2.mul(g, sech2_64x2(v));
}

export function f32_tanh_backward(x: usize, gy: usize, gx: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const v = v128.load(x + o), g = v128.load(gy + o);
    v128.store(gx + o, pack(tanhGrad2(lo(v), lo(g)), tanhGrad2(hi(v), hi(g))));
  }
  if (i < n) f32_tanh_backward_scalar(x + (<usize>i << 2), gy + (<usize>i << 2), gx + (<usize>i << 2), n - i);
}

// ---------------------------------------------------------------- decoder-model activations (scalar twins, then SIMD)

const SQRT_2_OVER_PI: f64 = 0.7978845608028654; // sqrt(2 / pi)
const GELU_C: f64 = 0.044715;
const GELU_C3: f64 = 0.134145; // 3 * 0.044715
const GELU_EXP_CLAMP: f64 = 700.0; // exp(700) stays finite, so s (1 - s) = e s s never meets inf * 0

export function f32_gelu_tanh_scalar(x: usize, y: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const v = <f64>load<f32>(x + (<usize>i << 2));
    const u = SQRT_2_OVER_PI * (v + GELU_C * (v * v * v));
    store<f32>(y + (<usize>i << 2), <f32>(v / (1.0 + exp64(-2.0 * u))));
  }
}
export function f32_gelu_tanh_backward_scalar(x: usize, gy: usize, gx: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    const v = <f64>load<f32>(x + o);
    const v2 = v * v;
    const u = SQRT_2_OVER_PI * (v + GELU_C * (v2 * v));
    const e = exp64(min(-2.0 * u, GELU_EXP_CLAMP));
    const s = 1.0 / (1.0 + e);
    const du = SQRT_2_OVER_PI * (1.0 + GELU_C3 * v2);
    store<f32>(gx + o, <f32>(<f64>load<f32>(gy + o) * (s + 2.0 * v * s * (e * s) * du)));
  }
}
export function f32_silu_mul_scalar(gate: usize, up: usize, out: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    const v = <f64>load<f32>(gate + o);
    store<f32>(out + o, <f32>(v / (1.0 + exp64(-v))) * load<f32>(up + o));
  }
}

// @ts-ignore: decorator
@inline function geluTanh2(v: v128): v128 {
  const u = f64x2.mul(f64x2.splat(SQRT_2_OVER_PI), f64x2.add(v, f64x2.mul(f64x2.splat(GELU_C), f64x2.mul(f64x2.mul(v, v), v))));
  return f64x2.div(v, f64x2.add(f64x2.splat(1.0), exp64x2(f64x2.mul(f64x2.splat(-2.0), u))));
}

export function f32_gelu_tanh(x: usize, y: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const v = v128.load(x + o);
    v128.store(y + o, pack(geluTanh2(lo(v)), geluTanh2(hi(v))));
  }
  if (i < n) f32_gelu_tanh_scalar(x + (<usize>i << 2), y + (<usize>i << 2), n - i);
}

// @ts-ignore: decorator
@inline function geluTanhGrad2(v: v128, g: v128): v128 {
  const one = f64x2.splat(1.0);
  const v2 = f64x2.mul(v, v);
  const u = f64x2.mul(f64x2.splat(SQRT_2_OVER_PI), f64x2.add(v, f64x2.mul(f64x2.splat(GELU_C), f64x2.mul(v2, v))));
  const e = exp64x2(f64x2.min(f64x2.mul(f64x2.splat(-2.0), u), f64x2.splat(GELU_EXP_CLAMP)));
  const s = f64x2.div(one, f64x2.add(one, e));
  const du = f64x2.mul(f64x2.splat(SQRT_2_OVER_PI), f64x2.add(one, f64x2.mul(f64x2.splat(GELU_C3), v2)));
  const t = f64x2.mul(f64x2.mul(f64x2.mul(f64x2.mul(f64x2.splat(2.0), v), s), f64x2.mul(e, s)), du);
  return f64x2.mul(g, f64x2.add(s, t));
}

export function f32_gelu_tanh_backward(x: usize, gy: usize, gx: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const v = v128.load(x + o), g = v128.load(gy + o);
    v128.store(gx + o, pack(geluTanhGrad2(lo(v), lo(g)), geluTanhGrad2(hi(v), hi(g))));
  }
  if (i < n) f32_gelu_tanh_backward_scalar(x + (<usize>i << 2), gy + (<usize>i << 2), gx + (<usize>i << 2), n - i);
}

export function f32_silu_mul(gate: usize, up: usize, out: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const v = v128.load(gate + o);
    v128.store(out + o, f32x4.mul(pack(silu2(lo(v)), silu2(hi(v))), v128.load(up + o)));
  }
  if (i < n) f32_silu_mul_scalar(gate + (<usize>i << 2), up + (<usize>i << 2), out + (<usize>i << 2), n - i);
}
