/**
 * The test hook the language-model page puts on `window.shiraLM` (types only; shared by the page and the tests).
 *
 * ```ts
 * const info = await window.shiraLM.ready;                 // { kind: "demo", genres, adapters, ... }
 * const r = await window.shiraLM.generate({ prompt: "The", maxNewTokens: 24, doSample: true, seed: 7,
 *                                           switchAt: [[6, "religion"], [14, [{ name: "news", weight: 1 }, { name: "humor", weight: 0.5 }]]] });
 * r.tokens; r.segments;                                    // the generated ids; the text per adapter run
 * window.shiraLM.select("base");                           // fused switch (also allowed while generating)
 * window.shiraLM.fuse([{ name: "news", weight: 1 }]);      // the sliders' mix
 * ```
 */

/** One adapter of a mix (PEFT's `fuse` entry). */
export interface MixEntry {
  name: string;
  weight: number;
}

export interface LmReadyInfo {
  /** Where the files came from: the served `data/` folder, a `?model=` / `?demo=` URL, or a picked folder. */
  source: "data" | "url" | "files";
  /** A `shira demo` output folder (genres from results.json) or a plain checkpoint folder with adapters. */
  kind: "demo" | "checkpoint";
  /** The adapters' method: SHiRA, or LoRA (a demo folder's `adapters/lora/`). */
  method: "shira" | "lora";
  /** The demo's genres (`results.json` `settings.genres`); empty for a checkpoint folder. */
  genres: string[];
  modelType: string;
  layers: number;
  parameters: number;
  adapters: string[];
  hasTokenizer: boolean;
  variant: string;
  loadMs: number;
}

export interface LmGenerateRequest {
  /** Text (needs a tokenizer.json in the folder) or token ids. */
  prompt?: string;
  ids?: number[];
  maxNewTokens?: number;
  /**
   * `[k, adapter]`: before generated token k (0 = before the first), fuse adapter `name` (or "base"), or a mix
   * (`fuse` of the entries with a non-zero weight; none = base).
   */
  switchAt?: [number, string | MixEntry[]][];
  doSample?: boolean;
  /** Sampling settings (with `doSample`): temperature 0.8, top-k 40, no top-p, seed 7 unless given. */
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  /** Do not stop at the end-of-sequence token (for tests that need exactly `maxNewTokens` tokens). */
  ignoreEos?: boolean;
}

/** One switch or fuse measured by the page (`performance.now()` around the library call). */
export interface SwitchRecord {
  /** Generated tokens before it took effect (-1: outside a generation). */
  atToken: number;
  /** "base", an adapter name, or a mix label such as "news 1 + religion 0.5". */
  adapter: string;
  ms: number;
}

export interface LmGenerateResult {
  tokens: number[];
  text: string;
  /** Adapter (label) in effect for each generated token. */
  adapterPerToken: string[];
  /** The text of each run of tokens under one adapter, as shown. */
  segments: { adapter: string; text: string }[];
  switches: SwitchRecord[];
  stoppedBy: "eos" | "maxNewTokens" | "stopString";
  prefillMs: number;
  decodeTokensPerSecond: number;
  /** The sampling settings used (null: greedy). */
  sampling: { temperature: number; topK: number; topP: number; seed: number } | null;
}

export interface ShiraLM {
  ready: Promise<LmReadyInfo>;
  readonly adapters: string[];
  /** The fused adapter or mix label ("base" for none). */
  readonly active: string;
  /** Fused switch (`peft.switchTo` / `switchToBase`); returns the ms. Allowed while a generation runs. */
  select(name: string): number;
  /** `peft.fuse` of the entries with a non-zero weight (all zero: the base model); sets the sliders; returns the ms. */
  fuse(entries: MixEntry[]): number;
  generate(req: LmGenerateRequest): Promise<LmGenerateResult>;
  /** Stops a running generation within one token (its promise rejects with ABORTED). */
  stop(): void;
  /** Generated tokens of the running generation so far (null when none runs). */
  readonly progress: { tokens: number } | null;
  /** The result of the last finished generation (started by the hook or the Generate button). */
  readonly last: LmGenerateResult | null;
  /** The recent switches and fuses, newest first (what the page lists). */
  readonly switchLog: SwitchRecord[];
  /** A demo folder: reloads the model with the SHiRA or the LoRA adapters. */
  setMethod(method: "shira" | "lora"): Promise<LmReadyInfo>;
}
