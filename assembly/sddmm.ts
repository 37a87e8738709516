// Masked matmul (SDDMM): the gradient of SHiRA's sparse values, O(B * nnz), never a dense [N,K] gradient.
//   g[j] = (acc ? g[j] : 0) + scale * sum_b gy[b, row_j] * x[b, col_j]
// Positions in CSR by output row: rowPtr i32[N+1], col i32[nnz] (row_j is the CSR row holding j).
// `scratch` points to f32_sddmm_csr_scratch(B, K, N) floats the kernel may use.

export function f32_sddmm_csr_scratch(B: i32, K: i32, N: i32): i32 {
  return 0;
}

export function f32_sddmm_csr_scalar(gy: usize, x: usize, rowPtr: usize, col: usize, g: usize, scale: f32, B: i32, K: i32, N: i32, acc: i32, scratch: usize): void {
  for (let n = 0; n < N; n++) {
    const j0 = load<i32>(rowPtr + (<usize>n << 2));
    const j1 = load<i32>(rowPtr + (<usize>(n + 1) << 2));
    for (let j = j0; j < j1; j++) {
      const c = load<i32>(col + (<usize>j << 2));
      let s: f32 = 0;
      for (let b = 0; b < B; b++) {
        s += load<f32>(gy + ((<usize>b * <usize>N + <usize>n) << 2)) * load<f32>(x + ((<usize>b * <usize>K + <usize>c) << 2));
      }
      const gp = g + (<usize>j << 2);
      store<f32>(gp, acc ? load<f32>(gp) + scale * s : scale * s);
    }
  }
}

export function f32_sddmm_csr(gy: usize, x: usize, rowPtr: usize, col: usize, g: usize, scale: f32, B: i32, K: i32, N: i32, acc: i32, scratch: usize): void {
  f32_sddmm_csr_scalar(gy, x, rowPtr, col, g, scale, B, K, N, acc, scratch);
}
