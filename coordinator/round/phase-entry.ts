/**
 * Entering the round scheduler's phases and leaving an attempt or a run: the transitions that both
 * the plain rows (`machine.ts`) and the secure rows (`secure.ts`) of the table end in.
 */
import type { AggregateState, Contribution, Effect, OpenState, RunPlan, SiteProgress, StepResult, TrainingState } from './types.js';
import { entered, ok, required, type Ctx } from './transition.js';
import { enterKeys } from './secure-entry.js';

/** Opens attempt `attempt` of `round`, or fails the run once it has used `plan.maxAttempts`. */
export function enterOpen(plan: RunPlan, round: number, attempt: number, ctx: Ctx, prior: readonly Effect[] = []): StepResult {
  if (attempt >= plan.maxAttempts) {
    const reason = `round ${round} failed ${plan.maxAttempts} attempts`;
    return ok(ctx, { phase: 'failed', plan, reason }, [...prior, { type: 'runFailed', reason }]);
  }
  const deadline = ctx.now + plan.deadlines.open;
  const open: OpenState = { phase: 'open', plan, round, attempt, deadline };
  const effects: Effect[] = [
    ...prior,
    { type: 'recordRoundOpened', round, attempt },
    ...entered(open, 'open'),
  ];
  const started = maybeStartTraining(open, ctx, false);
  if (started) return { ...started, effects: [...effects, ...(started.ok ? started.effects : [])] } as StepResult;
  return ok(ctx, open, effects);
}

/**
 * Moves `open` to `training` when the sites it waits for are there (or, at the deadline, enough are).
 * It waits for the expected sites that are not excused: an excused site could never come.
 */
export function maybeStartTraining(open: OpenState, ctx: Ctx, atDeadline: boolean): StepResult | undefined {
  const { plan } = open;
  const enough = ctx.connected.length >= required(plan);
  const awaited = plan.expectedSites.filter((s) => !ctx.excused.includes(s));
  const expectedHere = awaited.every((s) => ctx.connected.includes(s));
  if (!enough || (!expectedHere && !atDeadline)) return undefined;
  const invited = [...ctx.connected];
  if (plan.secure) return enterKeys(open, invited, ctx);
  return enterTraining(open, invited, ctx, []);
}

/** Invites `sites` to train (plain rounds: straight from `open`; secure: after `shares`). */
export function enterTraining(
  s: { plan: RunPlan; round: number; attempt: number },
  sites: readonly string[],
  ctx: Ctx,
  prior: readonly Effect[],
  earlyDropped: readonly string[] = [],
): StepResult {
  const roster: Record<string, SiteProgress> = {};
  for (const site of sites) roster[site] = { status: 'invited' };
  const training: TrainingState = {
    phase: 'training',
    plan: s.plan,
    round: s.round,
    attempt: s.attempt,
    deadline: ctx.now + s.plan.deadlines.training,
    roster,
    ...(earlyDropped.length > 0 ? { earlyDropped: [...earlyDropped] } : {}),
  };
  return ok(ctx, training, [
    ...prior,
    ...entered(training, 'training'),
    { type: 'sendTrainTasks', round: s.round, attempt: s.attempt, sites: [...sites] },
  ]);
}

/** Abandons this attempt (cancelling `cancel`) and opens the next attempt of the same round. */
export function abortAttempt(s: { plan: RunPlan; round: number; attempt: number }, reason: string, ctx: Ctx, cancel: readonly string[]): StepResult {
  const effects: Effect[] = [];
  if (cancel.length > 0) effects.push({ type: 'cancelSites', round: s.round, attempt: s.attempt, sites: cancel, reason });
  effects.push({ type: 'recordRoundAborted', round: s.round, attempt: s.attempt, reason });
  return enterOpen(s.plan, s.round, s.attempt + 1, ctx, effects);
}

/** Starts aggregation; `unmaskDropped` are secure share holders whose masks must be removed. */
export function enterAggregate(
  s: { plan: RunPlan; round: number; attempt: number },
  participants: readonly Contribution[],
  dropped: readonly string[],
  unmaskDropped: readonly string[],
  ctx: Ctx,
  prior: readonly Effect[],
): StepResult {
  const agg: AggregateState = {
    phase: 'aggregate',
    plan: s.plan,
    round: s.round,
    attempt: s.attempt,
    deadline: ctx.now + s.plan.deadlines.aggregate,
    participants,
    dropped,
  };
  return ok(ctx, agg, [
    ...prior,
    ...entered(agg, 'aggregate'),
    { type: 'startAggregation', round: s.round, attempt: s.attempt, participants, dropped: unmaskDropped },
  ]);
}

/** Stops the run: cancels `cancel`, records the abort and fails the run with `reason`. */
export function abortRun(s: { plan: RunPlan; round: number; attempt: number }, reason: string, ctx: Ctx, cancel: readonly string[]): StepResult {
  const effects: Effect[] = [];
  if (cancel.length > 0) effects.push({ type: 'cancelSites', round: s.round, attempt: s.attempt, sites: cancel, reason });
  effects.push({ type: 'recordRoundAborted', round: s.round, attempt: s.attempt, reason });
  effects.push({ type: 'runFailed', reason });
  return ok(ctx, { phase: 'failed', plan: s.plan, reason }, effects);
}
