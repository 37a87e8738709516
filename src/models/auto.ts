/**
 * `AutoModelForCausalLM`: the entry point transformers and transformers.js users know. Dispatches on
 * `config.json`'s `model_type` (opt, gpt2, llama, mistral, qwen2).
 *
 * ```ts
 * import { AutoModelForCausalLM, AutoTokenizer } from "shira-wasm";
 * const lm = await AutoModelForCausalLM.fromPretrained("models/SmolLM-135M");      // a folder (Node), a URL, or files
 * const tok = await AutoTokenizer.fromPretrained("models/SmolLM-135M");
 * const { sequences } = await lm.generate([tok.encode("Hello")], { maxNewTokens: 20 });
 * console.log(tok.decode(sequences[0]));
 * ```
 */
import { parseConfig, SUPPORTED_MODEL_TYPES } from "./config.js";
import { DecoderModel, type DecoderModelOptions } from "./decoder.js";
import { FAMILIES } from "./families/index.js";
import { loadDecoder, type FromPretrainedOptions } from "./load.js";
import type { CheckpointSource } from "./source.js";

export class AutoModelForCausalLM {
  /** The `model_type`s that load. */
  static readonly supportedModelTypes: readonly string[] = SUPPORTED_MODEL_TYPES;

  /**
   * Loads a checkpoint folder (see {@link loadDecoder}). The weights keep the checkpoint's dtype unless `dtype` says
   * otherwise (a BF16 checkpoint loads as `"bf16"`; `model.dtype` tells which one was chosen).
   */
  static fromPretrained(source: CheckpointSource, opts: FromPretrainedOptions = {}): Promise<DecoderModel> {
    return loadDecoder(source, opts);
  }

  /**
   * A model with zeroed weights from a `config.json` object (for tests and for training from scratch); `dtype` as
   * in {@link FromPretrainedOptions}, default `"f32"` (there is no checkpoint to take it from; `torch_dtype` is not
   * read).
   */
  static fromConfig(config: Record<string, unknown>, opts: DecoderModelOptions = {}): DecoderModel {
    const c = parseConfig(config, { bytesPerWeight: opts.dtype === "bf16" || opts.dtype === "f16" ? 2 : 4 });
    return new DecoderModel(c, FAMILIES.get(c.modelType)!, opts);
  }
}
