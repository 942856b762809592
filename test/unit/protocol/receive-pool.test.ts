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

  it('takes back only memory it gave out, once', () => {
    const before = receivedBufferCounts();
    recycleReceived(Buffer.alloc(100_000));
    recycleReceived(new Uint8Array(70_000));
    expect(receivedBufferCounts()).toEqual(before);
  });
});
