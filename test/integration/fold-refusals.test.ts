/**
 * Kept work the coordinator would not count (issue 16): a real coordinator in this process, real
 * site agents with stand-in trainers of known deltas (test/helpers/known-delta-runner.ts), and a
 * kept part the test plants in site-2's kept-work folder through the store the agent uses
 * (site-agent/kept-work.ts) as site-2 starts a round's shard — its base is the run's initial model,
 * whose site-2 work round 1 already counted.
 * - With max_staleness 1, planted at round 3 (two rounds old): the agent drops it, never sends it.
 * - Planted at round 2 (one round old): the agent folds it, the coordinator refuses the upload with
 *   ALREADY_COUNTED (refusing the stream, not the site); the agent drops the part and sends its
 *   fresh delta alone in the same attempt, which round 2 commits.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { initBuiltinModel, resolveBuiltinConfig, writeBuiltinModel } from '../../site-agent/index.js';
import { KeptWork, keptWorkDir } from '../../site-agent/kept-work.js';
import { openSafetensors } from '../../aggregation/index.js';
import { openFileSource, sha256File } from '../../common/files.js';
import { silentLogger } from '../../common/logger.js';
import { committedRecords } from '../helpers/faults.js';
import { countedWork, keptFiles } from '../helpers/fold-checks.js';
import { createTestFederation, startCoordinatorInProcess, waitForCommitted, type TestFederation } from '../helpers/federation.js';
import { FoldTestRun, type InProcessAgent, KnownDeltaRunner, knownSamples, startKnownDeltaAgent } from '../helpers/known-delta-runner.js';
import { expectLogs } from '../helpers/logger.js';

const MAX_SITE_WEIGHT = 1000;
const PLANTED_SAMPLES = 400;

const live = new FoldTestRun();
afterEach(() => live.stop());

/**
 * A federation of three plain sites; as site-2 starts its shard of `plantAt`, a kept part trained
 * from the initial model (round 0) appears in its kept-work folder.
 */
async function federation(maxStaleness: number, plantAt: number): Promise<{ f: TestFederation; site2: InProcessAgent; initialSha256: string }> {
  const f = await createTestFederation({
    sites: 3,
    run: { rounds: 3, minSites: 2, maxStaleness, strategy: { name: 'fedavg', lr: 1 }, evaluate: false, maxSiteWeight: MAX_SITE_WEIGHT, secureAggregation: { enabled: false } },
  });
  live.fed = f;
  live.coordinator = await startCoordinatorInProcess(f);
  const initialSha256 = await sha256File(f.files.initialModel);
  const plant = async (workDir: string): Promise<void> => {
    // Some other local model: the initial one trained differently (a builtin init of another seed).
    const config = resolveBuiltinConfig({});
    const localPath = join(workDir, 'planted-local.safetensors');
    await writeBuiltinModel(localPath, initBuiltinModel(config, 99), config);
    const store = await KeptWork.open(keptWorkDir(workDir), silentLogger());
    const result = { outPath: localPath, samples: PLANTED_SAMPLES, tokens: PLANTED_SAMPLES * 8, steps: 4, trainLoss: 2, dataManifestSha256: 'd'.repeat(64) };
    const src = await openFileSource(f.files.initialModel);
    const tensors = (await openSafetensors(src)).tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape }));
    await src.close();
    await store.keep({ runId: 'test-run', round: 1, attempt: 0, baseModelSha256: initialSha256, baseModelRound: 0, basePath: f.files.initialModel, result, tensors }, AbortSignal.timeout(10_000));
  };
  for (const site of f.sites) {
    const runner = new KnownDeltaRunner({
      site,
      samples: knownSamples(site),
      beforeTrain: async (r) => {
        if (site === 'site-2' && r.round === plantAt) await plant(join(r.roundDir, '..'));
      },
    });
    live.agents.push(startKnownDeltaAgent(f, runner, site));
  }
  return { f, site2: live.agents.find((a) => a.site === 'site-2')!, initialSha256 };
}

describe('kept work the coordinator would not count', () => {
  it('a kept part older than max_staleness is dropped, not sent', async () => {
    const { f, site2, initialSha256 } = await federation(1, 3);
    await waitForCommitted(f.admin(), 3, 30_000);
    const commits = await committedRecords(f);
    expect(commits[2]!.participants.map((p) => p.site).sort()).toEqual(['site-1', 'site-2', 'site-3']);
    for (const c of commits) for (const p of c.participants) expect(p.folded ?? [], `round ${c.round}, ${p.site}`).toEqual([]);
    expect(countedWork(commits, 'site-2', initialSha256)).toEqual([{ round: 1, as: 'fresh' }]);
    const dropped = site2.log.lines.find((l) => l.msg === 'kept work dropped');
    expect(dropped).toMatchObject({ why: '2 rounds old, more than max_staleness 1', part: { baseModelRound: 0 } });
    expect(await keptFiles(site2.config.workDir)).toEqual([]);
  }, 40_000);

  it('a fold the coordinator refuses (ALREADY_COUNTED) is dropped and the fresh delta sent alone in the same attempt, which commits it', async () => {
    const inRound2 = (l: { [k: string]: unknown }): boolean => l['site'] === 'site-2' && l['round'] === 2;
    expectLogs(
      // The coordinator refuses the folded header's stream; the agent says it sends the fresh delta alone.
      (l) => l.msg === 'upload refused' && l['site'] === 'site-2' && (l['err'] as { code?: string } | undefined)?.code === 'ALREADY_COUNTED',
      (l) => l.msg === 'the coordinator refused the folded parts: uploading the fresh delta alone' && inRound2(l),
    );
    const { f, site2, initialSha256 } = await federation(2, 2);
    await waitForCommitted(f.admin(), 3, 30_000);
    const commits = await committedRecords(f);
    const [r1, r2] = commits;
    const said = site2.log.lines.filter((l) => l['round'] === 2).map((l) => l.msg);
    expect(said).toEqual(expect.arrayContaining(['folding kept work into this upload', 'the coordinator refused the folded parts: uploading the fresh delta alone', 'delta uploaded']));
    expect(site2.log.lines.some((l) => l.msg === 'kept work dropped' && String(l['why']).includes('ALREADY_COUNTED'))).toBe(true);
    // The planted part is never counted again; site-2's round-2 work counts in round 2, fresh and alone.
    expect(countedWork(commits, 'site-2', initialSha256)).toEqual([{ round: 1, as: 'fresh' }]);
    expect(r2!.participants.map((p) => p.site).sort()).toEqual(['site-1', 'site-2', 'site-3']);
    expect(r2!.participants.find((p) => p.site === 'site-2')).toMatchObject({ baseModelSha256: r1!.modelSha256, weight: knownSamples('site-2')(2) });
    expect(r2!.participants.find((p) => p.site === 'site-2')!.folded ?? []).toEqual([]);
    expect(countedWork(commits, 'site-2', r1!.modelSha256)).toEqual([{ round: 2, as: 'fresh' }]);
    expect(await keptFiles(site2.config.workDir)).toEqual([]);
  }, 40_000);
});
