/**
 * Received gRPC messages in recycled memory: the coordinator's upload chunks.
 *
 * grpc-js gathers each received message that spans several HTTP/2 DATA frames into a fresh buffer
 * (`StreamDecoder.write`, `Buffer.concat`). A 1 MiB chunk lives in it until the spool write is done,
 * long enough to outlive a scavenge, so each one is old-generation external memory to V8, and every
 * few tens of MB of them set off a full mark-compact: ~110 for one 100 M-parameter round (800 MB in)
 * at the coordinator (bench/RESULTS.md, issue 18, session 10). {@link installReceivePool} lets the
 * decoder take such a message's memory from buffers that {@link recycleReceived} handed back.
 *
 * Only a caller that will not read a message's bytes again, and that knows no one else holds a view
 * of them, hands them back: the coordinator's upload stream, once a chunk is written to the spool
 * and hashed. Messages nobody hands back are garbage, as before; where the pool is empty the decoder
 * allocates, as before.
 */
import { createRequire } from 'node:module';

/** grpc-js versions whose `StreamDecoder` (stream-decoder.js) was read for the patch below. */
const CHECKED_GRPC_JS_VERSIONS = /^1\.14\.\d+$/;
/** Messages smaller than this are left to grpc-js: only upload chunks are worth a pool. */
const MIN_POOLED_BYTES = 64 * 1024;
/** At most this many bytes wait in the pool, in all. */
const POOL_BYTES = 64 * 1024 * 1024;
/** `StreamDecoder`'s READING_MESSAGE state. */
const READING_MESSAGE = 2;
/** `StreamDecoder`'s NO_DATA state. */
const NO_DATA = 0;

/** Pooled buffers by framed-message length (5-byte prefix + message). */
const pool = new Map<number, Buffer<ArrayBuffer>[]>();
let pooledBytes = 0;
/** Every buffer the decoder made or took here, by its memory: only these come back. */
const ours = new WeakMap<ArrayBufferLike, Buffer<ArrayBuffer>>();
/** Messages gathered into fresh and into recycled memory, in this process. */
const counts = { fresh: 0, reused: 0 };

/** Messages gathered here into fresh and into recycled memory, and buffers waiting to be used again. */
export function receivedBufferCounts(): { readonly fresh: number; readonly reused: number; readonly pooled: number } {
  let pooled = 0;
  for (const list of pool.values()) pooled += list.length;
  return { ...counts, pooled };
}

/** The decoder state the patch reads and writes (grpc-js 1.14's field names). */
interface DecoderState {
  readState: number;
  readMessageSize: number;
  readMessageRemaining: number;
  readCompressFlag: Buffer;
  readPartialSize: Buffer;
  readPartialMessage: Buffer[];
}
type DecoderWrite = (this: DecoderState, data: Buffer) => Buffer[];

let installed: boolean | undefined;

/**
 * Patches grpc-js's `StreamDecoder.write` so that a message of at least 64 KiB completed by a
 * DATA frame after its first is gathered into a pooled buffer, once per process. Checked against
 * the grpc-js version and shape it was read for (1.14); where either differs nothing is patched
 * and the result is false (messages are then gathered by grpc-js, correct and one allocation
 * each).
 */
export function installReceivePool(): boolean {
  installed ??= patchStreamDecoder();
  return installed;
}

function patchStreamDecoder(): boolean {
  try {
    const require = createRequire(import.meta.url);
    const version = String((require('@grpc/grpc-js/package.json') as { version?: unknown }).version);
    if (!CHECKED_GRPC_JS_VERSIONS.test(version)) return false;
    const mod = require('@grpc/grpc-js/build/src/stream-decoder.js') as { StreamDecoder?: { prototype: { write?: DecoderWrite } } };
    const proto = mod.StreamDecoder?.prototype;
    const original = proto?.write;
    if (!proto || typeof original !== 'function') return false;
    proto.write = function (this: DecoderState, data: Buffer): Buffer[] {
      // The one case handled here: a large message whose last bytes open `data`. Anything else
      // (sizes, prefixes, small messages, a message inside one frame) is grpc-js's own path.
      const size = this.readMessageSize;
      const remaining = this.readMessageRemaining;
      if (this.readState !== READING_MESSAGE || size < MIN_POOLED_BYTES || remaining > data.length || !Array.isArray(this.readPartialMessage)) {
        return original.call(this, data);
      }
      const framed = takeBuffer(size + 5);
      framed.set(this.readCompressFlag.subarray(0, 1), 0);
      framed.set(this.readPartialSize.subarray(0, 4), 1);
      let at = 5;
      for (const part of this.readPartialMessage) {
        framed.set(part, at);
        at += part.length;
      }
      framed.set(data.subarray(0, remaining), at);
      this.readPartialMessage = [];
      this.readMessageRemaining = 0;
      this.readState = NO_DATA;
      return remaining < data.length ? [framed, ...original.call(this, data.subarray(remaining))] : [framed];
    };
    return true;
  } catch {
    return false;
  }
}

function takeBuffer(bytes: number): Buffer<ArrayBuffer> {
  const reused = pool.get(bytes)?.pop();
  if (reused) {
    pooledBytes -= reused.byteLength;
    counts.reused++;
    return reused;
  }
  counts.fresh++;
  const fresh = Buffer.allocUnsafeSlow(bytes);
  ours.set(fresh.buffer, fresh);
  return fresh;
}

/**
 * Hands back the memory of a received message that `bytes` is a view of, for a later message of
 * the same length; bytes in any other memory are left alone. The caller must not read `bytes` (or
 * any other view of that message) again.
 */
export function recycleReceived(bytes: Uint8Array): void {
  const whole = ours.get(bytes.buffer);
  if (!whole || pooledBytes + whole.byteLength > POOL_BYTES) return;
  let list = pool.get(whole.byteLength);
  if (!list) pool.set(whole.byteLength, (list = []));
  if (list.includes(whole)) return;
  list.push(whole);
  pooledBytes += whole.byteLength;
}
