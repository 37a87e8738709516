// The decoder-model kernels (norm, rope, kv cache + attention, embedding, argmax, gelu_tanh, silu_mul) through
// the runtime, each SIMD kernel and its scalar twin against a float64 reference written here from the
// definitions (transformers' modeling code), with normalized error bounds:
//
//   rmsnorm, silu_mul, gelu_tanh(')   within a few f32 ulps of the float64 value (few roundings, no cancellation)
//   layernorm, rope                   |ours - ref| <= c 2^-24 (sum of |terms|)   (the final add/sub may cancel)
//   attention                         |ours - ref| <= sum_j p_j |v_j| (2.2 D + (n + 4) 2^-24), D the worst score
//                                     error of an f32 dot product ((headDim + 2) 2^-24 sum |q k| scale), n the
//                                     admitted keys; a query with no admitted key must give exactly 0
//   kv_store, embedding, bias_add, argmax: exact (Math.fround emulation / torch.argmax semantics)
//
// The plain-SIMD build always runs; the relaxed-SIMD build runs too when this Node validates it, otherwise in a
// child `node --experimental-wasm-relaxed-simd` (as tests/kernels.test.ts).
import { rand, rng } from "./helpers/random.js";
import { forEachVariant } from "./helpers/variants.js";
import { U, admittedKeys, assertBits, assertTol, assertUlps, fillSlot, layernormStats, rmsnormRef, softmax64 } from "./helpers/kernels.js";
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createRuntime, type Runtime, type WasmVariant } from "../src/runtime/runtime.js";

const fr = Math.fround;

// ------------------------------------------------------------------------------------------------ references

/** torch.nn.LayerNorm (biased variance), float64, with the bound sum |n w| + |b|. */
function refLayernorm(x: Float32Array, w: Float32Array | null, b: Float32Array | null, rows: number, D: number, eps: number) {
  const y = new Float64Array(rows * D);
  const bound = new Float64Array(rows * D);
  for (let r = 0; r < rows; r++) {
    const { mean: m, rstd } = layernormStats(x, r, D, eps);
    for (let i = 0; i < D; i++) {
      const nw = (x[r * D + i] - m) * rstd * (w ? w[i] : 1);
      y[r * D + i] = nw + (b ? b[i] : 0);
      bound[r * D + i] = Math.abs(nw) + (b ? Math.abs(b[i]) : 0);
    }
  }
  return { y, bound };
}

/**
 * RoPE as transformers writes it, float64 from the f32 tables: non-interleaved
 * `x * cat(cos, cos) + rotate_half(x) * cat(sin, sin)` with rotate_half(x) = cat(-x2, x1); interleaved (GPT-J)
 * `x * repeat_interleave(cos) + rotate_every_two(x) * repeat_interleave(sin)` with rotate_every_two = [-x1, x0, -x3, x2, ...].
 * Only the first 2 half floats of each head rotate. Bound: |x cos| + |rot(x) sin| per element.
 */
function refRope(x: Float32Array, stride: number, rows: number, nH: number, hd: number, pos: Int32Array, cos: Float32Array, sin: Float32Array, half: number, interleaved: boolean) {
  const y = Float64Array.from(x);
  const bound = new Float64Array(x.length);
  const rd = 2 * half;
  for (let r = 0; r < rows; r++) {
    const p = pos[r];
    for (let h = 0; h < nH; h++) {
      const o = r * stride + h * hd;
      const head = x.subarray(o, o + rd);
      for (let k = 0; k < rd; k++) {
        let c: number, s: number, rot: number;
        if (interleaved) {
          c = cos[p * half + (k >> 1)];
          s = sin[p * half + (k >> 1)];
          rot = k % 2 === 0 ? -head[k + 1] : head[k - 1];
        } else {
          c = cos[p * half + (k % half)];
          s = sin[p * half + (k % half)];
          rot = k < half ? -head[k + half] : head[k - half];
        }
        y[o + k] = head[k] * c + rot * s;
        bound[o + k] = Math.abs(head[k] * c) + Math.abs(rot * s);
      }
    }
  }
  return { y, bound };
}

interface AttnCase {
  B: number;
  T: number;
  past: number;
  nH: number;
  nKv: number;
  hd: number;
  maxSeq: number;
  window: number;
  qStride: number;
  oStride: number;
  scale: number;
  q: Float32Array;
  kc: Float32Array;
  vc: Float32Array;
  mask: Int32Array | null;
}

/** Causal GQA attention from the definition, float64; tol from the bound in the header; empty: no admitted key. */
function refAttention(c: AttnCase) {
  const { B, T, past, nH, nKv, hd, maxSeq, window, qStride, oStride, scale, q, kc, vc, mask } = c;
  const out = new Float64Array(B * T * oStride);
  const tol = new Float64Array(B * T * oStride);
  const empty: boolean[] = [];
  const group = nH / nKv;
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T; t++)
      for (let h = 0; h < nH; h++) {
        const p = past + t;
        const g = Math.floor(h / group);
        const qo = (b * T + t) * qStride + h * hd;
        const keys = admittedKeys(b, p, window, mask, maxSeq);
        const oo = (b * T + t) * oStride + h * hd;
        empty[(b * T + t) * nH + h] = keys.length === 0;
        if (keys.length === 0) continue;
        const s: number[] = [];
        let delta = 0;
        for (const j of keys) {
          const ko = ((b * nKv + g) * maxSeq + j) * hd;
          let d = 0;
          let a = 0;
          for (let i = 0; i < hd; i++) {
            d += q[qo + i] * kc[ko + i];
            a += Math.abs(q[qo + i] * kc[ko + i]);
          }
          s.push(d * scale);
          delta = Math.max(delta, ((hd + 2) * U * a + U * Math.abs(d)) * Math.abs(scale));
        }
        const P = softmax64(s);
        for (let i = 0; i < hd; i++) {
          let acc = 0;
          let abs = 0;
          keys.forEach((j, n) => {
            const v = vc[((b * nKv + g) * maxSeq + j) * hd + i];
            acc += P[n] * v;
            abs += P[n] * Math.abs(v);
          });
          out[oo + i] = acc;
          tol[oo + i] = abs * (2.2 * delta + (keys.length + 4) * U) + 1e-37;
        }
      }
  return { out, tol, empty };
}

/**
 * A cache of B sequences, nKv heads, maxSeq slots: slots 0..past-1 random, past..past+T-1 written by kv_store from
 * strided k/v rows, the rest NaN (never to be read). With a mask: batch 0 has holes (j % 3 == 1), batch 1 is left
 * padded over 3 slots (its first queries admit nothing when past = 0); masked slots hold NaN too.
 */
function makeCase(rt: Runtime, B: number, T: number, past: number, nH: number, nKv: number, hd: number, window: number, masked: boolean, seed: number, storeScalar: boolean): AttnCase {
  const maxSeq = past + T + 3;
  const qStride = nH * hd + 3;
  const oStride = nH * hd + 5;
  const kvStride = nKv * hd + 2;
  const cn = B * nKv * maxSeq * hd;
  const kc = new Float32Array(cn).fill(NaN);
  const vc = new Float32Array(cn).fill(NaN);
  const kp = rand(cn, seed), vp = rand(cn, seed + 1);
  for (let b = 0; b < B; b++)
    for (let g = 0; g < nKv; g++)
      for (let j = 0; j < past; j++)
        for (let i = 0; i < hd; i++) {
          const o = ((b * nKv + g) * maxSeq + j) * hd + i;
          kc[o] = kp[o];
          vc[o] = vp[o];
        }
  const kn = rand(B * T * kvStride, seed + 2), vn = rand(B * T * kvStride, seed + 3);
  const kcb = rt.allocF32(kc), vcb = rt.allocF32(vc), knb = rt.allocF32(kn), vnb = rt.allocF32(vn);
  const store = storeScalar ? rt.k.f32_kv_store_scalar : rt.k.f32_kv_store;
  store(knb.ptr, kvStride, kcb.ptr, B, T, past, nKv, hd, maxSeq);
  store(vnb.ptr, kvStride, vcb.ptr, B, T, past, nKv, hd, maxSeq);
  // kv_store must write exactly the new slots
  for (let b = 0; b < B; b++)
    for (let g = 0; g < nKv; g++)
      for (let t = 0; t < T; t++)
        for (let i = 0; i < hd; i++) {
          kc[((b * nKv + g) * maxSeq + past + t) * hd + i] = kn[(b * T + t) * kvStride + g * hd + i];
          vc[((b * nKv + g) * maxSeq + past + t) * hd + i] = vn[(b * T + t) * kvStride + g * hd + i];
        }
  assertBits(`kv_store${storeScalar ? "_scalar" : ""} k`, kcb.view, kc);
  assertBits(`kv_store${storeScalar ? "_scalar" : ""} v`, vcb.view, vc);
  for (const x of [kcb, vcb, knb, vnb]) x.free();
  let mask: Int32Array | null = null;
  if (masked) {
    mask = new Int32Array(B * maxSeq);
    for (let b = 0; b < B; b++)
      for (let j = 0; j < maxSeq; j++) {
        const keep = b === 0 ? j % 3 !== 1 : j >= 3;
        mask[b * maxSeq + j] = keep ? 1 : 0;
        if (!keep) fillSlot(kc, vc, nKv, maxSeq, hd, b, j, NaN);
      }
  }
  const q = rand(B * T * qStride, seed + 4, 2);
  return { B, T, past, nH, nKv, hd, maxSeq, window, qStride, oStride, scale: fr(1 / Math.sqrt(hd)), q, kc, vc, mask };
}

/** Runs the kernel (or its twin) on a case; returns the out rows (gap floats preset to 7). */
function runAttention(rt: Runtime, c: AttnCase, scalar: boolean): Float32Array {
  const q = rt.allocF32(c.q), kc = rt.allocF32(c.kc), vc = rt.allocF32(c.vc);
  const mask = c.mask ? rt.allocI32(c.mask) : null;
  const out = rt.allocF32(new Float32Array(c.B * c.T * c.oStride).fill(7));
  const scratch = rt.allocF32(new Float32Array(rt.k.f32_attention_scratch(c.T, c.maxSeq, c.hd)).fill(NaN));
  const f = scalar ? rt.k.f32_attention_scalar : rt.k.f32_attention;
  f(q.ptr, c.qStride, kc.ptr, vc.ptr, out.ptr, c.oStride, c.B, c.T, c.past, c.nH, c.nKv, c.hd, c.maxSeq, c.scale, c.window, mask ? mask.ptr : 0, scratch.ptr);
  const r = out.toArray();
  for (const x of [q, kc, vc, out, scratch]) x.free();
  mask?.free();
  return r;
}

function checkAttention(name: string, c: AttnCase, got: Float32Array): void {
  const { out, tol, empty } = refAttention(c);
  const n = c.nH * c.hd;
  for (let r = 0; r < c.B * c.T; r++) {
    for (let k = n; k < c.oStride; k++) if (got[r * c.oStride + k] !== 7) assert.fail(`${name}: float ${k} past the heads of row ${r} changed`);
    for (let h = 0; h < c.nH; h++) {
      if (!empty[r * c.nH + h]) continue;
      for (let i = 0; i < c.hd; i++) if (!Object.is(got[r * c.oStride + h * c.hd + i], 0)) assert.fail(`${name}: row ${r} head ${h} has no admitted key: out must be +0`);
    }
  }
  for (let i = 0; i < got.length; i++) if (!Number.isFinite(got[i])) assert.fail(`${name}: out[${i}] = ${got[i]} (a masked or future NaN slot leaked)`);
  const g = got.map((v, i) => (i % c.oStride < n ? v : 0));
  const o = out.map((v, i) => (i % c.oStride < n ? v : 0));
  const t = tol.map((v, i) => (i % c.oStride < n ? v : 1));
  assertTol(name, g, o, t);
}

/** gelu_new in float64: 0.5 x (1 + tanh u); 1 + tanh u = 2 e^{2u} / (1 + e^{2u}) for u < 0 (no cancellation). */
function refGeluTanh(x: number): { y: number; dy: number; terms: number } {
  const k = Math.sqrt(2 / Math.PI);
  const u = k * (x + 0.044715 * x ** 3);
  const du = k * (1 + 3 * 0.044715 * x * x);
  let onePlusTanh: number;
  if (u < 0) {
    const e = Math.exp(2 * u);
    onePlusTanh = (2 * e) / (1 + e);
  } else onePlusTanh = 1 + Math.tanh(u);
  const sech2 = 1 / Math.cosh(u) ** 2;
  const t1 = 0.5 * onePlusTanh, t2 = 0.5 * x * sech2 * du;
  return { y: 0.5 * x * onePlusTanh, dy: t1 + t2, terms: Math.abs(t1) + Math.abs(t2) };
}

// ------------------------------------------------------------------------------------------------ the suite

function suite(variant: WasmVariant): void {
  describe(`decoder kernels (${variant} build)`, () => {
    const rt: Runtime = createRuntime({ variant });

    test("f32_rmsnorm: LlamaRMSNorm within 3 ulps, with and without weight, in place, both forms", () => {
      let seed = 1;
      for (const rows of [1, 3]) {
        for (const D of [1, 4, 5, 64, 896, 4096]) {
          const xa = rand(rows * D, seed++, 3), wa = rand(D, seed++, 2);
          for (const withW of [true, false]) {
            const ref = rmsnormRef(xa, withW ? wa : null, rows, D, 1e-6);
            for (const name of ["f32_rmsnorm", "f32_rmsnorm_scalar"] as const) {
              const x = rt.allocF32(xa), w = rt.allocF32(wa), y = rt.allocF32(rows * D);
              rt.k[name](x.ptr, withW ? w.ptr : 0, y.ptr, rows, D, 1e-6);
              assertUlps(`${name} rows=${rows} D=${D} w=${withW}`, y.view, ref, 3);
              rt.k[name](x.ptr, withW ? w.ptr : 0, x.ptr, rows, D, 1e-6);
              assertBits(`${name} in place`, x.view, y.view);
              for (const b of [x, w, y]) b.free();
            }
          }
        }
      }
      // eps dominates a zero row: y = 0
      const z = rt.allocF32(8);
      rt.k.f32_rmsnorm(z.ptr, 0, z.ptr, 1, 8, 1e-6);
      assertBits("rmsnorm of zeros", z.view, new Float32Array(8));
      z.free();
    });

    test("f32_layernorm: torch LayerNorm within 3 x 2^-24 (|n w| + |b|), weight/bias present or absent, in place", () => {
      let seed = 50;
      for (const rows of [1, 3]) {
        for (const D of [1, 4, 5, 64, 896, 768]) {
          const xa = rand(rows * D, seed++, 3);
          for (let i = 0; i < xa.length; i++) xa[i] += 5; // an offset mean (the two-pass variance matters)
          const wa = rand(D, seed++, 2), ba = rand(D, seed++);
          for (const [withW, withB] of [[true, true], [false, false], [true, false], [false, true]] as const) {
            const { y: ref, bound } = refLayernorm(xa, withW ? wa : null, withB ? ba : null, rows, D, 1e-5);
            const tol = bound.map((v, i) => 3 * U * v + 4 * U * Math.abs(ref[i]) + 1e-37);
            for (const name of ["f32_layernorm", "f32_layernorm_scalar"] as const) {
              const x = rt.allocF32(xa), w = rt.allocF32(wa), b = rt.allocF32(ba), y = rt.allocF32(rows * D);
              rt.k[name](x.ptr, withW ? w.ptr : 0, withB ? b.ptr : 0, y.ptr, rows, D, 1e-5);
              assertTol(`${name} rows=${rows} D=${D} w=${withW} b=${withB}`, y.view, ref, tol);
              rt.k[name](x.ptr, withW ? w.ptr : 0, withB ? b.ptr : 0, x.ptr, rows, D, 1e-5);
              assertBits(`${name} in place`, x.view, y.view);
              for (const q of [x, w, b, y]) q.free();
            }
          }
        }
      }
    });

    test("f32_rope: rotate_half and rotate_every_two from HF tables, partial rotary, strided rows; SIMD == twin", () => {
      let seed = 100;
      for (const hd of [4, 6, 16, 64, 80, 128]) {
        for (const partial of [false, true]) {
          const half = partial ? Math.max(1, hd >> 2) : hd >> 1;
          // the tables as transformers builds them: inv_freq = base^(-2i / rotary_dim), angle = p inv_freq
          const maxPos = 64, rd = 2 * half;
          const cos = new Float32Array(maxPos * half), sin = new Float32Array(maxPos * half);
          for (let p = 0; p < maxPos; p++)
            for (let i = 0; i < half; i++) {
              const th = p * 10000 ** (-(2 * i) / rd);
              cos[p * half + i] = Math.cos(th);
              sin[p * half + i] = Math.sin(th);
            }
          for (const rows of [1, 3, 7]) {
            for (const interleaved of [false, true]) {
              const nH = 3, stride = nH * hd + 3;
              const xa = rand(rows * stride, seed++, 2);
              const r = rng(seed++);
              const pa = Int32Array.from({ length: rows }, () => Math.floor(r() * maxPos));
              const { y: ref, bound } = refRope(xa, stride, rows, nH, hd, pa, cos, sin, half, interleaved);
              const tol = bound.map((v) => 2 * U * v + 1e-37);
              const outs: Float32Array[] = [];
              for (const name of ["f32_rope", "f32_rope_scalar"] as const) {
                const x = rt.allocF32(xa), pos = rt.allocI32(pa), c = rt.allocF32(cos), s = rt.allocF32(sin);
                rt.k[name](x.ptr, stride, rows, nH, hd, pos.ptr, c.ptr, s.ptr, half, interleaved ? 1 : 0);
                const got = x.toArray();
                assertTol(`${name} hd=${hd} half=${half} rows=${rows} interleaved=${interleaved}`, got, ref, tol);
                for (let i = 0; i < got.length; i++) {
                  const k = i % stride;
                  if (k >= nH * hd || k % hd >= rd) assert.ok(Object.is(got[i], xa[i]), `${name}: float ${i} outside the rotary part changed`);
                }
                outs.push(got);
                for (const b of [x, pos, c, s]) b.free();
              }
              assertBits(`rope SIMD vs twin hd=${hd} half=${half} interleaved=${interleaved}`, outs[0], outs[1]);
            }
          }
        }
      }
    });

    test("f32_attention: causal GQA over the cache (window, padding mask, fully masked query) against float64", () => {
      let seed = 1000;
      let cases = 0;
      for (const hd of [4, 6, 64, 80, 128])
        for (const T of [1, 3, 17])
          for (const past of [0, 5])
            for (const ratio of [1, 2, 7])
              for (const window of [0, 3])
                for (const masked of [false, true]) {
                  const nKv = ratio === 2 ? 1 : 2;
                  const c = makeCase(rt, 2, T, past, nKv * ratio, nKv, hd, window, masked, seed, seed % 2 === 0);
                  seed += 10;
                  const tag = `hd=${hd} T=${T} past=${past} G=${ratio} window=${window} mask=${masked}`;
                  checkAttention(`attention ${tag}`, c, runAttention(rt, c, false));
                  checkAttention(`attention_scalar ${tag}`, c, runAttention(rt, c, true));
                  cases++;
                }
      assert.equal(cases, 360);
    });

    test("f32_attention: Qwen2-0.5B shapes (14 heads, 2 kv heads, headDim 64): 64-token prefill, then decode at past 300", () => {
      const pre = makeCase(rt, 1, 64, 0, 14, 2, 64, 0, false, 5000, false);
      checkAttention("prefill 64", pre, runAttention(rt, pre, false));
      const dec = makeCase(rt, 2, 1, 300, 14, 2, 64, 0, true, 6000, false);
      checkAttention("decode past=300", dec, runAttention(rt, dec, false));
      const swa = makeCase(rt, 1, 40, 100, 32, 8, 128, 64, false, 7000, false); // Mistral-like: window 64
      checkAttention("mistral window 64", swa, runAttention(rt, swa, false));
    });

    test("f32_attention_scratch: a non-negative integer, at least one score row of maxSeq floats", () => {
      for (const [T, maxSeq, hd] of [[1, 1, 4], [17, 100, 64], [512, 4096, 128]]) {
        const n = rt.k.f32_attention_scratch(T, maxSeq, hd);
        assert.ok(Number.isInteger(n) && n >= 0 && n >= maxSeq, `scratch(${T}, ${maxSeq}, ${hd}) = ${n}`);
      }
    });

    test("f32_gelu_tanh / f32_gelu_tanh_backward: transformers' gelu_new within 2 ulps (lower tail included)", () => {
      const xs = Float32Array.from([...rand(2000, 11, 12), 0, -0, 1e-30, -1e-30, 0.5, -0.5, 1, -1, 3, -3, -5.5, -8, -10, -12, 10, 20, 50, -50]);
      const ys = xs.map((v) => refGeluTanh(v).y);
      const gya = rand(xs.length, 12, 3);
      const dref = new Float64Array(xs.length), dtol = new Float64Array(xs.length);
      xs.forEach((v, i) => {
        const r = refGeluTanh(v);
        dref[i] = gya[i] * r.dy;
        dtol[i] = 2 * U * Math.abs(dref[i]) + 1e-12 * Math.abs(gya[i]) * r.terms + 1e-40;
      });
      for (const sfx of ["", "_scalar"] as const) {
        const x = rt.allocF32(xs), y = rt.allocF32(xs.length), gy = rt.allocF32(gya), gx = rt.allocF32(xs.length);
        rt.k[`f32_gelu_tanh${sfx}` as const](x.ptr, y.ptr, xs.length);
        assertUlps(`gelu_tanh${sfx}`, y.view, Float64Array.from(ys), 2, xs);
        rt.k[`f32_gelu_tanh_backward${sfx}` as const](x.ptr, gy.ptr, gx.ptr, xs.length);
        assertTol(`gelu_tanh_backward${sfx}`, gx.view, dref, dtol);
        for (const b of [x, y, gy, gx]) b.free();
      }
    });

    test("f32_silu_mul: silu(gate) * up within 2 ulps; out may alias gate", () => {
      const n = 1003;
      const ga = Float32Array.from([...rand(n - 8, 21, 10), 0, -0, 40, -40, 100, -100, 1e-30, -20]);
      const ua = rand(n, 22, 3);
      const ref = Float64Array.from(ga, (g, i) => (g / (1 + Math.exp(-g))) * ua[i]);
      for (const sfx of ["", "_scalar"] as const) {
        const g = rt.allocF32(ga), u = rt.allocF32(ua), o = rt.allocF32(n);
        rt.k[`f32_silu_mul${sfx}` as const](g.ptr, u.ptr, o.ptr, n);
        assertUlps(`silu_mul${sfx}`, o.view, ref, 2, ga);
        rt.k[`f32_silu_mul${sfx}` as const](g.ptr, u.ptr, g.ptr, n);
        assertBits(`silu_mul${sfx} in place`, g.view, o.view);
        for (const b of [g, u, o]) b.free();
      }
    });

    test("f32_embedding / f32_embedding_add / f32_bias_add: exact row gathers and adds", () => {
      let seed = 300;
      for (const D of [1, 4, 5, 64, 896]) {
        const V = 13, n = 9;
        const ta = rand(V * D, seed++), oa = rand(n * D, seed++), ba = rand(D, seed++);
        const r = rng(seed++);
        const ia = Int32Array.from({ length: n }, () => Math.floor(r() * V));
        const gathered = new Float32Array(n * D), added = new Float32Array(n * D), biased = new Float32Array(n * D);
        for (let i = 0; i < n; i++)
          for (let d = 0; d < D; d++) {
            gathered[i * D + d] = ta[ia[i] * D + d];
            added[i * D + d] = fr(oa[i * D + d] + ta[ia[i] * D + d]);
            biased[i * D + d] = fr(added[i * D + d] + ba[d]);
          }
        for (const sfx of ["", "_scalar"] as const) {
          const t = rt.allocF32(ta), ids = rt.allocI32(ia), o = rt.allocF32(oa), b = rt.allocF32(ba);
          rt.k[`f32_embedding_add${sfx}` as const](t.ptr, ids.ptr, o.ptr, n, D);
          assertBits(`embedding_add${sfx} D=${D}`, o.view, added);
          rt.k[`f32_bias_add${sfx}` as const](o.ptr, b.ptr, n, D);
          assertBits(`bias_add${sfx} D=${D}`, o.view, biased);
          rt.k[`f32_embedding${sfx}` as const](t.ptr, ids.ptr, o.ptr, n, D);
          assertBits(`embedding${sfx} D=${D}`, o.view, gathered);
          for (const q of [t, ids, o, b]) q.free();
        }
      }
    });

    test("f32_argmax: torch.argmax semantics (first maximum, first NaN) up to a 151,936-token vocabulary", () => {
      const refArgmax = (x: Float32Array): number => {
        let at = 0;
        for (let i = 0; i < x.length; i++) {
          if (Number.isNaN(x[i])) return i;
          if (x[i] > x[at]) at = i;
        }
        return at;
      };
      let seed = 400;
      for (const n of [1, 2, 5, 15, 16, 17, 31, 64, 1000, 151936]) {
        const r = rng(seed++);
        const variants: Float32Array[] = [];
        const a = rand(n, seed++, 30);
        variants.push(a);
        const tie = a.slice();
        const i1 = Math.floor(r() * n), i2 = Math.floor(r() * n);
        tie[i1] = 100;
        tie[i2] = 100;
        variants.push(tie);
        const nan = tie.slice();
        nan[i2] = NaN;
        nan[Math.floor(r() * n)] = NaN;
        variants.push(nan);
        const ints = Float32Array.from({ length: n }, () => Math.floor(r() * 4)); // many ties
        variants.push(ints);
        const zeros = new Float32Array(n).fill(-Infinity);
        zeros[n - 1] = 0;
        zeros[n >> 1] = -0;
        variants.push(zeros);
        for (const v of variants) {
          const want = refArgmax(v);
          const x = rt.allocF32(v);
          assert.equal(rt.k.f32_argmax(x.ptr, n), want, `argmax n=${n}`);
          assert.equal(rt.k.f32_argmax_scalar(x.ptr, n), want, `argmax_scalar n=${n}`);
          x.free();
        }
      }
    });
  });
}

// ------------------------------------------------------------------------------------------------ which builds

forEachVariant("decoder kernels", import.meta.url, suite, { minPassed: 8, timeoutMs: 300000 });
