/**
 * `KVCache`: keys (after RoPE) and values of every layer for a batch of sequences, allocated once in wasm memory
 * for `maxLength` positions, laid out per layer as `[batch][kvHead][position][headDim]` (what `f32_kv_store` and
 * `f32_attention` read). It also keeps, per batch row, which slots hold real tokens (the attention mask over the
 * cache) and the next position id. A generation owns its cache; the model's layers do not, so switching adapters
 * between two tokens leaves the cache as it is (tokens already cached keep the keys and values computed with the
 * weights of their time, exactly as with transformers' `past_key_values`).
 *
 * ```ts
 * const cache = model.createCache({ batchSize: 1, maxLength: 256 });
 * model.forward(promptIds, { pastKeyValues: cache });     // prefill
 * model.forward([[nextId]], { pastKeyValues: cache });    // one decode step
 * cache.dispose();
 * ```
 */
import { RuntimeError, ShapeError, StateError } from "../errors.js";
import { checkAllocation, runtime, type F32Buffer, type I32Buffer } from "../runtime/runtime.js";
import type { DecoderConfig } from "./config.js";

export interface KVCacheOptions {
  batchSize?: number;
  maxLength: number;
}

export class KVCache {
  readonly batchSize: number;
  readonly maxLength: number;
  readonly numLayers: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  #length = 0;
  #k: F32Buffer[] = [];
  #v: F32Buffer[] = [];
  #mask: I32Buffer | null = null;
  #nextPosition: Int32Array;
  #disposed = false;

  constructor(config: DecoderConfig, opts: KVCacheOptions) {
    const B = opts.batchSize ?? 1;
    const L = opts.maxLength;
    if (!Number.isSafeInteger(B) || B < 1) throw new ShapeError("SHAPE_MISMATCH", `KVCache: batchSize must be a positive integer, got ${B}`, { batchSize: B });
    if (!Number.isSafeInteger(L) || L < 1) throw new ShapeError("SHAPE_MISMATCH", `KVCache: maxLength must be a positive integer, got ${L}`, { maxLength: L });
    this.batchSize = B;
    this.maxLength = L;
    this.numLayers = config.numLayers;
    this.numKvHeads = config.numKvHeads;
    this.headDim = config.headDim;
    const per = B * config.numKvHeads * L * config.headDim;
    const bytes = per * 4 * 2 * config.numLayers;
    if (!Number.isSafeInteger(bytes) || bytes >= 2 ** 32) {
      throw new RuntimeError("OUT_OF_MEMORY", `KVCache: ${bytes} bytes for batch ${B} × ${L} positions do not fit in wasm32 memory`, { bytes, tensor: "KVCache" });
    }
    // each layer's key and value blocks are single heap blocks
    checkAllocation(per, `KVCache layer keys [${B}, ${config.numKvHeads}, ${L}, ${config.headDim}]`);
    checkAllocation(B * L, `KVCache mask [${B}, ${L}]`);
    const rt = runtime();
    try {
      for (let l = 0; l < config.numLayers; l++) {
        this.#k.push(rt.allocF32(per));
        this.#v.push(rt.allocF32(per));
      }
      this.#mask = rt.allocI32(B * L);
    } catch (e) {
      this.#free();
      throw e;
    }
    this.#nextPosition = new Int32Array(B);
  }

  /** Number of filled positions (the same for every batch row). `USE_AFTER_FREE` after {@link dispose}. */
  get length(): number {
    this.#check();
    return this.#length;
  }
  set length(n: number) {
    this.#check();
    this.#length = n;
  }

  /** Next position id per batch row (real tokens seen so far). `USE_AFTER_FREE` after {@link dispose}. */
  get nextPosition(): Int32Array {
    this.#check();
    return this.#nextPosition;
  }

  #check(): void {
    if (this.#disposed) throw new StateError("USE_AFTER_FREE", "KVCache: used after dispose() (disposed)");
  }

  /** @internal Pointers of layer `l`'s key and value blocks. */
  layer(l: number): { k: number; v: number } {
    this.#check();
    return { k: this.#k[l].ptr, v: this.#v[l].ptr };
  }

  /** @internal The i32 `[batch][maxLength]` mask of real (1) and padding (0) slots. */
  get maskPtr(): number {
    this.#check();
    return this.#mask!.ptr;
  }

  /** @internal Writes the mask of `T` new slots per row (`mask` is `[B, T]`, 1 = real token). */
  setMask(mask: ArrayLike<number> | null, T: number): void {
    this.#check();
    const m = this.#mask!.view;
    for (let b = 0; b < this.batchSize; b++) {
      for (let t = 0; t < T; t++) m[b * this.maxLength + this.length + t] = mask ? (mask[b * T + t] ? 1 : 0) : 1;
    }
  }

  /** Bytes of wasm memory held. `USE_AFTER_FREE` after {@link dispose}. */
  get bytes(): number {
    this.#check();
    return this.numLayers * 2 * this.batchSize * this.numKvHeads * this.maxLength * this.headDim * 4 + this.batchSize * this.maxLength * 4;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** Forgets every position (the memory is kept for reuse). */
  reset(): void {
    this.#check();
    this.length = 0;
    this.nextPosition.fill(0);
  }

  /** Keeps the first `n` positions (rewinds; position ids continue from the real tokens kept). */
  truncate(n: number): void {
    this.#check();
    if (!Number.isSafeInteger(n) || n < 0 || n > this.length) throw new ShapeError("SHAPE_MISMATCH", `KVCache.truncate: ${n} is not in [0, ${this.length}]`, { n });
    const m = this.#mask!.view;
    for (let b = 0; b < this.batchSize; b++) {
      let real = 0;
      for (let t = 0; t < n; t++) real += m[b * this.maxLength + t];
      this.nextPosition[b] = real;
    }
    this.length = n;
  }

  #free(): void {
    for (const b of this.#k) b.free();
    for (const b of this.#v) b.free();
    this.#mask?.free();
    this.#k = [];
    this.#v = [];
    this.#mask = null;
  }

  /** Frees the wasm memory; the cache cannot be used afterwards. Idempotent. */
  dispose(): void {
    if (this.#disposed) return;
    this.#free();
    this.#disposed = true;
  }
}
