/**
 * Text from the network is data, never terminal control. Raw clients holding real site and admin
 * certificates feed every free-text field all C0 and C1 controls, DEL and the bidi overrides and
 * isolates: labels and lines are refused with TEXT_INVALID, a failure message is kept escaped, and
 * the bytes the real CLI prints — `admin logs`, `sites`, `rounds`, `status`, `watch`, and its error
 * line — hold none of them.
 */
import * as grpc from '@grpc/grpc-js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AdminClient, CoordinatorHandle } from '../../coordinator/index.js';
import type { HeartbeatRequest, TrainingFailure } from '../../proto/index.js';
import { EVIL_TEXT, controlsIn } from '../helpers/controls.js';
import { CLI, createTestFederation, startCli, startCoordinatorInProcess, type Proc, type TestFederation } from '../helpers/federation.js';
import { RawSiteClient, craftDelta, joinedRawSite, refusal, siteCertFiles, validUpload, type CallOutcome, type Refusal, type TaskStream } from '../helpers/raw-site.js';
import { waitUntil } from '../helpers/wait.js';

const exec = promisify(execFile);

function heartbeat(c: RawSiteClient, r: HeartbeatRequest): Promise<CallOutcome<unknown>> {
  return new Promise((resolve) => c.client.Heartbeat(r, { deadline: Date.now() + 10_000 }, (err, res) => resolve(err ? { ok: false, error: err } : { ok: true, value: res })));
}

function reportFailure(c: RawSiteClient, r: TrainingFailure): Promise<CallOutcome<unknown>> {
  return new Promise((resolve) => c.client.ReportFailure(r, { deadline: Date.now() + 10_000 }, (err, res) => resolve(err ? { ok: false, error: err } : { ok: true, value: res })));
}

/** The refusal of an admin call that must fail. */
async function adminRefusal(call: Promise<unknown>): Promise<Refusal> {
  const e = (await call.then(() => expect.fail('the admin call succeeded'), (err: unknown) => err)) as grpc.ServiceError;
  const codes = e.metadata?.get('fedhpc-error-code') ?? [];
  return { code: e.code, fedhpcCode: codes.length > 0 ? String(codes[0]) : undefined, details: e.details };
}

describe('text from the network reaches people as data', () => {
  let fed: TestFederation;
  let coordinator: CoordinatorHandle;
  let admin: AdminClient;
  let adminConfig: string;
  let site1: { client: RawSiteClient; tasks: TaskStream };
  let site2: RawSiteClient;
  let tasks2: TaskStream;
  const procs: Proc[] = [];
  const fedhpc = async (...args: string[]): Promise<string> => (await exec(process.execPath, [CLI, 'admin', ...args, '--config', adminConfig], { timeout: 30_000 })).stdout;

  beforeAll(async () => {
    fed = await createTestFederation({
      sites: 2,
      run: {
        rounds: 1,
        minSites: 1,
        evaluate: false,
        secureAggregation: { enabled: false },
        deadlines: { openS: 30, trainingS: 60, uploadS: 60, aggregateS: 30, commitS: 30, evalS: 15 },
      },
    });
    adminConfig = fed.files.adminConfigs.get('admin')!;
    coordinator = await startCoordinatorInProcess(fed, { expectLogs: [/site dropped from round/] });
    admin = fed.admin();
    await admin.waitForReady(Date.now() + 15_000);
    site1 = await joinedRawSite(fed, 'site-1');
    site2 = new RawSiteClient({ address: fed.address, files: siteCertFiles(fed, 'site-2') });
  });
  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop();
    site1?.client.close();
    site2?.close();
    await coordinator?.stop();
    await fed?.cleanup();
  });

  it('refuses an agent version, an activity and every admin reason holding controls (TEXT_INVALID); refusals quote them escaped', async () => {
    const version = refusal(await site2.join({ siteId: 'site-2', agentVersion: EVIL_TEXT }));
    expect([version.code, version.fedhpcCode]).toEqual([grpc.status.INVALID_ARGUMENT, 'TEXT_INVALID']);
    expect(version.details).toBe(`TEXT_INVALID: agent version must be at most 64 characters, got ${EVIL_TEXT.length}`);
    const shortVersion = refusal(await site2.join({ siteId: 'site-2', agentVersion: 'v1\x1b]0;pwned\x07' }));
    expect(shortVersion.details).toBe('TEXT_INVALID: agent version must be printable ASCII; character 2 is U+001B');
    const mismatch = refusal(await site2.join({ siteId: EVIL_TEXT }));
    expect(mismatch.fedhpcCode).toBe('SITE_MISMATCH');
    expect(controlsIn(mismatch.details)).toEqual([]);
    expect(mismatch.details).toContain('claims evil\\x00\\x01');

    expect((await site2.join({ siteId: 'site-2' })).ok).toBe(true);
    tasks2 = site2.openTasks();
    const activity = refusal(await heartbeat(site2, { activity: EVIL_TEXT.slice(0, 40), progress: 0.5 }));
    expect([activity.code, activity.fedhpcCode]).toEqual([grpc.status.INVALID_ARGUMENT, 'TEXT_INVALID']);
    expect(activity.details).toBe('TEXT_INVALID: activity must be printable ASCII; character 4 is U+0000');

    for (const call of [() => admin.pause(EVIL_TEXT), () => admin.abort(EVIL_TEXT), () => admin.revokeSite('site-1', EVIL_TEXT), () => admin.startRun('{}', EVIL_TEXT)]) {
      const r = await adminRefusal(call());
      expect([r.code, r.fedhpcCode]).toEqual([grpc.status.INVALID_ARGUMENT, 'TEXT_INVALID']);
      expect(r.details).toMatch(/must be one line without control or bidi characters; character 4 is U\+0000$/);
    }
    const unknown = await adminRefusal(admin.siteLogs(EVIL_TEXT));
    expect(unknown.fedhpcCode).toBe('UNKNOWN_SITE');
    expect(controlsIn(unknown.details)).toEqual([]);
    // Nothing was paused, aborted or revoked.
    expect(await admin.status()).toMatchObject({ runState: 'running', paused: false, sitesRevoked: 0 });
  });

  it('keeps a failure message escaped, and admin logs, sites, rounds, status and watch print no control', async () => {
    const t1 = await site1.tasks.nextTrain(30_000);
    const t2 = await tasks2.nextTrain(30_000);
    const watch = await startCli('watch', ['admin', 'watch', '--config', adminConfig], fed.dir);
    procs.push(watch);
    await waitUntil('the first watch frame', async () => (await watch.logText()).includes('site-2'), 15_000, 100);

    const failure = { runId: t2.runId, round: t2.round, attempt: t2.attempt, retryable: false };
    const code = refusal(await reportFailure(site2, { ...failure, code: EVIL_TEXT.slice(0, 40), message: 'boom' }));
    expect(code.fedhpcCode).toBe('TEXT_INVALID');
    expect(await reportFailure(site2, { ...failure, code: 'TRAINING_FAILED', message: `trainer said: ${EVIL_TEXT}` })).toMatchObject({ ok: true });
    await waitUntil('the drop in the watch', async () => (await watch.logText()).includes('site.dropped'), 15_000, 100);

    // The round goes on without site-2 and the run ends, which ends the watch.
    expect(await site1.client.upload(validUpload(t1, craftDelta(t1)))).toMatchObject({ ok: true, value: { accepted: true } });
    expect(await Promise.race([watch.exited, new Promise((r) => setTimeout(() => r('still running'), 30_000))])).toBe(0);

    const escaped = 'TRAINING_FAILED: trainer said: evil\\x00\\x01\\x02';
    const logs = await fedhpc('logs', 'site-2');
    expect(logs).toContain(escaped);
    expect(logs).toContain('\\x1b\\x1c\\x1d\\x1e\\x1f\\x7f\\x80');
    expect(logs).toContain('\\u{202A}\\u{202B}\\u{202C}\\u{202D}\\u{202E}\\u{2066}\\u{2067}\\u{2068}\\u{2069}text');
    const outputs = {
      logs,
      sites: await fedhpc('sites'),
      rounds: await fedhpc('rounds'),
      status: await fedhpc('status'),
      watch: await watch.logText(),
      logsJson: await fedhpc('logs', 'site-2', '--json'),
    };
    expect(outputs.watch).toContain(escaped.slice(0, 40));
    expect(outputs.sites).toMatch(/\nsite-2\s+yes\s/);
    // --json is exact: the message the coordinator stored (escaped on arrival) comes back as it is.
    const stored = (JSON.parse(outputs.logsJson) as { lines: { kind: string; message: string }[] }).lines.find((l) => l.kind === 'dropped');
    expect(stored?.message).toContain(escaped);
    for (const [name, out] of Object.entries(outputs)) expect([name, controlsIn(out)]).toEqual([name, []]);

    // The CLI's error line quotes the coordinator's details, which quote the input: escaped too.
    const err = (await exec(process.execPath, [CLI, 'admin', 'logs', EVIL_TEXT.replace('\0', ''), '--config', adminConfig]).then(
      () => expect.fail('admin logs of an unknown site succeeded'),
      (e: unknown) => e,
    )) as { code: number; stderr: string };
    expect(err.code).toBe(1);
    expect(err.stderr).toMatch(/^fedhpc: UNKNOWN_SITE: no site "evil\\u0001\\u0002/);
    expect(controlsIn(err.stderr)).toEqual([]);
  }, 90_000);
});
