// The half-precision weight kernels (assembly/half.ts) through the runtime. Weights are BF16 (dtype 0) or F16 (dtype
// 1) bit patterns in wasm memory; references are written here from the IEEE definitions, not from the kernels' bit
// tricks:
//
//   conversions  h16_to_f32 on all 65,536 patterns of each format against a decoder of the format's definition
//                (bit for bit, NaN payloads included); f32_to_h16 against round-to-nearest-even over the sorted
//                table of the format's values (every value, every midpoint and its f32 neighbours, edge values,
//                random bit patterns), and against PyTorch's own rounding (tests/fixtures/half/torch_half.json,
//                made by scripts/fixtures/make_half_fixtures.py; NaN compares as NaN there)
//   gemm         h16_gemm_nt / h16_gemm_nn bit for bit against f32_gemm_nt / f32_gemm_nn on the widened weights, in
//                the same build, on every path (dot B <= 3 incl. decode B = 1, panels B >= 4, K blocks, batch chunks,
//                strips, tails), acc and bias on/off, with F16 subnormals, zeros, infinities, NaNs and large x (the
//                exact fallbacks of the F16 decode path); the scalar twins against f32's scalar twins likewise
//   embedding    rows widened exactly
//   switching    gather / scatter_set restore bit for bit; gather_scatter_add = one f32 product, one f32 add, one
//                rounding (a JS emulation, and PyTorch's merge of a bf16 / f16 base from the fixture);
//                switch_merge = the three-pass reference; every SIMD/unrolled form = its scalar twin
//
// The plain-SIMD build always runs; the relaxed-SIMD build too, here or in a child process (tests/helpers/variants.ts).
import { rng, sortedPositions } from "./helpers/random.js";
import { forEachVariant } from "./helpers/variants.js";
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { createRuntime, type Runtime, type WasmVariant } from "../src/runtime/runtime.js";

type Dtype = 0 | 1;
const BF16: Dtype = 0;
const F16: Dtype = 1;
const DTYPES: Dtype[] = [BF16, F16];
const NAME = ["bf16", "f16"];
const fr = Math.fround;

// ------------------------------------------------------------------------------------------------ f32 bits

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);
function bitsOf(x: number): number {
  F32[0] = x;
  return U32[0];
}
function fromBits(b: number): number {
  U32[0] = b >>> 0;
  return F32[0];
}

// ------------------------------------------------------------------------------------------------ format references

/** [exponent bits, mantissa bits, bias] of each format. */
const FORMAT: [number, number, number][] = [
  [8, 7, 127],
  [5, 10, 15],
];

/** The value of a half bit pattern by the format's definition (NaN for a NaN). */
function halfValue(h: number, dt: Dtype): number {
  const [eb, mb, bias] = FORMAT[dt];
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> mb) & ((1 << eb) - 1);
  const f = h & ((1 << mb) - 1);
  if (e === (1 << eb) - 1) return f ? NaN : s * Infinity;
  if (e === 0) return s * f * 2 ** (1 - bias - mb);
  return s * (1 + f / 2 ** mb) * 2 ** (e - bias);
}

/** The f32 bits of the widened half: its value (exact in f32), or for a NaN the same sign and payload. */
function widenBits(h: number, dt: Dtype): number {
  const v = halfValue(h, dt);
  if (Number.isNaN(v)) {
    const mb = FORMAT[dt][1];
    return (((h & 0x8000) << 16) | 0x7f800000 | ((h & ((1 << mb) - 1)) << (23 - mb))) >>> 0;
  }
  assert.equal(fr(v), v, `half ${h.toString(16)} is exact in f32`);
  return bitsOf(v);
}

/** Values of the non-negative finite codes 0..max of each format (ascending with the code). */
const MAX_CODE = [0x7f7f, 0x7bff];
const VALUES = DTYPES.map((dt) => Float64Array.from({ length: MAX_CODE[dt] + 1 }, (_, c) => halfValue(c, dt)));
const NEXT_BINADE = [2 ** 128, 2 ** 16];
const QNAN = [0x7fc0, 0x7e00];
const INF = [0x7f80, 0x7c00];

/**
 * Round to nearest, ties to even, of the f32 with bits `b` to the format: the nearest entry of the value table (a tie
 * goes to the even code); past the largest finite value M, values from the midpoint of M and 2^(emax+1) round to
 * infinity (M's code is odd, so the tie goes up). NaN: the quiet NaN of the input's sign (the kernels' rule).
 */
function roundRef(b: number, dt: Dtype): number {
  const sign = (b >>> 16) & 0x8000;
  const x = Math.abs(fromBits(b));
  if (Number.isNaN(x)) return sign | QNAN[dt];
  const vals = VALUES[dt];
  const top = MAX_CODE[dt];
  if (x >= (vals[top] + NEXT_BINADE[dt]) / 2) return sign | INF[dt];
  if (x >= vals[top]) return sign | top;
  let lo = 0;
  let hi = top;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (vals[mid] <= x) lo = mid;
    else hi = mid - 1;
  }
  if (vals[lo] === x) return sign | lo;
  const m = (vals[lo] + vals[lo + 1]) / 2; // exact in float64
  return sign | (x < m ? lo : x > m ? lo + 1 : lo & 1 ? lo + 1 : lo);
}

function isHalfNaN(h: number, dt: Dtype): boolean {
  return Number.isNaN(halfValue(h, dt));
}

// ------------------------------------------------------------------------------------------------ memory

/** Allocations in wasm memory for one test, freed together; views are made after the last allocation. */
class Arena {
  #blocks: [number, number][] = [];
  constructor(readonly rt: Runtime) {}
  #bytes(n: number): number {
    const size = Math.max(16, n);
    const p = this.rt.allocBytes(size);
    this.#blocks.push([p, size]);
    return p;
  }
  f32(data: ArrayLike<number> | number): number {
    const n = typeof data === "number" ? data : data.length;
    const p = this.#bytes(n * 4);
    const v = new Float32Array(this.rt.memory.buffer, p, n);
    if (typeof data === "number") v.fill(0);
    else v.set(data);
    return p;
  }
  i32(data: ArrayLike<number>): number {
    const p = this.#bytes(data.length * 4);
    new Int32Array(this.rt.memory.buffer, p, data.length).set(data);
    return p;
  }
  u16(data: ArrayLike<number> | number): number {
    const n = typeof data === "number" ? data : data.length;
    const p = this.#bytes(n * 2);
    const v = new Uint16Array(this.rt.memory.buffer, p, n);
    if (typeof data === "number") v.fill(0);
    else v.set(data);
    return p;
  }
  readF32(p: number, n: number): Float32Array {
    return new Float32Array(this.rt.memory.buffer, p, n).slice();
  }
  readU16(p: number, n: number): Uint16Array {
    return new Uint16Array(this.rt.memory.buffer, p, n).slice();
  }
  free(): void {
    for (const [p, n] of this.#blocks) this.rt.freeBytes(p, n);
    this.#blocks = [];
  }
}

function withArena<R>(rt: Runtime, fn: (a: Arena) => R): R {
  const a = new Arena(rt);
  try {
    return fn(a);
  } finally {
    a.free();
  }
}

// ------------------------------------------------------------------------------------------------ data

/**
 * n half weights: values ~ 0.05 * N(0, 1) rounded to the format, with some exact zeros of both signs and, for F16,
 * subnormals (~1 %); with `specials`, also infinities and NaNs (~0.5 %).
 */
function halfWeights(n: number, seed: number, dt: Dtype, specials = false): Uint16Array {
  const r = rng(seed);
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    const u = r();
    const sign = r() < 0.5 ? 0x8000 : 0;
    if (u < 0.005) out[i] = sign;
    else if (dt === F16 && u < 0.015) out[i] = sign | (1 + Math.floor(r() * 0x3ff));
    else if (specials && u < 0.02) out[i] = sign | (r() < 0.5 ? INF[dt] : INF[dt] | (1 + Math.floor(r() * (dt === F16 ? 0x3ff : 0x7f))));
    else {
      const g = Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
      out[i] = roundRef(bitsOf(fr(0.05 * g)), dt);
    }
  }
  return out;
}

function widenAll(h: Uint16Array, dt: Dtype): Float32Array {
  const f = new Float32Array(h.length);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < h.length; i++) u[i] = widenBits(h[i], dt);
  return f;
}

function randF32(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale);
}

/** Bit-identical f32 arrays (any NaN equals any NaN: wasm leaves NaN payloads of arithmetic unspecified). */
function assertSameF32(got: Float32Array, want: Float32Array, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  const g = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const w = new Uint32Array(want.buffer, want.byteOffset, want.length);
  for (let i = 0; i < g.length; i++) {
    if (g[i] === w[i] || (Number.isNaN(got[i]) && Number.isNaN(want[i]))) continue;
    assert.fail(`${what}: element ${i}: ${got[i]} (0x${g[i].toString(16)}) vs ${want[i]} (0x${w[i].toString(16)})`);
  }
}

/** Bit-identical half arrays (NaN equals NaN). */
function assertSameHalf(got: Uint16Array, want: Uint16Array, dt: Dtype, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < got.length; i++) {
    if (got[i] === want[i] || (isHalfNaN(got[i], dt) && isHalfNaN(want[i], dt))) continue;
    assert.fail(`${what}: element ${i}: 0x${got[i].toString(16)} vs 0x${want[i].toString(16)}`);
  }
}


/** One fuse step by the rule: half(f32(widen(h)) + f32(v * scale)), scale an f32. */
function fuseRef(h: number, v: number, scale: number, dt: Dtype): number {
  const s = fromBits(widenBits(h, dt));
  const d = fr(v * fr(scale));
  return roundRef(bitsOf(fr(s + d)), dt);
}

interface TorchFixture {
  torch: string;
  rounding: { f32: number[]; bf16: number[]; f16: number[] };
  merge: { dtype: string; shape: [number, number]; base: number[]; idx: number[]; values: number[]; scale: number; merged: number[] }[];
}
const fixture: TorchFixture = JSON.parse(readFileSync(fileURLToPath(new URL("./fixtures/half/torch_half.json", import.meta.url)), "utf8"));

// ------------------------------------------------------------------------------------------------ suite

function suite(variant: WasmVariant): void {
  const rt = createRuntime({ variant });
  const k = rt.k;
  const tag = `[${variant}]`;

  describe(`half-precision conversions ${tag}`, () => {
    test("h16_to_f32 widens all 65,536 patterns of each format exactly (NaN payloads kept)", () => {
      const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
      for (const dt of DTYPES) {
        const want = new Uint32Array(65536);
        for (let h = 0; h < 65536; h++) want[h] = widenBits(h, dt);
        for (const kernel of ["h16_to_f32", "h16_to_f32_scalar"] as const) {
          // odd offsets and lengths reach the SIMD body, its 8-lane steps and the scalar tail
          for (const [from, n] of [
            [0, 65536],
            [3, 65533],
            [5, 11],
          ]) {
            const got = withArena(rt, (a) => {
              const src = a.u16(all.subarray(from, from + n));
              const dst = a.f32(n);
              k[kernel](src, dst, n, dt);
              return new Uint32Array(a.readF32(dst, n).buffer);
            });
            for (let i = 0; i < n; i++) {
              if (got[i] !== want[from + i]) assert.fail(`${kernel} ${NAME[dt]} 0x${(from + i).toString(16)}: 0x${got[i].toString(16)} vs 0x${want[from + i].toString(16)}`);
            }
          }
        }
      }
    });

    test("f32_to_h16 rounds to nearest even: every value, midpoint and f32 neighbour of each format, edges, random bits", () => {
      const bits: number[] = [0, 0x80000000, 1, 0x80000001, 0x007fffff, 0x00800000, 0x7f7fffff, 0xff7fffff, 0x7f800000, 0xff800000];
      bits.push(0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fbfffff, 0x7fffffff, 0xffffffff);
      for (const dt of DTYPES) {
        const vals = VALUES[dt];
        for (let c = 0; c <= MAX_CODE[dt]; c++) {
          const v = vals[c];
          const m = c < MAX_CODE[dt] ? (vals[c] + vals[c + 1]) / 2 : (vals[c] + NEXT_BINADE[dt]) / 2;
          for (const x of [v, m]) {
            const b = bitsOf(x);
            assert.equal(fromBits(b), x, "values and midpoints are f32 numbers");
            for (const d of [-1, 0, 1]) {
              const bd = (b + d) >>> 0;
              bits.push(bd, (bd | 0x80000000) >>> 0);
            }
          }
        }
      }
      const r = rng(77);
      for (let i = 0; i < 200_000; i++) bits.push(Math.floor(r() * 2 ** 32) >>> 0);
      const src = Uint32Array.from(bits);
      for (const dt of DTYPES) {
        const want = Uint16Array.from(bits, (b) => roundRef(b, dt));
        for (const kernel of ["f32_to_h16", "f32_to_h16_scalar"] as const) {
          const got = withArena(rt, (a) => {
            const p = a.f32(new Float32Array(src.buffer));
            const q = a.u16(src.length);
            k[kernel](p, q, src.length, dt);
            return a.readU16(q, src.length);
          });
          for (let i = 0; i < src.length; i++) {
            if (got[i] !== want[i]) assert.fail(`${kernel} ${NAME[dt]} of f32 0x${src[i].toString(16)}: 0x${got[i].toString(16)} vs 0x${want[i].toString(16)}`);
          }
        }
      }
    });

    test(`f32_to_h16 equals torch ${fixture.torch}'s .to(torch.bfloat16) / .to(torch.float16) (NaN as NaN)`, () => {
      const src = Uint32Array.from(fixture.rounding.f32);
      for (const dt of DTYPES) {
        const torch = Uint16Array.from(dt === BF16 ? fixture.rounding.bf16 : fixture.rounding.f16);
        for (const kernel of ["f32_to_h16", "f32_to_h16_scalar"] as const) {
          const got = withArena(rt, (a) => {
            const p = a.f32(new Float32Array(src.buffer));
            const q = a.u16(src.length);
            k[kernel](p, q, src.length, dt);
            return a.readU16(q, src.length);
          });
          assertSameHalf(got, torch, dt, `${kernel} ${NAME[dt]} vs torch`);
          // the kernels' NaN rule: the quiet NaN of the input's sign
          for (let i = 0; i < src.length; i++) {
            if (Number.isNaN(fromBits(src[i]))) assert.equal(got[i], ((src[i] >>> 16) & 0x8000) | QNAN[dt], `NaN 0x${src[i].toString(16)}`);
          }
        }
      }
    });

    test("half -> f32 -> half is the identity on every non-NaN pattern; NaNs come back as the quiet NaN of their sign", () => {
      const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
      for (const dt of DTYPES) {
        const back = withArena(rt, (a) => {
          const h = a.u16(all);
          const f = a.f32(65536);
          const h2 = a.u16(65536);
          k.h16_to_f32(h, f, 65536, dt);
          k.f32_to_h16(f, h2, 65536, dt);
          return a.readU16(h2, 65536);
        });
        for (let h = 0; h < 65536; h++) assert.equal(back[h], isHalfNaN(h, dt) ? (h & 0x8000) | QNAN[dt] : h, `${NAME[dt]} 0x${h.toString(16)}`);
      }
    });
  });

  describe(`h16_gemm_nt: bit-identical to f32_gemm_nt on the widened weight ${tag}`, () => {
    /** Runs the four kernels on one case and checks h16 == f32 (SIMD and scalar twins). */
    function checkNt(dt: Dtype, B: number, K: number, N: number, acc: number, withBias: boolean, seed: number, opts: { specials?: boolean; xScale?: number; xSpecial?: number } = {}) {
      const wh = halfWeights(N * K, seed, dt, opts.specials);
      const wf = widenAll(wh, dt);
      const x = randF32(B * K, seed + 1, opts.xScale ?? 1);
      if (opts.xSpecial !== undefined && x.length) x[Math.floor(x.length / 2)] = opts.xSpecial;
      const bias = withBias ? randF32(N, seed + 2) : null;
      const y0 = randF32(B * N, seed + 3);
      const what = `${NAME[dt]} B=${B} K=${K} N=${N} acc=${acc} bias=${withBias}${opts.specials ? " specials" : ""}${opts.xScale ? ` |x|<${opts.xScale}` : ""}${opts.xSpecial !== undefined ? ` x~${opts.xSpecial}` : ""}`;
      withArena(rt, (a) => {
        const pw = a.u16(wh);
        const pf = a.f32(wf);
        const px = a.f32(x);
        const pb = bias ? a.f32(bias) : 0;
        const ys = [a.f32(y0), a.f32(y0), a.f32(y0), a.f32(y0)];
        k.h16_gemm_nt(px, pw, pb, ys[0], B, K, N, acc, dt);
        k.f32_gemm_nt(px, pf, pb, ys[1], B, K, N, acc);
        k.h16_gemm_nt_scalar(px, pw, pb, ys[2], B, K, N, acc, dt);
        k.f32_gemm_nt_scalar(px, pf, pb, ys[3], B, K, N, acc);
        const [h, f, hs, fs] = ys.map((p) => a.readF32(p, B * N));
        assertSameF32(h, f, `h16_gemm_nt vs f32_gemm_nt: ${what}`);
        assertSameF32(hs, fs, `h16_gemm_nt_scalar vs f32_gemm_nt_scalar: ${what}`);
        // the panels path sums in the scalar twin's order within a K block (plain build: separate mul and add)
        if (variant === "simd" && B >= 4 && K <= 1024) assertSameF32(h, hs, `h16_gemm_nt vs its scalar twin: ${what}`);
      });
    }

    test("every path on edge shapes: B 1..17, K and N odd/even, below/at/above the tiles", () => {
      let seed = 1;
      for (const B of [1, 2, 3, 4, 5, 8, 17]) {
        for (const K of [1, 3, 4, 7, 8, 9, 15, 16, 17, 33]) {
          for (const N of [1, 3, 4, 5, 8, 9, 12, 13, 17]) {
            for (const dt of DTYPES) checkNt(dt, B, K, N, seed & 1, (seed & 2) !== 0, seed);
            seed += 7;
          }
        }
      }
    });

    test("acc x bias on the decode, dot and panel paths", () => {
      for (const B of [1, 2, 3, 4, 9, 17]) {
        for (let acc = 0; acc < 2; acc++) for (const withBias of [false, true]) for (const dt of DTYPES) checkNt(dt, B, 37, 13, acc, withBias, 100 + B);
      }
    });

    test("K blocks (KC = 1024 on the panels, KC_DOT = 2048 on the dot path) and K >= 1024 on decode", () => {
      let seed = 300;
      for (const B of [1, 2, 3, 4, 130]) {
        for (const K of [1023, 1024, 1025, 2047, 2049, 2100, 4099]) {
          const N = B === 130 ? 5 : [5, 12, 17][seed % 3];
          for (const dt of DTYPES) checkNt(dt, B, K, N, seed & 1, (seed & 2) !== 0, seed);
          seed += 3;
        }
      }
    });

    test("large N (>= 1024) and batch chunks (B > 128)", () => {
      const cases: [number, number, number][] = [
        [1, 64, 1030],
        [1, 1031, 1025],
        [2, 100, 1027],
        [3, 256, 1024],
        [4, 33, 1030],
        [129, 20, 9],
        [130, 40, 1029],
      ];
      let seed = 500;
      for (const [B, K, N] of cases) for (const dt of DTYPES) checkNt(dt, B, K, N, seed & 1, true, seed++);
    });

    test("infinities and NaNs in W (F16 decode: the exact recomputation of a tile), |x| >= 2^16, NaN and inf in x", () => {
      let seed = 700;
      for (const B of [1, 2, 3, 4, 6]) {
        for (const [K, N] of [
          [64, 12],
          [67, 9],
          [1030, 5],
        ]) {
          for (const dt of DTYPES) {
            checkNt(dt, B, K, N, 1, true, seed, { specials: true });
            checkNt(dt, B, K, N, 0, false, seed + 1, { xScale: 1e5 });
            checkNt(dt, B, K, N, 0, true, seed + 2, { xSpecial: 65536 });
            checkNt(dt, B, K, N, 1, false, seed + 3, { xSpecial: 65535.99609375 });
            checkNt(dt, B, K, N, 0, true, seed + 4, { xSpecial: NaN });
            checkNt(dt, B, K, N, 0, false, seed + 5, { xSpecial: -Infinity });
            checkNt(dt, B, K, N, 0, false, seed + 6, { xSpecial: 1e-40 });
          }
          seed += 10;
        }
      }
    });

    test("one inf or NaN in a single row: only that decode tile takes the exact path, the others stay bit-identical", () => {
      for (const dt of DTYPES) {
        for (const [K, N, at] of [
          [40, 11, 5 * 40 + 17],
          [41, 9, 8 * 41 + 40],
          [36, 8, 2 * 36 + 33],
        ]) {
          const wh = halfWeights(N * K, 900 + at, dt);
          for (const special of [INF[dt], 0x8000 | INF[dt], QNAN[dt], INF[dt] | 1]) {
            wh[at] = special;
            const wf = widenAll(wh, dt);
            const x = randF32(K, 901);
            withArena(rt, (a) => {
              const pw = a.u16(wh);
              const pf = a.f32(wf);
              const px = a.f32(x);
              const y1 = a.f32(N);
              const y2 = a.f32(N);
              k.h16_gemm_nt(px, pw, 0, y1, 1, K, N, 0, dt);
              k.f32_gemm_nt(px, pf, 0, y2, 1, K, N, 0);
              assertSameF32(a.readF32(y1, N), a.readF32(y2, N), `${NAME[dt]} K=${K} N=${N} W[${at}] = 0x${special.toString(16)}`);
            });
          }
        }
      }
    });

    test("K = 0 gives (acc ? y : 0) + bias", () => {
      for (const dt of DTYPES) {
        for (const acc of [0, 1]) {
          withArena(rt, (a) => {
            const y0 = randF32(6, 3);
            const bias = randF32(3, 4);
            const y = a.f32(y0);
            k.h16_gemm_nt(a.f32(1), a.u16(1), a.f32(bias), y, 2, 0, 3, acc, dt);
            const got = a.readF32(y, 6);
            for (let i = 0; i < 6; i++) assert.equal(got[i], acc ? fr(y0[i] + bias[i % 3]) : bias[i % 3]);
          });
        }
      }
    });
  });

  describe(`h16_gemm_nn: bit-identical to f32_gemm_nn on the widened weight ${tag}`, () => {
    function checkNn(dt: Dtype, B: number, N: number, K: number, acc: number, seed: number, specials = false) {
      const wh = halfWeights(N * K, seed, dt, specials);
      const wf = widenAll(wh, dt);
      const av = randF32(B * N, seed + 1);
      const y0 = randF32(B * K, seed + 2);
      const what = `${NAME[dt]} B=${B} N=${N} K=${K} acc=${acc}${specials ? " specials" : ""}`;
      withArena(rt, (a) => {
        const pw = a.u16(wh);
        const pf = a.f32(wf);
        const pa = a.f32(av);
        const ys = [a.f32(y0), a.f32(y0), a.f32(y0), a.f32(y0)];
        k.h16_gemm_nn(pa, pw, ys[0], B, N, K, acc, dt);
        k.f32_gemm_nn(pa, pf, ys[1], B, N, K, acc);
        k.h16_gemm_nn_scalar(pa, pw, ys[2], B, N, K, acc, dt);
        k.f32_gemm_nn_scalar(pa, pf, ys[3], B, N, K, acc);
        const [h, f, hs, fs] = ys.map((p) => a.readF32(p, B * K));
        assertSameF32(h, f, `h16_gemm_nn vs f32_gemm_nn: ${what}`);
        assertSameF32(hs, fs, `h16_gemm_nn_scalar vs f32_gemm_nn_scalar: ${what}`);
        if (variant === "simd") assertSameF32(h, hs, `h16_gemm_nn vs its scalar twin: ${what}`);
      });
    }

    test("edge shapes: strips of 8 and 4, the K % 4 tail, row tiles of 4 and blocks of 64", () => {
      let seed = 1000;
      for (const B of [1, 2, 3, 4, 5, 8, 65]) {
        for (const N of [1, 3, 8, 17]) {
          for (const K of [1, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 33]) {
            for (const dt of DTYPES) checkNn(dt, B, N, K, seed & 1, seed);
            seed += 5;
          }
        }
      }
    });

    test("N above the widened chunk (1024 rows of W), acc on/off, infinities and NaNs", () => {
      let seed = 2000;
      for (const [B, N, K] of [
        [1, 1025, 9],
        [3, 2049, 12],
        [130, 1100, 13],
        [5, 3000, 4],
      ]) {
        for (const dt of DTYPES) {
          checkNn(dt, B, N, K, 0, seed++);
          checkNn(dt, B, N, K, 1, seed++);
          checkNn(dt, B, N, K, 1, seed++, true);
        }
      }
    });
  });

  describe(`h16_embedding ${tag}`, () => {
    test("gathers rows widened exactly (SIMD and scalar twin)", () => {
      const r = rng(31);
      for (const dt of DTYPES) {
        for (const D of [1, 3, 4, 7, 8, 9, 16, 17, 33, 100]) {
          const V = 13;
          const table = halfWeights(V * D, 40 + D, dt, true);
          const ids = Int32Array.from({ length: 9 }, () => Math.floor(r() * V));
          ids[3] = ids[1];
          const want = new Float32Array(ids.length * D);
          ids.forEach((id, i) => want.set(widenAll(table.subarray(id * D, id * D + D), dt), i * D));
          for (const kernel of ["h16_embedding", "h16_embedding_scalar"] as const) {
            const got = withArena(rt, (a) => {
              const out = a.f32(ids.length * D);
              k[kernel](a.u16(table), a.i32(ids), out, ids.length, D, dt);
              return a.readF32(out, ids.length * D);
            });
            assert.deepEqual(new Uint32Array(got.buffer), new Uint32Array(want.buffer), `${kernel} ${NAME[dt]} D=${D}`);
          }
        }
      }
    });
  });

  describe(`switching on half weights ${tag}`, () => {
    /** The reference fuse of a weight at the positions: saved values and the fused weight. */
    function fuseAll(w0: Uint16Array, idx: Int32Array, v: Float32Array, scale: number, dt: Dtype) {
      const w = w0.slice();
      const saved = new Uint16Array(idx.length);
      idx.forEach((p, j) => {
        saved[j] = w[p];
        w[p] = fuseRef(w[p], v[j], scale, dt);
      });
      return { w, saved };
    }

    test("gather / scatter_set restore a fused weight bit for bit, through many switches", () => {
      const r = rng(5);
      for (const dt of DTYPES) {
        for (const [n, m] of [
          [0, 10],
          [1, 10],
          [7, 20],
          [513, 4000],
          [3000, 50000],
        ]) {
          const base = halfWeights(m, 60 + n, dt, true);
          const idxA = sortedPositions(r, n, m);
          const idxB = sortedPositions(r, Math.floor(n / 2) + 1, m);
          const vA = randF32(idxA.length, 61, 3);
          const vB = randF32(idxB.length, 62, 3);
          for (const [gather, scatter, fuse] of [
            ["h16_gather", "h16_scatter_set", "h16_gather_scatter_add"],
            ["h16_gather_scalar", "h16_scatter_set_scalar", "h16_gather_scatter_add_scalar"],
          ] as const) {
            withArena(rt, (a) => {
              const w = a.u16(base);
              const ia = a.i32(idxA);
              const ib = a.i32(idxB);
              const va = a.f32(vA);
              const vb = a.f32(vB);
              const sa = a.u16(idxA.length);
              const sb = a.u16(idxB.length);
              const g = a.u16(idxA.length);
              k[gather](w, ia, g, idxA.length);
              assert.deepEqual(a.readU16(g, idxA.length), Uint16Array.from(idxA, (p) => base[p]), `${gather} ${NAME[dt]}`);
              for (let round = 0; round < 5; round++) {
                k[fuse](w, ia, sa, va, 0.7, idxA.length, dt);
                k[scatter](w, ia, sa, idxA.length);
                k[fuse](w, ib, sb, vb, -1.3, idxB.length, dt);
                k[scatter](w, ib, sb, idxB.length);
              }
              assert.deepEqual(a.readU16(w, m), base, `${fuse} + ${scatter} ${NAME[dt]} n=${n}: base restored`);
            });
          }
        }
      }
    });

    test("gather_scatter_add = half(f32(w) + f32(v * scale)) per position, the saved values = the base (SIMD and scalar)", () => {
      const r = rng(8);
      for (const dt of DTYPES) {
        for (const n of [0, 1, 2, 3, 4, 5, 9, 64, 1000]) {
          const m = 3 * n + 7;
          const base = halfWeights(m, 80 + n, dt, true);
          const idx = sortedPositions(r, n, m);
          const v = randF32(n, 81 + n, 0.5);
          if (n > 4) v[4] = 1e30; // overflows the format: inf
          for (const scale of [1, 0.37, -2.5]) {
            const ref = fuseAll(base, idx, v, scale, dt);
            for (const kernel of ["h16_gather_scatter_add", "h16_gather_scatter_add_scalar"] as const) {
              withArena(rt, (a) => {
                const w = a.u16(base);
                const s = a.u16(n);
                k[kernel](w, a.i32(idx), s, a.f32(v), scale, n, dt);
                assertSameHalf(a.readU16(w, m), ref.w, dt, `${kernel} ${NAME[dt]} n=${n} scale=${scale}: weight`);
                assert.deepEqual(a.readU16(s, n), ref.saved, `${kernel} ${NAME[dt]} n=${n}: saved`);
              });
            }
          }
        }
      }
    });

    test(`gather_scatter_add reproduces PEFT's merge on a bf16 / f16 base (torch ${fixture.torch}: weight += sparse_coo(idx, v * scale))`, () => {
      for (const c of fixture.merge) {
        const dt: Dtype = c.dtype === "bf16" ? BF16 : F16;
        const n = c.idx.length;
        const values = new Float32Array(Uint32Array.from(c.values).buffer);
        // the JS rule and the kernels agree with torch
        const ref = fuseAll(Uint16Array.from(c.base), Int32Array.from(c.idx), values, c.scale, dt);
        assert.deepEqual(ref.w, Uint16Array.from(c.merged), `JS rule vs torch (${c.dtype})`);
        for (const kernel of ["h16_gather_scatter_add", "h16_gather_scatter_add_scalar"] as const) {
          withArena(rt, (a) => {
            const w = a.u16(c.base);
            k[kernel](w, a.i32(c.idx), a.u16(n), a.f32(values), c.scale, n, dt);
            assert.deepEqual(a.readU16(w, c.base.length), Uint16Array.from(c.merged), `${kernel} vs torch (${c.dtype})`);
          });
        }
      }
    });

    test("switch_merge = scatter_set(A) + gather(B) + fuse(B), bit for bit (independent, identical, nested, disjoint, empty sets; chunks)", () => {
      const r = rng(2024);
      const cases: { nA: number; nB: number; m: number; mode: "any" | "same" | "nested" | "disjoint" }[] = [];
      for (let n = 0; n <= 40; n += 3) {
        const nB = Math.floor(r() * 45);
        cases.push({ nA: n, nB, m: 2 * (n + nB) + 1 + Math.floor(r() * 50), mode: "any" });
        cases.push({ nA: n, nB: n, m: n + 3, mode: "same" });
        cases.push({ nA: n, nB: Math.floor(n / 2), m: 3 * n + 4, mode: "nested" });
        cases.push({ nA: n, nB, m: n + nB + 5, mode: "disjoint" });
      }
      for (const n of [511, 512, 513, 1025]) cases.push({ nA: n, nB: 1100 - n + 60, m: 5000, mode: "any" });
      cases.push({ nA: 20000, nB: 21000, m: 1_000_000, mode: "any" }); // sparse: A's lines touched a chunk ahead
      cases.push({ nA: 5, nB: 20000, m: 200_000, mode: "any" });
      for (const dt of DTYPES) {
        for (const c of cases) {
          const idxA = sortedPositions(r, c.nA, c.m);
          const inA = new Set(idxA);
          const idxB = c.mode === "same" ? idxA.slice() : sortedPositions(r, c.nB, c.m, c.mode === "nested" ? (p) => inA.has(p) : c.mode === "disjoint" ? (p) => !inA.has(p) : undefined);
          const base = halfWeights(c.m, c.m + c.nA, dt, true);
          const vA = randF32(idxA.length, 3, 2);
          const vB = randF32(idxB.length, 4, 2);
          const fusedA = fuseAll(base, idxA, vA, 0.8, dt);
          const want = fuseAll(base, idxB, vB, -0.6, dt); // A restored = the base, then B gathered and fused
          const what = `${NAME[dt]} nA ${c.nA}, nB ${idxB.length}, m ${c.m}, ${c.mode}`;
          for (const kernel of ["h16_switch_merge", "h16_switch_merge_scalar"] as const) {
            withArena(rt, (a) => {
              const w = a.u16(fusedA.w);
              const sb = a.u16(idxB.length);
              k[kernel](w, a.i32(idxA), a.u16(fusedA.saved), idxA.length, a.i32(idxB), sb, a.f32(vB), -0.6, idxB.length, dt);
              assertSameHalf(a.readU16(w, c.m), want.w, dt, `${kernel} weight: ${what}`);
              assert.deepEqual(a.readU16(sb, idxB.length), want.saved, `${kernel} saved: ${what}`);
            });
          }
        }
      }
    });
  });
}

forEachVariant("half-precision kernels", import.meta.url, suite, { minPassed: 12, timeoutMs: 300000 });
