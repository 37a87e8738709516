// Hugging Face decoder models against transformers' own outputs (tests/fixtures/transformers, produced by
// OPTForCausalLM / GPT2LMHeadModel / LlamaForCausalLM / Qwen2ForCausalLM at transformers v4.44, float32, eager).
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, it, before, after } from "node:test";
import {
  AutoModelForCausalLM,
  PeftModel,
  readSafetensors,
  writeSafetensors,
  runtime,
  ShapeError,
  ConfigError,
  ShiraConfig,
  Tensor,
  getPeftModel,
  f16ToF32,
  f32ToF16,
  bf16ToF32,
  f32ToBf16,
  type DecoderModel,
} from "../src/node.js";
import { LOGITS_ATOL, TRANSFORMERS, TRANSFORMERS_EXTRA, maxAbsDiff, readExpected, type Expected } from "./helpers/transformers.js";

const FAMILIES = ["opt", "gpt2", "llama", "qwen2"] as const;

function logitsOf(model: DecoderModel, ids: number[][], opts: Parameters<DecoderModel["forward"]>[1] = {}): Float32Array {
  const t = model.forward(ids, opts);
  const d = t.toArray();
  t.free();
  return d;
}

/** The checkpoint's files in memory, with the base model's prefix (`model.`, `transformer.`) removed from every key. */
function withoutPrefix(dir: string, prefix: string): Record<string, Uint8Array> {
  const file = readSafetensors(readFileSync(join(dir, "model.safetensors")));
  const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
  for (const n of file.names()) tensors[n.startsWith(prefix) ? n.slice(prefix.length) : n] = { dtype: "F32", shape: [...file.entry(n).shape], data: file.f32(n) };
  return {
    "config.json": readFileSync(join(dir, "config.json")),
    "model.safetensors": writeSafetensors(tensors, { format: "pt" }),
  };
}

/** Prefill 12 tokens, then 20 single steps through a KV cache: every step against transformers' incremental logits. */
function checkIncremental(model: DecoderModel, exp: Expected): void {
  const ids = exp.ids("generated_ids")[0];
  const want = exp.f32("incremental_logits").data;
  const V = model.config.vocabSize;
  const cache = model.createCache({ batchSize: 1, maxLength: 32 });
  try {
    assert.ok(maxAbsDiff(logitsOf(model, [ids.slice(0, 12)], { pastKeyValues: cache }), want, 0, 0, 12 * V) <= LOGITS_ATOL, "prefill");
    for (let t = 12; t < 32; t++) {
      const d = maxAbsDiff(logitsOf(model, [[ids[t]]], { pastKeyValues: cache }), want, 0, t * V, V);
      assert.ok(d <= LOGITS_ATOL, `step ${t}: max |diff| ${d}`);
    }
    assert.equal(cache.length, 32);
  } finally {
    cache.dispose();
  }
}

/** Largest logit difference at the real (mask 1) positions of the `[2, 12]` padded batch. */
function paddedDiff(model: DecoderModel, exp: Expected, explicitPositions: boolean): number {
  const ids = exp.ids("pad.input_ids");
  const mask = exp.ids("pad.attention_mask");
  const opts = explicitPositions && exp.has("pad.position_ids") ? { attentionMask: mask, positionIds: exp.ids("pad.position_ids") } : { attentionMask: mask };
  const got = logitsOf(model, ids, opts);
  const want = exp.f32("pad.logits").data;
  const V = model.config.vocabSize;
  let d = 0;
  for (let b = 0; b < 2; b++) for (let t = 0; t < 12; t++) if (mask[b][t]) d = Math.max(d, maxAbsDiff(got, want, (b * 12 + t) * V, (b * 12 + t) * V, V));
  return d;
}

for (const fam of FAMILIES) {
  describe(`decoder ${fam}`, () => {
    const dir = join(TRANSFORMERS, fam);
    let model: DecoderModel;
    let exp: Expected;
    const prompt = () => exp.ids("input_ids");
    before(async () => {
      exp = readExpected(dir);
      model = await AutoModelForCausalLM.fromPretrained(join(dir, "model"));
    });
    after(() => model.dispose());

    it("builds the module tree with Hugging Face's names and loads every tensor", () => {
      const sd = model.stateDict();
      const file = readSafetensors(readFileSync(join(dir, "model", "model.safetensors")));
      for (const n of file.names()) {
        assert.ok(n in sd, `${n} in the state dict`);
        assert.deepEqual(sd[n].toArray(), file.f32(n), n);
      }
      // tied heads: the only extra key is lm_head.weight, sharing the embedding's storage
      const extra = Object.keys(sd).filter((k) => !file.has(k));
      assert.deepEqual(extra, file.has("lm_head.weight") ? [] : ["lm_head.weight"]);
      if (!file.has("lm_head.weight")) assert.equal(sd["lm_head.weight"].ptr, sd[fam === "gpt2" ? "transformer.wte.weight" : fam === "opt" ? "model.decoder.embed_tokens.weight" : "model.embed_tokens.weight"].ptr);
    });

    it("prompt logits match transformers within 1e-4", () => {
      const want = exp.f32("logits");
      const got = logitsOf(model, prompt());
      assert.deepEqual([...want.shape], [1, 12, model.config.vocabSize]);
      const d = maxAbsDiff(got, want.data);
      assert.ok(d <= LOGITS_ATOL, `max |diff| ${d}`);
    });

    it("full-sequence logits match (32 positions)", () => {
      const want = exp.f32("full_sequence_logits");
      const d = maxAbsDiff(logitsOf(model, exp.ids("generated_ids")), want.data);
      assert.ok(d <= LOGITS_ATOL, `max |diff| ${d}`);
    });

    it("incremental decoding through the KV cache equals transformers' incremental logits", () => checkIncremental(model, exp));

    it("greedy generation reproduces transformers' 20 tokens exactly", async () => {
      const r = await model.generate(prompt(), { maxNewTokens: 20 });
      assert.deepEqual(r.sequences, exp.ids("generated_ids"));
      assert.equal(r.stoppedBy, "maxNewTokens");
    });

    it("left-padded batches: real positions match, and batched greedy generation matches", async () => {
      const d = paddedDiff(model, exp, true);
      assert.ok(d <= LOGITS_ATOL, `max |diff| at real positions ${d}`);
      // without explicit positions the generation rule (cumsum(mask) - 1) gives the same logits
      const d2 = paddedDiff(model, exp, false);
      assert.ok(d2 <= LOGITS_ATOL, `implicit positions: ${d2}`);
      const r = await model.generate(exp.ids("pad.input_ids"), { attentionMask: exp.ids("pad.attention_mask"), maxNewTokens: 20 });
      assert.deepEqual(r.sequences, exp.ids("pad.generated_ids"));
    });

    it("a PEFT SHiRA adapter merged gives transformers' merged logits and tokens; unmerge restores the base bit for bit", async () => {
      const before = model.stateDict();
      const baseCopy = new Map(Object.entries(before).map(([k, t]) => [k, t.toArray()]));
      const baseLogits = logitsOf(model, prompt());
      const peft = await PeftModel.fromPretrained(model, join(dir, "shira"));
      try {
        // unfused (adapter active, weights untouched) and fused give transformers' merged logits
        const unfused = logitsOf(model, prompt());
        assert.ok(maxAbsDiff(unfused, exp.f32("shira.logits").data) <= LOGITS_ATOL, "unfused");
        peft.merge();
        const merged = logitsOf(model, prompt());
        assert.ok(maxAbsDiff(merged, exp.f32("shira.logits").data) <= LOGITS_ATOL, "merged");
        assert.ok(maxAbsDiff(logitsOf(model, exp.ids("shira.generated_ids")), exp.f32("shira.full_sequence_logits").data) <= LOGITS_ATOL);
        const r = await model.generate(prompt(), { maxNewTokens: 20 });
        assert.deepEqual(r.sequences, exp.ids("shira.generated_ids"));
        peft.unmerge();
        for (const [k, t] of Object.entries(peft.model.stateDict())) {
          const key = k.replace(".base_layer.", ".");
          if (baseCopy.has(key)) assert.deepEqual(t.toArray(), baseCopy.get(key), `${key} restored`);
        }
        assert.deepEqual(peft.withAdaptersDisabled(() => logitsOf(model, prompt())), baseLogits);
      } finally {
        peft.unload();
      }
      assert.deepEqual(logitsOf(model, prompt()), baseLogits, "after unload");
    });

    it("loads the same checkpoint with the base model's prefix removed from the keys (as on the Hub)", async () => {
      const prefix = fam === "gpt2" ? "transformer." : "model.";
      const m2 = await AutoModelForCausalLM.fromPretrained(withoutPrefix(join(dir, "model"), prefix));
      try {
        assert.deepEqual(logitsOf(m2, prompt()), logitsOf(model, prompt()));
      } finally {
        m2.dispose();
      }
    });
  });
}

describe("decoder llama extras: half-precision and sharded checkpoints", () => {
  const dir = join(TRANSFORMERS, "llama");
  let exp: Expected;
  let f32: DecoderModel;
  before(async () => {
    exp = readExpected(dir);
    f32 = await AutoModelForCausalLM.fromPretrained(join(dir, "model"));
  });
  after(() => f32.dispose());
  const prompt = () => exp.ids("input_ids");

  for (const dt of ["bf16", "f16"] as const) {
    it(`${dt.toUpperCase()} checkpoint: logits and greedy tokens match transformers' ${dt} model (loaded as ${dt} by default, and widened to f32)`, async () => {
      for (const dtype of [undefined, "f32"] as const) {
        const m = await AutoModelForCausalLM.fromPretrained(join(dir, `model_${dt}`), dtype ? { dtype } : {});
        try {
          assert.equal(m.dtype, dtype ?? dt);
          const d = maxAbsDiff(logitsOf(m, prompt()), exp.f32(`${dt}.logits`).data);
          assert.ok(d <= LOGITS_ATOL, `max |diff| ${d}`);
          assert.deepEqual((await m.generate(prompt(), { maxNewTokens: 20 })).sequences, exp.ids(`${dt}.generated_ids`));
        } finally {
          m.dispose();
        }
      }
    });
  }

  it("a two-shard checkpoint loads to bit-identical logits, with progress reported per tensor", async () => {
    const seen: number[] = [];
    const m = await AutoModelForCausalLM.fromPretrained(join(dir, "model_sharded"), { onProgress: (p) => seen.push(p.loadedBytes) });
    try {
      assert.deepEqual(logitsOf(m, prompt()), logitsOf(f32, prompt()));
      const names = readdirSync(join(dir, "model_sharded")).filter((f) => f.endsWith(".safetensors"));
      assert.equal(names.length, 2);
      assert.equal(seen.length, Object.keys(m.stateDict()).length);
      assert.ok(seen.every((v, i) => i === 0 || v > seen[i - 1]));
    } finally {
      m.dispose();
    }
  });

  it("an adapter with I64 indices behaves like the I32 one", async () => {
    const peft = await PeftModel.fromPretrained(f32, join(dir, "shira_i64"));
    try {
      peft.merge();
      assert.ok(maxAbsDiff(logitsOf(f32, prompt()), exp.f32("shira.logits").data) <= LOGITS_ATOL);
    } finally {
      peft.unload();
    }
  });

  it("loads from a file map (browser file picker) exactly as from the folder", async () => {
    const files: Record<string, Uint8Array> = {};
    for (const f of readdirSync(join(dir, "model"))) files[f] = new Uint8Array(readFileSync(join(dir, "model", f)));
    const m = await AutoModelForCausalLM.fromPretrained(files);
    try {
      assert.deepEqual(logitsOf(m, prompt()), logitsOf(f32, prompt()));
      assert.equal(m.generationConfig["eosTokenId"], 2);
    } finally {
      m.dispose();
    }
  });

  it("decode allocates nothing: the wasm heap is unchanged over 20 cached decode steps", () => {
    const cache = f32.createCache({ batchSize: 1, maxLength: 40 });
    const rt = runtime();
    const logits = rt.allocF32(300);
    try {
      f32.run(Int32Array.from(prompt()[0]), 1, 12, cache, null, null, true, logits.ptr);
      f32.run(Int32Array.of(7), 1, 1, cache, null, null, true, logits.ptr);
      const live = rt.liveBytes;
      const mem = rt.memoryBytes;
      for (let i = 0; i < 20; i++) f32.run(Int32Array.of(rt.k.f32_argmax(logits.ptr, 300)), 1, 1, cache, null, null, true, logits.ptr);
      assert.equal(rt.liveBytes, live);
      assert.equal(rt.memoryBytes, mem);
    } finally {
      logits.free();
      cache.dispose();
    }
  });
});

describe("decoder loading errors", () => {
  const dir = join(TRANSFORMERS, "llama", "model");
  const files = (): Record<string, Uint8Array> => {
    const out: Record<string, Uint8Array> = {};
    for (const f of readdirSync(dir)) out[f] = new Uint8Array(readFileSync(join(dir, f)));
    return out;
  };
  it("an unknown model_type is a ConfigError listing the supported types", async () => {
    const f = files();
    f["config.json"] = new TextEncoder().encode(JSON.stringify({ ...JSON.parse(new TextDecoder().decode(f["config.json"])), model_type: "bert" }));
    await assert.rejects(AutoModelForCausalLM.fromPretrained(f), (e: unknown) => e instanceof ConfigError && /"bert".*opt, gpt2|llama, mistral, qwen2, opt, gpt2/.test((e as Error).message));
  });
  it("an unsupported rope_scaling type is named", async () => {
    const f = files();
    f["config.json"] = new TextEncoder().encode(JSON.stringify({ ...JSON.parse(new TextDecoder().decode(f["config.json"])), rope_scaling: { rope_type: "yarn", factor: 2 } }));
    await assert.rejects(AutoModelForCausalLM.fromPretrained(f), (e: unknown) => e instanceof ConfigError && /yarn/.test((e as Error).message));
  });
  it("missing, unexpected and mis-shaped tensors are all named", async () => {
    const f = files();
    const st = readSafetensors(f["model.safetensors"]);
    const t: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
    for (const n of st.names()) t[n] = { dtype: "F32", shape: [...st.entry(n).shape], data: st.f32(n) };
    delete t["model.layers.1.mlp.up_proj.weight"];
    t["model.layers.0.extra.weight"] = { dtype: "F32", shape: [2], data: new Float32Array(2) };
    t["model.norm.weight"] = { dtype: "F32", shape: [63], data: new Float32Array(63) };
    f["model.safetensors"] = writeSafetensors(t);
    await assert.rejects(AutoModelForCausalLM.fromPretrained(f), (e: unknown) => {
      const m = (e as Error).message;
      return e instanceof ShapeError && m.includes("model.layers.1.mlp.up_proj.weight") && m.includes("model.layers.0.extra.weight") && m.includes("model.norm.weight: file [63], model [64]");
    });
  });
  it("a missing config.json or weights file is a typed error naming the file", async () => {
    const f = files();
    delete f["model.safetensors"];
    await assert.rejects(AutoModelForCausalLM.fromPretrained(f), /model\.safetensors/);
    await assert.rejects(AutoModelForCausalLM.fromPretrained({}), /config\.json/);
  });
  it("an aborted load rejects with ABORTED and frees what it allocated", async () => {
    const rt = runtime();
    const live = rt.liveBytes;
    const ac = new AbortController();
    await assert.rejects(
      AutoModelForCausalLM.fromPretrained(files(), { signal: ac.signal, onProgress: (p) => p.loadedTensors === 3 && ac.abort() }),
      (e: unknown) => (e as { code?: string }).code === "ABORTED",
    );
    assert.equal(rt.liveBytes, live);
  });
});

// The project's own fixtures for what the shared ones lack (scripts/fixtures/make_decoder_fixtures.py, following
// transformers v4.44's modeling code line by line; validated by its --check mode against the shared fixtures).
const EXTRA = ["mistral", "opt_postln_proj", "llama_rope_linear", "llama_rope_dynamic", "llama_rope_llama3", "llama_bias"] as const;
for (const name of EXTRA) {
  describe(`decoder ${name}`, () => {
    const dir = join(TRANSFORMERS_EXTRA, name);
    let model: DecoderModel;
    let exp: Expected;
    before(async () => {
      exp = readExpected(dir);
      model = await AutoModelForCausalLM.fromPretrained(join(dir, "model"));
    });
    after(() => model.dispose());

    it("prompt and full-sequence logits match", () => {
      assert.ok(maxAbsDiff(logitsOf(model, exp.ids("input_ids")), exp.f32("logits").data) <= LOGITS_ATOL, "prompt");
      // dynamic NTK RoPE: transformers' full forward over 32 tokens uses the frequencies of length 32 for every position
      const full = logitsOf(model, exp.ids("generated_ids"));
      assert.ok(maxAbsDiff(full, exp.f32("full_sequence_logits").data) <= LOGITS_ATOL, "full sequence");
    });

    it("incremental decoding equals transformers' incremental logits, and greedy tokens match", async () => {
      checkIncremental(model, exp);
      assert.deepEqual((await model.generate(exp.ids("input_ids"), { maxNewTokens: 20 })).sequences, exp.ids("generated_ids"));
    });

    it("left-padded batch: logits at real positions and batched greedy tokens match", async () => {
      const d = paddedDiff(model, exp, true);
      assert.ok(d <= LOGITS_ATOL, `max |diff| ${d}`);
      if (exp.has("pad.generated_ids")) {
        const r = await model.generate(exp.ids("pad.input_ids"), { attentionMask: exp.ids("pad.attention_mask"), maxNewTokens: 20 });
        assert.deepEqual(r.sequences, exp.ids("pad.generated_ids"));
      }
    });

    if (name === "mistral") {
      it("a SHiRA adapter merged gives the merged logits and tokens", async () => {
        const peft = await PeftModel.fromPretrained(model, join(dir, "shira"));
        try {
          assert.ok(maxAbsDiff(logitsOf(model, exp.ids("input_ids")), exp.f32("shira.logits").data) <= LOGITS_ATOL, "unfused");
          peft.merge();
          assert.ok(maxAbsDiff(logitsOf(model, exp.ids("input_ids")), exp.f32("shira.logits").data) <= LOGITS_ATOL, "merged");
          assert.deepEqual((await model.generate(exp.ids("input_ids"), { maxNewTokens: 20 })).sequences, exp.ids("shira.generated_ids"));
        } finally {
          peft.unload();
        }
      });
      it("the sliding window (8 keys) matters from position 8 on only", () => {
        assert.equal(model.config.slidingWindow, 8);
        const ids = exp.ids("generated_ids");
        const windowed = logitsOf(model, ids);
        (model.config as { slidingWindow: number | null }).slidingWindow = null;
        try {
          const full = logitsOf(model, ids);
          const V = model.config.vocabSize;
          assert.equal(maxAbsDiff(windowed, full, 0, 0, 8 * V), 0);
          for (let t = 8; t < 32; t++) assert.ok(maxAbsDiff(windowed, full, t * V, t * V, V) > 1e-3, `position ${t} sees more keys without the window`);
        } finally {
          (model.config as { slidingWindow: number | null }).slidingWindow = 8;
        }
      });
    }
  });
}

describe("getPeftModel on a language model", () => {
  it("new adapters on a Llama checkpoint draw PEFT's masks (the fixture adapter's positions from its seed), default targets included", async () => {
    const dir = join(TRANSFORMERS, "llama");
    const lm = await AutoModelForCausalLM.fromPretrained(join(dir, "model"));
    try {
      // no targetModules: PEFT's default for llama (q_proj, v_proj)
      const peft = getPeftModel(lm, new ShiraConfig({ r: 4, randomSeed: 59 }), "fresh");
      assert.deepEqual([...(peft.peftConfig.get("fresh")!.targetModules as string[])].sort(), ["q_proj", "v_proj"]);
      const files = peft.saveAdapter("fresh");
      const mine = readSafetensors(files["adapter_model.safetensors"]);
      const ref = readSafetensors(readFileSync(join(dir, "shira", "adapter_model.safetensors")));
      assert.deepEqual(mine.names().sort(), ref.names().sort());
      for (const n of ref.names()) if (n.endsWith("shira_indices")) assert.deepEqual(mine.i32(n), ref.i32(n), n);
      // values start at zero (init_weights true): the adapter does not change the logits
      const t0 = peft.forward(Tensor.from([5, 17, 123], [1, 3]));
      const t1 = peft.withAdaptersDisabled(() => peft.forward(Tensor.from([5, 17, 123], [1, 3])));
      assert.deepEqual(t0.toArray(), t1.toArray());
      t0.free();
      t1.free();
      peft.unload();
    } finally {
      lm.dispose();
    }
  });
});

describe("decoder fixtures are intact", () => {
  for (const folder of ["transformers", "transformers-extra", "peft-real"]) {
    it(`tests/fixtures/${folder} matches its SHA256SUMS`, async () => {
      const { createHash } = await import("node:crypto");
      const root = join(TRANSFORMERS, "..", folder);
      const lines = readFileSync(join(root, "SHA256SUMS"), "utf8").trim().split("\n");
      assert.ok(lines.length >= 8);
      for (const line of lines) {
        const [hash, path] = line.split(/\s+\*?/);
        assert.equal(createHash("sha256").update(readFileSync(join(root, path))).digest("hex"), hash, path);
      }
    });
  }
});

/** The checkpoint's files in memory with every tensor stored as `dtype`, in `shards` files (with an index when > 1). */
function convertedCheckpoint(dir: string, dtype: "F32" | "F16" | "BF16", shards: number): Record<string, Uint8Array> {
  const file = readSafetensors(readFileSync(join(dir, "model.safetensors")));
  const names = file.names().sort();
  const out: Record<string, Uint8Array> = { "config.json": readFileSync(join(dir, "config.json")) };
  const weightMap: Record<string, string> = {};
  for (let s = 0; s < shards; s++) {
    const part = names.filter((_, i) => i % shards === s);
    const fname = shards === 1 ? "model.safetensors" : `model-${String(s + 1).padStart(5, "0")}-of-${String(shards).padStart(5, "0")}.safetensors`;
    const tensors: Record<string, { dtype: "F32" | "F16" | "BF16"; shape: number[]; data: Float32Array }> = {};
    for (const n of part) {
      tensors[n] = { dtype, shape: [...file.entry(n).shape], data: file.f32(n) };
      weightMap[n] = fname;
    }
    out[fname] = writeSafetensors(tensors, { format: "pt" });
  }
  if (shards > 1) out["model.safetensors.index.json"] = new TextEncoder().encode(JSON.stringify({ metadata: {}, weight_map: weightMap }));
  return out;
}

describe("every family loads F16, BF16 and sharded checkpoints", () => {
  for (const fam of FAMILIES) {
    it(`${fam}: F16/BF16 copies load the exactly rounded weights, three shards load bit-identical logits`, async () => {
      const dir = join(TRANSFORMERS, fam, "model");
      const ref = await AutoModelForCausalLM.fromPretrained(dir);
      try {
        const ids = readExpected(join(TRANSFORMERS, fam)).ids("input_ids");
        const sharded = await AutoModelForCausalLM.fromPretrained(convertedCheckpoint(dir, "F32", 3));
        assert.deepEqual(logitsOf(sharded, ids), logitsOf(ref, ids));
        sharded.dispose();
        const round: Record<string, (x: number) => number> = { F16: (x) => f16ToF32(f32ToF16(x)), BF16: (x) => bf16ToF32(f32ToBf16(x)) };
        for (const dt of ["F16", "BF16"] as const) {
          // explicitly f32 (the default would keep the stored half dtype): the F16/BF16 -> f32 conversion
          const m = await AutoModelForCausalLM.fromPretrained(convertedCheckpoint(dir, dt, 1), { dtype: "f32" });
          try {
            const want = ref.stateDict();
            for (const [k, t] of Object.entries(m.stateDict())) assert.deepEqual(t.toArray(), want[k].toArray().map(round[dt]), `${dt} ${k}`);
            // and the model runs: logits stay close to the f32 model's (half-precision weights, f32 compute)
            assert.ok(maxAbsDiff(logitsOf(m, ids), logitsOf(ref, ids)) < 0.5);
          } finally {
            m.dispose();
          }
        }
      } finally {
        ref.dispose();
      }
    });
  }

  it("loads from a URL (HTTP range reads of a sharded checkpoint) exactly as from the folder", async () => {
    const { createServer } = await import("node:http");
    const files = convertedCheckpoint(join(TRANSFORMERS, "qwen2", "model"), "F32", 2);
    const ranges: string[] = [];
    const server = createServer((req, res) => {
      const name = decodeURIComponent((req.url ?? "/").replace(/^\/ckpt\//, ""));
      const body = files[name];
      if (!body) {
        res.writeHead(404).end();
        return;
      }
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? "");
      if (m) {
        ranges.push(name);
        const a = Number(m[1]);
        const b = Math.min(Number(m[2]), body.length - 1);
        res.writeHead(206, { "Content-Range": `bytes ${a}-${b}/${body.length}`, "Content-Length": b - a + 1 }).end(Buffer.from(body.subarray(a, b + 1)));
      } else res.writeHead(200, { "Content-Length": body.length }).end(Buffer.from(body));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const port = (server.address() as { port: number }).port;
      const m = await AutoModelForCausalLM.fromPretrained(`http://127.0.0.1:${port}/ckpt/`);
      const ref = await AutoModelForCausalLM.fromPretrained(join(TRANSFORMERS, "qwen2", "model"));
      try {
        const ids = readExpected(join(TRANSFORMERS, "qwen2")).ids("input_ids");
        assert.deepEqual(logitsOf(m, ids), logitsOf(ref, ids));
        assert.ok(ranges.filter((n) => n.endsWith(".safetensors")).length > 4, "tensors were read with range requests");
      } finally {
        m.dispose();
        ref.dispose();
      }
    } finally {
      server.close();
    }
  });
});

describe("decoder memory", () => {
  it("the wasm heap does not grow across repeated load / generate / dispose cycles, with adapters loaded and unloaded", async () => {
    const rt = runtime();
    const dir = join(TRANSFORMERS, "llama");
    const cycle = async () => {
      const lm = await AutoModelForCausalLM.fromPretrained(join(dir, "model"));
      const peft = await PeftModel.fromPretrained(lm, join(dir, "shira"));
      await lm.generate([[5, 17, 123]], { maxNewTokens: 4 });
      peft.merge();
      await lm.generate([[5, 17, 123]], { maxNewTokens: 4 });
      peft.unload();
      lm.dispose();
    };
    const live0 = rt.liveBytes;
    await cycle();
    const mem = rt.memoryBytes;
    for (let i = 0; i < 15; i++) await cycle();
    assert.equal(rt.liveBytes, live0, "every block freed");
    assert.equal(rt.memoryBytes, mem, "memory did not grow");
  });

  it("a decode step with an unfused SHiRA adapter allocates nothing", async () => {
    const dir = join(TRANSFORMERS, "llama");
    const lm = await AutoModelForCausalLM.fromPretrained(join(dir, "model"));
    const peft = await PeftModel.fromPretrained(lm, join(dir, "shira"));
    const rt = runtime();
    const cache = lm.createCache({ batchSize: 1, maxLength: 40 });
    const logits = rt.allocF32(300);
    try {
      lm.run(Int32Array.of(5, 17, 123), 1, 3, cache, null, null, true, logits.ptr);
      lm.run(Int32Array.of(7), 1, 1, cache, null, null, true, logits.ptr);
      const live = rt.liveBytes;
      for (let i = 0; i < 20; i++) lm.run(Int32Array.of(rt.k.f32_argmax(logits.ptr, 300)), 1, 1, cache, null, null, true, logits.ptr);
      assert.equal(rt.liveBytes, live);
      assert.equal(peft.activeAdapters.join(), "default");
    } finally {
      logits.free();
      cache.dispose();
      peft.unload();
      lm.dispose();
    }
  });
});

describe("decoder dispose", () => {
  it("dispose() with adapters still attached (fused and unfused) frees every block", async () => {
    const rt = runtime();
    const live = rt.liveBytes;
    const dir = join(TRANSFORMERS, "llama");
    const lm = await AutoModelForCausalLM.fromPretrained(join(dir, "model"));
    const peft = await PeftModel.fromPretrained(lm, join(dir, "shira"));
    await peft.loadAdapter(join(dir, "shira_i64"), "other");
    peft.switchTo("other");
    await lm.generate([[1, 2, 3]], { maxNewTokens: 3 });
    lm.dispose();
    assert.equal(rt.liveBytes, live);
    assert.throws(() => lm.forward([[1]]), /dispose/);
  });
});

describe("decoder arguments", () => {
  it("ragged, null and out-of-vocabulary ids are ShapeErrors naming the argument", async () => {
    const lm = await AutoModelForCausalLM.fromPretrained(join(TRANSFORMERS, "llama", "model"));
    try {
      assert.throws(() => lm.forward([[1, 2], null as unknown as number[]]), (e: unknown) => e instanceof ShapeError && /row 1 is null/.test((e as Error).message));
      assert.throws(() => lm.forward([[1, 2], [3]]), (e: unknown) => e instanceof ShapeError && /row 1 has 1 entries/.test((e as Error).message));
      assert.throws(() => lm.forward([[1, 300]]), (e: unknown) => e instanceof ShapeError && /300/.test((e as Error).message));
      await assert.rejects(lm.generate([[1, 2], null as unknown as number[]]), ShapeError);
    } finally {
      lm.dispose();
    }
  });
});
