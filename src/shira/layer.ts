/**
 * `ShiraLinear`: a `Linear` layer carrying SHiRA adapters (PEFT's `shira.Linear`).
 *
 * Per adapter it stores `nnz = r * (out + in)` values (`shiraWeight`, PEFT's `shira_weight`) and their positions,
 * once, in the two forms the kernels want:
 *
 * ```
 *   indices  i32[nnz]    flat positions row * in + col, ascending      (scatter / gather, switching)
 *   rowPtr   i32[out+1]  CSR row pointers by output row                (unfused forward, masked-matmul grads)
 *   cols     i32[nnz]    column of each value, in the same order
 *   weight   f32[nnz]    the values, in the same order (a trainable Parameter)
 * ```
 *
 * Forward, unfused: `y = x·Wᵀ + b + Σ_active scale_a · x·S_aᵀ` (dense gemm + sparse CSR kernel, no copy of W).
 * Fused (merge / switchTo / fuse): the live weight holds `W + Σ coef_a · S_a`; before an adapter's positions are
 * first modified the base values there are gathered into `saved`, and restoring writes them back in reverse
 * order, so the base is bit-identical after any number of switches (PEFT's `W -= delta` drifts; this does not).
 * Switching from one fused adapter to another is a single sweep over both position lists in address order
 * (`f32_switch_merge`, see `assembly/switch.ts`) with the same result as restoring and fusing again.
 */
import { ShapeError, StateError } from "../errors.js";
import { Linear } from "../nn/linear.js";
import { Module } from "../nn/module.js";
import { defaultRng } from "../nn/random.js";
import { Parameter, Tensor, assertLive } from "../nn/tensor.js";
import { F32Buffer, runtime, type I32Buffer } from "../runtime/runtime.js";

/** An f32 buffer for gathered base values (not zero-filled: the gather writes every element). */
function savedBuffer(n: number): F32Buffer {
  const rt = runtime();
  return new F32Buffer(rt, rt.allocBytes(n * 4), n);
}

/** One adapter's sparse delta on one layer. */
export class ShiraAdapterWeights {
  readonly r: number;
  readonly nnz: number;
  readonly indices: I32Buffer;
  readonly rowPtr: I32Buffer;
  readonly cols: I32Buffer;
  /** PEFT's `shira_weight[adapter]`. */
  readonly weight: Parameter;
  /** PEFT's `scaling[adapter]` (default 1.0). */
  scaling = 1;
  /** Base values gathered at `indices` while fused (null when not fused). @internal */
  saved: F32Buffer | null = null;

  /** @internal `flat` must be sorted ascending, unique and in range (checked by the caller). */
  constructor(r: number, flat: Int32Array, values: ArrayLike<number>, outFeatures: number, inFeatures: number) {
    const rt = runtime();
    const nnz = flat.length;
    this.r = r;
    this.nnz = nnz;
    const rowPtr = new Int32Array(outFeatures + 1);
    const cols = new Int32Array(nnz);
    for (let j = 0; j < nnz; j++) {
      const row = Math.floor(flat[j] / inFeatures);
      cols[j] = flat[j] - row * inFeatures;
      rowPtr[row + 1]++;
    }
    for (let i = 0; i < outFeatures; i++) rowPtr[i + 1] += rowPtr[i];
    this.indices = rt.allocI32(flat);
    this.rowPtr = rt.allocI32(rowPtr);
    this.cols = rt.allocI32(cols);
    this.weight = Parameter.from(values, [nnz]);
  }

  /** PEFT's `shira_indices[adapter]`: `[2, nnz]` rows then columns (a copy). */
  rowsCols(inFeatures: number): { rows: Int32Array; cols: Int32Array } {
    const flat = this.indices.view;
    const rows = new Int32Array(this.nnz);
    for (let j = 0; j < this.nnz; j++) rows[j] = Math.floor(flat[j] / inFeatures);
    return { rows, cols: this.cols.toArray() };
  }

  free(): void {
    this.indices.free();
    this.rowPtr.free();
    this.cols.free();
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

export class ShiraLinear extends Module {
  /** The wrapped layer (PEFT's `base_layer`); its weight is the live (possibly fused) weight. */
  readonly baseLayer: Linear;
  readonly inFeatures: number;
  readonly outFeatures: number;
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

  constructor(baseLayer: Linear) {
    super();
    this.baseLayer = this.registerModule("base_layer", baseLayer);
    this.registerModule("shira_weight", this.#shiraWeight);
    this.inFeatures = baseLayer.inFeatures;
    this.outFeatures = baseLayer.outFeatures;
  }

  /** Adds an adapter with the given sorted positions; values default to zeros (or `initWeights: false`: N(0,1)). */
  addAdapter(name: string, r: number, flat: Int32Array, values?: ArrayLike<number>, initWeights = true): ShiraAdapterWeights {
    if (this.adapters.has(name)) throw new StateError("ADAPTER_EXISTS", `adapter "${name}" already exists on this layer`);
    let v = values;
    if (!v) {
      const init = new Float32Array(flat.length);
      if (!initWeights) for (let i = 0; i < init.length; i++) init[i] = defaultRng.normal();
      v = init;
    }
    const a = new ShiraAdapterWeights(r, flat, v, this.outFeatures, this.inFeatures);
    this.adapters.set(name, a);
    this.#shiraWeight.registerParameter(name, a.weight);
    return a;
  }

  /** Removes an adapter and frees its memory (restores the base first if it was fused; re-fuses the rest). */
  deleteAdapter(name: string): void {
    const a = this.adapters.get(name);
    if (!a) return;
    if (this.#fused.some((e) => e.name === name)) {
      const rest = this.#fused.filter((e) => e.name !== name);
      this.restoreBase();
      this.fuse(rest);
    }
    this.#shiraWeight.removeParameter(name);
    a.free();
    this.adapters.delete(name);
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
   * Fuses adapters into the live weight, after any already fused: for each, gather the current values at its
   * positions (kept for the exact restore), then `W[idx] += f32(v * coef)`. O(nnz). Trusts its arguments
   * (the model validates names and coefficients first).
   */
  fuse(entries: readonly FusedEntry[]): void {
    const k = runtime().k;
    const w = this.baseLayer.weight.ptr;
    for (const e of entries) {
      const a = this.adapters.get(e.name);
      if (!a) continue;
      if (a.saved) throw new StateError("ADAPTER_STATE", `adapter "${e.name}" is already fused on this layer`);
      a.saved = savedBuffer(a.nnz);
      // gather + scatter-add in one sweep: saved = W[idx]; W[idx] = saved + f32(v * coef)
      k.f32_gather_scatter_add(w, a.indices.ptr, a.saved.ptr, a.weight.ptr, Math.fround(e.coef), a.nnz);
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
    return savedBuffer(a.nnz);
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
    const w = this.baseLayer.weight.ptr;
    const b = nextAdapter;
    const coef = Math.fround(next.coef);
    if (cur && cur.name === next.name) {
      buf?.free();
      k.f32_scatter_set_add(w, b.indices.ptr, b.saved!.ptr, b.weight.ptr, coef, b.nnz);
      this.#fused = [{ name: next.name, coef }];
      return;
    }
    if (!buf || buf.length !== b.nnz) {
      buf?.free();
      throw new StateError("ADAPTER_STATE", `switchFused: no buffer of ${b.nnz} values prepared for adapter "${next.name}"`);
    }
    if (cur) {
      const a = this.adapters.get(cur.name)!;
      k.f32_switch_merge(w, a.indices.ptr, a.saved!.ptr, a.nnz, b.indices.ptr, buf.ptr, b.weight.ptr, coef, b.nnz);
      a.saved!.free();
      a.saved = null;
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
    const w = this.baseLayer.weight.ptr;
    for (let i = this.#fused.length - 1; i >= 0; i--) {
      const a = this.adapters.get(this.#fused[i].name)!;
      k.f32_scatter_set(w, a.indices.ptr, a.saved!.ptr, a.nnz);
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
      const a = this.adapters.get(e.name)!;
      runtime().k.f32_scatter_set_add(this.baseLayer.weight.ptr, a.indices.ptr, a.saved!.ptr, a.weight.ptr, e.coef, a.nnz);
      return;
    }
    const entries = this.#fused.slice();
    this.restoreBase();
    this.fuse(entries);
  }

  /** A copy of the base weight `[out, in]` without any fused adapter. */
  baseWeight(): Float32Array {
    const w = this.baseLayer.weight.toArray();
    // the first fused adapter to touch a position holds its base value: write in reverse so it wins
    for (let i = this.#fused.length - 1; i >= 0; i--) {
      const a = this.adapters.get(this.#fused[i].name)!;
      const idx = a.indices.view;
      const saved = a.saved!.view;
      for (let j = 0; j < a.nnz; j++) w[idx[j]] = saved[j];
    }
    return w;
  }

  /** PEFT's `get_delta_weight(adapter)`: dense `[out, in]` with `f32(v * scaling)` at the positions. */
  getDeltaWeight(name: string): Tensor {
    const a = this.adapters.get(name);
    if (!a) throw new StateError("ADAPTER_NOT_FOUND", `adapter "${name}" is not on this layer`);
    const d = Tensor.zeros([this.outFeatures, this.inFeatures]);
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

  forward(x: Tensor): Tensor {
    assertLive(x, "ShiraLinear.forward");
    const base = this.baseLayer;
    if (x.ndim < 1 || x.dim(-1) !== this.inFeatures) {
      throw new ShapeError("SHAPE_MISMATCH", `ShiraLinear.forward: input [${x.shape.join(", ")}] does not end in in_features = ${this.inFeatures}`);
    }
    const B = x.size / this.inFeatures;
    const rt = runtime();
    const k = rt.k;
    const y = Tensor.zeros([...x.shape.slice(0, -1), this.outFeatures]);
    k.f32_gemm_nt(x.ptr, base.weight.ptr, base.bias ? base.bias.ptr : 0, y.ptr, B, this.inFeatures, this.outFeatures, 0);
    const extra = this.#unfusedActive();
    if (extra.length) {
      const need = k.f32_spmm_csr_scratch(B, this.inFeatures, this.outFeatures);
      const scratch = need > 0 ? rt.allocF32(need) : null;
      try {
        for (const a of extra) {
          k.f32_spmm_csr(x.ptr, a.rowPtr.ptr, a.cols.ptr, a.weight.ptr, Math.fround(a.scaling), y.ptr, B, this.inFeatures, this.outFeatures, scratch ? scratch.ptr : 0);
        }
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
   * gradients only if its parameters are trainable.
   */
  override backward(gy: Tensor): Tensor {
    const x = this.#input;
    if (!x) throw new StateError("ADAPTER_STATE", "ShiraLinear.backward: no cached input (call forward in training mode first)");
    const B = x.size / this.inFeatures;
    const N = this.outFeatures;
    const K = this.inFeatures;
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
      const need = k.f32_sddmm_csr_scratch(B, K, N);
      const scratch = need > 0 ? rt.allocF32(need) : null;
      try {
        for (const [a, coef] of trainable) {
          k.f32_sddmm_csr(gy.ptr, x.ptr, a.rowPtr.ptr, a.cols.ptr, a.weight.ensureGrad().ptr, coef, B, K, N, 1, scratch ? scratch.ptr : 0);
        }
      } finally {
        scratch?.free();
      }
    }
    if (base.weight.requiresGrad) k.f32_gemm_tn(gy.ptr, x.ptr, base.weight.ensureGrad().ptr, B, N, K, 1);
    if (base.bias && base.bias.requiresGrad) k.f32_bias_grad(gy.ptr, base.bias.ensureGrad().ptr, B, N, 1);
    // dL/dx through the live weight (which holds the fused adapters, if any)
    const gx = Tensor.zeros(x.shape);
    k.f32_gemm_nn(gy.ptr, base.weight.ptr, gx.ptr, B, N, K, 0);
    // plus the sparse part of unfused adapters: gx[b, col_j] += coef * v_j * gy[b, row_j]
    if (unfused.length) {
      const g = gx.data;
      const gyd = gy.data;
      for (const [a, coef] of withCoef) {
        const rp = a.rowPtr.view;
        const cols = a.cols.view;
        const v = a.weight.data;
        for (let n = 0; n < N; n++) {
          for (let j = rp[n]; j < rp[n + 1]; j++) {
            const s = coef * v[j];
            const c = cols[j];
            for (let b = 0; b < B; b++) g[b * K + c] += s * gyd[b * N + n];
          }
        }
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

  override toString(): string {
    return `shira.Linear(in_features=${this.inFeatures}, out_features=${this.outFeatures}, adapters=[${this.adapterNames().join(", ")}])`;
  }
}
