// Optimizers: SIMD forms bit-identical to the scalar twins for every flag combination; a known SGD step.
import { f32_sgd, f32_sgd_scalar, f32_adamw, f32_adamw_scalar } from "../optim";
import { allocRandom, allocCopy, bitDiffs } from "./helpers";

describe("optimizers", () => {
  it("SGD (momentum, dampening, weight decay, nesterov, first step) and AdamW match their twins exactly", () => {
    const lengths: i32[] = [0, 1, 3, 4, 5, 17, 64, 65, 1001];
    const moms: f32[] = [0, 0.9, 0.9, 0.9, 0.5];
    const damps: f32[] = [0, 0, 0.1, 0, 0];
    const wds: f32[] = [0, 0.01, 0.01, 0, 0.1];
    const nests: i32[] = [0, 0, 0, 1, 1];
    for (let il = 0; il < lengths.length; il++) {
      const n = lengths[il];
      const p0 = allocRandom(n, 1 + il), g = allocRandom(n, 2 + il), b0 = allocRandom(n, 3 + il);
      for (let c = 0; c < moms.length; c++) {
        for (let first = 0; first < 2; first++) {
          const p1 = allocCopy(p0, n), p2 = allocCopy(p0, n), q1 = allocCopy(b0, n), q2 = allocCopy(b0, n);
          f32_sgd(p1, g, q1, n, 0.1, moms[c], damps[c], wds[c], nests[c], first);
          f32_sgd_scalar(p2, g, q2, n, 0.1, moms[c], damps[c], wds[c], nests[c], first);
          expect<i32>(bitDiffs(p1, p2, n)).toBe(0, "sgd p");
          expect<i32>(bitDiffs(q1, q2, n)).toBe(0, "sgd buf");
          heap.free(p1);
          heap.free(p2);
          heap.free(q1);
          heap.free(q2);
        }
      }
      const m0 = allocRandom(n, 4 + il), v0 = allocRandom(n, 5 + il);
      for (let i = 0; i < n; i++) store<f32>(v0 + (<usize>i << 2), abs<f32>(load<f32>(v0 + (<usize>i << 2))));
      const p1 = allocCopy(p0, n), p2 = allocCopy(p0, n), m1 = allocCopy(m0, n), m2 = allocCopy(m0, n), v1 = allocCopy(v0, n), v2 = allocCopy(v0, n);
      f32_adamw(p1, g, m1, v1, n, 1e-3, 0.9, 0.999, 1e-8, 0.01, 0.1, 0.002);
      f32_adamw_scalar(p2, g, m2, v2, n, 1e-3, 0.9, 0.999, 1e-8, 0.01, 0.1, 0.002);
      expect<i32>(bitDiffs(p1, p2, n)).toBe(0, "adamw p");
      expect<i32>(bitDiffs(m1, m2, n)).toBe(0, "adamw m");
      expect<i32>(bitDiffs(v1, v2, n)).toBe(0, "adamw v");
      for (let i = 0; i < 8; i++) {
        const bufs: usize[] = [p0, g, b0, m0, v0, p1, p2, m1];
        heap.free(bufs[i]);
      }
      heap.free(m2);
      heap.free(v1);
      heap.free(v2);
    }
  });

  it("takes a known SGD step with momentum", () => {
    const p = heap.alloc(16), g = heap.alloc(16), b = heap.alloc(16);
    for (let i = 0; i < 4; i++) {
      store<f32>(p + (<usize>i << 2), 1);
      store<f32>(g + (<usize>i << 2), 0.5);
      store<f32>(b + (<usize>i << 2), 2);
    }
    // buf = 0.9 * 2 + 0.5 = 2.3; p = 1 - 0.1 * 2.3 = 0.77
    f32_sgd(p, g, b, 4, 0.1, 0.9, 0, 0, 0, 0);
    for (let i = 0; i < 4; i++) {
      expect<f32>(load<f32>(b + (<usize>i << 2))).toBe(<f32>0.9 * 2 + 0.5);
      expect<f32>(load<f32>(p + (<usize>i << 2))).toBe(1 - <f32>0.1 * (<f32>0.9 * 2 + 0.5));
    }
    heap.free(p);
    heap.free(g);
    heap.free(b);
  });
});
