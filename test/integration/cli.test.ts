import { execFile } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCoordinatorConfig } from '../../coordinator/index.js';
import { loadSiteConfig } from '../../site-agent/index.js';
import { CLI, freePort, startCli, waitFor, type Proc } from '../helpers/federation.js';

const exec = promisify(execFile);
const fedhpc = (args: string[]) => exec(process.execPath, [CLI, ...args], { timeout: 30_000 });

describe('fedhpc provision, then coordinator, site and admin from the written configs', () => {
  let dir: string;
  let port: number;
  const procs: Proc[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fedhpc-cli-'));
    port = await freePort();
  });
  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('provisions a federation whose configs load and whose CA key is reported, not placed with the coordinator', async () => {
    const { stdout } = await fedhpc([
      'provision', '--federation', 'clifed', '--sites', 'bsc,hlrs', '--admins', 'alice',
      '--out', dir, '--coordinator', `localhost:${port}`, '--json',
    ]);
    const summary = JSON.parse(stdout) as { coordinatorConfig: string; sites: Record<string, string>; admins: Record<string, string>; caKey: string };
    expect(Object.keys(summary.sites)).toEqual(['bsc', 'hlrs']);
    expect(summary.caKey).toBe(join(dir, 'ca', 'ca.key'));
    const coord = loadCoordinatorConfig(summary.coordinatorConfig);
    expect(coord.federation).toBe('clifed');
    expect(coord.run?.expectedSites).toEqual(['bsc', 'hlrs']);
    // Every site provisioned is a member; any other site certificate is refused until approved.
    expect(coord.members).toEqual(['bsc', 'hlrs']);
    expect(coord.tls.key.startsWith(join(dir, 'coordinator'))).toBe(true);
    await expect(stat(join(dir, 'coordinator', 'ca.key'))).rejects.toThrow();
    expect(loadSiteConfig(summary.sites['bsc']!).coordinator).toBe(`localhost:${port}`);
  });

  it('runs a round from the provisioned configs and reports it through admin status, sites and rounds', async () => {
    procs.push(await startCli('coordinator', ['coordinator', '--config', join(dir, 'coordinator', 'coordinator.json')], dir));
    for (const s of ['bsc', 'hlrs']) procs.push(await startCli(s, ['site', '--config', join(dir, 'sites', s, 'site.json')], dir));
    const adminConfig = join(dir, 'admins', 'alice', 'admin.json');
    const rounds = await waitFor('one committed round', async () => {
      const { stdout } = await fedhpc(['admin', 'rounds', '--config', adminConfig, '--json']);
      const r = JSON.parse(stdout) as { rounds: { outcome: string; participants: string[] }[] };
      return r.rounds.some((x) => x.outcome === 'committed') ? r : undefined;
    }, 90_000, 500);
    expect(rounds.rounds[0]!.participants.sort()).toEqual(['bsc', 'hlrs']);

    const status = JSON.parse((await fedhpc(['admin', 'status', '--config', adminConfig, '--json'])).stdout) as Record<string, unknown>;
    expect(status['federation']).toBe('clifed');
    expect(Number(status['roundsCommitted'])).toBeGreaterThanOrEqual(1);

    const sites = JSON.parse((await fedhpc(['admin', 'sites', '--config', adminConfig, '--json'])).stdout) as { siteId: string; connected: boolean }[];
    expect(sites.map((s) => [s.siteId, s.connected])).toEqual([['bsc', true], ['hlrs', true]]);

    const table = (await fedhpc(['admin', 'sites', '--config', adminConfig])).stdout;
    expect(table.split('\n')[0]).toMatch(/^site\s+connected\s+activity/);
    expect(table).toMatch(/\nbsc\s+yes/);
  }, 120_000);

  it('refuses admin commands presented with a site certificate', async () => {
    const siteAsAdmin = join(dir, 'site-as-admin.json');
    const { writeFile } = await import('node:fs/promises');
    await writeFile(siteAsAdmin, JSON.stringify({
      coordinator: `localhost:${port}`,
      tls: { ca: 'sites/bsc/ca.crt', cert: 'sites/bsc/site.crt', key: 'sites/bsc/site.key' },
    }));
    const err = (await fedhpc(['admin', 'status', '--config', siteAsAdmin]).catch((e: unknown) => e)) as { code: number; stderr: string };
    expect(err.code).toBe(1);
    expect(err.stderr).toMatch(/PERMISSION_DENIED: a site certificate cannot call the admin API/);
  });

  it('says which field of an admin config is wrong, and where', async () => {
    const bad = join(dir, 'bad-admin.json');
    const { writeFile } = await import('node:fs/promises');
    await writeFile(bad, JSON.stringify({ coordinator: `localhost:${port}`, tls: { ca: 'a', cert: 'b', key: 'c' }, timeout: 5 }));
    const err = (await fedhpc(['admin', 'status', '--config', bad]).catch((e: unknown) => e)) as { code: number; stderr: string };
    expect(err.code).toBe(2);
    expect(err.stderr).toContain(bad);
    expect(err.stderr).toContain('timeout: unknown field');
  });
});
