// Single-pass fused switching over sorted flat indices (row * K + col, ascending, unique): the O(nnz) adapter
// switch of SHiRA without the three separate sweeps of scatter.ts.
//
//   f32_switch_merge(w, idxA, savedA, nA, idxB, savedB, vB, scale, nB)
//     restores adapter A and fuses adapter B in one sweep of w in address order:
//       p only in A:   w[p] = savedA[i]
//       p only in B:   savedB[j] = w[p];        w[p] = savedB[j] + f32(vB[j] * scale)
//       p in both:     savedB[j] = savedA[i];   w[p] = savedA[i] + f32(vB[j] * scale)
//     Bit-identical to the three passes  f32_scatter_set(w, idxA, savedA, nA);  f32_gather(w, idxB, savedB, nB);
//     f32_scatter_add(w, idxB, vB, scale, nB)  (product rounded to f32, then one f32 add).
//
//   f32_gather_scatter_add(w, idx, saved, v, scale, nnz)
//     the first fuse of an adapter in one sweep: saved[j] = w[idx[j]];  w[idx[j]] = saved[j] + f32(v[j] * scale)
//     (= f32_gather then f32_scatter_add; indices are unique, so the order of the two does not matter).
//
// The `_scalar` twins are the plain loops (the twin of the merge is the textbook merge walk of the two sorted
// lists). The kernel visits the same positions in the same address order but is shaped for the memory system:
//
//   A sorted:  a0 a1 ... a511 | a512 ... a1023 | ...          chunk c = 512 positions of A, last position L_c
//   B sorted:  b0 b1 ... b497 | b498 ... b1013 | ...          the B positions <= L_c (found by a forward scan)
//
//   per chunk c: (0) touch chunk c+1 of A: load w at its positions (values only OR-ed into a sink), so those
//                    lines are on their way while chunk c is written (a software prefetch one chunk ahead;
//                    only for sparse A, see TOUCH_GAP)
//                (1) w[a] = savedA for chunk c's A positions               independent stores, unrolled by 4
//                (2) gather + add for the B positions <= L_c               independent load/store pairs, by 4
//
// Every B position <= L_c is processed after every A position <= L_c was restored, and no A position of a later
// chunk is <= L_c, so each B position reads its base value (the restored one when shared with A): the same result
// as the merge walk, bit for bit. Unlike the merge walk there is no data-dependent branch per element (the scan's
// loop exit mispredicts once per chunk) and no loop-carried dependency through two cursors, so the out-of-order
// core keeps many cache misses in flight.
//
// Why step (0) touches A only: a switch is bound by the latency of the ~30 % of W's cache lines it must read and
// write. B's positions are loaded first anyway (the gather). A's are stores only; a store that misses waits for its
// line in the store buffer, which drains in order, so a run of A-only stores serializes on misses. Loading A's lines
// a chunk ahead turns those into load misses, which overlap freely (wasm has no prefetch instruction; a load whose
// value is kept alive is the stand-in). Touching B as well, or touching the current chunk instead of the next,
// measured slower.
//
// Measured on [11008, 4096], r = 32 (483,328 positions per adapter, one thread, cold A/B alternation, medians of
// interleaved runs): three passes ~10-11 ms; textbook merge walk: no faster (its branch on pa < pb is a coin
// flip); chunks without (0): ~9 ms; (0) on A and B of the same chunk: ~7 ms; (0) on A one chunk ahead: ~5-6 ms
// (chunks of 256..2048 within noise of each other). A dense copy of W takes ~15 ms on the same machine.

/** Positions of A restored per chunk before the B positions up to the chunk's last position are fused. */
const CHUNK: i32 = 512;

/**
 * Step (0) runs only when A's positions are on average at least this many floats apart (1.25 cache lines). Denser
 * lists touch most lines of their region, which the hardware prefetchers stream; the extra loads then only cost
 * instructions (measured: 896 x 896 at r = 32, 14 floats apart, ~10 % slower with step (0); 4864 x 896, 24 apart,
 * equal; 2048 x 2048, 32 apart, ~7 % faster; 11008 x 4096, 93 apart, ~12 % faster, cold weights).
 */
const TOUCH_GAP: i32 = 20;

// ---------------------------------------------------------------- scalar twins

export function f32_switch_merge_scalar(w: usize, idxA: usize, savedA: usize, nA: i32, idxB: usize, savedB: usize, vB: usize, scale: f32, nB: i32): void {
  let i = 0;
  let j = 0;
  while (i < nA && j < nB) {
    const pa = load<i32>(idxA + (<usize>i << 2));
    const pb = load<i32>(idxB + (<usize>j << 2));
    if (pa < pb) {
      store<f32>(w + (<usize>pa << 2), load<f32>(savedA + (<usize>i << 2)));
      i++;
    } else {
      const wp = w + (<usize>pb << 2);
      let s: f32;
      if (pa == pb) {
        s = load<f32>(savedA + (<usize>i << 2));
        i++;
      } else {
        s = load<f32>(wp);
      }
      store<f32>(savedB + (<usize>j << 2), s);
      const d: f32 = load<f32>(vB + (<usize>j << 2)) * scale;
      store<f32>(wp, s + d);
      j++;
    }
  }
  for (; i < nA; i++) store<f32>(w + (<usize>load<i32>(idxA + (<usize>i << 2)) << 2), load<f32>(savedA + (<usize>i << 2)));
  for (; j < nB; j++) {
    const wp = w + (<usize>load<i32>(idxB + (<usize>j << 2)) << 2);
    const s = load<f32>(wp);
    store<f32>(savedB + (<usize>j << 2), s);
    const d: f32 = load<f32>(vB + (<usize>j << 2)) * scale;
    store<f32>(wp, s + d);
  }
}

export function f32_gather_scatter_add_scalar(w: usize, idx: usize, saved: usize, v: usize, scale: f32, nnz: i32): void {
  for (let j = 0; j < nnz; j++) {
    const wp = w + (<usize>load<i32>(idx + (<usize>j << 2)) << 2);
    const s = load<f32>(wp);
    store<f32>(saved + (<usize>j << 2), s);
    const d: f32 = load<f32>(v + (<usize>j << 2)) * scale;
    store<f32>(wp, s + d);
  }
}

// ---------------------------------------------------------------- range helpers (unrolled by 4)

/** w[idx[j]] = src[j] for j in [j0, j1). */
// @ts-ignore: decorator
@inline function setRange(w: usize, idx: usize, src: usize, j0: i32, j1: i32): void {
  let j = j0;
  for (; j + 4 <= j1; j += 4) {
    const o = <usize>j << 2;
    const p0 = load<i32>(idx + o);
    const p1 = load<i32>(idx + o, 4);
    const p2 = load<i32>(idx + o, 8);
    const p3 = load<i32>(idx + o, 12);
    const s0 = load<f32>(src + o);
    const s1 = load<f32>(src + o, 4);
    const s2 = load<f32>(src + o, 8);
    const s3 = load<f32>(src + o, 12);
    store<f32>(w + (<usize>p0 << 2), s0);
    store<f32>(w + (<usize>p1 << 2), s1);
    store<f32>(w + (<usize>p2 << 2), s2);
    store<f32>(w + (<usize>p3 << 2), s3);
  }
  for (; j < j1; j++) store<f32>(w + (<usize>load<i32>(idx + (<usize>j << 2)) << 2), load<f32>(src + (<usize>j << 2)));
}

/** saved[j] = w[idx[j]]; w[idx[j]] = saved[j] + f32(v[j] * scale) for j in [j0, j1). */
// @ts-ignore: decorator
@inline function gatherAddRange(w: usize, idx: usize, saved: usize, v: usize, scale: f32, j0: i32, j1: i32): void {
  let j = j0;
  for (; j + 4 <= j1; j += 4) {
    const o = <usize>j << 2;
    const w0 = w + (<usize>load<i32>(idx + o) << 2);
    const w1 = w + (<usize>load<i32>(idx + o, 4) << 2);
    const w2 = w + (<usize>load<i32>(idx + o, 8) << 2);
    const w3 = w + (<usize>load<i32>(idx + o, 12) << 2);
    // four independent loads first (they miss the cache together), then the arithmetic and stores
    const s0 = load<f32>(w0);
    const s1 = load<f32>(w1);
    const s2 = load<f32>(w2);
    const s3 = load<f32>(w3);
    const d0: f32 = load<f32>(v + o) * scale;
    const d1: f32 = load<f32>(v + o, 4) * scale;
    const d2: f32 = load<f32>(v + o, 8) * scale;
    const d3: f32 = load<f32>(v + o, 12) * scale;
    store<f32>(saved + o, s0);
    store<f32>(saved + o, s1, 4);
    store<f32>(saved + o, s2, 8);
    store<f32>(saved + o, s3, 12);
    store<f32>(w0, s0 + d0);
    store<f32>(w1, s1 + d1);
    store<f32>(w2, s2 + d2);
    store<f32>(w3, s3 + d3);
  }
  for (; j < j1; j++) {
    const o = <usize>j << 2;
    const wp = w + (<usize>load<i32>(idx + o) << 2);
    const s = load<f32>(wp);
    store<f32>(saved + o, s);
    const d: f32 = load<f32>(v + o) * scale;
    store<f32>(wp, s + d);
  }
}

/** Loads w at idx[j] for j in [j0, j1) (a software prefetch: the values are only OR-ed together). */
// @ts-ignore: decorator
@inline function touchRange(w: usize, idx: usize, j0: i32, j1: i32): i32 {
  let a0 = 0;
  let a1 = 0;
  let a2 = 0;
  let a3 = 0;
  let j = j0;
  for (; j + 4 <= j1; j += 4) {
    const o = <usize>j << 2;
    a0 |= load<i32>(w + (<usize>load<i32>(idx + o) << 2));
    a1 |= load<i32>(w + (<usize>load<i32>(idx + o, 4) << 2));
    a2 |= load<i32>(w + (<usize>load<i32>(idx + o, 8) << 2));
    a3 |= load<i32>(w + (<usize>load<i32>(idx + o, 12) << 2));
  }
  for (; j < j1; j++) a0 |= load<i32>(w + (<usize>load<i32>(idx + (<usize>j << 2)) << 2));
  return a0 | a1 | a2 | a3;
}

/** Keeps the touch loads of f32_switch_merge alive (the optimizer would drop loads whose values are unused). */
let touchSink: i32 = 0;

// ---------------------------------------------------------------- kernels

export function f32_switch_merge(w: usize, idxA: usize, savedA: usize, nA: i32, idxB: usize, savedB: usize, vB: usize, scale: f32, nB: i32): void {
  // sparse A (positions in different cache lines): prefetch its lines one chunk ahead; dense A: streams anyway
  const touch = nA > 0 && <i64>(load<i32>(idxA + (<usize>(nA - 1) << 2)) - load<i32>(idxA)) >= <i64>TOUCH_GAP * <i64>nA;
  let i = 0;
  let j = 0;
  let sink = touch ? touchRange(w, idxA, 0, min(CHUNK, nA)) : 0;
  while (i < nA) {
    const iEnd = min(i + CHUNK, nA);
    if (touch) sink |= touchRange(w, idxA, iEnd, min(iEnd + CHUNK, nA));
    const last = load<i32>(idxA + (<usize>(iEnd - 1) << 2));
    let jEnd = j;
    while (jEnd < nB && load<i32>(idxB + (<usize>jEnd << 2)) <= last) jEnd++;
    setRange(w, idxA, savedA, i, iEnd);
    gatherAddRange(w, idxB, savedB, vB, scale, j, jEnd);
    i = iEnd;
    j = jEnd;
  }
  gatherAddRange(w, idxB, savedB, vB, scale, j, nB);
  touchSink = sink;
}

export function f32_gather_scatter_add(w: usize, idx: usize, saved: usize, v: usize, scale: f32, nnz: i32): void {
  gatherAddRange(w, idx, saved, v, scale, 0, nnz);
}
