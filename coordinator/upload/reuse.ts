/**
 * Uploads that outlive their attempt (issue 19; docs/protocol.md, "Reuse across attempts"). A plain
 * round interrupted by a coordinator restart or a failover opens again at a higher attempt, and a
 * site that uploads the same delta again names it with the same `contentId`. Beside each spool the
 * upload service keeps a **piece log** — the header's content key, then one line per piece whose
 * SHA-256 the site confirmed — so the coordinator that opens the next attempt (this one restarted,
 * or a standby reading the shared state dir) can keep what was verified instead of asking for it
 * again.
 *
 * Nothing in the log is trusted: before a piece is kept its bytes are read back from the spool and
 * hashed, and only each stripe's prefix of pieces that match is kept, so a log whose tail (or a
 * spool whose last writes) did not reach the disk before a crash costs a re-upload, never a wrong
 * byte. The log is not synced for the same reason. Reading the kept bytes back also feeds the
 * whole delta's digest, so the upload's final check reads them only once more at most.
 *
 * A stripe also keeps the acknowledged bytes of the piece after its verified prefix — a large
 * tensor cut by the crash, whose SHA-256 the site never sent — when the log recorded them: the
 * stripe resumes inside that piece, and the piece's digest in the new attempt covers the kept
 * bytes too (the receiver hashes them from the spool), so a wrong kept byte costs that piece again.
 * Acknowledged offsets are logged at most every {@link ACK_LOG_MS} or {@link ACK_LOG_BYTES} a stripe.
 *
 * A new stream that proves its bytes whole (`wholeDigest`, one stripe) needs no piece checked: its
 * trailer's SHA-256 covers every byte, kept ones too. It keeps the stripe's bytes up to the last
 * acknowledged offset the log names (or the end of its last listed piece, if further), read back
 * once to feed the digest; a wrong kept byte then costs the stripe again, not a piece. Such a
 * stripe is marked `wholeOnly`, so a stream with tensor digests starts it over.
 *
 * Layout: `<spool>/round-R.A/<site>.delta` and `<site>.delta.log` (JSON lines: `{"v":1,
 * "contentKey","totalBytes","stripes"}`, then `{"s","e","p","q","h"}`: the stripe [s, e), the piece
 * [p, q) and its SHA-256, and `{"s","e","a"}`: the stripe's acknowledged offset).
 */
import { createHash } from 'node:crypto';
import { open, readFile, rename, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { stripePieces } from '../../aggregation/index.js';
import type { Logger } from '../../common/logger.js';
import type { UploadIntent } from './header.js';
import type { DeltaDigest } from './session.js';

/** Bytes read at a time when a kept piece is hashed again. */
const READ_BYTES = 4 << 20;
/** A stripe's acknowledged offset is logged once it moved this far since the last line… */
export const ACK_LOG_BYTES = 4 << 20;
/** …or this long after it (whichever comes first). */
export const ACK_LOG_MS = 50;

const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const headLine = z.object({ v: z.literal(1), contentKey: z.string().regex(/^[0-9a-f]{64}$/), totalBytes: count, stripes: count }).strict();
const pieceLine = z.object({ s: count, e: count, p: count, q: count, h: z.string().regex(/^[0-9a-f]{64}$/) }).strict();
const ackLine = z.object({ s: count, e: count, a: count }).strict();

/** A piece the site confirmed: bytes [start, end) of stripe [stripeStart, stripeEnd), and their SHA-256. */
export interface VerifiedPiece {
  readonly stripeStart: number;
  readonly stripeEnd: number;
  readonly start: number;
  readonly end: number;
  readonly sha256: string;
}

/** The path of a spool's piece log. */
export function pieceLogPath(spool: string): string {
  return `${spool}.log`;
}

/**
 * The piece log of one named upload: its head line at creation, then a line per verified piece,
 * appended in order (each append waits for the one before; none is awaited by the stream).
 */
export class PieceLog {
  private tail: Promise<unknown> = Promise.resolve();
  private failed = false;
  /** Per stripe start: the acknowledged offset logged last, and when. */
  private readonly lastAck = new Map<number, { offset: number; ms: number }>();

  private constructor(
    private readonly file: FileHandle,
    private readonly logger: Logger,
  ) {}

  /** Creates the log of `intent`'s spool, with what was already kept from an earlier attempt. */
  static async create(spool: string, intent: UploadIntent & { contentKey: string }, kept: Pick<Reusable, 'pieces' | 'stripes'> | undefined, logger: Logger): Promise<PieceLog> {
    const file = await open(pieceLogPath(spool), 'w', 0o600);
    const head = { v: 1, contentKey: intent.contentKey, totalBytes: intent.totalBytes, stripes: intent.stripe.count };
    const acks = (kept?.stripes ?? []).map((s) => JSON.stringify({ s: s.start, e: s.end, a: s.keptTo }));
    await file.write([JSON.stringify(head), ...(kept?.pieces ?? []).map(lineOf), ...acks].map((l) => `${l}\n`).join(''));
    return new PieceLog(file, logger);
  }

  /** Records a piece whose SHA-256 the site confirmed. */
  verified(piece: VerifiedPiece): void {
    this.append(lineOf(piece));
  }

  /** Records stripe [start, end)'s acknowledged offset, throttled as it moves on (see the module comment). */
  acked(stripe: { readonly start: number; readonly end: number }, offset: number): void {
    const now = Date.now();
    const last = this.lastAck.get(stripe.start);
    // A stripe sent again from an earlier offset is logged at once: a later attempt must not keep more.
    if (last && offset >= last.offset && offset - last.offset < ACK_LOG_BYTES && now - last.ms < ACK_LOG_MS && offset !== stripe.end) return;
    this.lastAck.set(stripe.start, { offset, ms: now });
    this.append(JSON.stringify({ s: stripe.start, e: stripe.end, a: offset }));
  }

  private append(line: string): void {
    if (this.failed) return;
    this.tail = this.tail.then(() => this.file.write(`${line}\n`)).catch((err: unknown) => {
      // A lost log costs a re-upload after a crash, nothing more: the upload goes on.
      this.failed = true;
      this.logger.warn({ phase: 'upload', err: { message: (err as Error).message } }, 'piece log not written: this upload cannot be reused by a later attempt');
    });
  }

  async close(): Promise<void> {
    await this.tail;
    await this.file.close().catch(() => undefined);
  }
}

function lineOf(p: VerifiedPiece): string {
  return JSON.stringify({ s: p.stripeStart, e: p.stripeEnd, p: p.start, q: p.end, h: p.sha256 });
}

/**
 * One stripe of an earlier attempt's upload: the prefix [start, keptTo) is kept — verified pieces,
 * then possibly the acknowledged start of the next one (its digest in the new attempt covers it).
 */
export interface KeptStripe {
  readonly start: number;
  readonly end: number;
  readonly keptTo: number;
  /** Kept for a stream that proves its bytes whole: no piece digest vouches for them. */
  readonly wholeOnly?: boolean;
}

/** What an earlier attempt's spool gives the new session. */
export interface Reusable {
  readonly fromAttempt: number;
  /** Stripes with a kept prefix (the spool now lies at the new session's path). */
  readonly stripes: readonly KeptStripe[];
  readonly pieces: readonly VerifiedPiece[];
  /** Bytes kept: no site sends them again. */
  readonly bytes: number;
}

/** What one earlier spool keeps. */
type Kept = Omit<Reusable, 'fromAttempt'>;

/** An earlier attempt's spool folder of the same round. */
export interface EarlierSpools {
  readonly attempt: number;
  readonly dir: string;
}

/**
 * Moves what `site` verifiably uploaded of the same named delta in an earlier attempt of the round
 * to `path` (the new session's spool), newest attempt first; undefined when nothing can be kept.
 * The session's own attempt counts too: a receiver that restarted mid-upload (an aggregator shard,
 * issue 22, whose attempt goes on without it) finds its spool and log at `path` and keeps them there.
 * Pieces read back from the spool also feed `digest`, the new session's whole-delta digest.
 */
export async function takeEarlierUpload(o: {
  readonly site: string;
  readonly intent: UploadIntent & { contentKey: string };
  readonly earlier: readonly EarlierSpools[];
  readonly path: string;
  readonly digest: DeltaDigest;
  /** The new session's first stream proves its bytes whole: acknowledged bytes are kept unchecked. */
  readonly wholeDigest?: boolean;
  readonly logger: Logger;
}): Promise<Reusable | undefined> {
  const log = o.logger.child({ site: o.site, round: o.intent.round, phase: 'upload' });
  // The session's own attempt only where its spool is the session's own (a receiver restarted).
  const spools = o.earlier.map((e) => ({ attempt: e.attempt, spool: join(e.dir, `${o.site}.delta`) }));
  for (const e of spools.filter((e) => e.attempt < o.intent.attempt || (e.attempt === o.intent.attempt && e.spool === o.path)).sort((a, b) => b.attempt - a.attempt)) {
    const spool = e.spool;
    const logged = await readPieceLog(spool, o.intent, log);
    if (logged === undefined) continue;
    const kept = o.wholeDigest ? await keepAcknowledged(spool, o.intent, logged, o.digest) : await verifyPieces(spool, o.intent, logged, o.digest);
    if (kept.bytes === 0) {
      // Bytes this spool fed the digest before it failed are not the ones an older spool keeps.
      o.digest.rewound(o.intent.part.start);
      continue;
    }
    // The log goes first: a log left beside a moved spool would name bytes that are no longer there.
    await rm(pieceLogPath(spool), { force: true });
    if (spool !== o.path) await rename(spool, o.path);
    return { fromAttempt: e.attempt, ...kept };
  }
  return undefined;
}

/** What an earlier spool's log lists: its verified pieces, and each stripe's last acknowledged offset (by `s-e`). */
interface Logged {
  readonly pieces: readonly VerifiedPiece[];
  readonly acked: ReadonlyMap<string, number>;
}

/** The log of an earlier spool, when it is a log of the same named delta. */
async function readPieceLog(spool: string, intent: UploadIntent & { contentKey: string }, log: Logger): Promise<Logged | undefined> {
  let text: string;
  try {
    text = await readFile(pieceLogPath(spool), 'utf8');
  } catch {
    return undefined; // no log: an unnamed upload, or one already taken
  }
  const lines = text.split('\n');
  const head = headLine.safeParse(parseJson(lines[0] ?? ''));
  if (!head.success || head.data.contentKey !== intent.contentKey) return undefined;
  if (head.data.totalBytes !== intent.totalBytes || head.data.stripes !== intent.stripe.count) {
    log.warn({ totalBytes: head.data.totalBytes, stripes: head.data.stripes }, 'an earlier upload with the same content key had another layout: not reused');
    return undefined;
  }
  const pieces: VerifiedPiece[] = [];
  const acked = new Map<string, number>();
  // A torn last line (the crash came mid-write) ends the log.
  for (const line of lines.slice(1)) {
    const json = parseJson(line);
    const p = pieceLine.safeParse(json);
    const a = p.success ? undefined : ackLine.safeParse(json);
    if (p.success) pieces.push({ stripeStart: p.data.s, stripeEnd: p.data.e, start: p.data.p, end: p.data.q, sha256: p.data.h });
    else if (a?.success) acked.set(`${a.data.s}-${a.data.e}`, a.data.a);
    else break;
  }
  return { pieces, acked };
}

function parseJson(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch {
    return undefined;
  }
}

/**
 * Each stripe's kept prefix: its pieces in order from the stripe's start, as the delta's layout
 * cuts them, each listed and read back with the SHA-256 the site confirmed; then, when the next
 * piece is not listed (the crash came inside it), its bytes up to the stripe's last logged
 * acknowledgement, if that lies strictly inside it. Stripes are walked in order of their start, so
 * a delta kept from byte 0 streams into `digest`.
 */
async function verifyPieces(spool: string, intent: UploadIntent, logged: Logged, digest: DeltaDigest): Promise<Kept> {
  const byStripe = new Map<string, Map<number, VerifiedPiece>>();
  for (const p of logged.pieces) {
    const key = `${p.stripeStart}-${p.stripeEnd}`;
    const m = byStripe.get(key) ?? new Map<number, VerifiedPiece>();
    m.set(p.start, p);
    byStripe.set(key, m);
  }
  for (const key of logged.acked.keys()) if (!byStripe.has(key)) byStripe.set(key, new Map());
  const bounds = [...byStripe.keys()].map((k) => k.split('-').map(Number) as [number, number]).sort((a, b) => a[0] - b[0]);
  // Stripes of one upload never overlap; a log that says otherwise is not used at all.
  if (bounds.some(([s, e], i) => e > intent.totalBytes || s >= e || (i > 0 && s < bounds[i - 1]![1]))) return { stripes: [], pieces: [], bytes: 0 };
  let file: FileHandle;
  try {
    file = await open(spool, 'r');
  } catch {
    return { stripes: [], pieces: [], bytes: 0 };
  }
  const stripes: KeptStripe[] = [];
  const kept: VerifiedPiece[] = [];
  const buf = Buffer.allocUnsafe(READ_BYTES);
  try {
    for (const [start, end] of bounds) {
      const listed = byStripe.get(`${start}-${end}`)!;
      let at = start;
      for (const expected of stripePieces(intent.segments, start, end)) {
        const p = listed.get(expected.start);
        if (!p) {
          // Cut inside this piece: its acknowledged start stays, to be covered by its digest later.
          const acked = logged.acked.get(`${start}-${end}`) ?? at;
          if (acked > at && acked < expected.end && acked <= (await file.stat()).size) at = acked;
          break;
        }
        if (p.end !== expected.end || !(await matches(file, p, buf, digest))) break;
        kept.push(p);
        at = p.end;
      }
      if (at > start) stripes.push({ start, end, keptTo: at });
    }
  } finally {
    await file.close();
  }
  return { stripes, pieces: kept, bytes: stripes.reduce((a, s) => a + s.keptTo - s.start, 0) };
}

/**
 * The one stripe of an upload proved whole: its bytes from the part's start up to the furthest
 * point the log names (an acknowledged offset, or a listed piece's end reached from the start),
 * within the spool, read back once into `digest`. Nothing is hashed against the log.
 */
async function keepAcknowledged(spool: string, intent: UploadIntent, logged: Logged, digest: DeltaDigest): Promise<Kept> {
  const { start, end } = intent.stripe;
  const none = { stripes: [], pieces: [], bytes: 0 };
  const acked = logged.acked.get(`${start}-${end}`) ?? start;
  let pieceEnd = start;
  for (const p of logged.pieces) if (p.stripeStart === start && p.stripeEnd === end && p.start === pieceEnd) pieceEnd = p.end;
  let file: FileHandle;
  try {
    file = await open(spool, 'r');
  } catch {
    return none;
  }
  try {
    const keptTo = Math.min(Math.max(acked, pieceEnd), end, (await file.stat()).size);
    if (keptTo <= start) return none;
    try {
      await digest.readKept(file, start, keptTo);
    } catch {
      return none; // the spool ended short of its own size: the caller starts the digest afresh
    }
    return { stripes: [{ start, end, keptTo, wholeOnly: true }], pieces: [], bytes: keptTo - start };
  } finally {
    await file.close();
  }
}

/**
 * Whether the spool's bytes of `p` hash to what the site confirmed. They feed `digest` as they are
 * read: a piece that then fails is sent again, and the stream resumed before it rewinds the digest.
 */
async function matches(file: FileHandle, p: VerifiedPiece, buf: Buffer, digest: DeltaDigest): Promise<boolean> {
  const hash = createHash('sha256');
  for (let at = p.start; at < p.end; ) {
    const { bytesRead } = await file.read(buf, 0, Math.min(buf.length, p.end - at), at);
    if (bytesRead === 0) return false; // the spool ends short of the piece
    const data = buf.subarray(0, bytesRead);
    hash.update(data);
    digest.written(at, data);
    at += bytesRead;
  }
  return hash.digest('hex') === p.sha256;
}
