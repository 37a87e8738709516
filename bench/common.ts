// Shared benchmark helpers: timing (median after warm-up), a table printer, JSON results, and a minimal ONNX
// model encoder for the onnxruntime-web peer.
//
// Benchmarks are programs, never tests: they print a table and write `<results dir>/<name>.json` so results can
// be compared across commits (bench/results/ for `npm run bench`, ./bench-results/ or `--out DIR` for `shira bench`). All timings are single-threaded wall clock from `performance.now()`.
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
/** The repository's results folder (`npm run bench`). */
export const REPO_RESULTS_DIR = join(BENCH_DIR, "results");
/**
 * Where `writeResults` and report.ts's `writeSummary` write (a live binding: set it with `setResultsDir` before a run;
 * bench/run.ts sets REPO_RESULTS_DIR, `shira bench` the current directory's ./bench-results or `--out DIR`).
 */
export let RESULTS_DIR = REPO_RESULTS_DIR;

export function setResultsDir(dir: string): void {
  RESULTS_DIR = dir;
}

// ---------------------------------------------------------------------------------------------- timing

export interface TimeOptions {
  /**
   * Untimed calls before measuring (JIT tier-up, caches, page faults). Default 2. Warm-up continues past this
   * (up to 4x as many calls, 3 s) while the latest call is still > 1.25x the fastest one: V8 runs a wasm function
   * in its baseline tier (Liftoff) until the optimized code, compiled in the background, is installed.
   */
  warmup?: number;
  /** Minimum number of timed repetitions. Default 5. */
  minRuns?: number;
  /** Maximum number of timed repetitions. Default 200. */
  maxRuns?: number;
  /** Keep repeating until this much time (ms) has been spent measuring (bounded by maxRuns). Default 400. */
  minTimeMs?: number;
}

export interface Timing {
  /** Median of the timed runs, in milliseconds. */
  median: number;
  min: number;
  max: number;
  runs: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : 0.5 * (s[m - 1] + s[m]);
}

function warmSync(fn: () => void, warmup: number): void {
  let best = Infinity;
  let last = Infinity;
  const start = performance.now();
  for (let i = 0; i < warmup || (i < 4 * warmup && last > 1.25 * best && performance.now() - start < 3000); i++) {
    const t0 = performance.now();
    fn();
    last = performance.now() - t0;
    best = Math.min(best, last);
  }
}

/** Times a synchronous function: median over repeated runs after warm-up. */
export function timeSync(fn: () => void, opts: TimeOptions = {}): Timing {
  const { warmup = 2, minRuns = 5, maxRuns = 200, minTimeMs = 400 } = opts;
  warmSync(fn, warmup);
  const ts: number[] = [];
  const start = performance.now();
  while (ts.length < maxRuns && (ts.length < minRuns || performance.now() - start < minTimeMs)) {
    const t0 = performance.now();
    fn();
    ts.push(performance.now() - t0);
  }
  return { median: median(ts), min: Math.min(...ts), max: Math.max(...ts), runs: ts.length };
}

/** Times an asynchronous function (e.g. an onnxruntime session run): median over repeated runs after warm-up. */
export async function timeAsync(fn: () => Promise<unknown>, opts: TimeOptions = {}): Promise<Timing> {
  const { warmup = 2, minRuns = 5, maxRuns = 200, minTimeMs = 400 } = opts;
  let best = Infinity;
  let last = Infinity;
  const warmStart = performance.now();
  for (let i = 0; i < warmup || (i < 4 * warmup && last > 1.25 * best && performance.now() - warmStart < 3000); i++) {
    const t0 = performance.now();
    await fn();
    last = performance.now() - t0;
    best = Math.min(best, last);
  }
  const ts: number[] = [];
  const start = performance.now();
  while (ts.length < maxRuns && (ts.length < minRuns || performance.now() - start < minTimeMs)) {
    const t0 = performance.now();
    await fn();
    ts.push(performance.now() - t0);
  }
  return { median: median(ts), min: Math.min(...ts), max: Math.max(...ts), runs: ts.length };
}

/**
 * Times several contenders round-robin (one call of each per round, after each one's warm-up), so that they see
 * the same machine state: on a shared machine, load that comes and goes then biases none of them. Returns one
 * Timing per contender (median over the rounds).
 */
export async function timeRoundRobin(fns: (() => unknown)[], opts: TimeOptions = {}): Promise<Timing[]> {
  const { warmup = 2, minRuns = 5, maxRuns = 200, minTimeMs = 400 } = opts;
  for (const fn of fns) {
    let best = Infinity;
    let last = Infinity;
    const warmStart = performance.now();
    for (let i = 0; i < warmup || (i < 4 * warmup && last > 1.25 * best && performance.now() - warmStart < 3000); i++) {
      const t0 = performance.now();
      await fn();
      last = performance.now() - t0;
      best = Math.min(best, last);
    }
  }
  const ts: number[][] = fns.map(() => []);
  const start = performance.now();
  while (ts[0].length < maxRuns && (ts[0].length < minRuns || performance.now() - start < minTimeMs * fns.length)) {
    for (let i = 0; i < fns.length; i++) {
      const t0 = performance.now();
      await fns[i]();
      ts[i].push(performance.now() - t0);
    }
  }
  return ts.map((t) => ({ median: median(t), min: Math.min(...t), max: Math.max(...t), runs: t.length }));
}

// ---------------------------------------------------------------------------------------------- output

/** Formats a number with `digits` significant decimals, or "-" for null/NaN. */
export function fmt(x: number | null | undefined, digits = 3): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return "-";
  if (Number.isInteger(x)) return String(x);
  if (Math.abs(x) >= 1000) return x.toFixed(0);
  if (Math.abs(x) >= 100) return x.toFixed(Math.max(0, digits - 2));
  if (Math.abs(x) >= 10) return x.toFixed(Math.max(0, digits - 1));
  return x.toFixed(digits);
}

/** Prints rows as an aligned text table; `columns` picks and orders the keys. */
export function printTable(title: string, rows: Record<string, unknown>[], columns: string[]): void {
  const cell = (v: unknown): string => (typeof v === "number" ? fmt(v) : v === null || v === undefined ? "-" : String(v));
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (cells: string[]) => cells.map((s, i) => (i === 0 ? s.padEnd(widths[i]) : s.padStart(widths[i]))).join("  ");
  console.log(`\n${title}`);
  console.log(line(columns));
  console.log(line(widths.map((w) => "-".repeat(w))));
  for (const r of rows) console.log(line(columns.map((c) => cell(r[c]))));
  if (columns.includes("met")) console.log(MET_LEGEND);
}

/** The line under a table with a `met` column. */
export const MET_LEGEND = "met: true = this run reached the row's target, false = it missed it, - = the row has no target (the targets are listed in the .md summary)";

/** Writes `<results dir>/<name>.json` (pretty-printed) and returns its path. */
export function writeResults(name: string, data: unknown): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const path = join(RESULTS_DIR, `${name}.json`);
  writeFileSync(path, JSON.stringify(data, null, 2) + "\n");
  return path;
}

// ---------------------------------------------------------------------------------------------- data

/** Deterministic uniform floats in [-1, 1) (xorshift32), for reproducible inputs. */
export function randomF32(n: number, seed = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = (s / 4294967296) * 2 - 1;
  }
  return out;
}

/** A deterministic integer generator in [0, n) (xorshift32). */
export function rng(seed = 1): (n: number) => number {
  let s = seed >>> 0 || 1;
  return (n: number) => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return Math.floor((s / 4294967296) * n);
  };
}

/**
 * `nnz` distinct positions of an `[N, K]` matrix, sorted by flat index (row-major), as flat indices and as CSR
 * by row (rowPtr, col). Duplicate-free: rejection sampling on a bitmap.
 */
export function randomPositions(N: number, K: number, nnz: number, seed = 7): { flat: Int32Array; rowPtr: Int32Array; col: Int32Array } {
  const total = N * K;
  const taken = new Uint8Array(Math.ceil(total / 8));
  const next = rng(seed);
  let count = 0;
  while (count < nnz) {
    const p = next(total);
    if (taken[p >> 3] & (1 << (p & 7))) continue;
    taken[p >> 3] |= 1 << (p & 7);
    count++;
  }
  const flat = new Int32Array(nnz);
  const rowPtr = new Int32Array(N + 1);
  const col = new Int32Array(nnz);
  let j = 0;
  for (let byte = 0; byte < taken.length; byte++) {
    const b = taken[byte];
    if (!b) continue;
    for (let bit = 0; bit < 8; bit++) {
      if (b & (1 << bit)) {
        const p = byte * 8 + bit;
        flat[j] = p;
        const r = Math.floor(p / K);
        col[j] = p - r * K;
        rowPtr[r + 1]++;
        j++;
      }
    }
  }
  for (let r = 0; r < N; r++) rowPtr[r + 1] += rowPtr[r];
  return { flat, rowPtr, col };
}

// ---------------------------------------------------------------------------------------------- ONNX encoder

// A minimal protobuf writer, just enough for onnx.ModelProto (field numbers from onnx/onnx.proto3).
class Pb {
  private parts: number[] = [];
  private chunks: Uint8Array[] = [];
  private flush(): void {
    if (this.parts.length) {
      this.chunks.push(Uint8Array.from(this.parts));
      this.parts = [];
    }
  }
  private varint(v: number | bigint): void {
    let x = BigInt.asUintN(64, BigInt(v));
    while (x >= 0x80n) {
      this.parts.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    this.parts.push(Number(x));
  }
  private key(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }
  int(field: number, v: number): this {
    this.key(field, 0);
    this.varint(v);
    return this;
  }
  float(field: number, v: number): this {
    this.key(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.parts.push(...b);
    return this;
  }
  bytes(field: number, data: Uint8Array): this {
    this.key(field, 2);
    this.varint(data.length);
    this.flush();
    this.chunks.push(data);
    return this;
  }
  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }
  msg(field: number, m: Pb): this {
    return this.bytes(field, m.finish());
  }
  finish(): Uint8Array {
    this.flush();
    const n = this.chunks.reduce((a, c) => a + c.length, 0);
    const out = new Uint8Array(n);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}

const ONNX_FLOAT = 1;

function valueInfo(name: string, dims: number[]): Pb {
  const shape = new Pb();
  for (const d of dims) shape.msg(1, new Pb().int(1, d)); // TensorShapeProto.dim { dim_value }
  const tensorType = new Pb().int(1, ONNX_FLOAT).msg(2, shape); // TypeProto.Tensor { elem_type, shape }
  return new Pb().string(1, name).msg(2, new Pb().msg(1, tensorType)); // ValueInfoProto { name, type { tensor_type } }
}

function tensor(name: string, dims: number[], data: Float32Array): Pb {
  const t = new Pb();
  for (const d of dims) t.int(1, d); // dims
  t.int(2, ONNX_FLOAT); // data_type
  t.string(8, name); // name
  t.bytes(9, new Uint8Array(data.buffer, data.byteOffset, data.byteLength)); // raw_data (little-endian)
  return t;
}

/**
 * ONNX bytes for one `Gemm` node: `y[B,N] = x[B,K] . W[N,K]^T + bias[N]` (`transB = 1`), with `W` and `bias` as
 * initializers (so the runtime may pre-pack W once at session creation, as it would for a real model).
 */
export function onnxGemmModel(B: number, K: number, N: number, w: Float32Array, bias: Float32Array | null): Uint8Array {
  const node = new Pb().string(1, "x").string(1, "W");
  if (bias) node.string(1, "bias");
  node.string(2, "y").string(3, "gemm").string(4, "Gemm");
  node.msg(5, new Pb().string(1, "transB").int(3, 1).int(20, 2)); // AttributeProto { name, i, type = INT }
  const graph = new Pb().msg(1, node).string(2, "gemm_nt");
  graph.msg(5, tensor("W", [N, K], w));
  if (bias) graph.msg(5, tensor("bias", [N], bias));
  graph.msg(11, valueInfo("x", [B, K]));
  graph.msg(12, valueInfo("y", [B, N]));
  return new Pb()
    .int(1, 8) // ir_version
    .string(2, "shira-wasm-bench") // producer_name
    .msg(7, graph)
    .msg(8, new Pb().string(1, "").int(2, 13)) // opset_import { domain "", version 13 }
    .finish();
}
