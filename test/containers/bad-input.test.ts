/**
 * Site containers started with bad input next to a healthy federation of containers: another
 * site's certificate, an expired certificate, a coordinator address that does not resolve. Each
 * fails fast with a clear message in its container's log; the federation finishes untouched.
 */
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueCertificate } from '../../coordinator/pki/index.js';
import { waitFor } from '../helpers/federation.js';
import { ContainerFederation, containerLogs, containerState, skipWithoutDocker } from './harness.js';

const skip = await skipWithoutDocker();
const SITES = ['site-1', 'site-2', 'site-3'];
/** How soon a misconfigured agent must have stopped. */
const FAIL_FAST_MS = 20_000;
/** Agents stop retrying after this long without contact (`giveUpAfterS`), well inside FAIL_FAST_MS. */
const GIVE_UP_S = 8;

/**
 * A site folder beside the real ones: `site.json` of `site` (optionally edited), the CA, and a
 * certificate and key taken from elsewhere. Returns the folder, which the container mounts.
 */
async function badSiteFolder(fed: ContainerFederation, name: string, o: { site: string; cert: string; key: string; patch?: (c: Record<string, unknown>) => Record<string, unknown> }): Promise<string> {
  const dir = join(fed.dir, 'bad', name);
  await mkdir(join(dir, 'work'), { recursive: true });
  const cfg = JSON.parse(await readFile(fed.files.siteConfigs.get(o.site)!, 'utf8')) as Record<string, unknown>;
  await writeFile(join(dir, 'site.json'), JSON.stringify(o.patch ? o.patch(cfg) : cfg, null, 2));
  await copyFile(join(fed.dir, 'ca', 'ca.crt'), join(dir, 'ca.crt'));
  await writeFile(join(dir, 'site.crt'), o.cert);
  await writeFile(join(dir, 'site.key'), o.key, { mode: 0o600 });
  return dir;
}

/** Waits until the container has exited; returns its exit code and log. */
async function failedFast(name: string, startedAt: number): Promise<{ exitCode: number; log: string; seconds: number }> {
  const exited = await waitFor(`${name} to exit`, async () => {
    const st = await containerState(name);
    return st.running ? undefined : st;
  }, FAIL_FAST_MS, 200);
  return { exitCode: exited.exitCode, log: await containerLogs(name), seconds: (Date.now() - startedAt) / 1000 };
}

describe.skipIf(skip)('site containers started with bad input, beside a running federation', () => {
  let fed: ContainerFederation;
  beforeAll(async () => {
    fed = await ContainerFederation.start({ sites: 3, rounds: 2, minSites: 3 });
    for (const s of SITES) await fed.startSite(s);
  }, 120_000);
  afterAll(async () => fed?.close());

  it("an agent configured as site-2 but holding site-1's certificate is refused at Join and exits, naming both", { timeout: 60_000 }, async () => {
    const site1 = join(fed.dir, 'sites', 'site-1');
    const dir = await badSiteFolder(fed, 'impostor', {
      site: 'site-2',
      cert: await readFile(join(site1, 'site.crt'), 'utf8'),
      key: await readFile(join(site1, 'site.key'), 'utf8'),
    });
    const t0 = Date.now();
    const c = await fed.startSite('impostor', { config: join(dir, 'site.json'), mounts: [dir] });
    const r = await failedFast(c.getName(), t0);
    expect(r.exitCode).toBe(1);
    expect(r.log).toContain('REFUSED');
    expect(r.log).toContain('SITE_MISMATCH');
    expect(r.log).toMatch(/site-1[\s\S]*site-2|site-2[\s\S]*site-1/);
  });

  it('an agent whose certificate has expired exits at start-up and says so', { timeout: 60_000 }, async () => {
    const ca = { certPem: await readFile(join(fed.dir, 'ca', 'ca.crt'), 'utf8'), keyPem: await readFile(join(fed.dir, 'ca', 'ca.key'), 'utf8') };
    const issued = await issueCertificate({ ca, role: 'site', id: 'site-3', federation: 'containers', validityDays: 1, now: new Date(Date.now() - 3 * 86_400_000) });
    const dir = await badSiteFolder(fed, 'expired', { site: 'site-3', cert: issued.certPem, key: issued.keyPem!, patch: (c) => ({ ...c, giveUpAfterS: GIVE_UP_S }) });
    const t0 = Date.now();
    const c = await fed.startSite('expired', { config: join(dir, 'site.json'), mounts: [dir] });
    const r = await failedFast(c.getName(), t0);
    expect(r.exitCode).not.toBe(0);
    // The configuration line names the folder `expired`: look at what the agent said after it.
    const said = r.log.split('\n').filter((l) => !l.includes('"msg":"configuration"')).join('\n');
    expect(said).toMatch(/certificate[^\n]*expired|expired[^\n]*certificate/i);
  });

  it('an agent whose coordinator address does not resolve exits and names the address', { timeout: 60_000 }, async () => {
    const dir = await badSiteFolder(fed, 'nowhere', {
      site: 'site-3',
      cert: await readFile(join(fed.dir, 'sites', 'site-3', 'site.crt'), 'utf8'),
      key: await readFile(join(fed.dir, 'sites', 'site-3', 'site.key'), 'utf8'),
      patch: (c) => ({ ...c, coordinator: 'no-such-coordinator.invalid:7443', giveUpAfterS: GIVE_UP_S }),
    });
    const t0 = Date.now();
    const c = await fed.startSite('nowhere', { config: join(dir, 'site.json'), mounts: [dir] });
    const r = await failedFast(c.getName(), t0);
    expect(r.exitCode).not.toBe(0);
    expect(r.log).toContain('no-such-coordinator.invalid');
    expect(r.log).toMatch(/resol|ENOTFOUND|not found/i);
  });

  it('leaves the federation untouched: both rounds committed by all three real sites', { timeout: 120_000 }, async () => {
    const { rounds, modelSha256 } = await fed.waitForRun(2);
    const committed = rounds.rounds.filter((r) => r.outcome === 'committed');
    expect(committed.map((r) => Number(r.round))).toEqual([1, 2]);
    for (const r of committed) expect([...r.participants].sort()).toEqual(SITES);
    for (const s of SITES) expect(await fed.siteHolds(s, modelSha256)).toBe(modelSha256);
    const sites = (await fed.admin().sites()).sites.map((s) => s.siteId).sort();
    expect(sites).toEqual(SITES);
  });
});
