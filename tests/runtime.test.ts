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
  assert.equal(oldView.byteLength, 0, "the old view is detached by growth");
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
