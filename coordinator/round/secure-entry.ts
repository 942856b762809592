/**
 * Entering the secure-aggregation phases (SecAgg+, Bonawitz et al. 2017; Bell et al. 2020): `keys`
 * after `open`, `unmask` after `upload`. Apart from `secure.ts` (their rows of the table) because the
 * plain phase entries call these, and `secure.ts` calls the plain ones.
 */
import type { Contribution, Effect, ExchangeProgress, KeysState, OpenState, RunPlan, StepResult, UnmaskState, UploadState } from './types.js';
import { entered, ok, type Ctx } from './transition.js';

/** A secure phase's deadline; it defaults to the upload deadline. */
export function deadlineOf(plan: RunPlan, phase: 'keys' | 'shares' | 'unmask'): number {
  return plan.deadlines[phase] ?? plan.deadlines.upload;
}

/** Round 0: every invited site makes and signs fresh key pairs for this attempt. */
export function enterKeys(open: OpenState, invited: readonly string[], ctx: Ctx): StepResult {
  const exchange: Record<string, ExchangeProgress> = {};
  for (const s of invited) exchange[s] = 'waiting';
  const keys: KeysState = { ...open, phase: 'keys', deadline: ctx.now + deadlineOf(open.plan, 'keys'), exchange };
  return ok(ctx, keys, [...entered(keys, 'keys'), { type: 'sendKeysTasks', round: open.round, attempt: open.attempt, sites: [...invited] }]);
}

/** After upload: survivors (their masked input is in the sum) first sign the survivor list. */
export function enterUnmask(
  s: UploadState,
  participants: readonly Contribution[],
  dropped: readonly string[],
  recordDropped: readonly string[],
  ctx: Ctx,
  prior: readonly Effect[],
): StepResult {
  const unmask: UnmaskState = {
    phase: 'unmask',
    plan: s.plan,
    round: s.round,
    attempt: s.attempt,
    deadline: ctx.now + deadlineOf(s.plan, 'unmask'),
    step: 'consistency',
    participants,
    dropped,
    recordDropped,
    signed: [],
    revealed: [],
    gone: [],
  };
  const survivors = participants.map((p) => p.site);
  return ok(ctx, unmask, [
    ...prior,
    ...entered(unmask, 'unmask'),
    { type: 'requestConsistency', round: s.round, attempt: s.attempt, survivors, dropped: [...dropped] },
  ]);
}
