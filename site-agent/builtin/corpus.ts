/**
 * Deterministic generated multilingual corpus for the builtin trainer. Each site gets one
 * language, which makes the federation non-IID. Sentences follow part-of-speech templates with
 * Zipf-distributed word choice and verb→object preferences, so a model that sees a few characters
 * of context (inside a word, or the previous word) predicts far better than a character bigram.
 */
import { BuiltinErrorCode, BuiltinTrainerError } from './errors.js';
import { LEXICONS, type Lexicon, type WordClass } from './lexicons.js';
import { type Rng, createRng } from './rng.js';

/**
 * Every character the corpus may contain, in vocabulary order: newline, space, '.', ',', a–z,
 * then the accented letters of the supported languages. The index of a character is its token id.
 */
export const CHARSET = '\n .,abcdefghijklmnopqrstuvwxyzàáâãäçèéêëìíîïñòóôõöùúûüß';

/** Number of distinct tokens, i.e. `CHARSET.length`. */
export const VOCAB_SIZE = CHARSET.length;

/** Token id of '\n', used to pad contexts before the start of a text. */
export const PAD_TOKEN = 0;

/** Supported languages, in the order {@link defaultSiteLanguages} assigns them to sites. */
export const LANGUAGES = ['es', 'ca', 'en', 'fr', 'de', 'it', 'pt', 'eu'] as const;

/** A supported language code. */
export type Language = (typeof LANGUAGES)[number];

const CHAR_INDEX: ReadonlyMap<string, number> = new Map([...CHARSET].map((ch, i) => [ch, i]));

/** True if `value` is one of {@link LANGUAGES}. */
export function isLanguage(value: string): value is Language {
  return (LANGUAGES as readonly string[]).includes(value);
}

/**
 * Encodes text into token ids. Throws `BuiltinTrainerError` (`BUILTIN_CHAR_NOT_IN_CHARSET`)
 * naming the first character outside {@link CHARSET} and its offset.
 */
export function encodeText(text: string): Uint8Array {
  const chars = [...text];
  const out = new Uint8Array(chars.length);
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i] ?? '';
    const id = CHAR_INDEX.get(ch);
    if (id === undefined) {
      throw new BuiltinTrainerError(
        BuiltinErrorCode.CharNotInCharset,
        `character ${JSON.stringify(ch)} (U+${(ch.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}) at offset ${i} is not in the builtin CHARSET`,
        { char: ch, offset: i },
      );
    }
    out[i] = id;
  }
  return out;
}

/** Decodes token ids back to text (inverse of {@link encodeText}). */
export function decodeTokens(tokens: Uint8Array): string {
  let s = '';
  for (const t of tokens) {
    const ch = CHARSET[t];
    if (ch === undefined) {
      throw new BuiltinTrainerError(BuiltinErrorCode.TokenOutOfRange, `token ${t} is outside the vocabulary`, { token: t });
    }
    s += ch;
  }
  return s;
}

interface WordTable {
  readonly words: readonly string[];
  /** Cumulative Zipf weights (1/rank), normalised to end at 1. */
  readonly cdf: Float64Array;
}

type CompiledLexicon = Readonly<Record<WordClass, WordTable>> & { readonly source: Lexicon };

const WORD_CLASSES: readonly WordClass[] = ['det', 'noun', 'adj', 'verb', 'adv', 'prep', 'conj', 'pron'];

function compile(lexicon: Lexicon): CompiledLexicon {
  const tables = {} as Record<WordClass, WordTable>;
  for (const cls of WORD_CLASSES) {
    const words = lexicon.words[cls].split(' ').filter((w) => w.length > 0);
    const cdf = new Float64Array(words.length);
    let acc = 0;
    for (let i = 0; i < words.length; i++) {
      acc += 1 / (i + 1);
      cdf[i] = acc;
    }
    for (let i = 0; i < cdf.length; i++) cdf[i] = (cdf[i] ?? 0) / acc;
    tables[cls] = { words, cdf };
  }
  return { ...tables, source: lexicon };
}

function pickIndex(table: WordTable, rng: Rng): number {
  const u = rng.next();
  let i = 0;
  while (i < table.cdf.length - 1 && (table.cdf[i] ?? 1) <= u) i++;
  return i;
}

function pick(table: WordTable, rng: Rng): string {
  return table.words[pickIndex(table, rng)] ?? '';
}

function nounPhrase(lex: CompiledLexicon, rng: Rng, noun: string): string[] {
  const det = pick(lex.det, rng);
  if (rng.next() >= 0.35) return [det, noun];
  const adj = pick(lex.adj, rng);
  return lex.source.adjAfterNoun ? [det, noun, adj] : [det, adj, noun];
}

/** The object noun prefers a small verb-specific set, a word-level dependency a bigram cannot see. */
function objectNoun(lex: CompiledLexicon, rng: Rng, verbIndex: number): string {
  const nouns = lex.noun.words;
  if (rng.next() < 0.6) return nouns[(verbIndex * 7 + rng.int(3)) % nouns.length] ?? '';
  return pick(lex.noun, rng);
}

function clause(lex: CompiledLexicon, rng: Rng): string[] {
  const verbIndex = pickIndex(lex.verb, rng);
  const verb = lex.verb.words[verbIndex] ?? '';
  const subject = rng.next() < 0.3 ? [pick(lex.pron, rng)] : nounPhrase(lex, rng, pick(lex.noun, rng));
  const object = nounPhrase(lex, rng, objectNoun(lex, rng, verbIndex));
  const roll = rng.next();
  const extra: string[] = [];
  if (roll < 0.3) {
    const np = nounPhrase(lex, rng, pick(lex.noun, rng));
    const prep = pick(lex.prep, rng);
    extra.push(...(lex.source.verbFinal ? [...np, prep] : [prep, ...np]));
  } else if (roll < 0.5) {
    extra.push(pick(lex.adv, rng));
  }
  return lex.source.verbFinal ? [...subject, ...object, ...extra, verb] : [...subject, verb, ...object, ...extra];
}

function sentence(lex: CompiledLexicon, rng: Rng): string {
  let text = clause(lex, rng).join(' ');
  if (rng.next() < 0.25) text += `, ${pick(lex.conj, rng)} ${clause(lex, rng).join(' ')}`;
  return `${text}.`;
}

/**
 * Generates exactly `nChars` characters of `language` text, deterministically from `rng` (which
 * advances). Every character is in {@link CHARSET}. Throws `BUILTIN_UNKNOWN_LANGUAGE` for an
 * unsupported code.
 */
export function generateText(language: string, nChars: number, rng: Rng): string {
  if (!isLanguage(language)) {
    throw new BuiltinTrainerError(BuiltinErrorCode.UnknownLanguage, `unknown language ${JSON.stringify(language)}; supported: ${LANGUAGES.join(', ')}`, { language });
  }
  if (!Number.isSafeInteger(nChars) || nChars < 0) {
    throw new BuiltinTrainerError(BuiltinErrorCode.InvalidArgument, `nChars must be a non-negative integer, got ${nChars}`, { nChars });
  }
  const lex = compile(LEXICONS[language]);
  const parts: string[] = [];
  let length = 0;
  while (length < nChars) {
    const s = sentence(lex, rng) + (rng.next() < 0.2 ? '\n' : ' ');
    parts.push(s);
    length += [...s].length;
  }
  return [...parts.join('')].slice(0, nChars).join('');
}

/** Options of {@link siteDataset}. */
export interface SiteDatasetOptions {
  /** Language of the site's text. */
  readonly language: string;
  /** Number of training characters. */
  readonly trainChars: number;
  /** Number of held-out characters. */
  readonly heldoutChars: number;
  /** Seed; the same seed and language always give the same data. */
  readonly seed: number | bigint;
}

/** Encoded training and held-out text of one site. */
export interface SiteDataset {
  readonly train: Uint8Array;
  readonly heldout: Uint8Array;
}

/**
 * Builds one site's data. Train and held-out text come from disjoint RNG streams (the held-out
 * generator is the training one jumped ahead by 2^64 draws), so held-out text is new sentences.
 */
export function siteDataset(options: SiteDatasetOptions): SiteDataset {
  const trainRng = createRng(options.seed);
  const heldoutRng = trainRng.jumped();
  return {
    train: encodeText(generateText(options.language, options.trainChars, trainRng)),
    heldout: encodeText(generateText(options.language, options.heldoutChars, heldoutRng)),
  };
}

/**
 * Maps site-1..site-n to languages in the fixed order of {@link LANGUAGES}, cycling when there are
 * more sites than languages. Returns a new array of `n` entries; entry i is site-(i+1)'s language.
 */
export function defaultSiteLanguages(n: number): Language[] {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new BuiltinTrainerError(BuiltinErrorCode.InvalidArgument, `site count must be a non-negative integer, got ${n}`, { n });
  }
  return Array.from({ length: n }, (_, i) => LANGUAGES[i % LANGUAGES.length] ?? 'es');
}
