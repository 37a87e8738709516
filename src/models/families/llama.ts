/** Llama (also SmolLM, TinyLlama): RMSNorm, RoPE, grouped-query attention, SwiGLU MLP (`LlamaForCausalLM`). */
import type { DecoderFamily } from "../family.js";

export const LLAMA_LAYER = [
  ["q", "self_attn.q_proj"],
  ["k", "self_attn.k_proj"],
  ["v", "self_attn.v_proj"],
  ["o", "self_attn.o_proj"],
  ["gate", "mlp.gate_proj"],
  ["up", "mlp.up_proj"],
  ["down", "mlp.down_proj"],
  ["attnNorm", "input_layernorm"],
  ["mlpNorm", "post_attention_layernorm"],
] as const;

export const llama: DecoderFamily = {
  modelTypes: ["llama"],
  architecture: "LlamaForCausalLM",
  root: "model",
  globals: [["embed", "embed_tokens"], ["layers", "layers"], ["finalNorm", "norm"]],
  layer: LLAMA_LAYER,
  norm: "rms",
  position: "rope",
  positionOffset: 0,
  padPosition: 1,
  mlp: "gated",
  linear: "linear",
  scaleQueryFirst: false,
  positionsFromMask: false,
  ignoreKeys: [/\.rotary_emb\.inv_freq$/],
  defaultTargets: ["q_proj", "v_proj"],
};
