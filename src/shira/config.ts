/**
 * `ShiraConfig`: HuggingFace PEFT's `ShiraConfig` (with the inherited `PeftConfig` fields), camelCase in
 * TypeScript and PEFT's snake_case in `adapter_config.json`, plus PEFT's target-module matching.
 *
 * @module
 */

import { ConfigError } from "../errors.js";
import { BUILTIN_MASK_TYPES, builtinMaskFn, type BuiltinMaskType, type MaskFn } from "./mask.js";
import { compareCodePoints, pythonJsonDumps } from "./python-json.js";

/** PEFT's `TaskType` values (`task_type` must be one of them, or null). */
export const TASK_TYPES = [
  "SEQ_CLS",
  "SEQ_2_SEQ_LM",
  "CAUSAL_LM",
  "TOKEN_CLS",
  "QUESTION_ANS",
  "FEATURE_EXTRACTION",
] as const;

/**
 * The PEFT version recorded in `peft_version` when none is given. PEFT writes its own version there
 * (`peft.__version__`); "0.20.0" is the version that wrote the reference fixtures, so configs built here
 * serialize byte-identically to them. Pass `peftVersion` to record something else.
 */
export const DEFAULT_PEFT_VERSION = "0.20.0";

/** `auto_mapping`: PEFT records the base model's class and module when `task_type` is null. */
export interface AutoMapping {
  base_model_class: string;
  parent_library: string;
  [key: string]: unknown;
}

/** `target_modules`: a list of names/suffixes, a full-match regular expression, or null. */
export type TargetModules = string[] | string | null;

/** A mask strategy name: a built-in one or any name paired with a custom `maskFn`. */
export type MaskType = BuiltinMaskType | (string & {});

/** Constructor argument of {@link ShiraConfig}: every field optional, camelCase. */
export interface ShiraConfigInit {
  r?: number;
  maskType?: MaskType;
  randomSeed?: number | bigint | null;
  targetModules?: TargetModules;
  fanInFanOut?: boolean;
  initWeights?: boolean;
  modulesToSave?: string[] | null;
  taskType?: string | null;
  baseModelNameOrPath?: string | null;
  revision?: string | null;
  inferenceMode?: boolean;
  peftVersion?: string | null;
  autoMapping?: AutoMapping | null;
  maskFn?: MaskFn | null;
  maskOptions?: Record<string, unknown>;
}

/** The snake_case object PEFT writes to `adapter_config.json` (exact key set). */
export interface ShiraConfigJSON {
  auto_mapping: AutoMapping | null;
  base_model_name_or_path: string | null;
  fan_in_fan_out: boolean;
  inference_mode: boolean;
  init_weights: boolean;
  mask_type: string;
  modules_to_save: string[] | null;
  peft_type: "SHIRA";
  peft_version: string;
  r: number;
  random_seed: number | bigint | null;
  revision: string | null;
  target_modules: string[] | string | null;
  task_type: string | null;
}

/** Options of {@link ShiraConfig.fromJSON}. */
export interface FromJSONOptions {
  /** Called once per warning (unknown keys dropped, unknown `mask_type`, missing `peft_type`). */
  onWarning?: (message: string) => void;
}

/** camelCase field <-> snake_case JSON key, in JSON key order. */
export const SHIRA_CONFIG_KEYS = {
  autoMapping: "auto_mapping",
  baseModelNameOrPath: "base_model_name_or_path",
  fanInFanOut: "fan_in_fan_out",
  inferenceMode: "inference_mode",
  initWeights: "init_weights",
  maskType: "mask_type",
  modulesToSave: "modules_to_save",
  peftType: "peft_type",
  peftVersion: "peft_version",
  r: "r",
  randomSeed: "random_seed",
  revision: "revision",
  targetModules: "target_modules",
  taskType: "task_type",
} as const;

const JSON_TO_FIELD: Record<string, string> = Object.fromEntries(
  Object.entries(SHIRA_CONFIG_KEYS).map(([camel, snake]) => [snake, camel]),
);

function invalid(field: string, message: string, value: unknown): ConfigError {
  return new ConfigError("CONFIG_INVALID", `\`${field}\` ${message}, got ${show(value)}`, { field, value });
}

function show(v: unknown): string {
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v === "function") return "a function";
  if (v === undefined) return "undefined";
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function checkStringOrNull(field: string, v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v !== "string") throw invalid(field, "must be a string or null", v);
  return v;
}

function checkBool(field: string, v: unknown, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== "boolean") throw invalid(field, "must be a boolean", v);
  return v;
}

function checkStringList(field: string, v: unknown): string[] {
  if (!Array.isArray(v)) throw invalid(field, "must be a list of strings", v);
  v.forEach((x, i) => {
    if (typeof x !== "string") {
      throw new ConfigError("CONFIG_INVALID", `\`${field}\`[${i}] must be a string, got ${show(x)}`, {
        field,
        value: x,
        index: i,
      });
    }
  });
  return [...v] as string[];
}

// ---------------------------------------------------------------------------------------------------------------
// Python regular expressions -> JavaScript

/**
 * Translate the Python-only parts of a `re` pattern that JavaScript spells differently: `(?P<name>` ->
 * `(?<name>`, `(?P=name)` -> `\k<name>`, `\A` -> `^`, `\Z` -> `$`, and leading global flags `(?i)`, `(?s)`,
 * `(?m)` (combinable, e.g. `(?is)`) -> RegExp flags. Anything else is passed through: patterns PEFT users write
 * for module names (`.*`, alternation, classes, `\d`, `$`) mean the same in both dialects.
 */
function pythonRegexToJs(pattern: string): { source: string; flags: string } {
  let flags = "";
  let rest = pattern;
  const lead = /^\(\?([aiLmsux]+)\)/.exec(rest);
  if (lead) {
    for (const f of lead[1]!) {
      if (f === "i" || f === "s" || f === "m") {
        if (!flags.includes(f)) flags += f;
      } else if (f !== "u") {
        throw new ConfigError("CONFIG_INVALID", `\`target_modules\` regex flag (?${f}) is not supported: ${pattern}`, {
          field: "target_modules",
          value: pattern,
        });
      }
    }
    rest = rest.slice(lead[0].length);
  }
  let out = "";
  for (let i = 0; i < rest.length; i++) {
    const c = rest[i]!;
    if (c === "\\" && i + 1 < rest.length) {
      const d = rest[i + 1]!;
      if (d === "A") out += "^";
      else if (d === "Z") out += "$";
      else out += c + d;
      i++;
    } else if (rest.startsWith("(?P<", i)) {
      out += "(?<";
      i += 3;
    } else if (rest.startsWith("(?P=", i)) {
      const end = rest.indexOf(")", i);
      if (end < 0) {
        out += c;
        continue;
      }
      out += `\\k<${rest.slice(i + 4, end)}>`;
      i = end;
    } else out += c;
  }
  return { source: out, flags };
}

const regexCache = new Map<string, RegExp>();

/**
 * Compile a `target_modules` string as Python's `re.fullmatch` would use it (anchored `^(?:...)$`).
 * Throws `CONFIG_INVALID` naming the pattern when it is not a valid regular expression.
 */
function fullMatchRegex(pattern: string): RegExp {
  let re = regexCache.get(pattern);
  if (re === undefined) {
    const { source, flags } = pythonRegexToJs(pattern);
    try {
      re = new RegExp(`^(?:${source})$`, flags);
    } catch (e) {
      throw new ConfigError(
        "CONFIG_INVALID",
        `\`target_modules\` is not a valid regular expression: ${JSON.stringify(pattern)} (${(e as Error).message})`,
        { field: "target_modules", value: pattern },
      );
    }
    if (regexCache.size > 256) regexCache.clear();
    regexCache.set(pattern, re);
  }
  return re;
}

/**
 * PEFT's `check_target_module_exists` for SHiRA: does module `moduleName` match `targetModules`?
 *
 * - a string is a regular expression that must match the whole name (`re.fullmatch`);
 * - a list matches a name equal to an entry or ending with `"." + entry`;
 * - `null` matches nothing.
 *
 * When `modulesToSave` is given, a module inside one of them never matches (PEFT's guard: an adapter must not
 * target a module that is saved whole: `re.match(rf"(^|.*\.){m}($|\..*)", name)`).
 *
 * ```ts
 * matchesTarget(["q_proj", "v_proj"], "model.layers.0.self_attn.q_proj"); // true
 * matchesTarget(["proj"], "model.q_proj");                                // false (suffix must follow a ".")
 * matchesTarget(".*lin[02]", "lin2");                                     // true
 * matchesTarget("lin", "lin2");                                           // false (full match)
 * ```
 */
export function matchesTarget(
  targetModules: TargetModules | ReadonlySet<string>,
  moduleName: string,
  modulesToSave?: readonly string[] | null,
): boolean {
  if (modulesToSave && modulesToSave.length > 0) {
    for (const m of modulesToSave) {
      const { source, flags } = pythonRegexToJs(m);
      let re: RegExp;
      try {
        re = new RegExp(`^(?:^|.*\\.)${source}(?:$|\\..*)`, flags);
      } catch (e) {
        throw new ConfigError(
          "CONFIG_INVALID",
          `\`modules_to_save\` entry is not a valid regular expression: ${JSON.stringify(m)} (${(e as Error).message})`,
          { field: "modules_to_save", value: m },
        );
      }
      if (re.test(moduleName)) return false;
    }
  }
  if (targetModules === null || targetModules === undefined) return false;
  if (typeof targetModules === "string") return fullMatchRegex(targetModules).test(moduleName);
  for (const t of targetModules) {
    if (moduleName === t || moduleName.endsWith("." + t)) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------------------------

/**
 * Configuration of a SHiRA adapter, mirroring PEFT's `ShiraConfig` field for field.
 *
 * | TS field | JSON key | default | notes |
 * |---|---|---|---|
 * | `r` | `r` | 32 | nnz per layer = `r * (out + in)`; positive integer |
 * | `maskType` | `mask_type` | `"random"` | also `"wm"`, `"grad"`, `"snip"`, `"struct"`, or any name with `maskFn` |
 * | `randomSeed` | `random_seed` | null | null = PyTorch's default seed 67280421310721 |
 * | `targetModules` | `target_modules` | null | list (written sorted, deduplicated) or full-match regex |
 * | `fanInFanOut` | `fan_in_fan_out` | false | |
 * | `initWeights` | `init_weights` | true | zeros; false = random normal values (testing) |
 * | `modulesToSave` | `modules_to_save` | null | |
 * | `taskType` | `task_type` | null | one of {@link TASK_TYPES} |
 * | `baseModelNameOrPath` | `base_model_name_or_path` | null | |
 * | `revision` | `revision` | null | |
 * | `inferenceMode` | `inference_mode` | false | PEFT writes true on save |
 * | `peftType` | `peft_type` | `"SHIRA"` | read-only |
 * | `peftVersion` | `peft_version` | `"0.20.0"` | {@link DEFAULT_PEFT_VERSION} |
 * | `autoMapping` | `auto_mapping` | null | `{ base_model_class, parent_library }` |
 * | `maskFn` | - | null | custom {@link MaskFn}, not serialized |
 * | `maskOptions` | - | `{}` | extra arguments for the mask function, not serialized |
 *
 * Validation happens in the constructor (and again in {@link ShiraConfig.validate}): `r` -> `CONFIG_R` with
 * PEFT's message; unknown `maskType` without `maskFn` -> `CONFIG_INVALID` (except with `inferenceMode: true`, the
 * state of a saved adapter, whose stored indices make the mask function unnecessary, as in PEFT); wrong types ->
 * `CONFIG_INVALID` naming the field and value.
 *
 * ```ts
 * const config = new ShiraConfig({ r: 32, targetModules: ["q_proj", "v_proj"], randomSeed: 56 });
 * config.toJSONString(); // PEFT's adapter_config.json text
 * const back = ShiraConfig.fromJSON(config.toJSONString());
 * ```
 */
export class ShiraConfig {
  r: number;
  maskType: MaskType;
  randomSeed: number | bigint | null;
  targetModules: TargetModules;
  fanInFanOut: boolean;
  initWeights: boolean;
  modulesToSave: string[] | null;
  taskType: string | null;
  baseModelNameOrPath: string | null;
  revision: string | null;
  inferenceMode: boolean;
  peftVersion: string;
  autoMapping: AutoMapping | null;
  /** A custom mask function (PEFT's `config.mask_fn`); takes precedence over `maskType`. Not serialized. */
  maskFn: MaskFn | null;
  /** Extra arguments passed to the mask function (PEFT's `**kwargs`). Not serialized. */
  maskOptions: Record<string, unknown>;
  /** Warnings collected by {@link ShiraConfig.fromJSON} (unknown keys dropped, ...). Not serialized. */
  readonly warnings: string[] = [];

  /** Always `"SHIRA"`. */
  get peftType(): "SHIRA" {
    return "SHIRA";
  }

  constructor(init: ShiraConfigInit = {}) {
    if (!isPlainObject(init as unknown)) throw invalid("ShiraConfig", "expects an object of fields", init);
    this.r = init.r ?? 32;
    this.maskType = init.maskType ?? "random";
    this.randomSeed = init.randomSeed ?? null;
    this.targetModules = init.targetModules === undefined ? null : init.targetModules;
    this.fanInFanOut = checkBool("fan_in_fan_out", init.fanInFanOut, false);
    this.initWeights = checkBool("init_weights", init.initWeights, true);
    this.modulesToSave = init.modulesToSave ?? null;
    this.taskType = init.taskType ?? null;
    this.baseModelNameOrPath = init.baseModelNameOrPath ?? null;
    this.revision = init.revision ?? null;
    this.inferenceMode = checkBool("inference_mode", init.inferenceMode, false);
    this.peftVersion = init.peftVersion ?? DEFAULT_PEFT_VERSION;
    this.autoMapping = init.autoMapping ?? null;
    this.maskFn = init.maskFn ?? null;
    this.maskOptions = init.maskOptions ?? {};
    this.validate();
  }

  /**
   * Check every field (the constructor calls it; call it again after assigning fields).
   *
   * ```ts
   * const c = new ShiraConfig();
   * c.r = 0;
   * c.validate(); // throws ConfigError CONFIG_R
   * ```
   */
  validate(): void {
    this.validateFields(false);
  }

  private validateFields(lenientMaskType: boolean): void {
    const r = this.r as unknown;
    if (typeof r !== "number" || !Number.isSafeInteger(r) || r <= 0) {
      throw new ConfigError("CONFIG_R", `\`r\` should be a positive integer value but the value passed is ${show(r)}`, {
        field: "r",
        value: r,
      });
    }
    if (typeof this.maskType !== "string" || this.maskType === "") {
      throw invalid("mask_type", "must be a non-empty string", this.maskType);
    }
    if (this.maskFn !== null && typeof this.maskFn !== "function") {
      throw invalid("maskFn", "must be a function or null", this.maskFn);
    }
    if (
      !lenientMaskType &&
      !this.inferenceMode &&
      this.maskFn === null &&
      !(BUILTIN_MASK_TYPES as readonly string[]).includes(this.maskType)
    ) {
      throw new ConfigError(
        "CONFIG_INVALID",
        `\`mask_type\` ${show(this.maskType)} is not recognized (known: ${BUILTIN_MASK_TYPES.join(", ")}); ` +
          "supply your own masking function with `maskFn`",
        { field: "mask_type", value: this.maskType },
      );
    }
    const seed = this.randomSeed as unknown;
    if (seed !== null && !(typeof seed === "bigint" || (typeof seed === "number" && Number.isSafeInteger(seed)))) {
      throw invalid("random_seed", "must be an integer (a bigint above 2^53) or null", seed);
    }
    const tm = this.targetModules as unknown;
    if (typeof tm === "string") fullMatchRegex(tm);
    else if (tm !== null) checkStringList("target_modules", tm);
    if (this.modulesToSave !== null) checkStringList("modules_to_save", this.modulesToSave);
    const task = checkStringOrNull("task_type", this.taskType);
    if (task !== null && !(TASK_TYPES as readonly string[]).includes(task)) {
      throw new ConfigError(
        "CONFIG_INVALID",
        `Invalid task type: '${task}'. Must be one of the following task types: ${TASK_TYPES.join(", ")}.`,
        { field: "task_type", value: task },
      );
    }
    checkStringOrNull("base_model_name_or_path", this.baseModelNameOrPath);
    checkStringOrNull("revision", this.revision);
    checkBool("fan_in_fan_out", this.fanInFanOut, false);
    checkBool("init_weights", this.initWeights, true);
    checkBool("inference_mode", this.inferenceMode, false);
    if (typeof this.peftVersion !== "string") throw invalid("peft_version", "must be a string", this.peftVersion);
    const am = this.autoMapping as unknown;
    if (am !== null) {
      if (!isPlainObject(am)) throw invalid("auto_mapping", "must be an object or null", am);
      for (const key of ["base_model_class", "parent_library"]) {
        if (key in am && typeof am[key] !== "string" && am[key] !== null) {
          throw invalid(`auto_mapping.${key}`, "must be a string", am[key]);
        }
      }
    }
    if (!isPlainObject(this.maskOptions)) throw invalid("maskOptions", "must be a plain object", this.maskOptions);
  }

  /**
   * The mask function to use for new adapters: `maskFn` if set, else the built-in strategy named by `maskType`.
   * Throws `CONFIG_INVALID` when neither exists (an unknown `maskType` loaded from a file).
   *
   * ```ts
   * const fn = new ShiraConfig({ maskType: "struct" }).resolveMaskFn();
   * ```
   */
  resolveMaskFn(): MaskFn {
    if (this.maskFn !== null) return this.maskFn;
    if ((BUILTIN_MASK_TYPES as readonly string[]).includes(this.maskType)) {
      return builtinMaskFn(this.maskType as BuiltinMaskType);
    }
    throw new ConfigError(
      "CONFIG_INVALID",
      `\`mask_type\` ${show(this.maskType)} is not recognized and no \`maskFn\` is set; ` +
        "supply your own masking function with `config.maskFn = myMaskFn`",
      { field: "mask_type", value: this.maskType },
    );
  }

  /**
   * The `options` argument for the mask function: `maskOptions`, plus `randomSeed` for `maskType: "random"`
   * (PEFT passes `random_seed` only to the random mask).
   *
   * ```ts
   * new ShiraConfig({ randomSeed: 3 }).maskFnOptions(); // { randomSeed: 3 }
   * ```
   */
  maskFnOptions(): Record<string, unknown> {
    return this.maskType === "random" ? { ...this.maskOptions, randomSeed: this.randomSeed } : { ...this.maskOptions };
  }

  /**
   * The snake_case object PEFT writes (keys in sorted order; `target_modules` as a list sorted by code point and
   * deduplicated, since PEFT keeps it as a set; a bigint `random_seed` that fits a safe integer becomes a Number).
   *
   * ```ts
   * new ShiraConfig({ r: 4 }).toJSON().r; // 4
   * ```
   */
  toJSON(): ShiraConfigJSON {
    const tm = this.targetModules;
    const seed = this.randomSeed;
    return {
      auto_mapping: this.autoMapping === null ? null : { ...this.autoMapping },
      base_model_name_or_path: this.baseModelNameOrPath,
      fan_in_fan_out: this.fanInFanOut,
      inference_mode: this.inferenceMode,
      init_weights: this.initWeights,
      mask_type: this.maskType,
      modules_to_save: this.modulesToSave === null ? null : [...this.modulesToSave],
      peft_type: "SHIRA",
      peft_version: this.peftVersion,
      r: this.r,
      random_seed:
        typeof seed === "bigint" && seed >= BigInt(Number.MIN_SAFE_INTEGER) && seed <= BigInt(Number.MAX_SAFE_INTEGER)
          ? Number(seed)
          : seed,
      revision: this.revision,
      target_modules: Array.isArray(tm) ? [...new Set(tm)].sort(compareCodePoints) : tm,
      task_type: this.taskType,
    };
  }

  /**
   * PEFT's `adapter_config.json` text: `json.dumps(to_dict(), indent=2, sort_keys=True)`, no trailing newline.
   * (PEFT's `save_pretrained` also sets `inference_mode` to true first; this method writes the field as it is.)
   *
   * ```ts
   * await fs.writeFile("adapter_config.json", config.toJSONString());
   * ```
   */
  toJSONString(): string {
    return pythonJsonDumps(this.toJSON(), { indent: 2, sortKeys: true });
  }

  /**
   * Read a config as PEFT writes it (an object or the JSON text). Missing keys take their defaults; unknown keys
   * are dropped with a warning (as PEFT does for configs from newer versions), as is `runtime_config`; an unknown
   * `mask_type` is kept with a warning (a saved adapter's indices are authoritative). Warnings go to
   * `options.onWarning` and to the returned config's `warnings`.
   *
   * Errors: `peft_type` other than `"SHIRA"` -> `CONFIG_PEFT_TYPE`; `r` not a positive integer -> `CONFIG_R`;
   * malformed JSON or wrong field types -> `CONFIG_INVALID`. Seeds above 2^53 lose precision in `JSON.parse`
   * when given as text (pass an object holding a bigint instead).
   *
   * ```ts
   * const config = ShiraConfig.fromJSON(await fs.readFile("adapter/adapter_config.json", "utf8"));
   * ```
   */
  static fromJSON(json: string | Record<string, unknown>, options: FromJSONOptions = {}): ShiraConfig {
    let obj: unknown = json;
    if (typeof json === "string") {
      try {
        obj = JSON.parse(json);
      } catch (e) {
        throw new ConfigError("CONFIG_INVALID", `adapter_config.json is not valid JSON: ${(e as Error).message}`, {});
      }
    }
    if (!isPlainObject(obj)) throw invalid("adapter_config.json", "must hold a JSON object", obj);
    const warnings: string[] = [];
    const warn = (m: string): void => {
      warnings.push(m);
      options.onWarning?.(m);
    };
    if (!("peft_type" in obj)) warn("adapter_config.json has no `peft_type`; assuming SHIRA");
    else if (obj["peft_type"] !== "SHIRA") {
      throw new ConfigError(
        "CONFIG_PEFT_TYPE",
        `adapter_config.json has peft_type ${show(obj["peft_type"])}, expected "SHIRA": not a SHiRA adapter`,
        { field: "peft_type", value: obj["peft_type"] },
      );
    }
    const init: Record<string, unknown> = {};
    const unknown: string[] = [];
    for (const [key, value] of Object.entries(obj)) {
      if (key === "peft_type") continue;
      const field = Object.hasOwn(JSON_TO_FIELD, key) ? JSON_TO_FIELD[key] : undefined;
      if (field === undefined) unknown.push(key);
      else init[field] = value;
    }
    if (unknown.length > 0) {
      unknown.sort(compareCodePoints);
      warn(
        `Unexpected keyword arguments ${JSON.stringify(unknown)} for class ShiraConfig, these are ignored. This ` +
          "probably means that you're loading a configuration file that was saved using a higher version of the " +
          "library and additional parameters have been introduced since.",
      );
    }
    // JSON null means "default" only where PEFT's default is null; booleans/r must be present with their type.
    for (const [field, v] of Object.entries(init)) {
      if (v === null && ["r", "maskType", "fanInFanOut", "initWeights", "inferenceMode"].includes(field)) {
        const key = SHIRA_CONFIG_KEYS[field as keyof typeof SHIRA_CONFIG_KEYS];
        if (field === "r") {
          throw new ConfigError("CONFIG_R", "`r` should be a positive integer value but the value passed is None", {
            field: "r",
            value: null,
          });
        }
        throw invalid(key, "must not be null", v);
      }
    }
    const config = Object.create(ShiraConfig.prototype) as ShiraConfig;
    Object.assign(config as unknown as Record<string, unknown>, {
      r: init["r"] ?? 32,
      maskType: init["maskType"] ?? "random",
      randomSeed: init["randomSeed"] ?? null,
      targetModules: init["targetModules"] ?? null,
      fanInFanOut: init["fanInFanOut"] ?? false,
      initWeights: init["initWeights"] ?? true,
      modulesToSave: init["modulesToSave"] ?? null,
      taskType: init["taskType"] ?? null,
      baseModelNameOrPath: init["baseModelNameOrPath"] ?? null,
      revision: init["revision"] ?? null,
      inferenceMode: init["inferenceMode"] ?? false,
      peftVersion: init["peftVersion"] ?? DEFAULT_PEFT_VERSION,
      autoMapping: init["autoMapping"] ?? null,
      maskFn: null,
      maskOptions: {},
      warnings,
    });
    config.validateFields(true);
    if (!(BUILTIN_MASK_TYPES as readonly string[]).includes(config.maskType)) {
      warn(
        `mask_type ${show(config.maskType)} is not recognized; the stored indices are used when loading, and a ` +
          "custom `maskFn` is needed to create new masks",
      );
    }
    return config;
  }
}

/**
 * Checks an adapter name before anything is written: a non-empty string of at most 255 UTF-8 bytes, without NUL,
 * `/` or `\\` (it becomes a folder name when saved), not starting with `.` or white space. Names such as
 * `constructor` or `__proto__` are ordinary names. Throws `ConfigError` `CONFIG_INVALID`.
 */
export function checkAdapterName(name: unknown, what = "adapter name"): asserts name is string {
  const fail = (why: string): never => {
    throw new ConfigError("CONFIG_INVALID", `${what} ${typeof name === "string" ? JSON.stringify(name) : String(name)} ${why}`, { adapter: name, argument: "adapterName" });
  };
  if (typeof name !== "string") fail(`must be a string, got ${name === null ? "null" : typeof name}`);
  const n = name as string;
  if (n.length === 0) fail("must be non-empty");
  if (n.includes("\0")) fail("must not contain NUL");
  if (n.includes("/") || n.includes("\\")) fail('must not contain "/" or "\\"');
  if (n.startsWith(".") || /^\s/.test(n)) fail('must not start with "." or white space');
  const bytes = new TextEncoder().encode(n).length;
  if (bytes > 255) fail(`is ${bytes} bytes in UTF-8 (at most 255)`);
}
