/**
 * Received gRPC messages in recycled memory: the coordinator's upload chunks.
 *
 * grpc-js gathers each received message that spans several HTTP/2 DATA frames into a fresh buffer
 * (`StreamDecoder.write`, `Buffer.concat`), holding every frame until the last has come. A 1 MiB
 * chunk lives in it until the spool write is done, long enough to outlive a scavenge, so each one
 * is old-generation external memory to V8, and every few tens of MB of them set off a full
 * mark-compact: ~110 for one 100 M-parameter round (800 MB in) at the coordinator
 * (bench/RESULTS.md, issue 18, session 10). {@link installReceivePool} lets the
 * decoder take such a message's memory from buffers that {@link recycleReceived} handed back, and
 * copy each frame's bytes into it as the frame arrives.
 *
 * Only a caller that will not read a message's bytes again, and that knows no one else holds a view
 * of them, hands them back: the coordinator's upload stream, once a chunk is written to the spool
 * and hashed. Messages nobody hands back are garbage, as before; where the pool is empty the decoder
 * allocates, as before.
 */
import { BufferPool } from './buffer-pool.js';
import { grpcInternal } from './grpc-internals.js';

/** Messages smaller than this are left to grpc-js: only upload chunks are worth a pool. */
const MIN_POOLED_BYTES = 64 * 1024;
/** `StreamDecoder`'s READING_MESSAGE state. */
const READING_MESSAGE = 2;
/** `StreamDecoder`'s NO_DATA state. */
const NO_DATA = 0;

/**
 * Framed messages' memory (5-byte prefix + message), at most 64 MiB of it waiting. One per process,
 * not injected: the grpc-js decoder it serves is patched once per process, for every call.
 */
const received = new BufferPool(64 * 1024 * 1024);

/** Messages gathered here into fresh and into recycled memory, and buffers waiting to be used again. */
export function receivedBufferCounts(): { readonly fresh: number; readonly reused: number; readonly pooled: number } {
  return received.stats();
}

/** The patch's own field on a decoder: a symbol, so it can meet none of grpc-js's. */
const GATHERING = Symbol('fedhpc.gathering');

/** The decoder state the patch reads and writes (grpc-js 1.14's field names), and its own. */
interface DecoderState {
  readState: number;
  readMessageSize: number;
  readMessageRemaining: number;
  readCompressFlag: Buffer;
  readPartialSize: Buffer;
  readPartialMessage: Buffer[];
  /** The pooled buffer a large message is being gathered into, and how much of it is written. */
  [GATHERING]?: { readonly framed: Buffer; at: number };
}
type DecoderWrite = (this: DecoderState, data: Buffer) => Buffer[];

let installed: boolean | undefined;

/**
 * Patches grpc-js's `StreamDecoder.write` so that a message of at least 64 KiB that spans DATA
 * frames is gathered into a pooled buffer, once per process. Checked against the grpc-js version
 * and shape it was read for (1.14); where either differs nothing is patched and the result is
 * false (messages are then gathered by grpc-js, correct and one allocation each).
 */
export function installReceivePool(): boolean {
  installed ??= patchStreamDecoder();
  return installed;
}

function patchStreamDecoder(): boolean {
  const proto = grpcInternal<{ StreamDecoder: { prototype: { write?: DecoderWrite } } }>('stream-decoder.js')?.StreamDecoder?.prototype;
  const original = proto?.write;
  if (!proto || typeof original !== 'function') return false;
  proto.write = function (this: DecoderState, data: Buffer): Buffer[] {
    // The one case handled here: the bytes of a large message after the frame that opened it.
    // Anything else (sizes, prefixes, small messages, a message inside one frame) is grpc-js's own
    // path, which leaves the first bytes of a large message in `readPartialMessage`.
    if (this.readState !== READING_MESSAGE || this.readMessageSize < MIN_POOLED_BYTES || !Array.isArray(this.readPartialMessage)) {
      return original.call(this, data);
    }
    // Each frame's bytes are copied as they arrive, while the TLS layer's decryption has them in
    // cache, and the frame's buffer dies young; grpc-js would hold every frame of the message and
    // copy them all at its end (256 DATA frames for a 4 MiB chunk, by then out of cache and promoted).
    let gathering = this[GATHERING];
    if (gathering === undefined) {
      const framed = received.take(this.readMessageSize + 5);
      framed.set(this.readCompressFlag.subarray(0, 1), 0);
      framed.set(this.readPartialSize.subarray(0, 4), 1);
      let at = 5;
      for (const part of this.readPartialMessage) {
        framed.set(part, at);
        at += part.length;
      }
      this.readPartialMessage = [];
      gathering = this[GATHERING] = { framed, at };
    }
    const take = Math.min(this.readMessageRemaining, data.length);
    gathering.framed.set(take === data.length ? data : data.subarray(0, take), gathering.at);
    gathering.at += take;
    this.readMessageRemaining -= take;
    if (this.readMessageRemaining > 0) return [];
    this[GATHERING] = undefined;
    this.readState = NO_DATA;
    return take < data.length ? [gathering.framed, ...original.call(this, data.subarray(take))] : [gathering.framed];
  };
  return true;
}

/**
 * Hands back the memory of a received message that `bytes` is a view of, for a later message of
 * the same length; bytes in any other memory are left alone. The caller must not read `bytes` (or
 * any other view of that message) again.
 */
export function recycleReceived(bytes: Uint8Array): void {
  const whole = received.owner(bytes);
  if (whole) received.give(whole);
}
