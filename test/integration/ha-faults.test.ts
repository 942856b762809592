/**
 * A standby pair under faults (issue 19's Tests): two real coordinator processes with `ha` over a
 * real 3-node NATS JetStream cluster on loopback, two site agents configured with both addresses.
 * One plain and one secure run each lose their leader in every phase: SIGKILLed at its crash point
 * (coordinator/core/crash-points.ts, armed for one round: polling `admin status` cannot hit the
 * short phases reliably) in round 1, the new leader in round 2, and so on, each killed coordinator
 * restarted as the standby armed for a later round, so the lead alternates and one run covers every
 * phase. The old leader is also restarted while the other leads, and cut off from NATS through a
 * TCP proxy the test controls. Each time the run finishes with every round committed once in the
 * replicated journal, one chain that `verifyChain` accepts. The pair is test/helpers/ha-pair.ts
 * `startHaPair`, as for the failover and status tests.
 */
import { once } from 'node:events';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { connect } from '@nats-io/transport-node';
import { afterEach, describe, expect, it } from 'vitest';
import type { CrashPoint } from '../../coordinator/index.js';
import { readJournalChain } from '../../coordinator/state/jetstream-journal.js';
import { journalStreamName, journalSubject } from '../../coordinator/state/journal-stream.js';
import { verifyChain, type JournalRecord } from '../../coordinator/state/journal.js';
import { skipUnless } from '../helpers/components.js';
import { waitFor, type Proc } from '../helpers/federation.js';
import { startHaPair, TEST_LEASE, type TestHaPair } from '../helpers/ha-pair.js';
import { natsUnavailable, type TestNatsCluster } from '../helpers/nats.js';
import { RawRpcClient, rpcNamed } from '../helpers/raw-rpc.js';
import { adminCertFiles } from '../helpers/raw-site.js';

const skip = skipUnless('nats', natsUnavailable());
const ROUNDS = 3;
const LEASE = TEST_LEASE;
const DEADLINES = { openS: 20, trainingS: 30, uploadS: 30, aggregateS: 20, commitS: 20, evalS: 10 };

/** A TCP proxy to one address whose traffic the test can cut (both ways, connections kept open). */
interface CuttableProxy {
  readonly port: number;
  /** Drops every byte from now on and refuses new connections: a partition, not a reset. */
  cut(): void;
  close(): Promise<void>;
}

async function startCuttableProxy(targetPort: number): Promise<CuttableProxy> {
  const sockets = new Set<Socket>();
  let cut = false;
  const server: Server = createServer((client) => {
    if (cut) return void client.destroy();
    const upstream = netConnect(targetPort, '127.0.0.1');
    for (const [from, to] of [[client, upstream], [upstream, client]] as const) {
      sockets.add(from);
      from.on('data', (d: Buffer) => void (cut || to.write(d)));
      from.on('error', () => to.destroy());
      from.on('close', () => (sockets.delete(from), to.destroy()));
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as { port: number }).port,
    cut: () => void (cut = true),
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** How and when a process exited. */
interface Death {
  readonly code: number | string;
  readonly at: number;
}

const deathOf = (p: Proc): Promise<Death> => p.exited.then((code) => ({ code, at: Date.now() }));

/** `p`, or a rejection naming `what` once `ms` have passed. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

describe.skipIf(skip)('a standby coordinator pair under faults', () => {
  let pair: TestHaPair | undefined;
  const closers: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
    await pair?.cleanup();
    pair = undefined;
  });

  /** A federation of two sites and a pair's two configs (a's `nats.url` may differ: a proxy), not yet started. */
  const newPair = (secure: boolean, o: { rounds?: number; natsUrlOfA?: (c: TestNatsCluster) => Promise<string> } = {}): Promise<TestHaPair> =>
    startHaPair({ run: { rounds: o.rounds ?? ROUNDS, minSites: 2, deadlines: DEADLINES, secureAggregation: { enabled: secure } }, lease: LEASE, ...(o.natsUrlOfA ? { natsUrlOfA: o.natsUrlOfA } : {}) });

  /** {@link newPair} as the pair of a test that runs alone, stopped after it. */
  async function setUpPair(secure: boolean, o: { natsUrlOfA?: (c: TestNatsCluster) => Promise<string> } = {}): Promise<TestHaPair> {
    pair = await newPair(secure, o);
    return pair;
  }

  async function waitFinished(pair: TestHaPair, address: string, rounds = ROUNDS): Promise<void> {
    const admin = pair.admin(address);
    const final = await waitFor('the run to finish', () => admin.status().then((s) => (s.runState === 'finished' ? s : undefined), () => undefined), 120_000);
    expect(Number(final.roundsCommitted)).toBe(rounds);
  }

  /** The replicated journal: one chain that verifies, every round committed once. */
  async function expectJournal(rounds = ROUNDS, of = pair!): Promise<readonly JournalRecord[]> {
    const nc = await connect({ servers: [...of.cluster.urls] });
    try {
      const { records } = await readJournalChain(nc, { stream: journalStreamName('testfed'), subject: journalSubject('testfed'), timeoutMs: 20_000 });
      expect(verifyChain(records).ok).toBe(true);
      expect(records.filter((r) => r.body.type === 'round-committed').map((r) => r.body['round'])).toEqual(Array.from({ length: rounds }, (_, i) => i + 1));
      return records;
    } finally {
      await nc.close();
    }
  }

  const leaders = (records: readonly JournalRecord[]): string[] => records.filter((r) => r.body.type === 'leader').map((r) => String(r.body['holder']));

  /** For each leader record after the first: the round open when it took over, and the rounds committed by then. */
  function takeovers(records: readonly JournalRecord[]): { openRound: number; committed: number }[] {
    const out: { openRound: number; committed: number }[] = [];
    let openRound = 0;
    let committed = 0;
    let leaderRecords = 0;
    for (const { body } of records) {
      if (body.type === 'round-opened') openRound = Number(body['round']);
      if (body.type === 'round-committed') committed += 1;
      if (body.type === 'leader' && leaderRecords++ > 0) out.push({ openRound, committed });
    }
    return out;
  }

  /**
   * Where each round's leader is SIGKILLed (`kills[k]` in round k + 1): every phase of the mode, and in
   * plain mode both sides of commit's journal append, the commit point (the same code in secure mode).
   */
  const CHAINS = [
    { mode: 'plain', secure: false, kills: ['phase.training', 'phase.upload', 'phase.aggregate', 'phase.commit', 'commit.before-journal', 'commit.after-journal'] },
    { mode: 'secure', secure: true, kills: ['phase.keys', 'phase.shares', 'phase.training', 'phase.upload', 'phase.unmask', 'phase.aggregate', 'phase.commit'] },
  ] as const satisfies readonly { mode: string; secure: boolean; kills: readonly CrashPoint[] }[];

  // Concurrent: a run spends most of its time waiting out leases, the two together little more than the secure one.
  it.concurrent.for(CHAINS)('finishes a $mode run whose leader is SIGKILLed in every phase, a new leader each round: every round committed once, the lead alternating', { timeout: 300_000 }, async ({ mode, secure, kills }, { onTestFinished }) => {
    // As many rounds as kills: the last kill also fails over the run's final round.
    const rounds = kills.length;
    const pair = await newPair(secure, { rounds });
    onTestFinished(() => pair.cleanup());
    // Kill k is armed on the coordinator that leads round k + 1: a for even k, b for odd.
    const armedFor = (k: number): NodeJS.ProcessEnv => (k < kills.length ? { ...process.env, FEDHPC_CRASH_AT: `${kills[k]}@${k + 1}` } : process.env);
    const started = await pair.start(armedFor(0), armedFor(1));
    const procs: [Proc, Proc] = [started.a, started.b];
    const deaths: [Promise<Death>, Promise<Death>] = [deathOf(started.a), deathOf(started.b)];
    const raws = [new RawRpcClient(pair.addresses[0], adminCertFiles(pair.fed)), new RawRpcClient(pair.addresses[1], adminCertFiles(pair.fed))] as const;
    onTestFinished(() => raws.forEach((r) => r.close()));
    // Raw calls: an AdminClient would follow a standby's NOT_LEADER to the leader and call that serving.
    const serving = async (i: 0 | 1): Promise<boolean> => (await raws[i].call(rpcNamed('AdminService/Status'), [Buffer.alloc(0)], 1_000)).code === grpc.status.OK;
    const failovers: string[] = [];
    for (const [k, point] of kills.entries()) {
      const dead = k % 2 === 0 ? 0 : 1;
      const next = dead === 0 ? 1 : 0;
      const { code, at } = await within(deaths[dead], 90_000, `coordinator ${'ab'[dead]} to die at ${point}@${k + 1}`);
      expect(code).toBe('SIGKILL');
      await waitFor(`coordinator ${'ab'[next]} to serve after ${point}@${k + 1}`, async () => ((await serving(next)) ? true : undefined), 60_000, 100).catch(async (err: Error) => {
        // What the standby was doing: exited, or standing by, and its last words (a CI run once timed out here).
        const exited = await Promise.race([deaths[next].then((d) => `exited ${String(d.code)}`), new Promise<string>((r) => setTimeout(() => r('still running'), 100))]);
        const tail = (await procs[next].logText()).trim().split('\n').slice(-15).join('\n');
        throw new Error(`${err.message}; coordinator ${'ab'[next]} ${exited}; its log ends:\n${tail}`);
      });
      failovers.push(`${point}@${k + 1} ${'ab'[dead]}→${'ab'[next]} ${((Date.now() - at) / 1000).toFixed(1)} s`);
      // Restarted only once the other leads: started at once, it could take the expired lease
      // before the standby does, and the lead would no longer alternate.
      procs[dead] = await pair.startCoordinator(dead, armedFor(k + 2), `coord-${'ab'[dead]}-${k + 2}`);
      deaths[dead] = deathOf(procs[dead]);
    }
    process.stdout.write(`failovers (${mode}, TTL ${LEASE.ttlMs / 1000} s): ${failovers.join('; ')}\n`);
    await waitFinished(pair, pair.addresses[kills.length % 2 === 0 ? 0 : 1], rounds);
    const records = await expectJournal(rounds, pair);
    expect(leaders(records)).toEqual(Array.from({ length: kills.length + 1 }, (_, i) => `coord-${'ab'[i % 2]}`));
    // Each leader died in the round its kill was armed for, with that round committed only when the
    // journal already named it (after the append), never otherwise.
    expect(takeovers(records)).toEqual(kills.map((point, k) => ({ openRound: k + 1, committed: point === 'commit.after-journal' ? k + 1 : k })));
  });

  async function waitCommitted(pair: TestHaPair, address: string, n: number): Promise<void> {
    const admin = pair.admin(address);
    await waitFor(`round ${n} committed`, () => admin.status().then((s) => (Number(s.roundsCommitted) >= n ? s : undefined), () => undefined), 90_000);
  }

  it('stands the old leader by when it is restarted while the new one leads: NOT_LEADER naming it, no leader record of its own', async () => {
    const pair = await setUpPair(false);
    const { a } = await pair.start();
    await waitCommitted(pair, pair.addresses[0], 1);
    expect(await a.stop('SIGKILL')).toBe('SIGKILL');
    const adminB = pair.admin(pair.addresses[1]);
    await waitFor('coordinator b to serve', () => adminB.status().then((s) => s, () => undefined), 60_000, 100);

    const again = await pair.startCoordinator(0, process.env, 'coord-a-again');
    const raw = new RawRpcClient(pair.addresses[0], adminCertFiles(pair.fed));
    closers.push(() => raw.close());
    const refusal = await waitFor('the restarted a to answer', async () => {
      const o = await raw.call(rpcNamed('AdminService/Status'), [Buffer.alloc(0)], 2_000);
      return o.fedhpcCode === 'NOT_LEADER' && o.leader !== undefined ? o : undefined;
    }, 30_000);
    expect(refusal.leader).toBe(pair.addresses[1]);
    await waitFinished(pair, pair.addresses[1]);
    // Still standing by once the run is over: it never took the lease from a live leader.
    expect(again.child.exitCode).toBeNull();
    expect((await raw.call(rpcNamed('AdminService/Status'), [Buffer.alloc(0)], 2_000)).fedhpcCode).toBe('NOT_LEADER');
    expect(leaders(await expectJournal())).toEqual(['coord-a', 'coord-b']);
  }, 120_000);

  it('stops the leader within the TTL when it is cut off from NATS (exit 3), and the standby finishes the run, nothing committed twice', async () => {
    // a reaches NATS only through the proxy (one node; the cut is a silent partition, so it never
    // sees a disconnect that would send it to the cluster's other, advertised nodes).
    let proxy: CuttableProxy | undefined;
    const pair = await setUpPair(false, {
      natsUrlOfA: async (c) => {
        proxy = await startCuttableProxy(Number(new URL(c.urls[0]!).port));
        closers.push(() => proxy!.close());
        return `nats://127.0.0.1:${proxy.port}`;
      },
    });
    const { a } = await pair.start();
    await waitCommitted(pair, pair.addresses[0], 1);
    const rawA = new RawRpcClient(pair.addresses[0], adminCertFiles(pair.fed));
    closers.push(() => rawA.close());
    expect((await rawA.call(rpcNamed('AdminService/Status'), [Buffer.alloc(0)], 2_000)).code).toBe(grpc.status.OK);
    const cutAt = Date.now();
    proxy!.cut();
    const since = (): number => (Date.now() - cutAt) / 1000;
    // Raw calls: an AdminClient would follow b's NOT_LEADER to a and call that b serving.
    const rawB = new RawRpcClient(pair.addresses[1], adminCertFiles(pair.fed));
    closers.push(() => rawB.close());
    const [stoppedS, servedS, [exit, exitS]] = await Promise.all([
      waitFor('a to stop serving', async () => ((await rawA.call(rpcNamed('AdminService/Status'), [Buffer.alloc(0)], 1_000)).code !== grpc.status.OK ? since() : undefined), 30_000, 100),
      waitFor('coordinator b to serve', async () => ((await rawB.call(rpcNamed('AdminService/Status'), [Buffer.alloc(0)], 1_000)).code === grpc.status.OK ? since() : undefined), 60_000, 100),
      a.exited.then((code) => [code, since()] as const),
    ]);
    process.stdout.write(`cut off: a stopped serving ${stoppedS.toFixed(1)} s after the cut, b served ${servedS.toFixed(1)} s, a exited (${exit}) ${exitS.toFixed(1)} s (TTL ${LEASE.ttlMs / 1000} s)\n`);
    expect(stoppedS).toBeLessThan(LEASE.ttlMs / 1000);
    expect(servedS).toBeGreaterThan(stoppedS);
    expect(exit).toBe(3);
    // Its supervisor restarts it as the standby soon: stopping waits on the dead connection a few seconds at most.
    expect(exitS).toBeLessThan(15);
    expect(await a.logText()).toContain('no longer the leader');
    await waitFinished(pair, pair.addresses[1]);
    expect(leaders(await expectJournal())).toEqual(['coord-a', 'coord-b']);
  }, 120_000);

  it('commits nothing while two of three NATS nodes are down, and resumes the run once they return: every round committed once', async () => {
    const pair = await setUpPair(false);
    const { a } = await pair.start();
    await waitCommitted(pair, pair.addresses[0], 1);
    const raws = pair.addresses.map((address) => new RawRpcClient(address, adminCertFiles(pair.fed)));
    closers.push(() => raws.forEach((r) => r.close()));
    const serving = async (i: 0 | 1): Promise<boolean> => (await raws[i]!.call(rpcNamed('AdminService/Status'), [Buffer.alloc(0)], 1_000)).code === grpc.status.OK;
    const committedBefore = Number((await pair.admin(pair.addresses[0]).status()).roundsCommitted);
    const lostAt = Date.now();
    await Promise.all([pair.cluster.nodes[1]!.kill(), pair.cluster.nodes[2]!.kill()]);
    // The leader can neither renew its lease nor append: it stops serving, and neither serves.
    await waitFor('a to stop serving', async () => ((await serving(0)) ? undefined : true), LEASE.ttlMs, 100);
    const stoppedS = (Date.now() - lostAt) / 1000;
    await new Promise((r) => setTimeout(r, 2_000));
    expect([await serving(0), await serving(1)]).toEqual([false, false]);

    const backAt = Date.now();
    await Promise.all([pair.cluster.nodes[1]!.restart(), pair.cluster.nodes[2]!.restart()]);
    // It exits for its supervisor, which starts it again: as the standby, or the leader if first.
    expect(await a.exited).toBe(3);
    const exitS = (Date.now() - lostAt) / 1000;
    await pair.startCoordinator(0, process.env, 'coord-a-again');
    const leading = await waitFor('a coordinator to lead again', async () => ((await serving(1)) ? 1 : (await serving(0)) ? 0 : undefined), 60_000, 250);
    process.stdout.write(`quorum lost: a stopped serving ${stoppedS.toFixed(1)} s after, exited (3) ${exitS.toFixed(1)} s after; coordinator ${'ab'[leading]} served ${((Date.now() - backAt) / 1000).toFixed(1)} s after the nodes returned\n`);
    await waitFinished(pair, pair.addresses[leading]);
    const records = await expectJournal();
    const held = leaders(records);
    expect(held).toHaveLength(2);
    expect(held[0]).toBe('coord-a');
    // Nothing committed before the outage is lost: the second leader's replay starts after it.
    const second = records.findIndex((r, i) => r.body.type === 'leader' && i > 0);
    expect(records.slice(0, second).filter((r) => r.body.type === 'round-committed').length).toBeGreaterThanOrEqual(committedBefore);
  }, 150_000);
});
