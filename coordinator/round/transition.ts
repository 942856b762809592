/**
 * The pieces every row of the round scheduler's transition table is built from: the table's types,
 * the step results (`ok`, `refuse`) and small roster and event guards. A leaf: it imports only the
 * scheduler's types, so the plain (`machine.ts`, `phase-entry.ts`) and secure (`secure.ts`,
 * `secure-entry.ts`) halves share it without importing each other in a circle.
 */
import type {
  Effect,
  PhaseName,
  RefusalCode,
  RunPlan,
  RunState,
  SchedulerEvent,
  SchedulerEventType,
  SiteProgress,
  StepResult,
} from './types.js';

/** The scheduler event of one type. */
export type EventOf<T extends SchedulerEventType> = Extract<SchedulerEvent, { type: T }>;

/** The run state of one phase. */
export type StateOf<P extends RunState['phase']> = Extract<RunState, { phase: P }>;

/** One cell of the transition table: the step a phase takes on one event type. */
export type Handler<P extends RunState['phase'], T extends SchedulerEventType> = (
  run: StateOf<P>,
  event: EventOf<T>,
  ctx: Ctx,
) => StepResult;

/** One phase's row of the transition table; a missing event type is refused as invalid in the phase. */
export type PhaseTable<P extends RunState['phase']> = { readonly [T in SchedulerEventType]?: Handler<P, T> };

/** What every transition sees besides the run state: who is connected or excused, and the time. */
export interface Ctx {
  readonly connected: readonly string[];
  readonly excused: readonly string[];
  readonly now: number;
}

/**
 * The fewest sites a round may continue with: k of k-of-n and, under secure aggregation, the
 * Shamir threshold t (fewer than t survivors could never unmask).
 */
export function required(plan: RunPlan): number {
  return Math.max(plan.minSites, plan.secure?.threshold ?? 0);
}

/** A typed refusal of `event` in `run`'s phase; the state stays as it was. */
export function refuse(run: RunState, event: SchedulerEvent, code: RefusalCode, message: string): StepResult {
  return { ok: false, refusal: { code, phase: run.phase, event: event.type, message } };
}

/** A successful step to `run`, carrying the connected and excused sets forward. */
export function ok(ctx: Ctx, run: RunState, effects: readonly Effect[] = []): StepResult {
  return { ok: true, state: { connected: ctx.connected, excused: ctx.excused, run }, effects };
}

/** The effects of entering a phase: announce it and arm its deadline. */
export function entered(s: { round: number; attempt: number; deadline: number }, phase: PhaseName): Effect[] {
  return [
    { type: 'phaseEntered', round: s.round, attempt: s.attempt, phase, deadline: s.deadline },
    { type: 'armDeadline', round: s.round, attempt: s.attempt, phase, at: s.deadline },
  ];
}

/** The roster's sites in any of `statuses`, sorted. */
export function sitesWith(roster: Readonly<Record<string, SiteProgress>>, ...statuses: SiteProgress['status'][]): string[] {
  return Object.keys(roster)
    .filter((s) => statuses.includes(roster[s]!.status))
    .sort();
}

/** Prepends effects already decided to a step's own. */
export function withPrior(result: StepResult, prior: readonly Effect[]): StepResult {
  return result.ok ? { ...result, effects: [...prior, ...result.effects] } : result;
}

/** The round and attempt an event names. */
export type RoundEvent = { round: number; attempt: number };

/** Whether an event names the attempt in progress. */
export function current(s: { round: number; attempt: number }, e: RoundEvent): boolean {
  return s.round === e.round && s.attempt === e.attempt;
}

/** A transition that changes nothing (events harmless in a phase). */
export const stay = <S extends RunState>(s: S, _e: SchedulerEvent, ctx: Ctx): StepResult => ok(ctx, s);
