// The thread pool: every kernel split over threads writes bit for bit what the one-thread kernel writes (shapes with
// every tail: columns, rows, K, positions), whole models generate identical logits and tokens at 1 and 2 threads and
// switch adapters exactly, the pool starts, resizes, stops and fails loudly, and an idle pool lets Node exit.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { createRuntime, runtime, type Runtime } from "../src/node.js";
import { sharedMemoryBuild } from "../src/runtime/runtime.js";
import { WASM_SIMD_BASE64 } from "../src/runtime/wasm.generated.js";
import { partStart } from "../src/runtime/parallel.js";
import { RuntimeError, ConfigError } from "../src/errors.js";
import { rand, rng } from "./helpers/random.js";

type Data = Float32Array | Int32Array | Uint16Array;

const runtimes = new Map<number, Runtime>();
/** A separate runtime with `n` threads that splits every call (parallelMinWork 0). */
function rtWith(n: number): Runtime {
  let rt = runtimes.get(n);
  if (!rt) {
    rt = createRuntime({ threads: n });
    rt.parallelMinWork = 0;
    runtimes.set(n, rt);
  }
  return rt;
}
after(() => {
  for (const rt of runtimes.values()) rt.dispose();
});

/**
 * Copies `inputs` into `rt`'s memory, runs `call` with their pointers, and returns every buffer's bytes afterwards
 * (inputs the kernel writes, like y with acc, or w and saved of the switches, are compared too).
 */
function runOn(rt: Runtime, inputs: Record<string, Data>, call: (k: Runtime["k"], p: Record<string, number>) => void): Record<string, Uint8Array> {
  const ptrs: Record<string, number> = {};
  const sizes: Record<string, number> = {};
  for (const [name, d] of Object.entries(inputs)) {
    const bytes = Math.max(16, d.byteLength);
    const ptr = rt.allocBytes(bytes);
    rt.u8.fill(0, ptr, ptr + bytes);
    rt.u8.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), ptr);
    ptrs[name] = ptr;
    sizes[name] = bytes;
  }
  call(rt.k, ptrs);
  const out: Record<string, Uint8Array> = {};
  for (const name of Object.keys(inputs)) {
    out[name] = rt.u8.slice(ptrs[name], ptrs[name] + sizes[name]);
    rt.freeBytes(ptrs[name], sizes[name]);
  }
  return out;
}

/** Runs the case at 1 thread and at 2, 3 and 4, and asserts identical bytes in every buffer. */
function sameAtEveryThreadCount(what: string, inputs: Record<string, Data>, call: (k: Runtime["k"], p: Record<string, number>) => void): void {
  const ref = runOn(rtWith(1), inputs, call);
  for (const n of [2, 3, 4]) {
    const got = runOn(rtWith(n), inputs, call);
    for (const name of Object.keys(ref)) {
      const a = ref[name];
      const b = got[name];
      let first = -1;
      for (let i = 0; i < a.length; i++) {
        if (a[i] !== b[i]) {
          first = i;
          break;
        }
      }
      assert.equal(first, -1, `${what}: ${name} differs at byte ${first} with ${n} threads`);
    }
  }
}

/** Half bits of `n` random floats (BF16: the top 16 bits; F16: IEEE half), spanning a few octaves. */
function halfBits(n: number, seed: number, dtype: number): Uint16Array {
  const f = rand(n, seed, 2);
  const out = new Uint16Array(n);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < n; i++) {
    if (dtype === 0) out[i] = u[i] >>> 16;
    else {
      // a finite F16 in about ±2 (sign, exponent 12..16, mantissa)
      const r = (u[i] >>> 3) & 0x3ff;
      out[i] = ((u[i] >>> 31) << 15) | ((12 + ((u[i] >>> 13) % 5)) << 10) | r;
    }
  }
  return out;
}

/** `n` sorted unique positions in [0, range). */
function positions(n: number, range: number, seed: number): Int32Array {
  const r = rng(seed);
  const set = new Set<number>();
  while (set.size < n) set.add(Math.floor(r() * range));
  return Int32Array.from([...set].sort((a, b) => a - b));
}

describe("split kernels are bit-identical to one thread", () => {
  test("partStart cuts [0, total) into contiguous parts aligned to the block", () => {
    for (const [total, blk, nt] of [[77, 8, 2], [8, 8, 4], [1000, 4, 3], [5, 1, 8], [0, 8, 2]]) {
      let prev = 0;
      for (let t = 0; t <= nt; t++) {
        const s = partStart(total, blk, t, nt);
        assert.ok(s >= prev, "parts are ordered");
        if (t < nt) assert.ok(s === total || s % blk === 0, `part ${t} starts on a block`);
        prev = s;
      }
      assert.equal(partStart(total, blk, 0, nt), 0);
      assert.equal(partStart(total, blk, nt, nt), total);
    }
  });

  const gemmShapes: [number, number, number][] = [
    [1, 300, 77], [1, 64, 16], [1, 1029, 263], [2, 37, 130], [3, 200, 41], [4, 129, 33], [5, 1030, 120], [17, 64, 333], [130, 33, 71],
  ];
  for (const [B, K, N] of gemmShapes) {
    for (const bias of [true, false]) {
      test(`f32_gemm_nt B=${B} K=${K} N=${N} bias=${bias} acc=0/1`, () => {
        for (const acc of [0, 1]) {
          sameAtEveryThreadCount(`gemm_nt ${B}x${K}x${N}`, { x: rand(B * K, 1), w: rand(N * K, 2), b: rand(N, 3), y: rand(B * N, 4) }, (k, p) =>
            k.f32_gemm_nt(p.x, p.w, bias ? p.b : 0, p.y, B, K, N, acc),
          );
        }
      });
    }
    for (const dtype of [0, 1]) {
      test(`h16_gemm_nt ${dtype === 0 ? "BF16" : "F16"} B=${B} K=${K} N=${N}`, () => {
        sameAtEveryThreadCount(`h16_gemm_nt ${B}x${K}x${N}`, { x: rand(B * K, 5), w: halfBits(N * K, 6, dtype), b: rand(N, 7), y: rand(B * N, 8) }, (k, p) =>
          k.h16_gemm_nt(p.x, p.w, p.b, p.y, B, K, N, 1, dtype),
        );
      });
    }
  }

  for (const [B, N, K] of [[1, 40, 24], [1, 300, 77], [2, 768, 2304], [7, 33, 70], [3, 5, 1030], [200, 130, 37], [9, 300, 9], [64, 12, 1030]] as [number, number, number][]) {
    test(`f32_gemm_tn / f32_gemm_nn / h16_gemm_nn B=${B} N=${N} K=${K}`, () => {
      for (const acc of [0, 1]) {
        sameAtEveryThreadCount("gemm_tn", { gy: rand(B * N, 9), x: rand(B * K, 10), g: rand(N * K, 11) }, (k, p) => k.f32_gemm_tn(p.gy, p.x, p.g, B, N, K, acc));
        sameAtEveryThreadCount("gemm_nn", { a: rand(B * N, 12), w: rand(N * K, 13), y: rand(B * K, 14) }, (k, p) => k.f32_gemm_nn(p.a, p.w, p.y, B, N, K, acc));
        for (const dtype of [0, 1]) {
          sameAtEveryThreadCount("h16_gemm_nn", { a: rand(B * N, 15), w: halfBits(N * K, 16, dtype), y: rand(B * K, 17) }, (k, p) => k.h16_gemm_nn(p.a, p.w, p.y, B, N, K, acc, dtype));
        }
      }
    });
  }

  const attentionCases = [
    { name: "decode, GQA 14/2", B: 1, T: 1, past: 37, nHeads: 14, nKv: 2, headDim: 64, window: 0, masked: false },
    { name: "prefill, MHA 4/4", B: 2, T: 45, past: 0, nHeads: 4, nKv: 4, headDim: 16, window: 0, masked: true },
    { name: "prefill after a past, GQA 8/2, sliding window", B: 1, T: 70, past: 9, nHeads: 8, nKv: 2, headDim: 32, window: 20, masked: false },
    { name: "decode, batch 3, padding mask", B: 3, T: 1, past: 12, nHeads: 6, nKv: 3, headDim: 8, window: 0, masked: true },
  ];
  for (const c of attentionCases) {
    test(`f32_attention: ${c.name}`, () => {
      const maxSeq = c.past + c.T + 3;
      const qStride = c.nHeads * c.headDim;
      const scratch = rtWith(1).k.f32_attention_scratch(c.T, maxSeq, c.headDim);
      const mask = new Float32Array(c.B * maxSeq).fill(1);
      if (c.masked) for (let b = 0; b < c.B; b++) for (let j = 0; j < b + 2; j++) mask[b * maxSeq + j] = 0;
      sameAtEveryThreadCount(
        "attention",
        {
          q: rand(c.B * c.T * qStride, 20),
          k: rand(c.B * c.nKv * maxSeq * c.headDim, 21),
          v: rand(c.B * c.nKv * maxSeq * c.headDim, 22),
          out: new Float32Array(c.B * c.T * qStride),
          mask,
          scratch: new Float32Array(scratch),
        },
        (k, p) => {
          k.f32_attention(p.q, qStride, p.k, p.v, p.out, qStride, c.B, c.T, c.past, c.nHeads, c.nKv, c.headDim, maxSeq, Math.fround(1 / Math.sqrt(c.headDim)), c.window, c.masked ? p.mask : 0, p.scratch);
          // the score rows are scratch: only the output counts
          const rt = [...runtimes.values()].find((r) => r.k === k)!;
          rt.u8.fill(0, p.scratch, p.scratch + scratch * 4);
        },
      );
    });
  }

  test("switching: f32 and half single-sweep switch, first fuse, restore, gather, scatter-add/sub over sorted positions", () => {
    const size = 70_000;
    for (const [nA, nB] of [[5000, 4000], [300, 9000], [9000, 0], [0, 7000], [70, 65]]) {
      const idxA = positions(nA, size, 30 + nA);
      const idxB = positions(nB, size, 31 + nB);
      // shared positions: part of B is A's
      for (let j = 0; j < Math.min(nA, nB); j += 3) idxB[j] = idxA[j];
      idxB.sort();
      const uniqB = Int32Array.from(new Set(idxB));
      const nb = uniqB.length;
      const w = rand(size, 32);
      sameAtEveryThreadCount(`f32_switch_merge ${nA}/${nb}`, { w, idxA, savedA: rand(nA, 33), idxB: uniqB, savedB: new Float32Array(nb), vB: rand(nb, 34) }, (k, p) =>
        k.f32_switch_merge(p.w, p.idxA, p.savedA, nA, p.idxB, p.savedB, p.vB, Math.fround(0.7), nb),
      );
      for (const dtype of [0, 1]) {
        sameAtEveryThreadCount(`h16_switch_merge ${nA}/${nb}`, { w: halfBits(size, 35, dtype), idxA, savedA: halfBits(nA, 36, dtype), idxB: uniqB, savedB: new Uint16Array(nb), vB: rand(nb, 37) }, (k, p) =>
          k.h16_switch_merge(p.w, p.idxA, p.savedA, nA, p.idxB, p.savedB, p.vB, Math.fround(1.5), nb, dtype),
        );
        sameAtEveryThreadCount("h16_gather_scatter_add", { w: halfBits(size, 38, dtype), idx: uniqB, saved: new Uint16Array(nb), v: rand(nb, 39) }, (k, p) =>
          k.h16_gather_scatter_add(p.w, p.idx, p.saved, p.v, 2, nb, dtype),
        );
        sameAtEveryThreadCount("h16_scatter_set / h16_gather", { w: halfBits(size, 40, dtype), idx: uniqB, saved: halfBits(nb, 41, dtype), out: new Uint16Array(nb) }, (k, p) => {
          k.h16_scatter_set(p.w, p.idx, p.saved, nb);
          k.h16_gather(p.w, p.idx, p.out, nb);
        });
      }
      sameAtEveryThreadCount("f32 first fuse, restore, gather, scatter add/sub/set_add", { w, idx: uniqB, saved: new Float32Array(nb), v: rand(nb, 42), out: new Float32Array(nb), base: rand(nb, 43) }, (k, p) => {
        k.f32_gather_scatter_add(p.w, p.idx, p.saved, p.v, Math.fround(0.3), nb);
        k.f32_gather(p.w, p.idx, p.out, nb);
        k.f32_scatter_set(p.w, p.idx, p.saved, nb);
        k.f32_scatter_add(p.w, p.idx, p.v, 3, nb);
        k.f32_scatter_sub(p.w, p.idx, p.v, Math.fround(0.1), nb);
        k.f32_scatter_set_add(p.w, p.idx, p.base, p.v, 2, nb);
      });
    }
  });

  test("row-wise and element-wise kernels: RMSNorm, LayerNorm, RoPE (half-split and interleaved), SiLU·mul, GELU (tanh), add", () => {
    for (const [rows, D] of [[2, 8], [37, 100], [130, 896]]) {
      sameAtEveryThreadCount(`rmsnorm ${rows}x${D}`, { x: rand(rows * D, 70), w: rand(D, 71), y: new Float32Array(rows * D) }, (k, p) => k.f32_rmsnorm(p.x, p.w, p.y, rows, D, Math.fround(1e-6)));
      sameAtEveryThreadCount(`layernorm ${rows}x${D}`, { x: rand(rows * D, 72), w: rand(D, 73), b: rand(D, 74), y: new Float32Array(rows * D) }, (k, p) => k.f32_layernorm(p.x, p.w, p.b, p.y, rows, D, Math.fround(1e-5)));
    }
    for (const [rows, nHeads, headDim, interleaved] of [[3, 2, 8, 0], [45, 4, 64, 0], [70, 3, 32, 1]]) {
      const half = headDim / 2;
      const maxPos = 200;
      const stride = nHeads * headDim + 5; // rows with a gap, as q inside the fused qkv projection
      const pos = Int32Array.from({ length: rows }, (_, i) => (i * 7 + 3) % maxPos);
      sameAtEveryThreadCount(`rope ${rows} rows`, { x: rand(rows * stride, 75), pos, cos: rand(maxPos * half, 76), sin: rand(maxPos * half, 77) }, (k, p) =>
        k.f32_rope(p.x, stride, rows, nHeads, headDim, p.pos, p.cos, p.sin, half, interleaved),
      );
    }
    for (const n of [33, 1000, 128 * 4864 + 3]) {
      sameAtEveryThreadCount(`silu_mul ${n}`, { g: rand(n, 78, 6), u: rand(n, 79), o: new Float32Array(n) }, (k, p) => k.f32_silu_mul(p.g, p.u, p.o, n));
      sameAtEveryThreadCount(`gelu_tanh ${n}`, { x: rand(n, 80, 6), y: new Float32Array(n) }, (k, p) => k.f32_gelu_tanh(p.x, p.y, n));
      sameAtEveryThreadCount(`add ${n}`, { a: rand(n, 81), b: rand(n, 82) }, (k, p) => k.f32_add(p.a, p.b, p.a, n));
    }
  });

  test("f32_lowrank_fuse (LoRA's fused switch) by rows", () => {
    for (const [N, K, r] of [[37, 70, 4], [256, 33, 8], [9, 1000, 1]]) {
      sameAtEveryThreadCount(`lowrank ${N}x${K} r=${r}`, { w: rand(N * K, 50), b: rand(N * r, 51), a: rand(r * K, 52) }, (k, p) => k.f32_lowrank_fuse(p.w, p.b, p.a, Math.fround(0.5), N, K, r));
    }
  });
});

describe("the pool", () => {
  test("threads, resizing and stopping: results stay identical; restarting frees and reuses the workers' scratch", () => {
    const rt = createRuntime({ threads: 2 });
    try {
      assert.equal(rt.threads, 2);
      assert.equal(rt.shared, true);
      assert.equal(rt.threadsLimitedBy, null);
      rt.parallelMinWork = 0;
      const inputs = { x: rand(4 * 300, 60), w: rand(90 * 300, 61), y: new Float32Array(4 * 90) };
      const call = (k: Runtime["k"], p: Record<string, number>) => k.f32_gemm_nt(p.x, p.w, 0, p.y, 4, 300, 90, 0);
      const two = runOn(rt, inputs, call).y;
      rt.setThreads(3);
      assert.equal(rt.threads, 3);
      assert.deepEqual(runOn(rt, inputs, call).y, two);
      rt.setThreads(4);
      const bytes = rt.memoryBytes;
      for (let i = 0; i < 5; i++) {
        rt.setThreads(1);
        assert.equal(rt.threads, 1);
        rt.setThreads(4);
      }
      assert.equal(rt.memoryBytes, bytes, "restarting the pool does not grow memory");
      rt.dispose();
      rt.dispose();
      assert.equal(rt.threads, 1);
      assert.deepEqual(runOn(rt, inputs, call).y, two, "after dispose() the kernels run on the calling thread");
    } finally {
      rt.dispose();
    }
  });

  test("a failure on a worker's part is a RuntimeError THREADS naming the kernel and thread", () => {
    const rt = createRuntime({ threads: 2 });
    try {
      rt.parallelMinWork = 0;
      const K = 64;
      const N = 64;
      const x = rt.allocF32(K);
      const w = rt.allocF32(N * K);
      // y's first half is in memory, its second half (the worker's columns) beyond the end of memory: the worker traps
      const y = rt.memoryBytes - (N / 2) * 4;
      assert.throws(
        () => rt.k.f32_gemm_nt(x.ptr, w.ptr, 0, y, 1, K, N, 0),
        (e: unknown) => e instanceof RuntimeError && e.code === "THREADS" && /f32_gemm_nt_mt/.test(e.message) && /thread 1/.test(e.message),
      );
      // the pool still works afterwards
      const out = rt.allocF32(N);
      x.view.fill(1);
      w.view.fill(0.5);
      rt.k.f32_gemm_nt(x.ptr, w.ptr, 0, out.ptr, 1, K, N, 0);
      assert.ok(out.view.every((v) => v === 32));
    } finally {
      rt.dispose();
    }
  });

  test("options are checked: threads out of range, SHIRA_THREADS invalid", () => {
    for (const bad of [0, 17, 1.5, -1, "2"]) {
      assert.throws(() => createRuntime({ threads: bad as number }), (e: unknown) => e instanceof ConfigError && e.code === "CONFIG_INVALID" && /threads/.test(e.message));
    }
    const r = spawnSync(process.execPath, ["--import", "tsx", "-e", "import('./src/node.ts').then((m) => m.initSync())"], {
      cwd: join(import.meta.dirname, ".."),
      env: { ...process.env, SHIRA_THREADS: "zero" },
      encoding: "utf8",
    });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /SHIRA_THREADS must be an integer from 1 to 16, got "zero"/);
  });

  test("workers that cannot start: the default runs one thread and says why; an explicit count throws THREADS", () => {
    const script = [
      "const m = await import('./src/node.ts');",
      "const t = await import('./src/runtime/threads.ts');",
      "t.registerThreadHost({ cores: () => 4, startWorker(src, data, onMessage, onError) { setImmediate(() => onError('no workers here (test)')); onError('no workers here (test)'); return { terminate() {} }; } });",
      "const rt = m.initSync();",
      "const out = { threads: rt.threads, why: rt.threadsLimitedBy };",
      "try { rt.setThreads(2); out.explicit = 'no error'; } catch (e) { out.explicit = e.code + ': ' + e.message; }",
      "out.after = rt.threads;",
      "const a = rt.allocF32(16 * 16); rt.parallelMinWork = 0; rt.k.f32_gemm_nt(a.ptr, a.ptr, 0, a.ptr, 1, 16, 16, 0);",
      "console.log(JSON.stringify(out));",
    ].join("\n");
    const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { cwd: join(import.meta.dirname, ".."), env: { ...process.env, SHIRA_THREADS: "" }, encoding: "utf8", timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split("\n").pop()!) as { threads: number; why: string; explicit: string; after: number };
    assert.equal(out.threads, 1);
    assert.match(out.why, /could not start 3 worker threads \(0 started\): no workers here \(test\)/);
    assert.match(out.explicit, /^THREADS: .*could not start 1 worker threads/);
    assert.equal(out.after, 1);
  });

  test("the shared-memory build differs from the embedded one in the memory import's flag only", () => {
    const bin = atob(WASM_SIMD_BASE64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const shared = sharedMemoryBuild(bytes);
    const diff: number[] = [];
    for (let i = 0; i < bytes.length; i++) if (bytes[i] !== shared[i]) diff.push(i);
    assert.equal(diff.length, 1);
    assert.deepEqual([bytes[diff[0]], shared[diff[0]]], [0x01, 0x03]);
    assert.ok(WebAssembly.validate(shared));
    const imports = WebAssembly.Module.imports(new WebAssembly.Module(shared));
    assert.deepEqual(imports.find((i) => i.kind === "memory"), { module: "env", name: "memory", kind: "memory" });
  });

  test("an idle pool does not keep Node running; SHIRA_THREADS sets the default", () => {
    const script = "import('./src/node.ts').then((m) => { const rt = m.initSync(); rt.parallelMinWork = 0; const a = rt.allocF32(64 * 64); rt.k.f32_gemm_nt(a.ptr, a.ptr, 0, a.ptr, 1, 64, 64, 0); console.log('threads', rt.threads); })";
    for (const n of ["1", "3"]) {
      const t0 = Date.now();
      const r = spawnSync(process.execPath, ["--import", "tsx", "-e", script], { cwd: join(import.meta.dirname, ".."), env: { ...process.env, SHIRA_THREADS: n }, encoding: "utf8", timeout: 60_000 });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout.trim(), `threads ${n}`);
      assert.ok(Date.now() - t0 < 60_000);
    }
  });

  test("the library's runtime runs the default thread count (SHIRA_THREADS or the cores, at most 8)", () => {
    const rt = runtime();
    const want = process.env.SHIRA_THREADS ? Number(process.env.SHIRA_THREADS) : Math.min(8, availableParallelism());
    assert.equal(rt.threads, want);
  });
});
