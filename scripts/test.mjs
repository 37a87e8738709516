// `npm test`: build what is missing, then run the as-pect kernel specs and the node:test suites.
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
if (run(process.execPath, ["--import", "tsx", "--test", "--test-concurrency=1", ...suites]) !== 0) {
  console.error("node:test suites FAILED");
  failed++;
}
process.exit(failed ? 1 : 0);
