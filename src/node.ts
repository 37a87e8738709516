/**
 * Node entry: everything from `src/index.ts`, plus file-system support (directory paths for
 * `savePretrained` / `fromPretrained`, file sources for lazy safetensors) and worker threads (`worker_threads`). Selected by the package's
 * `node` export condition.
 */
import { access } from "node:fs/promises";
import { join } from "node:path";
import { registerFileSystem } from "./io/platform.js";
import { openFileSource, readFileBytes, writeFileBytes } from "./io/node-source.js";
import { nodeThreadHost } from "./runtime/node-threads.js";
import { registerThreadHost } from "./runtime/threads.js";

registerFileSystem({
  readFile: readFileBytes,
  writeFile: writeFileBytes,
  openSource: openFileSource,
  join,
  exists: (p) => access(p).then(() => true, () => false),
});
registerThreadHost(nodeThreadHost);

export * from "./index.js";
export { openFileSource, readFileBytes, writeFileBytes } from "./io/node-source.js";
export type { FileReadOptions } from "./io/node-source.js";
