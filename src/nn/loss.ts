/**
 * Losses: each returns the scalar loss and dL/d(input) (a tensor the caller frees).
 *
 * ```ts
 * const { loss, grad } = crossEntropy(logits, labels);   // mean over the batch
 * model.backward(grad); grad.free();
 * ```
 */
import { ShapeError } from "../errors.js";
import { runtime } from "../runtime/runtime.js";
import { Tensor } from "./tensor.js";

export interface LossResult {
  loss: number;
  /** dL/d(input), same shape as the input. */
  grad: Tensor;
}

export type Reduction = "mean" | "sum";

function checkTargets(input: Tensor, targets: ArrayLike<number>, what: string): { rows: number; cols: number } {
  const cols = input.dim(-1);
  const rows = input.size / cols;
  if (targets.length !== rows) throw new ShapeError("SHAPE_MISMATCH", `${what}: ${targets.length} targets for ${rows} rows`, { targets: targets.length, rows });
  for (let i = 0; i < rows; i++) {
    const t = targets[i];
    if (!Number.isInteger(t) || t < 0 || t >= cols) throw new ShapeError("SHAPE_MISMATCH", `${what}: target ${t} at row ${i} is not a class index in [0, ${cols})`, { row: i, value: t });
  }
  return { rows, cols };
}

/** Negative log-likelihood of log-probabilities `[N, C]` (PyTorch's `nll_loss`). */
export function nllLoss(logProbs: Tensor, targets: ArrayLike<number>, reduction: Reduction = "mean"): LossResult {
  const { rows, cols } = checkTargets(logProbs, targets, "nllLoss");
  const lp = logProbs.data;
  const scale = reduction === "mean" ? 1 / rows : 1;
  let loss = 0;
  for (let i = 0; i < rows; i++) loss -= lp[i * cols + targets[i]];
  const grad = Tensor.zeros(logProbs.shape);
  const g = grad.data;
  for (let i = 0; i < rows; i++) g[i * cols + targets[i]] = -scale;
  return { loss: loss * scale, grad };
}

/** Cross-entropy of logits `[N, C]` against class indices (log-softmax + NLL, PyTorch's `cross_entropy`). */
export function crossEntropy(logits: Tensor, targets: ArrayLike<number>, reduction: Reduction = "mean"): LossResult {
  const { rows, cols } = checkTargets(logits, targets, "crossEntropy");
  const k = runtime().k;
  const grad = Tensor.zeros(logits.shape);
  k.f32_log_softmax_rows(logits.ptr, grad.ptr, rows, cols);
  const g = grad.data;
  const scale = reduction === "mean" ? 1 / rows : 1;
  let loss = 0;
  for (let i = 0; i < rows; i++) loss -= g[i * cols + targets[i]];
  // grad = (softmax - onehot) * scale, written over the log-probabilities
  for (let i = 0; i < g.length; i++) g[i] = Math.exp(g[i]) * scale;
  for (let i = 0; i < rows; i++) g[i * cols + targets[i]] -= scale;
  return { loss: loss * scale, grad };
}

/** Mean squared error (PyTorch's `mse_loss`). */
export function mseLoss(input: Tensor, target: ArrayLike<number> | Tensor, reduction: Reduction = "mean"): LossResult {
  const t = target instanceof Tensor ? target.data : target;
  if (t.length !== input.size) throw new ShapeError("SHAPE_MISMATCH", `mseLoss: target has ${t.length} values, input ${input.size}`);
  const x = input.data;
  const scale = reduction === "mean" ? 1 / input.size : 1;
  const grad = Tensor.zeros(input.shape);
  const g = grad.data;
  let loss = 0;
  for (let i = 0; i < x.length; i++) {
    const d = x[i] - t[i];
    loss += d * d;
    g[i] = 2 * d * scale;
  }
  return { loss: loss * scale, grad };
}
