/**
 * PEFT's on-disk adapter format, both directions:
 *
 * ```
 *   <dir>/adapter_config.json         json.dumps(config, indent=2, sort_keys=True), inference_mode: true
 *   <dir>/adapter_model.safetensors   base_model.model.<module>.shira_weight   F32 [nnz]
 *                                     base_model.model.<module>.shira_indices  I32 [2, nnz]  (rows; cols), row-major sorted
 *                                       (rows = output index, cols = input index, also for a Conv1D whose weight
 *                                       is stored [in, out]: the positions address the [out, in] matrix)
 *                                     base_model.model.<module>.<key>          modules_to_save copies (e.g. head.weight)
 *                                     __metadata__ = {"format": "pt"}
 * ```
 *
 * The adapter "default" is saved in `<dir>`, any other in `<dir>/<name>/` (as PEFT). Readers also accept F32 indices
 * (PEFT on Windows), F16/BF16 values, I64 indices and unsorted positions (sorted on load with their values).
 * Everything is validated before the model changes; errors are typed and name the key and the values.
 */
import { ConfigError, FormatError, ShiraError } from "../errors.js";
import type { Module } from "../nn/module.js";
import { ShiraConfig } from "../shira/config.js";
import { ShiraLinear, isAdaptableLayer, type AdaptableLayer } from "../shira/layer.js";
import { findModulesToSave, type ModulesToSaveWrapper } from "../shira/modules-to-save.js";
import { LoadScope, throwIfAborted, type LoadSignalOptions } from "./abort.js";
import { httpGet } from "./byte-source.js";
import { fileSystem, hasFileSystem } from "./platform.js";
import { readSafetensors, toFloat32, toInt32, writeSafetensors, type SafetensorsFile, type TensorInput } from "./safetensors.js";

export const CONFIG_NAME = "adapter_config.json";
export const WEIGHTS_NAME = "adapter_model.safetensors";
/** PEFT's prefix of every key in an adapter file. */
export const KEY_PREFIX = "base_model.model.";

/** The two files of an adapter, in memory (what {@link saveAdapterFiles} returns). */
export interface AdapterFiles {
  "adapter_config.json": string;
  "adapter_model.safetensors": Uint8Array;
}

type BytesLike = Uint8Array | ArrayBuffer | Blob;

/** The two files as the caller has them (browser `File`s, fetched bytes, ...). */
export interface AdapterFilesInput {
  "adapter_config.json": string | BytesLike | Record<string, unknown>;
  "adapter_model.safetensors": BytesLike;
}

/**
 * Where an adapter comes from: a directory path (Node), a URL of the directory (`fetch`), the two files as an
 * object, or a list of `File`s (a folder picked or dropped in a browser).
 */
export type AdapterSource = string | URL | AdapterFilesInput | ArrayLike<File>;

/** The adapter's keys for one module (PEFT's `get_peft_model_state_dict` naming, adapter name removed). */
export function adapterKeys(module: string): { weight: string; indices: string } {
  return { weight: `${KEY_PREFIX}${module}.shira_weight`, indices: `${KEY_PREFIX}${module}.shira_indices` };
}

function isUrl(s: string): boolean {
  return /^(https?|blob|data|file):/i.test(s);
}

async function bytesOf(x: BytesLike): Promise<Uint8Array> {
  if (x instanceof Uint8Array) return x;
  if (x instanceof ArrayBuffer) return new Uint8Array(x);
  if (typeof Blob !== "undefined" && x instanceof Blob) return new Uint8Array(await x.arrayBuffer());
  throw new ShiraError("IO", "adapter file: expected a Uint8Array, ArrayBuffer, Blob or File");
}

async function fetchBytes(url: string, signal: AbortSignal): Promise<Uint8Array> {
  const res = await httpGet(url, { what: "readAdapterFiles", signal });
  if (res.body === null || res.status === 416) throw new ShiraError("IO", `cannot fetch ${url}: HTTP ${res.status} ${res.statusText}`.trimEnd(), { url, status: res.status });
  return res.body;
}

/**
 * Options of {@link readAdapterFiles} (and of the adapter loaders that call it): `signal` aborts the read (pending
 * HTTP requests are cancelled), `timeout` (ms, default none) limits it. Both reject with `ShiraError` code
 * `"ABORTED"` (a timeout: `... timed out after N ms`, `details.reason === "timeout"`); nothing is loaded.
 */
export interface AdapterReadOptions extends LoadSignalOptions {}

/**
 * Reads both files of an adapter from any {@link AdapterSource}. A directory's files must be regular files (a FIFO
 * or a device is `ShiraError("IO")` naming the path); HTTP errors, refused connections and bodies cut short are
 * `ShiraError("IO")` naming the URL, and when one of the two requests fails the other is cancelled.
 *
 * ```ts
 * const { config, model } = await readAdapterFiles("https://example.com/adapters/alpha/", { timeout: 30_000 });
 * ```
 */
export async function readAdapterFiles(
  source: AdapterSource,
  opts: AdapterReadOptions = {},
): Promise<{ config: string | Record<string, unknown>; model: Uint8Array; where: string }> {
  if (opts === null || typeof opts !== "object") throw new ConfigError("CONFIG_INVALID", `readAdapterFiles: opts must be an object, got ${opts === null ? "null" : typeof opts}`, { argument: "opts" });
  return new LoadScope(opts, "readAdapterFiles").run(async ({ signal }) => {
    const files = await readAdapterFilesFrom(source, signal);
    throwIfAborted(signal);
    return files;
  });
}

async function readAdapterFilesFrom(source: AdapterSource, signal: AbortSignal): Promise<{ config: string | Record<string, unknown>; model: Uint8Array; where: string }> {
  // without a file system (browsers), a relative string is a URL relative to the page
  if (typeof source === "string" && !isUrl(source) && !hasFileSystem() && typeof location !== "undefined") source = new URL(source, location.href);
  if (typeof source === "string" && !isUrl(source)) {
    const fs = fileSystem("fromPretrained");
    const cfg = await fs.readFile(fs.join(source, CONFIG_NAME), { signal });
    return { config: new TextDecoder().decode(cfg), model: await fs.readFile(fs.join(source, WEIGHTS_NAME), { signal }), where: source };
  }
  if (typeof source === "string" || source instanceof URL) {
    const base = String(source).replace(/\/+$/, "");
    const [cfg, model] = await Promise.all([fetchBytes(`${base}/${CONFIG_NAME}`, signal), fetchBytes(`${base}/${WEIGHTS_NAME}`, signal)]);
    return { config: new TextDecoder().decode(cfg), model, where: base };
  }
  if (source === null || typeof source !== "object") {
    throw new ConfigError("CONFIG_INVALID", `adapter source: expected a directory path, a URL, an object with the two files, or a list of Files; got ${source === null ? "null" : typeof source}`, { argument: "source" });
  }
  if (typeof (source as ArrayLike<File>).length === "number") {
    const files = Array.from(source as ArrayLike<File>);
    const find = (n: string) => files.find((f) => f.name === n || f.name.endsWith("/" + n) || (f as File & { webkitRelativePath?: string }).webkitRelativePath?.endsWith("/" + n));
    const c = find(CONFIG_NAME);
    const m = find(WEIGHTS_NAME);
    if (!c || !m) throw new ShiraError("IO", `adapter files: need ${CONFIG_NAME} and ${WEIGHTS_NAME}, got ${files.map((f) => f.name).join(", ") || "no files"}`);
    return { config: await c.text(), model: await bytesOf(m), where: "files" };
  }
  const obj = source as AdapterFilesInput;
  const c = obj[CONFIG_NAME];
  const m = obj[WEIGHTS_NAME];
  if (c === undefined || m === undefined) throw new ShiraError("IO", `adapter files: the object needs "${CONFIG_NAME}" and "${WEIGHTS_NAME}"`);
  let config: string | Record<string, unknown>;
  if (typeof c === "string") config = c;
  else if (c instanceof Uint8Array || c instanceof ArrayBuffer || (typeof Blob !== "undefined" && c instanceof Blob)) config = new TextDecoder().decode(await bytesOf(c as BytesLike));
  else config = c as Record<string, unknown>;
  return { config, model: await bytesOf(m), where: "files" };
}

/** A validated adapter, ready to inject. */
export interface ParsedAdapter {
  config: ShiraConfig;
  /** Sorted flat positions (`row * in + col` of the `[out, in]` matrix, also for a Conv1D) and their values per adapted module. */
  loaded: Map<string, { flat: Int32Array; values: Float32Array }>;
  /** modules_to_save tensors per wrapped module: key relative to the module -> values. */
  modulesToSave: Map<string, Map<string, Float32Array>>;
}

/** Adapter values must be finite in float32 (a NaN or ±Inf would poison every merge and forward). */
function checkFinite(values: Float32Array, key: string): void {
  for (let j = 0; j < values.length; j++) {
    if (!Number.isFinite(values[j])) {
      throw new FormatError("NONFINITE", `${key}: value ${j} is ${values[j]} (adapter values must be finite float32 numbers)`, { tensor: key, index: j, value: values[j] });
    }
  }
}

function linearOf(model: Module, name: string, key: string): AdaptableLayer {
  let m: Module;
  try {
    m = model.getSubmodule(name);
  } catch {
    throw new FormatError("SHIRA_MODULE_NOT_FOUND", `${key}: the model has no module "${name}"`, { tensor: key, module: name });
  }
  if (m instanceof ShiraLinear) return m.baseLayer;
  if (isAdaptableLayer(m)) return m;
  throw new FormatError("SHIRA_NOT_LINEAR", `${key}: module "${name}" is a ${m.constructor.name}, not a supported layer (SHiRA adapts Linear, Conv1D, HalfLinear, HalfConv1D)`, {
    tensor: key,
    module: name,
    type: m.constructor.name,
  });
}

/**
 * Validates an adapter against a model without changing anything: config, every tensor's presence, shape,
 * dtype conversion, nnz = r·(out + in), positions in range and unique. Positions come back sorted (values
 * permuted with them).
 */
export function parseAdapter(model: Module, configJson: string | Record<string, unknown>, modelBytes: Uint8Array, opts: { isTrainable?: boolean } = {}): ParsedAdapter {
  const config = ShiraConfig.fromJSON(configJson);
  config.inferenceMode = !opts.isTrainable;
  const file: SafetensorsFile = readSafetensors(modelBytes);
  const mtsTargets = findModulesToSave(model, config.modulesToSave);
  const perModule = new Map<string, { weight?: string; indices?: string }>();
  const mts = new Map<string, Map<string, Float32Array>>();
  const otherAdapters: [string, string][] = [];
  for (const key of file.names()) {
    if (!key.startsWith(KEY_PREFIX)) {
      throw new FormatError("SHIRA_UNEXPECTED_TENSOR", `${key}: adapter keys start with "${KEY_PREFIX}" (PEFT's naming)`, { tensor: key });
    }
    const rest = key.slice(KEY_PREFIX.length);
    const m = /^(.+)\.(shira_weight|shira_indices)$/.exec(rest);
    if (m) {
      const e = perModule.get(m[1]) ?? {};
      if (m[2] === "shira_weight") e.weight = key;
      else e.indices = key;
      perModule.set(m[1], e);
      continue;
    }
    // PEFT through v0.19 also writes the other adapters' tensors into a non-default adapter's file, under
    // `<module>.shira_weight.<adapter>`; its loader ignores them, and so do we (checked below: same modules only)
    const named = /^(.+)\.(shira_weight|shira_indices)\.[^.]+$/.exec(rest);
    if (named) {
      otherAdapters.push([key, named[1]]);
      continue;
    }
    let owner: string | null = null;
    for (const name of mtsTargets.keys()) if (rest.startsWith(name + ".") && (owner === null || name.length > owner.length)) owner = name;
    if (owner === null) {
      throw new FormatError("SHIRA_UNEXPECTED_TENSOR", `${key}: not a SHiRA tensor and not a modules_to_save tensor of this model`, { tensor: key });
    }
    const local = rest.slice(owner.length + 1);
    const target = mtsTargets.get(owner)!.stateDict()[local];
    if (!target) throw new FormatError("SHIRA_UNEXPECTED_TENSOR", `${key}: module "${owner}" has no tensor "${local}"`, { tensor: key });
    const shape = file.entry(key).shape;
    if (shape.length !== target.shape.length || shape.some((d, i) => d !== target.shape[i])) {
      throw new FormatError("SHAPE_MISMATCH", `${key}: shape [${shape.join(", ")}] in the file, [${target.shape.join(", ")}] in the model`, { tensor: key });
    }
    const map = mts.get(owner) ?? new Map<string, Float32Array>();
    const values = toFloat32(file.get(key));
    checkFinite(values, key);
    map.set(local, values);
    mts.set(owner, map);
  }
  for (const [owner, module] of mtsTargets) {
    const have = mts.get(owner);
    const missing = Object.keys(module.stateDict()).filter((k) => !have?.has(k));
    if (missing.length) {
      throw new FormatError("SHIRA_MISSING_TENSOR", `modules_to_save "${owner}": missing ${missing.map((k) => KEY_PREFIX + owner + "." + k).join(", ")}`, { module: owner });
    }
  }
  if (perModule.size === 0) throw new FormatError("SHIRA_MISSING_TENSOR", "the adapter file holds no shira_weight / shira_indices tensors");
  for (const [key, module] of otherAdapters) {
    if (!perModule.has(module)) throw new FormatError("SHIRA_UNEXPECTED_TENSOR", `${key}: another adapter's tensor for a module this adapter does not adapt`, { tensor: key });
  }

  const loaded = new Map<string, { flat: Int32Array; values: Float32Array }>();
  for (const [name, keys] of perModule) {
    const k = adapterKeys(name);
    if (!keys.weight || !keys.indices) {
      const missing = keys.weight ? k.indices : k.weight;
      throw new FormatError("SHIRA_MISSING_TENSOR", `${missing} is missing (its pair ${keys.weight ?? keys.indices} is present)`, { tensor: missing, module: name });
    }
    const lin = linearOf(model, name, keys.weight);
    const out = lin.outFeatures;
    const inn = lin.inFeatures;
    const wShape = file.entry(keys.weight).shape;
    const iShape = file.entry(keys.indices).shape;
    if (wShape.length !== 1) throw new FormatError("SHAPE_MISMATCH", `${keys.weight}: shape [${wShape.join(", ")}], expected [nnz]`, { tensor: keys.weight, shape: wShape });
    if (iShape.length !== 2 || iShape[0] !== 2) throw new FormatError("SHAPE_MISMATCH", `${keys.indices}: shape [${iShape.join(", ")}], expected [2, nnz]`, { tensor: keys.indices, shape: iShape });
    const nnz = wShape[0];
    if (iShape[1] !== nnz) {
      throw new FormatError("SHIRA_NNZ_MISMATCH", `${keys.indices} holds ${iShape[1]} positions ([2, ${iShape[1]}]) but ${keys.weight} holds ${nnz} values`, {
        tensor: keys.indices,
        positions: iShape[1],
        values: nnz,
      });
    }
    const expected = config.r * (out + inn);
    if (nnz !== expected) {
      throw new FormatError("SHIRA_NNZ_MISMATCH", `${keys.weight}: ${nnz} values, but r = ${config.r} on ${name} [${out}, ${inn}] needs r * (out + in) = ${expected}`, {
        tensor: keys.weight,
        values: nnz,
        expected,
      });
    }
    const idx = toInt32(file.get(keys.indices));
    const vals = toFloat32(file.get(keys.weight));
    checkFinite(vals, keys.weight);
    const flat = new Int32Array(nnz);
    let sorted = true;
    for (let j = 0; j < nnz; j++) {
      const r = idx[j];
      const c = idx[nnz + j];
      if (r < 0 || r >= out || c < 0 || c >= inn) {
        const which = r < 0 || r >= out ? `row ${r} (out_features = ${out})` : `column ${c} (in_features = ${inn})`;
        throw new FormatError("SHIRA_INDEX_OUT_OF_RANGE", `${keys.indices}: position ${j} = (${r}, ${c}) is out of range: ${which}`, {
          tensor: keys.indices,
          index: j,
          row: r,
          col: c,
        });
      }
      flat[j] = r * inn + c;
      if (j > 0 && flat[j] <= flat[j - 1]) sorted = false;
    }
    let values = Float32Array.from(vals);
    let positions = flat;
    if (!sorted) {
      const order = Array.from({ length: nnz }, (_, j) => j).sort((a, b) => flat[a] - flat[b] || a - b);
      positions = Int32Array.from(order, (j) => flat[j]);
      values = Float32Array.from(order, (j) => vals[j]);
      for (let j = 1; j < nnz; j++) {
        if (positions[j] === positions[j - 1]) {
          const r = Math.floor(positions[j] / inn);
          throw new FormatError("SHIRA_DUPLICATE_INDEX", `${keys.indices}: position (${r}, ${positions[j] - r * inn}) appears twice (columns ${order[j - 1]} and ${order[j]})`, {
            tensor: keys.indices,
            row: r,
            col: positions[j] - r * inn,
            columns: [order[j - 1], order[j]],
          });
        }
      }
    }
    loaded.set(name, { flat: positions, values });
  }
  return { config, loaded, modulesToSave: mts };
}

/** Something that can be saved: the parts of `ShiraModel` this module reads. */
export interface SavableModel {
  readonly model: Module;
  readonly peftConfig: Map<string, ShiraConfig>;
  shiraLayers(): [string, ShiraLinear<AdaptableLayer>][];
  modulesToSaveWrappers(): [string, ModulesToSaveWrapper][];
}

/**
 * The two files PEFT's `save_pretrained` writes for one adapter, in memory.
 * ```ts
 * const files = saveAdapterFiles(peft, "default");
 * files["adapter_config.json"];          // text
 * files["adapter_model.safetensors"];    // Uint8Array
 * ```
 */
export function saveAdapterFiles(peft: SavableModel, adapter: string): AdapterFiles {
  const cfg = peft.peftConfig.get(adapter);
  if (!cfg) throw new ConfigError("CONFIG_INVALID", `saveAdapter: no adapter "${adapter}"`, { adapter });
  const saved = new ShiraConfig({
    r: cfg.r,
    maskType: cfg.maskType,
    randomSeed: cfg.randomSeed,
    targetModules: cfg.targetModules,
    fanInFanOut: cfg.fanInFanOut,
    initWeights: cfg.initWeights,
    modulesToSave: cfg.modulesToSave,
    taskType: cfg.taskType,
    baseModelNameOrPath: cfg.baseModelNameOrPath,
    revision: cfg.revision,
    inferenceMode: true,
    peftVersion: cfg.peftVersion,
    // PEFT records the base model's class when task_type is null
    autoMapping: cfg.autoMapping ?? (cfg.taskType === null ? { base_model_class: peft.model.constructor.name, parent_library: "shira-wasm" } : null),
    maskFn: cfg.maskFn,
    maskOptions: cfg.maskOptions,
  });
  const tensors = new Map<string, TensorInput>();
  for (const [name, layer] of peft.shiraLayers()) {
    const a = layer.adapters.get(adapter);
    if (!a) continue;
    // PEFT's order (row-major over [out, in]); a Conv1D keeps its positions in the stored [in, out] order
    const { rows, cols } = a.rowsCols();
    const idx = new Int32Array(2 * a.nnz);
    idx.set(rows, 0);
    idx.set(cols, a.nnz);
    const k = adapterKeys(name);
    tensors.set(k.weight, { dtype: "F32", shape: [a.nnz], data: a.peftValues() });
    tensors.set(k.indices, { dtype: "I32", shape: [2, a.nnz], data: idx });
  }
  for (const [name, w] of peft.modulesToSaveWrappers()) {
    const copy = w.copy(adapter);
    if (!copy) continue;
    for (const [k, t] of Object.entries(copy.stateDict())) tensors.set(`${KEY_PREFIX}${name}.${k}`, { dtype: "F32", shape: t.shape, data: t.toArray() });
  }
  return { [CONFIG_NAME]: saved.toJSONString(), [WEIGHTS_NAME]: writeSafetensors(tensors, { format: "pt" }) };
}

/** Writes adapters in PEFT's layout: "default" in `dir`, others in `dir/<name>` (Node). Returns the folders written. */
export async function saveAdaptersToDir(peft: SavableModel, dir: string, adapterNames?: string[]): Promise<string[]> {
  const fs = fileSystem("savePretrained");
  const names = adapterNames ?? [...peft.peftConfig.keys()];
  const files = names.map((n) => [n, saveAdapterFiles(peft, n)] as const); // serialize all before writing any
  const out: string[] = [];
  for (const [n, f] of files) {
    const d = n === "default" ? dir : fs.join(dir, n);
    await fs.writeFile(fs.join(d, CONFIG_NAME), new TextEncoder().encode(f[CONFIG_NAME]));
    await fs.writeFile(fs.join(d, WEIGHTS_NAME), f[WEIGHTS_NAME]);
    out.push(d);
  }
  return out;
}
