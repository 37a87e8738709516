/**
 * Rotary position embeddings: transformers' `ROPE_INIT_FUNCTIONS` (`modeling_rope_utils.py`, v4.44) as a table of
 * same-named functions computing `inv_freq` in float32 exactly as PyTorch does, and the cos/sin table
 * `[positions][dim/2]` the `f32_rope` kernel reads (`freqs = f32(pos * inv_freq)`, then cos/sin, as
 * `LlamaRotaryEmbedding.forward`). The table lives in wasm memory, is computed once and grows on demand; with
 * `dynamic` scaling it is recomputed when transformers' `_dynamic_frequency_update` would change `inv_freq`.
 *
 * ```ts
 * const rope = new RotaryEmbedding(config.rope!, config.maxPositions);
 * rope.prepare(maxPositionInThisCall);       // grows or refreshes the table
 * k.f32_rope(q, stride, rows, nHeads, headDim, posPtr, rope.cos.ptr, rope.sin.ptr, rope.half, 0);
 * ```
 */
import { runtime, type F32Buffer } from "../runtime/runtime.js";
import type { RopeConfig } from "./config.js";

const f = Math.fround;

/** `1 / base ** (arange(0, dim, 2).float() / dim)` in float32. */
function defaultInvFreq(base: number, dim: number): Float32Array {
  const half = dim / 2;
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) out[i] = f(1 / f(Math.pow(f(base), f(f(2 * i) / dim))));
  return out;
}

/** The `rope_init_fn`s by `rope_type`: `(config, seqLen) → inv_freq` (attention factor is 1 for all four). */
export const ROPE_INIT_FUNCTIONS: Readonly<Record<RopeConfig["type"], (c: RopeConfig, maxPositions: number, seqLen?: number) => Float32Array>> = {
  default: (c) => defaultInvFreq(c.theta, c.dim),
  linear: (c) => defaultInvFreq(c.theta, c.dim).map((v) => f(v / c.factor)),
  dynamic: (c, maxPositions, seqLen) => {
    // _compute_dynamic_ntk_parameters: base * ((factor * seq_len / max_pos) - (factor - 1)) ** (dim / (dim - 2))
    const s = seqLen !== undefined && seqLen > maxPositions ? seqLen : maxPositions;
    const base = c.theta * Math.pow((c.factor * s) / maxPositions - (c.factor - 1), c.dim / (c.dim - 2));
    return defaultInvFreq(base, c.dim);
  },
  llama3: (c) => {
    const inv = defaultInvFreq(c.theta, c.dim);
    const old = c.originalMaxPositions;
    const lowWavelen = old / c.lowFreqFactor;
    const highWavelen = old / c.highFreqFactor;
    return inv.map((fr) => {
      const wavelen = f((2 * Math.PI) / fr);
      const scaled = wavelen > lowWavelen ? f(fr / c.factor) : fr;
      const medium = !(wavelen < highWavelen) && !(wavelen > lowWavelen);
      if (!medium) return scaled;
      const smooth = f(f(f(old / wavelen) - c.lowFreqFactor) / (c.highFreqFactor - c.lowFreqFactor));
      return f(f(f(f(1 - smooth) * scaled) / c.factor) + f(smooth * scaled));
    });
  },
};

/** cos/sin tables in wasm memory for one model (shared by all layers). */
export class RotaryEmbedding {
  readonly config: RopeConfig;
  readonly half: number;
  #maxPositions: number;
  #invFreq: Float32Array;
  #cachedSeqLen: number;
  #rows = 0;
  #cos: F32Buffer | null = null;
  #sin: F32Buffer | null = null;

  constructor(config: RopeConfig, maxPositions: number) {
    this.config = config;
    this.half = config.dim / 2;
    this.#maxPositions = maxPositions;
    this.#invFreq = ROPE_INIT_FUNCTIONS[config.type](config, maxPositions);
    this.#cachedSeqLen = maxPositions;
  }

  /** The current `inv_freq` (a copy). */
  get invFreq(): Float32Array {
    return this.#invFreq.slice();
  }

  /**
   * Makes the tables cover positions `0..seqLen-1` for a forward whose largest position is `seqLen - 1`; with
   * `dynamic` scaling first applies transformers' `_dynamic_frequency_update(position_ids)`.
   */
  prepare(seqLen: number): void {
    // the new state is computed first and committed only once both tables are allocated: a failed allocation leaves
    // the tables, inv_freq and the cached length as they were, and frees what it took
    let invFreq = this.#invFreq;
    let cachedSeqLen = this.#cachedSeqLen;
    let changed = false;
    if (this.config.type === "dynamic") {
      const orig = this.#maxPositions;
      if (seqLen > cachedSeqLen) {
        invFreq = ROPE_INIT_FUNCTIONS.dynamic(this.config, orig, seqLen);
        cachedSeqLen = seqLen;
        changed = true;
      }
      if (seqLen < orig && cachedSeqLen > orig) {
        invFreq = ROPE_INIT_FUNCTIONS.dynamic(this.config, orig);
        cachedSeqLen = orig;
        changed = true;
      }
    }
    if (!changed && seqLen <= this.#rows) return;
    const rows = Math.max(seqLen, changed ? this.#rows : Math.max(64, this.#rows * 2));
    const rt = runtime();
    const reuse = rows === this.#rows && this.#cos !== null && this.#sin !== null;
    const cos = reuse ? this.#cos! : rt.allocF32(rows * this.half);
    let sin: F32Buffer;
    try {
      sin = reuse ? this.#sin! : rt.allocF32(rows * this.half);
    } catch (e) {
      if (!reuse) cos.free();
      throw e;
    }
    const c = cos.view;
    const s = sin.view;
    const h = this.half;
    for (let p = 0; p < rows; p++) {
      for (let i = 0; i < h; i++) {
        const fr = f(p * invFreq[i]);
        c[p * h + i] = Math.cos(fr);
        s[p * h + i] = Math.sin(fr);
      }
    }
    if (!reuse) {
      this.#cos?.free();
      this.#sin?.free();
    }
    this.#cos = cos;
    this.#sin = sin;
    this.#rows = rows;
    this.#invFreq = invFreq;
    this.#cachedSeqLen = cachedSeqLen;
  }

  /** Pointer to the cos table (valid until the next {@link prepare}). */
  get cosPtr(): number {
    return this.#cos ? this.#cos.ptr : 0;
  }
  get sinPtr(): number {
    return this.#sin ? this.#sin.ptr : 0;
  }

  free(): void {
    this.#cos?.free();
    this.#sin?.free();
    this.#cos = this.#sin = null;
    this.#rows = 0;
  }
}
