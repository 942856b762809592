import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createTestFederation,
  startCoordinatorProcess,
  startSiteProcess,
  waitFor,
  waitForCommitted,
  type Proc,
  type TestFederation,
} from '../helpers/federation.js';
import { coordinatorStateDir, isRunning, uploadRateFor, journalBodies, journalPath, listFiles, parseLog } from '../helpers/faults.js';

describe('a site that dies during its upload', () => {
  let fed: TestFederation | undefined;
  const procs: Proc[] = [];
  afterEach(async () => {
    for (const p of procs.splice(0).reverse()) await p.stop();
    await fed?.cleanup();
    fed = undefined;
  });

  it('does not stop the round: it commits without the dead site, leaves no partial contribution and the run goes on', async () => {
    fed = await createTestFederation({
      sites: 3,
      run: {
        rounds: 2,
        minSites: 2,
        // Round 2 waits this long for the dead site before it starts with the two that are left.
        deadlines: { openS: 8, trainingS: 60, uploadS: 60, aggregateS: 30, commitS: 30, evalS: 15 },
      },
    });
    // site-3 takes ~5 s to upload its delta: time enough to kill it half-way.
    const rate = await uploadRateFor(fed, 5);
    // A broken upload is resumable: the site is given up on after this idle (no-progress) timeout.
    await fed.patchCoordinatorConfig((cfg) => ({ ...cfg, limits: { idleTimeoutS: 3 } }));
    await fed.patchSiteConfig('site-3', (cfg) => ({ ...cfg, transfer: { chunkBytes: 4096, uploadRateBytesPerS: rate } }));
    const coordinator = await startCoordinatorProcess(fed);
    procs.push(coordinator);
    const sites = new Map<string, Proc>();
    for (const s of fed.sites) {
      const p = await startSiteProcess(fed, s);
      sites.set(s, p);
      procs.push(p);
    }
    const admin = fed.admin();

    const uploading = await waitFor(
      'site-3 to be part-way through its round-1 upload',
      async () => {
        const site3 = (await admin.sites()).sites.find((s) => s.siteId === 'site-3');
        if (!site3 || site3.activity !== 'upload' || Number(site3.bytesUp) === 0) return undefined;
        const status = await admin.status();
        return Number(status.round) === 1 && Number(status.roundsCommitted) === 0 ? { site3, status } : undefined;
      },
      60_000,
      50,
    );
    expect(Number(uploading.site3.bytesUp)).toBeLessThan(rate * 4);
    await sites.get('site-3')!.stop('SIGKILL');

    // The coordinator keeps the dead upload for the idle timeout (it could resume), then throws
    // its spooled part away.
    const coordinatorLog = async () => parseLog(await coordinator.logText());
    await waitFor('the coordinator to abandon site-3\'s broken upload', async () =>
      (await coordinatorLog()).some((l) => l.msg === 'upload abandoned: no progress for the idle timeout' && l['site'] === 'site-3') ? true : undefined,
    );
    const spool = join(coordinatorStateDir(fed), 'spool');
    expect((await listFiles(spool)).filter((f) => f.includes('site-3'))).toEqual([]);

    const rounds = await waitForCommitted(admin, 2);
    const committed = rounds.rounds.filter((r) => r.outcome === 'committed');
    expect(committed.map((r) => Number(r.round))).toEqual([1, 2]);
    expect([...committed[0]!.participants].sort()).toEqual(['site-1', 'site-2']);
    expect(committed[0]!.dropped).toContain('site-3');
    expect([...committed[1]!.participants].sort()).toEqual(['site-1', 'site-2']);
    expect(committed[1]!.parentSha256).toBe(committed[0]!.modelSha256);

    // No trace of site-3's half upload in what the coordinator recorded or logged.
    const journaled = await journalBodies(journalPath(fed), 'round-committed');
    const round1 = journaled.find((b) => b['round'] === 1)!;
    expect((round1['participants'] as { site: string }[]).map((p) => p.site).sort()).toEqual(['site-1', 'site-2']);
    expect(round1['dropped']).toContain('site-3');
    const log = await coordinatorLog();
    expect(log.filter((l) => l.msg === 'upload verified' && l['site'] === 'site-3')).toEqual([]);
    const commitLine = log.find((l) => l.msg === 'round committed' && l['round'] === 1)!;
    expect([...(commitLine['participants'] as string[])].sort()).toEqual(['site-1', 'site-2']);
    expect((await listFiles(spool)).filter((f) => f.includes('site-3'))).toEqual([]);
    await expect(access(join(spool, `round-1.${committed[0]!.attempt}`, 'site-3.delta'))).rejects.toMatchObject({ code: 'ENOENT' });

    // The coordinator and the other sites survived it all.
    expect(isRunning(coordinator.child)).toBe(true);
    expect(isRunning(sites.get('site-1')!.child)).toBe(true);
    expect(isRunning(sites.get('site-2')!.child)).toBe(true);
    const status = await admin.status();
    expect(Number(status.roundsCommitted)).toBe(2);
  }, 90_000);
});
