/**
 * The admin client's choice of coordinator after a failed call (`afterAdminFailure`): a standby's
 * NOT_LEADER naming the leader is followed once, a second NOT_LEADER is LEADER_BOUNCED, a
 * coordinator out of reach moves the call to the next configured address, and every other answer
 * (a leader's refusal, its own UNAVAILABLE verdict) is the call's, as before there were several.
 */
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { AdminClient, AdminClientError, afterAdminFailure, startRoute, type AdminRoute, type AdminStep } from '../../../coordinator/admin-client.js';
import { CoordinatorError, toServiceError, type CoordinatorErrorCode } from '../../../coordinator/core/errors.js';

function refusedWith(code: CoordinatorErrorCode, context: Record<string, string> = {}): grpc.ServiceError {
  const s = toServiceError(new CoordinatorError(code, 'test refusal', context));
  return Object.assign(new Error(`${s.code}: ${s.details}`), { code: s.code, details: s.details, metadata: s.metadata! });
}

const notLeader = (leader?: string): grpc.ServiceError => refusedWith('NOT_LEADER', leader === undefined ? {} : { leader });

/** A gRPC error raised by grpc-js on this side: no coordinator verdict. */
function bare(status: grpc.status, details = 'No connection established'): grpc.ServiceError {
  return Object.assign(new Error(`${status}: ${details}`), { code: status, details, metadata: new grpc.Metadata() });
}

function dialled(step: AdminStep): AdminRoute {
  expect(step.kind).toBe('dial');
  if (step.kind !== 'dial') throw new Error('unreachable');
  return step.route;
}

function failed(step: AdminStep): unknown {
  expect(step.kind).toBe('fail');
  return step.kind === 'fail' ? step.error : undefined;
}

const TWO = ['standby.example.org:7443', 'leader.example.org:7443'];

describe('afterAdminFailure', () => {
  it('follows a standby\'s NOT_LEADER to the leader it names, at once', () => {
    const next = dialled(afterAdminFailure(startRoute(['standby.example.org:7443']), notLeader('leader.example.org:7443')));
    expect(next).toMatchObject({ current: 'leader.example.org:7443', followed: true, index: 0, dialled: ['standby.example.org:7443', 'leader.example.org:7443'] });
  });

  it('fails with LEADER_BOUNCED when the leader it was sent to answers NOT_LEADER too, naming the addresses', () => {
    const followed = dialled(afterAdminFailure(startRoute(TWO), notLeader('other.example.org:7443')));
    for (const second of [notLeader('standby.example.org:7443'), notLeader()]) {
      const err = failed(afterAdminFailure(followed, second));
      expect(err).toBeInstanceOf(AdminClientError);
      expect(err).toMatchObject({ code: 'LEADER_BOUNCED', context: { dialled: ['standby.example.org:7443', 'other.example.org:7443'] }, cause: second });
      expect((err as Error).message).toContain('other.example.org:7443, which standby.example.org:7443 named as the leader, answered NOT_LEADER too');
    }
  });

  it('moves to the next configured address on UNAVAILABLE raised here and on NOT_LEADER naming no leader, each address once', () => {
    const first = startRoute(TWO);
    const second = dialled(afterAdminFailure(first, bare(grpc.status.UNAVAILABLE)));
    expect(second).toMatchObject({ current: 'leader.example.org:7443', index: 1, followed: false, tried: 2 });
    expect(dialled(afterAdminFailure(first, notLeader()))).toMatchObject({ current: 'leader.example.org:7443', index: 1 });
    const err = failed(afterAdminFailure(second, bare(grpc.status.UNAVAILABLE, 'connect ECONNREFUSED')));
    expect(err).toMatchObject({ code: 'NO_LEADER_REACHED', context: { dialled: TWO } });
    expect((err as Error).message).toContain('the last said: connect ECONNREFUSED');
  });

  it('after a followed leader out of reach, tries the configured addresses not yet dialled', () => {
    const followed = dialled(afterAdminFailure(startRoute(TWO), notLeader('gone.example.org:7443')));
    expect(dialled(afterAdminFailure(followed, bare(grpc.status.UNAVAILABLE)))).toMatchObject({ current: 'leader.example.org:7443', followed: false, index: 1 });
  });

  it('with one address, gives back grpc-js\'s own error as before', () => {
    const e = bare(grpc.status.UNAVAILABLE);
    expect(failed(afterAdminFailure(startRoute(['c.example.org:7443']), e))).toBe(e);
  });

  it('returns every other answer as it is: a leader\'s refusals, its own UNAVAILABLE verdicts, deadlines, non-gRPC errors', () => {
    const route = startRoute(TWO);
    for (const e of [refusedWith('PERMISSION_DENIED'), refusedWith('JOURNAL_UNAVAILABLE'), refusedWith('BAD_REQUEST'), bare(grpc.status.DEADLINE_EXCEEDED), bare(grpc.status.PERMISSION_DENIED), new Error('empty response')]) {
      expect(failed(afterAdminFailure(route, e))).toBe(e);
    }
  });

  it('a call that starts at a leader followed earlier has every configured address left to try', () => {
    const route = startRoute(TWO, { index: 0, current: 'leader.example.org:9999' });
    expect(route).toMatchObject({ tried: 0, followed: false });
    expect(dialled(afterAdminFailure(route, bare(grpc.status.UNAVAILABLE)))).toMatchObject({ current: 'leader.example.org:7443', tried: 1 });
  });
});

describe('AdminClient options', () => {
  it('treats both or neither of coordinator and coordinators as a bug', () => {
    const tls = { ca: '/nonexistent/ca', cert: '/nonexistent/c', key: '/nonexistent/k' };
    expect(() => new AdminClient({ coordinator: 'a:1', coordinators: ['b:2'], tls })).toThrow(/coordinator or coordinators, not both/);
    expect(() => new AdminClient({ tls })).toThrow(/coordinator or coordinators, not both/);
  });
});
