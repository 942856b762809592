/**
 * The dashboard on plain HTTP, as `fedhpc simulate` and a coordinator bound to loopback serve it:
 * a token from the `fedhpc admin dashboard-token` command (the built CLI) exchanged for a cookie
 * without `Secure`, the views of an idle coordinator, the live stream, names other than loopback
 * refused, and sign-out. No browser: the browser test is dashboard-browser.test.ts.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CoordinatorHandle } from '../../coordinator/index.js';
import { checkDashboardToken } from '../../coordinator/dashboard/token.js';
import { CLI, createTestFederation, freePort, startCoordinatorInProcess, type TestFederation } from '../helpers/federation.js';

const run = promisify(execFile);

describe('the dashboard over HTTP on loopback', () => {
  let fed: TestFederation;
  let coordinator: CoordinatorHandle;
  let url: string;
  let adminConfig: string;

  beforeAll(async () => {
    fed = await createTestFederation({ sites: 2 });
    const port = await freePort();
    // No run: the coordinator idles, and the pages say so.
    await fed.patchCoordinatorConfig(({ run: _run, ...c }) => ({ ...c, dashboard: { listen: `127.0.0.1:${port}` } }));
    coordinator = await startCoordinatorInProcess(fed, { expectLogs: [/dashboard token refused/] });
    url = coordinator.dashboard!.url;
    adminConfig = fed.files.adminConfigs.get('admin')!;
  });

  afterAll(async () => {
    await coordinator?.stop();
    await fed?.cleanup();
  });

  const token = async (...extra: string[]): Promise<{ token: string; loginUrl?: string; expiresAt: string; admin: string }> => {
    const { stdout } = await run(process.execPath, [CLI, 'admin', 'dashboard-token', '--config', adminConfig, '--json', ...extra]);
    return JSON.parse(stdout) as { token: string; loginUrl?: string; expiresAt: string; admin: string };
  };
  const exchange = (t: string, headers: Record<string, string> = {}) =>
    fetch(`${url}/api/session`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ token: t }) });

  it('prints a token signed by the admin, valid for the minutes asked, with a sign-in link', async () => {
    const before = Date.now();
    const t = await token('--valid-minutes', '5', '--url', url);
    const after = Date.now();
    expect(t.loginUrl).toBe(`${url}/login#token=${t.token}`);
    // Five minutes from when the CLI signed it, which lies between `before` and `after` (a CLI start
    // on a loaded machine took over a second, more than a fixed margin allowed).
    expect(Date.parse(t.expiresAt) - before).toBeGreaterThan(4 * 60_000);
    expect(Date.parse(t.expiresAt)).toBeLessThanOrEqual(after + 5 * 60_000);
    const ca = new X509Certificate(await readFile(join(fed.member('admins', 'admin'), 'ca.crt')));
    const checked = checkDashboardToken(t.token, { ca, federation: 'testfed', maxLifetimeMs: 3600_000, now: Date.now() });
    expect(checked.ok && checked.value.admin).toBe('admin');
  });

  it('refuses --valid-minutes out of range with exit code 2', async () => {
    await expect(run(process.execPath, [CLI, 'admin', 'dashboard-token', '--config', adminConfig, '--valid-minutes', '0'])).rejects.toMatchObject({ code: 2 });
  });

  it('exchanges a token once for an HttpOnly SameSite=Strict cookie and serves the views with it', async () => {
    const t = await token();
    // A cross-site form (another Origin, or not JSON) cannot exchange it.
    expect((await exchange(t.token, { origin: 'http://evil.example' })).status).toBe(403);
    const res = await exchange(t.token);
    expect(res.status).toBe(200);
    const cookie = res.headers.get('set-cookie')!;
    expect(cookie).toMatch(/^fedhpc_dashboard=[\w-]+; Path=\/; Max-Age=\d+; HttpOnly; SameSite=Strict$/);
    expect((await exchange(t.token)).status).toBe(401);
    const headers = { cookie: cookie.split(';')[0]! };

    const overview = (await (await fetch(`${url}/api/overview`, { headers })).json()) as { run: unknown; role: { kind: string }; federation: string };
    expect(overview).toMatchObject({ run: null, role: { kind: 'leader' }, federation: 'testfed' });
    const sites = (await (await fetch(`${url}/api/sites`, { headers })).json()) as { sites: { id: string; state: string; usage: unknown }[] };
    expect(sites.sites).toEqual([expect.objectContaining({ id: 'site-1', state: 'never joined', usage: null }), expect.objectContaining({ id: 'site-2', state: 'never joined' })]);
    const audit = (await (await fetch(`${url}/api/audit`, { headers })).json()) as { ok: boolean; caChecked: boolean };
    expect(audit).toMatchObject({ ok: true, caChecked: true });

    const page = await fetch(`${url}/sites`, { headers });
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(await page.text()).not.toMatch(/<script>|https?:\/\/(?!127\.0\.0\.1)/);

    // The live stream carries the bus's events as server-sent events.
    const events = await fetch(`${url}/api/events`, { headers });
    expect([events.status, events.headers.get('content-type')]).toEqual([200, 'text/event-stream; charset=utf-8']);
    const reader = events.body!.getReader();
    const decoder = new TextDecoder();
    let received = '';
    const readUntil = async (done: (text: string) => boolean): Promise<boolean> => {
      while (!done(received)) {
        const chunk = await reader.read();
        if (chunk.done) return false;
        received += decoder.decode(chunk.value);
      }
      return true;
    };
    coordinator.bus.emit('site.left', { site: 'site-1' });
    expect(await readUntil((t) => t.includes('event: site.left\ndata: {"ts":'))).toBe(true);

    // Signed out: the same cookie no longer opens anything, and the open stream ends at its next event.
    expect((await fetch(`${url}/api/logout`, { method: 'POST', headers })).status).toBe(204);
    expect((await fetch(`${url}/api/overview`, { headers })).status).toBe(401);
    coordinator.bus.emit('site.left', { site: 'site-2' });
    expect(await readUntil(() => false)).toBe(false);
    expect(received).not.toContain('site-2');
  });

  it('answers only to loopback names (no DNS rebinding)', async () => {
    const { request } = await import('node:http');
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${url}/login`, { headers: { host: 'attacker.example:80' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(421);
  });
});
