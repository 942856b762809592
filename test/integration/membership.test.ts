/**
 * Membership is explicit and refusals are visible (issue 14, items 4 and 6). A certificate the
 * federation CA signed for `site-99` — never listed in `members`, never approved — is refused at
 * `Join` and at `Tasks` with NOT_MEMBER, logged and counted, and the round commits with the members;
 * a client with a rogue CA's certificate makes `fedhpc_refused_total{reason="tls_handshake"}` and
 * the log line appear; `admin status --json` shows the recent counts; membership survives a restart
 * and `admin audit verify` still passes. A state dir from before membership is seeded from the
 * expected sites and its approvals (not from who merely joined), and a renewed certificate keeps its
 * site a member. Real processes (and an in-process coordinator for the old state dir) over mTLS.
 */
import * as grpc from '@grpc/grpc-js';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { Journal } from '../../coordinator/state/journal.js';
import { certificateKeys } from '../../coordinator/sites/revocation.js';
import { createCa, issueCertificate, loadCaFiles, renewalCsr, signSiteCsr } from '../../coordinator/pki/index.js';
import type { CoordinatorHandle } from '../../coordinator/index.js';
import {
  CLI,
  createTestFederation,
  freePort,
  startCli,
  startCoordinatorInProcess,
  startCoordinatorProcess,
  startSiteProcess,
  waitFor,
  waitForCommitted,
  type Proc,
  type TestFederation,
} from '../helpers/federation.js';
import { expectLogs } from '../helpers/logger.js';
import { RawSiteClient, refusal, siteCertFiles, type CertFiles } from '../helpers/raw-site.js';

const exec = promisify(execFile);

/** Writes a certificate and key under `fed.dir/<name>/`; returns files that trust the real coordinator. */
async function certFiles(fed: TestFederation, name: string, issued: { certPem: string; keyPem?: string }): Promise<CertFiles> {
  const dir = join(fed.dir, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'site.crt'), issued.certPem);
  await writeFile(join(dir, 'site.key'), issued.keyPem ?? '', { mode: 0o600 });
  return { ca: siteCertFiles(fed, 'site-1').ca, cert: join(dir, 'site.crt'), key: join(dir, 'site.key') };
}

/** A site certificate the federation's own CA signs for `site` (what whoever holds the CA key can make). */
async function caSigned(fed: TestFederation, site: string): Promise<CertFiles> {
  const ca = await loadCaFiles(join(fed.dir, 'ca'));
  return certFiles(fed, site, await issueCertificate({ ca, role: 'site', id: site, federation: 'testfed', validityDays: 1, now: new Date() }));
}

async function journalBodies(fed: TestFederation): Promise<Record<string, unknown>[]> {
  const text = await readFile(join(fed.member('coordinator'), 'state', 'journal.jsonl'), 'utf8');
  return text.trim().split('\n').map((l) => (JSON.parse(l) as { body: Record<string, unknown> }).body);
}

/** The JSON log lines of a process whose `msg` is `caller refused`. */
async function refusalLines(proc: Proc): Promise<Record<string, unknown>[]> {
  return (await proc.logText())
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l['msg'] === 'caller refused');
}

function refusedTotal(metrics: string, reason: string): number {
  const m = new RegExp(`^fedhpc_refused_total\\{[^}]*reason="${reason}"[^}]*\\} (\\d+)$`, 'm').exec(metrics);
  return m ? Number(m[1]) : NaN;
}

async function cli(args: string[]): Promise<string> {
  return (await exec(process.execPath, [CLI, ...args])).stdout;
}

describe('membership and visible refusals, real processes', () => {
  let fed: TestFederation;
  const procs: Proc[] = [];
  const clients: RawSiteClient[] = [];
  const raw = (files: CertFiles): RawSiteClient => {
    const c = new RawSiteClient({ address: fed.address, files, timeoutMs: 5_000 });
    clients.push(c);
    return c;
  };
  let metricsPort: number;
  let intruder: CertFiles;

  afterAll(async () => {
    for (const c of clients) c.close();
    for (const p of procs.reverse()) await p.stop();
    await fed?.cleanup();
  });

  it('refuses a CA-signed certificate of a non-member at Join and Tasks with NOT_MEMBER; the round commits with the members', async () => {
    fed = await createTestFederation({
      sites: 2,
      run: { rounds: 1, minSites: 2, evaluate: false, train: { steps: 5, batchSize: 16, lr: 0.01 }, secureAggregation: { enabled: false } },
    });
    metricsPort = await freePort();
    await fed.patchCoordinatorConfig((c) => ({ ...c, metrics: { port: metricsPort } }));
    expect(JSON.parse(await readFile(fed.files.coordinatorConfig, 'utf8'))).toMatchObject({ members: ['site-1', 'site-2'] });
    intruder = await caSigned(fed, 'site-99');
    procs.push(await startCoordinatorProcess(fed));
    const admin = fed.admin();
    await admin.waitForReady(Date.now() + 15_000);

    const client = raw(intruder);
    const joined = refusal(await client.join({ siteId: 'site-99' }));
    expect(joined).toMatchObject({ code: grpc.status.PERMISSION_DENIED, fedhpcCode: 'NOT_MEMBER' });
    expect(joined.details).toMatch(/^NOT_MEMBER: site site-99 is not a member of this federation/);
    const stream = client.openTasks();
    const ended = await waitFor('the task stream refused', () => stream.ended);
    expect(ended).not.toBe('end');
    expect((ended as grpc.ServiceError).code).toBe(grpc.status.PERMISSION_DENIED);
    expect((ended as grpc.ServiceError).metadata.get('fedhpc-error-code')).toEqual(['NOT_MEMBER']);

    // An agent holding that certificate is told so and gives up (a final verdict at Join).
    const site1 = JSON.parse(await readFile(fed.files.siteConfigs.get('site-1')!, 'utf8')) as Record<string, unknown>;
    const intruderConfig = join(fed.dir, 'site-99', 'site.json');
    await writeFile(intruderConfig, JSON.stringify({ ...site1, site: 'site-99', tls: intruder, workDir: join(fed.dir, 'site-99', 'work') }));
    const agent = await startCli('site-99', ['site', '--config', intruderConfig], fed.dir);
    expect(await Promise.race([agent.exited, new Promise((r) => setTimeout(() => r('still running'), 30_000))])).toBe(1);
    expect(await agent.logText()).toMatch(/REFUSED.*NOT_MEMBER: site site-99 is not a member/);

    for (const s of fed.sites) procs.push(await startSiteProcess(fed, s));
    const rounds = await waitForCommitted(admin, 1);
    expect(rounds.rounds.find((r) => r.outcome === 'committed')?.participants).toEqual(['site-1', 'site-2']);
    expect((await admin.sites()).sites.map((s) => s.siteId)).toEqual(['site-1', 'site-2']);

    const lines = await refusalLines(procs[0]!);
    expect(lines.find((l) => l['reason'] === 'not_member')).toMatchObject({
      level: 40,
      site: 'site-99',
      fingerprint: new X509Certificate(await readFile(intruder.cert)).fingerprint256,
      peer: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
    });
  }, 120_000);

  it("counts and logs a rogue CA's certificate refused at the TLS handshake, and `admin status --json` shows the recent counts", async () => {
    const now = new Date();
    const rogueCa = await createCa({ federation: 'testfed', validityDays: 1, now });
    const forged = await certFiles(fed, 'rogue', await issueCertificate({ ca: rogueCa, role: 'site', id: 'site-1', federation: 'testfed', validityDays: 1, now }));
    expect(refusal(await raw(forged).join({ siteId: 'site-1' })).code).toBe(grpc.status.UNAVAILABLE);

    const fingerprint = new X509Certificate(await readFile(forged.cert)).fingerprint256;
    const line = await waitFor('the refused handshake logged', async () => (await refusalLines(procs[0]!)).find((l) => l['fingerprint'] === fingerprint));
    expect(line).toMatchObject({ reason: 'tls_handshake', peer: expect.stringMatching(/^127\.0\.0\.1:\d+$/), cause: expect.stringMatching(/^UNABLE_TO_/) });
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(refusedTotal(metrics, 'tls_handshake')).toBeGreaterThanOrEqual(1);
    expect(refusedTotal(metrics, 'not_member')).toBeGreaterThanOrEqual(3);
    expect(refusedTotal(metrics, 'revoked')).toBe(0);

    const config = fed.files.adminConfigs.get('admin')!;
    const status = JSON.parse(await cli(['admin', 'status', '--config', config, '--json'])) as { sitesMembers: number; refusalsWindowS: number; recentRefusals: { reason: string; count: string }[] };
    expect(status.sitesMembers).toBe(2);
    expect(status.refusalsWindowS).toBe(3600);
    const recent = Object.fromEntries(status.recentRefusals.map((r) => [r.reason, Number(r.count)]));
    expect(recent['tls_handshake']).toBeGreaterThanOrEqual(1);
    expect(recent['not_member']).toBeGreaterThanOrEqual(3);
    expect(recent['revoked']).toBe(0);
    expect(await cli(['admin', 'status', '--config', config])).toMatch(/refused\s+\d+ tls_handshake, \d+ not_member in the last 60 min/);
  }, 60_000);

  it('keeps membership across a restart, seeded once, and the audit trail verifies', async () => {
    await procs[0]!.stop();
    procs[0] = await startCoordinatorProcess(fed, 'coordinator-2');
    const admin = fed.admin();
    await admin.waitForReady(Date.now() + 15_000);
    expect(refusal(await raw(intruder).join({ siteId: 'site-99' })).fedhpcCode).toBe('NOT_MEMBER');
    expect((await raw(siteCertFiles(fed, 'site-1')).join({ siteId: 'site-1' })).ok).toBe(true);

    const membership = (await journalBodies(fed)).filter((b) => b['type'] === 'membership-seeded' || b['type'] === 'member-added');
    expect(membership).toEqual([{ type: 'membership-seeded', sites: ['site-1', 'site-2'], fromMembers: ['site-1', 'site-2'], fromExpectedSites: ['site-1', 'site-2'], fromApprovals: [] }]);
    const verified = JSON.parse(await cli(['admin', 'audit', 'verify', '--state-dir', join(fed.member('coordinator'), 'state'), '--ca', join(fed.dir, 'ca', 'ca.crt'), '--json'])) as { ok: boolean };
    expect(verified.ok).toBe(true);
  }, 60_000);
});

describe('a state dir from before membership', () => {
  let fed: TestFederation;
  let coordinator: CoordinatorHandle | undefined;
  const clients: RawSiteClient[] = [];
  afterAll(async () => {
    for (const c of clients) c.close();
    await coordinator?.stop();
    await fed?.cleanup();
  });

  it('is seeded from the expected sites and its approvals, not from who joined; a renewed certificate keeps its site a member', async () => {
    // site-2 was enrolled by an admin and site-99 joined under the old code; the run expects site-1.
    fed = await createTestFederation({ sites: 2, run: { rounds: 1, minSites: 1, expectedSites: ['site-1'], deadlines: { openS: 600 } } });
    await fed.patchCoordinatorConfig(({ members: _members, ...c }) => c);
    const site2 = siteCertFiles(fed, 'site-2');
    const keys = certificateKeys(await readFile(site2.cert));
    const intruder = await caSigned(fed, 'site-99');
    const journal = await Journal.open(join(fed.member('coordinator'), 'state', 'journal.jsonl'));
    await journal.append({ type: 'site-approved', site: 'site-2', fingerprint: keys.fingerprint, keySha256: keys.keySha256, notAfterMs: keys.notAfterMs, renewal: false, admin: 'admin' });
    await journal.append({ type: 'site-joined', site: 'site-99', fingerprint: new X509Certificate(await readFile(intruder.cert)).fingerprint256, agentVersion: 'old' });
    await journal.close();

    coordinator = await startCoordinatorInProcess(fed);
    const raw = (files: CertFiles): RawSiteClient => {
      const c = new RawSiteClient({ address: fed.address, files, timeoutMs: 5_000 });
      clients.push(c);
      return c;
    };
    expect((await journalBodies(fed)).find((b) => b['type'] === 'membership-seeded')).toEqual({
      type: 'membership-seeded',
      sites: ['site-1', 'site-2'],
      fromMembers: [],
      fromExpectedSites: ['site-1'],
      fromApprovals: ['site-2'],
    });
    expectLogs(/^caller refused$/);
    expect(refusal(await raw(intruder).join({ siteId: 'site-99' })).fedhpcCode).toBe('NOT_MEMBER');
    expect((await raw(site2).join({ siteId: 'site-2' })).ok).toBe(true);

    // site-2 renews (same key) and is still a member, also after a restart.
    const ca = await loadCaFiles(join(fed.dir, 'ca'));
    const csrPem = await renewalCsr({ certPem: await readFile(site2.cert, 'utf8'), keyPem: await readFile(site2.key, 'utf8') });
    const renewedPem = await signSiteCsr({ ca, csrPem, site: 'site-2', validityDays: 30, now: new Date() });
    const approved = await fed.admin().approveSite('site-2', renewedPem);
    expect(approved.renewal).toBe(true);
    const renewed = await certFiles(fed, 'site-2-renewed', { certPem: renewedPem, keyPem: await readFile(site2.key, 'utf8') });
    await coordinator.stop();
    coordinator = await startCoordinatorInProcess(fed);
    expect((await raw(renewed).join({ siteId: 'site-2' })).ok).toBe(true);
    expect(refusal(await raw(intruder).join({ siteId: 'site-99' })).fedhpcCode).toBe('NOT_MEMBER');
    const bodies = await journalBodies(fed);
    expect(bodies.filter((b) => b['type'] === 'membership-seeded')).toHaveLength(1);
    expect(bodies.filter((b) => b['type'] === 'member-added')).toEqual([]);
  }, 60_000);
});
