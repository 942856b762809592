/**
 * The round scheduler: `step(state, event, now) → { state, effects }` with one transition table.
 * Pure: no clock, timer, socket or disk. The shell feeds it events and runs the effects it returns.
 */
import type {
  Contribution,
  Effect,
  OpenState,
  RefusalCode,
  RunState,
  SchedulerEvent,
  SchedulerEventType,
  SchedulerState,
  SiteProgress,
  StepResult,
  TrainingState,
  UploadState,
} from './types.js';
import { REFUSAL_CODES } from './types.js';
import { current, entered, ok, refuse, required, sitesWith, stay, withPrior, type Ctx, type EventOf, type Handler, type PhaseTable, type RoundEvent, type StateOf } from './transition.js';
import { abortAttempt, abortRun, enterAggregate, enterOpen, maybeStartTraining } from './phase-entry.js';
import { enterUnmask } from './secure-entry.js';
import { secureTable } from './secure.js';

type Table = { readonly [P in RunState['phase']]: PhaseTable<P> };

/** The initial scheduler state: no run, nobody connected or excused. */
export function initialSchedulerState(): SchedulerState {
  return { connected: [], excused: [], run: { phase: 'idle' } };
}

/** Advances the scheduler by one event. Unknown (state, event) pairs return a typed refusal. */
export function step(state: SchedulerState, event: SchedulerEvent, now: number): StepResult {
  const ctx: Ctx = { connected: connectedAfter(state.connected, event), excused: excusedAfter(state.excused, event), now };
  const table = TABLE[state.run.phase] as Record<string, Handler<RunState['phase'], SchedulerEventType> | undefined>;
  const stale = staleness(state.run, event);
  if (stale) return refuse(state.run, event, REFUSAL_CODES.stale, stale);
  const handler = table[event.type];
  if (!handler) return refuse(state.run, event, REFUSAL_CODES.invalidInPhase, `${event.type} is not valid in ${state.run.phase}`);
  return handler(state.run as never, event as never, ctx);
}

/** Late events are harmless whatever the phase: anything naming another attempt (or phase, for a timer). */
function staleness(run: RunState, event: SchedulerEvent): string | undefined {
  if (!('round' in event) || event.type === 'runStarted' || run.phase === 'idle') return undefined;
  if (run.phase === 'finished' || run.phase === 'failed') return `${event.type} for ${event.round}.${event.attempt} after the run ${run.phase}`;
  if (event.round !== run.round || event.attempt !== run.attempt) return `${event.type} for ${event.round}.${event.attempt}, current is ${run.round}.${run.attempt}`;
  if (event.type === 'deadline' && event.phase !== run.phase) return `deadline for ${event.phase}, current phase is ${run.phase}`;
  return undefined;
}

function connectedAfter(connected: readonly string[], event: SchedulerEvent): readonly string[] {
  if (event.type === 'siteConnected' && !connected.includes(event.site)) return [...connected, event.site].sort();
  if (event.type === 'siteDisconnected') return connected.filter((s) => s !== event.site);
  return connected;
}

function excusedAfter(excused: readonly string[], event: SchedulerEvent): readonly string[] {
  if (event.type !== 'siteExcused') return excused;
  const others = excused.filter((s) => s !== event.site);
  return event.excused ? [...others, event.site].sort() : others;
}

// ------------------------------------------------------------------ phase entry

// ------------------------------------------------------------------ roster rules

function contributions(roster: Readonly<Record<string, SiteProgress>>): Contribution[] {
  return sitesWith(roster, 'uploaded').map((site) => {
    const p = roster[site] as Extract<SiteProgress, { status: 'uploaded' }>;
    return { site, weight: p.weight };
  });
}

/**
 * Re-evaluates a training/upload state after its roster changed or its deadline passed: abort when
 * k-of-n can no longer be reached, move on when nobody is still working, otherwise stay.
 */
function settle(s: TrainingState | UploadState, ctx: Ctx, atDeadline: boolean, prior: readonly Effect[]): StepResult {
  const { plan, roster } = s;
  const stillTraining = sitesWith(roster, 'invited');
  const stillUploading = sitesWith(roster, 'uploading');
  const alive = sitesWith(roster, 'invited', 'uploading', 'uploaded');
  if (alive.length < required(plan)) {
    const reason = `only ${alive.length} of ${required(plan)} required sites remain`;
    return withPrior(abortAttempt(s, reason, ctx, [...stillTraining, ...stillUploading]), prior);
  }
  if (s.phase === 'training') {
    if (atDeadline) {
      const late = stillTraining;
      const next: Record<string, SiteProgress> = { ...roster };
      for (const site of late) next[site] = { status: 'dropped', reason: 'training deadline passed' };
      const cancel: Effect[] = late.length > 0
        ? [{ type: 'cancelSites', round: s.round, attempt: s.attempt, sites: late, reason: 'training deadline passed' }]
        : [];
      return toUpload({ ...s, roster: next }, ctx, [...prior, ...cancel]);
    }
    if (stillTraining.length === 0) return toUpload(s, ctx, prior);
    return ok(ctx, s, prior);
  }
  // upload phase
  if (atDeadline) {
    const late = stillUploading;
    const next: Record<string, SiteProgress> = { ...roster };
    for (const site of late) next[site] = { status: 'dropped', reason: 'upload deadline passed' };
    const cancel: Effect[] = late.length > 0
      ? [{ type: 'cancelSites', round: s.round, attempt: s.attempt, sites: late, reason: 'upload deadline passed' }]
      : [];
    return toAggregate({ ...s, roster: next }, ctx, [...prior, ...cancel]);
  }
  if (stillUploading.length === 0 && stillTraining.length === 0) return toAggregate(s, ctx, prior);
  return ok(ctx, s, prior);
}

function toUpload(s: TrainingState, ctx: Ctx, prior: readonly Effect[]): StepResult {
  const alive = sitesWith(s.roster, 'uploading', 'uploaded');
  if (alive.length < required(s.plan)) {
    return withPrior(abortAttempt(s, `only ${alive.length} of ${required(s.plan)} required sites finished training`, ctx, sitesWith(s.roster, 'uploading')), prior);
  }
  const upload: UploadState = { ...s, phase: 'upload', deadline: ctx.now + s.plan.deadlines.upload };
  if (sitesWith(s.roster, 'uploading').length === 0) return toAggregate(upload, ctx, [...prior, ...entered(upload, 'upload')]);
  return ok(ctx, upload, [...prior, ...entered(upload, 'upload')]);
}

function toAggregate(s: UploadState, ctx: Ctx, prior: readonly Effect[]): StepResult {
  const participants = contributions(s.roster);
  if (participants.length < required(s.plan)) {
    return withPrior(
      abortAttempt(s, `only ${participants.length} of ${required(s.plan)} required uploads completed`, ctx, sitesWith(s.roster, 'invited', 'uploading')),
      prior,
    );
  }
  const dropped = sitesWith(s.roster, 'dropped', 'invited', 'uploading');
  const recordDropped = [...dropped, ...(s.earlyDropped ?? [])].sort();
  if (s.plan.secure) return enterUnmask(s, participants, dropped, recordDropped, ctx, prior);
  return enterAggregate(s, participants, recordDropped, [], ctx, prior);
}

// ------------------------------------------------------------------ event guards

function siteEvent(
  s: TrainingState | UploadState,
  e: RoundEvent & { site: string; type: SchedulerEventType },
  ctx: Ctx,
  apply: (p: SiteProgress) => SiteProgress | RefusalCode,
): StepResult {
  if (!current(s, e)) return refuse(s, e as SchedulerEvent, REFUSAL_CODES.stale, `event for round ${e.round}.${e.attempt}, current is ${s.round}.${s.attempt}`);
  const progress = s.roster[e.site];
  if (!progress) return refuse(s, e as SchedulerEvent, REFUSAL_CODES.notInvited, `site ${e.site} is not part of round ${s.round}.${s.attempt}`);
  const next = apply(progress);
  if (typeof next === 'string') return refuse(s, e as SchedulerEvent, next, `${e.type} from ${e.site} while it is ${progress.status}`);
  return settle({ ...s, roster: { ...s.roster, [e.site]: next } }, ctx, false, []);
}

const onUploadStarted = (p: SiteProgress): SiteProgress | RefusalCode =>
  p.status === 'invited' ? { status: 'uploading' } : p.status === 'dropped' ? REFUSAL_CODES.notInvited : REFUSAL_CODES.duplicate;

function onUploadCompleted(weight: number) {
  return (p: SiteProgress): SiteProgress | RefusalCode =>
    p.status === 'uploading' ? { status: 'uploaded', weight } : p.status === 'uploaded' ? REFUSAL_CODES.duplicate : p.status === 'dropped' ? REFUSAL_CODES.notInvited : REFUSAL_CODES.invalidInPhase;
}

function onSiteFailed(reason: string) {
  return (p: SiteProgress): SiteProgress | RefusalCode =>
    p.status === 'invited' || p.status === 'uploading' ? { status: 'dropped', reason } : REFUSAL_CODES.duplicate;
}

function disconnect(s: TrainingState | UploadState, site: string, ctx: Ctx): StepResult {
  const p = s.roster[site];
  if (!p || (p.status !== 'invited' && p.status !== 'uploading')) return ok(ctx, s);
  return settle({ ...s, roster: { ...s.roster, [site]: { status: 'dropped', reason: 'disconnected' } } }, ctx, false, []);
}

function deadline<P extends RunState['phase']>(s: StateOf<P> & { round: number; attempt: number }, e: EventOf<'deadline'>): Refusal | undefined {
  if (!current(s, e) || e.phase !== s.phase) {
    return { code: REFUSAL_CODES.stale, phase: s.phase, event: e.type, message: `deadline for ${e.phase} of ${e.round}.${e.attempt} is stale` };
  }
  return undefined;
}
type Refusal = Extract<StepResult, { ok: false }>['refusal'];

const startRun = (_s: RunState, e: EventOf<'runStarted'>, ctx: Ctx): StepResult => {
  if (e.round > e.plan.rounds) return ok(ctx, { phase: 'finished', plan: e.plan }, [{ type: 'runFinished', rounds: e.plan.rounds }]);
  return enterOpen(e.plan, e.round, e.attempt, ctx);
};

// ------------------------------------------------------------------ the transition table

/** A site came, or need no longer be waited for: `open` may start training now. */
const reconsiderOpen = (s: OpenState, _e: SchedulerEvent, ctx: Ctx): StepResult => maybeStartTraining(s, ctx, false) ?? ok(ctx, s);

/** Training and upload take the same events: both track each invited site's progress on one roster. */
function rosterRows<P extends 'training' | 'upload'>(): PhaseTable<P> {
  const rows: PhaseTable<'training'> = {
    siteConnected: stay,
    siteDisconnected: (s, e, ctx) => disconnect(s, e.site, ctx),
    siteExcused: stay,
    uploadStarted: (s, e, ctx) => siteEvent(s, e, ctx, onUploadStarted),
    uploadCompleted: (s, e, ctx) => siteEvent(s, e, ctx, onUploadCompleted(e.weight)),
    siteFailed: (s, e, ctx) => siteEvent(s, e, ctx, onSiteFailed(e.reason)),
    deadline: (s, e, ctx) => {
      const stale = deadline(s, e);
      return stale ? { ok: false, refusal: stale } : settle(s, ctx, true, []);
    },
    abortRequested: (s, e, ctx) => abortRun(s, e.reason, ctx, sitesWith(s.roster, 'invited', 'uploading', 'uploaded')),
  };
  return rows as unknown as PhaseTable<P>;
}

const TABLE: Table = {
  ...secureTable(),
  idle: { runStarted: startRun, siteConnected: stay, siteDisconnected: stay, siteExcused: stay },
  finished: { runStarted: startRun, siteConnected: stay, siteDisconnected: stay, siteExcused: stay },
  failed: { runStarted: startRun, siteConnected: stay, siteDisconnected: stay, siteExcused: stay },
  open: {
    siteConnected: reconsiderOpen,
    siteDisconnected: stay,
    siteExcused: reconsiderOpen,
    deadline: (s, e, ctx) => {
      const stale = deadline(s, e);
      if (stale) return { ok: false, refusal: stale };
      return maybeStartTraining(s, ctx, true) ?? abortAttempt(s, `only ${ctx.connected.length} of ${required(s.plan)} required sites connected`, ctx, []);
    },
    abortRequested: (s, e, ctx) => abortRun(s, e.reason, ctx, []),
  },
  training: rosterRows<'training'>(),
  upload: rosterRows<'upload'>(),
  aggregate: {
    siteConnected: stay,
    siteDisconnected: stay,
    siteExcused: stay,
    aggregated: (s, e, ctx) => {
      if (!current(s, e)) return refuse(s, e, REFUSAL_CODES.stale, `aggregation result for ${e.round}.${e.attempt} is stale`);
      const commit = { ...s, phase: 'commit' as const, modelSha256: e.modelSha256, deadline: ctx.now + s.plan.deadlines.commit };
      return ok(ctx, commit, [
        ...entered(commit, 'commit'),
        { type: 'commitRound', round: s.round, attempt: s.attempt, participants: s.participants, dropped: s.dropped, modelSha256: e.modelSha256 },
      ]);
    },
    aggregationFailed: (s, e, ctx) =>
      current(s, e) ? abortAttempt(s, `aggregation failed: ${e.reason}`, ctx, []) : refuse(s, e, REFUSAL_CODES.stale, 'stale aggregation failure'),
    deadline: (s, e, ctx) => {
      const stale = deadline(s, e);
      return stale ? { ok: false, refusal: stale } : abortAttempt(s, 'aggregation deadline passed', ctx, []);
    },
    abortRequested: (s, e, ctx) => abortRun(s, e.reason, ctx, []),
  },
  commit: {
    siteConnected: stay,
    siteDisconnected: stay,
    siteExcused: stay,
    committed: (s, e, ctx) => {
      if (!current(s, e)) return refuse(s, e, REFUSAL_CODES.stale, `commit of ${e.round}.${e.attempt} is stale`);
      if (s.round >= s.plan.rounds) return ok(ctx, { phase: 'finished', plan: s.plan }, [{ type: 'runFinished', rounds: s.plan.rounds }]);
      return enterOpen(s.plan, s.round + 1, 0, ctx);
    },
    // A commit that cannot finish in time is a storage failure: the run stops rather than guess.
    deadline: (s, e, ctx) => {
      const stale = deadline(s, e);
      if (stale) return { ok: false, refusal: stale };
      // commitRound may already be in the journal: fail the run without recording an abort, and
      // let a restart's replay decide whether the round was committed.
      const reason = 'commit deadline passed';
      return ok(ctx, { phase: 'failed', plan: s.plan, reason }, [{ type: 'runFailed', reason }]);
    },
  },
};
