// Test helpers for the kernel specs: a deterministic PRNG, buffers, comparisons, random sparse positions.

let state: u32 = 1;

/** Seeds the xorshift32 generator (0 is mapped to 1). */
export function srand(s: u32): void {
  state = s ? s : 1;
}

/** Next xorshift32 value. */
export function nextU32(): u32 {
  let s = state;
  s ^= s << 13;
  s ^= s >> 17;
  s ^= s << 5;
  state = s;
  return s;
}

/** Uniform f32 in [-1, 1). */
export function rnd(): f32 {
  return <f32>((<f64>nextU32() / 4294967296.0) * 2.0 - 1.0);
}

/** Uniform integer in [0, n). */
export function randInt(n: i32): i32 {
  return <i32>((<u64>nextU32() * <u64>n) >> 32);
}

/** n floats, uniform in [-scale, scale), from `seed`. */
export function allocRandom(n: i32, seed: u32, scale: f32 = 1): usize {
  srand(seed);
  const p = heap.alloc(<usize>max(n, 1) << 2);
  for (let i = 0; i < n; i++) store<f32>(p + (<usize>i << 2), rnd() * scale);
  return p;
}

/** n zero floats. */
export function allocZero(n: i32): usize {
  const p = heap.alloc(<usize>max(n, 1) << 2);
  memory.fill(p, 0, <usize>max(n, 1) << 2);
  return p;
}

/** A copy of n floats. */
export function allocCopy(src: usize, n: i32): usize {
  const p = heap.alloc(<usize>max(n, 1) << 2);
  memory.copy(p, src, <usize>n << 2);
  return p;
}

/** |v| elementwise into a new buffer. */
export function allocAbs(src: usize, n: i32): usize {
  const p = heap.alloc(<usize>max(n, 1) << 2);
  for (let i = 0; i < n; i++) store<f32>(p + (<usize>i << 2), abs<f32>(load<f32>(src + (<usize>i << 2))));
  return p;
}

/** Number of elements whose bit patterns differ (NaN payloads count as equal NaNs, -0 != +0). */
export function bitDiffs(a: usize, b: usize, n: i32): i32 {
  let d = 0;
  for (let i = 0; i < n; i++) {
    const x = load<f32>(a + (<usize>i << 2)), y = load<f32>(b + (<usize>i << 2));
    if (isNaN<f32>(x) && isNaN<f32>(y)) continue;
    if (reinterpret<u32>(x) != reinterpret<u32>(y)) d++;
  }
  return d;
}

/**
 * Number of elements with |a - b| > tol[i], tol[i] = c * bound[i] (+ tiny): `bound` is the same computation on
 * absolute values (sum of |terms|), the usual bound for reordered floating-point sums:
 * |sum_order1 - sum_order2| <= 2 (k + 2) u sum |terms|, u = 2^-24.
 */
export function boundDiffs(a: usize, b: usize, bound: usize, n: i32, c: f64): i32 {
  let d = 0;
  for (let i = 0; i < n; i++) {
    const x = <f64>load<f32>(a + (<usize>i << 2)), y = <f64>load<f32>(b + (<usize>i << 2));
    const tol = c * <f64>load<f32>(bound + (<usize>i << 2)) + 1e-30;
    if (!(abs(x - y) <= tol)) d++;
  }
  return d;
}

/** The f32 unit roundoff 2^-24. */
export const U32: f64 = 5.960464477539063e-8;

/** Random distinct positions of an [N, K] matrix, sorted row-major: flat indices and CSR (rowPtr, col). */
export class Positions {
  nnz: i32;
  flat: usize;
  rowPtr: usize;
  col: usize;
  constructor(N: i32, K: i32, nnz: i32, seed: u32) {
    srand(seed);
    const total = N * K;
    if (nnz > total) nnz = total;
    const taken = heap.alloc(<usize>max(total, 1));
    memory.fill(taken, 0, <usize>max(total, 1));
    let c = 0;
    while (c < nnz) {
      const p = randInt(total);
      if (load<u8>(taken + <usize>p)) continue;
      store<u8>(taken + <usize>p, 1);
      c++;
    }
    this.nnz = nnz;
    this.flat = heap.alloc(<usize>max(nnz, 1) << 2);
    this.col = heap.alloc(<usize>max(nnz, 1) << 2);
    this.rowPtr = heap.alloc(<usize>(N + 1) << 2);
    store<i32>(this.rowPtr, 0);
    let j = 0;
    for (let r = 0; r < N; r++) {
      for (let k = 0; k < K; k++) {
        if (load<u8>(taken + <usize>(r * K + k))) {
          store<i32>(this.flat + (<usize>j << 2), r * K + k);
          store<i32>(this.col + (<usize>j << 2), k);
          j++;
        }
      }
      store<i32>(this.rowPtr + (<usize>(r + 1) << 2), j);
    }
    heap.free(taken);
  }
  free(): void {
    heap.free(this.flat);
    heap.free(this.col);
    heap.free(this.rowPtr);
  }
}
