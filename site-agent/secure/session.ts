/**
 * A site's side of one secure-aggregation attempt (SecAgg+, Bonawitz et al. 2017; Bell et al.
 * 2020): fresh keys, signed advertisement, Shamir shares for the neighbours, the masked upload,
 * the consistency signature, and the one-time reveal. Secrets live only in this object (never
 * logged, never persisted); a restarted agent simply drops out of the attempt.
 */
import { randomBytes as nodeRandomBytes, sign as cryptoSign, verify as cryptoVerify, X509Certificate, type KeyObject } from 'node:crypto';
import {
  encodedWeight,
  neighbourhoodThreshold,
  sessionGraph,
  decodeSharePayload,
  derivePairwiseMaskSeed,
  deriveShareEncryptionKey,
  encodeSharePayload,
  exportX25519PrivateKey,
  generateX25519KeyPair,
  openShare,
  pairwiseSign,
  sealShare,
  sharedSecret,
  signAdvertisement,
  split,
  verifyAdvertisement,
  secureSessionId,
  survivorListBytes,
  GCM_TAG_BYTES,
  type MaskBits,
  type NeighbourGraph,
  type PairwiseMask,
  type Weighting,
  type X25519KeyPair,
} from '../../aggregation/index.js';
import { SiteAgentError } from '../errors.js';

/** Parameters of an attempt, as the `keys` task carries them. */
export interface SecureParams {
  readonly threshold: number;
  readonly quantBits: number;
  readonly modulusBits: MaskBits;
  readonly clip: number;
  /** `run.maxSiteWeight`: the weight word is this site's count over it, and a larger count is refused. */
  readonly maxSiteWeight: number;
  /** What the count is (`run.weighting`): samples, tokens, or 1 for every site. */
  readonly weighting: Weighting;
  readonly graphSeed: Uint8Array;
  readonly degree: number;
  readonly roster: readonly string[];
}

/** A peer's advertisement as relayed by the coordinator. */
export interface PeerAdvertisement {
  readonly site: string;
  readonly cPk: Uint8Array;
  readonly sPk: Uint8Array;
  readonly signature: Uint8Array;
  readonly certificatePem: string;
}

export interface WireShare {
  readonly from: string;
  readonly to: string;
  readonly nonce: Uint8Array;
  readonly ciphertext: Uint8Array;
}

export interface SecureSessionOptions {
  readonly site: string;
  readonly runId: string;
  readonly round: number;
  readonly attempt: number;
  readonly params: SecureParams;
  /** The site's certificate private key (signs advertisements and the survivor list). */
  readonly certificateKey: KeyObject | string;
  readonly caPem: string;
  readonly now: () => Date;
  readonly randomBytes?: (n: number) => Uint8Array;
}

interface HeldShare {
  readonly x: number;
  readonly maskKeyShare: Uint8Array;
  readonly selfSeedShare: Uint8Array;
}

/** One attempt's secrets and protocol steps at a site. */
export class SecureSession {
  readonly session: string;
  private readonly random: (n: number) => Uint8Array;
  private readonly c: X25519KeyPair;
  private readonly s: X25519KeyPair;
  private readonly selfSeed: Uint8Array;
  private graph: NeighbourGraph | undefined;
  private readonly peers = new Map<string, PeerAdvertisement>();
  private readonly held = new Map<string, HeldShare>();
  private holders: readonly string[] = [];
  private signedList: Buffer | undefined;
  private revealed = false;

  constructor(private readonly o: SecureSessionOptions) {
    // A site's own floor: a coordinator asking for t < 2 could make one site's input its "sum".
    if (!(o.params.threshold >= 2)) throw new SiteAgentError('REFUSED', `secure aggregation threshold ${o.params.threshold} is below 2`, false);
    this.session = secureSessionId(o.runId, o.attempt);
    this.random = o.randomBytes ?? ((n) => new Uint8Array(nodeRandomBytes(n)));
    this.c = generateX25519KeyPair(this.random);
    this.s = generateX25519KeyPair(this.random);
    this.selfSeed = this.random(32);
  }

  /** Round 0: this attempt's public keys, signed with the site certificate's key. */
  advertisement(): { cPk: Uint8Array; sPk: Uint8Array; signature: Uint8Array } {
    const signed = signAdvertisement({ run: this.session, round: this.o.round, site: this.o.site, cPk: this.c.publicKey, sPk: this.s.publicKey }, this.o.certificateKey);
    return { cPk: signed.cPk, sPk: signed.sPk, signature: signed.signature };
  }

  /**
   * Round 1: verifies every neighbour's advertisement against the federation CA, then splits the
   * self-mask seed and the mask key into shares for the neighbours (and itself), each sealed for
   * its receiver. A forged or replayed advertisement is refused before anything is shared.
   */
  shares(advertisements: readonly PeerAdvertisement[]): WireShare[] {
    const present = advertisements.map((a) => a.site);
    this.graph = sessionGraph(present, this.o.params.graphSeed, this.o.params.degree);
    const neighbours = this.graph.neighbours(this.o.site);
    for (const peer of neighbours) {
      const ad = advertisements.find((a) => a.site === peer)!;
      const check = verifyAdvertisement(
        { run: this.session, round: this.o.round, site: ad.site, cPk: ad.cPk, sPk: ad.sPk, signature: ad.signature },
        { ca: this.o.caPem, certificate: ad.certificatePem, expected: { run: this.session, round: this.o.round, site: peer }, now: this.o.now() },
      );
      if (!check.ok) throw new SiteAgentError('REFUSED', `advertisement of ${peer} refused: ${check.code}: ${check.issues.join('; ')}`, false);
      this.peers.set(peer, ad);
    }
    // x-coordinates: 1-based positions in the sorted list of this site and its neighbours.
    const group = [...neighbours, this.o.site].sort();
    const t = neighbourhoodThreshold(this.graph, this.o.site, this.o.params.threshold);
    const seedShares = split(this.selfSeed, t, group.length, this.random);
    const keyShares = split(exportX25519PrivateKey(this.s.privateKey), t, group.length, this.random);
    const out: WireShare[] = [];
    group.forEach((to, i) => {
      const payload = { x: i + 1, maskKeyShare: keyShares[i]!.y, selfSeedShare: seedShares[i]!.y };
      if (to === this.o.site) {
        this.held.set(to, payload);
        return;
      }
      const key = deriveShareEncryptionKey(sharedSecret(this.c.privateKey, this.peers.get(to)!.cPk), { run: this.session, round: this.o.round, from: this.o.site, to });
      const sealed = sealShare(key, { run: this.session, round: this.o.round, from: this.o.site, to }, encodeSharePayload(payload), this.random);
      out.push({ from: this.o.site, to, nonce: sealed.nonce, ciphertext: Buffer.concat([sealed.ciphertext, sealed.tag]) });
    });
    return out;
  }

  /** Before training: opens the shares neighbours sealed for this site; `holders` is U2. */
  receiveShares(shares: readonly WireShare[], holders: readonly string[]): void {
    if (!this.graph) throw new SiteAgentError('REFUSED', 'shares received before the share exchange', false);
    this.holders = [...holders];
    const expected = this.graph.neighbours(this.o.site).filter((n) => holders.includes(n));
    const seen = new Set<string>();
    for (const w of shares) {
      if (w.to !== this.o.site) throw new SiteAgentError('REFUSED', `a share addressed to ${w.to} was delivered to ${this.o.site}`, false);
      if (!expected.includes(w.from)) throw new SiteAgentError('REFUSED', `a share from ${w.from}, which is not a neighbour that completed the exchange`, false);
      if (seen.has(w.from)) throw new SiteAgentError('REFUSED', `two shares from ${w.from}`, false);
      seen.add(w.from);
      const ctx = { run: this.session, round: this.o.round, from: w.from, to: this.o.site };
      const key = deriveShareEncryptionKey(sharedSecret(this.c.privateKey, this.peers.get(w.from)!.cPk), ctx);
      const body = w.ciphertext.subarray(0, w.ciphertext.length - GCM_TAG_BYTES);
      const tag = w.ciphertext.subarray(w.ciphertext.length - GCM_TAG_BYTES);
      const opened = openShare(key, { context: ctx, nonce: w.nonce, ciphertext: body, tag }, ctx);
      if (!opened.ok) throw new SiteAgentError('REFUSED', `share from ${w.from} refused: ${opened.code}`, false);
      const payload = decodeSharePayload(opened.value);
      if (!payload.ok) throw new SiteAgentError('REFUSED', `share from ${w.from} is malformed: ${payload.code}`, false);
      this.held.set(w.from, payload.value);
    }
    const missing = expected.filter((n) => !seen.has(n));
    if (missing.length > 0) throw new SiteAgentError('REFUSED', `shares missing from ${missing.join(', ')}`, false);
  }

  /** The masks this site adds: its self mask and one pairwise mask per neighbour in U2. */
  masks(): { selfSeed: Uint8Array; pairwise: PairwiseMask[] } {
    const neighbours = this.graph!.neighbours(this.o.site).filter((n) => this.holders.includes(n));
    const pairwise = neighbours.map((peer) => ({
      peer,
      seed: derivePairwiseMaskSeed(sharedSecret(this.s.privateKey, this.peers.get(peer)!.sPk), { run: this.session, round: this.o.round, siteA: this.o.site, siteB: peer }),
      sign: pairwiseSign(this.o.site, peer),
    }));
    return { selfSeed: this.selfSeed, pairwise };
  }

  /**
   * The weight folded into the masked vector and sent as its weight word: the upload's count in the
   * run's unit (the header's own count, or W of a folded upload) over `maxSiteWeight`,
   * Float32-rounded — what the coordinator recomputes from the clear header. A count above
   * `maxSiteWeight` is refused (WEIGHT_OUT_OF_RANGE), never clamped.
   */
  weight(count: number): number {
    const { weighting, maxSiteWeight } = this.o.params;
    const w = encodedWeight(count, maxSiteWeight);
    if (!w.ok) throw new SiteAgentError('WEIGHT_OUT_OF_RANGE', `${w.issues.join('; ')} (weighting by ${weighting})`, false, { weighting, maxSiteWeight });
    return w.value;
  }

  /** Consistency check: signs the survivor list after checking it is one the protocol allows. */
  signSurvivors(survivors: readonly string[], dropped: readonly string[]): Uint8Array {
    this.checkLists(survivors, dropped);
    this.signedList = Buffer.from(survivorListBytes(this.session, this.o.round, survivors, dropped));
    return new Uint8Array(cryptoSign('sha256', this.signedList, this.o.certificateKey));
  }

  /**
   * Round 3: reveals, at most once, the shares of survivors' self seeds and dropped sites' mask
   * keys, after at least t survivors signed exactly the list this site signed.
   */
  reveal(survivors: readonly string[], dropped: readonly string[], signatures: readonly { site: string; signature: Uint8Array }[]): { owner: string; kind: 'self_seed' | 'mask_key'; x: number; y: Uint8Array }[] {
    if (this.revealed) throw new SiteAgentError('REFUSED', 'this site already answered an unmask request for this attempt', false);
    this.checkLists(survivors, dropped);
    const list = Buffer.from(survivorListBytes(this.session, this.o.round, survivors, dropped));
    if (!this.signedList || !this.signedList.equals(list)) throw new SiteAgentError('REFUSED', 'the unmask request lists other survivors than the list this site signed', false);
    const valid = new Set<string>();
    for (const { site, signature } of signatures) {
      if (!survivors.includes(site)) continue;
      const pem = site === this.o.site ? undefined : this.peers.get(site)?.certificatePem;
      if (site !== this.o.site && !pem) continue;
      const ok = site === this.o.site ? true : cryptoVerify('sha256', list, new X509Certificate(pem!).publicKey, signature);
      if (ok) valid.add(site);
    }
    // Under SecAgg+ only neighbours' signatures can be checked; t is clamped to the neighbourhood
    // exactly as it was when the shares were split.
    const need = neighbourhoodThreshold(this.graph!, this.o.site, this.o.params.threshold);
    if (valid.size < need) {
      throw new SiteAgentError('REFUSED', `only ${valid.size} valid survivor signatures, ${need} required`, false);
    }
    this.revealed = true;
    const out: { owner: string; kind: 'self_seed' | 'mask_key'; x: number; y: Uint8Array }[] = [];
    for (const [owner, share] of this.held) {
      if (survivors.includes(owner)) out.push({ owner, kind: 'self_seed', x: share.x, y: share.selfSeedShare });
      else if (dropped.includes(owner)) out.push({ owner, kind: 'mask_key', x: share.x, y: share.maskKeyShare });
    }
    return out;
  }

  private checkLists(survivors: readonly string[], dropped: readonly string[]): void {
    const both = survivors.filter((s) => dropped.includes(s));
    if (both.length > 0) throw new SiteAgentError('REFUSED', `${both.join(', ')} listed as both surviving and dropped`, false);
    if (new Set(survivors).size !== survivors.length || new Set(dropped).size !== dropped.length) throw new SiteAgentError('REFUSED', 'a site is listed twice', false);
    if (survivors.length < this.o.params.threshold) throw new SiteAgentError('REFUSED', `${survivors.length} survivors, fewer than the threshold ${this.o.params.threshold}`, false);
    const unknown = [...survivors, ...dropped].filter((s) => !this.holders.includes(s));
    if (unknown.length > 0) throw new SiteAgentError('REFUSED', `${unknown.join(', ')} did not complete the share exchange`, false);
    if (!survivors.includes(this.o.site)) throw new SiteAgentError('REFUSED', 'this site is not listed as a survivor', false);
  }
}

