/**
 * `fedhpc admin revoke` mid-round, plain and secure: the revoked site's streams are closed, its
 * agent is refused at its next call (PERMISSION_DENIED, and gives up), the round completes with
 * the others, later rounds no longer wait in `open` for it although the run expects it, the
 * revocation survives a coordinator restart, and once an admin approves a new key for the site,
 * rounds wait for it again. Real processes over mTLS.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import type { AdminClient } from '../../coordinator/index.js';
import {
  CLI,
  createTestFederation,
  startCli,
  startCoordinatorProcess,
  startSiteProcess,
  waitFor,
  waitForCommitted,
  type Proc,
  type TestFederation,
} from '../helpers/federation.js';

const exec = promisify(execFile);

/** The open deadline: far longer than any round here may wait in `open` for sites that can come. */
const OPEN_S = 60;

/**
 * A federation of 3 expected sites where site-3 uploads slowly, so that it can be revoked
 * mid-upload. Five rounds: the fourth opens under a restarted coordinator, the fifth after site-3
 * is enrolled again. In the plain run site-2 uploads at a few seconds a round too, so that round 4
 * is still under way when the test, having seen it leave `open`, pauses the run (unthrottled, a
 * round took about a second, which a loaded machine could spend before the pause arrived).
 */
async function slowSiteFederation(secure: boolean): Promise<{ fed: TestFederation; procs: Proc[]; admin: AdminClient }> {
  const fed = await createTestFederation({
    sites: 3,
    run: {
      rounds: 5,
      minSites: 2,
      train: { steps: 10, batchSize: 16, lr: 0.01 },
      deadlines: { openS: OPEN_S, trainingS: 60, uploadS: 60, aggregateS: 30, commitS: 30, evalS: 15 },
      secureAggregation: secure ? { enabled: true, threshold: 2 } : { enabled: false },
    },
  });
  await fed.patchSiteConfig('site-3', (c) => ({ ...c, transfer: { uploadRateBytesPerS: 4_000, chunkBytes: 4096 } }));
  // About 5 s for its ~80 KB delta: each round waits for it (site-3 is revoked, minSites is 2).
  if (!secure) await fed.patchSiteConfig('site-2', (c) => ({ ...c, transfer: { uploadRateBytesPerS: 16_000, chunkBytes: 4096 } }));
  const procs = [await startCoordinatorProcess(fed)];
  for (const s of fed.sites) procs.push(await startSiteProcess(fed, s));
  return { fed, procs, admin: fed.admin() };
}

async function revokeWhileUploading(fed: TestFederation, admin: AdminClient, site: string) {
  const uploading = await waitFor(`${site} uploading in round 1`, async () => {
    const { sites } = await admin.sites();
    const s = sites.find((x) => x.siteId === site);
    return s?.activity === 'upload' && s.transferDirection === 'upload' && Number(s.transferBytes) > 0 ? s : undefined;
  }, 90_000, 100);
  // The transfer the site reports is shown per site.
  expect(Number(uploading.transferTotal)).toBeGreaterThan(Number(uploading.transferBytes));
  expect(uploading.transferRateBytesPerS).toBeGreaterThan(0);
  // Revoked from this process, at once: a CLI process would start too late on a loaded machine.
  return admin.revokeSite(site, 'key compromised');
}

/** How long the `open` phase of `round`'s latest attempt lasted, once the attempt moved on. */
async function openPhaseMs(admin: AdminClient, round: number): Promise<number> {
  return waitFor(`round ${round} past open`, async () => {
    const phases = (await admin.round(round)).attempts.at(-1)?.phases ?? [];
    return phases.length > 1 && phases[0]!.phase === 'open' ? Number(phases[0]!.durationMs) : undefined;
  }, (OPEN_S + 30) * 1000);
}

/** Well under OPEN_S: sites that are connected (or reconnecting after a restart) start a round. */
const PROMPT_OPEN_MS = 20_000;

for (const secure of [false, true]) {
  describe(`revoking a site mid-round (${secure ? 'secure aggregation: a dropout' : 'plain: its upload discarded'})`, () => {
    let ctx: Awaited<ReturnType<typeof slowSiteFederation>> | undefined;
    afterAll(async () => {
      for (const p of ctx?.procs.reverse() ?? []) await p.stop();
      await ctx?.fed.cleanup();
    });

    it('drops the site from the open round, which commits with the others; the site is refused from then on', async () => {
      ctx = await slowSiteFederation(secure);
      const { fed, procs, admin } = ctx;
      const revoked = await revokeWhileUploading(fed, admin, 'site-3');
      expect(revoked.siteId).toBe('site-3');
      expect(revoked.droppedFromRound).toBe('1');
      expect(revoked.certificateFingerprints).toHaveLength(1);

      const rounds = await waitForCommitted(admin, 1, 90_000);
      const first = rounds.rounds.find((r) => r.outcome === 'committed')!;
      expect(first.round).toBe('1');
      expect(first.participants).toEqual(['site-1', 'site-2']);
      expect(first.dropped).toContain('site-3');

      // The agent's next call is refused with PERMISSION_DENIED and a clear message; it gives up.
      const site3 = procs[3]!;
      expect(await Promise.race([site3.exited, new Promise((r) => setTimeout(() => r('still running'), 30_000))])).toBe(1);
      expect(await site3.logText()).toMatch(/SITE_REVOKED: site site-3 was revoked by the federation admin/);
      const sites = await admin.sites();
      expect(sites.sites.find((s) => s.siteId === 'site-3')).toMatchObject({ revoked: true, connected: false });
      const table = (await exec(process.execPath, [CLI, 'admin', 'sites', '--config', fed.files.adminConfigs.get('admin')!])).stdout;
      expect(table).toMatch(/\nsite-3 \(revoked\)\s+no\s/);
      const journal = (await readFile(join(fed.member('coordinator'), 'state', 'journal.jsonl'), 'utf8')).trim().split('\n').map((l) => (JSON.parse(l) as { body: Record<string, unknown> }).body);
      expect(journal.find((b) => b['type'] === 'site-revoked')).toMatchObject({ site: 'site-3', reason: 'key compromised', admin: 'admin', fingerprints: revoked.certificateFingerprints });
      // site-3 is still expected, but revoked: round 2 starts with the others at once.
      expect(await openPhaseMs(admin, 2)).toBeLessThan(PROMPT_OPEN_MS);
      await waitForCommitted(admin, 2, 90_000);
    }, 240_000);

    if (!secure) {
      it('keeps the revocation across a coordinator restart', async () => {
        const { fed, procs, admin } = ctx!;
        await procs[0]!.stop();
        procs[0] = await startCoordinatorProcess(fed, 'coordinator-2');
        const again = await startSiteProcess(fed, 'site-3');
        procs.push(again);
        expect(await Promise.race([again.exited, new Promise((r) => setTimeout(() => r('still running'), 30_000))])).toBe(1);
        expect(await again.logText()).toMatch(/coordinator refused this agent: SITE_REVOKED: site site-3 was revoked/);
        const status = await waitFor('the restarted coordinator', () => admin.status(), 30_000);
        expect(status.sitesRevoked).toBe(1);
        // The revocation replayed from the journal: round 4 does not wait for site-3 either.
        expect(await openPhaseMs(admin, 4)).toBeLessThan(PROMPT_OPEN_MS);
        // Held after round 4 (still under way: site-2's upload alone takes seconds), so site-3 can be
        // enrolled again before round 5.
        await admin.pause('re-enrolling site-3');
        await waitForCommitted(admin, 4, 90_000);
        expect((await admin.rounds()).rounds.filter((r) => r.outcome === 'committed').every((r) => !r.participants.includes('site-3'))).toBe(true);
      }, 180_000);

      it('waits for the site again once an admin approves a new key for it', async () => {
        const { fed, procs, admin } = ctx!;
        const held = await waitFor('the run held', async () => {
          const st = await admin.status();
          return st.runState === 'paused' ? st : undefined;
        }, 90_000, 200);
        // The pause reached the coordinator while round 4 was under way: held after round 4.
        expect(Number(held.roundsCommitted)).toBe(4);
        const dir = join(fed.dir, 're-enrol-site-3');
        await exec(process.execPath, [CLI, 'site', 'enroll', '--site', 'site-3', '--federation', 'testfed', '--out', dir]);
        const approve = ['admin', 'approve', 'site-3', '--csr', join(dir, 'site.csr'), '--ca', join(fed.dir, 'ca'), '--config', fed.files.adminConfigs.get('admin')!, '--json'];
        const approved = JSON.parse((await exec(process.execPath, [CLI, ...approve])).stdout) as { config: string };
        await admin.resume();
        // Round 5 waits in open for site-3, expected and no longer revoked, while its agent is not running.
        await waitFor('round 5 open', async () => {
          const st = await admin.status();
          return st.round === '5' && st.phase === 'open' ? true : undefined;
        }, 30_000, 200);
        await sleep(5_000);
        expect(await admin.status()).toMatchObject({ round: '5', phase: 'open' });
        procs.push(await startCli('site-3-again', ['site', '--config', approved.config], fed.dir));
        await waitForCommitted(admin, 5, 120_000);
        const fifth = (await admin.rounds()).rounds.find((r) => r.round === '5' && r.outcome === 'committed')!;
        expect(fifth.participants).toEqual(['site-1', 'site-2', 'site-3']);
      }, 180_000);
    }
  });
}
