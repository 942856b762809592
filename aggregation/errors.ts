/**
 * Typed errors and results for the aggregation library.
 *
 * Bugs and broken invariants throw {@link AggregationError}; expected outcomes (a file that fails
 * validation, options that do not parse) return a {@link Result}.
 */

/** Stable error codes of the aggregation library. Callers branch on these, never on messages. */
export const AGGREGATION_ERROR_CODES = [
  'SAFETENSORS_HEADER_INVALID',
  'SAFETENSORS_OFFSETS_INVALID',
  'SAFETENSORS_DTYPE_UNSUPPORTED',
  'SAFETENSORS_TRUNCATED',
  'TENSOR_UNKNOWN',
  'TENSOR_MISMATCH',
  'NON_FINITE',
  'OUT_OF_RANGE',
  'INVALID_ARGUMENT',
  'OPTIONS_INVALID',
  'NO_CONTRIBUTIONS',
  'WRITER_ORDER',
  'WRITER_OVERFLOW',
  'WRITER_INCOMPLETE',
  'WRITER_CLOSED',
] as const;

/** One of {@link AGGREGATION_ERROR_CODES}. */
export type AggregationErrorCode = (typeof AGGREGATION_ERROR_CODES)[number];

/** Structured, loggable facts about an error (tensor names, offsets, issues); never secrets. */
export type AggregationErrorContext = Readonly<Record<string, unknown>>;

/**
 * The one error class of `aggregation/`. `code` is stable across releases, `context` carries the
 * facts needed to diagnose without parsing `message`, and `cause` chains the underlying error.
 */
export class AggregationError extends Error {
  override readonly name = 'AggregationError';
  readonly code: AggregationErrorCode;
  readonly context: AggregationErrorContext;

  constructor(
    code: AggregationErrorCode,
    message: string,
    context: AggregationErrorContext = {},
    options?: { cause?: unknown },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.context = context;
  }
}

/**
 * Outcome of an operation whose failure is expected (invalid input from outside).
 * A failure lists human-readable `issues`; `code` (when set) is the code of the first issue, the
 * one an {@link AggregationError} raised from this result would carry.
 */
export type Result<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly issues: readonly string[]; readonly code?: AggregationErrorCode };

/** Builds a successful {@link Result}. */
export function ok<T>(value: T): Result<T> {
  return { ok: true, value };
}

/** Builds a failed {@link Result}. */
export function fail<T = never>(issues: readonly string[], code?: AggregationErrorCode): Result<T> {
  return code === undefined ? { ok: false, issues } : { ok: false, issues, code };
}

/**
 * Returns the value of a successful result, or throws an {@link AggregationError} carrying the
 * failure's code (`fallback` when it has none) and its issues in `context.issues`.
 */
export function unwrap<T>(result: Result<T>, fallback: AggregationErrorCode, what: string): T {
  if (result.ok) return result.value;
  const code = result.code ?? fallback;
  throw new AggregationError(code, `${what}: ${result.issues.join('; ')}`, { issues: result.issues });
}
