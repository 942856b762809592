/**
 * `fedhpc provision --coordinators` (issue 19): a certificate per coordinator under
 * coordinators/<name>/, each naming its own host; site and admin configs list every address in
 * order. A real coordinator started with the second certificate on 127.0.0.1 is reached by a site
 * and an admin whose first address has nothing behind it. `--aggregators` (issue 22) issues shard
 * certificates the same way. The built CLI, real processes.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { loadCoordinatorConfig } from '../../coordinator/index.js';
import { loadSiteConfig } from '../../site-agent/index.js';
import { CLI, freePort, startCli, waitFor, type Proc } from '../helpers/federation.js';

const exec = promisify(execFile);
const fedhpc = (args: string[]) => exec(process.execPath, [CLI, ...args], { timeout: 30_000 });

/** The subject CN and SAN entries of a PEM certificate file. */
async function certificate(file: string): Promise<{ cn: string; sans: string[] }> {
  const cert = new X509Certificate(await readFile(file));
  return { cn: /CN=([^\n]+)/.exec(cert.subject)?.[1] ?? '', sans: (cert.subjectAltName ?? '').split(', ') };
}

describe('fedhpc provision --coordinators', () => {
  const dirs: string[] = [];
  const procs: Proc[] = [];
  const tempDir = async (): Promise<string> => {
    const d = await mkdtemp(join(tmpdir(), 'fedhpc-coords-'));
    dirs.push(d);
    return d;
  };
  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('issues a certificate per coordinator naming its own host, and configs that list both', async () => {
    const dir = await tempDir();
    const { stdout } = await fedhpc([
      'provision', '--federation', 'hafed', '--sites', 'bsc', '--admins', 'alice', '--out', dir,
      '--coordinators', 'coord-a.example.org:7443,standby=coord-b.example.org:7444', '--json',
    ]);
    const summary = JSON.parse(stdout) as { coordinatorConfig: string; coordinators: Record<string, string>; sites: Record<string, string>; admins: Record<string, string> };
    expect(summary.coordinators).toEqual({
      'coord-a-example-org': join(dir, 'coordinators', 'coord-a-example-org', 'coordinator.json'),
      standby: join(dir, 'coordinators', 'standby', 'coordinator.json'),
    });
    expect(summary.coordinatorConfig).toBe(summary.coordinators['coord-a-example-org']);
    const a = await certificate(join(dir, 'coordinators', 'coord-a-example-org', 'coordinator.crt'));
    const b = await certificate(join(dir, 'coordinators', 'standby', 'coordinator.crt'));
    expect(a).toEqual({ cn: 'coord-a-example-org', sans: expect.arrayContaining(['DNS:coord-a.example.org', 'DNS:localhost', 'IP Address:127.0.0.1']) as string[] });
    expect(b).toEqual({ cn: 'standby', sans: expect.arrayContaining(['DNS:coord-b.example.org', 'DNS:localhost']) as string[] });
    expect(a.sans).not.toContain('DNS:coord-b.example.org');
    expect(b.sans).not.toContain('DNS:coord-a.example.org');
    for (const [name, port] of [['coord-a-example-org', 7443], ['standby', 7444]] as const) {
      const c = loadCoordinatorConfig(summary.coordinators[name]!);
      expect({ listen: c.listen, federation: c.federation, members: c.members }).toEqual({ listen: `0.0.0.0:${port}`, federation: 'hafed', members: ['bsc'] });
      expect(c.tls.cert).toBe(join(dir, 'coordinators', name, 'coordinator.crt'));
    }
    const site = loadSiteConfig(summary.sites['bsc']!);
    expect({ coordinator: site.coordinator, coordinators: site.coordinators, serverName: site.serverName }).toEqual({ coordinator: undefined, coordinators: ['coord-a.example.org:7443', 'coord-b.example.org:7444'], serverName: undefined });
    const admin = JSON.parse(await readFile(summary.admins['alice']!, 'utf8')) as Record<string, unknown>;
    expect(admin).toMatchObject({ coordinators: ['coord-a.example.org:7443', 'coord-b.example.org:7444'] });
    expect(admin).not.toHaveProperty('coordinator');
    // The two flags exclude each other.
    const both = (await fedhpc(['provision', '--federation', 'x', '--sites', 'a', '--admins', 'b', '--out', await tempDir(), '--coordinator', 'a:1', '--coordinators', 'b:2']).catch((e: unknown) => e)) as { code: number; stderr: string };
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('not both');
  });

  it('--aggregators issues a certificate of the aggregator role per shard, naming its host; refuses a bad entry and a folder already provisioned', async () => {
    const dir = await tempDir();
    const { stdout } = await fedhpc([
      'provision', '--federation', 'hafed', '--sites', 'bsc', '--admins', 'alice', '--out', dir,
      '--aggregators', 'shard-1.example.org:7450,s2=10.0.0.9:7451', '--json',
    ]);
    const summary = JSON.parse(stdout) as { aggregators: Record<string, string> };
    expect(summary.aggregators).toEqual({ 'shard-1-example-org': join(dir, 'aggregators', 'shard-1-example-org', 'aggregator.json'), s2: join(dir, 'aggregators', 's2', 'aggregator.json') });
    // The coordinator lists its shards; each shard dials the coordinator and reads its state dir.
    const coordinator = JSON.parse(await readFile(join(dir, 'coordinator', 'coordinator.json'), 'utf8')) as Record<string, unknown>;
    expect(coordinator['aggregators']).toEqual([{ name: 'shard-1-example-org', endpoint: 'shard-1.example.org:7450' }, { name: 's2', endpoint: '10.0.0.9:7451' }]);
    const shardConfig = JSON.parse(await readFile(summary.aggregators['s2']!, 'utf8')) as Record<string, unknown>;
    expect(shardConfig).toMatchObject({ federation: 'hafed', name: 's2', coordinators: ['localhost:7443'], checkpoints: join('..', '..', 'coordinator', 'state'), stateDir: 'state' });
    const s2 = await certificate(join(dir, 'aggregators', 's2', 'aggregator.crt'));
    expect(s2).toEqual({ cn: 's2', sans: expect.arrayContaining(['IP Address:10.0.0.9', 'DNS:localhost', 'URI:fedhpc://hafed/aggregator/s2']) as string[] });
    expect(new X509Certificate(await readFile(join(dir, 'aggregators', 's2', 'aggregator.crt'))).subject).toContain('OU=aggregator');
    const bad = (await fedhpc(['provision', '--federation', 'x', '--sites', 'a', '--admins', 'b', '--out', await tempDir(), '--aggregators', 'Shard=h:1']).catch((e: unknown) => e)) as { code: number; stderr: string };
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--aggregators: the name "Shard"');
    // Shards join a federation with its certificates, not later into one already provisioned.
    const again = (await fedhpc(['provision', '--federation', 'hafed', '--sites', 'bsc', '--admins', 'alice', '--out', dir, '--aggregators', 'h3:7452']).catch((e: unknown) => e)) as { code: number; stderr: string };
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain('holds a federation without a certificate for aggregator shard h3: shard certificates are issued with the federation');
    await expect(readFile(join(dir, 'aggregators', 'h3', 'aggregator.crt'))).rejects.toThrow(/ENOENT/);
  });

  it('a site and an admin reach the coordinator of the second certificate on 127.0.0.1 when the first address has none', async () => {
    const dir = await tempDir();
    const [first, second] = [await freePort(), await freePort()];
    await fedhpc([
      'provision', '--federation', 'hafed', '--sites', 'bsc', '--admins', 'alice', '--out', dir,
      '--coordinators', `localhost:${first},127.0.0.1:${second}`, '--json',
    ]);
    procs.push(await startCli('coordinator', ['coordinator', '--config', join(dir, 'coordinators', '127-0-0-1', 'coordinator.json')], dir));
    procs.push(await startCli('bsc', ['site', '--config', join(dir, 'sites', 'bsc', 'site.json')], dir));
    const adminConfig = join(dir, 'admins', 'alice', 'admin.json');
    const status = await waitFor('bsc connected', async () => {
      const s = await fedhpc(['admin', 'status', '--config', adminConfig, '--json']).then((r) => JSON.parse(r.stdout) as Record<string, unknown>, () => undefined);
      return s !== undefined && s['sitesConnected'] === 1 ? s : undefined;
    }, 30_000, 300);
    expect(status['federation']).toBe('hafed');
    const joined = (await procs[1]!.logText()).split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['msg'] === 'joined federation');
    expect(joined).toMatchObject({ coordinator: `127.0.0.1:${second}` });
  }, 60_000);
});
