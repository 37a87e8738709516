// Backward kernels for training decoder LMs: the gradients of norm.ts, rope.ts, activation.ts (silu_mul),
// embedding.ts, attention.ts (past = 0) and of the token cross-entropy. Each kernel has a `_scalar` twin.
//
//   rmsnorm_backward     forward y = w xhat, xhat = f32(x r), r = f32(1 / sqrt(f32(sum x^2 / D) + eps)) (norm.ts)
//                        g = gy w (f64; gy when w == 0), dot = sum g x (f64, with sum x^2 for r, index order)
//                        gx = f32(r g - (r^3 dot / D) x)                       (f64)
//                        gw += gy xhat   (f32, xhat recomputed as the forward's f32(x r); only when gw != 0)
//                        (both norms: gx may alias x or gy; each row's sums are complete before its gx is written)
//   layernorm_backward   forward n = f32((x - mean) rstd), y = n w + b, mean/var/rstd in f64 (norm.ts)
//                        g = gy w (f64), xh = (x - mean) rstd (f64), a = sum g / D, c = sum g xh / D
//                        gx = f32(rstd ((g - a) - xh c))                       (f64)
//                        gw += gy n, gb += gy   (f32; only when non-zero)
//   rope_backward        the transpose of the rotation: a' = f32(a c) + f32(b s), b' = f32(b c) - f32(a s)
//   silu_mul_backward    e = exp(-gate), s = 1 / (1 + e) (f64):  gGate = f32(gy up s (1 + gate (1 - s))),
//                        gUp = f32(gy gate / (1 + e))   (gGate or gUp may alias gy, gate or up: per element,
//                        every input is read before the outputs are written)
//   embedding_backward   gw[ids[r] D + j] += gy[r D + j] (f32, rows in order; rows with id < 0 skipped)
//   cross_entropy_rows   per row with label >= 0: m = max x, s = sum exp(x - m) (f64 subtraction, exp64, f64 sum
//                        in index order), loss += log s - (x[label] - m); grad = f32(scale (exp(x - m) / s - onehot))
//                        (exp recomputed per element, so grad may alias logits). label < 0: no loss, grad row 0.
//                        Returns the f64 sum over the rows (not the mean); labels must be < V (the caller checks).
//
// The SIMD forms of all of the above are bit-identical to their twins: f64 sums are kept sequential (each f32x4
// widened to two f64x2 halves, lanes added in index order: lo/hi/pack/add2 of util/simd.ts), elementwise math is
// the same IEEE operations on f64x2/f32x4, no fused multiply-adds. Shared with the forward kernels: the norms' row
// statistics (rmsFactor, rowMean, rowRstd: util/norm.ts), the rope loops (util/rope.ts, run with transpose = true),
// the row add (addVec) and the row max (maxOf) of util/simd.ts.
//
// attention_backward, the training case of f32_attention (past = 0, T new tokens per row, keys j < T already in
// the cache kc/vc [B][nKv][maxSeq][headDim]; q, o, go, gq, gk, gv in row layout, heads contiguous):
//
//   for batch b, query t, head h (kv head g = h / (nHeads / nKv)), admitted keys j as the forward's:
//     0 <= j <= t, t - window < j when window > 0, keyMask == 0 or keyMask[b maxSeq + j] != 0
//     P_j   = the forward's weights, recomputed bit for bit as f32_attention (scalar twin: as its twin)
//     D     = f32(go . o)                          (o: the forward's output row, go = dL/do)
//     dS_j  = f32(f32(P_j f32(f32(go . v_j) - D)) scale)     (0 where P_j == 0: masked keys never read)
//     gq   = sum_j dS_j k_j                      (f32, j ascending; zero weights skipped)
//     gk_j += dS_j q,  gv_j += P_j go          (f32, over the group's queries (t, h) in order t G + (h - g G))
//   gq rows (nHeads heads) and gk/gv rows b T + j, j < T (nKv heads) are overwritten; a query with no admitted
//   key gets gq = 0. Nothing outside the owned heads of a row is written, so gq/gk/gv may be slices of one
//   buffer (fused c_attn: stride 3 H). Outputs must not overlap q, kc, vc, o or go.
//
// The SIMD kernel, per (b, g), tiles of up to NQ queries of the group (as f32_attention):
//
//   scores  S[i][j] = q_i . k_j (dot4: 4 K rows per step)  -> scratch P rows  --softmax-->  P
//   dP      go_i . v_j (dot4: 4 V rows per step)           -> scratch dS rows --(P, D)-->   dS
//   gq_i    += dS[i][j] k_j      for blocks of JB keys (K rows reused by the tile's queries from L1)
//   gk_j    += dS[i][j] q_i      per key j, 16 floats of gk_j in registers, over the tile's queries
//   gv_j    += P[i][j] go_i
//
//           scratch:  [ P: NQ x maxSeq | dS: NQ x maxSeq | q row ptrs: NQ | go row ptrs: NQ | D: NQ ]
//
// Summation order: the same as the twin in every accumulation (gq, gk, gv) and every elementwise step; the
// dot products (scores, go . v, go . o) sum in the order of dot1/dot4 (two f32x4 accumulators, lanes
// (l0 + l2) + (l1 + l3), tail in order) where the twin sums sequentially. The relaxed build may fuse the
// multiply-adds of the dots and of the accumulations. dot1, dot4, softmaxKeys, accumulatePV (gq) and accumulateT
// (gk, gv) come from util/attention.ts, which f32_attention uses too, so the recomputed P is bit-identical to the
// forward's; the scalar twin recomputes P with the forward twin's weightsScalar. Preconditions (checked by the
// caller): maxSeq >= T, nHeads a multiple of nKv, scratch of f32_attention_backward_scratch floats; a window >= T
// is the same as no window.

import { exp64, exp64x2 } from "./util/math";
import { lo, hi, pack, add2, addVec, maxOf } from "./util/simd";
import { rmsFactor, rowMean, rowRstd } from "./util/norm";
import { ropeRows } from "./util/rope";
import { dot1, dot4, softmaxKeys, accumulatePV, accumulateT, weightsScalar } from "./util/attention";

/** Queries per tile (as attention.ts). */
const NQ: i32 = 16;
/** Keys per gq block. */
const JB: i32 = 64;

/** The halves (lo, hi) of g = gy w as f64x2 (gy when w == 0), at byte offset o of the row. */
// @ts-ignore: decorator
@inline function gLo(gv: v128, w: usize, o: usize): v128 {
  return w ? f64x2.mul(lo(gv), lo(v128.load(w + o))) : lo(gv);
}
// @ts-ignore: decorator
@inline function gHi(gv: v128, w: usize, o: usize): v128 {
  return w ? f64x2.mul(hi(gv), hi(v128.load(w + o))) : hi(gv);
}

// ================================================================ RMSNorm

export function f32_rmsnorm_backward_scalar(x: usize, w: usize, gy: usize, gx: usize, gw: usize, rows: i32, D: i32, eps: f32): void {
  for (let r = 0; r < rows; r++) {
    const ro = <usize>r * <usize>D << 2;
    let ss: f64 = 0, dot: f64 = 0;
    for (let i = 0; i < D; i++) {
      const o = <usize>i << 2;
      const xv = <f64>load<f32>(x + ro + o);
      const g = w ? <f64>load<f32>(gy + ro + o) * <f64>load<f32>(w + o) : <f64>load<f32>(gy + ro + o);
      ss += xv * xv;
      dot += g * xv;
    }
    const f = rmsFactor(ss, D, eps);
    const rf = <f64>f;
    const c = rf * rf * rf * dot / <f64>D;
    for (let i = 0; i < D; i++) {
      const o = <usize>i << 2;
      const xs = load<f32>(x + ro + o), gs = load<f32>(gy + ro + o);
      const g = w ? <f64>gs * <f64>load<f32>(w + o) : <f64>gs;
      if (gw) store<f32>(gw + o, load<f32>(gw + o) + gs * (xs * f));
      store<f32>(gx + ro + o, <f32>(rf * g - c * <f64>xs));
    }
  }
}

export function f32_rmsnorm_backward(x: usize, w: usize, gy: usize, gx: usize, gw: usize, rows: i32, D: i32, eps: f32): void {
  for (let r = 0; r < rows; r++) {
    const ro = <usize>r * <usize>D << 2;
    const xr = x + ro, gyr = gy + ro, gxr = gx + ro;
    // sum x^2 and sum g x (f64, index order)
    let ss: f64 = 0, dot: f64 = 0;
    let i = 0;
    for (; i + 4 <= D; i += 4) {
      const o = <usize>i << 2;
      const xv = v128.load(xr + o), gv = v128.load(gyr + o);
      const xa = lo(xv), xb = hi(xv);
      const ga = gLo(gv, w, o), gb = gHi(gv, w, o);
      const sa = f64x2.mul(xa, xa), sb = f64x2.mul(xb, xb);
      const da = f64x2.mul(ga, xa), db = f64x2.mul(gb, xb);
      ss = add2(add2(ss, sa), sb);
      dot = add2(add2(dot, da), db);
    }
    for (; i < D; i++) {
      const o = <usize>i << 2;
      const xv = <f64>load<f32>(xr + o);
      const g = w ? <f64>load<f32>(gyr + o) * <f64>load<f32>(w + o) : <f64>load<f32>(gyr + o);
      ss += xv * xv;
      dot += g * xv;
    }
    const f = rmsFactor(ss, D, eps);
    const rf = <f64>f;
    const c = rf * rf * rf * dot / <f64>D;
    const fv = f32x4.splat(f), rv = f64x2.splat(rf), cv = f64x2.splat(c);
    for (i = 0; i + 4 <= D; i += 4) {
      const o = <usize>i << 2;
      const xv = v128.load(xr + o), gv = v128.load(gyr + o);
      const ga = gLo(gv, w, o), gb = gHi(gv, w, o);
      if (gw) v128.store(gw + o, f32x4.add(v128.load(gw + o), f32x4.mul(gv, f32x4.mul(xv, fv))));
      v128.store(gxr + o, pack(f64x2.sub(f64x2.mul(rv, ga), f64x2.mul(cv, lo(xv))), f64x2.sub(f64x2.mul(rv, gb), f64x2.mul(cv, hi(xv)))));
    }
    for (; i < D; i++) {
      const o = <usize>i << 2;
      const xs = load<f32>(xr + o), gs = load<f32>(gyr + o);
      const g = w ? <f64>gs * <f64>load<f32>(w + o) : <f64>gs;
      if (gw) store<f32>(gw + o, load<f32>(gw + o) + gs * (xs * f));
      store<f32>(gxr + o, <f32>(rf * g - c * <f64>xs));
    }
  }
}

// ================================================================ LayerNorm

export function f32_layernorm_backward_scalar(x: usize, w: usize, gy: usize, gx: usize, gw: usize, gb: usize, rows: i32, D: i32, eps: f32): void {
  for (let r = 0; r < rows; r++) {
    const ro = <usize>r * <usize>D << 2;
    let s: f64 = 0;
    for (let i = 0; i < D; i++) s += <f64>load<f32>(x + ro + (<usize>i << 2));
    const mean = s / <f64>D;
    let s2: f64 = 0;
    for (let i = 0; i < D; i++) {
      const d = <f64>load<f32>(x + ro + (<usize>i << 2)) - mean;
      s2 += d * d;
    }
    const rstd = 1.0 / Math.sqrt(s2 / <f64>D + <f64>eps);
    let sg: f64 = 0, sgx: f64 = 0;
    for (let i = 0; i < D; i++) {
      const o = <usize>i << 2;
      const g = w ? <f64>load<f32>(gy + ro + o) * <f64>load<f32>(w + o) : <f64>load<f32>(gy + ro + o);
      const xh = (<f64>load<f32>(x + ro + o) - mean) * rstd;
      sg += g;
      sgx += g * xh;
    }
    const a = sg / <f64>D, c = sgx / <f64>D;
    for (let i = 0; i < D; i++) {
      const o = <usize>i << 2;
      const gs = load<f32>(gy + ro + o);
      const g = w ? <f64>gs * <f64>load<f32>(w + o) : <f64>gs;
      const xh = (<f64>load<f32>(x + ro + o) - mean) * rstd;
      if (gw) store<f32>(gw + o, load<f32>(gw + o) + gs * <f32>xh);
      if (gb) store<f32>(gb + o, load<f32>(gb + o) + gs);
      store<f32>(gx + ro + o, <f32>(rstd * ((g - a) - xh * c)));
    }
  }
}

export function f32_layernorm_backward(x: usize, w: usize, gy: usize, gx: usize, gw: usize, gb: usize, rows: i32, D: i32, eps: f32): void {
  for (let r = 0; r < rows; r++) {
    const ro = <usize>r * <usize>D << 2;
    const xr = x + ro, gyr = gy + ro, gxr = gx + ro;
    const mean = rowMean(xr, D), rstd = rowRstd(xr, D, mean, eps);
    const mv = f64x2.splat(mean), rv = f64x2.splat(rstd);
    // sum g and sum g xh
    let sg: f64 = 0, sgx: f64 = 0;
    let i = 0;
    for (; i + 4 <= D; i += 4) {
      const o = <usize>i << 2;
      const xv = v128.load(xr + o), gv = v128.load(gyr + o);
      const ga = gLo(gv, w, o), gc = gHi(gv, w, o);
      const xa = f64x2.mul(f64x2.sub(lo(xv), mv), rv), xc = f64x2.mul(f64x2.sub(hi(xv), mv), rv);
      sg = add2(add2(sg, ga), gc);
      sgx = add2(add2(sgx, f64x2.mul(ga, xa)), f64x2.mul(gc, xc));
    }
    for (; i < D; i++) {
      const o = <usize>i << 2;
      const g = w ? <f64>load<f32>(gyr + o) * <f64>load<f32>(w + o) : <f64>load<f32>(gyr + o);
      const xh = (<f64>load<f32>(xr + o) - mean) * rstd;
      sg += g;
      sgx += g * xh;
    }
    const a = sg / <f64>D, c = sgx / <f64>D;
    const av = f64x2.splat(a), cv = f64x2.splat(c);
    for (i = 0; i + 4 <= D; i += 4) {
      const o = <usize>i << 2;
      const xv = v128.load(xr + o), gv = v128.load(gyr + o);
      const ga = gLo(gv, w, o), gc = gHi(gv, w, o);
      const xa = f64x2.mul(f64x2.sub(lo(xv), mv), rv), xc = f64x2.mul(f64x2.sub(hi(xv), mv), rv);
      if (gw) v128.store(gw + o, f32x4.add(v128.load(gw + o), f32x4.mul(gv, pack(xa, xc))));
      if (gb) v128.store(gb + o, f32x4.add(v128.load(gb + o), gv));
      const ya = f64x2.mul(rv, f64x2.sub(f64x2.sub(ga, av), f64x2.mul(xa, cv)));
      const yc = f64x2.mul(rv, f64x2.sub(f64x2.sub(gc, av), f64x2.mul(xc, cv)));
      v128.store(gxr + o, pack(ya, yc));
    }
    for (; i < D; i++) {
      const o = <usize>i << 2;
      const gs = load<f32>(gyr + o);
      const g = w ? <f64>gs * <f64>load<f32>(w + o) : <f64>gs;
      const xh = (<f64>load<f32>(xr + o) - mean) * rstd;
      if (gw) store<f32>(gw + o, load<f32>(gw + o) + gs * <f32>xh);
      if (gb) store<f32>(gb + o, load<f32>(gb + o) + gs);
      store<f32>(gxr + o, <f32>(rstd * ((g - a) - xh * c)));
    }
  }
}

// ================================================================ RoPE (the transpose of the rotation, in place)

export function f32_rope_backward_scalar(
  x: usize, stride: i32, rows: i32, nHeads: i32, headDim: i32, pos: usize, cos: usize, sin: usize, half: i32, interleaved: i32,
): void {
  ropeRows(x, stride, rows, nHeads, headDim, pos, cos, sin, half, interleaved, true, false);
}

export function f32_rope_backward(
  x: usize, stride: i32, rows: i32, nHeads: i32, headDim: i32, pos: usize, cos: usize, sin: usize, half: i32, interleaved: i32,
): void {
  ropeRows(x, stride, rows, nHeads, headDim, pos, cos, sin, half, interleaved, true, true);
}

// ================================================================ SwiGLU (silu(gate) * up)

export function f32_silu_mul_backward_scalar(gate: usize, up: usize, gy: usize, gGate: usize, gUp: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    const v = <f64>load<f32>(gate + o), u = <f64>load<f32>(up + o), g = <f64>load<f32>(gy + o);
    const d = 1.0 + exp64(-v);
    const s = 1.0 / d;
    store<f32>(gGate + o, <f32>(g * u * s * (1.0 + v * (1.0 - s))));
    store<f32>(gUp + o, <f32>(g * (v / d)));
  }
}

export function f32_silu_mul_backward(gate: usize, up: usize, gy: usize, gGate: usize, gUp: usize, n: i32): void {
  const one = f64x2.splat(1.0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const vv = v128.load(gate + o), uv = v128.load(up + o), gv = v128.load(gy + o);
    const va = lo(vv), vb = hi(vv);
    const da = f64x2.add(one, exp64x2(f64x2.neg(va))), db = f64x2.add(one, exp64x2(f64x2.neg(vb)));
    const sa = f64x2.div(one, da), sb = f64x2.div(one, db);
    const ga = lo(gv), gb = hi(gv);
    const ka = f64x2.mul(f64x2.mul(f64x2.mul(ga, lo(uv)), sa), f64x2.add(one, f64x2.mul(va, f64x2.sub(one, sa))));
    const kb = f64x2.mul(f64x2.mul(f64x2.mul(gb, hi(uv)), sb), f64x2.add(one, f64x2.mul(vb, f64x2.sub(one, sb))));
    const pa = f64x2.mul(ga, f64x2.div(va, da)), pb = f64x2.mul(gb, f64x2.div(vb, db));
    v128.store(gGate + o, pack(ka, kb));
    v128.store(gUp + o, pack(pa, pb));
  }
  if (i < n) {
    const o = <usize>i << 2;
    f32_silu_mul_backward_scalar(gate + o, up + o, gy + o, gGate + o, gUp + o, n - i);
  }
}

// ================================================================ embedding (scatter-add of the row gradients)

export function f32_embedding_backward_scalar(gy: usize, ids: usize, gw: usize, rows: i32, D: i32): void {
  for (let r = 0; r < rows; r++) {
    const id = load<i32>(ids + (<usize>r << 2));
    if (id < 0) continue;
    const src = gy + (<usize>r * <usize>D << 2);
    const dst = gw + (<usize>id * <usize>D << 2);
    for (let j = 0; j < D; j++) {
      const o = <usize>j << 2;
      store<f32>(dst + o, load<f32>(dst + o) + load<f32>(src + o));
    }
  }
}

export function f32_embedding_backward(gy: usize, ids: usize, gw: usize, rows: i32, D: i32): void {
  const bytes = <usize>D << 2;
  for (let r = 0; r < rows; r++) {
    const id = load<i32>(ids + (<usize>r << 2));
    if (id < 0) continue;
    const dst = gw + <usize>id * bytes;
    addVec(dst, gy + <usize>r * bytes, dst, D);
  }
}

// ================================================================ token cross-entropy (loss sum and logits gradient)

/** The loss of one row (label >= 0) and, when gr != 0, its gradient row: the plain loops. */
function crossEntropyRowScalar(xr: usize, gr: usize, label: i32, V: i32, scale: f32): f64 {
  let m: f32 = -Infinity;
  for (let j = 0; j < V; j++) m = max(m, load<f32>(xr + (<usize>j << 2)));
  const mf = <f64>m;
  let s: f64 = 0;
  for (let j = 0; j < V; j++) s += exp64(<f64>load<f32>(xr + (<usize>j << 2)) - mf);
  const loss = Math.log(s) - (<f64>load<f32>(xr + (<usize>label << 2)) - mf);
  if (!gr) return loss;
  const inv = 1.0 / s, sc = <f64>scale;
  for (let j = 0; j < V; j++) {
    const p = exp64(<f64>load<f32>(xr + (<usize>j << 2)) - mf) * inv;
    store<f32>(gr + (<usize>j << 2), <f32>(sc * (j == label ? p - 1.0 : p)));
  }
  return loss;
}

/** The same on f32x4 / f64x2 (max by {@link maxOf}, exp sums sequential), bit-identical. */
function crossEntropyRow(xr: usize, gr: usize, label: i32, V: i32, scale: f32): f64 {
  const mf = <f64>maxOf(xr, V);
  const mv = f64x2.splat(mf);
  // sum of exp (f64, index order)
  let s: f64 = 0;
  let j = 0;
  for (; j + 4 <= V; j += 4) {
    const v = v128.load(xr + (<usize>j << 2));
    s = add2(add2(s, exp64x2(f64x2.sub(lo(v), mv))), exp64x2(f64x2.sub(hi(v), mv)));
  }
  for (; j < V; j++) s += exp64(<f64>load<f32>(xr + (<usize>j << 2)) - mf);
  const xl = <f64>load<f32>(xr + (<usize>label << 2)); // read before grad (which may alias logits) is written
  const loss = Math.log(s) - (xl - mf);
  if (!gr) return loss;
  // grad = scale softmax, then the label's entry
  const inv = 1.0 / s, sc = <f64>scale;
  const iv = f64x2.splat(inv), sv = f64x2.splat(sc);
  for (j = 0; j + 4 <= V; j += 4) {
    const o = <usize>j << 2;
    const v = v128.load(xr + o);
    const pa = f64x2.mul(exp64x2(f64x2.sub(lo(v), mv)), iv), pb = f64x2.mul(exp64x2(f64x2.sub(hi(v), mv)), iv);
    v128.store(gr + o, pack(f64x2.mul(sv, pa), f64x2.mul(sv, pb)));
  }
  for (; j < V; j++) {
    const o = <usize>j << 2;
    store<f32>(gr + o, <f32>(sc * (exp64(<f64>load<f32>(xr + o) - mf) * inv)));
  }
  store<f32>(gr + (<usize>label << 2), <f32>(sc * (exp64(xl - mf) * inv - 1.0)));
  return loss;
}

/** The row loop of both kernels: ignored rows (label < 0) get a zero gradient row; the row losses summed in order. */
// @ts-ignore: decorator
@inline function crossEntropyRows(logits: usize, labels: usize, grad: usize, rows: i32, V: i32, scale: f32, simd: bool): f64 {
  let total: f64 = 0;
  for (let r = 0; r < rows; r++) {
    const xr = logits + (<usize>r * <usize>V << 2);
    const gr = grad ? grad + (<usize>r * <usize>V << 2) : 0;
    const label = load<i32>(labels + (<usize>r << 2));
    if (label < 0) {
      if (gr) memory.fill(gr, 0, <usize>V << 2);
      continue;
    }
    total += simd ? crossEntropyRow(xr, gr, label, V, scale) : crossEntropyRowScalar(xr, gr, label, V, scale);
  }
  return total;
}

export function f32_cross_entropy_rows_scalar(logits: usize, labels: usize, grad: usize, rows: i32, V: i32, scale: f32): f64 {
  return crossEntropyRows(logits, labels, grad, rows, V, scale, false);
}

export function f32_cross_entropy_rows(logits: usize, labels: usize, grad: usize, rows: i32, V: i32, scale: f32): f64 {
  return crossEntropyRows(logits, labels, grad, rows, V, scale, true);
}

// ================================================================ attention (training: past = 0)

/** Floats of scratch that f32_attention_backward (and its scalar twin, which uses the first maxSeq) need. */
export function f32_attention_backward_scratch(T: i32, maxSeq: i32, headDim: i32): i32 {
  return 2 * NQ * maxSeq + 3 * NQ;
}

export function f32_attention_backward_scalar(
  q: usize, qStride: i32, kc: usize, vc: usize, o: usize, oStride: i32, go: usize, goStride: i32, gq: usize, gqStride: i32,
  gk: usize, gv: usize, gkvStride: i32, B: i32, T: i32, nHeads: i32, nKv: i32, headDim: i32, maxSeq: i32, scale: f32, window: i32,
  keyMask: usize, scratch: usize,
): void {
  const G = nHeads / nKv;
  const kvBytes = <usize>(nKv * headDim) << 2;
  for (let r = 0; r < B * T; r++) {
    memory.fill(gk + (<usize>r * <usize>gkvStride << 2), 0, kvBytes);
    memory.fill(gv + (<usize>r * <usize>gkvStride << 2), 0, kvBytes);
  }
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const p = t;
      const jlo = window > 0 ? max(0, p - window + 1) : 0;
      const row = <usize>(b * T + t);
      for (let h = 0; h < nHeads; h++) {
        const g = h / G;
        const hOff = <usize>h * <usize>headDim;
        const qp = q + ((row * <usize>qStride + hOff) << 2);
        const op = o + ((row * <usize>oStride + hOff) << 2);
        const gop = go + ((row * <usize>goStride + hOff) << 2);
        const gqp = gq + ((row * <usize>gqStride + hOff) << 2);
        const kb = kc + ((<usize>(b * nKv + g) * <usize>maxSeq * <usize>headDim) << 2);
        const vb = vc + ((<usize>(b * nKv + g) * <usize>maxSeq * <usize>headDim) << 2);
        // P as f32_attention_scalar (scratch[jlo..p]); gq zeroed
        const any = weightsScalar(qp, kb, headDim, keyMask ? keyMask + (<usize>b * <usize>maxSeq << 2) : 0, jlo, p, scale, scratch);
        for (let i = 0; i < headDim; i++) store<f32>(gqp + (<usize>i << 2), 0);
        if (!any) continue;
        // D = go . o
        let D: f32 = 0;
        for (let i = 0; i < headDim; i++) D += load<f32>(gop + (<usize>i << 2)) * load<f32>(op + (<usize>i << 2));
        for (let j = jlo; j <= p; j++) {
          const P = load<f32>(scratch + (<usize>j << 2));
          if (P == 0) continue;
          const kp = kb + (<usize>j * <usize>headDim << 2);
          const vp = vb + (<usize>j * <usize>headDim << 2);
          let dP: f32 = 0;
          for (let i = 0; i < headDim; i++) dP += load<f32>(gop + (<usize>i << 2)) * load<f32>(vp + (<usize>i << 2));
          const ds = P * (dP - D) * scale;
          const kvOff = ((<usize>(b * T + j) * <usize>gkvStride + <usize>g * <usize>headDim) << 2);
          const gkp = gk + kvOff, gvp = gv + kvOff;
          for (let i = 0; i < headDim; i++) {
            const x = <usize>i << 2;
            store<f32>(gvp + x, load<f32>(gvp + x) + P * load<f32>(gop + x));
          }
          if (ds == 0) continue;
          for (let i = 0; i < headDim; i++) {
            const x = <usize>i << 2;
            store<f32>(gqp + x, load<f32>(gqp + x) + ds * load<f32>(kp + x));
            store<f32>(gkp + x, load<f32>(gkp + x) + ds * load<f32>(qp + x));
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------- SIMD kernel

/**
 * Row products of a tile into scratch rows: out[i][j] = f32(xs_i . ys_j), over the 4-key blocks of [jlo, jhi]
 * that meet query i's key range, then singles (the forward's score loop, with row pointers xs from ptrs).
 */
function tileDots(out: usize, ptrs: usize, yb: usize, ys: usize, nq: i32, c0: i32, G: i32, window: i32, jlo: i32, jhi: i32, maxSeq: i32, D: i32, mul: f32): void {
  const sv = f32x4.splat(mul);
  let j = jlo;
  for (; j + 4 <= jhi + 1; j += 4) {
    const y0 = yb + <usize>j * ys;
    for (let i = 0; i < nq; i++) {
      const p = (c0 + i) / G;
      const lo = window > 0 ? p - window + 1 : 0;
      if (j > p || j + 3 < lo) continue;
      const xp = <usize>load<u32>(ptrs + (<usize>i << 2));
      v128.store(out + ((<usize>i * <usize>maxSeq + <usize>j) << 2), f32x4.mul(dot4(xp, y0, ys, D), sv));
    }
  }
  for (; j <= jhi; j++) {
    const yp = yb + <usize>j * ys;
    for (let i = 0; i < nq; i++) {
      const p = (c0 + i) / G;
      const lo = window > 0 ? p - window + 1 : 0;
      if (j > p || j < lo) continue;
      const xp = <usize>load<u32>(ptrs + (<usize>i << 2));
      store<f32>(out + ((<usize>i * <usize>maxSeq + <usize>j) << 2), dot1(xp, yp, D) * mul);
    }
  }
}

export function f32_attention_backward(
  q: usize, qStride: i32, kc: usize, vc: usize, o: usize, oStride: i32, go: usize, goStride: i32, gq: usize, gqStride: i32,
  gk: usize, gv: usize, gkvStride: i32, B: i32, T: i32, nHeads: i32, nKv: i32, headDim: i32, maxSeq: i32, scale: f32, window: i32,
  keyMask: usize, scratch: usize,
): void {
  const G = nHeads / nKv;
  const total = T * G; // queries of one (b, g)
  const ks = <usize>headDim << 2; // bytes per K/V row
  if (window > T) window = T; // the same keys (t - T < 0 <= j), and (j + window) G below cannot overflow
  const rowBytes = <usize>maxSeq << 2; // bytes per scratch row
  const Pm = scratch, dSm = scratch + <usize>NQ * rowBytes;
  const qPtrs = dSm + <usize>NQ * rowBytes, goPtrs = qPtrs + (<usize>NQ << 2), Dv = goPtrs + (<usize>NQ << 2);
  const sv = f32x4.splat(scale), zero = f32x4.splat(0);
  for (let b = 0; b < B; b++) {
    const mrow = keyMask ? keyMask + (<usize>b * <usize>maxSeq << 2) : 0;
    for (let g = 0; g < nKv; g++) {
      const kb = kc + <usize>(b * nKv + g) * <usize>maxSeq * ks;
      const vb = vc + <usize>(b * nKv + g) * <usize>maxSeq * ks;
      const gOff = <usize>g * ks;
      for (let j = 0; j < T; j++) {
        const r = <usize>(b * T + j) * <usize>gkvStride << 2;
        memory.fill(gk + r + gOff, 0, ks);
        memory.fill(gv + r + gOff, 0, ks);
      }
      for (let c0 = 0; c0 < total; c0 += NQ) {
        const nq = min(NQ, total - c0);
        const pFirst = c0 / G, pLast = (c0 + nq - 1) / G;
        const jlo = window > 0 ? max(0, pFirst - window + 1) : 0;
        const jhi = pLast;

        // row pointers of the tile's queries, D_i = go_i . o_i, gq rows zeroed
        for (let i = 0; i < nq; i++) {
          const t = (c0 + i) / G;
          const h = g * G + (c0 + i) - t * G;
          const row = <usize>(b * T + t), hOff = <usize>h * ks;
          const gop = go + (row * <usize>goStride << 2) + hOff;
          store<u32>(qPtrs + (<usize>i << 2), <u32>(q + (row * <usize>qStride << 2) + hOff));
          store<u32>(goPtrs + (<usize>i << 2), <u32>gop);
          store<f32>(Dv + (<usize>i << 2), dot1(gop, o + (row * <usize>oStride << 2) + hOff, headDim));
          memory.fill(gq + (row * <usize>gqStride << 2) + hOff, 0, ks);
        }

        // P: scores (scaled), then softmax per query over [lo, p]; a query without admitted key gets P = 0
        tileDots(Pm, qPtrs, kb, ks, nq, c0, G, window, jlo, jhi, maxSeq, headDim, scale);
        for (let i = 0; i < nq; i++) {
          const p = (c0 + i) / G;
          const lo = window > 0 ? max(0, p - window + 1) : 0;
          const sr = Pm + <usize>i * rowBytes + (<usize>lo << 2);
          if (!softmaxKeys(sr, mrow ? mrow + (<usize>lo << 2) : 0, p - lo + 1)) memory.fill(sr, 0, <usize>(p - lo + 1) << 2);
        }

        // dS = (P (go . v - D)) scale where P != 0, else 0
        tileDots(dSm, goPtrs, vb, ks, nq, c0, G, window, jlo, jhi, maxSeq, headDim, 1);
        for (let i = 0; i < nq; i++) {
          const p = (c0 + i) / G;
          const lo = window > 0 ? max(0, p - window + 1) : 0;
          const pr = Pm + <usize>i * rowBytes, dr = dSm + <usize>i * rowBytes;
          const Dn = load<f32>(Dv + (<usize>i << 2));
          const dvv = f32x4.splat(Dn);
          let j = lo;
          for (; j + 4 <= p + 1; j += 4) {
            const jo = <usize>j << 2;
            const P = v128.load(pr + jo);
            const ds = f32x4.mul(f32x4.mul(P, f32x4.sub(v128.load(dr + jo), dvv)), sv);
            v128.store(dr + jo, v128.bitselect(ds, zero, f32x4.ne(P, zero)));
          }
          for (; j <= p; j++) {
            const jo = <usize>j << 2;
            const P = load<f32>(pr + jo);
            store<f32>(dr + jo, P != 0 ? P * (load<f32>(dr + jo) - Dn) * scale : 0);
          }
        }

        // gq_i += dS_ij k_j, in blocks of JB keys
        for (let j0 = jlo; j0 <= jhi; j0 += JB) {
          const j1 = min(j0 + JB - 1, jhi);
          for (let i = 0; i < nq; i++) {
            const t = (c0 + i) / G;
            const lo = window > 0 ? max(0, t - window + 1) : 0;
            const a = max(j0, lo), z = min(j1, t);
            if (a > z) continue;
            const h = g * G + (c0 + i) - t * G;
            const gqp = gq + (<usize>(b * T + t) * <usize>gqStride << 2) + <usize>h * ks;
            accumulatePV(gqp, dSm + <usize>i * rowBytes, kb, a, z, headDim);
          }
        }

        // gk_j += dS_ij q_i, gv_j += P_ij go_i over the tile's queries that admit key j
        for (let j = jlo; j <= jhi; j++) {
          // queries i with t_i >= j (and t_i < j + window)
          const i0 = max(0, j * G - c0);
          const i1 = window > 0 ? min(nq - 1, (j + window) * G - c0 - 1) : nq - 1;
          if (i0 > i1) continue;
          const r = (<usize>(b * T + j) * <usize>gkvStride << 2) + gOff;
          const jo = <usize>j << 2;
          accumulateT(gk + r, dSm + jo, rowBytes, qPtrs, i0, i1, headDim);
          accumulateT(gv + r, Pm + jo, rowBytes, goPtrs, i0, i1, headDim);
        }
      }
    }
  }
}
