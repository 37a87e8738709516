import { test } from "node:test";
import assert from "node:assert/strict";
import { initSync, createRuntime, StateError, F32Buffer } from "../src/node.js";

test("runtime: instantiates the SIMD build and allocates 16-byte aligned zeroed buffers", () => {
  const rt = initSync();
  assert.ok(rt.variant === "simd" || rt.variant === "relaxed-simd");
  const a = rt.allocF32(37);
  assert.equal(a.ptr % 16, 0);
  assert.deepEqual(Array.from(a.view), new Array(37).fill(0));
  a.set([1, 2, 3]);
  assert.deepEqual(Array.from(a.toArray().subarray(0, 4)), [1, 2, 3, 0]);
  a.free();
});

test("runtime: views are re-derived after memory.grow and keep their contents", () => {
  const rt = createRuntime();
  const a: F32Buffer = rt.allocF32(1000);
  for (let i = 0; i < 1000; i++) a.view[i] = i * 0.25;
  const before = rt.memoryBytes;
  const oldView = a.view;
  const big = rt.allocF32(16 * 1024 * 1024); // 64 MiB forces growth
  assert.ok(rt.memoryBytes > before, "memory grew");
  if (rt.shared) {
    // a SharedArrayBuffer is never detached: the old view still covers the old length, the buffer is a new object
    assert.equal(oldView.byteLength, 4000);
    assert.notEqual(oldView.buffer, rt.memory.buffer);
  } else assert.equal(oldView.byteLength, 0, "the old view is detached by growth");
  assert.equal(a.view.buffer, rt.memory.buffer, "the view is re-derived on the grown memory");
  assert.equal(a.view.length, 1000);
  for (let i = 0; i < 1000; i++) assert.equal(a.view[i], i * 0.25);
  big.free();
  a.free();
});

test("runtime: use after free throws USE_AFTER_FREE", () => {
  const rt = createRuntime();
  const a = rt.allocF32(4);
  a.free();
  assert.equal(a.freed, true);
  assert.throws(() => a.view, (e: unknown) => e instanceof StateError && e.code === "USE_AFTER_FREE");
  assert.throws(() => a.ptr, (e: unknown) => e instanceof StateError && e.code === "USE_AFTER_FREE");
  a.free(); // idempotent
});

test("runtime: memory does not grow across 10,000 alloc/free cycles of the same sizes", () => {
  const rt = createRuntime();
  const sizes = [1, 7, 64, 1000, 4096, 65536, 300000];
  for (const s of sizes) rt.allocF32(s).free();
  const before = rt.memoryBytes;
  for (let i = 0; i < 10000; i++) {
    const bufs = sizes.map((s) => rt.allocF32(s));
    for (const b of bufs) b.free();
  }
  assert.equal(rt.memoryBytes, before);
  assert.equal(rt.liveBlocks, 0);
  assert.equal(rt.liveBytes, 0);
});

test("runtime: blocks of 512 MiB to 1 GiB are reused safely (AssemblyScript's TLSF last size class)", () => {
  // a fresh module: free 512 MiB, then ask for 519 MiB (the same TLSF bucket): the allocator must not hand back the
  // smaller free block; a sentinel buffer allocated before must keep its contents through writes to the new block
  const rt = createRuntime({ variant: "simd" });
  const sentinel = rt.allocF32(1024).set(Float32Array.from({ length: 1024 }, (_, i) => i));
  const a = rt.allocF32(128 * 2 ** 20);
  a.free();
  const n = 136_134_656; // 519.3 MiB of f32 (a Qwen2 embedding table)
  const b = rt.allocF32(n);
  const after = rt.allocF32(1024).set(new Float32Array(1024).fill(7));
  b.view[n - 1] = 3;
  b.view[0] = 5;
  assert.ok(b.ptr + n * 4 <= after.ptr || after.ptr + 4096 <= b.ptr, "blocks do not overlap");
  assert.ok(b.ptr + n * 4 <= rt.memoryBytes);
  assert.deepEqual(sentinel.toArray(), Float32Array.from({ length: 1024 }, (_, i) => i));
  assert.ok(after.toArray().every((v) => v === 7));
  b.free();
  after.free();
  sentinel.free();
});
