/**
 * A federation of containers: coordinator and three site agents, each in its own container on a
 * user-defined network with its own certificate, secure aggregation on, three rounds.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { ContainerFederation, containerState, recordFigure, skipWithoutDocker } from './harness.js';
import { waitFor } from '../helpers/federation.js';

const skip = await skipWithoutDocker();
const suiteStart = Date.now();

describe.skipIf(skip)('three site containers and a coordinator container, secure aggregation on', () => {
  let fed: ContainerFederation | undefined;
  afterAll(async () => fed?.close());

  it('commits three secure rounds, and every site holds the final model, byte for byte', { timeout: 300_000 }, async () => {
    // min 3 of 3: a site slow on a loaded machine delays a round instead of leaving it.
    fed = await ContainerFederation.start({ sites: 3, rounds: 3, minSites: 3 });
    const sites = ['site-1', 'site-2', 'site-3'];
    for (const s of sites) await fed.startSite(s);

    const { rounds, modelSha256 } = await fed.waitForRun(3);
    const committed = rounds.rounds.filter((r) => r.outcome === 'committed');
    expect(committed.map((r) => Number(r.round))).toEqual([1, 2, 3]);
    for (const r of committed) expect([...r.participants].sort()).toEqual(sites);
    expect(committed[2]!.modelSha256).toBe(modelSha256);
    // Each committed round builds on the one before.
    expect(committed[1]!.parentSha256).toBe(committed[0]!.modelSha256);
    expect(committed[2]!.parentSha256).toBe(committed[1]!.modelSha256);

    // Secure aggregation ran in every round: keys, shares and unmask phases were opened.
    for (const round of [1, 2, 3]) {
      const phases = fed.eventsOf('phase.changed').filter((e) => e.body['round'] === round).map((e) => e.body['phase']);
      expect(phases).toEqual(expect.arrayContaining(['keys', 'shares', 'training', 'upload', 'unmask']));
    }
    // Every site downloaded the final model into its own volume; its bytes hash to the name.
    for (const s of sites) expect(await fed.siteHolds(s, modelSha256)).toBe(modelSha256);

    // The image's HEALTHCHECK (a gRPC health check over mTLS) reports the coordinator healthy.
    const health = await waitFor('the coordinator to be healthy', async () => {
      const st = await containerState(fed!.coordinator.getName());
      return st.health === 'healthy' ? st.health : undefined;
    }, 30_000, 500);
    expect(health).toBe('healthy');

    const firstCommit = fed.eventsOf('round.committed')[0]!;
    await recordFigure({
      figure: 'first-committed-round',
      scenario: 'three sites, three secure rounds',
      secondsFromTestFileStart: (firstCommit.ts - suiteStart) / 1000,
      secondsForThreeRounds: (Number(committed[2]!.finishedMs) - Number(committed[0]!.startedMs)) / 1000,
    });
  });
});
