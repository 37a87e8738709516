// Vector helpers: bit-identical to the scalar twins (sum_sq within 4 n 2^-53 relative: 4 partial sums), the
// first non-finite index found at every position class, transposes of ragged shapes.
import {
  f32_fill, f32_fill_scalar, f32_copy, f32_axpy, f32_axpy_scalar, f32_scale, f32_scale_scalar, f32_add, f32_add_scalar, f32_sum_sq,
  f32_sum_sq_scalar, f32_find_nonfinite, f32_find_nonfinite_scalar, f32_transpose, f32_transpose_scalar,
} from "../vector";
import { allocRandom, allocCopy, allocZero, bitDiffs } from "./helpers";

const LENGTHS: i32[] = [0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 64, 65, 1001];

describe("vector helpers", () => {
  it("fill, copy, axpy, scale, add are bit-identical to the twins", () => {
    for (let il = 0; il < LENGTHS.length; il++) {
      const n = LENGTHS[il];
      const a = allocRandom(n, 1 + il), b = allocRandom(n, 2 + il), y1 = allocCopy(b, n), y2 = allocCopy(b, n);
      f32_axpy(0.3, a, y1, n);
      f32_axpy_scalar(0.3, a, y2, n);
      expect<i32>(bitDiffs(y1, y2, n)).toBe(0, "axpy");
      f32_scale(y1, -1.7, n);
      f32_scale_scalar(y2, -1.7, n);
      expect<i32>(bitDiffs(y1, y2, n)).toBe(0, "scale");
      f32_add(a, b, y1, n);
      f32_add_scalar(a, b, y2, n);
      expect<i32>(bitDiffs(y1, y2, n)).toBe(0, "add");
      f32_fill(y1, 2.5, n);
      f32_fill_scalar(y2, 2.5, n);
      expect<i32>(bitDiffs(y1, y2, n)).toBe(0, "fill");
      f32_copy(a, y1, n);
      expect<i32>(bitDiffs(y1, a, n)).toBe(0, "copy");
      const s1 = f32_sum_sq(a, n), s2 = f32_sum_sq_scalar(a, n);
      expect<bool>(abs(s1 - s2) <= 4.0 * <f64>n * 1.1102230246251565e-16 * s2).toBe(true, "sum_sq");
      heap.free(a);
      heap.free(b);
      heap.free(y1);
      heap.free(y2);
    }
  });

  it("find_nonfinite returns the first NaN / +-Inf index, or -1", () => {
    const specials: f32[] = [NaN, Infinity, -Infinity];
    for (let il = 0; il < LENGTHS.length; il++) {
      const n = LENGTHS[il];
      const a = allocRandom(n, 7 + il);
      expect<i32>(f32_find_nonfinite(a, n)).toBe(-1);
      for (let p = 0; p < n; p += max(1, n / 5)) {
        const c = allocCopy(a, n);
        store<f32>(c + (<usize>p << 2), specials[p % 3]);
        if (p + 3 < n) store<f32>(c + (<usize>(p + 3) << 2), NaN);
        expect<i32>(f32_find_nonfinite(c, n)).toBe(p);
        expect<i32>(f32_find_nonfinite_scalar(c, n)).toBe(p);
        heap.free(c);
      }
      heap.free(a);
    }
  });

  it("transpose is bit-identical to the twin on ragged shapes and transposes", () => {
    const shapes: i32[] = [1, 1, 3, 5, 4, 4, 5, 17, 33, 65, 64, 100, 100, 37, 1, 9];
    for (let i = 0; i < shapes.length; i += 2) {
      const r = shapes[i], c = shapes[i + 1];
      const s = allocRandom(r * c, 3 + i), d1 = allocZero(r * c), d2 = allocZero(r * c);
      f32_transpose(s, d1, r, c);
      f32_transpose_scalar(s, d2, r, c);
      expect<i32>(bitDiffs(d1, d2, r * c)).toBe(0);
      expect<f32>(load<f32>(d1 + (<usize>((c - 1) * r) << 2))).toBe(load<f32>(s + (<usize>(c - 1) << 2)));
      heap.free(s);
      heap.free(d1);
      heap.free(d2);
    }
  });
});
