// Shared pieces of the kernel suites (tests/kernels.test.ts, decoder-kernels.test.ts, backward-kernels.test.ts): the
// comparisons, and the float64 references (from the definitions, independent of the kernels) that more than one
// suite needs.
import assert from "node:assert/strict";

/** The f32 unit roundoff, 2^-24. */
export const U = 2 ** -24;

// ------------------------------------------------------------------------------------------------ checks

/** Distance in f32 ulps (ordered integer representation), NaN == NaN. */
export function ulps(a: number, b: number): number {
  if (Number.isNaN(a) && Number.isNaN(b)) return 0;
  if (Number.isNaN(a) || Number.isNaN(b)) return Infinity;
  if (a === b) return 0;
  const f = new Float32Array([a, b]);
  const i = new Int32Array(f.buffer);
  const o = (x: number) => (x < 0 ? -(x & 0x7fffffff) : x);
  return Math.abs(o(i[0]) - o(i[1]));
}

/** got within `maxUlps` f32 ulps of ref rounded to f32, elementwise; `inputs` (the x of each element) for messages. */
export function assertUlps(name: string, got: ArrayLike<number>, ref: ArrayLike<number>, maxUlps: number, inputs?: ArrayLike<number>): void {
  assert.equal(got.length, ref.length, `${name}: length`);
  for (let i = 0; i < ref.length; i++) {
    const d = ulps(got[i], Math.fround(ref[i]));
    assert.ok(d <= maxUlps, `${name}[${i}]${inputs ? ` (x = ${inputs[i]})` : ""}: ${got[i]} vs ${Math.fround(ref[i])} (${d} ulps)`);
  }
}

/** |got - ref| <= tol[i] elementwise (NaN never passes). */
export function assertTol(name: string, got: ArrayLike<number>, ref: ArrayLike<number>, tol: ArrayLike<number>): void {
  assert.equal(got.length, ref.length, `${name}: length`);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < ref.length; i++) {
    const e = Math.abs(got[i] - ref[i]) / (tol[i] + 1e-300);
    if (!(e <= worst)) {
      worst = e;
      at = i;
    }
  }
  assert.ok(worst <= 1, `${name}: error ${worst.toFixed(3)} x the bound at ${at} (got ${got[at]}, want ${ref[at]}, tol ${tol[at]})`);
}

/** Bit for bit (-0 != +0), any NaN equal to any NaN. */
export function assertBits(name: string, got: ArrayLike<number>, ref: ArrayLike<number>): void {
  assert.equal(got.length, ref.length, `${name}: length`);
  for (let i = 0; i < ref.length; i++) {
    if (!(Object.is(got[i], ref[i]) || (Number.isNaN(got[i]) && Number.isNaN(ref[i])))) assert.fail(`${name}[${i}]: ${got[i]} vs ${ref[i]}`);
  }
}

// ------------------------------------------------------------------------------------------------ float64 references

/** LlamaRMSNorm: w * x / sqrt(mean(x^2) + eps) over [rows, D], float64 (w null: no weight). */
export function rmsnormRef(x: ArrayLike<number>, w: ArrayLike<number> | null, rows: number, D: number, eps: number): Float64Array {
  const y = new Float64Array(rows * D);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < D; i++) ss += x[r * D + i] ** 2;
    const inv = 1 / Math.sqrt(ss / D + eps);
    for (let i = 0; i < D; i++) y[r * D + i] = (w ? w[i] : 1) * x[r * D + i] * inv;
  }
  return y;
}

/** torch.nn.LayerNorm's statistics of row r of x [rows, D], float64: the mean and 1 / sqrt(biased var + eps). */
export function layernormStats(x: ArrayLike<number>, r: number, D: number, eps: number): { mean: number; rstd: number } {
  let m = 0;
  for (let i = 0; i < D; i++) m += x[r * D + i];
  m /= D;
  let v = 0;
  for (let i = 0; i < D; i++) v += (x[r * D + i] - m) ** 2;
  return { mean: m, rstd: 1 / Math.sqrt(v / D + eps) };
}

/** The keys the query at slot p of batch b admits: j <= p, p - window < j when window > 0, mask[b maxSeq + j] != 0. */
export function admittedKeys(b: number, p: number, window: number, mask: Int32Array | null, maxSeq: number): number[] {
  const keys: number[] = [];
  for (let j = 0; j <= p; j++) {
    if (window > 0 && !(j > p - window)) continue;
    if (mask && mask[b * maxSeq + j] === 0) continue;
    keys.push(j);
  }
  return keys;
}

/** Softmax of scores, float64: exp(s_j - max s) / sum. */
export function softmax64(s: number[]): number[] {
  const m = Math.max(...s);
  const e = s.map((v) => Math.exp(v - m));
  const z = e.reduce((x, y) => x + y, 0);
  return e.map((v) => v / z);
}

/** Sets slot j of batch b (every kv head) of the caches kc, vc [B][nKv][maxSeq][hd] to v. */
export function fillSlot(kc: Float32Array, vc: Float32Array, nKv: number, maxSeq: number, hd: number, b: number, j: number, v: number): void {
  for (let g = 0; g < nKv; g++) {
    const o = ((b * nKv + g) * maxSeq + j) * hd;
    kc.fill(v, o, o + hd);
    vc.fill(v, o, o + hd);
  }
}
