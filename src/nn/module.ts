/**
 * Modules: a tree of named children and parameters with PyTorch's naming, `stateDict()` and
 * `loadStateDict()`, and a layer-wise backward pass (each module caches what its backward needs while
 * `training` is true).
 *
 * ```ts
 * class MLP extends Module {
 *   lin0 = this.registerModule("lin0", new Linear(10, 20));
 *   relu = this.registerModule("relu", new ReLU());
 *   lin1 = this.registerModule("lin1", new Linear(20, 2));
 *   forward(x: Tensor) { return this.lin1.forward(this.relu.forward(this.lin0.forward(x))); }
 * }
 * new MLP().namedModules().map(([n]) => n);   // ["", "lin0", "relu", "lin1"]
 * ```
 */
import { ShapeError, ShiraError, StateError } from "../errors.js";
import { Parameter, Tensor, isTensorLike, numel, type TensorLike } from "./tensor.js";

/** Source accepted by {@link Module.loadStateDict}: a map or record of tensors, or a safetensors reader. */
export type StateDictSource =
  | Map<string, TensorLike>
  | Record<string, TensorLike>
  | { names(): string[]; f32(name: string): Float32Array; entry?(name: string): { shape: readonly number[] } };

/**
 * A half-precision tensor a module holds besides its f32 parameters (`HalfWeight` in `nn/half.ts`: BF16 or F16 bit
 * patterns in wasm memory, frozen unless `requiresGrad` is set). Registered with {@link Module.registerHalfTensor},
 * listed by {@link Module.halfStateDict} under its PyTorch name, freed by {@link Module.free}.
 */
export interface HalfTensor {
  readonly dtype: "bf16" | "f16";
  readonly shape: readonly number[];
  readonly size: number;
  readonly freed: boolean;
  /** Whether training may update it (default false; training code refuses half tensors that ask for it). */
  requiresGrad: boolean;
  /** The u16 bit patterns (a fresh view on wasm memory). */
  view(): Uint16Array;
  /** A widened f32 copy. */
  toFloat32(): Float32Array;
  /** Sets every value from f32 (rounded to nearest even). */
  setFromF32(values: ArrayLike<number>): void;
  free(): void;
}

export interface LoadStateDictOptions {
  /** Require the keys to match exactly (default true). */
  strict?: boolean;
}

/** What {@link Module.loadStateDict} did not match (only returned when `strict: false`). */
export interface LoadStateDictResult {
  missingKeys: string[];
  unexpectedKeys: string[];
}

export abstract class Module {
  /**
   * Bumped whenever any module gains, loses or replaces a child (`registerModule`, `removeModule`, `setSubmodule`,
   * e.g. adapter injection), so code that caches references into a module tree knows when to look them up again.
   */
  static treeVersion = 0;
  /** Training mode (caches activations for backward). Switch with {@link train} / {@link eval}. */
  training = true;
  #modules = new Map<string, Module>();
  #params = new Map<string, Parameter | null>();
  #buffers = new Map<string, Tensor>();
  #halves = new Map<string, HalfTensor>();

  /** Runs the module. */
  abstract forward(x: Tensor): Tensor;

  /**
   * Backward pass for the last `forward` (training mode): takes dL/dy, accumulates parameter gradients,
   * returns dL/dx (a new tensor; the caller frees it). Modules without a backward throw.
   */
  backward(_gradOutput: Tensor): Tensor {
    throw new StateError("ADAPTER_STATE", `${this.constructor.name} has no backward pass`);
  }

  /** Short alias for {@link forward}. */
  call(x: Tensor): Tensor {
    return this.forward(x);
  }

  /** Registers (or replaces) a child module under `name`; returns it. */
  registerModule<M extends Module>(name: string, module: M): M {
    if (name.includes(".") || name === "") throw new ShiraError("CONFIG_INVALID", `module name "${name}" must be non-empty and contain no "."`);
    this.#modules.set(name, module);
    Module.treeVersion++;
    return module;
  }

  /** Removes a direct child; returns it (undefined when absent). */
  removeModule(name: string): Module | undefined {
    const m = this.#modules.get(name);
    this.#modules.delete(name);
    Module.treeVersion++;
    return m;
  }

  /** Registers a parameter (or `null` for an absent one, like PyTorch's `bias=None`); returns it. */
  registerParameter<P extends Parameter | null>(name: string, p: P): P {
    this.#params.set(name, p);
    return p;
  }

  /** Removes an own parameter from the registry (does not free it); returns it. */
  removeParameter(name: string): Parameter | null | undefined {
    const p = this.#params.get(name);
    this.#params.delete(name);
    return p;
  }

  /** Registers a non-trainable tensor saved in the state dict (like PyTorch's `register_buffer`). */
  registerBuffer(name: string, t: Tensor): Tensor {
    this.#buffers.set(name, t);
    return t;
  }

  /**
   * Registers a half-precision tensor (`HalfLinear.weight`, `HalfEmbedding.weight`); returns it. It is not a
   * {@link Parameter}: {@link stateDict} and {@link parameters} leave it out, {@link halfStateDict} and
   * {@link namedHalfTensors} list it, {@link free} frees it, {@link loadStateDict} rounds f32 values into it.
   */
  registerHalfTensor<H extends HalfTensor>(name: string, t: H): H {
    this.#halves.set(name, t);
    return t;
  }

  /** Own half-precision tensors, in registration order. */
  namedOwnHalfTensors(): [string, HalfTensor][] {
    return [...this.#halves.entries()];
  }

  /** Every half-precision tensor of the tree with its dotted name, each once (a tied head's shared table is listed under its first name). */
  namedHalfTensors(): [string, HalfTensor][] {
    const out: [string, HalfTensor][] = [];
    const seen = new Set<HalfTensor>();
    for (const [mn, m] of this.namedModules()) {
      for (const [n, t] of m.#halves) {
        if (seen.has(t)) continue;
        seen.add(t);
        out.push([mn ? `${mn}.${n}` : n, t]);
      }
    }
    return out;
  }

  /**
   * The half-precision tensors by name, the complement of {@link stateDict} (which lists only f32 tensors): together
   * they name every weight of the model (`{ ...m.stateDict(), ...m.halfStateDict() }`). Shared tensors appear under
   * every name, as in `stateDict`.
   */
  halfStateDict(): Record<string, HalfTensor> {
    const out = Object.create(null) as Record<string, HalfTensor>;
    for (const [mn, m] of this.namedModules()) for (const [n, t] of m.#halves) out[mn ? `${mn}.${n}` : n] = t;
    return out;
  }

  /** Direct children in registration order. */
  namedChildren(): [string, Module][] {
    return [...this.#modules.entries()];
  }

  /** Every module in the tree with PyTorch's dotted names, this one first as `""` (pre-order, like `named_modules`). */
  namedModules(prefix = ""): [string, Module][] {
    const out: [string, Module][] = [];
    const seen = new Set<Module>();
    const walk = (m: Module, name: string) => {
      if (seen.has(m)) return;
      seen.add(m);
      out.push([name, m]);
      for (const [n, c] of m.#modules) walk(c, name ? `${name}.${n}` : n);
    };
    walk(this, prefix);
    return out;
  }

  /** Own parameters (not children's), in registration order. */
  namedOwnParameters(): [string, Parameter][] {
    return [...this.#params.entries()].filter((e): e is [string, Parameter] => e[1] !== null);
  }

  /** Every parameter with its dotted name (`lin0.weight`), like `named_parameters`. */
  namedParameters(): [string, Parameter][] {
    const out: [string, Parameter][] = [];
    const seen = new Set<Parameter>();
    for (const [mn, m] of this.namedModules()) {
      for (const [pn, p] of m.#params) {
        if (p === null || seen.has(p)) continue;
        seen.add(p);
        out.push([mn ? `${mn}.${pn}` : pn, p]);
      }
    }
    return out;
  }

  /** All parameters. */
  parameters(): Parameter[] {
    return this.namedParameters().map(([, p]) => p);
  }

  /** Every registered buffer with its dotted name. */
  namedBuffers(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [mn, m] of this.namedModules()) for (const [bn, b] of m.#buffers) out.push([mn ? `${mn}.${bn}` : bn, b]);
    return out;
  }

  /**
   * The named tensors that make up the model (parameters and buffers), like PyTorch's `state_dict()`. Live tensors,
   * not copies. The record has no prototype, so names such as `constructor` or `__proto__` are ordinary keys.
   * Half-precision tensors (`HalfLinear`, `HalfEmbedding`) are not in it: see {@link halfStateDict}.
   */
  stateDict(): Record<string, Tensor> {
    const out = Object.create(null) as Record<string, Tensor>;
    for (const [mn, m] of this.namedModules()) {
      for (const [pn, p] of m.#params) if (p) out[mn ? `${mn}.${pn}` : pn] = p;
      for (const [bn, b] of m.#buffers) out[mn ? `${mn}.${bn}` : bn] = b;
    }
    return out;
  }

  /**
   * Copies tensors into the model by name; values are converted to f32. Checks everything before copying
   * anything: with `strict` (default) missing and unexpected names are errors; mis-shaped tensors always are.
   * ```ts
   * model.loadStateDict(readSafetensors(bytes));                 // a safetensors file
   * model.loadStateDict({ "lin0.weight": { shape: [20, 10], data } }, { strict: false });
   * ```
   */
  loadStateDict(source: StateDictSource, opts: LoadStateDictOptions = {}): LoadStateDictResult {
    const own = this.#allTensors();
    const entries = stateDictEntries(source);
    const result = this.#check(entries, own, opts.strict ?? true);
    // Convert everything first (a conversion error must not leave the model half-loaded).
    const values = new Map<string, ArrayLike<number>>();
    for (const k of entries.keys()) if (Object.hasOwn(own, k)) values.set(k, entries.get(k)!.data());
    for (const [k, v] of values) {
      if (v === null || typeof v !== "object" || typeof v.length !== "number" || v.length !== own[k].size) {
        throw new ShapeError("SHAPE_MISMATCH", `loadStateDict: "${k}" holds ${v?.length ?? typeof v} values for shape [${own[k].shape.join(", ")}]`, { tensor: k });
      }
    }
    for (const [k, v] of values) setValues(own[k], v);
    return result;
  }

  /** {@link stateDict} and {@link halfStateDict} in one record (names and shapes for loading). */
  #allTensors(): Record<string, Tensor | HalfTensor> {
    return Object.assign(Object.create(null) as Record<string, Tensor | HalfTensor>, this.stateDict(), this.halfStateDict());
  }

  #check(entries: Map<string, Entry>, own: Record<string, { readonly shape: readonly number[] }>, strict: boolean): LoadStateDictResult {
    const names = [...entries.keys()];
    const missing = Object.keys(own).filter((k) => !entries.has(k));
    const unexpected = names.filter((k) => !Object.hasOwn(own, k));
    const misShaped: string[] = [];
    for (const k of names) {
      if (!Object.hasOwn(own, k)) continue;
      const e = entries.get(k)!;
      const want = own[k].shape;
      if (e.shape.length !== want.length || e.shape.some((d, i) => d !== want[i])) misShaped.push(`${k}: file [${e.shape.join(", ")}], model [${want.join(", ")}]`);
    }
    if (misShaped.length || (strict && (missing.length || unexpected.length))) {
      const parts: string[] = [];
      if (missing.length) parts.push(`missing keys: ${missing.join(", ")}`);
      if (unexpected.length) parts.push(`unexpected keys: ${unexpected.join(", ")}`);
      if (misShaped.length) parts.push(`mis-shaped: ${misShaped.join("; ")}`);
      throw new ShapeError("STATE_DICT_MISMATCH", `loadStateDict: ${parts.join(" | ")}`, { missingKeys: missing, unexpectedKeys: unexpected, misShaped });
    }
    return { missingKeys: missing, unexpectedKeys: unexpected };
  }

  /**
   * Loads tensors one at a time from a lazy source (a safetensors file opened with `openSafetensors`), so a large
   * model is never held twice in memory. Names and shapes are all checked against the header first.
   * ```ts
   * const file = await openSafetensors(await openFileSource("model.safetensors"));   // or blobSource(file) in a browser
   * await model.loadStateDictAsync(file);
   * ```
   */
  async loadStateDictAsync(
    source: { names(): string[]; entry(name: string): { shape: readonly number[] }; f32(name: string): Promise<Float32Array> },
    opts: LoadStateDictOptions = {},
  ): Promise<LoadStateDictResult> {
    // validate names and shapes from the header with the synchronous checker (no tensor data is read)
    const shapesOnly = new Map<string, TensorLike>();
    for (const k of source.names()) {
      const shape = source.entry(k).shape;
      shapesOnly.set(k, { shape, data: { length: numel(shape) } as ArrayLike<number> });
    }
    const own = this.#allTensors();
    const result = this.#check(stateDictEntries(shapesOnly), own, opts.strict ?? true);
    for (const k of source.names()) if (Object.hasOwn(own, k)) setValues(own[k], await source.f32(k));
    return result;
  }

  /** Sets training mode on this module and its children. */
  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }

  /** Sets evaluation mode (no activation caching). */
  eval(): this {
    return this.train(false);
  }

  /** Zeroes the gradients of every parameter. */
  zeroGrad(): void {
    for (const p of this.parameters()) p.zeroGrad();
  }

  /** The child module at a dotted path (`decoder.layers.0`). */
  getSubmodule(path: string): Module {
    if (path === "") return this;
    let m: Module = this;
    for (const part of path.split(".")) {
      const c = m.#modules.get(part);
      if (!c) throw new ShiraError("SHIRA_MODULE_NOT_FOUND", `no submodule "${path}" (missing "${part}")`, { module: path });
      m = c;
    }
    return m;
  }

  /** Replaces the module at a dotted path (used by adapter injection). Returns the old module. */
  setSubmodule(path: string, module: Module): Module {
    const i = path.lastIndexOf(".");
    const parent = i < 0 ? this : this.getSubmodule(path.slice(0, i));
    const name = path.slice(i + 1);
    const old = parent.#modules.get(name);
    if (!old) throw new ShiraError("SHIRA_MODULE_NOT_FOUND", `no submodule "${path}"`, { module: path });
    parent.#modules.set(name, module);
    Module.treeVersion++;
    // keep a same-named field (`this.lin0 = this.registerModule("lin0", ...)`) pointing at the replacement,
    // as PyTorch's setattr does, so hand-written forwards use the adapted layer
    const fields = parent as unknown as Record<string, unknown>;
    if (fields[name] === old) fields[name] = module;
    parent.onChildReplaced(name, old, module);
    return old;
  }

  /** Hook for subclasses that keep direct references to children (called by {@link setSubmodule}). */
  protected onChildReplaced(_name: string, _old: Module, _replacement: Module): void {}

  /** Drops cached activations (held for backward). */
  clearCache(): void {
    for (const [, m] of this.namedModules()) if (m !== this) m.clearOwnCache();
    this.clearOwnCache();
  }
  protected clearOwnCache(): void {}

  /**
   * Frees every parameter and buffer of the tree, and what modules of the tree hold besides them (a subclass that
   * overrides `free`, e.g. an adapted layer's positions and saved base values, is called too; `free` is idempotent).
   * The module is unusable afterwards.
   */
  free(): void {
    this.clearCache();
    for (const [, m] of this.namedModules()) if (m !== this && m.free !== Module.prototype.free) m.free();
    for (const p of this.parameters()) p.free();
    for (const [, b] of this.namedBuffers()) b.free();
    for (const [, t] of this.namedHalfTensors()) t.free();
  }

  /**
   * A deep copy (new parameters with the same values), used for `modulesToSave`. Built-in modules implement it;
   * custom modules override it to be copyable.
   */
  clone(): Module {
    throw new ShiraError("CONFIG_INVALID", `${this.constructor.name} cannot be copied (implement clone() to use it in modulesToSave)`);
  }

  /** @internal Copies parameter and buffer values from `src` (same structure). */
  protected copyStateFrom(src: Module): this {
    const mine = this.stateDict();
    for (const [k, t] of Object.entries(src.stateDict())) if (Object.hasOwn(mine, k)) mine[k].data.set(t.data);
    const halves = this.halfStateDict();
    for (const [k, t] of Object.entries(src.halfStateDict())) if (Object.hasOwn(halves, k) && halves[k] !== t && halves[k].dtype === t.dtype) halves[k].view().set(t.view());
    this.training = src.training;
    return this;
  }

  /** Number of parameter elements (half-precision tensors included, counted once). */
  numParameters(onlyTrainable = false): number {
    let n = 0;
    for (const p of this.parameters()) if (!onlyTrainable || p.requiresGrad) n += p.size;
    for (const [, t] of this.namedHalfTensors()) if (!onlyTrainable || t.requiresGrad) n += t.size;
    return n;
  }
}

/** Writes f32 values into an f32 tensor, or rounds them into a half one. */
function setValues(t: Tensor | HalfTensor, v: ArrayLike<number>): void {
  if (t instanceof Tensor) t.data.set(v);
  else t.setFromF32(v);
}

interface Entry {
  shape: readonly number[];
  data(): ArrayLike<number>;
}

function stateDictEntries(src: StateDictSource): Map<string, Entry> {
  const out = new Map<string, Entry>();
  if (src instanceof Map) {
    for (const [k, v] of src) out.set(k, { shape: v.shape, data: () => v.data });
  } else if (typeof (src as { names?: unknown }).names === "function" && typeof (src as { f32?: unknown }).f32 === "function") {
    const f = src as { names(): string[]; f32(name: string): Float32Array; entry?(name: string): { shape: readonly number[] } };
    for (const k of f.names()) {
      const shape = f.entry ? f.entry(k).shape : null;
      if (shape) out.set(k, { shape, data: () => f.f32(k) });
      else {
        const d = f.f32(k);
        out.set(k, { shape: [d.length], data: () => d });
      }
    }
  } else {
    if (src === null || typeof src !== "object") throw new ShapeError("STATE_DICT_MISMATCH", `loadStateDict: source must be a Map, a record of tensors or a safetensors file, got ${src === null ? "null" : typeof src}`, { argument: "source" });
    for (const [k, v] of Object.entries(src as Record<string, TensorLike>)) {
      if (!isTensorLike(v)) throw new ShapeError("STATE_DICT_MISMATCH", `loadStateDict: "${k}" is not a tensor ({ shape, data })`);
      if (numel(v.shape) !== v.data.length) throw new ShapeError("SHAPE_MISMATCH", `loadStateDict: "${k}" has ${v.data.length} values for shape [${v.shape.join(", ")}]`);
      out.set(k, { shape: v.shape, data: () => v.data });
    }
  }
  return out;
}
