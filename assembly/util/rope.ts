// The RoPE loops of rope.ts (f32_rope, the rotation) and backward.ts (f32_rope_backward, its transpose): one
// implementation with the direction (and scalar / SIMD) as inline parameters, literals at every call, so each kernel
// compiles to its own branch-free loops. Per pair (a, b) with c = cos[p half + i], s = sin[p half + i]:
//
//   rotation  (transpose = false):  a' = f32(a c) - f32(b s),  b' = f32(b c) + f32(a s)
//   transpose (transpose = true):   a' = f32(a c) + f32(b s),  b' = f32(b c) - f32(a s)
//
// Layouts and the shuffles of the interleaved form: see rope.ts. No fused multiply-adds (also in the relaxed build),
// so the SIMD form is bit-identical to the scalar one in both directions.

/** a' of one pair (f32 products, then one add/sub). */
// @ts-ignore: decorator
@inline function rot1A(a: f32, b: f32, c: f32, s: f32, transpose: bool): f32 {
  return transpose ? a * c + b * s : a * c - b * s;
}
/** b' of one pair. */
// @ts-ignore: decorator
@inline function rot1B(a: f32, b: f32, c: f32, s: f32, transpose: bool): f32 {
  return transpose ? b * c - a * s : b * c + a * s;
}
/** a' of 4 pairs from A = [a0..a3], B = [b0..b3] (f32x4 mul, then add/sub). */
// @ts-ignore: decorator
@inline function rotA(a: v128, b: v128, c: v128, s: v128, transpose: bool): v128 {
  return transpose ? f32x4.add(f32x4.mul(a, c), f32x4.mul(b, s)) : f32x4.sub(f32x4.mul(a, c), f32x4.mul(b, s));
}
/** b' of 4 pairs. */
// @ts-ignore: decorator
@inline function rotB(a: v128, b: v128, c: v128, s: v128, transpose: bool): v128 {
  return transpose ? f32x4.sub(f32x4.mul(b, c), f32x4.mul(a, s)) : f32x4.add(f32x4.mul(b, c), f32x4.mul(a, s));
}

/** Pairs i0..half-1 of the head at hp, one at a time (the scalar twins, and the tails of the SIMD form). */
// @ts-ignore: decorator
@inline function rotatePairs(hp: usize, ct: usize, st: usize, i0: i32, half: i32, interleaved: i32, transpose: bool): void {
  for (let i = i0; i < half; i++) {
    const c = load<f32>(ct + (<usize>i << 2)), s = load<f32>(st + (<usize>i << 2));
    const pa = interleaved ? hp + (<usize>(2 * i) << 2) : hp + (<usize>i << 2);
    const pb = interleaved ? pa + 4 : hp + (<usize>(i + half) << 2);
    const a = load<f32>(pa), b = load<f32>(pb);
    store<f32>(pa, rot1A(a, b, c, s, transpose));
    store<f32>(pb, rot1B(a, b, c, s, transpose));
  }
}

/** The head at hp, 4 pairs a step (de-interleaved with shuffles in the interleaved layout), then the rest singly. */
// @ts-ignore: decorator
@inline function rotateHead(hp: usize, ct: usize, st: usize, half: i32, interleaved: i32, transpose: bool): void {
  let i = 0;
  if (interleaved) {
    for (; i + 4 <= half; i += 4) {
      const q = hp + (<usize>(2 * i) << 2);
      const c = v128.load(ct + (<usize>i << 2)), s = v128.load(st + (<usize>i << 2));
      const v0 = v128.load(q), v1 = v128.load(q, 16);
      const a = v128.shuffle<f32>(v0, v1, 0, 2, 4, 6), b = v128.shuffle<f32>(v0, v1, 1, 3, 5, 7);
      const a2 = rotA(a, b, c, s, transpose), b2 = rotB(a, b, c, s, transpose);
      v128.store(q, v128.shuffle<f32>(a2, b2, 0, 4, 1, 5));
      v128.store(q, v128.shuffle<f32>(a2, b2, 2, 6, 3, 7), 16);
    }
  } else {
    const hb = hp + (<usize>half << 2);
    for (; i + 4 <= half; i += 4) {
      const o = <usize>i << 2;
      const c = v128.load(ct + o), s = v128.load(st + o);
      const a = v128.load(hp + o), b = v128.load(hb + o);
      v128.store(hp + o, rotA(a, b, c, s, transpose));
      v128.store(hb + o, rotB(a, b, c, s, transpose));
    }
  }
  rotatePairs(hp, ct, st, i, half, interleaved, transpose);
}

/** Rows r < rows of x (stride floats apart), nHeads heads of headDim floats each, at positions pos[r]. */
// @ts-ignore: decorator
@inline export function ropeRows(
  x: usize, stride: i32, rows: i32, nHeads: i32, headDim: i32, pos: usize, cos: usize, sin: usize, half: i32, interleaved: i32,
  transpose: bool, simd: bool,
): void {
  for (let r = 0; r < rows; r++) {
    const row = x + (<usize>r * <usize>stride << 2);
    const p = load<i32>(pos + (<usize>r << 2));
    const ct = cos + (<usize>p * <usize>half << 2), st = sin + (<usize>p * <usize>half << 2);
    for (let h = 0; h < nHeads; h++) {
      const hp = row + (<usize>h * <usize>headDim << 2);
      if (simd) rotateHead(hp, ct, st, half, interleaved, transpose);
      else rotatePairs(hp, ct, st, 0, half, interleaved, transpose);
    }
  }
}
