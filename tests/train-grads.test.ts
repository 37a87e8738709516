// Gradients of the causal-LM loss against PyTorch (tests/fixtures/train, made by
// scripts/fixtures/make_train_fixtures.py: transformers v4.44's forward re-implemented op for op and run in float64):
// the loss and the gradient of every base parameter (full training) for OPT (pre- and post-LN with projections),
// GPT-2, Llama (with biases), Qwen2, Mistral (sliding window) and a packed batch; and the gradients of PEFT SHiRA
// adapter values (Llama, Mistral, GPT-2's Conv1D) with the base frozen, fused and unfused.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it, before } from "node:test";
import { AutoModelForCausalLM, ShiraModel, causalLmStep, init, readSafetensors, type DecoderModel } from "../src/node.js";

const ROOT = join(import.meta.dirname, "..");
const DIR = join(ROOT, "tests", "fixtures", "train");

interface Inputs {
  input_ids: number[][];
  attention_mask?: number[][] | null;
  labels: number[][];
  position_ids: number[][] | null;
  loss: number;
  n_label_tokens: number;
  checkpoint: string;
  shira_adapter?: string;
  shira_loss?: number;
}

before(async () => {
  await init();
});

function inputsOf(name: string): Inputs {
  return JSON.parse(readFileSync(join(DIR, name, "inputs.json"), "utf8"));
}

function batchOf(inp: Inputs) {
  const B = inp.input_ids.length;
  const T = inp.input_ids[0].length;
  return {
    inputIds: Int32Array.from(inp.input_ids.flat()),
    batchSize: B,
    seqLength: T,
    labels: Int32Array.from(inp.labels.flat()),
    ...(inp.attention_mask ? { attentionMask: Int32Array.from(inp.attention_mask.flat()) } : {}),
    ...(inp.position_ids ? { positionIds: Int32Array.from(inp.position_ids.flat()) } : {}),
  };
}

/** max |a − b| over max |b| (b the reference), with a floor for all-zero references. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / Math.max(m, 1e-3);
}

const CASES = ["llama", "qwen2", "opt", "gpt2", "mistral", "opt_postln_proj", "llama_bias", "packing"];

describe("causal-LM gradients against PyTorch (float64 reference)", () => {
  for (const name of CASES) {
    it(`${name}: loss and the gradient of every parameter within 1e-4 relative`, async () => {
      const inp = inputsOf(name);
      const lm: DecoderModel = await AutoModelForCausalLM.fromPretrained(join(ROOT, inp.checkpoint));
      try {
        lm.train(true);
        const r = causalLmStep(lm, batchOf(inp), { backward: true });
        assert.equal(r.tokens, inp.n_label_tokens);
        assert.ok(Math.abs(r.loss - inp.loss) <= 1e-5 * inp.loss, `loss ${r.loss} vs ${inp.loss}`);
        const ref = readSafetensors(readFileSync(join(DIR, name, "grads.safetensors")));
        const names = ref.names().filter((n) => n !== "logits");
        const params = new Map(lm.namedParameters());
        assert.deepEqual([...params.keys()].sort(), names.sort(), "every parameter has a reference gradient");
        let worst = 0;
        let worstName = "";
        for (const n of names) {
          const g = params.get(n)!.grad;
          assert.ok(g, `${n} has a gradient`);
          const e = relErr(g.data, ref.f32(n));
          if (e > worst) [worst, worstName] = [e, n];
        }
        assert.ok(worst <= 1e-4, `worst gradient ${worstName}: ${worst}`);
      } finally {
        lm.dispose();
      }
    });
  }
});

/** Positions (out, in) → value of an adapter file, per module key prefix. */
function valuesByPosition(bytes: Uint8Array, valuesOverride?: Map<string, Float32Array>): Map<string, Map<string, number>> {
  const st = readSafetensors(bytes);
  const out = new Map<string, Map<string, number>>();
  for (const k of st.names().filter((n) => n.endsWith(".shira_weight"))) {
    const prefix = k.slice(0, -".shira_weight".length);
    const idxName = `${prefix}.shira_indices`;
    const idx = Array.from(st.i32(idxName)); // I64 or I32, range-checked
    const vals = valuesOverride?.get(k) ?? st.f32(k);
    const nnz = vals.length;
    const m = new Map<string, number>();
    for (let j = 0; j < nnz; j++) m.set(`${idx[j]},${idx[nnz + j]}`, vals[j]);
    out.set(prefix, m);
  }
  return out;
}

describe("SHiRA value gradients against PyTorch (base frozen)", () => {
  for (const name of ["llama", "mistral", "gpt2"]) {
    for (const fused of [false, true]) {
      it(`${name}: ${fused ? "fused (training form)" : "unfused"} adapter: loss and value gradients within 1e-4 relative`, async () => {
        const inp = inputsOf(name);
        const lm = await AutoModelForCausalLM.fromPretrained(join(ROOT, inp.checkpoint));
        try {
          const peft = await ShiraModel.fromPretrained(lm, join(ROOT, inp.shira_adapter!), { isTrainable: true });
          const end = fused ? peft.beginTraining() : null;
          lm.train(true);
          const r = causalLmStep(lm, batchOf(inp), { backward: true });
          assert.ok(Math.abs(r.loss - inp.shira_loss!) <= 1e-5 * inp.shira_loss!, `loss ${r.loss} vs ${inp.shira_loss}`);
          // base weights got no gradient
          for (const [n, p] of lm.namedParameters()) if (!n.includes("shira")) assert.ok(!p.requiresGrad && !p.grad, `${n} is frozen`);
          // the gradients, written as the adapter's values, saved in PEFT's layout, compared by (row, col)
          const layers = peft.shiraLayers();
          const saved = layers.map(([, l]) => l.adapters.get("default")!.weight.data.slice());
          for (const [, l] of layers) {
            const w = l.adapters.get("default")!.weight;
            w.data.set(w.grad!.data);
          }
          const files = peft.saveAdapter("default");
          layers.forEach(([, l], i) => l.adapters.get("default")!.weight.data.set(saved[i]));
          const ours = valuesByPosition(files["adapter_model.safetensors"]);
          const refFile = readSafetensors(readFileSync(join(DIR, name, "shira_grads.safetensors")));
          const refVals = new Map(refFile.names().map((k) => [k, refFile.f32(k)]));
          const theirs = valuesByPosition(new Uint8Array(readFileSync(join(ROOT, inp.shira_adapter!, "adapter_model.safetensors"))), refVals);
          assert.deepEqual([...ours.keys()].sort(), [...theirs.keys()].sort());
          for (const [prefix, ref] of theirs) {
            const got = ours.get(prefix)!;
            assert.equal(got.size, ref.size, prefix);
            const keys = [...ref.keys()];
            const e = relErr(keys.map((k) => got.get(k)!), keys.map((k) => ref.get(k)!));
            assert.ok(e <= 1e-4, `${prefix}: ${e}`);
          }
          end?.();
        } finally {
          lm.dispose();
        }
      });
    }
  }
});
