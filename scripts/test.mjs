// `npm test`: build what is missing, then run the as-pect kernel specs and the node:test suites (at 1 and 2 threads).
//   node scripts/test.mjs                 everything
//   node scripts/test.mjs tests/foo.test.ts   only these node:test files (after the build)
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const files = process.argv.slice(2);
function run(cmd, args, extraEnv = {}) {
  console.log(`\n$ ${cmd} ${args.join(" ")}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: "inherit", env: { ...process.env, ...extraEnv } });
  return r.status ?? 1;
}

let failed = 0;
if (run(process.execPath, ["scripts/build.mjs", "--if-missing"]) !== 0) process.exit(1);
if (files.length === 0) {
  if (run(process.execPath, [join(root, "node_modules/@as-pect/cli/bin/asp.js"), "--config", "as-pect.config.js", "--summary"]) !== 0) {
    console.error("as-pect: kernel specs FAILED");
    failed++;
  }
}
const suites = files.length ? files : readdirSync(join(root, "tests")).filter((f) => f.endsWith(".test.ts")).sort().map((f) => join("tests", f));
// Every suite runs twice: on one thread, and on two threads with every kernel call that can be split split over
// them (SHIRA_PARALLEL_MIN_WORK=0; results must not depend on the thread count). SHIRA_THREADS set by the caller
// runs one pass with that count instead.
const passes = process.env.SHIRA_THREADS
  ? [{ label: `SHIRA_THREADS=${process.env.SHIRA_THREADS}`, env: {} }]
  : [
      { label: "1 thread", env: { SHIRA_THREADS: "1" } },
      { label: "2 threads, every splittable kernel call split", env: { SHIRA_THREADS: "2", SHIRA_PARALLEL_MIN_WORK: "0" } },
    ];
for (const pass of passes) {
  console.log(`\n# node:test suites, ${pass.label}`);
  if (run(process.execPath, ["--import", "tsx", "--test", "--test-concurrency=1", ...suites], pass.env) !== 0) {
    console.error(`node:test suites FAILED (${pass.label})`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
