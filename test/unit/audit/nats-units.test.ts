import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadCoordinatorConfig } from '../../../coordinator/config.js';
import { auditedConfig } from '../../../coordinator/audit/config.js';
import { siteJoinedRecord } from '../../../coordinator/audit/joins.js';
import { EVENT_KINDS, eventBodySchemas, natsEventSchema } from '../../../coordinator/observe/events.js';
import { EventBuffer } from '../../../coordinator/nats/event-buffer.js';
import { replayFrom } from '../../../coordinator/nats/audit-stream.js';
import { natsSchema } from '../../../coordinator/nats/options.js';
import type { JournalRecord } from '../../../coordinator/state/journal.js';

describe('the bounded event buffer', () => {
  it('keeps the newest events and reports how many older ones it dropped, and when they were emitted', () => {
    const b = new EventBuffer<{ ts: number }>(3);
    for (let ts = 1; ts <= 7; ts++) b.push({ ts });
    const { items, gap } = b.drain();
    expect(items.map((e) => e.ts)).toEqual([5, 6, 7]);
    expect(gap).toEqual({ dropped: 4, fromTs: 1, toTs: 4 });
    expect(b.drain()).toEqual({ items: [], gap: undefined });
  });

  it('with capacity 0 drops everything but still counts it', () => {
    const b = new EventBuffer<{ ts: number }>(0);
    b.push({ ts: 5 });
    expect(b.drain()).toEqual({ items: [], gap: { dropped: 1, fromTs: 5, toTs: 5 } });
  });
});

describe('event schemas', () => {
  it('define every kind the issue lists, and validate the NATS envelope of one', () => {
    for (const k of ['site.joined', 'site.left', 'round.opened', 'phase.changed', 'upload.progress', 'round.committed', 'round.aborted', 'site.approved', 'site.revoked']) {
      expect(EVENT_KINDS).toContain(k);
    }
    const msg = { kind: 'round.opened', ts: 1, federation: 'f', body: { runId: 'r', round: 1, attempt: 0 } };
    expect(natsEventSchema('round.opened').safeParse(msg).success).toBe(true);
    expect(natsEventSchema('round.opened').safeParse({ ...msg, body: { runId: 'r', round: 0, attempt: 0 } }).success).toBe(false);
    expect(eventBodySchemas['phase.changed'].safeParse({ runId: 'r', round: 1, attempt: 0, phase: 'lunch', deadlineMs: 1 }).success).toBe(false);
  });
});

describe('the nats config section', () => {
  it('defaults the buffer and stream, and refuses a bad subject prefix with the field named', () => {
    expect(natsSchema.parse({ url: 'nats://x:4222' })).toMatchObject({ bufferEvents: 10_000, auditStream: 'FEDHPC_AUDIT' });
    const bad = natsSchema.safeParse({ url: 'nats://x', subjectPrefix: 'a..b' });
    expect(bad.success).toBe(false);
    expect(bad.error!.issues[0]!.path).toEqual(['subjectPrefix']);
    expect(natsSchema.safeParse({ url: 'nats://x', bufer: 1 }).success).toBe(false);
  });

  it('resolves its TLS and creds files against the config file\'s folder', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fedhpc-natscfg-'));
    try {
      const file = join(dir, 'coordinator.json');
      await writeFile(file, JSON.stringify({
        federation: 'f',
        listen: '127.0.0.1:0',
        tls: { ca: 'ca.crt', cert: 'c.crt', key: 'c.key' },
        stateDir: 'state',
        model: { initial: 'm.safetensors' },
        nats: { url: 'tls://nats:4222', tls: { ca: 'nats-ca.crt' }, creds: 'sub/app.creds' },
      }));
      expect(loadCoordinatorConfig(file).nats).toEqual({
        url: 'tls://nats:4222',
        bufferEvents: 10_000,
        auditStream: 'FEDHPC_AUDIT',
        timeoutMs: 5_000,
        tls: { ca: join(dir, 'nats-ca.crt'), cert: undefined, key: undefined },
        creds: join(dir, 'sub/app.creds'),
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('what goes into the audit trail', () => {
  it('keeps every setting of the config but no key or credential path', () => {
    const c = auditedConfig({ federation: 'f', tls: { ca: 'ca.crt', cert: 'c.crt', key: 'c.key' }, nats: { url: 'nats://x', creds: 'x.creds' }, run: { id: 'r', train: { seed: 3 } } });
    expect(c).toEqual({ federation: 'f', tls: { ca: 'ca.crt', cert: 'c.crt' }, nats: { url: 'nats://x' }, run: { id: 'r', train: { seed: 3 } } });
  });

  it('journals a join only when the site is new or its certificate or agent version changed', () => {
    const rec = (body: Record<string, unknown>): JournalRecord => ({ seq: 1, ts: 0, prev: '', hash: '', body: { type: 'site-joined', ...body } });
    expect(siteJoinedRecord([], 's', 'AA', '1')).toEqual({ type: 'site-joined', site: 's', fingerprint: 'AA', agentVersion: '1' });
    const records = [rec({ site: 's', fingerprint: 'AA', agentVersion: '1' }), rec({ site: 't', fingerprint: 'BB', agentVersion: '1' })];
    expect(siteJoinedRecord(records, 's', 'AA', '1')).toBeUndefined();
    expect(siteJoinedRecord(records, 's', 'CC', '1')).toMatchObject({ fingerprint: 'CC' });
    expect(siteJoinedRecord(records, 's', 'AA', '2')).toMatchObject({ agentVersion: '2' });
  });

  it('replays into the stream from after the record it ends with', () => {
    const records = [1, 2, 3].map((seq) => ({ seq, ts: 0, prev: '', hash: `h${seq}`, body: { type: 'x' } }));
    expect(replayFrom(records, undefined)).toBe(0);
    expect(replayFrom(records, { seq: 2, hash: 'h2' })).toBe(2);
    expect(replayFrom(records, { seq: 3, hash: 'h3' })).toBe(3);
    expect(replayFrom(records, { seq: 2, hash: 'other' })).toBeUndefined();
  });
});
