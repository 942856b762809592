/**
 * `fedhpc admin` end to end: a coordinator whose config has no run idles until `admin start --run`,
 * then every read command in table and JSON form, pause/resume at a round boundary, `watch` until
 * the run ends, abort of a second run, and a site certificate refused by every admin RPC. Real
 * processes over mTLS.
 */
import * as grpc from '@grpc/grpc-js';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readTlsFiles } from '../../common/tls.js';
import { loadProto } from '../../proto/index.js';
import { CLI, createTestFederation, startCli, startCoordinatorProcess, startSiteProcess, waitFor, type Proc, type TestFederation } from '../helpers/federation.js';

const exec = promisify(execFile);
type CliError = { code: number; stdout: string; stderr: string };

describe('fedhpc admin: run control and every read command', () => {
  let fed: TestFederation;
  let adminConfig: string;
  const procs: Proc[] = [];
  const fedhpc = (args: string[]) => exec(process.execPath, [CLI, 'admin', ...args, '--config', adminConfig], { timeout: 30_000 });
  const json = async <T = Record<string, unknown>>(args: string[]): Promise<T> => JSON.parse((await fedhpc([...args, '--json'])).stdout) as T;
  const fails = async (args: string[]): Promise<CliError> => (await fedhpc(args).then(() => expect.fail(`admin ${args.join(' ')} succeeded`), (e: unknown) => e)) as CliError;
  const runFile = async (name: string, run: Record<string, unknown>): Promise<string> => {
    const file = join(fed.dir, name);
    await writeFile(file, JSON.stringify(run));
    return file;
  };
  const baseRun = {
    minSites: 2,
    expectedSites: ['site-1', 'site-2', 'site-3'],
    train: { steps: 10, batchSize: 16, lr: 0.01 },
    deadlines: { openS: 30, trainingS: 60, uploadS: 60, aggregateS: 30, commitS: 30, evalS: 15 },
    secureAggregation: { enabled: false },
  };

  beforeAll(async () => {
    fed = await createTestFederation({ sites: 3 });
    adminConfig = fed.files.adminConfigs.get('admin')!;
    // The coordinator starts without a run: it idles until an admin starts one.
    await fed.patchCoordinatorConfig(({ run: _run, ...cfg }) => cfg);
    procs.push(await startCoordinatorProcess(fed));
    for (const s of fed.sites) procs.push(await startSiteProcess(fed, s));
    await waitFor('3 connected sites', async () => ((await json(['status']))['sitesConnected'] === 3 ? true : undefined), 30_000, 300);
  });
  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop();
    await fed?.cleanup();
  });

  it('reports an idle coordinator when no run is configured', async () => {
    const s = await json(['status']);
    expect(s['runState']).toBe('idle');
    expect(s['runId']).toBe('');
    // Idle, the state dir may still be empty (nothing journaled until a site joins): a number, at least.
    expect(Number.isSafeInteger(Number(s['stateDirBytes']))).toBe(true);
    expect(Number(s['uploadBudgetBytes'])).toBe(256 * 1024 * 1024);
    const human = (await fedhpc(['status'])).stdout;
    expect(human).toMatch(/run\s+none \(idle\)/);
    expect(human).toMatch(/upload budget\s+0 B of 256\.0 MiB in flight/);
  });

  it('refuses a run file with an unknown field, naming the field and the file', async () => {
    const file = await runFile('typo-run.json', { ...baseRun, id: 'typo', rounds: 2, roundz: 3 });
    const err = await fails(['start', '--run', file]);
    expect(err.code).toBe(2);
    expect(err.stderr).toContain(file);
    expect(err.stderr).toContain('roundz: unknown field');
  });

  it('starts a run from a file; status, sites, rounds, round N and logs answer in table and JSON form', async () => {
    const file = await runFile('run-1.json', { ...baseRun, id: 'run-1', rounds: 4 });
    const started = await json(['start', '--run', file]);
    expect(started).toMatchObject({ runId: 'run-1', runState: 'running' });
    // Paused while its first round runs, so that what follows reads a run that stands still with
    // rounds left (the pause test resumes it). Pausing only after a commit raced the next rounds on a
    // loaded machine: the hold could land after the last one.
    await waitFor('round 1 under way', async () => (['open', 'training', 'upload', 'aggregate', 'commit'].includes(String((await json(['status']))['phase'])) ? true : undefined), 60_000, 100);
    const paused = await json(['pause']);
    expect(['pausing', 'paused']).toContain(paused['runState']);
    await waitFor('round 1 committed', async () => (Number((await json(['status']))['roundsCommitted']) >= 1 ? true : undefined), 60_000, 200);

    const status = await json(['status']);
    expect(status).toMatchObject({ federation: 'testfed', runId: 'run-1', roundsTotal: '4', paused: true });
    // The run's models and journal are in the state dir now (the size is cached for 2 s at most).
    await waitFor('a state dir size', async () => (Number((await json(['status']))['stateDirBytes']) > 0 ? true : undefined), 10_000, 500);
    expect((await fedhpc(['status'])).stdout).toMatch(/^field\s+value\n-+\s+-+\nfederation\s+testfed\nrun\s+run-1 \((pausing|paused)\)/);

    const sites = await json<{ siteId: string; connected: boolean; revoked: boolean }[]>(['sites']);
    expect(sites.map((s) => [s.siteId, s.connected, s.revoked])).toEqual([['site-1', true, false], ['site-2', true, false], ['site-3', true, false]]);
    expect((await fedhpc(['sites'])).stdout.split('\n')[0]).toMatch(/^site\s+connected\s+activity\s+progress\s+transfer\s+up\s+down\s+rounds\s+last round\s+busy\s+agent$/);

    const rounds = await json<{ rounds: { round: string; outcome: string; participants: string[] }[] }>(['rounds']);
    expect(rounds.rounds[0]).toMatchObject({ round: '1', outcome: 'committed', participants: ['site-1', 'site-2', 'site-3'] });
    expect((await fedhpc(['rounds'])).stdout).toMatch(/\n1\.0\s+committed\s+site-1,site-2,site-3/);

    const detail = await json<{ round: string; attempts: { outcome: string; participants: { siteId: string; deltaSha256: string }[]; phases: { phase: string; durationMs: string }[]; modelSha256: string; parentSha256: string; bytesUp: string }[] }>(['round', '1']);
    const committed = detail.attempts.find((a) => a.outcome === 'committed')!;
    expect(committed.participants.map((p) => p.siteId)).toEqual(['site-1', 'site-2', 'site-3']);
    expect(committed.participants.every((p) => /^[0-9a-f]{64}$/.test(p.deltaSha256))).toBe(true);
    expect(committed.phases.map((p) => p.phase)).toEqual(['open', 'training', 'upload', 'aggregate', 'commit']);
    // Phases with nothing to wait for (upload, when every site uploaded while training) may take 0 ms.
    expect(Number(committed.phases.find((p) => p.phase === 'training')!.durationMs)).toBeGreaterThan(0);
    expect(committed.modelSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(committed.parentSha256).not.toBe(committed.modelSha256);
    expect(Number(committed.bytesUp)).toBeGreaterThan(0);
    const table = (await fedhpc(['round', '1'])).stdout;
    expect(table).toMatch(/^run run-1, round 1/);
    expect(table).toMatch(/\ntraining\s+\S+Z\s+[\d.]+ (ms|s)/);
    expect(table).toMatch(/\nsite-2\s+[\d.]+\s+\d+\s+\d+\s+10\s/);
    expect((await fails(['round', '99'])).stderr).toMatch(/BAD_REQUEST: run "run-1" has no round 99/);

    const logs = await json<{ siteId: string; lines: { kind: string; message: string }[] }>(['logs', 'site-2']);
    expect(logs.lines.map((l) => l.kind)).toEqual(expect.arrayContaining(['joined', 'activity', 'upload']));
    expect((await fedhpc(['logs', 'site-2', '--limit', '3'])).stdout.trim().split('\n')).toHaveLength(5);
    expect((await fails(['logs', 'nosuch'])).stderr).toMatch(/UNKNOWN_SITE: no site "nosuch"/);
  }, 120_000);

  it('pause lets the open round finish and opens no new one until resume; watch follows the run to its end', async () => {
    const held = await waitFor('the run paused at a round boundary', async () => {
      const s = await json(['status']);
      return s['runState'] === 'paused' ? s : undefined;
    }, 60_000, 300);
    expect(held['paused']).toBe(true);
    await new Promise((r) => setTimeout(r, 3_000));
    const still = await json(['status']);
    expect(still['roundsCommitted']).toBe(held['roundsCommitted']);
    expect(still['runState']).toBe('paused');
    expect((await fedhpc(['pause'])).stdout).toMatch(/run-1\s+paused/);

    const watch = await startCli('watch', ['admin', 'watch', '--json', '--config', adminConfig], fed.dir);
    procs.push(watch);
    expect((await json(['resume']))['runState']).toBe('running');
    const code = await Promise.race([watch.exited, new Promise((r) => setTimeout(() => r('timeout'), 90_000))]);
    expect(code).toBe(0);
    const lines = (await watch.logText()).trim().split('\n').map((l) => JSON.parse(l) as { type: string; kind?: string; status?: { runState: string } });
    expect(lines.some((l) => l.type === 'event' && l.kind === 'round.committed')).toBe(true);
    expect(lines.at(-1)).toMatchObject({ type: 'status', status: { runState: 'finished' } });
    expect(Number((await json(['status']))['roundsCommitted'])).toBe(4);
    // On an ended run, the table form draws one frame and exits.
    const frame = (await fedhpc(['watch'])).stdout;
    expect(frame).toMatch(/^testfed · run run-1 \(finished\) · round - · 4\/4 committed\n\nsite\s+state\s+activity\s+progress\s+transfer\s+last round\s+stale\s+applied\s+busy\n/);
    expect(frame).toMatch(/\nsite-1\s+connected\s/);
  }, 150_000);

  it('abort ends the open round and the run, journaled; a second start or abort is refused', async () => {
    // Steps enough that no site finishes its shard before the abort: a round past training would
    // have nobody to cancel (a loaded machine once let round 1 reach its aggregation first).
    const file = await runFile('run-2.json', { ...baseRun, id: 'run-2', rounds: 50, train: { steps: 200_000, batchSize: 16, lr: 0.01 } });
    expect((await fedhpc(['start', '--run', file])).stdout).toBe('run run-2 started (50 rounds); run run-2 is running\n');
    await waitFor('a site of run-2 training', async () => {
      const sites = await json<{ activity: string }[]>(['sites']);
      return (await json(['status']))['phase'] === 'training' && sites.some((x) => x.activity === 'training') ? true : undefined;
    }, 60_000, 200);
    const again = await fails(['start', '--run', file]);
    expect(again.stderr).toMatch(/RUN_STATE: a run is active/);
    const reused = await fails(['start', '--run', await runFile('run-1-again.json', { ...baseRun, id: 'run-1', rounds: 2 })]);
    expect(reused.stderr).toMatch(/RUN_STATE: a run is active/);

    const r = await json(['abort', '--reason', 'wrong data']);
    expect(r).toMatchObject({ runId: 'run-2', runState: 'aborted' });
    const s = await json(['status']);
    expect(s).toMatchObject({ runId: 'run-2', runState: 'aborted', phase: '' });
    const rounds = await json<{ rounds: { outcome: string; reason: string }[] }>(['rounds']);
    expect(rounds.rounds.at(-1)).toMatchObject({ outcome: 'aborted', reason: 'aborted by admin admin: wrong data' });
    const journal = (await readFile(join(fed.member('coordinator'), 'state', 'journal.jsonl'), 'utf8')).trim().split('\n').map((l) => (JSON.parse(l) as { body: Record<string, unknown> }).body);
    expect(journal.find((b) => b['type'] === 'run-aborted')).toMatchObject({ runId: 'run-2', admin: 'admin', reason: 'wrong data' });
    const cancelled = async (): Promise<true | undefined> => {
      for (const site of fed.sites) if ((await readFile(join(fed.dir, `${site}.log`), 'utf8')).includes('round cancelled by the coordinator')) return true;
      return undefined;
    };
    // Site logs reach their files through pino's async writer: a loaded machine may take a while.
    await waitFor('sites told to cancel', cancelled, 30_000);
    expect((await fails(['abort'])).stderr).toMatch(/RUN_STATE: no active run to abort/);
    expect((await fails(['pause'])).stderr).toMatch(/RUN_STATE: no active run to pause/);
  }, 120_000);

  it('refuses every admin RPC to a site certificate', async () => {
    const m = fed.member('sites', 'site-1');
    const tls = readTlsFiles({ ca: join(m, 'ca.crt'), cert: join(m, 'site.crt'), key: join(m, 'site.key') });
    const client = new (loadProto().fedhpc.v1.AdminService)(fed.address, grpc.credentials.createSsl(tls.ca, tls.key, tls.cert));
    try {
      const unary = ['Status', 'Sites', 'Rounds', 'Round', 'StartRun', 'PauseRun', 'ResumeRun', 'AbortRun', 'ApproveSite', 'RevokeSite', 'SiteLogs'] as const;
      for (const rpc of unary) {
        const err = await new Promise<grpc.ServiceError | null>((resolve) =>
          (client[rpc] as unknown as (req: object, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null) => void) => void).call(client, {}, { deadline: Date.now() + 5_000 }, (e) => resolve(e)),
        );
        expect([rpc, err?.code, err?.details]).toEqual([rpc, grpc.status.PERMISSION_DENIED, 'PERMISSION_DENIED: a site certificate cannot call the admin API']);
      }
      const events = client.Events({});
      const err = await new Promise<grpc.ServiceError>((resolve) => events.on('error', resolve));
      expect(err.code).toBe(grpc.status.PERMISSION_DENIED);
    } finally {
      client.close();
    }
    expect(await exec(process.execPath, [CLI, 'admin', 'revoke', '--config', adminConfig]).catch((e: CliError) => e.code)).toBe(2);
    // A site never seen can be revoked too: its id is refused from then on.
    expect((await fedhpc(['revoke', 'ghost'])).stdout).toMatch(/\nghost\s+\(none seen; the site id is refused\)\s+-$/m);
    expect(await json(['revoke', 'ghost-2', '--reason', 'never joined'])).toEqual({ siteId: 'ghost-2', certificateFingerprints: [], droppedFromRound: '0' });
  });
});
