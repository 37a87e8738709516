/**
 * Cancellation for every async loader: an `AbortSignal` (`signal`) and a time limit in milliseconds (`timeout`).
 * Both reject with `ShiraError` code `"ABORTED"`; a timeout's message reads `timed out after N ms` and its
 * `details` are `{ reason: "timeout", timeout: N }` (a user abort's are `{ reason: "abort" }`). No Node built-ins
 * here (bundled for browsers).
 *
 * ```ts
 * const ac = new AbortController();
 * const lm = await AutoModelForCausalLM.fromPretrained(url, { signal: ac.signal, timeout: 120_000 });
 * ```
 */
import { ConfigError, ShiraError } from "../errors.js";

/** `signal` and `timeout` of a load (`openCheckpoint`, `fromPretrained`, `urlSource`, `readAdapterFiles`, ...). */
export interface LoadSignalOptions {
  /** Aborts the load: pending requests are cancelled, files closed, and what was allocated is freed. */
  signal?: AbortSignal;
  /**
   * Gives up after this many milliseconds (a positive number; default: no limit). Rejects with `ShiraError`
   * code `"ABORTED"`, message `... timed out after N ms`, `details.reason === "timeout"`. In Node, `fetch` also
   * gives up by itself on a server that sends no response headers for 300 s.
   */
  timeout?: number;
}

/** The abort reason a timeout sets (recognised by {@link abortError}). */
export class TimeoutReason extends Error {
  readonly timeout: number;
  constructor(timeout: number) {
    super(`timed out after ${timeout} ms`);
    this.name = "TimeoutError";
    this.timeout = timeout;
  }
}

/** The error a load rejects with once `signal` is aborted; `where` (a path or URL) prefixes the message. */
export function abortError(signal: AbortSignal, where?: string): ShiraError {
  const reason: unknown = signal.reason;
  const prefix = where ? `${where}: ` : "";
  if (reason instanceof TimeoutReason) {
    return new ShiraError("ABORTED", `${prefix}timed out after ${reason.timeout} ms`, { reason: "timeout", timeout: reason.timeout, ...(where ? { where } : {}) });
  }
  const why = reason instanceof Error ? `: ${reason.message}` : reason !== undefined ? `: ${String(reason)}` : "";
  return new ShiraError("ABORTED", `${prefix}aborted${why}`, { reason: "abort", ...(where ? { where } : {}) });
}

/** Throws {@link abortError} when `signal` is aborted. */
export function throwIfAborted(signal: AbortSignal | undefined, where?: string): void {
  if (signal?.aborted) throw abortError(signal, where);
}

/** Throws `CONFIG_INVALID` unless `opts.timeout` is undefined or a positive number and `opts.signal` an AbortSignal. */
export function checkSignalOptions(opts: LoadSignalOptions, what: string): void {
  const t = opts.timeout;
  if (t !== undefined && (typeof t !== "number" || !(t > 0))) {
    throw new ConfigError("CONFIG_INVALID", `${what}: timeout must be a positive number of milliseconds, got ${typeof t === "number" ? t : typeof t}`, { argument: "timeout", value: t });
  }
  const s = opts.signal;
  if (s !== undefined && s !== null && (typeof s !== "object" || typeof (s as AbortSignal).aborted !== "boolean")) {
    throw new ConfigError("CONFIG_INVALID", `${what}: signal must be an AbortSignal`, { argument: "signal" });
  }
}

/**
 * One signal for a whole load: aborts when the caller's `signal` does, when `timeout` ms have passed, or when the
 * load itself calls {@link LoadScope.cancel} (to stop the requests still pending after one failed). Call
 * {@link LoadScope.close} when the load ends (it stops the timer and unhooks the caller's signal).
 */
export class LoadScope {
  readonly signal: AbortSignal;
  #ctl = new AbortController();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #outer: AbortSignal | undefined;
  #onAbort = (): void => this.#ctl.abort(this.#outer!.reason);

  /** Validates the options (`CONFIG_INVALID`) and throws {@link abortError} if `signal` is already aborted. */
  constructor(opts: LoadSignalOptions, what: string, opt: { unrefTimer?: boolean } = {}) {
    checkSignalOptions(opts, what);
    this.signal = this.#ctl.signal;
    const outer = opts.signal ?? undefined;
    if (outer) {
      if (outer.aborted) throw abortError(outer);
      this.#outer = outer;
      outer.addEventListener("abort", this.#onAbort, { once: true });
    }
    if (opts.timeout !== undefined && Number.isFinite(opts.timeout)) {
      const ms = opts.timeout;
      this.#timer = setTimeout(() => this.#ctl.abort(new TimeoutReason(ms)), ms);
      if (opt.unrefTimer) (this.#timer as { unref?: () => void }).unref?.();
    }
  }

  get aborted(): boolean {
    return this.signal.aborted;
  }

  /** Throws {@link abortError} if aborted. */
  check(where?: string): void {
    throwIfAborted(this.signal, where);
  }

  /** Aborts whatever still runs under this scope (a no-op once aborted). */
  cancel(reason: unknown = new Error("the load failed")): void {
    if (!this.signal.aborted) this.#ctl.abort(reason);
  }

  /** Stops the timer and unhooks the caller's signal. */
  close(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#outer?.removeEventListener("abort", this.#onAbort);
    this.#outer = undefined;
  }

  /**
   * Runs `body` under the scope: on failure pending work is cancelled, and if the scope was aborted the error
   * becomes {@link abortError} (a fetch rejected by the abort is reported as the abort, not as a network error).
   */
  async run<T>(body: (scope: LoadScope) => Promise<T>, where?: string): Promise<T> {
    try {
      return await body(this);
    } catch (e) {
      const aborted = this.signal.aborted;
      this.cancel();
      if (aborted && !(e instanceof ShiraError && e.code === "ABORTED")) throw abortError(this.signal, where);
      throw e;
    } finally {
      this.close();
    }
  }
}
