// Decoder-model kernels (norm, rope, attention, embedding, gelu_tanh, silu_mul): SIMD forms against their scalar
// twins on edge sizes. Bit-identical everywhere except f32_attention, whose dot products sum in another order
// (compared within 1e-6 of the row's scale, max |v| = 1 here); plus the properties the decoder relies on:
// masked/padded/future cache slots (filled with NaN) never reach the output, a fully masked query gives 0,
// prefill equals token-by-token decode bit for bit, and rope leaves the non-rotary tail untouched.
import { f32_rmsnorm, f32_rmsnorm_scalar, f32_layernorm, f32_layernorm_scalar } from "../norm";
import { f32_rope, f32_rope_scalar } from "../rope";
import { f32_kv_store, f32_kv_store_scalar, f32_attention, f32_attention_scalar, f32_attention_scratch } from "../attention";
import {
  f32_embedding, f32_embedding_scalar, f32_embedding_add, f32_embedding_add_scalar, f32_bias_add, f32_bias_add_scalar, f32_argmax,
  f32_argmax_scalar,
} from "../embedding";
import {
  f32_gelu_tanh, f32_gelu_tanh_scalar, f32_gelu_tanh_backward, f32_gelu_tanh_backward_scalar, f32_silu_mul, f32_silu_mul_scalar,
} from "../activation";
import { allocRandom, allocZero, allocCopy, allocFill, allocI32, bitDiffs, randInt, srand, rowsDiff, RopeCase, AttnCase } from "./helpers";

const DS: i32[] = [1, 4, 5, 64, 896];
const ROWS: i32[] = [1, 3];

describe("norms", () => {
  it("rmsnorm and layernorm: SIMD bit-identical to the scalar twins, with and without weight/bias, in place", () => {
    let seed: u32 = 1;
    for (let ir = 0; ir < ROWS.length; ir++) {
      for (let id = 0; id < DS.length; id++) {
        const rows = ROWS[ir], D = DS[id], n = rows * D;
        const x = allocRandom(n, seed++, 3), w = allocRandom(D, seed++), b = allocRandom(D, seed++), y1 = allocZero(n), y2 = allocZero(n);
        for (let k = 0; k < 2; k++) {
          const wp = k ? w : 0, bp = k ? b : 0;
          f32_rmsnorm(x, wp, y1, rows, D, 1e-6);
          f32_rmsnorm_scalar(x, wp, y2, rows, D, 1e-6);
          expect<i32>(bitDiffs(y1, y2, n)).toBe(0, "rmsnorm");
          const xi = allocCopy(x, n);
          f32_rmsnorm(xi, wp, xi, rows, D, 1e-6);
          expect<i32>(bitDiffs(xi, y2, n)).toBe(0, "rmsnorm in place");
          f32_layernorm(x, wp, bp, y1, rows, D, 1e-5);
          f32_layernorm_scalar(x, wp, bp, y2, rows, D, 1e-5);
          expect<i32>(bitDiffs(y1, y2, n)).toBe(0, "layernorm");
          memory.copy(xi, x, <usize>n << 2);
          f32_layernorm(xi, wp, bp, xi, rows, D, 1e-5);
          expect<i32>(bitDiffs(xi, y2, n)).toBe(0, "layernorm in place");
          // weight only / bias only
          f32_layernorm(x, w, 0, y1, rows, D, 1e-5);
          f32_layernorm_scalar(x, w, 0, y2, rows, D, 1e-5);
          expect<i32>(bitDiffs(y1, y2, n)).toBe(0, "layernorm w only");
          f32_layernorm(x, 0, b, y1, rows, D, 1e-5);
          f32_layernorm_scalar(x, 0, b, y2, rows, D, 1e-5);
          expect<i32>(bitDiffs(y1, y2, n)).toBe(0, "layernorm b only");
          heap.free(xi);
        }
        heap.free(x);
        heap.free(w);
        heap.free(b);
        heap.free(y1);
        heap.free(y2);
      }
    }
  });

  it("rmsnorm of a constant row is w (x / |x|), layernorm of a constant row is b", () => {
    const x = allocFill(8, -2), w = allocRandom(8, 5), b = allocRandom(8, 6), y = allocZero(8);
    f32_rmsnorm(x, w, y, 1, 8, 0);
    for (let i = 0; i < 8; i++) expect<f32>(load<f32>(y + (<usize>i << 2))).toBe(-load<f32>(w + (<usize>i << 2)));
    f32_layernorm(x, w, b, y, 1, 8, 1e-5);
    for (let i = 0; i < 8; i++) expect<f32>(load<f32>(y + (<usize>i << 2))).toBe(load<f32>(b + (<usize>i << 2)));
    heap.free(x);
    heap.free(w);
    heap.free(b);
    heap.free(y);
  });
});

describe("rope", () => {
  it("SIMD bit-identical to the scalar twin (both layouts, full and partial rotary, strided rows); the tail is untouched", () => {
    const HDS: i32[] = [4, 16, 64, 80, 128, 6];
    let seed: u32 = 100;
    for (let ih = 0; ih < HDS.length; ih++) {
      const hd = HDS[ih];
      for (let part = 0; part < 2; part++) {
        const half = part ? max(1, hd / 4) : hd / 2;
        for (let ir = 0; ir < ROWS.length; ir++) {
          for (let il = 0; il < 2; il++) {
            const c = new RopeCase(ROWS[ir], hd, half, il, false, seed);
            seed += 4;
            c.run(f32_rope, c.x1);
            c.run(f32_rope_scalar, c.x2);
            expect<i32>(bitDiffs(c.x1, c.x2, c.n)).toBe(0, "rope");
            expect<i32>(c.changed(c.x1, false)).toBe(0, "elements past 2 half and between rows untouched");
            expect<bool>(c.changed(c.x1, true) > 0).toBe(true, "rotary part changed");
            c.free();
          }
        }
      }
    }
  });
});

describe("decoder activations", () => {
  it("gelu_tanh, its backward and silu_mul: SIMD bit-identical to the scalar twins (special values, out aliasing gate)", () => {
    const LENGTHS: i32[] = [0, 1, 3, 4, 5, 17, 64, 65, 1000];
    const SPECIAL: f32[] = [0, -0, 1e-40, -1e-40, 0.5, -0.5, 3, -3, -6, -10, -20, -100, 100, 1e30, -1e30, Infinity, -Infinity, NaN, 3.4e38, -3.4e38];
    for (let il = 0; il < LENGTHS.length; il++) {
      const n = LENGTHS[il];
      const x = allocRandom(n, 300 + il, 8), gy = allocRandom(n, 400 + il), up = allocRandom(n, 500 + il, 4), y1 = allocZero(n), y2 = allocZero(n);
      for (let i = 0; i < SPECIAL.length && i < n; i++) store<f32>(x + (<usize>((i * 7) % n) << 2), SPECIAL[i]);
      f32_gelu_tanh(x, y1, n);
      f32_gelu_tanh_scalar(x, y2, n);
      expect<i32>(bitDiffs(y1, y2, n)).toBe(0, "gelu_tanh");
      f32_gelu_tanh_backward(x, gy, y1, n);
      f32_gelu_tanh_backward_scalar(x, gy, y2, n);
      expect<i32>(bitDiffs(y1, y2, n)).toBe(0, "gelu_tanh'");
      f32_silu_mul(x, up, y1, n);
      f32_silu_mul_scalar(x, up, y2, n);
      expect<i32>(bitDiffs(y1, y2, n)).toBe(0, "silu_mul");
      const g = allocCopy(x, n);
      f32_silu_mul(g, up, g, n);
      expect<i32>(bitDiffs(g, y2, n)).toBe(0, "silu_mul in place");
      heap.free(g);
      heap.free(x);
      heap.free(gy);
      heap.free(up);
      heap.free(y1);
      heap.free(y2);
    }
  });

  it("gelu_tanh keeps relative precision in the lower tail and is x for large x", () => {
    const x = heap.alloc(16), y = heap.alloc(16);
    store<f32>(x, -10);
    store<f32>(x, 10, 4);
    store<f32>(x, 0, 8);
    store<f32>(x, 1, 12);
    f32_gelu_tanh(x, y, 4);
    const t = load<f32>(y);
    expect<bool>(t < 0 && t > -1e-35).toBe(true, "gelu_tanh(-10) is a tiny negative number, not 0");
    expect<f32>(load<f32>(y, 4)).toBe(10);
    expect<f32>(load<f32>(y, 8)).toBe(0);
    // 0.5 (1 + tanh(sqrt(2/pi) 1.044715)) in 50-digit arithmetic, rounded to f32
    expect<f32>(load<f32>(y, 12)).toBe(<f32>0.8411919906082768);
    heap.free(x);
    heap.free(y);
  });
});

describe("embedding, bias_add, argmax", () => {
  it("SIMD bit-identical to the scalar twins", () => {
    let seed: u32 = 600;
    for (let id = 0; id < DS.length; id++) {
      const D = DS[id], V = 11, n = 7;
      const table = allocRandom(V * D, seed++), ids = allocI32(n), o1 = allocRandom(n * D, seed), o2 = allocRandom(n * D, seed++), b = allocRandom(D, seed++);
      srand(seed++);
      for (let i = 0; i < n; i++) store<i32>(ids + (<usize>i << 2), randInt(V));
      f32_embedding_add(table, ids, o1, n, D);
      f32_embedding_add_scalar(table, ids, o2, n, D);
      expect<i32>(bitDiffs(o1, o2, n * D)).toBe(0, "embedding_add");
      f32_bias_add(o1, b, n, D);
      f32_bias_add_scalar(o2, b, n, D);
      expect<i32>(bitDiffs(o1, o2, n * D)).toBe(0, "bias_add");
      f32_embedding(table, ids, o1, n, D);
      f32_embedding_scalar(table, ids, o2, n, D);
      expect<i32>(bitDiffs(o1, o2, n * D)).toBe(0, "embedding");
      for (let i = 0; i < n; i++) {
        const r = load<i32>(ids + (<usize>i << 2));
        expect<i32>(bitDiffs(o1 + (<usize>(i * D) << 2), table + (<usize>(r * D) << 2), D)).toBe(0, "embedding row");
      }
      heap.free(table);
      heap.free(ids);
      heap.free(o1);
      heap.free(o2);
      heap.free(b);
    }
  });

  it("argmax: first maximum, ties, -0/+0, -inf, first NaN, sizes around 16", () => {
    const NS: i32[] = [1, 3, 4, 15, 16, 17, 33, 64, 1000, 151936];
    for (let k = 0; k < NS.length; k++) {
      const n = NS[k];
      const x = allocRandom(n, 700 + k);
      expect<i32>(f32_argmax(x, n)).toBe(f32_argmax_scalar(x, n), "random");
      // ties: the maximum at two places
      const a = randInt(n), c = randInt(n);
      store<f32>(x + (<usize>a << 2), 5);
      store<f32>(x + (<usize>c << 2), 5);
      expect<i32>(f32_argmax(x, n)).toBe(min(a, c), "first of tied maxima");
      expect<i32>(f32_argmax_scalar(x, n)).toBe(min(a, c), "first of tied maxima (scalar)");
      // NaN wins, the first one
      store<f32>(x + (<usize>c << 2), NaN);
      store<f32>(x + (<usize>a << 2), NaN);
      expect<i32>(f32_argmax(x, n)).toBe(min(a, c), "first NaN");
      expect<i32>(f32_argmax_scalar(x, n)).toBe(min(a, c), "first NaN (scalar)");
      // all -inf; then -0 and +0 as the maximum
      for (let i = 0; i < n; i++) store<f32>(x + (<usize>i << 2), -Infinity);
      expect<i32>(f32_argmax(x, n)).toBe(0, "all -inf");
      store<f32>(x + (<usize>(n - 1) << 2), 0);
      store<f32>(x + (<usize>((n - 1) / 2) << 2), -0.0);
      expect<i32>(f32_argmax(x, n)).toBe((n - 1) / 2, "-0 == +0");
      expect<i32>(f32_argmax_scalar(x, n)).toBe((n - 1) / 2, "-0 == +0 (scalar)");
      heap.free(x);
    }
    expect<i32>(f32_argmax(0, 0)).toBe(-1);
  });
});

// ---------------------------------------------------------------- attention

/** A decoder step: cache [B][nKv][maxSeq][hd] holding NaN except slots 0..past-1 (random) and the stored new rows. */
class Case extends AttnCase {
  past: i32;
  oStride: i32;
  constructor(B: i32, T: i32, past: i32, nH: i32, nKv: i32, hd: i32, window: i32, masked: bool, seed: u32) {
    super(B, T, nH, nKv, hd, past + T + 3, window);
    this.past = past;
    this.oStride = nH * hd + 5;
    const cn = this.cacheLen();
    this.kc = allocFill(cn, NaN);
    this.vc = allocFill(cn, NaN);
    srand(seed);
    // past slots
    for (let b = 0; b < B; b++)
      for (let g = 0; g < nKv; g++)
        for (let j = 0; j < past; j++)
          for (let d = 0; d < hd; d++) {
            const o = <usize>(((b * nKv + g) * this.maxSeq + j) * hd + d) << 2;
            store<f32>(this.kc + o, <f32>(randInt(2001) - 1000) / 1000);
            store<f32>(this.vc + o, <f32>(randInt(2001) - 1000) / 1000);
          }
    // new rows through kv_store (k with the scalar twin, v with the SIMD form: both checked below)
    const kvStride = nKv * hd + 2;
    const kn = allocRandom(B * T * kvStride, seed + 1), vn = allocRandom(B * T * kvStride, seed + 2);
    f32_kv_store_scalar(kn, kvStride, this.kc, B, T, past, nKv, hd, this.maxSeq);
    f32_kv_store(vn, kvStride, this.vc, B, T, past, nKv, hd, this.maxSeq);
    heap.free(kn);
    heap.free(vn);
    this.q = allocRandom(B * T * this.qStride, seed + 3, 2);
    if (masked) {
      // batch 0: a few holes; batch 1 (if any): left padding over the first 3 slots (its first queries see nothing);
      // masked slots get NaN keys and values, which must not reach the output
      this.mask = allocI32(B * this.maxSeq);
      for (let b = 0; b < B; b++)
        for (let j = 0; j < this.maxSeq; j++) {
          const keep = b == 0 ? j % 3 != 1 : j >= 3;
          store<i32>(this.mask + (<usize>(b * this.maxSeq + j) << 2), keep ? 1 : 0);
          if (!keep) this.fillSlot(b, j, NaN);
        }
    }
  }
  run(simd: bool, out: usize, scratch: usize): void {
    const scale = <f32>(1.0 / Math.sqrt(<f64>this.hd));
    if (simd) f32_attention(this.q, this.qStride, this.kc, this.vc, out, this.oStride, this.B, this.T, this.past, this.nH, this.nKv, this.hd, this.maxSeq, scale, this.window, this.mask, scratch);
    else f32_attention_scalar(this.q, this.qStride, this.kc, this.vc, out, this.oStride, this.B, this.T, this.past, this.nH, this.nKv, this.hd, this.maxSeq, scale, this.window, this.mask, scratch);
  }
  outLen(): i32 {
    return this.B * this.T * this.oStride;
  }
}

describe("attention", () => {
  it("kv_store: SIMD equals the scalar twin and fills exactly slots past..past+T-1", () => {
    const B = 2, T = 3, past = 5, nKv = 2, hd = 80, maxSeq = 10, stride = nKv * hd + 7;
    const src = allocRandom(B * T * stride, 800), cn = B * nKv * maxSeq * hd;
    const c1 = allocFill(cn, NaN), c2 = allocFill(cn, NaN);
    f32_kv_store(src, stride, c1, B, T, past, nKv, hd, maxSeq);
    f32_kv_store_scalar(src, stride, c2, B, T, past, nKv, hd, maxSeq);
    expect<i32>(bitDiffs(c1, c2, cn)).toBe(0);
    let bad = 0;
    for (let b = 0; b < B; b++)
      for (let g = 0; g < nKv; g++)
        for (let j = 0; j < maxSeq; j++)
          for (let d = 0; d < hd; d++) {
            const v = load<f32>(c1 + (<usize>(((b * nKv + g) * maxSeq + j) * hd + d) << 2));
            if (j < past || j >= past + T) {
              if (!isNaN<f32>(v)) bad++;
            } else if (v != load<f32>(src + (<usize>((b * T + j - past) * stride + g * hd + d) << 2))) bad++;
          }
    expect<i32>(bad).toBe(0);
    heap.free(src);
    heap.free(c1);
    heap.free(c2);
  });

  it("SIMD within 1e-6 of the scalar twin: headDim, T, past, GQA ratio, window, key mask; masked/future NaN slots never leak", () => {
    const HDS: i32[] = [4, 16, 64, 80, 128, 6];
    const TS: i32[] = [1, 3, 17];
    const PASTS: i32[] = [0, 5];
    const RATIOS: i32[] = [1, 2, 7];
    let seed: u32 = 1000;
    let bad = 0;
    let cases = 0;
    for (let ih = 0; ih < HDS.length; ih++)
      for (let it = 0; it < TS.length; it++)
        for (let ip = 0; ip < PASTS.length; ip++)
          for (let ig = 0; ig < RATIOS.length; ig++)
            for (let w = 0; w < 2; w++)
              for (let m = 0; m < 2; m++) {
                const nKv = ig == 1 ? 1 : 2;
                const c = new Case(2, TS[it], PASTS[ip], nKv * RATIOS[ig], nKv, HDS[ih], w ? 3 : 0, m == 1, seed);
                seed += 10;
                const n = c.outLen();
                const o1 = allocFill(n, 7), o2 = allocFill(n, 7);
                const sc = allocFill(f32_attention_scratch(c.T, c.maxSeq, c.hd), NaN);
                c.run(true, o1, sc);
                c.run(false, o2, sc);
                const d = rowsDiff(o1, o2, c.B * c.T, c.oStride, c.nH * c.hd, 7, false);
                if (d < 0 || d > 1e-6) bad++;
                cases++;
                heap.free(o1);
                heap.free(o2);
                heap.free(sc);
                c.free();
              }
    expect<i32>(bad).toBe(0, "cases beyond 1e-6 or with non-finite outputs");
    expect<i32>(cases).toBe(432);
  });

  it("a query with no admitted key gets 0; prefill equals token-by-token decode bit for bit", () => {
    const c = new Case(2, 17, 0, 14, 2, 64, 0, true, 4242);
    const n = c.outLen();
    const o1 = allocZero(n), sc = allocZero(f32_attention_scratch(c.T, c.maxSeq, c.hd));
    c.run(true, o1, sc);
    // batch 1, tokens 0..2: every admitted slot is padding
    let nonzero = 0;
    for (let t = 0; t < 3; t++)
      for (let k = 0; k < c.nH * c.hd; k++) if (load<f32>(o1 + (<usize>((17 + t) * c.oStride + k) << 2)) != 0) nonzero++;
    expect<i32>(nonzero).toBe(0);
    expect<f32>(load<f32>(o1 + (<usize>(20 * c.oStride) << 2))).not.toBe(0, "token 3 of batch 1 sees slot 3");
    // decode: one token at a time over the same cache (batch 0 only, B = 1 uses the same cache layout when nKv slots match)
    const o2 = allocZero(c.oStride);
    let diffs = 0;
    for (let t = 0; t < 17; t++) {
      const scale = <f32>(1.0 / Math.sqrt(<f64>c.hd));
      f32_attention(c.q + (<usize>(t * c.qStride) << 2), c.qStride, c.kc, c.vc, o2, c.oStride, 1, 1, t, c.nH, c.nKv, c.hd, c.maxSeq, scale, 0, c.mask, sc);
      diffs += bitDiffs(o2, o1 + (<usize>(t * c.oStride) << 2), c.nH * c.hd);
    }
    expect<i32>(diffs).toBe(0);
    heap.free(o1);
    heap.free(o2);
    heap.free(sc);
    c.free();
  });
});
