/**
 * Argument parsing for the `shira` command, on Node's `util.parseArgs` (its tokens, in command-line order):
 * `--flag`, `--key value`, `--key=value`, `-h` for `--help`, repeated keys (collected in order, for options marked
 * `multiple`), positionals, and `--` (everything after it is positional, even `--json`).
 *
 * The rules, each broken one a usage error (exit code 2) with one line naming the option:
 * - an option the command does not have (`--nope`, `-x`, also names such as `--constructor` or `--__proto__`);
 * - an option that takes a value without one (`--out` last), or followed by something that looks like an option
 *   (`--out --json`, `--out --`): a value starting with `--` must be written `--out=--odd`; single-dash values
 *   (`--weight -0.5`, `-` for stdin) are values;
 * - a flag given a value (`--json=1`);
 * - an option given twice that is not `multiple`.
 */
import { parseArgs as nodeParseArgs } from "node:util";

export class UsageError extends Error {}

export interface OptionSpec {
  /** Takes a value (`--out DIR`); otherwise a boolean flag. */
  value?: boolean;
  /** The value's name in help text (`DIR`, `N`, `FILE`, ...). */
  placeholder?: string;
  /** May be repeated (`--adapter A --adapter B`). */
  multiple?: boolean;
}

export interface Parsed {
  positionals: string[];
  flags: Set<string>;
  values: Map<string, string[]>;
  /** Every option in command-line order (flags with value `""`), e.g. to pair `--weight` with its `--adapter`. */
  sequence: { key: string; value: string }[];
}

/**
 * Parses `argv` (the arguments after the subcommand) against `spec`. `-h` is `--help` when `spec` has `help`.
 * Throws {@link UsageError} with a one-line message.
 */
export function parseArgs(argv: string[], spec: Record<string, OptionSpec>): Parsed {
  // only the spec's own keys are options ("constructor", "__proto__", "toString" are not)
  const known = new Map<string, OptionSpec>(Object.entries(spec));
  const options: Record<string, { type: "string" | "boolean"; multiple: true; short?: string }> = Object.create(null);
  for (const [k, s] of known) options[k] = { type: s.value ? "string" : "boolean", multiple: true, ...(k === "help" ? { short: "h" } : {}) };
  // not strict: every check below is ours, so that every message is one line in our words
  const { tokens } = nodeParseArgs({ args: argv, options, strict: false, allowPositionals: true, tokens: true });
  const out: Parsed = { positionals: [], flags: new Set(), values: new Map(), sequence: [] };
  for (const t of tokens) {
    if (t.kind === "option-terminator") continue;
    if (t.kind === "positional") {
      out.positionals.push(t.value);
      continue;
    }
    const s = known.get(t.name);
    if (!s) {
      // a group of short options (`-abc`) is named as written
      const raw = t.rawName.startsWith("--") ? t.rawName : argv[t.index];
      throw new UsageError(`unknown option ${raw}`);
    }
    const shown = `--${t.name}`;
    if (!s.value) {
      if (t.value !== undefined) throw new UsageError(`${shown} takes no value, got ${JSON.stringify(t.value)}`);
      out.flags.add(t.name);
      out.sequence.push({ key: t.name, value: "" });
      continue;
    }
    const v = t.value;
    if (v === undefined) throw new UsageError(`${shown} needs a value`);
    if (!t.inlineValue && v.startsWith("--")) {
      throw new UsageError(`${shown} needs a value, got the option ${JSON.stringify(v)} (write ${shown}=${v} if that is the value)`);
    }
    const list = out.values.get(t.name) ?? [];
    if (list.length && !s.multiple) throw new UsageError(`${shown} given twice`);
    list.push(v);
    out.values.set(t.name, list);
    out.sequence.push({ key: t.name, value: v });
  }
  return out;
}

/** The single value of an option, or `fallback`. */
export function value(p: Parsed, key: string, fallback?: string): string | undefined {
  return p.values.get(key)?.[0] ?? fallback;
}

/** A numeric option (usage error when not a number in range). */
export function numberValue(p: Parsed, key: string, fallback: number, min = -Infinity, max = Infinity): number {
  const v = value(p, key);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || n < min || n > max) throw new UsageError(`--${key} must be a number in [${min}, ${max}], got ${JSON.stringify(v)}`);
  return n;
}
