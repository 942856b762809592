/**
 * Typed errors of the builtin trainer. Each carries a stable `code` and typed context so callers
 * and tests can branch on the failure without parsing messages.
 */

/** Stable codes of every error the builtin trainer throws. */
export const BuiltinErrorCode = {
  CharNotInCharset: 'BUILTIN_CHAR_NOT_IN_CHARSET',
  UnknownLanguage: 'BUILTIN_UNKNOWN_LANGUAGE',
  DatasetTooShort: 'BUILTIN_DATASET_TOO_SHORT',
  TokenOutOfRange: 'BUILTIN_TOKEN_OUT_OF_RANGE',
  ParamShapeMismatch: 'BUILTIN_PARAM_SHAPE_MISMATCH',
  InvalidArgument: 'BUILTIN_INVALID_ARGUMENT',
  NonFiniteLoss: 'BUILTIN_NON_FINITE_LOSS',
} as const;

/** Union of the codes in {@link BuiltinErrorCode}. */
export type BuiltinErrorCode = (typeof BuiltinErrorCode)[keyof typeof BuiltinErrorCode];

/** Extra facts about a failure, e.g. the offending length or tensor name. */
export type BuiltinErrorContext = Readonly<Record<string, string | number | boolean>>;

/**
 * A programming or data error in the builtin trainer (bad input, wrong shapes, too little data).
 * Retrying with the same input cannot help.
 */
export class BuiltinTrainerError extends Error {
  override readonly name = 'BuiltinTrainerError';
  /** Stable machine-readable code. */
  readonly code: BuiltinErrorCode;
  /** Typed details about the failure. */
  readonly context: BuiltinErrorContext;

  constructor(code: BuiltinErrorCode, message: string, context: BuiltinErrorContext = {}, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.code = code;
    this.context = context;
  }
}

/**
 * Thrown by `trainShard` when its `AbortSignal` fires between steps. Named `AbortError` like the
 * DOM error so generic abort handling recognises it; `cause` is the signal's reason.
 */
export class TrainingAbortedError extends Error {
  override readonly name = 'AbortError';
  /** Stable machine-readable code. */
  readonly code = 'BUILTIN_TRAINING_ABORTED' as const;
  /** How many optimizer steps had completed when the abort was noticed. */
  readonly completedSteps: number;

  constructor(completedSteps: number, cause?: unknown) {
    super(`training aborted after ${completedSteps} step(s)`, cause === undefined ? undefined : { cause });
    this.completedSteps = completedSteps;
  }
}
