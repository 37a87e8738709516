// The Hugging Face decoder fixtures (copied from ../shared/fixtures/transformers into tests/fixtures/transformers, and
// the project's own extra cases in tests/fixtures/transformers-extra), read as plain arrays.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { readSafetensors } from "../../src/node.js";

export const TRANSFORMERS = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "transformers");
export const TRANSFORMERS_EXTRA = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "transformers-extra");

/** Absolute tolerance on logits (fixtures/transformers/README.md: float32 noise is at the 1e-5 level). */
export const LOGITS_ATOL = 1e-4;

export interface Expected {
  f32(name: string): { shape: number[]; data: Float32Array };
  ids(name: string): number[][];
  has(name: string): boolean;
  json: Record<string, unknown>;
}

export function readExpected(dir: string): Expected {
  const file = readSafetensors(readFileSync(join(dir, "expected.safetensors")));
  const json = JSON.parse(readFileSync(join(dir, "expected.json"), "utf8")) as Record<string, unknown>;
  return {
    json,
    has: (n) => file.has(n),
    f32: (n) => ({ shape: [...file.entry(n).shape], data: file.f32(n) }),
    ids: (n) => {
      const e = file.entry(n);
      const raw = file.get(n).bytes.slice();
      const flat = e.dtype === "I64" ? Array.from(new BigInt64Array(raw.buffer, 0, raw.length / 8), Number) : Array.from(file.i32(n));
      const [rows, cols] = e.shape.length === 2 ? e.shape : [1, e.shape[0]];
      return Array.from({ length: rows }, (_, r) => flat.slice(r * cols, (r + 1) * cols));
    },
  };
}

/** Largest |a - b| over the given (row, position) selection of `[B, T, V]` logits. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>, offsetA = 0, offsetB = 0, n = Math.min(a.length, b.length)): number {
  let m = 0;
  for (let i = 0; i < n; i++) {
    const d = Math.abs(a[offsetA + i] - b[offsetB + i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}
