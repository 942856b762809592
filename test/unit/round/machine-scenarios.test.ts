/**
 * Whole-protocol scenarios of the round scheduler, driven with a fixed fake clock: a clean run,
 * k-of-n completion with dropped sites, aborted attempts, exhausted attempts, open-phase waiting.
 */
import { describe, expect, it } from 'vitest';
import { REFUSAL_CODES } from '../../../coordinator/round/types.js';
import type { Effect } from '../../../coordinator/round/types.js';
import { DEADLINES, Driver, T0, effectsOf, enteredEffects, makePlan, rosterOf, runIn, withRun } from './fixtures.js';

/** A driver with a run of `plan` started at T0 and sites a, b, c connecting 100 ms apart. */
function startedRun(planOverrides: Parameters<typeof makePlan>[0] = {}, sites = ['a', 'b', 'c']): Driver {
  const d = new Driver();
  d.send({ type: 'runStarted', plan: makePlan(planOverrides), round: 1, attempt: 0 });
  for (const site of sites) {
    d.advance(100);
    d.send({ type: 'siteConnected', site });
  }
  return d;
}

describe('a clean two-round run with three sites', () => {
  it('opens, trains, uploads, aggregates with the weights, commits each round and finishes', () => {
    const d = startedRun({ expectedSites: ['a', 'b', 'c'] });
    const trainingAt = T0 + 300;
    const expected: Effect[] = [
      { type: 'recordRoundOpened', round: 1, attempt: 0 },
      ...enteredEffects(1, 0, 'open', T0),
      ...enteredEffects(1, 0, 'training', trainingAt),
      { type: 'sendTrainTasks', round: 1, attempt: 0, sites: ['a', 'b', 'c'] },
    ];
    expect(d.effects).toEqual(expected);

    for (const round of [1, 2]) {
      const weights = { a: 100 * round, b: 200 * round, c: 300 * round };
      d.advance(1_000);
      d.upload('a', weights.a); // a finishes early; b and c are still training
      expect(d.state.run.phase).toBe('training');
      d.advance(500);
      d.send({ type: 'uploadStarted', site: 'b', round, attempt: 0 });
      d.advance(500);
      d.send({ type: 'uploadStarted', site: 'c', round, attempt: 0 });
      expected.push(...enteredEffects(round, 0, 'upload', d.now));
      expect(runIn(d.state, 'upload').deadline).toBe(d.now + DEADLINES.upload);
      d.advance(500);
      d.send({ type: 'uploadCompleted', site: 'b', round, attempt: 0, weight: weights.b });
      d.advance(500);
      d.send({ type: 'uploadCompleted', site: 'c', round, attempt: 0, weight: weights.c });
      const participants = [
        { site: 'a', weight: weights.a },
        { site: 'b', weight: weights.b },
        { site: 'c', weight: weights.c },
      ];
      expected.push(...enteredEffects(round, 0, 'aggregate', d.now), { type: 'startAggregation', round, attempt: 0, participants, dropped: [] });
      d.advance(500);
      d.send({ type: 'aggregated', round, attempt: 0, modelSha256: `sha-${round}` });
      expected.push(...enteredEffects(round, 0, 'commit', d.now), {
        type: 'commitRound',
        round,
        attempt: 0,
        participants,
        dropped: [],
        modelSha256: `sha-${round}`,
      });
      d.advance(500);
      d.send({ type: 'committed', round, attempt: 0 });
      if (round === 1) {
        expected.push(
          { type: 'recordRoundOpened', round: 2, attempt: 0 },
          ...enteredEffects(2, 0, 'open', d.now),
          ...enteredEffects(2, 0, 'training', d.now),
          { type: 'sendTrainTasks', round: 2, attempt: 0, sites: ['a', 'b', 'c'] },
        );
      }
    }
    expected.push({ type: 'runFinished', rounds: 2 });
    expect(d.effects).toEqual(expected);
    expect(d.state.run.phase).toBe('finished');
    expect(effectsOf(d.effects, 'commitRound').map((e) => e.round)).toEqual([1, 2]);
  });

  it('finishes at once when started past the last round', () => {
    const d = new Driver();
    const effects = d.send({ type: 'runStarted', plan: makePlan({ rounds: 2 }), round: 3, attempt: 0 });
    expect(effects).toEqual([{ type: 'runFinished', rounds: 2 }]);
    expect(d.state.run.phase).toBe('finished');
  });

  it('resumes at the round and attempt it is started with', () => {
    const d = new Driver(withRun({ phase: 'idle' }, ['a', 'b']));
    const effects = d.send({ type: 'runStarted', plan: makePlan({ rounds: 3 }), round: 2, attempt: 1 });
    expect(effects[0]).toEqual({ type: 'recordRoundOpened', round: 2, attempt: 1 });
    expect(effectsOf(effects, 'sendTrainTasks')).toEqual([{ type: 'sendTrainTasks', round: 2, attempt: 1, sites: ['a', 'b'] }]);
    expect(d.current()).toEqual({ round: 2, attempt: 1 });
  });
});

describe('k of n', () => {
  it('starts training at minSites when no site is expected; a later site waits for the next attempt', () => {
    const d = startedRun();
    expect(Object.keys(rosterOf(d.state))).toEqual(['a', 'b']);
    expect(d.state.connected).toEqual(['a', 'b', 'c']);
    d.refuse({ type: 'uploadStarted', site: 'c', round: 1, attempt: 0 }, REFUSAL_CODES.notInvited);
  });

  it('drops a site that misses the training deadline and aggregates the other two', () => {
    const d = startedRun({ expectedSites: ['a', 'b', 'c'] });
    d.upload('a', 10);
    d.upload('b', 20);
    expect(d.state.run.phase).toBe('training');
    const effects = d.fireDeadline();
    const participants = [{ site: 'a', weight: 10 }, { site: 'b', weight: 20 }];
    expect(effects).toEqual([
      { type: 'cancelSites', round: 1, attempt: 0, sites: ['c'], reason: 'training deadline passed' },
      ...enteredEffects(1, 0, 'upload', d.now),
      ...enteredEffects(1, 0, 'aggregate', d.now),
      { type: 'startAggregation', round: 1, attempt: 0, participants, dropped: [] },
    ]);
    expect(runIn(d.state, 'aggregate').dropped).toEqual(['c']);
    d.send({ type: 'aggregated', round: 1, attempt: 0, modelSha256: 'm' });
    expect(effectsOf(d.effects, 'commitRound')).toEqual([
      { type: 'commitRound', round: 1, attempt: 0, participants, dropped: ['c'], modelSha256: 'm' },
    ]);
  });

  it('drops a site that disconnects mid-upload and completes the round without it', () => {
    const d = startedRun({ expectedSites: ['a', 'b', 'c'] });
    for (const site of ['a', 'b', 'c']) d.send({ type: 'uploadStarted', site, round: 1, attempt: 0 });
    expect(d.state.run.phase).toBe('upload');
    d.send({ type: 'uploadCompleted', site: 'a', round: 1, attempt: 0, weight: 1 });
    d.send({ type: 'siteDisconnected', site: 'c' });
    expect(rosterOf(d.state)['c']).toEqual({ status: 'dropped', reason: 'disconnected' });
    d.send({ type: 'uploadCompleted', site: 'b', round: 1, attempt: 0, weight: 2 });
    const agg = runIn(d.state, 'aggregate');
    expect(agg.participants).toEqual([{ site: 'a', weight: 1 }, { site: 'b', weight: 2 }]);
    expect(agg.dropped).toEqual(['c']);
    expect(d.state.connected).toEqual(['a', 'b']);
  });

  it('cancels a site still uploading at the upload deadline and aggregates the rest', () => {
    const d = startedRun({ expectedSites: ['a', 'b', 'c'] });
    for (const site of ['a', 'b', 'c']) d.send({ type: 'uploadStarted', site, round: 1, attempt: 0 });
    d.send({ type: 'uploadCompleted', site: 'a', round: 1, attempt: 0, weight: 1 });
    d.send({ type: 'uploadCompleted', site: 'b', round: 1, attempt: 0, weight: 2 });
    const effects = d.fireDeadline();
    expect(effects[0]).toEqual({ type: 'cancelSites', round: 1, attempt: 0, sites: ['c'], reason: 'upload deadline passed' });
    expect(runIn(d.state, 'aggregate').dropped).toEqual(['c']);
  });

  it('aborts the attempt when fewer than minSites remain and reopens the same round at attempt + 1', () => {
    const d = startedRun({ expectedSites: ['a', 'b', 'c'] });
    d.send({ type: 'siteFailed', site: 'a', round: 1, attempt: 0, reason: 'OOM' });
    expect(d.state.run.phase).toBe('training');
    d.send({ type: 'siteDisconnected', site: 'b' });
    // Only c is alive: abort, cancel c, reopen round 1 attempt 1. Only a and c are connected, not the
    // expected three, so open waits.
    const aborted = effectsOf(d.effects, 'recordRoundAborted');
    expect(aborted).toEqual([{ type: 'recordRoundAborted', round: 1, attempt: 0, reason: 'only 1 of 2 required sites remain' }]);
    expect(effectsOf(d.effects, 'cancelSites')).toEqual([
      { type: 'cancelSites', round: 1, attempt: 0, sites: ['c'], reason: 'only 1 of 2 required sites remain' },
    ]);
    expect(d.state.run).toEqual({ phase: 'open', plan: makePlan({ expectedSites: ['a', 'b', 'c'] }), round: 1, attempt: 1, deadline: d.now + DEADLINES.open });
    expect(effectsOf(d.effects, 'recordRoundOpened').at(-1)).toEqual({ type: 'recordRoundOpened', round: 1, attempt: 1 });
    // The old attempt's events are stale now, in the new attempt's training too.
    d.send({ type: 'siteConnected', site: 'b' });
    expect(d.current()).toEqual({ round: 1, attempt: 1 });
    d.refuse({ type: 'uploadStarted', site: 'c', round: 1, attempt: 0 }, REFUSAL_CODES.stale);
    d.refuse({ type: 'deadline', round: 1, attempt: 0, phase: 'training' }, REFUSAL_CODES.stale);
  });

  it('fails the run with runFailed once maxAttempts attempts of a round were aborted', () => {
    const d = startedRun({ maxAttempts: 2 }, ['a']); // one site, minSites 2: every open times out
    d.fireDeadline();
    expect(d.current()).toEqual({ round: 1, attempt: 1 });
    const effects = d.fireDeadline();
    expect(effects).toEqual([
      { type: 'recordRoundAborted', round: 1, attempt: 1, reason: 'only 1 of 2 required sites connected' },
      { type: 'runFailed', reason: 'round 1 failed 2 attempts' },
    ]);
    expect(d.state.run).toEqual({ phase: 'failed', plan: makePlan({ maxAttempts: 2 }), reason: 'round 1 failed 2 attempts' });
    expect(effectsOf(d.effects, 'recordRoundOpened')).toHaveLength(2);
  });

  it('gives each round its own attempt budget', () => {
    const d = startedRun({ maxAttempts: 2, expectedSites: ['a', 'b', 'c'] });
    const finishRound = (): void => {
      for (const s of ['a', 'b', 'c']) d.upload(s, 1);
      expect(d.state.run.phase).toBe('aggregate');
    };
    finishRound();
    d.send({ type: 'aggregationFailed', round: 1, attempt: 0, reason: 'NaN in update' });
    expect(d.current()).toEqual({ round: 1, attempt: 1 });
    finishRound();
    d.send({ type: 'aggregated', round: 1, attempt: 1, modelSha256: 'm1' });
    d.send({ type: 'committed', round: 1, attempt: 1 });
    expect(d.current()).toEqual({ round: 2, attempt: 0 });
    finishRound();
    d.fireDeadline(); // aggregation deadline: round 2's first abort, not the run's third
    expect(d.current()).toEqual({ round: 2, attempt: 1 });
    expect(effectsOf(d.effects, 'runFailed')).toEqual([]);
  });
});

describe('the open phase', () => {
  it('waits for every expected site before its deadline, even with minSites connected', () => {
    const d = startedRun({ expectedSites: ['a', 'b', 'c'] }, ['a', 'b']);
    expect(d.state.run.phase).toBe('open');
    d.advance(100);
    d.send({ type: 'siteConnected', site: 'c' });
    expect(Object.keys(rosterOf(d.state))).toEqual(['a', 'b', 'c']);
  });

  it('starts at its deadline with at least minSites when an expected site is missing', () => {
    const d = startedRun({ expectedSites: ['a', 'b', 'c'] }, ['a', 'b']);
    const effects = d.fireDeadline();
    expect(effects).toEqual([
      ...enteredEffects(1, 0, 'training', T0 + DEADLINES.open),
      { type: 'sendTrainTasks', round: 1, attempt: 0, sites: ['a', 'b'] },
    ]);
  });

  it('aborts the attempt at its deadline with fewer than minSites', () => {
    const d = startedRun({ expectedSites: ['a', 'b', 'c'] }, ['a']);
    const effects = d.fireDeadline();
    expect(effects).toEqual([
      { type: 'recordRoundAborted', round: 1, attempt: 0, reason: 'only 1 of 2 required sites connected' },
      { type: 'recordRoundOpened', round: 1, attempt: 1 },
      ...enteredEffects(1, 1, 'open', T0 + DEADLINES.open),
    ]);
  });

  it('does not start for sites that left again', () => {
    const d = startedRun({ expectedSites: ['a', 'b', 'c'] }, ['a', 'b']);
    d.send({ type: 'siteDisconnected', site: 'b' });
    d.fireDeadline();
    expect(d.state.run.phase).toBe('open');
    expect(d.current()).toEqual({ round: 1, attempt: 1 });
  });
});

describe('an excused expected site (revoked: it can never connect)', () => {
  it('starts training at once with the others when the missing expected site is excused', () => {
    const d = startedRun({ expectedSites: ['a', 'b', 'c'] }, ['a', 'b']);
    expect(d.state.run.phase).toBe('open');
    d.advance(100);
    const effects = d.send({ type: 'siteExcused', site: 'c', excused: true });
    expect(effects).toEqual([...enteredEffects(1, 0, 'training', d.now), { type: 'sendTrainTasks', round: 1, attempt: 0, sites: ['a', 'b'] }]);
    expect(d.state.excused).toEqual(['c']);
  });

  it('does not wait for it in the next round either, nor start below minSites', () => {
    const d = startedRun({ expectedSites: ['a', 'b', 'c'] }, []);
    d.send({ type: 'siteExcused', site: 'c', excused: true });
    d.send({ type: 'siteConnected', site: 'a' });
    expect(d.state.run.phase).toBe('open');
    d.send({ type: 'siteConnected', site: 'b' });
    d.upload('a', 1);
    d.upload('b', 2);
    d.send({ type: 'aggregated', round: 1, attempt: 0, modelSha256: 'sha-1' });
    const effects = d.send({ type: 'committed', round: 1, attempt: 0 });
    expect(effectsOf(effects, 'sendTrainTasks')).toEqual([{ type: 'sendTrainTasks', round: 2, attempt: 0, sites: ['a', 'b'] }]);
  });

  it('is waited for again once the excusal is lifted (approved again)', () => {
    const d = startedRun({ expectedSites: ['a', 'b', 'c'] }, []);
    d.send({ type: 'siteExcused', site: 'c', excused: true });
    expect(d.send({ type: 'siteExcused', site: 'c', excused: false })).toEqual([]);
    expect(d.state.excused).toEqual([]);
    d.send({ type: 'siteConnected', site: 'a' });
    d.send({ type: 'siteConnected', site: 'b' });
    expect(d.state.run.phase).toBe('open');
    d.send({ type: 'siteConnected', site: 'c' });
    expect(Object.keys(rosterOf(d.state))).toEqual(['a', 'b', 'c']);
  });

  it('keeps an excusal recorded in every phase and applies it at the next open', () => {
    const d = startedRun({ expectedSites: ['a', 'b', 'c'] });
    expect(d.send({ type: 'siteExcused', site: 'c', excused: true })).toEqual([]);
    expect(d.state.run.phase).toBe('training');
    d.send({ type: 'siteDisconnected', site: 'c' });
    d.upload('a', 1);
    d.upload('b', 2);
    d.send({ type: 'aggregated', round: 1, attempt: 0, modelSha256: 'sha-1' });
    d.send({ type: 'committed', round: 1, attempt: 0 });
    expect(d.current()).toEqual({ round: 2, attempt: 0 });
    expect(Object.keys(rosterOf(d.state))).toEqual(['a', 'b']);
  });
});

describe('operator abort', () => {
  it.each(['open', 'training', 'upload', 'aggregate'] as const)('fails the run from %s with runFailed', (phase) => {
    const d = startedRun({ expectedSites: ['a', 'b', 'c'] }, phase === 'open' ? ['a'] : ['a', 'b', 'c']);
    if (phase === 'upload' || phase === 'aggregate') for (const s of ['a', 'b', 'c']) d.send({ type: 'uploadStarted', site: s, round: 1, attempt: 0 });
    if (phase === 'aggregate') for (const s of ['a', 'b', 'c']) d.send({ type: 'uploadCompleted', site: s, round: 1, attempt: 0, weight: 1 });
    expect(d.state.run.phase).toBe(phase);
    const effects = d.send({ type: 'abortRequested', reason: 'stop' });
    expect(effects.at(-2)).toEqual({ type: 'recordRoundAborted', round: 1, attempt: 0, reason: 'stop' });
    expect(effects.at(-1)).toEqual({ type: 'runFailed', reason: 'stop' });
    expect(d.state.run).toEqual({ phase: 'failed', plan: makePlan({ expectedSites: ['a', 'b', 'c'] }), reason: 'stop' });
  });
});
