/**
 * Guarantee 2: real site agents that die (`fedhpc site --die-at PHASE`, SIGKILL of their own
 * process) at each secure phase. With at least t sites left the round completes with the
 * survivors; a site that dies during `unmask` already has its masked input in the sum, so it is a
 * participant (its self seed is rebuilt from the others' shares). With fewer than t left the
 * attempt aborts cleanly with its reason in the coordinator log and `admin rounds`, nothing is
 * committed for it, and the next attempt commits.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { RoundInfo__Output } from '../../proto/index.js';
import { createTestFederation, startCli, startCoordinatorProcess, startSiteProcess, waitFor, type Proc, type TestFederation } from '../helpers/federation.js';
import { journalBodies, journalPath, parseLog } from '../helpers/faults.js';

const PHASES = ['keys', 'shares', 'upload', 'unmask'] as const;

let fed: TestFederation | undefined;
const procs: Proc[] = [];
afterEach(async () => {
  for (const p of procs.splice(0).reverse()) await p.stop();
  await fed?.cleanup();
  fed = undefined;
});

function startDoomed(f: TestFederation, site: string, phase: string | undefined, name: string): Promise<Proc> {
  return startCli(name, ['site', '--config', f.files.siteConfigs.get(site)!, ...(phase ? ['--die-at', phase] : [])], f.dir);
}

async function roundsOnceCommitted(f: TestFederation, round: number, timeoutMs: number): Promise<RoundInfo__Output[]> {
  const admin = f.admin();
  return waitFor(
    `round ${round} to commit`,
    async () => {
      const r = await admin.rounds();
      if ((await admin.status()).runState === 'failed') throw new Error('the run failed');
      return r.rounds.some((x) => x.outcome === 'committed' && Number(x.round) === round) ? r.rounds : undefined;
    },
    timeoutMs,
    250,
  );
}

async function withLogs<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    const tails = await Promise.all(procs.map(async (x) => `--- ${x.log}\n${(await x.logText().catch(() => '')).split('\n').slice(-8).join('\n')}`));
    throw new Error(`${(err as Error).message}\n${tails.join('\n')}`);
  }
}

describe('secure rounds with a site that dies at each phase', () => {
  it('completes every round with the survivors; a site lost at unmask is a participant, at keys/shares/upload it is dropped', async () => {
    fed = await createTestFederation({
      sites: 4,
      // minSites 3 ⇒ t = max(2, 3) = 3: one site of four may go at any phase.
      run: { rounds: 5, minSites: 3, evaluate: false, train: { steps: 4, batchSize: 16, lr: 0.01 }, deadlines: { openS: 30, trainingS: 60, uploadS: 60, aggregateS: 30, commitS: 30, evalS: 15, keysS: 30, sharesS: 30, unmaskS: 30 } },
    });
    // site-2 uploads in small chunks, so dying half-way through its upload really is half-way.
    await fed.patchSiteConfig('site-2', (cfg) => ({ ...cfg, transfer: { chunkBytes: 4096 } }));
    const coordinator = await startCoordinatorProcess(fed);
    procs.push(coordinator);
    for (const s of ['site-1', 'site-3', 'site-4']) procs.push(await startSiteProcess(fed, s));
    // site-2 dies at keys in round 1, shares in round 2, upload in round 3, unmask in round 4;
    // each time it is restarted (to die at the next phase) and round 5 has everybody.
    const deaths: string[] = [];
    const launch = async (i: number): Promise<void> => {
      const phase = PHASES[i];
      const p = await startDoomed(fed!, 'site-2', phase, `site-2-${phase ?? 'plain'}`);
      procs.push(p);
      if (phase) void p.exited.then((code) => (deaths.push(`${phase}:${String(code)}`), launch(i + 1)));
    };
    await launch(0);

    const rounds = await withLogs(roundsOnceCommitted(fed, 5, 150_000));
    const byRound = new Map(rounds.filter((r) => r.outcome === 'committed').map((r) => [Number(r.round), r]));
    expect(deaths).toEqual(['keys:SIGKILL', 'shares:SIGKILL', 'upload:SIGKILL', 'unmask:SIGKILL']);
    for (const [i, phase] of PHASES.entries()) {
      const r = byRound.get(i + 1)!;
      const all = ['site-1', 'site-2', 'site-3', 'site-4'];
      if (phase === 'unmask') {
        expect([...r.participants].sort(), phase).toEqual(all);
        expect(r.dropped, phase).toEqual([]);
      } else {
        expect([...r.participants].sort(), phase).toEqual(['site-1', 'site-3', 'site-4']);
        expect(r.dropped, phase).toEqual(['site-2']);
      }
    }
    expect([...byRound.get(5)!.participants].sort()).toEqual(['site-1', 'site-2', 'site-3', 'site-4']);
    // One attempt per round, never an abort: the survivors were enough each time.
    expect(rounds.filter((r) => r.outcome === 'aborted')).toEqual([]);
    const committed = await journalBodies(journalPath(fed), 'round-committed');
    expect(committed.map((c) => [c['round'], c['attempt']])).toEqual([1, 2, 3, 4, 5].map((r) => [r, 0]));
    for (let i = 1; i < committed.length; i++) expect(committed[i]!['parentSha256']).toBe(committed[i - 1]!['modelSha256']);
    // Every round started at keys, in order, once.
    const log = parseLog(await coordinator.logText());
    expect(log.filter((l) => l.msg === 'phase keys').map((l) => l['round'])).toEqual([1, 2, 3, 4, 5]);
  }, 180_000);

  it('aborts an attempt that keeps fewer than t sites (2 of 3 die at unmask, t = 2) with its reason logged, commits nothing for it, and the next attempt commits', async () => {
    fed = await createTestFederation({
      sites: 3,
      run: { rounds: 1, minSites: 2, evaluate: false, train: { steps: 4, batchSize: 16, lr: 0.01 }, deadlines: { openS: 30, trainingS: 60, uploadS: 60, aggregateS: 30, commitS: 30, evalS: 15, keysS: 30, sharesS: 30, unmaskS: 30 } },
    });
    const coordinator = await startCoordinatorProcess(fed);
    procs.push(coordinator);
    procs.push(await startSiteProcess(fed, 'site-1'));
    const deaths: string[] = [];
    for (const s of ['site-2', 'site-3']) {
      const p = await startDoomed(fed, s, 'unmask', `${s}-doomed`);
      procs.push(p);
      // Back (healthy) once dead, in time for the next attempt.
      void p.exited.then(async (code) => {
        deaths.push(`${s}:${String(code)}`);
        procs.push(await startDoomed(fed!, s, undefined, `${s}-again`));
      });
    }
    const rounds = await withLogs(roundsOnceCommitted(fed, 1, 120_000));
    expect(deaths.sort()).toEqual(['site-2:SIGKILL', 'site-3:SIGKILL']);
    const aborted = rounds.filter((r) => r.outcome === 'aborted');
    expect(aborted).toHaveLength(1);
    expect(aborted[0]).toMatchObject({ round: '1', attempt: 0 });
    expect(aborted[0]!.reason).toMatch(/only 1 of 2 sites answered the (consistency|reveal) step/);
    const committed = rounds.filter((r) => r.outcome === 'committed');
    expect(committed.map((r) => [Number(r.round), r.attempt])).toEqual([[1, 1]]);
    expect([...committed[0]!.participants].sort()).toEqual(['site-1', 'site-2', 'site-3']);
    // The journal: attempt 0 aborted (no model), attempt 1 committed on top of the initial model.
    const journal = journalPath(fed);
    expect((await journalBodies(journal, 'round-aborted')).map((b) => [b['round'], b['attempt'], b['reason']])).toEqual([[1, 0, aborted[0]!.reason]]);
    const started = (await journalBodies(journal, 'run-started'))[0]!;
    const commits = await journalBodies(journal, 'round-committed');
    expect(commits.map((b) => [b['round'], b['attempt']])).toEqual([[1, 1]]);
    expect(commits[0]!['parentSha256']).toBe(started['initialModelSha256']);
    // The coordinator logged why, and the retry started again at keys.
    const log = parseLog(await coordinator.logText());
    const abortLine = log.find((l) => l.msg === 'round attempt aborted');
    expect(abortLine).toMatchObject({ round: 1, attempt: 0 });
    expect(String(abortLine!['reason'])).toBe(aborted[0]!.reason);
    expect(log.filter((l) => l.msg === 'phase keys').map((l) => [l['round'], l['attempt']])).toEqual([[1, 0], [1, 1]]);
  }, 150_000);
});
