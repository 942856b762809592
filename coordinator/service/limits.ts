/**
 * Per-caller limits on a gRPC surface — the coordinator's, and the site calls an aggregator shard
 * serves: a token bucket of requests per second and a cap on concurrent calls, both keyed by the
 * caller's certificate (a site or an admin). Applied once to every handler of a service when it is
 * registered, so no handler can forget them.
 */
import * as grpc from '@grpc/grpc-js';

/** The limits from the coordinator's config (`limits`), or a shard's. */
export interface CallLimits {
  /** Sustained calls per second each caller may start. */
  readonly requestsPerS: number;
  /** Calls a caller may start at once after being idle (the bucket's size). */
  readonly burst: number;
  /** Calls (unary or streaming) one caller may have open at the same time. */
  readonly maxConcurrentCallsPerSite: number;
}

/** The error code sent in `fedhpc-error-code` when a caller is over a limit. */
export const LIMIT_ERROR_CODE = 'RATE_LIMITED';

interface Bucket {
  tokens: number;
  updatedMs: number;
  open: number;
}

/** The part of a call the limiter reads: who is calling. */
interface CallerCall {
  getAuthContext(): { sslPeerCertificate?: { fingerprint256?: string; subject?: { CN?: string | string[] } } };
}

/** A token taken from a caller's bucket, or why none was left. */
type Token = { readonly ok: true } | { readonly ok: false; readonly message: string };

/** Why a call was refused, or undefined when it may go on (and then counts as open until `release`). */
export type Admission = { readonly ok: true; release(): void } | { readonly ok: false; readonly message: string };

/**
 * Token buckets and open-call counts per caller. Buckets of callers idle long enough to be full
 * again are forgotten, so the table stays as small as the set of active callers.
 */
export class CallLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly limits: CallLimits,
    private readonly now: () => number,
  ) {}

  /** Admits one call by `caller` (a certificate fingerprint) named `name` in messages. */
  admit(caller: string, name: string, method: string): Admission {
    const b = this.bucket(caller, this.now());
    if (b.open >= this.limits.maxConcurrentCallsPerSite) {
      return { ok: false, message: `${name} already has ${b.open} calls open (limit ${this.limits.maxConcurrentCallsPerSite}); ${method} refused` };
    }
    const token = this.take(b, name, method);
    if (!token.ok) return token;
    b.open += 1;
    let released = false;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        b.open -= 1;
      },
    };
  }

  /**
   * Takes one token of `caller`'s bucket for a message that stands in for a call (a heartbeat on
   * its stream), without counting an open call. Refused as a call would be when no token is left.
   */
  charge(caller: string, name: string, method: string): Token {
    return this.take(this.bucket(caller, this.now()), name, method);
  }

  private take(b: Bucket, name: string, method: string): Token {
    if (b.tokens < 1) {
      const waitMs = Math.ceil(((1 - b.tokens) / this.limits.requestsPerS) * 1000);
      return { ok: false, message: `${name} exceeds ${this.limits.requestsPerS} requests/s (burst ${this.limits.burst}); ${method} refused, retry in ${waitMs} ms` };
    }
    b.tokens -= 1;
    return { ok: true };
  }

  /** Callers currently tracked (for tests: idle callers are dropped). */
  get size(): number {
    return this.buckets.size;
  }

  private bucket(caller: string, t: number): Bucket {
    let b = this.buckets.get(caller);
    if (!b) {
      if (this.buckets.size > 4096) this.sweep(t);
      b = { tokens: this.limits.burst, updatedMs: t, open: 0 };
      this.buckets.set(caller, b);
      return b;
    }
    const elapsedS = Math.max(0, t - b.updatedMs) / 1000;
    b.tokens = Math.min(this.limits.burst, b.tokens + elapsedS * this.limits.requestsPerS);
    b.updatedMs = t;
    return b;
  }

  private sweep(t: number): void {
    for (const [key, b] of this.buckets) {
      const full = b.tokens + ((t - b.updatedMs) / 1000) * this.limits.requestsPerS >= this.limits.burst;
      if (b.open === 0 && full) this.buckets.delete(key);
    }
  }
}

/** The caller's key (certificate fingerprint) and a readable name (its common name). */
function callerOf(call: CallerCall): { key: string; name: string } {
  const cert = call.getAuthContext().sslPeerCertificate;
  const cn = cert?.subject?.CN;
  const name = Array.isArray(cn) ? cn.join(',') : (cn ?? 'an unnamed caller');
  return { key: cert?.fingerprint256 ?? 'anonymous', name: name.slice(0, 128) };
}

/**
 * Charges one message of `call`'s stream to its caller's bucket (`CallLimiter.charge`): undefined
 * when it may go on, else the RESOURCE_EXHAUSTED error to end the stream with.
 */
export function chargeMessage(limiter: CallLimiter, call: CallerCall, method: string): (Partial<grpc.ServiceError> & { code: grpc.status; details: string }) | undefined {
  const { key, name } = callerOf(call);
  const token = limiter.charge(key, name, method);
  return token.ok ? undefined : limitError(token.message);
}

function limitError(message: string): Partial<grpc.ServiceError> & { code: grpc.status; details: string } {
  const metadata = new grpc.Metadata();
  metadata.set('fedhpc-error-code', LIMIT_ERROR_CODE);
  metadata.set('fedhpc-retryable', 'true');
  return { code: grpc.status.RESOURCE_EXHAUSTED, details: `${LIMIT_ERROR_CODE}: ${message}`, metadata, message };
}

type StreamCall = CallerCall & { once(event: string, fn: () => void): unknown; emit(event: string, err: unknown): boolean };
type AnyHandler = (call: StreamCall, callback?: grpc.sendUnaryData<unknown>) => void;

/**
 * Wraps every handler of `service` so that each call is admitted by `limiter` first. A refused call
 * ends with RESOURCE_EXHAUSTED; an admitted one counts as open until it ends, however it ends.
 */
export function withCallLimits<H extends object>(service: grpc.ServiceDefinition, handlers: H, limiter: CallLimiter): H {
  const wrapped: Record<string, AnyHandler> = {};
  for (const [method, impl] of Object.entries(handlers as unknown as Record<string, AnyHandler>)) {
    const def = service[method];
    if (!def) {
      wrapped[method] = impl;
      continue;
    }
    const hasCallback = !def.responseStream;
    wrapped[method] = (call, callback) => {
      const { key, name } = callerOf(call);
      const admission = limiter.admit(key, name, method);
      if (!admission.ok) {
        if (hasCallback) callback!(limitError(admission.message));
        else call.emit('error', limitError(admission.message));
        return;
      }
      // 'close' fires for every way a server call ends (finished, cancelled, errored).
      for (const event of ['close', 'cancelled', 'finish', 'error']) call.once(event, admission.release);
      if (hasCallback) {
        const done: grpc.sendUnaryData<unknown> = (err, value, trailer, flags) => {
          admission.release();
          callback!(err, value, trailer, flags);
        };
        impl(call, done);
      } else {
        impl(call);
      }
    };
  }
  return wrapped as unknown as H;
}
