/**
 * GPU-hour accounting end to end (issue 20) with runners that are not Slurm: real coordinator and
 * agent processes over mTLS, the command runner running a contract-following fake trainer
 * (test/fixtures/trainers/fake-trainer.mjs). Two sites configure their GPUs (wall-clock × GPUs,
 * labelled as such), one does not and declares `unknown` with the reason — never 0. The figures
 * arrive in the sites' signed receipts, `audit verify --require-receipts` holds, and
 * `fedhpc admin usage` (table, --json, --csv, --site, --from/--to) and the Prometheus series sum
 * them. Usage measured by Slurm's accounting is test/integration/runners/slurm-usage.test.ts.
 */
import { execFile } from 'node:child_process';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RoundUsage } from '../../common/usage.js';
import { journalPath, readJsonLines, type JournalLine } from '../helpers/faults.js';
import { CLI, createTestFederation, freePort, startCoordinatorProcess, startSiteProcess, waitFor, type Proc, type TestFederation } from '../helpers/federation.js';

const exec = promisify(execFile);
const FAKE_TRAINER = resolve('test/fixtures/trainers/fake-trainer.mjs');
const ROUNDS = 3;
const STEPS = 5;
const STEP_MS = 100;
/** GPUs each site configures (`runner.gpus`); site-3 configures none. */
const GPUS: Record<string, number | undefined> = { 'site-1': 2, 'site-2': 1, 'site-3': undefined };

interface Receipt {
  type: 'receipt';
  site: string;
  round: number;
  usage: RoundUsage;
}

describe('usage receipts from sites without Slurm', () => {
  let fed: TestFederation;
  let metricsPort: number;
  let adminConfig: string;
  let receipts: Receipt[];
  const procs: Proc[] = [];
  const fedhpc = async (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    exec(process.execPath, [CLI, ...args], { timeout: 30_000 }).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
    );
  const admin = (args: string[]) => fedhpc(['admin', ...args, '--config', adminConfig]);

  beforeAll(async () => {
    fed = await createTestFederation({
      sites: 3,
      run: {
        rounds: ROUNDS,
        minSites: 3,
        maxSiteWeight: 1000,
        secureAggregation: { enabled: false },
        train: { max_steps: STEPS, batch_size: 8, fake: { stepMs: STEP_MS } },
      },
    });
    adminConfig = fed.files.adminConfigs.get('admin')!;
    metricsPort = await freePort();
    await fed.patchCoordinatorConfig((cfg) => ({ ...cfg, metrics: { port: metricsPort } }));
    for (const site of fed.sites) {
      const gpus = GPUS[site];
      await fed.patchSiteConfig(site, (c) => ({ ...c, runner: { kind: 'command', command: [process.execPath, FAKE_TRAINER], ...(gpus === undefined ? {} : { gpus }) } }));
    }
    const coordinator = await startCoordinatorProcess(fed);
    procs.push(coordinator);
    for (const s of fed.sites) procs.push(await startSiteProcess(fed, s));
    // A coordinator that exits (a port taken meanwhile, a config it refuses) ends the wait with its log.
    const died = coordinator.exited.then(async (code) => {
      throw new Error(`the coordinator exited (${code}): ${(await coordinator.logText()).slice(-2000)}`);
    });
    died.catch(() => undefined); // it exits at the end of the test too: only the race below hears of it
    // The last round's receipts follow the run's end (its `finished` task).
    receipts = await Promise.race([died, waitFor(
      'every site\'s receipt of every round',
      async () => {
        const r = (await readJsonLines<JournalLine>(journalPath(fed))).map((l) => l.body).filter((b) => b.type === 'receipt') as unknown as Receipt[];
        return r.length === ROUNDS * fed.sites.length ? r : undefined;
      },
      120_000,
    ).catch(async (err: unknown) => {
      throw new Error(`${(err as Error).message}; the coordinator's log ends: ${(await coordinator.logText().catch(() => '(none)')).slice(-2000)}`);
    })]);
  }, 150_000);
  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop();
    await fed?.cleanup();
  });

  const of = (site: string): Receipt[] => receipts.filter((r) => r.site === site).sort((a, b) => a.round - b.round);

  it('signs wall-clock × the configured GPUs into each receipt, and unknown with the reason where none are configured', () => {
    for (const site of ['site-1', 'site-2']) {
      for (const { usage } of of(site)) {
        expect(usage.source).toBe('wall-clock');
        expect(usage.gpus).toBe(GPUS[site]);
        expect(usage.jobs).toBe('');
        // The trainer sleeps STEP_MS after each of its STEPS progress lines: the shard took at least that.
        expect(usage.wallMs).toBeGreaterThanOrEqual(STEPS * STEP_MS);
        expect(usage.wallMs).toBeLessThan(30_000);
        expect(usage.allocatedGpuMs).toBe(usage.wallMs * GPUS[site]!);
        // Training: first to last progress line (STEPS − 1 sleeps), within the allocation.
        expect(usage.trainingGpuMs).toBeGreaterThanOrEqual((STEPS - 1) * STEP_MS * GPUS[site]! * 0.9);
        expect(usage.trainingGpuMs).toBeLessThan(usage.allocatedGpuMs);
      }
    }
    for (const { usage } of of('site-3')) {
      expect(usage).toMatchObject({ source: 'unknown', gpus: 0, wallMs: 0, allocatedGpuMs: 0, trainingGpuMs: 0 });
      expect(usage.reason).toMatch(/runner\.gpus is not configured/);
    }
  });

  it('keeps the trail verifiable with every receipt', async () => {
    const r = await fedhpc(['admin', 'audit', 'verify', '--state-dir', join(fed.member('coordinator'), 'state'), '--ca', join(fed.member('coordinator'), 'ca.crt'), '--require-receipts', '--json']);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true });
  });

  it('sums them per run and site in admin usage: --json, --csv, the table, and filters', async () => {
    const sum = (site: string, k: 'allocatedGpuMs' | 'trainingGpuMs'): number => of(site).reduce((s, r) => s + r.usage[k], 0);
    const json = JSON.parse((await admin(['usage', '--json'])).stdout) as { rows: { run: string; site: string; rounds: number; roundsUnknown: number; roundsWithoutReceipt: number; allocatedGpuHours: number; trainingGpuHours: number; waitingGpuHours: number; sources: string[]; perRound: { round: number; usage: RoundUsage }[] }[] };
    expect(json.rows.map((r) => `${r.run}/${r.site}`)).toEqual(['test-run/site-1', 'test-run/site-2', 'test-run/site-3']);
    for (const row of json.rows) {
      expect(row.rounds).toBe(ROUNDS);
      expect(row.roundsWithoutReceipt).toBe(0);
      expect(row.allocatedGpuHours).toBeCloseTo(sum(row.site, 'allocatedGpuMs') / 3_600_000, 12);
      expect(row.trainingGpuHours).toBeCloseTo(sum(row.site, 'trainingGpuMs') / 3_600_000, 12);
      expect(row.waitingGpuHours).toBeCloseTo(row.allocatedGpuHours - row.trainingGpuHours, 12);
      expect(row.perRound.map((p) => p.usage)).toEqual(of(row.site).map((r) => r.usage));
    }
    expect(json.rows[2]).toMatchObject({ roundsUnknown: ROUNDS, allocatedGpuHours: 0, sources: [] });
    expect(json.rows[0]).toMatchObject({ roundsUnknown: 0, sources: ['wall-clock'] });

    const csv = (await admin(['usage', '--csv'])).stdout.trim().split('\n');
    expect(csv[0]).toBe('run,site,rounds,rounds_unknown,rounds_without_receipt,allocated_gpu_hours,training_gpu_hours,waiting_gpu_hours,sources');
    expect(csv.slice(1).map((l) => l.split(',').slice(0, 4).join(','))).toEqual([`test-run,site-1,${ROUNDS},0`, `test-run,site-2,${ROUNDS},0`, `test-run,site-3,${ROUNDS},${ROUNDS}`]);
    expect(Number(csv[1]!.split(',')[5])).toBeCloseTo(json.rows[0]!.allocatedGpuHours, 6);

    const table = (await admin(['usage'])).stdout;
    expect(table).toMatch(/GPU-h allocated/);
    expect(table).toMatch(/site-3 .*3 \(runner\.gpus is not configured/);

    const one = JSON.parse((await admin(['usage', '--site', 'site-2', '--json'])).stdout) as { rows: { site: string }[] };
    expect(one.rows.map((r) => r.site)).toEqual(['site-2']);
    const later = JSON.parse((await admin(['usage', '--from', '2999-01-01', '--json'])).stdout) as { rows: unknown[] };
    expect(later.rows).toEqual([]);
    const window = JSON.parse((await admin(['usage', '--from', '2020-01-01', '--to', '2999-01-01T00:00Z', '--json'])).stdout) as { rows: unknown[] };
    expect(window.rows).toHaveLength(3);
  });

  it('refuses bad usage options with a clear error and exit 2', async () => {
    for (const [args, message] of [
      [['usage', '--from', 'yesterday'], /--from must be an ISO 8601 date or time/],
      [['usage', '--from', '2026-12-02', '--to', '2026-12-01'], /--to \(2026-12-01\) must be after --from/],
      [['usage', '--json', '--csv'], /--json or --csv, not both/],
    ] as const) {
      const r = await admin([...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(message);
    }
    const bad = await admin(['usage', '--site', 'no such site!', '--json']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/is not a site id/);
  });

  it('exports the usage series to Prometheus', async () => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const value = (labels: string): number => Number(new RegExp(`^fedhpc_site_gpu_seconds_total\\{[^}]*${labels}[^}]*\\} (\\S+)$`, 'm').exec(text)?.[1]);
    const allocated = of('site-1').reduce((s, r) => s + r.usage.allocatedGpuMs, 0) / 1000;
    expect(value('site="site-1",run="test-run",kind="allocated"')).toBeCloseTo(allocated, 6);
    expect(text).toMatch(/^fedhpc_site_usage_unknown_rounds_total\{[^}]*site="site-3",run="test-run"[^}]*\} 3$/m);
  });
});
