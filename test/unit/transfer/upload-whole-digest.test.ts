/**
 * The agent's side of a stripe proved whole (protocol version 14): against a receiver scripted per
 * test over real gRPC on loopback, the trailer names the SHA-256 of the bytes the stripe carries
 * however the receiver sends the agent back — a resend inside the stripe, a new stream at an offset
 * the agent kept a hash state for or one it did not, the whole stripe again — and the agent refuses
 * a result that names other bytes. A receiver that declines the offer gets tensor digests.
 */
import * as grpc from '@grpc/grpc-js';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadProto, type UploadMessage__Output, type UploadReply } from '../../../proto/index.js';
import { DeltaEncoder } from '../../../site-agent/encode.js';
import { uploadDelta } from '../../../site-agent/transfer.js';
import { writeDeltaFiles, type DeltaFiles } from '../../helpers/delta-files.js';

/** 4,096 f32 values: four chunks of 4 KiB. */
const N = 4096;
const CHUNK = 4096;

/** What the scripted receiver does at each step; `stream` counts the agent's streams from 1. */
interface Script {
  accept(stream: number): { offset: number; whole: boolean };
  /** Before a chunk is taken: take it, ask for bytes from `resend` again, or end the stream without a result. */
  chunk?(stream: number, offset: number): 'take' | 'break' | { resend: number };
  /** At a trailer: ask for bytes again, or answer with a result naming `sha256` (default: the spool's). */
  trailer(stream: number, named: string): { resend: number } | { sha256?: string };
}

/** What the receiver saw. */
interface Seen {
  headers: UploadMessage__Output['header'][];
  trailers: string[];
  digests: number;
  spooled: Buffer;
}

describe('a stripe proved whole, as the agent sends it', () => {
  let files: DeltaFiles | undefined;
  let server: grpc.Server;
  let port = 0;
  let script: Script;
  let seen: Seen;
  let streams = 0;
  let resent = false;
  let delta = Buffer.alloc(0);

  beforeAll(async () => {
    files = await writeDeltaFiles([[N]], (_, i) => i / N, (_, i) => 1e-3 * Math.sin(i));
    const encoder = await encoderOf(files);
    const parts: Buffer[] = [];
    for await (const c of encoder.range(0, encoder.totalBytes, CHUNK, AbortSignal.timeout(10_000))) parts.push(Buffer.from(c.data));
    delta = Buffer.concat(parts);
    const { SiteService } = loadProto().fedhpc.v1;
    server = new grpc.Server();
    server.addService(SiteService.service, { Upload: serve });
    port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  });
  afterAll(async () => {
    server?.forceShutdown();
    await files?.remove();
  });

  const encoderOf = (f: DeltaFiles): Promise<DeltaEncoder> => DeltaEncoder.open(f.globalPath, f.localPath, f.tensors, 'f32');

  function serve(call: grpc.ServerDuplexStream<UploadMessage__Output, UploadReply>): void {
    const stream = ++streams;
    let expected = 0;
    let resync = false;
    let ended = false; // what a stream ended here still had in flight is not read
    const reply = (r: UploadReply): void => void call.write(r);
    const resend = (offset: number): void => {
      expected = offset;
      resync = true;
      reply({ resend: { offset, reason: 'scripted' } });
    };
    call.on('data', (m: UploadMessage__Output) => {
      if (ended) return;
      if (m.header) {
        seen.headers.push(m.header);
        const a = script.accept(stream);
        expected = a.offset;
        reply({ accepted: { offset: a.offset, chunkBytes: CHUNK, windowBytes: 1 << 20, wholeDigest: a.whole } });
      } else if (m.chunk) {
        const offset = Number(m.chunk.offset);
        if (resync && offset !== expected) return;
        resync = false;
        expect(offset).toBe(expected);
        const what = script.chunk?.(stream, offset) ?? 'take';
        if (what === 'break') {
          ended = true;
          call.end();
        }
        else if (what !== 'take') resend(what.resend);
        else {
          Buffer.from(m.chunk.data).copy(seen.spooled, offset);
          expected = offset + m.chunk.data.length;
          reply({ ack: { offset: expected } });
        }
      } else if (m.digest) seen.digests++;
      else if (m.trailer && !resync) {
        seen.trailers.push(m.trailer.sha256);
        const t = script.trailer(stream, m.trailer.sha256);
        if ('resend' in t) resend(t.resend);
        else {
          reply({ result: { accepted: true, complete: true, receivedBytes: delta.length, sha256: t.sha256 ?? sha256(seen.spooled), message: 'verified' } });
          ended = true;
          call.end();
        }
      }
    });
    call.on('error', () => undefined);
  }

  async function upload(s: Script): Promise<Awaited<ReturnType<typeof uploadDelta>>> {
    script = s;
    streams = 0;
    resent = false;
    seen = { headers: [], trailers: [], digests: 0, spooled: Buffer.alloc(delta.length) };
    const { SiteService } = loadProto().fedhpc.v1;
    const client = new SiteService(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const encoder = await encoderOf(files!);
    const header = { runId: 'run-1', round: 1, attempt: 0, baseModelSha256: 'a'.repeat(64), encoding: 'f32', tensors: files!.tensors, samples: 1, tokens: 1, steps: 1, trainLoss: 1, dataManifestSha256: '' };
    try {
      return await uploadDelta(client, header, encoder, AbortSignal.timeout(20_000), () => undefined, {
        chunkBytes: CHUNK,
        streams: 1,
        rateBytesPerS: 0,
        policy: { idleMs: 10_000, retry: { initialMs: 10, maxMs: 50 } },
      });
    } finally {
      client.close();
    }
  }

  const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

  it('names the SHA-256 of its bytes across a resend, a new stream and the whole stripe again, from the states it kept', async () => {
    const r = await upload({
      accept: (stream) => ({ offset: stream === 1 ? 0 : 3 * CHUNK, whole: true }),
      // Stream 1: the third chunk is asked for again from the second; the fourth ends the stream.
      chunk: (stream, offset) => {
        if (stream === 1 && offset === 2 * CHUNK && !resent) {
          resent = true;
          return { resend: CHUNK };
        }
        return stream === 1 && offset === 3 * CHUNK ? 'break' : 'take';
      },
      // The first trailer sends the agent back to the stripe's start, as a mismatch would.
      trailer: (): { resend: number } | { sha256?: string } => (seen.trailers.length === 1 ? { resend: 0 } : {}),
    });
    expect(seen.headers.map((h) => h?.wholeDigest)).toEqual([true, true]);
    expect(seen.digests).toBe(0);
    expect(seen.spooled.equals(delta)).toBe(true);
    expect(seen.trailers).toEqual([sha256(delta), sha256(delta)]);
    expect(r).toMatchObject({ complete: true, sha256: sha256(delta) });
  });

  it('encodes its bytes again up to an offset it kept no hash state for (its receiver kept less)', async () => {
    const r = await upload({
      // The second stream goes back before what the agent saw acknowledged.
      accept: (stream) => ({ offset: stream === 1 ? 0 : CHUNK, whole: true }),
      chunk: (stream, offset) => (stream === 1 && offset === 3 * CHUNK ? 'break' : 'take'),
      trailer: () => ({}),
    });
    expect(seen.trailers).toEqual([sha256(delta)]);
    expect(r).toMatchObject({ complete: true, sha256: sha256(delta) });
  });

  it('refuses a result that names other bytes than it sent, with WIRE_INVALID', async () => {
    await expect(upload({ accept: () => ({ offset: 0, whole: true }), trailer: () => ({ sha256: 'f'.repeat(64) }) })).rejects.toMatchObject({
      code: 'WIRE_INVALID',
      message: expect.stringContaining(`its bytes as sent are ${sha256(delta)}`),
    });
  });

  it('sends tensor digests and an empty trailer where the receiver declines the offer', async () => {
    const r = await upload({ accept: () => ({ offset: 0, whole: false }), trailer: () => ({}) });
    expect(seen.headers[0]?.wholeDigest).toBe(true);
    expect(seen.digests).toBe(1);
    expect(seen.trailers).toEqual(['']);
    expect(r).toMatchObject({ complete: true });
  });
});
