/**
 * A small argument parser for the `shira` command: `--flag`, `--key value`, `--key=value`, repeated keys
 * (collected in order), positionals. Unknown options are usage errors (exit code 2).
 */
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

export function parseArgs(argv: string[], spec: Record<string, OptionSpec>): Parsed {
  const out: Parsed = { positionals: [], flags: new Set(), values: new Map(), sequence: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") {
      out.positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith("--") || a === "-") {
      if (a.startsWith("-") && a !== "-" && a !== "-h") throw new UsageError(`unknown option ${a}`);
      if (a === "-h") out.flags.add("help");
      else out.positionals.push(a);
      continue;
    }
    const eq = a.indexOf("=");
    const key = a.slice(2, eq < 0 ? undefined : eq);
    const s = spec[key];
    if (!s) throw new UsageError(`unknown option --${key}`);
    if (!s.value) {
      if (eq >= 0) throw new UsageError(`--${key} takes no value`);
      out.flags.add(key);
      out.sequence.push({ key, value: "" });
      continue;
    }
    const v = eq >= 0 ? a.slice(eq + 1) : argv[++i];
    if (v === undefined || (eq < 0 && v.startsWith("--"))) throw new UsageError(`--${key} needs a value`);
    const list = out.values.get(key) ?? [];
    if (list.length && !s.multiple) throw new UsageError(`--${key} given twice`);
    list.push(v);
    out.values.set(key, list);
    out.sequence.push({ key, value: v });
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
  if (!Number.isFinite(n) || n < min || n > max) throw new UsageError(`--${key} must be a number in [${min}, ${max}], got ${JSON.stringify(v)}`);
  return n;
}
