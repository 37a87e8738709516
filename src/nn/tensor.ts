/**
 * Tensors: a shape plus f32 storage in wasm memory (row-major, contiguous).
 *
 * ```ts
 * const x = Tensor.from([1, 2, 3, 4, 5, 6], [2, 3]);
 * x.shape;            // [2, 3]
 * x.toArray();        // Float32Array [1, 2, 3, 4, 5, 6] (a copy)
 * x.data[0] = 7;      // a live view on wasm memory (re-read after allocations)
 * x.free();           // explicit; also freed when garbage collected
 * ```
 */
import { ShapeError, StateError } from "../errors.js";
import { runtime, type F32Buffer } from "../runtime/runtime.js";

/** Anything with a shape and f32-convertible data: a `Tensor`, a safetensors entry, a plain object. */
export interface TensorLike {
  readonly shape: readonly number[];
  readonly data: ArrayLike<number>;
}

/** Number of elements of a shape. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function checkShape(shape: readonly number[], what: string): void {
  if (!Array.isArray(shape)) {
    throw new ShapeError("SHAPE_MISMATCH", `${what}: shape must be an array of sizes, got ${shape === null ? "null" : typeof shape}`, { argument: "shape", shape });
  }
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new ShapeError("SHAPE_MISMATCH", `${what}: invalid shape [${shape.join(", ")}]`, { shape });
  }
}

// Frees the wasm block of a tensor that was garbage collected without `free()`.
const finalizer =
  typeof FinalizationRegistry === "function" ? new FinalizationRegistry<F32Buffer>((buf) => buf.free()) : null;

export class Tensor {
  /** Always `"F32"`: lets a tensor be passed to `writeSafetensors` directly. */
  readonly dtype = "F32" as const;
  #shape: number[];
  #buf: F32Buffer;
  #owner: Tensor | null;

  /** @internal Use {@link Tensor.from}, {@link Tensor.zeros} or {@link Tensor.empty}. */
  constructor(buf: F32Buffer, shape: readonly number[], owner: Tensor | null = null) {
    this.#buf = buf;
    this.#shape = shape.slice();
    this.#owner = owner;
    if (owner === null && finalizer) finalizer.register(this, buf, this);
  }

  /** A tensor holding a copy of `data` (default shape: `[data.length]`). */
  static from(data: ArrayLike<number> | TensorLike, shape?: readonly number[]): Tensor {
    if (data === null || typeof data !== "object" || (!isTensorLike(data) && typeof (data as ArrayLike<number>).length !== "number")) {
      throw new ShapeError("SHAPE_MISMATCH", `Tensor.from: data must be an array, a typed array or a tensor, got ${data === null ? "null" : typeof data}`, { argument: "data" });
    }
    const src = isTensorLike(data) ? data.data : data;
    const shp = shape ?? (isTensorLike(data) ? data.shape : [src.length]);
    checkShape(shp, "Tensor.from");
    if (numel(shp) !== src.length) {
      throw new ShapeError("SHAPE_MISMATCH", `Tensor.from: ${src.length} values do not fill shape [${shp.join(", ")}] (${numel(shp)} elements)`, {
        length: src.length,
        shape: shp,
      });
    }
    return new Tensor(runtime().allocF32(src, `tensor [${shp.join(", ")}]`), shp);
  }

  /** A zero-filled tensor. */
  static zeros(shape: readonly number[]): Tensor {
    checkShape(shape, "Tensor.zeros");
    return new Tensor(runtime().allocF32(numel(shape), `tensor [${shape.join(", ")}]`), shape);
  }

  /** A tensor filled with `value`. */
  static full(shape: readonly number[], value: number): Tensor {
    const t = Tensor.zeros(shape);
    t.data.fill(value);
    return t;
  }

  /** An uninitialized-by-contract tensor (currently zeroed). */
  static empty(shape: readonly number[]): Tensor {
    return Tensor.zeros(shape);
  }

  get shape(): number[] {
    return this.#shape.slice();
  }
  /** Number of dimensions. */
  get ndim(): number {
    return this.#shape.length;
  }
  /** Number of elements. */
  get size(): number {
    return this.#buf.length;
  }
  /** Size of dimension `i` (negative counts from the end). */
  dim(i: number): number {
    const d = this.#shape[i < 0 ? this.#shape.length + i : i];
    if (d === undefined) throw new ShapeError("SHAPE_MISMATCH", `dimension ${i} out of range for shape [${this.#shape.join(", ")}]`);
    return d;
  }
  /** Byte offset of the data in wasm memory. */
  get ptr(): number {
    return this.#buf.ptr;
  }
  /** A live Float32Array view on the data (re-derived after memory growth; do not keep across allocations). */
  get data(): Float32Array {
    return this.#buf.view;
  }
  /** The wasm storage. @internal */
  get buffer(): F32Buffer {
    return this.#buf;
  }
  get freed(): boolean {
    return this.#buf.freed;
  }

  /** A copy of the data. */
  toArray(): Float32Array {
    return this.#buf.toArray();
  }

  /** Nested JS arrays (for printing and tests). */
  toNested(): unknown {
    const d = this.data;
    const shp = this.#shape;
    const rec = (dim: number, off: number): unknown => {
      if (dim === shp.length) return d[off];
      const stride = numel(shp.slice(dim + 1));
      return Array.from({ length: shp[dim] }, (_, i) => rec(dim + 1, off + i * stride));
    };
    return rec(0, 0);
  }

  /** A tensor sharing this storage with another shape of the same size (no copy). */
  reshape(shape: readonly number[]): Tensor {
    const s = shape.slice();
    const neg = s.indexOf(-1);
    if (neg >= 0) s[neg] = this.size / numel(s.filter((_, i) => i !== neg));
    checkShape(s, "reshape");
    if (numel(s) !== this.size) {
      throw new ShapeError("SHAPE_MISMATCH", `reshape: cannot view [${this.#shape.join(", ")}] as [${shape.join(", ")}]`);
    }
    return new Tensor(this.#buf, s, this.#owner ?? this);
  }

  /** A deep copy. */
  clone(): Tensor {
    return new Tensor(runtime().allocF32(this.data), this.#shape);
  }

  /** Copies values from `src` (same number of elements). */
  copyFrom(src: ArrayLike<number> | TensorLike): this {
    const d = isTensorLike(src) ? src.data : src;
    if (d.length !== this.size) {
      throw new ShapeError("SHAPE_MISMATCH", `copyFrom: ${d.length} values into a tensor of shape [${this.#shape.join(", ")}]`);
    }
    this.data.set(d);
    return this;
  }

  /** Frees the wasm storage (a reshaped view frees nothing; free the original). Idempotent. */
  free(): void {
    if (this.#owner !== null) return;
    if (finalizer) finalizer.unregister(this);
    this.#buf.free();
  }

  toString(): string {
    return `Tensor(shape=[${this.#shape.join(", ")}])`;
  }
}

/** A trainable tensor: `requiresGrad` and an accumulated `grad` (same shape) after a backward pass. */
export class Parameter extends Tensor {
  requiresGrad = true;
  grad: Tensor | null = null;

  static override from(data: ArrayLike<number> | TensorLike, shape?: readonly number[]): Parameter {
    const t = Tensor.from(data, shape);
    return Parameter.adopt(t);
  }
  static override zeros(shape: readonly number[]): Parameter {
    return Parameter.adopt(Tensor.zeros(shape));
  }
  /** @internal Wraps the storage of `t` (which must not be used afterwards). */
  static adopt(t: Tensor): Parameter {
    const shape = t.shape;
    const buf = t.buffer;
    if (finalizer) finalizer.unregister(t);
    return new Parameter(buf, shape);
  }

  /** The gradient buffer, created (zeroed) on first use. */
  ensureGrad(): Tensor {
    if (!this.grad || this.grad.freed) this.grad = Tensor.zeros(this.shape);
    return this.grad;
  }

  /** Zeroes the gradient (keeps its buffer). */
  zeroGrad(): void {
    if (this.grad && !this.grad.freed) this.grad.data.fill(0);
  }

  override free(): void {
    this.grad?.free();
    this.grad = null;
    super.free();
  }
}

export function isTensorLike(x: unknown): x is TensorLike {
  return typeof x === "object" && x !== null && "shape" in x && "data" in x && Array.isArray((x as TensorLike).shape);
}

/** Throws a ShapeError unless `t.shape` equals `shape` (`-1` matches any size). */
export function expectShape(t: { shape: readonly number[] }, shape: readonly number[], what: string): void {
  const s = t.shape;
  if (s.length !== shape.length || s.some((d, i) => shape[i] !== -1 && shape[i] !== d)) {
    throw new ShapeError("SHAPE_MISMATCH", `${what}: expected shape [${shape.map((d) => (d === -1 ? "*" : d)).join(", ")}], got [${s.join(", ")}]`, {
      expected: shape,
      actual: s,
    });
  }
}

export function assertLive(t: Tensor, what: string): void {
  if (!(t instanceof Tensor)) {
    const got = t === null ? "null" : Array.isArray(t) ? "an array" : typeof t === "object" ? (t as object).constructor?.name ?? "an object" : typeof t;
    throw new ShapeError("SHAPE_MISMATCH", `${what}: input x must be a Tensor, got ${got}`, { argument: "x" });
  }
  if (t.freed) throw new StateError("USE_AFTER_FREE", `${what}: tensor was freed`);
}
