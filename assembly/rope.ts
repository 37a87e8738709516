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
// so the SIMD kernel is bit-identical to its `_scalar` twin. The loops are ropeRows in util/rope.ts, shared with
// f32_rope_backward (backward.ts: the same loops with the signs of the transpose). The interleaved form
// de-interleaves 8 floats (4 pairs) with shuffles:
//
//        [a0 b0 a1 b1] [a2 b2 a3 b3] --shuffle--> A = [a0 a1 a2 a3], B = [b0 b1 b2 b3]
//        A' = A c - B s, B' = B c + A s --shuffle--> [a0' b0' a1' b1'] [a2' b2' a3' b3']

import { ropeRows } from "./util/rope";

// ---------------------------------------------------------------- scalar twin

export function f32_rope_scalar(
  x: usize, stride: i32, rows: i32, nHeads: i32, headDim: i32, pos: usize, cos: usize, sin: usize, half: i32, interleaved: i32,
): void {
  ropeRows(x, stride, rows, nHeads, headDim, pos, cos, sin, half, interleaved, false, false);
}

// ---------------------------------------------------------------- SIMD kernel

export function f32_rope(
  x: usize, stride: i32, rows: i32, nHeads: i32, headDim: i32, pos: usize, cos: usize, sin: usize, half: i32, interleaved: i32,
): void {
  ropeRows(x, stride, rows, nHeads, headDim, pos, cos, sin, half, interleaved, false, true);
}
