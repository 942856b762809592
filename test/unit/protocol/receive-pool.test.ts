/**
 * proto/receive-pool.ts: large received messages gathered into recycled memory must arrive intact,
 * message after message, whatever the frames they came in; small messages stay grpc-js's own.
 * Real grpc-js client and server on loopback.
 */
import * as grpc from '@grpc/grpc-js';
import { crc32c } from '@node-rs/crc32';
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { loadProto, type UploadMessage, type UploadMessage__Output, type UploadReply, type UploadReply__Output } from '../../../proto/index.js';
import { uploadOverLoopback } from '../../helpers/upload-loopback.js';
import { grpcInternal } from '../../../proto/grpc-internals.js';
import { installReceivePool, receivedBufferCounts, recycleReceived } from '../../../proto/receive-pool.js';

/** Seeded bytes: message `i` of `bytes` bytes. */
function payload(i: number, bytes: number): Buffer {
  const out = Buffer.alloc(bytes);
  let x = (i + 1) * 0x9e3779b1;
  for (let k = 0; k < bytes; k += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.writeUInt32LE(x >>> 0, k);
  }
  return out;
}

/**
 * Streams chunk messages of the given sizes to a server that checks each one's CRC32C and SHA-256
 * and then, with `recycle`, hands its memory back; resolves with what the server saw.
 */
async function upload(sizes: readonly number[], recycle: boolean): Promise<{ intact: number; broken: number }> {
  const proto = loadProto();
  const seen = { intact: 0, broken: 0 };
  const expected = sizes.map((n, i) => createHash('sha256').update(payload(i, n)).digest('hex'));
  const serve = (call: grpc.ServerDuplexStream<UploadMessage__Output, UploadReply>): void => {
    let i = 0;
    call.on('data', (m: UploadMessage__Output) => {
      const data = m.chunk!.data;
      // Read after a turn of the event loop, as the coordinator reads after its spool write.
      setImmediate(() => {
        const ok = crc32c(data) === m.chunk!.crc32c && createHash('sha256').update(data).digest('hex') === expected[Number(m.chunk!.offset)];
        if (ok) seen.intact++;
        else seen.broken++;
        if (recycle) recycleReceived(data);
      });
      i++;
    });
    call.on('end', () => {
      setImmediate(() => {
        call.write({ result: { accepted: true, receivedBytes: String(i) } });
        call.end();
      });
    });
  };
  const drive = async (call: grpc.ClientDuplexStream<UploadMessage, UploadReply__Output>): Promise<void> => {
    for (const [i, n] of sizes.entries()) {
      const data = payload(i, n);
      if (!call.write({ chunk: { offset: i, data, crc32c: crc32c(data) } })) await new Promise((r) => call.once('drain', r));
    }
    call.end();
  };
  await uploadOverLoopback(proto, proto, serve, drive, { 'grpc.max_send_message_length': -1, 'grpc.max_receive_message_length': -1 });
  return seen;
}

describe('received messages in recycled memory', () => {
  it('patches grpc-js 1.14', () => {
    expect(installReceivePool()).toBe(true);
  });

  it('delivers every large message intact while their memory is handed back and used again, sizes mixed', async () => {
    // Sizes that repeat (so memory is used again) beside odd ones, small ones grpc-js keeps, and
    // messages big enough to span many HTTP/2 frames.
    const sizes = Array.from({ length: 120 }, (_, i) => (i % 7 === 3 ? 1_000 + i * 4 : i % 5 === 0 ? 300_000 : 65_536 + (i % 2) * 4_096));
    const before = receivedBufferCounts();
    expect(await upload(sizes, true)).toEqual({ intact: sizes.length, broken: 0 });
    const after = receivedBufferCounts();
    expect(after.reused - before.reused).toBeGreaterThan(20);
    // Small messages never came from the pool.
    expect(after.reused + after.fresh - before.reused - before.fresh).toBeLessThan(sizes.length);
  }, 60_000);

  it('leaves memory nobody hands back to the garbage collector, and takes none of it again', async () => {
    const sizes = Array.from({ length: 40 }, () => 70_000);
    const before = receivedBufferCounts();
    expect(await upload(sizes, false)).toEqual({ intact: sizes.length, broken: 0 });
    expect(receivedBufferCounts().reused - before.reused).toBe(0);
  }, 60_000);

  it('gathers messages from any split of the stream into DATA frames: prefixes split, several messages in a frame, a message per byte', () => {
    installReceivePool();
    type Decoder = { write(data: Buffer): Buffer[] };
    const StreamDecoder = grpcInternal<{ StreamDecoder: new (max: number) => Decoder }>('stream-decoder.js')!.StreamDecoder!;
    let seed = 7;
    let gathered = 0;
    const random = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    for (let trial = 0; trial < 30; trial++) {
      // Large messages (gathered here) between small and empty ones (grpc-js's own path).
      const messages = Array.from({ length: 8 }, (_, i) => {
        const kind = random(4);
        const bytes = kind === 0 ? 0 : kind === 1 ? 1 + random(5_000) : 65_536 + random(200_000);
        return payload(trial * 8 + i, bytes + ((4 - (bytes % 4)) % 4));
      });
      // The compressed flag passes through as it came (0 or 1 here: grpc-js reads it later).
      const flags = messages.map(() => random(2));
      const stream = Buffer.concat(messages.flatMap((m, i) => [Buffer.from([flags[i]!]), Buffer.from(Uint32Array.of(m.length).buffer).reverse(), m]));
      const before = receivedBufferCounts();
      const decoder = new StreamDecoder(-1);
      const out: Buffer[] = [];
      // Frames of 1 byte to 40 KB, cut anywhere: inside a prefix, across message ends.
      for (let at = 0; at < stream.length; ) {
        const n = trial % 10 === 9 && at < 70_000 ? 1 : 1 + random(40_000);
        out.push(...decoder.write(stream.subarray(at, at + n)));
        at += n;
      }
      expect(out.map((f) => f.subarray(5).toString('hex'))).toEqual(messages.map((m) => m.toString('hex')));
      expect(out.map((f) => f.readUInt32BE(1))).toEqual(messages.map((m) => m.length));
      expect(out.map((f) => f[0])).toEqual(flags);
      // Every large message (each spans frames here) was gathered by the patch, in the pool's memory.
      const after = receivedBufferCounts();
      const large = messages.filter((m) => m.length >= 65_536).length;
      expect(after.fresh + after.reused - before.fresh - before.reused).toBe(large);
      gathered += large;
    }
    expect(gathered).toBeGreaterThan(30);
  });

  it('takes back only memory it gave out, once', () => {
    const before = receivedBufferCounts();
    recycleReceived(Buffer.alloc(100_000));
    recycleReceived(new Uint8Array(70_000));
    expect(receivedBufferCounts()).toEqual(before);
  });
});
