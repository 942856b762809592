import { X509Certificate } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { EventEmitter } from 'node:events';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCa, createIdentityResolver, issueCertificate } from '../../../coordinator/pki/index.js';
import { DashboardAuth } from '../../../coordinator/dashboard/auth.js';
import { EventStreams, MAX_BUFFERED_BYTES } from '../../../coordinator/dashboard/sse.js';
import { createDashboardToken } from '../../../coordinator/dashboard/token.js';
import { EventBus } from '../../../coordinator/observe/events.js';

const HOUR = 3600_000;
let ca: { certPem: string; keyPem: string };
let admin: { certPem: string; keyPem: string };

beforeAll(async () => {
  ca = await createCa({ federation: 'fed', validityDays: 10, now: new Date(Date.now() - HOUR) });
  const c = await issueCertificate({ ca, role: 'admin', id: 'alice', federation: 'fed', validityDays: 5, now: new Date(Date.now() - HOUR) });
  admin = { certPem: c.certPem, keyPem: c.keyPem! };
});

/** A request carrying `cookie`, on a plain (non-TLS) socket. */
const requestWith = (cookie?: string) => ({ headers: cookie ? { cookie } : {}, socket: {} }) as unknown as IncomingMessage;

function auth(o: { maxSessions?: number; now?: () => number } = {}) {
  return new DashboardAuth({
    ca: new X509Certificate(ca.certPem),
    federation: 'fed',
    resolver: createIdentityResolver({ federation: 'fed' }),
    maxTokenLifetimeMs: 24 * HOUR,
    maxSessions: o.maxSessions ?? 4,
    secure: false,
    now: o.now ?? Date.now,
  });
}

/** The `name=value` part of a Set-Cookie header. */
const pair = (cookie: string): string => cookie.split(';')[0]!;

describe('dashboard sessions', () => {
  it('ends the oldest session beyond maxSessions, and ends a session when its token expires', () => {
    let now = Date.now();
    const a = auth({ maxSessions: 1, now: () => now });
    const first = a.exchange(createDashboardToken({ ...admin, validMs: HOUR, now }).token);
    const second = a.exchange(createDashboardToken({ ...admin, validMs: HOUR, now }).token);
    if (!first.ok || !second.ok) throw new Error('exchange refused');
    const old = a.authenticate(requestWith(pair(first.cookie)));
    expect(old.ok || old.refusal.code).toBe('SESSION_UNKNOWN');
    const live = a.authenticate(requestWith(pair(second.cookie)));
    expect(live.ok && live.value).toMatchObject({ admin: 'alice', via: 'session' });
    const valid = live.ok ? live.value.valid : () => true;
    expect(valid()).toBe(true);
    now += HOUR + 1;
    expect(valid()).toBe(false);
    const expired = a.authenticate(requestWith(pair(second.cookie)));
    expect(expired.ok || expired.refusal).toMatchObject({ status: 401, code: 'SESSION_EXPIRED' });
  });

  it('refuses a request without a credential with 401', () => {
    const r = auth().authenticate(requestWith());
    expect(r.ok || r.refusal).toMatchObject({ status: 401, code: 'UNAUTHENTICATED' });
  });
});

/** A response that records what was written, with a settable backlog. */
class FakeResponse extends EventEmitter {
  writableLength = 0;
  written = '';
  ended = false;
  destroyed = false;
  writeHead(): this {
    return this;
  }
  write(chunk: string): boolean {
    this.written += chunk;
    return true;
  }
  end(): void {
    this.ended = true;
  }
  destroy(): void {
    this.destroyed = true;
  }
}

describe('dashboard event streams', () => {
  it('forwards bus events, ends a reader that falls a megabyte behind, and refuses readers beyond the bound', () => {
    const bus = new EventBus(() => 1);
    const streams = new EventStreams({ bus, maxStreams: 2, transfers: () => ({ transfers: [] }) });
    const fast = new FakeResponse();
    const slow = new FakeResponse();
    expect(streams.open(fast as unknown as ServerResponse, () => true)).toBe(true);
    expect(streams.open(slow as unknown as ServerResponse, () => true)).toBe(true);
    expect(streams.open(new FakeResponse() as unknown as ServerResponse, () => true)).toBe(false);
    slow.writableLength = MAX_BUFFERED_BYTES + 1;
    bus.emit('site.left', { site: 'site-1' });
    expect(fast.written).toContain('event: site.left\ndata: {"ts":1,"body":{"site":"site-1"}}\n\n');
    expect(slow.destroyed).toBe(true);
    expect(streams.size).toBe(1);
    streams.close();
    expect(fast.ended).toBe(true);
  });
});
