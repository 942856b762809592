/**
 * Serving one `Upload` stream: the header names a stripe of the site's delta, the coordinator
 * answers with the offset to resume from, then writes chunks to the spool as they arrive —
 * checking each chunk's CRC32C (a bad one is asked for again, never written) and each tensor's
 * SHA-256 (a bad tensor is discarded and asked for again, a few times at most) — acknowledges
 * durable offsets at least every quarter window, and ends with the stripe's result.
 *
 * A stream that took the header's `wholeDigest` offer (a single stripe) sends no tensor digests:
 * its trailer names the SHA-256 of all its bytes, which the receiver computes as they are written
 * (the digest it reports anyway), so each byte is hashed once instead of twice. A mismatch sends
 * the whole stripe again, a few times at most.
 */
import type { FileHandle } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { recycleReceived, type UploadReply } from '../../proto/index.js';
import type { UploadFrame } from './frames.js';
import { CoordinatorError } from '../core/errors.js';
import { hashRange, pieceAt, type StripeState, type UploadSession } from './session.js';
import { partBytes } from './header.js';
import { writeWithBackpressure } from '../service/streams.js';
import { crc32c } from '../service/wire.js';
import { isUnitBoundary, Sha256, type Piece } from '../../aggregation/index.js';
import { checkValues } from './value-checks.js';

/** Consecutive CRC failures of one chunk before the upload fails. */
export const MAX_CRC_RETRIES = 8;
/** Digest failures of one tensor (or of a stripe proved whole) before the upload fails with CHECKSUM_MISMATCH. */
export const MAX_DIGEST_RETRIES = 3;

const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * Bytes an agent may send past the last acknowledgement on one stream: the configured window, but
 * at least two chunks, so a sender waiting for an ack always gets one. This is what each stream
 * reserves from the shared transfer budget.
 */
export function streamWindow(windowBytes: number, chunkBytes: number): number {
  return Math.max(windowBytes, 2 * chunkBytes);
}

/** What a stream reports back to the service. */
export interface StripeHooks {
  /** The stream's window, as {@link streamWindow} gives it and the budget granted it. */
  readonly windowBytes: number;
  /**
   * Aborted when a newer stream takes the stripe over (or the round ends): a reply blocked on a
   * dead stream's 'drain' must give up, or the newer stream would wait for this one for ever.
   */
  readonly signal: AbortSignal;
  onBytes(n: number): void;
  /** The last stripe is complete: verify the whole delta and hand it to the round. */
  finish(trailerSha256: string): Promise<{ sha256: string }>;
  /** The stream took its header's `wholeDigest` offer: its trailer's SHA-256 proves the stripe. */
  readonly wholeDigest: boolean;
  logResend(offset: number, reason: string): void;
}

/** Receives the messages of one stream for one stripe. */
export class StripeReceiver {
  private piece = 0;
  private hash = new Sha256();
  private awaiting: { piece: Piece; hex: string }[] = [];
  private resync = false;
  private dropped = 0;
  private crcFailures = 0;
  private lastAckSent: number;
  private readonly window: number;
  private readonly ackEvery: number;

  constructor(
    private readonly session: UploadSession,
    private readonly stripe: StripeState,
    private readonly file: FileHandle,
    private readonly out: Writable,
    private readonly hooks: StripeHooks,
  ) {
    this.window = hooks.windowBytes;
    // Acks every quarter window: a sender blocked at a full window has always earned one.
    this.ackEvery = Math.floor(this.window / 4);
    this.lastAckSent = stripe.acked;
  }

  /** Rewinds to the acknowledged offset and rebuilds the digest of the tensor in progress. */
  async resume(): Promise<void> {
    const s = this.stripe;
    if (s.wholeOnly && !this.hooks.wholeDigest) {
      // No tensor digest checked these bytes, and this stream's digests would not cover them.
      this.restartStripe();
    }
    this.session.digest.rewound(s.acked);
    s.received = s.acked;
    if (!this.hooks.wholeDigest) {
      this.piece = pieceAt(s.pieces, s.acked);
      const p = s.pieces[this.piece];
      this.hash = p && p.start < s.acked ? await hashRange(this.file, p.start, s.acked) : new Sha256();
    }
    await this.send({ accepted: { offset: s.acked, chunkBytes: this.session.intent.chunkBytes, windowBytes: this.window, wholeDigest: this.hooks.wholeDigest } });
  }

  /** Handles one message; resolves true when the stripe is finished and the stream may end. */
  async handle(frame: UploadFrame): Promise<boolean> {
    if (frame.kind === 'chunk') await this.chunk(frame.offset, frame.data, frame.crc32c);
    else if (frame.kind === 'digest') await this.digest(frame.tensor, frame.sha256);
    else if (frame.kind === 'trailer') return this.trailer(frame.sha256);
    else throw new CoordinatorError('UPLOAD_INVALID', `unexpected ${frame.kind} message after the header`);
    return false;
  }

  private async chunk(offset: number, data: Buffer, crc: number): Promise<void> {
    const s = this.stripe;
    const max = this.session.intent.chunkBytes;
    if (this.resync) {
      // Chunks already in flight when we asked for a resend: dropped, within one window.
      if (offset !== s.received) {
        this.dropped += data.length;
        if (this.dropped > this.window + max) throw new CoordinatorError('CHUNK_OUT_OF_RANGE', `still no chunk at ${s.received} after a resend request, ${this.dropped} bytes later`);
        return;
      }
      this.resync = false;
      this.dropped = 0;
    }
    if (this.awaiting.length > 0) throw new CoordinatorError('UPLOAD_INVALID', `chunk before the SHA-256 of tensor ${this.awaiting[0]!.piece.tensor}`);
    if (offset !== s.received) {
      const how = offset > s.received ? 'skips ahead of' : 'goes back before';
      throw new CoordinatorError('CHUNK_OUT_OF_RANGE', `chunk at offset ${offset} ${how} the expected ${s.received}`, { offset, expected: s.received });
    }
    if (data.length === 0 || data.length > max) throw new CoordinatorError('CHUNK_OUT_OF_RANGE', `chunk of ${data.length} bytes (allowed 1..${max})`, { bytes: data.length });
    const end = offset + data.length;
    if (end > s.end) throw new CoordinatorError('CHUNK_OUT_OF_RANGE', `chunk ends at ${end}, past the declared ${s.end} bytes of its stripe`, { end, total: s.end });
    if (!isUnitBoundary(this.session.intent.segments, end)) throw new CoordinatorError('UPLOAD_INVALID', `${this.session.intent.encoding} chunk ending at ${end} splits a value or block`);
    // A stripe proved whole: the delta's digest takes the bytes in the pass that checks their CRC.
    const whole = this.hooks.wholeDigest;
    if ((whole ? this.session.digest.crcTaking(offset, data, crc32c) : crc32c(data)) !== crc) {
      if (++this.crcFailures > MAX_CRC_RETRIES) throw new CoordinatorError('CHECKSUM_MISMATCH', `chunk at ${offset} failed its CRC32C ${this.crcFailures} times`, { offset });
      return this.resend(offset, 'CRC32C mismatch'); // which rewinds the digest
    }
    this.crcFailures = 0;
    try {
      checkValues(this.session.intent.encoding, this.session.intent.segments, offset, data);
      await this.file.write(data, 0, data.length, offset);
      if (whole) s.wholeOnly = true;
      else this.digestBytes(offset, data, this.session.digest.continuing(offset, data.length));
    } catch (err) {
      // The whole-delta digest may hold part of these bytes: give it up (finish re-reads the spool).
      this.session.digest.rewound(offset);
      throw err;
    }
    // Written and hashed: nothing reads these bytes again, and their memory takes a later chunk.
    recycleReceived(data);
    s.received = end;
    this.hooks.onBytes(data.length);
    this.session.progressed();
    if (this.awaiting.length === 0) await this.advanceAck();
  }

  /**
   * Feeds the tensor digests, and `whole` (the delta's digest, when these bytes continue it) with
   * the same bytes in the same pass; queues every tensor piece the chunk completes.
   */
  private digestBytes(offset: number, data: Buffer, whole: Sha256 | undefined): void {
    const pieces = this.stripe.pieces;
    for (let at = offset; at < offset + data.length; ) {
      const p = pieces[this.piece]!;
      const to = Math.min(p.end, offset + data.length);
      const bytes = data.subarray(at - offset, to - offset);
      if (whole === undefined) this.hash.update(bytes);
      else Sha256.updateBoth(this.hash, whole, bytes);
      at = to;
      if (to === p.end) {
        this.awaiting.push({ piece: p, hex: this.hash.digest('hex') });
        this.hash = new Sha256();
        this.piece++;
      }
    }
  }

  private async digest(tensor: number, sha256: string): Promise<void> {
    if (this.hooks.wholeDigest) throw new CoordinatorError('UPLOAD_INVALID', `SHA-256 of tensor ${tensor} on a stream whose trailer proves all its bytes (wholeDigest)`);
    if (this.resync) return;
    const next = this.awaiting.shift();
    if (!next) throw new CoordinatorError('UPLOAD_INVALID', `SHA-256 of tensor ${tensor} before its last byte`);
    if (next.piece.tensor !== tensor) throw new CoordinatorError('UPLOAD_INVALID', `SHA-256 of tensor ${tensor}, expected that of tensor ${next.piece.tensor}`);
    if (sha256 === next.hex) {
      const s = this.stripe;
      this.session.pieceLog?.verified({ stripeStart: s.start, stripeEnd: s.end, start: next.piece.start, end: next.piece.end, sha256 });
      if (this.awaiting.length === 0) await this.advanceAck();
      return;
    }
    const s = this.stripe;
    const p = next.piece;
    const failures = (s.digestFailures.get(p.start) ?? 0) + 1;
    s.digestFailures.set(p.start, failures);
    if (failures > MAX_DIGEST_RETRIES) {
      throw new CoordinatorError('CHECKSUM_MISMATCH', `tensor ${tensor} (bytes ${p.start}..${p.end}) failed its SHA-256 ${failures} times`, { tensor });
    }
    // Discard the tensor's bytes: they are written again over the same range.
    this.piece = s.pieces.indexOf(p);
    this.hash = new Sha256();
    this.awaiting = [];
    s.acked = Math.min(s.acked, p.start);
    this.lastAckSent = Math.min(this.lastAckSent, p.start);
    await this.resend(p.start, `SHA-256 mismatch of tensor ${tensor}`);
  }

  private async trailer(sha256: string): Promise<boolean> {
    if (this.resync) return false;
    const s = this.stripe;
    if (s.received !== s.end || this.awaiting.length > 0) {
      throw new CoordinatorError('UPLOAD_INVALID', `trailer after ${s.received - s.start} of ${s.end - s.start} stripe bytes${this.awaiting.length > 0 ? ' with a tensor SHA-256 missing' : ''}`);
    }
    if (this.hooks.wholeDigest && !SHA256_HEX.test(sha256)) {
      throw new CoordinatorError('UPLOAD_INVALID', 'the trailer of a stream that proves its bytes whole (wholeDigest) must carry their SHA-256');
    }
    s.done = true;
    if (!this.session.complete()) {
      await this.send({ result: { accepted: true, receivedBytes: s.end - s.start, message: 'stripe received', complete: false } });
      return true;
    }
    let whole: { sha256: string };
    try {
      whole = await this.hooks.finish(sha256);
    } catch (err) {
      if (!this.hooks.wholeDigest || !(err instanceof CoordinatorError) || err.code !== 'CHECKSUM_MISMATCH') throw err;
      s.done = false;
      if (++s.wholeFailures > MAX_DIGEST_RETRIES) {
        throw new CoordinatorError('CHECKSUM_MISMATCH', `the stripe [${s.start}, ${s.end}) failed the SHA-256 its trailer named ${s.wholeFailures} times`, { start: s.start, end: s.end });
      }
      // Nothing vouches for any byte of the stripe now: all of it again.
      this.restartStripe();
      await this.resend(s.start, `SHA-256 mismatch of the stripe: ${err.message}`);
      return false;
    }
    await this.send({ result: { accepted: true, receivedBytes: partBytes(this.session.intent), message: 'verified', complete: true, sha256: whole.sha256 } });
    return true;
  }

  /** The stripe's bytes are all to be sent again: nothing of it is acknowledged. */
  private restartStripe(): void {
    const s = this.stripe;
    s.acked = s.start;
    s.wholeOnly = false;
    this.lastAckSent = s.start;
    this.session.pieceLog?.acked(s, s.start);
  }

  private async resend(offset: number, reason: string): Promise<void> {
    this.session.digest.rewound(offset);
    this.stripe.received = offset;
    this.resync = true;
    this.dropped = 0;
    this.hooks.logResend(offset, reason);
    await this.send({ resend: { offset, reason } });
  }

  private async advanceAck(): Promise<void> {
    const s = this.stripe;
    s.acked = s.received;
    this.session.pieceLog?.acked(s, s.acked);
    if (s.acked - this.lastAckSent >= this.ackEvery || s.acked === s.end) {
      this.lastAckSent = s.acked;
      await this.send({ ack: { offset: s.acked } });
    }
  }

  private send(reply: UploadReply): Promise<void> {
    return writeWithBackpressure(this.out, reply, this.hooks.signal);
  }
}
