/**
 * Bad input inside a secure federation. Every site is a raw secure site (`SecureRawSite`): it holds
 * a real site certificate and takes part honestly through the agent's own `SecureSession` and
 * `DeltaEncoder` up to the one step where a test makes it misbehave. The coordinator runs in
 * process. Each misbehaviour is refused with a clear error; the round then completes with a
 * committed update that is the plain weighted mean of its participants' known deltas (checked
 * against the stored models, FedAvg with lr 1), or the attempt aborts cleanly and the next one
 * commits — never a wrong sum.
 */
import * as grpc from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { expectLogs } from '../helpers/logger.js';
import { secureSessionId, signAdvertisement } from '../../aggregation/index.js';
import type { RoundInfo__Output, UnmaskResponse } from '../../proto/index.js';
import { waitFor } from '../helpers/federation.js';
import { journalBodies, journalPath } from '../helpers/faults.js';
import { expectCommittedMean, honestSite, rawSecureFederation, type RawSecureFederation } from '../helpers/secure-federation.js';
import { siteCertFiles } from '../helpers/raw-site.js';
import { participate, refused, type AttemptOutcome, type Behaviour } from '../helpers/secure-raw-site.js';

const SAMPLES = new Map([
  ['site-1', 1000],
  ['site-2', 700],
  ['site-3', 400],
  ['site-4', 900],
]);

let f: RawSecureFederation | undefined;
afterEach(async () => {
  await f?.close();
  f = undefined;
});

/** Deltas each site uploaded, by site, as its `delta` function produced them. */
type Uploaded = Map<string, Float32Array>;

function honest(site: string, round: number, uploaded: Uploaded, extra: Partial<Behaviour> = {}): Behaviour {
  return honestSite(site, round, SAMPLES.get(site)!, uploaded, extra);
}

/** Rounds of the run as the admin API reports them, once `round` has committed. */
async function committed(round: number): Promise<RoundInfo__Output[]> {
  return waitFor(
    `round ${round} to commit`,
    async () => {
      const r = await f!.admin.rounds();
      const status = await f!.admin.status();
      if (status.runState === 'failed') throw new Error('the run failed');
      return r.rounds.some((x) => x.outcome === 'committed' && Number(x.round) === round) ? r.rounds : undefined;
    },
    90_000,
    100,
  );
}

/** Runs round 1 with site-4 behaving as `bad` and the others honestly; returns outcomes and the round records. */
async function playRound(bad: (uploaded: Uploaded) => Behaviour | ((attempt: number) => Behaviour), others: Partial<Behaviour> = {}) {
  const uploaded: Uploaded = new Map();
  const done = committed(1);
  const outcomes = new Map<string, Promise<AttemptOutcome[]>>();
  for (const [id, site] of f!.sites) {
    outcomes.set(id, participate(site, 1, id === 'site-4' ? bad(uploaded) : honest(id, 1, uploaded, others), done));
  }
  const rounds = await done;
  const settled = new Map<string, AttemptOutcome[]>();
  for (const [id, p] of outcomes) settled.set(id, await p);
  const info = rounds.find((x) => x.outcome === 'committed' && Number(x.round) === 1)!;
  return { uploaded, info, rounds, outcomes: settled };
}

describe('a secure federation of raw sites', () => {
  it('commits the plain weighted mean of four honest sites (the baseline the other cases are measured against)', async () => {
    f = await rawSecureFederation(4);
    const { uploaded, info, outcomes } = await playRound((u) => honest('site-4', 1, u));
    expect([...info.participants].sort()).toEqual(['site-1', 'site-2', 'site-3', 'site-4']);
    expect(info.dropped).toEqual([]);
    for (const o of outcomes.values()) expect(o).toEqual([{ attempt: 0, outcome: 'revealed', refusals: [] }]);
    await expectCommittedMean(f.fed, info, uploaded, SAMPLES);
  });
});

function flipLastByte(b: Uint8Array | Buffer | string | undefined): Buffer {
  const out = Buffer.from(b as Uint8Array);
  out[out.length - 1] = out[out.length - 1]! ^ 0xff;
  return out;
}

/** Coordinator bus events of one kind, recorded from now on. */
function record<K extends 'site.dropped' | 'round.aborted' | 'round.committed'>(kind: K): Record<string, unknown>[] {
  const seen: Record<string, unknown>[] = [];
  f!.coordinator.bus.subscribe((e) => {
    if (e.kind === kind) seen.push(e.body as unknown as Record<string, unknown>);
  });
  return seen;
}

/** Journal bodies: the attempts of round 1 that were aborted and committed. */
async function journalAttempts(): Promise<{ aborted: Record<string, unknown>[]; committed: Record<string, unknown>[] }> {
  const path = journalPath(f!.fed);
  return { aborted: await journalBodies(path, 'round-aborted'), committed: await journalBodies(path, 'round-committed') };
}

describe('forged and replayed key advertisements (guarantee 6, end to end)', () => {
  // What happens today: the coordinator checks the advertisement's site, roster and key sizes but
  // not its signature, so it relays the forgery; every honest site refuses it in its own
  // SecureSession.shares (SIGNATURE_INVALID), reports the failure and is dropped; the attempt
  // aborts ("only 2 of 3 required sites in shares"), and the next attempt starts at keys with fresh
  // keys. A site that forged once can do so at every attempt (denial of service until maxAttempts).
  it('honest sites refuse a forged, then a replayed advertisement and report it; aborted attempts commit nothing and the round commits the right mean once site-4 is honest', async () => {
    // A short keys deadline: once the coordinator refuses forged keys itself, the forger is
    // simply late for `keys` and the attempt goes on without it.
    f = await rawSecureFederation(4, { maxAttempts: 5, deadlines: { openS: 30, trainingS: 60, uploadS: 60, aggregateS: 30, commitS: 30, evalS: 15, keysS: 4, sharesS: 20, unmaskS: 20 } });
    const dropped = record('site.dropped');
    const firstAd: { m?: Parameters<NonNullable<Behaviour['advertise']>>[0] } = {};
    const { info, rounds, outcomes, uploaded } = await playRound((u) => (attempt) => {
      const b = honest('site-4', 1, u);
      // Attempt 0: a bad signature. Attempt 1: attempt 0's validly signed keys, replayed. Then honest.
      if (attempt === 0) return { ...b, advertise: (m) => ((firstAd.m = m), { ...m, signature: flipLastByte(m.signature) }) };
      if (attempt === 1) return { ...b, advertise: (m) => ({ ...firstAd.m!, attempt: m.attempt }) };
      return b;
    });
    // The round committed, with everybody, at the first attempt where site-4 was honest (or earlier
    // once the coordinator refuses forged keys itself), and its update is the right mean.
    expect(info.attempt).toBeLessThanOrEqual(2);
    expect([...info.participants].sort()).toEqual(['site-1', 'site-2', 'site-3', 'site-4'].filter((s) => info.attempt === 2 || s !== 'site-4'));
    await expectCommittedMean(f.fed, info, uploaded, SAMPLES);
    // No honest site ever sent shares or a masked input to anyone in an attempt with a forged key.
    for (const id of ['site-1', 'site-2', 'site-3']) {
      for (const o of outcomes.get(id)!.filter((x) => x.attempt < 2 && x.attempt !== info.attempt)) {
        expect(o.outcome, `${id} attempt ${o.attempt}`).toBe('refused');
        expect(o.reason).toMatch(/^shares: advertisement of site-4 refused: SIGNATURE_INVALID/);
      }
    }
    // Every attempt before the commit aborted cleanly, with its reason in the journal and the admin API.
    const aborted = rounds.filter((r) => r.outcome === 'aborted');
    expect(aborted.map((r) => r.attempt)).toEqual(Array.from({ length: info.attempt }, (_, i) => i));
    for (const r of aborted) expect(r.reason).toMatch(/only \d of 3 required sites in shares/);
    const journal = await journalAttempts();
    expect(journal.committed.map((c) => [c['round'], c['attempt']])).toEqual([[1, info.attempt]]);
    expect(journal.aborted.map((c) => c['attempt'])).toEqual(aborted.map((r) => r.attempt));
    // Why the honest sites left is on record: each report names the refused advertisement.
    if (info.attempt > 0) {
      const reasons = dropped.filter((d) => d['attempt'] === 0).map((d) => String(d['reason']));
      expect(reasons.some((r) => /REFUSED: advertisement of site-4 refused: SIGNATURE_INVALID/.test(r))).toBe(true);
    }
  });

  // The smallest fix (see docs/secure-aggregation.md, "Known gaps"): verify the signature at the
  // coordinator too (it holds the federation CA), so a forger misses `keys` and nobody else is hurt.
  it('refuses at AdvertiseKeys an advertisement whose signature does not verify, or whose keys were signed for another attempt', async () => {
    f = await rawSecureFederation(4);
    const site4 = f.sites.get('site-4')!;
    const k = await site4.next('keys', (t) => Number(t.round) === 1);
    const honestAd = site4.keys(k);
    const forged = refused(await site4.advertise({ ...honestAd, signature: flipLastByte(honestAd.signature) }));
    expect(forged.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(forged.details).toMatch(/SIGNATURE_INVALID/);
    // Validly signed by site-4 — for the session of another attempt — and sent as this attempt's.
    const other = signAdvertisement(
      { run: secureSessionId(k.runId, k.attempt + 1), round: Number(k.round), site: 'site-4', cPk: honestAd.cPublicKey as Uint8Array, sPk: honestAd.sPublicKey as Uint8Array },
      readFileSync(siteCertFiles(f.fed, 'site-4').key, 'utf8'),
    );
    const replay = refused(await site4.advertise({ ...honestAd, signature: other.signature }));
    expect(replay.details).toMatch(/SIGNATURE_INVALID|RUN_MISMATCH/);
  });
});

describe('share lists (bad input at SubmitShares and at the receiving site)', () => {
  it('refuses shares addressed to the sender or to a stranger; the corrected list is accepted and the round commits with everyone', async () => {
    f = await rawSecureFederation(4);
    const refusals: { fedhpcCode: string | undefined; details: string }[] = [];
    const { info, uploaded } = await playRound((u) => ({
      ...honest('site-4', 1, u),
      async submitShares(m, ctx) {
        refusals.push(refused(await ctx.site.submitShares({ ...m, shares: m.shares!.map((s, i) => (i === 0 ? { ...s, toSite: 'site-4' } : s)) })));
        refusals.push(refused(await ctx.site.submitShares({ ...m, shares: m.shares!.map((s, i) => (i === 0 ? { ...s, toSite: 'site-9' } : s)) })));
        refusals.push(refused(await ctx.site.submitShares({ ...m, shares: [...m.shares!, m.shares![0]!] })));
        return m;
      },
    }));
    expect(refusals.map((r) => r.fedhpcCode)).toEqual(['BAD_REQUEST', 'BAD_REQUEST', 'BAD_REQUEST']);
    expect(refusals[0]!.details).toMatch(/a share addressed to site-4, which is not a peer in this attempt/);
    expect(refusals[1]!.details).toMatch(/a share addressed to site-9, which is not a peer in this attempt/);
    expect(refusals[2]!.details).toMatch(/two shares addressed to site-\d/);
    expect([...info.participants].sort()).toEqual(['site-1', 'site-2', 'site-3', 'site-4']);
    await expectCommittedMean(f.fed, info, uploaded, SAMPLES);
  });

  it('accepts a re-ordered share list (shares are matched by sender and receiver) and commits with everyone', async () => {
    f = await rawSecureFederation(4);
    const { info, uploaded, outcomes } = await playRound((u) => ({ ...honest('site-4', 1, u), submitShares: (m) => ({ ...m, shares: [...m.shares!].reverse() }) }));
    expect([...info.participants].sort()).toEqual(['site-1', 'site-2', 'site-3', 'site-4']);
    for (const o of outcomes.values()) expect(o.map((x) => x.outcome)).toEqual(['revealed']);
    await expectCommittedMean(f.fed, info, uploaded, SAMPLES);
  });

  // The coordinator cannot read a sealed share, so a share sealed for site-3 but addressed to
  // site-2 reaches site-2, which refuses it (AES-GCM binds from and to), reports and is dropped:
  // the cost of a malicious peer is one honest site's contribution, never a wrong sum.
  it("a share sealed for another site is refused by its receiver (SHARE_AUTH_FAILED), which drops out; the round commits the survivors' mean", async () => {
    expectLogs(/^site dropped from round$/);
    f = await rawSecureFederation(4);
    const { info, uploaded, outcomes } = await playRound((u) => ({
      ...honest('site-4', 1, u),
      submitShares(m) {
        const for3 = m.shares!.find((s) => s.toSite === 'site-3')!;
        return { ...m, shares: m.shares!.map((s) => (s.toSite === 'site-2' ? { ...s, nonce: for3.nonce, ciphertext: for3.ciphertext } : s)) };
      },
    }));
    expect(outcomes.get('site-2')).toEqual([{ attempt: 0, outcome: 'refused', reason: 'training: share from site-4 refused: SHARE_AUTH_FAILED', refusals: [] }]);
    expect([...info.participants].sort()).toEqual(['site-1', 'site-3', 'site-4']);
    expect(info.dropped).toEqual(['site-2']);
    await expectCommittedMean(f.fed, info, uploaded, SAMPLES);
  });

  // Today the coordinator accepts a list that leaves out a neighbour; the left-out honest site then
  // refuses its training task ("shares missing from site-4") and is dropped while the offender
  // stays. The sum is still right. Fix: SecureRound.submitShares requires one share per neighbour
  // that advertised keys (test/unit/secure/round.test.ts has the unit-level check).
  it('a truncated share list is refused at SubmitShares and no honest site is dropped for it', async () => {
    f = await rawSecureFederation(4);
    const refusals: string[] = [];
    const { info, uploaded } = await playRound((u) => ({
      ...honest('site-4', 1, u),
      async submitShares(m, ctx) {
        const r = await ctx.site.submitShares({ ...m, shares: m.shares!.filter((s) => s.toSite !== 'site-2') });
        if (!r.ok) refusals.push(r.error.details);
        return r.ok ? 'sent' : m;
      },
    }));
    // Whatever happens, the committed update is the mean of the sites that took part.
    await expectCommittedMean(f.fed, info, uploaded, SAMPLES);
    expect(info.participants).toContain('site-2');
    expect(refusals).toHaveLength(1);
    expect(refusals[0]).toMatch(/BAD_REQUEST: .*site-2/);
  });
});

describe('masked uploads and unmask responses out of turn', () => {
  it('refuses masked chunks sent once the upload phase is over (ROUND_CLOSED) and the round commits with everyone', async () => {
    expectLogs((l) => l.msg === 'upload refused' && (l['err'] as { code?: string } | undefined)?.code === 'ROUND_CLOSED');
    f = await rawSecureFederation(4);
    const late: { fedhpcCode: string | undefined; details: string }[] = [];
    let sent: import('../../proto/index.js').UploadMessage[] = [];
    const { info, uploaded } = await playRound((u) => ({
      ...honest('site-4', 1, u),
      upload: (m) => (sent = m),
      // The consistency request means `unmask` has begun: send the whole masked upload again.
      beforeSign: async ({ site }) => void late.push(refused(await site.upload(sent))),
    }));
    expect(late).toHaveLength(1);
    expect(late[0]!.fedhpcCode).toBe('ROUND_CLOSED');
    expect(late[0]!.details).toMatch(/no round is accepting uploads \(phase: unmask\)/);
    expect([...info.participants].sort()).toEqual(['site-1', 'site-2', 'site-3', 'site-4']);
    await expectCommittedMean(f.fed, info, uploaded, SAMPLES);
  });

  it("refuses a masked vector of the wrong length (UPLOAD_INVALID) and drops its sender; its pairwise masks are removed and the others' mean is committed", async () => {
    expectLogs(/^site dropped from round$/, /^upload refused$/);
    f = await rawSecureFederation(4);
    const answers: { fedhpcCode: string | undefined; details: string }[] = [];
    const { info, uploaded, outcomes } = await playRound((u) => ({
      ...honest('site-4', 1, u),
      async upload(_m, { site, train, masked }) {
        // One word short: the masked weight word is missing.
        const short = masked.subarray(0, masked.length - 4);
        answers.push(refused(await site.upload(site.uploadMessages(train, short, SAMPLES.get('site-4')!))));
        return 'silent' as const;
      },
    }));
    expect(answers[0]!.fedhpcCode).toBe('UPLOAD_INVALID');
    expect(answers[0]!.details).toMatch(/totalBytes is \d+, the declared tensors need \d+/);
    expect(outcomes.get('site-4')!.map((o) => o.outcome)).toEqual(['silent']);
    expect([...info.participants].sort()).toEqual(['site-1', 'site-2', 'site-3']);
    expect(info.dropped).toEqual(['site-4']);
    uploaded.delete('site-4');
    await expectCommittedMean(f.fed, info, uploaded, SAMPLES);
  });

  it('refuses a second unmask response from the same site (BAD_REQUEST) and keeps the first; the round commits with everyone', async () => {
    f = await rawSecureFederation(4);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const answers: boolean[] = [];
    const second: { fedhpcCode: string | undefined; details: string }[] = [];
    const { info, uploaded } = await playRound(
      (u) => ({
        ...honest('site-4', 1, u),
        async reveal(m, { site }) {
          answers.push((await site.revealShares(m)).ok);
          second.push(refused(await site.revealShares(m)));
          release();
          return 'sent' as const;
        },
      }),
      // The others reveal only after site-4 answered twice, so the reveal step is still open.
      { reveal: async (m) => (await gate, m) },
    );
    expect(answers).toEqual([true]);
    expect(second[0]!.fedhpcCode).toBe('BAD_REQUEST');
    expect(second[0]!.details).toMatch(/site-4 already answered the unmask request/);
    expect([...info.participants].sort()).toEqual(['site-1', 'site-2', 'site-3', 'site-4']);
    await expectCommittedMean(f.fed, info, uploaded, SAMPLES);
  });

  it('a forged revealed share makes the rebuild fail: the attempt aborts at aggregate with the reason, nothing is committed for it, the next attempt commits the right mean', async () => {
    expectLogs(/^aggregation failed$/, /^round attempt aborted$/);
    f = await rawSecureFederation(4);
    const { info, rounds, uploaded } = await playRound((u) => (attempt) => ({
      ...honest('site-4', 1, u),
      ...(attempt === 0 ? { reveal: (m: UnmaskResponse) => ({ ...m, shares: m.shares!.map((s) => (s.owner === 'site-1' ? { ...s, y: flipLastByte(s.y) } : s)) }) } : {}),
    }));
    const aborted = rounds.filter((r) => r.outcome === 'aborted');
    expect(aborted.map((r) => r.attempt)).toEqual([0]);
    expect(aborted[0]!.reason).toMatch(/aggregation failed: INTERNAL: the revealed shares of site-1's self seed are inconsistent/);
    expect(info.attempt).toBe(1);
    expect([...info.participants].sort()).toEqual(['site-1', 'site-2', 'site-3', 'site-4']);
    const journal = await journalAttempts();
    expect(journal.committed.map((c) => [c['round'], c['attempt']])).toEqual([[1, 1]]);
    await expectCommittedMean(f.fed, info, uploaded, SAMPLES);
  });
});
