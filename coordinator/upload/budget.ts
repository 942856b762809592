/**
 * The coordinator's one budget for upload bytes in flight, shared by every site's streams. A
 * stream may not be accepted until its window (the bytes its agent may send past the last
 * acknowledgement) is reserved here, and gives it back when it ends; so the chunks the coordinator
 * can be holding at once, however many sites upload, never exceed `limits.uploadBudgetBytes`
 * (256 MiB unless configured). A stream that finds the budget spent waits, told so every few
 * seconds; the next free window goes to the waiting stream of the site holding the fewest windows
 * (the earliest among equals), so one site opening many stripes cannot starve the others.
 */
import type { Clock } from '../core/clock.js';
import { CoordinatorError } from '../core/errors.js';

/** A reserved window; release it exactly once (later calls do nothing). */
export interface BudgetGrant {
  readonly bytes: number;
  release(): void;
}

interface Waiter {
  readonly site: string;
  readonly bytes: number;
  readonly seq: number;
  readonly grant: (g: BudgetGrant) => void;
}

/** How full the budget is, for metrics and logs. */
export interface BudgetUsage {
  readonly totalBytes: number;
  readonly usedBytes: number;
  readonly waiting: number;
}

export class TransferBudget {
  private used = 0;
  private seq = 0;
  private readonly held = new Map<string, number>();
  private readonly waiters: Waiter[] = [];

  /** `clock` times the reports to waiting streams (the coordinator passes the system clock). */
  constructor(
    readonly totalBytes: number,
    private readonly clock: Clock,
  ) {
    if (!Number.isSafeInteger(totalBytes) || totalBytes <= 0) throw new RangeError(`transfer budget must be a positive number of bytes, got ${totalBytes}`);
  }

  usage(): BudgetUsage {
    return { totalBytes: this.totalBytes, usedBytes: this.used, waiting: this.waiters.length };
  }

  /**
   * Reserves `bytes` for a stream of `site`. Resolves at once when they are free and nobody waits,
   * else when they come free; `onWait` is called every `reportMs` while waiting (a stream uses it
   * to tell its agent it is queued). Rejects with the signal's reason when the stream is aborted.
   */
  acquire(site: string, bytes: number, signal: AbortSignal, onWait?: () => void, reportMs = 5_000): Promise<BudgetGrant> {
    if (bytes > this.totalBytes) {
      throw new CoordinatorError('INTERNAL', `an upload window of ${bytes} bytes cannot fit the transfer budget of ${this.totalBytes}`);
    }
    if (signal.aborted) return Promise.reject(abortReason(signal));
    if (this.waiters.length === 0 && this.used + bytes <= this.totalBytes) return Promise.resolve(this.take(site, bytes));
    return new Promise<BudgetGrant>((resolve, reject) => {
      let cancelReport: (() => void) | undefined;
      // Re-armed before each report, so a report that ends the wait (done) cancels the next one.
      const reportLater = (report: () => void): void => {
        cancelReport = this.clock.setTimer(reportMs, () => {
          reportLater(report);
          report();
        }, { background: true });
      };
      if (onWait) reportLater(onWait);
      const done = (): void => {
        cancelReport?.();
        signal.removeEventListener('abort', onAbort);
      };
      const waiter: Waiter = {
        site,
        bytes,
        seq: this.seq++,
        grant: (g) => {
          done();
          resolve(g);
        },
      };
      const onAbort = (): void => {
        done();
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(abortReason(signal));
        this.serveWaiters(); // a large waiter gone may let smaller ones through
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
      onWait?.();
    });
  }

  private take(site: string, bytes: number): BudgetGrant {
    this.used += bytes;
    this.held.set(site, (this.held.get(site) ?? 0) + 1);
    let released = false;
    return {
      bytes,
      release: () => {
        if (released) return;
        released = true;
        this.used -= bytes;
        const n = (this.held.get(site) ?? 1) - 1;
        if (n > 0) this.held.set(site, n);
        else this.held.delete(site);
        this.serveWaiters();
      },
    };
  }

  /** Grants free bytes to waiters, fewest-held site first, earliest first among equals. */
  private serveWaiters(): void {
    for (;;) {
      const next = this.nextWaiter();
      if (!next || this.used + next.bytes > this.totalBytes) return;
      this.waiters.splice(this.waiters.indexOf(next), 1);
      next.grant(this.take(next.site, next.bytes));
    }
  }

  private nextWaiter(): Waiter | undefined {
    let best: Waiter | undefined;
    for (const w of this.waiters) {
      if (!best) best = w;
      else {
        const a = this.held.get(w.site) ?? 0;
        const b = this.held.get(best.site) ?? 0;
        if (a < b || (a === b && w.seq < best.seq)) best = w;
      }
    }
    return best;
  }
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new CoordinatorError('UPLOAD_INTERRUPTED', String(signal.reason));
}
