import { describe, expect, it } from 'vitest';
import { parseStandbyAnnouncement } from '../../../coordinator/ha/lease.js';
import { standbysSeen, streamHealth } from '../../../coordinator/ha/view.js';

describe('a standby pair in admin status', () => {
  it('counts the journal stream leader as a current peer beside its followers', () => {
    const replicas = [
      { name: 'n2', current: true },
      { name: 'n3', current: false },
    ];
    expect(streamHealth({ leader: 'n1', replicas })).toEqual({ journalLeader: 'n1', peersCurrent: 2, peersTotal: 3 });
    expect(streamHealth({ leader: 'n1', replicas: [{ name: 'n2', current: true, offline: true }, { name: 'n3', current: true }] })).toEqual({ journalLeader: 'n1', peersCurrent: 2, peersTotal: 3 });
  });

  it('counts no peer current while the stream has no leader, and nothing before it was read', () => {
    expect(streamHealth({ replicas: [{ name: 'n2', current: true }] })).toEqual({ journalLeader: '', peersCurrent: 0, peersTotal: 1 });
    expect(streamHealth(undefined)).toEqual({ journalLeader: '', peersCurrent: 0, peersTotal: 0 });
  });

  it('lists the standbys but the leader itself, by name, with an age that a skewed clock cannot make negative', () => {
    const seen = standbysSeen(
      [
        { name: 'coord-c', address: 'c:1', seenMs: 9_000 },
        { name: 'coord-a', address: 'a:1', seenMs: 9_500 },
        { name: 'coord-b', address: 'b:1', seenMs: 11_000 },
      ],
      'coord-a',
      10_000,
    );
    expect(seen).toEqual([
      { name: 'coord-b', address: 'b:1', lastSeenMsAgo: 0 },
      { name: 'coord-c', address: 'c:1', lastSeenMsAgo: 1_000 },
    ]);
  });

  it('reads a standby announcement and refuses a value that is not one', () => {
    expect(parseStandbyAnnouncement('{"name":"coord-b","address":"b:7443","seenMs":5}')).toEqual({ name: 'coord-b', address: 'b:7443', seenMs: 5 });
    for (const bad of ['', 'null', '[]', '{"name":"b","address":"b:1"}', '{"name":1,"address":"b:1","seenMs":5}', '{"name":"b","address":"b:1","seenMs":"5"}']) {
      expect(parseStandbyAnnouncement(bad)).toBeUndefined();
    }
  });
});
