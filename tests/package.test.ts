// The built package as users get it: `require("shira-wasm")` and `import "shira-wasm"` resolve through the exports
// map to the Node bundles (self-reference), run a forward and keep class names (esbuild keepNames), and the exports
// map has types for each condition (.d.ts for import, .d.cts for require). tests/package-install.test.ts packs and
// installs the tarball and checks it from a separate project (type checking, CLI, saved adapter files).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const snippet = (m: string) =>
  `const rt = ${m}.initSync(); const lin = new ${m}.Linear(2, 1, { bias: false }); lin.weight.data.set([2, 3]);` +
  ` const y = lin.forward(${m}.Tensor.from([1, 10], [1, 2])); console.log(JSON.stringify({ variant: rt.variant, y: Array.from(y.toArray()), peft: typeof ${m}.PeftModel.fromPretrained,` +
  ` names: [${m}.Sequential.name, ${m}.Linear.name, ${m}.PeftModel.name, new ${m}.Sequential().constructor.name] }));`;

function runNode(args: string[]) {
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split("\n").pop()!);
}

test("require('shira-wasm') (CJS) and import('shira-wasm') (ESM) work and agree; the browser bundle keeps names too", () => {
  const cjs = runNode(["-e", `const m = require("shira-wasm"); ${snippet("m")}`]);
  const esm = runNode(["--input-type=module", "-e", `import * as m from "shira-wasm"; ${snippet("m")}`]);
  const browser = runNode(["--input-type=module", "-e", `import * as m from "./dist/browser.js"; ${snippet("m")}`]);
  for (const r of [cjs, esm, browser]) {
    assert.deepEqual(r.y, [32]);
    assert.equal(r.peft, "function");
    assert.equal(r.variant, "simd");
    // constructor.name is saved as auto_mapping.base_model_class and used in messages: no bundler renames (_Sequential)
    assert.deepEqual(r.names, ["Sequential", "Linear", "ShiraModel", "Sequential"]);
  }
});

test("package.json points at files that exist: exports (types per condition), bin, main, module, types", () => {
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  const e = pkg.exports["."];
  // every condition is { types, default }, types first; import -> .d.ts, require -> .d.cts (TS1479 otherwise)
  const branches: [string, { types: string; default: string }][] = [
    ["browser", e.browser], ["node.import", e.node.import], ["node.require", e.node.require], ["import", e.import], ["require", e.require],
  ];
  for (const [cond, b] of branches) {
    assert.deepEqual(Object.keys(b), ["types", "default"], cond);
    assert.match(b.types, cond.endsWith("require") ? /^\.\/dist\/types-cjs\/.+\.d\.cts$/ : /^\.\/dist\/types\/.+\.d\.ts$/, cond);
    assert.match(b.default, cond.endsWith("require") ? /\.cjs$/ : /\.js$/, cond);
  }
  assert.equal(e.node.import.default, "./dist/node.js");
  assert.equal(e.node.require.default, "./dist/node.cjs");
  assert.equal(e.browser.default, "./dist/browser.js");
  for (const f of [...branches.flatMap(([, b]) => [b.types, b.default]), pkg.bin.shira, pkg.main, pkg.module, pkg.types]) {
    assert.ok(existsSync(join(root, f)), f);
  }
  assert.match(readFileSync(join(root, e.import.types), "utf8"), /export \{[^}]*ShiraConfig/);
  assert.match(readFileSync(join(root, e.require.types), "utf8"), /export \{[^}]*ShiraConfig/);
  assert.match(readFileSync(join(root, pkg.bin.shira), "utf8"), /^#!\/usr\/bin\/env node/);
  assert.ok(pkg.repository?.url && pkg.homepage && pkg.bugs?.url, "repository, homepage, bugs");
  assert.ok(existsSync(join(root, "LICENSE")), "LICENSE");
});

test("dist/types-cjs mirrors dist/types as .d.cts with CommonJS-safe specifiers", () => {
  const list = (dir: string, ext: string, at = ""): string[] =>
    readdirSync(join(dir, at), { withFileTypes: true }).flatMap((d) =>
      d.isDirectory() ? list(dir, ext, join(at, d.name)) : d.name.endsWith(ext) ? [join(at, d.name.slice(0, -ext.length))] : [],
    );
  const esm = list(join(root, "dist/types"), ".d.ts").sort();
  const cjs = list(join(root, "dist/types-cjs"), ".d.cts").sort();
  assert.ok(esm.length > 10);
  assert.deepEqual(cjs, esm);
  for (const f of cjs) {
    const text = readFileSync(join(root, "dist/types-cjs", f + ".d.cts"), "utf8");
    // relative specifiers point at .cjs (-> .d.cts); other packages' types are imported type-only in import mode
    assert.doesNotMatch(text, /(?:from|import\()\s*["']\.{1,2}\/[^"']*\.js["']/, f);
    for (const m of text.matchAll(/^import .* from ["']([^."'][^"']*)["'](.*)$/gm)) {
      assert.match(m[0], /^import type .* with \{ "resolution-mode": "import" \};$/, `${f}: ${m[0]}`);
    }
  }
});
