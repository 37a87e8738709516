/**
 * `shira inspect <adapter dir | adapter_model.safetensors>`: config, per-module tensors, nnz, density, value
 * statistics, total size, and whether the positions equal the mask PEFT would draw from the config's seed.
 */
import { readFile, stat } from "node:fs/promises";
import { dirname, join, basename } from "node:path";
import { FormatError } from "../errors.js";
import { readSafetensors, toFloat32, toInt32, type SafetensorsFile } from "../io/safetensors.js";
import { ShiraConfig } from "../shira/config.js";
import { randomMask } from "../shira/mask.js";
import { KEY_PREFIX } from "../io/peft.js";

export interface ModuleReport {
  module: string;
  nnz: number;
  weightDtype: string;
  indicesDtype: string;
  /** `[out, in]` when known (from `--base`) or inferred exactly from r and the largest indices; null otherwise. */
  shape: [number, number] | null;
  shapeSource: "base" | "inferred" | "unknown";
  density: number | null;
  values: { min: number; max: number; mean: number; std: number; zeros: number; l2: number };
  sortedUnique: boolean;
  /** Positions equal PEFT's seeded random mask for this shape (null: not checkable). */
  matchesSeededMask: boolean | null;
}

export interface InspectReport {
  path: string;
  config: Record<string, unknown> | null;
  peftType: string | null;
  totalBytes: number;
  totalValues: number;
  modules: ModuleReport[];
  otherTensors: string[];
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

export async function inspectAdapter(path: string, basePath?: string): Promise<InspectReport> {
  const st = await stat(path);
  const dir = st.isDirectory() ? path : dirname(path);
  const modelPath = st.isDirectory() ? join(path, "adapter_model.safetensors") : path;
  const configPath = join(dir, "adapter_config.json");
  const bytes = new Uint8Array(await readFile(modelPath));
  const file = readSafetensors(bytes);
  let configText: string | null = null;
  let total = bytes.length;
  if (await exists(configPath)) {
    configText = await readFile(configPath, "utf8");
    total += Buffer.byteLength(configText);
  }
  const rawConfig = configText ? (JSON.parse(configText) as Record<string, unknown>) : null;
  const config = rawConfig && rawConfig["peft_type"] === "SHIRA" ? ShiraConfig.fromJSON(rawConfig) : null;
  let base: SafetensorsFile | null = null;
  if (basePath) base = readSafetensors(new Uint8Array(await readFile(basePath)));
  const modules: ModuleReport[] = [];
  const other: string[] = [];
  for (const key of file.names()) {
    const m = /^(.*)\.shira_weight$/.exec(key.startsWith(KEY_PREFIX) ? key.slice(KEY_PREFIX.length) : key);
    if (!m) {
      if (!key.endsWith(".shira_indices")) other.push(key);
      continue;
    }
    const name = m[1];
    const idxKey = key.replace(/shira_weight$/, "shira_indices");
    if (!file.has(idxKey)) throw new FormatError("SHIRA_MISSING_TENSOR", `${idxKey} is missing (its pair ${key} is present)`, { tensor: idxKey });
    const v = toFloat32(file.get(key));
    const idx = toInt32(file.get(idxKey));
    const nnz = v.length;
    if (idx.length !== 2 * nnz) throw new FormatError("SHIRA_NNZ_MISMATCH", `${idxKey} holds ${idx.length / 2} positions but ${key} holds ${nnz} values`, { tensor: idxKey });
    let maxR = 0;
    let maxC = 0;
    let sorted = true;
    for (let j = 0; j < nnz; j++) {
      maxR = Math.max(maxR, idx[j]);
      maxC = Math.max(maxC, idx[nnz + j]);
    }
    let shape: [number, number] | null = null;
    let source: ModuleReport["shapeSource"] = "unknown";
    const w = base?.has(`${name}.weight`) ? base.entry(`${name}.weight`) : null;
    if (w && w.shape.length === 2) {
      shape = [w.shape[0], w.shape[1]];
      source = "base";
    } else if (config && nnz % config.r === 0) {
      // out + in = nnz / r, out > max row, in > max column: exact when the indices reach both edges; otherwise
      // try the few remaining shapes against PEFT's seeded mask (a random mask identifies its shape)
      const sum = nnz / config.r;
      if (maxR + 1 + maxC + 1 === sum) {
        shape = [maxR + 1, maxC + 1];
        source = "inferred";
      } else if (config.maskType === "random" && sum - (maxR + 1) - (maxC + 1) <= 64) {
        const hits: [number, number][] = [];
        for (let out = maxR + 1; out <= sum - (maxC + 1); out++) {
          const inn = sum - out;
          if (nnz > out * inn) continue;
          const m = randomMask(out, inn, config.r, config.randomSeed);
          if (m.every((p, j) => p === idx[j] * inn + idx[nnz + j])) hits.push([out, inn]);
        }
        if (hits.length === 1) {
          shape = hits[0];
          source = "inferred";
        }
      }
    }
    const inn = shape ? shape[1] : maxC + 1;
    for (let j = 1; j < nnz; j++) {
      const a = idx[j - 1] * inn + idx[nnz + j - 1];
      const b = idx[j] * inn + idx[nnz + j];
      if (b <= a) sorted = false;
    }
    let min = Infinity;
    let max = -Infinity;
    let sum = 0;
    let sq = 0;
    let zeros = 0;
    for (const x of v) {
      min = Math.min(min, x);
      max = Math.max(max, x);
      sum += x;
      sq += x * x;
      if (x === 0) zeros++;
    }
    const mean = nnz ? sum / nnz : 0;
    let matches: boolean | null = null;
    if (shape && config && config.maskType === "random" && nnz === config.r * (shape[0] + shape[1])) {
      const expect = randomMask(shape[0], shape[1], config.r, config.randomSeed);
      matches = expect.length === nnz && expect.every((p, j) => p === idx[j] * shape![1] + idx[nnz + j]);
    }
    modules.push({
      module: name,
      nnz,
      weightDtype: file.entry(key).dtype,
      indicesDtype: file.entry(idxKey).dtype,
      shape,
      shapeSource: source,
      density: shape ? nnz / (shape[0] * shape[1]) : null,
      values: { min: nnz ? min : 0, max: nnz ? max : 0, mean, std: nnz ? Math.sqrt(Math.max(0, sq / nnz - mean * mean)) : 0, zeros, l2: Math.sqrt(sq) },
      sortedUnique: sorted,
      matchesSeededMask: matches,
    });
  }
  return {
    path: basename(path) === path ? path : path,
    config: rawConfig,
    peftType: (rawConfig?.["peft_type"] as string | undefined) ?? null,
    totalBytes: total,
    totalValues: modules.reduce((s, m) => s + m.nnz, 0),
    modules,
    otherTensors: other,
  };
}
