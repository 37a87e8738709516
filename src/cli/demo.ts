/**
 * `shira demo`: the end-to-end story on the `mnist` package's digits, offline.
 *
 *  1. train a base MLP (784-256-128-10) on upright digits;
 *  2. train a SHiRA adapter and a LoRA adapter with the same parameter count for each shifted task
 *     (rotated 90°, colour-inverted, mirrored);
 *  3. save every adapter in PEFT's format, load them back into a fresh model and check they predict the same;
 *  4. switch between adapters in fused mode many times, timing each switch, SHiRA against LoRA;
 *  5. fuse pairs of adapters (weight 1.0 each) and measure accuracy on both tasks of the pair (concept loss);
 *  6. print a table and write DIR/report.md (with SVG charts), DIR/results.json, the model and the adapters.
 */
import { writeFile, mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { createMlp, mlpLinearNames, MNIST_MLP, type MlpSpec } from "../demo/mnist-mlp.js";
import { asDataset, loadMnist, split, transform, TASKS, PIXELS, type Digits, type Task } from "../demo/mnist-data.js";
import { manualSeed } from "../nn/random.js";
import { readSafetensors, writeSafetensors } from "../io/safetensors.js";
import { ShiraConfig } from "../shira/config.js";
import { getPeftModel, ShiraModel } from "../shira/model.js";
import { LoraConfig, getLoraModel, LoraModel } from "../lora/lora.js";
import { evaluate, predict, train, type Trainable } from "../train/train.js";
import type { Module } from "../nn/module.js";
import { ProgressBar, mdTable, pct, svgBarChart, textTable, fmtNum } from "./format.js";

export interface DemoOptions {
  out: string;
  quick: boolean;
  /** Progress bars on stderr. */
  progress: boolean;
  log: (line: string) => void;
  seed?: number;
}

interface Stat {
  n: number;
  medianMs: number;
  p95Ms: number;
  meanMs: number;
  minMs: number;
}

export interface DemoResults {
  tool: string;
  quick: boolean;
  settings: { nTrain: number; nTest: number; sizes: number[]; r: number; baseEpochs: number; adapterEpochs: number; tasks: Task[]; switches: number; shiraLr: number; loraLr: number; seed: number };
  base: { params: number; trainMs: number; accuracy: Record<string, number> };
  adapters: { task: Task; method: "shira" | "lora"; params: number; fileBytes: number; accuracy: number; baseAccuracy: number; reloadAccuracy: number; reloadIdentical: boolean; trainMs: number; dir: string }[];
  switching: { shira: Stat; lora: Stat; speedup: number };
  fusion: { pair: [Task, Task]; method: "shira" | "lora"; accuracy: [number, number]; single: [number, number]; drop: [number, number] }[];
  baseBitIdentical: boolean;
  durationMs: number;
}

function stat(ms: number[]): Stat {
  const s = ms.slice().sort((a, b) => a - b);
  const q = (f: number) => s[Math.min(s.length - 1, Math.floor(f * s.length))];
  return { n: s.length, medianMs: q(0.5), p95Ms: q(0.95), meanMs: s.reduce((a, b) => a + b, 0) / s.length, minMs: s[0] };
}

function fileSize(files: { "adapter_config.json": string; "adapter_model.safetensors": Uint8Array }): number {
  return new TextEncoder().encode(files["adapter_config.json"]).length + files["adapter_model.safetensors"].length;
}

async function writeAdapter(dir: string, files: { "adapter_config.json": string; "adapter_model.safetensors": Uint8Array }): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "adapter_config.json"), files["adapter_config.json"]);
  await writeFile(join(dir, "adapter_model.safetensors"), files["adapter_model.safetensors"]);
}

function samePredictions(a: Int32Array, b: Int32Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

export async function runDemo(opts: DemoOptions): Promise<DemoResults> {
  const t0 = performance.now();
  const seed = opts.seed ?? 0;
  const quick = opts.quick;
  const settings = {
    nTrain: quick ? 3000 : 8000,
    nTest: quick ? 1000 : 2000,
    sizes: MNIST_MLP.sizes,
    r: Number(process.env.SHIRA_DEMO_R ?? 4),
    baseEpochs: quick ? 3 : 5,
    adapterEpochs: quick ? 3 : 5,
    tasks: ["rot90", "invert", "mirror"] as Task[],
    switches: quick ? 60 : 300,
    shiraLr: Number(process.env.SHIRA_DEMO_SHIRA_LR ?? 2e-2),
    loraLr: Number(process.env.SHIRA_DEMO_LORA_LR ?? 1e-2),
    seed,
  };
  const spec: MlpSpec = { ...MNIST_MLP, sizes: settings.sizes };
  const bar = (label: string) => new ProgressBar(label, opts.progress ? process.stderr : null);
  const out = opts.out;
  await mkdir(out, { recursive: true });

  // ---- data
  const { train: tr, test: te } = split(loadMnist(), settings.nTrain, settings.nTest, seed + 1);
  const tasksTrain = new Map<Task | "upright", Digits>([["upright", tr]]);
  const tasksTest = new Map<Task | "upright", Digits>([["upright", te]]);
  for (const t of settings.tasks) {
    tasksTrain.set(t, transform(tr, t));
    tasksTest.set(t, transform(te, t));
  }
  const acc = (m: Trainable, task: Task | "upright") => evaluate(m, asDataset(tasksTest.get(task)!));

  // ---- 1. base model
  manualSeed(seed);
  const model = createMlp(spec);
  let b = bar("base model (upright)");
  let t = performance.now();
  await train(model, asDataset(tr), { epochs: settings.baseEpochs, batchSize: 64, lr: 2e-3, schedule: { type: "cosine", warmupSteps: 20 }, onProgress: (p) => b.update(p.step, p.totalSteps, `loss ${p.loss.toFixed(3)}`) });
  const baseTrainMs = performance.now() - t;
  model.eval();
  const baseAcc: Record<string, number> = { upright: acc(model, "upright") };
  for (const task of settings.tasks) baseAcc[task] = acc(model, task);
  const baseState = writeSafetensors(model.stateDict(), { format: "pt" });
  await writeFile(join(out, "model.safetensors"), baseState);
  await writeFile(join(out, "model.json"), JSON.stringify(spec, null, 2) + "\n");
  const baseParams = model.numParameters();
  opts.log(`base model: upright accuracy ${pct(baseAcc.upright)} (${(baseTrainMs / 1000).toFixed(1)} s)`);

  // ---- 2. adapters
  const targets = mlpLinearNames(spec);
  const shira = getPeftModel(model, new ShiraConfig({ r: settings.r, targetModules: targets, randomSeed: 1, taskType: null }), settings.tasks[0]);
  for (const task of settings.tasks.slice(1)) shira.addAdapter(task, new ShiraConfig({ r: settings.r, targetModules: targets, randomSeed: 1 + settings.tasks.indexOf(task) }));
  const adapters: DemoResults["adapters"] = [];
  for (const task of settings.tasks) {
    shira.setAdapter(task);
    b = bar(`SHiRA ${task}`);
    t = performance.now();
    await train(shira, asDataset(tasksTrain.get(task)!), { epochs: settings.adapterEpochs, batchSize: 64, lr: settings.shiraLr, schedule: { type: "cosine", warmupSteps: 20 }, onProgress: (p) => b.update(p.step, p.totalSteps, `loss ${p.loss.toFixed(3)}`) });
    const ms = performance.now() - t;
    shira.eval();
    const files = shira.saveAdapter(task);
    const dir = join(out, "adapters", task);
    await writeAdapter(dir, files);
    adapters.push({ task, method: "shira", params: shira.adapterSize(task), fileBytes: fileSize(files), accuracy: acc(shira, task), baseAccuracy: baseAcc[task], reloadAccuracy: NaN, reloadIdentical: false, trainMs: ms, dir: `adapters/${task}` });
  }
  // LoRA baselines on a separate copy of the base model (same weights), same parameter count: r_lora = r
  manualSeed(seed + 100);
  const loraBase = createMlp(spec);
  loraBase.loadStateDict(readSafetensors(baseState));
  loraBase.eval();
  const lora = getLoraModel(loraBase, new LoraConfig({ r: settings.r, loraAlpha: 2 * settings.r, targetModules: targets }), settings.tasks[0]);
  for (const task of settings.tasks.slice(1)) lora.addAdapter(task, new LoraConfig({ r: settings.r, loraAlpha: 2 * settings.r, targetModules: targets }));
  for (const task of settings.tasks) {
    lora.setAdapter(task);
    b = bar(`LoRA ${task}`);
    t = performance.now();
    await train(lora, asDataset(tasksTrain.get(task)!), { epochs: settings.adapterEpochs, batchSize: 64, lr: settings.loraLr, schedule: { type: "cosine", warmupSteps: 20 }, onProgress: (p) => b.update(p.step, p.totalSteps, `loss ${p.loss.toFixed(3)}`) });
    const ms = performance.now() - t;
    lora.eval();
    const files = lora.saveAdapter(task);
    const dir = join(out, "lora", task);
    await writeAdapter(dir, files);
    adapters.push({ task, method: "lora", params: lora.adapterSize(task), fileBytes: fileSize(files), accuracy: acc(lora, task), baseAccuracy: baseAcc[task], reloadAccuracy: NaN, reloadIdentical: false, trainMs: ms, dir: `lora/${task}` });
  }

  // ---- 3. reload everything into fresh models and compare predictions
  const freshModel = (): Module => {
    const m = createMlp(spec);
    m.loadStateDict(readSafetensors(baseState));
    return m.eval();
  };
  const reShira = await ShiraModel.fromPretrained(freshModel(), join(out, "adapters", settings.tasks[0]), { adapterName: settings.tasks[0] });
  for (const task of settings.tasks.slice(1)) await reShira.loadAdapter(join(out, "adapters", task), task);
  const reLora = new LoraModel(freshModel());
  for (const task of settings.tasks) {
    const d = join(out, "lora", task);
    reLora.loadAdapterFiles(await readFile(join(d, "adapter_config.json"), "utf8"), new Uint8Array(await readFile(join(d, "adapter_model.safetensors"))), task);
  }
  for (const a of adapters) {
    const [orig, re] = a.method === "shira" ? [shira as Trainable & { setAdapter(n: string): void }, reShira as Trainable & { setAdapter(n: string): void }] : [lora, reLora];
    orig.setAdapter(a.task);
    re.setAdapter(a.task);
    const test = tasksTest.get(a.task)!;
    a.reloadAccuracy = acc(re, a.task);
    a.reloadIdentical = samePredictions(predict(orig, test.images, PIXELS), predict(re, test.images, PIXELS));
  }

  // ---- 4. fused switching, timed per switch
  const baseWeights = shira.shiraLayers().map(([, l]) => l.baseWeight());
  const timeSwitches = (doSwitch: (name: string) => void): number[] => {
    const times: number[] = [];
    for (let i = 0; i < settings.switches; i++) {
      const name = settings.tasks[i % settings.tasks.length];
      const s = performance.now();
      doSwitch(name);
      times.push(performance.now() - s);
    }
    return times;
  };
  b = bar("switching");
  timeSwitches((n) => shira.switchTo(n)); // warm-up
  const shiraTimes = timeSwitches((n) => shira.switchTo(n));
  b.update(1, 2);
  timeSwitches((n) => lora.switchTo(n));
  const loraTimes = timeSwitches((n) => lora.switchTo(n));
  b.update(2, 2);
  // the switched models predict like the unfused adapters
  for (const a of adapters) {
    const m = a.method === "shira" ? shira : lora;
    m.switchTo(a.task);
    const fusedAcc = acc(m, a.task);
    if (a.method === "shira" && fusedAcc !== a.accuracy) throw new Error(`fused ${a.task} accuracy ${fusedAcc} differs from unfused ${a.accuracy}`);
  }
  shira.unmerge();
  lora.unmerge();
  const baseBitIdentical = shira.shiraLayers().every(([, l], i) => {
    const w = l.liveWeightF32();
    const ref = baseWeights[i];
    const u1 = new Uint32Array(w.buffer, w.byteOffset, w.length);
    const u2 = new Uint32Array(ref.buffer, ref.byteOffset, ref.length);
    return u1.every((v, j) => v === u2[j]);
  });

  // ---- 5. fusion of pairs
  const fusion: DemoResults["fusion"] = [];
  const single = (method: "shira" | "lora", task: Task) => adapters.find((a) => a.method === method && a.task === task)!.accuracy;
  for (let i = 0; i < settings.tasks.length; i++) {
    for (let j = i + 1; j < settings.tasks.length; j++) {
      const pair: [Task, Task] = [settings.tasks[i], settings.tasks[j]];
      for (const method of ["shira", "lora"] as const) {
        const m = method === "shira" ? shira : lora;
        m.fuse([{ name: pair[0], weight: 1 }, { name: pair[1], weight: 1 }]);
        const accs: [number, number] = [acc(m, pair[0]), acc(m, pair[1])];
        const s: [number, number] = [single(method, pair[0]), single(method, pair[1])];
        fusion.push({ pair, method, accuracy: accs, single: s, drop: [s[0] - accs[0], s[1] - accs[1]] });
        m.unmerge();
      }
    }
  }

  const shiraStat = stat(shiraTimes);
  const loraStat = stat(loraTimes);
  const results: DemoResults = {
    tool: "shira-wasm demo",
    quick,
    settings,
    base: { params: baseParams, trainMs: baseTrainMs, accuracy: baseAcc },
    adapters,
    switching: { shira: shiraStat, lora: loraStat, speedup: loraStat.medianMs / shiraStat.medianMs },
    fusion,
    baseBitIdentical,
    durationMs: 0,
  };

  // samples for the browser page: a few test digits per task
  const samples: { task: string; label: number; pixels: number[] }[] = [];
  for (const task of ["upright", ...settings.tasks] as const) {
    const d = tasksTest.get(task)!;
    for (let i = 0; i < (task === "upright" ? 10 : 3); i++) samples.push({ task, label: d.labels[i], pixels: Array.from(d.images.subarray(i * PIXELS, (i + 1) * PIXELS), (v) => Math.round(v * 1000) / 1000) });
  }
  await writeFile(join(out, "samples.json"), JSON.stringify({ side: 28, samples }) + "\n");

  results.durationMs = performance.now() - t0;
  await writeReport(out, results);
  await writeFile(join(out, "results.json"), JSON.stringify(results, null, 2) + "\n");
  return results;
}

/** The human-readable summary (also the body of report.md). */
export function summaryTables(r: DemoResults, md: boolean): string {
  const table = md ? mdTable : textTable;
  const tasks = r.settings.tasks;
  const acc = (m: "shira" | "lora", t: Task) => r.adapters.find((a) => a.method === m && a.task === t)!;
  const parts: string[] = [];
  parts.push((md ? "### " : "") + "Accuracy on held-out digits");
  parts.push(
    table(
      ["task", "base model", "SHiRA", "LoRA", "SHiRA params", "LoRA params", "SHiRA file", "LoRA file", "reloaded identical"],
      tasks.map((t) => [TASKS[t], pct(r.base.accuracy[t]), pct(acc("shira", t).accuracy), pct(acc("lora", t).accuracy), acc("shira", t).params, acc("lora", t).params, `${acc("shira", t).fileBytes} B`, `${acc("lora", t).fileBytes} B`, acc("shira", t).reloadIdentical && acc("lora", t).reloadIdentical ? "yes" : "NO"]),
    ),
  );
  parts.push((md ? "\n### " : "\n") + "Fused pairs (weight 1.0 each): accuracy on both tasks (drop vs the single adapter)");
  parts.push(
    table(
      ["pair", "method", "task A", "task B", "drop A", "drop B"],
      r.fusion.map((f) => [`${f.pair[0]} + ${f.pair[1]}`, f.method === "shira" ? "SHiRA" : "LoRA", pct(f.accuracy[0]), pct(f.accuracy[1]), pct(f.drop[0]), pct(f.drop[1])]),
    ),
  );
  const sw = r.switching;
  parts.push((md ? "\n### " : "\n") + `Fused switching (${sw.shira.n} switches each, whole model)`);
  parts.push(
    table(
      ["method", "median ms", "p95 ms", "mean ms", "min ms"],
      [
        ["SHiRA (restore + scatter, exact)", sw.shira.medianMs, sw.shira.p95Ms, sw.shira.meanMs, sw.shira.minMs],
        ["LoRA (unmerge + merge)", sw.lora.medianMs, sw.lora.p95Ms, sw.lora.meanMs, sw.lora.minMs],
      ],
    ),
  );
  parts.push(`\nSHiRA switches ${fmtNum(sw.speedup)}× faster than LoRA (median). Base weights bit-identical after all switches: ${r.baseBitIdentical ? "yes" : "NO"}.`);
  const avgDrop = (m: "shira" | "lora") => {
    const f = r.fusion.filter((x) => x.method === m);
    return f.reduce((s, x) => s + x.drop[0] + x.drop[1], 0) / (2 * f.length);
  };
  const ds = avgDrop("shira");
  const dl = avgDrop("lora");
  parts.push(`Average accuracy drop when fusing pairs: SHiRA ${pct(ds)}, LoRA ${pct(dl)} — ${ds < dl ? "SHiRA loses less (less concept loss)" : ds > dl ? "LoRA loses less here" : "the same"}.`);
  const bestS = tasks.filter((t) => acc("shira", t).accuracy > acc("lora", t).accuracy).length;
  parts.push(`Single-adapter accuracy: SHiRA is better on ${bestS} of ${tasks.length} tasks, LoRA on ${tasks.length - bestS}.`);
  return parts.join("\n");
}

async function writeReport(out: string, r: DemoResults): Promise<void> {
  const tasks = r.settings.tasks;
  const accOf = (m: "shira" | "lora") => tasks.map((t) => r.adapters.find((a) => a.method === m && a.task === t)!.accuracy * 100);
  await writeFile(
    join(out, "accuracy.svg"),
    svgBarChart("Accuracy on shifted tasks (%)", tasks.map((t) => t), [
      { name: "base model", color: "#999999", values: tasks.map((t) => r.base.accuracy[t] * 100) },
      { name: "SHiRA", color: "#1f77b4", values: accOf("shira") },
      { name: "LoRA", color: "#ff7f0e", values: accOf("lora") },
    ], { yLabel: "accuracy %", format: (v) => v.toFixed(1) }),
  );
  await writeFile(
    join(out, "switch.svg"),
    svgBarChart("Fused adapter switch time, whole model (ms, log scale)", ["median", "p95"], [
      { name: "SHiRA", color: "#1f77b4", values: [r.switching.shira.medianMs, r.switching.shira.p95Ms] },
      { name: "LoRA", color: "#ff7f0e", values: [r.switching.lora.medianMs, r.switching.lora.p95Ms] },
    ], { yLabel: "ms", log: true, format: (v) => (v >= 1 ? v.toFixed(2) : v.toPrecision(2)) }),
  );
  const pairs = [...new Set(r.fusion.map((f) => `${f.pair[0]}+${f.pair[1]}`))];
  const fusedMean = (m: "shira" | "lora") => pairs.map((p) => {
    const f = r.fusion.find((x) => x.method === m && `${x.pair[0]}+${x.pair[1]}` === p)!;
    return ((f.accuracy[0] + f.accuracy[1]) / 2) * 100;
  });
  await writeFile(
    join(out, "fusion.svg"),
    svgBarChart("Fused pairs: mean accuracy on both tasks (%)", pairs, [
      { name: "SHiRA", color: "#1f77b4", values: fusedMean("shira") },
      { name: "LoRA", color: "#ff7f0e", values: fusedMean("lora") },
    ], { yLabel: "accuracy %", format: (v) => v.toFixed(1) }),
  );
  const md = [
    `# shira-wasm demo report${r.quick ? " (quick)" : ""}`,
    "",
    `Base MLP ${r.settings.sizes.join("-")} trained on ${r.settings.nTrain} upright MNIST digits (${r.base.params.toLocaleString("en-US")} parameters, upright accuracy ${pct(r.base.accuracy.upright)} on ${r.settings.nTest} held-out digits).`,
    `One SHiRA adapter (r = ${r.settings.r}, random mask) and one LoRA adapter (r = ${r.settings.r}, the same parameter count) per shifted task, ${r.settings.adapterEpochs} epochs each.`,
    "",
    summaryTables(r, true),
    "",
    "![accuracy](accuracy.svg)",
    "",
    "![switch time](switch.svg)",
    "",
    "![fused pairs](fusion.svg)",
    "",
    `Total time ${(r.durationMs / 1000).toFixed(1)} s. Raw numbers: [results.json](results.json). Adapters in PEFT's format: \`adapters/<task>/\` (SHiRA) and \`lora/<task>/\` (LoRA).`,
    "",
  ].join("\n");
  await writeFile(join(out, "report.md"), md);
}
