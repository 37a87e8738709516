// Scatter / gather over flat indices (row * K + col, ascending) into a dense f32 weight: the fused switch.
//   f32_scatter_add:     w[idx[j]] += scale * v[j]            (product rounded to f32, then one f32 add)
//   f32_scatter_sub:     w[idx[j]] -= scale * v[j]
//   f32_scatter_set:     w[idx[j]]  = v[j]
//   f32_scatter_set_add: w[idx[j]]  = base[j] + scale * v[j]
//   f32_gather:          out[j]     = w[idx[j]]
//
// Random access, so the fast forms are unrolled 8x (independent address computations, one loop test per 8
// positions, index/value loads with immediate offsets) and never vectorize the read-modify-writes: each
// element's load, f32 product, f32 add and store complete in index order, exactly as the scalar twins, so the
// results are bit-identical even if an index repeated.

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
  let j = 0;
  for (; j + 8 <= nnz; j += 8) {
    const q = idx + (<usize>j << 2), u = v + (<usize>j << 2);
    let p = w + (<usize>load<u32>(q, 0) << 2);
    store<f32>(p, load<f32>(p) + load<f32>(u) * scale);
    p = w + (<usize>load<u32>(q, 4) << 2);
    store<f32>(p, load<f32>(p) + load<f32>(u, 4) * scale);
    p = w + (<usize>load<u32>(q, 8) << 2);
    store<f32>(p, load<f32>(p) + load<f32>(u, 8) * scale);
    p = w + (<usize>load<u32>(q, 12) << 2);
    store<f32>(p, load<f32>(p) + load<f32>(u, 12) * scale);
    p = w + (<usize>load<u32>(q, 16) << 2);
    store<f32>(p, load<f32>(p) + load<f32>(u, 16) * scale);
    p = w + (<usize>load<u32>(q, 20) << 2);
    store<f32>(p, load<f32>(p) + load<f32>(u, 20) * scale);
    p = w + (<usize>load<u32>(q, 24) << 2);
    store<f32>(p, load<f32>(p) + load<f32>(u, 24) * scale);
    p = w + (<usize>load<u32>(q, 28) << 2);
    store<f32>(p, load<f32>(p) + load<f32>(u, 28) * scale);
  }
  if (j < nnz) f32_scatter_add_scalar(w, idx + (<usize>j << 2), v + (<usize>j << 2), scale, nnz - j);
}

export function f32_scatter_sub(w: usize, idx: usize, v: usize, scale: f32, nnz: i32): void {
  let j = 0;
  for (; j + 8 <= nnz; j += 8) {
    const q = idx + (<usize>j << 2), u = v + (<usize>j << 2);
    let p = w + (<usize>load<u32>(q, 0) << 2);
    store<f32>(p, load<f32>(p) - load<f32>(u) * scale);
    p = w + (<usize>load<u32>(q, 4) << 2);
    store<f32>(p, load<f32>(p) - load<f32>(u, 4) * scale);
    p = w + (<usize>load<u32>(q, 8) << 2);
    store<f32>(p, load<f32>(p) - load<f32>(u, 8) * scale);
    p = w + (<usize>load<u32>(q, 12) << 2);
    store<f32>(p, load<f32>(p) - load<f32>(u, 12) * scale);
    p = w + (<usize>load<u32>(q, 16) << 2);
    store<f32>(p, load<f32>(p) - load<f32>(u, 16) * scale);
    p = w + (<usize>load<u32>(q, 20) << 2);
    store<f32>(p, load<f32>(p) - load<f32>(u, 20) * scale);
    p = w + (<usize>load<u32>(q, 24) << 2);
    store<f32>(p, load<f32>(p) - load<f32>(u, 24) * scale);
    p = w + (<usize>load<u32>(q, 28) << 2);
    store<f32>(p, load<f32>(p) - load<f32>(u, 28) * scale);
  }
  if (j < nnz) f32_scatter_sub_scalar(w, idx + (<usize>j << 2), v + (<usize>j << 2), scale, nnz - j);
}

export function f32_scatter_set(w: usize, idx: usize, v: usize, nnz: i32): void {
  let j = 0;
  for (; j + 8 <= nnz; j += 8) {
    const q = idx + (<usize>j << 2), u = v + (<usize>j << 2);
    store<f32>(w + (<usize>load<u32>(q, 0) << 2), load<f32>(u));
    store<f32>(w + (<usize>load<u32>(q, 4) << 2), load<f32>(u, 4));
    store<f32>(w + (<usize>load<u32>(q, 8) << 2), load<f32>(u, 8));
    store<f32>(w + (<usize>load<u32>(q, 12) << 2), load<f32>(u, 12));
    store<f32>(w + (<usize>load<u32>(q, 16) << 2), load<f32>(u, 16));
    store<f32>(w + (<usize>load<u32>(q, 20) << 2), load<f32>(u, 20));
    store<f32>(w + (<usize>load<u32>(q, 24) << 2), load<f32>(u, 24));
    store<f32>(w + (<usize>load<u32>(q, 28) << 2), load<f32>(u, 28));
  }
  if (j < nnz) f32_scatter_set_scalar(w, idx + (<usize>j << 2), v + (<usize>j << 2), nnz - j);
}

export function f32_scatter_set_add(w: usize, idx: usize, base: usize, v: usize, scale: f32, nnz: i32): void {
  let j = 0;
  for (; j + 8 <= nnz; j += 8) {
    const q = idx + (<usize>j << 2), u = v + (<usize>j << 2), b = base + (<usize>j << 2);
    store<f32>(w + (<usize>load<u32>(q, 0) << 2), load<f32>(b) + load<f32>(u) * scale);
    store<f32>(w + (<usize>load<u32>(q, 4) << 2), load<f32>(b, 4) + load<f32>(u, 4) * scale);
    store<f32>(w + (<usize>load<u32>(q, 8) << 2), load<f32>(b, 8) + load<f32>(u, 8) * scale);
    store<f32>(w + (<usize>load<u32>(q, 12) << 2), load<f32>(b, 12) + load<f32>(u, 12) * scale);
    store<f32>(w + (<usize>load<u32>(q, 16) << 2), load<f32>(b, 16) + load<f32>(u, 16) * scale);
    store<f32>(w + (<usize>load<u32>(q, 20) << 2), load<f32>(b, 20) + load<f32>(u, 20) * scale);
    store<f32>(w + (<usize>load<u32>(q, 24) << 2), load<f32>(b, 24) + load<f32>(u, 24) * scale);
    store<f32>(w + (<usize>load<u32>(q, 28) << 2), load<f32>(b, 28) + load<f32>(u, 28) * scale);
  }
  if (j < nnz) f32_scatter_set_add_scalar(w, idx + (<usize>j << 2), base + (<usize>j << 2), v + (<usize>j << 2), scale, nnz - j);
}

/** out[j] = w[idx[j]]: 4 gathered loads assembled into one v128 store. */
export function f32_gather(w: usize, idx: usize, out: usize, nnz: i32): void {
  let j = 0;
  for (; j + 8 <= nnz; j += 8) {
    const q = idx + (<usize>j << 2), o = out + (<usize>j << 2);
    let a = f32x4.splat(load<f32>(w + (<usize>load<u32>(q, 0) << 2)));
    a = f32x4.replace_lane(a, 1, load<f32>(w + (<usize>load<u32>(q, 4) << 2)));
    a = f32x4.replace_lane(a, 2, load<f32>(w + (<usize>load<u32>(q, 8) << 2)));
    a = f32x4.replace_lane(a, 3, load<f32>(w + (<usize>load<u32>(q, 12) << 2)));
    let b = f32x4.splat(load<f32>(w + (<usize>load<u32>(q, 16) << 2)));
    b = f32x4.replace_lane(b, 1, load<f32>(w + (<usize>load<u32>(q, 20) << 2)));
    b = f32x4.replace_lane(b, 2, load<f32>(w + (<usize>load<u32>(q, 24) << 2)));
    b = f32x4.replace_lane(b, 3, load<f32>(w + (<usize>load<u32>(q, 28) << 2)));
    v128.store(o, a);
    v128.store(o, b, 16);
  }
  if (j < nnz) f32_gather_scalar(w, idx + (<usize>j << 2), out + (<usize>j << 2), nnz - j);
}
