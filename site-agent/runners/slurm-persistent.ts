/**
 * The slurm runner's persistent trainer (overlapped rounds, issue 17; docs/protocol.md, "The
 * persistent trainer"): ONE batch job for the whole run, submitted into the session directory.
 * In requeue mode a preempted job, or one whose trainer exits 75, is requeued by Slurm under the
 * same id and its trainer resumes from `state/`; the agent keeps following it and never submits a
 * second job for that. The job's id is kept in `<session>/slurm-job.json`, so a restarted agent
 * re-attaches to a job that is still live instead of starting a second trainer on the session.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { PersistentLaunch, PersistentTrainer } from './persistent.js';
import { writeJsonAtomic } from './round-dir.js';
import { TERMINAL_STATES, type JobInfo, type SlurmState } from './slurm-cli.js';

/** `<session>/slurm-job.json`: the jobs submitted for a session, the last one current. */
export interface SessionJobRecord {
  version: 1;
  runId: string;
  jobs: { id: string; name: string; submittedAt: string; end?: { state: SlurmState; exitCode: number | null; at: string } }[];
  /** Name of a job being submitted (found by name if the agent died before recording its id). */
  submitting?: string;
}

/** What following a session's job needs of the slurm runner; every call has its own deadline. */
export interface SessionJobOps {
  /** Whether Slurm requeues the job (`runner.requeue`): a PREEMPTED or NODE_FAIL job may come back. */
  readonly requeue: boolean;
  /** Renders and submits the session's job, named `name`, its batch script `script`; the job id. */
  submit(name: string, script: string): Promise<string>;
  /** Follows the job until it is final (requeues included); cancels it and throws on abort. */
  watch(jobId: string, signal: AbortSignal): Promise<JobInfo>;
  /** The job's state now. */
  jobInfo(jobId: string): Promise<JobInfo>;
  /** Ids of live jobs named `name`. */
  jobsNamed(name: string): Promise<string[]>;
  /** A fresh job name. */
  jobName(): string;
}

const recordPath = (dir: string): string => join(dir, 'slurm-job.json');

/** The session's job record; undefined when there is none or it is unreadable. */
export async function readSessionJob(dir: string): Promise<SessionJobRecord | undefined> {
  const text = await readFile(recordPath(dir), 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    const r = JSON.parse(text) as SessionJobRecord;
    return r.version === 1 && Array.isArray(r.jobs) ? r : undefined;
  } catch {
    return undefined;
  }
}

const writeSessionJob = (dir: string, rec: SessionJobRecord): Promise<void> => writeJsonAtomic(recordPath(dir), rec);

/**
 * What a final job state means as the trainer's exit: COMPLETED its exit code (0 after STOP),
 * FAILED the trainer's code (64 and 65 keep their meaning: the batch script exits with it), any
 * other end (TIMEOUT, CANCELLED, NODE_FAIL, OUT_OF_MEMORY, a PREEMPTED job not requeued) null.
 */
export function sessionExitCode(end: JobInfo): number | null {
  if (end.state === 'COMPLETED') return end.exitCode ?? 0;
  if (end.state === 'FAILED' && end.exitCode !== undefined && end.exitCode !== 0) return end.exitCode;
  return null;
}

/**
 * The job of a session: the recorded one when it is still live (or, in requeue mode, preempted
 * and about to come back), else a new one. Returns its id and whether it was re-attached.
 */
async function currentJob(dir: string, runId: string, ops: SessionJobOps): Promise<{ id: string; attached: boolean }> {
  const rec: SessionJobRecord = (await readSessionJob(dir)) ?? { version: 1, runId, jobs: [] };
  if (rec.submitting !== undefined) {
    // The agent died between sbatch and writing the id: the job is found by its name.
    const [id] = await ops.jobsNamed(rec.submitting);
    if (id !== undefined) {
      rec.jobs.push({ id, name: rec.submitting, submittedAt: new Date().toISOString() });
      delete rec.submitting;
      await writeSessionJob(dir, rec);
      return { id, attached: true };
    }
  }
  const last = rec.jobs.at(-1);
  if (last !== undefined && last.end === undefined) {
    const { state } = await ops.jobInfo(last.id);
    const comesBack = ops.requeue && (state === 'PREEMPTED' || state === 'NODE_FAIL');
    if ((!TERMINAL_STATES.has(state) && state !== 'UNKNOWN') || comesBack) return { id: last.id, attached: true };
  }
  const name = ops.jobName();
  rec.submitting = name;
  await writeSessionJob(dir, rec); // first, so a restart finds a job whose id we never saw
  const id = await ops.submit(name, join(dir, `job-${rec.jobs.length + 1}.sbatch`));
  rec.jobs.push({ id, name, submittedAt: new Date().toISOString() });
  delete rec.submitting;
  await writeSessionJob(dir, rec);
  return { id, attached: false };
}

/** Records how the job ended, so that a later start submits a new one instead of re-attaching. */
async function recordEnd(dir: string, jobId: string, state: SlurmState, exitCode: number | null): Promise<void> {
  const rec = await readSessionJob(dir);
  const job = rec?.jobs.find((j) => j.id === jobId);
  if (rec === undefined || job === undefined) return;
  job.end = { state, exitCode, at: new Date().toISOString() };
  await writeSessionJob(dir, rec);
}

/**
 * Starts (or re-attaches to) the session's job and follows it: `exited` settles once the job is
 * final — a requeue is not an end — and never rejects; `kill()` scancels the job and resolves
 * once it is final (bounded by the runner's cancel wait).
 */
export async function startSessionJob(launch: PersistentLaunch, runId: string, ops: SessionJobOps): Promise<PersistentTrainer> {
  const { id, attached } = await currentJob(launch.dir, runId, ops);
  const log = launch.log?.child({ phase: 'training', jobId: id });
  log?.info({ dir: launch.dir }, attached ? "re-attached to the persistent trainer's Slurm job" : "submitted the persistent trainer's Slurm job");
  const stop = new AbortController();
  const exited = ops.watch(id, stop.signal).then(
    async (end) => {
      const code = sessionExitCode(end);
      await recordEnd(launch.dir, id, end.state, code).catch(() => undefined);
      if (!stop.signal.aborted) log?.info({ slurmState: end.state, exitCode: code }, "the persistent trainer's Slurm job ended");
      return code;
    },
    async (err: unknown) => {
      // watch cancelled the job before it threw (an abort, a job pending too long, a controller gone).
      await recordEnd(launch.dir, id, 'CANCELLED', null).catch(() => undefined);
      if (!stop.signal.aborted) log?.warn({ err: { message: (err as Error).message } }, "stopped following the persistent trainer's Slurm job");
      return null;
    },
  );
  return {
    exited,
    kill: async () => {
      stop.abort(new Error('the persistent trainer was stopped'));
      await exited;
    },
  };
}
