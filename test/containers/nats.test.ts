/**
 * NATS in its own container beside the federation: stopped and started again mid-run. The
 * coordinator keeps training through the outage, and at the end the JetStream audit stream holds
 * every journal record exactly once, in order (replayed after the outage, deduplicated by hash).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, describe, expect, it } from 'vitest';
import { docker } from '../../simulate/images.js';
import { waitFor } from '../helpers/federation.js';
import { ContainerFederation, containerLogs, recordFigure, skipWithoutDocker } from './harness.js';

const skip = await skipWithoutDocker();
const SITES = ['site-1', 'site-2', 'site-3'];

/** The journal's records as written (hash and body), oldest first. */
async function journal(fed: ContainerFederation): Promise<{ seq: number; hash: string; type: string }[]> {
  const text = await readFile(join(fed.dir, 'coordinator', 'state', 'journal.jsonl'), 'utf8');
  return text.split('\n').filter(Boolean).map((l) => {
    const r = JSON.parse(l) as { seq: number; hash: string; body: { type: string } };
    return { seq: r.seq, hash: r.hash, type: r.body.type };
  });
}

/** Every message of the audit stream, through the NATS container's published port. */
async function auditStream(natsPort: number): Promise<{ seq: number; hash: string }[]> {
  const nc = await connect({ servers: `127.0.0.1:${natsPort}`, timeout: 5_000 });
  try {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info('FEDHPC_AUDIT');
    const out: { seq: number; hash: string }[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage('FEDHPC_AUDIT', { seq });
      if (m) out.push(m.json<{ seq: number; hash: string }>());
    }
    return out;
  } finally {
    await nc.close();
  }
}

describe.skipIf(skip)('NATS stopped and started mid-run, in containers', () => {
  let fed: ContainerFederation | undefined;
  afterAll(async () => fed?.close());

  it('the run finishes through the outage and the audit stream ends complete, each record once', { timeout: 300_000 }, async () => {
    fed = await ContainerFederation.start({
      sites: 3,
      rounds: 3,
      nats: true,
      coordinatorPatch: (c) => ({ ...c, nats: { url: 'nats://nats:4222', timeoutMs: 2_000 } }),
    });
    for (const s of SITES) await fed.startSite(s);
    const nats = fed.nats!;

    await waitFor('round 1 committed', async () => (fed!.eventsOf('round.committed').length >= 1 ? true : undefined), 120_000, 200);
    const stoppedAt = Date.now();
    await docker(['stop', '--time', '5', nats.getName()]);
    // Stay down while at least one more round commits.
    await waitFor('a round committed while NATS is down', async () => (fed!.eventsOf('round.committed').some((e) => e.ts > stoppedAt) ? true : undefined), 120_000, 200);
    const restartedAt = Date.now();
    await docker(['start', nats.getName()]);

    const { rounds, modelSha256 } = await fed.waitForRun(3, 180_000);
    const committed = rounds.rounds.filter((r) => r.outcome === 'committed');
    expect(committed.map((r) => Number(r.round))).toEqual([1, 2, 3]);
    for (const s of SITES) expect(await fed.siteHolds(s, modelSha256)).toBe(modelSha256);
    const natsLog = await containerLogs(nats.getName());
    expect(natsLog.match(/Server is ready/g)?.length).toBe(2);

    const records = await journal(fed);
    const port = fed.natsHostPort;
    const stream = await waitFor('the audit stream to catch up with the journal', async () => {
      const s = await auditStream(port);
      return s.length >= records.length ? s : undefined;
    }, 60_000, 500);
    // Each record once and in order: the stream is the journal's prefix (a late receipt may have
    // been journaled after `records` was read, and published too).
    const journalNow = await journal(fed);
    expect(stream.map((r) => r.hash)).toEqual(journalNow.slice(0, stream.length).map((r) => r.hash));
    // When the coordinator was publishing again, by its own log.
    const coordinatorLog = (await containerLogs(fed.coordinator.getName())).split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { time: number; msg: string });
    const replayedAt = coordinatorLog.find((l) => l.time > restartedAt && l.msg === 'NATS connected; publishing')?.time ?? Number.NaN;
    await recordFigure({
      figure: 'fault',
      fault: 'NATS stopped and started mid-run',
      natsDownSeconds: (restartedAt - stoppedAt) / 1000,
      publishingAgainSecondsAfterRestart: (replayedAt - restartedAt) / 1000,
      auditRecords: records.length,
      roundsCommittedDuringOutage: fed.eventsOf('round.committed').filter((e) => e.ts > stoppedAt && e.ts < restartedAt).length,
    });
  });
});
