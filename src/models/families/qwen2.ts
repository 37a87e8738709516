/** Qwen2 (Qwen2 and Qwen2.5): Llama with biases on q/k/v (not on o_proj); the config parser sets them. */
import type { DecoderFamily } from "../family.js";
import { llama } from "./llama.js";

export const qwen2: DecoderFamily = { ...llama, modelTypes: ["qwen2"], architecture: "Qwen2ForCausalLM" };
