/**
 * Uploads that outlive their attempt (coordinator/upload/reuse.ts): what an earlier attempt's
 * spool and piece log give a later attempt's session of the same named delta — only pieces read
 * back and matching the SHA-256 the site confirmed, each stripe's prefix of them — and what they
 * never give: another delta's bytes, a piece whose write was lost, a layout that changed.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { deltaSegments, stripePieces } from '../../../aggregation/index.js';
import { createLogger } from '../../../common/logger.js';
import type { UploadIntent } from '../../../coordinator/upload/header.js';
import { PieceLog, pieceLogPath, takeEarlierUpload, type VerifiedPiece } from '../../../coordinator/upload/reuse.js';
import { DeltaDigest, UploadSession } from '../../../coordinator/upload/session.js';
import { ManualClock } from '../../helpers/clock.js';
import { uploadIntent } from '../../helpers/upload-intent.js';

const logger = createLogger({ name: 'test', level: 'silent' });
const KEY = 'c'.repeat(64);
/** Three f32 tensors of 8, 8 and 4 values: 80 bytes, cut into stripes [0, 48) and [48, 80). */
const SEGMENTS = deltaSegments('f32', [8, 8, 4]);
const STRIPES = [
  { start: 0, end: 48 },
  { start: 48, end: 80 },
] as const;

function intent(attempt: number, contentKey = KEY): UploadIntent & { contentKey: string } {
  return { ...uploadIntent(20, { round: 3, attempt, segments: SEGMENTS, stripe: { ...STRIPES[0], count: 2 } }), contentKey };
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Every piece of both stripes of `delta`, as the upload service logs them once the site confirmed each. */
function piecesOf(delta: Buffer): VerifiedPiece[] {
  return STRIPES.flatMap((s) => stripePieces(SEGMENTS, s.start, s.end).map((p) => ({ stripeStart: s.start, stripeEnd: s.end, start: p.start, end: p.end, sha256: sha(delta.subarray(p.start, p.end)) })));
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fedhpc-reuse-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Attempt `attempt`'s spool folder holding `spool` and a piece log of `pieces` (what a coordinator left). */
async function earlierUpload(attempt: number, spool: Buffer, pieces: readonly VerifiedPiece[], contentKey = KEY): Promise<{ attempt: number; dir: string }> {
  const at = join(dir, `round-3.${attempt}`);
  await mkdir(at, { recursive: true });
  const path = join(at, 'site-a.delta');
  await writeFile(path, spool);
  const log = await PieceLog.create(path, intent(attempt, contentKey), undefined, logger);
  for (const p of pieces) log.verified(p);
  await log.close();
  return { attempt, dir: at };
}

async function take(earlier: readonly { attempt: number; dir: string }[], attempt = 3, contentKey = KEY) {
  const path = join(dir, `new-${attempt}.delta`);
  const digest = new DeltaDigest();
  const taken = await takeEarlierUpload({ site: 'site-a', intent: intent(attempt, contentKey), earlier, path, digest, logger });
  return { taken, path, digest };
}

describe('takeEarlierUpload', () => {
  it('keeps a whole delta every piece of which reads back as confirmed, moves the spool and feeds the whole-delta digest', async () => {
    const delta = randomBytes(80);
    const e = await earlierUpload(1, delta, piecesOf(delta));
    const { taken, path, digest } = await take([e]);
    expect(taken).toMatchObject({ fromAttempt: 1, bytes: 80, stripes: [{ start: 0, end: 48, keptTo: 48 }, { start: 48, end: 80, keptTo: 80 }] });
    expect(taken!.pieces).toHaveLength(4);
    expect(await readFile(path)).toEqual(delta);
    // The earlier folder no longer names the bytes: neither spool nor log stays there.
    expect(await readdir(e.dir)).toEqual([]);
    expect(digest.hashedTo).toBe(80);
    const file = await open(path, 'r');
    try {
      expect(await digest.finish(file, 80)).toBe(sha(delta));
    } finally {
      await file.close();
    }
  });

  it("keeps each stripe's prefix up to the first piece whose bytes did not reach the disk, and nothing of a stripe that starts with one", async () => {
    const delta = randomBytes(80);
    const spool = Buffer.from(delta);
    spool[40] = spool[40]! ^ 0xff; // stripe 1's second piece [32, 48)
    spool[50] = spool[50]! ^ 0xff; // stripe 2's first piece [48, 64)
    const { taken } = await take([await earlierUpload(1, spool, piecesOf(delta))]);
    expect(taken).toMatchObject({ bytes: 32, stripes: [{ start: 0, end: 48, keptTo: 32 }] });
  });

  it('keeps the pieces a log lists before a torn last line, and those only in layout order', async () => {
    const delta = randomBytes(80);
    const [p0, p1, p2, p3] = piecesOf(delta);
    const e = await earlierUpload(1, delta, [p0!, p2!, p3!]);
    await writeFile(pieceLogPath(join(e.dir, 'site-a.delta')), `${JSON.stringify({ s: 0, e: 48, p: 32, q: 48, h: p1!.sha256 }).slice(0, 20)}`, { flag: 'a' });
    const { taken } = await take([e]);
    // Stripe 1 lacks its second piece (torn away): its prefix is the first; stripe 2 is whole.
    expect(taken).toMatchObject({ bytes: 32 + 32, stripes: [{ start: 0, keptTo: 32 }, { start: 48, keptTo: 80 }] });
  });

  it('takes nothing of another delta, of a log without pieces or of a missing spool, and leaves them where they were', async () => {
    const delta = randomBytes(80);
    const other = await earlierUpload(1, delta, piecesOf(delta), 'd'.repeat(64));
    expect((await take([other])).taken).toBeUndefined();
    expect((await readdir(other.dir)).sort()).toEqual(['site-a.delta', 'site-a.delta.log']);

    const empty = await earlierUpload(2, delta, []);
    expect((await take([empty])).taken).toBeUndefined();

    const gone = await earlierUpload(4, delta, piecesOf(delta));
    await rm(join(gone.dir, 'site-a.delta'));
    expect((await take([gone], 5)).taken).toBeUndefined();
  });

  it("takes the newest earlier attempt, never a later one, nor another spool of the session's own", async () => {
    const older = randomBytes(80);
    const newer = randomBytes(80);
    const e1 = await earlierUpload(1, older, piecesOf(older));
    const e2 = await earlierUpload(2, newer, piecesOf(newer));
    const e3 = await earlierUpload(3, older, piecesOf(older));
    const { taken, path } = await take([e1, e3, e2], 3);
    expect(taken?.fromAttempt).toBe(2);
    expect(await readFile(path)).toEqual(newer);
  });

  it("a receiver restarted mid-upload (an aggregator shard): keeps what its own attempt's spool verifiably holds, in place, before any earlier attempt's", async () => {
    const delta = randomBytes(80);
    const e2 = await earlierUpload(2, delta, piecesOf(delta));
    // Attempt 3's spool before the restart: the first stripe confirmed, the second not yet.
    const own = await earlierUpload(3, delta, piecesOf(delta).filter((p) => p.stripeStart === 0));
    const path = join(own.dir, 'site-a.delta');
    const taken = await takeEarlierUpload({ site: 'site-a', intent: intent(3), earlier: [e2, own], path, digest: new DeltaDigest(), logger });
    expect(taken).toMatchObject({ fromAttempt: 3, bytes: 48, stripes: [{ start: 0, end: 48, keptTo: 48 }] });
    expect(await readFile(path)).toEqual(delta);
    // Its log went (the session writes a new one from what was kept); attempt 2 was left alone.
    expect(await readdir(own.dir)).toEqual(['site-a.delta']);
    expect((await readdir(e2.dir)).sort()).toEqual(['site-a.delta', 'site-a.delta.log']);
  });

  it("keeps the acknowledged start of the piece a crash cut, strictly inside it and only after the stripe's verified prefix", async () => {
    const delta = randomBytes(80);
    const [p0, , , p3] = piecesOf(delta);
    const e = await earlierUpload(1, delta, [p0!, p3!]);
    const log = pieceLogPath(join(e.dir, 'site-a.delta'));
    // Stripe 1 was cut inside [32, 48) at 40; stripe 2 inside its first piece [48, 64) at 56, though its second is listed.
    await writeFile(log, `${JSON.stringify({ s: 0, e: 48, a: 36 })}\n${JSON.stringify({ s: 0, e: 48, a: 40 })}\n${JSON.stringify({ s: 48, e: 80, a: 56 })}\n`, { flag: 'a' });
    const { taken } = await take([e]);
    expect(taken).toMatchObject({ bytes: 40 + 8, stripes: [{ start: 0, keptTo: 40 }, { start: 48, keptTo: 56 }] });
    // Only listed pieces count as verified: the cut one is the new attempt's digest's to check.
    expect(taken!.pieces).toEqual([p0]);
  });

  it('keeps nothing past a piece that reads back wrong, nor an acknowledgement at or past the end of the cut piece', async () => {
    const delta = randomBytes(80);
    const spool = Buffer.from(delta);
    spool[10] = spool[10]! ^ 0xff; // stripe 1's first piece
    const [p0, , p2] = piecesOf(delta);
    const e = await earlierUpload(1, spool, [p0!, p2!]);
    await writeFile(pieceLogPath(join(e.dir, 'site-a.delta')), `${JSON.stringify({ s: 0, e: 48, a: 40 })}\n${JSON.stringify({ s: 48, e: 80, a: 80 })}\n`, { flag: 'a' });
    const { taken } = await take([e]);
    // Stripe 1 keeps nothing (its first piece is wrong); stripe 2 its verified piece, not [64, 80) that no line vouches for.
    expect(taken).toMatchObject({ bytes: 16, stripes: [{ start: 48, keptTo: 64 }] });
  });

  describe('for a stream that proves its bytes whole (one stripe)', () => {
    const whole = (attempt: number): UploadIntent & { contentKey: string } => ({ ...intent(attempt), stripe: { start: 0, end: 80, count: 1 } });
    /** Attempt 1's spool and a one-stripe log: the piece [0, 32) confirmed, then `ack` acknowledged. */
    async function earlierWhole(spool: Buffer, ack: number, delta: Buffer): Promise<{ attempt: number; dir: string }> {
      const at = join(dir, 'round-3.1');
      await mkdir(at, { recursive: true });
      const path = join(at, 'site-a.delta');
      await writeFile(path, spool);
      const log = await PieceLog.create(path, whole(1), undefined, logger);
      log.verified({ stripeStart: 0, stripeEnd: 80, start: 0, end: 32, sha256: sha(delta.subarray(0, 32)) });
      log.acked({ start: 0, end: 80 }, ack);
      await log.close();
      return { attempt: 1, dir: at };
    }
    async function takeWhole(e: { attempt: number; dir: string }) {
      const digest = new DeltaDigest();
      const taken = await takeEarlierUpload({ site: 'site-a', intent: whole(3), earlier: [e], path: join(dir, 'new.delta'), digest, wholeDigest: true, logger });
      return { taken, digest };
    }

    it('keeps every acknowledged byte, unchecked against the log, marks the stripe wholeOnly and feeds the digest', async () => {
      const delta = randomBytes(80);
      const spool = Buffer.from(delta);
      spool[40] = spool[40]! ^ 0xff; // no piece is checked: the new stream's trailer will be
      const { taken, digest } = await takeWhole(await earlierWhole(spool, 72, delta));
      expect(taken).toMatchObject({ fromAttempt: 1, bytes: 72, pieces: [], stripes: [{ start: 0, end: 80, keptTo: 72, wholeOnly: true }] });
      expect(digest.hashedTo).toBe(72);
    });

    it('keeps no more than the spool holds, and leaves a stripe kept to its end waiting for the trailer', async () => {
      const delta = randomBytes(80);
      expect((await takeWhole(await earlierWhole(delta.subarray(0, 60), 72, delta))).taken).toMatchObject({ bytes: 60, stripes: [{ keptTo: 60 }] });
      await rm(join(dir, 'new.delta'));
      const { taken } = await takeWhole(await earlierWhole(delta, 80, delta));
      expect(taken).toMatchObject({ bytes: 80, stripes: [{ keptTo: 80, wholeOnly: true }] });
      const s = new UploadSession({ site: 'site-a', intent: whole(3), path: join(dir, 'x.delta'), idleMs: 60_000, onIdle: () => undefined, clock: new ManualClock() });
      s.seed(taken!.stripes);
      expect({ done: s.stripes.get(0)!.done, wholeOnly: s.stripes.get(0)!.wholeOnly, complete: s.complete() }).toEqual({ done: false, wholeOnly: true, complete: false });
    });
  });

  it('drops from the digest what a newer spool fed it before failing, so the older spool kept is what it names', async () => {
    const delta = randomBytes(80);
    const older = await earlierUpload(1, delta, piecesOf(delta));
    const spoiled = Buffer.from(delta);
    spoiled[20] = spoiled[20]! ^ 0xff; // inside [16, 32), read back after [0, 16) fed the digest
    const [p0, p1] = piecesOf(delta);
    const newer = await earlierUpload(2, spoiled, [p0!, p1!].map((p) => ({ ...p })));
    await writeFile(join(newer.dir, 'site-a.delta'), spoiled.subarray(0, 32));
    const { taken, path, digest } = await take([older, newer]);
    expect(taken).toMatchObject({ fromAttempt: 1, bytes: 80 });
    const file = await open(path, 'r');
    try {
      expect(await digest.finish(file, 80)).toBe(sha(delta));
    } finally {
      await file.close();
    }
  });

  it('refuses a log of the same key whose stripes overlap', async () => {
    const delta = randomBytes(80);
    const bad = piecesOf(delta).map((p, i) => (i === 2 ? { ...p, stripeStart: 40 } : p));
    expect((await take([await earlierUpload(1, delta, bad)])).taken).toBeUndefined();
  });
});

describe('a session seeded from an earlier attempt', () => {
  const session = (): UploadSession => new UploadSession({ site: 'site-a', intent: intent(3), path: join(dir, 'x.delta'), idleMs: 60_000, onIdle: () => undefined, clock: new ManualClock() });

  it('resumes each stripe where its kept prefix ends, and is complete once every stripe was kept whole', () => {
    const s = session();
    s.seed([{ start: 0, end: 48, keptTo: 48 }, { start: 48, end: 80, keptTo: 64 }]);
    expect(s.complete()).toBe(false);
    const second = s.stripeFor({ ...intent(3), stripe: { start: 48, end: 80, count: 2 } });
    expect({ acked: second.acked, done: second.done, seeded: second.seeded }).toEqual({ acked: 64, done: false, seeded: false });
    const whole = session();
    whole.seed([{ start: 0, end: 48, keptTo: 48 }, { start: 48, end: 80, keptTo: 80 }]);
    expect(whole.complete()).toBe(true);
  });

  it('drops the kept stripes a differently cut stripe overlaps, and gives up the digest streamed so far', () => {
    const s = session();
    s.digest.written(0, new Uint8Array(48));
    s.seed([{ start: 0, end: 48, keptTo: 48 }, { start: 48, end: 80, keptTo: 80 }]);
    // The site now sends one stripe: both kept ones are replaced by it, from its first byte.
    const one = s.stripeFor({ ...intent(3), stripe: { start: 0, end: 80, count: 2 } });
    expect({ acked: one.acked, done: one.done }).toEqual({ acked: 0, done: false });
    expect([...s.stripes.keys()]).toEqual([0]);
    expect(s.digest.hashedTo).toBe(0);
  });
});
