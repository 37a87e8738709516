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
import { ConfigError, ShiraError } from "../errors.js";
import { LoadScope, checkSignalOptions, throwIfAborted, type LoadSignalOptions } from "../io/abort.js";
import { blobSource, bytesSource, httpGet, urlSource, type ByteSource } from "../io/byte-source.js";
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

/**
 * Options of {@link openCheckpoint}. `signal` aborts every read made through the returned object (pending HTTP
 * requests are cancelled); `timeout` (ms, default none) counts from the `openCheckpoint` call and covers every
 * read made through it. Both reject with `ShiraError` code `"ABORTED"` (a timeout: `... timed out after N ms`).
 */
export interface OpenCheckpointOptions extends LoadSignalOptions {}

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

/**
 * Opens a checkpoint folder for reading (nothing is read yet). Only regular files are read from a directory (a
 * FIFO or a device is `ShiraError("IO")` naming the path); HTTP errors, refused connections and bodies cut short
 * are `ShiraError("IO")` naming the URL.
 */
export async function openCheckpoint(source: CheckpointSource, opts: OpenCheckpointOptions = {}): Promise<CheckpointFiles> {
  if (opts === null || typeof opts !== "object") throw new ConfigError("CONFIG_INVALID", `openCheckpoint: opts must be an object, got ${opts === null ? "null" : typeof opts}`, { argument: "opts" });
  // a timeout runs from now for every read through the result; its timer does not keep a process alive
  checkSignalOptions(opts, "openCheckpoint");
  throwIfAborted(opts.signal);
  const signal = opts.timeout === undefined ? opts.signal : new LoadScope(opts, "openCheckpoint", { unrefTimer: true }).signal;
  // without a file system (browsers), a relative string is a URL relative to the page
  if (typeof source === "string" && !isUrl(source) && !hasFileSystem() && typeof location !== "undefined") source = new URL(source, location.href);
  if (typeof source === "string" && !isUrl(source)) {
    const fs = fileSystem("fromPretrained");
    const dir = source;
    return {
      where: dir,
      async text(name) {
        const p = fs.join(dir, name);
        throwIfAborted(signal, p);
        if (!(await fs.exists(p))) return null;
        return new TextDecoder().decode(await fs.readFile(p, { signal }));
      },
      async open(name) {
        const p = fs.join(dir, name);
        throwIfAborted(signal, p);
        if (!(await fs.exists(p))) throw missing(dir, name);
        return fs.openSource(p, { signal });
      },
    };
  }
  if (typeof source === "string" || source instanceof URL) {
    const base = String(source).replace(/\/+$/, "") + "/";
    return {
      where: base,
      async text(name) {
        const url = new URL(name, base);
        const res = await httpGet(url, { what: "openCheckpoint", signal, body: (s) => s >= 200 && s < 300 });
        if (res.status === 404) return null;
        if (res.body === null) throw new ShiraError("IO", `cannot fetch ${String(url)}: HTTP ${res.status} ${res.statusText}`.trimEnd(), { url: String(url), status: res.status });
        return new TextDecoder().decode(res.body);
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
      throwIfAborted(signal);
      const f = find(name);
      return f === undefined ? null : blobText(f);
    },
    async open(name) {
      throwIfAborted(signal);
      const f = find(name);
      if (f === undefined) throw missing("files", name);
      return fileSource(f);
    },
  };
}

// the abort helpers moved to io/abort.ts; re-exported for existing imports
