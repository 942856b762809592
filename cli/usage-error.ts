/**
 * The CLI's one usage error: a mistake in the command line or in a file named on it. `fedhpc`
 * prints its message with the command's usage text and exits with code 2.
 */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Whether `err` is a usage mistake: ours, or one of `node:util`'s `parseArgs` (`ERR_PARSE_ARGS_*`). */
export function isUsageError(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return err instanceof UsageError || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS'));
}
