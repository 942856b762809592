/**
 * The coordinator's one in-flight budget, shared by all sites' upload streams, over real gRPC with
 * mTLS: the budget is a single window, so one stream at a time may send. site-2 and site-3 are raw
 * clients driving their streams by hand; site-1 is a real agent process. Streams that find the
 * budget in use are told so (`queued`) and accepted when it frees, and waiting for other sites'
 * bytes — here more than twice the idle timeout — is not taken for a stall.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AdminClient } from '../../coordinator/index.js';
import type { TrainTask__Output, UploadMessage } from '../../proto/index.js';
import { createTestFederation, freePort, startCoordinatorProcess, startSiteProcess, waitFor, type Proc, type TestFederation } from '../helpers/federation.js';
import { chunkMessages, completeUpload, craftDelta, headerFor, joinedRawSite, type RawSiteClient, type TaskStream } from '../helpers/raw-site.js';

/** The smallest window; the budget holds exactly one. */
const WINDOW = 256 * 1024;
const IDLE_S = 2;
/**
 * How long site-3's first stream keeps the budget after every other stream is seen queued, trickling
 * chunks (it progresses; the others wait).
 */
const HOLD_MS = 2.5 * IDLE_S * 1000;
/** The pause between the first stream's chunks: well inside the idle timeout, however slow the host. */
const TRICKLE_MS = (IDLE_S * 1000) / 5;

describe('one in-flight upload budget shared by every site', () => {
  let fed: TestFederation;
  let admin: AdminClient;
  let metricsPort: number;
  const procs: Proc[] = [];
  const raw = new Map<string, { client: RawSiteClient; tasks: TaskStream }>();

  beforeAll(async () => {
    fed = await createTestFederation({
      sites: 3,
      run: {
        rounds: 1,
        minSites: 3,
        evaluate: false,
        secureAggregation: { enabled: false },
        deadlines: { openS: 30, trainingS: 30, uploadS: 45, aggregateS: 30, commitS: 30, evalS: 15 },
      },
    });
    const limits = { maxChunkBytes: 64 * 1024, uploadWindowBytes: WINDOW, uploadBudgetBytes: WINDOW, idleTimeoutS: IDLE_S };
    metricsPort = await freePort();
    await fed.patchCoordinatorConfig((cfg) => ({ ...cfg, limits, metrics: { port: metricsPort } }));
    procs.push(await startCoordinatorProcess(fed));
    admin = fed.admin();
    await admin.waitForReady(Date.now() + 20_000).catch(async (err: unknown) => {
      throw new Error(`coordinator did not start: ${await procs[0]!.logText()}`, { cause: err });
    });
    for (const site of ['site-2', 'site-3']) raw.set(site, await joinedRawSite(fed, site));
    procs.push(await startSiteProcess(fed, 'site-1'));
  });
  afterAll(async () => {
    for (const r of raw.values()) r.client.close();
    for (const p of procs.splice(0).reverse()) await p.stop();
    await fed?.cleanup();
  });

  /** The messages of stripe [start, end) of `delta`, in chunks of `chunk` bytes. */
  const stripe = (task: TrainTask__Output, delta: Buffer, start: number, end: number, count: number, chunk: number): UploadMessage[] =>
    completeUpload([
      { header: headerFor(task, { stripeOffset: start, stripeBytes: end - start, stripeCount: count }) },
      ...chunkMessages(delta.subarray(start, end), chunk, start),
      { trailer: { sha256: '' } },
    ]);

  it('holds streams beyond the budget as queued, past the idle timeout, and the round commits with every site', async () => {
    const site2 = raw.get('site-2')!;
    const site3 = raw.get('site-3')!;
    const [task2, task3] = await Promise.all([site2.tasks.nextTrain(45_000), site3.tasks.nextTrain(45_000)]);
    const delta3 = craftDelta(task3);
    const half = 4 * Math.floor(delta3.length / 8);
    // About 80 chunks a stripe (whole f32 values): at TRICKLE_MS, 32 s of trickle, room for the
    // checks below on a slow host and HOLD_MS after them.
    const chunk = Math.max(4, 4 * Math.floor(half / (4 * 80)));
    const [a, b] = [stripe(task3, delta3, 0, half, 2, chunk), stripe(task3, delta3, half, delta3.length, 2, chunk)];

    const first = site3.client.openUpload();
    await first.write(a[0]!);
    expect(Number((await first.reply((r) => r.accepted)).windowBytes)).toBe(WINDOW);
    // From its acceptance on, the first stream sends a chunk every TRICKLE_MS, so the idle timeout
    // (restarted only by a message) never ends it while the checks below run, however long they
    // take; once they are done (`checked`) it goes on for HOLD_MS, the trailer kept back.
    const body = a.slice(1, -1);
    let checked: number | undefined;
    const trickle = (async () => {
      let i = 0;
      while (i < body.length && (checked === undefined || Date.now() - checked < HOLD_MS)) {
        await first.write(body[i++]!);
        await sleep(TRICKLE_MS);
      }
      await first.write(...body.slice(i));
      return { sent: i, of: body.length };
    })();
    trickle.catch(() => undefined); // a failed write is reported where the trickle is awaited
    // The budget is spent: site-3's second stripe and site-2's upload wait, told so.
    const second = site3.client.openUpload();
    await second.write(b[0]!);
    const queued = await second.reply((r) => r.queued);
    expect(Number(queued.budgetBytes)).toBe(WINDOW);
    expect(Number(queued.usedBytes)).toBe(WINDOW);
    // A queued stream whose client goes away leaves the queue at once.
    const gone = site2.client.openUpload();
    await gone.write({ header: headerFor(task2, { chunkBytes: chunk }) });
    await gone.reply((r) => r.queued);
    gone.cancel();
    // Its end is logged while the budget is still held by the first stream: it left the queue, ungranted.
    await waitFor('the cancelled stream off the queue', async () => ((await procs[0]!.logText()).includes('"message":"the client cancelled the stream"') ? true : undefined), 10_000, 100);
    const other = site2.client.openUpload();
    const whole2 = completeUpload([{ header: headerFor(task2, { chunkBytes: chunk }) }, ...chunkMessages(craftDelta(task2), chunk), { trailer: { sha256: '' } }]);
    await other.write(whole2[0]!);
    await other.reply((r) => r.queued);
    const status = await admin.status();
    expect(status).toMatchObject({ uploadBudgetBytes: String(WINDOW), uploadBudgetUsedBytes: String(WINDOW) });
    expect(status.uploadStreamsQueued).toBeGreaterThanOrEqual(2); // site-1's agent may be queued too

    checked = Date.now();
    const trickled = await trickle;
    // The trickle outlasted the checks (chunks were left for the hold) and held past two idle timeouts.
    expect(trickled.sent).toBeLessThan(trickled.of);
    expect(Date.now() - checked).toBeGreaterThan(2 * IDLE_S * 1000);
    // Still waiting (not accepted, not failed) after more than two idle timeouts without a byte.
    for (const s of [second, other]) {
      expect(s.replies.some((r) => r.accepted)).toBe(false);
      expect(s.replies.filter((r) => r.queued).length).toBeGreaterThan(2 * IDLE_S);
    }
    await first.write(a[a.length - 1]!);
    expect(await first.outcome).toMatchObject({ ok: true, value: { accepted: true, complete: false } });
    first.end();

    // The freed window goes to a waiting stream; each finishes in turn.
    for (const [s, messages] of [[second, b], [other, whole2]] as const) {
      await s.reply((r) => r.accepted, 20_000);
      await s.write(...messages.slice(1));
      expect(await s.outcome).toMatchObject({ ok: true, value: { accepted: true, complete: true } });
      s.end();
    }

    const rounds = await waitFor('round 1 committed', async () => {
      const r = await admin.rounds();
      return r.rounds.some((x) => x.outcome === 'committed') ? r.rounds : undefined;
    }, 45_000);
    expect(rounds.map((x) => x.outcome)).toEqual(['committed']);
    expect([...rounds[0]!.participants].sort()).toEqual(['site-1', 'site-2', 'site-3']);
  }, 90_000);

  it('shows the budget in its metrics and logs the streams it held back', async () => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(text).toMatch(new RegExp(`fedhpc_upload_budget_bytes\\{kind="total",federation="testfed"\\} ${WINDOW}`));
    expect(text).toMatch(/fedhpc_upload_budget_bytes\{kind="used",federation="testfed"\} 0/);
    expect(text).toMatch(/fedhpc_upload_streams_queued\{federation="testfed"\} 0/);
    const queued = (await procs[0]!.logText()).split('\n').filter((l) => l.includes('upload stream queued'));
    expect(queued.map((l) => (JSON.parse(l) as { site: string }).site)).toEqual(expect.arrayContaining(['site-2', 'site-3']));
  });
});
