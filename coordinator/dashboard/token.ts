/**
 * Dashboard tokens (issue 21): what `fedhpc admin dashboard-token` prints and the dashboard
 * exchanges, once, for a session cookie. A token is signed by the admin's own key and carries the
 * admin's certificate, so it is made offline, by whoever holds an admin certificate, and checked by
 * the coordinator with nothing but the federation CA it already trusts: no shared secret to
 * distribute, no RPC to add. It expires (the dashboard caps its lifetime) and has a nonce, so the
 * dashboard can refuse a second exchange.
 *
 * Form: `fhd1.<payload>.<signature>`, both base64url; the signature is ECDSA/SHA-256 (the PKI's P-256
 * keys) over `fedhpc-dashboard-token-v1.<payload>`.
 */
import { X509Certificate, createPrivateKey, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { identityFromCertificate } from '../pki/index.js';

const PREFIX = 'fhd1';
const SIGNED_CONTEXT = 'fedhpc-dashboard-token-v1.';
/** Clock skew tolerated between the admin's machine and the coordinator. */
const SKEW_MS = 60_000;
/** Longest token accepted at all (a bound on the parse, far above any real token). */
const MAX_TOKEN_CHARS = 8192;

const payloadSchema = z
  .object({
    federation: z.string().min(1).max(63),
    /** The admin's certificate, DER in base64. */
    cert: z.string().min(1).max(6000),
    issuedMs: z.number().int().nonnegative(),
    expiresMs: z.number().int().positive(),
    nonce: z.string().regex(/^[0-9a-f]{32}$/),
  })
  .strict();

/** What a token says, once checked. */
export interface DashboardGrant {
  readonly admin: string;
  readonly federation: string;
  readonly expiresMs: number;
  readonly nonce: string;
  readonly fingerprint256: string;
}

/** Stable codes of a refused token. */
export const TOKEN_ISSUES = ['TOKEN_MALFORMED', 'TOKEN_EXPIRED', 'TOKEN_TOO_LONG', 'TOKEN_NOT_YET_VALID', 'TOKEN_UNTRUSTED', 'TOKEN_NOT_ADMIN', 'TOKEN_BAD_SIGNATURE', 'TOKEN_USED'] as const;
export type TokenIssueCode = (typeof TOKEN_ISSUES)[number];

/** A checked token, or why it is refused. */
export type TokenResult = { readonly ok: true; readonly value: DashboardGrant } | { readonly ok: false; readonly code: TokenIssueCode; readonly message: string };

export interface CreateDashboardTokenOptions {
  /** The admin's certificate and private key (PEM), as in the admin CLI config. */
  readonly certPem: string;
  readonly keyPem: string;
  /** How long the token is valid, from now. */
  readonly validMs: number;
  readonly now?: number;
  /** Nonce source (tests inject one). */
  readonly random?: (bytes: number) => Buffer;
}

/** Makes a token for the admin whose certificate and key are given; throws when they name no admin. */
export function createDashboardToken(o: CreateDashboardTokenOptions): { readonly token: string; readonly admin: string; readonly federation: string; readonly expiresMs: number } {
  const id = identityFromCertificate(o.certPem);
  if (!id.ok) throw new Error(`the admin certificate names no federation identity: ${id.issues.map((i) => i.message).join('; ')}`);
  if (id.value.role !== 'admin') throw new Error(`a dashboard token needs an admin certificate, this one is a ${id.value.role}'s`);
  const key = createPrivateKey(o.keyPem);
  const now = o.now ?? Date.now();
  const payload = {
    federation: id.value.federation,
    cert: new X509Certificate(o.certPem).raw.toString('base64'),
    issuedMs: now,
    expiresMs: now + o.validMs,
    nonce: (o.random ?? randomBytes)(16).toString('hex'),
  };
  const body = Buffer.from(JSON.stringify(payload)).toString('base64url');
  const signature = sign('sha256', Buffer.from(SIGNED_CONTEXT + body), key).toString('base64url');
  return { token: `${PREFIX}.${body}.${signature}`, admin: id.value.id, federation: id.value.federation, expiresMs: payload.expiresMs };
}

export interface TokenCheck {
  readonly ca: X509Certificate;
  readonly federation: string;
  readonly maxLifetimeMs: number;
  readonly now: number;
}

function refuse(code: TokenIssueCode, message: string): TokenResult {
  return { ok: false, code, message };
}

/**
 * Checks a token's form, lifetime, certificate (issued by the federation CA, valid now, an admin
 * of this federation) and signature. Whether it was used before is the caller's (it holds the
 * nonces). Never throws for bad input.
 */
export function checkDashboardToken(token: string, c: TokenCheck): TokenResult {
  if (token.length > MAX_TOKEN_CHARS) return refuse('TOKEN_MALFORMED', 'the token is too long');
  const parts = token.trim().split('.');
  if (parts.length !== 3 || parts[0] !== PREFIX) return refuse('TOKEN_MALFORMED', `not a dashboard token (${PREFIX}.<payload>.<signature>)`);
  const [, body = '', signature = ''] = parts;
  let payload: z.infer<typeof payloadSchema>;
  try {
    const parsed = payloadSchema.safeParse(JSON.parse(Buffer.from(body, 'base64url').toString('utf8')));
    if (!parsed.success) return refuse('TOKEN_MALFORMED', 'the token payload has the wrong fields');
    payload = parsed.data;
  } catch {
    return refuse('TOKEN_MALFORMED', 'the token payload is not base64url JSON');
  }
  if (payload.expiresMs <= c.now) return refuse('TOKEN_EXPIRED', `the token expired at ${new Date(payload.expiresMs).toISOString()}`);
  if (payload.issuedMs > c.now + SKEW_MS) return refuse('TOKEN_NOT_YET_VALID', 'the token was issued in the future (check the clocks)');
  if (payload.expiresMs - payload.issuedMs > c.maxLifetimeMs) {
    return refuse('TOKEN_TOO_LONG', `the token lives ${Math.round((payload.expiresMs - payload.issuedMs) / 1000)} s, more than this dashboard accepts (${Math.round(c.maxLifetimeMs / 1000)} s)`);
  }
  let cert: X509Certificate;
  let publicKey: KeyObject;
  try {
    cert = new X509Certificate(Buffer.from(payload.cert, 'base64'));
    publicKey = cert.publicKey;
  } catch {
    return refuse('TOKEN_MALFORMED', 'the token carries no readable certificate');
  }
  if (!cert.checkIssued(c.ca) || !cert.verify(c.ca.publicKey)) return refuse('TOKEN_UNTRUSTED', 'the token certificate was not issued by this federation CA');
  if (c.now < Date.parse(cert.validFrom) || c.now > Date.parse(cert.validTo)) return refuse('TOKEN_UNTRUSTED', 'the token certificate is not valid now');
  const id = identityFromCertificate(cert.raw);
  if (!id.ok) return refuse('TOKEN_NOT_ADMIN', id.issues.map((i) => i.message).join('; '));
  if (id.value.role !== 'admin' || id.value.federation !== c.federation || payload.federation !== c.federation) {
    return refuse('TOKEN_NOT_ADMIN', `the token certificate is a ${id.value.role}'s of federation ${JSON.stringify(id.value.federation)}, not an admin's of ${JSON.stringify(c.federation)}`);
  }
  let signed = false;
  try {
    signed = verify('sha256', Buffer.from(SIGNED_CONTEXT + body), publicKey, Buffer.from(signature, 'base64url'));
  } catch {
    signed = false;
  }
  if (!signed) return refuse('TOKEN_BAD_SIGNATURE', 'the token signature does not verify with its certificate');
  return { ok: true, value: { admin: id.value.id, federation: c.federation, expiresMs: payload.expiresMs, nonce: payload.nonce, fingerprint256: id.value.fingerprint256 } };
}
