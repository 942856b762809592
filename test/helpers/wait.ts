/**
 * The one way tests wait for something to become true: poll a probe until it gives a value, with a
 * deadline that names what was awaited. Every suite uses these two, so a slow machine gets one
 * message format and a wait can never be unbounded.
 */

/**
 * Polls `probe` until it returns a value (not `undefined`) or `timeoutMs` passes; a probe that
 * throws counts as "not yet", and its last error is named in the timeout.
 */
export async function waitFor<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 60_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${(lastError as Error).message})` : ''}`);
}

/** Polls `check` until it holds; {@link waitFor} for a condition. */
export async function waitUntil(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 60_000, everyMs = 20): Promise<void> {
  await waitFor(what, async () => ((await check()) ? true : undefined), timeoutMs, everyMs);
}
