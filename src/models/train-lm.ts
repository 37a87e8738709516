/**
 * Causal language-model training on a `DecoderModel`: one forward over whole sequences that keeps what the backward
 * needs, transformers' shifted cross-entropy (`labels[..., 1:]` against `logits[..., :-1, :]`, mean over labels
 * other than -100), and the backward through every op of the five families, layer by layer in reverse:
 *
 * ```
 *   logits = head(finalNorm(h_L))              ← f32_cross_entropy_rows gives dL/dlogits in place
 *   per layer (reverse):  MLP:   down ← silu·mul / gelu / relu ← gate, up ← norm
 *                         attn:  o ← attention (P recomputed per head, never stored) ← rope⁻¹ ← q, k, v ← norm
 *   h_0 = embed(ids) [+ pos]                   ← scatter-add into the embedding gradients
 * ```
 *
 * The dense layers are whatever sits in the model tree (a `Linear`/`Conv1D`, or after `getPeftModel` a
 * `ShiraLinear`/`LoraLinear`, or a `modules_to_save` copy): their own `forward`/`backward` run, so SHiRA value
 * gradients come from the masked matmul (O(tokens·nnz)) and frozen weights get no gradient. Norms, RoPE, attention,
 * activations, embeddings and the loss are wasm kernels (`assembly/backward.ts`).
 *
 * A half-precision base (`fromPretrained(src, { dtype: "bf16" })`) trains adapters, norms and biases the same way:
 * the token embedding is read through `h16_embedding`, `HalfLinear.backward` gives dL/dx only, and the half weights
 * themselves get no gradient. Asking for one (`requiresGrad` on a half weight) is a `ConfigError` (`MODEL_UNSUPPORTED`):
 * training the base weights needs an f32 model.
 *
 * ```ts
 * const batch = { inputIds, batchSize: 8, seqLength: 128 };         // Int32Array of 8·128 ids
 * model.train();
 * const { loss } = causalLmStep(model, batch, { backward: true });   // gradients accumulate into .grad
 * ```
 * Usually called through `train(model, packSequences(docs, { seqLength }), opts)`.
 */
import { ConfigError, ShapeError, StateError } from "../errors.js";
import { HalfEmbedding } from "../nn/half.js";
import { Module } from "../nn/module.js";
import { LayerNorm } from "../nn/norm.js";
import { Tensor, type Parameter } from "../nn/tensor.js";
import { runtime, type I32Buffer } from "../runtime/runtime.js";
import type { DecoderModel } from "./decoder.js";

/** Label value that is not scored (transformers' `ignore_index`). */
export const IGNORE_INDEX = -100;

/** A batch of equal-length token sequences, row-major `[batchSize, seqLength]`. */
export interface CausalLmBatch {
  inputIds: Int32Array;
  batchSize: number;
  seqLength: number;
  /** Labels (same shape; `-100` = not scored). Default: the input ids, with padding positions (mask 0) set to -100. */
  labels?: Int32Array;
  /** 1 = real token, 0 = padding. Default: all real. */
  attentionMask?: Uint8Array | Int32Array;
  /** Explicit positions. Default: transformers' training-time rule (OPT: from the mask; the others: 0, 1, 2, ...). */
  positionIds?: Int32Array;
}

export interface CausalLmStepOptions {
  /** Run the backward pass (accumulating into `.grad` of trainable parameters); default false. */
  backward?: boolean;
  /** Multiplies the loss gradient (gradient accumulation divides by the number of micro-batches); default 1. */
  gradScale?: number;
}

export interface CausalLmStepResult {
  /** Mean cross-entropy over the scored tokens (NaN when none is scored). */
  loss: number;
  /** Sum of the per-token losses. */
  lossSum: number;
  /** Number of scored tokens (labels other than -100 after the shift). */
  tokens: number;
}

type Dense = Module & { inFeatures: number; outFeatures: number };

interface NormRef {
  kind: "rms" | "layer";
  w: Parameter | null;
  b: Parameter | null;
  eps: number;
}

/** The parameters of a norm module (RMSNorm or LayerNorm, possibly a modules_to_save copy). */
function normRef(m: Module): NormRef {
  if (m instanceof LayerNorm) return { kind: "layer", w: m.weight, b: m.bias, eps: m.eps };
  const r = m as unknown as { weight?: Parameter; eps?: number; hiddenSize?: number };
  if (r.weight && typeof r.eps === "number" && typeof r.hiddenSize === "number") return { kind: "rms", w: r.weight, b: null, eps: r.eps };
  throw new StateError("ADAPTER_STATE", `${m.constructor.name} cannot be used as a decoder norm`);
}

function normForward(n: NormRef, x: number, y: number, rows: number, D: number): void {
  const k = runtime().k;
  if (n.kind === "rms") k.f32_rmsnorm(x, n.w!.ptr, y, rows, D, Math.fround(n.eps));
  else k.f32_layernorm(x, n.w ? n.w.ptr : 0, n.b ? n.b.ptr : 0, y, rows, D, Math.fround(n.eps));
}

/** Writes dL/dx of the norm (input `x`) into `gx`, accumulating the weight/bias gradients of trainable ones. */
function normBackward(n: NormRef, x: number, gy: number, gx: number, rows: number, D: number): void {
  const k = runtime().k;
  const gw = n.w && n.w.requiresGrad ? n.w.ensureGrad().ptr : 0;
  if (n.kind === "rms") k.f32_rmsnorm_backward(x, n.w!.ptr, gy, gx, gw, rows, D, Math.fround(n.eps));
  else {
    const gb = n.b && n.b.requiresGrad ? n.b.ensureGrad().ptr : 0;
    k.f32_layernorm_backward(x, n.w ? n.w.ptr : 0, gy, gx, gw, gb, rows, D, Math.fround(n.eps));
  }
}

interface LayerTape {
  /** Input of the attention norm (pre-LN: the residual stream; post-LN: the sum it normalizes). */
  attnNormIn: Tensor;
  /** Input of the q/k/v projections (kept alive: the projections cached it). */
  x1: Tensor;
  /** q after scaling and RoPE (row layout, stride qStride), and its owner tensor(s). */
  q: Tensor;
  k: Tensor | null;
  v: Tensor | null;
  attn: Tensor;
  mlpNormIn: Tensor;
  x2: Tensor;
  /** MLP pre-activations: gate (gated MLPs) and up, and the activation output fed to down. */
  g: Tensor | null;
  u: Tensor;
  a: Tensor;
  scale: number;
}

/**
 * One forward (and optionally backward) pass of the causal-LM loss on a batch. The model must be in training mode
 * (`model.train()`) when `backward` is set, so the dense layers keep their inputs.
 */
export function causalLmStep(model: DecoderModel, batch: CausalLmBatch, opts: CausalLmStepOptions = {}): CausalLmStepResult {
  const { batchSize: B, seqLength: T } = batch;
  const c = model.config;
  const V = c.vocabSize;
  if (!Number.isInteger(B) || B <= 0 || !Number.isInteger(T) || T <= 0) {
    throw new ShapeError("SHAPE_MISMATCH", `causalLmStep: batchSize ${B} and seqLength ${T} must be positive integers`, { batchSize: B, seqLength: T });
  }
  const rows = B * T;
  const check = (name: string, a: ArrayLike<number> | undefined) => {
    if (a !== undefined && a.length !== rows) throw new ShapeError("SHAPE_MISMATCH", `causalLmStep: ${name} has ${a.length} entries, batch is ${B} × ${T}`, { field: name, length: a.length });
  };
  check("inputIds", batch.inputIds);
  check("labels", batch.labels);
  check("attentionMask", batch.attentionMask);
  check("positionIds", batch.positionIds);
  for (let i = 0; i < rows; i++) {
    const v = batch.inputIds[i];
    if (!(v >= 0 && v < V)) throw new ShapeError("SHAPE_MISMATCH", `causalLmStep: token id ${v} at index ${i} is not in [0, ${V})`, { index: i, value: v });
  }
  const labels = batch.labels;
  if (labels) {
    for (let i = 0; i < rows; i++) {
      const v = labels[i];
      if (v !== IGNORE_INDEX && !(v >= 0 && v < V)) throw new ShapeError("SHAPE_MISMATCH", `causalLmStep: label ${v} at index ${i} is neither -100 nor in [0, ${V})`, { index: i, value: v });
    }
  }
  const mask = batch.attentionMask ?? null;
  const backward = opts.backward ?? false;
  if (backward && !model.training) throw new StateError("ADAPTER_STATE", "causalLmStep: backward needs training mode (call model.train() first)");

  if (backward) {
    const asked = model.namedHalfTensors().filter(([, t]) => t.requiresGrad);
    if (asked.length) {
      throw new ConfigError(
        "MODEL_UNSUPPORTED",
        `causalLmStep: ${asked[0][0]}${asked.length > 1 ? ` (and ${asked.length - 1} more)` : ""} is a ${asked[0][1].dtype} weight marked trainable, but half-precision weights are frozen; ` +
          `load the model with dtype "f32" to train its weights, or train an adapter (getPeftModel) on the half base`,
        { tensor: asked[0][0], dtype: asked[0][1].dtype },
      );
    }
  }
  const fam = model.family;
  const parts = model.trainingParts();
  // shifted labels: row (b, t) is scored against the token at t + 1
  const shifted = new Int32Array(rows).fill(IGNORE_INDEX);
  let tokens = 0;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t + 1 < T; t++) {
      const i = b * T + t + 1;
      const lab = labels ? labels[i] : mask && !mask[i] ? IGNORE_INDEX : batch.inputIds[i];
      shifted[b * T + t] = lab;
      if (lab !== IGNORE_INDEX) tokens++;
    }
  }
  // positions: explicit, or what transformers' forward uses without position_ids
  const pos = new Int32Array(rows);
  if (batch.positionIds) pos.set(batch.positionIds);
  else if (fam.positionsFromMask) {
    for (let b = 0; b < B; b++) {
      let n = 0;
      for (let t = 0; t < T; t++) {
        const i = b * T + t;
        pos[i] = mask && !mask[i] ? fam.padPosition : n++;
      }
    }
  } else for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) pos[b * T + t] = t;
  if (fam.position === "learned") {
    for (let i = 0; i < rows; i++) {
      if (pos[i] >= c.maxPositions || pos[i] + fam.positionOffset < 0) {
        throw new ShapeError("SHAPE_MISMATCH", `causalLmStep: position ${pos[i]} is outside the model's ${c.maxPositions} learned positions`, { position: pos[i] });
      }
      pos[i] += fam.positionOffset;
    }
  } else {
    let maxPos = 0;
    for (let i = 0; i < rows; i++) {
      if (pos[i] < 0) throw new ShapeError("SHAPE_MISMATCH", `causalLmStep: negative position id ${pos[i]}`, { position: pos[i] });
      maxPos = Math.max(maxPos, pos[i]);
    }
    parts.rope!.prepare(maxPos + 1);
  }

  const rt = runtime();
  const k = rt.k;
  const H = c.hiddenSize;
  const E = c.wordEmbedProjDim;
  const hd = c.headDim;
  const qDim = c.numHeads * hd;
  const kvDim = c.numKvHeads * hd;
  const I = c.intermediateSize;
  const owned: Tensor[] = [];
  const ints: I32Buffer[] = [];
  const T_ = (shape: number[]) => {
    const t = Tensor.zeros(shape);
    owned.push(t);
    return t;
  };
  const cache = model.createCache({ batchSize: B, maxLength: T });
  try {
    const idsBuf = rt.allocI32(rows);
    ints.push(idsBuf);
    idsBuf.view.set(batch.inputIds);
    const posBuf = rt.allocI32(rows);
    ints.push(posBuf);
    posBuf.view.set(pos);
    const labBuf = rt.allocI32(rows);
    ints.push(labBuf);
    labBuf.view.set(shifted);
    cache.setMask(mask, T);
    const maskPtr = mask ? cache.maskPtr : 0;
    const scratch = T_([Math.max(k.f32_attention_scratch(T, T, hd), backward ? k.f32_attention_backward_scratch(T, T, hd) : 0)]);

    // ---- embeddings
    const embed = parts.global("embed")!;
    const embedF32 = embed instanceof HalfEmbedding ? null : (embed as Module & { weight: Parameter });
    const projIn = E !== H ? (parts.global("projIn") as Dense) : null;
    const posEmb = fam.position === "learned" ? (parts.global("pos") as Module & { weight: Parameter }) : null;
    const e = T_([rows, E]);
    if (embed instanceof HalfEmbedding) embed.forwardInto(idsBuf.ptr, e.ptr, rows);
    else k.f32_embedding(embedF32!.weight.ptr, idsBuf.ptr, e.ptr, rows, E);
    let h: Tensor;
    if (projIn) {
      h = projIn.forward(e);
      owned.push(h);
    } else h = e;
    if (posEmb) k.f32_embedding_add(posEmb.weight.ptr, posBuf.ptr, h.ptr, rows, H);

    // ---- layers
    const tapes: LayerTape[] = [];
    const gelu = c.hiddenAct === "gelu_new" || c.hiddenAct === "gelu_pytorch_tanh";
    for (let l = 0; l < c.numLayers; l++) {
      const s = parts.slots[l];
      const kv = cache.layer(l);
      const an = normRef(s.attnNorm!);
      let x1: Tensor;
      let attnNormIn: Tensor;
      if (c.preNorm) {
        attnNormIn = h;
        x1 = T_([rows, H]);
        normForward(an, h.ptr, x1.ptr, rows, H);
      } else {
        attnNormIn = h; // replaced below by the sum it normalizes
        x1 = h;
      }
      let q: Tensor, kt: Tensor | null = null, vt: Tensor | null = null;
      let qPtr: number, kPtr: number, vPtr: number, qStride: number, kvStride: number;
      if (s.qkv) {
        q = s.qkv.forward(x1);
        owned.push(q);
        qPtr = q.ptr;
        kPtr = q.ptr + qDim * 4;
        vPtr = q.ptr + (qDim + kvDim) * 4;
        qStride = kvStride = qDim + 2 * kvDim;
      } else {
        q = s.q!.forward(x1);
        owned.push(q);
        kt = s.k!.forward(x1);
        owned.push(kt);
        vt = s.v!.forward(x1);
        owned.push(vt);
        qPtr = q.ptr;
        kPtr = kt.ptr;
        vPtr = vt.ptr;
        qStride = qDim;
        kvStride = kvDim;
      }
      let scale = 1 / Math.sqrt(hd);
      let qScale = 1;
      if (fam.scaleQueryFirst) {
        qScale = Math.fround(scale);
        k.f32_scale(qPtr, qScale, rows * qDim);
        if (qStride !== qDim) throw new StateError("ADAPTER_STATE", "causalLmStep: query scaling with a fused qkv projection is not supported");
        scale = 1;
      } else if (!c.scaleAttnWeights) scale = 1;
      if (c.scaleAttnByInverseLayerIdx) scale /= l + 1;
      if (parts.rope) {
        const r = parts.rope;
        k.f32_rope(qPtr, qStride, rows, c.numHeads, hd, posBuf.ptr, r.cosPtr, r.sinPtr, r.half, 0);
        k.f32_rope(kPtr, kvStride, rows, c.numKvHeads, hd, posBuf.ptr, r.cosPtr, r.sinPtr, r.half, 0);
      }
      k.f32_kv_store(kPtr, kvStride, kv.k, B, T, 0, c.numKvHeads, hd, T);
      k.f32_kv_store(vPtr, kvStride, kv.v, B, T, 0, c.numKvHeads, hd, T);
      const attn = T_([rows, qDim]);
      k.f32_attention(qPtr, qStride, kv.k, kv.v, attn.ptr, qDim, B, T, 0, c.numHeads, c.numKvHeads, hd, T, Math.fround(scale), c.slidingWindow ?? 0, maskPtr, scratch.ptr);
      const o = s.o.forward(attn);
      owned.push(o);
      const h1 = T_([rows, H]);
      k.f32_add(h.ptr, o.ptr, h1.ptr, rows * H);
      let mlpIn: Tensor;
      if (!c.preNorm) {
        attnNormIn = h1;
        mlpIn = T_([rows, H]);
        normForward(an, h1.ptr, mlpIn.ptr, rows, H);
      } else mlpIn = h1;
      // MLP
      const mn = normRef(s.mlpNorm!);
      let x2: Tensor;
      if (c.preNorm) {
        x2 = T_([rows, H]);
        normForward(mn, mlpIn.ptr, x2.ptr, rows, H);
      } else x2 = mlpIn;
      let g: Tensor | null = null;
      let u: Tensor;
      let a: Tensor;
      if (fam.mlp === "gated") {
        g = s.gate!.forward(x2);
        owned.push(g);
        u = s.up.forward(x2);
        owned.push(u);
        a = T_([rows, I]);
        k.f32_silu_mul(g.ptr, u.ptr, a.ptr, rows * I);
      } else {
        u = s.up.forward(x2);
        owned.push(u);
        a = T_([rows, I]);
        if (gelu) k.f32_gelu_tanh(u.ptr, a.ptr, rows * I);
        else k.f32_relu(u.ptr, a.ptr, rows * I);
      }
      const d = s.down.forward(a);
      owned.push(d);
      const h2 = T_([rows, H]);
      k.f32_add(mlpIn.ptr, d.ptr, h2.ptr, rows * H);
      let next = h2;
      if (!c.preNorm) {
        next = T_([rows, H]);
        normForward(mn, h2.ptr, next.ptr, rows, H);
      }
      tapes.push({ attnNormIn, x1, q, k: kt, v: vt, attn, mlpNormIn: c.preNorm ? mlpIn : h2, x2, g, u, a, scale: qScale !== 1 ? qScale : scale });
      h = next;
    }

    // ---- head and loss
    const fn = parts.global("finalNorm");
    let fin = h;
    const fnRef = fn ? normRef(fn) : null;
    if (fnRef) {
      fin = T_([rows, H]);
      normForward(fnRef, h.ptr, fin.ptr, rows, H);
    }
    const projOut = E !== H ? (parts.global("projOut") as Dense) : null;
    let headIn = fin;
    if (projOut) {
      headIn = projOut.forward(fin);
      owned.push(headIn);
    }
    const head = parts.head;
    const logits = head.forward(headIn);
    owned.push(logits);
    const gradScale = (opts.gradScale ?? 1) / Math.max(1, tokens);
    const lossSum = k.f32_cross_entropy_rows(logits.ptr, labBuf.ptr, backward ? logits.ptr : 0, rows, V, Math.fround(gradScale));
    const result = { loss: tokens ? lossSum / tokens : NaN, lossSum, tokens };
    if (!backward) return result;

    // ---- backward
    const track = (t: Tensor) => {
      owned.push(t);
      return t;
    };
    /**
     * dL/d(block input) of `x + branch(norm?(x))`: the branch's input gradient (through the norm with pre-LN), plus the
     * skip connection's. Accumulates into the branch gradient when there is no norm to go through.
     */
    const branchAndSkip = (n: NormRef, normIn: Tensor, gBranch: Tensor, gSkip: Tensor): Tensor => {
      let g = gBranch;
      if (c.preNorm) {
        g = T_([rows, H]);
        normBackward(n, normIn.ptr, gBranch.ptr, g.ptr, rows, H);
      }
      k.f32_add(g.ptr, gSkip.ptr, g.ptr, rows * H);
      return g;
    };
    let gh = track(head.backward(logits)); // dL/d headIn
    if (projOut) gh = track(projOut.backward(gh));
    if (fnRef) {
      const gx = T_([rows, H]);
      normBackward(fnRef, h.ptr, gh.ptr, gx.ptr, rows, H);
      gh = gx;
    }
    for (let l = c.numLayers - 1; l >= 0; l--) {
      const s = parts.slots[l];
      const tp = tapes[l];
      const kv = cache.layer(l);
      const an = normRef(s.attnNorm!);
      const mn = normRef(s.mlpNorm!);
      // MLP block: (post-LN) gh is dL/d norm(h2); (pre-LN) dL/d h2
      let gSum = gh; // dL/d (mlpIn + down)
      if (!c.preNorm) {
        gSum = T_([rows, H]);
        normBackward(mn, tp.mlpNormIn.ptr, gh.ptr, gSum.ptr, rows, H);
      }
      const ga = track(s.down.backward(gSum));
      let gx2: Tensor;
      if (fam.mlp === "gated") {
        const gg = T_([rows, I]);
        const gu = T_([rows, I]);
        k.f32_silu_mul_backward(tp.g!.ptr, tp.u.ptr, ga.ptr, gg.ptr, gu.ptr, rows * I);
        gx2 = track(s.gate!.backward(gg));
        const gx2u = track(s.up.backward(gu));
        k.f32_add(gx2.ptr, gx2u.ptr, gx2.ptr, rows * H);
      } else {
        const gu = T_([rows, I]);
        if (gelu) k.f32_gelu_tanh_backward(tp.u.ptr, ga.ptr, gu.ptr, rows * I);
        else k.f32_relu_backward(tp.u.ptr, ga.ptr, gu.ptr, rows * I);
        gx2 = track(s.up.backward(gu));
      }
      // dL/d mlpIn = gSum + (pre-LN) norm backward of gx2
      const gMlpIn = branchAndSkip(mn, tp.mlpNormIn, gx2, gSum);
      // attention block: gMlpIn is dL/d h1 (pre-LN) or dL/d norm(h1) (post-LN)
      let gH1 = gMlpIn;
      if (!c.preNorm) {
        gH1 = T_([rows, H]);
        normBackward(an, tp.attnNormIn.ptr, gMlpIn.ptr, gH1.ptr, rows, H);
      }
      const gAttn = track(s.o.backward(gH1));
      let gq: Tensor, gk: Tensor | null = null, gv: Tensor | null = null;
      let gqPtr: number, gkPtr: number, gvPtr: number, qStride: number, kvStride: number, qPtr: number;
      if (s.qkv) {
        gq = T_([rows, qDim + 2 * kvDim]);
        gqPtr = gq.ptr;
        gkPtr = gq.ptr + qDim * 4;
        gvPtr = gq.ptr + (qDim + kvDim) * 4;
        qStride = kvStride = qDim + 2 * kvDim;
      } else {
        gq = T_([rows, qDim]);
        gk = T_([rows, kvDim]);
        gv = T_([rows, kvDim]);
        gqPtr = gq.ptr;
        gkPtr = gk.ptr;
        gvPtr = gv.ptr;
        qStride = qDim;
        kvStride = kvDim;
      }
      qPtr = tp.q.ptr;
      const attnScale = fam.scaleQueryFirst ? 1 : tp.scale;
      k.f32_attention_backward(qPtr, qStride, kv.k, kv.v, tp.attn.ptr, qDim, gAttn.ptr, qDim, gqPtr, qStride, gkPtr, gvPtr, kvStride, B, T, c.numHeads, c.numKvHeads, hd, T, Math.fround(attnScale), c.slidingWindow ?? 0, maskPtr, scratch.ptr);
      if (parts.rope) {
        const r = parts.rope;
        k.f32_rope_backward(gqPtr, qStride, rows, c.numHeads, hd, posBuf.ptr, r.cosPtr, r.sinPtr, r.half, 0);
        k.f32_rope_backward(gkPtr, kvStride, rows, c.numKvHeads, hd, posBuf.ptr, r.cosPtr, r.sinPtr, r.half, 0);
      }
      if (fam.scaleQueryFirst) k.f32_scale(gqPtr, tp.scale, rows * qDim);
      let gx1: Tensor;
      if (s.qkv) gx1 = track(s.qkv.backward(gq));
      else {
        gx1 = track(s.q!.backward(gq));
        const gxk = track(s.k!.backward(gk!));
        const gxv = track(s.v!.backward(gv!));
        k.f32_add(gx1.ptr, gxk.ptr, gx1.ptr, rows * H);
        k.f32_add(gx1.ptr, gxv.ptr, gx1.ptr, rows * H);
      }
      // dL/d h (layer input)
      gh = branchAndSkip(an, tp.attnNormIn, gx1, gH1);
    }
    // embeddings
    if (posEmb && posEmb.weight.requiresGrad) k.f32_embedding_backward(gh.ptr, posBuf.ptr, posEmb.weight.ensureGrad().ptr, rows, H);
    let ge = gh;
    if (projIn) ge = track(projIn.backward(gh));
    // a half table is frozen (checked above): no gradient
    if (embedF32 && embedF32.weight.requiresGrad) k.f32_embedding_backward(ge.ptr, idsBuf.ptr, embedF32.weight.ensureGrad().ptr, rows, E);
    return result;
  } finally {
    cache.dispose();
    for (const b of ints) b.free();
    for (const t of owned) if (!t.freed) t.free();
    // the dense layers' cached inputs point at freed tensors now
    model.clearCache();
  }
}

/** Token sequences for `train()` / `evaluate()` on a language model: `n` rows of `seqLength` ids. */
export interface TokenDataset {
  inputIds: Int32Array;
  seqLength: number;
  labels?: Int32Array;
  attentionMask?: Uint8Array | Int32Array;
}

/** Whether `data` is a {@link TokenDataset}. @internal */
export function isTokenDataset(data: unknown): data is TokenDataset {
  return typeof data === "object" && data !== null && (data as TokenDataset).inputIds instanceof Int32Array && typeof (data as TokenDataset).seqLength === "number";
}

/**
 * Packs documents into fixed-length training sequences the way transformers' `run_clm` `group_texts` does:
 * concatenates every document (each followed by `eosTokenId` when given), and cuts the stream into `seqLength`
 * pieces, dropping the remainder. Labels are the inputs (the loss shifts them).
 * ```ts
 * const data = packSequences(docs.map((d) => tok.encode(d)), { seqLength: 128, eosTokenId: tok.eosTokenId });
 * await train(lm, data, { epochs: 1, batchSize: 8 });
 * ```
 */
export function packSequences(docs: Iterable<ArrayLike<number>>, opts: { seqLength: number; eosTokenId?: number | null; stride?: number }): TokenDataset {
  const L = opts.seqLength;
  if (!Number.isInteger(L) || L < 2) throw new ShapeError("SHAPE_MISMATCH", `packSequences: seqLength must be an integer ≥ 2, got ${L}`, { field: "seqLength", value: L });
  let total = 0;
  const list: ArrayLike<number>[] = [];
  for (const d of docs) {
    list.push(d);
    total += d.length + (opts.eosTokenId != null ? 1 : 0);
  }
  const stream = new Int32Array(total);
  let at = 0;
  for (const d of list) {
    for (let i = 0; i < d.length; i++) {
      const v = d[i];
      if (!Number.isInteger(v) || v < 0) throw new ShapeError("SHAPE_MISMATCH", `packSequences: token id ${v} is not a non-negative integer`, { value: v });
      stream[at++] = v;
    }
    if (opts.eosTokenId != null) stream[at++] = opts.eosTokenId;
  }
  const n = Math.floor(total / L);
  return { inputIds: stream.slice(0, n * L), seqLength: L };
}
