/**
 * The test hook the language-model page puts on `window.shiraLM` (types only; shared by the page and the tests).
 *
 * ```ts
 * const info = await window.shiraLM.ready;                 // { modelType, adapters, ... }
 * const r = await window.shiraLM.generate({ prompt: "Hello", maxNewTokens: 20, switchAt: [[5, "poetry"]] });
 * r.tokens;       // the generated ids
 * window.shiraLM.select("base");                           // fused switch (also allowed while generating)
 * ```
 */
export interface LmReadyInfo {
  source: "data" | "url" | "files";
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
  /** `[k, name]`: fuse adapter `name` (or "base") before generated token k (0 = before the first). */
  switchAt?: [number, string][];
  doSample?: boolean;
  temperature?: number;
  seed?: number;
}

export interface LmGenerateResult {
  tokens: number[];
  text: string;
  /** Adapter in effect for each generated token. */
  adapterPerToken: string[];
  switches: { atToken: number; adapter: string; ms: number }[];
  prefillMs: number;
  decodeTokensPerSecond: number;
}

export interface ShiraLM {
  ready: Promise<LmReadyInfo>;
  readonly adapters: string[];
  /** The fused adapter ("base" for none). */
  readonly active: string;
  /** Fused switch (`peft.switchTo` / `switchToBase`); returns the ms. Allowed while a generation runs. */
  select(name: string): number;
  generate(req: LmGenerateRequest): Promise<LmGenerateResult>;
  /** Stops a running generation within one token. */
  stop(): void;
}
