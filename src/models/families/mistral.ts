/** Mistral: Llama plus a sliding attention window (`sliding_window` in the config) and an explicit `head_dim`. */
import type { DecoderFamily } from "../family.js";
import { llama } from "./llama.js";

export const mistral: DecoderFamily = { ...llama, modelTypes: ["mistral"], architecture: "MistralForCausalLM" };
