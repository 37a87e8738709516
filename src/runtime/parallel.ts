/**
 * The kernels as the library calls them: the raw exports, with the heavy ones split over the thread pool when it
 * runs and the call is large enough. Each split gives every output element to exactly one part, computed by the
 * same code path in the same order as the one-thread kernel, so results are bit-identical for any thread count:
 *
 *   f32_gemm_nt, h16_gemm_nt       output columns in blocks of 8          (the *_mt kernels)
 *   f32_gemm_tn                    rows of the weight gradient, blocks of 4 (f32_gemm_tn_mt)
 *   f32_gemm_nn, h16_gemm_nn       rows of the input / output, blocks of 4; under 8 rows, output columns in
 *                                  blocks of 8 (the *_mt kernels)
 *   f32_attention                  tiles (batch row, KV group, block of queries); scratch per part (f32_attention_mt)
 *   switching, scatter / gather    ranges of the sorted unique positions (a position belongs to one part)
 *   f32_lowrank_fuse               rows of W, blocks of 4
 *   f32_rmsnorm, f32_layernorm,    rows
 *   f32_rope
 *   f32_silu_mul, f32_gelu_tanh,   ranges of 16 elements
 *   f32_add
 *
 * Everything else runs on the calling thread.
 */
import type { Kernels } from "./kernels.js";
import type { ThreadPool } from "./threads.js";

/** The pool and the smallest call worth splitting, read at every call (the pool may be stopped or replaced). */
export interface ParallelContext {
  pool: ThreadPool | null;
  /** Multiply-adds (or positions x 64) below which a call runs on the calling thread alone. */
  minWork: number;
  /** An Int32Array over all of memory, current after growth (for the position splits). */
  i32(): Int32Array;
}

/** Exports the pool may call, in op order. */
export const POOL_EXPORTS = [
  "f32_gemm_nt_mt",
  "h16_gemm_nt_mt",
  "f32_gemm_tn_mt",
  "f32_gemm_nn",
  "h16_gemm_nn",
  "f32_gemm_nn_mt",
  "h16_gemm_nn_mt",
  "f32_attention_mt",
  "f32_switch_merge",
  "h16_switch_merge",
  "f32_gather_scatter_add",
  "h16_gather_scatter_add",
  "f32_scatter_set",
  "h16_scatter_set",
  "f32_scatter_set_add",
  "f32_scatter_add",
  "f32_scatter_sub",
  "f32_gather",
  "h16_gather",
  "f32_lowrank_fuse",
  "f32_rmsnorm",
  "f32_layernorm",
  "f32_rope",
  "f32_silu_mul",
  "f32_gelu_tanh",
  "f32_add",
] as const;

type Fn = (...a: number[]) => unknown;

/** Most parts f32_attention is split into: its scratch holds this many score areas (NQ x maxSeq floats each). */
export const ATTENTION_PARTS = 8;

/** Start of part t of nt of [0, total) in blocks of blk (assembly/util/gemm.ts partStart). */
export function partStart(total: number, blk: number, t: number, nt: number): number {
  const nb = Math.ceil(total / blk);
  return Math.min(total, Math.floor((nb * t) / nt) * blk);
}

/** First j in [0, n) with idx[j] >= value (idx ascending, at byte offset ptr), or n. */
function lowerBound(i32: Int32Array, ptr: number, n: number, value: number): number {
  let lo = 0;
  let hi = n;
  const base = ptr >>> 2;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (i32[base + mid] < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Wraps `raw`: the listed kernels split over `ctx.pool`; every other property is `raw`'s. The wrapper of a kernel
 * costs one closure call when the pool is off or the call is small.
 */
export function parallelKernels(raw: Kernels, ctx: ParallelContext): Kernels {
  const k = Object.create(raw) as Kernels;
  const fn = (name: string): Fn => (raw as unknown as Record<string, Fn>)[name];
  const pool = (work: number): ThreadPool | null => {
    const p = ctx.pool;
    return p !== null && p.size > 1 && !p.stopped && work >= ctx.minWork ? p : null;
  };
  const run = (p: ThreadPool, name: string, parts: number[][]): void => {
    p.run(p.op(name), fn(name), parts);
  };
  const parts = (nt: number, f: (t: number) => number[]): number[][] => Array.from({ length: nt }, (_, t) => f(t));
  /** Runs an `*_mt` kernel (which picks part t of nt itself) as nt parts: the arguments, then t and nt. */
  const runMt = (p: ThreadPool, name: string, nt: number, args: number[]): void => run(p, name, parts(nt, (t) => [...args, t, nt]));
  const define = (name: keyof Kernels, wrapper: Fn): void => {
    Object.defineProperty(k, name, { value: wrapper, enumerable: true });
  };
  /**
   * A kernel over `args[countArg]` units (rows, positions, elements) split into contiguous ranges aligned to `blk`
   * units: part t runs the kernel itself on its range, with each argument of `offsets` (argument index, bytes per
   * unit) advanced to the range's start and the count set to the range's length. Calls of fewer than `minCount`
   * units, or of less than the pool's minimum `work(args)`, run whole on the calling thread.
   */
  const byRanges = (name: string, countArg: number, blk: number, minCount: number, offsets: readonly (readonly [number, (a: number[]) => number])[], work: (a: number[]) => number) => (...args: number[]) => {
    const count = args[countArg];
    const p = count >= minCount ? pool(work(args)) : null;
    if (!p) return fn(name)(...args);
    const nt = Math.min(p.size, Math.ceil(count / blk));
    run(
      p,
      name,
      parts(nt, (t) => {
        const u0 = partStart(count, blk, t, nt);
        const a = args.slice();
        for (const [i, bytes] of offsets) a[i] = args[i] + u0 * bytes(args);
        a[countArg] = partStart(count, blk, t + 1, nt) - u0;
        return a;
      }),
    );
  };

  // ---- dense products
  define("f32_gemm_nt", (x, w, bias, y, B, K, N, acc) => {
    const p = N >= 16 && K > 0 ? pool(B * K * N) : null;
    if (!p) return raw.f32_gemm_nt(x, w, bias, y, B, K, N, acc);
    const nt = Math.min(p.size, Math.ceil(N / 8));
    runMt(p, "f32_gemm_nt_mt", nt, [x, w, bias, y, B, K, N, acc]);
  });
  define("h16_gemm_nt", (x, w, bias, y, B, K, N, acc, dtype) => {
    const p = N >= 16 && K > 0 ? pool(B * K * N) : null;
    if (!p) return raw.h16_gemm_nt(x, w, bias, y, B, K, N, acc, dtype);
    const nt = Math.min(p.size, Math.ceil(N / 8));
    runMt(p, "h16_gemm_nt_mt", nt, [x, w, bias, y, B, K, N, acc, dtype]);
  });
  define("f32_gemm_tn", (gy, x, g, B, N, K, acc) => {
    const p = N >= 8 && K > 0 ? pool(B * K * N) : null;
    if (!p) return raw.f32_gemm_tn(gy, x, g, B, N, K, acc);
    const nt = Math.min(p.size, Math.ceil(N / 4));
    runMt(p, "f32_gemm_tn_mt", nt, [gy, x, g, B, N, K, acc]);
  });
  const rowsNn = (name: "f32_gemm_nn" | "h16_gemm_nn") => {
    // rows of a and y in blocks of 4 (a row: N floats of a, K floats of y)
    const byRows = byRanges(name, 3, 4, 8, [[0, (a) => a[4] * 4], [2, (a) => a[5] * 4]], (a) => (a[5] > 0 ? a[3] * a[4] * a[5] : -1)); // K = 0: nothing to split
    return (a: number, w: number, y: number, B: number, N: number, K: number, acc: number, ...rest: number[]) => {
      if (B >= 8 || B <= 0) return byRows(a, w, y, B, N, K, acc, ...rest);
      // few rows (decode through GPT-2's Conv1D): by output columns in blocks of 8 (the *_mt kernels)
      const p = K >= 16 ? pool(B * K * N) : null;
      if (!p) return fn(name)(a, w, y, B, N, K, acc, ...rest);
      const nc = Math.min(p.size, Math.ceil(K / 8));
      runMt(p, `${name}_mt`, nc, [a, w, y, B, N, K, acc, ...rest]);
    };
  };
  define("f32_gemm_nn", rowsNn("f32_gemm_nn") as Fn);
  define("h16_gemm_nn", rowsNn("h16_gemm_nn") as Fn);

  // ---- attention: the caller's scratch holds one area per part, for up to ATTENTION_PARTS parts whatever the
  // thread count (so a scratch allocated before the thread count changes still fits)
  define("f32_attention_scratch", (T, maxSeq, headDim) => raw.f32_attention_scratch(T, maxSeq, headDim) * ATTENTION_PARTS);
  define("f32_attention", (q, qStride, kc, vc, out, outStride, B, T, past, nHeads, nKv, headDim, maxSeq, scale, window, keyMask, scratch) => {
    const p = pool(B * T * nHeads * (past + T) * headDim);
    const tiles = B * nKv * Math.ceil((T * (nHeads / nKv)) / raw.f32_attention_scratch(1, 1, 1)); // NQ queries per tile
    if (!p || tiles < 2) return raw.f32_attention(q, qStride, kc, vc, out, outStride, B, T, past, nHeads, nKv, headDim, maxSeq, scale, window, keyMask, scratch);
    const nt = Math.min(p.size, tiles, ATTENTION_PARTS);
    runMt(p, "f32_attention_mt", nt, [q, qStride, kc, vc, out, outStride, B, T, past, nHeads, nKv, headDim, maxSeq, scale, window, keyMask, scratch]);
  });

  // ---- positions: ranges of sorted unique positions
  /** A kernel over nnz positions whose per-position arrays are at `arrays` (argument index, bytes per element). */
  const byPositions = (name: string, nnzArg: number, arrays: readonly (readonly [number, number])[]) =>
    byRanges(name, nnzArg, 8, 64, arrays.map(([i, bytes]) => [i, () => bytes] as const), (a) => a[nnzArg] * 64);
  define("f32_gather_scatter_add", byPositions("f32_gather_scatter_add", 5, [[1, 4], [2, 4], [3, 4]]));
  define("h16_gather_scatter_add", byPositions("h16_gather_scatter_add", 5, [[1, 4], [2, 2], [3, 4]]));
  define("f32_scatter_set", byPositions("f32_scatter_set", 3, [[1, 4], [2, 4]]));
  define("h16_scatter_set", byPositions("h16_scatter_set", 3, [[1, 4], [2, 2]]));
  define("f32_scatter_set_add", byPositions("f32_scatter_set_add", 5, [[1, 4], [2, 4], [3, 4]]));
  define("f32_scatter_add", byPositions("f32_scatter_add", 4, [[1, 4], [2, 4]]));
  define("f32_scatter_sub", byPositions("f32_scatter_sub", 4, [[1, 4], [2, 4]]));
  define("f32_gather", byPositions("f32_gather", 3, [[1, 4], [2, 4]]));
  define("h16_gather", byPositions("h16_gather", 3, [[1, 4], [2, 2]]));

  /** The single-sweep switch A -> B: parts own ranges of position values (cut at B's or A's quantiles). */
  const merge = (name: "f32_switch_merge" | "h16_switch_merge", savedBytes: number) => (w: number, idxA: number, savedA: number, nA: number, idxB: number, savedB: number, vB: number, scale: number, nB: number, ...rest: number[]) => {
    const p = nA + nB >= 64 ? pool((nA + nB) * 64) : null;
    if (!p) return fn(name)(w, idxA, savedA, nA, idxB, savedB, vB, scale, nB, ...rest);
    const i32 = ctx.i32();
    const [cutIdx, cutN] = nB >= nA ? [idxB, nB] : [idxA, nA];
    const nt = Math.min(p.size, Math.ceil(cutN / 8));
    // cut[t]: the smallest position of part t (part 0 from -inf, the last to +inf)
    const cut = Array.from({ length: nt + 1 }, (_, t) => (t === 0 ? -Infinity : t === nt ? Infinity : i32[(cutIdx >>> 2) + partStart(cutN, 8, t, nt)]));
    const at = (idx: number, n: number, v: number) => (v === -Infinity ? 0 : v === Infinity ? n : lowerBound(i32, idx, n, v));
    run(
      p,
      name,
      parts(nt, (t) => {
        const a0 = at(idxA, nA, cut[t]);
        const a1 = at(idxA, nA, cut[t + 1]);
        const b0 = at(idxB, nB, cut[t]);
        const b1 = at(idxB, nB, cut[t + 1]);
        return [w, idxA + a0 * 4, savedA + a0 * savedBytes, a1 - a0, idxB + b0 * 4, savedB + b0 * savedBytes, vB + b0 * 4, scale, b1 - b0, ...rest];
      }),
    );
  };
  define("f32_switch_merge", merge("f32_switch_merge", 4) as Fn);
  define("h16_switch_merge", merge("h16_switch_merge", 2) as Fn);

  // ---- row-wise kernels (norms, RoPE) by rows, element-wise ones by ranges of 16 elements: pointer offsets only,
  // each row / element computed exactly as on one thread (a range of 16 keeps every element on the same SIMD or
  // tail path, the last part ending where the whole array ends)
  /** A kernel over `rows` rows whose row arrays are at `arrays` (argument index, bytes per row). */
  const byRows = (name: string, rowsArg: number, arrays: readonly (readonly [number, (a: number[]) => number])[], work: (a: number[]) => number) =>
    byRanges(name, rowsArg, 1, 2, arrays, work);
  define("f32_rmsnorm", byRows("f32_rmsnorm", 3, [[0, (a) => a[4] * 4], [2, (a) => a[4] * 4]], (a) => a[3] * a[4] * 4));
  define("f32_layernorm", byRows("f32_layernorm", 4, [[0, (a) => a[5] * 4], [3, (a) => a[5] * 4]], (a) => a[4] * a[5] * 4));
  // f32_rope(x, stride, rows, nHeads, headDim, pos, ...): row r at x + r * stride floats, its position at pos[r]
  define("f32_rope", byRows("f32_rope", 2, [[0, (a) => a[1] * 4], [5, () => 4]], (a) => a[2] * a[3] * a[4] * 4));
  /** An element-wise kernel over n elements whose arrays are the arguments `arrays` (f32). */
  const byElements = (name: string, nArg: number, arrays: readonly number[]) =>
    byRanges(name, nArg, 16, 32, arrays.map((i) => [i, () => 4] as const), (a) => a[nArg] * 4);
  define("f32_silu_mul", byElements("f32_silu_mul", 3, [0, 1, 2]));
  define("f32_gelu_tanh", byElements("f32_gelu_tanh", 2, [0, 1]));
  define("f32_add", byElements("f32_add", 3, [0, 1, 2]));

  // ---- LoRA's fused switch: W[N,K] += scale * B[N,r] A[r,K] by rows of W
  // f32_lowrank_fuse(w, bm, a, scale, N, K, r): a row of W is K floats, of B r floats
  define("f32_lowrank_fuse", byRanges("f32_lowrank_fuse", 4, 4, 8, [[0, (a) => a[5] * 4], [1, (a) => a[6] * 4]], (a) => (a[6] > 0 ? a[4] * a[5] * a[6] : -1))); // r = 0: nothing to split
  return k;
}
