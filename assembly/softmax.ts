// Row-wise softmax and log-softmax over [rows, cols], forward and backward (from the output y).
//   softmax:      y = exp(x - m) / sum exp(x - m)
//   log_softmax:  y = x - m - log(sum exp(x - m))           (m = max of the row)
//   softmax backward:      gx = y * (gy - sum(gy * y))
//   log_softmax backward:  gx = gy - exp(y) * sum(gy)
// exp and the sums are f64 (exp64 from util/math.ts), each output rounded once to f32.
//
// SIMD forms: the row max on f32x4 (max is order-free), exp on f64x2 halves of each f32x4, elementwise
// products on f64x2; the f64 sums are kept sequential (lanes added one by one, in index order: lo/hi/pack/add2
// of util/simd.ts) so every kernel is bit-identical to its `_scalar` twin:
//
//        x[c..c+3] - m (f32x4) --promote--> f64x2 x 2 --exp64x2--> e0 e1 | e2 e3 --> s += e0; s += e1; ...
//                                                                  \--demote--> y[c..c+3]

import { exp64, exp64x2 } from "./util/math";
import { lo, hi, pack, add2 } from "./util/simd";

// ---------------------------------------------------------------- scalar twins

export function f32_softmax_rows_scalar(x: usize, y: usize, rows: i32, cols: i32): void {
  for (let r = 0; r < rows; r++) {
    const xr = x + (<usize>r * <usize>cols << 2);
    const yr = y + (<usize>r * <usize>cols << 2);
    let m: f32 = -Infinity;
    for (let c = 0; c < cols; c++) m = max(m, load<f32>(xr + (<usize>c << 2)));
    let s: f64 = 0;
    for (let c = 0; c < cols; c++) {
      const e = exp64(<f64>(load<f32>(xr + (<usize>c << 2)) - m));
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
    for (let c = 0; c < cols; c++) s += exp64(<f64>(load<f32>(xr + (<usize>c << 2)) - m));
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
      store<f32>(gx + q, <f32>(<f64>load<f32>(gy + q) - exp64(<f64>load<f32>(y + q)) * s));
    }
  }
}

// ---------------------------------------------------------------- SIMD kernels

/** Row max (f32x4 max, then lanes and the tail; max is associative and commutative, NaN-propagating). */
function rowMax(xr: usize, cols: i32): f32 {
  let m: f32 = -Infinity;
  let c = 0;
  if (cols >= 4) {
    let v = v128.load(xr);
    for (c = 4; c + 4 <= cols; c += 4) v = f32x4.max(v, v128.load(xr + (<usize>c << 2)));
    m = max(max(f32x4.extract_lane(v, 0), f32x4.extract_lane(v, 1)), max(f32x4.extract_lane(v, 2), f32x4.extract_lane(v, 3)));
  }
  for (; c < cols; c++) m = max(m, load<f32>(xr + (<usize>c << 2)));
  return m;
}

/** Writes y[c] = f32(exp(x[c] - m)) and returns sum of the f64 exps in index order. */
function expShift(xr: usize, yr: usize, cols: i32, m: f32): f64 {
  const mv = f32x4.splat(m);
  let s: f64 = 0;
  let c = 0;
  for (; c + 4 <= cols; c += 4) {
    const o = <usize>c << 2;
    const d = f32x4.sub(v128.load(xr + o), mv);
    const a = exp64x2(lo(d)), b = exp64x2(hi(d));
    s = add2(add2(s, a), b);
    if (yr) v128.store(yr + o, pack(a, b));
  }
  for (; c < cols; c++) {
    const e = exp64(<f64>(load<f32>(xr + (<usize>c << 2)) - m));
    s += e;
    if (yr) store<f32>(yr + (<usize>c << 2), <f32>e);
  }
  return s;
}

export function f32_softmax_rows(x: usize, y: usize, rows: i32, cols: i32): void {
  for (let r = 0; r < rows; r++) {
    const xr = x + (<usize>r * <usize>cols << 2);
    const yr = y + (<usize>r * <usize>cols << 2);
    const s = expShift(xr, yr, cols, rowMax(xr, cols));
    const inv = 1.0 / s;
    const iv = f64x2.splat(inv);
    let c = 0;
    for (; c + 4 <= cols; c += 4) {
      const p = yr + (<usize>c << 2);
      const v = v128.load(p);
      v128.store(p, pack(f64x2.mul(lo(v), iv), f64x2.mul(hi(v), iv)));
    }
    for (; c < cols; c++) {
      const p = yr + (<usize>c << 2);
      store<f32>(p, <f32>(<f64>load<f32>(p) * inv));
    }
  }
}

export function f32_log_softmax_rows(x: usize, y: usize, rows: i32, cols: i32): void {
  for (let r = 0; r < rows; r++) {
    const xr = x + (<usize>r * <usize>cols << 2);
    const yr = y + (<usize>r * <usize>cols << 2);
    const m = rowMax(xr, cols);
    const ls = <f32>Math.log(expShift(xr, 0, cols, m));
    const mv = f32x4.splat(m), lv = f32x4.splat(ls);
    let c = 0;
    for (; c + 4 <= cols; c += 4) {
      const o = <usize>c << 2;
      v128.store(yr + o, f32x4.sub(f32x4.sub(v128.load(xr + o), mv), lv));
    }
    for (; c < cols; c++) store<f32>(yr + (<usize>c << 2), load<f32>(xr + (<usize>c << 2)) - m - ls);
  }
}

export function f32_softmax_backward_rows(y: usize, gy: usize, gx: usize, rows: i32, cols: i32): void {
  for (let r = 0; r < rows; r++) {
    const o = <usize>r * <usize>cols << 2;
    let d: f64 = 0;
    let c = 0;
    for (; c + 4 <= cols; c += 4) {
      const q = o + (<usize>c << 2);
      const g = v128.load(gy + q), v = v128.load(y + q);
      const a = f64x2.mul(lo(g), lo(v)), b = f64x2.mul(hi(g), hi(v));
      d = add2(add2(d, a), b);
    }
    for (; c < cols; c++) d += <f64>load<f32>(gy + o + (<usize>c << 2)) * <f64>load<f32>(y + o + (<usize>c << 2));
    const dv = f64x2.splat(d);
    c = 0;
    for (; c + 4 <= cols; c += 4) {
      const q = o + (<usize>c << 2);
      const g = v128.load(gy + q), v = v128.load(y + q);
      v128.store(gx + q, pack(f64x2.mul(lo(v), f64x2.sub(lo(g), dv)), f64x2.mul(hi(v), f64x2.sub(hi(g), dv))));
    }
    for (; c < cols; c++) {
      const q = o + (<usize>c << 2);
      store<f32>(gx + q, <f32>(<f64>load<f32>(y + q) * (<f64>load<f32>(gy + q) - d)));
    }
  }
}

export function f32_log_softmax_backward_rows(y: usize, gy: usize, gx: usize, rows: i32, cols: i32): void {
  for (let r = 0; r < rows; r++) {
    const o = <usize>r * <usize>cols << 2;
    let s: f64 = 0;
    let c = 0;
    for (; c + 4 <= cols; c += 4) {
      const g = v128.load(gy + o + (<usize>c << 2));
      s += <f64>f32x4.extract_lane(g, 0);
      s += <f64>f32x4.extract_lane(g, 1);
      s += <f64>f32x4.extract_lane(g, 2);
      s += <f64>f32x4.extract_lane(g, 3);
    }
    for (; c < cols; c++) s += <f64>load<f32>(gy + o + (<usize>c << 2));
    const sv = f64x2.splat(s);
    c = 0;
    for (; c + 4 <= cols; c += 4) {
      const q = o + (<usize>c << 2);
      const g = v128.load(gy + q), v = v128.load(y + q);
      v128.store(gx + q, pack(f64x2.sub(lo(g), f64x2.mul(exp64x2(lo(v)), sv)), f64x2.sub(hi(g), f64x2.mul(exp64x2(hi(v)), sv))));
    }
    for (; c < cols; c++) {
      const q = o + (<usize>c << 2);
      store<f32>(gx + q, <f32>(<f64>load<f32>(gy + q) - exp64(<f64>load<f32>(y + q)) * s));
    }
  }
}
