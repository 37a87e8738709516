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
`;

/** The browser's bootstrap of a worker: the data arrives as the first message. */
const BROWSER_BOOT = "self.onmessage = (e) => serve(e.data, (m) => self.postMessage(m));\n";

/** A started worker, as the pool sees it. */
export interface WorkerLike {
  terminate(): void;
}

/**
 * Where worker threads come from outside browsers. The Node entry (src/node.ts) registers one built on
 * `worker_threads` (the browser bundle holds no Node built-in).
 */
export interface ThreadHost {
  /**
   * Starts a worker running `source` (which defines `serve(data, post)`) with `data`; `onMessage` receives what it
   * posts, `onError` a failure to start or a crash. The worker must not keep the process alive.
   */
  startWorker(source: string, data: unknown, onMessage: (m: unknown) => void, onError: (message: string) => void): WorkerLike;
  /** Cores available to this process. */
  cores(): number;
}

let host: ThreadHost | null = null;

/** @internal Called by the Node entry. */
export function registerThreadHost(h: ThreadHost): void {
  host = h;
}

/** Cores of this machine as the host reports them (null: unknown). */
export function hostCores(): number | null {
  if (host) return host.cores();
  const n = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency;
  return typeof n === "number" && n > 0 ? n : null;
}

/** Why no worker can be started here, or null. */
export function workersUnavailable(): string | null {
  if (host) return null;
  const g = globalThis as { document?: unknown; WorkerGlobalScope?: unknown; process?: { versions?: { node?: string } } };
  const browser = (typeof g.document === "object" || g.WorkerGlobalScope !== undefined) && !g.process?.versions?.node;
  if (browser && typeof Worker === "function" && typeof Blob === "function" && typeof URL?.createObjectURL === "function") return null;
  return g.process?.versions?.node
    ? "no worker threads are registered: import the package's Node entry (\"shira-wasm\" resolves to it in Node), which registers worker_threads"
    : "this host has no Web Workers";
}

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
  /** The blob URL of the browser workers' script (revoked when the pool stops). */
  #url: string | null = null;

  private constructor(init: PoolInit) {
    this.size = init.threads;
    const sab = new SharedArrayBuffer(ARGS_BYTE_OFFSET + 8 * MAX_ARGS * MAX_THREADS);
    this.#ctl = new Int32Array(sab, 0, 16);
    this.#args = new Float64Array(sab, ARGS_BYTE_OFFSET);
    this.#names = init.names;
    init.names.forEach((n, i) => this.#ops.set(n, i));
    this.#block = mayBlock(this.#ctl);
    for (let t = 1; t < init.threads; t++) {
      const data = { module: init.module, memory: init.memory, ctl: sab, t, names: init.names, scratch: init.scratch[t - 1] };
      const handle: WorkerHandle = { terminate: () => {}, lastError: null };
      const onMessage = (m: unknown) => {
        const e = (m as { error?: string } | null)?.error;
        if (e) handle.lastError = e;
      };
      const onError = (message: string) => {
        handle.lastError = message;
        Atomics.add(this.#ctl, FAILED, 1);
        Atomics.notify(this.#ctl, READY);
      };
      this.#workers.push(handle);
      try {
        if (host) {
          const w = host.startWorker(WORKER_SOURCE, data, onMessage, onError);
          handle.terminate = () => w.terminate();
        } else {
          this.#url ??= URL.createObjectURL(new Blob([WORKER_SOURCE + BROWSER_BOOT], { type: "text/javascript" }));
          const w = new Worker(this.#url, { name: `shira-wasm thread ${t}` });
          w.onmessage = (e) => onMessage(e.data);
          w.onerror = (e) => onError(e.message || "the worker script failed to load (a Content-Security-Policy needs worker-src blob:)");
          w.postMessage(data);
          handle.terminate = () => w.terminate();
        }
      } catch (e) {
        // e.g. a Content-Security-Policy without worker-src blob: (SecurityError): recorded; start() / startSync() then
        // stop the workers already started and throw THREADS
        onError(String((e as Error)?.message ?? e));
      }
    }
  }

  /** Whether workers can be started and waited for synchronously here (a registered host: Node). */
  static canStartSync(): boolean {
    return host !== null;
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
    if (this.#url) URL.revokeObjectURL(this.#url);
    this.#url = null;
  }

  get stopped(): boolean {
    return this.#stopped;
  }
}
