// Single-pass switching kernels (assembly/switch.ts) against their scalar twins and against the three-pass
// sequence they replace (scatter_set of A's saved values; gather of B; scatter_add of B), bit for bit, on random
// sorted unique positions: independent, identical, nested and disjoint sets, empty sets, nnz 1..65 and sizes
// around the 512-position chunk of the kernel.
import { f32_switch_merge, f32_switch_merge_scalar, f32_gather_scatter_add, f32_gather_scatter_add_scalar } from "../switch";
import { f32_scatter_set_scalar, f32_gather_scalar, f32_scatter_add_scalar } from "../scatter";

let seed: u32 = 0x9e3779b9;
function nextU32(): u32 {
  seed ^= seed << 13;
  seed ^= seed >> 17;
  seed ^= seed << 5;
  return seed;
}
/** Uniform in [0, n). */
function below(n: i32): i32 {
  return <i32>(<u64>nextU32() * <u64>n >> 32);
}
/** A float in about [-4, 4) with a random fraction (no exact zeros: products and sums round). */
function randF32(): f32 {
  return <f32>(<f64>below(1 << 24) / <f64>(1 << 21) - 4.0) + <f32>0.000123;
}

/**
 * `n` sorted unique positions in [0, m) written at `out`, chosen by selection sampling (Knuth's algorithm S).
 * mode 0: any position; 1: only positions in `other` (nested); 2: only positions not in `other` (disjoint).
 */
function choose(out: usize, n: i32, m: i32, mode: i32, other: usize, nOther: i32): void {
  const inOther = heap.alloc(<usize>max(m, 1));
  memory.fill(inOther, 0, <usize>m);
  for (let j = 0; j < nOther; j++) store<u8>(inOther + <usize>load<i32>(other + (<usize>j << 2)), 1);
  let avail = 0;
  for (let p = 0; p < m; p++) if (allowed(load<u8>(inOther + <usize>p), mode)) avail++;
  assert(avail >= n, "not enough positions for the case");
  let need = n;
  let k = 0;
  for (let p = 0; p < m && need > 0; p++) {
    if (!allowed(load<u8>(inOther + <usize>p), mode)) continue;
    if (below(avail) < need) {
      store<i32>(out + (<usize>k << 2), p);
      k++;
      need--;
    }
    avail--;
  }
  assert(k == n, "selection sampling picked the wrong count");
  heap.free(inOther);
}
function allowed(mark: u8, mode: i32): bool {
  return mode == 0 || (mode == 1 ? mark != 0 : mark == 0);
}

function fillRandom(p: usize, n: i32): void {
  for (let i = 0; i < n; i++) store<f32>(p + (<usize>i << 2), randF32());
}
function copyF32(src: usize, dst: usize, n: i32): void {
  memory.copy(dst, src, <usize>n << 2);
}
function sameBits(a: usize, b: usize, n: i32): bool {
  for (let i = 0; i < n; i++) if (load<u32>(a + (<usize>i << 2)) != load<u32>(b + (<usize>i << 2))) return false;
  return true;
}

/**
 * One case: weight of m floats with A (nA positions) fused at coefficient cA, then switch to B (nB positions,
 * coefficient cB) with the three passes, the scalar merge walk and the kernel; all three must agree bit for bit
 * on the weight and on B's saved values; restoring B must give back the original weight.
 */
function checkSwitch(nA: i32, nB: i32, m: i32, mode: i32): void {
  const idxA = heap.alloc(<usize>max(nA, 1) << 2);
  const idxB = heap.alloc(<usize>max(nB, 1) << 2);
  const vA = heap.alloc(<usize>max(nA, 1) << 2);
  const vB = heap.alloc(<usize>max(nB, 1) << 2);
  const savedA = heap.alloc(<usize>max(nA, 1) << 2);
  const base = heap.alloc(<usize>m << 2);
  const w0 = heap.alloc(<usize>m << 2);
  const w1 = heap.alloc(<usize>m << 2);
  const w2 = heap.alloc(<usize>m << 2);
  const s0 = heap.alloc(<usize>max(nB, 1) << 2);
  const s1 = heap.alloc(<usize>max(nB, 1) << 2);
  const s2 = heap.alloc(<usize>max(nB, 1) << 2);
  choose(idxA, nA, m, 0, 0, 0);
  choose(idxB, nB, m, mode, idxA, nA);
  fillRandom(vA, nA);
  fillRandom(vB, nB);
  fillRandom(base, m);
  const cA = randF32();
  const cB = randF32();
  // fuse A (the reference way), three copies
  copyF32(base, w0, m);
  f32_gather_scalar(w0, idxA, savedA, nA);
  f32_scatter_add_scalar(w0, idxA, vA, cA, nA);
  copyF32(w0, w1, m);
  copyF32(w0, w2, m);
  // three passes
  f32_scatter_set_scalar(w0, idxA, savedA, nA);
  f32_gather_scalar(w0, idxB, s0, nB);
  f32_scatter_add_scalar(w0, idxB, vB, cB, nB);
  // merge walk (scalar twin) and kernel
  f32_switch_merge_scalar(w1, idxA, savedA, nA, idxB, s1, vB, cB, nB);
  f32_switch_merge(w2, idxA, savedA, nA, idxB, s2, vB, cB, nB);
  expect<bool>(sameBits(w0, w1, m)).toBe(true, "scalar merge walk = three passes (weight)");
  expect<bool>(sameBits(w0, w2, m)).toBe(true, "kernel = three passes (weight)");
  expect<bool>(sameBits(s0, s1, nB)).toBe(true, "scalar merge walk = three passes (saved)");
  expect<bool>(sameBits(s0, s2, nB)).toBe(true, "kernel = three passes (saved)");
  // B's saved values are the base: restoring them gives the base back exactly
  f32_scatter_set_scalar(w2, idxB, s2, nB);
  expect<bool>(sameBits(w2, base, m)).toBe(true, "restore after the switch = base");
  // and back: B -> A with the kernel against the scalar twin
  f32_scatter_add_scalar(w2, idxB, vB, cB, nB);
  copyF32(w2, w1, m);
  f32_switch_merge(w2, idxB, s2, nB, idxA, savedA, vA, cA, nA);
  const sA = heap.alloc(<usize>max(nA, 1) << 2);
  f32_switch_merge_scalar(w1, idxB, s1, nB, idxA, sA, vA, cA, nA);
  expect<bool>(sameBits(w1, w2, m)).toBe(true, "B -> A: kernel = scalar twin");
  expect<bool>(sameBits(savedA, sA, nA)).toBe(true, "B -> A: saved values = scalar twin");
  heap.free(sA);
  heap.free(idxA); heap.free(idxB); heap.free(vA); heap.free(vB); heap.free(savedA); heap.free(base);
  heap.free(w0); heap.free(w1); heap.free(w2); heap.free(s0); heap.free(s1); heap.free(s2);
}

/** gather_scatter_add against its twin and against gather + scatter_add, bit for bit. */
function checkGatherAdd(n: i32, m: i32): void {
  const idx = heap.alloc(<usize>max(n, 1) << 2);
  const v = heap.alloc(<usize>max(n, 1) << 2);
  const w0 = heap.alloc(<usize>m << 2);
  const w1 = heap.alloc(<usize>m << 2);
  const w2 = heap.alloc(<usize>m << 2);
  const s0 = heap.alloc(<usize>max(n, 1) << 2);
  const s1 = heap.alloc(<usize>max(n, 1) << 2);
  const s2 = heap.alloc(<usize>max(n, 1) << 2);
  choose(idx, n, m, 0, 0, 0);
  fillRandom(v, n);
  fillRandom(w0, m);
  copyF32(w0, w1, m);
  copyF32(w0, w2, m);
  const c = randF32();
  f32_gather_scalar(w0, idx, s0, n);
  f32_scatter_add_scalar(w0, idx, v, c, n);
  f32_gather_scatter_add_scalar(w1, idx, s1, v, c, n);
  f32_gather_scatter_add(w2, idx, s2, v, c, n);
  expect<bool>(sameBits(w0, w1, m)).toBe(true, "scalar twin = gather + scatter_add (weight)");
  expect<bool>(sameBits(w0, w2, m)).toBe(true, "kernel = gather + scatter_add (weight)");
  expect<bool>(sameBits(s0, s1, n)).toBe(true, "scalar twin = gather (saved)");
  expect<bool>(sameBits(s0, s2, n)).toBe(true, "kernel = gather (saved)");
  heap.free(idx); heap.free(v); heap.free(w0); heap.free(w1); heap.free(w2); heap.free(s0); heap.free(s1); heap.free(s2);
}

describe("f32_switch_merge", () => {
  it("known values: only-A, only-B and shared positions", () => {
    // w = [10, 11, 12, 13, 14, 15]; A at {1, 3} fused with saved base {1.5, 3.5}; B at {0, 3, 5}, v = {1, 2, 4}, scale 0.5
    const w = heap.alloc(6 * 4);
    const idxA = heap.alloc(2 * 4);
    const savedA = heap.alloc(2 * 4);
    const idxB = heap.alloc(3 * 4);
    const vB = heap.alloc(3 * 4);
    const savedB = heap.alloc(3 * 4);
    for (let i = 0; i < 6; i++) store<f32>(w + (<usize>i << 2), <f32>10.0 + <f32>i);
    store<i32>(idxA, 1); store<i32>(idxA + 4, 3);
    store<f32>(savedA, 1.5); store<f32>(savedA + 4, 3.5);
    store<i32>(idxB, 0); store<i32>(idxB + 4, 3); store<i32>(idxB + 8, 5);
    store<f32>(vB, 1); store<f32>(vB + 4, 2); store<f32>(vB + 8, 4);
    f32_switch_merge(w, idxA, savedA, 2, idxB, savedB, vB, 0.5, 3);
    expect<f32>(load<f32>(w)).toBe(10.5);       // only B: 10 + 0.5
    expect<f32>(load<f32>(w + 4)).toBe(1.5);    // only A: restored
    expect<f32>(load<f32>(w + 8)).toBe(12);     // untouched
    expect<f32>(load<f32>(w + 12)).toBe(4.5);   // both: 3.5 + 1
    expect<f32>(load<f32>(w + 16)).toBe(14);    // untouched
    expect<f32>(load<f32>(w + 20)).toBe(17);    // only B: 15 + 2
    expect<f32>(load<f32>(savedB)).toBe(10);
    expect<f32>(load<f32>(savedB + 4)).toBe(3.5);
    expect<f32>(load<f32>(savedB + 8)).toBe(15);
    heap.free(w); heap.free(idxA); heap.free(savedA); heap.free(idxB); heap.free(vB); heap.free(savedB);
  });

  it("matches the scalar twin and the three passes: nnz 1..65, independent / identical / nested / disjoint sets", () => {
    for (let n = 1; n <= 65; n++) {
      const nB = 1 + below(65);
      checkSwitch(n, nB, 2 * (n + nB) + below(64), 0); // independent (random overlap)
      checkSwitch(n, n, n + below(16), 1); // B = A (all of A's positions, m small: dense)
      checkSwitch(n, 1 + below(n), 3 * n + 8, 1); // B nested in A
      checkSwitch(n, nB, n + nB + below(32), 2); // disjoint, interleaved
    }
  });

  it("empty sets on either side", () => {
    for (let n = 0; n <= 65; n += 5) {
      checkSwitch(0, n, 2 * n + 3, 0);
      checkSwitch(n, 0, 2 * n + 3, 0);
    }
    checkSwitch(0, 0, 7, 0);
  });

  it("sizes around the 512-position chunk and long lists", () => {
    const sizes: i32[] = [127, 128, 129, 511, 512, 513, 1023, 1024, 1025, 3000];
    for (let a = 0; a < sizes.length; a++) {
      const n = sizes[a];
      const nB = sizes[(a + 3) % sizes.length];
      checkSwitch(n, nB, 4 * (n + nB) + 100, 0);
      checkSwitch(n, n, n + 50, 1);
      checkSwitch(n, n >> 1, 2 * n + 20, 2);
      checkSwitch(3, n, 4 * n, 0); // a short A with a long B (the tail after the last chunk)
      checkSwitch(n, n, 40 * n, 0); // sparse A (>= 20 floats apart): the prefetching path
    }
  });
});

describe("f32_gather_scatter_add", () => {
  it("matches the scalar twin and gather + scatter_add: nnz 0..65 and long lists", () => {
    for (let n = 0; n <= 65; n++) checkGatherAdd(n, 3 * n + 5);
    checkGatherAdd(1000, 5000);
    checkGatherAdd(4000, 4001);
  });
});
