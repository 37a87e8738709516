/**
 * Node.js file access for the safetensors layer: a positional-read {@link ByteSource} over a file handle, and
 * whole-file read/write helpers. This is the only `io/` module that imports `node:*` (keep it out of browser
 * bundles).
 */

import { constants, type Stats } from "node:fs";
import { mkdir, open, stat, writeFile, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import { ShiraError } from "../errors.js";
import { abortError, throwIfAborted } from "./abort.js";
import type { ByteSource } from "./byte-source.js";

/** Options of {@link openFileSource} / {@link readFileBytes}. */
export interface FileReadOptions {
  /** Rejects with `ShiraError("ABORTED")` (before opening, or while reading a whole file). */
  signal?: AbortSignal;
}

function ioError(what: string, path: string, e: unknown): ShiraError {
  const err = e as NodeJS.ErrnoException;
  return new ShiraError("IO", `${what} ${JSON.stringify(path)}: ${err?.message ?? String(e)}`, {
    path,
    errno: err?.code,
  });
}

function kindOf(st: Stats): string {
  if (st.isFIFO()) return "a FIFO (named pipe)";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isDirectory()) return "a directory";
  if (st.isSocket()) return "a socket";
  return "not a regular file";
}

function notRegular(path: string, st: Stats): ShiraError {
  const kind = kindOf(st);
  return new ShiraError("IO", `cannot read ${JSON.stringify(path)}: not a regular file (it is ${kind})`, { path, kind });
}

// O_NONBLOCK: if a FIFO replaces the file between the stat and the open, open() returns at once instead of waiting
// for a writer (the fstat below then refuses it); it changes nothing for regular files
const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);

/**
 * Opens a regular file for reading. FIFOs, devices (`/dev/zero`), directories and sockets are refused with `IO`
 * naming the path, checked with `stat` before opening (so a FIFO never blocks) and `fstat` after.
 */
async function openRegular(path: string): Promise<{ fh: FileHandle; size: number }> {
  let st: Stats;
  try {
    st = await stat(path);
  } catch (e) {
    throw ioError("cannot open", path, e);
  }
  if (!st.isFile()) throw notRegular(path, st);
  let fh: FileHandle;
  try {
    fh = await open(path, OPEN_FLAGS);
  } catch (e) {
    throw ioError("cannot open", path, e);
  }
  try {
    const st2 = await fh.stat();
    if (!st2.isFile()) throw notRegular(path, st2);
    return { fh, size: st2.size };
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw e instanceof ShiraError ? e : ioError("cannot stat", path, e);
  }
}

/**
 * Opens a local file as a {@link ByteSource}: each `read` is a positional read on one `FileHandle` (only the
 * requested bytes are read), `close()` closes the handle. The size is taken when the file is opened. Only regular
 * files open: a FIFO, a device such as `/dev/zero`, a directory or a socket is a `ShiraError("IO")` naming the path.
 *
 * ```ts
 * const file = await openSafetensors(await openFileSource("adapter_model.safetensors"));
 * try { const w = await file.f32("base_model.model.lin0.shira_weight"); } finally { await file.close(); }
 * ```
 */
export async function openFileSource(path: string, opts: FileReadOptions = {}): Promise<ByteSource & { close(): Promise<void> }> {
  throwIfAborted(opts.signal, path);
  const { fh, size } = await openRegular(path);
  if (opts.signal?.aborted) {
    await fh.close().catch(() => undefined);
    throw abortError(opts.signal, path);
  }
  let closed = false;
  return {
    size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      if (closed) throw new ShiraError("IO", `file ${JSON.stringify(path)} is closed`, { path });
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
        throw new ShiraError("IO", `cannot read ${length} bytes at offset ${offset} from ${JSON.stringify(path)} (${size} bytes)`, {
          path,
          offset,
          length,
          size,
        });
      }
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        let n: number;
        try {
          ({ bytesRead: n } = await fh.read(out, done, length - done, offset + done));
        } catch (e) {
          throw ioError("cannot read", path, e);
        }
        if (n === 0) {
          throw new ShiraError("IO", `file ${JSON.stringify(path)} ended at ${offset + done} bytes while reading ${length} bytes at offset ${offset} (was it truncated?)`, {
            path,
            offset,
            length,
          });
        }
        done += n;
      }
      return out;
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await fh.close();
    },
  };
}

/**
 * Reads a whole file into a `Uint8Array` (a plain one, not a Node `Buffer`). Only regular files are read (a FIFO
 * or a device such as `/dev/zero` is a `ShiraError("IO")` naming the path, without blocking or reading endlessly);
 * `signal` aborts the read (`ShiraError("ABORTED")`).
 *
 * ```ts
 * const file = readSafetensors(await readFileBytes("mlp/model.safetensors"));
 * ```
 */
export async function readFileBytes(path: string, opts: FileReadOptions = {}): Promise<Uint8Array> {
  const signal = opts.signal;
  throwIfAborted(signal, path);
  const { fh } = await openRegular(path);
  try {
    const buf = await fh.readFile(signal ? { signal } : {});
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  } catch (e) {
    if (signal?.aborted) throw abortError(signal, path);
    throw ioError("cannot read", path, e);
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/**
 * Writes bytes to a file, creating its parent directories as needed.
 *
 * ```ts
 * await writeFileBytes("out/adapter_model.safetensors", writeSafetensors(tensors, { format: "pt" }));
 * ```
 */
export async function writeFileBytes(path: string, bytes: Uint8Array): Promise<void> {
  try {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, bytes);
  } catch (e) {
    throw ioError("cannot write", path, e);
  }
}
