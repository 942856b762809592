/**
 * Robust aggregators end to end: a plain federation of real processes whose coordinator combines
 * the deltas with the coordinate-wise median commits every round with every site, the loss going
 * down; the same config with secure aggregation on is refused at start-up, naming the field.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createTestFederation, startCoordinatorProcess, startSiteProcess, waitFor, type Proc, type TestFederation } from '../helpers/federation.js';

describe('robust aggregation', () => {
  let fed: TestFederation | undefined;
  const procs: Proc[] = [];
  afterEach(async () => {
    for (const p of procs.splice(0).reverse()) await p.stop();
    await fed?.cleanup();
  });

  it('trains with the coordinate-wise median of three sites, the loss going down', async () => {
    fed = await createTestFederation({ sites: 3, run: { rounds: 2, minSites: 3, aggregator: { name: 'median' }, secureAggregation: { enabled: false } } });
    procs.push(await startCoordinatorProcess(fed));
    for (const s of fed.sites) procs.push(await startSiteProcess(fed, s));
    const admin = fed.admin();
    const rounds = await waitFor('2 committed rounds with their evaluation', async () => {
      const r = await admin.rounds();
      const done = r.rounds.filter((x) => x.outcome === 'committed');
      return done.length >= 2 && done[1]!.hasEval && r.hasInitialEval ? r : undefined;
    }, 120_000);
    const committed = rounds.rounds.filter((r) => r.outcome === 'committed');
    for (const r of committed) expect([...r.participants].sort()).toEqual(['site-1', 'site-2', 'site-3']);
    expect(committed[1]!.evalLoss).toBeLessThan(rounds.initialEvalLoss);
  }, 150_000);

  it('refuses to start a coordinator whose run asks for the median under secure aggregation', async () => {
    fed = await createTestFederation({ sites: 2, run: { rounds: 1, minSites: 2, aggregator: { name: 'median' } } });
    const coordinator = await startCoordinatorProcess(fed);
    procs.push(coordinator);
    const code = await coordinator.exited;
    expect(code).not.toBe(0);
    expect(await coordinator.logText()).toMatch(/run\.aggregator: median needs each site's own update/);
  }, 60_000);
});
