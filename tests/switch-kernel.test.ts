// The single-pass switching kernels (assembly/switch.ts) through the runtime against a JS reference, and the
// rapid path they give ShiraModel.switchTo / fuse against the restore-then-fuse path, bit for bit.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { runtime, Linear, Sequential, ReLU, ShiraConfig, ShiraLinear, getPeftModel, manualSeed, type ShiraModel, type Module } from "../src/node.js";
import { sortedPositions } from "./helpers/random.js";

const rt = runtime();
const k = rt.k;

/** Deterministic generator (LCG), floats in [0, 1). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}


function randomValues(rnd: () => number, n: number): Float32Array {
  return Float32Array.from({ length: n }, () => (rnd() - 0.5) * 8 + 1e-3);
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** JS reference of a switch A -> B over the base `w0` with A fused at coefA: returns the weight and B's saved values. */
function referenceSwitch(w0: Float32Array, idxA: Int32Array, vA: Float32Array, coefA: number, idxB: Int32Array, vB: Float32Array, coefB: number) {
  const cA = Math.fround(coefA);
  const cB = Math.fround(coefB);
  const fusedA = w0.slice();
  const savedA = new Float32Array(idxA.length);
  for (let j = 0; j < idxA.length; j++) {
    savedA[j] = fusedA[idxA[j]];
    fusedA[idxA[j]] = Math.fround(savedA[j] + Math.fround(vA[j] * cA));
  }
  const after = w0.slice(); // restoring A gives the base back
  const savedB = new Float32Array(idxB.length);
  for (let j = 0; j < idxB.length; j++) {
    savedB[j] = w0[idxB[j]];
    after[idxB[j]] = Math.fround(savedB[j] + Math.fround(vB[j] * cB));
  }
  return { fusedA, savedA, after, savedB };
}

type SwitchKernel = "f32_switch_merge" | "f32_switch_merge_scalar";

function runSwitch(kernel: SwitchKernel, fusedA: Float32Array, idxA: Int32Array, savedA: Float32Array, idxB: Int32Array, vB: Float32Array, coefB: number) {
  return rt.scratch((tmp) => {
    const w = tmp.f32(fusedA);
    const ia = tmp.i32(Math.max(idxA.length, 1)).set(idxA);
    const sa = tmp.f32(Math.max(savedA.length, 1)).set(savedA);
    const ib = tmp.i32(Math.max(idxB.length, 1)).set(idxB);
    const vb = tmp.f32(Math.max(vB.length, 1)).set(vB);
    const sb = tmp.f32(Math.max(idxB.length, 1));
    k[kernel](w.ptr, ia.ptr, sa.ptr, idxA.length, ib.ptr, sb.ptr, vb.ptr, coefB, idxB.length);
    return { w: w.toArray(), saved: sb.toArray().subarray(0, idxB.length) };
  });
}

describe("f32_switch_merge / f32_gather_scatter_add against a JS reference", () => {
  test("random sets (independent, identical, nested, disjoint, empty), nnz 0..300 and a long list", () => {
    const rnd = lcg(2024);
    const cases: { nA: number; nB: number; m: number; mode: "any" | "same" | "nested" | "disjoint" }[] = [];
    for (let n = 0; n <= 65; n++) {
      const nB = Math.floor(rnd() * 66);
      cases.push({ nA: n, nB, m: 2 * (n + nB) + 1 + Math.floor(rnd() * 50), mode: "any" });
      cases.push({ nA: n, nB: n, m: n + 3, mode: "same" });
      cases.push({ nA: n, nB: Math.floor(n / 2), m: 3 * n + 4, mode: "nested" });
      cases.push({ nA: n, nB, m: n + nB + 5, mode: "disjoint" });
    }
    for (const n of [127, 128, 129, 511, 512, 513, 1024, 1025]) cases.push({ nA: n, nB: 1100 - n + 60, m: 5000, mode: "any" });
    cases.push({ nA: 20000, nB: 21000, m: 1_000_000, mode: "any" });
    cases.push({ nA: 5, nB: 20000, m: 200_000, mode: "any" });
    for (const c of cases) {
      const idxA = sortedPositions(rnd, c.nA, c.m);
      const inA = new Set(idxA);
      const idxB =
        c.mode === "same" ? idxA.slice() : sortedPositions(rnd, c.nB, c.m, c.mode === "nested" ? (p) => inA.has(p) : c.mode === "disjoint" ? (p) => !inA.has(p) : undefined);
      const vA = randomValues(rnd, idxA.length);
      const vB = randomValues(rnd, idxB.length);
      const w0 = randomValues(rnd, c.m);
      const coefA = rnd() * 3 - 1;
      const coefB = rnd() * 3 - 1;
      const ref = referenceSwitch(w0, idxA, vA, coefA, idxB, vB, coefB);
      const what = `nA ${c.nA}, nB ${idxB.length}, m ${c.m}, ${c.mode}`;
      for (const kernel of ["f32_switch_merge", "f32_switch_merge_scalar"] as const) {
        const got = runSwitch(kernel, ref.fusedA, idxA, ref.savedA, idxB, vB, coefB);
        assert.ok(sameBits(got.w, ref.after), `${kernel} weight: ${what}`);
        assert.ok(sameBits(got.saved, ref.savedB), `${kernel} saved values: ${what}`);
      }
      // first fuse of A: gather and add in one sweep
      for (const kernel of ["f32_gather_scatter_add", "f32_gather_scatter_add_scalar"] as const) {
        const got = rt.scratch((tmp) => {
          const w = tmp.f32(w0);
          const ia = tmp.i32(Math.max(idxA.length, 1)).set(idxA);
          const va = tmp.f32(Math.max(vA.length, 1)).set(vA);
          const sa = tmp.f32(Math.max(idxA.length, 1));
          k[kernel](w.ptr, ia.ptr, sa.ptr, va.ptr, coefA, idxA.length);
          return { w: w.toArray(), saved: sa.toArray().subarray(0, idxA.length) };
        });
        assert.ok(sameBits(got.w, ref.fusedA), `${kernel} weight: ${what}`);
        assert.ok(sameBits(got.saved, ref.savedA), `${kernel} saved values: ${what}`);
      }
    }
  });
});

// ------------------------------------------------------------------ the rapid path in ShiraModel

/** lin0 carries A, B, C; lin1 only A (old only / new only); lin2 B and C; lin3 none. */
function build(seed: number): ShiraModel {
  manualSeed(seed);
  const model = new Sequential({ lin0: new Linear(24, 40), act0: new ReLU(), lin1: new Linear(40, 32), act1: new ReLU(), lin2: new Linear(32, 48), lin3: new Linear(48, 8) });
  const peft = getPeftModel(model, new ShiraConfig({ r: 3, targetModules: ["lin0", "lin1"], randomSeed: 5, initWeights: false }), "A");
  peft.addAdapter("B", new ShiraConfig({ r: 4, targetModules: ["lin0", "lin2"], randomSeed: 6, initWeights: false }));
  peft.addAdapter("C", new ShiraConfig({ r: 2, targetModules: ["lin0", "lin2"], randomSeed: 7, initWeights: false }));
  return peft;
}

function weights(m: Module): Map<string, Float32Array> {
  return new Map(m.namedParameters().map(([n, p]) => [n, p.toArray()]));
}

function assertSameWeights(a: ShiraModel, b: ShiraModel, what: string): void {
  const wa = weights(a.model);
  const wb = weights(b.model);
  assert.deepEqual([...wa.keys()], [...wb.keys()]);
  for (const [n, v] of wa) assert.ok(sameBits(v, wb.get(n)!), `${what}: ${n}`);
  for (const [name, layer] of a.shiraLayers()) {
    const other = b.model.getSubmodule(name) as ShiraLinear;
    assert.deepEqual(layer.fusedEntries, other.fusedEntries, `${what}: fused stack of ${name}`);
    for (const [an, ad] of layer.adapters) {
      const od = other.adapters.get(an)!;
      assert.equal(ad.saved === null, od.saved === null, `${what}: ${name}.${an} saved presence`);
      if (ad.saved) assert.ok(sameBits(ad.saved.toArray(), od.saved!.toArray()), `${what}: ${name}.${an} saved values`);
    }
  }
}

describe("ShiraModel: the single-pass switch equals restore + fuse", () => {
  test("random switchTo / single fuse / setScale / merge / unmerge: fast path and slow path stay bit-identical", () => {
    const fast = build(1);
    const slow = build(1);
    const base = weights(fast.model);
    const names = ["A", "B", "C"];
    const rnd = lcg(77);
    const pick = () => names[Math.floor(rnd() * names.length)];
    let fastSwitches = 0;
    for (let i = 0; i < 600; i++) {
      const op = Math.floor(rnd() * 6);
      if (op <= 1) {
        const n = pick();
        fastSwitches += fast.mergedAdapters.length <= 1 ? 1 : 0;
        fast.switchTo(n);
        slow.switchTo(n, { safeMerge: true }); // safeMerge takes the restore-then-fuse path
      } else if (op === 2) {
        const e = [{ name: pick(), weight: rnd() * 3 - 1 }];
        fast.fuse(e);
        slow.fuse(e, { safeMerge: true });
      } else if (op === 3) {
        const n = pick();
        const s = [0.5, 1, 2.5][Math.floor(rnd() * 3)];
        fast.setScale(n, s);
        slow.setScale(n, s);
      } else if (op === 4) {
        const n = pick();
        fast.merge({ adapterNames: [n] }); // may stack a second adapter: the next switch takes the slow path
        slow.merge({ adapterNames: [n] });
      } else {
        fast.unmerge();
        slow.unmerge();
      }
      assert.deepEqual(fast.mergedAdapters, slow.mergedAdapters, `step ${i}`);
      assert.deepEqual(fast.activeAdapters, slow.activeAdapters, `step ${i}`);
      if (i % 7 === 0) assertSameWeights(fast, slow, `step ${i}`);
    }
    assert.ok(fastSwitches > 100, `the rapid path ran (${fastSwitches} times)`);
    assertSameWeights(fast, slow, "end");
    fast.unmerge();
    const after = weights(fast.model);
    for (const [n, v] of base) assert.ok(sameBits(after.get(n)!, v), `${n} is the base again, bit for bit`);
  });

  test("a layer with only the old or only the new adapter; switching to the fused adapter refreshes its coefficient", () => {
    const peft = build(3);
    const lin1 = peft.model.getSubmodule("lin1") as ShiraLinear; // only A
    const lin2 = peft.model.getSubmodule("lin2") as ShiraLinear; // B and C
    const base1 = lin1.baseLayer.weight.toArray();
    const base2 = lin2.baseLayer.weight.toArray();
    peft.switchTo("A");
    assert.deepEqual(lin1.fusedEntries, [{ name: "A", coef: 1 }]);
    assert.deepEqual(lin2.fusedEntries, []);
    peft.switchTo("B"); // lin1: old only -> base; lin2: new only
    assert.ok(sameBits(lin1.baseLayer.weight.toArray(), base1), "lin1 restored");
    assert.equal(lin1.adapters.get("A")!.saved, null);
    const b = lin2.adapters.get("B")!;
    const expect = base2.slice();
    const idx = b.indices.view;
    const v = b.weight.toArray();
    for (let j = 0; j < b.nnz; j++) expect[idx[j]] = Math.fround(base2[idx[j]] + v[j]);
    assert.ok(sameBits(lin2.baseLayer.weight.toArray(), expect), "lin2 = base + B");
    // the same adapter with another weight: W[idx] = saved + f32(v * coef)
    peft.fuse([{ name: "B", weight: 0.3 }]);
    const c = Math.fround(0.3);
    for (let j = 0; j < b.nnz; j++) expect[idx[j]] = Math.fround(base2[idx[j]] + Math.fround(v[j] * c));
    assert.ok(sameBits(lin2.baseLayer.weight.toArray(), expect), "lin2 = base + 0.3 B");
    assert.deepEqual(lin2.fusedEntries, [{ name: "B", coef: c }]);
    peft.unmerge();
    assert.ok(sameBits(lin2.baseLayer.weight.toArray(), base2), "lin2 base again");
  });

  test("a failed allocation during the rapid switch changes nothing and leaks nothing", () => {
    const peft = build(4);
    peft.switchTo("A");
    const before = weights(peft.model);
    const live = rt.liveBytes;
    const lin2 = peft.model.getSubmodule("lin2") as ShiraLinear;
    const orig = lin2.prepareSwitch.bind(lin2);
    lin2.prepareSwitch = () => {
      throw new Error("simulated out of memory");
    };
    try {
      assert.throws(() => peft.switchTo("B"), /simulated out of memory/);
    } finally {
      lin2.prepareSwitch = orig;
    }
    assert.equal(rt.liveBytes, live, "the buffers prepared for other layers were freed");
    assert.deepEqual(peft.mergedAdapters, ["A"]);
    assert.deepEqual(peft.activeAdapters, ["A"]);
    const after = weights(peft.model);
    for (const [n, v] of before) assert.ok(sameBits(after.get(n)!, v), `${n} unchanged`);
    peft.switchTo("B");
    assert.deepEqual(peft.mergedAdapters, ["B"]);
  });

  test("1,000 rapid switches do not leak wasm memory", () => {
    const peft = build(5);
    peft.switchTo("A");
    const live = rt.liveBytes;
    const blocks = rt.liveBlocks;
    for (let i = 0; i < 1000; i++) peft.switchTo(["B", "C", "A"][i % 3]);
    peft.switchTo("A"); // the same buffers are live as before the loop
    assert.equal(rt.liveBytes, live);
    assert.equal(rt.liveBlocks, blocks);
  });
});
