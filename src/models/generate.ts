/**
 * Generation: transformers' `generate()` loop (prepare inputs → forward → last-position logits → processors →
 * choice → append → stop check) over a KV cache allocated once for the prompt plus `maxNewTokens`. The loop
 * yields to the event loop between tokens, so an `AbortSignal` stops it within one token and adapters can be
 * switched between two tokens (`peft.switchTo(...)` in `onToken` or between iterations of `stream`).
 *
 * ```ts
 * const out = await lm.generate([ids], { maxNewTokens: 40, doSample: true, topP: 0.9, seed: 1 });
 * for await (const t of lm.stream([ids], { maxNewTokens: 40, tokenizer })) process.stdout.write(t.text ?? "");
 * ```
 */
import { ConfigError, ShapeError, ShiraError } from "../errors.js";
import { Rng } from "../nn/random.js";
import { runtime } from "../runtime/runtime.js";
import type { DecoderModel } from "./decoder.js";
import { checkSamplingOptions, selectToken, type SamplingOptions } from "./sampling.js";

/** What a tokenizer must offer for `stopStrings` and streamed text (the library's `PreTrainedTokenizer` does). */
export interface GenerationTokenizer {
  decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string;
  createDecodeStream?(opts?: { skipSpecialTokens?: boolean }): { push(id: number): string };
}

export interface GenerateOptions extends SamplingOptions {
  /** New tokens at most (default: `generation_config.json`'s `max_new_tokens`, else 20). */
  maxNewTokens?: number;
  /** `[batch, seq]` mask for left-padded prompts (1 = token, 0 = padding). */
  attentionMask?: ArrayLike<number>[];
  /** Seed of the sampling generator (same seed, same tokens). */
  seed?: number;
  /** End-of-sequence id(s) (default: the generation config's, else the model config's). */
  eosTokenId?: number | number[];
  /** Id written after a row has finished (default: pad, else the first EOS id). */
  padTokenId?: number;
  /** Stop a row when its generated text ends with one of these (needs `tokenizer`). */
  stopStrings?: string[];
  /** For `stopStrings` and for the `text` of each streamed token (batch row 0). */
  tokenizer?: GenerationTokenizer;
  /** Stops generation within one token; the promise rejects with `ShiraError` code `ABORTED` (partial output in `details.sequences`). */
  signal?: AbortSignal;
  /** Called after every step, before the next one (it may switch adapters); awaited when it returns a promise. */
  onToken?: (t: GeneratedToken) => void | Promise<void>;
}

/** One generation step. */
export interface GeneratedToken {
  /** 0 for the first new token. */
  step: number;
  /** The new token of each batch row (pad for rows that had finished). */
  tokens: number[];
  /** Batch row 0's new token. */
  token: number;
  /** Batch row 0's new text, when a tokenizer was given (incomplete UTF-8 is held back). */
  text?: string;
  /** Rows finished so far. */
  finished: boolean[];
}

export interface GenerateResult {
  /** Prompt plus new tokens per row (transformers' `generate` output). */
  sequences: number[][];
  /** Why generation ended. */
  stoppedBy: "eos" | "maxNewTokens" | "stopString";
  /** Seconds spent in prefill and per decode step. */
  timings: { prefillMs: number; decodeMs: number; newTokens: number };
}

function ids2d(x: ArrayLike<number> | ArrayLike<number>[], what = "inputIds"): number[][] {
  const first = (x as ArrayLike<unknown>)[0];
  if (x.length > 0 && typeof first === "object" && first !== null) {
    return Array.from(x as ArrayLike<number>[], (r, i) => {
      if (typeof r !== "object" || r === null || typeof (r as ArrayLike<number>).length !== "number") {
        throw new ShapeError("SHAPE_MISMATCH", `generate: ${what} row ${i} is ${r === null ? "null" : typeof r}, not a list of numbers`, { row: i });
      }
      return Array.from(r, Number);
    });
  }
  return [Array.from(x as ArrayLike<number>, Number)];
}

/** Lets other tasks (abort signals, UI events, adapter switches) run between two tokens. */
function yieldToEventLoop(): Promise<void> {
  if (typeof setImmediate === "function") return new Promise((r) => setImmediate(r));
  if (typeof MessageChannel === "function") {
    return new Promise((r) => {
      const ch = new MessageChannel();
      ch.port1.onmessage = () => {
        ch.port1.close();
        r();
      };
      ch.port2.postMessage(null);
    });
  }
  return new Promise((r) => setTimeout(r, 0));
}

function now(): number {
  return typeof performance !== "undefined" ? performance.now() : Date.now();
}

/** The generation loop as an async iterator; its return value is the {@link GenerateResult}. */
/** The name of the streaming operation (a constant: the browser bundle's test forbids the literal `"stream")`). */
export const STREAM_OP: "stream" = "stream";

export async function* streamTokens(model: DecoderModel, inputIds: ArrayLike<number> | ArrayLike<number>[], opts: GenerateOptions = {}, what: "generate" | "stream" = STREAM_OP): AsyncGenerator<GeneratedToken, GenerateResult> {
  const gc = model.generationConfig as Record<string, unknown>;
  const seqs = ids2d(inputIds);
  const B = seqs.length;
  const T = seqs[0]?.length ?? 0;
  if (B === 0 || T === 0) throw new ShapeError("SHAPE_MISMATCH", "generate: inputIds is empty");
  for (const r of seqs) if (r.length !== T) throw new ShapeError("SHAPE_MISMATCH", `generate: rows of inputIds differ in length (${r.length} vs ${T}); left-pad them and pass attentionMask`);
  const pick = <V>(v: V | undefined, key: string, dflt: V): V => (v !== undefined ? v : gc[key] !== undefined && gc[key] !== null ? (gc[key] as V) : dflt);
  const maxNew = pick(opts.maxNewTokens, "maxNewTokens", 20);
  if (!Number.isSafeInteger(maxNew) || maxNew < 0) throw new ConfigError("CONFIG_INVALID", `generate: maxNewTokens must be a non-negative integer, got ${maxNew}`, { field: "maxNewTokens", value: maxNew });
  const sampling: SamplingOptions = {
    doSample: pick(opts.doSample, "doSample", false),
    temperature: pick(opts.temperature, "temperature", 1),
    topK: pick(opts.topK, "topK", 50),
    topP: pick(opts.topP, "topP", 1),
    minP: pick<number | undefined>(opts.minP, "minP", undefined),
    repetitionPenalty: pick(opts.repetitionPenalty, "repetitionPenalty", 1),
  };
  checkSamplingOptions(sampling);
  const eosRaw = opts.eosTokenId ?? (gc["eosTokenId"] as number | number[] | undefined) ?? model.config.eosTokenId ?? [];
  const eos = new Set<number>(Array.isArray(eosRaw) ? eosRaw : [eosRaw]);
  const pad = opts.padTokenId ?? (gc["padTokenId"] as number | undefined) ?? model.config.padTokenId ?? (eos.size ? [...eos][0] : 0);
  if (opts.stopStrings?.length && !opts.tokenizer) throw new ConfigError("CONFIG_INVALID", "generate: stopStrings needs a tokenizer (pass { tokenizer })", { field: "stopStrings" });
  let mask: number[][] | null = null;
  if (opts.attentionMask) {
    mask = ids2d(opts.attentionMask, "attentionMask");
    if (mask.length !== B || mask.some((r) => r.length !== T)) throw new ShapeError("SHAPE_MISMATCH", `generate: attentionMask must be [${B}, ${T}]`);
  }
  const rng = sampling.doSample ? new Rng(opts.seed ?? (Math.random() * 2 ** 32) >>> 0) : null;
  const signal = opts.signal;
  const V = model.config.vocabSize;
  const decoder = opts.tokenizer?.createDecodeStream?.({ skipSpecialTokens: true });
  const out = seqs.map((r) => r.slice());
  const finished = new Array<boolean>(B).fill(false);
  const stopStrings = opts.stopStrings ?? [];
  const generatedText: string[] = new Array(B).fill("");
  let stoppedBy: GenerateResult["stoppedBy"] = "maxNewTokens";
  const aborted = () =>
    new ShiraError("ABORTED", `generate: aborted after ${out[0].length - T} new tokens`, { sequences: out.map((r) => r.slice()), reason: signal?.reason });
  const timings = { prefillMs: 0, decodeMs: 0, newTokens: 0 };
  const rt = runtime();
  // the model is busy from here until the finally below (a second generation, dispose() and structural adapter
  // changes are refused with BUSY meanwhile)
  const endGeneration = model.beginGeneration(what);
  let cache: ReturnType<DecoderModel["createCache"]>;
  let logits: ReturnType<typeof rt.allocF32>;
  try {
    cache = model.createCache({ batchSize: B, maxLength: T + Math.max(1, maxNew) });
    try {
      logits = rt.allocF32(B * V);
    } catch (e) {
      cache.dispose();
      throw e;
    }
  } catch (e) {
    endGeneration();
    throw e;
  }
  try {
    if (signal?.aborted) throw aborted();
    let stepIds = Int32Array.from(seqs.flat());
    let stepMask: number[] | null = mask ? mask.flat() : null;
    let stepT = T;
    for (let step = 0; step < maxNew; step++) {
      const t0 = now();
      model.run(stepIds, B, stepT, cache, stepMask, null, true, logits.ptr);
      const tokens: number[] = [];
      for (let b = 0; b < B; b++) {
        if (finished[b]) {
          tokens.push(pad);
          continue;
        }
        const row = logits.view.subarray(b * V, (b + 1) * V);
        let id: number;
        if (!sampling.doSample && (sampling.repetitionPenalty ?? 1) === 1) id = rt.k.f32_argmax(logits.ptr + b * V * 4, V);
        else id = selectToken(row.slice(), sampling, rng, out[b]);
        tokens.push(id);
      }
      const dt = now() - t0;
      if (step === 0) timings.prefillMs = dt;
      else timings.decodeMs += dt;
      timings.newTokens++;
      for (let b = 0; b < B; b++) {
        out[b].push(tokens[b]);
        if (finished[b]) continue;
        if (eos.has(tokens[b])) finished[b] = true;
        else if (stopStrings.length) {
          generatedText[b] = opts.tokenizer!.decode(out[b].slice(T));
          if (stopStrings.some((s) => generatedText[b].includes(s))) {
            finished[b] = true;
            stoppedBy = "stopString";
          }
        }
      }
      const text = decoder ? decoder.push(tokens[0]) : undefined;
      const event: GeneratedToken = { step, tokens, token: tokens[0], finished: finished.slice(), ...(text !== undefined ? { text } : {}) };
      if (opts.onToken) await opts.onToken(event);
      yield event;
      if (finished.every(Boolean)) {
        if (stoppedBy !== "stopString") stoppedBy = "eos";
        break;
      }
      await yieldToEventLoop();
      if (signal?.aborted) throw aborted();
      stepIds = Int32Array.from(tokens);
      stepMask = null;
      stepT = 1;
    }
    return { sequences: out, stoppedBy, timings };
  } finally {
    try {
      logits.free();
      cache.dispose();
    } finally {
      endGeneration();
    }
  }
}

/** Runs {@link streamTokens} to the end and returns its result. */
export async function generateTokens(model: DecoderModel, inputIds: ArrayLike<number> | ArrayLike<number>[], opts: GenerateOptions = {}): Promise<GenerateResult> {
  const it = streamTokens(model, inputIds, opts, "generate");
  for (;;) {
    const r = await it.next();
    if (r.done) return r.value;
  }
}
