/**
 * The site agent's process config: one zod schema, parsed once, frozen, printed at start-up.
 * Unknown fields are errors naming the field and the file.
 */
import { z } from 'zod';
import { invariant } from '../aggregation/index.js';
import { loadConfigFile } from '../common/config-file.js';
import { commandRunnerSchema } from './runners/command.js';
import { slurmRunnerSchema } from './runners/slurm.js';
import { coordinatorAddressSchema, exactlyOneCoordinator } from '../common/coordinator-verdict.js';
import { standinRunnerSchema } from './runners/standin.js';

/** The builtin TypeScript trainer on generated text in one language (demo, tests). */
export const builtinRunnerSchema = z
  .object({
    kind: z.literal('builtin'),
    language: z.string(),
    trainChars: z.number().int().min(1000).max(100_000_000).default(200_000),
    heldoutChars: z.number().int().min(100).max(10_000_000).default(20_000),
    /** Seed of the site's data (its corpus) and of minibatch sampling. */
    seed: z.number().int().min(0).default(1),
    /** Held-out positions scored per evaluation (evenly spaced); all when larger than the set. */
    evalPositions: z.number().int().positive().default(20_000),
    /** Keep the inner Adam state across rounds (DiLoCo's inner optimizer). */
    keepOptimizerState: z.boolean().default(true),
  })
  .strict();

export const siteConfigSchema = z
  .object({
    site: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'lowercase letters, digits and -'),
    /** The coordinator's `host:port` (this, or `coordinators`). */
    coordinator: coordinatorAddressSchema.optional(),
    /**
     * Several coordinator addresses, tried in order; a standby's `NOT_LEADER` names the leader to
     * follow (docs/protocol.md, "Standby coordinators and NOT_LEADER"; issue 19). This, or `coordinator`.
     */
    coordinators: z.array(coordinatorAddressSchema).min(1).max(16).optional(),
    /** TLS server name to verify when a coordinator address is one the certificate does not name (every address). */
    serverName: z.string().optional(),
    /** Outbound HTTP CONNECT proxy, `http://[user:password@]host:port` (default: `https_proxy` etc. from the environment). */
    proxy: z
      .string()
      .url()
      .refine((u) => /^http:\/\/[^/]+(:\d{1,5})?\/?$/.test(u), 'an http:// proxy URL with host and port and no path, e.g. http://proxy.example.org:3128')
      .optional(),
    tls: z.object({ ca: z.string(), cert: z.string(), key: z.string() }).strict(),
    workDir: z.string(),
    runner: z.discriminatedUnion('kind', [builtinRunnerSchema, commandRunnerSchema, slurmRunnerSchema, standinRunnerSchema]),
    transfer: z
      .object({
        /** Upload chunk size (capped by what the coordinator allows). */
        chunkBytes: z.number().int().min(4096).max(4 * 1024 * 1024).default(1024 * 1024),
        /** Upload rate limit in bytes per second, for centres that share their link (0: none). */
        uploadRateBytesPerS: z.number().min(0).default(0),
        /** Upload streams (stripes) per delta, to fill a long, fat link (capped by the coordinator). */
        parallelStreams: z.number().int().min(1).max(64).default(1),
        /** A transfer with no progress for this long fails (a broken one is resumed until then). */
        idleTimeoutS: z.number().positive().max(24 * 3600).default(60),
      })
      .strict()
      .default({}),
    reconnect: z
      .object({ initialMs: z.number().int().min(10).default(250), maxMs: z.number().int().min(100).default(15_000) })
      .strict()
      .default({}),
    /** Prometheus endpoint of this agent (off unless configured); binds 127.0.0.1 by default. */
    metrics: z.object({ port: z.number().int().min(0).max(65_535), host: z.string().default('127.0.0.1') }).strict().optional(),
    /** Give up after this long without reaching the coordinator (0: never). */
    giveUpAfterS: z.number().min(0).default(0),
    log: z.object({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'silent']).default('info') }).strict().default({}),
  })
  .strict()
  .superRefine(exactlyOneCoordinator);

/**
 * The coordinator addresses a site dials, in order: `coordinators`, or the one `coordinator`. The
 * schema requires exactly one of them; a config built in code that sets both is a bug.
 */
export function coordinatorAddresses(config: Pick<ResolvedSiteConfig, 'coordinator' | 'coordinators'>): readonly string[] {
  invariant(config.coordinator === undefined || config.coordinators === undefined, 'a site config names its coordinator once: coordinator or coordinators');
  if (config.coordinators) return config.coordinators;
  invariant(config.coordinator !== undefined, 'a site config names a coordinator');
  return [config.coordinator];
}

export type SiteOptions = z.input<typeof siteConfigSchema>;
export type ResolvedSiteConfig = z.output<typeof siteConfigSchema>;
export type ResolvedBuiltinRunner = z.output<typeof builtinRunnerSchema>;

/** Loads and validates a site config file; relative paths resolve against its folder. */
export function loadSiteConfig(file: string): ResolvedSiteConfig {
  return loadConfigFile(file, siteConfigSchema, (c, rel) => {
    // Paths with a slash are files beside the config; bare names are looked up on PATH.
    const exe = (p: string): string => (p.includes('/') ? rel(p) : p);
    const opt = (p: string | undefined): string | undefined => (p === undefined ? undefined : rel(p));
    const r = c.runner;
    const runner =
      r.kind === 'command'
        ? { ...r, command: [exe(r.command[0]!), ...r.command.slice(1)], cwd: opt(r.cwd), modelConfig: opt(r.modelConfig), tokenizer: opt(r.tokenizer) }
        : r.kind === 'slurm'
          ? { ...r, template: opt(r.template), trainer: rel(r.trainer), python: exe(r.python), modelConfig: opt(r.modelConfig), tokenizer: opt(r.tokenizer) }
          : r;
    return { ...c, tls: { ca: rel(c.tls.ca), cert: rel(c.tls.cert), key: rel(c.tls.key) }, workDir: rel(c.workDir), runner };
  });
}
