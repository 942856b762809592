/**
 * A coordinator provisioned with an IP address (`--coordinator 127.0.0.1:PORT`), as a centre
 * without DNS for it does: admin commands and site agents dial the IP and check it against the
 * certificate's IP SANs, without Node's DEP0123 warning (RFC 6066 forbids an IP as TLS server
 * name, so none is sent), and a certificate that does not name the dialled IP is still refused.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, freePort, startCli, waitFor, type Proc } from '../helpers/federation.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}
const fedhpc = (args: string[]): Promise<Run> =>
  new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });

describe('a coordinator provisioned with an IP address', () => {
  let dir: string;
  let port: number;
  let adminConfig: string;
  const procs: Proc[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fedhpc-ip-'));
    port = await freePort();
    const provision = await fedhpc(['provision', '--federation', 'ipfed', '--sites', 'bsc', '--admins', 'alice', '--out', dir, '--coordinator', `127.0.0.1:${port}`, '--json']);
    expect(provision.stderr).toBe('');
    adminConfig = join(dir, 'admins', 'alice', 'admin.json');
    procs.push(await startCli('coordinator', ['coordinator', '--config', join(dir, 'coordinator', 'coordinator.json')], dir));
    await waitFor('the coordinator to answer', async () => ((await fedhpc(['admin', 'status', '--config', adminConfig, '--json'])).code === 0 ? true : undefined), 30_000, 300);
  }, 60_000);
  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('admin commands dial the IP with no DEP0123 warning on stderr', async () => {
    expect(JSON.parse(await readFile(adminConfig, 'utf8')).coordinator).toBe(`127.0.0.1:${port}`);
    for (const command of ['status', 'sites', 'rounds']) {
      const r = await fedhpc(['admin', command, '--config', adminConfig]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
    }
  });

  it('a site agent joins over the IP with no DEP0123 warning in its output', { timeout: 60_000 }, async () => {
    const site = await startCli('bsc', ['site', '--config', join(dir, 'sites', 'bsc', 'site.json')], dir);
    procs.push(site);
    await waitFor('bsc connected', async () => {
      const r = await fedhpc(['admin', 'sites', '--config', adminConfig, '--json']);
      const sites = JSON.parse(r.stdout) as { siteId: string; connected: boolean }[];
      return sites.some((s) => s.siteId === 'bsc' && s.connected) ? true : undefined;
    }, 30_000, 300);
    const log = await site.logText();
    expect(log).not.toContain('DEP0123');
    expect(log).not.toContain('ServerName');
  });

  it('still refuses a coordinator certificate that does not name the dialled IP', async () => {
    const other = join(dir, 'admins', 'alice', 'other-ip.json');
    await writeFile(other, JSON.stringify({ ...JSON.parse(await readFile(adminConfig, 'utf8')), coordinator: `127.0.0.2:${port}` }));
    const r = await fedhpc(['admin', 'status', '--config', other]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/IP: 127\.0\.0\.2 is not in the cert's list/);
    expect(r.stderr).not.toContain('DEP0123');
  });
});
