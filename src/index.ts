/**
 * shira-wasm: Sparse High Rank Adapters (SHiRA) on a WebAssembly SIMD engine, with PEFT's API.
 *
 * This is the one public entry file; it works in Node and in browsers. (`src/node.ts` adds Node file-system
 * support and re-exports everything here.)
 *
 * ```ts
 * import { init, ShiraConfig, getPeftModel, Linear, Sequential, ReLU, Tensor } from "shira-wasm";
 * await init();
 * ```
 */

// ---------------------------------------------------------------- errors
export { ShiraError, FormatError, ConfigError, ShapeError, StateError, RuntimeError } from "./errors.js";
export type { ErrorCode } from "./errors.js";

// ---------------------------------------------------------------- runtime
export { init, initSync, runtime, createRuntime, Runtime, WasmBuffer, F32Buffer, I32Buffer } from "./runtime/runtime.js";
export type { InitOptions, WasmVariant, Scratch } from "./runtime/runtime.js";

// ---------------------------------------------------------------- tensors and modules
export {
  Tensor,
  Parameter,
  numel,
  Module,
  Linear,
  Conv1D,
  isDenseLayer,
  ReLU,
  GELU,
  SiLU,
  Tanh,
  Softmax,
  LogSoftmax,
  Sequential,
  ModuleList,
  Identity,
  LayerNorm,
  Embedding,
  HalfLinear,
  HalfConv1D,
  HalfEmbedding,
  HalfWeight,
  isHalfDense,
  nllLoss,
  crossEntropy,
  mseLoss,
  Rng,
  manualSeed,
} from "./nn/index.js";
export type { TensorLike, StateDictSource, LoadStateDictOptions, LoadStateDictResult, LinearOptions, Conv1DOptions, DenseLayer, LayerNormOptions, EmbeddingOptions, LossResult, Reduction, HalfTensor, HalfDtype, HalfDense, HalfLinearOptions, HalfConv1DOptions, HalfEmbeddingOptions } from "./nn/index.js";

// ---------------------------------------------------------------- decoder language models (Hugging Face checkpoints)
export { AutoModelForCausalLM } from "./models/auto.js";
export { DecoderModel, RMSNorm } from "./models/decoder.js";
export type { DecoderForwardOptions, ModelDtype } from "./models/decoder.js";
export { parseConfig, SUPPORTED_MODEL_TYPES } from "./models/config.js";
export type { DecoderConfig, RopeConfig } from "./models/config.js";
export { FAMILIES } from "./models/families/index.js";
export type { DecoderFamily, LayerRole, GlobalRole } from "./models/family.js";
export { KVCache } from "./models/kv-cache.js";
export type { KVCacheOptions } from "./models/kv-cache.js";
export { RotaryEmbedding, ROPE_INIT_FUNCTIONS } from "./models/rope.js";
export { selectToken, argmax, repetitionPenalty, temperature, topK, topP, minP, multinomial } from "./models/sampling.js";
export type { SamplingOptions } from "./models/sampling.js";
export type { GenerateOptions, GenerateResult, GeneratedToken, GenerationTokenizer } from "./models/generate.js";
export type { FromPretrainedOptions, LoadProgress } from "./models/load.js";
export { openCheckpoint } from "./models/source.js";
export { saveModelFiles } from "./models/save.js";
export type { SaveModelOptions } from "./models/save.js";
export { causalLmStep, packSequences, IGNORE_INDEX } from "./models/train-lm.js";
export type { CausalLmBatch, CausalLmStepOptions, CausalLmStepResult, TokenDataset } from "./models/train-lm.js";
export { AutoTokenizer, PreTrainedTokenizer } from "./models/tokenizer.js";
export type { AutoTokenizerOptions, BatchEncodeOptions, BatchEncoding, ChatMessage, ChatTemplateOptions, DecodeOptions, DecodeStream, EncodeOptions, SpecialTokens } from "./models/tokenizer.js";
export type { CheckpointSource, CheckpointFile, CheckpointFiles, OpenCheckpointOptions } from "./models/source.js";

// ---------------------------------------------------------------- SHiRA
export { ShiraConfig, matchesTarget, DEFAULT_PEFT_VERSION, TASK_TYPES } from "./shira/config.js";
export type { ShiraConfigInit, ShiraConfigJSON, TargetModules, MaskType, AutoMapping } from "./shira/config.js";
export {
  randomMask,
  wmMask,
  gradMask,
  snipMask,
  structMask,
  topKIndices,
  normalizeMask,
  maskBudget,
  builtinMaskFn,
  flatToRowsCols,
  rowsColsToFlat,
  BUILTIN_MASK_TYPES,
} from "./shira/mask.js";
export type { MaskFn, MaskLayer, MaskResult, BuiltinMaskType } from "./shira/mask.js";
export { randpermPrefix, TORCH_DEFAULT_SEED } from "./shira/randperm.js";
export { ShiraLinear, ShiraAdapterWeights } from "./shira/layer.js";
export { ModulesToSaveWrapper } from "./shira/modules-to-save.js";
export { ShiraModel, ShiraModel as PeftModel, getPeftModel } from "./shira/model.js";
export type { AddAdapterOptions, FuseEntry, MergeOptions, LoadAdapterOptions } from "./shira/model.js";

// ---------------------------------------------------------------- formats
export {
  readSafetensors,
  openSafetensors,
  writeSafetensors,
  toFloat32,
  toInt32,
  f16ToF32,
  f32ToF16,
  bf16ToF32,
  f32ToBf16,
  DTYPE_SIZE,
  MAX_HEADER_BYTES,
  SafetensorsFile,
  SafetensorsSource,
} from "./io/safetensors.js";
export type { Dtype, TensorEntry, RawTensor, SafetensorsHeader, TensorData, TensorInput } from "./io/safetensors.js";
export { bytesSource, blobSource, urlSource } from "./io/byte-source.js";
export type { ByteSource, UrlSourceInit } from "./io/byte-source.js";
export type { LoadSignalOptions } from "./io/abort.js";
export { parseAdapter, readAdapterFiles, saveAdapterFiles, adapterKeys, CONFIG_NAME, WEIGHTS_NAME, KEY_PREFIX } from "./io/peft.js";
export type { AdapterFiles, AdapterFilesInput, AdapterSource, ParsedAdapter, AdapterReadOptions } from "./io/peft.js";

// ---------------------------------------------------------------- training
export { SGD, AdamW, clipGradNorm } from "./train/optim.js";
export type { Optimizer, SGDOptions, AdamWOptions } from "./train/optim.js";
export { lrMultiplier } from "./train/schedule.js";
export type { ScheduleSpec } from "./train/schedule.js";
export { train, evaluate, predict } from "./train/train.js";
export type { Dataset, Trainable, TrainOptions, TrainResult, Progress, LossSpec, Metric } from "./train/train.js";
export { calibrationGradients } from "./train/calibrate.js";
export type { Calibration } from "./train/calibrate.js";

// ---------------------------------------------------------------- LoRA baseline
export { LoraConfig, LoraLinear, LoraModel, getLoraModel } from "./lora/lora.js";
export type { LoraConfigInit } from "./lora/lora.js";

// ---------------------------------------------------------------- demo model (MNIST MLP used by the CLI and the browser page)
export { createMlp, mlpLinearNames, MNIST_MLP } from "./demo/mnist-mlp.js";
export type { MlpSpec } from "./demo/mnist-mlp.js";
