import { f32_scatter_add, f32_scatter_add_scalar, f32_gather } from "../scatter";

describe("scatter", () => {
  it("scatter_add matches the scalar twin", () => {
    const n = 17;
    const w = heap.alloc(64 * 4);
    const w2 = heap.alloc(64 * 4);
    const idx = heap.alloc(n * 4);
    const v = heap.alloc(n * 4);
    for (let i = 0; i < 64; i++) { store<f32>(w + i * 4, <f32>i * 0.5); store<f32>(w2 + i * 4, <f32>i * 0.5); }
    for (let j = 0; j < n; j++) { store<i32>(idx + j * 4, j * 3); store<f32>(v + j * 4, <f32>j - 4.25); }
    f32_scatter_add(w, idx, v, 1.5, n);
    f32_scatter_add_scalar(w2, idx, v, 1.5, n);
    for (let i = 0; i < 64; i++) expect<f32>(load<f32>(w + i * 4)).toBe(load<f32>(w2 + i * 4));
    expect<f32>(load<f32>(w + 3 * 4)).toBe(1.5 + (1.0 - 4.25) * 1.5);
    f32_gather(w, idx, v, n);
    expect<f32>(load<f32>(v + 4)).toBe(load<f32>(w + 12));
    heap.free(w); heap.free(w2); heap.free(idx); heap.free(v);
  });
});
