/**
 * What the services may ask of the round, and nothing more: each service depends on the port it
 * needs, not on the `RoundDriver` class, so the services and the round shell do not import each
 * other. `RoundDriver` implements all three.
 */
import type { ModelPartition } from '../../aggregation/index.js';
import type { AggregatorOptions } from '../aggregate/robust.js';
import type { CheckpointStage } from '../aggregate/staged-checkpoint.js';
import type { UnmaskPlan } from '../secure/unmask.js';
import type { ResolvedRun } from '../config.js';
import type { SchedulerState, SiteProgress } from '../round/types.js';
import type { SpooledUpload, UploadIntent } from '../upload/header.js';
import type { UploadHeader } from '../upload/frames.js';
import type { RunContext } from './context.js';
import type { EvalReport, EvalTracker } from './evals.js';

/** The attempt a round is at. */
export interface AttemptAt {
  readonly round: number;
  readonly attempt: number;
}

/** Idle timeout, stream limit and window of transfers (`limits`). */
export interface TransferLimits {
  readonly idleMs: number;
  readonly maxStreamsPerSite: number;
  readonly windowBytes: number;
}

/** Drops a site from an attempt; shared by the site RPCs and uploads. */
export interface SiteFailurePort {
  /** Drops `site` from the attempt (bad upload, failed training). Stale reports are ignored. */
  failSite(site: string, round: number, attempt: number, reason: string): void;
  /** Counts transfer bytes of the attempt in progress (`reused`: kept from an earlier attempt, not sent). */
  countBytes(direction: 'up' | 'down' | 'reused', n: number): void;
}

/** What the site RPCs (task stream, downloads, evaluation and failure reports) ask of the round. */
export interface SiteRoundPort extends SiteFailurePort {
  siteConnected(site: string): void;
  siteDisconnected(site: string, awayTooLong?: boolean): void;
  /**
   * A site's score of a committed model (federated evaluation); throws NOT_ASKED, EVAL_INVALID or
   * ROUND_CLOSED when it does not count.
   */
  reportEval(site: string, report: EvalReport): void;
  transferLimits(): TransferLimits;
}

/** What the upload service asks of the round. */
export interface UploadRoundPort extends SiteFailurePort {
  /**
   * Checks `site`'s upload header against what the open round takes (the coordinator: the round,
   * the model, the run's policy; an aggregator shard: the header its leader admitted). Throws the
   * refusal: ROUND_CLOSED when no round takes uploads.
   */
  checkUpload(header: UploadHeader, site: string): UploadIntent;
  /** The attempt that trains or takes uploads now, if any. */
  uploadingAttempt(): AttemptAt | undefined;
  /** `site`'s status in that attempt (undefined when it is not part of it). */
  siteStatus(site: string): SiteProgress['status'] | undefined;
  /** Marks the start of `site`'s upload; throws when the scheduler refuses it. */
  beginUpload(site: string, intent: UploadIntent): void;
  /** A verified upload joins the round's sum; false when the attempt no longer takes it. */
  completeUpload(site: string, intent: UploadIntent, spool: SpooledUpload): boolean;
}

/** What the admin RPCs ask of (and tell) the run. */
export interface AdminRoundPort {
  /** The scheduler state (read-only), for status. */
  readonly scheduler: SchedulerState;
  readonly runContext: Readonly<RunContext> | undefined;
  /** "running", "pausing", "paused", "aborted" or the scheduler's end state. */
  readonly runState: string;
  readonly uptimeMs: number;
  readonly paused: boolean;
  readonly evals: EvalTracker;
  startRun(run: ResolvedRun, raw: unknown, admin: string): Promise<void>;
  setPaused(paused: boolean, admin: string): Promise<string>;
  abortRun(admin: string, reason: string): Promise<void>;
  /** Drops a revoked site from the open attempt and excuses it from later ones; returns the round, or 0. */
  dropRevokedSite(site: string, reason: string): number;
  excuseSite(site: string, excused: boolean): void;
}

/**
 * One aggregation asked of the aggregator shards (issue 22), in domain terms: the service turns it
 * into the wire's `ShardAggregate` (coordinator/service/wire.ts). Paths are relative to the state dir.
 */
export interface ShardAggregation {
  readonly runId: string;
  readonly round: number;
  readonly attempt: number;
  readonly globalModelSha256: string;
  /** The checkpoint whose optimizer state the step continues; undefined starts from zeros. */
  readonly previousStateSha256: string | undefined;
  readonly optimizer: { readonly name: string; readonly params: Readonly<Record<string, number>> };
  readonly step: number;
  /**
   * The sites' whole spools in the order they are summed; a secure round's are masked (`secagg16`,
   * `secagg32`). `onShard`: the site uploaded its parts to the shards, each reads its own spool (`path` is empty).
   */
  readonly inputs: readonly { readonly site: string; readonly weight: number; readonly path: string; readonly encoding: string; readonly onShard: boolean }[];
  readonly stage: CheckpointStage;
  readonly sliceElements: number;
  /** A secure round: the rebuilt secrets and the checked Σw. */
  readonly unmask: { readonly plan: UnmaskPlan; readonly weightSum: number } | undefined;
  /** How the inputs combine: the run's `aggregator` (robust ones coordinate-wise on each shard's range). */
  readonly aggregator: AggregatorOptions;
}

/** What the round's aggregation asks of the aggregator shards (coordinator/shards/registry.ts, issue 22). */
export interface ShardAggregationPort {
  /** The configured shards' names, in shard order. */
  readonly names: readonly string[];
  /** The run's partition, when every configured shard is attached and ready for the run's model. */
  readyPartition(): ModelPartition | undefined;
  /** Every shard's part of one aggregation; resolves with each shard's writes per staged file, in shard order. */
  aggregate(request: ShardAggregation, signal: AbortSignal): Promise<number[][]>;
}

