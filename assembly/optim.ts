// Optimizer updates over a value array (PyTorch semantics).
//   SGD:   g' = g + wd * p; buf = first ? g' : momentum * buf + (1 - dampening) * g';
//          d = nesterov ? g' + momentum * buf : buf (d = g' when momentum == 0); p -= lr * d
//   AdamW: p *= 1 - lr * wd; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
//          p -= lr * (m / bc1) / (sqrt(v / bc2) + eps)      (bc1 = 1 - b1^t, bc2 = 1 - b2^t)
// Evaluated as in torch.optim's single-tensor loops: (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps).
//
// SIMD forms: the same f32 operations in the same order on f32x4 lanes (sqrt is correctly rounded in both),
// so they are bit-identical to the `_scalar` twins; the flags are uniform, so the branches are hoisted.

export function f32_sgd_scalar(p: usize, g: usize, buf: usize, n: i32, lr: f32, momentum: f32, dampening: f32, wd: f32, nesterov: i32, first: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    let d = load<f32>(g + o);
    const pv = load<f32>(p + o);
    if (wd != 0) d += wd * pv;
    if (momentum != 0) {
      const b: f32 = first ? d : momentum * load<f32>(buf + o) + (1 - dampening) * d;
      store<f32>(buf + o, b);
      d = nesterov ? d + momentum * b : b;
    }
    store<f32>(p + o, pv - lr * d);
  }
}

export function f32_adamw_scalar(p: usize, g: usize, m: usize, v: usize, n: i32, lr: f32, beta1: f32, beta2: f32, eps: f32, wd: f32, bc1: f32, bc2: f32): void {
  const decay: f32 = 1 - lr * wd;
  const bc2s = <f32>Math.sqrt(<f64>bc2);
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    const gv = load<f32>(g + o);
    const mv = beta1 * load<f32>(m + o) + (1 - beta1) * gv;
    const vv = beta2 * load<f32>(v + o) + (1 - beta2) * gv * gv;
    store<f32>(m + o, mv);
    store<f32>(v + o, vv);
    const denom = <f32>Math.sqrt(<f64>vv) / bc2s + eps;
    store<f32>(p + o, load<f32>(p + o) * decay - (lr / bc1) * mv / denom);
  }
}

export function f32_sgd(p: usize, g: usize, buf: usize, n: i32, lr: f32, momentum: f32, dampening: f32, wd: f32, nesterov: i32, first: i32): void {
  const lrv = f32x4.splat(lr), wdv = f32x4.splat(wd), mom = f32x4.splat(momentum), damp1 = f32x4.splat(1 - dampening);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    let d = v128.load(g + o);
    const pv = v128.load(p + o);
    if (wd != 0) d = f32x4.add(d, f32x4.mul(wdv, pv));
    if (momentum != 0) {
      const b = first ? d : f32x4.add(f32x4.mul(mom, v128.load(buf + o)), f32x4.mul(damp1, d));
      v128.store(buf + o, b);
      d = nesterov ? f32x4.add(d, f32x4.mul(mom, b)) : b;
    }
    v128.store(p + o, f32x4.sub(pv, f32x4.mul(lrv, d)));
  }
  if (i < n) {
    const o = <usize>i << 2;
    f32_sgd_scalar(p + o, g + o, buf + o, n - i, lr, momentum, dampening, wd, nesterov, first);
  }
}

export function f32_adamw(p: usize, g: usize, m: usize, v: usize, n: i32, lr: f32, beta1: f32, beta2: f32, eps: f32, wd: f32, bc1: f32, bc2: f32): void {
  const decay = f32x4.splat(1 - lr * wd);
  const bc2s = f32x4.splat(<f32>Math.sqrt(<f64>bc2));
  const b1 = f32x4.splat(beta1), b1c = f32x4.splat(1 - beta1), b2 = f32x4.splat(beta2), b2c = f32x4.splat(1 - beta2);
  const epsv = f32x4.splat(eps), step = f32x4.splat(lr / bc1);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const gv = v128.load(g + o);
    const mv = f32x4.add(f32x4.mul(b1, v128.load(m + o)), f32x4.mul(b1c, gv));
    const vv = f32x4.add(f32x4.mul(b2, v128.load(v + o)), f32x4.mul(f32x4.mul(b2c, gv), gv));
    v128.store(m + o, mv);
    v128.store(v + o, vv);
    const denom = f32x4.add(f32x4.div(f32x4.sqrt(vv), bc2s), epsv);
    v128.store(p + o, f32x4.sub(f32x4.mul(v128.load(p + o), decay), f32x4.div(f32x4.mul(step, mv), denom)));
  }
  if (i < n) {
    const o = <usize>i << 2;
    f32_adamw_scalar(p + o, g + o, m + o, v + o, n - i, lr, beta1, beta2, eps, wd, bc1, bc2);
  }
}
