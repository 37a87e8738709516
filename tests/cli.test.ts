// The `shira` command, run for real (dist/cli.js, built by `npm test`) on small inputs.
import { test, describe, before } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync, cpSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { PeftModel, readSafetensors, ShiraModel } from "../src/node.js";
import { moduleFromSafetensors } from "../src/cli/merge.js";
import { fixturePath, bitsEqual } from "./helpers/fixtures.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const CLI = join(root, "dist", "cli.js");

function shira(args: string[], timeoutMs = 120_000) {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: root, encoding: "utf8", timeout: timeoutMs });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

before(() => {
  if (!existsSync(CLI)) {
    const b = spawnSync(process.execPath, ["scripts/build.mjs", "--only", "wasm,bundle"], { cwd: root, stdio: "inherit" });
    assert.equal(b.status, 0, "build the CLI");
  }
});

describe("shira (help, usage, errors)", () => {
  test("--help on the command and every subcommand; exit code 2 for usage errors", () => {
    const h = shira(["--help"]);
    assert.equal(h.code, 0);
    for (const c of ["demo", "bench", "inspect", "merge"]) {
      assert.match(h.out, new RegExp(`\\n  ${c} `));
      const s = shira([c, "--help"]);
      assert.equal(s.code, 0, c);
      assert.match(s.out, new RegExp(`^usage: shira ${c}`));
    }
    const none = shira([]);
    assert.equal(none.code, 2);
    const bad = shira(["frobnicate"]);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /unknown command "frobnicate"/);
    const opt = shira(["inspect", "--nope", "x"]);
    assert.equal(opt.code, 2);
    assert.equal(opt.err.trim().split("\n").length, 1);
    assert.match(opt.err, /unknown option --nope/);
    const missing = shira(["merge", "--base", "x.safetensors"]);
    assert.equal(missing.code, 2);
    assert.match(missing.err, /needs --base, --out and at least one --adapter/);
  });

  test("a wrong path or a malformed file exits 1 with one clear line, no stack trace", () => {
    const r = shira(["inspect", "/no/such/adapter"]);
    assert.equal(r.code, 1);
    assert.equal(r.err.trim().split("\n").length, 1, r.err);
    assert.match(r.err, /^shira inspect: error: .*no such file or directory.*\/no\/such\/adapter/);
    const bad = shira(["inspect", fixturePath("bad", "overlapping_offsets")]);
    assert.equal(bad.code, 1);
    assert.equal(bad.err.trim().split("\n").length, 1);
    assert.match(bad.err, /base_model\.model\.lin2\.shira_weight.*\[SAFETENSORS_OFFSETS\]/);
    assert.doesNotMatch(bad.err, /\n\s+at /);
    const dir = mkdtempSync(join(tmpdir(), "shira-cli-"));
    const m = shira(["merge", "--base", fixturePath("mlp", "model.safetensors"), "--adapter", fixturePath("bad", "duplicate_indices"), "--out", join(dir, "m.safetensors")]);
    assert.equal(m.code, 1);
    assert.match(m.err, /appears twice \(columns 10 and 11\) \[SHIRA_DUPLICATE_INDEX\]/);
    assert.ok(!existsSync(join(dir, "m.safetensors")), "nothing written");
  });
});

describe("shira inspect", () => {
  test("prints nnz, shapes and the seeded-mask check of PEFT's fixtures", () => {
    const a = shira(["inspect", fixturePath("mlp", "alpha")]);
    assert.equal(a.code, 0, a.err);
    assert.match(a.out, /peft_type: SHIRA\s+r: 1\s+mask_type: random\s+random_seed: 3/);
    assert.match(a.out, /\nlin0\s+\[20, 10\] \(inferred\)\s+30\s+15\.00%\s+F32\/I32\s.*\syes\s*\n/);
    assert.match(a.out, /\nlin2\s+\[30, 40\] \(inferred\)\s+70\s+5\.83%\s+F32\/I32\s.*\syes\s*\n?/);
    const b = shira(["inspect", fixturePath("mlp", "beta"), "--base", fixturePath("mlp", "model.safetensors"), "--json"]);
    assert.equal(b.code, 0, b.err);
    const j = JSON.parse(b.out);
    assert.deepEqual(j.modules.map((m: { module: string; nnz: number; shape: number[]; matchesSeededMask: boolean }) => [m.module, m.nnz, m.shape, m.matchesSeededMask]), [
      ["lin1", 120, [40, 20], true],
      ["lin2", 140, [30, 40], true],
      ["lin3", 80, [10, 30], true],
    ]);
    assert.equal(j.totalValues, 340);
    const w = shira(["inspect", fixturePath("variants", "alpha_windows", "adapter_model.safetensors"), "--json"]);
    const wj = JSON.parse(w.out);
    assert.equal(wj.modules[0].indicesDtype, "F32");
    assert.equal(wj.modules[0].nnz, 30);
  });
});

describe("shira merge", () => {
  test("equals mergeAndUnload of the same adapters (with weights) bit for bit, keys and dtypes kept", async () => {
    const dir = mkdtempSync(join(tmpdir(), "shira-merge-"));
    const out = join(dir, "merged.safetensors");
    const r = shira(["merge", "--base", fixturePath("mlp", "model.safetensors"), "--adapter", fixturePath("mlp", "alpha"), "--weight", "0.5", "--adapter", fixturePath("mlp", "beta"), "--out", out]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /2 adapter\(s\) merged into 4 module\(s\)/);
    const merged = readSafetensors(readFileSync(out));
    const base = readSafetensors(readFileSync(fixturePath("mlp", "model.safetensors")));
    assert.deepEqual(merged.names().sort(), base.names().sort());
    assert.deepEqual(merged.metadata, base.metadata);
    // the same through the library
    const model = moduleFromSafetensors(base);
    const peft = await PeftModel.fromPretrained(model, fixturePath("mlp", "alpha"), { adapterName: "a" });
    await peft.loadAdapter(fixturePath("mlp", "beta"), "b");
    peft.fuse([{ name: "a", weight: 0.5 }, { name: "b", weight: 1 }]);
    const plain = (peft as ShiraModel).mergeAndUnload().stateDict();
    for (const k of base.names()) assert.ok(bitsEqual(merged.f32(k), plain[k].toArray()), `${k} bit-identical`);
    let changed = 0;
    for (const k of base.names()) if (!bitsEqual(merged.f32(k), base.f32(k))) changed++;
    assert.equal(changed, 4, "the four adapted weights changed, biases did not");
  });
});

describe("shira demo --quick", () => {
  test("reaches the accuracy thresholds and writes a report whose numbers match results.json", () => {
    const dir = mkdtempSync(join(tmpdir(), "shira-demo-"));
    const r = shira(["demo", "--quick", "--out", dir, "--no-progress"], 170_000);
    assert.equal(r.code, 0, r.err);
    const res = JSON.parse(readFileSync(join(dir, "results.json"), "utf8"));
    assert.ok(res.base.accuracy.upright >= 0.85, `base upright ${res.base.accuracy.upright}`);
    assert.deepEqual(res.settings.tasks, ["rot90", "invert", "mirror"]);
    for (const a of res.adapters) {
      assert.equal(a.reloadIdentical, true, `${a.method} ${a.task} reloads identically`);
      assert.equal(a.params, res.adapters.find((b: { task: string; method: string }) => b.task === a.task && b.method !== a.method).params, "same parameter count");
      if (a.method === "shira") assert.ok(a.accuracy - a.baseAccuracy >= 0.3, `SHiRA ${a.task}: ${a.baseAccuracy} -> ${a.accuracy}`);
    }
    assert.equal(res.baseBitIdentical, true);
    assert.ok(res.switching.shira.medianMs < res.switching.lora.medianMs, "SHiRA switches faster than LoRA");
    assert.equal(res.fusion.length, 6);
    const report = readFileSync(join(dir, "report.md"), "utf8");
    const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
    for (const a of res.adapters) assert.ok(report.includes(pct(a.accuracy)), `report shows ${a.method} ${a.task} ${pct(a.accuracy)}`);
    for (const f of res.fusion) assert.ok(report.includes(`| ${f.pair[0]} + ${f.pair[1]} | ${f.method === "shira" ? "SHiRA" : "LoRA"} | ${pct(f.accuracy[0])} | ${pct(f.accuracy[1])} |`));
    const med = (x: number) => (Math.abs(x) >= 1 ? x.toFixed(3) : x.toFixed(4));
    assert.ok(report.includes(med(res.switching.shira.medianMs)) && report.includes(med(res.switching.lora.medianMs)), "switch medians");
    for (const f of ["accuracy.svg", "switch.svg", "fusion.svg", "model.safetensors", "model.json", "samples.json", "adapters/rot90/adapter_config.json", "lora/mirror/adapter_model.safetensors"]) assert.ok(existsSync(join(dir, f)), f);
    assert.match(readFileSync(join(dir, "switch.svg"), "utf8"), /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    // the terminal table shows the same numbers
    for (const a of res.adapters) assert.ok(r.out.includes(pct(a.accuracy)));
    void writeFileSync;
    void cpSync;
  });
});
