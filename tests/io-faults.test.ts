// Streams and files under faults (issue 12, item 7): non-regular files, oversized / inconsistent safetensors
// headers over any byte source, broken HTTP servers (truncated bodies, wrong lengths, silence, 500, refused
// connections), and `signal` / `timeout` on every async loader, which must leave nothing half-loaded.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { closeSync, constants, copyFileSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  AutoModelForCausalLM,
  AutoTokenizer,
  FormatError,
  MAX_HEADER_BYTES,
  ShiraError,
  bytesSource,
  openCheckpoint,
  openFileSource,
  openSafetensors,
  readAdapterFiles,
  readFileBytes,
  readSafetensors,
  runtime,
  urlSource,
  type ByteSource,
} from "../src/node.js";

const ROOT = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..");
const MODEL_DIR = join(ROOT, "tests", "fixtures", "transformers", "llama", "model");
const ADAPTER_DIR = join(ROOT, "tests", "fixtures", "peft", "mlp", "alpha");
const TOKENIZER_DIR = join(ROOT, "tests", "fixtures", "tokenizer", "bytelevel-bpe");
const T = { timeout: 20_000 }; // a hang fails the test instead of the run

/** Asserts a rejection with a ShiraError of `code` (or a subclass of ShiraError), message matching every `re`. */
async function rejectsWith(p: Promise<unknown>, code: string | RegExp, ...res: (RegExp | string)[]): Promise<ShiraError> {
  let caught: ShiraError | undefined;
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof ShiraError, `expected a ShiraError, got ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
    if (typeof code === "string") assert.equal(e.code, code, e.message);
    else assert.match(e.code, code, e.message);
    for (const re of res) {
      if (typeof re === "string") assert.ok(e.message.includes(re), `message ${JSON.stringify(e.message)} should name ${re}`);
      else assert.match(e.message, re);
    }
    caught = e;
    return true;
  });
  return caught!;
}

/** File descriptors of this process that point at `path` (Linux /proc; null where unavailable). */
function fdsOn(path: string): number | null {
  let fds: string[];
  try {
    fds = readdirSync("/proc/self/fd");
  } catch {
    return null;
  }
  let n = 0;
  for (const fd of fds) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === path) n++;
    } catch {
      // closed meanwhile (the readdir's own fd)
    }
  }
  return n;
}

/** A ByteSource wrapper that records reads and closes. */
function spySource(inner: ByteSource): ByteSource & { reads: [number, number][]; closed: number } {
  const spy = {
    reads: [] as [number, number][],
    closed: 0,
    get size() {
      return inner.size;
    },
    read(offset: number, length: number) {
      spy.reads.push([offset, length]);
      return inner.read(offset, length);
    },
    async close() {
      spy.closed++;
      await inner.close?.();
    },
  };
  return spy;
}

function le64(n: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
  return b;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** A safetensors file whose header length claims 200 MB (the file itself is tiny). */
const HUGE_HEADER = concat(le64(200_000_000), new TextEncoder().encode('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'));
/** A valid header whose data_offsets run 4 GB past the end of a 100-byte file. */
function offsetsPastEnd(): Uint8Array {
  const header = new TextEncoder().encode(JSON.stringify({ w: { dtype: "F32", shape: [1_000_000_000], data_offsets: [0, 4_000_000_000] } }));
  return concat(le64(header.length), header, new Uint8Array(16));
}

// ------------------------------------------------------------------------------------------------------------
// non-regular files
// ------------------------------------------------------------------------------------------------------------

describe("loading from a path refuses non-regular files", () => {
  let dir: string;
  let fifo: string;
  let ckpt: string; // a checkpoint folder whose config.json is a FIFO, model.safetensors -> /dev/zero
  let ckpt2: string; // config.json fine, model.safetensors a FIFO
  let adapterFifo: string; // adapter folder with a FIFO for its config
  let adapterZero: string; // adapter folder with adapter_model.safetensors -> /dev/zero
  const haveFifo = process.platform !== "win32";

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "shira-io-faults-"));
    if (!haveFifo) return;
    fifo = join(dir, "pipe");
    execFileSync("mkfifo", [fifo]);
    ckpt = join(dir, "ckpt");
    mkdirSync(ckpt);
    execFileSync("mkfifo", [join(ckpt, "config.json")]);
    execFileSync("mkfifo", [join(ckpt, "tokenizer.json")]);
    symlinkSync("/dev/zero", join(ckpt, "model.safetensors"));
    ckpt2 = join(dir, "ckpt2");
    mkdirSync(ckpt2);
    copyFileSync(join(MODEL_DIR, "config.json"), join(ckpt2, "config.json"));
    execFileSync("mkfifo", [join(ckpt2, "model.safetensors")]);
    adapterFifo = join(dir, "adapter-fifo");
    mkdirSync(adapterFifo);
    execFileSync("mkfifo", [join(adapterFifo, "adapter_config.json")]);
    copyFileSync(join(ADAPTER_DIR, "adapter_model.safetensors"), join(adapterFifo, "adapter_model.safetensors"));
    adapterZero = join(dir, "adapter-zero");
    mkdirSync(adapterZero);
    copyFileSync(join(ADAPTER_DIR, "adapter_config.json"), join(adapterZero, "adapter_config.json"));
    symlinkSync("/dev/zero", join(adapterZero, "adapter_model.safetensors"));
  });

  after(() => {
    // unblock a reader that (on a broken implementation) hangs in open() on a FIFO, so the process can exit
    if (haveFifo) {
      for (const p of [fifo, join(ckpt, "config.json"), join(ckpt, "tokenizer.json"), join(ckpt2, "model.safetensors"), join(adapterFifo, "adapter_config.json")]) {
        try {
          closeSync(openSync(p, constants.O_WRONLY | constants.O_NONBLOCK));
        } catch {
          // no reader waiting
        }
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it("openFileSource: a FIFO, /dev/zero and a directory are IO errors naming the path", { ...T, skip: !haveFifo }, async () => {
    await rejectsWith(openFileSource(fifo), "IO", fifo, /not a regular file/);
    await rejectsWith(openFileSource("/dev/zero"), "IO", "/dev/zero", /not a regular file/);
    await rejectsWith(openFileSource(dir), "IO", dir, /not a regular file|directory/);
    assert.equal(fdsOn(fifo) ?? 0, 0);
    assert.equal(fdsOn("/dev/zero") ?? 0, 0);
  });

  it("readFileBytes: a FIFO and /dev/zero are IO errors naming the path (no hang, no endless read)", { ...T, skip: !haveFifo }, async () => {
    await rejectsWith(readFileBytes(fifo), "IO", fifo, /not a regular file/);
    await rejectsWith(readFileBytes("/dev/zero"), "IO", "/dev/zero", /not a regular file/);
  });

  it("openCheckpoint(directory): text() and open() refuse a FIFO and a link to /dev/zero", { ...T, skip: !haveFifo }, async () => {
    const files = await openCheckpoint(ckpt);
    await rejectsWith(files.text("config.json"), "IO", join(ckpt, "config.json"), /not a regular file/);
    await rejectsWith(files.open("model.safetensors"), "IO", join(ckpt, "model.safetensors"), /not a regular file/);
    await rejectsWith(AutoModelForCausalLM.fromPretrained(ckpt), "IO", join(ckpt, "config.json"));
    const live = runtime().liveBytes;
    await rejectsWith(AutoModelForCausalLM.fromPretrained(ckpt2), "IO", join(ckpt2, "model.safetensors"), /not a regular file/);
    assert.equal(runtime().liveBytes, live);
    await rejectsWith(AutoTokenizer.fromPretrained(ckpt), "IO", join(ckpt, "tokenizer.json"), /not a regular file/);
  });

  it("readAdapterFiles(directory): a FIFO config and a /dev/zero weights file are IO errors naming the path", { ...T, skip: !haveFifo }, async () => {
    await rejectsWith(readAdapterFiles(adapterFifo), "IO", join(adapterFifo, "adapter_config.json"), /not a regular file/);
    await rejectsWith(readAdapterFiles(adapterZero), "IO", join(adapterZero, "adapter_model.safetensors"), /not a regular file/);
  });
});

// ------------------------------------------------------------------------------------------------------------
// safetensors limits over every reader
// ------------------------------------------------------------------------------------------------------------

describe("every safetensors reader enforces the header limit and the file size before reading data", () => {
  it("eager readSafetensors: a 200 MB header length and offsets past the end are FormatErrors", () => {
    assert.ok(200_000_000 > MAX_HEADER_BYTES);
    assert.throws(() => readSafetensors(HUGE_HEADER), (e: unknown) => e instanceof FormatError && e.code === "SAFETENSORS_HEADER_LENGTH" && /200000000/.test(e.message));
    assert.throws(() => readSafetensors(offsetsPastEnd()), (e: unknown) => e instanceof FormatError && e.code === "SAFETENSORS_INCOMPLETE");
  });

  it("lazy openSafetensors over a ByteSource: reads 8 bytes, then fails; never reads the claimed header or data", async () => {
    const a = spySource(bytesSource(HUGE_HEADER));
    await assert.rejects(openSafetensors(a), (e: unknown) => e instanceof FormatError && e.code === "SAFETENSORS_HEADER_LENGTH");
    assert.deepEqual(a.reads, [[0, 8]]);
    // a source that claims to be huge (so the header length fits the size) still stops at the limit
    const huge = spySource({ size: 300_000_000, read: (o, l) => bytesSource(HUGE_HEADER).read(o, Math.min(l, HUGE_HEADER.length - o)).then((b) => (b.length === l ? b : concat(b, new Uint8Array(l - b.length)))) });
    await assert.rejects(openSafetensors(huge), (e: unknown) => e instanceof FormatError && e.code === "SAFETENSORS_HEADER_LENGTH");
    assert.ok(huge.reads.every(([, l]) => l <= 8), `reads ${JSON.stringify(huge.reads)}`);
    const b = spySource(bytesSource(offsetsPastEnd()));
    await assert.rejects(openSafetensors(b), (e: unknown) => e instanceof FormatError && e.code === "SAFETENSORS_INCOMPLETE");
    assert.ok(b.reads.every(([o, l]) => o + l <= offsetsPastEnd().length - 16), `no data read: ${JSON.stringify(b.reads)}`);
  });

  it("lazy openSafetensors over a file: the same checks, and the file handle of a failed load is closed", T, async () => {
    const dir = mkdtempSync(join(tmpdir(), "shira-io-st-"));
    try {
      const p = join(dir, "huge-header.safetensors");
      writeFileSync(p, HUGE_HEADER);
      const src = await openFileSource(p);
      await assert.rejects(openSafetensors(src), (e: unknown) => e instanceof FormatError && e.code === "SAFETENSORS_HEADER_LENGTH");
      await src.close();
      // through the model loader: the bad weights file is closed again
      const ckpt = join(dir, "ckpt");
      mkdirSync(ckpt);
      copyFileSync(join(MODEL_DIR, "config.json"), join(ckpt, "config.json"));
      writeFileSync(join(ckpt, "model.safetensors"), offsetsPastEnd());
      const live = runtime().liveBytes;
      await rejectsWith(AutoModelForCausalLM.fromPretrained(ckpt), "SAFETENSORS_INCOMPLETE", "model.safetensors");
      assert.equal(runtime().liveBytes, live);
      const open = fdsOn(join(ckpt, "model.safetensors"));
      if (open !== null) assert.equal(open, 0, "the weights file is closed after a failed open");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ------------------------------------------------------------------------------------------------------------
// HTTP faults
// ------------------------------------------------------------------------------------------------------------

interface RawRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
}

/** Serves files (with Range support) under /ok/, and faults under other prefixes; see `respond`. */
class FaultServer {
  readonly files = new Map<string, Uint8Array>();
  readonly sockets = new Set<Socket>();
  /** Connections holding a request the server never answers (stall modes). */
  readonly unanswered = new Set<Socket>();
  readonly requests: string[] = [];
  /** Range reads of /ok/ weights answered normally before /stall-after/N/ stalls (N = the prefix's number). */
  private served = new Map<string, number>();
  private server: NetServer;
  base = "";

  constructor() {
    this.server = createNetServer((sock) => {
      this.sockets.add(sock);
      sock.on("close", () => {
        this.sockets.delete(sock);
        this.unanswered.delete(sock);
      });
      sock.on("error", () => undefined);
      let buf = Buffer.alloc(0);
      sock.on("data", (d) => {
        buf = Buffer.concat([buf, d]);
        for (;;) {
          const end = buf.indexOf("\r\n\r\n");
          if (end < 0) return;
          const lines = buf.subarray(0, end).toString("latin1").split("\r\n");
          buf = buf.subarray(end + 4);
          const [method, path] = lines[0].split(" ");
          const headers: Record<string, string> = {};
          for (const l of lines.slice(1)) {
            const i = l.indexOf(":");
            headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
          }
          this.requests.push(path);
          this.respond({ method, path: decodeURIComponent(path), headers }, sock);
        }
      });
    });
  }

  async listen(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    this.base = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }

  /**
   * Resolves when every connection holding an unanswered request has been closed by the client (its request was
   * cancelled), or rejects after `ms`. (Node's fetch may open a fresh idle connection after an abort; that one
   * carries no request and does not count.)
   */
  async allClosed(ms = 3000): Promise<void> {
    const t0 = Date.now();
    while (this.unanswered.size > 0) {
      if (Date.now() - t0 > ms) throw new Error(`${this.unanswered.size} connection(s) with a pending request still open after ${ms} ms`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  private send(sock: Socket, status: string, headers: Record<string, string | number>, body: Uint8Array | null, opts: { cut?: number } = {}): void {
    const head = [`HTTP/1.1 ${status}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), "Connection: close", "", ""].join("\r\n");
    sock.write(head);
    if (body) sock.write(opts.cut === undefined ? body : body.subarray(0, opts.cut));
    if (opts.cut !== undefined) sock.destroy();
    else sock.end();
  }

  /** Paths: /<mode>/<file>. Modes: ok, truncated (half the body, then close), short206 (range answers one byte
   *  short, consistent Content-Length), bigtotal (Content-Range total 1000 bytes too large), stall (never answers),
   *  500, half (.json files answer 500, the others never answer), stall-after-<n> (the first n range reads of .safetensors files are answered, then silence). */
  private respond(req: RawRequest, sock: Socket): void {
    const m = /^\/([^/]+)\/(.*)$/.exec(req.path);
    const mode = m?.[1] ?? "";
    const name = m?.[2] ?? "";
    if (mode === "stall" || (mode === "half" && !name.endsWith(".json"))) {
      this.unanswered.add(sock);
      return;
    }
    if (mode === "500" || mode === "half") return this.send(sock, "500 Internal Server Error", { "Content-Length": 5 }, new TextEncoder().encode("oops!"));
    const body = this.files.get(name);
    if (!body) return this.send(sock, "404 Not Found", { "Content-Length": 0 }, null);
    const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers["range"] ?? "");
    if (mode === "truncated") {
      if (range) {
        const a = Number(range[1]);
        const b = Math.min(Number(range[2]), body.length - 1);
        const part = body.subarray(a, b + 1);
        return this.send(sock, "206 Partial Content", { "Content-Range": `bytes ${a}-${b}/${body.length}`, "Content-Length": part.length }, part, { cut: part.length > 1 ? part.length >> 1 : undefined });
      }
      return this.send(sock, "200 OK", { "Content-Length": body.length }, body, { cut: body.length >> 1 });
    }
    const stallAfter = /^stall-after-(\d+)$/.exec(mode);
    if (stallAfter && range && name.endsWith(".safetensors") && Number(range[2]) > 0) {
      const n = this.served.get(mode) ?? 0;
      if (n >= Number(stallAfter[1])) {
        this.unanswered.add(sock); // silence
        return;
      }
      this.served.set(mode, n + 1);
    }
    if (range) {
      const a = Number(range[1]);
      let b = Math.min(Number(range[2]), body.length - 1);
      if (a >= body.length) return this.send(sock, "416 Range Not Satisfiable", { "Content-Range": `bytes */${body.length}`, "Content-Length": 0 }, null);
      if (mode === "short206" && b > a) b--;
      const total = mode === "bigtotal" ? body.length + 1000 : body.length;
      const part = body.subarray(a, b + 1);
      return this.send(sock, "206 Partial Content", { "Content-Range": `bytes ${a}-${b}/${total}`, "Content-Length": part.length }, part);
    }
    return this.send(sock, "200 OK", { "Content-Length": body.length }, body);
  }
}

/** A URL on 127.0.0.1 where nothing listens. */
async function refusedBase(): Promise<string> {
  const s = createNetServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return `http://127.0.0.1:${port}`;
}

describe("HTTP faults are typed errors naming the URL", () => {
  let srv: FaultServer;
  let refused: string;
  const ST = "model.safetensors";

  before(async () => {
    srv = await new FaultServer().listen();
    for (const f of ["config.json", "generation_config.json", ST]) srv.files.set(f, readFileSync(join(MODEL_DIR, f)));
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) srv.files.set(f, readFileSync(join(TOKENIZER_DIR, f)));
    for (const f of ["adapter_config.json", "adapter_model.safetensors"]) srv.files.set(f, readFileSync(join(ADAPTER_DIR, f)));
    refused = await refusedBase();
  });
  after(() => srv.close());

  it("sanity: the fault server serves a checkpoint, a tokenizer and an adapter", T, async () => {
    const lm = await AutoModelForCausalLM.fromPretrained(`${srv.base}/ok/`);
    lm.dispose();
    await AutoTokenizer.fromPretrained(`${srv.base}/ok/`);
    const a = await readAdapterFiles(`${srv.base}/ok/`);
    assert.equal(a.model.length, srv.files.get("adapter_model.safetensors")!.length);
  });

  it("urlSource: truncated bodies, short range answers, a wrong total size, 500 and refused connections", T, async () => {
    let url = `${srv.base}/truncated/${ST}`;
    const src = await urlSource(url);
    await rejectsWith(src.read(0, 4096), "IO", url);
    url = `${srv.base}/short206/${ST}`;
    await rejectsWith((await urlSource(url)).read(8, 64), "IO", url);
    url = `${srv.base}/bigtotal/${ST}`;
    const big = await urlSource(url);
    await rejectsWith(big.read(big.size - 100, 100), "IO", url);
    url = `${srv.base}/500/${ST}`;
    const e = await rejectsWith(urlSource(url), "IO", url, /500/);
    assert.equal(e.details.status, 500);
    url = `${refused}/${ST}`;
    await rejectsWith(urlSource(url), "IO", url);
  });

  it("urlSource: a server that never answers times out (timeout option) and sees its connection closed", T, async () => {
    const url = `${srv.base}/stall/${ST}`;
    const t0 = Date.now();
    const e = await rejectsWith(urlSource(url, { timeout: 150 }), "ABORTED", /timed out after 150 ms/, url);
    assert.equal(e.details.timeout, 150);
    assert.ok(Date.now() - t0 < 5000);
    await srv.allClosed();
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error("user stop")), 50);
    await rejectsWith(urlSource(url, { signal: ac.signal }), "ABORTED", /user stop/);
    await srv.allClosed();
    await assert.rejects(urlSource(url, { timeout: -1 }), (x: unknown) => x instanceof ShiraError && x.code === "CONFIG_INVALID");
  });

  it("openCheckpoint(url): text() and open() turn truncation, 500, refusal and silence into typed errors", T, async () => {
    await rejectsWith((await openCheckpoint(`${srv.base}/truncated/`)).text("config.json"), "IO", `${srv.base}/truncated/config.json`);
    await rejectsWith((await openCheckpoint(`${srv.base}/500/`)).text("config.json"), "IO", `${srv.base}/500/config.json`);
    await rejectsWith((await openCheckpoint(`${srv.base}/500/`)).open(ST), "IO", `${srv.base}/500/${ST}`);
    await rejectsWith((await openCheckpoint(refused)).text("config.json"), "IO", `${refused}/config.json`);
    await rejectsWith((await openCheckpoint(refused)).open(ST), "IO", `${refused}/${ST}`);
    const src = await (await openCheckpoint(`${srv.base}/truncated/`)).open(ST);
    await rejectsWith(src.read(0, 4096), "IO", `${srv.base}/truncated/${ST}`);
    const silent = await openCheckpoint(`${srv.base}/stall/`, { timeout: 150 });
    await rejectsWith(silent.text("config.json"), "ABORTED", /timed out after 150 ms/, `${srv.base}/stall/config.json`);
    await srv.allClosed();
  });

  it("AutoModelForCausalLM.fromPretrained(url): every fault is typed, names the URL and frees the model", T, async () => {
    const rt = runtime();
    const live = rt.liveBytes;
    await rejectsWith(AutoModelForCausalLM.fromPretrained(`${srv.base}/truncated/`), "IO", `${srv.base}/truncated/`);
    await rejectsWith(AutoModelForCausalLM.fromPretrained(`${srv.base}/500/`), "IO", `${srv.base}/500/config.json`);
    await rejectsWith(AutoModelForCausalLM.fromPretrained(`${refused}/`), "IO", `${refused}/config.json`);
    await rejectsWith(AutoModelForCausalLM.fromPretrained(`${srv.base}/short206/`), /^(IO|SAFETENSORS_\w+)$/, `${srv.base}/short206/${ST}`);
    await rejectsWith(AutoModelForCausalLM.fromPretrained(`${srv.base}/bigtotal/`), /^(IO|SAFETENSORS_\w+)$/, `${srv.base}/bigtotal/${ST}`);
    await rejectsWith(AutoModelForCausalLM.fromPretrained(`${srv.base}/stall/`, { timeout: 150 }), "ABORTED", /timed out after 150 ms/);
    assert.equal(rt.liveBytes, live);
    await srv.allClosed();
  });

  it("AutoModelForCausalLM.fromPretrained: a timeout in the middle of the weights frees the partial model and closes the fetch", T, async () => {
    const rt = runtime();
    const live = rt.liveBytes;
    const e = await rejectsWith(AutoModelForCausalLM.fromPretrained(`${srv.base}/stall-after-3/`, { timeout: 400 }), "ABORTED", /timed out after 400 ms/);
    assert.equal(e.details.timeout, 400);
    assert.equal(rt.liveBytes, live, "the partly loaded model is freed");
    await srv.allClosed();
    const ac = new AbortController();
    const p = AutoModelForCausalLM.fromPretrained(`${srv.base}/stall-after-5/`, { signal: ac.signal });
    setTimeout(() => ac.abort(new Error("user stop")), 300);
    await rejectsWith(p, "ABORTED", /user stop/);
    assert.equal(rt.liveBytes, live);
    await srv.allClosed();
  });

  it("AutoTokenizer.fromPretrained(url): truncation, 500, refusal and silence are typed errors naming the URL", T, async () => {
    await rejectsWith(AutoTokenizer.fromPretrained(`${srv.base}/truncated/`), "IO", `${srv.base}/truncated/`);
    await rejectsWith(AutoTokenizer.fromPretrained(`${srv.base}/500/`), "IO", `${srv.base}/500/`);
    await rejectsWith(AutoTokenizer.fromPretrained(refused), "IO", `${refused}/`);
    await rejectsWith(AutoTokenizer.fromPretrained(`${srv.base}/stall/`, { timeout: 150 }), "ABORTED", /timed out after 150 ms/);
    await srv.allClosed();
    // tokenizer.json fails with 500 while chat_template.jinja hangs: the hanging request is cancelled
    await rejectsWith(AutoTokenizer.fromPretrained(`${srv.base}/half/`), "IO", `${srv.base}/half/`, /500/);
    await srv.allClosed();
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error("user stop")), 50);
    await rejectsWith(AutoTokenizer.fromPretrained(`${srv.base}/stall/`, { signal: ac.signal }), "ABORTED", /user stop/);
    await srv.allClosed();
  });

  it("readAdapterFiles(url): truncation, 500, refusal and silence are typed errors naming the URL; the other fetch is aborted", T, async () => {
    await rejectsWith(readAdapterFiles(`${srv.base}/truncated/`), "IO", `${srv.base}/truncated/adapter_`);
    await rejectsWith(readAdapterFiles(`${srv.base}/500/`), "IO", `${srv.base}/500/adapter_`);
    await rejectsWith(readAdapterFiles(refused), "IO", `${refused}/adapter_`);
    await rejectsWith(readAdapterFiles(`${srv.base}/stall/`, { timeout: 150 }), "ABORTED", /timed out after 150 ms/);
    await srv.allClosed();
    // the config fails with 500 while the weights request hangs: the error comes at once, the hanging request is cancelled
    await rejectsWith(readAdapterFiles(`${srv.base}/half/`), "IO", `${srv.base}/half/adapter_config.json`, /500/);
    await srv.allClosed();
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error("user stop")), 50);
    await rejectsWith(readAdapterFiles(`${srv.base}/stall/`, { signal: ac.signal }), "ABORTED", /user stop/);
    await srv.allClosed();
  });
});

// ------------------------------------------------------------------------------------------------------------
// signal and timeout on local loads
// ------------------------------------------------------------------------------------------------------------

describe("signal and timeout on local and in-memory loads", () => {
  it("an already aborted signal rejects every loader with ABORTED before reading", async () => {
    const ac = new AbortController();
    ac.abort(new Error("early"));
    await rejectsWith(openCheckpoint(MODEL_DIR, { signal: ac.signal }), "ABORTED", /early/);
    await rejectsWith(AutoModelForCausalLM.fromPretrained(MODEL_DIR, { signal: ac.signal }), "ABORTED", /early/);
    await rejectsWith(AutoTokenizer.fromPretrained(TOKENIZER_DIR, { signal: ac.signal }), "ABORTED", /early/);
    await rejectsWith(readAdapterFiles(ADAPTER_DIR, { signal: ac.signal }), "ABORTED", /early/);
    await rejectsWith(urlSource("http://127.0.0.1:9/x", { signal: ac.signal }), "ABORTED", /early/);
    const mem = { "adapter_config.json": readFileSync(join(ADAPTER_DIR, "adapter_config.json"), "utf8"), "adapter_model.safetensors": new Uint8Array(readFileSync(join(ADAPTER_DIR, "adapter_model.safetensors"))) };
    await rejectsWith(readAdapterFiles(mem, { signal: ac.signal }), "ABORTED", /early/);
  });

  it("a timeout option is validated (a positive number of ms)", async () => {
    for (const bad of [0, -5, Number.NaN, "100" as unknown as number]) {
      await assert.rejects(AutoModelForCausalLM.fromPretrained(MODEL_DIR, { timeout: bad }), (e: unknown) => e instanceof ShiraError && e.code === "CONFIG_INVALID" && /timeout/.test(e.message));
      await assert.rejects(readAdapterFiles(ADAPTER_DIR, { timeout: bad }), (e: unknown) => e instanceof ShiraError && e.code === "CONFIG_INVALID");
    }
  });

  it("fromPretrained(directory) aborted mid-load frees the model and closes the weights file", async () => {
    const rt = runtime();
    const live = rt.liveBytes;
    const ac = new AbortController();
    const weights = join(MODEL_DIR, "model.safetensors");
    let openMid: number | null = null;
    await rejectsWith(
      AutoModelForCausalLM.fromPretrained(MODEL_DIR, {
        signal: ac.signal,
        onProgress: (p) => {
          if (p.loadedTensors === 2) {
            openMid = fdsOn(weights);
            ac.abort(new Error("user stop"));
          }
        },
      }),
      "ABORTED",
      /user stop/,
    );
    assert.equal(rt.liveBytes, live);
    if (openMid !== null) {
      assert.equal(openMid, 1, "the weights file was open during the load");
      assert.equal(fdsOn(weights), 0, "and is closed after the abort");
    }
  });

  it("a generous timeout does not disturb a normal load, and its timer does not outlive the load", async () => {
    const lm = await AutoModelForCausalLM.fromPretrained(MODEL_DIR, { timeout: 60_000 });
    lm.dispose();
    const tok = await AutoTokenizer.fromPretrained(TOKENIZER_DIR, { timeout: 60_000 });
    assert.ok(tok.encode("hello").length > 0);
    const a = await readAdapterFiles(ADAPTER_DIR, { timeout: 60_000 });
    assert.ok(a.model.length > 0);
    // a leaked timer would keep the event loop alive; node --test reports it as a pending handle otherwise
    const timers = process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    assert.equal(timers, 0, "no timers left running");
  });
});
