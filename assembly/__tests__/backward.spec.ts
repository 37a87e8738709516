// Training backward kernels (assembly/backward.ts): SIMD forms against their scalar twins on edge sizes. Bit-identical
// everywhere except f32_attention_backward, whose dot products sum in another order (compared within 1e-5 of the
// largest value of each gradient; tests/backward-kernels.test.ts bounds the difference by 1e-6 of the size of the
// terms, which needs a float64 reference); plus properties that need no reference: rope_backward undoes rope, masked
// and future cache slots (NaN) never reach a gradient, sum_j gv_j = sum of the group's go rows (P sums to 1) and
// sum_j gk_j = 0 (the rows of dS sum to 0 when o is the forward's output).
import {
  f32_rmsnorm_backward, f32_rmsnorm_backward_scalar, f32_layernorm_backward, f32_layernorm_backward_scalar, f32_rope_backward,
  f32_rope_backward_scalar, f32_silu_mul_backward, f32_silu_mul_backward_scalar, f32_embedding_backward, f32_embedding_backward_scalar,
  f32_cross_entropy_rows, f32_cross_entropy_rows_scalar, f32_attention_backward, f32_attention_backward_scalar, f32_attention_backward_scratch,
} from "../backward";
import { f32_rope } from "../rope";
import { f32_attention, f32_attention_scratch } from "../attention";
import { allocRandom, allocZero, allocCopy, allocFill, allocI32, bitDiffs, randInt, srand, rowsDiff, RopeCase, AttnCase } from "./helpers";

const DS: i32[] = [1, 4, 5, 8, 64, 67, 896];

describe("norm backward", () => {
  it("rmsnorm and layernorm backward: SIMD bit-identical to the twins (weight / gw / gb present or absent, gx over gy)", () => {
    let seed: u32 = 1;
    for (let id = 0; id < DS.length; id++) {
      for (let rows = 1; rows <= 3; rows += 2) {
        const D = DS[id], n = rows * D;
        const x = allocRandom(n, seed++, 3), w = allocRandom(D, seed++), gy = allocRandom(n, seed++);
        const gx1 = allocZero(n), gx2 = allocZero(n), gw1 = allocRandom(D, seed), gw2 = allocRandom(D, seed++), gb1 = allocRandom(D, seed), gb2 = allocRandom(D, seed++);
        for (let k = 0; k < 4; k++) {
          const wp = k & 1 ? w : 0;
          const acc = k & 2 ? true : false;
          f32_rmsnorm_backward(x, wp, gy, gx1, acc ? gw1 : 0, rows, D, 1e-6);
          f32_rmsnorm_backward_scalar(x, wp, gy, gx2, acc ? gw2 : 0, rows, D, 1e-6);
          expect<i32>(bitDiffs(gx1, gx2, n)).toBe(0, "rmsnorm gx");
          expect<i32>(bitDiffs(gw1, gw2, D)).toBe(0, "rmsnorm gw");
          f32_layernorm_backward(x, wp, gy, gx1, acc ? gw1 : 0, acc ? gb1 : 0, rows, D, 1e-5);
          f32_layernorm_backward_scalar(x, wp, gy, gx2, acc ? gw2 : 0, acc ? gb2 : 0, rows, D, 1e-5);
          expect<i32>(bitDiffs(gx1, gx2, n)).toBe(0, "layernorm gx");
          expect<i32>(bitDiffs(gw1, gw2, D)).toBe(0, "layernorm gw");
          expect<i32>(bitDiffs(gb1, gb2, D)).toBe(0, "layernorm gb");
          const g = allocCopy(gy, n);
          f32_layernorm_backward(x, wp, g, g, 0, 0, rows, D, 1e-5);
          expect<i32>(bitDiffs(g, gx2, n)).toBe(0, "layernorm gx over gy");
          heap.free(g);
        }
        heap.free(x);
        heap.free(w);
        heap.free(gy);
        heap.free(gx1);
        heap.free(gx2);
        heap.free(gw1);
        heap.free(gw2);
        heap.free(gb1);
        heap.free(gb2);
      }
    }
  });

  it("rmsnorm backward of a row scaled by c is the row's backward / |c| (r(c x) = r(x) / |c|, eps = 0)", () => {
    const D = 16;
    const x = allocRandom(D, 7), x2 = allocZero(D), gy = allocRandom(D, 8), g1 = allocZero(D), g2 = allocZero(D);
    for (let i = 0; i < D; i++) store<f32>(x2 + (<usize>i << 2), load<f32>(x + (<usize>i << 2)) * 4);
    f32_rmsnorm_backward(x, 0, gy, g1, 0, 1, D, 0);
    f32_rmsnorm_backward(x2, 0, gy, g2, 0, 1, D, 0);
    let bad = 0;
    for (let i = 0; i < D; i++) {
      const a = load<f32>(g1 + (<usize>i << 2)), b = load<f32>(g2 + (<usize>i << 2));
      if (abs(<f64>a - 4.0 * <f64>b) > 1e-6 * abs(<f64>a) + 1e-7) bad++;
    }
    expect<i32>(bad).toBe(0);
    heap.free(x);
    heap.free(x2);
    heap.free(gy);
    heap.free(g1);
    heap.free(g2);
  });
});

describe("rope backward", () => {
  it("SIMD bit-identical to the twin (both layouts, partial rotary); undoes f32_rope within 4 ulps; the tail is untouched", () => {
    const HDS: i32[] = [4, 6, 16, 48, 64, 80];
    let seed: u32 = 100;
    for (let ih = 0; ih < HDS.length; ih++) {
      const hd = HDS[ih];
      for (let part = 0; part < 2; part++) {
        const half = part ? max(1, hd / 4) : hd / 2;
        for (let il = 0; il < 2; il++) {
          const c = new RopeCase(3, hd, half, il, true, seed);
          seed += 4;
          c.run(f32_rope_backward, c.x1);
          c.run(f32_rope_backward_scalar, c.x2);
          expect<i32>(bitDiffs(c.x1, c.x2, c.n)).toBe(0, "rope_backward");
          expect<i32>(c.changed(c.x2, false)).toBe(0, "elements past 2 half and between rows untouched");
          c.run(f32_rope, c.x1);
          let far = 0;
          for (let i = 0; i < c.n; i++) {
            const o = <usize>i << 2;
            if (abs(<f64>load<f32>(c.x1 + o) - <f64>load<f32>(c.x0 + o)) > 4.0 * 1.2e-7 * 2.0) far++;
          }
          expect<i32>(far).toBe(0, "rope(rope_backward(x)) = x");
          c.free();
        }
      }
    }
  });
});

describe("silu_mul, embedding, cross-entropy backward", () => {
  it("silu_mul backward: SIMD bit-identical to the twin (special values); gGate or gUp over gy", () => {
    const LENGTHS: i32[] = [0, 1, 3, 4, 5, 17, 64, 65, 1000];
    const SPECIAL: f32[] = [0, -0, 1e-40, -1e-40, 0.5, -0.5, 3, -3, -6, -10, -20, -100, 100, 1e30, -1e30, Infinity, -Infinity, NaN, 800, -800];
    for (let il = 0; il < LENGTHS.length; il++) {
      const n = LENGTHS[il];
      const gate = allocRandom(n, 300 + il, 8), up = allocRandom(n, 400 + il, 4), gy = allocRandom(n, 500 + il);
      for (let i = 0; i < SPECIAL.length && i < n; i++) store<f32>(gate + (<usize>((i * 7) % n) << 2), SPECIAL[i]);
      const a1 = allocZero(n), b1 = allocZero(n), a2 = allocZero(n), b2 = allocZero(n);
      f32_silu_mul_backward(gate, up, gy, a1, b1, n);
      f32_silu_mul_backward_scalar(gate, up, gy, a2, b2, n);
      expect<i32>(bitDiffs(a1, a2, n)).toBe(0, "gGate");
      expect<i32>(bitDiffs(b1, b2, n)).toBe(0, "gUp");
      const g = allocCopy(gy, n);
      f32_silu_mul_backward(gate, up, g, g, b1, n);
      expect<i32>(bitDiffs(g, a2, n)).toBe(0, "gGate over gy");
      memory.copy(g, gy, <usize>n << 2);
      f32_silu_mul_backward(gate, up, g, a1, g, n);
      expect<i32>(bitDiffs(g, b2, n)).toBe(0, "gUp over gy");
      heap.free(g);
      heap.free(gate);
      heap.free(up);
      heap.free(gy);
      heap.free(a1);
      heap.free(b1);
      heap.free(a2);
      heap.free(b2);
    }
  });

  it("embedding backward: SIMD bit-identical to the twin (repeated ids, id < 0 skipped)", () => {
    let seed: u32 = 600;
    for (let id = 0; id < DS.length; id++) {
      const D = DS[id], V = 11, rows = 19;
      const gy = allocRandom(rows * D, seed++), ids = allocI32(rows), g1 = allocRandom(V * D, seed), g2 = allocRandom(V * D, seed++);
      srand(seed++);
      for (let r = 0; r < rows; r++) store<i32>(ids + (<usize>r << 2), r % 6 == 5 ? -100 : r % 4 == 0 ? 3 : randInt(V));
      f32_embedding_backward(gy, ids, g1, rows, D);
      f32_embedding_backward_scalar(gy, ids, g2, rows, D);
      expect<i32>(bitDiffs(g1, g2, V * D)).toBe(0);
      heap.free(gy);
      heap.free(ids);
      heap.free(g1);
      heap.free(g2);
    }
  });

  it("cross-entropy: SIMD loss and grad bit-identical to the twin; ignored rows; grad over logits; rows of grad sum to 0", () => {
    const VS: i32[] = [1, 3, 4, 15, 16, 17, 100, 5000];
    let seed: u32 = 700;
    for (let iv = 0; iv < VS.length; iv++) {
      const V = VS[iv], rows = 4, n = rows * V;
      const x = allocRandom(n, seed++, 8), labels = allocI32(rows), g1 = allocFill(n, NaN), g2 = allocFill(n, NaN);
      srand(seed++);
      for (let r = 0; r < rows; r++) store<i32>(labels + (<usize>r << 2), r == 2 ? -100 : randInt(V));
      const l1 = f32_cross_entropy_rows(x, labels, g1, rows, V, 0.25);
      const l2 = f32_cross_entropy_rows_scalar(x, labels, g2, rows, V, 0.25);
      expect<f64>(l1).toBe(l2, "loss");
      expect<bool>(l1 >= 0).toBe(true, "loss >= 0");
      expect<i32>(bitDiffs(g1, g2, n)).toBe(0, "grad");
      expect<f64>(f32_cross_entropy_rows(x, labels, 0, rows, V, 0.25)).toBe(l1, "loss without grad");
      let bad = 0;
      for (let r = 0; r < rows; r++) {
        let s: f64 = 0, a: f64 = 0;
        for (let j = 0; j < V; j++) {
          const v = <f64>load<f32>(g1 + (<usize>(r * V + j) << 2));
          if (r == 2 && v != 0) bad++;
          s += v;
          a += abs(v);
        }
        if (abs(s) > 1e-6 * a + 1e-30) bad++;
      }
      expect<i32>(bad).toBe(0, "ignored row 0, other rows sum to 0");
      const xi = allocCopy(x, n);
      expect<f64>(f32_cross_entropy_rows(xi, labels, xi, rows, V, 0.25)).toBe(l1, "loss in place");
      expect<i32>(bitDiffs(xi, g1, n)).toBe(0, "grad in place");
      heap.free(xi);
      heap.free(x);
      heap.free(labels);
      heap.free(g1);
      heap.free(g2);
    }
  });
});

// ---------------------------------------------------------------- attention backward

/** A training attention problem: cache slots 0..T-1 random, T..maxSeq-1 and masked slots NaN; o from f32_attention. */
class BCase extends AttnCase {
  o: usize;
  go: usize;
  scale: f32;
  constructor(B: i32, T: i32, nH: i32, nKv: i32, hd: i32, window: i32, masked: bool, seed: u32) {
    super(B, T, nH, nKv, hd, T + 3, window);
    this.scale = <f32>(1.0 / Math.sqrt(<f64>hd));
    const cn = this.cacheLen();
    this.kc = allocRandom(cn, seed);
    this.vc = allocRandom(cn, seed + 1);
    if (masked) {
      // batch 0: right padding (last 2 slots); batch 1: left padding over 3 slots; others: holes
      this.mask = allocI32(B * this.maxSeq);
      for (let b = 0; b < B; b++)
        for (let j = 0; j < this.maxSeq; j++)
          store<i32>(this.mask + (<usize>(b * this.maxSeq + j) << 2), (b == 0 ? j < T - 2 : b == 1 ? j >= 3 : j % 3 != 1) ? 1 : 0);
    }
    for (let b = 0; b < B; b++)
      for (let j = 0; j < this.maxSeq; j++) {
        const keep = j < T && (!masked || load<i32>(this.mask + (<usize>(b * this.maxSeq + j) << 2)) != 0);
        if (!keep) this.fillSlot(b, j, NaN);
      }
    this.q = allocRandom(B * T * this.qStride, seed + 2, 2);
    this.go = allocRandom(B * T * this.qStride, seed + 3);
    this.o = allocZero(B * T * this.qStride);
    const sc = allocZero(f32_attention_scratch(T, this.maxSeq, hd));
    f32_attention(this.q, this.qStride, this.kc, this.vc, this.o, this.qStride, B, T, 0, nH, nKv, hd, this.maxSeq, this.scale, window, this.mask, sc);
    heap.free(sc);
  }
  /** Runs the kernel into gq (stride qStride) and gk, gv (stride kvStride). */
  run(simd: bool, gq: usize, gk: usize, gv: usize, kvStride: i32, scratch: usize): void {
    if (simd)
      f32_attention_backward(this.q, this.qStride, this.kc, this.vc, this.o, this.qStride, this.go, this.qStride, gq, this.qStride, gk, gv, kvStride,
        this.B, this.T, this.nH, this.nKv, this.hd, this.maxSeq, this.scale, this.window, this.mask, scratch);
    else
      f32_attention_backward_scalar(this.q, this.qStride, this.kc, this.vc, this.o, this.qStride, this.go, this.qStride, gq, this.qStride, gk, gv, kvStride,
        this.B, this.T, this.nH, this.nKv, this.hd, this.maxSeq, this.scale, this.window, this.mask, scratch);
  }
  free(): void {
    super.free();
    heap.free(this.o);
    heap.free(this.go);
  }
}

describe("attention backward", () => {
  it("SIMD within 1e-5 (of the largest gradient) of the twin: headDim, T, GQA ratio, window, key mask; NaN slots never leak; gaps untouched", () => {
    const HDS: i32[] = [4, 6, 16, 48, 64];
    const TS: i32[] = [1, 3, 17, 40];
    const RATIOS: i32[] = [1, 2, 7];
    let seed: u32 = 2000;
    let bad = 0, cases = 0;
    for (let ih = 0; ih < HDS.length; ih++)
      for (let it = 0; it < TS.length; it++)
        for (let ig = 0; ig < RATIOS.length; ig++)
          for (let w = 0; w < 2; w++)
            for (let m = 0; m < 2; m++) {
              const nKv = ig == 1 ? 1 : 2;
              const c = new BCase(3, TS[it], nKv * RATIOS[ig], nKv, HDS[ih], w ? 5 : 0, m == 1, seed);
              seed += 10;
              const rows = c.B * c.T, kvs = c.nKv * c.hd + 2;
              const gq1 = allocFill(rows * c.qStride, 7), gq2 = allocFill(rows * c.qStride, 7);
              const gk1 = allocFill(rows * kvs, 7), gk2 = allocFill(rows * kvs, 7), gv1 = allocFill(rows * kvs, 7), gv2 = allocFill(rows * kvs, 7);
              const sc = allocFill(f32_attention_backward_scratch(c.T, c.maxSeq, c.hd), NaN);
              c.run(true, gq1, gk1, gv1, kvs, sc);
              c.run(false, gq2, gk2, gv2, kvs, sc);
              const dq = rowsDiff(gq1, gq2, rows, c.qStride, c.nH * c.hd, 7, true);
              const dk = rowsDiff(gk1, gk2, rows, kvs, c.nKv * c.hd, 7, true);
              const dv = rowsDiff(gv1, gv2, rows, kvs, c.nKv * c.hd, 7, true);
              if (dq < 0 || dq > 1e-5 || dk < 0 || dk > 1e-5 || dv < 0 || dv > 1e-5) bad++;
              cases++;
              heap.free(gq1);
              heap.free(gq2);
              heap.free(gk1);
              heap.free(gk2);
              heap.free(gv1);
              heap.free(gv2);
              heap.free(sc);
              c.free();
            }
    expect<i32>(bad).toBe(0, "cases beyond 1e-5 or with non-finite outputs / changed gaps");
    expect<i32>(cases).toBe(240);
  });

  it("sum_j gv_j = the group's go rows that admit a key; sum_j gk_j = 0; empty queries get gq = 0", () => {
    const c = new BCase(2, 33, 4, 2, 20, 0, true, 3000);
    const rows = c.B * c.T, H = c.nH * c.hd, Hkv = c.nKv * c.hd, G = c.nH / c.nKv;
    const gq = allocZero(rows * c.qStride), gk = allocZero(rows * Hkv), gv = allocZero(rows * Hkv);
    const sc = allocZero(f32_attention_backward_scratch(c.T, c.maxSeq, c.hd));
    c.run(true, gq, gk, gv, Hkv, sc);
    let bad = 0;
    for (let b = 0; b < c.B; b++)
      for (let g = 0; g < c.nKv; g++)
        for (let d = 0; d < c.hd; d++) {
          let sv: f64 = 0, sg: f64 = 0, ag: f64 = 0, sk: f64 = 0, ak: f64 = 0;
          for (let j = 0; j < c.T; j++) {
            const o = <usize>((b * c.T + j) * Hkv + g * c.hd + d) << 2;
            sv += <f64>load<f32>(gv + o);
            sk += <f64>load<f32>(gk + o);
            ak += abs(<f64>load<f32>(gk + o));
          }
          // batch 1 is left padded over 3 slots: its queries 0..2 admit no key and contribute nothing
          for (let t = b == 1 ? 3 : 0; t < c.T; t++)
            for (let hh = 0; hh < G; hh++) {
              const v = <f64>load<f32>(c.go + (<usize>((b * c.T + t) * c.qStride + (g * G + hh) * c.hd + d) << 2));
              sg += v;
              ag += abs(v);
            }
          if (abs(sv - sg) > 1e-6 * ag) bad++;
          if (abs(sk) > 1e-5 * ak + 1e-6) bad++;
        }
    expect<i32>(bad).toBe(0);
    let nonzero = 0;
    for (let t = 0; t < 3; t++) for (let k = 0; k < H; k++) if (load<f32>(gq + (<usize>((c.T + t) * c.qStride + k) << 2)) != 0) nonzero++;
    expect<i32>(nonzero).toBe(0);
    heap.free(gq);
    heap.free(gk);
    heap.free(gv);
    heap.free(sc);
    c.free();
  });
});
