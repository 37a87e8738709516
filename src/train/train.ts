/**
 * The training loop: mini-batches, gradient accumulation, an optimizer with a learning-rate schedule, gradient
 * clipping, progress callbacks and cancellation; and `evaluate`.
 *
 * SHiRA adapters train in fused form: before the first step the active adapters are fused into the weights
 * (keeping the exact base values), forward and input gradients run through the dense kernels, the value gradients
 * come from the masked matmul (O(B·nnz)), and after every optimizer step the fused weights are refreshed at the
 * nnz positions only. When training ends the model is put back in the state it was in (unfused adapters are
 * unfused exactly), so the base weights are bit-identical.
 *
 * ```ts
 * const result = await train(peft, { inputs, labels, inputSize: 784 }, {
 *   epochs: 3, batchSize: 64, lr: 3e-3, optimizer: "adamw", schedule: { type: "cosine", warmupSteps: 20 },
 *   onProgress: (p) => console.log(p.step, p.loss), signal: controller.signal,
 * });
 * const acc = evaluate(peft, testSet, "accuracy");
 * ```
 */
import { ConfigError, ShapeError, ShiraError } from "../errors.js";
import { crossEntropy, mseLoss, nllLoss, type LossResult } from "../nn/loss.js";
import { Module } from "../nn/module.js";
import { Tensor, type Parameter } from "../nn/tensor.js";
import { Rng } from "../nn/random.js";
import { AdamW, SGD, clipGradNorm, type AdamWOptions, type Optimizer, type SGDOptions } from "./optim.js";
import { lrMultiplier, type ScheduleSpec } from "./schedule.js";
import { DecoderModel } from "../models/decoder.js";
import { causalLmStep, isTokenDataset, type CausalLmBatch, type TokenDataset } from "../models/train-lm.js";

/** A supervised dataset held in memory: `n` rows of `inputSize` features and `n` labels (or `n × targetSize` targets). */
export interface Dataset {
  inputs: Float32Array;
  /** Class indices for classification losses, or regression targets (`n × targetSize`) for MSE. */
  labels: ArrayLike<number>;
  inputSize: number;
  /** Shape of one input when not flat (e.g. `[28, 28]`); default `[inputSize]`. */
  inputShape?: number[];
}

/** Something the loop can train: a plain `Module` (all its trainable parameters) or an adapter model. */
export interface Trainable {
  forward(x: Tensor): Tensor;
  backward(gy: Tensor): Tensor;
  train(mode?: boolean): unknown;
  /** Parameters to optimize. */
  trainableParameters?(): Parameter[];
  /** Called before the first step; returns a function that restores the previous state. */
  beginTraining?(): () => void;
  /** Called after each optimizer step (SHiRA refreshes its fused weights). */
  afterOptimizerStep?(): void;
}

export type LossSpec = "cross_entropy" | "nll" | "mse" | ((output: Tensor, labels: ArrayLike<number>) => LossResult);

export interface Progress {
  epoch: number;
  /** Optimizer steps done so far (1-based after the first step). */
  step: number;
  totalSteps: number;
  /** Mean loss of the last optimizer step. */
  loss: number;
  lr: number;
  elapsedMs: number;
}

export interface TrainOptions {
  epochs?: number;
  batchSize?: number;
  lr?: number;
  /** `"adamw"` (default), `"sgd"`, options for one of them, or an optimizer instance. */
  optimizer?: "adamw" | "sgd" | ({ type: "adamw" } & AdamWOptions) | ({ type: "sgd" } & SGDOptions) | Optimizer;
  schedule?: ScheduleSpec | ScheduleSpec["type"];
  loss?: LossSpec;
  /** Micro-batches per optimizer step (gradient accumulation); default 1. */
  gradientAccumulationSteps?: number;
  /** Clip the global gradient norm to this value. */
  maxGradNorm?: number;
  /** Shuffle each epoch with this seed (default 0); `false` keeps the order. */
  shuffle?: number | false;
  onProgress?: (p: Progress) => void;
  /** Stops training between steps; the promise rejects with code `ABORTED` and the model is restored. */
  signal?: AbortSignal;
  /** Stop after this many optimizer steps. */
  maxSteps?: number;
}

export interface TrainResult {
  steps: number;
  epochs: number;
  /** Mean loss of every optimizer step. */
  losses: number[];
  durationMs: number;
}

/** @internal */
export function countRows(data: Dataset): number {
  if (!(data.inputs instanceof Float32Array) || !Number.isInteger(data.inputSize) || data.inputSize <= 0 || data.inputs.length % data.inputSize !== 0) {
    throw new ShapeError("SHAPE_MISMATCH", `dataset: inputs (${data.inputs?.length}) must be a Float32Array of n × inputSize (${data.inputSize})`);
  }
  return data.inputs.length / data.inputSize;
}

/** @internal */
export function lossFn(spec: LossSpec): (o: Tensor, y: ArrayLike<number>) => LossResult {
  if (typeof spec === "function") return spec;
  if (spec === "cross_entropy") return (o, y) => crossEntropy(o, y);
  if (spec === "nll") return (o, y) => nllLoss(o, y);
  if (spec === "mse") return (o, y) => mseLoss(o, y);
  throw new ConfigError("CONFIG_INVALID", `train: unknown loss ${JSON.stringify(spec)}`);
}

function makeOptimizer(spec: TrainOptions["optimizer"], params: Parameter[], lr: number): Optimizer {
  if (spec && typeof spec === "object" && "step" in spec) return spec;
  const s = typeof spec === "string" || spec === undefined ? { type: spec ?? "adamw" } : spec;
  if (s.type === "adamw") return new AdamW(params, { ...(s as AdamWOptions), lr });
  if (s.type === "sgd") return new SGD(params, { ...(s as SGDOptions), lr });
  throw new ConfigError("CONFIG_INVALID", `train: unknown optimizer ${JSON.stringify((s as { type: string }).type)}`);
}

function paramsOf(model: Trainable): Parameter[] {
  if (model.trainableParameters) return model.trainableParameters();
  if (model instanceof Module) return model.parameters().filter((p) => p.requiresGrad);
  throw new ConfigError("CONFIG_INVALID", "train: the model exposes no trainable parameters");
}

/** Copies rows `idx[from..to)` of a dataset into a batch tensor and label array. @internal */
export function batchOf(data: Dataset, order: Int32Array, from: number, to: number, targetSize: number): { x: Tensor; y: Float64Array } {
  const d = data.inputSize;
  const n = to - from;
  const x = Tensor.zeros([n, ...(data.inputShape ?? [d])]);
  const xd = x.data;
  const y = new Float64Array(n * targetSize);
  for (let i = 0; i < n; i++) {
    const r = order[from + i];
    xd.set(data.inputs.subarray(r * d, r * d + d), i * d);
    for (let t = 0; t < targetSize; t++) y[i * targetSize + t] = data.labels[r * targetSize + t];
  }
  return { x, y };
}

const yieldToEventLoop = () =>
  new Promise<void>((resolve) => {
    if (typeof setImmediate === "function") setImmediate(resolve);
    else setTimeout(resolve, 0);
  });

/**
 * Trains `model` on `data`. Resolves with the per-step losses; rejects with `ShiraError` code `ABORTED` when
 * `signal` aborts (the model is restored to its pre-training fused/unfused state either way).
 *
 * Concurrency: the loop yields to the event loop between steps. While it runs, an adapter model (`ShiraModel`,
 * `LoraModel`) refuses every adapter or weight change and a second `train()` with `StateError` code `BUSY` (also
 * from `onProgress`); they work again once the promise settles.
 */
export async function train(model: Trainable, data: Dataset | TokenDataset, opts: TrainOptions = {}): Promise<TrainResult> {
  const lm = isTokenDataset(data) ? languageModelOf(model, "train") : null;
  const n = lm ? countSequences(data as TokenDataset) : countRows(data as Dataset);
  const epochs = opts.epochs ?? 1;
  const batchSize = opts.batchSize ?? 32;
  const accum = opts.gradientAccumulationSteps ?? 1;
  const lr = opts.lr ?? 1e-3;
  for (const [k, v] of [["epochs", epochs], ["batchSize", batchSize], ["gradientAccumulationSteps", accum]] as const) {
    if (!Number.isInteger(v) || v <= 0) throw new ConfigError("CONFIG_INVALID", `train: ${k} must be a positive integer, got ${v}`, { field: k, value: v });
  }
  if (lm && opts.loss !== undefined && opts.loss !== "cross_entropy") {
    throw new ConfigError("CONFIG_INVALID", `train: a language model trains with the causal-LM cross-entropy; loss ${JSON.stringify(typeof opts.loss === "function" ? "function" : opts.loss)} is not supported`, { field: "loss" });
  }
  const lossOf = lossFn(opts.loss ?? "cross_entropy");
  let targetSize = 1;
  if (!lm) {
    const d = data as Dataset;
    targetSize = opts.loss === "mse" ? d.labels.length / n : 1;
    if (!Number.isInteger(targetSize) || targetSize <= 0) throw new ShapeError("SHAPE_MISMATCH", `train: ${d.labels.length} targets for ${n} rows`);
    if (opts.loss !== "mse" && d.labels.length !== n) throw new ShapeError("SHAPE_MISMATCH", `train: ${d.labels.length} labels for ${n} rows`);
  }
  if (lm && lm === (model as unknown) && lm.dtype !== "f32") {
    throw new ConfigError("MODEL_UNSUPPORTED", `train: this model's weights are ${lm.dtype} and frozen; train an adapter on it (getPeftModel), or load it with { dtype: "f32" } to train every weight`, { field: "dtype", value: lm.dtype });
  }
  const params = paramsOf(model);
  if (params.length === 0) throw new ConfigError("CONFIG_INVALID", "train: nothing to train (no parameter requires a gradient; is the adapter active and trainable?)");
  const microPerEpoch = Math.ceil(n / batchSize);
  const stepsPerEpoch = Math.ceil(microPerEpoch / accum);
  const totalSteps = Math.min(opts.maxSteps ?? Infinity, stepsPerEpoch * epochs);
  const schedule = lrMultiplier(opts.schedule ?? "constant", totalSteps);
  // marks the model busy (a second train() or an adapter change meanwhile is refused with BUSY) before anything
  // is allocated, so a refused call leaves nothing behind
  const restoreModel = model.beginTraining?.() ?? (() => undefined);
  // a language model under an adapter model is marked busy too (no generation while its weights train)
  let restore = restoreModel;
  if (lm && lm !== (model as unknown)) {
    try {
      const endLm = lm.beginTraining();
      restore = () => {
        try {
          restoreModel();
        } finally {
          endLm();
        }
      };
    } catch (e) {
      restoreModel();
      throw e;
    }
  }
  let optimizer: Optimizer;
  try {
    optimizer = makeOptimizer(opts.optimizer, params, lr);
  } catch (e) {
    restore();
    throw e;
  }
  const ownsOptimizer = optimizer !== opts.optimizer;
  const baseLr = optimizer.lr;
  const rng = new Rng(opts.shuffle === false ? 0 : opts.shuffle ?? 0);
  const order = Int32Array.from({ length: n }, (_, i) => i);
  model.train(true);
  const losses: number[] = [];
  const t0 = performance.now();
  let step = 0;
  let lastYield = t0;
  try {
    for (let epoch = 0; epoch < epochs && step < totalSteps; epoch++) {
      if (opts.shuffle !== false) rng.shuffle(order);
      for (let mb = 0; mb < microPerEpoch && step < totalSteps; mb += accum) {
        if (opts.signal?.aborted) throw new ShiraError("ABORTED", `train: aborted after ${step} steps`, { step });
        optimizer.zeroGrad();
        let stepLoss = 0;
        const last = Math.min(microPerEpoch, mb + accum);
        for (let j = mb; j < last; j++) {
          const from = j * batchSize;
          const to = Math.min(n, from + batchSize);
          if (lm) {
            const r = causalLmStep(lm, tokenBatchOf(data as TokenDataset, order, from, to), { backward: true, gradScale: 1 / (last - mb) });
            stepLoss += r.loss / (last - mb);
            continue;
          }
          const { x, y } = batchOf(data as Dataset, order, from, to, targetSize);
          const out = model.forward(x);
          const { loss, grad } = lossOf(out, y);
          if (last - mb > 1) runtimeScale(grad, 1 / (last - mb));
          const gx = model.backward(grad);
          gx.free();
          grad.free();
          out.free();
          x.free();
          stepLoss += loss / (last - mb);
        }
        if (opts.maxGradNorm !== undefined) clipGradNorm(params, opts.maxGradNorm);
        optimizer.lr = baseLr * schedule(step);
        optimizer.step();
        model.afterOptimizerStep?.();
        step++;
        losses.push(stepLoss);
        const now = performance.now();
        opts.onProgress?.({ epoch, step, totalSteps, loss: stepLoss, lr: optimizer.lr, elapsedMs: now - t0 });
        if (now - lastYield > 30) {
          await yieldToEventLoop();
          lastYield = performance.now();
        }
      }
    }
  } finally {
    optimizer.lr = baseLr;
    if (ownsOptimizer) optimizer.free();
    for (const p of params) {
      p.grad?.free();
      p.grad = null;
    }
    if (model instanceof Module) model.clearCache();
    else (model as { model?: Module }).model?.clearCache();
    restore();
  }
  return { steps: step, epochs, losses, durationMs: performance.now() - t0 };
}

/** The decoder language model `model` is or wraps (an adapter model's `.model`), or a typed error. @internal */
export function languageModelOf(model: unknown, what: string): DecoderModel {
  if (model instanceof DecoderModel) return model;
  const inner = (model as { model?: unknown } | null)?.model;
  if (inner instanceof DecoderModel) return inner;
  throw new ConfigError("CONFIG_INVALID", `${what}: a token dataset (inputIds + seqLength) needs a decoder language model (AutoModelForCausalLM, or an adapter model over one)`, { field: "data" });
}

function countSequences(data: TokenDataset): number {
  const L = data.seqLength;
  if (!Number.isInteger(L) || L < 2 || data.inputIds.length === 0 || data.inputIds.length % L !== 0) {
    throw new ShapeError("SHAPE_MISMATCH", `dataset: inputIds (${data.inputIds.length}) must hold n × seqLength (${L}) ids, n ≥ 1, seqLength ≥ 2`, { field: "seqLength", value: L });
  }
  const n = data.inputIds.length / L;
  for (const [name, a] of [["labels", data.labels], ["attentionMask", data.attentionMask]] as const) {
    if (a !== undefined && a.length !== data.inputIds.length) throw new ShapeError("SHAPE_MISMATCH", `dataset: ${name} has ${a.length} entries, inputIds ${data.inputIds.length}`, { field: name });
  }
  return n;
}

/** Rows `order[from..to)` of a token dataset as one batch. @internal */
export function tokenBatchOf(data: TokenDataset, order: Int32Array, from: number, to: number): CausalLmBatch {
  const L = data.seqLength;
  const n = to - from;
  const pick = <A extends Int32Array | Uint8Array>(src: A, make: (len: number) => A): A => {
    const out = make(n * L);
    for (let i = 0; i < n; i++) out.set(src.subarray(order[from + i] * L, order[from + i] * L + L), i * L);
    return out;
  };
  const mask = data.attentionMask;
  return {
    inputIds: pick(data.inputIds, (len) => new Int32Array(len)),
    batchSize: n,
    seqLength: L,
    ...(data.labels ? { labels: pick(data.labels, (len) => new Int32Array(len)) } : {}),
    ...(mask ? { attentionMask: mask instanceof Uint8Array ? pick(mask, (len) => new Uint8Array(len)) : pick(mask as Int32Array, (len) => new Int32Array(len)) } : {}),
  };
}

function runtimeScale(t: Tensor, s: number): void {
  const d = t.data;
  for (let i = 0; i < d.length; i++) d[i] *= s;
}

export type Metric = "accuracy" | "loss" | ((output: Tensor, labels: ArrayLike<number>) => number);

/**
 * Evaluates `model` on `data` in evaluation mode: `"accuracy"` (argmax of the last dimension against class
 * labels), `"loss"` (mean cross-entropy), or a function returning a per-batch sum that is averaged over rows.
 * ```ts
 * evaluate(peft, testSet, "accuracy");   // 0.973
 * ```
 */
export function evaluate(model: Trainable, data: Dataset | TokenDataset, metric: Metric | "perplexity" = "accuracy", opts: { batchSize?: number } = {}): number {
  if (isTokenDataset(data)) return evaluateLm(languageModelOf(model, "evaluate"), data, metric, opts.batchSize ?? 8);
  if (metric === "perplexity") throw new ConfigError("CONFIG_INVALID", "evaluate: perplexity needs a token dataset and a language model", { field: "metric" });
  const n = countRows(data);
  const bs = opts.batchSize ?? 256;
  const wasTraining = model instanceof Module ? model.training : (model as { model?: Module }).model?.training ?? false;
  model.train(false);
  const order = Int32Array.from({ length: n }, (_, i) => i);
  let total = 0;
  try {
    for (let from = 0; from < n; from += bs) {
      const to = Math.min(n, from + bs);
      const { x, y } = batchOf(data, order, from, to, 1);
      const out = model.forward(x);
      if (metric === "accuracy") {
        const c = out.dim(-1);
        const o = out.data;
        for (let i = 0; i < to - from; i++) {
          let best = 0;
          for (let j = 1; j < c; j++) if (o[i * c + j] > o[i * c + best]) best = j;
          if (best === y[i]) total++;
        }
      } else if (metric === "loss") {
        const { loss, grad } = crossEntropy(out, y, "sum");
        grad.free();
        total += loss;
      } else total += metric(out, y);
      out.free();
      x.free();
    }
  } finally {
    model.train(wasTraining);
  }
  return total / n;
}

/**
 * Causal-LM loss over a token dataset in evaluation mode: `"loss"` is the mean cross-entropy per scored token,
 * `"perplexity"` its exponential.
 */
function evaluateLm(lm: DecoderModel, data: TokenDataset, metric: unknown, batchSize: number): number {
  if (metric !== "loss" && metric !== "perplexity") throw new ConfigError("CONFIG_INVALID", `evaluate: a language model is evaluated by "loss" or "perplexity", not ${JSON.stringify(metric)}`, { field: "metric" });
  const n = countSequences(data);
  const order = Int32Array.from({ length: n }, (_, i) => i);
  const was = lm.training;
  lm.train(false);
  let sum = 0;
  let tokens = 0;
  try {
    for (let from = 0; from < n; from += batchSize) {
      const r = causalLmStep(lm, tokenBatchOf(data, order, from, Math.min(n, from + batchSize)));
      sum += r.lossSum;
      tokens += r.tokens;
    }
  } finally {
    lm.train(was);
  }
  const mean = sum / tokens;
  return metric === "perplexity" ? Math.exp(mean) : mean;
}

/** Class predictions (argmax) for every row. */
export function predict(model: Trainable, inputs: Float32Array, inputSize: number, opts: { batchSize?: number } = {}): Int32Array {
  const n = inputs.length / inputSize;
  const out = new Int32Array(n);
  const bs = opts.batchSize ?? 256;
  for (let from = 0; from < n; from += bs) {
    const to = Math.min(n, from + bs);
    const x = Tensor.from(inputs.subarray(from * inputSize, to * inputSize), [to - from, inputSize]);
    const y = model.forward(x);
    const c = y.dim(-1);
    const d = y.data;
    for (let i = 0; i < to - from; i++) {
      let best = 0;
      for (let j = 1; j < c; j++) if (d[i * c + j] > d[i * c + best]) best = j;
      out[from + i] = best;
    }
    y.free();
    x.free();
  }
  return out;
}
