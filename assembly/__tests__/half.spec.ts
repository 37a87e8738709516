// Half-precision weight kernels (half.ts) against their scalar twins and against the f32 kernels on the widened
// weights, over edge shapes (tails of 8/4 halves, odd K and N, every gemm path), acc and bias on/off:
//   conversions: SIMD = scalar twin on all 65,536 patterns / random f32 bits; half -> f32 -> half = identity (non-NaN)
//   h16_gemm_nt / h16_gemm_nn: bit-identical to f32_gemm_nt / f32_gemm_nn on the widened weight; the scalar twins to
//     f32's scalar twins; h16_gemm_nn and the panels path (B >= 4, K <= 1024) to the scalar twin
//   embedding: SIMD = scalar twin
//   switching: gather_scatter_add and switch_merge = their scalar twins = the three passes; restores are exact
import {
  h16_to_f32, h16_to_f32_scalar, f32_to_h16, f32_to_h16_scalar, h16_gemm_nt, h16_gemm_nt_scalar, h16_gemm_nn,
  h16_gemm_nn_scalar, h16_embedding, h16_embedding_scalar, h16_gather, h16_gather_scalar, h16_scatter_set,
  h16_scatter_set_scalar, h16_gather_scatter_add, h16_gather_scatter_add_scalar, h16_switch_merge, h16_switch_merge_scalar,
} from "../half";
import { f32_gemm_nt, f32_gemm_nt_scalar, f32_gemm_nn, f32_gemm_nn_scalar } from "../gemm";
import { allocRandom, allocCopy, bitDiffs, srand, nextU32, randInt, rnd } from "./helpers";

/** n random halves of format dt: values ~ U(-0.1, 0.1) rounded, some zeros, F16 subnormals, and inf/NaN if `specials`. */
function allocHalves(n: i32, seed: u32, dt: i32, specials: bool): usize {
  srand(seed);
  const f = heap.alloc(<usize>max(n, 1) << 2);
  for (let i = 0; i < n; i++) store<f32>(f + (<usize>i << 2), rnd() * <f32>0.1);
  const h = heap.alloc(<usize>max(n, 1) << 1);
  f32_to_h16_scalar(f, h, n, dt);
  heap.free(f);
  for (let i = 0; i < n; i++) {
    const u = randInt(1000);
    const sign: u16 = nextU32() & 1 ? 0x8000 : 0;
    const p = h + (<usize>i << 1);
    if (u < 5) store<u16>(p, sign);
    else if (dt == 1 && u < 15) store<u16>(p, sign | <u16>(1 + randInt(0x3ff)));
    else if (specials && u < 25) store<u16>(p, sign | (dt == 1 ? <u16>0x7c00 : <u16>0x7f80) | <u16>(u & 1 ? 0 : 1 + randInt(0x3f)));
  }
  return h;
}

function widened(h: usize, n: i32, dt: i32): usize {
  const f = heap.alloc(<usize>max(n, 1) << 2);
  h16_to_f32_scalar(h, f, n, dt);
  return f;
}

function sameU16(a: usize, b: usize, n: i32): bool {
  for (let i = 0; i < n; i++) if (load<u16>(a + (<usize>i << 1)) != load<u16>(b + (<usize>i << 1))) return false;
  return true;
}

describe("half conversions", () => {
  it("h16_to_f32 = its scalar twin on all 65,536 patterns; half -> f32 -> half is the identity except NaNs", () => {
    const n = 65536;
    const h = heap.alloc(<usize>n << 1);
    for (let i = 0; i < n; i++) store<u16>(h + (<usize>i << 1), <u16>i);
    const a = heap.alloc(<usize>n << 2), b = heap.alloc(<usize>n << 2), back = heap.alloc(<usize>n << 1);
    for (let dt = 0; dt < 2; dt++) {
      h16_to_f32(h, a, n, dt);
      h16_to_f32_scalar(h, b, n, dt);
      let diff = 0;
      for (let i = 0; i < n; i++) if (load<u32>(a + (<usize>i << 2)) != load<u32>(b + (<usize>i << 2))) diff++;
      expect<i32>(diff).toBe(0, "SIMD = scalar, bit for bit (NaN payloads too)");
      f32_to_h16(a, back, n, dt);
      let bad = 0;
      for (let i = 0; i < n; i++) {
        const nan = isNaN<f32>(load<f32>(a + (<usize>i << 2)));
        const want: u32 = nan ? (<u32>i & 0x8000) | (dt == 1 ? 0x7e00 : 0x7fc0) : <u32>i;
        if (<u32>load<u16>(back + (<usize>i << 1)) != want) bad++;
      }
      expect<i32>(bad).toBe(0, "round trip");
    }
    heap.free(h); heap.free(a); heap.free(b); heap.free(back);
  });

  it("f32_to_h16 = its scalar twin on random f32 bit patterns and lengths with tails", () => {
    srand(99);
    const n = 100003;
    const f = heap.alloc(<usize>n << 2);
    for (let i = 0; i < n; i++) store<u32>(f + (<usize>i << 2), nextU32());
    const a = heap.alloc(<usize>n << 1), b = heap.alloc(<usize>n << 1);
    for (let dt = 0; dt < 2; dt++) {
      f32_to_h16(f, a, n, dt);
      f32_to_h16_scalar(f, b, n, dt);
      expect<bool>(sameU16(a, b, n)).toBe(true);
    }
    heap.free(f); heap.free(a); heap.free(b);
  });

  it("rounds ties to even and overflows to infinity", () => {
    const f = heap.alloc(32), h = heap.alloc(16);
    // bf16: 1 + 2^-8 (tie, even down -> 1), 1 + 3 * 2^-8 (tie, odd up), (2 - 2^-8) 2^127 -> inf
    store<f32>(f, <f32>1.00390625);
    store<f32>(f, <f32>1.01171875, 4);
    store<u32>(f + 8, 0x7f7f8000);
    store<u32>(f + 12, 0x7f7f7fff);
    f32_to_h16(f, h, 4, 0);
    expect<u16>(load<u16>(h)).toBe(0x3f80);
    expect<u16>(load<u16>(h, 2)).toBe(0x3f82);
    expect<u16>(load<u16>(h, 4)).toBe(0x7f80);
    expect<u16>(load<u16>(h, 6)).toBe(0x7f7f);
    // f16: 65520 -> inf, 65519.996 -> 65504, 2^-25 (tie) -> 0, 3 * 2^-25 -> 2 * 2^-24
    store<f32>(f, <f32>65520);
    store<f32>(f, <f32>65519.996, 4);
    store<f32>(f, <f32>2.9802322387695312e-8, 8);
    store<f32>(f, <f32>8.940696716308594e-8, 12);
    f32_to_h16_scalar(f, h, 4, 1);
    expect<u16>(load<u16>(h)).toBe(0x7c00);
    expect<u16>(load<u16>(h, 2)).toBe(0x7bff);
    expect<u16>(load<u16>(h, 4)).toBe(0x0000);
    expect<u16>(load<u16>(h, 6)).toBe(0x0002);
    heap.free(f); heap.free(h);
  });
});

/** Runs h16_gemm_nt, f32_gemm_nt on the widened W and both scalar twins; returns [h16 vs f32, twin vs twin, h16 vs twin]. */
function checkNt(B: i32, K: i32, N: i32, acc: i32, withBias: bool, dt: i32, seed: u32): StaticArray<i32> {
  const x = allocRandom(B * K, seed), bias = withBias ? allocRandom(N, seed + 2) : 0;
  const wh = allocHalves(N * K, seed + 1, dt, (seed & 4) != 0), wf = widened(wh, N * K, dt);
  const y0 = allocRandom(B * N, seed + 3);
  const y1 = allocCopy(y0, B * N), y2 = allocCopy(y0, B * N), y3 = allocCopy(y0, B * N), y4 = allocCopy(y0, B * N);
  h16_gemm_nt(x, wh, bias, y1, B, K, N, acc, dt);
  f32_gemm_nt(x, wf, bias, y2, B, K, N, acc);
  h16_gemm_nt_scalar(x, wh, bias, y3, B, K, N, acc, dt);
  f32_gemm_nt_scalar(x, wf, bias, y4, B, K, N, acc);
  const r = new StaticArray<i32>(3);
  r[0] = bitDiffs(y1, y2, B * N);
  r[1] = bitDiffs(y3, y4, B * N);
  r[2] = bitDiffs(y1, y3, B * N);
  heap.free(x); heap.free(wh); heap.free(wf); heap.free(y0); heap.free(y1); heap.free(y2); heap.free(y3); heap.free(y4);
  if (bias) heap.free(bias);
  return r;
}

describe("h16_gemm_nt", () => {
  it("is bit-identical to f32_gemm_nt on the widened weight on every path and edge shape", () => {
    const sizes: i32[] = [1, 3, 4, 7, 8, 9, 16, 17, 33];
    const batches: i32[] = [1, 2, 3, 4, 5, 9];
    let seed: u32 = 1;
    for (let ib = 0; ib < batches.length; ib++)
      for (let ik = 0; ik < sizes.length; ik++)
        for (let iN = 0; iN < sizes.length; iN++)
          for (let dt = 0; dt < 2; dt++) {
            const B = batches[ib], K = sizes[ik], N = sizes[iN];
            const r = checkNt(B, K, N, <i32>(seed & 1), (seed & 2) != 0, dt, seed);
            expect<i32>(r[0]).toBe(0, "h16 = f32 on the widened weight");
            expect<i32>(r[1]).toBe(0, "scalar twins agree");
            if (B >= 4 && !ASC_FEATURE_RELAXED_SIMD) expect<i32>(r[2]).toBe(0, "panels path = scalar twin");
            seed += 7;
          }
  });

  it("blocks over K (KC on the panels, KC_DOT on the dot path, one block on decode)", () => {
    for (let dt = 0; dt < 2; dt++) {
      expect<i32>(checkNt(5, 1100, 7, 0, true, dt, 11)[0]).toBe(0);
      expect<i32>(checkNt(9, 2051, 6, 1, false, dt, 12)[0]).toBe(0);
      expect<i32>(checkNt(2, 2100, 5, 1, true, dt, 13)[0]).toBe(0);
      expect<i32>(checkNt(3, 4099, 9, 0, true, dt, 14)[0]).toBe(0);
      expect<i32>(checkNt(1, 4099, 13, 0, true, dt, 15)[0]).toBe(0);
      expect<i32>(checkNt(133, 20, 6, 1, true, dt, 16)[0]).toBe(0);
    }
  });
});

describe("h16_gemm_nn", () => {
  it("is bit-identical to f32_gemm_nn on the widened weight and to its scalar twin", () => {
    const Ks: i32[] = [1, 3, 4, 5, 8, 9, 12, 17];
    const Ns: i32[] = [1, 2, 5, 33, 1030];
    const Bs: i32[] = [1, 3, 4, 7, 66];
    let seed: u32 = 300;
    for (let ib = 0; ib < Bs.length; ib++)
      for (let iN = 0; iN < Ns.length; iN++)
        for (let ik = 0; ik < Ks.length; ik++)
          for (let dt = 0; dt < 2; dt++) {
            const B = Bs[ib], N = Ns[iN], K = Ks[ik], acc = <i32>(seed & 1);
            const a = allocRandom(B * N, seed), wh = allocHalves(N * K, seed + 1, dt, (seed & 2) != 0), wf = widened(wh, N * K, dt);
            const y0 = allocRandom(B * K, seed + 2);
            const y1 = allocCopy(y0, B * K), y2 = allocCopy(y0, B * K), y3 = allocCopy(y0, B * K), y4 = allocCopy(y0, B * K);
            h16_gemm_nn(a, wh, y1, B, N, K, acc, dt);
            f32_gemm_nn(a, wf, y2, B, N, K, acc);
            h16_gemm_nn_scalar(a, wh, y3, B, N, K, acc, dt);
            f32_gemm_nn_scalar(a, wf, y4, B, N, K, acc);
            expect<i32>(bitDiffs(y1, y2, B * K)).toBe(0, "h16 = f32 on the widened weight");
            expect<i32>(bitDiffs(y3, y4, B * K)).toBe(0, "scalar twins agree");
            if (!ASC_FEATURE_RELAXED_SIMD) expect<i32>(bitDiffs(y1, y3, B * K)).toBe(0, "= scalar twin");
            heap.free(a); heap.free(wh); heap.free(wf); heap.free(y0); heap.free(y1); heap.free(y2); heap.free(y3); heap.free(y4);
            seed += 3;
          }
  });
});

describe("h16_embedding", () => {
  it("= its scalar twin (rows widened exactly)", () => {
    const Ds: i32[] = [1, 4, 7, 8, 9, 17, 64];
    for (let dt = 0; dt < 2; dt++)
      for (let i = 0; i < Ds.length; i++) {
        const D = Ds[i], V = 11, n = 6;
        const t = allocHalves(V * D, 40 + <u32>D, dt, true);
        const ids = heap.alloc(<usize>n << 2);
        srand(7);
        for (let j = 0; j < n; j++) store<i32>(ids + (<usize>j << 2), randInt(V));
        const a = heap.alloc(<usize>(n * D) << 2), b = heap.alloc(<usize>(n * D) << 2);
        h16_embedding(t, ids, a, n, D, dt);
        h16_embedding_scalar(t, ids, b, n, D, dt);
        let diff = 0;
        for (let j = 0; j < n * D; j++) if (load<u32>(a + (<usize>j << 2)) != load<u32>(b + (<usize>j << 2))) diff++;
        expect<i32>(diff).toBe(0);
        heap.free(t); heap.free(ids); heap.free(a); heap.free(b);
      }
  });
});

/** n sorted unique positions in [0, m) (selection sampling). */
function choose(n: i32, m: i32): usize {
  const out = heap.alloc(<usize>max(n, 1) << 2);
  let need = n, avail = m, k = 0;
  for (let p = 0; p < m && need > 0; p++) {
    if (randInt(avail) < need) {
      store<i32>(out + (<usize>k << 2), p);
      k++;
      need--;
    }
    avail--;
  }
  return out;
}

describe("switching on half weights", () => {
  it("switch_merge = scalar twin = scatter_set(A) + gather(B) + gather_scatter_add(B); restores are exact", () => {
    const nAs: i32[] = [0, 1, 5, 37, 511, 513, 2000];
    for (let dt = 0; dt < 2; dt++)
      for (let c = 0; c < nAs.length; c++) {
        srand(1000 + <u32>c);
        const nA = nAs[c], nB = (nA * 3) / 4 + 2, m = 60 * (nA + nB) + 17;
        const idxA = choose(nA, m), idxB = choose(nB, m);
        const vA = allocRandom(nA, 5, 2), vB = allocRandom(nB, 6, 2);
        const base = allocHalves(m, 7 + <u32>c, dt, true);
        const w0 = heap.alloc(<usize>m << 1), w1 = heap.alloc(<usize>m << 1), w2 = heap.alloc(<usize>m << 1);
        const sA = heap.alloc(<usize>max(nA, 1) << 1), sA2 = heap.alloc(<usize>max(nA, 1) << 1);
        const s0 = heap.alloc(<usize>max(nB, 1) << 1), s1 = heap.alloc(<usize>max(nB, 1) << 1), s2 = heap.alloc(<usize>max(nB, 1) << 1);
        // fuse A: kernel = twin
        memory.copy(w0, base, <usize>m << 1);
        memory.copy(w1, base, <usize>m << 1);
        h16_gather_scatter_add(w0, idxA, sA, vA, 0.75, nA, dt);
        h16_gather_scatter_add_scalar(w1, idxA, sA2, vA, 0.75, nA, dt);
        expect<bool>(sameU16(w0, w1, m)).toBe(true, "gather_scatter_add = twin (weight)");
        expect<bool>(sameU16(sA, sA2, nA)).toBe(true, "gather_scatter_add = twin (saved)");
        memory.copy(w1, w0, <usize>m << 1);
        memory.copy(w2, w0, <usize>m << 1);
        // three passes
        h16_scatter_set_scalar(w0, idxA, sA, nA);
        expect<bool>(sameU16(w0, base, m)).toBe(true, "restore of A = base");
        h16_gather_scalar(w0, idxB, s0, nB);
        h16_gather_scatter_add_scalar(w0, idxB, s1, vB, -1.25, nB, dt);
        expect<bool>(sameU16(s0, s1, nB)).toBe(true, "gather = the saved values of gather_scatter_add");
        // single sweep, kernel and twin
        h16_switch_merge(w1, idxA, sA, nA, idxB, s1, vB, -1.25, nB, dt);
        h16_switch_merge_scalar(w2, idxA, sA, nA, idxB, s2, vB, -1.25, nB, dt);
        expect<bool>(sameU16(w0, w1, m)).toBe(true, "kernel = three passes (weight)");
        expect<bool>(sameU16(w0, w2, m)).toBe(true, "twin = three passes (weight)");
        expect<bool>(sameU16(s0, s1, nB) && sameU16(s0, s2, nB)).toBe(true, "saved values");
        // restore B with the SIMD forms: the base again
        h16_gather(w1, idxB, s2, nB);
        h16_scatter_set(w1, idxB, s1, nB);
        expect<bool>(sameU16(w1, base, m)).toBe(true, "restore of B = base");
        heap.free(idxA); heap.free(idxB); heap.free(vA); heap.free(vB); heap.free(base); heap.free(w0); heap.free(w1); heap.free(w2);
        heap.free(sA); heap.free(sA2); heap.free(s0); heap.free(s1); heap.free(s2);
      }
  });
});
