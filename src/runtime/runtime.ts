/**
 * The wasm runtime: instantiates the embedded module once, hands out buffers in its linear memory and keeps
 * typed-array views on that memory valid across `memory.grow` (views are re-derived whenever the underlying
 * `ArrayBuffer` changes).
 *
 * ```ts
 * import { init } from "shira-wasm";
 * const rt = await init();          // or initSync(); most APIs also initialize lazily
 * const buf = rt.allocF32(1024);    // f32[1024] in wasm memory, zeroed
 * buf.view.fill(1);
 * buf.free();                       // explicit; using it afterwards throws USE_AFTER_FREE
 * ```
 */
import { instantiate as loaderInstantiate, instantiateSync as loaderInstantiateSync } from "@assemblyscript/loader";
import { ConfigError, RuntimeError, StateError } from "../errors.js";
import type { Kernels } from "./kernels.js";
import { parallelKernels, POOL_EXPORTS, type ParallelContext } from "./parallel.js";
import { MAX_THREADS, ThreadPool, hostCores, workersUnavailable, type PoolInit } from "./threads.js";
import { WASM_SIMD_BASE64, WASM_RELAXED_BASE64 } from "./wasm.generated.js";

/** Which build of the kernels is running. */
export type WasmVariant = "simd" | "relaxed-simd";

export interface InitOptions {
  /** Force a build: `"simd"` (always available) or `"relaxed-simd"` (fused multiply-add, when the host validates it). */
  variant?: WasmVariant;
  /**
   * Threads that run the kernels, including the calling one (1 to 16). Default: the number of cores, at most 8
   * (Node: `os.availableParallelism()`, or the `SHIRA_THREADS` environment variable; browsers:
   * `navigator.hardwareConcurrency`). Browsers need a cross-origin isolated page (`crossOriginIsolated`), and
   * `initSync()` there runs one thread (a browser starts workers only once the caller yields): use `await init()`.
   * {@link Runtime.threads} says how many run and {@link Runtime.threadsLimitedBy} why fewer than asked.
   */
  threads?: number;
}

/** Default threads when none are asked for: SHIRA_THREADS, else the cores of this machine, at most 8. */
function defaultThreads(): number {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.SHIRA_THREADS;
  if (env !== undefined && env !== "") {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 1 || n > MAX_THREADS) {
      throw new ConfigError("CONFIG_INVALID", `SHIRA_THREADS must be an integer from 1 to ${MAX_THREADS}, got ${JSON.stringify(env)}`, { argument: "SHIRA_THREADS", value: env });
    }
    return n;
  }
  return Math.max(1, Math.min(8, hostCores() ?? 1));
}

/**
 * Smallest call (multiply-adds; positions x 64) that the kernels split over the threads: below it, waking the
 * workers (~5-50 µs) costs more than it saves. `SHIRA_PARALLEL_MIN_WORK` overrides it (0 splits every call that
 * can be split: the tests run the whole suite that way at 2 threads).
 */
function defaultMinWork(): number {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.SHIRA_PARALLEL_MIN_WORK;
  if (env !== undefined && env !== "") {
    const n = Number(env);
    if (!Number.isSafeInteger(n) || n < 0) throw new ConfigError("CONFIG_INVALID", `SHIRA_PARALLEL_MIN_WORK must be a non-negative integer, got ${JSON.stringify(env)}`, { argument: "SHIRA_PARALLEL_MIN_WORK", value: env });
    return n;
  }
  return 1 << 16;
}

/** Why this host cannot share wasm memory between threads, or null when it can. */
function sharingUnavailable(): string | null {
  if ((globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === false) {
    return "the page is not cross-origin isolated (serve it with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp)";
  }
  if (typeof SharedArrayBuffer !== "function" || typeof Atomics !== "object") return "this host has no SharedArrayBuffer";
  try {
    new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true } as WebAssembly.MemoryDescriptor);
  } catch (e) {
    return `this host cannot create shared wasm memory (${(e as Error).message})`;
  }
  return null;
}

/** First and most pages of the module's memory (its import declares these limits). */
const MEMORY_INITIAL_PAGES = 16;
const MEMORY_MAXIMUM_PAGES = 65536;

/**
 * The module with its imported memory declared `shared` (the one difference between the one-thread and the threaded
 * build): the import's limits flag 0x01 (min, max) becomes 0x03 (min, max, shared). Everything else is byte for
 * byte the embedded module.
 */
export function sharedMemoryBuild(bytes: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> {
  const out = bytes.slice();
  let p = 8;
  const leb = (): number => {
    let r = 0;
    let shift = 0;
    for (;;) {
      const b = out[p++];
      r += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return r;
      shift += 7;
    }
  };
  while (p < out.length) {
    const id = out[p++];
    const size = leb();
    const end = p + size;
    if (id === 2) {
      const count = leb();
      for (let i = 0; i < count; i++) {
        const moduleName = leb();
        p += moduleName;
        const fieldName = leb();
        p += fieldName;
        const kind = out[p++];
        if (kind === 0x02) {
          if (out[p] !== 0x01) throw new RuntimeError("WASM_UNSUPPORTED", `shira-wasm: the module's memory import has limits flag ${out[p]}, expected 1 (min and max)`);
          out[p] = 0x03;
          return out;
        }
        if (kind === 0x00) leb(); // function: type index
        else if (kind === 0x01) {
          p++; // table: reftype, limits
          const f = out[p++];
          leb();
          if (f & 1) leb();
        } else if (kind === 0x03) p += 2; // global: valtype, mutability
        else throw new RuntimeError("WASM_UNSUPPORTED", `shira-wasm: unexpected import kind ${kind} in the module`);
      }
    }
    p = end;
  }
  throw new RuntimeError("WASM_UNSUPPORTED", "shira-wasm: the module imports no memory");
}

function decodeBase64(s: string): Uint8Array<ArrayBuffer> {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Chooses the build: relaxed SIMD when embedded and the host validates it, else plain SIMD. */
function chooseBytes(opts: InitOptions): { bytes: Uint8Array<ArrayBuffer>; variant: WasmVariant } {
  if (typeof WebAssembly !== "object" || typeof WebAssembly.validate !== "function") {
    throw new RuntimeError("WASM_UNSUPPORTED", "shira-wasm: this host has no WebAssembly support");
  }
  const simd = decodeBase64(WASM_SIMD_BASE64);
  if (!WebAssembly.validate(simd)) {
    throw new RuntimeError(
      "WASM_UNSUPPORTED",
      "shira-wasm: this host's WebAssembly lacks the SIMD (v128) extension; use Node >= 16.4, Chrome >= 91, Firefox >= 89 or Safari >= 16.4",
    );
  }
  const wantRelaxed = opts.variant !== "simd";
  if (wantRelaxed && WASM_RELAXED_BASE64) {
    const relaxed = decodeBase64(WASM_RELAXED_BASE64);
    if (WebAssembly.validate(relaxed)) return { bytes: relaxed, variant: "relaxed-simd" };
    if (opts.variant === "relaxed-simd") {
      throw new RuntimeError("WASM_UNSUPPORTED", "shira-wasm: relaxed SIMD was requested but this host does not validate it");
    }
  } else if (opts.variant === "relaxed-simd") {
    throw new RuntimeError("WASM_UNSUPPORTED", "shira-wasm: this build has no relaxed-SIMD module");
  }
  return { bytes: simd, variant: "simd" };
}

/** A buffer of f32 or i32 elements in wasm memory, owned by the caller until {@link WasmBuffer.free}. */
export abstract class WasmBuffer<T extends Float32Array | Int32Array> {
  readonly length: number;
  #ptr: number;
  #view: T | null = null;
  #viewBuffer: ArrayBuffer | null = null;
  protected readonly rt: Runtime;

  constructor(rt: Runtime, ptr: number, length: number) {
    this.rt = rt;
    this.#ptr = ptr;
    this.length = length;
  }

  protected abstract makeView(buffer: ArrayBuffer, ptr: number, length: number): T;

  /** Whether {@link free} has been called. */
  get freed(): boolean {
    return this.#viewBuffer === FREED;
  }

  /** Byte offset in wasm memory. Throws `USE_AFTER_FREE` once freed. */
  get ptr(): number {
    if (this.#viewBuffer === FREED) throw useAfterFree();
    return this.#ptr;
  }

  get byteLength(): number {
    return this.length * 4;
  }

  /** A typed-array view on the buffer, re-derived after memory growth. Do not keep it across calls that may allocate. */
  get view(): T {
    if (this.#viewBuffer === FREED) throw useAfterFree();
    const buf = this.rt.memory.buffer;
    if (this.#viewBuffer !== buf || this.#view === null) {
      this.#view = this.makeView(buf, this.#ptr, this.length);
      this.#viewBuffer = buf;
    }
    return this.#view;
  }

  /** Copies `src` into the buffer (lengths must match). */
  set(src: ArrayLike<number>, offset = 0): this {
    this.view.set(src, offset);
    return this;
  }

  /** Copies the contents out into a fresh JS typed array. */
  abstract toArray(): T;

  /** Returns the memory to the heap. Idempotent. */
  free(): void {
    if (this.#viewBuffer === FREED) return;
    if (this.length > 0) this.rt.freeBytes(this.#ptr, this.length * 4);
    this.#ptr = 0;
    this.#view = null;
    this.#viewBuffer = FREED;
  }
}

const FREED = new ArrayBuffer(0);
function useAfterFree(): StateError {
  return new StateError("USE_AFTER_FREE", "shira-wasm: buffer used after free()");
}

/** f32 storage in wasm memory. */
export class F32Buffer extends WasmBuffer<Float32Array> {
  protected makeView(buffer: ArrayBuffer, ptr: number, length: number): Float32Array {
    return new Float32Array(buffer, ptr, length);
  }
  toArray(): Float32Array {
    return this.view.slice();
  }
}

/** i32 storage in wasm memory. */
export class I32Buffer extends WasmBuffer<Int32Array> {
  protected makeView(buffer: ArrayBuffer, ptr: number, length: number): Int32Array {
    return new Int32Array(buffer, ptr, length);
  }
  toArray(): Int32Array {
    return this.view.slice();
  }
}

/**
 * The largest block the heap hands out, in bytes: AssemblyScript's TLSF caps a block at 1 GiB less its header, and
 * `heap_request_size` (assembly/heap.ts) rounds requests of its last size class up to 32 MiB buckets, so 31 buckets
 * (992 MiB) is the largest request that fits. Larger requests, and anything of 2³² bytes or more (which a 32-bit
 * size would wrap to a tiny block), are refused with `OUT_OF_MEMORY` before reaching the heap.
 */
export const MAX_BLOCK_BYTES = 31 * 2 ** 25;

/**
 * Throws `RuntimeError` `OUT_OF_MEMORY` naming `what` and the size unless `elements` 4-byte values fit in one block
 * of wasm memory ({@link MAX_BLOCK_BYTES}). For checks before anything (even a JS array) is built.
 */
export function checkAllocation(elements: number, what: string): void {
  const bytes = elements * 4;
  if (!Number.isSafeInteger(elements) || elements < 0) {
    throw new RuntimeError("OUT_OF_MEMORY", `shira-wasm: invalid element count ${elements} for ${what}`, { elements, tensor: what });
  }
  if (bytes > MAX_BLOCK_BYTES) {
    throw new RuntimeError("OUT_OF_MEMORY", `shira-wasm: cannot allocate ${fmtBytes(bytes)} for ${what}: one block of wasm memory holds at most ${fmtBytes(MAX_BLOCK_BYTES)}`, {
      bytes,
      limit: MAX_BLOCK_BYTES,
      tensor: what,
    });
  }
}

/** Formats a byte count for error messages (`4294967296 bytes (4.00 GiB)`). */
function fmtBytes(n: number): string {
  return n >= 2 ** 20 ? `${n} bytes (${(n / 2 ** 30).toFixed(2)} GiB)` : `${n} bytes`;
}

/** The instantiated module: kernels, memory, views and allocation. */
export class Runtime {
  /** The raw kernel exports (pointers and sizes). */
  readonly k: Kernels;
  readonly memory: WebAssembly.Memory;
  readonly variant: WasmVariant;
  #buffer: ArrayBuffer;
  #f32: Float32Array;
  #i32: Int32Array;
  #u8: Uint8Array;
  #liveBytes = 0;
  #liveBlocks = 0;
  #peakBytes = 0;
  #failAt = 0;
  #allocations = 0;
  #txs: WasmBuffer<Float32Array | Int32Array>[][] = [];

  /** The compiled module (shared-memory build when {@link shared}). */
  readonly module: WebAssembly.Module;
  /** Whether the memory is a shared `WebAssembly.Memory` (worker threads can run kernels on it). */
  readonly shared: boolean;
  readonly #raw: Kernels;
  readonly #ctx: ParallelContext;
  #unshared: string | null;
  #limitedBy: string | null = null;
  #workerScratch: number[] = [];

  /** @internal Use {@link init}, {@link initSync} or {@link createRuntime}. */
  constructor(exports: Kernels, src: { module: WebAssembly.Module; memory: WebAssembly.Memory; variant: WasmVariant; unshared: string | null }) {
    this.#raw = exports;
    this.memory = src.memory;
    this.module = src.module;
    this.variant = src.variant;
    this.shared = src.unshared === null;
    this.#unshared = src.unshared;
    this.#buffer = this.memory.buffer;
    this.#f32 = new Float32Array(this.#buffer);
    this.#i32 = new Int32Array(this.#buffer);
    this.#u8 = new Uint8Array(this.#buffer);
    // this instance's own gemm scratch (each worker gets its own: see thread_set_scratch)
    exports.thread_set_scratch(exports.alloc(exports.thread_scratch_bytes()) >>> 0);
    this.#ctx = { pool: null, minWork: defaultMinWork(), i32: () => this.i32 };
    this.k = parallelKernels(exports, this.#ctx);
  }

  /**
   * Threads running the kernels, including the calling thread (1 when no worker runs). Kernels large enough are split
   * over them; results are bit-identical whatever the count.
   */
  get threads(): number {
    const p = this.#ctx.pool;
    return p && !p.stopped ? p.size : 1;
  }

  /**
   * Why {@link threads} is lower than asked (for example `"the page is not cross-origin isolated (...)"`), or null.
   * Set once per request; the library does not log it.
   */
  get threadsLimitedBy(): string | null {
    return this.#limitedBy;
  }

  /** @internal Smallest call that is split over the threads (see SHIRA_PARALLEL_MIN_WORK); tests set it to 0. */
  get parallelMinWork(): number {
    return this.#ctx.minWork;
  }
  set parallelMinWork(n: number) {
    if (!Number.isSafeInteger(n) || n < 0) throw new ConfigError("CONFIG_INVALID", `parallelMinWork must be a non-negative integer, got ${n}`, { argument: "parallelMinWork", value: n });
    this.#ctx.minWork = n;
  }

  /** The threads that can run for a request of `n`, and why fewer (or null). */
  #plan(n: number, blocked: string | null): { n: number; why: string | null } {
    checkThreads(n, "setThreads");
    if (n === 1) return { n: 1, why: blocked };
    if (this.#unshared) return { n: 1, why: this.#unshared };
    const noWorkers = workersUnavailable();
    if (noWorkers) return { n: 1, why: noWorkers };
    if (blocked) return { n: 1, why: blocked };
    return { n, why: null };
  }

  #poolInit(n: number): PoolInit {
    const bytes = this.#raw.thread_scratch_bytes();
    this.#workerScratch = [];
    try {
      for (let t = 1; t < n; t++) this.#workerScratch.push(this.#raw.alloc(bytes) >>> 0);
    } catch (e) {
      this.#freeWorkerScratch();
      throw new RuntimeError("OUT_OF_MEMORY", `shira-wasm: cannot allocate the scratch of ${n - 1} worker threads (${bytes} bytes each): ${(e as Error).message}`, { bytes, threads: n });
    }
    return { module: this.module, memory: this.memory, names: POOL_EXPORTS, threads: n, scratch: this.#workerScratch };
  }

  #freeWorkerScratch(): void {
    for (const p of this.#workerScratch) this.#raw.free(p);
    this.#workerScratch = [];
  }

  /**
   * Runs the kernels on `n` threads from now on (1 stops the workers). Node starts the workers synchronously;
   * browsers need {@link setThreadsAsync}. Fewer threads than asked run when the host cannot share memory: see
   * {@link threadsLimitedBy}.
   * ```ts
   * runtime().setThreads(2);
   * ```
   */
  setThreads(n: number): void {
    if (n > 1 && !ThreadPool.canStartSync() && workersUnavailable() === null && !this.#unshared) {
      throw new ConfigError("CONFIG_INVALID", "setThreads(): a browser starts worker threads only once the caller yields: use await setThreadsAsync(n) or await init({ threads: n })", { argument: "threads", value: n });
    }
    this.limitThreads(n, null);
  }

  /** {@link setThreads} for browsers' main thread (workers start once the caller yields). */
  async setThreadsAsync(n: number): Promise<void> {
    const init = this.#stopFor(n, null);
    if (!init) return;
    try {
      this.#ctx.pool = ThreadPool.canStartSync() ? ThreadPool.startSync(init) : await ThreadPool.start(init);
    } catch (e) {
      this.#freeWorkerScratch();
      throw e;
    }
  }

  /**
   * @internal {@link setThreads} where `blocked` (when set) says why no worker can start here: then one thread runs and
   * {@link threadsLimitedBy} gives the reason.
   */
  limitThreads(n: number, blocked: string | null): void {
    const init = this.#stopFor(n, blocked);
    if (!init) return;
    try {
      this.#ctx.pool = ThreadPool.startSync(init);
    } catch (e) {
      this.#freeWorkerScratch();
      throw e;
    }
  }

  /** Plans `n` threads; when the pool must change, stops it and returns what a new one needs (null: nothing to start). */
  #stopFor(n: number, blocked: string | null): PoolInit | null {
    const plan = this.#plan(n, blocked);
    this.#limitedBy = plan.why;
    if (plan.n === this.threads) return null;
    this.dispose();
    return plan.n > 1 ? this.#poolInit(plan.n) : null;
  }

  /**
   * Stops the worker threads (idempotent). The runtime goes on with one thread; {@link setThreads} starts them
   * again. In Node an idle pool never keeps the process alive, so calling this is optional.
   */
  dispose(): void {
    const p = this.#ctx.pool;
    if (!p) return;
    this.#ctx.pool = null;
    p.stop();
    this.#freeWorkerScratch();
  }

  #refresh(): void {
    const b = this.memory.buffer;
    if (b !== this.#buffer) {
      this.#buffer = b;
      this.#f32 = new Float32Array(b);
      this.#i32 = new Int32Array(b);
      this.#u8 = new Uint8Array(b);
    }
  }

  /** A Float32Array over all of memory (index = byte offset / 4), current after growth. */
  get f32(): Float32Array {
    this.#refresh();
    return this.#f32;
  }
  /** An Int32Array over all of memory, current after growth. */
  get i32(): Int32Array {
    this.#refresh();
    return this.#i32;
  }
  /** A Uint8Array over all of memory, current after growth. */
  get u8(): Uint8Array {
    this.#refresh();
    return this.#u8;
  }

  /** Bytes of linear memory (grows, never shrinks). */
  get memoryBytes(): number {
    return this.memory.buffer.byteLength;
  }
  /** Bytes currently held by live buffers handed out by this runtime. */
  get liveBytes(): number {
    return this.#liveBytes;
  }
  /** High-water mark of {@link liveBytes} since the last {@link resetPeak} (for peak-memory measurements). */
  get peakLiveBytes(): number {
    return this.#peakBytes;
  }
  /** Restarts the {@link peakLiveBytes} measurement from the current live bytes. */
  resetPeak(): void {
    this.#peakBytes = this.#liveBytes;
  }
  /** Number of live buffers handed out by this runtime. */
  get liveBlocks(): number {
    return this.#liveBlocks;
  }

  /**
   * @internal Fault injection (tests): the `n`-th subsequent allocation of a non-empty block throws `RuntimeError`
   * `OUT_OF_MEMORY` (once; later allocations succeed again). `n = 1` fails the next one; `null` or `0` disarms.
   * ```ts
   * rt.failAfter(3);   // the third allocation from now fails
   * ```
   */
  failAfter(n: number | null): void {
    if (n !== null && (!Number.isSafeInteger(n) || n < 0)) throw new RuntimeError("OUT_OF_MEMORY", `failAfter: n must be a non-negative integer or null, got ${n}`);
    this.#failAt = n ? this.#allocations + n : 0;
  }

  /** @internal Number of non-empty blocks allocated since instantiation (with {@link failAfter}, for tests). */
  get allocations(): number {
    return this.#allocations;
  }

  /**
   * Allocates `bytes` (16-byte aligned). Prefer {@link allocF32}/{@link allocI32}. Sizes that are not safe integers,
   * negative, or over {@link MAX_BLOCK_BYTES} throw `OUT_OF_MEMORY` (naming `what`, when given) without touching the heap.
   */
  allocBytes(bytes: number, what?: string): number {
    const of = what ? ` for ${what}` : "";
    if (!Number.isSafeInteger(bytes) || bytes < 0) {
      throw new RuntimeError("OUT_OF_MEMORY", `shira-wasm: invalid allocation size ${bytes}${of}`, { bytes, ...(what ? { tensor: what } : {}) });
    }
    if (bytes === 0) return 0;
    if (bytes > MAX_BLOCK_BYTES) {
      throw new RuntimeError("OUT_OF_MEMORY", `shira-wasm: cannot allocate ${fmtBytes(bytes)}${of}: one block of wasm memory holds at most ${fmtBytes(MAX_BLOCK_BYTES)}`, {
        bytes,
        limit: MAX_BLOCK_BYTES,
        ...(what ? { tensor: what } : {}),
      });
    }
    this.#allocations++;
    if (this.#failAt !== 0 && this.#allocations >= this.#failAt) {
      this.#failAt = 0;
      throw new RuntimeError("OUT_OF_MEMORY", `shira-wasm: cannot allocate ${bytes} bytes${of} (injected fault)`, { bytes, injected: true, ...(what ? { tensor: what } : {}) });
    }
    let ptr: number;
    try {
      ptr = this.k.alloc(bytes) >>> 0;
    } catch (e) {
      throw new RuntimeError("OUT_OF_MEMORY", `shira-wasm: cannot allocate ${fmtBytes(bytes)}${of} in wasm memory (${this.memoryBytes} bytes in use): ${(e as Error).message}`, {
        bytes,
        ...(what ? { tensor: what } : {}),
      });
    }
    if (ptr === 0) throw new RuntimeError("OUT_OF_MEMORY", `shira-wasm: cannot allocate ${fmtBytes(bytes)}${of} in wasm memory`, { bytes, ...(what ? { tensor: what } : {}) });
    this.#liveBytes += bytes;
    this.#liveBlocks++;
    if (this.#liveBytes > this.#peakBytes) this.#peakBytes = this.#liveBytes;
    return ptr;
  }

  /** Byte size of `n` 4-byte elements, checked (a typed OUT_OF_MEMORY naming `what` when too large). */
  #bytesOf(n: number, what?: string): number {
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new RuntimeError("OUT_OF_MEMORY", `shira-wasm: invalid element count ${n}${what ? ` for ${what}` : ""}`, { elements: n, ...(what ? { tensor: what } : {}) });
    }
    return n * 4;
  }

  /** Records a buffer in the innermost {@link transaction}. */
  #track<B extends WasmBuffer<Float32Array | Int32Array>>(b: B): B {
    const tx = this.#txs[this.#txs.length - 1];
    if (tx) tx.push(b);
    return b;
  }

  /**
   * @internal Runs `fn`; if it throws, every buffer allocated through this runtime during `fn` (and not freed) is
   * freed, so a failed constructor or load leaks nothing. Nested transactions hand their buffers to the outer one.
   */
  transaction<R>(fn: () => R): R {
    const tx = this.beginTransaction();
    let ok = false;
    try {
      const r = fn();
      ok = true;
      return r;
    } finally {
      this.endTransaction(tx, ok);
    }
  }

  /** @internal The two halves of {@link transaction}, for constructors: `endTransaction(tx, false)` frees what was allocated since. */
  beginTransaction(): number {
    this.#txs.push([]);
    return this.#txs.length;
  }

  /** @internal See {@link beginTransaction}. */
  endTransaction(tx: number, ok: boolean): void {
    if (this.#txs.length !== tx) throw new StateError("ADAPTER_STATE", `runtime: transactions closed out of order (${tx} of ${this.#txs.length})`);
    const held = this.#txs.pop()!;
    if (ok) this.#txs[this.#txs.length - 1]?.push(...held);
    else for (const b of held) b.free();
  }

  /** Frees a block from {@link allocBytes}. */
  freeBytes(ptr: number, bytes: number): void {
    if (ptr === 0) return;
    this.k.free(ptr);
    this.#liveBytes -= bytes;
    this.#liveBlocks--;
  }

  /** A zeroed f32 buffer of `length` elements, or a copy of `data`. */
  allocF32(lengthOrData: number | ArrayLike<number>, what?: string): F32Buffer {
    const n = typeof lengthOrData === "number" ? lengthOrData : lengthOrData.length;
    const b = this.#track(new F32Buffer(this, this.allocBytes(this.#bytesOf(n, what), what), n));
    if (typeof lengthOrData === "number") b.view.fill(0);
    else b.view.set(lengthOrData);
    return b;
  }

  /** @internal An f32 buffer whose contents are left as the heap had them (the caller writes every element). */
  allocF32Uninit(n: number, what?: string): F32Buffer {
    return this.#track(new F32Buffer(this, this.allocBytes(this.#bytesOf(n, what), what), n));
  }

  /** A zeroed i32 buffer of `length` elements, or a copy of `data`. */
  allocI32(lengthOrData: number | ArrayLike<number>, what?: string): I32Buffer {
    const n = typeof lengthOrData === "number" ? lengthOrData : lengthOrData.length;
    const b = this.#track(new I32Buffer(this, this.allocBytes(this.#bytesOf(n, what), what), n));
    if (typeof lengthOrData === "number") b.view.fill(0);
    else b.view.set(lengthOrData);
    return b;
  }

  /**
   * Runs `fn` with temporary buffers that are freed afterwards, even when `fn` throws.
   * ```ts
   * rt.scratch((tmp) => { const a = tmp.f32(100); ... });
   * ```
   */
  scratch<R>(fn: (tmp: Scratch) => R): R {
    const held: WasmBuffer<Float32Array | Int32Array>[] = [];
    const tmp: Scratch = {
      f32: (n) => {
        const b = this.allocF32(n);
        held.push(b);
        return b;
      },
      i32: (n) => {
        const b = this.allocI32(n);
        held.push(b);
        return b;
      },
    };
    try {
      return fn(tmp);
    } finally {
      for (const b of held) b.free();
    }
  }
}

/** Temporary allocations handed to {@link Runtime.scratch}. */
export interface Scratch {
  f32(lengthOrData: number | ArrayLike<number>): F32Buffer;
  i32(lengthOrData: number | ArrayLike<number>): I32Buffer;
}

let current: Runtime | null = null;

function checkOptions(opts: InitOptions, what: string): void {
  if (opts === null || typeof opts !== "object") throw new ConfigError("CONFIG_INVALID", `${what}: options must be an object, got ${opts === null ? "null" : typeof opts}`, { argument: "opts" });
  checkThreads(opts.threads, what);
  const v = opts.variant;
  if (v !== undefined && v !== "simd" && v !== "relaxed-simd") {
    throw new ConfigError("CONFIG_INVALID", `${what}: variant must be "simd" or "relaxed-simd", got ${JSON.stringify(v)}`, { argument: "variant", value: v });
  }
}

/**
 * Replacing the shared runtime by another build would leave every live tensor, model and adapter pointing into the
 * old module's memory while the kernels run on the new one: refused (StateError `ADAPTER_STATE`) while the current
 * runtime holds live buffers. Asking again for the running variant is a no-op.
 */
function refuseSwitch(opts: InitOptions, what: string): void {
  if (current && opts.variant && opts.variant !== current.variant && current.liveBlocks > 0) {
    throw new StateError(
      "ADAPTER_STATE",
      `${what}({ variant: "${opts.variant}" }): the "${current.variant}" runtime is already in use (${current.liveBlocks} live buffers); ` +
        `free every tensor and model first, or use createRuntime() for a separate instance`,
      { variant: opts.variant, current: current.variant, liveBlocks: current.liveBlocks },
    );
  }
}

/** What a runtime is instantiated from: the chosen build, compiled, with its memory (shared when the host allows). */
interface Instantiable {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  variant: WasmVariant;
  /** Why memory is not shared (then the runtime runs one thread), or null. */
  unshared: string | null;
}

function prepare(opts: InitOptions): Instantiable {
  const { bytes, variant } = chooseBytes(opts);
  const unshared = sharingUnavailable();
  const shared = unshared === null;
  const module = new WebAssembly.Module(shared ? sharedMemoryBuild(bytes) : bytes);
  const memory = new WebAssembly.Memory({ initial: MEMORY_INITIAL_PAGES, maximum: MEMORY_MAXIMUM_PAGES, shared } as WebAssembly.MemoryDescriptor);
  return { module, memory, variant, unshared };
}

// The loader supplies `env.abort` (and `trace`/`seed`); the kernels need the memory besides.
function instantiate(src: Instantiable): Runtime {
  const inst = loaderInstantiateSync<Kernels>(src.module, { env: { memory: src.memory } });
  return new Runtime(inst.exports as unknown as Kernels, src);
}

function checkThreads(n: unknown, what: string): void {
  if (n !== undefined && (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > MAX_THREADS)) {
    throw new ConfigError("CONFIG_INVALID", `${what}: threads must be an integer from 1 to ${MAX_THREADS}, got ${JSON.stringify(n)}`, { argument: "threads", value: n });
  }
}

/**
 * Instantiates the wasm module synchronously (Node, workers; browsers allow small modules on the main thread) and, in
 * Node, starts its worker threads. Returns the existing runtime when already initialized (with `threads`, resized
 * first: see {@link Runtime.setThreads}).
 */
export function initSync(opts: InitOptions = {}): Runtime {
  checkOptions(opts, "initSync");
  if (current && (!opts.variant || opts.variant === current.variant)) {
    if (opts.threads !== undefined) current.setThreads(opts.threads);
    return current;
  }
  refuseSwitch(opts, "initSync");
  const rt = instantiate(prepare(opts));
  const blocked = !ThreadPool.canStartSync() ? "initSync() cannot start worker threads in a browser (they start once the caller yields): use await init()" : null;
  if (opts.threads !== undefined) rt.limitThreads(opts.threads, blocked);
  else {
    try {
      rt.limitThreads(defaultThreads(), blocked);
    } catch (e) {
      // the default asked for no particular count: run one thread and say why
      if (!(e instanceof RuntimeError && e.code === "THREADS")) throw e;
      rt.limitThreads(1, e.message);
    }
  }
  current?.dispose();
  current = rt;
  return current;
}

/**
 * Instantiates the wasm module (once) and starts its worker threads. Call before using the library in a browser main
 * thread.
 * ```ts
 * const rt = await init();            // or init({ threads: 4 })
 * console.log(rt.variant, rt.threads); // "relaxed-simd" 4
 * ```
 */
export async function init(opts: InitOptions = {}): Promise<Runtime> {
  checkOptions(opts, "init");
  if (current && (!opts.variant || opts.variant === current.variant)) {
    if (opts.threads !== undefined) await current.setThreadsAsync(opts.threads);
    return current;
  }
  refuseSwitch(opts, "init");
  const rt = instantiate(prepare(opts));
  if (opts.threads !== undefined) await rt.setThreadsAsync(opts.threads);
  else {
    try {
      await rt.setThreadsAsync(defaultThreads());
    } catch (e) {
      // the default asked for no particular count: run one thread and say why
      if (!(e instanceof RuntimeError && e.code === "THREADS")) throw e;
      rt.limitThreads(1, e.message);
    }
  }
  // another init() may have finished meanwhile: keep the first runtime (its buffers may already be in use) unless it
  // is still unused and of another variant
  if (current && current.variant === rt.variant) {
    rt.dispose();
    return current;
  }
  refuseSwitch(opts, "init");
  current?.dispose();
  current = rt;
  return current;
}

/** The current runtime, initializing synchronously on first use. */
export function runtime(): Runtime {
  return current ?? initSync();
}

/**
 * Instantiates a separate, independent runtime (for tests and benchmarks comparing builds or thread counts), with
 * `opts.threads` threads (default 1). Objects created by the library use the shared runtime from {@link runtime}.
 */
export function createRuntime(opts: InitOptions = {}): Runtime {
  checkOptions(opts, "createRuntime");
  const rt = instantiate(prepare(opts));
  rt.setThreads(opts.threads ?? 1);
  return rt;
}
