/**
 * Who may read the dashboard (issue 21): an admin, shown by either
 * - the TLS client certificate of the request (HTTPS only): issued by the federation CA to an admin
 *   of this federation, the same rule as the admin gRPC API (coordinator/service/auth.ts); a
 *   certificate that fails is refused even when a cookie comes with it; or
 * - a session cookie, got by exchanging a dashboard token (token.ts) once. The cookie is HttpOnly
 *   and SameSite=Strict (Secure under HTTPS): a browser's EventSource cannot send headers, so the
 *   live-update channel needs a cookie, and no script of the page can read it.
 * Sessions live in memory only: a restarted coordinator asks for a new token.
 */
import { createHash, randomBytes, type X509Certificate } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { IdentityResolver } from '../pki/index.js';
import { checkDashboardToken, type TokenIssueCode } from './token.js';

/** The session cookie's name. */
export const SESSION_COOKIE = 'fedhpc_dashboard';
/** Nonces of exchanged tokens remembered at once (each until its token expires). */
const MAX_USED_NONCES = 10_000;

/** An admin let in, and how. */
export interface DashboardViewer {
  readonly admin: string;
  readonly via: 'certificate' | 'session';
  /** Whether the credential still holds (a session ends on expiry, sign-out or eviction): long event streams ask. */
  readonly valid: () => boolean;
}

/** Why a request is refused: 401 without a credential, 403 with a wrong one. */
export interface DashboardRefusal {
  readonly status: 401 | 403;
  readonly code: string;
  readonly message: string;
}

export type AuthResult = { readonly ok: true; readonly value: DashboardViewer } | { readonly ok: false; readonly refusal: DashboardRefusal };

export type ExchangeResult =
  | { readonly ok: true; readonly admin: string; readonly cookie: string; readonly expiresMs: number }
  | { readonly ok: false; readonly code: TokenIssueCode | 'SESSIONS_FULL'; readonly message: string };

export interface DashboardAuthOptions {
  readonly ca: X509Certificate;
  readonly federation: string;
  /** Resolves client certificates (cached), refusing other federations'. */
  readonly resolver: IdentityResolver;
  readonly maxTokenLifetimeMs: number;
  readonly maxSessions: number;
  /** Whether cookies are marked Secure (HTTPS). */
  readonly secure: boolean;
  readonly now: () => number;
  readonly random?: (bytes: number) => Buffer;
}

interface Session {
  readonly admin: string;
  readonly expiresMs: number;
}

/** Sessions, used token nonces, and the decision for each request. */
export class DashboardAuth {
  /** Keyed by the SHA-256 of the session id: the id itself is kept by the browser only. */
  private readonly sessions = new Map<string, Session>();
  private readonly usedNonces = new Map<string, number>();

  constructor(private readonly o: DashboardAuthOptions) {}

  /** Exchanges a token for a session; the token cannot be exchanged again. */
  exchange(token: string): ExchangeResult {
    const now = this.o.now();
    this.prune(now);
    const checked = checkDashboardToken(token, { ca: this.o.ca, federation: this.o.federation, maxLifetimeMs: this.o.maxTokenLifetimeMs, now });
    if (!checked.ok) return checked;
    const grant = checked.value;
    if (this.usedNonces.has(grant.nonce)) return { ok: false, code: 'TOKEN_USED', message: 'this token was exchanged already: make a new one with fedhpc admin dashboard-token' };
    if (this.usedNonces.size >= MAX_USED_NONCES) return { ok: false, code: 'SESSIONS_FULL', message: `${MAX_USED_NONCES} unexpired tokens were exchanged: wait for some to expire` };
    this.usedNonces.set(grant.nonce, grant.expiresMs);
    if (this.sessions.size >= this.o.maxSessions) {
      // The oldest session ends (Map keeps insertion order): a bound, not a refusal of the newest admin.
      const oldest = this.sessions.keys().next();
      if (oldest.done !== true) this.sessions.delete(oldest.value);
    }
    const id = (this.o.random ?? randomBytes)(32).toString('base64url');
    this.sessions.set(digest(id), { admin: grant.admin, expiresMs: grant.expiresMs });
    return { ok: true, admin: grant.admin, cookie: this.cookie(id, Math.max(1, Math.floor((grant.expiresMs - now) / 1000))), expiresMs: grant.expiresMs };
  }

  /** Ends the request's session, if any; returns the cookie header that clears it. */
  logout(req: IncomingMessage): string {
    const id = cookieValue(req.headers.cookie, SESSION_COOKIE);
    if (id !== undefined) this.sessions.delete(digest(id));
    return this.cookie('', 0);
  }

  /** Who the request is from, or why it is refused. */
  authenticate(req: IncomingMessage): AuthResult {
    const socket = req.socket as Partial<TLSSocket>;
    if (socket.encrypted === true && typeof socket.getPeerCertificate === 'function') {
      const peer = socket.getPeerCertificate();
      if (peer !== null && peer !== undefined && peer.raw !== undefined && peer.raw.length > 0) return this.byCertificate(socket as TLSSocket, peer.raw);
    }
    const id = cookieValue(req.headers.cookie, SESSION_COOKIE);
    if (id === undefined) return refuse(401, 'UNAUTHENTICATED', 'sign in with an admin certificate or a token from fedhpc admin dashboard-token');
    const key = digest(id);
    const session = this.sessions.get(key);
    if (session === undefined) return refuse(401, 'SESSION_UNKNOWN', 'the session is unknown (expired, ended, or from before a restart): sign in again');
    if (session.expiresMs <= this.o.now()) {
      this.sessions.delete(key);
      return refuse(401, 'SESSION_EXPIRED', 'the session expired with its token: sign in again');
    }
    return { ok: true, value: { admin: session.admin, via: 'session', valid: () => this.sessions.get(key) === session && session.expiresMs > this.o.now() } };
  }

  /** Sessions held now. */
  get sessionCount(): number {
    return this.sessions.size;
  }

  private byCertificate(socket: TLSSocket, raw: Buffer): AuthResult {
    if (!socket.authorized) {
      return refuse(403, 'CERTIFICATE_REFUSED', `the client certificate is not trusted: ${String(socket.authorizationError ?? 'not issued by this federation CA')}`);
    }
    const id = this.o.resolver.resolve(raw);
    if (!id.ok) return refuse(403, 'CERTIFICATE_REFUSED', id.issues.map((i) => i.message).join('; '));
    if (id.value.role !== 'admin') return refuse(403, 'NOT_ADMIN', `a ${id.value.role} certificate cannot read the dashboard`);
    // The handshake checked the certificate's dates; a connection outliving it is the TLS layer's to end.
    return { ok: true, value: { admin: id.value.id, via: 'certificate', valid: () => true } };
  }

  private cookie(value: string, maxAgeS: number): string {
    return `${SESSION_COOKIE}=${value}; Path=/; Max-Age=${maxAgeS}; HttpOnly; SameSite=Strict${this.o.secure ? '; Secure' : ''}`;
  }

  private prune(now: number): void {
    for (const [nonce, expiresMs] of this.usedNonces) if (expiresMs <= now) this.usedNonces.delete(nonce);
    for (const [key, s] of this.sessions) if (s.expiresMs <= now) this.sessions.delete(key);
  }
}

function refuse(status: 401 | 403, code: string, message: string): AuthResult {
  return { ok: false, refusal: { status, code, message } };
}

function digest(id: string): string {
  return createHash('sha256').update(id).digest('base64');
}

/** The value of cookie `name` in a `Cookie` header. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim() || undefined;
  }
  return undefined;
}
