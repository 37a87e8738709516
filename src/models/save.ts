/**
 * Writing a decoder model as a Hugging Face checkpoint folder (`save_pretrained`): `config.json`,
 * `generation_config.json` and `model.safetensors` with transformers' tensor names, so the folder loads with
 * `AutoModelForCausalLM.fromPretrained` here and in transformers.
 *
 * ```ts
 * const files = saveModelFiles(lm, { dtype: "BF16" });   // { "config.json": "...", "model.safetensors": Uint8Array, ... }
 * await lm.savePretrained("out/tiny-llama");              // Node: the same files in a folder
 * ```
 */
import { ConfigError, StateError } from "../errors.js";
import { fileSystem } from "../io/platform.js";
import { writeSafetensors, type TensorInput } from "../io/safetensors.js";
import type { DecoderModel } from "./decoder.js";

export interface SaveModelOptions {
  /**
   * Stored dtype of the weights (default: the model's own, `"F32"`, or `"BF16"` / `"F16"` for a model loaded with a
   * half `dtype`); F16/BF16 round f32 values to nearest even. Half-precision weights saved in their own dtype are
   * written bit for bit (no f32 round trip).
   */
  dtype?: "F32" | "F16" | "BF16";
}

const STORED = { f32: "F32", bf16: "BF16", f16: "F16" } as const;

const TORCH_DTYPE = { F32: "float32", F16: "float16", BF16: "bfloat16" } as const;

/** Names an adapter layer gives its tensors: a model with adapters injected is not a plain checkpoint. */
const ADAPTER_KEY = /(^|\.)(base_layer|shira_|lora_|modules_to_save|original_module)/;

function snake(s: string): string {
  return s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/**
 * The files of a checkpoint folder in memory. Tied heads are not stored (transformers drops `lm_head.weight` when
 * `tie_word_embeddings` is set). Refuses (`ADAPTER_STATE`) while adapter layers are injected: merge and unload them
 * first (`mergeAndUnload()`), or save the adapter with its own `savePretrained`.
 */
export function saveModelFiles(model: DecoderModel, opts: SaveModelOptions = {}): Record<string, string | Uint8Array> {
  const dtype = opts.dtype ?? STORED[model.dtype];
  if (!(dtype in TORCH_DTYPE)) throw new ConfigError("CONFIG_INVALID", `saveModelFiles: dtype must be F32, F16 or BF16, got ${JSON.stringify(dtype)}`, { field: "dtype", value: dtype });
  const sd = model.stateDict();
  const half = model.halfStateDict();
  const bad = [...Object.keys(sd), ...Object.keys(half)].filter((k) => ADAPTER_KEY.test(k));
  if (bad.length) {
    throw new StateError("ADAPTER_STATE", `saveModelFiles: adapter layers are injected (${bad.slice(0, 3).join(", ")}${bad.length > 3 ? ", …" : ""}); merge and unload them first`, { tensor: bad[0] });
  }
  const c = model.config;
  const tensors = new Map<string, TensorInput>();
  for (const [name, t] of Object.entries(sd)) {
    if (c.tieWordEmbeddings && name === "lm_head.weight") continue;
    tensors.set(name, { dtype, shape: t.shape, data: t.data.slice() });
  }
  for (const [name, t] of Object.entries(half)) {
    if (c.tieWordEmbeddings && name === "lm_head.weight") continue;
    // the same dtype: the bits as they are; otherwise the exact f32 values, rounded by the writer
    tensors.set(name, { dtype, shape: [...t.shape], data: dtype === STORED[t.dtype] ? t.view().slice() : t.toFloat32() });
  }
  const config: Record<string, unknown> = { ...c.raw, architectures: [model.family.architecture], model_type: c.modelType, torch_dtype: TORCH_DTYPE[dtype] };
  const gen: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(model.generationConfig)) gen[snake(k)] = v;
  for (const [k, v] of [["bos_token_id", c.bosTokenId], ["eos_token_id", c.eosTokenId], ["pad_token_id", c.padTokenId]] as const) if (v !== null && !(k in gen)) gen[k] = v;
  return {
    "config.json": JSON.stringify(config, null, 2) + "\n",
    "generation_config.json": JSON.stringify(gen, null, 2) + "\n",
    "model.safetensors": writeSafetensors(tensors, { format: "pt" }),
  };
}

/** Writes {@link saveModelFiles} into `dir` (Node); returns the paths written. */
export async function saveModelToDir(model: DecoderModel, dir: string, opts: SaveModelOptions = {}): Promise<string[]> {
  const fs = fileSystem("savePretrained");
  const files = saveModelFiles(model, opts); // serialize before writing anything
  const out: string[] = [];
  for (const [name, data] of Object.entries(files)) {
    const p = fs.join(dir, name);
    await fs.writeFile(p, typeof data === "string" ? new TextEncoder().encode(data) : data);
    out.push(p);
  }
  return out;
}
