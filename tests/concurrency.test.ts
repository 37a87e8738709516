// Concurrency rules (issue 12): while train() runs on an adapter model, every adapter or weight change and a second
// train() are refused with StateError BUSY; while a DecoderModel generates, adapter switches between tokens work but
// structural changes (deleting the active adapter, unload, injecting layers, dispose, a second generation) are
// refused with BUSY. The reported active/fused adapters always match the weights in use, and everything works again
// once the running operation ends.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  AutoModelForCausalLM,
  Linear,
  LoraConfig,
  PeftModel,
  ReLU,
  Sequential,
  ShiraConfig,
  ShiraError,
  ShiraLinear,
  StateError,
  getLoraModel,
  getPeftModel,
  manualSeed,
  runtime,
  train,
  type ShiraModel,
} from "../src/node.js";
import { TRANSFORMERS } from "./helpers/transformers.js";
import { toyData } from "./helpers/fixtures.js";


const isBusy = (busy: string) => (e: unknown) => {
  assert.ok(e instanceof StateError, `a StateError, got ${String(e)}`);
  assert.equal(e.code, "BUSY", e.message);
  assert.equal(e.details["busy"], busy);
  return true;
};

/**
 * The reported state matches the weights: the fused adapters are the active ones, every layer has exactly those
 * fused, and each live weight is the base plus the fused adapters' deltas.
 */
function assertConsistent(peft: ShiraModel): void {
  const fused = peft.fusedAdapters;
  if (fused.length) assert.deepEqual(fused.map((f) => f.name), peft.activeAdapters, "fused adapters are the active ones");
  for (const [name, l] of peft.shiraLayers()) {
    assert.deepEqual(l.fusedEntries.map((e) => e.name), fused.filter((f) => l.adapters.has(f.name)).map((f) => f.name), `${name}: fused entries`);
    const expected = l.baseWeight();
    for (const f of fused) {
      if (!l.adapters.has(f.name)) continue;
      assert.equal(f.weight, 1, "the check assumes weight 1");
      const d = l.getDeltaWeight(f.name);
      const dd = d.toArray();
      d.free();
      for (let i = 0; i < dd.length; i++) if (dd[i] !== 0) expected[i] = Math.fround(expected[i] + dd[i]);
    }
    const w = l.liveWeightF32();
    let bad = -1;
    for (let i = 0; i < w.length && bad < 0; i++) if (w[i] !== expected[i]) bad = i;
    assert.equal(bad, -1, `${name}: weight[${bad}] = ${w[bad]} is not base + fused deltas (${expected[bad]})`);
  }
}

function shiraMlp(seed: number): ShiraModel {
  manualSeed(seed);
  const model = new Sequential({ fc1: new Linear(8, 16), act: new ReLU(), fc2: new Linear(16, 3) });
  const peft = getPeftModel(model, new ShiraConfig({ r: 2, targetModules: ["fc1", "fc2"], randomSeed: 1 }), "a");
  peft.addAdapter("b", new ShiraConfig({ r: 2, targetModules: ["fc1", "fc2"], randomSeed: 2, initWeights: false }));
  peft.setAdapter("a");
  return peft;
}

describe("ShiraModel while train() runs", () => {
  test("every adapter change and a second train() are refused with BUSY; the state and the weights agree; afterwards they work", async () => {
    const peft = shiraMlp(11);
    const files = peft.saveAdapter("b");
    const data = toyData(96, 1);
    let second: Promise<unknown> | null = null;
    let checked = 0;
    const res = await train(peft, data, {
      epochs: 2,
      batchSize: 16,
      lr: 0.05,
      onProgress: (p) => {
        if (p.step !== 2) return;
        assert.equal(peft.busy, "train");
        const forbidden: [string, () => unknown][] = [
          ["switchTo", () => peft.switchTo("b")],
          ["switchToBase", () => peft.switchToBase()],
          ["setAdapter", () => peft.setAdapter("b")],
          ["deleteAdapter", () => peft.deleteAdapter("b")],
          ["deleteAdapter", () => peft.deleteAdapter("a")],
          ["merge", () => peft.merge({ adapterNames: ["b"] })],
          ["unmerge", () => peft.unmerge()],
          ["fuse", () => peft.fuse([{ name: "a" }, { name: "b" }])],
          ["unload", () => peft.unload()],
          ["mergeAndUnload", () => peft.mergeAndUnload()],
          ["addAdapter", () => peft.addAdapter("c", new ShiraConfig({ r: 1, targetModules: ["fc1"] }))],
          ["loadAdapterFiles", () => peft.loadAdapterFiles(files["adapter_config.json"], files["adapter_model.safetensors"] as Uint8Array, "c")],
          ["setScale", () => peft.setScale("a", 2)],
          ["disableAdapters", () => peft.disableAdapters(() => 1)],
          ["disableAdapterLayers", () => peft.disableAdapterLayers()],
          ["enableAdapterLayers", () => peft.enableAdapterLayers()],
        ];
        for (const [what, call] of forbidden) {
          assert.throws(call, (e: unknown) => isBusy("train")(e) && (e as StateError).details["operation"] === what, what);
          checked++;
        }
        // the async loader and a second train() reject
        second = Promise.all([
          assert.rejects(peft.loadAdapter({ "adapter_config.json": files["adapter_config.json"], "adapter_model.safetensors": files["adapter_model.safetensors"] }, "c"), isBusy("train")),
          assert.rejects(train(peft, data, { epochs: 1 }), isBusy("train")),
        ]);
        // nothing changed: still training "a", fused, with the weights that say so
        assert.deepEqual(peft.adapterNames, ["a", "b"]);
        assert.deepEqual(peft.activeAdapters, ["a"]);
        assert.deepEqual(peft.fusedAdapters, [{ name: "a", weight: 1 }]);
        assert.equal(peft.getScale("a"), 1);
        assert.ok(peft.model.getSubmodule("fc1") instanceof ShiraLinear);
        assertConsistent(peft);
      },
    });
    assert.equal(res.steps, 12, "training went on after the refused calls");
    assert.equal(checked, 16);
    await second;
    // training is over: reading and changing work again
    assert.equal(peft.busy, null);
    assert.deepEqual(peft.fusedAdapters, []);
    assertConsistent(peft);
    peft.switchTo("b");
    assertConsistent(peft);
    peft.setScale("b", 1);
    peft.fuse([{ name: "a" }, { name: "b" }]);
    assertConsistent(peft);
    peft.unmerge();
    peft.deleteAdapter("b");
    assert.deepEqual(peft.adapterNames, ["a"]);
    await train(peft, data, { epochs: 1, batchSize: 32 });
    assert.equal(peft.busy, null);
    peft.unload();
  });

  test("a concurrent task sees BUSY between steps; aborting through the signal ends the rule", async () => {
    const peft = shiraMlp(12);
    const ctl = new AbortController();
    const running = train(peft, toyData(96, 2), { epochs: 100_000, batchSize: 16, lr: 0.01, signal: ctl.signal });
    // train() marks the model before its first step and yields to the event loop every ~30 ms
    assert.equal(peft.busy, "train");
    await new Promise((r) => setImmediate(r));
    assert.equal(peft.busy, "train");
    assert.throws(() => peft.switchTo("b"), isBusy("train"));
    assert.throws(() => peft.mergeAndUnload(), isBusy("train"));
    await assert.rejects(train(peft, toyData(16, 3)), isBusy("train"));
    assert.deepEqual(peft.activeAdapters, ["a"]);
    assertConsistent(peft);
    ctl.abort();
    await assert.rejects(running, (e: unknown) => e instanceof ShiraError && e.code === "ABORTED");
    assert.equal(peft.busy, null);
    assert.deepEqual(peft.fusedAdapters, []);
    peft.switchTo("b");
    assert.deepEqual(peft.activeAdapters, ["b"]);
    assertConsistent(peft);
    peft.unload();
  });

  test("a refused second train() allocates nothing; a failing onProgress still ends the rule", async () => {
    const peft = shiraMlp(13);
    const rt = runtime();
    const data = toyData(48, 4);
    let live = -1;
    await assert.rejects(
      train(peft, data, {
        epochs: 1,
        batchSize: 16,
        onProgress: () => {
          live = rt.liveBytes;
          void train(peft, data, { optimizer: "adamw" }).catch(() => undefined);
          assert.equal(rt.liveBytes, live, "the refused train() allocated nothing");
          throw new Error("stop here");
        },
      }),
      /stop here/,
    );
    assert.ok(live > 0);
    assert.equal(peft.busy, null);
    peft.switchTo("b");
    assertConsistent(peft);
    peft.unload();
  });
});

describe("LoraModel while train() runs", () => {
  test("adapter changes and a second train() are refused with BUSY; afterwards they work", async () => {
    manualSeed(7);
    const model = new Sequential({ fc1: new Linear(8, 16), act: new ReLU(), fc2: new Linear(16, 3) });
    const lora = getLoraModel(model, new LoraConfig({ r: 2, loraAlpha: 4, targetModules: ["fc1", "fc2"] }), "a");
    lora.addAdapter("b", new LoraConfig({ r: 2, targetModules: ["fc1", "fc2"] }));
    const files = lora.saveAdapter("b");
    const data = toyData(64, 5);
    let second: Promise<unknown> | null = null;
    let seen = 0;
    await train(lora, data, {
      epochs: 1,
      batchSize: 16,
      onProgress: (p) => {
        if (p.step !== 1) return;
        assert.equal(lora.busy, "train");
        const forbidden: [string, () => unknown][] = [
          ["switchTo", () => lora.switchTo("b")],
          ["setAdapter", () => lora.setAdapter("b")],
          ["deleteAdapter", () => lora.deleteAdapter("b")],
          ["merge", () => lora.merge()],
          ["unmerge", () => lora.unmerge()],
          ["fuse", () => lora.fuse([{ name: "a" }, { name: "b" }])],
          ["unload", () => lora.unload()],
          ["mergeAndUnload", () => lora.mergeAndUnload()],
          ["addAdapter", () => lora.addAdapter("c", new LoraConfig({ r: 1, targetModules: ["fc1"] }))],
          ["loadAdapterFiles", () => lora.loadAdapterFiles(files["adapter_config.json"], files["adapter_model.safetensors"] as Uint8Array, "c")],
          ["disableAdapters", () => lora.disableAdapters(() => 1)],
        ];
        for (const [what, call] of forbidden) {
          assert.throws(call, (e: unknown) => isBusy("train")(e) && (e as StateError).details["operation"] === what, what);
          seen++;
        }
        second = assert.rejects(train(lora, data), isBusy("train"));
        assert.deepEqual(lora.adapterNames, ["a", "b"]);
        assert.deepEqual(lora.activeAdapters, ["a"]);
        assert.deepEqual(lora.mergedAdapters, []);
      },
    });
    assert.equal(seen, 11);
    await second;
    assert.equal(lora.busy, null);
    lora.switchTo("b");
    assert.deepEqual(lora.mergedAdapters, ["b"]);
    lora.unmerge();
    lora.deleteAdapter("b");
    lora.unload();
  });
});

describe("DecoderModel while a generation runs", () => {
  const dir = join(TRANSFORMERS, "llama");
  const prompt = [[5, 17, 123]];

  async function setup() {
    const lm = await AutoModelForCausalLM.fromPretrained(join(dir, "model"));
    const peft = await PeftModel.fromPretrained(lm, join(dir, "shira"), { adapterName: "a" });
    await peft.loadAdapter(join(dir, "shira_i64"), "b");
    return { lm, peft };
  }

  test("in onToken: switches work and match the weights; delete of the active adapter, unload, injecting layers, a second generation and dispose() throw BUSY", async () => {
    const rt = runtime();
    const { lm, peft } = await setup();
    peft.switchTo("a");
    const files = { "adapter_config.json": readFileSync(join(dir, "shira", "adapter_config.json")), "adapter_model.safetensors": readFileSync(join(dir, "shira", "adapter_model.safetensors")) };
    const steps: number[] = [];
    const r = await lm.generate(prompt, {
      maxNewTokens: 6,
      eosTokenId: [],
      onToken: async (t) => {
        steps.push(t.step);
        assert.equal(lm.busy, "generate");
        if (t.step === 0) {
          // switches between tokens: allowed, and the reported state is the applied one
          peft.switchTo("b");
          assert.deepEqual(peft.activeAdapters, ["b"]);
          assertConsistent(peft);
          peft.fuse([{ name: "a" }, { name: "b" }]);
          assertConsistent(peft);
          peft.switchToBase();
          assertConsistent(peft);
          peft.setAdapter("a");
          peft.setScale("a", 0.5);
          peft.setScale("a", 1);
          peft.switchTo("b");
          assertConsistent(peft);
          // an adapter on layers that already have adapters: allowed; so is deleting it while inactive
          await peft.loadAdapter(files, "c");
          peft.deleteAdapter("c");
        }
        if (t.step === 1) {
          const refused: [string, () => unknown][] = [
            ["deleteAdapter", () => peft.deleteAdapter("b")],
            ["unload", () => peft.unload()],
            ["mergeAndUnload", () => peft.mergeAndUnload()],
            ["addAdapter", () => peft.addAdapter("k", new ShiraConfig({ r: 2, targetModules: ["k_proj"] }))],
            ["generate", () => lm.generate(prompt, { maxNewTokens: 1 })],
            ["stream", () => lm.stream(prompt, { maxNewTokens: 1 })],
            ["dispose", () => lm.dispose()],
          ];
          const live = rt.liveBytes;
          for (const [what, call] of refused) assert.throws(call, (e: unknown) => isBusy("generate")(e) && (e as StateError).details["operation"] === what, what);
          // nothing changed, nothing allocated
          assert.equal(rt.liveBytes, live);
          assert.equal(lm.disposed, false);
          assert.deepEqual(peft.adapterNames, ["a", "b"]);
          assert.deepEqual(peft.activeAdapters, ["b"]);
          const kProj = lm.namedModules().filter(([n]) => n.endsWith("k_proj"));
          assert.ok(kProj.length > 0 && kProj.every(([, m]) => !(m instanceof ShiraLinear)), "no layer injected");
          assertConsistent(peft);
        }
      },
    });
    assert.deepEqual(steps, [0, 1, 2, 3, 4, 5]);
    assert.equal(r.sequences[0].length, 9);
    // the generation is over: everything works again
    assert.equal(lm.busy, null);
    await lm.generate(prompt, { maxNewTokens: 2 });
    peft.deleteAdapter("b");
    assert.deepEqual(peft.activeAdapters, ["a"]);
    assertConsistent(peft);
    peft.unload();
    lm.dispose();
  });

  test("between stream iterations: switchTo works; deleteAdapter / unload / generate / dispose throw BUSY; ending the stream (or break) ends the rule", async () => {
    const { lm, peft } = await setup();
    peft.switchTo("a");
    const waiting = lm.stream(prompt, { maxNewTokens: 2 }); // created before, started while another runs: refused
    const it = lm.stream(prompt, { maxNewTokens: 4, eosTokenId: [] });
    let n = 0;
    for await (const t of it) {
      n++;
      assert.equal(lm.busy, "stream");
      if (t.step === 0) await assert.rejects(waiting.next(), isBusy("stream"));
      peft.switchTo(t.step % 2 ? "a" : "b");
      assertConsistent(peft);
      assert.throws(() => peft.deleteAdapter(peft.activeAdapter), isBusy("stream"));
      assert.throws(() => peft.unload(), isBusy("stream"));
      assert.throws(() => lm.generate(prompt), isBusy("stream"));
      assert.throws(() => lm.dispose(), isBusy("stream"));
    }
    assert.equal(n, 4);
    assert.equal(lm.busy, null);
    // leaving a for-await with break ends the generation too
    for await (const t of lm.stream(prompt, { maxNewTokens: 10 })) {
      assert.equal(lm.busy, "stream");
      if (t.step === 1) break;
    }
    assert.equal(lm.busy, null);
    // an aborted generation as well
    const ctl = new AbortController();
    await assert.rejects(
      lm.generate(prompt, { maxNewTokens: 10, signal: ctl.signal, onToken: () => ctl.abort() }),
      (e: unknown) => e instanceof ShiraError && e.code === "ABORTED",
    );
    assert.equal(lm.busy, null);
    peft.deleteAdapter("b");
    const plain = peft.unload();
    assert.equal(plain, lm);
    lm.dispose();
    assert.equal(lm.disposed, true);
  });
});
