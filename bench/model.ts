// Whole-model adapter switch on a 0.5-billion-parameter decoder shape (Qwen2-0.5B-like), SHiRA against LoRA
// (issue 6).
//
//   npm run bench -- model            (or: shira bench model)
//
// Shape: 24 decoder layers, hidden 896, MLP 4864; per layer q_proj (896→896, bias), k_proj (896→128, bias),
// v_proj (896→128, bias), o_proj (896→896), gate_proj (896→4864), up_proj (896→4864), down_proj (4864→896);
// plus an untouched embedding 151,936 × 896. f32 weights: 494 M parameters, 1.98 GB, built with the library's
// modules under PyTorch's names (`model.embed_tokens`, `model.layers.<i>.self_attn.q_proj`,
// `model.layers.<i>.mlp.gate_proj`, …). Weights are synthetic: a cheap deterministic generator stands in for the
// library's default one (the values do not matter for switching; the time to fill 2 GB does).
//
// Adapters, r = 32 on all seven projections (168 layers): SHiRA "A" and "B" (`getPeftModel` + `addAdapter`,
// PEFT's random masks with seeds 1 and 2, N(0,1) values via `initWeights: false`): 17.6 M values each; LoRA "A"
// and "B" (`getLoraModel` + `addAdapter`, `initLoraWeights: false` so B is non-zero): the same 17.6 M parameters
// each.
//
// Memory: wasm32 memory tops out at 4 GiB. The base (1.98 GB) + two SHiRA adapters (values, flat indices, CSR
// positions: ~12 B per value, plus 4 B per value of saved base values for the fused one: ~0.49 GB) + two LoRA
// adapters (0.14 GB) would fit, but SHiRA and LoRA both wrap the same `Linear` modules, so they run in two phases
// on the one base model: phase 1 SHiRA (measure, then `unload()`: the base comes back bit for bit, checked by a
// hash of every adapted weight, and the adapters' memory is freed), phase 2 LoRA on the same modules (then
// everything is freed). The wasm memory high-water mark is reported.
//
// Rows { case, ours_ms, peer, peer_ms, speedup = peer_ms / ours_ms }:
//   * whole-model switch A→B (all 168 adapted layers; ShiraModel.switchTo vs LoraModel.switchTo), median of a few;
//   * per projection type: one layer's switch (SHiRA: what switchTo does per layer, `prepareSwitch` + `switchFused`;
//     LoRA: `unmergeOne(A)` + `mergeOne(B)`), median over the 24 layers of each layer's median over passes.
// Writes bench/results/model.json, model.md and model.svg (a bar chart: SHiRA vs LoRA switch time).
import { Embedding, Linear, LoraConfig, Module, ModuleList, ShiraConfig, Tensor, getLoraModel, getPeftModel, runtime } from "../src/index.js";
import type { Rng } from "../src/nn/random.js";
import { printTable, writeResults } from "./common.js";
import type { BenchOptions } from "./registry.js";
import { bytes, linesTouched, median, round, row, writeSummary, type BenchRow } from "./report.js";

const LAYERS = 24;
const HIDDEN = 896;
const KV = 128;
const MLP_DIM = 4864;
const VOCAB = 151936;
const R = 32;
export const PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] as const;
type Projection = (typeof PROJECTIONS)[number];

/** A fast deterministic stand-in for the library's generator (LCG; uniform and a crude bell-shaped "normal"). */
function fastRng(seed: number): Rng {
  let s = seed >>> 0 || 1;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) * 2.3283064365386963e-10;
  return {
    uniform: (lo = 0, hi = 1) => lo + (hi - lo) * next(),
    normal: () => (next() + next() + next() - 1.5) * 2,
  } as unknown as Rng;
}

class NoForward extends Module {
  forward(_x: Tensor): Tensor {
    throw new Error(`${this.constructor.name}: the model benchmark builds the shape only (no forward)`);
  }
}

class Attention extends NoForward {
  constructor(rng: Rng) {
    super();
    this.registerModule("q_proj", new Linear(HIDDEN, HIDDEN, { rng }));
    this.registerModule("k_proj", new Linear(HIDDEN, KV, { rng }));
    this.registerModule("v_proj", new Linear(HIDDEN, KV, { rng }));
    this.registerModule("o_proj", new Linear(HIDDEN, HIDDEN, { bias: false, rng }));
  }
}

class Mlp extends NoForward {
  constructor(rng: Rng) {
    super();
    this.registerModule("gate_proj", new Linear(HIDDEN, MLP_DIM, { bias: false, rng }));
    this.registerModule("up_proj", new Linear(HIDDEN, MLP_DIM, { bias: false, rng }));
    this.registerModule("down_proj", new Linear(MLP_DIM, HIDDEN, { bias: false, rng }));
  }
}

class DecoderLayer extends NoForward {
  constructor(rng: Rng) {
    super();
    this.registerModule("self_attn", new Attention(rng));
    this.registerModule("mlp", new Mlp(rng));
  }
}

class Decoder extends NoForward {
  constructor(rng: Rng) {
    super();
    this.registerModule("embed_tokens", new Embedding(VOCAB, HIDDEN, { rng }));
    this.registerModule("layers", new ModuleList(Array.from({ length: LAYERS }, () => new DecoderLayer(rng))));
  }
}

/** `Qwen2ForCausalLM`-shaped: `model.embed_tokens`, `model.layers.<i>.self_attn.*`, `model.layers.<i>.mlp.*`. */
class CausalLM extends NoForward {
  constructor(rng: Rng) {
    super();
    this.registerModule("model", new Decoder(rng));
  }
}

/** Projection type of a module path (`model.layers.3.mlp.up_proj` → `up_proj`). */
function projection(name: string): Projection {
  return name.slice(name.lastIndexOf(".") + 1) as Projection;
}

/** FNV-1a over the bits of every adapted base weight (a cheap exactness check of the restore). */
function hashWeights(weights: Float32Array[]): number {
  let h = 0x811c9dc5;
  for (const w of weights) {
    const u = new Uint32Array(w.buffer, w.byteOffset, w.length);
    for (let i = 0; i < u.length; i++) h = Math.imul(h ^ u[i], 0x01000193);
  }
  return h >>> 0;
}

export async function run(opts: BenchOptions = {}): Promise<BenchRow[]> {
  const log = opts.json ? () => undefined : opts.log ?? ((s: string) => console.log(s));
  const rt = runtime();
  const t00 = performance.now();
  const phase = (s: string) => log(`  [${((performance.now() - t00) / 1000).toFixed(1)} s] ${s} (wasm memory ${bytes(rt.memoryBytes)}, live ${bytes(rt.liveBytes)})`);
  const liveAtStart = rt.liveBytes;
  log(`model: Qwen2-0.5B-like decoder, ${LAYERS} layers × ${PROJECTIONS.length} projections adapted at r = ${R}, embedding ${VOCAB} × ${HIDDEN}`);

  // ---------------------------------------------------------------- base model
  const lm = new CausalLM(fastRng(12345));
  const nParams = lm.numParameters();
  phase(`built the base model: ${(nParams / 1e6).toFixed(1)} M parameters, ${bytes(nParams * 4)} of f32`);
  const adaptedNames = lm.namedModules().filter(([n, m]) => m instanceof Linear && PROJECTIONS.includes(projection(n) as Projection)).map(([n]) => n);
  const adaptedWeights = adaptedNames.reduce((a, n) => a + (lm.getSubmodule(n) as Linear).weight.size, 0);
  const baseHash = hashWeights(adaptedNames.map((n) => (lm.getSubmodule(n) as Linear).weight.data));

  // ---------------------------------------------------------------- phase 1: SHiRA
  const shiraConfig = (seed: number) => new ShiraConfig({ r: R, targetModules: [...PROJECTIONS], randomSeed: seed, initWeights: false });
  const peft = getPeftModel(lm, shiraConfig(1), "A");
  peft.addAdapter("B", shiraConfig(2));
  peft.eval();
  const shiraLayers = peft.shiraLayers();
  const nnzPerAdapter = shiraLayers.reduce((s, [, l]) => s + l.adapters.get("A")!.nnz, 0);
  const nnzOf = new Map(shiraLayers.map(([n, l]) => [projection(n), l.adapters.get("A")!.nnz]));
  // per projection type (first layer): share of W's 64-byte lines a switch A→B must read and write
  const linesOf = new Map(
    shiraLayers.map(([n, l]) => [projection(n), linesTouched(l.adapters.get("A")!.indices.toArray(), l.adapters.get("B")!.indices.toArray()) / ((l.inFeatures * l.outFeatures) / 16)]),
  );
  let linesAll = 0;
  for (const [, l] of shiraLayers) linesAll += linesTouched(l.adapters.get("A")!.indices.toArray(), l.adapters.get("B")!.indices.toArray());
  phase(`SHiRA adapters A and B on ${shiraLayers.length} layers: ${(nnzPerAdapter / 1e6).toFixed(2)} M values each`);

  const wholeRuns = opts.quick ? 3 : 7;
  peft.switchTo("A");
  const shiraWhole: number[] = [];
  for (let i = 0; i < 2 + 2 * wholeRuns; i++) {
    const next = i % 2 === 0 ? "B" : "A";
    const t0 = performance.now();
    peft.switchTo(next);
    if (i >= 2 && next === "B") shiraWhole.push(performance.now() - t0);
  }
  // now at A (an even number of switches): per-layer passes doing exactly what switchTo does per layer
  const passes = opts.quick ? 2 : 6; // even: ends at A again
  const shiraPer = new Map<string, number[]>(shiraLayers.map(([n]) => [n, []]));
  for (let p = 0; p < passes; p++) {
    const next = p % 2 === 0 ? "B" : "A";
    for (const [n, layer] of shiraLayers) {
      const a = layer.adapters.get(next)!;
      const t0 = performance.now();
      layer.switchFused({ name: next, coef: a.scaling }, layer.prepareSwitch(next));
      const dt = performance.now() - t0;
      if (next === "B") shiraPer.get(n)!.push(dt);
    }
  }
  peft.unmerge();
  const shiraSwitch = median(shiraWhole);
  phase(`SHiRA whole-model switch A→B: ${shiraSwitch.toFixed(2)} ms (median of ${shiraWhole.length})`);
  const plain = peft.unload();
  const hashAfter = hashWeights(adaptedNames.map((n) => (plain.getSubmodule(n) as Linear).weight.data));
  if (hashAfter !== baseHash) throw new Error("model bench: the base weights changed after SHiRA switching and unload (hash mismatch)");
  phase("SHiRA unloaded: adapted base weights bit-identical (hash), adapter memory freed");

  // ---------------------------------------------------------------- phase 2: LoRA on the same modules
  const loraConfig = () => new LoraConfig({ r: R, loraAlpha: R, targetModules: [...PROJECTIONS], initLoraWeights: false });
  const lora = getLoraModel(plain, loraConfig(), "A");
  lora.addAdapter("B", loraConfig());
  const loraLayers = lora.loraLayers();
  const loraParams = lora.adapterSize("A");
  phase(`LoRA adapters A and B on ${loraLayers.length} layers: ${(loraParams / 1e6).toFixed(2)} M parameters each`);
  const loraRuns = opts.quick ? 1 : 3;
  lora.switchTo("A");
  const loraWhole: number[] = [];
  for (let i = 0; i < 1 + 2 * loraRuns; i++) {
    const next = i % 2 === 0 ? "B" : "A";
    const t0 = performance.now();
    lora.switchTo(next);
    if (i >= 1 && next === "B") loraWhole.push(performance.now() - t0);
  }
  // now at B: per-layer passes (unmerge one, merge the other), B→A then A→B
  const loraPer = new Map<string, number[]>(loraLayers.map(([n]) => [n, []]));
  const loraPasses = 2;
  for (let p = 0; p < loraPasses; p++) {
    const [from, to] = p % 2 === 0 ? ["B", "A"] : ["A", "B"];
    for (const [n, layer] of loraLayers) {
      const t0 = performance.now();
      layer.unmergeOne(from);
      layer.mergeOne(to);
      loraPer.get(n)!.push(performance.now() - t0);
    }
  }
  const loraSwitch = median(loraWhole);
  phase(`LoRA whole-model switch A→B: ${loraSwitch.toFixed(1)} ms (median of ${loraWhole.length})`);
  const peakMemory = rt.memoryBytes;
  lora.unmerge();
  plain.free();
  phase("freed");
  if (rt.liveBytes !== liveAtStart) log(`  note: ${bytes(rt.liveBytes - liveAtStart)} still live after freeing the model`);

  // ---------------------------------------------------------------- rows
  const rows: BenchRow[] = [
    row(`whole-model switch A→B (${shiraLayers.length} layers, r = ${R})`, shiraSwitch, "LoRA whole-model switch (unmerge A + merge B)", loraSwitch, {
      layers: shiraLayers.length,
      shira_values_per_adapter: nnzPerAdapter,
      lora_params_per_adapter: loraParams,
      shira_runs: shiraWhole.length,
      lines_touched: linesAll,
      // a switch reads and writes every touched line once: effective bandwidth of the whole-model switch
      shira_gb_per_s: round((linesAll * 64 * 2) / (shiraSwitch / 1e3) / 1e9),
      lora_runs: loraWhole.length,
    }),
  ];
  const shapes: Record<Projection, string> = {
    q_proj: `${HIDDEN}×${HIDDEN}`,
    k_proj: `${KV}×${HIDDEN}`,
    v_proj: `${KV}×${HIDDEN}`,
    o_proj: `${HIDDEN}×${HIDDEN}`,
    gate_proj: `${MLP_DIM}×${HIDDEN}`,
    up_proj: `${MLP_DIM}×${HIDDEN}`,
    down_proj: `${HIDDEN}×${MLP_DIM}`,
  };
  for (const p of PROJECTIONS) {
    const s = median([...shiraPer].filter(([n]) => projection(n) === p).map(([, ts]) => median(ts)));
    const l = median([...loraPer].filter(([n]) => projection(n) === p).map(([, ts]) => median(ts)));
    const nnz = nnzOf.get(p)!;
    const [o, i] = shapes[p].split("×").map(Number);
    rows.push(
      row(`per layer: ${p} [${shapes[p]}] (median over ${LAYERS} layers)`, s, "LoRA per-layer switch", l, {
        projection: p,
        shape: shapes[p],
        nnz,
        density: round(nnz / (o * i)),
        lines_fraction: round(linesOf.get(p)!),
      }),
    );
  }
  const sumPer = (m: Map<string, number[]>) => [...m.values()].reduce((a, ts) => a + median(ts), 0);
  rows.push(row("sum of the per-layer medians (all layers)", sumPer(shiraPer), "LoRA sum of per-layer medians", sumPer(loraPer)));

  if (!opts.json) printTable(`whole-model switch, Qwen2-0.5B-like (single thread; speedup = LoRA ms / SHiRA ms)`, rows, ["case", "ours_ms", "peer", "peer_ms", "speedup"]);
  writeResults("model", rows);
  const totalS = ((performance.now() - t00) / 1000).toFixed(0);
  writeSummary("model", {
    title: "Whole-model adapter switch: Qwen2-0.5B-like decoder, SHiRA vs LoRA",
    intro: [
      `${LAYERS} decoder layers (hidden ${HIDDEN}, MLP ${MLP_DIM}; q/k/v/o and gate/up/down adapted: ${shiraLayers.length} layers) plus an ` +
        `untouched ${VOCAB.toLocaleString("en-US")} × ${HIDDEN} embedding: ${(nParams / 1e6).toFixed(1)} M f32 parameters (${bytes(nParams * 4)}), ` +
        "built with the library's modules under PyTorch's names; synthetic weights. " +
        `Two SHiRA adapters (r = ${R}, random masks, ${(nnzPerAdapter / 1e6).toFixed(2)} M values each) and two LoRA adapters (r = ${R}, the same parameter count, non-zero B).`,
      "Whole-model rows: `ShiraModel.switchTo` / `LoraModel.switchTo` from A to B (median of a few). Per-layer rows: the work one " +
        "layer's switch does (SHiRA: single-pass merge of the two position lists; LoRA: unmerge A + merge B, O(out·in·r)), " +
        "median over the 24 layers of each projection type. `peer / ours` is how many times faster SHiRA switches.",
      `Memory (wasm32, 4 GiB at most): SHiRA and LoRA wrap the same \`Linear\` modules, so they ran in two phases on one base ` +
        `model: SHiRA (then \`unload()\`: base weights bit-identical, checked by hash; adapter memory freed), then LoRA. ` +
        `Wasm memory high-water mark: ${bytes(peakMemory)}. Total run time ${totalS} s.`,
    ],
    rows,
    extraColumns: [
      { key: "nnz", header: "values per adapter", format: (v) => (typeof v === "number" ? v.toLocaleString("en-US") : "") },
      { key: "density", header: "density", format: (v) => (typeof v === "number" ? `${(v * 100).toFixed(1)} %` : "") },
      { key: "lines_fraction", header: "lines touched", format: (v) => (typeof v === "number" ? `${(v * 100).toFixed(0)} %` : "") },
    ],
    notes: [
      `At r = ${R} these layers are small for SHiRA's budget r·(out + in): each adapter sets ${((nnzOf.get("gate_proj")! / (MLP_DIM * HIDDEN)) * 100).toFixed(1)} % of an ` +
        `MLP weight, ${((nnzOf.get("q_proj")! / (HIDDEN * HIDDEN)) * 100).toFixed(1)} % of q/o and ${((nnzOf.get("k_proj")! / (KV * HIDDEN)) * 100).toFixed(1)} % of k/v, so a switch A→B ` +
        `reads and writes ${((linesAll * 64) / 2 ** 30).toFixed(2)} GiB of cache lines (${Math.round(100 * linesAll * 16 / adaptedWeights)} % of the adapted weights' lines): ` +
        `the whole-model switch is a near-streaming pass at ${rows[0].shira_gb_per_s} GB/s of read + write traffic, bandwidth bound. The LoRA switch ` +
        `recomputes 2 × 2·out·in·r = ${((4 * adaptedWeights * R) / 1e9).toFixed(1)} GFLOP (compute bound, f32_lowrank_fuse). ` +
        `The ratio therefore follows (low-rank GFLOP/s) / (memory GB/s) of the machine and kernels.`,
    ],
    chart: {
      title: "Adapter switch time, SHiRA vs LoRA (ms, log scale)",
      categories: ["whole model", ...PROJECTIONS],
      series: [
        { name: "SHiRA", color: "#2a9d8f", values: rows.slice(0, 1 + PROJECTIONS.length).map((r) => r.ours_ms) },
        { name: "LoRA", color: "#e76f51", values: rows.slice(0, 1 + PROJECTIONS.length).map((r) => r.peer_ms) },
      ],
      yLabel: "ms",
      log: true,
    },
  });
  return rows;
}
