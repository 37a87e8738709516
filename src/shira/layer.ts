/**
 * `ShiraLinear`: a `Linear` layer carrying SHiRA adapters (PEFT's `shira.Linear`).
 *
 * Per adapter it stores `nnz = r * (out + in)` values (`shiraWeight`, PEFT's `shira_weight`) and their positions,
 * once (4 B per value), plus the small CSR row pointers over them:
 *
 * ```
 *   indices  i32[nnz]    flat positions in the stored weight, ascending (scatter / gather, switching, and the
 *                        CSR kernels' column source)
 *                        Linear: row * in + col;  Conv1D (stored [in, out]): col * out + row
 *   rowPtr   i32[R+1]    CSR row pointers by stored row (Linear: R = out; Conv1D: R = in) over `indices`
 *                        (unfused forward, masked-matmul grads); the stored column of entry j in row r is
 *                        indices[j] - r * C, C = the stored row length (Linear: in; Conv1D: out), computed by
 *                        the kernels (no column array is kept)
 *   weight   f32[nnz]    the values, in the same order (a trainable Parameter)
 * ```
 *
 * The wrapped layer is a `Linear` (weight `[out, in]`) or a GPT-2 `Conv1D` (weight stored `[in, out]`, PEFT's
 * `fan_in_fan_out`). Positions given to and returned by the layer (masks, `shira_indices`) always address the
 * `[out, in]` matrix, row-major (`row * in + col`); internally they are kept as flat indices into the *stored*
 * weight (`col * out + row` for Conv1D, sorted ascending, values permuted with them), so scatter, gather and
 * switching never need to know the layout, and the CSR is by stored row (Conv1D: by input index, with the output
 * index as column).
 *
 * Forward, unfused: `y = x·Wᵀ + b + Σ_active scale_a · x·S_aᵀ` (dense gemm + sparse CSR kernel, no copy of W).
 * Fused (merge / switchTo / fuse): the live weight holds `W + Σ coef_a · S_a`; before an adapter's positions are
 * first modified the base values there are gathered into `saved`, and restoring writes them back in reverse
 * order, so the base is bit-identical after any number of switches (PEFT's `W -= delta` drifts; this does not).
 * Switching from one fused adapter to another is a single sweep over both position lists in address order
 * (`f32_switch_merge`, see `assembly/switch.ts`) with the same result as restoring and fusing again.
 *
 * Half-precision base (issue #13): the wrapped layer may also be a {@link HalfLinear} (a frozen `[out, in]` weight
 * of BF16 / F16 bits) or a GPT-2 {@link HalfConv1D} (the same, stored `[in, out]`: positions are kept as for a Conv1D). The adapter values stay f32 (PEFT's `autocast_adapter_dtype=True`). Then:
 *
 * ```
 *   saved    u16[nnz]   the exact half bits at the adapter's positions (kept in an F32Buffer of ⌈nnz/8⌉·4 words:
 *                       2·nnz bytes padded to 16), so every restore is bit-identical
 *   fused    W[p] = half(f32(widen(base[p])) + f32(v · coef))   (h16_gather_scatter_add / h16_switch_merge:
 *                       torch's rule for PEFT's `weight.data += delta` on a bf16 / f16 weight)
 * ```
 *
 * Several fused adapters are applied in order and each rounds to half after its add, as PEFT's merge of several
 * adapters into a bf16 weight does (one `+=` per adapter). The unfused forward is the half layer's `forwardInto` plus the
 * f32 sparse products (PEFT's unfused path computes the adapter in its own dtype, f32); the backward's dL/dx runs
 * through the live half weight (`h16_gemm_nn`, a HalfConv1D `h16_gemm_nt`). {@link ShiraLinear.baseWeight} widens to f32.
 */
import { ConfigError, ShapeError, StateError } from "../errors.js";
import { isDenseLayer, isFanInFanOut, type DenseLayer } from "../nn/conv1d.js";
import { HalfConv1D, HalfLinear, isHalfDense, type HalfDense } from "../nn/half.js";
import { Module } from "../nn/module.js";
import { defaultRng } from "../nn/random.js";
import { Parameter, Tensor, assertLive } from "../nn/tensor.js";
import { F32Buffer, runtime, type I32Buffer } from "../runtime/runtime.js";

/**
 * A layer SHiRA / LoRA can wrap: a `Linear`, a GPT-2 `Conv1D`, or a frozen half-precision {@link HalfLinear} /
 * {@link HalfConv1D}.
 */
export type AdaptableLayer = DenseLayer | HalfDense;

/** Whether `m` is a layer SHiRA / LoRA can adapt (`Linear`, `Conv1D`, `HalfLinear` or `HalfConv1D`). */
export function isAdaptableLayer(m: unknown): m is AdaptableLayer {
  return isDenseLayer(m) || isHalfDense(m);
}

/** Whether an adaptable layer stores its weight `[in, out]` (a Conv1D or HalfConv1D; Linear and HalfLinear are `[out, in]`). */
export function fanInFanOutOf(m: AdaptableLayer): boolean {
  if (m instanceof HalfConv1D) return true;
  return !(m instanceof HalfLinear) && isFanInFanOut(m);
}

/**
 * Words of the buffer holding `n` gathered base values: `n` f32 values, or for a half weight `n` u16 bit patterns
 * (2·n bytes, padded to 16 bytes).
 */
function savedWords(n: number, half: boolean): number {
  return half ? Math.ceil(n / 8) * 4 : n;
}

/** A buffer for gathered base values (not zero-filled: the gather writes every element). */
function savedBuffer(n: number, half: boolean): F32Buffer {
  return runtime().allocF32Uninit(savedWords(n, half), half ? "saved base bits (u16)" : "saved base values");
}

/** The first `n` u16 bit patterns of a saved-bits buffer (a view; do not keep it across allocations). */
export function savedBits(b: F32Buffer, n: number): Uint16Array {
  return new Uint16Array(runtime().memory.buffer, b.ptr, n);
}

const cvt = new DataView(new ArrayBuffer(4));

/** The f32 value of BF16 (`dtype` 0) or F16 (`dtype` 1) bits (exact). @internal */
export function halfToF32(h: number, dtype: 0 | 1): number {
  if (dtype === 0) {
    cvt.setUint32(0, (h & 0xffff) << 16);
    return cvt.getFloat32(0);
  }
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * (1024 + m) * 2 ** (e - 25);
}

/** f32 `x` rounded to BF16 / F16 bits (nearest even, overflow to ±inf, NaN -> quiet NaN), as `f32_to_h16`. @internal */
export function f32ToHalf(x: number, dtype: 0 | 1): number {
  cvt.setFloat32(0, x);
  const u = cvt.getUint32(0);
  const sign = (u >>> 16) & 0x8000;
  const a = u & 0x7fffffff;
  if (a > 0x7f800000) return dtype === 0 ? sign | 0x7fc0 : sign | 0x7e00;
  if (dtype === 0) return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
  if (a >= 0x477ff000) return sign | 0x7c00; // |x| >= 65520 (or inf): rounds to inf
  if (a < 0x38800000) {
    // below 2^-14: a multiple of 2^-24 (subnormal; 0x400 is the smallest normal, encoded alike)
    const q = Math.abs(Math.fround(x)) * 2 ** 24;
    let r = Math.floor(q);
    const f = q - r;
    if (f > 0.5 || (f === 0.5 && r & 1)) r++;
    return sign | r;
  }
  let h = ((((a >>> 23) - 112) << 10) | ((a >>> 13) & 0x3ff)) >>> 0;
  const rest = a & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && h & 1)) h++;
  return sign | h;
}

/** One adapter's sparse delta on one layer. */
export class ShiraAdapterWeights {
  readonly r: number;
  readonly nnz: number;
  /** Flat positions in the stored weight, ascending (see the file comment). */
  readonly indices: I32Buffer;
  /**
   * CSR row pointers by stored row over {@link indices}: the stored column of entry j in row r is
   * `indices[j] - r * storedCols` (the kernels take `indices` and {@link storedCols}; no column array is kept).
   */
  readonly rowPtr: I32Buffer;
  /** PEFT's `shira_weight[adapter]`, in the order of {@link indices} (see {@link peftValues} for PEFT's order). */
  readonly weight: Parameter;
  /** PEFT's `scaling[adapter]` (default 1.0). */
  scaling = 1;
  /**
   * Base values gathered at `indices` while fused (null when not fused): f32 values, or on a half-precision base the
   * u16 bits (see {@link savedBits}). @internal
   */
  saved: F32Buffer | null = null;
  readonly outFeatures: number;
  readonly inFeatures: number;
  /** The stored weight is `[in, out]` (Conv1D). */
  readonly fanInFanOut: boolean;

  /** Length of a stored row (Linear: in; Conv1D: out): the CSR kernels' `rowLen`. */
  get storedCols(): number {
    return this.fanInFanOut ? this.outFeatures : this.inFeatures;
  }

  /**
   * @internal `flat`: positions in the stored weight (see {@link ShiraLinear.addAdapter} for the conversion from
   * PEFT's `[out, in]` positions), sorted ascending, unique and in range (checked by the caller); `values` in the
   * same order.
   */
  constructor(r: number, flat: Int32Array, values: ArrayLike<number>, outFeatures: number, inFeatures: number, fanInFanOut = false) {
    const rt = runtime();
    const nnz = flat.length;
    this.r = r;
    this.nnz = nnz;
    this.outFeatures = outFeatures;
    this.inFeatures = inFeatures;
    this.fanInFanOut = fanInFanOut;
    const storedRows = fanInFanOut ? inFeatures : outFeatures;
    const storedCols = fanInFanOut ? outFeatures : inFeatures;
    const rowPtr = new Int32Array(storedRows + 1);
    for (let j = 0; j < nnz; j++) rowPtr[Math.floor(flat[j] / storedCols) + 1]++;
    for (let i = 0; i < storedRows; i++) rowPtr[i + 1] += rowPtr[i];
    // all three buffers or none (a failed allocation frees the ones already made)
    const [indices, rp, weight] = rt.transaction(() => [rt.allocI32(flat), rt.allocI32(rowPtr), Parameter.from(values, [nnz])] as const);
    this.indices = indices;
    this.rowPtr = rp;
    this.weight = weight;
  }

  /**
   * PEFT positions (`row * in + col` of the `[out, in]` matrix, sorted ascending) and their values -> the stored
   * form: for a `[in, out]` (fan_in_fan_out) weight each position becomes `col * out + row`, sorted ascending with
   * the values permuted alike. Identity for `[out, in]` weights.
   */
  static toStored(flat: Int32Array, values: Float32Array, outFeatures: number, inFeatures: number, fanInFanOut: boolean): { flat: Int32Array; values: Float32Array } {
    if (!fanInFanOut) return { flat, values };
    const n = flat.length;
    const stored = new Int32Array(n);
    for (let j = 0; j < n; j++) {
      const row = Math.floor(flat[j] / inFeatures);
      stored[j] = (flat[j] - row * inFeatures) * outFeatures + row;
    }
    const order = Int32Array.from({ length: n }, (_, j) => j).sort((a, b) => stored[a] - stored[b]);
    return { flat: Int32Array.from(order, (j) => stored[j]), values: Float32Array.from(order, (j) => values[j]) };
  }

  /** The `[out, in]` position (row = output index, col = input index) of stored entry `j`. */
  position(j: number): [number, number] {
    const p = this.indices.view[j];
    if (this.fanInFanOut) {
      const col = Math.floor(p / this.outFeatures);
      return [p - col * this.outFeatures, col];
    }
    const row = Math.floor(p / this.inFeatures);
    return [row, p - row * this.inFeatures];
  }

  /**
   * For each entry in PEFT's order (row-major over `[out, in]`), its index in the stored order; null when the two
   * orders agree (`[out, in]` weights).
   */
  peftOrder(): Int32Array | null {
    if (!this.fanInFanOut) return null;
    const flat = this.indices.view;
    const out = this.outFeatures;
    const inn = this.inFeatures;
    const key = new Int32Array(this.nnz);
    for (let j = 0; j < this.nnz; j++) {
      const col = Math.floor(flat[j] / out);
      key[j] = (flat[j] - col * out) * inn + col;
    }
    return Int32Array.from({ length: this.nnz }, (_, j) => j).sort((a, b) => key[a] - key[b]);
  }

  /**
   * PEFT's `shira_indices[adapter]`: `[2, nnz]` rows (output index) then columns (input index), sorted row-major
   * as PEFT writes them (a copy). The argument is ignored (kept for compatibility).
   */
  rowsCols(_inFeatures?: number): { rows: Int32Array; cols: Int32Array } {
    const order = this.peftOrder();
    const rows = new Int32Array(this.nnz);
    const cols = new Int32Array(this.nnz);
    for (let i = 0; i < this.nnz; i++) {
      const [r, c] = this.position(order ? order[i] : i);
      rows[i] = r;
      cols[i] = c;
    }
    return { rows, cols };
  }

  /** The values in PEFT's order (that of {@link rowsCols}): what `shira_weight` holds in a file (a copy). */
  peftValues(): Float32Array {
    const v = this.weight.toArray();
    const order = this.peftOrder();
    return order ? Float32Array.from(order, (j) => v[j]) : v;
  }

  free(): void {
    this.indices.free();
    this.rowPtr.free();
    this.weight.free();
    this.saved?.free();
    this.saved = null;
  }
}

/** Named parameters without a forward (PyTorch's `nn.ParameterDict`). */
class ParameterDict extends Module {
  forward(_x: Tensor): Tensor {
    throw new StateError("ADAPTER_STATE", "ParameterDict has no forward");
  }
}

/** An entry of a layer's fused stack: which adapter, with which coefficient (weight × scaling, f32). */
export interface FusedEntry {
  name: string;
  coef: number;
}

/**
 * The type argument is the wrapped layer's type: `ShiraLinear` alone means a `Linear` / `Conv1D` base (what code
 * written before half-precision bases expects); a layer over a half weight is a `ShiraLinear<HalfLinear>` or `ShiraLinear<HalfConv1D>` (check
 * {@link ShiraLinear.half}).
 */
export class ShiraLinear<B extends AdaptableLayer = DenseLayer> extends Module {
  /** The wrapped layer (PEFT's `base_layer`); its weight is the live (possibly fused) weight. */
  readonly baseLayer: B;
  /** The wrapped layer when it is a half-precision {@link HalfLinear} / {@link HalfConv1D} (u16 weight bits), else null. */
  readonly half: HalfDense | null;
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** The base weight is stored `[in, out]` (a GPT-2 `Conv1D`; PEFT's `fan_in_fan_out`). */
  readonly fanInFanOut: boolean;
  /** Adapters on this layer by name (PEFT's `shira_weight` / `shira_indices` dicts). */
  readonly adapters = new Map<string, ShiraAdapterWeights>();
  /** Adapters applied by the unfused forward, in order (set by the model). */
  activeAdapters: string[] = [];
  /** Adapter layers disabled (forward uses the base weight only). */
  disabled = false;
  #fused: FusedEntry[] = [];
  #input: Tensor | null = null;
  // PEFT's `shira_weight` ParameterDict: parameters named `<module>.shira_weight.<adapter>`
  #shiraWeight = new ParameterDict();
  /** Scratch of the sparse forward kernel for {@link forwardInto}, kept between calls (grown, never per call). */
  #scratch: F32Buffer | null = null;

  constructor(baseLayer: B) {
    super();
    this.baseLayer = this.registerModule("base_layer", baseLayer) as B;
    this.registerModule("shira_weight", this.#shiraWeight);
    this.inFeatures = baseLayer.inFeatures;
    this.outFeatures = baseLayer.outFeatures;
    this.fanInFanOut = fanInFanOutOf(baseLayer);
    this.half = isHalfDense(baseLayer) ? baseLayer : null;
  }

  /** Byte offset of the live weight: f32 values, or the u16 bits of a half base. */
  get #w(): number {
    return this.half ? this.half.weightPtr : (this.baseLayer as DenseLayer).weight.ptr;
  }

  /** Words of the saved-values buffer for `n` positions (see {@link savedBuffer}). */
  #savedWords(n: number): number {
    return savedWords(n, this.half !== null);
  }

  /** `W[idx] = saved + f32(v * coef)` for a fused adapter whose base values are kept in `a.saved`. */
  #resetFused(a: ShiraAdapterWeights, coef: number): void {
    const k = runtime().k;
    const h = this.half;
    if (!h) {
      k.f32_scatter_set_add(this.#w, a.indices.ptr, a.saved!.ptr, a.weight.ptr, coef, a.nnz);
      return;
    }
    // restore the bits, then gather (the same bits again) and add: half(widen(saved) + f32(v * coef))
    k.h16_scatter_set(h.weightPtr, a.indices.ptr, a.saved!.ptr, a.nnz);
    k.h16_gather_scatter_add(h.weightPtr, a.indices.ptr, a.saved!.ptr, a.weight.ptr, coef, a.nnz, h.dtypeCode);
  }

  /**
   * Adds an adapter. `flat`: PEFT's positions, `row * in + col` of the `[out, in]` matrix, sorted ascending (what
   * the mask functions and the file reader produce), with `values` in the same order; values default to zeros (or
   * `initWeights: false`: N(0,1)). On a Conv1D the positions are converted to the stored `[in, out]` weight
   * (`col * out + row`), sorted, and the values permuted with them.
   */
  addAdapter(name: string, r: number, flat: Int32Array, values?: ArrayLike<number>, initWeights = true): ShiraAdapterWeights {
    if (this.adapters.has(name)) throw new StateError("ADAPTER_EXISTS", `adapter "${name}" already exists on this layer`);
    const a = ShiraLinear.buildAdapter(this.baseLayer, r, flat, values, initWeights);
    this.attachAdapter(name, a);
    return a;
  }

  /**
   * @internal The wasm buffers of an adapter for `base` (see {@link addAdapter} for the arguments), not attached to
   * any layer: the model builds every layer's adapter first, then attaches them all ({@link attachAdapter}), so that
   * a failed allocation changes no layer.
   */
  static buildAdapter(base: AdaptableLayer, r: number, flat: Int32Array, values?: ArrayLike<number>, initWeights = true): ShiraAdapterWeights {
    let v: Float32Array;
    if (values) v = values instanceof Float32Array ? values : Float32Array.from(values);
    else {
      v = new Float32Array(flat.length);
      if (!initWeights) for (let i = 0; i < v.length; i++) v[i] = defaultRng.normal();
    }
    const fanInFanOut = fanInFanOutOf(base);
    const stored = ShiraAdapterWeights.toStored(flat, v, base.outFeatures, base.inFeatures, fanInFanOut);
    return new ShiraAdapterWeights(r, stored.flat, stored.values, base.outFeatures, base.inFeatures, fanInFanOut);
  }

  /** @internal Attaches adapter weights from {@link buildAdapter} under `name` (allocates nothing). */
  attachAdapter(name: string, a: ShiraAdapterWeights): void {
    if (this.adapters.has(name)) throw new StateError("ADAPTER_EXISTS", `adapter "${name}" already exists on this layer`);
    this.adapters.set(name, a);
    this.#shiraWeight.registerParameter(name, a.weight);
  }

  /** The `[out, in]` position (row = output index, col = input index) of flat index `p` of the stored weight. */
  positionOf(p: number): [number, number] {
    if (this.fanInFanOut) {
      const col = Math.floor(p / this.outFeatures);
      return [p - col * this.outFeatures, col];
    }
    const row = Math.floor(p / this.inFeatures);
    return [row, p - row * this.inFeatures];
  }

  /** Frees the cached forward scratch (it is allocated again when needed). */
  releaseScratch(): void {
    this.#scratch?.free();
    this.#scratch = null;
  }

  /** A cached scratch of at least `n` floats (0: none). */
  #scratchOf(n: number): number {
    if (n <= 0) return 0;
    if (!this.#scratch || this.#scratch.length < n) {
      this.releaseScratch();
      this.#scratch = runtime().allocF32(n);
    }
    return this.#scratch.ptr;
  }

  /** Removes an adapter and frees its memory (restores the base first if it was fused; re-fuses the rest). */
  deleteAdapter(name: string): void {
    const a = this.adapters.get(name);
    if (!a) return;
    if (this.#fused.some((e) => e.name === name)) {
      const rest = this.#fused.filter((e) => e.name !== name);
      const bufs = this.prepareFuse(rest);
      this.restoreBase();
      this.fuse(rest, bufs);
    }
    this.#shiraWeight.removeParameter(name);
    a.free();
    this.adapters.delete(name);
    this.releaseScratch();
    this.activeAdapters = this.activeAdapters.filter((n) => n !== name);
  }

  /** PEFT's `set_scale`: ignored for adapters not on this layer. Fused weights are refreshed. */
  setScale(name: string, scale: number): void {
    const a = this.adapters.get(name);
    if (!a) return;
    a.scaling = scale;
  }

  /** The fused stack (application order). */
  get fusedEntries(): readonly FusedEntry[] {
    return this.#fused;
  }

  /** Whether any adapter is fused into the live weight. */
  get merged(): boolean {
    return this.#fused.length > 0;
  }

  /**
   * @internal Buffers for {@link fuse}: one per listed adapter that is on this layer, by name, all or none (a
   * failed allocation frees the ones already made). Allocated before any weight changes.
   */
  prepareFuse(entries: readonly { name: string }[]): Map<string, F32Buffer> {
    const rt = runtime();
    return rt.transaction(() => {
      const out = new Map<string, F32Buffer>();
      for (const e of entries) {
        const a = this.adapters.get(e.name);
        if (a && !out.has(e.name)) out.set(e.name, savedBuffer(a.nnz, this.half !== null));
      }
      return out;
    });
  }

  /**
   * Fuses adapters into the live weight, after any already fused: for each, gather the current values at its
   * positions (kept for the exact restore), then `W[idx] += f32(v * coef)`. O(nnz). Trusts its arguments
   * (the model validates names and coefficients first). `prepared` (from {@link prepareFuse}) supplies the buffers
   * for the gathered values, so that nothing is allocated once weights change; unused ones are freed.
   */
  fuse(entries: readonly FusedEntry[], prepared?: Map<string, F32Buffer>): void {
    const bufs = prepared ?? this.prepareFuse(entries);
    const todo: [FusedEntry, ShiraAdapterWeights, F32Buffer][] = [];
    try {
      for (const e of entries) {
        const a = this.adapters.get(e.name);
        if (!a) continue;
        if (a.saved || this.#fused.some((f) => f.name === e.name) || todo.some(([t]) => t.name === e.name)) {
          throw new StateError("ADAPTER_STATE", `adapter "${e.name}" is already fused on this layer`, { adapter: e.name });
        }
        let b = bufs.get(e.name);
        if (!b || b.freed || b.length !== this.#savedWords(a.nnz)) {
          b?.free();
          b = savedBuffer(a.nnz, this.half !== null);
          bufs.set(e.name, b);
        }
        todo.push([e, a, b]);
      }
    } catch (err) {
      for (const b of bufs.values()) b.free();
      throw err;
    }
    const used = new Set(todo.map(([, , b]) => b));
    for (const b of bufs.values()) if (!used.has(b)) b.free();
    const k = runtime().k;
    const w = this.#w;
    const h = this.half;
    for (const [e, a, b] of todo) {
      a.saved = b;
      // gather + scatter-add in one sweep: saved = W[idx]; W[idx] = saved + f32(v * coef) (half: rounded to half,
      // each fused adapter in turn, as PEFT's successive `+=` on a bf16 weight)
      if (h) k.h16_gather_scatter_add(w, a.indices.ptr, a.saved.ptr, a.weight.ptr, Math.fround(e.coef), a.nnz, h.dtypeCode);
      else k.f32_gather_scatter_add(w, a.indices.ptr, a.saved.ptr, a.weight.ptr, Math.fround(e.coef), a.nnz);
      this.#fused.push({ name: e.name, coef: Math.fround(e.coef) });
    }
  }

  /**
   * @internal The buffer {@link switchFused} needs for switching to adapter `next` alone: room for the base values
   * at its positions, or null when `next` is not on this layer or is already its single fused adapter. Allocated
   * before any weight changes, so that a failed allocation leaves every layer as it was.
   */
  prepareSwitch(next: string): F32Buffer | null {
    const a = this.adapters.get(next);
    if (!a || (this.#fused.length === 1 && this.#fused[0].name === next)) return null;
    return savedBuffer(a.nnz, this.half !== null);
  }

  /**
   * @internal Rapid switch of one layer: from its single fused adapter (or none) to `next` alone (`null`, or an
   * adapter not on this layer: to the base), in one pass over the positions. Equal, bit for bit, to
   * `restoreBase()` followed by `fuse([next])`:
   *
   * - old and new fused (different adapters): `f32_switch_merge` walks both sorted position lists in address
   *   order, restoring the old adapter's base values and fusing the new one (its base values gathered into `buf`);
   * - only the new one: `f32_gather_scatter_add` (gather and add in one sweep);
   * - only the old one: `restoreBase()`;
   * - the same adapter again (perhaps another coefficient): `W[idx] = saved + f32(v * coef)` (kept base values).
   *
   * `buf` comes from {@link prepareSwitch}(next.name) (and is owned by the layer afterwards). Requires at most one
   * fused adapter ({@link canSwitchFused}).
   */
  switchFused(next: FusedEntry | null, buf: F32Buffer | null): void {
    if (this.#fused.length > 1) {
      buf?.free();
      throw new StateError("ADAPTER_STATE", `switchFused: ${this.#fused.length} adapters are fused on this layer (at most 1 allowed)`);
    }
    const nextAdapter = next ? this.adapters.get(next.name) : undefined;
    const cur = this.#fused[0];
    if (!nextAdapter || !next) {
      buf?.free();
      this.restoreBase();
      return;
    }
    const k = runtime().k;
    const w = this.#w;
    const h = this.half;
    const b = nextAdapter;
    const coef = Math.fround(next.coef);
    if (cur && cur.name === next.name) {
      buf?.free();
      this.#resetFused(b, coef);
      this.#fused = [{ name: next.name, coef }];
      return;
    }
    if (!buf || buf.length !== this.#savedWords(b.nnz)) {
      buf?.free();
      throw new StateError("ADAPTER_STATE", `switchFused: no buffer of ${b.nnz} values prepared for adapter "${next.name}"`);
    }
    if (cur) {
      const a = this.adapters.get(cur.name)!;
      if (h) k.h16_switch_merge(w, a.indices.ptr, a.saved!.ptr, a.nnz, b.indices.ptr, buf.ptr, b.weight.ptr, coef, b.nnz, h.dtypeCode);
      else k.f32_switch_merge(w, a.indices.ptr, a.saved!.ptr, a.nnz, b.indices.ptr, buf.ptr, b.weight.ptr, coef, b.nnz);
      a.saved!.free();
      a.saved = null;
    } else if (h) {
      k.h16_gather_scatter_add(w, b.indices.ptr, buf.ptr, b.weight.ptr, coef, b.nnz, h.dtypeCode);
    } else {
      k.f32_gather_scatter_add(w, b.indices.ptr, buf.ptr, b.weight.ptr, coef, b.nnz);
    }
    b.saved = buf;
    this.#fused = [{ name: next.name, coef }];
  }

  /** @internal Whether {@link switchFused} applies (at most one adapter fused on this layer). */
  get canSwitchFused(): boolean {
    return this.#fused.length <= 1;
  }

  /** Forgets the fused stack without restoring (the fused values become the weight: merge-and-unload). @internal */
  forgetFused(): void {
    for (const e of this.#fused) {
      const a = this.adapters.get(e.name);
      a?.saved?.free();
      if (a) a.saved = null;
    }
    this.#fused = [];
  }

  /** Writes back the gathered base values in reverse fusion order: the live weight is the base again, bit for bit. */
  restoreBase(): void {
    const k = runtime().k;
    const w = this.#w;
    for (let i = this.#fused.length - 1; i >= 0; i--) {
      const a = this.adapters.get(this.#fused[i].name)!;
      if (this.half) k.h16_scatter_set(w, a.indices.ptr, a.saved!.ptr, a.nnz);
      else k.f32_scatter_set(w, a.indices.ptr, a.saved!.ptr, a.nnz);
      a.saved!.free();
      a.saved = null;
    }
    this.#fused = [];
  }

  /**
   * Re-applies the fused adapters after their values changed (training): with one fused adapter this is a single
   * O(nnz) pass `W[idx] = saved + f32(v * coef)`; otherwise restore and fuse again.
   */
  refreshFused(): void {
    if (this.#fused.length === 0) return;
    if (this.#fused.length === 1) {
      const e = this.#fused[0];
      this.#resetFused(this.adapters.get(e.name)!, e.coef);
      return;
    }
    const entries = this.#fused.slice();
    const bufs = this.prepareFuse(entries);
    this.restoreBase();
    this.fuse(entries, bufs);
  }

  /**
   * A copy of the base weight without any fused adapter, in the stored layout: `[out, in]` for a Linear, `[in, out]`
   * for a Conv1D (fan_in_fan_out); a half base is widened to f32 (exact).
   */
  baseWeight(): Float32Array {
    const w = this.liveWeightF32();
    // the first fused adapter to touch a position holds its base value: write in reverse so it wins
    for (let i = this.#fused.length - 1; i >= 0; i--) {
      const a = this.adapters.get(this.#fused[i].name)!;
      const idx = a.indices.view;
      const saved = this.savedValues(a);
      for (let j = 0; j < a.nnz; j++) w[idx[j]] = saved[j];
    }
    return w;
  }

  /** A copy of the live (possibly fused) weight as f32, in the stored layout (a half base is widened). */
  liveWeightF32(): Float32Array {
    return this.half ? this.half.weightF32() : (this.baseLayer as DenseLayer).weight.toArray();
  }

  /** The base values kept for a fused adapter as f32 (a copy; widened from the saved bits on a half base). @internal */
  savedValues(a: ShiraAdapterWeights): Float32Array {
    if (!a.saved) throw new StateError("ADAPTER_STATE", "savedValues: the adapter is not fused on this layer");
    if (!this.half) return a.saved.toArray();
    const bits = savedBits(a.saved, a.nnz);
    const dt = this.half.dtypeCode;
    return Float32Array.from(bits, (h) => halfToF32(h, dt));
  }

  /**
   * The value the live weight holds after adding `delta` to `cur` at one position: `f32(cur + delta)`, or on a half
   * base that sum rounded to the half dtype (for finiteness checks before a merge). @internal
   */
  storedSum(cur: number, delta: number): number {
    const s = Math.fround(cur + delta);
    if (!this.half) return s;
    const dt = this.half.dtypeCode;
    return halfToF32(f32ToHalf(s, dt), dt);
  }

  /**
   * PEFT's `get_delta_weight(adapter)`: a dense delta with `f32(v * scaling)` at the positions, in the layout of
   * the stored weight, so that `weight + delta` is the merged weight: `[out, in]` for a Linear; `[in, out]` for a
   * Conv1D (fan_in_fan_out), i.e. the transpose of the `[out, in]` delta, as PEFT's LoRA returns
   * `transpose(delta, fan_in_fan_out)`.
   */
  getDeltaWeight(name: string): Tensor {
    const a = this.adapters.get(name);
    if (!a) throw new StateError("ADAPTER_NOT_FOUND", `adapter "${name}" is not on this layer`);
    const d = Tensor.zeros(this.fanInFanOut ? [this.inFeatures, this.outFeatures] : [this.outFeatures, this.inFeatures]);
    runtime().k.f32_scatter_add(d.ptr, a.indices.ptr, a.weight.ptr, Math.fround(a.scaling), a.nnz);
    return d;
  }

  /** Unfused adapters the forward applies. */
  #unfusedActive(): ShiraAdapterWeights[] {
    if (this.disabled || this.#fused.length > 0) return [];
    const out: ShiraAdapterWeights[] = [];
    for (const n of this.activeAdapters) {
      const a = this.adapters.get(n);
      if (a) out.push(a);
    }
    return out;
  }

  /**
   * Adds the unfused active adapters' sparse products to `y[B, out]`: Linear `f32_spmm_csr` (CSR by output row);
   * Conv1D `f32_spmm_csr_t` (CSR by input row, scatter into the outputs; needs no scratch).
   */
  #sparseForward(xPtr: number, yPtr: number, B: number, extra: ShiraAdapterWeights[], scratchPtr: number): void {
    const k = runtime().k;
    for (const a of extra) {
      const s = Math.fround(a.scaling);
      if (this.fanInFanOut) k.f32_spmm_csr_t(xPtr, a.rowPtr.ptr, a.indices.ptr, this.outFeatures, a.weight.ptr, s, yPtr, B, this.inFeatures, this.outFeatures);
      else k.f32_spmm_csr(xPtr, a.rowPtr.ptr, a.indices.ptr, this.inFeatures, a.weight.ptr, s, yPtr, B, this.inFeatures, this.outFeatures, scratchPtr);
    }
  }

  /** Floats of scratch {@link #sparseForward} needs for `B` rows. */
  #sparseScratch(B: number): number {
    return this.fanInFanOut ? 0 : runtime().k.f32_spmm_csr_scratch(B, this.inFeatures, this.outFeatures);
  }

  /**
   * `y[rows, out]` = the layer's output for `x[rows, in]` (byte offsets into wasm memory; `y` is overwritten): the
   * live weight's dense product plus the unfused active adapters. Allocates nothing in steady state: the sparse
   * kernel's scratch (Linear, rows > 1) is kept on the layer and grown only when a larger `rows` is seen.
   */
  forwardInto(xPtr: number, yPtr: number, rows: number): void {
    if (rows <= 0) return;
    this.baseLayer.forwardInto(xPtr, yPtr, rows);
    const extra = this.#unfusedActive();
    if (extra.length) this.#sparseForward(xPtr, yPtr, rows, extra, this.#scratchOf(this.#sparseScratch(rows)));
  }

  forward(x: Tensor): Tensor {
    assertLive(x, "ShiraLinear.forward");
    if (x.ndim < 1 || x.dim(-1) !== this.inFeatures) {
      throw new ShapeError("SHAPE_MISMATCH", `ShiraLinear.forward: input [${x.shape.join(", ")}] does not end in in_features = ${this.inFeatures}`);
    }
    const B = x.size / this.inFeatures;
    const rt = runtime();
    const y = Tensor.empty([...x.shape.slice(0, -1), this.outFeatures]);
    if (B > 0) this.baseLayer.forwardInto(x.ptr, y.ptr, B);
    const extra = this.#unfusedActive();
    if (extra.length && B > 0) {
      // a temporary scratch here (training batches would otherwise keep a large buffer per layer alive)
      const need = this.#sparseScratch(B);
      let scratch: F32Buffer | null = null;
      try {
        scratch = need > 0 ? rt.allocF32(need) : null;
        this.#sparseForward(x.ptr, y.ptr, B, extra, scratch ? scratch.ptr : 0);
      } catch (e) {
        y.free();
        throw e;
      } finally {
        scratch?.free();
      }
    }
    if (this.training) this.#input = x;
    return y;
  }

  /**
   * Backward: dL/dx through the live weight (plus the unfused sparse deltas), value gradients of trainable
   * adapters by the masked matmul (O(B·nnz), never a dense [out, in] gradient), and the base layer's own
   * gradients only if its parameters are trainable. On a Conv1D (CSR by input row) the masked matmul runs with the
   * roles of x and gy swapped, and the weight gradient is `xᵀ·gy` (`[in, out]`).
   */
  override backward(gy: Tensor): Tensor {
    const x = this.#input;
    if (!x) throw new StateError("ADAPTER_STATE", "ShiraLinear.backward: no cached input (call forward in training mode first)");
    const B = x.size / this.inFeatures;
    const N = this.outFeatures;
    const K = this.inFeatures;
    const t = this.fanInFanOut;
    const rt = runtime();
    const k = rt.k;
    const base = this.baseLayer;
    const unfused = this.#unfusedActive();
    const withCoef: [ShiraAdapterWeights, number][] = unfused.length
      ? unfused.map((a) => [a, Math.fround(a.scaling)])
      : this.#fused.map((e) => [this.adapters.get(e.name)!, e.coef]);
    // value gradients first (masked matmul), so its scratch is freed before dL/dx is allocated (lower peak memory)
    const trainable = withCoef.filter(([a]) => a.weight.requiresGrad);
    if (trainable.length) {
      // xᵀ whole plus a block of gyᵀ rows (see assembly/sddmm.ts); on a Conv1D the kernel's rows are the inputs
      const need = t ? k.f32_sddmm_csr_scratch(B, N, K) : k.f32_sddmm_csr_scratch(B, K, N);
      // not zero-filled: the kernel packs (writes) every float of it that it reads
      const scratch = need > 0 ? rt.allocF32Uninit(need, "masked-matmul scratch") : null;
      try {
        for (const [a, coef] of trainable) {
          const g = a.weight.ensureGrad().ptr;
          const sp = scratch ? scratch.ptr : 0;
          // g[j] = coef * Σ_b gy[b, out_j] x[b, in_j]; Conv1D: CSR rows are inputs, columns outputs
          if (t) k.f32_sddmm_csr(x.ptr, gy.ptr, a.rowPtr.ptr, a.indices.ptr, N, g, coef, B, N, K, 1, sp);
          else k.f32_sddmm_csr(gy.ptr, x.ptr, a.rowPtr.ptr, a.indices.ptr, K, g, coef, B, K, N, 1, sp);
        }
      } finally {
        scratch?.free();
      }
    }
    const h = this.half;
    if (h && h.weightBits.requiresGrad) {
      throw new ConfigError("MODEL_UNSUPPORTED", `ShiraLinear.backward: the ${h.dtype} base weight asks for a gradient, but half-precision weights are frozen (train the adapter, or load the model as f32)`, { dtype: h.dtype });
    }
    // a half weight is frozen (no gradient), but mask calibration may read dL/dW through its sink
    h?.accumulateWeightGrad(x.ptr, gy.ptr, B);
    const dense = h ? null : (base as DenseLayer);
    if (dense && dense.weight.requiresGrad) {
      if (t) k.f32_gemm_tn(x.ptr, gy.ptr, dense.weight.ensureGrad().ptr, B, K, N, 1);
      else k.f32_gemm_tn(gy.ptr, x.ptr, dense.weight.ensureGrad().ptr, B, N, K, 1);
    }
    if (base.bias && base.bias.requiresGrad) k.f32_bias_grad(gy.ptr, base.bias.ensureGrad().ptr, B, N, 1);
    // dL/dx through the live weight (which holds the fused adapters, if any)
    const gx = Tensor.zeros(x.shape);
    if (h) h.inputGradInto(gy.ptr, gx.ptr, B);
    else if (t) k.f32_gemm_nt(gy.ptr, dense!.weight.ptr, 0, gx.ptr, B, N, K, 0);
    else k.f32_gemm_nn(gy.ptr, dense!.weight.ptr, gx.ptr, B, N, K, 0);
    // plus the sparse part of unfused adapters: gx[b, in_j] += coef * v_j * gy[b, out_j]
    if (unfused.length) {
      const need = t ? k.f32_spmm_csr_scratch(B, N, K) : 0;
      const scratch = need > 0 ? rt.allocF32(need) : null;
      try {
        for (const [a, coef] of withCoef) {
          if (t) k.f32_spmm_csr(gy.ptr, a.rowPtr.ptr, a.indices.ptr, N, a.weight.ptr, coef, gx.ptr, B, N, K, scratch ? scratch.ptr : 0);
          else k.f32_spmm_csr_t(gy.ptr, a.rowPtr.ptr, a.indices.ptr, K, a.weight.ptr, coef, gx.ptr, B, N, K);
        }
      } finally {
        scratch?.free();
      }
    }
    return gx;
  }

  protected override clearOwnCache(): void {
    this.#input = null;
  }

  /** Adapter names on this layer. */
  adapterNames(): string[] {
    return [...this.adapters.keys()];
  }

  /** Frees the parameters, the adapters' position buffers and the cached scratch. */
  override free(): void {
    this.releaseScratch();
    for (const a of this.adapters.values()) {
      a.indices.free();
      a.rowPtr.free();
      a.saved?.free();
      a.saved = null;
    }
    super.free();
  }

  override toString(): string {
    const f = this.fanInFanOut ? ", fan_in_fan_out=True" : this.half ? `, dtype=${this.half.dtype}` : "";
    return `shira.Linear(in_features=${this.inFeatures}, out_features=${this.outFeatures}${f}, adapters=[${this.adapterNames().join(", ")}])`;
  }
}
