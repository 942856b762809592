/**
 * The leader lease (coordinator/ha/lease.ts, issue 19) on a real 3-node NATS JetStream cluster
 * (Debian's nats-server, routes on loopback, the bucket replicated 3 times): one holder at a time,
 * a standby that takes a released or lapsed lease with a higher term, a holder cut off from NATS
 * that stops serving BEFORE a standby can take over, and a renewal that survives the loss of one
 * NATS node. Timings are shortened (TTL 3 s) so the test stays quick; the rules are the defaults'.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { getEventListeners } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LEASE_DEFAULTS, LeaderLease, leaseBucket, type LeaseOptions } from '../../coordinator/ha/lease.js';
import { skipUnless } from '../helpers/components.js';
import { natsUnavailable, startNatsCluster, type TestNatsCluster } from '../helpers/nats.js';
import { waitUntil } from '../helpers/wait.js';

const skip = skipUnless('nats', natsUnavailable());
const TIMING = { ttlMs: 3000, renewMs: 500, marginMs: 1000, replicas: 3 } as const;

describe.skipIf(skip)('the leader lease on a 3-node NATS cluster', () => {
  let cluster: TestNatsCluster;
  const connections: NatsConnection[] = [];
  const leases: LeaderLease[] = [];
  let federation = 0;

  beforeAll(async () => {
    cluster = await startNatsCluster(3);
  }, 60_000);
  afterAll(async () => {
    for (const l of leases) l.close();
    for (const c of connections) await c.close().catch(() => undefined);
    await cluster?.stop();
  });

  /** A coordinator's lease: its own connection (to every node), a federation per test. */
  async function lease(holder: string, fed: string, urls: readonly string[] = cluster.urls): Promise<{ lease: LeaderLease; nc: NatsConnection }> {
    const nc = await connect({ servers: [...urls], maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    connections.push(nc);
    const o: LeaseOptions = { federation: fed, holder, address: `${holder}:7443`, ...TIMING };
    const l = await LeaderLease.open(nc, o);
    leases.push(l);
    return { lease: l, nc };
  }
  const fedName = (): string => `lease-test-${++federation}`;

  it('gives the lease to one of two racing coordinators; the other takes it with a higher term once it is released', async () => {
    const fed = fedName();
    const a = await lease('coord-a', fed);
    const b = await lease('coord-b', fed);
    const acquisitions = [a.lease.acquire(AbortSignal.timeout(25_000)).then((term) => ({ who: a, term })), b.lease.acquire(AbortSignal.timeout(25_000)).then((term) => ({ who: b, term }))];
    const first = await Promise.race(acquisitions);
    const [winner, loser] = first.who === a ? [a, b] : [b, a];
    expect(winner.lease.held()).toBe(true);
    expect(await winner.lease.current()).toMatchObject({ holder: winner === a ? 'coord-a' : 'coord-b', term: first.term });
    // The other stands by through several renewals: the lease is renewed, never lapses.
    const watched = new AbortController();
    const third = (await lease('coord-c', fed)).lease.acquire(watched.signal).catch(() => undefined);
    await new Promise((r) => setTimeout(r, TIMING.ttlMs + 1000));
    // A standby's polls leave one abort listener at a time, not one per poll (it stands by for hours).
    expect(getEventListeners(watched.signal, 'abort').length).toBe(1);
    watched.abort();
    await third;
    expect(loser.lease.held()).toBe(false);
    expect(winner.lease.held()).toBe(true);
    await winner.lease.release();
    // The standby's own acquisition, still waiting since the race, takes the released lease.
    const second = await acquisitions[winner === a ? 1 : 0]!;
    expect(second.term).toBeGreaterThan(first.term);
    expect(loser.lease.held()).toBe(true);
    expect(winner.lease.held()).toBe(false);
    expect(await winner.lease.lost).toBe('released');
    expect((await loser.lease.current())?.term).toBe(second.term);
  }, 30_000);

  it('stops a holder cut off from NATS within TTL − margin of its last renewal, before a standby can take the lease', async () => {
    const fed = fedName();
    const a = await lease('coord-a', fed);
    const b = await lease('coord-b', fed);
    const termA = await a.lease.acquire(AbortSignal.timeout(10_000));
    await new Promise((r) => setTimeout(r, 1000));
    // Cut off: the holder's connection closes; it hears nothing more and cannot renew.
    const cutAt = Date.now();
    await a.nc.close();
    const takeover = b.lease.acquire(AbortSignal.timeout(30_000)).then((term) => ({ term, at: Date.now() }));
    const why = await a.lease.lost;
    const lostAt = Date.now();
    // "not renewed for N ms": N is measured from the last acknowledged renewal, which may be up to
    // renewMs before the cut. Up to 500 ms of timer lag on a loaded machine is allowed (half the
    // margin, which exists for such lag); a holder still serving at the TTL is not.
    const silentMs = Number(/not renewed for (\d+) ms/.exec(why)?.[1]);
    expect(silentMs).toBeGreaterThanOrEqual(TIMING.ttlMs - TIMING.marginMs);
    expect(silentMs).toBeLessThanOrEqual(TIMING.ttlMs - TIMING.marginMs / 2);
    expect(a.lease.held()).toBe(false);
    expect(lostAt - cutAt).toBeLessThan(TIMING.ttlMs);
    const { term, at } = await takeover;
    expect(term).toBeGreaterThan(termA);
    // The old holder had stopped serving before the new one could start: no moment with two leaders.
    expect(at).toBeGreaterThan(lostAt);
    expect(await b.lease.current()).toMatchObject({ holder: 'coord-b', term });
  }, 40_000);

  it('keeps the lease through the loss of the NATS node that leads its bucket (default timing: TTL 20 s)', async () => {
    const fed = fedName();
    const nc = await connect({ servers: [...cluster.urls], maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    connections.push(nc);
    const l = await LeaderLease.open(nc, { federation: fed, holder: 'coord-a', address: 'coord-a:7443', ...LEASE_DEFAULTS });
    leases.push(l);
    const term = await l.acquire(AbortSignal.timeout(10_000));
    const leader = (await (await jetstreamManager(nc)).streams.info(`KV_${leaseBucket(fed)}`)).cluster?.leader;
    const node = cluster.nodes.find((n) => n.name === leader)!;
    expect(node, `the bucket's leader ${leader}`).toBeDefined();
    const killedAt = Date.now();
    await node.kill();
    await waitUntil('a renewal acknowledged after the kill', () => l.lastRenewalMs > killedAt, LEASE_DEFAULTS.ttlMs - LEASE_DEFAULTS.marginMs);
    expect(l.held()).toBe(true);
    expect((await l.current())?.term).toBe(term);
    process.stdout.write(`lease renewal stalled ${l.lastRenewalMs - killedAt} ms after the bucket leader's node was killed\n`);
  }, 60_000);
});
