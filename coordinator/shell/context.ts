/**
 * What the round driver shares with its effect runner (effects.ts) and its aggregate and
 * commit steps (commit.ts): the run and attempt being driven, and the driver's live state
 * read through `RoundContext`, so that each piece keeps one owner.
 */
import type { ServerOptimizer } from '../../aggregation/index.js';
import type { Logger } from '../../common/logger.js';
import type { RunningConfig } from '../config.js';
import type { DriverOptions } from './driver.js';
import type { EvalTracker } from './evals.js';
import type { RunPlan, SchedulerEvent, SchedulerState } from '../round/types.js';
import type { RunControlState } from './run-control.js';
import type { SecureSide } from '../secure/coordinator-side.js';
import type { LayoutTensor, SpooledUpload, UploadIntent } from '../upload/header.js';
import type { RunPartition } from './run-start.js';
import type { RunBases } from '../upload/bases.js';

/** The run being driven: its plan, optimizer and the global model its next round trains. */
export interface RunContext {
  readonly plan: RunPlan;
  readonly optimizer: ServerOptimizer;
  globalSha256: string;
  globalBytes: number;
  /** Round that produced the current global model (0: the initial model). */
  modelRound: number;
  stateSha256: string | undefined;
  serverSteps: number;
  tensors: LayoutTensor[];
  /** Committed models an upload may name as its base, and the work already counted. */
  readonly bases: RunBases;
  /** The run's partition over its aggregator shards, as journaled (issue 22); none without shards. */
  readonly shards: RunPartition;
}

/** The open round attempt: its traffic and the verified uploads that join its sum. */
export interface AttemptContext {
  readonly round: number;
  readonly attempt: number;
  readonly startedMs: number;
  bytesUp: number;
  bytesDown: number;
  /** Upload bytes kept from an earlier attempt of the round (upload/reuse.ts). */
  bytesReused: number;
  readonly uploads: Map<string, { intent: UploadIntent; spool: SpooledUpload }>;
}

/** The driver as its effect runner and round steps see it: services, live state, and the scheduler feed. */
export interface RoundContext {
  readonly o: DriverOptions;
  readonly log: Logger;
  /** Admin controls: the open round's revoked and left-out sites. */
  readonly control: RunControlState;
  readonly evals: EvalTracker;
  /** The run being driven; only called while one is. */
  run(): RunContext;
  /** The active run's config; throws INTERNAL while no run is driven. */
  config(): RunningConfig;
  /** Secure aggregation middleware, when the run uses it. */
  secure(): SecureSide | undefined;
  scheduler(): SchedulerState;
  /** Feeds one event to the scheduler; a refusal is the scheduler's answer, not an error. */
  dispatch(event: SchedulerEvent): void;
  /** Feeds an event that opens a round, or holds it while the run is paused. */
  advance(event: SchedulerEvent): void;
  /** Pauses the run as an admin's pause does (journaled, with `reason`), for an admin to look at. */
  pause(reason: string): Promise<void>;
}
