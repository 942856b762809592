/**
 * Overlapped rounds through the `command` runner (issue 17): the trainer started once with
 * `--session-dir`, restarted after a crash from its state, and refused when its snapshot breaks
 * the contract — other names than the global's, or a base that is not the sync's global — before
 * anything is uploaded. The trainer is test/fixtures/trainers/fake-persistent-trainer.mjs, a real
 * process that follows (or breaks, on purpose) the file contract without training.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSafetensorsWriter, memorySink } from '../../../aggregation/index.js';
import { CommandRunner, commandRunnerSchema } from '../../../site-agent/runners/command.js';
import { OverlapRunner, sessionDir } from '../../../site-agent/runners/persistent.js';
import type { TrainRequest } from '../../../site-agent/runners/runner.js';

const TRAINER = resolve('test/fixtures/trainers/fake-persistent-trainer.mjs');
let work = '';
let global = '';
let globalSha = '';

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fedhpc-persistent-command-'));
  global = join(work, 'global.safetensors');
  const sink = memorySink();
  const w = await createSafetensorsWriter(sink, [
    { name: 'a.weight', dtype: 'F32', shape: [8] },
    { name: 'b.weight', dtype: 'F32', shape: [2, 3] },
  ]);
  await w.writeF32('a.weight', Float32Array.from({ length: 8 }, (_, i) => i / 10));
  await w.writeF32('b.weight', Float32Array.from({ length: 6 }, (_, i) => -i / 10));
  await w.finish();
  await writeFile(global, sink.bytes());
  globalSha = createHash('sha256').update(sink.bytes()).digest('hex');
});
afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

function runner(dir: string): OverlapRunner {
  const base = new CommandRunner(commandRunnerSchema.parse({ kind: 'command', command: [process.execPath, TRAINER], maxRetries: 1, maxResumes: 0, killGraceS: 1 }));
  return new OverlapRunner(base, { workDir: dir, stopGraceMs: 5_000 });
}

function request(round: number, fake: Record<string, unknown> = {}): TrainRequest {
  return {
    runId: 'run-c',
    round,
    attempt: 0,
    globalPath: global,
    globalSha256: globalSha,
    roundDir: join(work, `round-${round}`),
    train: { batch_size: 4, seq_len: 16, budget: { seconds: 1 }, overlap: { mode: 'whole-model' }, fake },
    signal: AbortSignal.timeout(20_000),
    onProgress: () => undefined,
  };
}

describe('a persistent trainer run by the command runner', () => {
  it('starts the trainer once for many syncs, and restarts it after a crash without redoing its snapshot', async () => {
    const dir = await mkdtemp(join(work, 'ok-'));
    const r = runner(dir);
    try {
      const s1 = await r.train(request(1, { crashFirst: true }));
      expect(s1).toMatchObject({ steps: 3, tokens: 192, appliedStaleness: 2, busyMs: 25 });
      const s2 = await r.train(request(2, { crashFirst: true }));
      expect(s2.outPath).toContain(join('syncs', '2.0'));
      const session = sessionDir(dir, 'run-c');
      // Two starts in all: the first run crashed after its first snapshot's state, the restart wrote its DONE.json.
      expect((await readFile(join(session, 'runs.log'), 'utf8')).trim().split('\n')).toHaveLength(2);
      expect(JSON.parse(await readFile(join(session, 'spec.json'), 'utf8'))).toMatchObject({ version: 3, mode: 'persistent', run_id: 'run-c', budget: { seconds: 1 }, overlap: { alpha: 1 } });
    } finally {
      await r.endRun('run-c');
    }
  }, 30_000);

  it('refuses a snapshot with other tensor names than the global, or measured against another base', async () => {
    for (const [fake, message] of [
      [{ badNames: true }, /does not match the global model: .*tensor not\.in\.the\.global is not in the global model/],
      [{ badBase: true }, /was measured against model 0{64}, not the sync's global/],
    ] as const) {
      const dir = await mkdtemp(join(work, 'bad-'));
      const r = runner(dir);
      try {
        await expect(r.train(request(1, fake))).rejects.toThrow(message);
      } finally {
        await r.endRun('run-c');
      }
    }
  }, 30_000);
});
