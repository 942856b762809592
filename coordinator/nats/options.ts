/**
 * The coordinator's `nats` config section and the client options built from it. With no section,
 * nothing connects to NATS and the federation runs on one machine.
 */
import { readFileSync } from 'node:fs';
import { credsAuthenticator, type NodeConnectionOptions } from '@nats-io/transport-node';
import { z } from 'zod';

/** The JetStream stream of the audit trail unless `nats.auditStream` names another. */
export const DEFAULT_AUDIT_STREAM = 'FEDHPC_AUDIT';

const subjectToken = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

/** `nats`: where events and audit records go. */
export const natsSchema = z
  .object({
    /** Server URL(s), e.g. `nats://nats.example.org:4222`; several separated by commas. */
    url: z.string().min(1),
    /** Subject prefix; default `fedhpc.<federation>`. Events go to `<prefix>.events.<kind>`, audit records to `<prefix>.audit`. */
    subjectPrefix: z.string().regex(subjectToken, 'dot-separated tokens of letters, digits, _ and -').optional(),
    /** Events kept while NATS is unreachable; beyond it the oldest are dropped and the gap reported. */
    bufferEvents: z.number().int().min(0).max(10_000_000).default(10_000),
    /** JetStream stream of the audit trail (created if missing, file storage). */
    auditStream: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/).default(DEFAULT_AUDIT_STREAM),
    /** Deadline of one connection attempt and of one JetStream acknowledgement. */
    timeoutMs: z.number().int().min(100).max(600_000).default(5_000),
    /** TLS towards the NATS server (CA to trust; client certificate and key for mutual TLS). */
    tls: z.object({ ca: z.string().optional(), cert: z.string().optional(), key: z.string().optional() }).strict().optional(),
    /** A NATS `.creds` file (JWT and nkey seed). */
    creds: z.string().optional(),
  })
  .strict();

export type NatsOptions = z.input<typeof natsSchema>;
export type ResolvedNats = z.output<typeof natsSchema>;

/** Resolves the section's file paths against the config file's folder. */
export function resolveNatsPaths(n: ResolvedNats, rel: (p: string) => string): ResolvedNats {
  const opt = (p: string | undefined): string | undefined => (p === undefined ? undefined : rel(p));
  return {
    ...n,
    ...(n.tls ? { tls: { ca: opt(n.tls.ca), cert: opt(n.tls.cert), key: opt(n.tls.key) } } : {}),
    ...(n.creds !== undefined ? { creds: rel(n.creds) } : {}),
  };
}

/** The subject prefix in effect: the configured one or `fedhpc.<federation>`. */
export function subjectPrefix(n: Pick<ResolvedNats, 'subjectPrefix'>, federation: string): string {
  return n.subjectPrefix ?? `fedhpc.${federation}`;
}

/** What to connect to and how: the parts of {@link ResolvedNats} the client needs. */
export type NatsConnectSettings = Pick<ResolvedNats, 'url' | 'timeoutMs' | 'tls' | 'creds'>;

/**
 * Client options: reconnect forever (the coordinator outlives any NATS outage) and a bounded
 * first-connect deadline (the caller retries with backoff, so start-up never waits on NATS).
 */
export function natsConnectOptions(n: NatsConnectSettings, name: string): NodeConnectionOptions {
  const tls = n.tls;
  return {
    servers: n.url.split(',').map((s) => s.trim()).filter(Boolean),
    name,
    timeout: n.timeoutMs,
    reconnect: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    pingInterval: 10_000,
    ...(tls ? { tls: { ...(tls.ca ? { caFile: tls.ca } : {}), ...(tls.cert ? { certFile: tls.cert } : {}), ...(tls.key ? { keyFile: tls.key } : {}) } } : {}),
    ...(n.creds !== undefined ? { authenticator: credsAuthenticator(readFileSync(n.creds)) } : {}),
  };
}
