/**
 * Overlapped rounds (issue 17; docs/protocol.md, "The persistent trainer"): one trainer per run
 * and site that trains on while each round's delta uploads and the next global model comes back.
 * {@link OverlapRunner} wraps a site's runner: a run whose `run.train.overlap` is set trains
 * through a {@link PersistentSession} — the session directory, one sync per train task, the
 * trainer's supervision — and any other run through the runner itself.
 */
import { copyFile, link, mkdir, open, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { formatZodIssues } from '../../common/config-file.js';
import { pathExists, sha256File } from '../../common/files.js';
import type { Logger } from '../../common/logger.js';
import { trainOverlapSchema, type TrainOverlap } from '../../common/train-overlap.js';
import { SiteAgentError } from '../errors.js';
import type { Allocation } from '../usage.js';
import { readTrainBudget } from './budget.js';
import { compareWithGlobal, doneSchema, writeJsonAtomic } from './round-dir.js';
import type { EvalResult, Runner, TrainRequest, TrainResult } from './runner.js';
import type { Run } from './slurm-cli.js';

/** The version of the trainer contract a persistent session's `spec.json` speaks. */
export const PERSISTENT_CONTRACT_VERSION = 3;

/** How often the agent looks for a sync's `DONE.json` and new progress lines. */
const POLL_MS = 200;

/** The most of `progress.jsonl` one look reads: its end, where the newest line is. */
const PROGRESS_READ_MAX = 64 * 1024;

/**
 * The overlap setting of a run's training settings, undefined when the run does not overlap. A
 * malformed one, or one without a budget (each sync's training is the budget), is the run's
 * mistake, the same at every site: a permanent SPEC_INVALID.
 */
export function readOverlap(train: Readonly<Record<string, unknown>>): TrainOverlap | undefined {
  const value = train['overlap'];
  if (value === undefined) return undefined;
  const parsed = trainOverlapSchema.safeParse(value);
  if (!parsed.success) throw new SiteAgentError('SPEC_INVALID', `run.train.overlap is invalid: ${formatZodIssues(parsed.error).join('; ')}`, false);
  if (readTrainBudget(train) === undefined) throw new SiteAgentError('SPEC_INVALID', 'run.train.overlap needs run.train.budget (seconds or tokens): it is the training each sync carries', false);
  return parsed.data;
}

/** `<workDir>/persistent/<runId>/`: the session directory of a run. */
export function sessionDir(workDir: string, runId: string): string {
  return join(workDir, 'persistent', runId);
}

/** The directory name of the sync of a round's attempt. */
export function syncName(round: number, attempt: number): string {
  return `${round}.${attempt}`;
}

/** A sync's round and attempt from its name `<round>.<attempt>`, for ordering syncs by number. */
export function syncOrder(name: string): [number, number] {
  const [round, attempt] = name.split('.').map(Number);
  return [round ?? 0, attempt ?? 0];
}

/** `DONE.json` of a sync: a version-2 record and what a snapshot adds. */
export const syncDoneSchema = z.intersection(
  doneSchema,
  z
    .object({
      round: z.number().int().min(0),
      attempt: z.number().int().min(0),
      baseSha256: z.string().regex(/^[0-9a-f]{64}$/),
      appliedStaleness: z.number().int().min(0),
      busyMs: z.number().min(0),
    })
    .passthrough(),
);
export type SyncDone = z.output<typeof syncDoneSchema>;

/** What a trainer's snapshot adds to a shard's result. */
export interface SyncResult extends TrainResult {
  /** Steps between the previous snapshot and the one that applied this sync's global. */
  readonly appliedStaleness: number;
  /** Milliseconds of training steps in the busy span. */
  readonly busyMs: number;
}

/** One progress line of a persistent trainer. */
interface SessionProgress {
  readonly step: number;
  readonly loss: number | null;
  readonly sync: string;
  readonly ts: number;
  readonly appliedGlobalRound?: number;
}

/** A persistent trainer as its launcher started it. */
export interface PersistentTrainer {
  /** Settles with the exit code once the trainer has ended (0 after STOP; null: killed by a signal). */
  readonly exited: Promise<number | null>;
  /** Ends it now (SIGTERM, SIGKILL after the runner's grace; in-process: aborted). Resolves once it has. */
  kill(): Promise<void>;
}

/** What a launcher is given: the session directory and the fields of `spec.json` the agent decides. */
export interface PersistentLaunch {
  readonly dir: string;
  readonly spec: Readonly<Record<string, unknown>>;
  readonly log: Logger | undefined;
}

/** A runner that can run a persistent trainer: it writes `spec.json` (with its own fields) and starts it. */
export interface PersistentCapable {
  startPersistent(launch: PersistentLaunch): Promise<PersistentTrainer>;
  /** Restarts after a crash (or exit 75) before the sync waiting on the trainer fails. */
  readonly persistentRetries: number;
  /** The dtype its snapshots have (`outputDtype`). */
  readonly outputDtype: string;
  /**
   * How the session's compute between `fromMs` (undefined: the session's start) and the snapshot
   * at `toMs` was allocated (issue 20): its Slurm jobs, or the runner's clock × its GPUs.
   */
  sessionAllocation(window: SessionWindow): Promise<Allocation>;
}

/** One sync's share of a persistent session, for its usage. */
export interface SessionWindow {
  readonly dir: string;
  readonly sessionStartedMs: number;
  readonly fromMs: number | undefined;
  readonly toMs: number;
  readonly busyMs: number;
}

function canPersist(r: Runner): r is Runner & PersistentCapable {
  return typeof (r as Partial<PersistentCapable>).startPersistent === 'function';
}

/** What an exit of the trainer means for the syncs waiting on it. */
function exitError(code: number | null, dir: string): SiteAgentError {
  if (code === 64) return new SiteAgentError('SPEC_INVALID', `the persistent trainer refused its spec (exit 64); see ${join(dir, 'trainer.log')}`, false, { dir });
  if (code === 65) return new SiteAgentError('MODEL_INVALID', `the persistent trainer refused a global model (exit 65); see ${join(dir, 'trainer.log')}`, false, { dir });
  return new SiteAgentError('TRAINING_FAILED', `the persistent trainer ${code === null ? 'was killed' : `exited with ${code}`} and its restarts are spent; see ${join(dir, 'trainer.log')}`, true, { dir });
}

/**
 * The agent's side of one run's session directory: `spec.json`, one sync per train task, the
 * trainer kept running (restarted after a crash, up to the runner's retries) until `stop()`.
 */
export class PersistentSession {
  private trainer: PersistentTrainer | undefined;
  private failure: SiteAgentError | undefined;
  private stopping = false;
  private restarts = 0;
  private progressRead = 0;
  private readonly waiters = new Set<() => void>();
  /** Each sync's snapshot time (its last step's end), by round: where the next round's usage starts. */
  private readonly boundaries = new Map<number, number>();
  private readonly startedMs = Date.now();

  private constructor(
    readonly dir: string,
    private readonly runner: Runner & PersistentCapable,
    private readonly spec: Readonly<Record<string, unknown>>,
    private readonly log: Logger | undefined,
  ) {}

  /** Opens the session of `req`'s run (a restarted agent finds the trainer's `state/` there) and starts its trainer. */
  static async open(req: TrainRequest, workDir: string, runner: Runner & PersistentCapable, overlap: TrainOverlap, log: Logger | undefined): Promise<PersistentSession> {
    const dir = sessionDir(workDir, req.runId);
    await mkdir(join(dir, 'syncs'), { recursive: true });
    await rm(join(dir, 'STOP'), { force: true });
    const train = Object.fromEntries(Object.entries(req.train).filter(([key]) => key !== 'budget' && key !== 'overlap'));
    const spec = { version: PERSISTENT_CONTRACT_VERSION, mode: 'persistent', run_id: req.runId, budget: readTrainBudget(req.train), overlap: { alpha: overlap.alpha }, train };
    const session = new PersistentSession(dir, runner, spec, log);
    await session.launch();
    return session;
  }

  private async launch(): Promise<void> {
    const trainer = await this.runner.startPersistent({ dir: this.dir, spec: this.spec, log: this.log });
    this.trainer = trainer;
    void trainer.exited.then((code) => this.exited(trainer, code));
  }

  private exited(trainer: PersistentTrainer, code: number | null): void {
    if (this.trainer !== trainer) return;
    this.trainer = undefined;
    if (this.stopping) return;
    const permanent = code === 64 || code === 65;
    if (!permanent && this.restarts < this.runner.persistentRetries) {
      this.restarts += 1;
      this.log?.warn({ phase: 'training', exitCode: code, restart: this.restarts }, 'the persistent trainer ended: restarting it from its last snapshot');
      this.launch().catch((err: unknown) => this.fail(err instanceof SiteAgentError ? err : new SiteAgentError('TRAINING_FAILED', `the persistent trainer could not be restarted: ${(err as Error).message}`, true)));
      return;
    }
    this.fail(exitError(code, this.dir));
  }

  private fail(err: SiteAgentError): void {
    this.failure = err;
    this.log?.error({ phase: 'training', err: { code: err.code, message: err.message } }, 'the persistent trainer failed');
    for (const w of [...this.waiters]) w();
  }

  /**
   * The snapshot of `req`'s sync: laid out if new (earlier rounds' syncs are removed), reused from
   * an earlier attempt of the round with the same global when `reuse` (a plain run: under secure
   * aggregation one delta never goes out under two mask sets), waited for, and checked.
   */
  async sync(req: TrainRequest, reuse: boolean): Promise<SyncResult> {
    if (this.failure) throw this.failure;
    const name = syncName(req.round, req.attempt);
    const syncs = join(this.dir, 'syncs');
    const earlier = (await readdir(syncs)).filter((n) => n !== name);
    if (reuse) {
      const sameRound = earlier.filter((x) => syncOrder(x)[0] === req.round).sort((x, y) => syncOrder(y)[1] - syncOrder(x)[1]);
      for (const n of sameRound) {
        const done = await readSyncDone(join(syncs, n));
        if (done?.baseSha256 === req.globalSha256) return this.check(req, join(syncs, n), done);
      }
    }
    for (const n of earlier) if (syncOrder(n)[0] < req.round) await rm(join(syncs, n), { recursive: true, force: true });
    const dir = join(syncs, name);
    let done = await readSyncDone(dir);
    if (!done) {
      await this.offer(req, dir);
      done = await this.waitDone(req, dir, name);
    }
    return this.check(req, dir, done);
  }

  /** Lays out the sync: its global model (a hard link, else a copy), then `READY.json` last. */
  private async offer(req: TrainRequest, dir: string): Promise<void> {
    if (await pathExists(join(dir, 'READY.json'))) return;
    await mkdir(join(dir, 'global'), { recursive: true });
    const model = join(dir, 'global', 'model.safetensors');
    await rm(model, { force: true });
    await link(req.globalPath, model).catch(() => copyFile(req.globalPath, model));
    await writeJsonAtomic(join(dir, 'READY.json'), { round: req.round, attempt: req.attempt, modelRound: req.round - 1, globalSha256: req.globalSha256 });
    this.log?.info({ round: req.round, phase: 'training', sync: syncName(req.round, req.attempt) }, 'sync offered to the persistent trainer');
  }

  private async waitDone(req: TrainRequest, dir: string, name: string): Promise<SyncDone> {
    for (;;) {
      req.signal.throwIfAborted();
      if (this.failure) throw this.failure;
      await this.forwardProgress(req, name);
      const done = await readSyncDone(dir);
      if (done) return done;
      await Promise.race([sleep(POLL_MS, undefined, { signal: req.signal }).catch(() => undefined), new Promise<void>((r) => this.waiters.add(r))]);
      this.waiters.clear();
    }
  }

  /**
   * Reports the sync's newest progress line. Reads only what the trainer appended since the last
   * look (a run's file grows by a line a step); a line cut mid-write waits for its end.
   */
  private async forwardProgress(req: TrainRequest, name: string): Promise<void> {
    const file = await open(join(this.dir, 'progress.jsonl'), 'r').catch(() => undefined);
    if (!file) return;
    let fresh = '';
    try {
      const size = (await file.stat()).size;
      if (size < this.progressRead) this.progressRead = 0; // a restarted trainer cut the file back
      const want = Math.min(size - this.progressRead, PROGRESS_READ_MAX);
      if (want <= 0) return;
      const buf = Buffer.alloc(want);
      const { bytesRead } = await file.read(buf, 0, want, size - want);
      const text = buf.subarray(0, bytesRead).toString('utf8');
      const end = text.lastIndexOf('\n') + 1;
      fresh = text.slice(0, end);
      this.progressRead = size - want + Buffer.byteLength(fresh);
    } finally {
      await file.close();
    }
    let last: SessionProgress | undefined;
    for (const line of fresh.split('\n')) {
      if (line === '') continue;
      try {
        const p = JSON.parse(line) as SessionProgress;
        if (p.sync === name) last = p;
      } catch {
        // a malformed or partial line (the window's first) is the trainer's to explain; progress is display only
      }
    }
    if (last && typeof last.loss === 'number') req.onProgress({ step: last.step, steps: last.step, loss: last.loss });
  }

  /** Checks a snapshot: its base is the sync's global, its hash is DONE.json's, its names and shapes the global's. */
  private async check(req: TrainRequest, dir: string, done: SyncDone): Promise<SyncResult> {
    const context = { dir };
    if (done.baseSha256 !== req.globalSha256) {
      throw new SiteAgentError('TRAINING_FAILED', `the snapshot of sync ${syncName(req.round, req.attempt)} was measured against model ${done.baseSha256}, not the sync's global ${req.globalSha256}: the trainer did not apply it`, false, context);
    }
    const outPath = join(dir, 'out', 'model.safetensors');
    const actual = await sha256File(outPath, req.signal).catch(() => undefined);
    if (actual === undefined) throw new SiteAgentError('TRAINING_FAILED', `DONE.json was written but ${outPath} is missing`, false, context);
    if (actual !== done.outSha256) throw new SiteAgentError('MODEL_CHECKSUM', `${outPath} has SHA-256 ${actual}, DONE.json says ${done.outSha256}`, true, context);
    const issues = await compareWithGlobal(req.globalPath, outPath, this.runner.outputDtype);
    if (issues.length > 0) throw new SiteAgentError('MODEL_INVALID', `the trainer's snapshot ${outPath} does not match the global model: ${issues.join('; ')}`, false, context);
    const busyMs = Math.round(done.busyMs);
    return {
      outPath,
      samples: done.samples,
      tokens: done.tokens,
      steps: done.steps,
      trainLoss: done.trainLoss ?? 0,
      dataManifestSha256: done.dataManifestSha256,
      trainStartedMs: done.trainStartedMs ?? 0,
      trainFinishedMs: done.trainFinishedMs ?? 0,
      appliedStaleness: done.appliedStaleness,
      busyMs,
      allocation: await this.allocation(req.round, done, busyMs),
    };
  }

  /**
   * The sync's share of the session's allocation: from the previous round's snapshot (the session's
   * start for its first sync) to this one's, so consecutive rounds' shares meet and add up.
   */
  private async allocation(round: number, done: SyncDone, busyMs: number): Promise<Allocation> {
    const toMs = done.trainFinishedMs !== undefined && done.trainFinishedMs > 0 ? done.trainFinishedMs : Date.now();
    this.boundaries.set(round, toMs);
    const earlier = [...this.boundaries.keys()].filter((r) => r < round);
    const fromMs = earlier.length > 0 ? this.boundaries.get(Math.max(...earlier)) : undefined;
    for (const r of earlier) if (r < round - 1) this.boundaries.delete(r);
    try {
      return await this.runner.sessionAllocation({ dir: this.dir, sessionStartedMs: this.startedMs, fromMs, toMs, busyMs });
    } catch (err) {
      return { kind: 'unknown', reason: `the session's allocation is not known: ${(err as Error).message}` };
    }
  }

  /** Ends the session: `STOP`, then the runner's grace, then the trainer is killed. Never throws. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    const trainer = this.trainer;
    await writeJsonAtomic(join(this.dir, 'STOP'), { stoppedMs: Date.now() }).catch(() => undefined);
    if (!trainer) return;
    let timer: NodeJS.Timeout | undefined;
    const ended = await Promise.race([trainer.exited.then(() => true), new Promise<false>((r) => (timer = setTimeout(() => r(false), graceMs)))]);
    clearTimeout(timer);
    if (!ended) await trainer.kill().catch(() => undefined);
  }
}

/** A sync's `DONE.json`, or undefined while there is none; a malformed one is the trainer's failure. */
async function readSyncDone(dir: string): Promise<SyncDone | undefined> {
  const path = join(dir, 'DONE.json');
  const text = await readFile(path, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new SiteAgentError('TRAINING_FAILED', `${path} is not JSON: ${(err as Error).message}`, false, { dir });
  }
  const parsed = syncDoneSchema.safeParse(json);
  if (!parsed.success) throw new SiteAgentError('TRAINING_FAILED', `${path} is not a sync's DONE.json: ${formatZodIssues(parsed.error).join('; ')}`, false, { dir });
  return parsed.data;
}

/** Options of {@link OverlapRunner}. */
export interface OverlapRunnerOptions {
  readonly workDir: string;
  readonly log?: Logger | undefined;
  /** How long a stopped trainer gets after `STOP` before it is killed. */
  readonly stopGraceMs: number;
}

/**
 * A site's runner, with overlapped runs trained through a persistent session. `train` of a run
 * with `run.train.overlap` returns the snapshot of the task's sync; a runner without a persistent
 * mode refuses such a run (SPEC_INVALID). The run's end stops its session.
 */
export class OverlapRunner implements Runner {
  readonly kind: string;
  private readonly sessions = new Map<string, Promise<PersistentSession>>();

  constructor(
    private readonly base: Runner,
    private readonly o: OverlapRunnerOptions,
  ) {
    this.kind = base.kind;
  }

  async train(req: TrainRequest): Promise<TrainResult> {
    const overlap = readOverlap(req.train);
    if (!overlap) return this.base.train(req);
    const base = this.base;
    if (!canPersist(base)) throw new SiteAgentError('SPEC_INVALID', `the run overlaps training with its syncs (run.train.overlap), but the ${base.kind} runner has no persistent trainer`, false);
    let session = this.sessions.get(req.runId);
    if (!session) {
      session = PersistentSession.open(req, this.o.workDir, base, overlap, this.o.log);
      this.sessions.set(req.runId, session);
      session.catch(() => this.sessions.delete(req.runId));
    }
    return (await session).sync(req, req.secure !== true);
  }

  evaluate(modelPath: string, signal: AbortSignal): Promise<EvalResult> {
    return this.base.evaluate(modelPath, signal);
  }

  accounting(jobIds: readonly string[], signal: AbortSignal): Promise<Run> {
    if (!this.base.accounting) return Promise.reject(new Error(`the ${this.base.kind} runner has no scheduler accounting`));
    return this.base.accounting(jobIds, signal);
  }

  async endRun(runId: string): Promise<void> {
    const session = this.sessions.get(runId);
    this.sessions.delete(runId);
    await session?.then((s) => s.stop(this.o.stopGraceMs)).catch(() => undefined);
    await this.base.endRun?.(runId);
  }

  async close(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(all.map((s) => s.then((x) => x.stop(this.o.stopGraceMs)).catch(() => undefined)));
    await this.base.close?.();
  }
}
