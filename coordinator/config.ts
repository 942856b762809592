/**
 * The coordinator's process config: one zod schema, parsed once, frozen, printed at start-up.
 * Unknown fields are errors (a typo must not silently fall back to a default).
 */
import { z } from 'zod';
import { WEIGHTINGS, checkFixedPointBudget, parseOptimizerOptions, type ResolvedOptimizerOptions, type Weighting } from '../aggregation/index.js';
import { loadConfigFile } from '../common/config-file.js';
import { trainBudgetSchema, type TrainBudget } from '../common/train-budget.js';
import { trainOverlapSchema, type TrainOverlap } from '../common/train-overlap.js';
import { LEASE_DEFAULTS } from './ha/lease.js';
import { natsSchema, resolveNatsPaths } from './nats/options.js';
import { dashboardSchema } from './dashboard/options.js';
import { CHECKPOINT_DTYPES, type CheckpointDtype } from './state/checkpoint-dtype.js';

const CHECKPOINT_DTYPE_NAMES = Object.keys(CHECKPOINT_DTYPES) as [CheckpointDtype, ...CheckpointDtype[]];

/** Server optimizer and its hyper-parameters, validated by `aggregation` (unknown keys refused). */
export const strategySchema = z
  .object({ name: z.string() })
  .passthrough()
  .transform((value, ctx): ResolvedOptimizerOptions => {
    const parsed = parseOptimizerOptions(value);
    if (parsed.ok) return parsed.value;
    for (const message of parsed.issues) ctx.addIssue({ code: 'custom', message });
    return z.NEVER;
  });

/**
 * Secure aggregation (SecAgg+). The fixed-point budget n·2^q ≤ 2^b must hold for `maxSites`, or
 * the run refuses to start. The clipping range comes from configuration, never from a site.
 */
export const secureAggregationSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** Shamir threshold t; default max(2, minSites), by {@link secureThreshold} (it depends on the run). */
    threshold: z.number().int().min(2).optional(),
    quantBits: z.number().int().min(2).max(31).default(24),
    modulusBits: z.union([z.literal(16), z.literal(32)]).default(32),
    clip: z.number().positive().finite().default(1),
    /**
     * The old name of `run.maxSiteWeight`, still read: alone it sets it, beside it it must agree
     * (a different value is refused, naming both).
     */
    maxWeight: z.number().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
    maxSites: z.number().int().min(2).max(65_536).default(64),
    /** Neighbour graph degree (SecAgg+); 0: the complete graph up to 32 sites. */
    degree: z.number().int().min(0).default(0),
  })
  .strict()
  .default({});

/**
 * The Shamir threshold of a secure run: the configured one, or max(2, minSites). The one place of
 * this default, which depends on another field; it stays out of the parsed config, which is also
 * what the journal keeps and parses again.
 */
export function secureThreshold(run: { readonly minSites: number; readonly secureAggregation: { readonly threshold?: number | undefined } }): number {
  return run.secureAggregation.threshold ?? Math.max(2, run.minSites);
}

const seconds = (def: number) => z.number().positive().max(7 * 24 * 3600).default(def);

/**
 * The default of `run.maxSiteWeight`: the largest weight an honest site can declare in the unit of
 * `weighting`, from the run's own training settings — samples: steps × batch size; tokens: that ×
 * sequence length; uniform: 1. Steps are `max_steps` (the torch and NeMo trainers) or `steps` (the
 * builtin runner), the batch `batch_size` or `batchSize`, the sequence length `seq_len`, or 1 where
 * the settings name none (the builtin runner counts one token per sample). Undefined when the
 * settings do not say (a command trainer with its own settings): the run must then set it.
 */
export function defaultMaxSiteWeight(run: { readonly weighting: Weighting; readonly train: Readonly<Record<string, unknown>> }): number | undefined {
  if (run.weighting === 'uniform') return 1;
  // A time budget says nothing of how much a site trains, nor does an overlapped run's budget (a
  // sync that waits on a late global trains on): the run must set maxSiteWeight.
  const budget = trainBudget(run.train);
  if (budget?.seconds !== undefined || run.train['overlap'] !== undefined) return undefined;
  if (budget?.tokens !== undefined) {
    const batch = batchTokens(run.train);
    return batch === undefined ? undefined : budget.tokens + batch;
  }
  const setting = trainSetting(run.train);
  const steps = setting('max_steps', 'steps');
  const batch = setting('batch_size', 'batchSize');
  const seqLen = run.weighting === 'tokens' ? setting('seq_len') : 1;
  if (!steps || !batch || seqLen === undefined) return undefined;
  const weight = steps * batch * (seqLen ?? 1);
  return Number.isSafeInteger(weight) ? weight : undefined;
}

/** A positive-integer training setting under the first of `keys` present; `null`: none present. */
function trainSetting(train: Readonly<Record<string, unknown>>) {
  return (...keys: string[]): number | null | undefined => {
    const key = keys.find((k) => train[k] !== undefined);
    if (key === undefined) return null;
    const v = train[key];
    return typeof v === 'number' && Number.isSafeInteger(v) && v > 0 ? v : undefined;
  };
}

/** Tokens of one batch: batch size × `seq_len` (1 when none is named); undefined when no batch size is. */
export function batchTokens(train: Readonly<Record<string, unknown>>): number | undefined {
  const setting = trainSetting(train);
  const batch = setting('batch_size', 'batchSize');
  const seqLen = setting('seq_len');
  if (!batch || seqLen === undefined) return undefined;
  return batch * (seqLen ?? 1);
}


/**
 * A token-budgeted run's most tokens per fresh upload: the budget plus one batch (undefined
 * otherwise). Not in an overlapped run: a sync whose global comes back late trains on until it is
 * applied and carries more than its budget, so there `maxSiteWeight` alone bounds it.
 */
export function tokenCap(train: Readonly<Record<string, unknown>>): number | undefined {
  if (train['overlap'] !== undefined) return undefined;
  const tokens = trainBudget(train)?.tokens;
  const batch = batchTokens(train);
  return tokens === undefined || batch === undefined ? undefined : tokens + batch;
}

/** The run's budget, when `train.budget` is a valid one (the run schema reports an invalid one). */
export function trainBudget(train: Readonly<Record<string, unknown>>): { readonly seconds?: number; readonly tokens?: number } | undefined {
  const parsed = trainBudgetSchema.safeParse(train['budget']);
  if (!parsed.success) return undefined;
  const b: TrainBudget = parsed.data;
  return 'seconds' in b ? { seconds: b.seconds } : { tokens: b.tokens };
}

/** The run's overlap (`train.overlap`), when it sets a valid one (the run schema reports an invalid one). */
export function trainOverlap(train: Readonly<Record<string, unknown>>): TrainOverlap | undefined {
  const parsed = trainOverlapSchema.safeParse(train['overlap']);
  return parsed.success ? parsed.data : undefined;
}

const FRAGMENTS_NOT_BUILT =
  'fragment-wise sync (P staggered fragments, as Streaming DiLoCo syncs) is not built: use mode "whole-model" (docs/decisions.md, "Overlapped rounds sync the whole model a round late")';

/**
 * Checks `train.overlap` (issue 17): the shared schema, with a fragment-wise sync named as such
 * rather than as an unknown key or mode, and a budget, the training each sync carries.
 */
function checkOverlap(train: Readonly<Record<string, unknown>>, ctx: z.RefinementCtx): void {
  const raw = train['overlap'];
  const path = ['train', 'overlap'];
  if (typeof raw === 'object' && raw !== null && ('fragments' in raw || ('mode' in raw && raw.mode === 'fragments'))) {
    ctx.addIssue({ code: 'custom', path: [...path, 'fragments' in raw ? 'fragments' : 'mode'], message: FRAGMENTS_NOT_BUILT });
  } else {
    const parsed = trainOverlapSchema.safeParse(raw);
    if (!parsed.success) for (const issue of parsed.error.issues) ctx.addIssue({ code: 'custom', path: [...path, ...issue.path], message: issue.message });
  }
  if (train['budget'] === undefined) {
    ctx.addIssue({ code: 'custom', path, message: 'an overlapped run needs a budget, the training each sync carries: set run.train.budget to { "seconds": S } or { "tokens": T }' });
  }
}

/**
 * Per-caller call limits (coordinator/service/limits.ts): the coordinator's `limits` and an
 * aggregator shard's, which apply them to the sites' calls it serves.
 */
export const callLimitFields = {
  /** Calls per second each caller (site or admin certificate) may start, sustained. */
  requestsPerS: z.number().positive().max(100_000).default(20),
  /** Calls a caller may start at once after being idle (token bucket size). */
  burst: z.number().int().min(1).max(100_000).default(100),
  /** Calls (unary or streaming) one caller may have open at the same time. */
  maxConcurrentCallsPerSite: z.number().int().min(1).max(10_000).default(32),
};

/** How plain rounds combine deltas (`run.aggregator`); shards read the same JSON (`ShardAggregate.aggregator_json`). */
export const aggregatorSchema = z.discriminatedUnion('name', [
  z.object({ name: z.literal('mean') }).strict(),
  z.object({ name: z.literal('median') }).strict(),
  z.object({ name: z.literal('trimmed-mean'), trim: z.number().gt(0).lt(0.5) }).strict(),
]);

/** A run: how many rounds, k-of-n, deadlines, strategy and the training settings sent to sites. */
export const runSchema = z
  .object({
    id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'letters, digits, . _ - (at most 64)'),
    rounds: z.number().int().positive().max(1_000_000),
    minSites: z.number().int().positive(),
    expectedSites: z.array(z.string()).default([]),
    strategy: strategySchema.default({ name: 'diloco' }),
    weighting: z.enum(WEIGHTINGS).default('samples'),
    /**
     * The largest weight one site may declare, in the unit of `weighting`: an upload header above it
     * is refused (WEIGHT_OUT_OF_RANGE) in plain and secure rounds, never clamped; under secure
     * aggregation a site's weight word is its count over this. Default {@link defaultMaxSiteWeight}.
     */
    maxSiteWeight: z.number().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
    /**
     * How plain rounds combine deltas: the weighted mean, or a robust aggregator (coordinate-wise
     * median, trimmed mean), which needs individual updates and so is refused under secure aggregation.
     */
    aggregator: aggregatorSchema.default({ name: 'mean' }),
    /** Wire encoding of plain rounds' deltas; secure rounds always use masked fixed point. */
    encoding: z.enum(['f32', 'bf16', 'int8']).default('f32'),
    /**
     * The dtype of the run's checkpoints, the files sites download: every float tensor in it. Absent:
     * each tensor keeps the initial model's own dtype. The server optimizer steps f32 master
     * weights kept beside a narrower checkpoint, so small updates are not rounded away.
     */
    checkpointDtype: z.enum(CHECKPOINT_DTYPE_NAMES).optional(),
    /**
     * Training settings for the sites' runners (steps, batch size, lr, …), opaque but for `budget`
     * ({@link trainBudgetSchema}), which the coordinator checks and sizes weights by, and `overlap`
     * ({@link trainOverlapSchema}), whose `maxAppliedSteps` it enforces (STALE_TRAINER).
     */
    train: z.record(z.unknown()).default({}),
    /**
     * Most rounds an upload's base may lie behind the round's model; older work is refused
     * (STALE_DELTA). Folded stale work counts ⌊k/(1 + s)⌋ (docs/protocol.md).
     */
    maxStaleness: z.number().int().min(0).max(64).default(2),
    evaluate: z.boolean().default(true),
    /**
     * The most samples one site's evaluation may rest on: every evaluation the run asks for asks
     * for at most this many, and a report above it is refused (EVAL_INVALID). At most 2^40, so
     * the total over up to 8192 sites stays an exact integer.
     */
    evalMaxSamples: z.number().int().positive().max(2 ** 40).default(1_000_000_000),
    deadlines: z
      .object({
        openS: seconds(120),
        trainingS: seconds(3600),
        uploadS: seconds(3600),
        aggregateS: seconds(3600),
        commitS: seconds(600),
        evalS: seconds(600),
        keysS: seconds(120),
        sharesS: seconds(120),
        unmaskS: seconds(300),
      })
      .strict()
      .default({}),
    maxAttempts: z.number().int().positive().max(1000).default(5),
    secureAggregation: secureAggregationSchema,
  })
  .strict()
  .superRefine((run, ctx) => {
    if (run.train['overlap'] !== undefined) checkOverlap(run.train, ctx);
    if (run.train['budget'] !== undefined) {
      const b = trainBudgetSchema.safeParse(run.train['budget']);
      const seconds = b.success ? trainBudget(run.train)?.seconds : undefined;
      if (!b.success) {
        ctx.addIssue({ code: 'custom', path: ['train', 'budget'], message: 'a budget is { "seconds": S } or { "tokens": T }, positive (a zero budget trains nothing)' });
      } else if (seconds !== undefined && seconds >= run.deadlines.trainingS) {
        ctx.addIssue({
          code: 'custom',
          path: ['train', 'budget', 'seconds'],
          message: `a budget of ${seconds} s is not shorter than the training deadline (deadlines.trainingS ${run.deadlines.trainingS} s): no site could finish and upload in time`,
        });
      }
      if (run.weighting !== 'tokens') {
        ctx.addIssue({ code: 'custom', path: ['weighting'], message: `budgeted rounds weigh by the work done: set weighting to "tokens" (it is ${JSON.stringify(run.weighting)})` });
      }
    }
    const sa = run.secureAggregation;
    if (!sa.enabled) return;
    if (run.aggregator.name !== 'mean') {
      ctx.addIssue({
        code: 'custom',
        path: ['aggregator'],
        message: `${run.aggregator.name} needs each site's own update, which secure aggregation hides from the coordinator; use the mean or set secureAggregation.enabled to false`,
      });
    }
    const budget = checkFixedPointBudget({ sites: sa.maxSites, quantBits: sa.quantBits, modulusBits: sa.modulusBits });
    if (!budget.ok) ctx.addIssue({ code: 'custom', path: ['secureAggregation', 'quantBits'], message: budget.issues.join('; ') });
    const sites = Math.max(run.expectedSites.length, run.minSites);
    if (sites > sa.maxSites) ctx.addIssue({ code: 'custom', path: ['secureAggregation', 'maxSites'], message: `${sites} sites exceed maxSites ${sa.maxSites}` });
    if (sa.degree > 0 && secureThreshold(run) > sa.degree + 1) {
      ctx.addIssue({ code: 'custom', path: ['secureAggregation', 'threshold'], message: `threshold exceeds a neighbourhood of degree ${sa.degree} plus the site itself` });
    }
    if (sa.threshold !== undefined && sa.threshold > sites && run.expectedSites.length > 0) {
      ctx.addIssue({ code: 'custom', path: ['secureAggregation', 'threshold'], message: `threshold ${sa.threshold} exceeds the ${sites} expected sites` });
    }
  })
  .transform((run, ctx) => {
    // One weight setting: the resolved run carries `maxSiteWeight` only, so parsing it again
    // gives the same run.
    const { maxWeight: oldName, ...secureAggregation } = run.secureAggregation;
    if (oldName !== undefined && run.maxSiteWeight !== undefined && oldName !== run.maxSiteWeight) {
      ctx.addIssue({
        code: 'custom',
        path: ['secureAggregation', 'maxWeight'],
        message: `${oldName} disagrees with run.maxSiteWeight ${run.maxSiteWeight}: secureAggregation.maxWeight is the old name of run.maxSiteWeight; keep run.maxSiteWeight only`,
      });
      return z.NEVER;
    }
    const maxSiteWeight = run.maxSiteWeight ?? oldName ?? defaultMaxSiteWeight(run);
    if (maxSiteWeight === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['maxSiteWeight'],
        message:
          run.train['overlap'] !== undefined
            ? 'required: an overlapped run\'s sync trains on until its global is applied, so one may carry more than the budget; set it to the fastest site\'s tokens per budget plus its slowest sync, e.g. twice the budget\'s (docs/operators.md, "Overlapped rounds")'
            : trainBudget(run.train)?.seconds !== undefined
            ? 'required: a time-budgeted run does not say how many tokens one site can train per round; set it to the fastest site\'s tokens per budget plus a margin (docs/operators.md, "Budgeted rounds")'
            : `required: run.train does not say how much one site trains per round (positive integers max_steps or steps, and batch_size or batchSize${run.weighting === 'tokens' ? ', and seq_len' : ''}, or a token budget with batch_size), so the largest weight an honest site can declare in ${run.weighting} is unknown`,
      });
      return z.NEVER;
    }
    return { ...run, maxSiteWeight, secureAggregation };
  });

export const coordinatorConfigSchema = z
  .object({
    federation: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/),
    listen: z.string().regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'host:port'),
    tls: z.object({ ca: z.string(), cert: z.string(), key: z.string() }).strict(),
    stateDir: z.string(),
    model: z.object({ initial: z.string() }).strict(),
    /**
     * Sites that are members of the federation (`fedhpc provision` lists every site it issued a
     * certificate for). With admin approvals, the only site certificates that may join; journaled at
     * start-up, so removing a name here does not remove a member (revoke it). See
     * coordinator/sites/membership.ts.
     */
    members: z.array(z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'a site id: lower-case letters, digits, - (at most 63)')).default([]),
    /** The run to drive at start-up; without one the coordinator idles until `fedhpc admin start`. */
    run: runSchema.optional(),
    /** Checkpoints kept: the last `keepLast` and every `keepEvery`-th round (0: none extra). */
    retention: z
      .object({ keepLast: z.number().int().min(1).max(1_000_000), keepEvery: z.number().int().min(0).max(1_000_000).default(0) })
      .strict()
      .optional(),
    /** Prometheus endpoint (off unless configured); binds 127.0.0.1 unless `host` says otherwise. */
    metrics: z
      .object({ port: z.number().int().min(0).max(65_535), host: z.string().default('127.0.0.1') })
      .strict()
      .optional(),
    limits: z
      .object({
        maxChunkBytes: z.number().int().min(64 * 1024).max(4 * 1024 * 1024).default(1024 * 1024),
        /** Elements per slice when reading and writing tensors at commit (bounded memory). */
        sliceElements: z.number().int().min(1024).max(64 * 1024 * 1024).default(4 * 1024 * 1024),
        /** A transfer with no progress for this long ends (and a site gone this long is dropped). */
        idleTimeoutS: z.number().positive().max(24 * 3600).default(60),
        /** Upload streams (stripes) one site may hold open at once. */
        maxStreamsPerSite: z.number().int().min(1).max(64).default(8),
        /** Bytes a site may send past the last acknowledgement; also the most a break re-sends. */
        uploadWindowBytes: z.number().int().min(256 * 1024).max(1024 * 1024 * 1024).default(16 * 1024 * 1024),
        /**
         * Upload bytes in flight across all sites and streams: each stream reserves its window from
         * this one budget before it is accepted, and waits while it is spent.
         */
        uploadBudgetBytes: z.number().int().min(256 * 1024).max(64 * 1024 * 1024 * 1024).default(256 * 1024 * 1024),
        ...callLimitFields,
      })
      .strict()
      .superRefine((l, ctx) => {
        // Every stream's window must fit the shared budget, or that stream would wait for ever.
        const window = Math.max(l.uploadWindowBytes, 2 * l.maxChunkBytes);
        if (l.uploadBudgetBytes < window) {
          ctx.addIssue({
            code: z.ZodIssueCode.custom,
            path: ['uploadBudgetBytes'],
            message: `must hold at least one stream’s window (${window} bytes: uploadWindowBytes, and two chunks of maxChunkBytes)`,
          });
        }
      })
      .default({}),
    heartbeatIntervalMs: z.number().int().min(100).max(600_000).default(2000),
    /** Events and audit records to NATS / JetStream (off unless configured). */
    nats: natsSchema.optional(),
    /**
     * A standby pair (issue 19; off unless configured): the journal in a replicated JetStream stream
     * on `nats`, leadership by a lease there, checkpoints and spools in `stateDir` on storage every
     * coordinator of the pair reaches. See coordinator/ha/run.ts and docs/operators.md.
     */
    ha: z
      .object({
        /** This coordinator's name in the pair (unique). */
        name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'lowercase letters, digits and -'),
        /** Where sites and admins reach this coordinator (host:port): standbys name it to them. */
        advertise: z.string().regex(/^[^\s:]+:\d{1,5}$/, 'host:port'),
        lease: z
          .object({
            ttlMs: z.number().int().min(1000).max(600_000).default(LEASE_DEFAULTS.ttlMs),
            renewMs: z.number().int().min(100).max(60_000).default(LEASE_DEFAULTS.renewMs),
            marginMs: z.number().int().min(100).max(60_000).default(LEASE_DEFAULTS.marginMs),
          })
          .strict()
          .default({}),
        /** Replicas of the journal stream and the lease bucket: 3 on a 3-node NATS cluster. */
        replicas: z.number().int().min(1).max(5).default(LEASE_DEFAULTS.replicas),
      })
      .strict()
      .optional(),
    /**
     * The read-only web dashboard for admins (off unless configured; `{}` serves it on
     * 127.0.0.1:8480). A non-loopback `listen` needs `tls`. See coordinator/dashboard/.
     */
    dashboard: dashboardSchema.optional(),
    /**
     * Aggregator shards (issue 22), in shard order: each dials this coordinator with its `aggregator`
     * certificate (`fedhpc provision --aggregators`) and owns one part of the model; sites will reach
     * it at `endpoint`. Empty (the default): everything runs in the coordinator. See
     * coordinator/shards/ and docs/operators.md.
     */
    aggregators: z
      .array(
        z
          .object({
            name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'a shard name: lower-case letters, digits, - (at most 63)'),
            endpoint: z.string().regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'host:port'),
          })
          .strict(),
      )
      .max(256)
      .default([])
      .superRefine((shards, ctx) => {
        const seen = new Set<string>();
        for (const [i, { name }] of shards.entries()) {
          if (seen.has(name)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: [i, 'name'], message: `shard ${name} is named twice` });
          seen.add(name);
        }
      }),
    /**
     * Aggregator shards this coordinator starts itself as child processes on its own host (issue 22):
     * `local-1` … `local-K`, dialling it on loopback with its own certificate and stepping their parts
     * in its `stateDir`, so one big host aggregates on several cores with no other configuration.
     * 0 (the default): none. Not with `aggregators`. See coordinator/shards/local.ts.
     */
    localShards: z.number().int().min(0).max(64).default(0),
    log: z.object({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'silent']).default('info') }).strict().default({}),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.localShards > 0 && c.aggregators.length > 0) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['localShards'], message: 'name aggregators (shards on other hosts) or localShards (shards this coordinator starts), not both' });
    }
  });

export type CoordinatorOptions = z.input<typeof coordinatorConfigSchema>;
export type ResolvedCoordinatorConfig = z.output<typeof coordinatorConfigSchema>;
/** A parsed run (from the coordinator config or a run file). */
export type ResolvedRun = z.output<typeof runSchema>;
/** The coordinator config with the run being driven. */
export type RunningConfig = ResolvedCoordinatorConfig & { readonly run: ResolvedRun };

/** Loads and validates a coordinator config file; relative paths resolve against its folder. */
export function loadCoordinatorConfig(file: string): ResolvedCoordinatorConfig {
  return loadConfigFile(file, coordinatorConfigSchema, (c, rel) => ({
    ...c,
    tls: { ca: rel(c.tls.ca), cert: rel(c.tls.cert), key: rel(c.tls.key) },
    stateDir: rel(c.stateDir),
    model: { initial: rel(c.model.initial) },
    ...(c.nats ? { nats: resolveNatsPaths(c.nats, rel) } : {}),
  }));
}
