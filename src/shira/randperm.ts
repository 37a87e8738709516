/**
 * PyTorch's CPU random generator (32-bit MT19937) and `torch.randperm`, bit for bit.
 *
 * PEFT's `random_mask` takes the first `nnz` entries of
 * `torch.randperm(out * in, generator=torch.Generator().manual_seed(seed))`; reproducing it lets a SHiRA mask be
 * rebuilt from its seed. The algorithm is described in `shared/fixtures/peft/README.md` (section `randperm/`):
 *
 * - generator: MT19937 (Matsumoto & Nishimura 1998) seeded with `init_genrand(seed mod 2^32)`; PyTorch keeps a
 *   64-bit seed but only its low 32 bits reach the engine. A fresh `torch.Generator()` has the default seed
 *   67280421310721, which becomes 4053586177.
 * - `randperm(n)` for `n < 214748364` (every PyTorch version) and for every `n` in PyTorch 1.13: one draw per step,
 *   `swap(r[i], r[i + next() mod (n - i)])` for `i = 0 .. n-2`. Step `i` touches only positions `>= i`, so the first
 *   `k` entries are final after `k` steps ({@link randpermPrefix} runs only those).
 * - `randperm(n)` for `n >= 214748364` in PyTorch releases with "Use random64 in Fischer-Yates algorithm for
 *   large N" (January 2025): inside-out Fisher–Yates with 64-bit draws (see {@link RandpermOptions}).
 *
 * @module
 */

import { ConfigError } from "../errors.js";

/** PyTorch's default CPU seed (`default_rng_seed_val`), used by a fresh `torch.Generator()`. */
export const TORCH_DEFAULT_SEED = 67280421310721;

/**
 * `floor((2^32 - 1) / 20)`: from this `n` on, recent PyTorch releases switch `randperm` to 64-bit draws.
 * Every layer with fewer weights than this is reproduced identically for every PyTorch version.
 */
export const RANDPERM_RANDOM64_THRESHOLD = 214748364;

const MT_N = 624;
const MT_M = 397;
const TWO_32 = 4294967296;

/** A seed as PyTorch accepts it: an integer, as a Number (safe integer) or a bigint. */
export type TorchSeed = number | bigint;

/**
 * Reduce a PyTorch seed to the 32 bits that reach MT19937 (`seed mod 2^32`, two's complement for negative seeds,
 * as PyTorch wraps seeds to uint64 first).
 *
 * Numbers must be safe integers (a literal above 2^53 has already lost its low bits: pass a bigint instead).
 *
 * ```ts
 * seedToUint32(67280421310721); // 4053586177 (0xf19cd101)
 * seedToUint32(2n ** 64n - 1n); // 4294967295
 * ```
 */
export function seedToUint32(seed: TorchSeed): number {
  if (typeof seed === "bigint") {
    if (seed < -(2n ** 63n) || seed >= 2n ** 64n) {
      throw new ConfigError("CONFIG_INVALID", `random seed ${seed} is outside PyTorch's range [-2^63, 2^64)`, {
        field: "random_seed",
        value: seed,
      });
    }
    return Number(BigInt.asUintN(32, seed));
  }
  if (typeof seed !== "number" || !Number.isInteger(seed)) {
    throw new ConfigError("CONFIG_INVALID", `random seed must be an integer, got ${String(seed)}`, {
      field: "random_seed",
      value: seed,
    });
  }
  if (!Number.isSafeInteger(seed)) {
    throw new ConfigError(
      "CONFIG_INVALID",
      `random seed ${seed} is not a safe integer (above 2^53 a Number has lost its low bits); pass it as a bigint`,
      { field: "random_seed", value: seed },
    );
  }
  const m = seed % TWO_32; // exact for safe integers
  return m < 0 ? m + TWO_32 : m;
}

/**
 * PyTorch's CPU generator engine: 32-bit MT19937 with PyTorch's seeding (`torch.Generator().manual_seed(seed)`).
 *
 * ```ts
 * const g = new TorchGenerator(3);
 * g.nextUint32(); // 2365658986
 * g.nextUint32(); // 303761048
 * ```
 */
export class TorchGenerator {
  // Int32Array: every value stays an int32 in V8 (no heap numbers); bits are the same as uint32.
  private readonly mt = new Int32Array(MT_N);
  private idx = MT_N;

  /** @param seed defaults to PyTorch's default seed {@link TORCH_DEFAULT_SEED} (a fresh `torch.Generator()`). */
  constructor(seed: TorchSeed = TORCH_DEFAULT_SEED) {
    this.manualSeed(seed);
  }

  /**
   * Re-seed, as `generator.manual_seed(seed)`: `init_genrand(seed mod 2^32)`; the next draw refills the state.
   *
   * ```ts
   * const g = new TorchGenerator();
   * g.manualSeed(3n);
   * ```
   */
  manualSeed(seed: TorchSeed): this {
    const mt = this.mt;
    let x = seedToUint32(seed) | 0;
    mt[0] = x;
    for (let i = 1; i < MT_N; i++) {
      // (1812433253 * (x ^ (x >>> 30)) + i) mod 2^32; Math.imul keeps the low 32 bits exactly.
      x = (Math.imul(1812433253, x ^ (x >>> 30)) + i) | 0;
      mt[i] = x;
    }
    this.idx = MT_N;
    return this;
  }

  /**
   * The next raw 32-bit output (`engine()` / `generator.random()` in PyTorch's C++), as an unsigned Number.
   *
   * ```ts
   * new TorchGenerator(67280421310721).nextUint32(); // first output for the default seed
   * ```
   */
  nextUint32(): number {
    if (this.idx >= MT_N) this.refill();
    let y = this.mt[this.idx++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & TEMPER_B;
    y ^= (y << 15) & TEMPER_C;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /**
   * Fill `out` with the next `out.length` raw outputs (the same values as that many {@link nextUint32} calls,
   * faster in bulk).
   *
   * ```ts
   * const block = new Uint32Array(1024);
   * new TorchGenerator(3).fill(block); // block[0] === 2365658986
   * ```
   */
  fill(out: Uint32Array): Uint32Array {
    const mt = this.mt;
    const len = out.length;
    let p = 0;
    while (p < len) {
      if (this.idx >= MT_N) this.refill();
      let idx = this.idx;
      const end = Math.min(MT_N, idx + (len - p));
      while (idx < end) {
        let y = mt[idx++]!;
        y ^= y >>> 11;
        y ^= (y << 7) & TEMPER_B;
        y ^= (y << 15) & TEMPER_C;
        y ^= y >>> 18;
        out[p++] = y;
      }
      this.idx = idx;
    }
    return out;
  }

  private refill(): void {
    const mt = this.mt;
    // Standard in-place MT19937 twist, split so no index needs a modulo (for i >= 227, mt[i + 397 - 624] was
    // already rewritten in this pass, as in the reference implementation).
    let i = 0;
    for (; i < MT_N - MT_M; i++) {
      const y = (mt[i]! & UPPER) | (mt[i + 1]! & LOWER);
      mt[i] = mt[i + MT_M]! ^ (y >>> 1) ^ (-(y & 1) & MATRIX_A);
    }
    for (; i < MT_N - 1; i++) {
      const y = (mt[i]! & UPPER) | (mt[i + 1]! & LOWER);
      mt[i] = mt[i + MT_M - MT_N]! ^ (y >>> 1) ^ (-(y & 1) & MATRIX_A);
    }
    const y = (mt[MT_N - 1]! & UPPER) | (mt[0]! & LOWER);
    mt[MT_N - 1] = mt[MT_M - 1]! ^ (y >>> 1) ^ (-(y & 1) & MATRIX_A);
    this.idx = 0;
  }
}

// MT19937 constants as int32 bit patterns (0x80000000, 0x7fffffff, 0x9908b0df, 0x9d2c5680, 0xefc60000).
const UPPER = 0x80000000 | 0;
const LOWER = 0x7fffffff;
const MATRIX_A = 0x9908b0df | 0;
const TEMPER_B = 0x9d2c5680 | 0;
const TEMPER_C = 0xefc60000 | 0;

/** How {@link randpermPrefix} treats `n >= 214748364`, where the result depends on the PyTorch version. */
export interface RandpermOptions {
  /**
   * - `"legacy"` (default): the loop of PyTorch releases before the change below (PyTorch 1.13 uses it for every
   *   `n`, and the fixtures were generated with it): one 32-bit draw per step, `z = next() mod (n - i)`. O(k) time
   *   and memory.
   * - `"random64"`: PyTorch releases with "Use random64 in Fischer-Yates algorithm for large N" (merged January
   *   2025): inside-out Fisher–Yates, `for i in 0..n-1: z = random64() mod (i + 1); r[i] = r[z]; r[z] = i`, with
   *   `random64() = (next() << 32) | next()` (first draw is the high word). No prefix shortcut exists for this
   *   loop: it always takes O(n) time (all `n` steps run), but this implementation needs only O(k) memory (see
   *   {@link randpermRandom64Prefix}). Described from PyTorch's source, not checked against a PyTorch build.
   *
   * Below the threshold both choices give the same (legacy) result, as PyTorch does.
   */
  largeN?: "legacy" | "random64";
}

function checkCount(name: string, v: number, max: number): void {
  if (!Number.isSafeInteger(v) || v < 0 || v > max) {
    throw new ConfigError("CONFIG_INVALID", `randperm: \`${name}\` must be an integer in [0, ${max}], got ${v}`, {
      field: name,
      value: v,
    });
  }
}

/**
 * The first `k` entries of `torch.randperm(n, generator=torch.Generator().manual_seed(seed))` (CPU, int64), bit
 * exact, in O(k) time and memory for the usual case: only the first `min(k, n-1)` swap steps run, positions `< k`
 * live in the output array and displaced values at positions `>= k` in a Map (never an `n`-element array).
 *
 * Values are exact integers up to 2^53 (hence a `Float64Array`).
 *
 * ```ts
 * randpermPrefix(200, 3, 3); // Float64Array [186, 86, 75], as torch.randperm(200, generator=g.manual_seed(3))[:3]
 * randpermPrefix(1200, 140);  // default seed 67280421310721 (a fresh torch.Generator())
 * ```
 *
 * @param n permutation size (`out * in` for a mask)
 * @param k how many leading entries to return, `0 <= k <= n`
 * @param seed the generator seed (number or bigint); defaults to PyTorch's default seed
 * @param options how to treat `n >= 214748364` ({@link RandpermOptions}; default `"legacy"`)
 */
export function randpermPrefix(
  n: number,
  k: number,
  seed: TorchSeed = TORCH_DEFAULT_SEED,
  options: RandpermOptions = {},
): Float64Array {
  checkCount("n", n, Number.MAX_SAFE_INTEGER);
  checkCount("k", k, n);
  const largeN = options.largeN ?? "legacy";
  if (largeN !== "legacy" && largeN !== "random64") {
    throw new ConfigError("CONFIG_INVALID", `randperm: unknown largeN mode ${JSON.stringify(largeN)}`, {
      field: "largeN",
      value: largeN,
    });
  }
  const gen = new TorchGenerator(seed);
  if (largeN === "random64" && n >= RANDPERM_RANDOM64_THRESHOLD) return randpermRandom64Prefix(n, k, gen);
  return legacyPrefix(n, k, gen);
}

/** PyTorch's swap loop, first `k` entries (README "prefix shortcut"). */
function legacyPrefix(n: number, k: number, gen: TorchGenerator): Float64Array {
  const out = new Float64Array(k);
  for (let p = 0; p < k; p++) out[p] = p; // virtual r[p] = p for p < k
  const moved = new Map<number, number>(); // virtual r[p] for p >= k, when displaced
  const steps = Math.min(k, n - 1);
  for (let i = 0; i < steps; i++) {
    const j = i + (gen.nextUint32() % (n - i)); // exact: both operands are below 2^53
    const vi = out[i]!;
    let vj: number;
    if (j < k) {
      vj = out[j]!;
      out[j] = vi;
    } else {
      const m = moved.get(j);
      vj = m === undefined ? j : m;
      moved.set(j, vi);
    }
    out[i] = vj; // position i is never touched again
  }
  // k == n: the last position is whatever the n-1 steps left there (already in `out`, since n-1 < k).
  return out;
}

/**
 * Exact `(hi * 2^32 + lo) mod m` for `hi, lo` in `[0, 2^32)` and `1 <= m <= 2^53` (a 64-bit unsigned modulo,
 * as `uint64_t % uint64_t` in C++): without BigInt for `m <= 2^37` (every realistic layer: `hi mod m`, then
 * exact reductions of `x * 2^21` and `x * 2^11 + lo` for `m <= 2^32`, or of `x * 2^16` twice and `x + lo` up to
 * 2^37, each a floating division with one correction step), with BigInt above.
 *
 * ```ts
 * mod64(1, 0, 7); // 2^32 mod 7 = 4
 * ```
 */
export function mod64(hi: number, lo: number, m: number): number {
  if (m <= 4294967296) {
    // m <= 2^32: x < 2^32, x * 2^21 < 2^53, then x * 2^11 + lo < 2^44.
    let x = hi < m ? hi : modExact(hi, m);
    x = modExact(x * 2097152, m);
    return modExact(x * 2048 + lo, m);
  }
  if (m <= 137438953472) {
    // m <= 2^37: x < m, x * 2^16 < 2^53 exactly, twice; then + lo < 2^37 + 2^32.
    let x = modExact(hi, m);
    x = modExact(x * 65536, m);
    x = modExact(x * 65536, m);
    return modExact(x + lo, m);
  }
  return Number(((BigInt(hi) << 32n) | BigInt(lo)) % BigInt(m));
}

/**
 * `x mod m` for integers `0 <= x < 2^53`, `1 <= m`: a floating division and one correction step, which is exact
 * (`q * m` stays below `x + m`, so below 2^53 for the callers here) and much faster than `%` on non-int32 values
 * (a call to `fmod` in V8).
 */
function modExact(x: number, m: number): number {
  const q = Math.floor(x / m);
  let r = x - q * m;
  if (r < 0) r += m;
  else if (r >= m) r -= m;
  return r;
}

/**
 * The first `k` entries of the recent-PyTorch large-`n` `randperm` (inside-out Fisher–Yates with 64-bit draws),
 * for any `n` (callers normally use it through `randpermPrefix(n, k, seed, { largeN: "random64" })`, which applies
 * it only from `n >= 214748364`, as PyTorch does; the function itself does not check the threshold so it can be
 * tested on small `n`).
 *
 * Runs all `n` steps (O(n) time: 2n generator draws and 64-bit modulos, see {@link mod64}) but keeps O(k) memory:
 * after step `k-1` positions `< k` are never read again; a later step `i >= k` writes `r[z] = i` into the prefix
 * only when `z < k`, and writes its other store to position `i >= k`. So the prefix is the state after `k` steps,
 * overwritten by the last such `i` per position.
 *
 * ```ts
 * randpermRandom64Prefix(10, 3, new TorchGenerator(0));
 * ```
 */
export function randpermRandom64Prefix(n: number, k: number, gen: TorchGenerator): Float64Array {
  checkCount("n", n, Number.MAX_SAFE_INTEGER);
  checkCount("k", k, n);
  const out = new Float64Array(k);
  const BLOCK = 4096; // draws per generator call (pairs: hi, lo)
  const buf = new Uint32Array(BLOCK);
  let b = BLOCK;
  for (let i = 0; i < n; i++) {
    if (b >= BLOCK) {
      gen.fill(n - i >= BLOCK / 2 ? buf : buf.subarray(0, 2 * (n - i)));
      b = 0;
    }
    const hi = buf[b++]!;
    const lo = buf[b++]!;
    const z = mod64(hi, lo, i + 1);
    if (i < k) {
      out[i] = i; // PyTorch: r[i] = i; r[i] = r[z]; r[z] = i
      out[i] = out[z]!;
      out[z] = i;
    } else if (z < k) {
      out[z] = i; // the only write of step i >= k that can land in the prefix
    }
  }
  return out;
}
