/** Injected time for the coordinator: the clock and cancellable timers (tests use a fake). */

/** How a timer relates to the process's life. */
export interface TimerOptions {
  /**
   * The timer does not keep the process alive by itself: for timeouts of things nobody ends at
   * shutdown (an upload session's idle timeout), so a stopped coordinator exits at once.
   */
  readonly background?: boolean;
}

/**
 * Injected time: the clock and a one-shot, cancellable timer. Everything in the coordinator that
 * reads the time or waits for it goes through one, so tests drive time with a fake.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Calls `fn` once, `ms` from now; the function returned cancels it (a second call does nothing). */
  setTimer(ms: number, fn: () => void, options?: TimerOptions): () => void;
}

/** The real clock. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer: (ms, fn, options) => {
    const t = setTimeout(fn, ms);
    if (options?.background) t.unref();
    return () => clearTimeout(t);
  },
};
