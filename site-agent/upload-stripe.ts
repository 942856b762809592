/**
 * One stripe of a delta upload over one `Upload` stream: header, the coordinator's answer (where to
 * continue), then chunks with their CRC32C and each tensor's SHA-256 after its last chunk, never
 * more than one window past the last acknowledgement, going back when the coordinator asks for
 * bytes again. A broken stream throws; the caller opens another, which resumes.
 */
import { createHash, type Hash } from 'node:crypto';
import { once } from 'node:events';
import { recycleChunkData, type UploadMessage } from '../proto/index.js';
import { stripePieces, type Piece } from '../aggregation/index.js';
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
}

/** Replies of the coordinator, as state the sender waits on. */
class Replies {
  accepted: { offset: number; windowBytes: number } | undefined;
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
    if (r?.kind === 'accepted') this.accepted = { offset: r.offset, windowBytes: r.windowBytes };
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

/** Sends one stripe on `call`; resolves with the coordinator's result for it. */
export async function sendStripe(call: UploadStream, job: StripeJob): Promise<UploadOutcome> {
  const replies = new Replies(call, job.idleMs, job.onQueued);
  const pieces = stripePieces(job.encoder.segments, job.start, job.end);
  try {
    const write = async (m: UploadMessage, written?: () => void): Promise<void> => {
      const more = written ? call.write(m, (err: unknown) => (err ? undefined : written())) : call.write(m);
      if (!more) await Promise.race([once(call, 'drain', { signal: job.signal }), replies.failed]);
    };
    await write({ header: job.header });
    await replies.until(() => replies.accepted !== undefined || replies.result !== undefined);
    // A stripe the coordinator already holds (this agent restarted) is confirmed at once.
    if (!replies.accepted) return replies.result!;
    const window = Math.max(replies.accepted!.windowBytes, job.chunkBytes);
    let pos = replies.accepted!.offset;
    replies.acked = pos;
    for (;;) {
      await sendFrom(pos, job, pieces, replies, window, write);
      if (replies.resendTo === undefined) {
        await write({ trailer: { sha256: '' } });
        await replies.until(() => replies.result !== undefined || replies.resendTo !== undefined);
      }
      if (replies.result && replies.resendTo === undefined) return replies.result;
      pos = replies.resendTo!;
      replies.resendTo = undefined;
    }
  } finally {
    replies.dispose();
  }
}

/** Sends chunks from `pos` to the stripe's end; stops early when a resend is asked for. */
async function sendFrom(pos: number, job: StripeJob, pieces: readonly Piece[], replies: Replies, window: number, write: (m: UploadMessage, written?: () => void) => Promise<void>): Promise<void> {
  let piece = pieces.findIndex((p) => pos < p.end);
  if (piece < 0) return;
  let hash = await prefixHash(job, pieces[piece]!, pos);
  for await (const c of job.encoder.range(pos, job.end, job.chunkBytes, job.signal)) {
    const end = c.offset + c.data.length;
    await replies.until(() => end - replies.acked <= window || replies.resendTo !== undefined);
    if (replies.resendTo !== undefined) return;
    await job.pace(c.data.length);
    // Hashed before it is written: once grpc-js has written it, its buffer may make a later chunk.
    hash.update(c.data);
    await write({ chunk: { offset: c.offset, data: c.data, crc32c: crc32c(c.data) } }, job.recycleChunks ? () => recycleChunkData(c.data) : undefined);
    replies.touch();
    job.onSent(c.data.length);
    job.onPosition(end);
    if (end === pieces[piece]!.end) {
      await write({ digest: { tensor: pieces[piece]!.tensor, sha256: hash.digest('hex') } });
      hash = createHash('sha256');
      piece++;
    }
  }
}

/** The SHA-256 state of a tensor piece up to `pos`, re-encoding (not re-sending) its first bytes. */
async function prefixHash(job: StripeJob, p: Piece, pos: number): Promise<Hash> {
  const hash = createHash('sha256');
  if (pos > p.start) {
    for await (const c of job.encoder.range(p.start, pos, job.chunkBytes, job.signal)) {
      hash.update(c.data);
      recycleChunkData(c.data);
    }
  }
  return hash;
}
