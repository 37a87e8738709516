/**
 * Byte sources: random access to the bytes of a file wherever it lives (memory, a `Blob`/`File`, a URL, or a
 * local file via `node-source.ts`). The lazy safetensors reader (`openSafetensors`) reads through this interface so
 * a large file is never loaded whole. No Node built-ins here (bundled for browsers).
 */

import { ShiraError } from "../errors.js";
import { LoadScope, checkSignalOptions, throwIfAborted, type LoadSignalOptions } from "./abort.js";

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

/** A network error's message with its cause (`fetch failed: connect ECONNREFUSED 127.0.0.1:9`). */
function errorText(e: unknown): string {
  const err = e as { message?: string; cause?: { message?: string; code?: string } };
  const msg = err?.message ?? String(e);
  const cause = err?.cause?.message ?? err?.cause?.code;
  return cause && !msg.includes(cause) ? `${msg}: ${cause}` : msg;
}

/** @internal One HTTP response, its body read completely (or not read, see {@link httpGet}). */
export interface HttpResult {
  readonly url: string;
  readonly status: number;
  readonly statusText: string;
  readonly headers: Headers;
  /** The whole body, or null when `body(status)` said not to read it (the body was cancelled). */
  readonly body: Uint8Array | null;
}

/** @internal Options of {@link httpGet}. */
export interface HttpGetOptions extends LoadSignalOptions {
  /** Names the caller in messages (`urlSource`, `fromPretrained`, ...). */
  what: string;
  /** Extra request options (headers; its `signal` is combined with `signal`). */
  init?: RequestInit;
  /** Inclusive byte range to request (`Range: bytes=a-b`). */
  range?: readonly [number, number];
  /** Whether to read the body for this status (default: 2xx and 416). */
  body?: (status: number) => boolean;
}

/**
 * @internal GETs `url` and reads its body, all within `timeout` ms and under `signal`. Every failure is a
 * `ShiraError` naming the URL: a network error or a body cut short is `IO`; an abort or timeout is `ABORTED`
 * (the pending request is cancelled, so the server sees its connection closed).
 */
export async function httpGet(url: string | URL, opts: HttpGetOptions): Promise<HttpResult> {
  const u = String(url);
  const outer = opts.signal ?? opts.init?.signal ?? undefined;
  const scope = new LoadScope({ signal: outer, timeout: opts.timeout }, opts.what);
  return scope.run(async () => {
    const headers = new Headers(opts.init?.headers);
    if (opts.range) headers.set("Range", `bytes=${opts.range[0]}-${opts.range[1]}`);
    let res: Response;
    try {
      res = await fetch(url, { ...opts.init, headers, signal: scope.signal });
    } catch (e) {
      scope.check(u);
      throw new ShiraError("IO", `${opts.what}: fetching ${u} failed: ${errorText(e)}`, { url: u });
    }
    const base = { url: u, status: res.status, statusText: res.statusText, headers: res.headers };
    const wanted = opts.body ?? ((status: number) => (status >= 200 && status < 300) || status === 416);
    if (!wanted(res.status)) {
      await res.body?.cancel().catch(() => undefined);
      return { ...base, body: null };
    }
    let buf: ArrayBuffer;
    try {
      buf = await res.arrayBuffer();
    } catch (e) {
      scope.check(u);
      throw new ShiraError("IO", `${opts.what}: the response from ${u} broke off before its end (HTTP ${res.status}): ${errorText(e)}`, { url: u, status: res.status });
    }
    const declared = res.headers.get("content-length");
    if (declared !== null && /^\d+$/.test(declared.trim()) && res.headers.get("content-encoding") === null && Number(declared) !== buf.byteLength) {
      throw new ShiraError("IO", `${opts.what}: ${u} declared Content-Length ${declared} but sent ${buf.byteLength} bytes`, {
        url: u,
        status: res.status,
        contentLength: Number(declared),
        received: buf.byteLength,
      });
    }
    return { ...base, body: new Uint8Array(buf) };
  }, u);
}

function httpError(url: string | URL, res: { status: number; statusText: string }): ShiraError {
  return new ShiraError("IO", `urlSource: ${String(url)} answered HTTP ${res.status} ${res.statusText}`.trimEnd(), {
    url: String(url),
    status: res.status,
  });
}

/** Options of {@link urlSource}: `fetch`'s own, plus a time limit per request. */
export interface UrlSourceInit extends RequestInit {
  /**
   * Milliseconds each request (response headers and body) may take; past it the request is cancelled and the
   * read rejects with `ShiraError` code `"ABORTED"`, message `<url>: timed out after N ms`. Default: no limit.
   */
  timeout?: number;
}

/**
 * A source over a URL, fetched with `fetch(url, init)` (`init` may carry headers such as `Authorization`, an
 * `AbortSignal` as `signal`, and a per-request `timeout` in ms).
 *
 * It first requests `Range: bytes=0-0`. If the server answers `206 Partial Content` with the total size in
 * `Content-Range`, every later `read` is one HTTP Range request for exactly those bytes, so only the header and
 * the tensors actually used are downloaded. If the server ignores ranges (answers `200`), the whole body of that
 * first response is kept in memory and reads are served from it (one download, no further requests). A later
 * range request answered with `200` also switches to serving from that full body. HTTP errors, network failures,
 * bodies cut short and answers of the wrong length throw `ShiraError` with code `IO` naming the URL; an abort or
 * timeout throws code `ABORTED` (and cancels the request).
 *
 * ```ts
 * const file = await openSafetensors(await urlSource("https://example.com/adapter_model.safetensors", { timeout: 30_000 }));
 * const w = await file.f32("base_model.model.lin0.shira_weight");
 * ```
 */
export async function urlSource(url: string | URL, init?: UrlSourceInit): Promise<ByteSource> {
  const { timeout, ...req } = init ?? {};
  checkSignalOptions({ signal: req.signal ?? undefined, timeout }, "urlSource");
  throwIfAborted(req.signal ?? undefined);
  const get = (range?: readonly [number, number]) => httpGet(url, { what: "urlSource", init: req, timeout, range });
  const probe = await get([0, 0]);
  if (probe.status === 206) {
    const total = contentRangeTotal(probe.headers.get("content-range"));
    if (total !== null) return rangeSource(url, get, total);
    // size unknown: fall back to one full download
    const full = await get();
    if (full.status < 200 || full.status >= 300) throw httpError(url, full);
    return bytesSource(full.body!);
  }
  if (probe.status === 416) {
    // Range not satisfiable: an empty resource answers this to bytes=0-0
    if (contentRangeTotal(probe.headers.get("content-range")) === 0) return bytesSource(new Uint8Array(0));
    throw httpError(url, probe);
  }
  if (probe.status < 200 || probe.status >= 300) throw httpError(url, probe);
  return bytesSource(probe.body!);
}

function rangeSource(url: string | URL, get: (range?: readonly [number, number]) => Promise<HttpResult>, size: number): ByteSource {
  let whole: Uint8Array | null = null; // set if the server stops honouring ranges
  return {
    size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      checkRange("urlSource", size, offset, length);
      if (length === 0) return new Uint8Array(0);
      if (whole !== null) return whole.subarray(offset, offset + length);
      const res = await get([offset, offset + length - 1]);
      if (res.status === 200) {
        const all = res.body!;
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
      const body = res.body!;
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
