// ShiraModel against PEFT's semantics: the reference fixtures (tests/fixtures/peft/mlp), the behaviours of PEFT's
// tests/test_shira.py, exact fused switching, and error handling (validate, then mutate).
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import {
  ShiraConfig,
  getPeftModel,
  ShiraModel,
  ShiraLinear,
  Tensor,
  Linear,
  Sequential,
  ReLU,
  ConfigError,
  StateError,
  ShiraError,
  manualSeed,
  runtime,
  randpermPrefix,
} from "../src/node.js";
import { MLP, fixtureModel, readFixture, maxAbsDiff, bitsEqual, runOnFixtureInput, allWeights } from "./helpers/fixtures.js";

const cases = readFixture("mlp", "cases.safetensors");
const alphaFile = readFixture("mlp", "alpha", "adapter_model.safetensors");
const betaFile = readFixture("mlp", "beta", "adapter_model.safetensors");
const X = cases.f32("x");

const alphaConfig = () => new ShiraConfig({ r: 1, targetModules: ["lin0", "lin2"], randomSeed: 3 });
const betaConfig = () => new ShiraConfig({ r: 2, targetModules: ["lin1", "lin2", "lin3"] });

function layer(peft: ShiraModel, name: string): ShiraLinear {
  const m = peft.model.getSubmodule(name);
  assert.ok(m instanceof ShiraLinear, `${name} is adapted`);
  return m as ShiraLinear;
}

/** PEFT's stored [2, nnz] indices as flat row*in+col. */
function storedFlat(file: ReturnType<typeof readFixture>, mod: string, inFeatures: number): Int32Array {
  const idx = file.i32(`base_model.model.${mod}.shira_indices`);
  const nnz = idx.length / 2;
  return Int32Array.from({ length: nnz }, (_, j) => idx[j] * inFeatures + idx[nnz + j]);
}

/** The fixture model with alpha and beta built from their seeds, values loaded from the PEFT files. */
function fixturePeft(): ShiraModel {
  const peft = getPeftModel(fixtureModel(), alphaConfig(), "alpha");
  peft.addAdapter("beta", betaConfig());
  for (const [adapter, file, mods] of [
    ["alpha", alphaFile, ["lin0", "lin2"]],
    ["beta", betaFile, ["lin1", "lin2", "lin3"]],
  ] as const) {
    for (const m of mods) layer(peft, m).adapters.get(adapter)!.weight.copyFrom(file.f32(`base_model.model.${m}.shira_weight`));
  }
  return peft;
}

const run = runOnFixtureInput;

const weights = (peft: ShiraModel) => allWeights(peft.model);

function assertWeightsEqual(a: Map<string, Float32Array>, b: Map<string, Float32Array>, what: string): void {
  assert.deepEqual([...a.keys()], [...b.keys()], `${what}: same parameter names`);
  for (const [k, v] of a) assert.ok(bitsEqual(v, b.get(k)!), `${what}: ${k} bit-identical`);
}

describe("masks rebuilt from the seed equal PEFT's stored indices", () => {
  test("alpha (seed 3) and beta (default seed) on every layer", () => {
    const peft = fixturePeft();
    for (const [adapter, file, mods] of [
      ["alpha", alphaFile, ["lin0", "lin2"]],
      ["beta", betaFile, ["lin1", "lin2", "lin3"]],
    ] as const) {
      for (const m of mods) {
        const l = layer(peft, m);
        const a = l.adapters.get(adapter)!;
        assert.deepEqual(Array.from(a.indices.view), Array.from(storedFlat(file, m, l.inFeatures)), `${adapter}.${m}`);
        const { rows, cols } = a.rowsCols(l.inFeatures);
        const idx = file.i32(`base_model.model.${m}.shira_indices`);
        assert.deepEqual(Array.from(rows), Array.from(idx.subarray(0, a.nnz)));
        assert.deepEqual(Array.from(cols), Array.from(idx.subarray(a.nnz)));
      }
    }
  });
});

describe("outputs and weights against the PyTorch fixtures", () => {
  test("base, alpha, beta, both (unfused) within 1e-5", () => {
    const peft = fixturePeft();
    const base = peft.disableAdapters(() => run(peft));
    assert.ok(maxAbsDiff(base, cases.f32("out.base")) < 1e-5, "base");
    peft.setAdapter("alpha");
    assert.ok(maxAbsDiff(run(peft), cases.f32("out.alpha")) < 1e-5, "alpha");
    peft.setAdapter("beta");
    assert.ok(maxAbsDiff(run(peft), cases.f32("out.beta")) < 1e-5, "beta");
    peft.setAdapter(["alpha", "beta"]);
    assert.ok(maxAbsDiff(run(peft), cases.f32("out.both")) < 1e-5, "both");
    assert.ok(maxAbsDiff(run(peft), cases.f32("out.base")) > 1e-3, "adapters change the output");
  });

  test("fused weights equal PyTorch's effective weights bit for bit (both, overlapping lin2 in order)", () => {
    const peft = fixturePeft();
    peft.fuse([{ name: "alpha" }, { name: "beta" }]);
    for (const m of ["lin0", "lin1", "lin2", "lin3"]) {
      assert.ok(bitsEqual(layer(peft, m).baseLayer.weight.toArray(), cases.f32(`effective.both.${m}.weight`)), m);
    }
    assert.ok(maxAbsDiff(run(peft), cases.f32("out.both")) < 1e-5);
    assert.deepEqual(peft.mergedAdapters, ["alpha", "beta"]);
  });

  test("setScale(alpha, 2): effective weights bit-exact, output within 1e-5 (unfused and fused)", () => {
    const peft = fixturePeft();
    peft.setScale("alpha", 2);
    peft.setAdapter("alpha");
    assert.ok(maxAbsDiff(run(peft), cases.f32("out.alpha_scale_2")) < 1e-5, "unfused");
    peft.switchTo("alpha");
    for (const m of ["lin0", "lin2"]) {
      assert.ok(bitsEqual(layer(peft, m).baseLayer.weight.toArray(), cases.f32(`effective.alpha_scale_2.${m}.weight`)), m);
    }
    assert.ok(maxAbsDiff(run(peft), cases.f32("out.alpha_scale_2")) < 1e-5, "fused");
    // changing the scale while fused re-fuses
    peft.setScale("alpha", 1);
    assert.ok(maxAbsDiff(run(peft), cases.f32("out.alpha")) < 1e-5, "re-fused at scale 1");
  });

  test("merge(beta): merged weights bit-exact, out.merged_beta; unmerge restores the base exactly (unlike PEFT)", () => {
    const peft = fixturePeft();
    const before = weights(peft);
    peft.setAdapter("beta");
    peft.merge({ safeMerge: true });
    assert.deepEqual(peft.mergedAdapters, ["beta"]);
    for (const m of ["lin1", "lin2", "lin3"]) {
      assert.ok(bitsEqual(layer(peft, m).baseLayer.weight.toArray(), cases.f32(`merged.${m}.weight`)), m);
    }
    assert.ok(maxAbsDiff(run(peft), cases.f32("out.merged_beta")) < 1e-5);
    peft.unmerge();
    assertWeightsEqual(weights(peft), before, "after unmerge");
    // PEFT's W -= delta drifts: the fixture's unmerged weights differ from the base; ours do not
    const base = readFixture("mlp", "model.safetensors");
    let drift = 0;
    for (const m of ["lin1", "lin2", "lin3"]) {
      const u = cases.f32(`unmerged.${m}.weight`);
      const w = base.f32(`${m}.weight`);
      for (let i = 0; i < u.length; i++) if (u[i] !== w[i]) drift++;
      assert.ok(bitsEqual(layer(peft, m).baseLayer.weight.toArray(), w), `${m} exact`);
    }
    assert.equal(drift, 92 + 117 + 54, "PEFT's unmerge drift, as documented in the fixtures");
  });

  test("getDeltaWeight equals delta.* bit for bit", () => {
    const peft = fixturePeft();
    for (const [adapter, mods] of [["alpha", ["lin0", "lin2"]], ["beta", ["lin1", "lin2", "lin3"]]] as const) {
      const deltas = peft.getDeltaWeight(adapter);
      assert.deepEqual([...deltas.keys()], mods);
      for (const m of mods) {
        const d = deltas.get(m)!;
        assert.deepEqual(d.shape, layer(peft, m).baseLayer.weight.shape);
        assert.ok(bitsEqual(d.toArray(), cases.f32(`delta.${adapter}.${m}`)), `${adapter}.${m}`);
        d.free();
      }
    }
  });
});

describe("PEFT's test_shira.py behaviours", () => {
  test("single adapter shapes (r = 2 on lin1, lin2)", () => {
    manualSeed(0);
    const r = 2;
    const peft = getPeftModel(new MLP(), new ShiraConfig({ r, targetModules: ["lin1", "lin2"] }));
    for (const m of ["lin1", "lin2"]) {
      const l = layer(peft, m);
      const a = l.adapters.get("default")!;
      const [out, inn] = l.baseLayer.weight.shape;
      assert.equal(a.weight.size, r * (out + inn));
      assert.equal(a.rowsCols(inn).rows.length, a.weight.size);
      const d = l.getDeltaWeight("default");
      assert.deepEqual(d.shape, [out, inn]);
      d.free();
    }
    assert.equal(peft.model.getSubmodule("lin0") instanceof Linear, true, "lin0 untouched");
    assert.deepEqual(
      peft.model.namedModules().map(([n]) => n),
      ["", "relu", "lin0", "lin1", "lin1.base_layer", "lin1.shira_weight", "lin2", "lin2.base_layer", "lin2.shira_weight", "lin3", "sm"],
    );
  });

  test("multiple adapters with different seeds and ranks: zeros at init, different outputs when set", () => {
    manualSeed(0);
    const peft = getPeftModel(new MLP().eval(), new ShiraConfig({ r: 2, targetModules: ["lin1", "lin2"], randomSeed: 56 }), "first");
    peft.addAdapter("second", new ShiraConfig({ r: 3, targetModules: ["lin1", "lin2", "lin3"], randomSeed: 67 }));
    for (const [a, mods] of [["first", ["lin1", "lin2"]], ["second", ["lin1", "lin2", "lin3"]]] as const) {
      for (const m of mods) {
        const w = layer(peft, m).adapters.get(a)!.weight;
        assert.ok(w.data.every((v) => v === 0), `${a}.${m} starts at zero`);
        for (let i = 0; i < w.size; i++) w.data[i] = Math.sin(i + m.length + a.length);
      }
    }
    // the positions come from each seed
    const l1 = layer(peft, "lin1");
    const expect56 = Int32Array.from(randpermPrefix(40 * 20, 2 * 60, 56)).sort();
    assert.deepEqual(Array.from(l1.adapters.get("first")!.indices.view), Array.from(expect56));
    peft.setAdapter("first");
    const o1 = run(peft);
    peft.setAdapter("second");
    const o2 = run(peft);
    assert.ok(maxAbsDiff(o1, o2) > 1e-3, "outputs differ between adapters");
    assert.deepEqual(peft.adapterNames, ["first", "second"]);
    assert.equal(peft.activeAdapter, "second");
  });

  test("custom mask function with its own arguments; initWeights: false gives non-zero normal values", () => {
    manualSeed(0);
    const calls: { name: string; r: number; seed: unknown }[] = [];
    const config = new ShiraConfig({
      r: 2,
      maskType: "custom",
      targetModules: ["lin1", "lin2"],
      initWeights: false,
      maskOptions: { customArg: 120 },
      maskFn: (l, r, opts) => {
        calls.push({ name: l.name, r, seed: opts.customArg });
        const nnz = r * (l.outFeatures + l.inFeatures);
        const perm = randpermPrefix(l.outFeatures * l.inFeatures, nnz, opts.customArg as number);
        const mask = new Float32Array(l.outFeatures * l.inFeatures);
        for (const p of perm) mask[p] = 1;
        return mask;
      },
    });
    const peft = getPeftModel(new MLP(), config, "first");
    assert.deepEqual(calls, [
      { name: "lin1", r: 2, seed: 120 },
      { name: "lin2", r: 2, seed: 120 },
    ]);
    const a = layer(peft, "lin1").adapters.get("first")!;
    assert.deepEqual(Array.from(a.indices.view), Array.from(Int32Array.from(randpermPrefix(800, 120, 120)).sort()));
    const v = a.weight.toArray();
    const mean = v.reduce((s, x) => s + x, 0) / v.length;
    const sd = Math.sqrt(v.reduce((s, x) => s + (x - mean) ** 2, 0) / v.length);
    assert.ok(v.every((x) => x !== 0));
    assert.ok(Math.abs(mean) < 0.3 && sd > 0.7 && sd < 1.3, `N(0,1)-like values (mean ${mean}, sd ${sd})`);
  });

  test("a mask function returning the wrong count is rejected and nothing is injected", () => {
    const model = new MLP();
    const config = new ShiraConfig({ r: 1, maskType: "custom", targetModules: ["lin1"], maskFn: () => new Int32Array([1, 2, 3]) });
    assert.throws(() => getPeftModel(model, config), (e: unknown) => e instanceof ConfigError && e.code === "CONFIG_MASK" && /lin1/.test(e.message));
    assert.ok(model.getSubmodule("lin1") instanceof Linear);
  });
});

describe("configuration and injection errors", () => {
  test("nnz > out*in, no target, non-Linear target, duplicate adapter, unknown adapter", () => {
    const model = new MLP();
    assert.throws(() => getPeftModel(model, new ShiraConfig({ r: 10, targetModules: ["lin3"] })), (e: unknown) => e instanceof ConfigError && /more|400|300/.test(e.message));
    assert.throws(() => getPeftModel(model, new ShiraConfig({ r: 1, targetModules: ["nope"] })), (e: unknown) => e instanceof ConfigError && e.code === "CONFIG_NO_TARGET" && /nope/.test(e.message));
    assert.throws(() => getPeftModel(model, new ShiraConfig({ r: 1, targetModules: ["relu", "lin1"] })), (e: unknown) => e instanceof ConfigError && e.code === "SHIRA_NOT_LINEAR" && /relu \(ReLU\)/.test(e.message));
    assert.ok(model.getSubmodule("lin1") instanceof Linear, "nothing injected after the errors");
    assert.throws(() => new ShiraConfig({ r: 0 }), (e: unknown) => e instanceof ConfigError && e.code === "CONFIG_R");
    const peft = getPeftModel(model, new ShiraConfig({ r: 1, targetModules: ".*lin[12]" }));
    assert.deepEqual(peft.shiraLayers().map(([n]) => n), ["lin1", "lin2"]);
    assert.throws(() => peft.addAdapter("default", new ShiraConfig({ r: 1, targetModules: ["lin1"] })), (e: unknown) => e instanceof StateError && e.code === "ADAPTER_EXISTS");
    assert.throws(() => peft.setAdapter("nope"), (e: unknown) => e instanceof StateError && e.code === "ADAPTER_NOT_FOUND");
    assert.throws(() => peft.switchTo("nope"), (e: unknown) => e instanceof ShiraError && /nope/.test(e.message));
  });

  test("safe merge refuses NaN/Inf before touching any weight; a failed fuse changes nothing", () => {
    const peft = fixturePeft();
    peft.switchTo("alpha");
    const bv = layer(peft, "lin3").adapters.get("beta")!.weight;
    bv.data[5] = NaN;
    const before = weights(peft);
    assert.throws(
      () => peft.merge({ adapterNames: ["beta"], safeMerge: true }),
      (e: unknown) => e instanceof StateError && e.code === "NONFINITE" && /beta/.test(e.message) && /lin3/.test(e.message) && /NaN/.test(e.message),
    );
    assertWeightsEqual(weights(peft), before, "after refused merge");
    assert.deepEqual(peft.mergedAdapters, ["alpha"]);
    assert.throws(() => peft.fuse([{ name: "alpha" }, { name: "beta" }], { safeMerge: true }), (e: unknown) => e instanceof StateError && e.code === "NONFINITE");
    assertWeightsEqual(weights(peft), before, "after refused fuse");
    assert.throws(() => peft.fuse([{ name: "alpha" }, { name: "ghost" }]), (e: unknown) => e instanceof StateError);
    assert.throws(() => peft.fuse([{ name: "alpha", weight: Infinity }]), (e: unknown) => e instanceof ConfigError);
    assertWeightsEqual(weights(peft), before, "after invalid fuse");
    assert.deepEqual(peft.mergedAdapters, ["alpha"]);
    bv.data[5] = 1e38; // 1e38 * 4 overflows f32
    peft.setScale("beta", 4);
    const before2 = weights(peft);
    assert.throws(() => peft.merge({ adapterNames: ["beta"], safeMerge: true }), (e: unknown) => e instanceof StateError && e.code === "NONFINITE" && /Infinity/.test(e.message));
    assertWeightsEqual(weights(peft), before2, "after overflow");
  });
});

describe("rapid fused switching is exact", () => {
  test("10,000 random switchTo / fuse / merge / unmerge / setScale / setAdapter operations keep the base bit-identical", () => {
    const peft = fixturePeft();
    peft.addAdapter("gamma", new ShiraConfig({ r: 2, targetModules: ["lin0", "lin1", "lin2"], randomSeed: 11, initWeights: false }));
    const base = new Map<string, Float32Array>();
    for (const m of ["lin0", "lin1", "lin2", "lin3"]) base.set(m, layer(peft, m).baseLayer.weight.toArray());
    const names = ["alpha", "beta", "gamma"];
    let seed = 12345;
    const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const pick = () => names[Math.floor(rnd() * 3)];
    for (let i = 0; i < 10000; i++) {
      const op = Math.floor(rnd() * 6);
      if (op === 0) peft.switchTo(pick());
      else if (op === 1) {
        const shuffled = names.slice().sort(() => rnd() - 0.5).slice(0, 1 + Math.floor(rnd() * 3));
        peft.fuse(shuffled.map((name) => ({ name, weight: rnd() * 2 - 0.5 })));
      } else if (op === 2) peft.merge({ adapterNames: [pick()] });
      else if (op === 3) peft.unmerge();
      else if (op === 4) peft.setScale(pick(), [0.5, 1, 2, 3.7][Math.floor(rnd() * 4)]);
      else peft.setAdapter(pick());
      if (i % 997 === 0 && peft.merged) {
        // spot check: the fused weight equals base + deltas applied in order
        const l = layer(peft, "lin2");
        const expect = base.get("lin2")!.slice();
        for (const e of l.fusedEntries) {
          const a = l.adapters.get(e.name)!;
          const idx = a.indices.view;
          const v = a.weight.data;
          for (let j = 0; j < a.nnz; j++) expect[idx[j]] = Math.fround(expect[idx[j]] + Math.fround(v[j] * e.coef));
        }
        assert.ok(bitsEqual(l.baseLayer.weight.toArray(), expect), `fused lin2 at step ${i}`);
      }
    }
    peft.unmerge();
    for (const [m, w] of base) assert.ok(bitsEqual(layer(peft, m).baseLayer.weight.toArray(), w), `${m} bit-identical`);
  });

  test("switchTo in fused mode gives the same outputs as the unfused forward", () => {
    const peft = fixturePeft();
    peft.switchTo("beta");
    assert.ok(maxAbsDiff(run(peft), cases.f32("out.beta")) < 1e-5);
    peft.switchTo("alpha");
    assert.ok(maxAbsDiff(run(peft), cases.f32("out.alpha")) < 1e-5);
    assert.deepEqual(peft.activeAdapters, ["alpha"]);
    // disabled scope: the base, then back to the fused state
    const base = peft.disableAdapters(() => run(peft));
    assert.ok(maxAbsDiff(base, cases.f32("out.base")) < 1e-5);
    assert.deepEqual(peft.mergedAdapters, ["alpha"]);
    assert.ok(maxAbsDiff(run(peft), cases.f32("out.alpha")) < 1e-5);
    // switchToBase: the base model, exactly; the next switch enables adapters again
    peft.switchToBase();
    assert.equal(peft.adaptersDisabled, true);
    assert.deepEqual(peft.mergedAdapters, []);
    assert.ok(maxAbsDiff(run(peft), cases.f32("out.base")) < 1e-5);
    assert.throws(() => peft.disableAdapters(() => peft.switchTo("beta")), (e: unknown) => e instanceof StateError && e.code === "ADAPTER_STATE");
    peft.switchTo("beta");
    assert.equal(peft.adaptersDisabled, false);
    assert.ok(maxAbsDiff(run(peft), cases.f32("out.beta")) < 1e-5);
  });

  test("1,000 addAdapter / deleteAdapter cycles (with fusing) do not grow wasm memory", () => {
    const peft = fixturePeft();
    const rt = runtime();
    const cycle = (i: number) => {
      peft.addAdapter("tmp", new ShiraConfig({ r: 2, targetModules: ["lin1", "lin2", "lin3"], randomSeed: i, initWeights: false }));
      peft.fuse([{ name: "alpha" }, { name: "tmp", weight: 0.5 }]);
      peft.deleteAdapter("tmp");
    };
    for (let i = 0; i < 20; i++) cycle(i);
    const mem = rt.memoryBytes;
    const live = rt.liveBytes;
    for (let i = 0; i < 1000; i++) cycle(i);
    assert.equal(rt.memoryBytes, mem, "memory did not grow");
    assert.equal(rt.liveBytes, live, "no leaked buffers");
    assert.deepEqual(peft.mergedAdapters, ["alpha"]);
    peft.unmerge();
  });
});

describe("unload, parameters, modulesToSave", () => {
  test("mergeAndUnload returns the plain model with merged weights; unload returns the exact base", () => {
    const peft = fixturePeft();
    peft.setAdapter("beta");
    const model = peft.mergeAndUnload();
    for (const m of ["lin1", "lin2", "lin3"]) {
      const l = model.getSubmodule(m);
      assert.ok(l instanceof Linear && !(l instanceof ShiraLinear));
      assert.ok(bitsEqual((l as Linear).weight.toArray(), cases.f32(`merged.${m}.weight`)), m);
    }
    assert.throws(() => peft.forward(Tensor.zeros([1, 10])), (e: unknown) => e instanceof StateError);
    const peft2 = fixturePeft();
    peft2.switchTo("alpha");
    const plain = peft2.unload();
    const base = readFixture("mlp", "model.safetensors");
    for (const m of ["lin0", "lin1", "lin2", "lin3"]) assert.ok(bitsEqual((plain.getSubmodule(m) as Linear).weight.toArray(), base.f32(`${m}.weight`)));
    assert.deepEqual(plain.namedModules().map(([n]) => n), ["", "relu", "lin0", "lin1", "lin2", "lin3", "sm"]);
  });

  test("getNbTrainableParameters / printTrainableParameters", () => {
    const peft = fixturePeft();
    const all = 20 * 10 + 20 + 40 * 20 + 40 + 30 * 40 + 30 + 10 * 30 + 10;
    const alpha = 30 + 70;
    const beta = 120 + 140 + 80;
    assert.deepEqual(peft.getNbTrainableParameters(), [alpha, all + alpha + beta]);
    let line = "";
    peft.printTrainableParameters((s) => (line = s));
    assert.equal(all + alpha + beta, 3040);
    assert.equal(line, `trainable params: 100 || all params: 3,040 || trainable%: ${((100 * 100) / 3040).toFixed(4)}`);
    peft.setAdapter("beta");
    assert.equal(peft.getNbTrainableParameters()[0], beta);
  });

  test("modulesToSave: a trainable copy per adapter, used by the forward of that adapter", () => {
    manualSeed(3);
    const model = new Sequential({ lin0: new Linear(6, 8), act: new ReLU(), head: new Linear(8, 3) }).eval();
    const peft = getPeftModel(model, new ShiraConfig({ r: 1, targetModules: ["lin0"], modulesToSave: ["head"] }), "a");
    peft.addAdapter("b", new ShiraConfig({ r: 1, targetModules: ["lin0"], modulesToSave: ["head"] }));
    const names = peft.model.namedParameters().map(([n, p]) => `${n}:${p.requiresGrad}`);
    assert.deepEqual(names, [
      "lin0.base_layer.weight:false",
      "lin0.base_layer.bias:false",
      "lin0.shira_weight.a:true",
      "lin0.shira_weight.b:false",
      "head.original_module.weight:false",
      "head.original_module.bias:false",
      "head.modules_to_save.a.weight:true",
      "head.modules_to_save.a.bias:true",
      "head.modules_to_save.b.weight:false",
      "head.modules_to_save.b.bias:false",
    ]);
    const x = Tensor.from(Array.from({ length: 12 }, (_, i) => i / 7 - 0.5), [2, 6]);
    const y0 = peft.forward(x).toArray();
    // change b's copy of the head: only b's forward changes
    const headB = peft.model.getSubmodule("head.modules_to_save.b") as Linear;
    headB.bias!.data.fill(10);
    assert.ok(maxAbsDiff(peft.forward(x).toArray(), y0) === 0, "a unaffected");
    peft.setAdapter("b");
    const yb = peft.forward(x).toArray();
    assert.ok(yb.every((v, i) => Math.abs(v - y0[i]) > 5), "b uses its own copy");
    const base = peft.disableAdapters(() => peft.forward(x).toArray());
    assert.ok(maxAbsDiff(base, y0) < 1e-6, "disabled: the original head (zero adapters)");
  });
});
