/**
 * Faults a federation of containers recovers from: a site container killed during its upload, a
 * site cut off the network for longer than the phase deadline, and the coordinator container
 * restarted mid-round. Each records how long detection and recovery took against the deadline.
 */
import { stat } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { AdminEvent } from '../../coordinator/index.js';
import { docker } from '../../simulate/images.js';
import { patchJsonFile, waitFor } from '../helpers/federation.js';
import { ContainerFederation, containerLogs, recordFigure, skipWithoutDocker } from './harness.js';

const skip = await skipWithoutDocker();
const SITES = ['site-1', 'site-2', 'site-3'];

/** The first event of `kind` after `t` that `match` accepts, waiting for it. */
function eventAfter(fed: ContainerFederation, kind: string, t: number, match: (e: AdminEvent) => boolean = () => true, timeoutMs = 90_000): Promise<AdminEvent> {
  return waitFor(`a ${kind} event`, async () => fed.eventsOf(kind).find((e) => e.ts >= t && match(e)), timeoutMs, 100);
}

/** Every site holds the final model of the run (checked by hashing the file in its volume). */
async function expectAllHold(fed: ContainerFederation, sha256: string): Promise<void> {
  for (const s of SITES) expect(await fed.siteHolds(s, sha256, 60_000)).toBe(sha256);
}

describe.skipIf(skip)('faults in a federation of containers', () => {
  let fed: ContainerFederation | undefined;
  afterEach(async () => {
    await fed?.close();
    fed = undefined;
  });

  it('a site container killed during its upload: the round commits with the rest, and the restarted site rejoins', { timeout: 300_000 }, async () => {
    // Long enough that site-3, uploading for ~20 s, would finish in time if the kill did not come.
    const uploadS = 60;
    fed = await ContainerFederation.start({
      sites: 3,
      rounds: 2,
      deadlines: { openS: 20, keysS: 15, sharesS: 15, trainingS: 30, uploadS, unmaskS: 15, aggregateS: 30, commitS: 30, evalS: 15 },
    });
    // site-3 needs ~20 s for its upload: the kill lands inside it on a loaded machine too, where the
    // admin calls and `docker kill` take seconds.
    const { size } = await stat(fed.files.initialModel);
    const site3Config = fed.files.siteConfigs.get('site-3')!;
    let transfer: unknown;
    await patchJsonFile(site3Config, (c) => {
      transfer = c['transfer'];
      return { ...c, transfer: { chunkBytes: 4096, uploadRateBytesPerS: Math.floor(size / 20) } };
    });
    const containers = new Map<string, Awaited<ReturnType<ContainerFederation['startSite']>>>();
    for (const s of SITES) containers.set(s, await fed.startSite(s));

    // The coordinator has bytes of site-3's round-1 upload: kill it now, with no pause of our own.
    const site3 = containers.get('site-3')!;
    const admin = fed.admin();
    await waitFor('site-3 part-way through its round-1 upload', async () => {
      const s3 = (await admin.sites()).sites.find((s) => s.siteId === 'site-3');
      if (!s3 || s3.activity !== 'upload' || Number(s3.bytesUp) === 0) return undefined;
      const st = await admin.status();
      return Number(st.round) === 1 && Number(st.roundsCommitted) === 0 ? true : undefined;
    }, 120_000, 100).catch(async (err) => {
      process.stdout.write((await containerLogs(site3.getName())).split('\n').map((l) => l.slice(0, 400)).join('\n'));
      throw err;
    });
    const killedAt = Date.now();
    await fed.kill(site3);
    // site-3's own log, read after the kill, says its upload never finished.
    const said = async (msg: string): Promise<boolean> =>
      (await containerLogs(site3.getName())).split('\n').some((l) => l.includes(`"msg":"${msg}"`) && l.includes('"round":1'));
    expect(await said('shard trained')).toBe(true);
    expect(await said('delta uploaded')).toBe(false);

    const committed1 = await eventAfter(fed, 'round.committed', killedAt, (e) => e.body['round'] === 1);
    expect([...(committed1.body['participants'] as string[])].sort()).toEqual(['site-1', 'site-2']);
    expect(committed1.body['dropped']).toContain('site-3');
    const dropped = fed.eventsOf('site.dropped').find((e) => e.ts >= killedAt && e.body['site'] === 'site-3');

    // The operator's restart policy brings the site back; it rejoins the next round, uploading at
    // full speed again (the throttle was only there to make room for the kill).
    await patchJsonFile(site3Config, (c) => ({ ...c, transfer }));
    await fed.startSite('site-3');
    const { rounds, modelSha256 } = await fed.waitForRun(2, 180_000);
    const committed = rounds.rounds.filter((r) => r.outcome === 'committed');
    expect(committed.map((r) => Number(r.round))).toEqual([1, 2]);
    expect(committed[1]!.participants).toContain('site-3');
    await expectAllHold(fed, modelSha256);
    await recordFigure({
      figure: 'fault',
      fault: 'site container killed during upload',
      detectedSeconds: dropped ? (dropped.ts - killedAt) / 1000 : null,
      dropReason: dropped?.body['reason'] ?? null,
      roundCommittedSeconds: (committed1.ts - killedAt) / 1000,
      deadlineSeconds: uploadS,
    });
  });

  it('a site cut off the network longer than the phase deadline is dropped from that round and rejoins the next', { timeout: 300_000 }, async () => {
    const phaseS = 8;
    const deadlines = { openS: 40, keysS: phaseS, sharesS: phaseS, trainingS: 30, uploadS: 20, unmaskS: phaseS, aggregateS: 30, commitS: 30, evalS: 15 };
    fed = await ContainerFederation.start({ sites: 3, rounds: 3, deadlines });
    // site-3 needs ~8 s for its upload, so the cut, a `docker` call that can take seconds on a loaded
    // machine, lands before round 2 has its upload (once it has, site-3 is a participant).
    const { size } = await stat(fed.files.initialModel);
    await patchJsonFile(fed.files.siteConfigs.get('site-3')!, (c) => ({ ...c, transfer: { chunkBytes: 4096, uploadRateBytesPerS: Math.floor(size / 8) } }));
    const containers = new Map<string, Awaited<ReturnType<ContainerFederation['startSite']>>>();
    for (const s of SITES) containers.set(s, await fed.startSite(s));

    await eventAfter(fed, 'round.opened', 0, (e) => e.body['round'] === 2, 120_000);
    const cutAt = Date.now();
    await fed.disconnect(containers.get('site-3')!);
    const dropped = await eventAfter(fed, 'site.dropped', cutAt, (e) => e.body['site'] === 'site-3' && e.body['round'] === 2);
    // The phase the drop came in: the last one entered before it (those it starts carry its ts too).
    const phase = fed.events.slice(0, fed.events.indexOf(dropped)).filter((e) => e.kind === 'phase.changed' && e.body['round'] === 2).at(-1);
    // Stay away a little longer than the deadline, then come back.
    await new Promise((r) => setTimeout(r, Math.max(0, cutAt + (phaseS + 4) * 1000 - Date.now())));
    const backAt = Date.now();
    await fed.connect(containers.get('site-3')!, 'site-3');

    // Back in: a new Join if its connection died meanwhile, or the old one carries on; either way
    // its next upload is the proof.
    const back = await eventAfter(fed, 'upload.done', backAt, (e) => e.body['site'] === 'site-3', 120_000);
    const { rounds, modelSha256 } = await fed.waitForRun(3, 180_000);
    const committed = rounds.rounds.filter((r) => r.outcome === 'committed');
    expect(committed.map((r) => Number(r.round))).toEqual([1, 2, 3]);
    expect([...committed[1]!.participants].sort()).toEqual(['site-1', 'site-2']);
    expect(committed[1]!.dropped).toContain('site-3');
    expect([...committed[2]!.participants].sort()).toEqual(SITES);
    await expectAllHold(fed, modelSha256);
    await recordFigure({
      figure: 'fault',
      fault: 'site disconnected from the network',
      droppedInPhase: phase?.body['phase'] ?? null,
      // The phase began before the cut, so the drop is measured against the deadline itself too.
      droppedSecondsAfterPhaseDeadline: phase ? (dropped.ts - Number(phase.body['deadlineMs'])) / 1000 : null,
      detectedSeconds: (dropped.ts - cutAt) / 1000,
      deadlineSeconds: (deadlines as Record<string, number>)[`${String(phase?.body['phase'])}S`] ?? null,
      disconnectedSeconds: (backAt - cutAt) / 1000,
      rejoined: fed.eventsOf('site.joined').some((e) => e.ts >= backAt && e.body['site'] === 'site-3'),
      nextUploadSecondsAfterReconnect: (back.ts - backAt) / 1000,
    });
  });

  it('the coordinator container restarted mid-round: the run goes on from its state volume, every round committed once', { timeout: 300_000 }, async () => {
    fed = await ContainerFederation.start({ sites: 3, rounds: 2 });
    // Every site needs ~6 s for its upload, so round 2 is still going when the restart (a `docker`
    // call that can take seconds on a loaded machine) reaches the coordinator.
    const { size } = await stat(fed.files.initialModel);
    for (const s of SITES) await patchJsonFile(fed.files.siteConfigs.get(s)!, (c) => ({ ...c, transfer: { chunkBytes: 4096, uploadRateBytesPerS: Math.floor(size / 6) } }));
    for (const s of SITES) await fed.startSite(s);
    const admin = fed.admin();
    await waitFor('round 2 in training or upload', async () => {
      const st = await admin.status();
      return Number(st.round) === 2 && Number(st.roundsCommitted) === 1 && (st.phase === 'training' || st.phase === 'upload') ? true : undefined;
    }, 120_000, 100);
    const attemptBefore = Number(fed.eventsOf('round.opened').filter((e) => e.body['round'] === 2).at(-1)?.body['attempt']);
    const restartAt = Date.now();
    await docker(['restart', '--time', '10', fed.coordinator.getName()]);
    const upAt = await waitFor('the coordinator to answer again', async () => ((await admin.status()).runState !== '' ? Date.now() : undefined), 60_000, 100);

    const committed2 = await eventAfter(fed, 'round.committed', restartAt, (e) => e.body['round'] === 2, 120_000);
    const { rounds, modelSha256 } = await fed.waitForRun(2, 180_000);
    const committed = rounds.rounds.filter((r) => r.outcome === 'committed');
    expect(committed.map((r) => Number(r.round))).toEqual([1, 2]);
    // The interrupted round ran again under a later attempt (fresh keys), on the same parent.
    expect(committed[1]!.attempt).toBeGreaterThan(attemptBefore);
    expect(committed[1]!.parentSha256).toBe(committed[0]!.modelSha256);
    await expectAllHold(fed, modelSha256);
    await recordFigure({
      figure: 'fault',
      fault: 'coordinator container restarted mid-round',
      answeringAgainSeconds: (upAt - restartAt) / 1000,
      interruptedRoundCommittedSeconds: (committed2.ts - restartAt) / 1000,
      reconnectBackoffMaxSeconds: 15,
    });
  });
});
