// Packing helpers: transposed panels for the gemm (blocks of x) and for the sparse kernels' scratch.

/**
 * Transposes src[rows, cols] (rows `ss` bytes apart, `rows <= ld`) into dst[cols, ld]: dst[c * ld + r] = src[r, c],
 * with dst[c * ld + r] = 0 for rows <= r < ld (ld a multiple of 4). 4x4 blocks through shuffles:
 *
 *        src rows r..r+3, cols c..c+3            dst rows c..c+3, lanes r..r+3
 *        [a0 a1 a2 a3]                           [a0 b0 c0 d0]
 *        [b0 b1 b2 b3]      --transpose-->       [a1 b1 c1 d1]
 *        [c0 c1 c2 c3]                           [a2 b2 c2 d2]
 *        [d0 d1 d2 d3]                           [a3 b3 c3 d3]
 */
export function packTransposed(src: usize, ss: usize, rows: i32, cols: i32, dst: usize, ld: i32): void {
  const ds = <usize>ld << 2;
  const zero = f32x4.splat(0);
  for (let r = 0; r < ld; r += 4) {
    const nv = min(4, rows - r); // valid rows in this group (<= 0 for padding groups)
    const s0 = src + <usize>r * ss, s1 = s0 + ss, s2 = s1 + ss, s3 = s2 + ss;
    let d = dst + (<usize>r << 2);
    let c = 0;
    if (nv == 4) {
      for (; c + 4 <= cols; c += 4) {
        const o = <usize>c << 2;
        const a0 = v128.load(s0 + o), a1 = v128.load(s1 + o), a2 = v128.load(s2 + o), a3 = v128.load(s3 + o);
        const t0 = v128.shuffle<f32>(a0, a1, 0, 4, 1, 5), t1 = v128.shuffle<f32>(a0, a1, 2, 6, 3, 7);
        const t2 = v128.shuffle<f32>(a2, a3, 0, 4, 1, 5), t3 = v128.shuffle<f32>(a2, a3, 2, 6, 3, 7);
        v128.store(d, v128.shuffle<f32>(t0, t2, 0, 1, 4, 5));
        v128.store(d + ds, v128.shuffle<f32>(t0, t2, 2, 3, 6, 7));
        v128.store(d + 2 * ds, v128.shuffle<f32>(t1, t3, 0, 1, 4, 5));
        v128.store(d + 3 * ds, v128.shuffle<f32>(t1, t3, 2, 3, 6, 7));
        d += 4 * ds;
      }
    }
    for (; c < cols; c++) {
      const o = <usize>c << 2;
      let v = zero;
      if (nv > 0) v = f32x4.replace_lane(v, 0, load<f32>(s0 + o));
      if (nv > 1) v = f32x4.replace_lane(v, 1, load<f32>(s1 + o));
      if (nv > 2) v = f32x4.replace_lane(v, 2, load<f32>(s2 + o));
      if (nv > 3) v = f32x4.replace_lane(v, 3, load<f32>(s3 + o));
      v128.store(d, v);
      d += ds;
    }
  }
}
