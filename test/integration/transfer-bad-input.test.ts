/**
 * The resumable upload protocol against misbehaving and broken streams, over real gRPC with mTLS:
 * site-1 and site-2 are real agent processes, site-3 a raw client that receives each round's task
 * and drives its `Upload` streams by hand. Recoverable faults (a bad CRC, one bad tensor digest, a
 * stream beyond the allowance, a broken stream) end with site-3's delta in the round; violations
 * drop site-3 with a clear code and the round commits with the others.
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AdminClient, AdminEvent } from '../../coordinator/index.js';
import type { RoundInfo__Output, TrainTask__Output, UploadMessage } from '../../proto/index.js';
import { createTestFederation, startCoordinatorProcess, startSiteProcess, waitFor, type Proc, type TestFederation } from '../helpers/federation.js';
import {
  RawSiteClient,
  chunkMessages,
  completeUpload,
  craftDelta,
  headerFor,
  refusal,
  joinedRawSite,
  sha256Hex,
  type TaskStream,
} from '../helpers/raw-site.js';

const MAX_STREAMS = 2;
/** The smallest window the coordinator allows: acks every 64 KiB, so a small delta sees some. */
const WINDOW = 256 * 1024;

describe('resumable uploads: corrupted, broken and excessive streams', () => {
  let fed: TestFederation;
  let admin: AdminClient;
  let raw: RawSiteClient;
  let tasks: TaskStream;
  const procs: Proc[] = [];
  const events: AdminEvent[] = [];
  const stopEvents = new AbortController();
  let following: Promise<void> | undefined;

  beforeAll(async () => {
    fed = await createTestFederation({
      sites: 3,
      run: {
        rounds: 17,
        minSites: 2,
        evaluate: false,
        secureAggregation: { enabled: false },
        deadlines: { openS: 30, trainingS: 30, uploadS: 30, aggregateS: 30, commitS: 30, evalS: 15 },
      },
    });
    await fed.patchCoordinatorConfig((cfg) => ({ ...cfg, limits: { maxStreamsPerSite: MAX_STREAMS, idleTimeoutS: 20, uploadWindowBytes: WINDOW } }));
    procs.push(await startCoordinatorProcess(fed));
    admin = fed.admin();
    await admin.waitForReady(Date.now() + 20_000);
    following = admin.events((e) => events.push(e), stopEvents.signal).catch(() => undefined);
    ({ client: raw, tasks } = await joinedRawSite(fed, 'site-3'));
    for (const s of ['site-1', 'site-2']) procs.push(await startSiteProcess(fed, s));
  });
  afterAll(async () => {
    stopEvents.abort();
    await following;
    raw?.close();
    for (const p of procs.splice(0).reverse()) await p.stop();
    await fed?.cleanup();
  });

  async function committed(task: TrainTask__Output): Promise<RoundInfo__Output> {
    const round = Number(task.round);
    const all = await waitFor(`round ${round} committed`, async () => {
      const r = await admin.rounds();
      return r.rounds.some((x) => x.outcome === 'committed' && Number(x.round) === round) ? r.rounds : undefined;
    }, 45_000);
    const records = all.filter((x) => Number(x.round) === round);
    expect(records.map((x) => x.outcome)).toEqual(['committed']);
    return records[0]!;
  }

  async function expectContributed(task: TrainTask__Output): Promise<void> {
    const c = await committed(task);
    expect([...c.participants].sort()).toEqual(['site-1', 'site-2', 'site-3']);
  }

  async function expectDropped(task: TrainTask__Output, code: string): Promise<void> {
    const c = await committed(task);
    expect([...c.participants].sort()).toEqual(['site-1', 'site-2']);
    expect(c.dropped).toEqual(['site-3']);
    await waitFor('round committed event', async () => (events.some((e) => e.kind === 'round.committed' && e.body['round'] === Number(task.round)) ? true : undefined));
    const drops = events.filter((e) => e.kind === 'site.dropped' && e.body['round'] === Number(task.round));
    expect(String(drops[0]!.body['reason'])).toMatch(new RegExp(`^${code}: `));
  }

  /** The full, correct message list (CRC and digests filled in) for the task's delta. */
  const correct = (task: TrainTask__Output, chunkBytes = 4096): UploadMessage[] =>
    completeUpload([{ header: headerFor(task, { chunkBytes }) }, ...chunkMessages(craftDelta(task), chunkBytes), { trailer: { sha256: '' } }]);
  const firstDigest = (m: UploadMessage[]): number => m.findIndex((x) => x.digest);
  /** `m` with a copy of its `k`th chunk, one bit of its byte `at` flipped (changed in flight, the CRC the sender's), sent before it. */
  const withCorruptedChunk = (m: UploadMessage[], k: number, at: number): { messages: UploadMessage[]; offset: number } => {
    const i = m.indexOf(m.filter((x) => x.chunk)[k]!);
    const good = m[i]!.chunk!;
    const corrupted = Buffer.from(good.data as Uint8Array);
    corrupted[at]! ^= 0x01;
    return { messages: [...m.slice(0, i), { chunk: { ...good, data: corrupted } }, ...m.slice(i)], offset: Number(good.offset) };
  };
  /**
   * `delta` cut into `count` stripes on value boundaries, each stripe's messages with its tensor
   * digests; `offer`: its header offers the whole digest all the same.
   */
  const stripesOf = (task: TrainTask__Output, delta: Buffer, count: number, offer = false): UploadMessage[][] => {
    const cut = [...Array.from({ length: count }, (_, k) => 4 * k * Math.floor(delta.length / (4 * count))), delta.length];
    return Array.from({ length: count }, (_, k) => {
      const header = headerFor(task, { stripeOffset: cut[k]!, stripeBytes: cut[k + 1]! - cut[k]!, stripeCount: count });
      const [, ...rest] = completeUpload([{ header }, ...chunkMessages(delta.subarray(cut[k]!, cut[k + 1]!), 4096, cut[k]!), { trailer: { sha256: '' } }]);
      return [{ header: offer ? { ...header, wholeDigest: true } : header }, ...rest];
    });
  };

  it('asks again for a chunk whose CRC32C is wrong, never writes it, and the upload completes', async () => {
    const task = await tasks.nextTrain(45_000);
    const { messages, offset } = withCorruptedChunk(correct(task), 2, 0);
    const s = await raw.uploadStream(messages);
    expect(s.outcome).toMatchObject({ ok: true, value: { accepted: true, complete: true } });
    expect(s.replies.filter((r) => r.resend).map((r) => [Number(r.resend!.offset), r.resend!.reason])).toEqual([[offset, 'CRC32C mismatch']]);
    await expectContributed(task);
  }, 60_000);

  it('discards a tensor whose SHA-256 does not match, takes it again, and the upload completes', async () => {
    const task = await tasks.nextTrain(45_000);
    const m = correct(task);
    const d = firstDigest(m);
    const wrong: UploadMessage = { digest: { tensor: m[d]!.digest!.tensor, sha256: '0'.repeat(64) } };
    // Wrong digest, then the tensor's chunks again (from its first byte) with the right one.
    const s = await raw.uploadStream([...m.slice(0, d), wrong, ...m.slice(1, d + 1), ...m.slice(d + 1)]);
    expect(s.outcome).toMatchObject({ ok: true, value: { complete: true } });
    expect(s.replies.filter((r) => r.resend).map((r) => Number(r.resend!.offset))).toEqual([0]);
    await expectContributed(task);
  }, 60_000);

  it('fails with CHECKSUM_MISMATCH a tensor whose SHA-256 keeps failing, and drops the site', async () => {
    const task = await tasks.nextTrain(45_000);
    const m = correct(task);
    const d = firstDigest(m);
    const wrong: UploadMessage = { digest: { tensor: m[d]!.digest!.tensor, sha256: 'f'.repeat(64) } };
    const again = [...m.slice(1, d), wrong];
    const r = refusal((await raw.uploadStream([...m.slice(0, d), wrong, ...again, ...again, ...again, ...m.slice(d + 1)])).outcome);
    expect(r.code).toBe(grpc.status.DATA_LOSS);
    expect(r.fedhpcCode).toBe('CHECKSUM_MISMATCH');
    expect(r.details).toMatch(/failed its SHA-256 4 times/);
    await expectDropped(task, 'CHECKSUM_MISMATCH');
  }, 60_000);

  it('refuses a chunk that goes back before the acknowledged offset', async () => {
    const task = await tasks.nextTrain(45_000);
    const m = correct(task);
    const chunks = m.filter((x) => x.chunk);
    const third = m.indexOf(chunks[3]!);
    const r = refusal((await raw.uploadStream([...m.slice(0, third), chunks[0]!])).outcome);
    expect(r.code).toBe(grpc.status.OUT_OF_RANGE);
    expect(r.fedhpcCode).toBe('CHUNK_OUT_OF_RANGE');
    expect(r.details).toMatch(/offset 0 goes back before the expected 12288/);
    await expectDropped(task, 'CHUNK_OUT_OF_RANGE');
  }, 60_000);

  it('refuses a chunk larger than the chunk size its header negotiated', async () => {
    const task = await tasks.nextTrain(45_000);
    const delta = craftDelta(task);
    const r = refusal((await raw.uploadStream([{ header: headerFor(task, { chunkBytes: 4096 }) }, ...chunkMessages(delta, 8192)])).outcome);
    expect(r.code).toBe(grpc.status.OUT_OF_RANGE);
    expect(r.fedhpcCode).toBe('CHUNK_OUT_OF_RANGE');
    expect(r.details).toContain('chunk of 8192 bytes (allowed 1..4096)');
    await expectDropped(task, 'CHUNK_OUT_OF_RANGE');
  }, 60_000);

  it('refuses a stream beyond the site’s allowance with RESOURCE_EXHAUSTED while its others go on', async () => {
    const task = await tasks.nextTrain(45_000);
    const delta = craftDelta(task);
    // Three stripes; at most two streams may be open at once.
    const all = stripesOf(task, delta, 3);
    const stripe = (k: number): UploadMessage[] => all[k]!;
    const streams = [0, 1].map(() => raw.openUpload());
    await streams[0]!.write(stripe(0)[0]!);
    await streams[1]!.write(stripe(1)[0]!);
    for (const s of streams) await s.reply((r) => r.accepted);
    const extra = await raw.uploadStream(stripe(2));
    const r = refusal(extra.outcome);
    expect(r.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(r.fedhpcCode).toBe('TOO_MANY_STREAMS');
    expect(r.details).toContain(`the limit is ${MAX_STREAMS}`);
    // The two open streams finish; the third stripe then goes through on its own stream.
    for (const [k, s] of streams.entries()) {
      await s.write(...stripe(k).slice(1));
      expect(await s.outcome).toMatchObject({ ok: true, value: { accepted: true, complete: false } });
      s.end();
    }
    // A stripe already received (an agent that restarted re-opens it) is confirmed, not refused.
    expect((await raw.uploadStream(stripe(0).slice(0, 1))).outcome).toMatchObject({ ok: true, value: { complete: false, message: 'stripe already received' } });
    expect((await raw.uploadStream(stripe(2))).outcome).toMatchObject({ ok: true, value: { complete: true } });
    await expectContributed(task);
  }, 60_000);

  it('resumes a broken stream from the acknowledged offset, re-sending at most one window', async () => {
    const task = await tasks.nextTrain(45_000);
    const m = correct(task);
    const first = raw.openUpload();
    const half = m.indexOf(m.filter((x) => x.chunk)[18]!);
    await first.write(...m.slice(0, half));
    const acked = await first.reply((r) => (r.ack ? Number(r.ack.offset) : undefined));
    expect(acked).toBeGreaterThanOrEqual(WINDOW / 4);
    first.cancel();
    await first.outcome;
    const second = raw.openUpload();
    await second.write(m[0]!);
    const at = await second.reply((r) => r.accepted);
    // At least what was acknowledged to the sender, at most what it sent.
    const sentBefore = m.slice(1, half).reduce((n, x) => n + (x.chunk?.data?.length ?? 0), 0);
    const from = Number(at.offset);
    expect(from).toBeGreaterThanOrEqual(acked);
    expect(from).toBeLessThanOrEqual(sentBefore);
    expect(Number(at.windowBytes)).toBe(WINDOW);
    expect(sentBefore - from).toBeLessThanOrEqual(WINDOW);
    // Everything from the acknowledged offset on (digests of tensors that end later included).
    const kept = (x: UploadMessage | undefined): boolean => x?.chunk != null && Number(x.chunk.offset) >= from;
    const chunkBefore = (all: UploadMessage[], i: number): UploadMessage | undefined => all.slice(0, i).reverse().find((y) => y.chunk);
    const rest = m.slice(1).filter((x, i, all) => (x.chunk ? kept(x) : x.digest ? kept(chunkBefore(all, i)) : true));
    await second.write(...rest);
    expect(await second.outcome).toMatchObject({ ok: true, value: { complete: true } });
    second.end();
    await expectContributed(task);
  }, 60_000);

  /** A single stripe proved whole (version 14): chunks, no tensor digests, the delta's SHA-256 in the trailer. */
  const whole = (task: TrainTask__Output, trailer?: string, chunkBytes = 4096): UploadMessage[] => {
    const delta = craftDelta(task);
    return [{ header: headerFor(task, { chunkBytes, wholeDigest: true }) }, ...chunkMessages(delta, chunkBytes), { trailer: { sha256: trailer ?? sha256Hex(delta) } }];
  };

  it('takes a single stripe proved by one SHA-256 in its trailer, with no tensor digests, and names that digest', async () => {
    const task = await tasks.nextTrain(45_000);
    const m = whole(task);
    const s = await raw.uploadStream(m);
    expect(s.replies.find((r) => r.accepted)?.accepted?.wholeDigest).toBe(true);
    expect(s.outcome).toMatchObject({ ok: true, value: { accepted: true, complete: true, sha256: m.at(-1)!.trailer!.sha256 } });
    // Acknowledged as written: no digest holds any byte back.
    expect(s.replies.filter((r) => r.ack).length).toBeGreaterThan(1);
    await expectContributed(task);
  }, 60_000);

  it('asks again for a chunk of a stripe proved whole whose CRC32C is wrong, and names the bytes spooled', async () => {
    const task = await tasks.nextTrain(45_000);
    const m = whole(task);
    const { messages, offset } = withCorruptedChunk(m, 3, 7);
    const s = await raw.uploadStream(messages);
    expect(s.replies.filter((r) => r.resend).map((r) => [Number(r.resend!.offset), r.resend!.reason])).toEqual([[offset, 'CRC32C mismatch']]);
    expect(s.outcome).toMatchObject({ ok: true, value: { complete: true, sha256: m.at(-1)!.trailer!.sha256 } });
    await expectContributed(task);
  }, 60_000);

  it('asks for the whole stripe again when its trailer names another SHA-256, and the upload completes', async () => {
    const task = await tasks.nextTrain(45_000);
    const m = whole(task);
    const wrong = whole(task, 'e'.repeat(64));
    const s = await raw.uploadStream([...wrong, ...m.slice(1)]);
    expect(s.replies.filter((r) => r.resend).map((r) => [Number(r.resend!.offset), r.resend!.reason])).toEqual([[0, expect.stringMatching(/^SHA-256 mismatch of the stripe: delta SHA-256 is [0-9a-f]{64}, the trailer says e{64}$/)]]);
    expect(s.outcome).toMatchObject({ ok: true, value: { complete: true, sha256: m.at(-1)!.trailer!.sha256 } });
    await expectContributed(task);
  }, 60_000);

  it('fails with CHECKSUM_MISMATCH a stripe proved whole whose SHA-256 keeps failing, and drops the site', async () => {
    const task = await tasks.nextTrain(45_000);
    const wrong = whole(task, 'e'.repeat(64));
    const r = refusal((await raw.uploadStream([...wrong, ...wrong.slice(1), ...wrong.slice(1), ...wrong.slice(1)])).outcome);
    expect(r.code).toBe(grpc.status.DATA_LOSS);
    expect(r.fedhpcCode).toBe('CHECKSUM_MISMATCH');
    expect(r.details).toMatch(/stripe \[0, \d+\) failed the SHA-256 its trailer named 4 times/);
    await expectDropped(task, 'CHECKSUM_MISMATCH');
  }, 60_000);

  it('refuses a tensor digest on a stream proved whole, and drops the site', async () => {
    const task = await tasks.nextTrain(45_000);
    const m = whole(task);
    const digest = correct(task).find((x) => x.digest)!;
    const r = refusal((await raw.uploadStream([...m.slice(0, 2), digest, ...m.slice(2)])).outcome);
    expect(r.fedhpcCode).toBe('UPLOAD_INVALID');
    expect(r.details).toMatch(/SHA-256 of tensor 0 on a stream whose trailer proves all its bytes/);
    await expectDropped(task, 'UPLOAD_INVALID');
  }, 60_000);

  it('refuses an empty trailer on a stream proved whole, and drops the site', async () => {
    const task = await tasks.nextTrain(45_000);
    const r = refusal((await raw.uploadStream(whole(task, ''))).outcome);
    expect(r.fedhpcCode).toBe('UPLOAD_INVALID');
    expect(r.details).toContain('must carry their SHA-256');
    await expectDropped(task, 'UPLOAD_INVALID');
  }, 60_000);

  it('declines the offer for a striped upload, whose stripes send tensor digests as before', async () => {
    const task = await tasks.nextTrain(45_000);
    const delta = craftDelta(task);
    const [first, second] = stripesOf(task, delta, 2, true);
    const s = await raw.uploadStream(first!);
    expect(s.replies.find((r) => r.accepted)?.accepted?.wholeDigest).toBe(false);
    expect(s.outcome).toMatchObject({ ok: true, value: { complete: false } });
    expect((await raw.uploadStream(second!)).outcome).toMatchObject({ ok: true, value: { complete: true, sha256: sha256Hex(delta) } });
    await expectContributed(task);
  }, 60_000);

  it('starts a stripe sent proved whole over when a stream with tensor digests resumes it', async () => {
    const task = await tasks.nextTrain(45_000);
    const m = whole(task);
    const first = raw.openUpload();
    // Seventeen of its chunks: past the first acknowledgement (a quarter window), short of the end.
    expect(m.length).toBeGreaterThan(19);
    await first.write(...m.slice(0, 18));
    const acked = await first.reply((r) => (r.ack ? Number(r.ack.offset) : undefined));
    expect(acked).toBeGreaterThan(0);
    first.cancel();
    await first.outcome;
    // The same stripe with tensor digests: none of them would cover the bytes already spooled.
    const s = await raw.uploadStream(correct(task));
    expect(s.replies.find((r) => r.accepted)?.accepted).toMatchObject({ offset: '0', wholeDigest: false });
    expect(s.outcome).toMatchObject({ ok: true, value: { complete: true, sha256: m.at(-1)!.trailer!.sha256 } });
    await expectContributed(task);
  }, 60_000);
});
