// scatter / gather (the fused switch): bit-identical to the scalar twins (product rounded to f32, then one f32
// add), on counts around the 8x unroll, empty, and random duplicate-free sorted positions.
import {
  f32_scatter_add, f32_scatter_add_scalar, f32_scatter_sub, f32_scatter_sub_scalar, f32_scatter_set, f32_scatter_set_scalar,
  f32_scatter_set_add, f32_scatter_set_add_scalar, f32_gather, f32_gather_scalar,
} from "../scatter";
import { allocRandom, allocCopy, allocZero, bitDiffs, Positions } from "./helpers";

const COUNTS: i32[] = [0, 1, 3, 4, 5, 7, 8, 9, 17, 64, 65, 1000];
const W: i32 = 4099;

describe("scatter / gather", () => {
  it("are bit-identical to their scalar twins", () => {
    for (let ic = 0; ic < COUNTS.length; ic++) {
      const nnz = COUNTS[ic];
      const pos = new Positions(1, W, nnz, 17 + ic);
      const w0 = allocRandom(W, 1 + ic), v = allocRandom(nnz, 2 + ic, 3), base = allocRandom(nnz, 3 + ic);
      let a = allocCopy(w0, W), b = allocCopy(w0, W);
      f32_scatter_add(a, pos.flat, v, -1.37, nnz);
      f32_scatter_add_scalar(b, pos.flat, v, -1.37, nnz);
      expect<i32>(bitDiffs(a, b, W)).toBe(0, "scatter_add");
      f32_scatter_sub(a, pos.flat, v, 0.3, nnz);
      f32_scatter_sub_scalar(b, pos.flat, v, 0.3, nnz);
      expect<i32>(bitDiffs(a, b, W)).toBe(0, "scatter_sub");
      f32_scatter_set(a, pos.flat, base, nnz);
      f32_scatter_set_scalar(b, pos.flat, base, nnz);
      expect<i32>(bitDiffs(a, b, W)).toBe(0, "scatter_set");
      f32_scatter_set_add(a, pos.flat, base, v, 2.5, nnz);
      f32_scatter_set_add_scalar(b, pos.flat, base, v, 2.5, nnz);
      expect<i32>(bitDiffs(a, b, W)).toBe(0, "scatter_set_add");
      const o1 = allocZero(nnz), o2 = allocZero(nnz);
      f32_gather(a, pos.flat, o1, nnz);
      f32_gather_scalar(b, pos.flat, o2, nnz);
      expect<i32>(bitDiffs(o1, o2, nnz)).toBe(0, "gather");
      heap.free(a);
      heap.free(b);
      heap.free(o1);
      heap.free(o2);
      heap.free(w0);
      heap.free(v);
      heap.free(base);
      pos.free();
    }
  });

  it("add then sub with the same values restores nothing exactly, set restores the base exactly", () => {
    const nnz = 33;
    const pos = new Positions(7, 19, nnz, 5);
    const w0 = allocRandom(7 * 19, 6), w = allocCopy(w0, 7 * 19), saved = allocZero(nnz), v = allocRandom(nnz, 7);
    f32_gather(w, pos.flat, saved, nnz);
    f32_scatter_add(w, pos.flat, v, 0.1, nnz);
    f32_scatter_set(w, pos.flat, saved, nnz);
    expect<i32>(bitDiffs(w, w0, 7 * 19)).toBe(0, "gather / scatter_add / scatter_set round trip");
    // a known value: w[idx] = base + v * scale
    f32_scatter_set_add(w, pos.flat, saved, v, 2, nnz);
    const j = 5;
    const p = load<i32>(pos.flat + (<usize>j << 2));
    expect<f32>(load<f32>(w + (<usize>p << 2))).toBe(load<f32>(saved + (<usize>j << 2)) + load<f32>(v + (<usize>j << 2)) * 2);
    heap.free(w0);
    heap.free(w);
    heap.free(saved);
    heap.free(v);
    pos.free();
  });
});
