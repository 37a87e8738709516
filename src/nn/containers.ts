/**
 * Containers: `Sequential` (runs children in order, backward in reverse) and `ModuleList` (numbered
 * children for naming, e.g. `decoder.layers.0.self_attn.q_proj`).
 *
 * ```ts
 * const mlp = new Sequential({ lin0: new Linear(10, 20), act0: new ReLU(), lin1: new Linear(20, 2) });
 * const numbered = new Sequential([new Linear(4, 4), new ReLU()]);   // children "0", "1"
 * ```
 */
import { StateError } from "../errors.js";
import { Module } from "./module.js";
import { Tensor } from "./tensor.js";

export class Sequential extends Module {
  #acts: Tensor[] = [];

  constructor(children: Module[] | Record<string, Module> = []) {
    super();
    if (Array.isArray(children)) children.forEach((m, i) => this.registerModule(String(i), m));
    else for (const [n, m] of Object.entries(children)) this.registerModule(n, m);
  }

  /** Appends a module (named by its index unless `name` is given). */
  append(module: Module, name?: string): this {
    this.registerModule(name ?? String(this.namedChildren().length), module);
    return this;
  }

  /** The i-th child. */
  at(i: number): Module {
    return this.namedChildren()[i][1];
  }

  get length(): number {
    return this.namedChildren().length;
  }

  /**
   * Runs the children in order. Intermediate activations it creates are freed as soon as they are no longer
   * needed (eval), or kept for backward until the next forward/backward (training).
   */
  forward(x: Tensor): Tensor {
    this.#freeActs();
    let h = x;
    for (const [, m] of this.namedChildren()) {
      const out = m.forward(h);
      if (h !== x && out !== h) {
        if (this.training) this.#acts.push(h);
        else h.free();
      }
      h = out;
    }
    return h;
  }

  /** Backward through the children in reverse order; returns dL/dx. */
  override backward(gy: Tensor): Tensor {
    const children = this.namedChildren();
    let g = gy;
    for (let i = children.length - 1; i >= 0; i--) {
      const next = children[i][1].backward(g);
      if (g !== gy && next !== g) g.free();
      g = next;
    }
    this.#freeActs();
    return g;
  }

  #freeActs(): void {
    for (const t of this.#acts) t.free();
    this.#acts = [];
  }

  protected override clearOwnCache(): void {
    this.#freeActs();
  }

  override clone(): Sequential {
    const s = new Sequential(Object.fromEntries(this.namedChildren().map(([n, m]) => [n, m.clone()])));
    s.training = this.training;
    return s;
  }
}

/** Numbered children without a forward of their own (PyTorch's `nn.ModuleList`). */
export class ModuleList extends Module {
  constructor(children: Module[] = []) {
    super();
    children.forEach((m, i) => this.registerModule(String(i), m));
  }
  append(m: Module): this {
    this.registerModule(String(this.namedChildren().length), m);
    return this;
  }
  at(i: number): Module {
    return this.namedChildren()[i][1];
  }
  get length(): number {
    return this.namedChildren().length;
  }
  forward(_x: Tensor): Tensor {
    throw new Error("ModuleList has no forward; iterate over its children");
  }
}

/** Named children without a forward of its own (nesting levels of a module tree: Hugging Face's `model`, `self_attn`). */
export class Container extends Module {
  forward(_x: Tensor): Tensor {
    throw new StateError("ADAPTER_STATE", "this container module has no forward of its own");
  }
}

/** Returns its input unchanged. */
export class Identity extends Module {
  forward(x: Tensor): Tensor {
    return x;
  }
  override backward(gy: Tensor): Tensor {
    return gy.clone();
  }
  override clone(): Identity {
    return new Identity();
  }
}
