/**
 * `classifyFailure`, the agent's one retry-or-give-up decision: the coordinator's verdict in its
 * error metadata wins over the gRPC status; the status table decides only when there is none.
 */
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { COORDINATOR_ERRORS, CoordinatorError, toServiceError, type CoordinatorErrorCode } from '../../../coordinator/core/errors.js';
import { SiteAgentError } from '../../../site-agent/errors.js';
import { afterUploadFailure, classifyFailure, STATUS_VERDICTS } from '../../../site-agent/retry.js';

/** What the agent's client sees when the coordinator refuses a call with `code`. */
function refusedWith(code: CoordinatorErrorCode, message = 'test refusal'): grpc.ServiceError {
  const s = toServiceError(new CoordinatorError(code, message));
  return Object.assign(new Error(`${s.code} ${grpc.status[s.code]}: ${s.details}`), { code: s.code, details: s.details, metadata: s.metadata! });
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
