/**
 * The raw exports of the wasm module: pure kernels over byte offsets (`ptr`) into linear memory and sizes.
 * Callers check arguments before calling (the kernels trust them). See `assembly/` for the math of each.
 * @internal
 */
export interface Kernels {
  readonly memory: WebAssembly.Memory;
  // heap
  alloc(size: number): number;
  free(ptr: number): void;
  memory_bytes(): number;
  // threads (src/runtime/threads.ts, parallel.ts): per-instance scratch and the parts of split kernels
  thread_scratch_bytes(): number;
  thread_set_scratch(ptr: number): void;
  f32_gemm_nt_mt(x: number, w: number, bias: number, y: number, B: number, K: number, N: number, acc: number, t: number, nt: number): void;
  h16_gemm_nt_mt(x: number, w: number, bias: number, y: number, B: number, K: number, N: number, acc: number, dtype: number, t: number, nt: number): void;
  f32_gemm_nn_mt(a: number, w: number, y: number, B: number, N: number, K: number, acc: number, t: number, nt: number): void;
  h16_gemm_nn_mt(a: number, w: number, y: number, B: number, N: number, K: number, acc: number, dtype: number, t: number, nt: number): void;
  f32_gemm_tn_mt(gy: number, x: number, g: number, B: number, N: number, K: number, acc: number, t: number, nt: number): void;
  f32_attention_mt(q: number, qStride: number, kc: number, vc: number, out: number, outStride: number, B: number, T: number, past: number, nHeads: number, nKv: number, headDim: number, maxSeq: number, scale: number, window: number, keyMask: number, scratch: number, t: number, nt: number): void;
  // dense
  f32_gemm_nt(x: number, w: number, bias: number, y: number, B: number, K: number, N: number, acc: number): void;
  f32_gemm_nt_scalar(x: number, w: number, bias: number, y: number, B: number, K: number, N: number, acc: number): void;
  f32_gemm_nn(a: number, w: number, y: number, B: number, N: number, K: number, acc: number): void;
  f32_gemm_nn_scalar(a: number, w: number, y: number, B: number, N: number, K: number, acc: number): void;
  f32_gemm_tn(gy: number, x: number, g: number, B: number, N: number, K: number, acc: number): void;
  f32_gemm_tn_scalar(gy: number, x: number, g: number, B: number, N: number, K: number, acc: number): void;
  f32_bias_grad(gy: number, gb: number, B: number, N: number, acc: number): void;
  f32_bias_grad_scalar(gy: number, gb: number, B: number, N: number, acc: number): void;
  // sparse
  f32_spmm_csr_scratch(B: number, K: number, N: number): number;
  f32_spmm_csr(x: number, rowPtr: number, idx: number, rowLen: number, val: number, scale: number, y: number, B: number, K: number, N: number, scratch: number): void;
  f32_spmm_csr_scalar(x: number, rowPtr: number, idx: number, rowLen: number, val: number, scale: number, y: number, B: number, K: number, N: number, scratch: number): void;
  f32_sddmm_csr_scratch(B: number, K: number, N: number): number;
  f32_sddmm_csr(gy: number, x: number, rowPtr: number, idx: number, rowLen: number, g: number, scale: number, B: number, K: number, N: number, acc: number, scratch: number): void;
  f32_sddmm_csr_scalar(gy: number, x: number, rowPtr: number, idx: number, rowLen: number, g: number, scale: number, B: number, K: number, N: number, acc: number, scratch: number): void;
  // switching
  f32_scatter_add(w: number, idx: number, v: number, scale: number, nnz: number): void;
  f32_scatter_add_scalar(w: number, idx: number, v: number, scale: number, nnz: number): void;
  f32_scatter_sub(w: number, idx: number, v: number, scale: number, nnz: number): void;
  f32_scatter_sub_scalar(w: number, idx: number, v: number, scale: number, nnz: number): void;
  f32_scatter_set(w: number, idx: number, v: number, nnz: number): void;
  f32_scatter_set_scalar(w: number, idx: number, v: number, nnz: number): void;
  f32_scatter_set_add(w: number, idx: number, base: number, v: number, scale: number, nnz: number): void;
  f32_scatter_set_add_scalar(w: number, idx: number, base: number, v: number, scale: number, nnz: number): void;
  f32_gather(w: number, idx: number, out: number, nnz: number): void;
  f32_gather_scalar(w: number, idx: number, out: number, nnz: number): void;
  f32_lowrank_fuse(w: number, bm: number, a: number, scale: number, N: number, K: number, r: number): void;
  f32_lowrank_fuse_scalar(w: number, bm: number, a: number, scale: number, N: number, K: number, r: number): void;
  // elementwise
  f32_relu(x: number, y: number, n: number): void;
  f32_relu_backward(x: number, gy: number, gx: number, n: number): void;
  f32_gelu(x: number, y: number, n: number): void;
  f32_gelu_backward(x: number, gy: number, gx: number, n: number): void;
  f32_silu(x: number, y: number, n: number): void;
  f32_silu_backward(x: number, gy: number, gx: number, n: number): void;
  f32_tanh(x: number, y: number, n: number): void;
  f32_tanh_backward(x: number, gy: number, gx: number, n: number): void;
  f32_softmax_rows(x: number, y: number, rows: number, cols: number): void;
  f32_log_softmax_rows(x: number, y: number, rows: number, cols: number): void;
  f32_softmax_backward_rows(y: number, gy: number, gx: number, rows: number, cols: number): void;
  f32_log_softmax_backward_rows(y: number, gy: number, gx: number, rows: number, cols: number): void;
  // optimizers
  f32_sgd(p: number, g: number, buf: number, n: number, lr: number, momentum: number, dampening: number, wd: number, nesterov: number, first: number): void;
  f32_adamw(p: number, g: number, m: number, v: number, n: number, lr: number, beta1: number, beta2: number, eps: number, wd: number, bc1: number, bc2: number): void;
  // vectors
  f32_fill(p: number, v: number, n: number): void;
  f32_fill_scalar(p: number, v: number, n: number): void;
  f32_copy(src: number, dst: number, n: number): void;
  f32_axpy(a: number, x: number, y: number, n: number): void;
  f32_scale(x: number, s: number, n: number): void;
  f32_add(a: number, b: number, out: number, n: number): void;
  f32_sum_sq(x: number, n: number): number;
  f32_find_nonfinite(x: number, n: number): number;
  f32_transpose(src: number, dst: number, rows: number, cols: number): void;
  // single-pass switching (assembly/switch.ts)
  f32_switch_merge(w: number, idxA: number, savedA: number, nA: number, idxB: number, savedB: number, vB: number, scale: number, nB: number): void;
  f32_switch_merge_scalar(w: number, idxA: number, savedA: number, nA: number, idxB: number, savedB: number, vB: number, scale: number, nB: number): void;
  f32_gather_scatter_add(w: number, idx: number, saved: number, v: number, scale: number, nnz: number): void;
  f32_gather_scatter_add_scalar(w: number, idx: number, saved: number, v: number, scale: number, nnz: number): void;
  // transposed sparse delta forward, CSR by input row (fan_in_fan_out layers, assembly/spmm.ts)
  f32_spmm_csr_t(x: number, rowPtr: number, idx: number, rowLen: number, val: number, scale: number, y: number, B: number, K: number, N: number): void;
  f32_spmm_csr_t_scalar(x: number, rowPtr: number, idx: number, rowLen: number, val: number, scale: number, y: number, B: number, K: number, N: number): void;
  // decoder models (assembly/norm.ts, rope.ts, attention.ts, embedding.ts, activation.ts)
  f32_rmsnorm(x: number, w: number, y: number, rows: number, D: number, eps: number): void;
  f32_rmsnorm_scalar(x: number, w: number, y: number, rows: number, D: number, eps: number): void;
  f32_layernorm(x: number, w: number, b: number, y: number, rows: number, D: number, eps: number): void;
  f32_layernorm_scalar(x: number, w: number, b: number, y: number, rows: number, D: number, eps: number): void;
  f32_rope(x: number, stride: number, rows: number, nHeads: number, headDim: number, pos: number, cos: number, sin: number, half: number, interleaved: number): void;
  f32_rope_scalar(x: number, stride: number, rows: number, nHeads: number, headDim: number, pos: number, cos: number, sin: number, half: number, interleaved: number): void;
  f32_kv_store(src: number, srcStride: number, cache: number, B: number, T: number, past: number, nKv: number, headDim: number, maxSeq: number): void;
  f32_kv_store_scalar(src: number, srcStride: number, cache: number, B: number, T: number, past: number, nKv: number, headDim: number, maxSeq: number): void;
  f32_attention_scratch(T: number, maxSeq: number, headDim: number): number;
  f32_attention(q: number, qStride: number, kc: number, vc: number, out: number, outStride: number, B: number, T: number, past: number, nHeads: number, nKv: number, headDim: number, maxSeq: number, scale: number, window: number, keyMask: number, scratch: number): void;
  f32_attention_scalar(q: number, qStride: number, kc: number, vc: number, out: number, outStride: number, B: number, T: number, past: number, nHeads: number, nKv: number, headDim: number, maxSeq: number, scale: number, window: number, keyMask: number, scratch: number): void;
  f32_gelu_tanh(x: number, y: number, n: number): void;
  f32_gelu_tanh_scalar(x: number, y: number, n: number): void;
  f32_gelu_tanh_backward(x: number, gy: number, gx: number, n: number): void;
  f32_gelu_tanh_backward_scalar(x: number, gy: number, gx: number, n: number): void;
  f32_silu_mul(gate: number, up: number, out: number, n: number): void;
  f32_silu_mul_scalar(gate: number, up: number, out: number, n: number): void;
  f32_embedding(table: number, ids: number, out: number, n: number, D: number): void;
  f32_embedding_scalar(table: number, ids: number, out: number, n: number, D: number): void;
  f32_embedding_add(table: number, ids: number, out: number, n: number, D: number): void;
  f32_embedding_add_scalar(table: number, ids: number, out: number, n: number, D: number): void;
  f32_bias_add(y: number, b: number, rows: number, N: number): void;
  f32_bias_add_scalar(y: number, b: number, rows: number, N: number): void;
  f32_argmax(x: number, n: number): number;
  f32_argmax_scalar(x: number, n: number): number;
  // training backward (assembly/backward.ts): gx/gq/gk/gv/grad overwritten, gw/gb accumulated (+=) when non-zero
  f32_rmsnorm_backward(x: number, w: number, gy: number, gx: number, gw: number, rows: number, D: number, eps: number): void;
  f32_rmsnorm_backward_scalar(x: number, w: number, gy: number, gx: number, gw: number, rows: number, D: number, eps: number): void;
  f32_layernorm_backward(x: number, w: number, gy: number, gx: number, gw: number, gb: number, rows: number, D: number, eps: number): void;
  f32_layernorm_backward_scalar(x: number, w: number, gy: number, gx: number, gw: number, gb: number, rows: number, D: number, eps: number): void;
  f32_rope_backward(x: number, stride: number, rows: number, nHeads: number, headDim: number, pos: number, cos: number, sin: number, half: number, interleaved: number): void;
  f32_rope_backward_scalar(x: number, stride: number, rows: number, nHeads: number, headDim: number, pos: number, cos: number, sin: number, half: number, interleaved: number): void;
  f32_silu_mul_backward(gate: number, up: number, gy: number, gGate: number, gUp: number, n: number): void;
  f32_silu_mul_backward_scalar(gate: number, up: number, gy: number, gGate: number, gUp: number, n: number): void;
  f32_embedding_backward(gy: number, ids: number, gw: number, rows: number, D: number): void;
  f32_embedding_backward_scalar(gy: number, ids: number, gw: number, rows: number, D: number): void;
  /** Returns the summed loss (f64) of the rows with label >= 0. */
  f32_cross_entropy_rows(logits: number, labels: number, grad: number, rows: number, V: number, scale: number): number;
  f32_cross_entropy_rows_scalar(logits: number, labels: number, grad: number, rows: number, V: number, scale: number): number;
  f32_attention_backward_scratch(T: number, maxSeq: number, headDim: number): number;
  f32_attention_backward(q: number, qStride: number, kc: number, vc: number, o: number, oStride: number, go: number, goStride: number, gq: number, gqStride: number, gk: number, gv: number, gkvStride: number, B: number, T: number, nHeads: number, nKv: number, headDim: number, maxSeq: number, scale: number, window: number, keyMask: number, scratch: number): void;
  f32_attention_backward_scalar(q: number, qStride: number, kc: number, vc: number, o: number, oStride: number, go: number, goStride: number, gq: number, gqStride: number, gk: number, gv: number, gkvStride: number, B: number, T: number, nHeads: number, nKv: number, headDim: number, maxSeq: number, scale: number, window: number, keyMask: number, scratch: number): void;
  // half-precision weights (assembly/half.ts): `w`, `saved*`, `src`/`dst` of the conversions hold u16 bit patterns;
  // dtype 0 = BF16, 1 = F16. gemm_nt / gemm_nn are bit-identical to the f32 kernels on the widened weight.
  h16_gemm_nt(x: number, w: number, bias: number, y: number, B: number, K: number, N: number, acc: number, dtype: number): void;
  h16_gemm_nt_scalar(x: number, w: number, bias: number, y: number, B: number, K: number, N: number, acc: number, dtype: number): void;
  h16_gemm_nn(a: number, w: number, y: number, B: number, N: number, K: number, acc: number, dtype: number): void;
  h16_gemm_nn_scalar(a: number, w: number, y: number, B: number, N: number, K: number, acc: number, dtype: number): void;
  h16_embedding(w: number, ids: number, out: number, rows: number, D: number, dtype: number): void;
  h16_embedding_scalar(w: number, ids: number, out: number, rows: number, D: number, dtype: number): void;
  h16_to_f32(src: number, dst: number, n: number, dtype: number): void;
  h16_to_f32_scalar(src: number, dst: number, n: number, dtype: number): void;
  /** Round to nearest even, overflow to inf; NaN -> the quiet NaN of its sign (0x7fc0 / 0x7e00 | sign). */
  f32_to_h16(src: number, dst: number, n: number, dtype: number): void;
  f32_to_h16_scalar(src: number, dst: number, n: number, dtype: number): void;
  h16_gather(w: number, idx: number, out: number, nnz: number): void;
  h16_gather_scalar(w: number, idx: number, out: number, nnz: number): void;
  h16_scatter_set(w: number, idx: number, saved: number, nnz: number): void;
  h16_scatter_set_scalar(w: number, idx: number, saved: number, nnz: number): void;
  /** saved[j] = w[idx[j]]; w[idx[j]] = half(f32(saved[j]) + f32(v[j] * scale)) (torch's `bf16 += f32` rule). */
  h16_gather_scatter_add(w: number, idx: number, saved: number, v: number, scale: number, nnz: number, dtype: number): void;
  h16_gather_scatter_add_scalar(w: number, idx: number, saved: number, v: number, scale: number, nnz: number, dtype: number): void;
  h16_switch_merge(w: number, idxA: number, savedA: number, nA: number, idxB: number, savedB: number, vB: number, scale: number, nB: number, dtype: number): void;
  h16_switch_merge_scalar(w: number, idxA: number, savedA: number, nA: number, idxB: number, savedB: number, vB: number, scale: number, nB: number, dtype: number): void;
  [name: string]: unknown;
}
