// Elementwise activations, forward and backward (gx = gy * f'(x), from the pre-activation x).
//   relu, gelu (exact: 0.5 x (1 + erf(x / sqrt 2)), PyTorch's default), silu (x * sigmoid x), tanh

// erf in f64 (Abramowitz & Stegun 7.1.26; to be replaced by a more precise one).
function erf64(x: f64): f64 {
  const s: f64 = x < 0 ? -1 : 1;
  const a = Math.abs(x);
  const t = 1.0 / (1.0 + 0.3275911 * a);
  const y = 1.0 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-a * a);
  return s * y;
}

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
    store<f32>(y + (<usize>i << 2), <f32>(0.5 * v * (1.0 + erf64(v * 0.7071067811865476))));
  }
}
export function f32_gelu_backward_scalar(x: usize, gy: usize, gx: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    const v = <f64>load<f32>(x + o);
    const cdf = 0.5 * (1.0 + erf64(v * 0.7071067811865476));
    const pdf = Math.exp(-0.5 * v * v) * 0.3989422804014327;
    store<f32>(gx + o, <f32>(<f64>load<f32>(gy + o) * (cdf + v * pdf)));
  }
}
export function f32_silu_scalar(x: usize, y: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const v = <f64>load<f32>(x + (<usize>i << 2));
    store<f32>(y + (<usize>i << 2), <f32>(v / (1.0 + Math.exp(-v))));
  }
}
export function f32_silu_backward_scalar(x: usize, gy: usize, gx: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    const v = <f64>load<f32>(x + o);
    const s = 1.0 / (1.0 + Math.exp(-v));
    store<f32>(gx + o, <f32>(<f64>load<f32>(gy + o) * s * (1.0 + v * (1.0 - s))));
  }
}
export function f32_tanh_scalar(x: usize, y: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    store<f32>(y + (<usize>i << 2), <f32>Math.tanh(<f64>load<f32>(x + (<usize>i << 2))));
  }
}
export function f32_tanh_backward_scalar(x: usize, gy: usize, gx: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    const t = Math.tanh(<f64>load<f32>(x + o));
    store<f32>(gx + o, <f32>(<f64>load<f32>(gy + o) * (1.0 - t * t)));
  }
}

export function f32_relu(x: usize, y: usize, n: i32): void { f32_relu_scalar(x, y, n); }
export function f32_relu_backward(x: usize, gy: usize, gx: usize, n: i32): void { f32_relu_backward_scalar(x, gy, gx, n); }
export function f32_gelu(x: usize, y: usize, n: i32): void { f32_gelu_scalar(x, y, n); }
export function f32_gelu_backward(x: usize, gy: usize, gx: usize, n: i32): void { f32_gelu_backward_scalar(x, gy, gx, n); }
export function f32_silu(x: usize, y: usize, n: i32): void { f32_silu_scalar(x, y, n); }
export function f32_silu_backward(x: usize, gy: usize, gx: usize, n: i32): void { f32_silu_backward_scalar(x, gy, gx, n); }
export function f32_tanh(x: usize, y: usize, n: i32): void { f32_tanh_scalar(x, y, n); }
export function f32_tanh_backward(x: usize, gy: usize, gx: usize, n: i32): void { f32_tanh_backward_scalar(x, gy, gx, n); }
