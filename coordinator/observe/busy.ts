/**
 * A site's busy fraction in a round: how much of the time it had it spent training. Display only,
 * clamped to [0, 1], undefined when the site reported nothing to measure (an older agent, a trainer
 * without timestamps). Every figure is a difference of two times on one clock — the site's, or the
 * coordinator's — so the two clocks need not agree.
 *
 * - Without a busy time (`busy_ms` 0, protocol version 4 agents): the span of the fresh work, first
 *   to last training step, over the round's wall time (attempt opened → committed), as issue 16
 *   defined it.
 * - With one (issue 17): the busy time over the time since the site's previous counted work
 *   ended — from its `train_finished_ms` in the run's previous committed round, when it took part
 *   in that round, to this upload's. That span holds everything between two syncs: in a lock-step round
 *   the upload, the aggregation, the download and the idle wait; in an overlapped one, whose span
 *   starts before its round opened, the training that went on during the last sync. Without such
 *   a previous finish (the site's first round, or it missed the last one, whose work may be folded
 *   and is not in this busy time): the longer of the round's wall time and this work's own span.
 */
import type { JournalRecord } from '../state/journal.js';
import { isRecordOf } from '../state/records.js';

/** What a participant reported of its training time. */
export interface BusyReport {
  readonly trainStartedMs?: number | undefined;
  readonly trainFinishedMs?: number | undefined;
  readonly busyMs?: number | undefined;
}

/** The busy fraction of `p` in a round that opened at `roundStartedMs` and committed at `roundFinishedMs` (coordinator clock). */
export function busyFraction(p: BusyReport, roundStartedMs: number, roundFinishedMs: number, previousFinishedMs?: number): number | undefined {
  const { trainStartedMs: a = 0, trainFinishedMs: b = 0, busyMs = 0 } = p;
  const wall = roundFinishedMs - roundStartedMs;
  const span = a > 0 && b >= a ? b - a : 0;
  if (busyMs > 0) {
    const since = previousFinishedMs !== undefined && previousFinishedMs > 0 && b > previousFinishedMs ? b - previousFinishedMs : Math.max(wall, span);
    return since > 0 ? Math.min(1, busyMs / since) : undefined;
  }
  if (a <= 0 || b < a || !(wall > 0)) return undefined;
  return Math.min(1, span / wall);
}

/**
 * Each participant's `trainFinishedMs` in the committed round `round` of `runId`, by site: the
 * previous finishes {@link busyFraction} measures from. Read from the end of the journal, where the
 * latest rounds are.
 */
export function finishesOf(records: readonly JournalRecord[], runId: string, round: number): ReadonlyMap<string, number> {
  for (let i = records.length - 1; i >= 0; i--) {
    const b = records[i]!.body;
    if (isRecordOf(b, 'round-committed') && b.runId === runId && b.round === round) return new Map(b.participants.map((p) => [p.site, p.trainFinishedMs ?? 0]));
  }
  return new Map();
}
