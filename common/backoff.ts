/** Exponential backoff with full jitter, with an injected random source. */

export interface BackoffOptions {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly factor?: number;
}

/**
 * Delay before retry number `attempt` (0-based): uniform in [initial/2, cap] with
 * cap = min(max, initial·factor^attempt), so a fleet of agents never retries in lock step and no
 * delay ever exceeds `maxMs`.
 */
export function backoffDelay(options: BackoffOptions, attempt: number, random: () => number): number {
  const cap = Math.min(options.maxMs, options.initialMs * (options.factor ?? 2) ** attempt);
  return Math.min(cap, Math.max(options.initialMs / 2, Math.floor(random() * cap)));
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
