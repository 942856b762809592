/**
 * The one result type of fedhpc, for outcomes whose failure is expected: input from outside that
 * does not validate (a safetensors header, optimizer options, a forged advertisement, a tampered
 * share). It has the shape of zod's `safeParse`: `{ ok: true, value }` or `{ ok: false, issues }`,
 * and a failure also carries the stable `code` of its first issue and loggable `context`.
 *
 * Bugs and broken invariants throw instead. It lives in `aggregation/` because that part imports
 * nothing outside itself; the other parts take it from `aggregation/index.ts`.
 */

/** Structured, loggable facts about a failure (names, offsets, ids, sizes); never secrets. */
export type FailureContext = Readonly<Record<string, unknown>>;

/** A successful {@link Result}. */
export interface Ok<T> {
  readonly ok: true;
  readonly value: T;
}

/**
 * A failed {@link Result}: `code` is the stable code of the first issue (the one an error raised
 * from it carries), `issues` say what is wrong in words, `context` holds the facts.
 */
export interface Err<E extends string> {
  readonly ok: false;
  readonly code: E;
  readonly issues: readonly string[];
  readonly context: FailureContext;
}

/** The outcome of an operation whose failure is expected; `E` is the part's error codes. */
export type Result<T, E extends string> = Ok<T> | Err<E>;

/** Builds a successful {@link Result}. */
export function ok<T>(value: T): Ok<T> {
  return { ok: true, value };
}

/** Builds a failed {@link Result} with one issue or several (the first one's code is `code`). */
export function err<E extends string>(code: E, issues: string | readonly string[], context: FailureContext = {}): Err<E> {
  return { ok: false, code, issues: typeof issues === 'string' ? [issues] : issues, context };
}

/** A part's coded error class, e.g. `AggregationError` or `SecAggError`: `new (code, message, context, options)`. */
export type CodedErrorClass<E extends string> = new (code: E, message: string, context?: FailureContext, options?: { cause?: unknown }) => Error;

/**
 * Returns the value of a successful result, or throws `new ErrorClass(code, message, context)`:
 * the failure's code, its issues joined into the message (after `what`, when given), and its
 * context with the issues added as `context.issues`.
 */
export function unwrap<T, E extends string>(result: Result<T, E>, ErrorClass: CodedErrorClass<E>, what?: string): T {
  if (result.ok) return result.value;
  const issues = result.issues.join('; ');
  throw new ErrorClass(result.code, what === undefined ? issues : `${what}: ${issues}`, { ...result.context, issues: result.issues });
}
