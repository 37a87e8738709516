// A tiny static server (node:http, no dependency) for the browser example.
//
//   npm run serve:examples                         the built page (dist/examples/browser/) on http://127.0.0.1:8080/
//   npm run serve:examples -- --data demo-out      ... and the demo's output folder under /data/
//   PORT=9000 npm run serve:examples               another port (0 = any free port)
//
// Without --data, `demo-out/` is served under /data/ when it exists. Under /data/ the server also answers
// `<folder>/adapters/index.json` (when the folder has no such file) with the adapter folders it finds:
// `{ "adapters": ["rot90", "invert", ...] }` (sub-folders of adapters/ holding an adapter_config.json); the language
// model page (lm.html) reads a checkpoint folder from /data/lm/ and its adapters from /data/lm/adapters/, or, when
// the data folder is a `shira demo` output folder (results.json, base-model/, adapters/shira/<genre>/), that folder.
// Files are served with `Cache-Control: no-store`; single `Range: bytes=a-b` requests are honoured (206). The
// page is cross-origin isolated (COOP/COEP headers; everything is same-origin) so `performance.now()` has
// microsecond resolution for the switch times instead of the coarse 100 µs of a non-isolated page.
//
// As a module: `const s = await serveExamples({ port: 0, data: "some/dir", mounts: { "/lib/": "dist" } });`
// then `s.url` ("http://127.0.0.1:PORT/") and `await s.close()`.
import { createServer } from "node:http";
import { existsSync, readdirSync, statSync, createReadStream } from "node:fs";
import { dirname, extname, join, resolve, sep } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const PAGE_DIR = join(root, "dist/examples/browser");

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".wasm": "application/wasm",
  ".png": "image/png",
  ".svg": "image/svg+xml",
  ".ico": "image/x-icon",
  ".txt": "text/plain; charset=utf-8",
  ".md": "text/plain; charset=utf-8",
  ".safetensors": "application/octet-stream",
};

/** Adapter folders of `<data>/adapters/` (those holding an adapter_config.json), sorted. */
export function listAdapters(dataDir) {
  const dir = join(dataDir, "adapters");
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && existsSync(join(dir, e.name, "adapter_config.json")))
    .map((e) => e.name)
    .sort();
}

/** The file under `base` for a URL path, or null when it escapes `base`. */
function inside(base, rel) {
  const p = resolve(base, "." + sep + rel);
  return p === base || p.startsWith(base + sep) ? p : null;
}

const COMMON = {
  "Cache-Control": "no-store",
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
  "Cross-Origin-Resource-Policy": "same-origin",
  "X-Content-Type-Options": "nosniff",
};

function send(res, status, body, type = "text/plain; charset=utf-8", head = false) {
  const buf = Buffer.from(body);
  res.writeHead(status, { ...COMMON, "Content-Type": type, "Content-Length": buf.length });
  res.end(head ? undefined : buf);
}

function sendFile(req, res, file, head) {
  const size = statSync(file).size;
  const headers = {
    ...COMMON,
    "Content-Type": TYPES[extname(file).toLowerCase()] ?? "application/octet-stream",
    "Accept-Ranges": "bytes",
  };
  const range = req.headers.range;
  if (range) {
    const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
    let start = NaN;
    let end = NaN;
    if (m && (m[1] !== "" || m[2] !== "")) {
      if (m[1] === "") {
        start = Math.max(0, size - Number(m[2]));
        end = size - 1;
      } else {
        start = Number(m[1]);
        end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
      }
    }
    if (!(start <= end) || start >= size) {
      res.writeHead(416, { ...headers, "Content-Range": `bytes */${size}` });
      res.end();
      return;
    }
    res.writeHead(206, { ...headers, "Content-Range": `bytes ${start}-${end}/${size}`, "Content-Length": end - start + 1 });
    if (head) res.end();
    else createReadStream(file, { start, end }).pipe(res);
    return;
  }
  res.writeHead(200, { ...headers, "Content-Length": size });
  if (head) res.end();
  else createReadStream(file).pipe(res);
}

/**
 * Starts the server. `page`: the folder served at `/` (default: the built page); `data`: the folder served at
 * `/data/` (or null); `mounts`: more `{ "/prefix/": folder }` pairs (used by the tests). Resolves to
 * `{ url, port, close() }`.
 */
export function serveExamples({ port = 8080, host = "127.0.0.1", page = PAGE_DIR, data = null, mounts = {}, log = null } = {}) {
  const table = Object.entries({ ...mounts, ...(data ? { "/data/": data } : {}), "/": page })
    .map(([prefix, dir]) => [prefix.endsWith("/") ? prefix : prefix + "/", resolve(dir)])
    .sort((a, b) => b[0].length - a[0].length);
  const dataDir = data ? resolve(data) : null;

  const server = createServer((req, res) => {
    const head = req.method === "HEAD";
    if (req.method !== "GET" && !head) return send(res, 405, "method not allowed\n");
    let path;
    try {
      path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    } catch {
      return send(res, 400, "bad request\n");
    }
    if (path.includes("\0")) return send(res, 400, "bad request\n");
    const hit = table.find(([prefix]) => path.startsWith(prefix) || path + "/" === prefix);
    if (!hit) return send(res, 404, "not found\n");
    const [prefix, dir] = hit;
    if (path + "/" === prefix) {
      res.writeHead(301, { ...COMMON, Location: prefix });
      return res.end();
    }
    let file = inside(dir, path.slice(prefix.length));
    if (file === null) return send(res, 403, "forbidden\n");
    if (existsSync(file) && statSync(file).isDirectory()) file = join(file, "index.html");
    if (!existsSync(file) || !statSync(file).isFile()) {
      // `<folder>/adapters/index.json` under /data/ (the MNIST demo's adapters, or a language model's: /data/lm/adapters/)
      if (dataDir && prefix === "/data/" && path.endsWith("/adapters/index.json")) {
        const folder = inside(dataDir, path.slice("/data/".length, -"adapters/index.json".length));
        if (folder && existsSync(folder)) return send(res, 200, JSON.stringify({ adapters: listAdapters(folder) }) + "\n", TYPES[".json"], head);
      }
      return send(res, 404, `not found: ${path}\n`);
    }
    log?.(`${req.method} ${path}`);
    sendFile(req, res, file, head);
  });

  return new Promise((resolvePromise, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      const actual = server.address().port;
      resolvePromise({
        url: `http://${host}:${actual}/`,
        port: actual,
        server,
        close: () =>
          new Promise((r) => {
            server.close(() => r());
            server.closeAllConnections?.();
          }),
      });
    });
  });
}

// ---------------------------------------------------------------- CLI
if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const args = process.argv.slice(2);
  const opt = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
  if (args.includes("--help") || args.includes("-h")) {
    console.log("usage: node scripts/serve-examples.mjs [--data DIR] [--port N]   (PORT env also works; default 8080)");
    process.exit(0);
  }
  let data = opt("--data");
  if (data === undefined && existsSync(join(root, "demo-out"))) data = join(root, "demo-out");
  if (data !== undefined && !existsSync(data)) {
    console.error(`serve-examples: --data ${data}: no such folder`);
    process.exit(1);
  }
  if (!existsSync(join(PAGE_DIR, "index.html"))) {
    console.error("serve-examples: the page is not built; run `npm run build:examples` first");
    process.exit(1);
  }
  const port = Number(opt("--port") ?? process.env.PORT ?? 8080);
  const s = await serveExamples({ port, data: data ?? null, log: args.includes("--verbose") ? console.log : null });
  console.log(`shira-wasm browser example: ${s.url}`);
  if (data && existsSync(join(data, "results.json")) && existsSync(join(data, "base-model", "config.json"))) {
    // a `shira demo` output folder (language model): the playground page loads it from /data/
    console.log(`  /data/ -> ${resolve(data)} (a shira demo output folder)`);
    console.log(`  language-model playground: ${s.url}lm.html (or ${s.url}lm.html?demo=<URL of another demo output folder>)`);
  } else if (data) console.log(`  /data/ -> ${resolve(data)} (adapters: ${listAdapters(data).join(", ") || "none found"})`);
  else console.log("  no data folder: pick or drop model.json, model.safetensors and adapter folders on the page");
  const stop = () => s.close().then(() => process.exit(0));
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
