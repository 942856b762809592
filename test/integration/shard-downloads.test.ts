/**
 * An aggregator shard serving model parts (coordinator/shards/shard-downloads.ts, issue 22,
 * protocol version 12) over real gRPC and mTLS, with its own `aggregator` certificate: it serves a
 * site only the range of a model its leader admitted for that site, reports each call's bytes, and
 * refuses the rest — nothing before the admission ("ask again"), nothing outside the range, nothing
 * of another site's admission, no caller that is not a site — and holds each site to its call limits
 * as the coordinator does.
 */
import * as grpc from '@grpc/grpc-js';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_FLOW_CONTROL_WINDOW_BYTES } from '../../common/grpc-window.js';
import { freeLoopbackPort } from '../../common/net.js';
import { readTlsFiles } from '../../common/tls.js';
import { systemClock } from '../../coordinator/core/clock.js';
import { RefusalMonitor } from '../../coordinator/observe/refusals.js';
import { loadShardConfig } from '../../coordinator/shards/config.js';
import { ShardDownloads } from '../../coordinator/shards/shard-downloads.js';
import { ShardAdmissions, serveShardTransfers } from '../../coordinator/shards/shard-uploads.js';
import type { CallLimits } from '../../coordinator/service/limits.js';
import type { ModelChunk__Output, ShardSent, SiteServiceClient } from '../../proto/index.js';
import { createSiteClient } from '../../site-agent/client.js';
import { createTestFederation, type TestFederation } from '../helpers/federation.js';
import { windowsGrantedBy } from '../helpers/http2-window.js';
import { expectLogs, testLogger } from '../helpers/logger.js';
import { adminCertFiles, siteCertFiles } from '../helpers/raw-site.js';

const MODEL = randomBytes(300_000);
const SHA = createHash('sha256').update(MODEL).digest('hex');
const OTHER = 'b'.repeat(64);

describe('an aggregator shard serves the model parts its leader admitted, and nothing else', () => {
  let fed: TestFederation;
  let server: { stop(): Promise<void> } | undefined;
  let endpoint: string;
  let downloads: ShardDownloads;
  /** (Re)starts the shard's server under `limits`. */
  let serve: (limits: CallLimits) => Promise<void>;
  let sent: Omit<ShardSent, 'term'>[];
  const clients: SiteServiceClient[] = [];

  beforeEach(async () => {
    fed = await createTestFederation({ sites: 2, aggregators: 1 });
    const config = loadShardConfig(fed.files.aggregatorConfigs.get('shard-1')!);
    const checkpoints = join(fed.dir, 'checkpoints');
    await mkdir(join(checkpoints, 'models'), { recursive: true });
    await writeFile(join(checkpoints, 'models', `${SHA}.safetensors`), MODEL);
    sent = [];
    const { logger } = testLogger();
    downloads = new ShardDownloads(checkpoints, (r) => sent.push(r), logger);
    serve = async (limits) => {
      await server?.stop();
      const port = await freeLoopbackPort();
      endpoint = `localhost:${port}`;
      server = await serveShardTransfers({
        listen: `127.0.0.1:${port}`,
        federation: config.federation,
        tls: readTlsFiles(config.tls),
        stateDir: join(fed.dir, 'shard-state'),
        uploadBudgetBytes: 1 << 20,
        limits,
        admissions: new ShardAdmissions(() => undefined, logger),
        downloads,
        refusals: new RefusalMonitor({ logger, now: () => systemClock.now() }),
        clock: systemClock,
        logger,
      });
    };
    await serve(config.limits);
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await server?.stop();
    await fed.cleanup();
  });

  const client = (tls = siteCertFiles(fed, 'site-1')): SiteServiceClient => {
    const c = createSiteClient({ coordinator: endpoint, tls }, 'aggregator');
    clients.push(c);
    return c;
  };
  const fetch = (c: SiteServiceClient, offset: number, end: number, sha256 = SHA): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const parts: Buffer[] = [];
      const call = c.Download({ sha256, offset, end });
      call.on('data', (m: ModelChunk__Output) => parts.push(Buffer.from(m.data)));
      call.on('error', reject);
      call.on('end', () => resolve(Buffer.concat(parts)));
    });
  const admit = (site: string, start: number, end: number, sha256 = SHA, maxChunkBytes = 64 * 1024): void =>
    downloads.admit({ siteId: site, sha256, start: String(start), end: String(end), maxChunkBytes, idleMs: 10_000 });

  it('serves the admitted range, in chunks of the leader’s size, resumed from any offset in it, and reports each call’s bytes', async () => {
    const c = client();
    await expect(fetch(c, 100_000, 300_000)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE, details: expect.stringContaining('NOT_ADMITTED') });
    admit('site-1', 100_000, 300_000);
    expect((await fetch(c, 100_000, 300_000)).equals(MODEL.subarray(100_000, 300_000))).toBe(true);
    // End 0 is the admitted range's end; a resume starts inside the range.
    expect((await fetch(c, 250_000, 0)).equals(MODEL.subarray(250_000, 300_000))).toBe(true);
    expect(sent).toEqual([
      { siteId: 'site-1', sha256: SHA, start: '100000', end: '300000', bytes: '200000', complete: true },
      { siteId: 'site-1', sha256: SHA, start: '250000', end: '300000', bytes: '50000', complete: true },
    ]);
  });

  it('refuses bytes outside the range, another site’s admission, a non-site certificate, and forgets the admissions of older models', async () => {
    admit('site-1', 100_000, 300_000);
    const c = client();
    await expect(fetch(c, 0, 100_000)).rejects.toMatchObject({ code: grpc.status.OUT_OF_RANGE, details: expect.stringContaining('CHUNK_OUT_OF_RANGE') });
    await expect(fetch(c, 100_000, 300_001)).rejects.toMatchObject({ code: grpc.status.OUT_OF_RANGE });
    await expect(fetch(client(siteCertFiles(fed, 'site-2')), 100_000, 300_000)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE, details: expect.stringContaining('NOT_ADMITTED') });
    await expect(fetch(client(adminCertFiles(fed)), 100_000, 300_000)).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
    // Two newer models admitted: the first model's admission is gone.
    admit('site-1', 0, 10, OTHER);
    admit('site-1', 0, 10, 'c'.repeat(64));
    await expect(fetch(c, 100_000, 300_000)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE, details: expect.stringContaining('NOT_ADMITTED') });
    expect(sent).toEqual([]);
    // A site the leader revoked: its admissions go, and a call it has open ends.
    admit('site-2', 0, 300_000, SHA, 1024);
    // Dropped as the first chunk arrives: the rest of the range (1 KiB chunks, each read from the
    // file first) is never sent.
    const slow = new Promise<grpc.ServiceError>((resolve) => {
      const call = client(siteCertFiles(fed, 'site-2')).Download({ sha256: SHA, offset: 0, end: 300_000 });
      call.once('data', () => downloads.drop('site-2', 'revoked by admin alice'));
      call.on('error', resolve);
      call.on('end', () => resolve({ code: grpc.status.OK } as grpc.ServiceError));
    });
    expect(await slow).toMatchObject({ code: grpc.status.PERMISSION_DENIED, details: expect.stringContaining('SITE_REVOKED') });
    await expect(fetch(client(siteCertFiles(fed, 'site-2')), 0, 300_000)).rejects.toMatchObject({ details: expect.stringContaining('NOT_ADMITTED') });
    // An admission the shard cannot take is refused where it arrives.
    expect(() => admit('site-1', 10, 10)).toThrow(/download admission of bytes/);
  });

  it('holds each site to its call limits, as the coordinator does: open calls, then calls per second', async () => {
    await serve({ requestsPerS: 0.001, burst: 3, maxConcurrentCallsPerSite: 1 });
    admit('site-1', 0, 300_000);
    admit('site-2', 0, 300_000);
    const c = client();
    // The held upload, cancelled before its header, is refused as one.
    expectLogs((l) => l.msg === 'upload refused' && l['site'] === 'site-1');
    // An upload stream that has sent nothing yet holds site-1's one open call.
    const held = c.Upload();
    held.on('error', () => undefined);
    await new Promise((resolve) => setTimeout(resolve, 200));
    await expect(fetch(c, 0, 300_000)).rejects.toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED, details: expect.stringMatching(/RATE_LIMITED: site-1 already has 1 calls open/) });
    // Another site's calls are its own.
    expect((await fetch(client(siteCertFiles(fed, 'site-2')), 0, 300_000)).equals(MODEL)).toBe(true);
    held.cancel();
    await new Promise((resolve) => setTimeout(resolve, 200));
    // Its bucket held three: the upload took one, two downloads the rest; the next waits for a token.
    expect((await fetch(c, 0, 100)).equals(MODEL.subarray(0, 100))).toBe(true);
    expect((await fetch(c, 100, 200)).equals(MODEL.subarray(100, 200))).toBe(true);
    await expect(fetch(c, 200, 300)).rejects.toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED, details: expect.stringMatching(/RATE_LIMITED: site-1 exceeds 0.001 requests\/s/) });
  });

  it('opens every site connection with the 64 MiB receive window the coordinator opens, not grpc-js’s 64 KiB', async () => {
    // A shard's server once kept grpc-js's window: one 64 KiB window of a site's part per round trip.
    expect(await windowsGrantedBy(Number(endpoint.slice(endpoint.lastIndexOf(':') + 1)), siteCertFiles(fed, 'site-1'))).toEqual({
      streamWindow: DEFAULT_FLOW_CONTROL_WINDOW_BYTES,
      connectionWindow: DEFAULT_FLOW_CONTROL_WINDOW_BYTES,
    });
  });
});
