// SHiRA and LoRA adapters on half-precision (BF16 / F16) base weights (issue #13): exact restores (the u16 bits come
// back bit for bit after any sequence of switches), fused weights equal to an independent JS rounding of
// widen(W) + f32(v·scale), fused and unfused logits against f32 twins that hold the widened weights, the real PEFT
// fixture adapter on the bf16 Llama, training on a frozen half base, and LoRA (unfused and exact fused).
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  AutoModelForCausalLM,
  HalfConv1D,
  HalfLinear,
  Linear,
  LoraConfig,
  LoraLinear,
  PeftModel,
  ReLU,
  Sequential,
  ShiraConfig,
  ShiraLinear,
  StateError,
  Tensor,
  getLoraModel,
  getPeftModel,
  train,
  type DecoderModel,
  type HalfDtype,
  type Module,
  type ShiraModel,
} from "../src/node.js";
import { TRANSFORMERS } from "./helpers/transformers.js";

// ---------------------------------------------------------------- an independent JS reference for half rounding

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Exact value of half bits (BF16: the top half of an f32; F16: sign · m · 2^(e-25) with subnormals). */
function widen(h: number, dt: HalfDtype): number {
  if (dt === "bf16") {
    u32[0] = h << 16;
    return f32[0];
  }
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 31;
  const m = h & 1023;
  if (e === 31) return m ? NaN : s * Infinity;
  return e === 0 ? s * m * 2 ** -24 : s * (m + 1024) * 2 ** (e - 25);
}

/**
 * `x` rounded to the nearest value of the half format, ties to even, computed on doubles from the format's
 * parameters (precision p, minimum exponent, overflow bound): a different algorithm from the library's bit tricks.
 */
function roundHalf(x: number, dt: HalfDtype): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const [p, emin, emax] = dt === "bf16" ? [8, -126, 127] : [11, -14, 15];
  const a = Math.abs(x);
  const e = Math.max(Math.floor(Math.log2(a)), emin);
  const ulp = 2 ** (e - p + 1);
  let q = a / ulp; // exact: a power-of-two division
  const fl = Math.floor(q);
  const frac = q - fl;
  q = frac > 0.5 || (frac === 0.5 && fl % 2 === 1) ? fl + 1 : fl;
  const r = q * ulp;
  if (r >= 2 ** (emax + 1)) return Math.sign(x) * Infinity;
  return Math.sign(x) * r;
}

// ---------------------------------------------------------------- helpers

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

/** Half bits of values rounded by the library (HalfWeight.setFromF32 -> f32_to_h16), checked against roundHalf. */
function halfLayer(inF: number, outF: number, dt: HalfDtype, rnd: () => number): HalfLinear {
  const l = new HalfLinear(inF, outF, { dtype: dt, bias: true });
  const w = Float32Array.from({ length: inF * outF }, () => (rnd() - 0.5) * 0.6);
  l.weightBits.setFromF32(w);
  const got = l.weightF32();
  for (let i = 0; i < w.length; i++) assert.equal(got[i], roundHalf(w[i], dt), `setFromF32 rounds like the reference at ${i}`);
  l.bias!.data.set(Float32Array.from({ length: outF }, () => (rnd() - 0.5) * 0.2));
  return l;
}

/** A model of HalfLinear layers and its f32 twin (Linear layers holding the widened weights). */
function halfModel(dt: HalfDtype, seed: number): { model: Sequential; twin: Sequential } {
  const rnd = lcg(seed);
  const model = new Sequential([halfLayer(12, 16, dt, rnd), new ReLU(), halfLayer(16, 8, dt, rnd)]);
  model.eval();
  const twin = new Sequential([new Linear(12, 16), new ReLU(), new Linear(16, 8)]);
  twin.eval();
  for (const i of ["0", "2"]) {
    const h = model.getSubmodule(i) as HalfLinear;
    const l = twin.getSubmodule(i) as Linear;
    l.weight.data.set(h.weightF32());
    l.bias!.data.set(h.bias!.data);
  }
  return { model, twin };
}

function halfOf(m: Module, name: string): HalfLinear {
  const l = m.getSubmodule(name);
  const h = l instanceof ShiraLinear || l instanceof LoraLinear ? l.baseLayer : l;
  assert.ok(h instanceof HalfLinear, `${name} is (over) a HalfLinear`);
  return h as HalfLinear;
}

const bits = (m: Module, name: string) => halfOf(m, name).bitsView().slice();

function run(m: { forward(x: Tensor): Tensor }, x: Float32Array, inF: number): Float32Array {
  const t = Tensor.from(x, [x.length / inF, inF]);
  const y = m.forward(t);
  const out = y.toArray();
  y.free();
  t.free();
  return out;
}

function assertBitsEqual(a: Uint16Array, b: Uint16Array, what: string): void {
  assert.equal(a.length, b.length);
  let bad = -1;
  for (let i = 0; i < a.length && bad < 0; i++) if (a[i] !== b[i]) bad = i;
  assert.equal(bad, -1, `${what}: bits differ at ${bad} (${a[bad]?.toString(16)} vs ${b[bad]?.toString(16)})`);
}

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]) / Math.max(1, Math.abs(b[i])));
  return d;
}

/** f32 matmul reference in JS (doubles, then compared with a tolerance): y = relu(x W0ᵀ + b0) W2ᵀ + b2. */
function jsForward(ws: Float32Array[], bs: Float32Array[], dims: [number, number][], x: Float32Array): Float32Array {
  let h = Array.from(x);
  const rows = x.length / dims[0][0];
  ws.forEach((w, li) => {
    const [inF, outF] = dims[li];
    const y: number[] = new Array(rows * outF).fill(0);
    for (let r = 0; r < rows; r++) {
      for (let o = 0; o < outF; o++) {
        let s = bs[li][o];
        for (let i = 0; i < inF; i++) s += h[r * inF + i] * w[o * inF + i];
        y[r * outF + o] = li < ws.length - 1 ? Math.max(0, s) : s;
      }
    }
    h = y;
  });
  return Float32Array.from(h);
}

/**
 * The expected fused weight (f32 values) of one layer: the base, then for each fused adapter in order
 * `W[p] = roundHalf(widen(W[p]) + f32(v·coef))`.
 */
function expectedFused(base: Uint16Array, dt: HalfDtype, fused: { layer: ShiraLinear<HalfLinear>; name: string; coef: number }[]): Float32Array {
  const w = Float32Array.from(base, (h) => widen(h, dt));
  for (const { layer, name, coef } of fused) {
    const a = layer.adapters.get(name);
    if (!a) continue;
    const idx = a.indices.view;
    const v = a.weight.data;
    const c = Math.fround(coef);
    for (let j = 0; j < a.nnz; j++) w[idx[j]] = roundHalf(Math.fround(w[idx[j]] + Math.fround(v[j] * c)), dt);
  }
  return w;
}

const X = Float32Array.from({ length: 5 * 12 }, (_, i) => Math.sin(i * 0.7) * 1.5);

for (const dt of ["bf16", "f16"] as const) {
  describe(`SHiRA on a ${dt} base`, () => {
    function setup(seed: number): { model: Sequential; twin: Sequential; peft: ShiraModel; orig: Map<string, Uint16Array> } {
      const { model, twin } = halfModel(dt, seed);
      const orig = new Map(["0", "2"].map((n) => [n, bits(model, n)] as const));
      const peft = getPeftModel(model, new ShiraConfig({ r: 2, targetModules: ["0", "2"], randomSeed: 7 }), "a");
      peft.addAdapter("b", new ShiraConfig({ r: 3, targetModules: ["2"], randomSeed: 11 }));
      const rnd = lcg(seed + 1);
      // values large enough to change the half bits (a bf16 ulp near 0.3 is 2^-9)
      for (const [, l] of peft.shiraLayers()) for (const [, a] of l.adapters) a.weight.data.forEach((_, i, d) => (d[i] = (rnd() - 0.5) * 0.25));
      return { model, twin, peft, orig };
    }

    test("adapters inject on HalfLinear layers; baseWeight is the widened weight", () => {
      const { model, peft } = setup(1);
      const l = model.getSubmodule("0") as ShiraLinear<HalfLinear>;
      assert.ok(l instanceof ShiraLinear && l.half === halfOf(model, "0"));
      const before = halfOf(model, "0").weightF32();
      assert.deepEqual(l.baseWeight(), before);
      peft.switchTo("a");
      assert.notDeepEqual(l.half!.weightF32(), before, "fused values differ");
      assert.deepEqual(l.baseWeight(), before, "baseWeight while fused: the widened base");
      peft.switchToBase();
      assert.deepEqual(l.half!.weightF32(), before);
      assert.ok(String(l).includes(`dtype=${dt}`));
    });

    test("every switch sequence restores the bits exactly; fused bits equal the JS rounding reference", () => {
      const { model, twin, peft, orig } = setup(2);
      const layers = () => ["0", "2"].map((n) => [n, model.getSubmodule(n) as ShiraLinear<HalfLinear>] as const);
      const checkFused = (list: { name: string; weight: number }[]) => {
        for (const [n, l] of layers()) {
          const exp = expectedFused(orig.get(n)!, dt, list.map((e) => ({ layer: l, name: e.name, coef: e.weight * (l.adapters.get(e.name)?.scaling ?? 1) })));
          assert.deepEqual(l.half!.weightF32(), exp, `${n}: fused ${JSON.stringify(list)}`);
        }
        // logits: the f32 twin holding the expected fused weights computes the same products (bit-identical kernels)
        for (const [n, l] of layers()) (twin.getSubmodule(n) as Linear).weight.data.set(l.half!.weightF32());
        assert.deepEqual(run(peft, X, 12), run(twin, X, 12), "fused logits equal the f32 twin's");
        const ref = jsForward(layers().map(([, l]) => l.half!.weightF32()), layers().map(([, l]) => l.half!.bias!.data), [[12, 16], [16, 8]], X);
        assert.ok(maxRelDiff(run(peft, X, 12), ref) < 1e-5, "fused logits equal the JS matmul");
      };
      const checkBase = (what: string) => {
        for (const [n] of layers()) assertBitsEqual(bits(model, n), orig.get(n)!, `${n} after ${what}`);
      };
      peft.switchTo("a");
      checkFused([{ name: "a", weight: 1 }]);
      peft.switchTo("b");
      checkFused([{ name: "b", weight: 1 }]);
      peft.switchTo("a");
      checkFused([{ name: "a", weight: 1 }]);
      peft.fuse([
        { name: "b", weight: 0.7 },
        { name: "a", weight: -1.3 },
      ]);
      checkFused([
        { name: "b", weight: 0.7 },
        { name: "a", weight: -1.3 },
      ]);
      peft.unmerge();
      checkBase("unmerge");
      peft.merge({ adapterNames: ["a", "b"], safeMerge: true });
      checkFused([
        { name: "a", weight: 1 },
        { name: "b", weight: 1 },
      ]);
      peft.switchToBase();
      checkBase("switchToBase");
      peft.switchTo("b");
      peft.setScale("b", 2.5);
      checkFused([{ name: "b", weight: 1 }]);
      peft.switchTo("b"); // the same adapter again: saved bits + new add
      checkFused([{ name: "b", weight: 1 }]);
      peft.deleteAdapter("b");
      checkBase("deleteAdapter of the fused adapter");
      peft.switchTo("a");
      peft.disableAdapters(() => checkBase("inside disableAdapters"));
      checkFused([{ name: "a", weight: 1 }]);
      peft.unload();
      checkBase("unload");
    });

    test("unfused forward equals the f32 twin with the same adapters, and the JS reference", () => {
      const { model, twin, peft } = setup(3);
      const tw = getPeftModel(twin, new ShiraConfig({ r: 2, targetModules: ["0", "2"], randomSeed: 7 }), "a");
      tw.addAdapter("b", new ShiraConfig({ r: 3, targetModules: ["2"], randomSeed: 11 }));
      for (const [n, l] of peft.shiraLayers()) for (const [an, a] of l.adapters) (twin.getSubmodule(n) as ShiraLinear).adapters.get(an)!.weight.data.set(a.weight.data);
      for (const active of [["a"], ["b"], ["a", "b"]]) {
        peft.setAdapter(active);
        tw.setAdapter(active);
        assert.deepEqual(run(peft, X, 12), run(tw, X, 12), `unfused ${active}`);
        // JS: dense base plus the f32 sparse deltas (not rounded to half)
        const ws = ["0", "2"].map((n) => {
          const l = model.getSubmodule(n) as ShiraLinear<HalfLinear>;
          const w = l.half!.weightF32();
          for (const an of active) {
            const a = l.adapters.get(an);
            if (a) for (let j = 0; j < a.nnz; j++) w[a.indices.view[j]] += a.weight.data[j] * a.scaling;
          }
          return w;
        });
        const bs = ["0", "2"].map((n) => halfOf(model, n).bias!.data);
        assert.ok(maxRelDiff(run(peft, X, 12), jsForward(ws, bs, [[12, 16], [16, 8]], X)) < 1e-5);
      }
    });

    test("safeMerge checks the sum rounded to the half dtype, before any change", () => {
      const { model, peft, orig } = setup(4);
      const a = (model.getSubmodule("2") as ShiraLinear<HalfLinear>).adapters.get("a")!;
      // finite in f32, but past the largest f16 (65504); bf16 only overflows past ~3.4e38
      a.weight.data[0] = dt === "f16" ? 70000 : 3.3e38;
      const big = dt === "f16" ? 1 : 1.1;
      if (dt === "f16") {
        assert.throws(() => peft.merge({ adapterNames: ["a"], safeMerge: true }), (e: unknown) => e instanceof StateError && e.code === "NONFINITE");
      } else {
        assert.throws(() => peft.fuse([{ name: "a", weight: big }], { safeMerge: true }), (e: unknown) => e instanceof StateError && e.code === "NONFINITE");
      }
      for (const n of ["0", "2"]) assertBitsEqual(bits(model, n), orig.get(n)!, `${n} unchanged after a refused merge`);
      assert.equal(peft.merged, false);
    });

    test("training an adapter on the half base lowers the loss; gradients equal the f32 twin's; the base bits stay", async () => {
      const { model, twin, peft, orig } = setup(5);
      peft.deleteAdapter("b");
      for (const [, l] of peft.shiraLayers()) l.adapters.get("a")!.weight.data.fill(0);
      // one unfused backward: value gradients equal those over the f32 twin (same kernels on widened weights)
      const tw = getPeftModel(twin, new ShiraConfig({ r: 2, targetModules: ["0", "2"], randomSeed: 7 }), "a");
      for (const p of [peft, tw]) {
        p.train();
        const x = Tensor.from(X, [5, 12]);
        const y = p.forward(x);
        const gy = Tensor.from(Float32Array.from({ length: 40 }, (_, i) => Math.cos(i)), [5, 8]);
        p.backward(gy).free();
        y.free();
        gy.free();
        p.eval();
      }
      for (const n of ["0", "2"]) {
        const g1 = (model.getSubmodule(n) as ShiraLinear<HalfLinear>).adapters.get("a")!.weight.grad!.toArray();
        const g2 = (twin.getSubmodule(n) as ShiraLinear).adapters.get("a")!.weight.grad!.toArray();
        assert.deepEqual(g1, g2, `${n}: value gradients`);
        assert.ok(g1.some((v) => v !== 0));
      }
      for (const p of peft.trainableParameters()) p.grad = null;
      // a small regression task
      const rnd = lcg(9);
      const n = 64;
      const inputs = Float32Array.from({ length: n * 12 }, () => rnd() * 2 - 1);
      const labels = Float32Array.from({ length: n * 8 }, () => rnd() - 0.5);
      const res = await train(peft, { inputs, labels, inputSize: 12 }, { epochs: 8, batchSize: 16, lr: 1e-2, loss: "mse" });
      assert.ok(res.losses[res.losses.length - 1] < res.losses[0], `loss ${res.losses[0]} -> ${res.losses[res.losses.length - 1]}`);
      assert.ok((model.getSubmodule("0") as ShiraLinear<HalfLinear>).adapters.get("a")!.weight.data.some((v) => v !== 0));
      peft.switchToBase();
      for (const k of ["0", "2"]) assertBitsEqual(bits(model, k), orig.get(k)!, `${k} after training`);
    });

    test("mergeAndUnload leaves the rounded fused bits in the HalfLinear", () => {
      const { model, peft, orig } = setup(6);
      const l2 = model.getSubmodule("2") as ShiraLinear<HalfLinear>;
      const exp = expectedFused(orig.get("2")!, dt, [{ layer: l2, name: "a", coef: 1 }]);
      peft.setAdapter("a");
      const m = peft.mergeAndUnload();
      assert.ok(m.getSubmodule("2") instanceof HalfLinear);
      assert.deepEqual(halfOf(m, "2").weightF32(), exp);
    });
  });

  describe(`LoRA on a ${dt} base`, () => {
    test("unfused forward equals the f32 twin; merge rounds widen(W) + f32 delta; unmerge restores the bits", () => {
      const { model, twin } = halfModel(dt, 20 + (dt === "f16" ? 1 : 0));
      const orig = new Map(["0", "2"].map((n) => [n, bits(model, n)] as const));
      const cfg = () => new LoraConfig({ r: 2, loraAlpha: 4, targetModules: ["0", "2"] });
      const lora = getLoraModel(model, cfg(), "a");
      const tw = getLoraModel(twin, cfg(), "a");
      const rnd = lcg(33);
      for (const n of ["0", "2"]) {
        const l = model.getSubmodule(n) as LoraLinear<HalfLinear>;
        const t = twin.getSubmodule(n) as LoraLinear;
        assert.ok(l.half);
        const w = l.weights("a");
        w.a.data.forEach((_, i, d) => (d[i] = (rnd() - 0.5) * 0.5));
        w.b.data.forEach((_, i, d) => (d[i] = (rnd() - 0.5) * 0.5));
        t.weights("a").a.data.set(w.a.data);
        t.weights("a").b.data.set(w.b.data);
      }
      assert.deepEqual(run(lora, X, 12), run(tw, X, 12), "unfused LoRA logits");
      // merged: the twin merges in f32 (same low-rank kernel), then the reference rounds each value to half
      lora.merge();
      tw.merge();
      for (const n of ["0", "2"]) {
        const f = (twin.getSubmodule(n) as LoraLinear).baseLayer.weight.data;
        const exp = Float32Array.from(f, (v) => roundHalf(v, dt));
        assert.deepEqual(halfOf(model, n).weightF32(), exp, `${n}: merged LoRA weight`);
        (twin.getSubmodule(n) as LoraLinear).baseLayer.weight.data.set(exp);
      }
      assert.deepEqual(run(lora, X, 12), run(tw, X, 12), "merged LoRA logits equal the twin holding the rounded weights");
      lora.disableAdapters(() => {
        for (const n of ["0", "2"]) assertBitsEqual(bits(model, n), orig.get(n)!, `${n} inside disableAdapters`);
      });
      const mergedBits = bits(model, "0");
      assertBitsEqual(bits(model, "0"), mergedBits, "merged again after the scope");
      lora.unmerge();
      for (const n of ["0", "2"]) assertBitsEqual(bits(model, n), orig.get(n)!, `${n} after unmerge`);
      // two adapters, switch and fuse, then back to the base
      lora.addAdapter("b", cfg());
      for (const n of ["0", "2"]) (model.getSubmodule(n) as LoraLinear<HalfLinear>).weights("b").b.data.fill(0.01);
      lora.switchTo("b");
      lora.fuse([{ name: "a", weight: 0.5 }, { name: "b" }]);
      lora.deleteAdapter("a"); // unmerges a exactly, re-merges b
      const l0 = model.getSubmodule("0") as LoraLinear<HalfLinear>;
      assert.deepEqual(l0.merged, ["b"]);
      lora.unmerge();
      for (const n of ["0", "2"]) assertBitsEqual(bits(model, n), orig.get(n)!, `${n} after switch / fuse / delete / unmerge`);
    });
  });
}

describe("the PEFT fixture adapter on the bf16 Llama", () => {
  const DIR = join(TRANSFORMERS, "llama");
  function logitsOf(m: DecoderModel): Float32Array {
    const t = m.forward([[1, 5, 9, 13, 2, 7]]);
    const d = t.toArray();
    t.free();
    return d;
  }

  test("loads; fused and unfused logits equal an f32 model holding the widened (fused, rounded) weights; restores exactly", async () => {
    let lm: DecoderModel;
    try {
      lm = await AutoModelForCausalLM.fromPretrained(join(DIR, "model_bf16"), { dtype: "bf16" });
    } catch (e) {
      assert.fail(`the loader does not take dtype "bf16" yet: ${(e as Error).message}`);
    }
    // the same bf16 checkpoint loaded as f32: every weight widened exactly
    const ref = await AutoModelForCausalLM.fromPretrained(join(DIR, "model_bf16"), { dtype: "f32" });
    try {
      for (const [name, m] of lm.namedModules()) {
        if (m instanceof HalfLinear) assert.deepEqual((ref.getSubmodule(name) as unknown as Linear).weight.data, m.weightF32(), `${name} widened`);
      }
      const targets = lm.namedModules().filter(([n, m]) => m instanceof HalfLinear && /(q_proj|v_proj)$/.test(n)).map(([n]) => n);
      assert.ok(targets.length > 0);
      const orig = new Map(targets.map((n) => [n, bits(lm, n)] as const));
      const peft = await PeftModel.fromPretrained(lm, join(DIR, "shira"));
      const peftRef = await PeftModel.fromPretrained(ref, join(DIR, "shira"));
      assert.deepEqual(logitsOf(lm), logitsOf(ref), "unfused: identical to the f32 model with the widened weights");
      peft.switchTo("default");
      for (const n of targets) {
        const l = lm.getSubmodule(n) as unknown as ShiraLinear<HalfLinear>;
        const exp = expectedFused(orig.get(n)!, "bf16", [{ layer: l, name: "default", coef: l.adapters.get("default")!.scaling }]);
        assert.deepEqual(l.half!.weightF32(), exp, `${n}: fused bf16 weight`);
        const rl = ref.getSubmodule(n) as unknown as ShiraLinear;
        rl.baseLayer.weight.data.set(exp);
      }
      peftRef.disableAdapterLayers();
      assert.deepEqual(logitsOf(lm), logitsOf(ref), "fused: identical to the f32 model holding the rounded fused weights");
      peft.switchToBase();
      for (const n of targets) assertBitsEqual(bits(lm, n), orig.get(n)!, `${n} restored`);
    } finally {
      lm.dispose();
      ref.dispose();
    }
  });
});

// ---------------------------------------------------------------- GPT-2: adapters over HalfConv1D (weights stored [in, out])

describe("GPT-2 on a half base: SHiRA and LoRA over HalfConv1D", () => {
  const DIR = join(TRANSFORMERS, "gpt2");
  const IDS = [[5, 17, 123, 42, 7, 250, 99, 3, 64, 180, 11, 31]];
  function logitsOf(m: DecoderModel): Float32Array {
    const t = m.forward(IDS);
    const d = t.toArray();
    t.free();
    return d;
  }
  /** The half GPT-2 and the f32 GPT-2 holding its widened weights. */
  async function pair(dt: HalfDtype): Promise<{ lm: DecoderModel; ref: DecoderModel }> {
    const lm = await AutoModelForCausalLM.fromPretrained(join(DIR, "model"), { dtype: dt });
    const ref = await AutoModelForCausalLM.fromPretrained(join(DIR, "model"));
    const w = ref.stateDict();
    for (const [n, t] of Object.entries(lm.halfStateDict())) w[n].data.set(t.toFloat32());
    return { lm, ref };
  }
  const halfConv = (m: Module, name: string): HalfConv1D => {
    const l = m.getSubmodule(name);
    const h = l instanceof ShiraLinear || l instanceof LoraLinear ? l.baseLayer : l;
    assert.ok(h instanceof HalfConv1D, `${name} is (over) a HalfConv1D`);
    return h as HalfConv1D;
  };
  const convBits = (m: Module, name: string) => halfConv(m, name).bitsView().slice();

  for (const dt of ["bf16", "f16"] as const) {
    test(`${dt}: the PEFT fixture adapter (c_attn, fan_in_fan_out): unfused, fused and greedy equal the rounded f32 model; every switch restores the bits`, async () => {
      const { lm, ref } = await pair(dt);
      try {
        const targets = ["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"];
        const orig = new Map(targets.map((n) => [n, convBits(lm, n)] as const));
        const peft = await PeftModel.fromPretrained(lm, join(DIR, "shira"));
        const peftRef = await PeftModel.fromPretrained(ref, join(DIR, "shira"));
        peft.addAdapter("other", new ShiraConfig({ r: 2, targetModules: ["c_attn"], randomSeed: 5, initWeights: false }));
        for (const n of targets) {
          const l = lm.getSubmodule(n) as unknown as ShiraLinear<HalfConv1D>;
          assert.ok(l.half instanceof HalfConv1D && l.fanInFanOut, `${n}: a fan_in_fan_out layer over the half weight`);
          assert.ok(String(l).includes("fan_in_fan_out=True"));
        }
        // unfused: the dense half product plus the f32 sparse delta, as the f32 model computes it
        peft.setAdapter("default");
        assert.deepEqual(logitsOf(lm), logitsOf(ref), "unfused logits");
        const checkFused = (list: { name: string; weight: number }[]) => {
          for (const n of targets) {
            const l = lm.getSubmodule(n) as unknown as ShiraLinear<HalfConv1D>;
            const exp = expectedFused(
              orig.get(n)!,
              dt,
              list.map((e) => ({ layer: l as unknown as ShiraLinear<HalfLinear>, name: e.name, coef: e.weight * (l.adapters.get(e.name)?.scaling ?? 1) })),
            );
            assert.deepEqual(l.half!.weightF32(), exp, `${n}: fused ${JSON.stringify(list)}`);
            (ref.getSubmodule(n) as unknown as ShiraLinear).baseLayer.weight.data.set(exp);
          }
          peftRef.disableAdapters(() => assert.deepEqual(logitsOf(lm), logitsOf(ref), `fused ${JSON.stringify(list)}: logits of the f32 model holding the rounded fused weights`));
        };
        const checkBase = (what: string) => {
          for (const n of targets) assertBitsEqual(convBits(lm, n), orig.get(n)!, `${n} after ${what}`);
        };
        peft.switchTo("default");
        checkFused([{ name: "default", weight: 1 }]);
        const g = await lm.generate(IDS, { maxNewTokens: 12 });
        const gRef = await peftRef.disableAdapters(() => ref.generate(IDS, { maxNewTokens: 12 }));
        assert.deepEqual(g.sequences, gRef.sequences, "greedy tokens with the fused adapter");
        peft.switchTo("other");
        checkFused([{ name: "other", weight: 1 }]);
        peft.fuse([
          { name: "other", weight: 0.5 },
          { name: "default", weight: -2 },
        ]);
        checkFused([
          { name: "other", weight: 0.5 },
          { name: "default", weight: -2 },
        ]);
        peft.unmerge();
        checkBase("unmerge");
        for (let i = 0; i < 5; i++) peft.switchTo(i % 2 ? "default" : "other");
        peft.switchToBase();
        checkBase("5 switches and switchToBase");
        peft.switchTo("default");
        peft.deleteAdapter("default");
        checkBase("deleteAdapter of the fused adapter");
        peft.unload();
        checkBase("unload");
      } finally {
        lm.dispose();
        ref.dispose();
      }
    });

    test(`${dt}: LoRA on c_attn / c_proj: unfused equals the f32 twin; merge rounds the f32 merge of the twin; unmerge restores the bits`, async () => {
      const { lm, ref } = await pair(dt);
      try {
        const names = lm.namedModules().filter(([, m]) => m instanceof HalfConv1D).map(([n]) => n).filter((n) => /c_attn|c_proj/.test(n));
        assert.ok(names.length >= 4);
        const orig = new Map(names.map((n) => [n, convBits(lm, n)] as const));
        const cfg = () => new LoraConfig({ r: 2, loraAlpha: 4, targetModules: ["c_attn", "c_proj"] });
        const lora = getLoraModel(lm, cfg());
        const loraRef = getLoraModel(ref, cfg());
        const rnd = lcg(44);
        for (const n of names) {
          const l = lm.getSubmodule(n) as LoraLinear<HalfConv1D>;
          assert.ok(l.half && l.fanInFanOut);
          const w = l.weights("default");
          w.a.data.forEach((_, i, d) => (d[i] = (rnd() - 0.5) * 0.5));
          w.b.data.forEach((_, i, d) => (d[i] = (rnd() - 0.5) * 0.5));
          const t = (ref.getSubmodule(n) as LoraLinear).weights("default");
          t.a.data.set(w.a.data);
          t.b.data.set(w.b.data);
        }
        assert.deepEqual(logitsOf(lm), logitsOf(ref), "unfused LoRA logits");
        lora.merge();
        loraRef.merge();
        for (const n of names) {
          const f = (ref.getSubmodule(n) as LoraLinear).baseLayer.weight.data;
          const exp = Float32Array.from(f, (v) => roundHalf(v, dt));
          assert.deepEqual(halfConv(lm, n).weightF32(), exp, `${n}: merged LoRA weight (stored [in, out])`);
          f.set(exp);
        }
        assert.deepEqual(logitsOf(lm), logitsOf(ref), "merged LoRA logits equal the f32 twin holding the rounded merged weights");
        lora.unmerge();
        for (const n of names) assertBitsEqual(convBits(lm, n), orig.get(n)!, `${n} after unmerge`);
      } finally {
        lm.dispose();
        ref.dispose();
      }
    });
  }
});
