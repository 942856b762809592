import { describe, expect, it } from 'vitest';
import {
  BuiltinErrorCode,
  TrainingAbortedError,
  VOCAB_SIZE,
  bigramEvalLoss,
  cloneParams,
  createRng,
  evaluate,
  initBuiltinModel,
  resolveBuiltinConfig,
  siteDataset,
  trainShard,
} from '../../../site-agent/builtin/index.js';

const config = resolveBuiltinConfig({});
const site = siteDataset({ language: 'es', trainChars: 60000, heldoutChars: 5000, seed: 21 });

describe('trainShard', () => {
  it('learns from context: held-out loss falls well below ln(V) and below the character bigram', () => {
    const params = initBuiltinModel(config, 1);
    const result = trainShard({ params, config, data: site.train, steps: 300, batchSize: 64, lr: 0.01, rng: createRng(2) });
    const loss = evaluate(result.params, config, site.heldout).loss;
    const bigram = bigramEvalLoss([site.train], [site.heldout], VOCAB_SIZE);
    expect(loss).toBeLessThan(0.4 * Math.log(VOCAB_SIZE));
    // A bigram sees one character; beating it by a wide margin shows the model uses its longer context.
    expect(loss).toBeLessThan(bigram - 0.5);
    expect(result.samples).toBe(300 * 64);
    expect(result.steps).toBe(300);
    expect(result.optimizerState.step).toBe(300);
  });

  it('does not mutate its inputs and is deterministic given a seed', () => {
    const params = initBuiltinModel(config, 1);
    const warm = trainShard({ params, config, data: site.train, steps: 3, batchSize: 8, lr: 0.01, rng: createRng(1) });
    const paramsCopy = cloneParams(params);
    const stateCopy = { step: warm.optimizerState.step, m: cloneParams(warm.optimizerState.m), v: cloneParams(warm.optimizerState.v) };
    const dataCopy = site.train.slice();
    const run = () => trainShard({ params, config, data: site.train, steps: 20, batchSize: 16, lr: 0.01, rng: createRng(99), optimizerState: warm.optimizerState });
    const a = run();
    const b = run();
    for (const [name, t] of params) expect(t).toEqual(paramsCopy.get(name));
    for (const [name, t] of warm.optimizerState.m) expect(t).toEqual(stateCopy.m.get(name));
    for (const [name, t] of warm.optimizerState.v) expect(t).toEqual(stateCopy.v.get(name));
    expect(warm.optimizerState.step).toBe(3);
    expect(site.train).toEqual(dataCopy);
    expect(a.loss).toBe(b.loss);
    expect(a.optimizerState.step).toBe(23);
    for (const [name, t] of a.params) {
      expect(t).toEqual(b.params.get(name));
      expect(t).not.toBe(params.get(name));
    }
  });

  it('reports progress every progressEvery steps', () => {
    const calls: [number, number][] = [];
    trainShard({
      params: initBuiltinModel(config, 1),
      config,
      data: site.train,
      steps: 25,
      batchSize: 8,
      lr: 0.01,
      rng: createRng(1),
      progressEvery: 10,
      onProgress: (step, loss) => calls.push([step, loss]),
    });
    expect(calls.map(([s]) => s)).toEqual([10, 20]);
    for (const [, loss] of calls) expect(Number.isFinite(loss)).toBe(true);
  });

  it('throws TrainingAbortedError between steps once the signal aborts', () => {
    const controller = new AbortController();
    let caught: unknown;
    try {
      trainShard({
        params: initBuiltinModel(config, 1),
        config,
        data: site.train,
        steps: 100,
        batchSize: 8,
        lr: 0.01,
        rng: createRng(1),
        progressEvery: 5,
        onProgress: (step) => {
          if (step === 5) controller.abort(new Error('deadline'));
        },
        signal: controller.signal,
      });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(TrainingAbortedError);
    const aborted = caught as TrainingAbortedError;
    expect(aborted.name).toBe('AbortError');
    expect(aborted.code).toBe('BUILTIN_TRAINING_ABORTED');
    expect(aborted.completedSteps).toBe(5);
    expect((aborted.cause as Error).message).toBe('deadline');
  });

  it('rejects invalid hyper-parameters and too-short shards', () => {
    const params = initBuiltinModel(config, 1);
    const base = { params, config, data: site.train, steps: 1, batchSize: 8, lr: 0.01, rng: createRng(1) };
    expect(() => trainShard({ ...base, lr: 0 })).toThrow(expect.objectContaining({ code: BuiltinErrorCode.InvalidArgument }));
    expect(() => trainShard({ ...base, batchSize: 0 })).toThrow(expect.objectContaining({ code: BuiltinErrorCode.InvalidArgument }));
    expect(() => trainShard({ ...base, data: new Uint8Array(3) })).toThrow(expect.objectContaining({ code: BuiltinErrorCode.DatasetTooShort }));
  });

  it('clips the gradient norm when asked', () => {
    const params = initBuiltinModel(config, 1);
    const base = { params, config, data: site.train, steps: 5, batchSize: 16, lr: 0.01 };
    const clipped = trainShard({ ...base, rng: createRng(4), gradClip: 1e-6 });
    const free = trainShard({ ...base, rng: createRng(4) });
    // Adam normalises step sizes, so clipping changes the result only through eps; it must still run and differ.
    expect(clipped.params.get('out.bias')).not.toEqual(free.params.get('out.bias'));
  });
});
