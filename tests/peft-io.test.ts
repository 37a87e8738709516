// PEFT's adapter format in both directions, against the PyTorch fixtures (good, variant and broken files).
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, readdirSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  PeftModel,
  ShiraModel,
  ShiraConfig,
  ShiraLinear,
  ShiraError,
  FormatError,
  ConfigError,
  Tensor,
  Linear,
  Sequential,
  ReLU,
  getPeftModel,
  readSafetensors,
  writeSafetensors,
  manualSeed,
} from "../src/node.js";
import { fixtureModel, fixturePath, readFixture, maxAbsDiff, bitsEqual, MLP, runOnFixtureInput, allWeights } from "./helpers/fixtures.js";

const cases = readFixture("mlp", "cases.safetensors");
const X = cases.f32("x");

const run = runOnFixtureInput;


function layer(peft: ShiraModel, name: string): ShiraLinear {
  return peft.model.getSubmodule(name) as ShiraLinear;
}

describe("loading PEFT's files", () => {
  test("alpha and beta: stored positions and values, expected outputs within 1e-5, merged weights bit-exact", async () => {
    const peft = await PeftModel.fromPretrained(fixtureModel(), fixturePath("mlp", "alpha"), { adapterName: "alpha" });
    await peft.loadAdapter(fixturePath("mlp", "beta"), "beta");
    assert.deepEqual(peft.adapterNames, ["alpha", "beta"]);
    assert.deepEqual(peft.activeAdapters, ["alpha"], "loadAdapter does not activate");
    for (const [adapter, mods] of [["alpha", ["lin0", "lin2"]], ["beta", ["lin1", "lin2", "lin3"]]] as const) {
      const file = readFixture("mlp", adapter, "adapter_model.safetensors");
      for (const m of mods) {
        const l = layer(peft, m);
        const a = l.adapters.get(adapter)!;
        const idx = file.i32(`base_model.model.${m}.shira_indices`);
        const { rows, cols } = a.rowsCols(l.inFeatures);
        assert.deepEqual(Array.from(rows), Array.from(idx.subarray(0, a.nnz)));
        assert.deepEqual(Array.from(cols), Array.from(idx.subarray(a.nnz)));
        assert.ok(bitsEqual(a.weight.toArray(), file.f32(`base_model.model.${m}.shira_weight`)));
      }
    }
    assert.ok(maxAbsDiff(run(peft), cases.f32("out.alpha")) < 1e-5);
    peft.setAdapter("beta");
    assert.ok(maxAbsDiff(run(peft), cases.f32("out.beta")) < 1e-5);
    peft.setAdapter(["alpha", "beta"]);
    assert.ok(maxAbsDiff(run(peft), cases.f32("out.both")) < 1e-5);
    peft.setScale("alpha", 2);
    peft.setAdapter("alpha");
    assert.ok(maxAbsDiff(run(peft), cases.f32("out.alpha_scale_2")) < 1e-5);
    peft.setScale("alpha", 1);
    peft.setAdapter("beta");
    peft.merge();
    for (const m of ["lin1", "lin2", "lin3"]) assert.ok(bitsEqual(layer(peft, m).baseLayer.weight.toArray(), cases.f32(`merged.${m}.weight`)), m);
    assert.ok(maxAbsDiff(run(peft), cases.f32("out.merged_beta")) < 1e-5);
    // loaded adapters are in inference mode (not trainable) unless asked
    assert.equal(peft.getNbTrainableParameters()[0], 0);
  });

  for (const variant of ["alpha_windows", "alpha_bf16", "alpha_f16"]) {
    test(`variant ${variant}: values widened exactly, indices converted, effective weights bit-exact`, async () => {
      const exp = readFixture("variants", variant, "expected.safetensors");
      const peft = await PeftModel.fromPretrained(fixtureModel(), fixturePath("variants", variant), { adapterName: "alpha", isTrainable: true });
      for (const m of ["lin0", "lin2"]) assert.ok(bitsEqual(layer(peft, m).adapters.get("alpha")!.weight.toArray(), exp.f32(`shira_weight_f32.${m}`)), m);
      assert.ok(maxAbsDiff(run(peft), exp.f32("out.alpha")) < 1e-5);
      peft.switchTo("alpha");
      for (const m of ["lin0", "lin2"]) assert.ok(bitsEqual(layer(peft, m).baseLayer.weight.toArray(), exp.f32(`effective.${m}.weight`)), `${m} fused`);
      assert.equal(peft.getNbTrainableParameters()[0], 100, "isTrainable keeps the values trainable");
    });
  }

  test("unsorted positions are sorted on load with their values", async () => {
    const src = readFixture("mlp", "alpha", "adapter_model.safetensors");
    const tensors: Record<string, { dtype: "F32" | "I64"; shape: number[]; data: Float32Array | BigInt64Array }> = {};
    for (const m of ["lin0", "lin2"]) {
      const w = src.f32(`base_model.model.${m}.shira_weight`);
      const idx = src.i32(`base_model.model.${m}.shira_indices`);
      const n = w.length;
      const perm = Array.from({ length: n }, (_, i) => (i * 7 + 3) % n); // a permutation (7 coprime to 30, 70? 70: no)
      const order = n % 7 === 0 ? Array.from({ length: n }, (_, i) => n - 1 - i) : perm;
      tensors[`base_model.model.${m}.shira_weight`] = { dtype: "F32", shape: [n], data: Float32Array.from(order, (j) => w[j]) };
      const i64 = new BigInt64Array(2 * n);
      order.forEach((j, k) => {
        i64[k] = BigInt(idx[j]);
        i64[n + k] = BigInt(idx[n + j]);
      });
      tensors[`base_model.model.${m}.shira_indices`] = { dtype: "I64", shape: [2, n], data: i64 };
    }
    const peft = await PeftModel.fromPretrained(fixtureModel(), {
      "adapter_config.json": readFileSync(fixturePath("mlp", "alpha", "adapter_config.json")),
      "adapter_model.safetensors": writeSafetensors(tensors, { format: "pt" }),
    });
    assert.ok(maxAbsDiff(run(peft), cases.f32("out.alpha")) < 1e-5);
    for (const m of ["lin0", "lin2"]) {
      const a = layer(peft, m).adapters.get("default")!;
      assert.ok(bitsEqual(a.weight.toArray(), src.f32(`base_model.model.${m}.shira_weight`)), `${m} values follow their positions`);
    }
  });

  test("every broken fixture gives its typed error and leaves the model exactly as before", async () => {
    const manifest = JSON.parse(readFileSync(fixturePath("bad", "manifest.json"), "utf8")) as { cases: { name: string; error: string }[] };
    assert.equal(manifest.cases.length, 10);
    const codeFor: Record<string, string> = {
      SAFETENSORS_INCOMPLETE: "SAFETENSORS_INCOMPLETE",
      SAFETENSORS_HEADER_LENGTH: "SAFETENSORS_HEADER_LENGTH",
      SAFETENSORS_OFFSETS: "SAFETENSORS_OFFSETS",
      SAFETENSORS_TENSOR_SIZE: "SAFETENSORS_TENSOR_SIZE",
      SAFETENSORS_DTYPE: "SAFETENSORS_DTYPE",
      SHIRA_INDEX_OUT_OF_RANGE: "SHIRA_INDEX_OUT_OF_RANGE",
      SHIRA_NNZ_MISMATCH: "SHIRA_NNZ_MISMATCH",
      SHIRA_DUPLICATE_INDEX: "SHIRA_DUPLICATE_INDEX",
      CONFIG_PEFT_TYPE: "CONFIG_PEFT_TYPE",
      CONFIG_R: "CONFIG_R",
    };
    for (const c of manifest.cases) {
      // (1) onto a fresh model
      const model = fixtureModel();
      const before = allWeights(model);
      await assert.rejects(
        PeftModel.fromPretrained(model, fixturePath("bad", c.name)),
        (e: unknown) => e instanceof ShiraError && e.code === codeFor[c.error] && /lin0|lin2|peft_type|`r`|LORA|safetensors/.test(e.message),
        c.name,
      );
      assert.ok(model.getSubmodule("lin0") instanceof Linear, `${c.name}: nothing injected`);
      const after = allWeights(model);
      for (const [k, v] of before) assert.ok(bitsEqual(v, after.get(k)!), `${c.name}: ${k} unchanged`);
      // (2) as a second adapter onto a model with beta merged: weights, adapters and merged state untouched
      const peft = await PeftModel.fromPretrained(fixtureModel(), fixturePath("mlp", "beta"), { adapterName: "beta" });
      peft.merge();
      const out0 = run(peft);
      const w0 = allWeights(peft.model);
      await assert.rejects(peft.loadAdapter(fixturePath("bad", c.name), "alpha"), (e: unknown) => e instanceof ShiraError && e.code === codeFor[c.error]);
      assert.deepEqual(peft.adapterNames, ["beta"]);
      assert.deepEqual(peft.mergedAdapters, ["beta"]);
      const w1 = allWeights(peft.model);
      assert.deepEqual([...w1.keys()], [...w0.keys()], `${c.name}: no parameter added`);
      for (const [k, v] of w0) assert.ok(bitsEqual(v, w1.get(k)!), `${c.name}: ${k} unchanged`);
      assert.ok(bitsEqual(run(peft), out0), `${c.name}: same forward`);
    }
  });

  test("errors name the key and values: index out of range, nnz mismatch, duplicate", async () => {
    const msg = async (name: string) => {
      try {
        await PeftModel.fromPretrained(fixtureModel(), fixturePath("bad", name));
      } catch (e) {
        return (e as Error).message;
      }
      return "";
    };
    assert.match(await msg("index_out_of_range"), /base_model\.model\.lin0\.shira_indices: position 29 = \(20, \d+\) is out of range: row 20 \(out_features = 20\)/);
    assert.match(await msg("nnz_mismatch"), /lin2\.shira_indices holds 69 positions .* 70 values/);
    assert.match(await msg("duplicate_indices"), /lin0\.shira_indices: position \(\d+, \d+\) appears twice \(columns 10 and 11\)/);
    assert.match(await msg("peft_type_lora"), /"LORA"/);
    assert.match(await msg("r_zero"), /`r` should be a positive integer value but the value passed is 0/);
  });

  test("a module the model does not have, or that is not Linear, is rejected before any change", async () => {
    const src = readFixture("mlp", "alpha", "adapter_model.safetensors");
    const cfg = readFileSync(fixturePath("mlp", "alpha", "adapter_config.json"), "utf8");
    const rename = (from: string, to: string) => {
      const t: Record<string, { dtype: "F32" | "I32"; shape: number[]; data: Float32Array | Int32Array }> = {};
      for (const n of src.names()) {
        const e = src.entry(n);
        t[n.replace(from, to)] = e.dtype === "F32" ? { dtype: "F32", shape: [...e.shape], data: src.f32(n) } : { dtype: "I32", shape: [...e.shape], data: src.i32(n) };
      }
      return writeSafetensors(t, { format: "pt" });
    };
    const model = fixtureModel();
    await assert.rejects(
      PeftModel.fromPretrained(model, { "adapter_config.json": cfg, "adapter_model.safetensors": rename(".lin2.", ".lin9.") }),
      (e: unknown) => e instanceof FormatError && e.code === "SHIRA_MODULE_NOT_FOUND" && /lin9/.test(e.message),
    );
    await assert.rejects(
      PeftModel.fromPretrained(model, { "adapter_config.json": cfg, "adapter_model.safetensors": rename(".lin2.", ".relu.") }),
      (e: unknown) => e instanceof FormatError && e.code === "SHIRA_NOT_LINEAR" && /relu/.test(e.message) && /ReLU/.test(e.message),
    );
    assert.ok(model.getSubmodule("lin0") instanceof Linear);
  });
});

describe("saving in PEFT's format", () => {
  test("saveAdapter: the fixture's adapter_config.json text and safetensors bytes, exactly", async () => {
    for (const name of ["alpha", "beta"]) {
      const peft = await PeftModel.fromPretrained(fixtureModel(), fixturePath("mlp", name));
      const files = peft.saveAdapter("default");
      assert.equal(files["adapter_config.json"], readFileSync(fixturePath("mlp", name, "adapter_config.json"), "utf8"), `${name} config text`);
      assert.deepEqual(files["adapter_model.safetensors"], new Uint8Array(readFileSync(fixturePath("mlp", name, "adapter_model.safetensors"))), `${name} safetensors bytes`);
    }
  });

  test("round trip: savePretrained (default in dir, others in dir/<name>), load into a fresh model, identical", async () => {
    manualSeed(1);
    const peft = getPeftModel(fixtureModel(), new ShiraConfig({ r: 2, targetModules: ["lin1", "lin2"], randomSeed: 56, initWeights: false }), "default");
    peft.addAdapter("second", new ShiraConfig({ r: 3, targetModules: ["lin1", "lin2", "lin3"], randomSeed: 67, initWeights: false }));
    peft.setAdapter("default");
    const o1 = run(peft);
    peft.setAdapter("second");
    const o2 = run(peft);
    const dir = mkdtempSync(join(tmpdir(), "shira-save-"));
    const written = await peft.savePretrained(dir);
    assert.deepEqual(written, [dir, join(dir, "second")]);
    assert.ok(existsSync(join(dir, "adapter_config.json")) && existsSync(join(dir, "second", "adapter_model.safetensors")));
    const cfg = JSON.parse(readFileSync(join(dir, "second", "adapter_config.json"), "utf8"));
    assert.equal(cfg.peft_type, "SHIRA");
    assert.equal(cfg.inference_mode, true);
    assert.deepEqual(cfg.target_modules, ["lin1", "lin2", "lin3"]);
    assert.ok(!readFileSync(join(dir, "adapter_config.json"), "utf8").endsWith("\n"));
    const st = readSafetensors(readFileSync(join(dir, "second", "adapter_model.safetensors")));
    assert.deepEqual(st.metadata, { format: "pt" });
    assert.deepEqual(st.names().sort(), ["lin1", "lin2", "lin3"].flatMap((m) => [`base_model.model.${m}.shira_indices`, `base_model.model.${m}.shira_weight`]).sort());
    assert.equal(st.entry("base_model.model.lin3.shira_indices").dtype, "I32");
    assert.deepEqual(st.entry("base_model.model.lin3.shira_indices").shape, [2, 3 * 40]);

    const fresh = await PeftModel.fromPretrained(fixtureModel(), dir, { adapterName: "default" });
    await fresh.loadAdapter(join(dir, "second"), "second");
    fresh.setAdapter("default");
    assert.ok(bitsEqual(run(fresh), o1) || maxAbsDiff(run(fresh), o1) < 1e-6);
    fresh.setAdapter("second");
    assert.ok(maxAbsDiff(run(fresh), o2) < 1e-6);
    for (const m of ["lin1", "lin2", "lin3"]) {
      const a = layer(peft, m).adapters.get("second")!;
      const b = layer(fresh, m).adapters.get("second")!;
      assert.deepEqual(Array.from(a.indices.view), Array.from(b.indices.view));
      assert.ok(bitsEqual(a.weight.toArray(), b.weight.toArray()));
    }
  });

  test("modulesToSave tensors use PEFT's keys (base_model.model.<module>.<param>) and load back", async () => {
    manualSeed(5);
    const make = () => new Sequential({ lin0: new Linear(6, 8), act: new ReLU(), head: new Linear(8, 3) }).eval();
    const model = make();
    const peft = getPeftModel(model, new ShiraConfig({ r: 1, targetModules: ["lin0"], modulesToSave: ["head"], initWeights: false }));
    const head = peft.model.getSubmodule("head.modules_to_save.default") as Linear;
    head.weight.data.fill(0.25);
    head.bias!.data.set([1, 2, 3]);
    const x = Tensor.from(Array.from({ length: 12 }, (_, i) => Math.cos(i)), [2, 6]);
    const y = peft.forward(x).toArray();
    const files = peft.saveAdapter();
    const st = readSafetensors(files["adapter_model.safetensors"]);
    assert.deepEqual(st.names().sort(), ["base_model.model.head.bias", "base_model.model.head.weight", "base_model.model.lin0.shira_indices", "base_model.model.lin0.shira_weight"]);
    assert.deepEqual(Array.from(st.f32("base_model.model.head.bias")), [1, 2, 3]);
    const model2 = make();
    model2.loadStateDict(Object.fromEntries(Object.entries(model.stateDict()).filter(([k]) => !k.includes("shira") && !k.includes("modules_to_save")).map(([k, t]) => [k.replace(".base_layer", "").replace(".original_module", ""), t])));
    const peft2 = await PeftModel.fromPretrained(model2, files);
    assert.ok(maxAbsDiff(peft2.forward(x).toArray(), y) < 1e-6);
  });

  test("config errors from files are typed", async () => {
    await assert.rejects(
      PeftModel.fromPretrained(fixtureModel(), { "adapter_config.json": "{not json", "adapter_model.safetensors": new Uint8Array(readFileSync(fixturePath("mlp", "alpha", "adapter_model.safetensors"))) }),
      (e: unknown) => e instanceof ConfigError,
    );
    await assert.rejects(PeftModel.fromPretrained(fixtureModel(), "/nonexistent/dir"), (e: unknown) => e instanceof ShiraError && e.code === "IO");
  });
});

describe("base models", () => {
  test("lazy loading (file handle, Blob) reads the same weights; mergeAndUnload + writeSafetensors keeps the key names", async () => {
    const { openFileSource, openSafetensors, blobSource } = await import("../src/node.js");
    const sync = fixtureModel();
    const lazy = new MLP();
    const file = await openSafetensors(await openFileSource(fixturePath("mlp", "model.safetensors")));
    const r = await lazy.loadStateDictAsync(file);
    await file.close();
    assert.deepEqual(r, { missingKeys: [], unexpectedKeys: [] });
    const viaBlob = new MLP();
    await viaBlob.loadStateDictAsync(await openSafetensors(blobSource(new Blob([readFileSync(fixturePath("mlp", "model.safetensors"))]))));
    for (const [k, t] of Object.entries(sync.stateDict())) {
      assert.ok(bitsEqual(t.toArray(), lazy.stateDict()[k].toArray()), k);
      assert.ok(bitsEqual(t.toArray(), viaBlob.stateDict()[k].toArray()), k);
    }
    // shapes are checked from the header before any tensor is read
    const wrong = new Sequential({ lin0: new Linear(10, 21) });
    await assert.rejects(wrong.loadStateDictAsync(await openSafetensors(blobSource(new Blob([readFileSync(fixturePath("mlp", "model.safetensors"))]))), { strict: false }), /lin0\.weight: file \[20, 10\], model \[21, 10\]/);
    // deployment path
    const peft = await PeftModel.fromPretrained(fixtureModel(), fixturePath("mlp", "beta"));
    const merged = readSafetensors(writeSafetensors(peft.mergeAndUnload().stateDict(), { format: "pt" }));
    assert.deepEqual(merged.names().sort(), readFixture("mlp", "model.safetensors").names().sort());
    for (const m of ["lin1", "lin2", "lin3"]) assert.ok(bitsEqual(merged.f32(`${m}.weight`), cases.f32(`merged.${m}.weight`)), m);
  });
});

test("fixture copies match the shared originals when present", () => {
  const shared = join(fixturePath(), "..", "..", "..", "..", "shared", "fixtures", "peft");
  if (!existsSync(shared)) return; // a clean clone outside the workspace has only the copies
  for (const f of readdirSync(join(shared, "mlp"))) {
    if (f.endsWith(".safetensors")) assert.deepEqual(readFileSync(join(shared, "mlp", f)), readFileSync(fixturePath("mlp", f)));
  }
});
void MLP;
