// Sparse delta forward for the unfused path:
//   y[B,N] += scale * x[B,K] . S[N,K]^T,   S in CSR by output row: rowPtr i32[N+1], col i32[nnz], val f32[nnz].
// `scratch` points to f32_spmm_csr_scratch(B, K, N) floats the kernel may use (0 floats needed -> may be 0).

export function f32_spmm_csr_scratch(B: i32, K: i32, N: i32): i32 {
  return 0;
}

export function f32_spmm_csr_scalar(x: usize, rowPtr: usize, col: usize, val: usize, scale: f32, y: usize, B: i32, K: i32, N: i32, scratch: usize): void {
  for (let b = 0; b < B; b++) {
    const xr = x + (<usize>b * <usize>K << 2);
    const yr = y + (<usize>b * <usize>N << 2);
    for (let n = 0; n < N; n++) {
      const j0 = load<i32>(rowPtr + (<usize>n << 2));
      const j1 = load<i32>(rowPtr + (<usize>(n + 1) << 2));
      let s: f32 = 0;
      for (let j = j0; j < j1; j++) {
        const c = load<i32>(col + (<usize>j << 2));
        s += load<f32>(val + (<usize>j << 2)) * load<f32>(xr + (<usize>c << 2));
      }
      const yp = yr + (<usize>n << 2);
      store<f32>(yp, load<f32>(yp) + scale * s);
    }
  }
}

export function f32_spmm_csr(x: usize, rowPtr: usize, col: usize, val: usize, scale: f32, y: usize, B: i32, K: i32, N: i32, scratch: usize): void {
  f32_spmm_csr_scalar(x, rowPtr, col, val, scale, y, B, K, N, scratch);
}
