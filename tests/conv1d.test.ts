// GPT-2's Conv1D (weight stored [in, out], y = x·W + b) and SHiRA / LoRA on it with fan_in_fan_out: true, as
// tests/fixtures/transformers/README.md ("GPT-2 (Conv1D, fan_in_fan_out: true) — layout used") defines it:
// positions address the [out, in] matrix, merging does W[col, row] += v on the stored weight. Checked against
// float64 references and the gpt2/shira fixture (PEFT's format, byte for byte).
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  Conv1D,
  Linear,
  Module,
  Tensor,
  ShiraConfig,
  ShiraLinear,
  ShiraModel,
  PeftModel,
  getPeftModel,
  LoraConfig,
  LoraLinear,
  LoraModel,
  getLoraModel,
  ConfigError,
  Rng,
  isDenseLayer,
  randomMask,
  readSafetensors,
  runtime,
} from "../src/node.js";

const GPT2 = join(dirname(fileURLToPath(import.meta.url)), "fixtures", "transformers", "gpt2");
const SHIRA_DIR = join(GPT2, "shira");
const modelFile = readSafetensors(readFileSync(join(GPT2, "model", "model.safetensors")));
const adapterBytes = readFileSync(join(SHIRA_DIR, "adapter_model.safetensors"));
const adapterFile = readSafetensors(adapterBytes);
const adapterJson = readFileSync(join(SHIRA_DIR, "adapter_config.json"), "utf8");
const LAYERS = ["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"];
const IN = 64;
const OUT = 192;

/** A container without a forward of its own (the HF module tree's inner nodes). */
class Node extends Module {
  forward(_x: Tensor): Tensor {
    throw new Error(`${this.constructor.name} has no forward`);
  }
}

/** transformer.h.{0,1}.attn.c_attn as in GPT2LMHeadModel, with the fixture's weights. */
function gpt2Tree(): Module {
  const root = new Node();
  const transformer = root.registerModule("transformer", new Node());
  const h = transformer.registerModule("h", new Node());
  for (const i of ["0", "1"]) h.registerModule(i, new Node()).registerModule("attn", new Node()).registerModule("c_attn", new Conv1D(OUT, IN));
  const sd = new Map<string, { shape: readonly number[]; data: Float32Array }>();
  for (const l of LAYERS) {
    for (const p of ["weight", "bias"]) sd.set(`${l}.${p}`, { shape: modelFile.entry(`${l}.${p}`).shape, data: modelFile.f32(`${l}.${p}`) });
  }
  root.loadStateDict(sd);
  return root;
}

function rand(n: number, seed: number, scale = 1): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => scale * rng.uniform(-1, 1));
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, "same length");
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** float64 y[B, out] = x[B, in]·W + b with W stored [in, out]. */
function refConv(x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number> | null, B: number, inn: number, out: number): Float64Array {
  const y = new Float64Array(B * out);
  for (let r = 0; r < B; r++) {
    for (let n = 0; n < out; n++) {
      let s = b ? b[n] : 0;
      for (let k = 0; k < inn; k++) s += x[r * inn + k] * w[k * out + n];
      y[r * out + n] = s;
    }
  }
  return y;
}

/** The fixture's positions and values of one module: PEFT order (row-major over [out, in]). */
function fileAdapter(mod: string): { rows: Int32Array; cols: Int32Array; values: Float32Array } {
  const idx = adapterFile.i32(`base_model.model.${mod}.shira_indices`);
  const nnz = idx.length / 2;
  return { rows: idx.slice(0, nnz), cols: idx.slice(nnz), values: adapterFile.f32(`base_model.model.${mod}.shira_weight`) };
}

function shiraLayer(m: Module, name: string): ShiraLinear {
  const l = m.getSubmodule(name);
  assert.ok(l instanceof ShiraLinear, `${name} is adapted`);
  return l;
}

/** Silences console.warn (the fan_in_fan_out notice) while running fn; returns the messages. */
function captureWarnings<R>(fn: () => R): { result: R; warnings: string[] } {
  const orig = console.warn;
  const warnings: string[] = [];
  console.warn = (...a: unknown[]) => void warnings.push(a.map(String).join(" "));
  try {
    return { result: fn(), warnings };
  } finally {
    console.warn = orig;
  }
}

describe("Conv1D", () => {
  test("HF's shapes and names; forward equals float64 x·W + b for any leading dims; forwardInto equals forward", () => {
    const c = new Conv1D(7, 5);
    assert.equal(c.inFeatures, 5);
    assert.equal(c.outFeatures, 7);
    assert.equal(c.fanInFanOut, true);
    assert.deepEqual(c.weight.shape, [5, 7]);
    assert.deepEqual(c.bias!.shape, [7]);
    assert.deepEqual(Object.keys(c.stateDict()), ["weight", "bias"]);
    assert.equal(c.toString(), "Conv1D(nf=7, nx=5)");
    assert.ok(isDenseLayer(c) && isDenseLayer(new Linear(2, 3)) && !isDenseLayer(new Node()));
    c.weight.copyFrom(rand(35, 1));
    c.bias!.copyFrom(rand(7, 2));
    for (const shape of [[1, 5], [6, 5], [2, 3, 5], [5]]) {
      const B = shape.slice(0, -1).reduce((a, b) => a * b, 1);
      const xd = rand(B * 5, 3 + B);
      const x = Tensor.from(xd, shape);
      const y = c.forward(x);
      assert.deepEqual(y.shape, [...shape.slice(0, -1), 7]);
      assert.ok(maxAbsDiff(y.toArray(), refConv(xd, c.weight.data, c.bias!.data, B, 5, 7)) < 1e-5, `shape [${shape}]`);
      const y2 = Tensor.zeros(y.shape);
      c.forwardInto(x.ptr, y2.ptr, B);
      assert.ok(bitsEqual(y.toArray(), y2.toArray()), "forwardInto == forward");
    }
    const nb = new Conv1D(4, 3, { bias: false });
    nb.weight.copyFrom(rand(12, 9));
    const xd = rand(6, 10);
    assert.ok(maxAbsDiff(nb.forward(Tensor.from(xd, [2, 3])).toArray(), refConv(xd, nb.weight.data, null, 2, 3, 4)) < 1e-5);
    const cl = c.clone();
    assert.ok(cl instanceof Conv1D && bitsEqual(cl.weight.toArray(), c.weight.toArray()) && cl.weight.ptr !== c.weight.ptr);
    assert.throws(() => c.forward(Tensor.zeros([2, 4])), /does not end in nx = 5/);
  });

  test("backward: gx = gy·Wᵀ, dW = xᵀ·gy, db = Σ gy (float64)", () => {
    const inn = 6, out = 9, B = 5;
    const c = new Conv1D(out, inn);
    c.weight.copyFrom(rand(inn * out, 11));
    c.bias!.copyFrom(rand(out, 12));
    const xd = rand(B * inn, 13);
    const gyd = rand(B * out, 14);
    c.train();
    c.forward(Tensor.from(xd, [B, inn]));
    const gx = c.backward(Tensor.from(gyd, [B, out])).toArray();
    const w = c.weight.data;
    const rgx = new Float64Array(B * inn);
    const rdw = new Float64Array(inn * out);
    const rdb = new Float64Array(out);
    for (let b = 0; b < B; b++) {
      for (let k = 0; k < inn; k++) for (let n = 0; n < out; n++) rgx[b * inn + k] += gyd[b * out + n] * w[k * out + n];
      for (let k = 0; k < inn; k++) for (let n = 0; n < out; n++) rdw[k * out + n] += xd[b * inn + k] * gyd[b * out + n];
      for (let n = 0; n < out; n++) rdb[n] += gyd[b * out + n];
    }
    assert.ok(maxAbsDiff(gx, rgx) < 1e-5, "gx");
    assert.ok(maxAbsDiff(c.weight.grad!.toArray(), rdw) < 1e-5, "dW");
    assert.ok(maxAbsDiff(c.bias!.grad!.toArray(), rdb) < 1e-5, "db");
    // and against finite differences of L = Σ gy·y in float64 of the layer's own forward
    const L = (wd: Float32Array) => {
      const y = refConv(xd, wd, c.bias!.data, B, inn, out);
      let s = 0;
      for (let i = 0; i < y.length; i++) s += y[i] * gyd[i];
      return s;
    };
    for (const i of [0, 17, inn * out - 1]) {
      const wp = Float64Array.from(w);
      const h = 1e-3;
      const plus = Float32Array.from(wp);
      const minus = Float32Array.from(wp);
      plus[i] += h;
      minus[i] -= h;
      const fd = (L(plus) - L(minus)) / (plus[i] - minus[i]);
      assert.ok(Math.abs(fd - c.weight.grad!.data[i]) < 1e-3, `fd dW[${i}]`);
    }
  });
});

describe("SHiRA on GPT-2's Conv1D (tests/fixtures/transformers/gpt2/shira)", () => {
  test("the random mask (seed 58, r 4) rebuilt on the [out, in] matrix equals the file's indices; the layer keeps stored [in, out] positions", async () => {
    const want = randomMask(OUT, IN, 4, 58);
    for (const mod of LAYERS) {
      const f = fileAdapter(mod);
      assert.equal(f.rows.length, 4 * (IN + OUT));
      assert.deepEqual(Array.from(f.rows, (r, j) => r * IN + f.cols[j]), Array.from(want), mod);
    }
    // built from the config (fan_in_fan_out false on purpose: set to true, with PEFT LoRA's warning)
    const cfg = new ShiraConfig({ r: 4, targetModules: ["c_attn"], randomSeed: 58 });
    const { result: peft, warnings } = captureWarnings(() => getPeftModel(gpt2Tree(), cfg));
    assert.ok(warnings.some((w) => w.includes("fan_in_fan_out is set to False but the target module is `Conv1D`. Setting fan_in_fan_out to True.")));
    assert.equal(peft.peftConfig.get("default")!.fanInFanOut, true);
    for (const mod of LAYERS) {
      const l = shiraLayer(peft.model, mod);
      assert.equal(l.fanInFanOut, true);
      const a = l.adapters.get("default")!;
      const f = fileAdapter(mod);
      const { rows, cols } = a.rowsCols();
      assert.deepEqual(Array.from(rows), Array.from(f.rows));
      assert.deepEqual(Array.from(cols), Array.from(f.cols));
      const stored = Array.from(f.rows, (r, j) => f.cols[j] * OUT + r).sort((p, q) => p - q);
      assert.deepEqual(Array.from(a.indices.view), stored, "stored flat col*out+row, ascending");
      // CSR by stored row (= input index) over the flat indices: column (output index) = index - k * out
      const rp = a.rowPtr.view;
      assert.equal(rp.length, IN + 1);
      assert.equal(rp[0], 0);
      assert.equal(rp[IN], a.nnz);
      for (let k = 0; k < IN; k++)
        for (let j = rp[k]; j < rp[k + 1]; j++) {
          const c = a.indices.view[j] - k * OUT;
          assert.ok(c >= 0 && c < OUT, `entry ${j} lies in stored row ${k}`);
        }
    }
  });

  test("fromPretrained: merged weights bit-equal W[col, row] += v; unfused == merged (1e-5) == float64; unmerge/switch restore the base bit for bit", async () => {
    const model = gpt2Tree();
    const base = LAYERS.map((l) => (model.getSubmodule(l) as Conv1D).weight.toArray());
    const peft = await PeftModel.fromPretrained(model, SHIRA_DIR);
    assert.equal(peft.peftConfig.get("default")!.fanInFanOut, true);
    const B = 5;
    const xd = rand(B * IN, 21);
    const x = Tensor.from(xd, [B, IN]);
    peft.eval();
    const unfused = LAYERS.map((l) => model.getSubmodule(l).forward(x).toArray());
    // float64 reference: x·(W + Δᵀ) + b, Δ [out, in] from the file
    LAYERS.forEach((mod, i) => {
      const f = fileAdapter(mod);
      const w = Float64Array.from(base[i]);
      for (let j = 0; j < f.rows.length; j++) w[f.cols[j] * OUT + f.rows[j]] += f.values[j];
      const ref = refConv(xd, w, modelFile.f32(`${mod}.bias`), B, IN, OUT);
      assert.ok(maxAbsDiff(unfused[i], ref) < 1e-5, `${mod} unfused vs float64`);
    });
    // forwardInto (the decode path) equals forward
    LAYERS.forEach((mod, i) => {
      const y = Tensor.zeros([B, OUT]);
      (model.getSubmodule(mod) as ShiraLinear).forwardInto(x.ptr, y.ptr, B);
      assert.ok(bitsEqual(y.toArray(), unfused[i]), `${mod} forwardInto == forward`);
    });
    peft.merge();
    LAYERS.forEach((mod, i) => {
      const f = fileAdapter(mod);
      const want = base[i].slice();
      for (let j = 0; j < f.rows.length; j++) {
        const p = f.cols[j] * OUT + f.rows[j];
        want[p] = Math.fround(want[p] + f.values[j]);
      }
      const l = shiraLayer(model, mod);
      assert.ok(bitsEqual(l.baseLayer.weight.toArray(), want), `${mod} merged = W[col, row] + v`);
      assert.ok(bitsEqual(l.baseWeight(), base[i]), `${mod} baseWeight() while merged`);
      const merged = l.forward(x).toArray();
      assert.ok(maxAbsDiff(merged, unfused[i]) < 1e-5, `${mod} merged vs unfused`);
      // getDeltaWeight: stored layout [in, out], base + delta = merged
      const d = l.getDeltaWeight("default");
      assert.deepEqual(d.shape, [IN, OUT]);
      const dd = d.toArray();
      for (let p = 0; p < dd.length; p++) assert.equal(Math.fround(base[i][p] + dd[p]), want[p]);
      d.free();
    });
    peft.unmerge();
    LAYERS.forEach((mod, i) => assert.ok(bitsEqual(shiraLayer(model, mod).baseLayer.weight.toArray(), base[i]), `${mod} unmerge exact`));
    // a second adapter (another seed) and rapid switching back and forth
    const { warnings } = captureWarnings(() => peft.addAdapter("other", new ShiraConfig({ r: 2, targetModules: ["c_attn"], randomSeed: 5, initWeights: false })));
    assert.ok(warnings.length <= 1, "at most one notice (shown once per message)");
    for (const n of ["default", "other", "default", "other", "other", "default"]) peft.switchTo(n);
    peft.fuse([{ name: "default", weight: 0.5 }, { name: "other", weight: 2 }]);
    peft.switchTo("other");
    peft.unmerge();
    LAYERS.forEach((mod, i) => assert.ok(bitsEqual(shiraLayer(model, mod).baseLayer.weight.toArray(), base[i]), `${mod} base after switching`));
    // disabled adapters: the plain Conv1D output
    const plain = peft.disableAdapters(() => model.getSubmodule(LAYERS[0]).forward(x).toArray());
    assert.ok(maxAbsDiff(plain, refConv(xd, base[0], modelFile.f32(`${LAYERS[0]}.bias`), B, IN, OUT)) < 1e-5);
  });

  test("saveAdapter reproduces the fixture's adapter_model.safetensors and adapter_config.json byte for byte", async () => {
    const peft = await PeftModel.fromPretrained(gpt2Tree(), SHIRA_DIR);
    const files = peft.saveAdapter("default");
    assert.equal(files["adapter_config.json"], adapterJson);
    // adapter_model.safetensors: same length, metadata, names, dtypes, shapes and tensor bytes. (The data *order*
    // differs: this fixture was written by a newer safetensors that lays out tensors of equal width by name only,
    // indices before weights, while writeSafetensors follows the older dtype-rank order the peft/ fixtures use.)
    const saved = files["adapter_model.safetensors"];
    assert.equal(saved.length, adapterBytes.length);
    const mine = readSafetensors(saved);
    assert.deepEqual(mine.metadata, adapterFile.metadata);
    assert.deepEqual(mine.names().sort(), adapterFile.names().sort());
    for (const k of adapterFile.names()) {
      assert.equal(mine.entry(k).dtype, adapterFile.entry(k).dtype, k);
      assert.deepEqual(mine.entry(k).shape, adapterFile.entry(k).shape, k);
      assert.ok(Buffer.from(mine.get(k).bytes).equals(Buffer.from(adapterFile.get(k).bytes)), `${k} bytes`);
    }
    // an adapter built from the config, with the file's values: the same tensors (PEFT order restored from the stored order)
    const { result: built } = captureWarnings(() => getPeftModel(gpt2Tree(), new ShiraConfig({ r: 4, targetModules: ["c_attn"], randomSeed: 58 })));
    for (const mod of LAYERS) {
      const a = shiraLayer(built.model, mod).adapters.get("default")!;
      const want = fileAdapter(mod).values;
      const order = a.peftOrder()!;
      const stored = new Float32Array(a.nnz);
      order.forEach((j, i) => (stored[j] = want[i]));
      a.weight.copyFrom(stored);
    }
    const out = readSafetensors(built.saveAdapter()["adapter_model.safetensors"]);
    assert.deepEqual(out.names().sort(), adapterFile.names().sort());
    for (const k of adapterFile.names()) {
      assert.equal(out.entry(k).dtype, adapterFile.entry(k).dtype, k);
      assert.ok(Buffer.from(out.get(k).bytes).equals(Buffer.from(adapterFile.get(k).bytes)), `${k} bytes`);
    }
    assert.match(built.saveAdapter()["adapter_config.json"], /"fan_in_fan_out": true/);
  });

  test("a Linear target of the same config stays [out, in]: mixed Linear + Conv1D model", () => {
    const root = gpt2Tree();
    const lin = root.registerModule("lm_head", new Linear(IN, 30));
    const w = lin.weight.toArray();
    const { result: peft } = captureWarnings(() => getPeftModel(root, new ShiraConfig({ r: 1, targetModules: ["c_attn", "lm_head"], randomSeed: 58 })));
    const l = shiraLayer(root, "lm_head");
    assert.equal(l.fanInFanOut, false);
    const a = l.adapters.get("default")!;
    assert.deepEqual(Array.from(a.indices.view), Array.from(randomMask(30, IN, 1, 58)));
    a.weight.copyFrom(rand(a.nnz, 5));
    peft.merge();
    const { rows, cols } = a.rowsCols();
    const want = w.slice();
    const v = a.weight.data;
    for (let j = 0; j < a.nnz; j++) want[rows[j] * IN + cols[j]] = Math.fround(want[rows[j] * IN + cols[j]] + v[j]);
    assert.ok(bitsEqual(lin.weight.toArray(), want), "Linear merged as W[row, col] += v");
    peft.unmerge();
    assert.ok(bitsEqual(lin.weight.toArray(), w));
  });

  test("ShiraLinear(Conv1D) backward: value gradient (masked matmul with x and gy swapped) and input gradient, float64", () => {
    for (const B of [1, 6]) {
      for (const fused of [false, true]) {
        const c = new Conv1D(OUT, IN);
        c.weight.copyFrom(modelFile.f32(`${LAYERS[0]}.weight`));
        c.bias!.copyFrom(modelFile.f32(`${LAYERS[0]}.bias`));
        const root = new Node();
        root.registerModule("c_attn", c);
        const { result: peft } = captureWarnings(() => getPeftModel(root, new ShiraConfig({ r: 4, targetModules: ["c_attn"], randomSeed: 58 })));
        const l = shiraLayer(root, "c_attn");
        const a = l.adapters.get("default")!;
        a.weight.copyFrom(rand(a.nnz, 31, 0.1));
        peft.setScale("default", 0.75);
        if (fused) peft.merge();
        peft.train();
        const xd = rand(B * IN, 32 + B);
        const gyd = rand(B * OUT, 33 + B);
        const y = l.forward(Tensor.from(xd, [B, IN])).toArray();
        const gx = l.backward(Tensor.from(gyd, [B, OUT])).toArray();
        const g = a.weight.grad!.toArray();
        // float64: W_eff[k, n] = W + 0.75 Δ
        const weff = Float64Array.from(c.weight.data);
        const base = l.baseWeight();
        for (let i = 0; i < weff.length; i++) weff[i] = base[i];
        for (let j = 0; j < a.nnz; j++) weff[a.indices.view[j]] += 0.75 * a.weight.data[j];
        assert.ok(maxAbsDiff(y, refConv(xd, weff, c.bias!.data, B, IN, OUT)) < 1e-5, `B ${B} fused ${fused}: y`);
        const rgx = new Float64Array(B * IN);
        for (let b = 0; b < B; b++) for (let k = 0; k < IN; k++) for (let n = 0; n < OUT; n++) rgx[b * IN + k] += gyd[b * OUT + n] * weff[k * OUT + n];
        assert.ok(maxAbsDiff(gx, rgx) < 1e-5, `B ${B} fused ${fused}: gx`);
        for (let j = 0; j < a.nnz; j++) {
          const [row, col] = a.position(j);
          let s = 0;
          for (let b = 0; b < B; b++) s += gyd[b * OUT + row] * xd[b * IN + col];
          assert.ok(Math.abs(g[j] - 0.75 * s) < 1e-5, `B ${B} fused ${fused}: g[${j}]`);
        }
        peft.unmerge();
      }
    }
  });

  test("mask functions see the [out, in] matrix of a Conv1D (its stored weight transposed)", () => {
    const root = gpt2Tree();
    const w = (root.getSubmodule(LAYERS[0]) as Conv1D).weight.toArray();
    let seen: Float32Array | null = null;
    const cfg = new ShiraConfig({ r: 1, targetModules: [LAYERS[0]], maskType: "wm" });
    cfg.maskFn = (layer, r) => {
      seen = layer.weight;
      assert.equal(layer.outFeatures, OUT);
      assert.equal(layer.inFeatures, IN);
      return Int32Array.from({ length: r * (OUT + IN) }, (_, i) => i * 7);
    };
    captureWarnings(() => getPeftModel(root, cfg));
    assert.ok(seen);
    const s = seen as Float32Array;
    for (let n = 0; n < OUT; n++) for (let k = 0; k < IN; k++) assert.equal(s[n * IN + k], w[k * OUT + n]);
    const a = shiraLayer(root, LAYERS[0]).adapters.get("default")!;
    const { rows, cols } = a.rowsCols();
    assert.deepEqual(Array.from(rows, (r, j) => r * IN + cols[j]), Array.from({ length: OUT + IN }, (_, i) => i * 7));
  });

  test("targets that are neither Linear nor Conv1D: the error lists Linear, Conv1D", () => {
    const root = gpt2Tree();
    assert.throws(
      () => getPeftModel(root, new ShiraConfig({ r: 1, targetModules: ["attn"] })),
      (e: unknown) => e instanceof ConfigError && /only the following modules are supported: Linear, Conv1D\./.test((e as Error).message),
    );
  });
});

describe("forwardInto allocates nothing in steady state", () => {
  test("Linear, Conv1D, ShiraLinear (both layouts, unfused) and LoraLinear: equal to forward, no wasm allocation after warm-up", () => {
    const rt = runtime();
    const root = gpt2Tree();
    root.registerModule("lin", new Linear(IN, 48));
    const { result: peft } = captureWarnings(() => getPeftModel(root, new ShiraConfig({ r: 2, targetModules: ["transformer.h.0.attn.c_attn", "lin"], randomSeed: 3, initWeights: false })));
    peft.eval();
    const loraRoot = new Node();
    loraRoot.registerModule("c", new Conv1D(40, IN));
    const { result: lm } = captureWarnings(() => getLoraModel(loraRoot, new LoraConfig({ r: 3, loraAlpha: 6, targetModules: ["c"] })));
    lm.eval();
    const ll = loraRoot.getSubmodule("c") as LoraLinear;
    ll.weights("default").b.copyFrom(rand(40 * 3, 44));
    const layers: [string, { forward(x: Tensor): Tensor; forwardInto(x: number, y: number, rows: number): void }, number][] = [
      ["shira conv1d", root.getSubmodule("transformer.h.0.attn.c_attn") as ShiraLinear, OUT],
      ["plain conv1d", root.getSubmodule("transformer.h.1.attn.c_attn") as Conv1D, OUT],
      ["shira linear", root.getSubmodule("lin") as ShiraLinear, 48],
      ["lora conv1d", ll, 40],
    ];
    const xs = [1, 7, 3].map((B) => Tensor.from(rand(B * IN, 50 + B), [B, IN]));
    const ys = [1, 7, 3].map((B) => Tensor.zeros([B, 200]));
    for (const [name, l, out] of layers) {
      xs.forEach((x, i) => {
        const B = x.shape[0];
        l.forwardInto(x.ptr, ys[i].ptr, B);
        const want = l.forward(x);
        assert.ok(bitsEqual(ys[i].data.subarray(0, B * out), want.toArray()), `${name} B ${B}`);
        want.free();
      });
      const blocks = rt.liveBlocks;
      const bytes = rt.liveBytes;
      for (let rep = 0; rep < 20; rep++) xs.forEach((x, i) => l.forwardInto(x.ptr, ys[i].ptr, x.shape[0]));
      assert.equal(rt.liveBlocks, blocks, `${name}: no new blocks`);
      assert.equal(rt.liveBytes, bytes, `${name}: no new bytes`);
    }
    // scratch is released with the adapter
    const sl = root.getSubmodule("lin") as ShiraLinear;
    const before = rt.liveBlocks;
    sl.releaseScratch();
    assert.ok(rt.liveBlocks <= before);
  });
});

describe("LoRA on GPT-2's Conv1D (fan_in_fan_out)", () => {
  test("merge adds (B·A)ᵀ to the stored [in, out] weight: merged == unfused within 1e-5 == float64; unmerge returns near the base", () => {
    const root = gpt2Tree();
    const base = (root.getSubmodule(LAYERS[0]) as Conv1D).weight.toArray();
    const cfg = new LoraConfig({ r: 4, loraAlpha: 8, targetModules: ["c_attn"] });
    const { result: lora, warnings } = captureWarnings(() => getLoraModel(root, cfg));
    assert.ok(warnings.some((w) => w.includes("Setting fan_in_fan_out to True")));
    assert.equal(cfg.fanInFanOut, true);
    assert.match(lora.saveAdapter("default")["adapter_config.json"], /"fan_in_fan_out": true/);
    lora.eval();
    const l = root.getSubmodule(LAYERS[0]) as LoraLinear;
    const { a, b } = l.weights("default");
    assert.deepEqual(a.shape, [4, IN]);
    assert.deepEqual(b.shape, [OUT, 4]);
    b.copyFrom(rand(OUT * 4, 61, 0.2));
    const B = 4;
    const xd = rand(B * IN, 62);
    const x = Tensor.from(xd, [B, IN]);
    const unfused = l.forward(x).toArray();
    // float64: W + 2 (B·A)ᵀ
    const w = Float64Array.from(base);
    for (let k = 0; k < IN; k++) {
      for (let n = 0; n < OUT; n++) {
        let s = 0;
        for (let q = 0; q < 4; q++) s += b.data[n * 4 + q] * a.data[q * IN + k];
        w[k * OUT + n] += 2 * s;
      }
    }
    const ref = refConv(xd, w, modelFile.f32(`${LAYERS[0]}.bias`), B, IN, OUT);
    assert.ok(maxAbsDiff(unfused, ref) < 1e-5, "unfused vs float64");
    lora.merge();
    const merged = l.forward(x).toArray();
    assert.ok(maxAbsDiff(merged, unfused) < 1e-5, "merged vs unfused");
    assert.ok(maxAbsDiff(l.baseLayer.weight.toArray(), w) < 1e-6, "merged weight = W + s (B·A)ᵀ");
    lora.unmerge();
    assert.ok(maxAbsDiff(l.baseLayer.weight.toArray(), base) < 1e-6, "unmerge");
    // save / load round trip onto a fresh tree
    const files = lora.saveAdapter("default");
    const root2 = gpt2Tree();
    const { result: lora2 } = captureWarnings(() => LoraModel.fromAdapterFiles(root2, files["adapter_config.json"], files["adapter_model.safetensors"]));
    assert.equal(lora2.peftConfig.get("default")!.fanInFanOut, true);
    lora2.eval();
    assert.ok(bitsEqual(root2.getSubmodule(LAYERS[0]).forward(x).toArray(), unfused), "reloaded adapter: same output");
  });
});

// keep the imported ShiraModel type referenced (PeftModel is its alias)
void ShiraModel;
