// PyTorch CPU generator and randperm against the PEFT fixtures (PyTorch 1.13) and independent references.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readIntTensors } from "./helpers/fixtures.js";
import { ConfigError } from "../src/errors.js";
import {
  mod64,
  randpermPrefix,
  randpermRandom64Prefix,
  RANDPERM_RANDOM64_THRESHOLD,
  seedToUint32,
  TORCH_DEFAULT_SEED,
  TorchGenerator,
} from "../src/shira/randperm.js";


const fixtures = readIntTensors("randperm", "randperm.safetensors");

/** Straightforward full PyTorch loop (n-element array), the reference for the prefix shortcut. */
function fullRandperm(n: number, seed: number | bigint): number[] {
  const g = new TorchGenerator(seed);
  const r = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < n - 1; i++) {
    const z = g.nextUint32() % (n - i);
    const t = r[i]!;
    r[i] = r[i + z]!;
    r[i + z] = t;
  }
  return r;
}

/** Full inside-out Fisher-Yates with BigInt 64-bit draws (recent PyTorch, large n), the random64 reference. */
function fullRandperm64(n: number, seed: number | bigint): number[] {
  const g = new TorchGenerator(seed);
  const r = new Array<number>(n).fill(-1);
  for (let i = 0; i < n; i++) {
    const hi = BigInt(g.nextUint32());
    const lo = BigInt(g.nextUint32());
    const z = Number(((hi << 32n) | lo) % BigInt(i + 1));
    r[i] = i;
    r[i] = r[z]!;
    r[z] = i;
  }
  return r;
}

test("MT19937: first 1300 outputs equal PyTorch's for seeds 3 and 67280421310721", () => {
  for (const seed of [3, 67280421310721]) {
    const expected = fixtures.get(`mt19937_seed${seed}`)!.data;
    assert.equal(expected.length, 1300);
    const g = new TorchGenerator(seed);
    const got = Array.from({ length: 1300 }, () => g.nextUint32());
    assert.deepEqual(got, expected, `seed ${seed}`);
  }
  // README's worked values
  const g = new TorchGenerator(3);
  assert.deepEqual([g.nextUint32(), g.nextUint32(), g.nextUint32()], [2365658986, 303761048, 3041471737]);
});

test("generator: fill() gives the same stream as nextUint32()", () => {
  const a = new TorchGenerator(42);
  const b = new TorchGenerator(42);
  const block = new Uint32Array(1500);
  a.nextUint32(); // start mid-state
  b.nextUint32();
  a.fill(block.subarray(0, 7));
  a.fill(block.subarray(7));
  for (let i = 0; i < 1500; i++) assert.equal(block[i], b.nextUint32(), `draw ${i}`);
  assert.equal(a.nextUint32(), b.nextUint32());
});

test("generator: default seed, manualSeed resets, 32-bit reduction", () => {
  const a = new TorchGenerator();
  const b = new TorchGenerator(TORCH_DEFAULT_SEED);
  const c = new TorchGenerator(4053586177); // 67280421310721 mod 2^32
  for (let i = 0; i < 700; i++) {
    const x = a.nextUint32();
    assert.equal(x, b.nextUint32());
    assert.equal(x, c.nextUint32());
  }
  a.manualSeed(3);
  assert.equal(a.nextUint32(), 2365658986);
  assert.equal(seedToUint32(67280421310721), 4053586177);
  assert.equal(seedToUint32(0), 0);
  assert.equal(seedToUint32(2 ** 32), 0);
  assert.equal(seedToUint32(-1), 4294967295);
  assert.equal(seedToUint32(2n ** 64n - 1n), 4294967295);
  assert.equal(seedToUint32(-(2n ** 63n)), 0);
});

test("randpermPrefix equals every n{n}_seed{seed} fixture vector", () => {
  let count = 0;
  for (const [name, t] of fixtures) {
    const m = /^n(\d+)_seed(\d+)$/.exec(name);
    if (!m) continue;
    const n = Number(m[1]);
    const seed = Number(m[2]);
    const len = t.data.length;
    assert.equal(len, Math.min(n, 500));
    assert.deepEqual(Array.from(randpermPrefix(n, len, seed)), t.data, name);
    // every shorter prefix is the same prefix
    assert.deepEqual(Array.from(randpermPrefix(n, 17, seed)), t.data.slice(0, 17), `${name} k=17`);
    count++;
  }
  assert.equal(count, 9);
  // README's worked example
  assert.deepEqual(Array.from(randpermPrefix(200, 3, 3)), [186, 86, 75]);
  // omitted seed = default seed
  assert.deepEqual(Array.from(randpermPrefix(1200, 500)), fixtures.get("n1200_seed67280421310721")!.data);
});

test("randpermPrefix equals a full Fisher-Yates reference for small n, every k including n and n-1", () => {
  for (const n of [1, 2, 3, 4, 7, 10, 31, 200, 257, 1000]) {
    for (const seed of [0, 3, 42, 67280421310721, 2n ** 40n + 5n]) {
      const full = fullRandperm(n, seed);
      assert.deepEqual([...full].sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i));
      const ks = new Set([0, 1, n - 1, n, Math.floor(n / 2), Math.floor(n / 3)].filter((k) => k >= 0 && k <= n));
      for (const k of ks) {
        assert.deepEqual(Array.from(randpermPrefix(n, k, seed)), full.slice(0, k), `n=${n} seed=${seed} k=${k}`);
      }
    }
  }
  // n = 200, seed 3 is stored whole: k = n is the full permutation
  const whole = fixtures.get("n200_seed3")!.data;
  assert.deepEqual(Array.from(randpermPrefix(200, 200, 3)), whole);
  assert.deepEqual(Array.from(randpermPrefix(200, 199, 3)), whole.slice(0, 199));
  assert.deepEqual(fullRandperm(200, 3), whole);
  assert.equal(randpermPrefix(0, 0, 3).length, 0);
});

test("bigint seeds: above 2^53 only the low 32 bits matter; unsafe Number seeds are refused", () => {
  const big = 2n ** 60n + 3n; // > 2^53, low 32 bits = 3
  assert.deepEqual(Array.from(randpermPrefix(1200, 500, big)), fixtures.get("n1200_seed3")!.data);
  const big2 = 2n ** 55n * 123n + 67280421310721n; // low 32 bits = default seed's
  assert.deepEqual(Array.from(randpermPrefix(800, 500, big2)), fixtures.get("n800_seed67280421310721")!.data);
  assert.deepEqual(Array.from(randpermPrefix(50, 50, 3n)), Array.from(randpermPrefix(50, 50, 3)));
  assert.throws(() => randpermPrefix(10, 3, 2 ** 60), (e: unknown) => e instanceof ConfigError && /bigint/.test(e.message));
  assert.throws(() => randpermPrefix(10, 3, 1.5), ConfigError);
  assert.throws(() => randpermPrefix(10, 3, 2n ** 64n), ConfigError);
});

test("randpermPrefix argument errors", () => {
  assert.throws(() => randpermPrefix(10, 11, 3), ConfigError);
  assert.throws(() => randpermPrefix(-1, 0, 3), ConfigError);
  assert.throws(() => randpermPrefix(10, 2.5, 3), ConfigError);
  assert.throws(() => randpermPrefix(10, 2, 3, { largeN: "bogus" as "legacy" }), ConfigError);
});

test("mod64 is an exact 64-bit modulo (checked against BigInt)", () => {
  const g = new TorchGenerator(11);
  const ms = [1, 2, 3, 7, 1000, 2 ** 21, 2 ** 21 + 1, 214748364, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 15, 2 ** 37, 2 ** 37 + 1, 2 ** 45 + 9, 2 ** 53];
  for (let t = 0; t < 2000; t++) {
    const hi = g.nextUint32();
    const lo = g.nextUint32();
    const m = t < ms.length * 10 ? ms[t % ms.length]! : 1 + (g.nextUint32() * 4096 + (g.nextUint32() & 4095));
    const expect = Number(((BigInt(hi) << 32n) | BigInt(lo)) % BigInt(m));
    assert.equal(mod64(hi, lo, m), expect, `(${hi} << 32 | ${lo}) mod ${m}`);
  }
  assert.equal(mod64(0xffffffff, 0xffffffff, 2 ** 53), Number((2n ** 64n - 1n) % 2n ** 53n));
});

test("random64 branch: O(k)-memory prefix equals a full inside-out Fisher-Yates (BigInt) reference", () => {
  for (const n of [1, 2, 5, 33, 500, 4097]) {
    for (const seed of [0, 3, 67280421310721]) {
      const full = fullRandperm64(n, seed);
      assert.deepEqual([...full].sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i));
      for (const k of new Set([0, 1, Math.floor(n / 4), n - 1, n].filter((k) => k >= 0))) {
        const got = randpermRandom64Prefix(n, k, new TorchGenerator(seed));
        assert.deepEqual(Array.from(got), full.slice(0, k), `n=${n} seed=${seed} k=${k}`);
      }
    }
  }
  // below the threshold, "random64" keeps the legacy loop, as PyTorch does
  assert.deepEqual(
    Array.from(randpermPrefix(1200, 500, 3, { largeN: "random64" })),
    fixtures.get("n1200_seed3")!.data,
  );
  assert.equal(RANDPERM_RANDOM64_THRESHOLD, Math.floor((2 ** 32 - 1) / 20));
});

test("large n (legacy): O(k) prefix of an 8192 x 28672 layer is distinct and in range", () => {
  const n = 8192 * 28672; // >= threshold
  const k = 32 * (8192 + 28672);
  const t0 = performance.now();
  const p = randpermPrefix(n, k, 56);
  const ms = performance.now() - t0;
  assert.equal(p.length, k);
  const s = new Set(p);
  assert.equal(s.size, k);
  for (const v of p) assert.ok(Number.isInteger(v) && v >= 0 && v < n);
  // same prefix as a shorter request (prefix property)
  assert.deepEqual(Array.from(randpermPrefix(n, 100, 56)), Array.from(p.subarray(0, 100)));
  console.log(`# randpermPrefix(n=${n}, k=${k}) legacy: ${ms.toFixed(1)} ms`);
});
