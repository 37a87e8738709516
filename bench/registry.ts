// The benchmark registry: `npm run bench -- <name>` and `shira bench <name>` run these. Each module exports
// `run(opts)`, prints its table, writes <results dir>/<name>.json, and returns its rows.
//
// Peers a benchmark cannot run without (devDependencies, absent from an installed package) are listed in PEERS and
// checked before the module is loaded; the modules import them inside run(), never at the top (the `shira` bundle
// contains every benchmark module, and one static import of a missing package would stop every `shira` command).
import { MissingPackageError, requirePackage } from "../src/cli/packages.js";
import { setResultsDir } from "./common.js";
import { runtime } from "../src/node.js";

export interface BenchOptions {
  /** Fewer repetitions / smaller cases where the benchmark supports it. */
  quick?: boolean;
  /** Suppress human output (the caller prints JSON). */
  json?: boolean;
  /** Where human-readable progress goes. */
  log?: (line: string) => void;
  /** Where results (<name>.json, .md, .svg) are written; bench/run.ts passes bench/results, `shira bench` ./bench-results. */
  outDir?: string;
}

export interface BenchModule {
  run(opts: BenchOptions): Promise<unknown>;
}

const LOADERS: Record<string, () => Promise<BenchModule>> = {
  switch: () => import("./switch.js"),
  kernels: () => import("./kernels.js"),
  train: () => import("./train.js"),
  model: () => import("./model.js"),
  lm: () => import("./lm.js"),
  half: () => import("./half.js"),
};

/** Packages a benchmark needs (lm's wllama peer is optional: its rows say when it could not run). */
export const PEERS: Record<string, string[]> = {
  kernels: ["onnxruntime-web"],
};

export const BENCH_NAMES = Object.keys(LOADERS);

export { MissingPackageError };

/** Throws `MissingPackageError` (`bench <name>: needs the package ...`) for the first missing peer of `names`. */
export function checkPeers(names: string[]): void {
  for (const n of names) for (const pkg of PEERS[n] ?? []) requirePackage(`bench ${n}`, pkg);
}

/** Runs the named benchmarks in order; returns `{ name: result }`. Checks every peer before running any. */
export async function runBenchmarks(names: string[], opts: BenchOptions = {}): Promise<Record<string, unknown>> {
  for (const n of names) if (!LOADERS[n]) throw new Error(`unknown benchmark "${n}" (${BENCH_NAMES.join(", ")})`);
  checkPeers(names);
  if (opts.outDir) setResultsDir(opts.outDir);
  const out: Record<string, unknown> = {};
  for (const n of names) {
    // every benchmark starts on one thread; the rows that measure threads set them (their `threads` column)
    runtime().setThreads(1);
    out[n] = await (await LOADERS[n]()).run(opts);
  }
  return out;
}
