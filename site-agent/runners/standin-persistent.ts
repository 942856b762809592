/**
 * The stand-in runner's persistent trainer (overlapped runs; docs/protocol.md, "The persistent
 * trainer"): the contract's loop in the agent's process, with the stand-in's paced sleeps for
 * steps. It never waits for a global once it has one: it applies each sync's global at a step
 * boundary, takes the sync's snapshot once the global is applied and the budget spent, and writes
 * it in the background while its steps go on, as a GPU trainer copying its weights to the host
 * would. A snapshot is the closed form of the steps since the last one (standin-model.ts), so it
 * costs one pass over the weights whatever the number of steps. `state/` holds what a restarted
 * agent resumes from: the last snapshot (a hard link), its sync and its DONE record.
 */
import { appendFile, link, mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathExists, sha256File } from '../../common/files.js';
import { SiteAgentError } from '../errors.js';
import { budgetAllows, plannedShardSteps, type TrainBudget } from './budget.js';
import { syncOrder, type PersistentLaunch, type PersistentTrainer, type SyncDone } from './persistent.js';
import { writeJsonAtomic } from './round-dir.js';
import { standinLoss, writeStandinApplied, writeStandinModel, type StandinObjective } from './standin-model.js';

/** What the loop needs of the stand-in runner. */
export interface StandinPace {
  readonly stepMs: number;
  readonly pull: number;
  readonly evalElements: number;
  readonly outputDtype: 'F32' | 'BF16';
  readonly objective: StandinObjective;
  readonly manifestSha256: string;
  readonly batch: number;
  readonly seqLen: number;
  readonly maxSteps: number | undefined;
  readonly budget: TrainBudget;
  readonly alpha: number;
}

/** `state/state.json`: the last snapshot and the record of its sync. */
interface StandinState {
  readonly step: number;
  readonly lastSync: string;
  readonly baseSha256: string;
  readonly lossRef: number;
  readonly done: SyncDone;
}

/** A sync the agent laid out, as its READY.json names it. */
interface Ready {
  readonly name: string;
  readonly round: number;
  readonly attempt: number;
  readonly modelRound: number;
  readonly globalSha256: string;
  readonly globalPath: string;
}

function after(name: string, than: string | undefined): boolean {
  if (than === undefined) return true;
  const [r, a] = syncOrder(name);
  const [r0, a0] = syncOrder(than);
  return r > r0 || (r === r0 && a > a0);
}

/**
 * Starts the loop on `launch.dir`; it resumes from `state/` when there is one. Where the module is
 * compiled (dist/), the loop runs in a worker thread of its own, as a trainer is a process of its
 * own: the agent's work in its event loop (encoding, hashing, gRPC) would otherwise delay the
 * stand-in's steps and show as idle time that a real trainer would not have. From sources (the
 * unit tests) it runs in the agent's thread.
 */
export function startStandinPersistent(launch: PersistentLaunch, pace: StandinPace): PersistentTrainer {
  const workerFile = fileURLToPath(new URL('./standin-worker.js', import.meta.url));
  if (existsSync(workerFile)) return startInWorker(workerFile, launch, pace);
  const abort = new AbortController();
  const exited = runStandinLoop(launch.dir, pace, abort.signal).then(
    () => 0,
    (err: unknown) => {
      if (abort.signal.aborted) return null;
      launch.log?.error({ phase: 'training', err: { message: (err as Error).message } }, 'the stand-in persistent trainer failed');
      return loopExitCode(err);
    },
  );
  return {
    exited,
    kill: async () => {
      abort.abort(new SiteAgentError('CANCELLED', 'the persistent trainer was stopped', false));
      await exited;
    },
  };
}

/** The exit code of a loop that failed: 65 for a global it refused, 1 otherwise. */
export function loopExitCode(err: unknown): number {
  return err instanceof SiteAgentError && err.code === 'MODEL_INVALID' ? 65 : 1;
}

function startInWorker(file: string, launch: PersistentLaunch, pace: StandinPace): PersistentTrainer {
  const worker = new Worker(file, { workerData: { dir: launch.dir, pace } });
  let killed = false;
  worker.on('message', (m: { error?: string }) => {
    if (m.error !== undefined) launch.log?.error({ phase: 'training', err: { message: m.error } }, 'the stand-in persistent trainer failed');
  });
  const exited = new Promise<number | null>((resolve) => {
    worker.once('error', () => resolve(killed ? null : 1));
    worker.once('exit', (code) => resolve(killed ? null : code));
  });
  return {
    exited,
    kill: async () => {
      killed = true;
      await worker.terminate();
      await exited;
    },
  };
}

/** The lowest sync above `last` whose READY.json is there. */
async function nextReady(dir: string, last: string | undefined): Promise<Ready | undefined> {
  const names = (await readdir(join(dir, 'syncs')).catch(() => [] as string[])).filter((n) => /^\d+\.\d+$/.test(n) && after(n, last));
  names.sort((x, y) => {
    const [a, b] = [syncOrder(x), syncOrder(y)];
    return a[0] - b[0] || a[1] - b[1];
  });
  for (const name of names) {
    const text = await readFile(join(dir, 'syncs', name, 'READY.json'), 'utf8').catch(() => undefined);
    if (text === undefined) continue;
    const r = JSON.parse(text) as Omit<Ready, 'name' | 'globalPath'>;
    return { ...r, name, globalPath: join(dir, 'syncs', name, 'global', 'model.safetensors') };
  }
  return undefined;
}

/** How often the loop looks for `STOP` and a new sync, and flushes its progress lines. */
const CHECK_MS = 100;

/** Runs the loop until `STOP` (resolves) or a failure or `signal` (rejects). */
export async function runStandinLoop(dir: string, p: StandinPace, signal: AbortSignal): Promise<void> {
  const loop = new StandinLoop(dir, p, signal);
  try {
    await loop.run();
  } finally {
    await loop.flush();
  }
}

/** A sync in training: its READY, whether its global changed the base, and where it was applied. */
interface Pending extends Ready {
  readonly applies: boolean;
  /** Steps since the last snapshot when the global was applied. */
  readonly before: number;
  readonly staleness: number;
}

/**
 * The training a sync's delta holds, which its DONE.json counts: from the snapshot before the apply
 * of its base. A sync that applies a new global starts at the last snapshot; one that applies
 * nothing (a new attempt of its round, on the same base) continues the last sync's window, since
 * its delta against that base holds the last sync's steps too (they were never counted).
 */
interface Window {
  steps: number;
  busyMs: number;
  lossSum: number;
  /** performance.now() of its start. */
  start: number;
}

const newWindow = (start: number): Window => ({ steps: 0, busyMs: 0, lossSum: 0, start });

/** What a snapshot is taken from. */
interface At {
  readonly step: number;
  /** Steps since the last snapshot: the closed form's. */
  readonly since: number;
  readonly window: Window;
  readonly lossRef: number;
}

/** One trainer's loop. */
class StandinLoop {
  private state: StandinState | undefined;
  /** A snapshot was taken (it may still be being written): the next one is measured from it. */
  private snapshotTaken = false;
  private readonly stateDir: string;
  private readonly snapshotPath: string;
  private lines: string[] = [];
  private readonly wall0 = Date.now() - performance.now();

  constructor(
    private readonly dir: string,
    private readonly p: StandinPace,
    private readonly signal: AbortSignal,
  ) {
    this.stateDir = join(dir, 'state');
    this.snapshotPath = join(this.stateDir, 'snapshot.safetensors');
  }

  async run(): Promise<void> {
    await mkdir(this.stateDir, { recursive: true });
    const saved = await readFile(join(this.stateDir, 'state.json'), 'utf8').catch(() => undefined);
    if (saved !== undefined) {
      this.state = JSON.parse(saved) as StandinState;
      this.snapshotTaken = true;
      // The snapshot is counted or kept by the agent: a DONE.json lost to the crash is written again.
      const doneDir = join(this.dir, 'syncs', this.state.lastSync);
      if ((await pathExists(doneDir)) && !(await pathExists(join(doneDir, 'DONE.json')))) await writeJsonAtomic(join(doneDir, 'DONE.json'), this.state.done);
    }
    const tokensPerStep = this.p.batch * this.p.seqLen;
    const planned = plannedShardSteps(this.p.budget, this.p.maxSteps, tokensPerStep);
    let step = this.state?.step ?? 0;
    let lossRef = this.state?.lossRef ?? 0;
    let base = this.state?.baseSha256;
    let last = this.state?.lastSync;
    let pending: Pending | undefined;
    let since = 0;
    let win = newWindow(performance.now());
    const done = this.state?.done;
    let lastWin: Window | undefined = done && { steps: done.steps, busyMs: done.busyMs, lossSum: (done.trainLoss ?? 0) * done.steps, start: (done.trainStartedMs ?? 0) - this.wall0 };
    let lastStaleness = done?.appliedStaleness ?? 0;
    let writing: Promise<void> = Promise.resolve();
    let checked = -Infinity;
    const t0 = performance.now();
    let paced = 0;
    for (;;) {
      this.signal.throwIfAborted();
      if (performance.now() - checked >= CHECK_MS || (base === undefined && !pending)) {
        checked = performance.now();
        await this.flush();
        if (await pathExists(join(this.dir, 'STOP'))) break;
        const ready = pending ? undefined : await nextReady(this.dir, last);
        if (ready) {
          await this.checkGlobal(ready);
          const applies = ready.globalSha256 !== base;
          pending = { ...ready, applies, before: since, staleness: !this.snapshotTaken ? 0 : applies ? since : lastStaleness };
          if (applies) lossRef = (await standinLoss(ready.globalPath, this.p.objective, this.p.evalElements)).loss;
          if (base === undefined) win = newWindow(performance.now());
          else if (!applies && lastWin) win = { steps: lastWin.steps + win.steps, busyMs: lastWin.busyMs + win.busyMs, lossSum: lastWin.lossSum + win.lossSum, start: lastWin.start };
          base = ready.globalSha256;
        } else if (base === undefined) {
          // No parameters before the first global: the only wait there is.
          await sleep(50, undefined, { signal: this.signal });
          continue;
        }
      }
      if (pending && !budgetAllows(this.p.budget, planned, win.steps, performance.now() - win.start)) {
        writing = this.snapshot(pending, { step, since, window: win, lossRef }, writing);
        last = pending.name;
        lastWin = win;
        lastStaleness = pending.staleness;
        pending = undefined;
        since = 0;
        win = newWindow(performance.now());
      }
      const began = performance.now();
      // Paced against the previous step's planned end: timer lateness does not slow the site down.
      paced = Math.max(paced + this.p.stepMs, began - t0);
      await until(t0 + paced, this.signal);
      const ended = performance.now();
      step += 1;
      since += 1;
      win.steps += 1;
      win.busyMs += ended - began;
      const loss = lossRef * (1 - this.p.pull) ** (2 * (since - (pending?.before ?? 0)));
      win.lossSum += loss;
      this.lines.push(JSON.stringify({ step, loss, tokens: step * tokensPerStep, ts: Math.round(this.wall0 + ended), stepMs: Math.round((ended - began) * 1000) / 1000, sync: pending?.name ?? null, appliedGlobalRound: pending?.modelRound ?? null }));
    }
    await writing;
  }

  /** Appends the buffered progress lines. */
  async flush(): Promise<void> {
    if (this.lines.length === 0) return;
    const text = `${this.lines.join('\n')}\n`;
    this.lines = [];
    await appendFile(join(this.dir, 'progress.jsonl'), text);
  }

  /** A global whose bytes are not the ones READY.json names is refused (exit 65). */
  private async checkGlobal(ready: Ready): Promise<void> {
    const actual = await sha256File(ready.globalPath, this.signal).catch(() => undefined);
    if (actual !== ready.globalSha256) throw new SiteAgentError('MODEL_INVALID', `sync ${ready.name}: global/model.safetensors has SHA-256 ${actual ?? '(missing)'}, READY.json says ${ready.globalSha256}`, false);
  }

  /**
   * Takes the snapshot of `sync` now: its model is written in the background (after `earlier`),
   * then state/ and DONE.json last. Returns the write.
   */
  private async snapshot(sync: Pending, at: At, earlier: Promise<void>): Promise<void> {
    const first = !this.snapshotTaken;
    this.snapshotTaken = true;
    const finished = Math.round(this.wall0 + performance.now());
    const started = Math.min(finished, Math.round(this.wall0 + at.window.start));
    await earlier;
    const syncDir = join(this.dir, 'syncs', sync.name);
    const out = join(syncDir, 'out', 'model.safetensors');
    await mkdir(join(syncDir, 'out'), { recursive: true });
    const { pull, objective, outputDtype } = this.p;
    if (first) await writeStandinModel(sync.globalPath, out, objective, pull, at.since, this.signal, outputDtype);
    else if (sync.applies) await writeStandinApplied(sync.globalPath, this.snapshotPath, out, objective, { pull, before: sync.before, after: at.since - sync.before, alpha: this.p.alpha }, this.signal, outputDtype);
    else await writeStandinModel(this.snapshotPath, out, objective, pull, at.since, this.signal, outputDtype);
    const tokensPerStep = this.p.batch * this.p.seqLen;
    const done: SyncDone = {
      status: 'done',
      round: sync.round,
      attempt: sync.attempt,
      steps: at.window.steps,
      tokens: at.window.steps * tokensPerStep,
      samples: at.window.steps * this.p.batch,
      trainLoss: at.window.steps === 0 ? at.lossRef : at.window.lossSum / at.window.steps,
      dataManifestSha256: this.p.manifestSha256,
      outSha256: await sha256File(out, this.signal),
      trainStartedMs: started,
      trainFinishedMs: finished,
      baseSha256: sync.globalSha256,
      appliedStaleness: sync.staleness,
      busyMs: Math.round(at.window.busyMs),
    };
    const tmp = `${this.snapshotPath}.new`;
    await rm(tmp, { force: true });
    await link(out, tmp);
    await rename(tmp, this.snapshotPath);
    this.state = { step: at.step, lastSync: sync.name, baseSha256: sync.globalSha256, lossRef: at.lossRef, done };
    await writeJsonAtomic(join(this.stateDir, 'state.json'), this.state);
    await writeJsonAtomic(join(syncDir, 'DONE.json'), done);
  }
}

/** Sleeps until `ms` on the performance clock; an abort rejects with the signal's reason. */
export async function until(ms: number, signal: AbortSignal): Promise<void> {
  // A timer may fire a fraction of a millisecond early: sleep again until the clock has passed `ms`.
  for (let wait = ms - performance.now(); wait > 0; wait = ms - performance.now()) {
    try {
      await sleep(Math.max(1, Math.ceil(wait)), undefined, { signal });
    } catch {
      throw signal.reason;
    }
  }
  signal.throwIfAborted();
}
