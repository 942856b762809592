/**
 * `classifyFailure`, the agent's one retry-or-give-up decision: the coordinator's verdict in its
 * error metadata wins over the gRPC status; the status table decides only when there is none.
 */
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { COORDINATOR_ERRORS, CoordinatorError, toServiceError, type CoordinatorErrorCode } from '../../../coordinator/core/errors.js';
import { SiteAgentError } from '../../../site-agent/errors.js';
import { afterUploadFailure, classifyFailure, firstCoordinator, nextCoordinator, STATUS_VERDICTS, type CoordinatorCursor } from '../../../site-agent/retry.js';

/** What the agent's client sees when the coordinator refuses a call with `code`. */
function refusedWith(code: CoordinatorErrorCode, message = 'test refusal'): grpc.ServiceError {
  const s = toServiceError(new CoordinatorError(code, message));
  return Object.assign(new Error(`${s.code} ${grpc.status[s.code]}: ${s.details}`), { code: s.code, details: s.details, metadata: s.metadata! });
}

/** What the agent sees when a standby refuses it, naming `leader` (none: no leader known). */
function notLeader(leader?: string): grpc.ServiceError {
  const s = toServiceError(new CoordinatorError('NOT_LEADER', 'this coordinator is a standby', leader === undefined ? {} : { leader }));
  return Object.assign(new Error(`${s.code}: ${s.details}`), { code: s.code, details: s.details, metadata: s.metadata! });
}

/** A gRPC error without the coordinator's metadata (an old coordinator, or raised by grpc-js here). */
function bare(status: grpc.status, details = 'no verdict'): grpc.ServiceError {
  return Object.assign(new Error(`${status} ${grpc.status[status]}: ${details}`), { code: status, details, metadata: new grpc.Metadata() });
}

describe('classifyFailure', () => {
  it('takes every coordinator code at the coordinator\'s word, whatever its gRPC status', () => {
    for (const [code, rule] of Object.entries(COORDINATOR_ERRORS) as [CoordinatorErrorCode, { retryable: boolean }][]) {
      const v = classifyFailure(refusedWith(code));
      expect({ code: v.code, retryable: v.retryable, rejoin: v.rejoin, source: v.source }, code).toEqual({
        code,
        retryable: rule.retryable,
        rejoin: code === 'NOT_JOINED',
        source: 'coordinator',
      });
      expect(v.reason).toContain('test refusal');
    }
  });

  it('decides by the status table only when the coordinator sent no verdict', () => {
    for (const [name, row] of Object.entries(STATUS_VERDICTS)) {
      const status = grpc.status[name as keyof typeof grpc.status];
      expect(classifyFailure(bare(status)), name).toMatchObject({ retryable: row.retryable, rejoin: false, code: name, source: 'status' });
    }
    // The table pinned: what gRPC says a retry cannot fix, and nothing else, is final.
    const finals = Object.entries(STATUS_VERDICTS).filter(([, r]) => !r.retryable).map(([n]) => n).sort();
    expect(finals).toEqual(['FAILED_PRECONDITION', 'INVALID_ARGUMENT', 'NOT_FOUND', 'OUT_OF_RANGE', 'PERMISSION_DENIED', 'UNAUTHENTICATED']);
  });

  it('falls back to the status when the verdict is malformed', () => {
    const md = new grpc.Metadata();
    md.set('fedhpc-retryable', 'maybe');
    md.set('fedhpc-error-code', 'NOT_JOINED');
    const err = Object.assign(new Error('x'), { code: grpc.status.FAILED_PRECONDITION, details: 'NOT_JOINED: x', metadata: md });
    expect(classifyFailure(err)).toMatchObject({ retryable: false, rejoin: false, code: 'FAILED_PRECONDITION', source: 'status' });
  });

  it('takes the agent\'s own errors at their word, and retries anything else (a runner\'s, the file system\'s)', () => {
    expect(classifyFailure(new SiteAgentError('TRANSFER_STALLED', 'stalled', true))).toMatchObject({ retryable: true, rejoin: false, code: 'TRANSFER_STALLED', source: 'agent' });
    expect(classifyFailure(new SiteAgentError('CERTIFICATE_INVALID', 'expired', false))).toMatchObject({ retryable: false, code: 'CERTIFICATE_INVALID', source: 'agent' });
    expect(classifyFailure(Object.assign(new Error('disk full'), { code: 'ENOSPC' }))).toMatchObject({ retryable: true, rejoin: false, code: 'UNCLASSIFIED', reason: 'disk full', source: 'other' });
    expect(classifyFailure('a string')).toMatchObject({ retryable: true, code: 'UNCLASSIFIED', source: 'other' });
  });

  describe('the decisions that changed when the agent began reading the coordinator\'s verdict', () => {
    it('NOT_JOINED (FAILED_PRECONDITION) is retried after a new Join; transfers used to treat it as final', () => {
      expect(classifyFailure(refusedWith('NOT_JOINED'))).toMatchObject({ retryable: true, rejoin: true });
    });

    it('STATE_CORRUPT (INTERNAL) is final; transfers used to retry it until their idle timeout', () => {
      expect(classifyFailure(refusedWith('STATE_CORRUPT'))).toMatchObject({ retryable: false, rejoin: false });
    });

    it('BAD_REQUEST (INVALID_ARGUMENT) at Join is final; the run loop used to retry it forever', () => {
      expect(classifyFailure(refusedWith('BAD_REQUEST'))).toMatchObject({ retryable: false });
    });

    it('a FAILED_PRECONDITION without a verdict is final whatever its text; the run loop used to retry it unless it named PROTOCOL_VERSION', () => {
      expect(classifyFailure(bare(grpc.status.FAILED_PRECONDITION, 'NOT_JOINED: site must call Join first'))).toMatchObject({ retryable: false, rejoin: false });
    });
  });
});

describe('afterUploadFailure', () => {
  it('sends the fresh delta alone when the coordinator refuses folded parts, keeps work a round no longer takes, and fails the rest', () => {
    for (const code of ['BASE_UNKNOWN', 'STALE_DELTA', 'ALREADY_COUNTED'] as const) {
      expect(afterUploadFailure(refusedWith(code), { folded: true, stoppedToKeep: false }), code).toBe('fresh-only');
      // Without folded parts, a refusal of the fresh part's base is the round's failure.
      expect(afterUploadFailure(refusedWith(code), { folded: false, stoppedToKeep: false }), code).toBe('fail');
    }
    for (const code of ['ROUND_CLOSED', 'NOT_INVITED'] as const) expect(afterUploadFailure(refusedWith(code), { folded: true, stoppedToKeep: false }), code).toBe('keep');
    expect(afterUploadFailure(new SiteAgentError('DEADLINE_PASSED', 'the upload window passed', false), { folded: false, stoppedToKeep: false })).toBe('keep');
    expect(afterUploadFailure(new SiteAgentError('CANCELLED', 'superseded by a new round task', false), { folded: false, stoppedToKeep: true })).toBe('keep');
    expect(afterUploadFailure(new SiteAgentError('CANCELLED', 'disconnected', false), { folded: false, stoppedToKeep: false })).toBe('fail');
    expect(afterUploadFailure(refusedWith('WEIGHT_OUT_OF_RANGE'), { folded: true, stoppedToKeep: false })).toBe('fail');
    // A status without the coordinator's verdict says nothing about the round.
    expect(afterUploadFailure(bare(grpc.status.FAILED_PRECONDITION), { folded: true, stoppedToKeep: false })).toBe('fail');
  });
});

describe('nextCoordinator', () => {
  const two = firstCoordinator(['standby.example.org:7443', 'leader.example.org:7443']);

  it('reads the leader a standby names from the fedhpc-leader metadata, and only a host:port', () => {
    expect(classifyFailure(notLeader('leader.example.org:7443'))).toMatchObject({ code: 'NOT_LEADER', retryable: true, rejoin: false, leader: 'leader.example.org:7443', source: 'coordinator' });
    expect(classifyFailure(notLeader('[::1]:7443')).leader).toBe('[::1]:7443');
    expect(classifyFailure(notLeader()).leader).toBeUndefined();
    for (const bad of ['leader.example.org', 'a b:1', 'x:123456', 'http://x:1']) expect(classifyFailure(notLeader(bad)).leader, bad).toBeUndefined();
    // Another code's leader entry is not read.
    const err = refusedWith('NOT_JOINED');
    err.metadata.set('fedhpc-leader', 'elsewhere:1');
    expect(classifyFailure(err).leader).toBeUndefined();
  });

  it('follows a leader a standby names at once, and after the backoff when the address it was sent to is no leader either', () => {
    const first = nextCoordinator(two, classifyFailure(notLeader('leader.example.org:7443')));
    expect(first).toEqual({ cursor: { ...two, current: 'leader.example.org:7443', followed: true }, wait: 'none', why: 'leader-named' });
    const again = nextCoordinator(first.cursor, classifyFailure(notLeader('third.example.org:7443')));
    expect(again).toEqual({ cursor: { ...two, current: 'third.example.org:7443', followed: true }, wait: 'backoff', why: 'leader-named-again' });
  });

  it('moves to the next configured address when no leader is named or the address is out of reach, waiting only after a full turn', () => {
    // A standby naming itself names no leader.
    expect(nextCoordinator(two, classifyFailure(notLeader('standby.example.org:7443')))).toEqual({ cursor: { ...two, index: 1, current: 'leader.example.org:7443' }, wait: 'none', why: 'next-address' });
    // A CANCELLED without a verdict is a connection grpc-js saw drop (it reports some so, "Call cancelled").
    for (const err of [notLeader(), bare(grpc.status.UNAVAILABLE), bare(grpc.status.DEADLINE_EXCEEDED), bare(grpc.status.CANCELLED, 'Call cancelled')]) {
      const next = nextCoordinator(two, classifyFailure(err));
      expect(next, err.details).toEqual({ cursor: { ...two, index: 1, current: 'leader.example.org:7443' }, wait: 'none', why: 'next-address' });
      expect(nextCoordinator(next.cursor, classifyFailure(err)), err.details).toEqual({ cursor: two, wait: 'backoff', why: 'next-address' });
    }
    // A followed leader out of reach: back to the configured addresses after the standby that named it.
    const followed: CoordinatorCursor = { ...two, current: 'leader.example.org:7443', followed: true };
    expect(nextCoordinator(followed, classifyFailure(bare(grpc.status.UNAVAILABLE)))).toEqual({ cursor: { ...two, index: 1, current: 'leader.example.org:7443' }, wait: 'none', why: 'next-address' });
  });

  it('with one address, retries it after the backoff, as before several could be given', () => {
    const one = firstCoordinator(['coordinator.example.org:7443']);
    expect(nextCoordinator(one, classifyFailure(bare(grpc.status.UNAVAILABLE)))).toEqual({ cursor: one, wait: 'backoff', why: 'next-address' });
    expect(nextCoordinator(one, classifyFailure(notLeader()))).toEqual({ cursor: one, wait: 'backoff', why: 'next-address' });
  });

  it('stays with a coordinator that answers as the leader (a forgotten session, a closed stream)', () => {
    // A CANCELLED that is the agent's own word (it stopped something itself), not grpc-js's status, is no dropped connection.
    const ownCancel = new SiteAgentError('CANCELLED', 'stopped here', true);
    for (const err of [refusedWith('NOT_JOINED'), refusedWith('INTERNAL'), new Error('coordinator closed the task stream'), ownCancel]) {
      expect(nextCoordinator(two, classifyFailure(err))).toEqual({ cursor: two, wait: 'backoff', why: 'same-address' });
    }
  });

  it('needs at least one address', () => {
    expect(() => firstCoordinator([])).toThrow(RangeError);
  });
});
