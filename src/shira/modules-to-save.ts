/**
 * `modulesToSave`: PEFT's `ModulesToSaveWrapper`. A listed module (e.g. a classifier head) is kept as
 * `original_module` and gets a trainable copy per adapter under `modules_to_save.<adapter>`; the forward uses
 * the copy of the active adapter, or the original when adapters are disabled or the active adapter has none.
 */
import { StateError } from "../errors.js";
import { Module } from "../nn/module.js";
import { ShiraLinear } from "./layer.js";
import { runtime } from "../runtime/runtime.js";
import type { Tensor } from "../nn/tensor.js";

export class ModulesToSaveWrapper extends Module {
  readonly originalModule: Module;
  readonly copies: Module;
  /** The adapter whose copy the forward uses (null: the original). */
  activeAdapter: string | null = null;
  disabled = false;

  constructor(original: Module) {
    super();
    this.originalModule = this.registerModule("original_module", original);
    this.copies = this.registerModule("modules_to_save", new ModuleDictImpl());
    for (const p of original.parameters()) p.requiresGrad = false;
  }

  /** Adds a trainable copy of the original module for `adapter`. */
  addAdapter(adapter: string): Module {
    const existing = this.copy(adapter);
    if (existing) return existing;
    return this.attachCopy(adapter, ModulesToSaveWrapper.makeCopy(this.originalModule));
  }

  /** @internal A trainable copy of `original` (allocates; frees what it made if an allocation fails). */
  static makeCopy(original: Module): Module {
    const c = runtime().transaction(() => original.clone());
    for (const p of c.parameters()) p.requiresGrad = true;
    return c;
  }

  /** @internal Registers a copy from {@link makeCopy} for `adapter` (allocates nothing). */
  attachCopy(adapter: string, c: Module): Module {
    this.copies.registerModule(adapter, c);
    return c;
  }

  copy(adapter: string): Module | null {
    return this.copies.namedChildren().find(([n]) => n === adapter)?.[1] ?? null;
  }

  adapterNames(): string[] {
    return this.copies.namedChildren().map(([n]) => n);
  }

  /** Removes an adapter's copy and frees it. */
  deleteAdapter(adapter: string): void {
    const c = this.copy(adapter);
    if (!c) return;
    this.copies.removeModule(adapter);
    c.free();
    if (this.activeAdapter === adapter) this.activeAdapter = null;
  }

  /**
   * Chooses the copy used by the forward (the first of `active` that has one); only that copy is trainable, and
   * only when `trainable` says so for it.
   */
  setActive(active: readonly string[], trainable: (adapter: string) => boolean = () => true): void {
    const withCopy = active.filter((a) => this.copy(a));
    this.activeAdapter = withCopy[0] ?? null;
    for (const [n, m] of this.copies.namedChildren()) {
      const t = n === this.activeAdapter && trainable(n);
      for (const p of m.parameters()) p.requiresGrad = t;
    }
  }

  #current(): Module {
    if (this.disabled || this.activeAdapter === null) return this.originalModule;
    const c = this.copy(this.activeAdapter);
    if (!c) throw new StateError("ADAPTER_NOT_FOUND", `modules_to_save has no copy for adapter "${this.activeAdapter}"`);
    return c;
  }

  forward(x: Tensor): Tensor {
    return this.#current().forward(x);
  }

  override backward(gy: Tensor): Tensor {
    return this.#current().backward(gy);
  }
}

/** Named children without a forward (PyTorch's `nn.ModuleDict`). */
class ModuleDictImpl extends Module {
  forward(_x: Tensor): Tensor {
    throw new StateError("ADAPTER_STATE", "ModuleDict has no forward");
  }
}

/**
 * The modules a `modules_to_save` list names (PEFT's `_set_trainable`: a module matches when its name ends with an
 * entry), never looking inside adapted layers or existing wrappers. Values are the original (unwrapped) modules.
 */
export function findModulesToSave(model: Module, list: readonly string[] | null): Map<string, Module> {
  const out = new Map<string, Module>();
  if (!list || list.length === 0) return out;
  const inside: string[] = [];
  for (const [name, m] of model.namedModules()) {
    if (name === "" || inside.some((t) => name.startsWith(t + "."))) continue;
    if (m instanceof ModulesToSaveWrapper || m instanceof ShiraLinear) inside.push(name);
    if (m instanceof ShiraLinear) continue;
    if (list.some((k) => name.endsWith(k))) out.set(name, m instanceof ModulesToSaveWrapper ? m.originalModule : m);
  }
  return out;
}
