import { beforeAll, describe, expect, it } from 'vitest';
import { createCa, issueCertificate, type CertificateAndKey } from '../../../coordinator/pki/index.js';
import {
  type KeyAdvertisement,
  type SecAggErrorCode,
  type SignedKeyAdvertisement,
  encodeAdvertisement,
  generateX25519KeyPair,
  signAdvertisement,
  verifyAdvertisement,
} from '../../../aggregation/secagg/index.js';
import type { Result } from '../../../aggregation/index.js';
import { codeOf, seededRandomBytes } from './helpers.js';

const NOW = new Date('2026-01-15T12:00:00Z');
let ca: CertificateAndKey;
let otherCa: CertificateAndKey;
let siteA: { certPem: string; keyPem: string };
let siteB: { certPem: string; keyPem: string };
let rogueA: { certPem: string; keyPem: string };
let adminA: { certPem: string; keyPem: string };

async function issue(authority: CertificateAndKey, id: string, federation: string, role: 'site' | 'admin' = 'site'): Promise<{ certPem: string; keyPem: string }> {
  const issued = await issueCertificate({ ca: authority, role, id, federation, validityDays: 10, now: NOW });
  return { certPem: issued.certPem, keyPem: issued.keyPem ?? '' };
}

beforeAll(async () => {
  ca = await createCa({ federation: 'eurofed', validityDays: 30, now: NOW });
  otherCa = await createCa({ federation: 'eurofed', validityDays: 30, now: NOW });
  siteA = await issue(ca, 'site-a', 'eurofed');
  siteB = await issue(ca, 'site-b', 'eurofed');
  rogueA = await issue(otherCa, 'site-a', 'eurofed');
  adminA = await issue(ca, 'site-a', 'eurofed', 'admin');
});

function advertisement(round = 5, site = 'site-a'): KeyAdvertisement {
  const rng = seededRandomBytes(`ad-${site}-${round}`);
  return { run: 'run-1', round, site, cPk: generateX25519KeyPair(rng).publicKey, sPk: generateX25519KeyPair(rng).publicKey };
}

const expected = { run: 'run-1', round: 5, site: 'site-a' };
const verifyA = (signed: SignedKeyAdvertisement, certPem = siteA.certPem, exp = expected, now = NOW): Result<KeyAdvertisement, SecAggErrorCode> =>
  verifyAdvertisement(signed, { ca: ca.certPem, certificate: certPem, expected: exp, now });
const codeOfResult = (r: Result<unknown, SecAggErrorCode>): string => (r.ok ? 'ok' : r.code);

describe('key advertisements', () => {
  it('verifies an advertisement signed by the site it names', () => {
    const ad = advertisement();
    const result = verifyA(signAdvertisement(ad, siteA.keyPem));
    expect(result.ok).toBe(true);
    if (result.ok) expect(Buffer.from(result.value.sPk).equals(ad.sPk)).toBe(true);
  });

  it('encodes with a domain prefix and length-prefixed fields, so shifted boundaries differ', () => {
    const ad = advertisement();
    const bytes = Buffer.from(encodeAdvertisement(ad));
    expect(bytes.includes(Buffer.from('fedhpc/secagg/v1/key-advertisement'))).toBe(true);
    const shifted = Buffer.from(encodeAdvertisement({ ...ad, run: 'run-1s', site: 'ite-a' }));
    expect(bytes.equals(shifted)).toBe(false);
  });

  it('refuses a tampered key or a signature by another site with SIGNATURE_INVALID', () => {
    const signed = signAdvertisement(advertisement(), siteA.keyPem);
    const swapped = { ...signed, sPk: advertisement(5, 'site-z').sPk };
    expect(codeOfResult(verifyA(swapped))).toBe('SIGNATURE_INVALID');
    const byB = signAdvertisement(advertisement(), siteB.keyPem);
    expect(codeOfResult(verifyA(byB))).toBe('SIGNATURE_INVALID');
    const flipped = new Uint8Array(signed.signature);
    flipped[10] = flipped[10]! ^ 1;
    expect(codeOfResult(verifyA({ ...signed, signature: flipped }))).toBe('SIGNATURE_INVALID');
  });

  it('refuses a certificate from another CA with CERTIFICATE_UNTRUSTED', () => {
    const signed = signAdvertisement(advertisement(), rogueA.keyPem);
    expect(codeOfResult(verifyA(signed, rogueA.certPem))).toBe('CERTIFICATE_UNTRUSTED');
  });

  it('refuses a wrong site id with SITE_MISMATCH', () => {
    // site-b signs an advertisement claiming to be site-a, with its own certificate.
    const claim = signAdvertisement(advertisement(), siteB.keyPem);
    expect(codeOfResult(verifyA(claim, siteB.certPem))).toBe('SITE_MISMATCH');
    // site-b's honest advertisement offered where site-a's is expected.
    const honestB = signAdvertisement(advertisement(5, 'site-b'), siteB.keyPem);
    expect(codeOfResult(verifyA(honestB, siteB.certPem))).toBe('SITE_MISMATCH');
  });

  it("refuses the previous round's advertisement with ROUND_MISMATCH and another run's with RUN_MISMATCH", () => {
    const old = signAdvertisement(advertisement(4), siteA.keyPem);
    expect(codeOfResult(verifyA(old))).toBe('ROUND_MISMATCH');
    const otherRun = signAdvertisement({ ...advertisement(), run: 'run-0' }, siteA.keyPem);
    expect(codeOfResult(verifyA(otherRun))).toBe('RUN_MISMATCH');
    // Rewriting the round field to the expected one breaks the signature instead.
    expect(codeOfResult(verifyA({ ...old, round: 5 }))).toBe('SIGNATURE_INVALID');
  });

  it('refuses non-site, expired and unreadable certificates with distinct codes', () => {
    const signed = signAdvertisement(advertisement(), adminA.keyPem);
    expect(codeOfResult(verifyA(signed, adminA.certPem))).toBe('CERTIFICATE_NOT_SITE');
    const good = signAdvertisement(advertisement(), siteA.keyPem);
    expect(codeOfResult(verifyA(good, siteA.certPem, expected, new Date(NOW.getTime() + 20 * 86_400_000)))).toBe('CERTIFICATE_EXPIRED');
    expect(codeOfResult(verifyA(good, 'not a certificate'))).toBe('CERTIFICATE_INVALID');
    expect(codeOfResult(verifyA(good, ca.certPem))).toBe('CERTIFICATE_NOT_SITE');
  });

  it('refuses malformed or identical public keys with KEY_INVALID', () => {
    const ad = advertisement();
    expect(codeOf(() => signAdvertisement({ ...ad, cPk: new Uint8Array(31) }, siteA.keyPem))).toBe('KEY_INVALID');
    expect(codeOf(() => signAdvertisement({ ...ad, cPk: ad.sPk }, siteA.keyPem))).toBe('KEY_INVALID');
    const signed = signAdvertisement(ad, siteA.keyPem);
    expect(codeOfResult(verifyA({ ...signed, cPk: signed.sPk }))).toBe('KEY_INVALID');
  });

  it('keeps the signing key out of error messages', () => {
    try {
      signAdvertisement(advertisement(), 'garbage-key-material');
      expect.unreachable();
    } catch (error) {
      expect(String((error as Error).message)).not.toContain('garbage-key-material');
    }
  });
});
