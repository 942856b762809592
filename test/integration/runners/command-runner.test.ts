/**
 * The `command` runner against a stand-in trainer (a Node script that follows the round-dir
 * contract; the PyTorch trainer is tested on its own): exit codes, DONE.json and out/ checks,
 * resume after exit 75, one retry after a crash, progress forwarding and abort.
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SiteAgentError } from '../../../site-agent/errors.js';
import { CommandRunner, commandRunnerSchema, type CommandRunnerOptions } from '../../../site-agent/runners/command.js';
import { RunnerConfigError } from '../../../site-agent/runners/round-dir.js';
import type { TrainProgress } from '../../../site-agent/runners/runner.js';
import { FAKE_TRAINER, alive, makeWorkspace, trainRequest, trainerRuns, type Workspace } from './helpers.js';
import { waitUntil } from '../../helpers/wait.js';

const runner = (extra: Partial<CommandRunnerOptions> = {}): CommandRunner =>
  new CommandRunner(commandRunnerSchema.parse({ kind: 'command', command: [process.execPath, FAKE_TRAINER], progressPollMs: 50, killGraceS: 2, ...extra }));

async function rejection(p: Promise<unknown>): Promise<SiteAgentError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SiteAgentError);
  return err as SiteAgentError;
}

describe('command runner (stand-in trainer)', () => {
  let ws: Workspace;
  let round = 0;
  const next = (fake: Record<string, unknown>, o: Parameters<typeof trainRequest>[2] = {}) => trainRequest(ws, fake, { round: ++round, ...o });

  beforeAll(async () => {
    ws = await makeWorkspace();
  });
  afterAll(async () => {
    await rm(ws.dir, { recursive: true, force: true });
  });

  it('finishes a shard when exit code, DONE.json and out/ agree, forwarding progress lines', async () => {
    const progress: TrainProgress[] = [];
    const req = next({}, { progress });
    const r = runner();
    const result = await r.train(req);
    expect(result).toMatchObject({ outPath: join(req.roundDir, 'out', 'model.safetensors'), steps: 3, samples: 24, tokens: 192, trainLoss: 2.8 });
    expect(progress.map((p) => p.step)).toEqual([1, 2, 3]);
    expect(progress[0]).toMatchObject({ steps: 3, loss: 2.9 });
    const spec = JSON.parse(await readFile(join(req.roundDir, 'spec.json'), 'utf8'));
    expect(spec).toMatchObject({ round: req.round, global_sha256: ws.globalSha256, train: req.train, output_dtype: 'F32' });
    // The cursor the shard reports is where the next round's data starts.
    const second = next({});
    await r.train(second);
    expect(JSON.parse(await readFile(join(second.roundDir, 'spec.json'), 'utf8')).data).toEqual({ cursor: 7 });
  });

  it('speaks contract version 2: the budget at the top of spec.json, the busy span from DONE.json, else from progress.jsonl\'s first and last ts', async () => {
    const req = next({});
    const budgeted = { ...req, train: { ...req.train, budget: { tokens: 100 } } };
    const fromProgress = await runner().train(budgeted);
    const spec = JSON.parse(await readFile(join(req.roundDir, 'spec.json'), 'utf8')) as Record<string, unknown>;
    expect(spec).toMatchObject({ version: 2, budget: { tokens: 100 }, train: req.train });
    expect(spec['train']).not.toHaveProperty('budget');
    const ts = (await readFile(join(req.roundDir, 'progress.jsonl'), 'utf8')).trim().split('\n').map((l) => (JSON.parse(l) as { ts: number }).ts);
    expect(fromProgress).toMatchObject({ trainStartedMs: ts[0], trainFinishedMs: ts.at(-1) });
    expect(fromProgress.trainFinishedMs! - fromProgress.trainStartedMs!).toBeGreaterThanOrEqual(2 * 20 - 2);
    const fromDone = await runner().train(next({ span: [1_764_900_000_000, 1_764_900_003_000] }));
    expect(fromDone).toMatchObject({ trainStartedMs: 1_764_900_000_000, trainFinishedMs: 1_764_900_003_000 });
    const bad = next({});
    const err = await rejection(runner().train({ ...bad, train: { ...bad.train, budget: { seconds: 0 } } }));
    expect(err).toMatchObject({ code: 'SPEC_INVALID', retryable: false });
    expect(await trainerRuns(bad.roundDir)).toHaveLength(0);
  });

  it('reports exit 64 as a permanent SPEC_INVALID without a rerun', async () => {
    const req = next({ exitCode: 64 });
    const err = await rejection(runner().train(req));
    expect(err.code).toBe('SPEC_INVALID');
    expect(err.retryable).toBe(false);
    expect(await trainerRuns(req.roundDir)).toHaveLength(1);
  });

  it('reports exit 65 as a permanent MODEL_INVALID without a rerun', async () => {
    const req = next({ exitCode: 65 });
    const err = await rejection(runner().train(req));
    expect(err.code).toBe('MODEL_INVALID');
    expect(err.retryable).toBe(false);
    expect(await trainerRuns(req.roundDir)).toHaveLength(1);
  });

  it('refuses a shard whose trainer exits 0 without writing DONE.json', async () => {
    const err = await rejection(runner().train(next({ noDone: true })));
    expect(err.code).toBe('TRAINING_FAILED');
    expect(err.message).toMatch(/without a valid DONE\.json.*missing/);
  });

  it('refuses a shard whose DONE.json names a SHA-256 that out/ does not have', async () => {
    const err = await rejection(runner().train(next({ badHash: true })));
    expect(err.code).toBe('MODEL_CHECKSUM');
    expect(err.message).toMatch(/DONE\.json says 0{64}/);
  });

  it('refuses a shard whose output tensor shape differs from the global model', async () => {
    const err = await rejection(runner().train(next({ badShape: true })));
    expect(err.code).toBe('MODEL_INVALID');
    expect(err.message).toMatch(/tensor a\.weight has shape \[6\], global \[2, 3\]/);
  });

  it('reruns a trainer that exits 75 and resumes from its checkpoint in scratch/', async () => {
    const req = next({ resumeOnce: true });
    const result = await runner().train(req);
    expect(result.steps).toBe(3);
    expect(await trainerRuns(req.roundDir)).toHaveLength(2);
    expect(await readFile(join(req.roundDir, 'scratch', 'checkpoint'), 'utf8')).toBe('step 1\n');
  });

  it('retries a crashed trainer once, and succeeds when the rerun does', async () => {
    const req = next({ failRuns: 1 });
    await runner().train(req);
    expect(await trainerRuns(req.roundDir)).toHaveLength(2);
  });

  it('retries a crashed trainer once, then reports TRAINING_FAILED with its exit code and log', async () => {
    const req = next({ exitCode: 3 });
    const err = await rejection(runner().train(req));
    expect(err.code).toBe('TRAINING_FAILED');
    expect(err.context).toMatchObject({ exitCode: 3 });
    expect(await trainerRuns(req.roundDir)).toHaveLength(2);
  });

  it('kills the trainer process group when the round is aborted', async () => {
    const abort = new AbortController();
    const req = next({ sleepMs: 60_000 }, { signal: abort.signal });
    const p = runner().train(req);
    let pid = 0;
    await waitUntil(
      'the trainer to start',
      async () => {
        pid = Number(await readFile(join(req.roundDir, 'scratch', 'pid'), 'utf8').catch(() => '0'));
        return pid > 0;
      },
      20_000,
    );
    expect(alive(pid)).toBe(true);
    abort.abort(new SiteAgentError('CANCELLED', 'round aborted by the test', false));
    const err = await rejection(p);
    expect(err.code).toBe('CANCELLED');
    expect(alive(pid)).toBe(false);
  });

  it('evaluates a model by parsing the last {"loss","samples"} line the trainer prints', async () => {
    const r = await runner().evaluate(ws.globalPath, new AbortController().signal);
    expect(r).toEqual({ loss: 1.25, samples: 42 });
  });

  it('refuses at construction a trainer program that is not executable', () => {
    expect(() => runner({ command: ['/nonexistent/python3', 'x.py'] })).toThrow(RunnerConfigError);
    expect(() => runner({ command: ['no-such-python-anywhere'] })).toThrow(/no-such-python-anywhere is not an executable file/);
  });
});
