/**
 * The round history of `admin rounds` and the detail of `admin round N`, read from the journal
 * (the source of truth) plus the phase timings this process observed.
 */
import type { AttemptInfo, RoundDetail, RoundInfo, RoundsResponse, SiteEval } from '../../proto/index.js';
import type { EvalTracker } from '../shell/evals.js';
import type { RoundTimeline } from '../shell/timeline.js';
import type { JournalRecord } from '../state/journal.js';
import { recordsOf } from '../state/records.js';

type EvalFields = { evals: SiteEval[]; evalLoss: number; hasEval: boolean };

function evalOf(evals: EvalTracker, modelRound: number): EvalFields {
  const e = evals.result(modelRound);
  return e
    ? { evals: e.sites.map((x) => ({ siteId: x.site, loss: x.loss, samples: x.samples })), evalLoss: e.loss, hasEval: true }
    : { evals: [], evalLoss: 0, hasEval: false };
}

/** Every committed and aborted attempt of `runId`, in journal order. */
export function roundsOf(records: readonly JournalRecord[], runId: string, evals: EvalTracker): RoundsResponse {
  const rounds: RoundInfo[] = [];
  for (const r of records) {
    const b = r.body;
    if (b['runId'] !== runId) continue;
    if (b.type === 'round-committed') {
      const c = recordsOf([b], runId, 'round-committed')[0]!;
      rounds.push({
        round: c.round,
        attempt: c.attempt,
        outcome: 'committed',
        participants: c.participants.map((p) => p.site),
        dropped: [...c.dropped],
        modelSha256: c.modelSha256,
        parentSha256: c.parentSha256,
        bytesUp: c.bytesUp,
        bytesDown: c.bytesDown,
        startedMs: c.startedMs,
        finishedMs: r.ts,
        strategy: c.strategy.name,
        ...evalOf(evals, c.round),
      });
    } else if (b.type === 'round-aborted') {
      const a = recordsOf([b], runId, 'round-aborted')[0]!;
      rounds.push({ round: a.round, attempt: a.attempt, outcome: 'aborted', reason: a.reason, finishedMs: r.ts });
    }
  }
  const initial = evalOf(evals, 0);
  return { rounds, initialEvals: initial.evals, initialEvalLoss: initial.evalLoss, hasInitialEval: initial.hasEval };
}

/** Every attempt of round `round` of `runId`: outcome, participants, phases, bytes, hashes, eval. */
export function roundDetail(records: readonly JournalRecord[], runId: string, round: number, evals: EvalTracker, timeline: RoundTimeline): RoundDetail | undefined {
  const attempts = new Map<number, AttemptInfo>();
  const phases = (attempt: number) =>
    timeline.phases(runId, round, attempt).map((p) => ({ phase: p.phase, startedMs: p.startedMs, durationMs: p.endedMs === undefined ? 0 : p.endedMs - p.startedMs }));
  for (const r of records) {
    const b = r.body;
    if (b['runId'] !== runId || b['round'] !== round) continue;
    const attempt = Number(b['attempt']);
    if (b.type === 'round-opened') {
      attempts.set(attempt, { attempt, outcome: 'open', startedMs: r.ts, phases: phases(attempt) });
    } else if (b.type === 'round-aborted') {
      const a = recordsOf([b], runId, 'round-aborted')[0]!;
      attempts.set(attempt, { ...attempts.get(attempt), attempt, outcome: 'aborted', reason: a.reason, finishedMs: r.ts, phases: phases(attempt) });
    } else if (b.type === 'round-committed') {
      const c = recordsOf([b], runId, 'round-committed')[0]!;
      attempts.set(attempt, {
        attempt,
        outcome: 'committed',
        participants: c.participants.map((p) => ({
          siteId: p.site,
          weight: p.weight,
          samples: p.samples,
          tokens: p.tokens,
          steps: p.steps,
          trainLoss: p.trainLoss,
          deltaSha256: p.deltaSha256,
          dataManifestSha256: p.dataManifestSha256,
        })),
        dropped: [...c.dropped],
        phases: phases(attempt),
        bytesUp: c.bytesUp,
        bytesDown: c.bytesDown,
        modelSha256: c.modelSha256,
        parentSha256: c.parentSha256,
        startedMs: c.startedMs,
        finishedMs: r.ts,
      });
    }
  }
  if (attempts.size === 0) return undefined;
  return { runId, round, attempts: [...attempts.values()].sort((a, b) => (a.attempt ?? 0) - (b.attempt ?? 0)), ...evalOf(evals, round) };
}
