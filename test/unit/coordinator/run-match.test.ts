/**
 * A coordinator's configured run against the run its journal started (coordinator/shell/run-match.ts,
 * issue 19): the same run resumes, more rounds extend it, and any other difference is refused with
 * RUN_CONFIG_MISMATCH naming the field and both values — checked before anything is appended, for
 * the config's run only (a run an admin started is the journal's own run file).
 */
import { describe, expect, it } from 'vitest';
import { auditedConfig } from '../../../coordinator/audit/config.js';
import { coordinatorConfigSchema, runSchema, type ResolvedRun, type RunningConfig } from '../../../coordinator/config.js';
import { CoordinatorError } from '../../../coordinator/core/errors.js';
import { runPlanFromConfig } from '../../../coordinator/shell/plan.js';
import { matchJournaledRun } from '../../../coordinator/shell/run-match.js';
import { checkConfiguredRun, journalRunStart } from '../../../coordinator/shell/run-start.js';
import type { JournalRecord } from '../../../coordinator/state/journal.js';
import type { RunStartedRecord } from '../../../coordinator/state/records.js';
import type { StateStore } from '../../../coordinator/state/store.js';

const RAW_RUN = {
  id: 'run-a',
  rounds: 4,
  minSites: 2,
  expectedSites: ['site-1', 'site-2', 'site-3'],
  strategy: { name: 'diloco', lr: 0.7 },
  train: { steps: 20, batchSize: 32, lr: 0.01 },
  deadlines: { openS: 30, trainingS: 60 },
  secureAggregation: { enabled: false },
};

const CONFIG = {
  federation: 'fed',
  listen: '127.0.0.1:7443',
  tls: { ca: 'ca.crt', cert: 'c.crt', key: 'c.key' },
  stateDir: 'state',
  model: { initial: 'initial.safetensors' },
};

const run = (patch: Record<string, unknown> = {}): ResolvedRun => runSchema.parse({ ...RAW_RUN, ...patch });
const config = (r: ResolvedRun | undefined, extra: Record<string, unknown> = {}) => {
  const parsed = coordinatorConfigSchema.parse({ ...CONFIG, ...extra });
  return r ? { ...parsed, run: r } : parsed;
};

/** The `run-started` record journalRunStart writes for `r` (without the config it kept: older journals). */
function started(r: ResolvedRun, o: { withConfig?: boolean } = {}): RunStartedRecord {
  return {
    type: 'run-started',
    runId: r.id,
    plan: runPlanFromConfig({ run: r }),
    strategy: r.strategy,
    weighting: r.weighting,
    encoding: r.encoding,
    train: r.train,
    initialModelSha256: 'a'.repeat(64),
    ...(r.checkpointDtype ? { checkpointDtype: r.checkpointDtype } : {}),
    // Through JSON, as the journal keeps it.
    ...(o.withConfig === false ? {} : { config: JSON.parse(JSON.stringify(auditedConfig(config(r) as RunningConfig))) as Record<string, unknown> }),
  };
}

const journal = (...bodies: object[]): JournalRecord[] => bodies.map((body, i) => ({ seq: i + 1, ts: 0, prev: '', hash: '', body: body as JournalRecord['body'] }));

function refusal(journaled: ResolvedRun, configured: ResolvedRun, rounds = journaled.rounds) {
  const r = matchJournaledRun({ started: started(journaled), rounds }, configured);
  if (r.ok) throw new Error(`expected a refusal, got ${JSON.stringify(r.value)}`);
  return r;
}

describe('a configured run against the run its journal started', () => {
  it('resumes the same run, whatever order its settings are written in', () => {
    expect(matchJournaledRun({ started: started(run()), rounds: 4 }, run())).toEqual({ ok: true, value: { kind: 'resume' } });
    const reordered = run({ train: { lr: 0.01, batchSize: 32, steps: 20 }, strategy: { lr: 0.7, name: 'diloco' } });
    expect(matchJournaledRun({ started: started(run()), rounds: 4 }, reordered)).toEqual({ ok: true, value: { kind: 'resume' } });
  });

  // The journal keeps the resolved run, which is parsed again: that must give the same run.
  it.each([
    ['secure, with the old name of maxSiteWeight', { secureAggregation: { enabled: true, maxWeight: 640, threshold: 2, clip: 0.5 } }],
    ['token-budgeted', { weighting: 'tokens', train: { budget: { tokens: 1000 }, batch_size: 4, seq_len: 8 } }],
    ['overlapped', { weighting: 'tokens', maxSiteWeight: 5000, train: { budget: { seconds: 10 }, overlap: { mode: 'whole-model', maxAppliedSteps: 4 } } }],
    ['robust, bf16 checkpoints', { aggregator: { name: 'trimmed-mean', trim: 0.2 }, checkpointDtype: 'bf16', encoding: 'int8' }],
  ])('resumes a %s run configured as journaled', (_what, patch) => {
    expect(matchJournaledRun({ started: started(run(patch)), rounds: 4 }, run(patch))).toEqual({ ok: true, value: { kind: 'resume' } });
  });

  it('extends the run when only more rounds are configured, and compares with the rounds after earlier extensions', () => {
    expect(matchJournaledRun({ started: started(run()), rounds: 4 }, run({ rounds: 9 }))).toEqual({ ok: true, value: { kind: 'extend', rounds: 9 } });
    // Journaled with 4, extended to 9: a config of 9 resumes, one of 6 would shorten it.
    expect(matchJournaledRun({ started: started(run()), rounds: 9 }, run({ rounds: 9 }))).toEqual({ ok: true, value: { kind: 'resume' } });
    const shorter = refusal(run(), run({ rounds: 6 }), 9);
    expect(shorter.issues).toEqual(['run.rounds: journal 9, config 6 (a run may be extended, never shortened)']);
  });

  // Each: a change to the configured run, the field named, and the two values quoted.
  const changes: readonly (readonly [string, Record<string, unknown>, string])[] = [
    ['the server learning rate', { strategy: { name: 'diloco', lr: 0.5 } }, 'run.strategy.lr: journal 0.7, config 0.5'],
    ['secure aggregation turned on', { secureAggregation: { enabled: true } }, 'run.secureAggregation.enabled: journal false, config true'],
    ['the weighting', { weighting: 'uniform', maxSiteWeight: 640 }, 'run.weighting: journal "samples", config "uniform"'],
    ['the wire encoding', { encoding: 'int8' }, 'run.encoding: journal "f32", config "int8"'],
    ['a training setting', { train: { steps: 20, batchSize: 32, lr: 0.02 } }, 'run.train.lr: journal 0.01, config 0.02'],
    ['a training setting added', { train: { steps: 20, batchSize: 32, lr: 0.01, warmup: 5 } }, 'run.train.warmup: journal (absent), config 5'],
    ['k of k-of-n', { minSites: 3 }, 'run.minSites: journal 2, config 3'],
    ['the expected sites', { expectedSites: ['site-1', 'site-2'] }, 'run.expectedSites: journal ["site-1","site-2","site-3"], config ["site-1","site-2"]'],
    ['a deadline', { deadlines: { openS: 30, trainingS: 90 } }, 'run.deadlines.trainingS: journal 60, config 90'],
    ['the attempts of a round', { maxAttempts: 9 }, 'run.maxAttempts: journal 5, config 9'],
    ['the aggregator', { aggregator: { name: 'median' } }, 'run.aggregator.name: journal "mean", config "median"'],
    ['the largest site weight', { maxSiteWeight: 10 }, 'run.maxSiteWeight: journal 640, config 10'],
    ['the staleness bound', { maxStaleness: 0 }, 'run.maxStaleness: journal 2, config 0'],
    ['evaluation', { evaluate: false }, 'run.evaluate: journal true, config false'],
    ['the evaluation bound', { evalMaxSamples: 100 }, 'run.evalMaxSamples: journal 1000000000, config 100'],
    ['the checkpoint dtype', { checkpointDtype: 'bf16' }, 'run.checkpointDtype: journal (absent), config "bf16"'],
  ];
  it.each(changes)('refuses %s, naming the field with the journal\'s and the config\'s values', (_what, patch, issue) => {
    const r = refusal(run(), run(patch));
    expect(r.code).toBe('RUN_CONFIG_MISMATCH');
    expect(r.issues).toEqual([issue]);
    expect(r.context).toEqual({ runId: 'run-a', fields: issue.slice(0, issue.indexOf(':')) });
  });

  it('refuses another strategy, naming its parameters that differ with it', () => {
    expect(refusal(run(), run({ strategy: { name: 'fedavg' } })).issues).toEqual([
      'run.strategy.name: journal "diloco", config "fedavg"',
      'run.strategy.lr: journal 0.7, config 1',
      'run.strategy.momentum: journal 0.9, config (absent)',
    ]);
  });

  it('names every differing field at once, the defaults that follow from them included', () => {
    const r = refusal(run(), run({ rounds: 2, train: { steps: 10, batchSize: 32, lr: 0.01 }, secureAggregation: { enabled: true } }));
    // maxSiteWeight defaults to steps × batch size: it changed with the steps.
    expect(r.context['fields']).toBe('run.rounds, run.maxSiteWeight, run.train.steps, run.secureAggregation.enabled');
  });

  it('reads a setting the schema added after the run started as its default, on both sides', () => {
    const record = started(run());
    const { evalMaxSamples: _added, ...older } = record.config!['run'] as Record<string, unknown>;
    expect(matchJournaledRun({ started: { ...record, config: { ...record.config, run: older } }, rounds: 4 }, run())).toEqual({ ok: true, value: { kind: 'resume' } });
  });

  it('compares a journal older than the kept config on the record\'s plan, strategy and training settings', () => {
    const old = started(run(), { withConfig: false });
    expect(matchJournaledRun({ started: old, rounds: 4 }, run({ rounds: 5 }))).toEqual({ ok: true, value: { kind: 'extend', rounds: 5 } });
    const r = matchJournaledRun({ started: old, rounds: 4 }, run({ strategy: { name: 'diloco', lr: 0.5 }, deadlines: { openS: 45, trainingS: 60 } }));
    expect(r).toMatchObject({ ok: false, code: 'RUN_CONFIG_MISMATCH', issues: ['plan.deadlines.open: journal 30000, config 45000', 'strategy.lr: journal 0.7, config 0.5'] });
  });

  it('quotes a long value cut short', () => {
    const r = refusal(run(), run({ train: { steps: 20, batchSize: 32, lr: 0.01, prompt: 'x'.repeat(500) } }));
    expect(r.issues[0]).toMatch(/^run\.train\.prompt: journal \(absent\), config "x{159}… \(502 characters\)$/);
  });
});

describe('the run a (re)started coordinator would drive, checked against its journal', () => {
  const startedA = started(run());

  it('passes the same run, a run never started, an aborted run, and a config without a run', () => {
    expect(() => checkConfiguredRun(journal(startedA), config(run()))).not.toThrow();
    expect(() => checkConfiguredRun(journal(startedA), config(run({ id: 'run-b', minSites: 1 })))).not.toThrow();
    expect(() => checkConfiguredRun(journal(startedA, { type: 'run-aborted', runId: 'run-a', admin: 'x' }), config(run({ minSites: 1 })))).not.toThrow();
    expect(() => checkConfiguredRun(journal(startedA), config(undefined))).not.toThrow();
  });

  it('does not compare what lies outside the run: listen address, limits, log level, model path, members', () => {
    const operational = config(run(), { listen: '0.0.0.0:9443', limits: { idleTimeoutS: 5 }, log: { level: 'debug' }, model: { initial: '/elsewhere/initial.safetensors' }, members: ['site-9'] });
    expect(() => checkConfiguredRun(journal(startedA), operational)).not.toThrow();
  });

  it('refuses a differing run with RUN_CONFIG_MISMATCH naming each field with both values', () => {
    const thrown = (() => {
      try {
        checkConfiguredRun(journal(startedA), config(run({ strategy: { name: 'diloco', lr: 0.5 }, secureAggregation: { enabled: true } })));
      } catch (err) {
        return err;
      }
      throw new Error('not refused');
    })();
    expect(thrown).toBeInstanceOf(CoordinatorError);
    expect(thrown).toMatchObject({ code: 'RUN_CONFIG_MISMATCH', retryable: false, context: { runId: 'run-a', fields: 'run.strategy.lr, run.secureAggregation.enabled' } });
    expect((thrown as Error).message).toContain('run.strategy.lr: journal 0.7, config 0.5; run.secureAggregation.enabled: journal false, config true');
  });

  it("checks a run an admin started against its own run file, never against the config's run", () => {
    const adminRun = { ...RAW_RUN, id: 'admin-run', minSites: 1, maxSiteWeight: 640 };
    const requested = { type: 'run-requested', runId: 'admin-run', run: adminRun, admin: 'admin' };
    const records = journal(startedA, requested, started(runSchema.parse(adminRun)));
    // The config's run-a differs from run-a's journal, but the admin's run is the one driven.
    expect(() => checkConfiguredRun(records, config(run({ minSites: 3 })))).not.toThrow();
    expect(() => checkConfiguredRun(records, config(undefined))).not.toThrow();
  });
});

describe('journalRunStart on a journaled run', () => {
  /** A store holding `records` whose appends are kept. */
  function storeOf(records: JournalRecord[]): { store: StateStore; appended: object[] } {
    const appended: object[] = [];
    const store = {
      records: () => records,
      append: (body: object) => {
        appended.push(body);
        records.push(...journal(...records.map((r) => r.body), body).slice(-1));
        return Promise.resolve(records.at(-1));
      },
    } as unknown as StateStore;
    return { store, appended };
  }

  it('refuses a differing run without appending anything', async () => {
    const { store, appended } = storeOf(journal(started(run())));
    await expect(journalRunStart(store, config(run({ rounds: 8, encoding: 'bf16' })) as RunningConfig)).rejects.toMatchObject({ code: 'RUN_CONFIG_MISMATCH' });
    expect(appended).toEqual([]);
  });

  it('extends a run configured with more rounds and nothing else changed', async () => {
    const { store, appended } = storeOf(journal(started(run())));
    const recovered = await journalRunStart(store, config(run({ rounds: 8 })) as RunningConfig);
    expect(appended).toEqual([{ type: 'run-extended', runId: 'run-a', rounds: 8 }]);
    expect(recovered.rounds).toBe(8);
  });
});
