/**
 * Typed errors of `fedhpc export`. Each refusal has a stable `code` a script or test can match; the
 * message names what was refused and why. They never cross the wire.
 */

/** Stable codes of {@link ExportError}. */
export const EXPORT_ERROR_CODES = [
  /** The state dir has no journal, or its chain does not verify. */
  'EXPORT_STATE_INVALID',
  /** The round is not committed in the run (never reached, or its attempts aborted). */
  'EXPORT_ROUND_NOT_COMMITTED',
  /** The round was committed but retention deleted its checkpoint. */
  'EXPORT_ROUND_REMOVED',
  /** The checkpoint on disk is not the bytes the journal committed. */
  'EXPORT_CHECKPOINT_CORRUPT',
  /** The run pinned no model config or tokenizer, so nothing vouches for the files given. */
  'EXPORT_NOT_PINNED',
  /** A model config or tokenizer given on the command line differs from the run's pin. */
  'EXPORT_PIN_MISMATCH',
  /** The model config does not describe the checkpoint (another architecture, names or shapes). */
  'EXPORT_MODEL_MISMATCH',
  /** `--out` exists and holds files. */
  'EXPORT_OUT_NOT_EMPTY',
  /** Something given is unusable: a missing file, a bad option. */
  'EXPORT_BAD_INPUT',
] as const;

/** A value of {@link EXPORT_ERROR_CODES}. */
export type ExportErrorCode = (typeof EXPORT_ERROR_CODES)[number];

/** An export refused, with its code and the facts behind it. */
export class ExportError extends Error {
  override readonly name = 'ExportError';
  constructor(
    readonly code: ExportErrorCode,
    message: string,
    readonly context: Readonly<Record<string, string | number>> = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
