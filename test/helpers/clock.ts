/**
 * A fake {@link Clock} for tests of time: nothing happens until the test calls `advance`, so a
 * timeout is tested by moving time past it, never by sleeping on a real timer.
 */
import type { Clock } from '../../coordinator/index.js';

/** Most timers one `advance` may fire: a timer that re-arms itself at 0 ms would never let time pass. */
const MAX_FIRES_PER_ADVANCE = 100_000;

interface PendingTimer {
  readonly at: number;
  readonly seq: number;
  readonly fn: () => void;
}

/** A clock whose time moves only by `advance`, firing due timers in order. */
export class ManualClock implements Clock {
  private current: number;
  private seq = 0;
  private readonly timers = new Set<PendingTimer>();

  /** `start`: the time `now()` reads first, in ms since the epoch (a fixed, realistic instant by default). */
  constructor(start = 1_700_000_000_000) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimer(ms: number, fn: () => void): () => void {
    const timer: PendingTimer = { at: this.current + Math.max(0, ms), seq: this.seq++, fn };
    this.timers.add(timer);
    return () => void this.timers.delete(timer);
  }

  /** Timers set and neither fired nor cancelled. */
  get pending(): number {
    return this.timers.size;
  }

  /**
   * Moves time forward by `ms`. Every timer due by then fires, earliest first (in the order they
   * were set among equals), with `now()` reading its due time; a timer set while firing fires too
   * when it falls due within the same advance.
   */
  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`a clock only moves forward, not by ${ms} ms`);
    const until = this.current + ms;
    for (let fired = 0; ; fired++) {
      if (fired >= MAX_FIRES_PER_ADVANCE) throw new Error(`more than ${MAX_FIRES_PER_ADVANCE} timers fired in one advance of ${ms} ms: a timer re-arms itself without letting time pass`);
      const next = this.nextDue(until);
      if (!next) break;
      this.timers.delete(next);
      this.current = next.at;
      next.fn();
    }
    this.current = until;
  }

  private nextDue(until: number): PendingTimer | undefined {
    let best: PendingTimer | undefined;
    for (const t of this.timers) {
      if (t.at <= until && (!best || t.at < best.at || (t.at === best.at && t.seq < best.seq))) best = t;
    }
    return best;
  }
}
