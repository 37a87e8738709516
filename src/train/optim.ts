/**
 * Optimizers over parameter arrays in wasm memory (PyTorch semantics), run by the SIMD kernels:
 * `SGD` (momentum, dampening, Nesterov, weight decay), `AdamW` (decoupled weight decay), and
 * gradient-norm clipping. For SHiRA these parameters are the adapter values (`nnz` per layer), so a step is O(nnz).
 *
 * ```ts
 * const opt = new AdamW(peft.trainableParameters(), { lr: 1e-3, weightDecay: 0.01 });
 * opt.zeroGrad(); model.backward(grad); clipGradNorm(opt.params, 1.0); opt.step();
 * ```
 */
import { ConfigError } from "../errors.js";
import type { Parameter } from "../nn/tensor.js";
import { runtime, type F32Buffer } from "../runtime/runtime.js";

export interface Optimizer {
  readonly params: Parameter[];
  /** Current base learning rate (schedules overwrite it per step). */
  lr: number;
  /** Applies one update from the accumulated gradients. */
  step(): void;
  /** Zeroes the gradients. */
  zeroGrad(): void;
  /** Frees the optimizer's state buffers. */
  free(): void;
}

function checkLr(lr: number, what: string): void {
  if (typeof lr !== "number" || !Number.isFinite(lr) || lr < 0) throw new ConfigError("CONFIG_INVALID", `${what}: lr must be a finite number >= 0, got ${lr}`, { field: "lr", value: lr });
}

export interface SGDOptions {
  lr?: number;
  momentum?: number;
  dampening?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

/**
 * Creates the optimizer state of every parameter of `params` in `map`, all or nothing: when an allocation fails, the
 * states made here are released and removed, and the error is rethrown (so a step changes no parameter).
 */
function allocateState<S>(params: Iterable<Parameter>, map: Map<Parameter, S>, make: (p: Parameter) => S, release: (s: S) => void): void {
  const made: Parameter[] = [];
  try {
    for (const p of params) {
      map.set(p, make(p));
      made.push(p);
    }
  } catch (e) {
    for (const p of made) {
      release(map.get(p)!);
      map.delete(p);
    }
    throw e;
  }
}

/** Stochastic gradient descent, as `torch.optim.SGD`. */
export class SGD implements Optimizer {
  readonly params: Parameter[];
  lr: number;
  readonly momentum: number;
  readonly dampening: number;
  readonly weightDecay: number;
  readonly nesterov: boolean;
  #buf = new Map<Parameter, F32Buffer>();

  constructor(params: Parameter[], opts: SGDOptions = {}) {
    this.params = params;
    this.lr = opts.lr ?? 0.01;
    this.momentum = opts.momentum ?? 0;
    this.dampening = opts.dampening ?? 0;
    this.weightDecay = opts.weightDecay ?? 0;
    this.nesterov = opts.nesterov ?? false;
    checkLr(this.lr, "SGD");
    if (this.nesterov && (this.momentum <= 0 || this.dampening !== 0)) {
      throw new ConfigError("CONFIG_INVALID", "SGD: Nesterov momentum requires a momentum and zero dampening");
    }
  }

  step(): void {
    const rt = runtime();
    const params = this.params.filter((p) => p.grad);
    // every missing momentum buffer first: a failed allocation changes no parameter and keeps nothing
    const first = new Set(params.filter((p) => !this.#buf.has(p)));
    if (this.momentum !== 0) allocateState(first, this.#buf, (p) => rt.allocF32(p.size), (b) => b.free());
    for (const p of params) {
      const buf = this.#buf.get(p);
      rt.k.f32_sgd(p.ptr, p.grad!.ptr, buf ? buf.ptr : 0, p.size, this.lr, this.momentum, this.dampening, this.weightDecay, this.nesterov ? 1 : 0, first.has(p) ? 1 : 0);
    }
  }

  zeroGrad(): void {
    for (const p of this.params) p.zeroGrad();
  }

  free(): void {
    for (const b of this.#buf.values()) b.free();
    this.#buf.clear();
  }
}

export interface AdamWOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

/** Adam with decoupled weight decay, as `torch.optim.AdamW` (defaults lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.01). */
export class AdamW implements Optimizer {
  readonly params: Parameter[];
  lr: number;
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  #state = new Map<Parameter, { m: F32Buffer; v: F32Buffer; t: number }>();

  constructor(params: Parameter[], opts: AdamWOptions = {}) {
    this.params = params;
    this.lr = opts.lr ?? 1e-3;
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
    checkLr(this.lr, "AdamW");
    for (const b of this.betas) if (!(b >= 0 && b < 1)) throw new ConfigError("CONFIG_INVALID", `AdamW: betas must be in [0, 1), got ${this.betas}`);
  }

  step(): void {
    const rt = runtime();
    const [b1, b2] = this.betas;
    const params = this.params.filter((p) => p.grad);
    // every missing state first: a failed allocation changes no parameter and keeps nothing
    allocateState(
      params.filter((p) => !this.#state.has(p)),
      this.#state,
      (p) => {
        const m = rt.allocF32(p.size);
        try {
          return { m, v: rt.allocF32(p.size), t: 0 };
        } catch (e) {
          m.free();
          throw e;
        }
      },
      (st) => {
        st.m.free();
        st.v.free();
      },
    );
    for (const p of params) {
      const s = this.#state.get(p)!;
      s.t++;
      const bc1 = 1 - b1 ** s.t;
      const bc2 = 1 - b2 ** s.t;
      rt.k.f32_adamw(p.ptr, p.grad!.ptr, s.m.ptr, s.v.ptr, p.size, this.lr, b1, b2, this.eps, this.weightDecay, bc1, bc2);
    }
  }

  zeroGrad(): void {
    for (const p of this.params) p.zeroGrad();
  }

  free(): void {
    for (const s of this.#state.values()) {
      s.m.free();
      s.v.free();
    }
    this.#state.clear();
  }
}

/**
 * Scales gradients so their global L2 norm is at most `maxNorm` (as `torch.nn.utils.clip_grad_norm_`, with its
 * 1e-6 guard). Returns the norm before clipping.
 */
export function clipGradNorm(params: Parameter[], maxNorm: number): number {
  const k = runtime().k;
  let sq = 0;
  for (const p of params) if (p.grad) sq += k.f32_sum_sq(p.grad.ptr, p.grad.size);
  const norm = Math.sqrt(sq);
  const coef = maxNorm / (norm + 1e-6);
  if (coef < 1) for (const p of params) if (p.grad) k.f32_scale(p.grad.ptr, coef, p.grad.size);
  return norm;
}
