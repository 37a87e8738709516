/**
 * Python's `json.dumps` text, byte for byte, so that `adapter_config.json` files written here are identical to
 * the ones PEFT writes (`json.dumps(output_dict, indent=2, sort_keys=True)`).
 *
 * Differences from `JSON.stringify` that matter: `ensure_ascii` escapes every character outside `' '..'~'` as
 * `\uXXXX` (lowercase hex, UTF-16 surrogate pairs for astral characters), keys sort by code point, floats print
 * with Python's `repr` (`1.0`, `1e-05`, `1e+16`, `NaN`, `Infinity`), separators are `","`/`": "` with an indent
 * and `", "`/`": "` without, and empty containers are `[]`/`{}` even when indenting.
 *
 * @module
 */

import { ConfigError } from "../errors.js";

/**
 * Marks a Number as a Python `float`, so `pythonJsonDumps` writes `1.0` rather than `1` (a JS Number cannot tell
 * them apart). Non-integral numbers, NaN and infinities are always written as floats, marked or not.
 *
 * ```ts
 * pythonJsonDumps({ scale: new PyFloat(1) }); // '{"scale": 1.0}'
 * ```
 */
export class PyFloat {
  constructor(readonly value: number) {}
}

/**
 * Shorthand for `new PyFloat(value)`.
 *
 * ```ts
 * pythonJsonDumps([pyFloat(2), 2]); // '[2.0, 2]'
 * ```
 */
export function pyFloat(value: number): PyFloat {
  return new PyFloat(value);
}

/** Options of {@link pythonJsonDumps}, named after `json.dumps`'s keyword arguments. */
export interface PythonJsonOptions {
  /** `indent`: a count of spaces, a string, or `null` for the one-line form (default `null`, as Python). */
  indent?: number | string | null;
  /** `sort_keys` (default `false`, as Python). Sorting is by Unicode code point, as Python sorts `str`. */
  sortKeys?: boolean;
  /** `ensure_ascii` (default `true`, as Python). */
  ensureAscii?: boolean;
  /**
   * Object keys whose integral Number values are Python floats (e.g. `new Set(["lora_dropout"])`): they are written
   * `1.0` rather than `1`, also inside arrays under such a key. An alternative to wrapping values in {@link PyFloat}.
   */
  floatKeys?: ReadonlySet<string>;
}

/** Compare two strings by Unicode code point (Python's `str` order), not by UTF-16 code unit. */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const ca = a.charCodeAt(i);
    const cb = b.charCodeAt(i);
    if (ca === cb) continue;
    // Only surrogates (0xd800..0xdfff) are out of code point order against 0xe000..0xffff; lift them above.
    const ka = ca >= 0xd800 && ca <= 0xdfff ? ca + 0x2000 : ca >= 0xe000 ? ca - 0x800 : ca;
    const kb = cb >= 0xd800 && cb <= 0xdfff ? cb + 0x2000 : cb >= 0xe000 ? cb - 0x800 : cb;
    return ka - kb;
  }
  return a.length - b.length;
}

/**
 * Python's `repr(float)` (shortest round-trip digits; exponent form when the decimal exponent is `< -4` or `>= 16`;
 * `.0` appended to integral fixed-form values; `NaN`, `Infinity`, `-Infinity` as `json.dumps` writes them).
 *
 * ```ts
 * pythonFloatRepr(1);      // "1.0"
 * pythonFloatRepr(1e-5);   // "1e-05"
 * pythonFloatRepr(1e16);   // "1e+16"
 * pythonFloatRepr(-0);     // "-0.0"
 * ```
 */
export function pythonFloatRepr(x: number): string {
  if (Number.isNaN(x)) return "NaN";
  if (x === Infinity) return "Infinity";
  if (x === -Infinity) return "-Infinity";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const sign = x < 0 ? "-" : "";
  // toExponential() with no argument gives the shortest round-trip digits, like Python's repr.
  const [mant, expStr] = Math.abs(x).toExponential().split("e") as [string, string];
  const digits = mant.replace(".", "");
  const e = Number(expStr);
  if (e < -4 || e >= 16) {
    const m = digits.length === 1 ? digits : `${digits[0]}.${digits.slice(1)}`;
    const ae = Math.abs(e);
    return `${sign}${m}e${e < 0 ? "-" : "+"}${ae < 10 ? "0" : ""}${ae}`;
  }
  if (e < 0) return `${sign}0.${"0".repeat(-e - 1)}${digits}`;
  if (digits.length <= e + 1) return `${sign}${digits}${"0".repeat(e + 1 - digits.length)}.0`;
  return `${sign}${digits.slice(0, e + 1)}.${digits.slice(e + 1)}`;
}

const SHORT_ESCAPES: Record<number, string> = {
  0x22: '\\"',
  0x5c: "\\\\",
  0x08: "\\b",
  0x0c: "\\f",
  0x0a: "\\n",
  0x0d: "\\r",
  0x09: "\\t",
};

/**
 * A Python `json` string literal (`encode_basestring_ascii` when `ensureAscii`, else `encode_basestring`).
 *
 * ```ts
 * pythonJsonString("é😀"); // '"\\u00e9\\ud83d\\ude00"'
 * ```
 */
export function pythonJsonString(s: string, ensureAscii = true): string {
  let out = '"';
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let esc: string | undefined;
    if (c === 0x22 || c === 0x5c || c < 0x20) {
      esc = SHORT_ESCAPES[c] ?? `\\u${c.toString(16).padStart(4, "0")}`;
    } else if (ensureAscii && c > 0x7e) {
      esc = `\\u${c.toString(16).padStart(4, "0")}`; // code units: astral characters become surrogate pairs
    }
    if (esc !== undefined) {
      out += s.slice(start, i) + esc;
      start = i + 1;
    }
  }
  return out + s.slice(start) + '"';
}

function typeName(v: unknown): string {
  if (v === undefined) return "undefined";
  if (typeof v === "function") return "function";
  if (typeof v === "symbol") return "symbol";
  if (typeof v === "object" && v !== null) return (v as object).constructor?.name ?? "object";
  return typeof v;
}

/**
 * Exactly Python's `json.dumps(value, indent=..., sort_keys=..., ensure_ascii=...)`.
 *
 * Mapping: `null` -> `null`; booleans; strings; `bigint` and integral Numbers -> Python `int` (all digits, never
 * an exponent); non-integral Numbers, NaN, infinities and {@link PyFloat} values -> Python `float` repr; arrays ->
 * lists; plain objects and `Map<string, unknown>` (insertion order kept when not sorting) -> dicts. Anything else
 * (`undefined`, functions, typed arrays, class instances) throws `ConfigError` `CONFIG_INVALID` naming the path,
 * as Python raises `TypeError: Object of type X is not JSON serializable`; so does a circular reference.
 *
 * ```ts
 * pythonJsonDumps({ b: [1, 2], a: null }, { indent: 2, sortKeys: true });
 * // '{\n  "a": null,\n  "b": [\n    1,\n    2\n  ]\n}'
 * ```
 */
export function pythonJsonDumps(value: unknown, options: PythonJsonOptions = {}): string {
  const indentOpt = options.indent ?? null;
  const indentUnit = indentOpt === null ? null : typeof indentOpt === "number" ? " ".repeat(indentOpt) : indentOpt;
  const sortKeys = options.sortKeys ?? false;
  const ensureAscii = options.ensureAscii ?? true;
  const floatKeys = options.floatKeys;
  const itemSep = indentUnit === null ? ", " : ",";
  const stack = new Set<object>();

  const enc = (v: unknown, level: number, asFloat: boolean, path: string): string => {
    if (v === null) return "null";
    if (v === true) return "true";
    if (v === false) return "false";
    if (typeof v === "string") return pythonJsonString(v, ensureAscii);
    if (typeof v === "bigint") return v.toString();
    if (typeof v === "number") {
      if (!asFloat && Number.isInteger(v)) return Object.is(v, -0) ? "0" : BigInt(v).toString();
      return pythonFloatRepr(v);
    }
    if (v instanceof PyFloat) return pythonFloatRepr(v.value);
    const isArray = Array.isArray(v);
    const isMap = v instanceof Map;
    const isPlain =
      typeof v === "object" && !isArray && !isMap && (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null);
    if (!isArray && !isMap && !isPlain) {
      throw new ConfigError("CONFIG_INVALID", `Object of type ${typeName(v)} is not JSON serializable (at ${path})`, {
        path,
        type: typeName(v),
      });
    }
    const obj = v as object;
    if (stack.has(obj)) {
      throw new ConfigError("CONFIG_INVALID", `Circular reference detected (at ${path})`, { path });
    }
    stack.add(obj);
    const inner = indentUnit === null ? "" : "\n" + indentUnit.repeat(level + 1);
    const outer = indentUnit === null ? "" : "\n" + indentUnit.repeat(level);
    let text: string;
    if (isArray) {
      const arr = v as unknown[];
      if (arr.length === 0) text = "[]";
      else {
        const parts = arr.map((x, i) => enc(x, level + 1, asFloat, `${path}[${i}]`));
        text = "[" + inner + parts.join(itemSep + inner) + outer + "]";
      }
    } else {
      let entries: [string, unknown][];
      if (isMap) {
        entries = [];
        for (const [k, x] of v as Map<unknown, unknown>) {
          if (typeof k !== "string") {
            throw new ConfigError("CONFIG_INVALID", `dict keys must be strings, got ${typeName(k)} (at ${path})`, {
              path,
            });
          }
          entries.push([k, x]);
        }
      } else {
        entries = Object.entries(obj);
      }
      if (sortKeys) entries.sort((a, b) => compareCodePoints(a[0], b[0]));
      if (entries.length === 0) text = "{}";
      else {
        const parts = entries.map(
          ([k, x]) =>
            pythonJsonString(k, ensureAscii) +
            ": " +
            enc(x, level + 1, asFloat || (floatKeys?.has(k) ?? false), `${path}.${k}`),
        );
        text = "{" + inner + parts.join(itemSep + inner) + outer + "}";
      }
    }
    stack.delete(obj);
    return text;
  };

  return enc(value, 0, false, "$");
}
