/**
 * `Linear(inFeatures, outFeatures, { bias })`: y = x·Wᵀ + b with W stored `[out, in]` (PyTorch's layout),
 * computed by the engine's SIMD gemm. Accepts any leading dimensions: `[..., in] -> [..., out]`.
 *
 * ```ts
 * const lin = new Linear(10, 20);          // W ~ U(-1/√10, 1/√10), like PyTorch's default
 * const y = lin.forward(Tensor.zeros([5, 10]));   // [5, 20]
 * ```
 */
import { ShapeError } from "../errors.js";
import { checkAllocation, runtime } from "../runtime/runtime.js";
import { Module } from "./module.js";
import { defaultRng, type Rng } from "./random.js";
import { Parameter, Tensor, assertLive } from "./tensor.js";

export interface LinearOptions {
  /** Add a bias (default true). */
  bias?: boolean;
  /** Generator for the initial values (default: the library's default generator, see `manualSeed`). */
  rng?: Rng;
  /** Fill the weights with random values (default true); false leaves zeros, for layers about to be loaded. */
  init?: boolean;
  /** Use this `[out, in]` parameter as the weight (shared, not copied: a tied language-model head). */
  weight?: Parameter;
}

export class Linear extends Module {
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly weight: Parameter;
  readonly bias: Parameter | null;
  #input: Tensor | null = null;

  constructor(inFeatures: number, outFeatures: number, opts: LinearOptions = {}) {
    super();
    for (const [n, v] of [["inFeatures", inFeatures], ["outFeatures", outFeatures]] as const) {
      if (!Number.isSafeInteger(v) || v <= 0) throw new ShapeError("SHAPE_MISMATCH", `Linear: ${n} must be a positive integer, got ${v}`);
    }
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    if (!opts.weight) checkAllocation(outFeatures * inFeatures, `Linear.weight [${outFeatures}, ${inFeatures}]`);
    const rng = opts.rng ?? defaultRng;
    const bound = 1 / Math.sqrt(inFeatures);
    const init = opts.init ?? true;
    let w: Parameter;
    if (opts.weight) {
      w = opts.weight;
      if (w.ndim !== 2 || w.dim(0) !== outFeatures || w.dim(1) !== inFeatures) {
        throw new ShapeError("SHAPE_MISMATCH", `Linear: shared weight of shape [${w.shape.join(", ")}] is not [${outFeatures}, ${inFeatures}]`);
      }
    } else if (init) {
      const wv = new Float32Array(outFeatures * inFeatures);
      for (let i = 0; i < wv.length; i++) wv[i] = rng.uniform(-bound, bound);
      w = Parameter.from(wv, [outFeatures, inFeatures]);
    } else w = Parameter.zeros([outFeatures, inFeatures]);
    let b: Parameter | null = null;
    if (opts.bias ?? true) {
      const bv = new Float32Array(outFeatures);
      if (init) for (let i = 0; i < bv.length; i++) bv[i] = rng.uniform(-bound, bound);
      try {
        b = Parameter.from(bv, [outFeatures]);
      } catch (e) {
        if (w !== opts.weight) w.free(); // weight and bias, or neither
        throw e;
      }
    }
    this.weight = this.registerParameter("weight", w);
    this.bias = this.registerParameter("bias", b);
  }

  /** Rows of `x` (product of the leading dimensions), after checking the last dimension. */
  protected rows(x: Tensor, what: string): number {
    assertLive(x, what);
    if (x.ndim < 1 || x.dim(-1) !== this.inFeatures) {
      throw new ShapeError("SHAPE_MISMATCH", `${what}: input of shape [${x.shape.join(", ")}] does not end in in_features = ${this.inFeatures}`, {
        shape: x.shape,
        inFeatures: this.inFeatures,
      });
    }
    return x.size / this.inFeatures;
  }

  /**
   * `y[rows, out] = x[rows, in]·Wᵀ + b` into preallocated wasm memory (byte offsets); allocates nothing. Used by the
   * decoder's decode loop. `y` is overwritten.
   */
  forwardInto(xPtr: number, yPtr: number, rows: number): void {
    if (rows <= 0) return;
    runtime().k.f32_gemm_nt(xPtr, this.weight.ptr, this.bias ? this.bias.ptr : 0, yPtr, rows, this.inFeatures, this.outFeatures, 0);
  }

  forward(x: Tensor): Tensor {
    const B = this.rows(x, "Linear.forward");
    const y = Tensor.zeros([...x.shape.slice(0, -1), this.outFeatures]);
    runtime().k.f32_gemm_nt(x.ptr, this.weight.ptr, this.bias ? this.bias.ptr : 0, y.ptr, B, this.inFeatures, this.outFeatures, 0);
    if (this.training) this.#input = x;
    return y;
  }

  /** dL/dx = gy·W; accumulates dL/dW = gyᵀ·x and dL/db = Σ gy into `.grad` of trainable parameters. */
  override backward(gy: Tensor): Tensor {
    const x = this.#input;
    if (!x) throw new ShapeError("ADAPTER_STATE", "Linear.backward: no cached input (call forward in training mode first)");
    const B = this.rows(x, "Linear.backward");
    const k = runtime().k;
    const gx = Tensor.zeros(x.shape);
    k.f32_gemm_nn(gy.ptr, this.weight.ptr, gx.ptr, B, this.outFeatures, this.inFeatures, 0);
    if (this.weight.requiresGrad) {
      const g = this.weight.ensureGrad();
      k.f32_gemm_tn(gy.ptr, x.ptr, g.ptr, B, this.outFeatures, this.inFeatures, 1);
    }
    if (this.bias && this.bias.requiresGrad) {
      const g = this.bias.ensureGrad();
      k.f32_bias_grad(gy.ptr, g.ptr, B, this.outFeatures, 1);
    }
    return gx;
  }

  protected override clearOwnCache(): void {
    this.#input = null;
  }

  override clone(): Linear {
    return new Linear(this.inFeatures, this.outFeatures, { bias: this.bias !== null }).copyStateFrom(this);
  }

  override toString(): string {
    return `Linear(in_features=${this.inFeatures}, out_features=${this.outFeatures}, bias=${this.bias !== null})`;
  }
}
