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
import { RuntimeError, StateError } from "../errors.js";
import type { Kernels } from "./kernels.js";
import { WASM_SIMD_BASE64, WASM_RELAXED_BASE64 } from "./wasm.generated.js";

/** Which build of the kernels is running. */
export type WasmVariant = "simd" | "relaxed-simd";

export interface InitOptions {
  /** Force a build: `"simd"` (always available) or `"relaxed-simd"` (fused multiply-add, when the host validates it). */
  variant?: WasmVariant;
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

  constructor(exports: Kernels, variant: WasmVariant) {
    this.k = exports;
    this.memory = exports.memory;
    this.variant = variant;
    this.#buffer = this.memory.buffer;
    this.#f32 = new Float32Array(this.#buffer);
    this.#i32 = new Int32Array(this.#buffer);
    this.#u8 = new Uint8Array(this.#buffer);
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

  /** Allocates `bytes` (16-byte aligned). Prefer {@link allocF32}/{@link allocI32}. */
  allocBytes(bytes: number): number {
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new RuntimeError("OUT_OF_MEMORY", `shira-wasm: invalid allocation size ${bytes}`);
    if (bytes === 0) return 0;
    let ptr: number;
    try {
      ptr = this.k.alloc(bytes) >>> 0;
    } catch (e) {
      throw new RuntimeError("OUT_OF_MEMORY", `shira-wasm: cannot allocate ${bytes} bytes in wasm memory (${this.memoryBytes} bytes in use): ${(e as Error).message}`);
    }
    if (ptr === 0) throw new RuntimeError("OUT_OF_MEMORY", `shira-wasm: cannot allocate ${bytes} bytes in wasm memory`);
    this.#liveBytes += bytes;
    this.#liveBlocks++;
    if (this.#liveBytes > this.#peakBytes) this.#peakBytes = this.#liveBytes;
    return ptr;
  }

  /** Frees a block from {@link allocBytes}. */
  freeBytes(ptr: number, bytes: number): void {
    if (ptr === 0) return;
    this.k.free(ptr);
    this.#liveBytes -= bytes;
    this.#liveBlocks--;
  }

  /** A zeroed f32 buffer of `length` elements, or a copy of `data`. */
  allocF32(lengthOrData: number | ArrayLike<number>): F32Buffer {
    const n = typeof lengthOrData === "number" ? lengthOrData : lengthOrData.length;
    const b = new F32Buffer(this, this.allocBytes(n * 4), n);
    if (typeof lengthOrData === "number") b.view.fill(0);
    else b.view.set(lengthOrData);
    return b;
  }

  /** A zeroed i32 buffer of `length` elements, or a copy of `data`. */
  allocI32(lengthOrData: number | ArrayLike<number>): I32Buffer {
    const n = typeof lengthOrData === "number" ? lengthOrData : lengthOrData.length;
    const b = new I32Buffer(this, this.allocBytes(n * 4), n);
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

// The loader supplies `env.abort` (and `trace`/`seed`); the kernels need nothing else.
function imports(): Record<string, never> {
  return {};
}

/**
 * Instantiates the wasm module synchronously (Node, workers; browsers allow small modules on the main thread).
 * Returns the existing runtime when already initialized.
 */
export function initSync(opts: InitOptions = {}): Runtime {
  if (current && (!opts.variant || opts.variant === current.variant)) return current;
  const { bytes, variant } = chooseBytes(opts);
  const mod = new WebAssembly.Module(bytes);
  const inst = loaderInstantiateSync<Kernels>(mod, imports());
  current = new Runtime(inst.exports as unknown as Kernels, variant);
  return current;
}

/**
 * Instantiates the wasm module (once). Call before using the library in a browser main thread.
 * ```ts
 * const rt = await init();
 * console.log(rt.variant); // "simd" or "relaxed-simd"
 * ```
 */
export async function init(opts: InitOptions = {}): Promise<Runtime> {
  if (current && (!opts.variant || opts.variant === current.variant)) return current;
  const { bytes, variant } = chooseBytes(opts);
  const inst = await loaderInstantiate<Kernels>(bytes, imports());
  current = new Runtime(inst.exports as unknown as Kernels, variant);
  return current;
}

/** The current runtime, initializing synchronously on first use. */
export function runtime(): Runtime {
  return current ?? initSync();
}

/**
 * Instantiates a separate, independent runtime (for tests and benchmarks comparing builds).
 * Objects created by the library use the shared runtime from {@link runtime}, not this one.
 */
export function createRuntime(opts: InitOptions = {}): Runtime {
  const { bytes, variant } = chooseBytes(opts);
  const inst = loaderInstantiateSync<Kernels>(new WebAssembly.Module(bytes), imports());
  return new Runtime(inst.exports as unknown as Kernels, variant);
}
