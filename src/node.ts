/**
 * Node entry: everything from `src/index.ts`, plus file-system support (directory paths for
 * `savePretrained` / `fromPretrained`, file sources for lazy safetensors). Selected by the package's
 * `node` export condition.
 */
export * from "./index.js";
