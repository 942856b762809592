/**
 * Reading the caller's identity (role, id, federation) from its mTLS certificate. This runs for
 * every RPC, so it uses Node's native X509 parser and offers a bounded LRU cache keyed by the DER's
 * SHA-256. It does not verify the chain or validity dates: the TLS handshake (client certificates
 * required, federation CA as the only root) has already done that.
 */
import { X509Certificate, createHash } from 'node:crypto';
import { ID_PATTERN, type Role, identityUri, isRole } from './names.js';

/** Who a certificate names. Instances are frozen and may be shared between calls. */
export interface PeerIdentity {
  readonly role: Role;
  readonly id: string;
  readonly federation: string;
  /** SHA-256 of the certificate DER, upper-case hex in colon-separated pairs (Node's `fingerprint256` format). */
  readonly fingerprint256: string;
}

/** Stable codes of {@link IdentityIssue}. */
export const IdentityIssueCode = {
  NoPeerCertificate: 'no-peer-certificate',
  NotACertificate: 'not-a-certificate',
  MissingField: 'missing-field',
  DuplicateField: 'duplicate-field',
  InvalidRole: 'invalid-role',
  InvalidId: 'invalid-id',
  InvalidFederation: 'invalid-federation',
  WrongFederation: 'wrong-federation',
  SanMismatch: 'san-mismatch',
} as const;

/** Union of the values of {@link IdentityIssueCode}. */
export type IdentityIssueCode = (typeof IdentityIssueCode)[keyof typeof IdentityIssueCode];

/** Why a certificate does not name a valid federation identity. */
export interface IdentityIssue {
  readonly code: IdentityIssueCode;
  readonly message: string;
}

/** Outcome of reading an identity: an expected failure is a value, not an exception. */
export type IdentityResult =
  | { readonly ok: true; readonly value: PeerIdentity }
  | { readonly ok: false; readonly issues: readonly IdentityIssue[] };

function failure(code: IdentityIssueCode, message: string): IdentityResult {
  return Object.freeze({ ok: false as const, issues: Object.freeze([Object.freeze({ code, message })]) });
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----/;

/** DER bytes of a certificate given as DER or PEM (the first CERTIFICATE block), or undefined. */
function toDer(certificate: Buffer | Uint8Array | string): Buffer | undefined {
  if (typeof certificate !== 'string') return Buffer.from(certificate.buffer, certificate.byteOffset, certificate.byteLength);
  const body = PEM_CERTIFICATE.exec(certificate)?.[1];
  return body === undefined ? undefined : Buffer.from(body.replace(/\s+/g, ''), 'base64');
}

function fingerprintOf(digest: Buffer): string {
  return digest.toString('hex').toUpperCase().replace(/(..)(?!$)/g, '$1:');
}

/** Splits Node's `subject` (one `KEY=value` per line) into fields; duplicated keys collect all values. */
function subjectFields(subject: string): Map<string, string[]> {
  const fields = new Map<string, string[]>();
  for (const line of subject.split('\n')) {
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq);
    const values = fields.get(key) ?? [];
    values.push(line.slice(eq + 1));
    fields.set(key, values);
  }
  return fields;
}

function parseIdentity(der: Buffer, fingerprint256: string): IdentityResult {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(der);
  } catch {
    return failure(IdentityIssueCode.NotACertificate, 'peer certificate is not a parsable X.509 certificate');
  }
  const fields = subjectFields(cert.subject);
  const picked: Record<'CN' | 'OU' | 'O', string> = { CN: '', OU: '', O: '' };
  for (const key of ['CN', 'OU', 'O'] as const) {
    const values = fields.get(key) ?? [];
    if (values.length === 0) return failure(IdentityIssueCode.MissingField, `certificate subject has no ${key}`);
    if (values.length > 1) return failure(IdentityIssueCode.DuplicateField, `certificate subject has ${values.length} ${key} values`);
    picked[key] = values[0] ?? '';
  }
  const { CN: id, OU: role, O: federation } = picked;
  if (!isRole(role)) return failure(IdentityIssueCode.InvalidRole, `certificate role (OU) ${JSON.stringify(role)} is not a federation role`);
  if (!ID_PATTERN.test(id)) return failure(IdentityIssueCode.InvalidId, `certificate id (CN) ${JSON.stringify(id)} is not a valid id`);
  if (!ID_PATTERN.test(federation)) {
    return failure(IdentityIssueCode.InvalidFederation, `certificate federation (O) ${JSON.stringify(federation)} is not a valid name`);
  }
  if (role !== 'coordinator') {
    // The SAN URI is what we issue for sites and admins; a subject without it was not minted by us.
    const uri = `URI:${identityUri(federation, role, id)}`;
    const sans = (cert.subjectAltName ?? '').split(', ');
    if (!sans.includes(uri)) {
      return failure(IdentityIssueCode.SanMismatch, `certificate for ${role} ${JSON.stringify(id)} lacks the SAN ${uri}`);
    }
  }
  return Object.freeze({ ok: true as const, value: Object.freeze({ role, id, federation, fingerprint256 }) });
}

/**
 * Reads `{ role, id, federation, fingerprint256 }` from a certificate's subject (OU, CN, O), given
 * as DER (e.g. `sslPeerCertificate.raw` from grpc-js) or PEM. Never throws for bad input.
 */
export function identityFromCertificate(certificate: Buffer | Uint8Array | string): IdentityResult {
  const der = toDer(certificate);
  if (der === undefined) return failure(IdentityIssueCode.NotACertificate, 'input holds no PEM CERTIFICATE block');
  return parseIdentity(der, fingerprintOf(createHash('sha256').update(der).digest()));
}

/** The part of grpc-js's `AuthContext` (from `call.getAuthContext()`) that carries the peer certificate. */
export interface AuthContextLike {
  readonly transportSecurityType?: string;
  readonly sslPeerCertificate?: { readonly raw?: Buffer } | undefined;
}

/**
 * Reads the identity from a grpc-js server call's `getAuthContext()`. grpc-js returns `{}` when the
 * connection is not TLS or the peer was not authorized, which yields `no-peer-certificate`.
 */
export function identityFromAuthContext(
  authContext: AuthContextLike | null | undefined,
  resolve: (certificate: Buffer) => IdentityResult = identityFromCertificate,
): IdentityResult {
  const raw = authContext?.sslPeerCertificate?.raw;
  if (authContext?.transportSecurityType !== 'ssl' || raw === undefined || raw.length === 0) {
    return failure(IdentityIssueCode.NoPeerCertificate, 'the call has no authenticated TLS peer certificate');
  }
  return resolve(raw);
}

/** Options of {@link createIdentityResolver}. */
export interface IdentityResolverOptions {
  /** Most certificates remembered; the least recently used is evicted. Default 1024. */
  readonly capacity?: number;
  /** When set, certificates of any other federation resolve to a `wrong-federation` issue. */
  readonly federation?: string;
}

/** A cached identity reader; see {@link createIdentityResolver}. */
export interface IdentityResolver {
  /**
   * Same contract as {@link identityFromCertificate}, memoised by the DER's SHA-256 and, for bytes,
   * by the object too: bytes passed once must not change in place (the TLS layer's never do).
   */
  resolve(certificate: Buffer | Uint8Array | string): IdentityResult;
  /** Number of cached certificates. */
  readonly size: number;
  /** Forgets every cached certificate (e.g. after a revocation list changes). */
  clear(): void;
}

/**
 * Creates an {@link IdentityResolver} with a bounded LRU cache. A hit costs one SHA-256 of the DER
 * (a few hundred bytes) and a map lookup instead of an X.509 parse; the same bytes passed again as
 * the same object cost a WeakMap lookup. Results, failures included, are cached: they depend only
 * on the certificate bytes.
 */
export function createIdentityResolver(options: IdentityResolverOptions = {}): IdentityResolver {
  const capacity = options.capacity ?? 1024;
  if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
  const expected = options.federation;
  const cache = new Map<string, IdentityResult>();
  // The TLS listener hands every call on a connection the same DER Buffer (tls-listener.ts reads
  // the peer certificate once), so a call after a connection's first, or a heartbeat on a stream,
  // costs a WeakMap lookup instead of a SHA-256. Nothing changes those bytes in place.
  let byObject = new WeakMap<Uint8Array, IdentityResult>();
  const byDigest = (certificate: Buffer | Uint8Array | string): IdentityResult => {
    const der = toDer(certificate);
    if (der === undefined) return failure(IdentityIssueCode.NotACertificate, 'input holds no PEM CERTIFICATE block');
    const digest = createHash('sha256').update(der).digest();
    const key = digest.toString('base64');
    const hit = cache.get(key);
    if (hit !== undefined) {
      // Re-insert to mark as most recently used (Map iterates in insertion order).
      cache.delete(key);
      cache.set(key, hit);
      return hit;
    }
    let result = parseIdentity(der, fingerprintOf(digest));
    if (result.ok && expected !== undefined && result.value.federation !== expected) {
      result = failure(
        IdentityIssueCode.WrongFederation,
        `certificate belongs to federation ${JSON.stringify(result.value.federation)}, not ${JSON.stringify(expected)}`,
      );
    }
    cache.set(key, result);
    if (cache.size > capacity) {
      const oldest = cache.keys().next();
      if (oldest.done !== true) cache.delete(oldest.value);
    }
    return result;
  };
  return {
    resolve(certificate) {
      if (typeof certificate === 'string') return byDigest(certificate);
      const known = byObject.get(certificate);
      if (known !== undefined) return known;
      const result = byDigest(certificate);
      byObject.set(certificate, result);
      return result;
    },
    get size() {
      return cache.size;
    },
    clear() {
      cache.clear();
      byObject = new WeakMap();
    },
  };
}
