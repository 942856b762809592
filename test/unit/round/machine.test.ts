/**
 * The round scheduler's full transition matrix: every (run phase, event type) pair, the valid ones
 * asserting the new state and effects, the rest asserting a typed refusal (STYLE.md, Shape).
 */
import { describe, expect, it } from 'vitest';
import { step } from '../../../coordinator/round/machine.js';
import { PLAIN_PHASES, REFUSAL_CODES } from '../../../coordinator/round/types.js';
import type { Effect, RefusalCode, SchedulerEventType, SchedulerState } from '../../../coordinator/round/types.js';
import {
  ALL_EVENT_TYPES,
  ALL_ROUND_TAGGED,
  DEADLINES,
  SECURE_ONLY_EVENTS,
  PLAN,
  ROUND_TAGGED,
  RUN_PHASES,
  T0,
  canonicalEvent,
  canonicalState,
  enteredEffects,
  expectOk,
  expectRefusal,
  rosterOf,
  runIn,
  type RunPhase,
} from './fixtures.js';

const { invalidInPhase: INVALID, stale: STALE, notInvited: NOT_INVITED, duplicate: DUPLICATE } = REFUSAL_CODES;

/** What one cell of the matrix must do: refuse with a code, or move to a phase with these effects. */
type Cell =
  | { readonly refuse: RefusalCode }
  | {
      readonly phase: RunPhase;
      readonly effects: readonly Effect[];
      readonly check?: (state: SchedulerState) => void;
    };

const ALL = ['a', 'b', 'c'];
const same = (phase: RunPhase, check?: (s: SchedulerState) => void): Cell => ({ phase, effects: [], ...(check ? { check } : {}) });
const connectedIs = (sites: string[]) => (s: SchedulerState) => expect(s.connected).toEqual(sites);
/** The canonical siteExcused (c) where it cannot start a round: recorded, the run untouched. */
const excusalRecorded = (phase: RunPhase): Cell =>
  same(phase, (s) => {
    expect(s.excused).toEqual(['c']);
    expect(s.run).toEqual(canonicalState(phase).run);
  });

/** Aborting attempt 0 of round 1 and, since a, b, c are connected, going straight to training of attempt 1. */
function retried(prior: Effect[], reason: string, sites = ALL): Effect[] {
  return [
    ...prior,
    { type: 'recordRoundAborted', round: 1, attempt: 0, reason },
    { type: 'recordRoundOpened', round: 1, attempt: 1 },
    ...enteredEffects(1, 1, 'open', T0),
    ...enteredEffects(1, 1, 'training', T0),
    { type: 'sendTrainTasks', round: 1, attempt: 1, sites },
  ];
}
const inTrainingOf = (attempt: number, sites: string[]) => (s: SchedulerState) => {
  const run = runIn(s, 'training');
  expect([run.round, run.attempt]).toEqual([1, attempt]);
  expect(run.roster).toEqual(Object.fromEntries(sites.map((x) => [x, { status: 'invited' }])));
};
/** A new run started while a, b, c are connected: open, then training at once. */
const startedWithAll: Cell = {
  phase: 'training',
  effects: [
    { type: 'recordRoundOpened', round: 1, attempt: 0 },
    ...enteredEffects(1, 0, 'open', T0),
    ...enteredEffects(1, 0, 'training', T0),
    { type: 'sendTrainTasks', round: 1, attempt: 0, sites: ALL },
  ],
  check: inTrainingOf(0, ALL),
};
const failedWith = (reason: string, prior: Effect[] = []): Cell => ({
  phase: 'failed',
  effects: [...prior, { type: 'recordRoundAborted', round: 1, attempt: 0, reason }, { type: 'runFailed', reason }],
  check: (s) => expect(s.run).toEqual({ phase: 'failed', plan: PLAN, reason }),
});
/**
 * After the run is over every round-tagged event is a leftover of it (an armed timer — the machine
 * has no "disarm" effect — a site finishing after cancelSites, a late aggregation): late, harmless.
 */
const overRun = (extra: Partial<Record<SchedulerEventType, Cell>>): Record<SchedulerEventType, Cell> => ({
  runStarted: startedWithAll,
  siteConnected: same('finished'),
  siteDisconnected: same('finished'),
  ...Object.fromEntries(ALL_ROUND_TAGGED.map((t) => [t, { refuse: STALE }])),
  abortRequested: { refuse: INVALID },
  siteExcused: excusalRecorded('finished'),
  ...extra,
}) as Record<SchedulerEventType, Cell>;

/** A plain run never asks for keys, shares or unmasking: the secure stages' events are invalid in it. */
const SECURE_EVENTS_INVALID = Object.fromEntries(SECURE_ONLY_EVENTS.map((t) => [t, { refuse: INVALID }])) as Record<(typeof SECURE_ONLY_EVENTS)[number], Cell>;

/** The matrix. Typed as a total record, so a missing pair does not compile; counted below too. */
const MATRIX: Record<RunPhase, Record<SchedulerEventType, Cell>> = {
  idle: {
    ...SECURE_EVENTS_INVALID,
    runStarted: {
      phase: 'open',
      effects: [{ type: 'recordRoundOpened', round: 1, attempt: 0 }, ...enteredEffects(1, 0, 'open', T0)],
      check: (s) => expect(s.run).toEqual({ phase: 'open', plan: PLAN, round: 1, attempt: 0, deadline: T0 + DEADLINES.open }),
    },
    siteConnected: same('idle', connectedIs(['d'])),
    siteDisconnected: same('idle', connectedIs([])),
    // No run has ever started, so nothing can be late: anything round-tagged is a bug.
    uploadStarted: { refuse: INVALID },
    uploadCompleted: { refuse: INVALID },
    siteFailed: { refuse: INVALID },
    deadline: { refuse: INVALID },
    aggregated: { refuse: INVALID },
    aggregationFailed: { refuse: INVALID },
    committed: { refuse: INVALID },
    abortRequested: { refuse: INVALID },
    siteExcused: excusalRecorded('idle'),
  },
  open: {
    ...SECURE_EVENTS_INVALID,
    runStarted: { refuse: INVALID },
    siteConnected: {
      phase: 'training',
      effects: [...enteredEffects(1, 0, 'training', T0), { type: 'sendTrainTasks', round: 1, attempt: 0, sites: ['a', 'd'] }],
      check: inTrainingOf(0, ['a', 'd']),
    },
    siteDisconnected: same('open', connectedIs([])),
    uploadStarted: { refuse: INVALID },
    uploadCompleted: { refuse: INVALID },
    siteFailed: { refuse: INVALID },
    deadline: {
      phase: 'open',
      effects: [
        { type: 'recordRoundAborted', round: 1, attempt: 0, reason: 'only 1 of 2 required sites connected' },
        { type: 'recordRoundOpened', round: 1, attempt: 1 },
        ...enteredEffects(1, 1, 'open', T0),
      ],
      check: (s) => expect(s.run).toEqual({ phase: 'open', plan: PLAN, round: 1, attempt: 1, deadline: T0 + DEADLINES.open }),
    },
    aggregated: { refuse: INVALID },
    aggregationFailed: { refuse: INVALID },
    committed: { refuse: INVALID },
    abortRequested: failedWith('operator abort'),
    // PLAN expects nobody, so excusing c changes nothing yet (see "the open phase" scenarios).
    siteExcused: excusalRecorded('open'),
  },
  training: {
    ...SECURE_EVENTS_INVALID,
    runStarted: { refuse: INVALID },
    siteConnected: same('training', (s) => {
      expect(s.connected).toEqual(['a', 'b', 'c', 'd']);
      expect(rosterOf(s)).toEqual(rosterOf(canonicalState('training')));
    }),
    siteDisconnected: same('training', (s) => {
      expect(s.connected).toEqual(['b', 'c']);
      expect(rosterOf(s)['a']).toEqual({ status: 'dropped', reason: 'disconnected' });
    }),
    uploadStarted: { refuse: DUPLICATE },
    uploadCompleted: same('training', (s) => expect(rosterOf(s)['a']).toEqual({ status: 'uploaded', weight: 10 })),
    siteFailed: same('training', (s) => expect(rosterOf(s)['a']).toEqual({ status: 'dropped', reason: 'CUDA out of memory' })),
    // b and c never started: dropped; a alone cannot reach k = 2, so the attempt is retried.
    deadline: {
      phase: 'training',
      effects: retried(
        [
          { type: 'cancelSites', round: 1, attempt: 0, sites: ['b', 'c'], reason: 'training deadline passed' },
          { type: 'cancelSites', round: 1, attempt: 0, sites: ['a'], reason: 'only 1 of 2 required sites finished training' },
        ],
        'only 1 of 2 required sites finished training',
      ),
      check: inTrainingOf(1, ALL),
    },
    aggregated: { refuse: INVALID },
    aggregationFailed: { refuse: INVALID },
    committed: { refuse: INVALID },
    abortRequested: failedWith('operator abort', [
      { type: 'cancelSites', round: 1, attempt: 0, sites: ALL, reason: 'operator abort' },
    ]),
    siteExcused: excusalRecorded('training'),
  },
  upload: {
    ...SECURE_EVENTS_INVALID,
    runStarted: { refuse: INVALID },
    siteConnected: same('upload', connectedIs(['a', 'b', 'c', 'd'])),
    // a was the only one still uploading; without it only b remains, below k = 2.
    siteDisconnected: {
      phase: 'training',
      effects: retried([], 'only 1 of 2 required sites remain', ['b', 'c']),
      check: inTrainingOf(1, ['b', 'c']),
    },
    uploadStarted: { refuse: DUPLICATE },
    uploadCompleted: {
      phase: 'aggregate',
      effects: [
        ...enteredEffects(1, 0, 'aggregate', T0),
        { type: 'startAggregation', round: 1, attempt: 0, participants: [{ site: 'a', weight: 10 }, { site: 'b', weight: 20 }], dropped: [] },
      ],
      check: (s) => {
        const run = runIn(s, 'aggregate');
        expect(run.dropped).toEqual(['c']);
        expect(run.deadline).toBe(T0 + DEADLINES.aggregate);
      },
    },
    siteFailed: {
      phase: 'training',
      effects: retried([], 'only 1 of 2 required sites remain'),
      check: inTrainingOf(1, ALL),
    },
    deadline: {
      phase: 'training',
      effects: retried(
        [{ type: 'cancelSites', round: 1, attempt: 0, sites: ['a'], reason: 'upload deadline passed' }],
        'only 1 of 2 required uploads completed',
      ),
      check: inTrainingOf(1, ALL),
    },
    aggregated: { refuse: INVALID },
    aggregationFailed: { refuse: INVALID },
    committed: { refuse: INVALID },
    abortRequested: failedWith('operator abort', [
      { type: 'cancelSites', round: 1, attempt: 0, sites: ['a', 'b'], reason: 'operator abort' },
    ]),
    siteExcused: excusalRecorded('upload'),
  },
  aggregate: {
    ...SECURE_EVENTS_INVALID,
    runStarted: { refuse: INVALID },
    siteConnected: same('aggregate', connectedIs(['a', 'b', 'c', 'd'])),
    siteDisconnected: same('aggregate', connectedIs(['b', 'c'])),
    uploadStarted: { refuse: INVALID },
    uploadCompleted: { refuse: INVALID },
    siteFailed: { refuse: INVALID },
    deadline: { phase: 'training', effects: retried([], 'aggregation deadline passed'), check: inTrainingOf(1, ALL) },
    aggregated: {
      phase: 'commit',
      effects: [
        ...enteredEffects(1, 0, 'commit', T0),
        {
          type: 'commitRound',
          round: 1,
          attempt: 0,
          participants: [{ site: 'a', weight: 10 }, { site: 'b', weight: 20 }],
          dropped: ['c'],
          modelSha256: 'sha-new',
        },
      ],
      check: (s) => expect(runIn(s, 'commit').modelSha256).toBe('sha-new'),
    },
    aggregationFailed: { phase: 'training', effects: retried([], 'aggregation failed: shape mismatch'), check: inTrainingOf(1, ALL) },
    committed: { refuse: INVALID },
    abortRequested: failedWith('operator abort'),
    siteExcused: excusalRecorded('aggregate'),
  },
  commit: {
    ...SECURE_EVENTS_INVALID,
    runStarted: { refuse: INVALID },
    siteConnected: same('commit', connectedIs(['a', 'b', 'c', 'd'])),
    siteDisconnected: same('commit', connectedIs(['b', 'c'])),
    uploadStarted: { refuse: INVALID },
    uploadCompleted: { refuse: INVALID },
    siteFailed: { refuse: INVALID },
    // The checkpoint and journal write may have happened: no abort is recorded, the run stops.
    deadline: {
      phase: 'failed',
      effects: [{ type: 'runFailed', reason: 'commit deadline passed' }],
      check: (s) => expect(s.run).toEqual({ phase: 'failed', plan: PLAN, reason: 'commit deadline passed' }),
    },
    aggregated: { refuse: INVALID },
    aggregationFailed: { refuse: INVALID },
    // Round 1 of 2 committed: round 2 opens at attempt 0 and, with a, b, c connected, starts training.
    committed: {
      phase: 'training',
      effects: [
        { type: 'recordRoundOpened', round: 2, attempt: 0 },
        ...enteredEffects(2, 0, 'open', T0),
        ...enteredEffects(2, 0, 'training', T0),
        { type: 'sendTrainTasks', round: 2, attempt: 0, sites: ALL },
      ],
      check: (s) => expect([runIn(s, 'training').round, runIn(s, 'training').attempt]).toEqual([2, 0]),
    },
    // The checkpoint write is already under way and is atomic; the machine refuses rather than fail
    // a round the journal may already hold. (Open question for the lead, see the report.)
    abortRequested: { refuse: INVALID },
    siteExcused: excusalRecorded('commit'),
  },
  finished: overRun({}),
  failed: overRun({ siteConnected: same('failed'), siteDisconnected: same('failed'), siteExcused: excusalRecorded('failed') }),
};

const CASES = RUN_PHASES.flatMap((phase) => ALL_EVENT_TYPES.map((type) => ({ phase, type, cell: MATRIX[phase][type] })));

describe('round scheduler transition matrix', () => {
  it('covers every (phase, event) pair exactly once: 8 phases × 16 events', () => {
    expect(RUN_PHASES).toHaveLength(8);
    expect(ALL_EVENT_TYPES).toHaveLength(16);
    expect(CASES).toHaveLength(128);
    expect(new Set(CASES.map((c) => `${c.phase}/${c.type}`)).size).toBe(128);
    for (const c of CASES) expect(c.cell, `${c.phase}/${c.type}`).toBeDefined();
    expect(Object.keys(MATRIX).sort()).toEqual([...RUN_PHASES].sort());
    for (const phase of RUN_PHASES) expect(Object.keys(MATRIX[phase]).sort()).toEqual([...ALL_EVENT_TYPES].sort());
  });

  describe.each(RUN_PHASES)('in %s', (phase) => {
    it.each(ALL_EVENT_TYPES.map((type) => ({ type, cell: MATRIX[phase][type] })))('$type', ({ type, cell }) => {
      const state = canonicalState(phase);
      const frozen = structuredClone(state);
      const result = step(state, canonicalEvent(type, phase), T0);
      expect(state, 'step must not mutate its input').toEqual(frozen);
      if ('refuse' in cell) {
        expectRefusal(result, cell.refuse, phase, type);
        return;
      }
      const { state: next, effects } = expectOk(result);
      expect(next.run.phase).toBe(cell.phase);
      expect(effects).toEqual(cell.effects);
      if ('plan' in next.run) expect(next.run.plan).toBe(PLAN);
      cell.check?.(next);
    });
  });
});

/** Canonical in-round states moved to round 2 attempt 1, so that both older attempts and rounds exist. */
const IN_ROUND = ['open', 'training', 'upload', 'aggregate', 'commit'] as const;
function laterAttempt(phase: (typeof IN_ROUND)[number]): SchedulerState {
  const s = canonicalState(phase);
  return { ...s, run: { ...s.run, round: 2, attempt: 1 } as SchedulerState['run'] };
}

describe('stale events', () => {
  const olderAttempts = [
    { label: 'an earlier attempt of the round', at: { round: 2, attempt: 0 } },
    { label: 'an earlier round', at: { round: 1, attempt: 1 } },
    { label: 'a future attempt', at: { round: 2, attempt: 2 } },
  ];
  describe.each(IN_ROUND)('in %s of round 2 attempt 1', (phase) => {
    it.each(ROUND_TAGGED.flatMap((type) => olderAttempts.map((o) => ({ type, ...o }))))(
      'refuses $type naming $label as STALE',
      ({ type, at }) => {
        const result = step(laterAttempt(phase), canonicalEvent(type, phase, at), T0);
        expectRefusal(result, STALE, phase, type);
      },
    );
    it.each(PLAIN_PHASES.filter((p) => p !== phase))('refuses the current attempt\'s %s deadline as STALE', (other) => {
      const result = step(laterAttempt(phase), { type: 'deadline', round: 2, attempt: 1, phase: other }, T0);
      expectRefusal(result, STALE, phase, 'deadline');
    });
  });

  it('refuses a stale site event as STALE before looking the site up', () => {
    const result = step(canonicalState('training'), { type: 'uploadStarted', site: 'x', round: 1, attempt: 1 }, T0);
    expectRefusal(result, STALE, 'training', 'uploadStarted');
  });
});

describe('site events from outside the roster', () => {
  it.each(['uploadStarted', 'uploadCompleted', 'siteFailed'] as const)('refuses %s from a site never invited as NOT_INVITED', (type) => {
    for (const phase of ['training', 'upload'] as const) {
      const event = { ...canonicalEvent(type, phase), site: 'x' };
      expectRefusal(step(canonicalState(phase), event, T0), NOT_INVITED, phase, type);
    }
  });

  it('refuses an upload from a site that connected after the attempt started as NOT_INVITED', () => {
    const { state } = expectOk(step(canonicalState('training'), { type: 'siteConnected', site: 'd' }, T0));
    const result = step(state, { type: 'uploadStarted', site: 'd', round: 1, attempt: 0 }, T0);
    expectRefusal(result, NOT_INVITED, 'training', 'uploadStarted');
  });

  it('refuses uploadStarted from a site dropped from the attempt as NOT_INVITED', () => {
    const result = step(canonicalState('upload'), { type: 'uploadStarted', site: 'c', round: 1, attempt: 0 }, T0);
    expectRefusal(result, NOT_INVITED, 'upload', 'uploadStarted');
  });

  // A site dropped mid-upload (disconnect, deadline) that finishes anyway is no longer part of the
  // attempt, exactly like its uploadStarted above; it is not a phase error.
  it('refuses uploadCompleted from a site dropped from the attempt as NOT_INVITED', () => {
    const result = step(canonicalState('upload'), { type: 'uploadCompleted', site: 'c', round: 1, attempt: 0, weight: 5 }, T0);
    expectRefusal(result, NOT_INVITED, 'upload', 'uploadCompleted');
  });
});

describe('duplicate site events', () => {
  it('refuses a second uploadStarted as DUPLICATE', () => {
    const result = step(canonicalState('training'), { type: 'uploadStarted', site: 'a', round: 1, attempt: 0 }, T0);
    expectRefusal(result, DUPLICATE, 'training', 'uploadStarted');
  });

  it('refuses uploadStarted after the upload completed as DUPLICATE', () => {
    const result = step(canonicalState('upload'), { type: 'uploadStarted', site: 'b', round: 1, attempt: 0 }, T0);
    expectRefusal(result, DUPLICATE, 'upload', 'uploadStarted');
  });

  it('refuses a second uploadCompleted as DUPLICATE and keeps the first weight', () => {
    const first = expectOk(step(canonicalState('training'), canonicalEvent('uploadCompleted', 'training'), T0));
    const again = step(first.state, { type: 'uploadCompleted', site: 'a', round: 1, attempt: 0, weight: 99 }, T0);
    expectRefusal(again, DUPLICATE, 'training', 'uploadCompleted');
    expect(rosterOf(first.state)['a']).toEqual({ status: 'uploaded', weight: 10 });
  });

  it('refuses a second uploadCompleted in the upload phase as DUPLICATE', () => {
    const result = step(canonicalState('upload'), { type: 'uploadCompleted', site: 'b', round: 1, attempt: 0, weight: 20 }, T0);
    expectRefusal(result, DUPLICATE, 'upload', 'uploadCompleted');
  });

  it('refuses siteFailed from a site already dropped as DUPLICATE', () => {
    const result = step(canonicalState('upload'), { type: 'siteFailed', site: 'c', round: 1, attempt: 0, reason: 'again' }, T0);
    expectRefusal(result, DUPLICATE, 'upload', 'siteFailed');
  });

  it('refuses uploadCompleted without uploadStarted as INVALID_IN_PHASE', () => {
    const result = step(canonicalState('training'), { type: 'uploadCompleted', site: 'b', round: 1, attempt: 0, weight: 1 }, T0);
    expectRefusal(result, INVALID, 'training', 'uploadCompleted');
  });
});
