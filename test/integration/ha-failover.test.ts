/**
 * A standby pair end to end (issue 19): two real coordinator processes with `ha` over a real 3-node
 * NATS JetStream cluster on loopback, sharing the checkpoint state dir, and two site agents (real
 * processes over mTLS) configured with both addresses. The leader is SIGKILLed after round 1
 * commits; the standby takes the lease once it lapses, writes its `leader` record, replays the
 * replicated journal and finishes the run — plain, and under secure aggregation (the interrupted
 * round restarts from `keys` at a higher attempt) — no committed round lost or repeated, the journal
 * stream one chain that `fedhpc admin audit verify --journal` accepts. The lease is shortened (TTL 4 s) so
 * the test stays quick.
 */
import { spawnSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { afterEach, describe, expect, it } from 'vitest';
import { AdminClient } from '../../coordinator/index.js';
import { readJournalChain } from '../../coordinator/state/jetstream-journal.js';
import { journalStreamName, journalSubject } from '../../coordinator/state/journal-stream.js';
import { verifyChain } from '../../coordinator/state/journal.js';
import { skipUnless } from '../helpers/components.js';
import { CLI, createTestFederation, freePort, startCli, startSiteProcess, waitFor, type Proc, type TestFederation } from '../helpers/federation.js';
import { natsUnavailable, startNatsCluster, type TestNatsCluster } from '../helpers/nats.js';

const skip = skipUnless('nats', natsUnavailable());
const ROUNDS = 4;
const LEASE = { ttlMs: 4000, renewMs: 500, marginMs: 1500 };

describe.skipIf(skip)('a standby coordinator pair over a 3-node NATS cluster', () => {
  let cluster: TestNatsCluster | undefined;
  let fed: TestFederation | undefined;
  const procs: Proc[] = [];
  const admins: AdminClient[] = [];
  afterEach(async () => {
    for (const a of admins.splice(0)) a.close();
    for (const p of procs.splice(0).reverse()) await p.stop();
    await fed?.cleanup();
    await cluster?.stop();
    fed = undefined;
    cluster = undefined;
  });

  it.each([
    { mode: 'plain', secure: false },
    { mode: 'secure', secure: true },
  ])('takes over when the leader is SIGKILLed after round 1 ($mode): every round committed once, one chain that audit verify accepts', async ({ secure }) => {
    cluster = await startNatsCluster(3);
    fed = await createTestFederation({ sites: 2, run: { rounds: ROUNDS, minSites: 2, secureAggregation: { enabled: secure } } });
    const f = fed;
    const portB = await freePort();
    const addresses = [`localhost:${f.port}`, `localhost:${portB}`];
    // Coordinator a is the federation's own config; b the same with its own name, port and address.
    const base = JSON.parse(await readFile(f.files.coordinatorConfig, 'utf8')) as Record<string, unknown>;
    const withHa = (name: string, port: number): Record<string, unknown> => ({
      ...base,
      listen: `127.0.0.1:${port}`,
      nats: { url: cluster!.urls.join(',') },
      ha: { name, advertise: `localhost:${port}`, lease: LEASE, replicas: 3 },
    });
    const configA = f.files.coordinatorConfig;
    const configB = join(f.dir, 'coordinator', 'coordinator-b.json');
    await writeFile(configA, JSON.stringify(withHa('coord-a', f.port), null, 2));
    await writeFile(configB, JSON.stringify(withHa('coord-b', portB), null, 2));
    for (const site of f.sites) {
      await f.patchSiteConfig(site, (c) => {
        const { coordinator: _, ...rest } = c;
        return { ...rest, coordinators: addresses };
      });
    }
    const m = f.member('admins', 'admin');
    const adminOf = (address: string): AdminClient => {
      const c = new AdminClient({ coordinator: address, tls: { ca: join(m, 'ca.crt'), cert: join(m, 'admin.crt'), key: join(m, 'admin.key') } });
      admins.push(c);
      return c;
    };

    const a = await startCli('coord-a', ['coordinator', '--config', configA], f.dir);
    procs.push(a);
    const adminA = adminOf(addresses[0]!);
    await waitFor('coordinator a to lead', () => adminA.status().then((s) => (s.runId ? s : undefined), () => undefined), 60_000);
    const b = await startCli('coord-b', ['coordinator', '--config', configB], f.dir);
    procs.push(b);
    for (const s of f.sites) procs.push(await startSiteProcess(f, s));
    await waitFor('round 1 committed', () => adminA.status().then((s) => (Number(s.roundsCommitted) >= 1 ? s : undefined), () => undefined), 90_000);

    const killedAt = Date.now();
    expect(await a.stop('SIGKILL')).toBe('SIGKILL');
    const adminB = adminOf(addresses[1]!);
    await waitFor('coordinator b to serve', () => adminB.status().then((s) => s, () => undefined), 60_000, 100);
    const failoverS = (Date.now() - killedAt) / 1000;
    process.stdout.write(`failover: the standby served ${failoverS.toFixed(1)} s after the leader was SIGKILLed (lease TTL ${LEASE.ttlMs / 1000} s)\n`);
    expect(failoverS).toBeLessThan(30);
    const final = await waitFor('the run to finish under b', () => adminB.status().then((s) => (s.runState === 'finished' ? s : undefined), () => undefined), 120_000);
    expect(Number(final.roundsCommitted)).toBe(ROUNDS);

    // The replicated journal: one chain, two leaders with rising terms, each round committed once.
    const nc = await connect({ servers: [...cluster.urls] });
    try {
      const { records } = await readJournalChain(nc, { stream: journalStreamName('testfed'), subject: journalSubject('testfed'), timeoutMs: 20_000 });
      expect(verifyChain(records).ok).toBe(true);
      const leaders = records.filter((r) => r.body.type === 'leader').map((r) => r.body as unknown as { term: number; holder: string });
      expect(leaders.map((l) => l.holder)).toEqual(['coord-a', 'coord-b']);
      expect(leaders[1]!.term).toBeGreaterThan(leaders[0]!.term);
      const committed = records.filter((r) => r.body.type === 'round-committed').map((r) => r.body['round']);
      expect(committed).toEqual([1, 2, 3, 4]);
    } finally {
      await nc.close();
    }
    const audit = spawnSync(process.execPath, [CLI, 'admin', 'audit', 'verify', '--nats', cluster.urls.join(','), '--journal', 'testfed', '--ca', join(f.member('coordinator'), 'ca.crt'), '--json'], { encoding: 'utf8', timeout: 60_000 });
    expect(audit.status, audit.stdout + audit.stderr).toBe(0);
    expect(JSON.parse(audit.stdout)).toMatchObject({ ok: true });
  }, 300_000);
});
