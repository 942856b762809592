import { X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { coordinatorConfigSchema } from '../../../coordinator/config.js';
import { createCa, issueCertificate } from '../../../coordinator/pki/index.js';
import { cookieValue } from '../../../coordinator/dashboard/auth.js';
import { dashboardSchema, isLoopbackHost } from '../../../coordinator/dashboard/options.js';
import { checkDashboardToken, createDashboardToken } from '../../../coordinator/dashboard/token.js';

const NOW = Date.parse('2026-12-01T12:00:00Z');
const HOUR = 3600_000;
type Pair = { certPem: string; keyPem: string };
let ca: Pair;
let admin: Pair;
let site: Pair;
let otherAdmin: Pair;

beforeAll(async () => {
  const now = new Date(NOW - HOUR);
  ca = await createCa({ federation: 'fed', validityDays: 10, now });
  const issue = async (issuer: Pair, role: 'admin' | 'site', id: string): Promise<Pair> => {
    const c = await issueCertificate({ ca: issuer, role, id, federation: 'fed', validityDays: 5, now });
    return { certPem: c.certPem, keyPem: c.keyPem! };
  };
  admin = await issue(ca, 'admin', 'alice');
  site = await issue(ca, 'site', 'site-1');
  otherAdmin = await issue(await createCa({ federation: 'fed', validityDays: 10, now }), 'admin', 'mallory');
});

const check = (token: string, now = NOW) => checkDashboardToken(token, { ca: new X509Certificate(ca.certPem), federation: 'fed', maxLifetimeMs: 24 * HOUR, now });
const codeOf = (token: string, now = NOW) => {
  const r = check(token, now);
  return r.ok ? 'ok' : r.code;
};

describe('dashboard tokens', () => {
  it("accepts a token signed by an admin of the federation CA and names the admin", () => {
    const t = createDashboardToken({ ...admin, validMs: HOUR, now: NOW });
    const r = check(t.token);
    expect(r.ok && r.value).toMatchObject({ admin: 'alice', federation: 'fed', expiresMs: NOW + HOUR });
  });

  it('refuses an expired token with TOKEN_EXPIRED', () => {
    const t = createDashboardToken({ ...admin, validMs: HOUR, now: NOW - 2 * HOUR });
    expect(codeOf(t.token)).toBe('TOKEN_EXPIRED');
  });

  it('refuses a token that lives longer than the dashboard allows with TOKEN_TOO_LONG', () => {
    expect(codeOf(createDashboardToken({ ...admin, validMs: 25 * HOUR, now: NOW }).token)).toBe('TOKEN_TOO_LONG');
  });

  it("refuses an admin certificate of another CA with TOKEN_UNTRUSTED", () => {
    expect(codeOf(createDashboardToken({ ...otherAdmin, validMs: HOUR, now: NOW }).token)).toBe('TOKEN_UNTRUSTED');
  });

  it('refuses to make a token from a site certificate', () => {
    expect(() => createDashboardToken({ ...site, validMs: HOUR, now: NOW })).toThrow(/admin certificate/);
  });

  it('refuses a token whose payload was changed with TOKEN_BAD_SIGNATURE', () => {
    const [prefix, body, sig] = createDashboardToken({ ...admin, validMs: HOUR, now: NOW }).token.split('.');
    const payload = JSON.parse(Buffer.from(body!, 'base64url').toString('utf8')) as Record<string, unknown>;
    const forged = Buffer.from(JSON.stringify({ ...payload, expiresMs: NOW + 2 * HOUR })).toString('base64url');
    expect(codeOf(`${prefix}.${forged}.${sig}`)).toBe('TOKEN_BAD_SIGNATURE');
  });

  it('refuses text that is no token with TOKEN_MALFORMED', () => {
    for (const t of ['', 'fhd1.x', 'fhd1.!!!.x', `fhd1.${Buffer.from('{"a":1}').toString('base64url')}.x`, 'x'.repeat(10_000)]) expect(codeOf(t)).toBe('TOKEN_MALFORMED');
  });
});

describe('dashboard config and cookies', () => {
  const base = { federation: 'fed', listen: '127.0.0.1:7443', tls: { ca: 'a', cert: 'b', key: 'c' }, stateDir: 's', model: { initial: 'm' } };

  it('is off by default and binds 127.0.0.1:8480 when turned on with {}', () => {
    expect(coordinatorConfigSchema.parse(base).dashboard).toBeUndefined();
    expect(coordinatorConfigSchema.parse({ ...base, dashboard: {} }).dashboard).toMatchObject({ listen: '127.0.0.1:8480', tls: false });
  });

  it('refuses a non-loopback address without TLS, naming the fix', () => {
    const r = dashboardSchema.safeParse({ listen: '0.0.0.0:8480' });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.message).toMatch(/not a loopback address.*dashboard\.tls/);
    expect(dashboardSchema.safeParse({ listen: '0.0.0.0:8480', tls: true }).success).toBe(true);
  });

  it('knows loopback hosts', () => {
    expect(['localhost', '127.0.0.1', '127.1.2.3', '::1', '[::1]'].every(isLoopbackHost)).toBe(true);
    expect(['0.0.0.0', '10.0.0.1', '::', 'example.org', 'localhost.example.org'].some(isLoopbackHost)).toBe(false);
  });

  it('reads a cookie among others', () => {
    expect(cookieValue('a=1; fedhpc_dashboard=xyz; b=2', 'fedhpc_dashboard')).toBe('xyz');
    expect(cookieValue('fedhpc_dashboardx=1', 'fedhpc_dashboard')).toBeUndefined();
  });
});
