import { describe, expect, it } from 'vitest';
import { haRows } from '../../../cli/admin.js';

describe('admin status of a standby pair', () => {
  it('shows role, lease, standbys and NATS rows only for a coordinator with ha', () => {
    expect(haRows({ ha: null })).toEqual([]);
    const rows = haRows({
      ha: {
        role: 'leader', name: 'coord-a', term: '12', address: 'a:7443', leaseAgeMs: '300', leaseTtlMs: '20000',
        standbys: [{ name: 'coord-b', address: 'b:7443', lastSeenMsAgo: '1200' }],
        nats: { connectedServer: 'n1', journalLeader: 'n2', peersCurrent: 3, peersTotal: 3, checkedMsAgo: '500', error: '' },
      },
    });
    expect(Object.fromEntries(rows)).toEqual({
      role: 'leader: coord-a at a:7443, term 12',
      lease: 'renewed 0.3 s ago (TTL 20.0 s)',
      standbys: 'coord-b at b:7443 (seen 1.2 s ago)',
      nats: 'connected to n1; journal leader n2, 3/3 peers current (read 0.5 s ago)',
    });
  });
});
