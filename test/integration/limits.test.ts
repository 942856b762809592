/**
 * Per-caller limits on the coordinator's gRPC surface: a site that floods an RPC is refused with
 * RESOURCE_EXHAUSTED while other sites are served (heartbeats on a stream are charged one by one), a caller cannot hold more than its share of
 * open calls, and a message over the size limit is refused before any handler sees it.
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CoordinatorHandle } from '../../coordinator/index.js';
import { CallLimiter } from '../../coordinator/service/limits.js';
import { MAX_MESSAGE_BYTES, PROTOCOL_VERSION } from '../../proto/index.js';
import { createTestFederation, startCoordinatorInProcess, waitFor, type TestFederation } from '../helpers/federation.js';
import { expectLogs } from '../helpers/logger.js';
import { adminCertFiles, siteCertFiles } from '../helpers/raw-site.js';
import { RawRpcClient, encodeRequest, rpcNamed } from '../helpers/raw-rpc.js';

const JOIN = rpcNamed('SiteService/Join');
const HEARTBEAT = rpcNamed('SiteService/Heartbeat');
const HEARTBEATS = rpcNamed('SiteService/Heartbeats');
const STATUS = rpcNamed('AdminService/Status');
const EVENTS = rpcNamed('AdminService/Events');

/** Sets `limits` fields in a test federation's coordinator config file. */
async function patchLimits(fed: TestFederation, limits: Record<string, number>): Promise<void> {
  await fed.patchCoordinatorConfig((cfg) => ({ ...cfg, limits: { ...(cfg['limits'] as object), ...limits } }));
}

describe('per-caller limits (real coordinator over mTLS)', () => {
  let fed: TestFederation;
  let coordinator: CoordinatorHandle;
  const clients: RawRpcClient[] = [];
  const client = (files: Parameters<typeof siteCertFiles>[1] | 'admin'): RawRpcClient => {
    const c = new RawRpcClient(fed.address, files === 'admin' ? adminCertFiles(fed) : siteCertFiles(fed, files));
    clients.push(c);
    return c;
  };
  const join = (c: RawRpcClient, site: string) =>
    c.call(JOIN, [encodeRequest(JOIN, { siteId: site, protocolVersion: PROTOCOL_VERSION, agentVersion: 'limits-test' })], 5_000);
  const heartbeat = (c: RawRpcClient) => c.call(HEARTBEAT, [encodeRequest(HEARTBEAT, { activity: 'idle', progress: 0 })], 5_000);

  beforeAll(async () => {
    fed = await createTestFederation({ sites: 5, run: { rounds: 1, minSites: 3 } });
    await patchLimits(fed, { requestsPerS: 2, burst: 5, maxConcurrentCallsPerSite: 3 });
    coordinator = await startCoordinatorInProcess(fed);
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await coordinator?.stop();
    await fed?.cleanup();
  });

  it('refuses a site that floods Heartbeat with RESOURCE_EXHAUSTED and a clear message, while another site is served', async () => {
    const flooder = client('site-1');
    const other = client('site-2');
    expect((await join(other, 'site-2')).code).toBe(grpc.status.OK);
    const started = Date.now();
    expect((await join(flooder, 'site-1')).code).toBe(grpc.status.OK);

    const outcomes = [];
    for (let i = 0; i < 12; i++) outcomes.push(await heartbeat(flooder));
    const served = outcomes.filter((o) => o.code === grpc.status.OK).length;
    // Burst 5, one token spent on Join, and a refill of 2/s for as long as the flood took (about
    // half a second here; a loaded machine's calls can take longer, and earn more tokens).
    const refilled = Math.ceil(((Date.now() - started) / 1000) * 2);
    expect(served).toBeGreaterThanOrEqual(4);
    expect(served).toBeLessThanOrEqual(4 + refilled);
    expect(served).toBeLessThan(12);
    const refused = outcomes.filter((o) => o.code !== grpc.status.OK);
    expect(refused.length).toBe(12 - served);
    for (const r of refused) {
      expect(r.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(r.fedhpcCode).toBe('RATE_LIMITED');
      expect(r.details).toMatch(/^RATE_LIMITED: site-1 exceeds 2 requests\/s \(burst 5\); Heartbeat refused, retry in \d+ ms$/);
    }
    // The other site has its own bucket.
    expect((await heartbeat(other)).code).toBe(grpc.status.OK);
    // And the flooder is served again once its bucket refills.
    await waitFor('the bucket to refill', async () => ((await heartbeat(flooder)).code === grpc.status.OK ? true : undefined), 5_000, 300);
  });

  it('answers each heartbeat on a Heartbeats stream and shows the latest in the site list', async () => {
    const c = client('site-5');
    expect((await join(c, 'site-5')).code).toBe(grpc.status.OK);
    const beat = (bytes: number) =>
      encodeRequest(HEARTBEATS, { activity: 'uploading', round: 1, progress: 0.5, transfer: { direction: 'upload', bytes: String(bytes), totalBytes: '1000', rateBytesPerS: 100 } });
    const o = await c.call(HEARTBEATS, [beat(100), beat(400)], 5_000);
    expect(o.code).toBe(grpc.status.OK);
    expect(o.responses).toBe(2);
    const site = (await fed.admin().sites()).sites.find((x) => x.siteId === 'site-5');
    expect(site?.activity).toBe('uploading');
    expect(site?.transferBytes).toBe('400');
  });

  it('charges each message on a Heartbeats stream as a call: a flood ends the stream with RATE_LIMITED', async () => {
    const c = client('site-4');
    expect((await join(c, 'site-4')).code).toBe(grpc.status.OK);
    const o = await c.call(HEARTBEATS, Array.from({ length: 12 }, () => encodeRequest(HEARTBEATS, { activity: 'idle', progress: -1 })), 5_000);
    expect(o.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(o.fedhpcCode).toBe('RATE_LIMITED');
    expect(o.details).toMatch(/^RATE_LIMITED: site-4 exceeds 2 requests\/s \(burst 5\); Heartbeats refused, retry in \d+ ms$/);
    // Burst 5: Join takes one, the stream's call pays for its first heartbeat, and three more
    // tokens pay for three more (and whatever refilled meanwhile): N heartbeats cost N tokens.
    expect(o.responses).toBeGreaterThanOrEqual(4);
    expect(o.responses).toBeLessThan(12);
  });

  it('refuses a Heartbeats stream from a site that has not joined, or has been revoked', async () => {
    const o = await client('site-3').call(HEARTBEATS, [encodeRequest(HEARTBEATS, { activity: 'idle', progress: -1 })], 5_000);
    expect(o.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(o.fedhpcCode).toBe('NOT_JOINED');
    expect(o.responses).toBe(0);
    // site-5 joined and heartbeated above; once revoked, its next stream is refused.
    expectLogs(/^site revoked$/, /^caller refused$/);
    await fed.admin().revokeSite('site-5', 'limits test');
    const revoked = await client('site-5').call(HEARTBEATS, [encodeRequest(HEARTBEATS, { activity: 'idle', progress: -1 })], 5_000);
    expect(revoked.fedhpcCode).toBe('SITE_REVOKED');
    expect(revoked.responses).toBe(0);
  });

  it('caps the calls one caller holds open; a closed stream frees its place', async () => {
    const admin = client('admin');
    const stop = new AbortController();
    const streams = [0, 1, 2].map(() => admin.call(EVENTS, [encodeRequest(EVENTS, {})], 30_000, stop.signal));
    const status = await waitFor(
      'the fourth call to be refused',
      async () => {
        const o = await admin.call(STATUS, [encodeRequest(STATUS, {})], 5_000);
        return o.code === grpc.status.RESOURCE_EXHAUSTED ? o : undefined;
      },
      5_000,
      50,
    );
    expect(status.fedhpcCode).toBe('RATE_LIMITED');
    expect(status.details).toMatch(/already has 3 calls open \(limit 3\); Status refused/);
    // A site is not affected by the admin's open calls.
    expect((await heartbeat(client('site-3'))).code).not.toBe(grpc.status.RESOURCE_EXHAUSTED);

    stop.abort();
    for (const s of await Promise.all(streams)) expect(s.code).toBe(grpc.status.CANCELLED);
    const after = await waitFor('a free place', async () => {
      const o = await admin.call(STATUS, [encodeRequest(STATUS, {})], 5_000);
      return o.code === grpc.status.OK ? o : undefined;
    }, 5_000, 300);
    expect(after.code).toBe(grpc.status.OK);
  });

  it('refuses a message larger than the maximum before any handler reads it', async () => {
    const c = client('site-3');
    const huge = encodeRequest(JOIN, { siteId: 'site-3', protocolVersion: PROTOCOL_VERSION, agentVersion: 'x'.repeat(MAX_MESSAGE_BYTES + 1) });
    const o = await c.call(JOIN, [huge], 10_000);
    expect(o.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(o.details).toMatch(/larger than max/i);
  });
});

describe('CallLimiter (token bucket and open-call count, fake clock)', () => {
  it('refills at requestsPerS up to burst and counts open calls until released', () => {
    let now = 0;
    const limiter = new CallLimiter({ requestsPerS: 10, burst: 2, maxConcurrentCallsPerSite: 5 }, () => now);
    const a = limiter.admit('fp-a', 'site-a', 'Heartbeat');
    const b = limiter.admit('fp-a', 'site-a', 'Heartbeat');
    expect(a.ok && b.ok).toBe(true);
    const c = limiter.admit('fp-a', 'site-a', 'Heartbeat');
    expect(c).toEqual({ ok: false, message: 'site-a exceeds 10 requests/s (burst 2); Heartbeat refused, retry in 100 ms' });
    now += 100;
    expect(limiter.admit('fp-a', 'site-a', 'Heartbeat').ok).toBe(true);
    expect(limiter.admit('fp-b', 'site-b', 'Heartbeat').ok).toBe(true);
  });

  it('refuses the call over the open-call cap, and admits again after a release (released once only)', () => {
    const limiter = new CallLimiter({ requestsPerS: 1000, burst: 1000, maxConcurrentCallsPerSite: 2 }, () => 0);
    const first = limiter.admit('fp', 'site-a', 'Tasks');
    const second = limiter.admit('fp', 'site-a', 'Upload');
    expect(limiter.admit('fp', 'site-a', 'Status')).toEqual({ ok: false, message: 'site-a already has 2 calls open (limit 2); Status refused' });
    if (!first.ok || !second.ok) throw new Error('expected both calls admitted');
    first.release();
    first.release();
    expect(limiter.admit('fp', 'site-a', 'Status').ok).toBe(true);
    expect(limiter.admit('fp', 'site-a', 'Status').ok).toBe(false);
  });

  it('charges a message from the same bucket as calls, without holding an open call', () => {
    let now = 0;
    const limiter = new CallLimiter({ requestsPerS: 10, burst: 3, maxConcurrentCallsPerSite: 1 }, () => now);
    const stream = limiter.admit('fp', 'site-a', 'Heartbeats');
    expect(stream.ok).toBe(true);
    expect(limiter.charge('fp', 'site-a', 'Heartbeats')).toEqual({ ok: true });
    expect(limiter.charge('fp', 'site-a', 'Heartbeats')).toEqual({ ok: true });
    expect(limiter.charge('fp', 'site-a', 'Heartbeats')).toEqual({ ok: false, message: 'site-a exceeds 10 requests/s (burst 3); Heartbeats refused, retry in 100 ms' });
    now += 100;
    expect(limiter.charge('fp', 'site-a', 'Heartbeats')).toEqual({ ok: true });
    // The one open call is the stream's: a message took none.
    expect(limiter.admit('fp', 'site-a', 'Status')).toEqual({ ok: false, message: 'site-a already has 1 calls open (limit 1); Status refused' });
  });
});
