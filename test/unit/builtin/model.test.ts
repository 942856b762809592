import { describe, expect, it } from 'vitest';
import {
  BuiltinErrorCode,
  BuiltinTrainerError,
  BuiltinWorkspace,
  VOCAB_SIZE,
  builtinTensorSpecs,
  evaluate,
  forwardBackward,
  initBuiltinModel,
  resolveBuiltinConfig,
  siteDataset,
} from '../../../site-agent/builtin/index.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BuiltinTrainerError);
    return (err as BuiltinTrainerError).code;
  }
  return undefined;
}

describe('builtin model', () => {
  it('lists its tensors in fixed order with the documented shapes', () => {
    const config = resolveBuiltinConfig({});
    expect(config).toEqual({ contextLength: 6, embedDim: 16, hidden: 128 });
    expect(builtinTensorSpecs(config)).toEqual([
      { name: 'embed.weight', dtype: 'F32', shape: [VOCAB_SIZE, 16] },
      { name: 'hidden.weight', dtype: 'F32', shape: [128, 96] },
      { name: 'hidden.bias', dtype: 'F32', shape: [128] },
      { name: 'out.weight', dtype: 'F32', shape: [VOCAB_SIZE, 128] },
      { name: 'out.bias', dtype: 'F32', shape: [VOCAB_SIZE] },
    ]);
  });

  it('initialises deterministically with a loss close to ln(V)', () => {
    const config = resolveBuiltinConfig({});
    const a = initBuiltinModel(config, 3);
    const b = initBuiltinModel(config, 3);
    const c = initBuiltinModel(config, 4);
    expect([...a.keys()]).toEqual(builtinTensorSpecs(config).map((s) => s.name));
    for (const [name, t] of a) expect(t).toEqual(b.get(name));
    expect(a.get('hidden.weight')).not.toEqual(c.get('hidden.weight'));
    const { heldout } = siteDataset({ language: 'en', trainChars: 10, heldoutChars: 2000, seed: 1 });
    const { loss, samples } = evaluate(a, config, heldout);
    expect(samples).toBe(2000);
    expect(Math.abs(loss - Math.log(VOCAB_SIZE))).toBeLessThan(0.05);
  });

  it('computes gradients that match central finite differences', () => {
    const config = resolveBuiltinConfig({ contextLength: 3, embedDim: 4, hidden: 8 });
    const params = initBuiltinModel(config, 12);
    // Larger output weights make every gradient entry non-negligible.
    const out = params.get('out.weight')!;
    for (let i = 0; i < out.length; i++) out[i] = out[i]! * 20;
    const { train } = siteDataset({ language: 'fr', trainChars: 400, heldoutChars: 0, seed: 2 });
    const positions = [0, 1, 2, 5, 17, 40, 99, 200, 333, 399];
    const ws = new BuiltinWorkspace(config);
    const { gradients } = forwardBackward(params, config, train, positions, ws);
    const analytic = new Map([...gradients].map(([n, g]) => [n, g.slice()]));
    const lossAt = (): number => {
      const probe = new BuiltinWorkspace(config);
      return forwardBackward(params, config, train, positions, probe).loss;
    };
    let worst = 0;
    let checked = 0;
    for (const [name, t] of params) {
      const g = analytic.get(name)!;
      const step = Math.max(1, Math.floor(t.length / 25));
      for (let i = 0; i < t.length; i += step) {
        const orig = t[i]!;
        t[i] = orig + 1e-3;
        const up = t[i]!;
        const lPlus = lossAt();
        t[i] = orig - 1e-3;
        const down = t[i]!;
        const lMinus = lossAt();
        t[i] = orig;
        // Divide by the perturbation actually stored in float32; the loss itself is computed in float64.
        const numeric = (lPlus - lMinus) / (up - down);
        const err = Math.abs(numeric - g[i]!) / Math.max(1e-4, Math.abs(numeric) + Math.abs(g[i]!));
        worst = Math.max(worst, err);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(60);
    expect(worst).toBeLessThan(1e-3);
  });

  it('refuses to evaluate an empty or too-short dataset', () => {
    const config = resolveBuiltinConfig({});
    const params = initBuiltinModel(config, 1);
    expect(codeOf(() => evaluate(params, config, new Uint8Array(0)))).toBe(BuiltinErrorCode.DatasetTooShort);
    expect(codeOf(() => evaluate(params, config, new Uint8Array(6)))).toBe(BuiltinErrorCode.DatasetTooShort);
    expect(() => evaluate(params, config, new Uint8Array(6))).toThrow(/needs at least contextLength \+ 1 = 7/);
    expect(evaluate(params, config, new Uint8Array(7)).samples).toBe(7);
  });

  it('rejects parameters whose shapes do not match the config, and tokens outside the vocabulary', () => {
    const config = resolveBuiltinConfig({});
    const params = initBuiltinModel(config, 1);
    const data = new Uint8Array(100);
    params.set('hidden.bias', new Float32Array(3));
    expect(codeOf(() => evaluate(params, config, data))).toBe(BuiltinErrorCode.ParamShapeMismatch);
    const good = initBuiltinModel(config, 1);
    data[50] = VOCAB_SIZE;
    expect(codeOf(() => evaluate(good, config, data))).toBe(BuiltinErrorCode.TokenOutOfRange);
  });

  it('evaluates evenly spaced positions when maxPositions is smaller than the data', () => {
    const config = resolveBuiltinConfig({});
    const params = initBuiltinModel(config, 1);
    const { heldout } = siteDataset({ language: 'de', trainChars: 10, heldoutChars: 5000, seed: 1 });
    expect(evaluate(params, config, heldout, 500).samples).toBe(500);
    expect(codeOf(() => evaluate(params, config, heldout, 0))).toBe(BuiltinErrorCode.InvalidArgument);
  });
});
