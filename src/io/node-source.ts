/**
 * Node.js file access for the safetensors layer: a positional-read {@link ByteSource} over a file handle, and
 * whole-file read/write helpers. This is the only `io/` module that imports `node:*` (keep it out of browser
 * bundles).
 */

import { mkdir, open, readFile, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { ShiraError } from "../errors.js";
import type { ByteSource } from "./byte-source.js";

function ioError(what: string, path: string, e: unknown): ShiraError {
  const err = e as NodeJS.ErrnoException;
  return new ShiraError("IO", `${what} ${JSON.stringify(path)}: ${err?.message ?? String(e)}`, {
    path,
    errno: err?.code,
  });
}

/**
 * Opens a local file as a {@link ByteSource}: each `read` is a positional read on one `FileHandle` (only the
 * requested bytes are read), `close()` closes the handle. The size is taken when the file is opened.
 *
 * ```ts
 * const file = await openSafetensors(await openFileSource("adapter_model.safetensors"));
 * try { const w = await file.f32("base_model.model.lin0.shira_weight"); } finally { await file.close(); }
 * ```
 */
export async function openFileSource(path: string): Promise<ByteSource & { close(): Promise<void> }> {
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(path, "r");
  } catch (e) {
    throw ioError("cannot open", path, e);
  }
  let size: number;
  try {
    size = (await fh.stat()).size;
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw ioError("cannot stat", path, e);
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
 * Reads a whole file into a `Uint8Array` (a plain one, not a Node `Buffer`).
 *
 * ```ts
 * const file = readSafetensors(await readFileBytes("mlp/model.safetensors"));
 * ```
 */
export async function readFileBytes(path: string): Promise<Uint8Array> {
  try {
    const buf = await readFile(path);
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  } catch (e) {
    throw ioError("cannot read", path, e);
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
