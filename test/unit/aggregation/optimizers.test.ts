import { describe, expect, it } from 'vitest';
import {
  AggregationError,
  type OptimizerOptions,
  OPTIMIZER_NAMES,
  createOptimizer,
  optimizerDefaults,
  parseOptimizerOptions,
} from '../../../aggregation/index.js';

// Two server steps on θ₀ = [1, −2] with mean deltas Δ₁ = [0.5, 0.25], Δ₂ = [−0.25, 0.5], so
// g₁ = [−0.5, −0.25], g₂ = [0.25, −0.5]. Expected values worked by hand (formulas beside each).
const DELTAS = [Float32Array.of(0.5, 0.25), Float32Array.of(-0.25, 0.5)];

function run(options: OptimizerOptions): { thetas: number[][]; states: Record<string, number[]>[] } {
  const opt = createOptimizer(options);
  const theta = Float32Array.of(1, -2);
  const state = Object.fromEntries(opt.stateSlots.map((s) => [s, new Float32Array(2)]));
  const thetas: number[][] = [];
  const states: Record<string, number[]>[] = [];
  DELTAS.forEach((delta, i) => {
    opt.apply(theta, delta, state, i + 1);
    thetas.push(Array.from(theta));
    states.push(Object.fromEntries(Object.entries(state).map(([k, v]) => [k, Array.from(v)])));
  });
  return { thetas, states };
}

function expectClose(actual: number[], expected: number[]): void {
  expect(actual.length).toBe(expected.length);
  actual.forEach((a, i) => expect(a).toBeCloseTo(expected[i]!, 6));
}

describe('server optimizers', () => {
  it('FedAvg: θ ← θ − lr·g', () => {
    const { thetas } = run({ name: 'fedavg' });
    expectClose(thetas[0]!, [1.5, -1.75]); // 1 + 0.5, −2 + 0.25
    expectClose(thetas[1]!, [1.25, -1.25]);
    expectClose(run({ name: 'fedavg', lr: 0.5 }).thetas[0]!, [1.25, -1.875]);
  });

  it('FedAvgM: v ← μv + g; θ ← θ − lr·v', () => {
    const { thetas, states } = run({ name: 'fedavgm' });
    expectClose(states[0]!.momentum!, [-0.5, -0.25]);
    expectClose(thetas[0]!, [1.5, -1.75]);
    expectClose(states[1]!.momentum!, [-0.2, -0.725]); // 0.9·(−0.5) + 0.25, 0.9·(−0.25) − 0.5
    expectClose(thetas[1]!, [1.7, -1.025]); // 1.5 + 0.2, −1.75 + 0.725
  });

  it('DiLoCo: v ← μv + g; θ ← θ − lr(g + μv) with lr 0.7, μ 0.9', () => {
    const { thetas, states } = run({ name: 'diloco' });
    expectClose(thetas[0]!, [1.665, -1.6675]); // 1 − 0.7(−0.5 − 0.45), −2 − 0.7(−0.25 − 0.225)
    expectClose(states[1]!.momentum!, [-0.2, -0.725]);
    expectClose(thetas[1]!, [1.616, -0.86075]); // 1.665 − 0.7(0.25 − 0.18), −1.6675 − 0.7(−0.5 − 0.6525)
  });

  it('FedAdam: m, v moments; θ ← θ − lr·m/(√v + τ)', () => {
    const { thetas, states } = run({ name: 'fedadam' });
    expectClose(states[0]!.m!, [-0.05, -0.025]); // 0.1·g
    expectClose(states[0]!.v!, [0.0025, 0.000625]); // 0.01·g²
    expectClose(thetas[0]!, [1 + 0.0005 / 0.051, -2 + 0.00025 / 0.026]);
    expectClose(states[1]!.m!, [-0.02, -0.0725]); // 0.9·(−0.05) + 0.025, 0.9·(−0.025) − 0.05
    expectClose(states[1]!.v!, [0.0031, 0.00311875]); // 0.99·0.0025 + 0.01·0.0625, 0.99·0.000625 + 0.01·0.25
    expectClose(thetas[1]!, [thetas[0]![0]! + 0.0002 / (Math.sqrt(0.0031) + 0.001), thetas[0]![1]! + 0.000725 / (Math.sqrt(0.00311875) + 0.001)]);
  });

  it('FedYogi: v ← v − (1−β2)g²·sign(v − g²)', () => {
    const { thetas, states } = run({ name: 'fedyogi' });
    expectClose(states[0]!.v!, [0.0025, 0.000625]); // from 0: v − 0.01g²·(−1)
    expectClose(states[1]!.v!, [0.003125, 0.003125]); // 0.0025 + 0.01·0.0625, 0.000625 + 0.01·0.25
    expectClose(thetas[1]!, [thetas[0]![0]! + 0.0002 / (Math.sqrt(0.003125) + 0.001), thetas[0]![1]! + 0.000725 / (Math.sqrt(0.003125) + 0.001)]);
  });

  it('FedAdagrad: v ← v + g²', () => {
    const { thetas, states } = run({ name: 'fedadagrad' });
    expectClose(states[0]!.v!, [0.25, 0.0625]);
    expectClose(thetas[0]!, [1 + 0.0005 / 0.501, -2 + 0.00025 / 0.251]);
    expectClose(states[1]!.v!, [0.3125, 0.3125]);
    expectClose(thetas[1]!, [thetas[0]![0]! + 0.0002 / (Math.sqrt(0.3125) + 0.001), thetas[0]![1]! + 0.000725 / (Math.sqrt(0.3125) + 0.001)]);
  });

  it('a one-site FedAvg round with lr 1 reproduces the local weights bit for bit', () => {
    const n = 10_000;
    // Trained weights: |w| in [0.01, 0.06] with either sign, moved by ~1e-4 (so local − global is exact in f32).
    const global = new Float32Array(n).map((_, i) => (i % 2 === 0 ? 1 : -1) * (0.01 + Math.abs(Math.sin(i)) * 0.05));
    const local = new Float32Array(n).map((_, i) => global[i]! + Math.cos(i * 7) * 1e-4);
    const meanDelta = new Float32Array(n).map((_, i) => local[i]! - global[i]!); // fround on store
    createOptimizer({ name: 'fedavg' }).apply(global, meanDelta, {}, 1);
    expect(Buffer.from(global.buffer).equals(Buffer.from(local.buffer))).toBe(true);
  });

  it('resolves defaults and lists them for printing', () => {
    expect(createOptimizer({ name: 'diloco' }).params).toEqual({ lr: 0.7, momentum: 0.9 });
    expect(createOptimizer({ name: 'fedadam', lr: 0.1 }).params).toEqual({ lr: 0.1, beta1: 0.9, beta2: 0.99, tau: 1e-3 });
    expect(Object.keys(optimizerDefaults())).toEqual([...OPTIMIZER_NAMES]);
    expect(optimizerDefaults().fedavgm).toEqual({ lr: 1, momentum: 0.9 });
    expect(createOptimizer({ name: 'fedyogi' }).stateSlots).toEqual(['m', 'v']);
    expect(createOptimizer({ name: 'fedavg' }).stateSlots).toEqual([]);
  });

  it('rejects bad options with OPTIONS_INVALID naming each field, never clamping', () => {
    const bad = parseOptimizerOptions({ name: 'fedadam', lr: -1, beta2: 1, momentum: 0.9 });
    expect(bad.ok).toBe(false);
    if (!bad.ok) {
      expect(bad.code).toBe('OPTIONS_INVALID');
      expect(bad.issues).toHaveLength(3);
      expect(bad.issues.join('\n')).toMatch(/lr[\s\S]*beta2[\s\S]*momentum/);
    }
    expect(parseOptimizerOptions({ name: 'sgd' }).ok).toBe(false);
    expect(() => createOptimizer({ name: 'diloco', lr: Number.NaN })).toThrow(AggregationError);
    expect(() => createOptimizer({ name: 'diloco', momentum: 1 })).toThrow(expect.objectContaining({ code: 'OPTIONS_INVALID' }));
  });

  it('refuses mismatched slices, missing state and a step below 1', () => {
    const opt = createOptimizer({ name: 'fedadam' });
    const codeOf = (f: () => void): string | undefined => {
      try {
        f();
      } catch (error) {
        return error instanceof AggregationError ? error.code : 'other';
      }
      return undefined;
    };
    const two = () => new Float32Array(2);
    expect(codeOf(() => opt.apply(two(), new Float32Array(3), { m: two(), v: two() }, 1))).toBe('TENSOR_MISMATCH');
    expect(codeOf(() => opt.apply(two(), two(), { m: two() }, 1))).toBe('TENSOR_MISMATCH');
    expect(codeOf(() => opt.apply(two(), two(), { m: two(), v: two() }, 0))).toBe('OUT_OF_RANGE');
  });
});
