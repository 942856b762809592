/**
 * The journal's record bodies. The journal is the source of truth for what happened: restart
 * replays it, `admin rounds` reads it, and the audit trail is built on it.
 */
import type { ResolvedOptimizerOptions } from '../../aggregation/index.js';
import type { ReceiptDelta } from '../../common/receipt.js';
import type { RoundUsage } from '../../common/usage.js';
import type { RunPlan } from '../round/types.js';
import type { CheckpointDtype } from './checkpoint-dtype.js';

export interface RunStartedRecord {
  readonly type: 'run-started';
  readonly runId: string;
  readonly plan: RunPlan;
  readonly strategy: ResolvedOptimizerOptions;
  readonly weighting: string;
  readonly encoding: string;
  readonly train: Record<string, unknown>;
  readonly initialModelSha256: string;
  /**
   * `run.checkpointDtype` when the run set it; absent, each tensor keeps the initial model's dtype
   * (older journals: every checkpoint F32). The initial checkpoint's tensors show what was applied.
   */
  readonly checkpointDtype?: CheckpointDtype;
  /** The full resolved coordinator config the run started with, secrets left out (audit). Absent in older journals. */
  readonly config?: Record<string, unknown>;
}

/**
 * A site joined with a certificate (audit): written the first time a site connects and whenever its
 * certificate or agent version changes; reconnections with the same certificate are only events.
 */
export interface SiteJoinedRecord {
  readonly type: 'site-joined';
  readonly site: string;
  /** SHA-256 of the certificate DER (Node's `fingerprint256` format). */
  readonly fingerprint: string;
  readonly agentVersion: string;
}

/**
 * A participant's signed receipt of a committed round (audit). The signature covers
 * `common/receipt.ts`'s payload of the fields below; the certificate travels with it, so the
 * receipt can be checked offline against the federation CA.
 */
export interface ReceiptRecord {
  readonly type: 'receipt';
  readonly federation: string;
  readonly runId: string;
  readonly round: number;
  readonly site: string;
  /** Hash of the `round-committed` record this receipt acknowledges. */
  readonly committedHash: string;
  readonly parentSha256: string;
  readonly modelSha256: string;
  readonly dataManifestSha256: string;
  /** The site certificate (PEM) whose key signed, and its fingerprint. */
  readonly certificatePem: string;
  readonly fingerprint: string;
  /** ECDSA P-256 / SHA-256 signature, DER, base64. */
  readonly signature: string;
  /**
   * The site's declared usage of the round (protocol version 6; signed: `fedhpc-receipt-v2`).
   * Absent in receipts journaled before version 6, whose signature covers no usage.
   */
  readonly usage?: RoundUsage;
  /**
   * The delta the site's upload was recorded under, and its parts' hashes when it went in parts
   * (protocol version 12; signed: `fedhpc-receipt-v3`). Absent in version 2 receipts.
   */
  readonly delta?: ReceiptDelta;
}

/**
 * A coordinator became the leader of a standby pair (issue 19): its first record under its lease's
 * term, before it replays and serves. Recovery skips it; `admin status` and the audit read it.
 */
export interface LeaderRecord {
  readonly type: 'leader';
  readonly term: number;
  /** The coordinator's `ha.name` and `ha.advertise`. */
  readonly holder: string;
  readonly address: string;
}

/**
 * How a run's model is cut over its aggregator shards from round `fromRound` on (issue 22): written
 * when a run starts with shards, and again when a coordinator resumes it with another set of shards
 * (`shards` empty: from then on the coordinator aggregates alone). Shard s owns values
 * [bounds[s], bounds[s + 1]) of the flat model (aggregation/partition.ts).
 */
export interface ShardsPartitionedRecord {
  readonly type: 'shards-partitioned';
  readonly runId: string;
  readonly fromRound: number;
  /** The shards' names, in shard order. */
  readonly shards: readonly string[];
  readonly alignValues: number;
  /** K + 1 flat value offsets (K = 0: none). */
  readonly bounds: readonly number[];
}

/** A run's round count raised by a later start with the same run id. */
export interface RunExtendedRecord {
  readonly type: 'run-extended';
  readonly runId: string;
  readonly rounds: number;
}

export interface RoundOpenedRecord {
  readonly type: 'round-opened';
  readonly runId: string;
  readonly round: number;
  readonly attempt: number;
}

/** Earlier work a participant folded into its upload (protocol version 4). */
export interface FoldedPartRecord {
  readonly baseModelSha256: string;
  readonly staleness: number;
  readonly samples: number;
  readonly tokens: number;
  readonly steps: number;
  /** What the part counted: its discounted count times the scale that fitted it under maxSiteWeight. */
  readonly count: number;
}

export interface ParticipantRecord {
  readonly site: string;
  /** The count the upload weighed with (fresh and folded parts together, discounted). */
  readonly weight: number;
  readonly samples: number;
  readonly tokens: number;
  readonly steps: number;
  readonly trainLoss: number;
  readonly deltaSha256: string;
  readonly dataManifestSha256: string;
  /** The global model the fresh part trained from; absent before protocol version 4 (the parent). */
  readonly baseModelSha256?: string;
  /** Rounds the fresh part's base lay behind the round's model. */
  readonly staleness?: number;
  readonly folded?: readonly FoldedPartRecord[];
  /** First and last training step of the fresh part, ms on the site's clock (0: unknown). */
  readonly trainStartedMs?: number;
  readonly trainFinishedMs?: number;
  /**
   * Overlapped rounds (protocol version 5): inner steps between the site's previous snapshot and
   * the step that applied the round's model; absent before version 5, 0 when not overlapped.
   */
  readonly appliedStaleness?: number;
  /** The sum of the fresh part's step durations, ms (absent before version 5; 0: not reported). */
  readonly busyMs?: number;
}

export interface RoundCommittedRecord {
  readonly type: 'round-committed';
  readonly runId: string;
  readonly round: number;
  readonly attempt: number;
  readonly participants: readonly ParticipantRecord[];
  readonly dropped: readonly string[];
  readonly parentSha256: string;
  readonly modelSha256: string;
  readonly strategy: ResolvedOptimizerOptions;
  readonly serverStep: number;
  readonly bytesUp: number;
  readonly bytesDown: number;
  readonly startedMs: number;
}

export interface RoundAbortedRecord {
  readonly type: 'round-aborted';
  readonly runId: string;
  readonly round: number;
  readonly attempt: number;
  readonly reason: string;
}

export interface EvalRecord {
  readonly type: 'eval';
  readonly runId: string;
  readonly modelRound: number;
  readonly modelSha256: string;
  readonly sites: readonly { site: string; loss: number; samples: number }[];
  /** Sample-weighted mean loss over the reporting sites. */
  readonly loss: number;
  readonly samples: number;
}

export interface RunFinishedRecord {
  readonly type: 'run-finished';
  readonly runId: string;
  readonly rounds: number;
  readonly modelSha256: string;
}

export interface RunFailedRecord {
  readonly type: 'run-failed';
  readonly runId: string;
  readonly reason: string;
}

/**
 * A secure attempt whose unmasked sum failed a check (`code`: WEIGHT_SUM_MISMATCH or
 * SUM_OUT_OF_RANGE), with every participant and the count it declared: the sum cannot say which
 * of them sent the words, so an admin gets them all. A `round-aborted` record follows; the second
 * of these in one round pauses the run (a `run-paused` record whose admin is `coordinator`).
 */
export interface SumCheckFailedRecord {
  readonly type: 'sum-check-failed';
  readonly runId: string;
  readonly round: number;
  readonly attempt: number;
  readonly code: string;
  readonly message: string;
  /** Each participant and its declared weight (samples, tokens or 1, by `run.weighting`). */
  readonly participants: readonly { readonly site: string; readonly weight: number }[];
}

export type StateRecord =
  | RunStartedRecord
  | RunExtendedRecord
  | RoundOpenedRecord
  | RoundCommittedRecord
  | RoundAbortedRecord
  | EvalRecord
  | RunFinishedRecord
  | RunFailedRecord
  | SumCheckFailedRecord
  | SiteJoinedRecord
  | ReceiptRecord
  | LeaderRecord
  | ShardsPartitionedRecord;

/** Whether one journal body is a record of `type`: the narrowing of {@link recordsOf}, for any run. */
export function isRecordOf<T extends StateRecord['type']>(body: { readonly type: string }, type: T): body is Extract<StateRecord, { type: T }> {
  return body.type === type;
}

/** Narrows journal bodies to the records of one run, by type. */
export function recordsOf<T extends StateRecord['type']>(
  bodies: readonly { readonly type: string }[],
  runId: string,
  type: T,
): Extract<StateRecord, { type: T }>[] {
  return bodies.filter(
    (b): b is Extract<StateRecord, { type: T }> => b.type === type && (b as { runId?: string }).runId === runId,
  );
}
