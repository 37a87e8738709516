// Scatter / gather over flat indices (row * K + col, ascending) into a dense f32 weight: the fused switch.
//   f32_scatter_add:     w[idx[j]] += scale * v[j]            (product rounded to f32, then one f32 add)
//   f32_scatter_sub:     w[idx[j]] -= scale * v[j]
//   f32_scatter_set:     w[idx[j]]  = v[j]
//   f32_scatter_set_add: w[idx[j]]  = base[j] + scale * v[j]
//   f32_gather:          out[j]     = w[idx[j]]

export function f32_scatter_add_scalar(w: usize, idx: usize, v: usize, scale: f32, nnz: i32): void {
  for (let j = 0; j < nnz; j++) {
    const p = w + (<usize>load<u32>(idx + (<usize>j << 2)) << 2);
    store<f32>(p, load<f32>(p) + load<f32>(v + (<usize>j << 2)) * scale);
  }
}

export function f32_scatter_sub_scalar(w: usize, idx: usize, v: usize, scale: f32, nnz: i32): void {
  for (let j = 0; j < nnz; j++) {
    const p = w + (<usize>load<u32>(idx + (<usize>j << 2)) << 2);
    store<f32>(p, load<f32>(p) - load<f32>(v + (<usize>j << 2)) * scale);
  }
}

export function f32_scatter_set_scalar(w: usize, idx: usize, v: usize, nnz: i32): void {
  for (let j = 0; j < nnz; j++) {
    store<f32>(w + (<usize>load<u32>(idx + (<usize>j << 2)) << 2), load<f32>(v + (<usize>j << 2)));
  }
}

export function f32_scatter_set_add_scalar(w: usize, idx: usize, base: usize, v: usize, scale: f32, nnz: i32): void {
  for (let j = 0; j < nnz; j++) {
    store<f32>(w + (<usize>load<u32>(idx + (<usize>j << 2)) << 2), load<f32>(base + (<usize>j << 2)) + load<f32>(v + (<usize>j << 2)) * scale);
  }
}

export function f32_gather_scalar(w: usize, idx: usize, out: usize, nnz: i32): void {
  for (let j = 0; j < nnz; j++) {
    store<f32>(out + (<usize>j << 2), load<f32>(w + (<usize>load<u32>(idx + (<usize>j << 2)) << 2)));
  }
}

export function f32_scatter_add(w: usize, idx: usize, v: usize, scale: f32, nnz: i32): void {
  f32_scatter_add_scalar(w, idx, v, scale, nnz);
}
export function f32_scatter_sub(w: usize, idx: usize, v: usize, scale: f32, nnz: i32): void {
  f32_scatter_sub_scalar(w, idx, v, scale, nnz);
}
export function f32_scatter_set(w: usize, idx: usize, v: usize, nnz: i32): void {
  f32_scatter_set_scalar(w, idx, v, nnz);
}
export function f32_scatter_set_add(w: usize, idx: usize, base: usize, v: usize, scale: f32, nnz: i32): void {
  f32_scatter_set_add_scalar(w, idx, base, v, scale, nnz);
}
export function f32_gather(w: usize, idx: usize, out: usize, nnz: i32): void {
  f32_gather_scalar(w, idx, out, nnz);
}
