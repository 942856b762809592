/**
 * A hand-written codec for the one message that carries a delta's bytes, `UploadMessage{chunk}`,
 * installed on `SiteService.Upload` by `proto/index.ts` for both ends; every other message (and
 * any chunk message this codec does not take on) goes through the generated codec.
 *
 * Why: the generated serializer (proto-loader → protobufjs `fromObject` + `encode`) copies a
 * chunk's data once into its own buffer and grpc-js copies it again to prepend the 5-byte gRPC
 * frame prefix; profiles of the upload sender put those copies at the head of its CPU per GB
 * (bench/RESULTS.md, "After issue 18"). Here a chunk is written once, straight into a buffer that
 * already has room for the frame prefix, and {@link installFramePassThrough} lets grpc-js send that
 * buffer as it is. On the receiving side a chunk message is read without protobufjs's message
 * objects and 64-bit `Long` conversions; its data is a view of the received message (as the
 * generated decoder's is), never a copy.
 *
 * The wire does not change. The serializer writes the bytes protobufjs writes for the same message
 * (fields in number order, a field written whenever it is set, zeros included); the decoder gives
 * the object the generated decoder gives (`offset` as a decimal string, `kind: 'chunk'`) and hands
 * anything it does not read exactly as protobufjs would (unknown top-level fields, a second
 * message beside the chunk, wire types that differ from the contract, groups, over-long varints) to
 * the generated decoder. test/unit/protocol/upload-codec.test.ts checks both directions.
 */
import { BufferPool } from './buffer-pool.js';
import { grpcInternal } from './grpc-internals.js';

/** A codec as grpc-js method definitions hold one. */
export interface MessageCodec<In, Out> {
  readonly serialize: (message: In) => Buffer;
  readonly deserialize: (bytes: Buffer) => Out;
}

/** The chunk fields as callers write them (the generated `UploadChunk` input type, less `Long`). */
interface ChunkInput {
  readonly offset?: number | string | object | null;
  readonly data?: Uint8Array | string | null;
  readonly crc32c?: number | null;
}

/** The fields of `UploadMessage` the serializer looks at. */
interface UploadMessageInput {
  readonly header?: unknown;
  readonly chunk?: ChunkInput | null;
  readonly trailer?: unknown;
  readonly digest?: unknown;
}

/** A decoded chunk message, as the generated decoder (`longs: String`, `oneofs: true`) gives it. */
export interface DecodedChunkMessage {
  readonly chunk: { readonly offset: string; readonly data: Buffer; readonly crc32c: number };
  readonly kind: 'chunk';
}

/** Bytes of the gRPC length-prefixed frame header: compressed flag and u32 length. */
export const GRPC_FRAME_PREFIX_BYTES = 5;

const TAG_CHUNK = (2 << 3) | 2; // UploadMessage.chunk, length-delimited
const TAG_OFFSET = (1 << 3) | 0; // UploadChunk.offset, varint
const TAG_DATA = (2 << 3) | 2; // UploadChunk.data, length-delimited
const TAG_CRC = (3 << 3) | 0; // UploadChunk.crc32c, varint
const UINT64_MAX = (1n << 64n) - 1n;

/** A chunk's offset as the generated serializer would write it, or undefined where this codec declines. */
function offsetValue(offset: ChunkInput['offset']): number | bigint | undefined {
  if (typeof offset === 'number') return Number.isSafeInteger(offset) && offset >= 0 ? offset : undefined;
  if (typeof offset === 'string' && /^[0-9]{1,20}$/.test(offset)) {
    const v = BigInt(offset);
    return v <= UINT64_MAX ? v : undefined;
  }
  return undefined;
}

function varintBytes(v: number | bigint): number {
  let n = 1;
  if (typeof v === 'bigint') {
    for (; v >= 0x80n; v >>= 7n) n++;
  } else {
    for (; v >= 0x80; v = Math.floor(v / 0x80)) n++;
  }
  return n;
}

function writeVarint(buf: Uint8Array, pos: number, v: number | bigint): number {
  if (typeof v === 'bigint') {
    for (; v >= 0x80n; v >>= 7n) buf[pos++] = Number(v & 0x7fn) | 0x80;
    buf[pos++] = Number(v);
    return pos;
  }
  for (; v >= 0x80; v = Math.floor(v / 0x80)) buf[pos++] = (v % 0x80) | 0x80;
  buf[pos++] = v;
  return pos;
}

/**
 * A buffer grpc-js can put on the wire as it is: the serialized message, with the gRPC frame
 * prefix already written in the 5 bytes before it (see {@link installFramePassThrough}). It is a
 * Buffer in every other respect, so a grpc-js that is not patched frames it the usual way.
 */
class PreFramedMessage extends Uint8Array {
  /** The same memory from the frame prefix on: what goes on the wire. */
  framed(): Buffer {
    return Buffer.from(this.buffer, this.byteOffset - GRPC_FRAME_PREFIX_BYTES, this.byteLength + GRPC_FRAME_PREFIX_BYTES);
  }
}
Object.setPrototypeOf(PreFramedMessage.prototype, Buffer.prototype);

/**
 * Room a chunk's data buffer keeps before the data — the frame prefix and the message's tags and
 * varints, 28 bytes at most — and after it (the CRC field, 6 at most). 32 keeps the data 8-aligned.
 */
const ROOM_BEFORE = 32;
const ROOM_AFTER = 8;
/**
 * The whole buffers {@link chunkDataBuffer} makes, handed back by {@link recycleChunkData}: a delta's
 * chunks are nearly all one size, and 1 MiB chunks that outlived a scavenge in the send window set
 * off a mark-compact every ~13 MB in a plain agent (bench/RESULTS.md, issue 18, session 10). One
 * per process, as the frame pass-through is: a chunk's buffer must be known here wherever it was made.
 */
const chunkBuffers = new BufferPool(64 * 1024 * 1024);

/** How many chunk buffers {@link chunkDataBuffer} made fresh, how many of recycled memory, how many wait. */
export function chunkBufferCounts(): { readonly fresh: number; readonly reused: number; readonly pooled: number } {
  return chunkBuffers.stats();
}

/**
 * A buffer for `bytes` bytes of a chunk's data with room around it, in memory of its own: a chunk
 * message made of it is written around the data in place, with no copy of the data
 * ({@link encodeChunkMessage}). The delta encoder makes its chunks in such buffers; one handed back
 * by {@link recycleChunkData} is used again.
 */
export function chunkDataBuffer(bytes: number): Buffer {
  return chunkBuffers.take(ROOM_BEFORE + bytes + ROOM_AFTER).subarray(ROOM_BEFORE, ROOM_BEFORE + bytes);
}

/**
 * Hands back the buffer of `data`, all of a {@link chunkDataBuffer}'s data, for a later chunk; any
 * other bytes are left alone. Only for a caller that will not read `data` again and whose every
 * holder is done with it: the upload sender calls it from the write's callback, once grpc-js has
 * written the message (the agent's channel runs without grpc-js's retry buffer, which could send a
 * message again after that callback).
 */
export function recycleChunkData(data: Uint8Array): void {
  const whole = roomOf(data);
  if (whole) chunkBuffers.give(whole);
}

/** The whole {@link chunkDataBuffer} when `data` is all of its data (its room may be written), else undefined. */
function roomOf(data: Uint8Array): Buffer<ArrayBuffer> | undefined {
  const whole = chunkBuffers.owner(data);
  return whole && data.byteOffset === ROOM_BEFORE && whole.byteLength === ROOM_BEFORE + data.byteLength + ROOM_AFTER ? whole : undefined;
}

/**
 * `UploadMessage{chunk}` as protobufjs encodes it, written with one copy of the data (none when
 * the data is a {@link chunkDataBuffer}: the message is written around it). With `preFramed`
 * the 5 bytes before the message hold its gRPC frame prefix (uncompressed), for
 * {@link installFramePassThrough}. Returns undefined for input this codec leaves to the generated
 * serializer: an offset that is not a non-negative safe integer or decimal uint64, data that is not
 * bytes, a CRC that is not a uint32.
 */
export function encodeChunkMessage(chunk: ChunkInput, preFramed = false): Buffer | undefined {
  const offset = chunk.offset == null ? undefined : offsetValue(chunk.offset);
  if (chunk.offset != null && offset === undefined) return undefined;
  const data = chunk.data;
  if (data != null && !(data instanceof Uint8Array)) return undefined;
  const crc = chunk.crc32c;
  if (crc != null && !(Number.isInteger(crc) && crc >= 0 && crc <= 0xffffffff)) return undefined;
  let inner = 0;
  if (offset !== undefined) inner += 1 + varintBytes(offset);
  if (data != null) inner += 1 + varintBytes(data.byteLength) + data.byteLength;
  if (crc != null) inner += 1 + varintBytes(crc);
  const length = 1 + varintBytes(inner) + inner;
  const head = preFramed ? GRPC_FRAME_PREFIX_BYTES : 0;
  // In place: the message starts where its bytes before the data fit in front of the data.
  const whole = data == null ? undefined : roomOf(data);
  const inPlace = whole !== undefined;
  const before = length - (data?.byteLength ?? 0) - (crc != null ? 1 + varintBytes(crc) : 0);
  const at = ROOM_BEFORE - before - head;
  const buf = whole ? whole.subarray(at, at + head + length) : Buffer.allocUnsafe(head + length);
  if (preFramed) {
    buf[0] = 0; // not compressed
    buf.writeUInt32BE(length, 1);
  }
  let pos = head;
  buf[pos++] = TAG_CHUNK;
  pos = writeVarint(buf, pos, inner);
  if (offset !== undefined) {
    buf[pos++] = TAG_OFFSET;
    pos = writeVarint(buf, pos, offset);
  }
  if (data != null) {
    buf[pos++] = TAG_DATA;
    pos = writeVarint(buf, pos, data.byteLength);
    if (!inPlace) buf.set(data, pos);
    pos += data.byteLength;
  }
  if (crc != null) {
    buf[pos++] = TAG_CRC;
    pos = writeVarint(buf, pos, crc);
  }
  if (!preFramed) return buf;
  return new PreFramedMessage(buf.buffer, buf.byteOffset + head, length) as unknown as Buffer;
}

/** A reader over one message; every method returns -1 where the fast path gives up. */
class Cursor {
  pos = 0;
  constructor(
    readonly buf: Buffer,
    readonly end: number,
  ) {}

  /** A varint of at most 5 bytes, its low 32 bits (protobufjs `uint32`). */
  uint32(): number {
    let v = 0;
    for (let i = 0; i < 5; i++) {
      if (this.pos >= this.end) return -1;
      const b = this.buf[this.pos++]!;
      v += (b & 0x7f) * 2 ** (7 * i);
      if (b < 0x80) return v % 2 ** 32;
    }
    return -1;
  }

  /** A uint64 varint as a decimal string (protobufjs `uint64` then `Long.toString`), or undefined. */
  uint64(): string | undefined {
    const start = this.pos;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) return undefined;
      if (this.buf[this.pos++]! >= 0x80) continue;
      const n = this.pos - start;
      if (n <= 7) {
        // 49 bits at most: exact in a double.
        let v = 0;
        for (let k = n - 1; k >= 0; k--) v = v * 0x80 + (this.buf[start + k]! & 0x7f);
        return String(v);
      }
      let v = 0n;
      for (let k = n - 1; k >= 0; k--) v = (v << 7n) | BigInt(this.buf[start + k]! & 0x7f);
      // protobufjs keeps the low 64 bits of a ten-byte varint; so does this.
      return (v & UINT64_MAX).toString();
    }
    return undefined;
  }

  /** Skips one field's value of wire type `wt`; false where the fast path gives up (groups, truncation). */
  skip(wt: number): boolean {
    if (wt === 0) {
      while (this.pos < this.end) if (this.buf[this.pos++]! < 0x80) return true;
      return false;
    }
    const n = wt === 1 ? 8 : wt === 5 ? 4 : wt === 2 ? this.uint32() : -1;
    if (n < 0 || this.pos + n > this.end) return false;
    this.pos += n;
    return true;
  }
}

/**
 * Reads `UploadMessage{chunk}` without protobufjs; its data is a view of `bytes`. Returns undefined
 * for any message that is not exactly one chunk field, or that this reader would not read as the
 * generated decoder does: the caller then uses the generated decoder.
 */
export function decodeChunkMessage(bytes: Buffer): DecodedChunkMessage | undefined {
  if (bytes.length < 2 || bytes[0] !== TAG_CHUNK) return undefined;
  const outer = new Cursor(bytes, bytes.length);
  outer.pos = 1;
  const length = outer.uint32();
  if (length < 0 || outer.pos + length !== bytes.length) return undefined;
  const c = new Cursor(bytes, bytes.length);
  c.pos = outer.pos;
  let offset = '0';
  let data: Buffer | undefined;
  let crc32c = 0;
  while (c.pos < c.end) {
    const tag = c.uint32();
    if (tag < 0) return undefined;
    const field = tag >>> 3;
    const wt = tag & 7;
    if (field === 1 || field === 3) {
      if (wt !== 0) return undefined;
      if (field === 1) {
        const v = c.uint64();
        if (v === undefined) return undefined;
        offset = v;
      } else {
        const v = c.uint32();
        if (v < 0) return undefined;
        crc32c = v;
      }
    } else if (field === 2) {
      if (wt !== 2) return undefined;
      const n = c.uint32();
      if (n < 0 || c.pos + n > c.end) return undefined;
      data = bytes.subarray(c.pos, c.pos + n);
      c.pos += n;
    } else if (field === 0 || !c.skip(wt)) {
      return undefined;
    }
  }
  return { chunk: { offset, data: data ?? Buffer.alloc(0), crc32c }, kind: 'chunk' };
}

/**
 * The `Upload` request codec: chunk messages by this module, everything else by `generated`.
 * `preFramed` chunks carry their frame prefix; use it only once {@link installFramePassThrough}
 * returned true (otherwise grpc-js copies them once more, which is correct but gains nothing).
 */
export function uploadRequestCodec<In extends UploadMessageInput, Out>(generated: MessageCodec<In, Out>, preFramed: boolean): MessageCodec<In, Out> {
  return {
    serialize: (m) => {
      const chunkOnly = m.chunk != null && m.header == null && m.trailer == null && m.digest == null;
      return (chunkOnly ? encodeChunkMessage(m.chunk!, preFramed) : undefined) ?? generated.serialize(m);
    },
    deserialize: (bytes) => (decodeChunkMessage(bytes) as Out | undefined) ?? generated.deserialize(bytes),
  };
}

/** The grpc-js internals the pass-through touches. */
interface CompressionFilterModule {
  CompressionFilter: new (options: object, shared: object) => { sendCompression: object };
}
type WriteMessage = (this: unknown, message: Buffer, compress: boolean) => Promise<Buffer>;

let passThrough: boolean | undefined;

/**
 * Lets grpc-js send a {@link PreFramedMessage} as it is instead of copying it behind a new frame
 * prefix: wraps `writeMessage` of grpc-js's identity (no compression) handler, once per process.
 * Every other message, and any message to be compressed, takes grpc-js's own path. Checked against
 * the grpc-js version and shape it was written for (1.14); where either differs nothing is patched
 * and the result is false: chunks are then serialized without the prefix and framed by grpc-js,
 * correct and one copy slower. Returns whether the pass-through is in place.
 */
export function installFramePassThrough(): boolean {
  passThrough ??= patchIdentityHandler();
  return passThrough;
}

function patchIdentityHandler(): boolean {
  try {
    const mod = grpcInternal<CompressionFilterModule>('compression-filter.js');
    if (typeof mod?.CompressionFilter !== 'function') return false;
    // The identity handler class is not exported; a filter built with no options holds one.
    const identity = Object.getPrototypeOf(new mod.CompressionFilter({}, {}).sendCompression) as { writeMessage?: WriteMessage; constructor: { name: string } };
    const original = identity.writeMessage;
    if (identity.constructor.name !== 'IdentityHandler' || typeof original !== 'function') return false;
    identity.writeMessage = function (this: unknown, message: Buffer, compress: boolean): Promise<Buffer> {
      if (message instanceof PreFramedMessage && !compress) return Promise.resolve(message.framed());
      return original.call(this, message, compress);
    };
    return true;
  } catch {
    return false;
  }
}
