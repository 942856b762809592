import { describe, expect, it } from 'vitest';
import {
  BuiltinErrorCode,
  VOCAB_SIZE,
  bigramEvalLoss,
  evaluate,
  initBuiltinModel,
  resolveBuiltinConfig,
  siteDataset,
  trainCentral,
} from '../../../site-agent/builtin/index.js';

describe('bigram baseline', () => {
  it('scores held-out text well below ln(V) and worse on another language', () => {
    const es = siteDataset({ language: 'es', trainChars: 30000, heldoutChars: 3000, seed: 1 });
    const de = siteDataset({ language: 'de', trainChars: 30000, heldoutChars: 3000, seed: 2 });
    const own = bigramEvalLoss([es.train], [es.heldout], VOCAB_SIZE);
    const other = bigramEvalLoss([es.train], [de.heldout], VOCAB_SIZE);
    expect(own).toBeLessThan(0.6 * Math.log(VOCAB_SIZE));
    expect(other).toBeGreaterThan(own + 0.3);
  });

  it('predicts a perfectly repetitive text almost exactly', () => {
    const text = new Uint8Array(1000).map((_, i) => 4 + (i % 3));
    expect(bigramEvalLoss([text], [text], VOCAB_SIZE, 1e-4)).toBeLessThan(0.02);
  });

  it('refuses empty held-out sets', () => {
    expect(() => bigramEvalLoss([new Uint8Array(10)], [], VOCAB_SIZE)).toThrow(expect.objectContaining({ code: BuiltinErrorCode.DatasetTooShort }));
  });
});

describe('trainCentral', () => {
  it('trains one model on the union of sites deterministically', () => {
    const config = resolveBuiltinConfig({});
    const sites = ['es', 'en'].map((language, i) => siteDataset({ language, trainChars: 20000, heldoutChars: 2000, seed: 10 + i }));
    const run = () => trainCentral({ config, datasets: sites.map((s) => s.train), totalSamples: 100 * 32, batchSize: 32, lr: 0.01, seed: 5 });
    const a = run();
    const b = run();
    expect(a.steps).toBe(100);
    expect(a.samples).toBe(3200);
    expect(a.params.get('out.weight')).toEqual(b.params.get('out.weight'));
    const init = initBuiltinModel(config, 5);
    for (const s of sites) {
      expect(evaluate(a.params, config, s.heldout).loss).toBeLessThan(evaluate(init, config, s.heldout).loss - 1);
    }
  });
});
