/**
 * The coordinator's side of one secure attempt: it relays advertisements and sealed shares,
 * collects survivor signatures and revealed shares, and checks each message before it counts.
 * It never holds a secret until the unmask step hands it exactly the shares the protocol allows.
 */
import { X509Certificate } from 'node:crypto';
import type { AttemptRef, KeyAdvertisement, SharesSubmission, SurvivorSignature, UnmaskResponse } from './messages.js';
import { secureSessionId, sessionGraph, verifyAdvertisement, type NeighbourGraph, type Weighting } from '../../aggregation/index.js';
import { CoordinatorError } from '../core/errors.js';

/** The neighbour graph over the sites that advertised keys, exactly as the sites build it. */
export function neighbourGraph(r: SecureRound): NeighbourGraph {
  return sessionGraph([...r.adverts.keys()], r.params.graphSeed, r.params.degree);
}

/** Parameters of a secure attempt (what `keys` tasks carry). */
export interface SecureRoundParams {
  readonly threshold: number;
  readonly quantBits: number;
  readonly modulusBits: 16 | 32;
  readonly clip: number;
  /** `run.maxSiteWeight`: a site's weight word is its count over this (at most 1). */
  readonly maxSiteWeight: number;
  /** What a site's count is (`run.weighting`): the weight word follows it. */
  readonly weighting: Weighting;
  readonly graphSeed: Buffer;
  readonly degree: number;
  readonly roster: readonly string[];
}

export interface StoredAdvertisement {
  readonly site: string;
  readonly cPk: Buffer;
  readonly sPk: Buffer;
  readonly signature: Buffer;
  readonly certificatePem: string;
}

export interface StoredShare {
  readonly from: string;
  readonly to: string;
  readonly nonce: Buffer;
  readonly ciphertext: Buffer;
}

/** A revealed share of one secret, as the unmask step collects them. */
export interface Revealed {
  readonly holder: string;
  readonly owner: string;
  readonly kind: 'self_seed' | 'mask_key';
  readonly x: number;
  readonly y: Buffer;
}

/** The stage the coordinator is collecting for. */
export type SecureStage = 'keys' | 'shares' | 'consistency' | 'reveal' | 'closed';

/** What a secure attempt is and where it stands. */
export interface SecureRoundOptions {
  readonly runId: string;
  readonly round: number;
  readonly attempt: number;
  readonly params: SecureRoundParams;
  /** Federation CA: advertisements are verified here too, so a forgery never reaches honest sites. */
  readonly caPem: string;
  /**
   * The stage now, read from the round scheduler (the one record of the phase; this class keeps no
   * copy of it): a message for any other stage is refused.
   */
  readonly stage: () => SecureStage;
  /** The time certificates are checked at. */
  readonly now?: () => Date;
}

/** State of one secure attempt at the coordinator. */
export class SecureRound {
  readonly runId: string;
  readonly round: number;
  readonly attempt: number;
  readonly params: SecureRoundParams;
  readonly adverts = new Map<string, StoredAdvertisement>();
  readonly shares = new Map<string, StoredShare[]>();
  readonly signatures = new Map<string, Buffer>();
  readonly revealed = new Map<string, Revealed[]>();
  survivors: readonly string[] = [];
  dropped: readonly string[] = [];
  holders: readonly string[] = [];

  private readonly caPem: string;
  private readonly stage: () => SecureStage;
  private readonly now: () => Date;

  constructor(o: SecureRoundOptions) {
    this.runId = o.runId;
    this.round = o.round;
    this.attempt = o.attempt;
    this.params = o.params;
    this.caPem = o.caPem;
    this.stage = o.stage;
    this.now = o.now ?? (() => new Date());
  }

  private check(m: AttemptRef, stage: SecureStage): void {
    if (m.runId !== this.runId || m.round !== this.round || m.attempt !== this.attempt) {
      throw new CoordinatorError('ROUND_CLOSED', `message for ${m.runId} round ${m.round}.${m.attempt}, the open secure attempt is ${this.round}.${this.attempt}`);
    }
    const now = this.stage();
    if (now !== stage) throw new CoordinatorError('ROUND_CLOSED', `the ${stage} stage is over (now: ${now})`);
  }

  /** Round 0: a site's signed public keys. Refuses a site advertising for another or twice. */
  advertise(site: string, m: KeyAdvertisement): void {
    this.check(m, 'keys');
    if (m.siteId !== site) throw new CoordinatorError('SITE_MISMATCH', `certificate is for site ${site}, the advertisement names ${m.siteId}`);
    if (!this.params.roster.includes(site)) throw new CoordinatorError('NOT_INVITED', `site ${site} is not in this attempt's roster`);
    if (this.adverts.has(site)) throw new CoordinatorError('BAD_REQUEST', `site ${site} already advertised keys for this attempt`);
    if (m.cPublicKey.length !== 32 || m.sPublicKey.length !== 32) throw new CoordinatorError('BAD_REQUEST', 'public keys must be 32 bytes');
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(m.certificatePem);
    } catch (cause) {
      throw new CoordinatorError('BAD_REQUEST', 'the advertisement carries no valid certificate', {}, { cause });
    }
    if (!cert.subject.split('\n').includes(`CN=${site}`)) throw new CoordinatorError('SITE_MISMATCH', `the advertised certificate is not ${site}'s`);
    const session = secureSessionId(this.runId, this.attempt);
    const check = verifyAdvertisement(
      { run: session, round: this.round, site, cPk: m.cPublicKey, sPk: m.sPublicKey, signature: m.signature },
      { ca: this.caPem, certificate: m.certificatePem, expected: { run: session, round: this.round, site }, now: this.now() },
    );
    if (!check.ok) throw new CoordinatorError('BAD_REQUEST', `advertisement of ${site} refused: ${check.code}: ${check.issues.join('; ')}`);
    this.adverts.set(site, { site, cPk: m.cPublicKey, sPk: m.sPublicKey, signature: m.signature, certificatePem: m.certificatePem });
  }

  /** Round 1: a site's sealed shares, one per neighbour, each addressed from the caller. */
  submitShares(site: string, m: SharesSubmission): void {
    this.check(m, 'shares');
    if (!this.adverts.has(site)) throw new CoordinatorError('NOT_INVITED', `site ${site} did not advertise keys`);
    if (this.shares.has(site)) throw new CoordinatorError('BAD_REQUEST', `site ${site} already submitted its shares`);
    const seen = new Set<string>();
    for (const s of m.shares) {
      if (s.fromSite !== site) throw new CoordinatorError('BAD_REQUEST', `a share from ${s.fromSite} submitted by ${site}`);
      if (!this.adverts.has(s.toSite) || s.toSite === site) throw new CoordinatorError('BAD_REQUEST', `a share addressed to ${s.toSite}, which is not a peer in this attempt`);
      if (seen.has(s.toSite)) throw new CoordinatorError('BAD_REQUEST', `two shares addressed to ${s.toSite}`);
      if (s.nonce.length !== 12 || s.ciphertext.length < 16 || s.ciphertext.length > 1024) throw new CoordinatorError('BAD_REQUEST', 'a share is malformed');
      seen.add(s.toSite);
    }
    // Every neighbour must get a share: a truncated list would make an honest peer look faulty.
    const neighbours = neighbourGraph(this).neighbours(site);
    const missing = neighbours.filter((n) => !seen.has(n));
    if (missing.length > 0) throw new CoordinatorError('BAD_REQUEST', `no share addressed to ${missing.join(', ')}`);
    const strangers = [...seen].filter((to) => !neighbours.includes(to));
    if (strangers.length > 0) throw new CoordinatorError('BAD_REQUEST', `shares addressed to ${strangers.join(', ')}, which are not ${site}'s neighbours`);
    this.shares.set(site, m.shares.map((s) => ({ from: s.fromSite, to: s.toSite, nonce: s.nonce, ciphertext: s.ciphertext })));
  }

  /** The shares addressed to `site` from the share holders (U2). */
  sharesFor(site: string): StoredShare[] {
    const out: StoredShare[] = [];
    for (const from of this.holders) for (const s of this.shares.get(from) ?? []) if (s.to === site) out.push(s);
    return out;
  }

  /** Consistency check: a survivor's signature over the survivor list (verified by its peers). */
  signSurvivors(site: string, m: SurvivorSignature): void {
    this.check(m, 'consistency');
    if (m.siteId !== site) throw new CoordinatorError('SITE_MISMATCH', `certificate is for site ${site}, the signature names ${m.siteId}`);
    if (!this.survivors.includes(site)) throw new CoordinatorError('NOT_INVITED', `site ${site} is not a survivor of this attempt`);
    if (this.signatures.has(site)) throw new CoordinatorError('BAD_REQUEST', `site ${site} already signed the survivor list`);
    if (m.signature.length === 0 || m.signature.length > 256) throw new CoordinatorError('BAD_REQUEST', 'malformed signature');
    this.signatures.set(site, m.signature);
  }

  /** Round 3: shares revealed by one signer; each must be of a survivor's seed or a dropped site's key. */
  revealShares(site: string, m: UnmaskResponse): void {
    this.check(m, 'reveal');
    if (!this.signatures.has(site)) throw new CoordinatorError('NOT_INVITED', `site ${site} was not asked to unmask`);
    if (this.revealed.has(site)) throw new CoordinatorError('BAD_REQUEST', `site ${site} already answered the unmask request`);
    const out: Revealed[] = [];
    const seen = new Set<string>();
    for (const r of m.shares) {
      const expected = this.survivors.includes(r.owner) ? 'self_seed' : this.dropped.includes(r.owner) ? 'mask_key' : undefined;
      if (!expected || r.kind !== expected) {
        throw new CoordinatorError('BAD_REQUEST', `revealed ${r.kind} of ${r.owner}, which the survivor list does not allow`);
      }
      if (seen.has(r.owner)) throw new CoordinatorError('BAD_REQUEST', `two shares of ${r.owner} from ${site}`);
      if (r.y.length !== 66 || r.x < 1) throw new CoordinatorError('BAD_REQUEST', `malformed share of ${r.owner}`);
      seen.add(r.owner);
      out.push({ holder: site, owner: r.owner, kind: expected, x: r.x, y: r.y });
    }
    this.revealed.set(site, out);
  }
}
