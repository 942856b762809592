/**
 * A site's own checks in a secure attempt (`SecureSession`, Bonawitz et al. 2017 with the
 * consistency round for an active server): what it refuses to sign, to reveal, to verify and to
 * open, each with the agent's typed error (`SiteAgentError`, code REFUSED) and a message naming
 * the reason; and that an unmask request is answered at most once.
 */
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { CoordinatorError } from '../../../coordinator/core/errors.js';
import { unmaskingSecrets } from '../../../coordinator/secure/unmask.js';
import { combine, secureSessionId } from '../../../aggregation/index.js';
import { SiteAgentError } from '../../../site-agent/errors.js';
import { SecureSession, type PeerAdvertisement, type WireShare } from '../../../site-agent/secure/session.js';
import { InProcessSecAgg, makeIdentities, recordingRandom, type Identities } from '../../helpers/secure-protocol.js';

const SITES = ['site-a', 'site-b', 'site-c', 'site-d', 'site-e'];
const T = 3;
let ids: Identities;
let foreign: Identities;
beforeAll(async () => {
  ids = await makeIdentities(SITES);
  // Same site names, another CA: certificates that do not chain to the federation.
  foreign = await makeIdentities(SITES, 'otherfed');
});

/** `f`'s SiteAgentError (the test fails when it throws anything else or nothing). */
function refusalOf(f: () => unknown): SiteAgentError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(SiteAgentError);
    expect((err as SiteAgentError).code).toBe('REFUSED');
    expect((err as SiteAgentError).retryable).toBe(false);
    return err as SiteAgentError;
  }
  throw new Error('expected a refusal, the call succeeded');
}

/** An attempt taken through keys, shares and share delivery (every site in U2). */
function throughShares(seed: string, attempt = 0): InProcessSecAgg {
  const p = new InProcessSecAgg(ids, { threshold: T, seed, attempt });
  p.keys();
  p.shares();
  p.deliverShares();
  return p;
}

describe('the consistency check and the one-time reveal', () => {
  it('refuses to sign or reveal for a list that names a site as both surviving and dropped', () => {
    const p = throughShares('both');
    const a = p.sessions.get('site-a')!;
    expect(refusalOf(() => a.signSurvivors(['site-a', 'site-b', 'site-c', 'site-d'], ['site-d'])).message).toMatch(/site-d listed as both surviving and dropped/);
    // A list it did sign, then an unmask request that adds the conflict: refused as well.
    p.consistency(['site-a', 'site-b', 'site-c', 'site-d'], ['site-e']);
    const e = refusalOf(() => a.reveal(['site-a', 'site-b', 'site-c', 'site-d', 'site-e'], ['site-e'], p.relayedSignatures()));
    expect(e.message).toMatch(/site-e listed as both surviving and dropped/);
  });

  it('refuses to sign or reveal for fewer than t survivors', () => {
    const p = throughShares('few');
    const a = p.sessions.get('site-a')!;
    expect(refusalOf(() => a.signSurvivors(['site-a', 'site-b'], ['site-c', 'site-d', 'site-e'])).message).toMatch(/2 survivors, fewer than the threshold 3/);
    p.consistency(SITES, []);
    expect(refusalOf(() => a.reveal(['site-a', 'site-b'], ['site-c', 'site-d', 'site-e'], p.relayedSignatures())).message).toMatch(/fewer than the threshold 3/);
  });

  it('refuses an unmask request whose list differs from the one this site signed', () => {
    const p = throughShares('differs');
    p.consistency(['site-a', 'site-b', 'site-c', 'site-d'], ['site-e']);
    const a = p.sessions.get('site-a')!;
    // Same sites, another split between surviving and dropped: the self seed of site-d would be
    // asked of some sites and its mask key of others.
    const e = refusalOf(() => a.reveal(['site-a', 'site-b', 'site-c', 'site-e'], ['site-d'], p.relayedSignatures()));
    expect(e.message).toMatch(/other survivors than the list this site signed/);
  });

  it('refuses when the other survivors signed another list than this site (inconsistent rosters)', () => {
    const p = throughShares('inconsistent');
    p.stage = 'consistency';
    // The coordinator shows site-a one list and everybody else another.
    const listA = { survivors: ['site-a', 'site-b', 'site-c', 'site-d'], dropped: ['site-e'] };
    const listB = { survivors: ['site-a', 'site-b', 'site-c', 'site-e'], dropped: ['site-d'] };
    const signatures = [{ site: 'site-a', signature: p.sessions.get('site-a')!.signSurvivors(listA.survivors, listA.dropped) }];
    for (const s of ['site-b', 'site-c', 'site-e']) signatures.push({ site: s, signature: p.sessions.get(s)!.signSurvivors(listB.survivors, listB.dropped) });
    const e = refusalOf(() => p.sessions.get('site-a')!.reveal(listA.survivors, listA.dropped, signatures));
    expect(e.message).toMatch(/only 1 valid survivor signatures, 3 required/);
    // Signatures that do not verify (bytes of another site's, or garbage) do not count either.
    const forged = [signatures[0]!, { site: 'site-b', signature: signatures[1]!.signature }, { site: 'site-c', signature: new Uint8Array(70).fill(1) }];
    expect(refusalOf(() => p.sessions.get('site-a')!.reveal(listA.survivors, listA.dropped, forged)).message).toMatch(/only 1 valid survivor signatures/);
  });

  it('answers at most one unmask request per attempt, even a repeat of the same request', () => {
    const p = throughShares('once');
    p.consistency(SITES, []);
    const a = p.sessions.get('site-a')!;
    const first = a.reveal(SITES, [], p.relayedSignatures());
    // It reveals the self-seed share of each survivor it holds a share of (its neighbours and itself), nothing else.
    expect(first.map((s) => s.owner).sort()).toEqual(SITES);
    expect(first.every((s) => s.kind === 'self_seed')).toBe(true);
    expect(refusalOf(() => a.reveal(SITES, [], p.relayedSignatures())).message).toMatch(/already answered an unmask request for this attempt/);
    expect(refusalOf(() => a.reveal(['site-a', 'site-b', 'site-c', 'site-d'], ['site-e'], p.relayedSignatures())).message).toMatch(/already answered/);
  });

  it('a refused request does not use up the one answer: the consistent request that follows is answered', () => {
    const p = throughShares('refused-first');
    p.consistency(SITES, []);
    const a = p.sessions.get('site-a')!;
    refusalOf(() => a.reveal(SITES.slice(0, 4), ['site-e'], p.relayedSignatures()));
    expect(a.reveal(SITES, [], p.relayedSignatures())).toHaveLength(5);
  });

  it('never reveals both secrets of one site: a survivor’s mask key and a dropped site’s self seed stay hidden', () => {
    const p = throughShares('kinds');
    p.consistency(['site-a', 'site-b', 'site-c', 'site-d'], ['site-e']);
    const shares = p.sessions.get('site-b')!.reveal(p.coordinator.survivors, p.coordinator.dropped, p.relayedSignatures());
    expect(shares.filter((s) => s.owner === 'site-e').map((s) => s.kind)).toEqual(['mask_key']);
    for (const s of shares.filter((x) => x.owner !== 'site-e')) expect(s.kind).toBe('self_seed');
  });
});

describe('forged and replayed key advertisements are refused before anything is shared', () => {
  /** A fresh session of `site` for (round, attempt) and the advertisements relayed to it. */
  function sessionAndAdverts(p: InProcessSecAgg): { session: SecureSession; adverts: PeerAdvertisement[] } {
    p.keys();
    return { session: p.sessions.get('site-a')!, adverts: p.relayedAdvertisements() };
  }

  it('refuses an advertisement whose signature does not verify (SIGNATURE_INVALID)', () => {
    const { session, adverts } = sessionAndAdverts(new InProcessSecAgg(ids, { threshold: T, seed: 'forged' }));
    const b = adverts.find((a) => a.site === 'site-b')!;
    const sig = Buffer.from(b.signature);
    sig[sig.length - 1] = sig[sig.length - 1]! ^ 1;
    const forged = adverts.map((a) => (a.site === 'site-b' ? { ...a, signature: sig } : a));
    expect(refusalOf(() => session.shares(forged)).message).toMatch(/advertisement of site-b refused: SIGNATURE_INVALID/);
  });

  it('refuses keys swapped in by the relay (the signature covers both public keys)', () => {
    const { session, adverts } = sessionAndAdverts(new InProcessSecAgg(ids, { threshold: T, seed: 'swapped' }));
    const c = adverts.find((a) => a.site === 'site-c')!;
    const swapped = adverts.map((a) => (a.site === 'site-b' ? { ...a, sPk: c.sPk } : a));
    expect(refusalOf(() => session.shares(swapped)).message).toMatch(/site-b refused: SIGNATURE_INVALID/);
  });

  // The site checks the signature over *its own* session id and round (the relayed run, round and
  // attempt fields are not trusted), so a replay surfaces as SIGNATURE_INVALID.
  it("refuses the previous attempt's keys of a peer (the signed session id carries the attempt)", () => {
    const old = new InProcessSecAgg(ids, { threshold: T, seed: 'replay-0', attempt: 0 });
    old.keys();
    const replayed = old.relayedAdvertisements().find((a) => a.site === 'site-b')!;
    const { session, adverts } = sessionAndAdverts(new InProcessSecAgg(ids, { threshold: T, seed: 'replay-1', attempt: 1 }));
    expect(session.session).toBe(secureSessionId('run-in-process', 1));
    const e = refusalOf(() => session.shares(adverts.map((a) => (a.site === 'site-b' ? replayed : a))));
    expect(e.message).toMatch(/advertisement of site-b refused: SIGNATURE_INVALID/);
  });

  it("refuses the previous round's keys of a peer (the signature covers the round)", () => {
    const old = new InProcessSecAgg(ids, { threshold: T, seed: 'round-4', round: 4 });
    old.keys();
    const replayed = old.relayedAdvertisements().find((a) => a.site === 'site-d')!;
    const { session, adverts } = sessionAndAdverts(new InProcessSecAgg(ids, { threshold: T, seed: 'round-5', round: 5 }));
    expect(refusalOf(() => session.shares(adverts.map((a) => (a.site === 'site-d' ? replayed : a)))).message).toMatch(/site-d refused: SIGNATURE_INVALID/);
  });

  it("refuses one site's keys presented under another site's name or certificate", () => {
    const { session, adverts } = sessionAndAdverts(new InProcessSecAgg(ids, { threshold: T, seed: 'borrowed' }));
    const b = adverts.find((a) => a.site === 'site-b')!;
    const asC = adverts.map((a) => (a.site === 'site-c' ? { ...b, site: 'site-c' } : a));
    expect(refusalOf(() => session.shares(asC)).message).toMatch(/site-c refused: SITE_MISMATCH/);
    const otherCa = adverts.map((a) => (a.site === 'site-b' ? { ...a, certificatePem: foreign.sites.get('site-b')!.certPem } : a));
    expect(refusalOf(() => session.shares(otherCa)).message).toMatch(/site-b refused: CERTIFICATE_UNTRUSTED/);
  });
});

describe('shares a site refuses to open', () => {
  /** Keys and shares done; returns what site-c would receive, untouched. */
  function inboxOfC(seed: string): { p: InProcessSecAgg; inbox: WireShare[]; c: SecureSession } {
    const p = new InProcessSecAgg(ids, { threshold: T, seed });
    p.keys();
    p.shares();
    p.stage = 'closed';
    p.coordinator.holders = [...SITES];
    const inbox = p.coordinator.sharesFor('site-c').map((s) => ({ from: s.from, to: s.to, nonce: s.nonce, ciphertext: s.ciphertext }));
    return { p, inbox, c: p.sessions.get('site-c')! };
  }

  it('refuses a share addressed to another site', () => {
    const { p, inbox, c } = inboxOfC('wrong-site');
    const forD = p.coordinator.sharesFor('site-d')[0]!;
    const e = refusalOf(() => c.receiveShares([...inbox.slice(1), { from: forD.from, to: forD.to, nonce: forD.nonce, ciphertext: forD.ciphertext }], SITES));
    expect(e.message).toMatch(/a share addressed to site-d was delivered to site-c/);
  });

  it("refuses another site's share relabelled as addressed to it (AES-GCM binds from and to: SHARE_AUTH_FAILED)", () => {
    const { p, inbox, c } = inboxOfC('relabelled');
    const fromAToD = p.coordinator.sharesFor('site-d').find((s) => s.from === 'site-a')!;
    const relabelled = inbox.map((s) => (s.from === 'site-a' ? { ...s, nonce: fromAToD.nonce, ciphertext: fromAToD.ciphertext } : s));
    expect(refusalOf(() => c.receiveShares(relabelled, SITES)).message).toMatch(/share from site-a refused: SHARE_AUTH_FAILED/);
  });

  it('refuses a truncated share list, naming the missing sender', () => {
    const { inbox, c } = inboxOfC('truncated');
    expect(refusalOf(() => c.receiveShares(inbox.filter((s) => s.from !== 'site-e'), SITES)).message).toMatch(/shares missing from site-e/);
  });

  it('refuses a share truncated in its bytes, a repeated share and a share from a site outside U2', () => {
    const { inbox, c } = inboxOfC('bytes');
    const cut = inbox.map((s, i) => (i === 0 ? { ...s, ciphertext: s.ciphertext.subarray(0, s.ciphertext.length - 1) } : s));
    expect(refusalOf(() => c.receiveShares(cut, SITES)).message).toMatch(/SHARE_AUTH_FAILED/);
    const { inbox: inbox2, c: c2 } = inboxOfC('twice');
    expect(refusalOf(() => c2.receiveShares([...inbox2, inbox2[0]!], SITES)).message).toMatch(/two shares from/);
    const { inbox: inbox3, c: c3 } = inboxOfC('outside');
    expect(refusalOf(() => c3.receiveShares(inbox3, SITES.filter((s) => s !== 'site-b'))).message).toMatch(/share from site-b, which is not a neighbour that completed the exchange/);
  });

  it('accepts the same shares in another order and masks exactly as before (shares are matched by sender, not position)', async () => {
    const a = inboxOfC('order');
    const b = inboxOfC('order');
    a.c.receiveShares(a.inbox, SITES);
    b.c.receiveShares([...b.inbox].reverse(), SITES);
    // Masks are derived only from keys and the list U2; compare what both sessions add.
    const ma = a.c.masks();
    const mb = b.c.masks();
    expect(Buffer.from(mb.selfSeed).equals(Buffer.from(ma.selfSeed))).toBe(true);
    expect(mb.pairwise.map((m) => [m.peer, m.sign, Buffer.from(m.seed).toString('hex')])).toEqual(ma.pairwise.map((m) => [m.peer, m.sign, Buffer.from(m.seed).toString('hex')]));
    await a.p.cleanup();
    await b.p.cleanup();
  });
});

describe('with fewer than t revealed shares the masking secrets cannot be rebuilt', () => {
  it('unmaskingSecrets refuses t − 1 revealers with a clear error, and t − 1 shares interpolate to something else than the secret', () => {
    const all = ['site-a', 'site-b', 'site-c', 'site-d', 'site-e'];
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 5 }), fc.integer({ min: 0, max: 1_000_000 }), (t, seed) => {
        const p = new InProcessSecAgg(ids, { threshold: t, seed: `few-${t}-${seed}` });
        p.keys();
        p.shares();
        p.deliverShares();
        // Everyone survives and signs; only t − 1 of them answer the unmask request.
        p.consistency(all, []);
        p.reveal(all.slice(0, t - 1));
        let error: unknown;
        try {
          unmaskingSecrets(p.coordinator);
        } catch (err) {
          error = err;
        }
        expect(error).toBeInstanceOf(CoordinatorError);
        expect((error as CoordinatorError).message).toMatch(new RegExp(`only ${t - 1} of ${t} shares of site-a's self seed were revealed`));
        // The t − 1 shares themselves, interpolated as if they were enough, do not give the seed.
        const selfSeed = p.drawn.get('site-b')![2]!; // c key, s key, then the self seed
        const shares = [...p.coordinator.revealed.values()].flat().filter((r) => r.owner === 'site-b');
        expect(shares).toHaveLength(t - 1);
        let rebuilt: Uint8Array | undefined;
        try {
          rebuilt = combine(shares.map((s) => ({ x: s.x, y: s.y })), { threshold: t - 1 });
        } catch {
          rebuilt = undefined; // not even a 256-bit value: as good a refusal
        }
        if (rebuilt) expect(Buffer.from(rebuilt).equals(Buffer.from(selfSeed))).toBe(false);
      }),
      { numRuns: 12 },
    );
  });

  it('the recorded seed really is the self-mask seed: t shares rebuild it', () => {
    const p = new InProcessSecAgg(ids, { threshold: 3, seed: 'control' });
    p.keys();
    p.shares();
    p.deliverShares();
    p.consistency(SITES, []);
    p.reveal(SITES.slice(0, 3));
    const shares = [...p.coordinator.revealed.values()].flat().filter((r) => r.owner === 'site-b');
    const rebuilt = combine(shares.map((s) => ({ x: s.x, y: s.y })), { threshold: 3 });
    expect(Buffer.from(rebuilt).equals(Buffer.from(p.drawn.get('site-b')![2]!))).toBe(true);
    expect(unmaskingSecrets(p.coordinator).selfSeeds).toHaveLength(5);
  });
});

describe('SecAgg+ neighbourhoods', () => {
  it('reveals when t exceeds the neighbourhood size (t is clamped to it when shares are split)', async () => {
    const eight = await makeIdentities(['s1', 's2', 's3', 's4', 's5', 's6', 's7', 's8']);
    // 8 sites, degree 4: each neighbourhood (4 neighbours and the site) holds 5 shares; t = 6.
    const p = new InProcessSecAgg(eight, { threshold: 6, degree: 4, seed: 'clamped', maxSiteWeight: 1000 });
    p.keys();
    p.shares();
    p.deliverShares();
    const x = new Float32Array(64).fill(0.01);
    for (const s of p.sites) await p.upload(s, x, 1000);
    p.consistency(p.sites, []);
    try {
      p.reveal();
      const mean = await p.mean(64);
      for (const v of mean) expect(Math.abs(v - 0.01)).toBeLessThan(1e-5);
    } finally {
      await p.cleanup();
    }
  });
});

describe('session ids bind every key to run and attempt', () => {
  it('makes fresh keys for every attempt: no two attempts share a public key or a self seed', () => {
    const rec = recordingRandom('same-label');
    const params = { threshold: T, quantBits: 24, modulusBits: 32 as const, clip: 1, maxSiteWeight: 1, weighting: 'samples' as const, graphSeed: new Uint8Array(32), degree: 0, roster: SITES };
    const site = ids.sites.get('site-a')!;
    const make = (attempt: number): SecureSession =>
      new SecureSession({ site: 'site-a', runId: 'r', round: 1, attempt, params, certificateKey: site.keyPem, caPem: ids.caPem, now: () => new Date(), randomBytes: rec.random });
    const first = make(0).advertisement();
    const second = make(1).advertisement();
    expect(Buffer.from(first.sPk).equals(Buffer.from(second.sPk))).toBe(false);
    expect(Buffer.from(first.cPk).equals(Buffer.from(second.cPk))).toBe(false);
  });
});
