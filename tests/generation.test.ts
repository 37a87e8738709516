// Sampling (transformers' logits processors and warpers, hand-computed cases), the generation loop (seeded
// sampling, EOS, batches, stop strings, abort), the KV cache, and the `shira generate` / `shira inspect` commands.
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, before, after } from "node:test";
import {
  AutoModelForCausalLM,
  AutoTokenizer,
  Rng,
  argmax,
  minP,
  multinomial,
  repetitionPenalty,
  runtime,
  selectToken,
  temperature,
  topK,
  topP,
  ConfigError,
  type DecoderModel,
} from "../src/node.js";
import { main } from "../src/cli/main.js";
import { TRANSFORMERS, readExpected } from "./helpers/transformers.js";

const TOKENIZER = join(TRANSFORMERS, "..", "tokenizer", "bytelevel-bpe");
const f32 = (xs: number[]) => Float32Array.from(xs);

describe("sampling: transformers' processors and warpers", () => {
  it("repetition penalty divides positive and multiplies negative logits of seen ids, once per id", () => {
    const l = f32([2, -2, 1, 4]);
    repetitionPenalty(l, [0, 1, 1, 0], 2);
    assert.deepEqual([...l], [1, -4, 1, 4]);
  });
  it("temperature divides every logit", () => {
    const l = f32([1, -3, 0.5]);
    temperature(l, 0.5);
    assert.deepEqual([...l], [2, -6, 1]);
  });
  it("top-k keeps the k largest, and ties with the k-th", () => {
    const a = f32([1, 3, 2, 3]);
    topK(a, 2);
    assert.deepEqual([...a], [-Infinity, 3, -Infinity, 3]);
    const b = f32([1, 3, 2, 2]);
    topK(b, 2);
    assert.deepEqual([...b], [-Infinity, 3, 2, 2]);
  });
  it("top-p drops the least likely tokens whose cumulative probability stays <= 1 - p", () => {
    const l = f32([0.5, 0.3, 0.15, 0.05].map(Math.log));
    topP(l, 0.75); // ascending: .05 (cum .05), .15 (cum .20) both <= .25 go; .3 (cum .5) stays
    assert.deepEqual([...l].map((v) => v === -Infinity), [false, false, true, true]);
    const one = f32([0.97, 0.02, 0.01].map(Math.log));
    topP(one, 0.01); // at least one token is kept
    assert.deepEqual([...one].map((v) => v === -Infinity), [false, true, true]);
  });
  it("min-p drops tokens below minP x the top probability", () => {
    const l = f32([0.5, 0.3, 0.15, 0.05].map(Math.log));
    minP(l, 0.2); // cut 0.1
    assert.deepEqual([...l].map((v) => v === -Infinity), [false, false, false, true]);
  });
  it("argmax takes the first maximum (and the first NaN), like torch.argmax", () => {
    assert.equal(argmax([1, 5, 5, 2]), 1);
    assert.equal(argmax([1, NaN, 9, NaN]), 1);
    assert.equal(runtime().k.f32_argmax(runtime().allocF32([1, 5, 5, 2]).ptr, 4), 1);
  });
  it("seeded multinomial draws follow softmax(logits) after top-k and temperature", () => {
    const rng = new Rng(7);
    const counts = [0, 0, 0, 0];
    const N = 20000;
    const base = [0.5, 0.3, 0.15, 0.05].map(Math.log);
    for (let i = 0; i < N; i++) counts[selectToken(f32(base), { doSample: true, topK: 2, temperature: 0.5 }, rng, [])]++;
    // top-2 of (.5, .3) with temperature .5: p ∝ (.5², .3²) = (.7353, .2647)
    assert.equal(counts[2] + counts[3], 0);
    assert.ok(Math.abs(counts[0] / N - 0.25 / 0.34) < 0.012, `p0 ${counts[0] / N}`);
    const again = new Rng(7);
    const first = Array.from({ length: 50 }, () => multinomial(f32(base), again));
    const again2 = new Rng(7);
    assert.deepEqual(Array.from({ length: 50 }, () => multinomial(f32(base), again2)), first);
  });
});

describe("generation loop", () => {
  let lm: DecoderModel;
  let prompt: number[][];
  let greedy: number[][];
  before(async () => {
    const dir = join(TRANSFORMERS, "llama");
    lm = await AutoModelForCausalLM.fromPretrained(join(dir, "model"));
    const exp = readExpected(dir);
    prompt = exp.ids("input_ids");
    greedy = exp.ids("generated_ids");
  });
  after(() => lm.dispose());

  it("seeded sampling is reproducible and its first token follows softmax(logits / T)", async () => {
    const a = await lm.generate(prompt, { doSample: true, temperature: 0.8, topK: 0, seed: 11, maxNewTokens: 12 });
    const b = await lm.generate(prompt, { doSample: true, temperature: 0.8, topK: 0, seed: 11, maxNewTokens: 12 });
    assert.deepEqual(a.sequences, b.sequences);
    // the distribution of the first token against a float64 softmax of the prompt's last logits
    const t = lm.forward(prompt, { logits: "last" });
    const logits = t.toArray();
    t.free();
    const m = Math.max(...logits);
    const p = Array.from(logits, (v) => Math.exp((v - m) / 0.8));
    const s = p.reduce((x, y) => x + y, 0);
    const counts = new Map<number, number>();
    const N = 400;
    for (let seed = 0; seed < N; seed++) {
      const r = await lm.generate(prompt, { doSample: true, temperature: 0.8, topK: 0, seed, maxNewTokens: 1 });
      const id = r.sequences[0][12];
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    const top = argmax(p);
    const expected = p[top] / s;
    const got = (counts.get(top) ?? 0) / N;
    assert.ok(Math.abs(got - expected) < 4 * Math.sqrt((expected * (1 - expected)) / N) + 0.01, `top token ${top}: ${got} vs ${expected}`);
  });

  it("stops at an EOS token; finished rows of a batch are padded", async () => {
    const eos = greedy[0][14]; // the 3rd new token
    const r = await lm.generate(prompt, { maxNewTokens: 20, eosTokenId: eos });
    assert.deepEqual(r.sequences[0], greedy[0].slice(0, 15));
    assert.equal(r.stoppedBy, "eos");
    const two = await lm.generate([prompt[0], prompt[0].slice().reverse()], { maxNewTokens: 6, eosTokenId: eos, padTokenId: 0 });
    assert.deepEqual(two.sequences[0], [...greedy[0].slice(0, 15), 0, 0, 0]);
    assert.equal(two.sequences[1].length, 18);
  });

  it("an AbortSignal stops within one token and rejects with ABORTED and the partial sequences", async () => {
    const ac = new AbortController();
    const seen: number[] = [];
    await assert.rejects(
      lm.generate(prompt, {
        maxNewTokens: 20,
        signal: ac.signal,
        onToken: (t) => {
          seen.push(t.token);
          if (t.step === 3) ac.abort();
        },
      }),
      (e: unknown) => {
        const err = e as { code?: string; details?: { sequences?: number[][] } };
        return err.code === "ABORTED" && err.details!.sequences![0].length === 16;
      },
    );
    assert.deepEqual(seen, greedy[0].slice(12, 16));
  });

  it("stopStrings end generation once the generated text contains one", async () => {
    const tok = await AutoTokenizer.fromPretrained(TOKENIZER);
    // a model vocabulary of 300 over a 266-token tokenizer: use a stop string made of the greedy bytes themselves
    const newIds = greedy[0].slice(12);
    const k = newIds.findIndex((id, i) => i >= 2 && tok.decode(newIds.slice(0, i + 1)).length > tok.decode(newIds.slice(0, i)).length);
    const stop = tok.decode(newIds.slice(0, k + 1)).slice(-1);
    const r = await lm.generate(prompt, { maxNewTokens: 20, stopStrings: [stop], tokenizer: tok });
    assert.equal(r.stoppedBy, "stopString");
    assert.ok(tok.decode(r.sequences[0].slice(12)).includes(stop));
    assert.ok(!tok.decode(r.sequences[0].slice(12, -1)).includes(stop), "stopped at the first token that completes it");
    await assert.rejects(lm.generate(prompt, { stopStrings: ["x"] }), ConfigError);
  });

  it("invalid sampling options are ConfigErrors naming the field", async () => {
    await assert.rejects(lm.generate(prompt, { doSample: true, topP: 1.5 }), /topP/);
    await assert.rejects(lm.generate(prompt, { temperature: 0 }), /temperature/);
    await assert.rejects(lm.generate(prompt, { maxNewTokens: -1 }), /maxNewTokens/);
  });

  it("the KV cache: truncate rewinds to an earlier position and decoding again gives the same logits", () => {
    const cache = lm.createCache({ batchSize: 1, maxLength: 32 });
    try {
      const ids = greedy[0];
      lm.forward([ids.slice(0, 20)], { pastKeyValues: cache }).free();
      const a = lm.forward([[ids[20]]], { pastKeyValues: cache });
      cache.truncate(20);
      assert.equal(cache.length, 20);
      const b = lm.forward([[ids[20]]], { pastKeyValues: cache });
      assert.deepEqual(b.toArray(), a.toArray());
      a.free();
      b.free();
      cache.reset();
      assert.equal(cache.length, 0);
      assert.throws(() => lm.forward([[...ids, 1]], { pastKeyValues: cache, logits: "last" }).free(), /exceed the cache.s maxLength 32/);
    } finally {
      cache.dispose();
    }
    assert.throws(() => cache.layer(0), /dispose/);
  });
});

describe("shira generate and shira inspect on a checkpoint folder", () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "shira-gen-"));
    cpSync(join(TRANSFORMERS, "llama", "model"), dir, { recursive: true });
    cpSync(TOKENIZER, dir, { recursive: true });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const run = async (argv: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await main(argv, (s) => out.push(s), (s) => err.push(s));
    return { code, out: out.join("\n"), err: err.join("\n") };
  };

  it("streams the model's greedy tokens, with an adapter switched mid-generation", async () => {
    const tok = await AutoTokenizer.fromPretrained(dir);
    const lm = await AutoModelForCausalLM.fromPretrained(dir);
    const ids = tok.encode("hello world");
    let plain: number[];
    try {
      plain = (await lm.generate([ids], { maxNewTokens: 8, eosTokenId: -1 })).sequences[0].slice(ids.length);
    } finally {
      lm.dispose();
    }
    const r = await run(["generate", "--model", dir, "--prompt", "hello world", "--max-new-tokens", "8", "--json"]);
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out) as { tokens: number[]; newTokens: number };
    // the CLI stops at the tokenizer's EOS (<|endoftext|>, id 263), which this toy model may emit
    assert.deepEqual(j.tokens, plain.slice(0, j.tokens.length));
    assert.ok(j.tokens.length === 8 || j.tokens[j.tokens.length - 1] === tok.eosTokenId);

    const shira = join(TRANSFORMERS, "llama", "shira");
    const s = await run(["generate", "--model", dir, "--adapter", `sql=${shira}`, "--prompt", "hello world", "--max-new-tokens", "6", "--switch-at", "3:base", "--json"]);
    assert.equal(s.code, 0, s.err);
    const sj = JSON.parse(s.out) as { switches: { atToken: number; adapter: string }[] };
    assert.deepEqual(sj.switches.map((x) => [x.atToken, x.adapter]), [[0, "sql"], [3, "base"]]);
    const bad = await run(["generate", "--model", dir, "--prompt", "x", "--switch-at", "2:nope"]);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /"nope"/);
    const usage = await run(["generate", "--model", dir]);
    assert.equal(usage.code, 2);
  });

  it("--dtype: the default is the checkpoint's stored dtype (f32 here, bf16 for a BF16 folder); bf16 gives the BF16 folder's tokens", async () => {
    const bf16Dir = mkdtempSync(join(tmpdir(), "shira-gen-bf16-"));
    try {
      cpSync(join(TRANSFORMERS, "llama", "model_bf16"), bf16Dir, { recursive: true });
      cpSync(TOKENIZER, bf16Dir, { recursive: true });
      const args = ["--prompt", "hello world", "--max-new-tokens", "6", "--json"];
      const f32 = JSON.parse((await run(["generate", "--model", dir, ...args])).out) as { dtype: string; tokens: number[] };
      assert.equal(f32.dtype, "f32");
      const auto = await run(["generate", "--model", bf16Dir, ...args]);
      assert.equal(auto.code, 0, auto.err);
      const a = JSON.parse(auto.out) as { dtype: string; tokens: number[] };
      assert.equal(a.dtype, "bf16");
      const widened = JSON.parse((await run(["generate", "--model", bf16Dir, "--dtype", "f32", ...args])).out) as { dtype: string; tokens: number[] };
      assert.equal(widened.dtype, "f32");
      assert.deepEqual(a.tokens, widened.tokens, "bf16 weights compute what the widened f32 weights compute");
      const halfOfF32 = JSON.parse((await run(["generate", "--model", dir, "--dtype", "f16", ...args])).out) as { dtype: string };
      assert.equal(halfOfF32.dtype, "f16");
      const bad = await run(["generate", "--model", dir, "--dtype", "fp16", "--prompt", "x"]);
      assert.equal(bad.code, 2);
      assert.match(bad.err, /--dtype must be f32, bf16 or f16, got "fp16"/);
    } finally {
      rmSync(bf16Dir, { recursive: true, force: true });
    }
  });

  it("inspect describes a checkpoint folder from its headers", async () => {
    const r = await run(["inspect", dir, "--json"]);
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out) as { modelType: string; parameters: number; files: { name: string; tensors: number }[]; hasTokenizer: boolean };
    assert.equal(j.modelType, "llama");
    const st = readFileSync(join(dir, "model.safetensors"));
    assert.equal(j.files[0].name, "model.safetensors");
    assert.ok(st.length > 0);
    // embed 300x64 + head 300x64 + 2 layers x (q 64x64 + k 32x64 + v 32x64 + o 64x64 + gate/up 128x64 x2 + down 64x128 + 2 norms 64) + norm 64
    assert.equal(j.parameters, 2 * 300 * 64 + 2 * (64 * 64 * 2 + 32 * 64 * 2 + 128 * 64 * 3 + 2 * 64) + 64);
    assert.equal(j.hasTokenizer, true);
    const text = await run(["inspect", dir]);
    assert.match(text.out, /LlamaForCausalLM \(model_type llama\)/);
  });
});

describe("sampling on a large vocabulary", () => {
  it("top-k by a heap keeps exactly the k largest (a 151,936-entry row against a full sort)", () => {
    const rng = new Rng(3);
    const V = 151936;
    const x = Float32Array.from({ length: V }, () => rng.normal());
    const y = x.slice();
    topK(y, 50);
    const kth = Float32Array.from(x).sort()[V - 50];
    for (let i = 0; i < V; i++) assert.equal(y[i], x[i] >= kth ? x[i] : -Infinity);
    assert.equal(y.filter((v) => v !== -Infinity).length, 50);
  });

  it("top-p equals transformers' rule (ascending sort, cumulative softmax <= 1 - p removed) on 151,936 entries", () => {
    const rng = new Rng(4);
    const V = 151936;
    const x = Float32Array.from({ length: V }, () => 3 * rng.normal());
    for (const p of [0.5, 0.9, 0.99]) {
      const y = x.slice();
      topP(y, p);
      // reference: indices sorted ascending by logit, float64 softmax, cumulative sum, remove while <= 1 - p
      let m = -Infinity;
      for (const v of x) m = Math.max(m, v);
      let s = 0;
      for (const v of x) s += Math.exp(v - m);
      const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => x[a] - x[b]);
      const removed = new Set<number>();
      let cum = 0;
      for (let j = 0; j < V - 1; j++) {
        cum += Math.exp(x[order[j]] - m) / s;
        if (cum <= 1 - p) removed.add(order[j]);
        else break;
      }
      for (let i = 0; i < V; i++) assert.equal(y[i] === -Infinity, removed.has(i), `p ${p}, token ${i}`);
    }
  });
});
