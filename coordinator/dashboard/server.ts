/**
 * The dashboard's web server (issue 21): read-only pages of the run, rounds, sites, transfers and
 * audit chain, their JSON, and the live event stream, for admins only (auth.ts). Plain HTTP on a
 * loopback address, or HTTPS with the coordinator's certificate (asking for admin client
 * certificates) anywhere. Every asset is a file of this package read at start (static/, and uPlot
 * from the build: scripts/copy-assets.mjs); pages load nothing from elsewhere, and a strict
 * Content-Security-Policy says so to the browser.
 */
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { once } from 'node:events';
import * as http from 'node:http';
import * as https from 'node:https';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../../common/logger.js';
import type { TlsMaterial } from '../../common/tls.js';
import type { EventBus } from '../observe/events.js';
import { createIdentityResolver } from '../pki/index.js';
import { DashboardAuth } from './auth.js';
import { hostOf, isLoopbackHost, type ResolvedDashboard } from './options.js';
import { EventStreams } from './sse.js';
import { AuditCache, overviewView, roundsView, sitesView, transfersView, type DashboardSources } from './views.js';

/** The browser may load and connect to this origin only; no inline script, no frames, no forms elsewhere. */
export const CONTENT_SECURITY_POLICY =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'none'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const COMMON_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy': CONTENT_SECURITY_POLICY,
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

/** The pages (client-side routes): each serves the app shell. */
export const DASHBOARD_PAGES = ['/', '/rounds', '/sites', '/transfers', '/audit'] as const;

/** Largest request body read (a token exchange). */
const MAX_BODY_BYTES = 16 * 1024;

export interface DashboardServerOptions {
  readonly config: ResolvedDashboard;
  /** The coordinator's TLS material: its certificate and key for HTTPS, the CA for client certificates and tokens. */
  readonly tls: TlsMaterial;
  readonly sources: DashboardSources;
  readonly bus: EventBus;
  readonly logger: Logger;
}

/** A listening dashboard. */
export interface DashboardEndpoint {
  /** `http(s)://host:port`, as a browser on this machine reaches it. */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

interface Asset {
  readonly body: Buffer;
  readonly type: string;
}

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

/** Every asset, read once: static/ beside this file, and uPlot (copied at build, else from node_modules). */
function loadAssets(): Map<string, Asset> {
  const dir = fileURLToPath(new URL('./static/', import.meta.url));
  const require = createRequire(import.meta.url);
  const vendor = (name: string, fromPackage: string): string => (existsSync(`${dir}vendor/${name}`) ? `${dir}vendor/${name}` : require.resolve(fromPackage));
  const files: Record<string, string> = {
    '/static/app.js': `${dir}app.js`,
    '/static/dom.js': `${dir}dom.js`,
    '/static/login.js': `${dir}login.js`,
    '/static/style.css': `${dir}style.css`,
    '/static/vendor/uPlot.iife.min.js': vendor('uPlot.iife.min.js', 'uplot/dist/uPlot.iife.min.js'),
    '/static/vendor/uPlot.min.css': vendor('uPlot.min.css', 'uplot/dist/uPlot.min.css'),
    'index.html': `${dir}index.html`,
    'login.html': `${dir}login.html`,
  };
  const assets = new Map<string, Asset>();
  for (const [path, file] of Object.entries(files)) assets.set(path, { body: readFileSync(file), type: TYPES[file.slice(file.lastIndexOf('.'))] ?? 'application/octet-stream' });
  return assets;
}

/** Starts the dashboard; rejects when the address cannot be bound or a non-loopback one lacks TLS. */
export async function startDashboard(o: DashboardServerOptions): Promise<DashboardEndpoint> {
  const host = hostOf(o.config.listen);
  const loopback = isLoopbackHost(host);
  // The config schema refuses this already; a second guard for callers that build the options.
  if (!o.config.tls && !loopback) throw new Error(`dashboard.listen ${o.config.listen} is not a loopback address: the dashboard needs dashboard.tls there`);
  const ca = new X509Certificate(o.tls.ca);
  const auth = new DashboardAuth({
    ca,
    federation: o.sources.federation,
    resolver: createIdentityResolver({ federation: o.sources.federation }),
    maxTokenLifetimeMs: o.config.maxTokenLifetimeS * 1000,
    maxSessions: o.config.maxSessions,
    secure: o.config.tls,
    now: o.sources.now,
  });
  const assets = loadAssets();
  const audit = new AuditCache(o.sources);
  const streams = new EventStreams({ bus: o.bus, maxStreams: o.config.maxEventStreams, transfers: () => transfersView(o.sources) });
  const views: Record<string, () => unknown> = {
    '/api/overview': () => overviewView(o.sources),
    '/api/rounds': () => roundsView(o.sources),
    '/api/sites': () => sitesView(o.sources),
    '/api/transfers': () => transfersView(o.sources),
    '/api/audit': () => audit.view(),
  };
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    for (const [k, v] of Object.entries(COMMON_HEADERS)) res.setHeader(k, v);
    route({ req, res, auth, assets, views, streams, loopback, logger: o.logger }).catch((err: unknown) => {
      o.logger.error({ err, path: req.url }, 'dashboard request failed');
      if (!res.headersSent) json(res, 500, { error: 'INTERNAL', message: 'the dashboard could not answer; see the coordinator log' });
      else res.destroy();
    });
  };
  const server = o.config.tls
    ? https.createServer({ ca: o.tls.ca, cert: o.tls.cert, key: o.tls.key, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' }, handler)
    : http.createServer(handler);
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  const port = Number(o.config.listen.slice(o.config.listen.lastIndexOf(':') + 1));
  server.listen(port, host);
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => Promise.reject(err as Error))]);
  const bound = (server.address() as AddressInfo).port;
  const shown = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  return {
    url: `${o.config.tls ? 'https' : 'http'}://${shown}:${bound}`,
    port: bound,
    async close() {
      streams.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

interface Routed {
  readonly req: http.IncomingMessage;
  readonly res: http.ServerResponse;
  readonly auth: DashboardAuth;
  readonly assets: Map<string, Asset>;
  readonly views: Record<string, () => unknown>;
  readonly streams: EventStreams;
  readonly loopback: boolean;
  readonly logger: Logger;
}

async function route(r: Routed): Promise<void> {
  const { req, res } = r;
  const url = new URL(req.url ?? '/', 'http://dashboard');
  const path = url.pathname;
  // A loopback dashboard answers loopback names only: a web page elsewhere cannot reach it by
  // pointing a name of its own at 127.0.0.1 (DNS rebinding).
  if (r.loopback && !isLoopbackHost(hostHeaderName(req.headers.host ?? ''))) {
    return json(res, 421, { error: 'MISDIRECTED', message: 'this dashboard answers to localhost only' });
  }
  const asset = r.assets.get(path);
  if (asset || path === '/login') {
    if (!isRead(req)) return json(res, 405, { error: 'READ_ONLY', message: 'the dashboard is read-only' });
    return send(res, 200, asset ?? r.assets.get('login.html')!, 'no-cache');
  }
  if (path === '/api/session' && req.method === 'POST') return exchange(r);
  if (path === '/api/logout' && req.method === 'POST') {
    res.setHeader('Set-Cookie', r.auth.logout(req));
    res.writeHead(204).end();
    return;
  }
  if (!isRead(req)) return json(res, 405, { error: 'READ_ONLY', message: 'the dashboard is read-only' });
  const page = (DASHBOARD_PAGES as readonly string[]).includes(path);
  const view = r.views[path];
  if (!page && !view && path !== '/api/events') return json(res, 404, { error: 'NOT_FOUND', message: `no ${path} here` });
  const who = r.auth.authenticate(req);
  if (!who.ok) {
    if (page && who.refusal.status === 401) {
      res.writeHead(303, { Location: '/login', 'Cache-Control': 'no-store' }).end();
      return;
    }
    return json(res, who.refusal.status, { error: who.refusal.code, message: who.refusal.message });
  }
  res.setHeader('X-Fedhpc-Admin', who.value.admin);
  if (page) return send(res, 200, r.assets.get('index.html')!, 'no-store');
  if (path === '/api/events') {
    if (req.method !== 'GET') return json(res, 405, { error: 'READ_ONLY', message: 'the event stream is read with GET' });
    if (!r.streams.open(res, who.value.valid)) json(res, 503, { error: 'TOO_MANY_STREAMS', message: 'too many live dashboards are open; close one' });
    return;
  }
  json(res, 200, view!());
}

/** The name in a `Host` header: `name:port`, `[v6]:port`, or either without the port. */
function hostHeaderName(host: string): string {
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']'));
  return host.split(':')[0] ?? '';
}

function isRead(req: http.IncomingMessage): boolean {
  return req.method === 'GET' || req.method === 'HEAD';
}

/** POST /api/session `{ "token": "…" }`: a token for a session cookie, once. */
async function exchange(r: Routed): Promise<void> {
  const { req, res } = r;
  // A cross-site form cannot send JSON without a preflight this server never grants, nor this Origin.
  const origin = req.headers.origin;
  if (!(req.headers['content-type'] ?? '').startsWith('application/json') || (origin !== undefined && new URL(origin).host !== req.headers.host)) {
    return json(res, 403, { error: 'CROSS_SITE', message: 'a token is exchanged by the dashboard page itself' });
  }
  const body = await readBody(req);
  let token = '';
  try {
    const parsed = JSON.parse(body ?? '') as { token?: unknown };
    token = typeof parsed.token === 'string' ? parsed.token : '';
  } catch {
    token = '';
  }
  if (!token) return json(res, 400, { error: 'BAD_REQUEST', message: 'send {"token": "…"} as JSON, at most 16 KiB' });
  const result = r.auth.exchange(token);
  if (!result.ok) {
    r.logger.warn({ code: result.code, peer: req.socket.remoteAddress }, 'dashboard token refused');
    return json(res, 401, { error: result.code, message: result.message });
  }
  r.logger.info({ admin: result.admin, expires: new Date(result.expiresMs).toISOString() }, 'dashboard session started');
  res.setHeader('Set-Cookie', result.cookie);
  json(res, 200, { admin: result.admin, expiresMs: result.expiresMs });
}

/** The request body as text, or undefined past {@link MAX_BODY_BYTES}. */
async function readBody(req: http.IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function send(res: http.ServerResponse, status: number, asset: Asset, cache: string): void {
  res.writeHead(status, { 'Content-Type': asset.type, 'Cache-Control': cache, 'Content-Length': asset.body.length });
  res.end(res.req.method === 'HEAD' ? undefined : asset.body);
}

function json(res: http.ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store', 'Content-Length': Buffer.byteLength(body) });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
