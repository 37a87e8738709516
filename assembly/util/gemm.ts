// The f32 GEMM core shared by gemm.ts (f32 weights) and half.ts (BF16/F16 weights, widened into f32 tiles): block
// sizes, the x^T pack buffer, the store stage and the register-blocked micro-kernels of f32_gemm_nt (panels path,
// B >= 4) and f32_gemm_nn. One definition serves both weight formats, so h16_gemm_nt / h16_gemm_nn stay bit-identical
// to the f32 kernels on the widened weight by construction. Read gemm.ts's header for the paths and their diagrams.
//
// The micro-kernels are @inline: V8 ran the B = 128 panels path ~3x slower when Binaryen kept them as functions
// (called from several specializations); inlined, each caller gets gemm.ts's loop instruction for instruction.

import { madd } from "./simd";

/** K block (floats) of the panels path: 4 W rows x KC stay in L1, BC x KC packed x floats in L2. */
export const KC: i32 = 1024;
/** Rows of x packed per chunk. */
export const BC: i32 = 128;
/** K block of the dot path when B > 1 (4 W rows + B rows of x stay in L1). */
export const KC_DOT: i32 = 2048;
/** Largest batch that takes the dot path. */
export const DOT_MAX_B: i32 = 3;

/** Bytes of the x^T pack area: KC * (BC + 8) floats. */
export const PACK_BYTES: usize = <usize>KC * <usize>(BC + 8) << 2;
/** Rows of W per h16 gemm_nn strip chunk widened at once (half.ts: 8 columns x NN_CHUNK rows = 32 KiB). */
export const NN_CHUNK: i32 = 1024;
/** Bytes of the widened-W tile of half.ts: a 4 x KC tile of the panels path or an NN_CHUNK x 8 strip of gemm_nn. */
export const WIDE_BYTES: usize = <usize>max(4 * KC, 8 * NN_CHUNK) << 2;

// Per-thread scratch. Each instance of the module (the host's, and one per worker of the thread pool, all on one
// shared memory) has its own globals, so each thread packs into its own area. The host allocates the areas and
// hands each instance its own through thread_set_scratch before any kernel runs: a worker never allocates (its
// heap globals would describe a second heap over the host's). The lazy allocation in ensureScratch only serves
// hosts that call no setter (the as-pect specs).

/** x^T panels of the B >= 4 gemm path (and the scaled x of half.ts's F16 dot path): PACK_BYTES. */
export let PACK: usize = 0;
/** half.ts's widened W tile: WIDE_BYTES. */
export let WIDE: usize = 0;

/** Bytes of scratch one thread needs (pass that many bytes to {@link thread_set_scratch}). */
export function thread_scratch_bytes(): usize {
  return PACK_BYTES + WIDE_BYTES;
}

/** Gives this instance its scratch area (thread_scratch_bytes() bytes, 16-byte aligned). */
export function thread_set_scratch(p: usize): void {
  PACK = p;
  WIDE = p + PACK_BYTES;
}

/** Allocates this instance's scratch unless the host has given it one. */
// @ts-ignore: decorator
@inline export function ensureScratch(): void {
  if (PACK == 0) thread_set_scratch(heap.alloc(PACK_BYTES + WIDE_BYTES));
}

/** The start of part t of nt of [0, total) in blocks of blk (the split of every *_mt kernel: parts differ by at most one block). */
// @ts-ignore: decorator
@inline export function partStart(total: i32, blk: i32, t: i32, nt: i32): i32 {
  const nb = (<i64>total + <i64>blk - 1) / <i64>blk;
  return <i32>min(<i64>total, (nb * <i64>t) / <i64>nt * <i64>blk);
}

// flags of the store stage: add bias (first K block), read-modify-write y (acc, or a later K block)
export const ADD_BIAS: i32 = 1;
export const LOAD_Y: i32 = 2;

// @ts-ignore: decorator
@inline export function finish(s: v128, y: usize, bias: usize, flags: i32): v128 {
  if (flags & ADD_BIAS) s = f32x4.add(s, v128.load(bias));
  if (flags & LOAD_Y) s = f32x4.add(v128.load(y), s);
  return s;
}

// @ts-ignore: decorator
@inline export function finish1(s: f32, y: usize, bias: usize, flags: i32): f32 {
  if (flags & ADD_BIAS) s += load<f32>(bias);
  if (flags & LOAD_Y) s = load<f32>(y) + s;
  return s;
}

/** (Used through the @inline micro-kernels below.) y rows 0..nrows-1 (stride ys), cols 0..3 from column vectors a0..a3 (lane l = row l). */
function storeColumns4(y: usize, ys: usize, a0: v128, a1: v128, a2: v128, a3: v128, bias: usize, flags: i32, nrows: i32): void {
  const t0 = v128.shuffle<f32>(a0, a1, 0, 4, 1, 5), t1 = v128.shuffle<f32>(a0, a1, 2, 6, 3, 7);
  const t2 = v128.shuffle<f32>(a2, a3, 0, 4, 1, 5), t3 = v128.shuffle<f32>(a2, a3, 2, 6, 3, 7);
  v128.store(y, finish(v128.shuffle<f32>(t0, t2, 0, 1, 4, 5), y, bias, flags));
  if (nrows > 1) {
    y += ys;
    v128.store(y, finish(v128.shuffle<f32>(t0, t2, 2, 3, 6, 7), y, bias, flags));
  }
  if (nrows > 2) {
    y += ys;
    v128.store(y, finish(v128.shuffle<f32>(t1, t3, 0, 1, 4, 5), y, bias, flags));
  }
  if (nrows > 3) {
    y += ys;
    v128.store(y, finish(v128.shuffle<f32>(t1, t3, 2, 3, 6, 7), y, bias, flags));
  }
}

/** y rows 0..nrows-1 (stride ys), one column, from the lanes of a (lane l = row l). */
function storeColumn1(y: usize, ys: usize, a: v128, bias: usize, flags: i32, nrows: i32): void {
  store<f32>(y, finish1(f32x4.extract_lane(a, 0), y, bias, flags));
  if (nrows > 1) store<f32>(y + ys, finish1(f32x4.extract_lane(a, 1), y + ys, bias, flags));
  if (nrows > 2) store<f32>(y + 2 * ys, finish1(f32x4.extract_lane(a, 2), y + 2 * ys, bias, flags));
  if (nrows > 3) store<f32>(y + 3 * ys, finish1(f32x4.extract_lane(a, 3), y + 3 * ys, bias, flags));
}

/** 4 W rows (stride ws) x panel of 8 (p, kl >= 1): y[b, n0..n0+3] for nb valid rows (nb <= 8). */
// @ts-ignore: decorator
@inline export function micro4x8(w: usize, ws: usize, p: usize, kl: i32, y: usize, ys: usize, bias: usize, flags: i32, nb: i32): void {
  let w0 = w, w1 = w + ws, w2 = w1 + ws, w3 = w2 + ws;
  let c00 = f32x4.splat(0), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  const pe = p + (<usize>kl << 5);
  do {
    const x0 = v128.load(p), x1 = v128.load(p, 16);
    let s = v128.load32_splat(w0);
    c00 = madd(s, x0, c00);
    c01 = madd(s, x1, c01);
    s = v128.load32_splat(w1);
    c10 = madd(s, x0, c10);
    c11 = madd(s, x1, c11);
    s = v128.load32_splat(w2);
    c20 = madd(s, x0, c20);
    c21 = madd(s, x1, c21);
    s = v128.load32_splat(w3);
    c30 = madd(s, x0, c30);
    c31 = madd(s, x1, c31);
    p += 32;
    w0 += 4;
    w1 += 4;
    w2 += 4;
    w3 += 4;
  } while (p < pe);
  storeColumns4(y, ys, c00, c10, c20, c30, bias, flags, nb);
  if (nb > 4) storeColumns4(y + 4 * ys, ys, c01, c11, c21, c31, bias, flags, nb - 4);
}


/** 4 W rows x panel of 4. */
// @ts-ignore: decorator
@inline export function micro4x4(w: usize, ws: usize, p: usize, kl: i32, y: usize, ys: usize, bias: usize, flags: i32, nb: i32): void {
  let w0 = w, w1 = w + ws, w2 = w1 + ws, w3 = w2 + ws;
  let c0 = f32x4.splat(0), c1 = c0, c2 = c0, c3 = c0;
  const pe = p + (<usize>kl << 4);
  do {
    const x0 = v128.load(p);
    c0 = madd(v128.load32_splat(w0), x0, c0);
    c1 = madd(v128.load32_splat(w1), x0, c1);
    c2 = madd(v128.load32_splat(w2), x0, c2);
    c3 = madd(v128.load32_splat(w3), x0, c3);
    p += 16;
    w0 += 4;
    w1 += 4;
    w2 += 4;
    w3 += 4;
  } while (p < pe);
  storeColumns4(y, ys, c0, c1, c2, c3, bias, flags, nb);
}

/** 1 W row x panel of 8 (the N % 4 tail). */
// @ts-ignore: decorator
@inline export function micro1x8(w: usize, p: usize, kl: i32, y: usize, ys: usize, bias: usize, flags: i32, nb: i32): void {
  let c0 = f32x4.splat(0), c1 = c0;
  const pe = p + (<usize>kl << 5);
  do {
    const s = v128.load32_splat(w);
    c0 = madd(s, v128.load(p), c0);
    c1 = madd(s, v128.load(p, 16), c1);
    p += 32;
    w += 4;
  } while (p < pe);
  storeColumn1(y, ys, c0, bias, flags, nb);
  if (nb > 4) storeColumn1(y + 4 * ys, ys, c1, bias, flags, nb - 4);
}

/** 1 W row x panel of 4. */
// @ts-ignore: decorator
@inline export function micro1x4(w: usize, p: usize, kl: i32, y: usize, ys: usize, bias: usize, flags: i32, nb: i32): void {
  let c0 = f32x4.splat(0);
  const pe = p + (<usize>kl << 4);
  do {
    c0 = madd(v128.load32_splat(w), v128.load(p), c0);
    p += 16;
    w += 4;
  } while (p < pe);
  storeColumn1(y, ys, c0, bias, flags, nb);
}

/** Panel width for the rows r.. of a chunk of cb rows: 8 while more than 4 rows remain, else 4. */
// @ts-ignore: decorator
@inline export function panelWidth(left: i32): i32 {
  return left > 4 ? 8 : 4;
}

// ---------------------------------------------------------------- f32_gemm_nn tiles

/** Rows of a per block of f32_gemm_nn (a multiple of 4): the block stays in cache while every column strip reads it. */
export const NN_ROWS: i32 = 64;

// @ts-ignore: decorator
@inline export function nn4x8(a: usize, as: usize, w: usize, ws: usize, N: i32, y: usize, ys: usize, acc: i32): void {
  let a0 = a, a1 = a + as, a2 = a1 + as, a3 = a2 + as;
  const y0 = y, y1 = y + ys, y2 = y1 + ys, y3 = y2 + ys;
  let c00 = f32x4.splat(0), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  if (acc) {
    c00 = v128.load(y0);
    c01 = v128.load(y0, 16);
    c10 = v128.load(y1);
    c11 = v128.load(y1, 16);
    c20 = v128.load(y2);
    c21 = v128.load(y2, 16);
    c30 = v128.load(y3);
    c31 = v128.load(y3, 16);
  }
  const ae = a0 + (<usize>N << 2);
  while (a0 < ae) {
    const v0 = v128.load(w), v1 = v128.load(w, 16);
    let s = v128.load32_splat(a0);
    c00 = madd(s, v0, c00);
    c01 = madd(s, v1, c01);
    s = v128.load32_splat(a1);
    c10 = madd(s, v0, c10);
    c11 = madd(s, v1, c11);
    s = v128.load32_splat(a2);
    c20 = madd(s, v0, c20);
    c21 = madd(s, v1, c21);
    s = v128.load32_splat(a3);
    c30 = madd(s, v0, c30);
    c31 = madd(s, v1, c31);
    a0 += 4;
    a1 += 4;
    a2 += 4;
    a3 += 4;
    w += ws;
  }
  v128.store(y0, c00);
  v128.store(y0, c01, 16);
  v128.store(y1, c10);
  v128.store(y1, c11, 16);
  v128.store(y2, c20);
  v128.store(y2, c21, 16);
  v128.store(y3, c30);
  v128.store(y3, c31, 16);
}

// @ts-ignore: decorator
@inline export function nn1x8(a: usize, w: usize, ws: usize, N: i32, y: usize, acc: i32): void {
  let c0 = f32x4.splat(0), c1 = c0;
  if (acc) {
    c0 = v128.load(y);
    c1 = v128.load(y, 16);
  }
  const ae = a + (<usize>N << 2);
  while (a < ae) {
    const s = v128.load32_splat(a);
    c0 = madd(s, v128.load(w), c0);
    c1 = madd(s, v128.load(w, 16), c1);
    a += 4;
    w += ws;
  }
  v128.store(y, c0);
  v128.store(y, c1, 16);
}

// @ts-ignore: decorator
@inline export function nn4x4(a: usize, as: usize, w: usize, ws: usize, N: i32, y: usize, ys: usize, acc: i32): void {
  let a0 = a, a1 = a + as, a2 = a1 + as, a3 = a2 + as;
  const y0 = y, y1 = y + ys, y2 = y1 + ys, y3 = y2 + ys;
  let c0 = f32x4.splat(0), c1 = c0, c2 = c0, c3 = c0;
  if (acc) {
    c0 = v128.load(y0);
    c1 = v128.load(y1);
    c2 = v128.load(y2);
    c3 = v128.load(y3);
  }
  const ae = a0 + (<usize>N << 2);
  while (a0 < ae) {
    const v = v128.load(w);
    c0 = madd(v128.load32_splat(a0), v, c0);
    c1 = madd(v128.load32_splat(a1), v, c1);
    c2 = madd(v128.load32_splat(a2), v, c2);
    c3 = madd(v128.load32_splat(a3), v, c3);
    a0 += 4;
    a1 += 4;
    a2 += 4;
    a3 += 4;
    w += ws;
  }
  v128.store(y0, c0);
  v128.store(y1, c1);
  v128.store(y2, c2);
  v128.store(y3, c3);
}

// @ts-ignore: decorator
@inline export function nn1x4(a: usize, w: usize, ws: usize, N: i32, y: usize, acc: i32): void {
  let c = acc ? v128.load(y) : f32x4.splat(0);
  const ae = a + (<usize>N << 2);
  while (a < ae) {
    c = madd(v128.load32_splat(a), v128.load(w), c);
    a += 4;
    w += ws;
  }
  v128.store(y, c);
}
