/**
 * Starting and stopping a coordinator: state store, registry, membership, round driver, and one gRPC
 * server (SiteService, AdminService, AggregatorService, health, reflection) behind the coordinator's
 * own mTLS listener.
 */
import { X509Certificate } from 'node:crypto';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import { createGrpcServer } from '../common/grpc-window.js';
import { readTlsFiles } from '../common/tls.js';
import type { Logger } from '../common/logger.js';
import { loadPackageDefinition, loadProto } from '../proto/index.js';
import type { ResolvedCoordinatorConfig } from './config.js';
import { RoundDriver, systemClock, type Clock } from './shell/driver.js';
import { checkConfiguredRun } from './shell/run-start.js';
import { EventBus, eventBody } from './observe/events.js';
import { createIdentityResolver } from './pki/index.js';
import { SiteRegistry } from './sites/registry.js';
import { adminServiceHandlers } from './service/admin-service.js';
import { aggregatorServiceHandlers } from './service/aggregator-service.js';
import { ShardRegistry, type ShardPlanSource } from './shards/registry.js';
import { PartUploads } from './shards/part-uploads.js';
import { PartDownloads } from './shards/part-downloads.js';
import { localShardCli, localShardNames, localShardServing, startLocalShards } from './shards/local.js';
import { CallLimiter, withCallLimits } from './service/limits.js';
import { TransferBudget } from './upload/budget.js';
import { siteServiceHandlers } from './service/site-service.js';
import { LocalStateStore } from './state/store.js';
import { tapAppends } from './audit/tap.js';
import { NatsPublisher } from './nats/publisher.js';
import { serveMetrics, type MetricsEndpoint } from '../common/metrics-http.js';
import { CoordinatorMetrics, registerShardMetrics } from './observe/metrics.js';
import { registerRunMetrics, runSnapshot } from './observe/run-metrics.js';
import { registerUsageMetrics } from './audit/usage.js';
import { healthProbe } from './observe/health-probe.js';
import { applyRetention } from './state/retention.js';
import { SiteAccess, accessResolver } from './sites/revocation.js';
import { RoundTimeline } from './shell/timeline.js';
import { SiteLogBook } from './sites/site-logs.js';
import { restoreMembership } from './sites/membership.js';
import { RefusalMonitor } from './observe/refusals.js';
import { listenTls } from './service/tls-listener.js';
import { SERVER_CHANNEL_OPTIONS } from './service/channel-options.js';
import { startDashboard, type DashboardEndpoint } from './dashboard/server.js';
import { FailureBook } from './dashboard/failures.js';
import { OpenAttemptUploads } from './observe/uploads.js';
import type { HaView } from './ha/view.js';
import { nativeUnavailable } from '../aggregation/index.js';

/** Version reported to agents and admins. */
export const COORDINATOR_VERSION = '0.1.0';

export interface CoordinatorHandle {
  /** `host:port` actually bound (port 0 in the config picks a free one). */
  readonly address: string;
  readonly port: number;
  readonly bus: EventBus;
  readonly driver: RoundDriver;
  /** The Prometheus endpoint, when `metrics` is configured. */
  readonly metrics: MetricsEndpoint | undefined;
  /** The web dashboard, when `dashboard` is configured. */
  readonly dashboard: DashboardEndpoint | undefined;
  /** Stops accepting calls, ends streams and closes the state store. */
  stop(): Promise<void>;
}

export interface StartCoordinatorOptions {
  readonly config: ResolvedCoordinatorConfig;
  readonly logger: Logger;
  readonly clock?: Clock;
  readonly onFatal?: (err: unknown) => void;
  /** A store opened by the caller (a standby pair's leader: the replicated journal); default: `config.stateDir`'s. */
  readonly store?: LocalStateStore;
  /** A standby pair's leader: what `admin status` shows of the pair (coordinator/ha/run.ts keeps it current). */
  readonly ha?: HaView;
}


/** Starts a coordinator; resolves once it listens and its run has been recovered or started. */
export async function startCoordinator(options: StartCoordinatorOptions): Promise<CoordinatorHandle> {
  const { config, logger } = options;
  const clock = options.clock ?? systemClock;
  const tls = readTlsFiles(config.tls);
  const opened = options.store ?? (await LocalStateStore.open(config.stateDir, () => clock.now()));
  try {
    // Before anything is appended (members, a run's records): a refused start leaves the journal as it was.
    checkConfiguredRun(opened.records(), config);
  } catch (err) {
    if (!options.store) await opened.close();
    throw err;
  }
  // With NATS, every durable journal append is also sent to the audit stream (after, never before).
  const store = config.nats ? tapAppends(opened, () => nats?.recordAppended()) : opened;
  if (store.journalRepairedBytes > 0) {
    logger.warn({ bytes: store.journalRepairedBytes }, 'cut off a torn last journal line (an append interrupted by a crash; it was never acknowledged)');
  }
  const bus = new EventBus(() => clock.now());
  const nats = config.nats
    ? new NatsPublisher({ nats: config.nats, federation: config.federation, bus, records: () => store.records(), logger, now: () => clock.now() })
    : undefined;
  const registry = new SiteRegistry(() => clock.now());
  const access = new SiteAccess(store.records());
  const logs = new SiteLogBook(bus, () => clock.now());
  registry.onTouch = (site, activity, progress) => logs.heartbeat(site, activity, progress);
  const timeline = new RoundTimeline(bus);
  const uploadBudget = new TransferBudget(config.limits.uploadBudgetBytes, clock);
  const metrics = new CoordinatorMetrics({ bus, sites: registry, timeline, now: () => clock.now(), federation: config.federation, budget: () => uploadBudget.usage() });
  // Refused handshakes, non-members and revoked certificates: counted, kept for `status`, logged.
  const refusals = new RefusalMonitor({ logger, now: () => clock.now(), count: (reason) => metrics.countRefused(reason) });
  const resolver = accessResolver(createIdentityResolver({ federation: config.federation }), access, refusals);
  const membership = await restoreMembership(store, config, refusals, logger);
  const onFatal =
    options.onFatal ??
    ((err: unknown) => {
      logger.fatal({ err }, 'coordinator cannot continue');
      process.exit(1);
    });
  const retention = config.retention;
  const afterCommit = retention
    ? async () => {
        const runId = driver.runContext?.plan.runId ?? '';
        const deleted = await applyRetention(store, runId, retention);
        if (deleted.length > 0) logger.info({ deleted, retention }, 'checkpoints deleted by retention');
      }
    : undefined;
  // Local shards (`localShards`) are listed as the configured ones are: a shard with a certificate of
  // its own serves sites at `:<port>` (the coordinator's host), one without reads `local` and serves none.
  const shardList =
    config.localShards > 0
      ? localShardNames(config.localShards).map((name, i) => ({ name, endpoint: localShardServing(config.tls.cert, config.listen, name, i + 1)?.endpoint ?? 'local' }))
      : config.aggregators;
  const shards: ShardRegistry = new ShardRegistry({
    shards: shardList,
    // Read only once the driver below runs a run.
    plan: (): ShardPlanSource | undefined => {
      const run = driver.runContext;
      return run ? { runId: run.plan.runId, globalSha256: run.globalSha256, shards: run.shards } : undefined;
    },
    now: () => clock.now(),
    onState: (change) => bus.emit('shard.state', change),
    onReceived: (shard, report) => partUploads.received(shard, report),
    onSent: (shard, report) => partDownloads.sent(shard, report),
  });
  const driver: RoundDriver = new RoundDriver({ config, store, registry, bus, logger, clock, onFatal, afterCommit, revokedSites: access.lockedOutSites(), shards: shardList.length > 0 ? shards : undefined });
  // Sites ask where their deltas go (AdmitUpload): to the shards in parts, when they all serve uploads.
  const partUploads = new PartUploads({ shards: shardList.length > 0 ? shards : undefined, driver, limits: () => driver.transferLimits(), maxChunkBytes: config.limits.maxChunkBytes, logger });
  // And where a model's download comes from: in parts from the shards, when they all serve sites.
  const partDownloads = new PartDownloads({
    shards: shardList.length > 0 ? shards : undefined,
    store,
    limits: () => driver.transferLimits(),
    maxChunkBytes: config.limits.maxChunkBytes,
    countDown: (site, bytes) => {
      driver.countBytes('down', bytes);
      const rec = registry.get(site);
      if (rec) rec.bytesDown += bytes;
    },
    logger,
  });
  registerShardMetrics(metrics.registry, () => shards.list());
  // Shards hear of a new run or global model at once (the assignment names both).
  bus.subscribe((e) => {
    if (e.kind === 'run.started' || e.kind === 'round.committed') shards.refresh();
    // Revocation applies at every shard: a revoked site's admissions there go, and its streams.
    const revoked = eventBody(e, 'site.revoked');
    if (revoked) shards.drop(revoked.site, `revoked by admin ${revoked.admin}${revoked.reason ? `: ${revoked.reason}` : ''}`);
    // An approved site (a new certificate, or one approved again) is no longer dropped at shards that attach later.
    const approved = eventBody(e, 'site.approved');
    if (approved) shards.undrop(approved.site);
  });
  registerRunMetrics({ registry: metrics.registry, bus, sites: registry, run: () => runSnapshot(driver, () => store.records()) });
  registerUsageMetrics(metrics.registry, () => store.records());

  const proto = loadProto();
  const server = createGrpcServer({ ...SERVER_CHANNEL_OPTIONS, interceptors: [metrics.interceptor] });
  // Every fedhpc RPC passes the per-caller rate and concurrency limits (health and reflection do not).
  const limiter = new CallLimiter(config.limits, () => clock.now());
  server.addService(
    proto.fedhpc.v1.SiteService.service,
    withCallLimits(proto.fedhpc.v1.SiteService.service, siteServiceHandlers({
      federation: config.federation,
      version: COORDINATOR_VERSION,
      heartbeatIntervalMs: config.heartbeatIntervalMs,
      maxChunkBytes: config.limits.maxChunkBytes,
      uploadBudget,
      clock,
      driver,
      registry,
      store,
      bus,
      resolver,
      membership,
      logger,
      secure: (site) => driver.secureHandlers(site),
      partUploads,
      partDownloads,
      limiter,
    }), limiter),
  );
  server.addService(
    proto.fedhpc.v1.AdminService.service,
    withCallLimits(proto.fedhpc.v1.AdminService.service, adminServiceHandlers({
      federation: config.federation,
      version: COORDINATOR_VERSION,
      driver,
      registry,
      store,
      bus,
      resolver,
      access,
      logs,
      timeline,
      caPem: tls.ca.toString('utf8'),
      logger,
      maxBufferedEvents: 10_000,
      uploadBudget: () => uploadBudget.usage(),
      membership,
      refusals,
      ha: options.ha,
      shards,
    }), limiter),
  );
  server.addService(
    proto.fedhpc.v1.AggregatorService.service,
    withCallLimits(proto.fedhpc.v1.AggregatorService.service, aggregatorServiceHandlers({
      resolver,
      shards,
      term: options.ha?.snapshot().term ?? 0,
      refusals,
      logger: logger.child({ component: 'shards' }),
      local: config.localShards > 0 ? { certificate: new X509Certificate(tls.cert).raw, names: new Set(shardList.map((s) => s.name)) } : undefined,
    }), limiter),
  );
  const health = new HealthImplementation({ '': 'SERVING', 'fedhpc.v1.SiteService': 'SERVING', 'fedhpc.v1.AdminService': 'SERVING', 'fedhpc.v1.AggregatorService': 'SERVING' });
  health.addToServer(server);
  new ReflectionService(loadPackageDefinition()).addToServer(server);

  // Local shards need the built CLI: refused before anything listens.
  const shardCli = config.localShards > 0 ? localShardCli() : undefined;
  // TLS is terminated here, not inside grpc-js, so that refused handshakes are seen (tls-listener.ts).
  const listener = await listenTls({ listen: config.listen, tls, server, refusals });
  const port = listener.port;
  const host = config.listen.slice(0, config.listen.lastIndexOf(':'));
  const address = `${host}:${port}`;
  // Started once the port is bound (a failed bind leaves no NATS connection behind), before the run.
  nats?.start();
  await driver.start();
  const localShards =
    shardCli !== undefined
      ? await startLocalShards({
          cli: shardCli,
          count: config.localShards,
          federation: config.federation,
          address,
          tls: config.tls,
          certPem: tls.cert,
          stateDir: config.stateDir,
          listen: config.listen,
          logLevel: config.log.level,
          limits: config.limits,
          logger: logger.child({ component: 'shards' }),
        })
      : undefined;
  // The metrics port also answers grpc.health.v1 over cleartext HTTP/2, for probes without a certificate.
  const probe = config.metrics ? healthProbe(health) : undefined;
  // A start refused from here on (a port taken) must not leave the local shard processes behind.
  const stopShardsOnFailure = <T>(started: Promise<T>): Promise<T> =>
    started.catch(async (err: unknown) => {
      await localShards?.stop();
      throw err;
    });
  const metricsEndpoint = config.metrics
    ? await stopShardsOnFailure(serveMetrics({ ...config.metrics, contentType: metrics.registry.contentType, text: () => metrics.text(), http2: probe?.accept }))
    : undefined;
  // Its readers follow the bus from start-up, so the pages show failures and uploads since then.
  const failures = config.dashboard ? new FailureBook(bus) : undefined;
  const uploads = config.dashboard ? new OpenAttemptUploads(bus) : undefined;
  const dashboard =
    config.dashboard && failures && uploads
      ? await stopShardsOnFailure(startDashboard({
          config: config.dashboard,
          tls,
          bus,
          logger: logger.child({ component: 'dashboard' }),
          sources: {
            federation: config.federation,
            version: COORDINATOR_VERSION,
            driver,
            registry,
            records: () => store.records(),
            timeline,
            isRevoked: (site) => access.isRevoked(site),
            members: () => membership.list(),
            uploadBudget: () => uploadBudget.usage(),
            uploads,
            failures,
            shards: () => shards.list(),
            ca: new X509Certificate(tls.ca),
            now: () => clock.now(),
          },
        }))
      : undefined;
  logger.info({ address, federation: config.federation, stateDir: config.stateDir, metrics: metricsEndpoint?.url, dashboard: dashboard?.url }, 'coordinator listening');
  const nativeWhy = nativeUnavailable();
  if (nativeWhy !== undefined) logger.info({ why: nativeWhy }, 'native kernels unavailable: CRC32C, hashing, value checks and unmasking use their portable forms (the same results, more CPU)');

  return {
    address,
    port,
    bus,
    driver,
    metrics: metricsEndpoint,
    dashboard,
    async stop() {
      health.setStatus('', 'NOT_SERVING');
      await dashboard?.close();
      probe?.close();
      await metricsEndpoint?.close();
      driver.close();
      for (const site of registry.list()) site.close?.();
      // The children first: with the registry closed and the port still open they would attach again.
      await localShards?.stop();
      shards.close();
      listener.stopAccepting();
      // Streams that never end on their own (an idle Tasks stream) must not hold shutdown up.
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2_000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      await listener.close();
      await driver.idle().catch(() => undefined);
      await nats?.stop();
      await store.close();
    },
  };
}
