// Heap: a freeing allocator (TLSF from the `minimal` runtime) exported to the host.
// Buffers are 16-byte aligned, so f32x4 loads on them are aligned.

/** Allocates `size` bytes (16-byte aligned); the host owns the block until `free`. */
export function alloc(size: usize): usize {
  return heap.alloc(size);
}

/** Returns a block obtained from `alloc` to the heap. */
export function free(ptr: usize): void {
  heap.free(ptr);
}

/** Current linear memory size in bytes (for growth checks). */
export function memory_bytes(): usize {
  return <usize>memory.size() << 16;
}
