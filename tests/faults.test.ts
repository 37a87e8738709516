// Issue 12: every adapter and model operation is all-or-nothing under faults, bad input and concurrent calls.
// Validate, then mutate: a failed call throws the library's typed error and leaves every weight, adapter, name and
// byte of wasm memory as it was.
import { after, test, describe } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  AutoModelForCausalLM,
  ConfigError,
  DecoderModel,
  FormatError,
  KVCache,
  Linear,
  LoraConfig,
  LoraModel,
  Module,
  PeftModel,
  RuntimeError,
  ShapeError,
  ShiraConfig,
  ShiraError,
  ShiraLinear,
  ShiraModel,
  StateError,
  Tensor,
  getPeftModel,
  init,
  initSync,
  openSafetensors,
  readSafetensors,
  runtime,
  writeSafetensors,
  bytesSource,
} from "../src/node.js";
import { fixtureModel, fixturePath, readFixture } from "./helpers/fixtures.js";
import { TRANSFORMERS } from "./helpers/transformers.js";

const rt = runtime();

const alphaConfig = (extra: Record<string, unknown> = {}) => new ShiraConfig({ r: 1, targetModules: ["lin0", "lin2"], randomSeed: 3, ...extra });
const betaConfig = () => new ShiraConfig({ r: 2, targetModules: ["lin1", "lin2", "lin3"], randomSeed: 5 });
const gammaConfig = () => new ShiraConfig({ r: 1, targetModules: ["lin0", "lin1", "lin2", "lin3"], randomSeed: 9, modulesToSave: ["sm"] });

const isCode = (code: string, cls: Function = ShiraError) => (e: unknown) => e instanceof cls && (e as ShiraError).code === code;
const isOom = isCode("OUT_OF_MEMORY", RuntimeError);

function bits(a: Float32Array): string {
  return createHash("sha1").update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest("hex");
}

/** Everything a failed call must leave as it was: module tree, every tensor bit for bit, adapter bookkeeping. */
function snapshot(model: Module, peft?: ShiraModel | LoraModel | null): unknown {
  const layers: Record<string, unknown> = {};
  for (const [n, m] of model.namedModules()) {
    if (m instanceof ShiraLinear) {
      layers[n] = {
        active: m.activeAdapters.slice(),
        disabled: m.disabled,
        fused: m.fusedEntries.map((e) => ({ ...e })),
        adapters: [...m.adapters].map(([a, w]) => [a, w.scaling, Array.from(w.indices.toArray()), w.weight.requiresGrad, w.saved ? bits(w.saved.toArray()) : null]),
      };
    }
  }
  const s = peft instanceof ShiraModel ? peft : null;
  return {
    modules: model.namedModules().map(([n, m]) => `${n}:${m.constructor.name}`),
    tensors: Object.entries(model.stateDict()).map(([n, t]) => [n, t.shape, bits(t.toArray())]),
    grads: model.namedParameters().map(([n, p]) => [n, p.requiresGrad]),
    layers,
    peft: peft
      ? {
          names: peft.adapterNames,
          active: peft.activeAdapters,
          merged: peft.mergedAdapters,
          fused: s ? s.fusedAdapters : null,
          disabled: s ? s.adaptersDisabled : null,
          configs: s ? [...s.peftConfig].map(([n, c]) => [n, c.toJSONString()]) : null,
        }
      : null,
  };
}

/** Frees a model tree, the adapters' own buffers included. */
function freeModel(model: Module): void {
  model.free();
}

/**
 * For n = 1, 2, 3, ...: a fresh `setup()`, an injected failure at the n-th allocation of `call`, then: the call threw
 * OUT_OF_MEMORY, `snap` is unchanged, no byte leaked, and the same call succeeds when retried. Stops at the first n at
 * which the call succeeds; returns how many failures were injected.
 */
/** Allocations failed per path, printed at the end (the note reports them). */
const SWEPT = new Map<string, number>();
after(() => {
  const total = [...SWEPT.values()].reduce((a, b) => a + b, 0);
  console.log(`fault injection: ${total} allocations failed along ${SWEPT.size} paths`);
  for (const [label, n] of SWEPT) console.log(`  ${String(n).padStart(5)}  ${label}`);
});

async function sweep<S>(
  label: string,
  setup: () => S | Promise<S>,
  snap: (s: S) => unknown,
  call: (s: S) => unknown,
  dispose: (s: S) => void,
  opts: { minFaults?: number } = {},
): Promise<number> {
  for (let n = 1; n < 5000; n++) {
    const s = await setup();
    const before = snap(s);
    const live = rt.liveBytes;
    const blocks = rt.liveBlocks;
    rt.failAfter(n);
    let err: unknown = null;
    try {
      await call(s);
    } catch (e) {
      err = e;
    } finally {
      rt.failAfter(null);
    }
    if (err === null) {
      dispose(s);
      assert.ok(n - 1 >= (opts.minFaults ?? 1), `${label}: only ${n - 1} allocation(s) were failed`);
      SWEPT.set(label, (SWEPT.get(label) ?? 0) + n - 1);
      return n - 1;
    }
    assert.ok(isOom(err), `${label}, fault at allocation ${n}: expected OUT_OF_MEMORY, got ${(err as Error)?.stack ?? err}`);
    assert.deepEqual(snap(s), before, `${label}: state changed by a failure at allocation ${n}`);
    assert.equal(rt.liveBytes, live, `${label}: bytes leaked by a failure at allocation ${n}`);
    assert.equal(rt.liveBlocks, blocks, `${label}: blocks leaked by a failure at allocation ${n}`);
    await call(s); // the same call, with the same name, then succeeds
    dispose(s);
  }
  throw new Error(`${label}: never succeeded`);
}

const alphaFiles = () => ({
  config: readFileSync(fixturePath("mlp", "alpha", "adapter_config.json"), "utf8"),
  model: readFileSync(fixturePath("mlp", "alpha", "adapter_model.safetensors")),
});

/** A model with "alpha" (active) and "beta" adapters. */
function twoAdapters(): ShiraModel {
  const peft = getPeftModel(fixtureModel(), alphaConfig(), "alpha");
  peft.addAdapter("beta", betaConfig());
  // non-zero values so that fusing changes weights
  for (const [, l] of peft.shiraLayers()) for (const [, a] of l.adapters) a.weight.data.forEach((_, i, d) => (d[i] = 0.01 * ((i % 7) - 3)));
  return peft;
}

const peftSnap = (p: ShiraModel) => snapshot(p.model, p);
const peftFree = (p: ShiraModel) => freeModel(p.model);

describe("1. transactions under out-of-memory (fault injection at every allocation)", () => {
  test("runtime: failAfter(n) fails the n-th allocation once with OUT_OF_MEMORY", () => {
    rt.failAfter(2);
    const a = rt.allocF32(4);
    assert.throws(() => rt.allocF32(4), isOom);
    const b = rt.allocF32(4);
    a.free();
    b.free();
    rt.failAfter(1);
    rt.failAfter(null);
    rt.allocF32(1).free();
  });

  test("getPeftModel / new ShiraModel: nothing injected, nothing leaked", async () => {
    await sweep(
      "getPeftModel",
      () => ({ model: fixtureModel(), peft: null as ShiraModel | null }),
      (s) => snapshot(s.model),
      (s) => (s.peft = getPeftModel(s.model, gammaConfig(), "g")),
      (s) => freeModel(s.model),
      { minFaults: 8 },
    );
  });

  test("addAdapter (several targets, modules_to_save)", async () => {
    await sweep("addAdapter", twoAdapters, peftSnap, (p) => p.addAdapter("gamma", gammaConfig()), peftFree, { minFaults: 8 });
  });

  test("loadAdapterFiles and loadAdapter", async () => {
    const f = alphaFiles();
    const base = () => getPeftModel(fixtureModel(), betaConfig(), "beta");
    await sweep("loadAdapterFiles", base, peftSnap, (p) => p.loadAdapterFiles(f.config, f.model, "alpha"), peftFree);
    await sweep("loadAdapter", base, peftSnap, (p) => p.loadAdapter(fixturePath("mlp", "alpha"), "alpha"), peftFree);
  });

  test("PeftModel.fromPretrained", async () => {
    await sweep(
      "PeftModel.fromPretrained",
      () => ({ model: fixtureModel() }),
      (s) => snapshot(s.model),
      (s) => PeftModel.fromPretrained(s.model, fixturePath("mlp", "alpha"), { adapterName: "alpha" }),
      (s) => freeModel(s.model),
    );
  });

  test("merge (safeMerge true and false), on top of a merged adapter", async () => {
    for (const safeMerge of [false, true]) {
      const setup = () => {
        const p = twoAdapters();
        p.merge({ adapterNames: ["alpha"] });
        return p;
      };
      await sweep(`merge safeMerge=${safeMerge}`, setup, peftSnap, (p) => p.merge({ adapterNames: ["beta"], safeMerge }), peftFree);
    }
  });

  test("switchTo (from base, from another adapter, from a fusion) and fuse", async () => {
    await sweep("switchTo from base", twoAdapters, peftSnap, (p) => p.switchTo("beta"), peftFree);
    const fromAlpha = () => {
      const p = twoAdapters();
      p.switchTo("alpha");
      return p;
    };
    await sweep("switchTo from alpha", fromAlpha, peftSnap, (p) => p.switchTo("beta"), peftFree);
    await sweep("switchTo safeMerge from alpha", fromAlpha, peftSnap, (p) => p.switchTo("beta", { safeMerge: true }), peftFree);
    const fromFusion = () => {
      const p = twoAdapters();
      p.fuse([{ name: "alpha", weight: 0.5 }, { name: "beta", weight: 0.5 }]);
      return p;
    };
    await sweep("switchTo from a fusion", fromFusion, peftSnap, (p) => p.switchTo("beta"), peftFree);
    await sweep("fuse from alpha", fromAlpha, peftSnap, (p) => p.fuse([{ name: "alpha", weight: 0.7 }, { name: "beta", weight: 0.3 }]), peftFree);
    await sweep("fuse safeMerge from a fusion", fromFusion, peftSnap, (p) => p.fuse([{ name: "beta" }, { name: "alpha" }], { safeMerge: true }), peftFree);
  });

  test("setScale, deleteAdapter and disableAdapters with fused adapters", async () => {
    const fused = () => {
      const p = twoAdapters();
      p.fuse([{ name: "alpha", weight: 0.5 }, { name: "beta", weight: 0.5 }]);
      return p;
    };
    await sweep("setScale of a fused adapter", fused, peftSnap, (p) => p.setScale("alpha", 2), peftFree);
    await sweep("deleteAdapter of a fused adapter", fused, peftSnap, (p) => p.deleteAdapter("alpha"), peftFree);
    await sweep("disableAdapters with a fusion", fused, peftSnap, (p) => p.disableAdapters(() => undefined), peftFree);
  });

  test("Module.loadStateDict and loadStateDictAsync", async () => {
    const bytes = readFileSync(fixturePath("mlp", "model.safetensors"));
    const fresh = () => {
      const m = fixtureModel();
      for (const t of Object.values(m.stateDict())) t.data.fill(0.5);
      return m;
    };
    await sweep("loadStateDict", fresh, (m) => snapshot(m), (m) => m.loadStateDict(readSafetensors(bytes)), freeModel, { minFaults: 0 });
    await sweep(
      "loadStateDictAsync",
      fresh,
      (m) => snapshot(m),
      async (m) => m.loadStateDictAsync(await openSafetensors(bytesSource(bytes))),
      freeModel,
      { minFaults: 0 },
    );
  });

  test("AutoModelForCausalLM.fromPretrained frees the partly built model", async () => {
    for (const family of ["llama", "gpt2"]) {
      await sweep(
        `fromPretrained ${family}`,
        () => null,
        () => null,
        async () => (await AutoModelForCausalLM.fromPretrained(join(TRANSFORMERS, family, "model"))).dispose(),
        () => undefined,
        { minFaults: 10 },
      );
    }
  });
});

describe("2. sizes: no 32-bit wrap-around, typed OUT_OF_MEMORY naming the tensor and its size", () => {
  const refused = (re: RegExp) => (e: unknown) => isOom(e) && re.test((e as Error).message);
  test("allocF32 / allocI32 / allocBytes of 2^32 bytes or more, or over one heap block", () => {
    const live = rt.liveBytes;
    assert.throws(() => rt.allocF32(2 ** 30), refused(/4294967296 bytes/)); // n*4 = 2^32 would wrap to 0
    assert.throws(() => rt.allocF32(2 ** 30 + 4), refused(/4294967312 bytes/));
    assert.throws(() => rt.allocI32(2 ** 31), refused(/8589934592 bytes/));
    assert.throws(() => rt.allocBytes(2 ** 32 + 16), refused(/4294967312 bytes/));
    assert.throws(() => rt.allocBytes(2 ** 30 + 16), refused(/1073741840 bytes/)); // past the 1 GiB TLSF block limit
    assert.throws(() => rt.allocF32(-1), isOom);
    assert.throws(() => rt.allocF32(1.5), isOom);
    assert.throws(() => rt.allocF32(2 ** 31, "my.tensor"), refused(/my\.tensor/));
    assert.equal(rt.liveBytes, live);
  });

  test("Tensor.zeros / Tensor.full of a huge shape, Linear(1e5, 1e5), Embedding-sized tensors", () => {
    const live = rt.liveBytes;
    assert.throws(() => Tensor.zeros([65536, 65536]), refused(/\[65536, 65536\].*17179869184 bytes|17179869184 bytes.*\[65536, 65536\]/));
    assert.throws(() => Tensor.zeros([2 ** 15, 2 ** 15]), refused(/4294967296 bytes/)); // exactly 2^32 bytes
    assert.throws(() => Tensor.full([1e6, 1e6], 1), isOom);
    assert.throws(() => new Linear(1e5, 1e5), refused(/weight.*\[100000, 100000\]|\[100000, 100000\].*weight/));
    assert.throws(() => new Linear(1e5, 1e5, { init: false }), refused(/40000000000 bytes/));
    assert.equal(rt.liveBytes, live);
  });

  test("KVCache sizes are typed OUT_OF_MEMORY RuntimeErrors", () => {
    const lm = AutoModelForCausalLM.fromConfig(JSON.parse(readFileSync(join(TRANSFORMERS, "llama", "model", "config.json"), "utf8")));
    const live = rt.liveBytes;
    assert.throws(() => lm.createCache({ batchSize: 4096, maxLength: 65536 }), isOom);
    assert.throws(() => lm.createCache({ batchSize: 1, maxLength: 2 ** 24 }), isOom); // < 2^32 in all, one layer over 1 GiB
    assert.equal(rt.liveBytes, live);
    lm.dispose();
  });
});

describe("4. scoped disabling nests and restores the exact previous state", () => {
  const x = () => Tensor.from(readFixture("mlp", "cases.safetensors").f32("x"), [4, 10]);
  const out = (p: ShiraModel) => {
    const t = x();
    const y = p.forward(t);
    const r = y.toArray();
    t.free();
    y.free();
    return r;
  };

  test("nested scopes (sync in sync, sync in async), merged state restored bit for bit", async () => {
    const plain = fixtureModel();
    const baseOut = out(plain as unknown as ShiraModel);
    freeModel(plain);
    const p = twoAdapters();
    p.merge({ adapterNames: ["alpha"] });
    const before = peftSnap(p);
    const r = p.disableAdapters(() => {
      assert.equal(p.adaptersDisabled, true);
      assert.deepEqual(out(p), baseOut);
      const inner = p.disableAdapters(() => {
        assert.equal(p.adaptersDisabled, true);
        return 7;
      });
      assert.equal(p.adaptersDisabled, true, "still disabled after the inner scope");
      assert.deepEqual(out(p), baseOut);
      return inner;
    });
    assert.equal(r, 7);
    assert.deepEqual(peftSnap(p), before);
    await p.withAdaptersDisabled(async () => {
      await new Promise((res) => setTimeout(res, 1));
      p.disableAdapters(() => undefined);
      assert.equal(p.adaptersDisabled, true);
      assert.deepEqual(out(p), baseOut);
    });
    assert.deepEqual(peftSnap(p), before);
    peftFree(p);
  });

  test("a throwing callback and a rejecting promise restore the state and pass the error on", async () => {
    const p = twoAdapters();
    p.fuse([{ name: "alpha", weight: 0.5 }, { name: "beta", weight: 0.25 }]);
    const before = peftSnap(p);
    const boom = new Error("boom");
    assert.throws(() => p.disableAdapters(() => { throw boom; }), (e) => e === boom);
    assert.deepEqual(peftSnap(p), before);
    await assert.rejects(p.withAdaptersDisabled(async () => { await null; throw boom; }), (e) => e === boom);
    assert.deepEqual(peftSnap(p), before);
    await assert.rejects(
      p.withAdaptersDisabled(() => p.withAdaptersDisabled(() => Promise.reject(boom))),
      (e) => e === boom,
    );
    assert.deepEqual(peftSnap(p), before);
    peftFree(p);
  });

  test("state changes that would break the scope are refused inside it (unload, deleteAdapter, merge)", () => {
    const p = twoAdapters();
    p.switchTo("beta");
    const before = peftSnap(p);
    p.disableAdapters(() => {
      assert.throws(() => p.unload(), isCode("ADAPTER_STATE", StateError));
      assert.throws(() => p.mergeAndUnload(), isCode("ADAPTER_STATE", StateError));
      assert.throws(() => p.deleteAdapter("alpha"), isCode("ADAPTER_STATE", StateError));
      assert.throws(() => p.merge(), isCode("ADAPTER_STATE", StateError));
    });
    assert.deepEqual(peftSnap(p), before);
    peftFree(p);
  });

  test("LoraModel: nested scopes, throw, reject, merged", async () => {
    const model = fixtureModel();
    const lora = new LoraModel(model, new LoraConfig({ r: 2, targetModules: ["lin0", "lin2"] }), "a");
    for (const [, l] of lora.loraLayers()) l.weights("a").b.data.fill(0.05);
    const baseOut = lora.disableAdapters(() => {
      const t = x();
      const y = lora.forward(t);
      const r = y.toArray();
      t.free();
      y.free();
      return r;
    });
    const base = (m: Module) => Object.fromEntries(m.namedParameters().filter(([n]) => n.includes("base_layer")).map(([n, t]) => [n, bits(t.toArray())]));
    const disabled = () => lora.loraLayers().map(([, l]) => l.disabled);
    lora.disableAdapters(() => {
      lora.disableAdapters(() => undefined);
      assert.deepEqual(disabled(), [true, true], "still disabled after the inner scope");
    });
    assert.deepEqual(disabled(), [false, false]);
    await lora.disableAdapters(async () => {
      await new Promise((res) => setTimeout(res, 1));
      assert.deepEqual(disabled(), [true, true], "disabled while the promise runs");
    });
    assert.deepEqual(disabled(), [false, false]);
    await assert.rejects(lora.disableAdapters(() => Promise.reject(new Error("x"))), /x/);
    assert.throws(() => lora.disableAdapters(() => { throw new Error("y"); }), /y/);
    assert.deepEqual(disabled(), [false, false]);
    lora.merge();
    lora.disableAdapters(() => {
      assert.deepEqual(lora.mergedAdapters, []);
      const t = x();
      const y = lora.forward(t);
      assert.ok(Math.max(...y.toArray().map((v, i) => Math.abs(v - baseOut[i]))) < 1e-5);
      t.free();
      y.free();
    });
    assert.deepEqual(lora.mergedAdapters, ["a"]);
    assert.ok(Object.keys(base(model)).length > 0);
    freeModel(model);
  });
});

describe("5. engine variant after objects exist", () => {
  test("init / initSync with another variant while buffers live is a StateError; the same variant is a no-op", async () => {
    const t = Tensor.from([1, 2, 3]);
    const cur = runtime();
    const other = cur.variant === "simd" ? "relaxed-simd" : "simd";
    assert.throws(() => initSync({ variant: other }), (e: unknown) => e instanceof StateError);
    await assert.rejects(init({ variant: other }), (e: unknown) => e instanceof StateError);
    assert.equal(initSync({ variant: cur.variant }), cur);
    assert.equal(await init({ variant: cur.variant }), cur);
    assert.equal(runtime(), cur);
    assert.deepEqual(Array.from(t.toArray()), [1, 2, 3]);
    const lin = new Linear(3, 2);
    const y = lin.forward(t.reshape([1, 3]));
    assert.equal(y.size, 2);
    y.free();
    lin.free();
    t.free();
    assert.throws(() => initSync({ variant: "wasm64" as never }), (e: unknown) => e instanceof ConfigError);
  });
});

describe("6. names as data: no prototype lookups, adapter names validated", () => {
  const SPECIAL = ["constructor", "__proto__", "toString", "hasOwnProperty", "valueOf"];

  test("loadStateDict: keys such as __proto__ / constructor are unexpected keys, never prototype members", () => {
    const m = fixtureModel();
    const before = snapshot(m);
    for (const k of SPECIAL) {
      const src = Object.create(null) as Record<string, { shape: number[]; data: number[] }>;
      src[k] = { shape: [1], data: [1] };
      assert.throws(() => m.loadStateDict(src), isCode("STATE_DICT_MISMATCH", ShapeError), k);
      const r = m.loadStateDict(new Map([[k, { shape: [1], data: [1] }]]), { strict: false });
      assert.deepEqual(r.unexpectedKeys, [k]);
      const parsed = JSON.parse(`{"${k}": {"shape": [1], "data": [1]}}`);
      assert.deepEqual(m.loadStateDict(parsed, { strict: false }).unexpectedKeys, [k]);
    }
    assert.deepEqual(snapshot(m), before);
    freeModel(m);
  });

  test("parameters and modules named like Object.prototype members are ordinary state-dict entries", () => {
    class Odd extends Module {
      constructor() {
        super();
        for (const k of SPECIAL) this.registerParameter(k, Tensor.zeros([2]) as never);
        this.registerModule("constructor", new Linear(2, 2));
      }
      forward(x: Tensor): Tensor {
        return x;
      }
    }
    const m = new Odd();
    const sd = m.stateDict();
    for (const k of SPECIAL) assert.ok(Object.hasOwn(sd, k), k);
    assert.ok(Object.hasOwn(sd, "constructor.weight"));
    const src = new Map<string, { shape: number[]; data: number[] }>();
    for (const [k, t] of Object.entries(sd)) src.set(k, { shape: t.shape, data: Array.from({ length: t.size }, (_, i) => i + 1) });
    m.loadStateDict(src);
    assert.deepEqual(Array.from(m.stateDict()["__proto__"].toArray()), [1, 2]);
    assert.deepEqual(Array.from(m.stateDict()["constructor"].toArray()), [1, 2]);
    const bytes = writeSafetensors(new Map(Object.entries(m.stateDict()).map(([k, t]) => [k, { dtype: "F32" as const, shape: t.shape, data: t.toArray() }])));
    m.loadStateDict(readSafetensors(bytes));
    m.free();
  });

  test("adapter names such as constructor / __proto__ / toString work in ShiraModel, modules_to_save, save and load", () => {
    const p = getPeftModel(fixtureModel(), gammaConfig(), "first");
    for (const n of SPECIAL) {
      p.addAdapter(n, new ShiraConfig({ r: 1, targetModules: ["lin1"], randomSeed: 1, modulesToSave: ["sm"] }));
      p.setAdapter(n);
      assert.deepEqual(p.activeAdapters, [n]);
      p.switchTo(n);
      assert.deepEqual(p.mergedAdapters, [n]);
      const files = p.saveAdapter(n);
      p.deleteAdapter(n);
      p.loadAdapterFiles(files["adapter_config.json"], files["adapter_model.safetensors"], n);
      assert.ok(p.adapterNames.includes(n));
    }
    assert.deepEqual(p.adapterNames, ["first", ...SPECIAL]);
    peftFree(p);
    const lora = new LoraModel(fixtureModel());
    for (const n of SPECIAL) lora.addAdapter(n, new LoraConfig({ r: 1, targetModules: ["lin0"] }));
    lora.setAdapter(SPECIAL);
    assert.deepEqual(lora.adapterNames, SPECIAL);
    freeModel(lora.model);
  });

  test("adapter names are validated before anything changes: empty, NUL, separators, over 255 UTF-8 bytes", async () => {
    const p = twoAdapters();
    const before = peftSnap(p);
    const f = alphaFiles();
    for (const bad of ["", "a\0b", "a/b", "a\\b", ".hidden", "x".repeat(256), "é".repeat(128), 7 as never, null as never]) {
      assert.throws(() => p.addAdapter(bad, alphaConfig()), isCode("CONFIG_INVALID", ConfigError), String(bad));
      assert.throws(() => p.loadAdapterFiles(f.config, f.model, bad), isCode("CONFIG_INVALID", ConfigError), String(bad));
      await assert.rejects(p.loadAdapter(fixturePath("mlp", "alpha"), bad), isCode("CONFIG_INVALID", ConfigError), String(bad));
      await assert.rejects(PeftModel.fromPretrained(fixtureModel(), fixturePath("mlp", "alpha"), { adapterName: bad }), isCode("CONFIG_INVALID", ConfigError));
      assert.throws(() => new LoraModel(fixtureModel(), new LoraConfig({ r: 1, targetModules: ["lin0"] }), bad), isCode("CONFIG_INVALID", ConfigError));
    }
    p.addAdapter("x".repeat(255), alphaConfig());
    p.deleteAdapter("x".repeat(255));
    assert.deepEqual(peftSnap(p), before);
    peftFree(p);
  });

  test("adapter_config.json keys such as __proto__ / constructor are unknown keys (warned), not prototype lookups", () => {
    const json = '{"peft_type": "SHIRA", "r": 1, "target_modules": ["lin0"], "constructor": 1, "__proto__": {"r": 5}, "toString": 2, "hasOwnProperty": 3}';
    const c = ShiraConfig.fromJSON(json);
    assert.equal(c.r, 1);
    for (const k of ["constructor", "__proto__", "toString", "hasOwnProperty"]) assert.ok(c.warnings.some((w) => w.includes(`"${k}"`)), k);
    assert.equal(typeof c.toString, "function");
  });
});

describe("8. numbers and argument types", () => {
  /** The alpha adapter file with one value replaced. */
  const alphaWith = (value: number, at = 1) => {
    const f = readFixture("mlp", "alpha", "adapter_model.safetensors");
    const tensors = new Map<string, { dtype: "F32" | "I32"; shape: number[]; data: Float32Array | Int32Array }>();
    for (const n of f.names()) {
      const e = f.entry(n);
      if (e.dtype === "F32") {
        const d = f.f32(n).slice();
        if (n.endsWith("lin2.shira_weight")) d[at] = value;
        tensors.set(n, { dtype: "F32", shape: [...e.shape], data: d });
      } else tensors.set(n, { dtype: "I32", shape: [...e.shape], data: f.i32(n).slice() });
    }
    return writeSafetensors(tensors);
  };

  test("adapter files with NaN or ±Inf values are FormatErrors naming the tensor and the index", async () => {
    const p = getPeftModel(fixtureModel(), betaConfig(), "beta");
    const before = peftSnap(p);
    const { config } = alphaFiles();
    for (const v of [NaN, Infinity, -Infinity]) {
      const bytes = alphaWith(v, 1);
      assert.throws(
        () => p.loadAdapterFiles(config, bytes, "alpha"),
        (e: unknown) => e instanceof FormatError && e.code === "NONFINITE" && /lin2\.shira_weight/.test(e.message) && /\b1\b/.test(e.message) && e.details["index"] === 1,
      );
      await assert.rejects(
        PeftModel.fromPretrained(fixtureModel(), { "adapter_config.json": config, "adapter_model.safetensors": bytes }),
        (e: unknown) => e instanceof FormatError && e.code === "NONFINITE",
      );
    }
    assert.deepEqual(peftSnap(p), before);
    peftFree(p);
  });

  test("setScale refuses values that are not finite in float32, naming the value", () => {
    const p = twoAdapters();
    p.switchTo("alpha");
    const before = peftSnap(p);
    for (const v of [NaN, Infinity, 1e39, -3.5e38, "2" as never, null as never]) {
      assert.throws(() => p.setScale("alpha", v), (e: unknown) => e instanceof ConfigError && e.message.includes(String(v)));
    }
    assert.deepEqual(peftSnap(p), before);
    peftFree(p);
  });

  test("null, undefined, wrong-typed and wrong-shaped arguments give typed errors naming the argument", async () => {
    const typed = (arg: RegExp) => (e: unknown) => e instanceof ShiraError && arg.test(e.message);
    assert.throws(() => Tensor.from(null as never), typed(/data/));
    assert.throws(() => Tensor.from(undefined as never), typed(/data/));
    assert.throws(() => Tensor.from(42 as never), typed(/data/));
    assert.throws(() => Tensor.from([1, 2], "2" as never), typed(/shape/));
    assert.throws(() => Tensor.from([1, 2], [2, NaN]), typed(/shape/));
    assert.throws(() => Tensor.zeros(null as never), typed(/shape/));
    const lin = new Linear(3, 2);
    assert.throws(() => lin.forward(null as never), typed(/input|x\b/));
    assert.throws(() => lin.forward([1, 2, 3] as never), typed(/input|x\b/));
    const t = Tensor.from([1, 2, 3, 4], [2, 2]);
    assert.throws(() => lin.forward(t), isCode("SHAPE_MISMATCH", ShapeError));
    t.free();
    lin.free();
    assert.throws(() => new ShiraConfig(null as never), typed(/ShiraConfig/));
    assert.throws(() => new ShiraConfig({ r: "3" as never, targetModules: ["lin0"] }), typed(/\br\b/));
    const m = fixtureModel();
    assert.throws(() => getPeftModel(null as never, alphaConfig()), typed(/model/));
    assert.throws(() => getPeftModel(m, null as never), typed(/config/));
    assert.throws(() => getPeftModel(m, {} as never), typed(/config/));
    assert.deepEqual(snapshot(m), snapshot(fixtureModel()));
    const p = twoAdapters();
    const before = peftSnap(p);
    assert.throws(() => p.switchTo(null as never), typed(/name|adapter/));
    assert.throws(() => p.switchTo(undefined as never), typed(/name|adapter/));
    assert.throws(() => p.switchTo("alpha", null as never), typed(/opt/));
    assert.throws(() => p.fuse(null as never), typed(/entries|name/));
    assert.throws(() => p.fuse([null] as never), typed(/entries/));
    assert.throws(() => p.fuse([{ name: "alpha", weight: "1" }] as never), typed(/weight/));
    assert.throws(() => p.setAdapter(null as never), typed(/setAdapter|names/));
    assert.throws(() => p.setAdapter([null] as never), typed(/setAdapter|names|adapter/));
    assert.throws(() => p.setAdapter(42 as never), typed(/setAdapter|names/));
    assert.deepEqual(peftSnap(p), before);
    peftFree(p);
    await assert.rejects(AutoModelForCausalLM.fromPretrained(null as never), typed(/source/));
    await assert.rejects(AutoModelForCausalLM.fromPretrained(42 as never), typed(/source/));
    const lm = await AutoModelForCausalLM.fromPretrained(join(TRANSFORMERS, "llama", "model"));
    assert.throws(() => lm.forward(null as never), typed(/inputIds/));
    assert.throws(() => lm.forward(undefined as never), typed(/inputIds/));
    assert.throws(() => lm.forward([[1, 2]], null as never), typed(/opt/));
    assert.throws(() => lm.forward([[1, "x" as never]]), typed(/token id/));
    await assert.rejects(async () => lm.generate(null as never), typed(/inputIds/));
    await assert.rejects(async () => lm.generate([[1, 2]], null as never), typed(/opt/));
    await assert.rejects(async () => lm.generate([[1, 2]], { maxNewTokens: "3" as never }), typed(/maxNewTokens/));
    lm.dispose();
  });
});

describe("10. after unload / dispose: typed StateError, no stale values", () => {
  const disposed = (e: unknown) => e instanceof StateError && e.code === "USE_AFTER_FREE" && /disposed|unload|dispose/.test(e.message);

  test("ShiraModel after unload() and mergeAndUnload()", () => {
    for (const how of ["unload", "mergeAndUnload"] as const) {
      const p = twoAdapters();
      const model = how === "unload" ? p.unload() : p.mergeAndUnload();
      assert.ok(model instanceof Module);
      for (const get of [
        () => p.adapterNames,
        () => p.activeAdapters,
        () => p.activeAdapter,
        () => p.mergedAdapters,
        () => p.fusedAdapters,
        () => p.merged,
        () => p.adaptersDisabled,
        () => p.peftConfig,
        () => p.shiraLayers(),
        () => p.getScale("alpha"),
        () => p.getNbTrainableParameters(),
        () => p.trainableParameters(),
        () => p.adapterSize("alpha"),
        () => p.switchTo("alpha"),
        () => p.setScale("alpha", 2),
        () => p.disableAdapters(() => 1),
        () => p.saveAdapter("alpha"),
        () => p.unload(),
      ]) {
        assert.throws(get, disposed, `${how}: ${get}`);
      }
      freeModel(model);
    }
  });

  test("LoraModel after unload() and mergeAndUnload()", () => {
    for (const how of ["unload", "mergeAndUnload"] as const) {
      const lora = new LoraModel(fixtureModel(), new LoraConfig({ r: 2, targetModules: ["lin0", "lin2"] }), "a");
      for (const [, l] of lora.loraLayers()) l.weights("a").b.data.fill(0.05);
      const live = rt.liveBytes;
      const model = how === "unload" ? lora.unload() : lora.mergeAndUnload();
      assert.ok(rt.liveBytes < live, "adapter memory freed");
      assert.ok(!model.namedModules().some(([n]) => n.includes("lora")));
      for (const get of [() => lora.adapterNames, () => lora.activeAdapters, () => lora.mergedAdapters, () => lora.loraLayers(), () => lora.switchTo("a"), () => lora.merge(), () => lora.saveAdapter("a")]) {
        assert.throws(get, disposed, `${how}: ${get}`);
      }
      freeModel(model);
    }
  });

  test("DecoderModel after dispose(), KVCache after dispose()", async () => {
    const lm = await AutoModelForCausalLM.fromPretrained(join(TRANSFORMERS, "llama", "model"));
    const cache = lm.createCache({ maxLength: 8 });
    cache.dispose();
    for (const get of [() => cache.bytes, () => cache.length, () => cache.reset(), () => cache.truncate(0), () => cache.nextPosition]) assert.throws(get, disposed, `${get}`);
    assert.equal(cache.disposed, true);
    lm.dispose();
    for (const get of [() => lm.weightBytes, () => lm.defaultTargetModules, () => lm.stateDict(), () => lm.forward([[1]]), () => lm.createCache({ maxLength: 4 }), () => lm.modulePath("q" as never, 0)]) {
      assert.throws(get, disposed, `${get}`);
    }
    await assert.rejects(async () => lm.generate([[1]]), disposed);
    assert.equal(lm.disposed, true);
  });
});
