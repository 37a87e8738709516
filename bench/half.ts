// Half-precision base weights (issue 13): the same decoder with BF16 / F16 weights against f32 weights.
//
//   npm run bench -- half            (or: shira bench half; --quick: a smaller shape)
//
// Speed and memory: a Qwen2-0.5B-shaped Llama (24 layers, hidden 896, 14 heads / 2 KV heads, MLP 4864, vocabulary
// 151,936, tied embeddings; 494 M parameters; --quick: 8 layers, hidden 512, vocabulary 32,000) built with
// `fromConfig` + `initWeights` (seeded), saved once as BF16 and as F16 checkpoints in a temporary folder, and loaded
// back with `{ dtype: "f32" }`, `{ dtype: "bf16" }` and `{ dtype: "f16" }` one after the other (the same rounded
// weights in every run). Rows: decode ms/token (greedy, KV cache, after an 8-token prompt; the median of the
// per-token intervals of 32 tokens, best of 2 runs) and weight bytes, half against f32.
//
// Accuracy: the fixture Llama of tests/fixtures/transformers (logits written by transformers' LlamaForCausalLM in
// float32): the largest logit difference to the float32 model of (a) PyTorch's bfloat16 model (half weights and half
// arithmetic; tests/fixtures/half/torch_half_logits.json, scripts/fixtures/make_half_logits.py) and (b) ours (half
// weights, f32 arithmetic).
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AutoModelForCausalLM, readSafetensors, runtime, type DecoderModel } from "../src/node.js";
import { BENCH_DIR, printTable, writeResults } from "./common.js";
import type { BenchOptions } from "./registry.js";
import { bytes, median, row, writeSummary, type BenchRow } from "./report.js";

type Dtype = "f32" | "bf16" | "f16";

function shape(quick: boolean): Record<string, unknown> {
  return quick
    ? { model_type: "llama", vocab_size: 32000, hidden_size: 512, intermediate_size: 1408, num_hidden_layers: 8, num_attention_heads: 8, num_key_value_heads: 2, max_position_embeddings: 512, tie_word_embeddings: true }
    : { model_type: "llama", vocab_size: 151936, hidden_size: 896, intermediate_size: 4864, num_hidden_layers: 24, num_attention_heads: 14, num_key_value_heads: 2, max_position_embeddings: 512, tie_word_embeddings: true };
}

async function decodeMs(lm: DecoderModel, tokens: number): Promise<number> {
  const prompt = [1, 5, 9, 13, 17, 21, 25, 29];
  let best = Infinity;
  for (let run = 0; run < 2; run++) {
    const stamps: number[] = [];
    await lm.generate([prompt], { maxNewTokens: tokens, onToken: () => void stamps.push(performance.now()) });
    best = Math.min(best, median(stamps.slice(1).map((s, i) => s - stamps[i])));
  }
  return best;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export async function run(opts: BenchOptions = {}): Promise<BenchRow[]> {
  const log = opts.log ?? ((s: string) => console.log(s));
  const quick = opts.quick ?? false;
  const rows: BenchRow[] = [];
  const t00 = performance.now();

  // ---- accuracy against PyTorch's half models (fixture Llama)
  const fixture = join(BENCH_DIR, "..", "tests", "fixtures", "transformers", "llama");
  const accuracy: { dtype: Dtype; torch: number; ours: number }[] = [];
  const haveFixture = existsSync(join(fixture, "expected.safetensors"));
  if (!haveFixture) log("half: the accuracy rows need the repository's tests/fixtures (not in an installed package): skipped");
  const expected = haveFixture ? readSafetensors(readFileSync(join(fixture, "expected.safetensors"))) : null;
  const ids = expected ? Array.from(expected.i32("input_ids")) : [];
  const f32Logits = expected ? expected.f32("logits") : new Float32Array(0);
  for (const dtype of expected ? (["bf16", "f16"] as const) : []) {
    const lm = await AutoModelForCausalLM.fromPretrained(join(fixture, dtype === "bf16" ? "model_bf16" : "model_f16"), { dtype });
    try {
      const ours = lm.forward([ids]).toArray();
      // PyTorch's half model (half arithmetic too): scripts/fixtures/make_half_logits.py (torch 1.13 runs bf16 only)
      const torchHalf = JSON.parse(readFileSync(join(BENCH_DIR, "..", "tests", "fixtures", "half", "torch_half_logits.json"), "utf8")) as Record<string, { max_abs_diff_to_f32: number } | null>;
      accuracy.push({ dtype, torch: torchHalf[dtype]?.max_abs_diff_to_f32 ?? NaN, ours: maxAbsDiff(ours, f32Logits) });
    } finally {
      lm.dispose();
    }
  }
  for (const a of accuracy) {
    rows.push({
      case: `${a.dtype.toUpperCase()} logits: largest difference to the float32 model (fixture Llama)`,
      ours_ms: NaN,
      peer: `PyTorch's ${a.dtype} model`,
      peer_ms: NaN,
      speedup: NaN,
      ours_err: a.ours,
      peer_err: a.torch,
      target: "ours <= PyTorch's",
      met: Number.isFinite(a.torch) ? a.ours <= a.torch : undefined,
      notes: Number.isFinite(a.torch)
        ? `ours ${a.ours.toExponential(2)}, PyTorch ${a.torch.toExponential(2)}: ours keeps f32 arithmetic (only the weights are rounded), PyTorch's ${a.dtype} model also rounds activations.`
        : `ours ${a.ours.toExponential(2)} (the weights' rounding alone); PyTorch 1.13 cannot run a float16 model on CPU, so there is no peer figure.`,
    });
  }

  // ---- speed and memory on a larger shape
  const cfg = shape(quick);
  const dir = mkdtempSync(join(tmpdir(), "shira-bench-half-"));
  const tokens = quick ? 16 : 32;
  const measured = new Map<Dtype, { ms: number; bytes: number }>();
  try {
    log(`half: building the ${quick ? "quick" : "Qwen2-0.5B"} shape and writing BF16 / F16 checkpoints…`);
    const src = AutoModelForCausalLM.fromConfig(cfg);
    let nParams = 0;
    try {
      src.initWeights({ seed: 1 });
      nParams = src.numParameters();
      await src.savePretrained(join(dir, "bf16"), { dtype: "BF16" });
      await src.savePretrained(join(dir, "f16"), { dtype: "F16" });
    } finally {
      src.dispose();
    }
    // f32 from the BF16 file: the same rounded weights as the bf16 run (BF16 -> F16 is not exact, so f16 loads its own)
    for (const [dtype, from] of [["f32", "bf16"], ["bf16", "bf16"], ["f16", "f16"]] as const) {
      const lm = await AutoModelForCausalLM.fromPretrained(join(dir, from), { dtype });
      try {
        measured.set(dtype, { ms: await decodeMs(lm, tokens), bytes: lm.weightBytes });
        log(`half: ${dtype} decode ${measured.get(dtype)!.ms.toFixed(1)} ms/token, weights ${bytes(lm.weightBytes)}`);
      } finally {
        lm.dispose();
      }
    }
    const f32 = measured.get("f32")!;
    for (const dtype of ["bf16", "f16"] as const) {
      const h = measured.get(dtype)!;
      rows.push(
        row(`decode ms/token, ${dtype.toUpperCase()} weights (${(nParams / 1e6).toFixed(0)} M parameters)`, h.ms, "f32 weights", f32.ms, {
          target: dtype === "bf16" ? "speedup >= 1.8" : undefined,
          met: dtype === "bf16" ? f32.ms / h.ms >= 1.8 : undefined,
          weight_ratio: Math.round((h.bytes / f32.bytes) * 1000) / 1000,
        }),
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // ---- a Qwen2.5-1.5B-shaped model in BF16 within wasm32's 4 GiB (full run only)
  let big: { params: number; weightBytes: number; memory: number; loadMs: number; ms: number } | null = null;
  if (!quick) {
    const bigDir = mkdtempSync(join(tmpdir(), "shira-bench-half15-"));
    try {
      const cfg15 = { model_type: "qwen2", vocab_size: 151936, hidden_size: 1536, intermediate_size: 8960, num_hidden_layers: 28, num_attention_heads: 12, num_key_value_heads: 2, max_position_embeddings: 4096, tie_word_embeddings: true, rope_theta: 1000000 };
      log("half: a Qwen2.5-1.5B shape in BF16: writing the checkpoint…");
      const m = AutoModelForCausalLM.fromConfig(cfg15, { dtype: "bf16" });
      let params = 0;
      try {
        params = m.numParameters();
        // cheap synthetic weights: BF16 bit patterns of ±[2^-7, 2^-6) from an LCG, norms 1
        let seed = 12345;
        for (const t of Object.values(m.halfStateDict())) {
          const v = t.view();
          for (let i = 0; i < v.length; i++) {
            seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
            v[i] = 0x3c00 | (seed >>> 25) | (seed & 0x8000);
          }
        }
        for (const [n, p] of m.namedParameters()) if (/norm/.test(n)) p.data.fill(1);
        await m.savePretrained(bigDir);
      } finally {
        m.dispose();
      }
      const t0 = performance.now();
      const lm = await AutoModelForCausalLM.fromPretrained(bigDir, { dtype: "bf16" });
      try {
        const loadMs = performance.now() - t0;
        big = { params, weightBytes: lm.weightBytes, memory: runtime().memory.buffer.byteLength, loadMs, ms: await decodeMs(lm, 8) };
        log(`half: 1.5B BF16: ${bytes(big.weightBytes)} of weights, wasm memory ${bytes(big.memory)}, load ${(loadMs / 1000).toFixed(1)} s, decode ${big.ms.toFixed(0)} ms/token`);
      } finally {
        lm.dispose();
      }
    } finally {
      rmSync(bigDir, { recursive: true, force: true });
    }
  }
  const weightRow = rows.find((r) => r.case.startsWith("decode ms/token, BF16"));
  if (big) rows.push({ case: "Qwen2.5-1.5B shape in BF16: decode ms/token (loads within 4 GiB)", ours_ms: big.ms, peer: "-", peer_ms: NaN, speedup: NaN, weight_bytes: big.weightBytes, wasm_memory: big.memory, load_ms: Math.round(big.loadMs) });
  if (!opts.json) printTable("half-precision weights (single thread; speedup = f32 ms / half ms)", rows, ["case", "ours_ms", "peer", "peer_ms", "speedup", "weight_ratio", "ours_err", "peer_err"]);
  writeResults("half", rows);
  writeSummary("half", {
    title: "Half-precision weights: BF16 / F16 against f32",
    intro: [
      `Speed: a ${quick ? "small (quick) Llama shape" : "Qwen2-0.5B-shaped Llama (24 layers, hidden 896, MLP 4864, vocabulary 151,936, tied)"} with seeded synthetic weights, ` +
        "loaded with each dtype from the same BF16 (F16) checkpoint; decode = the median per-token time of a greedy generation with the KV cache (best of 2). " +
        `Weight memory half / f32: ${weightRow ? weightRow.weight_ratio : "-"}.`,
      "Accuracy: the fixture Llama's logits from transformers' float32 model against PyTorch's bfloat16 model (torch 1.13 has no float16 matmul on CPU) and against ours with the same half weights.",
      ...(big
        ? [
            `A Qwen2.5-1.5B-shaped model (28 layers, hidden 1536, 12 heads / 2 KV heads, MLP 8960, vocabulary 151,936, tied; ${(big.params / 1e6).toFixed(0)} M parameters) ` +
              `loads in BF16 within wasm32's 4 GiB: ${bytes(big.weightBytes)} of weights, wasm memory ${bytes(big.memory)} after loading, ${(big.loadMs / 1000).toFixed(1)} s to load, ` +
              `${big.ms.toFixed(0)} ms per decoded token (synthetic weights). In f32 it would need ${bytes(big.params * 4)} and does not fit.`,
          ]
        : []),
      `Total run time ${((performance.now() - t00) / 1000).toFixed(0)} s.`,
    ],
    rows: rows.filter((r) => Number.isFinite(r.ours_ms) && Number.isFinite(r.peer_ms)),
    extraColumns: [{ key: "weight_ratio", header: "weight bytes half / f32", format: (v) => (typeof v === "number" ? v.toFixed(3) : "") }],
    notes: rows.filter((r) => !Number.isFinite(r.ours_ms)).map((r) => `${r.case}: ${r.notes}${r.met === undefined ? "" : ` Target ${r.target}: ${r.met ? "met" : "missed"}.`}`),
    chart: {
      title: "Decode ms/token, half against f32 weights",
      categories: rows.filter((r) => Number.isFinite(r.ours_ms) && Number.isFinite(r.peer_ms)).map((r) => r.case.replace("decode ms/token, ", "").replace(/ \(.*/, "")),
      series: [
        { name: "half weights", color: "#2ca02c", values: rows.filter((r) => Number.isFinite(r.ours_ms) && Number.isFinite(r.peer_ms)).map((r) => r.ours_ms) },
        { name: "f32 weights", color: "#1f77b4", values: rows.filter((r) => Number.isFinite(r.ours_ms) && Number.isFinite(r.peer_ms)).map((r) => r.peer_ms) },
      ],
    },
  });
  return rows;
}
