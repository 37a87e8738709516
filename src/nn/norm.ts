/**
 * `LayerNorm(normalizedShape, { eps, elementwiseAffine })` over the last dimension and
 * `Embedding(numEmbeddings, embeddingDim)`, with backward passes.
 *
 * ```ts
 * const ln = new LayerNorm(8);
 * const emb = new Embedding(100, 8);
 * const h = ln.forward(emb.forward(Tensor.from([3, 7, 7], [1, 3])));   // [1, 3, 8]
 * ```
 */
import { ShapeError } from "../errors.js";
import { Module } from "./module.js";
import { defaultRng, type Rng } from "./random.js";
import { Parameter, Tensor, assertLive } from "./tensor.js";

export interface LayerNormOptions {
  eps?: number;
  elementwiseAffine?: boolean;
  bias?: boolean;
}

/** y = (x - mean) / sqrt(var + eps) * weight + bias over the last dimension (biased variance, as PyTorch). */
export class LayerNorm extends Module {
  readonly normalizedShape: number;
  readonly eps: number;
  readonly weight: Parameter | null;
  readonly bias: Parameter | null;
  #cache: { x: Tensor; mean: Float64Array; rstd: Float64Array } | null = null;

  constructor(normalizedShape: number, opts: LayerNormOptions = {}) {
    super();
    this.normalizedShape = normalizedShape;
    this.eps = opts.eps ?? 1e-5;
    const affine = opts.elementwiseAffine ?? true;
    this.weight = this.registerParameter("weight", affine ? Parameter.from(new Float32Array(normalizedShape).fill(1), [normalizedShape]) : null);
    this.bias = this.registerParameter("bias", affine && (opts.bias ?? true) ? Parameter.zeros([normalizedShape]) : null);
  }

  forward(x: Tensor): Tensor {
    assertLive(x, "LayerNorm.forward");
    const D = this.normalizedShape;
    if (x.dim(-1) !== D) throw new ShapeError("SHAPE_MISMATCH", `LayerNorm: last dimension ${x.dim(-1)} != normalized_shape ${D}`);
    const rows = x.size / D;
    const y = Tensor.zeros(x.shape);
    const xd = x.data;
    const yd = y.data;
    const w = this.weight?.data;
    const b = this.bias?.data;
    const mean = new Float64Array(rows);
    const rstd = new Float64Array(rows);
    for (let r = 0; r < rows; r++) {
      const o = r * D;
      let s = 0;
      for (let i = 0; i < D; i++) s += xd[o + i];
      const m = s / D;
      let v = 0;
      for (let i = 0; i < D; i++) v += (xd[o + i] - m) ** 2;
      const rs = 1 / Math.sqrt(v / D + this.eps);
      mean[r] = m;
      rstd[r] = rs;
      for (let i = 0; i < D; i++) {
        const n = (xd[o + i] - m) * rs;
        yd[o + i] = w ? n * w[i] + (b ? b[i] : 0) : n;
      }
    }
    if (this.training) this.#cache = { x, mean, rstd };
    return y;
  }

  override backward(gy: Tensor): Tensor {
    const c = this.#cache;
    if (!c) throw new ShapeError("ADAPTER_STATE", "LayerNorm.backward: no cached input (call forward in training mode first)");
    const D = this.normalizedShape;
    const rows = c.x.size / D;
    const gx = Tensor.zeros(c.x.shape);
    const gw = this.weight?.requiresGrad ? this.weight.ensureGrad().data : null;
    const gb = this.bias?.requiresGrad ? this.bias.ensureGrad().data : null;
    const xd = c.x.data;
    const g = gy.data;
    const out = gx.data;
    const w = this.weight?.data;
    const xhat = new Float64Array(D);
    const gh = new Float64Array(D);
    for (let r = 0; r < rows; r++) {
      const o = r * D;
      let s1 = 0;
      let s2 = 0;
      for (let i = 0; i < D; i++) {
        xhat[i] = (xd[o + i] - c.mean[r]) * c.rstd[r];
        gh[i] = g[o + i] * (w ? w[i] : 1);
        s1 += gh[i];
        s2 += gh[i] * xhat[i];
        if (gw) gw[i] += g[o + i] * xhat[i];
        if (gb) gb[i] += g[o + i];
      }
      for (let i = 0; i < D; i++) out[o + i] = c.rstd[r] * (gh[i] - s1 / D - (xhat[i] * s2) / D);
    }
    return gx;
  }

  protected override clearOwnCache(): void {
    this.#cache = null;
  }

  override clone(): LayerNorm {
    return new LayerNorm(this.normalizedShape, { eps: this.eps, elementwiseAffine: this.weight !== null, bias: this.bias !== null }).copyStateFrom(this);
  }
}

export interface EmbeddingOptions {
  paddingIdx?: number;
  rng?: Rng;
  /** Fill the table with random values (default true); false leaves zeros, for tables about to be loaded. */
  init?: boolean;
}

/** Looks up rows of `weight [numEmbeddings, embeddingDim]` (initialized N(0, 1), as PyTorch). Input: integer ids. */
export class Embedding extends Module {
  readonly numEmbeddings: number;
  readonly embeddingDim: number;
  readonly paddingIdx: number | null;
  readonly weight: Parameter;
  #ids: Int32Array | null = null;
  #inputShape: number[] = [];

  constructor(numEmbeddings: number, embeddingDim: number, opts: EmbeddingOptions = {}) {
    super();
    this.numEmbeddings = numEmbeddings;
    this.embeddingDim = embeddingDim;
    this.paddingIdx = opts.paddingIdx ?? null;
    const rng = opts.rng ?? defaultRng;
    if (opts.init === false) {
      this.weight = this.registerParameter("weight", Parameter.zeros([numEmbeddings, embeddingDim]));
    } else {
      const w = new Float32Array(numEmbeddings * embeddingDim);
      for (let i = 0; i < w.length; i++) w[i] = rng.normal();
      if (this.paddingIdx !== null) w.fill(0, this.paddingIdx * embeddingDim, (this.paddingIdx + 1) * embeddingDim);
      this.weight = this.registerParameter("weight", Parameter.from(w, [numEmbeddings, embeddingDim]));
    }
  }

  /** `x` holds integer ids (as f32 values); output `[...x.shape, embeddingDim]`. */
  forward(x: Tensor): Tensor {
    assertLive(x, "Embedding.forward");
    const ids = new Int32Array(x.size);
    const xd = x.data;
    for (let i = 0; i < ids.length; i++) {
      const v = xd[i];
      if (!Number.isInteger(v) || v < 0 || v >= this.numEmbeddings) {
        throw new ShapeError("SHAPE_MISMATCH", `Embedding: id ${v} at position ${i} is not an integer in [0, ${this.numEmbeddings})`, { index: i, value: v });
      }
      ids[i] = v;
    }
    const D = this.embeddingDim;
    const y = Tensor.zeros([...x.shape, D]);
    const yd = y.data;
    const w = this.weight.data;
    for (let i = 0; i < ids.length; i++) yd.set(w.subarray(ids[i] * D, ids[i] * D + D), i * D);
    if (this.training) {
      this.#ids = ids;
      this.#inputShape = x.shape;
    }
    return y;
  }

  /** Scatter-adds dL/dy rows into the weight gradient (none for `paddingIdx`); ids have no gradient (zeros). */
  override backward(gy: Tensor): Tensor {
    const ids = this.#ids;
    if (!ids) throw new ShapeError("ADAPTER_STATE", "Embedding.backward: no cached input (call forward in training mode first)");
    if (this.weight.requiresGrad) {
      const D = this.embeddingDim;
      const g = this.weight.ensureGrad().data;
      const gd = gy.data;
      for (let i = 0; i < ids.length; i++) {
        if (ids[i] === this.paddingIdx) continue;
        const o = ids[i] * D;
        for (let j = 0; j < D; j++) g[o + j] += gd[i * D + j];
      }
    }
    return Tensor.zeros(this.#inputShape);
  }

  protected override clearOwnCache(): void {
    this.#ids = null;
  }

  override clone(): Embedding {
    return new Embedding(this.numEmbeddings, this.embeddingDim, this.paddingIdx === null ? {} : { paddingIdx: this.paddingIdx }).copyStateFrom(this);
  }
}
