// Issue 12, state machine: random sequences of adapter operations on a small ShiraModel (PEFT's test MLP with 2-3
// adapters on random masks and non-zero values), with injected allocation faults and invalid calls, compared after
// EVERY step with a plain-JS reference model of the state:
//
// - names, active / fused adapters (with their weights), disabled flag, scales, each layer's adapters, positions,
//   values and fused stack;
// - every weight bit for bit against the effective weight computed in exact f32 arithmetic from the base weights
//   (`W[p] = f32(W[p] + f32(v · f32(weight · scale)))`, adapters in fusion order), base bits whenever nothing is fused;
// - the forward output on a fixed input within 1e-5 of a float64 reference (unfused sparse path or fused weights);
// - `runtime().liveBytes` / `liveBlocks` equal to the bytes the reference's adapters and fused stacks need, and equal
//   to the value measured the first time the model was in the same structural state.
//
// A failed call (typed error or injected OUT_OF_MEMORY) must leave the reference state unchanged.
// Seeded: STATE_SEED=<n> STATE_SEQS=<n> STATE_STEPS=<n> choose or scale a run; a failure prints the sequence's seed
// (replay it alone with STATE_ONLY=<seed>), the step and the last operations.
// Run: node --import tsx --test tests/state.property.test.ts

import { Sfc32 } from "./helpers/random.js";
import { test } from "node:test";
import assert from "node:assert/strict";
import { Linear, RuntimeError, ShiraConfig, ShiraError, ShiraLinear, StateError, ConfigError, Tensor, getPeftModel, runtime, type ShiraModel } from "../src/node.js";
import { fixtureModel, readFixture } from "./helpers/fixtures.js";

const rt = runtime();

const SEED = Number(process.env["STATE_SEED"] ?? 0x5eed12);
const SEQS = Number(process.env["STATE_SEQS"] ?? 300);
const STEPS = Number(process.env["STATE_STEPS"] ?? 100);
/** Replays one sequence by its own seed (printed on failure). */
const ONLY = process.env["STATE_ONLY"] === undefined ? null : Number(process.env["STATE_ONLY"]);

// ----------------------------------------------------------------------------------------------------------------
// seeded randomness (sfc32)
// ----------------------------------------------------------------------------------------------------------------

class Rng extends Sfc32 {
  shuffled<T>(a: readonly T[]): T[] {
    const b = a.slice();
    for (let i = b.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [b[i], b[j]] = [b[j], b[i]];
    }
    return b;
  }
  subset<T>(a: readonly T[], min = 0): T[] {
    const n = min + this.int(a.length - min + 1);
    return this.shuffled(a).slice(0, n);
  }
}

// ----------------------------------------------------------------------------------------------------------------
// the model: PEFT's MLP (lin0 10->20, lin1 20->40, lin2 40->30, lin3 30->10) with the fixture weights
// ----------------------------------------------------------------------------------------------------------------

const LAYERS = ["lin0", "lin1", "lin2", "lin3"] as const;
type LayerName = (typeof LAYERS)[number];
const DIMS: Record<LayerName, { out: number; in: number }> = { lin0: { out: 20, in: 10 }, lin1: { out: 40, in: 20 }, lin2: { out: 30, in: 40 }, lin3: { out: 10, in: 30 } };
const baseFile = readFixture("mlp", "model.safetensors");
const BASE_W = Object.fromEntries(LAYERS.map((l) => [l, baseFile.f32(`${l}.weight`)])) as Record<LayerName, Float32Array>;
const BASE_B = Object.fromEntries(LAYERS.map((l) => [l, baseFile.f32(`${l}.bias`)])) as Record<LayerName, Float32Array>;
const MODEL_BYTES = LAYERS.reduce((s, l) => s + 4 * (BASE_W[l].length + BASE_B[l].length), 0);
const MODEL_BLOCKS = 2 * LAYERS.length;
const X = readFixture("mlp", "cases.safetensors").f32("x"); // [4, 10]
const BATCH = 4;

// adapter names: ordinary ones and some that are valid but unusual
const NAMES = ["a", "b", "c", "d", "x.y", "__proto__", "constructor", "ü 1"];

/** An adapter as the reference knows it: positions (sorted `row * in + col`) and values per target layer. */
interface Spec {
  uid: number;
  name: string;
  r: number;
  initWeights: boolean;
  pos: Map<LayerName, Int32Array>;
  vals: Map<LayerName, Float32Array>;
}

interface Ref {
  specs: Map<string, Spec>; // creation order
  scale: Map<string, number>;
  active: string[];
  fused: { name: string; weight: number }[];
  disabled: boolean;
  wrapped: Set<LayerName>;
}

const cloneRef = (r: Ref): Ref => ({
  specs: new Map(r.specs),
  scale: new Map(r.scale),
  active: r.active.slice(),
  fused: r.fused.map((f) => ({ ...f })),
  disabled: r.disabled,
  wrapped: new Set(r.wrapped),
});

let specUid = 0;
function makeSpec(rng: Rng, name: string, targets: LayerName[]): Spec {
  const r = 1 + rng.int(2);
  const pos = new Map<LayerName, Int32Array>();
  const vals = new Map<LayerName, Float32Array>();
  for (const l of targets) {
    const { out, in: inn } = DIMS[l];
    const nnz = r * (out + inn);
    const chosen = new Set<number>();
    while (chosen.size < nnz) chosen.add(rng.int(out * inn));
    pos.set(l, Int32Array.from([...chosen].sort((x, y) => x - y)));
    vals.set(
      l,
      Float32Array.from({ length: nnz }, () => {
        const v = Math.fround(0.05 * rng.gauss());
        return v === 0 ? 0.01 : v;
      }),
    );
  }
  return { uid: ++specUid, name, r, initWeights: rng.chance(0.5), pos, vals };
}

function configOf(spec: Spec, targets: string[] = [...spec.pos.keys()]): ShiraConfig {
  return new ShiraConfig({
    r: spec.r,
    targetModules: targets,
    initWeights: spec.initWeights,
    maskFn: (layer) => {
      const p = spec.pos.get(layer.name as LayerName);
      if (!p) throw new Error(`mask asked for ${layer.name}`);
      return Int32Array.from(p);
    },
  });
}

type AdapterWeights = NonNullable<ReturnType<ShiraLinear["adapters"]["get"]>>;

function layerOf(peft: ShiraModel, l: LayerName): ShiraLinear | null {
  const m = peft.model.getSubmodule(l);
  return m instanceof ShiraLinear ? m : null;
}

/** Writes the spec's values into the adapter just created (outside any fault). */
function setValues(peft: ShiraModel, spec: Spec): void {
  for (const [l, v] of spec.vals) layerOf(peft, l)!.adapters.get(spec.name)!.weight.copyFrom(v);
}

// ----------------------------------------------------------------------------------------------------------------
// reference computations
// ----------------------------------------------------------------------------------------------------------------

/** The live weight of each layer: base, then every fused adapter on it in fusion order, in exact f32 arithmetic. */
function effective(ref: Ref, fused = ref.fused, start?: Record<LayerName, Float32Array>, onWrite?: (v: number) => void): Record<LayerName, Float32Array> {
  const out = {} as Record<LayerName, Float32Array>;
  for (const l of LAYERS) {
    const w = (start ?? BASE_W)[l].slice();
    for (const f of fused) {
      const s = ref.specs.get(f.name)!;
      const pos = s.pos.get(l);
      if (!pos) continue;
      const v = s.vals.get(l)!;
      const coef = Math.fround(f.weight * ref.scale.get(f.name)!);
      for (let j = 0; j < pos.length; j++) {
        const next = Math.fround(w[pos[j]] + Math.fround(v[j] * coef));
        w[pos[j]] = next;
        onWrite?.(next);
      }
    }
    out[l] = w;
  }
  return out;
}

const layerFused = (ref: Ref, l: LayerName) => ref.fused.some((f) => ref.specs.get(f.name)!.pos.has(l));

/** float64 forward of the MLP (ReLU between layers, LogSoftmax at the end) with the reference's weights. */
function refForward(ref: Ref, eff: Record<LayerName, Float32Array>, baseOnly = false): Float64Array | null {
  let h: Float64Array = Float64Array.from(X);
  for (let li = 0; li < LAYERS.length; li++) {
    const l = LAYERS[li];
    const { out, in: inn } = DIMS[l];
    const fusedHere = !baseOnly && layerFused(ref, l);
    const W = fusedHere ? eff[l] : BASE_W[l];
    for (const v of W) if (!(Math.abs(v) <= 4)) return null; // overflowed or huge: not compared
    const extra: { pos: Int32Array; v: Float32Array; s: number }[] = [];
    if (!baseOnly && !fusedHere && !ref.disabled && ref.wrapped.has(l)) {
      for (const n of ref.active) {
        const sp = ref.specs.get(n)!;
        const pos = sp.pos.get(l);
        if (!pos) continue;
        const s = Math.fround(ref.scale.get(n)!);
        if (Math.abs(s) > 8) return null;
        extra.push({ pos, v: sp.vals.get(l)!, s });
      }
    }
    const y = new Float64Array(BATCH * out);
    for (let b = 0; b < BATCH; b++) {
      for (let o = 0; o < out; o++) {
        let acc = BASE_B[l][o];
        for (let i = 0; i < inn; i++) acc += W[o * inn + i] * h[b * inn + i];
        y[b * out + o] = acc;
      }
      for (const e of extra) {
        for (let j = 0; j < e.pos.length; j++) {
          const o = Math.floor(e.pos[j] / inn);
          const i = e.pos[j] - o * inn;
          y[b * out + o] += e.s * e.v[j] * h[b * inn + i];
        }
      }
    }
    if (li < LAYERS.length - 1) for (let k = 0; k < y.length; k++) y[k] = Math.max(0, y[k]);
    else {
      for (let b = 0; b < BATCH; b++) {
        let m = -Infinity;
        for (let o = 0; o < out; o++) m = Math.max(m, y[b * out + o]);
        let s = 0;
        for (let o = 0; o < out; o++) s += Math.exp(y[b * out + o] - m);
        const lse = m + Math.log(s);
        for (let o = 0; o < out; o++) y[b * out + o] -= lse;
      }
    }
    h = y;
  }
  return h;
}

function expectedMemory(ref: Ref): { bytes: number; blocks: number } {
  let bytes = MODEL_BYTES;
  let blocks = MODEL_BLOCKS;
  for (const s of ref.specs.values()) {
    for (const [l, p] of s.pos) {
      bytes += 4 * (2 * p.length + DIMS[l].out + 1); // indices, values; CSR row pointers
      blocks += 3;
    }
  }
  for (const f of ref.fused) {
    for (const p of ref.specs.get(f.name)!.pos.values()) {
      bytes += 4 * p.length; // gathered base values
      blocks += 1;
    }
  }
  return { bytes, blocks };
}

/** The structural state (which adapter objects exist, which are fused on which layers): equal keys, equal memory. */
const structureKey = (ref: Ref) => JSON.stringify([[...ref.specs.values()].map((s) => s.uid).sort((a, b) => a - b), ref.fused.map((f) => ref.specs.get(f.name)!.uid)]);

function sameF32(a: Float32Array, b: Float32Array): number {
  // index of the first difference (bit for bit, any NaN equal to any NaN), or -1
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < a.length; i++) if (ua[i] !== ub[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return i;
  return -1;
}

function forwardOut(peft: ShiraModel): Float32Array {
  const x = Tensor.from(X, [BATCH, 10]);
  try {
    const y = peft.forward(x);
    const out = y.toArray();
    y.free();
    return out;
  } finally {
    x.free();
  }
}

/**
 * The same forward, layer by layer, freeing every intermediate even when a layer throws (the fixture MLP's own
 * forward does not free its last intermediate when a layer fails, which would count as a leak under a fault).
 */
function forwardSafe(peft: ShiraModel): Float32Array {
  let h = Tensor.from(X, [BATCH, 10]);
  try {
    for (const n of ["lin0", "relu", "lin1", "relu", "lin2", "relu", "lin3", "sm"]) {
      const next = peft.model.getSubmodule(n).forward(h);
      h.free();
      h = next;
    }
    return h.toArray();
  } finally {
    h.free();
  }
}

function assertForward(got: Float32Array, want: Float64Array, what: string): void {
  assert.equal(got.length, want.length);
  for (let i = 0; i < got.length; i++) {
    if (!(Math.abs(got[i] - want[i]) <= 1e-5)) assert.fail(`${what}: forward[${i}] = ${got[i]}, float64 reference ${want[i]}`);
  }
}

interface Ctx {
  L0: number;
  B0: number;
  memByStructure: Map<string, number>;
}

/** Compares everything observable with the reference. */
function verify(peft: ShiraModel, ref: Ref, ctx: Ctx, where: string): void {
  assert.deepEqual(peft.adapterNames, [...ref.specs.keys()], `${where}: adapterNames`);
  assert.deepEqual(peft.activeAdapters, ref.active, `${where}: activeAdapters`);
  assert.deepEqual(peft.fusedAdapters, ref.fused, `${where}: fusedAdapters`);
  assert.deepEqual(peft.mergedAdapters, ref.fused.map((f) => f.name), `${where}: mergedAdapters`);
  assert.equal(peft.merged, ref.fused.length > 0, `${where}: merged`);
  assert.equal(peft.adaptersDisabled, ref.disabled, `${where}: adaptersDisabled`);
  assert.ok(!ref.disabled || ref.fused.length === 0, `${where}: reference invariant: disabled implies nothing fused`);
  for (const [n, s] of ref.scale) assert.equal(peft.getScale(n), s, `${where}: getScale(${n})`);
  const eff = effective(ref);
  for (const l of LAYERS) {
    const layer = layerOf(peft, l);
    assert.equal(layer !== null, ref.wrapped.has(l), `${where}: ${l} wrapped`);
    const lin = (layer ? layer.baseLayer : peft.model.getSubmodule(l)) as Linear;
    const w = lin.weight.toArray();
    const d = sameF32(w, eff[l]);
    if (d >= 0) assert.fail(`${where}: ${l}.weight[${d}] = ${w[d]}, reference ${eff[l][d]} (fused ${JSON.stringify(ref.fused)})`);
    if (ref.fused.length === 0) assert.equal(sameF32(w, BASE_W[l]), -1, `${where}: ${l} base weights bit-identical when nothing is fused`);
    assert.equal(sameF32(lin.bias!.toArray(), BASE_B[l]), -1, `${where}: ${l}.bias`);
    if (!layer) continue;
    const here = [...ref.specs.values()].filter((s) => s.pos.has(l));
    assert.deepEqual(layer.adapterNames(), here.map((s) => s.name), `${where}: ${l} adapters`);
    assert.deepEqual(layer.activeAdapters, ref.active, `${where}: ${l} activeAdapters`);
    assert.equal(layer.disabled, ref.disabled, `${where}: ${l} disabled`);
    const stack = ref.fused.filter((f) => ref.specs.get(f.name)!.pos.has(l)).map((f) => ({ name: f.name, coef: Math.fround(f.weight * ref.scale.get(f.name)!) }));
    assert.deepEqual(
      layer.fusedEntries.map((e) => ({ ...e })),
      stack,
      `${where}: ${l} fused stack`,
    );
    for (const s of here) {
      const a: AdapterWeights = layer.adapters.get(s.name)!;
      assert.deepEqual(a.indices.toArray(), s.pos.get(l), `${where}: ${l}.${s.name} positions`);
      assert.equal(sameF32(a.weight.toArray(), s.vals.get(l)!), -1, `${where}: ${l}.${s.name} values`);
      assert.equal(a.saved !== null, stack.some((e) => e.name === s.name), `${where}: ${l}.${s.name} saved buffer iff fused`);
      assert.equal(a.scaling, ref.scale.get(s.name), `${where}: ${l}.${s.name} scaling`);
      assert.equal(a.weight.requiresGrad, ref.active.includes(s.name), `${where}: ${l}.${s.name} trainable iff active`);
    }
  }
  // memory: exactly what the reference's adapters and fused stacks need, and the same in the same structure
  const mem = expectedMemory(ref);
  assert.equal(rt.liveBytes - ctx.L0, mem.bytes, `${where}: liveBytes`);
  assert.equal(rt.liveBlocks - ctx.B0, mem.blocks, `${where}: liveBlocks`);
  const key = structureKey(ref);
  const seen = ctx.memByStructure.get(key);
  if (seen === undefined) ctx.memByStructure.set(key, rt.liveBytes);
  else assert.equal(rt.liveBytes, seen, `${where}: liveBytes differs from the first time in this structural state`);
  // forward on the fixed input
  const want = refForward(ref, eff);
  const got = forwardOut(peft);
  if (want) assertForward(got, want, where);
  assert.equal(rt.liveBytes - ctx.L0, mem.bytes, `${where}: forward leaked`);
}

// ----------------------------------------------------------------------------------------------------------------
// operations
// ----------------------------------------------------------------------------------------------------------------

type Entry = { name: string; weight?: number };
type Op =
  | { k: "setAdapter"; names: string | string[] }
  | { k: "switchTo"; name: string; safe: boolean }
  | { k: "switchToBase" }
  | { k: "fuse"; entries: Entry[]; safe: boolean }
  | { k: "merge"; names?: string[]; safe: boolean }
  | { k: "unmerge" }
  | { k: "setScale"; name: string; scale: number }
  | { k: "disableLayers" }
  | { k: "enableLayers" }
  | { k: "scope"; refused: Op[]; innerScale: { name: string; scale: number } | null; nested: boolean; throws: boolean }
  | { k: "asyncScope"; refused: Op }
  | { k: "add"; spec: Spec; targets?: string[] }
  | { k: "delete"; name: string }
  | { k: "badAddName"; name: string };

/** The outcome the reference predicts: a new state, or a typed error. */
type Pred = { ok: Ref } | { code: string; cls: Function };
const err = (code: string, cls: Function = StateError): Pred => ({ code, cls });
const notFound = err("ADAPTER_NOT_FOUND");
const invalid = err("CONFIG_INVALID", ConfigError);
const inScope = err("ADAPTER_STATE");

/** Whether fusing `list` on top of `start` writes only finite values (safeMerge). */
function finiteFusion(ref: Ref, list: { name: string; weight: number }[], start: Record<LayerName, Float32Array>): boolean {
  let ok = true;
  effective(ref, list, start, (v) => {
    if (!Number.isFinite(v)) ok = false;
  });
  return ok;
}

function predict(ref: Ref, op: Op, scopes: number): Pred {
  const has = (n: string) => ref.specs.has(n);
  const next = cloneRef(ref);
  switch (op.k) {
    case "setAdapter": {
      const list = typeof op.names === "string" ? [op.names] : op.names;
      if (list.length === 0) return invalid;
      if (!list.every(has)) return notFound;
      if (new Set(list).size !== list.length) return invalid;
      if (scopes) return inScope;
      next.fused = [];
      next.disabled = false;
      next.active = list.slice();
      return { ok: next };
    }
    case "switchTo":
      return predict(ref, { k: "fuse", entries: [{ name: op.name, weight: 1 }], safe: op.safe }, scopes);
    case "fuse": {
      if (scopes) return inScope;
      if (op.entries.length === 0) return invalid;
      const list = op.entries.map((e) => ({ name: e.name, weight: e.weight ?? 1 }));
      for (const e of list) {
        if (!has(e.name)) return notFound;
        if (!Number.isFinite(e.weight)) return invalid;
      }
      if (new Set(list.map((e) => e.name)).size !== list.length) return invalid;
      if (op.safe && !finiteFusion(ref, list, BASE_W)) return err("NONFINITE");
      next.fused = list;
      next.active = list.map((e) => e.name);
      next.disabled = false;
      return { ok: next };
    }
    case "merge": {
      if (scopes) return inScope;
      const names = op.names ?? ref.active;
      if (!names.every(has)) return notFound;
      const todo = [...new Set(names)].filter((n) => !ref.fused.some((f) => f.name === n)).map((name) => ({ name, weight: 1 }));
      if (op.safe && !finiteFusion(ref, todo, effective(ref))) return err("NONFINITE");
      next.fused = ref.fused.concat(todo);
      next.disabled = false;
      return { ok: next };
    }
    case "unmerge":
      next.fused = [];
      return { ok: next };
    case "switchToBase":
      if (scopes) return inScope;
      next.fused = [];
      next.disabled = true;
      return { ok: next };
    case "disableLayers":
      next.fused = [];
      next.disabled = true;
      return { ok: next };
    case "enableLayers":
      if (scopes) return inScope;
      next.disabled = false;
      return { ok: next };
    case "setScale":
      if (!has(op.name)) return notFound;
      if (!Number.isFinite(op.scale) || !Number.isFinite(Math.fround(op.scale))) return invalid;
      next.scale.set(op.name, op.scale);
      return { ok: next };
    case "scope":
    case "asyncScope": {
      if (op.k === "scope" && op.innerScale) next.scale.set(op.innerScale.name, op.innerScale.scale);
      return { ok: next };
    }
    case "add": {
      if (has(op.spec.name)) return err("ADAPTER_EXISTS");
      if (op.targets && !op.targets.some((t) => (LAYERS as readonly string[]).includes(t))) return err("CONFIG_NO_TARGET", ConfigError);
      next.specs.set(op.spec.name, op.spec);
      next.scale.set(op.spec.name, 1);
      for (const l of op.spec.pos.keys()) next.wrapped.add(l);
      return { ok: next };
    }
    case "badAddName":
      return invalid;
    case "delete": {
      if (!has(op.name)) return notFound;
      if (scopes) return inScope;
      next.fused = ref.fused.filter((f) => f.name !== op.name);
      next.specs.delete(op.name);
      next.scale.delete(op.name);
      next.active = ref.active.filter((n) => n !== op.name);
      if (next.active.length === 0 && next.specs.size > 0) next.active = [[...next.specs.keys()][0]];
      return { ok: next };
    }
  }
}

/** Runs one synchronous operation on the model. */
function execSync(peft: ShiraModel, op: Exclude<Op, { k: "scope" | "asyncScope" }>): void {
  switch (op.k) {
    case "setAdapter":
      return peft.setAdapter(op.names);
    case "switchTo":
      return peft.switchTo(op.name, { safeMerge: op.safe });
    case "switchToBase":
      return peft.switchToBase();
    case "fuse":
      return peft.fuse(op.entries, { safeMerge: op.safe });
    case "merge":
      return peft.merge({ adapterNames: op.names, safeMerge: op.safe });
    case "unmerge":
      return peft.unmerge();
    case "setScale":
      return peft.setScale(op.name, op.scale);
    case "disableLayers":
      return peft.disableAdapterLayers();
    case "enableLayers":
      return peft.enableAdapterLayers();
    case "add":
      return peft.addAdapter(op.spec.name, configOf(op.spec, op.targets));
    case "badAddName":
      return peft.addAdapter(op.name, new ShiraConfig({ r: 1, targetModules: ["lin0"] }));
    case "delete":
      return peft.deleteAdapter(op.name);
  }
}

/** Calls refused inside a disableAdapters scope (counted for the diagnostics). */
let refusedInScopes = 0;

/** Runs one operation on the model. */
async function exec(peft: ShiraModel, op: Op, ref: Ref, where: string): Promise<void> {
  switch (op.k) {
    case "scope": {
      const boom = new Error("boom from the scope");
      const baseOut = refForward({ ...ref, fused: [], disabled: true }, BASE_W, true)!;
      const inner = () => {
        // the base model: no fused value, adapters disabled, the base output (this forward may hit the fault)
        const got = forwardSafe(peft);
        assertForward(got, baseOut, `${where} (inside disableAdapters)`);
        assert.equal(peft.adaptersDisabled, true);
        assert.deepEqual(peft.mergedAdapters, []);
        for (const l of LAYERS) {
          const layer = layerOf(peft, l);
          const lin = (layer ? layer.baseLayer : peft.model.getSubmodule(l)) as Linear;
          assert.equal(sameF32(lin.weight.toArray(), BASE_W[l]), -1, `${where}: ${l} base weights inside disableAdapters`);
        }
        for (const r of op.refused) {
          const p = predict(ref, r, 1);
          assert.ok("code" in p, `${where}: refused op predicted ok`);
          try {
            execSync(peft, r as Exclude<Op, { k: "scope" | "asyncScope" }>);
            assert.fail(`${where}: ${JSON.stringify(r)} inside disableAdapters did not throw`);
          } catch (e) {
            assert.ok(e instanceof p.cls && (e as ShiraError).code === p.code, `${where}: ${JSON.stringify(r)} inside disableAdapters: expected ${p.code}, got ${String(e)}`);
            refusedInScopes++;
          }
        }
        if (op.nested) assert.equal(peft.disableAdapters(() => 42), 42);
        if (op.innerScale) peft.setScale(op.innerScale.name, op.innerScale.scale);
        if (op.throws) throw boom;
        return 7;
      };
      let threw: unknown = null;
      let r: unknown;
      try {
        r = peft.disableAdapters(inner);
      } catch (e) {
        threw = e;
      }
      if (threw !== null && threw !== boom) throw threw;
      if (op.throws) assert.equal(threw, boom, `${where}: the scope rethrows the callback's error`);
      else assert.equal(r, 7);
      return;
    }
    case "asyncScope": {
      const boom = new Error("async boom");
      const p = peft.disableAdapters(async () => {
        await null;
        assert.equal(peft.adaptersDisabled, true);
        throw boom;
      });
      // while the promise is pending, state changes are refused
      assert.equal(peft.adaptersDisabled, true);
      const pr = predict(ref, op.refused, 1) as { code: string; cls: Function };
      assert.throws(
        () => execSync(peft, op.refused as Exclude<Op, { k: "scope" | "asyncScope" }>),
        (e: unknown) => e instanceof pr.cls && (e as ShiraError).code === pr.code,
        `${where}: ${JSON.stringify(op.refused)} during an async disableAdapters`,
      );
      refusedInScopes++;
      await assert.rejects(p, (e: unknown) => e === boom);
      return;
    }
    default:
      return execSync(peft, op);
  }
}

// op generation ------------------------------------------------------------------------------------------------

const WEIGHTS = [1, 1, 0.5, -0.7, 0.3, 2, 0, -1.5];
const SCALES = [1, 0.5, -1, 2, 0, 0.25, -0.3, 3];

function weightOf(rng: Rng): number | undefined {
  const x = rng.float();
  if (x < 0.15) return undefined;
  if (x < 0.75) return rng.pick(WEIGHTS);
  if (x < 0.95) return Math.round((rng.float() * 4 - 2) * 1e6) / 1e6;
  return rng.pick([1e38, 3e38, -2e38, 1e39, 1e30]); // finite doubles that overflow f32 (with values ~0.05: sometimes)
}

function scaleOf(rng: Rng): number {
  const x = rng.float();
  if (x < 0.7) return rng.pick(SCALES);
  if (x < 0.97) return rng.float() * 6 - 3;
  return rng.pick([1e20, -3e37, 7e38]); // huge but finite in f32
}

/** A refused-inside-a-scope call (valid otherwise). */
function refusedOp(rng: Rng, names: string[]): Op {
  const n = rng.pick(names);
  return rng.pick<Op>([
    { k: "setAdapter", names: n },
    { k: "switchTo", name: n, safe: false },
    { k: "fuse", entries: [{ name: n }], safe: rng.chance(0.5) },
    { k: "merge", safe: false },
    { k: "switchToBase" },
    { k: "enableLayers" },
    { k: "delete", name: n },
  ]);
}

function genOp(rng: Rng, ref: Ref): Op {
  const names = [...ref.specs.keys()];
  const unknown = rng.pick(["nope", "A", "a ", "default", ...NAMES.filter((n) => !ref.specs.has(n))]);
  const free = NAMES.filter((n) => !ref.specs.has(n));
  if (names.length === 0) {
    const name = rng.pick(free);
    return { k: "add", spec: makeSpec(rng, name, rng.subset(LAYERS, 1)) };
  }
  const any = () => rng.pick(names);
  const x = rng.float() * 100;
  if (x < 10) return { k: "setAdapter", names: any() };
  if (x < 17) return { k: "setAdapter", names: rng.subset(names, Math.min(2, names.length)) };
  if (x < 27) return { k: "switchTo", name: any(), safe: rng.chance(0.3) };
  if (x < 31) return { k: "switchToBase" };
  if (x < 41) {
    const entries = rng.subset(names, 1).map((name): Entry => {
      const w = weightOf(rng);
      return w === undefined ? { name } : { name, weight: w };
    });
    return { k: "fuse", entries, safe: rng.chance(0.4) };
  }
  if (x < 48) return { k: "merge", names: rng.chance(0.5) ? undefined : rng.subset(names, 1), safe: rng.chance(0.5) };
  if (x < 53) return { k: "unmerge" };
  if (x < 60) return { k: "setScale", name: any(), scale: scaleOf(rng) };
  if (x < 62) return { k: "disableLayers" };
  if (x < 64) return { k: "enableLayers" };
  if (x < 70) {
    return {
      k: "scope",
      refused: Array.from({ length: rng.int(3) }, () => refusedOp(rng, names)),
      innerScale: rng.chance(0.3) ? { name: any(), scale: rng.pick(SCALES) } : null,
      nested: rng.chance(0.3),
      throws: rng.chance(0.5),
    };
  }
  if (x < 72) return { k: "asyncScope", refused: refusedOp(rng, names) };
  if (x < 78 && free.length > 0 && names.length < 4) return { k: "add", spec: makeSpec(rng, rng.pick(free), rng.subset(LAYERS, 1)) };
  if (x < 82 && names.length > 1) return { k: "delete", name: any() };
  if (x < 83) return { k: "delete", name: any() }; // possibly the last one
  // invalid calls
  const bad: Op[] = [
    { k: "setAdapter", names: unknown },
    { k: "setAdapter", names: [] },
    { k: "setAdapter", names: [any(), unknown] },
    { k: "setAdapter", names: [names[0], names[0]] },
    { k: "switchTo", name: unknown, safe: false },
    { k: "fuse", entries: [], safe: false },
    { k: "fuse", entries: [{ name: any(), weight: NaN }], safe: rng.chance(0.5) },
    { k: "fuse", entries: [{ name: any(), weight: rng.pick([Infinity, -Infinity]) }], safe: false },
    { k: "fuse", entries: [{ name: any() }, { name: unknown }], safe: false },
    { k: "fuse", entries: [{ name: names[0] }, { name: names[0], weight: 0.5 }], safe: false },
    { k: "merge", names: [unknown], safe: rng.chance(0.5) },
    { k: "setScale", name: any(), scale: rng.pick([NaN, Infinity, -Infinity, 1e39, -4e38]) },
    { k: "setScale", name: unknown, scale: 1 },
    { k: "delete", name: unknown },
    { k: "add", spec: makeSpec(rng, any(), ["lin0"]) },
    { k: "add", spec: makeSpec(rng, rng.pick(free.length ? free : ["zz"]), ["lin1"]), targets: ["nomatch"] },
    { k: "badAddName", name: rng.pick(["", "a/b", "..", ".hidden", " x", "nul\0", "c\\d"]) },
  ];
  return rng.pick(bad);
}

const describeOp = (op: Op): string =>
  JSON.stringify(op, (k, v) => {
    if (k === "spec") return { name: v.name, r: v.r, targets: [...(v as Spec).pos.keys()] };
    if (typeof v === "number" && !Number.isFinite(v)) return String(v);
    return v;
  });

// ----------------------------------------------------------------------------------------------------------------
// the property
// ----------------------------------------------------------------------------------------------------------------

interface Stats {
  steps: number;
  armed: number;
  fired: number;
  oom: number;
  ok: number;
  errors: Map<string, number>;
  ops: Map<string, number>;
}

async function runSequence(seed: number, stats: Stats): Promise<void> {
  const rng = new Rng(seed);
  const history: string[] = [];
  const ctx: Ctx = { L0: rt.liveBytes, B0: rt.liveBlocks, memByStructure: new Map() };
  const model = fixtureModel();
  assert.equal(rt.liveBytes - ctx.L0, MODEL_BYTES, "model bytes");
  // setup: 2-3 adapters on random masks with non-zero values
  const n0 = 2 + rng.int(2);
  const names0 = rng.shuffled(NAMES).slice(0, n0);
  const specs = names0.map((n) => makeSpec(rng, n, rng.subset(LAYERS, 1)));
  const peft = getPeftModel(model, configOf(specs[0]), specs[0].name);
  setValues(peft, specs[0]);
  for (const s of specs.slice(1)) {
    peft.addAdapter(s.name, configOf(s));
    setValues(peft, s);
  }
  let ref: Ref = {
    specs: new Map(specs.map((s) => [s.name, s])),
    scale: new Map(specs.map((s) => [s.name, 1])),
    active: [specs[0].name],
    fused: [],
    disabled: false,
    wrapped: new Set(specs.flatMap((s) => [...s.pos.keys()])),
  };
  const fail = (step: number, e: unknown): never => {
    const msg = e instanceof Error ? e.message : String(e);
    throw new Error(
      `state property failed: STATE_SEED=${SEED} sequence seed ${seed} (replay: STATE_ONLY=${seed}), step ${step}\n${msg}\n` +
        `last operations:\n  ${history.slice(-15).join("\n  ")}`,
      { cause: e },
    );
  };
  try {
    verify(peft, ref, ctx, "after setup");
  } catch (e) {
    fail(-1, e);
  }
  for (let step = 0; step < STEPS; step++) {
    const op = genOp(rng, ref);
    const k = rng.chance(0.3) ? 1 + rng.int(6) : 0;
    history.push(`${step}: ${k ? `failAfter(${k}) ` : ""}${describeOp(op)}`);
    stats.steps++;
    stats.ops.set(op.k, (stats.ops.get(op.k) ?? 0) + 1);
    try {
      const pred = predict(ref, op, 0);
      const a0 = rt.allocations;
      if (k) {
        stats.armed++;
        rt.failAfter(k);
      }
      let res: unknown = null;
      try {
        await exec(peft, op, ref, `step ${step}`);
      } catch (e) {
        res = e ?? new Error("thrown null");
      } finally {
        rt.failAfter(null);
      }
      const fired = k > 0 && rt.allocations - a0 >= k;
      if (fired) stats.fired++;
      if (res instanceof RuntimeError && res.code === "OUT_OF_MEMORY") {
        assert.ok(fired, `OUT_OF_MEMORY without an injected fault: ${res.message}`);
        assert.ok("ok" in pred, `expected ${"code" in pred ? pred.code : ""}, got OUT_OF_MEMORY (validation must come before allocation)`);
        assert.equal((res as ShiraError).details["injected"], true);
        stats.oom++;
        stats.errors.set("OUT_OF_MEMORY", (stats.errors.get("OUT_OF_MEMORY") ?? 0) + 1);
        history[history.length - 1] += "  -> OUT_OF_MEMORY";
        // the reference state is unchanged
      } else if ("code" in pred) {
        assert.ok(res instanceof pred.cls && (res as ShiraError).code === pred.code, `expected ${pred.cls.name} ${pred.code}, got ${res === null ? "success" : String((res as Error)?.stack ?? res)}`);
        assert.ok(!fired, "a fault fired during a call that failed validation");
        stats.errors.set(pred.code, (stats.errors.get(pred.code) ?? 0) + 1);
        history[history.length - 1] += `  -> ${pred.code}`;
      } else {
        if (res !== null) throw res;
        assert.ok(!fired, "an injected fault fired but the call succeeded (an allocation failure was swallowed)");
        stats.ok++;
        ref = pred.ok;
        if (op.k === "add") setValues(peft, op.spec);
      }
      verify(peft, ref, ctx, `step ${step}`);
    } catch (e) {
      fail(step, e);
    }
  }
  // freeing the model returns every byte
  model.free();
  assert.equal(rt.liveBytes, ctx.L0, `sequence ${seed}: bytes left after freeing the model`);
  assert.equal(rt.liveBlocks, ctx.B0, `sequence ${seed}: blocks left after freeing the model`);
}

test(`random operation sequences (${SEQS} x ${STEPS} steps) agree with the reference model after every step`, async (t) => {
  const stats: Stats = { steps: 0, armed: 0, fired: 0, oom: 0, ok: 0, errors: new Map(), ops: new Map() };
  const t0 = performance.now();
  refusedInScopes = 0;
  if (ONLY !== null) await runSequence(ONLY, stats);
  else for (let s = 0; s < SEQS; s++) await runSequence((SEED * 1_000_003 + s) >>> 0, stats);
  stats.errors.set("ADAPTER_STATE (inside scopes)", refusedInScopes);
  const ms = performance.now() - t0;
  t.diagnostic(`seed ${ONLY ?? SEED}: ${stats.steps} steps in ${ONLY !== null ? 1 : SEQS} sequences, ${(ms / 1000).toFixed(1)} s`);
  t.diagnostic(`faults: ${stats.armed} armed, ${stats.fired} fired (${stats.oom} calls failed with OUT_OF_MEMORY)`);
  t.diagnostic(`outcomes: ${stats.ok} succeeded; errors ${JSON.stringify(Object.fromEntries(stats.errors))}`);
  t.diagnostic(`operations: ${JSON.stringify(Object.fromEntries(stats.ops))}`);
  if (ONLY !== null) return;
  assert.ok(stats.steps >= SEQS * STEPS);
  if (SEQS * STEPS >= 20_000) {
    assert.ok(stats.fired >= 500, `only ${stats.fired} injected faults fired`);
    for (const c of ["ADAPTER_NOT_FOUND", "CONFIG_INVALID", "ADAPTER_STATE (inside scopes)", "NONFINITE", "ADAPTER_EXISTS", "CONFIG_NO_TARGET"]) {
      assert.ok((stats.errors.get(c) ?? 0) > 0, `never saw ${c}`);
    }
  }
});

// ----------------------------------------------------------------------------------------------------------------
// cases this fuzzer found (fixed; kept as regression tests)
// ----------------------------------------------------------------------------------------------------------------

test(
  "found: ShiraLinear.forward frees its output when the sparse kernel's scratch allocation fails",
  () => {
    const peft = getPeftModel(fixtureModel(), new ShiraConfig({ r: 1, targetModules: ["lin0"], randomSeed: 3, initWeights: false }), "a");
    const lin0 = peft.model.getSubmodule("lin0");
    const x = Tensor.from(X, [BATCH, 10]);
    try {
      for (let k = 1; k <= 3; k++) {
        const before = rt.liveBytes;
        rt.failAfter(k);
        try {
          lin0.forward(x).free();
        } catch (e) {
          assert.ok(e instanceof RuntimeError && e.code === "OUT_OF_MEMORY", String(e));
        } finally {
          rt.failAfter(null);
        }
        assert.equal(rt.liveBytes, before, `fault at allocation ${k} of ShiraLinear.forward (unfused adapter, 4 rows): bytes leaked`);
      }
    } finally {
      x.free();
      peft.model.free();
    }
  },
);

test(
  "found: unmerge() and disableAdapterLayers() inside disableAdapters(fn) are refused or kept, not silently undone",
  () => {
    for (const call of ["unmerge", "disableAdapterLayers"] as const) {
      const peft = getPeftModel(fixtureModel(), new ShiraConfig({ r: 1, targetModules: ["lin0"], randomSeed: 3, initWeights: false }), "a");
      peft.addAdapter("b", new ShiraConfig({ r: 1, targetModules: ["lin0", "lin1"], randomSeed: 4, initWeights: false }));
      peft.fuse([{ name: "a" }, { name: "b", weight: 0.5 }]);
      let refused = false;
      peft.disableAdapters(() => {
        try {
          peft[call]();
        } catch (e) {
          assert.ok(e instanceof StateError && e.code === "ADAPTER_STATE", String(e));
          refused = true;
        }
      });
      if (!refused) {
        // accepted: its effect must survive the end of the scope
        assert.deepEqual(peft.mergedAdapters, [], `${call}() inside disableAdapters was accepted, but the scope fused ${JSON.stringify(peft.mergedAdapters)} again`);
        if (call === "disableAdapterLayers") assert.equal(peft.adaptersDisabled, true, `${call}() inside disableAdapters was accepted, but the scope re-enabled the adapters`);
      } else assert.deepEqual(peft.mergedAdapters, ["a", "b"]);
      peft.model.free();
    }
  },
);
