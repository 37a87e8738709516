/**
 * `shira generate --model DIR [--dtype DTYPE] --adapter NAME=DIR ... --prompt TEXT [--max-new-tokens N] [--switch-at TOKEN:NAME]`:
 * loads a Hugging Face checkpoint folder (in its stored dtype unless `--dtype` says otherwise) and its tokenizer, loads PEFT SHiRA adapters onto it, and streams the
 * generated text, switching the fused adapter at the given token counts. Reports tokens/s and switch times.
 * And `describeCheckpoint(dir)` for `shira inspect DIR` on a model folder (headers only, no weights read).
 */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { ConfigError } from "../errors.js";
import { openFileSource } from "../io/node-source.js";
import { openSafetensors } from "../io/safetensors.js";
import { parseConfig, type DecoderConfig } from "../models/config.js";
import { AutoModelForCausalLM } from "../models/auto.js";
import { FAMILIES } from "../models/families/index.js";
import { AutoTokenizer, type PreTrainedTokenizer } from "../models/tokenizer.js";
import type { DecoderModel, ModelDtype } from "../models/decoder.js";
import { ShiraModel } from "../shira/model.js";
import { readFile } from "node:fs/promises";

export interface GenerateCliOptions {
  model: string;
  /** Storage dtype of the weights (default: the checkpoint's, see `FromPretrainedOptions.dtype`). */
  dtype?: ModelDtype;
  /** `[name, dir]` pairs; the first one is fused from the start (unless a switch at token 0 says otherwise). */
  adapters: [string, string][];
  prompt: string;
  /** Treat the prompt as a user message and apply the tokenizer's chat template. */
  chat: boolean;
  maxNewTokens: number;
  /** `[token index, adapter name or "base"]`, switched before that generated token. */
  switches: [number, string][];
  doSample: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  write: (s: string) => void;
  log: (s: string) => void;
}

export interface GenerateCliResult {
  /** The storage dtype the weights were loaded in. */
  dtype: ModelDtype;
  text: string;
  tokens: number[];
  newTokens: number;
  prefillMs: number;
  decodeTokensPerSecond: number;
  switches: { atToken: number; adapter: string; ms: number }[];
}

export async function runGenerate(o: GenerateCliOptions): Promise<GenerateCliResult> {
  const t0 = performance.now();
  const lm: DecoderModel = await AutoModelForCausalLM.fromPretrained(o.model, o.dtype !== undefined ? { dtype: o.dtype } : {});
  let stream: AsyncGenerator<unknown, unknown> | null = null;
  try {
    const tok: PreTrainedTokenizer = await AutoTokenizer.fromPretrained(o.model);
    o.log(`loaded ${o.model} (${lm.config.modelType}, ${lm.config.numLayers} layers, ${(lm.weightBytes / 2 ** 20).toFixed(1)} MiB of ${lm.dtype} weights) in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
    let peft: ShiraModel | null = null;
    for (const [name, dir] of o.adapters) {
      if (!peft) peft = await ShiraModel.fromPretrained(lm, dir, { adapterName: name });
      else await peft.loadAdapter(dir, name);
    }
    const names = new Set(o.adapters.map(([n]) => n));
    for (const [, n] of o.switches) {
      if (n !== "base" && !names.has(n)) throw new ConfigError("CONFIG_INVALID", `--switch-at names adapter "${n}", which was not loaded (loaded: ${[...names].join(", ") || "none"}; use "base" for no adapter)`, { adapter: n });
    }
    const switches: GenerateCliResult["switches"] = [];
    const doSwitch = (at: number, name: string) => {
      if (!peft) return;
      const s = performance.now();
      if (name === "base") peft.switchToBase();
      else peft.switchTo(name);
      switches.push({ atToken: at, adapter: name, ms: performance.now() - s });
    };
    const plan = new Map(o.switches);
    if (peft && !plan.has(0)) doSwitch(0, o.adapters[0][0]);
    const text = o.chat ? (tok.applyChatTemplate([{ role: "user", content: o.prompt }], { addGenerationPrompt: true, tokenize: false }) as string) : o.prompt;
    const ids = tok.encode(text, { addSpecialTokens: !o.chat });
    if (plan.has(0)) doSwitch(0, plan.get(0)!);
    const tokenStream = lm.stream([ids], {
      maxNewTokens: o.maxNewTokens,
      doSample: o.doSample,
      ...(o.temperature !== undefined ? { temperature: o.temperature } : {}),
      ...(o.topK !== undefined ? { topK: o.topK } : {}),
      ...(o.topP !== undefined ? { topP: o.topP } : {}),
      ...(o.seed !== undefined ? { seed: o.seed } : {}),
      ...(tok.eosTokenId !== null ? { eosTokenId: tok.eosTokenId } : {}),
      tokenizer: tok,
    });
    stream = tokenStream;
    const tokens: number[] = [];
    let out = "";
    let result;
    for (;;) {
      const r = await tokenStream.next();
      if (r.done) {
        result = r.value;
        break;
      }
      tokens.push(r.value.token);
      if (r.value.text) {
        out += r.value.text;
        o.write(r.value.text);
      }
      const next = plan.get(tokens.length);
      if (next !== undefined) doSwitch(tokens.length, next);
    }
    const decodeSteps = Math.max(1, result.timings.newTokens - 1);
    return {
      dtype: lm.dtype,
      text: out,
      tokens,
      newTokens: tokens.length,
      prefillMs: result.timings.prefillMs,
      decodeTokensPerSecond: result.timings.decodeMs > 0 ? (1000 * decodeSteps) / result.timings.decodeMs : 0,
      switches,
    };
  } finally {
    // a failure between two tokens (a switch): end the generation first, the model is busy until then
    await stream?.return(undefined);
    lm.dispose();
  }
}

export interface CheckpointReport {
  path: string;
  modelType: string;
  architecture: string;
  config: Omit<DecoderConfig, "raw">;
  files: { name: string; bytes: number; tensors: number; dtypes: string[] }[];
  parameters: number;
  tiedHead: boolean;
  hasTokenizer: boolean;
}

/** Whether `dir` is a model checkpoint folder (has `config.json` with a `model_type`). */
export async function isCheckpointDir(dir: string): Promise<boolean> {
  try {
    if (!(await stat(dir)).isDirectory()) return false;
    const cfg = JSON.parse(await readFile(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
    return typeof cfg["model_type"] === "string";
  } catch {
    return false;
  }
}

/** Describes a checkpoint folder from its config and safetensors headers (no tensor data is read). */
export async function describeCheckpoint(dir: string): Promise<CheckpointReport> {
  const config = parseConfig(JSON.parse(await readFile(join(dir, "config.json"), "utf8")));
  const fam = FAMILIES.get(config.modelType)!;
  let shardNames: string[];
  try {
    const index = JSON.parse(await readFile(join(dir, "model.safetensors.index.json"), "utf8")) as { weight_map: Record<string, string> };
    shardNames = [...new Set(Object.values(index.weight_map))];
  } catch {
    shardNames = ["model.safetensors"];
  }
  const files: CheckpointReport["files"] = [];
  let parameters = 0;
  for (const name of shardNames) {
    const src = await openFileSource(join(dir, name));
    try {
      const st = await openSafetensors(src);
      const dtypes = new Set<string>();
      for (const e of st.entries()) {
        dtypes.add(e.dtype);
        parameters += e.shape.reduce((a, b) => a * b, 1);
      }
      files.push({ name, bytes: src.size, tensors: st.names().length, dtypes: [...dtypes] });
    } finally {
      await src.close();
    }
  }
  const { raw, ...rest } = config;
  void raw;
  let hasTokenizer = false;
  try {
    hasTokenizer = (await stat(join(dir, "tokenizer.json"))).isFile();
  } catch {
    hasTokenizer = false;
  }
  return { path: dir, modelType: config.modelType, architecture: fam.architecture, config: rest, files, parameters, tiedHead: config.tieWordEmbeddings, hasTokenizer };
}
