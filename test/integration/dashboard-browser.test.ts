/**
 * The web dashboard (issue 21) in a real headless browser: Debian's chromium driven by
 * puppeteer-core (nothing downloaded), against one federation shared by every case — an in-process
 * coordinator with its dashboard over HTTPS, two real site agents (processes of the built CLI; one
 * uploads slowly so a transfer can be seen), and a raw site whose agent version and failure message
 * are HTML. The browser signs in with a token, watches a round commit without reloading, reads
 * every page, and never asks anything of a host other than this machine. With
 * FEDHPC_DASHBOARD_SCREENSHOTS=1 it writes docs/dashboard/*.png.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import * as https from 'node:https';
import { join } from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CoordinatorHandle } from '../../coordinator/index.js';
import { createCa, issueCertificate } from '../../coordinator/pki/index.js';
import { createDashboardToken } from '../../coordinator/dashboard/token.js';
import { startDashboard } from '../../coordinator/dashboard/server.js';
import { skipUnless } from '../helpers/components.js';
import { createTestFederation, freePort, startCoordinatorInProcess, startSiteProcess, waitFor, waitForCommitted, type Proc, type TestFederation } from '../helpers/federation.js';
import { RawSiteClient, adminCertFiles, siteCertFiles } from '../helpers/raw-site.js';
import { testLogger } from '../helpers/logger.js';

const CHROMIUM = '/usr/bin/chromium';
const skip = skipUnless('chromium', existsSync(CHROMIUM) ? undefined : `no ${CHROMIUM} (apt-get install chromium)`);
const SCREENSHOTS = process.env['FEDHPC_DASHBOARD_SCREENSHOTS'] === '1' ? 'docs/dashboard' : undefined;
const ROUNDS = 4;
/** What the raw site sends as its agent version and failure message: markup that must stay text. */
const HTML_VERSION = '<img src=x onerror=window.__xss=1><script>__xss=2</script>';
const HTML_FAILURE = '<script>window.__xss=3</script><b>not bold</b> & "quoted" <img src=x onerror=window.__xss=4>';

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

/** One HTTPS request to the dashboard, with a client certificate or a cookie or neither. */
function request(url: string, o: { method?: string; cert?: { cert: string; key: string }; cookie?: string; json?: unknown; ca: string }): Promise<Answer> {
  const body = o.json === undefined ? undefined : JSON.stringify(o.json);
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method: o.method ?? 'GET',
        ca: o.ca,
        ...(o.cert ?? {}),
        headers: { ...(o.cookie ? { cookie: o.cookie } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
        timeout: 10_000,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe.skipIf(skip)('the web dashboard in a browser', () => {
  let fed: TestFederation;
  let coordinator: CoordinatorHandle;
  let url: string;
  let ca: string;
  let browser: Browser;
  let page: Page;
  let raw: RawSiteClient | undefined;
  const agents: Proc[] = [];
  /** The page's console and failed requests, for a failure's message. */
  const browserLog: string[] = [];
  /** Requests the browser tried to send anywhere but this machine. */
  const offsite: string[] = [];
  /** When set, the sites view the browser gets is this body instead of the coordinator's. */
  let forgedSites: string | undefined;

  const shoot = async (name: string): Promise<void> => {
    if (SCREENSHOTS) await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
  };
  /** Navigates inside the app (no reload) and waits for the page's next render. */
  const open = async (path: string): Promise<void> => {
    const before = Number(await page.evaluate(() => document.body.dataset['renders'] ?? '0'));
    await page.click(`nav a[data-page="${path}"]`);
    await page.waitForFunction((p, n) => document.body.dataset['page'] === p && Number(document.body.dataset['renders']) > n, { timeout: 30_000 }, path, before);
  };
  const text = (selector: string): Promise<string> => page.$eval(selector, (el) => el.textContent ?? '');

  beforeAll(async () => {
    fed = await createTestFederation({ sites: 3, run: { rounds: ROUNDS, minSites: 2, expectedSites: ['site-1', 'site-2'] } });
    const dashboardPort = await freePort();
    // An aggregator shard the config names but that never attaches: the run page lists it, detached.
    await fed.patchCoordinatorConfig((c) => ({ ...c, dashboard: { listen: `127.0.0.1:${dashboardPort}`, tls: true }, aggregators: [{ name: 'shard-a', endpoint: 'localhost:7450' }] }));
    // One slow uploader: its transfers last long enough to be seen on the transfers page, and each
    // round waits some 8 s for its ~80 KB delta, so the run is still running well after round 1
    // commits (at 20 KB/s the run's remaining rounds took some 16 s, which a loaded machine's
    // browser could spend before the run page was read).
    await fed.patchSiteConfig('site-2', (c) => ({ ...c, transfer: { uploadRateBytesPerS: 10_000, chunkBytes: 8192 } }));
    coordinator = await startCoordinatorInProcess(fed, {
      expectLogs: [/dashboard token refused/, /dropped|failed|left|disconnect|aborted/i],
    });
    url = coordinator.dashboard!.url;
    ca = await readFile(join(fed.member('admins', 'admin'), 'ca.crt'), 'utf8');
    if (SCREENSHOTS) mkdirSync(SCREENSHOTS, { recursive: true });
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      // The federation CA is not the browser's: its certificate errors are accepted, the rest is real.
      acceptInsecureCerts: true,
      args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--disable-background-networking', '--disable-component-update'],
    });
    page = await browser.newPage();
    await page.setViewport({ width: 1440, height: 900 });
    await page.setRequestInterception(true);
    page.on('console', (m) => browserLog.push(`${m.type()}: ${m.text()}`));
    page.on('requestfailed', (r) => browserLog.push(`failed ${r.method()} ${new URL(r.url()).pathname}: ${r.failure()?.errorText ?? ''}`));
    page.on('request', (req) => {
      const u = new URL(req.url());
      if (u.protocol !== 'data:' && u.hostname !== '127.0.0.1' && u.hostname !== 'localhost') {
        offsite.push(req.url());
        void req.abort();
      } else if (forgedSites !== undefined && u.pathname === '/api/sites') {
        void req.respond({ status: 200, contentType: 'application/json', body: forgedSites });
      } else {
        void req.continue();
      }
    });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    raw?.close();
    for (const a of agents) await a.stop();
    await coordinator?.stop();
    await fed?.cleanup();
  }, 60_000);

  it('refuses an unauthenticated request, a wrong certificate, a site certificate and an expired token', async () => {
    expect((await request(`${url}/api/overview`, { ca })).status).toBe(401);
    const page0 = await request(`${url}/rounds`, { ca });
    expect([page0.status, page0.headers['location']]).toEqual([303, '/login']);
    const events = await request(`${url}/api/events`, { ca });
    expect(events.status).toBe(401);

    const other = await createCa({ federation: 'testfed', validityDays: 2, now: new Date() });
    const forged = await issueCertificate({ ca: other, role: 'admin', id: 'admin', federation: 'testfed', validityDays: 1, now: new Date() });
    const wrong = await request(`${url}/api/overview`, { ca, cert: { cert: forged.certPem, key: forged.keyPem! } });
    expect([wrong.status, JSON.parse(wrong.body).error]).toEqual([403, 'CERTIFICATE_REFUSED']);

    const s = siteCertFiles(fed, 'site-1');
    const site = await request(`${url}/api/overview`, { ca, cert: { cert: await readFile(s.cert, 'utf8'), key: await readFile(s.key, 'utf8') } });
    expect([site.status, JSON.parse(site.body).error]).toEqual([403, 'NOT_ADMIN']);

    const a = adminCertFiles(fed);
    const admin = { cert: await readFile(a.cert, 'utf8'), key: await readFile(a.key, 'utf8') };
    const byCert = await request(`${url}/api/overview`, { ca, cert: admin });
    expect([byCert.status, byCert.headers['x-fedhpc-admin']]).toEqual([200, 'admin']);
    expect(byCert.headers['content-security-policy']).toMatch(/script-src 'self'/);

    const expired = createDashboardToken({ certPem: admin.cert, keyPem: admin.key, validMs: 3600_000, now: Date.now() - 2 * 3600_000 });
    const refused = await request(`${url}/api/session`, { method: 'POST', ca, json: { token: expired.token } });
    expect([refused.status, JSON.parse(refused.body).error]).toEqual([401, 'TOKEN_EXPIRED']);
    expect(refused.headers['set-cookie']).toBeUndefined();

    // Read-only: nothing but the token exchange takes a POST.
    expect((await request(`${url}/api/overview`, { method: 'POST', ca, cert: admin })).status).toBe(405);
  });

  it('refuses to serve a non-loopback address without TLS', async () => {
    const options = { config: { listen: '0.0.0.0:0', tls: false, maxTokenLifetimeS: 3600, maxSessions: 1, maxEventStreams: 1 }, bus: coordinator.bus, logger: testLogger().logger };
    await expect(startDashboard({ ...options, tls: { ca: Buffer.from(ca), cert: Buffer.from(''), key: Buffer.from('') }, sources: {} as never })).rejects.toThrow(/not a loopback address/);
  });

  it('signs in with a token once and shows a round committing without a reload', async () => {
    const a = adminCertFiles(fed);
    const token = createDashboardToken({ certPem: await readFile(a.cert, 'utf8'), keyPem: await readFile(a.key, 'utf8'), validMs: 3600_000 }).token;
    await page.goto(`${url}/login#token=${token}`);
    // Generous: on a loaded two-core machine chromium takes its time to start its renderers.
    await page.waitForFunction(() => document.body?.dataset['page'] === '/', { timeout: 60_000 }).catch(async (err: unknown) => {
      // Seen only on loaded CI dry runs, never reproduced: say where the page was and what it showed.
      const seen = await page.evaluate(() => document.documentElement.outerHTML.slice(0, 600)).catch((e: unknown) => `(no document: ${String(e)})`);
      throw new Error(`${(err as Error).message}; the page is at ${page.url()} showing ${seen}; browser log: ${browserLog.slice(-10).join(' | ')}`, { cause: err });
    });
    const cookie = (await page.cookies()).find((c) => c.name === 'fedhpc_dashboard');
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict', secure: true });
    expect(await page.evaluate(() => document.cookie)).toBe('');
    // The same token a second time is refused.
    const again = await request(`${url}/api/session`, { method: 'POST', ca, json: { token } });
    expect(JSON.parse(again.body).error).toBe('TOKEN_USED');

    await open('/rounds');
    expect(await page.$$('#rounds-table tbody tr')).toHaveLength(0);
    await page.evaluate(() => Reflect.set(window, '__sameDocument', true));

    // The raw site joins first (so round 1 invites it), fails with markup, and leaves.
    const rawSite = await joinedRawSiteWithVersion(fed, HTML_VERSION);
    raw = rawSite.client;
    agents.push(await startSiteProcess(fed, 'site-1'), await startSiteProcess(fed, 'site-2'));
    const task = await waitFor('a task of round 1 for the raw site', () => rawSite.tasks.tasks.map((t) => roundOf(t)).find((x) => x !== undefined), 60_000);
    await new Promise<void>((resolve, reject) =>
      rawSite.client.client.ReportFailure({ round: task.round, attempt: task.attempt, code: 'TRAINING_FAILED', message: HTML_FAILURE }, (err) => (err ? reject(err) : resolve())),
    );
    rawSite.tasks.close();

    await page.waitForSelector('#rounds-table tbody tr .state.committed', { timeout: 90_000 });
    expect(await page.evaluate(() => Reflect.get(window, '__sameDocument'))).toBe(true);
  }, 150_000);

  it('shows a transfer in progress with a progress bar', async () => {
    // The run page mid-round, first (a transfer can outlast the run: the final model's download for
    // its evaluation): phase, deadline countdown, the attempt's sites.
    await open('/');
    expect(await text('#run-state')).toBe('running');
    await shoot('run');
    await open('/transfers');
    await page.waitForSelector('#transfers .transfer .bar', { timeout: 60_000 });
    expect(await text('#transfers .transfer')).toMatch(/site-\d (uploads|downloads)/);
    await shoot('transfers');
  }, 90_000);

  it('renders every page with the run’s data once it has finished', async () => {
    await waitForCommitted(fed.admin(), ROUNDS, 120_000);
    await waitFor('the run to finish', async () => ((await fed.admin().status()).runState === 'finished' ? true : undefined), 60_000);
    await waitFor('the final model evaluated', async () => ((await fed.admin().rounds()).rounds.find((r) => Number(r.round) === ROUNDS)?.hasEval ? true : undefined), 60_000);

    await open('/');
    expect(await text('#run-id')).toBe('test-run');
    expect(await text('#run-state')).toBe('finished');
    expect(await text('#strategy')).toBe('diloco');
    expect(await text('#secure-state')).toMatch(/^on/);
    expect(await text('#run-rounds')).toContain(`${ROUNDS} of ${ROUNDS} committed`);
    const shards = await page.$$eval('#shards tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent ?? '')));
    // shard, state, part, free bytes, parts received, model parts sent, problem
    expect(shards).toEqual([['0 shard-a (localhost:7450)', 'detached', expect.stringMatching(/^\[0, \d+\)$/), '-', '-', '-', '']]);

    await open('/rounds');
    await page.waitForFunction((n) => document.querySelectorAll('#rounds-table .state.committed').length >= n, { timeout: 30_000 }, ROUNDS);
    expect(await page.$('#loss-chart canvas')).not.toBeNull();
    const legend = await page.$$eval('#loss-chart .u-legend .u-series', (els) => els.map((e) => e.textContent ?? ''));
    expect(legend.join(' ')).toMatch(/global eval.*site-1.*site-2.*baseline/);
    expect((await page.$$('#timings tbody tr')).length).toBeGreaterThanOrEqual(ROUNDS);
    await shoot('rounds');

    await open('/sites');
    const rows = await page.$$eval('#sites-table tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent ?? '')));
    const site1 = rows.find((r) => r[0] === 'site-1')!;
    expect(site1[1]).toBe('connected');
    expect(site1[10]).toMatch(/^\d{4}-\d\d-\d\d \(\d+ d\)$/);
    // The builtin trainer declares its CPU rounds as wall-clock × 0 GPUs: a known zero, not "not reported".
    expect(site1[11]).toMatch(/^0\.000 GPU-h/);
    const site3 = rows.find((r) => r[0] === 'site-3')!;
    // Markup from the network is text: shown as sent, never run or parsed.
    expect(site3[3]).toBe(HTML_VERSION);
    expect(site3[9]).toContain(`TRAINING_FAILED ${HTML_FAILURE}`);
    expect(await page.$$('#sites-table img, #sites-table script, #sites-table b')).toHaveLength(0);
    expect(await page.evaluate(() => Reflect.get(window, '__xss'))).toBeUndefined();
    await shoot('sites');

    await open('/audit');
    expect(await text('#audit-state')).toBe('verified');
    expect(await text('#audit-head')).toMatch(/^[0-9a-f]{64}$/);
    expect((await page.$$('#receipts-table tbody tr')).length).toBe(ROUNDS);
    await shoot('audit');
  }, 240_000);

  it('renders a site name full of markup as text', async () => {
    const evil = '<img src=x onerror=window.__xss=5><script>window.__xss=6</script>';
    forgedSites = JSON.stringify({
      nowMs: Date.now(),
      sites: [{ id: evil, state: evil, activity: evil, progress: -1, agentVersion: evil, lastHeartbeatMs: Date.now(), bytesUp: 1, bytesDown: 1, roundsContributed: 1, busyFraction: null, certificate: { fingerprint: evil, notAfterMs: null }, failures: { total: 1, recent: [{ ts: 1, runId: evil, round: 1, attempt: 0, code: evil, message: evil }] }, usage: { rounds: 3, allocatedGpuHours: 1.5, trainingGpuHours: 1.2, roundsUnknown: 1, unknownReason: evil, roundsWithoutReceipt: 1, sources: [evil] } }],
    });
    try {
      await open('/rounds');
      await open('/sites');
      expect(await text('#sites-table tbody td:first-child')).toBe(evil);
      expect(await text('#sites-table tbody td:last-child')).toBe('1.500 GPU-h, 80% training · 1 round unknown · 1 awaiting receipt');
      expect(await page.$$('#sites-table img, #sites-table script')).toHaveLength(0);
      expect(await page.evaluate(() => Reflect.get(window, '__xss'))).toBeUndefined();
    } finally {
      forgedSites = undefined;
    }
  });

  it('sent no request off this machine', () => {
    expect(offsite).toEqual([]);
  });
});

/** The round and attempt a task belongs to (keys, shares, train …), if it names one. */
function roundOf(task: object): { round: number; attempt: number } | undefined {
  for (const v of Object.values(task)) {
    if (v && typeof v === 'object' && 'round' in v && 'attempt' in v) return { round: Number((v as { round: unknown }).round), attempt: Number((v as { attempt: unknown }).attempt) };
  }
  return undefined;
}

/** Raw site-3 joined with `agentVersion`, holding its task stream. */
async function joinedRawSiteWithVersion(fed: TestFederation, agentVersion: string) {
  const client = new RawSiteClient({ address: fed.address, files: siteCertFiles(fed, 'site-3') });
  const joined = await client.join({ siteId: 'site-3', agentVersion });
  if (!joined.ok) throw new Error(`raw site-3 could not join: ${joined.error.details}`);
  return { client, tasks: client.openTasks() };
}
