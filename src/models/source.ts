/**
 * Where a checkpoint folder lives: a local directory (Node), a base URL (Node and browsers, `fetch` with HTTP range
 * reads), or the files themselves (a map of file name → `Blob | ArrayBuffer | Uint8Array`, or a browser `FileList`).
 * Model and tokenizer loaders read through this one interface.
 *
 * ```ts
 * const files = await openCheckpoint("models/SmolLM-135M");                       // Node
 * const files2 = await openCheckpoint("https://example.com/SmolLM-135M/");        // fetch
 * const files3 = await openCheckpoint(input.files);                                // <input type=file webkitdirectory>
 * const config = JSON.parse((await files.text("config.json"))!);
 * ```
 */
import { ShiraError } from "../errors.js";
import { blobSource, bytesSource, urlSource, type ByteSource } from "../io/byte-source.js";
import { fileSystem, hasFileSystem } from "../io/platform.js";

/** File contents accepted in a file map. */
export type CheckpointFile = Blob | ArrayBuffer | Uint8Array;

/** A checkpoint folder: a directory path (Node), a URL, a map of file name → contents, or a list of `File`s. */
export type CheckpointSource = string | URL | Record<string, CheckpointFile> | Map<string, CheckpointFile> | ArrayLike<File>;

/** Read access to the files of a checkpoint folder. */
export interface CheckpointFiles {
  /** Where the files come from (a path, a URL, or `"files"`), for messages. */
  readonly where: string;
  /** The text of a file, or null when the folder has no such file. */
  text(name: string): Promise<string | null>;
  /** Random access to a file's bytes (throws `IO` naming the file when it is missing). Close it when done. */
  open(name: string): Promise<ByteSource>;
}

export interface OpenCheckpointOptions {
  /** Aborts pending reads (URL sources). */
  signal?: AbortSignal;
}

function isUrl(s: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(s) || s.startsWith("blob:") || s.startsWith("data:");
}

function missing(where: string, name: string): ShiraError {
  return new ShiraError("IO", `${where}: the checkpoint has no file "${name}"`, { file: name, where });
}

async function blobText(b: CheckpointFile): Promise<string> {
  if (b instanceof Uint8Array) return new TextDecoder().decode(b);
  if (b instanceof ArrayBuffer) return new TextDecoder().decode(new Uint8Array(b));
  return b.text();
}

function fileSource(b: CheckpointFile): ByteSource {
  if (b instanceof Uint8Array || b instanceof ArrayBuffer) return bytesSource(b);
  return blobSource(b);
}

/** Opens a checkpoint folder for reading (nothing is read yet). */
export async function openCheckpoint(source: CheckpointSource, opts: OpenCheckpointOptions = {}): Promise<CheckpointFiles> {
  const signal = opts.signal;
  // without a file system (browsers), a relative string is a URL relative to the page
  if (typeof source === "string" && !isUrl(source) && !hasFileSystem() && typeof location !== "undefined") source = new URL(source, location.href);
  if (typeof source === "string" && !isUrl(source)) {
    const fs = fileSystem("fromPretrained");
    const dir = source;
    return {
      where: dir,
      async text(name) {
        const p = fs.join(dir, name);
        if (!(await fs.exists(p))) return null;
        return new TextDecoder().decode(await fs.readFile(p));
      },
      async open(name) {
        const p = fs.join(dir, name);
        if (!(await fs.exists(p))) throw missing(dir, name);
        return fs.openSource(p);
      },
    };
  }
  if (typeof source === "string" || source instanceof URL) {
    const base = String(source).replace(/\/+$/, "") + "/";
    return {
      where: base,
      async text(name) {
        let res: Response;
        try {
          res = await fetch(new URL(name, base), { signal });
        } catch (e) {
          if (signal?.aborted) throw abortError(signal);
          throw new ShiraError("IO", `cannot fetch ${base}${name}: ${(e as Error).message}`, { url: base + name });
        }
        if (res.status === 404) {
          await res.arrayBuffer().catch(() => undefined);
          return null;
        }
        if (!res.ok) throw new ShiraError("IO", `cannot fetch ${base}${name}: HTTP ${res.status}`, { url: base + name, status: res.status });
        return res.text();
      },
      async open(name) {
        return urlSource(new URL(name, base), { signal });
      },
    };
  }
  // file maps and FileLists
  const files = new Map<string, CheckpointFile>();
  if (source instanceof Map) for (const [k, v] of source) files.set(k, v);
  else if (typeof (source as ArrayLike<File>).length === "number" && !(source instanceof Uint8Array)) {
    for (const f of Array.from(source as ArrayLike<File>)) files.set((f as File & { webkitRelativePath?: string }).webkitRelativePath || f.name, f);
  } else {
    for (const k of Object.keys(source as Record<string, CheckpointFile>)) files.set(k, (source as Record<string, CheckpointFile>)[k]);
  }
  const find = (name: string): CheckpointFile | undefined => {
    const direct = files.get(name);
    if (direct !== undefined) return direct;
    for (const [k, v] of files) if (k.endsWith("/" + name)) return v;
    return undefined;
  };
  return {
    where: "files",
    async text(name) {
      const f = find(name);
      return f === undefined ? null : blobText(f);
    },
    async open(name) {
      const f = find(name);
      if (f === undefined) throw missing("files", name);
      return fileSource(f);
    },
  };
}

/** The error thrown when a load is aborted through its `signal`. */
export function abortError(signal: AbortSignal): ShiraError {
  const reason = signal.reason;
  return new ShiraError("ABORTED", `aborted${reason instanceof Error ? `: ${reason.message}` : reason !== undefined ? `: ${String(reason)}` : ""}`);
}

/** Throws {@link abortError} when `signal` is aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}
