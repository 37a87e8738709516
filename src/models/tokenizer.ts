/**
 * Tokenizers for Hugging Face checkpoints: `tokenizer.json` run by `@huggingface/tokenizers` (pure JS, the same
 * models, normalizers, pre-tokenizers and decoders as the Rust library behind transformers' fast tokenizers) and
 * chat templates rendered by `@huggingface/jinja`, with transformers' conventions on top: special tokens from
 * `tokenizer_config.json` (falling back to `special_tokens_map.json`), `add_bos_token` / `add_eos_token`, padding,
 * `apply_chat_template`, and a streaming detokenizer for generation.
 *
 * ```ts
 * const tok = await AutoTokenizer.fromPretrained("models/Qwen2.5-0.5B-Instruct");
 * const ids = tok.applyChatTemplate([{ role: "user", content: "Hi" }], { addGenerationPrompt: true, tokenize: true });
 * const stream = tok.createDecodeStream({ skipSpecialTokens: true });
 * for (const id of generated) process.stdout.write(stream.push(id));
 * ```
 */
import { Tokenizer } from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";
import { ConfigError, FormatError, ShiraError } from "../errors.js";
import { LoadScope, type LoadSignalOptions, throwIfAborted } from "../io/abort.js";
import { openCheckpoint, type CheckpointSource } from "./source.js";

/** One chat message, as transformers' chat templates expect (`role`, `content`, and any extra fields such as `tool_calls`). */
export interface ChatMessage {
  role: string;
  /** Text, or a list of content parts (`{ type: "text", text }`) for templates that take them. */
  content: string | Record<string, unknown>[] | null;
  [key: string]: unknown;
}

export interface EncodeOptions {
  /** Add the special tokens the tokenizer adds around a text (Llama's `<s>`; none for GPT-2/Qwen2). Default true. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (`<s>`, `<|im_end|>`, ...) from the text. Default false. */
  skipSpecialTokens?: boolean;
  /**
   * transformers' `clean_up_tokenization_spaces` (removes spaces before punctuation, " n't" -> "n't"). Default: the
   * checkpoint's `tokenizer_config.json` value, else false (transformers' default).
   */
  cleanUpTokenizationSpaces?: boolean;
}

export interface BatchEncodeOptions extends EncodeOptions {
  /** Pad every row to the longest one. */
  padding?: "longest";
  /** Where the padding goes. Default "left", what decoder-only generation needs (the last column is real text). */
  paddingSide?: "left" | "right";
}

export interface BatchEncoding {
  /** Token ids, one row per text, all rows as long as the longest. */
  inputIds: number[][];
  /** 1 for real tokens, 0 for padding, same shape as `inputIds`. */
  attentionMask: number[][];
}

export interface ChatTemplateOptions {
  /** End with the header of an assistant turn (`<|im_start|>assistant\n`), to make the model answer. Default false. */
  addGenerationPrompt?: boolean;
  /** Return token ids instead of the text (encoded without adding special tokens: the template wrote them). */
  tokenize?: boolean;
  /** Tool (function) descriptions as JSON schemas, passed to the template as `tools`. */
  tools?: Record<string, unknown>[];
  /** Documents for retrieval-augmented templates, passed as `documents`. */
  documents?: Record<string, unknown>[];
  /** A template name from the checkpoint's list of templates (`"tool_use"`), or a Jinja template string. */
  chatTemplate?: string;
  /** Extra variables for the template (transformers' `**kwargs`), e.g. `{ enable_thinking: false }`. */
  templateArgs?: Record<string, unknown>;
}

/** The named special tokens of a tokenizer (null when it has none) and every token marked special. */
export interface SpecialTokens {
  bos: string | null;
  eos: string | null;
  pad: string | null;
  unk: string | null;
  /** Every special token: added tokens marked `special` and `additional_special_tokens`. */
  all: string[];
}

/** Turns generated ids into text one token at a time (see {@link PreTrainedTokenizer.createDecodeStream}). */
export interface DecodeStream {
  /** Adds one token id; returns the text it completes (often "", e.g. for the first bytes of an emoji). */
  push(id: number): string;
  /** Returns the text still held back (an unfinished UTF-8 sequence, as U+FFFD) and resets the stream. */
  flush(): string;
}

/**
 * Options of {@link AutoTokenizer.fromPretrained}: `signal` aborts (pending HTTP requests are cancelled), `timeout`
 * (ms, default none) limits the whole load; both reject with `ShiraError` code `"ABORTED"` (a timeout:
 * `... timed out after N ms`, `details.reason === "timeout"`).
 */
export interface AutoTokenizerOptions extends LoadSignalOptions {}

type Json = Record<string, unknown>;
const REPLACEMENT_CHAR = "\uFFFD";

/** A special token in a config file: a string, an `AddedToken` dict (`{ content, ... }`), or null. */
function tokenContent(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string") return (v as { content: string }).content;
  return null;
}

function parseJson(text: string, file: string, where: string): Json {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new FormatError("CONFIG_INVALID", `${where}: ${file} is not valid JSON: ${(e as Error).message}`, { file, where });
  }
  if (!v || typeof v !== "object" || Array.isArray(v)) throw new FormatError("CONFIG_INVALID", `${where}: ${file} is not a JSON object`, { file, where });
  return v as Json;
}

/**
 * A fast (`tokenizer.json`) tokenizer with transformers' conventions. Load one with {@link AutoTokenizer.fromPretrained},
 * or build it from parsed files: `new PreTrainedTokenizer(tokenizerJson, tokenizerConfig)`.
 */
export class PreTrainedTokenizer {
  /** The `@huggingface/tokenizers` instance doing the work. */
  readonly backend: Tokenizer;
  /** The parsed `tokenizer_config.json` (empty when the checkpoint has none). */
  readonly config: Readonly<Json>;
  private readonly special: { bos: string | null; eos: string | null; pad: string | null; unk: string | null };
  private readonly specialIds: Set<number>;
  private readonly allSpecial: string[];
  /** Set when the config says add_bos_token / add_eos_token: these flags then replace the post-processor (transformers). */
  private readonly addBosEos: { bos: boolean; eos: boolean } | null;
  private readonly cleanUp: boolean;
  private readonly templates: Map<string, string>;
  private readonly compiled = new Map<string, Template>();

  /**
   * @param tokenizerJson     parsed `tokenizer.json`
   * @param tokenizerConfig   parsed `tokenizer_config.json` (optional)
   * @param options.specialTokensMap  parsed `special_tokens_map.json`, the fallback for bos/eos/pad/unk
   * @param options.chatTemplate      a `chat_template.jinja` file's text; it replaces the config's default template
   */
  constructor(tokenizerJson: Json, tokenizerConfig: Json = {}, options: { specialTokensMap?: Json; chatTemplate?: string | null } = {}) {
    this.config = tokenizerConfig;
    try {
      this.backend = new Tokenizer(tokenizerJson, tokenizerConfig);
    } catch (e) {
      throw new ConfigError("CONFIG_INVALID", `tokenizer.json is not supported by @huggingface/tokenizers: ${(e as Error).message}`, {
        file: "tokenizer.json",
      });
    }
    const map = options.specialTokensMap ?? {};
    const pick = (key: string) => tokenContent(tokenizerConfig[key]) ?? tokenContent(map[key]);
    this.special = { bos: pick("bos_token"), eos: pick("eos_token"), pad: pick("pad_token"), unk: pick("unk_token") };

    this.specialIds = new Set();
    const all: string[] = [];
    for (const [id, t] of this.backend.get_added_tokens_decoder()) {
      if (!t.special) continue;
      this.specialIds.add(id);
      all.push(t.content);
    }
    const additional = tokenizerConfig.additional_special_tokens ?? map.additional_special_tokens;
    for (const v of Array.isArray(additional) ? additional : []) {
      const t = tokenContent(v);
      if (t === null || all.includes(t)) continue;
      all.push(t);
      const id = this.tokenToId(t);
      if (id !== null) this.specialIds.add(id);
    }
    this.allSpecial = all;

    // transformers (TokenizersBackend, and LlamaTokenizerFast/GemmaTokenizerFast before it): when the config names
    // add_bos_token or add_eos_token, the post-processor is rebuilt as "[bos] $A [eos]" from these flags; otherwise
    // tokenizer.json's post-processor decides (Llama's TemplateProcessing adds <s>; GPT-2/Qwen2 add nothing).
    if ("add_bos_token" in tokenizerConfig || "add_eos_token" in tokenizerConfig) {
      this.addBosEos = { bos: tokenizerConfig.add_bos_token === true, eos: tokenizerConfig.add_eos_token === true };
    } else this.addBosEos = null;
    this.cleanUp = tokenizerConfig.clean_up_tokenization_spaces === true;

    this.templates = new Map();
    const ct = tokenizerConfig.chat_template;
    if (typeof ct === "string") this.templates.set("default", ct);
    else if (Array.isArray(ct)) {
      for (const t of ct as { name?: unknown; template?: unknown }[]) {
        if (t && typeof t.name === "string" && typeof t.template === "string") this.templates.set(t.name, t.template);
      }
    }
    if (typeof options.chatTemplate === "string") this.templates.set("default", options.chatTemplate);
  }

  // ---- vocabulary ------------------------------------------------------------------------------------------

  /** Number of token ids, added tokens included (transformers' `len(tokenizer)`; its `vocab_size` leaves them out). */
  get vocabSize(): number {
    return this.backend.model!.vocab.length;
  }

  /** The id of a token string, or null when it is not in the vocabulary. */
  tokenToId(token: string): number | null {
    return this.backend.token_to_id(token) ?? null;
  }

  /** The token string of an id, or null when there is no such id. */
  idToToken(id: number): string | null {
    return this.backend.id_to_token(id) ?? null;
  }

  private idOf(token: string | null): number | null {
    return token === null ? null : this.tokenToId(token);
  }

  get bosTokenId(): number | null {
    return this.idOf(this.special.bos);
  }

  get eosTokenId(): number | null {
    return this.idOf(this.special.eos);
  }

  /** The pad token's id, or null when the checkpoint defines none (`batchEncode` then pads with eos). */
  get padTokenId(): number | null {
    return this.idOf(this.special.pad);
  }

  get unkTokenId(): number | null {
    return this.idOf(this.special.unk);
  }

  get specialTokens(): SpecialTokens {
    return { ...this.special, all: this.allSpecial.slice() };
  }

  /** The checkpoint's default chat template, or null. */
  get chatTemplate(): string | null {
    return this.templates.get("default") ?? null;
  }

  // ---- encode / decode -------------------------------------------------------------------------------------

  /**
   * Token ids of a text. Special tokens written in the text (`<|im_start|>`) become their ids.
   *
   * ```ts
   * tok.encode("the cat");                              // Llama: [1, ...] with <s>; Qwen2: no special tokens
   * tok.encode("the cat", { addSpecialTokens: false });
   * ```
   */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    const addSpecialTokens = opts.addSpecialTokens ?? true;
    if (this.addBosEos === null) return this.backend.encode(text, { add_special_tokens: addSpecialTokens }).ids;
    const ids = this.backend.encode(text, { add_special_tokens: false }).ids;
    if (!addSpecialTokens) return ids;
    const bos = this.addBosEos.bos ? this.bosTokenId : null;
    const eos = this.addBosEos.eos ? this.eosTokenId : null;
    return [...(bos !== null ? [bos] : []), ...ids, ...(eos !== null ? [eos] : [])];
  }

  /**
   * The text of token ids. Ids with no token are dropped (as the Rust tokenizers do).
   *
   * ```ts
   * tok.decode(ids, { skipSpecialTokens: true });
   * ```
   */
  decode(ids: ArrayLike<number>, opts: DecodeOptions = {}): string {
    const skip = opts.skipSpecialTokens ?? false;
    const kept: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (this.backend.id_to_token(id) === undefined) continue;
      if (skip && this.specialIds.has(id)) continue;
      kept.push(id);
    }
    if (kept.length === 0) return "";
    return this.backend.decode(kept, { skip_special_tokens: skip, clean_up_tokenization_spaces: opts.cleanUpTokenizationSpaces ?? this.cleanUp });
  }

  /**
   * Encodes several texts and pads them to the longest, left by default (for generation). The padding id is
   * `padTokenId`; a tokenizer without a pad token pads with eos, as transformers users do
   * (`tokenizer.pad_token = tokenizer.eos_token`). The padded positions have mask 0, so their id does not matter.
   *
   * ```ts
   * const { inputIds, attentionMask } = tok.batchEncode(["Hi", "the cat sat"]);   // [[pad, pad, x], [a, b, c]]
   * ```
   */
  batchEncode(texts: string[], opts: BatchEncodeOptions = {}): BatchEncoding {
    const side = opts.paddingSide ?? "left";
    if (side !== "left" && side !== "right") throw new ConfigError("CONFIG_INVALID", `paddingSide must be "left" or "right", got ${JSON.stringify(side)}`);
    if ((opts.padding ?? "longest") !== "longest") throw new ConfigError("CONFIG_INVALID", `padding must be "longest", got ${JSON.stringify(opts.padding)}`);
    const rows = texts.map((t) => this.encode(t, opts));
    const width = rows.reduce((m, r) => Math.max(m, r.length), 0);
    const padId = this.padTokenId ?? this.eosTokenId;
    if (padId === null && rows.some((r) => r.length !== width)) {
      throw new ConfigError("CONFIG_INVALID", "cannot pad: the tokenizer has neither a pad token nor an eos token", { field: "pad_token" });
    }
    const inputIds: number[][] = [];
    const attentionMask: number[][] = [];
    for (const r of rows) {
      const pad = new Array<number>(width - r.length).fill(padId ?? 0);
      const zeros = new Array<number>(width - r.length).fill(0);
      const ones = new Array<number>(r.length).fill(1);
      inputIds.push(side === "left" ? [...pad, ...r] : [...r, ...pad]);
      attentionMask.push(side === "left" ? [...zeros, ...ones] : [...ones, ...zeros]);
    }
    return { inputIds, attentionMask };
  }

  /**
   * A streaming detokenizer: `push(id)` returns only the text that token adds, holding back a token that ends in an
   * unfinished UTF-8 sequence (a byte-level or `<0xNN>` piece of an emoji) until it completes, so U+FFFD is never
   * emitted for a character that later resolves. The pieces concatenate to `decode(ids)` (without clean-up of
   * tokenization spaces, which would rewrite text already emitted).
   *
   * Each push decodes a short window (the last emitted token as context, then the pending ones) and keeps what lies
   * past the context's text, as text-generation-inference and vLLM do; the context token keeps SentencePiece's
   * leading-space stripping and byte merging consistent.
   *
   * ```ts
   * const stream = tok.createDecodeStream({ skipSpecialTokens: true });
   * for (const id of ids) out += stream.push(id);
   * out += stream.flush();
   * ```
   */
  createDecodeStream(opts: { skipSpecialTokens?: boolean } = {}): DecodeStream {
    const skip = opts.skipSpecialTokens ?? false;
    const decode = (ids: number[]) => this.decode(ids, { skipSpecialTokens: skip, cleanUpTokenizationSpaces: false });
    const visible = (id: number) => this.backend.id_to_token(id) !== undefined && !(skip && this.specialIds.has(id));
    let context: number[] = []; // the last emitted visible token (or nothing at the start)
    let pending: number[] = []; // tokens whose text is not emitted yet
    return {
      push: (id: number): string => {
        pending.push(id);
        const before = decode(context);
        const text = decode([...context, ...pending]);
        if (text.length <= before.length || text.endsWith(REPLACEMENT_CHAR)) return "";
        const last = [...context, ...pending].filter(visible).pop();
        context = last === undefined ? [] : [last];
        pending = [];
        return text.slice(before.length);
      },
      flush: (): string => {
        const before = decode(context);
        const text = decode([...context, ...pending]);
        context = [];
        pending = [];
        return text.slice(before.length);
      },
    };
  }

  // ---- chat templates --------------------------------------------------------------------------------------

  /**
   * Renders a conversation with the checkpoint's chat template, as transformers' `apply_chat_template`: the template
   * sees `messages`, `add_generation_prompt`, `tools`, `documents`, the special tokens (`bos_token`, `eos_token`, ...)
   * and `raise_exception(msg)`. Returns the text, or its ids with `tokenize: true` (encoded without adding special
   * tokens, since the template writes them). Throws `ConfigError` (`CONFIG_INVALID`) when the checkpoint has no chat
   * template, or when the template fails or calls `raise_exception` (the message then starts "chat template failed:").
   *
   * ```ts
   * const prompt = tok.applyChatTemplate(
   *   [{ role: "system", content: "Be terse." }, { role: "user", content: "Hi" }],
   *   { addGenerationPrompt: true },
   * );
   * ```
   */
  applyChatTemplate(messages: ChatMessage[], opts: ChatTemplateOptions & { tokenize: true }): number[];
  applyChatTemplate(messages: ChatMessage[], opts?: ChatTemplateOptions & { tokenize?: false }): string;
  applyChatTemplate(messages: ChatMessage[], opts?: ChatTemplateOptions): string | number[];
  applyChatTemplate(messages: ChatMessage[], opts: ChatTemplateOptions = {}): string | number[] {
    const source = this.resolveTemplate(opts.chatTemplate);
    let template = this.compiled.get(source);
    if (!template) {
      try {
        template = new Template(source);
      } catch (e) {
        throw new ConfigError("CONFIG_INVALID", `chat template does not parse: ${(e as Error).message}`, { field: "chat_template" });
      }
      this.compiled.set(source, template);
    }
    const vars: Record<string, unknown> = { ...opts.templateArgs };
    for (const [key, value] of Object.entries(this.special)) if (value !== null) vars[`${key}_token`] = value;
    const additional = this.config.additional_special_tokens;
    if (Array.isArray(additional)) vars.additional_special_tokens = additional.map(tokenContent).filter((t) => t !== null);
    Object.assign(vars, {
      messages,
      tools: opts.tools ?? null,
      documents: opts.documents ?? null,
      add_generation_prompt: opts.addGenerationPrompt ?? false,
    }); // raise_exception and strftime_now are @huggingface/jinja globals
    let text: string;
    try {
      text = template.render(vars);
    } catch (e) {
      throw new ConfigError("CONFIG_INVALID", `chat template failed: ${(e as Error).message}`, { field: "chat_template" });
    }
    return opts.tokenize ? this.encode(text, { addSpecialTokens: false }) : text;
  }

  /** transformers' choice: a named template, else the argument as a template string, else "default". */
  private resolveTemplate(chatTemplate: string | undefined): string {
    if (chatTemplate !== undefined) return this.templates.get(chatTemplate) ?? chatTemplate;
    const t = this.templates.get("default");
    if (t !== undefined) return t;
    const names = [...this.templates.keys()];
    throw new ConfigError(
      "CONFIG_INVALID",
      names.length
        ? `the tokenizer has no default chat template; pass chatTemplate: one of ${names.map((n) => JSON.stringify(n)).join(", ")}`
        : "the tokenizer has no chat template (no chat_template in tokenizer_config.json, no chat_template.jinja); pass one as chatTemplate",
      { field: "chat_template", templates: names },
    );
  }
}

/** Loads tokenizers from checkpoint folders. */
export class AutoTokenizer {
  /**
   * Loads `tokenizer.json` (required), `tokenizer_config.json`, `special_tokens_map.json` and `chat_template.jinja`
   * (optional) from a directory (Node), a base URL, or a file map / `FileList`. Throws `ShiraError("IO")` naming the
   * file when `tokenizer.json` is missing (checkpoints with only a slow tokenizer, `tokenizer.model` or `vocab.json`,
   * are not supported).
   *
   * ```ts
   * const tok = await AutoTokenizer.fromPretrained("https://example.com/SmolLM2-135M-Instruct/");
   * const tok2 = await AutoTokenizer.fromPretrained({ "tokenizer.json": bytes, "tokenizer_config.json": cfgBytes });
   * ```
   */
  static async fromPretrained(source: CheckpointSource, opts: AutoTokenizerOptions = {}): Promise<PreTrainedTokenizer> {
    if (opts === null || typeof opts !== "object") throw new ConfigError("CONFIG_INVALID", `AutoTokenizer.fromPretrained: opts must be an object, got ${opts === null ? "null" : typeof opts}`, { argument: "opts" });
    // one signal for the whole load; if one file fails, the other requests are cancelled
    const texts = await new LoadScope(opts, "AutoTokenizer.fromPretrained").run(async ({ signal }) => {
      const files = await openCheckpoint(source, { signal });
      const read = await Promise.all([
        files.text("tokenizer.json"),
        files.text("tokenizer_config.json"),
        files.text("special_tokens_map.json"),
        files.text("chat_template.jinja"),
      ]);
      throwIfAborted(signal);
      return { files, read };
    });
    const files = texts.files;
    const [tokenizerText, configText, mapText, templateText] = texts.read;
    if (tokenizerText === null) {
      throw new ShiraError("IO", `${files.where}: the checkpoint has no file "tokenizer.json" (AutoTokenizer needs a fast tokenizer's tokenizer.json)`, {
        file: "tokenizer.json",
        where: files.where,
      });
    }
    const tokenizerJson = parseJson(tokenizerText, "tokenizer.json", files.where);
    const config = configText === null ? {} : parseJson(configText, "tokenizer_config.json", files.where);
    const specialTokensMap = mapText === null ? {} : parseJson(mapText, "special_tokens_map.json", files.where);
    return new PreTrainedTokenizer(tokenizerJson, config, { specialTokensMap, chatTemplate: templateText });
  }
}
