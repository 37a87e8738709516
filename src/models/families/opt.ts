/**
 * OPT: learned positions with offset 2, ReLU `fc1`/`fc2` directly in the layer, q scaled before the product,
 * pre- or post-LN (`do_layer_norm_before`), `project_in`/`project_out` when `word_embed_proj_dim` differs from the
 * hidden size, and no final layer norm in post-LN models (`OPTDecoder.__init__`).
 */
import type { DecoderFamily } from "../family.js";

export const opt: DecoderFamily = {
  modelTypes: ["opt"],
  architecture: "OPTForCausalLM",
  root: "model.decoder",
  globals: [
    ["embed", "embed_tokens"],
    ["pos", "embed_positions"],
    ["projOut", "project_out"],
    ["projIn", "project_in"],
    ["finalNorm", "final_layer_norm"],
    ["layers", "layers"],
  ],
  layer: [
    ["k", "self_attn.k_proj"],
    ["v", "self_attn.v_proj"],
    ["q", "self_attn.q_proj"],
    ["o", "self_attn.out_proj"],
    ["attnNorm", "self_attn_layer_norm"],
    ["up", "fc1"],
    ["down", "fc2"],
    ["mlpNorm", "final_layer_norm"],
  ],
  norm: "layer",
  position: "learned",
  positionOffset: 2,
  padPosition: -1,
  mlp: "plain",
  linear: "linear",
  scaleQueryFirst: true,
  positionsFromMask: true,
  ignoreKeys: [],
  defaultTargets: ["q_proj", "v_proj"],
  has(role, c) {
    if (role === "projIn" || role === "projOut") return c.wordEmbedProjDim !== c.hiddenSize;
    if (role === "finalNorm") return c.preNorm && !c.removeFinalLayerNorm;
    return true;
  },
};
