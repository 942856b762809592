/**
 * Fixtures for the round scheduler tests: a plan, one canonical state per run phase, one canonical
 * event per event type, and helpers that drive `step` and unwrap its result.
 */
import { expect } from 'vitest';
import { initialSchedulerState, step } from '../../../coordinator/round/machine.js';
import type {
  Contribution,
  Effect,
  PhaseName,
  RefusalCode,
  RunPlan,
  RunState,
  SchedulerEvent,
  SchedulerEventType,
  SchedulerState,
  SiteProgress,
  StepResult,
} from '../../../coordinator/round/types.js';

/** The fixed fake clock: every test starts here and moves `now` by hand. */
export const T0 = 1_700_000_000_000;

export const DEADLINES = { open: 1_000, training: 10_000, upload: 5_000, aggregate: 3_000, commit: 2_000 } as const;

/** Two rounds, k = 2, three attempts per round, start at minSites. */
export function makePlan(overrides: Partial<RunPlan> = {}): RunPlan {
  return {
    runId: 'run-1',
    rounds: 2,
    minSites: 2,
    expectedSites: [],
    deadlines: DEADLINES,
    maxAttempts: 3,
    ...overrides,
  };
}

export const PLAN = makePlan();

/** Every run phase, in the order the matrix lists them. */
export const RUN_PHASES = ['idle', 'open', 'training', 'upload', 'aggregate', 'commit', 'finished', 'failed'] as const satisfies readonly RunState['phase'][];
export type RunPhase = (typeof RUN_PHASES)[number];

/** Every event type, in the order the matrix lists them. */
export const EVENT_TYPES = [
  'runStarted',
  'siteConnected',
  'siteDisconnected',
  'uploadStarted',
  'uploadCompleted',
  'siteFailed',
  'deadline',
  'aggregated',
  'aggregationFailed',
  'committed',
  'abortRequested',
  'siteExcused',
] as const satisfies readonly SchedulerEventType[];

/** Event types that name a round and attempt (and so can be stale). */
export const ROUND_TAGGED = [
  'uploadStarted',
  'uploadCompleted',
  'siteFailed',
  'deadline',
  'aggregated',
  'aggregationFailed',
  'committed',
] as const satisfies readonly SchedulerEventType[];

const ALL = ['a', 'b', 'c'] as const;
const baseRound = { plan: PLAN, round: 1, attempt: 0 } as const;

/** A scheduler state with `run`, `connected` sites (a, b, c unless told) and nobody excused. */
export function withRun(run: RunState, connected: readonly string[] = ALL): SchedulerState {
  return { connected: [...connected], excused: [], run };
}

/**
 * One representative state per phase, all in round 1 attempt 0 of PLAN. The rosters mix statuses so
 * that the canonical events (all about site `a`) hit interesting rules:
 * - open: only `a` is connected, below minSites, so it keeps waiting;
 * - training: `a` is uploading, `b` and `c` are still training;
 * - upload: `a` is uploading, `b` uploaded (weight 20), `c` was dropped at the training deadline;
 * - aggregate / commit: `a` (10) and `b` (20) contributed, `c` was dropped.
 */
export function canonicalState(phase: RunPhase): SchedulerState {
  const participants: Contribution[] = [
    { site: 'a', weight: 10 },
    { site: 'b', weight: 20 },
  ];
  switch (phase) {
    case 'idle':
      return initialSchedulerState();
    case 'open':
      return withRun({ ...baseRound, phase: 'open', deadline: T0 + DEADLINES.open }, ['a']);
    case 'training':
      return withRun({
        ...baseRound,
        phase: 'training',
        deadline: T0 + DEADLINES.training,
        roster: { a: { status: 'uploading' }, b: { status: 'invited' }, c: { status: 'invited' } },
      });
    case 'upload':
      return withRun({
        ...baseRound,
        phase: 'upload',
        deadline: T0 + DEADLINES.upload,
        roster: {
          a: { status: 'uploading' },
          b: { status: 'uploaded', weight: 20 },
          c: { status: 'dropped', reason: 'training deadline passed' },
        },
      });
    case 'aggregate':
      return withRun({ ...baseRound, phase: 'aggregate', deadline: T0 + DEADLINES.aggregate, participants, dropped: ['c'] });
    case 'commit':
      return withRun({ ...baseRound, phase: 'commit', deadline: T0 + DEADLINES.commit, participants, dropped: ['c'], modelSha256: 'sha-r1' });
    case 'finished':
      return withRun({ phase: 'finished', plan: PLAN });
    case 'failed':
      return withRun({ phase: 'failed', plan: PLAN, reason: 'earlier failure' });
  }
}

/** The phase name a deadline event for `phase` carries (idle/finished/failed have none: use `open`). */
function deadlinePhase(phase: RunPhase): PhaseName {
  return phase === 'idle' || phase === 'finished' || phase === 'failed' ? 'open' : phase;
}

/**
 * One representative event per type, naming round 1 attempt 0 (the canonical states' attempt) and,
 * for `deadline`, the phase of `phase`. Site events are about `a`; `siteConnected` brings a new `d`;
 * `siteExcused` excuses `c`.
 */
export function canonicalEvent(type: SchedulerEventType, phase: RunPhase, at = { round: 1, attempt: 0 }): SchedulerEvent {
  switch (type) {
    case 'runStarted':
      return { type, plan: PLAN, round: 1, attempt: 0 };
    case 'siteConnected':
      return { type, site: 'd' };
    case 'siteDisconnected':
      return { type, site: 'a' };
    case 'uploadStarted':
      return { type, site: 'a', ...at };
    case 'uploadCompleted':
      return { type, site: 'a', ...at, weight: 10 };
    case 'siteFailed':
      return { type, site: 'a', ...at, reason: 'CUDA out of memory' };
    case 'deadline':
      return { type, ...at, phase: deadlinePhase(phase) };
    case 'aggregated':
      return { type, ...at, modelSha256: 'sha-new' };
    case 'aggregationFailed':
      return { type, ...at, reason: 'shape mismatch' };
    case 'committed':
      return { type, ...at };
    case 'abortRequested':
      return { type, reason: 'operator abort' };
    case 'siteExcused':
      return { type, site: 'c', excused: true };
    case 'keysAdvertised':
    case 'sharesSubmitted':
    case 'survivorsSigned':
    case 'sharesRevealed':
      return { type, site: 'a', ...at };
  }
}

/** Unwraps an accepted step, failing the test with the refusal when it was refused. */
export function expectOk(result: StepResult): { state: SchedulerState; effects: readonly Effect[] } {
  if (!result.ok) expect.fail(`expected ok, got refusal ${result.refusal.code}: ${result.refusal.message}`);
  return { state: result.state, effects: result.effects };
}

/** Asserts a refusal with exactly `code`, for `event` in `phase`. */
export function expectRefusal(result: StepResult, code: RefusalCode, phase: RunState['phase'], event: SchedulerEventType): void {
  if (result.ok) expect.fail(`expected refusal ${code}, got ok in ${result.state.run.phase}`);
  expect(result.refusal.code).toBe(code);
  expect(result.refusal.phase).toBe(phase);
  expect(result.refusal.event).toBe(event);
  expect(result.refusal.message.length).toBeGreaterThan(0);
}

/** Narrows a run state to `phase`, failing the test otherwise. */
export function runIn<P extends RunState['phase']>(state: SchedulerState, phase: P): Extract<RunState, { phase: P }> {
  expect(state.run.phase).toBe(phase);
  return state.run as Extract<RunState, { phase: P }>;
}

/** Roster of a training/upload state. */
export function rosterOf(state: SchedulerState): Readonly<Record<string, SiteProgress>> {
  const run = state.run;
  if (run.phase !== 'training' && run.phase !== 'upload') return expect.fail(`no roster in ${run.phase}`);
  return run.roster;
}

/** A driver that keeps the state and the clock, and records every effect in order. */
export class Driver {
  state: SchedulerState;
  now: number;
  readonly effects: Effect[] = [];

  constructor(state: SchedulerState = initialSchedulerState(), now = T0) {
    this.state = state;
    this.now = now;
  }

  /** Feeds an event that must be accepted; returns the effects of this step only. */
  send(event: SchedulerEvent): readonly Effect[] {
    const { state, effects } = expectOk(step(this.state, event, this.now));
    this.state = state;
    this.effects.push(...effects);
    return effects;
  }

  /** Feeds an event that must be refused with `code`; the state must not change. */
  refuse(event: SchedulerEvent, code: RefusalCode): void {
    const before = this.state;
    expectRefusal(step(this.state, event, this.now), code, this.state.run.phase, event.type);
    expect(this.state).toBe(before);
  }

  /** Advances the fake clock. */
  advance(ms: number): void {
    this.now += ms;
  }

  /** Fires the deadline of the current phase at exactly its absolute time. */
  fireDeadline(): readonly Effect[] {
    const run = this.state.run;
    if (run.phase === 'idle' || run.phase === 'finished' || run.phase === 'failed') return expect.fail(`no deadline in ${run.phase}`);
    this.now = run.deadline;
    return this.send({ type: 'deadline', round: run.round, attempt: run.attempt, phase: run.phase });
  }

  /** A site trains, starts uploading and completes with `weight`, in the current attempt. */
  upload(site: string, weight: number): void {
    const { round, attempt } = this.current();
    this.send({ type: 'uploadStarted', site, round, attempt });
    this.send({ type: 'uploadCompleted', site, round, attempt, weight });
  }

  /** Round and attempt of the current in-round state. */
  current(): { round: number; attempt: number } {
    const run = this.state.run;
    if (run.phase === 'idle' || run.phase === 'finished' || run.phase === 'failed') return expect.fail(`no round in ${run.phase}`);
    return { round: run.round, attempt: run.attempt };
  }
}

/** Effects of one type, in order. */
export function effectsOf<T extends Effect['type']>(effects: readonly Effect[], type: T): Extract<Effect, { type: T }>[] {
  return effects.filter((e): e is Extract<Effect, { type: T }> => e.type === type);
}

/** `phaseEntered` + `armDeadline` for a phase entered at `now`. */
export function enteredEffects(round: number, attempt: number, phase: PhaseName, now: number): Effect[] {
  const deadline = now + DEADLINES[phase as keyof typeof DEADLINES];
  return [
    { type: 'phaseEntered', round, attempt, phase, deadline },
    { type: 'armDeadline', round, attempt, phase, at: deadline },
  ];
}

// ------------------------------------------------------------------ secure (SecAgg+) runs

/** Deadlines of a secure run: the three secure phases get their own, distinct from `upload`. */
export const SECURE_DEADLINES = { ...DEADLINES, keys: 2_000, shares: 4_000, unmask: 1_500 } as const;

/** A secure plan: PLAN's shape with `secure = { threshold }` (t = 2 unless told) and SECURE_DEADLINES. */
export function makeSecurePlan(overrides: Partial<RunPlan> = {}, threshold = 2): RunPlan {
  return makePlan({ deadlines: SECURE_DEADLINES, secure: { threshold }, ...overrides });
}

/** minSites 2, t = 2, two rounds, three attempts. */
export const SECURE_PLAN = makeSecurePlan();

/** Every run phase of a secure run, in the order the secure matrix lists them. */
export const SECURE_RUN_PHASES = [
  'idle',
  'open',
  'keys',
  'shares',
  'training',
  'upload',
  'unmask',
  'aggregate',
  'commit',
  'finished',
  'failed',
] as const satisfies readonly RunState['phase'][];
export type SecureRunPhase = (typeof SECURE_RUN_PHASES)[number];

/** The secure events, and every event type (the plain twelve plus these four). */
export const SECURE_ONLY_EVENTS = ['keysAdvertised', 'sharesSubmitted', 'survivorsSigned', 'sharesRevealed'] as const satisfies readonly SchedulerEventType[];
export const ALL_EVENT_TYPES = [...EVENT_TYPES, ...SECURE_ONLY_EVENTS] as const satisfies readonly SchedulerEventType[];
export const ALL_ROUND_TAGGED = [...ROUND_TAGGED, ...SECURE_ONLY_EVENTS] as const satisfies readonly SchedulerEventType[];

/** The secure matrix' rows: the eleven phases plus the reveal step of `unmask` (a second row for it). */
export type SecureRow = SecureRunPhase | 'unmask-reveal';

const secureRound = { plan: SECURE_PLAN, round: 1, attempt: 0 } as const;

/**
 * One representative state per secure row, all in round 1 attempt 0 of SECURE_PLAN (minSites 2,
 * t = 2) with a, b, c connected (open: only a). Events are about `a`:
 * - keys: a is still advertising, b and c are done;
 * - shares: a is still submitting, b and c are done, e was dropped during keys (not connected);
 * - training / upload: as the plain states, with e recorded as dropped early;
 * - unmask (consistency): a, b, c uploaded (10, 20, 30), share holder f did not, b signed;
 * - unmask (reveal): a and b signed, b revealed, c went away during unmask;
 * - aggregate / commit: a, b, c contributed; e (early) and f (share holder) are the round's dropped.
 */
export function canonicalSecureState(row: SecureRow): SchedulerState {
  const participants: Contribution[] = [
    { site: 'a', weight: 10 },
    { site: 'b', weight: 20 },
    { site: 'c', weight: 30 },
  ];
  const at = (phase: PhaseName) => T0 + SECURE_DEADLINES[phase];
  switch (row) {
    case 'idle':
      return initialSchedulerState();
    case 'open':
      return withRun({ ...secureRound, phase: 'open', deadline: at('open') }, ['a']);
    case 'keys':
      return withRun({ ...secureRound, phase: 'keys', deadline: at('keys'), exchange: { a: 'waiting', b: 'done', c: 'done' } });
    case 'shares':
      return withRun({ ...secureRound, phase: 'shares', deadline: at('shares'), exchange: { a: 'waiting', b: 'done', c: 'done', e: 'dropped' } });
    case 'training':
    case 'upload': {
      const plain = canonicalState(row).run;
      return withRun({ ...plain, plan: SECURE_PLAN, earlyDropped: ['e'] } as RunState);
    }
    case 'unmask':
    case 'unmask-reveal':
      return withRun({
        ...secureRound,
        phase: 'unmask',
        deadline: at('unmask'),
        step: row === 'unmask' ? 'consistency' : 'reveal',
        participants,
        dropped: ['f'],
        recordDropped: ['e', 'f'],
        signed: row === 'unmask' ? ['b'] : ['a', 'b'],
        revealed: row === 'unmask' ? [] : ['b'],
        gone: row === 'unmask' ? [] : ['c'],
      });
    case 'aggregate':
      return withRun({ ...secureRound, phase: 'aggregate', deadline: at('aggregate'), participants, dropped: ['e', 'f'] });
    case 'commit':
      return withRun({ ...secureRound, phase: 'commit', deadline: at('commit'), participants, dropped: ['e', 'f'], modelSha256: 'sha-r1' });
    case 'finished':
      return withRun({ phase: 'finished', plan: SECURE_PLAN });
    case 'failed':
      return withRun({ phase: 'failed', plan: SECURE_PLAN, reason: 'earlier failure' });
  }
}

/** Like canonicalEvent, for a secure row: runStarted carries SECURE_PLAN, deadlines name the row's phase. */
export function canonicalSecureEvent(type: SchedulerEventType, row: SecureRow, at = { round: 1, attempt: 0 }): SchedulerEvent {
  switch (type) {
    case 'runStarted':
      return { type, plan: SECURE_PLAN, round: 1, attempt: 0 };
    case 'deadline': {
      const phase: PhaseName = row === 'idle' || row === 'finished' || row === 'failed' ? 'open' : row === 'unmask-reveal' ? 'unmask' : row;
      return { type, ...at, phase };
    }
    case 'keysAdvertised':
    case 'sharesSubmitted':
    case 'survivorsSigned':
    case 'sharesRevealed':
      return { type, site: 'a', ...at };
    default:
      return canonicalEvent(type, 'open', at);
  }
}

/** `phaseEntered` + `armDeadline` for a phase of a SECURE_DEADLINES plan entered at `now`. */
export function secureEnteredEffects(round: number, attempt: number, phase: PhaseName, now: number): Effect[] {
  const deadline = now + SECURE_DEADLINES[phase];
  return [
    { type: 'phaseEntered', round, attempt, phase, deadline },
    { type: 'armDeadline', round, attempt, phase, at: deadline },
  ];
}
