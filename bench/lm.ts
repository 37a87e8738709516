// Language-model benchmark: a Qwen2-0.5B-shaped decoder (24 layers, hidden 896, 14 heads, 2 KV heads, MLP 4864,
// vocab 151,936, tied embeddings; synthetic weights written as a Hugging Face checkpoint by bench/lm/synthetic.ts and
// loaded through `AutoModelForCausalLM.fromPretrained`), one thread (and the thread rows on 2), in one run:
//
//   * prefill tokens/s for a 128-token prompt, decode tokens/s at contexts 128 and 1024;
//   * the weight-streaming bound of a decode step: bytes read per token (every dense weight and bias, the tied head,
//     the norms, the KV cache) ÷ the read bandwidth measured in this run by a wasm kernel streaming 512 MiB
//     (`f32_find_nonfinite`, the fastest pure read we have);
//   * the peer: llama.cpp compiled to wasm (`@wllama/wllama`, single thread, headless Chromium) on a GGUF F32 file
//     written from the same tensors (bench/lm/gguf.ts), fed the same prompt token ids (bench/lm/wllama-peer.ts);
//   * a whole-model SHiRA switch between two tokens (r = 32 on q/k/v/o/gate/up/down) and a LoRA switch (same
//     parameter count), each as a fraction of one decode step;
//   * prefill, decode and both switches again on 2 threads (`runtime().setThreads(2)`), against the 1-thread rows.
//
//   npm run bench -- lm              (SHIRA_BENCH_CACHE: where the 2 GB checkpoint and GGUF are kept; default /tmp)
//   npm run bench -- lm -- --quick   (a 2-layer toy shape: checks the plumbing in seconds)
//
// Rows `{ case, ours_ms, peer, peer_ms, speedup = peer_ms / ours_ms }`; bench/results/lm.json and lm.md.
import { join } from "node:path";
import { AutoModelForCausalLM, LoraConfig, ShiraConfig, getLoraModel, getPeftModel, runtime, type DecoderModel } from "../src/node.js";
import { printTable, writeResults } from "./common.js";
import type { BenchOptions } from "./registry.js";
import { bytes, median, round, row, writeSummary, type BenchRow } from "./report.js";
import { QWEN2_0_5B, QWEN2_SMALL, benchCacheDir, checkpointName, parameterCount, writeSyntheticCheckpoint } from "./lm/synthetic.js";
import { writeGgufF32 } from "./lm/gguf.js";
import { promptIds, runWllama, wllamaPeerRows, type WllamaResult } from "./lm/wllama-peer.js";

const PROMPT = 128;
const R = 32;
const PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/**
 * Read bandwidth of this machine from wasm: median GB/s of the fastest streaming read kernel we have
 * (`f32_find_nonfinite`: one compare per float, ~27 GB/s here, against ~18 for `f32_sum_sq`) over `mib` MiB.
 */
function measureBandwidth(mib = 512): number {
  const rt = runtime();
  const n = (mib * 2 ** 20) / 4;
  const buf = rt.allocF32(n);
  try {
    buf.view.fill(1);
    const ts: number[] = [];
    for (let i = 0; i < 7; i++) {
      const t0 = performance.now();
      rt.k.f32_find_nonfinite(buf.ptr, n);
      ts.push(performance.now() - t0);
    }
    return (n * 4) / (median(ts.slice(2)) / 1000) / 1e9;
  } finally {
    buf.free();
  }
}

/** Bytes a decode step reads at context `ctx`: every parameter except the embedding rows not gathered, plus K and V. */
function bytesPerToken(lm: DecoderModel, ctx: number): number {
  const c = lm.config;
  let b = 0;
  const embed = lm.stateDict()[lm.family.root + "." + lm.family.globals.find(([r]) => r === "embed")![1] + ".weight"];
  for (const p of lm.parameters()) if (p !== embed || c.tieWordEmbeddings) b += p.size * 4;
  b += c.numLayers * 2 * c.numKvHeads * ctx * c.headDim * 4;
  return b;
}

/** Median ms of one decode step at context `ctx` (the context filled by one prefill first). */
function decodeStep(lm: DecoderModel, prompt: number[], ctx: number, steps: number): { stepMs: number; fillMs: number } {
  const rt = runtime();
  const V = lm.config.vocabSize;
  const logits = rt.allocF32(V);
  const cache = lm.createCache({ batchSize: 1, maxLength: ctx + steps + 4 });
  try {
    const ids = Int32Array.from({ length: ctx }, (_, i) => prompt[i % prompt.length]);
    const t0 = performance.now();
    lm.run(ids, 1, ctx, cache, null, null, true, logits.ptr);
    const fillMs = performance.now() - t0;
    let id = rt.k.f32_argmax(logits.ptr, V);
    const ts: number[] = [];
    for (let i = 0; i < steps + 2; i++) {
      const s = performance.now();
      lm.run(Int32Array.of(id), 1, 1, cache, null, null, true, logits.ptr);
      id = rt.k.f32_argmax(logits.ptr, V);
      if (i >= 2) ts.push(performance.now() - s);
    }
    return { stepMs: median(ts), fillMs };
  } finally {
    cache.dispose();
    logits.free();
  }
}

function prefill(lm: DecoderModel, prompt: number[], repeats: number): number {
  const rt = runtime();
  const logits = rt.allocF32(lm.config.vocabSize);
  const ts: number[] = [];
  try {
    for (let i = 0; i < repeats; i++) {
      const cache = lm.createCache({ batchSize: 1, maxLength: prompt.length });
      const t0 = performance.now();
      lm.run(Int32Array.from(prompt), 1, prompt.length, cache, null, null, true, logits.ptr);
      ts.push(performance.now() - t0);
      cache.dispose();
    }
  } finally {
    logits.free();
  }
  return median(ts);
}

/** Switches A -> B, B -> A, ... `n` times; the ms of each (the first `skip` dropped: warm-up). */
function timeSwitches(switchTo: (name: string) => unknown, n: number, skip: number): number[] {
  const ts: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    switchTo(i % 2 ? "A" : "B");
    ts.push(performance.now() - t0);
  }
  return ts.slice(skip);
}

/** Median ms of a whole-model SHiRA switch A -> B and of a LoRA switch (same parameter count), between two tokens. */
function measureSwitches(lm: DecoderModel, r: number, quick: boolean): { shira: number; lora: number; nnz: number } {
  const shiraCfg = (seed: number) => new ShiraConfig({ r, targetModules: PROJECTIONS, randomSeed: seed, initWeights: false });
  const peft = getPeftModel(lm, shiraCfg(1), "A");
  peft.addAdapter("B", shiraCfg(2));
  peft.switchTo("A");
  const shiraTimes = timeSwitches((n) => peft.switchTo(n), quick ? 6 : 10, 2);
  const nnz = peft.adapterSize("A");
  peft.unload();
  const lora = getLoraModel(lm, new LoraConfig({ r, targetModules: PROJECTIONS, initLoraWeights: false }), "A");
  lora.addAdapter("B", new LoraConfig({ r, targetModules: PROJECTIONS, initLoraWeights: false }));
  lora.switchTo("A");
  const loraTimes = timeSwitches((n) => lora.switchTo(n), quick ? 4 : 3, 1);
  lora.unmerge();
  lora.unload(); // the base layers back in place (another measurement wraps them again)
  return { shira: median(shiraTimes), lora: median(loraTimes), nnz };
}

export async function run(opts: BenchOptions = {}): Promise<BenchRow[]> {
  const log = opts.json ? () => undefined : opts.log ?? ((s: string) => console.log(s));
  const quick = !!opts.quick;
  const shape = quick ? QWEN2_SMALL : QWEN2_0_5B;
  const contexts = quick ? [128, 256] : [128, 1024];
  const steps = quick ? 8 : 16;
  const rt = runtime();
  const t00 = performance.now();
  const phase = (s: string) => log(`  [${((performance.now() - t00) / 1000).toFixed(1)} s] ${s}`);
  const cacheDir = benchCacheDir();
  const dir = join(cacheDir, checkpointName(shape, 1));
  log(`lm: Qwen2-shaped decoder, ${shape.layers} layers, hidden ${shape.hidden}, vocab ${shape.vocab} (${(parameterCount(shape) / 1e6).toFixed(1)} M parameters, f32), one thread`);
  writeSyntheticCheckpoint(dir, shape, 1, phase);
  const gguf = writeGgufF32(dir, dir + ".gguf", { log: phase });
  phase(`checkpoint ${dir}, GGUF ${gguf.path}`);

  // ---------------------------------------------------------------- ours
  const bandwidth = measureBandwidth(quick ? 64 : 512);
  phase(`read bandwidth (wasm, f32_find_nonfinite over ${quick ? 64 : 512} MiB): ${bandwidth.toFixed(2)} GB/s`);
  const tl = performance.now();
  const lm = await AutoModelForCausalLM.fromPretrained(dir);
  const loadMs = performance.now() - tl;
  rt.setThreads(1); // the peer runs one thread; the thread rows below run ours on more
  phase(`loaded with fromPretrained in ${(loadMs / 1000).toFixed(1)} s (wasm memory ${bytes(rt.memoryBytes)})`);
  const prompt = promptIds(PROMPT, 1);
  prefill(lm, prompt, 1); // warm-up: V8 tiers the wasm code up in the background (Liftoff first)
  const prefillMs = prefill(lm, prompt, 3);
  phase(`prefill ${PROMPT} tokens: ${prefillMs.toFixed(0)} ms`);
  // warm-up: V8 compiles hot wasm functions in the background (Liftoff first); run decode steps until that is done
  decodeStep(lm, prompt, 64, quick ? 8 : 40);
  const decode = new Map<number, { stepMs: number; fillMs: number }>();
  for (const ctx of contexts) {
    decode.set(ctx, decodeStep(lm, prompt, ctx, steps));
    phase(`decode @${ctx}: ${decode.get(ctx)!.stepMs.toFixed(1)} ms/token`);
  }

  const bptCtx = new Map(contexts.map((c) => [c, bytesPerToken(lm, c)]));

  // ---------------------------------------------------------------- switching between two tokens
  const r = quick ? 2 : R; // the toy shape's k/v projections are [32, 64]: r·(out + in) must stay below out·in
  const sw = measureSwitches(lm, r, quick);
  phase(`SHiRA whole-model switch: ${sw.shira.toFixed(2)} ms (${(sw.nnz / 1e6).toFixed(2)} M values per adapter)`);
  phase(`LoRA whole-model switch: ${sw.lora.toFixed(0)} ms`);

  // ---------------------------------------------------------------- the same on more threads
  const threadCounts = [2];
  const threaded = new Map<number, { prefillMs: number; decode: Map<number, number>; shira: number; lora: number }>();
  for (const n of threadCounts) {
    rt.setThreads(n);
    if (rt.threads !== n) throw new Error(`lm bench: cannot run ${n} threads here (${rt.threadsLimitedBy})`);
    prefill(lm, prompt, 1); // warm-up: the workers' instances tier up like the first one (see above)
    const p = prefill(lm, prompt, 3);
    decodeStep(lm, prompt, 64, quick ? 4 : 8);
    const d = new Map(contexts.map((ctx) => [ctx, decodeStep(lm, prompt, ctx, steps).stepMs]));
    const s2 = measureSwitches(lm, r, quick);
    threaded.set(n, { prefillMs: p, decode: d, shira: s2.shira, lora: s2.lora });
    phase(`${n} threads: prefill ${p.toFixed(0)} ms, decode ${contexts.map((c) => `@${c} ${d.get(c)!.toFixed(1)} ms`).join(", ")}, SHiRA switch ${s2.shira.toFixed(2)} ms, LoRA switch ${s2.lora.toFixed(0)} ms`);
  }
  rt.setThreads(1);
  lm.dispose();

  // ---------------------------------------------------------------- peer: llama.cpp (wllama) in Chromium
  let peer: WllamaResult | null = null;
  let peerError: string | null = null;
  try {
    phase("wllama (llama.cpp wasm, 1 thread) in headless Chromium: loading the GGUF…");
    peer = await runWllama({ ggufPath: gguf.path, promptTokens: PROMPT, contexts, decodeTokens: quick ? 8 : 16, threads: 1, repeats: quick ? 2 : 3, kvType: "f32", log: phase });
  } catch (e) {
    peerError = (e as Error).message;
    phase(`wllama failed: ${peerError}`);
  }

  // ---------------------------------------------------------------- rows
  const rows: BenchRow[] = [];
  const peerRows = peer ? wllamaPeerRows(peer, PROMPT) : [];
  const peerMs = (c: string) => peerRows.find((r) => r.case === c)?.peer_ms ?? NaN;
  const peerName = peerRows[0]?.peer ?? `wllama (failed: ${peerError})`;
  const tok = (ms: number, n = 1) => round((1000 * n) / ms);
  rows.push(
    row(`prefill ${PROMPT} tokens`, prefillMs, peerName, peerMs(`prefill ${PROMPT} tokens`), {
      ours_tok_s: tok(prefillMs, PROMPT),
      peer_tok_s: tok(peerMs(`prefill ${PROMPT} tokens`), PROMPT),
      target: "speedup >= 1.2",
      met: peerMs(`prefill ${PROMPT} tokens`) / prefillMs >= 1.2,
    }),
  );
  for (const ctx of contexts) {
    const d = decode.get(ctx)!;
    rows.push(
      row(`decode @${ctx}`, d.stepMs, peerName, peerMs(`decode @${ctx}`), {
        ours_tok_s: tok(d.stepMs),
        peer_tok_s: tok(peerMs(`decode @${ctx}`)),
        target: "speedup >= 1.2",
        met: peerMs(`decode @${ctx}`) / d.stepMs >= 1.2,
      }),
    );
  }
  for (const ctx of contexts) {
    const boundMs = (bptCtx.get(ctx)! / (bandwidth * 1e9)) * 1000;
    const d = decode.get(ctx)!;
    rows.push(
      row(`decode @${ctx} vs the weight-streaming bound`, d.stepMs, `${bytes(bptCtx.get(ctx)!)} ÷ ${bandwidth.toFixed(1)} GB/s`, boundMs, {
        target: "speedup (bound / ours) >= 0.8",
        met: boundMs / d.stepMs >= 0.8,
      }),
    );
  }
  const step = decode.get(contexts[0])!.stepMs;
  const sh = sw.shira;
  const lo = sw.lora;
  rows.push(row(`SHiRA whole-model switch (r = ${r}, 7 projections × ${shape.layers} layers) vs one decode step @${contexts[0]}`, sh, "one decode step", step, { target: "switch <= 1 decode step (speedup >= 1)", met: sh <= step }));
  rows.push(row(`LoRA whole-model switch (r = ${r}, same parameter count) vs one decode step @${contexts[0]}`, lo, "one decode step", step, { target: "(for comparison)" }));

  for (const [n, t] of threaded) {
    const vs = `ours, 1 thread`;
    rows.push(row(`prefill ${PROMPT} tokens, ${n} threads`, t.prefillMs, vs, prefillMs, { threads: n, target: "speedup >= 1.8", met: prefillMs / t.prefillMs >= 1.8 }));
    for (const ctx of contexts) {
      const one = decode.get(ctx)!.stepMs;
      rows.push(row(`decode @${ctx}, ${n} threads`, t.decode.get(ctx)!, vs, one, { threads: n, target: "speedup >= 1.5", met: one / t.decode.get(ctx)! >= 1.5 }));
    }
    rows.push(row(`SHiRA whole-model switch, ${n} threads`, t.shira, vs, sh, { threads: n, target: "speedup >= 1.5", met: sh / t.shira >= 1.5 }));
    rows.push(row(`LoRA whole-model switch, ${n} threads`, t.lora, vs, lo, { threads: n, target: "(for comparison)" }));
  }
  for (const x of rows) x.threads ??= 1;

  if (!opts.json) printTable(`language model, ${quick ? "toy shape (--quick)" : "Qwen2-0.5B shape"}, one thread (speedup = peer ms / ours ms)`, rows, ["case", "threads", "ours_ms", "peer", "peer_ms", "speedup"]);
  writeResults("lm", rows);
  writeSummary("lm", {
    title: `Language model: ${quick ? "toy Qwen2 shape (--quick)" : "Qwen2-0.5B-shaped decoder"}, prefill, decode, and switching between tokens`,
    intro: [
      `${shape.layers} layers, hidden ${shape.hidden}, ${shape.heads} heads / ${shape.kvHeads} KV heads, MLP ${shape.intermediate}, vocab ${shape.vocab.toLocaleString("en-US")}, tied embeddings: ` +
        `${(parameterCount(shape) / 1e6).toFixed(1)} M f32 parameters in a synthetic Hugging Face checkpoint, loaded by \`AutoModelForCausalLM.fromPretrained\` in ${(loadMs / 1000).toFixed(1)} s. ` +
        "The peer runs the same tensors from a GGUF F32 file with the same prompt token ids (greedy, KV cache f32).",
      "Prefill: one forward over the 128-token prompt (ms for the whole prompt). Decode @C: ms per token after a C-token context. " +
        `Bound rows: the bytes a decode step must read ÷ the read bandwidth measured in this run (${bandwidth.toFixed(2)} GB/s); \`peer / ours\` is the fraction of the bound reached. ` +
        "Switch rows: `switchTo` from adapter A to B between two tokens (fused weights; the KV cache is kept) against one decode step. " +
        "Rows with 2 threads: the same model on `runtime().setThreads(2)` against its own one-thread rows of this run (kernels split over the threads; results bit-identical).",
      peer
        ? `Peer: ${peer.version}, ${peer.threads} thread, n_ctx ${peer.n_ctx}; decode step = (time of a ${quick ? 8 : 16}-token request − time of a 1-token request) / ${quick ? 7 : 15} on the cached context (removes per-request overhead). The peer ran after ours, not interleaved (it needs its own 2 GB copy in a browser).`
        : `Peer: wllama could not run here: ${peerError}.`,
    ],
    rows,
    extraColumns: [
      { key: "threads", header: "threads", format: (v) => String(v ?? 1) },
      { key: "ours_tok_s", header: "ours tok/s", format: (v) => (typeof v === "number" ? String(v) : "") },
      { key: "peer_tok_s", header: "peer tok/s", format: (v) => (typeof v === "number" && Number.isFinite(v) ? String(v) : "") },
    ],
  });
  return rows;
}
