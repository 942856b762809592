/**
 * State of one site's resumable upload in the open round attempt: its stripes (contiguous byte
 * ranges of the delta, each carried by one stream at a time), what each has written and
 * acknowledged, and the spool file. It outlives a broken `Upload` call, so a stream that comes
 * back resumes from the acknowledged offset; it ends with the attempt, a protocol violation, or
 * the idle timeout (decisions 2026-11-27, "Resumable uploads").
 */
import type { FileHandle } from 'node:fs/promises';
import type { Clock } from '../core/clock.js';
import { CoordinatorError } from '../core/errors.js';
import type { UploadIntent } from './header.js';
import { Sha256, stripePieces, type Piece } from '../../aggregation/index.js';
import type { PieceLog } from './reuse.js';

/** A stream that owns a stripe; aborting it hands the stripe to a newer stream. */
export interface StreamOwner {
  readonly abort: AbortController;
  readonly settled: Promise<void>;
}

/** One stripe: bytes [start, end) of the delta. */
export interface StripeState {
  readonly start: number;
  readonly end: number;
  readonly pieces: readonly Piece[];
  /** Bytes written to the spool, contiguous from `start`. */
  received: number;
  /** Written, with no tensor digest pending: where a new stream resumes. */
  acked: number;
  owner: StreamOwner | undefined;
  done: boolean;
  /** Kept from an earlier attempt's upload (reuse.ts), not yet claimed by a stream of this one. */
  seeded: boolean;
  /** Digest failures per piece start (bounded: the upload fails after a few). */
  readonly digestFailures: Map<number, number>;
  /**
   * Bytes before `received` came on a stream that proves its bytes whole (no tensor digest has
   * checked them): a stream that sends tensor digests starts such a stripe over.
   */
  wholeOnly: boolean;
  /** Times the whole stripe failed the SHA-256 its trailer named (bounded as `digestFailures`). */
  wholeFailures: number;
}

/** What an upload session is made of. */
export interface UploadSessionOptions {
  readonly site: string;
  /** The header of the site's first stream in this attempt. */
  readonly intent: UploadIntent;
  /** The spool file the stripes are written to. */
  readonly path: string;
  /** No progress for this long ends the session (`onIdle`). */
  readonly idleMs: number;
  readonly onIdle: (session: UploadSession) => void;
  /** Times the idle timeout (the coordinator passes the system clock). */
  readonly clock: Clock;
}

/**
 * The SHA-256 of the whole delta, fed with each chunk as it is written when the chunk continues
 * the bytes hashed so far — all of a one-stripe upload, the first stripe of a striped one — so the
 * spool is not read back to hash it once complete. A rewind behind what was hashed (a resumed
 * stream, a tensor discarded after a bad digest) gives the streaming state up, and `finish` hashes
 * the spool from the start as it used to: rare faults cost a re-read, never a wrong digest. A
 * rewind to the very start (a stripe sent again whole) begins a fresh digest instead.
 */
export class DeltaDigest {
  private hash: Sha256 | undefined = new Sha256();
  private at: number;

  /** A digest of the spool's bytes from `start` (a part's first byte; 0 for a whole delta). */
  constructor(private readonly start = 0) {
    this.at = start;
  }

  /** Bytes `data` were written at `offset`. */
  written(offset: number, data: Uint8Array): void {
    this.continuing(offset, data.length)?.update(data);
  }

  /**
   * The CRC32C of `data`, to be written at `offset`; where the bytes continue what the digest
   * holds it takes them in the same pass (`Sha256.updateCrc32c`). A caller that then does not
   * write them (a CRC that differs, a failed write) must rewind the digest to `offset`.
   */
  crcTaking(offset: number, data: Uint8Array, crc32c: (data: Uint8Array) => number): number {
    const hash = this.continuing(offset, data.length);
    return hash ? hash.updateCrc32c(data, crc32c) : crc32c(data);
  }

  /**
   * The hash to feed the `bytes` bytes written at `offset` when they continue what it holds, or
   * undefined: what a caller that hashes the same bytes for a piece feeds both with
   * (`Sha256.updateBoth`). The caller must feed them all.
   */
  continuing(offset: number, bytes: number): Sha256 | undefined {
    if (this.hash === undefined || offset !== this.at) return undefined;
    this.at += bytes;
    return this.hash;
  }

  /**
   * Feeds the spool's bytes [from, to) when they continue what the digest holds (bytes an earlier
   * attempt left there, kept): read once now, so `finish` need not read them.
   */
  async readKept(file: FileHandle, from: number, to: number): Promise<void> {
    if (this.hash === undefined || from !== this.at) return;
    await feedRange(this.hash, file, from, to);
    this.at = to;
  }

  /** Bytes from `offset` on will be written again. */
  rewound(offset: number): void {
    if (offset === this.start) {
      this.hash = new Sha256();
      this.at = this.start;
    } else if (offset < this.at) this.hash = undefined;
  }

  /** Where the bytes hashed so far end (the start once given up): what `finish` need not read. */
  get hashedTo(): number {
    return this.hash === undefined ? this.start : this.at;
  }

  /** The digest of spool bytes [start, end): what was streamed, then the rest read from `file`. */
  async finish(file: FileHandle, end: number): Promise<string> {
    const hash = this.hash ?? new Sha256();
    const from = this.hashedTo;
    this.hash = undefined;
    if (from < end) await feedRange(hash, file, from, end);
    return hash.digest('hex');
  }
}

/** One site's upload in one round attempt. */
export class UploadSession {
  readonly stripes = new Map<number, StripeState>();
  /** The SHA-256 of the bytes the upload carries (the whole delta, or an aggregator shard's part) as they arrive. */
  readonly digest: DeltaDigest;
  finished = false;
  /** A named delta's piece log (reuse.ts); undefined for an unnamed one. */
  pieceLog: PieceLog | undefined;
  /** The verification of a delta kept whole from an earlier attempt, shared by every stream that asks. */
  completion: Promise<{ sha256: string }> | undefined;
  readonly site: string;
  readonly intent: UploadIntent;
  readonly path: string;
  private cancelIdle: (() => void) | undefined;

  constructor(private readonly o: UploadSessionOptions) {
    this.site = o.site;
    this.intent = o.intent;
    this.path = o.path;
    this.digest = new DeltaDigest(o.intent.part.start);
    this.progressed();
  }

  get round(): number {
    return this.intent.round;
  }

  get attempt(): number {
    return this.intent.attempt;
  }

  /** Restarts the idle (no-progress) timer. */
  progressed(): void {
    this.cancelIdle?.();
    if (this.finished) return;
    // In the background: a session nobody closes at shutdown must not keep the process alive.
    this.cancelIdle = this.o.clock.setTimer(this.o.idleMs, () => this.o.onIdle(this), { background: true });
  }

  /** Streams currently attached to a stripe other than the one starting at `except`. */
  otherStreams(except: number): number {
    let n = 0;
    for (const [start, s] of this.stripes) if (start !== except && s.owner) n++;
    return n;
  }

  /**
   * The stripe a new stream's header names: an existing one (a resume; its range must match) or a
   * new one that overlaps none and keeps within the declared stripe count.
   */
  stripeFor(intent: UploadIntent): StripeState {
    const { part } = this.intent;
    if (intent.part.start !== part.start || intent.part.end !== part.end) {
      throw new CoordinatorError('UPLOAD_INVALID', `header carries part [${intent.part.start}, ${intent.part.end}) of the delta, the upload under way [${part.start}, ${part.end})`);
    }
    if (intent.totalBytes !== this.intent.totalBytes || intent.stripe.count !== this.intent.stripe.count) {
      throw new CoordinatorError('UPLOAD_INVALID', `header disagrees with the upload already under way (${intent.totalBytes} bytes in ${intent.stripe.count} stripes, was ${this.intent.totalBytes} in ${this.intent.stripe.count})`);
    }
    const { start, end } = intent.stripe;
    this.dropSeededOverlapping(start, end);
    const known = this.stripes.get(start);
    if (known) {
      if (known.end !== end) throw new CoordinatorError('UPLOAD_INVALID', `stripe at ${start} ends at ${end}, it was declared to end at ${known.end}`);
      known.seeded = false;
      return known;
    }
    for (const s of this.stripes.values()) {
      if (start < s.end && s.start < end) throw new CoordinatorError('UPLOAD_INVALID', `stripe [${start}, ${end}) overlaps stripe [${s.start}, ${s.end})`);
    }
    if (this.stripes.size >= this.intent.stripe.count) {
      throw new CoordinatorError('UPLOAD_INVALID', `more than the ${this.intent.stripe.count} declared stripes`);
    }
    const stripe: StripeState = {
      start,
      end,
      pieces: stripePieces(intent.segments, start, end),
      received: start,
      acked: start,
      owner: undefined,
      done: false,
      seeded: false,
      digestFailures: new Map(),
      wholeOnly: false,
      wholeFailures: 0,
    };
    this.stripes.set(start, stripe);
    return stripe;
  }

  /**
   * Starts the session from an earlier attempt's upload of the same delta: each stripe resumes
   * where its kept prefix ends, a whole one is done (reuse.ts) — but one kept for a stream that
   * proves its bytes whole, which waits for the trailer that names their SHA-256.
   */
  seed(stripes: readonly { readonly start: number; readonly end: number; readonly keptTo: number; readonly wholeOnly?: boolean }[]): void {
    for (const k of stripes) {
      this.stripes.set(k.start, {
        start: k.start,
        end: k.end,
        pieces: stripePieces(this.intent.segments, k.start, k.end),
        received: k.keptTo,
        acked: k.keptTo,
        owner: undefined,
        // Bytes kept for a whole digest are done only once a trailer names it.
        done: k.keptTo === k.end && k.wholeOnly !== true,
        seeded: true,
        digestFailures: new Map(),
        wholeOnly: k.wholeOnly === true,
        wholeFailures: 0,
      });
    }
  }

  /**
   * A stripe the site now cuts otherwise than in the earlier attempt replaces the kept ones it
   * overlaps (their bytes are sent again), and the delta's digest is read again from the spool.
   */
  private dropSeededOverlapping(start: number, end: number): void {
    for (const [at, s] of this.stripes) {
      if (!s.seeded || (s.start === start && s.end === end) || !(start < s.end && s.start < end)) continue;
      this.stripes.delete(at);
      this.digest.rewound(s.start);
    }
  }

  /** Whether every declared stripe is complete and they cover the part (the whole delta, or a shard's part). */
  complete(): boolean {
    if (this.stripes.size !== this.intent.stripe.count) return false;
    let bytes = 0;
    for (const s of this.stripes.values()) {
      if (!s.done) return false;
      bytes += s.end - s.start;
    }
    return bytes === this.intent.part.end - this.intent.part.start;
  }

  /** Stops the idle timer and aborts every attached stream. */
  close(reason: CoordinatorError): void {
    this.finished = true;
    this.cancelIdle?.();
    void this.pieceLog?.close();
    for (const s of this.stripes.values()) s.owner?.abort.abort(reason);
  }
}

/** Index of the piece holding byte `offset` of a stripe (`pieces.length` at the stripe's end). */
export function pieceAt(pieces: readonly Piece[], offset: number): number {
  const i = pieces.findIndex((p) => offset < p.end);
  return i < 0 ? pieces.length : i;
}

/** SHA-256 state over spool bytes [start, end): how a resumed stream continues a tensor's digest. */
export async function hashRange(file: FileHandle, start: number, end: number): Promise<Sha256> {
  const hash = new Sha256();
  await feedRange(hash, file, start, end);
  return hash;
}

async function feedRange(hash: Sha256, file: FileHandle, start: number, end: number): Promise<void> {
  const buf = Buffer.allocUnsafe(Math.min(4 << 20, Math.max(1, end - start)));
  for (let at = start; at < end; ) {
    const { bytesRead } = await file.read(buf, 0, Math.min(buf.length, end - at), at);
    if (bytesRead === 0) throw new CoordinatorError('INTERNAL', `spool ends at ${at}, expected ${end} bytes`);
    hash.update(buf.subarray(0, bytesRead));
    at += bytesRead;
  }
}
