/**
 * Activations and (log-)softmax over the last dimension, each with its backward pass.
 *
 * ```ts
 * const y = new ReLU().forward(Tensor.from([-1, 2], [1, 2]));   // [0, 2]
 * ```
 */
import { ShapeError } from "../errors.js";
import type { Kernels } from "../runtime/kernels.js";
import { runtime } from "../runtime/runtime.js";
import { Module } from "./module.js";
import { Tensor, assertLive } from "./tensor.js";

type Fwd = (k: Kernels, x: number, y: number, n: number) => void;
type Bwd = (k: Kernels, x: number, gy: number, gx: number, n: number) => void;

/** Elementwise activation: caches its input (training) and differentiates from it. */
abstract class Elementwise extends Module {
  #input: Tensor | null = null;
  protected abstract fwd: Fwd;
  protected abstract bwd: Bwd;

  forward(x: Tensor): Tensor {
    assertLive(x, `${this.constructor.name}.forward`);
    const y = Tensor.zeros(x.shape);
    this.fwd(runtime().k, x.ptr, y.ptr, x.size);
    if (this.training) this.#input = x;
    return y;
  }

  override backward(gy: Tensor): Tensor {
    const x = this.#input;
    if (!x) throw new ShapeError("ADAPTER_STATE", `${this.constructor.name}.backward: no cached input (call forward in training mode first)`);
    const gx = Tensor.zeros(x.shape);
    this.bwd(runtime().k, x.ptr, gy.ptr, gx.ptr, x.size);
    return gx;
  }

  protected override clearOwnCache(): void {
    this.#input = null;
  }

  override clone(): Module {
    const C = this.constructor as new () => Module;
    return new C();
  }
}

/** max(0, x) */
export class ReLU extends Elementwise {
  protected fwd: Fwd = (k, x, y, n) => k.f32_relu(x, y, n);
  protected bwd: Bwd = (k, x, gy, gx, n) => k.f32_relu_backward(x, gy, gx, n);
}
/** x·Φ(x) with the exact erf form (PyTorch's `nn.GELU()` default). */
export class GELU extends Elementwise {
  protected fwd: Fwd = (k, x, y, n) => k.f32_gelu(x, y, n);
  protected bwd: Bwd = (k, x, gy, gx, n) => k.f32_gelu_backward(x, gy, gx, n);
}
/** x·sigmoid(x) */
export class SiLU extends Elementwise {
  protected fwd: Fwd = (k, x, y, n) => k.f32_silu(x, y, n);
  protected bwd: Bwd = (k, x, gy, gx, n) => k.f32_silu_backward(x, gy, gx, n);
}
/** tanh(x) */
export class Tanh extends Elementwise {
  protected fwd: Fwd = (k, x, y, n) => k.f32_tanh(x, y, n);
  protected bwd: Bwd = (k, x, gy, gx, n) => k.f32_tanh_backward(x, gy, gx, n);
}

/** Row-wise (last dimension) softmax family: caches its output and differentiates from it. */
abstract class RowWise extends Module {
  #output: Tensor | null = null;
  readonly dim: number;
  protected abstract fwd(k: Kernels, x: number, y: number, rows: number, cols: number): void;
  protected abstract bwd(k: Kernels, y: number, gy: number, gx: number, rows: number, cols: number): void;

  constructor(dim = -1) {
    super();
    this.dim = dim;
  }

  forward(x: Tensor): Tensor {
    assertLive(x, `${this.constructor.name}.forward`);
    if (this.dim !== -1 && this.dim !== x.ndim - 1) {
      throw new ShapeError("SHAPE_MISMATCH", `${this.constructor.name}: only the last dimension is supported (dim=${this.dim}, ndim=${x.ndim})`);
    }
    const cols = x.dim(-1);
    const y = Tensor.zeros(x.shape);
    this.fwd(runtime().k, x.ptr, y.ptr, x.size / cols, cols);
    if (this.training) this.#output = y;
    return y;
  }

  override backward(gy: Tensor): Tensor {
    const y = this.#output;
    if (!y) throw new ShapeError("ADAPTER_STATE", `${this.constructor.name}.backward: no cached output (call forward in training mode first)`);
    const cols = y.dim(-1);
    const gx = Tensor.zeros(y.shape);
    this.bwd(runtime().k, y.ptr, gy.ptr, gx.ptr, y.size / cols, cols);
    return gx;
  }

  protected override clearOwnCache(): void {
    this.#output = null;
  }

  override clone(): Module {
    const C = this.constructor as new (dim: number) => Module;
    return new C(this.dim);
  }
}

/** softmax over the last dimension */
export class Softmax extends RowWise {
  protected fwd(k: Kernels, x: number, y: number, r: number, c: number): void {
    k.f32_softmax_rows(x, y, r, c);
  }
  protected bwd(k: Kernels, y: number, gy: number, gx: number, r: number, c: number): void {
    k.f32_softmax_backward_rows(y, gy, gx, r, c);
  }
}
/** log-softmax over the last dimension: x - max - log Σ exp(x - max) */
export class LogSoftmax extends RowWise {
  protected fwd(k: Kernels, x: number, y: number, r: number, c: number): void {
    k.f32_log_softmax_rows(x, y, r, c);
  }
  protected bwd(k: Kernels, y: number, gy: number, gx: number, r: number, c: number): void {
    k.f32_log_softmax_backward_rows(y, gy, gx, r, c);
  }
}
