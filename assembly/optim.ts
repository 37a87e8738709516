// Optimizer updates over a value array (PyTorch semantics).
//   SGD:   g' = g + wd * p; buf = first ? g' : momentum * buf + (1 - dampening) * g';
//          d = nesterov ? g' + momentum * buf : buf (d = g' when momentum == 0); p -= lr * d
//   AdamW: p *= 1 - lr * wd; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
//          p -= lr * (m / bc1) / (sqrt(v / bc2) + eps)      (bc1 = 1 - b1^t, bc2 = 1 - b2^t)

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
  f32_sgd_scalar(p, g, buf, n, lr, momentum, dampening, wd, nesterov, first);
}
export function f32_adamw(p: usize, g: usize, m: usize, v: usize, n: i32, lr: f32, beta1: f32, beta2: f32, eps: f32, wd: f32, bc1: f32, bc2: f32): void {
  f32_adamw_scalar(p, g, m, v, n, lr, beta1, beta2, eps, wd, bc1, bc2);
}
