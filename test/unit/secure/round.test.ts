/**
 * The coordinator's checks on secure-stage messages (`SecureRound`): each malformed, misaddressed,
 * repeated or late message is refused with a `CoordinatorError` and a stable code before it can
 * count, and nothing refused changes what the attempt has collected.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { CoordinatorError, type CoordinatorErrorCode } from '../../../coordinator/core/errors.js';
import { keyAdvertisementFromWire, sharesSubmissionFromWire, survivorSignatureFromWire, unmaskResponseFromWire } from '../../../coordinator/service/wire.js';
import type { KeyAdvertisement__Output, SharesSubmission__Output, SurvivorSignature__Output, UnmaskResponse__Output } from '../../../proto/index.js';
import { InProcessSecAgg, advertisementMessage, makeIdentities, revealMessage, sharesMessage, type Identities } from '../../helpers/secure-protocol.js';

const SITES = ['site-a', 'site-b', 'site-c', 'site-d'];
let ids: Identities;
beforeAll(async () => {
  ids = await makeIdentities(SITES);
});

/** The attempt's coordinator side, fed wire messages through the service edge as the RPCs feed it. */
interface WireSide {
  advertise(site: string, m: KeyAdvertisement__Output): void;
  submitShares(site: string, m: SharesSubmission__Output): void;
  signSurvivors(site: string, m: SurvivorSignature__Output): void;
  revealShares(site: string, m: UnmaskResponse__Output): void;
}
function viaWire(p: InProcessSecAgg): WireSide {
  return {
    advertise: (site: string, m: KeyAdvertisement__Output) => p.coordinator.advertise(site, keyAdvertisementFromWire(m)),
    submitShares: (site: string, m: SharesSubmission__Output) => p.coordinator.submitShares(site, sharesSubmissionFromWire(m)),
    signSurvivors: (site: string, m: SurvivorSignature__Output) => p.coordinator.signSurvivors(site, survivorSignatureFromWire(m)),
    revealShares: (site: string, m: UnmaskResponse__Output) => p.coordinator.revealShares(site, unmaskResponseFromWire(m)),
  };
}

function refusal(f: () => unknown, code: CoordinatorErrorCode): CoordinatorError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(CoordinatorError);
    expect((err as CoordinatorError).code).toBe(code);
    return err as CoordinatorError;
  }
  throw new Error(`expected ${code}, the call succeeded`);
}

describe('keys: advertisements the coordinator refuses to relay', () => {
  it('refuses an advertisement naming another site, a site outside the roster, a repeat and short keys', () => {
    const p = new InProcessSecAgg(ids, { threshold: 3, seed: 'adv' });
    const a = advertisementMessage(p, 'site-a');
    expect(refusal(() => viaWire(p).advertise('site-b', a), 'SITE_MISMATCH').message).toMatch(/certificate is for site site-b, the advertisement names site-a/);
    const bWithCertOfA = { ...advertisementMessage(p, 'site-b'), certificatePem: a.certificatePem };
    expect(refusal(() => viaWire(p).advertise('site-b', bWithCertOfA), 'SITE_MISMATCH').message).toMatch(/not site-b's/);
    expect(refusal(() => viaWire(p).advertise('site-z', { ...a, siteId: 'site-z' }), 'NOT_INVITED').message).toMatch(/site-z is not in this attempt's roster/);
    expect(refusal(() => viaWire(p).advertise('site-a', { ...a, sPublicKey: a.sPublicKey.subarray(0, 31) }), 'BAD_REQUEST').message).toMatch(/32 bytes/);
    expect(refusal(() => viaWire(p).advertise('site-a', { ...a, certificatePem: 'not a certificate' }), 'BAD_REQUEST').message).toMatch(/no valid certificate/);
    viaWire(p).advertise('site-a', a);
    expect(refusal(() => viaWire(p).advertise('site-a', a), 'BAD_REQUEST').message).toMatch(/already advertised/);
    expect([...p.coordinator.adverts.keys()]).toEqual(['site-a']);
  });

  it('refuses an advertisement for another attempt, and any once the keys stage is over', () => {
    const p = new InProcessSecAgg(ids, { threshold: 3, seed: 'stage', attempt: 2 });
    const a = advertisementMessage(p, 'site-a');
    expect(refusal(() => viaWire(p).advertise('site-a', { ...a, attempt: 1 }), 'ROUND_CLOSED').message).toMatch(/round 1\.1, the open secure attempt is 1\.2/);
    p.keys(['site-b', 'site-c', 'site-d']);
    p.shares();
    expect(refusal(() => viaWire(p).advertise('site-a', a), 'ROUND_CLOSED').message).toMatch(/the keys stage is over \(now: shares\)/);
  });
});

describe('shares: submissions the coordinator refuses', () => {
  /** An attempt after keys, with site-a's honest sealed shares (not yet submitted). */
  function withShares(seed: string) {
    const p = new InProcessSecAgg(ids, { threshold: 3, seed });
    p.keys();
    p.stage = 'shares';
    const honest = p.sessions.get('site-a')!.shares(p.relayedAdvertisements());
    return { p, honest, msg: sharesMessage(p, honest) };
  }

  it('refuses shares sent in another site’s name, addressed to the sender or to a stranger, or twice to one peer', () => {
    const { p, msg } = withShares('shares-bad');
    const first = msg.shares[0]!;
    const with0 = (s: typeof first) => ({ ...msg, shares: [s, ...msg.shares.slice(1)] });
    expect(refusal(() => viaWire(p).submitShares('site-a', with0({ ...first, fromSite: 'site-b' })), 'BAD_REQUEST').message).toMatch(/a share from site-b submitted by site-a/);
    expect(refusal(() => viaWire(p).submitShares('site-a', with0({ ...first, toSite: 'site-a' })), 'BAD_REQUEST').message).toMatch(/addressed to site-a, which is not a peer/);
    expect(refusal(() => viaWire(p).submitShares('site-a', with0({ ...first, toSite: 'site-x' })), 'BAD_REQUEST').message).toMatch(/addressed to site-x/);
    expect(refusal(() => viaWire(p).submitShares('site-a', { ...msg, shares: [...msg.shares, first] }), 'BAD_REQUEST').message).toMatch(/two shares addressed to/);
    expect(refusal(() => viaWire(p).submitShares('site-a', with0({ ...first, nonce: first.nonce.subarray(0, 8) })), 'BAD_REQUEST').message).toMatch(/malformed/);
    expect(p.coordinator.shares.has('site-a')).toBe(false);
    // The honest list is still accepted after the refusals, and only once.
    viaWire(p).submitShares('site-a', msg);
    expect(refusal(() => viaWire(p).submitShares('site-a', msg), 'BAD_REQUEST').message).toMatch(/already submitted/);
  });

  it('accepts the same shares in any order (each is addressed, and sealed for its (from, to) pair)', () => {
    const { p, msg } = withShares('shares-order');
    viaWire(p).submitShares('site-a', { ...msg, shares: [...msg.shares].reverse() });
    expect(p.coordinator.shares.get('site-a')!.map((s) => s.to).sort()).toEqual(['site-b', 'site-c', 'site-d']);
  });

  // Bonawitz et al. 2017, round 1: a client sends one share to every other client in U1. A list
  // that leaves a neighbour out cannot be told apart later from a relay that lost it, and makes
  // that (honest) neighbour refuse its training task — so the coordinator must refuse it here.
  it('refuses a truncated share list that leaves out a neighbour that advertised keys', () => {
    const { p, msg } = withShares('shares-truncated');
    const e = refusal(() => viaWire(p).submitShares('site-a', { ...msg, shares: msg.shares.slice(0, 2) }), 'BAD_REQUEST');
    expect(e.message).toMatch(/site-d/);
    expect(p.coordinator.shares.has('site-a')).toBe(false);
  });
});

describe('unmask: signatures and reveals the coordinator refuses', () => {
  function atReveal(seed: string) {
    const p = new InProcessSecAgg(ids, { threshold: 3, seed });
    p.keys();
    p.shares();
    p.deliverShares();
    p.consistency(['site-a', 'site-b', 'site-c'], ['site-d']);
    p.stage = 'reveal';
    return p;
  }

  it('refuses a survivor signature from a dropped site, a second one, and one after the consistency step', () => {
    const p = new InProcessSecAgg(ids, { threshold: 3, seed: 'sign' });
    p.keys();
    p.shares();
    p.deliverShares();
    p.consistency(['site-a', 'site-b', 'site-c'], ['site-d'], ['site-a']);
    const sig = { runId: p.runId, round: '1', attempt: 0, siteId: 'site-d', signature: Buffer.alloc(64, 1) };
    expect(refusal(() => viaWire(p).signSurvivors('site-d', sig), 'NOT_INVITED').message).toMatch(/site-d is not a survivor/);
    expect(refusal(() => viaWire(p).signSurvivors('site-a', { ...sig, siteId: 'site-a' }), 'BAD_REQUEST').message).toMatch(/already signed/);
    expect(refusal(() => viaWire(p).signSurvivors('site-b', { ...sig, siteId: 'site-c' }), 'SITE_MISMATCH').message).toMatch(/names site-c/);
    p.stage = 'reveal';
    expect(refusal(() => viaWire(p).signSurvivors('site-b', { ...sig, siteId: 'site-b' }), 'ROUND_CLOSED').message).toMatch(/consistency stage is over/);
  });

  it('refuses a second unmask response from the same site, keeping the first', () => {
    const p = atReveal('twice');
    const shares = p.sessions.get('site-a')!.reveal(p.coordinator.survivors, p.coordinator.dropped, p.relayedSignatures());
    viaWire(p).revealShares('site-a', revealMessage(p, shares));
    const before = p.coordinator.revealed.get('site-a');
    expect(refusal(() => viaWire(p).revealShares('site-a', revealMessage(p, shares)), 'BAD_REQUEST').message).toMatch(/site-a already answered the unmask request/);
    expect(p.coordinator.revealed.get('site-a')).toBe(before);
  });

  it("refuses a reveal of a survivor's mask key or a dropped site's self seed (never both secrets of one site)", () => {
    const p = atReveal('kinds');
    const shares = p.sessions.get('site-a')!.reveal(p.coordinator.survivors, p.coordinator.dropped, p.relayedSignatures());
    const flipped = shares.map((s) => (s.owner === 'site-b' ? { ...s, kind: 'mask_key' as const } : s));
    expect(refusal(() => viaWire(p).revealShares('site-a', revealMessage(p, flipped)), 'BAD_REQUEST').message).toMatch(/revealed mask_key of site-b, which the survivor list does not allow/);
    const dropSeed = shares.map((s) => (s.owner === 'site-d' ? { ...s, kind: 'self_seed' as const } : s));
    expect(refusal(() => viaWire(p).revealShares('site-a', revealMessage(p, dropSeed)), 'BAD_REQUEST').message).toMatch(/self_seed of site-d/);
    expect(refusal(() => viaWire(p).revealShares('site-d', revealMessage(p, [])), 'NOT_INVITED').message).toMatch(/site-d was not asked to unmask/);
    expect(p.coordinator.revealed.size).toBe(0);
  });

  it('refuses a reveal once the attempt is closed for aggregation', () => {
    const p = atReveal('closed');
    const shares = p.sessions.get('site-a')!.reveal(p.coordinator.survivors, p.coordinator.dropped, p.relayedSignatures());
    p.stage = 'closed';
    expect(refusal(() => viaWire(p).revealShares('site-a', revealMessage(p, shares)), 'ROUND_CLOSED').message).toMatch(/the reveal stage is over/);
  });
});
