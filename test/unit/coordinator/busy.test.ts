import { describe, expect, it } from 'vitest';
import { busyFraction, finishesOf } from '../../../coordinator/observe/busy.js';
import type { JournalRecord } from '../../../coordinator/state/journal.js';

/** The site's clock runs an hour off the coordinator's: only differences on one clock may be read. */
const SITE = 3_600_000 + 1_764_900_000_000;
const COORD = 1_764_900_000_000;

describe('busyFraction', () => {
  describe('without a busy time (a version-4 agent)', () => {
    it('is the busy span over the round wall time, capped at 1', () => {
      expect(busyFraction({ trainStartedMs: SITE, trainFinishedMs: SITE + 6_000 }, COORD, COORD + 10_000)).toBeCloseTo(0.6);
      expect(busyFraction({ trainStartedMs: SITE, trainFinishedMs: SITE + 60_000 }, COORD, COORD + 10_000)).toBe(1);
    });

    it('is undefined when the site reported no span, or the round took no time', () => {
      expect(busyFraction({}, COORD, COORD + 10_000)).toBeUndefined();
      expect(busyFraction({ trainStartedMs: 0, trainFinishedMs: 0 }, COORD, COORD + 10_000)).toBeUndefined();
      expect(busyFraction({ trainStartedMs: SITE, trainFinishedMs: SITE + 1 }, COORD, COORD)).toBeUndefined();
    });
  });

  describe('with a busy time (busy_ms)', () => {
    it('in an overlapped run reads the busy time over the time since the previous round\'s work ended, not the span that began before the round opened', () => {
      // The sync's span began at the previous snapshot, 9 s before this one and before the round
      // opened; the round itself took 4 s. The steps took 8.1 s of the 9.
      const p = { trainStartedMs: SITE, trainFinishedMs: SITE + 9_000, busyMs: 8_100 };
      expect(busyFraction(p, COORD, COORD + 4_000, SITE)).toBeCloseTo(0.9);
      // Issue 16's span over the wall time read this as always busy.
      expect(busyFraction({ trainStartedMs: p.trainStartedMs, trainFinishedMs: p.trainFinishedMs }, COORD, COORD + 4_000)).toBe(1);
    });

    it('in a lock-step run counts the upload, aggregation and download the trainer waited through', () => {
      // Trained 6 s of a 10 s cycle: the previous round's work ended 10 s before this one.
      const p = { trainStartedMs: SITE + 4_000, trainFinishedMs: SITE + 10_000, busyMs: 6_000 };
      expect(busyFraction(p, COORD, COORD + 8_000, SITE)).toBeCloseTo(0.6);
    });

    it('without a previous finish (a first round, a missed round) reads the longer of the round wall time and its own span', () => {
      const p = { trainStartedMs: SITE, trainFinishedMs: SITE + 9_000, busyMs: 8_100 };
      expect(busyFraction(p, COORD, COORD + 4_000)).toBeCloseTo(0.9);
      expect(busyFraction(p, COORD, COORD + 18_000)).toBeCloseTo(0.45);
      expect(busyFraction({ busyMs: 3_000 }, COORD, COORD + 12_000)).toBeCloseTo(0.25);
      // A previous finish not before this one (a clock step, a reused snapshot) is no span.
      expect(busyFraction(p, COORD, COORD + 18_000, SITE + 9_000)).toBeCloseTo(0.45);
      expect(busyFraction(p, COORD, COORD + 18_000, 0)).toBeCloseTo(0.45);
    });

    it('is capped at 1, and undefined with nothing to divide by', () => {
      expect(busyFraction({ trainStartedMs: SITE, trainFinishedMs: SITE + 1_000, busyMs: 5_000 }, COORD, COORD + 2_000, SITE)).toBe(1);
      expect(busyFraction({ busyMs: 5_000 }, COORD, COORD)).toBeUndefined();
    });
  });
});

describe('finishesOf', () => {
  const committed = (runId: string, round: number, participants: { site: string; trainFinishedMs?: number }[]): JournalRecord => ({
    seq: 0,
    ts: 0,
    prev: '',
    hash: '',
    body: { type: 'round-committed', runId, round, attempt: 0, participants },
  });

  it("gives each participant's finish in the run's committed round, 0 for a site that reported none", () => {
    const records = [
      committed('run-1', 1, [{ site: 'a', trainFinishedMs: 100 }]),
      committed('run-2', 2, [{ site: 'a', trainFinishedMs: 999 }]),
      committed('run-1', 2, [{ site: 'a', trainFinishedMs: 200 }, { site: 'b' }]),
      { seq: 0, ts: 0, prev: '', hash: '', body: { type: 'round-opened', runId: 'run-1', round: 3, attempt: 0 } },
    ];
    expect(finishesOf(records, 'run-1', 2)).toEqual(new Map([['a', 200], ['b', 0]]));
    expect(finishesOf(records, 'run-1', 1)).toEqual(new Map([['a', 100]]));
    expect(finishesOf(records, 'run-1', 0).size).toBe(0);
  });
});
