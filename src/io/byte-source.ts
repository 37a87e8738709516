/**
 * Byte sources: random access to the bytes of a file wherever it lives (memory, a `Blob`/`File`, a URL, or a
 * local file via `node-source.ts`). The lazy safetensors reader (`openSafetensors`) reads through this interface so
 * a large file is never loaded whole. No Node built-ins here (bundled for browsers).
 */

import { ShiraError } from "../errors.js";

/**
 * Random-access bytes of known size. `read(offset, length)` resolves to exactly `length` bytes (the result may
 * share memory with the source; do not modify it). `close` releases the underlying resource, if any.
 *
 * ```ts
 * const src: ByteSource = bytesSource(new Uint8Array([1, 2, 3]));
 * await src.read(1, 2); // Uint8Array [2, 3]
 * ```
 */
export interface ByteSource {
  readonly size: number;
  read(offset: number, length: number): Promise<Uint8Array>;
  close?(): Promise<void>;
}

/** Throws `IO` unless `[offset, offset + length)` lies inside `[0, size)`. */
function checkRange(what: string, size: number, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw new ShiraError("IO", `${what}: cannot read ${length} bytes at offset ${offset} from ${size} bytes`, {
      offset,
      length,
      size,
    });
  }
}

/**
 * A source over bytes already in memory. Reads are zero-copy views (`subarray`).
 *
 * ```ts
 * const file = await openSafetensors(bytesSource(await (await fetch(url)).arrayBuffer()));
 * ```
 */
export function bytesSource(bytes: Uint8Array | ArrayBuffer): ByteSource {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  return {
    size: u8.length,
    read(offset: number, length: number): Promise<Uint8Array> {
      try {
        checkRange("bytesSource", u8.length, offset, length);
      } catch (e) {
        return Promise.reject(e);
      }
      return Promise.resolve(u8.subarray(offset, offset + length));
    },
  };
}

/**
 * A source over a `Blob` (or a browser `File`): each read is `blob.slice(a, b).arrayBuffer()`, so only the
 * requested bytes are loaded.
 *
 * ```ts
 * const file = await openSafetensors(blobSource(input.files[0]));
 * ```
 */
export function blobSource(blob: Blob): ByteSource {
  return {
    size: blob.size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      checkRange("blobSource", blob.size, offset, length);
      if (length === 0) return new Uint8Array(0);
      const buf = await blob.slice(offset, offset + length).arrayBuffer();
      if (buf.byteLength !== length) {
        throw new ShiraError("IO", `blobSource: read ${buf.byteLength} bytes at offset ${offset}, expected ${length}`, {
          offset,
          length,
        });
      }
      return new Uint8Array(buf);
    },
  };
}

/** Total size from `Content-Range: bytes a-b/total` or `bytes *\/total`; null if absent or `*`. */
function contentRangeTotal(h: string | null): number | null {
  if (h === null) return null;
  const m = /^\s*bytes\s+(?:\d+-\d+|\*)\/(\d+)\s*$/i.exec(h);
  if (m === null) return null;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) ? n : null;
}

function withRange(init: RequestInit | undefined, first: number, last: number): RequestInit {
  const headers = new Headers(init?.headers);
  headers.set("Range", `bytes=${first}-${last}`);
  return { ...init, headers };
}

async function doFetch(url: string | URL, init: RequestInit | undefined): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (e) {
    throw new ShiraError("IO", `urlSource: fetching ${String(url)} failed: ${(e as Error)?.message ?? String(e)}`, {
      url: String(url),
    });
  }
}

function httpError(url: string | URL, res: Response): ShiraError {
  return new ShiraError("IO", `urlSource: ${String(url)} answered HTTP ${res.status} ${res.statusText}`.trimEnd(), {
    url: String(url),
    status: res.status,
  });
}

/**
 * A source over a URL, fetched with `fetch(url, init)` (`init` may carry headers such as `Authorization` and an
 * `AbortSignal`).
 *
 * It first requests `Range: bytes=0-0`. If the server answers `206 Partial Content` with the total size in
 * `Content-Range`, every later `read` is one HTTP Range request for exactly those bytes, so only the header and
 * the tensors actually used are downloaded. If the server ignores ranges (answers `200`), the whole body of that
 * first response is kept in memory and reads are served from it (one download, no further requests). A later
 * range request answered with `200` also switches to serving from that full body. HTTP errors and network
 * failures throw `ShiraError` with code `IO`.
 *
 * ```ts
 * const file = await openSafetensors(await urlSource("https://example.com/adapter_model.safetensors"));
 * const w = await file.f32("base_model.model.lin0.shira_weight");
 * ```
 */
export async function urlSource(url: string | URL, init?: RequestInit): Promise<ByteSource> {
  const probe = await doFetch(url, withRange(init, 0, 0));
  if (probe.status === 206) {
    const total = contentRangeTotal(probe.headers.get("content-range"));
    await probe.arrayBuffer(); // drain the one byte
    if (total !== null) return rangeSource(url, init, total);
    // size unknown: fall back to one full download
    const full = await doFetch(url, init);
    if (!full.ok) throw httpError(url, full);
    return bytesSource(new Uint8Array(await full.arrayBuffer()));
  }
  if (probe.status === 416) {
    // Range not satisfiable: an empty resource answers this to bytes=0-0
    await probe.arrayBuffer().catch(() => undefined);
    if (contentRangeTotal(probe.headers.get("content-range")) === 0) return bytesSource(new Uint8Array(0));
    throw httpError(url, probe);
  }
  if (!probe.ok) throw httpError(url, probe);
  return bytesSource(new Uint8Array(await probe.arrayBuffer()));
}

function rangeSource(url: string | URL, init: RequestInit | undefined, size: number): ByteSource {
  let whole: Uint8Array | null = null; // set if the server stops honouring ranges
  return {
    size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      checkRange("urlSource", size, offset, length);
      if (length === 0) return new Uint8Array(0);
      if (whole !== null) return whole.subarray(offset, offset + length);
      const res = await doFetch(url, withRange(init, offset, offset + length - 1));
      if (res.status === 200) {
        const all = new Uint8Array(await res.arrayBuffer());
        if (all.length !== size) {
          throw new ShiraError("IO", `urlSource: ${String(url)} changed size from ${size} to ${all.length} bytes`, {
            url: String(url),
            size,
            newSize: all.length,
          });
        }
        whole = all;
        return all.subarray(offset, offset + length);
      }
      if (res.status !== 206) throw httpError(url, res);
      const body = new Uint8Array(await res.arrayBuffer());
      if (body.length !== length) {
        throw new ShiraError("IO", `urlSource: range request for ${length} bytes at offset ${offset} of ${String(url)} returned ${body.length} bytes`, {
          url: String(url),
          offset,
          length,
          received: body.length,
        });
      }
      return body;
    },
  };
}
