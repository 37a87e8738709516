/**
 * `DecoderConfig`: one normalized configuration for every supported decoder family, parsed from a Hugging Face
 * `config.json` with transformers' defaults (v4.44). Derived values (`headDim`, `numKvHeads`, the RoPE kind) are
 * computed here once, never in the layers.
 *
 * ```ts
 * const cfg = parseConfig(JSON.parse(configJsonText));
 * cfg.modelType;   // "qwen2"
 * cfg.headDim;     // 64
 * ```
 */
import { ConfigError, RuntimeError } from "../errors.js";

/** wasm32's address space: no model whose weights need more can load. */
const MAX_MODEL_BYTES = 2 ** 32;

/** RoPE frequency rule (`rope_scaling.rope_type` of transformers' `ROPE_INIT_FUNCTIONS`). */
export interface RopeConfig {
  type: "default" | "linear" | "dynamic" | "llama3";
  theta: number;
  /** Rotated dimensions (≤ headDim; `partial_rotary_factor`). */
  dim: number;
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositions: number;
}

export interface DecoderConfig {
  modelType: string;
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  maxPositions: number;
  normEps: number;
  /** RoPE settings (null for learned positions: OPT, GPT-2). */
  rope: RopeConfig | null;
  /** Mistral's sliding attention window (null: full causal attention). */
  slidingWindow: number | null;
  tieWordEmbeddings: boolean;
  /** Biases of the attention projections q/k/v and o. */
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  /** OPT: `do_layer_norm_before` (false: post-LN and no final layer norm). */
  preNorm: boolean;
  /** OPT: `word_embed_proj_dim` (the embedding width; project_in/project_out when it differs from hiddenSize). */
  wordEmbedProjDim: number;
  /** Activation of the MLP (`silu` gated for Llama-like, `relu` OPT, `gelu_new` GPT-2). */
  hiddenAct: string;
  /** GPT-2: divide scores by (layer index + 1) as well. */
  scaleAttnByInverseLayerIdx: boolean;
  /** GPT-2: `scale_attn_weights` (false: no 1/√d scaling). */
  scaleAttnWeights: boolean;
  /** OPT: layer norms have weights and biases. */
  normAffine: boolean;
  /** OPT: `_remove_final_layer_norm`. */
  removeFinalLayerNorm: boolean;
  bosTokenId: number | null;
  eosTokenId: number | number[] | null;
  padTokenId: number | null;
  /** The raw `config.json` object. */
  raw: Record<string, unknown>;
}

function num(raw: Record<string, unknown>, key: string, dflt?: number): number {
  const v = raw[key];
  if (v === undefined || v === null) {
    if (dflt !== undefined) return dflt;
    throw new ConfigError("CONFIG_INVALID", `config.json: missing "${key}"`, { field: key });
  }
  if (typeof v !== "number" || !Number.isFinite(v)) throw new ConfigError("CONFIG_INVALID", `config.json: "${key}" must be a number, got ${JSON.stringify(v)}`, { field: key, value: v });
  return v;
}

function int(raw: Record<string, unknown>, key: string, dflt?: number, min = 1): number {
  const v = num(raw, key, dflt);
  if (!Number.isSafeInteger(v) || v < min) throw new ConfigError("CONFIG_INVALID", `config.json: "${key}" must be an integer >= ${min}, got ${v}`, { field: key, value: v });
  return v;
}

function bool(raw: Record<string, unknown>, key: string, dflt: boolean): boolean {
  const v = raw[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== "boolean") throw new ConfigError("CONFIG_INVALID", `config.json: "${key}" must be true or false, got ${JSON.stringify(v)}`, { field: key, value: v });
  return v;
}

function tokenId(raw: Record<string, unknown>, key: string): number | null {
  const v = raw[key];
  if (v === undefined || v === null) return null;
  if (typeof v === "number" && Number.isSafeInteger(v)) return v;
  if (Array.isArray(v) && v.length && typeof v[0] === "number") return v[0] as number;
  throw new ConfigError("CONFIG_INVALID", `config.json: "${key}" must be a token id, got ${JSON.stringify(v)}`, { field: key, value: v });
}

function eosIds(raw: Record<string, unknown>): number | number[] | null {
  const v = raw["eos_token_id"];
  if (v === undefined || v === null) return null;
  if (typeof v === "number" && Number.isSafeInteger(v)) return v;
  if (Array.isArray(v) && v.every((x) => typeof x === "number" && Number.isSafeInteger(x))) return v as number[];
  throw new ConfigError("CONFIG_INVALID", `config.json: "eos_token_id" must be a token id or a list of them, got ${JSON.stringify(v)}`, { field: "eos_token_id", value: v });
}

const ROPE_TYPES = ["default", "linear", "dynamic", "llama3"] as const;

/** transformers' `rope_config_validation` + the fields each `ROPE_INIT_FUNCTIONS` entry reads. */
function parseRope(raw: Record<string, unknown>, headDim: number, maxPositions: number, dfltTheta: number): RopeConfig {
  const theta = num(raw, "rope_theta", dfltTheta);
  if (!(theta > 0)) throw new ConfigError("CONFIG_INVALID", `config.json: "rope_theta" must be a number > 0, got ${theta}`, { field: "rope_theta", value: theta });
  const partial = num(raw, "partial_rotary_factor", 1);
  if (!(partial > 0 && partial <= 1)) {
    throw new ConfigError("CONFIG_INVALID", `config.json: "partial_rotary_factor" must be in (0, 1], got ${partial}`, { field: "partial_rotary_factor", value: partial });
  }
  const dim = Math.floor(headDim * partial);
  // the cos/sin tables hold dim / 2 frequencies and rotate pairs of dimensions
  if (dim < 2 || dim % 2 !== 0) {
    const field = raw["partial_rotary_factor"] === undefined || raw["partial_rotary_factor"] === null ? "head_dim" : "partial_rotary_factor";
    throw new ConfigError("CONFIG_INVALID", `config.json: RoPE rotates an even number (>= 2) of dimensions, but head_dim ${headDim} x partial_rotary_factor ${partial} gives ${dim}`, {
      field,
      value: dim,
    });
  }
  const rs = raw["rope_scaling"];
  const rope: RopeConfig = { type: "default", theta, dim, factor: 1, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: maxPositions };
  if (rs === undefined || rs === null) return rope;
  if (typeof rs !== "object" || Array.isArray(rs)) throw new ConfigError("CONFIG_INVALID", `config.json: "rope_scaling" must be an object, got ${JSON.stringify(rs)}`, { field: "rope_scaling" });
  const r = rs as Record<string, unknown>;
  const type = (r["rope_type"] ?? r["type"] ?? "default") as string;
  if (!(ROPE_TYPES as readonly string[]).includes(type)) {
    throw new ConfigError("MODEL_UNSUPPORTED", `config.json: rope_scaling type "${type}" is not supported (supported: ${ROPE_TYPES.join(", ")})`, { field: "rope_scaling.rope_type", value: type });
  }
  rope.type = type as RopeConfig["type"];
  if (type === "default") return rope;
  const factor = r["factor"];
  if (typeof factor !== "number" || !(factor >= 1)) throw new ConfigError("CONFIG_INVALID", `config.json: rope_scaling.factor must be a number >= 1, got ${JSON.stringify(factor)}`, { field: "rope_scaling.factor", value: factor });
  rope.factor = factor;
  if (type === "llama3") {
    for (const k of ["low_freq_factor", "high_freq_factor", "original_max_position_embeddings"]) {
      if (typeof r[k] !== "number") throw new ConfigError("CONFIG_INVALID", `config.json: rope_scaling.${k} is required for llama3 RoPE`, { field: `rope_scaling.${k}` });
    }
    rope.lowFreqFactor = r["low_freq_factor"] as number;
    rope.highFreqFactor = r["high_freq_factor"] as number;
    rope.originalMaxPositions = r["original_max_position_embeddings"] as number;
    if (!(rope.highFreqFactor > rope.lowFreqFactor)) {
      throw new ConfigError("CONFIG_INVALID", `config.json: rope_scaling.high_freq_factor (${rope.highFreqFactor}) must exceed low_freq_factor (${rope.lowFreqFactor})`, { field: "rope_scaling.high_freq_factor" });
    }
  }
  return rope;
}

/** How each family spells its hyperparameters (transformers.js's `getNormalizedConfig`, as a table). */
interface KeyMap {
  vocab: string;
  hidden: string;
  layers: string;
  heads: string;
  kvHeads: string | null;
  intermediate: string | null;
  positions: string;
  eps: string | null;
}

const LLAMA_KEYS: KeyMap = {
  vocab: "vocab_size",
  hidden: "hidden_size",
  layers: "num_hidden_layers",
  heads: "num_attention_heads",
  kvHeads: "num_key_value_heads",
  intermediate: "intermediate_size",
  positions: "max_position_embeddings",
  eps: "rms_norm_eps",
};

const KEYS: Record<string, KeyMap> = {
  llama: LLAMA_KEYS,
  mistral: LLAMA_KEYS,
  qwen2: LLAMA_KEYS,
  opt: { vocab: "vocab_size", hidden: "hidden_size", layers: "num_hidden_layers", heads: "num_attention_heads", kvHeads: null, intermediate: "ffn_dim", positions: "max_position_embeddings", eps: null },
  gpt2: { vocab: "vocab_size", hidden: "n_embd", layers: "n_layer", heads: "n_head", kvHeads: null, intermediate: "n_inner", positions: "n_positions", eps: "layer_norm_epsilon" },
};

/** The `model_type`s this library runs. */
export const SUPPORTED_MODEL_TYPES: readonly string[] = Object.freeze(Object.keys(KEYS));

/**
 * Parses a `config.json` object into a {@link DecoderConfig}, with transformers' defaults for absent keys. Throws
 * `ConfigError` naming the field and value for anything invalid, and `MODEL_UNSUPPORTED` for an unknown
 * `model_type` (listing the supported ones) or a feature this library does not run.
 */
export function parseConfig(raw: unknown, opts: { bytesPerWeight?: 2 | 4 } = {}): DecoderConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new ConfigError("CONFIG_INVALID", "config.json must hold a JSON object");
  const r = raw as Record<string, unknown>;
  const modelType = r["model_type"];
  if (typeof modelType !== "string" || !Object.prototype.hasOwnProperty.call(KEYS, modelType)) {
    throw new ConfigError("MODEL_UNSUPPORTED", `model_type ${JSON.stringify(modelType)} is not supported; supported model types: ${SUPPORTED_MODEL_TYPES.join(", ")}`, {
      field: "model_type",
      value: modelType,
      supported: SUPPORTED_MODEL_TYPES,
    });
  }
  const km = KEYS[modelType];
  const isGpt2 = modelType === "gpt2";
  const isOpt = modelType === "opt";
  const hiddenSize = int(r, km.hidden, isGpt2 ? 768 : undefined);
  const numHeads = int(r, km.heads, isGpt2 ? 12 : undefined);
  const numLayers = int(r, km.layers, isGpt2 ? 12 : undefined);
  const numKvHeads = km.kvHeads ? int(r, km.kvHeads, numHeads) : numHeads;
  const explicitHeadDim = r["head_dim"];
  const headDim = typeof explicitHeadDim === "number" ? int(r, "head_dim") : hiddenSize / numHeads;
  if (!Number.isSafeInteger(headDim)) throw new ConfigError("CONFIG_INVALID", `config.json: ${km.hidden} ${hiddenSize} is not divisible by ${km.heads} ${numHeads}`, { field: km.hidden });
  if (numHeads % numKvHeads !== 0) {
    throw new ConfigError("CONFIG_INVALID", `config.json: num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`, { field: "num_key_value_heads", value: numKvHeads });
  }
  const maxPositions = int(r, km.positions, isGpt2 ? 1024 : 2048);
  const intermediateSize = km.intermediate ? int(r, km.intermediate, isGpt2 ? 4 * hiddenSize : undefined) : 4 * hiddenSize;
  const vocabSize = int(r, km.vocab, isGpt2 ? 50257 : undefined);
  const ropeFamily = !isGpt2 && !isOpt;
  if (modelType === "qwen2" && r["use_sliding_window"] === true) {
    throw new ConfigError("MODEL_UNSUPPORTED", `config.json: qwen2 with use_sliding_window: true is not supported yet`, { field: "use_sliding_window", value: true });
  }
  let slidingWindow: number | null = null;
  if (modelType === "mistral" && r["sliding_window"] !== null && r["sliding_window"] !== undefined) slidingWindow = int(r, "sliding_window");
  const act = typeof r["hidden_act"] === "string" ? (r["hidden_act"] as string) : typeof r["activation_function"] === "string" ? (r["activation_function"] as string) : isGpt2 ? "gelu_new" : isOpt ? "relu" : "silu";
  const supportedAct = isGpt2 ? ["gelu_new", "gelu_pytorch_tanh"] : isOpt ? ["relu"] : ["silu"];
  if (!supportedAct.includes(act)) {
    throw new ConfigError("MODEL_UNSUPPORTED", `config.json: activation ${JSON.stringify(act)} is not supported for ${modelType} (supported: ${supportedAct.join(", ")})`, { field: "hidden_act", value: act });
  }
  const qkvBias = isGpt2 || (isOpt ? bool(r, "enable_bias", true) : modelType === "qwen2" ? true : bool(r, "attention_bias", false));
  const cfg: DecoderConfig = {
    modelType,
    vocabSize,
    hiddenSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    intermediateSize,
    maxPositions,
    normEps: km.eps ? num(r, km.eps, isGpt2 ? 1e-5 : 1e-6) : 1e-5,
    rope: ropeFamily ? parseRope(r, headDim, maxPositions, 10000) : null,
    slidingWindow,
    // transformers' defaults: Llama/Mistral/Qwen2 configs say False; OPT and GPT-2 tie
    tieWordEmbeddings: bool(r, "tie_word_embeddings", isGpt2 || isOpt),
    qkvBias,
    oBias: isGpt2 || (isOpt ? bool(r, "enable_bias", true) : modelType === "qwen2" ? false : bool(r, "attention_bias", false)),
    mlpBias: isGpt2 || (isOpt ? bool(r, "enable_bias", true) : modelType === "llama" ? bool(r, "mlp_bias", false) : false),
    preNorm: isOpt ? bool(r, "do_layer_norm_before", true) : true,
    wordEmbedProjDim: isOpt ? int(r, "word_embed_proj_dim", hiddenSize) : hiddenSize,
    hiddenAct: act,
    scaleAttnByInverseLayerIdx: isGpt2 ? bool(r, "scale_attn_by_inverse_layer_idx", false) : false,
    scaleAttnWeights: isGpt2 ? bool(r, "scale_attn_weights", true) : true,
    normAffine: isOpt ? bool(r, "layer_norm_elementwise_affine", true) : true,
    removeFinalLayerNorm: isOpt ? bool(r, "_remove_final_layer_norm", false) : false,
    bosTokenId: tokenId(r, "bos_token_id"),
    eosTokenId: eosIds(r),
    padTokenId: tokenId(r, "pad_token_id"),
    raw: r,
  };
  // A model that cannot fit in wasm32's 4 GiB is refused here, before anything is allocated (otherwise e.g.
  // num_hidden_layers: 1e9 would allocate layer after layer until the heap is exhausted, seconds later and with the
  // memory grown to 4 GiB for good).
  // (half-precision weights take 2 bytes each: `bytesPerWeight: 2`)
  const params = minParameterCount(cfg);
  const per = opts.bytesPerWeight ?? 4;
  if (params * per > MAX_MODEL_BYTES) {
    throw new RuntimeError(
      "OUT_OF_MEMORY",
      `config.json: a ${modelType} model of this size needs at least ${((params * per) / 2 ** 30).toFixed(1)} GiB of ${per === 4 ? "float32" : "half-precision"} weights (${numLayers} layers, hidden size ${hiddenSize}, vocabulary ${vocabSize}); wasm32 memory holds at most 4 GiB`,
      { bytes: params * per, limit: MAX_MODEL_BYTES },
    );
  }
  if (isOpt && r["layer_norm_elementwise_affine"] === false) {
    throw new ConfigError("MODEL_UNSUPPORTED", "config.json: OPT with layer_norm_elementwise_affine: false is not supported", { field: "layer_norm_elementwise_affine" });
  }
  return cfg;
}

/**
 * A lower bound of the number of weights a config describes (embeddings, attention and MLP matrices; biases and
 * norms left out): used to refuse a config that cannot fit, or that cannot match a checkpoint, before allocating.
 */
export function minParameterCount(c: DecoderConfig): number {
  const rope = c.rope !== null;
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  const perLayer = 2 * c.hiddenSize * (qDim + kvDim) + (rope ? 3 : 2) * c.hiddenSize * c.intermediateSize;
  return c.vocabSize * c.wordEmbedProjDim + c.numLayers * perLayer + (c.tieWordEmbeddings ? 0 : c.vocabSize * c.wordEmbedProjDim) + (rope ? 0 : c.maxPositions * c.hiddenSize);
}
