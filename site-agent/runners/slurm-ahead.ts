/**
 * The round directory's side of `runner.submitAhead` (docs/operators.md, "Submitting the next
 * Slurm job ahead"): the slurm runner's job record, the next round's directory, the `READY`
 * marker the agent writes last and the `MODEL_WAIT.json` a job submitted ahead leaves. A job
 * submitted ahead waits, on the compute node, for `READY`; the batch script's wait is in
 * slurm-cli.ts.
 */
import { readdir, readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';
import { writeJsonAtomic } from './round-dir.js';
import type { TrainRequest } from './runner.js';

/** `<roundDir>/job.json`: what was submitted for which round attempt. */
export interface JobRecord {
  version: 1;
  runId: string;
  round: number;
  /** 0 and '' while a job submitted ahead waits for its task. */
  attempt: number;
  globalSha256: string;
  jobs: { id: string; name: string; submittedAt: string }[];
  /** Name of a job being submitted (found by name if the agent died before recording its id). */
  submitting?: string;
  resumes: number;
  crashes: number;
  /** Submitted ahead when round `afterRound`'s shard was done; `adoptedAt` once its task came. */
  ahead?: { afterRound: number; submittedAt: string; adoptedAt?: string };
}

/** The job record of a round directory; undefined when there is none (or it is unreadable). */
export async function readRecord(roundDir: string): Promise<JobRecord | undefined> {
  const text = await readFile(join(roundDir, 'job.json'), 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    const r = JSON.parse(text) as JobRecord;
    return r.version === 1 && Array.isArray(r.jobs) ? r : undefined;
  } catch {
    return undefined;
  }
}

export const writeRecord = (roundDir: string, rec: JobRecord): Promise<void> => writeJsonAtomic(join(roundDir, 'job.json'), rec);

/** Whether `rec` is a job submitted ahead whose task has not come yet. */
export const waitingAhead = (rec: JobRecord | undefined): rec is JobRecord & { ahead: NonNullable<JobRecord['ahead']> } =>
  rec?.ahead !== undefined && rec.ahead.adoptedAt === undefined;

/**
 * The directory the agent will give round `round + 1` (round-job.ts names them `<workDir>/round-<r>`);
 * undefined when `req.roundDir` does not follow that naming, so nothing is submitted ahead.
 */
export function nextRoundDir(req: Pick<TrainRequest, 'roundDir' | 'round'>): string | undefined {
  return basename(req.roundDir) === `round-${req.round}` ? join(dirname(req.roundDir), `round-${req.round + 1}`) : undefined;
}

/** The jobs submitted ahead that still wait for their task, found from the records under `workDir`. */
export async function waitingAheadJobs(workDir: string): Promise<{ dir: string; rec: JobRecord }[]> {
  const entries = await readdir(workDir, { withFileTypes: true }).catch(() => []);
  const found: { dir: string; rec: JobRecord }[] = [];
  for (const e of entries) {
    if (!e.isDirectory() || !/^round-\d+$/.test(e.name)) continue;
    const dir = join(workDir, e.name);
    const rec = await readRecord(dir);
    if (waitingAhead(rec)) found.push({ dir, rec });
  }
  return found;
}

/**
 * Writes `<roundDir>/READY`, by rename and after spec.json and global/: a job submitted ahead
 * starts its trainer once it sees it, so it must never see a half-laid-out directory.
 */
export function markReady(req: Pick<TrainRequest, 'roundDir' | 'runId' | 'round' | 'attempt' | 'globalSha256'>): Promise<void> {
  return writeJsonAtomic(join(req.roundDir, 'READY'), { runId: req.runId, round: req.round, attempt: req.attempt, globalSha256: req.globalSha256, readyAt: new Date().toISOString() });
}

const modelWaitSchema = z.object({ modelWaitMs: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER) }).passthrough();

/** `MODEL_WAIT.json`'s wait (ms), written by a job submitted ahead once its model came; undefined when none. */
export async function readModelWait(roundDir: string): Promise<number | undefined> {
  const text = await readFile(join(roundDir, 'MODEL_WAIT.json'), 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    const parsed = modelWaitSchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data.modelWaitMs : undefined;
  } catch {
    return undefined;
  }
}
