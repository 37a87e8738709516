// Dense products over row-major f32 matrices (PyTorch's nn.Linear layout: W is [N, K]).
//
//   f32_gemm_nt: y[B,N] = (acc ? y : 0) + x[B,K] . W[N,K]^T (+ bias[N] when bias != 0)   forward
//   f32_gemm_nn: y[B,K] = (acc ? y : 0) + a[B,N] . W[N,K]                                input gradient
//   f32_gemm_tn: g[N,K] = (acc ? g : 0) + gy[B,N]^T . x[B,K]                            weight gradient
//   f32_bias_grad: gb[N] = (acc ? gb : 0) + sum_b gy[b,N]
//
// Each has a `_scalar` twin (plain loops, same summation contract) used by the tests.

// ---------------------------------------------------------------- scalar twins

export function f32_gemm_nt_scalar(x: usize, w: usize, bias: usize, y: usize, B: i32, K: i32, N: i32, acc: i32): void {
  for (let b = 0; b < B; b++) {
    const xr = x + (<usize>b * <usize>K << 2);
    const yr = y + (<usize>b * <usize>N << 2);
    for (let n = 0; n < N; n++) {
      const wr = w + (<usize>n * <usize>K << 2);
      let s: f32 = 0;
      for (let k = 0; k < K; k++) s += load<f32>(xr + (<usize>k << 2)) * load<f32>(wr + (<usize>k << 2));
      if (bias) s += load<f32>(bias + (<usize>n << 2));
      const yp = yr + (<usize>n << 2);
      store<f32>(yp, acc ? load<f32>(yp) + s : s);
    }
  }
}

export function f32_gemm_nn_scalar(a: usize, w: usize, y: usize, B: i32, N: i32, K: i32, acc: i32): void {
  for (let b = 0; b < B; b++) {
    const ar = a + (<usize>b * <usize>N << 2);
    const yr = y + (<usize>b * <usize>K << 2);
    if (!acc) memory.fill(yr, 0, <usize>K << 2);
    for (let n = 0; n < N; n++) {
      const av = load<f32>(ar + (<usize>n << 2));
      const wr = w + (<usize>n * <usize>K << 2);
      for (let k = 0; k < K; k++) {
        const yp = yr + (<usize>k << 2);
        store<f32>(yp, load<f32>(yp) + av * load<f32>(wr + (<usize>k << 2)));
      }
    }
  }
}

export function f32_gemm_tn_scalar(gy: usize, x: usize, g: usize, B: i32, N: i32, K: i32, acc: i32): void {
  if (!acc) memory.fill(g, 0, <usize>N * <usize>K << 2);
  for (let b = 0; b < B; b++) {
    const gr = gy + (<usize>b * <usize>N << 2);
    const xr = x + (<usize>b * <usize>K << 2);
    for (let n = 0; n < N; n++) {
      const gv = load<f32>(gr + (<usize>n << 2));
      const out = g + (<usize>n * <usize>K << 2);
      for (let k = 0; k < K; k++) {
        const p = out + (<usize>k << 2);
        store<f32>(p, load<f32>(p) + gv * load<f32>(xr + (<usize>k << 2)));
      }
    }
  }
}

export function f32_bias_grad_scalar(gy: usize, gb: usize, B: i32, N: i32, acc: i32): void {
  if (!acc) memory.fill(gb, 0, <usize>N << 2);
  for (let b = 0; b < B; b++) {
    const gr = gy + (<usize>b * <usize>N << 2);
    for (let n = 0; n < N; n++) {
      const p = gb + (<usize>n << 2);
      store<f32>(p, load<f32>(p) + load<f32>(gr + (<usize>n << 2)));
    }
  }
}

// ---------------------------------------------------------------- SIMD kernels (to be tuned)

export function f32_gemm_nt(x: usize, w: usize, bias: usize, y: usize, B: i32, K: i32, N: i32, acc: i32): void {
  f32_gemm_nt_scalar(x, w, bias, y, B, K, N, acc);
}

export function f32_gemm_nn(a: usize, w: usize, y: usize, B: i32, N: i32, K: i32, acc: i32): void {
  f32_gemm_nn_scalar(a, w, y, B, N, K, acc);
}

export function f32_gemm_tn(gy: usize, x: usize, g: usize, B: i32, N: i32, K: i32, acc: i32): void {
  f32_gemm_tn_scalar(gy, x, g, B, N, K, acc);
}

export function f32_bias_grad(gy: usize, gb: usize, B: i32, N: i32, acc: i32): void {
  f32_bias_grad_scalar(gy, gb, B, N, acc);
}
