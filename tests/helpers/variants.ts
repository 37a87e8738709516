// Runs a kernel suite on every build of the engine: the plain-SIMD module, and the relaxed-SIMD one, either here
// (when this Node validates it) or in a child `node --experimental-wasm-relaxed-simd` running the same file with
// SHIRA_KERNELS_VARIANT set.
import { spawnSync } from "node:child_process";
import assert from "node:assert/strict";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { createRuntime, type WasmVariant } from "../../src/node.js";

export function forEachVariant(what: string, fileUrl: string, suite: (variant: WasmVariant) => void, opts: { minPassed: number; timeoutMs: number }): void {
  const only = process.env.SHIRA_KERNELS_VARIANT as WasmVariant | undefined;
  if (only) {
    suite(only);
    return;
  }
  suite("simd");
  let relaxedHere = false;
  try {
    createRuntime({ variant: "relaxed-simd" });
    relaxedHere = true;
  } catch {
    relaxedHere = false;
  }
  if (relaxedHere) {
    suite("relaxed-simd");
    return;
  }
  test(`${what} (relaxed-simd build): in a child node --experimental-wasm-relaxed-simd`, (t) => {
    const file = fileURLToPath(fileUrl);
    const env: NodeJS.ProcessEnv = { ...process.env, SHIRA_KERNELS_VARIANT: "relaxed-simd" };
    delete env.NODE_TEST_CONTEXT; // else the child's node:test thinks it runs under this runner and reports nothing
    const r = spawnSync(process.execPath, ["--experimental-wasm-relaxed-simd", "--import", "tsx", file], { env, encoding: "utf8", timeout: opts.timeoutMs });
    if (r.status !== 0 && /bad option|unknown flag/i.test(r.stderr ?? "")) {
      t.skip("this Node has no --experimental-wasm-relaxed-simd");
      return;
    }
    const out = r.stdout ?? "";
    const failures = out.split("\n").filter((l) => /^\s*not ok|error:/.test(l));
    assert.equal(r.status, 0, `relaxed-simd suite failed:\n${failures.slice(0, 30).join("\n")}\n${(r.stderr ?? "").slice(0, 2000)}`);
    const passed = /# pass (\d+)/.exec(out);
    assert.ok(passed && Number(passed[1]) >= opts.minPassed, `the relaxed-simd suite ran (${passed?.[1] ?? 0} tests passed)`);
  });
}
