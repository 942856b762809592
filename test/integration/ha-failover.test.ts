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
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { afterEach, describe, expect, it } from 'vitest';
import { readJournalChain } from '../../coordinator/state/jetstream-journal.js';
import { journalStreamName, journalSubject } from '../../coordinator/state/journal-stream.js';
import { verifyChain } from '../../coordinator/state/journal.js';
import { skipUnless } from '../helpers/components.js';
import { CLI, startCli, waitFor } from '../helpers/federation.js';
import { TEST_LEASE as LEASE, startHaPair, type TestHaPair } from '../helpers/ha-pair.js';
import { natsUnavailable } from '../helpers/nats.js';

const skip = skipUnless('nats', natsUnavailable());
const ROUNDS = 4;

describe.skipIf(skip)('a standby coordinator pair over a 3-node NATS cluster', () => {
  let pair: TestHaPair | undefined;
  afterEach(async () => {
    await pair?.cleanup();
    pair = undefined;
  });

  it.each([
    { mode: 'plain', secure: false },
    { mode: 'secure', secure: true },
  ])('takes over when the leader is SIGKILLed after round 1 ($mode): every round committed once, one chain that audit verify accepts', async ({ secure }) => {
    pair = await startHaPair({ run: { rounds: ROUNDS, minSites: 2, secureAggregation: { enabled: secure } } });
    const { cluster, fed: f, addresses } = pair;
    const { a } = await pair.start();
    const adminA = pair.admin(addresses[0]);
    // An operator's `admin watch`, configured with both addresses, follows the run across the failover.
    const watch = pair.track(await startCli('watch', ['admin', 'watch', '--json', '--config', pair.adminConfig], f.dir));
    await waitFor('round 1 committed', () => adminA.status().then((s) => (Number(s.roundsCommitted) >= 1 ? s : undefined), () => undefined), 90_000);

    const killedAt = Date.now();
    expect(await a.stop('SIGKILL')).toBe('SIGKILL');
    const adminB = pair.admin(addresses[1]);
    await waitFor('coordinator b to serve', () => adminB.status().then((s) => s, () => undefined), 60_000, 100);
    const failoverS = (Date.now() - killedAt) / 1000;
    process.stdout.write(`failover: the standby served ${failoverS.toFixed(1)} s after the leader was SIGKILLed (lease TTL ${LEASE.ttlMs / 1000} s)\n`);
    expect(failoverS).toBeLessThan(30);
    const final = await waitFor('the run to finish under b', () => adminB.status().then((s) => (s.runState === 'finished' ? s : undefined), () => undefined), 120_000);
    expect(Number(final.roundsCommitted)).toBe(ROUNDS);
    // The watch saw b's election (the first event of the stream it opened again at b) and the run's end.
    expect(await watch.exited).toBe(0);
    const watched = (await watch.logText()).split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { type: string; kind?: string; body?: { holder?: string }; status?: { runState?: string } });
    expect(watched.filter((l) => l.kind === 'leader.elected').map((l) => l.body?.holder)).toContain('coord-b');
    expect(watched.at(-1)?.status?.runState).toBe('finished');
    // Four rounds downloaded four global models and the final one; each site keeps the last two (its last task's and the evaluated one).
    for (const site of f.sites) expect((await readdir(join(f.dir, 'sites', site, 'work', 'models'))).filter((n) => n.endsWith('.safetensors')).length).toBeLessThanOrEqual(2);

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
