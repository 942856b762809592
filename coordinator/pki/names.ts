/**
 * Validation of ids, federation names and roles, and small PEM/key helpers shared by the PKI files.
 */
import { createPrivateKey, createPublicKey, webcrypto, type KeyObject } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { PkiError, PkiErrorCode } from './errors.js';

// One provider for the whole process: @peculiar/x509 needs a WebCrypto and Node's is complete.
x509.cryptoProvider.set(webcrypto as unknown as Crypto);

/** Pattern every site, admin and coordinator id (and federation name) must match. */
export const ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** The roles a federation certificate can carry (in the subject's OU). */
export const ROLES = ['coordinator', 'site', 'admin', 'aggregator'] as const;

/**
 * A certificate role: the coordinator server, a training site, an operator, or an aggregator shard
 * (issue 22: a server that owns part of the model's bytes, inside the coordinator operator's trust
 * boundary; sites take only its role as a shard, and only the coordinator's as the coordinator).
 */
export type Role = (typeof ROLES)[number];

/** ECDSA P-256 key generation and import parameters used for every key in the federation. */
export const EC_KEY_ALGORITHM: EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };

/** ECDSA with SHA-256, used for every signature in the federation. */
export const EC_SIGNING_ALGORITHM: EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };

/** The SAN URI that names a site, admin or aggregator: `fedhpc://<federation>/<role>/<id>`. */
export function identityUri(federation: string, role: Role, id: string): string {
  return `fedhpc://${federation}/${role}/${id}`;
}

/** Returns true when `value` is one of {@link ROLES}. */
export function isRole(value: string): value is Role {
  return (ROLES as readonly string[]).includes(value);
}

/** Throws {@link PkiError} `PKI_INVALID_ID` naming `id` unless it matches {@link ID_PATTERN}. */
export function assertValidId(id: string, role?: string): void {
  if (!ID_PATTERN.test(id)) {
    throw new PkiError(
      PkiErrorCode.InvalidId,
      `invalid ${role ?? 'certificate'} id ${JSON.stringify(id)}: ids must match ${ID_PATTERN.source}`,
      role === undefined ? { id } : { id, role },
    );
  }
}

/** Throws {@link PkiError} `PKI_INVALID_FEDERATION` unless `federation` matches {@link ID_PATTERN}. */
export function assertValidFederation(federation: string): void {
  if (!ID_PATTERN.test(federation)) {
    throw new PkiError(
      PkiErrorCode.InvalidFederation,
      `invalid federation name ${JSON.stringify(federation)}: names must match ${ID_PATTERN.source}`,
      { federation },
    );
  }
}

/** Throws {@link PkiError} `PKI_INVALID_ROLE` unless `role` is one of {@link ROLES}. */
export function assertValidRole(role: string): asserts role is Role {
  if (!isRole(role)) {
    throw new PkiError(PkiErrorCode.InvalidRole, `invalid role ${JSON.stringify(role)}: expected one of ${ROLES.join(', ')}`, {
      role,
    });
  }
}

/** Throws `PKI_INVALID_OPTIONS` unless `validityDays` is a positive integer and `now` a valid date. */
export function assertValidity(validityDays: number, now: Date): void {
  if (!Number.isInteger(validityDays) || validityDays <= 0 || validityDays > 36_500) {
    throw new PkiError(PkiErrorCode.InvalidOptions, `validityDays must be an integer in 1..36500, got ${validityDays}`);
  }
  if (!(now instanceof Date) || Number.isNaN(now.getTime())) {
    throw new PkiError(PkiErrorCode.InvalidOptions, 'now must be a valid Date');
  }
}

/** Wraps DER bytes in a PEM block with 64-character lines. */
export function toPem(der: ArrayBuffer | Uint8Array, label: string): string {
  const base64 = Buffer.from(der instanceof Uint8Array ? der : new Uint8Array(der)).toString('base64');
  const lines = base64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

function assertP256(key: KeyObject, what: string): void {
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new PkiError(PkiErrorCode.InvalidKey, `${what} must be an ECDSA P-256 key, got ${key.asymmetricKeyType ?? 'unknown'}`);
  }
}

/** Imports a PEM private key (PKCS#8 or SEC1) as a WebCrypto ECDSA P-256 signing key. */
export async function importSigningKey(keyPem: string, what: string): Promise<{ key: CryptoKey; spkiDer: Buffer }> {
  let keyObject: KeyObject;
  try {
    keyObject = createPrivateKey(keyPem);
  } catch (cause) {
    throw new PkiError(PkiErrorCode.InvalidKey, `${what} is not a readable PEM private key`, {}, { cause });
  }
  assertP256(keyObject, what);
  const pkcs8 = keyObject.export({ type: 'pkcs8', format: 'der' });
  const spkiDer = createPublicKey(keyObject).export({ type: 'spki', format: 'der' });
  const key = (await webcrypto.subtle.importKey('pkcs8', pkcs8, EC_KEY_ALGORITHM, false, ['sign'])) as CryptoKey;
  return { key, spkiDer };
}

/** Parses a PEM (SPKI) public key, requiring ECDSA P-256, and returns its SPKI DER. */
export function publicKeySpki(publicKeyPem: string, what: string): Buffer {
  let keyObject: KeyObject;
  try {
    keyObject = createPublicKey(publicKeyPem);
  } catch (cause) {
    throw new PkiError(PkiErrorCode.InvalidKey, `${what} is not a readable PEM public key`, {}, { cause });
  }
  assertP256(keyObject, what);
  return keyObject.export({ type: 'spki', format: 'der' });
}

/** Generates an extractable ECDSA P-256 key pair. */
export async function generateKeyPair(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(EC_KEY_ALGORITHM, true, ['sign', 'verify'])) as CryptoKeyPair;
}

/** Exports a WebCrypto private key as a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`). */
export async function exportPrivateKeyPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key as webcrypto.CryptoKey);
  return toPem(der, 'PRIVATE KEY');
}
