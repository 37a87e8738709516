// The language-model page (examples/browser/lm.html) in headless Chromium: a Hugging Face checkpoint folder (the tiny
// Llama of tests/fixtures/transformers with a byte-level tokenizer.json) and PEFT SHiRA adapters (the fixture's and the
// two written by real PEFT) served under /data/lm/; the page streams greedy tokens with adapters switched between
// tokens, and every token equals what Node computes with the same switches. Also loads a picked folder.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import type { Browser, Page } from "playwright-core";
import { ChromiumSession, ROOT, ensureBuilt, ensureOutputDir, openPage, startServer, type ExampleServer } from "./helpers/browser.js";
import { TRANSFORMERS } from "./helpers/transformers.js";
import { AutoModelForCausalLM, AutoTokenizer, PeftModel } from "../src/node.js";
import type { LmGenerateResult, ShiraLM } from "../examples/browser/lm-hook.js";

type Win = { shiraLM: ShiraLM };
let tmp = "";
let server: ExampleServer | null = null;
const chromiumSession = new ChromiumSession();
const ADAPTERS: [string, string][] = [
  ["fixture", join(TRANSFORMERS, "llama", "shira")],
  ["peft_default", join(TRANSFORMERS, "..", "peft-real", "llama", "adapter")],
  ["peft_second", join(TRANSFORMERS, "..", "peft-real", "llama", "adapter_second", "second")],
];

before(async () => {
  ensureBuilt();
  tmp = mkdtempSync(join(tmpdir(), "shira-lm-page-"));
  const lm = join(tmp, "data", "lm");
  cpSync(join(TRANSFORMERS, "llama", "model"), lm, { recursive: true });
  cpSync(join(TRANSFORMERS, "..", "tokenizer", "bytelevel-bpe"), lm, { recursive: true });
  for (const [name, dir] of ADAPTERS) cpSync(dir, join(lm, "adapters", name), { recursive: true });
  server = await startServer({ data: join(tmp, "data") });
  await chromiumSession.launch();
});

after(async () => {
  await chromiumSession.close();
  await server?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

function chromium(): Browser {
  return chromiumSession.get();
}

/** Node's tokens for the same prompt and switch plan (greedy), through the library directly. */
async function nodeTokens(prompt: string, maxNewTokens: number, switchAt: [number, string][]): Promise<number[]> {
  const dir = join(tmp, "data", "lm");
  const lm = await AutoModelForCausalLM.fromPretrained(dir);
  const tok = await AutoTokenizer.fromPretrained(dir);
  try {
    const peft = await PeftModel.fromPretrained(lm, join(dir, "adapters", ADAPTERS[0][0]), { adapterName: ADAPTERS[0][0] });
    for (const [n] of ADAPTERS.slice(1)) await peft.loadAdapter(join(dir, "adapters", n), n);
    peft.switchToBase();
    const plan = new Map(switchAt);
    const go = (n: string) => (n === "base" ? peft.switchToBase() : peft.switchTo(n));
    if (plan.has(0)) go(plan.get(0)!);
    const out: number[] = [];
    for await (const t of lm.stream([tok.encode(prompt)], { maxNewTokens, eosTokenId: tok.eosTokenId! })) {
      out.push(t.token);
      if (plan.has(out.length)) go(plan.get(out.length)!);
    }
    return out;
  } finally {
    lm.dispose();
  }
}

/** Optional files of a checkpoint folder that the loaders probe for (a 404 for them is expected). */
const OPTIONAL = ["model.safetensors.index.json", "special_tokens_map.json", "chat_template.jinja"];

async function gotoPage(page: Page, path: string): Promise<string[]> {
  const errors: string[] = [];
  const notFound: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("response", (r) => r.status() === 404 && notFound.push(r.url()));
  page.on("console", (m) => {
    if (m.type() === "error" && !/status of 404/.test(m.text())) errors.push(m.text());
  });
  page.on("response", (r) => {
    if (r.status() === 404 && !OPTIONAL.some((f) => r.url().endsWith("/" + f))) errors.push(`404 ${r.url()}`);
  });
  await page.goto(server!.url + path);
  return errors;
}

describe("language-model page", () => {
  test("loads the checkpoint and adapters from /data/lm/ and streams Node's tokens with adapters switched between tokens", async () => {
    const { context, page } = await openPage(chromium());
    try {
      const errors = await gotoPage(page, "lm.html");
      const info = await page.evaluate(() => (window as unknown as Win).shiraLM.ready);
      assert.equal(info.modelType, "llama");
      assert.deepEqual(info.adapters, ADAPTERS.map(([n]) => n).sort());
      assert.equal(info.hasTokenizer, true);
      const switchAt: [number, string][] = [
        [0, "peft_default"],
        [4, "peft_second"],
        [8, "base"],
        [11, "fixture"],
      ];
      const res = (await page.evaluate((sw) => (window as unknown as Win).shiraLM.generate({ prompt: "hello world", maxNewTokens: 16, switchAt: sw }), switchAt)) as LmGenerateResult;
      const want = await nodeTokens("hello world", 16, switchAt);
      assert.deepEqual(res.tokens, want);
      assert.deepEqual(res.switches.map((s) => [s.atToken, s.adapter]), switchAt.filter(([k]) => k < want.length || k === 0));
      assert.equal(res.adapterPerToken[0], "peft_default");
      assert.equal(res.adapterPerToken[5], "peft_second");
      assert.ok(res.switches.every((s) => s.ms >= 0 && s.ms < 1000));
      // the output shows one segment per adapter run, and the stats line
      const segs = await page.$$eval("#output .seg", (els) => els.map((e) => (e as HTMLElement).title));
      assert.deepEqual(segs.filter((s, i) => i === 0 || s !== segs[i - 1]), segs);
      assert.match((await page.textContent("#stats")) ?? "", /tokens · prefill .* ms · decode .* tokens\/s/);
      // clicking an adapter button while nothing runs fuses it (the badge follows)
      await page.click('button[data-adapter="fixture"]');
      assert.equal(await page.textContent("#active"), "fixture");
      await page.screenshot({ path: join(ensureOutputDir(), "lm-page.png"), fullPage: true });
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  test("a Stop click (or stop()) ends a generation within one token", async () => {
    const { context, page } = await openPage(chromium());
    try {
      await gotoPage(page, "lm.html");
      await page.evaluate(() => (window as unknown as Win).shiraLM.ready);
      const code = await page.evaluate(async () => {
        const lm = (window as unknown as Win).shiraLM;
        const p = lm.generate({ ids: [5, 17, 123], maxNewTokens: 500 });
        await new Promise((r) => setTimeout(r, 30));
        lm.stop();
        try {
          await p;
          return "finished";
        } catch (e) {
          return (e as { code?: string }).code ?? String(e);
        }
      });
      assert.equal(code, "ABORTED");
    } finally {
      await context.close();
    }
  });

  test("a picked folder (model, tokenizer, adapters/) loads like the served one", async () => {
    const { context, page } = await openPage(chromium());
    try {
      await gotoPage(page, "lm.html?model=nowhere/");
      // no model at ?model: the page waits for a folder
      await page.waitForFunction(() => document.getElementById("status")!.textContent!.includes("pick a checkpoint folder"));
      const root = join(tmp, "data", "lm");
      const files: string[] = [];
      const walk = (d: string) => {
        for (const e of readdirSync(d)) {
          const p = join(d, e);
          if (statSync(p).isDirectory()) walk(p);
          else files.push(p);
        }
      };
      walk(root);
      // playwright sets webkitRelativePath from directory uploads: give it the folder itself
      await page.setInputFiles("#pick-dir", root);
      const info = await page.evaluate(() => (window as unknown as Win).shiraLM.ready);
      assert.equal(info.source, "files");
      assert.deepEqual(info.adapters, ADAPTERS.map(([n]) => n).sort());
      const res = (await page.evaluate(() => (window as unknown as Win).shiraLM.generate({ prompt: "hello world", maxNewTokens: 8, switchAt: [[0, "fixture"]] }))) as LmGenerateResult;
      assert.deepEqual(res.tokens, await nodeTokens("hello world", 8, [[0, "fixture"]]));
      assert.ok(files.some((f) => relative(root, f).startsWith("adapters")));
    } finally {
      await context.close();
    }
  });
});

void ROOT;
