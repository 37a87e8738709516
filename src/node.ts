/**
 * Node entry: everything from `src/index.ts`, plus file-system support (directory paths for
 * `savePretrained` / `fromPretrained`, file sources for lazy safetensors). Selected by the package's
 * `node` export condition.
 */
import { access } from "node:fs/promises";
import { join } from "node:path";
import { registerFileSystem } from "./io/platform.js";
import { openFileSource, readFileBytes, writeFileBytes } from "./io/node-source.js";

registerFileSystem({
  readFile: readFileBytes,
  writeFile: writeFileBytes,
  openSource: openFileSource,
  join,
  exists: (p) => access(p).then(() => true, () => false),
});

export * from "./index.js";
export { openFileSource, readFileBytes, writeFileBytes } from "./io/node-source.js";
export type { FileReadOptions } from "./io/node-source.js";
