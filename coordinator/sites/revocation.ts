/**
 * Which site certificates may call: enrolment approvals and revocations, replayed from the journal
 * at start-up (so a revocation survives a restart) and checked on every site call.
 *
 * A revocation names the site and every certificate fingerprint known for it. From then on the
 * revoked fingerprints are refused for good, and so is any other certificate of that site id
 * unless an admin approves it after the revocation (a re-enrolment with a new key).
 */
import { X509Certificate, createHash } from 'node:crypto';
import { CoordinatorError } from '../core/errors.js';
import type { IdentityResolver, IdentityResult, PeerIdentity } from '../pki/index.js';
import type { RefusalSink } from '../observe/refusals.js';
import type { JournalRecord } from '../state/journal.js';

/** Journal record of an approved enrolment or renewal. */
export interface SiteApprovedRecord {
  readonly type: 'site-approved';
  readonly site: string;
  readonly fingerprint: string;
  /** SHA-256 of the certified public key (SPKI DER): a renewal keeps it, a new key changes it. */
  readonly keySha256: string;
  readonly notAfterMs: number;
  readonly renewal: boolean;
  readonly admin: string;
}

/** Journal record of a revocation. */
export interface SiteRevokedRecord {
  readonly type: 'site-revoked';
  readonly site: string;
  readonly fingerprints: readonly string[];
  readonly keySha256s: readonly string[];
  readonly reason: string;
  readonly admin: string;
}

/** A certificate offered for approval, as checked by {@link SiteAccess.checkApproval}. */
export interface ApprovalCandidate {
  readonly site: string;
  readonly fingerprint: string;
  readonly keySha256: string;
}

interface SiteEntry {
  readonly keys: Set<string>;
  readonly fingerprints: Set<string>;
  revoked: boolean;
  /** Fingerprints approved after the latest revocation: the only ones a revoked id may use. */
  readonly approvedSince: Set<string>;
  /** Keys approved after the latest revocation: a later renewal must keep one of them. */
  readonly keysSince: Set<string>;
}

/** SHA-256 of a certificate's public key, and its fingerprint in the resolver's format. */
export function certificateKeys(certPem: string | Buffer): { keySha256: string; fingerprint: string; notAfterMs: number; cert: X509Certificate } {
  const cert = new X509Certificate(certPem);
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
  return {
    keySha256: createHash('sha256').update(spki).digest('hex'),
    fingerprint: cert.fingerprint256,
    notAfterMs: Date.parse(cert.validTo),
    cert,
  };
}

/** Approvals, revocations and the site keys seen, for the site calls' access check. */
export class SiteAccess {
  private readonly sites = new Map<string, SiteEntry>();
  private readonly revokedFingerprints = new Set<string>();
  private readonly revokedKeys = new Set<string>();
  /** Fingerprints already looked at by {@link noteSeen} (one X.509 parse per certificate). */
  private readonly seen = new Set<string>();

  constructor(records: readonly JournalRecord[]) {
    for (const r of records) {
      if (r.body.type === 'site-approved') this.applyApproved(r.body as unknown as SiteApprovedRecord);
      else if (r.body.type === 'site-revoked') this.applyRevoked(r.body as unknown as SiteRevokedRecord);
    }
  }

  private entry(site: string): SiteEntry {
    let e = this.sites.get(site);
    if (!e) this.sites.set(site, (e = { keys: new Set(), fingerprints: new Set(), revoked: false, approvedSince: new Set(), keysSince: new Set() }));
    return e;
  }

  applyApproved(r: SiteApprovedRecord): void {
    const e = this.entry(r.site);
    e.keys.add(r.keySha256);
    e.fingerprints.add(r.fingerprint);
    if (e.revoked) {
      e.approvedSince.add(r.fingerprint);
      e.keysSince.add(r.keySha256);
    }
  }

  applyRevoked(r: SiteRevokedRecord): void {
    const e = this.entry(r.site);
    e.revoked = true;
    e.approvedSince.clear();
    e.keysSince.clear();
    for (const f of r.fingerprints) this.revokedFingerprints.add(f);
    for (const k of r.keySha256s) this.revokedKeys.add(k);
  }

  /** Why `identity` may not call, or undefined when it may. */
  refusal(identity: PeerIdentity): string | undefined {
    if (identity.role !== 'site') return undefined;
    const e = this.sites.get(identity.id);
    const revoked = this.revokedFingerprints.has(identity.fingerprint256) || (e?.revoked === true && !e.approvedSince.has(identity.fingerprint256));
    return revoked ? `site ${identity.id} was revoked by the federation admin (certificate ${identity.fingerprint256.slice(0, 23)}…)` : undefined;
  }

  /** Records the key of a site certificate that authenticated, for the approval check. */
  noteSeen(identity: PeerIdentity, der: Uint8Array): void {
    if (identity.role !== 'site' || this.seen.has(identity.fingerprint256)) return;
    this.seen.add(identity.fingerprint256);
    const { keySha256 } = certificateKeys(Buffer.from(der.buffer, der.byteOffset, der.byteLength));
    const e = this.entry(identity.id);
    e.keys.add(keySha256);
    e.fingerprints.add(identity.fingerprint256);
  }

  /**
   * Whether a newly signed certificate may be approved: a known site must keep its key (renewal),
   * unless it was revoked, and a revoked key is never approved again. Returns whether it renews.
   */
  checkApproval(c: ApprovalCandidate): { renewal: boolean } {
    if (this.revokedKeys.has(c.keySha256)) {
      throw new CoordinatorError('ENROLMENT_REFUSED', `the key in this certificate for site ${c.site} was revoked; the site must enrol with a new key`, { site: c.site });
    }
    const e = this.sites.get(c.site);
    // A revoked site re-enrols with a new key; once approved, that key is the one to keep.
    const keys = e?.revoked ? e.keysSince : e?.keys;
    if (!keys || keys.size === 0) return { renewal: false };
    if (keys.has(c.keySha256)) return { renewal: true };
    throw new CoordinatorError(
      'ENROLMENT_REFUSED',
      `site ${c.site} is already enrolled with a different key; a renewal must use the site's key (fedhpc site renew), or revoke the site before enrolling a new key`,
      { site: c.site },
    );
  }

  /** Everything known to identify `site`, for its revocation record. */
  identify(site: string): { fingerprints: string[]; keySha256s: string[] } {
    const e = this.sites.get(site);
    return { fingerprints: [...(e?.fingerprints ?? [])].sort(), keySha256s: [...(e?.keys ?? [])].sort() };
  }

  isRevoked(site: string): boolean {
    return this.sites.get(site)?.revoked === true;
  }

  /** Whether `site` is revoked and no certificate was approved for it since: it cannot call at all. */
  isLockedOut(site: string): boolean {
    const e = this.sites.get(site);
    return e?.revoked === true && e.approvedSince.size === 0;
  }

  /** Every site that {@link isLockedOut}, sorted. */
  lockedOutSites(): string[] {
    return [...this.sites.keys()].filter((site) => this.isLockedOut(site)).sort();
  }

  /** Number of revoked site ids. */
  get revokedCount(): number {
    return [...this.sites.values()].filter((e) => e.revoked).length;
  }
}

/** An identity resolver that also answers the revocation check and notes the site keys it sees. */
export interface AccessResolver extends IdentityResolver {
  /** Why `identity` (calling from `peer`) may not call, or undefined; a refusal is reported. */
  refusal(identity: PeerIdentity, peer?: string): string | undefined;
}

/**
 * Wraps `base` so that `authenticate` can refuse revoked sites; each refusal is reported to
 * `refusals` (counted and logged, coordinator/observe/refusals.ts).
 */
export function accessResolver(base: IdentityResolver, access: SiteAccess, refusals?: RefusalSink): AccessResolver {
  return {
    resolve(certificate): IdentityResult {
      const result = base.resolve(certificate);
      // Every call comes here: no copy of the DER (noteSeen parses it once per certificate).
      if (result.ok && typeof certificate !== 'string') access.noteSeen(result.value, certificate);
      return result;
    },
    get size() {
      return base.size;
    },
    clear: () => base.clear(),
    refusal: (identity, peer) => {
      const why = access.refusal(identity);
      if (why !== undefined) refusals?.refused({ reason: 'revoked', peer: peer ?? 'unknown', cause: '', fingerprint: identity.fingerprint256, site: identity.id });
      return why;
    },
  };
}
