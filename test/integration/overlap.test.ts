/**
 * Overlapped rounds end to end (issue 17): real coordinator and agent processes whose sites run
 * persistent trainers — the stand-in's (paced sleeps, real timestamps, a real model) and a
 * contract-following fake process through the command runner. A secure overlapped run commits every
 * round with every site, each applying the last global late by some steps and busy nearly all the
 * time; a coordinator SIGKILLed mid-overlap resumes without losing or repeating a committed sync; a
 * trainer killed mid-run is restarted from its state; a trainer that stops applying globals is
 * refused (STALE_TRAINER) and its round goes on without it.
 */
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { journalPath, readJsonLines, type JournalLine } from '../helpers/faults.js';
import { createTestFederation, startCoordinatorProcess, startSiteProcess, waitFor, waitForCommitted, type Proc, type TestFederation } from '../helpers/federation.js';

const FAKE_TRAINER = resolve('test/fixtures/trainers/fake-persistent-trainer.mjs');
const TRAIN = { batch_size: 4, seq_len: 8, budget: { seconds: 1 }, overlap: { mode: 'whole-model', maxAppliedSteps: 500 } };
const DEADLINES = { openS: 30, trainingS: 30, uploadS: 30, aggregateS: 30, commitS: 30, evalS: 15 };

interface Committed {
  type: 'round-committed';
  round: number;
  participants: { site: string; tokens: number; appliedStaleness?: number }[];
}

/** The session directory of `site`'s persistent trainer in the test run. */
async function sessionOf(fed: TestFederation, site: string): Promise<string> {
  const file = fed.files.siteConfigs.get(site)!;
  const cfg = JSON.parse(await readFile(file, 'utf8')) as { workDir: string };
  return join(resolve(dirname(file), cfg.workDir), 'persistent', 'test-run');
}

async function committed(fed: TestFederation): Promise<Committed[]> {
  return (await readJsonLines<JournalLine>(journalPath(fed))).map((l) => l.body).filter((b) => b.type === 'round-committed') as unknown as Committed[];
}

describe('overlapped rounds with persistent trainers', () => {
  let fed: TestFederation | undefined;
  const procs: Proc[] = [];
  afterEach(async () => {
    for (const p of procs.splice(0).reverse()) await p.stop();
    await fed?.cleanup();
    fed = undefined;
  });

  it('commits every secure round with every site, resumes after the coordinator is SIGKILLed mid-overlap, and counts each sync once', async () => {
    fed = await createTestFederation({ sites: 3, run: { rounds: 5, minSites: 3, weighting: 'tokens', maxSiteWeight: 50_000, train: TRAIN, deadlines: DEADLINES } });
    for (const [i, site] of fed.sites.entries()) {
      await fed.patchSiteConfig(site, (c) => ({ ...c, runner: { kind: 'standin', speed: i + 1, stepMs: 40, seed: i + 1 } }));
    }
    let coordinator = await startCoordinatorProcess(fed);
    procs.push(coordinator);
    for (const s of fed.sites) procs.push(await startSiteProcess(fed, s));
    await waitForCommitted(fed.admin(), 2, 90_000);
    expect(await coordinator.stop('SIGKILL')).toBe('SIGKILL');
    coordinator = await startCoordinatorProcess(fed);
    procs.push(coordinator);

    await waitFor('the run to finish', async () => ((await fed!.admin().status()).runState === 'finished' ? true : undefined), 120_000);
    const commits = await committed(fed);
    expect(commits.map((c) => c.round)).toEqual([1, 2, 3, 4, 5]);
    for (const c of commits) expect(c.participants.map((p) => p.site).sort()).toEqual(['site-1', 'site-2', 'site-3']);
    // The syncs after the first applied the last global late, by fewer steps than a budget takes at the fastest site (25 steps/s).
    const late = commits.slice(1).flatMap((c) => c.participants.map((p) => p.appliedStaleness ?? 0));
    expect(Math.max(...late)).toBeGreaterThan(0);
    expect(Math.max(...late)).toBeLessThanOrEqual(500);
    // Each site's trainer kept training through the syncs: its tokens per round grow with its speed.
    const last = commits[commits.length - 1]!.participants;
    const tokens = (site: string): number => last.find((p) => p.site === site)!.tokens;
    expect(tokens('site-3')).toBeGreaterThan(tokens('site-1'));
    const status = await fed.admin().status();
    expect(status.maxAppliedStalenessSteps).toBe(Math.max(...commits.flatMap((c) => c.participants.map((p) => p.appliedStaleness ?? 0))));
    // One persistent trainer per site for the whole run, in its session directory.
    const progress = await readFile(join(await sessionOf(fed, 'site-1'), 'progress.jsonl'), 'utf8');
    expect(progress.trim().split('\n').length).toBeGreaterThan(50);
  }, 240_000);

  it('restarts a trainer killed mid-run from its state, and refuses the uploads of one that stopped applying globals', async () => {
    fed = await createTestFederation({
      sites: 2,
      run: { rounds: 3, minSites: 1, evaluate: false, secureAggregation: { enabled: false }, weighting: 'tokens', maxSiteWeight: 50_000, train: { ...TRAIN, overlap: { mode: 'whole-model', maxAppliedSteps: 100 } }, deadlines: DEADLINES },
    });
    // site-1's trainer answers each sync after 0.5 s; site-2's reports 1000 steps of applied staleness.
    const fake = (extra: Record<string, unknown>) => ({ kind: 'command', command: [process.execPath, FAKE_TRAINER], maxRetries: 1, maxResumes: 0, killGraceS: 1, data: { fake: extra } });
    await fed.patchSiteConfig('site-1', (c) => ({ ...c, runner: fake({ sleepMs: 500 }) }));
    await fed.patchSiteConfig('site-2', (c) => ({ ...c, runner: fake({ appliedStaleness: 1000 }) }));
    procs.push(await startCoordinatorProcess(fed));
    const agents = new Map<string, Proc>();
    for (const s of fed.sites) agents.set(s, await startSiteProcess(fed, s));
    procs.push(...agents.values());
    await waitForCommitted(fed.admin(), 1, 60_000);
    // Mid-sync (its trainer takes 0.5 s to answer the next one), site-1's trainer dies.
    const session = await sessionOf(fed, 'site-1');
    const pid = Number(await readFile(join(session, 'trainer.pid'), 'utf8'));
    process.kill(-pid, 'SIGKILL');

    await waitForCommitted(fed.admin(), 3, 120_000);
    const commits = await committed(fed);
    // Every round counted site-1's sync once (the restarted trainer resumed from its state); site-2 never counted.
    for (const c of commits) expect(c.participants.map((p) => p.site)).toEqual(['site-1']);
    expect((await readFile(join(session, 'runs.log'), 'utf8')).trim().split('\n')).toHaveLength(2);
    expect(await agents.get('site-2')!.logText()).toContain('STALE_TRAINER');
  }, 180_000);
});
