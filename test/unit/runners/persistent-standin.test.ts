/**
 * Overlapped rounds at the site (issue 17): the agent's side of a persistent session
 * (site-agent/runners/persistent.ts) driving the stand-in's persistent trainer. Syncs follow the
 * contract: the trainer trains on between syncs, applies each global as a correction at a step
 * boundary (checked against the closed form, step by step), reports the applied staleness and its
 * busy time, resumes from state/ after a restart without redoing a snapshot, and refuses what it
 * must.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSafetensorsWriter, memorySink, openSafetensors, memorySource } from '../../../aggregation/index.js';
import { SiteAgentError } from '../../../site-agent/errors.js';
import { OverlapRunner, sessionDir } from '../../../site-agent/runners/persistent.js';
import type { TrainRequest, TrainResult } from '../../../site-agent/runners/runner.js';
import { writeStandinModel } from '../../../site-agent/runners/standin-model.js';
import { StandinRunner, standinRunnerSchema } from '../../../site-agent/runners/standin.js';

let work = '';
const N = 4099;
const STEP_MS = 20;
const objective = { seed: 7, targetScale: 0.02, heterogeneity: 0.5 };
const PULL = 0.01;

async function writeModel(path: string, f: (i: number) => number): Promise<string> {
  const sink = memorySink();
  const w = await createSafetensorsWriter(sink, [
    { name: 'a.weight', dtype: 'F32', shape: [N] },
    { name: 'b.weight', dtype: 'F32', shape: [3, 5] },
  ]);
  await w.writeF32('a.weight', Float32Array.from({ length: N }, (_, i) => f(i)));
  await w.writeF32('b.weight', Float32Array.from({ length: 15 }, (_, i) => f(i + 7)));
  await w.finish();
  await writeFile(path, sink.bytes());
  return createHash('sha256').update(sink.bytes()).digest('hex');
}

async function values(path: string): Promise<Float32Array> {
  const file = await openSafetensors(memorySource(await readFile(path)));
  return file.readF32('a.weight', 0, N);
}

const train = { batch_size: 4, seq_len: 8, budget: { seconds: 0.6 }, overlap: { mode: 'whole-model' } };

function request(o: { round: number; attempt?: number; global: string; sha: string; secure?: boolean; train?: Record<string, unknown> }): TrainRequest {
  return {
    runId: 'run-o',
    round: o.round,
    attempt: o.attempt ?? 0,
    globalPath: o.global,
    globalSha256: o.sha,
    roundDir: join(work, `round-${o.round}`),
    train: o.train ?? train,
    signal: AbortSignal.timeout(20_000),
    onProgress: () => undefined,
    secure: o.secure,
  };
}

const overlapRunner = (dir = work): OverlapRunner =>
  new OverlapRunner(new StandinRunner(standinRunnerSchema.parse({ kind: 'standin', stepMs: STEP_MS, pull: PULL, ...objective })), { workDir: dir, stopGraceMs: 5_000 });

type Sync = TrainResult & { appliedStaleness: number; busyMs: number };

let g0 = '';
let g0Sha = '';
let g1 = '';
let g1Sha = '';

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fedhpc-persistent-'));
  g0 = join(work, 'g0.safetensors');
  g0Sha = await writeModel(g0, (i) => Math.sin(i) * 0.05);
  g1 = join(work, 'g1.safetensors');
  g1Sha = await writeModel(g1, (i) => Math.cos(i) * 0.04);
});
afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe('a persistent stand-in trainer driven by the agent', () => {
  it('trains on between syncs and applies each global as a correction, as the closed form says', async () => {
    const runner = overlapRunner();
    try {
      const s1 = (await runner.train(request({ round: 1, global: g0, sha: g0Sha }))) as Sync;
      expect(s1.appliedStaleness).toBe(0);
      expect(s1.steps).toBeGreaterThanOrEqual(10);
      expect(s1.tokens).toBe(s1.steps * 32);
      expect(s1.busyMs).toBeLessThanOrEqual(s1.trainFinishedMs! - s1.trainStartedMs! + 1);
      expect(s1.busyMs).toBeGreaterThan(0.8 * (s1.trainFinishedMs! - s1.trainStartedMs!));
      const snap1 = join(work, 'snap1.safetensors');
      await writeFile(snap1, await readFile(s1.outPath));

      // The sync: the global of round 1 comes back 0.2 s later (within the budget), while the trainer goes on.
      await sleep(200);
      const s2 = (await runner.train(request({ round: 2, global: g1, sha: g1Sha }))) as Sync;
      const progress = (await readFile(join(sessionDir(work, 'run-o'), 'progress.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { ts: number; sync: string | null });
      const between = progress.filter((p) => p.ts > s1.trainFinishedMs! && p.sync === null);
      expect(between.length).toBeGreaterThanOrEqual(5); // steps while no global was pending: no idle GPU
      const j = s2.appliedStaleness;
      expect(j).toBeGreaterThanOrEqual(5);
      expect(s2.steps).toBeGreaterThan(j);

      // j steps from snapshot 1, then θ ← θ + (g1 − snapshot 1), then k steps: what the snapshot must hold.
      const stepped = join(work, 'stepped.safetensors');
      await writeStandinModel(snap1, stepped, objective, PULL, j, AbortSignal.timeout(5_000));
      const [a, s, g] = [await values(stepped), await values(snap1), await values(g1)];
      const corrected = join(work, 'corrected.safetensors');
      await writeModel(corrected, (i) => (i < N ? a[i]! + g[i]! - s[i]! : 0));
      const expected = join(work, 'expected.safetensors');
      await writeStandinModel(corrected, expected, objective, PULL, s2.steps - j, AbortSignal.timeout(5_000));
      const [got, want] = [await values(s2.outPath), await values(expected)];
      let worst = 0;
      for (let i = 0; i < N; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
      expect(worst).toBeLessThan(1e-6);

      // A new attempt of round 2: a plain run reuses the snapshot; a secure one asks for a new one.
      const again = (await runner.train(request({ round: 2, attempt: 1, global: g1, sha: g1Sha }))) as Sync;
      expect(again.outPath).toBe(s2.outPath);
      const secure = (await runner.train(request({ round: 2, attempt: 2, global: g1, sha: g1Sha, secure: true }))) as Sync;
      expect(secure.outPath).not.toBe(s2.outPath);
      // The same global: nothing to apply, and the delta against it holds the last snapshot's steps
      // too (never counted), so they are counted here, from the same start (plus the steps since).
      expect(secure.appliedStaleness).toBe(s2.appliedStaleness);
      expect(secure.trainStartedMs).toBe(s2.trainStartedMs);
      expect(secure.steps).toBeGreaterThanOrEqual(s2.steps);
      expect(secure.tokens).toBe(secure.steps * 32);
    } finally {
      await runner.endRun('run-o');
    }
  }, 30_000);

  it('resumes from its last snapshot after a restart: a DONE.json lost to the crash is written again, nothing redone', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fedhpc-persistent-restart-'));
    try {
      const first = overlapRunner(dir);
      const s1 = (await first.train(request({ round: 1, global: g0, sha: g0Sha }))) as Sync;
      const sha1 = createHash('sha256').update(await readFile(s1.outPath)).digest('hex');
      await first.endRun('run-o');
      const session = sessionDir(dir, 'run-o');
      await rm(join(session, 'syncs', '1.0', 'DONE.json'));
      const lastStep = Math.max(...(await readFile(join(session, 'progress.jsonl'), 'utf8')).trim().split('\n').map((l) => (JSON.parse(l) as { step: number }).step));

      const second = overlapRunner(dir);
      try {
        const again = (await second.train(request({ round: 1, global: g0, sha: g0Sha }))) as Sync;
        expect(createHash('sha256').update(await readFile(again.outPath)).digest('hex')).toBe(sha1);
        expect(again.steps).toBe(s1.steps);
        const s2 = (await second.train(request({ round: 2, global: g1, sha: g1Sha }))) as Sync;
        expect(s2.steps).toBeGreaterThan(0);
        const steps = (await readFile(join(session, 'progress.jsonl'), 'utf8')).trim().split('\n').map((l) => (JSON.parse(l) as { step: number }).step);
        expect(steps[steps.length - 1]).toBeGreaterThan(lastStep);
      } finally {
        await second.endRun('run-o');
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 30_000);

  it('refuses a global whose bytes are not the ones the sync names, a run without a budget, and fragment-wise syncs', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fedhpc-persistent-bad-'));
    const runner = overlapRunner(dir);
    try {
      await expect(runner.train(request({ round: 1, global: g0, sha: g1Sha }))).rejects.toMatchObject({ code: 'MODEL_INVALID' });
      const { budget: _budget, ...unbudgeted } = train;
      await expect(runner.train(request({ round: 1, global: g0, sha: g0Sha, train: { ...unbudgeted } }))).rejects.toThrow(/needs run.train.budget/);
      const fragments = runner.train(request({ round: 1, global: g0, sha: g0Sha, train: { ...train, overlap: { mode: 'fragments', fragments: 4 } } }));
      await expect(fragments).rejects.toBeInstanceOf(SiteAgentError);
      await expect(fragments).rejects.toThrow(/fragment-wise syncs .* are not built/);
    } finally {
      await runner.endRun('run-o');
      await rm(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
