import { describe, expect, it } from 'vitest';
import {
  BuiltinErrorCode,
  BuiltinTrainerError,
  CHARSET,
  LANGUAGES,
  VOCAB_SIZE,
  createRng,
  decodeTokens,
  defaultSiteLanguages,
  encodeText,
  generateText,
  siteDataset,
} from '../../../site-agent/builtin/index.js';

function unigram(tokens: Uint8Array): Float64Array {
  const p = new Float64Array(VOCAB_SIZE);
  for (const t of tokens) p[t] = (p[t] ?? 0) + 1 / tokens.length;
  return p;
}

function totalVariation(p: Float64Array, q: Float64Array): number {
  let d = 0;
  for (let i = 0; i < p.length; i++) d += Math.abs((p[i] ?? 0) - (q[i] ?? 0));
  return d / 2;
}

describe('corpus', () => {
  it('generates the same text for the same seed and different text for another seed', () => {
    const a = generateText('es', 2000, createRng(5));
    const b = generateText('es', 2000, createRng(5));
    const c = generateText('es', 2000, createRng(6));
    expect(a).toBe(b);
    expect(a).not.toBe(c);
    expect([...a]).toHaveLength(2000);
  });

  it('uses only CHARSET characters in every language', () => {
    const allowed = new Set(CHARSET);
    for (const language of LANGUAGES) {
      const text = generateText(language, 20000, createRng(1));
      const outside = [...new Set(text)].filter((ch) => !allowed.has(ch));
      expect(outside, language).toEqual([]);
      expect(decodeTokens(encodeText(text))).toBe(text);
    }
  });

  it('gives languages clearly different character statistics', () => {
    const stats = new Map(['es', 'ca', 'en', 'fr', 'de', 'it'].map((l) => [l, unigram(encodeText(generateText(l, 30000, createRng(3))))]));
    const same = totalVariation(stats.get('es')!, unigram(encodeText(generateText('es', 30000, createRng(4)))));
    for (const [la, pa] of stats) {
      for (const [lb, pb] of stats) {
        if (la >= lb) continue;
        expect(totalVariation(pa, pb), `${la} vs ${lb}`).toBeGreaterThan(Math.max(0.08, 4 * same));
      }
    }
  });

  it('rejects a character outside CHARSET with its code and offset', () => {
    let caught: unknown;
    try {
      encodeText('hola!');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(BuiltinTrainerError);
    expect((caught as BuiltinTrainerError).code).toBe(BuiltinErrorCode.CharNotInCharset);
    expect((caught as BuiltinTrainerError).context).toEqual({ char: '!', offset: 4 });
  });

  it('rejects an unknown language', () => {
    expect(() => generateText('xx', 10, createRng(1))).toThrow(expect.objectContaining({ code: BuiltinErrorCode.UnknownLanguage }));
  });

  it('builds site data deterministically with held-out text distinct from training text', () => {
    const a = siteDataset({ language: 'ca', trainChars: 5000, heldoutChars: 1000, seed: 11 });
    const b = siteDataset({ language: 'ca', trainChars: 5000, heldoutChars: 1000, seed: 11 });
    expect(a.train).toEqual(b.train);
    expect(a.heldout).toEqual(b.heldout);
    expect(a.train).toHaveLength(5000);
    expect(a.heldout).toHaveLength(1000);
    expect(decodeTokens(a.train).slice(0, 1000)).not.toBe(decodeTokens(a.heldout));
  });

  it('assigns site languages in a fixed cycling order', () => {
    expect(defaultSiteLanguages(4)).toEqual(['es', 'ca', 'en', 'fr']);
    const ten = defaultSiteLanguages(10);
    expect(ten.slice(0, 6)).toEqual(['es', 'ca', 'en', 'fr', 'de', 'it']);
    expect(ten[LANGUAGES.length]).toBe('es');
  });
});
