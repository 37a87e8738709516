/**
 * The language-model page: a Hugging Face checkpoint folder loaded with `AutoModelForCausalLM.fromPretrained`, its
 * tokenizer, and PEFT SHiRA adapters; text streams token by token and an adapter clicked during generation is fused
 * between two tokens. Plain TypeScript, bundled by scripts/build-examples.mjs with the library's browser build.
 *
 * Data: `?model=<folder URL>`, else `data/lm/` when the page is served with a data folder holding one
 * (`npm run serve:examples -- --data DIR`), else a folder picked by the user. Adapters: `<folder>/adapters/<name>/`
 * (listed by `<folder>/adapters/index.json`, which the example server generates). Test hook: `window.shiraLM`.
 */
import { byId } from "./dom.js";
import {
  init,
  AutoModelForCausalLM,
  AutoTokenizer,
  PeftModel,
  type DecoderModel,
  type PreTrainedTokenizer,
  type ShiraModel,
  type CheckpointFile,
} from "../../src/index.js";
import type { LmGenerateRequest, LmGenerateResult, LmReadyInfo, ShiraLM } from "./lm-hook.js";

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
  generate: byId<HTMLButtonElement>("generate"),
  stop: byId<HTMLButtonElement>("stop"),
  adapters: byId("adapters"),
  active: byId("active"),
  switchMs: byId("switch-ms"),
  output: byId("output"),
  stats: byId("stats"),
  pickDir: byId<HTMLInputElement>("pick-dir"),
};

interface State {
  lm: DecoderModel | null;
  tok: PreTrainedTokenizer | null;
  peft: ShiraModel | null;
  adapters: string[];
  active: string;
  abort: AbortController | null;
  busy: boolean;
}
const state: State = { lm: null, tok: null, peft: null, adapters: [], active: "base", abort: null, busy: false };

function setStatus(s: string, error = false): void {
  ui.status.textContent = s;
  ui.status.classList.toggle("error", error);
}

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

async function loadFrom(
  model: string | Record<string, CheckpointFile>,
  adapters: [string, string | Record<string, CheckpointFile>][],
  source: LmReadyInfo["source"],
): Promise<LmReadyInfo> {
  const t0 = performance.now();
  // a model is not disposed while it generates (dispose() throws BUSY then): stop the generation first
  if (state.busy) throw new Error("a generation is running; stop it before loading another model");
  const rt = await init();
  state.peft = null;
  state.lm?.dispose();
  state.lm = null;
  setStatus("Loading the model…");
  const lm = await AutoModelForCausalLM.fromPretrained(model, {
    onProgress: (p) => setStatus(`Loading the model… ${Math.round((100 * p.loadedBytes) / Math.max(1, p.totalBytes))} %`),
  });
  let tok: PreTrainedTokenizer | null = null;
  try {
    tok = await AutoTokenizer.fromPretrained(model);
  } catch {
    tok = null; // a folder without tokenizer.json: prompts as token ids only
  }
  let peft: ShiraModel | null = null;
  for (const [name, src] of adapters) {
    if (!peft) peft = await PeftModel.fromPretrained(lm, src as string, { adapterName: name });
    else await peft.loadAdapter(src as string, name);
  }
  peft?.switchToBase();
  state.lm = lm;
  state.tok = tok;
  state.peft = peft;
  state.adapters = adapters.map(([n]) => n);
  state.active = "base";
  renderAdapters();
  const loadMs = performance.now() - t0;
  const params = lm.numParameters();
  ui.info.textContent =
    `${lm.family.architecture}: ${lm.config.numLayers} layers, hidden ${lm.config.hiddenSize}, ${(params / 1e6).toFixed(2)} M parameters; ` +
    `${state.adapters.length} adapter(s); ${tok ? "tokenizer.json" : "no tokenizer (ids only)"}; wasm ${rt.variant}; loaded in ${(loadMs / 1000).toFixed(2)} s`;
  setStatus("Ready.");
  ui.generate.disabled = false;
  return {
    source,
    modelType: lm.config.modelType,
    layers: lm.config.numLayers,
    parameters: params,
    adapters: state.adapters.slice(),
    hasTokenizer: tok !== null,
    variant: rt.variant,
    loadMs,
  };
}

async function loadDefault(): Promise<LmReadyInfo> {
  const param = new URLSearchParams(location.search).get("model");
  const base = new URL(param ?? "data/lm/", location.href).href.replace(/\/?$/, "/");
  const probe = await fetch(new URL("config.json", base), { method: "HEAD" }).catch(() => null);
  if (!probe || !probe.ok) {
    setStatus("No model here: pick a checkpoint folder below (or open the page with ?model=<folder URL>).");
    return new Promise<LmReadyInfo>((resolve, reject) => {
      pendingPick = { resolve, reject };
    });
  }
  const names = await listAdapters(base);
  return loadFrom(base, names.map((n) => [n, new URL(`adapters/${n}/`, base).href]), param ? "url" : "data");
}

let pendingPick: { resolve: (i: LmReadyInfo) => void; reject: (e: unknown) => void } | null = null;

async function loadPicked(files: FileList): Promise<LmReadyInfo> {
  const model: Record<string, CheckpointFile> = {};
  const adapters = new Map<string, Record<string, CheckpointFile>>();
  for (const f of Array.from(files)) {
    const parts = ((f as File & { webkitRelativePath?: string }).webkitRelativePath || f.name).split("/");
    const rel = parts.length > 1 ? parts.slice(1) : parts; // drop the picked folder's own name
    if (rel.length === 3 && rel[0] === "adapters") {
      if (!adapters.has(rel[1])) adapters.set(rel[1], {});
      adapters.get(rel[1])![rel[2]] = f;
    } else if (rel.length === 1) model[rel[0]] = f;
  }
  const list: [string, Record<string, CheckpointFile>][] = [...adapters].filter(([, fs]) => fs["adapter_config.json"] && fs["adapter_model.safetensors"]).sort((a, b) => (a[0] < b[0] ? -1 : 1));
  return loadFrom(model, list as unknown as [string, string][], "files");
}

// ------------------------------------------------------------------ adapters

function renderAdapters(): void {
  ui.adapters.textContent = "";
  for (const name of ["base", ...state.adapters]) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = name;
    b.dataset.adapter = name;
    b.className = "adapter-btn";
    b.setAttribute("aria-pressed", String(name === state.active));
    b.addEventListener("click", () => select(name));
    ui.adapters.append(b);
  }
  ui.active.textContent = state.active;
}

function select(name: string): number {
  if (name !== "base" && !state.adapters.includes(name)) throw new Error(`no adapter "${name}"`);
  const t0 = performance.now();
  if (state.peft) {
    if (name === "base") state.peft.switchToBase();
    else state.peft.switchTo(name);
  }
  const ms = performance.now() - t0;
  state.active = name;
  ui.switchMs.textContent = `${name}: ${ms.toFixed(3)} ms`;
  for (const b of Array.from(ui.adapters.querySelectorAll<HTMLButtonElement>("button"))) b.setAttribute("aria-pressed", String(b.dataset.adapter === name));
  ui.active.textContent = name;
  return ms;
}

// ------------------------------------------------------------------ generation

async function generate(req: LmGenerateRequest): Promise<LmGenerateResult> {
  const lm = state.lm;
  if (!lm) throw new Error("no model loaded");
  if (state.busy) throw new Error("a generation is already running");
  const ids = req.ids ?? (state.tok ? state.tok.encode(req.prompt ?? "") : null);
  if (!ids || ids.length === 0) throw new Error("empty prompt (a folder without tokenizer.json needs ids)");
  state.busy = true;
  state.abort = new AbortController();
  ui.generate.disabled = true;
  ui.stop.disabled = false;
  ui.output.textContent = "";
  const plan = new Map(req.switchAt ?? []);
  const switches: LmGenerateResult["switches"] = [];
  const doSwitch = (k: number, name: string) => switches.push({ atToken: k, adapter: name, ms: select(name) });
  if (plan.has(0)) doSwitch(0, plan.get(0)!);
  const tokens: number[] = [];
  const adapterPerToken: string[] = [];
  let text = "";
  let segment: HTMLSpanElement | null = null;
  let segmentAdapter = "";
  let it: AsyncGenerator<unknown, unknown> | null = null;
  try {
    const stream = lm.stream([ids], {
      maxNewTokens: req.maxNewTokens ?? 40,
      doSample: req.doSample ?? false,
      ...(req.doSample ? { temperature: req.temperature ?? 0.8, topP: 0.95, seed: req.seed ?? 1 } : {}),
      ...(state.tok ? { tokenizer: state.tok } : {}),
      ...(state.tok?.eosTokenId !== null && state.tok?.eosTokenId !== undefined ? { eosTokenId: state.tok.eosTokenId } : {}),
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
      tokens.push(r.value.token);
      adapterPerToken.push(state.active);
      const piece = r.value.text ?? "";
      text += piece;
      if (!segment || segmentAdapter !== state.active) {
        segment = document.createElement("span");
        segmentAdapter = state.active;
        segment.className = `seg adapter-${Math.max(0, ["base", ...state.adapters].indexOf(state.active))}`;
        segment.title = state.active;
        ui.output.append(segment);
      }
      segment.textContent += piece || (state.tok ? "" : ` ${r.value.token}`);
      const next = plan.get(tokens.length);
      if (next !== undefined) doSwitch(tokens.length, next);
    }
    const tps = result.timings.decodeMs > 0 ? (1000 * Math.max(1, result.timings.newTokens - 1)) / result.timings.decodeMs : 0;
    ui.stats.textContent = `${tokens.length} tokens · prefill ${result.timings.prefillMs.toFixed(1)} ms · decode ${tps.toFixed(1)} tokens/s`;
    return { tokens, text, adapterPerToken, switches, prefillMs: result.timings.prefillMs, decodeTokensPerSecond: tps };
  } finally {
    // a failed switch between two tokens: end the generation (the model stays busy until then)
    await it?.return(undefined);
    state.busy = false;
    state.abort = null;
    ui.generate.disabled = false;
    ui.stop.disabled = true;
  }
}

ui.generate.addEventListener("click", () => {
  generate({ prompt: ui.prompt.value, maxNewTokens: Number(ui.maxNew.value) || 40, doSample: ui.sample.checked }).catch((e: Error) => {
    if ((e as { code?: string }).code === "ABORTED") setStatus("Stopped.");
    else setStatus(e.message, true);
  });
});
ui.stop.addEventListener("click", () => state.abort?.abort());
ui.pickDir.addEventListener("change", () => {
  if (!ui.pickDir.files?.length) return;
  const p = loadPicked(ui.pickDir.files);
  p.then(
    (info) => pendingPick?.resolve(info),
    (e: Error) => {
      setStatus(e.message, true);
      pendingPick?.reject(e);
    },
  );
});

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
  generate,
  stop: () => state.abort?.abort(),
};
