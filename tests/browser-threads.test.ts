// Threads in Chromium: on a cross-origin-isolated page (COOP/COEP headers, as scripts/serve-examples.mjs sends) init()
// starts Web Workers on one shared wasm memory and the kernels split over them; on a page that is not isolated the
// library runs one thread and says why (runtime.threadsLimitedBy). On both, a Llama checkpoint with a SHiRA adapter
// switched between tokens generates the tokens Node generates, and its logits are bit-identical to Node's (the pages
// run the plain-SIMD build, as Node does; the relaxed build may fuse multiply-adds). The BF16 checkpoint runs with
// half-precision weights (its stored dtype) on threads too.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createReadStream, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { extname, join, resolve, sep } from "node:path";
import { ChromiumSession, ROOT, ensureBuilt, openPage, startServer, type ExampleServer } from "./helpers/browser.js";
import { TRANSFORMERS } from "./helpers/transformers.js";
import { AutoModelForCausalLM, PeftModel } from "../src/node.js";

const PROMPT = [1, 15, 27, 3, 44, 9];
const SWITCH_AT = 4; // the adapter is switched in after this many new tokens
const NEW_TOKENS = 10;

interface PageResult {
  isolated: boolean;
  threads: number;
  threadsAfterResize: number;
  limitedBy: string | null;
  shared: boolean;
  tokens: number[];
  logitsBits: number[];
  gemmSame: boolean;
}

let tmp = "";
let isolatedServer: ExampleServer | null = null;
let plainServer: Server | null = null;
let plainUrl = "";
const chromiumSession = new ChromiumSession();

/** A static server without COOP/COEP headers (so the page is not cross-origin isolated). */
function servePlain(mounts: Record<string, string>): Promise<{ server: Server; url: string }> {
  const table = Object.entries(mounts).sort((a, b) => b[0].length - a[0].length);
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    for (const [prefix, dir] of table) {
      if (!path.startsWith(prefix)) continue;
      const file = resolve(dir, "." + sep + path.slice(prefix.length));
      if (!file.startsWith(resolve(dir)) || !existsSync(file) || !statSync(file).isFile()) break;
      const type = { ".js": "text/javascript", ".html": "text/html", ".json": "application/json" }[extname(file)] ?? "application/octet-stream";
      res.writeHead(200, { "Content-Type": type, "Content-Length": statSync(file).size, "Cache-Control": "no-store" });
      createReadStream(file).pipe(res);
      return;
    }
    res.writeHead(404).end();
  });
  return new Promise((ok) => server.listen(0, "127.0.0.1", () => ok({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/` })));
}

before(async () => {
  ensureBuilt();
  tmp = mkdtempSync(join(tmpdir(), "shira-threads-page-"));
  writeFileSync(join(tmp, "blank.html"), "<!doctype html><title>threads</title>\n");
  const mounts = { "/lib/": join(ROOT, "dist"), "/model/": join(TRANSFORMERS, "llama", "model"), "/model_bf16/": join(TRANSFORMERS, "llama", "model_bf16"), "/shira/": join(TRANSFORMERS, "llama", "shira"), "/t/": tmp };
  isolatedServer = await startServer({ mounts });
  const plain = await servePlain(mounts);
  plainServer = plain.server;
  plainUrl = plain.url;
  await chromiumSession.launch();
});

after(async () => {
  await chromiumSession.close();
  await isolatedServer?.close();
  await new Promise((ok) => (plainServer ? plainServer.close(() => ok(null)) : ok(null)));
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** Runs the library in a page of `base`: init(), a greedy stream with an adapter switch, logits, a split gemm. */
async function runInPage(base: string, threads?: number, model = "model/"): Promise<PageResult & { dtype: string }> {
  const { context, page } = await openPage(chromiumSession.get());
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  try {
    await page.goto(base + "t/blank.html");
    const r = await page.evaluate(
      async ({ base, threads, prompt, switchAt, newTokens, model }) => {
        const m = await import(base + "lib/browser.js");
        const rt = await m.init({ variant: "simd" }); // Node's build: logits comparable bit for bit
        const first = { threads: rt.threads, limitedBy: rt.threadsLimitedBy };
        if (threads) await m.init({ threads });
        rt.parallelMinWork = 0; // split every kernel call that can be split
        const lm = await m.AutoModelForCausalLM.fromPretrained(base + model);
        const dtype: string = lm.dtype;
        const peft = await m.PeftModel.fromPretrained(lm, base + "shira/", { adapterName: "a" });
        peft.switchToBase();
        const tokens: number[] = [];
        for await (const t of lm.stream([prompt], { maxNewTokens: newTokens })) {
          tokens.push(t.token);
          if (tokens.length === switchAt) peft.switchTo("a");
        }
        const logits = lm.forward([prompt.concat(tokens)], { logits: "last" });
        const last: Float32Array = logits.toArray();
        logits.free();
        const logitsBits = Array.from(new Uint32Array(last.buffer, last.byteOffset, last.length));
        lm.dispose();
        // a split gemm against a one-thread runtime of the same page
        const one = m.createRuntime({ threads: 1, variant: "simd" });
        const gemm = (r: typeof rt) => {
          r.parallelMinWork = 0;
          const B = 5, K = 300, N = 97;
          const x = r.allocF32(B * K), w = r.allocF32(N * K), y = r.allocF32(B * N);
          for (let i = 0; i < B * K; i++) x.view[i] = Math.sin(i);
          for (let i = 0; i < N * K; i++) w.view[i] = Math.cos(i * 0.7);
          r.k.f32_gemm_nt(x.ptr, w.ptr, 0, y.ptr, B, K, N, 0);
          const out = y.toArray();
          x.free(); w.free(); y.free();
          return out;
        };
        const a = gemm(rt), b = gemm(one);
        const gemmSame = a.every((v: number, i: number) => Object.is(v, b[i]));
        return { dtype, isolated: crossOriginIsolated, threads: first.threads, threadsAfterResize: rt.threads, limitedBy: first.limitedBy, shared: rt.shared, tokens, logitsBits, gemmSame };
      },
      { base, threads, prompt: PROMPT, switchAt: SWITCH_AT, newTokens: NEW_TOKENS, model },
    );
    assert.deepEqual(errors, []);
    return r as PageResult & { dtype: string };
  } finally {
    await context.close();
  }
}

/** Node's tokens and last logits for the same plan. */
async function nodeReference(model = "model"): Promise<{ tokens: number[]; logitsBits: number[] }> {
  const lm = await AutoModelForCausalLM.fromPretrained(join(TRANSFORMERS, "llama", model));
  try {
    const peft = await PeftModel.fromPretrained(lm, join(TRANSFORMERS, "llama", "shira"), { adapterName: "a" });
    peft.switchToBase();
    const tokens: number[] = [];
    for await (const t of lm.stream([PROMPT], { maxNewTokens: NEW_TOKENS })) {
      tokens.push(t.token);
      if (tokens.length === SWITCH_AT) peft.switchTo("a");
    }
    const logits = lm.forward([PROMPT.concat(tokens)], { logits: "last" });
    const last = logits.toArray();
    logits.free();
    return { tokens, logitsBits: Array.from(new Uint32Array(last.buffer)) };
  } finally {
    lm.dispose();
  }
}

describe("threads in Chromium", () => {
  test("a cross-origin-isolated page runs Web Workers on shared memory; tokens and logits equal Node's", async () => {
    const ref = await nodeReference();
    const r = await runInPage(isolatedServer!.url, 3);
    assert.equal(r.isolated, true);
    assert.equal(r.shared, true);
    assert.ok(r.threads >= 2, `init() started the default thread count (hardwareConcurrency, at most 8), got ${r.threads}`);
    assert.equal(r.limitedBy, null);
    assert.equal(r.threadsAfterResize, 3, "init({ threads: 3 }) resized the pool");
    assert.equal(r.gemmSame, true, "a gemm split over 3 threads equals the one-thread runtime's bit for bit");
    assert.deepEqual(r.tokens, ref.tokens);
    assert.deepEqual(r.logitsBits, ref.logitsBits);
  });

  test("half precision on threads: the BF16 checkpoint loads as bf16 on the isolated page; tokens and logits equal Node's", async () => {
    const ref = await nodeReference("model_bf16");
    const r = await runInPage(isolatedServer!.url, 2, "model_bf16/");
    assert.equal(r.dtype, "bf16");
    assert.equal(r.threadsAfterResize, 2);
    assert.deepEqual(r.tokens, ref.tokens);
    assert.deepEqual(r.logitsBits, ref.logitsBits);
  });

  test("a page that is not cross-origin isolated runs one thread and says why; same tokens and logits", async () => {
    const ref = await nodeReference();
    const r = await runInPage(plainUrl, 4);
    assert.equal(r.isolated, false);
    assert.equal(r.shared, false);
    assert.equal(r.threads, 1);
    assert.equal(r.threadsAfterResize, 1);
    assert.match(r.limitedBy ?? "", /not cross-origin isolated.*Cross-Origin-Opener-Policy: same-origin.*Cross-Origin-Embedder-Policy: require-corp/);
    assert.equal(r.gemmSame, true);
    assert.deepEqual(r.tokens, ref.tokens);
    assert.deepEqual(r.logitsBits, ref.logitsBits);
  });
});
