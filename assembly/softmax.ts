// Row-wise softmax and log-softmax over [rows, cols], forward and backward (from the output y).
//   softmax:      y = exp(x - m) / sum exp(x - m)
//   log_softmax:  y = x - m - log(sum exp(x - m))           (m = max of the row)
//   softmax backward:      gx = y * (gy - sum(gy * y))
//   log_softmax backward:  gx = gy - exp(y) * sum(gy)

export function f32_softmax_rows_scalar(x: usize, y: usize, rows: i32, cols: i32): void {
  for (let r = 0; r < rows; r++) {
    const xr = x + (<usize>r * <usize>cols << 2);
    const yr = y + (<usize>r * <usize>cols << 2);
    let m: f32 = -Infinity;
    for (let c = 0; c < cols; c++) m = max(m, load<f32>(xr + (<usize>c << 2)));
    let s: f64 = 0;
    for (let c = 0; c < cols; c++) {
      const e = Math.exp(<f64>(load<f32>(xr + (<usize>c << 2)) - m));
      s += e;
      store<f32>(yr + (<usize>c << 2), <f32>e);
    }
    const inv = 1.0 / s;
    for (let c = 0; c < cols; c++) {
      const p = yr + (<usize>c << 2);
      store<f32>(p, <f32>(<f64>load<f32>(p) * inv));
    }
  }
}

export function f32_log_softmax_rows_scalar(x: usize, y: usize, rows: i32, cols: i32): void {
  for (let r = 0; r < rows; r++) {
    const xr = x + (<usize>r * <usize>cols << 2);
    const yr = y + (<usize>r * <usize>cols << 2);
    let m: f32 = -Infinity;
    for (let c = 0; c < cols; c++) m = max(m, load<f32>(xr + (<usize>c << 2)));
    let s: f64 = 0;
    for (let c = 0; c < cols; c++) s += Math.exp(<f64>(load<f32>(xr + (<usize>c << 2)) - m));
    const ls = <f32>Math.log(s);
    for (let c = 0; c < cols; c++) {
      store<f32>(yr + (<usize>c << 2), load<f32>(xr + (<usize>c << 2)) - m - ls);
    }
  }
}

export function f32_softmax_backward_rows_scalar(y: usize, gy: usize, gx: usize, rows: i32, cols: i32): void {
  for (let r = 0; r < rows; r++) {
    const o = <usize>r * <usize>cols << 2;
    let d: f64 = 0;
    for (let c = 0; c < cols; c++) d += <f64>load<f32>(gy + o + (<usize>c << 2)) * <f64>load<f32>(y + o + (<usize>c << 2));
    for (let c = 0; c < cols; c++) {
      const q = o + (<usize>c << 2);
      store<f32>(gx + q, <f32>(<f64>load<f32>(y + q) * (<f64>load<f32>(gy + q) - d)));
    }
  }
}

export function f32_log_softmax_backward_rows_scalar(y: usize, gy: usize, gx: usize, rows: i32, cols: i32): void {
  for (let r = 0; r < rows; r++) {
    const o = <usize>r * <usize>cols << 2;
    let s: f64 = 0;
    for (let c = 0; c < cols; c++) s += <f64>load<f32>(gy + o + (<usize>c << 2));
    for (let c = 0; c < cols; c++) {
      const q = o + (<usize>c << 2);
      store<f32>(gx + q, <f32>(<f64>load<f32>(gy + q) - Math.exp(<f64>load<f32>(y + q)) * s));
    }
  }
}

export function f32_softmax_rows(x: usize, y: usize, rows: i32, cols: i32): void { f32_softmax_rows_scalar(x, y, rows, cols); }
export function f32_log_softmax_rows(x: usize, y: usize, rows: i32, cols: i32): void { f32_log_softmax_rows_scalar(x, y, rows, cols); }
export function f32_softmax_backward_rows(y: usize, gy: usize, gx: usize, rows: i32, cols: i32): void { f32_softmax_backward_rows_scalar(y, gy, gx, rows, cols); }
export function f32_log_softmax_backward_rows(y: usize, gy: usize, gx: usize, rows: i32, cols: i32): void { f32_log_softmax_backward_rows_scalar(y, gy, gx, rows, cols); }
