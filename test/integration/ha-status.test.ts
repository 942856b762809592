/**
 * Operating a standby pair (issue 19): `fedhpc admin status --json` at the leader shows its role,
 * term and lease, the standby that announced itself in the lease bucket, and the NATS cluster's
 * health; after the leader is SIGKILLed the same command (the admin config lists both addresses)
 * answers from the new leader under a higher term, and a NATS subscriber sees its
 * `leader.elected` event. Real coordinator processes over a real 3-node NATS cluster; no sites.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterEach, describe, expect, it } from 'vitest';
import { natsEventSchema } from '../../coordinator/observe/events.js';
import { skipUnless } from '../helpers/components.js';
import { CLI, waitFor } from '../helpers/federation.js';
import { TEST_LEASE, startHaPair, type TestHaPair } from '../helpers/ha-pair.js';
import { natsUnavailable } from '../helpers/nats.js';

const skip = skipUnless('nats', natsUnavailable());

interface HaJson {
  role: string;
  name: string;
  term: string;
  address: string;
  leaseAgeMs: string;
  leaseTtlMs: string;
  standbys: { name: string; address: string; lastSeenMsAgo: string }[];
  nats: { connectedServer: string; journalLeader: string; peersCurrent: number; peersTotal: number; checkedMsAgo: string; error: string };
}

describe.skipIf(skip)('admin status of a standby pair', () => {
  let pair: TestHaPair | undefined;
  let nc: NatsConnection | undefined;
  afterEach(async () => {
    await nc?.close();
    await pair?.cleanup();
    nc = undefined;
    pair = undefined;
  });

  it('shows the leader, its lease, the standby and NATS health, and the new leader with a higher term after a failover', async () => {
    pair = await startHaPair({ run: { rounds: 2, minSites: 2 } });
    const p = pair;
    const status = async (): Promise<{ ha: HaJson | null }> => {
      const { stdout } = await promisify(execFile)(process.execPath, [CLI, 'admin', 'status', '--config', p.adminConfig, '--json'], { timeout: 20_000 });
      return JSON.parse(stdout) as { ha: HaJson | null };
    };
    const { a } = await p.start();
    // b announces itself every renew interval and the leader reads NATS every 2 s.
    const first = await waitFor('the leader to see the standby and a healthy cluster', async () => {
      const s = await status();
      return s.ha?.standbys.length === 1 && s.ha.nats.peersCurrent === 3 ? s.ha : undefined;
    }, 20_000, 500);
    expect(first).toMatchObject({ role: 'leader', name: 'coord-a', address: p.addresses[0], leaseTtlMs: String(TEST_LEASE.ttlMs), nats: { peersTotal: 3, error: '' } });
    expect(Number(first.term)).toBeGreaterThan(0);
    expect(Number(first.leaseAgeMs)).toBeLessThan(TEST_LEASE.ttlMs);
    expect(first.standbys[0]).toMatchObject({ name: 'coord-b', address: p.addresses[1] });
    expect(Number(first.standbys[0]!.lastSeenMsAgo)).toBeLessThan(TEST_LEASE.ttlMs);
    expect(first.nats.connectedServer).not.toBe('');
    expect(first.nats.journalLeader).not.toBe('');

    nc = await connect({ servers: [...p.cluster.urls] });
    const elected = nc.subscribe('fedhpc.testfed.events.leader.elected', { max: 1, timeout: 30_000 });
    await nc.flush();
    expect(await a.stop('SIGKILL')).toBe('SIGKILL');
    const after = await waitFor('coordinator b to lead', async () => {
      const s = await status().catch(() => undefined);
      return s?.ha?.name === 'coord-b' ? s.ha : undefined;
    }, 30_000, 250);
    expect(Number(after.term)).toBeGreaterThan(Number(first.term));
    expect(after.standbys).toEqual([]);
    for await (const m of elected) {
      const event = natsEventSchema('leader.elected').parse(m.json());
      expect(event.body).toEqual({ term: Number(after.term), holder: 'coord-b', address: p.addresses[1], previousTerm: Number(first.term) });
    }
  }, 90_000);
});
