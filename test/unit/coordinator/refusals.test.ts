import { describe, expect, it } from 'vitest';
import { RefusalMonitor, type RefusalReason } from '../../../coordinator/observe/refusals.js';
import { testLogger } from '../../helpers/logger.js';

function monitor() {
  let now = 1_700_000_000_000;
  const counted: RefusalReason[] = [];
  const log = testLogger({ expect: [/^caller refused$/] });
  const m = new RefusalMonitor({ logger: log.logger, now: () => now, count: (r) => counted.push(r) });
  return { m, counted, lines: () => log.warnings(), advance: (ms: number) => (now += ms) };
}

const rogue = { reason: 'tls_handshake', peer: '10.0.0.9:5000', cause: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', fingerprint: 'AA:BB' } as const;

describe('RefusalMonitor', () => {
  it('counts every refusal but logs at most one line per reason and cause every 10 s, then says how many it suppressed', () => {
    const t = monitor();
    for (let i = 0; i < 5; i++) t.m.refused(rogue);
    t.m.refused({ ...rogue, cause: 'CERT_HAS_EXPIRED' });
    t.m.refused({ reason: 'not_member', peer: '10.0.0.8:1', cause: '', fingerprint: 'CC', site: 'site-99' });
    expect(t.counted).toEqual([...Array<RefusalReason>(6).fill('tls_handshake'), 'not_member']);
    expect(t.lines().map((l) => [l['reason'], l['cause'], l['suppressed']])).toEqual([
      ['tls_handshake', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 0],
      ['tls_handshake', 'CERT_HAS_EXPIRED', 0],
      ['not_member', '', 0],
    ]);
    expect(t.lines()[0]).toMatchObject({ msg: 'caller refused', peer: '10.0.0.9:5000', fingerprint: 'AA:BB' });
    expect(t.lines()[2]).toMatchObject({ site: 'site-99', fingerprint: 'CC' });
    t.advance(9_999);
    t.m.refused(rogue);
    expect(t.lines()).toHaveLength(3);
    t.advance(1);
    t.m.refused(rogue);
    expect(t.lines().at(-1)).toMatchObject({ reason: 'tls_handshake', suppressed: 5, suppressedForMs: 10_000 });
  });

  it('reports the last hour per reason, every reason listed, and forgets older refusals', () => {
    const t = monitor();
    expect(t.m.recent()).toEqual([
      { reason: 'tls_handshake', count: 0 },
      { reason: 'not_member', count: 0 },
      { reason: 'revoked', count: 0 },
    ]);
    t.m.refused(rogue);
    t.advance(30 * 60_000);
    t.m.refused(rogue);
    t.m.refused({ reason: 'revoked', peer: 'p', cause: '', site: 'bsc' });
    expect(t.m.recent()).toEqual([
      { reason: 'tls_handshake', count: 2 },
      { reason: 'not_member', count: 0 },
      { reason: 'revoked', count: 1 },
    ]);
    t.advance(31 * 60_000);
    expect(t.m.recent().find((r) => r.reason === 'tls_handshake')?.count).toBe(1);
    t.advance(60 * 60_000);
    expect(t.m.recent().every((r) => r.count === 0)).toBe(true);
  });

  it('keeps its log budget bounded when causes keep changing', () => {
    const t = monitor();
    for (let i = 0; i < 200; i++) t.m.refused({ ...rogue, cause: `CAUSE_${i}` });
    // 64 causes get their own line; the rest share the reason's budget.
    expect(t.lines()).toHaveLength(65);
  });
});
