/** Terminal and Markdown output helpers for the `shira` command: tables, progress bars, SVG charts. */

/** A plain-text table with aligned columns (numbers right-aligned). */
export function textTable(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map((c) => (typeof c === "number" ? fmtNum(c) : c)))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => String(r[i] ?? "").length)));
  const isNum = header.map((_, i) => rows.every((r) => numeric(r[i])));
  const line = (r: (string | number)[]) => r.map((c, i) => (isNum[i] ? String(c).padStart(widths[i]) : String(c).padEnd(widths[i]))).join("  ");
  return [line(cells[0]), widths.map((w) => "-".repeat(w)).join("  "), ...cells.slice(1).map(line)].join("\n");
}

/** A Markdown table. */
export function mdTable(header: string[], rows: (string | number)[][]): string {
  const fmt = (c: string | number) => (typeof c === "number" ? fmtNum(c) : c);
  return [`| ${header.join(" | ")} |`, `| ${header.map((_, i) => (rows.every((r) => numeric(r[i])) ? "---:" : "---")).join(" | ")} |`, ...rows.map((r) => `| ${r.map(fmt).join(" | ")} |`)].join("\n");
}

/** A number, or a string that shows one (`"63.7"`, `"1,024"`): right-aligned in tables. */
function numeric(c: string | number | undefined): boolean {
  return typeof c === "number" || (typeof c === "string" && /^-?[\d,]*\.?\d+$/.test(c));
}

export function fmtNum(x: number): string {
  if (Number.isInteger(x)) return x.toLocaleString("en-US");
  const a = Math.abs(x);
  if (a >= 100) return x.toFixed(1);
  if (a >= 1) return x.toFixed(3);
  if (a >= 0.001) return x.toFixed(4);
  return x.toPrecision(3);
}

export function pct(x: number): string {
  return `${(100 * x).toFixed(1)}%`;
}

/**
 * A progress bar on a TTY (rewritten in place); otherwise (a file, a pipe, CI logs) one line per phase when it
 * completes: `label: done in 2.1 s (loss 0.123)`.
 */
export class ProgressBar {
  #done = false;
  #start = performance.now();
  constructor(
    private readonly label: string,
    private readonly stream: NodeJS.WriteStream | null = process.stderr,
  ) {}

  update(done: number, total: number, extra = ""): void {
    if (!this.stream || this.#done) return;
    const frac = total > 0 ? Math.min(1, done / total) : 1;
    const secs = ((performance.now() - this.#start) / 1000).toFixed(1);
    if (this.stream.isTTY) {
      const width = 24;
      const fill = Math.round(frac * width);
      this.stream.write(`\r${this.label.padEnd(28)} [${"#".repeat(fill)}${".".repeat(width - fill)}] ${String(Math.round(frac * 100)).padStart(3)}% ${secs}s ${extra}   `);
      if (done >= total) {
        this.stream.write("\n");
        this.#done = true;
      }
    } else if (done >= total) {
      this.stream.write(`${this.label}: done in ${secs} s${extra ? ` (${extra})` : ""}\n`);
      this.#done = true;
    }
  }
}

export interface BarSeries {
  name: string;
  color: string;
  values: number[];
}

/** A grouped bar chart as a standalone SVG (no external resources). */
export function svgBarChart(title: string, categories: string[], series: BarSeries[], opts: { yLabel?: string; log?: boolean; format?: (v: number) => string } = {}): string {
  const W = 760;
  const H = 360;
  const m = { l: 70, r: 20, t: 40, b: 70 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const all = series.flatMap((s) => s.values).filter((v) => Number.isFinite(v));
  const fmt = opts.format ?? fmtNum;
  const log = opts.log && all.every((v) => v > 0);
  const maxV = Math.max(...all, 1e-12);
  const minV = log ? Math.min(...all) : 0;
  const lo = log ? Math.floor(Math.log10(minV)) : 0;
  const hi = log ? Math.ceil(Math.log10(maxV)) : niceCeil(maxV);
  const y = (v: number) => m.t + ph - (log ? ((Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo || 1)) * ph : (v / hi) * ph);
  const groupW = pw / categories.length;
  const barW = Math.min(40, (groupW * 0.8) / series.length);
  const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`);
  const ticks = log ? Array.from({ length: hi - lo + 1 }, (_, i) => 10 ** (lo + i)) : [0, 0.25, 0.5, 0.75, 1].map((f) => f * hi);
  for (const t of ticks) {
    parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${y(t)}" y2="${y(t)}" stroke="#ddd"/>`);
    parts.push(`<text x="${m.l - 6}" y="${y(t) + 4}" text-anchor="end">${esc(fmt(t))}</text>`);
  }
  if (opts.yLabel) parts.push(`<text transform="translate(16 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle">${esc(opts.yLabel)}</text>`);
  categories.forEach((c, ci) => {
    const gx = m.l + ci * groupW + (groupW - barW * series.length) / 2;
    series.forEach((s, si) => {
      const v = s.values[ci];
      if (!Number.isFinite(v)) return;
      const x = gx + si * barW;
      const top = y(v);
      parts.push(`<rect x="${x.toFixed(1)}" y="${top.toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${(m.t + ph - top).toFixed(1)}" fill="${s.color}"><title>${esc(`${s.name} ${c}: ${fmt(v)}`)}</title></rect>`);
      parts.push(`<text x="${(x + barW / 2 - 1).toFixed(1)}" y="${(top - 3).toFixed(1)}" text-anchor="middle" font-size="10">${esc(fmt(v))}</text>`);
    });
    parts.push(`<text x="${m.l + ci * groupW + groupW / 2}" y="${m.t + ph + 16}" text-anchor="middle">${esc(c)}</text>`);
  });
  parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${m.t + ph}" y2="${m.t + ph}" stroke="#333"/>`);
  series.forEach((s, si) => {
    const lx = m.l + si * 150;
    parts.push(`<rect x="${lx}" y="${H - 24}" width="12" height="12" fill="${s.color}"/><text x="${lx + 16}" y="${H - 14}">${esc(s.name)}</text>`);
  });
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

function niceCeil(v: number): number {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const f of [1, 2, 2.5, 5, 10]) if (f * p >= v) return f * p;
  return 10 * p;
}

const escXml = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** A line chart (e.g. a loss curve) as a standalone SVG; `smooth` > 1 also draws a moving average over that many points. */
export function svgLineChart(title: string, series: { name: string; color: string; points: [number, number][] }[], opts: { xLabel?: string; yLabel?: string; smooth?: number } = {}): string {
  const W = 760;
  const H = 360;
  const m = { l: 70, r: 20, t: 40, b: 60 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const pts = series.flatMap((s) => s.points).filter(([, v]) => Number.isFinite(v));
  const xMax = Math.max(...pts.map(([x]) => x), 1);
  const xMin = Math.min(...pts.map(([x]) => x), 0);
  const yMax = niceCeil(Math.max(...pts.map(([, v]) => v), 1e-12));
  const x = (v: number) => m.l + ((v - xMin) / (xMax - xMin || 1)) * pw;
  const y = (v: number) => m.t + ph - (v / yMax) * ph;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escXml(title)}</text>`);
  for (const f of [0, 0.25, 0.5, 0.75, 1]) {
    const t = f * yMax;
    parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${y(t)}" y2="${y(t)}" stroke="#ddd"/>`);
    parts.push(`<text x="${m.l - 6}" y="${y(t) + 4}" text-anchor="end">${escXml(fmtNum(t))}</text>`);
  }
  for (const f of [0, 0.25, 0.5, 0.75, 1]) {
    const t = xMin + f * (xMax - xMin);
    parts.push(`<text x="${x(t)}" y="${m.t + ph + 16}" text-anchor="middle">${escXml(fmtNum(Math.round(t)))}</text>`);
  }
  if (opts.xLabel) parts.push(`<text x="${m.l + pw / 2}" y="${H - 26}" text-anchor="middle">${escXml(opts.xLabel)}</text>`);
  if (opts.yLabel) parts.push(`<text transform="translate(16 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle">${escXml(opts.yLabel)}</text>`);
  const path = (p: [number, number][]) => p.filter(([, v]) => Number.isFinite(v)).map(([a, v], i) => `${i ? "L" : "M"}${x(a).toFixed(1)},${y(v).toFixed(1)}`).join("");
  series.forEach((s, si) => {
    const k = opts.smooth ?? 1;
    if (k > 1) {
      parts.push(`<path d="${path(s.points)}" fill="none" stroke="${s.color}" stroke-opacity="0.25" stroke-width="1"/>`);
      const avg: [number, number][] = s.points.map(([a], i) => {
        const w = s.points.slice(Math.max(0, i - k + 1), i + 1);
        return [a, w.reduce((acc, [, v]) => acc + v, 0) / w.length];
      });
      parts.push(`<path d="${path(avg)}" fill="none" stroke="${s.color}" stroke-width="2"/>`);
    } else parts.push(`<path d="${path(s.points)}" fill="none" stroke="${s.color}" stroke-width="2"/>`);
    const lx = m.l + si * 180;
    parts.push(`<rect x="${lx}" y="${H - 16}" width="12" height="12" fill="${s.color}"/><text x="${lx + 16}" y="${H - 6}">${escXml(s.name)}</text>`);
  });
  parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${m.t + ph}" y2="${m.t + ph}" stroke="#333"/>`);
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

/**
 * A heat map of a matrix (rows × columns, e.g. evaluated genre × adapter) as a standalone SVG: each cell coloured
 * from light (low) to dark (high) per row or over the whole matrix, with its value written in it.
 */
export function svgHeatmap(title: string, rows: string[], cols: string[], values: number[][], opts: { rowLabel?: string; colLabel?: string; perRow?: boolean; format?: (v: number) => string } = {}): string {
  const cw = 92;
  const ch = 30;
  const m = { l: 150, t: 90, r: 20, b: 40 };
  const W = m.l + cols.length * cw + m.r;
  const H = m.t + rows.length * ch + m.b;
  const fmt = opts.format ?? ((v: number) => v.toFixed(1));
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escXml(title)}</text>`);
  if (opts.colLabel) parts.push(`<text x="${m.l + (cols.length * cw) / 2}" y="44" text-anchor="middle">${escXml(opts.colLabel)}</text>`);
  if (opts.rowLabel) parts.push(`<text transform="translate(16 ${m.t + (rows.length * ch) / 2}) rotate(-90)" text-anchor="middle">${escXml(opts.rowLabel)}</text>`);
  const all = values.flat().filter((v) => Number.isFinite(v));
  cols.forEach((c, j) => parts.push(`<text x="${m.l + j * cw + cw / 2}" y="${m.t - 8}" text-anchor="middle">${escXml(c)}</text>`));
  rows.forEach((r, i) => {
    const rowVals = values[i].filter((v) => Number.isFinite(v));
    const lo = Math.min(...(opts.perRow ? rowVals : all));
    const hi = Math.max(...(opts.perRow ? rowVals : all));
    parts.push(`<text x="${m.l - 8}" y="${m.t + i * ch + ch / 2 + 4}" text-anchor="end">${escXml(r)}</text>`);
    values[i].forEach((v, j) => {
      const f = Number.isFinite(v) && hi > lo ? (v - lo) / (hi - lo) : 0;
      // low = green-ish light, high = dark red
      const red = Math.round(255 - 80 * f);
      const green = Math.round(245 - 200 * f);
      const blue = Math.round(235 - 200 * f);
      parts.push(`<rect x="${m.l + j * cw}" y="${m.t + i * ch}" width="${cw - 2}" height="${ch - 2}" fill="rgb(${red},${green},${blue})"><title>${escXml(`${r} / ${cols[j]}: ${fmt(v)}`)}</title></rect>`);
      parts.push(`<text x="${m.l + j * cw + cw / 2 - 1}" y="${m.t + i * ch + ch / 2 + 4}" text-anchor="middle" fill="${f > 0.6 ? "white" : "black"}">${escXml(Number.isFinite(v) ? fmt(v) : "–")}</text>`);
    });
  });
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}
