/**
 * The agent's download against a coordinator stand-in that serves `Download` over real gRPC with
 * mTLS (the federation's certificates) and misbehaves on purpose: a chunk whose CRC32C does not
 * match is asked for again from that offset, a stream broken mid-way resumes from the partial file,
 * and a server that stops sending ends the download by the idle timeout, not a wall clock.
 */
import * as grpc from '@grpc/grpc-js';
import { crc32c } from '@node-rs/crc32';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { freeLoopbackPort } from '../../common/net.js';
import { loadProto, type DownloadRequest__Output, type ModelChunk } from '../../proto/index.js';
import { createSiteClient } from '../../site-agent/client.js';
import { downloadModel } from '../../site-agent/download.js';
import { createTestFederation, type TestFederation } from '../helpers/federation.js';
import { siteCertFiles } from '../helpers/raw-site.js';

const MODEL = randomBytes(200_000);
const SHA = createHash('sha256').update(MODEL).digest('hex');
const CHUNK = 16_384;
const POLICY = { idleMs: 1_500, retry: { initialMs: 20, maxMs: 100 } };

type Behaviour = (req: DownloadRequest__Output, call: grpc.ServerWritableStream<DownloadRequest__Output, ModelChunk>, n: number) => Promise<void>;

describe('model downloads: CRC32C, resume, idle timeout', () => {
  let fed: TestFederation;
  let server: grpc.Server | undefined;
  let requests: number[];

  beforeEach(async () => {
    fed = await createTestFederation({ sites: 1 });
    requests = [];
  });
  afterEach(async () => {
    server?.forceShutdown();
    await fed.cleanup();
  });

  async function serve(behaviour: Behaviour): Promise<string> {
    const { SiteService } = loadProto().fedhpc.v1;
    server = new grpc.Server();
    server.addService(SiteService.service, {
      Download: (call: grpc.ServerWritableStream<DownloadRequest__Output, ModelChunk>) => {
        requests.push(Number(call.request.offset));
        void behaviour(call.request, call, requests.length).catch((err: Error) => call.emit('error', { code: grpc.status.INTERNAL, details: err.message }));
      },
    });
    const dir = fed.member('coordinator');
    const creds = grpc.ServerCredentials.createSsl(await readFile(join(dir, 'ca.crt')), [{ private_key: await readFile(join(dir, 'coordinator.key')), cert_chain: await readFile(join(dir, 'coordinator.crt')) }], true);
    const port = await freeLoopbackPort();
    await new Promise<void>((res, rej) => server!.bindAsync(`127.0.0.1:${port}`, creds, (err) => (err ? rej(err) : res())));
    return `localhost:${port}`;
  }

  /** Sends the model from the requested offset; `tamper` may change a chunk (or stop the stream). */
  const sendFrom = (tamper: (chunk: ModelChunk, n: number) => ModelChunk | 'break' | 'stall'): Behaviour => async (req, call, n) => {
    for (let at = Number(req.offset); at < MODEL.length; at += CHUNK) {
      const data = MODEL.subarray(at, at + CHUNK);
      const chunk = tamper({ offset: at, data, totalBytes: MODEL.length, crc32c: crc32c(data) }, n);
      if (chunk === 'break') return void call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'connection reset (test)' });
      if (chunk === 'stall') return; // never ends: only the idle timeout can
      call.write(chunk);
    }
    call.end();
  };

  async function download(address: string) {
    const client = createSiteClient({ coordinator: address, tls: siteCertFiles(fed, 'site-1') });
    try {
      return await downloadModel(client, { sha256: SHA, sizeBytes: MODEL.length }, { cacheDir: join(fed.dir, 'cache'), signal: new AbortController().signal, onProgress: () => undefined, policy: POLICY });
    } finally {
      client.close();
    }
  }

  it('asks again from the chunk whose CRC32C is wrong, and ends with the right model', async () => {
    const address = await serve(sendFrom((c, n) => (n === 1 && c.offset === 3 * CHUNK ? { ...c, data: Buffer.from(c.data as Buffer).fill(0, 0, 8) } : c)));
    const got = await download(address);
    expect(requests).toEqual([0, 3 * CHUNK]);
    expect(got.bytes).toBe(MODEL.length);
    expect((await readFile(got.path)).equals(MODEL)).toBe(true);
  });

  it('resumes a download broken mid-way from the partial file', async () => {
    const address = await serve(sendFrom((c, n) => (n === 1 && c.offset === 5 * CHUNK ? 'break' : c)));
    const got = await download(address);
    expect(requests).toEqual([0, 5 * CHUNK]);
    expect(got.bytes).toBe(MODEL.length);
    expect(createHash('sha256').update(await readFile(got.path)).digest('hex')).toBe(SHA);
  });

  it('gives up on a server that stops sending, by the idle timeout', async () => {
    const address = await serve(sendFrom((c) => (c.offset === 2 * CHUNK ? 'stall' : c)));
    const t0 = Date.now();
    await expect(download(address)).rejects.toMatchObject({ code: 'TRANSFER_STALLED' });
    expect(Date.now() - t0).toBeLessThan(10_000);
    // What did arrive is kept for the next try.
    expect((await stat(join(fed.dir, 'cache', `${SHA}.safetensors.partial`))).size).toBe(2 * CHUNK);
  });

  it('continues the partial file an earlier agent left, hashing its prefix from disk and the rest as it arrives', async () => {
    const address = await serve(sendFrom((c) => c));
    await mkdir(join(fed.dir, 'cache'), { recursive: true });
    await writeFile(join(fed.dir, 'cache', `${SHA}.safetensors.partial`), MODEL.subarray(0, 3 * CHUNK + 100));
    const got = await download(address);
    expect(requests).toEqual([3 * CHUNK + 100]);
    expect(got.bytes).toBe(MODEL.length - (3 * CHUNK + 100));
    expect((await readFile(got.path)).equals(MODEL)).toBe(true);
  });

  it('refuses a model whose kept prefix is corrupt, and removes the partial file so the next try starts clean', async () => {
    const address = await serve(sendFrom((c) => c));
    await mkdir(join(fed.dir, 'cache'), { recursive: true });
    const partial = join(fed.dir, 'cache', `${SHA}.safetensors.partial`);
    const bad = Buffer.from(MODEL.subarray(0, 2 * CHUNK));
    bad.writeUInt8(bad.readUInt8(10) ^ 1, 10);
    await writeFile(partial, bad);
    await expect(download(address)).rejects.toMatchObject({ code: 'MODEL_CHECKSUM' });
    await expect(stat(partial)).rejects.toMatchObject({ code: 'ENOENT' });
    const got = await download(address);
    expect((await readFile(got.path)).equals(MODEL)).toBe(true);
  });
});

describe('model downloads in parts from aggregator shards: every range at once, resumed, and from the coordinator when a shard keeps failing', () => {
  let fed: TestFederation;
  const servers: grpc.Server[] = [];
  /** Download calls each server took, as `[offset, end)` of the bytes asked for. */
  const calls = new Map<string, string[]>();
  /** Bytes each server wrote. */
  const written = new Map<string, number>();
  const HALF = 6 * CHUNK + 123;

  beforeEach(async () => {
    fed = await createTestFederation({ sites: 1 });
    calls.clear();
    written.clear();
  });
  afterEach(async () => {
    for (const s of servers.splice(0)) s.forceShutdown();
    await fed.cleanup();
  });

  /** A stand-in serving ranges of MODEL (`cut` may end a call early, once, after `cut` bytes) and, as the coordinator, AdmitDownload naming `parts`. */
  async function serve(name: string, o: { parts?: () => { shard: string; endpoint: string; start: number; end: number }[]; cutAfter?: number; paceMs?: number; silent?: boolean } = {}): Promise<string> {
    const { SiteService } = loadProto().fedhpc.v1;
    const server = new grpc.Server();
    servers.push(server);
    let cut = o.cutAfter;
    server.addService(SiteService.service, {
      AdmitDownload: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { parts: (o.parts?.() ?? []).map((p) => ({ ...p, start: String(p.start), end: String(p.end) })) }),
      Download: (call: grpc.ServerWritableStream<DownloadRequest__Output, ModelChunk>) => {
        const from = Number(call.request.offset);
        const end = Number(call.request.end) || MODEL.length;
        calls.set(name, [...(calls.get(name) ?? []), `${from}-${end}`]);
        if (o.silent) return; // takes the call and never sends a byte
        void (async () => {
          let sent = 0;
          for (let at = from; at < end && !call.cancelled; at += CHUNK) {
            if (cut !== undefined && sent >= cut) {
              cut = undefined;
              return void call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'connection reset (test)' });
            }
            const data = MODEL.subarray(at, Math.min(end, at + CHUNK));
            call.write({ offset: at, data, totalBytes: MODEL.length, crc32c: crc32c(data) });
            sent += data.length;
            written.set(name, (written.get(name) ?? 0) + data.length);
            if (o.paceMs) await new Promise((r) => setTimeout(r, o.paceMs));
          }
          call.end();
        })();
      },
    });
    const dir = fed.member('coordinator');
    const creds = grpc.ServerCredentials.createSsl(await readFile(join(dir, 'ca.crt')), [{ private_key: await readFile(join(dir, 'coordinator.key')), cert_chain: await readFile(join(dir, 'coordinator.crt')) }], true);
    const port = await freeLoopbackPort();
    await new Promise<void>((res, rej) => server.bindAsync(`127.0.0.1:${port}`, creds, (err) => (err ? rej(err) : res())));
    return `localhost:${port}`;
  }

  async function download(coordinator: string, signal = new AbortController().signal, policy = POLICY) {
    const tls = siteCertFiles(fed, 'site-1');
    const client = createSiteClient({ coordinator, tls });
    try {
      // The stand-ins present the coordinator's certificate: the role check is the real shards' test's.
      return await downloadModel(client, { sha256: SHA, sizeBytes: MODEL.length }, { cacheDir: join(fed.dir, 'cache'), signal, onProgress: () => undefined, policy, shardClient: (endpoint) => createSiteClient({ coordinator: endpoint, tls }) });
    } finally {
      client.close();
    }
  }

  const partsAt = (a: string, b: string) => () => [
    { shard: 's1', endpoint: a, start: 0, end: HALF },
    { shard: 's2', endpoint: b, start: HALF, end: MODEL.length },
  ];

  it('takes each range from its shard, resumes a range broken mid-way from where it broke, and hashes the whole file', async () => {
    const s1 = await serve('s1');
    const s2 = await serve('s2', { cutAfter: 3 * CHUNK });
    const coordinator = await serve('coordinator', { parts: partsAt(s1, s2) });
    const got = await download(coordinator);
    expect((await readFile(got.path)).equals(MODEL)).toBe(true);
    expect(got.bytes).toBe(MODEL.length);
    expect(calls.get('s1')).toEqual([`0-${HALF}`]);
    expect(calls.get('s2')).toEqual([`${HALF}-${MODEL.length}`, `${HALF + 3 * CHUNK}-${MODEL.length}`]);
    expect(calls.get('coordinator')).toBeUndefined();
    await expect(stat(`${got.path}.partial.parts`)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('an agent stopped mid-way resumes every range from the sidecar the partial file keeps', async () => {
    const s1 = await serve('s1', { paceMs: 20 });
    const s2 = await serve('s2', { paceMs: 20 });
    const coordinator = await serve('coordinator', { parts: partsAt(s1, s2) });
    const stop = new AbortController();
    // Stopped once both shards have sent a few chunks, long before either range is done.
    const watch = setInterval(() => {
      if ((written.get('s1') ?? 0) >= 2 * CHUNK && (written.get('s2') ?? 0) >= 2 * CHUNK) stop.abort(new Error('agent stopped (test)'));
    }, 5);
    await expect(download(coordinator, stop.signal)).rejects.toThrow();
    clearInterval(watch);
    const saved = JSON.parse(await readFile(join(fed.dir, 'cache', `${SHA}.safetensors.partial.parts`), 'utf8')) as { ranges: { start: number; end: number; at: number }[] };
    expect(saved.ranges.map((r) => [r.start, r.end])).toEqual([[0, HALF], [HALF, MODEL.length]]);
    expect(saved.ranges.every((r) => r.at > r.start && r.at < r.end)).toBe(true);
    calls.clear();
    const got = await download(coordinator);
    expect((await readFile(got.path)).equals(MODEL)).toBe(true);
    expect(calls.get('s1')).toEqual([`${saved.ranges[0]!.at}-${HALF}`]);
    expect(calls.get('s2')).toEqual([`${saved.ranges[1]!.at}-${MODEL.length}`]);
    expect(got.bytes).toBe(MODEL.length - (saved.ranges[0]!.at - 0) - (saved.ranges[1]!.at - HALF));
  });

  it('a shard that takes the call and never sends: each call to it is cut after a third of the idle timeout, and after two its range comes from the coordinator', async () => {
    const s1 = await serve('s1');
    const s2 = await serve('s2', { silent: true });
    const coordinator = await serve('coordinator', { parts: partsAt(s1, s2) });
    const t0 = Date.now();
    const got = await download(coordinator, new AbortController().signal, { idleMs: 4_500, retry: { initialMs: 20, maxMs: 100 } });
    expect((await readFile(got.path)).equals(MODEL)).toBe(true);
    expect(calls.get('s2')).toEqual([`${HALF}-${MODEL.length}`, `${HALF}-${MODEL.length}`]);
    expect(calls.get('coordinator')).toEqual([`${HALF}-${MODEL.length}`]);
    // Two calls of 1.5 s each, well inside the 4.5 s in which a stalled download fails.
    expect(Date.now() - t0).toBeLessThan(4_500);
  });

  it('a shard that does not answer: its range comes from the coordinator after two calls that moved nothing', async () => {
    const s1 = await serve('s1');
    const gone = `localhost:${await freeLoopbackPort()}`;
    const coordinator = await serve('coordinator', { parts: partsAt(s1, gone) });
    const got = await download(coordinator);
    expect((await readFile(got.path)).equals(MODEL)).toBe(true);
    expect(calls.get('s1')).toEqual([`0-${HALF}`]);
    expect(calls.get('coordinator')).toEqual([`${HALF}-${MODEL.length}`]);
  });
});
