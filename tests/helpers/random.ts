// Seeded generators shared by the test suites (independent of the library's own `Rng`, so a test's data does not
// change when the library's generator does).

/** Uniform floats in [0, 1) (xorshift32). */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

/** `n` uniform floats in [-scale, scale) from {@link rng}. */
export function rand(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (r() * 2 - 1) * scale;
  return a;
}

/** sfc32: a small generator with helpers, for the property and fuzz tests. */
export class Sfc32 {
  #a: number;
  #b: number;
  #c: number;
  #d: number;
  constructor(seed: number) {
    this.#a = 0x9e3779b9;
    this.#b = 0x243f6a88;
    this.#c = 0xb7e15162;
    this.#d = seed >>> 0;
    for (let i = 0; i < 15; i++) this.u32();
  }
  u32(): number {
    const t = (((this.#a + this.#b) | 0) + this.#d) | 0;
    this.#d = (this.#d + 1) | 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) | 0;
    this.#c = (this.#c << 21) | (this.#c >>> 11);
    this.#c = (this.#c + t) | 0;
    return t >>> 0;
  }
  float(): number {
    return this.u32() / 2 ** 32;
  }
  int(n: number): number {
    return Math.floor(this.float() * n);
  }
  chance(p: number): boolean {
    return this.float() < p;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)];
  }
  /** A standard normal sample (Box–Muller). */
  gauss(): number {
    const u = 1 - this.float();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.float());
  }
}

/** `n` sorted unique positions in [0, m), by selection sampling with `rnd` (floats in [0, 1)); `allow` restricts the candidates. */
export function sortedPositions(rnd: () => number, n: number, m: number, allow: (p: number) => boolean = () => true): Int32Array {
  let avail = 0;
  for (let p = 0; p < m; p++) if (allow(p)) avail++;
  if (avail < n) throw new Error(`case needs ${n} of ${avail} positions`);
  const out = new Int32Array(n);
  let need = n;
  let j = 0;
  for (let p = 0; p < m && need > 0; p++) {
    if (!allow(p)) continue;
    if (rnd() * avail < need) {
      out[j++] = p;
      need--;
    }
    avail--;
  }
  return out;
}
