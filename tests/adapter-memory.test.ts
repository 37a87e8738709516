// Issue 13 (adapter memory): what one adapter value costs in wasm memory, byte for byte, against the formula that
// docs/shira-model.md ("Memory") documents:
//
//   at rest        8·nnz + 4·(rows + 1)   value f32 + position i32 per value, CSR row pointers per layer
//                                         (rows = out for a Linear / HalfLinear, in for a Conv1D)
//   fused          + 4·nnz                the saved base values (f32 base), or 16·⌈nnz/8⌉ (the u16 bits of a half base,
//                                         padded to 16 bytes)
//   training       + 4·nnz gradient + 8·nnz AdamW moments, + 4·nnz saved base values when fused (train()'s form):
//                  24 B per value fused, 20 B unfused
//   LoRA           4 B per parameter at rest, 16 B while training (+ the [B, r] product x·Aᵀ each layer keeps for
//                  its backward)
//
// Every figure is runtime().liveBytes (the bytes of live wasm buffers) before and after an operation.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { AdamW, Conv1D, HalfLinear, Linear, LoraConfig, ReLU, Sequential, ShiraConfig, ShiraLinear, Tensor, crossEntropy, getLoraModel, getPeftModel, manualSeed, runtime, type Module } from "../src/node.js";

const rt = runtime();

/** Bytes of one adapter on one layer at rest: value + position per entry, CSR row pointers per stored row. */
function restBytes(nnz: number, storedRows: number): number {
  return 8 * nnz + 4 * (storedRows + 1);
}

/** Bytes of the saved base values of a fused adapter: f32, or u16 bits padded to 16 bytes on a half base. */
function savedBytes(nnz: number, half: boolean): number {
  return half ? 16 * Math.ceil(nnz / 8) : 4 * nnz;
}

function layerOf(m: Module, name: string): ShiraLinear {
  const l = m.getSubmodule(name);
  assert.ok(l instanceof ShiraLinear, `${name} is a ShiraLinear`);
  return l as ShiraLinear;
}

describe("bytes per adapter value", () => {
  test("at rest 8 B per value + row pointers (Linear: out + 1, Conv1D: in + 1, HalfLinear: out + 1); fused + 4 B (half: 2 B, padded); freed exactly", () => {
    manualSeed(1);
    const start = rt.liveBytes;
    const model = new Sequential({ lin: new Linear(40, 24), conv: new Conv1D(30, 24), half: new HalfLinear(30, 20, { dtype: "bf16" }) });
    // (layer, r·(out + in), stored rows, half)
    const shapes: [string, number, number, boolean][] = [
      ["lin", 24 + 40, 24, false],
      ["conv", 30 + 24, 24, false],
      ["half", 20 + 30, 20, true],
    ];
    const bytesOf = (r: number, what: (nnz: number, rows: number, half: boolean) => number) => shapes.reduce((s, [, n, rows, half]) => s + what(r * n, rows, half), 0);

    let live = rt.liveBytes;
    const peft = getPeftModel(model, new ShiraConfig({ r: 2, targetModules: ["lin", "conv", "half"], randomSeed: 3 }), "a");
    for (const [name, n] of shapes) assert.equal(layerOf(peft.model, name).adapters.get("a")!.nnz, 2 * n, `${name}: nnz = r·(out + in)`);
    assert.equal(rt.liveBytes - live, bytesOf(2, (nnz, rows) => restBytes(nnz, rows)), "adapter a at rest");
    // 2·(64 + 54 + 50) = 336 values: 2,688 B of values and positions + (25 + 25 + 21)·4 = 284 B of row pointers
    assert.equal(rt.liveBytes - live, 2688 + 284);

    live = rt.liveBytes;
    peft.addAdapter("b", new ShiraConfig({ r: 3, targetModules: ["lin", "conv", "half"], randomSeed: 4, initWeights: false }));
    assert.equal(rt.liveBytes - live, bytesOf(3, (nnz, rows) => restBytes(nnz, rows)), "adapter b at rest");

    live = rt.liveBytes;
    peft.merge({ adapterNames: ["a"] });
    const savedA = bytesOf(2, (nnz, _rows, half) => savedBytes(nnz, half));
    // f32 layers 4·128 + 4·108, bf16 layer 100 values: 2·100 = 200 B padded to 208
    assert.equal(savedA, 512 + 432 + 208);
    assert.equal(rt.liveBytes - live, savedA, "merged: the saved base values");
    peft.unmerge();
    assert.equal(rt.liveBytes, live, "unmerged: saved values freed");

    peft.switchTo("b");
    assert.equal(rt.liveBytes - live, bytesOf(3, (nnz, _rows, half) => savedBytes(nnz, half)), "b fused");
    peft.switchTo("a");
    assert.equal(rt.liveBytes - live, savedA, "switched to a: only a's saved values");
    peft.switchToBase();
    assert.equal(rt.liveBytes, live, "back to the base");

    peft.deleteAdapter("b");
    assert.equal(live - rt.liveBytes, bytesOf(3, (nnz, rows) => restBytes(nnz, rows)), "deleteAdapter frees b exactly");
    peft.unload().free();
    assert.equal(rt.liveBytes, start, "nothing left after freeing the model");
  });

  test("training: 24 B per value fused (train()'s form), 20 B unfused; LoRA 16 B per parameter + its [B, r] activations", () => {
    const B = 8;
    const x = new Float32Array(B * 12).map((_, i) => Math.sin(i));
    const labels = Array.from({ length: B }, (_, i) => i % 5);
    const mlp = () => {
      manualSeed(2);
      return new Sequential({ fc1: new Linear(12, 16), act: new ReLU(), fc2: new Linear(16, 5) });
    };
    /** One optimizer step as train() runs it; returns liveBytes after it, relative to `base`. */
    const step = (m: { forward(x: Tensor): Tensor; backward(g: Tensor): Tensor }, opt: AdamW, after: () => void) => {
      opt.zeroGrad();
      const xt = Tensor.from(x, [B, 12]);
      const out = m.forward(xt);
      const { grad } = crossEntropy(out, labels);
      out.free();
      m.backward(grad).free();
      grad.free();
      xt.free();
      opt.step();
      after();
    };
    const nnz = 2 * (12 + 16) + 2 * (16 + 5); // 98 values (r = 2 on both layers)
    const rowPtrs = 4 * (16 + 1) + 4 * (5 + 1);
    const start = rt.liveBytes;

    for (const fused of [true, false]) {
      const model = mlp();
      const live = rt.liveBytes;
      const peft = getPeftModel(model, new ShiraConfig({ r: 2, targetModules: ["fc1", "fc2"], randomSeed: 5 }), "t");
      assert.equal(rt.liveBytes - live, 8 * nnz + rowPtrs, "at rest");
      const opt = new AdamW(peft.trainableParameters(), { lr: 1e-2 });
      const end = fused ? peft.beginTraining() : (peft.train(true), () => undefined);
      assert.equal(rt.liveBytes - live, (fused ? 12 : 8) * nnz + rowPtrs, fused ? "fused for training: + saved base values" : "unfused: nothing more");
      for (let i = 0; i < 2; i++) {
        step(peft, opt, () => peft.afterOptimizerStep());
        assert.equal(rt.liveBytes - live, (fused ? 24 : 20) * nnz + rowPtrs, `after step ${i + 1}: values, positions, gradients, AdamW moments${fused ? ", saved base values" : ""}`);
      }
      opt.free();
      for (const p of peft.trainableParameters()) {
        p.grad?.free();
        p.grad = null;
      }
      peft.model.clearCache();
      end();
      assert.equal(rt.liveBytes - live, 8 * nnz + rowPtrs, "after training: at rest again");
      peft.unload().free();
      assert.equal(rt.liveBytes, start);
    }

    // LoRA at the same parameter count: r·(in + out) per layer
    const model = mlp();
    const live = rt.liveBytes;
    const lora = getLoraModel(model, new LoraConfig({ r: 2, loraAlpha: 2, targetModules: ["fc1", "fc2"] }), "t");
    assert.equal(rt.liveBytes - live, 4 * nnz, "LoRA at rest: 4 B per parameter");
    lora.train(true);
    const opt = new AdamW(lora.trainableParameters(), { lr: 1e-2 });
    step(lora, opt, () => undefined);
    const acts = 2 * 4 * B * 2; // x·Aᵀ, [B, r] f32, kept by each of the 2 layers for its backward
    assert.equal(rt.liveBytes - live, 16 * nnz + acts, "LoRA after a step: 16 B per parameter + [B, r] per layer");
    opt.free();
    for (const p of lora.trainableParameters()) {
      p.grad?.free();
      p.grad = null;
    }
    model.clearCache();
    assert.equal(rt.liveBytes - live, 4 * nnz);
    model.free();
    assert.equal(rt.liveBytes, start);
  });
});
