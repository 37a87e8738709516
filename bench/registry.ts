// The benchmark registry: `npm run bench -- <name>` and `shira bench <name>` run these. Each module exports
// `run(opts)`, prints its table, writes bench/results/<name>.json, and returns its rows.
export interface BenchOptions {
  /** Fewer repetitions / smaller cases where the benchmark supports it. */
  quick?: boolean;
  /** Suppress human output (the caller prints JSON). */
  json?: boolean;
  /** Where human-readable progress goes. */
  log?: (line: string) => void;
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
};

export const BENCH_NAMES = Object.keys(LOADERS);

/** Runs the named benchmarks in order; returns `{ name: result }`. */
export async function runBenchmarks(names: string[], opts: BenchOptions = {}): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const n of names) {
    const load = LOADERS[n];
    if (!load) throw new Error(`unknown benchmark "${n}" (${BENCH_NAMES.join(", ")})`);
    out[n] = await (await load()).run(opts);
  }
  return out;
}
