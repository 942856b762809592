/**
 * Property test of the round scheduler: random event sequences (mostly about the current attempt,
 * some stale, some from strangers) never throw, only refuse with known codes, never move a round
 * backwards, commit each round at most once, with at least minSites real uploads, and leave `open`
 * before its deadline only with every expected site that is not excused.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { initialSchedulerState, step } from '../../../coordinator/round/machine.js';
import { PLAIN_PHASES, REFUSAL_CODES, SECURE_PHASES } from '../../../coordinator/round/types.js';
import type { Contribution, Effect, PhaseName, RunPlan, SchedulerEvent, SchedulerState } from '../../../coordinator/round/types.js';
import { T0, makePlan, makeSecurePlan } from './fixtures.js';

const SITES = ['a', 'b', 'c', 'd'] as const;
const KNOWN_CODES = new Set<string>(Object.values(REFUSAL_CODES));

/** Round/attempt an event names: the current one most of the time, otherwise any nearby pair. */
type Tag = { readonly kind: 'current' } | { readonly kind: 'fixed'; readonly round: number; readonly attempt: number };
const tagArb: fc.Arbitrary<Tag> = fc.oneof(
  { weight: 8, arbitrary: fc.constant({ kind: 'current' as const }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('fixed' as const), round: fc.integer({ min: 0, max: 4 }), attempt: fc.integer({ min: 0, max: 3 }) }) },
);
const siteArb = fc.constantFrom(...SITES);

/** An event before it is resolved against the state it is fed to. */
type Action =
  | { readonly type: 'siteConnected' | 'siteDisconnected'; readonly site: string }
  | { readonly type: 'siteExcused'; readonly site: string; readonly excused: boolean }
  | { readonly type: 'uploadStarted' | 'siteFailed'; readonly site: string; readonly tag: Tag }
  | { readonly type: 'uploadCompleted'; readonly site: string; readonly tag: Tag; readonly weight: number }
  | { readonly type: 'deadline'; readonly tag: Tag; readonly phase: PhaseName | 'current' }
  | { readonly type: 'aggregated' | 'aggregationFailed' | 'committed'; readonly tag: Tag }
  | { readonly type: 'abortRequested' }
  | { readonly type: 'runStarted'; readonly round: number; readonly attempt: number }
  | { readonly type: 'keysAdvertised' | 'sharesSubmitted' | 'survivorsSigned' | 'sharesRevealed'; readonly site: string; readonly tag: Tag }
  | { readonly type: 'advance'; readonly ms: number }
  /** "Whatever moves the protocol on now", for the site at this index of the roster. */
  | { readonly type: 'progress'; readonly pick: number; readonly weight: number };

const actionArb: fc.Arbitrary<Action> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ type: fc.constantFrom('siteConnected' as const, 'siteDisconnected' as const), site: siteArb }) },
  { weight: 6, arbitrary: fc.record({ type: fc.constantFrom('uploadStarted' as const, 'siteFailed' as const), site: siteArb, tag: tagArb }) },
  { weight: 6, arbitrary: fc.record({ type: fc.constant('uploadCompleted' as const), site: siteArb, tag: tagArb, weight: fc.integer({ min: 1, max: 1_000 }) }) },
  { weight: 3, arbitrary: fc.record({ type: fc.constant('deadline' as const), tag: tagArb, phase: fc.constantFrom<PhaseName | 'current'>('current', 'current', ...PLAIN_PHASES) }) },
  { weight: 4, arbitrary: fc.record({ type: fc.constantFrom('aggregated' as const, 'aggregationFailed' as const, 'committed' as const), tag: tagArb }) },
  { weight: 1, arbitrary: fc.constant({ type: 'abortRequested' as const }) },
  { weight: 2, arbitrary: fc.record({ type: fc.constant('siteExcused' as const), site: siteArb, excused: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('runStarted' as const), round: fc.integer({ min: 1, max: 4 }), attempt: fc.integer({ min: 0, max: 2 }) }) },
  { weight: 2, arbitrary: fc.record({ type: fc.constant('advance' as const), ms: fc.integer({ min: 1, max: 12_000 }) }) },
  { weight: 20, arbitrary: fc.record({ type: fc.constant('progress' as const), pick: fc.nat(), weight: fc.integer({ min: 1, max: 1_000 }) }) },
);

/** Secure plans: the same actions plus the four secure site events and deadlines of every phase. */
const secureActionArb: fc.Arbitrary<Action> = fc.oneof(
  { weight: 10, arbitrary: actionArb },
  // Secure rounds take about three times the steps of a plain one: push the protocol on more often.
  { weight: 8, arbitrary: fc.record({ type: fc.constant('progress' as const), pick: fc.nat(), weight: fc.integer({ min: 1, max: 1_000 }) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      type: fc.constantFrom('keysAdvertised' as const, 'sharesSubmitted' as const, 'survivorsSigned' as const, 'sharesRevealed' as const),
      site: siteArb,
      tag: tagArb,
    }),
  },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('deadline' as const), tag: tagArb, phase: fc.constantFrom<PhaseName | 'current'>('current', ...SECURE_PHASES) }) },
);

/** The event that moves the protocol forward in this state (so sequences get past training). */
function progress(action: Extract<Action, { type: 'progress' }>, state: SchedulerState): SchedulerEvent {
  const run = state.run;
  const stranger = SITES.filter((s) => !state.connected.includes(s));
  const connect = (): SchedulerEvent => ({ type: 'siteConnected', site: stranger[action.pick % Math.max(1, stranger.length)] ?? 'a' });
  switch (run.phase) {
    case 'idle':
    case 'finished':
    case 'failed':
    case 'open':
      return connect();
    case 'training':
    case 'upload': {
      const sites = Object.keys(run.roster).filter((s) => {
        const p = run.roster[s]!;
        return p.status === 'invited' || p.status === 'uploading';
      });
      const site = sites[action.pick % Math.max(1, sites.length)];
      if (site === undefined) return connect();
      const { round, attempt } = run;
      return run.roster[site]!.status === 'invited'
        ? { type: 'uploadStarted', site, round, attempt }
        : { type: 'uploadCompleted', site, round, attempt, weight: action.weight };
    }
    case 'keys':
    case 'shares': {
      const waiting = Object.keys(run.exchange).filter((s) => run.exchange[s] === 'waiting');
      const site = waiting[action.pick % Math.max(1, waiting.length)];
      if (site === undefined) return connect();
      return { type: run.phase === 'keys' ? 'keysAdvertised' : 'sharesSubmitted', site, round: run.round, attempt: run.attempt };
    }
    case 'unmask': {
      const asked = run.step === 'consistency' ? run.participants.map((p) => p.site) : run.signed;
      const answered = run.step === 'consistency' ? run.signed : run.revealed;
      const open = asked.filter((s) => !answered.includes(s) && !run.gone.includes(s));
      const site = open[action.pick % Math.max(1, open.length)];
      if (site === undefined) return { type: 'deadline', round: run.round, attempt: run.attempt, phase: 'unmask' };
      return { type: run.step === 'consistency' ? 'survivorsSigned' : 'sharesRevealed', site, round: run.round, attempt: run.attempt };
    }
    case 'aggregate':
      return { type: 'aggregated', round: run.round, attempt: run.attempt, modelSha256: `sha-${run.round}.${run.attempt}` };
    case 'commit':
      return { type: 'committed', round: run.round, attempt: run.attempt };
  }
}

const planArb: fc.Arbitrary<RunPlan> = fc
  .record({
    rounds: fc.integer({ min: 1, max: 3 }),
    minSites: fc.integer({ min: 1, max: 3 }),
    maxAttempts: fc.integer({ min: 1, max: 3 }),
    expectedSites: fc.subarray(['a', 'b', 'c']),
  })
  .map((o) => makePlan(o));

/** Secure plans, t from 2 to 4 (also above minSites, as the default max(2, minSites) gives for minSites 1). */
const securePlanArb: fc.Arbitrary<RunPlan> = fc
  .record({
    rounds: fc.integer({ min: 1, max: 3 }),
    minSites: fc.integer({ min: 1, max: 3 }),
    threshold: fc.integer({ min: 2, max: 4 }),
    maxAttempts: fc.integer({ min: 1, max: 3 }),
    expectedSites: fc.subarray(['a', 'b', 'c']),
    ownDeadlines: fc.boolean(),
  })
  .map(({ threshold, ownDeadlines, ...o }) => makeSecurePlan(ownDeadlines ? o : { ...o, deadlines: makePlan().deadlines }, threshold));

function resolve(action: Exclude<Action, { type: 'advance' }>, state: SchedulerState, plan: RunPlan): SchedulerEvent {
  if (action.type === 'progress') return progress(action, state);
  const run = state.run;
  const inRound = run.phase !== 'idle' && run.phase !== 'finished' && run.phase !== 'failed';
  const at = (tag: Tag) =>
    tag.kind === 'fixed' ? { round: tag.round, attempt: tag.attempt } : inRound ? { round: run.round, attempt: run.attempt } : { round: 1, attempt: 0 };
  switch (action.type) {
    case 'siteConnected':
    case 'siteDisconnected':
      return { type: action.type, site: action.site };
    case 'siteExcused':
      return { type: action.type, site: action.site, excused: action.excused };
    case 'uploadStarted':
      return { type: action.type, site: action.site, ...at(action.tag) };
    case 'siteFailed':
      return { type: action.type, site: action.site, ...at(action.tag), reason: 'failed' };
    case 'uploadCompleted':
      return { type: action.type, site: action.site, ...at(action.tag), weight: action.weight };
    case 'deadline': {
      const phase: PhaseName = action.phase !== 'current' ? action.phase : inRound ? run.phase : 'open';
      return { type: 'deadline', ...at(action.tag), phase };
    }
    case 'aggregated':
      return { type: action.type, ...at(action.tag), modelSha256: 'sha' };
    case 'aggregationFailed':
      return { type: action.type, ...at(action.tag), reason: 'failed' };
    case 'committed':
      return { type: action.type, ...at(action.tag) };
    case 'abortRequested':
      return { type: action.type, reason: 'operator' };
    case 'runStarted':
      return { type: action.type, plan, round: action.round, attempt: action.attempt };
    case 'keysAdvertised':
    case 'sharesSubmitted':
    case 'survivorsSigned':
    case 'sharesRevealed':
      return { type: action.type, site: action.site, ...at(action.tag) };
  }
}

/** What one run (from an accepted runStarted) has done so far, to check effects against. */
class RunLog {
  readonly committed = new Set<number>();
  /** Accepted uploadCompleted per "round.attempt": site → weight. */
  readonly uploads = new Map<string, Map<string, number>>();
  /** Sites sent train tasks per "round.attempt". */
  readonly invited = new Map<string, readonly string[]>();
  /** Secure runs, per "round.attempt": sites sent keys/shares tasks, and accepted secure answers. */
  readonly keysInvited = new Map<string, readonly string[]>();
  readonly sharesInvited = new Map<string, readonly string[]>();
  readonly answered = new Map<string, Map<SecureAnswer, Set<string>>>();
  /** Participants of the current attempt's unmask phase, per "round.attempt". */
  readonly survivors = new Map<string, readonly Contribution[]>();
  answers(key: string, type: SecureAnswer): Set<string> {
    const byType = this.answered.get(key) ?? new Map<SecureAnswer, Set<string>>();
    this.answered.set(key, byType);
    const set = byType.get(type) ?? new Set<string>();
    byType.set(type, set);
    return set;
  }
  last = { round: 0, attempt: -1 };
  constructor(readonly plan: RunPlan) {}
}

type SecureAnswer = 'keysAdvertised' | 'sharesSubmitted' | 'survivorsSigned' | 'sharesRevealed';
const SECURE_ANSWERS = new Set<string>(['keysAdvertised', 'sharesSubmitted', 'survivorsSigned', 'sharesRevealed']);

/** Fewest sites a round may be completed with: k, and for secure plans the Shamir t. */
const needed = (plan: RunPlan): number => Math.max(plan.minSites, plan.secure?.threshold ?? 0);

/**
 * An attempt leaves `open` (plain: training tasks; secure: keys tasks) before the open deadline only
 * with every expected site that is not excused; at that deadline it may go without them.
 */
function checkOpenWaited(plan: RunPlan, before: SchedulerState, event: SchedulerEvent, after: SchedulerState, effects: readonly Effect[]): void {
  if (event.type === 'deadline' && before.run.phase === 'open') return;
  const start = plan.secure ? 'sendKeysTasks' : 'sendTrainTasks';
  for (const effect of effects) {
    if (effect.type !== start) continue;
    const awaited = plan.expectedSites.filter((s) => !after.excused.includes(s));
    for (const s of awaited) expect(effect.sites, `${effect.type} of ${effect.round}.${effect.attempt} without expected ${s}`).toContain(s);
  }
}

/** Feeds the sequence, checking every step; returns how many rounds it committed. */
function checkSequence(plan: RunPlan, actions: readonly Action[]): number {
  let commits = 0;
  let state: SchedulerState = initialSchedulerState();
  let now = T0;
  let log = new RunLog(plan);
  const all: readonly Action[] = [{ type: 'runStarted', round: 1, attempt: 0 }, ...actions];
  for (const action of all) {
    if (action.type === 'advance') {
      now += action.ms;
      continue;
    }
    const event = resolve(action, state, plan);
    const result = step(state, event, now); // throwing fails the property
    if (!result.ok) {
      expect(KNOWN_CODES.has(result.refusal.code), result.refusal.code).toBe(true);
      expect(result.refusal.phase).toBe(state.run.phase);
      expect(result.refusal.event).toBe(event.type);
      continue;
    }
    if (event.type === 'runStarted') log = new RunLog(plan);
    if (SECURE_ANSWERS.has(event.type) && 'site' in event && 'round' in event) {
      expect(plan.secure, `${event.type} accepted in a plain run`).toBeDefined();
      const set = log.answers(`${event.round}.${event.attempt}`, event.type as SecureAnswer);
      expect(set.has(event.site), `second accepted ${event.type} from ${event.site}`).toBe(false);
      set.add(event.site);
    }
    if (event.type === 'uploadCompleted') {
      const key = `${event.round}.${event.attempt}`;
      const byKey = log.uploads.get(key) ?? new Map<string, number>();
      expect(byKey.has(event.site), `second accepted upload from ${event.site} in ${key}`).toBe(false);
      log.uploads.set(key, byKey.set(event.site, event.weight));
    }
    checkOpenWaited(log.plan, state, event, result.state, result.effects);
    for (const effect of result.effects) {
      const key = 'round' in effect ? `${effect.round}.${effect.attempt}` : '';
      if (effect.type === 'sendTrainTasks') log.invited.set(key, effect.sites);
      if (effect.type === 'sendKeysTasks') log.keysInvited.set(key, effect.sites);
      if (effect.type === 'sendSharesTasks') {
        // Only sites that advertised keys in this attempt get shares tasks.
        for (const s of effect.sites) expect(log.answers(key, 'keysAdvertised').has(s), `${s} got shares without keys in ${key}`).toBe(true);
        log.sharesInvited.set(key, effect.sites);
      }
      if (effect.type === 'sendTrainTasks' && log.plan.secure) {
        for (const s of effect.sites) expect(log.answers(key, 'sharesSubmitted').has(s), `${s} trains without shares in ${key}`).toBe(true);
      }
      if (effect.type === 'requestConsistency') {
        expect(log.plan.secure).toBeDefined();
        for (const s of effect.survivors) expect(log.uploads.get(key)?.has(s), `survivor ${s} never uploaded in ${key}`).toBe(true);
        for (const s of effect.dropped) expect(effect.survivors).not.toContain(s);
      }
      if (effect.type === 'requestUnmask') {
        const signed = log.answers(key, 'survivorsSigned');
        for (const s of effect.sites) expect(signed.has(s), `${s} asked to reveal without signing in ${key}`).toBe(true);
        expect(signed.size).toBeGreaterThanOrEqual(log.plan.secure!.threshold);
      }
      if (effect.type === 'startAggregation') {
        if (log.plan.secure) {
          expect(log.answers(key, 'sharesRevealed').size, `aggregation in ${key} with fewer than t reveals`).toBeGreaterThanOrEqual(log.plan.secure.threshold);
          const holders = log.invited.get(key) ?? [];
          for (const s of effect.dropped) {
            expect(holders, `${s} unmasked but never a share holder in ${key}`).toContain(s);
            expect(effect.participants.map((p) => p.site)).not.toContain(s);
          }
          // Every share holder is either in the sum or unmasked.
          expect([...effect.participants.map((p) => p.site), ...effect.dropped].sort()).toEqual([...holders].sort());
        } else {
          expect(effect.dropped).toEqual([]);
        }
      }
      if (effect.type === 'armDeadline') {
        const d = log.plan.deadlines;
        expect(effect.at).toBe(now + (d[effect.phase] ?? d.upload));
      }
      if (effect.type === 'commitRound') {
        expect(log.committed.has(effect.round), `round ${effect.round} committed twice`).toBe(false);
        log.committed.add(effect.round);
        commits += 1;
        expect(effect.participants.length).toBeGreaterThanOrEqual(needed(log.plan));
        const sites = effect.participants.map((p) => p.site);
        expect(new Set(sites).size).toBe(sites.length);
        for (const p of effect.participants) {
          expect(log.uploads.get(key)?.get(p.site), `${p.site} never completed an upload in ${key}`).toBe(p.weight);
          expect(log.invited.get(key)).toContain(p.site);
          if (log.plan.secure) {
            // Each participant went through keys, shares and upload in this same attempt.
            expect(log.keysInvited.get(key), `${p.site} not sent keys tasks in ${key}`).toContain(p.site);
            expect(log.sharesInvited.get(key), `${p.site} not sent shares tasks in ${key}`).toContain(p.site);
            expect(log.answers(key, 'keysAdvertised').has(p.site), `${p.site} never advertised keys in ${key}`).toBe(true);
            expect(log.answers(key, 'sharesSubmitted').has(p.site), `${p.site} never submitted shares in ${key}`).toBe(true);
          }
        }
        for (const site of effect.dropped) expect(sites).not.toContain(site);
      }
    }
    state = result.state;
    const run = state.run;
    if (run.phase !== 'idle' && run.phase !== 'finished' && run.phase !== 'failed') {
      const { round, attempt } = log.last;
      expect(run.round >= round, `round went back from ${round} to ${run.round}`).toBe(true);
      if (run.round === round) expect(run.attempt).toBeGreaterThanOrEqual(attempt);
      expect(run.attempt).toBeLessThan(log.plan.maxAttempts);
      expect(run.round).toBeLessThanOrEqual(log.plan.rounds);
      log.last = { round: run.round, attempt: run.attempt };
    }
    if (run.phase === 'finished' && event.type === 'committed') {
      expect(log.committed.has(log.plan.rounds)).toBe(true);
    }
  }
  return commits;
}

/**
 * Replays a secure sequence and returns each time the machine started a secure step that could
 * never gather enough answers: keys with fewer than max(minSites, t) sites, unmask with fewer than t
 * survivors, or a reveal asking sites gone during unmask / with fewer than t that can still answer.
 */
function hopelessSteps(plan: RunPlan, actions: readonly Action[]): string[] {
  const found: string[] = [];
  let state: SchedulerState = initialSchedulerState();
  let now = T0;
  const t = plan.secure!.threshold;
  for (const action of [{ type: 'runStarted', round: 1, attempt: 0 } as const, ...actions]) {
    if (action.type === 'advance') {
      now += action.ms;
      continue;
    }
    const result = step(state, resolve(action, state, plan), now);
    if (!result.ok) continue;
    const run = result.state.run;
    for (const e of result.effects) {
      if (e.type === 'sendKeysTasks' && e.sites.length < needed(plan)) found.push(`keys of ${e.round}.${e.attempt} with ${e.sites.length} < ${needed(plan)} sites`);
      if (e.type === 'requestConsistency' && e.survivors.length < t) found.push(`unmask of ${e.round}.${e.attempt} with ${e.survivors.length} < t = ${t} survivors`);
      if (e.type === 'requestUnmask' && run.phase === 'unmask') {
        const live = e.sites.filter((x) => !run.gone.includes(x));
        if (live.length < e.sites.length) found.push(`reveal of ${e.round}.${e.attempt} asks gone sites ${e.sites.filter((x) => run.gone.includes(x))}`);
        if (live.length < t) found.push(`reveal of ${e.round}.${e.attempt} with ${live.length} < t = ${t} live signers`);
      }
    }
    state = result.state;
  }
  return found;
}

describe('round scheduler properties', () => {
  // Fails today: see the BUG notes in machine-secure-scenarios.test.ts (open starts keys at minSites;
  // training/upload settle at minSites, not max(minSites, t); requestUnmask names signers that left).
  it('secure plans: never start a secure step that cannot gather enough answers', () => {
    fc.assert(
      fc.property(securePlanArb, fc.array(secureActionArb, { minLength: 10, maxLength: 250, size: 'max' }), (plan, actions) => {
        expect(hopelessSteps(plan, actions)).toEqual([]);
      }),
      { numRuns: 300, seed: 20240613 },
    );
  });

  it('secure plans: never throw, refuse only with known codes, commit with >= max(minSites, t) sites that went through keys, shares and upload', () => {
    let commits = 0;
    fc.assert(
      fc.property(securePlanArb, fc.array(secureActionArb, { minLength: 10, maxLength: 250, size: 'max' }), (plan, actions) => {
        commits += checkSequence(plan, actions);
      }),
      { numRuns: 500, seed: 20240612 },
    );
    expect(commits).toBeGreaterThan(100);
  });

  it('never throws, refuses only with known codes, and commits each round once with >= minSites uploads', () => {
    let commits = 0;
    fc.assert(
      fc.property(planArb, fc.array(actionArb, { minLength: 10, maxLength: 150, size: 'max' }), (plan, actions) => {
        commits += checkSequence(plan, actions);
      }),
      { numRuns: 500, seed: 20240611 },
    );
    // Guards the generator: if sequences never got past training the commit checks would hold vacuously.
    expect(commits).toBeGreaterThan(200);
  });
});
