/**
 * A LoRA baseline (PEFT's `LoraConfig` / LoRA `Linear`), for comparisons with SHiRA at the same parameter count
 * (`r_lora·(in + out)` = SHiRA's `nnz` at the same `r`): unfused forward `y = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ` with
 * `s = loraAlpha / r`, training (A ~ U(-1/√in, 1/√in), B = 0, as PEFT), and merge/unmerge through the engine's
 * low-rank kernel (`W ± s·B·A`, O(out·in·r); unmerge subtracts, so the base drifts in the last bits as in PEFT).
 * Saves and loads PEFT's LoRA files (`base_model.model.<m>.lora_A.weight [r, in]`, `lora_B.weight [out, r]`).
 * Targets are `Linear` layers or GPT-2 `Conv1D`s (weight stored `[in, out]`: PEFT's `fan_in_fan_out`, set
 * automatically from the targets as PEFT does); merging a Conv1D adds the transposed delta `s·(B·A)ᵀ = s·Aᵀ·Bᵀ`.
 *
 * Half-precision bases (`HalfLinear`, GPT-2's `HalfConv1D`; BF16 / F16 weight bits): the unfused forward runs the half
 * gemm and adds the f32 low-rank product; backward goes through the half layer's `backward` (frozen weight). Merging is exact to undo: the
 * first merge keeps a copy of the layer's original u16 bits (2·out·in bytes per layer, e.g. 32 MiB for a
 * 4096×4096 layer, held while any LoRA adapter is merged on it), each merge computes the delta in f32 row blocks
 * (`f32_lowrank_fuse` on the widened rows) and rounds once, `W = half(widen(W) + f32(s·B·A))` (torch's rule for
 * PEFT's `weight.data += delta` with an f32 delta), and unmerge writes the original bits back (bit-identical; no
 * `W -= delta` drift). Several merged adapters round after each one, as PEFT's successive `+=`.
 *
 * ```ts
 * const lora = getLoraModel(model, new LoraConfig({ r: 16, loraAlpha: 16, targetModules: ["fc1", "fc2"] }), "task");
 * await train(lora, data, { epochs: 2, lr: 3e-3 });
 * lora.merge();       // W += s·B·A
 * lora.switchTo("other");
 * ```
 */
import { refuseWhileGenerating, refuseWhileRunning, runScope } from "../shira/busy.js";
import { ConfigError, FormatError, ShapeError, StateError } from "../errors.js";
import { Linear } from "../nn/linear.js";
import { type DenseLayer } from "../nn/conv1d.js";
import { isHalfDense, type HalfDense } from "../nn/half.js";
import { Module } from "../nn/module.js";
import { Parameter, Tensor, assertLive } from "../nn/tensor.js";
import { runtime, type F32Buffer } from "../runtime/runtime.js";
import { checkAdapterName, matchesTarget, type TargetModules } from "../shira/config.js";
import { fanInFanOutOf, isAdaptableLayer, type AdaptableLayer } from "../shira/layer.js";
import { pyFloat, pythonJsonDumps } from "../shira/python-json.js";
import { readSafetensors, toFloat32, writeSafetensors, type TensorInput } from "../io/safetensors.js";
import type { AdapterFiles } from "../io/peft.js";

export interface LoraConfigInit {
  r?: number;
  loraAlpha?: number;
  targetModules?: TargetModules;
  /** Dropout is not implemented (only 0 is accepted). */
  loraDropout?: number;
  initLoraWeights?: boolean;
  inferenceMode?: boolean;
  /** The targets store their weight `[in, out]` (GPT-2 Conv1D). Set from the targets when the adapter is added. */
  fanInFanOut?: boolean;
}

/** PEFT's `LoraConfig` (the fields this baseline uses). */
export class LoraConfig {
  r: number;
  loraAlpha: number;
  targetModules: TargetModules;
  loraDropout: number;
  initLoraWeights: boolean;
  inferenceMode: boolean;
  fanInFanOut: boolean;

  constructor(init: LoraConfigInit = {}) {
    this.r = init.r ?? 8;
    this.loraAlpha = init.loraAlpha ?? 8;
    this.targetModules = init.targetModules ?? null;
    this.loraDropout = init.loraDropout ?? 0;
    this.initLoraWeights = init.initLoraWeights ?? true;
    this.inferenceMode = init.inferenceMode ?? false;
    this.fanInFanOut = init.fanInFanOut ?? false;
    if (!Number.isSafeInteger(this.r) || this.r <= 0) throw new ConfigError("CONFIG_R", `\`r\` should be a positive integer value but the value passed is ${this.r}`, { field: "r", value: this.r });
    if (!Number.isFinite(this.loraAlpha)) throw new ConfigError("CONFIG_INVALID", `lora_alpha must be a number, got ${this.loraAlpha}`);
    if (this.loraDropout !== 0) throw new ConfigError("CONFIG_INVALID", `lora_dropout ${this.loraDropout} is not supported by this baseline (use 0)`);
  }

  /** `loraAlpha / r`. */
  get scaling(): number {
    return this.loraAlpha / this.r;
  }

  /** PEFT's adapter_config.json text for this LoRA config. */
  toJSONString(): string {
    const tm = this.targetModules;
    return pythonJsonDumps(
      {
        alpha_pattern: {},
        auto_mapping: null,
        base_model_name_or_path: null,
        bias: "none",
        fan_in_fan_out: this.fanInFanOut,
        inference_mode: true,
        init_lora_weights: this.initLoraWeights,
        layers_pattern: null,
        layers_to_transform: null,
        lora_alpha: this.loraAlpha,
        lora_dropout: pyFloat(this.loraDropout),
        modules_to_save: null,
        peft_type: "LORA",
        r: this.r,
        rank_pattern: {},
        revision: null,
        target_modules: Array.isArray(tm) ? [...new Set(tm)].sort() : tm,
        task_type: null,
        use_dora: false,
        use_rslora: false,
      },
      { indent: 2, sortKeys: true },
    );
  }

  /** Reads PEFT's LoRA adapter_config.json. */
  static fromJSON(json: string | Record<string, unknown>): LoraConfig {
    const o = (typeof json === "string" ? JSON.parse(json) : json) as Record<string, unknown>;
    if (o["peft_type"] !== "LORA") throw new ConfigError("CONFIG_PEFT_TYPE", `adapter_config.json has peft_type ${JSON.stringify(o["peft_type"])}, expected "LORA"`);
    return new LoraConfig({
      r: o["r"] as number,
      loraAlpha: o["lora_alpha"] as number,
      targetModules: (o["target_modules"] as TargetModules) ?? null,
      loraDropout: (o["lora_dropout"] as number) ?? 0,
      initLoraWeights: (o["init_lora_weights"] as boolean) ?? true,
      inferenceMode: true,
      fanInFanOut: (o["fan_in_fan_out"] as boolean) ?? false,
    });
  }
}

/** Holds child modules by adapter name (PyTorch's ModuleDict). */
class ModuleDict extends Module {
  forward(_x: Tensor): Tensor {
    throw new StateError("ADAPTER_STATE", "ModuleDict has no forward");
  }
  get(name: string): Linear | undefined {
    return this.namedChildren().find(([n]) => n === name)?.[1] as Linear | undefined;
  }
}

/** Rows of a half weight widened per block while merging (a scratch of at most this many · in floats). */
const HALF_MERGE_FLOATS = 1 << 16;

/**
 * A `Linear`, `Conv1D` or half-precision `HalfLinear` / `HalfConv1D` with LoRA adapters (`base_layer`, `lora_A.<adapter>`,
 * `lora_B.<adapter>`). A and B are PEFT's `[r, in]` and `[out, r]` for all; only merging sees the base weight's
 * layout. The type argument is the base's type (`LoraLinear` alone: a Linear / Conv1D).
 */
export class LoraLinear<B extends AdaptableLayer = DenseLayer> extends Module {
  readonly baseLayer: B;
  readonly loraA = new ModuleDict();
  readonly loraB = new ModuleDict();
  readonly scaling = new Map<string, number>();
  activeAdapters: string[] = [];
  merged: string[] = [];
  disabled = false;
  #cache: { x: Tensor; t: Tensor[] } | null = null;
  /** `[rows, r]` scratch of {@link forwardInto}, kept between calls (grown only for a larger rows · r). */
  #scratch: F32Buffer | null = null;
  /** Half base: the original u16 weight bits while any adapter is merged (⌈out·in/8⌉·4 words), else null. */
  #origBits: F32Buffer | null = null;
  /** Half base: the scale each merged adapter was merged with (to merge the others again after an unmerge). */
  #mergedScale = new Map<string, number>();

  constructor(base: B) {
    super();
    this.baseLayer = this.registerModule("base_layer", base) as B;
    this.registerModule("lora_A", this.loraA);
    this.registerModule("lora_B", this.loraB);
  }

  /** The base when it is a half-precision `HalfLinear` / `HalfConv1D`, else null. */
  get half(): HalfDense | null {
    return isHalfDense(this.baseLayer) ? this.baseLayer : null;
  }

  get inFeatures(): number {
    return this.baseLayer.inFeatures;
  }
  get outFeatures(): number {
    return this.baseLayer.outFeatures;
  }
  /** The base weight is stored `[in, out]` (Conv1D). */
  get fanInFanOut(): boolean {
    return fanInFanOutOf(this.baseLayer);
  }

  addAdapter(name: string, r: number, scaling: number, initLoraWeights = true): void {
    this.attachAdapter(name, LoraLinear.buildAdapter(this.baseLayer, r, initLoraWeights), scaling);
  }

  /** @internal A `[r, in]` and a `[out, r]` layer for `base` (both or neither), not attached to any layer. */
  static buildAdapter(base: AdaptableLayer, r: number, initLoraWeights = true): { a: Linear; b: Linear } {
    return runtime().transaction(() => {
      const a = new Linear(base.inFeatures, r, { bias: false });
      const b = new Linear(r, base.outFeatures, { bias: false });
      if (initLoraWeights) b.weight.data.fill(0);
      return { a, b };
    });
  }

  /** @internal Attaches layers from {@link buildAdapter} (allocates nothing). */
  attachAdapter(name: string, ab: { a: Linear; b: Linear }, scaling: number): void {
    this.loraA.registerModule(name, ab.a);
    this.loraB.registerModule(name, ab.b);
    this.scaling.set(name, scaling);
  }

  deleteAdapter(name: string): void {
    if (this.merged.includes(name)) this.unmergeOne(name);
    this.loraA.removeModule(name)?.free();
    this.loraB.removeModule(name)?.free();
    this.scaling.delete(name);
    this.activeAdapters = this.activeAdapters.filter((n) => n !== name);
    this.releaseScratch();
  }

  /** Frees the cached {@link forwardInto} scratch (allocated again when needed). */
  releaseScratch(): void {
    this.#scratch?.free();
    this.#scratch = null;
  }

  override free(): void {
    this.releaseScratch();
    this.#origBits?.free();
    this.#origBits = null;
    super.free();
  }

  adapterNames(): string[] {
    return this.loraA.namedChildren().map(([n]) => n);
  }

  /** A [r, in] and B [out, r] of an adapter. */
  weights(name: string): { a: Parameter; b: Parameter } {
    const a = this.loraA.get(name);
    const b = this.loraB.get(name);
    if (!a || !b) throw new StateError("ADAPTER_NOT_FOUND", `LoRA adapter "${name}" is not on this layer`);
    return { a: a.weight, b: b.weight };
  }

  /**
   * W += s·delta with delta = B·A `[out, in]`; on a Conv1D (stored `[in, out]`) the transposed delta
   * `Aᵀ·Bᵀ` (PEFT's `transpose(B @ A, fan_in_fan_out)`), the same sums term for term.
   */
  #fuseDelta(name: string, scale: number): void {
    const { a, b } = this.weights(name);
    const rt = runtime();
    const k = rt.k;
    const r = a.shape[0];
    const h = this.half;
    if (h) {
      // W = half(widen(W) + f32(s·B·A)), a block of stored rows at a time through an f32 scratch; a HalfConv1D
      // (stored [in, out]) takes the transposed delta Aᵀ·Bᵀ as the f32 Conv1D does
      const t = this.fanInFanOut;
      const K = t ? this.outFeatures : this.inFeatures; // stored row length
      const N = t ? this.inFeatures : this.outFeatures; // stored rows
      const rows = Math.max(1, Math.min(N, Math.floor(HALF_MERGE_FLOATS / K)));
      rt.scratch((tmp) => {
        const wide = tmp.f32(rows * K);
        let left = b.ptr; // [N, r]
        let right = a.ptr; // [r, K]
        if (t) {
          const at = tmp.f32(this.inFeatures * r); // Aᵀ [in, r]
          const bt = tmp.f32(r * this.outFeatures); // Bᵀ [r, out]
          k.f32_transpose(a.ptr, at.ptr, r, this.inFeatures);
          k.f32_transpose(b.ptr, bt.ptr, this.outFeatures, r);
          left = at.ptr;
          right = bt.ptr;
        }
        for (let n0 = 0; n0 < N; n0 += rows) {
          const n = Math.min(rows, N - n0);
          const wRows = h.weightPtr + n0 * K * 2;
          k.h16_to_f32(wRows, wide.ptr, n * K, h.dtypeCode);
          k.f32_lowrank_fuse(wide.ptr, left + n0 * r * 4, right, scale, n, K, r);
          k.f32_to_h16(wide.ptr, wRows, n * K, h.dtypeCode);
        }
      });
      return;
    }
    const w = (this.baseLayer as DenseLayer).weight.ptr;
    if (!this.fanInFanOut) {
      k.f32_lowrank_fuse(w, b.ptr, a.ptr, scale, this.outFeatures, this.inFeatures, r);
      return;
    }
    rt.scratch((tmp) => {
      const at = tmp.f32(this.inFeatures * r); // Aᵀ [in, r]
      const bt = tmp.f32(r * this.outFeatures); // Bᵀ [r, out]
      k.f32_transpose(a.ptr, at.ptr, r, this.inFeatures);
      k.f32_transpose(b.ptr, bt.ptr, this.outFeatures, r);
      k.f32_lowrank_fuse(w, at.ptr, bt.ptr, scale, this.inFeatures, this.outFeatures, r);
    });
  }

  /**
   * W += s·B·A (the engine's low-rank kernel; transposed on a Conv1D). On a half base the original bits are copied
   * first (once, before the first merged adapter) and the sum is rounded to the half dtype.
   */
  mergeOne(name: string): void {
    const scale = this.scaling.get(name)!;
    const h = this.half;
    if (h) {
      this.#keepOrigBits(h);
      this.#mergedScale.set(name, scale);
    }
    this.#fuseDelta(name, scale);
    this.merged.push(name);
  }

  /** Half base: copies the weight bits before the first merge. */
  #keepOrigBits(h: HalfDense): void {
    if (this.#origBits) return;
    const n = this.inFeatures * this.outFeatures;
    const rt = runtime();
    const buf = rt.allocF32Uninit(Math.ceil(n / 8) * 4, `original half weight bits of a LoRA layer [${this.outFeatures}, ${this.inFeatures}]`);
    new Uint16Array(rt.memory.buffer, buf.ptr, n).set(h.bitsView());
    this.#origBits = buf;
  }

  /** Half base: writes the original bits back and frees the copy. */
  #restoreOrigBits(h: HalfDense): void {
    const buf = this.#origBits;
    if (!buf) return;
    const n = this.inFeatures * this.outFeatures;
    h.bitsView().set(new Uint16Array(runtime().memory.buffer, buf.ptr, n));
    buf.free();
    this.#origBits = null;
    this.#mergedScale.clear();
  }

  /**
   * W -= s·B·A (not exact in float32, as PEFT). On a half base exact: the original bits are written back and the
   * other merged adapters merged again, in their order.
   */
  unmergeOne(name: string): void {
    const h = this.half;
    if (h) {
      const rest = this.merged.filter((n) => n !== name).map((n) => [n, this.#mergedScale.get(n)!] as const);
      this.#restoreOrigBits(h);
      this.merged = [];
      for (const [n, s] of rest) this.mergeScaled(n, s);
      return;
    }
    this.#fuseDelta(name, -this.scaling.get(name)!);
    this.merged = this.merged.filter((n) => n !== name);
  }

  /** Unmerges every merged adapter (reverse order; a half base: the original bits, exactly). */
  unmergeAll(): void {
    const h = this.half;
    if (h) {
      this.#restoreOrigBits(h);
      this.merged = [];
      return;
    }
    for (const n of this.merged.slice().reverse()) this.unmergeOne(n);
  }

  /** Merges `name` with an explicit scale (instead of its scaling). @internal */
  mergeScaled(name: string, scale: number): void {
    const s = this.scaling.get(name)!;
    this.scaling.set(name, scale);
    try {
      this.mergeOne(name);
    } finally {
      this.scaling.set(name, s);
    }
  }

  /** The scales the merged adapters were merged with (half base; empty otherwise). @internal */
  get mergedScales(): ReadonlyMap<string, number> {
    return this.#mergedScale;
  }

  /** Forgets the merged state without restoring (the merged values become the weight: merge-and-unload). @internal */
  forgetMerged(): void {
    this.#origBits?.free();
    this.#origBits = null;
    this.#mergedScale.clear();
    this.merged = [];
  }

  #unfused(): string[] {
    if (this.disabled || this.merged.length) return [];
    return this.activeAdapters.filter((n) => this.loraA.get(n));
  }

  /**
   * `y[rows, out]` = the layer's output for `x[rows, in]` (byte offsets into wasm memory; `y` is overwritten), the
   * unfused active adapters included. Allocates nothing in steady state: the `[rows, r]` intermediate is kept on
   * the layer and grown only when needed.
   */
  forwardInto(xPtr: number, yPtr: number, rows: number): void {
    if (rows <= 0) return;
    this.baseLayer.forwardInto(xPtr, yPtr, rows);
    const names = this.#unfused();
    if (!names.length) return;
    const k = runtime().k;
    for (const n of names) {
      const { a, b } = this.weights(n);
      const r = a.shape[0];
      if (!this.#scratch || this.#scratch.length < rows * r) {
        this.releaseScratch();
        this.#scratch = runtime().allocF32(rows * r);
      }
      const t = this.#scratch.ptr;
      k.f32_gemm_nt(xPtr, a.ptr, 0, t, rows, this.inFeatures, r, 0);
      k.f32_scale(t, this.scaling.get(n)!, rows * r);
      k.f32_gemm_nt(t, b.ptr, 0, yPtr, rows, r, this.outFeatures, 1);
    }
  }

  forward(x: Tensor): Tensor {
    assertLive(x, "LoraLinear.forward");
    const y = this.baseLayer.forward(x);
    const B = x.size / this.inFeatures;
    const k = runtime().k;
    const ts: Tensor[] = [];
    for (const n of this.#unfused()) {
      const { a, b } = this.weights(n);
      const r = a.shape[0];
      const t = Tensor.zeros([B, r]);
      k.f32_gemm_nt(x.ptr, a.ptr, 0, t.ptr, B, this.inFeatures, r, 0);
      k.f32_scale(t.ptr, this.scaling.get(n)!, t.size);
      k.f32_gemm_nt(t.ptr, b.ptr, 0, y.ptr, B, r, this.outFeatures, 1);
      if (this.training) ts.push(t);
      else t.free();
    }
    if (this.training) {
      this.#freeCache();
      this.#cache = { x, t: ts };
    }
    return y;
  }

  override backward(gy: Tensor): Tensor {
    const c = this.#cache;
    if (!c) throw new StateError("ADAPTER_STATE", "LoraLinear.backward: no cached input (call forward in training mode first)");
    const gx = this.baseLayer.backward(gy);
    const x = c.x;
    const B = x.size / this.inFeatures;
    const k = runtime().k;
    this.#unfused().forEach((n, i) => {
      const { a, b } = this.weights(n);
      const r = a.shape[0];
      const s = this.scaling.get(n)!;
      const t = c.t[i];
      if (b.requiresGrad) k.f32_gemm_tn(gy.ptr, t.ptr, b.ensureGrad().ptr, B, this.outFeatures, r, 1);
      const gt = Tensor.zeros([B, r]);
      k.f32_gemm_nn(gy.ptr, b.ptr, gt.ptr, B, this.outFeatures, r, 0);
      k.f32_scale(gt.ptr, s, gt.size);
      if (a.requiresGrad) k.f32_gemm_tn(gt.ptr, x.ptr, a.ensureGrad().ptr, B, r, this.inFeatures, 1);
      k.f32_gemm_nn(gt.ptr, a.ptr, gx.ptr, B, r, this.inFeatures, 1);
      gt.free();
    });
    return gx;
  }

  #freeCache(): void {
    if (this.#cache) for (const t of this.#cache.t) t.free();
    this.#cache = null;
  }

  protected override clearOwnCache(): void {
    this.#freeCache();
  }
}

/**
 * LoRA adapters over a model (a subset of PEFT's `LoraModel` for baselines).
 *
 * Concurrency (as {@link ShiraModel}): while `train()` runs on this model ({@link busy} is `"train"`), `addAdapter`,
 * `loadAdapterFiles`, `setAdapter`, `deleteAdapter`, `merge`, `unmerge`, `switchTo`, `fuse`, `disableAdapters`,
 * `unload`, `mergeAndUnload` and a second `train()` are refused with `StateError` code `BUSY`. While the wrapped
 * model generates (a `DecoderModel` whose `busy` is set), switches between tokens are allowed, but `deleteAdapter`
 * of an active adapter, `unload`, `mergeAndUnload`, an `addAdapter` that injects new layers and `train()` are
 * refused with `BUSY`.
 */
export class LoraModel {
  readonly model: Module;
  #peftConfig = new Map<string, LoraConfig>();
  #active: string[] = [];
  /** Depth of `disableAdapters(fn)` scopes. */
  #scopes = 0;
  #unloaded = false;
  /** The running operation that holds this model (`"train"`), or null; checked by every mutating method. */
  #busy: string | null = null;

  #check(): void {
    if (this.#unloaded) throw new StateError("USE_AFTER_FREE", "LoraModel: used after unload() / mergeAndUnload() (disposed); use the returned model");
  }

  /** The operation running on this model that refuses adapter changes (`"train"` while `train()` runs), or null. */
  get busy(): string | null {
    return this.#busy;
  }

  /** Refuses a change of adapters or weights while `train()` runs on this model (`BUSY`). */
  #guard(what: string): void {
    this.#check();
    refuseWhileRunning(what, this.#busy);
  }

  /** Refuses a change that would break a generation running on the wrapped model (`BUSY`). */
  #guardGeneration(what: string, why: string): void {
    refuseWhileGenerating(this.model, what, why);
  }

  /**
   * Marks the model busy for `train()` (adapter changes are refused with `BUSY` until the returned function is
   * called). LoRA trains unfused: nothing else changes. Called by `train()`.
   */
  beginTraining(): () => void {
    this.#guard("train");
    this.#guardGeneration("train", "training changes the weights");
    this.#busy = "train";
    return () => {
      this.#busy = null;
    };
  }

  /** Wraps `model`; with a config, adds and activates the first adapter. */
  constructor(model: Module, config?: LoraConfig, adapterName = "default") {
    this.model = model;
    if (config) {
      this.addAdapter(adapterName, config);
      this.setAdapter(adapterName);
    }
  }

  /** Loads PEFT LoRA files onto `model` as the active adapter `name`. */
  static fromAdapterFiles(model: Module, configJson: string | Record<string, unknown>, bytes: Uint8Array, name = "default"): LoraModel {
    const m = new LoraModel(model);
    m.loadAdapterFiles(configJson, bytes, name);
    m.setAdapter(name);
    return m;
  }

  /** Adapter configurations by name (PEFT's `peft_config`). */
  get peftConfig(): Map<string, LoraConfig> {
    this.#check();
    return this.#peftConfig;
  }

  loraLayers(): [string, LoraLinear<AdaptableLayer>][] {
    this.#check();
    return this.model.namedModules().filter((e): e is [string, LoraLinear<AdaptableLayer>] => e[1] instanceof LoraLinear);
  }

  get activeAdapters(): string[] {
    this.#check();
    return this.#active.slice();
  }
  get adapterNames(): string[] {
    this.#check();
    return [...this.#peftConfig.keys()];
  }
  get mergedAdapters(): string[] {
    this.#check();
    return this.loraLayers()[0]?.[1].merged.slice() ?? [];
  }

  addAdapter(name: string, config: LoraConfig, targets?: string[]): void {
    this.#guard("addAdapter");
    checkAdapterName(name);
    if (!(config instanceof LoraConfig)) throw new ConfigError("CONFIG_INVALID", "addAdapter: config must be a LoraConfig", { argument: "config" });
    if (this.#peftConfig.has(name)) throw new StateError("ADAPTER_EXISTS", `adapter "${name}" already exists`);
    const found: [string, AdaptableLayer | LoraLinear<AdaptableLayer>][] = [];
    const inside: string[] = [];
    for (const [n, m] of this.model.namedModules()) {
      if (n === "" || inside.some((t) => n.startsWith(t + "."))) continue;
      if (m instanceof LoraLinear) inside.push(n);
      const hit = targets ? targets.includes(n) : matchesTarget(config.targetModules, n);
      if (!hit) continue;
      if (!isAdaptableLayer(m) && !(m instanceof LoraLinear)) {
        throw new ConfigError("SHIRA_NOT_LINEAR", `LoRA target ${n} (${m.constructor.name}) is not supported. Currently, only the following modules are supported: Linear, Conv1D. (A half-precision HalfLinear / HalfConv1D counts as a Linear / Conv1D.)`);
      }
      found.push([n, m]);
    }
    if (found.length === 0) throw new ConfigError("CONFIG_NO_TARGET", `Target modules ${JSON.stringify(config.targetModules)} not found in the base model.`);
    // PEFT: fan_in_fan_out follows the module type (warning when it differs); the last target decides the config
    const last = found[found.length - 1][1];
    const fanInFanOut = fanInFanOutOf(last instanceof LoraLinear ? last.baseLayer : last);
    if (config.fanInFanOut !== fanInFanOut) {
      console.warn(
        `shira-wasm: ${
          fanInFanOut
            ? "fan_in_fan_out is set to False but the target module is `Conv1D`. Setting fan_in_fan_out to True."
            : "fan_in_fan_out is set to True but the target module is `torch.nn.Linear`. Setting fan_in_fan_out to False."
        }`,
      );
      config.fanInFanOut = fanInFanOut;
    }
    if (found.some(([, m]) => !(m instanceof LoraLinear))) this.#guardGeneration("addAdapter", "it would inject new layers");
    const firstAdapter = this.#peftConfig.size === 0;
    // every layer's A and B first (all or none), then the model changes
    const built = runtime().transaction(() => found.map(([, m]) => LoraLinear.buildAdapter(m instanceof LoraLinear ? m.baseLayer : m, config.r, config.initLoraWeights)));
    found.forEach(([n, m], i) => {
      let layer: LoraLinear<AdaptableLayer>;
      if (m instanceof LoraLinear) layer = m;
      else {
        layer = new LoraLinear<AdaptableLayer>(m);
        this.model.setSubmodule(n, layer);
      }
      layer.attachAdapter(name, built[i], config.scaling);
      layer.activeAdapters = this.#active.slice();
    });
    this.#peftConfig.set(name, config);
    if (firstAdapter) for (const [pn, p] of this.model.namedParameters()) if (!pn.includes("lora_")) p.requiresGrad = false;
    this.#updateTrainable();
  }

  #updateTrainable(): void {
    for (const [, layer] of this.loraLayers()) {
      for (const n of layer.adapterNames()) {
        const { a, b } = layer.weights(n);
        a.requiresGrad = b.requiresGrad = this.#active.includes(n) && !this.#peftConfig.get(n)!.inferenceMode;
      }
    }
  }

  setAdapter(names: string | string[]): void {
    this.#guard("setAdapter");
    if (typeof names !== "string" && !Array.isArray(names)) throw new ConfigError("CONFIG_INVALID", `setAdapter: names must be an adapter name or a list of names, got ${names === null ? "null" : typeof names}`, { argument: "names" });
    const list = typeof names === "string" ? [names] : names.slice();
    for (const n of list) if (!this.#peftConfig.has(n)) throw new StateError("ADAPTER_NOT_FOUND", `adapter "${n}" not found`);
    this.unmerge();
    this.#active = list;
    for (const [, layer] of this.loraLayers()) layer.activeAdapters = list.slice();
    this.#updateTrainable();
  }

  deleteAdapter(name: string): void {
    this.#guard("deleteAdapter");
    if (!this.#peftConfig.has(name)) throw new StateError("ADAPTER_NOT_FOUND", `adapter "${name}" not found`);
    if (this.#active.includes(name) || this.mergedAdapters.includes(name)) this.#guardGeneration("deleteAdapter", `"${name}" is active and its memory is in use`);
    for (const [, layer] of this.loraLayers()) layer.deleteAdapter(name);
    this.#peftConfig.delete(name);
    this.#active = this.#active.filter((n) => n !== name);
  }

  /** Merges the active adapters: W += s·B·A on every layer. */
  merge(adapterNames: string[] = this.#active): void {
    this.#guard("merge");
    for (const [, layer] of this.loraLayers()) for (const n of adapterNames) if (layer.loraA.get(n) && !layer.merged.includes(n)) layer.mergeOne(n);
  }

  /** Unmerges (W -= s·B·A, in reverse order). */
  unmerge(): void {
    this.#guard("unmerge");
    for (const [, layer] of this.loraLayers()) layer.unmergeAll();
  }

  /** LoRA's fused switch: unmerge the current adapters, merge `name` (O(out·in·r) per layer). */
  switchTo(name: string): void {
    this.#guard("switchTo");
    if (!this.#peftConfig.has(name)) throw new StateError("ADAPTER_NOT_FOUND", `adapter "${name}" not found`);
    this.unmerge();
    this.#active = [name];
    for (const [, layer] of this.loraLayers()) layer.activeAdapters = [name];
    this.merge([name]);
    this.#updateTrainable();
  }

  /** Merges several adapters with weights (scales each adapter's delta), after unmerging. */
  fuse(entries: { name: string; weight?: number }[]): void {
    this.#guard("fuse");
    this.unmerge();
    for (const [, layer] of this.loraLayers()) {
      for (const e of entries) {
        if (!layer.loraA.get(e.name)) continue;
        layer.mergeScaled(e.name, layer.scaling.get(e.name)! * (e.weight ?? 1));
      }
    }
    this.#active = entries.map((e) => e.name);
    for (const [, layer] of this.loraLayers()) layer.activeAdapters = this.#active.slice();
  }

  forward(x: Tensor): Tensor {
    this.#check();
    return this.model.forward(x);
  }
  backward(gy: Tensor): Tensor {
    this.#check();
    return this.model.backward(gy);
  }
  train(mode = true): this {
    this.model.train(mode);
    return this;
  }
  eval(): this {
    this.model.eval();
    return this;
  }
  trainableParameters(): Parameter[] {
    this.#check();
    return this.model.parameters().filter((p) => p.requiresGrad);
  }
  /**
   * Runs `fn` on the base model (adapters unmerged and disabled), then restores the previous state exactly (merged
   * weights are copied and written back, not re-merged), also when `fn` throws or its promise rejects. Scopes nest:
   * an inner scope leaves the adapters disabled for the outer one.
   */
  disableAdapters<R>(fn: () => R): R {
    this.#guard("disableAdapters");
    if (typeof fn !== "function") throw new ConfigError("CONFIG_INVALID", `disableAdapters: fn must be a function, got ${typeof fn}`, { argument: "fn" });
    const outer = this.#scopes === 0;
    const layers = this.loraLayers();
    // f32 bases: the merged weights are copied (unmerging drifts); half bases: unmerging is exact, so the adapters
    // are merged again on exit with the same scales (bit-identical to the weights before the scope)
    const saved = outer
      ? layers.map(([, l]) => ({
          l,
          disabled: l.disabled,
          merged: l.merged.slice(),
          weight: l.merged.length && !l.half ? (l.baseLayer as DenseLayer).weight.toArray() : null,
          scales: l.half ? new Map(l.mergedScales) : null,
        }))
      : [];
    if (outer) {
      this.unmerge();
      for (const [, l] of layers) l.disabled = true;
    }
    this.#scopes++;
    const done = () => {
      this.#scopes--;
      if (!outer) return;
      for (const s of saved) {
        s.l.disabled = s.disabled;
        if (s.weight && !(s.l.baseLayer as DenseLayer).weight.freed) {
          (s.l.baseLayer as DenseLayer).weight.data.set(s.weight);
          s.l.merged = s.merged;
        } else if (s.scales && s.merged.length) {
          for (const n of s.merged) if (s.l.loraA.get(n)) s.l.mergeScaled(n, s.scales.get(n)!);
        }
      }
    };
    return runScope(fn, done);
  }

  /** Alias of {@link disableAdapters}. */
  withAdaptersDisabled<R>(fn: () => R): R {
    return this.disableAdapters(fn);
  }

  /**
   * Unmerges every adapter (`W -= s·B·A`, as PEFT) and returns the model with the LoRA layers replaced by their base
   * layers; the adapters' memory is freed. This LoraModel is unusable afterwards (`USE_AFTER_FREE`).
   */
  unload(): Module {
    this.#guard("unload");
    this.#guardGeneration("unload", "it replaces the adapted layers");
    this.#noScope("unload");
    this.unmerge();
    return this.#unload();
  }

  /** Merges the active adapters (or `adapterNames`) and returns the plain model (PEFT's `merge_and_unload`). */
  mergeAndUnload(adapterNames: string[] = this.#active): Module {
    this.#guard("mergeAndUnload");
    this.#guardGeneration("mergeAndUnload", "it replaces the adapted layers");
    this.#noScope("mergeAndUnload");
    for (const n of adapterNames) if (!this.#peftConfig.has(n)) throw new StateError("ADAPTER_NOT_FOUND", `adapter "${n}" not found`, { adapter: n });
    this.merge(adapterNames);
    return this.#unload();
  }

  #noScope(what: string): void {
    if (this.#scopes > 0) throw new StateError("ADAPTER_STATE", `${what}: not allowed inside disableAdapters(fn)`);
  }

  #unload(): Module {
    for (const [name, layer] of this.loraLayers()) {
      layer.forgetMerged(); // merged values stay in the weight
      for (const n of layer.adapterNames()) layer.deleteAdapter(n);
      layer.releaseScratch();
      this.model.setSubmodule(name, layer.baseLayer);
    }
    for (const p of this.model.parameters()) p.requiresGrad = true;
    this.#unloaded = true;
    return this.model;
  }

  /** Stored values of an adapter (Σ r·(in + out)). */
  adapterSize(name: string): number {
    this.#check();
    let n = 0;
    for (const [, layer] of this.loraLayers()) if (layer.loraA.get(name)) n += layer.weights(name).a.size + layer.weights(name).b.size;
    return n;
  }

  /** PEFT's LoRA files for one adapter, in memory. */
  saveAdapter(name: string): AdapterFiles {
    this.#check();
    const cfg = this.#peftConfig.get(name);
    if (!cfg) throw new StateError("ADAPTER_NOT_FOUND", `adapter "${name}" not found`);
    const tensors = new Map<string, TensorInput>();
    for (const [ln, layer] of this.loraLayers()) {
      if (!layer.loraA.get(name)) continue;
      const { a, b } = layer.weights(name);
      tensors.set(`base_model.model.${ln}.lora_A.weight`, { dtype: "F32", shape: a.shape, data: a.toArray() });
      tensors.set(`base_model.model.${ln}.lora_B.weight`, { dtype: "F32", shape: b.shape, data: b.toArray() });
    }
    return { "adapter_config.json": cfg.toJSONString(), "adapter_model.safetensors": writeSafetensors(tensors, { format: "pt" }) };
  }

  /** Loads PEFT's LoRA files as a new adapter (validated first). */
  loadAdapterFiles(configJson: string | Record<string, unknown>, bytes: Uint8Array, name: string): void {
    this.#guard("loadAdapterFiles");
    checkAdapterName(name);
    if (this.#peftConfig.has(name)) throw new StateError("ADAPTER_EXISTS", `adapter "${name}" already exists`, { adapter: name });
    const cfg = LoraConfig.fromJSON(configJson);
    const file = readSafetensors(bytes);
    const values = new Map<string, { a: Float32Array; b: Float32Array }>();
    for (const key of file.names()) {
      const m = /^base_model\.model\.(.+)\.lora_(A|B)\.weight$/.exec(key);
      if (!m) throw new FormatError("SHIRA_UNEXPECTED_TENSOR", `${key}: not a LoRA tensor`, { tensor: key });
      const lin = this.model.getSubmodule(m[1]);
      const base = lin instanceof LoraLinear ? lin.baseLayer : isAdaptableLayer(lin) ? lin : null;
      if (!base) throw new FormatError("SHIRA_NOT_LINEAR", `${key}: ${m[1]} is a ${lin.constructor.name}, not a supported layer (Linear, Conv1D)`);
      const shape = file.entry(key).shape;
      const want = m[2] === "A" ? [cfg.r, base.inFeatures] : [base.outFeatures, cfg.r];
      if (shape[0] !== want[0] || shape[1] !== want[1] || shape.length !== 2) throw new ShapeError("SHAPE_MISMATCH", `${key}: [${shape.join(", ")}], expected [${want.join(", ")}]`);
      const e = values.get(m[1]) ?? { a: new Float32Array(0), b: new Float32Array(0) };
      if (m[2] === "A") e.a = toFloat32(file.get(key));
      else e.b = toFloat32(file.get(key));
      values.set(m[1], e);
    }
    for (const [mod, v] of values) if (!v.a.length || !v.b.length) throw new FormatError("SHIRA_MISSING_TENSOR", `LoRA adapter: ${mod} lacks lora_A or lora_B`);
    this.addAdapter(name, cfg, [...values.keys()]);
    for (const [mod, v] of values) {
      const layer = this.model.getSubmodule(mod) as LoraLinear;
      const { a, b } = layer.weights(name);
      a.data.set(v.a);
      b.data.set(v.b);
    }
  }
}

/** Wraps `model` with a LoRA adapter (PEFT's `get_peft_model` with a `LoraConfig`). */
export function getLoraModel(model: Module, config: LoraConfig, adapterName = "default"): LoraModel {
  return new LoraModel(model, config, adapterName);
}
