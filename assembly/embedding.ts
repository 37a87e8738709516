// Row gathers and row-broadcast adds for decoder LMs, and the greedy-decoding argmax.
//   f32_embedding:     out[i, :] = table[ids[i], :]          (ids i32, trusted; ggml's get_rows)
//   f32_embedding_add: out[i, :] += table[ids[i], :]         (learned positions: OPT, GPT-2)
//   f32_bias_add:      y[r, :] += b                           (rows x N)
//   f32_argmax:        first index of the maximum of x[0..n), as torch.argmax: a NaN counts as the maximum,
//                      so the first NaN's index is returned; -1 when n <= 0
//
// The SIMD forms are bit-identical to the scalar twins (copies, one f32 add per element, and order-free
// max/compare). argmax takes two passes: the maximum (f32x4.max, NaN-propagating), then the first index whose
// value equals it (or is NaN when the maximum is NaN), 16 floats per test. The row add (addVec) and the maximum
// (maxOf) are in util/simd.ts.

import { addVec, maxOf } from "./util/simd";

// ---------------------------------------------------------------- scalar twins

export function f32_embedding_scalar(table: usize, ids: usize, out: usize, n: i32, D: i32): void {
  for (let i = 0; i < n; i++) {
    const src = table + (<usize>load<i32>(ids + (<usize>i << 2)) * <usize>D << 2);
    const dst = out + (<usize>i * <usize>D << 2);
    for (let d = 0; d < D; d++) store<f32>(dst + (<usize>d << 2), load<f32>(src + (<usize>d << 2)));
  }
}
export function f32_embedding_add_scalar(table: usize, ids: usize, out: usize, n: i32, D: i32): void {
  for (let i = 0; i < n; i++) {
    const src = table + (<usize>load<i32>(ids + (<usize>i << 2)) * <usize>D << 2);
    const dst = out + (<usize>i * <usize>D << 2);
    for (let d = 0; d < D; d++) {
      const o = <usize>d << 2;
      store<f32>(dst + o, load<f32>(dst + o) + load<f32>(src + o));
    }
  }
}
export function f32_bias_add_scalar(y: usize, b: usize, rows: i32, N: i32): void {
  for (let r = 0; r < rows; r++) {
    const yr = y + (<usize>r * <usize>N << 2);
    for (let c = 0; c < N; c++) {
      const o = <usize>c << 2;
      store<f32>(yr + o, load<f32>(yr + o) + load<f32>(b + o));
    }
  }
}
export function f32_argmax_scalar(x: usize, n: i32): i32 {
  if (n <= 0) return -1;
  let best = load<f32>(x);
  let at = 0;
  if (isNaN<f32>(best)) return 0;
  for (let i = 1; i < n; i++) {
    const v = load<f32>(x + (<usize>i << 2));
    if (isNaN<f32>(v)) return i;
    if (v > best) {
      best = v;
      at = i;
    }
  }
  return at;
}

// ---------------------------------------------------------------- SIMD kernels

export function f32_embedding(table: usize, ids: usize, out: usize, n: i32, D: i32): void {
  const bytes = <usize>D << 2;
  for (let i = 0; i < n; i++) {
    memory.copy(out + <usize>i * bytes, table + <usize>load<i32>(ids + (<usize>i << 2)) * bytes, bytes);
  }
}

export function f32_embedding_add(table: usize, ids: usize, out: usize, n: i32, D: i32): void {
  const bytes = <usize>D << 2;
  for (let i = 0; i < n; i++) {
    const o = out + <usize>i * bytes;
    addVec(o, table + <usize>load<i32>(ids + (<usize>i << 2)) * bytes, o, D);
  }
}

export function f32_bias_add(y: usize, b: usize, rows: i32, N: i32): void {
  const bytes = <usize>N << 2;
  for (let r = 0; r < rows; r++) {
    const yr = y + <usize>r * bytes;
    addVec(yr, b, yr, N);
  }
}

export function f32_argmax(x: usize, n: i32): i32 {
  if (n <= 0) return -1;
  // pass 1: the maximum (NaN if any element is NaN)
  const m = maxOf(x, n);
  // pass 2: the first element equal to it (NaN maximum: the first NaN)
  const nan = isNaN<f32>(m);
  const mv = f32x4.splat(m);
  let i = 0;
  for (; i + 16 <= n; i += 16) {
    const p = x + (<usize>i << 2);
    const a = v128.load(p), b = v128.load(p, 16), c = v128.load(p, 32), d = v128.load(p, 48);
    const hit = nan
      ? v128.or(v128.or(f32x4.ne(a, a), f32x4.ne(b, b)), v128.or(f32x4.ne(c, c), f32x4.ne(d, d)))
      : v128.or(v128.or(f32x4.eq(a, mv), f32x4.eq(b, mv)), v128.or(f32x4.eq(c, mv), f32x4.eq(d, mv)));
    if (v128.any_true(hit)) break;
  }
  for (; i < n; i++) {
    const v = load<f32>(x + (<usize>i << 2));
    if (nan ? isNaN<f32>(v) : v == m) return i;
  }
  return -1; // not reached
}
