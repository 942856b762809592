/**
 * Issue 14, item 1, end to end: in a secure federation of raw sites (real site certificates over
 * mTLS, the agent's own `SecureSession` and `DeltaEncoder`), one site bypasses its encoder. Its
 * clear header says 900 samples while the words it masks say otherwise. The coordinator's checks
 * of the unmasked sum abort each such attempt with the check's code, journal its participants,
 * pause the run at the second failure of the round, and never commit a sum that failed them; the
 * round then commits the honest weighted mean.
 */
import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { expectLogs } from '../helpers/logger.js';
import { CLI, startCoordinatorInProcess, waitFor } from '../helpers/federation.js';
import { coordinatorStateDir, journalBodies, journalPath } from '../helpers/faults.js';
import { expectCommittedMean, honestSite, rawSecureFederation, type RawSecureFederation } from '../helpers/secure-federation.js';
import { participate, type AttemptOutcome, type Behaviour } from '../helpers/secure-raw-site.js';

const SAMPLES = new Map([
  ['site-1', 1000],
  ['site-2', 700],
  ['site-3', 400],
  ['site-4', 900],
]);
/** The zero level Z of q = 24: a weight word is Z + w·Z. */
const ZERO = 2 ** 23 - 1;

let f: RawSecureFederation | undefined;
afterEach(async () => {
  await f?.close();
  f = undefined;
});

function honest(site: string, uploaded: Map<string, Float32Array>, extra: Partial<Behaviour> = {}): Behaviour {
  return honestSite(site, 1, SAMPLES.get(site)!, uploaded, extra);
}

/** site-4's masked vector with `edit` applied to its 32-bit words (the weight word last). */
function tampered(edit: (words: Uint32Array) => void): NonNullable<Behaviour['upload']> {
  return (_messages, { site, train, masked }) => {
    // A fresh (unpooled) buffer: its words are 4-byte aligned.
    const bytes = Buffer.alloc(masked.length);
    masked.copy(bytes);
    edit(new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4));
    return site.uploadMessages(train, bytes, SAMPLES.get('site-4')!);
  };
}

describe('the checks of a secure sum', () => {
  it('abort an attempt whose weight word was lowered (WEIGHT_SUM_MISMATCH), then one with a word beyond the range (SUM_OUT_OF_RANGE) and pause the run; the honest attempt commits the right mean', async () => {
    expectLogs(/^aggregation failed$/, /^round attempt aborted$/, /^run paused by the coordinator$/);
    f = await rawSecureFederation(4, { rounds: 2 });
    const uploaded = new Map<string, Float32Array>();
    const bad = (attempt: number): Behaviour =>
      honest('site-4', uploaded, {
        ...(attempt === 0
          ? // w = 0.9 is Z + ⌊w·Z⌉ under the masks: take w·Z steps off, leaving a weight of ~1e-6.
            { upload: tampered((w) => void (w[w.length - 1] = w[w.length - 1]! - Math.round(0.9 * ZERO) + 8)) }
          : attempt === 1
            ? // 2^30 steps of c/Z: 128 in value, where no honest sum of four sites goes past ±4.
              { upload: tampered((w) => void (w[3] = w[3]! + 2 ** 30)) }
            : {}),
      });
    const done = waitFor(
      'round 1 to commit',
      async () => {
        const r = await f!.admin.rounds();
        return r.rounds.some((x) => x.outcome === 'committed' && Number(x.round) === 1) ? r.rounds : undefined;
      },
      90_000,
      100,
    );
    const outcomes = new Map<string, Promise<AttemptOutcome[]>>();
    for (const [id, site] of f.sites) outcomes.set(id, participate(site, 1, id === 'site-4' ? bad : honest(id, uploaded), done));
    const rounds = await done;
    for (const [id, o] of outcomes) expect((await o).map((a) => a.outcome), id).toEqual(['revealed', 'revealed', 'revealed']);

    // Each tampered attempt aborted with its check's code; nothing was committed for it.
    const aborted = rounds.filter((r) => r.outcome === 'aborted');
    expect(aborted.map((r) => r.attempt)).toEqual([0, 1]);
    expect(aborted[0]!.reason).toMatch(/^aggregation failed: WEIGHT_SUM_MISMATCH: the unmasked sum of weights is [\d.e-]+, the 4 declared weights add up to (3|2\.99\d*|3\.0\d*) \(tolerance [\d.e-]+\); the survivors were site-1, site-2, site-3, site-4 \(the sum cannot say which of them sent it\)$/);
    expect(aborted[1]!.reason).toMatch(/^aggregation failed: SUM_OUT_OF_RANGE: coordinate 3 of the unmasked sum is [\d.]+, beyond ±(3|2\.99\d*|3\.0\d*); the survivors were site-1, site-2, site-3, site-4/);
    const info = rounds.find((r) => r.outcome === 'committed')!;
    expect(info.attempt).toBe(2);
    expect([...info.participants].sort()).toEqual(['site-1', 'site-2', 'site-3', 'site-4']);
    await expectCommittedMean(f.fed, info, uploaded, SAMPLES);

    // An admin finds both attempts' participants and what each declared, and the run paused after round 1.
    const journal = journalPath(f.fed);
    const participants = [...SAMPLES].map(([site, weight]) => ({ site, weight }));
    expect((await journalBodies(journal, 'sum-check-failed')).map((b) => [b['attempt'], b['code'], b['participants']])).toEqual([
      [0, 'WEIGHT_SUM_MISMATCH', participants],
      [1, 'SUM_OUT_OF_RANGE', participants],
    ]);
    const [pause] = await journalBodies(journal, 'run-paused');
    expect(pause).toMatchObject({ runId: 'test-run', admin: 'coordinator' });
    expect(pause!['reason']).toMatch(/round 1 failed its checks in attempts 0 \(WEIGHT_SUM_MISMATCH: site-1, site-2, site-3, site-4\), 1 \(SUM_OUT_OF_RANGE: /);
    const status = await waitFor('the run to hold before round 2', async () => {
      const s = await f!.admin.status();
      return s.runState === 'paused' ? s : undefined;
    });
    expect(status.paused).toBe(true);
    expect((await f.admin.rounds()).rounds.filter((r) => Number(r.round) === 2)).toEqual([]);

    // The trail verifies, and a restarted coordinator shows the same rounds, still paused.
    const verify = spawnSync(process.execPath, [CLI, 'admin', 'audit', 'verify', '--state-dir', coordinatorStateDir(f.fed), '--json'], { encoding: 'utf8', timeout: 30_000 });
    expect(verify.status, verify.stderr).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ ok: true });
    const { fed, sites, admin } = f;
    const figures = async () =>
      (await admin.rounds()).rounds.map((r) => ({ round: r.round, attempt: r.attempt, outcome: r.outcome, reason: r.reason, participants: r.participants, model: r.modelSha256 }));
    const before = await figures();
    await f.coordinator.stop();
    f = undefined;
    const restarted = await startCoordinatorInProcess(fed);
    try {
      await admin.waitForReady(Date.now() + 15_000);
      expect(await figures()).toEqual(before);
      expect((await admin.status()).runState).toBe('paused');
    } finally {
      for (const s of sites.values()) s.close();
      await restarted.stop();
      await fed.cleanup();
    }
  }, 120_000);
});
