/**
 * Typed coordinator errors. Each has a stable `code`; those that cross the wire say whether a retry
 * can help, and `toServiceError` is the one place that maps them to gRPC status codes.
 */
import * as grpc from '@grpc/grpc-js';
import { printable } from '../../common/text.js';
import { VERDICT_METADATA } from '../../common/coordinator-verdict.js';

/** Stable error codes, with the gRPC status each maps to and whether a retry can help. */
export const COORDINATOR_ERRORS = {
  UNAUTHENTICATED: { status: grpc.status.UNAUTHENTICATED, retryable: false },
  PERMISSION_DENIED: { status: grpc.status.PERMISSION_DENIED, retryable: false },
  SITE_MISMATCH: { status: grpc.status.PERMISSION_DENIED, retryable: false },
  PROTOCOL_VERSION: { status: grpc.status.FAILED_PRECONDITION, retryable: false },
  NOT_JOINED: { status: grpc.status.FAILED_PRECONDITION, retryable: true },
  ROUND_CLOSED: { status: grpc.status.FAILED_PRECONDITION, retryable: false },
  NOT_INVITED: { status: grpc.status.FAILED_PRECONDITION, retryable: false },
  UPLOAD_INVALID: { status: grpc.status.INVALID_ARGUMENT, retryable: false },
  TENSOR_MISMATCH: { status: grpc.status.INVALID_ARGUMENT, retryable: false },
  NON_FINITE: { status: grpc.status.INVALID_ARGUMENT, retryable: false },
  CHUNK_OUT_OF_RANGE: { status: grpc.status.OUT_OF_RANGE, retryable: false },
  CHECKSUM_MISMATCH: { status: grpc.status.DATA_LOSS, retryable: true },
  UPLOAD_INTERRUPTED: { status: grpc.status.ABORTED, retryable: true },
  /** A site opened more upload streams at once than `limits.maxStreamsPerSite`; its others go on. */
  TOO_MANY_STREAMS: { status: grpc.status.RESOURCE_EXHAUSTED, retryable: true },
  BAD_REQUEST: { status: grpc.status.INVALID_ARGUMENT, retryable: false },
  MODEL_NOT_FOUND: { status: grpc.status.NOT_FOUND, retryable: false },
  STATE_CORRUPT: { status: grpc.status.INTERNAL, retryable: false },
  INTERNAL: { status: grpc.status.INTERNAL, retryable: true },
  /** An admin command that the run's state does not allow (start while a run is active, ...). */
  RUN_STATE: { status: grpc.status.FAILED_PRECONDITION, retryable: false },
  /** A revoked site's certificate. */
  SITE_REVOKED: { status: grpc.status.PERMISSION_DENIED, retryable: false },
  /**
   * A site certificate the federation CA signed for a site that is not a member: not in the
   * coordinator's `members` and never approved by an admin (coordinator/sites/membership.ts).
   */
  NOT_MEMBER: { status: grpc.status.PERMISSION_DENIED, retryable: false },
  /** An enrolment the coordinator refuses (a key other than the site's, a certificate of another CA). */
  ENROLMENT_REFUSED: { status: grpc.status.FAILED_PRECONDITION, retryable: false },
  UNKNOWN_SITE: { status: grpc.status.NOT_FOUND, retryable: false },
  /**
   * Fewer verified uploads than an aggregation needs (the run's `minSites` once revoked sites are
   * left out; at least one for a robust aggregator). A later attempt may gather enough.
   */
  TOO_FEW_UPLOADS: { status: grpc.status.FAILED_PRECONDITION, retryable: true },
  /** A site revoked after its upload is in a masked sum, which cannot leave it out: the attempt restarts without it. */
  REVOKED_IN_SUM: { status: grpc.status.FAILED_PRECONDITION, retryable: true },
  /** Uploads whose weights do not add up to a positive total: there is no weighted mean to take. */
  ZERO_WEIGHT: { status: grpc.status.FAILED_PRECONDITION, retryable: false },
  /** An upload header whose weight (samples, tokens or 1, by `run.weighting`) exceeds `run.maxSiteWeight`: refused, never clamped. */
  WEIGHT_OUT_OF_RANGE: { status: grpc.status.OUT_OF_RANGE, retryable: false },
  /** A token-budgeted run: an upload declaring more tokens than the budget plus one batch. */
  BUDGET_EXCEEDED: { status: grpc.status.OUT_OF_RANGE, retryable: false },
  /** An upload part's base is no committed model of this run: its delta cannot be placed. */
  BASE_UNKNOWN: { status: grpc.status.FAILED_PRECONDITION, retryable: false },
  /** An upload part's base is more than `run.maxStaleness` rounds old: drop it and train from the task's model. */
  STALE_DELTA: { status: grpc.status.FAILED_PRECONDITION, retryable: false },
  /** A folded part whose work (site, base) a committed round already counted: work counts once. */
  ALREADY_COUNTED: { status: grpc.status.FAILED_PRECONDITION, retryable: false },
  /**
   * Overlapped rounds: an upload whose applied staleness (inner steps between the site's previous
   * snapshot and the step that applied the round's model) exceeds `run.train.overlap.maxAppliedSteps`.
   */
  STALE_TRAINER: { status: grpc.status.FAILED_PRECONDITION, retryable: false },
  /**
   * Secure rounds: the unmasked Σw differs from the sum of the weights the participants declared in
   * their headers by more than rounding allows. The sum cannot say which site lied; a later attempt may pass.
   */
  WEIGHT_SUM_MISMATCH: { status: grpc.status.FAILED_PRECONDITION, retryable: true },
  /** Secure rounds: a coordinate of the unmasked sum lies beyond Σwᵢ·c plus rounding. A later attempt may pass. */
  SUM_OUT_OF_RANGE: { status: grpc.status.FAILED_PRECONDITION, retryable: true },
  /**
   * A new checkpoint value, finite in f32, that the run's checkpoint dtype cannot hold (f16 beyond
   * 65504): the import or the aggregation is refused rather than a checkpoint holding ±Inf.
   */
  CHECKPOINT_OVERFLOW: { status: grpc.status.FAILED_PRECONDITION, retryable: false },
  /**
   * An evaluation report whose figures are no score: a loss not finite or below 0, samples not a
   * positive integer or more than the evaluation asked for (`run.evalMaxSamples`).
   */
  EVAL_INVALID: { status: grpc.status.INVALID_ARGUMENT, retryable: false },
  /** An evaluation report nobody asked this site for: another run, another model, a second different score. */
  NOT_ASKED: { status: grpc.status.FAILED_PRECONDITION, retryable: false },
  /**
   * Free text that must be a label or one line (an agent version, an activity, a failure code, an
   * admin's reason) holds a control or bidi character, or is too long (common/text.ts).
   */
  TEXT_INVALID: { status: grpc.status.INVALID_ARGUMENT, retryable: false },
  /**
   * The replicated journal: another writer extended the chain (a record of this coordinator's was
   * published but is not on the chain, or the head already has a higher term). The record is not
   * committed and never will be: this coordinator has lost leadership (coordinator/state/jetstream-journal.ts).
   */
  JOURNAL_FENCED: { status: grpc.status.FAILED_PRECONDITION, retryable: false },
  /**
   * The replicated journal did not acknowledge an append before its deadline (NATS without quorum or
   * out of reach). Not committed as far as anyone was told, but the record may still reach the chain:
   * the writer reads the chain again before it writes or acknowledges anything else.
   */
  JOURNAL_UNAVAILABLE: { status: grpc.status.UNAVAILABLE, retryable: true },
  /**
   * A standby coordinator answering: it does not lead the federation now. The leader's address, when
   * the standby knows one, travels in the `fedhpc-leader` metadata entry ({@link ERROR_METADATA});
   * the caller dials it, or its next configured address (coordinator/ha/standby-server.ts).
   */
  NOT_LEADER: { status: grpc.status.UNAVAILABLE, retryable: true },
  /**
   * A coordinator whose configured run differs from the run its journal started under the same id in
   * anything but more rounds (coordinator/shell/run-match.ts): it refuses to start, or a standby to
   * stand by, rather than resume the journal's run as if configured so or change it silently. The
   * message names each field with the journal's and the config's values. Never answers a call.
   */
  RUN_CONFIG_MISMATCH: { status: grpc.status.FAILED_PRECONDITION, retryable: false },
  /**
   * An aggregator shard (issue 22) failed its part of the aggregation, or its stream ended before it
   * answered: the attempt is aborted and retried. Never answers a call.
   */
  SHARD_FAILED: { status: grpc.status.UNAVAILABLE, retryable: true },
  /**
   * An aggregator shard has no admission of the site's upload for this attempt (yet): its leader's
   * `ShardAdmit` is on its way, or is sent again when the shard, restarted, attaches. Ask again.
   */
  NOT_ADMITTED: { status: grpc.status.UNAVAILABLE, retryable: true },
} as const satisfies Record<string, { status: grpc.status; retryable: boolean }>;

export type CoordinatorErrorCode = keyof typeof COORDINATOR_ERRORS;

/**
 * An error raised by the coordinator, safe to show to the caller (no secrets in message or context).
 * Messages and context often quote what a caller sent, and they reach logs, trailers and terminals:
 * both are kept printable (common/text.ts), whatever the caller put in them.
 */
export class CoordinatorError extends Error {
  readonly retryable: boolean;
  readonly context: Readonly<Record<string, string | number | boolean>>;
  constructor(
    readonly code: CoordinatorErrorCode,
    message: string,
    context: Readonly<Record<string, string | number | boolean>> = {},
    options?: { cause?: unknown },
  ) {
    super(printable(message), options);
    this.name = 'CoordinatorError';
    this.retryable = COORDINATOR_ERRORS[code].retryable;
    this.context = Object.fromEntries(Object.entries(context).map(([k, v]) => [k, typeof v === 'string' ? printable(v) : v]));
  }
}

/**
 * Metadata keys that carry the fedhpc error code and retry hint next to the gRPC status, and, with
 * `NOT_LEADER`, the leader's `host:port` (absent while no leader is known). The names are defined once,
 * in common/coordinator-verdict.ts, where sites and admins read them.
 */
export const ERROR_METADATA = VERDICT_METADATA;

/** Longest error message sent to a caller, in characters. */
const MAX_DETAILS_CHARS = 1024;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** Maps any thrown value to the gRPC error the caller receives. Unknown errors become INTERNAL. */
export function toServiceError(err: unknown): Partial<grpc.ServiceError> & { code: grpc.status; details: string } {
  const e = err instanceof CoordinatorError ? err : new CoordinatorError('INTERNAL', 'internal error', {}, { cause: err });
  const metadata = new grpc.Metadata();
  metadata.set(ERROR_METADATA.code, e.code);
  metadata.set(ERROR_METADATA.retryable, String(e.retryable));
  const leader = e.code === 'NOT_LEADER' ? e.context['leader'] : undefined;
  if (typeof leader === 'string' && leader !== '') metadata.set(ERROR_METADATA.leader, leader);
  // Messages may quote what the caller sent; the status travels in an HTTP/2 trailer, and one
  // larger than the peer's header limit never arrives (the call hangs until its deadline).
  // Lone surrogates (a quoted half of a character) make grpc-js's percent-encoding throw: replace them.
  const message = (e.message.length > MAX_DETAILS_CHARS ? `${e.message.slice(0, MAX_DETAILS_CHARS)}… (${e.message.length} characters)` : e.message).replace(LONE_SURROGATE, '\uFFFD');
  return { code: COORDINATOR_ERRORS[e.code].status, details: `${e.code}: ${message}`, metadata, name: e.name, message };
}
