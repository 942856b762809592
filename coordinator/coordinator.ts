/**
 * Starting and stopping a coordinator: state store, registry, round driver, and one gRPC server
 * (SiteService, AdminService, health, reflection) over mTLS.
 */
import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import { readTlsFiles } from '../common/tls.js';
import type { Logger } from '../common/logger.js';
import { MAX_MESSAGE_BYTES, loadPackageDefinition, loadProto } from '../proto/index.js';
import type { ResolvedCoordinatorConfig } from './config.js';
import { RoundDriver, systemClock, type Clock } from './driver.js';
import { EventBus } from './events.js';
import { createIdentityResolver } from './pki/index.js';
import { SiteRegistry } from './registry.js';
import { adminServiceHandlers } from './service/admin-service.js';
import { siteServiceHandlers } from './service/site-service.js';
import { LocalStateStore } from './state/store.js';

/** Version reported to agents and admins. */
export const COORDINATOR_VERSION = '0.1.0';

export interface CoordinatorHandle {
  /** `host:port` actually bound (port 0 in the config picks a free one). */
  readonly address: string;
  readonly port: number;
  readonly bus: EventBus;
  readonly driver: RoundDriver;
  /** Stops accepting calls, ends streams and closes the state store. */
  stop(): Promise<void>;
}

export interface StartCoordinatorOptions {
  readonly config: ResolvedCoordinatorConfig;
  readonly logger: Logger;
  readonly clock?: Clock;
  readonly onFatal?: (err: unknown) => void;
}

/** gRPC server options: large messages for 4 MiB chunks, keepalive to notice dead agents. */
export const SERVER_CHANNEL_OPTIONS: grpc.ServerOptions = {
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 5_000,
};

/** Starts a coordinator; resolves once it listens and its run has been recovered or started. */
export async function startCoordinator(options: StartCoordinatorOptions): Promise<CoordinatorHandle> {
  const { config, logger } = options;
  const clock = options.clock ?? systemClock;
  const tls = readTlsFiles(config.tls);
  const store = await LocalStateStore.open(config.stateDir, () => clock.now());
  if (store.journalRepairedBytes > 0) {
    logger.warn({ bytes: store.journalRepairedBytes }, 'cut off a torn last journal line (an append interrupted by a crash; it was never acknowledged)');
  }
  const bus = new EventBus(() => clock.now());
  const registry = new SiteRegistry(() => clock.now());
  const resolver = createIdentityResolver({ federation: config.federation });
  const onFatal =
    options.onFatal ??
    ((err: unknown) => {
      logger.fatal({ err }, 'coordinator cannot continue');
      process.exit(1);
    });
  const driver = new RoundDriver({ config, store, registry, bus, logger, clock, onFatal });

  const proto = loadProto();
  const server = new grpc.Server(SERVER_CHANNEL_OPTIONS);
  server.addService(
    proto.fedhpc.v1.SiteService.service,
    siteServiceHandlers({
      federation: config.federation,
      version: COORDINATOR_VERSION,
      heartbeatIntervalMs: config.heartbeatIntervalMs,
      maxChunkBytes: config.limits.maxChunkBytes,
      uploadIdleMs: 60_000,
      driver,
      registry,
      store,
      bus,
      resolver,
      logger,
      secure: (site) => driver.secureHandlers(site),
    }),
  );
  server.addService(
    proto.fedhpc.v1.AdminService.service,
    adminServiceHandlers({
      federation: config.federation,
      version: COORDINATOR_VERSION,
      runId: config.run.id,
      driver,
      registry,
      store,
      bus,
      resolver,
      maxBufferedEvents: 10_000,
    }),
  );
  const health = new HealthImplementation({ '': 'SERVING', 'fedhpc.v1.SiteService': 'SERVING', 'fedhpc.v1.AdminService': 'SERVING' });
  health.addToServer(server);
  new ReflectionService(loadPackageDefinition()).addToServer(server);

  const credentials = grpc.ServerCredentials.createSsl(tls.ca, [{ cert_chain: tls.cert, private_key: tls.key }], true);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(config.listen, credentials, (err, p) => (err ? reject(err) : resolve(p)));
  });
  const host = config.listen.slice(0, config.listen.lastIndexOf(':'));
  const address = `${host}:${port}`;
  await driver.start();
  logger.info({ address, federation: config.federation, stateDir: config.stateDir }, 'coordinator listening');

  return {
    address,
    port,
    bus,
    driver,
    async stop() {
      health.setStatus('', 'NOT_SERVING');
      driver.close();
      for (const site of registry.list()) site.close?.();
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
      await driver.idle().catch(() => undefined);
      await store.close();
    },
  };
}
