// Finite-difference gradient checks: every backward pass (f32, wasm kernels) against central differences of an
// independent float64 JavaScript reference of the same forward.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import {
  Tensor,
  Linear,
  ReLU,
  GELU,
  SiLU,
  Tanh,
  Softmax,
  LogSoftmax,
  LayerNorm,
  Embedding,
  Sequential,
  Module,
  crossEntropy,
  nllLoss,
  mseLoss,
  getPeftModel,
  ShiraConfig,
  ShiraLinear,
  getLoraModel,
  LoraConfig,
  LoraLinear,
  Rng,
  manualSeed,
  type Parameter,
} from "../src/node.js";

const rng = new Rng(42);
const randn = (n: number, s = 1) => Float64Array.from({ length: n }, () => rng.normal() * s);

// ---------------------------------------------------------------- float64 references
function erf(x: number): number {
  // Maclaurin series (|x| <= 3 here): float64 accurate to ~1e-12
  let sum = 0;
  let term = x;
  for (let n = 0; n < 200; n++) {
    const t = term / (2 * n + 1);
    sum += t;
    term *= (-x * x) / (n + 1);
    if (Math.abs(t) < 1e-17) break;
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}
const act64: Record<string, (v: number) => number> = {
  relu: (v) => Math.max(0, v),
  gelu: (v) => 0.5 * v * (1 + erf(v / Math.SQRT2)),
  silu: (v) => v / (1 + Math.exp(-v)),
  tanh: (v) => Math.tanh(v),
};
function linear64(x: Float64Array, w: Float64Array, b: Float64Array | null, B: number, K: number, N: number): Float64Array {
  const y = new Float64Array(B * N);
  for (let i = 0; i < B; i++) for (let n = 0; n < N; n++) {
    let s = b ? b[n] : 0;
    for (let k = 0; k < K; k++) s += x[i * K + k] * w[n * K + k];
    y[i * N + n] = s;
  }
  return y;
}
function softmaxRows64(x: Float64Array, cols: number, log: boolean): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / cols; r++) {
    let m = -Infinity;
    for (let c = 0; c < cols; c++) m = Math.max(m, x[r * cols + c]);
    let s = 0;
    for (let c = 0; c < cols; c++) s += Math.exp(x[r * cols + c] - m);
    for (let c = 0; c < cols; c++) y[r * cols + c] = log ? x[r * cols + c] - m - Math.log(s) : Math.exp(x[r * cols + c] - m) / s;
  }
  return y;
}
const dot = (a: Float64Array, c: Float64Array) => a.reduce((s, v, i) => s + v * c[i], 0);

/**
 * Checks analytic gradients against central differences of `ref(vars)` (a scalar). `vars` are the float64 values
 * of each checked tensor, `analytic` their analytic gradients (f32). Samples up to `maxPerVar` entries per tensor.
 */
function fdCheck(what: string, vars: Float64Array[], ref: (vars: Float64Array[]) => number, analytic: Float32Array[], maxPerVar = 40, h = 1e-4): void {
  vars.forEach((v, vi) => {
    const step = Math.max(1, Math.floor(v.length / maxPerVar));
    let worst = 0;
    for (let i = 0; i < v.length; i += step) {
      const orig = v[i];
      v[i] = orig + h;
      const lp = ref(vars);
      v[i] = orig - h;
      const lm = ref(vars);
      v[i] = orig;
      const num = (lp - lm) / (2 * h);
      const err = Math.abs(num - analytic[vi][i]) / Math.max(1, Math.abs(num));
      worst = Math.max(worst, err);
    }
    assert.ok(worst < 2e-3, `${what}: variable ${vi} worst relative error ${worst}`);
  });
}

/** Runs forward + backward of `m` with dL/dy = c; returns dL/dx. */
function runModule(m: { forward(x: Tensor): Tensor; backward(g: Tensor): Tensor }, x: Float64Array, shape: number[], c: Float64Array): Float32Array {
  const xt = Tensor.from(x, shape);
  const y = m.forward(xt);
  assert.equal(y.size, c.length);
  const g = Tensor.from(c, y.shape);
  const gx = m.backward(g);
  const out = gx.toArray();
  for (const t of [g, gx, y]) t.free();
  return out;
}

const f64 = (p: Parameter) => Float64Array.from(p.data);
const setParam = (p: Parameter, v: Float64Array) => p.data.set(v);

describe("backward passes against float64 finite differences", () => {
  test("Linear (input, weight, bias)", () => {
    const [B, K, N] = [3, 7, 5];
    const lin = new Linear(K, N);
    const x = randn(B * K);
    const c = randn(B * N);
    const gx = runModule(lin, x, [B, K], c);
    const w = f64(lin.weight);
    const b = f64(lin.bias!);
    fdCheck("Linear", [x, w, b], ([x, w, b]) => dot(linear64(x, w, b, B, K, N), c), [gx, lin.weight.grad!.toArray(), lin.bias!.grad!.toArray()]);
  });

  for (const [name, make] of [["relu", () => new ReLU()], ["gelu", () => new GELU()], ["silu", () => new SiLU()], ["tanh", () => new Tanh()]] as const) {
    test(`activation ${name}`, () => {
      const x = randn(37, 1.5).map((v) => (Math.abs(v) < 1e-2 ? v + 0.1 : v)); // keep away from ReLU's kink
      const c = randn(37);
      const gx = runModule(make(), x, [37], c);
      fdCheck(name, [x], ([x]) => dot(x.map(act64[name]), c), [gx]);
    });
  }

  for (const log of [false, true]) {
    test(log ? "LogSoftmax" : "Softmax", () => {
      const x = randn(4 * 6);
      const c = randn(4 * 6);
      const gx = runModule(log ? new LogSoftmax() : new Softmax(), x, [4, 6], c);
      fdCheck(log ? "LogSoftmax" : "Softmax", [x], ([x]) => dot(softmaxRows64(x, 6, log), c), [gx]);
    });
  }

  test("LayerNorm (input, weight, bias)", () => {
    const D = 9;
    const ln = new LayerNorm(D);
    setParam(ln.weight!, randn(D));
    setParam(ln.bias!, randn(D));
    const x = randn(3 * D, 2);
    const c = randn(3 * D);
    const gx = runModule(ln, x, [3, D], c);
    const ref = ([x, w, b]: Float64Array[]) => {
      let s = 0;
      for (let r = 0; r < 3; r++) {
        const row = x.subarray(r * D, r * D + D);
        const m = row.reduce((a, v) => a + v, 0) / D;
        const v = row.reduce((a, q) => a + (q - m) ** 2, 0) / D;
        for (let i = 0; i < D; i++) s += (((row[i] - m) / Math.sqrt(v + 1e-5)) * w[i] + b[i]) * c[r * D + i];
      }
      return s;
    };
    fdCheck("LayerNorm", [x, f64(ln.weight!), f64(ln.bias!)], ref, [gx, ln.weight!.grad!.toArray(), ln.bias!.grad!.toArray()]);
  });

  test("Embedding (weight; repeated ids accumulate; padding row gets none)", () => {
    const emb = new Embedding(6, 4, { paddingIdx: 5 });
    const ids = Float64Array.from([2, 0, 2, 5, 3]);
    const c = randn(5 * 4);
    runModule(emb, ids, [5], c);
    const ref = ([w]: Float64Array[]) => {
      let s = 0;
      ids.forEach((id, i) => {
        if (id === 5) return; // padding_idx: a constant row (no gradient)
        for (let j = 0; j < 4; j++) s += w[id * 4 + j] * c[i * 4 + j];
      });
      return s;
    };
    const g = emb.weight.grad!.toArray();
    fdCheck("Embedding", [f64(emb.weight)], ref, [g], 24);
    assert.deepEqual(Array.from(g.subarray(20, 24)), [0, 0, 0, 0]);
  });

  test("losses: cross-entropy, NLL, MSE", () => {
    const logits = randn(4 * 5);
    const y = [1, 4, 0, 2];
    const lt = Tensor.from(logits, [4, 5]);
    const ce = crossEntropy(lt, y);
    const ceRef = ([z]: Float64Array[]) => {
      const lp = softmaxRows64(z, 5, true);
      return -y.reduce((s, t, i) => s + lp[i * 5 + t], 0) / 4;
    };
    assert.ok(Math.abs(ce.loss - ceRef([logits])) < 1e-5);
    fdCheck("crossEntropy", [logits], ceRef, [ce.grad.toArray()]);
    const nl = nllLoss(lt, y);
    fdCheck("nllLoss", [logits], ([z]) => -y.reduce((s, t, i) => s + z[i * 5 + t], 0) / 4, [nl.grad.toArray()]);
    const target = randn(20);
    const ms = mseLoss(lt, Float32Array.from(target));
    const msRef = ([z]: Float64Array[]) => z.reduce((s, v, i) => s + (v - Math.fround(target[i])) ** 2, 0) / 20;
    assert.ok(Math.abs(ms.loss - msRef([logits])) < 1e-5);
    fdCheck("mseLoss", [logits], msRef, [ms.grad.toArray()]);
  });

  test("Sequential in reverse (Linear, GELU, Linear, LogSoftmax) with NLL on top", () => {
    manualSeed(7);
    const [B, K, H, N] = [4, 6, 8, 5];
    const seq = new Sequential([new Linear(K, H), new GELU(), new Linear(H, N), new LogSoftmax()]);
    const x = randn(B * K);
    const y = [0, 3, 4, 1];
    const xt = Tensor.from(x, [B, K]);
    const out = seq.forward(xt);
    const { grad } = nllLoss(out, y);
    const gx = seq.backward(grad).toArray();
    const l0 = seq.at(0) as Linear;
    const l2 = seq.at(2) as Linear;
    const ref = ([x, w0, b0, w2, b2]: Float64Array[]) => {
      const h = linear64(x, w0, b0, B, K, H).map(act64.gelu);
      const lp = softmaxRows64(linear64(h, w2, b2, B, H, N), N, true);
      return -y.reduce((s, t, i) => s + lp[i * N + t], 0) / B;
    };
    fdCheck("Sequential", [x, f64(l0.weight), f64(l0.bias!), f64(l2.weight), f64(l2.bias!)], ref, [gx, l0.weight.grad!.toArray(), l0.bias!.grad!.toArray(), l2.weight.grad!.toArray(), l2.bias!.grad!.toArray()]);
  });
});

describe("adapter layers: masked-matmul gradients and LoRA", () => {
  const [B, K, N] = [5, 12, 9];
  function shiraSetup(scale: number) {
    manualSeed(11);
    const model = new Sequential({ lin: new Linear(K, N) });
    const peft = getPeftModel(model, new ShiraConfig({ r: 2, targetModules: ["lin"], initWeights: false, randomSeed: 4 }), "a");
    peft.setScale("a", scale);
    const layer = peft.model.getSubmodule("lin") as ShiraLinear;
    return { peft, layer };
  }
  function shiraRef(layer: ShiraLinear, scale: number, x: Float64Array, c: Float64Array) {
    const a = layer.adapters.get("a")!;
    const idx = Array.from(a.indices.view);
    const w = Float64Array.from(layer.baseWeight());
    const b = Float64Array.from(layer.baseLayer.bias!.data);
    return ([x, v]: Float64Array[]) => {
      const weff = w.slice();
      idx.forEach((p, j) => (weff[p] += Math.fround(scale) * v[j]));
      return dot(linear64(x, weff, b, B, K, N), c);
    };
  }

  for (const mode of ["unfused", "fused"] as const) {
    test(`ShiraLinear ${mode} (input and values, scale 0.7); base weight gets no gradient`, () => {
      const { peft, layer } = shiraSetup(0.7);
      const restore = mode === "fused" ? peft.beginTraining() : null;
      if (mode === "fused") assert.deepEqual(peft.mergedAdapters, ["a"]);
      peft.train(true);
      const x = randn(B * K);
      const c = randn(B * N);
      const a = layer.adapters.get("a")!;
      const ref = shiraRef(layer, 0.7, x, c);
      const gx = runModule(peft, x, [B, K], c);
      fdCheck(`ShiraLinear ${mode}`, [x, Float64Array.from(a.weight.data)], ref, [gx, a.weight.grad!.toArray()]);
      assert.equal(layer.baseLayer.weight.grad, null, "no dense [out, in] gradient");
      restore?.();
      assert.deepEqual(peft.mergedAdapters, []);
    });
  }

  test("LoRA linear (input, A, B)", () => {
    manualSeed(12);
    const model = new Sequential({ lin: new Linear(K, N) });
    const lora = getLoraModel(model, new LoraConfig({ r: 3, loraAlpha: 6, targetModules: ["lin"] }), "a");
    const layer = lora.model.getSubmodule("lin") as LoraLinear;
    const { a, b } = layer.weights("a");
    setParam(b, randn(b.size, 0.5));
    lora.train(true);
    const x = randn(B * K);
    const c = randn(B * N);
    const gx = runModule(lora, x, [B, K], c);
    const w = f64(layer.baseLayer.weight);
    const bias = f64(layer.baseLayer.bias!);
    const ref = ([x, A, Bm]: Float64Array[]) => {
      const t = linear64(x, A, null, B, K, 3);
      const y = linear64(x, w, bias, B, K, N);
      const u = linear64(t, Bm, null, B, 3, N);
      return dot(y.map((v, i) => v + 2 * u[i]), c);
    };
    fdCheck("LoRA", [x, f64(a), f64(b)], ref, [gx, a.grad!.toArray(), b.grad!.toArray()]);
    assert.equal(layer.baseLayer.weight.grad, null);
  });
});

void Module;
