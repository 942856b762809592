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
