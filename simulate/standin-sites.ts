/**
 * Sites of unequal speed for `fedhpc simulate --site-speeds` and `--budget-s` (issue 16): each
 * site runs the stand-in trainer (`site-agent/runners/standin.ts`), which spends its time as a GPU
 * would — sleeping `stepMs / speed` a step — and the run gives each round a time budget, so a fast
 * site takes more steps than a slow one. What the run needs for a budget is sized here: token
 * weighting, a deadline past the budget and the largest weight an honest site can declare.
 */
import type { StandinRunnerOptions } from '../site-agent/index.js';

/** Milliseconds a stand-in step takes at speed 1 in a simulation. */
export const STANDIN_STEP_MS = 50;

/** The stand-in sites' batch: 8 sequences of 256 tokens a step. */
const STANDIN_BATCH = { batch_size: 8, seq_len: 256 } as const;

/** Training settings of stand-in sites without a budget: 20 steps a round (1 s at speed 1). */
export const STANDIN_TRAIN = { max_steps: 20, ...STANDIN_BATCH } as const;

/** The stand-in sites of a simulation: their relative speeds, one per site. */
export interface StandinSites {
  readonly speeds: readonly number[];
  readonly stepMs: number;
}

/** The runner config of stand-in site `index` (0-based): its speed, and a target of its own. */
export function standinRunner(sites: StandinSites, index: number): StandinRunnerOptions {
  return { kind: 'standin', speed: sites.speeds[index] ?? 1, stepMs: sites.stepMs, seed: index + 1 };
}

/** The parts of `run` a simulation's training decides. */
export interface SimulatedTraining {
  readonly train: Record<string, unknown>;
  /** Budgeted rounds weigh deltas by tokens. */
  readonly weighting?: 'tokens';
  readonly maxSiteWeight?: number;
  /** `deadlines.trainingS`. */
  readonly trainingS: number;
}

/** The training deadline when no budget asks for more. */
const TRAINING_S = 120;

/**
 * The run's training for a time budget of `budgetS` seconds a round, or `base` when there is none.
 * Budgeted: weighting by tokens, a training deadline a minute past the budget, and maxSiteWeight
 * the tokens of the most steps an honest site can start within the budget, plus one batch — for
 * stand-ins ⌈S · speed / step time⌉ steps (their steps are paced by the clock, never faster); for
 * the builtin trainer one step a millisecond, far faster than its CPU steps (tens of ms each).
 * `overlap` (stand-ins with a budget only; the caller checks) makes the run's syncs overlapped.
 */
export function simulatedTraining(base: Readonly<Record<string, unknown>>, budgetS: number | undefined, standin: StandinSites | undefined, overlap = false): SimulatedTraining {
  if (budgetS === undefined) return { train: { ...base }, trainingS: TRAINING_S };
  const trainingS = Math.max(TRAINING_S, Math.ceil(budgetS) + 60);
  if (standin) {
    const fastest = Math.max(...standin.speeds);
    // Overlapped, a sync whose global comes late trains on until it is applied: room for the budget
    // again (a sync slower than the budget), so maxSiteWeight is sized for twice the budget.
    const seconds = overlap ? 2 * budgetS : budgetS;
    const steps = Math.ceil((seconds * 1000 * fastest) / standin.stepMs) + 1;
    const tokensPerStep = STANDIN_BATCH.batch_size * STANDIN_BATCH.seq_len;
    const train = { ...STANDIN_BATCH, budget: { seconds: budgetS }, ...(overlap ? { overlap: { mode: 'whole-model' } } : {}) };
    return { train, weighting: 'tokens', maxSiteWeight: steps * tokensPerStep, trainingS };
  }
  const { steps: _steps, ...builtin } = base;
  const batch = typeof base['batchSize'] === 'number' ? base['batchSize'] : 1;
  return { train: { ...builtin, budget: { seconds: budgetS } }, weighting: 'tokens', maxSiteWeight: (Math.ceil(budgetS * 1000) + 1) * batch, trainingS };
}
