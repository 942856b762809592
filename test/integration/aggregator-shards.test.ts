/**
 * Aggregator shards attach to the leader (issue 22): `fedhpc provision --aggregators` writes each
 * shard's certificate and config and lists the shards in the coordinator's; `fedhpc aggregator`
 * processes attach over mTLS, are assigned their parts of the run's model and check them against
 * the checkpoint storage; `admin status` shows each shard. Refused: a site's certificate presented
 * as a shard, a shard the coordinator does not list, a shard of another federation (at the TLS
 * handshake). Plain rounds aggregate on the shards, and give the models the coordinator alone gives;
 * a shard gone for good leaves the coordinator to aggregate alone; `localShards` makes the
 * coordinator start and supervise its own shard processes. Real processes of the built CLI on loopback.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { AdminClient } from '../../coordinator/index.js';
import { writeFederationFiles } from '../../simulate/federation-files.js';
import { CLI, freePort, patchJsonFile, startCli, waitFor, type Proc } from '../helpers/federation.js';

const exec = promisify(execFile);

/** The pid of the one process whose command line names `config` (a local shard's config file). */
async function pidOf(config: string): Promise<number> {
  const { stdout } = await exec('pgrep', ['-f', '--', config]);
  const pids = stdout.trim().split('\n').map(Number);
  if (pids.length !== 1) throw new Error(`${pids.length} processes run ${config}`);
  return pids[0]!;
}
const fedhpc = (args: string[]) => exec(process.execPath, [CLI, ...args], { timeout: 30_000 });

interface ShardRow {
  readonly shardId: string;
  readonly state: string;
  readonly shardIndex: number;
  readonly firstValue: string;
  readonly endValue: string;
  readonly problem: string;
  readonly freeBytes: string;
}

describe('fedhpc aggregator: shards attach to the leader', () => {
  const dirs: string[] = [];
  const procs: Proc[] = [];
  const tempDir = async (): Promise<string> => {
    const d = await mkdtemp(join(tmpdir(), 'fedhpc-shards-'));
    dirs.push(d);
    return d;
  };
  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('two shards attach, get parts that tile the model and report ready; a killed shard shows detached; wrong storage, a site certificate, an unlisted shard and another federation are refused', async () => {
    const dir = await tempDir();
    const port = await freePort();
    await fedhpc([
      'provision', '--federation', 'shardfed', '--sites', 'bsc,hlrs', '--admins', 'alice', '--out', dir,
      '--coordinator', `localhost:${port}`, '--aggregators', `s1=localhost:${await freePort()},s2=localhost:${await freePort()},s3=localhost:${await freePort()}`, '--json',
    ]);
    // s3 has a certificate but the coordinator does not list it.
    const coordinatorConfig = join(dir, 'coordinator', 'coordinator.json');
    const coordinator = JSON.parse(await readFile(coordinatorConfig, 'utf8')) as { aggregators: unknown[] };
    coordinator.aggregators = coordinator.aggregators.slice(0, 2);
    const metricsPort = await freePort();
    const dashboardPort = await freePort();
    await writeFile(coordinatorConfig, JSON.stringify({ ...coordinator, metrics: { port: metricsPort }, dashboard: { listen: `127.0.0.1:${dashboardPort}` } }));
    procs.push(await startCli('coordinator', ['coordinator', '--config', coordinatorConfig], dir));
    const shardConfig = (name: string): string => join(dir, 'aggregators', name, 'aggregator.json');
    const s1 = await startCli('s1', ['aggregator', '--config', shardConfig('s1')], dir);
    const s2 = await startCli('s2', ['aggregator', '--config', shardConfig('s2')], dir);
    procs.push(s1, s2);
    const admin = join(dir, 'admins', 'alice', 'admin.json');
    const status = async (): Promise<{ shards: ShardRow[]; recentRefusals: { reason: string; count: string }[] } | undefined> =>
      fedhpc(['admin', 'status', '--config', admin, '--json']).then((r) => JSON.parse(r.stdout) as { shards: ShardRow[]; recentRefusals: { reason: string; count: string }[] }, () => undefined);
    const ready = await waitFor('both shards ready', async () => {
      const s = await status();
      return s?.shards.length === 2 && s.shards.every((x) => x.state === 'ready') ? s.shards : undefined;
    }, 30_000, 300);
    expect(ready.map((x) => [x.shardId, x.shardIndex])).toEqual([['s1', 0], ['s2', 1]]);
    // The parts tile the model: [0, b) and [b, N), b inside, each about half.
    const [a, b] = ready;
    expect(a!.firstValue).toBe('0');
    expect(b!.firstValue).toBe(a!.endValue);
    const half = Number(b!.endValue) / 2;
    expect(Math.abs(Number(a!.endValue) - half)).toBeLessThan(half * 0.05);
    expect(Number(a!.freeBytes)).toBeGreaterThan(0);
    const text = (await fedhpc(['admin', 'status', '--config', admin])).stdout;
    expect(text).toMatch(/shard 0 +s1 \(localhost:\d+\): ready from [\d.:]+; values \[0, \d+\), [\d.]+ [KMGT]?i?B free/);
    // The metrics and the dashboard show the same.
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(metrics).toContain('fedhpc_shard_state{shard="s1",state="ready",federation="shardfed"} 1');
    expect(metrics).toContain('fedhpc_shard_state{shard="s2",state="detached",federation="shardfed"} 0');
    const { stdout: tokenJson } = await fedhpc(['admin', 'dashboard-token', '--config', admin, '--json']);
    const session = await fetch(`http://127.0.0.1:${dashboardPort}/api/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: (JSON.parse(tokenJson) as { token: string }).token }) });
    const cookie = session.headers.get('set-cookie')!.split(';')[0]!;
    const overview = (await (await fetch(`http://127.0.0.1:${dashboardPort}/api/overview`, { headers: { cookie } })).json()) as { shards: { shard: string; state: string; firstValue: number; endValue: number }[] };
    expect(overview.shards.map((x) => [x.shard, x.state, x.firstValue, x.endValue])).toEqual(ready.map((x) => [x.shardId, 'ready', Number(x.firstValue), Number(x.endValue)]));

    // A killed shard is detached at once (its stream ends with the process).
    await s2.stop('SIGKILL');
    await waitFor('s2 detached', async () => ((await status())?.shards[1]?.state === 'detached' ? true : undefined), 30_000, 300);

    // A shard whose checkpoint storage is not the coordinator's says why it is not ready.
    // (Taking no part uploads: `listen` would be s2's port.)
    const { listen: _listen, ...wrong } = JSON.parse(await readFile(shardConfig('s2'), 'utf8')) as Record<string, unknown>;
    await writeFile(join(dir, 'aggregators', 's2', 'wrong.json'), JSON.stringify({ ...wrong, checkpoints: await tempDir() }));
    procs.push(await startCli('s2-wrong', ['aggregator', '--config', join(dir, 'aggregators', 's2', 'wrong.json')], dir));
    const notReady = await waitFor('s2 not ready', async () => {
      const row = (await status())?.shards[1];
      return row?.state === 'not_ready' ? row : undefined;
    }, 30_000, 300);
    expect(notReady.problem).toMatch(/^global model [0-9a-f]{64} of run run-1 cannot be read from .*: .*ENOENT/);

    // A site's certificate cannot stand in for a shard: the coordinator refuses it and the process exits 1.
    const site = join(dir, 'aggregators', 's1', 'as-site.json');
    await writeFile(site, JSON.stringify({ ...wrong, name: 'bsc', checkpoints: join('..', '..', 'coordinator', 'state'), tls: { ca: '../../sites/bsc/ca.crt', cert: '../../sites/bsc/site.crt', key: '../../sites/bsc/site.key' } }));
    const asSite = await startCli('as-site', ['aggregator', '--config', site], dir);
    procs.push(asSite);
    expect(await asSite.exited).toBe(1);
    expect(await asSite.logText()).toContain('PERMISSION_DENIED: a site certificate cannot call the aggregator API');

    // A shard with a certificate of the federation that the coordinator does not list: NOT_MEMBER, exit 1, counted.
    const unlisted = await startCli('s3', ['aggregator', '--config', shardConfig('s3')], dir);
    procs.push(unlisted);
    expect(await unlisted.exited).toBe(1);
    expect(await unlisted.logText()).toContain("NOT_MEMBER: aggregator s3 is not one of this coordinator's shards");

    // A shard of another federation fails the TLS handshake (another CA); it keeps trying and is counted each time.
    const other = await tempDir();
    await fedhpc(['provision', '--federation', 'otherfed', '--sites', 'x', '--admins', 'bob', '--out', other, '--coordinator', `localhost:${port}`, '--aggregators', `s1=localhost:${await freePort()}`]);
    const foreign = await startCli('foreign', ['aggregator', '--config', join(other, 'aggregators', 's1', 'aggregator.json')], dir);
    procs.push(foreign);
    const refused = await waitFor('handshake refusals counted', async () => {
      const s = await status();
      const r = s?.recentRefusals.find((x) => x.reason === 'tls_handshake');
      return r && Number(r.count) > 0 ? s : undefined;
    }, 30_000, 300);
    expect(Number(refused.recentRefusals.find((x) => x.reason === 'not_member')?.count)).toBeGreaterThanOrEqual(1);
    expect(refused.shards[0]?.state).toBe('ready');
    expect(await foreign.logText()).toContain('coordinator unavailable');
  }, 120_000);

  /** The lines of a pino log, parsed. */
  const lines = (text: string): Record<string, unknown>[] => text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);

  /**
   * A federation of builtin sites with two aggregator shards s1 and s2 listed in the coordinator's
   * config, and a runner for it: every part a process of the built CLI, the run driven to its end.
   */
  async function shardFederation(
    federation: string,
    sites: readonly string[],
    run: { readonly rounds: number; readonly secure: boolean; readonly aggregator?: { readonly name: 'median' }; readonly minSites?: number; readonly localShardCertificates?: number },
    env: NodeJS.ProcessEnv = process.env,
  ) {
    const dir = await tempDir();
    const port = await freePort();
    const files = await writeFederationFiles({
      dir,
      federation,
      sites,
      admins: ['alice'],
      coordinatorAddress: `localhost:${port}`,
      listen: `127.0.0.1:${port}`,
      // The shards take the sites' part uploads where the coordinator names them (plain rounds).
      aggregators: await Promise.all(
        ['s1', 's2'].map(async (name) => {
          const shardPort = await freePort();
          return { name, address: `localhost:${shardPort}`, listen: `127.0.0.1:${shardPort}` };
        }),
      ),
      // Certificates for local shards that serve sites (`provision --local-shards`), for a test that switches `localShards` on.
      ...(run.localShardCertificates ? { localShards: run.localShardCertificates, localShardCertificatesOnly: true } : {}),
      run: {
        id: federation,
        rounds: run.rounds,
        minSites: run.minSites ?? sites.length,
        expectedSites: [...sites],
        strategy: { name: 'diloco' },
        train: { steps: 10, batchSize: 16, lr: 0.01 },
        secureAggregation: { enabled: run.secure },
        ...(run.aggregator ? { aggregator: run.aggregator } : {}),
        // Long enough for a loaded machine's final scores: the runs wait for every one (runToEnd).
        deadlines: { openS: 60, trainingS: 60, uploadS: 60, aggregateS: 30, commitS: 30, evalS: 60 },
      },
    });
    const adminDir = join(dir, 'admins', 'alice');
    const admin = new AdminClient({ coordinator: `localhost:${port}`, tls: { ca: join(adminDir, 'ca.crt'), cert: join(adminDir, 'admin.crt'), key: join(adminDir, 'admin.key') } });
    /** Runs the federation to its end: the models of its committed rounds, the coordinator's and the shards' logs. */
    const runToEnd = async (
      label: string,
      o: {
        shards: boolean;
        killShardAfterRound?: number;
        restartShardMidUpload?: boolean;
        localShards?: boolean;
        /** Runs once the sites are started, with the shard processes. */
        whileRunning?: (shards: Proc[]) => Promise<void>;
        beforeStop?: (coordinator: Proc) => Promise<void>;
        /** The sites asked to score the final model (all of them unless one was revoked). */
        scoredBy?: readonly string[];
      },
    ): Promise<{ models: string[]; log: string; shardLogs: string[]; siteLogs: string[]; shardsAtEnd: { uploadsAdmitted: number; uploadsReceived: number; bytesReceived: string; bytesSent: string }[] }> => {
      const started: Proc[] = [];
      const start = async (name: string, args: string[]): Promise<Proc> => {
        const p = await startCli(`${label}-${name}`, args, dir, env);
        started.push(p);
        procs.push(p);
        return p;
      };
      const coordinator = await start('coordinator', ['coordinator', '--config', files.coordinatorConfig]);
      const shards = o.shards ? await Promise.all(['s1', 's2'].map((s) => start(s, ['aggregator', '--config', files.aggregatorConfigs.get(s)!]))) : [];
      if (o.shards || o.localShards) await waitFor('shards ready', async () => ((await admin.status().catch(() => undefined))?.shards.every((x) => x.state === 'ready') ? true : undefined), 30_000, 200);
      const siteProcs: Proc[] = [];
      for (const site of sites) siteProcs.push(await start(site, ['site', '--config', files.siteConfigs.get(site)!]));
      if (o.restartShardMidUpload) {
        // s2 SIGKILLed once both sites' parts are on their way to it — each part's piece log beside
        // its spool has recorded acknowledged bytes — and started again a second later.
        const spool = join(files.aggregatorConfigs.get('s2')!, '..', 'state', 'spool', 'round-1.0');
        const acked = async (site: string): Promise<boolean> => (await readFile(join(spool, `${site}.delta.log`), 'utf8').catch(() => '')).includes('"a":');
        await waitFor('both parts acknowledged in part at s2', async () => ((await Promise.all(sites.map(acked))).every(Boolean) ? true : undefined), 60_000, 20);
        await shards[1]!.stop('SIGKILL');
        await new Promise((r) => setTimeout(r, 1_000));
        shards[1] = await start('s2-again', ['aggregator', '--config', files.aggregatorConfigs.get('s2')!]);
      }
      await o.whileRunning?.(shards);
      if (o.killShardAfterRound !== undefined) {
        await waitFor('the round before the kill', async () => (Number((await admin.status().catch(() => undefined))?.roundsCommitted ?? 0) >= o.killShardAfterRound! ? true : undefined), 90_000, 100);
        await shards[1]!.stop('SIGKILL');
      }
      const done = await waitFor('the run finished', async () => {
        const st = await admin.status().catch(() => undefined);
        return st?.runState === 'finished' ? st : undefined;
      }, 120_000, 300);
      expect(Number(done.roundsCommitted)).toBe(run.rounds);
      // The run is finished as the last round commits; the sites then download its model to score
      // it. Stopping them before every site asked has scored it would cut those downloads short: a
      // loaded CI once stopped a shard before its part was sent.
      const scoredBy = new Set(o.scoredBy ?? sites);
      await waitFor('the final model scored by every site asked', async () => {
        const evals = (await admin.rounds().catch(() => undefined))?.rounds.at(-1)?.evals ?? [];
        return evals.filter((e) => scoredBy.has(e.siteId)).length === scoredBy.size ? true : undefined;
      }, 90_000, 200);
      const models = (await admin.rounds()).rounds.filter((r) => r.outcome === 'committed').map((r) => r.modelSha256);
      await o.beforeStop?.(coordinator);
      for (const p of started.reverse()) await p.stop();
      return { models, log: await coordinator.logText(), shardLogs: await Promise.all(shards.map((p) => p.logText())), siteLogs: await Promise.all(siteProcs.map((p) => p.logText())), shardsAtEnd: done.shards };
    };
    return { files, admin, runToEnd };
  }

  it('plain rounds aggregate on two shards and commit the models the coordinator alone commits; a shard gone for good leaves the coordinator to aggregate', async () => {
    const { files, admin, runToEnd } = await shardFederation('shardrun', ['bsc', 'hlrs'], { rounds: 3, secure: false });
    const sharded = await runToEnd('k2', { shards: true });
    expect(lines(sharded.log).filter((l) => l['msg'] === 'aggregated on the shards').map((l) => l['shards'])).toEqual([2, 2, 2]);
    // Every site sent its delta in two parts, one to each shard: the coordinator received none of it.
    expect(lines(sharded.log).filter((l) => l['msg'] === 'upload verified: every shard holds its part')).toHaveLength(6);
    expect(lines(sharded.log).filter((l) => l['msg'] === 'upload verified')).toHaveLength(0);
    for (const log of sharded.shardLogs) expect(lines(log).filter((l) => l['msg'] === 'upload verified')).toHaveLength(6);
    // `admin status` shows each shard's part uploads of the last attempt: both sites' parts, verified.
    expect(sharded.shardsAtEnd.map((x) => [x.uploadsAdmitted, x.uploadsReceived])).toEqual([[2, 2], [2, 2]]);
    expect(sharded.shardsAtEnd.every((x) => Number(x.bytesReceived) > 0)).toBe(true);
    // Each shard kept the parts of the last round only: a newer attempt's admission deletes the older spools.
    for (const s of ['s1', 's2']) expect(await readdir(join(files.aggregatorConfigs.get(s)!, '..', 'state', 'spool'))).toEqual(['round-3.0']);
    for (const log of sharded.shardLogs) expect(lines(log).filter((l) => l['msg'] === "aggregated the shard's part")).toHaveLength(3);
    // Every global model came to the sites in two parts, each from the shard that wrote it: both
    // shards sent every model's part, and `admin status` counts their bytes.
    // (A site may ask again for a model — a retried download — and then fetches only the parts it
    // lacks, and a site whose shard stalls under load takes that part from the coordinator: so the
    // check is per shard and model, not per call.)
    const admitted = lines(sharded.log).filter((l) => l['msg'] === 'download admitted in parts from the aggregator shards');
    expect(new Set(admitted.map((l) => `${String(l['site'])} ${String(l['model'])}`)).size).toBeGreaterThanOrEqual(6);
    const models = new Set(admitted.map((l) => String(l['model'])));
    const sent = lines(sharded.log).filter((l) => l['msg'] === 'a shard sent its part of the model');
    for (const shard of ['s1', 's2']) expect(new Set(sent.filter((l) => l['shard'] === shard).map((l) => String(l['model'])))).toEqual(models);
    const downloaded = sharded.siteLogs.flatMap((log) => lines(log).filter((l) => l['msg'] === 'global model downloaded').map((l) => Number(l['bytes'])));
    expect(downloaded).toHaveLength(6);
    expect(sharded.shardsAtEnd.every((x) => Number(x.bytesSent) > 0)).toBe(true);

    // The same federation again from a fresh state dir, the coordinator alone: the same models.
    const { aggregators } = JSON.parse(await readFile(files.coordinatorConfig, 'utf8')) as { aggregators: unknown[] };
    await patchJsonFile(files.coordinatorConfig, ({ aggregators: _a, ...c }) => ({ ...c, stateDir: 'state-alone' }));
    const alone = await runToEnd('k0', { shards: false });
    expect(lines(alone.log).filter((l) => l['msg'] === 'aggregated on the shards')).toHaveLength(0);
    expect(lines(alone.log).filter((l) => l['msg'] === 'download admitted in parts from the aggregator shards')).toHaveLength(0);
    expect(alone.models).toEqual(sharded.models);

    // With the shards, and one of them SIGKILLed after round 1: the coordinator aggregates the rest alone.
    await patchJsonFile(files.coordinatorConfig, (c) => ({ ...c, stateDir: 'state-lost', aggregators }));
    for (const s of ['s1', 's2']) await patchJsonFile(files.aggregatorConfigs.get(s)!, (c) => ({ ...c, checkpoints: '../../coordinator/state-lost' }));
    const lost = await runToEnd('lost', { shards: true, killShardAfterRound: 1 });
    expect(lost.models).toEqual(sharded.models);
    const aggregatedLines = lines(lost.log).filter((l) => l['msg'] === 'aggregated on the shards' || l['msg'] === 'aggregated');
    expect(aggregatedLines[0]?.['msg']).toBe('aggregated on the shards');
    expect(aggregatedLines.at(-1)?.['msg']).toBe('aggregated');
    admin.close();
  }, 400_000);

  it('a shard SIGKILLed while parts are uploaded to it and started again: the sites resume their parts from what it had kept and the round commits on the shards, the model the coordinator alone commits', async () => {
    const { files, admin, runToEnd } = await shardFederation('shardkill', ['bsc', 'hlrs'], { rounds: 1, secure: false });
    // Each site's upload takes about 3 s, so the kill lands while s2 receives.
    const bytes = (await stat(files.initialModel)).size;
    for (const site of ['bsc', 'hlrs']) await patchJsonFile(files.siteConfigs.get(site)!, (c) => ({ ...c, transfer: { uploadRateBytesPerS: Math.ceil(bytes / 3), idleTimeoutS: 30 }, reconnect: { initialMs: 100, maxMs: 500 } }));
    const killed = await runToEnd('kill', { shards: true, restartShardMidUpload: true });
    expect(lines(killed.log).filter((l) => l['msg'] === 'aggregated on the shards')).toHaveLength(1);
    expect(lines(killed.log).filter((l) => l['msg'] === 'upload verified: every shard holds its part')).toHaveLength(2);
    // s2 went away during the round (and again when the test stopped it).
    const msgs = lines(killed.log).map((l) => (l['msg'] === 'shard detached' ? `detached ${String(l['shard'])}` : l['msg']));
    expect(msgs.indexOf('detached s2')).toBeGreaterThan(-1);
    expect(msgs.indexOf('detached s2')).toBeLessThan(msgs.indexOf('aggregated on the shards'));
    // The restarted s2 took both sites' parts (the admissions were sent again when it attached),
    // each resumed from what it had verified and acknowledged before the kill: the part's log and
    // spool in its state dir.
    const again = lines(killed.shardLogs[1]!);
    expect(again.filter((l) => l['msg'] === 'upload verified')).toHaveLength(2);
    const resumed = again.filter((l) => l['msg'] === 'upload resumed from the spool this receiver kept before it restarted: its verified bytes are not sent again');
    expect(resumed.map((l) => l['site']).sort()).toEqual(['bsc', 'hlrs']);
    for (const r of resumed) expect(Number(r['bytes'])).toBeGreaterThan(0);
    await patchJsonFile(files.coordinatorConfig, ({ aggregators: _a, ...c }) => ({ ...c, stateDir: 'state-alone' }));
    const alone = await runToEnd('k0', { shards: false });
    expect(killed.models).toEqual(alone.models);
    admin.close();
  }, 200_000);

  it('a site revoked while its parts are on their way: every shard drops its admission and its streams, and the round commits with the others', async () => {
    const { files, admin, runToEnd } = await shardFederation('shardrevoke', ['bsc', 'hlrs', 'cines'], { rounds: 1, secure: false, minSites: 2 });
    const bytes = (await stat(files.initialModel)).size;
    for (const site of ['bsc', 'hlrs', 'cines']) await patchJsonFile(files.siteConfigs.get(site)!, (c) => ({ ...c, transfer: { uploadRateBytesPerS: Math.ceil(bytes / 3), idleTimeoutS: 30 } }));
    let participants: string[] = [];
    const admittedCines = async (p: Proc): Promise<boolean> => lines(await p.logText()).some((l) => l['msg'] === 'upload admitted by the leader' && l['site'] === 'cines');
    const run = await runToEnd('revoke', {
      shards: true,
      scoredBy: ['bsc', 'hlrs'],
      whileRunning: async (shards) => {
        await waitFor('cines admitted at both shards', async () => ((await Promise.all(shards.map(admittedCines))).every(Boolean) ? true : undefined), 60_000, 50);
        await admin.revokeSite('cines', 'test: revoked mid-upload');
      },
      beforeStop: async () => {
        participants = [...((await admin.rounds()).rounds[0]?.participants ?? [])].sort();
      },
    });
    expect(participants).toEqual(['bsc', 'hlrs']);
    expect(lines(run.log).filter((l) => l['msg'] === 'aggregated on the shards')).toHaveLength(1);
    for (const log of run.shardLogs) {
      expect(lines(log).find((l) => l['msg'] === 'site dropped by the leader: its admissions and streams here end')).toMatchObject({ site: 'cines', reason: 'revoked by admin alice: test: revoked mid-upload' });
      // Its part was cut off at every shard: none verified, the others' both.
      expect(lines(log).filter((l) => l['msg'] === 'upload verified').map((l) => l['site']).sort()).toEqual(['bsc', 'hlrs']);
    }
    admin.close();
  }, 200_000);

  it('localShards: 2 makes the coordinator start its own shard processes, which take the sites’ parts on the ports after its own and aggregate (by the median) the models the coordinator alone does, are restarted when killed and leave with a SIGKILLed coordinator', async () => {
    const { files, admin, runToEnd } = await shardFederation('localrun', ['bsc', 'hlrs', 'cines'], { rounds: 2, secure: false, aggregator: { name: 'median' }, localShardCertificates: 2 });
    const { listen } = JSON.parse(await readFile(files.coordinatorConfig, 'utf8')) as { listen: string };
    const port = Number(listen.slice(listen.lastIndexOf(':') + 1));
    await patchJsonFile(files.coordinatorConfig, ({ aggregators: _a, ...c }) => ({ ...c, stateDir: 'state-alone' }));
    const alone = await runToEnd('k0', { shards: false });
    // Its call limits and upload budget (none of them the defaults) go to its local shards with it.
    await patchJsonFile(files.coordinatorConfig, (c) => ({ ...c, stateDir: 'state-local', localShards: 2, limits: { ...(c['limits'] as object | undefined), requestsPerS: 40, burst: 150, maxConcurrentCallsPerSite: 48, uploadBudgetBytes: 300 << 20 } }));
    const configOf = (name: string): string => join(files.coordinatorConfig, '..', 'state-local', 'local-shards', `${name}.json`);
    let restarted = '';
    const local = await runToEnd('local', {
      shards: false,
      localShards: true,
      beforeStop: async (coordinator) => {
        // A local shard killed is started again and attaches again: a second `shard attached` for it.
        const attachedLines = async (): Promise<number> => lines(await coordinator.logText()).filter((l) => l['msg'] === 'shard attached' && l['shard'] === 'local-2').length;
        const attachedBefore = await attachedLines();
        const pid = await pidOf(configOf('local-2'));
        process.kill(pid, 'SIGKILL');
        await waitFor('local-2 restarted', async () => {
          const again = await pidOf(configOf('local-2')).catch(() => undefined);
          return again !== undefined && again !== pid ? again : undefined;
        }, 15_000, 100);
        await waitFor('local-2 attached again', async () => ((await attachedLines()) > attachedBefore ? true : undefined), 30_000, 200);
        await waitFor('local-2 ready again', async () => ((await admin.status().catch(() => undefined))?.shards.every((x) => x.state === 'ready') ? true : undefined), 30_000, 200);
        restarted = await coordinator.logText();
        // With local shards no aggregator certificate is a shard, not even one the federation issued.
        const outsider = await startCli('localrun-s1', ['aggregator', '--config', files.aggregatorConfigs.get('s1')!], join(files.coordinatorConfig, '..', '..'));
        procs.push(outsider);
        expect(await outsider.exited).toBe(1);
        expect(await outsider.logText()).toContain("NOT_MEMBER: aggregator s1 is not one of this coordinator's shards: it runs only the local shards it starts (localShards)");
        // `admin status` names them by the ports they serve sites on, on the host the sites dial the coordinator at.
        expect((await admin.status()).shards.map((x) => [x.shardId, x.endpoint, x.state])).toEqual([
          ['local-1', `:${port + 1}`, 'ready'],
          ['local-2', `:${port + 2}`, 'ready'],
        ]);
        // The coordinator SIGKILLed (no shutdown of its own): its shards see their stdin close and exit.
        await coordinator.stop('SIGKILL');
        await waitFor('no local shard left', async () => ((await pidOf(configOf('local-1')).catch(() => undefined)) === undefined && (await pidOf(configOf('local-2')).catch(() => undefined)) === undefined ? true : undefined), 15_000, 200);
      },
    });
    expect(lines(local.log).filter((l) => l['msg'] === 'aggregated on the shards').map((l) => l['shards'])).toEqual([2, 2]);
    // Every delta went to the local shards in parts, and every global model came from them in parts:
    // the coordinator's own process took none of those bytes (its certificate served none of them).
    expect(lines(local.log).filter((l) => l['msg'] === 'upload verified: every shard holds its part')).toHaveLength(6);
    expect(lines(local.log).filter((l) => l['msg'] === 'upload verified' && l['shard'] === undefined)).toHaveLength(0);
    expect(lines(local.log).filter((l) => l['msg'] === 'download admitted in parts from the aggregator shards').length).toBeGreaterThanOrEqual(6);
    // The shards' lines are in the coordinator's log (their stdout is its), each naming its shard.
    const parts = lines(local.log).filter((l) => l['msg'] === "aggregated the shard's part");
    expect(parts.map((l) => l['shard']).sort()).toEqual(['local-1', 'local-1', 'local-2', 'local-2']);
    // The models compared above are the shards' median against the coordinator's own, with no shards.
    // The run's partition is in its journal, from round 1, with the bounds the shards were assigned.
    const journal = (await readFile(join(files.coordinatorConfig, '..', 'state-local', 'journal.jsonl'), 'utf8')).trim().split('\n').map((l) => (JSON.parse(l) as { body: Record<string, unknown> }).body);
    const partitioned = journal.filter((b) => b['type'] === 'shards-partitioned');
    expect(partitioned).toEqual([expect.objectContaining({ runId: 'localrun', fromRound: 1, shards: ['local-1', 'local-2'], alignValues: 128 })]);
    const bounds = partitioned[0]!['bounds'] as number[];
    const assigned = lines(local.log).filter((l) => l['msg'] === 'assigned a part of the model' && l['shard'] === 'local-2').at(-1);
    expect(assigned).toMatchObject({ first: String(bounds[1]), end: String(bounds[2]) });
    expect(lines(alone.log).filter((l) => l['msg'] === 'aggregated')).toHaveLength(2);
    expect(local.models).toEqual(alone.models);
    expect(lines(restarted).find((l) => l['msg'] === 'local aggregator shard exited; restarting it')).toMatchObject({ shard: 'local-2', signal: 'SIGKILL' });
    for (const name of ['local-1', 'local-2']) {
      expect(JSON.parse(await readFile(configOf(name), 'utf8'))).toMatchObject({ limits: { requestsPerS: 40, burst: 150, maxConcurrentCallsPerSite: 48 }, uploadBudgetBytes: 300 << 20 });
    }

    // A coordinator with both configured and local shards is refused at start, naming the conflict.
    await patchJsonFile(files.coordinatorConfig, (c) => ({ ...c, aggregators: [{ name: 's1', endpoint: 'localhost:1' }] }));
    const both = (await fedhpc(['coordinator', '--config', files.coordinatorConfig]).catch((e: unknown) => e)) as { code: number; stderr: string };
    expect(both.code).not.toBe(0);
    expect(both.stderr).toContain('localShards: name aggregators (shards on other hosts) or localShards (shards this coordinator starts), not both');
    admin.close();
  }, 200_000);

  it('fedhpc simulate --shards 2 runs secure rounds aggregated on two shard processes, a site killed mid-upload dropped from the masked sum, and refuses shards with a standby pair with a clear error', async () => {
    const refused = (await fedhpc(['simulate', '--shards', '2', '--coordinators', '2', '--nats-cluster', '3']).catch((e: unknown) => e)) as { code: number; stderr: string };
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('--shards runs beside one coordinator: not with --coordinators (not built yet)');
    const stateDir = await tempDir();
    // site-3 SIGKILLs itself half-way through its upload of round 1, its masked parts on their way to the shards.
    const { stdout } = await exec(process.execPath, [CLI, 'simulate', '--sites', '3', '--rounds', '2', '--shards', '2', '--drop', 'site-3@upload', '--state-dir', stateDir, '--json'], { timeout: 120_000 });
    const out = stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string; round?: number; participants?: string[]; dropped?: string[] });
    expect(out.find((r) => r.type === 'summary')).toMatchObject({ rounds: 2, shards: { count: 2, roundsAggregated: 2 } });
    // Round 1 commits on the shards from the two survivors' parts (the dropped site's pairwise masks
    // rebuilt from its shares); site-3 is back for round 2.
    expect(out.find((r) => r.type === 'round' && r.round === 1)).toMatchObject({ participants: ['site-1', 'site-2'], dropped: ['site-3'] });
    expect(out.find((r) => r.type === 'round' && r.round === 2)).toMatchObject({ participants: ['site-1', 'site-2', 'site-3'] });
    const coordinatorLog = lines(await readFile(join(stateDir, 'logs', 'coordinator.log'), 'utf8'));
    const inParts = coordinatorLog.filter((l) => l['msg'] === 'upload verified: every shard holds its part');
    expect(inParts.filter((l) => l['round'] === 1).map((l) => l['site']).sort()).toEqual(['site-1', 'site-2']);
    expect(inParts.filter((l) => l['round'] === 2)).toHaveLength(3);
  }, 150_000);

  it('secure rounds aggregate on two shards, each unmasking its own range, and commit the models the coordinator alone commits (rounding seeds fixed for the test)', async () => {
    const env = { ...process.env, FEDHPC_TEST_ROUNDING_SEED: 'shards' };
    const { files, admin, runToEnd } = await shardFederation('securerun', ['bsc', 'hlrs', 'cines'], { rounds: 2, secure: true }, env);
    const sharded = await runToEnd('k2', { shards: true });
    expect(lines(sharded.log).filter((l) => l['msg'] === 'aggregated on the shards')).toHaveLength(2);
    // Every masked delta went to the shards in two parts, the weight word with the last one: the
    // leader held none of the masked values, only the three weight words s2 reported per round.
    expect(lines(sharded.log).filter((l) => l['msg'] === 'upload verified: every shard holds its part')).toHaveLength(6);
    expect(lines(sharded.log).filter((l) => l['msg'] === 'upload verified')).toHaveLength(0);
    for (const log of sharded.shardLogs) expect(lines(log).filter((l) => l['msg'] === 'upload verified')).toHaveLength(6);
    await patchJsonFile(files.coordinatorConfig, ({ aggregators: _a, ...c }) => ({ ...c, stateDir: 'state-alone' }));
    const alone = await runToEnd('k0', { shards: false });
    expect(alone.models).toHaveLength(2);
    expect(alone.models).toEqual(sharded.models);
    admin.close();
  }, 300_000);
});

