// Kernel benchmark: our wasm kernels against onnxruntime-web's WASM backend (one Gemm node, transB = 1, W as an
// initializer, one thread) and against our own dense kernels, single thread, medians after warm-up; then gemm_nt and
// the switch on 2 threads against ours on 1 and onnxruntime-web on 2 (the `threads` column).
//
//   node --import tsx bench/run.ts kernels                                       plain SIMD rows
//   node --experimental-wasm-relaxed-simd --import tsx bench/run.ts kernels     + relaxed-SIMD rows
//
// Writes bench/results/kernels.json: [{ case, B, K, N, ours_ms, peer, peer_ms, speedup, ... }], speedup =
// peer_ms / ours_ms (> 1: ours is faster). GFLOP/s columns for the products; `unfused_overhead` =
// (dense + sparse) / dense for the sparse-delta rows (target <= 1.10).
// onnxruntime-web (a devDependency) is imported in run(), not at the top: the `shira` bundle contains this module,
// and a static import of a missing package would stop every `shira` command of an installed package.
import type * as Ort from "onnxruntime-web";
import { createRuntime, type Runtime, type F32Buffer, type I32Buffer } from "../src/node.js";
import type { BenchOptions } from "./registry.js";
import { writeSummary } from "./report.js";
import { onnxGemmModel, printTable, randomF32, randomPositions, timeRoundRobin, timeSync, writeResults, type TimeOptions } from "./common.js";

let ort: typeof Ort;

export interface KernelRow {
  case: string;
  B: number;
  K: number;
  N: number;
  ours_ms: number;
  peer: string;
  peer_ms: number;
  speedup: number;
  ours_gflops?: number | null;
  peer_gflops?: number | null;
  unfused_overhead?: number | null;
  note?: string;
  /** Threads that ran ours (1 unless the row says otherwise). */
  threads?: number;
}

const GEMM_CASES: [number, number, number][] = [
  [1, 4096, 4096],
  [8, 4096, 4096],
  [128, 4096, 4096],
  [1, 4096, 11008],
  [128, 4096, 11008],
];
const SPARSE_SHAPES: [number, number][] = [
  [4096, 4096],
  [11008, 4096],
];
const SPARSE_BATCHES = [1, 8, 128];
/** SHiRA's parameter budget: nnz = r (N + K), r = 32. */
const R = 32;

const gflops = (B: number, K: number, N: number, ms: number) => (2 * B * K * N) / ms / 1e6;

function timing(opts: BenchOptions, heavy: boolean): TimeOptions {
  if (opts.quick) return { warmup: 1, minRuns: 3, maxRuns: 5, minTimeMs: 0 };
  return heavy ? { warmup: 2, minRuns: 7, maxRuns: 15, minTimeMs: 1500 } : { warmup: 3, minRuns: 11, maxRuns: 200, minTimeMs: 600 };
}

/** Whether this Node accepts the relaxed-SIMD build (Node 20: only under --experimental-wasm-relaxed-simd). */
function relaxedRuntime(): Runtime | null {
  try {
    return createRuntime({ variant: "relaxed-simd" });
  } catch {
    return null;
  }
}

/** Warms up the JIT tiers of a runtime's kernels on small inputs (Liftoff -> TurboFan tier-up happens per call). */
function warmKernels(rt: Runtime): void {
  const x = rt.allocF32(randomF32(16 * 300, 1));
  const w = rt.allocF32(randomF32(64 * 300, 2));
  const y = rt.allocF32(16 * 64);
  for (let i = 0; i < 20; i++) for (const B of [1, 2, 8, 16]) rt.k.f32_gemm_nt(x.ptr, w.ptr, 0, y.ptr, B, 300, 64, 0);
  x.free();
  w.free();
  y.free();
}

async function gemmRows(rt: Runtime, relaxed: Runtime | null, opts: BenchOptions, log: (s: string) => void): Promise<KernelRow[]> {
  const rows: KernelRow[] = [];
  const cases = opts.quick ? GEMM_CASES.filter(([B, , N]) => B <= 8 && N === 4096) : GEMM_CASES;
  for (const [B, K, N] of cases) {
    const w = randomF32(N * K, 3);
    const bias = randomF32(N, 4);
    const x = randomF32(B * K, 5);
    const heavy = B * K * N > 1e9;
    // peer: onnxruntime-web
    const session = await ortSession(B, K, N, w, bias);
    const feeds = { x: new ort.Tensor("float32", x, [B, K]) };
    const peerOut = (await session.run(feeds)).y.data as Float32Array;
    // ours: the plain-SIMD build, and the relaxed-SIMD build when this Node accepts it
    const setup = (r: Runtime) => {
      const bufs = { w: r.allocF32(w), b: r.allocF32(bias), x: r.allocF32(x), y: r.allocF32(B * N) };
      const call = () => r.k.f32_gemm_nt(bufs.x.ptr, bufs.w.ptr, bufs.b.ptr, bufs.y.ptr, B, K, N, 0);
      call();
      const err = maxRelDiff(bufs.y.view, peerOut);
      if (err > 1e-3) throw new Error(`gemm_nt ${B}x${K}x${N} (${r.variant}): result differs from onnxruntime-web (max rel diff ${err})`);
      return { call, free: () => Object.values(bufs).forEach((b) => b.free()) };
    };
    const plain = setup(rt);
    const rx = relaxed ? setup(relaxed) : null;
    // round-robin: onnxruntime-web, ours, ours relaxed see the same machine state
    const fns: (() => unknown)[] = [() => session.run(feeds), plain.call];
    if (rx) fns.push(rx.call);
    const [peer, ours, oursRx] = await timeRoundRobin(fns, timing(opts, heavy));
    await session.release();
    plain.free();
    rx?.free();
    rows.push({
      case: "gemm_nt",
      B,
      K,
      N,
      ours_ms: ours.median,
      peer: "onnxruntime-web (wasm, 1 thread)",
      peer_ms: peer.median,
      speedup: peer.median / ours.median,
      ours_gflops: gflops(B, K, N, ours.median),
      peer_gflops: gflops(B, K, N, peer.median),
    });
    log(`  gemm_nt B=${B} K=${K} N=${N}: ours ${ours.median.toFixed(2)} ms${oursRx ? `, relaxed ${oursRx.median.toFixed(2)} ms` : ""}, onnxruntime-web ${peer.median.toFixed(2)} ms`);
    if (oursRx) {
      rows.push({
        case: "gemm_nt relaxed-simd",
        B,
        K,
        N,
        ours_ms: oursRx.median,
        peer: "ours (plain simd)",
        peer_ms: ours.median,
        speedup: ours.median / oursRx.median,
        ours_gflops: gflops(B, K, N, oursRx.median),
        peer_gflops: gflops(B, K, N, ours.median),
      });
      rows.push({
        case: "gemm_nt relaxed-simd",
        B,
        K,
        N,
        ours_ms: oursRx.median,
        peer: "onnxruntime-web (wasm, 1 thread)",
        peer_ms: peer.median,
        speedup: peer.median / oursRx.median,
        ours_gflops: gflops(B, K, N, oursRx.median),
        peer_gflops: gflops(B, K, N, peer.median),
      });
    }
  }
  return rows;
}

/** Threads of the thread rows (this machine's 2 cores; ours against ours on 1 thread and onnxruntime-web on as many). */
const THREADS = 2;

/** An onnxruntime-web session of one Gemm node (this process's backend runs one thread). */
function ortSession(B: number, K: number, N: number, w: Float32Array, bias: Float32Array): Promise<Ort.InferenceSession> {
  return ort.InferenceSession.create(onnxGemmModel(B, K, N, w, bias), { executionProviders: ["wasm"] });
}

/**
 * The child that times onnxruntime-web on `threads` threads: its WASM backend takes `ort.env.wasm.numThreads` once, when
 * it starts, so the threaded peer runs in a process of its own (right after ours, not interleaved).
 */
const ORT_CHILD = `
const a = JSON.parse(process.env.SHIRA_ORT_CHILD);
const ort = await import(a.ort);
const fs = await import("node:fs");
ort.env.wasm.numThreads = a.threads;
ort.env.wasm.simd = true;
const s = await ort.InferenceSession.create(fs.readFileSync(a.model), { executionProviders: ["wasm"] });
const x = new Float32Array(fs.readFileSync(a.x).buffer.slice(0));
const feeds = { x: new ort.Tensor("float32", x, [a.B, a.K]) };
for (let i = 0; i < a.warmup; i++) await s.run(feeds);
const ts = [];
const start = performance.now();
while (ts.length < a.maxRuns && (ts.length < a.minRuns || performance.now() - start < a.minTimeMs)) {
  const t0 = performance.now();
  await s.run(feeds);
  ts.push(performance.now() - t0);
}
ts.sort((p, q) => p - q);
const m = ts.length >> 1;
console.log(JSON.stringify({ median: ts.length % 2 ? ts[m] : (ts[m - 1] + ts[m]) / 2, runs: ts.length }));
`;

async function ortThreadedMs(B: number, K: number, N: number, w: Float32Array, bias: Float32Array, x: Float32Array, threads: number, t: TimeOptions): Promise<number> {
  const { mkdtempSync, writeFileSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const { execFileSync } = await import("node:child_process");
  const dir = mkdtempSync(join(tmpdir(), "shira-ort-"));
  try {
    writeFileSync(join(dir, "model.onnx"), onnxGemmModel(B, K, N, w, bias));
    writeFileSync(join(dir, "x.bin"), new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
    const args = { ort: import.meta.resolve("onnxruntime-web"), threads, model: join(dir, "model.onnx"), x: join(dir, "x.bin"), B, K, warmup: Math.max(2, t.warmup ?? 2), minRuns: t.minRuns ?? 5, maxRuns: t.maxRuns ?? 200, minTimeMs: t.minTimeMs ?? 400 };
    writeFileSync(join(dir, "child.mjs"), ORT_CHILD); // a file, not -e: ORT's workers inherit execArgv
    const out = execFileSync(process.execPath, [join(dir, "child.mjs")], { env: { ...process.env, SHIRA_ORT_CHILD: JSON.stringify(args) }, encoding: "utf8", maxBuffer: 1 << 20 });
    return (JSON.parse(out.trim().split("\n").pop()!) as { median: number }).median;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const THREAD_CASES: [number, number, number][] = [
  [1, 4096, 4096],
  [8, 4096, 4096],
  [128, 4096, 4096],
  [128, 4096, 11008],
];

/**
 * gemm_nt and the single-sweep switch on THREADS threads: ours (the plain-SIMD build) against ours on one thread and
 * against onnxruntime-web on THREADS threads, round robin. Ours on THREADS threads must equal ours on one bit for bit.
 */
async function threadRows(one: Runtime, opts: BenchOptions, log: (s: string) => void): Promise<KernelRow[]> {
  const many = createRuntime({ variant: "simd", threads: THREADS });
  if (many.threads !== THREADS) throw new Error(`kernels: cannot run ${THREADS} threads here: ${many.threadsLimitedBy}`);
  const rows: KernelRow[] = [];
  const cases = opts.quick ? THREAD_CASES.filter(([B, , N]) => B <= 8 && N === 4096) : THREAD_CASES;
  try {
    for (const [B, K, N] of cases) {
      const w = randomF32(N * K, 3);
      const bias = randomF32(N, 4);
      const x = randomF32(B * K, 5);
      const setup = (r: Runtime) => {
        const bufs = { w: r.allocF32(w), b: r.allocF32(bias), x: r.allocF32(x), y: r.allocF32(B * N) };
        const call = () => r.k.f32_gemm_nt(bufs.x.ptr, bufs.w.ptr, bufs.b.ptr, bufs.y.ptr, B, K, N, 0);
        call();
        return { call, out: () => bufs.y.toArray(), free: () => Object.values(bufs).forEach((b) => b.free()) };
      };
      const a = setup(one);
      const b = setup(many);
      const ya = new Uint32Array(a.out().buffer);
      const yb = new Uint32Array(b.out().buffer);
      if (!ya.every((v, i) => v === yb[i])) throw new Error(`gemm_nt ${B}x${K}x${N}: ${THREADS} threads differ from 1 thread`);
      const t = timing(opts, B * K * N > 1e9);
      const [ours1, oursN] = await timeRoundRobin([a.call, b.call], t);
      a.free();
      b.free();
      const peer = { median: await ortThreadedMs(B, K, N, w, bias, x, THREADS, t) };
      const base = { B, K, N, ours_ms: oursN.median, ours_gflops: gflops(B, K, N, oursN.median), threads: THREADS };
      rows.push({ case: `gemm_nt, ${THREADS} threads`, ...base, peer: "ours, 1 thread", peer_ms: ours1.median, speedup: ours1.median / oursN.median, peer_gflops: gflops(B, K, N, ours1.median) });
      rows.push({ case: `gemm_nt, ${THREADS} threads`, ...base, peer: `onnxruntime-web (wasm, ${THREADS} threads)`, peer_ms: peer.median, speedup: peer.median / oursN.median, peer_gflops: gflops(B, K, N, peer.median) });
      log(`  gemm_nt B=${B} K=${K} N=${N}, ${THREADS} threads: ours ${oursN.median.toFixed(2)} ms (1 thread ${ours1.median.toFixed(2)} ms), onnxruntime-web ${peer.median.toFixed(2)} ms`);
    }
    // the single-sweep switch A -> B on one [11008, 4096] weight, r = 32 each
    const [N, K] = [11008, 4096];
    const nnz = R * (N + K);
    const pa = randomPositions(N, K, nnz, 31).flat;
    const pb = randomPositions(N, K, nnz, 32).flat;
    const setup = (r: Runtime) => {
      const bufs = { w: r.allocF32(randomF32(N * K, 33)), ia: r.allocI32(pa), sa: r.allocF32(nnz), ib: r.allocI32(pb), sb: r.allocF32(nnz), vb: r.allocF32(randomF32(nnz, 34)) };
      r.k.f32_gather(bufs.w.ptr, bufs.ia.ptr, bufs.sa.ptr, nnz);
      // A -> B, then B -> A: the weight returns to the same state every second call
      let ab = true;
      const call = () => {
        if (ab) r.k.f32_switch_merge(bufs.w.ptr, bufs.ia.ptr, bufs.sa.ptr, nnz, bufs.ib.ptr, bufs.sb.ptr, bufs.vb.ptr, 1e-3, nnz);
        else r.k.f32_switch_merge(bufs.w.ptr, bufs.ib.ptr, bufs.sb.ptr, nnz, bufs.ia.ptr, bufs.sa.ptr, bufs.vb.ptr, 1e-3, nnz);
        ab = !ab;
      };
      return { call, free: () => Object.values(bufs).forEach((b) => b.free()) };
    };
    const a = setup(one);
    const b = setup(many);
    const [s1, sN] = await timeRoundRobin([a.call, b.call], timing(opts, false));
    a.free();
    b.free();
    rows.push({ case: `switch_merge A→B, ${THREADS} threads`, B: 0, K, N, ours_ms: sN.median, peer: "ours, 1 thread", peer_ms: s1.median, speedup: s1.median / sN.median, threads: THREADS, note: `nnz = ${nnz} per adapter` });
    log(`  switch_merge [${N}, ${K}], ${THREADS} threads: ${sN.median.toFixed(2)} ms (1 thread ${s1.median.toFixed(2)} ms)`);
  } finally {
    many.dispose();
  }
  return rows;
}

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / Math.max(m, 1e-30);
}

/** Scatter/gather (the fused switch) and the LoRA fuse against a dense copy of the same weight. */
function switchRows(rt: Runtime, opts: BenchOptions, log: (s: string) => void): KernelRow[] {
  const [N, K] = [11008, 4096];
  const nnz = R * (N + K);
  const pos = randomPositions(N, K, nnz, 11);
  const w = rt.allocF32(randomF32(N * K, 12));
  const dst = rt.allocF32(N * K);
  const idx = rt.allocI32(pos.flat);
  const v = rt.allocF32(randomF32(nnz, 13));
  const base = rt.allocF32(nnz);
  const t = timing(opts, false);
  const copy = timeSync(() => rt.k.f32_copy(w.ptr, dst.ptr, N * K), t);
  const rows: KernelRow[] = [];
  const add = (name: string, ms: number, extra: Partial<KernelRow> = {}) => {
    const note = extra.note ?? `nnz = ${nnz}, ${(nnz / ms / 1e3).toFixed(0)} M positions/s (copy: ${((8 * N * K) / copy.median / 1e6).toFixed(1)} GB/s read+write)`;
    rows.push({ case: name, B: 0, K, N, ours_ms: ms, peer: "dense copy of W (f32_copy = memory.copy)", peer_ms: copy.median, speedup: copy.median / ms, ...extra, note });
    log(`  ${name} [${N}, ${K}], nnz ${nnz}: ${ms.toFixed(3)} ms (dense copy ${copy.median.toFixed(2)} ms)`);
  };
  add("gather (save base)", timeSync(() => rt.k.f32_gather(w.ptr, idx.ptr, base.ptr, nnz), t).median);
  add("scatter_add (fuse)", timeSync(() => rt.k.f32_scatter_add(w.ptr, idx.ptr, v.ptr, 1e-3, nnz), t).median);
  add("scatter_set (restore)", timeSync(() => rt.k.f32_scatter_set(w.ptr, idx.ptr, base.ptr, nnz), t).median);
  add("scatter_set_add", timeSync(() => rt.k.f32_scatter_set_add(w.ptr, idx.ptr, base.ptr, v.ptr, 1e-3, nnz), t).median);
  // LoRA baseline fuse at the same parameter count: W += s * B[N, r] A[r, K]
  const bm = rt.allocF32(randomF32(N * R, 14));
  const a = rt.allocF32(randomF32(R * K, 15));
  const lr = timeSync(() => rt.k.f32_lowrank_fuse(w.ptr, bm.ptr, a.ptr, 1e-6, N, K, R), timing(opts, true)).median;
  add(`lowrank_fuse r=${R}`, lr, { ours_gflops: gflops(N, R, K, lr), note: "LoRA fuse W += s B A" });
  for (const b of [w, dst, idx, v, base, bm, a] as (F32Buffer | I32Buffer)[]) b.free();
  return rows;
}

/** The unfused sparse delta (spmm) against the dense forward of the same layer, and the SDDMM gradient. */
async function sparseRows(rt: Runtime, opts: BenchOptions, log: (s: string) => void): Promise<KernelRow[]> {
  const rows: KernelRow[] = [];
  const shapes = opts.quick ? SPARSE_SHAPES.slice(0, 1) : SPARSE_SHAPES;
  for (const [N, K] of shapes) {
    const nnz = R * (N + K);
    const pos = randomPositions(N, K, nnz, 21);
    const w = rt.allocF32(randomF32(N * K, 22));
    const rowPtr = rt.allocI32(pos.rowPtr);
    const idx = rt.allocI32(pos.flat);
    const val = rt.allocF32(randomF32(nnz, 23));
    for (const B of SPARSE_BATCHES) {
      const x = rt.allocF32(randomF32(B * K, 24));
      const y = rt.allocF32(B * N);
      const scratch = rt.allocF32(Math.max(1, rt.k.f32_spmm_csr_scratch(B, K, N)));
      const heavy = B * K * N > 1e9;
      const [d, s] = await timeRoundRobin(
        [() => rt.k.f32_gemm_nt(x.ptr, w.ptr, 0, y.ptr, B, K, N, 0), () => rt.k.f32_spmm_csr(x.ptr, rowPtr.ptr, idx.ptr, K, val.ptr, 1, y.ptr, B, K, N, scratch.ptr)],
        timing(opts, heavy),
      );
      const [dense, sp] = [d.median, s.median];
      rows.push({
        case: "spmm_csr (unfused delta)",
        B,
        K,
        N,
        ours_ms: sp,
        peer: "gemm_nt dense forward (ours)",
        peer_ms: dense,
        speedup: dense / sp,
        ours_gflops: (2 * B * nnz) / sp / 1e6,
        peer_gflops: gflops(B, K, N, dense),
        unfused_overhead: (dense + sp) / dense,
        note: `nnz = ${nnz} (${((100 * nnz) / (N * K)).toFixed(2)} %)`,
      });
      log(`  spmm B=${B} [${N}, ${K}]: ${sp.toFixed(3)} ms vs dense ${dense.toFixed(2)} ms (unfused overhead x${((dense + sp) / dense).toFixed(3)})`);
      for (const b of [x, y, scratch]) b.free();
    }
    for (const b of [w, rowPtr, idx, val] as (F32Buffer | I32Buffer)[]) b.free();
  }
  // SDDMM (the sparse-value gradient) against the dense weight gradient, MLP training shape at batch 64
  {
    const [B, N, K] = [64, 1024, 1024];
    const nnz = R * (N + K);
    const pos = randomPositions(N, K, nnz, 31);
    const gy = rt.allocF32(randomF32(B * N, 32));
    const x = rt.allocF32(randomF32(B * K, 33));
    const rowPtr = rt.allocI32(pos.rowPtr);
    const idx = rt.allocI32(pos.flat);
    const g = rt.allocF32(nnz);
    const gw = rt.allocF32(N * K);
    const scratch = rt.allocF32(rt.k.f32_sddmm_csr_scratch(B, K, N));
    const [d, s] = await timeRoundRobin(
      [() => rt.k.f32_gemm_tn(gy.ptr, x.ptr, gw.ptr, B, N, K, 0), () => rt.k.f32_sddmm_csr(gy.ptr, x.ptr, rowPtr.ptr, idx.ptr, K, g.ptr, 1, B, K, N, 0, scratch.ptr)],
      timing(opts, false),
    );
    const [dense, sd] = [d.median, s.median];
    rows.push({
      case: "sddmm_csr (sparse grad)",
      B,
      K,
      N,
      ours_ms: sd,
      peer: "gemm_tn dense weight gradient (ours)",
      peer_ms: dense,
      speedup: dense / sd,
      ours_gflops: (2 * B * nnz) / sd / 1e6,
      peer_gflops: gflops(B, K, N, dense),
      note: `nnz = ${nnz}`,
    });
    log(`  sddmm B=${B} [${N}, ${K}]: ${sd.toFixed(3)} ms vs gemm_tn ${dense.toFixed(2)} ms`);
    for (const b of [gy, x, rowPtr, idx, g, gw, scratch] as (F32Buffer | I32Buffer)[]) b.free();
  }
  return rows;
}

export async function run(opts: BenchOptions = {}): Promise<KernelRow[]> {
  ort = await import("onnxruntime-web");
  ort.env.wasm.numThreads = 1; // the thread rows run onnxruntime-web on THREADS threads in a child process
  ort.env.wasm.simd = true;
  const log = opts.json ? () => {} : (opts.log ?? ((s: string) => console.log(s)));
  const rt = createRuntime({ variant: "simd" });
  const relaxed = relaxedRuntime();
  warmKernels(rt);
  if (relaxed) warmKernels(relaxed);
  log(`kernels: plain SIMD build${relaxed ? " + relaxed-SIMD build" : " (relaxed SIMD not available: run node with --experimental-wasm-relaxed-simd for its rows)"}`);
  const rows: KernelRow[] = [];
  rows.push(...(await gemmRows(rt, relaxed, opts, log)));
  rows.push(...(await sparseRows(rt, opts, log)));
  rows.push(...switchRows(rt, opts, log));
  rows.push(...(await threadRows(rt, opts, log)));
  for (const r of rows) r.threads ??= 1;
  if (!opts.json) {
    printTable(
      "kernels (median ms, single thread; speedup = peer_ms / ours_ms)",
      rows.map((r) => ({ ...r, overhead: r.unfused_overhead ?? null })),
      ["case", "threads", "B", "K", "N", "ours_ms", "peer", "peer_ms", "speedup", "ours_gflops", "peer_gflops", "overhead"],
    );
  }
  const path = writeResults("kernels", rows);
  const gemm = rows.filter((r) => r.case.startsWith("gemm_nt") && r.peer.startsWith("onnxruntime"));
  const shapes = [...new Set(gemm.map((r) => `${r.B}×${r.K}×${r.N}`))];
  const gflops = (c: string, key: "ours_gflops" | "peer_gflops") => shapes.map((s) => gemm.find((r) => r.case === c && `${r.B}×${r.K}×${r.N}` === s)?.[key] ?? NaN);
  const md = writeSummary("kernels", {
    title: "Kernels: dense matmul against onnxruntime-web; sparse and switching kernels against dense",
    intro: [
      "`y[B,N] = x[B,K]·W[N,K]ᵀ`: ours (plain SIMD, and relaxed SIMD when this Node accepts it) against onnxruntime-web's WASM backend " +
        "(1 thread, one `Gemm` node, `transB = 1`, `W` as an initializer), timed round robin. Sparse rows compare the unfused delta " +
        "(CSR), the masked-matmul gradient and the switching kernels with the dense work they replace. " +
        `Rows with ${THREADS} threads: ours on a ${THREADS}-thread runtime (kernels split over the threads, bit-identical to 1 thread) against ours on 1 thread (round robin) and against onnxruntime-web with \`ort.env.wasm.numThreads = ${THREADS}\` (its backend reads the thread count once per process, so it runs in a child process right after ours).`,
    ],
    rows: rows.map((r) => ({ ...r, case: r.B ? `${r.case} B=${r.B} K=${r.K} N=${r.N}` : `${r.case} [${r.N}×${r.K}]` })),
    chart: {
      title: "gemm_nt GFLOP/s (B×K×N), higher is better",
      categories: shapes,
      series: [
        { name: "ours (plain SIMD)", color: "#1f77b4", values: gflops("gemm_nt", "ours_gflops") },
        ...(relaxed ? [{ name: "ours (relaxed SIMD)", color: "#2a9d8f", values: gflops("gemm_nt relaxed-simd", "ours_gflops") }] : []),
        { name: "onnxruntime-web", color: "#ff7f0e", values: gflops("gemm_nt", "peer_gflops") },
        { name: `ours (plain SIMD), ${THREADS} threads`, color: "#17becf", values: gflops(`gemm_nt, ${THREADS} threads`, "ours_gflops") },
      ],
      yLabel: "GFLOP/s",
    },
  });
  log(`wrote ${path}, ${md.join(", ")}`);
  return rows;
}
