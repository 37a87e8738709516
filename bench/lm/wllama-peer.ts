// The wllama peer of the language-model benchmark: llama.cpp compiled to wasm (`@wllama/wllama`), run in headless
// Chromium (Debian's /usr/bin/chromium through playwright-core, the flags of tests/helpers/browser.ts), single
// thread, on a GGUF written by ./gguf.ts.
//
//   const r = await runWllama({ ggufPath, promptTokens: 128, contexts: [128, 1024], decodeTokens: 32, threads: 1 });
//   r.prefill_tok_s, r.decode_tok_s[128], r.decode_tok_s[1024], r.version
//
// How it runs. A tiny Node `http` server (127.0.0.1, random port) serves a page, wllama's ESM bundle
// (esm/index.js, which embeds the worker and the emscripten glue), its wasm (esm/wasm/wllama.wasm: wasm64 +
// JSPI, llama.cpp built with server-context), and the GGUF (with Range support). Every response carries
// COOP same-origin / COEP require-corp: wllama's wasm declares a *shared* memory, which needs SharedArrayBuffer,
// which Chromium only grants to cross-origin-isolated pages, even single-threaded. `n_threads: 1` makes wllama
// use no pthread pool (checked: `isMultithread()` is false, `getNumThreads()` is 1). The page fetches the GGUF into
// a Blob and calls `loadModel([blob], { n_ctx, n_threads: 1, n_gpu_layers: 0, n_parallel: 1 })`; WebGPU is
// off (`n_gpu_layers: 0`; Chromium also runs with --disable-gpu). wllama reads the blob with async reads (JSPI),
// no mmap. The file must stay under 2^31 bytes (emscripten's ftell limit, wllama's README): a 0.5B F32 model is
// 1.98 GB, under it; larger files would need gguf-split shards.
//
// Prompts. wllama 3.x no longer exposes llama.cpp's low-level tokenize/decode/sampling calls: it embeds
// llama-server's `server-context` and only speaks its OpenAI-style completion API, whose `prompt` must be a string
// (wllama's glue assigns it to `task.cli_prompt`, a std::string; a JSON array of ids fails with
// "[json.exception.type_error.302] type must be string, but is array"). So prompts are text that the synthetic
// vocabulary of ./gguf.ts tokenizes one byte per token: it has no merges, so byte-level BPE leaves every byte as
// its byte token (ids 0..255). Prompts use only [0-9A-Za-z] (token ids 15-24, 32-57, 64-89), so no special-token
// text can appear; `promptIds()` / `idsToText()` give the same ids to our engine. Token count is checked against
// the server's `timings.prompt_n`. (The ids do not change the cost of a forward pass.)
//
// Timing (all wall clock inside the page, `performance.now()` around `await wllama.createCompletion(...)`); each
// measurement is one completion request:
//   * warm-up: one short request (graph allocation, JIT of the wasm), untimed;
//   * prefill: `repeats` requests with a fresh random prompt of `promptTokens` ids, `max_tokens: 1`,
//     `cache_prompt: false` → prefill_ms = median wall time (prompt eval + sampling of the first token + request
//     overhead), prefill_tok_s = promptTokens / prefill_ms;
//   * decode at context C: a prompt of C tokens is evaluated once (`max_tokens: 1`, `cache_prompt: true`; its
//     wall time is reported as fill_ms[C]). Then, `repeats` times, two requests with that same prompt: one with
//     `max_tokens: 1` and one with `max_tokens: N` (N = decodeTokens). llama-server finds the whole prompt in the
//     slot's KV cache and re-evaluates only its last token (checked: `timings.prompt_n` is 1), so the requests run
//     1 and N single-token forward passes (positions C-1 …), each followed by greedy sampling. Every request also
//     pays a fixed cost that is not decoding and that grows with C (tokenizing the C-character prompt with
//     llama.cpp's unicode regex, the prompt-cache comparison, wllama's worker round trips: ~0.3 s at C = 1024 on
//     the tiny shape), so the decode step is the difference: step = (wall_N - wall_1) / (N - 1), median over
//     repeats; decode_tok_s[C] = 1000 / step. N / wall_N is returned too (decode_tok_s_request), as are
//     llama-server's own counters (`timings.predicted_per_second`, `prompt_per_second`).
// Sampling is greedy: `temperature: 0`, `top_k: 1`; `ignore_eos: true` keeps generation from stopping early.
import { rng } from "../common.js";
import { createReadStream, existsSync, readFileSync, statSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { Browser } from "playwright-core";
import { gpt2ByteTokens } from "./gguf.js";

/** Debian's Chromium and the flags of tests/helpers/browser.ts (kept identical on purpose). */
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"];

export interface WllamaOptions {
  ggufPath: string;
  /** Prompt length of the prefill measurement. Default 128. */
  promptTokens?: number;
  /** Context lengths at which decode speed is measured. Default [128, 1024]. */
  contexts?: number[];
  /** Decode steps per timed request. Default 32. */
  decodeTokens?: number; // >= 2 (the step is a difference between an N-token and a 1-token request)
  /** llama.cpp threads; 1 = wllama's no-pthread path. Default 1. */
  threads?: number;
  /** Timed repetitions (median). Default 3. */
  repeats?: number;
  /** KV-cache type: llama.cpp's default is "f16". */
  kvType?: "f32" | "f16";
  /** Seed of the prompt ids (see `promptIds`). Default 1. */
  seed?: number;
  /**
   * Optional correctness probe: greedy-generate `probe.newTokens` tokens after `probe.prompt` (token ids, each a
   * printable-ASCII byte token: `idsToText` must accept them) and return the generated ids (`probe_ids`), e.g. to
   * compare with transformers or our engine. `byteTokens` is the GGUF's byte-token table when it was written with
   * `asciiIds` (default: GPT-2 order).
   */
  probe?: { prompt: number[]; newTokens: number; byteTokens?: string[] };
  /** Skip the timing (only load + probe). */
  probeOnly?: boolean;
  log?: (line: string) => void;
}

export interface ServerTimings {
  prompt_n: number;
  prompt_ms: number;
  prompt_per_second: number;
  predicted_n: number;
  predicted_ms: number;
  predicted_per_second: number;
  cache_n?: number;
}

export interface WllamaResult {
  /** promptTokens / median wall time of a prefill request. */
  prefill_tok_s: number;
  prefill_ms: number;
  /**
   * Decode tokens per second at each context length: 1 / step, step = median over repeats of
   * (wall(N-token request) - wall(1-token request)) / (N - 1), both requests on the cached C-token prompt.
   */
  decode_tok_s: Record<number, number>;
  /** The step time above (ms per decode step, sampling included). */
  decode_ms_per_token: Record<number, number>;
  /** N / median wall time of the N-token request (includes the per-request overhead: tokenizing the C-character
   * prompt, prompt-cache lookup, wllama's message passing). */
  decode_tok_s_request: Record<number, number>;
  /** Wall time to evaluate the C-token prompt once (a prefill of C tokens), per context. */
  fill_ms: Record<number, number>;
  /** llama-server's own timings of the last prefill request and of the last decode request per context. */
  server: { prefill: ServerTimings | null; decode: Record<number, ServerTimings | null> };
  /** e.g. "@wllama/wllama 3.13.0 (llama.cpp b12211-7d7f028)". */
  version: string;
  threads: number;
  multithread: boolean;
  n_ctx: number;
  kv_type: string;
  load_ms: number;
  /** Greedy ids of the probe (when asked). */
  probe_ids?: number[];
  /** Native log lines of interest (model load summary, warnings). */
  log: string[];
}

// ------------------------------------------------------------------------------------------- server

const require_ = createRequire(import.meta.url);

/** The characters prompts are made of: each is one token in ./gguf.ts's vocabulary. */
const PROMPT_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/**
 * Deterministic prompt token ids (the byte tokens of [0-9A-Za-z] in the GGUF vocabulary of ./gguf.ts with its
 * default byte order). Our engine can be fed the same ids; `idsToText` turns them into wllama's prompt string.
 */
export function promptIds(n: number, seed = 1): number[] {
  const next = rng(seed);
  const table = gpt2ByteTokens();
  return Array.from({ length: n }, () => table.indexOf(PROMPT_CHARS[next(PROMPT_CHARS.length)]));
}

/** Token ids (byte tokens of printable ASCII) → the text that tokenizes back to exactly those ids. */
export function idsToText(ids: number[], byteTokens: string[] = gpt2ByteTokens()): string {
  return ids
    .map((id) => {
      const ch = byteTokens[id];
      if (ch === undefined || ch.length !== 1 || ch.charCodeAt(0) < 0x21 || ch.charCodeAt(0) > 0x7e) throw new Error(`idsToText: token ${id} is not a printable-ASCII byte token`);
      return ch;
    })
    .join("");
}

function wllamaDir(): string {
  return dirname(require_.resolve("@wllama/wllama/package.json"));
}

export function wllamaVersion(): { pkg: string; llama: string } {
  const dir = wllamaDir();
  const pkg = (JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { version: string }).version;
  const m = /LIBLLAMA_VERSION = "([^"]+)"/.exec(readFileSync(join(dir, "esm/index.js"), "utf8"));
  return { pkg, llama: m ? m[1] : "unknown" };
}

const PAGE = `<!doctype html><meta charset="utf-8"><title>wllama peer</title>
<script type="module">
import { Wllama } from "/wllama/index.js";
window.__Wllama = Wllama;
window.__ready = true;
</script>`;

interface Served {
  url: string;
  close(): Promise<void>;
}

function isolationHeaders(res: ServerResponse): void {
  res.setHeader("Cross-Origin-Opener-Policy", "same-origin");
  res.setHeader("Cross-Origin-Embedder-Policy", "require-corp");
  res.setHeader("Cross-Origin-Resource-Policy", "same-origin");
  res.setHeader("Cache-Control", "no-store");
}

function sendFile(req: IncomingMessage, res: ServerResponse, path: string, type: string): void {
  const size = statSync(path).size;
  res.setHeader("Content-Type", type);
  res.setHeader("Accept-Ranges", "bytes");
  const range = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? "");
  if (range && (range[1] || range[2])) {
    let start = range[1] ? Number(range[1]) : size - Number(range[2]);
    let end = range[1] && range[2] ? Number(range[2]) : size - 1;
    start = Math.max(0, start);
    end = Math.min(size - 1, end);
    if (start > end) {
      res.writeHead(416, { "Content-Range": `bytes */${size}` }).end();
      return;
    }
    res.writeHead(206, { "Content-Range": `bytes ${start}-${end}/${size}`, "Content-Length": end - start + 1 });
    createReadStream(path, { start, end }).pipe(res);
    return;
  }
  res.writeHead(200, { "Content-Length": size });
  if (req.method === "HEAD") res.end();
  else createReadStream(path).pipe(res);
}

async function serve(ggufPath: string): Promise<Served> {
  const dir = wllamaDir();
  const routes: Record<string, [string, string]> = {
    "/wllama/index.js": [join(dir, "esm/index.js"), "text/javascript"],
    "/wllama/wllama.wasm": [join(dir, "esm/wasm/wllama.wasm"), "application/wasm"],
    "/model.gguf": [ggufPath, "application/octet-stream"],
  };
  const server: Server = createServer((req, res) => {
    isolationHeaders(res);
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/" || path === "/index.html") {
      res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" }).end(PAGE);
      return;
    }
    const r = routes[path];
    if (!r) {
      res.writeHead(404).end();
      return;
    }
    sendFile(req, res, r[0], r[1]);
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () => new Promise<void>((ok) => server.close(() => ok())),
  };
}

// ------------------------------------------------------------------------------------------- page side

interface PageParams {
  nCtx: number;
  threads: number;
  kvType: string;
  warmPrompt: string;
  prefillPrompts: string[];
  contexts: number[];
  contextPrompts: string[];
  decodeTokens: number;
  repeats: number;
  probe: { prompt: string; newTokens: number } | null;
  probeOnly: boolean;
}

interface PageResult {
  loadMs: number;
  multithread: boolean;
  threads: number;
  version: string;
  prefillMs: number[];
  prefillServer: ServerTimings | null;
  fillMs: number[];
  decodeMs: number[][];
  decodeOneMs: number[][];
  decodeServer: (ServerTimings | null)[];
  probeIds: number[] | null;
  probeRaw: unknown;
  logs: string[];
}

/** Runs inside the page (serialized by playwright): everything it needs comes in `p`. */
async function pageMain(p: PageParams): Promise<PageResult> {
  type Completion = { choices: { text: string; logprobs?: { content?: { id: number }[] } }[]; timings?: ServerTimings; usage?: { prompt_tokens: number } } & Record<string, unknown>;
  const W = (globalThis as unknown as { __Wllama: any }).__Wllama;
  const logs: string[] = [];
  const keep = (level: string) => (...a: unknown[]) => {
    const s = a.map(String).join(" ");
    if (level !== "debug" || /model|ctx|n_|thread|kv|error|warn|load|type|size|buffer|flash|graph/i.test(s)) {
      logs.push(`${level}: ${s}`);
      console.log(`[wllama ${level}] ${s}`);
    }
  };
  const wllama = new W({ default: "/wllama/wllama.wasm" }, { logger: { debug: keep("debug"), log: keep("log"), warn: keep("warn"), error: keep("error") } });
  const t0 = performance.now();
  const blob = await (await fetch("/model.gguf")).blob();
  await wllama.loadModel([blob], {
    n_ctx: p.nCtx,
    n_threads: p.threads,
    n_gpu_layers: 0,
    n_parallel: 1,
    cache_type_k: p.kvType,
    cache_type_v: p.kvType,
  });
  const loadMs = performance.now() - t0;
  const greedy = { temperature: 0, top_k: 1, ignore_eos: true, seed: 1 };
  const complete = async (prompt: string, n: number, cache: boolean, extra: Record<string, unknown> = {}): Promise<{ ms: number; r: Completion }> => {
    const t = performance.now();
    const r = (await wllama.createCompletion({ prompt, max_tokens: n, cache_prompt: cache, ...greedy, ...extra })) as Completion;
    const ms = performance.now() - t;
    const tm = r.timings;
    if (!cache && tm && tm.prompt_n !== prompt.length) throw new Error(`prompt of ${prompt.length} characters became ${tm.prompt_n} tokens (expected one token per character)`);
    if (tm && tm.predicted_n !== n) throw new Error(`${tm.predicted_n} tokens generated, expected ${n}`);
    return { ms, r };
  };
  const out: PageResult = {
    loadMs,
    multithread: wllama.isMultithread(),
    threads: wllama.getNumThreads(),
    version: W.getLibllamaVersion ? W.getLibllamaVersion() : "unknown",
    prefillMs: [],
    prefillServer: null,
    fillMs: [],
    decodeMs: [],
    decodeOneMs: [],
    decodeServer: [],
    probeIds: null,
    probeRaw: null,
    logs,
  };
  if (p.probe) {
    const { r } = await complete(p.probe.prompt, p.probe.newTokens, false, { logprobs: 1 });
    out.probeRaw = r;
    const content = r.choices[0]?.logprobs?.content;
    out.probeIds = Array.isArray(content) ? content.map((c) => c.id) : null;
  }
  if (p.probeOnly) {
    await wllama.exit();
    return out;
  }
  await complete(p.warmPrompt, 4, false);
  for (const prompt of p.prefillPrompts) {
    const { ms, r } = await complete(prompt, 1, false);
    out.prefillMs.push(ms);
    out.prefillServer = r.timings ?? null;
  }
  p.contexts.forEach(() => (out.decodeMs.push([]), out.decodeOneMs.push([])));
  for (let c = 0; c < p.contexts.length; c++) {
    const prompt = p.contextPrompts[c];
    const fill = await complete(prompt, 1, true);
    if (fill.r.timings && fill.r.timings.prompt_n + (fill.r.timings.cache_n ?? 0) !== prompt.length) throw new Error(`context ${p.contexts[c]}: prompt became ${fill.r.timings.prompt_n} tokens`);
    out.fillMs.push(fill.ms);
    // one untimed pair: the first requests after the fill pay one-time costs (seen as negative differences)
    await complete(prompt, 1, true);
    await complete(prompt, 2, true);
    let last: ServerTimings | null = null;
    for (let i = 0; i < p.repeats; i++) {
      const one = await complete(prompt, 1, true);
      const { ms, r } = await complete(prompt, p.decodeTokens, true);
      for (const tm of [one.r.timings, r.timings]) {
        if (tm && tm.prompt_n !== 1) throw new Error(`decode at context ${p.contexts[c]}: expected a prompt-cache hit (1 token re-evaluated), server evaluated ${tm.prompt_n}`);
      }
      out.decodeMs[c].push(ms);
      out.decodeOneMs[c].push(one.ms);
      last = r.timings ?? null;
    }
    out.decodeServer.push(last);
  }
  await wllama.exit();
  return out;
}

// ------------------------------------------------------------------------------------------- driver


function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : 0.5 * (s[m - 1] + s[m]);
}

async function launch(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_PATH)`);
  const { chromium } = await import("playwright-core");
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60_000 });
}

/** Runs the wllama peer (see the top of this file for what is measured and how). */
export async function runWllama(opts: WllamaOptions): Promise<WllamaResult> {
  const log = opts.log ?? (() => {});
  const promptTokens = opts.promptTokens ?? 128;
  const contexts = opts.contexts ?? [128, 1024];
  const decodeTokens = opts.decodeTokens ?? 32;
  if (decodeTokens < 2) throw new Error("runWllama: decodeTokens must be >= 2");
  const threads = opts.threads ?? 1;
  const repeats = opts.repeats ?? 3;
  const kvType = opts.kvType ?? "f16";
  let seed = opts.seed ?? 1;
  const ids = (n: number) => idsToText(promptIds(n, seed++ * 7919));
  const maxCtx = Math.max(promptTokens, ...contexts);
  const nCtx = Math.ceil((maxCtx + decodeTokens + 8) / 256) * 256;
  if (statSync(opts.ggufPath).size >= 2 ** 31) throw new Error(`runWllama: ${opts.ggufPath} is >= 2 GiB; wllama needs gguf-split shards for that (not implemented)`);

  const params: PageParams = {
    nCtx,
    threads,
    kvType,
    warmPrompt: ids(8),
    prefillPrompts: Array.from({ length: repeats }, () => ids(promptTokens)),
    contexts,
    contextPrompts: contexts.map((c) => ids(c)),
    decodeTokens,
    repeats,
    probe: opts.probe ? { prompt: idsToText(opts.probe.prompt, opts.probe.byteTokens), newTokens: opts.probe.newTokens } : null,
    probeOnly: opts.probeOnly ?? false,
  };
  const server = await serve(opts.ggufPath);
  const browser = await launch();
  try {
    const context = await browser.newContext();
    await context.addInitScript(() => {
      const g = globalThis as unknown as { __name?: (f: unknown) => unknown };
      g.__name ??= (f: unknown) => f;
    });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    const consoleLines: string[] = [];
    page.on("console", (m) => {
      consoleLines.push(m.text());
      if (consoleLines.length > 200) consoleLines.shift();
    });
    await page.goto(server.url);
    await page.waitForFunction(() => (globalThis as unknown as { __ready?: boolean }).__ready === true, null, { timeout: 30_000 });
    const coi = await page.evaluate(() => globalThis.crossOriginIsolated);
    if (!coi) throw new Error("runWllama: the page is not cross-origin isolated (wllama's shared wasm memory needs it)");
    log(`  wllama: loading ${opts.ggufPath} (n_ctx ${nCtx}, ${threads} thread(s), KV ${kvType})`);
    let r: PageResult;
    try {
      r = await page.evaluate(pageMain, params);
    } catch (e) {
      const tail = consoleLines.slice(-40).join("\n");
      throw new Error(`runWllama: page failed: ${(e as Error).message}${errors.length ? `\npage errors: ${errors.join("\n")}` : ""}\nlast page console lines:\n${tail}`);
    }
    const v = wllamaVersion();
    const decode_tok_s: Record<number, number> = {};
    const decode_ms_per_token: Record<number, number> = {};
    const fill_ms: Record<number, number> = {};
    const serverDecode: Record<number, ServerTimings | null> = {};
    const decode_tok_s_request: Record<number, number> = {};
    contexts.forEach((c, i) => {
      if (!r.decodeMs[i]?.length) return;
      const ms = median(r.decodeMs[i]);
      const step = median(r.decodeMs[i].map((m, k) => (m - r.decodeOneMs[i][k]) / (decodeTokens - 1)));
      if (!(step > 0)) log(`  wllama: warning: decode step at context ${c} came out ${step.toFixed(3)} ms (noise larger than the step; use more decodeTokens/repeats)`);
      decode_tok_s[c] = 1000 / step;
      decode_ms_per_token[c] = step;
      decode_tok_s_request[c] = decodeTokens / (ms / 1000);
      fill_ms[c] = r.fillMs[i];
      serverDecode[c] = r.decodeServer[i] ?? null;
    });
    const prefill_ms = r.prefillMs.length ? median(r.prefillMs) : NaN;
    return {
      prefill_tok_s: promptTokens / (prefill_ms / 1000),
      prefill_ms,
      decode_tok_s,
      decode_ms_per_token,
      decode_tok_s_request,
      fill_ms,
      server: { prefill: r.prefillServer, decode: serverDecode },
      version: `@wllama/wllama ${v.pkg} (llama.cpp ${r.version !== "unknown" ? r.version : v.llama})`,
      threads: r.threads,
      multithread: r.multithread,
      n_ctx: nCtx,
      kv_type: kvType,
      load_ms: r.loadMs,
      ...(r.probeIds ? { probe_ids: r.probeIds } : {}),
      ...(opts.probe && !r.probeIds ? { probe_raw: r.probeRaw } : {}),
      log: r.logs,
    };
  } finally {
    await browser.close();
    await server.close();
  }
}

/**
 * The peer half of benchmark rows `{ case, ours_ms, peer, peer_ms, speedup }`: `prefill <P> tokens` (ms for the
 * whole prompt) and `decode @<C>` (ms per token), with peer = "wllama <version> (wasm, <t> thread, KV <type>)".
 */
export function wllamaPeerRows(r: WllamaResult, promptTokens = 128): { case: string; peer: string; peer_ms: number }[] {
  const peer = `${r.version.replace("@wllama/wllama", "wllama")} (wasm, ${r.threads} thread${r.threads > 1 ? "s" : ""}, KV ${r.kv_type})`;
  const rows = [{ case: `prefill ${promptTokens} tokens`, peer, peer_ms: r.prefill_ms }];
  for (const [c, ms] of Object.entries(r.decode_ms_per_token)) rows.push({ case: `decode @${c}`, peer, peer_ms: ms });
  return rows;
}
