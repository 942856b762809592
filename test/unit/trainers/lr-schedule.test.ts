import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { TORCH_PYTHON, torchAvailable } from './require-torch.js';

// torch_shard.py's learning-rate schedule (also used by bench/fixtures/central_torch.py): warm-up per
// shard, then one cosine over the run's inner steps, counted across rounds.
const TRAINERS = fileURLToPath(new URL('../../../site-agent/trainers/', import.meta.url));
const torch = torchAvailable();

function lrAt(calls: [number, number, number, number, number][]): number[] {
  const code = `import sys, json; sys.path.insert(0, ${JSON.stringify(TRAINERS)}); import torch_shard as t
print(json.dumps([t.lr_at(1e-3, *c) for c in json.loads(sys.argv[1])]))`;
  const r = spawnSync(TORCH_PYTHON, ['-c', code, JSON.stringify(calls)], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as number[];
}

describe.skipIf(!torch.ok)('the trainer learning-rate schedule', () => {
  it('decays by cosine from lr to min_ratio·lr over decay_steps run steps, and stays constant without decay', () => {
    // (step in shard, warmup, run step, decay steps, min ratio)
    const [start, middle, end, after, constant, warm] = lrAt([
      [0, 0, 0, 600, 0.1],
      [10, 0, 300, 600, 0.1],
      [49, 0, 600, 600, 0.1],
      [49, 0, 900, 600, 0.1],
      [5, 0, 350, 0, 0.1],
      [0, 4, 0, 0, 0.1],
    ]);
    expect(start).toBeCloseTo(1e-3, 12);
    expect(middle).toBeCloseTo(0.55e-3, 12);
    expect(end).toBeCloseTo(1e-4, 12);
    expect(after).toBeCloseTo(1e-4, 12);
    expect(constant).toBe(1e-3);
    expect(warm).toBeCloseTo(0.25e-3, 12);
  });
});
