/**
 * Signed key advertisements (Bonawitz et al. 2017, round 0, in the version secure against an
 * active server): each site signs (run, round, site, cPk, sPk) with its certificate key, so the
 * coordinator cannot substitute keys; peers verify the signature and the certificate chain.
 */
import { Buffer } from 'node:buffer';
import { type KeyObject, X509Certificate, createPrivateKey, sign, verify } from 'node:crypto';
import { SecAggError, type SecAggErrorCode } from './errors.js';
import { type Result, err, ok } from '../result.js';
import { assertId, assertRound, encodeFields } from './encoding.js';
import { X25519_KEY_BYTES } from './keys.js';

/** Domain-separation label of the signed advertisement bytes. */
export const ADVERTISEMENT_LABEL = 'fedhpc/secagg/v1/key-advertisement';

/** The public keys a site advertises for one round: c for share encryption, s for masks. */
export interface KeyAdvertisement {
  readonly run: string;
  readonly round: number;
  readonly site: string;
  readonly cPk: Uint8Array;
  readonly sPk: Uint8Array;
}

/** A {@link KeyAdvertisement} with the site's ECDSA P-256 / SHA-256 signature (DER). */
export interface SignedKeyAdvertisement extends KeyAdvertisement {
  readonly signature: Uint8Array;
}

/** Canonical bytes signed for an advertisement: label, run, round, site, cPk, sPk, length-prefixed. */
export function encodeAdvertisement(ad: KeyAdvertisement): Uint8Array {
  assertId(ad.run, 'run');
  assertRound(ad.round);
  assertId(ad.site, 'site');
  checkKeys(ad);
  return encodeFields(ADVERTISEMENT_LABEL, [ad.run, ad.round, ad.site, ad.cPk, ad.sPk]);
}

/**
 * Signs an advertisement with the site's certificate private key (PEM or KeyObject, ECDSA P-256)
 * (Bonawitz et al. 2017, round 0). The key never appears in an error.
 */
export function signAdvertisement(ad: KeyAdvertisement, certificateKey: string | KeyObject): SignedKeyAdvertisement {
  const bytes = encodeAdvertisement(ad);
  let key: KeyObject;
  try {
    key = typeof certificateKey === 'string' ? createPrivateKey(certificateKey) : certificateKey;
  } catch (cause) {
    throw new SecAggError('KEY_INVALID', 'certificate private key is not a readable PEM key', {}, { cause });
  }
  if (key.type !== 'private' || key.asymmetricKeyType !== 'ec') throw new SecAggError('KEY_INVALID', 'certificate key must be an EC private key');
  const signature = new Uint8Array(sign('sha256', bytes, key));
  return { run: ad.run, round: ad.round, site: ad.site, cPk: ad.cPk, sPk: ad.sPk, signature };
}

/** What a verifier expects, and whom it trusts. */
export interface VerifyAdvertisementOptions {
  /** The federation CA certificate (PEM or parsed). */
  readonly ca: string | X509Certificate;
  /** The advertising site's certificate (PEM, DER or parsed), e.g. relayed by the coordinator. */
  readonly certificate: string | Uint8Array | X509Certificate;
  /** The run, round and site this advertisement must be for. */
  readonly expected: { readonly run: string; readonly round: number; readonly site: string };
  /** Time at which the certificate must be valid (injected clock). */
  readonly now: Date;
}

/**
 * Verifies a signed advertisement (Bonawitz et al. 2017, round 1, on receipt of the keys): the
 * certificate chains to the federation CA, is a site certificate (OU `site`) whose CN is the
 * advertised site, the signature covers exactly these fields, and run, round and site are the
 * expected ones. Each refusal has its own code: `CERTIFICATE_INVALID`, `CERTIFICATE_UNTRUSTED`,
 * `CERTIFICATE_EXPIRED`, `CERTIFICATE_NOT_SITE`, `SITE_MISMATCH`, `KEY_INVALID`,
 * `SIGNATURE_INVALID`, `RUN_MISMATCH`, `ROUND_MISMATCH`.
 */
export function verifyAdvertisement(signed: SignedKeyAdvertisement, options: VerifyAdvertisementOptions): Result<KeyAdvertisement, SecAggErrorCode> {
  const certs = parseCertificates(options);
  if (!certs.ok) return certs;
  const { cert, ca } = certs.value;
  const context = { site: signed.site, round: signed.round };
  if (cert.checkIssued(ca) === false || !cert.verify(ca.publicKey)) {
    return err('CERTIFICATE_UNTRUSTED', 'site certificate is not issued by the federation CA', context);
  }
  const now = options.now.getTime();
  if (!(now >= Date.parse(cert.validFrom) && now <= Date.parse(cert.validTo))) {
    return err('CERTIFICATE_EXPIRED', 'site certificate is not valid at this time', { ...context, validFrom: cert.validFrom, validTo: cert.validTo });
  }
  const subject = subjectFields(cert.subject);
  if (subject.OU !== 'site') return err('CERTIFICATE_NOT_SITE', 'certificate is not a site certificate (OU must be "site")', { ...context, ou: subject.OU });
  if (subject.CN !== signed.site || signed.site !== options.expected.site) {
    return err('SITE_MISMATCH', 'advertisement, certificate CN and expected site differ', { ...context, cn: subject.CN, expected: options.expected.site });
  }
  let bytes: Uint8Array;
  try {
    bytes = encodeAdvertisement(signed);
  } catch (error) {
    if (error instanceof SecAggError) return err(error.code === 'INVALID_ARGUMENT' ? 'KEY_INVALID' : error.code, error.message, context);
    throw error;
  }
  if (!(signed.signature instanceof Uint8Array) || !verify('sha256', bytes, cert.publicKey, signed.signature)) {
    return err('SIGNATURE_INVALID', 'advertisement signature does not verify against the site certificate', context);
  }
  // Checked after the signature, so a replayed, validly signed advertisement is named as such.
  if (signed.run !== options.expected.run) return err('RUN_MISMATCH', 'advertisement is for another run', { ...context, expectedRun: options.expected.run });
  if (signed.round !== options.expected.round) {
    return err('ROUND_MISMATCH', 'advertisement is for another round', { ...context, expectedRound: options.expected.round });
  }
  return ok({ run: signed.run, round: signed.round, site: signed.site, cPk: signed.cPk, sPk: signed.sPk });
}

function checkKeys(ad: KeyAdvertisement): void {
  for (const [name, key] of [['cPk', ad.cPk], ['sPk', ad.sPk]] as const) {
    if (!(key instanceof Uint8Array) || key.length !== X25519_KEY_BYTES) {
      throw new SecAggError('KEY_INVALID', `${name} must be a 32-byte X25519 public key`, { site: ad.site, key: name });
    }
  }
  // Bonawitz et al. 2017, round 1: a site whose two public keys coincide is refused.
  if (Buffer.from(ad.cPk).equals(ad.sPk)) throw new SecAggError('KEY_INVALID', 'cPk and sPk must differ', { site: ad.site });
}

function parseCertificates(options: VerifyAdvertisementOptions): Result<{ cert: X509Certificate; ca: X509Certificate }, SecAggErrorCode> {
  let ca: X509Certificate;
  let cert: X509Certificate;
  try {
    ca = options.ca instanceof X509Certificate ? options.ca : new X509Certificate(options.ca);
  } catch {
    return err('CERTIFICATE_INVALID', 'federation CA is not a readable X.509 certificate');
  }
  try {
    cert = options.certificate instanceof X509Certificate ? options.certificate : new X509Certificate(toBuffer(options.certificate));
  } catch {
    return err('CERTIFICATE_INVALID', 'site certificate is not a readable X.509 certificate', { site: options.expected.site });
  }
  if (!ca.ca) return err('CERTIFICATE_UNTRUSTED', 'the given CA certificate is not a CA (basicConstraints)');
  if (cert.ca) return err('CERTIFICATE_NOT_SITE', 'site certificate is a CA certificate', { site: options.expected.site });
  return ok({ cert, ca });
}

function toBuffer(value: string | Uint8Array): string | Buffer {
  return typeof value === 'string' ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

/** CN and OU of Node's `subject` (one `KEY=value` per line); a repeated field reads as undefined. */
function subjectFields(subject: string): { CN: string | undefined; OU: string | undefined } {
  const seen = new Map<string, string[]>();
  for (const line of subject.split('\n')) {
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq);
    seen.set(key, [...(seen.get(key) ?? []), line.slice(eq + 1)]);
  }
  const one = (key: string): string | undefined => {
    const values = seen.get(key) ?? [];
    return values.length === 1 ? values[0] : undefined;
  };
  return { CN: one('CN'), OU: one('OU') };
}
