/**
 * The bounded buffer of events waiting for NATS. Beyond `capacity` the oldest event is dropped and
 * counted, so the gap (how many, emitted between when and when) can be reported once publishing
 * resumes. Pure: no timers, no I/O.
 */

/** Events lost to an overflow: how many, and the emission times of the first and last lost. */
export interface EventGap {
  readonly dropped: number;
  readonly fromTs: number;
  readonly toTs: number;
}

/** A FIFO of at most `capacity` items, each with its emission time, that drops its oldest. */
export class EventBuffer<T extends { readonly ts: number }> {
  private items: T[] = [];
  private head = 0;
  private gap: { dropped: number; fromTs: number; toTs: number } | undefined;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 0) throw new RangeError(`capacity must be a non-negative integer, got ${capacity}`);
  }

  /** Items held. */
  get size(): number {
    return this.items.length - this.head;
  }

  /** Adds an item, dropping the oldest when full (with capacity 0, the item itself). */
  push(item: T): void {
    if (this.capacity === 0) return this.count(item.ts);
    if (this.size >= this.capacity) this.count(this.items[this.head++]!.ts);
    this.items.push(item);
    // Compact now and then so the array does not grow with every drop.
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }

  /** Removes and returns every held item, oldest first, and the gap since the last drain (if any). */
  drain(): { items: T[]; gap: EventGap | undefined } {
    const items = this.items.slice(this.head);
    const gap = this.gap;
    this.items = [];
    this.head = 0;
    this.gap = undefined;
    return { items, gap };
  }

  private count(ts: number): void {
    if (this.gap) {
      this.gap.dropped += 1;
      this.gap.fromTs = Math.min(this.gap.fromTs, ts);
      this.gap.toTs = Math.max(this.gap.toTs, ts);
    } else {
      this.gap = { dropped: 1, fromTs: ts, toTs: ts };
    }
  }
}
