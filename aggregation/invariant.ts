/**
 * Named invariants ("Name the invariant", STYLE.md): what must hold, said in words, instead of a
 * bare `!`. A broken invariant is a bug in fedhpc, never an expected outcome, so it throws.
 *
 * This is the one definition for the whole project: it lives in `aggregation/` because that part
 * may import nothing outside itself, and `aggregation/index.ts` exports it to the coordinator, the
 * site agent and the CLI. (common/ may not import `aggregation/`; it has no invariant to name yet.)
 */

/** A broken invariant: a bug, never an outcome to handle. `what` says what should have held. */
export class InvariantError extends Error {
  override readonly name = 'InvariantError';
  /** Stable code, as on the parts' errors. */
  readonly code = 'INVARIANT' as const;
  readonly context: { readonly what: string };

  constructor(what: string) {
    super(`invariant broken: ${what}`);
    this.context = { what };
  }
}

/**
 * Asserts that `cond` holds and narrows the types it tests; otherwise throws an
 * {@link InvariantError} naming `what`, e.g. `invariant(upload !== undefined, 'an accepted upload has a session')`.
 */
export function invariant(cond: boolean, what: string): asserts cond {
  if (!cond) throw new InvariantError(what);
}
