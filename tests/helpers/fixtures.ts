// Shared test helpers: the PEFT reference fixtures (copied from ../shared/fixtures/peft into tests/fixtures/peft,
// so a clean clone has them) and PEFT's test MLP.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Linear, LogSoftmax, Module, ReLU, Rng, Tensor, readSafetensors, type SafetensorsFile } from "../../src/node.js";

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "peft");

export function fixturePath(...parts: string[]): string {
  return join(FIXTURES, ...parts);
}

export function readFixture(...parts: string[]): SafetensorsFile {
  return readSafetensors(readFileSync(fixturePath(...parts)));
}

/** Integer tensors (I32/I64) of a fixture file as plain numbers, with their shapes. */
export function readIntTensors(...parts: string[]): Map<string, { shape: number[]; data: number[] }> {
  const file = readFixture(...parts);
  const out = new Map<string, { shape: number[]; data: number[] }>();
  for (const name of file.names()) {
    const e = file.entry(name);
    if (e.dtype === "I32") out.set(name, { shape: [...e.shape], data: Array.from(file.i32(name)) });
    else if (e.dtype === "I64") {
      const b = file.get(name).bytes.slice(); // aligned copy; values may exceed int32 (raw MT19937 outputs)
      out.set(name, { shape: [...e.shape], data: Array.from(new BigInt64Array(b.buffer, 0, b.length / 8), Number) });
    }
  }
  return out;
}

/** PEFT's tests/test_shira.py MLP: lin0 10->20, ReLU, lin1 20->40, ReLU, lin2 40->30, ReLU, lin3 30->10, LogSoftmax. */
export class MLP extends Module {
  relu = this.registerModule("relu", new ReLU());
  lin0 = this.registerModule("lin0", new Linear(10, 20));
  lin1 = this.registerModule("lin1", new Linear(20, 40));
  lin2 = this.registerModule("lin2", new Linear(40, 30));
  lin3 = this.registerModule("lin3", new Linear(30, 10));
  sm = this.registerModule("sm", new LogSoftmax(-1));

  forward(x: Tensor): Tensor {
    const steps: Module[] = [this.lin0, this.relu, this.lin1, this.relu, this.lin2, this.relu, this.lin3, this.sm];
    let h = x;
    for (const m of steps) {
      const next = m.forward(h);
      if (h !== x && !this.training) h.free();
      h = next;
    }
    return h;
  }
}

/** The fixture MLP with mlp/model.safetensors loaded. */
export function fixtureModel(): MLP {
  const m = new MLP();
  m.eval();
  m.loadStateDict(readFixture("mlp", "model.safetensors"));
  return m;
}

/** The model's output for the fixture input `x` (`[4, 10]` from mlp/cases.safetensors), as a copy. */
export function runOnFixtureInput(model: { forward(x: Tensor): Tensor }): Float32Array {
  const x = Tensor.from(readFixture("mlp", "cases.safetensors").f32("x"), [4, 10]);
  const y = model.forward(x);
  const out = y.toArray();
  x.free();
  y.free();
  return out;
}

/** Copies of every named parameter. */
export function allWeights(m: { namedParameters(): [string, { toArray(): Float32Array }][] }): Map<string, Float32Array> {
  return new Map(m.namedParameters().map(([n, p]) => [n, p.toArray()]));
}

/** Max |a - b|. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Bitwise equality of two f32 arrays (distinguishes -0/+0 and NaN payloads). */
export function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return false;
  return true;
}

/** A tiny separable 3-class task (8 features) for training tests. */
export function toyData(n: number, seed: number): { inputs: Float32Array; labels: Int32Array; inputSize: number } {
  const rng = new Rng(seed);
  const inputs = new Float32Array(n * 8);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const c = i % 3;
    labels[i] = c;
    for (let j = 0; j < 8; j++) inputs[i * 8 + j] = rng.normal() * 0.5 + (j % 3 === c ? 1.5 : 0);
  }
  return { inputs, labels, inputSize: 8 };
}
