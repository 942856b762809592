/** The one in-flight budget shared by every site's upload streams. */
import { describe, expect, it } from 'vitest';
import { TransferBudget, type BudgetGrant } from '../../../coordinator/upload/budget.js';
import { ManualClock } from '../../helpers/clock.js';

const MiB = 1 << 20;
/** Lets granted promises settle (the event loop, not a timer: time itself is the fake clock's). */
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('TransferBudget', () => {
  it('grants windows while they fit, then holds streams until a window is released', async () => {
    const budget = new TransferBudget(32 * MiB, new ManualClock());
    const never = new AbortController().signal;
    const a = await budget.acquire('site-1', 16 * MiB, never);
    const b = await budget.acquire('site-2', 16 * MiB, never);
    let c: BudgetGrant | undefined;
    const waiting = budget.acquire('site-3', 16 * MiB, never).then((g) => (c = g));
    await tick();
    expect(c).toBeUndefined();
    expect(budget.usage()).toEqual({ totalBytes: 32 * MiB, usedBytes: 32 * MiB, waiting: 1 });
    a.release();
    await waiting;
    expect(c?.bytes).toBe(16 * MiB);
    expect(budget.usage()).toEqual({ totalBytes: 32 * MiB, usedBytes: 32 * MiB, waiting: 0 });
    a.release(); // a second release gives nothing back twice
    expect(budget.usage().usedBytes).toBe(32 * MiB);
    b.release();
    c!.release();
    expect(budget.usage().usedBytes).toBe(0);
  });

  it('never lets the bytes reserved exceed the budget, whatever the order of requests and releases', async () => {
    const budget = new TransferBudget(10 * MiB, new ManualClock());
    const held: BudgetGrant[] = [];
    let peak = 0;
    const pending: Promise<void>[] = [];
    for (let i = 0; i < 200; i++) {
      const size = (1 + (i % 4)) * MiB;
      pending.push(
        budget.acquire(`site-${i % 7}`, size, new AbortController().signal).then((g) => {
          held.push(g);
          peak = Math.max(peak, budget.usage().usedBytes);
        }),
      );
      if (i % 3 === 2) held.shift()?.release();
      await tick();
    }
    while (budget.usage().waiting > 0 || held.length > 0) {
      held.shift()?.release();
      await tick();
    }
    await Promise.all(pending);
    expect(peak).toBeLessThanOrEqual(10 * MiB);
    expect(peak).toBeGreaterThan(5 * MiB);
    expect(budget.usage()).toEqual({ totalBytes: 10 * MiB, usedBytes: 0, waiting: 0 });
  });

  it('gives a freed window to the waiting site that holds the fewest, not to the one that asked most', async () => {
    const budget = new TransferBudget(2 * MiB, new ManualClock());
    const never = new AbortController().signal;
    const greedy = await budget.acquire('greedy', MiB, never);
    const other = await budget.acquire('modest', MiB, never);
    const order: string[] = [];
    // The greedy site queues three more streams before the modest site queues its second.
    const queued = [
      budget.acquire('greedy', MiB, never).then((g) => (order.push('greedy'), g)),
      budget.acquire('greedy', MiB, never).then((g) => (order.push('greedy'), g)),
      budget.acquire('newcomer', MiB, never).then((g) => (order.push('newcomer'), g)),
    ];
    await tick();
    other.release(); // greedy holds 1, newcomer 0: the newcomer goes first though it asked last
    await tick();
    expect(order).toEqual(['newcomer']);
    greedy.release();
    await tick();
    expect(order).toEqual(['newcomer', 'greedy']);
    const [first, second, newcomer] = queued;
    (await newcomer!).release();
    (await first!).release();
    (await second!).release();
    expect(budget.usage().usedBytes).toBe(0);
  });

  it('tells a waiter it waits at once and every reportMs, and drops it with its stream’s reason when aborted', async () => {
    const clock = new ManualClock();
    const budget = new TransferBudget(MiB, clock);
    const held = await budget.acquire('site-1', MiB, new AbortController().signal);
    const stream = new AbortController();
    let told = 0;
    const waiting = budget.acquire('site-2', MiB, stream.signal, () => told++, 10);
    expect(told).toBe(1); // at once
    clock.advance(9);
    expect(told).toBe(1);
    clock.advance(1);
    expect(told).toBe(2);
    clock.advance(25);
    expect(told).toBe(4); // at 20 and 30 ms
    stream.abort(new Error('superseded'));
    await expect(waiting).rejects.toThrow('superseded');
    expect(budget.usage().waiting).toBe(0);
    expect(clock.pending).toBe(0); // the report timer went with the waiter
    clock.advance(100);
    expect(told).toBe(4);
    held.release();
    expect(budget.usage().usedBytes).toBe(0);
  });

  it('stops telling a waiter it waits once its window is granted', async () => {
    const clock = new ManualClock();
    const budget = new TransferBudget(MiB, clock);
    const held = await budget.acquire('site-1', MiB, new AbortController().signal);
    let told = 0;
    const waiting = budget.acquire('site-2', MiB, new AbortController().signal, () => told++, 500);
    clock.advance(1_000);
    expect(told).toBe(3);
    held.release();
    const granted = await waiting;
    expect(clock.pending).toBe(0);
    clock.advance(5_000);
    expect(told).toBe(3);
    granted.release();
  });

  it('refuses a window larger than the whole budget instead of waiting for ever', () => {
    const budget = new TransferBudget(MiB, new ManualClock());
    expect(() => budget.acquire('site-1', 2 * MiB, new AbortController().signal)).toThrow(/cannot fit the transfer budget/);
    expect(() => new TransferBudget(0, new ManualClock())).toThrow(/positive/);
  });
});
