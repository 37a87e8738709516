// Sparse delta forward for the unfused path:
//   y[B,N] += scale * x[B,K] . S[N,K]^T,   S in CSR by output row: rowPtr i32[N+1], idx i32[nnz] (flat positions
//   n * rowLen + col, ascending), val f32[nnz]. The column of position j in CSR row n is col[j] = idx[j] - n * rowLen
//   (rowLen = K for a dense [N, K] weight); no separate column array is stored.
// `scratch` points to f32_spmm_csr_scratch(B, K, N) floats the kernel may use (0 floats needed -> may be 0).
//
// Per output (b, n) the sum runs over the row's positions in CSR order, s = sum_j val[j] x[b, col[j]], and
// y += scale * s, exactly as the scalar twin: both SIMD paths keep that order (they only run independent rows
// or batch rows side by side), so the plain-SIMD build is bit-identical to f32_spmm_csr_scalar.
//
// B == 1 (no scratch): 4 CSR rows at once, 4 independent scalar chains (a single chain is bound by the add
// latency, ~4 cycles per position), the shortest row's length together, then each row's rest.
//
// B >= 2 (scratch = K * Bp floats, Bp = B rounded up to 4): x is transposed once into xT[K, Bp] (util/pack.ts),
// then each position j of row n is one broadcast of val[j] times contiguous batch vectors of xT (the SpMM
// "vectorize over the dense dimension" layout, as XNNPACK's f32-spmm kernels vectorize over their M):
//
//        xT row col[j]:  [x0 x1 x2 x3 | x4 ... x15] [x16 ...]        lanes = batch rows b
//        acc[q] += splat(val[j]) * xT[col[j], 16c + 4q .. +3]        q = 0..3, chunk c of 16 batch rows
//        y[16c + l, n] += scale * acc lane l
//
// The column is never formed on its own: the x (or xT) base pointer of row n is moved back by n * rowLen columns once
// per row (32-bit wrapping usize arithmetic), so that base + idx[j] * stride is the address of column col[j], with
// no extra work per position. Only where the column comes from changed; the order of the float operations did not.
//
// Chunks of 16 lanes keep 4 accumulators + 4 loads in registers; chunks of 8 and 4 lanes run two CSR rows
// at once so that 4 (resp. 2) add chains are in flight.

export function f32_spmm_csr_scratch(B: i32, K: i32, N: i32): i32 {
  return B <= 1 ? 0 : K * ((B + 3) & ~3);
}

export function f32_spmm_csr_scalar(x: usize, rowPtr: usize, idx: usize, rowLen: i32, val: usize, scale: f32, y: usize, B: i32, K: i32, N: i32, scratch: usize): void {
  for (let b = 0; b < B; b++) {
    const xr = x + (<usize>b * <usize>K << 2);
    const yr = y + (<usize>b * <usize>N << 2);
    for (let n = 0; n < N; n++) {
      const j0 = load<i32>(rowPtr + (<usize>n << 2));
      const j1 = load<i32>(rowPtr + (<usize>(n + 1) << 2));
      const base = n * rowLen;
      let s: f32 = 0;
      for (let j = j0; j < j1; j++) {
        const c = load<i32>(idx + (<usize>j << 2)) - base;
        s += load<f32>(val + (<usize>j << 2)) * load<f32>(xr + (<usize>c << 2));
      }
      const yp = yr + (<usize>n << 2);
      store<f32>(yp, load<f32>(yp) + scale * s);
    }
  }
}

import { packTransposed } from "./util/pack";
import { madd } from "./util/simd";

/** `p` moved back by `r * rowLen` elements of `stride` bytes (wrapping): `rowBase(p, r, ..) + idx[j] * stride` is
 * `p + col[j] * stride` for a position j of CSR row r. Never dereferenced itself. */
// @ts-ignore: decorator
@inline function rowBase(p: usize, r: i32, rowLen: i32, stride: usize): usize {
  return p - <usize>r * <usize>rowLen * stride;
}

// ---------------------------------------------------------------- B == 1

/** Sequential dot of one CSR row segment [j, e) with x (the twin's order), continuing from s; `xb` is the row's
 * rowBase of x. */
// @ts-ignore: decorator
@inline function rowRest(xb: usize, idx: usize, val: usize, j: i32, e: i32, s: f32): f32 {
  for (; j < e; j++) s += load<f32>(val + (<usize>j << 2)) * load<f32>(xb + (<usize>load<i32>(idx + (<usize>j << 2)) << 2));
  return s;
}

function spmvRows(x: usize, rowPtr: usize, idx: usize, rowLen: i32, val: usize, scale: f32, y: usize, N: i32): void {
  let n = 0;
  for (; n + 4 <= N; n += 4) {
    const r = rowPtr + (<usize>n << 2);
    const a0 = load<i32>(r), a1 = load<i32>(r, 4), a2 = load<i32>(r, 8), a3 = load<i32>(r, 12), a4 = load<i32>(r, 16);
    const m = min(min(a1 - a0, a2 - a1), min(a3 - a2, a4 - a3));
    const x0 = rowBase(x, n, rowLen, 4), x1 = rowBase(x, n + 1, rowLen, 4), x2 = rowBase(x, n + 2, rowLen, 4), x3 = rowBase(x, n + 3, rowLen, 4);
    let c0 = idx + (<usize>a0 << 2), c1 = idx + (<usize>a1 << 2), c2 = idx + (<usize>a2 << 2), c3 = idx + (<usize>a3 << 2);
    let v0 = val + (<usize>a0 << 2), v1 = val + (<usize>a1 << 2), v2 = val + (<usize>a2 << 2), v3 = val + (<usize>a3 << 2);
    let s0: f32 = 0, s1: f32 = 0, s2: f32 = 0, s3: f32 = 0;
    const ce = c0 + (<usize>m << 2);
    while (c0 < ce) {
      s0 += load<f32>(v0) * load<f32>(x0 + (<usize>load<i32>(c0) << 2));
      s1 += load<f32>(v1) * load<f32>(x1 + (<usize>load<i32>(c1) << 2));
      s2 += load<f32>(v2) * load<f32>(x2 + (<usize>load<i32>(c2) << 2));
      s3 += load<f32>(v3) * load<f32>(x3 + (<usize>load<i32>(c3) << 2));
      c0 += 4;
      c1 += 4;
      c2 += 4;
      c3 += 4;
      v0 += 4;
      v1 += 4;
      v2 += 4;
      v3 += 4;
    }
    s0 = rowRest(x0, idx, val, a0 + m, a1, s0);
    s1 = rowRest(x1, idx, val, a1 + m, a2, s1);
    s2 = rowRest(x2, idx, val, a2 + m, a3, s2);
    s3 = rowRest(x3, idx, val, a3 + m, a4, s3);
    const yp = y + (<usize>n << 2);
    store<f32>(yp, load<f32>(yp) + scale * s0);
    store<f32>(yp, load<f32>(yp, 4) + scale * s1, 4);
    store<f32>(yp, load<f32>(yp, 8) + scale * s2, 8);
    store<f32>(yp, load<f32>(yp, 12) + scale * s3, 12);
  }
  for (; n < N; n++) {
    const r = rowPtr + (<usize>n << 2);
    const s = rowRest(rowBase(x, n, rowLen, 4), idx, val, load<i32>(r), load<i32>(r, 4), 0);
    const yp = y + (<usize>n << 2);
    store<f32>(yp, load<f32>(yp) + scale * s);
  }
}

// ---------------------------------------------------------------- B >= 2

/** y[l * ys] += lanes l < nv of sv * acc (product rounded to f32, then one f32 add: the twin's scale * s). */
// @ts-ignore: decorator
@inline function addLanes(y: usize, ys: usize, acc: v128, sv: v128, nv: i32): void {
  const t = f32x4.mul(sv, acc);
  store<f32>(y, load<f32>(y) + f32x4.extract_lane(t, 0));
  if (nv > 1) store<f32>(y + ys, load<f32>(y + ys) + f32x4.extract_lane(t, 1));
  if (nv > 2) store<f32>(y + 2 * ys, load<f32>(y + 2 * ys) + f32x4.extract_lane(t, 2));
  if (nv > 3) store<f32>(y + 3 * ys, load<f32>(y + 3 * ys) + f32x4.extract_lane(t, 3));
}

/** Chunk of 16 batch lanes at xT + lane offset `xc`, row stride xs bytes; y at column 0 of batch row 16c. */
function chunk16(xc: usize, xs: usize, rowPtr: usize, idx: usize, rowLen: i32, val: usize, sv: v128, y: usize, ys: usize, N: i32, nv: i32): void {
  for (let n = 0; n < N; n++) {
    const j0 = load<i32>(rowPtr + (<usize>n << 2)), j1 = load<i32>(rowPtr + (<usize>n << 2), 4);
    let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
    const xn = rowBase(xc, n, rowLen, xs);
    let cp = idx + (<usize>j0 << 2), vp = val + (<usize>j0 << 2);
    const ce = idx + (<usize>j1 << 2);
    while (cp < ce) {
      const p = xn + <usize>load<i32>(cp) * xs;
      const s = v128.load32_splat(vp);
      a0 = madd(s, v128.load(p), a0);
      a1 = madd(s, v128.load(p, 16), a1);
      a2 = madd(s, v128.load(p, 32), a2);
      a3 = madd(s, v128.load(p, 48), a3);
      cp += 4;
      vp += 4;
    }
    const yp = y + (<usize>n << 2);
    addLanes(yp, ys, a0, sv, nv);
    if (nv > 4) addLanes(yp + 4 * ys, ys, a1, sv, nv - 4);
    if (nv > 8) addLanes(yp + 8 * ys, ys, a2, sv, nv - 8);
    if (nv > 12) addLanes(yp + 12 * ys, ys, a3, sv, nv - 12);
  }
}

/** Chunk of 8 lanes: two CSR rows at once (4 add chains), then the longer row's rest. */
function chunk8(xc: usize, xs: usize, rowPtr: usize, idx: usize, rowLen: i32, val: usize, sv: v128, y: usize, ys: usize, N: i32, nv: i32): void {
  for (let n = 0; n < N; n += 2) {
    const two = n + 1 < N;
    const r = rowPtr + (<usize>n << 2);
    const ja = load<i32>(r), jb = load<i32>(r, 4), je = two ? load<i32>(r, 8) : jb;
    const m = min(jb - ja, je - jb);
    let a0 = f32x4.splat(0), a1 = a0, b0 = a0, b1 = a0;
    const xa = rowBase(xc, n, rowLen, xs), xb = rowBase(xc, n + 1, rowLen, xs);
    let ca = idx + (<usize>ja << 2), va = val + (<usize>ja << 2);
    let cb = idx + (<usize>jb << 2), vb = val + (<usize>jb << 2);
    const cm = ca + (<usize>m << 2);
    while (ca < cm) {
      const p = xa + <usize>load<i32>(ca) * xs, q = xb + <usize>load<i32>(cb) * xs;
      const s = v128.load32_splat(va), t = v128.load32_splat(vb);
      a0 = madd(s, v128.load(p), a0);
      a1 = madd(s, v128.load(p, 16), a1);
      b0 = madd(t, v128.load(q), b0);
      b1 = madd(t, v128.load(q, 16), b1);
      ca += 4;
      va += 4;
      cb += 4;
      vb += 4;
    }
    const cae = idx + (<usize>jb << 2);
    while (ca < cae) {
      const p = xa + <usize>load<i32>(ca) * xs;
      const s = v128.load32_splat(va);
      a0 = madd(s, v128.load(p), a0);
      a1 = madd(s, v128.load(p, 16), a1);
      ca += 4;
      va += 4;
    }
    const cbe = idx + (<usize>je << 2);
    while (cb < cbe) {
      const q = xb + <usize>load<i32>(cb) * xs;
      const t = v128.load32_splat(vb);
      b0 = madd(t, v128.load(q), b0);
      b1 = madd(t, v128.load(q, 16), b1);
      cb += 4;
      vb += 4;
    }
    const yp = y + (<usize>n << 2);
    addLanes(yp, ys, a0, sv, nv);
    if (nv > 4) addLanes(yp + 4 * ys, ys, a1, sv, nv - 4);
    if (two) {
      addLanes(yp + 4, ys, b0, sv, nv);
      if (nv > 4) addLanes(yp + 4 + 4 * ys, ys, b1, sv, nv - 4);
    }
  }
}

/** Chunk of 4 lanes: two CSR rows at once. */
function chunk4(xc: usize, xs: usize, rowPtr: usize, idx: usize, rowLen: i32, val: usize, sv: v128, y: usize, ys: usize, N: i32, nv: i32): void {
  for (let n = 0; n < N; n += 2) {
    const two = n + 1 < N;
    const r = rowPtr + (<usize>n << 2);
    const ja = load<i32>(r), jb = load<i32>(r, 4), je = two ? load<i32>(r, 8) : jb;
    const m = min(jb - ja, je - jb);
    let a = f32x4.splat(0), b = a;
    const xa = rowBase(xc, n, rowLen, xs), xb = rowBase(xc, n + 1, rowLen, xs);
    let ca = idx + (<usize>ja << 2), va = val + (<usize>ja << 2);
    let cb = idx + (<usize>jb << 2), vb = val + (<usize>jb << 2);
    const cm = ca + (<usize>m << 2);
    while (ca < cm) {
      a = madd(v128.load32_splat(va), v128.load(xa + <usize>load<i32>(ca) * xs), a);
      b = madd(v128.load32_splat(vb), v128.load(xb + <usize>load<i32>(cb) * xs), b);
      ca += 4;
      va += 4;
      cb += 4;
      vb += 4;
    }
    const cae = idx + (<usize>jb << 2);
    while (ca < cae) {
      a = madd(v128.load32_splat(va), v128.load(xa + <usize>load<i32>(ca) * xs), a);
      ca += 4;
      va += 4;
    }
    const cbe = idx + (<usize>je << 2);
    while (cb < cbe) {
      b = madd(v128.load32_splat(vb), v128.load(xb + <usize>load<i32>(cb) * xs), b);
      cb += 4;
      vb += 4;
    }
    const yp = y + (<usize>n << 2);
    addLanes(yp, ys, a, sv, nv);
    if (two) addLanes(yp + 4, ys, b, sv, nv);
  }
}

export function f32_spmm_csr(x: usize, rowPtr: usize, idx: usize, rowLen: i32, val: usize, scale: f32, y: usize, B: i32, K: i32, N: i32, scratch: usize): void {
  if (B <= 0 || N <= 0) return;
  if (B == 1) {
    spmvRows(x, rowPtr, idx, rowLen, val, scale, y, N);
    return;
  }
  const Bp = (B + 3) & ~3;
  packTransposed(x, <usize>K << 2, B, K, scratch, Bp);
  const xs = <usize>Bp << 2, ys = <usize>N << 2;
  const sv = f32x4.splat(scale);
  let c = 0;
  for (; c + 16 <= Bp; c += 16) chunk16(scratch + (<usize>c << 2), xs, rowPtr, idx, rowLen, val, sv, y + <usize>c * ys, ys, N, min(16, B - c));
  if (c + 8 <= Bp) {
    chunk8(scratch + (<usize>c << 2), xs, rowPtr, idx, rowLen, val, sv, y + <usize>c * ys, ys, N, min(8, B - c));
    c += 8;
  }
  if (c < Bp) chunk4(scratch + (<usize>c << 2), xs, rowPtr, idx, rowLen, val, sv, y + <usize>c * ys, ys, N, B - c);
}

// ================================================================ f32_spmm_csr_t (fan_in_fan_out layers)
//
// Sparse delta forward for a layer whose weight is stored [K = in, N = out] (GPT-2's Conv1D, y = x . W + b):
//   y[B,N] += scale * x[B,K] . S[K,N],   S in CSR by *input* row k: rowPtr i32[K+1], idx i32[nnz] (flat positions
//   k * rowLen + col, ascending; col is the output index, rowLen = N for a dense [K, N] weight), val f32[nnz];
//   i.e. for every position j of row k:  y[b, col[j]] += scale * (val[j] * x[b, k]),  col[j] = idx[j] - k * rowLen.
// Each contribution is rounded into y on its own; per output (b, n) they arrive in CSR order (k ascending, then j),
// as in the scalar twin, so the kernel is bit-identical to it. (With the roles of the two operands swapped this is
// also the input gradient of a plain Linear's sparse delta: gx[b, k] += scale * val[j] * gy[b, n].)
//
// The positions of one input row scatter into unrelated outputs, so there is no contiguous vector to load along N;
// the kernel runs 4 batch rows at a time (val/idx read once per 4 rows, 4 independent add chains) and needs no
// scratch.

export function f32_spmm_csr_t_scalar(x: usize, rowPtr: usize, idx: usize, rowLen: i32, val: usize, scale: f32, y: usize, B: i32, K: i32, N: i32): void {
  for (let b = 0; b < B; b++) {
    const xr = x + (<usize>b * <usize>K << 2);
    const yr = y + (<usize>b * <usize>N << 2);
    for (let k = 0; k < K; k++) {
      const xv = load<f32>(xr + (<usize>k << 2));
      const j0 = load<i32>(rowPtr + (<usize>k << 2));
      const j1 = load<i32>(rowPtr + (<usize>(k + 1) << 2));
      const base = k * rowLen;
      for (let j = j0; j < j1; j++) {
        const yp = yr + (<usize>(load<i32>(idx + (<usize>j << 2)) - base) << 2);
        store<f32>(yp, load<f32>(yp) + scale * (load<f32>(val + (<usize>j << 2)) * xv));
      }
    }
  }
}

export function f32_spmm_csr_t(x: usize, rowPtr: usize, idx: usize, rowLen: i32, val: usize, scale: f32, y: usize, B: i32, K: i32, N: i32): void {
  if (B <= 0 || N <= 0 || K <= 0) return;
  const xs = <usize>K << 2, ys = <usize>N << 2;
  let b = 0;
  for (; b + 4 <= B; b += 4) {
    const x0 = x + <usize>b * xs, y0 = y + <usize>b * ys;
    for (let k = 0; k < K; k++) {
      const j0 = load<i32>(rowPtr + (<usize>k << 2));
      const j1 = load<i32>(rowPtr + (<usize>k << 2), 4);
      if (j0 == j1) continue;
      const xp = x0 + (<usize>k << 2);
      const a0 = load<f32>(xp), a1 = load<f32>(xp + xs), a2 = load<f32>(xp + 2 * xs), a3 = load<f32>(xp + 3 * xs);
      const yk = rowBase(y0, k, rowLen, 4);
      for (let j = j0; j < j1; j++) {
        const v = load<f32>(val + (<usize>j << 2));
        const p = yk + (<usize>load<i32>(idx + (<usize>j << 2)) << 2);
        store<f32>(p, load<f32>(p) + scale * (v * a0));
        store<f32>(p + ys, load<f32>(p + ys) + scale * (v * a1));
        store<f32>(p + 2 * ys, load<f32>(p + 2 * ys) + scale * (v * a2));
        store<f32>(p + 3 * ys, load<f32>(p + 3 * ys) + scale * (v * a3));
      }
    }
  }
  for (; b < B; b++) {
    const xr = x + <usize>b * xs, yr = y + <usize>b * ys;
    for (let k = 0; k < K; k++) {
      const j0 = load<i32>(rowPtr + (<usize>k << 2));
      const j1 = load<i32>(rowPtr + (<usize>k << 2), 4);
      if (j0 == j1) continue;
      const xv = load<f32>(xr + (<usize>k << 2));
      const yk = rowBase(yr, k, rowLen, 4);
      for (let j = j0; j < j1; j++) {
        const p = yk + (<usize>load<i32>(idx + (<usize>j << 2)) << 2);
        store<f32>(p, load<f32>(p) + scale * (load<f32>(val + (<usize>j << 2)) * xv));
      }
    }
  }
}
