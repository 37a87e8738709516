// The built package as users get it: `require("shira-wasm")` and `import "shira-wasm"` resolve through the exports
// map to the Node bundles (self-reference), run a forward, and the declarations exist.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const snippet = (m: string) =>
  `const rt = ${m}.initSync(); const lin = new ${m}.Linear(2, 1, { bias: false }); lin.weight.data.set([2, 3]);` +
  ` const y = lin.forward(${m}.Tensor.from([1, 10], [1, 2])); console.log(JSON.stringify({ variant: rt.variant, y: Array.from(y.toArray()), peft: typeof ${m}.PeftModel.fromPretrained }));`;

function runNode(args: string[]) {
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split("\n").pop()!);
}

test("require('shira-wasm') (CJS) and import('shira-wasm') (ESM) work and agree", () => {
  const cjs = runNode(["-e", `const m = require("shira-wasm"); ${snippet("m")}`]);
  const esm = runNode(["--input-type=module", "-e", `import * as m from "shira-wasm"; ${snippet("m")}`]);
  for (const r of [cjs, esm]) {
    assert.deepEqual(r.y, [32]);
    assert.equal(r.peft, "function");
    assert.equal(r.variant, "simd");
  }
});

test("package.json points at files that exist: exports, bin, types", () => {
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  const e = pkg.exports["."];
  for (const f of [e.types, e.browser, e.node.import, e.node.require, e.import, e.require, pkg.bin.shira, pkg.main, pkg.module, pkg.types]) {
    assert.ok(existsSync(join(root, f)), f);
  }
  assert.match(readFileSync(join(root, e.types), "utf8"), /export \{[^}]*ShiraConfig/);
  assert.match(readFileSync(join(root, pkg.bin.shira), "utf8"), /^#!\/usr\/bin\/env node/);
});
