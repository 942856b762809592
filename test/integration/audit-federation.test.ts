/**
 * The audit trail of a real federation (coordinator and agents as processes, over mTLS) with a real
 * `nats-server -js`: what the journal records for a regulator, the sites' signed receipts, events on
 * their subjects, the JetStream copy surviving a NATS restart mid-run, and `fedhpc admin audit`.
 */
import { connect, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readStreamTrail, verifyAudit } from '../../coordinator/audit/index.js';
import { natsEventSchema, natsGapEventSchema, type EventKind } from '../../coordinator/observe/events.js';
import type { JournalRecord } from '../../coordinator/state/journal.js';
import { skipUnless } from '../helpers/components.js';
import { journalPath, coordinatorStateDir } from '../helpers/faults.js';
import { CLI, createTestFederation, startCoordinatorProcess, startSiteProcess, waitFor, waitForCommitted, type Proc, type TestFederation } from '../helpers/federation.js';
import { natsUnavailable, startNatsServer, type TestNatsServer } from '../helpers/nats.js';

const skip = skipUnless('nats', natsUnavailable());
const ROUNDS = 3;

async function journal(fed: TestFederation): Promise<JournalRecord[]> {
  return (await readFile(journalPath(fed), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as JournalRecord);
}
const ofType = (records: readonly JournalRecord[], type: string) => records.filter((r) => r.body.type === type).map((r) => r.body);

function cli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe.skipIf(skip)('the audit trail of a federation publishing to NATS', () => {
  let nats: TestNatsServer;
  let fed: TestFederation;
  let watcher: NatsConnection;
  const procs: Proc[] = [];
  const messages: { subject: string; json: Record<string, unknown> }[] = [];
  let records: JournalRecord[];
  let caFile: string;

  beforeAll(async () => {
    nats = await startNatsServer();
    fed = await createTestFederation({ sites: 2, run: { rounds: ROUNDS, minSites: 2 } });
    caFile = join(fed.dir, 'coordinator', 'ca.crt');
    // A small buffer, so the outage below overflows it and a gap must be reported.
    await fed.patchCoordinatorConfig((cfg) => ({ ...cfg, nats: { url: nats.url, bufferEvents: 5, timeoutMs: 2_000 } }));
    watcher = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 50 });
    watcher.subscribe('fedhpc.testfed.events.>', { callback: (_e, m: Msg) => void messages.push({ subject: m.subject, json: m.json<Record<string, unknown>>() }) });
    await watcher.flush();
    // The gap event is published the moment the coordinator reconnects, when this watcher may be
    // reconnecting itself: a stream on its subject keeps it, whoever reconnects first.
    await (await jetstreamManager(watcher)).streams.add({ name: 'TEST_GAP_EVENTS', subjects: ['fedhpc.testfed.events.nats.gap'] });

    procs.push(await startCoordinatorProcess(fed));
    for (const s of fed.sites) procs.push(await startSiteProcess(fed, s));
    const admin = fed.admin();
    await waitForCommitted(admin, 1);
    // NATS goes away mid-run; the federation must not notice.
    await nats.stop();
    await waitForCommitted(admin, 2);
    await nats.start();
    await waitForCommitted(admin, ROUNDS);
    // The last round's receipts come with the final evaluation task: wait for all of them.
    await waitFor('every receipt', async () => (ofType(await journal(fed), 'receipt').length === ROUNDS * 2 ? true : undefined), 60_000);
    await waitFor('a quiet journal mirrored by the stream', async () => {
      const j = await journal(fed);
      const s = await readStreamTrail({ url: nats.url, timeoutMs: 5_000, stream: 'FEDHPC_AUDIT' });
      const done = ofType(j, 'eval').some((e) => e['modelRound'] === ROUNDS);
      return done && s.length === j.length ? true : undefined;
    }, 60_000, 500);
    records = await journal(fed);
  }, 240_000);

  afterAll(async () => {
    for (const p of procs.splice(0).reverse()) await p.stop();
    await watcher?.close();
    await nats?.cleanup();
    await fed?.cleanup();
  }, 60_000);

  it('journals what a regulator needs: the run\'s config without keys, joins with fingerprints, commits with manifests, models and strategy', () => {
    const [started] = ofType(records, 'run-started');
    const config = started!['config'] as { federation: string; tls: Record<string, string>; run: { id: string }; nats: { url: string } };
    expect(config).toMatchObject({ federation: 'testfed', run: { id: 'test-run' }, nats: { url: nats.url } });
    expect(config.tls).not.toHaveProperty('key');
    expect(JSON.stringify(started)).not.toMatch(/\.key"/);
    const joins = ofType(records, 'site-joined');
    expect(joins.map((j) => j['site']).sort()).toEqual(['site-1', 'site-2']);
    for (const j of joins) {
      const cert = new X509Certificate(readFileSync(join(fed.member('sites', j['site'] as string), 'site.crt'), 'utf8'));
      expect(j['fingerprint']).toBe(cert.fingerprint256);
    }
    const commits = ofType(records, 'round-committed');
    expect(commits.map((c) => c['round'])).toEqual([1, 2, 3]);
    for (const c of commits) {
      expect(c).toMatchObject({ parentSha256: expect.stringMatching(/^[0-9a-f]{64}$/), modelSha256: expect.stringMatching(/^[0-9a-f]{64}$/), strategy: { name: 'diloco' } });
      for (const p of c['participants'] as { dataManifestSha256: string }[]) expect(p.dataManifestSha256).toMatch(/^[0-9a-f]{64}$/);
    }
  });

  it('holds a receipt signed by every participant of every round, verifying against the federation CA', () => {
    const receipts = ofType(records, 'receipt');
    expect(receipts.map((r) => `${r['round']}:${r['site']}`).sort()).toEqual(['1:site-1', '1:site-2', '2:site-1', '2:site-2', '3:site-1', '3:site-2']);
    const lines = records.map((record) => ({ ok: true as const, record }));
    const report = verifyAudit(lines, { ca: [new X509Certificate(readFileSync(caFile, 'utf8'))], requireReceipts: true });
    expect(report).toMatchObject({ ok: true, committedRounds: ROUNDS, receipts: ROUNDS * 2, missingReceipts: [] });
  });

  it('keeps every journal record in the stream, in order, despite the NATS restart, and reports the event gap', async () => {
    const stream = await readStreamTrail({ url: nats.url, timeoutMs: 5_000, stream: 'FEDHPC_AUDIT' });
    expect(stream.map((l) => (l.ok ? l.record.hash : '')).slice(0, records.length)).toEqual(records.map((r) => r.hash));
    const gaps = await waitFor('the gap event', async () => {
      const lines = await readStreamTrail({ url: nats.url, timeoutMs: 5_000, stream: 'TEST_GAP_EVENTS' });
      return lines.length > 0 ? lines : undefined;
    }, 30_000, 500);
    const gap = gaps[0]!;
    if (!gap.ok) throw new Error(gap.reason);
    expect(natsGapEventSchema.parse(gap.record).body.dropped).toBeGreaterThan(0);
    const log = await procs[0]!.logText();
    expect(log).toContain('NATS event gap');
  });

  it('publishes lifecycle events on fedhpc.testfed.events.<kind>, each valid against its schema', () => {
    const kinds = new Set<string>();
    for (const m of messages) {
      const kind = m.json['kind'] as string;
      expect(m.subject).toBe(`fedhpc.testfed.events.${kind}`);
      if (kind === 'nats.gap') continue;
      natsEventSchema(kind as EventKind).parse(m.json);
      kinds.add(kind);
    }
    for (const k of ['site.joined', 'round.opened', 'phase.changed', 'upload.done', 'round.committed', 'run.finished']) expect(kinds).toContain(k);
  });

  it('`fedhpc admin audit verify` accepts the trail from the state dir and from JetStream, and export round-trips', async () => {
    const dir = coordinatorStateDir(fed);
    const fromDir = cli(['admin', 'audit', 'verify', '--state-dir', dir, '--ca', caFile, '--json']);
    expect(fromDir.code, fromDir.stderr).toBe(0);
    expect(JSON.parse(fromDir.stdout)).toMatchObject({ ok: true, receipts: ROUNDS * 2 });
    const fromStream = cli(['admin', 'audit', 'verify', '--nats', nats.url, '--ca', caFile]);
    expect(fromStream.code, fromStream.stderr).toBe(0);
    expect(fromStream.stdout).toContain('OK: the chain is intact and every receipt verifies');
    const out = join(fed.dir, 'export.jsonl');
    const exported = cli(['admin', 'audit', 'export', '--state-dir', dir, '--out', out, '--json']);
    expect(exported.code, exported.stderr).toBe(0);
    expect(JSON.parse(exported.stdout)).toMatchObject({ out, records: expect.any(Number) });
    expect(await readFile(out, 'utf8')).toBe(await readFile(journalPath(fed), 'utf8'));
  });

  it('`fedhpc admin audit verify` names the first broken record of a tampered copy and exits 1', async () => {
    const copy = join(fed.dir, 'tampered');
    const lines = (await readFile(journalPath(fed), 'utf8')).split('\n');
    const i = lines.findIndex((l) => l.includes('"round-committed"'));
    const rec = JSON.parse(lines[i]!) as JournalRecord & { body: { participants: { dataManifestSha256: string }[] } };
    rec.body.participants[0]!.dataManifestSha256 = '0'.repeat(64);
    lines[i] = JSON.stringify(rec);
    await mkdir(copy, { recursive: true });
    await writeFile(join(copy, 'journal.jsonl'), lines.join('\n'));
    const r = cli(['admin', 'audit', 'verify', '--state-dir', copy]);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(1);
    expect(r.stdout).toContain(`BROKEN at record ${i + 1} (seq ${i + 1}, round-committed, hash ${rec.hash}): hash does not match the record`);
    const usage = cli(['admin', 'audit', 'verify']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('give exactly one of --state-dir DIR or --nats URL');
  });
});
