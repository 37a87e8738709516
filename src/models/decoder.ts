/**
 * `DecoderModel`: one decoder core for every family (OPT, GPT-2, Llama, Mistral, Qwen2). It builds the Hugging
 * Face module tree from a family table and a config (so `namedModules()` yields `model.layers.0.self_attn.q_proj`
 * or `transformer.h.0.attn.c_attn`, and PEFT's target matching and adapter keys work unchanged), then runs the
 * single layer loop for prefill and decode:
 *
 * ```
 *   h = embed(ids) [+ pos(positions)]                              (OPT: project_in first)
 *   for each layer:  x = norm(h);  q,k,v = proj(x);  rope(q,k);  cache(k,v);  h += o(attn(q, cache))
 *                    x = norm(h);  h += down(act(gate(x)) * up(x))   |   h += down(act(up(x)))
 *                    (OPT post-LN: the norms come after the residual adds instead)
 *   logits = head(finalNorm(h))                                     (OPT: project_out before the head)
 * ```
 *
 * Every step is one wasm kernel over preallocated buffers (the workspace grows only when a call has more rows
 * than any before), so a decode step allocates nothing. The dense layers are whatever sits in the tree: a
 * `Linear`/`Conv1D`, or after `getPeftModel` a `ShiraLinear`/`LoraLinear` (fused or unfused adapters).
 *
 * ```ts
 * const lm = await AutoModelForCausalLM.fromPretrained("models/Qwen2.5-0.5B");
 * const logits = lm.forward([[1, 2, 3]]);            // Tensor [1, 3, vocab]
 * const out = await lm.generate([[1, 2, 3]], { maxNewTokens: 20 });
 * ```
 */
import { ConfigError, ShapeError, StateError } from "../errors.js";
import { Linear } from "../nn/linear.js";
import { HalfConv1D, HalfEmbedding, HalfLinear, type HalfDtype } from "../nn/half.js";
import { Module } from "../nn/module.js";
import { Container } from "../nn/containers.js";
import { Embedding, LayerNorm } from "../nn/norm.js";
import { Parameter, Tensor } from "../nn/tensor.js";
import { Rng } from "../nn/random.js";
import { saveModelToDir, type SaveModelOptions } from "./save.js";
import { runtime, type F32Buffer, type I32Buffer, type Runtime } from "../runtime/runtime.js";
import type { DecoderConfig } from "./config.js";
import type { DecoderFamily, GlobalRole, LayerRole } from "./family.js";
import { KVCache, type KVCacheOptions } from "./kv-cache.js";
import { RotaryEmbedding } from "./rope.js";
import { Conv1D } from "../nn/conv1d.js";
import { STREAM_OP, generateTokens, streamTokens, type GenerateOptions, type GenerateResult, type GeneratedToken } from "./generate.js";

/** transformers' `LlamaRMSNorm`: `weight * (x * rsqrt(mean(x²) + eps))`, in float32. */
export class RMSNorm extends Module {
  readonly hiddenSize: number;
  readonly eps: number;
  readonly weight: Parameter;
  constructor(hiddenSize: number, eps = 1e-6) {
    super();
    this.hiddenSize = hiddenSize;
    this.eps = eps;
    this.weight = this.registerParameter("weight", Parameter.from(new Float32Array(hiddenSize).fill(1), [hiddenSize]));
  }
  forward(x: Tensor): Tensor {
    if (x.dim(-1) !== this.hiddenSize) throw new ShapeError("SHAPE_MISMATCH", `RMSNorm: last dimension ${x.dim(-1)} != ${this.hiddenSize}`);
    const y = Tensor.zeros(x.shape);
    runtime().k.f32_rmsnorm(x.ptr, this.weight.ptr, y.ptr, x.size / this.hiddenSize, this.hiddenSize, Math.fround(this.eps));
    return y;
  }
  override clone(): RMSNorm {
    return new RMSNorm(this.hiddenSize, this.eps).copyStateFrom(this);
  }
  override toString(): string {
    return `RMSNorm((${this.hiddenSize},), eps=${this.eps})`;
  }
}

/** Options of {@link DecoderModel.forward} (transformers' names in camelCase). */
export interface DecoderForwardOptions {
  /** `[batch, seq]` (or flat) 1 for real tokens, 0 for padding (left padding for generation). */
  attentionMask?: ArrayLike<number> | ArrayLike<number>[];
  /** A cache the new tokens are appended to (transformers' `past_key_values`); without one nothing is kept. */
  pastKeyValues?: KVCache;
  /** Explicit position ids `[batch, seq]` (default: transformers' generation rule `cumsum(mask) - 1`). */
  positionIds?: ArrayLike<number> | ArrayLike<number>[];
  /** Logits for every position (default) or only the last one of each row (`[batch, 1, vocab]`). */
  logits?: "all" | "last";
}

/**
 * Storage dtype of a model's base weights: `"f32"`, or `"bf16"` / `"f16"` for half-precision dense layers, token
 * embedding and head (norms, biases, learned positions and OPT's `project_in`/`project_out` stay f32).
 */
export type ModelDtype = "f32" | HalfDtype;

/** Options of the {@link DecoderModel} constructor. */
export interface DecoderModelOptions {
  /** Storage dtype of the base weights (default `"f32"`); see {@link ModelDtype}. */
  dtype?: ModelDtype;
}

/** Checks a `dtype` option, naming `what`. */
export function checkModelDtype(dtype: unknown, what: string): ModelDtype {
  if (dtype === undefined) return "f32";
  if (dtype !== "f32" && dtype !== "bf16" && dtype !== "f16") {
    throw new ConfigError("CONFIG_INVALID", `${what}: dtype must be "f32", "bf16" or "f16", got ${JSON.stringify(dtype)}`, { field: "dtype", value: dtype });
  }
  return dtype;
}

/**
 * Whether `name` is the state-dict name of a weight a model of `config` keeps half-precision under a half `dtype`:
 * the token embedding, a dense layer's weight in the layers, or the head when it is not tied to the embedding (a
 * tied head shares the embedding's table). O(1): the default dtype of `fromPretrained` asks it for every
 * checkpoint key.
 */
export function isHalfTensorName(name: string, config: DecoderConfig, family: DecoderFamily): boolean {
  if (name === "lm_head.weight") return !config.tieWordEmbeddings;
  const global = (role: GlobalRole) => family.globals.find(([r]) => r === role)?.[1];
  const root = family.root + ".";
  if (!name.startsWith(root) || !name.endsWith(".weight")) return false;
  const rest = name.slice(root.length, -".weight".length);
  if (rest === global("embed")) return true;
  const m = /^([^.]+)\.(\d+)\.(.+)$/.exec(rest);
  if (!m || m[1] !== global("layers") || Number(m[2]) >= config.numLayers || String(Number(m[2])) !== m[2]) return false;
  return family.layer.some(([role, path]) => path === m[3] && role !== "attnNorm" && role !== "mlpNorm");
}

type DenseLayer = Module & { inFeatures: number; outFeatures: number };
/** @internal The modules of one layer, by role (the live ones: adapted layers and modules_to_save copies). */
export interface LayerSlots {
  attnNorm: Module | null;
  q: DenseLayer | null;
  k: DenseLayer | null;
  v: DenseLayer | null;
  qkv: DenseLayer | null;
  o: DenseLayer;
  mlpNorm: Module | null;
  gate: DenseLayer | null;
  up: DenseLayer;
  down: DenseLayer;
}

/** Pre-allocated activations for up to `rows` tokens. */
class Workspace {
  rows = 0;
  bufs = new Map<string, F32Buffer>();
  ints = new Map<string, I32Buffer>();
  #sizes: Record<string, number>;
  constructor(sizes: Record<string, number>) {
    this.#sizes = sizes;
  }
  ensure(rows: number, extra: Record<string, number>): void {
    const want = Object.entries(extra);
    const need = rows > this.rows || want.some(([k, n]) => (this.bufs.get(k)?.length ?? -1) < n);
    if (!need) return;
    const rt = runtime();
    const r = Math.max(rows, this.rows);
    const next = new Map<string, F32Buffer>();
    const nextInts = new Map<string, I32Buffer>();
    try {
      for (const [k, per] of Object.entries(this.#sizes)) next.set(k, rt.allocF32(Math.max(1, r * per)));
      for (const [k, n] of want) next.set(k, rt.allocF32(Math.max(1, n, this.bufs.get(k)?.length ?? 0)));
      nextInts.set("ids", rt.allocI32(r));
      nextInts.set("pos", rt.allocI32(r));
    } catch (e) {
      for (const b of next.values()) b.free();
      for (const b of nextInts.values()) b.free();
      throw e;
    }
    this.free();
    this.bufs = next;
    this.ints = nextInts;
    this.rows = r;
  }
  f(name: string): number {
    return this.bufs.get(name)!.ptr;
  }
  i(name: string): I32Buffer {
    return this.ints.get(name)!;
  }
  free(): void {
    for (const b of this.bufs.values()) b.free();
    for (const b of this.ints.values()) b.free();
    this.bufs = new Map();
    this.ints = new Map();
    this.rows = 0;
  }
}

/** Runs a dense layer (any kind) from `x` into `y`, `rows` rows, without allocating when the layer allows. */
function denseInto(rt: Runtime, m: Module, x: number, y: number, rows: number, inF: number, outF: number): void {
  const fi = (m as { forwardInto?: (x: number, y: number, rows: number) => void }).forwardInto;
  if (typeof fi === "function") {
    fi.call(m, x, y, rows);
    return;
  }
  if (m instanceof Linear) {
    rt.k.f32_gemm_nt(x, m.weight.ptr, m.bias ? m.bias.ptr : 0, y, rows, inF, outF, 0);
    return;
  }
  // any other module (a modules_to_save wrapper, a custom layer): through its Tensor forward
  const xt = Tensor.from(new Float32Array(rt.memory.buffer, x, rows * inF).slice(), [rows, inF]);
  try {
    const out = m.forward(xt);
    new Float32Array(rt.memory.buffer, y, rows * outF).set(out.data);
    out.free();
  } finally {
    xt.free();
  }
}

/** The module a modules_to_save wrapper currently runs (duck-typed: models do not import adapters). */
function effective(m: Module): Module {
  const w = m as unknown as { originalModule?: Module; activeAdapter?: string | null; disabled?: boolean; copy?: (n: string) => Module | null };
  if (w.originalModule && typeof w.copy === "function") {
    if (w.disabled || !w.activeAdapter) return w.originalModule;
    return w.copy(w.activeAdapter) ?? w.originalModule;
  }
  return m;
}

function normParams(m: Module): { w: number; b: number; eps: number; kind: "rms" | "layer" } {
  const e = effective(m);
  if (e instanceof RMSNorm) return { w: e.weight.ptr, b: 0, eps: e.eps, kind: "rms" };
  if (e instanceof LayerNorm) return { w: e.weight ? e.weight.ptr : 0, b: e.bias ? e.bias.ptr : 0, eps: e.eps, kind: "layer" };
  throw new StateError("ADAPTER_STATE", `${e.constructor.name} cannot be used as a decoder norm`);
}

/** Typed errors for a missing or wrong-typed ids argument or options object (never a raw TypeError). */
export function checkIdsArgument(x: unknown, what: string): void {
  if (x === null || typeof x !== "object" || typeof (x as { length?: unknown }).length !== "number") {
    throw new ShapeError("SHAPE_MISMATCH", `${what} must be an array of token ids or of rows of them, got ${x === null ? "null" : typeof x}`, { argument: what });
  }
}

export function checkOptionsArgument(opts: unknown, what: string): void {
  if (opts === null || typeof opts !== "object") throw new ConfigError("CONFIG_INVALID", `${what}: opts must be an object, got ${opts === null ? "null" : typeof opts}`, { argument: "opts" });
}

function flatInts(x: ArrayLike<number> | ArrayLike<number>[], what: string): { data: number[]; rows: number; cols: number } {
  checkIdsArgument(x, what);
  const first = (x as ArrayLike<unknown>)[0];
  if (x.length > 0 && typeof first === "object" && first !== null) {
    const rows = x as ArrayLike<number>[];
    const cols = rows[0].length;
    const data: number[] = [];
    for (let r = 0; r < rows.length; r++) {
      const row = rows[r] as unknown;
      if (typeof row !== "object" || row === null || typeof (row as ArrayLike<number>).length !== "number") {
        throw new ShapeError("SHAPE_MISMATCH", `${what}: row ${r} is ${row === null ? "null" : typeof row}, not a list of numbers`, { row: r });
      }
      if (rows[r].length !== cols) throw new ShapeError("SHAPE_MISMATCH", `${what}: row ${r} has ${rows[r].length} entries, row 0 has ${cols}`, { row: r });
      for (let c = 0; c < cols; c++) data.push(Number(rows[r][c]));
    }
    return { data, rows: rows.length, cols };
  }
  const flat = Array.from(x as ArrayLike<number>, Number);
  return { data: flat, rows: 1, cols: flat.length };
}

export class DecoderModel extends Module {
  readonly config: DecoderConfig;
  readonly family: DecoderFamily;
  /** `generation_config.json` values (camelCase), when the checkpoint has one. */
  generationConfig: Record<string, unknown> = {};
  /** The base model (`model`, `model.decoder` or `transformer`). */
  readonly base: Module;
  readonly lmHead: Linear | HalfLinear;
  /** Storage dtype of the base weights (see {@link ModelDtype}). */
  readonly dtype: ModelDtype;
  #layers: Module[] = [];
  #slots: LayerSlots[] = [];
  #slotsGen = -1;
  #globals = new Map<GlobalRole, Module>();
  #rope: RotaryEmbedding | null;
  #ws: Workspace;
  #disposed = false;
  /** The generation or training running on this model (`"generate"` / `"stream"` / `"train"`), or null. */
  #busy: string | null = null;

  /** Builds the module tree with zeroed weights (use `AutoModelForCausalLM.fromPretrained` to load a checkpoint). */
  constructor(config: DecoderConfig, family: DecoderFamily, opts: DecoderModelOptions = {}) {
    super();
    checkOptionsArgument(opts, "DecoderModel");
    const dtype = checkModelDtype(opts.dtype, "DecoderModel");
    this.dtype = dtype;
    // every tensor or none: a failed allocation frees the ones already made
    const rt = runtime();
    const tx = rt.beginTransaction();
    try {
      this.config = config;
      this.family = family;
      const c = config;
      // the root path (`model.decoder`): nested containers
      const rootParts = family.root.split(".");
      let parent: Module = this;
      for (const p of rootParts) parent = parent.registerModule(p, new Container());
      this.base = parent;
      const has = (r: GlobalRole) => (family.has ? family.has(r, c) : true);
      const norm = (): Module => (family.norm === "rms" ? new RMSNorm(c.hiddenSize, c.normEps) : new LayerNorm(c.hiddenSize, { eps: c.normEps }));
      const dense = (inF: number, outF: number, bias: boolean): DenseLayer =>
        family.linear === "conv1d"
          ? dtype !== "f32"
            ? new HalfConv1D(outF, inF, { bias, dtype })
            : new Conv1D(outF, inF, { bias, init: false })
          : dtype !== "f32"
            ? new HalfLinear(inF, outF, { bias, dtype })
            : new Linear(inF, outF, { bias, init: false });
      for (const [role, name] of family.globals) {
        if (!has(role)) continue;
        let m: Module;
        switch (role) {
          case "embed":
            m = dtype !== "f32" ? new HalfEmbedding(c.vocabSize, c.wordEmbedProjDim, { dtype }) : new Embedding(c.vocabSize, c.wordEmbedProjDim, { init: false });
            break;
          case "pos":
            m = new Embedding(c.maxPositions + family.positionOffset, c.hiddenSize, { init: false });
            break;
          case "projIn":
            m = new Linear(c.wordEmbedProjDim, c.hiddenSize, { bias: false, init: false });
            break;
          case "projOut":
            m = new Linear(c.hiddenSize, c.wordEmbedProjDim, { bias: false, init: false });
            break;
          case "finalNorm":
            m = norm();
            break;
          case "layers": {
            const list = new Container();
            for (let l = 0; l < c.numLayers; l++) {
              const layer = list.registerModule(String(l), new Container());
              this.#layers.push(layer);
              for (const [lr, path] of family.layer) {
                const parts = path.split(".");
                let at: Module = layer;
                for (const p of parts.slice(0, -1)) {
                  const existing = at.namedChildren().find(([n]) => n === p)?.[1];
                  at = existing ?? at.registerModule(p, new Container());
                }
                at.registerModule(parts[parts.length - 1], this.#makeLayerModule(lr, dense, norm));
              }
            }
            m = list;
            break;
          }
        }
        this.#globals.set(role, parent.registerModule(name, m));
      }
      const embed = this.#globals.get("embed")!;
      this.lmHead = this.registerModule(
        "lm_head",
        embed instanceof HalfEmbedding
          ? new HalfLinear(c.wordEmbedProjDim, c.vocabSize, { bias: false, dtype: embed.dtype, ...(c.tieWordEmbeddings ? { weightBits: embed.weight } : {}) })
          : new Linear(c.wordEmbedProjDim, c.vocabSize, { bias: false, init: false, ...(c.tieWordEmbeddings ? { weight: (embed as Embedding).weight } : {}) }),
      );
      this.#rope = c.rope ? new RotaryEmbedding(c.rope, c.maxPositions) : null;
      const qkvOut = (c.numHeads + 2 * c.numKvHeads) * c.headDim;
      this.#ws = new Workspace({
        h: c.hiddenSize,
        x: Math.max(c.hiddenSize, c.wordEmbedProjDim),
        e: c.wordEmbedProjDim,
        q: family.linear === "conv1d" ? qkvOut : c.numHeads * c.headDim,
        k: c.numKvHeads * c.headDim,
        v: c.numKvHeads * c.headDim,
        attn: c.numHeads * c.headDim,
        tmp: Math.max(c.hiddenSize, c.wordEmbedProjDim),
        g: c.intermediateSize,
        u: c.intermediateSize,
      });
    } catch (e) {
      rt.endTransaction(tx, false);
      throw e;
    }
    rt.endTransaction(tx, true);
    this.eval();
  }

  #makeLayerModule(role: LayerRole, dense: (i: number, o: number, b: boolean) => DenseLayer, norm: () => Module): Module {
    const c = this.config;
    const H = c.hiddenSize;
    const qDim = c.numHeads * c.headDim;
    const kvDim = c.numKvHeads * c.headDim;
    switch (role) {
      case "attnNorm":
      case "mlpNorm":
        return norm();
      case "q":
        return dense(H, qDim, c.qkvBias);
      case "k":
      case "v":
        return dense(H, kvDim, c.qkvBias);
      case "qkv":
        return dense(H, qDim + 2 * kvDim, c.qkvBias);
      case "o":
        return dense(qDim, H, c.oBias);
      case "gate":
      case "up":
        return dense(H, c.intermediateSize, c.mlpBias);
      case "down":
        return dense(c.intermediateSize, H, c.mlpBias);
    }
  }

  /**
   * PEFT's default `target_modules` for this model type (`TRANSFORMERS_MODELS_TO_SHIRA_TARGET_MODULES_MAPPING`), used
   * by `getPeftModel` when the config names none: `q_proj`/`v_proj`, GPT-2's `c_attn`.
   */
  get defaultTargetModules(): string[] {
    this.#check();
    return [...this.family.defaultTargets];
  }

  /** Module paths (HF names) of a layer's roles, e.g. `model.layers.3.self_attn.q_proj`. */
  modulePath(role: LayerRole, layer: number): string {
    this.#check();
    const path = this.family.layer.find(([r]) => r === role)?.[1];
    if (path === undefined) throw new ShapeError("SHAPE_MISMATCH", `${this.config.modelType} has no "${role}" module`);
    const layersName = this.family.globals.find(([r]) => r === "layers")![1];
    return `${this.family.root}.${layersName}.${layer}.${path}`;
  }

  #resolve(): LayerSlots[] {
    if (this.#slotsGen === Module.treeVersion && this.#slots.length) return this.#slots;
    this.#slots = this.#layers.map((layer) => {
      const get = (role: LayerRole): Module | null => {
        const path = this.family.layer.find(([r]) => r === role)?.[1];
        return path === undefined ? null : effective(layer.getSubmodule(path));
      };
      return {
        attnNorm: get("attnNorm"),
        q: get("q") as DenseLayer | null,
        k: get("k") as DenseLayer | null,
        v: get("v") as DenseLayer | null,
        qkv: get("qkv") as DenseLayer | null,
        o: get("o") as DenseLayer,
        mlpNorm: get("mlpNorm"),
        gate: get("gate") as DenseLayer | null,
        up: get("up") as DenseLayer,
        down: get("down") as DenseLayer,
      };
    });
    this.#slotsGen = Module.treeVersion;
    return this.#slots;
  }

  #global(role: GlobalRole): Module | null {
    const m = this.#globals.get(role);
    if (!m) return null;
    // the global may have been replaced (adapter injection): look it up again by name
    const name = this.family.globals.find(([r]) => r === role)![1];
    return effective(this.base.getSubmodule(name));
  }

  /** A KV cache for this model (freed with `dispose()`). */
  createCache(opts: KVCacheOptions): KVCache {
    this.#check();
    return new KVCache(this.config, opts);
  }

  #check(): void {
    if (this.#disposed) throw new StateError("USE_AFTER_FREE", "DecoderModel: used after dispose() (disposed)");
  }

  /**
   * The generation running on this model: `"generate"` or `"stream"` from the first step until the loop ends
   * (finished, aborted, failed, or a `stream` closed with `return()` / `break`), else null. Adapter models read it
   * to refuse structural changes meanwhile (see "Concurrency" on {@link generate}).
   */
  get busy(): string | null {
    return this.#busy;
  }

  #refuseWhileBusy(what: string): void {
    if (this.#busy !== null) {
      throw new StateError("BUSY", `DecoderModel.${what}: not allowed while ${this.#busy}() runs on this model (generations share its workspace); wait for it to end or abort it with its signal`, {
        operation: what,
        busy: this.#busy,
      });
    }
  }

  /**
   * @internal Marks a generation (or training) as running (called by the loop before it allocates); returns the
   * function that ends it. Throws `BUSY` while another one runs.
   */
  beginGeneration(what: "generate" | "stream" | "train"): () => void {
    this.#check();
    this.#refuseWhileBusy(what);
    this.#busy = what;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.#busy = null;
    };
  }

  /**
   * Training hook of `train()`: marks the model busy (generation, `dispose()` and a second `train()` are refused with
   * `BUSY` until training ends) and puts it in training mode; returns the function that ends it.
   */
  beginTraining(): () => void {
    const end = this.beginGeneration("train");
    const was = this.training;
    this.train(true);
    return () => {
      this.train(was);
      end();
    };
  }

  /** @internal The live modules of every layer, the model-level modules, the RoPE tables and the head (training pass). */
  trainingParts(): { slots: LayerSlots[]; global: (role: GlobalRole) => Module | null; rope: RotaryEmbedding | null; head: Module } {
    this.#check();
    return { slots: this.#resolve(), global: (r) => this.#global(r), rope: this.#rope, head: effective(this.getSubmodule("lm_head")) };
  }

  /**
   * Fills every weight as transformers' `_init_weights` does for a model trained from scratch: linear and embedding
   * weights from N(0, `initializer_range`) (config default 0.02), biases 0, norm weights 1 and biases 0. Seeded.
   * ```ts
   * const lm = AutoModelForCausalLM.fromConfig(config);
   * lm.initWeights({ seed: 1 });
   * ```
   */
  initWeights(opts: { seed?: number; std?: number } = {}): void {
    this.#check();
    this.#refuseWhileBusy("initWeights");
    const raw = this.config.raw.initializer_range;
    const std = opts.std ?? (typeof raw === "number" ? raw : 0.02);
    const rng = new Rng(opts.seed ?? 0);
    const done = new Set<Parameter>();
    const doneHalf = new Set<unknown>();
    for (const [, m] of this.namedModules()) {
      // half weights first: a HalfLinear's weight, then its bias, draw in the order of a Linear's (so a half model
      // holds exactly the rounded values of the f32 model initialized with the same seed)
      for (const [, t] of m.namedOwnHalfTensors()) {
        if (doneHalf.has(t)) continue;
        doneHalf.add(t);
        const v = new Float32Array(t.size);
        for (let i = 0; i < v.length; i++) v[i] = rng.normal() * std;
        t.setFromF32(v);
      }
      for (const [name, p] of m.namedOwnParameters()) {
        if (done.has(p)) continue;
        done.add(p);
        const d = p.data;
        if (m instanceof RMSNorm || m instanceof LayerNorm) d.fill(name === "weight" ? 1 : 0);
        else if (name === "bias") d.fill(0);
        else for (let i = 0; i < d.length; i++) d[i] = rng.normal() * std;
      }
    }
  }

  /**
   * Logits for a batch of token ids: `[batch, seq, vocab]` (or `[batch, 1, vocab]` with `logits: "last"`).
   * ```ts
   * const logits = lm.forward([[5, 17, 123]]);
   * const padded = lm.forward([[1, 1, 7, 8], [4, 5, 6, 9]], { attentionMask: [[0, 0, 1, 1], [1, 1, 1, 1]] });
   * ```
   */
  override forward(inputIds: Tensor | ArrayLike<number> | ArrayLike<number>[], opts: DecoderForwardOptions = {}): Tensor {
    this.#check();
    checkOptionsArgument(opts, "DecoderModel.forward");
    let ids: { data: number[]; rows: number; cols: number };
    if (inputIds instanceof Tensor) {
      const shape = inputIds.shape;
      const d = Array.from(inputIds.data);
      ids = shape.length === 2 ? { data: d, rows: shape[0], cols: shape[1] } : { data: d, rows: 1, cols: d.length };
    } else ids = flatInts(inputIds, "inputIds");
    const B = ids.rows;
    const T = ids.cols;
    if (T === 0) throw new ShapeError("SHAPE_MISMATCH", "forward: inputIds is empty", { shape: [B, T] });
    const V = this.config.vocabSize;
    for (let i = 0; i < ids.data.length; i++) {
      const v = ids.data[i];
      if (!Number.isSafeInteger(v) || v < 0 || v >= V) throw new ShapeError("SHAPE_MISMATCH", `forward: token id ${v} at index ${i} is not in [0, ${V})`, { index: i, value: v });
    }
    let mask: number[] | null = null;
    if (opts.attentionMask !== undefined) {
      const m = flatInts(opts.attentionMask, "attentionMask");
      if (m.rows !== B || (m.cols !== T && !(opts.pastKeyValues && m.cols === opts.pastKeyValues.length + T))) {
        throw new ShapeError("SHAPE_MISMATCH", `forward: attentionMask is [${m.rows}, ${m.cols}], inputIds [${B}, ${T}]`, { mask: [m.rows, m.cols], ids: [B, T] });
      }
      // keep the entries of the new tokens (a mask over past + new is accepted, as transformers takes it)
      mask = [];
      for (let b = 0; b < B; b++) for (let t = m.cols - T; t < m.cols; t++) mask.push(m.data[b * m.cols + t]);
    }
    let positions: number[] | null = null;
    if (opts.positionIds !== undefined) {
      const p = flatInts(opts.positionIds, "positionIds");
      if (p.rows * p.cols !== B * T) throw new ShapeError("SHAPE_MISMATCH", `forward: positionIds is [${p.rows}, ${p.cols}], inputIds [${B}, ${T}]`);
      positions = p.data;
    }
    const own = opts.pastKeyValues ? null : this.createCache({ batchSize: B, maxLength: T });
    const cache = opts.pastKeyValues ?? own!;
    try {
      if (cache.batchSize !== B) throw new ShapeError("SHAPE_MISMATCH", `forward: the cache holds ${cache.batchSize} rows, inputIds ${B}`, { cache: cache.batchSize, batch: B });
      const last = opts.logits === "last";
      const out = Tensor.zeros([B, last ? 1 : T, V]);
      try {
        this.run(Int32Array.from(ids.data), B, T, cache, mask, positions, last, out.ptr);
      } catch (e) {
        out.free();
        throw e;
      }
      return out;
    } finally {
      own?.dispose();
    }
  }

  /**
   * @internal The layer loop: appends `T` tokens per row to `cache` and writes logits (all rows, or the last of
   * each batch row) to `logitsPtr`. Allocates only when the workspace must grow.
   */
  run(ids: Int32Array, B: number, T: number, cache: KVCache, mask: ArrayLike<number> | null, positions: ArrayLike<number> | null, lastOnly: boolean, logitsPtr: number): void {
    const c = this.config;
    const fam = this.family;
    const rt = runtime();
    const k = rt.k;
    const rows = B * T;
    const past = cache.length;
    if (past + T > cache.maxLength) {
      throw new ShapeError("SHAPE_MISMATCH", `forward: ${past} cached + ${T} new tokens exceed the cache's maxLength ${cache.maxLength}`, { past, new: T, maxLength: cache.maxLength });
    }
    // positions: explicit, or transformers' generation rule (real tokens count from 0, padding at padPosition)
    const pos = new Int32Array(rows);
    const next = cache.nextPosition.slice();
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const i = b * T + t;
        if (positions) pos[i] = positions[i];
        else if (mask && !mask[i]) pos[i] = fam.padPosition;
        else pos[i] = next[b]++;
      }
      if (positions) next[b] = Math.max(next[b], ...Array.from({ length: T }, (_, t) => Number(positions[b * T + t]) + 1));
    }
    let maxPos = 0;
    for (let i = 0; i < rows; i++) maxPos = Math.max(maxPos, pos[i]);
    if (fam.position === "learned") {
      const limit = c.maxPositions;
      for (let i = 0; i < rows; i++) {
        if (pos[i] >= limit || pos[i] + fam.positionOffset < 0) {
          throw new ShapeError("SHAPE_MISMATCH", `forward: position ${pos[i]} is outside the model's ${limit} learned positions`, { position: pos[i], maxPositions: limit });
        }
        pos[i] += fam.positionOffset;
      }
    } else {
      for (let i = 0; i < rows; i++) if (pos[i] < 0) throw new ShapeError("SHAPE_MISMATCH", `forward: negative position id ${pos[i]}`, { position: pos[i] });
      this.#rope!.prepare(maxPos + 1);
    }
    const outRows = lastOnly ? B : rows;
    const ws = this.#ws;
    ws.ensure(rows, { scratch: k.f32_attention_scratch(T, cache.maxLength, c.headDim), last: B * Math.max(c.hiddenSize, c.wordEmbedProjDim), lastE: B * c.wordEmbedProjDim });
    ws.i("ids").view.set(ids);
    ws.i("pos").view.set(pos);
    cache.setMask(mask, T);
    const slots = this.#resolve();
    const H = c.hiddenSize;
    const E = c.wordEmbedProjDim;
    const hd = c.headDim;
    const qDim = c.numHeads * hd;
    const kvDim = c.numKvHeads * hd;
    const h = ws.f("h");
    const x = ws.f("x");
    const tmp = ws.f("tmp");
    const idsPtr = ws.i("ids").ptr;
    const posPtr = ws.i("pos").ptr;

    // embeddings
    const embed = this.#global("embed")!;
    const embedInto = (dst: number) => {
      if (embed instanceof HalfEmbedding) k.h16_embedding(embed.weight.ptr, idsPtr, dst, rows, E, embed.dtypeCode);
      else k.f32_embedding((embed as Embedding).weight.ptr, idsPtr, dst, rows, E);
    };
    if (E !== H) {
      embedInto(ws.f("e"));
      denseInto(rt, this.#global("projIn")!, ws.f("e"), h, rows, E, H);
    } else embedInto(h);
    if (fam.position === "learned") {
      const pe = this.#global("pos") as Embedding;
      k.f32_embedding_add(pe.weight.ptr, posPtr, h, rows, H);
    }

    const norm = (m: Module, src: number, dst: number) => {
      const p = normParams(m);
      if (p.kind === "rms") k.f32_rmsnorm(src, p.w, dst, rows, H, Math.fround(p.eps));
      else k.f32_layernorm(src, p.w, p.b, dst, rows, H, Math.fround(p.eps));
    };
    const gelu = c.hiddenAct === "gelu_new" || c.hiddenAct === "gelu_pytorch_tanh";
    for (let l = 0; l < c.numLayers; l++) {
      const s = slots[l];
      const kv = cache.layer(l);
      // --- attention block
      let inp = h;
      if (c.preNorm) {
        norm(s.attnNorm!, h, x);
        inp = x;
      }
      let qPtr: number, kPtr: number, vPtr: number, qStride: number, kvStride: number;
      if (s.qkv) {
        const qkv = ws.f("q");
        denseInto(rt, s.qkv, inp, qkv, rows, H, qDim + 2 * kvDim);
        qPtr = qkv;
        kPtr = qkv + qDim * 4;
        vPtr = qkv + (qDim + kvDim) * 4;
        qStride = kvStride = qDim + 2 * kvDim;
      } else {
        qPtr = ws.f("q");
        kPtr = ws.f("k");
        vPtr = ws.f("v");
        denseInto(rt, s.q!, inp, qPtr, rows, H, qDim);
        denseInto(rt, s.k!, inp, kPtr, rows, H, kvDim);
        denseInto(rt, s.v!, inp, vPtr, rows, H, kvDim);
        qStride = qDim;
        kvStride = kvDim;
      }
      let scale = 1 / Math.sqrt(hd);
      if (fam.scaleQueryFirst) {
        k.f32_scale(qPtr, Math.fround(scale), rows * qDim);
        scale = 1;
      } else if (!c.scaleAttnWeights) scale = 1;
      if (c.scaleAttnByInverseLayerIdx) scale /= l + 1;
      if (this.#rope) {
        const r = this.#rope;
        k.f32_rope(qPtr, qStride, rows, c.numHeads, hd, posPtr, r.cosPtr, r.sinPtr, r.half, 0);
        k.f32_rope(kPtr, kvStride, rows, c.numKvHeads, hd, posPtr, r.cosPtr, r.sinPtr, r.half, 0);
      }
      k.f32_kv_store(kPtr, kvStride, kv.k, B, T, past, c.numKvHeads, hd, cache.maxLength);
      k.f32_kv_store(vPtr, kvStride, kv.v, B, T, past, c.numKvHeads, hd, cache.maxLength);
      k.f32_attention(qPtr, qStride, kv.k, kv.v, ws.f("attn"), qDim, B, T, past, c.numHeads, c.numKvHeads, hd, cache.maxLength, Math.fround(scale), c.slidingWindow ?? 0, cache.maskPtr, ws.f("scratch"));
      denseInto(rt, s.o, ws.f("attn"), tmp, rows, qDim, H);
      k.f32_add(h, tmp, h, rows * H);
      if (!c.preNorm) norm(s.attnNorm!, h, h);
      // --- MLP block
      inp = h;
      if (c.preNorm) {
        norm(s.mlpNorm!, h, x);
        inp = x;
      }
      const I = c.intermediateSize;
      const g = ws.f("g");
      const u = ws.f("u");
      if (fam.mlp === "gated") {
        denseInto(rt, s.gate!, inp, g, rows, H, I);
        denseInto(rt, s.up, inp, u, rows, H, I);
        k.f32_silu_mul(g, u, g, rows * I);
        denseInto(rt, s.down, g, tmp, rows, I, H);
      } else {
        denseInto(rt, s.up, inp, u, rows, H, I);
        if (gelu) k.f32_gelu_tanh(u, u, rows * I);
        else k.f32_relu(u, u, rows * I);
        denseInto(rt, s.down, u, tmp, rows, I, H);
      }
      k.f32_add(h, tmp, h, rows * H);
      if (!c.preNorm) norm(s.mlpNorm!, h, h);
    }
    cache.length = past + T;
    cache.nextPosition.set(next);

    // final norm, projection and head, on the rows whose logits are wanted
    let fin = h;
    if (lastOnly) {
      fin = ws.f("last");
      for (let b = 0; b < B; b++) k.f32_copy(h + (b * T + T - 1) * H * 4, fin + b * H * 4, H);
    }
    const fn = this.#global("finalNorm");
    if (fn) {
      const p = normParams(fn);
      if (p.kind === "rms") k.f32_rmsnorm(fin, p.w, fin, outRows, H, Math.fround(p.eps));
      else k.f32_layernorm(fin, p.w, p.b, fin, outRows, H, Math.fround(p.eps));
    }
    let headIn = fin;
    if (E !== H) {
      headIn = lastOnly ? ws.f("lastE") : ws.f("e");
      denseInto(rt, this.#global("projOut")!, fin, headIn, outRows, H, E);
    }
    denseInto(rt, effective(this.getSubmodule("lm_head")), headIn, logitsPtr, outRows, E, c.vocabSize);
  }

  /**
   * Generates up to `maxNewTokens` tokens after each prompt row (transformers' `generate`: greedy by default,
   * sampling with `doSample`), returning the full sequences.
   * ```ts
   * const { sequences } = await lm.generate([prompt], { maxNewTokens: 20 });
   * const sampled = await lm.generate([prompt], { doSample: true, temperature: 0.8, topP: 0.95, seed: 7 });
   * ```
   *
   * Concurrency: the loop yields between tokens, and while it runs ({@link busy} is set) adapters may be switched
   * (`switchTo`, `switchToBase`, `fuse`, `setAdapter`, `setScale` take effect from the next token), but a second
   * `generate` / `stream` on this model, `dispose()`, and adapter changes that would break the loop (`deleteAdapter`
   * of the active or a fused adapter, `unload`, `mergeAndUnload`, an `addAdapter` that injects new layers, `train()`)
   * throw `StateError` code `BUSY`. They work again once the generation ends.
   */
  generate(inputIds: ArrayLike<number> | ArrayLike<number>[], opts: GenerateOptions = {}): Promise<GenerateResult> {
    this.#check();
    this.#refuseWhileBusy("generate");
    checkIdsArgument(inputIds, "inputIds");
    checkOptionsArgument(opts, "DecoderModel.generate");
    return generateTokens(this, inputIds, opts);
  }

  /**
   * The same loop as {@link generate}, one step at a time; adapters may be switched between two steps.
   * ```ts
   * for await (const t of lm.stream([prompt], { maxNewTokens: 50, tokenizer })) {
   *   process.stdout.write(t.text ?? "");
   *   if (t.step === 10) peft.switchTo("poetry");
   * }
   * ```
   * The model is busy (see {@link generate}) from the first `next()` until the loop ends; leaving a `for await`
   * with `break` ends it, and an iterator abandoned without `return()` keeps the model busy.
   */
  stream(inputIds: ArrayLike<number> | ArrayLike<number>[], opts: GenerateOptions = {}): AsyncGenerator<GeneratedToken, GenerateResult> {
    this.#check();
    this.#refuseWhileBusy(STREAM_OP);
    checkIdsArgument(inputIds, "inputIds");
    checkOptionsArgument(opts, "DecoderModel.stream");
    return streamTokens(this, inputIds, opts);
  }

  /**
   * Frees every weight, the RoPE tables, the workspace, and the memory of adapters still attached. Idempotent.
   * Throws `StateError` code `BUSY` while a generation runs (abort it, or dispose after it ends).
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#refuseWhileBusy("dispose");
    this.#ws.free();
    this.#rope?.free();
    this.free();
    this.#disposed = true;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /**
   * The f32 weights by name (see {@link Module.stateDict}); `USE_AFTER_FREE` after {@link dispose}. A model loaded
   * with a half `dtype` lists its half-precision weights in {@link halfStateDict} instead.
   */
  override stateDict(): Record<string, Tensor> {
    this.#check();
    return super.stateDict();
  }

  /**
   * Writes the model as a Hugging Face checkpoint folder (Node): `config.json`, `generation_config.json`,
   * `model.safetensors` (see {@link saveModelFiles} for the bytes in a browser). Returns the paths written.
   * ```ts
   * await lm.savePretrained("out/tiny-llama");
   * const again = await AutoModelForCausalLM.fromPretrained("out/tiny-llama");
   * ```
   */
  savePretrained(dir: string, opts: SaveModelOptions = {}): Promise<string[]> {
    this.#check();
    return saveModelToDir(this, dir, opts);
  }

  /** Bytes of wasm memory held by the weights: 4 per f32 value, 2 per half value (tied tensors counted once). */
  get weightBytes(): number {
    this.#check();
    let n = 0;
    for (const p of this.parameters()) n += p.size * 4;
    for (const [, t] of this.namedHalfTensors()) n += t.size * 2;
    return n;
  }

  /** The half-precision weights by name (see {@link Module.halfStateDict}); `USE_AFTER_FREE` after {@link dispose}. */
  override halfStateDict(): ReturnType<Module["halfStateDict"]> {
    this.#check();
    return super.halfStateDict();
  }
}
