/**
 * `fedhpc simulate --site-speeds` and `--budget-s` (issue 16): what they resolve to, and a usage
 * error naming the option for every bad value.
 */
import { describe, expect, it } from 'vitest';
import { KILL_LEADER_PHASES, pairOptions, speedOptions } from '../../../cli/simulate-options.js';
import { UsageError } from '../../../cli/usage-error.js';
import { simulatedTraining, STANDIN_STEP_MS } from '../../../simulate/index.js';

const none = { sites: undefined, runner: undefined, siteSpeeds: undefined, budgetS: undefined };

describe('simulate --site-speeds and --budget-s', () => {
  it('give stand-in sites their speeds (the site count defaults to theirs) and every round a time budget', () => {
    expect(speedOptions(none)).toEqual({ sites: 4, runner: 'builtin', siteSpeeds: undefined, budgetS: undefined, overlap: false });
    expect(speedOptions({ ...none, siteSpeeds: '1,2,3', budgetS: '2.5' })).toEqual({ sites: 3, runner: 'standin', siteSpeeds: [1, 2, 3], budgetS: 2.5, overlap: false });
    expect(speedOptions({ ...none, siteSpeeds: '1,2,3', budgetS: '2', overlap: true })).toMatchObject({ runner: 'standin', budgetS: 2, overlap: true });
    expect(speedOptions({ ...none, sites: 2, siteSpeeds: '0.5, 1.5', runner: 'standin' })).toMatchObject({ sites: 2, siteSpeeds: [0.5, 1.5] });
    expect(speedOptions({ ...none, budgetS: '3' })).toMatchObject({ runner: 'builtin', budgetS: 3 });
    expect(speedOptions({ ...none, runner: 'standin' })).toMatchObject({ runner: 'standin', siteSpeeds: undefined });
  });

  it.each([
    [{ siteSpeeds: '1,0,3' }, /--site-speeds must be positive numbers .*"0"/],
    [{ siteSpeeds: '1,-2' }, /--site-speeds must be positive numbers .*"-2"/],
    [{ siteSpeeds: '1,,3' }, /--site-speeds must be positive numbers/],
    [{ siteSpeeds: 'fast' }, /--site-speeds must be positive numbers .*"fast"/],
    [{ siteSpeeds: '1,Infinity' }, /--site-speeds must be positive numbers/],
    [{ siteSpeeds: '1,2,3', sites: 4 }, /--site-speeds gives 3 speeds for --sites 4/],
    [{ siteSpeeds: '1,2', runner: 'builtin' }, /--site-speeds sets the speeds of stand-in trainers .*--runner builtin/],
    [{ siteSpeeds: '1,2', overlap: true }, /--overlap needs --budget-s/],
    [{ budgetS: '2', overlap: true }, /--overlap needs persistent trainers: the stand-in trainer/],
    [{ siteSpeeds: '1,2', budgetS: '2', overlap: true, fragments: '4' }, /--fragments 4: fragment-wise syncs .* are not built/],
    [{ budgetS: '0' }, /--budget-s must be a number of seconds above 0/],
    [{ budgetS: '-5' }, /--budget-s must be a number of seconds above 0/],
    [{ budgetS: 'soon' }, /--budget-s must be a number of seconds above 0/],
    [{ budgetS: '3601' }, /at most 3600/],
    [{ budgetS: '10', runner: 'command' }, /--budget-s works with the builtin and stand-in trainers, not --runner command/],
    [{ runner: 'gpu' }, /--runner must be one of builtin, standin, command, slurm/],
  ])('refuses %j with a usage error naming the option', (bad, message) => {
    const run = (): unknown => speedOptions({ ...none, ...bad });
    expect(run).toThrow(UsageError);
    expect(run).toThrow(message);
  });

  it('sizes a budgeted run: token weighting, a training deadline past the budget, and the most tokens an honest site can reach', () => {
    const standin = simulatedTraining({ max_steps: 20, batch_size: 8, seq_len: 256 }, 2, { speeds: [1, 2, 3], stepMs: STANDIN_STEP_MS });
    // The fastest site (speed 3) starts at most ceil(2000 * 3 / 50) = 120 steps in 2 s; one batch more is allowed.
    expect(standin).toEqual({ train: { batch_size: 8, seq_len: 256, budget: { seconds: 2 } }, weighting: 'tokens', maxSiteWeight: 121 * 8 * 256, trainingS: 120 });
    expect(simulatedTraining({ steps: 50, batchSize: 256, lr: 0.01 }, 300, undefined)).toEqual({
      train: { batchSize: 256, lr: 0.01, budget: { seconds: 300 } },
      weighting: 'tokens',
      maxSiteWeight: 300_001 * 256,
      trainingS: 360,
    });
    expect(simulatedTraining({ steps: 50 }, undefined, undefined)).toEqual({ train: { steps: 50 }, trainingS: 120 });
  });
});

describe('simulate --coordinators, --nats-cluster and --kill-leader-at', () => {
  const one = { coordinators: undefined, natsCluster: undefined, killLeaderAt: undefined, containers: false };

  it('resolve to a pair over 3 NATS nodes, the kill armed on entering the phase; one coordinator by default', () => {
    expect(pairOptions(one)).toBeUndefined();
    expect(pairOptions({ ...one, coordinators: '1' })).toBeUndefined();
    expect(pairOptions({ ...one, coordinators: '2' })).toEqual({ natsNodes: 3, killLeaderAt: undefined });
    expect(pairOptions({ ...one, coordinators: '2', natsCluster: '3', killLeaderAt: 'upload' })).toEqual({ natsNodes: 3, killLeaderAt: 'phase.upload' });
    expect(KILL_LEADER_PHASES).toEqual(expect.arrayContaining(['training', 'upload', 'aggregate', 'commit']));
  });

  it.each([
    [{ coordinators: '3' }, /--coordinators must be 1 or 2/],
    [{ coordinators: '0' }, /--coordinators must be 1 or 2/],
    [{ coordinators: '2', natsCluster: '1' }, /--nats-cluster must be 3: .*quorum/],
    [{ coordinators: '2', natsCluster: '5' }, /--nats-cluster must be 3/],
    [{ natsCluster: '3' }, /--nats-cluster .* with --coordinators 2/],
    [{ killLeaderAt: 'upload' }, /--kill-leader-at .* with --coordinators 2/],
    [{ coordinators: '1', killLeaderAt: 'upload' }, /--kill-leader-at .* with --coordinators 2/],
    [{ coordinators: '2', killLeaderAt: 'lunch' }, /--kill-leader-at must be one of training, upload/],
    [{ coordinators: '2', containers: true }, /--coordinators 2 runs the pair as local processes, not with --containers/],
  ])('refuses %j with a usage error naming the option', (bad, message) => {
    const run = (): unknown => pairOptions({ ...one, ...bad });
    expect(run).toThrow(UsageError);
    expect(run).toThrow(message);
  });
});
