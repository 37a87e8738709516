// Vector helpers over f32 arrays.
//   f32_fill, f32_copy, f32_axpy (y += a x), f32_scale (x *= s), f32_add (out = a + b),
//   f32_sum_sq (sum of squares in f64), f32_find_nonfinite (index of the first NaN/Inf or -1),
//   f32_transpose (dst[c, r] = src[r, c])

export function f32_fill(p: usize, v: f32, n: i32): void {
  for (let i = 0; i < n; i++) store<f32>(p + (<usize>i << 2), v);
}
export function f32_copy(src: usize, dst: usize, n: i32): void {
  memory.copy(dst, src, <usize>n << 2);
}
export function f32_axpy_scalar(a: f32, x: usize, y: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(y + o, load<f32>(y + o) + a * load<f32>(x + o));
  }
}
export function f32_scale_scalar(x: usize, s: f32, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(x + o, load<f32>(x + o) * s);
  }
}
export function f32_add_scalar(a: usize, b: usize, out: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, load<f32>(a + o) + load<f32>(b + o));
  }
}
export function f32_sum_sq_scalar(x: usize, n: i32): f64 {
  let s: f64 = 0;
  for (let i = 0; i < n; i++) {
    const v = <f64>load<f32>(x + (<usize>i << 2));
    s += v * v;
  }
  return s;
}
export function f32_find_nonfinite_scalar(x: usize, n: i32): i32 {
  for (let i = 0; i < n; i++) {
    const v = load<f32>(x + (<usize>i << 2));
    if (!isFinite<f32>(v)) return i;
  }
  return -1;
}
export function f32_transpose_scalar(src: usize, dst: usize, rows: i32, cols: i32): void {
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      store<f32>(dst + ((<usize>c * <usize>rows + <usize>r) << 2), load<f32>(src + ((<usize>r * <usize>cols + <usize>c) << 2)));
    }
  }
}

export function f32_axpy(a: f32, x: usize, y: usize, n: i32): void { f32_axpy_scalar(a, x, y, n); }
export function f32_scale(x: usize, s: f32, n: i32): void { f32_scale_scalar(x, s, n); }
export function f32_add(a: usize, b: usize, out: usize, n: i32): void { f32_add_scalar(a, b, out, n); }
export function f32_sum_sq(x: usize, n: i32): f64 { return f32_sum_sq_scalar(x, n); }
export function f32_find_nonfinite(x: usize, n: i32): i32 { return f32_find_nonfinite_scalar(x, n); }
export function f32_transpose(src: usize, dst: usize, rows: i32, cols: i32): void { f32_transpose_scalar(src, dst, rows, cols); }
