/**
 * shira-wasm: Sparse High Rank Adapters (SHiRA) on a WebAssembly SIMD engine, with PEFT's API.
 *
 * This is the one public entry file; it works in Node and in browsers. (`src/node.ts` adds Node file-system
 * support and re-exports everything here.)
 *
 * ```ts
 * import { init, ShiraConfig, getPeftModel, Linear, Sequential, ReLU, Tensor } from "shira-wasm";
 * await init();
 * ```
 */

// ---------------------------------------------------------------- errors
export { ShiraError, FormatError, ConfigError, ShapeError, StateError, RuntimeError } from "./errors.js";
export type { ErrorCode } from "./errors.js";

// ---------------------------------------------------------------- runtime
export { init, initSync, runtime, createRuntime, Runtime, WasmBuffer, F32Buffer, I32Buffer } from "./runtime/runtime.js";
export type { InitOptions, WasmVariant, Scratch } from "./runtime/runtime.js";
