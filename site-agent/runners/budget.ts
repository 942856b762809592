/**
 * A round's training budget (`run.train.budget`, issue 16): train until S seconds of training have
 * elapsed, or until the tokens reach T, instead of (or capped by) a step count. Each runner reads
 * it from the run's training settings here; the job runners pass it to the trainer as
 * `spec.json`'s `budget` (contract version 2, docs/protocol.md "The trainer contract").
 */
import { trainBudgetSchema, type TrainBudget } from '../../common/train-budget.js';
import { SiteAgentError } from '../errors.js';

export { trainBudgetSchema, type TrainBudget };

/**
 * The budget of a run's training settings, undefined when there is none. A malformed one is the
 * run's mistake, the same at every site: a permanent SPEC_INVALID.
 */
export function readTrainBudget(train: Readonly<Record<string, unknown>>): TrainBudget | undefined {
  const value = train['budget'];
  if (value === undefined) return undefined;
  const parsed = trainBudgetSchema.safeParse(value);
  if (!parsed.success) {
    throw new SiteAgentError('SPEC_INVALID', `run.train.budget must be {"seconds": S} or {"tokens": T} with S > 0 and T a positive integer, got ${JSON.stringify(value)?.slice(0, 200)}`, false);
  }
  return parsed.data;
}

/**
 * The steps a shard takes when they are known before it starts: a step count alone; a token
 * budget's ⌈T / tokensPerStep⌉ (the step that reaches T is taken), capped by the step count.
 * Undefined under a time budget without a cap: the trainer's speed decides.
 */
export function plannedShardSteps(budget: TrainBudget | undefined, maxSteps: number | undefined, tokensPerStep: number): number | undefined {
  if (budget === undefined) return maxSteps;
  if ('tokens' in budget) {
    const steps = Math.ceil(budget.tokens / tokensPerStep);
    return maxSteps === undefined ? steps : Math.min(steps, maxSteps);
  }
  return maxSteps;
}

/**
 * Whether a shard that has taken `stepsDone` steps in `elapsedMs` of training starts another: not
 * past its planned steps, and under a time budget only while the budget is not spent (the step
 * running when it runs out finishes). The first step is always taken.
 */
export function budgetAllows(budget: TrainBudget | undefined, planned: number | undefined, stepsDone: number, elapsedMs: number): boolean {
  if (planned !== undefined && stepsDone >= planned) return false;
  if (budget !== undefined && 'seconds' in budget) return stepsDone === 0 || elapsedMs < budget.seconds * 1000;
  return true;
}

/** A progress line's `steps`: the planned steps, or under a time budget what the pace so far reaches. */
export function stepsEstimate(budget: TrainBudget | undefined, planned: number | undefined, stepsDone: number, elapsedMs: number): number {
  if (planned !== undefined) return planned;
  if (budget === undefined || !('seconds' in budget) || stepsDone === 0 || elapsedMs <= 0) return Math.max(1, stepsDone);
  return Math.max(stepsDone, Math.round((budget.seconds * 1000 * stepsDone) / elapsedMs));
}
