// Softmax family: SIMD forms bit-identical to the scalar twins (f64 sums kept sequential), shapes around the
// vector width; rows of softmax sum to 1.
import {
  f32_softmax_rows, f32_softmax_rows_scalar, f32_log_softmax_rows, f32_log_softmax_rows_scalar, f32_softmax_backward_rows,
  f32_softmax_backward_rows_scalar, f32_log_softmax_backward_rows, f32_log_softmax_backward_rows_scalar,
} from "../softmax";
import { allocRandom, allocZero, bitDiffs } from "./helpers";

describe("softmax rows", () => {
  it("SIMD forms are bit-identical to the scalar twins", () => {
    const shapes: i32[] = [1, 1, 2, 3, 3, 4, 5, 5, 4, 17, 7, 64, 2, 65, 3, 1000];
    for (let i = 0; i < shapes.length; i += 2) {
      const rows = shapes[i], cols = shapes[i + 1], n = rows * cols;
      const x = allocRandom(n, 1 + i, 8), gy = allocRandom(n, 2 + i), y1 = allocZero(n), y2 = allocZero(n), g1 = allocZero(n), g2 = allocZero(n);
      f32_softmax_rows(x, y1, rows, cols);
      f32_softmax_rows_scalar(x, y2, rows, cols);
      expect<i32>(bitDiffs(y1, y2, n)).toBe(0, "softmax");
      f32_softmax_backward_rows(y2, gy, g1, rows, cols);
      f32_softmax_backward_rows_scalar(y2, gy, g2, rows, cols);
      expect<i32>(bitDiffs(g1, g2, n)).toBe(0, "softmax'");
      for (let r = 0; r < rows; r++) {
        let s: f64 = 0;
        for (let c = 0; c < cols; c++) s += <f64>load<f32>(y1 + (<usize>(r * cols + c) << 2));
        expect<bool>(abs(s - 1.0) < 1e-5).toBe(true, "rows sum to 1");
      }
      f32_log_softmax_rows(x, y1, rows, cols);
      f32_log_softmax_rows_scalar(x, y2, rows, cols);
      expect<i32>(bitDiffs(y1, y2, n)).toBe(0, "log_softmax");
      f32_log_softmax_backward_rows(y2, gy, g1, rows, cols);
      f32_log_softmax_backward_rows_scalar(y2, gy, g2, rows, cols);
      expect<i32>(bitDiffs(g1, g2, n)).toBe(0, "log_softmax'");
      heap.free(x);
      heap.free(gy);
      heap.free(y1);
      heap.free(y2);
      heap.free(g1);
      heap.free(g2);
    }
  });

  it("softmax of equal logits is uniform; log_softmax of [0, 0] is -ln 2", () => {
    const x = heap.alloc(20), y = heap.alloc(20);
    for (let i = 0; i < 5; i++) store<f32>(x + (<usize>i << 2), 3.5);
    f32_softmax_rows(x, y, 1, 5);
    for (let i = 0; i < 5; i++) expect<f32>(load<f32>(y + (<usize>i << 2))).toBe(<f32>0.2);
    f32_log_softmax_rows(x, y, 2, 2);
    for (let i = 0; i < 4; i++) expect<f32>(load<f32>(y + (<usize>i << 2))).toBe(-<f32>Math.LN2);
    heap.free(x);
    heap.free(y);
  });
});
