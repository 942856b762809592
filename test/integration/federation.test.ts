import { afterEach, describe, expect, it } from 'vitest';
import {
  createTestFederation,
  startCoordinatorProcess,
  startSiteProcess,
  waitForCommitted,
  type Proc,
  type TestFederation,
} from '../helpers/federation.js';

describe('a federation of real processes on loopback', () => {
  let fed: TestFederation | undefined;
  const procs: Proc[] = [];
  afterEach(async () => {
    for (const p of procs.splice(0).reverse()) await p.stop();
    await fed?.cleanup();
  });

  it('runs three rounds with three sites and every site contributes to every round', async () => {
    fed = await createTestFederation({ sites: 3, run: { rounds: 3 } });
    procs.push(await startCoordinatorProcess(fed));
    for (const s of fed.sites) procs.push(await startSiteProcess(fed, s));
    const admin = fed.admin();
    const rounds = await waitForCommitted(admin, 3);
    const committed = rounds.rounds.filter((r) => r.outcome === 'committed');
    expect(committed.map((r) => Number(r.round))).toEqual([1, 2, 3]);
    for (const r of committed) expect([...r.participants].sort()).toEqual(['site-1', 'site-2', 'site-3']);
    // Each round's model descends from the previous one.
    expect(committed[1]!.parentSha256).toBe(committed[0]!.modelSha256);
    expect(committed[2]!.parentSha256).toBe(committed[1]!.modelSha256);
    const status = await admin.status();
    expect(status.globalModelSha256).toBe(committed[2]!.modelSha256);
  }, 120_000);
});
