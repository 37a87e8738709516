/**
 * A decoder family as data: which norm, positions, MLP and dense-layer kind it uses, and the Hugging Face name of
 * every module role (llama.cpp's architecture tables, with HF's names instead of GGUF's). The decoder core
 * (`decoder.ts`) builds the module tree and runs the layer loop from this description; a family file says only
 * what differs.
 */
import type { DecoderConfig } from "./config.js";

/** Per-layer module roles. `qkv` is GPT-2's fused `c_attn` (q, k and v side by side in its output). */
export type LayerRole = "attnNorm" | "q" | "k" | "v" | "qkv" | "o" | "mlpNorm" | "gate" | "up" | "down";
/** Model-level roles, relative to the family's root (`model`, `model.decoder`, `transformer`). */
export type GlobalRole = "embed" | "pos" | "projOut" | "projIn" | "layers" | "finalNorm";

export interface DecoderFamily {
  /** `model_type`s served by this family file. */
  modelTypes: readonly string[];
  /** transformers' class name written in `config.json` `architectures`. */
  architecture: string;
  /** Dotted path of the base model inside `…ForCausalLM` (checkpoints on the Hub sometimes omit it). */
  root: string;
  /** Model-level modules in HF registration order, with their names under `root`. */
  globals: readonly (readonly [GlobalRole, string])[];
  /** Layer modules in HF registration order, as dotted paths inside one layer (`self_attn.q_proj`, `fc1`). */
  layer: readonly (readonly [LayerRole, string])[];
  norm: "rms" | "layer";
  position: "rope" | "learned";
  /** Rows skipped at the start of a learned position table (OPT: 2). */
  positionOffset: number;
  /** Position of a padding token (HF: llama-style `masked_fill(mask == 0, 1)`; OPT's `cumsum·mask − 1` gives −1). */
  padPosition: number;
  mlp: "gated" | "plain";
  /** `conv1d`: GPT-2's `Conv1D` layers (weights stored `[in, out]`). */
  linear: "linear" | "conv1d";
  /** OPT scales q by `headDim^-0.5` after `q_proj` instead of scaling the scores. */
  scaleQueryFirst: boolean;
  /**
   * Positions when the forward gets none: OPT derives them from the attention mask (`cumsum(mask)·mask − 1`), the
   * others count 0, 1, 2, … (transformers' `cache_position`). Training uses this rule; generation always counts real
   * tokens.
   */
  positionsFromMask: boolean;
  /** Checkpoint keys that are not parameters (old non-persistent buffers) and are skipped on load. */
  ignoreKeys: readonly RegExp[];
  /** PEFT's default SHiRA/LoRA targets for this model type. */
  defaultTargets: readonly string[];
  /** Whether the model has a module for a role given its config (OPT's optional project_in/out, final norm). */
  has?(role: GlobalRole, config: DecoderConfig): boolean;
}
