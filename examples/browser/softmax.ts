/**
 * The page's softmax: float64, max-subtracted. The Node reference in the tests does the same computation
 * (tests/helpers/browser.ts, written independently) so both sides agree far below 1e-5.
 */
export function softmax(logits: ArrayLike<number>): number[] {
  let m = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > m) m = logits[i];
  const e = new Array<number>(logits.length);
  let s = 0;
  for (let i = 0; i < logits.length; i++) {
    e[i] = Math.exp(logits[i] - m);
    s += e[i];
  }
  for (let i = 0; i < e.length; i++) e[i] /= s;
  return e;
}

/** Index of the largest value (first one on ties). */
export function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}
