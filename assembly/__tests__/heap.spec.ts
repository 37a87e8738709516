// Heap: 16-byte aligned blocks (aligned f32x4 access), reuse after free, the memory size export.
import { alloc, free, memory_bytes } from "../heap";

describe("heap", () => {
  it("hands out 16-byte aligned, non-overlapping blocks and reuses freed ones", () => {
    const a = alloc(100), b = alloc(4), c = alloc(70000);
    expect<usize>(a & 15).toBe(0);
    expect<usize>(b & 15).toBe(0);
    expect<usize>(c & 15).toBe(0);
    expect<bool>(b >= a + 100 || a >= b + 4).toBe(true);
    memory.fill(a, 0xab, 100);
    memory.fill(b, 0xcd, 4);
    expect<u8>(load<u8>(a + 99)).toBe(0xab);
    free(b);
    const d = alloc(4);
    expect<usize>(d).toBe(b);
    free(a);
    free(c);
    free(d);
    expect<usize>(memory_bytes()).toBe(<usize>memory.size() << 16);
  });
});
