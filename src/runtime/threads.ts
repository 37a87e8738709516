/**
 * The thread pool: workers that share the runtime's wasm memory (one `WebAssembly.Memory` with `shared: true`, one
 * instance of the same module per worker) and run their part of a kernel while the calling thread runs part 0.
 *
 * Protocol (a control block in its own `SharedArrayBuffer`, no allocation per call):
 *
 *   host:    args row t <- the arguments of part t (t = 0..nt-1); OP <- kernel index; NT <- nt;
 *            PENDING <- nt - 1; GEN += 1; notify(GEN)          then runs part 0 itself
 *   worker:  waits until GEN changes (a short spin, then Atomics.wait); if its t < NT runs part t;
 *            PENDING -= 1 (the last one notifies PENDING)
 *   host:    waits until PENDING == 0 (Atomics.wait where the thread may block, else a spin: browsers' main
 *            thread may not block)
 *
 * Kernels are split so that every output element is computed by exactly one part, by the same code path and in the
 * same order as the one-thread kernel (`*_mt` kernels in assembly/, or index/row ranges computed here): results do
 * not depend on the number of threads, bit for bit.
 *
 * A worker never allocates: the host allocates each worker's scratch (`thread_scratch_bytes`) and hands it over at
 * start (a worker's heap globals would otherwise describe a second heap over the same memory).
 */
import { RuntimeError } from "../errors.js";

/** Most threads a pool runs (including the calling thread). */
export const MAX_THREADS = 16;
/** Most arguments of a kernel call through the pool. */
const MAX_ARGS = 24;

// Int32 slots of the control block
const GEN = 0;
const PENDING = 1;
const OP = 2;
const NT = 3;
const NARGS = 4;
const ERROR = 5; // 1 + the part that failed first
const READY = 6; // workers started
const FAILED = 7; // workers that failed to start
const ARGS_BYTE_OFFSET = 64;

/** Spins of a waiting worker before it blocks in Atomics.wait (~10-30 µs: consecutive kernels of one forward pass
 * arrive within that, and a blocked worker takes ~50 µs to wake). */
const WORKER_SPIN = 20000;
/** Spins of the host before it blocks (it usually finishes its own part last). */
const HOST_SPIN = 200000;

/**
 * The worker's source: plain JavaScript run by Node's `worker_threads` (`eval`) or a browser `Worker` (a blob URL).
 * It receives { module, memory, ctl, t, names, scratch }, instantiates the module on the shared memory, takes its
 * scratch, reports ready, then serves kernel calls until OP is -1.
 */
const WORKER_SOURCE = `"use strict";
const GEN = ${GEN}, PENDING = ${PENDING}, OP = ${OP}, NT = ${NT}, NARGS = ${NARGS}, ERROR = ${ERROR}, READY = ${READY}, FAILED = ${FAILED};
const MAX_ARGS = ${MAX_ARGS}, SPIN = ${WORKER_SPIN};
function serve(d, post) {
  const ctl = new Int32Array(d.ctl, 0, 16);
  const args = new Float64Array(d.ctl, ${ARGS_BYTE_OFFSET});
  let fns;
  try {
    const inst = new WebAssembly.Instance(d.module, { env: { memory: d.memory, abort(msg, file, line, col) { throw new Error("wasm abort at " + line + ":" + col); } } });
    inst.exports.thread_set_scratch(d.scratch);
    fns = d.names.map((n) => inst.exports[n]);
  } catch (e) {
    Atomics.add(ctl, FAILED, 1);
    Atomics.notify(ctl, READY);
    post({ error: String(e && e.message || e) });
    return;
  }
  let gen = Atomics.load(ctl, GEN);
  Atomics.add(ctl, READY, 1);
  Atomics.notify(ctl, READY);
  post({ ready: true });
  const t = d.t;
  const row = new Array(MAX_ARGS);
  for (;;) {
    let g = Atomics.load(ctl, GEN);
    for (let i = 0; g === gen && i < SPIN; i++) g = Atomics.load(ctl, GEN);
    while (g === gen) {
      Atomics.wait(ctl, GEN, gen);
      g = Atomics.load(ctl, GEN);
    }
    gen = g;
    const op = Atomics.load(ctl, OP);
    if (op < 0) return;
    if (t >= Atomics.load(ctl, NT)) continue;
    try {
      const n = ctl[NARGS], base = t * MAX_ARGS;
      row.length = n;
      for (let i = 0; i < n; i++) row[i] = args[base + i];
      fns[op].apply(null, row);
    } catch (e) {
      Atomics.compareExchange(ctl, ERROR, 0, t + 1);
      post({ error: String(e && e.message || e) });
    }
    if (Atomics.sub(ctl, PENDING, 1) === 1) Atomics.notify(ctl, PENDING);
  }
}
if (typeof require === "function") {
  const wt = require("node:worker_threads");
  serve(wt.workerData, (m) => wt.parentPort.postMessage(m));
} else {
  self.onmessage = (e) => serve(e.data, (m) => self.postMessage(m));
}
`;

interface WorkerHandle {
  terminate(): void;
  lastError: string | null;
}

/** What starting a pool needs from the runtime. */
export interface PoolInit {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  /** Export names the pool may call (index = op). */
  names: readonly string[];
  /** Total threads, including the calling one (>= 2). */
  threads: number;
  /** Scratch areas of the workers (threads - 1 pointers into the shared memory). */
  scratch: readonly number[];
}

type NodeWorkerThreads = {
  Worker: new (src: string, opts: { eval: true; workerData: unknown }) => {
    unref(): void;
    terminate(): Promise<number>;
    on(ev: string, fn: (m: unknown) => void): void;
  };
};

/** Node's worker_threads, when running on Node (no static import: the browser bundle has no Node built-ins). */
function nodeWorkerThreads(): NodeWorkerThreads | null {
  const p = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown; versions?: { node?: string } } }).process;
  if (!p?.versions?.node || typeof p.getBuiltinModule !== "function") return null;
  return p.getBuiltinModule("node:worker_threads") as NodeWorkerThreads;
}

/** Whether this thread may block in Atomics.wait (not a browser's main thread). */
function mayBlock(ctl: Int32Array): boolean {
  try {
    Atomics.wait(ctl, 15, 1, 0);
    return true;
  } catch {
    return false;
  }
}

/** A pool of threads - 1 workers plus the calling thread. */
export class ThreadPool {
  /** Threads that run kernels, including the calling thread. */
  readonly size: number;
  readonly #ctl: Int32Array;
  readonly #args: Float64Array;
  readonly #names: readonly string[];
  readonly #ops = new Map<string, number>();
  readonly #workers: WorkerHandle[] = [];
  readonly #block: boolean;
  #stopped = false;

  private constructor(init: PoolInit) {
    this.size = init.threads;
    const sab = new SharedArrayBuffer(ARGS_BYTE_OFFSET + 8 * MAX_ARGS * MAX_THREADS);
    this.#ctl = new Int32Array(sab, 0, 16);
    this.#args = new Float64Array(sab, ARGS_BYTE_OFFSET);
    this.#names = init.names;
    init.names.forEach((n, i) => this.#ops.set(n, i));
    this.#block = mayBlock(this.#ctl);
    const nodeWt = nodeWorkerThreads();
    for (let t = 1; t < init.threads; t++) {
      const data = { module: init.module, memory: init.memory, ctl: sab, t, names: init.names, scratch: init.scratch[t - 1] };
      const handle: WorkerHandle = { terminate: () => {}, lastError: null };
      const onMessage = (m: unknown) => {
        const e = (m as { error?: string } | null)?.error;
        if (e) handle.lastError = e;
      };
      if (nodeWt) {
        const w = new nodeWt.Worker(WORKER_SOURCE, { eval: true, workerData: data });
        w.on("message", onMessage);
        w.on("error", (err) => {
          handle.lastError = String((err as Error)?.message ?? err);
          Atomics.add(this.#ctl, FAILED, 1);
          Atomics.notify(this.#ctl, READY);
        });
        w.unref(); // after the listeners (a 'message' listener refs the worker): an idle pool never keeps Node alive
        handle.terminate = () => void w.terminate();
      } else {
        const url = URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "text/javascript" }));
        const w = new Worker(url, { name: `shira-wasm thread ${t}` });
        URL.revokeObjectURL(url);
        w.onmessage = (e) => onMessage(e.data);
        w.onerror = (e) => {
          handle.lastError = e.message;
          Atomics.add(this.#ctl, FAILED, 1);
          Atomics.notify(this.#ctl, READY);
        };
        w.postMessage(data);
        handle.terminate = () => w.terminate();
      }
      this.#workers.push(handle);
    }
  }

  /** Whether workers can be started and waited for synchronously here (Node). */
  static canStartSync(): boolean {
    return nodeWorkerThreads() !== null;
  }

  /** Starts a pool and blocks until every worker is ready (Node only). */
  static startSync(init: PoolInit): ThreadPool {
    const pool = new ThreadPool(init);
    const deadline = Date.now() + 30_000;
    for (;;) {
      const done = Atomics.load(pool.#ctl, READY) + Atomics.load(pool.#ctl, FAILED);
      if (done >= init.threads - 1) break;
      if (Date.now() > deadline) break;
      Atomics.wait(pool.#ctl, READY, Atomics.load(pool.#ctl, READY), 100);
    }
    pool.#checkStarted();
    return pool;
  }

  /** Starts a pool and resolves when every worker is ready (browsers: workers start once the caller yields). */
  static async start(init: PoolInit): Promise<ThreadPool> {
    const pool = new ThreadPool(init);
    const deadline = Date.now() + 30_000;
    for (;;) {
      const done = Atomics.load(pool.#ctl, READY) + Atomics.load(pool.#ctl, FAILED);
      if (done >= init.threads - 1 || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 2));
    }
    pool.#checkStarted();
    return pool;
  }

  #checkStarted(): void {
    const ready = Atomics.load(this.#ctl, READY);
    if (ready === this.size - 1) return;
    const why = this.#workers.map((w) => w.lastError).find((e) => e) ?? "timed out after 30 s";
    this.stop();
    throw new RuntimeError("THREADS", `shira-wasm: could not start ${this.size - 1} worker threads (${ready} started): ${why}`, { threads: this.size, started: ready });
  }

  /** Index of an export the pool can call, or -1. */
  op(name: string): number {
    return this.#ops.get(name) ?? -1;
  }

  /**
   * Runs export `op` once per part: part t with `parts[t]` (t = 0 here, the others on the workers), and returns when
   * every part has finished. `parts.length` is at most {@link size}.
   */
  run(op: number, fn: (...a: number[]) => unknown, parts: readonly (readonly number[])[]): void {
    const nt = parts.length;
    if (nt === 1 || this.#stopped) {
      for (const p of parts) fn(...p);
      return;
    }
    const ctl = this.#ctl;
    const args = this.#args;
    const n = parts[0].length;
    if (n > MAX_ARGS) throw new RuntimeError("THREADS", `thread pool: ${this.#names[op]} takes ${n} arguments (at most ${MAX_ARGS})`);
    for (let t = 1; t < nt; t++) {
      const row = parts[t];
      for (let i = 0; i < n; i++) args[t * MAX_ARGS + i] = row[i];
    }
    ctl[OP] = op;
    ctl[NT] = nt;
    ctl[NARGS] = n;
    ctl[ERROR] = 0;
    Atomics.store(ctl, PENDING, nt - 1);
    Atomics.add(ctl, GEN, 1);
    Atomics.notify(ctl, GEN);
    let failure: unknown = null;
    try {
      fn(...parts[0]);
    } catch (e) {
      failure = e;
    }
    let p = Atomics.load(ctl, PENDING);
    for (let i = 0; p !== 0 && i < HOST_SPIN; i++) p = Atomics.load(ctl, PENDING);
    while (p !== 0) {
      if (this.#block) Atomics.wait(ctl, PENDING, p, 1000);
      p = Atomics.load(ctl, PENDING);
    }
    if (failure) throw failure;
    const bad = Atomics.load(ctl, ERROR);
    if (bad) {
      const msg = this.#workers[bad - 2]?.lastError;
      throw new RuntimeError("THREADS", `shira-wasm: ${this.#names[op]} failed on worker thread ${bad - 1}${msg ? `: ${msg}` : ""}`, { thread: bad - 1, kernel: this.#names[op] });
    }
  }

  /** Stops the workers (they leave their loop and are terminated). Idempotent. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    Atomics.store(this.#ctl, OP, -1);
    Atomics.add(this.#ctl, GEN, 1);
    Atomics.notify(this.#ctl, GEN);
    for (const w of this.#workers) w.terminate();
  }

  get stopped(): boolean {
    return this.#stopped;
  }
}
