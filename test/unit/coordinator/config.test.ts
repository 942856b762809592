import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../../common/config-file.js';
import { defaultMaxSiteWeight, loadCoordinatorConfig, runSchema, secureThreshold, tokenCap, trainOverlap } from '../../../coordinator/config.js';
import { runPlanFromConfig } from '../../../coordinator/shell/plan.js';

let dir: string;
let file: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fedhpc-config-'));
  await mkdir(join(dir, 'etc'));
  file = join(dir, 'etc', 'coordinator.json');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function valid(): Record<string, unknown> {
  return {
    federation: 'fed-1',
    listen: '127.0.0.1:7443',
    tls: { ca: 'pki/ca.pem', cert: 'pki/coordinator.pem', key: '/abs/coordinator.key' },
    stateDir: '../state',
    model: { initial: 'models/init.safetensors' },
    run: { id: 'run-1', rounds: 3, minSites: 2, maxSiteWeight: 1000 },
  };
}

async function write(config: unknown): Promise<void> {
  await writeFile(file, typeof config === 'string' ? config : JSON.stringify(config));
}

function configError(): ConfigError {
  try {
    loadCoordinatorConfig(file);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    const err = e as ConfigError;
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.file).toBe(file);
    expect(err.message).toContain(file);
    return err;
  }
  throw new Error('config was accepted');
}

describe('loadCoordinatorConfig', () => {
  it('resolves relative paths against the file’s folder, fills defaults and freezes the result', async () => {
    await write(valid());
    const c = loadCoordinatorConfig(file);
    expect(c.tls).toEqual({
      ca: join(dir, 'etc', 'pki', 'ca.pem'),
      cert: join(dir, 'etc', 'pki', 'coordinator.pem'),
      key: '/abs/coordinator.key',
    });
    expect(c.stateDir).toBe(join(dir, 'state'));
    expect(c.model.initial).toBe(join(dir, 'etc', 'models', 'init.safetensors'));
    expect(c.run).toMatchObject({
      id: 'run-1',
      rounds: 3,
      minSites: 2,
      expectedSites: [],
      strategy: { name: 'diloco', lr: 0.7, momentum: 0.9 },
      weighting: 'samples',
      maxSiteWeight: 1000,
      encoding: 'f32',
      train: {},
      evaluate: true,
      deadlines: { openS: 120, trainingS: 3600, uploadS: 3600, aggregateS: 3600, commitS: 600, evalS: 600 },
      maxAttempts: 5,
    });
    expect(c.limits).toMatchObject({
      maxChunkBytes: 1024 * 1024,
      sliceElements: 4 * 1024 * 1024,
      idleTimeoutS: 60,
      maxStreamsPerSite: 8,
      uploadWindowBytes: 16 * 1024 * 1024,
      uploadBudgetBytes: 256 * 1024 * 1024,
    });
    expect(c.heartbeatIntervalMs).toBe(2000);
    expect(c.log).toEqual({ level: 'info' });
    assert(c.run, 'a config with a run section has a resolved run');
    for (const part of [c, c.tls, c.model, c.run, c.run.deadlines, c.run.strategy, c.run.expectedSites, c.limits, c.log]) {
      expect(Object.isFrozen(part)).toBe(true);
    }
    expect(() => {
      (c.run as { rounds: number }).rounds = 99;
    }).toThrow(TypeError);
  });

  it('keeps explicit strategy hyper-parameters and fills the rest', async () => {
    await write({ ...valid(), run: { ...(valid().run as object), strategy: { name: 'fedadam', lr: 0.1 } } });
    expect(loadCoordinatorConfig(file).run?.strategy).toEqual({ name: 'fedadam', lr: 0.1, beta1: 0.9, beta2: 0.99, tau: 1e-3 });
  });

  it('refuses an unknown top-level field, naming it', async () => {
    await write({ ...valid(), stateDirr: '/x' });
    const e = configError();
    expect(e.issues).toEqual(['stateDirr: unknown field']);
    expect(e.message).toContain('stateDirr: unknown field');
  });

  it('refuses an unknown nested field, naming its dotted path', async () => {
    const run = { ...(valid().run as object), deadlines: { trainS: 60 } };
    await write({ ...valid(), run });
    const e = configError();
    expect(e.message).toContain('run.deadlines.trainS');
    expect(e.issues).toEqual(['run.deadlines.trainS: unknown field']);
  });

  it('refuses a field of the wrong type, naming it', async () => {
    await write({ ...valid(), run: { ...(valid().run as object), rounds: '3' } });
    const e = configError();
    expect(e.issues).toHaveLength(1);
    expect(e.issues[0]).toMatch(/^run\.rounds: /);
    expect(e.message).toContain('run.rounds');
  });

  it('names every bad field at once', async () => {
    await write({ ...valid(), listen: 'nowhere', heartbeatIntervalMs: 5 });
    const e = configError();
    expect(e.issues.some((i) => i.startsWith('listen: '))).toBe(true);
    expect(e.issues.some((i) => i.startsWith('heartbeatIntervalMs: '))).toBe(true);
  });

  it('refuses an out-of-range strategy hyper-parameter, naming run.strategy', async () => {
    await write({ ...valid(), run: { ...(valid().run as object), strategy: { name: 'diloco', lr: -1 } } });
    const e = configError();
    expect(e.issues).toHaveLength(1);
    expect(e.issues[0]).toMatch(/^run\.strategy: /);
    expect(e.issues[0]).toContain('lr');
  });

  it('refuses a hyper-parameter the strategy does not have, naming run.strategy', async () => {
    await write({ ...valid(), run: { ...(valid().run as object), strategy: { name: 'fedavg', momentum: 0.9 } } });
    const e = configError();
    expect(e.issues).toHaveLength(1);
    expect(e.issues[0]).toMatch(/^run\.strategy: /);
    expect(e.issues[0]).toContain('momentum');
  });

  it('refuses a robust aggregator under secure aggregation (it needs individual updates), naming run.aggregator', async () => {
    await write({ ...valid(), run: { ...(valid().run as object), aggregator: { name: 'median' } } });
    const e = configError();
    expect(e.issues).toHaveLength(1);
    expect(e.issues[0]).toMatch(/^run\.aggregator: median needs each site's own update/);
  });

  it('accepts a robust aggregator in plain rounds and refuses a trim outside (0, 0.5)', async () => {
    const plain = { enabled: false };
    await write({ ...valid(), run: { ...(valid().run as object), secureAggregation: plain, aggregator: { name: 'trimmed-mean', trim: 0.2 } } });
    expect(loadCoordinatorConfig(file).run?.aggregator).toEqual({ name: 'trimmed-mean', trim: 0.2 });
    await write({ ...valid(), run: { ...(valid().run as object), secureAggregation: plain, aggregator: { name: 'trimmed-mean', trim: 0.5 } } });
    expect(configError().issues[0]).toMatch(/^run\.aggregator\.trim: /);
  });

  it('refuses an upload budget that cannot hold one stream’s window, naming limits.uploadBudgetBytes', async () => {
    await write({ ...valid(), limits: { uploadWindowBytes: 32 * 1024 * 1024, uploadBudgetBytes: 16 * 1024 * 1024 } });
    expect(configError().issues).toEqual([
      'limits.uploadBudgetBytes: must hold at least one stream’s window (33554432 bytes: uploadWindowBytes, and two chunks of maxChunkBytes)',
    ]);
    await write({ ...valid(), limits: { maxChunkBytes: 4 * 1024 * 1024, uploadWindowBytes: 256 * 1024, uploadBudgetBytes: 4 * 1024 * 1024 } });
    expect(configError().message).toContain('8388608 bytes');
    await write({ ...valid(), limits: { uploadBudgetBytes: 32 * 1024 * 1024 } });
    expect(loadCoordinatorConfig(file).limits.uploadBudgetBytes).toBe(32 * 1024 * 1024);
  });

  it("takes run.checkpointDtype f32, bf16 or f16, absent by default (the initial model's dtypes), and refuses another value naming it", async () => {
    await write(valid());
    expect(loadCoordinatorConfig(file).run?.checkpointDtype).toBeUndefined();
    for (const dtype of ['f32', 'bf16', 'f16'] as const) {
      await write({ ...valid(), run: { ...(valid().run as object), checkpointDtype: dtype } });
      expect(loadCoordinatorConfig(file).run?.checkpointDtype).toBe(dtype);
    }
    await write({ ...valid(), run: { ...(valid().run as object), checkpointDtype: 'BF16' } });
    const e = configError();
    expect(e.issues).toHaveLength(1);
    expect(e.issues[0]).toMatch(/^run\.checkpointDtype: .*'f32' \| 'bf16' \| 'f16'.*'BF16'/);
  });

  it('refuses an unknown strategy name', async () => {
    await write({ ...valid(), run: { ...(valid().run as object), strategy: { name: 'sgd' } } });
    expect(configError().issues[0]).toMatch(/^run\.strategy: .*sgd/);
  });

  it('gives a clear ConfigError for a missing file', () => {
    const e = configError();
    expect(e.issues).toHaveLength(1);
    expect(e.issues[0]).toMatch(/^cannot read: .*ENOENT/);
  });

  it('gives a clear ConfigError for invalid JSON', async () => {
    await write('{"federation": "fed-1",');
    const e = configError();
    expect(e.issues).toHaveLength(1);
    expect(e.issues[0]).toMatch(/^not valid JSON: /);
  });

  it('refuses a document that is not an object', async () => {
    await write('[]');
    expect(configError().issues[0]).toMatch(/^\(root\): /);
  });
});

describe('secureThreshold', () => {
  it('is max(2, minSites) when the run sets none, the configured one otherwise, and is what the plan carries', () => {
    const run = (extra: Record<string, unknown>) => runSchema.parse({ id: 'run-1', rounds: 1, minSites: 1, maxSiteWeight: 1, ...extra });
    expect(secureThreshold(run({}))).toBe(2);
    expect(secureThreshold(run({ minSites: 5 }))).toBe(5);
    expect(secureThreshold(run({ minSites: 5, secureAggregation: { threshold: 3 } }))).toBe(3);
    expect(run({ minSites: 5 }).secureAggregation.threshold).toBeUndefined(); // derived, never written into the config
    expect(runPlanFromConfig({ run: run({ minSites: 5 }) }).secure).toEqual({ threshold: 5 });
  });
});

describe('run.maxSiteWeight: one weight setting, refused not clamped', () => {
  const BUILTIN = { steps: 50, batchSize: 256, lr: 0.01 };
  const TORCH = { max_steps: 30, lr: 3e-3, batch_size: 16, seq_len: 64 };
  const run = (extra: Record<string, unknown>) => runSchema.parse({ id: 'run-1', rounds: 1, minSites: 1, ...extra });

  it("defaults to what an honest site can declare under the run's training settings, in the unit of run.weighting", () => {
    // The builtin runner: samples = steps × batchSize, one token per sample.
    expect(run({ train: BUILTIN }).maxSiteWeight).toBe(50 * 256);
    expect(run({ train: BUILTIN, weighting: 'tokens' }).maxSiteWeight).toBe(50 * 256);
    // The torch and NeMo trainers: max_steps × batch_size samples, × seq_len tokens (their DONE.json).
    expect(run({ train: TORCH }).maxSiteWeight).toBe(30 * 16);
    expect(run({ train: TORCH, weighting: 'tokens' }).maxSiteWeight).toBe(30 * 16 * 64);
    // Uniform: every site weighs 1, whatever the settings say.
    expect(run({ weighting: 'uniform' }).maxSiteWeight).toBe(1);
    expect(defaultMaxSiteWeight({ weighting: 'samples', train: { sleep_s: 1 } })).toBeUndefined();
    expect(defaultMaxSiteWeight({ weighting: 'tokens', train: { ...TORCH, seq_len: 0 } })).toBeUndefined();
    expect(defaultMaxSiteWeight({ weighting: 'samples', train: { steps: 2 ** 40, batchSize: 2 ** 20 } })).toBeUndefined();
  });

  it('keeps an explicit value, and the resolved run parses again to itself', () => {
    const r = run({ train: BUILTIN, maxSiteWeight: 20_000 });
    expect(r.maxSiteWeight).toBe(20_000);
    expect(r.secureAggregation).not.toHaveProperty('maxWeight');
    expect(runSchema.parse(r)).toEqual(r);
    expect(runSchema.parse(run({ train: BUILTIN }))).toEqual(run({ train: BUILTIN }));
  });

  it('reads the old name secureAggregation.maxWeight alone or when it agrees, and refuses it with a different value, naming both', async () => {
    expect(run({ train: BUILTIN, secureAggregation: { maxWeight: 5000 } }).maxSiteWeight).toBe(5000);
    expect(run({ train: BUILTIN, maxSiteWeight: 5000, secureAggregation: { maxWeight: 5000 } })).toMatchObject({ maxSiteWeight: 5000, secureAggregation: { enabled: true } });
    await write({ ...valid(), run: { ...(valid().run as object), secureAggregation: { maxWeight: 100_000 } } });
    const e = configError();
    expect(e.issues).toEqual([
      'run.secureAggregation.maxWeight: 100000 disagrees with run.maxSiteWeight 1000: secureAggregation.maxWeight is the old name of run.maxSiteWeight; keep run.maxSiteWeight only',
    ]);
  });

  it('is required when the training settings do not say how much a site trains, naming run.maxSiteWeight', async () => {
    await write({ ...valid(), run: { id: 'run-1', rounds: 3, minSites: 2, train: { sleep_s: 1 } } });
    const e = configError();
    expect(e.issues).toHaveLength(1);
    expect(e.issues[0]).toMatch(/^run\.maxSiteWeight: required: run\.train does not say how much one site trains per round/);
    await write({ ...valid(), run: { id: 'run-1', rounds: 3, minSites: 2, weighting: 'tokens', train: { ...TORCH, seq_len: 'long' } } });
    expect(configError().issues[0]).toMatch(/^run\.maxSiteWeight: required: .*and seq_len, or a token budget/);
  });

  describe('budgeted rounds (run.train.budget)', () => {
    const budgeted = (budget: unknown, extra: Record<string, unknown> = {}) => ({ ...valid(), run: { id: 'run-1', rounds: 3, minSites: 2, weighting: 'tokens', train: { batch_size: 8, seq_len: 64, budget }, ...extra } });

    it('defaults maxSiteWeight to a token budget plus one batch, and maxStaleness to 2', () => {
      const r = run({ weighting: 'tokens', train: { batch_size: 8, seq_len: 64, budget: { tokens: 100_000 } } });
      expect(r).toMatchObject({ maxSiteWeight: 100_000 + 512, maxStaleness: 2 });
    });

    it('refuses a time-budgeted run without maxSiteWeight, pointing at how to size it, and takes one with it', async () => {
      await write(budgeted({ seconds: 60 }));
      expect(configError().issues).toEqual([expect.stringMatching(/^run\.maxSiteWeight: required: a time-budgeted run .*docs\/operators\.md/)]);
      expect(run({ weighting: 'tokens', maxSiteWeight: 50_000, train: { budget: { seconds: 60 } } }).maxSiteWeight).toBe(50_000);
    });

    it('refuses a zero budget, a budget not shorter than the training deadline, both kinds at once, and a weighting other than tokens', async () => {
      for (const bad of [{ seconds: 0 }, { tokens: 0 }, { seconds: 10, tokens: 10 }, { steps: 5 }, 'ten minutes']) {
        await write(budgeted(bad, { maxSiteWeight: 1000 }));
        expect(configError().issues, JSON.stringify(bad)).toContainEqual(expect.stringMatching(/^run\.train\.budget: a budget is/));
      }
      await write(budgeted({ seconds: 600 }, { maxSiteWeight: 1000, deadlines: { trainingS: 600 } }));
      expect(configError().issues).toEqual(['run.train.budget.seconds: a budget of 600 s is not shorter than the training deadline (deadlines.trainingS 600 s): no site could finish and upload in time']);
      await write(budgeted({ tokens: 1000 }, { weighting: 'samples', maxSiteWeight: 1000 }));
      expect(configError().issues).toEqual([expect.stringMatching(/^run\.weighting: budgeted rounds weigh by the work done: set weighting to "tokens"/)]);
    });
  });

  it('refuses a maxSiteWeight below 1 (no count could pass) or above 2^53 − 1', async () => {
    await write({ ...valid(), run: { ...(valid().run as object), maxSiteWeight: 0.5 } });
    expect(configError().issues[0]).toMatch(/^run\.maxSiteWeight: /);
    await write({ ...valid(), run: { ...(valid().run as object), maxSiteWeight: 2 ** 53 } });
    expect(configError().issues[0]).toMatch(/^run\.maxSiteWeight: /);
  });
});

describe('overlapped rounds (run.train.overlap)', () => {
  /** `budget` null: none. */
  const train = (overlap: unknown, budget: unknown = { seconds: 60 }) => ({ batch_size: 8, seq_len: 64, ...(budget === null ? {} : { budget }), overlap });
  const overlapped = (overlap: unknown, budget?: unknown) => ({ ...valid(), run: { id: 'run-1', rounds: 3, minSites: 2, weighting: 'tokens', maxSiteWeight: 50_000, train: train(overlap, budget) } });
  /** The issues `admin start` reports for a run file (the run schema, which the coordinator parses again at run start), named as in a coordinator config. */
  const startIssues = (overlap: unknown, budget?: unknown): string[] => {
    try {
      parseConfig('run.json', { id: 'run-1', rounds: 3, minSites: 2, weighting: 'tokens', maxSiteWeight: 50_000, train: train(overlap, budget) }, runSchema);
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      return (e as ConfigError).issues.map((i) => `run.${i}`);
    }
    throw new Error('run was accepted');
  };

  it('takes the whole-model mode with alpha defaulted to 1 and an optional bound, and passes train.overlap to the sites as it is', async () => {
    await write(overlapped({ mode: 'whole-model', maxAppliedSteps: 64 }));
    const c = loadCoordinatorConfig(file);
    expect(c.run?.train['overlap']).toEqual({ mode: 'whole-model', maxAppliedSteps: 64 });
    expect(trainOverlap(c.run!.train)).toEqual({ mode: 'whole-model', maxAppliedSteps: 64, alpha: 1 });
    expect(trainOverlap({ overlap: { mode: 'whole-model', alpha: 0.5 } })).toEqual({ mode: 'whole-model', alpha: 0.5 });
    expect(trainOverlap({})).toBeUndefined();
  });

  it('refuses fragment-wise sync, as a mode or as fragments: P, saying it is not built and pointing at docs/decisions.md', async () => {
    for (const [bad, field] of [[{ mode: 'fragments' }, 'mode'], [{ mode: 'whole-model', fragments: 4 }, 'fragments'], [{ mode: 'fragments', fragments: 4 }, 'fragments']] as const) {
      await write(overlapped(bad));
      expect(configError().issues, JSON.stringify(bad)).toEqual([expect.stringMatching(new RegExp(`^run\\.train\\.overlap\\.${field}: fragment-wise sync .* is not built: use mode "whole-model" \\(docs/decisions\\.md, `))]);
      expect(startIssues(bad)).toEqual([expect.stringMatching(/fragment-wise sync .*is not built/)]);
    }
  });

  it('refuses another mode, a bound that is no positive integer, an alpha outside (0, 1] and unknown fields, naming the field', async () => {
    const cases: [unknown, string][] = [
      [{ mode: 'streaming' }, 'run.train.overlap.mode'],
      [{}, 'run.train.overlap.mode'],
      [{ mode: 'whole-model', maxAppliedSteps: 0 }, 'run.train.overlap.maxAppliedSteps'],
      [{ mode: 'whole-model', maxAppliedSteps: 2.5 }, 'run.train.overlap.maxAppliedSteps'],
      [{ mode: 'whole-model', alpha: 0 }, 'run.train.overlap.alpha'],
      [{ mode: 'whole-model', alpha: 1.5 }, 'run.train.overlap.alpha'],
      [{ mode: 'whole-model', lag: 2 }, 'run.train.overlap'],
      ['whole-model', 'run.train.overlap'],
    ];
    for (const [bad, path] of cases) {
      await write(overlapped(bad));
      const issues = configError().issues;
      expect(issues, JSON.stringify(bad)).toHaveLength(1);
      expect(issues[0]!.startsWith(`${path}: `), `${JSON.stringify(bad)}: ${issues[0]}`).toBe(true);
      expect(startIssues(bad), JSON.stringify(bad)).toEqual(issues);
    }
  });

  it('refuses an overlapped run without a budget: the budget is the training each sync carries', async () => {
    await write(overlapped({ mode: 'whole-model' }, null));
    expect(configError().issues).toEqual([expect.stringMatching(/^run\.train\.overlap: an overlapped run needs a budget, the training each sync carries: set run\.train\.budget/)]);
    expect(startIssues({ mode: 'whole-model' }, null)).toEqual([expect.stringMatching(/^run\.train\.overlap: an overlapped run needs a budget/)]);
    expect(trainOverlap(runSchema.parse({ id: 'run-1', rounds: 3, minSites: 2, weighting: 'tokens', maxSiteWeight: 50_000, train: train({ mode: 'whole-model' }, { tokens: 4096 }) }).train)).toEqual({ mode: 'whole-model', alpha: 1 });
  });

  it('bounds an overlapped sync by maxSiteWeight, never by the token budget plus a batch: a sync whose global comes late carries more', () => {
    const tokenBudget = train({ mode: 'whole-model' }, { tokens: 4096 });
    expect(tokenCap(tokenBudget)).toBeUndefined();
    expect(tokenCap(train(undefined, { tokens: 4096 }))).toBe(4096 + 8 * 64);
    expect(defaultMaxSiteWeight({ weighting: 'tokens', train: tokenBudget })).toBeUndefined();
    expect(() => runSchema.parse({ id: 'run-1', rounds: 3, minSites: 2, weighting: 'tokens', train: tokenBudget })).toThrow(/an overlapped run's sync trains on until its global is applied/);
  });
});
