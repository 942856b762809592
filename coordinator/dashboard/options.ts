/**
 * The coordinator's `dashboard` config section (issue 21): the read-only web dashboard, off unless
 * configured. It binds loopback by default; a non-loopback address is refused without TLS, because
 * the admin credential (a client certificate, or a token's session cookie) would otherwise cross
 * the network in the clear.
 */
import { isIP } from 'node:net';
import { z } from 'zod';

/** The longest a dashboard token may live unless `dashboard.maxTokenLifetimeS` says otherwise: one day. */
export const DEFAULT_MAX_TOKEN_LIFETIME_S = 24 * 3600;

/** Whether `host` (a name or an address, IPv6 without brackets) only ever means this machine. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || h === '0:0:0:0:0:0:0:1';
  return false;
}

/** The host part of `host:port` or `[v6]:port`. */
export function hostOf(listen: string): string {
  return listen.slice(0, listen.lastIndexOf(':')).replace(/^\[|\]$/g, '');
}

/** `dashboard`: where the web dashboard listens and how admins reach it. */
export const dashboardSchema = z
  .object({
    /** `host:port` (port 0 picks a free one); `127.0.0.1:8480` unless set. */
    listen: z
      .string()
      .regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'host:port')
      .default('127.0.0.1:8480'),
    /**
     * HTTPS with the coordinator's own certificate and key (`tls`), asking browsers for a client
     * certificate of the federation CA: an admin's certificate lets its holder in without a token.
     */
    tls: z.boolean().default(false),
    /** The longest lifetime of a token this dashboard accepts (from its issue to its expiry). */
    maxTokenLifetimeS: z.number().int().min(60).max(30 * 24 * 3600).default(DEFAULT_MAX_TOKEN_LIFETIME_S),
    /** Browser sessions (one per exchanged token) held at once; the oldest is ended beyond it. */
    maxSessions: z.number().int().min(1).max(10_000).default(64),
    /** Live-update connections (server-sent events) held at once; more are refused (503). */
    maxEventStreams: z.number().int().min(1).max(10_000).default(32),
  })
  .strict()
  .superRefine((d, ctx) => {
    if (!d.tls && !isLoopbackHost(hostOf(d.listen))) {
      ctx.addIssue({
        code: 'custom',
        path: ['listen'],
        message: `${d.listen} is not a loopback address, and the dashboard would serve admin credentials over plain HTTP: set dashboard.tls to true (HTTPS, admin client certificates) or listen on 127.0.0.1`,
      });
    }
  });

/** The input form of the `dashboard` section. */
export type DashboardOptions = z.input<typeof dashboardSchema>;
/** The parsed `dashboard` section. */
export type ResolvedDashboard = z.output<typeof dashboardSchema>;
