/**
 * `Conv1D(nf, nx)`: Hugging Face's GPT-2 "Conv1D" (`transformers.pytorch_utils.Conv1D`), a linear layer whose
 * weight is stored transposed: `weight` `[nx = in, nf = out]` exactly as in the checkpoint file, `bias` `[out]`,
 * `y = x·W + b` (PEFT calls this layout `fan_in_fan_out`). Accepts any leading dimensions: `[..., in] -> [..., out]`.
 * Nothing is transposed at load, so names, shapes, `stateDict()` and saved files stay Hugging Face's.
 *
 * ```ts
 * const c_attn = new Conv1D(3 * 64, 64);      // nf = out = 192, nx = in = 64; weight [64, 192]
 * const y = c_attn.forward(Tensor.zeros([5, 64]));   // [5, 192]
 * isDenseLayer(c_attn);                        // true: SHiRA / LoRA can target it
 * ```
 */
import { ShapeError } from "../errors.js";
import { checkAllocation, runtime } from "../runtime/runtime.js";
import { Linear } from "./linear.js";
import { Module } from "./module.js";
import { defaultRng, type Rng } from "./random.js";
import { Parameter, Tensor, assertLive } from "./tensor.js";

export interface Conv1DOptions {
  /** Add a bias (default true, as Hugging Face's Conv1D always has one). */
  bias?: boolean;
  /** Generator for the initial values (default: the library's default generator). */
  rng?: Rng;
  /** Fill the weight with random values (default true); false leaves zeros, for layers about to be loaded. */
  init?: boolean;
}

export class Conv1D extends Module {
  /** Hugging Face's `nf`: number of output features. */
  readonly nf: number;
  /** Hugging Face's `nx`: number of input features. */
  readonly nx: number;
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** The weight is stored `[in, out]` (PEFT's `fan_in_fan_out`). */
  readonly fanInFanOut = true as const;
  /** `[in, out]`. */
  readonly weight: Parameter;
  /** `[out]`, or null. */
  readonly bias: Parameter | null;
  #input: Tensor | null = null;

  /** `nf` = out features, `nx` = in features (Hugging Face's argument order). Init as HF: W ~ N(0, 0.02²), b = 0. */
  constructor(nf: number, nx: number, opts: Conv1DOptions = {}) {
    super();
    for (const [n, v] of [["nf", nf], ["nx", nx]] as const) {
      if (!Number.isSafeInteger(v) || v <= 0) throw new ShapeError("SHAPE_MISMATCH", `Conv1D: ${n} must be a positive integer, got ${v}`);
    }
    this.nf = nf;
    this.nx = nx;
    this.inFeatures = nx;
    this.outFeatures = nf;
    const rng = opts.rng ?? defaultRng;
    checkAllocation(nx * nf, `Conv1D.weight [${nx}, ${nf}]`);
    if (opts.init === false) this.weight = this.registerParameter("weight", Parameter.zeros([nx, nf]));
    else {
      const w = new Float32Array(nx * nf);
      for (let i = 0; i < w.length; i++) w[i] = 0.02 * rng.normal();
      this.weight = this.registerParameter("weight", Parameter.from(w, [nx, nf]));
    }
    try {
      this.bias = this.registerParameter("bias", (opts.bias ?? true) ? Parameter.zeros([nf]) : null);
    } catch (e) {
      this.weight.free(); // weight and bias, or neither
      throw e;
    }
  }

  /** Rows of `x` (product of the leading dimensions), after checking the last dimension. */
  #rows(x: Tensor, what: string): number {
    assertLive(x, what);
    if (x.ndim < 1 || x.dim(-1) !== this.inFeatures) {
      throw new ShapeError("SHAPE_MISMATCH", `${what}: input of shape [${x.shape.join(", ")}] does not end in nx = ${this.inFeatures}`, {
        shape: x.shape,
        inFeatures: this.inFeatures,
      });
    }
    return x.size / this.inFeatures;
  }

  /**
   * `y[rows, out] = x[rows, in]·W + b` into preallocated wasm memory (byte offsets); allocates nothing. Used by the
   * decoder's decode loop. `y` is overwritten.
   */
  forwardInto(xPtr: number, yPtr: number, rows: number): void {
    if (rows <= 0) return;
    const k = runtime().k;
    k.f32_gemm_nn(xPtr, this.weight.ptr, yPtr, rows, this.inFeatures, this.outFeatures, 0);
    if (this.bias) k.f32_bias_add(yPtr, this.bias.ptr, rows, this.outFeatures);
  }

  forward(x: Tensor): Tensor {
    const B = this.#rows(x, "Conv1D.forward");
    const y = Tensor.empty([...x.shape.slice(0, -1), this.outFeatures]);
    this.forwardInto(x.ptr, y.ptr, B);
    if (this.training) this.#input = x;
    return y;
  }

  /** dL/dx = gy·Wᵀ; accumulates dL/dW = xᵀ·gy (`[in, out]`) and dL/db = Σ gy into `.grad` of trainable parameters. */
  override backward(gy: Tensor): Tensor {
    const x = this.#input;
    if (!x) throw new ShapeError("ADAPTER_STATE", "Conv1D.backward: no cached input (call forward in training mode first)");
    const B = this.#rows(x, "Conv1D.backward");
    const k = runtime().k;
    const gx = Tensor.zeros(x.shape);
    k.f32_gemm_nt(gy.ptr, this.weight.ptr, 0, gx.ptr, B, this.outFeatures, this.inFeatures, 0);
    if (this.weight.requiresGrad) k.f32_gemm_tn(x.ptr, gy.ptr, this.weight.ensureGrad().ptr, B, this.inFeatures, this.outFeatures, 1);
    if (this.bias && this.bias.requiresGrad) k.f32_bias_grad(gy.ptr, this.bias.ensureGrad().ptr, B, this.outFeatures, 1);
    return gx;
  }

  protected override clearOwnCache(): void {
    this.#input = null;
  }

  override clone(): Conv1D {
    return new Conv1D(this.nf, this.nx, { bias: this.bias !== null }).copyStateFrom(this);
  }

  override toString(): string {
    return `Conv1D(nf=${this.nf}, nx=${this.nx})`;
  }
}

/** A dense layer adapters can target: `Linear` (weight `[out, in]`) or `Conv1D` (weight `[in, out]`, fan_in_fan_out). */
export type DenseLayer = Linear | Conv1D;

/** Whether `m` is a layer SHiRA / LoRA can adapt (`Linear` or `Conv1D`). */
export function isDenseLayer(m: unknown): m is Linear | Conv1D {
  return m instanceof Linear || m instanceof Conv1D;
}

/** Whether a dense layer stores its weight `[in, out]` (PEFT's `fan_in_fan_out`: GPT-2's Conv1D). */
export function isFanInFanOut(m: Linear | Conv1D): m is Conv1D {
  return m instanceof Conv1D;
}
