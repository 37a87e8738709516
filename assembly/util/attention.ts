// The pieces of the attention kernels shared by attention.ts (f32_attention, f32_attention_scalar) and backward.ts
// (f32_attention_backward and its twin), so that the backward recomputes the forward's weights bit for bit.
//
//   dot1, dot4       SIMD dot products: per key two f32x4 accumulators (even / odd 4-float chunks of D), added,
//                    lanes reduced as (l0 + l2) + (l1 + l3) (hsum1/hsum4), the D % 4 tail added in order
//   softmaxKeys      softmax of a score row in place (optional key mask), bit-identical to the twins' loops
//   accumulatePV     dst += sum_j w_j v_j over consecutive rows v_j (P V; gq += dS K in the backward)
//   accumulateT      dst += sum_i w_i x_i over rows given by pointers, w_i a column of a scratch matrix (gk, gv)
//   weightsScalar    the scalar twins' scores and softmax (sequential dot products)
//
// accumulatePV and accumulateT are one inline loop nest (accumulate): 16, then 4 floats of dst in registers, then
// single floats; for each output float the terms are added in ascending i (zero weights skipped), so the block
// sizes change nothing in the result. (A 32-float block, 8 accumulators, measured ~10 % slower on x64 V8 in both
// the forward and the backward: the registers spill.) The relaxed build may fuse the multiply-adds (madd,
// util/simd.ts).

import { exp64, exp64x2 } from "./math";
import { madd, hsum4, hsum1, lo, hi, pack, add2 } from "./simd";

/** q . k over D floats: two f32x4 accumulators (even / odd chunks), added, lanes reduced, tail in order. */
export function dot1(qp: usize, kp: usize, D: i32): f32 {
  let a = f32x4.splat(0), c = a;
  let d = 0;
  for (; d + 8 <= D; d += 8) {
    const o = <usize>d << 2;
    a = madd(v128.load(qp + o), v128.load(kp + o), a);
    c = madd(v128.load(qp + o, 16), v128.load(kp + o, 16), c);
  }
  if (d + 4 <= D) {
    const o = <usize>d << 2;
    a = madd(v128.load(qp + o), v128.load(kp + o), a);
    d += 4;
  }
  let s = hsum1(f32x4.add(a, c));
  for (; d < D; d++) s += load<f32>(qp + (<usize>d << 2)) * load<f32>(kp + (<usize>d << 2));
  return s;
}

/** [q . k0, q . k1, q . k2, q . k3] for 4 consecutive K rows (ks bytes apart), each in the order of {@link dot1}. */
export function dot4(qp: usize, k0: usize, ks: usize, D: i32): v128 {
  const k1 = k0 + ks, k2 = k1 + ks, k3 = k2 + ks;
  let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0, c0 = a0, c1 = a0, c2 = a0, c3 = a0;
  let d = 0;
  for (; d + 8 <= D; d += 8) {
    const o = <usize>d << 2;
    const x = v128.load(qp + o), y = v128.load(qp + o, 16);
    a0 = madd(x, v128.load(k0 + o), a0);
    a1 = madd(x, v128.load(k1 + o), a1);
    a2 = madd(x, v128.load(k2 + o), a2);
    a3 = madd(x, v128.load(k3 + o), a3);
    c0 = madd(y, v128.load(k0 + o, 16), c0);
    c1 = madd(y, v128.load(k1 + o, 16), c1);
    c2 = madd(y, v128.load(k2 + o, 16), c2);
    c3 = madd(y, v128.load(k3 + o, 16), c3);
  }
  if (d + 4 <= D) {
    const o = <usize>d << 2;
    const x = v128.load(qp + o);
    a0 = madd(x, v128.load(k0 + o), a0);
    a1 = madd(x, v128.load(k1 + o), a1);
    a2 = madd(x, v128.load(k2 + o), a2);
    a3 = madd(x, v128.load(k3 + o), a3);
    d += 4;
  }
  let r = hsum4(f32x4.add(a0, c0), f32x4.add(a1, c1), f32x4.add(a2, c2), f32x4.add(a3, c3));
  if (d < D) {
    let s0 = f32x4.extract_lane(r, 0), s1 = f32x4.extract_lane(r, 1), s2 = f32x4.extract_lane(r, 2), s3 = f32x4.extract_lane(r, 3);
    for (; d < D; d++) {
      const o = <usize>d << 2;
      const x = load<f32>(qp + o);
      s0 += x * load<f32>(k0 + o);
      s1 += x * load<f32>(k1 + o);
      s2 += x * load<f32>(k2 + o);
      s3 += x * load<f32>(k3 + o);
    }
    r = f32x4.replace_lane(f32x4.replace_lane(f32x4.replace_lane(f32x4.replace_lane(r, 0, s0), 1, s1), 2, s2), 3, s3);
  }
  return r;
}

/**
 * Softmax in place over the n scores at sr (bit-identical to the scalar twin's: max is order-free, exps on
 * f64x2, the f64 sum in key order). With a key mask (mr: its i32 row at the same keys), padded keys become
 * -inf first (weight 0). Returns false when no key is admitted (the row is then left as is).
 */
export function softmaxKeys(sr: usize, mr: usize, n: i32): bool {
  const ninf = f32x4.splat(-Infinity);
  let j = 0;
  if (mr) {
    let any = v128.splat<i32>(0);
    for (; j + 4 <= n; j += 4) {
      const o = <usize>j << 2;
      const keep = i32x4.ne(v128.load(mr + o), i32x4.splat(0));
      any = v128.or(any, keep);
      v128.store(sr + o, v128.bitselect(v128.load(sr + o), ninf, keep));
    }
    let anyS = v128.any_true(any);
    for (; j < n; j++) {
      const o = <usize>j << 2;
      if (load<i32>(mr + o) != 0) anyS = true;
      else store<f32>(sr + o, -Infinity);
    }
    if (!anyS) return false;
  }
  // max
  let m: f32 = -Infinity;
  j = 0;
  if (n >= 4) {
    let v = v128.load(sr);
    for (j = 4; j + 4 <= n; j += 4) v = f32x4.max(v, v128.load(sr + (<usize>j << 2)));
    m = max(max(f32x4.extract_lane(v, 0), f32x4.extract_lane(v, 1)), max(f32x4.extract_lane(v, 2), f32x4.extract_lane(v, 3)));
  }
  for (; j < n; j++) m = max(m, load<f32>(sr + (<usize>j << 2)));
  // exp and sum
  const mv = f32x4.splat(m);
  let s: f64 = 0;
  for (j = 0; j + 4 <= n; j += 4) {
    const o = <usize>j << 2;
    const dv = f32x4.sub(v128.load(sr + o), mv);
    const a = exp64x2(lo(dv)), b = exp64x2(hi(dv));
    s = add2(add2(s, a), b);
    v128.store(sr + o, pack(a, b));
  }
  for (; j < n; j++) {
    const o = <usize>j << 2;
    const e = exp64(<f64>(load<f32>(sr + o) - m));
    s += e;
    store<f32>(sr + o, <f32>e);
  }
  // normalize
  const inv = 1.0 / s;
  const iv = f64x2.splat(inv);
  for (j = 0; j + 4 <= n; j += 4) {
    const o = <usize>j << 2;
    const v = v128.load(sr + o);
    v128.store(sr + o, pack(f64x2.mul(lo(v), iv), f64x2.mul(hi(v), iv)));
  }
  for (; j < n; j++) {
    const o = <usize>j << 2;
    store<f32>(sr + o, <f32>(<f64>load<f32>(sr + o) * inv));
  }
  return true;
}

/** Floats xo.. of row i: at xq (the walking pointer xp + i xs + xo), or at ptrs[i] + xo (ptrs = xp) when indirect. */
// @ts-ignore: decorator
@inline function rowAt(xp: usize, i: i32, xo: usize, xq: usize, indirect: bool): usize {
  return indirect ? <usize>load<u32>(xp + (<usize>i << 2)) + xo : xq;
}

/**
 * dst[0..D) += sum_{i in [i0, i1]} w_i x_i, i ascending per output float, zero weights skipped: w_i the f32 at
 * wp + i ws (bytes), x_i the row at xp + i xs or, when indirect, at the u32 pointer ptrs[i] stored at xp.
 */
// @ts-ignore: decorator
@inline function accumulate(dst: usize, wp: usize, ws: usize, xp: usize, xs: usize, indirect: bool, i0: i32, i1: i32, D: i32): void {
  let d = 0;
  for (; d + 16 <= D; d += 16) {
    const o = dst + (<usize>d << 2);
    const xo = <usize>d << 2;
    let a0 = v128.load(o), a1 = v128.load(o, 16), a2 = v128.load(o, 32), a3 = v128.load(o, 48);
    let xq = xp + <usize>i0 * xs + xo;
    for (let i = i0; i <= i1; i++, xq += xs) {
      const w = load<f32>(wp + <usize>i * ws);
      if (w == 0) continue;
      const wv = f32x4.splat(w);
      const p = rowAt(xp, i, xo, xq, indirect);
      a0 = madd(wv, v128.load(p), a0);
      a1 = madd(wv, v128.load(p, 16), a1);
      a2 = madd(wv, v128.load(p, 32), a2);
      a3 = madd(wv, v128.load(p, 48), a3);
    }
    v128.store(o, a0);
    v128.store(o, a1, 16);
    v128.store(o, a2, 32);
    v128.store(o, a3, 48);
  }
  for (; d + 4 <= D; d += 4) {
    const o = dst + (<usize>d << 2);
    const xo = <usize>d << 2;
    let a0 = v128.load(o);
    let xq = xp + <usize>i0 * xs + xo;
    for (let i = i0; i <= i1; i++, xq += xs) {
      const w = load<f32>(wp + <usize>i * ws);
      if (w == 0) continue;
      a0 = madd(f32x4.splat(w), v128.load(rowAt(xp, i, xo, xq, indirect)), a0);
    }
    v128.store(o, a0);
  }
  for (; d < D; d++) {
    const o = dst + (<usize>d << 2);
    const xo = <usize>d << 2;
    let a: f32 = load<f32>(o);
    let xq = xp + <usize>i0 * xs + xo;
    for (let i = i0; i <= i1; i++, xq += xs) {
      const w = load<f32>(wp + <usize>i * ws);
      if (w == 0) continue;
      a += w * load<f32>(rowAt(xp, i, xo, xq, indirect));
    }
    store<f32>(o, a);
  }
}

/** op[0..D) += sum_{j in [j0, j1]} w_j v_j (w_j = wr[j], v_j the D floats at vb + j D), j ascending per output float. */
export function accumulatePV(op: usize, wr: usize, vb: usize, j0: i32, j1: i32, D: i32): void {
  accumulate(op, wr, 4, vb, <usize>D << 2, false, j0, j1, D);
}

/**
 * dst[0..D) += sum_{i in [i0, i1]} w_i x_i, the transposed form of {@link accumulatePV}: w_i = wc[i ws] (a column
 * of a scratch matrix, ws bytes apart), x_i at the row pointer ptrs[i] (u32); i ascending per output float.
 */
export function accumulateT(dst: usize, wc: usize, ws: usize, ptrs: usize, i0: i32, i1: i32, D: i32): void {
  accumulate(dst, wc, ws, ptrs, 0, true, i0, i1, D);
}

/**
 * The scalar twins' attention weights of one query (q at qp, K rows of D floats at kb) over keys [lo, p]: scores
 * s_j = f32(q . k_j) scale (d sequential), -inf for keys masked in mrow (its i32 row; 0 = no mask), then
 * w_j = f32(exp(f64(s_j - m)) / sum) into scratch[j]. Returns false (scratch holding the scores) when no key is
 * admitted.
 */
export function weightsScalar(qp: usize, kb: usize, D: i32, mrow: usize, lo: i32, p: i32, scale: f32, scratch: usize): bool {
  let any = false;
  let m: f32 = -Infinity;
  for (let j = lo; j <= p; j++) {
    let s: f32 = -Infinity;
    if (!mrow || load<i32>(mrow + (<usize>j << 2)) != 0) {
      const kp = kb + (<usize>j * <usize>D << 2);
      let d: f32 = 0;
      for (let i = 0; i < D; i++) d += load<f32>(qp + (<usize>i << 2)) * load<f32>(kp + (<usize>i << 2));
      s = d * scale;
      any = true;
    }
    store<f32>(scratch + (<usize>j << 2), s);
    m = max(m, s);
  }
  if (!any) return false;
  let sum: f64 = 0;
  for (let j = lo; j <= p; j++) {
    const sp = scratch + (<usize>j << 2);
    const e = exp64(<f64>(load<f32>(sp) - m));
    sum += e;
    store<f32>(sp, <f32>e);
  }
  const inv = 1.0 / sum;
  for (let j = lo; j <= p; j++) {
    const sp = scratch + (<usize>j << 2);
    store<f32>(sp, <f32>(<f64>load<f32>(sp) * inv));
  }
  return true;
}
