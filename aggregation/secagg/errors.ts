/**
 * Typed errors of the secure-aggregation library.
 *
 * Bad arguments throw {@link SecAggError}; expected failures on input from outside (a forged
 * advertisement, a tampered share) return a `Result` (../result.ts) with one of these codes.
 * Messages and contexts carry ids, rounds and sizes, never key material, seeds or shares.
 */

/** Stable error codes of `aggregation/secagg/`. Callers branch on these, never on messages. */
export const SECAGG_ERROR_CODES = [
  'INVALID_ARGUMENT',
  'KEY_INVALID',
  'CERTIFICATE_INVALID',
  'CERTIFICATE_UNTRUSTED',
  'CERTIFICATE_EXPIRED',
  'CERTIFICATE_NOT_SITE',
  'SITE_MISMATCH',
  'RUN_MISMATCH',
  'ROUND_MISMATCH',
  'SIGNATURE_INVALID',
  'SHARE_MALFORMED',
  'SHARE_CONTEXT_MISMATCH',
  'SHARE_AUTH_FAILED',
  'SHAMIR_DUPLICATE_X',
  'SHAMIR_TOO_FEW_SHARES',
  'SHAMIR_OUT_OF_FIELD',
  'SHAMIR_INCONSISTENT',
  'OVERFLOW_POSSIBLE',
  'NON_FINITE',
  /** A declared weight outside (0, maxSiteWeight]: refused, never clamped. */
  'WEIGHT_OUT_OF_RANGE',
  /** The unmasked Σw differs from the sum of the declared weights by more than rounding allows. */
  'WEIGHT_SUM_MISMATCH',
  /** A coordinate of the unmasked sum lies beyond what the declared weights and the clip allow. */
  'SUM_OUT_OF_RANGE',
] as const;

/** One of {@link SECAGG_ERROR_CODES}. */
export type SecAggErrorCode = (typeof SECAGG_ERROR_CODES)[number];

/** Structured, loggable facts about an error (ids, rounds, sizes); never secrets. */
export type SecAggErrorContext = Readonly<Record<string, unknown>>;

/** The one error class of `aggregation/secagg/`: stable `code`, loggable `context`, chained `cause`. */
export class SecAggError extends Error {
  override readonly name = 'SecAggError';
  readonly code: SecAggErrorCode;
  readonly context: SecAggErrorContext;

  constructor(code: SecAggErrorCode, message: string, context: SecAggErrorContext = {}, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.context = context;
  }
}

/** Throws `INVALID_ARGUMENT` unless `bytes` is a Uint8Array of exactly `length` bytes. */
export function assertBytes(bytes: unknown, length: number, what: string): asserts bytes is Uint8Array {
  if (!(bytes instanceof Uint8Array) || bytes.length !== length) {
    const got = bytes instanceof Uint8Array ? bytes.length : typeof bytes;
    throw new SecAggError('INVALID_ARGUMENT', `${what} must be ${length} bytes`, { what, expected: length, got });
  }
}
