/**
 * The MNIST MLP used by the demo, the CLI and the browser example: `fc1 -> ReLU -> fc2 -> ReLU -> fc3`, input 784
 * (28×28 pixels in [0, 1], row-major), 10 classes. Its architecture is stored next to the weights as
 * `model.json` so any page can rebuild it:
 *
 * ```
 *   DIR/model.json                 { "kind": "mlp", "sizes": [784, 256, 128, 10], "activation": "relu" }
 *   DIR/model.safetensors          fc1.weight [256, 784], fc1.bias, fc2.weight, fc2.bias, fc3.weight, fc3.bias (F32)
 *   DIR/adapters/<task>/           adapter_config.json + adapter_model.safetensors (PEFT's format)
 * ```
 */
import { ConfigError } from "../errors.js";
import { ReLU } from "../nn/activation.js";
import { Sequential } from "../nn/containers.js";
import { Linear } from "../nn/linear.js";
import type { Module } from "../nn/module.js";

export interface MlpSpec {
  kind: "mlp";
  /** Layer widths, input first: [784, 256, 128, 10]. */
  sizes: number[];
  activation: "relu";
}

export const MNIST_MLP: MlpSpec = { kind: "mlp", sizes: [784, 256, 128, 10], activation: "relu" };

/** Builds the MLP of a spec: `fc1, act1, fc2, act2, ..., fcN` (no activation after the last layer). */
export function createMlp(spec: MlpSpec = MNIST_MLP): Sequential {
  if (spec.kind !== "mlp" || !Array.isArray(spec.sizes) || spec.sizes.length < 2 || spec.sizes.some((s) => !Number.isInteger(s) || s <= 0)) {
    throw new ConfigError("CONFIG_INVALID", `model.json: expected { kind: "mlp", sizes: [in, ..., out] }, got ${JSON.stringify(spec)}`);
  }
  const children: Record<string, Module> = {};
  for (let i = 1; i < spec.sizes.length; i++) {
    children[`fc${i}`] = new Linear(spec.sizes[i - 1], spec.sizes[i]);
    if (i < spec.sizes.length - 1) children[`act${i}`] = new ReLU();
  }
  return new Sequential(children);
}

/** Names of the Linear layers of a spec (the SHiRA targets). */
export function mlpLinearNames(spec: MlpSpec = MNIST_MLP): string[] {
  return spec.sizes.slice(1).map((_, i) => `fc${i + 1}`);
}
