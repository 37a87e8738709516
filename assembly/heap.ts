// Heap: a freeing allocator (TLSF from the `minimal` runtime) exported to the host.
// Buffers are 16-byte aligned, so f32x4 loads on them are aligned.

// AssemblyScript's TLSF does not round a request up in its last first-level class (blocks of 512 MiB to 1 GiB,
// second-level buckets of 32 MiB), so it may hand out a free block from the request's own bucket that is smaller
// than the request, and the allocation then writes past that block (seen: free 512 MiB, allocate 519 MiB → trap).
// Requests in that class are therefore rounded up so that their payload size is the smallest size of a bucket:
// payload sizes are all ≡ 12 (mod 16) (4-byte header, 16-byte alignment), so every block of that bucket or above
// is then at least as large as the request.
const LAST_CLASS: usize = <usize>1 << 29;
const BUCKET: usize = <usize>1 << 25;
const PAYLOAD_REM: usize = 12;

/** The size actually requested from the TLSF heap for `size` bytes (see above). */
export function heap_request_size(size: usize): usize {
  if (size + 64 < LAST_CLASS) return size;
  const k = (size - PAYLOAD_REM + BUCKET - 1) / BUCKET;
  return k * BUCKET + PAYLOAD_REM;
}

/** Allocates `size` bytes (16-byte aligned); the host owns the block until `free`. */
export function alloc(size: usize): usize {
  return heap.alloc(heap_request_size(size));
}

/** Returns a block obtained from `alloc` to the heap. */
export function free(ptr: usize): void {
  heap.free(ptr);
}

/** Current linear memory size in bytes (for growth checks). */
export function memory_bytes(): usize {
  return <usize>memory.size() << 16;
}
