/**
 * The browser example: an MNIST MLP with several SHiRA adapters, switched in fused mode from buttons, fused
 * together with sliders, predicting live what is drawn on a 28×28 pad. Plain TypeScript, no framework; bundled by
 * scripts/build-examples.mjs with the library's browser build (src/index.ts, wasm embedded).
 *
 * Data: `data/model.json`, `data/model.safetensors`, `data/adapters/<task>/...` when the page is served with a data
 * folder (scripts/serve-examples.mjs), or files picked / dropped by the user. Test hook: `window.shiraDemo`
 * (see hook.ts).
 */
import { byId } from "./dom.js";
import { init, readSafetensors, PeftModel, Tensor, type AdapterSource, type Module, type ShiraModel, createMlp, type MlpSpec } from "../../src/index.js";
import { argmax, softmax } from "./softmax.js";
import type { DemoMode, DemoReadyInfo, ShiraDemo } from "./hook.js";

declare global {
  interface Window {
    shiraDemo: ShiraDemo;
  }
}

const SIDE = 28;
const PIXELS = SIDE * SIDE;
const DATA = new URL("data/", location.href);
const WEIGHT_MAX = 1.5;

const ui = {
  status: byId("status"),
  info: byId("info"),
  pad: byId<HTMLCanvasElement>("pad"),
  clear: byId<HTMLButtonElement>("clear"),
  samples: byId("samples"),
  probs: byId("probs"),
  top: byId("top"),
  mode: byId("mode"),
  adapters: byId("adapters"),
  fuseDesc: byId("fuse-desc"),
  fuseMs: byId("fuse-ms"),
  pickDir: byId<HTMLInputElement>("pick-dir"),
  pickFiles: byId<HTMLInputElement>("pick-files"),
  drop: byId("drop"),
};

// ------------------------------------------------------------------ state

interface State {
  variant: string;
  spec: MlpSpec | null;
  model: Module | null;
  peft: ShiraModel | null;
  adapters: string[];
  mode: DemoMode;
  lastMs: number | null;
  source: "data" | "files";
  loadMs: number;
}

const st: State = { variant: "", spec: null, model: null, peft: null, adapters: [], mode: { kind: "base" }, lastMs: null, source: "data", loadMs: 0 };
const grid = new Float32Array(PIXELS);

let resolveReady!: (info: DemoReadyInfo) => void;
let rejectReady!: (e: unknown) => void;
let readySettled = false;
const ready = new Promise<DemoReadyInfo>((res, rej) => {
  resolveReady = (i) => {
    readySettled = true;
    res(i);
  };
  rejectReady = (e) => {
    readySettled = true;
    rej(e);
  };
});
ready.catch(() => undefined); // reported in the status line

const fmtMs = (ms: number) => `${ms.toFixed(3)} ms`;
const fmtW = (w: number) => w.toFixed(2);

function status(msg: string, error = false): void {
  ui.status.textContent = msg;
  ui.status.classList.toggle("error", error);
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function info(): DemoReadyInfo {
  return { source: st.source, adapters: st.adapters.slice(), sizes: st.spec?.sizes.slice() ?? [], variant: st.variant, loadMs: st.loadMs };
}

// ------------------------------------------------------------------ model and adapters

function setModel(spec: unknown, bytes: Uint8Array): void {
  const s = spec as MlpSpec;
  const model = createMlp(s); // validates the spec
  if (s.sizes[0] !== PIXELS) {
    model.free();
    throw new Error(`model.json: the input size is ${s.sizes[0]}, this page draws ${SIDE}×${SIDE} = ${PIXELS} pixels`);
  }
  model.eval();
  try {
    model.loadStateDict(readSafetensors(bytes));
  } catch (e) {
    model.free();
    throw e;
  }
  st.model?.free();
  st.spec = s;
  st.model = model;
  st.peft = null;
  st.adapters = [];
  st.mode = { kind: "base" };
  st.lastMs = null;
}

function uniqueName(want: string): string {
  const clean = want.replace(/[/\\]/g, "_").replace(/^\.+/, "").trim() || "adapter";
  if (!st.adapters.includes(clean)) return clean;
  for (let i = 2; ; i++) if (!st.adapters.includes(`${clean}-${i}`)) return `${clean}-${i}`;
}

/** Loads an adapter onto the current model (the model goes back to the base first). */
async function addAdapter(name: string, source: AdapterSource): Promise<void> {
  if (!st.model) throw new Error("load a model (model.json + model.safetensors) before adapters");
  if (st.peft) {
    st.peft.switchToBase();
    st.mode = { kind: "base" };
    await st.peft.loadAdapter(source, name);
  } else {
    st.peft = await PeftModel.fromPretrained(st.model, source, { adapterName: name });
  }
  st.peft.switchToBase(); // the page starts every model in the base state
  st.adapters.push(name);
}

/**
 * Puts the model in `mode` and returns the time of the library call(s) in ms: `switchTo` for one adapter, `fuse`
 * for several, `switchToBase` (exact unfuse) for the base.
 */
function applyMode(mode: DemoMode): number {
  const peft = st.peft;
  if (!peft) {
    if (mode.kind !== "base") throw new Error("no adapters loaded");
    st.mode = mode;
    st.lastMs = 0;
    return 0;
  }
  let t0 = 0;
  let t1 = 0;
  try {
    if (mode.kind === "base") {
      t0 = performance.now();
      peft.switchToBase();
      t1 = performance.now();
    } else if (mode.kind === "adapter") {
      t0 = performance.now();
      peft.switchTo(mode.name);
      t1 = performance.now();
    } else {
      t0 = performance.now();
      peft.fuse(mode.entries);
      t1 = performance.now();
    }
  } catch (e) {
    peft.switchToBase(); // never leave adapters active but unfused
    st.mode = { kind: "base" };
    throw e;
  }
  st.mode = mode;
  st.lastMs = t1 - t0;
  return st.lastMs;
}

function logits(pixels: ArrayLike<number>): number[] {
  if (!st.model) throw new Error("no model loaded");
  if (pixels.length !== PIXELS) throw new Error(`predict: expected ${PIXELS} pixels, got ${pixels.length}`);
  const x = Tensor.from(Float32Array.from(pixels), [1, PIXELS]);
  const y = st.peft ? st.peft.forward(x) : st.model.forward(x);
  const out = Array.from(y.toArray());
  if (y !== x) y.free();
  x.free();
  return out;
}

function predict(pixels: ArrayLike<number>): number[] {
  return softmax(logits(pixels));
}

// ------------------------------------------------------------------ data folder

async function fetchOk(url: URL): Promise<Response | null> {
  try {
    const r = await fetch(url, { cache: "no-store" });
    return r.ok ? r : null;
  } catch {
    return null;
  }
}

async function fetchJson(url: URL): Promise<unknown> {
  const r = await fetchOk(url);
  if (!r) return null;
  try {
    return await r.json();
  } catch {
    return null;
  }
}

/** Adapter names from `adapters/index.json` (`{ adapters: [...] }`) or a results file (`{ tasks: ... }`). */
function namesFrom(j: unknown): string[] {
  if (Array.isArray(j)) {
    return j
      .map((x) => (typeof x === "string" ? x : x && typeof x === "object" ? ((x as Record<string, unknown>).name ?? (x as Record<string, unknown>).task ?? (x as Record<string, unknown>).adapter) : null))
      .filter((x): x is string => typeof x === "string" && x.length > 0);
  }
  if (j && typeof j === "object") {
    for (const key of ["adapters", "tasks"]) {
      const v = (j as Record<string, unknown>)[key];
      if (Array.isArray(v)) return namesFrom(v);
      if (v && typeof v === "object") return Object.keys(v);
    }
  }
  return [];
}

async function loadFromData(): Promise<boolean> {
  const specRes = await fetchOk(new URL("model.json", DATA));
  if (!specRes) return false;
  const t0 = performance.now();
  status("Loading the model and adapters from data/ …");
  const spec = await specRes.json();
  const weights = await fetchOk(new URL("model.safetensors", DATA));
  if (!weights) throw new Error("data/model.json is there but data/model.safetensors is not");
  setModel(spec, new Uint8Array(await weights.arrayBuffer()));
  let names = namesFrom(await fetchJson(new URL("adapters/index.json", DATA)));
  if (names.length === 0) names = namesFrom(await fetchJson(new URL("results.json", DATA)));
  for (const n of names) {
    status(`Loading adapter ${n} …`);
    try {
      await addAdapter(uniqueName(n), new URL(`adapters/${encodeURIComponent(n)}/`, DATA));
    } catch (e) {
      dataFailures.push(`${n}: ${errorText(e)}`); // the others still load
    }
  }
  st.source = "data";
  st.loadMs = performance.now() - t0;
  return true;
}

/** Adapters of the data folder that could not be loaded (shown in the status line). */
const dataFailures: string[] = [];

// ------------------------------------------------------------------ picked / dropped files

type Picked = { path: string; file: File };

const baseName = (p: string) => p.split("/").pop() ?? p;
const dirName = (p: string) => p.split("/").slice(0, -1).join("/");

async function loadFiles(files: Picked[]): Promise<DemoReadyInfo> {
  const t0 = performance.now();
  const modelJson = files.find((f) => baseName(f.path) === "model.json");
  const modelSt = files.find((f) => baseName(f.path) === "model.safetensors");
  const groups = new Map<string, { config?: File; weights?: File }>();
  for (const f of files) {
    const b = baseName(f.path);
    if (b !== "adapter_config.json" && b !== "adapter_model.safetensors") continue;
    const g = groups.get(dirName(f.path)) ?? {};
    if (b === "adapter_config.json") g.config = f.file;
    else g.weights = f.file;
    groups.set(dirName(f.path), g);
  }
  if (!modelJson && !modelSt && groups.size === 0) {
    throw new Error(`nothing to load in ${files.map((f) => f.path).join(", ") || "no files"}: expected model.json, model.safetensors, adapter_config.json, adapter_model.safetensors`);
  }
  if (modelJson || modelSt) {
    if (!modelJson || !modelSt) throw new Error("a model needs both model.json and model.safetensors");
    setModel(JSON.parse(await modelJson.file.text()), new Uint8Array(await modelSt.file.arrayBuffer()));
  } else if (!st.model) {
    throw new Error("pick model.json and model.safetensors first (or a folder holding them)");
  }
  try {
    for (const [dir, g] of [...groups].sort((a, b) => a[0].localeCompare(b[0]))) {
      if (!g.config || !g.weights) throw new Error(`adapter folder "${dir || "."}": needs adapter_config.json and adapter_model.safetensors`);
      await addAdapter(uniqueName(baseName(dir) || "adapter"), { "adapter_config.json": g.config, "adapter_model.safetensors": g.weights });
    }
  } finally {
    st.source = "files";
    st.loadMs = performance.now() - t0;
    afterLoad();
  }
  return info();
}

async function walkEntry(entry: FileSystemEntry, out: Picked[]): Promise<void> {
  if (entry.isFile) {
    const file = await new Promise<File>((res, rej) => (entry as FileSystemFileEntry).file(res, rej));
    out.push({ path: entry.fullPath.replace(/^\/+/, ""), file });
  } else if (entry.isDirectory) {
    const reader = (entry as FileSystemDirectoryEntry).createReader();
    for (;;) {
      const batch = await new Promise<FileSystemEntry[]>((res, rej) => reader.readEntries(res, rej));
      if (batch.length === 0) break;
      for (const e of batch) await walkEntry(e, out);
    }
  }
}

async function pickedFromDrop(dt: DataTransfer): Promise<Picked[]> {
  // entries must be taken synchronously, inside the drop event
  const entries = Array.from(dt.items ?? [])
    .filter((i) => i.kind === "file")
    .map((i) => (typeof i.webkitGetAsEntry === "function" ? i.webkitGetAsEntry() : null));
  const plain = Array.from(dt.files);
  if (entries.length > 0 && entries.every((e) => e !== null)) {
    const out: Picked[] = [];
    for (const e of entries) await walkEntry(e!, out);
    return out;
  }
  return plain.map((f) => ({ path: f.name, file: f }));
}

function pickedFromInput(input: HTMLInputElement): Picked[] {
  return Array.from(input.files ?? []).map((f) => ({ path: f.webkitRelativePath || f.name, file: f }));
}

async function loadPicked(files: Picked[]): Promise<void> {
  if (files.length === 0) return;
  status(`Loading ${files.length} file${files.length === 1 ? "" : "s"} …`);
  try {
    const i = await loadFiles(files);
    status(`Loaded ${i.adapters.length} adapter${i.adapters.length === 1 ? "" : "s"} from files in ${fmtMs(i.loadMs)}.`);
    if (!readySettled) resolveReady(i);
  } catch (e) {
    status(`Could not load the files: ${errorText(e)}`, true);
  }
}

// ------------------------------------------------------------------ drawing pad

const padCtx = ui.pad.getContext("2d")!;

function paint(ctx: CanvasRenderingContext2D, pixels: ArrayLike<number>): void {
  const img = ctx.createImageData(SIDE, SIDE);
  for (let i = 0; i < PIXELS; i++) {
    const v = Math.round(Math.min(1, Math.max(0, pixels[i])) * 255);
    img.data[4 * i] = v;
    img.data[4 * i + 1] = v;
    img.data[4 * i + 2] = v;
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

/** A soft round brush about 2.5 pixels wide, like MNIST's strokes. */
function stamp(x: number, y: number): void {
  for (let r = Math.max(0, Math.floor(y - 2)); r <= Math.min(SIDE - 1, Math.ceil(y + 2)); r++) {
    for (let c = Math.max(0, Math.floor(x - 2)); c <= Math.min(SIDE - 1, Math.ceil(x + 2)); c++) {
      const d = Math.hypot(c + 0.5 - x, r + 0.5 - y);
      const v = d <= 0.8 ? 1 : d < 1.9 ? (1.9 - d) / 1.1 : 0;
      if (v > grid[r * SIDE + c]) grid[r * SIDE + c] = v;
    }
  }
}

let frame = 0;
function scheduleUpdate(): void {
  if (frame) return;
  frame = requestAnimationFrame(() => {
    frame = 0;
    paint(padCtx, grid);
    showPrediction();
  });
}

let drawing = false;
let last: [number, number] | null = null;

function padPos(e: PointerEvent): [number, number] {
  const r = ui.pad.getBoundingClientRect();
  return [((e.clientX - r.left) / r.width) * SIDE, ((e.clientY - r.top) / r.height) * SIDE];
}

ui.pad.addEventListener("pointerdown", (e) => {
  e.preventDefault();
  drawing = true;
  ui.pad.setPointerCapture(e.pointerId);
  last = padPos(e);
  stamp(last[0], last[1]);
  scheduleUpdate();
});
ui.pad.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  const p = padPos(e);
  const [x0, y0] = last ?? p;
  const steps = Math.max(1, Math.ceil(Math.hypot(p[0] - x0, p[1] - y0) / 0.3));
  for (let s = 1; s <= steps; s++) stamp(x0 + ((p[0] - x0) * s) / steps, y0 + ((p[1] - y0) * s) / steps);
  last = p;
  scheduleUpdate();
});
const endStroke = () => {
  drawing = false;
  last = null;
};
ui.pad.addEventListener("pointerup", endStroke);
ui.pad.addEventListener("pointercancel", endStroke);
ui.clear.addEventListener("click", () => {
  grid.fill(0);
  scheduleUpdate();
});

function setPixels(pixels: ArrayLike<number>): void {
  if (pixels.length !== PIXELS) throw new Error(`setPixels: expected ${PIXELS} values, got ${pixels.length}`);
  for (let i = 0; i < PIXELS; i++) grid[i] = Math.min(1, Math.max(0, Number(pixels[i]) || 0));
  paint(padCtx, grid);
  showPrediction();
}

// ------------------------------------------------------------------ samples

interface Sample {
  label: number | null;
  pixels: number[];
}

function parseSamples(j: unknown): Sample[] {
  const list = Array.isArray(j) ? j : j && typeof j === "object" && Array.isArray((j as { samples?: unknown }).samples) ? (j as { samples: unknown[] }).samples : [];
  const out: Sample[] = [];
  for (const s of list) {
    const px = Array.isArray(s) ? s : s && typeof s === "object" ? ((s as { pixels?: unknown }).pixels ?? (s as { image?: unknown }).image) : null;
    if (!Array.isArray(px) || px.length !== PIXELS) continue;
    const nums = px.map(Number);
    const max = Math.max(...nums);
    const label = s && typeof s === "object" && !Array.isArray(s) ? Number((s as { label?: unknown }).label ?? (s as { digit?: unknown }).digit) : NaN;
    out.push({ label: Number.isInteger(label) ? label : null, pixels: max > 1 ? nums.map((v) => v / 255) : nums });
  }
  return out;
}

async function loadSamples(): Promise<Sample[]> {
  let s = parseSamples(await fetchJson(new URL("samples.json", DATA)));
  if (s.length === 0) s = parseSamples(await fetchJson(new URL("samples.json", location.href)));
  ui.samples.replaceChildren();
  s.slice(0, 20).forEach((sample, i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "sample";
    b.dataset.sample = String(i);
    b.title = sample.label === null ? `sample ${i + 1}` : `a ${sample.label}`;
    b.setAttribute("aria-label", b.title);
    const c = document.createElement("canvas");
    c.width = SIDE;
    c.height = SIDE;
    paint(c.getContext("2d")!, sample.pixels);
    const cap = document.createElement("span");
    cap.textContent = sample.label === null ? String(i + 1) : String(sample.label);
    b.append(c, cap);
    b.addEventListener("click", () => setPixels(sample.pixels));
    ui.samples.append(b);
  });
  return s;
}

// ------------------------------------------------------------------ prediction display

const rows: { row: HTMLElement; fill: HTMLElement; pct: HTMLElement }[] = [];

function buildProbs(n: number): void {
  ui.probs.replaceChildren();
  rows.length = 0;
  for (let k = 0; k < n; k++) {
    const row = document.createElement("div");
    row.className = "prob";
    row.dataset.class = String(k);
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = String(k);
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("div");
    fill.className = "fill";
    bar.append(fill);
    const pct = document.createElement("span");
    pct.className = "pct";
    row.append(label, bar, pct);
    ui.probs.append(row);
    rows.push({ row, fill, pct });
  }
}

function showPrediction(): void {
  if (!st.model) return;
  let p: number[];
  try {
    p = predict(grid);
  } catch (e) {
    status(`Prediction failed: ${errorText(e)}`, true);
    return;
  }
  if (rows.length !== p.length) buildProbs(p.length);
  const top = argmax(p);
  p.forEach((v, k) => {
    rows[k].fill.style.width = `${(v * 100).toFixed(2)}%`;
    rows[k].pct.textContent = `${(v * 100).toFixed(1)}%`;
    rows[k].row.dataset.p = String(v);
    rows[k].row.classList.toggle("top", k === top);
  });
  ui.top.textContent = `Predicted: ${top} (${(p[top] * 100).toFixed(1)}%)`;
  ui.top.dataset.top = String(top);
}

// ------------------------------------------------------------------ adapter controls

function modeLabel(m: DemoMode): string {
  if (m.kind === "base") return "base";
  if (m.kind === "adapter") return m.name;
  return m.entries.map((e) => `${e.name}×${fmtW(e.weight)}`).join(" + ");
}

const msEls = new Map<string, HTMLElement>(); // "" = base
const buttons = new Map<string, HTMLButtonElement>();
const sliders = new Map<string, { input: HTMLInputElement; value: HTMLElement }>();

function buildAdapterUI(): void {
  ui.adapters.replaceChildren();
  msEls.clear();
  buttons.clear();
  sliders.clear();
  const row = (key: string, label: string, withSlider: boolean) => {
    const div = document.createElement("div");
    div.className = "adapter";
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.setAttribute("aria-pressed", "false");
    if (key === "") b.dataset.mode = "base";
    else {
      b.dataset.adapter = key;
      b.title = `${key}: ${st.peft?.adapterSize(key).toLocaleString("en-US") ?? "?"} values`;
    }
    b.addEventListener("click", () => {
      try {
        select(key === "" ? null : key);
      } catch (e) {
        status(`Switch failed: ${errorText(e)}`, true);
      }
    });
    const ms = document.createElement("span");
    ms.className = "ms";
    ms.dataset.for = key === "" ? "base" : key;
    div.append(b, ms);
    msEls.set(key, ms);
    buttons.set(key, b);
    if (withSlider) {
      const input = document.createElement("input");
      input.type = "range";
      input.min = "0";
      input.max = String(WEIGHT_MAX);
      input.step = "0.05";
      input.value = "0";
      input.dataset.adapter = key;
      input.setAttribute("aria-label", `fusion weight of ${key}`);
      const value = document.createElement("span");
      value.className = "weight";
      value.textContent = fmtW(0);
      input.addEventListener("input", () => {
        value.textContent = fmtW(Number(input.value));
        try {
          fuse([...sliders].map(([name, s]) => ({ name, weight: Number(s.input.value) })));
        } catch (e) {
          status(`Fusion failed: ${errorText(e)}`, true);
        }
      });
      div.append(input, value);
      sliders.set(key, { input, value });
    }
    ui.adapters.append(div);
  };
  row("", "base", false);
  for (const n of st.adapters) row(n, n, true);
}

function syncControls(): void {
  const m = st.mode;
  const pressed = m.kind === "base" ? "" : m.kind === "adapter" ? m.name : null;
  for (const [k, b] of buttons) b.setAttribute("aria-pressed", String(k === pressed));
  for (const [k, s] of sliders) {
    const w = m.kind === "adapter" ? (k === m.name ? 1 : 0) : m.kind === "fused" ? (m.entries.find((e) => e.name === k)?.weight ?? 0) : 0;
    if (Number(s.input.value) !== w) s.input.value = String(w);
    s.value.textContent = fmtW(w);
  }
  ui.mode.textContent = modeLabel(m);
}

function select(name: string | null): number {
  const toBase = name === null || (name === "base" && !st.adapters.includes("base"));
  if (!toBase && !st.adapters.includes(name!)) throw new Error(`no adapter "${name}" (adapters: ${st.adapters.join(", ") || "none"})`);
  const mode: DemoMode = toBase ? { kind: "base" } : { kind: "adapter", name: name! };
  const ms = applyMode(mode);
  msEls.get(toBase ? "" : name!)!.textContent = fmtMs(ms);
  status(toBase ? `Back to the base model in ${fmtMs(ms)} (exact unfuse).` : `Switched to ${name} in ${fmtMs(ms)} (fused, peft.switchTo).`);
  syncControls();
  showPrediction();
  return ms;
}

function fuse(entries: { name: string; weight: number }[]): number {
  for (const e of entries) if (!st.adapters.includes(e.name)) throw new Error(`no adapter "${e.name}"`);
  const list = entries.filter((e) => e.weight !== 0).map((e) => ({ name: e.name, weight: e.weight }));
  const mode: DemoMode = list.length === 0 ? { kind: "base" } : { kind: "fused", entries: list };
  const ms = applyMode(mode);
  ui.fuseDesc.textContent = list.length ? modeLabel(mode) : "none (base)";
  ui.fuseMs.textContent = fmtMs(ms);
  status(list.length ? `Fused ${modeLabel(mode)} in ${fmtMs(ms)} (peft.fuse).` : `No weights set: base model (${fmtMs(ms)}).`);
  syncControls();
  showPrediction();
  return ms;
}

function afterLoad(): void {
  buildAdapterUI();
  syncControls();
  ui.fuseDesc.textContent = "none";
  ui.fuseMs.textContent = "";
  const s = st.spec;
  const nnz = st.adapters.reduce((a, n) => a + (st.peft?.adapterSize(n) ?? 0), 0);
  ui.info.textContent =
    `wasm: ${st.variant} · MLP ${s?.sizes.join("-") ?? "?"} · ${st.adapters.length} adapter${st.adapters.length === 1 ? "" : "s"}` +
    (st.adapters.length ? ` (${nnz.toLocaleString("en-US")} values)` : "") +
    ` · loaded from ${st.source === "data" ? "data/" : "files"} in ${fmtMs(st.loadMs)}`;
  showPrediction();
}

// ------------------------------------------------------------------ file pickers and drag-and-drop

ui.pickDir.addEventListener("change", () => {
  void loadPicked(pickedFromInput(ui.pickDir)).finally(() => (ui.pickDir.value = ""));
});
ui.pickFiles.addEventListener("change", () => {
  void loadPicked(pickedFromInput(ui.pickFiles)).finally(() => (ui.pickFiles.value = ""));
});
let dragDepth = 0;
window.addEventListener("dragenter", (e) => {
  if (!e.dataTransfer?.types.includes("Files")) return;
  e.preventDefault();
  dragDepth++;
  ui.drop.hidden = false;
});
window.addEventListener("dragover", (e) => {
  if (!e.dataTransfer?.types.includes("Files")) return;
  e.preventDefault();
  e.dataTransfer.dropEffect = "copy";
});
window.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (dragDepth === 0) ui.drop.hidden = true;
});
window.addEventListener("drop", (e) => {
  e.preventDefault();
  dragDepth = 0;
  ui.drop.hidden = true;
  if (!e.dataTransfer) return;
  void pickedFromDrop(e.dataTransfer).then(loadPicked, (err) => status(`Could not read the dropped files: ${errorText(err)}`, true));
});

// ------------------------------------------------------------------ test hook

window.shiraDemo = {
  ready,
  get adapters() {
    return st.adapters.slice();
  },
  get mode() {
    return structuredClone(st.mode);
  },
  get lastSwitchMs() {
    return st.lastMs;
  },
  predict: (pixels) => predict(pixels),
  logits: (pixels) => logits(pixels),
  select,
  fuse,
  loadFiles: async (files) => {
    const i = await loadFiles(files);
    if (!readySettled) resolveReady(i);
    return i;
  },
  saveAdapter: (name) => {
    if (!st.peft || !st.adapters.includes(name)) throw new Error(`no adapter "${name}"`);
    return st.peft.saveAdapter(name);
  },
  pixels: () => Array.from(grid),
  setPixels,
};

// ------------------------------------------------------------------ start

async function start(): Promise<void> {
  const rt = await init();
  st.variant = rt.variant;
  buildProbs(10);
  const samples = await loadSamples();
  if (samples.length) setPixels(samples[0].pixels);
  else paint(padCtx, grid);
  let loaded = false;
  try {
    loaded = await loadFromData();
  } catch (e) {
    afterLoad();
    status(`Could not load data/: ${errorText(e)}`, true);
    rejectReady(e);
    return;
  }
  if (loaded) {
    afterLoad();
    if (dataFailures.length) status(`Loaded ${st.adapters.length} adapter(s); could not load ${dataFailures.join("; ")}`, true);
    else status(`Ready: ${st.adapters.length} adapter${st.adapters.length === 1 ? "" : "s"} loaded in ${fmtMs(st.loadMs)}. Click a button to switch.`);
    resolveReady(info());
  } else {
    buildAdapterUI();
    status("No data folder served: pick or drop model.json, model.safetensors and adapter folders below.");
  }
}

start().catch((e) => {
  status(`Start-up failed: ${errorText(e)}`, true);
  rejectReady(e);
});
