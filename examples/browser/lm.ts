/**
 * The language-model page: a continuation playground. A Hugging Face checkpoint loaded with
 * `AutoModelForCausalLM.fromPretrained`, its tokenizer, and PEFT adapters; text streams token by token, an adapter
 * clicked during generation is fused between two tokens (`switchTo`), and sliders mix adapters (`fuse`). Each run of
 * tokens is shown in its adapter's colour. Plain TypeScript, bundled by scripts/build-examples.mjs with the library's
 * browser build.
 *
 * Data, first match wins:
 *  - `?demo=<folder URL>`: a `shira demo` output folder: `results.json` (`settings.genres`), `base-model/`,
 *    `adapters/shira/<genre>/` and `adapters/lora/<genre>/` (the LoRA ones behind the SHiRA / LoRA toggle);
 *  - `?model=<folder URL>`: a checkpoint folder with SHiRA adapters in `<folder>/adapters/<name>/` (listed by
 *    `<folder>/adapters/index.json`, which the example server generates);
 *  - the served data folder: `data/lm/` (a checkpoint folder), else `data/` itself when it is a demo output folder
 *    (`npm run serve:examples -- --data demo-out`);
 *  - a folder picked by the user, in either layout.
 * Test hook: `window.shiraLM` (types: lm-hook.ts).
 */
import { byId } from "./dom.js";
import {
  init,
  AutoModelForCausalLM,
  AutoTokenizer,
  LoraModel,
  PeftModel,
  readAdapterFiles,
  type AdapterFilesInput,
  type AdapterSource,
  type CheckpointFile,
  type DecoderModel,
  type PreTrainedTokenizer,
} from "../../src/index.js";
import type { LmGenerateRequest, LmGenerateResult, LmReadyInfo, MixEntry, ShiraLM, SwitchRecord } from "./lm-hook.js";

declare global {
  interface Window {
    shiraLM: ShiraLM;
  }
}

const ui = {
  status: byId("status"),
  info: byId("info"),
  prompt: byId<HTMLTextAreaElement>("prompt"),
  maxNew: byId<HTMLInputElement>("max-new"),
  sample: byId<HTMLInputElement>("sample"),
  seed: byId<HTMLInputElement>("seed"),
  generate: byId<HTMLButtonElement>("generate"),
  stop: byId<HTMLButtonElement>("stop"),
  method: byId<HTMLFieldSetElement>("method"),
  adapters: byId("adapters"),
  active: byId("active"),
  switchMs: byId("switch-ms"),
  switchLog: byId<HTMLOListElement>("switch-log"),
  output: byId("output"),
  stats: byId("stats"),
  pickDir: byId<HTMLInputElement>("pick-dir"),
};

/** Sampling defaults: the demo's samples (`shira demo`: temperature 0.8, top-k 40). */
const SAMPLING = { temperature: 0.8, topK: 40, topP: 1, seed: 7 };
/** Switches listed on the page. */
const LOG_SIZE = 6;

type Method = "shira" | "lora";
type Files = Record<string, CheckpointFile>;

/** What to load: a checkpoint (URL or picked files) and its adapters per method. */
interface Source {
  kind: LmReadyInfo["kind"];
  source: LmReadyInfo["source"];
  model: string | Files;
  adapters: Record<Method, [string, AdapterSource][]>;
  genres: string[];
  /** The demo's sample settings (prompt, seed, new tokens), used as the page's defaults. */
  samples: { prompt: string; seed: number; maxNewTokens: number } | null;
}

/** The adapters of either method behind one interface (both fused: the weights are changed in place). */
interface Adapters {
  switchTo(name: string): void;
  fuse(entries: MixEntry[]): void;
  toBase(): void;
}

interface State {
  src: Source | null;
  method: Method;
  lm: DecoderModel | null;
  tok: PreTrainedTokenizer | null;
  peft: Adapters | null;
  adapters: string[];
  active: string;
  abort: AbortController | null;
  busy: boolean;
  progress: { tokens: number } | null;
  last: LmGenerateResult | null;
  log: SwitchRecord[];
}
const state: State = { src: null, method: "shira", lm: null, tok: null, peft: null, adapters: [], active: "base", abort: null, busy: false, progress: null, last: null, log: [] };

function setStatus(s: string, error = false): void {
  ui.status.textContent = s;
  ui.status.classList.toggle("error", error);
}

const dirUrl = (u: string, base = location.href) => new URL(u, base).href.replace(/\/?$/, "/");

// ------------------------------------------------------------------ loading

async function listAdapters(base: string): Promise<string[]> {
  try {
    const r = await fetch(new URL("adapters/index.json", base));
    if (!r.ok) return [];
    const j = (await r.json()) as { adapters?: unknown };
    return Array.isArray(j.adapters) ? j.adapters.filter((x): x is string => typeof x === "string") : [];
  } catch {
    return [];
  }
}

async function exists(url: URL | string): Promise<boolean> {
  const r = await fetch(url, { method: "HEAD" }).catch(() => null);
  return r !== null && r.ok;
}

/** The parts of a demo's results.json the page uses (genres; sample settings; which LoRA adapters exist). */
function parseResults(text: string, where: string): { genres: string[]; lora: string[]; samples: Source["samples"] } {
  let j: { settings?: { genres?: unknown }; samples?: { prompt?: unknown; seed?: unknown; maxNewTokens?: unknown }; adapters?: unknown };
  try {
    j = JSON.parse(text) as typeof j;
  } catch (e) {
    throw new Error(`${where}: not JSON (${(e as Error).message})`);
  }
  const g = j.settings?.genres;
  if (!Array.isArray(g) || g.length === 0 || !g.every((x) => typeof x === "string" && /^[\w.-]+$/.test(x))) {
    throw new Error(`${where}: settings.genres should be a non-empty list of genre names, got ${JSON.stringify(g)}`);
  }
  const adapters = Array.isArray(j.adapters) ? (j.adapters as { genre?: unknown; method?: unknown }[]) : [];
  const lora = g.filter((x) => adapters.some((a) => a.genre === x && a.method === "lora"));
  const s = j.samples;
  const samples =
    s && typeof s.prompt === "string" && Number.isSafeInteger(s.seed) && Number.isSafeInteger(s.maxNewTokens)
      ? { prompt: s.prompt, seed: s.seed as number, maxNewTokens: s.maxNewTokens as number }
      : null;
  return { genres: g as string[], lora, samples };
}

/** A demo output folder at a URL. */
async function demoFromUrl(base: string, source: Source["source"]): Promise<Source> {
  const r = await fetch(new URL("results.json", base));
  if (!r.ok) throw new Error(`${base}results.json: HTTP ${r.status} (not a shira demo output folder)`);
  const { genres, lora, samples } = parseResults(await r.text(), `${base}results.json`);
  const at = (m: Method, g: string): [string, AdapterSource] => [g, new URL(`adapters/${m}/${g}/`, base).href];
  return { kind: "demo", source, model: new URL("base-model/", base).href, adapters: { shira: genres.map((g) => at("shira", g)), lora: lora.map((g) => at("lora", g)) }, genres, samples };
}

/** A checkpoint folder at a URL, its SHiRA adapters listed by adapters/index.json. */
async function checkpointFromUrl(base: string, source: Source["source"]): Promise<Source> {
  const names = await listAdapters(base);
  return { kind: "checkpoint", source, model: base, adapters: { shira: names.map((n) => [n, new URL(`adapters/${n}/`, base).href]), lora: [] }, genres: [], samples: null };
}

/** A picked folder: a demo output folder (results.json + base-model/) or a checkpoint folder (+ adapters/<name>/). */
async function sourceFromFiles(files: FileList | File[]): Promise<Source> {
  const byPath = new Map<string, File>();
  for (const f of Array.from(files)) {
    const parts = ((f as File & { webkitRelativePath?: string }).webkitRelativePath || f.name).split("/");
    byPath.set((parts.length > 1 ? parts.slice(1) : parts).join("/"), f); // drop the picked folder's own name
  }
  const under = (prefix: string): Files => {
    const out: Files = {};
    for (const [p, f] of byPath) if (p.startsWith(prefix) && !p.slice(prefix.length).includes("/")) out[p.slice(prefix.length)] = f;
    return out;
  };
  /** The two adapter files under a folder, or null when one is missing. */
  const adapterAt = (prefix: string): AdapterFilesInput | null => {
    const config = byPath.get(prefix + "adapter_config.json");
    const weights = byPath.get(prefix + "adapter_model.safetensors");
    return config && weights ? { "adapter_config.json": config, "adapter_model.safetensors": weights } : null;
  };
  const present = (list: [string, AdapterFilesInput | null][]) => list.filter((e): e is [string, AdapterFilesInput] => e[1] !== null);
  const results = byPath.get("results.json");
  if (results && byPath.has("base-model/config.json")) {
    const { genres, lora, samples } = parseResults(await results.text(), "results.json");
    const shira = genres.map((g): [string, AdapterFilesInput] => {
      const fs = adapterAt(`adapters/shira/${g}/`);
      if (!fs) throw new Error(`the picked demo folder lacks adapters/shira/${g}/ (adapter_config.json and adapter_model.safetensors)`);
      return [g, fs];
    });
    return { kind: "demo", source: "files", model: under("base-model/"), adapters: { shira, lora: present(lora.map((g) => [g, adapterAt(`adapters/lora/${g}/`)])) }, genres, samples };
  }
  const names = [...new Set([...byPath.keys()].map((p) => p.split("/")).filter((p) => p.length === 3 && p[0] === "adapters").map((p) => p[1]))].sort();
  const shira = present(names.map((n) => [n, adapterAt(`adapters/${n}/`)]));
  return { kind: "checkpoint", source: "files", model: under(""), adapters: { shira, lora: [] }, genres: [], samples: null };
}

/** Loads the adapters of one method onto `lm`, in the base state. */
async function loadAdapters(lm: DecoderModel, list: [string, AdapterSource][], method: Method): Promise<Adapters | null> {
  if (list.length === 0) return null;
  if (method === "shira") {
    const [[first, src], ...rest] = list;
    const peft = await PeftModel.fromPretrained(lm, src, { adapterName: first });
    for (const [name, s] of rest) await peft.loadAdapter(s, name);
    peft.switchToBase();
    return { switchTo: (n) => peft.switchTo(n), fuse: (e) => peft.fuse(e), toBase: () => peft.switchToBase() };
  }
  // LoRA: PEFT's files read with the library's reader, loaded with loadAdapterFiles; fused switches merge/unmerge
  let lora: LoraModel | null = null;
  for (const [name, s] of list) {
    const f = await readAdapterFiles(s);
    if (!lora) lora = LoraModel.fromAdapterFiles(lm, f.config, f.model, name);
    else lora.loadAdapterFiles(f.config, f.model, name);
  }
  const l = lora!;
  l.fuse([]); // the base model (nothing merged, nothing active)
  return { switchTo: (n) => l.switchTo(n), fuse: (e) => l.fuse(e), toBase: () => l.fuse([]) };
}

async function load(src: Source, method: Method): Promise<LmReadyInfo> {
  const t0 = performance.now();
  // a model is not disposed while it generates (dispose() throws BUSY then): stop the generation first
  if (state.busy) throw new Error("a generation is running; stop it before loading another model");
  if (method === "lora" && src.adapters.lora.length === 0) throw new Error("this folder has no LoRA adapters");
  const rt = await init();
  const fresh = state.src !== src;
  state.peft = null;
  state.lm?.dispose();
  state.lm = null;
  ui.generate.disabled = true;
  setStatus("Loading the model…");
  const lm = await AutoModelForCausalLM.fromPretrained(src.model, {
    onProgress: (p) => setStatus(`Loading the model… ${Math.round((100 * p.loadedBytes) / Math.max(1, p.totalBytes))} %`),
  });
  let tok: PreTrainedTokenizer | null = null;
  try {
    tok = await AutoTokenizer.fromPretrained(src.model);
  } catch {
    tok = null; // a folder without tokenizer.json: prompts as token ids only
  }
  const list = src.adapters[method];
  if (list.length) setStatus(`Loading ${list.length} ${method === "shira" ? "SHiRA" : "LoRA"} adapter(s)…`);
  let peft: Adapters | null;
  try {
    peft = await loadAdapters(lm, list, method);
  } catch (e) {
    lm.dispose();
    throw e;
  }
  Object.assign(state, { src, method, lm, tok, peft, adapters: list.map(([n]) => n), active: "base" });
  renderAdapters();
  ui.method.hidden = !(src.kind === "demo" && src.adapters.lora.length > 0);
  for (const r of Array.from(ui.method.querySelectorAll<HTMLInputElement>("input[name=method]"))) r.checked = r.value === method;
  if (fresh && src.samples) {
    // the demo's own sample settings: "Generate" with sampling on reproduces report.md's samples
    ui.prompt.value = src.samples.prompt;
    ui.seed.value = String(src.samples.seed);
    ui.maxNew.value = String(src.samples.maxNewTokens);
    ui.sample.checked = true;
  }
  const loadMs = performance.now() - t0;
  const params = lm.numParameters();
  const what = src.kind === "demo" ? `shira demo output: ${src.genres.length} genres, ${method === "shira" ? "SHiRA" : "LoRA"} adapters` : `${state.adapters.length} adapter(s)`;
  ui.info.textContent =
    `${what}; ${lm.family.architecture}: ${lm.config.numLayers} layers, hidden ${lm.config.hiddenSize}, ${(params / 1e6).toFixed(2)} M parameters; ` +
    `${tok ? "tokenizer.json" : "no tokenizer (ids only)"}; wasm ${rt.variant}; loaded in ${(loadMs / 1000).toFixed(2)} s`;
  setStatus("Ready.");
  ui.generate.disabled = false;
  return {
    source: src.source,
    kind: src.kind,
    method,
    genres: src.genres.slice(),
    modelType: lm.config.modelType,
    layers: lm.config.numLayers,
    parameters: params,
    adapters: state.adapters.slice(),
    hasTokenizer: tok !== null,
    variant: rt.variant,
    loadMs,
  };
}

let pendingPick: { resolve: (i: LmReadyInfo) => void; reject: (e: unknown) => void } | null = null;

function waitForPick(message: string): Promise<LmReadyInfo> {
  setStatus(message);
  return new Promise<LmReadyInfo>((resolve, reject) => {
    pendingPick = { resolve, reject };
  });
}

async function loadDefault(): Promise<LmReadyInfo> {
  const params = new URLSearchParams(location.search);
  const demo = params.get("demo");
  if (demo !== null) {
    const base = dirUrl(demo);
    if (!(await exists(new URL("results.json", base)))) return waitForPick(`No shira demo output at ${base} (no results.json): pick a demo output folder below.`);
    return load(await demoFromUrl(base, "url"), "shira");
  }
  const model = params.get("model");
  const base = dirUrl(model ?? "data/lm/");
  if (await exists(new URL("config.json", base))) return load(await checkpointFromUrl(base, model !== null ? "url" : "data"), "shira");
  const data = dirUrl("data/");
  if (model === null && (await exists(new URL("results.json", data))) && (await exists(new URL("base-model/config.json", data)))) return load(await demoFromUrl(data, "data"), "shira");
  return waitForPick("No model here: pick a checkpoint folder or a demo output folder below (or open the page with ?model=<folder URL> or ?demo=<folder URL>).");
}

// ------------------------------------------------------------------ adapters, colours, mixes

/** A soft background per adapter (its index among the adapters); none for the base model. */
function colourOf(name: string): string | null {
  const i = state.adapters.indexOf(name);
  if (i < 0) return null;
  const hue = (200 + (i * 360) / Math.max(1, state.adapters.length)) % 360;
  return `hsl(${hue.toFixed(0)} 70% 86%)`;
}

/** "news 1 + religion 0.5" */
const mixLabel = (entries: MixEntry[]) => (entries.length ? entries.map((e) => `${e.name} ${Number(e.weight.toFixed(3))}`).join(" + ") : "base");

function segmentBackground(active: string, mix: MixEntry[] | null): string {
  if (mix && mix.length > 1) return `linear-gradient(90deg, ${mix.map((e) => colourOf(e.name) ?? "transparent").join(", ")})`;
  return colourOf(mix?.[0]?.name ?? active) ?? "transparent";
}

/** The current mix (null: a single adapter or the base from a button). */
let currentMix: MixEntry[] | null = null;

function renderAdapters(): void {
  ui.adapters.textContent = "";
  for (const name of ["base", ...state.adapters]) {
    const row = document.createElement("div");
    row.className = "adapter";
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.adapter = name;
    b.className = "adapter-btn";
    b.title = name === "base" ? "the base model (peft.switchToBase)" : `peft.switchTo("${name}")`;
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = colourOf(name) ?? "transparent";
    sw.setAttribute("aria-hidden", "true");
    b.append(sw, name);
    b.setAttribute("aria-pressed", String(name === state.active));
    b.addEventListener("click", () => runUi(() => select(name)));
    const ms = document.createElement("span");
    ms.className = "ms";
    ms.dataset.for = name;
    row.append(b, ms);
    if (name !== "base") {
      const id = `w-${state.adapters.indexOf(name)}`;
      const range = document.createElement("input");
      Object.assign(range, { type: "range", min: "0", max: "1.5", step: "0.1", value: "0", id });
      range.dataset.adapter = name;
      range.setAttribute("aria-label", `weight of ${name} in the mix`);
      const out = document.createElement("output");
      out.className = "weight";
      out.htmlFor.add(id);
      out.textContent = "0.0";
      range.addEventListener("input", () => (out.textContent = Number(range.value).toFixed(1)));
      range.addEventListener("change", () => runUi(() => fuse(sliderMix())));
      row.append(range, out);
    }
    ui.adapters.append(row);
  }
  ui.active.textContent = state.active;
}

const sliders = () => Array.from(ui.adapters.querySelectorAll<HTMLInputElement>("input[type=range][data-adapter]"));

/** The sliders' non-zero weights, in adapter order. */
function sliderMix(): MixEntry[] {
  return sliders()
    .map((r) => ({ name: r.dataset.adapter!, weight: Number(r.value) }))
    .filter((e) => e.weight !== 0);
}

function setSliders(weights: Map<string, number>): void {
  for (const r of sliders()) {
    r.value = String(weights.get(r.dataset.adapter!) ?? 0);
    const out = r.parentElement?.querySelector("output");
    if (out) out.textContent = Number(r.value).toFixed(1);
  }
}

function record(adapter: string, ms: number, forName: string | null): number {
  const rec: SwitchRecord = { atToken: state.progress ? state.progress.tokens : -1, adapter, ms };
  state.log.unshift(rec);
  state.log.length = Math.min(state.log.length, 20);
  ui.switchMs.textContent = `${adapter}: ${ms.toFixed(3)} ms`;
  ui.switchLog.textContent = "";
  for (const r of state.log.slice(0, LOG_SIZE)) {
    const li = document.createElement("li");
    li.textContent = `${r.adapter} · ${r.ms.toFixed(3)} ms${r.atToken >= 0 ? ` · before token ${r.atToken}` : ""}`;
    ui.switchLog.append(li);
  }
  if (forName !== null) {
    const cell = ui.adapters.querySelector<HTMLElement>(`.ms[data-for="${CSS.escape(forName)}"]`);
    if (cell) cell.textContent = `${ms.toFixed(3)} ms`;
  }
  for (const b of Array.from(ui.adapters.querySelectorAll<HTMLButtonElement>("button[data-adapter]"))) b.setAttribute("aria-pressed", String(b.dataset.adapter === state.active));
  ui.active.textContent = state.active;
  return ms;
}

/** Fused switch to one adapter (or "base"); the sliders follow. Returns the ms of the library call. */
function select(name: string): number {
  if (name !== "base" && !state.adapters.includes(name)) throw new Error(`no adapter "${name}" (have: ${state.adapters.join(", ") || "none"})`);
  const t0 = performance.now();
  if (state.peft) {
    if (name === "base") state.peft.toBase();
    else state.peft.switchTo(name);
  }
  const ms = performance.now() - t0;
  state.active = name;
  currentMix = null;
  setSliders(new Map(name === "base" ? [] : [[name, 1]]));
  return record(name, ms, name);
}

/** `fuse` of the non-zero entries (none: the base model); the sliders follow. Returns the ms of the library call. */
function fuse(entries: MixEntry[]): number {
  for (const e of entries) {
    if (!state.adapters.includes(e.name)) throw new Error(`no adapter "${e.name}" (have: ${state.adapters.join(", ") || "none"})`);
    if (!(typeof e.weight === "number" && Number.isFinite(e.weight))) throw new Error(`the weight of "${e.name}" should be a finite number, got ${String(e.weight)}`);
  }
  const mix = entries.filter((e) => e.weight !== 0).map((e) => ({ name: e.name, weight: e.weight }));
  const t0 = performance.now();
  if (state.peft) {
    if (mix.length) state.peft.fuse(mix);
    else state.peft.toBase();
  }
  const ms = performance.now() - t0;
  state.active = mixLabel(mix);
  currentMix = mix.length ? mix : null;
  setSliders(new Map(mix.map((e) => [e.name, e.weight])));
  return record(state.active, ms, null);
}

/** Runs a UI action; an error goes to the status line. */
function runUi(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    setStatus((e as Error).message, true);
  }
}

// ------------------------------------------------------------------ generation

async function generate(req: LmGenerateRequest): Promise<LmGenerateResult> {
  const lm = state.lm;
  if (!lm) throw new Error("no model loaded");
  if (state.busy) throw new Error("a generation is already running");
  const ids = req.ids ?? (state.tok ? state.tok.encode(req.prompt ?? "") : null);
  if (!ids || ids.length === 0) throw new Error("empty prompt (a folder without tokenizer.json needs ids)");
  const sampling = req.doSample
    ? { temperature: req.temperature ?? SAMPLING.temperature, topK: req.topK ?? SAMPLING.topK, topP: req.topP ?? SAMPLING.topP, seed: req.seed ?? SAMPLING.seed }
    : null;
  state.busy = true;
  state.abort = new AbortController();
  state.progress = { tokens: 0 };
  ui.generate.disabled = true;
  ui.stop.disabled = false;
  ui.output.textContent = "";
  if (req.prompt !== undefined) {
    const p = document.createElement("span");
    p.className = "prompt";
    p.textContent = req.prompt;
    ui.output.append(p);
  }
  ui.output.setAttribute("aria-busy", "true");
  ui.stats.textContent = "";
  setStatus("Generating…");
  const plan = new Map(req.switchAt ?? []);
  const switches: LmGenerateResult["switches"] = [];
  const doSwitch = (k: number, target: string | MixEntry[]) => {
    const ms = typeof target === "string" ? select(target) : fuse(target);
    switches.push({ atToken: k, adapter: state.active, ms });
  };
  if (plan.has(0)) doSwitch(0, plan.get(0)!);
  const tokens: number[] = [];
  const adapterPerToken: string[] = [];
  const segments: LmGenerateResult["segments"] = [];
  let text = "";
  let segment: HTMLSpanElement | null = null;
  let firstAt = 0;
  let it: AsyncGenerator<unknown, unknown> | null = null;
  try {
    const stream = lm.stream([ids], {
      maxNewTokens: req.maxNewTokens ?? 40,
      doSample: sampling !== null,
      ...(sampling ? { temperature: sampling.temperature, seed: sampling.seed, ...(sampling.topK > 0 ? { topK: sampling.topK } : {}), ...(sampling.topP < 1 ? { topP: sampling.topP } : {}) } : {}),
      ...(state.tok ? { tokenizer: state.tok } : {}),
      ...(req.ignoreEos ? { eosTokenId: [] } : state.tok?.eosTokenId !== null && state.tok?.eosTokenId !== undefined ? { eosTokenId: state.tok.eosTokenId } : {}),
      signal: state.abort.signal,
    });
    it = stream;
    let result;
    for (;;) {
      const r = await stream.next();
      if (r.done) {
        result = r.value;
        break;
      }
      const now = performance.now();
      if (tokens.length === 0) firstAt = now;
      tokens.push(r.value.token);
      state.progress.tokens = tokens.length;
      adapterPerToken.push(state.active);
      const piece = r.value.text ?? (state.tok ? "" : ` ${r.value.token}`);
      text += r.value.text ?? "";
      if (!segment || segments[segments.length - 1].adapter !== state.active) {
        segment = document.createElement("span");
        segment.className = "seg";
        segment.dataset.adapter = state.active;
        segment.title = state.active;
        segment.style.background = segmentBackground(state.active, currentMix);
        ui.output.append(segment);
        segments.push({ adapter: state.active, text: "" });
      }
      segment.textContent += piece;
      segments[segments.length - 1].text += r.value.text ?? "";
      if (tokens.length > 1) ui.stats.textContent = `${tokens.length} tokens · ${((1000 * (tokens.length - 1)) / (now - firstAt)).toFixed(1)} tokens/s`;
      const next = plan.get(tokens.length);
      if (next !== undefined) doSwitch(tokens.length, next);
    }
    const tps = result.timings.decodeMs > 0 ? (1000 * Math.max(1, result.timings.newTokens - 1)) / result.timings.decodeMs : 0;
    ui.stats.textContent = `${tokens.length} tokens · prefill ${result.timings.prefillMs.toFixed(1)} ms · decode ${tps.toFixed(1)} tokens/s`;
    setStatus(`Done (${result.stoppedBy === "eos" ? "end of text" : result.stoppedBy === "maxNewTokens" ? `${tokens.length} tokens` : "stop string"}).`);
    const res: LmGenerateResult = { tokens, text, adapterPerToken, segments, switches, stoppedBy: result.stoppedBy, prefillMs: result.timings.prefillMs, decodeTokensPerSecond: tps, sampling };
    state.last = res;
    return res;
  } catch (e) {
    if ((e as { code?: string }).code === "ABORTED") setStatus(`Stopped after ${tokens.length} tokens.`);
    throw e;
  } finally {
    // a failed switch between two tokens: end the generation (the model stays busy until then)
    await it?.return(undefined);
    state.busy = false;
    state.abort = null;
    state.progress = null;
    ui.output.setAttribute("aria-busy", "false");
    ui.generate.disabled = false;
    ui.stop.disabled = true;
  }
}

ui.generate.addEventListener("click", () => {
  generate({
    prompt: ui.prompt.value,
    maxNewTokens: Number(ui.maxNew.value) || 40,
    doSample: ui.sample.checked,
    seed: Math.max(0, Math.floor(Number(ui.seed.value) || 0)),
  }).catch((e: Error) => {
    if ((e as { code?: string }).code !== "ABORTED") setStatus(e.message, true);
  });
});
ui.stop.addEventListener("click", () => state.abort?.abort());
ui.method.addEventListener("change", (ev) => {
  const m = (ev.target as HTMLInputElement).value as Method;
  setMethod(m).catch((e: Error) => setStatus(e.message, true));
});
ui.pickDir.addEventListener("change", () => {
  if (!ui.pickDir.files?.length) return;
  const p = sourceFromFiles(ui.pickDir.files).then((src) => load(src, "shira"));
  p.then(
    (info) => pendingPick?.resolve(info),
    (e: Error) => {
      setStatus(e.message, true);
      pendingPick?.reject(e);
    },
  );
});

function setMethod(m: Method): Promise<LmReadyInfo> {
  if (!state.src) return Promise.reject(new Error("no folder loaded"));
  return load(state.src, m);
}

ui.generate.disabled = true;
const ready = loadDefault().catch((e: Error) => {
  setStatus(e.message, true);
  throw e;
});
window.shiraLM = {
  ready,
  get adapters() {
    return state.adapters.slice();
  },
  get active() {
    return state.active;
  },
  select,
  fuse,
  generate,
  stop: () => state.abort?.abort(),
  get progress() {
    return state.progress ? { ...state.progress } : null;
  },
  get last() {
    return state.last;
  },
  get switchLog() {
    return state.log.slice();
  },
  setMethod,
};
