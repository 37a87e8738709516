/**
 * The test hook the example page puts on `window.shiraDemo` (types only; shared by the page and the tests).
 *
 * ```ts
 * const info = await window.shiraDemo.ready;          // { source: "data" | "files", adapters: [...] }
 * window.shiraDemo.select("rot90");                    // fused switch, returns the measured ms
 * const p = window.shiraDemo.predict(pixels);          // 10 probabilities (softmax of the logits, float64)
 * window.shiraDemo.fuse([{ name: "rot90", weight: 0.5 }, { name: "invert", weight: 1 }]);
 * window.shiraDemo.select(null);                       // back to the base model
 * ```
 */

/** What the model currently computes. */
export type DemoMode = { kind: "base" } | { kind: "adapter"; name: string } | { kind: "fused"; entries: { name: string; weight: number }[] };

export interface DemoReadyInfo {
  source: "data" | "files";
  adapters: string[];
  /** The model's layer widths, e.g. [784, 256, 128, 10]. */
  sizes: number[];
  /** The wasm build in use ("simd" or "relaxed-simd"). */
  variant: string;
  /** Time to load model and adapters, ms. */
  loadMs: number;
}

export interface ShiraDemo {
  /** Resolves when a model (and its adapters) is loaded, from `data/` or from picked files; rejects on a load error. */
  ready: Promise<DemoReadyInfo>;
  /** Adapter names in button order. */
  readonly adapters: string[];
  /** The current mode. */
  readonly mode: DemoMode;
  /** The last measured switch / fuse time in ms (`performance.now()` around the library call), or null. */
  readonly lastSwitchMs: number | null;
  /** Class probabilities of the current model for 784 pixels in [0, 1] (row-major 28×28). Does not touch the UI. */
  predict(pixels: ArrayLike<number>): number[];
  /** Logits of the current model (before the softmax). */
  logits(pixels: ArrayLike<number>): number[];
  /** Fused switch to an adapter (`peft.switchTo`), or to the base model with `null`/"base"; returns the ms. */
  select(name: string | null): number;
  /** Multi-adapter fusion (`peft.fuse`) of the entries with a non-zero weight (none: base); returns the ms. */
  fuse(entries: { name: string; weight: number }[]): number;
  /** Loads picked/dropped files (model.json + model.safetensors and/or adapter files with folder paths). */
  loadFiles(files: { path: string; file: File }[]): Promise<DemoReadyInfo>;
  /** An adapter's two PEFT files (`peft.saveAdapter(name)`). */
  saveAdapter(name: string): { "adapter_config.json": string; "adapter_model.safetensors": Uint8Array };
  /** The pixels currently on the drawing pad. */
  pixels(): number[];
  /** Puts pixels on the drawing pad (and predicts). */
  setPixels(pixels: ArrayLike<number>): void;
}
