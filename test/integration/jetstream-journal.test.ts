/**
 * The journal in a replicated JetStream stream, against a real 3-node NATS cluster on loopback
 * (issue 19): racing writers leave exactly one chain and each knows what it committed; a state
 * dir's journal imports with its chain (and its hashes) intact; an old leader's lower term, garbage
 * and forgeries are ignored and reported; one NATS node killed stalls appends only briefly.
 */
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readJournalStreamTrail, verifyAudit } from '../../coordinator/audit/index.js';
import { CoordinatorError } from '../../coordinator/core/errors.js';
import { importJournal, JetStreamJournal, readJournalChain, type JournalStreamOptions } from '../../coordinator/state/jetstream-journal.js';
import { canonicalJson, Journal, recordHash, verifyChain, type JournalRecord } from '../../coordinator/state/journal.js';
import { skipUnless } from '../helpers/components.js';
import { CLI } from '../helpers/federation.js';
import { testLogger } from '../helpers/logger.js';
import { natsUnavailable, startNatsCluster, type TestNatsCluster } from '../helpers/nats.js';
import { waitUntil } from '../helpers/wait.js';

const skip = skipUnless('nats', natsUnavailable());

/** Every ignored message is logged at warn: the tests that provoke them say so. */
const ignoredWarning = /^journal stream message \d+ ignored: /;

describe.skipIf(skip)('the journal in a replicated JetStream stream (3 nats-servers)', () => {
  let cluster: TestNatsCluster;
  const connections: NatsConnection[] = [];
  let streams = 0;
  beforeAll(async () => {
    cluster = await startNatsCluster(3);
  }, 60_000);
  afterAll(async () => {
    for (const nc of connections) await nc.close();
    await cluster?.stop();
  });

  /** A client that follows the cluster wherever a node goes. */
  async function client(servers: readonly string[] = cluster.urls): Promise<NatsConnection> {
    const nc = await connect({ servers: [...servers], noRandomize: true, reconnectTimeWait: 100, maxReconnectAttempts: -1, timeout: 5_000 });
    connections.push(nc);
    return nc;
  }

  /** A fresh R=3 journal stream for one test. */
  function target(): JournalStreamOptions & { stream: string; subject: string } {
    streams += 1;
    return { stream: `FEDHPC_JOURNAL_T${streams}`, subject: `fedhpc.t${streams}.journal`, replicas: 3, timeoutMs: 20_000 };
  }

  it('two writers of different terms racing 1,000 appends leave one chain, and each writer knows exactly what it committed', async () => {
    const t = target();
    const { logger } = testLogger({ expect: [ignoredWarning] });
    const [ncA, ncB, ncR] = [await client(), await client([...cluster.urls].reverse()), await client()];
    const standby = await JetStreamJournal.open({ ...t, nc: ncR, logger });
    const committed = new Map<string, JournalRecord>();
    const fenced: string[] = [];
    // Ten leaderships, each raced by the next term's writer; every other one without conditional
    // publish, so the stream really holds the losers' records and only the chain rule decides.
    for (let g = 0; g < 10; g++) {
      const conditionalPublish = g % 2 === 0;
      const writers = [
        await JetStreamJournal.open({ ...t, nc: ncA, term: 2 * g + 1, conditionalPublish, logger }),
        await JetStreamJournal.open({ ...t, nc: ncB, term: 2 * g + 2, conditionalPublish, logger }),
      ];
      await Promise.all(
        writers.flatMap((w) =>
          Array.from({ length: 50 }, (_, i) =>
            w.append({ type: 'test', term: w.term, i }).then(
              (r) => void committed.set(r.hash, r),
              (err: unknown) => {
                expect(err).toBeInstanceOf(CoordinatorError);
                expect((err as CoordinatorError).code).toBe('JOURNAL_FENCED');
                fenced.push(String((err as CoordinatorError).context['hash']));
              },
            ),
          ),
        ),
      );
      for (const w of writers) await w.close();
    }
    expect(committed.size + fenced.length).toBe(1_000);
    const { records: chain, ignoredCount } = await readJournalChain(ncR, t);
    expect(verifyChain(chain)).toEqual({ ok: true, records: chain.length });
    // The writers' view is the chain's, both ways: every resolved append is on it, nothing else is.
    expect(new Set(chain.map((r) => r.hash))).toEqual(new Set(committed.keys()));
    for (const hash of fenced) expect(committed.has(hash)).toBe(false);
    expect(chain.map((r) => r.term)).toEqual([...chain.map((r) => r.term)].sort((a, b) => a! - b!));
    await waitUntil('the standby to follow the whole chain', () => standby.records().length === chain.length, 10_000);
    expect(standby.records()).toEqual(chain);
    expect(standby.ignoredCount).toBe(ignoredCount);
    await standby.close();
    process.stdout.write(`race: ${chain.length} committed, ${fenced.length} fenced, ${ignoredCount} stream messages off the chain\n`);
  });

  it("imports a state dir's journal term-less with its hashes unchanged, then termed appends extend that chain", async () => {
    const t = target();
    const dir = await mkdtemp(join(tmpdir(), 'fedhpc-jsjournal-'));
    try {
      const local = await Journal.open(join(dir, 'journal.jsonl'));
      for (let i = 1; i <= 5; i++) await local.append({ type: 'test', i, note: i === 3 ? 'café ☕ 😀' : undefined });
      const records = [...local.records()];
      await local.close();
      // A record without a term hashes exactly as before terms existed: {seq, ts, prev, body}.
      for (const r of records) {
        expect(r.term).toBeUndefined();
        expect(createHash('sha256').update(canonicalJson({ seq: r.seq, ts: r.ts, prev: r.prev, body: r.body })).digest('hex')).toBe(r.hash);
        expect(recordHash(r)).toBe(r.hash);
      }
      const nc = await client();
      expect(await importJournal(records, { ...t, nc })).toEqual({ records: 5, head: records[4]!.hash });
      const again = await importJournal(records, { ...t, nc }).catch((e: unknown) => e);
      expect(again).toBeInstanceOf(CoordinatorError);
      expect((again as CoordinatorError).code).toBe('BAD_REQUEST');
      expect((again as CoordinatorError).message).toMatch(/already holds 5 message\(s\)/);

      const writer = await JetStreamJournal.open({ ...t, nc, term: 7 });
      expect(writer.records()).toEqual(records);
      for (let i = 6; i <= 8; i++) expect((await writer.append({ type: 'test', i })).term).toBe(7);
      await writer.close();
      const { records: chain, ignoredCount } = await readJournalChain(nc, t);
      expect(ignoredCount).toBe(0);
      expect(chain.slice(0, 5)).toEqual(records);
      expect(chain.map((r) => r.term)).toEqual([undefined, undefined, undefined, undefined, undefined, 7, 7, 7]);
      expect(verifyChain(chain)).toEqual({ ok: true, records: 8 });
      // audit verify reads the stream through the same chain rule, and accepts the term-less start.
      const trail = await readJournalStreamTrail({ url: cluster.urls.join(','), timeoutMs: 20_000, stream: t.stream, subject: t.subject });
      expect(trail.lines).toHaveLength(8);
      expect(verifyAudit(trail.lines)).toMatchObject({ ok: true, records: 8, head: chain[7]!.hash });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("ignores an old leader's record of a lower term published after a higher term's, and fences that leader's appends", async () => {
    const t = target();
    const { logger, warnings } = testLogger({ expect: [ignoredWarning] });
    const nc = await client();
    const leader = await JetStreamJournal.open({ ...t, nc, term: 5, logger });
    await leader.append({ type: 'test', i: 1 });
    const head = await leader.append({ type: 'test', i: 2 });
    // The old leader (term 3) has not seen term 5 yet: its record extends the head in every other way.
    const partial = { seq: 3, ts: head.ts + 1, prev: head.hash, term: 3, body: { type: 'test', from: 'old leader' } };
    const stale = { ...partial, hash: recordHash(partial) };
    await jetstream(nc).publish(t.subject, JSON.stringify(stale));
    const next = await leader.append({ type: 'test', i: 3 });
    expect(next.seq).toBe(3);
    expect(leader.ignored()).toEqual([{ streamSeq: 3, seq: 3, hash: stale.hash, term: 3, reason: "term is 3, below the previous record's 5" }]);
    expect(warnings().map((w) => [w['phase'], w['streamSeq']])).toEqual([['journal', 3]]);

    const oldLeader = await JetStreamJournal.open({ ...t, nc, term: 3 });
    const refused = await oldLeader.append({ type: 'test', from: 'old leader' }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(CoordinatorError);
    expect((refused as CoordinatorError).code).toBe('JOURNAL_FENCED');
    await oldLeader.close();
    await leader.close();
    // The fenced append was never published: the stream holds the two, the stale record and the third.
    expect((await (await jetstreamManager(nc)).streams.info(t.stream)).state.messages).toBe(4);
    expect(verifyChain((await readJournalChain(nc, t)).records)).toEqual({ ok: true, records: 3 });
  });

  it('ignores and reports garbage and forged records on the subject', async () => {
    const t = target();
    const { logger, warnings } = testLogger({ expect: [ignoredWarning] });
    const nc = await client();
    const writer = await JetStreamJournal.open({ ...t, nc, term: 1, logger });
    const first = await writer.append({ type: 'test', i: 1 });
    const partial = { seq: 2, ts: first.ts + 1, prev: first.hash, term: 1, body: { type: 'round-committed', round: 1 } };
    const good = { ...partial, hash: recordHash(partial) };
    const js = jetstream(nc);
    for (const payload of [
      'not json at all',
      '[1,2,3]',
      JSON.stringify({ ...good, body: { type: 'round-committed', round: 99 } }),
      JSON.stringify({ ...good, note: 'outside the hash' }),
      JSON.stringify(first),
      JSON.stringify({ ...good, term: undefined, hash: recordHash({ ...partial, term: undefined }) }),
    ]) {
      await js.publish(t.subject, payload);
    }
    const second = await writer.append({ type: 'test', i: 2 });
    expect(second.seq).toBe(2);
    expect(writer.ignored().map((m) => [m.streamSeq, m.reason])).toEqual([
      [2, 'not valid JSON'],
      [3, 'not a JSON object'],
      [4, 'hash does not match the record'],
      [5, 'not a journal record: unexpected member "note"'],
      [6, "seq is 1, the chain's next is 2"],
      [7, 'no term after a record of term 1'],
    ]);
    expect(warnings().every((w) => w['phase'] === 'journal')).toBe(true);
    expect(warnings()).toHaveLength(6);
    await writer.close();
    const reader = await readJournalChain(nc, t);
    expect(reader.records.map((r) => r.hash)).toEqual([first.hash, second.hash]);
    expect(reader.ignoredCount).toBe(6);
    // An auditor reads the same chain with the CLI: the federation names the stream and subject.
    const federation = t.subject.split('.')[1]!;
    const audit = spawnSync(process.execPath, [CLI, 'admin', 'audit', 'verify', '--nats', cluster.urls.join(','), '--journal', federation, '--json'], { encoding: 'utf8', timeout: 60_000 });
    expect(audit.status, audit.stderr).toBe(0);
    expect(JSON.parse(audit.stdout)).toMatchObject({ ok: true, records: 2, head: second.hash, source: `journal stream ${t.stream} at ${cluster.urls.join(',')}` });
    expect(audit.stderr).toMatch(/^6 messages in the journal stream extend no chain/);
    const both = spawnSync(process.execPath, [CLI, 'admin', 'audit', 'verify', '--nats', cluster.urls[0]!, '--journal', federation, '--subject', 'x.y'], { encoding: 'utf8', timeout: 60_000 });
    expect(both.status).toBe(2);
    expect(both.stderr).toMatch(/--journal FEDERATION goes with --nats URL alone/);
  });

  it('moves a state dir to a pair with the CLI: audit import publishes its journal, audit verify reads the same head, a second import is refused', async () => {
    const t = target();
    const federation = t.subject.split('.')[1]!;
    const dir = await mkdtemp(join(tmpdir(), 'fedhpc-import-'));
    try {
      const local = await Journal.open(join(dir, 'journal.jsonl'));
      for (let i = 0; i < 4; i++) await local.append({ type: 'test', i });
      const head = local.records().at(-1)!.hash;
      await local.close();
      const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, 'admin', 'audit', ...args], { encoding: 'utf8', timeout: 60_000 });
      const imported = cli('import', '--state-dir', dir, '--nats', cluster.urls.join(','), '--journal', federation, '--replicas', '3', '--json');
      expect(imported.status, imported.stderr).toBe(0);
      expect(JSON.parse(imported.stdout)).toEqual({ imported: 4, stream: t.stream, head });
      const verified = cli('verify', '--nats', cluster.urls.join(','), '--journal', federation, '--json');
      expect(verified.status, verified.stderr).toBe(0);
      expect(JSON.parse(verified.stdout)).toMatchObject({ ok: true, records: 4, head });
      const again = cli('import', '--state-dir', dir, '--nats', cluster.urls.join(','), '--journal', federation);
      expect(again.status).toBe(1);
      expect(again.stderr).toMatch(/already holds 4 message\(s\): a journal is imported only into an empty stream/);
      const missing = cli('import', '--state-dir', dir, '--journal', federation);
      expect(missing.status).toBe(2);
      expect(missing.stderr).toMatch(/audit import needs --state-dir DIR, --nats URL and --journal FEDERATION/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  // Last: it leaves the cluster with two nodes.
  it('goes on appending when one NATS node (the stream leader) is killed, stalling until the survivors elect a new leader (4–9 s measured alone)', async () => {
    const t = target();
    const setup = await client();
    const writerProbe = await JetStreamJournal.open({ ...t, nc: setup, term: 1 });
    await writerProbe.append({ type: 'test', i: 0 });
    await writerProbe.close();
    const leaderName = (await (await jetstreamManager(setup)).streams.info(t.stream)).cluster?.leader;
    const leader = cluster.nodes.find((n) => n.name === leaderName);
    expect(leader).toBeDefined();
    // The writer is connected to the node that dies: it loses its server, the stream's leader and its consumer at once.
    const nc = await client([leader!.url, ...cluster.urls.filter((u) => u !== leader!.url)]);
    const { logger, lines } = testLogger({ level: 'debug' });
    // The writer waits out the election however long a loaded CI makes it: an append that outlives
    // its deadline fails JOURNAL_UNAVAILABLE (retryable, left to the coordinator), which is not
    // what this test is about. CI once saw the survivors take over 20 s.
    const writer = await JetStreamJournal.open({ ...t, nc, term: 2, logger, timeoutMs: 60_000 });
    const done: number[] = [];
    let killedAt = 0;
    let stop = false;
    const failures: unknown[] = [];
    const appending = (async () => {
      for (let i = 1; !stop; i++) {
        await writer.append({ type: 'test', i });
        done.push(performance.now());
      }
    })().catch((err: unknown) => void failures.push(err));
    await waitUntil('appends before the kill', () => done.length >= 50, 10_000);
    killedAt = performance.now();
    await leader!.kill();
    await waitUntil('appends after the kill', () => failures.length > 0 || done.filter((d) => d > killedAt).length >= 50, 70_000, 50).catch((err: unknown) => {
      // What the writer and the surviving servers did is what a failure here needs to be understood.
      const tail = (text: string): string => text.split('\n').slice(-30).join('\n');
      process.stdout.write(`${lines.map((l) => JSON.stringify(l)).join('\n')}\n`);
      for (const n of cluster.nodes) process.stdout.write(`--- ${n.name}\n${tail(n.output())}\n`);
      throw err;
    });
    stop = true;
    await appending;
    expect(failures).toEqual([]);
    const around = [done.filter((d) => d <= killedAt).pop()!, ...done.filter((d) => d > killedAt)];
    const stallMs = Math.max(...around.slice(1).map((d, i) => d - around[i]!));
    process.stdout.write(`one NATS node killed: appends stalled ${Math.round(stallMs)} ms\n`);
    // nats-server 2.9 alone takes 4–7 s to elect the stream's new leader (its Raft election timeout);
    // the appends stalled 4.2–8.9 s in a dozen runs here, within the 10 s (bench failover
    // measures it). What this test holds is that the writer recovers on its own, with no append
    // failed and the chain whole: the bound only catches one that never does.
    expect(stallMs).toBeLessThanOrEqual(60_000);
    const { records } = await readJournalChain(setup, t);
    expect(verifyChain(records).ok).toBe(true);
    expect(records).toEqual(writer.records());
    await writer.close();
  }, 120_000);
});
