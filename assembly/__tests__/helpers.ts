// Test helpers for the kernel specs (imported by the *.spec.ts files; as-pect runs only those as specs): a
// deterministic PRNG, buffers, comparisons, random sparse positions, and the RoPE and attention test data shared by
// decoder.spec.ts (forward) and backward.spec.ts (gradients).

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

/** n floats equal to v. */
export function allocFill(n: i32, v: f32): usize {
  const p = heap.alloc(<usize>max(n, 1) << 2);
  for (let i = 0; i < n; i++) store<f32>(p + (<usize>i << 2), v);
  return p;
}

/** n zero i32s. */
export function allocI32(n: i32): usize {
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

/**
 * max |a - b| over the first `width` floats of each of `rows` rows (`stride` floats apart), divided by max |b| when
 * `relative` (and max |b| > 0); -1 when a compared value is not finite or a float past `width` is not `gap` in both.
 */
export function rowsDiff(a: usize, b: usize, rows: i32, stride: i32, width: i32, gap: f32, relative: bool): f64 {
  let worst: f64 = 0, big: f64 = 0;
  for (let r = 0; r < rows; r++)
    for (let k = 0; k < stride; k++) {
      const o = <usize>(r * stride + k) << 2;
      const x = load<f32>(a + o), y = load<f32>(b + o);
      if (k >= width) {
        if (x != gap || y != gap) return -1;
        continue;
      }
      if (!isFinite<f32>(x) || !isFinite<f32>(y)) return -1;
      worst = max(worst, abs(<f64>x - <f64>y));
      big = max(big, abs(<f64>y));
    }
  return relative && big > 0 ? worst / big : worst;
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

/**
 * A RoPE problem: `rows` rows of nH = 3 heads of hd floats (stride nH hd + 3), `half` rotary pairs per head, layout
 * `il`; x0 random in [-2, 2) with two copies x1, x2 for the kernels; cos/sin tables of maxPos = 50 positions (real
 * angles, cos^2 + sin^2 = 1, when `angles`, else random); positions at random.
 */
export class RopeCase {
  rows: i32;
  nH: i32 = 3;
  hd: i32;
  half: i32;
  il: i32;
  stride: i32;
  n: i32;
  x0: usize;
  x1: usize;
  x2: usize;
  cs: usize;
  sn: usize;
  pos: usize;
  constructor(rows: i32, hd: i32, half: i32, il: i32, angles: bool, seed: u32) {
    const maxPos = 50;
    this.rows = rows;
    this.hd = hd;
    this.half = half;
    this.il = il;
    this.stride = this.nH * hd + 3;
    this.n = rows * this.stride;
    if (angles) {
      this.cs = heap.alloc(<usize>(maxPos * half) << 2);
      this.sn = heap.alloc(<usize>(maxPos * half) << 2);
      for (let p = 0; p < maxPos; p++)
        for (let i = 0; i < half; i++) {
          const th = <f64>p * Math.pow(10000.0, -2.0 * <f64>i / <f64>(2 * half));
          store<f32>(this.cs + (<usize>(p * half + i) << 2), <f32>Math.cos(th));
          store<f32>(this.sn + (<usize>(p * half + i) << 2), <f32>Math.sin(th));
        }
    } else {
      this.cs = allocRandom(maxPos * half, seed + 1);
      this.sn = allocRandom(maxPos * half, seed + 2);
    }
    this.pos = allocI32(rows);
    srand(seed + 3);
    for (let r = 0; r < rows; r++) store<i32>(this.pos + (<usize>r << 2), randInt(maxPos));
    this.x0 = allocRandom(this.n, seed, 2);
    this.x1 = allocCopy(this.x0, this.n);
    this.x2 = allocCopy(this.x0, this.n);
  }
  /** Runs a rope kernel (f32_rope, f32_rope_backward or a twin) on x, one of x0, x1, x2. */
  run(kernel: (x: usize, stride: i32, rows: i32, nHeads: i32, headDim: i32, pos: usize, cos: usize, sin: usize, half: i32, interleaved: i32) => void, x: usize): void {
    kernel(x, this.stride, this.rows, this.nH, this.hd, this.pos, this.cs, this.sn, this.half, this.il);
  }
  /** Whether float k of a row is in the rotary part of a head (the rest: the non-rotary tail, the row gap). */
  rotary(k: i32): bool {
    return k < this.nH * this.hd && k % this.hd < 2 * this.half;
  }
  /** Floats of x whose bits differ from x0's, in the rotary part (`rotary`) or outside it. */
  changed(x: usize, rotary: bool): i32 {
    let c = 0;
    for (let r = 0; r < this.rows; r++)
      for (let k = 0; k < this.stride; k++) {
        const o = <usize>(r * this.stride + k) << 2;
        if (this.rotary(k) == rotary && reinterpret<u32>(load<f32>(x + o)) != reinterpret<u32>(load<f32>(this.x0 + o))) c++;
      }
    return c;
  }
  free(): void {
    heap.free(this.x0);
    heap.free(this.x1);
    heap.free(this.x2);
    heap.free(this.cs);
    heap.free(this.sn);
    heap.free(this.pos);
  }
}

/**
 * The shape and buffers of an attention problem: q rows (stride nH hd + 3), caches kc, vc [B][nKv][maxSeq][hd] and
 * an optional key mask (i32 [B][maxSeq]); the subclasses of the specs fill them.
 */
export class AttnCase {
  B: i32;
  T: i32;
  nH: i32;
  nKv: i32;
  hd: i32;
  maxSeq: i32;
  window: i32;
  qStride: i32;
  q: usize = 0;
  kc: usize = 0;
  vc: usize = 0;
  mask: usize = 0;
  constructor(B: i32, T: i32, nH: i32, nKv: i32, hd: i32, maxSeq: i32, window: i32) {
    this.B = B;
    this.T = T;
    this.nH = nH;
    this.nKv = nKv;
    this.hd = hd;
    this.maxSeq = maxSeq;
    this.window = window;
    this.qStride = nH * hd + 3;
  }
  /** Floats of one cache. */
  cacheLen(): i32 {
    return this.B * this.nKv * this.maxSeq * this.hd;
  }
  /** Sets slot j of batch b (every kv head) to v in both caches. */
  fillSlot(b: i32, j: i32, v: f32): void {
    for (let g = 0; g < this.nKv; g++)
      for (let d = 0; d < this.hd; d++) {
        const o = <usize>(((b * this.nKv + g) * this.maxSeq + j) * this.hd + d) << 2;
        store<f32>(this.kc + o, v);
        store<f32>(this.vc + o, v);
      }
  }
  free(): void {
    heap.free(this.q);
    heap.free(this.kc);
    heap.free(this.vc);
    if (this.mask) heap.free(this.mask);
  }
}
