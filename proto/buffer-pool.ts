/**
 * Buffers of one process used again instead of allocated: each fresh large buffer is external
 * memory to V8, and ones that outlive a scavenge set off full mark-compacts (docs/decisions.md,
 * "Large buffers are used again where their last reader is known"). A pool hands out only buffers
 * it made, takes back only those, each once, and keeps at most a byte budget of them.
 */
export class BufferPool {
  private readonly free = new Map<number, Buffer<ArrayBuffer>[]>();
  /** Every buffer this pool made, by its memory: only these come back. */
  private readonly made = new WeakMap<ArrayBufferLike, Buffer<ArrayBuffer>>();
  /** The buffers in {@link free} now, so a second hand-back of one is seen without a scan. */
  private readonly waiting = new WeakSet<Buffer<ArrayBuffer>>();
  private freeBytes = 0;
  private readonly counts = { fresh: 0, reused: 0 };

  /** `budget`: bytes the pool keeps waiting, at most. */
  constructor(private readonly budget: number) {}

  /** A buffer of `bytes` bytes: one handed back, else a fresh one in memory of its own. */
  take(bytes: number): Buffer<ArrayBuffer> {
    const reused = this.free.get(bytes)?.pop();
    if (reused) {
      this.waiting.delete(reused);
      this.freeBytes -= reused.byteLength;
      this.counts.reused++;
      return reused;
    }
    this.counts.fresh++;
    const fresh = Buffer.allocUnsafeSlow(bytes);
    this.made.set(fresh.buffer, fresh);
    return fresh;
  }

  /** The buffer this pool made whose memory `view` lies in, or undefined. */
  owner(view: Uint8Array): Buffer<ArrayBuffer> | undefined {
    return this.made.get(view.buffer);
  }

  /** Takes `whole` (a buffer of {@link owner}'s) back for a later {@link take}, unless it waits already or the budget is spent. */
  give(whole: Buffer<ArrayBuffer>): void {
    if (this.made.get(whole.buffer) !== whole || this.waiting.has(whole) || this.freeBytes + whole.byteLength > this.budget) return;
    let list = this.free.get(whole.byteLength);
    if (!list) this.free.set(whole.byteLength, (list = []));
    list.push(whole);
    this.waiting.add(whole);
    this.freeBytes += whole.byteLength;
  }

  /** Buffers made fresh, made of memory handed back, and waiting now. */
  stats(): { readonly fresh: number; readonly reused: number; readonly pooled: number } {
    let pooled = 0;
    for (const list of this.free.values()) pooled += list.length;
    return { ...this.counts, pooled };
  }
}
