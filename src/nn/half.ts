/**
 * Half-precision base weights: `HalfLinear` (y = x·Wᵀ + b with W `[out, in]` stored as BF16 or F16 bits in wasm
 * memory), `HalfConv1D` (GPT-2's Conv1D, y = x·W + b with W stored `[in, out]`) and `HalfEmbedding` (a half table whose rows are widened to f32 on lookup). Activations, biases and
 * gradients stay f32; the weights are frozen (adapters train beside them). The kernels (`assembly/half.ts`) widen
 * W on the fly and are bit-identical to the f32 kernels on the widened weight, so a half layer computes exactly
 * what a `Linear` holding the rounded weights computes, in half the memory.
 *
 * ```
 *   HalfWeight  u16[rows·cols] in wasm memory (one block, 16-byte aligned), dtype 0 = BF16, 1 = F16
 *     ├── HalfEmbedding.weight   rows gathered by h16_embedding
 *     ├── HalfLinear.weight      [out, in]: h16_gemm_nt (forward), h16_gemm_nn (dL/dx)   (a tied head shares the table)
 *     └── HalfConv1D.weight      [in, out] (GPT-2): h16_gemm_nn (forward), h16_gemm_nt (dL/dx)
 * ```
 *
 * ```ts
 * const lin = new HalfLinear(64, 128, { dtype: "bf16", bias: false });
 * lin.weightBits.setFromF32(w);                  // rounds to nearest even
 * const y = lin.forward(Tensor.zeros([5, 64]));  // [5, 128], f32
 * ```
 */
import { ConfigError, ShapeError, StateError } from "../errors.js";
import { checkAllocation, runtime, type I32Buffer } from "../runtime/runtime.js";
import { Module, type HalfTensor } from "./module.js";
import { Parameter, Tensor, assertLive } from "./tensor.js";

/** Storage dtype of half-precision weights: bfloat16 or IEEE binary16. */
export type HalfDtype = "bf16" | "f16";

/** The kernels' dtype argument for `dtype` (0 = BF16, 1 = F16). */
export function halfDtypeCode(dtype: HalfDtype): 0 | 1 {
  return dtype === "bf16" ? 0 : 1;
}

function checkDtype(dtype: unknown, what: string): asserts dtype is HalfDtype {
  if (dtype !== "bf16" && dtype !== "f16") throw new ConfigError("CONFIG_INVALID", `${what}: dtype must be "bf16" or "f16", got ${JSON.stringify(dtype)}`, { field: "dtype", value: dtype });
}

/** Values converted per kernel call (a 256 KiB f32 staging buffer). */
const CHUNK = 1 << 16;

/**
 * A 2-D half-precision tensor in wasm memory (u16 bit patterns, row-major), owned by whoever created it and shared
 * by reference (an embedding and its tied head). Zeroed at creation.
 */
export class HalfWeight implements HalfTensor {
  readonly shape: [number, number];
  readonly dtype: HalfDtype;
  /** 0 = BF16, 1 = F16 (the kernels' dtype argument). */
  readonly dtypeCode: 0 | 1;
  readonly size: number;
  /** Half weights are frozen: training code refuses one with `requiresGrad` set (train an f32 copy instead). */
  requiresGrad = false;
  #buf: I32Buffer;

  constructor(rows: number, cols: number, dtype: HalfDtype, what = "HalfWeight") {
    checkDtype(dtype, what);
    for (const [n, v] of [["rows", rows], ["cols", cols]] as const) {
      if (!Number.isSafeInteger(v) || v <= 0) throw new ShapeError("SHAPE_MISMATCH", `${what}: ${n} must be a positive integer, got ${v}`);
    }
    this.shape = [rows, cols];
    this.dtype = dtype;
    this.dtypeCode = halfDtypeCode(dtype);
    this.size = rows * cols;
    const words = Math.ceil(this.size / 2);
    checkAllocation(words, `${what} [${rows}, ${cols}] ${dtype}`);
    // an i32 block of half as many words: tracked by runtime transactions like every other buffer
    this.#buf = runtime().allocI32(words, `${what} [${rows}, ${cols}] ${dtype}`);
  }

  /** Byte offset of the bits in wasm memory; `USE_AFTER_FREE` once freed. */
  get ptr(): number {
    return this.#buf.ptr;
  }

  get freed(): boolean {
    return this.#buf.freed;
  }

  /** Bytes of wasm memory the values take (2 per value). */
  get byteLength(): number {
    return this.size * 2;
  }

  /** The u16 bit patterns as a fresh view on wasm memory (re-derive it after anything that may allocate). */
  view(): Uint16Array {
    return new Uint16Array(runtime().memory.buffer, this.ptr, this.size);
  }

  /** Copies raw little-endian bit patterns (`size * 2` bytes, e.g. a safetensors tensor of this dtype). */
  setBytes(bytes: Uint8Array): void {
    if (bytes.length !== this.byteLength) throw new ShapeError("SHAPE_MISMATCH", `HalfWeight.setBytes: ${bytes.length} bytes for ${this.size} ${this.dtype} values`, { bytes: bytes.length, size: this.size });
    const p = this.ptr;
    runtime().u8.set(bytes, p);
  }

  /** Sets every value from f32 values, rounded to nearest even (f32_to_h16, in chunks through a staging buffer). */
  setFromF32(values: ArrayLike<number>): void {
    if (values.length !== this.size) throw new ShapeError("SHAPE_MISMATCH", `HalfWeight.setFromF32: ${values.length} values for shape [${this.shape.join(", ")}]`, { length: values.length, size: this.size });
    const rt = runtime();
    const dst = this.ptr;
    rt.scratch((tmp) => {
      const n = Math.min(CHUNK, this.size);
      const stage = tmp.f32(n);
      for (let at = 0; at < this.size; at += n) {
        const m = Math.min(n, this.size - at);
        const v = stage.view;
        if (values instanceof Float32Array) v.set(values.subarray(at, at + m));
        else for (let i = 0; i < m; i++) v[i] = values[at + i];
        rt.k.f32_to_h16(stage.ptr, dst + at * 2, m, this.dtypeCode);
      }
    });
  }

  /** A widened f32 copy of every value (exact). */
  toFloat32(): Float32Array {
    const out = new Float32Array(this.size);
    const rt = runtime();
    const src = this.ptr;
    rt.scratch((tmp) => {
      const n = Math.min(CHUNK, this.size);
      const stage = tmp.f32(n);
      for (let at = 0; at < this.size; at += n) {
        const m = Math.min(n, this.size - at);
        rt.k.h16_to_f32(src + at * 2, stage.ptr, m, this.dtypeCode);
        out.set(stage.view.subarray(0, m), at);
      }
    });
    return out;
  }

  /** Same as {@link toFloat32} (the name `Tensor` uses, so code reading `layer.weight.toArray()` works on both). */
  toArray(): Float32Array {
    return this.toFloat32();
  }

  /** A copy with its own storage. */
  clone(): HalfWeight {
    const c = new HalfWeight(this.shape[0], this.shape[1], this.dtype);
    c.view().set(this.view());
    c.requiresGrad = this.requiresGrad;
    return c;
  }

  /** Returns the memory to the heap. Idempotent. */
  free(): void {
    this.#buf.free();
  }
}

function refuseTraining(w: HalfWeight, what: string): void {
  if (w.requiresGrad) {
    throw new ConfigError("MODEL_UNSUPPORTED", `${what}: the ${w.dtype} weight asks for a gradient, but half-precision weights are frozen; load the model with dtype "f32" to train its weights, or train an adapter on the half base`, {
      dtype: w.dtype,
    });
  }
}

export interface HalfLinearOptions {
  /** Add an f32 bias (default true). */
  bias?: boolean;
  dtype: HalfDtype;
  /** Use this `[out, in]` half tensor as the weight (shared, not copied: a tied language-model head). */
  weightBits?: HalfWeight;
}

export interface HalfConv1DOptions {
  /** Add an f32 bias (default true, as Hugging Face's Conv1D always has one). */
  bias?: boolean;
  dtype: HalfDtype;
}

/** What a {@link HalfLinear} or {@link HalfConv1D} tells {@link HalfDenseBase}: its name, size arguments and weight layout. */
interface HalfDenseSpec {
  /** The class name that prefixes every message. */
  what: "HalfLinear" | "HalfConv1D";
  /** The constructor's size arguments in order, with their names, each checked to be a positive integer. */
  sizes: readonly (readonly [string, number])[];
  inFeatures: number;
  outFeatures: number;
  /** The weight is stored `[in, out]` (HalfConv1D) rather than `[out, in]` (HalfLinear). */
  fanInFanOut: boolean;
  /** How input-shape errors name the input width (`in_features`, `nx`). */
  inName: string;
  /** Whether `opts.weightBits` may supply a shared weight (HalfLinear: a tied head). */
  shareable: boolean;
}

/**
 * What {@link HalfLinear} and {@link HalfConv1D} share: a frozen half weight (`[out, in]` or `[in, out]`) registered
 * as `weight` plus an optional f32 bias registered as `bias` (weight and bias, or neither), its accessors, the
 * input-shape check and the forward/backward around the subclass's kernels (`forwardInto`, `inputGradInto`,
 * `accumulateWeightGrad`).
 */
abstract class HalfDenseBase extends Module {
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly dtype: HalfDtype;
  /** 0 = BF16, 1 = F16 (the kernels' dtype argument). */
  readonly dtypeCode: 0 | 1;
  readonly bias: Parameter | null;
  /**
   * @internal While set, backward passes accumulate dL/dW (f32, in the stored layout: `[out, in]` for a
   * {@link HalfLinear}, `[in, out]` for a {@link HalfConv1D}) into this tensor: mask calibration
   * (`maskType: "grad"` / `"snip"`) reads the gradient of the frozen weight without making it trainable.
   */
  weightGradSink: Tensor | null = null;
  readonly #what: string;
  readonly #inName: string;
  #w: HalfWeight;
  #input: Tensor | null = null;

  protected constructor(spec: HalfDenseSpec, opts: HalfLinearOptions | HalfConv1DOptions) {
    super();
    const what = spec.what;
    if (opts === null || typeof opts !== "object") throw new ConfigError("CONFIG_INVALID", `${what}: opts with a dtype are required`, { argument: "opts" });
    checkDtype(opts.dtype, what);
    for (const [n, v] of spec.sizes) {
      if (!Number.isSafeInteger(v) || v <= 0) throw new ShapeError("SHAPE_MISMATCH", `${what}: ${n} must be a positive integer, got ${v}`);
    }
    const { inFeatures, outFeatures } = spec;
    this.#what = what;
    this.#inName = spec.inName;
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    this.dtype = opts.dtype;
    this.dtypeCode = halfDtypeCode(opts.dtype);
    const [rows, cols] = spec.fanInFanOut ? [inFeatures, outFeatures] : [outFeatures, inFeatures];
    const shared = spec.shareable ? (opts as HalfLinearOptions).weightBits : undefined;
    if (shared) {
      if (shared.shape[0] !== rows || shared.shape[1] !== cols) {
        throw new ShapeError("SHAPE_MISMATCH", `${what}: shared weight of shape [${shared.shape.join(", ")}] is not [${rows}, ${cols}]`);
      }
      if (shared.dtype !== opts.dtype) throw new ConfigError("CONFIG_INVALID", `${what}: shared weight is ${shared.dtype}, the layer ${opts.dtype}`, { dtype: opts.dtype });
    }
    const w = shared ?? new HalfWeight(rows, cols, opts.dtype, `${what}.weight`);
    let b: Parameter | null = null;
    if (opts.bias ?? true) {
      try {
        b = Parameter.zeros([outFeatures]);
      } catch (e) {
        if (w !== shared) w.free(); // weight and bias, or neither
        throw e;
      }
    }
    this.#w = this.registerHalfTensor("weight", w);
    this.bias = this.registerParameter("bias", b);
  }

  /**
   * The half weight (registered as `weight`), in the stored layout: `[out, in]` for a {@link HalfLinear} (shared with
   * the embedding when it is a tied head), `[in, out]` for a {@link HalfConv1D}.
   */
  get weightBits(): HalfWeight {
    return this.#w;
  }

  /** Byte offset of the u16 weight (stored layout: `[out, in]` or `[in, out]`) in wasm memory. */
  get weightPtr(): number {
    return this.#w.ptr;
  }

  /** Bytes of wasm memory held by the half weight (2 per value; the f32 bias is not counted). */
  get weightBytes(): number {
    return this.#w.byteLength;
  }

  /** A widened f32 copy of the weight, in the stored layout (`[out, in]` or `[in, out]`). */
  weightF32(): Float32Array {
    return this.#w.toFloat32();
  }

  /** The u16 bits in the stored layout as a fresh view (re-derived after memory.grow). */
  bitsView(): Uint16Array {
    return this.#w.view();
  }

  #rows(x: Tensor, what: string): number {
    assertLive(x, what);
    if (x.ndim < 1 || x.dim(-1) !== this.inFeatures) {
      throw new ShapeError("SHAPE_MISMATCH", `${what}: input of shape [${x.shape.join(", ")}] does not end in ${this.#inName} = ${this.inFeatures}`, { shape: x.shape, inFeatures: this.inFeatures });
    }
    return x.size / this.inFeatures;
  }

  /** `y[rows, out]` = the layer applied to `x[rows, in]`, into preallocated wasm memory (byte offsets); allocates nothing. `y` is overwritten. */
  abstract forwardInto(xPtr: number, yPtr: number, rows: number): void;

  /** `gx[rows, in]` = dL/dx for `gy[rows, out]` (`gx` is overwritten): the input gradient through the live weight. */
  abstract inputGradInto(gyPtr: number, gxPtr: number, rows: number): void;

  /** @internal `weightGradSink += dL/dW` (stored layout) when a sink is set. */
  abstract accumulateWeightGrad(xPtr: number, gyPtr: number, rows: number): void;

  forward(x: Tensor): Tensor {
    const B = this.#rows(x, `${this.#what}.forward`);
    const y = Tensor.zeros([...x.shape.slice(0, -1), this.outFeatures]);
    this.forwardInto(x.ptr, y.ptr, B);
    if (this.training) this.#input = x;
    return y;
  }

  /**
   * dL/dx through {@link inputGradInto} (`gy·W`, h16_gemm_nn, for a {@link HalfLinear}; `gy·Wᵀ`, h16_gemm_nt, for a
   * {@link HalfConv1D}); accumulates dL/db = Σ gy when the bias is trainable. The weight gets no gradient.
   */
  override backward(gy: Tensor): Tensor {
    const what = this.#what;
    const x = this.#input;
    if (!x) throw new StateError("ADAPTER_STATE", `${what}.backward: no cached input (call forward in training mode first)`);
    refuseTraining(this.#w, `${what}.backward`);
    const B = this.#rows(x, `${what}.backward`);
    const gx = Tensor.zeros(x.shape);
    this.inputGradInto(gy.ptr, gx.ptr, B);
    this.accumulateWeightGrad(x.ptr, gy.ptr, B);
    if (this.bias && this.bias.requiresGrad) runtime().k.f32_bias_grad(gy.ptr, this.bias.ensureGrad().ptr, B, this.outFeatures, 1);
    return gx;
  }

  protected override clearOwnCache(): void {
    this.#input = null;
  }
}

/**
 * `y = x·Wᵀ + b` with a frozen half-precision W `[out, in]` and an optional f32 bias; `[..., in] -> [..., out]`.
 * Bit-identical to a {@link Linear} holding the widened weight. The backward gives dL/dx (and the bias gradient when
 * the bias is trainable), never a weight gradient.
 */
export class HalfLinear extends HalfDenseBase {
  constructor(inFeatures: number, outFeatures: number, opts: HalfLinearOptions) {
    super(
      { what: "HalfLinear", sizes: [["inFeatures", inFeatures], ["outFeatures", outFeatures]], inFeatures, outFeatures, fanInFanOut: false, inName: "in_features", shareable: true },
      opts,
    );
  }

  /** `y[rows, out] = x[rows, in]·Wᵀ + b` into preallocated wasm memory (byte offsets); allocates nothing. `y` is overwritten. */
  forwardInto(xPtr: number, yPtr: number, rows: number): void {
    if (rows <= 0) return;
    runtime().k.h16_gemm_nt(xPtr, this.weightBits.ptr, this.bias ? this.bias.ptr : 0, yPtr, rows, this.inFeatures, this.outFeatures, 0, this.dtypeCode);
  }

  /** `gx[rows, in] = gy[rows, out]·W` (h16_gemm_nn; `gx` is overwritten): the input gradient through the live weight. */
  inputGradInto(gyPtr: number, gxPtr: number, rows: number): void {
    if (rows <= 0) return;
    runtime().k.h16_gemm_nn(gyPtr, this.weightBits.ptr, gxPtr, rows, this.outFeatures, this.inFeatures, 0, this.dtypeCode);
  }

  /** @internal `weightGradSink += gyᵀ·x` (`f32_gemm_tn`, as a `Linear`'s weight gradient) when a sink is set. */
  accumulateWeightGrad(xPtr: number, gyPtr: number, rows: number): void {
    const g = this.weightGradSink;
    if (!g || rows <= 0) return;
    runtime().k.f32_gemm_tn(gyPtr, xPtr, g.ptr, rows, this.outFeatures, this.inFeatures, 1);
  }

  /** A copy with its own weight storage (a shared weight is copied too). */
  override clone(): HalfLinear {
    const w = this.weightBits.clone();
    try {
      const c = new HalfLinear(this.inFeatures, this.outFeatures, { bias: this.bias !== null, dtype: this.dtype, weightBits: w });
      if (this.bias) c.bias!.data.set(this.bias.data);
      c.training = this.training;
      return c;
    } catch (e) {
      w.free();
      throw e;
    }
  }

  override toString(): string {
    return `HalfLinear(in_features=${this.inFeatures}, out_features=${this.outFeatures}, bias=${this.bias !== null}, dtype=${this.dtype})`;
  }
}

/**
 * GPT-2's `Conv1D(nf, nx)` over a frozen half-precision weight: W stored `[nx = in, nf = out]` exactly as in the
 * checkpoint (PEFT's `fan_in_fan_out`), an optional f32 bias, `y = x·W + b`; `[..., in] -> [..., out]`. Bit-identical
 * to a {@link Conv1D} holding the widened weight: the forward is `h16_gemm_nn` (the f32 layer's `f32_gemm_nn` on
 * the widened strips) plus the bias, dL/dx is `h16_gemm_nt` (`gy·Wᵀ`, the f32 layer's `f32_gemm_nt`). The weight
 * gets no gradient.
 *
 * ```ts
 * const c_attn = new HalfConv1D(192, 64, { dtype: "bf16" });   // nf = out, nx = in; weight [64, 192]
 * c_attn.weightBits.setFromF32(w);                              // [in, out], rounded to nearest even
 * ```
 */
export class HalfConv1D extends HalfDenseBase {
  /** Hugging Face's `nf`: number of output features. */
  readonly nf: number;
  /** Hugging Face's `nx`: number of input features. */
  readonly nx: number;
  /** The weight is stored `[in, out]` (PEFT's `fan_in_fan_out`). */
  readonly fanInFanOut = true as const;

  /** `nf` = out features, `nx` = in features (Hugging Face's argument order); the weight is zeroed. */
  constructor(nf: number, nx: number, opts: HalfConv1DOptions) {
    super({ what: "HalfConv1D", sizes: [["nf", nf], ["nx", nx]], inFeatures: nx, outFeatures: nf, fanInFanOut: true, inName: "nx", shareable: false }, opts);
    this.nf = nf;
    this.nx = nx;
  }

  /** `y[rows, out] = x[rows, in]·W + b` into preallocated wasm memory (byte offsets); allocates nothing. `y` is overwritten. */
  forwardInto(xPtr: number, yPtr: number, rows: number): void {
    if (rows <= 0) return;
    const k = runtime().k;
    k.h16_gemm_nn(xPtr, this.weightBits.ptr, yPtr, rows, this.inFeatures, this.outFeatures, 0, this.dtypeCode);
    if (this.bias) k.f32_bias_add(yPtr, this.bias.ptr, rows, this.outFeatures);
  }

  /** `gx[rows, in] = gy[rows, out]·Wᵀ` (h16_gemm_nt; `gx` is overwritten): the input gradient through the live weight. */
  inputGradInto(gyPtr: number, gxPtr: number, rows: number): void {
    if (rows <= 0) return;
    runtime().k.h16_gemm_nt(gyPtr, this.weightBits.ptr, 0, gxPtr, rows, this.outFeatures, this.inFeatures, 0, this.dtypeCode);
  }

  /** @internal `weightGradSink += xᵀ·gy` (`f32_gemm_tn`, as a `Conv1D`'s weight gradient) when a sink is set. */
  accumulateWeightGrad(xPtr: number, gyPtr: number, rows: number): void {
    const g = this.weightGradSink;
    if (!g || rows <= 0) return;
    runtime().k.f32_gemm_tn(xPtr, gyPtr, g.ptr, rows, this.inFeatures, this.outFeatures, 1);
  }

  /** A copy with its own weight storage. */
  override clone(): HalfConv1D {
    const c = new HalfConv1D(this.nf, this.nx, { bias: this.bias !== null, dtype: this.dtype });
    c.bitsView().set(this.bitsView());
    c.weightBits.requiresGrad = this.weightBits.requiresGrad;
    if (this.bias) c.bias!.data.set(this.bias.data);
    c.training = this.training;
    return c;
  }

  override toString(): string {
    return `HalfConv1D(nf=${this.nf}, nx=${this.nx}, dtype=${this.dtype})`;
  }
}

/** A frozen half-precision dense layer: a {@link HalfLinear} (`[out, in]`) or a GPT-2 {@link HalfConv1D} (`[in, out]`). */
export type HalfDense = HalfLinear | HalfConv1D;

/** Whether `m` is a half-precision dense layer ({@link HalfLinear} or {@link HalfConv1D}). */
export function isHalfDense(m: unknown): m is HalfDense {
  return m instanceof HalfLinear || m instanceof HalfConv1D;
}

export interface HalfEmbeddingOptions {
  dtype: HalfDtype;
  /** Use this `[numEmbeddings, embeddingDim]` half tensor as the table (shared, not copied). */
  weight?: HalfWeight;
}

/** A frozen half-precision lookup table `[numEmbeddings, embeddingDim]`: rows are widened to f32 (h16_embedding). */
export class HalfEmbedding extends Module {
  readonly numEmbeddings: number;
  readonly embeddingDim: number;
  readonly dtype: HalfDtype;
  /** 0 = BF16, 1 = F16 (the kernels' dtype argument). */
  readonly dtypeCode: 0 | 1;
  readonly weight: HalfWeight;
  #inputShape: number[] | null = null;

  constructor(numEmbeddings: number, embeddingDim: number, opts: HalfEmbeddingOptions) {
    super();
    if (opts === null || typeof opts !== "object") throw new ConfigError("CONFIG_INVALID", "HalfEmbedding: opts with a dtype are required", { argument: "opts" });
    checkDtype(opts.dtype, "HalfEmbedding");
    this.numEmbeddings = numEmbeddings;
    this.embeddingDim = embeddingDim;
    this.dtype = opts.dtype;
    this.dtypeCode = halfDtypeCode(opts.dtype);
    if (opts.weight && (opts.weight.shape[0] !== numEmbeddings || opts.weight.shape[1] !== embeddingDim || opts.weight.dtype !== opts.dtype)) {
      throw new ShapeError("SHAPE_MISMATCH", `HalfEmbedding: shared table ${opts.weight.dtype} [${opts.weight.shape.join(", ")}] is not ${opts.dtype} [${numEmbeddings}, ${embeddingDim}]`);
    }
    this.weight = this.registerHalfTensor("weight", opts.weight ?? new HalfWeight(numEmbeddings, embeddingDim, opts.dtype, "HalfEmbedding.weight"));
  }

  /** Writes the rows of `rows` ids (i32 at `idsPtr`) widened to f32 at `outPtr`; allocates nothing. Ids are trusted. */
  forwardInto(idsPtr: number, outPtr: number, rows: number): void {
    if (rows <= 0) return;
    runtime().k.h16_embedding(this.weight.ptr, idsPtr, outPtr, rows, this.embeddingDim, this.dtypeCode);
  }

  /** `x` holds integer ids (as f32 values); output `[...x.shape, embeddingDim]` in f32. */
  forward(x: Tensor): Tensor {
    assertLive(x, "HalfEmbedding.forward");
    const xd = x.data;
    const ids = new Int32Array(x.size);
    for (let i = 0; i < ids.length; i++) {
      const v = xd[i];
      if (!Number.isInteger(v) || v < 0 || v >= this.numEmbeddings) {
        throw new ShapeError("SHAPE_MISMATCH", `HalfEmbedding: id ${v} at position ${i} is not an integer in [0, ${this.numEmbeddings})`, { index: i, value: v });
      }
      ids[i] = v;
    }
    const rt = runtime();
    const y = Tensor.zeros([...x.shape, this.embeddingDim]);
    try {
      rt.scratch((tmp) => {
        const b = tmp.i32(ids);
        this.forwardInto(b.ptr, y.ptr, ids.length);
      });
    } catch (e) {
      y.free();
      throw e;
    }
    if (this.training) this.#inputShape = x.shape;
    return y;
  }

  /** The table is frozen: no gradient; ids have none either (zeros of the input's shape). */
  override backward(_gy: Tensor): Tensor {
    const shape = this.#inputShape;
    if (!shape) throw new StateError("ADAPTER_STATE", "HalfEmbedding.backward: no cached input (call forward in training mode first)");
    refuseTraining(this.weight, "HalfEmbedding.backward");
    return Tensor.zeros(shape);
  }

  protected override clearOwnCache(): void {
    this.#inputShape = null;
  }

  override clone(): HalfEmbedding {
    const w = this.weight.clone();
    try {
      const c = new HalfEmbedding(this.numEmbeddings, this.embeddingDim, { dtype: this.dtype, weight: w });
      c.training = this.training;
      return c;
    } catch (e) {
      w.free();
      throw e;
    }
  }

  override toString(): string {
    return `HalfEmbedding(${this.numEmbeddings}, ${this.embeddingDim}, dtype=${this.dtype})`;
  }
}
