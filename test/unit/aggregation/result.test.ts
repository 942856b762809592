import { describe, expect, it } from 'vitest';
import {
  AggregationError,
  type AggregationErrorCode,
  InvariantError,
  type Result,
  SecAggError,
  type SecAggErrorCode,
  combine,
  err,
  invariant,
  ok,
  unwrap,
} from '../../../aggregation/index.js';

describe('Result', () => {
  it('builds a success holding the value', () => {
    expect(ok(3)).toEqual({ ok: true, value: 3 });
  });

  it('builds a failure with its code, its issues as a list and an empty context unless given', () => {
    expect(err('OPTIONS_INVALID', 'lr: must be positive')).toEqual({ ok: false, code: 'OPTIONS_INVALID', issues: ['lr: must be positive'], context: {} });
    expect(err('SHAMIR_DUPLICATE_X', ['a', 'b'], { x: 2 })).toEqual({ ok: false, code: 'SHAMIR_DUPLICATE_X', issues: ['a', 'b'], context: { x: 2 } });
  });

  it('unwraps a success to its value', () => {
    const r: Result<number, AggregationErrorCode> = ok(7);
    expect(unwrap(r, AggregationError)).toBe(7);
  });

  it("throws the part's error class with the failure's code, its issues after `what`, and its context plus the issues", () => {
    const r: Result<number, AggregationErrorCode> = err('SAFETENSORS_TRUNCATED', ['too short', 'no data'], { bytes: 3 });
    const thrown = (() => {
      try {
        return unwrap(r, AggregationError, 'invalid safetensors header');
      } catch (e) {
        return e;
      }
    })();
    expect(thrown).toBeInstanceOf(AggregationError);
    expect(thrown).toMatchObject({ code: 'SAFETENSORS_TRUNCATED', message: 'invalid safetensors header: too short; no data', context: { bytes: 3, issues: ['too short', 'no data'] } });
  });

  it('throws the secure-aggregation error for a secure-aggregation failure', () => {
    const r: Result<Uint8Array, SecAggErrorCode> = err('SHAMIR_TOO_FEW_SHARES', 'fewer shares than the threshold', { shares: 0 });
    expect(() => unwrap(r, SecAggError)).toThrow(expect.objectContaining({ name: 'SecAggError', code: 'SHAMIR_TOO_FEW_SHARES', message: 'fewer shares than the threshold' }));
    expect(() => combine([], { threshold: 2 })).toThrow(expect.objectContaining({ name: 'SecAggError', code: 'SHAMIR_TOO_FEW_SHARES' }));
  });
});

describe('invariant', () => {
  it('returns when the condition holds and narrows the type', () => {
    const value = [1, 2][1];
    invariant(value !== undefined, 'the second element exists');
    const n: number = value;
    expect(n).toBe(2);
  });

  it('throws an InvariantError naming what should have held', () => {
    const thrown = (() => {
      try {
        invariant(false, 'an accepted upload has a session');
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(thrown).toBeInstanceOf(InvariantError);
    expect(thrown).toMatchObject({ name: 'InvariantError', code: 'INVARIANT', message: 'invariant broken: an accepted upload has a session', context: { what: 'an accepted upload has a session' } });
  });
});
