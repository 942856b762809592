/** Shared set-up of the runner tests: a small global model, round requests, the stand-in trainer. */
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createSafetensorsWriter, memorySink } from '../../../aggregation/index.js';
import type { TrainProgress, TrainRequest } from '../../../site-agent/runners/runner.js';
import type { SlurmRunnerOptions } from '../../../site-agent/runners/slurm.js';

/** The stand-in trainer (a Node script following the round-dir contract). */
export const FAKE_TRAINER = resolve('test/fixtures/trainers/fake-trainer.mjs');

/**
 * Slurm runner options for the stand-in trainer on the debug partition, polling fast enough for a
 * test and waiting no longer than one needs; `extra` adds or overrides.
 */
export function fakeSlurmOptions(extra: Partial<SlurmRunnerOptions> = {}): SlurmRunnerOptions {
  return {
    kind: 'slurm',
    partition: 'debug',
    timeLimit: '5',
    python: process.execPath,
    trainer: FAKE_TRAINER,
    signalLeadS: 0,
    pollIntervalMs: 300,
    progressPollMs: 100,
    doneWaitMs: 2000,
    cancelWaitS: 30,
    commandTimeoutS: 30,
    ...extra,
  };
}

export interface Workspace {
  readonly dir: string;
  readonly globalPath: string;
  readonly globalSha256: string;
}

/** A fresh folder (under `base`, or the OS temp folder) holding a two-tensor F32 global model. */
export async function makeWorkspace(base?: string): Promise<Workspace> {
  if (base) await mkdir(base, { recursive: true });
  const dir = await mkdtemp(join(base ?? tmpdir(), 'fedhpc-runner-'));
  const sink = memorySink();
  const w = await createSafetensorsWriter(sink, [
    { name: 'a.weight', dtype: 'F32', shape: [2, 3] },
    { name: 'b.bias', dtype: 'F32', shape: [4] },
  ]);
  await w.writeF32('a.weight', Float32Array.from([1, 2, 3, 4, 5, 6]));
  await w.writeF32('b.bias', Float32Array.from([0.5, 0.25, 0, -1]));
  await w.finish();
  const globalPath = join(dir, 'global.safetensors');
  await writeFile(globalPath, sink.bytes());
  return { dir, globalPath, globalSha256: createHash('sha256').update(sink.bytes()).digest('hex') };
}

/** A round request for the stand-in trainer; `fake` picks its behaviour (see the fixture). */
export function trainRequest(
  ws: Workspace,
  fake: Record<string, unknown>,
  options: { round?: number; signal?: AbortSignal; progress?: TrainProgress[]; name?: string } = {},
): TrainRequest {
  const round = options.round ?? 1;
  return {
    runId: 'run-test',
    round,
    attempt: 1,
    globalPath: ws.globalPath,
    globalSha256: ws.globalSha256,
    roundDir: join(ws.dir, options.name ?? `round-${round}`),
    train: { max_steps: 3, fake },
    signal: options.signal ?? new AbortController().signal,
    onProgress: (p) => options.progress?.push(p),
  };
}

/** Lines of `scratch/runs.log`: one per trainer run (pid, Slurm job id, restart count). */
export async function trainerRuns(roundDir: string): Promise<string[][]> {
  const text = await readFile(join(roundDir, 'scratch', 'runs.log'), 'utf8').catch(() => '');
  return text
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' '));
}

/** Whether a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}


/**
 * A PATH shim in front of the real `sbatch` that logs each call's arguments, so a test counts
 * submissions instead of assuming them. `env` puts it first on PATH; `submissions(fragment)` counts
 * the calls whose arguments contain `fragment`.
 */
export interface SbatchShim {
  readonly env: NodeJS.ProcessEnv;
  submissions(fragment: string): Promise<number>;
  remove(): Promise<void>;
}

export async function sbatchShim(): Promise<SbatchShim> {
  const dir = await mkdtemp(join(tmpdir(), 'fedhpc-sbatch-shim-'));
  const log = join(dir, 'sbatch.log');
  const real = spawnSync('bash', ['-c', 'command -v sbatch'], { encoding: 'utf8' }).stdout.trim();
  await writeFile(join(dir, 'sbatch'), `#!/bin/sh\necho "$*" >> '${log}'\nexec '${real}' "$@"\n`);
  await chmod(join(dir, 'sbatch'), 0o755);
  return {
    env: { ...process.env, PATH: `${dir}:${process.env['PATH'] ?? ''}` },
    submissions: async (fragment) => (await readFile(log, 'utf8').catch(() => '')).split('\n').filter((l) => l.includes(fragment)).length,
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
