/**
 * The options of `npm run bench -- convergence-torch`: the default mode as it was, and
 * `--heterogeneous SPEEDS [--seeds N]`, whose plan turns speeds into token budgets that the
 * fixed-step run can match with equal steps per site.
 */
import { describe, expect, it } from 'vitest';
import { ConvergenceTorchUsageError, DEFAULTS, DEFAULT_CENTRAL_LRS, HETEROGENEOUS_DEFAULTS, heterogeneousPlan, parseConvergenceTorchArgs } from '../../../bench/convergence-torch-args.js';

function usageError(args: string[]): ConvergenceTorchUsageError {
  try {
    parseConvergenceTorchArgs(args);
  } catch (err) {
    expect(err).toBeInstanceOf(ConvergenceTorchUsageError);
    expect((err as ConvergenceTorchUsageError).code).toBe('BENCH_USAGE');
    return err as ConvergenceTorchUsageError;
  }
  throw new Error(`parsed ${args.join(' ')} without an error`);
}

describe('convergence-torch options', () => {
  it('keeps the default mode: 4 sites, 12 rounds × H 50, the full central sweep, no heterogeneous plan', () => {
    const s = parseConvergenceTorchArgs([]);
    expect(s).toMatchObject({ ...DEFAULTS, centralLrs: [...DEFAULT_CENTRAL_LRS], secure: true, heterogeneous: undefined });
  });

  it('--heterogeneous 1,2,3 sets 3 sites, its own rounds, steps, seeds and central sweep, and plans budgets 8:16:24 against 16 fixed steps', () => {
    const s = parseConvergenceTorchArgs(['--heterogeneous', '1,2,3']);
    expect(s).toMatchObject({ sites: 3, rounds: HETEROGENEOUS_DEFAULTS.rounds, steps: 24, centralLrs: [...HETEROGENEOUS_DEFAULTS.centralLrs] });
    expect(s.heterogeneous?.seeds).toBe(3);
    expect(s.heterogeneous?.plan).toMatchObject({ budgetTokens: 24 * 8 * 64, budgetedSteps: [8, 16, 24], fixedSteps: 16, stepTokens: 512 });
    expect(s.heterogeneous?.plan.scales).toEqual([1 / 3, 2 / 3, 1]);
  });

  it('takes explicit rounds, steps, seeds and central lr over the heterogeneous defaults', () => {
    const s = parseConvergenceTorchArgs(['--heterogeneous=1,2,3', '--seeds', '1', '--rounds', '2', '--steps', '6', '--central-lr', '5e-3', '--sites', '3']);
    expect(s).toMatchObject({ rounds: 2, steps: 6, centralLrs: [5e-3] });
    expect(s.heterogeneous).toMatchObject({ seeds: 1, plan: { budgetedSteps: [2, 4, 6], fixedSteps: 4 } });
  });

  it.each([
    [['--heterogeneous', '1,0,3'], /--heterogeneous needs a positive number, got 0/],
    [['--heterogeneous', '1,x'], /--heterogeneous needs a positive number, got x/],
    [['--heterogeneous', '2'], /at least 2 speeds/],
    [['--heterogeneous', '1,2,3', '--sites', '4'], /--sites 4 disagrees with 3 speeds/],
    [['--heterogeneous', '1,2,3', '--seeds', '0'], /--seeds needs a positive integer, got 0/],
    [['--heterogeneous', '1,2,3', '--seeds', '1.5'], /--seeds needs a positive integer/],
    [['--heterogeneous', '1,2,3', '--min-lr-ratio', '0.1'], /--min-lr-ratio does not apply with --heterogeneous/],
    [['--heterogeneous', '1,2,3', '--steps', '26'], /9\+18\+26 = 53 steps a round, which 3 sites cannot share equally/],
    [['--heterogeneous', '1,1,3', '--steps', '3'], /1\+1\+3 = 5 steps a round, which 3 sites cannot share equally/],
    [['--seeds', '3'], /--seeds needs --heterogeneous/],
    [['--bogus'], /unknown option --bogus/],
  ])('refuses %j', (args, message) => {
    expect(usageError(args).message).toMatch(message);
  });

  it('plans a site that the rounding leaves between batches the steps torch_shard.py takes: ⌈⌊T·f + ½⌋ / batch⌉', () => {
    // T = 10 steps of 4 tokens: 0.25 → 10 tokens → 3 steps; 0.75 → 30 tokens → 8 steps; 1 → 10 steps: 21 steps, 7 each.
    const plan = heterogeneousPlan([1, 3, 4], 10, 2, 2);
    expect(plan).toEqual({ ok: true, value: expect.objectContaining({ budgetTokens: 40, budgetedSteps: [3, 8, 10], fixedSteps: 7 }) });
  });
});
