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
// The SIMD pieces (dot1, dot4, softmaxKeys, accumulatePV) and the twin's scores and softmax (weightsScalar) are in
// util/attention.ts, shared with f32_attention_backward (backward.ts), which recomputes these weights bit for bit.
//
// Scratch: NQ maxSeq floats (one score row per query of a tile); the scalar twin uses the first maxSeq.

import { dot1, dot4, softmaxKeys, accumulatePV, weightsScalar } from "./util/attention";
import { partStart } from "./util/gemm";

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
        // weights (scratch[lo..p]); out zeroed
        const any = weightsScalar(qp, kb, headDim, keyMask ? keyMask + (<usize>b * <usize>maxSeq << 2) : 0, lo, p, scale, scratch);
        for (let i = 0; i < headDim; i++) store<f32>(op + (<usize>i << 2), 0);
        if (!any) continue;
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

export function f32_attention(
  q: usize, qStride: i32, kc: usize, vc: usize, out: usize, outStride: i32, B: i32, T: i32, past: i32, nHeads: i32, nKv: i32,
  headDim: i32, maxSeq: i32, scale: f32, window: i32, keyMask: usize, scratch: usize,
): void {
  attentionTiles(q, qStride, kc, vc, out, outStride, B, T, past, nHeads, nKv, headDim, maxSeq, scale, window, keyMask, scratch, 0, attentionTileCount(B, T, nHeads, nKv));
}

/** Tiles of f32_attention: (b, g, c0) for every batch row, KV group and block of NQ of the group's T * G queries. */
function attentionTileCount(B: i32, T: i32, nHeads: i32, nKv: i32): i32 {
  const total = T * (nHeads / nKv);
  return B * nKv * ((total + NQ - 1) / NQ);
}

/**
 * Part t of nt of {@link f32_attention}: a contiguous range of its tiles, each with its own score rows at
 * scratch + t * f32_attention_scratch(...) floats (the caller allocates nt times the scratch). Tiles write disjoint
 * output rows and compute exactly what they compute in f32_attention, so the parts write f32_attention's result.
 */
export function f32_attention_mt(
  q: usize, qStride: i32, kc: usize, vc: usize, out: usize, outStride: i32, B: i32, T: i32, past: i32, nHeads: i32, nKv: i32,
  headDim: i32, maxSeq: i32, scale: f32, window: i32, keyMask: usize, scratch: usize, t: i32, nt: i32,
): void {
  const n = attentionTileCount(B, T, nHeads, nKv);
  const u0 = partStart(n, 1, t, nt), u1 = partStart(n, 1, t + 1, nt);
  if (u0 >= u1) return;
  const sc = scratch + ((<usize>t * <usize>NQ * <usize>maxSeq) << 2);
  attentionTiles(q, qStride, kc, vc, out, outStride, B, T, past, nHeads, nKv, headDim, maxSeq, scale, window, keyMask, sc, u0, u1);
}

function attentionTiles(
  q: usize, qStride: i32, kc: usize, vc: usize, out: usize, outStride: i32, B: i32, T: i32, past: i32, nHeads: i32, nKv: i32,
  headDim: i32, maxSeq: i32, scale: f32, window: i32, keyMask: usize, scratch: usize, u0: i32, u1: i32,
): void {
  const G = nHeads / nKv;
  const total = T * G; // queries of one (b, g)
  const tiles = (total + NQ - 1) / NQ; // tiles of one (b, g)
  const ks = <usize>headDim << 2; // bytes per K/V row
  const sv = f32x4.splat(scale);
  for (let u = u0; u < u1; u++) {
    const b = u / (nKv * tiles);
    const g = (u / tiles) % nKv;
    const c0 = (u % tiles) * NQ;
    const mrow = keyMask ? keyMask + (<usize>b * <usize>maxSeq << 2) : 0;
    {
      const kb = kc + <usize>(b * nKv + g) * <usize>maxSeq * ks;
      const vb = vc + <usize>(b * nKv + g) * <usize>maxSeq * ks;
      {
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
