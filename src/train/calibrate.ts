/**
 * Calibration for the gradient-based mask strategies (`maskType: "grad"` and `"snip"`): accumulates the dense
 * gradient of the loss with respect to each target layer's base weight over calibration batches. This is a
 * one-time, per-layer `[out, in]` computation at adapter creation (training itself never forms a dense gradient),
 * and it never changes any weight.
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
import { HalfLinear } from "../nn/half.js";
import type { Parameter } from "../nn/tensor.js";
import { ShiraLinear } from "../shira/layer.js";
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
  const targets = new Map<string, Parameter>();
  const transposed = new Map<string, [number, number]>();
  for (const name of moduleNames) {
    const m = model.getSubmodule(name);
    const base: unknown = m instanceof ShiraLinear ? m.baseLayer : m;
    const lin = base instanceof Linear || base instanceof Conv1D ? base : null;
    if (!lin) {
      const half = base instanceof HalfLinear;
      throw new ConfigError("SHIRA_NOT_LINEAR", half ? `calibration: ${name} has a frozen half-precision weight (no gradient); grad / snip masks need an f32 Linear` : `calibration: ${name} is not a Linear layer`);
    }
    targets.set(name, lin.weight);
    // a Conv1D stores its weight [in, out]: the sums are returned [out, in] like a Linear's
    if (lin instanceof Conv1D) transposed.set(name, [lin.inFeatures, lin.outFeatures]);
  }
  const all = model.parameters();
  const flags = all.map((p) => p.requiresGrad);
  const grads = all.map((p) => p.grad);
  const wasTraining = model.training;
  const acc = new Map<string, Float32Array>();
  for (const [name, w] of targets) acc.set(name, new Float32Array(w.size));
  const lossOf = lossFn(cal.loss ?? "cross_entropy");
  const bs = cal.batchSize ?? 64;
  const batches = Math.min(Math.ceil(n / bs), cal.maxBatches ?? Infinity);
  const order = Int32Array.from({ length: n }, (_, i) => i);
  try {
    for (const p of all) {
      p.requiresGrad = false;
      p.grad = null;
    }
    for (const w of targets.values()) w.requiresGrad = true;
    model.train(true);
    for (let b = 0; b < batches; b++) {
      for (const w of targets.values()) w.ensureGrad().data.fill(0);
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
      for (const [name, w] of targets) {
        let g = w.grad!.data;
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
    for (const w of targets.values()) w.grad?.free();
    all.forEach((p, i) => {
      p.requiresGrad = flags[i];
      p.grad = grads[i];
    });
    model.clearCache();
    model.train(wasTraining);
  }
  return acc;
}
