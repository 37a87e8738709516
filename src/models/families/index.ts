/** The family table: `model_type` → family (transformers.js's `MODEL_FOR_CAUSAL_LM_MAPPING_NAMES`). */
import type { DecoderFamily } from "../family.js";
import { gpt2 } from "./gpt2.js";
import { llama } from "./llama.js";
import { mistral } from "./mistral.js";
import { opt } from "./opt.js";
import { qwen2 } from "./qwen2.js";

export const FAMILIES: ReadonlyMap<string, DecoderFamily> = new Map(
  [llama, mistral, qwen2, opt, gpt2].flatMap((f) => f.modelTypes.map((t) => [t, f] as const)),
);
