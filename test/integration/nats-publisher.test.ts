/**
 * The coordinator's NATS publisher against a real `nats-server -js`: events on their subjects,
 * validated by their schemas; one audit stream message per journal record with the record hash as
 * message id; and a NATS restart that loses no audit record and reports the events it dropped.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { expectLogs, testLogger } from '../helpers/logger.js';
import { readStreamTrail, tapAppends, verifyAudit } from '../../coordinator/audit/index.js';
import { EventBus, natsEventSchema, natsGapEventSchema, type EventKind } from '../../coordinator/observe/events.js';
import { NatsPublisher, natsSchema } from '../../coordinator/nats/index.js';
import { LocalStateStore } from '../../coordinator/state/store.js';
import { skipUnless } from '../helpers/components.js';
import { waitFor } from '../helpers/federation.js';
import { natsUnavailable, startNatsServer, type TestNatsServer } from '../helpers/nats.js';

const skip = skipUnless('nats', natsUnavailable());

interface Rig {
  server: TestNatsServer;
  store: LocalStateStore;
  bus: EventBus;
  publisher: NatsPublisher;
  watcher: NatsConnection;
  messages: { subject: string; json: Record<string, unknown> }[];
  dir: string;
}

describe.skipIf(skip)('publishing to a real nats-server', () => {
  let rig: Rig | undefined;
  afterEach(async () => {
    if (!rig) return;
    await rig.publisher.stop();
    await rig.watcher.close();
    await rig.store.close();
    await rig.server.cleanup();
    await rm(rig.dir, { recursive: true, force: true });
    rig = undefined;
  });

  async function setup(bufferEvents: number): Promise<Rig> {
    const server = await startNatsServer();
    const dir = await mkdtemp(join(tmpdir(), 'fedhpc-natspub-'));
    let publisher: NatsPublisher | undefined;
    const store = tapAppends(await LocalStateStore.open(dir), () => publisher?.recordAppended());
    const bus = new EventBus();
    publisher = new NatsPublisher({ nats: natsSchema.parse({ url: server.url, bufferEvents, timeoutMs: 2_000 }), federation: 'natsfed', bus, records: () => store.records(), logger: testLogger().logger });
    // The watcher reconnects faster than the publisher, so it is back before the gap notice goes out.
    const watcher = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 50 });
    const messages: Rig['messages'] = [];
    watcher.subscribe('fedhpc.natsfed.events.>', { callback: (_e, m: Msg) => void messages.push({ subject: m.subject, json: m.json<Record<string, unknown>>() }) });
    await watcher.flush();
    publisher.start();
    return { server, store, bus, publisher, watcher, messages, dir };
  }

  const streamHashes = async (r: Rig): Promise<string[]> =>
    (await readStreamTrail({ url: r.server.url, timeoutMs: 5_000, stream: 'FEDHPC_AUDIT' })).map((l) => (l.ok ? l.record.hash : 'broken'));

  it('publishes each event on fedhpc.<federation>.events.<kind> as JSON its kind\'s schema accepts', async () => {
    rig = await setup(100);
    const r = rig;
    const events: [EventKind, unknown][] = [
      ['site.joined', { site: 'site-1', agentVersion: '0.1.0', fingerprint: 'AB:CD' }],
      ['round.opened', { runId: 'run', round: 1, attempt: 0 }],
      ['phase.changed', { runId: 'run', round: 1, attempt: 0, phase: 'training', deadlineMs: 123 }],
      ['upload.progress', { runId: 'run', round: 1, attempt: 0, site: 'site-1', bytes: 10, totalBytes: 20 }],
      ['round.aborted', { runId: 'run', round: 1, attempt: 0, reason: 'deadline' }],
      ['site.revoked', { site: 'site-1', fingerprint: 'AB:CD', admin: 'admin', reason: 'key lost' }],
      ['site.left', { site: 'site-1' }],
    ];
    await waitFor('the publisher to connect', async () => ((await streamHashes(r).catch(() => undefined)) ? true : undefined), 15_000);
    for (const [kind, body] of events) r.bus.emit(kind, body as never);
    await waitFor('all events', async () => (r.messages.length >= events.length ? true : undefined), 10_000, 50);
    expect(r.messages.map((m) => m.subject)).toEqual(events.map(([k]) => `fedhpc.natsfed.events.${k}`));
    for (const m of r.messages) {
      const kind = m.json['kind'] as EventKind;
      expect(natsEventSchema(kind).parse(m.json)).toMatchObject({ federation: 'natsfed' });
    }
  });

  it('puts one stream message per journal record, message id = record hash, in journal order', async () => {
    rig = await setup(100);
    const r = rig;
    for (let i = 0; i < 5; i++) await r.store.append({ type: 'round-opened', runId: 'run', round: i + 1, attempt: 0 });
    const journal = r.store.records().map((x) => x.hash);
    await waitFor('the stream to hold the journal', async () => ((await streamHashes(r)).length === journal.length ? true : undefined), 15_000);
    expect(await streamHashes(r)).toEqual(journal);
    const jsm = await jetstreamManager(r.watcher);
    for (let seq = 1; seq <= journal.length; seq++) {
      const m = await jsm.streams.getMessage('FEDHPC_AUDIT', { seq });
      expect(m!.header!.get('Nats-Msg-Id')).toBe(journal[seq - 1]);
    }
    const info = await jsm.streams.info('FEDHPC_AUDIT');
    expect(info.config.storage).toBe('file');
    expect(info.config.subjects).toEqual(['fedhpc.natsfed.audit']);
  });

  it('survives a NATS restart: the journal written meanwhile is replayed without loss or doubles, and the event gap is reported', async () => {
    expectLogs(/^NATS disconnected; buffering events$/, /^NATS event gap/);
    rig = await setup(3);
    const r = rig;
    await r.store.append({ type: 'round-opened', runId: 'run', round: 1, attempt: 0 });
    await waitFor('record 1 in the stream', async () => ((await streamHashes(r)).length === 1 ? true : undefined), 15_000);

    await r.server.stop();
    // The federation goes on: appends and events do not wait for NATS.
    for (let i = 2; i <= 6; i++) {
      await r.store.append({ type: 'round-opened', runId: 'run', round: i, attempt: 0 });
      r.bus.emit('round.opened', { runId: 'run', round: i, attempt: 0 });
    }
    await r.server.start();

    const journal = r.store.records().map((x) => x.hash);
    await waitFor('the replay', async () => ((await streamHashes(r)).length === journal.length ? true : undefined), 20_000);
    expect(await streamHashes(r)).toEqual(journal);
    expect(verifyAudit(await readStreamTrail({ url: r.server.url, timeoutMs: 5_000, stream: 'FEDHPC_AUDIT' })).ok).toBe(true);

    const gap = await waitFor('the gap notice', async () => r.messages.find((m) => m.subject === 'fedhpc.natsfed.events.nats.gap'), 10_000, 50);
    expect(natsGapEventSchema.parse(gap.json).body).toMatchObject({ dropped: 2, buffered: 3 });
    // The three newest events survived the outage, after the gap notice.
    await waitFor('buffered events', async () => (r.messages.filter((m) => m.subject.endsWith('round.opened')).length === 3 ? true : undefined), 10_000, 50);
    expect(r.messages.filter((m) => m.subject.endsWith('round.opened')).map((m) => (m.json['body'] as { round: number }).round)).toEqual([4, 5, 6]);
  });
});
