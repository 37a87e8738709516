// Markdown + SVG summaries for the adapter benchmarks (switch, train, model): `bench/results/<name>.md` (the rows
// as a table with their ratios, the targets and whether they were met, notes, the machine) and
// `bench/results/<name>.svg` (a grouped bar chart drawn by the CLI's standalone SVG writer).
//
// Every benchmark here reports rows of the same form, `{ case, ours_ms, peer, peer_ms, speedup }` with
// `speedup = peer_ms / ours_ms` (> 1: ours is faster), optionally with a `target` (text), `met` (boolean) and
// `notes`; the JSON (bench/results/<name>.json, written by the benchmark through bench/common.ts) is the array.
import { writeFileSync, mkdirSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { RESULTS_DIR } from "./common.js";
import { mdTable, svgBarChart, type BarSeries } from "../src/cli/format.js";
import { runtime } from "../src/runtime/runtime.js";

/** One result row: ours against a peer measured in the same run (or a published figure). */
export interface BenchRow {
  case: string;
  ours_ms: number;
  peer: string;
  peer_ms: number;
  /** `peer_ms / ours_ms`. */
  speedup: number;
  /** The goal for this row, in words (e.g. "speedup >= 50"). */
  target?: string;
  /** Whether the goal was reached in this run. */
  met?: boolean;
  /** Why a goal was missed, what dominates, what would change it. */
  notes?: string;
  /** Threads that ran ours (1 unless the row says otherwise). */
  threads?: number;
  [extra: string]: unknown;
}

/** A row with `speedup` computed (rounded for the JSON). */
export function row(caseName: string, oursMs: number, peer: string, peerMs: number, extra: Partial<BenchRow> = {}): BenchRow {
  return { case: caseName, ours_ms: round(oursMs), peer, peer_ms: round(peerMs), speedup: round(peerMs / oursMs), ...extra };
}

/** 4 significant digits (keeps the JSON readable). */
export function round(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const d = Math.max(0, 3 - Math.floor(Math.log10(Math.abs(x))));
  return Number(x.toFixed(Math.min(d, 12)));
}

/** Median of a list (mean of the middle two for even lengths). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : 0.5 * (s[m - 1] + s[m]);
}

/** Distinct 64-byte lines of W holding a position of A or B (both sorted): what a switch must read and write. */
export function linesTouched(a: Int32Array, b: Int32Array): number {
  let i = 0;
  let j = 0;
  let last = -1;
  let n = 0;
  while (i < a.length || j < b.length) {
    const p = j >= b.length || (i < a.length && a[i] < b[j]) ? a[i++] : b[j++];
    const line = p >> 4;
    if (line !== last) {
      n++;
      last = line;
    }
  }
  return n;
}

/** A line naming the machine and engine build the numbers come from. */
export function environment(): string {
  const cpu = cpus()[0]?.model ?? "unknown CPU";
  return `Node ${process.version}, ${cpu} (${cpus().length} logical CPUs, ${Math.round(totalmem() / 2 ** 30)} GiB), wasm build "${runtime().variant}", one thread, ${new Date().toISOString()}`;
}

/** `1234567` -> `"1.18 MiB"`. */
export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB"];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(u === 0 ? 0 : 2)} ${units[u]}`;
}

export interface SummaryChart {
  title: string;
  categories: string[];
  series: BarSeries[];
  yLabel?: string;
  log?: boolean;
}

export interface Summary {
  title: string;
  /** Paragraphs before the table (Markdown). */
  intro?: string[];
  rows: BenchRow[];
  /** Extra columns to show after the standard ones (keys of the rows). */
  extraColumns?: { key: string; header: string; format?: (v: unknown) => string }[];
  /** Paragraphs after the table (Markdown): method, findings. */
  notes?: string[];
  chart?: SummaryChart;
}

const fmtMs = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v >= 1 ? v.toFixed(2) : v.toFixed(3));

/** Writes `bench/results/<name>.md` (and `<name>.svg` when a chart is given); returns their paths. */
export function writeSummary(name: string, s: Summary): string[] {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const extra = s.extraColumns ?? [];
  const targets = s.rows.some((r) => r.target !== undefined);
  const header = ["case", "ours (ms)", "peer", "peer (ms)", "peer / ours", ...extra.map((c) => c.header), ...(targets ? ["target", "met"] : [])];
  const body = s.rows.map((r) => [
    r.case,
    fmtMs(r.ours_ms),
    r.peer,
    fmtMs(r.peer_ms),
    `${r.speedup >= 10 ? r.speedup.toFixed(0) : r.speedup.toFixed(2)}×`,
    ...extra.map((c) => (c.format ? c.format(r[c.key]) : r[c.key] === undefined ? "" : String(r[c.key]))),
    ...(targets ? [r.target ?? "", r.met === undefined ? "" : r.met ? "yes" : "**no**"] : []),
  ]);
  const lines = [`# ${s.title}`, "", ...(s.intro ?? []).flatMap((p) => [p, ""])];
  if (s.chart) lines.push(`![${s.chart.title}](${name}.svg)`, "");
  lines.push(mdTable(header, body), "");
  const missed = s.rows.filter((r) => r.met === false);
  const withTarget = s.rows.filter((r) => r.met !== undefined);
  if (withTarget.length) lines.push(`Targets met: ${withTarget.length - missed.length} of ${withTarget.length}.`, "");
  const rowNotes = s.rows.filter((r) => r.notes);
  if (rowNotes.length) {
    lines.push("## Notes on rows", "");
    for (const r of rowNotes) lines.push(`* **${r.case}**: ${r.notes}`);
    lines.push("");
  }
  for (const p of s.notes ?? []) lines.push(p, "");
  lines.push(`_${environment()}. Generated by \`bench/${name}.ts\`; JSON in \`${name}.json\`._`, "");
  const written: string[] = [];
  const md = join(RESULTS_DIR, `${name}.md`);
  writeFileSync(md, lines.join("\n"));
  written.push(md);
  if (s.chart) {
    const svg = join(RESULTS_DIR, `${name}.svg`);
    writeFileSync(svg, svgBarChart(s.chart.title, s.chart.categories, s.chart.series, { yLabel: s.chart.yLabel, log: s.chart.log, format: (v) => fmtMs(v) }));
    written.push(svg);
  }
  return written;
}
