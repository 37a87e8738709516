/**
 * `AutoModelForCausalLM.fromPretrained(source)`: reads a Hugging Face checkpoint folder — `config.json` (dispatch on
 * `model_type`), `generation_config.json` when present, and `model.safetensors` or a sharded
 * `model.safetensors.index.json` — into a {@link DecoderModel}. Tensors are read one at a time through random
 * access (a local file handle, HTTP range requests, `Blob.slice`), converted from F32/F16/BF16 to f32 straight into
 * the weight's wasm buffer, so a shard is never held in memory whole. With `dtype: "bf16"` / `"f16"` the dense
 * layers, the token embedding and the head are kept half-precision: a tensor stored in that dtype is copied bit for
 * bit, any other is rounded to nearest even (F32 directly, the other half dtype through its exact f32 value). The
 * default dtype is the checkpoint's own (BF16 weight matrices load as `"bf16"`, F16 as `"f16"`, F32 or mixed as
 * `"f32"`; see {@link FromPretrainedOptions.dtype}). Every name and shape is checked against the
 * file headers before any weight is read; missing, unexpected and mis-shaped tensors are named in the error.
 *
 * ```ts
 * const lm = await AutoModelForCausalLM.fromPretrained("models/SmolLM-135M", {
 *   onProgress: (p) => console.log(`${p.loadedBytes} / ${p.totalBytes}`),
 * });
 * ```
 */
import { ConfigError, FormatError, ShapeError, ShiraError } from "../errors.js";
import { LoadScope, type LoadSignalOptions, throwIfAborted } from "../io/abort.js";
import { openSafetensors, type SafetensorsSource } from "../io/safetensors.js";
import { Tensor } from "../nn/tensor.js";
import type { HalfTensor } from "../nn/module.js";
import { HalfWeight } from "../nn/half.js";
import { minParameterCount, parseConfig, SUPPORTED_MODEL_TYPES, type DecoderConfig } from "./config.js";
import { DecoderModel, checkModelDtype, isHalfTensorName, type ModelDtype } from "./decoder.js";
import type { DecoderFamily } from "./family.js";
import { FAMILIES } from "./families/index.js";
import { openCheckpoint, type CheckpointFiles, type CheckpointSource } from "./source.js";

export interface LoadProgress {
  /** The file being read. */
  file: string;
  /** Tensor bytes read so far and in all. */
  loadedBytes: number;
  totalBytes: number;
  /** Tensors loaded so far and in all. */
  loadedTensors: number;
  totalTensors: number;
}

/**
 * Options of {@link loadDecoder}. `signal` stops the load (a pending HTTP request is cancelled, otherwise between two
 * tensors); `timeout` (ms, default none) limits the whole load. Either rejects with `ShiraError` code `"ABORTED"`
 * (a timeout: `... timed out after N ms`, `details.reason === "timeout"`), after freeing the partly built model
 * and closing every open file.
 */
export interface FromPretrainedOptions extends LoadSignalOptions {
  onProgress?: (p: LoadProgress) => void;
  /**
   * Storage dtype of the base weights in wasm memory. `"bf16"` / `"f16"` keep every dense layer of the layers
   * (GPT-2's Conv1D layers too), the token embedding and the head (tied: one shared table) half-precision, in about
   * half the memory; norms, biases, learned positions and OPT's `project_in`/`project_out` stay f32. Logits equal
   * those of the f32 model holding the rounded weights bit for bit.
   *
   * Default: the dtype the checkpoint stores, read from the safetensors headers of every shard: `"bf16"` when the
   * weight matrices that a half model keeps half-precision (dense layers, token embedding, untied head) are all
   * BF16, `"f16"` when they are all F16, else `"f32"` (an F32 checkpoint, or matrices of mixed dtypes, which only
   * f32 holds exactly). Norms and biases stored in another dtype do not change the choice, and neither does
   * `config.json`'s `torch_dtype`. The chosen dtype is the model's {@link DecoderModel.dtype}. Pass `dtype: "f32"`
   * to widen a half checkpoint (e.g. to train its own weights).
   */
  dtype?: ModelDtype;
}

const INDEX_NAME = "model.safetensors.index.json";
const WEIGHTS_NAME = "model.safetensors";

/** transformers' `GenerationConfig` fields we use, camelCased (`max_new_tokens` → `maxNewTokens`). */
function camelGenerationConfig(raw: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (k.startsWith("_") || k === "transformers_version") continue;
    out[k.replace(/_([a-z])/g, (_, ch: string) => ch.toUpperCase())] = v;
  }
  return out;
}

function parseJson(text: string, file: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new FormatError("CONFIG_INVALID", `${file} is not valid JSON: ${(e as Error).message}`, { file });
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new FormatError("CONFIG_INVALID", `${file} must hold a JSON object`, { file });
  return v as Record<string, unknown>;
}

interface Shard {
  file: string;
  st: SafetensorsSource;
}

/** Where `name` of `files` lives, for messages (a path, a URL, or the bare name for a file map). */
function locate(files: CheckpointFiles, name: string): string {
  if (files.where === "files") return name;
  return /[/\\]$/.test(files.where) ? files.where + name : `${files.where}/${name}`;
}

/** Opens one weights file's header, naming the file in a format error and closing the file if the header is bad. */
async function openShard(files: CheckpointFiles, file: string): Promise<SafetensorsSource> {
  const src = await files.open(file);
  try {
    return await openSafetensors(src);
  } catch (e) {
    await src.close?.().catch(() => undefined);
    const where = locate(files, file);
    if (e instanceof ShiraError && e.code !== "ABORTED" && !e.message.includes(where)) {
      const Cls = e.constructor as new (code: ShiraError["code"], message: string, details: Record<string, unknown>) => ShiraError;
      throw new Cls(e.code, `${where}: ${e.message}`, { file, where: files.where, ...e.details });
    }
    throw e;
  }
}

/** Opens the weight files (one, or the shards an index names), headers only. */
async function openWeights(files: CheckpointFiles, signal?: AbortSignal): Promise<{ shards: Shard[]; keyFile: Map<string, Shard> }> {
  const indexText = await files.text(INDEX_NAME);
  const shards: Shard[] = [];
  const keyFile = new Map<string, Shard>();
  try {
    if (indexText !== null) {
      const index = parseJson(indexText, INDEX_NAME);
      const map = index["weight_map"];
      if (typeof map !== "object" || map === null || Array.isArray(map)) throw new FormatError("CONFIG_INVALID", `${INDEX_NAME}: "weight_map" must be an object`, { file: INDEX_NAME });
      const byFile = new Map<string, string[]>();
      for (const [key, file] of Object.entries(map as Record<string, unknown>)) {
        if (typeof file !== "string" || file.includes("..") || file.startsWith("/")) throw new FormatError("CONFIG_INVALID", `${INDEX_NAME}: bad file name ${JSON.stringify(file)} for "${key}"`, { file: INDEX_NAME, key });
        if (!byFile.has(file)) byFile.set(file, []);
        byFile.get(file)!.push(key);
      }
      for (const [file, keys] of byFile) {
        throwIfAborted(signal);
        const st = await openShard(files, file);
        const shard = { file, st };
        shards.push(shard);
        for (const key of keys) {
          if (!st.has(key)) throw new FormatError("SAFETENSORS_MISSING", `${INDEX_NAME} maps "${key}" to ${file}, which does not contain it`, { file, key });
          keyFile.set(key, shard);
        }
      }
    } else {
      throwIfAborted(signal);
      const st = await openShard(files, WEIGHTS_NAME);
      const shard = { file: WEIGHTS_NAME, st };
      shards.push(shard);
      for (const key of st.names()) keyFile.set(key, shard);
    }
  } catch (e) {
    for (const s of shards) await s.st.close().catch(() => undefined);
    throw e;
  }
  return { shards, keyFile };
}

/**
 * Maps checkpoint keys to the model's state-dict names: files on the Hub sometimes omit the base model's prefix
 * (`h.0.attn.c_attn.weight` for `transformer.h.0.attn.c_attn.weight`); old non-persistent buffers are skipped.
 */
function planKeys(model: DecoderModel, keys: string[]): { plan: Map<string, string>; errors: string[] } {
  const own = modelTensors(model);
  const root = model.family.root;
  const tied = model.config.tieWordEmbeddings;
  const plan = new Map<string, string>();
  const unexpected: string[] = [];
  for (const key of keys) {
    if (model.family.ignoreKeys.some((re) => re.test(key))) continue;
    const target = targetOf(key, root, (n) => Object.prototype.hasOwnProperty.call(own, n));
    if (target === null) {
      unexpected.push(`${key} (nor ${root}.${key})`);
      continue;
    }
    if (tied && target === "lm_head.weight") continue; // the head is the embedding; a stored copy is ignored, as transformers ties it
    plan.set(target, key);
  }
  const loaded = new Set(plan.keys());
  const missing = Object.keys(own).filter((k) => !loaded.has(k) && !(tied && k === "lm_head.weight"));
  const errors: string[] = [];
  if (missing.length) errors.push(`missing tensors: ${missing.join(", ")}`);
  if (unexpected.length) errors.push(`unexpected tensors: ${unexpected.join(", ")}`);
  return { plan, errors };
}

/**
 * The model tensor a checkpoint key fills: the key itself, or the key under the root's prefixes from the longest
 * (`model.decoder.`, `model.`: the Hub's opt-125m and gpt2 files omit them); null when none is a model tensor.
 */
function targetOf(key: string, root: string, has: (name: string) => boolean): string | null {
  const parts = root.split(".");
  for (const p of ["", ...parts.map((_, i) => parts.slice(0, parts.length - i).join(".") + ".")]) if (has(p + key)) return p + key;
  return null;
}

/**
 * The default `dtype` of a checkpoint (see {@link FromPretrainedOptions.dtype}): the safetensors dtype of the weight
 * matrices a half model keeps half-precision (the dense layers of the layers, the token embedding, an untied head),
 * over every shard, when they all share one half dtype ("BF16" -> `"bf16"`, "F16" -> `"f16"`); otherwise `"f32"`
 * (F32 matrices, or matrices of mixed dtypes, which only f32 holds without rounding). Norms, biases and learned
 * positions (always f32 in memory) and `config.json`'s `torch_dtype` do not take part.
 */
export function storedDtype(config: DecoderConfig, family: DecoderFamily, keys: Iterable<[string, string]>): ModelDtype {
  const seen = new Set<string>();
  for (const [key, dtype] of keys) {
    if (family.ignoreKeys.some((re) => re.test(key))) continue;
    if (targetOf(key, family.root, (n) => isHalfTensorName(n, config, family)) !== null) seen.add(dtype);
  }
  if (seen.size !== 1) return "f32";
  const [only] = seen;
  return only === "BF16" ? "bf16" : only === "F16" ? "f16" : "f32";
}

/** Every weight of the model by name: the f32 tensors and the half-precision ones. */
function modelTensors(model: DecoderModel): Record<string, Tensor | HalfTensor> {
  return Object.assign(Object.create(null) as Record<string, Tensor | HalfTensor>, model.stateDict(), model.halfStateDict());
}

const HALF_STORED = { bf16: "BF16", f16: "F16" } as const;

/** Fills a half weight from a checkpoint tensor: its raw bits when stored in the same dtype, else rounded from f32. */
async function loadHalf(st: SafetensorsSource, key: string, w: HalfTensor): Promise<void> {
  if (st.entry(key).dtype === HALF_STORED[w.dtype] && w instanceof HalfWeight) w.setBytes((await st.get(key)).bytes);
  else w.setFromF32(await st.f32(key));
}

/** Loads a checkpoint into a new model (see the module comment and {@link FromPretrainedOptions}). */
export async function loadDecoder(source: CheckpointSource, opts: FromPretrainedOptions = {}): Promise<DecoderModel> {
  if (opts === null || typeof opts !== "object") throw new ConfigError("CONFIG_INVALID", `fromPretrained: opts must be an object, got ${opts === null ? "null" : typeof opts}`, { argument: "opts" });
  checkModelDtype(opts.dtype, "fromPretrained");
  if (typeof source !== "string" && (source === null || typeof source !== "object")) {
    throw new ConfigError("CONFIG_INVALID", `fromPretrained: source must be a folder path, a URL, a record or Map of files, or a list of Files; got ${source === null ? "null" : typeof source}`, {
      argument: "source",
    });
  }
  // one signal for the whole load: the caller's, the timeout, and our own cancel on failure
  return new LoadScope(opts, "fromPretrained").run((scope) => load(source, opts, scope.signal));
}

async function load(source: CheckpointSource, opts: FromPretrainedOptions, signal: AbortSignal): Promise<DecoderModel> {
  const files = await openCheckpoint(source, { signal });
  const cfgText = await files.text("config.json");
  if (cfgText === null) throw new ConfigError("CONFIG_INVALID", `${files.where}: no config.json (is this a Hugging Face checkpoint folder?)`, { where: files.where });
  const rawConfig = parseJson(cfgText, "config.json");
  // without a dtype the size check first assumes the smaller half weights; it runs again once the dtype is known
  const config: DecoderConfig = parseConfig(rawConfig, { bytesPerWeight: opts.dtype === "f32" ? 4 : 2 });
  const family = FAMILIES.get(config.modelType);
  if (!family) throw new ConfigError("MODEL_UNSUPPORTED", `model_type "${config.modelType}" is not supported; supported: ${SUPPORTED_MODEL_TYPES.join(", ")}`);
  const genText = await files.text("generation_config.json");
  const generationConfig = genText !== null ? camelGenerationConfig(parseJson(genText, "generation_config.json")) : {};
  throwIfAborted(signal);
  const { shards, keyFile } = await openWeights(files, signal);
  let model: DecoderModel | null = null;
  try {
    // the default dtype from the headers; an f32 model must pass the size check with 4 bytes per weight
    const dtype = opts.dtype ?? storedDtype(config, family, [...keyFile].map(([key, shard]) => [key, shard.st.entry(key).dtype] as [string, string]));
    if (opts.dtype === undefined && dtype === "f32") parseConfig(rawConfig, { bytesPerWeight: 4 });
    // a config that describes far more weights than the files hold cannot match them: refuse before allocating the
    // model (a near miss goes on to the check below, which names every missing, unexpected and mis-shaped tensor)
    let fileElements = 0;
    for (const [key, shard] of keyFile) fileElements += shard.st.entry(key).shape.reduce((a, b) => a * b, 1);
    const need = minParameterCount(config);
    if (need > 2 * fileElements) {
      throw new ShapeError(
        "STATE_DICT_MISMATCH",
        `${files.where}: config.json describes a ${config.modelType} model of at least ${need.toLocaleString("en-US")} weights (${config.numLayers} layers, hidden size ${config.hiddenSize}), but the checkpoint holds ${fileElements.toLocaleString("en-US")}`,
        { weights: need, fileElements },
      );
    }
    model = new DecoderModel(config, family, { dtype });
    model.generationConfig = generationConfig;
    const { plan, errors } = planKeys(model, [...keyFile.keys()]);
    const own = modelTensors(model);
    const misShaped: string[] = [];
    for (const [target, key] of plan) {
      const e = keyFile.get(key)!.st.entry(key);
      const want = own[target].shape;
      if (e.shape.length !== want.length || e.shape.some((d, i) => d !== want[i])) misShaped.push(`${key}: file [${e.shape.join(", ")}], model [${want.join(", ")}]`);
      if (!["F32", "F16", "BF16"].includes(e.dtype)) misShaped.push(`${key}: dtype ${e.dtype} (expected F32, F16 or BF16)`);
    }
    if (misShaped.length) errors.push(`mis-shaped tensors: ${misShaped.join("; ")}`);
    if (errors.length) {
      throw new ShapeError("STATE_DICT_MISMATCH", `${files.where}: the checkpoint does not match ${family.architecture} (${config.modelType}): ${errors.join(" | ")}`, { errors });
    }
    let totalBytes = 0;
    for (const [, key] of plan) totalBytes += keyFile.get(key)!.st.entry(key).byteLength;
    let loadedBytes = 0;
    let loadedTensors = 0;
    // shard by shard, tensor by tensor in file order (sequential reads)
    for (const shard of shards) {
      const keys = [...plan.entries()].filter(([, key]) => keyFile.get(key) === shard);
      keys.sort((a, b) => shard.st.entry(a[1]).dataOffsets[0] - shard.st.entry(b[1]).dataOffsets[0]);
      for (const [target, key] of keys) {
        throwIfAborted(signal);
        const t = own[target];
        if (t instanceof Tensor) t.data.set(await shard.st.f32(key));
        else await loadHalf(shard.st, key, t);
        loadedBytes += shard.st.entry(key).byteLength;
        loadedTensors++;
        opts.onProgress?.({ file: shard.file, loadedBytes, totalBytes, loadedTensors, totalTensors: plan.size });
      }
    }
    return model;
  } catch (e) {
    model?.dispose();
    throw e;
  } finally {
    for (const s of shards) await s.st.close().catch(() => undefined);
  }
}
