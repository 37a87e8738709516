// Causal grouped-query attention over a KV cache (Llama/Qwen2/Mistral/OPT/GPT-2 decoders, prefill and decode).
//
// Layouts (f32; rows of q/src/out are strided, heads inside a row contiguous):
//
//   q   row (b T + t) at q + (b T + t) qStride:     [ head 0: headDim | head 1 | ... | head nHeads-1 ]
//   out row (b T + t) at out + (b T + t) outStride:  same, nHeads headDim floats written
//   kc, vc: [B][nKv][maxSeq][headDim]                slot j of (b, kv head g) at ((b nKv + g) maxSeq + j) headDim
//   keyMask (optional): i32 [B][maxSeq], 0 = padding
//
//   f32_kv_store: copies the nKv heads of src row (b T + t) into slot past + t of kc or vc.
//   f32_attention, for batch b, new token t, head h (query slot p = past + t, kv head g = h / (nHeads / nKv)):
//     admitted keys j:  0 <= j <= p,  and p - window < j when window > 0 (Mistral's sliding window),
//                       and keyMask == 0 or keyMask[b maxSeq + j] != 0
//     s_j = f32(q . k_j) * scale;  m = max s_j;  e_j = exp(f64(s_j - m));  w_j = f32(e_j / sum e)
//     out = sum_j w_j v_j  (f32, j ascending);  no admitted key: out = 0.
//   Keys whose weight is 0 (masked keys always, admitted keys only if exp underflows) are skipped, so a
//   masked key contributes nothing even when its K or V holds NaN/Inf.
//   exp and the softmax sum are f64 as in softmax.ts (exp64 from util/math.ts, sum in key order).
//
// The SIMD kernel works per (b, g) on tiles of up to NQ queries: the query list of the group, (t, h) with
// h in the group, flattened as t G + (h - g G), cut into consecutive tiles. Decode (T = 1) is one tile of the
// G heads of the group, so every K and V row is read once per group; prefill tiles hold several tokens x heads
// so a block of keys is reused from cache by all the queries of a tile:
//
//   scores:  for each 4 keys j..j+3 (4 K rows, from memory once per tile)
//              for each query of the tile: 4 dot products at once -> scratch[query][j..j+3]
//   softmax: per query over its own key range [lo, p], in place in its scratch row
//   P V:     for each block of JB keys (JB V rows, reused from L1 by the tile's queries)
//              for each query, 16 floats of out in registers: out += w_j v_j (j ascending)
//
// Summation order: a SIMD dot product keeps, per key, two f32x4 accumulators (even / odd 4-float chunks of
// headDim), adds them, reduces lanes as (l0 + l2) + (l1 + l3) and adds the headDim % 4 tail in order; the
// scalar twin sums d sequentially. Everything after the scores (max, exp, f64 sum, weights, the f32
// accumulation over j) is the same operations in the same order, so in the plain-SIMD build the difference
// from the twin comes from the dot products only (~headDim 2^-24 relative in a score); the relaxed build may
// also fuse the multiply-adds of the dots and of P V.
//
// Scratch: NQ maxSeq floats (one score row per query of a tile); the scalar twin uses the first maxSeq.

import { exp64, exp64x2 } from "./util/math";
import { madd, hsum4, hsum1 } from "./util/simd";

/** Queries per tile (score rows of scratch). */
const NQ: i32 = 16;
/** Keys per P V block. */
const JB: i32 = 64;

// ---------------------------------------------------------------- KV cache store

export function f32_kv_store_scalar(src: usize, srcStride: i32, cache: usize, B: i32, T: i32, past: i32, nKv: i32, headDim: i32, maxSeq: i32): void {
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const row = src + (<usize>(b * T + t) * <usize>srcStride << 2);
      for (let g = 0; g < nKv; g++) {
        const dst = cache + (((<usize>(b * nKv + g) * <usize>maxSeq + <usize>(past + t)) * <usize>headDim) << 2);
        const s = row + (<usize>g * <usize>headDim << 2);
        for (let d = 0; d < headDim; d++) store<f32>(dst + (<usize>d << 2), load<f32>(s + (<usize>d << 2)));
      }
    }
  }
}

export function f32_kv_store(src: usize, srcStride: i32, cache: usize, B: i32, T: i32, past: i32, nKv: i32, headDim: i32, maxSeq: i32): void {
  const bytes = <usize>headDim << 2;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const row = src + (<usize>(b * T + t) * <usize>srcStride << 2);
      for (let g = 0; g < nKv; g++) {
        memory.copy(cache + (((<usize>(b * nKv + g) * <usize>maxSeq + <usize>(past + t)) * <usize>headDim) << 2), row + <usize>g * bytes, bytes);
      }
    }
  }
}

/** Floats of scratch that f32_attention (and its scalar twin) need. */
export function f32_attention_scratch(T: i32, maxSeq: i32, headDim: i32): i32 {
  return NQ * maxSeq;
}

// ---------------------------------------------------------------- scalar twin

export function f32_attention_scalar(
  q: usize, qStride: i32, kc: usize, vc: usize, out: usize, outStride: i32, B: i32, T: i32, past: i32, nHeads: i32, nKv: i32,
  headDim: i32, maxSeq: i32, scale: f32, window: i32, keyMask: usize, scratch: usize,
): void {
  const G = nHeads / nKv;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const p = past + t;
      const lo = window > 0 ? max(0, p - window + 1) : 0;
      for (let h = 0; h < nHeads; h++) {
        const g = h / G;
        const qp = q + ((<usize>(b * T + t) * <usize>qStride + <usize>h * <usize>headDim) << 2);
        const op = out + ((<usize>(b * T + t) * <usize>outStride + <usize>h * <usize>headDim) << 2);
        const kb = kc + ((<usize>(b * nKv + g) * <usize>maxSeq * <usize>headDim) << 2);
        const vb = vc + ((<usize>(b * nKv + g) * <usize>maxSeq * <usize>headDim) << 2);
        // scores (-inf for padding) and their max
        let any = false;
        let m: f32 = -Infinity;
        for (let j = lo; j <= p; j++) {
          let s: f32 = -Infinity;
          if (!keyMask || load<i32>(keyMask + ((<usize>b * <usize>maxSeq + <usize>j) << 2)) != 0) {
            const kp = kb + (<usize>j * <usize>headDim << 2);
            let d: f32 = 0;
            for (let i = 0; i < headDim; i++) d += load<f32>(qp + (<usize>i << 2)) * load<f32>(kp + (<usize>i << 2));
            s = d * scale;
            any = true;
          }
          store<f32>(scratch + (<usize>j << 2), s);
          m = max(m, s);
        }
        for (let i = 0; i < headDim; i++) store<f32>(op + (<usize>i << 2), 0);
        if (!any) continue;
        // weights
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
        // out = sum_j w_j v_j
        for (let j = lo; j <= p; j++) {
          const w = load<f32>(scratch + (<usize>j << 2));
          if (w == 0) continue;
          const vp = vb + (<usize>j * <usize>headDim << 2);
          for (let i = 0; i < headDim; i++) {
            const o = op + (<usize>i << 2);
            store<f32>(o, load<f32>(o) + w * load<f32>(vp + (<usize>i << 2)));
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------- SIMD kernel

/** q . k over D floats: two f32x4 accumulators (even / odd chunks), added, lanes reduced, tail in order. */
function dot1(qp: usize, kp: usize, D: i32): f32 {
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
function dot4(qp: usize, k0: usize, ks: usize, D: i32): v128 {
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

// f32x4 <-> two f64x2 halves (as softmax.ts)
// @ts-ignore: decorator
@inline function lo2(v: v128): v128 {
  return f64x2.promote_low_f32x4(v);
}
// @ts-ignore: decorator
@inline function hi2(v: v128): v128 {
  return f64x2.promote_low_f32x4(v128.shuffle<f32>(v, v, 2, 3, 2, 3));
}
// @ts-ignore: decorator
@inline function pack(a: v128, b: v128): v128 {
  return v128.shuffle<f32>(f32x4.demote_f64x2_zero(a), f32x4.demote_f64x2_zero(b), 0, 1, 4, 5);
}

/**
 * Softmax in place over the n scores at sr (bit-identical to the scalar twin's: max is order-free, exps on
 * f64x2, the f64 sum in key order). With a key mask (mr: its i32 row at the same keys), padded keys become
 * -inf first (weight 0). Returns false when no key is admitted (the row is then left as is).
 */
function softmaxKeys(sr: usize, mr: usize, n: i32): bool {
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
    const a = exp64x2(lo2(dv)), b = exp64x2(hi2(dv));
    s += f64x2.extract_lane(a, 0);
    s += f64x2.extract_lane(a, 1);
    s += f64x2.extract_lane(b, 0);
    s += f64x2.extract_lane(b, 1);
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
    v128.store(sr + o, pack(f64x2.mul(lo2(v), iv), f64x2.mul(hi2(v), iv)));
  }
  for (; j < n; j++) {
    const o = <usize>j << 2;
    store<f32>(sr + o, <f32>(<f64>load<f32>(sr + o) * inv));
  }
  return true;
}

/** op[0..D) += sum_{j in [j0, j1]} w_j v_j (w_j = wr[j], zero weights skipped), j ascending per output float. */
function accumulatePV(op: usize, wr: usize, vb: usize, j0: i32, j1: i32, D: i32): void {
  const vs = <usize>D << 2;
  let d = 0;
  for (; d + 16 <= D; d += 16) {
    const o = op + (<usize>d << 2);
    let a0 = v128.load(o), a1 = v128.load(o, 16), a2 = v128.load(o, 32), a3 = v128.load(o, 48);
    let vp = vb + <usize>j0 * vs + (<usize>d << 2);
    for (let j = j0; j <= j1; j++, vp += vs) {
      const w = load<f32>(wr + (<usize>j << 2));
      if (w == 0) continue;
      const wv = f32x4.splat(w);
      a0 = madd(wv, v128.load(vp), a0);
      a1 = madd(wv, v128.load(vp, 16), a1);
      a2 = madd(wv, v128.load(vp, 32), a2);
      a3 = madd(wv, v128.load(vp, 48), a3);
    }
    v128.store(o, a0);
    v128.store(o, a1, 16);
    v128.store(o, a2, 32);
    v128.store(o, a3, 48);
  }
  for (; d + 4 <= D; d += 4) {
    const o = op + (<usize>d << 2);
    let a0 = v128.load(o);
    let vp = vb + <usize>j0 * vs + (<usize>d << 2);
    for (let j = j0; j <= j1; j++, vp += vs) {
      const w = load<f32>(wr + (<usize>j << 2));
      if (w == 0) continue;
      a0 = madd(f32x4.splat(w), v128.load(vp), a0);
    }
    v128.store(o, a0);
  }
  for (; d < D; d++) {
    const o = op + (<usize>d << 2);
    let a: f32 = load<f32>(o);
    let vp = vb + <usize>j0 * vs + (<usize>d << 2);
    for (let j = j0; j <= j1; j++, vp += vs) {
      const w = load<f32>(wr + (<usize>j << 2));
      if (w == 0) continue;
      a += w * load<f32>(vp);
    }
    store<f32>(o, a);
  }
}

export function f32_attention(
  q: usize, qStride: i32, kc: usize, vc: usize, out: usize, outStride: i32, B: i32, T: i32, past: i32, nHeads: i32, nKv: i32,
  headDim: i32, maxSeq: i32, scale: f32, window: i32, keyMask: usize, scratch: usize,
): void {
  const G = nHeads / nKv;
  const total = T * G; // queries of one (b, g)
  const ks = <usize>headDim << 2; // bytes per K/V row
  const sv = f32x4.splat(scale);
  for (let b = 0; b < B; b++) {
    const mrow = keyMask ? keyMask + (<usize>b * <usize>maxSeq << 2) : 0;
    for (let g = 0; g < nKv; g++) {
      const kb = kc + <usize>(b * nKv + g) * <usize>maxSeq * ks;
      const vb = vc + <usize>(b * nKv + g) * <usize>maxSeq * ks;
      for (let c0 = 0; c0 < total; c0 += NQ) {
        const nq = min(NQ, total - c0);
        // key range of the tile: from the first query's lower bound to the last query's slot
        const pFirst = past + c0 / G, pLast = past + (c0 + nq - 1) / G;
        const jlo = window > 0 ? max(0, pFirst - window + 1) : 0;
        const jhi = pLast;

        // scores, 4 keys at a time (each query only over its own range, rounded out to the 4-key groups)
        let j = jlo;
        for (; j + 4 <= jhi + 1; j += 4) {
          const k0 = kb + <usize>j * ks;
          for (let i = 0; i < nq; i++) {
            const t = (c0 + i) / G;
            const p = past + t;
            const lo = window > 0 ? p - window + 1 : 0;
            if (j > p || j + 3 < lo) continue;
            const h = g * G + (c0 + i) - t * G;
            const qp = q + ((<usize>(b * T + t) * <usize>qStride + <usize>h * <usize>headDim) << 2);
            v128.store(scratch + ((<usize>i * <usize>maxSeq + <usize>j) << 2), f32x4.mul(dot4(qp, k0, ks, headDim), sv));
          }
        }
        for (; j <= jhi; j++) {
          const kp = kb + <usize>j * ks;
          for (let i = 0; i < nq; i++) {
            const t = (c0 + i) / G;
            const p = past + t;
            const lo = window > 0 ? p - window + 1 : 0;
            if (j > p || j < lo) continue;
            const h = g * G + (c0 + i) - t * G;
            const qp = q + ((<usize>(b * T + t) * <usize>qStride + <usize>h * <usize>headDim) << 2);
            store<f32>(scratch + ((<usize>i * <usize>maxSeq + <usize>j) << 2), dot1(qp, kp, headDim) * scale);
          }
        }

        // softmax per query over [lo, p]; out rows of the tile zeroed; an empty query gets lo > p (skipped)
        for (let i = 0; i < nq; i++) {
          const t = (c0 + i) / G;
          const p = past + t;
          const lo = window > 0 ? max(0, p - window + 1) : 0;
          const h = g * G + (c0 + i) - t * G;
          const op = out + ((<usize>(b * T + t) * <usize>outStride + <usize>h * <usize>headDim) << 2);
          memory.fill(op, 0, ks);
          const sr = scratch + ((<usize>i * <usize>maxSeq + <usize>lo) << 2);
          if (!softmaxKeys(sr, mrow ? mrow + (<usize>lo << 2) : 0, p - lo + 1)) {
            // no admitted key: zero weights so that P V skips every key
            memory.fill(sr, 0, <usize>(p - lo + 1) << 2);
          }
        }

        // P V in blocks of JB keys
        for (let j0 = jlo; j0 <= jhi; j0 += JB) {
          const j1 = min(j0 + JB - 1, jhi);
          for (let i = 0; i < nq; i++) {
            const t = (c0 + i) / G;
            const p = past + t;
            const lo = window > 0 ? max(0, p - window + 1) : 0;
            const a = max(j0, lo), z = min(j1, p);
            if (a > z) continue;
            const h = g * G + (c0 + i) - t * G;
            const op = out + ((<usize>(b * T + t) * <usize>outStride + <usize>h * <usize>headDim) << 2);
            accumulatePV(op, scratch + (<usize>i * <usize>maxSeq << 2), vb, a, z, headDim);
          }
        }
      }
    }
  }
}
