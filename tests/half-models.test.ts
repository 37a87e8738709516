// Half-precision base weights (issue #13): decoder models loaded with dtype "bf16" / "f16" against the same models
// loaded in f32 with the weights rounded to that dtype. The half kernels are bit-identical to the f32 kernels on the
// widened weight, so logits, incremental decoding, greedy tokens, losses and gradients must be equal bit for bit.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  AutoModelForCausalLM,
  calibrationGradients,
  LoraConfig,
  ReLU,
  Sequential,
  ShiraConfig,
  getLoraModel,
  getPeftModel,
  manualSeed,
  HalfEmbedding,
  HalfConv1D,
  HalfLinear,
  HalfWeight,
  Conv1D,
  Linear,
  Tensor,
  bf16ToF32,
  causalLmStep,
  parseConfig,
  packSequences,
  train,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  readSafetensors,
  runtime,
  saveModelFiles,
  writeSafetensors,
  type DecoderModel,
} from "../src/node.js";
import { isHalfTensorName } from "../src/models/decoder.js";
import { TRANSFORMERS, TRANSFORMERS_EXTRA, readExpected } from "./helpers/transformers.js";

type Half = "bf16" | "f16";
const ROUND: Record<Half, (x: number) => number> = { bf16: (x) => bf16ToF32(f32ToBf16(x)), f16: (x) => f16ToF32(f32ToF16(x)) };
const STORED = { bf16: "BF16", f16: "F16" } as const;
const FAMILIES = ["llama", "qwen2", "opt", "gpt2"] as const;
/** Module names of the tensors that stay f32 in a half model (norms, biases, learned positions, OPT's projections). */
const F32_NAMES = /norm|bias|embed_positions|wpe|\.ln_(1|2|f)\.|project_(in|out)/;

function logitsOf(model: DecoderModel, ids: number[][], opts: Parameters<DecoderModel["forward"]>[1] = {}): Float32Array {
  const t = model.forward(ids, opts);
  const d = t.toArray();
  t.free();
  return d;
}

/** Asserts two f32 arrays hold the same bit patterns, naming the first difference. */
function assertBits(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length, `${what}: lengths`);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) assert.fail(`${what}: element ${i} is ${a[i]}, expected ${b[i]}`);
}

/**
 * The checkpoint in `dir` as an F32 file map whose tensors named in `names` (the ones a half model holds as half)
 * are rounded to `dtype`: what an f32 model with exactly the half model's weights loads.
 */
function roundedCheckpoint(dir: string, names: Set<string>, dtype: Half): Record<string, Uint8Array> {
  const file = readSafetensors(readFileSync(join(dir, "model.safetensors")));
  const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
  for (const n of file.names()) {
    const v = file.f32(n);
    tensors[n] = { dtype: "F32", shape: [...file.entry(n).shape], data: names.has(n) ? v.map(ROUND[dtype]) : v };
  }
  return {
    "config.json": readFileSync(join(dir, "config.json")),
    "generation_config.json": readFileSync(join(dir, "generation_config.json")),
    "model.safetensors": writeSafetensors(tensors, { format: "pt" }),
  };
}

/** The half model of `dir` and the f32 model holding its rounded weights. */
async function pair(dir: string, dtype: Half): Promise<{ half: DecoderModel; ref: DecoderModel }> {
  const half = await AutoModelForCausalLM.fromPretrained(dir, { dtype });
  const ref = await AutoModelForCausalLM.fromPretrained(roundedCheckpoint(dir, new Set(Object.keys(half.halfStateDict())), dtype));
  return { half, ref };
}

describe("half-precision decoder weights: bit-identical to the f32 model with rounded weights", () => {
  for (const fam of FAMILIES) {
    for (const dtype of ["bf16", "f16"] as const) {
      it(`${fam} ${dtype}: prompt logits, 20 incremental decode steps and greedy generation are bit-identical`, async () => {
        const dir = join(TRANSFORMERS, fam);
        const exp = readExpected(dir);
        const { half, ref } = await pair(join(dir, "model"), dtype);
        try {
          assert.equal(half.dtype, dtype);
          assert.ok(half.lmHead instanceof HalfLinear);
          const halfNames = Object.keys(half.halfStateDict());
          // every dense layer of the layers, the embedding and the head are half; norms, biases and positions f32
          assert.ok(halfNames.some((n) => /(embed_tokens|wte)\.weight$/.test(n)) && halfNames.includes("lm_head.weight"));
          assert.ok(halfNames.every((n) => !F32_NAMES.test(n)), halfNames.join(", "));
          assert.ok(Object.keys(half.stateDict()).every((n) => F32_NAMES.test(n)), Object.keys(half.stateDict()).join(", "));
          if (fam === "gpt2") {
            // GPT-2's Conv1D layers are HalfConv1D, their weights stored [in, out] as in the file
            const c = half.getSubmodule("transformer.h.0.attn.c_attn");
            assert.ok(c instanceof HalfConv1D && c.dtype === dtype);
            assert.deepEqual(c.weightBits.shape, [64, 192]);
            assert.equal(String(c), `HalfConv1D(nf=192, nx=64, dtype=${dtype})`);
          }
          // prompt logits
          const prompt = exp.ids("input_ids");
          assertBits(logitsOf(half, prompt), logitsOf(ref, prompt), "prompt logits");
          // prefill 12 then 20 single steps through a KV cache
          const ids = exp.ids("generated_ids")[0];
          const ch = half.createCache({ batchSize: 1, maxLength: 32 });
          const cr = ref.createCache({ batchSize: 1, maxLength: 32 });
          try {
            assertBits(logitsOf(half, [ids.slice(0, 12)], { pastKeyValues: ch }), logitsOf(ref, [ids.slice(0, 12)], { pastKeyValues: cr }), "prefill");
            for (let t = 12; t < 32; t++) assertBits(logitsOf(half, [[ids[t]]], { pastKeyValues: ch }), logitsOf(ref, [[ids[t]]], { pastKeyValues: cr }), `decode step ${t}`);
          } finally {
            ch.dispose();
            cr.dispose();
          }
          // greedy generation (and a left-padded batch)
          const g1 = await half.generate(prompt, { maxNewTokens: 20 });
          const g2 = await ref.generate(prompt, { maxNewTokens: 20 });
          assert.deepEqual(g1.sequences, g2.sequences);
          const padOpts = { attentionMask: exp.ids("pad.attention_mask"), maxNewTokens: 8 };
          assert.deepEqual((await half.generate(exp.ids("pad.input_ids"), padOpts)).sequences, (await ref.generate(exp.ids("pad.input_ids"), padOpts)).sequences);
          // the half model's weights are the rounded ones
          const want = ref.stateDict();
          for (const [n, t] of Object.entries(half.halfStateDict())) assertBits(t.toFloat32(), want[n].toArray(), n);
        } finally {
          half.dispose();
          ref.dispose();
        }
      });
    }
  }

  for (const extra of ["opt_postln_proj", "mistral", "llama_bias"]) {
    it(`${extra} (post-LN OPT with project_in/out; sliding window; attention and MLP biases): bf16 logits and greedy tokens are bit-identical`, async () => {
      const dir = join(TRANSFORMERS_EXTRA, extra);
      const { half, ref } = await pair(join(dir, "model"), "bf16");
      try {
        if (extra === "opt_postln_proj") assert.ok(Object.keys(half.stateDict()).some((n) => n.includes("project_in")), "project_in stays f32");
        if (extra === "llama_bias") assert.ok(Object.keys(half.stateDict()).some((n) => /mlp\.down_proj\.bias$/.test(n)), "biases stay f32");
        const ids = [[5, 17, 123, 42, 7, 250, 99, 3, 64, 180, 11, 31]];
        assertBits(logitsOf(half, ids), logitsOf(ref, ids), "logits");
        assert.deepEqual((await half.generate(ids, { maxNewTokens: 12 })).sequences, (await ref.generate(ids, { maxNewTokens: 12 })).sequences);
      } finally {
        half.dispose();
        ref.dispose();
      }
    });
  }

  for (const dtype of ["bf16", "f16"] as const) {
    it(`llama model_${dtype}: loaded as ${dtype}, the weights are the file's bits and the logits equal the f32 load`, async () => {
      const dir = join(TRANSFORMERS, "llama", `model_${dtype}`);
      const file = readSafetensors(readFileSync(join(dir, "model.safetensors")));
      const f32 = await AutoModelForCausalLM.fromPretrained(dir, { dtype: "f32" });
      const half = await AutoModelForCausalLM.fromPretrained(dir, { dtype });
      try {
        for (const [n, t] of Object.entries(half.halfStateDict())) {
          assert.equal(file.entry(n).dtype, STORED[dtype]);
          const raw = file.get(n).bytes.slice();
          assert.deepEqual(t.view().slice(), new Uint16Array(raw.buffer, 0, raw.length / 2), n);
        }
        const exp = readExpected(join(TRANSFORMERS, "llama"));
        assertBits(logitsOf(half, exp.ids("input_ids")), logitsOf(f32, exp.ids("input_ids")), "logits");
        const r = await half.generate(exp.ids("input_ids"), { maxNewTokens: 20 });
        assert.deepEqual(r.sequences, exp.ids(`${dtype}.generated_ids`), "transformers' greedy tokens for the half checkpoint");
        // the other half dtype: BF16 -> F16 through the exact f32 value
        const other: Half = dtype === "bf16" ? "f16" : "bf16";
        const conv = await AutoModelForCausalLM.fromPretrained(dir, { dtype: other });
        try {
          const w = f32.stateDict();
          for (const [n, t] of Object.entries(conv.halfStateDict())) assertBits(t.toFloat32(), w[n].toArray().map(ROUND[other]), `${other} ${n}`);
        } finally {
          conv.dispose();
        }
      } finally {
        f32.dispose();
        half.dispose();
      }
    });
  }

  it("loadStateDict rounds f32 values into the half weights (names from stateDict and halfStateDict)", async () => {
    const dir = join(TRANSFORMERS, "qwen2", "model");
    const { half, ref } = await pair(dir, "f16");
    try {
      const file = readSafetensors(readFileSync(join(dir, "model.safetensors")));
      for (const t of Object.values(half.halfStateDict())) t.view().fill(0);
      half.loadStateDict(file, { strict: false });
      const want = ref.stateDict();
      for (const [n, t] of Object.entries(half.halfStateDict())) assertBits(t.toFloat32(), want[n].toArray(), n);
    } finally {
      half.dispose();
      ref.dispose();
    }
  });

  it("a tied head shares the embedding's half table (qwen2, opt); an untied one has its own (llama)", async () => {
    for (const fam of FAMILIES) {
      const lm = await AutoModelForCausalLM.fromPretrained(join(TRANSFORMERS, fam, "model"), { dtype: "bf16" });
      try {
        const embed = lm.getSubmodule(fam === "opt" ? "model.decoder.embed_tokens" : fam === "gpt2" ? "transformer.wte" : "model.embed_tokens");
        assert.ok(embed instanceof HalfEmbedding);
        const head = lm.lmHead as HalfLinear;
        assert.equal(head.weightBits === embed.weight, lm.config.tieWordEmbeddings, fam);
        assert.equal(head.toString(), `HalfLinear(in_features=${lm.config.wordEmbedProjDim}, out_features=${lm.config.vocabSize}, bias=false, dtype=bf16)`);
      } finally {
        lm.dispose();
      }
    }
  });
});

describe("half-precision decoder memory", () => {
  it("a bf16 model takes about half the bytes of the f32 one (weightBytes and live wasm bytes)", async () => {
    const rt = runtime();
    for (const fam of FAMILIES) {
      const dir = join(TRANSFORMERS, fam, "model");
      const live0 = rt.liveBytes;
      const f32 = await AutoModelForCausalLM.fromPretrained(dir);
      const liveF32 = rt.liveBytes - live0;
      const bf16 = await AutoModelForCausalLM.fromPretrained(dir, { dtype: "bf16" });
      const liveBf16 = rt.liveBytes - live0 - liveF32;
      try {
        let halfValues = 0;
        for (const [, t] of bf16.namedHalfTensors()) halfValues += t.size;
        assert.equal(bf16.weightBytes, f32.weightBytes - 2 * halfValues, "2 bytes per half value");
        assert.equal(bf16.numParameters(), f32.numParameters());
        const ratio = bf16.weightBytes / f32.weightBytes;
        assert.ok(ratio > 0.49 && ratio < 0.54, `${fam}: weight bytes ratio ${ratio}`);
        // the live heap (weights, RoPE tables, workspace) shrinks by the same amount
        assert.equal(liveF32 - liveBf16, 2 * halfValues);
      } finally {
        f32.dispose();
        bf16.dispose();
      }
    }
  });

  it("dispose frees everything: the heap does not grow over 10 load / generate / dispose cycles", async () => {
    const rt = runtime();
    const cycle = async (dtype: Half) => {
      const lm = await AutoModelForCausalLM.fromPretrained(join(TRANSFORMERS, "qwen2", "model"), { dtype });
      await lm.generate([[5, 17, 123]], { maxNewTokens: 4 });
      lm.dispose();
    };
    const live0 = rt.liveBytes;
    const blocks0 = rt.liveBlocks;
    await cycle("bf16");
    await cycle("f16");
    const mem = rt.memoryBytes;
    for (let i = 0; i < 10; i++) await cycle(i % 2 ? "f16" : "bf16");
    assert.equal(rt.liveBytes, live0, "every byte freed");
    assert.equal(rt.liveBlocks, blocks0, "every block freed");
    assert.equal(rt.memoryBytes, mem, "memory did not grow");
  });
});

describe("saving a half-precision model", () => {
  it("savePretrained of a bf16 model writes BF16 tensors whose bits are the loaded ones; it reloads to identical logits", async () => {
    const src = join(TRANSFORMERS, "llama", "model");
    const lm = await AutoModelForCausalLM.fromPretrained(src, { dtype: "bf16" });
    const out = mkdtempSync(join(tmpdir(), "shira-half-"));
    try {
      await lm.savePretrained(out);
      const file = readSafetensors(readFileSync(join(out, "model.safetensors")));
      const cfg = JSON.parse(readFileSync(join(out, "config.json"), "utf8")) as Record<string, unknown>;
      assert.equal(cfg.torch_dtype, "bfloat16");
      const half = lm.halfStateDict();
      const f32 = lm.stateDict();
      assert.deepEqual(new Set(file.names()), new Set([...Object.keys(half), ...Object.keys(f32)]));
      for (const n of file.names()) {
        assert.equal(file.entry(n).dtype, "BF16", n);
        const raw = file.get(n).bytes.slice();
        const bits = new Uint16Array(raw.buffer, 0, raw.length / 2);
        if (n in half) assert.deepEqual(bits, half[n].view().slice(), n);
        else assert.deepEqual(Array.from(bits, bf16ToF32), Array.from(f32[n].toArray(), (x) => bf16ToF32(f32ToBf16(x))), n);
      }
      // an F32 save of the same model holds the exact widened values
      const asF32 = readSafetensors(saveModelFiles(lm, { dtype: "F32" })["model.safetensors"] as Uint8Array);
      for (const [n, t] of Object.entries(half)) assertBits(asF32.f32(n), t.toFloat32(), n);
      // reloading the BF16 folder as bf16 copies the same bits, so the logits are the same
      const again = await AutoModelForCausalLM.fromPretrained(out, { dtype: "bf16" });
      try {
        for (const [n, t] of Object.entries(again.halfStateDict())) assert.deepEqual(t.view().slice(), half[n].view().slice(), n);
        const ids = [[5, 17, 123, 42, 7]];
        // the norms were rounded to BF16 by the save: compare with a model whose f32 tensors are rounded the same way
        const ref = await AutoModelForCausalLM.fromPretrained(src, { dtype: "bf16" });
        try {
          for (const t of Object.values(ref.stateDict())) t.data.set(t.data.map(ROUND.bf16));
          assertBits(logitsOf(again, ids), logitsOf(ref, ids), "reloaded logits");
        } finally {
          ref.dispose();
        }
      } finally {
        again.dispose();
      }
    } finally {
      lm.dispose();
      rmSync(out, { recursive: true, force: true });
    }
  });
});

describe("training on a half-precision base", () => {
  it("train() refuses to train a half-precision model's own weights (typed error, nothing changed), and trains an adapter on it", async () => {
    const lm = await AutoModelForCausalLM.fromPretrained(join(TRANSFORMERS, "llama", "model"), { dtype: "bf16" });
    try {
      const data = packSequences([[5, 17, 123, 42, 7, 250, 99, 3, 64, 180, 11, 31, 77, 201, 14, 9]], { seqLength: 8 });
      const before = lm.halfStateDict()["model.layers.0.self_attn.q_proj.weight"].view().slice();
      await assert.rejects(train(lm, data, { maxSteps: 1 }), { code: "MODEL_UNSUPPORTED", message: /bf16 and frozen/ });
      assert.equal(lm.busy, null);
      const peft = getPeftModel(lm, new ShiraConfig({ r: 2, targetModules: ["q_proj", "v_proj"] }));
      const res = await train(peft, data, { epochs: 3, batchSize: 2, lr: 1e-2 });
      assert.ok(res.losses[res.losses.length - 1] < res.losses[0], `${res.losses[0]} -> ${res.losses.at(-1)}`);
      peft.unload();
      assert.deepEqual(lm.halfStateDict()["model.layers.0.self_attn.q_proj.weight"].view().slice(), before);
    } finally {
      lm.dispose();
    }
  });

  const batch = { inputIds: new Int32Array([5, 17, 123, 42, 7, 250, 99, 3, 64, 180, 11, 31, 77, 201, 14, 9]), batchSize: 2, seqLength: 8 };

  for (const fam of FAMILIES) {
    it(`${fam}: causalLmStep gives the loss and the norm/bias gradients of the f32 model with rounded weights`, async () => {
      const { half, ref } = await pair(join(TRANSFORMERS, fam, "model"), "bf16");
      try {
        // the f32 reference trains the same parameters: the ones the half model holds in f32 (norms, biases, positions)
        const trainable = new Set(Object.keys(half.stateDict()));
        for (const [n, p] of ref.namedParameters()) p.requiresGrad = trainable.has(n);
        half.train();
        ref.train();
        const a = causalLmStep(half, batch, { backward: true });
        const b = causalLmStep(ref, batch, { backward: true });
        assert.equal(a.loss, b.loss);
        assert.equal(a.tokens, 14);
        const gRef = new Map(ref.namedParameters());
        let checked = 0;
        for (const [n, p] of half.namedParameters()) {
          assert.ok(p.grad, `${n} has a gradient`);
          assertBits(p.grad!.toArray(), gRef.get(n)!.grad!.toArray(), `grad ${n}`);
          checked++;
        }
        assert.ok(checked >= 2 * half.config.numLayers + (fam === "opt" ? 0 : 1));
      } finally {
        half.dispose();
        ref.dispose();
      }
    });
  }

  for (const fam of FAMILIES) {
    it(`${fam}: LoRA and SHiRA adapters on the bf16 base get the loss and gradients of the rounded f32 model`, async () => {
      const dir = join(TRANSFORMERS, fam, "model");
      const targets = fam === "gpt2" ? ["c_attn", "c_proj"] : ["q_proj", "v_proj", fam === "opt" ? "fc2" : "down_proj"];
      for (const kind of ["lora", "shira"] as const) {
        const { half, ref } = await pair(dir, "bf16");
        try {
          const grads = (lm: DecoderModel) => {
            manualSeed(3);
            const peft =
              kind === "lora"
                ? getLoraModel(lm, new LoraConfig({ r: 4, loraAlpha: 8, targetModules: targets, initLoraWeights: false }))
                : getPeftModel(lm, new ShiraConfig({ r: 4, targetModules: targets, randomSeed: 7, initWeights: false }));
            lm.train();
            const r = causalLmStep(lm, batch, { backward: true });
            const g = peft.trainableParameters().map((p) => p.grad!.toArray());
            return { loss: r.loss, g };
          };
          const a = grads(half);
          const b = grads(ref);
          assert.equal(a.loss, b.loss, `${kind} loss`);
          assert.equal(a.g.length, b.g.length);
          assert.ok(a.g.length >= 2 * targets.length);
          a.g.forEach((g, i) => assertBits(g, b.g[i], `${kind} gradient ${i}`));
        } finally {
          half.dispose();
          ref.dispose();
        }
      }
    });
  }

  it("training the half weights themselves is refused with a typed error", async () => {
    const lm = await AutoModelForCausalLM.fromPretrained(join(TRANSFORMERS, "llama", "model"), { dtype: "bf16" });
    try {
      lm.train();
      const [name, w] = lm.namedHalfTensors()[0];
      w.requiresGrad = true;
      assert.throws(() => causalLmStep(lm, batch, { backward: true }), { name: "ConfigError", code: "MODEL_UNSUPPORTED", message: new RegExp(`${name.replace(/\./g, "\\.")} is a bf16 weight marked trainable`) });
      // a forward-only pass (evaluation) still runs
      assert.ok(Number.isFinite(causalLmStep(lm, batch).loss));
    } finally {
      lm.dispose();
    }
  });
});

describe("HalfLinear and HalfEmbedding", () => {
  it("forward and backward equal a Linear holding the widened weight, bit for bit; clone copies; free frees", () => {
    const rt = runtime();
    const blocks0 = rt.liveBlocks;
    for (const dtype of ["bf16", "f16"] as const) {
      for (const [K, N, B] of [[1, 1, 1], [7, 5, 3], [64, 33, 9], [130, 70, 17]]) {
        const h = new HalfLinear(K, N, { dtype, bias: true });
        const w = Float32Array.from({ length: N * K }, (_, i) => Math.sin(i * 1.7) * 0.3);
        h.weightBits.setFromF32(w);
        h.bias!.data.set(Float32Array.from({ length: N }, (_, i) => i / 10));
        const lin = new Linear(K, N, { bias: true, init: false });
        lin.weight.data.set(w.map(ROUND[dtype]));
        lin.bias!.data.set(h.bias!.data);
        assertBits(h.weightF32(), lin.weight.toArray(), "widened weight");
        assert.equal(h.weightBytes, N * K * 2);
        const x = Tensor.from(Float32Array.from({ length: B * K }, (_, i) => Math.cos(i) * 2), [B, K]);
        const y1 = h.forward(x);
        const y2 = lin.forward(x);
        assertBits(y1.toArray(), y2.toArray(), `forward ${K}x${N}x${B}`);
        const gy = Tensor.from(Float32Array.from({ length: B * N }, (_, i) => Math.sin(i * 0.3)), [B, N]);
        lin.weight.requiresGrad = false;
        const g1 = h.backward(gy);
        const g2 = lin.backward(gy);
        assertBits(g1.toArray(), g2.toArray(), `backward ${K}x${N}x${B}`);
        assertBits(h.bias!.grad!.toArray(), lin.bias!.grad!.toArray(), "bias grad");
        const c = h.clone();
        assert.notEqual(c.weightPtr, h.weightPtr);
        assert.deepEqual(c.bitsView().slice(), h.bitsView().slice());
        for (const t of [x, y1, y2, gy, g1, g2]) t.free();
        for (const m of [h, lin, c]) m.free();
        assert.throws(() => h.weightPtr, { code: "USE_AFTER_FREE" });
      }
    }
    // an embedding's rows are the widened table rows
    const e = new HalfEmbedding(10, 6, { dtype: "f16" });
    const table = Float32Array.from({ length: 60 }, (_, i) => (i - 30) / 7);
    e.weight.setFromF32(table);
    const ids = Tensor.from([3, 0, 9], [3]);
    const y = e.forward(ids);
    assert.deepEqual(Array.from(y.toArray()), [...table.subarray(18, 24), ...table.subarray(0, 6), ...table.subarray(54, 60)].map(ROUND.f16));
    const bad = Tensor.from([10], [1]);
    assert.throws(() => e.forward(bad), { code: "SHAPE_MISMATCH", message: /id 10 at position 0/ });
    for (const t of [ids, y, bad]) t.free();
    e.free();
    assert.ok(e.weight.freed);
    assert.equal(rt.liveBlocks, blocks0, "every block freed");
    // a shared table must match in shape and dtype
    const wt = new HalfWeight(4, 3, "bf16");
    assert.throws(() => new HalfLinear(4, 3, { dtype: "bf16", weightBits: wt }), { code: "SHAPE_MISMATCH" });
    assert.throws(() => new HalfLinear(3, 4, { dtype: "f16", weightBits: wt }), { code: "CONFIG_INVALID" });
    wt.free();
  });
});

/**
 * The checkpoint in `dir` as a file map whose tensors are stored as `dtypeOf(name)` (F32 values rounded as the
 * writer does), in `shards` files (with an index when > 1), with `config` merged into config.json.
 */
function storedAs(dir: string, dtypeOf: (name: string) => "F32" | "BF16" | "F16", shards = 1, config: Record<string, unknown> = {}): Record<string, Uint8Array> {
  const file = readSafetensors(readFileSync(join(dir, "model.safetensors")));
  const names = file.names().sort();
  const cfg = { ...(JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>), ...config };
  const out: Record<string, Uint8Array> = { "config.json": new TextEncoder().encode(JSON.stringify(cfg)) };
  const weightMap: Record<string, string> = {};
  for (let s = 0; s < shards; s++) {
    const fname = shards === 1 ? "model.safetensors" : `model-0000${s + 1}-of-0000${shards}.safetensors`;
    const tensors: Record<string, { dtype: "F32" | "BF16" | "F16"; shape: number[]; data: Float32Array }> = {};
    for (const n of names.filter((_, i) => i % shards === s)) {
      tensors[n] = { dtype: dtypeOf(n), shape: [...file.entry(n).shape], data: file.f32(n) };
      weightMap[n] = fname;
    }
    out[fname] = writeSafetensors(tensors, { format: "pt" });
  }
  if (shards > 1) out["model.safetensors.index.json"] = new TextEncoder().encode(JSON.stringify({ metadata: {}, weight_map: weightMap }));
  return out;
}

describe("the default dtype is the checkpoint's stored dtype", () => {
  it("F32 checkpoints load as f32; the fixture's BF16 / F16 copies as bf16 / f16 with the file's bits, as with an explicit dtype", async () => {
    for (const fam of FAMILIES) {
      const lm = await AutoModelForCausalLM.fromPretrained(join(TRANSFORMERS, fam, "model"));
      assert.equal(lm.dtype, "f32", fam);
      assert.equal(lm.namedHalfTensors().length, 0);
      lm.dispose();
    }
    const exp = readExpected(join(TRANSFORMERS, "llama"));
    for (const dtype of ["bf16", "f16"] as const) {
      const dir = join(TRANSFORMERS, "llama", `model_${dtype}`);
      const auto = await AutoModelForCausalLM.fromPretrained(dir);
      const explicit = await AutoModelForCausalLM.fromPretrained(dir, { dtype });
      const widened = await AutoModelForCausalLM.fromPretrained(dir, { dtype: "f32" });
      try {
        assert.equal(auto.dtype, dtype);
        assert.equal(widened.dtype, "f32");
        const file = readSafetensors(readFileSync(join(dir, "model.safetensors")));
        for (const [n, t] of Object.entries(auto.halfStateDict())) {
          const raw = file.get(n).bytes.slice();
          assert.deepEqual(t.view().slice(), new Uint16Array(raw.buffer, 0, raw.length / 2), n);
        }
        const ids = exp.ids("input_ids");
        assertBits(logitsOf(auto, ids), logitsOf(explicit, ids), "default = explicit dtype");
        assertBits(logitsOf(auto, ids), logitsOf(widened, ids), "= the widened f32 model");
        assert.deepEqual((await auto.generate(ids, { maxNewTokens: 20 })).sequences, exp.ids(`${dtype}.generated_ids`));
      } finally {
        auto.dispose();
        explicit.dispose();
        widened.dispose();
      }
    }
  });

  it("every family, sharded: all-BF16 / all-F16 shards load half; the weights are the stored bits", async () => {
    for (const fam of FAMILIES) {
      const dir = join(TRANSFORMERS, fam, "model");
      for (const [stored, dtype] of [["BF16", "bf16"], ["F16", "f16"]] as const) {
        const files = storedAs(dir, () => stored, 3);
        const lm = await AutoModelForCausalLM.fromPretrained(files);
        try {
          assert.equal(lm.dtype, dtype, `${fam} ${stored}`);
          const want = await AutoModelForCausalLM.fromPretrained(files, { dtype: "f32" });
          try {
            const w = want.stateDict();
            for (const [n, t] of Object.entries(lm.halfStateDict())) assertBits(t.toFloat32(), w[n].toArray(), `${fam} ${n}`);
          } finally {
            want.dispose();
          }
        } finally {
          lm.dispose();
        }
      }
    }
  });

  it("the rule looks at the weight matrices only: norms/biases/positions in another dtype do not count; mixed matrices load f32; torch_dtype is not read", async () => {
    const cases: [string, string, (n: string) => "F32" | "BF16" | "F16", Record<string, unknown>, string][] = [
      // BF16 matrices with F32 norms, biases and learned positions (as mixed-precision checkpoints store them)
      ["opt", "BF16 matrices, F32 norms/biases/positions", (n) => (F32_NAMES.test(n) ? "F32" : "BF16"), {}, "bf16"],
      ["gpt2", "F16 matrices, F32 norms/biases/positions", (n) => (F32_NAMES.test(n) ? "F32" : "F16"), {}, "f16"],
      // one matrix F32 among BF16 ones: only f32 holds every value exactly
      ["llama", "one F32 matrix", (n) => (n.endsWith("layers.1.mlp.down_proj.weight") ? "F32" : "BF16"), {}, "f32"],
      ["qwen2", "BF16 and F16 matrices", (n) => (n.includes("layers.0.") ? "F16" : "BF16"), {}, "f32"],
      // config.json's torch_dtype disagrees with the files: the files win
      ["llama", "F32 files, torch_dtype bfloat16", () => "F32", { torch_dtype: "bfloat16" }, "f32"],
      ["llama", "BF16 files, torch_dtype float32", () => "BF16", { torch_dtype: "float32" }, "bf16"],
    ];
    for (const [fam, what, dtypeOf, cfg, want] of cases) {
      const lm = await AutoModelForCausalLM.fromPretrained(storedAs(join(TRANSFORMERS, fam, "model"), dtypeOf, 2, cfg));
      try {
        assert.equal(lm.dtype, want, `${fam}: ${what}`);
      } finally {
        lm.dispose();
      }
    }
  });

  it("a stored copy of a tied head does not count (it is ignored on load)", async () => {
    const dir = join(TRANSFORMERS, "qwen2", "model");
    const files = storedAs(dir, () => "BF16");
    const file = readSafetensors(files["model.safetensors"]);
    const tensors: Record<string, { dtype: "F32" | "BF16"; shape: number[]; data: Float32Array }> = {};
    for (const n of file.names()) tensors[n] = { dtype: "BF16", shape: [...file.entry(n).shape], data: file.f32(n) };
    tensors["lm_head.weight"] = { dtype: "F32", shape: [...file.entry("model.embed_tokens.weight").shape], data: file.f32("model.embed_tokens.weight") };
    const lm = await AutoModelForCausalLM.fromPretrained({ ...files, "model.safetensors": writeSafetensors(tensors, { format: "pt" }) });
    assert.equal(lm.dtype, "bf16");
    lm.dispose();
  });

  it("isHalfTensorName names exactly the tensors a half model holds half (a tied head shares the embedding's)", () => {
    for (const fam of FAMILIES) {
      const cfg = JSON.parse(readFileSync(join(TRANSFORMERS, fam, "model", "config.json"), "utf8")) as Record<string, unknown>;
      const lm = AutoModelForCausalLM.fromConfig(cfg, { dtype: "bf16" });
      try {
        const half = new Set(Object.keys(lm.halfStateDict()));
        const all = [...half, ...Object.keys(lm.stateDict())];
        assert.ok(all.length > 10);
        for (const n of all) assert.equal(isHalfTensorName(n, lm.config, lm.family), half.has(n) && !(lm.config.tieWordEmbeddings && n === "lm_head.weight"), `${fam} ${n}`);
        // names that are no tensor of this model
        const layer = fam === "gpt2" ? "transformer.h" : fam === "opt" ? "model.decoder.layers" : "model.layers";
        const dense = fam === "gpt2" ? "attn.c_attn" : "self_attn.q_proj";
        assert.ok(isHalfTensorName(`${layer}.1.${dense}.weight`, lm.config, lm.family));
        for (const n of [`${layer}.2.${dense}.weight`, `${layer}.01.${dense}.weight`, `${layer}.1.${dense}.bias`, `${layer}.x.${dense}.weight`, `${dense}.weight`]) assert.equal(isHalfTensorName(n, lm.config, lm.family), false, `${fam} ${n}`);
      } finally {
        lm.dispose();
      }
    }
  });

  it("fromConfig keeps f32 as its default (no checkpoint to read a dtype from)", () => {
    const cfg = JSON.parse(readFileSync(join(TRANSFORMERS, "llama", "model_bf16", "config.json"), "utf8")) as Record<string, unknown>;
    const lm = AutoModelForCausalLM.fromConfig(cfg);
    assert.equal(lm.dtype, "f32");
    lm.dispose();
  });

  it("the 4 GiB check uses the chosen dtype: a Qwen2.5-1.5B-shaped config is refused for an F32 file only (before any weight is read)", async () => {
    const cfg = { model_type: "qwen2", vocab_size: 151936, hidden_size: 1536, intermediate_size: 8960, num_hidden_layers: 28, num_attention_heads: 12, num_key_value_heads: 2, tie_word_embeddings: true };
    // a tiny file: only its header is read before the checks
    for (const [stored, code] of [["F32", "OUT_OF_MEMORY"], ["BF16", "STATE_DICT_MISMATCH"]] as const) {
      const files = {
        "config.json": new TextEncoder().encode(JSON.stringify(cfg)),
        "model.safetensors": writeSafetensors({ "model.embed_tokens.weight": { dtype: stored, shape: [4, 4], data: new Float32Array(16) } }),
      };
      const live0 = runtime().liveBytes;
      await assert.rejects(AutoModelForCausalLM.fromPretrained(files), { code }, stored);
      assert.equal(runtime().liveBytes, live0);
    }
  });
});

describe("grad / snip mask calibration on a half base", () => {
  const tokens = Int32Array.from({ length: 96 }, (_, i) => (i * 37 + ((i * i) % 11)) % 300);
  const cal = { inputIds: tokens, seqLength: 12, batchSize: 3, maxBatches: 3 };

  for (const fam of ["llama", "gpt2"] as const) {
    for (const dtype of ["bf16", "f16"] as const) {
      it(`${fam} ${dtype} (${fam === "gpt2" ? "HalfConv1D" : "HalfLinear"}): the gradient sums and the masks equal those of the f32 model with rounded weights; nothing changes`, async () => {
        const { half, ref } = await pair(join(TRANSFORMERS, fam, "model"), dtype);
        let live0 = -1;
        try {
          const targets = fam === "gpt2" ? ["c_attn", "c_fc", "mlp.c_proj"] : ["q_proj", "v_proj", "down_proj"];
          const names = half.namedModules().map(([n]) => n).filter((n) => targets.some((t) => n.endsWith("." + t)));
          assert.equal(names.length, 3 * half.config.numLayers);
          const bitsBefore = half.namedHalfTensors().map(([, t]) => t.view().slice());
          for (const kind of ["grad", "snip"] as const) {
            const a = calibrationGradients(half, names, cal, kind);
            const b = calibrationGradients(ref, names, cal, kind);
            for (const n of names) {
              assertBits(a.get(n)!, b.get(n)!, `${kind} ${n}`);
              assert.ok(a.get(n)!.some((v) => v !== 0), `${kind} ${n}: a gradient reached the layer`);
            }
            // after the first pass (which may grow the models' RoPE tables), calibration keeps nothing
            if (live0 < 0) live0 = runtime().liveBytes;
          }
          assert.equal(runtime().liveBytes, live0, "the gradient sinks are freed");
          for (const [n, m] of half.namedModules()) if (m instanceof HalfLinear || m instanceof HalfConv1D) assert.equal(m.weightGradSink, null, n);
          half.namedHalfTensors().forEach(([n, t], i) => assert.deepEqual(t.view().slice(), bitsBefore[i], `${n} unchanged`));
          // the masks getPeftModel builds from them; a second adapter calibrates with the first one fused
          for (const kind of ["grad", "snip"] as const) {
            const masks = (lm: DecoderModel) => {
              const peft = getPeftModel(lm, new ShiraConfig({ r: 2, maskType: kind, targetModules: targets }), "first", { calibration: cal });
              peft.switchTo("first");
              peft.addAdapter("second", new ShiraConfig({ r: 3, maskType: kind, targetModules: targets }), { calibration: cal });
              const out = peft.shiraLayers().flatMap(([n, l]) => ["first", "second"].map((an) => [`${n} ${an}`, l.adapters.get(an)!.rowsCols()] as const));
              peft.unload();
              return out;
            };
            const ma = masks(half);
            const mb = masks(ref);
            assert.equal(ma.length, 2 * names.length);
            ma.forEach(([n, rc], i) => {
              assert.equal(n, mb[i][0]);
              assert.deepEqual(rc, mb[i][1], `${kind} mask ${n}`);
            });
          }
          half.namedHalfTensors().forEach(([n, t], i) => assert.deepEqual(t.view().slice(), bitsBefore[i], `${n} unchanged after the adapters`));
        } finally {
          half.dispose();
          ref.dispose();
        }
      });
    }
  }

  it("a supervised model of HalfLinear layers calibrates like its f32 twin (the plain forward/backward path)", () => {
    for (const dtype of ["bf16", "f16"] as const) {
      const rnd = (i: number) => Math.sin(i * 12.9898) * 0.5;
      const h1 = new HalfLinear(8, 16, { dtype });
      const h2 = new HalfLinear(16, 5, { dtype });
      h1.weightBits.setFromF32(Float32Array.from({ length: 128 }, (_, i) => rnd(i)));
      h2.weightBits.setFromF32(Float32Array.from({ length: 80 }, (_, i) => rnd(i + 500)));
      const model = new Sequential({ fc1: h1, act: new ReLU(), fc2: h2 });
      const l1 = new Linear(8, 16);
      const l2 = new Linear(16, 5);
      l1.weight.data.set(h1.weightF32());
      l2.weight.data.set(h2.weightF32());
      l1.bias!.data.set(h1.bias!.data);
      l2.bias!.data.set(h2.bias!.data);
      const twin = new Sequential({ fc1: l1, act: new ReLU(), fc2: l2 });
      const data = { inputs: Float32Array.from({ length: 40 * 8 }, (_, i) => rnd(i + 900) * 3), labels: Float32Array.from({ length: 40 }, (_, i) => i % 5), inputSize: 8, batchSize: 16 };
      for (const kind of ["grad", "snip"] as const) {
        const a = calibrationGradients(model, ["fc1", "fc2"], data, kind);
        const b = calibrationGradients(twin, ["fc1", "fc2"], data, kind);
        for (const n of ["fc1", "fc2"]) assertBits(a.get(n)!, b.get(n)!, `${dtype} ${kind} ${n}`);
      }
      model.free();
      twin.free();
    }
  });

  it("a module that is not a dense layer is refused with a typed error naming it", async () => {
    const lm = await AutoModelForCausalLM.fromPretrained(join(TRANSFORMERS, "llama", "model"), { dtype: "bf16" });
    try {
      assert.throws(() => calibrationGradients(lm, ["model.layers.0.input_layernorm"], cal, "grad"), { code: "SHIRA_NOT_LINEAR", message: /model\.layers\.0\.input_layernorm is a RMSNorm/ });
    } finally {
      lm.dispose();
    }
  });
});

describe("HalfConv1D (GPT-2's Conv1D over a half weight)", () => {
  it("forward and backward equal a Conv1D holding the widened [in, out] weight, bit for bit; clone copies; free frees", () => {
    const rt = runtime();
    const blocks0 = rt.liveBlocks;
    for (const dtype of ["bf16", "f16"] as const) {
      for (const [K, N, B] of [[1, 1, 1], [7, 5, 3], [64, 33, 9], [130, 70, 17]]) {
        const h = new HalfConv1D(N, K, { dtype });
        assert.deepEqual(h.weightBits.shape, [K, N]);
        const w = Float32Array.from({ length: K * N }, (_, i) => Math.sin(i * 1.3) * 0.4);
        h.weightBits.setFromF32(w);
        h.bias!.data.set(Float32Array.from({ length: N }, (_, i) => (i - 3) / 9));
        const conv = new Conv1D(N, K, { init: false });
        conv.weight.data.set(w.map(ROUND[dtype]));
        conv.bias!.data.set(h.bias!.data);
        assertBits(h.weightF32(), conv.weight.toArray(), "widened weight");
        assert.equal(h.weightBytes, N * K * 2);
        h.train();
        conv.train();
        const x = Tensor.from(Float32Array.from({ length: B * K }, (_, i) => Math.cos(i * 0.9) * 2), [B, K]);
        const y1 = h.forward(x);
        const y2 = conv.forward(x);
        assertBits(y1.toArray(), y2.toArray(), `forward ${K}x${N}x${B}`);
        const gy = Tensor.from(Float32Array.from({ length: B * N }, (_, i) => Math.sin(i * 0.37)), [B, N]);
        conv.weight.requiresGrad = false;
        const g1 = h.backward(gy);
        const g2 = conv.backward(gy);
        assertBits(g1.toArray(), g2.toArray(), `backward ${K}x${N}x${B}`);
        assertBits(h.bias!.grad!.toArray(), conv.bias!.grad!.toArray(), "bias grad");
        const c = h.clone();
        assert.notEqual(c.weightPtr, h.weightPtr);
        assert.deepEqual(c.bitsView().slice(), h.bitsView().slice());
        assert.deepEqual(Array.from(c.bias!.data), Array.from(h.bias!.data));
        for (const t of [x, y1, y2, gy, g1, g2]) t.free();
        for (const m of [h, conv, c]) m.free();
        assert.throws(() => h.weightPtr, { code: "USE_AFTER_FREE" });
      }
    }
    assert.equal(rt.liveBlocks, blocks0, "every block freed");
  });

  it("refuses bad arguments and a trainable weight with typed errors", () => {
    assert.throws(() => new HalfConv1D(0, 4, { dtype: "bf16" }), { code: "SHAPE_MISMATCH", message: /nf must be a positive integer, got 0/ });
    assert.throws(() => new HalfConv1D(4, 4, { dtype: "f32" as never }), { code: "CONFIG_INVALID", message: /HalfConv1D: dtype must be "bf16" or "f16", got "f32"/ });
    assert.throws(() => new HalfConv1D(4, 4, null as never), { code: "CONFIG_INVALID" });
    const h = new HalfConv1D(3, 5, { dtype: "f16" });
    const bad = Tensor.zeros([2, 3]);
    assert.throws(() => h.forward(bad), { code: "SHAPE_MISMATCH", message: /does not end in nx = 5/ });
    h.train();
    const x = Tensor.zeros([2, 5]);
    const y = h.forward(x);
    h.weightBits.requiresGrad = true;
    assert.throws(() => h.backward(y), { code: "MODEL_UNSUPPORTED", message: /f16 weight asks for a gradient/ });
    for (const t of [bad, x, y]) t.free();
    h.free();
  });
});

describe("half-precision loading errors", () => {
  it("the 4 GiB check counts 2 bytes per half weight: a Qwen2.5-1.5B config is refused in f32 only", () => {
    const cfg = { model_type: "qwen2", vocab_size: 151936, hidden_size: 1536, intermediate_size: 8960, num_hidden_layers: 28, num_attention_heads: 12, num_key_value_heads: 2, tie_word_embeddings: true };
    assert.throws(() => parseConfig(cfg), { code: "OUT_OF_MEMORY", message: /5\.8 GiB of float32 weights/ });
    assert.equal(parseConfig(cfg, { bytesPerWeight: 2 }).numLayers, 28);
    assert.throws(() => AutoModelForCausalLM.fromConfig({ ...cfg, num_hidden_layers: 56 }, { dtype: "bf16" }), { code: "OUT_OF_MEMORY", message: /of half-precision weights/ });
  });

  it("a bad dtype is CONFIG_INVALID, and nothing is allocated", async () => {
    const live0 = runtime().liveBytes;
    await assert.rejects(AutoModelForCausalLM.fromPretrained(join(TRANSFORMERS, "llama", "model"), { dtype: "fp16" as never }), { code: "CONFIG_INVALID", message: /dtype must be "f32", "bf16" or "f16", got "fp16"/ });
    await assert.rejects(AutoModelForCausalLM.fromPretrained(join(TRANSFORMERS, "gpt2", "model"), { dtype: "F16" as never }), { code: "CONFIG_INVALID", message: /got "F16"/ });
    assert.equal(runtime().liveBytes, live0, "nothing leaked");
  });
});
