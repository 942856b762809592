/**
 * Typed errors of the aggregation library.
 *
 * Bad arguments throw {@link AggregationError}; expected outcomes (a file that fails validation,
 * options that do not parse) return a `Result` (result.ts) with one of these codes; broken
 * invariants throw an `InvariantError` (invariant.ts).
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
