// The training backward kernels (assembly/backward.ts) through the runtime. Three layers of checks per kernel:
//
//   (a) the SIMD kernel against its `_scalar` twin: bit for bit (norms, rope, silu_mul, embedding, cross-entropy);
//       attention within 1e-6 of the size of the terms (the dot products sum in another order)
//   (b) both against a float64 reference of the backward written here from the math, with normalized bounds:
//         rmsnorm        |ours - ref| <= 12 u (|r g| + |r^3 dot x / D|)        (r is the forward's f32 factor)
//         layernorm      |ours - ref| <= 2 u |ref| + 1e-12 rstd (|g| + |mean g| + |xh c|)  (f64 inside, one rounding)
//         rope           |ours - ref| <= 2 u (|a c| + |b s|)
//         silu_mul       2 u |ref| + 1e-14 |gy up| (1 + |gate|)               (silu' crosses 0 near gate = -1.28)
//         embedding      exact (Math.fround emulation of the row-order adds)
//         cross-entropy  grad: 2 u |ref| + 1e-14 |scale| (the label entry p - 1); loss sum: 1e-12 (1 + log V) per row
//         attention      first-order bound from the dot-product errors (see attentionBound), x 2
//       u = 2^-24, gw/gb accumulations add (rows + 6) u of their sum of |terms|
//   (c) the float64 references against central finite differences of float64 forwards (L = sum gy . y), so the
//       math itself is proven, not only its port.
//
// The plain-SIMD build always runs; the relaxed-SIMD build runs too when this Node validates it, otherwise in a
// child `node --experimental-wasm-relaxed-simd` (tests/helpers/variants.ts). The finite-difference checks do not
// depend on the build and run once.
import { rand, rng } from "./helpers/random.js";
import { forEachVariant } from "./helpers/variants.js";
import { U, admittedKeys, assertBits, assertTol, fillSlot, layernormStats, rmsnormRef, softmax64 } from "./helpers/kernels.js";
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createRuntime, type Runtime, type WasmVariant } from "../src/runtime/runtime.js";

const fr = Math.fround;
const TINY = 2 ** -149;

// ------------------------------------------------------------------------------------------------ checks

/** Central differences of f at p (p is restored), for the indices `at` (default all). */
function finiteDiff(f: () => number, p: Float64Array, at?: number[]): Float64Array {
  const g = new Float64Array(p.length);
  for (const i of at ?? p.keys()) {
    const v = p[i];
    const h = 1e-6 * Math.max(1, Math.abs(v));
    p[i] = v + h;
    const a = f();
    p[i] = v - h;
    const b = f();
    p[i] = v;
    g[i] = (a - b) / (2 * h);
  }
  return g;
}
/** |fd - ref| <= 1e-6 max|ref| (+ 1e-9) at every index. */
function assertFd(name: string, fd: ArrayLike<number>, ref: ArrayLike<number>, at?: number[]): void {
  let m = 0;
  for (let i = 0; i < ref.length; i++) m = Math.max(m, Math.abs(ref[i]));
  assert.ok(m > 1e-3, `${name}: the gradient is not trivially zero`);
  const tol = new Float64Array(ref.length).fill(1e-6 * m + 1e-9);
  if (at) {
    const keep = new Set(at);
    assertTol(name, Array.from(fd, (v, i) => (keep.has(i) ? v : 0)), Array.from(ref, (v, i) => (keep.has(i) ? v : 0)), tol);
  } else assertTol(name, fd, ref, tol);
}
const dot = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};
const f64 = (a: ArrayLike<number>): Float64Array => Float64Array.from(a);

// ------------------------------------------------------------------------------------------------ norms

/** RMSNorm backward, float64: gx = r g - r^3 (g . x / D) x, gw = sum_rows gy xhat; bounds as in the header. */
function rmsBackward(x: ArrayLike<number>, w: ArrayLike<number> | null, gy: ArrayLike<number>, rows: number, D: number, eps: number) {
  const gx = new Float64Array(rows * D), gw = new Float64Array(D), gxTerms = new Float64Array(rows * D), gwTerms = new Float64Array(D);
  for (let r = 0; r < rows; r++) {
    let ss = 0, gd = 0;
    for (let i = 0; i < D; i++) {
      const g = gy[r * D + i] * (w ? w[i] : 1);
      ss += x[r * D + i] ** 2;
      gd += g * x[r * D + i];
    }
    const rf = 1 / Math.sqrt(ss / D + eps);
    const c = (rf ** 3 * gd) / D;
    for (let i = 0; i < D; i++) {
      const k = r * D + i;
      const g = gy[k] * (w ? w[i] : 1);
      gx[k] = rf * g - c * x[k];
      gxTerms[k] = Math.abs(rf * g) + Math.abs(c * x[k]);
      gw[i] += gy[k] * x[k] * rf;
      gwTerms[i] += Math.abs(gy[k] * x[k] * rf);
    }
  }
  return { gx, gw, gxTerms, gwTerms };
}

/** torch LayerNorm forward (biased variance), float64; w, b null: absent. */
function lnForward(x: ArrayLike<number>, w: ArrayLike<number> | null, b: ArrayLike<number> | null, rows: number, D: number, eps: number): Float64Array {
  const y = new Float64Array(rows * D);
  for (let r = 0; r < rows; r++) {
    const { mean: m, rstd } = layernormStats(x, r, D, eps);
    for (let i = 0; i < D; i++) y[r * D + i] = (x[r * D + i] - m) * rstd * (w ? w[i] : 1) + (b ? b[i] : 0);
  }
  return y;
}
/** LayerNorm backward, float64: gx = rstd (g - mean g - xh mean(g xh)), gw = sum gy xh, gb = sum gy. */
function lnBackward(x: ArrayLike<number>, w: ArrayLike<number> | null, gy: ArrayLike<number>, rows: number, D: number, eps: number) {
  const gx = new Float64Array(rows * D), gw = new Float64Array(D), gb = new Float64Array(D);
  const gxTerms = new Float64Array(rows * D), gwTerms = new Float64Array(D), gbTerms = new Float64Array(D);
  for (let r = 0; r < rows; r++) {
    const { mean: m, rstd } = layernormStats(x, r, D, eps);
    let sg = 0, sgx = 0;
    for (let i = 0; i < D; i++) {
      const g = gy[r * D + i] * (w ? w[i] : 1);
      sg += g;
      sgx += g * (x[r * D + i] - m) * rstd;
    }
    const a = sg / D, c = sgx / D;
    for (let i = 0; i < D; i++) {
      const k = r * D + i;
      const g = gy[k] * (w ? w[i] : 1);
      const xh = (x[k] - m) * rstd;
      gx[k] = rstd * (g - a - xh * c);
      gxTerms[k] = rstd * (Math.abs(g) + Math.abs(a) + Math.abs(xh * c));
      gw[i] += gy[k] * xh;
      gwTerms[i] += Math.abs(gy[k] * xh);
      gb[i] += gy[k];
      gbTerms[i] += Math.abs(gy[k]);
    }
  }
  return { gx, gw, gb, gxTerms, gwTerms, gbTerms };
}

// ------------------------------------------------------------------------------------------------ rope

interface RopeTables {
  cos: Float32Array;
  sin: Float32Array;
  half: number;
}
/** transformers' tables: inv_freq = 10000^(-2i / rotary_dim), angle = p inv_freq. */
function ropeTables(maxPos: number, half: number): RopeTables {
  const cos = new Float32Array(maxPos * half), sin = new Float32Array(maxPos * half);
  for (let p = 0; p < maxPos; p++)
    for (let i = 0; i < half; i++) {
      const th = p * 10000 ** (-(2 * i) / (2 * half));
      cos[p * half + i] = Math.cos(th);
      sin[p * half + i] = Math.sin(th);
    }
  return { cos, sin, half };
}
/** The (a, b) index pairs of one head: rotate_half (i, i + half) or interleaved (2i, 2i + 1). */
function ropePairs(half: number, interleaved: boolean): [number, number][] {
  return Array.from({ length: half }, (_, i) => (interleaved ? [2 * i, 2 * i + 1] : [i, i + half]) as [number, number]);
}
/** RoPE forward (sign = 1) or its transpose (sign = -1) in float64, with the bound |a c| + |b s| per element. */
function ropeApply(x: ArrayLike<number>, stride: number, rows: number, nH: number, hd: number, pos: Int32Array, t: RopeTables, interleaved: boolean, sign: 1 | -1) {
  const y = f64(x);
  const bound = new Float64Array(x.length);
  for (let r = 0; r < rows; r++)
    for (let h = 0; h < nH; h++)
      ropePairs(t.half, interleaved).forEach(([ia, ib], i) => {
        const o = r * stride + h * hd;
        const c = t.cos[pos[r] * t.half + i], s = sign * t.sin[pos[r] * t.half + i];
        const a = x[o + ia], b = x[o + ib];
        y[o + ia] = a * c - b * s;
        y[o + ib] = b * c + a * s;
        bound[o + ia] = Math.abs(a * c) + Math.abs(b * s);
        bound[o + ib] = Math.abs(b * c) + Math.abs(a * s);
      });
  return { y, bound };
}

// ------------------------------------------------------------------------------------------------ silu_mul, cross-entropy

const sigmoid = (v: number): number => 1 / (1 + Math.exp(-v));
/** d/dgate and d/dup of silu(gate) up, float64, times gy. */
function siluMulBackward(gate: number, up: number, gy: number): { gGate: number; gUp: number } {
  const s = sigmoid(gate);
  return { gGate: gy * up * s * (1 + gate * (1 - s)), gUp: gy * gate * s };
}

/** Per-row token cross-entropy in float64: losses (0 for label < 0) and scale (softmax - onehot) (0 rows for label < 0). */
function crossEntropy(x: ArrayLike<number>, labels: Int32Array, rows: number, V: number, scale: number) {
  const loss = new Float64Array(rows), grad = new Float64Array(rows * V);
  for (let r = 0; r < rows; r++) {
    if (labels[r] < 0) continue;
    let m = -Infinity;
    for (let j = 0; j < V; j++) m = Math.max(m, x[r * V + j]);
    let s = 0;
    for (let j = 0; j < V; j++) s += Math.exp(x[r * V + j] - m);
    loss[r] = Math.log(s) - (x[r * V + labels[r]] - m);
    for (let j = 0; j < V; j++) {
      const p = Math.exp(x[r * V + j] - m) / s;
      grad[r * V + j] = scale * (j === labels[r] ? p - 1 : p);
    }
  }
  return { loss, grad };
}

// ------------------------------------------------------------------------------------------------ attention

/**
 * A training attention problem (past = 0): q/o/go rows of B T tokens (strides with gap floats), the cache holding
 * slots 0..T-1 (slots T..maxSeq-1 NaN, never to be read; masked slots NaN too unless `finiteMasked`).
 * mask kinds: "right" (batch 0: the last 2 slots padded; batch 1: left padding of 3 slots, so its first queries
 * admit nothing; further batches: holes j % 3 == 1).
 */
interface AttnCase {
  B: number;
  T: number;
  nH: number;
  nKv: number;
  hd: number;
  maxSeq: number;
  window: number;
  scale: number;
  qStride: number;
  oStride: number;
  goStride: number;
  q: Float32Array;
  kc: Float32Array;
  vc: Float32Array;
  go: Float32Array;
  o: Float32Array;
  mask: Int32Array | null;
}

function keepKey(mask: Int32Array | null, maxSeq: number, b: number, j: number): boolean {
  return !mask || mask[b * maxSeq + j] !== 0;
}

/** Admitted keys of query t in batch b, as the forward's rule with past = 0. */
function admitted(c: { window: number; maxSeq: number; mask: Int32Array | null }, b: number, t: number): number[] {
  return admittedKeys(b, t, c.window, c.mask, c.maxSeq);
}

/** Attention forward in float64 (row layout out[B T][oStride]); returns o. */
function attnForward(c: Omit<AttnCase, "o" | "go" | "goStride">, q: ArrayLike<number>, kc: ArrayLike<number>, vc: ArrayLike<number>): Float64Array {
  const { B, T, nH, nKv, hd, maxSeq, qStride, oStride, scale } = c;
  const out = new Float64Array(B * T * oStride);
  const G = nH / nKv;
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T; t++) {
      const keys = admitted(c, b, t);
      if (keys.length === 0) continue;
      for (let h = 0; h < nH; h++) {
        const g = Math.floor(h / G);
        const qo = (b * T + t) * qStride + h * hd;
        const s = keys.map((j) => {
          let d = 0;
          for (let i = 0; i < hd; i++) d += q[qo + i] * kc[((b * nKv + g) * maxSeq + j) * hd + i];
          return d * scale;
        });
        const P = softmax64(s);
        const oo = (b * T + t) * oStride + h * hd;
        keys.forEach((j, n) => {
          for (let i = 0; i < hd; i++) out[oo + i] += P[n] * vc[((b * nKv + g) * maxSeq + j) * hd + i];
        });
      }
    }
  return out;
}

/**
 * Attention backward in float64 from the definitions (P from the scores, D = sum_j P_j (go . v_j)), gq in [B T][nH hd],
 * gk/gv in [B T][nKv hd] (dense), with the first-order error bounds of an f32 implementation (see the header).
 */
function attnBackward(c: AttnCase) {
  const { B, T, nH, nKv, hd, maxSeq, qStride, oStride, goStride, scale, q, kc, vc, go, o } = c;
  const G = nH / nKv;
  const H = nH * hd, Hkv = nKv * hd;
  const gq = new Float64Array(B * T * H), gk = new Float64Array(B * T * Hkv), gv = new Float64Array(B * T * Hkv);
  const tq = new Float64Array(gq.length), tk = new Float64Array(gk.length), tv = new Float64Array(gv.length); // error bounds
  const mq = new Float64Array(gq.length), mk = new Float64Array(gk.length), mv = new Float64Array(gv.length); // term sizes
  const nk = new Float64Array(B * T * nKv); // contributions per key row
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T; t++) {
      const keys = admitted(c, b, t);
      if (keys.length === 0) continue;
      const n = keys.length;
      for (let h = 0; h < nH; h++) {
        const g = Math.floor(h / G);
        const qo = (b * T + t) * qStride + h * hd, goo = (b * T + t) * goStride + h * hd, oo = (b * T + t) * oStride + h * hd;
        const K = (j: number) => ((b * nKv + g) * maxSeq + j) * hd;
        let delta = 0;
        const s = keys.map((j) => {
          let d = 0, a = 0;
          for (let i = 0; i < hd; i++) {
            d += q[qo + i] * kc[K(j) + i];
            a += Math.abs(q[qo + i] * kc[K(j) + i]);
          }
          delta = Math.max(delta, ((hd + 2) * U * a + U * Math.abs(d)) * Math.abs(scale));
          return d * scale;
        });
        const P = softmax64(s);
        const dP = keys.map((j) => {
          let d = 0;
          for (let i = 0; i < hd; i++) d += go[goo + i] * vc[K(j) + i];
          return d;
        });
        const dPabs = keys.map((j) => {
          let d = 0;
          for (let i = 0; i < hd; i++) d += Math.abs(go[goo + i] * vc[K(j) + i]);
          return d;
        });
        const D = dot(P, dP);
        let Dabs = 0;
        for (let i = 0; i < hd; i++) Dabs += Math.abs(go[goo + i]) * (Math.abs(o[oo + i]) + U * Math.abs(o[oo + i]));
        const epsP = 2.2 * delta + (n + 4) * U;
        const epsD = (hd + 3) * U * Dabs;
        keys.forEach((j, k) => {
          const dS = P[k] * (dP[k] - D) * scale;
          const dSabs = Math.abs(dS);
          const E = Math.abs(scale) * P[k] * ((epsP + 3 * U) * Math.abs(dP[k] - D) + (hd + 2) * U * dPabs[k] + epsD);
          const size = Math.abs(scale) * P[k] * (dPabs[k] + Dabs);
          const kr = (b * T + j) * Hkv + g * hd;
          nk[(b * T + j) * nKv + g]++;
          for (let i = 0; i < hd; i++) {
            const kv = kc[K(j) + i], vv = vc[K(j) + i];
            const gi = (b * T + t) * H + h * hd + i;
            gq[gi] += dS * kv;
            tq[gi] += E * Math.abs(kv) + (n + 1) * U * dSabs * Math.abs(kv);
            mq[gi] += size * Math.abs(kv);
            gk[kr + i] += dS * q[qo + i];
            tk[kr + i] += E * Math.abs(q[qo + i]) + U * dSabs * Math.abs(q[qo + i]); // + N_j u sum |terms| below
            mk[kr + i] += size * Math.abs(q[qo + i]);
            gv[kr + i] += P[k] * go[goo + i];
            tv[kr + i] += P[k] * epsP * Math.abs(go[goo + i]) + U * P[k] * Math.abs(go[goo + i]);
            mv[kr + i] += P[k] * Math.abs(go[goo + i]);
          }
        });
      }
    }
  // the f32 accumulation over N_j contributions of a key row
  for (let r = 0; r < B * T; r++)
    for (let g = 0; g < nKv; g++)
      for (let i = 0; i < hd; i++) {
        const x = r * Hkv + g * hd + i, N = nk[r * nKv + g];
        tk[x] += (N + 1) * U * mk[x];
        tv[x] += (N + 1) * U * mv[x];
      }
  return { gq, gk, gv, tq, tk, tv, mq, mk, mv };
}

function makeAttnCase(B: number, T: number, nH: number, nKv: number, hd: number, window: number, masked: boolean, seed: number, finiteMasked = false): AttnCase {
  const maxSeq = T + 3;
  const qStride = nH * hd + 3, oStride = nH * hd + 1, goStride = nH * hd + 2;
  const cn = B * nKv * maxSeq * hd;
  const kc = rand(cn, seed), vc = rand(cn, seed + 1);
  let mask: Int32Array | null = null;
  if (masked) {
    mask = new Int32Array(B * maxSeq);
    for (let b = 0; b < B; b++)
      for (let j = 0; j < maxSeq; j++) mask[b * maxSeq + j] = (b === 0 ? j < T - 2 : b === 1 ? j >= 3 : j % 3 !== 1) ? 1 : 0;
  }
  for (let b = 0; b < B; b++)
    for (let j = 0; j < maxSeq; j++) if (!(j < T && (finiteMasked || keepKey(mask, maxSeq, b, j)))) fillSlot(kc, vc, nKv, maxSeq, hd, b, j, NaN);
  const q = rand(B * T * qStride, seed + 2, 2);
  const go = rand(B * T * goStride, seed + 3);
  const base = { B, T, nH, nKv, hd, maxSeq, window, scale: fr(1 / Math.sqrt(hd)), qStride, oStride, q, kc, vc, mask };
  const o = Float32Array.from(attnForward(base, q, kc, vc));
  return { ...base, goStride, go, o };
}

interface AttnGrads {
  gq: Float32Array; // dense [B T][nH hd]
  gk: Float32Array; // dense [B T][nKv hd]
  gv: Float32Array;
}

/**
 * Runs the kernel (or its twin) with separate output buffers (gap floats preset to 7 and checked) or one fused
 * [B T][(nH + 2 nKv) hd + 2] buffer (gq | gk | gv | 2 gap floats); returns the dense gradients.
 */
function runAttnBackward(rt: Runtime, c: AttnCase, scalar: boolean, fused: boolean, name: string): AttnGrads {
  const { B, T, nH, nKv, hd, maxSeq } = c;
  const H = nH * hd, Hkv = nKv * hd, rows = B * T;
  const q = rt.allocF32(c.q), kc = rt.allocF32(c.kc), vc = rt.allocF32(c.vc), o = rt.allocF32(c.o), go = rt.allocF32(c.go);
  const mask = c.mask ? rt.allocI32(c.mask) : null;
  const scratch = rt.allocF32(new Float32Array(rt.k.f32_attention_backward_scratch(T, maxSeq, hd)).fill(NaN));
  const f = scalar ? rt.k.f32_attention_backward_scalar : rt.k.f32_attention_backward;
  let outs: { buf: ReturnType<Runtime["allocF32"]>; off: number; stride: number; width: number }[];
  if (fused) {
    const stride = H + 2 * Hkv + 2;
    const buf = rt.allocF32(new Float32Array(rows * stride).fill(7));
    outs = [
      { buf, off: 0, stride, width: H },
      { buf, off: H, stride, width: Hkv },
      { buf, off: H + Hkv, stride, width: Hkv },
    ];
  } else {
    const qs = H + 3, kvs = Hkv + 5;
    outs = [
      { buf: rt.allocF32(new Float32Array(rows * qs).fill(7)), off: 0, stride: qs, width: H },
      { buf: rt.allocF32(new Float32Array(rows * kvs).fill(7)), off: 0, stride: kvs, width: Hkv },
      { buf: rt.allocF32(new Float32Array(rows * kvs).fill(7)), off: 0, stride: kvs, width: Hkv },
    ];
  }
  const [oq, ok, ov] = outs;
  f(
    q.ptr, c.qStride, kc.ptr, vc.ptr, o.ptr, c.oStride, go.ptr, c.goStride, oq.buf.ptr + 4 * oq.off, oq.stride, ok.buf.ptr + 4 * ok.off, ov.buf.ptr + 4 * ov.off,
    ok.stride, B, T, nH, nKv, hd, maxSeq, c.scale, c.window, mask ? mask.ptr : 0, scratch.ptr,
  );
  // nothing outside the heads of a row was written; inputs unchanged
  const written = new Set<string>();
  const owned = (i: number, stride: number) => outs.some((x) => x.stride === stride && i % stride >= x.off && i % stride < x.off + x.width);
  for (const x of outs) {
    if (written.has(`${x.buf.ptr}`)) continue;
    written.add(`${x.buf.ptr}`);
    const v = x.buf.view;
    for (let i = 0; i < v.length; i++) if (!owned(i, x.stride) && v[i] !== 7) assert.fail(`${name}: float ${i % x.stride} of row ${Math.floor(i / x.stride)} (outside the heads) changed`);
  }
  assertBits(`${name}: q unchanged`, q.view, c.q);
  assertBits(`${name}: kc unchanged`, kc.view, c.kc);
  const dense = (x: (typeof outs)[number]) => {
    const v = x.buf.view, d = new Float32Array(rows * x.width);
    for (let r = 0; r < rows; r++) for (let i = 0; i < x.width; i++) d[r * x.width + i] = v[r * x.stride + x.off + i];
    return d;
  };
  const r = { gq: dense(oq), gk: dense(ok), gv: dense(ov) };
  for (const b of new Set([q, kc, vc, o, go, scratch, ...outs.map((x) => x.buf)])) b.free();
  mask?.free();
  return r;
}

function checkAttnGrads(name: string, c: AttnCase, got: AttnGrads, ref: ReturnType<typeof attnBackward>): void {
  for (const k of ["gq", "gk", "gv"] as const) {
    for (let i = 0; i < got[k].length; i++) if (!Number.isFinite(got[k][i])) assert.fail(`${name} ${k}[${i}] = ${got[k][i]} (a masked or future NaN slot leaked)`);
  }
  // a query with no admitted key: gq exactly +0; a key no query admits: gk = gv = +0
  for (let b = 0; b < c.B; b++)
    for (let t = 0; t < c.T; t++) {
      if (admitted(c, b, t).length > 0) continue;
      for (let i = 0; i < c.nH * c.hd; i++) assert.ok(Object.is(got.gq[(b * c.T + t) * c.nH * c.hd + i], 0), `${name}: query (${b}, ${t}) admits no key: gq must be +0`);
    }
  for (let b = 0; b < c.B; b++)
    for (let j = 0; j < c.T; j++) {
      if (keepKey(c.mask, c.maxSeq, b, j)) continue;
      for (let i = 0; i < c.nKv * c.hd; i++) {
        assert.ok(Object.is(got.gk[(b * c.T + j) * c.nKv * c.hd + i], 0), `${name}: masked key (${b}, ${j}): gk must be +0`);
        assert.ok(Object.is(got.gv[(b * c.T + j) * c.nKv * c.hd + i], 0), `${name}: masked key (${b}, ${j}): gv must be +0`);
      }
    }
  assertTol(`${name} gq`, got.gq, ref.gq, ref.tq.map((v) => 2 * v + TINY));
  assertTol(`${name} gk`, got.gk, ref.gk, ref.tk.map((v) => 2 * v + TINY));
  assertTol(`${name} gv`, got.gv, ref.gv, ref.tv.map((v) => 2 * v + TINY));
}

/** SIMD vs twin: |simd - twin| <= rel (size of the terms), the largest normalized difference returned. */
function compareTwin(name: string, a: AttnGrads, b: AttnGrads, ref: ReturnType<typeof attnBackward>, rel: number): number {
  let worst = 0;
  for (const [k, m] of [["gq", ref.mq], ["gk", ref.mk], ["gv", ref.mv]] as const) {
    for (let i = 0; i < m.length; i++) {
      const e = Math.abs(a[k][i] - b[k][i]) / (m[i] + 1e-30);
      if (a[k][i] === b[k][i]) continue;
      worst = Math.max(worst, e);
      assert.ok(e <= rel, `${name} ${k}[${i}]: SIMD ${a[k][i]} vs twin ${b[k][i]} (${e.toExponential(2)} of the terms' size)`);
    }
  }
  return worst;
}

// ------------------------------------------------------------------------------------------------ (c) finite differences

if (!process.env.SHIRA_KERNELS_VARIANT) {
  describe("float64 backward references against central finite differences of float64 forwards", () => {
    test("rmsnorm: gx and gw (with weight), gx without weight", () => {
      const rows = 3, D = 7, eps = 1e-6;
      const x = f64(rand(rows * D, 1, 2)), w = f64(rand(D, 2, 1.5)), gy = f64(rand(rows * D, 3));
      const L = (wt: Float64Array | null) => () => dot(gy, rmsnormRef(x, wt, rows, D, eps));
      const ref = rmsBackward(x, w, gy, rows, D, eps);
      assertFd("rmsnorm gx", finiteDiff(L(w), x), ref.gx);
      assertFd("rmsnorm gw", finiteDiff(L(w), w), ref.gw);
      assertFd("rmsnorm gx (no weight)", finiteDiff(L(null), x), rmsBackward(x, null, gy, rows, D, eps).gx);
    });

    test("layernorm: gx, gw, gb (affine) and gx without affine", () => {
      const rows = 3, D = 6, eps = 1e-5;
      const x = f64(rand(rows * D, 4, 2)).map((v) => v + 3), w = f64(rand(D, 5, 1.5)), b = f64(rand(D, 6)), gy = f64(rand(rows * D, 7));
      const ref = lnBackward(x, w, gy, rows, D, eps);
      const L = () => dot(gy, lnForward(x, w, b, rows, D, eps));
      assertFd("layernorm gx", finiteDiff(L, x), ref.gx);
      assertFd("layernorm gw", finiteDiff(L, w), ref.gw);
      assertFd("layernorm gb", finiteDiff(L, b), ref.gb);
      assertFd("layernorm gx (no affine)", finiteDiff(() => dot(gy, lnForward(x, null, null, rows, D, eps)), x), lnBackward(x, null, gy, rows, D, eps).gx);
    });

    test("rope: the transpose of the rotation (both layouts, partial rotary)", () => {
      const rows = 3, nH = 2, hd = 8, stride = nH * hd + 1;
      const pos = Int32Array.from([0, 5, 11]);
      for (const interleaved of [false, true])
        for (const half of [4, 2]) {
          const t = ropeTables(16, half);
          const x = f64(rand(rows * stride, 8)), gy = f64(rand(rows * stride, 9));
          const fd = finiteDiff(() => dot(gy, ropeApply(x, stride, rows, nH, hd, pos, t, interleaved, 1).y), x);
          assertFd(`rope backward interleaved=${interleaved} half=${half}`, fd, ropeApply(gy, stride, rows, nH, hd, pos, t, interleaved, -1).y);
        }
    });

    test("silu_mul: d/dgate and d/dup", () => {
      const n = 40;
      const gate = f64(rand(n, 10, 8)), up = f64(rand(n, 11, 3)), gy = f64(rand(n, 12));
      const L = () => {
        let s = 0;
        for (let i = 0; i < n; i++) s += gy[i] * gate[i] * sigmoid(gate[i]) * up[i];
        return s;
      };
      const ref = Array.from(gate, (g, i) => siluMulBackward(g, up[i], gy[i]));
      assertFd("silu_mul gGate", finiteDiff(L, gate), ref.map((r) => r.gGate));
      assertFd("silu_mul gUp", finiteDiff(L, up), ref.map((r) => r.gUp));
    });

    test("embedding: the gathered rows' gradients scatter-add into the table (repeated ids, skipped rows)", () => {
      const V = 5, D = 3, ids = Int32Array.from([2, 0, 2, -1, 4]);
      const table = f64(rand(V * D, 13)), gy = f64(rand(ids.length * D, 14));
      const L = () => {
        let s = 0;
        ids.forEach((id, r) => {
          if (id >= 0) for (let j = 0; j < D; j++) s += gy[r * D + j] * table[id * D + j];
        });
        return s;
      };
      const ref = new Float64Array(V * D);
      ids.forEach((id, r) => {
        if (id >= 0) for (let j = 0; j < D; j++) ref[id * D + j] += gy[r * D + j];
      });
      assertFd("embedding gw", finiteDiff(L, table), ref);
    });

    test("cross-entropy: the logits gradient of the summed loss (an ignored row gets 0)", () => {
      const rows = 4, V = 9;
      const x = f64(rand(rows * V, 15, 4)), labels = Int32Array.from([3, -100, 0, 8]);
      const L = () => crossEntropy(x, labels, rows, V, 1).loss.reduce((a, b) => a + b, 0);
      assertFd("cross-entropy grad", finiteDiff(L, x), crossEntropy(x, labels, rows, V, 1).grad);
    });

    test("attention: gq, gk, gv of L = sum go . o (GQA and MHA, window, padding mask, T = 1)", () => {
      const shapes: [number, number, number, number, number, number, boolean][] = [
        // B, T, nH, nKv, hd, window, masked
        [2, 5, 4, 2, 3, 0, false],
        [2, 5, 4, 2, 3, 3, true],
        [3, 6, 2, 2, 5, 0, true],
        [1, 1, 2, 1, 4, 0, false],
      ];
      let seed = 20;
      for (const [B, T, nH, nKv, hd, window, masked] of shapes) {
        const c = makeAttnCase(B, T, nH, nKv, hd, window, masked, (seed += 10), true);
        const q = f64(c.q), kc = f64(c.kc), vc = f64(c.vc);
        const L = () => dot(goDense(c), denseO(c, attnForward(c, q, kc, vc)));
        const ref = attnBackward(c);
        const tag = `B=${B} T=${T} nH=${nH} nKv=${nKv} hd=${hd} window=${window} mask=${masked}`;
        // q: the head floats of every row; k, v: cache slots 0..T-1 mapped to rows b T + j
        const qAt: number[] = [], kvAt: number[] = [];
        for (let r = 0; r < B * T; r++) for (let i = 0; i < nH * hd; i++) qAt.push(r * c.qStride + i);
        for (let b = 0; b < B; b++) for (let g = 0; g < nKv; g++) for (let j = 0; j < T; j++) for (let i = 0; i < hd; i++) kvAt.push(((b * nKv + g) * c.maxSeq + j) * hd + i);
        const fq = finiteDiff(L, q, qAt), fk = finiteDiff(L, kc, kvAt), fv = finiteDiff(L, vc, kvAt);
        const dq = new Float64Array(ref.gq.length), dk = new Float64Array(ref.gk.length), dv = new Float64Array(ref.gv.length);
        for (let r = 0; r < B * T; r++) for (let i = 0; i < nH * hd; i++) dq[r * nH * hd + i] = fq[r * c.qStride + i];
        for (let b = 0; b < B; b++)
          for (let g = 0; g < nKv; g++)
            for (let j = 0; j < T; j++)
              for (let i = 0; i < hd; i++) {
                const src = ((b * nKv + g) * c.maxSeq + j) * hd + i, dst = (b * T + j) * nKv * hd + g * hd + i;
                dk[dst] = fk[src];
                dv[dst] = fv[src];
              }
        if (T > 1) {
          assertFd(`attention gq ${tag}`, dq, ref.gq);
          assertFd(`attention gk ${tag}`, dk, ref.gk);
        } else {
          // one key per softmax: P = 1 whatever q and k are, so gq = gk = 0 (and gv = go)
          for (const [k, fd, r] of [["gq", dq, ref.gq], ["gk", dk, ref.gk]] as const) {
            assertTol(`attention ${k} ${tag}`, fd, new Float64Array(fd.length), new Float64Array(fd.length).fill(1e-8));
            assertBits(`attention ${k} ${tag} (reference)`, r, new Float64Array(r.length));
          }
        }
        assertFd(`attention gv ${tag}`, dv, ref.gv);
      }
    });
  });
}

/** go as dense [B T][nH hd]. */
function goDense(c: AttnCase): Float64Array {
  const H = c.nH * c.hd, d = new Float64Array(c.B * c.T * H);
  for (let r = 0; r < c.B * c.T; r++) for (let i = 0; i < H; i++) d[r * H + i] = c.go[r * c.goStride + i];
  return d;
}
/** An out array [B T][oStride] as dense [B T][nH hd]. */
function denseO(c: AttnCase, o: Float64Array): Float64Array {
  const H = c.nH * c.hd, d = new Float64Array(c.B * c.T * H);
  for (let r = 0; r < c.B * c.T; r++) for (let i = 0; i < H; i++) d[r * H + i] = o[r * c.oStride + i];
  return d;
}

// ------------------------------------------------------------------------------------------------ (a), (b): the kernels

function suite(variant: WasmVariant): void {
  describe(`training backward kernels (${variant} build)`, () => {
    const rt: Runtime = createRuntime({ variant });

    test("f32_rmsnorm_backward: gx within 12 u of its terms, gw accumulated; SIMD == twin; gx may alias gy", () => {
      let seed = 100;
      const eps = 1e-6;
      for (const rows of [1, 3])
        for (const D of [1, 4, 5, 64, 67, 896]) {
          const xa = rand(rows * D, seed++, 3), wa = rand(D, seed++, 2), gya = rand(rows * D, seed++), gw0 = rand(D, seed++);
          for (const withW of [true, false]) {
            const ref = rmsBackward(xa, withW ? wa : null, gya, rows, D, eps);
            const outs: Float32Array[][] = [];
            for (const name of ["f32_rmsnorm_backward", "f32_rmsnorm_backward_scalar"] as const) {
              const x = rt.allocF32(xa), w = rt.allocF32(wa), gy = rt.allocF32(gya), gx = rt.allocF32(rows * D), gw = rt.allocF32(gw0);
              rt.k[name](x.ptr, withW ? w.ptr : 0, gy.ptr, gx.ptr, gw.ptr, rows, D, eps);
              const tag = `${name} rows=${rows} D=${D} w=${withW}`;
              assertTol(`${tag} gx`, gx.view, ref.gx, ref.gxTerms.map((v) => 12 * U * v + TINY));
              const gwRef = ref.gw.map((v, i) => v + gw0[i]);
              assertTol(`${tag} gw`, gw.view, gwRef, ref.gwTerms.map((v, i) => (rows + 6) * U * (v + Math.abs(gw0[i])) + TINY));
              const gxs = gx.toArray();
              // no gw: gx unchanged; gx over gy (in place)
              rt.k[name](x.ptr, withW ? w.ptr : 0, gy.ptr, gy.ptr, 0, rows, D, eps);
              assertBits(`${tag} in place (gx = gy)`, gy.view, gxs);
              outs.push([gxs, gw.toArray()]);
              for (const b of [x, w, gy, gx, gw]) b.free();
            }
            assertBits(`rmsnorm_backward SIMD vs twin gx rows=${rows} D=${D}`, outs[0][0], outs[1][0]);
            assertBits(`rmsnorm_backward SIMD vs twin gw rows=${rows} D=${D}`, outs[0][1], outs[1][1]);
          }
        }
    });

    test("f32_layernorm_backward: gx within 2 u (+ f64 slack), gw/gb accumulated, w absent = 1; SIMD == twin", () => {
      let seed = 200;
      const eps = 1e-5;
      for (const rows of [1, 3])
        for (const D of [1, 4, 5, 64, 67, 768]) {
          const xa = rand(rows * D, seed++, 3).map((v) => v + 5);
          const wa = rand(D, seed++, 2), gya = rand(rows * D, seed++), gw0 = rand(D, seed++), gb0 = rand(D, seed++);
          for (const [withW, withGw, withGb] of [[true, true, true], [false, false, false], [true, false, true], [false, true, false]] as const) {
            const ref = lnBackward(xa, withW ? wa : null, gya, rows, D, eps);
            const outs: Float32Array[][] = [];
            for (const name of ["f32_layernorm_backward", "f32_layernorm_backward_scalar"] as const) {
              const x = rt.allocF32(xa), w = rt.allocF32(wa), gy = rt.allocF32(gya), gx = rt.allocF32(rows * D), gw = rt.allocF32(gw0), gb = rt.allocF32(gb0);
              rt.k[name](x.ptr, withW ? w.ptr : 0, gy.ptr, gx.ptr, withGw ? gw.ptr : 0, withGb ? gb.ptr : 0, rows, D, eps);
              const tag = `${name} rows=${rows} D=${D} w=${withW} gw=${withGw} gb=${withGb}`;
              assertTol(`${tag} gx`, gx.view, ref.gx, ref.gx.map((v, i) => 2 * U * Math.abs(v) + 1e-12 * ref.gxTerms[i] + TINY));
              const acc = (sum: Float64Array, terms: Float64Array, init: Float32Array) => [sum.map((v, i) => v + init[i]), terms.map((v, i) => (rows + 6) * U * (v + Math.abs(init[i])) + TINY)] as const;
              if (withGw) assertTol(`${tag} gw`, gw.view, ...acc(ref.gw, ref.gwTerms, gw0));
              else assertBits(`${tag} gw untouched`, gw.view, gw0);
              if (withGb) assertTol(`${tag} gb`, gb.view, ...acc(ref.gb, ref.gbTerms, gb0));
              else assertBits(`${tag} gb untouched`, gb.view, gb0);
              outs.push([gx.toArray(), gw.toArray(), gb.toArray()]);
              rt.k[name](x.ptr, withW ? w.ptr : 0, gy.ptr, gy.ptr, 0, 0, rows, D, eps);
              assertBits(`${tag} in place (gx = gy)`, gy.view, outs[outs.length - 1][0]);
              for (const b of [x, w, gy, gx, gw, gb]) b.free();
            }
            for (let k = 0; k < 3; k++) assertBits(`layernorm_backward SIMD vs twin (${k}) rows=${rows} D=${D}`, outs[0][k], outs[1][k]);
          }
        }
    });

    test("f32_rope_backward: the transpose rotation (both layouts, partial rotary, strided rows); undoes f32_rope; SIMD == twin", () => {
      let seed = 300;
      for (const hd of [4, 6, 16, 48, 64, 80])
        for (const partial of [false, true])
          for (const interleaved of [false, true]) {
            const half = partial ? Math.max(1, hd >> 2) : hd >> 1;
            const t = ropeTables(64, half);
            const rows = 5, nH = 3, stride = nH * hd + 3;
            const ga = rand(rows * stride, seed++, 2);
            const r = rng(seed++);
            const pa = Int32Array.from({ length: rows }, () => Math.floor(r() * 64));
            const { y: ref, bound } = ropeApply(ga, stride, rows, nH, hd, pa, t, interleaved, -1);
            const outs: Float32Array[] = [];
            for (const name of ["f32_rope_backward", "f32_rope_backward_scalar"] as const) {
              const x = rt.allocF32(ga), pos = rt.allocI32(pa), c = rt.allocF32(t.cos), s = rt.allocF32(t.sin);
              rt.k[name](x.ptr, stride, rows, nH, hd, pos.ptr, c.ptr, s.ptr, half, interleaved ? 1 : 0);
              const got = x.toArray();
              assertTol(`${name} hd=${hd} half=${half} interleaved=${interleaved}`, got, ref, bound.map((v) => 2 * U * v + TINY));
              for (let i = 0; i < got.length; i++) {
                const k = i % stride;
                if (k >= nH * hd || k % hd >= 2 * half) assert.ok(Object.is(got[i], ga[i]), `${name}: float ${i} outside the rotary part changed`);
              }
              // backward(forward(x)) = x up to rounding (the rotation is orthogonal: cos^2 + sin^2 = 1 in f32 up to 2 u)
              rt.k.f32_rope(x.ptr, stride, rows, nH, hd, pos.ptr, c.ptr, s.ptr, half, interleaved ? 1 : 0);
              assertTol(`${name} undoes f32_rope`, x.view, ga, Array.from(ga, (v) => 8 * U * 2 + TINY));
              outs.push(got);
              for (const b of [x, pos, c, s]) b.free();
            }
            assertBits(`rope_backward SIMD vs twin hd=${hd} half=${half} interleaved=${interleaved}`, outs[0], outs[1]);
          }
    });

    test("f32_silu_mul_backward: within 2 u (tails, zero crossing of silu'); gGate or gUp may alias gy; SIMD == twin", () => {
      const n = 1003;
      const ga = Float32Array.from([...rand(n - 10, 30, 10), 0, -0, 40, -40, 100, -100, 1e-30, -20, -1.2784645, 800]);
      const ua = rand(n, 31, 3), gya = rand(n, 32, 2);
      const ref = Array.from(ga, (g, i) => siluMulBackward(g, ua[i], gya[i]));
      const rg = ref.map((r) => r.gGate), ru = ref.map((r) => r.gUp);
      const tol = (vals: number[]) => vals.map((v, i) => 2 * U * Math.abs(v) + 1e-14 * Math.abs(gya[i] * ua[i]) * (1 + Math.abs(ga[i])) + TINY);
      const outs: Float32Array[][] = [];
      for (const sfx of ["", "_scalar"] as const) {
        const name = `f32_silu_mul_backward${sfx}` as const;
        for (const len of [n, 1, 3, 4, 7]) {
          const g = rt.allocF32(ga.subarray(0, len)), u = rt.allocF32(ua.subarray(0, len)), gy = rt.allocF32(gya.subarray(0, len));
          const gg = rt.allocF32(len), gu = rt.allocF32(len);
          rt.k[name](g.ptr, u.ptr, gy.ptr, gg.ptr, gu.ptr, len);
          assertTol(`${name} gGate n=${len}`, gg.view, rg.slice(0, len), tol(rg).slice(0, len));
          assertTol(`${name} gUp n=${len}`, gu.view, ru.slice(0, len), tol(ru).slice(0, len));
          if (len === n) outs.push([gg.toArray(), gu.toArray()]);
          // gGate over gy, then gUp over gy
          const gy2 = rt.allocF32(gya.subarray(0, len));
          rt.k[name](g.ptr, u.ptr, gy2.ptr, gy2.ptr, gu.ptr, len);
          assertBits(`${name} gGate = gy`, gy2.view, gg.view);
          gy2.set(gya.subarray(0, len));
          rt.k[name](g.ptr, u.ptr, gy2.ptr, gg.ptr, gy2.ptr, len);
          assertBits(`${name} gUp = gy`, gy2.view, gu.view);
          for (const b of [g, u, gy, gg, gu, gy2]) b.free();
        }
      }
      assertBits("silu_mul_backward SIMD vs twin gGate", outs[0][0], outs[1][0]);
      assertBits("silu_mul_backward SIMD vs twin gUp", outs[0][1], outs[1][1]);
    });

    test("f32_embedding_backward: exact row-order scatter-add (repeated ids, id < 0 skipped); SIMD == twin", () => {
      let seed = 400;
      for (const D of [1, 4, 5, 12, 64, 67]) {
        const V = 11, rows = 23;
        const r = rng(seed++);
        const ids = Int32Array.from({ length: rows }, (_, i) => (i % 7 === 3 ? -100 : i % 5 === 0 ? 2 : Math.floor(r() * V)));
        const gya = rand(rows * D, seed++), gw0 = rand(V * D, seed++);
        const want = gw0.slice();
        ids.forEach((id, i) => {
          if (id >= 0) for (let j = 0; j < D; j++) want[id * D + j] = fr(want[id * D + j] + gya[i * D + j]);
        });
        for (const sfx of ["", "_scalar"] as const) {
          const gy = rt.allocF32(gya), id = rt.allocI32(ids), gw = rt.allocF32(gw0);
          rt.k[`f32_embedding_backward${sfx}` as const](gy.ptr, id.ptr, gw.ptr, rows, D);
          assertBits(`embedding_backward${sfx} D=${D}`, gw.view, want);
          for (const b of [gy, id, gw]) b.free();
        }
      }
    });

    test("f32_cross_entropy_rows: loss sum and scale (softmax - onehot); ignored rows; grad = logits in place; V = 5000; SIMD == twin", () => {
      let seed = 500;
      for (const [rows, V, spread] of [[1, 1, 1], [3, 7, 4], [5, 64, 8], [4, 5000, 10], [2, 50257, 6]] as const) {
        const xa = rand(rows * V, seed++, spread);
        const r = rng(seed++);
        const la = Int32Array.from({ length: rows }, (_, i) => (i === 1 ? -100 : Math.floor(r() * V)));
        if (V > 16) la[0] = V - 1;
        const scale = fr(1 / 3);
        const { loss, grad } = crossEntropy(xa, la, rows, V, scale);
        const lossSum = loss.reduce((a, b) => a + b, 0);
        const gtol = grad.map((v) => 2 * U * Math.abs(v) + 1e-14 * scale + TINY);
        const results: { loss: number; grad: Float32Array }[] = [];
        for (const sfx of ["", "_scalar"] as const) {
          const name = `f32_cross_entropy_rows${sfx}` as const;
          const tag = `${name} rows=${rows} V=${V}`;
          const x = rt.allocF32(xa), lab = rt.allocI32(la), g = rt.allocF32(new Float32Array(rows * V).fill(NaN));
          const got = rt.k[name](x.ptr, lab.ptr, g.ptr, rows, V, scale) as number;
          assert.ok(Math.abs(got - lossSum) <= 1e-12 * rows * (1 + Math.log(V)), `${tag}: loss ${got} vs ${lossSum}`);
          assertTol(`${tag} grad`, g.view, grad, gtol);
          assertBits(`${tag}: logits unchanged`, x.view, xa);
          // loss only (grad = 0), then in place (grad = logits)
          assert.equal(rt.k[name](x.ptr, lab.ptr, 0, rows, V, scale), got, `${tag}: loss without grad`);
          assert.equal(rt.k[name](x.ptr, lab.ptr, x.ptr, rows, V, scale), got, `${tag}: loss in place`);
          assertBits(`${tag} grad in place`, x.view, g.view);
          results.push({ loss: got, grad: g.toArray() });
          for (const b of [x, lab, g]) b.free();
        }
        assert.equal(results[0].loss, results[1].loss, `cross-entropy SIMD vs twin loss rows=${rows} V=${V}`);
        assertBits(`cross-entropy SIMD vs twin grad rows=${rows} V=${V}`, results[0].grad, results[1].grad);
      }
      // a row whose logits are all equal: loss log V, grad scale (1/V - onehot)
      const V = 10;
      const x = rt.allocF32(new Float32Array(V).fill(3)), lab = rt.allocI32([4]), g = rt.allocF32(V);
      assert.ok(Math.abs((rt.k.f32_cross_entropy_rows(x.ptr, lab.ptr, g.ptr, 1, V, 2) as number) - Math.log(V)) < 1e-15);
      assertBits("uniform row grad", g.view, Float32Array.from({ length: V }, (_, j) => fr(2 * (0.1 - (j === 4 ? 1 : 0)))));
      for (const b of [x, lab, g]) b.free();
    });

    test("f32_attention_backward: GQA/MHA, padding masks, window, headDim % 4 != 0, fused strides, T = 1, against float64", () => {
      const cases: [number, number, number, number, number, number, boolean][] = [
        // B, T, nH, nKv, hd, window, masked
        [2, 17, 4, 2, 6, 0, false], // GQA, 3 tiles of the group, hd % 4 != 0
        [3, 17, 4, 2, 48, 0, true], // GQA, right / left padding / holes
        [2, 20, 4, 4, 48, 0, true], // MHA
        [2, 19, 4, 2, 64, 5, true], // sliding window with padding
        [1, 33, 2, 1, 5, 7, false], // window, odd hd, G = 2
        [2, 1, 4, 2, 8, 0, false], // T = 1
        [2, 1, 4, 2, 8, 0, true], // T = 1, batch 1's only key padded (empty queries)
        [1, 9, 7, 1, 20, 0, false], // G = 7 (tiles split tokens)
        [2, 24, 2, 2, 16, 0, true],
      ];
      let seed = 600;
      let worstTwin = 0;
      for (const [B, T, nH, nKv, hd, window, masked] of cases) {
        const c = makeAttnCase(B, T, nH, nKv, hd, window, masked, (seed += 10));
        const ref = attnBackward(c);
        const tag = `B=${B} T=${T} nH=${nH} nKv=${nKv} hd=${hd} window=${window} mask=${masked}`;
        const simd = runAttnBackward(rt, c, false, false, `attention_backward ${tag}`);
        const twin = runAttnBackward(rt, c, true, false, `attention_backward_scalar ${tag}`);
        checkAttnGrads(`attention_backward ${tag}`, c, simd, ref);
        checkAttnGrads(`attention_backward_scalar ${tag}`, c, twin, ref);
        worstTwin = Math.max(worstTwin, compareTwin(`attention_backward ${tag}`, simd, twin, ref, 1e-6));
        // fused: gq | gk | gv slices of one buffer with one stride give the same bits
        for (const scalar of [false, true]) {
          const fused = runAttnBackward(rt, c, scalar, true, `attention_backward${scalar ? "_scalar" : ""} fused ${tag}`);
          const sep = scalar ? twin : simd;
          for (const k of ["gq", "gk", "gv"] as const) assertBits(`fused ${k} ${tag}`, fused[k], sep[k]);
        }
      }
      assert.ok(worstTwin < 1e-6, `SIMD vs twin: worst ${worstTwin}`);
    });

    test("f32_attention_backward: padded queries leave gq 0 and add nothing (= the unpadded run); window >= T = no window; scratch size", () => {
      // batch 1 left padded over 3 slots: queries 0..2 admit nothing; the gradients of the rest equal an unpadded run
      // on the slots 3.. only (keys and queries shifted), up to the dot-product order
      for (const [T, maxSeq, hd] of [[1, 1, 4], [17, 100, 64], [256, 256, 48]]) {
        const n = rt.k.f32_attention_backward_scratch(T, maxSeq, hd);
        assert.ok(Number.isInteger(n) && n >= maxSeq, `scratch(${T}, ${maxSeq}, ${hd}) = ${n}`);
      }
      const c = makeAttnCase(2, 12, 2, 1, 8, 0, true, 900);
      const got = runAttnBackward(rt, c, false, false, "left padding");
      for (let t = 0; t < 3; t++) for (let i = 0; i < 16; i++) assert.ok(Object.is(got.gq[(12 + t) * 16 + i], 0), `padded query ${t}: gq = +0`);
      // the same sequence without the padding, 9 tokens
      const T2 = 9, maxSeq2 = T2 + 3;
      const kc2 = new Float32Array(maxSeq2 * 8).fill(NaN), vc2 = kc2.slice();
      for (let j = 0; j < T2; j++)
        for (let i = 0; i < 8; i++) {
          kc2[j * 8 + i] = c.kc[(1 * c.maxSeq + j + 3) * 8 + i];
          vc2[j * 8 + i] = c.vc[(1 * c.maxSeq + j + 3) * 8 + i];
        }
      const rowsOf = (a: Float32Array, stride: number) => a.slice((12 + 3) * stride, 24 * stride);
      const c2: AttnCase = { ...c, B: 1, T: T2, maxSeq: maxSeq2, kc: kc2, vc: vc2, mask: null, q: rowsOf(c.q, c.qStride), o: rowsOf(c.o, c.oStride), go: rowsOf(c.go, c.goStride) };
      const got2 = runAttnBackward(rt, c2, false, false, "unpadded");
      assertBits("padded gq = unpadded gq", got.gq.slice(15 * 16, 24 * 16), got2.gq);
      assertBits("padded gk = unpadded gk", got.gk.slice(15 * 8, 24 * 8), got2.gk);
      assertBits("padded gv = unpadded gv", got.gv.slice(15 * 8, 24 * 8), got2.gv);
      // a window of at least T admits every causal key: the same bits as no window (and no i32 overflow)
      for (const scalar of [false, true]) {
        const c3 = makeAttnCase(2, 20, 4, 2, 16, 0, true, 950);
        const none = runAttnBackward(rt, c3, scalar, false, "window 0");
        for (const window of [20, 21, 2 ** 31 - 1]) {
          const wide = runAttnBackward(rt, { ...c3, window }, scalar, false, `window ${window}`);
          for (const k of ["gq", "gk", "gv"] as const) assertBits(`${scalar ? "twin " : ""}window ${window} ${k}`, wide[k], none[k]);
        }
      }
    });
  });
}

// ------------------------------------------------------------------------------------------------ which builds

forEachVariant("training backward kernels", import.meta.url, suite, { minPassed: 8, timeoutMs: 120000 });
