/**
 * The concurrency guards shared by the adapter models (`ShiraModel`, `LoraModel`): while an operation runs on the
 * adapter model (`train()`), or a generation runs on the model it wraps, changes that would break it are refused
 * with `StateError` code `BUSY` (see "Concurrency" in docs/errors.md).
 */
import { StateError } from "../errors.js";

/** Throws `BUSY` when `busy` names an operation running on this adapter model (`"train"`). */
export function refuseWhileRunning(what: string, busy: string | null): void {
  if (busy !== null) {
    throw new StateError("BUSY", `${what}: not allowed while ${busy}() runs on this model; wait for it to finish or abort it with its signal`, { operation: what, busy });
  }
}

/** Throws `BUSY` when the wrapped model reports a running generation (`model.busy`, duck-typed: adapters do not import models). */
export function refuseWhileGenerating(model: object, what: string, why: string): void {
  const b = (model as { busy?: unknown }).busy;
  if (typeof b === "string" && b) {
    throw new StateError("BUSY", `${what}: not allowed while ${b}() runs on the model (${why}); switch adapters instead, or wait for the generation to end`, { operation: what, busy: b });
  }
}

/**
 * Runs `fn` and then `done`: right after it returns, after it throws (rethrown), or when the promise it returns
 * settles. The exit of a scope such as `disableAdapters(fn)`, shared by both adapter models.
 */
export function runScope<R>(fn: () => R, done: () => void): R {
  let r: R;
  try {
    r = fn();
  } catch (e) {
    done();
    throw e;
  }
  if (r instanceof Promise) return r.finally(done) as R;
  done();
  return r;
}
