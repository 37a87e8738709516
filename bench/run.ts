// Benchmark dispatcher:
//
//   node --import tsx bench/run.ts kernels          one benchmark (bench/kernels.ts)
//   node --import tsx bench/run.ts kernels switch   several, in order
//   node --import tsx bench/run.ts all              every registered one
//   ... --quick                                     fewer repetitions / smaller cases
//
// Benchmarks are registered in bench/registry.ts (one line each: `name: () => import("./name.js")`); each
// module exports `run(opts)`, prints its table and writes bench/results/<name>.json (passed explicitly: `shira bench`
// writes to ./bench-results instead).
import { REPO_RESULTS_DIR } from "./common.js";
import { BENCH_NAMES, MissingPackageError, runBenchmarks } from "./registry.js";

const args = process.argv.slice(2);
const quick = args.includes("--quick");
const json = args.includes("--json");
let names = args.filter((a) => !a.startsWith("--"));
if (names.length === 0 || names.includes("help")) {
  console.log(`usage: node --import tsx bench/run.ts <${BENCH_NAMES.join("|")}|all>... [--quick] [--json]`);
  process.exit(names.length === 0 ? 2 : 0);
}
if (names.includes("all")) names = BENCH_NAMES;

const unknown = names.filter((n) => !BENCH_NAMES.includes(n));
if (unknown.length) {
  console.error(`unknown benchmark(s): ${unknown.join(", ")} (known: ${BENCH_NAMES.join(", ")}, all)`);
  process.exit(2);
}

const results: Record<string, unknown> = {};
for (const name of names) {
  try {
    Object.assign(results, await runBenchmarks([name], { quick, json, outDir: REPO_RESULTS_DIR }));
  } catch (e) {
    if (e instanceof MissingPackageError) {
      console.error(`${e.what}: ${e.message}`);
      process.exit(1);
    }
    // `all` tolerates a registered benchmark whose module is not written yet; a named one must exist.
    const missing = (e as NodeJS.ErrnoException).code === "ERR_MODULE_NOT_FOUND" && String((e as Error).message).includes(`bench/${name}.`);
    if (missing && args.includes("all")) {
      console.error(`bench: skipping "${name}" (bench/${name}.ts is not present)`);
      continue;
    }
    throw e;
  }
}
if (json) console.log(JSON.stringify(results, null, 2));
