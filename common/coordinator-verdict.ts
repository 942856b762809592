/**
 * What a coordinator said when it refused a call, read from a gRPC error on the caller's side: the
 * status, and the verdict the coordinator sends beside it in metadata (coordinator/core/errors.ts
 * `toServiceError`): its fedhpc code, whether a retry can help and, with `NOT_LEADER`, the leader's
 * address. Shared by the callers that follow a standby to the leader (docs/protocol.md,
 * "Standby coordinators and NOT_LEADER"): the site agent (site-agent/retry.ts `classifyFailure`),
 * the admin client (coordinator/admin-client.ts) and an aggregator shard (coordinator/shards/shard.ts),
 * which may not import each other's files; the agent and the shard dial by the one rule of
 * {@link nextCoordinator}.
 */
import * as grpc from '@grpc/grpc-js';
import { z } from 'zod';

/** Metadata keys of the coordinator's verdict; coordinator/core/errors.ts sends them under these names. */
export const VERDICT_METADATA = { code: 'fedhpc-error-code', retryable: 'fedhpc-retryable', leader: 'fedhpc-leader' } as const;

/** A standby coordinator's code: it does not lead; `fedhpc-leader` may name the one that does. */
export const NOT_LEADER = 'NOT_LEADER';

/** A coordinator's address as configs take it: `host:port` or `[v6]:port`. */
export const COORDINATOR_ADDRESS = /^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/;

/** A gRPC error as the caller reads it. */
export interface GrpcRefusal {
  readonly status: grpc.status;
  /** The status's name: `UNAVAILABLE`, … */
  readonly statusName: keyof typeof grpc.status;
  /** The error's details (or message), for logs and reports. */
  readonly reason: string;
  /** The coordinator's own verdict, when its metadata holds a well-formed one; absent for errors grpc-js raised here. */
  readonly said?: { readonly retryable: boolean; readonly code: string | undefined };
  /** With `NOT_LEADER`: the leader's `host:port` the standby named, when it named a well-formed one. */
  readonly leader?: string;
}

/** Reads `err` as a gRPC error; undefined when it is none (no status grpc-js knows). */
export function readGrpcRefusal(err: unknown): GrpcRefusal | undefined {
  const status = grpcStatusOf(err);
  if (status === undefined) return undefined;
  const e = err as grpc.ServiceError;
  const said = verdictOf(e.metadata);
  const leader = said?.code === NOT_LEADER ? leaderOf(e.metadata) : undefined;
  return {
    status,
    statusName: grpc.status[status] as keyof typeof grpc.status,
    reason: e.details || e.message,
    ...(said ? { said } : {}),
    ...(leader ? { leader } : {}),
  };
}

/**
 * Whether a call its caller did not cancel failed for want of a connection, by grpc-js's own status
 * (no coordinator verdict): `UNAVAILABLE`, or `CANCELLED` (which a coordinator never answers with;
 * grpc-js says "Call cancelled"). When a connection drops under a call, Node synthesizes
 * `NGHTTP2_CANCEL` for its streams, and grpc-js says "Connection dropped" (UNAVAILABLE) if the
 * session's close reaches the call first, "Call cancelled" if the stream's close does
 * (subchannel-call.ts): one failure, the coordinator gone (a leader killed mid-call), told two ways
 * by a race.
 */
export function droppedConnection(err: unknown): boolean {
  const r = readGrpcRefusal(err);
  return r !== undefined && r.said === undefined && (r.status === grpc.status.UNAVAILABLE || r.status === grpc.status.CANCELLED);
}

/** The gRPC status of a gRPC error (a number grpc-js knows), else undefined. */
function grpcStatusOf(err: unknown): grpc.status | undefined {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'number' && typeof grpc.status[code] === 'string' ? (code as grpc.status) : undefined;
}

/** The coordinator's verdict, when its metadata holds a well-formed one. */
function verdictOf(metadata: grpc.Metadata | undefined): { retryable: boolean; code: string | undefined } | undefined {
  const retryable = String(metadata?.get(VERDICT_METADATA.retryable)[0] ?? '');
  if (retryable !== 'true' && retryable !== 'false') return undefined;
  const code = String(metadata?.get(VERDICT_METADATA.code)[0] ?? '');
  // Codes end up in logs and metrics labels: only the coordinator's shape of code is kept.
  return { retryable: retryable === 'true', code: /^[A-Z][A-Z0-9_]{0,63}$/.test(code) ? code : undefined };
}

/** The leader a standby named, if the entry is one `host:port` (it ends up in logs and is dialled). */
function leaderOf(metadata: grpc.Metadata | undefined): string | undefined {
  const leader = String(metadata?.get(VERDICT_METADATA.leader)[0] ?? '');
  return leader.length <= 261 && COORDINATOR_ADDRESS.test(leader) ? leader : undefined;
}

/** A coordinator address in a config file (site or admin). */
export const coordinatorAddressSchema = z.string().regex(COORDINATOR_ADDRESS, 'host:port');

/**
 * The one rule site and admin configs share: exactly one of `coordinator` (an address) and
 * `coordinators` (several, a standby pair's), with a message that says which to give.
 */
export function exactlyOneCoordinator(c: { readonly coordinator?: string | undefined; readonly coordinators?: readonly string[] | undefined }, ctx: z.RefinementCtx): void {
  if ((c.coordinator === undefined) !== (c.coordinators === undefined)) return;
  ctx.addIssue({
    code: z.ZodIssueCode.custom,
    path: [c.coordinator === undefined ? 'coordinator' : 'coordinators'],
    message: c.coordinator === undefined
      ? 'give the coordinator\'s address: "coordinator": "host:port", or several as "coordinators": ["host:port", ...]'
      : 'give either "coordinator" or "coordinators", not both',
  });
}

const MOVE_ON: readonly string[] = [NOT_LEADER, 'UNAVAILABLE', 'DEADLINE_EXCEEDED'];

/** Where the connection loop stands among the coordinators it may dial. */
export interface CoordinatorCursor {
  /** The configured addresses, in order (at least one). */
  readonly addresses: readonly string[];
  /** The configured address last dialled, or the one a hint was followed from. */
  readonly index: number;
  /** The address dialled last: `addresses[index]`, or a leader a standby named. */
  readonly current: string;
  /** Whether `current` was reached by following a `NOT_LEADER` hint. */
  readonly followed: boolean;
}

/** Where to connect next after a failed connection, and whether to wait the backoff first. */
export interface NextCoordinator {
  readonly cursor: CoordinatorCursor;
  readonly wait: 'none' | 'backoff';
  /** Why, for the agent's log: a leader named by a standby, the next configured address, or the same one again. */
  readonly why: 'leader-named' | 'leader-named-again' | 'next-address' | 'same-address';
}

/** The cursor of a connection loop that has not dialled yet: the first configured address. */
export function firstCoordinator(addresses: readonly string[]): CoordinatorCursor {
  const first = addresses[0];
  if (first === undefined) throw new RangeError('at least one coordinator address is needed');
  return { addresses, index: 0, current: first, followed: false };
}

/**
 * Decides, after a retryable failure of a connection (its code, and with `NOT_LEADER` the leader a
 * standby named), which coordinator to dial next (docs/protocol.md, "Standby coordinators and NOT_LEADER"):
 * - `NOT_LEADER` naming a leader other than `current`: that leader, at once the first time and after
 *   the backoff when a followed hint led to another `NOT_LEADER` (standbys naming each other);
 * - `NOT_LEADER` naming none, `UNAVAILABLE` or `DEADLINE_EXCEEDED` (no coordinator there, a refused
 *   certificate, a dead connection), or any other failure {@link droppedConnection} reads as a
 *   dropped connection (grpc-js's `CANCELLED` "Call cancelled"; the caller says, in `dropped`): the
 *   next configured address, waiting the backoff only once every configured address has been tried
 *   (with one address, always, as before);
 * - anything else (the coordinator is there and leads): the same address after the backoff.
 */
export function nextCoordinator(
  cursor: CoordinatorCursor,
  verdict: { readonly code: string; readonly leader?: string | undefined; readonly dropped: boolean },
): NextCoordinator {
  const { addresses, index } = cursor;
  if (verdict.code === NOT_LEADER && verdict.leader !== undefined && verdict.leader !== cursor.current) {
    const next = { addresses, index, current: verdict.leader, followed: true };
    return cursor.followed ? { cursor: next, wait: 'backoff', why: 'leader-named-again' } : { cursor: next, wait: 'none', why: 'leader-named' };
  }
  if (MOVE_ON.includes(verdict.code) || verdict.dropped) {
    const nextIndex = (index + 1) % addresses.length;
    const current = addresses[nextIndex];
    if (current === undefined) throw new RangeError('a cursor\'s index lies within its addresses');
    return { cursor: { addresses, index: nextIndex, current, followed: false }, wait: nextIndex === 0 ? 'backoff' : 'none', why: 'next-address' };
  }
  return { cursor, wait: 'backoff', why: 'same-address' };
}
