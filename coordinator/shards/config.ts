/**
 * The config of one aggregator shard (`fedhpc aggregator --config FILE`, issue 22), written by
 * `fedhpc provision --aggregators` beside the shard's certificate as `aggregator.json`.
 */
import { z } from 'zod';
import { loadConfigFile } from '../../common/config-file.js';
import { COORDINATOR_ADDRESS } from '../../common/coordinator-verdict.js';
import { callLimitFields } from '../config.js';

export const shardConfigSchema = z
  .object({
    federation: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/),
    /** The shard's name: its certificate's id and its entry in the coordinator's `aggregators`. */
    name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'a shard name: lower-case letters, digits, - (at most 63)'),
    /** The coordinators to dial, in order (a standby pair's members, or the one coordinator). */
    coordinators: z.array(z.string().regex(COORDINATOR_ADDRESS, 'host:port')).min(1).max(16),
    /** The TLS name the coordinators' certificates must carry, when not the host dialled. */
    serverName: z.string().min(1).optional(),
    tls: z.object({ ca: z.string(), cert: z.string(), key: z.string() }).strict(),
    /**
     * The coordinator's checkpoint storage as this host reaches it: the coordinator's `stateDir`
     * (its `models/`, `optimizer/` and the staging folder `tmp/`), shared with the shard. The shard never writes the
     * coordinator's journal.
     */
    checkpoints: z.string().min(1),
    /**
     * The shard's own folder: it keeps the highest leadership term it has followed there (`term`),
     * so that a restarted shard still refuses a deposed leader. Absent: the term is kept in memory
     * only, and a restarted shard learns it again from the first leader that reaches it.
     */
    stateDir: z.string().min(1).optional(),
    /**
     * Where the shard serves sites' part uploads (`host:port`; its `aggregator` certificate, the
     * address the coordinator's `aggregators` entry names as `endpoint`). Needs `stateDir`: the
     * parts are spooled there. Absent: sites upload whole deltas to the coordinator, and the shard
     * reads them from the checkpoint storage.
     */
    listen: z.string().regex(/^[^\s:]*:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'host:port').optional(),
    /**
     * The certificate the shard serves sites with, when not `tls`'s: a local shard attaches with the
     * coordinator's own certificate and serves with an `aggregator` one (`provision --local-shards`).
     */
    siteTls: z.object({ ca: z.string(), cert: z.string(), key: z.string() }).strict().optional(),
    /** The in-flight bytes of every site's upload streams at this shard together (the coordinator's `limits.uploadBudgetBytes`). */
    uploadBudgetBytes: z.number().int().min(256 * 1024).max(64 * 1024 * 1024 * 1024).default(256 * 1024 * 1024),
    /**
     * Per-site limits on the calls the shard serves (`Upload`, `Download`), as the coordinator's
     * `limits` apply them to every call it serves: a site over them at a shard is refused there
     * (RESOURCE_EXHAUSTED, `RATE_LIMITED`, retryable) as the coordinator would refuse it. Local
     * shards take their coordinator's.
     */
    limits: z.object(callLimitFields).strict().default({}),
    /** Waits between attempts to reach a coordinator: full jitter, doubling up to `maxMs`. */
    reconnect: z
      .object({ initialMs: z.number().int().min(10).max(60_000).default(500), maxMs: z.number().int().min(10).max(600_000).default(10_000) })
      .strict()
      .default({}),
    log: z.object({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'silent']).default('info') }).strict().default({}),
  })
  .strict()
  .refine((c) => c.listen === undefined || c.stateDir !== undefined, { path: ['listen'], message: 'a shard that serves uploads (listen) spools them in its stateDir: set stateDir' });

export type ShardConfigInput = z.input<typeof shardConfigSchema>;
export type ResolvedShardConfig = z.output<typeof shardConfigSchema>;

/** Loads and validates a shard config; relative paths resolve against its folder. */
export function loadShardConfig(file: string): ResolvedShardConfig {
  return loadConfigFile(file, shardConfigSchema, (c, rel) => ({
    ...c,
    tls: { ca: rel(c.tls.ca), cert: rel(c.tls.cert), key: rel(c.tls.key) },
    checkpoints: rel(c.checkpoints),
    ...(c.siteTls !== undefined ? { siteTls: { ca: rel(c.siteTls.ca), cert: rel(c.siteTls.cert), key: rel(c.siteTls.key) } } : {}),
    ...(c.stateDir !== undefined ? { stateDir: rel(c.stateDir) } : {}),
  }));
}
