/**
 * The round history of `admin rounds` and the detail of `admin round N`, read from the journal
 * (the source of truth) plus the phase timings this process observed.
 */
import { z } from 'zod';
import { encodedWeight, meanErrorBound, type QuantizeOptions } from '../../aggregation/index.js';
import type { AttemptInfo, RoundDetail, RoundInfo, RoundsResponse, SiteEval } from '../../proto/index.js';
import { secureAggregationSchema } from '../config.js';
import { busyFraction, finishesOf } from '../observe/busy.js';
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

/** The run fields of a `run-started` record's audited config the quantization bound needs. */
const securedRun = z.object({
  run: z.object({ maxSiteWeight: z.number().positive(), secureAggregation: secureAggregationSchema }),
});

/**
 * The quantization of a secure run, from the config its `run-started` record kept (the run's
 * truth, not today's config); undefined for plain runs and journals without the config.
 */
function runQuantization(body: Record<string, unknown>): { readonly q: QuantizeOptions; readonly maxSiteWeight: number } | undefined {
  const parsed = securedRun.safeParse(body['config']);
  if (!parsed.success || !parsed.data.run.secureAggregation.enabled) return undefined;
  const { clip, quantBits, modulusBits } = parsed.data.run.secureAggregation;
  return { q: { clip, quantBits, modulusBits }, maxSiteWeight: parsed.data.run.maxSiteWeight };
}

/** n·c/((2^(q−1) − 1)·Σw) of a committed secure round, Σw from the participants' declared counts. */
function quantizationBound(quant: ReturnType<typeof runQuantization>, counts: readonly number[]): number {
  if (!quant || counts.length === 0) return 0;
  let weightSum = 0;
  for (const c of counts) {
    const w = encodedWeight(c, quant.maxSiteWeight);
    if (!w.ok) return 0;
    weightSum += w.value;
  }
  return meanErrorBound(counts.length, weightSum, quant.q);
}

/** Every committed and aborted attempt of `runId`, in journal order. */
export function roundsOf(records: readonly JournalRecord[], runId: string, evals: EvalTracker): RoundsResponse {
  const rounds: RoundInfo[] = [];
  let quant: ReturnType<typeof runQuantization>;
  for (const r of records) {
    const b = r.body;
    if (b['runId'] !== runId) continue;
    if (b.type === 'run-started') quant = runQuantization(b);
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
        quantizationBound: quantizationBound(quant, c.participants.map((p) => p.weight)),
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
  const previousFinishes = finishesOf(records, runId, round - 1);
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
          staleness: p.staleness ?? 0,
          foldedParts: p.folded?.length ?? 0,
          foldedCount: (p.folded ?? []).reduce((a, f) => a + f.count, 0),
          busyFraction: busyFraction(p, c.startedMs, r.ts, previousFinishes.get(p.site)) ?? -1,
          appliedStaleness: p.appliedStaleness ?? 0,
          busyMs: p.busyMs ?? 0,
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
