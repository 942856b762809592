#!/usr/bin/env node
/**
 * The `fedhpc` command: argument parsing and wiring only. Every command accepts `--json`.
 */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ConfigError } from '../common/config-file.js';
import { createLogger, type Logger } from '../common/logger.js';
import { tuneGarbageCollector, warnIfHeapUntuned } from '../common/gc-tuning.js';
import { loadNativeModule } from '../common/native.js';
import { useNativeKernels } from '../aggregation/index.js';
import { printable } from '../common/text.js';
import { CoordinatorError, EXIT_WITH_STDIN, LEASE_DEFAULTS, ShardRefusedError, loadCoordinatorConfig, loadShardConfig, runHaCoordinator, runShard, startCoordinator } from '../coordinator/index.js';
import { serveMetrics } from '../common/metrics-http.js';
import { AgentMetrics, createRunner, DROP_PHASES, RunnerConfigError, loadSiteConfig, SiteAgent, SiteAgentError, type DropPhase } from '../site-agent/index.js';
import { DEMO_LEASE, DEMO_TRAIN, writeFederationFiles, SIMULATE_STRATEGIES, simulate, type SimulateRecord, type SimulateStrategy, type SiteRoundWork, containerLayout, buildFedhpcImage } from '../simulate/index.js';
import { ADMIN_COMMANDS, runAdmin, type AdminCommand } from './admin.js';
import { UsageError, isUsageError } from './usage-error.js';
import { USAGE, usageOf, wantsHelp } from './usage.js';
import { runAudit } from './audit.js';
import { runExport } from './export.js';
import { enrolCommand, renewCommand } from './admin-enrol.js';
import { leaderText, pairOptions, pairSummaryText, speedOptions } from './simulate-options.js';
import { dashboardTokenCommand } from './admin-dashboard.js';
import { parseAggregators, parseCoordinators } from './provision-coordinators.js';

const out = (s: string): void => void process.stdout.write(`${s}\n`);

function intOption(value: string | undefined, name: string, def: number, min = 1): number {
  if (value === undefined) return def;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got ${JSON.stringify(value)}`);
  return n;
}

function required(value: string | undefined, name: string): string {
  if (!value) throw new UsageError(`--${name} is required`);
  return value;
}

/** Resolves when SIGINT or SIGTERM arrives. */
function onTerminate(): AbortSignal {
  const ac = new AbortController();
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => ac.abort(new Error(`received ${sig}`)));
  return ac.signal;
}

/** Aborts when stdin closes: a local shard's parent coordinator has exited (coordinator/shards/local.ts). */
function onStdinClosed(): AbortSignal {
  const ac = new AbortController();
  process.stdin.once('close', () => ac.abort(new Error('the coordinator that started this shard exited')));
  process.stdin.resume();
  return ac.signal;
}

/** `simulate --containers`: the local image (built from this package, or reused) and a network of containers. */
async function simulateContainers(runner: string): Promise<Awaited<ReturnType<typeof containerLayout>>> {
  if (runner !== 'builtin') throw new UsageError(`--containers runs the builtin trainer only (the image has no Python), not --runner ${runner}`);
  const image = await buildFedhpcImage();
  return containerLayout({ image: image.tag });
}

async function cmdSimulate(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      sites: { type: 'string' },
      rounds: { type: 'string' },
      strategy: { type: 'string' },
      'state-dir': { type: 'string' },
      'min-sites': { type: 'string' },
      timeout: { type: 'string' },
      drop: { type: 'string', multiple: true },
      runner: { type: 'string' },
      python: { type: 'string' },
      'site-speeds': { type: 'string' },
      'budget-s': { type: 'string' },
      overlap: { type: 'boolean', default: false },
      fragments: { type: 'string' },
      'no-secure-aggregation': { type: 'boolean', default: false },
      containers: { type: 'boolean', default: false },
      coordinators: { type: 'string' },
      'nats-cluster': { type: 'string' },
      'kill-leader-at': { type: 'string' },
      shards: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const shards = values.shards === undefined ? 0 : intOption(values.shards, 'shards', 0, 1);
  if (shards > 0 && values.coordinators !== undefined) throw new UsageError('--shards runs beside one coordinator: not with --coordinators (not built yet)');
  const pair = pairOptions({ coordinators: values.coordinators, natsCluster: values['nats-cluster'], killLeaderAt: values['kill-leader-at'], containers: values.containers === true });
  const strategy = (values.strategy ?? 'diloco') as SimulateStrategy;
  if (!SIMULATE_STRATEGIES.includes(strategy)) {
    throw new UsageError(`--strategy must be one of ${SIMULATE_STRATEGIES.join(', ')}, got ${JSON.stringify(values.strategy)}`);
  }
  const speeds = speedOptions({
    sites: values.sites === undefined ? undefined : intOption(values.sites, 'sites', 4),
    runner: values.runner,
    siteSpeeds: values['site-speeds'],
    budgetS: values['budget-s'],
    overlap: values.overlap,
    fragments: values.fragments,
  });
  const sites = speeds.sites;
  const drop = (values.drop ?? []).map((d) => {
    const [site, phase] = d.split('@');
    if (!site || !phase || !DROP_PHASES.includes(phase as DropPhase)) {
      throw new UsageError(`--drop must be SITE@PHASE with PHASE one of ${DROP_PHASES.join(', ')}, got ${JSON.stringify(d)}`);
    }
    if (!/^site-\d+$/.test(site) || Number(site.slice(5)) > sites || Number(site.slice(5)) < 1) throw new UsageError(`--drop names ${site}; the sites are site-1 … site-${sites}`);
    return { site, phase: phase as DropPhase };
  });
  const json = values.json === true;
  const print = (r: SimulateRecord): void => {
    if (json) return out(JSON.stringify(r));
    if (r.type === 'start') {
      const how = speeds.siteSpeeds ? `; stand-in trainers at speeds ${speeds.siteSpeeds.join(':')}` : speeds.runner === 'standin' ? '; stand-in trainers' : '';
      const budget = speeds.budgetS === undefined ? '' : `, a ${speeds.budgetS} s budget a round${speeds.overlap ? ', training overlapped with the syncs' : ''}`;
      out(`fedhpc simulate: ${r.sites} sites, ${r.rounds} rounds, ${r.strategy}${how}${budget}; state in ${r.stateDir}`);
      if (r.dashboard) out(`dashboard: ${r.dashboard}`);
      if (pair) out(`a standby pair (${r.coordinator}) over a 3-node NATS cluster on loopback; lease TTL shortened to ${DEMO_LEASE.ttlMs / 1000} s for the demo (default ${LEASE_DEFAULTS.ttlMs / 1000} s)`);
    } else if (r.type === 'leader') {
      out(leaderText(r));
    } else if (r.type === 'round') {
      const per = Object.entries(r.siteEvalLoss).map(([s, l]) => `${s}=${l.toFixed(3)}`).join(' ');
      out(
        `round ${String(r.round).padStart(3)}${r.secure ? ' [secure]' : ''}  sites ${r.participants.length}${r.dropped.length ? ` (dropped ${r.dropped.join(',')})` : ''}  ` +
          `eval ${r.evalLoss.toFixed(4)} [${per}]  work [${workText(r.work)}]  up ${(r.bytesUp / 1e6).toFixed(2)} MB  down ${(r.bytesDown / 1e6).toFixed(2)} MB  ${r.seconds.toFixed(1)} s`,
      );
    } else {
      out(
        `done: ${r.rounds} rounds, ${r.sites} sites in ${r.seconds.toFixed(1)} s; eval loss ${r.initialEvalLoss.toFixed(4)} -> ${r.finalEvalLoss.toFixed(4)} ` +
          `(${speeds.runner === 'standin' ? 'the stand-in objective, not a language model' : `bigram baseline ${r.bigramEvalLoss.toFixed(4)}`}); model ${r.modelSha256}`,
      );
      if (r.ha) out(pairSummaryText(r.ha));
      if (r.shards) out(`aggregator shards: ${r.shards.count}; ${r.shards.roundsAggregated} of ${r.rounds} rounds aggregated on them (the others by the coordinator alone)`);
    }
  };
  await simulate({
    sites,
    rounds: intOption(values.rounds, 'rounds', 10),
    strategy,
    stateDir: values['state-dir'],
    minSites: values['min-sites'] === undefined ? undefined : intOption(values['min-sites'], 'min-sites', 1),
    cliPath: fileURLToPath(import.meta.url),
    timeoutS: intOption(values.timeout, 'timeout', 600),
    secure: values['no-secure-aggregation'] !== true,
    runner: speeds.runner,
    siteSpeeds: speeds.siteSpeeds,
    budgetS: speeds.budgetS,
    overlap: speeds.overlap,
    layout: values.containers ? await simulateContainers(speeds.runner) : undefined,
    python: values.python,
    drop,
    pair,
    shards,
    emit: print,
    signal: onTerminate(),
  });
  return 0;
}

/** A round's work per site: `site-1 20 steps 41.0k tokens busy 0.83`, with staleness and applied staleness when not 0. */
function workText(work: Readonly<Record<string, SiteRoundWork>>): string {
  const k = (n: number): string => (n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : String(n));
  return Object.entries(work)
    .map(([site, w]) => {
      const busy = w.busyFraction === undefined ? '' : ` busy ${w.busyFraction.toFixed(2)}`;
      const stale = w.staleness ? ` stale ${w.staleness}` : '';
      const late = w.appliedStaleness ? ` applied ${w.appliedStaleness} steps late` : '';
      return `${site} ${w.steps} steps ${k(w.tokens)} tokens${busy}${stale}${late}`;
    })
    .join(', ');
}

async function cmdCoordinator(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string' }, json: { type: 'boolean' } }, strict: true });
  const config = loadCoordinatorConfig(required(values.config, 'config'));
  const logger = createLogger({ name: 'coordinator', level: config.log.level, base: { federation: config.federation } });
  logger.info({ config }, 'configuration');
  warnIfHeapUntuned(logger);
  if (config.ha) {
    // A standby pair's coordinator: it exits when it loses the leadership, for its supervisor to
    // start it again as a standby (exit 3); a shutdown hands the lease over (exit 0).
    const exit = await refusedStart(logger, runHaCoordinator({ config, logger, signal: onTerminate() }));
    if (exit.kind === 'stopped') return 0;
    // A connection that died with NATS may keep the event loop alive: the process ends regardless.
    setTimeout(() => process.exit(3), 1_000).unref();
    return 3;
  }
  const handle = await refusedStart(logger, startCoordinator({ config, logger }));
  const signal = onTerminate();
  await new Promise((r) => signal.addEventListener('abort', r, { once: true }));
  logger.info('shutting down');
  await handle.stop();
  return 0;
}

/**
 * `started`, or its coded refusal (RUN_CONFIG_MISMATCH, STATE_CORRUPT, …) logged at fatal with its
 * code, where the operator reads the coordinator's log, before it is rethrown (stderr, exit 1).
 */
async function refusedStart<T>(logger: Logger, started: Promise<T>): Promise<T> {
  try {
    return await started;
  } catch (err) {
    if (err instanceof CoordinatorError) logger.fatal({ code: err.code, context: err.context }, err.message);
    // Whatever the refused start left open (a NATS connection) must not keep the process up; it
    // ends with the code main() sets for the error.
    setTimeout(() => process.exit(), 1_000).unref();
    throw err;
  }
}

/**
 * An aggregator shard (issue 22): attaches to the leader until SIGINT/SIGTERM (exit 0), or, started
 * by a coordinator as a local shard, until that coordinator exits; a leader's
 * refusal no retry can mend (its certificate, name or version) exits 1, naming the code.
 */
async function cmdAggregator(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string' }, json: { type: 'boolean', default: false } }, strict: true });
  const config = loadShardConfig(required(values.config, 'config'));
  const logger = createLogger({ name: 'aggregator', level: config.log.level, base: { federation: config.federation, shard: config.name } });
  logger.info({ config }, 'configuration');
  warnIfHeapUntuned(logger);
  try {
    await runShard({ config, logger, signal: process.env[EXIT_WITH_STDIN] === '1' ? AbortSignal.any([onTerminate(), onStdinClosed()]) : onTerminate() });
    logger.info('shutting down');
    return 0;
  } catch (err) {
    if (!(err instanceof ShardRefusedError)) throw err;
    logger.fatal({ code: err.code }, err.message);
    if (values.json) out(JSON.stringify({ error: err.code, message: err.message }));
    process.stderr.write(`fedhpc aggregator: ${err.code}: ${printable(err.message)}\n`);
    return 1;
  }
}

async function cmdSite(args: string[]): Promise<number> {
  if (args[0] === 'enroll' || args[0] === 'renew') return cmdSiteEnrol(args[0], args.slice(1));
  const { values } = parseArgs({ args, options: { config: { type: 'string' }, 'die-at': { type: 'string' }, json: { type: 'boolean' } }, strict: true });
  const dieAt = values['die-at'] as DropPhase | undefined;
  if (dieAt !== undefined && !DROP_PHASES.includes(dieAt)) throw new UsageError(`--die-at must be one of ${DROP_PHASES.join(', ')}, got ${JSON.stringify(dieAt)}`);
  const config = loadSiteConfig(required(values.config, 'config'));
  const logger = createLogger({ name: 'site-agent', level: config.log.level, base: { site: config.site } });
  logger.info({ config }, 'configuration');
  warnIfHeapUntuned(logger);
  const metrics = new AgentMetrics(config.site);
  const runner = createRunner(config, { log: logger.child({ component: 'runner' }), metrics });
  const endpoint = config.metrics
    ? await serveMetrics({ ...config.metrics, contentType: metrics.registry.contentType, text: () => metrics.text() })
    : undefined;
  if (endpoint) logger.info({ metrics: endpoint.url }, 'metrics endpoint listening');
  const agent = new SiteAgent({ config, runner, logger, dieAt, metrics });
  try {
    await agent.run(onTerminate());
    return 0;
  } catch (err) {
    if (err instanceof SiteAgentError) {
      logger.fatal({ code: err.code }, err.message);
      process.stderr.write(`fedhpc site: ${err.code}: ${printable(err.message, { keepNewlines: true })}\n`);
      return 1;
    }
    throw err;
  } finally {
    // Jobs submitted ahead (runner.submitAhead) wait for tasks this agent will not receive.
    await runner.close?.();
    await endpoint?.close();
  }
}

async function cmdSiteEnrol(command: 'enroll' | 'renew', args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { site: { type: 'string' }, federation: { type: 'string' }, out: { type: 'string' }, config: { type: 'string' }, json: { type: 'boolean', default: false } },
    strict: true,
  });
  const json = values.json === true;
  if (command === 'renew') return renewCommand({ config: required(values.config, 'config'), out: values.out, json }, out);
  return enrolCommand({ site: required(values.site, 'site'), federation: required(values.federation, 'federation'), out: required(values.out, 'out'), json }, out);
}

async function cmdProvision(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      federation: { type: 'string' },
      sites: { type: 'string' },
      admins: { type: 'string' },
      out: { type: 'string' },
      coordinator: { type: 'string' },
      coordinators: { type: 'string' },
      aggregators: { type: 'string' },
      'local-shards': { type: 'string' },
      force: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const sites = required(values.sites, 'sites').split(',').filter(Boolean);
  const localShards = values['local-shards'] === undefined ? 0 : Number(values['local-shards']);
  if (values['local-shards'] !== undefined && !(Number.isSafeInteger(localShards) && localShards >= 1 && localShards <= 64)) throw new UsageError(`--local-shards takes a whole number from 1 to 64, got ${JSON.stringify(values['local-shards'])}`);
  if (localShards > 0 && (values.aggregators !== undefined || values.coordinators !== undefined)) throw new UsageError('--local-shards runs beside one coordinator, not with --aggregators or --coordinators');
  const aggregators = values.aggregators === undefined ? [] : parseAggregators(values.aggregators);
  if (values.coordinator !== undefined && values.coordinators !== undefined) throw new UsageError('give --coordinator host:port or --coordinators a,b, not both');
  const coordinatorAddress = values.coordinator ?? 'localhost:7443';
  const port = coordinatorAddress.slice(coordinatorAddress.lastIndexOf(':') + 1);
  // Several coordinators (a leader and its standbys): a certificate and config each, under coordinators/<name>/.
  const coordinators = values.coordinators === undefined ? { coordinatorAddress, listen: `0.0.0.0:${port}` } : { coordinators: parseCoordinators(values.coordinators) };
  const files = await writeFederationFiles({
    dir: required(values.out, 'out'),
    federation: required(values.federation, 'federation'),
    sites,
    admins: required(values.admins, 'admins').split(',').filter(Boolean),
    ...coordinators,
    aggregators,
    ...(localShards > 0 ? { localShards } : {}),
    run: { id: 'run-1', rounds: 10, minSites: Math.max(1, sites.length - 1), expectedSites: sites, train: DEMO_TRAIN },
    force: values.force === true,
  });
  const summary = {
    coordinatorConfig: files.coordinatorConfig,
    ...(values.coordinators === undefined ? {} : { coordinators: Object.fromEntries(files.coordinatorConfigs) }),
    sites: Object.fromEntries(files.siteConfigs),
    admins: Object.fromEntries(files.adminConfigs),
    ...(aggregators.length === 0 ? {} : { aggregators: Object.fromEntries(files.aggregatorConfigs) }),
    ...(localShards === 0 ? {} : { localShards: Object.fromEntries((files.manifest?.localShards ?? []).map((m) => [m.id, m.certPath])) }),
    caKey: files.manifest?.ca.keyPath,
  };
  if (values.json) out(JSON.stringify(summary));
  else {
    if (values.coordinators === undefined) out(`coordinator config: ${summary.coordinatorConfig}`);
    else for (const [c, f] of files.coordinatorConfigs) out(`coordinator ${c}: ${f}`);
    for (const [s, f] of files.siteConfigs) out(`site ${s}: ${f}`);
    for (const [a, f] of files.adminConfigs) out(`admin ${a}: ${f}`);
    for (const [a, f] of Object.entries(summary.aggregators ?? {})) out(`aggregator ${a}: ${f}`);
    for (const [a, f] of Object.entries(summary.localShards ?? {})) out(`local shard ${a} (serves sites on the coordinator's port + ${a.slice('local-'.length)}): ${f}`);
    if (summary.caKey) out(`CA key (keep it offline, never on the coordinator): ${summary.caKey}`);
  }
  return 0;
}

async function cmdAdmin(args: string[]): Promise<number> {
  if (args[0] === 'audit') return runAudit(args.slice(1));
  if (args[0] === 'dashboard-token') return dashboardTokenCommand(args.slice(1), out);
  const { values, positionals } = parseArgs({
    args,
    options: {
      config: { type: 'string' },
      json: { type: 'boolean', default: false },
      run: { type: 'string' },
      csr: { type: 'string' },
      ca: { type: 'string' },
      out: { type: 'string' },
      reason: { type: 'string' },
      limit: { type: 'string' },
      language: { type: 'string' },
      'validity-days': { type: 'string' },
      site: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      csv: { type: 'boolean', default: false },
    },
    allowPositionals: true,
    strict: true,
  });
  const command = positionals[0];
  if (!command || !(ADMIN_COMMANDS as readonly string[]).includes(command)) {
    throw new UsageError(`admin needs a command: ${ADMIN_COMMANDS.join(' | ')}`);
  }
  if (positionals.length > 2) throw new UsageError(`admin ${command} takes at most one argument, got ${positionals.slice(1).join(' ')}`);
  return runAdmin(
    {
      command: command as AdminCommand,
      target: positionals[1],
      config: required(values.config, 'config'),
      json: values.json === true,
      run: values.run,
      csr: values.csr,
      ca: values.ca,
      out: values.out,
      reason: values.reason,
      limit: values.limit === undefined ? undefined : intOption(values.limit, 'limit', 50),
      language: values.language,
      validityDays: values['validity-days'] === undefined ? undefined : intOption(values['validity-days'], 'validity-days', 365),
      signal: command === 'watch' ? onTerminate() : undefined,
      site: values.site,
      from: values.from,
      to: values.to,
      csv: values.csv === true,
    },
    out,
  );
}

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  simulate: cmdSimulate,
  coordinator: cmdCoordinator,
  aggregator: cmdAggregator,
  site: cmdSite,
  provision: cmdProvision,
  admin: cmdAdmin,
  export: (args) => runExport(args),
};

async function main(argv: string[]): Promise<number> {
  tuneGarbageCollector();
  // The native kernels, before anything makes a keystream, a hash or a workspace.
  useNativeKernels(loadNativeModule());
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h') {
    process.stdout.write(USAGE);
    return command ? 0 : 2;
  }
  const fn = COMMANDS[command];
  if (!fn) throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  // Every command answers --help before its options are checked (parseArgs would refuse it).
  if (wantsHelp(rest)) {
    process.stdout.write(usageOf(command));
    return 0;
  }
  return fn(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const code = (err as { code?: unknown }).code;
    // Messages may quote what a coordinator, a site or a file said: printed as data (common/text.ts).
    const lines = (text: string): string => printable(text, { keepNewlines: true });
    if (isUsageError(err)) {
      process.stderr.write(`fedhpc: ${lines((err as Error).message)}\n\n${USAGE}`);
      process.exitCode = 2;
    } else if (err instanceof ConfigError || err instanceof RunnerConfigError) {
      process.stderr.write(`fedhpc: ${lines(err.message)}\n`);
      process.exitCode = 2;
    } else if (typeof code === 'number' && typeof (err as { details?: unknown }).details === 'string') {
      // A gRPC error from the coordinator: its details start with the fedhpc error code, and are one line.
      process.stderr.write(`fedhpc: ${printable((err as { details: string }).details)}\n`);
      process.exitCode = 1;
    } else {
      const e = err as { message?: string };
      process.stderr.write(`fedhpc: ${typeof code === 'string' ? `${printable(code)}: ` : ''}${lines(e.message ?? String(err))}\n`);
      process.exitCode = 1;
    }
  },
);
