import { describe, expect, it } from 'vitest';
import { CoordinatorError } from '../../../coordinator/core/errors.js';
import { SiteAccess, type SiteApprovedRecord, type SiteRevokedRecord } from '../../../coordinator/sites/revocation.js';
import type { JournalRecord } from '../../../coordinator/state/journal.js';
import type { PeerIdentity } from '../../../coordinator/pki/index.js';

const site = (id: string, fingerprint256: string): PeerIdentity => ({ role: 'site', id, federation: 'f', fingerprint256 });
const approved = (s: string, fingerprint: string, keySha256: string): SiteApprovedRecord => ({ type: 'site-approved', site: s, fingerprint, keySha256, notAfterMs: 0, renewal: false, admin: 'a' });
const revoked = (s: string, fingerprints: string[], keySha256s: string[]): SiteRevokedRecord => ({ type: 'site-revoked', site: s, fingerprints, keySha256s, reason: 'r', admin: 'a' });
const journal = (...bodies: object[]): JournalRecord[] => bodies.map((body, i) => ({ seq: i + 1, ts: 0, prev: '', hash: '', body: body as JournalRecord['body'] }));

describe('SiteAccess', () => {
  it('refuses a revoked site from the journal replay on, by id and by fingerprint', () => {
    const access = new SiteAccess(journal(approved('bsc', 'F1', 'K1'), revoked('bsc', ['F1'], ['K1'])));
    expect(access.refusal(site('bsc', 'F1'))).toMatch(/^site bsc was revoked by the federation admin/);
    expect(access.refusal(site('bsc', 'F-unknown'))).toMatch(/revoked/);
    expect(access.refusal(site('hlrs', 'F9'))).toBeUndefined();
    expect(access.refusal({ ...site('bsc', 'F1'), role: 'admin' })).toBeUndefined();
    expect(access.revokedCount).toBe(1);
  });

  it('lets a revoked site id back only with a certificate approved after the revocation, never with the revoked key', () => {
    const access = new SiteAccess(journal(approved('bsc', 'F1', 'K1'), revoked('bsc', ['F1'], ['K1'])));
    expect(() => access.checkApproval({ site: 'bsc', fingerprint: 'F3', keySha256: 'K1' })).toThrow(/was revoked; the site must enrol with a new key/);
    expect(access.checkApproval({ site: 'bsc', fingerprint: 'F2', keySha256: 'K2' })).toEqual({ renewal: false });
    access.applyApproved(approved('bsc', 'F2', 'K2'));
    expect(access.refusal(site('bsc', 'F2'))).toBeUndefined();
    expect(access.refusal(site('bsc', 'F1'))).toMatch(/revoked/);
    expect(access.checkApproval({ site: 'bsc', fingerprint: 'F5', keySha256: 'K2' })).toEqual({ renewal: true });
    expect(() => access.checkApproval({ site: 'bsc', fingerprint: 'F6', keySha256: 'K3' })).toThrow(/already enrolled with a different key/);
  });

  it('treats the same key as a renewal and another key of a known site as refused', () => {
    const access = new SiteAccess(journal(approved('bsc', 'F1', 'K1')));
    expect(access.checkApproval({ site: 'bsc', fingerprint: 'F2', keySha256: 'K1' })).toEqual({ renewal: true });
    let err: unknown;
    try {
      access.checkApproval({ site: 'bsc', fingerprint: 'F3', keySha256: 'K9' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CoordinatorError);
    expect((err as CoordinatorError).code).toBe('ENROLMENT_REFUSED');
    expect(access.checkApproval({ site: 'new', fingerprint: 'F4', keySha256: 'K4' })).toEqual({ renewal: false });
  });
});
