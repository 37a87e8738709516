// Rotary position embedding (RoPE), in place, from precomputed cos/sin tables.
//
//   x row r = x + r stride floats: nHeads heads of headDim floats, contiguous; p = pos[r] (i32)
//   c = cos[p half + i], s = sin[p half + i]            (tables [maxPos][half], f32)
//   a' = f32(a c) - f32(b s),  b' = f32(b c) + f32(a s)  for each pair (a, b), i < half
//     non-interleaved (transformers' rotate_half; Llama, Qwen2, Mistral, GPT-NeoX): a = x[i], b = x[i + half]
//     interleaved (GPT-J / GGML "normal" mode): a = x[2i], b = x[2i + 1]
//   elements at index >= 2 half in a head are untouched (partial rotary).
//
// No fused multiply-adds (also in the relaxed build): f32x4.mul then sub/add, exactly the scalar operations,
// so the SIMD kernel is bit-identical to its `_scalar` twin. The interleaved form de-interleaves 8 floats
// (4 pairs) with shuffles:
//
//        [a0 b0 a1 b1] [a2 b2 a3 b3] --shuffle--> A = [a0 a1 a2 a3], B = [b0 b1 b2 b3]
//        A' = A c - B s, B' = B c + A s --shuffle--> [a0' b0' a1' b1'] [a2' b2' a3' b3']

// ---------------------------------------------------------------- scalar twin

export function f32_rope_scalar(
  x: usize, stride: i32, rows: i32, nHeads: i32, headDim: i32, pos: usize, cos: usize, sin: usize, half: i32, interleaved: i32,
): void {
  for (let r = 0; r < rows; r++) {
    const row = x + (<usize>r * <usize>stride << 2);
    const p = load<i32>(pos + (<usize>r << 2));
    const ct = cos + (<usize>p * <usize>half << 2), st = sin + (<usize>p * <usize>half << 2);
    for (let h = 0; h < nHeads; h++) {
      const hp = row + (<usize>h * <usize>headDim << 2);
      for (let i = 0; i < half; i++) {
        const c = load<f32>(ct + (<usize>i << 2)), s = load<f32>(st + (<usize>i << 2));
        const pa = interleaved ? hp + (<usize>(2 * i) << 2) : hp + (<usize>i << 2);
        const pb = interleaved ? pa + 4 : hp + (<usize>(i + half) << 2);
        const a = load<f32>(pa), b = load<f32>(pb);
        store<f32>(pa, a * c - b * s);
        store<f32>(pb, b * c + a * s);
      }
    }
  }
}

// ---------------------------------------------------------------- SIMD kernel

export function f32_rope(
  x: usize, stride: i32, rows: i32, nHeads: i32, headDim: i32, pos: usize, cos: usize, sin: usize, half: i32, interleaved: i32,
): void {
  for (let r = 0; r < rows; r++) {
    const row = x + (<usize>r * <usize>stride << 2);
    const p = load<i32>(pos + (<usize>r << 2));
    const ct = cos + (<usize>p * <usize>half << 2), st = sin + (<usize>p * <usize>half << 2);
    for (let h = 0; h < nHeads; h++) {
      const hp = row + (<usize>h * <usize>headDim << 2);
      let i = 0;
      if (interleaved) {
        for (; i + 4 <= half; i += 4) {
          const q = hp + (<usize>(2 * i) << 2);
          const c = v128.load(ct + (<usize>i << 2)), s = v128.load(st + (<usize>i << 2));
          const v0 = v128.load(q), v1 = v128.load(q, 16);
          const a = v128.shuffle<f32>(v0, v1, 0, 2, 4, 6), b = v128.shuffle<f32>(v0, v1, 1, 3, 5, 7);
          const a2 = f32x4.sub(f32x4.mul(a, c), f32x4.mul(b, s));
          const b2 = f32x4.add(f32x4.mul(b, c), f32x4.mul(a, s));
          v128.store(q, v128.shuffle<f32>(a2, b2, 0, 4, 1, 5));
          v128.store(q, v128.shuffle<f32>(a2, b2, 2, 6, 3, 7), 16);
        }
        for (; i < half; i++) {
          const pa = hp + (<usize>(2 * i) << 2);
          const c = load<f32>(ct + (<usize>i << 2)), s = load<f32>(st + (<usize>i << 2));
          const a = load<f32>(pa), b = load<f32>(pa, 4);
          store<f32>(pa, a * c - b * s);
          store<f32>(pa, b * c + a * s, 4);
        }
      } else {
        const hb = hp + (<usize>half << 2);
        for (; i + 4 <= half; i += 4) {
          const o = <usize>i << 2;
          const c = v128.load(ct + o), s = v128.load(st + o);
          const a = v128.load(hp + o), b = v128.load(hb + o);
          v128.store(hp + o, f32x4.sub(f32x4.mul(a, c), f32x4.mul(b, s)));
          v128.store(hb + o, f32x4.add(f32x4.mul(b, c), f32x4.mul(a, s)));
        }
        for (; i < half; i++) {
          const o = <usize>i << 2;
          const c = load<f32>(ct + o), s = load<f32>(st + o);
          const a = load<f32>(hp + o), b = load<f32>(hb + o);
          store<f32>(hp + o, a * c - b * s);
          store<f32>(hb + o, b * c + a * s);
        }
      }
    }
  }
}
