/**
 * `ShiraModel` (PEFT's `PeftModel` + `ShiraModel`): injects SHiRA adapters into a model's `Linear`, `Conv1D`
 * (GPT-2, `fan_in_fan_out`) and half-precision `HalfLinear` / `HalfConv1D` (BF16 / F16 weight bits; see `layer.ts`) layers and
 * manages several adapters: activation, scaling, PEFT-style merge/unmerge (exact here), rapid fused switching
 * and multi-adapter fusion, unloading, and parameter accounting.
 *
 * ```ts
 * const peft = getPeftModel(model, new ShiraConfig({ r: 32, targetModules: ["q_proj", "v_proj"] }), "first");
 * peft.addAdapter("second", new ShiraConfig({ r: 8, targetModules: ".*v_proj$" }));
 * peft.setAdapter("second");                  // unfused forward with "second"
 * peft.switchTo("first");                     // fused: W + S_first, O(nnz)
 * peft.fuse([{ name: "first", weight: 0.7 }, { name: "second", weight: 0.5 }]);
 * peft.unmerge();                             // the base weights, bit for bit
 * ```
 */
import { refuseWhileGenerating, refuseWhileRunning, runScope } from "./busy.js";
import { ConfigError, ShapeError, StateError } from "../errors.js";
import { isHalfDense } from "../nn/half.js";
import { Module } from "../nn/module.js";
import type { Tensor } from "../nn/tensor.js";
import { ShiraConfig } from "./config.js";
import { checkAdapterName, matchesTarget } from "./config.js";
import { builtinMaskFn, maskBudget, normalizeMask, type BuiltinMaskType, type MaskFn } from "./mask.js";
import { ShiraLinear, fanInFanOutOf, isAdaptableLayer, type AdaptableLayer, type FusedEntry } from "./layer.js";
import { runtime, type F32Buffer } from "../runtime/runtime.js";
import { ModulesToSaveWrapper, findModulesToSave } from "./modules-to-save.js";
import { calibrationGradients, type Calibration } from "../train/calibrate.js";
import { parseAdapter, readAdapterFiles, saveAdapterFiles, saveAdaptersToDir, type AdapterFiles, type AdapterReadOptions, type AdapterSource, type ParsedAdapter } from "../io/peft.js";

/** Options of {@link ShiraModel.fromPretrained} / {@link ShiraModel.loadAdapter}. */
export interface LoadAdapterOptions extends AdapterReadOptions {
  /** Name to register the adapter under (default "default"). */
  adapterName?: string;
  /** Keep the adapter trainable (default false: PEFT's inference mode). */
  isTrainable?: boolean;
}

/** Options of {@link getPeftModel} / {@link ShiraModel.addAdapter}. */
export interface AddAdapterOptions {
  /**
   * Extra arguments for the mask function, merged over `config.maskOptions` (e.g. `gradients` for the
   * `"grad"` / `"snip"` strategies; see `calibrateMask` in the training module for computing them).
   */
  maskOptions?: Record<string, unknown>;
  /**
   * Calibration data for `maskType: "grad"` / `"snip"`: the masks are chosen from gradients of the loss on these
   * batches (computed with adapters disabled; no weight changes).
   */
  calibration?: Calibration;
  /**
   * Precomputed values per module name (used by the file loader): positions and values are taken from here
   * instead of the mask function. @internal
   */
  loaded?: Map<string, { flat: Int32Array; values: Float32Array }>;
}

/** One adapter of a multi-adapter fusion. */
export interface FuseEntry {
  name: string;
  /** Multiplies the adapter's scaling (default 1). */
  weight?: number;
}

export interface MergeOptions {
  /**
   * Check for NaN/Inf before touching any weight (PEFT's `safe_merge`). Without it, a sum that overflows float32
   * (finite values and scales, since files and `setScale` refuse NaN/±Inf) is written as ±Inf, as PEFT does; `unmerge`
   * still restores the base exactly.
   */
  safeMerge?: boolean;
  /** Adapters to merge (default: the active ones). */
  adapterNames?: string[];
}

/** A SHiRA layer over any adaptable base (f32 or half weight). */
type AnyShira = ShiraLinear<AdaptableLayer>;

interface Target {
  name: string;
  layer: AdaptableLayer | AnyShira;
  flat: Int32Array;
  values?: Float32Array;
}


type Prepared = Map<AnyShira, Map<string, F32Buffer>>;

/** `src[rows, cols]` -> a new `[cols, rows]` array. */
function transposed(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c];
  return out;
}

const warned = new Set<string>();
/** PEFT's `warnings.warn` (shown once per message). */
function warnOnce(message: string): void {
  if (warned.has(message)) return;
  warned.add(message);
  console.warn(`shira-wasm: ${message}`);
}

/**
 * Concurrency. `train()` is async and yields between steps; `DecoderModel.generate` / `stream` yield between tokens.
 * Other code may run in between, and these rules keep the reported state (active, fused adapters) equal to the
 * weights in use:
 *
 * - While `train()` runs on this model ({@link busy} is `"train"`), every call that changes adapters or weights is
 *   refused with `StateError` code `BUSY`: `addAdapter`, `loadAdapter`, `loadAdapterFiles`, `setAdapter`,
 *   `deleteAdapter`, `setScale`, `merge`, `unmerge`, `switchTo`, `switchToBase`, `fuse`, `disableAdapters`,
 *   `disableAdapterLayers`, `enableAdapterLayers`, `unload`, `mergeAndUnload`, and a second `train()`. Reading
 *   (`activeAdapters`, `getScale`, `saveAdapter`, ...) is allowed. Once training ends or is aborted (its `signal`),
 *   the calls work again.
 * - While the wrapped model generates (a `DecoderModel` whose `busy` is `"generate"` / `"stream"`), adapter
 *   switches between two tokens are allowed and apply from the next token (`switchTo`, `switchToBase`, `fuse`,
 *   `setAdapter`, `setScale`, `merge`, `unmerge`, `addAdapter` on layers that already have adapters); changes that
 *   would break the running loop are refused with `BUSY`: `deleteAdapter` of an active or fused adapter, `unload`,
 *   `mergeAndUnload`, `addAdapter` / `loadAdapter` that would inject new layers (replace modules), and `train()`.
 */
export class ShiraModel {
  /** The wrapped model (modified in place: targets become `ShiraLinear`, as PEFT does). */
  readonly model: Module;
  #peftConfig = new Map<string, ShiraConfig>();
  #active: string[] = [];
  #fused: { name: string; weight: number }[] = [];
  #disabled = false;
  /** Depth of `disableAdapters(fn)` scopes (state changes are refused inside one). */
  #scopes = 0;
  #unloaded = false;
  /** The running operation that holds this model (`"train"`), or null; checked by every mutating method. */
  #busy: string | null = null;

  /**
   * Wraps `model` and adds the first adapter (see {@link getPeftModel}).
   */
  constructor(model: Module, config: ShiraConfig, adapterName = "default", opts: AddAdapterOptions = {}) {
    this.model = model;
    this.addAdapter(adapterName, config, opts);
    this.setAdapter(adapterName);
  }

  // ------------------------------------------------------------------ structure

  /** Adapter configurations by name (PEFT's `peft_config`). */
  get peftConfig(): Map<string, ShiraConfig> {
    this.#check();
    return this.#peftConfig;
  }

  /** Adapted layers by module name, in `namedModules` order. */
  shiraLayers(): [string, AnyShira][] {
    this.#check();
    return this.model.namedModules().filter((e): e is [string, AnyShira] => e[1] instanceof ShiraLinear);
  }

  /** `modulesToSave` wrappers by module name. */
  modulesToSaveWrappers(): [string, ModulesToSaveWrapper][] {
    this.#check();
    return this.model.namedModules().filter((e): e is [string, ModulesToSaveWrapper] => e[1] instanceof ModulesToSaveWrapper);
  }

  /** PyTorch-style names of the wrapped model's modules. */
  namedModules(): [string, Module][] {
    this.#check();
    return this.model.namedModules();
  }

  /** Adapter names, in creation order. */
  get adapterNames(): string[] {
    this.#check();
    return [...this.#peftConfig.keys()];
  }

  /** The adapters the forward uses, in order (PEFT's `active_adapters`). */
  get activeAdapters(): string[] {
    this.#check();
    return this.#active.slice();
  }

  /** The first active adapter (PEFT's `active_adapter`). */
  get activeAdapter(): string {
    this.#check();
    return this.#active[0];
  }

  /** Adapters fused into the weights, in fusion order (PEFT's `merged_adapters`). */
  get mergedAdapters(): string[] {
    this.#check();
    return this.#fused.map((f) => f.name);
  }

  /** Fused adapters with their fusion weights. */
  get fusedAdapters(): { name: string; weight: number }[] {
    this.#check();
    return this.#fused.map((f) => ({ ...f }));
  }

  /** Whether any adapter is fused into the weights (PEFT's `merged`). */
  get merged(): boolean {
    this.#check();
    return this.#fused.length > 0;
  }

  /** Whether adapter layers are currently disabled. */
  get adaptersDisabled(): boolean {
    this.#check();
    return this.#disabled;
  }

  #check(): void {
    if (this.#unloaded) throw new StateError("USE_AFTER_FREE", "ShiraModel: used after unload() / mergeAndUnload() (disposed); use the model they returned");
  }

  /**
   * The operation running on this model that refuses adapter changes (`"train"` while `train()` runs), or null.
   * See "Concurrency" in the class documentation.
   */
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

  #requireAdapter(name: string): ShiraConfig {
    const c = this.#peftConfig.get(name);
    if (!c) throw new StateError("ADAPTER_NOT_FOUND", `adapter "${name}" not found (adapters: ${this.adapterNames.join(", ") || "none"})`, { adapter: name });
    return c;
  }

  // ------------------------------------------------------------------ forward / backward

  /** Runs the model (adapters applied as configured). */
  forward(x: Tensor): Tensor {
    this.#check();
    return this.model.forward(x);
  }

  /** Backward through the model (training). */
  backward(gy: Tensor): Tensor {
    this.#check();
    return this.model.backward(gy);
  }

  // ------------------------------------------------------------------ adapters

  /**
   * Adds an adapter (PEFT's `add_adapter`): finds the targets, builds every mask, then injects. A failure leaves
   * the model unchanged. The new adapter is not activated (see {@link setAdapter}).
   * ```ts
   * peft.addAdapter("second", new ShiraConfig({ r: 3, targetModules: ["lin1", "lin2", "lin3"], randomSeed: 67 }));
   * ```
   */
  addAdapter(name: string, config: ShiraConfig, opts: AddAdapterOptions = {}): void {
    this.#guard("addAdapter");
    checkAdapterName(name);
    if (this.#peftConfig.has(name)) throw new StateError("ADAPTER_EXISTS", `adapter "${name}" already exists`, { adapter: name });
    if (!(config instanceof ShiraConfig)) throw new ConfigError("CONFIG_INVALID", "addAdapter: config must be a ShiraConfig");
    // PEFT's `_prepare_adapter_config`: without target_modules, a transformers model's defaults for its model_type
    const defaults = (this.model as { defaultTargetModules?: unknown }).defaultTargetModules;
    if (config.targetModules === null && Array.isArray(defaults)) config.targetModules = [...(defaults as string[])];
    config.validate();

    // 1. targets (validate everything first)
    const targets = this.#findTargets(config, opts);
    // fan_in_fan_out follows the target modules, as PEFT's LoRA does per module (the layout itself is always taken
    // from the module: a Linear is [out, in], a Conv1D [in, out], whatever the flag says, so the flag cannot break a
    // Linear target of the same config): the last target decides what the config (and adapter_config.json) says.
    const last = targets[targets.length - 1].layer;
    const fanInFanOut = fanInFanOutOf(last instanceof ShiraLinear ? last.baseLayer : last);
    if (config.fanInFanOut !== fanInFanOut) {
      warnOnce(
        fanInFanOut
          ? "fan_in_fan_out is set to False but the target module is `Conv1D`. Setting fan_in_fan_out to True."
          : "fan_in_fan_out is set to True but the target module is `torch.nn.Linear`. Setting fan_in_fan_out to False.",
      );
      config.fanInFanOut = fanInFanOut;
    }
    const mts = [...findModulesToSave(this.model, config.modulesToSave)];
    if (targets.some((t) => !(t.layer instanceof ShiraLinear)) || mts.some(([n]) => !(this.model.getSubmodule(n) instanceof ModulesToSaveWrapper))) {
      this.#guardGeneration("addAdapter", "it would inject new layers");
    }
    // 2. allocate every layer's buffers and every modules_to_save copy (all or none)
    const rt = runtime();
    const { built, copies } = rt.transaction(() => ({
      built: targets.map((t) => ShiraLinear.buildAdapter(t.layer instanceof ShiraLinear ? t.layer.baseLayer : t.layer, config.r, t.flat, t.values, config.initWeights)),
      copies: mts.map(([, original]) => ModulesToSaveWrapper.makeCopy(original)),
    }));
    // 3. mutate (nothing below allocates wasm memory or validates)
    const wasEmpty = this.#peftConfig.size === 0;
    targets.forEach((t, i) => {
      let layer: AnyShira;
      if (t.layer instanceof ShiraLinear) layer = t.layer;
      else {
        layer = new ShiraLinear<AdaptableLayer>(t.layer);
        this.model.setSubmodule(t.name, layer);
      }
      layer.attachAdapter(name, built[i]);
      layer.activeAdapters = this.#active.slice();
      layer.disabled = this.#disabled;
    });
    mts.forEach(([n], i) => {
      let w = this.model.getSubmodule(n);
      if (!(w instanceof ModulesToSaveWrapper)) {
        const wrapper = new ModulesToSaveWrapper(w);
        wrapper.disabled = this.#disabled;
        this.model.setSubmodule(n, wrapper);
        w = wrapper;
      }
      (w as ModulesToSaveWrapper).attachCopy(name, copies[i]);
    });
    this.#peftConfig.set(name, config);
    if (wasEmpty) this.#freezeBase();
    this.#updateTrainable();
  }

  #findTargets(config: ShiraConfig, opts: AddAdapterOptions): Target[] {
    const tuned: string[] = [];
    const targets: Target[] = [];
    const errors: string[] = [];
    for (const [name, m] of this.model.namedModules()) {
      if (name === "") continue;
      // never look inside an adapted layer or a modules_to_save wrapper
      if (tuned.some((t) => name.startsWith(t + "."))) continue;
      if (m instanceof ShiraLinear || m instanceof ModulesToSaveWrapper) tuned.push(name);
      if (m instanceof ModulesToSaveWrapper) continue;
      const loaded = opts.loaded;
      const isTarget = loaded ? loaded.has(name) : matchesTarget(config.targetModules, name, config.modulesToSave);
      if (!isTarget) continue;
      if (!isAdaptableLayer(m) && !(m instanceof ShiraLinear)) {
        errors.push(`${name} (${m.constructor.name})`);
        continue;
      }
      targets.push({ name, layer: m, flat: new Int32Array(0) });
    }
    if (errors.length) {
      throw new ConfigError(
        "SHIRA_NOT_LINEAR",
        `Target module(s) ${errors.join(", ")} not supported. Currently, only the following modules are supported: Linear, Conv1D. (A half-precision HalfLinear / HalfConv1D counts as a Linear / Conv1D.)`,
        { modules: errors },
      );
    }
    if (opts.loaded) {
      const found = new Set(targets.map((t) => t.name));
      const missing = [...opts.loaded.keys()].filter((k) => !found.has(k));
      if (missing.length) {
        throw new ConfigError("SHIRA_MODULE_NOT_FOUND", `the adapter has weights for module(s) the model does not have: ${missing.join(", ")}`, { modules: missing });
      }
    }
    if (targets.length === 0) {
      throw new ConfigError(
        "CONFIG_NO_TARGET",
        `Target modules ${JSON.stringify(config.targetModules)} not found in the base model. Please check the target modules and try again.`,
        { targetModules: config.targetModules },
      );
    }
    const maskFn: MaskFn | null = opts.loaded ? null : config.maskFn ?? builtinMaskFn(config.maskType as BuiltinMaskType);
    const extra: Record<string, unknown> = { ...opts.maskOptions };
    const needsGrad = !opts.loaded && !config.maskFn && (config.maskType === "grad" || config.maskType === "snip");
    if (needsGrad && extra["gradients"] === undefined && config.maskOptions["gradients"] === undefined) {
      if (!opts.calibration) {
        throw new ConfigError("CONFIG_MASK", `mask_type "${config.maskType}" needs calibration data: pass { calibration: { inputs, labels, inputSize } } (or maskOptions.gradients)`, {
          maskType: config.maskType,
        });
      }
      const names = targets.map((t) => t.name);
      const cal = opts.calibration;
      const kind = config.maskType as "grad" | "snip";
      extra["gradients"] = this.#peftConfig.size === 0 ? calibrationGradients(this.model, names, cal, kind) : this.disableAdapters(() => calibrationGradients(this.model, names, cal, kind));
    }
    for (const t of targets) {
      const lin = t.layer instanceof ShiraLinear ? t.layer.baseLayer : t.layer;
      const out = lin.outFeatures;
      const inn = lin.inFeatures;
      const nnz = maskBudget(out, inn, config.r, t.name);
      if (opts.loaded) {
        const l = opts.loaded.get(t.name)!;
        t.flat = l.flat;
        t.values = l.values;
        continue;
      }
      // mask functions see the [out, in] matrix: a Conv1D's stored [in, out] weight is transposed for them
      const stored = t.layer instanceof ShiraLinear ? t.layer.baseWeight() : isHalfDense(lin) ? lin.weightF32() : lin.weight.data;
      const weight = fanInFanOutOf(lin) ? transposed(stored, inn, out) : stored;
      const options: Record<string, unknown> = { bias: lin.bias !== null, randomSeed: config.randomSeed, ...config.maskOptions, ...extra };
      const res = maskFn!({ name: t.name, outFeatures: out, inFeatures: inn, weight }, config.r, options);
      t.flat = normalizeMask(res, out, inn, nnz, t.name);
    }
    return targets;
  }

  /** Freezes every base parameter (PEFT's `_mark_only_adapters_as_trainable`). */
  #freezeBase(): void {
    for (const [, m] of this.model.namedModules()) {
      if (m instanceof ShiraLinear) {
        for (const p of m.baseLayer.parameters()) p.requiresGrad = false;
      }
    }
    for (const [n, p] of this.model.namedParameters()) {
      if (!n.includes("shira_weight.") && !n.includes("modules_to_save.")) p.requiresGrad = false;
    }
  }

  /** Active adapters are trainable (unless their config is in inference mode); others are frozen. */
  #updateTrainable(): void {
    for (const [, layer] of this.shiraLayers()) {
      for (const [n, a] of layer.adapters) a.weight.requiresGrad = this.#active.includes(n) && !this.#peftConfig.get(n)!.inferenceMode;
    }
    for (const [, w] of this.modulesToSaveWrappers()) w.setActive(this.#active, (n) => !this.#peftConfig.get(n)?.inferenceMode);
  }

  /**
   * Chooses the adapters the unfused forward applies (PEFT's `set_adapter`). If adapters are fused, they are
   * unfused first (exactly), as PEFT unmerges.
   * ```ts
   * peft.setAdapter("second");
   * peft.setAdapter(["first", "second"]);   // both, in this order
   * ```
   */
  setAdapter(names: string | string[]): void {
    this.#guard("setAdapter");
    if (typeof names !== "string" && !Array.isArray(names)) {
      throw new ConfigError("CONFIG_INVALID", `setAdapter: names must be an adapter name or a list of names, got ${names === null ? "null" : typeof names}`, { argument: "names" });
    }
    const list = typeof names === "string" ? [names] : names.slice();
    if (list.length === 0) throw new ConfigError("CONFIG_INVALID", "setAdapter: give at least one adapter name");
    for (const n of list) this.#requireAdapter(n);
    if (new Set(list).size !== list.length) throw new ConfigError("CONFIG_INVALID", `setAdapter: duplicate names in ${JSON.stringify(list)}`);
    this.#enableForChange("setAdapter");
    if (this.merged) this.#restoreAll();
    this.#setActive(list);
  }

  #setActive(list: string[]): void {
    this.#active = list;
    for (const [, layer] of this.shiraLayers()) layer.activeAdapters = list.slice();
    this.#updateTrainable();
  }

  /**
   * Deletes an adapter and frees its memory (PEFT's `delete_adapter`). If it was fused, the base is restored and
   * the remaining fused adapters are fused again; if it was active, the remaining active ones (or the first
   * remaining adapter) become active.
   */
  deleteAdapter(name: string): void {
    this.#guard("deleteAdapter");
    this.#requireAdapter(name);
    if (this.#active.includes(name) || this.#fused.some((f) => f.name === name)) this.#guardGeneration("deleteAdapter", `"${name}" is active and its memory is in use`);
    this.#noDisabledScope("deleteAdapter");
    if (this.#fused.some((f) => f.name === name)) this.#refuse(this.#fused.filter((f) => f.name !== name));
    for (const [, layer] of this.shiraLayers()) layer.deleteAdapter(name);
    for (const [, w] of this.modulesToSaveWrappers()) w.deleteAdapter(name);
    this.#peftConfig.delete(name);
    let active = this.#active.filter((n) => n !== name);
    if (active.length === 0 && this.#peftConfig.size > 0) active = [this.adapterNames[0]];
    this.#setActive(active);
  }

  /**
   * PEFT's `set_scale`: the scaling of an adapter on every layer (default 1.0). Fused weights follow.
   */
  setScale(adapter: string, scale: number): void {
    this.#guard("setScale");
    this.#requireAdapter(adapter);
    if (typeof scale !== "number" || !Number.isFinite(scale) || !Number.isFinite(Math.fround(scale))) {
      throw new ConfigError("CONFIG_INVALID", `setScale: scale for "${adapter}" must be a finite float32 number, got ${scale}`, { adapter, value: scale, argument: "scale" });
    }
    const set = () => {
      for (const [, layer] of this.shiraLayers()) layer.setScale(adapter, scale);
    };
    if (this.#fused.some((f) => f.name === adapter)) this.#refuse(this.#fused.slice(), set);
    else set();
  }

  /** The scaling of an adapter (PEFT's `scaling[adapter]`, the same on every layer unless set per layer). */
  getScale(adapter: string): number {
    this.#check();
    this.#requireAdapter(adapter);
    for (const [, layer] of this.shiraLayers()) {
      const a = layer.adapters.get(adapter);
      if (a) return a.scaling;
    }
    return 1;
  }

  // ------------------------------------------------------------------ enable / disable

  /**
   * Runs `fn` with the adapters disabled (the base model), then restores the previous state, even when `fn`
   * throws (PEFT's `with model.disable_adapter():`). Fused adapters are unfused exactly for the duration.
   * ```ts
   * const base = peft.disableAdapters(() => peft.forward(x));
   * const base2 = await peft.withAdaptersDisabled(async () => run(peft));
   * ```
   */
  disableAdapters<R>(fn: () => R): R {
    this.#guard("disableAdapters");
    if (typeof fn !== "function") throw new ConfigError("CONFIG_INVALID", `disableAdapters: fn must be a function, got ${typeof fn}`, { argument: "fn" });
    const wasDisabled = this.#disabled;
    const fused = this.#fused.slice();
    // the buffers to fuse again on exit are taken now, so that leaving the scope cannot fail
    const prepared = wasDisabled ? null : this.#prepareFuse(fused);
    if (!wasDisabled) {
      this.#restoreAll();
      this.#setDisabled(true);
    }
    this.#scopes++;
    const done = () => {
      this.#scopes--;
      if (wasDisabled || this.#unloaded) return;
      this.#setDisabled(false);
      this.#applyFuse(fused, prepared!);
    };
    return runScope(fn, done);
  }

  /** Alias of {@link disableAdapters}. */
  withAdaptersDisabled<R>(fn: () => R): R {
    return this.disableAdapters(fn);
  }

  /** Disables adapter layers until {@link enableAdapterLayers} (unfuses exactly, like PEFT unmerges). */
  disableAdapterLayers(): void {
    this.#guard("disableAdapterLayers");
    this.#noDisabledScope("disableAdapterLayers");
    this.#restoreAll();
    this.#setDisabled(true);
  }

  /** Re-enables adapter layers. */
  enableAdapterLayers(): void {
    this.#guard("enableAdapterLayers");
    this.#noDisabledScope("enableAdapterLayers");
    this.#setDisabled(false);
  }

  /**
   * Switches to the base model: fused adapters are unfused exactly and adapter layers disabled, in O(nnz). The next
   * `switchTo` / `fuse` / `merge` / `setAdapter` enables them again.
   * ```ts
   * peft.switchToBase();     // the plain base model
   * peft.switchTo("rot90");  // back to an adapter
   * ```
   */
  switchToBase(): void {
    this.#guard("switchToBase");
    this.#noDisabledScope("switchToBase");
    this.#restoreAll();
    this.#setDisabled(true);
  }

  #setDisabled(v: boolean): void {
    this.#disabled = v;
    for (const [, layer] of this.shiraLayers()) layer.disabled = v;
    for (const [, w] of this.modulesToSaveWrappers()) w.disabled = v;
  }

  // ------------------------------------------------------------------ merge / switch / fuse

  #restoreAll(): void {
    for (const [, layer] of this.shiraLayers()) layer.restoreBase();
    this.#fused = [];
  }

  /**
   * The buffers every layer needs to fuse `list` (see {@link ShiraLinear.prepareFuse}): all or none, allocated
   * before any weight changes, so that a failed allocation leaves every layer as it was.
   */
  #prepareFuse(list: readonly { name: string }[]): Prepared {
    const layers = this.shiraLayers();
    return runtime().transaction(() => new Map(layers.map(([, layer]) => [layer, layer.prepareFuse(list)] as const)));
  }

  /** Frees prepared buffers that were not used. */
  static #release(prepared: Prepared): void {
    for (const bufs of prepared.values()) for (const b of bufs.values()) b.free();
  }

  /** Fuses `list` on top of the current fused state with prepared buffers (allocates nothing when they fit). */
  #applyFuse(list: { name: string; weight: number }[], prepared: Prepared): void {
    for (const [, layer] of this.shiraLayers()) {
      const entries: FusedEntry[] = [];
      for (const f of list) {
        const a = layer.adapters.get(f.name);
        if (a) entries.push({ name: f.name, coef: f.weight * a.scaling });
      }
      layer.fuse(entries, prepared.get(layer) ?? new Map());
      prepared.delete(layer);
    }
    ShiraModel.#release(prepared);
    this.#fused = this.#fused.concat(list.map((f) => ({ ...f })));
  }

  /** Replaces the fused state by `list` (restore, then fuse), with every buffer allocated before the restore. */
  #refuse(list: { name: string; weight: number }[], between?: () => void): void {
    const prepared = this.#prepareFuse(list);
    this.#restoreAll();
    between?.();
    this.#applyFuse(list, prepared);
  }

  /**
   * The rapid path of {@link switchTo} / {@link fuse} with one adapter while at most one is fused: every layer goes
   * from its fused adapter to the new one in one sweep ({@link ShiraLinear.switchFused}), bit-identical to
   * `#restoreAll()` + fusing `entry`. The buffers for the new base values are allocated first, so a failed
   * allocation changes nothing. Returns false (nothing done) when a layer has several adapters fused.
   */
  #switchAll(entry: { name: string; weight: number }): boolean {
    const layers = this.shiraLayers();
    if (!layers.every(([, layer]) => layer.canSwitchFused)) return false;
    const bufs: (F32Buffer | null)[] = [];
    try {
      for (const [, layer] of layers) bufs.push(layer.prepareSwitch(entry.name));
    } catch (e) {
      for (const b of bufs) b?.free();
      throw e;
    }
    this.#enableForChange("fuse");
    layers.forEach(([, layer], i) => {
      const a = layer.adapters.get(entry.name);
      layer.switchFused(a ? { name: entry.name, coef: entry.weight * a.scaling } : null, bufs[i]);
    });
    this.#fused = [{ ...entry }];
    return true;
  }

  /** Checks that fusing `list` on top of the current weights produces only finite values (before any change). */
  #checkFinite(list: { name: string; weight: number }[], fromBase = false): void {
    for (const [lname, layer] of this.shiraLayers()) {
      // the live weight as f32 (a view; a half weight: a widened copy)
      const w = layer.half ? layer.liveWeightF32() : (layer.baseLayer as ShiraLinear["baseLayer"]).weight.data;
      const touched = new Map<number, number>();
      if (fromBase) {
        // the base values under the fused adapters (the first fused adapter at a position holds its base value)
        const fused = layer.fusedEntries;
        for (let i = fused.length - 1; i >= 0; i--) {
          const a = layer.adapters.get(fused[i].name)!;
          const idx = a.indices.view;
          const saved = layer.savedValues(a);
          for (let j = 0; j < a.nnz; j++) touched.set(idx[j], saved[j]);
        }
      }
      for (const f of list) {
        const a = layer.adapters.get(f.name);
        if (!a) continue;
        const coef = Math.fround(f.weight * a.scaling);
        const idx = a.indices.view;
        const v = a.weight.data;
        for (let j = 0; j < a.nnz; j++) {
          const p = idx[j];
          const cur = touched.has(p) ? touched.get(p)! : w[p];
          // f32 sum, rounded to the half dtype on a half weight (F16 overflows past 65504)
          const next = layer.storedSum(cur, Math.fround(v[j] * coef));
          if (!Number.isFinite(next)) {
            const [row, col] = layer.positionOf(p);
            throw new StateError(
              "NONFINITE",
              `NaNs detected in the merged weights. The adapter ${f.name} seems to be broken: ${lname}.shira_weight.${f.name}[${j}] = ${v[j]} ` +
                `(scaling ${coef}) gives ${next} at weight position (${row}, ${col})`,
              { adapter: f.name, module: lname, index: j, value: v[j], position: [row, col] },
            );
          }
          if (list.length > 1 || fromBase) touched.set(p, next);
        }
      }
    }
  }

  /**
   * Merges adapters into the weights (PEFT's `merge_adapter`): `W += f32(v * scaling)` at their positions, after
   * any already merged; the forward then uses the merged weights only. `safeMerge` refuses NaN/Inf before
   * touching any weight. Unlike PEFT, {@link unmerge} restores the base exactly.
   * ```ts
   * peft.merge({ adapterNames: ["first"], safeMerge: true });
   * ```
   */
  merge(opts: MergeOptions = {}): void {
    this.#guard("merge");
    this.#noDisabledScope("merge");
    if (opts === null || typeof opts !== "object") throw new ConfigError("CONFIG_INVALID", `merge: options must be an object, got ${opts === null ? "null" : typeof opts}`, { argument: "opts" });
    const names = opts.adapterNames ?? this.#active;
    if (!Array.isArray(names)) throw new ConfigError("CONFIG_INVALID", `merge: adapterNames must be an array of adapter names, got ${typeof names}`, { argument: "adapterNames" });
    for (const n of names) this.#requireAdapter(n);
    const todo = [...new Set(names)].filter((n) => !this.#fused.some((f) => f.name === n)).map((name) => ({ name, weight: 1 }));
    if (opts.safeMerge) this.#checkFinite(todo);
    const prepared = this.#prepareFuse(todo);
    this.#enableForChange("merge");
    this.#applyFuse(todo, prepared);
  }

  /** Unfuses every merged/fused adapter: the base weights come back bit for bit. */
  unmerge(): void {
    this.#guard("unmerge");
    this.#noDisabledScope("unmerge");
    this.#restoreAll();
  }

  /**
   * Rapid fused switch: the weights become `W + scaling · S_name` in O(nnz) (restoring the previous adapter's
   * positions exactly first) and `name` becomes the active adapter.
   * ```ts
   * peft.switchTo("first");  // a few ms on an 11008×4096 layer at r = 32 (memory-bound); a LoRA switch takes 40-50× longer
   * ```
   */
  switchTo(name: string, opts: { safeMerge?: boolean } = {}): void {
    this.#guard("switchTo");
    this.fuse([{ name, weight: 1 }], opts);
  }

  /**
   * Fuses several adapters at once, each with a weight multiplying its scaling (the paper's multi-adapter
   * fusion): `W + Σ f32(v_a · weight_a · scaling_a)` applied in the given order. Validates before changing
   * anything; the previous fused state is restored exactly first. The fused adapters become the active ones.
   * ```ts
   * peft.fuse([{ name: "rot90", weight: 1 }, { name: "invert", weight: 1 }]);
   * ```
   */
  fuse(entries: FuseEntry[], opts: { safeMerge?: boolean } = {}): void {
    this.#guard("fuse");
    this.#noDisabledScope("fuse");
    if (!Array.isArray(entries) || entries.length === 0) throw new ConfigError("CONFIG_INVALID", "fuse: give at least one { name, weight }", { argument: "entries" });
    if (opts === null || typeof opts !== "object") throw new ConfigError("CONFIG_INVALID", `fuse: options must be an object, got ${opts === null ? "null" : typeof opts}`, { argument: "opts" });
    entries.forEach((e, i) => {
      if (e === null || typeof e !== "object" || typeof e.name !== "string") {
        throw new ConfigError("CONFIG_INVALID", `fuse: entries[${i}] must be { name: string, weight?: number }, got ${e === null ? "null" : typeof e === "object" ? JSON.stringify(e) : typeof e}`, { argument: `entries[${i}]` });
      }
    });
    const list = entries.map((e) => ({ name: e.name, weight: e.weight ?? 1 }));
    for (const e of list) {
      this.#requireAdapter(e.name);
      if (typeof e.weight !== "number" || !Number.isFinite(e.weight)) {
        throw new ConfigError("CONFIG_INVALID", `fuse: weight of "${e.name}" must be a finite number, got ${e.weight}`, { adapter: e.name, value: e.weight });
      }
    }
    if (new Set(list.map((e) => e.name)).size !== list.length) throw new ConfigError("CONFIG_INVALID", "fuse: an adapter is listed twice");
    if (!opts.safeMerge && list.length === 1 && this.#fused.length <= 1 && this.#switchAll(list[0])) {
      this.#setActive([list[0].name]);
      return;
    }
    // checked against the base weights, which is what the fusion will start from
    if (opts.safeMerge) this.#checkFinite(list, true);
    this.#refuse(list, () => this.#enableForChange("fuse"));
    this.#setActive(list.map((e) => e.name));
  }

  /** Refuses state changes inside a `disableAdapters(fn)` scope; outside one, re-enables disabled adapter layers. */
  #noDisabledScope(what: string): void {
    if (this.#scopes > 0) throw new StateError("ADAPTER_STATE", `${what}: not allowed inside disableAdapters(fn)`);
  }

  #enableForChange(what: string): void {
    this.#noDisabledScope(what);
    if (this.#disabled) this.#setDisabled(false);
  }

  // ------------------------------------------------------------------ unload

  /**
   * Merges the active adapters (or `adapterNames`) into the weights and returns the plain model with adapter
   * layers replaced by their base `Linear` (PEFT's `merge_and_unload`); `modulesToSave` wrappers become the
   * active adapter's trained copy. This ShiraModel is unusable afterwards.
   */
  mergeAndUnload(opts: MergeOptions = {}): Module {
    this.#guard("mergeAndUnload");
    this.#guardGeneration("mergeAndUnload", "it replaces the adapted layers");
    this.#noDisabledScope("mergeAndUnload");
    this.merge(opts);
    return this.#unload(true);
  }

  /** Restores the base weights exactly and returns the model without adapter layers (PEFT's `unload`). */
  unload(): Module {
    this.#guard("unload");
    this.#guardGeneration("unload", "it replaces the adapted layers");
    this.#noDisabledScope("unload");
    this.#restoreAll();
    return this.#unload(false);
  }

  #unload(keepMerged: boolean): Module {
    for (const [name, layer] of this.shiraLayers()) {
      if (!keepMerged) layer.restoreBase();
      layer.forgetFused(); // merged values stay in the weight
      for (const n of layer.adapterNames()) layer.deleteAdapter(n);
      this.model.setSubmodule(name, layer.baseLayer);
    }
    for (const [name, w] of this.modulesToSaveWrappers()) {
      const replacement = keepMerged && w.activeAdapter ? w.copy(w.activeAdapter)! : w.originalModule;
      this.model.setSubmodule(name, replacement);
      for (const n of w.adapterNames()) if (w.copy(n) !== replacement) w.deleteAdapter(n);
    }
    for (const p of this.model.parameters()) p.requiresGrad = true;
    this.#fused = [];
    this.#unloaded = true;
    return this.model;
  }

  // ------------------------------------------------------------------ files

  /**
   * Loads an adapter saved by PEFT (or by {@link savePretrained}) onto `model` (PEFT's
   * `PeftModel.from_pretrained`). `source` is a directory path (Node), a URL of the directory, the two files as
   * `{ "adapter_config.json", "adapter_model.safetensors" }` (`File`/`Blob`/`ArrayBuffer`/`Uint8Array`/string), or a
   * list of `File`s. Everything is validated before the model changes.
   * ```ts
   * const peft = await PeftModel.fromPretrained(model, "adapters/alpha", { adapterName: "alpha" });
   * const peft2 = await PeftModel.fromPretrained(model2, { "adapter_config.json": cfgFile, "adapter_model.safetensors": stFile });
   * ```
   */
  static async fromPretrained(model: Module, source: AdapterSource, opts: LoadAdapterOptions = {}): Promise<ShiraModel> {
    if (opts === null || typeof opts !== "object") throw new ConfigError("CONFIG_INVALID", `fromPretrained: options must be an object, got ${opts === null ? "null" : typeof opts}`, { argument: "opts" });
    if (!(model instanceof Module)) throw new ConfigError("CONFIG_INVALID", "fromPretrained: model must be a Module", { argument: "model" });
    const name = opts.adapterName === undefined ? "default" : opts.adapterName;
    checkAdapterName(name);
    const files = await readAdapterFiles(source, { signal: opts.signal, timeout: opts.timeout });
    const parsed = parseAdapter(model, files.config, files.model, { isTrainable: opts.isTrainable });
    const peft = new ShiraModel(model, parsed.config, name, { loaded: parsed.loaded });
    peft.#applyModulesToSave(name, parsed);
    return peft;
  }

  /**
   * Loads another adapter (PEFT's `load_adapter`); it is not activated.
   * ```ts
   * await peft.loadAdapter("adapters/beta", "beta");
   * peft.switchTo("beta");
   * ```
   */
  async loadAdapter(source: AdapterSource, adapterName: string, opts: { isTrainable?: boolean } & AdapterReadOptions = {}): Promise<void> {
    this.#guard("loadAdapter");
    checkAdapterName(adapterName);
    if (this.#peftConfig.has(adapterName)) throw new StateError("ADAPTER_EXISTS", `adapter "${adapterName}" already exists`, { adapter: adapterName });
    const files = await readAdapterFiles(source, { signal: opts.signal, timeout: opts.timeout });
    this.loadAdapterFiles(files.config, files.model, adapterName, opts);
  }

  /** Synchronous {@link loadAdapter} from the two files' contents. */
  loadAdapterFiles(config: string | Record<string, unknown>, model: Uint8Array, adapterName: string, opts: { isTrainable?: boolean } = {}): void {
    this.#guard("loadAdapterFiles");
    checkAdapterName(adapterName);
    if (this.#peftConfig.has(adapterName)) throw new StateError("ADAPTER_EXISTS", `adapter "${adapterName}" already exists`, { adapter: adapterName });
    const parsed = parseAdapter(this.model, config, model, opts);
    this.addAdapter(adapterName, parsed.config, { loaded: parsed.loaded });
    this.#applyModulesToSave(adapterName, parsed);
  }

  #applyModulesToSave(adapter: string, parsed: ParsedAdapter): void {
    for (const [name, tensors] of parsed.modulesToSave) {
      const w = this.model.getSubmodule(name);
      const copy = w instanceof ModulesToSaveWrapper ? w.copy(adapter) : null;
      if (!copy) continue;
      const sd = copy.stateDict();
      for (const [k, v] of tensors) sd[k].data.set(v);
    }
  }

  /**
   * The two files of an adapter in memory, exactly as PEFT writes them (for browsers and for sending over a
   * network).
   * ```ts
   * const files = peft.saveAdapter("default");
   * await upload(files["adapter_model.safetensors"]);
   * ```
   */
  saveAdapter(adapterName = this.activeAdapter): AdapterFiles {
    this.#check();
    this.#requireAdapter(adapterName);
    return saveAdapterFiles(this, adapterName);
  }

  /**
   * Writes adapters in PEFT's layout (Node): "default" in `dir`, any other adapter in `dir/<name>/`.
   * ```ts
   * await peft.savePretrained("out/adapters");                        // every adapter
   * await peft.savePretrained("out/adapters", { adapterNames: ["first"] });
   * ```
   */
  async savePretrained(dir: string, opts: { adapterNames?: string[] } = {}): Promise<string[]> {
    this.#check();
    for (const n of opts.adapterNames ?? []) this.#requireAdapter(n);
    return saveAdaptersToDir(this, dir, opts.adapterNames);
  }

  // ------------------------------------------------------------------ inspection

  /**
   * Dense deltas of an adapter per module (PEFT's `get_delta_weight`), tensors the caller frees, in the layout of each
   * module's stored weight: `[out, in]` for a Linear, `[in, out]` for a Conv1D (fan_in_fan_out), so `weight + delta`
   * is the merged weight.
   */
  getDeltaWeight(adapter: string): Map<string, Tensor> {
    this.#check();
    this.#requireAdapter(adapter);
    const out = new Map<string, Tensor>();
    for (const [name, layer] of this.shiraLayers()) if (layer.adapters.has(adapter)) out.set(name, layer.getDeltaWeight(adapter));
    return out;
  }

  /** `[trainableParams, allParams]` (PEFT's `get_nb_trainable_parameters`). */
  getNbTrainableParameters(): [number, number] {
    this.#check();
    let trainable = 0;
    let all = 0;
    for (const p of this.model.parameters()) {
      all += p.size;
      if (p.requiresGrad) trainable += p.size;
    }
    return [trainable, all];
  }

  /**
   * Prints (and returns) PEFT's line: `trainable params: 1,250 || all params: 3,880 || trainable%: 32.2165`.
   */
  printTrainableParameters(log: (s: string) => void = console.log): string {
    const [t, a] = this.getNbTrainableParameters();
    const fmt = (n: number) => n.toLocaleString("en-US");
    const line = `trainable params: ${fmt(t)} || all params: ${fmt(a)} || trainable%: ${((100 * t) / a).toFixed(4)}`;
    log(line);
    return line;
  }

  /** Trainable parameters (active adapters' values and modules_to_save copies). */
  trainableParameters() {
    this.#check();
    return this.model.parameters().filter((p) => p.requiresGrad);
  }

  /** The adapter's total number of stored values. */
  adapterSize(adapter: string): number {
    this.#check();
    this.#requireAdapter(adapter);
    let n = 0;
    for (const [, layer] of this.shiraLayers()) n += layer.adapters.get(adapter)?.nnz ?? 0;
    for (const [, w] of this.modulesToSaveWrappers()) n += w.copy(adapter)?.numParameters() ?? 0;
    return n;
  }

  // ------------------------------------------------------------------ training hooks (see train())

  /**
   * Prepares training in fused form: the active adapters are fused into the weights (exact base values kept),
   * so forward and input gradients use the dense kernels. Returns a function that restores the previous
   * fused/unfused state exactly. Called by `train()`. The kept base values cost 4 bytes per adapter value while
   * training lasts (2 on a half base); `forward`/`backward` without it train unfused, saving those bytes for the
   * time of the sparse products (see docs/shira-model.md, "Memory").
   */
  beginTraining(): () => void {
    this.#guard("train");
    this.#guardGeneration("train", "training changes the weights");
    const prev = this.#fused.slice();
    const active = this.#active.slice();
    const same = prev.length === active.length && prev.every((f, i) => f.name === active[i]);
    if (!same) this.#refuse(active.map((name) => ({ name, weight: 1 })));
    this.model.train(true);
    this.#busy = "train";
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      try {
        this.#refuse(prev);
        this.#active = active;
      } finally {
        this.#busy = null;
      }
    };
  }

  /** Refreshes the fused weights at the adapters' positions after their values changed (O(nnz)). */
  afterOptimizerStep(): void {
    this.#check();
    for (const [, layer] of this.shiraLayers()) layer.refreshFused();
  }

  /** Sets training mode on the model. */
  train(mode = true): this {
    this.model.train(mode);
    return this;
  }

  /** Sets evaluation mode on the model. */
  eval(): this {
    this.model.eval();
    return this;
  }
}

/**
 * Wraps `model` with a SHiRA adapter (PEFT's `get_peft_model`).
 * ```ts
 * const peft = getPeftModel(model, new ShiraConfig({ r: 32, targetModules: ["lin1"], randomSeed: 56 }), "first");
 * ```
 */
export function getPeftModel(model: Module, config: ShiraConfig, adapterName = "default", opts: AddAdapterOptions = {}): ShiraModel {
  if (!(model instanceof Module)) throw new ShapeError("SHAPE_MISMATCH", "getPeftModel: model must be a Module");
  return new ShiraModel(model, config, adapterName, opts);
}
