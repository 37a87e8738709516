/**
 * `shira demo`: the language-model story, offline, on the Brown corpus.
 *
 *  1. load the small Llama pretrained by `shira pretrain` on all genres (shipped in `models/brown-llama`; `--pretrain`
 *     makes it again first);
 *  2. train one SHiRA and one LoRA adapter (same parameter count) per genre on that genre's training documents;
 *  3. held-out perplexity of every genre under the base model and under every adapter (a genre × adapter matrix),
 *     for SHiRA and for LoRA;
 *  4. multi-adapter fusion: two genres fused against each alone, for SHiRA and LoRA;
 *  5. whole-model switch time against one decode step; sample continuations of one prompt under every adapter, and
 *     one stream whose adapter changes every few tokens;
 *  6. `report.md` with tables and SVG charts, `results.json`, the base model and every adapter in PEFT's format.
 */
import { mkdir, readFile, writeFile, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { AutoModelForCausalLM } from "../models/auto.js";
import { AutoTokenizer, type PreTrainedTokenizer } from "../models/tokenizer.js";
import type { DecoderModel } from "../models/decoder.js";
import { DEMO_GENRES, EOS_TOKEN, brownTokenizerConfig, encodeDocs, packDocs, prepareBrown, specialId, type PretrainSettings } from "../demo/brown-lm.js";
import type { TokenDataset } from "../models/train-lm.js";
import { ShiraConfig } from "../shira/config.js";
import { getPeftModel, type ShiraModel } from "../shira/model.js";
import { LoraConfig, getLoraModel, type LoraModel } from "../lora/lora.js";
import { evaluate, train } from "../train/train.js";
import { ProgressBar, fmtNum, mdTable, svgBarChart, svgHeatmap, textTable } from "./format.js";
import { runPretrain } from "./pretrain.js";

export interface LmDemoOptions {
  out: string;
  quick: boolean;
  progress: boolean;
  log: (line: string) => void;
  seed?: number;
  /** The base model folder (default: the shipped `models/brown-llama`). */
  model?: string;
  /** Pretrain the base model first (into `<out>/base-model`). */
  pretrain?: boolean;
  /** Settings for `--pretrain` (tests use small ones). */
  pretrainSettings?: Partial<PretrainSettings>;
}

interface Stat {
  n: number;
  medianMs: number;
  p95Ms: number;
  minMs: number;
}

export interface LmDemoResults {
  tool: string;
  quick: boolean;
  model: { dir: string; parameters: number; vocabSize: number; layers: number; hidden: number };
  settings: { genres: string[]; r: number; targets: string[]; steps: number; batchSize: number; seqLength: number; shiraLr: number; loraLr: number; evalTokensPerGenre: number; seed: number; switches: number };
  data: Record<string, { trainTokens: number; heldOutTokens: number }>;
  /** perplexity[method][adapter][genre]; adapter "base" for the base model. */
  perplexity: { shira: Record<string, Record<string, number>>; lora: Record<string, Record<string, number>>; base: Record<string, number> };
  adapters: { genre: string; method: "shira" | "lora"; params: number; fileBytes: number; steps: number; trainMs: number; firstLoss: number; lastLoss: number; dir: string }[];
  fusion: { pair: [string, string]; method: "shira" | "lora"; fused: [number, number]; single: [number, number]; base: [number, number] }[];
  switching: { shira: Stat; lora: Stat; decodeStepMs: number; shiraSteps: number; loraSteps: number };
  samples: { prompt: string; maxNewTokens: number; seed: number; texts: { adapter: string; text: string }[] };
  stream: { switchEvery: number; segments: { adapter: string; text: string }[] };
  /** Base weights bit-identical after SHiRA training, every switch, fusion and unload. */
  baseBitIdentical: boolean;
  /** Base weights changed by LoRA's fused switching and fusion (merge then unmerge), and the largest change. */
  loraDrift: { changedWeights: number; maxAbs: number };
  durationMs: number;
}

/** The shipped base model: `models/brown-llama` at the package root (from `dist/cli.js` or `src/cli/*.ts`). */
export async function defaultModelDir(): Promise<string | null> {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const up of ["..", "../.."]) {
    const d = resolve(here, up, "models", "brown-llama");
    try {
      await stat(join(d, "config.json"));
      return d;
    } catch {
      /* next */
    }
  }
  return null;
}

function stat_(ms: number[]): Stat {
  const s = ms.slice().sort((a, b) => a - b);
  const q = (f: number) => s[Math.min(s.length - 1, Math.floor(f * s.length))];
  return { n: s.length, medianMs: q(0.5), p95Ms: q(0.95), minMs: s[0] };
}

async function writeAdapter(dir: string, files: { "adapter_config.json": string; "adapter_model.safetensors": Uint8Array }): Promise<number> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "adapter_config.json"), files["adapter_config.json"]);
  await writeFile(join(dir, "adapter_model.safetensors"), files["adapter_model.safetensors"]);
  return new TextEncoder().encode(files["adapter_config.json"]).length + files["adapter_model.safetensors"].length;
}

/** The first `n` sequences of a dataset. */
function headOf(d: TokenDataset, n: number): TokenDataset {
  const rows = Math.min(n, d.inputIds.length / d.seqLength);
  return { inputIds: d.inputIds.slice(0, rows * d.seqLength), seqLength: d.seqLength };
}

const LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

export async function runLmDemo(opts: LmDemoOptions): Promise<LmDemoResults> {
  const t0 = performance.now();
  const seed = opts.seed ?? 0;
  const quick = opts.quick;
  const out = opts.out;
  await mkdir(out, { recursive: true });
  const bar = (label: string) => new ProgressBar(label, opts.progress ? process.stderr : null);

  // ---- 1. the base model
  let modelDir = opts.model ?? null;
  if (opts.pretrain) {
    modelDir = join(out, "base-model");
    await runPretrain({ out: modelDir, settings: opts.pretrainSettings ?? {}, progress: opts.progress, log: opts.log, commandLine: `shira demo --pretrain --out ${out}` });
  }
  modelDir ??= await defaultModelDir();
  if (!modelDir) throw new Error("no pretrained base model found (models/brown-llama); make one with `shira demo --pretrain` (about 30 minutes) or pass --model DIR");
  const lm = await AutoModelForCausalLM.fromPretrained(modelDir);
  const tok = await AutoTokenizer.fromPretrained(modelDir);
  const tokenizerJson = JSON.parse(await readFile(join(modelDir, "tokenizer.json"), "utf8")) as Record<string, unknown>;
  const eosId = specialId(tokenizerJson, EOS_TOKEN);
  try {
    return await demoOn(lm, tok, tokenizerJson, eosId, modelDir);
  } finally {
    lm.dispose();
  }

  async function demoOn(lm: DecoderModel, tok: PreTrainedTokenizer, tokenizerJson: Record<string, unknown>, eosId: number, modelDir: string): Promise<LmDemoResults> {
    const genres: string[] = quick ? ["news", "religion", "science_fiction"] : [...DEMO_GENRES];
    const settings = {
      genres,
      r: quick ? 4 : 8,
      targets: LLAMA_TARGETS,
      steps: quick ? 6 : 60,
      batchSize: quick ? 4 : 8,
      seqLength: quick ? 64 : 128,
      shiraLr: 5e-3,
      loraLr: 2e-3,
      evalTokensPerGenre: quick ? 512 : 4096,
      seed,
      switches: quick ? 12 : 60,
    };
    const L = settings.seqLength;
    // ---- data: every genre's training and held-out documents, encoded and packed
    const corpus = prepareBrown();
    const data: LmDemoResults["data"] = {};
    const trainSets = new Map<string, TokenDataset>();
    const heldSets = new Map<string, TokenDataset>();
    for (const g of genres) {
      const tr = packDocs(encodeDocs(tokenizerJson, corpus.train.filter((d) => d.genre === g)), L, eosId);
      const he = headOf(packDocs(encodeDocs(tokenizerJson, corpus.heldOut.filter((d) => d.genre === g)), L, eosId), Math.ceil(settings.evalTokensPerGenre / L));
      trainSets.set(g, tr);
      heldSets.set(g, he);
      data[g] = { trainTokens: tr.inputIds.length, heldOutTokens: he.inputIds.length };
    }
    const ppl = (m: Parameters<typeof evaluate>[0], g: string) => evaluate(m, heldSets.get(g)!, "perplexity", { batchSize: 8 });
    const baseBits = new Map(lm.namedParameters().map(([n, p]) => [n, new Uint32Array(p.data.slice().buffer)]));
    let b = bar("base perplexity");
    const basePpl: Record<string, number> = {};
    genres.forEach((g, i) => {
      basePpl[g] = ppl(lm, g);
      b.update(i + 1, genres.length);
    });
    opts.log(`base model: held-out perplexity ${genres.map((g) => `${g} ${basePpl[g].toFixed(1)}`).join(", ")}`);

    const adapters: LmDemoResults["adapters"] = [];
    const trainAdapter = async (m: ShiraModel | LoraModel, method: "shira" | "lora", g: string) => {
      b = bar(`${method === "shira" ? "SHiRA" : "LoRA"} ${g}`);
      const t = performance.now();
      // at most one pass over the genre's documents (the small genres have 15–30 k tokens: repeating them overfits)
      const data = trainSets.get(g)!;
      const res = await train(m, data, {
        maxSteps: settings.steps,
        epochs: 1,
        batchSize: settings.batchSize,
        lr: method === "shira" ? settings.shiraLr : settings.loraLr,
        schedule: { type: "cosine", warmupRatio: 0.1 },
        shuffle: seed,
        onProgress: (p) => b.update(p.step, p.totalSteps, `loss ${p.loss.toFixed(3)}`),
      });
      const trainMs = performance.now() - t;
      m.eval();
      const dir = join("adapters", method, g);
      const fileBytes = await writeAdapter(join(out, dir), m.saveAdapter(g));
      adapters.push({ genre: g, method, params: m.adapterSize(g), fileBytes, steps: res.steps, trainMs, firstLoss: res.losses[0], lastLoss: res.losses[res.losses.length - 1], dir });
    };
    const matrix = (m: ShiraModel | LoraModel): Record<string, Record<string, number>> => {
      const res: Record<string, Record<string, number>> = {};
      b = bar("perplexity matrix");
      genres.forEach((a, i) => {
        m.switchTo(a);
        res[a] = {};
        for (const g of genres) res[a][g] = ppl(m, g);
        b.update(i + 1, genres.length);
      });
      m.unmerge();
      return res;
    };
    const pairs: [string, string][] = quick ? [[genres[0], genres[1]]] : [["news", "religion"], ["science_fiction", "romance"], ["religion", "humor"]];
    const fusion: LmDemoResults["fusion"] = [];
    const fuse = (m: ShiraModel | LoraModel, method: "shira" | "lora", single: Record<string, Record<string, number>>) => {
      for (const pair of pairs) {
        m.fuse([{ name: pair[0], weight: 1 }, { name: pair[1], weight: 1 }]);
        fusion.push({ pair, method, fused: [ppl(m, pair[0]), ppl(m, pair[1])], single: [single[pair[0]][pair[0]], single[pair[1]][pair[1]]], base: [basePpl[pair[0]], basePpl[pair[1]]] });
        m.unmerge();
      }
    };
    const timeSwitches = (m: ShiraModel | LoraModel): number[] => {
      const times: number[] = [];
      for (let i = 0; i < settings.switches; i++) {
        const s = performance.now();
        m.switchTo(genres[i % genres.length]);
        times.push(performance.now() - s);
      }
      m.unmerge();
      return times;
    };

    // ---- 2-4. SHiRA: train, save, perplexity matrix, fusion, switching, samples, a switching stream
    const shiraCfg = (i: number) => new ShiraConfig({ r: settings.r, targetModules: settings.targets, randomSeed: seed + 1 + i, taskType: "CAUSAL_LM" });
    const shira = getPeftModel(lm, shiraCfg(0), genres[0]);
    genres.slice(1).forEach((g, i) => shira.addAdapter(g, shiraCfg(i + 1)));
    for (const g of genres) {
      shira.setAdapter(g);
      await trainAdapter(shira, "shira", g);
    }
    const shiraPpl = matrix(shira);
    fuse(shira, "shira", shiraPpl);
    timeSwitches(shira); // warm-up
    const shiraTimes = timeSwitches(shira);
    // unmerge() leaves the last adapter active (unfused): the decode timing and the "base" sample run on the base
    shira.switchToBase();
    // one decode step: tokens after the first of a greedy generation with the KV cache
    const prompt = "The";
    const promptIds = tok.encode(prompt);
    const decodeStepMs = await (async () => {
      const n = quick ? 16 : 48;
      const stamps: number[] = [];
      await lm.generate([promptIds], { maxNewTokens: n, onToken: () => void stamps.push(performance.now()) });
      const d = stamps.slice(1).map((s, i) => s - stamps[i]);
      return stat_(d).medianMs;
    })();
    const sampleOpts = { maxNewTokens: quick ? 16 : 40, doSample: true, temperature: 0.8, topK: 40, seed: seed + 7 };
    const texts: LmDemoResults["samples"]["texts"] = [];
    const sample = async (adapter: string) => {
      const r = await lm.generate([promptIds], sampleOpts);
      texts.push({ adapter, text: tok.decode(r.sequences[0].slice(promptIds.length)) });
    };
    b = bar("samples");
    await sample("base");
    for (const g of genres) {
      shira.switchTo(g);
      await sample(`SHiRA ${g}`);
    }
    b.update(1, 1);
    // one stream, the adapter switched every few tokens
    const switchEvery = quick ? 4 : 8;
    const segments: LmDemoResults["stream"]["segments"] = [];
    shira.switchTo(genres[0]);
    const order = [...genres, ...genres].slice(0, quick ? 3 : 6);
    let current = order[0];
    let buf = "";
    for await (const t of lm.stream([promptIds], { ...sampleOpts, maxNewTokens: switchEvery * order.length, tokenizer: tok })) {
      buf += t.text ?? "";
      if ((t.step + 1) % switchEvery === 0) {
        segments.push({ adapter: current, text: buf });
        buf = "";
        const next = order[(t.step + 1) / switchEvery];
        if (next) {
          shira.switchTo(next);
          current = next;
        }
      }
    }
    if (buf) segments.push({ adapter: current, text: buf });
    shira.unmerge();
    shira.unload();
    const sameBits = () =>
      lm.namedParameters().every(([n, p]) => {
        const ref = baseBits.get(n)!;
        const now = new Uint32Array(p.data.slice().buffer);
        return now.length === ref.length && now.every((v, i) => v === ref[i]);
      });
    const baseBitIdentical = sameBits();

    // ---- LoRA on the same base: same r, so the same parameter count per layer
    const loraCfg = () => new LoraConfig({ r: settings.r, loraAlpha: 2 * settings.r, targetModules: settings.targets });
    const lora = getLoraModel(lm, loraCfg(), genres[0]);
    genres.slice(1).forEach((g) => lora.addAdapter(g, loraCfg()));
    for (const g of genres) {
      lora.setAdapter(g);
      await trainAdapter(lora, "lora", g);
    }
    const loraPpl = matrix(lora);
    fuse(lora, "lora", loraPpl);
    timeSwitches(lora);
    const loraTimes = timeSwitches(lora);
    lora.unload();
    // LoRA's fused switch adds and subtracts a dense low-rank delta (PEFT's merge/unmerge): the base drifts in its
    // last bits. Measure the drift, then put the exact base back so the saved base model is the one we loaded.
    let loraChanged = 0;
    let loraMaxDrift = 0;
    for (const [n, p] of lm.namedParameters()) {
      const ref = new Float32Array(baseBits.get(n)!.buffer);
      for (let i = 0; i < ref.length; i++) {
        if (Object.is(p.data[i], ref[i])) continue;
        loraChanged++;
        loraMaxDrift = Math.max(loraMaxDrift, Math.abs(p.data[i] - ref[i]));
      }
      p.data.set(ref);
    }

    // the base model next to the adapters, so the output folder is complete (the browser page loads it)
    await lm.savePretrained(join(out, "base-model"));
    await writeFile(join(out, "base-model", "tokenizer.json"), JSON.stringify(tokenizerJson) + "\n");
    await writeFile(join(out, "base-model", "tokenizer_config.json"), JSON.stringify(brownTokenizerConfig(512), null, 2) + "\n");

    const shiraStat = stat_(shiraTimes);
    const loraStat = stat_(loraTimes);
    return {
      tool: "shira-wasm demo (language model)",
      quick,
      model: { dir: modelDir, parameters: lm.numParameters(), vocabSize: lm.config.vocabSize, layers: lm.config.numLayers, hidden: lm.config.hiddenSize },
      settings,
      data,
      perplexity: { shira: shiraPpl, lora: loraPpl, base: basePpl },
      adapters,
      fusion,
      switching: { shira: shiraStat, lora: loraStat, decodeStepMs, shiraSteps: shiraStat.medianMs / decodeStepMs, loraSteps: loraStat.medianMs / decodeStepMs },
      samples: { prompt, maxNewTokens: sampleOpts.maxNewTokens, seed: sampleOpts.seed, texts },
      stream: { switchEvery, segments },
      baseBitIdentical,
      loraDrift: { changedWeights: loraChanged, maxAbs: loraMaxDrift },
      durationMs: performance.now() - t0,
    };
  }
}

/** A perplexity as shown in the tables (one decimal, kept as text so 63.0 shows as "63.0"). */
const f1 = (v: number) => v.toFixed(1);

/** The human-readable summary (the body of report.md; plain text tables when `md` is false). */
export function lmSummary(r: LmDemoResults, md: boolean): string {
  const table = md ? mdTable : textTable;
  const g = r.settings.genres;
  const lines: string[] = [];
  const h = (s: string) => lines.push(md ? `## ${s}` : s.toUpperCase(), "");
  h("Held-out perplexity: evaluated genre (rows) × adapter (columns)");
  for (const method of ["shira", "lora"] as const) {
    lines.push(`${method === "shira" ? "SHiRA" : "LoRA"} (r = ${r.settings.r} on ${r.settings.targets.join(", ")}; lower is better; the diagonal is each genre's own adapter):`, "");
    lines.push(table(["genre", "base", ...g], g.map((row) => [row, f1(r.perplexity.base[row]), ...g.map((a) => f1(r.perplexity[method][a][row]))])), "");
  }
  h("Own-genre adapter against the base model");
  lines.push(
    table(
      ["genre", "train tokens", "steps", "base", "SHiRA", "LoRA", "SHiRA params", "LoRA params"],
      g.map((x) => {
        const sh = r.adapters.find((a) => a.genre === x && a.method === "shira")!;
        const lo = r.adapters.find((a) => a.genre === x && a.method === "lora")!;
        return [x, r.data[x].trainTokens, sh.steps, f1(r.perplexity.base[x]), f1(r.perplexity.shira[x][x]), f1(r.perplexity.lora[x][x]), sh.params, lo.params];
      }),
    ),
    "",
  );
  h("Fusing two genres (weight 1 each) against each alone");
  lines.push(
    table(
      ["pair", "method", "ppl genre 1: alone → fused", "ppl genre 2: alone → fused"],
      r.fusion.map((f) => [`${f.pair[0]} + ${f.pair[1]}`, f.method === "shira" ? "SHiRA" : "LoRA", `${f.single[0].toFixed(1)} → ${f.fused[0].toFixed(1)}`, `${f.single[1].toFixed(1)} → ${f.fused[1].toFixed(1)}`]),
    ),
    "",
  );
  h("Whole-model switch against one decode step");
  lines.push(
    table(
      ["", "median ms", "p95 ms", "decode steps"],
      [
        ["SHiRA switchTo (fused, exact)", Number(r.switching.shira.medianMs.toFixed(3)), Number(r.switching.shira.p95Ms.toFixed(3)), Number(r.switching.shiraSteps.toFixed(3))],
        ["LoRA switchTo (fused)", Number(r.switching.lora.medianMs.toFixed(3)), Number(r.switching.lora.p95Ms.toFixed(3)), Number(r.switching.loraSteps.toFixed(3))],
        ["one decode step", Number(r.switching.decodeStepMs.toFixed(3)), "", 1],
      ],
    ),
    "",
  );
  lines.push(
    `Base weights bit-identical after SHiRA's training, ${r.settings.switches * 2} switches, fusions and unload: ${r.baseBitIdentical ? "yes" : "NO"}. ` +
      `LoRA's fused switching (merge, then unmerge by subtraction, as PEFT does) left ${fmtNum(r.loraDrift.changedWeights)} base weights changed (largest change ${r.loraDrift.maxAbs.toPrecision(2)}); the demo restores them from a copy.`,
    "",
  );
  h(`Samples: "${r.samples.prompt}" + ${r.samples.maxNewTokens} tokens (temperature 0.8, top-k 40, seed ${r.samples.seed})`);
  for (const t of r.samples.texts) lines.push(md ? `* **${t.adapter}**: ${r.samples.prompt}${t.text.replace(/\n/g, " ")}` : `${t.adapter}: ${r.samples.prompt}${t.text.replace(/\n/g, " ")}`);
  lines.push("");
  h(`One stream, the SHiRA adapter switched every ${r.stream.switchEvery} tokens`);
  lines.push(md ? r.samples.prompt + r.stream.segments.map((s) => `**[${s.adapter}]**${s.text.replace(/\n/g, " ")}`).join("") : r.samples.prompt + r.stream.segments.map((s) => `[${s.adapter}]${s.text.replace(/\n/g, " ")}`).join(""));
  lines.push("");
  return lines.join("\n");
}

export async function writeLmReport(out: string, r: LmDemoResults): Promise<void> {
  const g = r.settings.genres;
  for (const method of ["shira", "lora"] as const) {
    await writeFile(
      join(out, `perplexity-${method}.svg`),
      svgHeatmap(`${method === "shira" ? "SHiRA" : "LoRA"}: held-out perplexity (row = evaluated genre, column = adapter)`, g, ["base", ...g], g.map((row) => [r.perplexity.base[row], ...g.map((a) => r.perplexity[method][a][row])]), { perRow: true }),
    );
  }
  await writeFile(
    join(out, "switch.svg"),
    svgBarChart("Whole-model adapter switch vs one decode step (ms, log scale)", ["median"], [
      { name: "SHiRA switch", color: "#2ca02c", values: [r.switching.shira.medianMs] },
      { name: "LoRA switch", color: "#d62728", values: [r.switching.lora.medianMs] },
      { name: "decode step", color: "#1f77b4", values: [r.switching.decodeStepMs] },
    ], { log: true, format: (v) => (v >= 1 ? v.toFixed(1) : v.toPrecision(2)) }),
  );
  const m = r.model;
  const report = [
    "# shira-wasm demo: genre adapters on a small language model",
    "",
    `Base model: a ${fmtNum(m.parameters)}-parameter Llama (${m.layers} layers, hidden ${m.hidden}, vocabulary ${fmtNum(m.vocabSize)}) pretrained on the Brown corpus by \`shira pretrain\` (\`${m.dir}\`). One SHiRA and one LoRA adapter per genre, up to ${r.settings.steps} steps of ${r.settings.batchSize} × ${r.settings.seqLength} tokens each (at most one pass over the genre's training documents); perplexity on held-out documents of each genre (${fmtNum(r.settings.evalTokensPerGenre)} tokens at most). ${r.quick ? "Quick run (fewer genres, steps and tokens): the numbers are not meaningful." : ""}`,
    "",
    "![SHiRA perplexity](perplexity-shira.svg)",
    "",
    "![LoRA perplexity](perplexity-lora.svg)",
    "",
    "![switch time](switch.svg)",
    "",
    lmSummary(r, true),
    `Files: \`base-model/\` (Hugging Face checkpoint and tokenizer), \`adapters/shira/<genre>/\` and \`adapters/lora/<genre>/\` (PEFT's format), \`results.json\`. Took ${(r.durationMs / 1000).toFixed(1)} s.`,
    "",
  ].join("\n");
  await writeFile(join(out, "report.md"), report);
  await writeFile(join(out, "results.json"), JSON.stringify(r, null, 2) + "\n");
}
