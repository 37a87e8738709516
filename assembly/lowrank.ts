// Low-rank fuse for the LoRA baseline:  W[N,K] += scale * Bm[N,r] . A[r,K]

export function f32_lowrank_fuse_scalar(w: usize, bm: usize, a: usize, scale: f32, N: i32, K: i32, r: i32): void {
  for (let n = 0; n < N; n++) {
    const wr = w + (<usize>n * <usize>K << 2);
    for (let k = 0; k < K; k++) {
      let s: f32 = 0;
      for (let q = 0; q < r; q++) {
        s += load<f32>(bm + ((<usize>n * <usize>r + <usize>q) << 2)) * load<f32>(a + ((<usize>q * <usize>K + <usize>k) << 2));
      }
      const p = wr + (<usize>k << 2);
      store<f32>(p, load<f32>(p) + scale * s);
    }
  }
}

export function f32_lowrank_fuse(w: usize, bm: usize, a: usize, scale: f32, N: i32, K: i32, r: i32): void {
  f32_lowrank_fuse_scalar(w, bm, a, scale, N, K, r);
}
