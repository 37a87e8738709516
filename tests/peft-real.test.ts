// SHiRA adapters written by the real PEFT library (v0.17.0) on the tiny Llama (tests/fixtures/peft-real), loaded
// onto the same checkpoint through AutoModelForCausalLM, and switched between the tokens of one generation.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it, before, after } from "node:test";
import { AutoModelForCausalLM, PeftModel, readSafetensors, type DecoderModel, type ShiraModel } from "../src/node.js";
import { LOGITS_ATOL, TRANSFORMERS, maxAbsDiff, readExpected, type Expected } from "./helpers/transformers.js";

const REAL = join(TRANSFORMERS, "..", "peft-real", "llama");

function logitsOf(model: DecoderModel, ids: number[][]): Float32Array {
  const t = model.forward(ids);
  const d = t.toArray();
  t.free();
  return d;
}

describe("adapters written by PEFT v0.17.0 on a Llama checkpoint", () => {
  let lm: DecoderModel;
  let peft: ShiraModel;
  let exp: Expected;
  let base: Map<string, Float32Array>;
  const prompt = () => exp.ids("input_ids");
  const close = (got: Float32Array, key: string) => {
    const d = maxAbsDiff(got, exp.f32(key).data);
    assert.ok(d <= LOGITS_ATOL, `${key}: max |diff| ${d}`);
  };

  before(async () => {
    exp = readExpected(REAL);
    lm = await AutoModelForCausalLM.fromPretrained(join(TRANSFORMERS, "llama", "model"));
    base = new Map(Object.entries(lm.stateDict()).map(([k, t]) => [k, t.toArray()]));
    peft = await PeftModel.fromPretrained(lm, join(REAL, "adapter"));
    // its file also holds the "default" adapter's tensors under `.default` keys (a PEFT bug through v0.19): ignored
    await peft.loadAdapter(join(REAL, "adapter_second", "second"), "second");
  });
  after(() => lm.dispose());

  it("reads PEFT's config as written (target_modules in arbitrary order, no peft_version)", () => {
    assert.deepEqual(peft.adapterNames.sort(), ["default", "second"]);
    assert.deepEqual([...new Set(peft.peftConfig.get("default")!.targetModules as string[])].sort(), ["q_proj", "v_proj"]);
    assert.equal(peft.peftConfig.get("second")!.r, 2);
  });

  it("unfused forward of each adapter, and of both, equals PEFT's", () => {
    close(logitsOf(lm, prompt()), "default.logits");
    peft.setAdapter("second");
    close(logitsOf(lm, prompt()), "second.logits");
    peft.setAdapter(["default", "second"]);
    close(logitsOf(lm, prompt()), "both.logits");
    peft.setAdapter("default");
  });

  it("merge equals PEFT's merge; unmerge restores the base bit for bit where PEFT drifts", () => {
    peft.merge();
    close(logitsOf(lm, prompt()), "default.merged_logits");
    for (const [m, w] of [["model.layers.0.self_attn.q_proj", 0], ["model.layers.1.self_attn.v_proj", 0]] as const) {
      void w;
      const live = (lm.getSubmodule(m) as unknown as { baseLayer: { weight: { toArray(): Float32Array } } }).baseLayer.weight.toArray();
      assert.deepEqual(live, exp.f32(`merged.weight.${m}`).data, `${m}: merged weight bit-equal to PEFT's`);
    }
    peft.unmerge();
    for (const [k, t] of Object.entries(lm.stateDict())) {
      const key = k.replace(".base_layer.", ".");
      if (base.has(key)) assert.deepEqual(t.toArray(), base.get(key), `${key} bit-identical after unmerge`);
    }
    const disabled = peft.withAdaptersDisabled(() => logitsOf(lm, prompt()));
    // PEFT's own unmerged model is up to 6e-6 off its base; ours is the base exactly
    close(disabled, "base.logits");
    close(disabled, "after_unmerge.adapter_disabled_logits");
  });

  it("greedy tokens with the adapter merged equal merge_and_unload's generation", async () => {
    peft.switchTo("default");
    const r = await lm.generate(prompt(), { maxNewTokens: 20 });
    assert.deepEqual(r.sequences, exp.ids("merged.generated_ids"));
    close(logitsOf(lm, exp.ids("merged.generated_ids")), "merged.full_sequence_logits");
    peft.switchTo("second");
    close(logitsOf(lm, prompt()), "second.merged_logits");
    peft.switchToBase();
  });

  it("a scaled adapter (unfused) equals the base model with W + s·S written into its weights", () => {
    peft.setAdapter("second");
    peft.setScale("second", 0.5);
    const got = logitsOf(lm, prompt());
    peft.setScale("second", 1);
    // reference: a second copy of the base whose weights get f32(0.5 · v) added at PEFT's positions
    const ref = readSafetensors(readFileSync(join(REAL, "adapter_second", "second", "adapter_model.safetensors")));
    return AutoModelForCausalLM.fromPretrained(join(TRANSFORMERS, "llama", "model")).then((m2) => {
      try {
        const sd = m2.stateDict();
        for (const n of ref.names()) {
          if (!n.endsWith(".shira_weight")) continue;
          const mod = n.slice("base_model.model.".length, -".shira_weight".length);
          const vals = ref.f32(n);
          const idx = ref.i32(n.replace(".shira_weight", ".shira_indices"));
          const W = sd[`${mod}.weight`];
          const inF = W.shape[1];
          const d = W.data;
          for (let j = 0; j < vals.length; j++) d[idx[j] * inF + idx[vals.length + j]] += Math.fround(0.5 * vals[j]);
        }
        const want = logitsOf(m2, prompt());
        const diff = maxAbsDiff(got, want);
        assert.ok(diff <= 2e-5, `max |diff| ${diff}`);
        assert.ok(maxAbsDiff(got, exp.f32("second.logits").data) > 0.01, "scale 0.5 differs from scale 1");
      } finally {
        m2.dispose();
        peft.setAdapter("default");
      }
    });
  });

  it("switching adapters between two tokens of one stream: fused and unfused agree, cached tokens keep their state", async () => {
    const run = async (mode: "fused" | "unfused") => {
      const tokens: number[] = [];
      if (mode === "fused") peft.switchTo("default");
      else peft.setAdapter("default");
      for await (const t of lm.stream(prompt(), { maxNewTokens: 16 })) {
        tokens.push(t.token);
        if (t.step === 5) mode === "fused" ? peft.switchTo("second") : peft.setAdapter("second");
        if (t.step === 10) mode === "fused" ? peft.switchToBase() : peft.disableAdapterLayers();
      }
      if (mode === "unfused") peft.enableAdapterLayers();
      peft.switchToBase();
      peft.setAdapter("default");
      return tokens;
    };
    const fused = await run("fused");
    const unfused = await run("unfused");
    assert.deepEqual(fused, unfused);
    // the first 6 tokens are the default adapter's greedy tokens
    assert.deepEqual(fused.slice(0, 6), exp.ids("merged.generated_ids")[0].slice(12, 18));
    // the base is bit-identical after the switches
    for (const [k, t] of Object.entries(lm.stateDict())) {
      const key = k.replace(".base_layer.", ".");
      if (base.has(key)) assert.deepEqual(t.toArray(), base.get(key), key);
    }
  });

  it("saving the loaded adapter writes PEFT's tensors back byte for byte", () => {
    const files = peft.saveAdapter("default");
    const mine = readSafetensors(files["adapter_model.safetensors"]);
    const theirs = readSafetensors(readFileSync(join(REAL, "adapter", "adapter_model.safetensors")));
    assert.deepEqual(mine.names().sort(), theirs.names().sort());
    for (const n of theirs.names()) assert.deepEqual(mine.get(n).bytes, theirs.get(n).bytes, n);
  });
});
