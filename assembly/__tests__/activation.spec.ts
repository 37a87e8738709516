// Activations: every SIMD kernel bit-identical to its scalar twin (the f64x2 math performs the scalar math's
// operations in the same order), on lengths around the vector width and special values; plus known values.
import {
  f32_relu, f32_relu_scalar, f32_relu_backward, f32_relu_backward_scalar, f32_gelu, f32_gelu_scalar, f32_gelu_backward,
  f32_gelu_backward_scalar, f32_silu, f32_silu_scalar, f32_silu_backward, f32_silu_backward_scalar, f32_tanh, f32_tanh_scalar,
  f32_tanh_backward, f32_tanh_backward_scalar,
} from "../activation";
import { exp64, exp64x2, expm1pos, expm1posx2, phi64, phi64x2 } from "../util/math";
import { allocRandom, allocZero, bitDiffs, srand, rnd } from "./helpers";

const LENGTHS: i32[] = [0, 1, 3, 4, 5, 17, 64, 65, 1000];
const SPECIAL: f32[] = [
  0, -0, 1e-40, -1e-40, 1e-30, -1e-30, 0.5, -0.5, 1.1932427, -1.1932427, 1.7677670, -1.7677670, 4.0406102, -4.0406102, -8, -12,
  -13.5, -14, -20, -40, 40, 88, -88, 100, -100, 1e30, -1e30, Infinity, -Infinity, NaN, 3.4e38, -3.4e38,
];

function input(n: i32, seed: u32): usize {
  const x = allocRandom(n, seed, 6);
  for (let i = 0; i < SPECIAL.length && i < n; i++) store<f32>(x + (<usize>((i * 7) % n) << 2), SPECIAL[i]);
  return x;
}

describe("activations", () => {
  it("SIMD forms are bit-identical to the scalar twins", () => {
    for (let il = 0; il < LENGTHS.length; il++) {
      const n = LENGTHS[il];
      const x = input(n, 10 + il), gy = allocRandom(n, 20 + il), y1 = allocZero(n), y2 = allocZero(n);
      f32_relu(x, y1, n);
      f32_relu_scalar(x, y2, n);
      expect<i32>(bitDiffs(y1, y2, n)).toBe(0, "relu");
      f32_relu_backward(x, gy, y1, n);
      f32_relu_backward_scalar(x, gy, y2, n);
      expect<i32>(bitDiffs(y1, y2, n)).toBe(0, "relu'");
      f32_gelu(x, y1, n);
      f32_gelu_scalar(x, y2, n);
      expect<i32>(bitDiffs(y1, y2, n)).toBe(0, "gelu");
      f32_gelu_backward(x, gy, y1, n);
      f32_gelu_backward_scalar(x, gy, y2, n);
      expect<i32>(bitDiffs(y1, y2, n)).toBe(0, "gelu'");
      f32_silu(x, y1, n);
      f32_silu_scalar(x, y2, n);
      expect<i32>(bitDiffs(y1, y2, n)).toBe(0, "silu");
      f32_silu_backward(x, gy, y1, n);
      f32_silu_backward_scalar(x, gy, y2, n);
      expect<i32>(bitDiffs(y1, y2, n)).toBe(0, "silu'");
      f32_tanh(x, y1, n);
      f32_tanh_scalar(x, y2, n);
      expect<i32>(bitDiffs(y1, y2, n)).toBe(0, "tanh");
      f32_tanh_backward(x, gy, y1, n);
      f32_tanh_backward_scalar(x, gy, y2, n);
      expect<i32>(bitDiffs(y1, y2, n)).toBe(0, "tanh'");
      heap.free(x);
      heap.free(gy);
      heap.free(y1);
      heap.free(y2);
    }
  });

  it("gives known values (correctly rounded f32 of the exact functions)", () => {
    const x = heap.alloc(32), y = heap.alloc(32);
    const xs: f32[] = [1, -1, -10, 0, 2.5, -5, -0, 0.25];
    for (let i = 0; i < 8; i++) store<f32>(x + (<usize>i << 2), xs[i]);
    f32_gelu(x, y, 8);
    // x Phi(x) evaluated in 50-digit arithmetic (mpmath), rounded to f32
    const want: f32[] = [<f32>0.8413447737693787, <f32>-0.15865525603294373, <f32>-7.619852977043458e-23, 0, <f32>2.48447585105896, <f32>-1.433257807548216e-6, 0, <f32>0.14967657625675201];
    for (let i = 0; i < 8; i++) expect<f32>(load<f32>(y + (<usize>i << 2))).toBe(want[i]);
    f32_relu(x, y, 8);
    expect<f32>(load<f32>(y)).toBe(1);
    expect<f32>(load<f32>(y, 4)).toBe(0);
    f32_silu(x, y, 1);
    expect<f32>(load<f32>(y)).toBe(<f32>0.7310585975646973);
    f32_tanh(x + 28, y, 1);
    expect<f32>(load<f32>(y)).toBe(<f32>0.24491865932941437);
    heap.free(x);
    heap.free(y);
  });

  it("the f64x2 math is bit-identical to the scalar math in f64 (not only after rounding to f32)", () => {
    srand(7);
    let diffs = 0;
    for (let i = 0; i < 3000; i++) {
      const range: f64 = i < 1000 ? 3 : i < 2000 ? 30 : 800;
      const a = <f64>rnd() * range, b = <f64>rnd() * range;
      const v = f64x2.replace_lane(f64x2.splat(a), 1, b);
      const e = exp64x2(v), p = phi64x2(v);
      if (reinterpret<u64>(f64x2.extract_lane(e, 0)) != reinterpret<u64>(exp64(a))) diffs++;
      if (reinterpret<u64>(f64x2.extract_lane(e, 1)) != reinterpret<u64>(exp64(b))) diffs++;
      if (reinterpret<u64>(f64x2.extract_lane(p, 0)) != reinterpret<u64>(phi64(a))) diffs++;
      if (reinterpret<u64>(f64x2.extract_lane(p, 1)) != reinterpret<u64>(phi64(b))) diffs++;
      const m = expm1posx2(f64x2.abs(v));
      if (reinterpret<u64>(f64x2.extract_lane(m, 0)) != reinterpret<u64>(expm1pos(abs(a)))) diffs++;
      if (reinterpret<u64>(f64x2.extract_lane(m, 1)) != reinterpret<u64>(expm1pos(abs(b)))) diffs++;
    }
    expect<i32>(diffs).toBe(0);
  });

  it("exp64 agrees with Math.exp to 2 f64 ulps; Phi(x) + Phi(-x) = 1", () => {
    srand(99);
    let worst: f64 = 0;
    for (let i = 0; i < 2000; i++) {
      const v = <f64>rnd() * 700;
      const a = exp64(v), b = Math.exp(v);
      worst = max(worst, abs(a - b) / b);
    }
    expect<bool>(worst < 4.5e-16).toBe(true, "exp64 relative error");
    expect<f64>(exp64(0)).toBe(1);
    expect<f64>(exp64(-800)).toBe(0);
    expect<f64>(exp64(800)).toBe(Infinity);
    let sym: f64 = 0;
    for (let i = 0; i < 2000; i++) {
      const v = <f64>rnd() * 8;
      sym = max(sym, abs(phi64(v) + phi64(-v) - 1.0));
    }
    expect<bool>(sym < 4e-16).toBe(true, "Phi symmetry");
  });
});
