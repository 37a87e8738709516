/**
 * The `shira` command.
 *
 *   shira demo [--out DIR] [--quick] [--json]
 *   shira bench [switch|kernels|train|model|all] [--json]
 *   shira inspect <adapter dir | file> [--base model.safetensors] [--json]
 *   shira merge --base model.safetensors --adapter DIR [--weight W] [--adapter DIR2 --weight W2 ...] --out FILE
 *   shira generate --model DIR [--adapter NAME=DIR ...] --prompt TEXT [--max-new-tokens N] [--switch-at TOKEN:NAME ...]
 *
 * Exit codes: 0 ok, 1 failure (one clear line, no stack trace), 2 usage error.
 */
import "../node.js"; // registers Node's file system for the library
import { writeFile, mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { ShiraError } from "../errors.js";
import { initSync } from "../runtime/runtime.js";
import { parseArgs, value, UsageError, type OptionSpec, type Parsed } from "./args.js";
import { runDemo, summaryTables } from "./demo.js";
import { inspectAdapter } from "./inspect.js";
import { mergeFiles } from "./merge.js";
import { describeCheckpoint, isCheckpointDir, runGenerate } from "./generate.js";
import { fmtNum, textTable } from "./format.js";

const VERSION = "0.1.0";

interface Command {
  summary: string;
  usage: string;
  options: Record<string, OptionSpec & { help: string }>;
  run(p: Parsed, out: (s: string) => void): Promise<number>;
}

const json = { json: { help: "print machine-readable JSON on stdout" } };

const COMMANDS: Record<string, Command> = {
  demo: {
    summary: "train a base MNIST model, SHiRA and LoRA adapters for shifted tasks, compare switching and fusion",
    usage: "shira demo [--out DIR] [--quick] [--json]",
    options: {
      out: { value: true, help: "where to write report.md, results.json, charts, the model and the adapters (default demo-out)" },
      quick: { help: "a smaller run (well under a minute)" },
      "no-progress": { help: "no progress bars" },
      seed: { value: true, help: "random seed (default 0)" },
      ...json,
    },
    async run(p, out) {
      const dir = value(p, "out", "demo-out")!;
      const seed = Number(value(p, "seed", "0"));
      if (!Number.isInteger(seed)) throw new UsageError(`--seed must be an integer`);
      const results = await runDemo({ out: dir, quick: p.flags.has("quick"), progress: !p.flags.has("no-progress") && !p.flags.has("json"), log: (s) => (p.flags.has("json") ? undefined : process.stderr.write(s + "\n")), seed });
      if (p.flags.has("json")) out(JSON.stringify(results, null, 2));
      else {
        out(summaryTables(results, false));
        out(`\nWrote ${dir}/report.md, ${dir}/results.json, charts, model and adapters (${(results.durationMs / 1000).toFixed(1)} s).`);
      }
      return 0;
    },
  },
  bench: {
    summary: "run benchmarks: switch, kernels, train, model, or all",
    usage: "shira bench [switch|kernels|train|model|all] [--json]",
    options: { ...json, quick: { help: "fewer repetitions" } },
    async run(p, out) {
      const which = p.positionals[0] ?? "all";
      const { runBenchmarks, BENCH_NAMES } = await import("../../bench/registry.js");
      if (which !== "all" && !BENCH_NAMES.includes(which)) throw new UsageError(`unknown benchmark "${which}" (choose from ${[...BENCH_NAMES, "all"].join(", ")})`);
      const reports = await runBenchmarks(which === "all" ? BENCH_NAMES : [which], { json: p.flags.has("json"), quick: p.flags.has("quick"), log: p.flags.has("json") ? () => undefined : (s: string) => process.stderr.write(s + "\n") });
      if (p.flags.has("json")) out(JSON.stringify(reports, null, 2));
      return 0;
    },
  },
  inspect: {
    summary: "describe an adapter (config, modules, nnz, density, values, size) or a model checkpoint folder",
    usage: "shira inspect <adapter dir | adapter_model.safetensors | model dir> [--base model.safetensors] [--json]",
    options: { base: { value: true, help: "base model file, for exact layer shapes" }, ...json },
    async run(p, out) {
      if (p.positionals.length !== 1) throw new UsageError("inspect takes one path");
      if (await isCheckpointDir(p.positionals[0])) {
        const m = await describeCheckpoint(p.positionals[0]);
        if (p.flags.has("json")) {
          out(JSON.stringify(m, null, 2));
          return 0;
        }
        const c = m.config;
        out(`model: ${m.path}`);
        out(`${m.architecture} (model_type ${m.modelType}): ${m.parameters.toLocaleString("en-US")} parameters${m.tiedHead ? ", tied head" : ""}${m.hasTokenizer ? ", tokenizer.json" : ", no tokenizer.json"}`);
        out(
          `layers ${c.numLayers}, hidden ${c.hiddenSize}, heads ${c.numHeads} (kv ${c.numKvHeads}, head_dim ${c.headDim}), mlp ${c.intermediateSize}, vocab ${c.vocabSize}, ` +
            `max positions ${c.maxPositions}${c.rope ? `, RoPE ${c.rope.type} θ=${c.rope.theta}` : ", learned positions"}${c.slidingWindow ? `, sliding window ${c.slidingWindow}` : ""}`,
        );
        out("");
        out(textTable(["file", "bytes", "tensors", "dtypes"], m.files.map((f) => [f.name, f.bytes.toLocaleString("en-US"), f.tensors, f.dtypes.join(", ")])));
        return 0;
      }
      const r = await inspectAdapter(p.positionals[0], value(p, "base"));
      if (p.flags.has("json")) {
        out(JSON.stringify(r, null, 2));
        return 0;
      }
      const c = r.config ?? {};
      out(`adapter: ${p.positionals[0]}`);
      out(`peft_type: ${r.peftType ?? "(no adapter_config.json)"}   r: ${c["r"] ?? "?"}   mask_type: ${c["mask_type"] ?? "?"}   random_seed: ${c["random_seed"] ?? "null"}   target_modules: ${JSON.stringify(c["target_modules"] ?? null)}`);
      out(`total: ${r.totalValues.toLocaleString("en-US")} values in ${r.modules.length} modules, ${r.totalBytes.toLocaleString("en-US")} bytes on disk`);
      out("");
      out(
        textTable(
          ["module", "shape [out, in]", "nnz", "density", "dtypes", "min", "max", "mean", "std", "seeded mask"],
          r.modules.map((m) => [
            m.module,
            m.shape ? `[${m.shape.join(", ")}]${m.shapeSource === "inferred" ? " (inferred)" : ""}` : "unknown",
            m.nnz,
            m.density === null ? "?" : `${(100 * m.density).toFixed(2)}%`,
            `${m.weightDtype}/${m.indicesDtype}`,
            fmtNum(m.values.min),
            fmtNum(m.values.max),
            fmtNum(m.values.mean),
            fmtNum(m.values.std),
            m.matchesSeededMask === null ? "n/a" : m.matchesSeededMask ? "yes" : "no",
          ]),
        ),
      );
      if (r.otherTensors.length) out(`\nother tensors (modules_to_save): ${r.otherTensors.join(", ")}`);
      return 0;
    },
  },
  merge: {
    summary: "bake adapters into a base model file",
    usage: "shira merge --base model.safetensors --adapter DIR [--weight W] [--adapter DIR2 --weight W2 ...] --out merged.safetensors",
    options: {
      base: { value: true, help: "the base model (safetensors)" },
      adapter: { value: true, multiple: true, help: "an adapter folder (PEFT's format); repeat for several" },
      weight: { value: true, multiple: true, help: "fusion weight of the adapter before it (default 1.0)" },
      out: { value: true, help: "the merged model file to write" },
      "safe-merge": { help: "refuse NaN/Inf in the merged weights" },
      ...json,
    },
    async run(p, out) {
      const base = value(p, "base");
      const outFile = value(p, "out");
      const adapters = p.values.get("adapter") ?? [];
      if (!base || !outFile || adapters.length === 0) throw new UsageError("merge needs --base, --out and at least one --adapter");
      // --weight applies to the --adapter before it: pair them up by position in argv
      const weights = pairWeights(process.argv.slice(2), adapters.length);
      const { bytes, merged } = await mergeFiles({ base, out: outFile, adapters: adapters.map((a, i) => ({ path: a, weight: weights[i] })), safeMerge: p.flags.has("safe-merge") });
      await mkdir(dirname(outFile), { recursive: true });
      await writeFile(outFile, bytes);
      if (p.flags.has("json")) out(JSON.stringify({ out: outFile, bytes: bytes.length, mergedModules: merged, adapters: adapters.map((a, i) => ({ path: a, weight: weights[i] })) }, null, 2));
      else out(`wrote ${outFile} (${bytes.length.toLocaleString("en-US")} bytes): ${adapters.length} adapter(s) merged into ${merged.length} module(s): ${merged.join(", ")}`);
      return 0;
    },
  },
  generate: {
    summary: "stream text from a Hugging Face checkpoint, with SHiRA adapters switched between tokens",
    usage: "shira generate --model DIR [--adapter NAME=DIR ...] --prompt TEXT [--max-new-tokens N] [--switch-at TOKEN:NAME ...] [--sample] [--json]",
    options: {
      model: { value: true, help: "a checkpoint folder (config.json, model.safetensors, tokenizer.json)" },
      adapter: { value: true, multiple: true, help: "NAME=DIR: a PEFT SHiRA adapter folder; the first is fused from the start" },
      prompt: { value: true, help: "the prompt text" },
      chat: { help: "apply the tokenizer's chat template to the prompt (a user message)" },
      "max-new-tokens": { value: true, help: "tokens to generate (default 50)" },
      "switch-at": { value: true, multiple: true, help: "TOKEN:NAME: fuse adapter NAME (or base) before generated token TOKEN" },
      sample: { help: "sample instead of greedy decoding" },
      temperature: { value: true, help: "sampling temperature" },
      "top-k": { value: true, help: "sample from the k most likely tokens" },
      "top-p": { value: true, help: "nucleus sampling threshold" },
      seed: { value: true, help: "sampling seed" },
      ...json,
    },
    async run(p, out) {
      const model = value(p, "model");
      const prompt = value(p, "prompt");
      if (!model || prompt === undefined) throw new UsageError("generate needs --model and --prompt");
      const adapters = (p.values.get("adapter") ?? []).map((a): [string, string] => {
        const i = a.indexOf("=");
        if (i <= 0 || i === a.length - 1) throw new UsageError(`--adapter takes NAME=DIR, got ${JSON.stringify(a)}`);
        return [a.slice(0, i), a.slice(i + 1)];
      });
      if (new Set(adapters.map(([n]) => n)).size !== adapters.length) throw new UsageError("--adapter names must differ");
      const switches = (p.values.get("switch-at") ?? []).map((s): [number, string] => {
        const m = /^(\d+):(.+)$/.exec(s);
        if (!m) throw new UsageError(`--switch-at takes TOKEN:NAME, got ${JSON.stringify(s)}`);
        return [Number(m[1]), m[2]];
      });
      const num = (k: string): number | undefined => {
        const v = value(p, k);
        if (v === undefined) return undefined;
        const n = Number(v);
        if (!Number.isFinite(n)) throw new UsageError(`--${k} must be a number, got ${JSON.stringify(v)}`);
        return n;
      };
      const maxNewTokens = num("max-new-tokens") ?? 50;
      if (!Number.isSafeInteger(maxNewTokens) || maxNewTokens < 0) throw new UsageError("--max-new-tokens must be a non-negative integer");
      const asJson = p.flags.has("json");
      const r = await runGenerate({
        model,
        adapters,
        prompt,
        chat: p.flags.has("chat"),
        maxNewTokens,
        switches,
        doSample: p.flags.has("sample"),
        temperature: num("temperature"),
        topK: num("top-k"),
        topP: num("top-p"),
        seed: num("seed"),
        write: asJson ? () => undefined : (s) => process.stdout.write(s),
        log: asJson ? () => undefined : (s) => process.stderr.write(s + "\n"),
      });
      if (asJson) out(JSON.stringify(r, null, 2));
      else {
        out("");
        const sw = r.switches.map((s) => `${s.adapter}@${s.atToken} ${s.ms.toFixed(2)} ms`).join(", ");
        process.stderr.write(`${r.newTokens} tokens; prefill ${r.prefillMs.toFixed(1)} ms, decode ${r.decodeTokensPerSecond.toFixed(1)} tokens/s${sw ? `; switches: ${sw}` : ""}\n`);
      }
      return 0;
    },
  },
};

/** `--weight` values belong to the `--adapter` they follow (default 1). */
function pairWeights(argv: string[], n: number): number[] {
  const w: number[] = [];
  let idx = -1;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--adapter" || a.startsWith("--adapter=")) {
      idx++;
      w[idx] = 1;
    } else if (a === "--weight" || a.startsWith("--weight=")) {
      const v = a.includes("=") ? a.slice(a.indexOf("=") + 1) : argv[i + 1];
      const num = Number(v);
      if (idx < 0) throw new UsageError("--weight must follow the --adapter it applies to");
      if (!Number.isFinite(num)) throw new UsageError(`--weight must be a number, got ${JSON.stringify(v)}`);
      w[idx] = num;
    }
  }
  return Array.from({ length: n }, (_, i) => w[i] ?? 1);
}

function help(): string {
  const lines = [`shira ${VERSION}: SHiRA adapters on a WebAssembly SIMD engine`, "", "usage: shira <command> [options]", "", "commands:"];
  for (const [n, c] of Object.entries(COMMANDS)) lines.push(`  ${n.padEnd(9)} ${c.summary}`);
  lines.push("", "Run `shira <command> --help` for a command's options.", "Exit codes: 0 ok, 1 failure, 2 usage error.");
  return lines.join("\n");
}

function commandHelp(name: string, c: Command): string {
  const lines = [`usage: ${c.usage}`, "", c.summary, "", "options:"];
  for (const [k, o] of Object.entries(c.options)) lines.push(`  --${(k + (o.value ? " VALUE" : "")).padEnd(18)} ${o.help}`);
  lines.push(`  --help             show this help`);
  void name;
  return lines.join("\n");
}

export async function main(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s + "\n"), err: (s: string) => void = (s) => process.stderr.write(s + "\n")): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    out(help());
    return name ? 0 : 2;
  }
  if (name === "--version") {
    out(VERSION);
    return 0;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    err(`shira: unknown command "${name}" (try shira --help)`);
    return 2;
  }
  let parsed: Parsed;
  try {
    parsed = parseArgs(rest, { ...cmd.options, help: {} });
  } catch (e) {
    err(`shira ${name}: ${(e as Error).message} (see shira ${name} --help)`);
    return 2;
  }
  if (parsed.flags.has("help")) {
    out(commandHelp(name, cmd));
    return 0;
  }
  try {
    initSync();
    return await cmd.run(parsed, out);
  } catch (e) {
    if (e instanceof UsageError) {
      err(`shira ${name}: ${e.message} (see shira ${name} --help)`);
      return 2;
    }
    const msg = e instanceof ShiraError ? `${e.message} [${e.code}]` : ((e as NodeJS.ErrnoException).code === "ENOENT" ? (e as Error).message.replace(/^ENOENT: /, "") : (e as Error).message);
    err(`shira ${name}: error: ${msg.split("\n")[0]}`);
    if (process.env.SHIRA_DEBUG) err(String((e as Error).stack));
    return 1;
  }
}

const isMain = typeof process !== "undefined" && process.argv[1] && /(?:^|[\\/])(?:cli\.js|main\.ts|shira)$/.test(process.argv[1]);
if (isMain) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      process.stderr.write(`shira: internal error: ${(e as Error).message}\n`);
      process.exitCode = 1;
    },
  );
}
