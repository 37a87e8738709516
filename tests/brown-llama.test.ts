// models/brown-llama (the language-model demo's base model, a LlamaForCausalLM folder) against
// tests/fixtures/brown-llama/expected.json: the float32 logits transformers v4.44 gives for this folder (computed by
// scripts/fixtures/check_checkpoint.py with the op-for-op PyTorch re-implementation of its Llama forward; transformers
// itself cannot be installed here) and the load checks that script made (config as LlamaConfig reads it, the keys
// transformers' load_state_dict expects, tokenizer.json as `tokenizers` reads it). Also our AutoTokenizer on the folder.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { AutoModelForCausalLM, AutoTokenizer, init, readSafetensors, type DecoderModel, type PreTrainedTokenizer } from "../src/node.js";
import { LOGITS_ATOL, maxAbsDiff } from "./helpers/transformers.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const MODEL = join(ROOT, "models", "brown-llama");
const FIXTURE = join(ROOT, "tests", "fixtures", "brown-llama", "expected.json");
const REGENERATE = "/usr/bin/python3 scripts/fixtures/check_checkpoint.py models/brown-llama --out tests/fixtures/brown-llama/expected.json";

interface Check {
  name: string;
  ok: boolean;
  detail: string;
}
interface Expected {
  model_dir: string;
  files: Record<string, { sha256: string; bytes: number }>;
  config: { resolved: Record<string, unknown> };
  weights: { missing_keys: string[]; unexpected_keys: string[]; parameters: number };
  sequences: { name: string; input_ids: number[]; positions: number[]; logits: number[][] }[];
  padded_batch: { input_ids: number[][]; attention_mask: number[][]; rows: { positions: number[]; logits: number[][] }[] };
  checks: Check[];
  all_checks_passed: boolean;
}

const exp = JSON.parse(readFileSync(FIXTURE, "utf8")) as Expected;
const cfg = exp.config.resolved;

function sha256(path: string): string {
  try {
    return createHash("sha256").update(readFileSync(path)).digest("hex");
  } catch {
    return "(unreadable)";
  }
}

/** Files of models/brown-llama that differ from the ones expected.json was made from. */
const stale = Object.entries(exp.files)
  .filter(([f, { sha256: want }]) => sha256(join(MODEL, f)) !== want)
  .map(([f]) => f);
const staleMessage = () =>
  `models/brown-llama/{${stale.join(", ")}} changed since tests/fixtures/brown-llama/expected.json was made: ` +
  `the fixture is stale. Regenerate it (from the repository root) with:\n  ${REGENERATE}`;
/** Every comparison with the fixture first says so when the fixture is stale (instead of a puzzling logits diff). */
function assertFresh(): void {
  assert.deepEqual(stale, [], staleMessage());
}

/** Largest |ours - reference| over the listed positions of one `[T, V]` row of our logits. */
function diffAt(ours: Float32Array, row: number, T: number, V: number, positions: number[], want: number[][]): number {
  assert.equal(want.length, positions.length);
  let d = 0;
  positions.forEach((p, i) => {
    assert.equal(want[i].length, V, `reference row ${i} has ${want[i].length} logits, vocab_size ${V}`);
    d = Math.max(d, maxAbsDiff(ours, want[i], (row * T + p) * V, 0, V));
  });
  return d;
}

describe("models/brown-llama against its transformers reference (tests/fixtures/brown-llama)", () => {
  let model: DecoderModel;
  before(async () => {
    await init();
    model = await AutoModelForCausalLM.fromPretrained(MODEL);
  });
  after(() => model?.dispose());

  it("the fixture was made from these very files (sha256 of model.safetensors, tokenizer.json, configs)", () => {
    for (const f of ["model.safetensors", "tokenizer.json"]) assert.ok(f in exp.files, `expected.json records no sha256 of ${f}`);
    if (stale.length) assert.fail(staleMessage());
    assert.equal(exp.model_dir, "models/brown-llama");
  });

  it("every load check of check_checkpoint.py passed (config, weights' keys, tokenizer.json, token ids)", () => {
    const failed = exp.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`);
    assert.deepEqual(failed, [], "failed checks recorded in expected.json");
    assert.equal(exp.all_checks_passed, true);
    for (const name of ["config.model_type", "weights.missing_keys", "weights.unexpected_keys", "weights.shapes", "tokenizer.merges_in_vocab", "tokenizer.ids_within_config_vocab", "generation_config.token_ids_agree"]) {
      assert.ok(exp.checks.some((c) => c.name === name), `check ${name} was run`);
    }
    assert.deepEqual(exp.weights.missing_keys, []);
    assert.deepEqual(exp.weights.unexpected_keys, []);
  });

  it("our config equals LlamaConfig's reading of config.json (v4.44 defaults for missing keys)", () => {
    assertFresh();
    const c = model.config;
    assert.equal(c.modelType, "llama");
    assert.equal(c.vocabSize, cfg.vocab_size);
    assert.equal(c.hiddenSize, cfg.hidden_size);
    assert.equal(c.intermediateSize, cfg.intermediate_size);
    assert.equal(c.numLayers, cfg.num_hidden_layers);
    assert.equal(c.numHeads, cfg.num_attention_heads);
    assert.equal(c.numKvHeads, cfg.num_key_value_heads);
    assert.equal(c.headDim, cfg.head_dim);
    assert.equal(c.maxPositions, cfg.max_position_embeddings);
    assert.equal(c.normEps, cfg.rms_norm_eps);
    assert.equal(c.tieWordEmbeddings, cfg.tie_word_embeddings);
    assert.equal(c.hiddenAct, cfg.hidden_act);
    assert.equal(c.qkvBias || c.oBias, cfg.attention_bias);
    assert.equal(c.mlpBias, cfg.mlp_bias);
    assert.equal(c.rope?.theta, cfg.rope_theta);
    assert.equal(c.bosTokenId, cfg.bos_token_id);
    assert.deepEqual(c.eosTokenId, cfg.eos_token_id);
    assert.equal(c.padTokenId, cfg.pad_token_id);
  });

  it("loads every tensor of model.safetensors under transformers' names (tied head: lm_head.weight shares the embedding)", () => {
    assertFresh();
    const sd = model.stateDict();
    const file = readSafetensors(readFileSync(join(MODEL, "model.safetensors")));
    for (const n of file.names()) {
      assert.ok(n in sd, `${n} in the state dict`);
      assert.deepEqual(sd[n].toArray(), file.f32(n), n);
    }
    const extra = Object.keys(sd).filter((k) => !file.has(k));
    assert.deepEqual(extra, file.has("lm_head.weight") ? [] : ["lm_head.weight"]);
    if (cfg.tie_word_embeddings) assert.equal(sd["lm_head.weight"].ptr, sd["model.embed_tokens.weight"].ptr);
    let n = 0;
    for (const name of file.names()) n += file.f32(name).length;
    assert.equal(n, exp.weights.parameters);
  });

  for (const [i, s] of exp.sequences.entries()) {
    it(`logits of ${s.name} (${s.input_ids.length} ids, last ${s.positions.length} positions) match within ${LOGITS_ATOL}`, () => {
      assertFresh();
      const T = s.input_ids.length;
      const V = model.config.vocabSize;
      const t = model.forward([s.input_ids]);
      try {
        assert.deepEqual([...t.shape], [1, T, V]);
        const d = diffAt(t.toArray(), 0, T, V, s.positions, s.logits);
        assert.ok(d <= LOGITS_ATOL, `sequence ${i} (${s.name}): max |diff| ${d}`);
      } finally {
        t.free();
      }
    });
  }

  it(`right-padded batch (attention mask, no position ids): logits at the real positions match within ${LOGITS_ATOL}`, () => {
    assertFresh();
    const { input_ids: ids, attention_mask: mask, rows } = exp.padded_batch;
    const T = ids[0].length;
    const V = model.config.vocabSize;
    const t = model.forward(ids, { attentionMask: mask });
    try {
      const got = t.toArray();
      rows.forEach((r, b) => {
        for (const p of r.positions) assert.equal(mask[b][p], 1, `row ${b} position ${p} is a real token`);
        const d = diffAt(got, b, T, V, r.positions, r.logits);
        assert.ok(d <= LOGITS_ATOL, `row ${b}: max |diff| ${d}`);
      });
    } finally {
      t.free();
    }
  });
});

describe("models/brown-llama's tokenizer with our AutoTokenizer", () => {
  let tok: PreTrainedTokenizer;
  before(async () => {
    tok = await AutoTokenizer.fromPretrained(MODEL);
  });

  const SENTENCES = [
    "The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election produced no evidence.",
    "  two leading spaces, a tab\there, and a trailing newline\n",
    "Numbers 1961, $3.50 and 12:30 p.m.; (parentheses) -- `quotes' and \"double quotes\"!",
    "Unicode: café naïve — “curly” ‘quotes’ … 東京 🙂",
  ];
  /** A text with the eos token written in it (as documents are joined for training). */
  const withEos = () => `The end.${tok.specialTokens.eos}The next document`;

  it("encode then decode gives every sentence back, byte for byte", () => {
    for (const s of [...SENTENCES, withEos()]) {
      const ids = tok.encode(s);
      assert.ok(ids.length > 0);
      for (const id of ids) assert.ok(Number.isInteger(id) && id >= 0 && id < (cfg.vocab_size as number), `id ${id} of ${JSON.stringify(s)} in [0, vocab_size)`);
      assert.equal(tok.decode(ids), s);
    }
  });

  it("adds no special tokens to a text (ByteLevel post-processor) and maps the eos token written in a text to the eos id", () => {
    const eos = cfg.eos_token_id as number;
    assert.ok(!tok.encode(SENTENCES[0]).includes(eos));
    const ids = tok.encode(withEos());
    assert.equal(ids.filter((id) => id === eos).length, 1);
    assert.equal(tok.decode(ids, { skipSpecialTokens: true }), "The end.The next document");
  });

  it("eos / bos ids equal config.json's (and generation_config.json's)", () => {
    assert.equal(tok.eosTokenId, cfg.eos_token_id);
    assert.equal(tok.bosTokenId, cfg.bos_token_id);
    const gen = JSON.parse(readFileSync(join(MODEL, "generation_config.json"), "utf8")) as Record<string, unknown>;
    if ("eos_token_id" in gen) assert.deepEqual(gen.eos_token_id, cfg.eos_token_id);
    if ("bos_token_id" in gen) assert.equal(gen.bos_token_id, cfg.bos_token_id);
    assert.equal(tok.idToToken(cfg.eos_token_id as number), tok.specialTokens.eos);
    assert.ok(tok.vocabSize <= (cfg.vocab_size as number), `tokenizer ${tok.vocabSize} ids, model vocab_size ${cfg.vocab_size}`);
  });
});
