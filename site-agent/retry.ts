/**
 * Retry or give up: the one place where the agent decides, after a failed call or step, whether
 * trying again can help. The run loop (Join and the task stream), transfers (Download, Upload) and
 * a round's failure report all ask `classifyFailure`.
 *
 * The evidence, in order:
 * 1. the agent's own errors (`SiteAgentError`) say so themselves;
 * 2. a coordinator's refusal carries its verdict next to the gRPC status, in the
 *    `fedhpc-retryable` and `fedhpc-error-code` metadata (coordinator/core/errors.ts, `toServiceError`;
 *    its call limiter too): that verdict is taken as it is, so one status can mean both (a
 *    FAILED_PRECONDITION is NOT_JOINED, retryable, or PROTOCOL_VERSION, final);
 * 3. without that verdict (a coordinator that sends none, or a status grpc-js raised on this side:
 *    UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED) the status decides, by `STATUS_VERDICTS`;
 * 4. anything else (a runner's error, the file system's) is retryable.
 *
 * Decisions that changed when the agent began reading the coordinator's verdict (each is tested in
 * test/unit/site-agent/retry.test.ts and test/integration/agent-coordinator-verdicts.test.ts):
 * - Download and Upload answered NOT_JOINED (FAILED_PRECONDITION, retryable): were final and failed
 *   the round at this site, with a failure report the coordinator refused too. Now the agent joins
 *   again (`rejoin`) and the coordinator's task stream says what is still wanted. The same holds for
 *   an evaluation and a secure-aggregation step answered NOT_JOINED.
 * - Download and Upload refused with a code the coordinator marks final on a status that used to be
 *   retried (STATE_CORRUPT, INTERNAL): were retried until the transfer's idle timeout; now fail at once.
 * - Join and the task stream refused with any code the coordinator marks final: only
 *   PERMISSION_DENIED, UNAUTHENTICATED and a FAILED_PRECONDITION whose text named PROTOCOL_VERSION
 *   ended the agent, the rest were retried forever (BAD_REQUEST for an invalid agent version); now
 *   every final verdict ends the agent with REFUSED.
 * - Join and the task stream refused without a verdict: INVALID_ARGUMENT, NOT_FOUND, OUT_OF_RANGE and
 *   every FAILED_PRECONDITION are now final, as they already were for transfers; the agent no longer
 *   reads the error's text.
 * - A round's failure report says `retryable` by the verdict; it said true for every gRPC error.
 *
 * Which coordinator to dial after a failed connection (a standby's `NOT_LEADER` naming the leader,
 * an address out of reach) is `nextCoordinator`'s decision, from the same verdict.
 *
 * After a failed upload of trained work, `afterUploadFailure` decides what becomes of the work
 * (issue 16, docs/protocol.md "Bases, staleness and folded work"): the coordinator refused the
 * folded parts (send the fresh delta alone, the window allowing), the round no longer takes this
 * site's upload (keep the work on disk to fold into a later upload), or the failure is the round's.
 */
import * as grpc from '@grpc/grpc-js';
import { droppedConnection, readGrpcRefusal } from '../common/coordinator-verdict.js';
import { SiteAgentError } from './errors.js';

// The verdict's metadata keys, the standby's code and the address rule are shared with the admin
// client (common/coordinator-verdict.ts); re-exported for the agent's own files.
export { COORDINATOR_ADDRESS, NOT_LEADER, VERDICT_METADATA, firstCoordinator, nextCoordinator, type CoordinatorCursor, type NextCoordinator } from '../common/coordinator-verdict.js';

/** The coordinator's code for a call from a session it does not know: join again, then retry. */
export const NOT_JOINED = 'NOT_JOINED';

/**
 * The agent's own verdict per gRPC status, for failures the coordinator did not classify. Final:
 * what gRPC's status guide says no retry of the same call fixes (the caller's request or rights
 * are wrong); everything else may pass (a restart, a full budget, a dropped link).
 */
export const STATUS_VERDICTS = {
  OK: { retryable: true },
  CANCELLED: { retryable: true },
  UNKNOWN: { retryable: true },
  INVALID_ARGUMENT: { retryable: false },
  DEADLINE_EXCEEDED: { retryable: true },
  NOT_FOUND: { retryable: false },
  ALREADY_EXISTS: { retryable: true },
  PERMISSION_DENIED: { retryable: false },
  RESOURCE_EXHAUSTED: { retryable: true },
  FAILED_PRECONDITION: { retryable: false },
  ABORTED: { retryable: true },
  OUT_OF_RANGE: { retryable: false },
  UNIMPLEMENTED: { retryable: true },
  INTERNAL: { retryable: true },
  UNAVAILABLE: { retryable: true },
  DATA_LOSS: { retryable: true },
  UNAUTHENTICATED: { retryable: false },
} as const satisfies Record<keyof typeof grpc.status, { retryable: boolean }>;

/** What the agent does about one failure. */
export interface FailureVerdict {
  /** Whether trying the same call or step again can succeed. */
  readonly retryable: boolean;
  /** Whether it can succeed again only after a new Join (the coordinator does not know this session). */
  readonly rejoin: boolean;
  /** A stable code: the agent's own, the coordinator's, the gRPC status name, or UNCLASSIFIED. */
  readonly code: string;
  /** Why, in words (the coordinator's details, or the error's message), for logs and reports. */
  readonly reason: string;
  /** What the verdict rests on. */
  readonly source: 'agent' | 'coordinator' | 'status' | 'other';
  /** With `NOT_LEADER`: the leader's `host:port` the standby named, when it named a well-formed one. */
  readonly leader?: string;
  /** Whether the connection dropped under the call, by grpc-js's own status ({@link droppedConnection}). */
  readonly dropped: boolean;
}

/** Decides whether `err` is worth another try; see the module comment for the order of evidence. */
export function classifyFailure(err: unknown): FailureVerdict {
  if (err instanceof SiteAgentError) return { retryable: err.retryable, rejoin: false, code: err.code, reason: err.message, source: 'agent', dropped: false };
  const refusal = readGrpcRefusal(err);
  if (refusal === undefined) {
    return { retryable: true, rejoin: false, code: 'UNCLASSIFIED', reason: err instanceof Error ? err.message : String(err), source: 'other', dropped: false };
  }
  const { said, reason, statusName, leader } = refusal;
  if (said) {
    const code = said.code ?? statusName;
    return { retryable: said.retryable, rejoin: said.retryable && code === NOT_JOINED, code, reason, source: 'coordinator', dropped: false, ...(leader ? { leader } : {}) };
  }
  return { retryable: STATUS_VERDICTS[statusName].retryable, rejoin: false, code: statusName, reason, source: 'status', dropped: droppedConnection(err) };
}

/**
 * The coordinator's codes for an upload's folded parts it will not count (a base it never
 * committed, one older than `max_staleness`, work a committed round already counted): the parts are
 * dropped and the fresh delta may go alone.
 */
export const FOLD_REFUSALS: readonly string[] = ['BASE_UNKNOWN', 'STALE_DELTA', 'ALREADY_COUNTED'];

/** The coordinator's codes for an upload its round no longer takes: the attempt is over, or this site is out of it. */
export const MISSED_ROUND: readonly string[] = ['ROUND_CLOSED', 'NOT_INVITED'];

/**
 * What becomes of trained work whose upload failed:
 * - `fresh-only`: the coordinator refused the folded parts; drop them and upload the fresh delta alone;
 * - `keep`: the work can no longer count in its round (the job was stopped to keep it, the upload
 *   window passed, or the coordinator closed the attempt to this site); keep it on disk and fold it
 *   into a later upload;
 * - `fail`: anything else, the round's failure at this site as before.
 */
export type UploadFailureAction = 'fresh-only' | 'keep' | 'fail';

/**
 * Decides {@link UploadFailureAction} for `err`. `folded`: the failed upload carried folded parts;
 * `stoppedToKeep`: the job was stopped by a newer task or the coordinator's cancel, not by a lost
 * connection (whose task may come back to resume the same upload).
 */
export function afterUploadFailure(err: unknown, o: { readonly folded: boolean; readonly stoppedToKeep: boolean }): UploadFailureAction {
  if (o.stoppedToKeep) return 'keep';
  // The agent's own word that the task's upload window has passed.
  if (err instanceof SiteAgentError && err.code === 'DEADLINE_PASSED') return 'keep';
  const verdict = classifyFailure(err);
  if (verdict.source !== 'coordinator') return 'fail';
  if (o.folded && FOLD_REFUSALS.includes(verdict.code)) return 'fresh-only';
  return MISSED_ROUND.includes(verdict.code) ? 'keep' : 'fail';
}
