/**
 * Calibration for the gradient-based mask strategies (`maskType: "grad"` and `"snip"`): accumulates the dense
 * gradient of the loss with respect to each target layer's base weight over calibration batches. This is a
 * one-time, per-layer `[out, in]` computation at adapter creation (training itself never forms a dense gradient),
 * and it never changes any weight. A half-precision base (`HalfLinear`, `HalfConv1D`) stays frozen: its backward
 * accumulates `dL/dW` into an f32 sink (`f32_gemm_tn` of the cached input and the output gradient, the same product
 * an f32 layer forms), so the masks equal those of the f32 model holding the rounded weights.
 *
 * ```ts
 * const peft = getPeftModel(model, new ShiraConfig({ r: 16, maskType: "snip", targetModules: ["fc1", "fc2"] }), "task", {
 *   calibration: { inputs, labels, inputSize: 784, batchSize: 64, maxBatches: 8 },
 * });
 * ```
 */
import { ConfigError } from "../errors.js";
import { Linear } from "../nn/linear.js";
import type { Module } from "../nn/module.js";
import { isHalfDense, type HalfDense } from "../nn/half.js";
import { Tensor } from "../nn/tensor.js";
import { ShiraLinear, fanInFanOutOf } from "../shira/layer.js";
import { Conv1D } from "../nn/conv1d.js";
import { causalLmStep, isTokenDataset, type TokenDataset } from "../models/train-lm.js";
import { batchOf, countRows, languageModelOf, lossFn, tokenBatchOf, type Dataset, type LossSpec } from "./train.js";

interface CalibrationOptions {
  batchSize?: number;
  /** Use at most this many batches (default: all). */
  maxBatches?: number;
  loss?: LossSpec;
}

/**
 * Calibration data: a supervised {@link Dataset}, or for a language model a {@link TokenDataset} (token sequences,
 * scored with the causal-LM loss).
 */
export type Calibration = (Dataset & CalibrationOptions) | (TokenDataset & CalibrationOptions);

/**
 * For each module name, `Σ_batches |∂L/∂W|` (`kind: "grad"`) or `Σ_batches ∂L/∂W` (`kind: "snip"`, the gradient
 * of the loss over the whole calibration set) as a Float32Array `[out * in]`.
 */
export function calibrationGradients(model: Module, moduleNames: string[], cal: Calibration, kind: "grad" | "snip"): Map<string, Float32Array> {
  const lm = isTokenDataset(cal) ? languageModelOf(model, "calibration") : null;
  const n = lm ? (cal as TokenDataset).inputIds.length / (cal as TokenDataset).seqLength : countRows(cal as Dataset);
  if (n === 0) throw new ConfigError("CONFIG_MASK", "calibration: the dataset is empty");
  // f32 layers: their weight is made trainable for the pass; half layers (frozen weights): an f32 gradient sink
  const dense = new Map<string, Linear | Conv1D>();
  const half = new Map<string, HalfDense>();
  const transposed = new Map<string, [number, number]>();
  for (const name of moduleNames) {
    const m = model.getSubmodule(name);
    const base: unknown = m instanceof ShiraLinear ? m.baseLayer : m;
    if (base instanceof Linear || base instanceof Conv1D) dense.set(name, base);
    else if (isHalfDense(base)) half.set(name, base);
    else throw new ConfigError("SHIRA_NOT_LINEAR", `calibration: ${name} is a ${(base as object).constructor.name}, not a Linear, Conv1D, HalfLinear or HalfConv1D layer`, { module: name });
    const lin = (dense.get(name) ?? half.get(name))!;
    // a Conv1D stores its weight [in, out]: the sums are returned [out, in] like a Linear's
    if (fanInFanOutOf(lin)) transposed.set(name, [lin.inFeatures, lin.outFeatures]);
  }
  const all = model.parameters();
  const flags = all.map((p) => p.requiresGrad);
  const grads = all.map((p) => p.grad);
  const wasTraining = model.training;
  const acc = new Map<string, Float32Array>();
  for (const name of moduleNames) {
    const lin = (dense.get(name) ?? half.get(name))!;
    acc.set(name, new Float32Array(lin.inFeatures * lin.outFeatures));
  }
  const lossOf = lossFn(cal.loss ?? "cross_entropy");
  const bs = cal.batchSize ?? 64;
  const batches = Math.min(Math.ceil(n / bs), cal.maxBatches ?? Infinity);
  const order = Int32Array.from({ length: n }, (_, i) => i);
  /** The gradient tensor of a target (stored layout), zeroed before each batch. */
  const gradOf = (name: string): Tensor => {
    const d = dense.get(name);
    return d ? d.weight.ensureGrad() : half.get(name)!.weightGradSink!;
  };
  try {
    for (const p of all) {
      p.requiresGrad = false;
      p.grad = null;
    }
    for (const d of dense.values()) d.weight.requiresGrad = true;
    for (const h of half.values()) h.weightGradSink = Tensor.zeros(h.weightBits.shape);
    model.train(true);
    for (let b = 0; b < batches; b++) {
      for (const name of moduleNames) gradOf(name).data.fill(0);
      if (lm) causalLmStep(lm, tokenBatchOf(cal as TokenDataset, order, b * bs, Math.min(n, (b + 1) * bs)), { backward: true });
      else {
        const { x, y } = batchOf(cal as Dataset, order, b * bs, Math.min(n, (b + 1) * bs), 1);
        const out = model.forward(x);
        const { grad } = lossOf(out, y);
        model.backward(grad).free();
        grad.free();
        out.free();
        x.free();
      }
      for (const name of moduleNames) {
        let g = gradOf(name).data;
        const t = transposed.get(name);
        if (t) {
          const [inF, outF] = t;
          const gt = new Float32Array(g.length);
          for (let i = 0; i < inF; i++) for (let o = 0; o < outF; o++) gt[o * inF + i] = g[i * outF + o];
          g = gt;
        }
        const a = acc.get(name)!;
        if (kind === "grad") for (let i = 0; i < a.length; i++) a[i] += Math.abs(g[i]);
        else for (let i = 0; i < a.length; i++) a[i] += g[i];
      }
    }
  } finally {
    for (const d of dense.values()) d.weight.grad?.free();
    for (const h of half.values()) {
      h.weightGradSink?.free();
      h.weightGradSink = null;
    }
    all.forEach((p, i) => {
      p.requiresGrad = flags[i];
      p.grad = grads[i];
    });
    model.clearCache();
    model.train(wasTraining);
  }
  return acc;
}
