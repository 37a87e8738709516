// Training decoder language models: the causal-LM step (forward, shifted loss, backward through every op of the
// five families) against directional finite differences, gradient accumulation, packing, SHiRA/LoRA/full training
// through train(), save/load of a trained model, and stopping with a signal.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, before } from "node:test";
import {
  AutoModelForCausalLM,
  LoraConfig,
  ShiraConfig,
  causalLmStep,
  evaluate,
  getLoraModel,
  getPeftModel,
  init,
  packSequences,
  readSafetensors,
  RotaryEmbedding,
  runtime,
  train,
  IGNORE_INDEX,
  type DecoderModel,
  type Parameter,
} from "../src/node.js";
import { rng as makeRng } from "./helpers/random.js";

before(async () => {
  await init();
});

const BASE = { vocab_size: 40, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 4, max_position_embeddings: 64 };
/** Tiny configurations covering every code path of the training pass. */
const CONFIGS: Record<string, Record<string, unknown>> = {
  llama_gqa: { ...BASE, model_type: "llama", num_key_value_heads: 2, intermediate_size: 24, tie_word_embeddings: false, attention_bias: true },
  qwen2_tied: { ...BASE, model_type: "qwen2", num_key_value_heads: 2, intermediate_size: 24, tie_word_embeddings: true },
  mistral_window: { ...BASE, model_type: "mistral", num_key_value_heads: 1, intermediate_size: 24, sliding_window: 3, head_dim: 4, tie_word_embeddings: false },
  opt_pre: { model_type: "opt", vocab_size: 40, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 4, ffn_dim: 24, max_position_embeddings: 64, word_embed_proj_dim: 16, do_layer_norm_before: true },
  opt_post_proj: { model_type: "opt", vocab_size: 40, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 4, ffn_dim: 24, max_position_embeddings: 64, word_embed_proj_dim: 8, do_layer_norm_before: false },
  gpt2: { model_type: "gpt2", vocab_size: 40, n_embd: 16, n_layer: 2, n_head: 4, n_positions: 64, scale_attn_by_inverse_layer_idx: true },
};

function tinyModel(name: string, seed = 1): DecoderModel {
  const lm = AutoModelForCausalLM.fromConfig(CONFIGS[name]);
  lm.initWeights({ seed, std: 0.3 });
  // norms away from 1/0 so their gradients are exercised
  const r = makeRng(seed + 7);
  for (const [n, p] of lm.namedParameters()) if (/norm|ln_/.test(n)) for (let i = 0; i < p.size; i++) p.data[i] += 0.2 * (r() - 0.5);
  return lm;
}

function batchOf(B: number, T: number, V: number, seed: number, pad = true) {
  const r = makeRng(seed);
  const inputIds = Int32Array.from({ length: B * T }, () => Math.floor(r() * V));
  const attentionMask = new Int32Array(B * T).fill(1);
  if (pad && B > 1) for (let t = T - 2; t < T; t++) attentionMask[T + t] = 0; // row 1 right-padded
  return { inputIds, batchSize: B, seqLength: T, attentionMask };
}

function grads(lm: DecoderModel): Map<Parameter, Float64Array> {
  const out = new Map<Parameter, Float64Array>();
  for (const [, p] of lm.namedParameters()) out.set(p, Float64Array.from(p.grad ? p.grad.data : new Float32Array(p.size)));
  return out;
}

function zeroGrads(lm: DecoderModel): void {
  for (const p of lm.parameters()) p.grad?.data.fill(0);
}

// OPT's ReLU makes central differences unreliable (a perturbation crosses kinks); OPT's gradients (pre- and post-LN,
// with projections) are checked entry by entry against PyTorch in train-grads.test.ts, as are all the others.
describe("causalLmStep: gradients against finite differences (smooth families)", () => {
  for (const name of Object.keys(CONFIGS).filter((n) => !n.startsWith("opt"))) {
    it(`${name}: directional derivative along random directions equals g·d`, () => {
      const lm = tinyModel(name);
      try {
        const V = lm.config.vocabSize;
        const batch = batchOf(2, 7, V, 11);
        lm.train(true);
        const r0 = causalLmStep(lm, batch, { backward: true });
        assert.ok(Number.isFinite(r0.loss) && r0.loss > 1);
        assert.equal(r0.tokens, 6 + 4); // row 0: 6 shifted labels; row 1: 4 (last two padded)
        const g = grads(lm);
        lm.train(false);
        const params = lm.parameters();
        for (let trial = 0; trial < 3; trial++) {
          const rr = makeRng(100 + trial);
          const dirs = params.map((p) => Float64Array.from({ length: p.size }, () => rr() - 0.5));
          let gd = 0;
          params.forEach((p, i) => {
            const gp = g.get(p)!;
            for (let j = 0; j < p.size; j++) gd += gp[j] * dirs[i][j];
          });
          const orig = params.map((p) => p.data.slice());
          const at = (eps: number) => {
            params.forEach((p, i) => {
              for (let j = 0; j < p.size; j++) p.data[j] = orig[i][j] + eps * dirs[i][j];
            });
            return causalLmStep(lm, batch).lossSum / r0.tokens;
          };
          const eps = 1e-3;
          const fd = (at(eps) - at(-eps)) / (2 * eps);
          params.forEach((p, i) => p.data.set(orig[i]));
          assert.ok(Math.abs(fd - gd) <= 2e-3 * Math.max(1, Math.abs(gd)), `${name} trial ${trial}: finite difference ${fd} vs gradient ${gd}`);
        }
      } finally {
        lm.dispose();
      }
    });
  }

  it("padding: labels at masked positions are not scored and explicit -100 labels are honoured", () => {
    const lm = tinyModel("llama_gqa");
    try {
      const V = lm.config.vocabSize;
      const b = batchOf(2, 6, V, 3);
      const labels = Int32Array.from(b.inputIds);
      for (let t = 4; t < 6; t++) labels[6 + t] = IGNORE_INDEX;
      const a = causalLmStep(lm, b);
      const c = causalLmStep(lm, { ...b, labels });
      assert.equal(a.tokens, 5 + 3);
      assert.equal(c.tokens, a.tokens);
      assert.equal(c.lossSum, a.lossSum);
      // the loss of row 0 alone equals its share: rows do not see each other
      const row0 = causalLmStep(lm, { inputIds: b.inputIds.slice(0, 6), batchSize: 1, seqLength: 6 });
      const row1 = causalLmStep(lm, { inputIds: b.inputIds.slice(6, 10), batchSize: 1, seqLength: 4 });
      assert.ok(Math.abs(row0.lossSum + row1.lossSum - a.lossSum) < 1e-4, `${row0.lossSum} + ${row1.lossSum} vs ${a.lossSum}`);
    } finally {
      lm.dispose();
    }
  });

  it("rejects bad batches with typed errors and computes nothing", () => {
    const lm = tinyModel("gpt2");
    try {
      assert.throws(() => causalLmStep(lm, { inputIds: new Int32Array([1, 2, 99]), batchSize: 1, seqLength: 3 }), { code: "SHAPE_MISMATCH", message: /token id 99 at index 2/ });
      assert.throws(() => causalLmStep(lm, { inputIds: new Int32Array(6), batchSize: 2, seqLength: 4 }), { code: "SHAPE_MISMATCH", message: /inputIds has 6 entries/ });
      assert.throws(() => causalLmStep(lm, { inputIds: new Int32Array(4), batchSize: 1, seqLength: 4, labels: new Int32Array([1, 2, -5, 0]) }), { code: "SHAPE_MISMATCH", message: /label -5/ });
      lm.eval();
      assert.throws(() => causalLmStep(lm, { inputIds: new Int32Array(4), batchSize: 1, seqLength: 4 }, { backward: true }), { code: "ADAPTER_STATE" });
    } finally {
      lm.dispose();
    }
  });
});

describe("gradient accumulation and packing", () => {
  it("two half batches with gradScale 1/2 give the gradient of the whole batch", () => {
    const lm = tinyModel("qwen2_tied");
    try {
      const b = batchOf(4, 6, lm.config.vocabSize, 5, false);
      lm.train(true);
      causalLmStep(lm, b, { backward: true });
      const whole = grads(lm);
      zeroGrads(lm);
      for (const half of [0, 1]) causalLmStep(lm, { inputIds: b.inputIds.slice(half * 12, half * 12 + 12), batchSize: 2, seqLength: 6 }, { backward: true, gradScale: 0.5 });
      const parts = grads(lm);
      for (const [p, g] of whole) {
        const h = parts.get(p)!;
        for (let i = 0; i < g.length; i++) assert.ok(Math.abs(g[i] - h[i]) <= 1e-5 + 1e-4 * Math.abs(g[i]), `${g[i]} vs ${h[i]}`);
      }
    } finally {
      lm.dispose();
    }
  });

  it("packSequences concatenates documents with EOS and cuts fixed-length rows (the remainder dropped)", () => {
    const d = packSequences([[1, 2, 3], [4], [5, 6, 7, 8]], { seqLength: 4, eosTokenId: 0 });
    assert.equal(d.seqLength, 4);
    assert.deepEqual(Array.from(d.inputIds), [1, 2, 3, 0, 4, 0, 5, 6]);
    const e = packSequences([[1, 2, 3], [4, 5]], { seqLength: 2 });
    assert.deepEqual(Array.from(e.inputIds), [1, 2, 3, 4]);
    assert.throws(() => packSequences([[1]], { seqLength: 1 }), { code: "SHAPE_MISMATCH" });
    assert.throws(() => packSequences([[1, -2]], { seqLength: 2 }), { code: "SHAPE_MISMATCH" });
  });
});

/** A tiny corpus with structure a model can learn quickly: repeated arithmetic-like patterns. */
function patternDocs(n: number, V: number, seed: number): number[][] {
  const r = makeRng(seed);
  const docs: number[][] = [];
  for (let i = 0; i < n; i++) {
    const start = 1 + Math.floor(r() * (V - 1));
    const step = 1 + Math.floor(r() * 3);
    docs.push(Array.from({ length: 12 }, (_, j) => 1 + ((start + j * step) % (V - 1))));
  }
  return docs;
}

describe("train() on language models", () => {
  it("pretrains every weight of a model from scratch: held-out loss falls far below the uniform level", async () => {
    const lm = tinyModel("llama_gqa", 3);
    try {
      const V = lm.config.vocabSize;
      const data = packSequences(patternDocs(200, V, 1), { seqLength: 16, eosTokenId: 0 });
      const held = packSequences(patternDocs(40, V, 2), { seqLength: 16, eosTokenId: 0 });
      const before = evaluate(lm, held, "loss");
      const steps: number[] = [];
      const res = await train(lm, data, { epochs: 8, batchSize: 8, lr: 2e-2, schedule: { type: "cosine", warmupSteps: 5 }, maxGradNorm: 1, onProgress: (p) => steps.push(p.step) });
      const after = evaluate(lm, held, "loss");
      assert.ok(before > Math.log(V) * 0.8, `initial loss ${before}`);
      assert.ok(after < before * 0.6, `held-out loss ${before} -> ${after}`);
      assert.equal(res.steps, steps.length);
      assert.ok(Math.abs(evaluate(lm, held, "perplexity") - Math.exp(after)) < 1e-9 * Math.exp(after));
      assert.equal(lm.busy, null);
    } finally {
      lm.dispose();
    }
  });

  for (const method of ["shira", "lora"] as const) {
    it(`${method}: trains an adapter on a frozen base; the base weights stay bit-identical and the adapter saves in PEFT's format`, async () => {
      const lm = tinyModel("llama_gqa", 4);
      const V = lm.config.vocabSize;
      const baseBits = new Map(lm.namedParameters().map(([n, p]) => [n, new Uint32Array(p.data.slice().buffer)]));
      const targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
      const peft = method === "shira" ? getPeftModel(lm, new ShiraConfig({ r: 2, targetModules: targets, randomSeed: 3 })) : getLoraModel(lm, new LoraConfig({ r: 2, loraAlpha: 4, targetModules: targets }));
      try {
        const data = packSequences(patternDocs(150, V, 5), { seqLength: 16, eosTokenId: 0 });
        const before = evaluate(peft, data, "loss");
        await train(peft, data, { epochs: 2, batchSize: 8, lr: method === "shira" ? 2e-2 : 1e-2, gradientAccumulationSteps: 2 });
        const after = evaluate(peft, data, "loss");
        assert.ok(after < before - 0.3, `${method} loss ${before} -> ${after}`);
        const files = peft.saveAdapter("default");
        const st = readSafetensors(files["adapter_model.safetensors"]);
        const keys = st.names();
        assert.ok(keys.includes(method === "shira" ? "base_model.model.model.layers.0.self_attn.q_proj.shira_weight" : "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"), keys.join(", "));
        const cfg = JSON.parse(files["adapter_config.json"]);
        assert.equal(cfg.peft_type, method === "shira" ? "SHIRA" : "LORA");
        assert.deepEqual([...cfg.target_modules].sort(), [...targets].sort());
        // base weights untouched (SHiRA trained in fused form and was unfused exactly)
        const base = method === "shira" ? (peft as ReturnType<typeof getPeftModel>).unload() : (peft as ReturnType<typeof getLoraModel>).unload();
        for (const [n, p] of (base as DecoderModel).namedParameters()) assert.deepEqual(new Uint32Array(p.data.slice().buffer), baseBits.get(n), n);
      } finally {
        lm.dispose();
      }
    });
  }

  it("a signal stops LM training between steps; the model is consistent and generates afterwards", async () => {
    const lm = tinyModel("gpt2", 5);
    try {
      const data = packSequences(patternDocs(100, lm.config.vocabSize, 9), { seqLength: 16 });
      const ac = new AbortController();
      await assert.rejects(
        train(lm, data, { epochs: 5, batchSize: 4, onProgress: (p) => (p.step === 3 ? ac.abort() : undefined), signal: ac.signal }),
        { code: "ABORTED" },
      );
      assert.equal(lm.busy, null);
      const out = await lm.generate([[1, 2, 3]], { maxNewTokens: 3 });
      assert.equal(out.sequences[0].length, 6);
    } finally {
      lm.dispose();
    }
  });

  it("refuses generation while training and a token dataset on a model that is not a language model", async () => {
    const lm = tinyModel("opt_pre", 6);
    try {
      const data = packSequences(patternDocs(40, lm.config.vocabSize, 9), { seqLength: 8 });
      let refused: unknown = null;
      await train(lm, data, {
        batchSize: 4,
        maxSteps: 2,
        onProgress: () => {
          try {
            void lm.generate([[1]], { maxNewTokens: 1 });
          } catch (e) {
            refused = e;
          }
        },
      });
      assert.equal((refused as { code?: string })?.code, "BUSY");
      const { Linear } = await import("../src/node.js");
      await assert.rejects(train(new Linear(2, 2), data), { code: "CONFIG_INVALID", message: /token dataset/ });
    } finally {
      lm.dispose();
    }
  });
});

describe("savePretrained", () => {
  it("writes a checkpoint folder that loads back to identical logits (tied head not stored; BF16 rounds)", async () => {
    const lm = tinyModel("qwen2_tied", 8);
    const dir = mkdtempSync(join(tmpdir(), "shira-save-"));
    try {
      lm.generationConfig = { eosTokenId: 3 };
      await lm.savePretrained(dir);
      const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
      assert.deepEqual(cfg.architectures, ["Qwen2ForCausalLM"]);
      assert.equal(cfg.torch_dtype, "float32");
      assert.equal(JSON.parse(readFileSync(join(dir, "generation_config.json"), "utf8")).eos_token_id, 3);
      const st = readSafetensors(readFileSync(join(dir, "model.safetensors")));
      assert.ok(!st.names().includes("lm_head.weight"));
      assert.ok(st.names().includes("model.embed_tokens.weight"));
      const again = await AutoModelForCausalLM.fromPretrained(dir);
      const ids = [[1, 5, 9, 2, 7]];
      const a = lm.forward(ids).toArray();
      const b = again.forward(ids).toArray();
      assert.deepEqual(b, a);
      again.dispose();
      const dir2 = join(dir, "bf16");
      await lm.savePretrained(dir2, { dtype: "BF16" });
      const st2 = readSafetensors(readFileSync(join(dir2, "model.safetensors")));
      assert.equal(st2.entry("model.embed_tokens.weight").dtype, "BF16");
      assert.ok(existsSync(join(dir2, "config.json")));
      // with an adapter injected, saving the base refuses
      const peft = getPeftModel(lm, new ShiraConfig({ r: 1, targetModules: ["q_proj"] }));
      await assert.rejects(lm.savePretrained(join(dir, "x")), { code: "ADAPTER_STATE" });
      peft.unload();
    } finally {
      lm.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("initWeights follows transformers' _init_weights (N(0, initializer_range), norms 1, biases 0) and is seeded", () => {
    const a = AutoModelForCausalLM.fromConfig({ ...CONFIGS.llama_gqa, hidden_size: 64, initializer_range: 0.05 });
    const b = AutoModelForCausalLM.fromConfig({ ...CONFIGS.llama_gqa, hidden_size: 64, initializer_range: 0.05 });
    try {
      a.initWeights({ seed: 9 });
      b.initWeights({ seed: 9 });
      const sa = a.stateDict();
      const sb = b.stateDict();
      for (const k of Object.keys(sa)) assert.deepEqual(sa[k].data, sb[k].data, k);
      const w = sa["model.layers.0.mlp.down_proj.weight"].data;
      let s2 = 0;
      for (const v of w) s2 += v * v;
      const std = Math.sqrt(s2 / w.length);
      assert.ok(Math.abs(std - 0.05) < 0.005, `std ${std}`);
      assert.ok(sa["model.norm.weight"].data.every((v) => v === 1));
      assert.ok(sa["model.layers.0.self_attn.q_proj.bias"].data.every((v) => v === 0));
    } finally {
      a.dispose();
      b.dispose();
    }
  });
});

describe("mask strategies and modules_to_save on language models", () => {
  for (const name of ["llama_gqa", "gpt2"] as const) {
    it(`${name}: "grad" and "snip" masks calibrate on token data with the causal-LM loss (positions = top-k of independently accumulated gradients)`, () => {
      const targets = name === "gpt2" ? ["c_attn", "c_fc"] : ["q_proj", "down_proj"];
      const V = 40;
      const cal = { ...packSequences(patternDocs(24, V, 21), { seqLength: 8, eosTokenId: 0 }), batchSize: 4, maxBatches: 3 };
      // the reference: dense gradients of the target weights, batch by batch, from a model trained in full
      const ref = tinyModel(name, 12);
      const sums = new Map<string, { abs: Float64Array; signed: Float64Array; w: Float32Array; out: number; inn: number }>();
      try {
        ref.train(true);
        const L = cal.seqLength;
        for (let b = 0; b < 3; b++) {
          zeroGrads(ref);
          causalLmStep(ref, { inputIds: cal.inputIds.slice(b * 4 * L, (b + 1) * 4 * L), batchSize: 4, seqLength: L }, { backward: true });
          for (const [n, m] of ref.namedModules()) {
            if (!targets.some((t) => n.endsWith(`.${t}`))) continue;
            const lin = m as unknown as { weight: Parameter; inFeatures: number; outFeatures: number };
            const out = lin.outFeatures;
            const inn = lin.inFeatures;
            const conv = name === "gpt2";
            const g = lin.weight.grad!.data;
            let s = sums.get(n);
            if (!s) {
              const w = new Float32Array(out * inn);
              for (let o = 0; o < out; o++) for (let i = 0; i < inn; i++) w[o * inn + i] = conv ? lin.weight.data[i * out + o] : lin.weight.data[o * inn + i];
              sums.set(n, (s = { abs: new Float64Array(out * inn), signed: new Float64Array(out * inn), w, out, inn }));
            }
            for (let o = 0; o < out; o++) {
              for (let i = 0; i < inn; i++) {
                const v = conv ? g[i * out + o] : g[o * inn + i];
                s.abs[o * inn + i] += Math.abs(v);
                s.signed[o * inn + i] += v;
              }
            }
          }
        }
      } finally {
        ref.dispose();
      }
      for (const maskType of ["grad", "snip"] as const) {
        const lm = tinyModel(name, 12);
        try {
          const peft = getPeftModel(lm, new ShiraConfig({ r: 1, maskType, targetModules: targets }), "default", { calibration: cal });
          const files = peft.saveAdapter("default");
          const st = readSafetensors(files["adapter_model.safetensors"]);
          for (const [n, s] of sums) {
            const key = `base_model.model.${n}.shira_indices`;
            const idx = st.i32(key);
            const nnz = idx.length / 2;
            const got = new Set<number>();
            for (let j = 0; j < nnz; j++) got.add(idx[j] * s.inn + idx[nnz + j]);
            const score = maskType === "grad" ? Array.from(s.abs) : Array.from(s.signed, (g, p) => Math.abs(s.w[p] * g));
            const order = score.map((v, p) => [v, p] as const).sort((a, b) => b[0] - a[0]);
            // the top nnz reference positions (skipping near-ties at the boundary, which float order may swap)
            const cut = order[nnz - 1][0];
            for (const [v, p] of order.slice(0, nnz)) if (v > cut * (1 + 1e-4)) assert.ok(got.has(p), `${maskType} ${n}: position ${p} (score ${v}) not selected`);
            assert.equal(got.size, nnz);
          }
        } finally {
          lm.dispose();
        }
      }
    });
  }

  it("random, wm and struct masks train on a language model; modules_to_save (the final norm) trains and saves", async () => {
    for (const maskType of ["random", "wm", "struct"] as const) {
      const lm = tinyModel("qwen2_tied", 13);
      try {
        const peft = getPeftModel(lm, new ShiraConfig({ r: 2, maskType, targetModules: ["q_proj", "v_proj", "up_proj"], modulesToSave: ["norm"] }));
        const data = packSequences(patternDocs(60, 40, 31), { seqLength: 12, eosTokenId: 0 });
        const before = evaluate(peft, data, "loss");
        await train(peft, data, { epochs: 2, batchSize: 6, lr: 3e-2 });
        const after = evaluate(peft, data, "loss");
        assert.ok(after < before - 0.1, `${maskType}: ${before} -> ${after}`);
        const keys = readSafetensors(peft.saveAdapter("default")["adapter_model.safetensors"]).names();
        assert.ok(keys.includes("base_model.model.model.norm.modules_to_save.default.weight") || keys.includes("base_model.model.model.norm.weight"), keys.join(", "));
        // the trained norm copy differs from the frozen original
        const orig = lm.getSubmodule("model.norm") as unknown as { originalModule: { weight: Parameter }; copy(n: string): { weight: Parameter } };
        assert.ok(orig.copy("default").weight.data.some((v, i) => v !== orig.originalModule.weight.data[i]));
      } finally {
        lm.dispose();
      }
    }
  });
});

describe("fault injection: a failed allocation leaves everything as it was", () => {
  const bitsOf = (lm: DecoderModel, extra: Parameter[]) => [...lm.namedParameters().map(([, p]) => p), ...extra].map((p) => Array.from(new Uint32Array(p.data.slice().buffer)).join(",")).join("|");

  it("train() of a SHiRA adapter on a language model: every failing allocation rejects with OUT_OF_MEMORY, weights, values and wasm memory unchanged", async () => {
    const rt = runtime();
    const lm = tinyModel("llama_gqa", 21);
    const peft = getPeftModel(lm, new ShiraConfig({ r: 2, targetModules: ["q_proj", "v_proj", "down_proj"], randomSeed: 4 }));
    try {
      const data = packSequences(patternDocs(16, 40, 41), { seqLength: 8, eosTokenId: 0 });
      const values = peft.shiraLayers().map(([, l]) => l.adapters.get("default")!.weight);
      // the RoPE tables are a cache the model keeps (grown once, freed by dispose): fill it before counting bytes
      causalLmStep(lm, { inputIds: data.inputIds.slice(0, 8), batchSize: 1, seqLength: 8 });
      let failures = 0;
      for (let n = 1; ; n++) {
        const before = bitsOf(lm, values);
        const live = rt.liveBytes;
        rt.failAfter(n);
        let failed = false;
        try {
          await train(peft, data, { maxSteps: 1, batchSize: 4 });
        } catch (e) {
          assert.equal((e as { code?: string }).code, "OUT_OF_MEMORY", String(e));
          failed = true;
        } finally {
          rt.failAfter(null);
        }
        if (!failed) break;
        failures++;
        assert.equal(bitsOf(lm, values), before, `allocation ${n}: weights or adapter values changed`);
        assert.equal(rt.liveBytes, live, `allocation ${n}: ${rt.liveBytes - live} bytes leaked`);
        assert.equal(lm.busy, null);
        assert.ok(n < 500, "train() never succeeded");
      }
      assert.ok(failures > 10, `only ${failures} allocations were failed`);
    } finally {
      lm.dispose();
    }
  });

  it("RotaryEmbedding.prepare: a failed allocation of either table frees the other and keeps the old tables and inv_freq", () => {
    const rt = runtime();
    for (const type of ["default", "dynamic"] as const) {
      const rope = new RotaryEmbedding({ type, theta: 10000, dim: 8, factor: 2, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 16 }, 16);
      try {
        rope.prepare(8);
        const before = { cos: rope.cosPtr, sin: rope.sinPtr, inv: Array.from(rope.invFreq) };
        for (const n of [1, 2]) {
          const live = rt.liveBytes;
          rt.failAfter(n);
          try {
            assert.throws(() => rope.prepare(200), { code: "OUT_OF_MEMORY" });
          } finally {
            rt.failAfter(null);
          }
          assert.equal(rt.liveBytes, live, `${type}, allocation ${n}: leaked`);
          assert.deepEqual({ cos: rope.cosPtr, sin: rope.sinPtr, inv: Array.from(rope.invFreq) }, before, `${type}, allocation ${n}: state changed`);
        }
        rope.prepare(200);
        if (type === "dynamic") assert.notDeepEqual(Array.from(rope.invFreq), before.inv);
      } finally {
        rope.free();
      }
    }
  });

  it("fromPretrained with dtype bf16: every failing allocation rejects and leaks nothing", async () => {
    const rt = runtime();
    const dir = join(import.meta.dirname, "fixtures", "transformers", "llama", "model_bf16");
    let failures = 0;
    for (let n = 1; ; n++) {
      const live = rt.liveBytes;
      rt.failAfter(n);
      let lm: DecoderModel | null = null;
      try {
        lm = await AutoModelForCausalLM.fromPretrained(dir, { dtype: "bf16" });
      } catch (e) {
        assert.equal((e as { code?: string }).code, "OUT_OF_MEMORY", String(e));
      } finally {
        rt.failAfter(null);
      }
      if (lm) {
        lm.dispose();
        break;
      }
      failures++;
      assert.equal(rt.liveBytes, live, `allocation ${n}: ${rt.liveBytes - live} bytes leaked`);
      assert.ok(n < 500);
    }
    assert.ok(failures > 10, `only ${failures} allocations were failed`);
  });
});
