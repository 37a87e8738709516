// The browser build and the browser example, in headless Chromium (Debian's /usr/bin/chromium driven by
// playwright-core). Nothing is skipped: without Chromium every test here fails with a message saying how to
// install it.
//
//   1. dist/browser.js has no Node built-ins and works from a plain <script type="module"> page.
//   2. Issue 4: the browser bundle loads PEFT's fixture adapter from bytes (and from a URL, a File[] and Blobs)
//      and computes what PEFT/PyTorch and Node compute (1e-5); saveAdapter's bytes equal Node's.
//   3. The example page (examples/browser/), served with demo data generated here: every adapter button and
//      "base" are clicked, the probabilities equal Node's (1e-5), switch and fuse times are shown, sliders fuse,
//      drawing works, a phone-sized viewport does not overflow; screenshots go to test-output/browser/.
//   4. The page without a data folder: a folder picked with the directory input loads and predicts like Node.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import {
  ROOT,
  ensureBuilt,
  ensureOutputDir,
  ChromiumSession,
  loadDemoInNode,
  makeDemoData,
  maxDiff,
  openPage,
  probs,
  startServer,
  type DemoData,
  type ExampleServer,
} from "./helpers/browser.js";
import { fixturePath, readFixture } from "./helpers/fixtures.js";
import { Linear, LogSoftmax, PeftModel, ReLU, Sequential, Tensor, readSafetensors, type ShiraModel } from "../src/node.js";
import type { ShiraDemo } from "../examples/browser/hook.js";

type Lib = typeof import("../src/index.js");
type Win = { S: Lib; libReady: Promise<string>; shiraDemo: ShiraDemo };
const TOL = 1e-5;
const MS_RE = /^\d+\.\d{3} ms$/;

let tmp = "";
let data: DemoData;
let server: ExampleServer | null = null;
const chromiumSession = new ChromiumSession();
let nodePeft: ShiraModel;

/** Collects page errors, console errors and every URL requested (to check that all of them are local). */
function watch(page: Page): { errors: string[]; urls: string[] } {
  const w = { errors: [] as string[], urls: [] as string[] };
  page.on("pageerror", (e) => w.errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") w.errors.push(`console: ${m.text()}`);
  });
  page.on("request", (r) => w.urls.push(r.url()));
  page.on("response", (r) => {
    if (r.status() >= 400) w.errors.push(`HTTP ${r.status()}: ${r.url()}`);
  });
  return w;
}

/** The browser, or the reason there is none (each browser test then FAILS with it; nothing is skipped). */
function chromium(): Browser {
  return chromiumSession.get();
}

before(async () => {
  const t0 = performance.now();
  ensureBuilt();
  tmp = mkdtempSync(join(tmpdir(), "shira-browser-"));
  data = await makeDemoData(join(tmp, "demo"));
  // the plain module page of the bundle tests
  const pages = join(tmp, "pages");
  mkdirSync(pages);
  writeFileSync(
    join(pages, "bundle.html"),
    `<!doctype html><html><head><meta charset="utf-8"><title>bundle</title><link rel="icon" href="data:,"></head><body>
<script type="module">
  import * as S from "/lib/browser.js";
  window.S = S;
  window.libReady = S.init().then((rt) => rt.variant);
</script></body></html>`,
  );
  server = await startServer({
    data: data.dir,
    mounts: { "/lib/": join(ROOT, "dist"), "/fixtures/": fixturePath(), "/t/": pages, "/nodata/": join(ROOT, "dist/examples/browser") },
  });
  await chromiumSession.launch();
  if (chromiumSession.error) console.log(`# ${chromiumSession.error.message}`);
  nodePeft = await loadDemoInNode(data.dir, data.adapters);
  console.log(`# browser tests: built, data generated, server ${server.url}, Chromium ${chromiumSession.error ? "MISSING" : chromiumSession.get().version()} in ${(performance.now() - t0).toFixed(0)} ms`);
});

after(async () => {
  await chromiumSession.close();
  await server?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe("dist/browser.js", () => {
  test("has no Node built-ins: no import statements left, no require() calls, no node: specifiers", () => {
    const js = readFileSync(join(ROOT, "dist/browser.js"), "utf8");
    const staticImports = [...js.matchAll(/(?:^|[;\s}])import\s*(?:[\w$*{}\s,]+from\s*)?["']([^"']+)["']/g)].map((m) => m[1]);
    const dynamicImports = [...js.matchAll(/\bimport\s*\(\s*["']([^"']+)["']\s*\)/g)].map((m) => m[1]);
    const requires = [...js.matchAll(/(?:^|[^\w$.])((?:__)?require)\s*\(\s*([^)]{0,40})/g)].map((m) => `${m[1]}(${m[2]}`);
    const exportsFrom = [...js.matchAll(/\bexport\s*[\w$*{}\s,]*from\s*["']([^"']+)["']/g)].map((m) => m[1]);
    assert.deepEqual(staticImports, [], "static imports (everything must be bundled)");
    assert.deepEqual(dynamicImports, [], "dynamic imports");
    assert.deepEqual(requires, [], "require() calls");
    assert.deepEqual(exportsFrom, [], "re-exports from other modules");
    assert.ok(!/["'`]node:/.test(js), "no node: specifier strings");
    for (const mod of ["fs", "fs/promises", "path", "url", "os", "crypto", "module", "child_process", "worker_threads", "buffer", "util", "stream"]) {
      assert.ok(!new RegExp(`["'\`]${mod.replace("/", "\\/")}["'\`]\\s*\\)`).test(js), `no reference to Node's "${mod}"`);
    }
  });

  test("loads in a plain <script type=module> page: init() resolves and a tiny forward gives a known number", async () => {
    const { context, page } = await openPage(chromium());
    const w = watch(page);
    try {
      await page.goto(server!.url + "t/bundle.html");
      const res = await page.evaluate(async () => {
        const win = window as unknown as Win;
        const variant = await win.libReady;
        const S = win.S;
        const lin = new S.Linear(2, 1);
        lin.loadStateDict({ weight: { shape: [1, 2], data: new Float32Array([2, 3]) }, bias: { shape: [1], data: new Float32Array([0.5]) } });
        const net = new S.Sequential({ lin, act: new S.ReLU() });
        const x = S.Tensor.from([1, 2, -1, -2], [2, 2]);
        const y = net.forward(x);
        const out = Array.from(y.toArray());
        return { variant, out, crossOriginIsolated: self.crossOriginIsolated };
      });
      assert.match(res.variant, /^(simd|relaxed-simd)$/);
      assert.deepEqual(res.out, [8.5, 0]); // relu(2·1 + 3·2 + 0.5), relu(-2 - 6 + 0.5)
      assert.equal(res.crossOriginIsolated, true, "the server's COOP/COEP headers make the page cross-origin isolated");
      assert.deepEqual(w.errors, []);
    } finally {
      await context.close();
    }
  });
});

describe("issue 4: PEFT adapter files in the browser bundle", () => {
  test("fromPretrained from bytes (and URL, File[], Blob sources) equals PEFT's out.alpha/out.beta and Node; saveAdapter bytes equal Node's", async () => {
    const { context, page } = await openPage(chromium());
    const w = watch(page);
    try {
      await page.goto(server!.url + "t/bundle.html");
      const res = await page.evaluate(async () => {
        const win = window as unknown as Win;
        await win.libReady;
        const S = win.S;
        const bytes = async (p: string) => new Uint8Array(await (await fetch(p)).arrayBuffer());
        const [modelBytes, cfgText, stBytes, casesBytes] = await Promise.all([
          bytes("/fixtures/mlp/model.safetensors"),
          fetch("/fixtures/mlp/alpha/adapter_config.json").then((r) => r.text()),
          bytes("/fixtures/mlp/alpha/adapter_model.safetensors"),
          bytes("/fixtures/mlp/cases.safetensors"),
        ]);
        // PEFT's test MLP; the activations have no parameters, so their names are free
        const m = new S.Sequential({
          lin0: new S.Linear(10, 20),
          relu0: new S.ReLU(),
          lin1: new S.Linear(20, 40),
          relu1: new S.ReLU(),
          lin2: new S.Linear(40, 30),
          relu2: new S.ReLU(),
          lin3: new S.Linear(30, 10),
          sm: new S.LogSoftmax(-1),
        });
        m.eval();
        m.loadStateDict(S.readSafetensors(modelBytes));
        const peft = await S.PeftModel.fromPretrained(m, { "adapter_config.json": cfgText, "adapter_model.safetensors": stBytes }, { adapterName: "alpha" });
        const x = S.readSafetensors(casesBytes).f32("x");
        const run = () => {
          const t = S.Tensor.from(x, [4, 10]);
          const y = peft.forward(t);
          const out = Array.from(y.toArray());
          t.free();
          y.free();
          return out;
        };
        const unfused = run();
        peft.switchTo("alpha");
        const fused = run();
        peft.unmerge();
        const base = peft.disableAdapters(run);
        await peft.loadAdapter(new URL("/fixtures/mlp/beta/", location.href), "beta");
        await peft.loadAdapter([new File([cfgText], "adapter_config.json"), new File([stBytes], "adapter_model.safetensors")], "alpha_files");
        await peft.loadAdapter({ "adapter_config.json": new Blob([cfgText]), "adapter_model.safetensors": new Blob([stBytes]) }, "alpha_blobs");
        peft.switchTo("beta");
        const beta = run();
        peft.switchTo("alpha_files");
        const alphaFiles = run();
        peft.switchTo("alpha_blobs");
        const alphaBlobs = run();
        const saved = peft.saveAdapter("alpha");
        return {
          unfused,
          fused,
          base,
          beta,
          alphaFiles,
          alphaBlobs,
          savedConfig: saved["adapter_config.json"],
          savedModel: Array.from(saved["adapter_model.safetensors"]),
        };
      });

      const cases = readFixture("mlp", "cases.safetensors");
      const row = (a: ArrayLike<number>) => [Array.from(a)];
      for (const [what, got, want] of [
        ["unfused alpha vs out.alpha", res.unfused, cases.f32("out.alpha")],
        ["fused alpha vs out.alpha", res.fused, cases.f32("out.alpha")],
        ["base vs out.base", res.base, cases.f32("out.base")],
        ["beta (URL source) vs out.beta", res.beta, cases.f32("out.beta")],
        ["alpha (File[] source) vs out.alpha", res.alphaFiles, cases.f32("out.alpha")],
        ["alpha (Blob source) vs out.alpha", res.alphaBlobs, cases.f32("out.alpha")],
      ] as const) {
        const d = maxDiff(row(got), row(want));
        assert.ok(d < TOL, `${what}: max |diff| ${d}`);
      }
      assert.ok(maxDiff(row(res.unfused), row(res.base)) > 1e-3, "the adapter changes the output");

      // the same in Node, from the same bytes
      const m = new Sequential({
        lin0: new Linear(10, 20),
        relu0: new ReLU(),
        lin1: new Linear(20, 40),
        relu1: new ReLU(),
        lin2: new Linear(40, 30),
        relu2: new ReLU(),
        lin3: new Linear(30, 10),
        sm: new LogSoftmax(-1),
      });
      m.eval();
      m.loadStateDict(readSafetensors(readFileSync(fixturePath("mlp", "model.safetensors"))));
      const peft = await PeftModel.fromPretrained(
        m,
        { "adapter_config.json": readFileSync(fixturePath("mlp", "alpha", "adapter_config.json"), "utf8"), "adapter_model.safetensors": readFileSync(fixturePath("mlp", "alpha", "adapter_model.safetensors")) },
        { adapterName: "alpha" },
      );
      peft.switchTo("alpha");
      const t = Tensor.from(cases.f32("x"), [4, 10]);
      const y = peft.forward(t);
      const nodeOut = Array.from(y.toArray());
      t.free();
      y.free();
      assert.ok(maxDiff(row(res.fused), row(nodeOut)) < TOL, "browser vs Node (fused alpha)");
      const saved = peft.saveAdapter("alpha");
      assert.equal(res.savedConfig, saved["adapter_config.json"], "saveAdapter: adapter_config.json text");
      assert.deepEqual(res.savedModel, Array.from(saved["adapter_model.safetensors"]), "saveAdapter: adapter_model.safetensors bytes");
      assert.deepEqual(w.errors, []);
    } finally {
      await context.close();
    }
  });
});

describe("example page (examples/browser) with a data folder", () => {
  test("loads the model and adapters, every button switches (probabilities equal Node's), sliders fuse, drawing predicts", async () => {
    const { context, page } = await openPage(chromium(), { viewport: { width: 1280, height: 900 } });
    const w = watch(page);
    try {
      await page.goto(server!.url);
      const info = await page.evaluate(() => (window as unknown as Win).shiraDemo.ready);
      assert.deepEqual(info.adapters, data.adapters, "adapters from /data/adapters/index.json (generated by the server)");
      assert.deepEqual(info.sizes, [784, 256, 128, 10]);
      assert.equal(info.source, "data");
      await page.waitForSelector(`button[data-adapter="${data.adapters[0]}"]`);
      const inputs = data.inputs.map((i) => i.pixels);

      const pagePredict = () => page.evaluate((xs) => xs.map((x) => (window as unknown as Win).shiraDemo.predict(x)), inputs);
      const shownProbs = () => page.$$eval("#probs .prob", (rows) => rows.map((r) => Number((r as HTMLElement).dataset.p)));
      const pressed = () => page.$$eval('#adapters button[aria-pressed="true"]', (bs) => bs.map((b) => b.textContent));

      // the sample buttons come from /data/samples.json (the MNIST inputs); click the first one
      assert.equal(await page.locator("#samples .sample").count(), data.inputs.filter((i) => i.label !== null).length);
      await page.locator('#samples .sample[data-sample="0"]').click();

      /** Checks the current state against Node: the hook's predict for every input and the bars for sample 0. */
      const check = async (what: string, ref: number[][]) => {
        const got = await pagePredict();
        const d = maxDiff(got, ref);
        assert.ok(d < TOL, `${what}: page vs Node, max |diff| ${d}`);
        const bars = await shownProbs();
        const dBars = maxDiff([bars], [ref[0]]);
        assert.ok(dBars < TOL, `${what}: displayed bars vs Node for sample 0, max |diff| ${dBars}`);
        const top = await page.locator("#probs .prob.top").getAttribute("data-class");
        assert.equal(Number(top), ref[0].indexOf(Math.max(...ref[0])), `${what}: highlighted class`);
        return d;
      };

      // initial state: base
      const baseRef = nodePeft.disableAdapters(() => probs(nodePeft, data.inputs));
      await check("initial base", baseRef);
      assert.deepEqual(await page.evaluate(() => (window as unknown as Win).shiraDemo.mode), { kind: "base" });

      const times: Record<string, string> = {};
      const diffs: Record<string, number> = {};
      for (const name of [...data.adapters, "base"]) {
        const sel = name === "base" ? 'button[data-mode="base"]' : `button[data-adapter="${name}"]`;
        await page.locator(sel).click();
        let ref: number[][];
        if (name === "base") ref = nodePeft.disableAdapters(() => probs(nodePeft, data.inputs));
        else {
          nodePeft.switchTo(name);
          ref = probs(nodePeft, data.inputs);
        }
        diffs[name] = await check(name, ref);
        const ms = (await page.locator(`.ms[data-for="${name}"]`).textContent())?.trim() ?? "";
        assert.match(ms, MS_RE, `${name}: switch time next to the button`);
        times[name] = ms;
        const statusText = (await page.locator("#status").textContent()) ?? "";
        assert.ok(statusText.includes(ms), `${name}: status line "${statusText}" shows ${ms}`);
        const hookMs = await page.evaluate(() => (window as unknown as Win).shiraDemo.lastSwitchMs);
        assert.ok(typeof hookMs === "number" && hookMs >= 0 && hookMs.toFixed(3) + " ms" === ms, `${name}: lastSwitchMs ${hookMs}`);
        assert.deepEqual(await pressed(), [name], `${name}: the pressed button`);
        assert.deepEqual(
          await page.evaluate(() => (window as unknown as Win).shiraDemo.mode),
          name === "base" ? { kind: "base" } : { kind: "adapter", name },
        );
      }
      assert.ok(maxDiff(baseRef, (nodePeft.switchTo(data.adapters[0]), probs(nodePeft, data.inputs))) > 1e-3, "the adapters change the probabilities");

      // multi-adapter fusion with two sliders (the real inputs), in slider order
      const [a, b] = data.adapters;
      await page.locator(`input[type="range"][data-adapter="${a}"]`).fill("0.5");
      await page.locator(`input[type="range"][data-adapter="${b}"]`).fill("1");
      assert.deepEqual(await page.evaluate(() => (window as unknown as Win).shiraDemo.mode), {
        kind: "fused",
        entries: [
          { name: a, weight: 0.5 },
          { name: b, weight: 1 },
        ],
      });
      nodePeft.fuse([
        { name: a, weight: 0.5 },
        { name: b, weight: 1 },
      ]);
      diffs["fuse(sliders)"] = await check(`fuse ${a}×0.5 + ${b}×1`, probs(nodePeft, data.inputs));
      const fuseMs = (await page.locator("#fuse-ms").textContent())?.trim() ?? "";
      assert.match(fuseMs, MS_RE, "fuse time shown");
      assert.ok(((await page.locator("#status").textContent()) ?? "").includes(fuseMs), "fuse time in the status line");
      assert.deepEqual(await pressed(), [], "no single-adapter button pressed while fused");
      await page.screenshot({ path: join(ensureOutputDir(), "demo-fused.png"), fullPage: true });

      // three adapters through the hook
      const entries = data.adapters.map((name, i) => ({ name, weight: [1, 0.25, 0.75][i] }));
      const hookMs = await page.evaluate((e) => (window as unknown as Win).shiraDemo.fuse(e), entries);
      assert.ok(hookMs >= 0);
      nodePeft.fuse(entries);
      diffs["fuse(3, hook)"] = await check("fuse of three (hook)", probs(nodePeft, data.inputs));
      const sliderValues = await page.$$eval('#adapters input[type="range"]', (xs) => xs.map((x) => Number((x as HTMLInputElement).value)));
      assert.deepEqual(sliderValues, [1, 0.25, 0.75], "the sliders follow the fusion");

      // back to one adapter by its button: the sliders show it alone
      await page.locator(`button[data-adapter="${b}"]`).click();
      nodePeft.switchTo(b);
      await check(`${b} after fusion`, probs(nodePeft, data.inputs));
      assert.deepEqual(
        await page.$$eval('#adapters input[type="range"]', (xs) => xs.map((x) => Number((x as HTMLInputElement).value))),
        data.adapters.map((n) => (n === b ? 1 : 0)),
      );

      // drawing: clear, then a stroke with the mouse; the bars show the prediction of what is drawn
      await page.locator("#clear").click();
      await page.waitForFunction(() => (window as unknown as Win).shiraDemo.pixels().every((v) => v === 0));
      const box = (await page.locator("#pad").boundingBox())!;
      await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.2);
      await page.mouse.down();
      await page.mouse.move(box.x + box.width * 0.52, box.y + box.height * 0.5, { steps: 8 });
      await page.mouse.move(box.x + box.width * 0.48, box.y + box.height * 0.8, { steps: 8 });
      await page.mouse.up();
      await page.waitForFunction(() => {
        const d = (window as unknown as Win).shiraDemo;
        const want = d.predict(d.pixels());
        const shown = [...document.querySelectorAll<HTMLElement>("#probs .prob")].map((r) => Number(r.dataset.p));
        return shown.length === want.length && shown.every((v, i) => Math.abs(v - want[i]) < 1e-12);
      });
      const drawn = await page.evaluate(() => (window as unknown as Win).shiraDemo.pixels());
      const inked = drawn.filter((v) => v > 0.5).length;
      assert.ok(inked > 20 && inked < 200, `a stroke of ${inked} inked pixels`);
      nodePeft.switchTo(b);
      const drawnRef = probs(nodePeft, [{ pixels: drawn }]);
      assert.ok(maxDiff([await shownProbs()], drawnRef) < TOL, "drawn digit: page vs Node");

      // the screenshot for the docs: an adapter selected on a sample digit
      await page.locator('#samples .sample[data-sample="0"]').click();
      await page.locator(`button[data-adapter="${a}"]`).click();
      await page.screenshot({ path: join(ensureOutputDir(), "browser-demo.png"), fullPage: true });

      // everything came from the local server: the page works offline once loaded
      const foreign = w.urls.filter((u) => !u.startsWith(server!.url) && !u.startsWith("data:") && !u.startsWith("blob:"));
      assert.deepEqual(foreign, [], "no external requests");
      assert.deepEqual(w.errors, []);
      console.log(`# switch times (Chromium): ${Object.entries(times).map(([k, v]) => `${k} ${v}`).join(", ")}; fuse ${fuseMs}`);
      console.log(`# max |page - Node|: ${Object.entries(diffs).map(([k, v]) => `${k} ${v.toExponential(1)}`).join(", ")}`);
    } finally {
      await context.close();
    }
  });

  test("a phone-sized viewport: no horizontal overflow, controls visible, touch switching works", async () => {
    const { context, page } = await openPage(chromium(), { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    const w = watch(page);
    try {
      await page.goto(server!.url);
      await page.evaluate(() => (window as unknown as Win).shiraDemo.ready);
      await page.waitForSelector(`button[data-adapter="${data.adapters[0]}"]`);
      const dims = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, inner: window.innerWidth }));
      assert.ok(dims.scroll <= dims.inner, `page width ${dims.scroll} fits the ${dims.inner}px viewport`);
      const pad = (await page.locator("#pad").boundingBox())!;
      assert.ok(pad.width >= 200 && pad.x >= 0 && pad.x + pad.width <= 390, `the pad is large and on screen (${JSON.stringify(pad)})`);
      const name = data.adapters[1];
      await page.locator(`button[data-adapter="${name}"]`).tap();
      assert.match((await page.locator(`.ms[data-for="${name}"]`).textContent())?.trim() ?? "", MS_RE);
      nodePeft.switchTo(name);
      const ref = probs(nodePeft, data.inputs);
      const got = await page.evaluate((xs) => xs.map((x) => (window as unknown as Win).shiraDemo.predict(x)), data.inputs.map((i) => i.pixels));
      assert.ok(maxDiff(got, ref) < TOL);
      await page.screenshot({ path: join(ensureOutputDir(), "browser-demo-phone.png"), fullPage: true });
      assert.deepEqual(w.errors, []);
    } finally {
      await context.close();
    }
  });
});

describe("example page without a data folder", () => {
  test("a folder picked with the directory input (webkitdirectory) loads; predictions equal Node's", async () => {
    const { context, page } = await openPage(chromium());
    const w = watch(page);
    try {
      await page.goto(server!.url + "nodata/"); // data/ resolves to /nodata/data/, which does not exist
      await page.waitForFunction(() => (document.querySelector("#status")?.textContent ?? "").includes("pick or drop"));
      // the built-in MNIST samples (dist/examples/browser/samples.json) are offered instead
      assert.equal(await page.locator("#samples .sample").count(), 10);
      await page.locator("#pick-dir").setInputFiles(data.dir);
      const info = await page.evaluate(() => (window as unknown as Win).shiraDemo.ready);
      assert.equal(info.source, "files");
      assert.deepEqual(info.adapters, data.adapters, "adapter names from the folder names");
      const inputs = data.inputs.map((i) => i.pixels);
      for (const name of [data.adapters[2], "base"]) {
        await page.locator(name === "base" ? 'button[data-mode="base"]' : `button[data-adapter="${name}"]`).click();
        const ref = name === "base" ? nodePeft.disableAdapters(() => probs(nodePeft, data.inputs)) : (nodePeft.switchTo(name), probs(nodePeft, data.inputs));
        const got = await page.evaluate((xs) => xs.map((x) => (window as unknown as Win).shiraDemo.predict(x)), inputs);
        assert.ok(maxDiff(got, ref) < TOL, `${name} (picked files): page vs Node`);
      }
      // an adapter saved from the page is byte-identical to the file it was loaded from
      const saved = await page.evaluate((n) => {
        const f = (window as unknown as Win).shiraDemo.saveAdapter(n);
        return Array.from(f["adapter_model.safetensors"]);
      }, data.adapters[0]);
      assert.deepEqual(saved, Array.from(readFileSync(join(data.dir, "adapters", data.adapters[0], "adapter_model.safetensors"))));
      const foreign = w.urls.filter((u) => !u.startsWith(server!.url) && !u.startsWith("data:") && !u.startsWith("blob:"));
      assert.deepEqual(foreign, []);
      // 404s for the missing data folder are expected (the page probes data/model.json and data/samples.json)
      const unexpected = w.errors.filter((e) => !/Failed to load resource: the server responded with a status of 404/.test(e) && !/^HTTP 404: .*\/nodata\/data\//.test(e));
      assert.deepEqual(unexpected, []);
    } finally {
      await context.close();
    }
  });
});
