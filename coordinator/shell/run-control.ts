/**
 * Admin control of runs, as the journal records it: which run is active at start-up (the
 * coordinator config's embedded run, or one an admin started with `fedhpc admin start`), whether
 * it is paused or was aborted, and the sites revoked out of the open round.
 */
import { parseConfig } from '../../common/config-file.js';
import { runSchema, type ResolvedRun } from '../config.js';
import { CoordinatorError } from '../core/errors.js';
import type { RunState, SchedulerEvent } from '../round/types.js';
import type { JournalRecord } from '../state/journal.js';

/** Journal record of a run started by an admin: the run file as sent, so a restart can resume it. */
export interface RunRequestedRecord {
  readonly type: 'run-requested';
  readonly runId: string;
  readonly run: unknown;
  readonly admin: string;
}

/** Journal records of pause, resume and abort. */
export interface RunControlRecord {
  readonly type: 'run-paused' | 'run-resumed' | 'run-aborted';
  readonly runId: string;
  readonly admin: string;
  readonly reason?: string;
}

/** The run to drive at start-up, and whether an admin aborted it. */
export interface ActiveRun {
  readonly run: ResolvedRun;
  readonly aborted: boolean;
}

const of = (records: readonly JournalRecord[], type: string, runId?: string) =>
  records.filter((r) => r.body.type === type && (runId === undefined || r.body['runId'] === runId));

/**
 * The run to drive after a (re)start: the latest admin-started run when it is also the latest run
 * the journal started, otherwise the config's embedded run, otherwise none (the coordinator idles).
 */
export function activeRunAtStart(records: readonly JournalRecord[], configured: ResolvedRun | undefined): ActiveRun | undefined {
  const requested = of(records, 'run-requested').at(-1)?.body as RunRequestedRecord | undefined;
  const lastStarted = of(records, 'run-started').at(-1)?.body['runId'];
  let run = configured;
  if (requested && (lastStarted === undefined || lastStarted === requested.runId)) {
    run = parseConfig(`journal run-requested ${requested.runId}`, requested.run, runSchema);
  }
  if (!run) return undefined;
  return { run, aborted: of(records, 'run-aborted', run.id).length > 0 };
}

/** Throws `RUN_STATE` unless a new run with id `runId` may start now. */
export function assertCanStart(phase: RunState['phase'], records: readonly JournalRecord[], runId: string): void {
  if (phase !== 'idle' && phase !== 'finished' && phase !== 'failed') {
    throw new CoordinatorError('RUN_STATE', `a run is active (phase ${phase}): abort it or let it finish before starting another`, { phase });
  }
  if (of(records, 'run-started', runId).length > 0) {
    throw new CoordinatorError('RUN_STATE', `run id ${JSON.stringify(runId)} was already used in this state dir; pick a new id`, { runId });
  }
}

/**
 * Pause and abort flags of the active run. A pause takes effect at the next round boundary: the
 * open round runs to its commit (retrying attempts as usual), then the event that would open the
 * next round is held until `resume`.
 */
export class RunControlState {
  paused = false;
  aborted = false;
  /** The round-opening event held back while paused. */
  held: SchedulerEvent | undefined;
  /** Sites revoked during the open attempt; their uploads are left out of its sum. */
  readonly excluded = new Set<string>();
  /** Of those, the ones whose uploads aggregation actually left out. */
  readonly leftOut = new Set<string>();

  /** Resets to what the journal says about `runId`. */
  restore(records: readonly JournalRecord[], runId: string): void {
    const last = records.filter((r) => (r.body.type === 'run-paused' || r.body.type === 'run-resumed') && r.body['runId'] === runId).at(-1);
    this.paused = last?.body.type === 'run-paused';
    this.aborted = of(records, 'run-aborted', runId).length > 0;
    this.held = undefined;
    this.excluded.clear();
    this.leftOut.clear();
  }

  /** Holds `event` when paused; returns whether it was held. */
  hold(event: SchedulerEvent): boolean {
    if (!this.paused) return false;
    this.held = event;
    return true;
  }

  /** Sets the flag; on resume returns the held event, to be dispatched now. */
  setPaused(paused: boolean): SchedulerEvent | undefined {
    this.paused = paused;
    if (paused) return undefined;
    const held = this.held;
    this.held = undefined;
    return held;
  }
}
