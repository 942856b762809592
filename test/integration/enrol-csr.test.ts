/**
 * CSR enrolment and renewal end to end: `fedhpc site enroll` makes the key and CSR at the site,
 * `fedhpc admin approve` signs it with the admin's CA folder and records the approval with the
 * coordinator, the new site joins and trains; `fedhpc site renew` + approve gives the running
 * agent a new certificate that it takes into use without stopping. Bad input is refused clearly.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AdminClient, AdminEvent } from '../../coordinator/index.js';
import { CLI, createTestFederation, startCli, startCoordinatorProcess, startSiteProcess, waitFor, type Proc, type TestFederation } from '../helpers/federation.js';

const exec = promisify(execFile);
type CliError = { code: number; stdout: string; stderr: string };

describe('enrolment by CSR, approval, renewal without stopping', () => {
  let fed: TestFederation;
  let admin: AdminClient;
  let adminConfig: string;
  let caDir: string;
  const procs: Proc[] = [];
  const events: AdminEvent[] = [];
  const stopEvents = new AbortController();
  const fedhpc = (args: string[]) => exec(process.execPath, [CLI, ...args], { timeout: 30_000 });
  const fails = async (args: string[]): Promise<CliError> => (await fedhpc(args).then(() => expect.fail(`${args.join(' ')} succeeded`), (e: unknown) => e)) as CliError;
  const approve = (site: string, csr: string, ca = caDir) => ['admin', 'approve', site, '--csr', csr, '--ca', ca, '--config', adminConfig, '--json'];

  beforeAll(async () => {
    fed = await createTestFederation({
      sites: 2,
      run: {
        rounds: 200,
        minSites: 2,
        train: { steps: 10, batchSize: 16, lr: 0.01 },
        deadlines: { openS: 5, trainingS: 60, uploadS: 60, aggregateS: 30, commitS: 30, evalS: 15 },
        secureAggregation: { enabled: false },
      },
    });
    adminConfig = fed.files.adminConfigs.get('admin')!;
    caDir = join(fed.dir, 'ca');
    procs.push(await startCoordinatorProcess(fed));
    for (const s of fed.sites) procs.push(await startSiteProcess(fed, s));
    admin = fed.admin();
    await waitFor('2 connected sites', async () => ((await admin.status()).sitesConnected === 2 ? true : undefined), 30_000);
    void admin.events((e) => events.push(e), stopEvents.signal).catch(() => undefined);
  });
  afterAll(async () => {
    stopEvents.abort();
    for (const p of procs.reverse()) await p.stop();
    await fed?.cleanup();
  });

  it('refuses bad enrolments: a kept key, no CA key, a tampered CSR, another site, a known site with another key', async () => {
    const dir = join(fed.dir, 'enrol-bad');
    await fedhpc(['site', 'enroll', '--site', 'site-x', '--federation', 'testfed', '--out', dir]);
    expect((await fails(['site', 'enroll', '--site', 'site-x', '--federation', 'testfed', '--out', dir])).stderr).toMatch(/PKI_OUTPUT_EXISTS: .*site\.key already exists/);

    const noKey = join(fed.dir, 'ca-without-key');
    await mkdir(noKey);
    await copyFile(join(caDir, 'ca.crt'), join(noKey, 'ca.crt'));
    const missing = await fails(approve('site-x', join(dir, 'site.csr'), noKey));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/PKI_CA_KEY_MISSING: approve needs the CA key at .*ca-without-key\/ca\.key/);

    // One byte of the signature changed: the CSR was not signed by the key it carries.
    const pem = await readFile(join(dir, 'site.csr'), 'utf8');
    const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    der[der.length - 1]! ^= 0x01;
    const tampered = join(dir, 'tampered.csr');
    await writeFile(tampered, `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`);
    expect((await fails(approve('site-x', tampered))).stderr).toMatch(/PKI_INVALID_CSR: CSR signature does not verify/);
    expect((await fails(approve('site-y', join(dir, 'site.csr')))).stderr).toMatch(/PKI_INVALID_CSR: CSR asks for site "site-x", not "site-y"/);

    const impostor = join(fed.dir, 'enrol-site-1');
    await fedhpc(['site', 'enroll', '--site', 'site-1', '--federation', 'testfed', '--out', impostor]);
    const refused = await fails(approve('site-1', join(impostor, 'site.csr')));
    expect(refused.stderr).toMatch(/ENROLMENT_REFUSED: site site-1 is already enrolled with a different key/);
    await expect(stat(join(impostor, 'site.crt'))).rejects.toThrow();
    expect(events.filter((e) => e.kind === 'site.approved')).toEqual([]);
  }, 120_000);

  it('approves a CSR-enrolled site that then joins and trains; its key never left its folder', async () => {
    const dir = join(fed.dir, 'new-site');
    const enrolled = JSON.parse((await fedhpc(['site', 'enroll', '--site', 'site-new', '--federation', 'testfed', '--out', dir, '--json'])).stdout) as { keyPath: string; csrPath: string };
    expect((await stat(enrolled.keyPath)).mode & 0o777).toBe(0o600);
    const approved = JSON.parse((await fedhpc(approve('site-new', enrolled.csrPath))).stdout) as { renewal: boolean; certificate: string; config: string; certificateFingerprint: string };
    expect(approved).toMatchObject({ siteId: 'site-new', renewal: false, certificate: join(dir, 'site.crt'), config: join(dir, 'site.json') });
    expect(new X509Certificate(await readFile(approved.certificate)).checkPrivateKey((await import('node:crypto')).createPrivateKey(await readFile(enrolled.keyPath)))).toBe(true);
    await waitFor('site.approved event', async () => (events.some((e) => e.kind === 'site.approved' && e.body['site'] === 'site-new') ? true : undefined), 10_000);

    procs.push(await startCli('site-new', ['site', '--config', approved.config], fed.dir));
    const round = await waitFor('a round with site-new', async () => (await admin.rounds()).rounds.find((r) => r.outcome === 'committed' && r.participants.includes('site-new')), 90_000, 300);
    expect(round.participants).toEqual(['site-1', 'site-2', 'site-new']);
    const site = (await admin.sites()).sites.find((s) => s.siteId === 'site-new')!;
    expect(site.certificateFingerprint).toBe(approved.certificateFingerprint);
  }, 150_000);

  it('renews the running site certificate before expiry without stopping it', async () => {
    const dir = join(fed.dir, 'new-site');
    const agent = procs.at(-1)!;
    const renew = JSON.parse((await fedhpc(['site', 'renew', '--config', join(dir, 'site.json'), '--json'])).stdout) as { csrPath: string };
    expect(renew.csrPath).toBe(join(dir, 'site-renew.csr'));
    const before = (await admin.sites()).sites.find((s) => s.siteId === 'site-new')!.certificateFingerprint;
    const renewed = JSON.parse((await fedhpc([...approve('site-new', renew.csrPath), '--validity-days', '30'])).stdout) as { renewal: boolean; certificateFingerprint: string; config?: string };
    expect(renewed.renewal).toBe(true);
    expect(renewed.config).toBeUndefined();
    expect(renewed.certificateFingerprint).not.toBe(before);

    await waitFor('site-new presenting its renewed certificate', async () => {
      const s = (await admin.sites()).sites.find((x) => x.siteId === 'site-new');
      return s?.certificateFingerprint === renewed.certificateFingerprint && s.connected ? true : undefined;
    }, 60_000, 300).catch(async (err: Error) => expect.fail(`${err.message}\n${(await agent.logText()).split('\n').slice(-15).join('\n')}`));
    const committed = (await admin.rounds()).rounds.filter((r) => r.outcome === 'committed').length;
    await waitFor('another round with site-new', async () => (await admin.rounds()).rounds.find((r, i) => i >= committed && r.outcome === 'committed' && r.participants.includes('site-new')), 90_000, 300);
    expect(agent.child.exitCode).toBeNull();
    expect(await agent.logText()).toMatch(/site certificate renewed on disk: reconnecting with it/);
  }, 150_000);
});
