/**
 * Where file-system access comes from. The universal build has none (browsers read `File`/`Blob`/URLs);
 * the Node entry (`src/node.ts`) registers Node's `fs` here, so directory paths work in Node.
 */
import { ShiraError } from "../errors.js";
import type { ByteSource } from "./byte-source.js";

export interface FileSystem {
  /** Reads a regular file whole (refuses FIFOs and devices with `IO`); `signal` aborts with `ABORTED`. */
  readFile(path: string, opts?: { signal?: AbortSignal }): Promise<Uint8Array>;
  writeFile(path: string, bytes: Uint8Array): Promise<void>;
  /** Opens a regular file for positional reads (refuses FIFOs and devices with `IO`). */
  openSource(path: string, opts?: { signal?: AbortSignal }): Promise<ByteSource & { close(): Promise<void> }>;
  join(...parts: string[]): string;
  exists(path: string): Promise<boolean>;
}

let fs: FileSystem | null = null;

/** @internal Called by the Node entry. */
export function registerFileSystem(impl: FileSystem): void {
  fs = impl;
}

/** The registered file system, or a clear error naming what needed it. */
export function fileSystem(what: string): FileSystem {
  if (!fs) {
    throw new ShiraError(
      "IO",
      `${what}: file paths need Node.js (import "shira-wasm" in Node); in a browser pass File/Blob/ArrayBuffer/Uint8Array or a URL, and use saveAdapter() for the bytes`,
    );
  }
  return fs;
}

/** Whether a file system is available (Node). */
export function hasFileSystem(): boolean {
  return fs !== null;
}
