// Mask functions against PEFT's stored masks and independent (sort-based / dense brute-force) references.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readIntTensors } from "./helpers/fixtures.js";
import { ConfigError, ShapeError } from "../src/errors.js";
import {
  builtinMaskFn,
  flatToRowsCols,
  gradMask,
  maskBudget,
  normalizeMask,
  randomMask,
  rowsColsToFlat,
  snipMask,
  structMask,
  structMaskPlan,
  topKIndices,
  wmMask,
  type MaskLayer,
} from "../src/shira/mask.js";
import { TorchGenerator } from "../src/shira/randperm.js";


/** Deterministic test data: uniform integers in [0, m) from PyTorch's generator. */
function rng(seed: number): (m: number) => number {
  const g = new TorchGenerator(seed);
  return (m) => g.nextUint32() % m;
}

/** Reference top-k: full sort by (score desc, NaN lowest, index asc), first k, ascending. */
function refTopK(scores: ArrayLike<number>, k: number): number[] {
  const idx = Array.from({ length: scores.length }, (_, i) => i);
  idx.sort((a, b) => {
    const va = scores[a]!;
    const vb = scores[b]!;
    const na = Number.isNaN(va);
    const nb = Number.isNaN(vb);
    if (na !== nb) return na ? 1 : -1;
    if (!na && va !== vb) return va > vb ? -1 : 1;
    return a - b;
  });
  return idx.slice(0, k).sort((a, b) => a - b);
}

function assertCodeError(fn: () => unknown, cls: Function, code: string, re?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${String(e)}`);
    assert.equal((e as ConfigError).code, code);
    if (re) assert.match((e as Error).message, re);
    return true;
  });
}

// ------------------------------------------------------------------------------------------------------------
// random

test("randomMask reproduces PEFT's stored shira_indices for the mlp adapters (alpha and beta)", () => {
  const cases: [string, string, number, number, number, number | null][] = [
    ["alpha", "lin0", 20, 10, 1, 3],
    ["alpha", "lin2", 30, 40, 1, 3],
    ["beta", "lin1", 40, 20, 2, null],
    ["beta", "lin2", 30, 40, 2, null],
    ["beta", "lin3", 10, 30, 2, null],
  ];
  const files = new Map<string, Map<string, { shape: number[]; data: number[] }>>();
  for (const [adapter, layer, out, inF, r, seed] of cases) {
    if (!files.has(adapter)) files.set(adapter, readIntTensors("mlp", adapter, "adapter_model.safetensors"));
    const t = files.get(adapter)!.get(`base_model.model.${layer}.shira_indices`)!;
    const nnz = r * (out + inF);
    assert.deepEqual(t.shape, [2, nnz]);
    const flat = randomMask(out, inF, r, seed);
    assert.equal(flat.length, nnz);
    const { rows, cols } = flatToRowsCols(flat, inF);
    assert.deepEqual(Array.from(rows), t.data.slice(0, nnz), `${adapter}.${layer} rows`);
    assert.deepEqual(Array.from(cols), t.data.slice(nnz), `${adapter}.${layer} cols`);
    assert.deepEqual(Array.from(rowsColsToFlat(rows, cols, inF)), Array.from(flat));
  }
  // the mask is sort(randperm prefix): check against the randperm fixture too
  const rp = readIntTensors("randperm", "randperm.safetensors").get("n1200_seed3")!.data;
  assert.deepEqual(Array.from(randomMask(30, 40, 1, 3)), rp.slice(0, 70).sort((a, b) => a - b));
  // undefined seed = null seed = default seed; bigint seed with the same low 32 bits
  assert.deepEqual(Array.from(randomMask(40, 20, 2)), Array.from(randomMask(40, 20, 2, null)));
  assert.deepEqual(Array.from(randomMask(40, 20, 2, 67280421310721n)), Array.from(randomMask(40, 20, 2)));
});

test("randomMask errors: r <= 0 (PEFT's wording), non-integer r, nnz > out*in, bad shapes", () => {
  assertCodeError(() => randomMask(20, 10, 0, 3), ConfigError, "CONFIG_R", /^`r` should be a positive integer value but the value passed is 0$/);
  assertCodeError(() => randomMask(20, 10, -2), ConfigError, "CONFIG_R", /value passed is -2/);
  assertCodeError(() => randomMask(20, 10, 1.5), ConfigError, "CONFIG_R", /1\.5/);
  // 4 x 3: n = 12, r = 2 -> nnz = 14 > 12
  assertCodeError(() => randomMask(4, 3, 2, 3), ConfigError, "CONFIG_MASK", /\[4, 3\].*|.*14.*/);
  try {
    randomMask(4, 3, 2, 3);
  } catch (e) {
    const err = e as ConfigError;
    assert.match(err.message, /\[4, 3\]/);
    assert.match(err.message, /rank 2/);
    assert.match(err.message, /14/);
    assert.deepEqual(err.details, { outFeatures: 4, inFeatures: 3, r: 2, nnz: 14, n: 12 });
  }
  assertCodeError(() => randomMask(1, 1, 1), ConfigError, "CONFIG_MASK");
  assertCodeError(() => randomMask(0, 10, 1), ConfigError, "CONFIG_INVALID");
  assertCodeError(() => randomMask(10, 2.5, 1), ConfigError, "CONFIG_INVALID");
  assertCodeError(() => randomMask(65536, 65536, 1), ConfigError, "CONFIG_MASK", /2\^31/);
  // nnz == n is allowed: every position
  assert.deepEqual(Array.from(randomMask(2, 2, 1, 3)), [0, 1, 2, 3]);
  assert.equal(maskBudget(11008, 4096, 32), 32 * (11008 + 4096));
});

// ------------------------------------------------------------------------------------------------------------
// top-k strategies

test("topKIndices equals a sort-based reference on data with many ties, NaN, +-0 and infinities", () => {
  const pool = [0, -0, 1, -1, 2.5, -2.5, 1e-30, -1e-30, Infinity, -Infinity, NaN, 3, 3, 3];
  const r = rng(5);
  for (let trial = 0; trial < 300; trial++) {
    const n = 1 + r(trial < 250 ? 60 : 3000);
    const use64 = trial % 2 === 1;
    const scores = use64 ? new Float64Array(n) : new Float32Array(n);
    const poolSize = 1 + r(pool.length);
    for (let i = 0; i < n; i++) scores[i] = pool[r(poolSize)]!;
    for (const k of new Set([0, 1, n, r(n + 1), r(n + 1), Math.max(0, n - 1)])) {
      const got = topKIndices(scores, k);
      assert.ok(got instanceof Int32Array);
      assert.deepEqual(Array.from(got), refTopK(scores, k), `trial ${trial} n=${n} k=${k} ${use64 ? "f64" : "f32"}`);
    }
  }
});

test("topKIndices separates float64 values that differ only in their low bits, and float32 neighbours", () => {
  const r = rng(9);
  for (let trial = 0; trial < 50; trial++) {
    const n = 1 + r(500);
    const f64 = new Float64Array(n);
    const f32 = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      f64[i] = (r(2) ? 1 : -1) * (1 + r(8) * 2 ** -52 + r(3) * 2 ** -30);
      f32[i] = (r(2) ? 1 : -1) * (1 + r(8) * 2 ** -23) * 2 ** (r(3) - 1);
    }
    for (const k of [1, r(n + 1), n >> 1]) {
      assert.deepEqual(Array.from(topKIndices(f64, k)), refTopK(f64, k));
      assert.deepEqual(Array.from(topKIndices(f32, k)), refTopK(f32, k));
    }
  }
  // subarray views with a byte offset work
  const base = new Float32Array([9, 1, 5, 5, 2]);
  assert.deepEqual(Array.from(topKIndices(base.subarray(1), 2)), [1, 2]);
  const base64 = new Float64Array([9, 1, 5, 5, 2]);
  assert.deepEqual(Array.from(topKIndices(base64.subarray(1), 2)), [1, 2]);
  assert.deepEqual(Array.from(topKIndices(new Float32Array([0.5, 2, 2, NaN, -1]), 2)), [1, 2]);
  assertCodeError(() => topKIndices(new Float32Array(3), 4), ConfigError, "CONFIG_MASK");
  assertCodeError(() => topKIndices(new Float32Array(3), -1), ConfigError, "CONFIG_MASK");
});

test("wmMask, gradMask and snipMask equal sort-based references (ties to the lower index)", () => {
  const r = rng(21);
  const vals = [0, 0.5, -0.5, 1, -1, 2, NaN, -0, 0.25];
  for (let trial = 0; trial < 60; trial++) {
    const out = 1 + r(30);
    const inF = 1 + r(30);
    const n = out * inF;
    const maxR = Math.floor(n / (out + inF));
    if (maxR < 1) continue;
    const rank = 1 + r(maxR);
    const nnz = rank * (out + inF);
    const w = new Float32Array(n);
    const g = new Float32Array(n);
    const g64 = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      w[i] = vals[r(vals.length)]!;
      g[i] = vals[r(vals.length)]! * 3;
      g64[i] = g[i]!;
    }
    const absW = Array.from(w, Math.abs);
    assert.deepEqual(Array.from(wmMask(w, out, inF, rank)), refTopK(absW, nnz), `wm ${out}x${inF} r=${rank}`);
    const absG = Float32Array.from(g, Math.abs);
    assert.deepEqual(Array.from(gradMask(absG, out, inF, rank)), refTopK(absG, nnz), `grad ${out}x${inF}`);
    assert.deepEqual(Array.from(gradMask(Float64Array.from(absG), out, inF, rank)), refTopK(absG, nnz));
    const snip = Array.from(w, (x, i) => Math.fround(Math.abs(x * g[i]!)));
    assert.deepEqual(Array.from(snipMask(w, g, out, inF, rank)), refTopK(snip, nnz), `snip ${out}x${inF}`);
    assert.deepEqual(Array.from(snipMask(w, g64, out, inF, rank)), refTopK(snip, nnz));
  }
  // snip: |W * G| with G the signed sum; a large gradient on a zero weight scores 0
  const w = new Float32Array([0, 1, -2, 0.5, 3, 0]);
  const g = new Float32Array([100, -1, 1, -4, 0, 7]); // scores 0, 1, 2, 2, 0, 0
  // nnz = 1 * (2 + 3) = 5: the three positive scores plus the two lowest-index zeros (0 and 4)
  assert.deepEqual(Array.from(snipMask(w, g, 2, 3, 1)), [0, 1, 2, 3, 4]);
  assertCodeError(() => wmMask(new Float32Array(5), 2, 3, 1), ShapeError, "SHAPE_MISMATCH");
  assertCodeError(() => snipMask(new Float32Array(6), new Float32Array(5), 2, 3, 1), ShapeError, "SHAPE_MISMATCH");
  assertCodeError(() => gradMask(new Float32Array(6), 2, 3, 0), ConfigError, "CONFIG_R");
});

test("topKIndices on 45M scores (11008 x 4096 layer, r = 32): timing", () => {
  const n = 11008 * 4096;
  const k = 32 * (11008 + 4096);
  const w = new Float32Array(n);
  let x = 12345;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) | 0;
    w[i] = ((x >>> 8) - 8388608) / 8388608; // [-1, 1), 2^24 distinct values: many ties at this n
  }
  let t0 = performance.now();
  const idx = topKIndices(w, k);
  const tTop = performance.now() - t0;
  t0 = performance.now();
  const wm = wmMask(w, 11008, 4096, 32);
  const tWm = performance.now() - t0;
  assert.equal(idx.length, k);
  assert.equal(wm.length, k);
  // spot checks: ascending, threshold property
  let minIn = Infinity;
  for (let i = 0; i < k; i++) {
    if (i > 0) assert.ok(idx[i]! > idx[i - 1]!);
    minIn = Math.min(minIn, w[idx[i]!]!);
  }
  const chosen = new Uint8Array(n);
  for (const i of idx) chosen[i] = 1;
  let above = 0;
  for (let i = 0; i < n; i++) if (!chosen[i] && w[i]! > minIn) above++;
  assert.equal(above, 0);
  console.log(`# topKIndices n=${n} k=${k}: ${tTop.toFixed(0)} ms; wmMask: ${tWm.toFixed(0)} ms`);
});

// ------------------------------------------------------------------------------------------------------------
// struct

/** Independent dense reference of structMask's documented rule. */
function refStruct(out: number, inF: number, r: number): { flat: number[]; stride: number | null } {
  const n = out * inF;
  const nnz = r * (out + inF);
  const m = Math.min(out, inF);
  const coreOf = (f: number | null): Uint8Array => {
    const d = new Uint8Array(n);
    for (let i = 0; i < out; i++)
      for (let j = 0; j < inF; j++) if ((f !== null && (i % f === 0 || j % f === 0)) || (i === j && i < m)) d[i * inF + j] = 1;
    return d;
  };
  let stride: number | null = null;
  let dense: Uint8Array | null = null;
  for (let f = 1; f <= Math.max(out, inF); f++) {
    const d = coreOf(f);
    if (d.reduce((a, b) => a + b, 0) <= nnz) {
      stride = f;
      dense = d;
      break;
    }
  }
  dense ??= coreOf(null);
  let count = dense.reduce((a, b) => a + b, 0);
  const order: number[] = [];
  if (out >= inF) for (let t = 0; t < inF; t++) for (let i = 0; i < out; i++) order.push(i * inF + ((i + t) % inF));
  else for (let t = 0; t < out; t++) for (let j = 0; j < inF; j++) order.push(((j + t) % out) * inF + j);
  for (const p of order) {
    if (count >= nnz) break;
    if (!dense[p]) {
      dense[p] = 1;
      count++;
    }
  }
  const flat: number[] = [];
  dense.forEach((v, i) => v && flat.push(i));
  return { flat, stride };
}

test("structMask: exactly nnz distinct in-range positions, equal to a dense reference of the documented rule", () => {
  const shapes: [number, number][] = [
    [2, 2], [3, 3], [4, 4], [10, 10], [16, 16], [2, 3], [3, 2], [5, 40], [40, 5], [7, 13], [13, 7],
    [100, 10], [10, 100], [33, 64], [64, 33], [1, 8], [8, 1], [20, 10], [30, 40], [50, 50], [9, 200],
  ];
  let checked = 0;
  for (const [out, inF] of shapes) {
    const maxR = Math.floor((out * inF) / (out + inF));
    for (let r = 1; r <= maxR; r++) {
      const got = structMask(out, inF, r);
      const nnz = r * (out + inF);
      assert.equal(got.length, nnz);
      for (let i = 0; i < nnz; i++) {
        assert.ok(got[i]! >= 0 && got[i]! < out * inF);
        if (i > 0) assert.ok(got[i]! > got[i - 1]!, "sorted and unique");
      }
      const ref = refStruct(out, inF, r);
      assert.deepEqual(Array.from(got), ref.flat, `${out}x${inF} r=${r}`);
      const plan = structMaskPlan(out, inF, r);
      assert.equal(plan.stride, ref.stride);
      assert.equal(plan.core + plan.fill, nnz);
      // contains the documented rows, columns and diagonal
      const set = new Set(got);
      for (let i = 0; i < Math.min(out, inF); i++) assert.ok(set.has(i * inF + i), `diagonal ${i}`);
      if (plan.stride !== null) {
        const f = plan.stride;
        for (let row = 0; row < out; row += f) for (let c = 0; c < inF; c++) assert.ok(set.has(row * inF + c));
        for (let c = 0; c < inF; c += f) for (let row = 0; row < out; row++) assert.ok(set.has(row * inF + c));
      }
      assert.deepEqual(Array.from(structMask(out, inF, r)), Array.from(got), "deterministic");
      checked++;
    }
  }
  assert.ok(checked > 100);
  // 1 x 1 and other impossible budgets
  assertCodeError(() => structMask(1, 1, 1), ConfigError, "CONFIG_MASK");
  assertCodeError(() => structMask(1, 8, 1), ConfigError, "CONFIG_MASK");
  assertCodeError(() => structMask(4, 4, 3), ConfigError, "CONFIG_MASK");
  assertCodeError(() => structMask(4, 4, 0), ConfigError, "CONFIG_R");
  // the doc comment's examples
  assert.deepEqual(Array.from(structMask(4, 4, 1)), [0, 1, 5, 6, 10, 11, 12, 15]);
  const p = structMaskPlan(4096, 4096, 32);
  assert.deepEqual(p, { nnz: 262144, stride: 133, rows: 31, cols: 31, diagonal: 4065, core: 257056, fill: 5088 });
});

test("structMask on large shapes stays O(nnz): 11008 x 4096 and 8192 x 28672 at r = 32", () => {
  for (const [out, inF] of [[11008, 4096], [8192, 28672], [4096, 4096]] as const) {
    const t0 = performance.now();
    const got = structMask(out, inF, 32);
    const ms = performance.now() - t0;
    const nnz = 32 * (out + inF);
    assert.equal(got.length, nnz);
    for (let i = 1; i < nnz; i++) assert.ok(got[i]! > got[i - 1]!);
    assert.ok(got[nnz - 1]! < out * inF);
    const plan = structMaskPlan(out, inF, 32);
    console.log(`# structMask ${out}x${inF} r=32: stride ${plan.stride}, ${plan.rows} rows, ${plan.cols} cols, fill ${plan.fill}: ${ms.toFixed(0)} ms`);
  }
});

// ------------------------------------------------------------------------------------------------------------
// custom masks

test("normalizeMask accepts every documented form and returns sorted flat indices", () => {
  // 3 x 4 layer, nnz = 3 -> positions 1, 6, 11
  const dense = [0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];
  const want = [1, 6, 11];
  assert.deepEqual(Array.from(normalizeMask(Uint8Array.from(dense), 3, 4, 3, "m")), want);
  assert.deepEqual(Array.from(normalizeMask(Float32Array.from(dense), 3, 4, 3, "m")), want);
  assert.deepEqual(Array.from(normalizeMask(Float64Array.from(dense), 3, 4, 3, "m")), want);
  assert.deepEqual(Array.from(normalizeMask(dense, 3, 4, 3, "m")), want);
  assert.deepEqual(Array.from(normalizeMask(dense.map((v) => v === 1), 3, 4, 3, "m")), want);
  assert.deepEqual(Array.from(normalizeMask([dense.slice(0, 4), dense.slice(4, 8), dense.slice(8)], 3, 4, 3, "m")), want);
  assert.deepEqual(Array.from(normalizeMask(Int32Array.of(11, 1, 6), 3, 4, 3, "m")), want);
  assert.deepEqual(Array.from(normalizeMask([6, 11, 1], 3, 4, 3, "m")), want);
  assert.deepEqual(Array.from(normalizeMask({ rows: [2, 0, 1], cols: [3, 1, 2] }, 3, 4, 3, "m")), want);
  assert.deepEqual(Array.from(normalizeMask({ rows: Int32Array.of(0, 1, 2), cols: Int32Array.of(1, 2, 3) }, 3, 4, 3, "m")), want);
  // whole layer (length == n == nnz): all ones is dense, a permutation is positions
  assert.deepEqual(Array.from(normalizeMask([1, 1, 1, 1], 2, 2, 4, "m")), [0, 1, 2, 3]);
  assert.deepEqual(Array.from(normalizeMask([3, 0, 2, 1], 2, 2, 4, "m")), [0, 1, 2, 3]);
  // input is not modified
  const pos = Int32Array.of(11, 1, 6);
  normalizeMask(pos, 3, 4, 3, "m");
  assert.deepEqual(Array.from(pos), [11, 1, 6]);
});

test("normalizeMask errors name the module, the counts and the offending value", () => {
  const check = (v: unknown, re: RegExp, details?: Record<string, unknown>): void => {
    assert.throws(
      () => normalizeMask(v, 3, 4, 3, "layers.0.q"),
      (e: unknown) => {
        assert.ok(e instanceof ConfigError);
        assert.equal(e.code, "CONFIG_MASK");
        assert.match(e.message, /layers\.0\.q/);
        assert.match(e.message, re);
        assert.equal(e.details["module"], "layers.0.q");
        if (details) for (const [k, x] of Object.entries(details)) assert.deepEqual(e.details[k], x);
        return true;
      },
    );
  };
  const dense = [0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];
  check(Uint8Array.from([1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]), /4 ones, expected .*3/, { expected: 3, actual: 4 });
  check(Uint8Array.from(dense.slice(1)), /11 entries, expected .*12/, { expected: 12, actual: 11 });
  check(Float32Array.from(dense.map((v, i) => (i === 6 ? 0.5 : v))), /0\.5 at flat index 6/, { value: 0.5, index: 6 });
  check(Float32Array.from(dense.map((v, i) => (i === 6 ? NaN : v))), /NaN/);
  check(Int32Array.of(1, 6, 12), /12 .*\[0, 12\)/, { value: 12 });
  check(Int32Array.of(1, 6, -1), /-1/, { value: -1 });
  check(Int32Array.of(1, 6, 6), /duplicate position 6/, { value: 6 });
  check(Int32Array.of(1, 6), /2 positions, expected .*3/, { expected: 3, actual: 2 });
  check([1, 6, 2.5], /2\.5/, { value: 2.5 });
  check([1, 2, 3, 4, 5], /5 entries/, { actual: 5 });
  check({ rows: [0, 1], cols: [0, 1, 2] }, /`rows` has 2 entries but `cols` has 3/);
  check({ rows: [0, 1, 3], cols: [0, 1, 2] }, /row 3 .*\[0, 3\)/, { value: 3 });
  check({ rows: [0, 1, 2], cols: [0, 4, 2] }, /column 4 .*\[0, 4\)/, { value: 4 });
  check({ rows: [0, 0, 2], cols: [1, 1, 2] }, /duplicate position 1/);
  check({ rows: [0, 1], cols: [0, 1] }, /2 positions, expected .*3/);
  check([[0, 1, 0, 0], [0, 0, 1, 0]], /2 rows, expected out = 3/);
  check([[0, 1, 0, 0], [0, 0, 1], [0, 0, 0, 1]], /row 1 has 3 entries/);
  check("mask", /unsupported mask of type string/);
  check(null, /unsupported mask of type null/);
  check(new Uint16Array(12), /unsupported mask of type Uint16Array/);
});

test("flatToRowsCols / rowsColsToFlat round trip; builtinMaskFn wires the strategies", () => {
  const flat = Int32Array.of(0, 11, 25, 199);
  const { rows, cols } = flatToRowsCols(flat, 10);
  assert.deepEqual(Array.from(rows), [0, 1, 2, 19]);
  assert.deepEqual(Array.from(cols), [0, 1, 5, 9]);
  assert.deepEqual(Array.from(rowsColsToFlat(rows, cols, 10)), [0, 11, 25, 199]);
  assertCodeError(() => rowsColsToFlat([1], [1, 2], 10), ShapeError, "SHAPE_MISMATCH");

  const weight = new Float32Array(200).map((_, i) => Math.sin(i));
  const layer: MaskLayer = { name: "lin0", outFeatures: 20, inFeatures: 10, weight };
  assert.deepEqual(builtinMaskFn("random")(layer, 1, { randomSeed: 3 }), randomMask(20, 10, 1, 3));
  assert.deepEqual(builtinMaskFn("random")(layer, 1, {}), randomMask(20, 10, 1));
  assert.deepEqual(builtinMaskFn("wm")(layer, 1, {}), wmMask(weight, 20, 10, 1));
  assert.deepEqual(builtinMaskFn("struct")(layer, 2, {}), structMask(20, 10, 2));
  const grads = new Float32Array(200).map((_, i) => Math.cos(i));
  assert.deepEqual(builtinMaskFn("grad")(layer, 1, { gradients: { lin0: grads } }), gradMask(grads, 20, 10, 1));
  assert.deepEqual(
    builtinMaskFn("snip")(layer, 1, { gradients: new Map([["lin0", grads]]) }),
    snipMask(weight, grads, 20, 10, 1),
  );
  assertCodeError(() => builtinMaskFn("grad")(layer, 1, {}), ConfigError, "CONFIG_MASK", /gradients\["lin0"\]/);
  assertCodeError(() => builtinMaskFn("bogus" as "wm"), ConfigError, "CONFIG_INVALID");
});
