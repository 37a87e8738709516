/**
 * GPT-2: `Conv1D` layers (weights stored `[in, out]`), a fused `c_attn` giving q, k and v side by side, learned
 * positions (`wpe`), `gelu_new`, LayerNorm, tied head.
 */
import type { DecoderFamily } from "../family.js";

export const gpt2: DecoderFamily = {
  modelTypes: ["gpt2"],
  architecture: "GPT2LMHeadModel",
  root: "transformer",
  globals: [["embed", "wte"], ["pos", "wpe"], ["layers", "h"], ["finalNorm", "ln_f"]],
  layer: [
    ["attnNorm", "ln_1"],
    ["qkv", "attn.c_attn"],
    ["o", "attn.c_proj"],
    ["mlpNorm", "ln_2"],
    ["up", "mlp.c_fc"],
    ["down", "mlp.c_proj"],
  ],
  norm: "layer",
  position: "learned",
  positionOffset: 0,
  padPosition: 1,
  mlp: "plain",
  linear: "conv1d",
  scaleQueryFirst: false,
  positionsFromMask: false,
  // non-persistent causal-mask buffers that old GPT-2 checkpoints (the Hub's `gpt2`) still contain
  ignoreKeys: [/(^|\.)attn\.(masked_)?bias$/],
  defaultTargets: ["c_attn"],
};
