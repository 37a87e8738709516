// The language-model page (examples/browser/lm.html) as a playground for a `shira demo` output folder, in headless
// Chromium. `before` runs the quick demo in Node (the shipped models/brown-llama, one SHiRA and one LoRA adapter per
// genre) and serves its output folder under /demo/; the page loads it with `?demo=/demo/`. Every generation on the
// page is compared token for token with Node running the same model, adapters, sampling seed and switch plan:
// sampled text with SHiRA genre adapters switched between tokens, a slider mix against `peft.fuse`, the LoRA toggle,
// and a picked demo folder. Also: report.md's samples are reproduced on the page, and Stop ends a stream.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { ChromiumSession, ensureBuilt, ensureOutputDir, openPage, startServer, type ExampleServer } from "./helpers/browser.js";
import { runLmDemo, writeLmReport, type LmDemoResults } from "../src/cli/lm-demo.js";
import { AutoModelForCausalLM, AutoTokenizer, LoraModel, PeftModel, readAdapterFiles } from "../src/node.js";
import type { LmGenerateResult, LmReadyInfo, MixEntry, ShiraLM } from "../examples/browser/lm-hook.js";

type Win = { shiraLM: ShiraLM };
type Plan = [number, string | MixEntry[]][];
type Sampling = { temperature: number; topK: number; seed: number } | null;

let tmp = "";
let out = "";
let demo: LmDemoResults;
let genres: string[] = [];
let server: ExampleServer | null = null;
const chromiumSession = new ChromiumSession();

before(async () => {
  ensureBuilt();
  tmp = mkdtempSync(join(tmpdir(), "shira-playground-"));
  out = join(tmp, "demo-out");
  const t0 = performance.now();
  demo = await runLmDemo({ out, quick: true, progress: false, log: () => {} });
  await writeLmReport(out, demo);
  console.log(`# quick demo in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  genres = demo.settings.genres;
  assert.ok(genres.length >= 3, `the quick demo should train at least 3 genres, got ${genres.join(", ")}`);
  // the folder twice: under /demo/ (for ?demo=/demo/) and as the data folder (`serve:examples -- --data DIR`)
  server = await startServer({ data: out, mounts: { "/demo/": out } });
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

/**
 * Node's generation with the demo folder's base model and adapters (loaded from the files, as a Node user would),
 * the adapters switched or fused before token k of the plan. Returns the ids and the text of each token.
 */
async function nodeRun(opts: { method?: "shira" | "lora"; prompt: string; maxNewTokens: number; plan: Plan; sampling: Sampling; ignoreEos: boolean }): Promise<{ tokens: number[]; pieces: string[] }> {
  const base = join(out, "base-model");
  const lm = await AutoModelForCausalLM.fromPretrained(base);
  const tok = await AutoTokenizer.fromPretrained(base);
  try {
    const method = opts.method ?? "shira";
    const dir = (g: string) => join(out, "adapters", method, g);
    let go: (t: string | MixEntry[]) => void;
    if (method === "shira") {
      const peft = await PeftModel.fromPretrained(lm, dir(genres[0]), { adapterName: genres[0] });
      for (const g of genres.slice(1)) await peft.loadAdapter(dir(g), g);
      peft.switchToBase();
      go = (t) => (t === "base" ? peft.switchToBase() : typeof t === "string" ? peft.switchTo(t) : t.length ? peft.fuse(t) : peft.switchToBase());
    } else {
      let lora: LoraModel | null = null;
      for (const g of genres) {
        const f = await readAdapterFiles(dir(g));
        if (!lora) lora = LoraModel.fromAdapterFiles(lm, f.config, f.model, g);
        else lora.loadAdapterFiles(f.config, f.model, g);
      }
      const l = lora!;
      l.fuse([]);
      go = (t) => (t === "base" ? l.fuse([]) : typeof t === "string" ? l.switchTo(t) : l.fuse(t));
    }
    const plan = new Map(opts.plan);
    if (plan.has(0)) go(plan.get(0)!);
    const tokens: number[] = [];
    const pieces: string[] = [];
    const s = opts.sampling;
    for await (const t of lm.stream([tok.encode(opts.prompt)], {
      maxNewTokens: opts.maxNewTokens,
      tokenizer: tok,
      eosTokenId: opts.ignoreEos ? [] : tok.eosTokenId!,
      ...(s ? { doSample: true, temperature: s.temperature, topK: s.topK, seed: s.seed } : {}),
    })) {
      tokens.push(t.token);
      pieces.push(t.text ?? "");
      if (plan.has(tokens.length)) go(plan.get(tokens.length)!);
    }
    return { tokens, pieces };
  } finally {
    lm.dispose();
  }
}

/** Optional files of a checkpoint folder that the loaders probe for (a 404 for them is expected). */
const OPTIONAL = ["model.safetensors.index.json", "special_tokens_map.json", "chat_template.jinja"];

async function gotoPage(page: Page, path: string): Promise<string[]> {
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => {
    if (m.type() === "error" && !/status of 404/.test(m.text())) errors.push(m.text());
  });
  page.on("response", (r) => {
    if (r.status() === 404 && !OPTIONAL.some((f) => r.url().endsWith("/" + f))) errors.push(`404 ${r.url()}`);
  });
  await page.goto(server!.url + path);
  return errors;
}

async function openDemo(): Promise<{ page: Page; info: LmReadyInfo; errors: string[]; close: () => Promise<void> }> {
  const { context, page } = await openPage(chromium());
  const errors = await gotoPage(page, "lm.html?demo=/demo/");
  const info = await page.evaluate(() => (window as unknown as Win).shiraLM.ready);
  return { page, info, errors, close: () => context.close() };
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

const SAMPLING = { temperature: 0.8, topK: 40, seed: 1234 };

describe("language-model playground on a shira demo output folder", () => {
  test("?demo= loads results.json's genres and streams Node's sampled tokens with SHiRA genre adapters switched at tokens 6 and 14", async () => {
    const { page, info, errors, close } = await openDemo();
    try {
      assert.equal(info.kind, "demo");
      assert.equal(info.source, "url");
      assert.equal(info.method, "shira");
      assert.deepEqual(info.genres, genres);
      assert.deepEqual(info.adapters, genres);
      assert.equal(info.modelType, "llama");
      assert.equal(info.hasTokenizer, true);
      // the demo's sample settings became the page's defaults
      assert.equal(await page.inputValue("#prompt"), demo.samples.prompt);
      assert.equal(await page.inputValue("#seed"), String(demo.samples.seed));
      assert.equal(await page.isChecked("#sample"), true);
      // one button and one slider per genre (plus base)
      assert.deepEqual(await page.$$eval("#adapters button[data-adapter]", (els) => els.map((e) => (e as HTMLElement).dataset.adapter)), ["base", ...genres]);
      assert.deepEqual(await page.$$eval("#adapters input[type=range]", (els) => els.map((e) => [(e as HTMLInputElement).min, (e as HTMLInputElement).max, (e as HTMLInputElement).step])), genres.map(() => ["0", "1.5", "0.1"]));

      const [g0, g1, g2] = genres;
      const plan: Plan = [
        [0, g0],
        [6, g1],
        [14, g2],
      ];
      const prompt = "The old man";
      const req = { prompt, maxNewTokens: 24, doSample: true, ...SAMPLING, switchAt: plan, ignoreEos: true };
      const res = (await page.evaluate((r) => (window as unknown as Win).shiraLM.generate(r), req)) as LmGenerateResult;
      const want = await nodeRun({ prompt, maxNewTokens: 24, plan, sampling: SAMPLING, ignoreEos: true });
      assert.equal(want.tokens.length, 24);
      assert.deepEqual(res.tokens, want.tokens);
      assert.equal(res.text, want.pieces.join(""));
      assert.deepEqual(res.sampling, { ...SAMPLING, topP: 1 });
      // which adapter produced which part: three segments, the text after each switch equal to Node's
      const expectSegs = [
        { adapter: g0, text: want.pieces.slice(0, 6).join("") },
        { adapter: g1, text: want.pieces.slice(6, 14).join("") },
        { adapter: g2, text: want.pieces.slice(14).join("") },
      ];
      assert.deepEqual(res.segments, expectSegs);
      assert.deepEqual(res.adapterPerToken, [...Array(6).fill(g0), ...Array(8).fill(g1), ...Array(10).fill(g2)]);
      const shown = await page.$$eval("#output .seg", (els) => els.map((e) => ({ adapter: (e as HTMLElement).title, text: e.textContent, bg: (e as HTMLElement).style.background })));
      assert.deepEqual(shown.map(({ adapter, text }) => ({ adapter, text })), expectSegs);
      assert.equal(new Set(shown.map((s) => s.bg)).size, 3, `one colour per genre, got ${shown.map((s) => s.bg).join(" | ")}`);
      // the switch times: recorded per switch and listed on the page
      assert.deepEqual(res.switches.map((s) => [s.atToken, s.adapter]), plan);
      assert.ok(res.switches.every((s) => s.ms >= 0 && s.ms < 1000), JSON.stringify(res.switches));
      const log = await page.evaluate(() => (window as unknown as Win).shiraLM.switchLog);
      assert.deepEqual(log.slice(0, 3).map((s) => [s.atToken, s.adapter]), plan.slice().reverse());
      const items = await page.$$eval("#switch-log li", (els) => els.map((e) => e.textContent ?? ""));
      assert.match(items[0], new RegExp(`^${escapeRe(g2)} · \\d+\\.\\d{3} ms · before token 14$`));
      assert.match((await page.textContent("#stats")) ?? "", /^24 tokens · prefill .* ms · decode \d+\.\d tokens\/s$/);
      assert.equal(await page.getAttribute("#output", "aria-live"), "polite");

      // the switches change the text (else switches the page skipped would go unnoticed); which adapter was fused
      // for which token is checked above from the page's own record (adapterPerToken, switches)
      const unswitched = await nodeRun({ prompt, maxNewTokens: 24, plan: [[0, g0]], sampling: SAMPLING, ignoreEos: true });
      assert.deepEqual(unswitched.tokens.slice(0, 6), want.tokens.slice(0, 6));
      assert.notDeepEqual(unswitched.tokens, want.tokens, `${g0} alone samples the same 24 tokens as the switched stream`);

      // the same seed gives the same text; another seed (on this model) another one
      const again = (await page.evaluate((r) => (window as unknown as Win).shiraLM.generate(r), req)) as LmGenerateResult;
      assert.deepEqual(again.tokens, res.tokens);
      const other = await nodeRun({ prompt, maxNewTokens: 24, plan, sampling: { ...SAMPLING, seed: SAMPLING.seed + 1 }, ignoreEos: true });
      const otherPage = (await page.evaluate((r) => (window as unknown as Win).shiraLM.generate(r), { ...req, seed: SAMPLING.seed + 1 })) as LmGenerateResult;
      assert.deepEqual(otherPage.tokens, other.tokens);
      assert.notDeepEqual(other.tokens, want.tokens, "seeds 1234 and 1235 sample the same 24 tokens: the test would not see a wrong seed");
      await page.screenshot({ path: join(ensureOutputDir(), "lm-playground.png"), fullPage: true });
      assert.deepEqual(errors, []);
    } finally {
      await close();
    }
  });

  test("Generate with the demo's prompt and seed reproduces report.md's SHiRA samples; base equals Node's base", async () => {
    const { page, close } = await openDemo();
    try {
      const report = readFileSync(join(out, "report.md"), "utf8");
      for (const adapter of ["base", ...genres]) {
        // through the UI: the adapter's button, then Generate (prompt, seed, new tokens: the demo's, set on load)
        await page.click(`#adapters button[data-adapter="${adapter}"]`);
        assert.equal(await page.textContent("#active"), adapter);
        const before = await page.evaluate(() => (window as unknown as Win).shiraLM.last);
        await page.click("#generate");
        await page.waitForFunction((b) => (window as unknown as Win).shiraLM.last !== b && (window as unknown as Win).shiraLM.progress === null, before);
        const last = (await page.evaluate(() => (window as unknown as Win).shiraLM.last))!;
        assert.deepEqual(last.sampling, { temperature: 0.8, topK: 40, topP: 1, seed: demo.samples.seed });
        if (adapter === "base") {
          // results.json's "base" sample is not the base model's (lm-demo.ts samples it after `shira.unmerge()`, which
          // leaves the last timed adapter active, unfused): compare the base with Node directly
          const plan: Plan = [];
          const ref = await nodeRun({ prompt: demo.samples.prompt, maxNewTokens: demo.samples.maxNewTokens, plan, sampling: { temperature: 0.8, topK: 40, seed: demo.samples.seed }, ignoreEos: false });
          assert.deepEqual(last.tokens, ref.tokens);
          continue;
        }
        const label = `SHiRA ${adapter}`;
        const want = demo.samples.texts.find((t) => t.adapter === label);
        assert.ok(want, `results.json has no sample for ${label}`);
        assert.equal(last.text, want.text, `${label}: the page's text differs from the demo's sample`);
        assert.ok(report.includes(`${demo.samples.prompt}${want.text.replace(/\n/g, " ")}`), `report.md shows the ${label} sample`);
      }
    } finally {
      await close();
    }
  });

  test("sliders mix two genres (1.0 + 0.5): peft.fuse on the page gives Node's greedy tokens", async () => {
    const { page, close } = await openDemo();
    try {
      const [g0, g1] = genres;
      // move two sliders as a user would (value, then the change event of a release)
      for (const [name, w] of [
        [g0, "1"],
        [g1, "0.5"],
      ]) {
        await page.$eval(
          `#adapters input[type=range][data-adapter="${name}"]`,
          (el, v) => {
            const r = el as HTMLInputElement;
            r.value = v;
            r.dispatchEvent(new Event("input", { bubbles: true }));
            r.dispatchEvent(new Event("change", { bubbles: true }));
          },
          w,
        );
      }
      const label = `${g0} 1 + ${g1} 0.5`;
      assert.equal(await page.textContent("#active"), label);
      const log = await page.evaluate(() => (window as unknown as Win).shiraLM.switchLog);
      assert.deepEqual(log.slice(0, 2).map((s) => [s.atToken, s.adapter]), [[-1, label], [-1, `${g0} 1`]]);
      assert.match((await page.textContent("#switch-ms")) ?? "", new RegExp(`^${escapeRe(label)}: \\d+\\.\\d{3} ms$`));
      // greedy generation from the UI (sampling off), 20 tokens at most
      await page.fill("#prompt", "The old man");
      await page.uncheck("#sample");
      await page.fill("#max-new", "20");
      await page.click("#generate");
      await page.waitForFunction(() => (window as unknown as Win).shiraLM.last !== null && (window as unknown as Win).shiraLM.progress === null);
      const last = (await page.evaluate(() => (window as unknown as Win).shiraLM.last))!;
      const mix = [
        { name: g0, weight: 1 },
        { name: g1, weight: 0.5 },
      ];
      const want = await nodeRun({ prompt: "The old man", maxNewTokens: 20, plan: [[0, mix]], sampling: null, ignoreEos: false });
      assert.ok(want.tokens.length > 0);
      assert.deepEqual(last.tokens, want.tokens);
      assert.equal(last.sampling, null);
      assert.deepEqual(last.segments, [{ adapter: label, text: want.pieces.join("") }]);
      const seg = await page.$eval("#output .seg", (e) => ({ title: (e as HTMLElement).title, bg: (e as HTMLElement).style.background }));
      assert.equal(seg.title, label);
      assert.match(seg.bg, /linear-gradient/);
      // the same mix, sampled (the whole distribution counts, not only its top token): still Node's tokens, and
      // not those of the first genre alone (else this test could not tell a wrong weight)
      const sampled = (await page.evaluate(() => (window as unknown as Win).shiraLM.generate({ prompt: "The old man", maxNewTokens: 24, doSample: true, seed: 99, ignoreEos: true }))) as LmGenerateResult;
      const s = { temperature: 0.8, topK: 40, seed: 99 };
      const sampledWant = await nodeRun({ prompt: "The old man", maxNewTokens: 24, plan: [[0, mix]], sampling: s, ignoreEos: true });
      assert.deepEqual(sampled.tokens, sampledWant.tokens);
      const alone = await nodeRun({ prompt: "The old man", maxNewTokens: 24, plan: [[0, g0]], sampling: s, ignoreEos: true });
      assert.notDeepEqual(alone.tokens, sampledWant.tokens, `${g0} alone samples the same tokens as the mix`);
      const base = await nodeRun({ prompt: "The old man", maxNewTokens: 20, plan: [], sampling: null, ignoreEos: false });
      // all sliders back to zero: the base model
      const zero = await page.evaluate((names) => (window as unknown as Win).shiraLM.fuse(names.map((name) => ({ name, weight: 0 }))), genres);
      assert.ok(zero >= 0);
      assert.equal(await page.textContent("#active"), "base");
      assert.deepEqual(await page.$$eval("#adapters input[type=range]", (els) => els.map((e) => (e as HTMLInputElement).value)), genres.map(() => "0"));
      const res = (await page.evaluate(() => (window as unknown as Win).shiraLM.generate({ prompt: "The old man", maxNewTokens: 20 }))) as LmGenerateResult;
      assert.deepEqual(res.tokens, base.tokens);
    } finally {
      await close();
    }
  });

  test("Stop ends a running stream within a token; the page generates again afterwards", async () => {
    const { page, close } = await openDemo();
    try {
      const started = page.evaluate(async () => {
        try {
          await (window as unknown as Win).shiraLM.generate({ prompt: "The", maxNewTokens: 400, doSample: true, seed: 3, ignoreEos: true });
          return "finished";
        } catch (e) {
          return (e as { code?: string }).code ?? String(e);
        }
      });
      await page.waitForFunction(() => ((window as unknown as Win).shiraLM.progress?.tokens ?? 0) >= 3);
      assert.equal(await page.isDisabled("#generate"), true);
      await page.click("#stop");
      assert.equal(await started, "ABORTED");
      assert.match((await page.textContent("#status")) ?? "", /^Stopped after \d+ tokens\.$/);
      const n = Number(/(\d+)/.exec((await page.textContent("#status"))!)![1]);
      assert.ok(n >= 3 && n < 400, `stopped after ${n} tokens`);
      assert.equal(await page.evaluate(() => (window as unknown as Win).shiraLM.progress), null);
      assert.equal(await page.isDisabled("#generate"), false);
      assert.equal(await page.isDisabled("#stop"), true);
      // the model is free again, and still gives Node's tokens
      const res = (await page.evaluate(() => (window as unknown as Win).shiraLM.generate({ prompt: "The", maxNewTokens: 5, ignoreEos: true }))) as LmGenerateResult;
      assert.deepEqual(res.tokens, (await nodeRun({ prompt: "The", maxNewTokens: 5, plan: [], sampling: null, ignoreEos: true })).tokens);
    } finally {
      await close();
    }
  });

  test("the LoRA toggle reloads with adapters/lora/ and switches like Node's LoraModel", async () => {
    const { page, close } = await openDemo();
    try {
      assert.equal(await page.isVisible("#method"), true);
      await page.check('#method input[value="lora"]');
      await page.waitForFunction(() => document.getElementById("info")!.textContent!.includes("LoRA adapters"));
      const plan: Plan = [
        [0, genres[1]],
        [5, genres[2]],
      ];
      const res = (await page.evaluate((p) => (window as unknown as Win).shiraLM.generate({ prompt: "The", maxNewTokens: 12, switchAt: p, ignoreEos: true }), plan)) as LmGenerateResult;
      const want = await nodeRun({ method: "lora", prompt: "The", maxNewTokens: 12, plan, sampling: null, ignoreEos: true });
      assert.deepEqual(res.tokens, want.tokens);
      const info = await page.evaluate(() => (window as unknown as Win).shiraLM.setMethod("shira"));
      assert.equal(info.method, "shira");
      assert.deepEqual(info.adapters, genres);
    } finally {
      await close();
    }
  });

  test("without parameters, a served data folder that is a demo output folder loads (npm run serve:examples -- --data DIR); fits a phone", async () => {
    const { context, page } = await openPage(chromium(), { viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true });
    try {
      await gotoPage(page, "lm.html"); // data/lm/config.json is probed first (a 404 here)
      const info = await page.evaluate(() => (window as unknown as Win).shiraLM.ready);
      assert.deepEqual([info.source, info.kind, info.method], ["data", "demo", "shira"]);
      assert.deepEqual(info.adapters, genres);
      const plan: Plan = [[0, genres[1]]];
      const res = (await page.evaluate((p) => (window as unknown as Win).shiraLM.generate({ prompt: "The", maxNewTokens: 8, switchAt: p, ignoreEos: true }), plan)) as LmGenerateResult;
      assert.deepEqual(res.tokens, (await nodeRun({ prompt: "The", maxNewTokens: 8, plan, sampling: null, ignoreEos: true })).tokens);
      // no horizontal overflow on a phone-sized screen; the genre controls stay visible
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      // (the message names the elements that stick out, with their text: timings change the widths from run to run)
      const wide = overflow <= 0 ? [] : await page.evaluate(() => [...document.querySelectorAll("body *")].filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5).map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className}: right ${e.getBoundingClientRect().right.toFixed(0)} px, "${(e.textContent ?? "").slice(0, 60)}"`));
      assert.ok(overflow <= 0, `the page overflows by ${overflow} px at 390 px: ${wide.join("; ")}`);
      for (const g of genres) assert.equal(await page.isVisible(`input[type=range][data-adapter="${g}"]`), true);
      await page.screenshot({ path: join(ensureOutputDir(), "lm-playground-phone.png"), fullPage: true });
    } finally {
      await context.close();
    }
  });

  test("a picked demo output folder (webkitdirectory) loads like the served one", async () => {
    const { context, page } = await openPage(chromium());
    try {
      await gotoPage(page, "lm.html?demo=nowhere/");
      await page.waitForFunction(() => document.getElementById("status")!.textContent!.includes("pick a demo output folder"));
      await page.setInputFiles("#pick-dir", out);
      const info = await page.evaluate(() => (window as unknown as Win).shiraLM.ready);
      assert.equal(info.source, "files");
      assert.equal(info.kind, "demo");
      assert.deepEqual(info.genres, genres);
      const plan: Plan = [[0, genres[2]]];
      const res = (await page.evaluate((p) => (window as unknown as Win).shiraLM.generate({ prompt: "The", maxNewTokens: 10, doSample: true, seed: 5, switchAt: p, ignoreEos: true }), plan)) as LmGenerateResult;
      assert.deepEqual(res.tokens, (await nodeRun({ prompt: "The", maxNewTokens: 10, plan, sampling: { temperature: 0.8, topK: 40, seed: 5 }, ignoreEos: true })).tokens);
    } finally {
      await context.close();
    }
  });
});
