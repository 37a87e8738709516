// The published package as a user gets it: `npm pack` (the `prepack` script builds) into a temporary folder, the
// tarball installed into an empty project with `npm install --offline` (its dependencies come from the npm cache that
// `npm ci` filled, through a lockfile derived from this repository's), and then, from that project only:
//   * the tarball: lean (no source maps, no src/), LICENSE and repository metadata, size printed;
//   * `import` (.mjs) and `require` (.cjs): the PEFT fixture forward (mlp + alpha, known values), the saved
//     adapter_config.json of a `Sequential` (auto_mapping.base_model_class survives bundling: esbuild keepNames);
//   * `tsc --noEmit` with moduleResolution bundler, nodenext and node16 (.mts, .cts and .ts files);
//   * the `shira` bin without devDependencies: --help, `inspect ... | head -1`, `merge` refusals.
// `node --import tsx --test tests/package-install.test.ts` (part of `npm test`). SHIRA_KEEP_PACKAGE_TMP=1 keeps the
// temporary folder.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync, type SpawnSyncOptions } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const FIXTURES = join(root, "tests", "fixtures", "peft");
const TSC = join(root, "node_modules", "typescript", "bin", "tsc");
/** The packed tarball (gzip) must stay under this many bytes. */
const MAX_PACKED_BYTES = 1_250_000;

// npm's own lifecycle variables (when run from `npm test`) must not leak into the nested npm commands; the cache,
// user config and registry settings are kept. NODE_PATH could make devDependencies reachable: dropped.
const env: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k) || /^npm_config_(cache|userconfig|registry)$/i.test(k)),
);
// `npm run` puts node_modules/.bin first on PATH, and a devDependency of this repository brings an old npm (6) there:
// the nested npm/npx must be the user's own
env.PATH = (env.PATH ?? "").split(delimiter).filter((p) => p && !/[\\/]node_modules[\\/]\.bin[\\/]?$/.test(p)).join(delimiter);
delete env.NODE_PATH;
delete env.NODE_OPTIONS;
delete env.SHIRA_DEBUG;

interface PackFile { path: string; size: number }
interface PackInfo { filename: string; size: number; unpackedSize: number; entryCount: number; integrity: string; files: PackFile[] }

let tmp = "";
let app = "";
let fx = ""; // copies of the fixtures the CLI reads and writes next to
let pack: PackInfo;

function run(cmd: string, args: string[], opts: SpawnSyncOptions = {}) {
  const r = spawnSync(cmd, args, { encoding: "utf8", env, timeout: 120_000, maxBuffer: 64 << 20, ...opts });
  if (r.error) throw r.error;
  return { status: r.status, signal: r.signal, stdout: String(r.stdout), stderr: String(r.stderr) };
}
function ok(cmd: string, args: string[], opts: SpawnSyncOptions = {}) {
  const r = run(cmd, args, opts);
  assert.equal(r.status, 0, `${cmd} ${args.join(" ")} failed (${r.status ?? r.signal})\n${r.stdout}\n${r.stderr}`);
  return r;
}
const npm = (args: string[], cwd: string) => ok("npm", args, { cwd });
/** `npx shira ...` in the installed project: the bin npm linked (--no --offline: never fetch a package named shira). */
const NPX_SHIRA = ["--no", "--offline", "--", "shira"];
const shira = (args: string[]) => run("npx", [...NPX_SHIRA, ...args], { cwd: app });

/** A lockfile for the temporary project: the tarball plus the closure of its dependencies as this repository pins
 * them, with registry URLs, so `npm install --offline` finds every tarball in the cache without packuments. */
function lockfileFor(tgz: string, registry: string) {
  const lock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8"));
  const self = lock.packages[""];
  const packages: Record<string, Record<string, unknown>> = {
    "": { name: "app", version: "1.0.0", dependencies: { "shira-wasm": `file:${tgz}` } },
    "node_modules/shira-wasm": { version: self.version, resolved: `file:${tgz}`, integrity: pack.integrity, license: self.license, dependencies: self.dependencies, bin: self.bin, engines: self.engines },
  };
  const reg = registry.endsWith("/") ? registry : registry + "/";
  const add = (from: string, deps: Record<string, string> | undefined) => {
    for (const dep of Object.keys(deps ?? {})) {
      // Node's lookup: from's own node_modules, then each ancestor's, then the top level
      let key: string | null = null;
      for (let at = from; ; at = at.includes("/node_modules/") ? at.slice(0, at.lastIndexOf("/node_modules/")) : "") {
        const k = `${at ? at + "/" : ""}node_modules/${dep}`;
        if (lock.packages[k]) { key = k; break; }
        if (!at) break;
      }
      assert.ok(key, `package-lock.json has no entry for ${dep} (needed by ${from || "shira-wasm"})`);
      if (packages[key]) continue;
      const e = { ...lock.packages[key] };
      delete e.dev;
      delete e.devOptional;
      e.resolved ??= `${reg}${dep}/-/${dep.split("/").pop()}-${e.version}.tgz`;
      packages[key] = e;
      add(key, e.dependencies);
    }
  };
  add("", self.dependencies);
  return { name: "app", version: "1.0.0", lockfileVersion: 3, requires: true, packages };
}

// One program for both module systems: `m` holds the package's exports.
const PROGRAM = (fixtures: string, out: string) => `
  await init();
  const lin = new Linear(2, 1, { bias: false });
  lin.weight.data.set([2, 3]);
  const tiny = Array.from(lin.forward(Tensor.from([1, 10], [1, 2])).toArray());

  // PEFT's test MLP as a Sequential with the fixture's module names; alpha loaded from disk; PEFT's output
  const mlp = () => new Sequential({ lin0: new Linear(10, 20), relu0: new ReLU(), lin1: new Linear(20, 40), relu1: new ReLU(),
    lin2: new Linear(40, 30), relu2: new ReLU(), lin3: new Linear(30, 10), sm: new LogSoftmax(-1) });
  const base = mlp().eval();
  base.loadStateDict(readSafetensors(fs.readFileSync(path.join(${JSON.stringify(fixtures)}, "model.safetensors"))));
  const cases = readSafetensors(fs.readFileSync(path.join(${JSON.stringify(fixtures)}, "cases.safetensors")));
  const x = Tensor.from(cases.f32("x"), [4, 10]);
  const peft = await PeftModel.fromPretrained(base, path.join(${JSON.stringify(fixtures)}, "alpha"), { adapterName: "alpha" });
  const y = peft.forward(x).toArray();
  const want = cases.f32("out.alpha");
  let fixtureMaxDiff = 0;
  for (let i = 0; i < want.length; i++) fixtureMaxDiff = Math.max(fixtureMaxDiff, Math.abs(y[i] - want[i]));

  // a new adapter on a Sequential, saved to disk and in memory
  const fresh = getPeftModel(new Sequential([new Linear(10, 20), new ReLU(), new Linear(20, 4)]), new ShiraConfig({ r: 2, targetModules: ["0", "2"], randomSeed: 5 }));
  await fresh.savePretrained(${JSON.stringify(out)});
  const savedConfig = JSON.parse(fs.readFileSync(path.join(${JSON.stringify(out)}, "adapter_config.json"), "utf8"));
  const inMemoryConfig = JSON.parse(fresh.saveAdapter()["adapter_config.json"]);

  console.log(JSON.stringify({
    tiny, fixtureMaxDiff, fixtureLength: y.length, savedConfig, inMemoryConfig,
    names: [Linear.name, Sequential.name, ShiraConfig.name, PeftModel.name, new Sequential().constructor.name],
    autoModel: typeof AutoModelForCausalLM.fromPretrained,
  }));
`;
const NAMES = "init, Linear, ReLU, LogSoftmax, Sequential, Tensor, ShiraConfig, getPeftModel, PeftModel, AutoModelForCausalLM, readSafetensors";

before(async () => {
  tmp = realpathSync(mkdtempSync(join(tmpdir(), "shira-package-")));
  assert.ok(relative(root, tmp).startsWith(".."), "the temporary project must be outside the repository (no access to its node_modules)");
  app = join(tmp, "app");
  fx = join(tmp, "fixtures");
  mkdirSync(app);
  mkdirSync(fx);
  cpSync(join(FIXTURES, "mlp"), fx, { recursive: true });

  assert.match(run("npm", ["--version"]).stdout, /^(?:[7-9]|\d\d)\./, "npm 7 or newer");
  // pack: prepack builds; the build's log goes to stdout before the JSON
  const out = ok("npm", ["pack", "--json", "--pack-destination", tmp], { cwd: root, timeout: 600_000 }).stdout;
  const at = out.search(/^\[\s*$/m);
  assert.ok(at >= 0, `no JSON from npm pack --json:\n${out}`);
  pack = JSON.parse(out.slice(at))[0];
  assert.ok(existsSync(join(tmp, pack.filename)), pack.filename);

  const registry = run("npm", ["config", "get", "registry"], { cwd: root }).stdout.trim() || "https://registry.npmjs.org/";
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", version: "1.0.0", private: true }, null, 2));
  writeFileSync(join(app, "package-lock.json"), JSON.stringify(lockfileFor(`../${pack.filename}`, registry), null, 2));
  npm(["install", "--offline", "--no-audit", "--no-fund", `../${pack.filename}`], app);
});

after(() => {
  if (tmp && !process.env.SHIRA_KEEP_PACKAGE_TMP) rmSync(tmp, { recursive: true, force: true });
  else if (tmp) console.log(`kept ${tmp}`);
});

test("the tarball: lean (no source maps, no sources), LICENSE, repository metadata; size printed", (t) => {
  const kB = (n: number) => `${(n / 1000).toFixed(0)} kB`;
  const line = `tarball ${pack.filename}: ${kB(pack.size)} packed (${pack.size} bytes), ${kB(pack.unpackedSize)} unpacked (${pack.unpackedSize} bytes), ${pack.entryCount} files`;
  t.diagnostic(line);

  const files = new Set(pack.files.map((f) => f.path));
  for (const f of ["package.json", "README.md", "LICENSE", "dist/node.js", "dist/node.cjs", "dist/browser.js", "dist/cli.js", "dist/types/index.d.ts", "dist/types/node.d.ts", "dist/types-cjs/index.d.cts", "dist/types-cjs/node.d.cts"]) {
    assert.ok(files.has(f), `missing from the tarball: ${f}`);
  }
  for (const f of files) assert.doesNotMatch(f, /^(src|assembly|tests|bench|scripts|examples|build|dist\/examples)\//, `should not be in the tarball: ${f}`);
  assert.ok(pack.size <= MAX_PACKED_BYTES, `tarball is ${pack.size} bytes packed, budget ${MAX_PACKED_BYTES}`);

  // a source map is shipped only with the sources it points at, and a bundle only references a shipped map
  const pkgDir = join(app, "node_modules", "shira-wasm");
  for (const f of files) {
    if (f.endsWith(".map")) {
      const map = JSON.parse(readFileSync(join(pkgDir, f), "utf8"));
      for (const s of map.sources as string[]) assert.ok(files.has(join(dirname(f), s).split(sep).join("/")), `${f} points at ${s}, which is not shipped`);
    } else if (/\.(c|m)?js$/.test(f)) {
      const ref = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(readFileSync(join(pkgDir, f), "utf8"))?.[1];
      if (ref && !ref.startsWith("data:")) assert.ok(files.has(join(dirname(f), ref).split(sep).join("/")), `${f} references ${ref}, which is not shipped`);
    }
  }

  const license = readFileSync(join(pkgDir, "LICENSE"), "utf8");
  assert.match(license, /Apache License\s+Version 2\.0, January 2004/);
  assert.match(license, /Copyright \d{4} shira-wasm authors/);
  const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
  assert.equal(pkg.license, "Apache-2.0");
  assert.match(pkg.repository?.url ?? "", /^git\+https:\/\/github\.com\/.+\.git$/);
  assert.match(pkg.homepage ?? "", /^https:\/\//);
  assert.match(pkg.bugs?.url ?? "", /^https:\/\/.+\/issues$/);
  // the installed project has the dependencies only: nothing from devDependencies is reachable
  for (const dev of Object.keys(JSON.parse(readFileSync(join(root, "package.json"), "utf8")).devDependencies)) {
    assert.ok(!existsSync(join(app, "node_modules", dev)), `devDependency ${dev} is installed in the test project`);
  }
});

function checkProgramResult(r: {
  tiny: number[]; fixtureMaxDiff: number; fixtureLength: number; savedConfig: Record<string, unknown>; inMemoryConfig: Record<string, unknown>; names: string[]; autoModel: string;
}) {
  assert.deepEqual(r.tiny, [32]);
  assert.equal(r.fixtureLength, 40);
  assert.ok(r.fixtureMaxDiff <= 1e-5, `PEFT fixture out.alpha: max |diff| ${r.fixtureMaxDiff}`);
  assert.deepEqual(r.names, ["Linear", "Sequential", "ShiraConfig", "ShiraModel", "Sequential"]);
  assert.equal(r.autoModel, "function");
  const c = r.savedConfig;
  assert.deepEqual(c.auto_mapping, { base_model_class: "Sequential", parent_library: "shira-wasm" });
  assert.equal(c.peft_type, "SHIRA");
  assert.equal(c.r, 2);
  assert.equal(c.random_seed, 5);
  assert.equal(c.mask_type, "random");
  assert.equal(c.task_type, null);
  assert.equal(c.inference_mode, true);
  assert.deepEqual([...(c.target_modules as string[])].sort(), ["0", "2"]);
  assert.deepEqual(r.inMemoryConfig, c);
}

test("import (ESM, .mjs): fixture forward and the saved adapter_config.json of a Sequential", () => {
  const file = join(app, "esm.mjs");
  writeFileSync(file, `import fs from "node:fs";\nimport path from "node:path";\nimport { ${NAMES} } from "shira-wasm";\n${PROGRAM(fx, join(tmp, "saved-esm"))}`);
  const r = ok(process.execPath, [file], { cwd: app });
  checkProgramResult(JSON.parse(r.stdout.trim().split("\n").pop()!));
});

test("require (CJS, .cjs): the same, and the same results as import", () => {
  const file = join(app, "cjs.cjs");
  writeFileSync(file, `const fs = require("node:fs");\nconst path = require("node:path");\nconst { ${NAMES} } = require("shira-wasm");\n(async () => {${PROGRAM(fx, join(tmp, "saved-cjs"))}})().catch((e) => { console.error(e); process.exit(1); });`);
  const r = ok(process.execPath, [file], { cwd: app });
  const res = JSON.parse(r.stdout.trim().split("\n").pop()!);
  checkProgramResult(res);
  // the ESM test above saved the same adapter (same seed): byte-identical files
  assert.ok(existsSync(join(tmp, "saved-esm")), "the ESM test did not run");
  assert.equal(readFileSync(join(tmp, "saved-cjs", "adapter_config.json"), "utf8"), readFileSync(join(tmp, "saved-esm", "adapter_config.json"), "utf8"));
  assert.deepEqual(readFileSync(join(tmp, "saved-cjs", "adapter_model.safetensors")), readFileSync(join(tmp, "saved-esm", "adapter_model.safetensors")));
});

// Type checks. Each file uses a value and a type, and has a @ts-expect-error that only holds when the types are real
// (not `any`); openFileSource is Node-only (node condition). No @types/node in the project.
const TS_BODY = (nodeOnly: boolean) => `
import { init, initSync, Linear, ShiraConfig, getPeftModel, AutoModelForCausalLM, Sequential, type ShiraModel${nodeOnly ? ", openFileSource" : ""} } from "shira-wasm";
export const ready: Promise<unknown> = init();
initSync();
const lin: Linear = new Linear(2, 1, { bias: false });
export const inFeatures: number = lin.inFeatures;
export const peft: ShiraModel = getPeftModel(new Sequential([lin]), new ShiraConfig({ r: 1, targetModules: ["0"] }));
export const load: Function = AutoModelForCausalLM.fromPretrained;
// @ts-expect-error inFeatures is a number
export const wrong: string = lin.inFeatures;
${nodeOnly ? "export const open: (path: string) => Promise<unknown> = openFileSource;" : ""}
`;

function tscCheck(mode: "bundler" | "nodenext" | "node16", files: Record<string, string>) {
  const dir = join(app, `tsc-${mode}`);
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const compilerOptions = {
    strict: true, noEmit: true, target: "es2022", types: [], skipLibCheck: false,
    ...(mode === "bundler" ? { module: "esnext", moduleResolution: "bundler" } : { module: mode, moduleResolution: mode }),
  };
  writeFileSync(join(dir, "tsconfig.json"), JSON.stringify({ compilerOptions, files: Object.keys(files) }, null, 2));
  const r = run(process.execPath, [TSC, "-p", join(dir, "tsconfig.json"), "--listFiles", "--pretty", "false"], { cwd: app });
  // skipLibCheck is off so that our own declarations are checked; errors inside other packages' declarations
  // (e.g. @huggingface/tokenizers' extensionless ESM imports under node16) are theirs and ignored
  const errors = r.stdout.split("\n").filter((l) => /error TS\d+/.test(l));
  const ours = errors.filter((l) => !/^node_modules[\\/]/.test(l) || /^node_modules[\\/]shira-wasm[\\/]/.test(l));
  assert.deepEqual(ours, [], `tsc (${mode}):\n${r.stdout}\n${r.stderr}`);
  assert.ok(r.status === 0 || errors.length > 0, `tsc (${mode}) exited ${r.status}\n${r.stdout}\n${r.stderr}`);
  return r.stdout.split("\n").map((l) => l.trim()).filter((l) => l.includes(`${sep}shira-wasm${sep}dist${sep}`)).map((l) => l.slice(l.lastIndexOf(`${sep}dist${sep}`) + 1).split(sep).join("/"));
}

test("tsc --noEmit, moduleResolution bundler: .ts and .mts get the ESM declarations", () => {
  const used = tscCheck("bundler", { "a.ts": TS_BODY(false), "b.mts": TS_BODY(false) });
  assert.ok(used.includes("dist/types/index.d.ts"), used.join(", "));
  assert.ok(!used.some((f) => f.startsWith("dist/types-cjs/")), used.join(", "));
});

for (const mode of ["nodenext", "node16"] as const) {
  test(`tsc --noEmit, module/moduleResolution ${mode}: .mts (import), .cts and .ts in a CommonJS project (require)`, () => {
    const used = tscCheck(mode, { "a.mts": TS_BODY(true), "b.cts": TS_BODY(true), "c.ts": TS_BODY(true) });
    assert.ok(used.includes("dist/types/node.d.ts"), used.join(", "));
    assert.ok(used.includes("dist/types-cjs/node.d.cts"), used.join(", "));
  });
}

test("npx shira --help works from the installed package (no devDependencies)", () => {
  const r = shira(["--help"]);
  assert.equal(r.status, 0, `exit ${r.status ?? r.signal}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  assert.match(r.stdout, /usage/i);
  assert.match(r.stdout, /\bshira\b/);
  for (const cmd of ["inspect", "merge"]) assert.match(r.stdout, new RegExp(`\\b${cmd}\\b`));
});

test("npx shira inspect <adapter dir> | head -1: exit 0, one line, no EPIPE trace", () => {
  // the exit status is shira's (PIPESTATUS[0]), not head's; a reader that closes before reading anything too
  const pipelines = [
    ["head -1", `npx ${NPX_SHIRA.join(" ")} inspect "$1" | head -1; exit "\${PIPESTATUS[0]}"`],
    ["closed reader", `npx ${NPX_SHIRA.join(" ")} inspect "$1" | true; exit "\${PIPESTATUS[0]}"`],
  ] as const;
  for (const [label, script] of pipelines) {
    const r = run("bash", ["-c", script, "pipeline", join(fx, "alpha")], { cwd: app });
    const info = `${label}: exit ${r.status ?? r.signal}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
    assert.equal(r.status, 0, info);
    assert.doesNotMatch(r.stderr, /EPIPE|^\s+at /m, info);
    if (label === "head -1") {
      assert.equal(r.stdout.split("\n").filter((l) => l !== "").length, 1, info);
    }
  }
});

test("npx shira merge: refuses --out = --base, a repeated --weight, the same adapter twice (one-line error, nothing written)", () => {
  const base = join(fx, "model.safetensors");
  const alpha = join(fx, "alpha");
  const beta = join(fx, "beta");
  const baseBytes = readFileSync(base);
  const refuse = (what: string, args: string[], offending: string, out: string | null) => {
    const r = shira(["merge", ...args]);
    const info = `${what}: exit ${r.status ?? r.signal}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
    assert.ok(r.status !== null && r.status !== 0, info);
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 1, `expected a one-line error. ${info}`);
    assert.ok(lines[0].includes(offending), `the error should name ${offending}. ${info}`);
    if (out) assert.ok(!existsSync(out), `${out} was written. ${info}`);
    assert.deepEqual(readFileSync(base), baseBytes, `the base file changed. ${info}`);
  };
  refuse("--out equal to --base", ["--base", base, "--adapter", alpha, "--out", base], base, null);
  const out1 = join(fx, "merged-weights.safetensors");
  refuse("repeated --weight", ["--base", base, "--adapter", alpha, "--weight", "0.25", "--weight", "0.75", "--out", out1], "0.75", out1);
  const out2 = join(fx, "merged-twice.safetensors");
  refuse("same adapter twice", ["--base", base, "--adapter", alpha, "--adapter", alpha, "--out", out2], alpha, out2);

  // and a valid merge of the same files works (the refusals are not a CLI that fails on everything)
  const good = join(fx, "merged.safetensors");
  const r = shira(["merge", "--base", base, "--adapter", alpha, "--weight", "0.5", "--adapter", beta, "--out", good]);
  assert.equal(r.status, 0, `valid merge: exit ${r.status ?? r.signal}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  assert.ok(existsSync(good));
  assert.equal(readdirSync(fx).filter((f) => f.startsWith("merged")).length, 1);
});
