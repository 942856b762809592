/**
 * One stripe of a delta upload over one `Upload` stream: header, the coordinator's answer (where to
 * continue), then chunks with their CRC32C and each tensor's SHA-256 after its last chunk, never
 * more than one window past the last acknowledgement, going back when the coordinator asks for
 * bytes again. A broken stream throws; the caller opens another, which resumes.
 *
 * A single stripe offers to prove its bytes whole (`wholeDigest`, version 14): where the receiver
 * takes the offer, no tensor digests are sent and the trailer names the SHA-256 of the stripe, so
 * the receiver hashes each byte once, not once per tensor and once for the delta.
 */
import { once } from 'node:events';
import { recycleChunkData, type UploadMessage } from '../proto/index.js';
import { Sha256, stripePieces, type Piece } from '../aggregation/index.js';
import type { DeltaEncoder } from './encode.js';
import { SiteAgentError } from './errors.js';
import { crc32c, uploadReplyFromWire, wireError, type UploadOutcome, type UploadQueue, type UploadReply, type UploadStream } from './wire.js';

/** Everything one stripe stream needs. */
export interface StripeJob {
  readonly encoder: DeltaEncoder;
  readonly header: UploadMessage['header'];
  readonly start: number;
  readonly end: number;
  readonly chunkBytes: number;
  /** Idle (no-progress) timeout: no reply and nothing sendable for this long cancels the stream. */
  readonly idleMs: number;
  readonly signal: AbortSignal;
  /** Waits as the shared rate limit requires before `n` more bytes. */
  readonly pace: (n: number) => Promise<void>;
  /** Bytes put on the wire (counted again when re-sent). */
  readonly onSent: (n: number) => void;
  /** Position reached in this stripe (for progress). */
  readonly onPosition: (offset: number) => void;
  /** The coordinator holds the stream back until its shared in-flight budget has room. */
  readonly onQueued?: ((q: UploadQueue) => void) | undefined;
  /**
   * Hand each chunk's buffer back for a later chunk once the stream's write callback fires: only
   * where that callback comes after HTTP/2 wrote the message (client.ts, `callsBackAfterWrite`).
   */
  readonly recycleChunks?: boolean;
  /**
   * The stripe's whole digest, where the header offers one (a single stripe): kept by the caller
   * across the stripe's streams, so a resumed one continues it.
   */
  readonly whole?: WholeStripeDigest | undefined;
}

/**
 * The SHA-256 of a stripe proved whole, as its bytes are sent: the hash's state at the stripe's
 * start and at every chunk end the receiver may still go back to (its acknowledged offset or
 * later), so a resend or a resumed stream continues from a copy instead of reading the bytes
 * again. Where it holds no state for the offset the receiver names (the receiver, or this agent,
 * restarted and kept another prefix), the stripe's bytes up to it are encoded again and hashed.
 */
export class WholeStripeDigest {
  private readonly states = new Map<number, Sha256>();

  constructor(private readonly start: number) {
    this.states.set(start, new Sha256());
  }

  /** A hash holding the stripe's bytes before `offset`, when a state was kept there. */
  at(offset: number): Sha256 | undefined {
    return this.states.get(offset)?.copy();
  }

  /** `hash` holds the stripe's bytes before `offset`. */
  keep(offset: number, hash: Sha256): void {
    this.states.set(offset, hash.copy());
  }

  /** The receiver acknowledged `offset`: it never goes back before it, but to the stripe's start. */
  acked(offset: number): void {
    for (const at of this.states.keys()) if (at < offset && at !== this.start) this.states.delete(at);
  }
}

/** Replies of the coordinator, as state the sender waits on. */
class Replies {
  accepted: { offset: number; windowBytes: number; wholeDigest: boolean } | undefined;
  acked = 0;
  resendTo: number | undefined;
  result: UploadOutcome | undefined;
  error: Error | undefined;
  /** Rejects with the stream's error (a write blocked on 'drain' races it). */
  readonly failed: Promise<never>;
  private fail!: (err: Error) => void;
  private readonly waiters = new Set<() => void>();
  private timer: NodeJS.Timeout | undefined;

  constructor(call: UploadStream, idleMs: number, private readonly onQueued?: (q: UploadQueue) => void) {
    this.failed = new Promise<never>((_, reject) => (this.fail = reject));
    this.failed.catch(() => undefined);
    const arm = (): void => {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => call.cancel(), idleMs);
    };
    arm();
    call.on('data', (r) => {
      arm();
      const reply = uploadReplyFromWire(r);
      if (reply.ok) this.apply(reply.value);
      else {
        // A reply that breaks the contract ends this stream as a break would; the error says why.
        this.error ??= wireError(reply);
        this.fail(this.error);
        call.cancel();
      }
      this.notify();
    });
    call.on('error', (err: Error) => {
      this.error ??= err;
      this.fail(this.error);
      this.notify();
    });
    call.on('end', () => {
      this.error ??= new SiteAgentError('CANCELLED', 'the coordinator ended the upload stream without a result', true);
      this.fail(this.error);
      this.notify();
    });
    this.touch = arm;
  }

  readonly touch: () => void;

  private apply(r: UploadReply | undefined): void {
    if (r?.kind === 'accepted') this.accepted = { offset: r.offset, windowBytes: r.windowBytes, wholeDigest: r.wholeDigest };
    else if (r?.kind === 'ack') this.acked = Math.max(this.acked, r.offset);
    else if (r?.kind === 'resend') {
      this.resendTo = r.offset;
      this.acked = Math.min(this.acked, this.resendTo);
    } else if (r?.kind === 'result') this.result = r.outcome;
    else if (r?.kind === 'queued') this.onQueued?.(r.queue); // the reply itself re-armed the idle timer
  }

  /** Resolves once `ready()` holds; throws the stream's error. */
  async until(ready: () => boolean): Promise<void> {
    for (;;) {
      if (ready()) return;
      if (this.error) throw this.error;
      await new Promise<void>((r) => this.waiters.add(r));
    }
  }

  dispose(): void {
    clearTimeout(this.timer);
  }

  private notify(): void {
    const all = [...this.waiters];
    this.waiters.clear();
    for (const w of all) w();
  }
}

/** A stream as its header's answer left it: the replies, the window, how to write, and the whole digest it took. */
interface OpenStream {
  readonly replies: Replies;
  readonly window: number;
  readonly write: (m: UploadMessage, written?: () => void) => Promise<void>;
  readonly whole: WholeStripeDigest | undefined;
}

/** Sends one stripe on `call`; resolves with the coordinator's result for it. */
export async function sendStripe(call: UploadStream, job: StripeJob): Promise<UploadOutcome> {
  const replies = new Replies(call, job.idleMs, job.onQueued);
  const pieces = stripePieces(job.encoder.segments, job.start, job.end);
  try {
    const write = async (m: UploadMessage, written?: () => void): Promise<void> => {
      const more = written ? call.write(m, (err: unknown) => (err ? undefined : written())) : call.write(m);
      if (!more) await Promise.race([once(call, 'drain', { signal: job.signal }), replies.failed]);
    };
    await write({ header: { ...job.header, wholeDigest: job.whole !== undefined } });
    await replies.until(() => replies.accepted !== undefined || replies.result !== undefined);
    // A stripe the coordinator already holds (this agent restarted) is confirmed at once.
    if (!replies.accepted) return replies.result!;
    if (replies.accepted.wholeDigest && !job.whole) throw new SiteAgentError('WIRE_INVALID', 'the receiver took a whole-digest offer this stream did not make', false);
    const whole = replies.accepted.wholeDigest ? job.whole : undefined;
    const window = Math.max(replies.accepted.windowBytes, job.chunkBytes);
    let pos = replies.accepted.offset;
    replies.acked = pos;
    for (;;) {
      await sendFrom(pos, job, pieces, { replies, window, write, whole });
      if (replies.resendTo === undefined) {
        const sha256 = whole ? (await wholeHashAt(job, whole, job.end)).digest('hex') : '';
        await write({ trailer: { sha256 } });
        await replies.until(() => replies.result !== undefined || replies.resendTo !== undefined);
        const r = replies.result;
        if (whole && r?.complete && replies.resendTo === undefined && r.sha256 !== sha256) {
          // What a receipt would sign: the receiver must name the bytes this agent sent.
          throw new SiteAgentError('WIRE_INVALID', `the receiver verified the stripe as SHA-256 ${r.sha256}, its bytes as sent are ${sha256}`, false);
        }
      }
      if (replies.result && replies.resendTo === undefined) return replies.result;
      pos = replies.resendTo!;
      replies.resendTo = undefined;
    }
  } finally {
    replies.dispose();
  }
}

/**
 * Sends chunks from `pos` to the stripe's end, each tensor's digest after its last byte or, for a
 * stripe proved whole (`whole`), none; stops early when a resend is asked for.
 */
async function sendFrom(pos: number, job: StripeJob, pieces: readonly Piece[], stream: OpenStream): Promise<void> {
  const { replies, window, write, whole } = stream;
  let piece = pieces.findIndex((p) => pos < p.end);
  if (piece < 0) return;
  // The stripe's one hash, or the digest of the tensor piece in progress from its first bytes, encoded again.
  let hash = whole ? await wholeHashAt(job, whole, pos) : await hashEncoded(job, pieces[piece]!.start, pos);
  for await (const c of job.encoder.range(pos, job.end, job.chunkBytes, job.signal)) {
    const end = c.offset + c.data.length;
    await replies.until(() => end - replies.acked <= window || replies.resendTo !== undefined);
    if (replies.resendTo !== undefined) return;
    await job.pace(c.data.length);
    // Hashed before it is written (once grpc-js has written it, its buffer may make a later chunk),
    // its CRC32C from the same pass where the native module is built.
    const crc = hash.updateCrc32c(c.data, crc32c);
    whole?.acked(replies.acked);
    whole?.keep(end, hash);
    await write({ chunk: { offset: c.offset, data: c.data, crc32c: crc } }, job.recycleChunks ? () => recycleChunkData(c.data) : undefined);
    replies.touch();
    job.onSent(c.data.length);
    job.onPosition(end);
    if (!whole && end === pieces[piece]!.end) {
      await write({ digest: { tensor: pieces[piece]!.tensor, sha256: hash.digest('hex') } });
      hash = new Sha256();
      piece++;
    }
  }
}

/** The whole stripe's hash up to `pos`: a copy of the state kept there, else re-encoded from the stripe's start. */
async function wholeHashAt(job: StripeJob, whole: WholeStripeDigest, pos: number): Promise<Sha256> {
  const kept = whole.at(pos);
  if (kept) return kept;
  const hash = await hashEncoded(job, job.start, pos);
  whole.keep(pos, hash);
  return hash;
}

/** A hash of the delta's bytes [from, pos), re-encoding (not re-sending) them. */
async function hashEncoded(job: StripeJob, from: number, pos: number): Promise<Sha256> {
  const hash = new Sha256();
  if (pos > from) {
    for await (const c of job.encoder.range(from, pos, job.chunkBytes, job.signal)) {
      hash.update(c.data);
      recycleChunkData(c.data);
    }
  }
  return hash;
}
