// Low-rank fuse W += s * B A: bit-identical to the scalar twin (sequential over the rank, then one multiply
// and one add) on edge shapes and ranks 0..64.
import { f32_lowrank_fuse, f32_lowrank_fuse_scalar } from "../lowrank";
import { allocRandom, allocCopy, bitDiffs } from "./helpers";

describe("f32_lowrank_fuse", () => {
  it("is bit-identical to the scalar twin", () => {
    const sizes: i32[] = [1, 3, 4, 5, 8, 17, 64, 65];
    const ranks: i32[] = [0, 1, 2, 7, 32, 64];
    let seed: u32 = 1;
    for (let a = 0; a < sizes.length; a++) {
      for (let b = 0; b < sizes.length; b++) {
        const N = sizes[a], K = sizes[b], r = ranks[(a + b) % ranks.length];
        const bm = allocRandom(N * r, seed), am = allocRandom(r * K, seed + 1), w0 = allocRandom(N * K, seed + 2);
        const w1 = allocCopy(w0, N * K), w2 = allocCopy(w0, N * K);
        f32_lowrank_fuse(w1, bm, am, 0.7, N, K, r);
        f32_lowrank_fuse_scalar(w2, bm, am, 0.7, N, K, r);
        expect<i32>(bitDiffs(w1, w2, N * K)).toBe(0);
        heap.free(bm);
        heap.free(am);
        heap.free(w0);
        heap.free(w1);
        heap.free(w2);
        seed += 3;
      }
    }
  });

  it("adds s * B A (a known case)", () => {
    // B = [[1], [2]], A = [[3, 4, 5]], s = 0.5, W = 0  ->  [[1.5, 2, 2.5], [3, 4, 5]]
    const bm = heap.alloc(8), am = heap.alloc(12), w = heap.alloc(24);
    store<f32>(bm, 1);
    store<f32>(bm, 2, 4);
    store<f32>(am, 3);
    store<f32>(am, 4, 4);
    store<f32>(am, 5, 8);
    memory.fill(w, 0, 24);
    f32_lowrank_fuse(w, bm, am, 0.5, 2, 3, 1);
    const want: f32[] = [1.5, 2, 2.5, 3, 4, 5];
    for (let i = 0; i < 6; i++) expect<f32>(load<f32>(w + (<usize>i << 2))).toBe(want[i]);
    heap.free(bm);
    heap.free(am);
    heap.free(w);
  });
});
