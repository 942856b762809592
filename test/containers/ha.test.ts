/**
 * A standby coordinator pair in containers (issue 19: "the container suite runs a failover with each
 * coordinator and each NATS node in its own container"): three NATS containers forming a JetStream
 * cluster, coordinators coord-a and coord-b in a container each (lease TTL 4 s), two site containers
 * given both addresses. The leader's container is SIGKILLed once round 1 is committed and the
 * standby must take over; then the NATS node leading the journal's Raft group is SIGKILLed too and
 * the run must go on over the other two. At the end every round is committed exactly once and the
 * replicated journal is one chain that verifyChain and `fedhpc admin audit verify` accept.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, it, onTestFailed } from 'vitest';
import { verifyChain } from '../../coordinator/index.js';
import { CLI, waitFor } from '../helpers/federation.js';
import { TEST_LEASE } from '../helpers/ha-pair.js';
import { recordFigure, skipWithoutDocker } from './harness.js';
import { ContainerPair, PAIR_FEDERATION, otherMember } from './ha-pair.js';

const skip = await skipWithoutDocker();
const ROUNDS = 3;

/** `fedhpc admin audit verify --json` on the replicated journal: exit status and output. */
function auditVerify(pair: ContainerPair): Promise<{ code: number; stdout: string; stderr: string }> {
  const args = [CLI, 'admin', 'audit', 'verify', '--nats', pair.natsUrls().join(','), '--journal', PAIR_FEDERATION, '--ca', join(pair.dir, 'ca', 'ca.crt'), '--json'];
  return new Promise((resolve) => {
    execFile(process.execPath, args, { timeout: 60_000 }, (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }));
  });
}

describe.skipIf(skip)('a standby coordinator pair with each coordinator and each NATS node in its own container', () => {
  let pair: ContainerPair | undefined;
  afterAll(async () => pair?.close());

  it('the standby takes over from the SIGKILLed leader and the run outlives a NATS node: every round committed once, one verified chain', { timeout: 240_000 }, async () => {
    const startedAt = Date.now();
    pair = await ContainerPair.start({ sites: 2, rounds: ROUNDS });
    const p = pair;
    onTestFailed(async () => void process.stdout.write(`${await p.coordinatorLogs()}\n`));

    await p.startCoordinator('coord-a');
    await waitFor('coord-a to lead', () => p.leading('coord-a'), 60_000, 250);
    await p.startCoordinator('coord-b');
    await waitFor('the leader to list coord-b as its standby', async () => {
      const l = await p.leader();
      return l?.status.ha?.standbys.some((s) => s.name === 'coord-b') ? true : undefined;
    }, 30_000, 250);
    await Promise.all(p.sites.map((s) => p.startSite(s)));

    // Whoever leads once round 1 is committed (coord-a, unless it lost its lease on a loaded machine).
    const before = await waitFor('round 1 committed', async () => {
      const l = await p.leader();
      return l && Number(l.status.roundsCommitted) >= 1 ? l : undefined;
    }, 120_000, 100);
    const standby = otherMember(before.name);
    const killedAt = Date.now();
    await p.kill(before.name);
    const took = await waitFor(`${standby} to answer as the leader`, () => p.leading(standby), 60_000, 100);
    const failoverS = (Date.now() - killedAt) / 1000;
    // Its own address answers Status as the leader, under a later term than the dead one's.
    expect(took.ha?.name).toBe(standby);
    expect(Number(took.ha?.term)).toBeGreaterThan(Number(before.status.ha?.term));
    expect(took.runState).not.toBe('finished');

    // The NATS node whose loss hurts the journal most: its stream's Raft leader.
    const natsNode = await p.journalLeader();
    const natsKilledAt = Date.now();
    await p.kill(natsNode);
    const final = await waitFor('the run to finish', async () => {
      const s = await p.leading(standby);
      return s?.runState === 'finished' ? s : undefined;
    }, 120_000, 250);
    const finishedAt = Date.now();
    expect(Number(final.roundsCommitted)).toBe(ROUNDS);

    // Every round committed exactly once, at least one of them after the NATS node died.
    const committed = (await p.admin(standby).rounds()).rounds.filter((r) => r.outcome === 'committed');
    expect(committed.map((r) => Number(r.round))).toEqual([1, 2, 3]);
    expect(committed.filter((r) => Number(r.finishedMs) > natsKilledAt).length).toBeGreaterThanOrEqual(1);
    // The killed containers stay dead: `docker kill` is no failure a restart policy answers.
    expect((await p.state(before.name)).running).toBe(false);
    expect((await p.state(natsNode)).running).toBe(false);

    // The replicated journal, read through the two surviving NATS nodes: one chain, leaders with
    // rising terms (the survivor may have led twice if the NATS loss cost it its lease), each
    // round committed once.
    const records = await p.readChain();
    expect(verifyChain(records)).toEqual({ ok: true, records: records.length });
    const leaders = records.filter((r) => r.body.type === 'leader').map((r) => ({ holder: String(r.body['holder']), term: Number(r.body['term']) }));
    expect(leaders[0]?.holder).toBe('coord-a');
    expect(leaders.map((l) => l.term)).toEqual([...leaders.map((l) => l.term)].sort((x, y) => x - y));
    expect(new Set(leaders.map((l) => l.term)).size).toBe(leaders.length);
    expect(leaders.filter((l) => l.term > Number(before.status.ha?.term)).map((l) => l.holder)).toEqual(expect.arrayContaining([standby]));
    expect(leaders.filter((l) => l.term > Number(before.status.ha?.term)).every((l) => l.holder === standby)).toBe(true);
    expect(records.filter((r) => r.body.type === 'round-committed').map((r) => Number(r.body['round']))).toEqual([1, 2, 3]);
    const audit = await auditVerify(p);
    expect(audit.code, audit.stdout + audit.stderr).toBe(0);
    expect(JSON.parse(audit.stdout)).toMatchObject({ ok: true });

    const survivor = await p.state(standby);
    process.stdout.write(
      `container pair: ${standby} led ${failoverS.toFixed(1)} s after ${before.name} was killed (lease TTL ${TEST_LEASE.ttlMs / 1000} s); ` +
        `${natsNode} killed, run finished ${((finishedAt - natsKilledAt) / 1000).toFixed(1)} s later; ${standby} restarted ${survivor.restarts} time(s); ` +
        `${((Date.now() - startedAt) / 1000).toFixed(0)} s in all\n`,
    );
    await recordFigure({
      figure: 'fault',
      fault: 'leader coordinator container killed, then the NATS node leading the journal',
      failoverSeconds: failoverS,
      leaseTtlSeconds: TEST_LEASE.ttlMs / 1000,
      natsNodeKilled: natsNode,
      runFinishedSecondsAfterNatsKill: (finishedAt - natsKilledAt) / 1000,
      survivorRestarts: survivor.restarts,
      leaderRecords: leaders.length,
      testSeconds: (Date.now() - startedAt) / 1000,
    });
  });
});
