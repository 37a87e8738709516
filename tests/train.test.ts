// Training: optimizers and schedules against float64 formulas, the training loop (fused SHiRA training, exact
// base restore, accumulation, cancellation), mask strategies with calibration, and a real MNIST task.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import {
  Tensor,
  Linear,
  ReLU,
  Sequential,
  Parameter,
  SGD,
  AdamW,
  clipGradNorm,
  lrMultiplier,
  train,
  evaluate,
  getPeftModel,
  ShiraConfig,
  ShiraLinear,
  ShiraError,
  ConfigError,
  manualSeed,
  topKIndices,
  structMask,
  getLoraModel,
  LoraConfig,
} from "../src/node.js";
import { loadMnist, split, transform, asDataset } from "../src/demo/mnist-data.js";
import { bitsEqual, toyData } from "./helpers/fixtures.js";

const f32 = Math.fround;

describe("optimizers and schedules", () => {
  test("SGD with momentum, dampening, weight decay, Nesterov matches PyTorch's update rule", () => {
    for (const o of [{ momentum: 0 }, { momentum: 0.9 }, { momentum: 0.9, dampening: 0.1, weightDecay: 0.01 }, { momentum: 0.8, nesterov: true, weightDecay: 0.05 }]) {
      const p = Parameter.from([0.5, -1.25, 2, 0.125]);
      const opt = new SGD([p], { lr: 0.1, ...o });
      const ref = Array.from(p.data);
      const buf = [0, 0, 0, 0];
      for (let step = 0; step < 5; step++) {
        const g = ref.map((_, i) => Math.sin(step + i));
        p.ensureGrad().data.set(g);
        opt.step();
        for (let i = 0; i < 4; i++) {
          let d = g[i] + (o.weightDecay ?? 0) * ref[i];
          if (o.momentum) {
            buf[i] = step === 0 ? d : o.momentum * buf[i] + (1 - (o.dampening ?? 0)) * d;
            d = o.nesterov ? d + o.momentum * buf[i] : buf[i];
          }
          ref[i] = ref[i] - 0.1 * d;
        }
      }
      for (let i = 0; i < 4; i++) assert.ok(Math.abs(p.data[i] - ref[i]) < 1e-5, `${JSON.stringify(o)} [${i}] ${p.data[i]} vs ${ref[i]}`);
      opt.free();
    }
  });

  test("AdamW matches torch.optim.AdamW's rule (decoupled weight decay, bias correction)", () => {
    const p = Parameter.from([0.5, -1.25, 2, 0.125, 3]);
    const opt = new AdamW([p], { lr: 0.01, betas: [0.9, 0.99], eps: 1e-8, weightDecay: 0.1 });
    const ref = Array.from(p.data);
    const m = [0, 0, 0, 0, 0];
    const v = [0, 0, 0, 0, 0];
    for (let t = 1; t <= 6; t++) {
      const g = ref.map((_, i) => Math.cos(t * (i + 1)));
      p.ensureGrad().data.set(g);
      opt.step();
      for (let i = 0; i < 5; i++) {
        ref[i] *= 1 - 0.01 * 0.1;
        m[i] = 0.9 * m[i] + 0.1 * g[i];
        v[i] = 0.99 * v[i] + 0.01 * g[i] * g[i];
        const mh = m[i] / (1 - 0.9 ** t);
        const vh = v[i] / (1 - 0.99 ** t);
        ref[i] -= (0.01 * mh) / (Math.sqrt(vh) + 1e-8);
      }
    }
    for (let i = 0; i < 5; i++) assert.ok(Math.abs(p.data[i] - ref[i]) < 1e-5, `[${i}] ${p.data[i]} vs ${ref[i]}`);
    opt.free();
  });

  test("clipGradNorm scales to the max norm and returns the norm before", () => {
    const a = Parameter.from([3, 0]);
    const b = Parameter.from([0, 4]);
    a.ensureGrad().data.set([3, 0]);
    b.ensureGrad().data.set([0, 4]);
    assert.ok(Math.abs(clipGradNorm([a, b], 1) - 5) < 1e-6);
    assert.ok(Math.abs(a.grad!.data[0] - f32(3 * (1 / (5 + 1e-6)))) < 1e-6);
    assert.ok(Math.abs(b.grad!.data[1] - 0.8) < 1e-5);
    assert.ok(Math.abs(clipGradNorm([a, b], 10) - 1) < 1e-5, "no clipping below the max");
  });

  test("schedules: warm-up then constant / linear / cosine", () => {
    const c = lrMultiplier({ type: "constant", warmupSteps: 4 }, 20);
    assert.deepEqual([0, 1, 2, 4, 19].map(c), [0, 0.25, 0.5, 1, 1]);
    const l = lrMultiplier({ type: "linear", warmupSteps: 4 }, 20);
    assert.deepEqual([4, 12, 20].map(l), [1, 0.5, 0]);
    const cos = lrMultiplier({ type: "cosine", warmupSteps: 0 }, 10);
    assert.ok(Math.abs(cos(5) - 0.5) < 1e-12 && cos(0) === 1 && Math.abs(cos(10)) < 1e-12);
    assert.throws(() => lrMultiplier({ type: "step" as "linear" }, 10), ConfigError);
  });
});


describe("training loop", () => {
  test("SHiRA trains in fused form: only masked positions change; the base is bit-identical afterwards", async () => {
    manualSeed(3);
    const model = new Sequential({ fc1: new Linear(8, 16), act: new ReLU(), fc2: new Linear(16, 3) });
    const base = new Map(model.namedParameters().map(([n, p]) => [n, p.toArray()]));
    // shift the task: permute labels so the base model is wrong
    const data = toyData(300, 1);
    const shifted = { ...data, labels: data.labels.map((c) => (c + 1) % 3) };
    await train(model, data, { epochs: 8, batchSize: 32, lr: 0.02 });
    const trainedBase = new Map(model.namedParameters().map(([n, p]) => [n, p.toArray()]));
    const peft = getPeftModel(model, new ShiraConfig({ r: 2, targetModules: ["fc1", "fc2"], randomSeed: 9 }), "shift");
    const before = evaluate(peft, shifted);
    const steps: number[] = [];
    const res = await train(peft, shifted, { epochs: 15, batchSize: 32, lr: 0.05, schedule: { type: "linear", warmupSteps: 5 }, onProgress: (p) => steps.push(p.step) });
    assert.equal(res.steps, 15 * Math.ceil(300 / 32));
    assert.deepEqual(steps, Array.from({ length: res.steps }, (_, i) => i + 1));
    assert.ok(res.losses[res.losses.length - 1] < res.losses[0], "loss decreased");
    const after = evaluate(peft, shifted);
    assert.ok(after > before + 0.3, `adapter learned the shifted task (${before} -> ${after})`);
    assert.deepEqual(peft.mergedAdapters, [], "unfused again after training");
    // base weights bit-identical to before training the adapter
    for (const [n, p] of peft.model.namedParameters()) {
      if (n.includes("shira_weight")) continue;
      const key = n.replace(".base_layer", "");
      assert.ok(bitsEqual(p.toArray(), trainedBase.get(key)!), `${n} bit-identical`);
    }
    // only masked positions differ between the merged weight and the base
    peft.merge();
    for (const m of ["fc1", "fc2"]) {
      const l = peft.model.getSubmodule(m) as ShiraLinear;
      const w = l.baseLayer.weight.toArray();
      const b = trainedBase.get(`${m}.weight`)!;
      const masked = new Set(l.adapters.get("shift")!.indices.view);
      let changed = 0;
      for (let i = 0; i < w.length; i++) {
        if (w[i] !== b[i]) {
          assert.ok(masked.has(i), `${m}[${i}] changed outside the mask`);
          changed++;
        }
      }
      assert.ok(changed > 0.9 * masked.size, `${m}: most masked positions moved (${changed}/${masked.size})`);
    }
    peft.unmerge();
    void base;
  });

  test("gradient accumulation: 2 micro-batches of 8 give the same update as one batch of 16", async () => {
    const run = async (bs: number, accum: number) => {
      manualSeed(5);
      const m = new Sequential({ fc: new Linear(8, 3) });
      await train(m, toyData(16, 2), { epochs: 1, batchSize: bs, gradientAccumulationSteps: accum, lr: 0.1, optimizer: "sgd", shuffle: false });
      return (m.at(0) as Linear).weight.toArray();
    };
    const a = await run(16, 1);
    const b = await run(8, 2);
    let d = 0;
    for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
    assert.ok(d < 1e-6, `max diff ${d}`);
  });

  test("cancellation with AbortSignal: rejects with ABORTED, stops, restores the base exactly", async () => {
    manualSeed(4);
    const model = new Sequential({ fc1: new Linear(8, 16), act: new ReLU(), fc2: new Linear(16, 3) });
    const w0 = new Map(model.namedParameters().map(([n, p]) => [n, p.toArray()]));
    const peft = getPeftModel(model, new ShiraConfig({ r: 2, targetModules: ["fc1", "fc2"] }), "a");
    const ctl = new AbortController();
    let seen = 0;
    await assert.rejects(
      train(peft, toyData(320, 3), { epochs: 5, batchSize: 16, lr: 0.05, signal: ctl.signal, onProgress: (p) => { seen = p.step; if (p.step === 3) ctl.abort(); } }),
      (e: unknown) => e instanceof ShiraError && e.code === "ABORTED",
    );
    assert.equal(seen, 3);
    for (const [n, p] of peft.model.namedParameters()) if (!n.includes("shira")) assert.ok(bitsEqual(p.toArray(), w0.get(n.replace(".base_layer", ""))!), n);
    assert.deepEqual(peft.mergedAdapters, []);
  });

  test("LoRA trains too (unfused), and errors are typed", async () => {
    manualSeed(6);
    const model = new Sequential({ fc1: new Linear(8, 16), act: new ReLU(), fc2: new Linear(16, 3) });
    const data = toyData(300, 4);
    const shifted = { ...data, labels: data.labels.map((c) => (c + 2) % 3) };
    const lora = getLoraModel(model, new LoraConfig({ r: 2, loraAlpha: 4, targetModules: ["fc1", "fc2"] }), "a");
    const before = evaluate(lora, shifted);
    await train(lora, shifted, { epochs: 15, batchSize: 32, lr: 0.03 });
    assert.ok(evaluate(lora, shifted) > before + 0.3);
    await assert.rejects(train(lora, { ...data, labels: data.labels.subarray(1) }), ShiraError);
    await assert.rejects(train(lora, data, { batchSize: 0 }), ConfigError);
  });
});

describe("mask strategies", () => {
  function oneLayer(seed: number) {
    manualSeed(seed);
    return new Sequential({ fc: new Linear(8, 6) });
  }
  const nnz = 2 * (8 + 6);
  /** Every selected score >= every unselected score (ties broken by index are then the only freedom). */
  function assertTopK(selected: Int32Array, score: (i: number) => number, n: number, what: string) {
    const sel = new Set(selected);
    assert.equal(sel.size, nnz, `${what}: ${nnz} distinct positions`);
    let minSel = Infinity;
    let maxUnsel = -Infinity;
    for (let i = 0; i < n; i++) {
      if (sel.has(i)) minSel = Math.min(minSel, score(i));
      else maxUnsel = Math.max(maxUnsel, score(i));
    }
    assert.ok(minSel >= maxUnsel - 1e-6 * Math.max(1, Math.abs(maxUnsel)), `${what}: min selected ${minSel} < max unselected ${maxUnsel}`);
  }

  test("wm: the nnz largest |W|", () => {
    const m = oneLayer(1);
    const w = (m.at(0) as Linear).weight.toArray();
    const peft = getPeftModel(m, new ShiraConfig({ r: 2, maskType: "wm", targetModules: ["fc"] }));
    const idx = (peft.model.getSubmodule("fc") as ShiraLinear).adapters.get("default")!.indices.toArray();
    assertTopK(idx, (i) => Math.abs(w[i]), 48, "wm");
    assert.deepEqual(Array.from(idx), Array.from(topKIndices(w.map(Math.abs), nnz)));
  });

  for (const kind of ["grad", "snip"] as const) {
    test(`${kind}: chosen from calibration gradients (checked against a float64 gradient), weights unchanged`, () => {
      const m = oneLayer(2);
      const lin = m.at(0) as Linear;
      const w = lin.weight.toArray();
      const b = lin.bias!.toArray();
      const cal = { ...toyData(40, 7), inputs: toyData(40, 7).inputs, labels: Int32Array.from({ length: 40 }, (_, i) => i % 6) };
      const bs = 16;
      // float64 reference: per-batch dense gradient of mean cross-entropy wrt W
      const ref = new Float64Array(48);
      for (let from = 0; from < 40; from += bs) {
        const to = Math.min(40, from + bs);
        const g = new Float64Array(48);
        for (let r = from; r < to; r++) {
          const x = cal.inputs.subarray(r * 8, r * 8 + 8);
          const z = Array.from({ length: 6 }, (_, o) => b[o] + x.reduce((s, v, k) => s + v * w[o * 8 + k], 0));
          const mx = Math.max(...z);
          const e = z.map((v) => Math.exp(v - mx));
          const s = e.reduce((a, v) => a + v, 0);
          for (let o = 0; o < 6; o++) {
            const d = (e[o] / s - (o === cal.labels[r] ? 1 : 0)) / (to - from);
            for (let k = 0; k < 8; k++) g[o * 8 + k] += d * x[k];
          }
        }
        for (let i = 0; i < 48; i++) ref[i] += kind === "grad" ? Math.abs(g[i]) : g[i];
      }
      const before = m.namedParameters().map(([, p]) => p.toArray());
      const peft = getPeftModel(m, new ShiraConfig({ r: 2, maskType: kind, targetModules: ["fc"] }), "default", { calibration: { ...cal, batchSize: bs } });
      const idx = (peft.model.getSubmodule("fc") as ShiraLinear).adapters.get("default")!.indices.toArray();
      assertTopK(idx, (i) => (kind === "grad" ? ref[i] : Math.abs(w[i] * ref[i])), 48, kind);
      const after = [(peft.model.getSubmodule("fc") as ShiraLinear).baseLayer.weight.toArray(), (peft.model.getSubmodule("fc") as ShiraLinear).baseLayer.bias!.toArray()];
      assert.ok(bitsEqual(before[0], after[0]) && bitsEqual(before[1], after[1]), "calibration never changes weights");
      assert.equal((peft.model.getSubmodule("fc") as ShiraLinear).baseLayer.weight.grad, null);
    });
  }

  test("struct: exactly nnz distinct positions with the documented rows, columns and diagonal", () => {
    const m = oneLayer(3);
    const peft = getPeftModel(m, new ShiraConfig({ r: 2, maskType: "struct", targetModules: ["fc"] }));
    const idx = (peft.model.getSubmodule("fc") as ShiraLinear).adapters.get("default")!.indices.toArray();
    assert.deepEqual(Array.from(idx), Array.from(structMask(6, 8, 2)));
    assert.equal(new Set(idx).size, nnz);
    for (let i = 0; i < 6; i++) assert.ok(idx.includes(i * 8 + i), `diagonal (${i}, ${i})`);
  });

  test("grad/snip without calibration data is a clear error", () => {
    assert.throws(() => getPeftModel(oneLayer(4), new ShiraConfig({ r: 2, maskType: "snip", targetModules: ["fc"] })), (e: unknown) => e instanceof ConfigError && /calibration/.test(e.message));
  });
});

test("MNIST: a SHiRA adapter for 90°-rotated digits gains >= 40 points; the base is unchanged when switched off", async () => {
  manualSeed(0);
  const { train: tr, test: te } = split(loadMnist(), 6000, 2000, 1);
  const model = new Sequential({ fc1: new Linear(784, 128), act1: new ReLU(), fc2: new Linear(128, 10) });
  await train(model, asDataset(tr), { epochs: 3, batchSize: 64, lr: 2e-3, schedule: { type: "cosine", warmupSteps: 10 } });
  const upright = evaluate(model, asDataset(te));
  const rotTest = asDataset(transform(te, "rot90"));
  const rotBase = evaluate(model, rotTest);
  assert.ok(upright > 0.85, `base model learned upright digits (${upright})`);
  const peft = getPeftModel(model, new ShiraConfig({ r: 4, targetModules: ["fc1", "fc2"], randomSeed: 1 }), "rot90");
  await train(peft, asDataset(transform(tr, "rot90")), { epochs: 3, batchSize: 64, lr: 1e-2, schedule: { type: "cosine", warmupSteps: 10 } });
  const rotAdapter = evaluate(peft, rotTest);
  const uprightOff = peft.disableAdapters(() => evaluate(peft, asDataset(te)));
  console.log(`# MNIST: upright ${upright.toFixed(4)}, rotated base ${rotBase.toFixed(4)} -> adapter ${rotAdapter.toFixed(4)}, upright with adapter off ${uprightOff.toFixed(4)}`);
  assert.ok(rotAdapter - rotBase >= 0.4, `rotated accuracy ${rotBase} -> ${rotAdapter}`);
  assert.equal(uprightOff, upright, "adapter off: the base model's accuracy exactly");
  peft.switchTo("rot90");
  assert.equal(evaluate(peft, rotTest), rotAdapter, "fused switch: same predictions");
  peft.unmerge();
  assert.equal(peft.disableAdapters(() => evaluate(peft, asDataset(te))), upright);
});
