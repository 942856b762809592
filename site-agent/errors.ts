/** Typed site-agent errors with a stable `code` and whether retrying can help. */

export const SITE_ERROR_CODES = [
  'SPEC_INVALID',
  'MODEL_INVALID',
  'MODEL_CHECKSUM',
  'TRAINING_FAILED',
  'CANCELLED',
  'REFUSED',
  'UNREACHABLE',
  'TRANSFER_STALLED',
  'CHUNK_CRC',
  'UPLOAD_INCOMPLETE',
  'CERTIFICATE_INVALID',
  /** The coordinator's deadline for a task passed before the agent finished it. */
  'DEADLINE_PASSED',
  /** A coordinator's message breaks the wire contract (a uint64 that is no safe integer, a required field missing). */
  'WIRE_INVALID',
  /** The trained shard's count (samples, tokens) exceeds the run's maxSiteWeight: the masked upload is refused, not clamped. */
  'WEIGHT_OUT_OF_RANGE',
] as const;
export type SiteErrorCode = (typeof SITE_ERROR_CODES)[number];

/** An agent failure with a stable `code`, typed context and whether retrying can help. */
export class SiteAgentError extends Error {
  constructor(
    readonly code: SiteErrorCode,
    message: string,
    readonly retryable: boolean,
    readonly context: Readonly<Record<string, string | number | boolean>> = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'SiteAgentError';
  }
}
