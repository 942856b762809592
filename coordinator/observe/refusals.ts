/**
 * Refused callers, made visible: a TLS handshake the coordinator refused (another CA, an expired
 * certificate, none at all), a CA-signed site that is not a member, a revoked certificate. Each is
 * counted by reason (Prometheus, through `count`), kept as a recent count per reason for `admin
 * status`, and logged with the peer's address, the cause and the certificate's fingerprint when the
 * peer sent one — at most one line per reason and cause every `logEveryMs`, the next line saying how
 * many were suppressed meanwhile, so a flood of refusals cannot flood the log.
 */
import type { Logger } from '../../common/logger.js';

/** Why a caller was refused; the label of `fedhpc_refused_total`. */
export const REFUSAL_REASONS = ['tls_handshake', 'not_member', 'revoked'] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

/** One refused caller. */
export interface Refusal {
  readonly reason: RefusalReason;
  /** The peer's address (`host:port`), or `unknown`. */
  readonly peer: string;
  /** The cause within the reason: OpenSSL's verification code, a socket error code; '' for none. */
  readonly cause: string;
  /** SHA-256 fingerprint of the certificate the peer presented, when it presented one. */
  readonly fingerprint?: string | undefined;
  /** The site id the certificate names, when it was read. */
  readonly site?: string | undefined;
}

/** Where refusals are reported. */
export interface RefusalSink {
  refused(r: Refusal): void;
}

/** A recent count of one reason. */
export interface RecentRefusals {
  readonly reason: RefusalReason;
  readonly count: number;
}

export interface RefusalMonitorOptions {
  readonly logger: Logger;
  readonly now: () => number;
  /** Counts one refusal (the Prometheus counter). */
  readonly count?: (reason: RefusalReason) => void;
  /** At most one log line per reason and cause this often; default 10 s. */
  readonly logEveryMs?: number;
  /** How far back {@link RefusalMonitor.recent} counts; default one hour. */
  readonly windowMs?: number;
}

/** Log line budget state of one reason and cause. */
interface LineBudget {
  lastLoggedMs: number;
  suppressed: number;
}

/** Longest cause kept as its own rate-limit key (causes are codes; anything longer is cut). */
const MAX_CAUSE_CHARS = 64;
/** Rate-limit keys kept at most; past it, causes share their reason's key (memory stays bounded). */
const MAX_KEYS = 64;
/** Width of one bucket of the recent counts. */
const BUCKET_MS = 60_000;

/** Counts, remembers and logs refusals; see the module comment. */
export class RefusalMonitor implements RefusalSink {
  readonly logEveryMs: number;
  readonly windowMs: number;
  private readonly budgets = new Map<string, LineBudget>();
  /** Per-minute counts, oldest first; at most windowMs / BUCKET_MS + 1 of them. */
  private readonly buckets: { start: number; counts: Record<RefusalReason, number> }[] = [];

  constructor(private readonly o: RefusalMonitorOptions) {
    this.logEveryMs = o.logEveryMs ?? 10_000;
    this.windowMs = o.windowMs ?? 3_600_000;
  }

  refused(r: Refusal): void {
    const now = this.o.now();
    this.o.count?.(r.reason);
    this.bucket(now).counts[r.reason] += 1;
    const cause = r.cause.slice(0, MAX_CAUSE_CHARS);
    let key = `${r.reason}/${cause}`;
    if (!this.budgets.has(key) && this.budgets.size >= MAX_KEYS) key = r.reason;
    const budget = this.budgets.get(key);
    if (budget && now - budget.lastLoggedMs < this.logEveryMs) {
      budget.suppressed += 1;
      return;
    }
    const suppressed = budget?.suppressed ?? 0;
    this.budgets.set(key, { lastLoggedMs: now, suppressed: 0 });
    this.o.logger.warn(
      {
        reason: r.reason,
        peer: r.peer,
        cause,
        ...(r.fingerprint ? { fingerprint: r.fingerprint } : {}),
        ...(r.site ? { site: r.site } : {}),
        suppressed,
        suppressedForMs: this.logEveryMs,
      },
      'caller refused',
    );
  }

  /** Refusals per reason within the last `windowMs` (to the minute), every reason listed. */
  recent(): RecentRefusals[] {
    const from = this.o.now() - this.windowMs;
    return REFUSAL_REASONS.map((reason) => ({
      reason,
      count: this.buckets.filter((b) => b.start + BUCKET_MS > from).reduce((n, b) => n + b.counts[reason], 0),
    }));
  }

  private bucket(now: number): { start: number; counts: Record<RefusalReason, number> } {
    const start = now - (now % BUCKET_MS);
    const last = this.buckets.at(-1);
    if (last?.start === start) return last;
    while (this.buckets.length > 0 && this.buckets[0]!.start + BUCKET_MS <= now - this.windowMs) this.buckets.shift();
    const b = { start, counts: { tls_handshake: 0, not_member: 0, revoked: 0 } };
    this.buckets.push(b);
    return b;
  }
}
