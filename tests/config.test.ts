// ShiraConfig against PEFT's adapter_config.json fixtures, and pythonJsonDumps against hand-checked Python output.
import { test } from "node:test";
import assert from "node:assert/strict";
import { fixturePath } from "./helpers/fixtures.js";
import { readFileSync } from "node:fs";
import { ConfigError } from "../src/errors.js";
import { DEFAULT_PEFT_VERSION, matchesTarget, SHIRA_CONFIG_KEYS, ShiraConfig } from "../src/shira/config.js";
import { randomMask, structMask, type MaskFn } from "../src/shira/mask.js";
import { compareCodePoints, pyFloat, pythonFloatRepr, pythonJsonDumps, pythonJsonString } from "../src/shira/python-json.js";

const read = (p: string): string => readFileSync(fixturePath(p), "utf8");

function assertConfigError(fn: () => unknown, code: string, re?: RegExp): ConfigError {
  let caught: ConfigError | undefined;
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (re) assert.match(e.message, re);
    caught = e;
    return true;
  });
  return caught!;
}

// ------------------------------------------------------------------------------------------------------------
// python-json

test("pythonJsonDumps matches Python's json.dumps(indent=2, sort_keys=True): unicode, nesting, empty containers", () => {
  // json.dumps({"b": [1, 2.5, {"x": None}], "a": "é😀\n\"\\", "c": {}, "d": [], "e": True}, indent=2, sort_keys=True)
  const expected = [
    "{",
    '  "a": "\\u00e9\\ud83d\\ude00\\n\\"\\\\",',
    '  "b": [',
    "    1,",
    "    2.5,",
    "    {",
    '      "x": null',
    "    }",
    "  ],",
    '  "c": {},',
    '  "d": [],',
    '  "e": true',
    "}",
  ].join("\n");
  const got = pythonJsonDumps({ b: [1, 2.5, { x: null }], a: 'é😀\n"\\', c: {}, d: [], e: true }, { indent: 2, sortKeys: true });
  assert.equal(got, expected);
  // json.dumps({"a": [[]], "b": [{}]}, indent=2, sort_keys=True)
  assert.equal(pythonJsonDumps({ b: [{}], a: [[]] }, { indent: 2, sortKeys: true }), '{\n  "a": [\n    []\n  ],\n  "b": [\n    {}\n  ]\n}');
  // json.dumps([1, 2], indent=0) and json.dumps({"a": 1, "b": [1, 2]}) (default separators)
  assert.equal(pythonJsonDumps([1, 2], { indent: 0 }), "[\n1,\n2\n]");
  assert.equal(pythonJsonDumps({ a: 1, b: [1, 2] }), '{"a": 1, "b": [1, 2]}');
  assert.equal(pythonJsonDumps({}, { indent: 2 }), "{}");
  assert.equal(pythonJsonDumps([], { indent: 2 }), "[]");
  // insertion order without sort_keys (a Map keeps it even for integer-like keys)
  assert.equal(pythonJsonDumps(new Map<string, unknown>([["2", 1], ["1", 2]])), '{"2": 1, "1": 2}');
  assert.equal(pythonJsonDumps(new Map<string, unknown>([["2", 1], ["1", 2]]), { sortKeys: true }), '{"1": 2, "2": 1}');
});

test("pythonJsonDumps strings: ensure_ascii escapes, control characters, ensure_ascii=False", () => {
  // json.dumps("\x00\x1f\x7f\b\f\t\r") == '"\\u0000\\u001f\\u007f\\b\\f\\t\\r"'
  assert.equal(pythonJsonString("\x00\x1f\x7f\b\f\t\r"), '"\\u0000\\u001f\\u007f\\b\\f\\t\\r"');
  // json.dumps("~ é ÿ Ā \u2028 \uffff 😀") -- lowercase hex, surrogate pairs
  assert.equal(pythonJsonString("~ é ÿ Ā \u2028 \uffff 😀"), '"~ \\u00e9 \\u00ff \\u0100 \\u2028 \\uffff \\ud83d\\ude00"');
  // json.dumps("é\x7f\x01", ensure_ascii=False) == '"é\x7f\\u0001"'
  assert.equal(pythonJsonDumps("é\x7f\x01", { ensureAscii: false }), '"é\x7f\\u0001"');
  // json.dumps("a/b") does not escape the slash
  assert.equal(pythonJsonString("a/b"), '"a/b"');
});

test("pythonJsonDumps numbers: Python int and float repr", () => {
  // json.dumps([1.0, 1e-05, 1e16, 123456789012345.0, 0.1, -0.0, nan, inf, -inf])
  assert.equal(
    pythonJsonDumps([pyFloat(1), 1e-5, pyFloat(1e16), pyFloat(123456789012345), 0.1, pyFloat(-0), NaN, Infinity, -Infinity]),
    "[1.0, 1e-05, 1e+16, 123456789012345.0, 0.1, -0.0, NaN, Infinity, -Infinity]",
  );
  const cases: [number, string][] = [
    [1, "1.0"], [0, "0.0"], [-0, "-0.0"], [0.0001, "0.0001"], [0.00001, "1e-05"], [1.5e-7, "1.5e-07"],
    [1234.5, "1234.5"], [2 ** 53, "9007199254740992.0"], [1e15, "1000000000000000.0"], [1e16, "1e+16"],
    [1.5e16, "1.5e+16"], [1e22, "1e+22"], [0.1 + 0.2, "0.30000000000000004"], [5e-324, "5e-324"],
    [1.7976931348623157e308, "1.7976931348623157e+308"], [-2.5, "-2.5"], [123e-20, "1.23e-18"], [1e100, "1e+100"],
  ];
  for (const [x, s] of cases) assert.equal(pythonFloatRepr(x), s, String(x));
  // integers: all digits, never an exponent (Python ints are exact)
  assert.equal(pythonJsonDumps([1e21, -3, 2n ** 64n, -0]), "[1000000000000000000000, -3, 18446744073709551616, 0]");
  // floatKeys: integral values under these keys are floats
  assert.equal(pythonJsonDumps({ alpha: 8, drop: [0, 0.5], r: 8 }, { floatKeys: new Set(["alpha", "drop"]) }), '{"alpha": 8.0, "drop": [0.0, 0.5], "r": 8}');
});

test("pythonJsonDumps sorts keys by code point (Python), not UTF-16 code unit; refuses what Python refuses", () => {
  // json.dumps({"😀": 1, "\uffff": 2, "é": 4, "a": 3}, sort_keys=True)
  assert.equal(pythonJsonDumps({ "😀": 1, "\uffff": 2, é: 4, a: 3 }, { sortKeys: true }), '{"a": 3, "\\u00e9": 4, "\\uffff": 2, "\\ud83d\\ude00": 1}');
  assert.ok(compareCodePoints("\uffff", "😀") < 0);
  assert.ok("\uffff" > "😀"); // JS order differs
  assert.ok(compareCodePoints("ab", "abc") < 0 && compareCodePoints("b", "a") > 0 && compareCodePoints("x", "x") === 0);
  assertConfigError(() => pythonJsonDumps({ a: undefined }), "CONFIG_INVALID", /undefined is not JSON serializable \(at \$\.a\)/);
  assertConfigError(() => pythonJsonDumps([new Float32Array(1)]), "CONFIG_INVALID", /Float32Array/);
  const cyc: Record<string, unknown> = {};
  cyc["self"] = cyc;
  assertConfigError(() => pythonJsonDumps(cyc), "CONFIG_INVALID", /Circular/);
});

// ------------------------------------------------------------------------------------------------------------
// ShiraConfig

test("ShiraConfig defaults mirror PEFT", () => {
  const c = new ShiraConfig();
  assert.equal(c.r, 32);
  assert.equal(c.maskType, "random");
  assert.equal(c.randomSeed, null);
  assert.equal(c.targetModules, null);
  assert.equal(c.fanInFanOut, false);
  assert.equal(c.initWeights, true);
  assert.equal(c.modulesToSave, null);
  assert.equal(c.taskType, null);
  assert.equal(c.baseModelNameOrPath, null);
  assert.equal(c.revision, null);
  assert.equal(c.inferenceMode, false);
  assert.equal(c.peftType, "SHIRA");
  assert.equal(c.peftVersion, "0.20.0");
  assert.equal(DEFAULT_PEFT_VERSION, "0.20.0");
  assert.equal(c.autoMapping, null);
  assert.equal(c.maskFn, null);
  assert.deepEqual(c.maskOptions, {});
  assert.throws(() => {
    (c as unknown as { peftType: string }).peftType = "LORA";
  }, TypeError);
  const json = c.toJSON();
  assert.deepEqual(Object.keys(json), [
    "auto_mapping", "base_model_name_or_path", "fan_in_fan_out", "inference_mode", "init_weights", "mask_type",
    "modules_to_save", "peft_type", "peft_version", "r", "random_seed", "revision", "target_modules", "task_type",
  ]);
  assert.deepEqual(Object.values(SHIRA_CONFIG_KEYS), Object.keys(json));
  assert.equal(
    c.toJSONString(),
    '{\n  "auto_mapping": null,\n  "base_model_name_or_path": null,\n  "fan_in_fan_out": false,\n  "inference_mode": false,\n' +
      '  "init_weights": true,\n  "mask_type": "random",\n  "modules_to_save": null,\n  "peft_type": "SHIRA",\n' +
      '  "peft_version": "0.20.0",\n  "r": 32,\n  "random_seed": null,\n  "revision": null,\n  "target_modules": null,\n' +
      '  "task_type": null\n}',
  );
});

test("toJSONString equals PEFT's alpha and beta adapter_config.json byte for byte", () => {
  const autoMapping = { base_model_class: "MLP", parent_library: "__main__" };
  const alpha = new ShiraConfig({ r: 1, targetModules: ["lin2", "lin0"], randomSeed: 3, inferenceMode: true, autoMapping });
  assert.equal(alpha.toJSONString(), read("mlp/alpha/adapter_config.json"));
  const beta = new ShiraConfig({ r: 2, targetModules: ["lin3", "lin1", "lin2", "lin1"], inferenceMode: true, autoMapping });
  assert.equal(beta.toJSONString(), read("mlp/beta/adapter_config.json"));
  // every config of bad/ that is not about the config is alpha's
  for (const name of ["truncated", "duplicate_indices", "nnz_mismatch", "unknown_dtype"]) {
    assert.equal(alpha.toJSONString(), read(`bad/${name}/adapter_config.json`));
  }
  // the config keeps what the user gave; only the JSON is sorted
  assert.deepEqual(alpha.targetModules, ["lin2", "lin0"]);
});

test("fromJSON reads PEFT's files and round-trips toJSON", () => {
  for (const adapter of ["alpha", "beta"]) {
    const text = read(`mlp/${adapter}/adapter_config.json`);
    const c = ShiraConfig.fromJSON(text);
    assert.equal(c.toJSONString(), text);
    assert.deepEqual(c.warnings, []);
    assert.equal(c.inferenceMode, true);
    assert.deepEqual(c.autoMapping, { base_model_class: "MLP", parent_library: "__main__" });
    const again = ShiraConfig.fromJSON(c.toJSON() as unknown as Record<string, unknown>);
    assert.deepEqual(again.toJSON(), c.toJSON());
  }
  const a = ShiraConfig.fromJSON(read("mlp/alpha/adapter_config.json"));
  assert.equal(a.r, 1);
  assert.equal(a.randomSeed, 3);
  assert.deepEqual(a.targetModules, ["lin0", "lin2"]);
  const full = new ShiraConfig({
    r: 7, maskType: "struct", randomSeed: 2n ** 60n, targetModules: ".*\\.(q|v)_proj", fanInFanOut: true, initWeights: false,
    modulesToSave: ["classifier"], taskType: "CAUSAL_LM", baseModelNameOrPath: "meta/llama", revision: "main",
    inferenceMode: false, peftVersion: "0.17.1", autoMapping: null,
  });
  const back = ShiraConfig.fromJSON(full.toJSON() as unknown as Record<string, unknown>);
  assert.deepEqual(back.toJSON(), full.toJSON());
  assert.equal(back.randomSeed, 2n ** 60n);
  assert.match(full.toJSONString(), /"random_seed": 1152921504606846976,/);
  assert.match(full.toJSONString(), /"target_modules": "\.\*\\\\\.\(q\|v\)_proj",/);
  // a parsed text round trip too (seed below 2^53)
  const small = ShiraConfig.fromJSON({ ...full.toJSON(), random_seed: 99, mask_type: "wm" });
  assert.equal(ShiraConfig.fromJSON(small.toJSONString()).toJSONString(), small.toJSONString());
});

test("fromJSON rejects bad/peft_type_lora (CONFIG_PEFT_TYPE) and bad/r_zero (CONFIG_R)", () => {
  const e1 = assertConfigError(() => ShiraConfig.fromJSON(read("bad/peft_type_lora/adapter_config.json")), "CONFIG_PEFT_TYPE", /"LORA"/);
  assert.equal(e1.details["value"], "LORA");
  const e2 = assertConfigError(
    () => ShiraConfig.fromJSON(read("bad/r_zero/adapter_config.json")),
    "CONFIG_R",
    /^`r` should be a positive integer value but the value passed is 0$/,
  );
  assert.equal(e2.details["field"], "r");
  assertConfigError(() => ShiraConfig.fromJSON("{ not json"), "CONFIG_INVALID", /not valid JSON/);
  assertConfigError(() => ShiraConfig.fromJSON("[1, 2]"), "CONFIG_INVALID");
  assertConfigError(() => ShiraConfig.fromJSON({ peft_type: "SHIRA", r: null }), "CONFIG_R", /None/);
  assertConfigError(() => ShiraConfig.fromJSON({ peft_type: "SHIRA", inference_mode: "yes" }), "CONFIG_INVALID", /inference_mode/);
  assertConfigError(() => ShiraConfig.fromJSON({ peft_type: "shira" }), "CONFIG_PEFT_TYPE");
});

test("fromJSON drops unknown keys with a warning, keeps unknown mask types with a warning", () => {
  const obj = JSON.parse(read("mlp/alpha/adapter_config.json")) as Record<string, unknown>;
  obj["zeta_option"] = 1;
  obj["exclude_modules"] = null;
  obj["mask_type"] = "my_custom_mask";
  const seen: string[] = [];
  const c = ShiraConfig.fromJSON(obj, { onWarning: (m) => seen.push(m) });
  assert.equal(seen.length, 2);
  assert.deepEqual(c.warnings, seen);
  assert.match(seen[0]!, /\["exclude_modules","zeta_option"\]/);
  assert.match(seen[1]!, /my_custom_mask/);
  assert.equal(c.maskType, "my_custom_mask");
  assert.ok(!("zeta_option" in c.toJSON()));
  assertConfigError(() => c.resolveMaskFn(), "CONFIG_INVALID", /my_custom_mask/);
  // missing keys take PEFT's defaults; a missing peft_type is a warning
  const d = ShiraConfig.fromJSON({ r: 4 });
  assert.equal(d.r, 4);
  assert.equal(d.maskType, "random");
  assert.match(d.warnings[0]!, /peft_type/);
});

test("constructor validation: clear errors naming field and value", () => {
  assertConfigError(() => new ShiraConfig({ r: 0 }), "CONFIG_R", /^`r` should be a positive integer value but the value passed is 0$/);
  assertConfigError(() => new ShiraConfig({ r: -3 }), "CONFIG_R", /-3/);
  assertConfigError(() => new ShiraConfig({ r: 1.5 }), "CONFIG_R", /1\.5/);
  assertConfigError(() => new ShiraConfig({ r: "8" as unknown as number }), "CONFIG_R", /"8"/);
  assertConfigError(() => new ShiraConfig({ maskType: "magic" }), "CONFIG_INVALID", /mask_type.*"magic"/);
  assertConfigError(() => new ShiraConfig({ targetModules: 5 as unknown as string }), "CONFIG_INVALID", /target_modules.*5/);
  assertConfigError(() => new ShiraConfig({ targetModules: ["a", 3] as unknown as string[] }), "CONFIG_INVALID", /target_modules`\[1\].*3/);
  assertConfigError(() => new ShiraConfig({ targetModules: "lin(" }), "CONFIG_INVALID", /regular expression.*"lin\("/);
  assertConfigError(() => new ShiraConfig({ taskType: "CLASSIFY" }), "CONFIG_INVALID", /Invalid task type: 'CLASSIFY'/);
  assertConfigError(() => new ShiraConfig({ randomSeed: 1.5 }), "CONFIG_INVALID", /random_seed.*1\.5/);
  assertConfigError(() => new ShiraConfig({ fanInFanOut: 1 as unknown as boolean }), "CONFIG_INVALID", /fan_in_fan_out/);
  assertConfigError(() => new ShiraConfig({ modulesToSave: "head" as unknown as string[] }), "CONFIG_INVALID", /modules_to_save/);
  assertConfigError(() => new ShiraConfig({ autoMapping: "MLP" as unknown as null }), "CONFIG_INVALID", /auto_mapping/);
  assertConfigError(() => new ShiraConfig({ maskFn: 3 as unknown as MaskFn, maskType: "x" }), "CONFIG_INVALID", /maskFn/);
  const c = new ShiraConfig();
  c.r = 0;
  assertConfigError(() => c.validate(), "CONFIG_R");
  // accepted: custom mask type with a maskFn; unknown type in inference mode (a saved adapter); our strategies
  const fn: MaskFn = (layer, r) => structMask(layer.outFeatures, layer.inFeatures, r);
  assert.equal(new ShiraConfig({ maskType: "my_mask", maskFn: fn }).resolveMaskFn(), fn);
  assert.equal(new ShiraConfig({ maskType: "my_mask", inferenceMode: true }).maskType, "my_mask");
  for (const t of ["random", "wm", "grad", "snip", "struct"]) assert.equal(new ShiraConfig({ maskType: t }).maskType, t);
  // maskFn and maskOptions are not serialized
  const withFn = new ShiraConfig({ maskType: "my_mask", maskFn: fn, maskOptions: { k: 1 } });
  assert.ok(!withFn.toJSONString().includes("mask_fn") && !withFn.toJSONString().includes("mask_options"));
});

test("resolveMaskFn / maskFnOptions reproduce PEFT's random mask for a config", () => {
  const c = new ShiraConfig({ r: 1, randomSeed: 3, maskOptions: { extra: true } });
  assert.deepEqual(c.maskFnOptions(), { extra: true, randomSeed: 3 });
  const fn = c.resolveMaskFn();
  const weight = new Float32Array(200);
  assert.deepEqual(fn({ name: "lin0", outFeatures: 20, inFeatures: 10, weight }, c.r, c.maskFnOptions()), randomMask(20, 10, 1, 3));
  assert.deepEqual(new ShiraConfig({ maskType: "struct", maskOptions: { a: 1 } }).maskFnOptions(), { a: 1 });
});

test("matchesTarget: PEFT's check_target_module_exists semantics", () => {
  // list: exact name or "." + entry suffix
  assert.equal(matchesTarget(["lin0", "lin2"], "lin0"), true);
  assert.equal(matchesTarget(["lin0", "lin2"], "lin1"), false);
  assert.equal(matchesTarget(["q_proj"], "model.layers.0.self_attn.q_proj"), true);
  assert.equal(matchesTarget(["proj"], "model.layers.0.self_attn.q_proj"), false);
  assert.equal(matchesTarget(["self_attn.q_proj"], "model.layers.0.self_attn.q_proj"), true);
  assert.equal(matchesTarget(["lin"], "lin0"), false);
  assert.equal(matchesTarget([], "lin0"), false);
  assert.equal(matchesTarget(new Set(["lin0"]), "a.lin0"), true);
  // string: re.fullmatch
  assert.equal(matchesTarget("lin[02]", "lin0"), true);
  assert.equal(matchesTarget("lin[02]", "lin1"), false);
  assert.equal(matchesTarget("lin", "lin0"), false);
  assert.equal(matchesTarget("lin0|lin2", "lin2"), true); // alternation is anchored as a whole
  assert.equal(matchesTarget("lin0|lin2", "xlin2"), false);
  assert.equal(matchesTarget(".*decoder.*(SelfAttention|EncDecAttention).*(q|v)$", "decoder.block.0.layer.0.SelfAttention.q"), true);
  assert.equal(matchesTarget(".*decoder.*(SelfAttention|EncDecAttention).*(q|v)$", "encoder.block.0.layer.0.SelfAttention.q"), false);
  assert.equal(matchesTarget(".*\\.(?P<kind>q|v)_proj", "model.layers.3.self_attn.v_proj"), true);
  assert.equal(matchesTarget("(?i)LIN0", "lin0"), true);
  assert.equal(matchesTarget("\\Alin0\\Z", "lin0"), true);
  assert.equal(matchesTarget(null, "lin0"), false);
  // modules_to_save are never targets
  assert.equal(matchesTarget(["score"], "model.score", ["score"]), false);
  assert.equal(matchesTarget(["q"], "model.score.q", ["score"]), false);
  assert.equal(matchesTarget(["q"], "model.scores.q", ["score"]), true);
  assertConfigError(() => matchesTarget("lin(", "lin0"), "CONFIG_INVALID");
});
