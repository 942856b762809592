/**
 * A standby coordinator's responder (issue 19): while another coordinator leads, a standby answers
 * on its listener so that sites and admins configured with several addresses find the leader.
 * Every method of `SiteService`, `AdminService` and `AggregatorService` (shards, issue 22),
 * enumerated from the loaded proto, fails with `NOT_LEADER` naming the leader (`fedhpc-leader`
 * metadata, absent while none is known); health says NOT_SERVING for each service. Callers are authenticated as the leader authenticates them: the
 * same mTLS listener (coordinator/service/tls-listener.ts) closes a connection whose certificate
 * does not verify against the federation CA, and a certificate of another federation or of the
 * wrong role for the service is refused (`UNAUTHENTICATED`, `PERMISSION_DENIED`) before the leader
 * is named. Membership and revocations are the leader's to check: the standby serves no work, and
 * the leader's address is no secret from a holder of a certificate of the federation.
 *
 * `runHaCoordinator` (coordinator/ha/run.ts) runs it while the coordinator stands by, and stops it
 * once the coordinator holds the lease (docs/protocol.md, "Standby coordinators and NOT_LEADER").
 */
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { createGrpcServer } from '../../common/grpc-window.js';
import { SERVER_CHANNEL_OPTIONS } from '../service/channel-options.js';
import type { Logger } from '../../common/logger.js';
import { readTlsFiles, type TlsFiles } from '../../common/tls.js';
import { loadProto } from '../../proto/index.js';
import type { ResolvedCoordinatorConfig } from '../config.js';
import { CoordinatorError, toServiceError } from '../core/errors.js';
import { RefusalMonitor, type RefusalSink } from '../observe/refusals.js';
import { createIdentityResolver, type AuthContextLike, type Role } from '../pki/index.js';
import { authenticate } from '../service/auth.js';
import { listenTls } from '../service/tls-listener.js';

/** What a standby responder is made of. */
export interface StandbyServerOptions {
  /** The coordinator's own settings: its federation, its `listen` address, its TLS files. */
  readonly config: Pick<ResolvedCoordinatorConfig, 'federation' | 'listen'> & { readonly tls: TlsFiles };
  /** The current leader's `host:port` as sites and admins dial it, or undefined while none is known. */
  readonly leader: () => string | undefined;
  readonly logger: Logger;
  /** Where refused handshakes go; default a {@link RefusalMonitor} logging to `logger`. */
  readonly refusals?: RefusalSink;
}

/** A running standby responder. */
export interface StandbyServer {
  /** `host:port` actually bound (port 0 in `listen` picks a free one). */
  readonly address: string;
  /** Stops answering: ends open calls and closes the listener. */
  stop(): Promise<void>;
}

/** The role each fedhpc service requires of its caller's certificate. */
const SERVICES = [
  { name: 'SiteService', role: 'site' },
  { name: 'AdminService', role: 'admin' },
  { name: 'AggregatorService', role: 'aggregator' },
] as const satisfies readonly { name: 'SiteService' | 'AdminService' | 'AggregatorService'; role: Role }[];


type AnyCall = {
  getAuthContext(): AuthContextLike;
  getPeer(): string;
  emit(event: 'error', err: unknown): boolean;
};

/** Starts a standby responder on `config.listen` with the coordinator's certificate. */
export async function startStandbyServer(o: StandbyServerOptions): Promise<StandbyServer> {
  const { config, logger } = o;
  const tls = readTlsFiles(config.tls);
  const resolver = createIdentityResolver({ federation: config.federation });
  const refusals = o.refusals ?? new RefusalMonitor({ logger, now: () => Date.now() });
  const proto = loadProto().fedhpc.v1;
  const server = createGrpcServer(SERVER_CHANNEL_OPTIONS);
  const health = new HealthImplementation({ '': 'SERVING' });
  for (const { name, role } of SERVICES) {
    const service = proto[name].service;
    server.addService(service, notLeaderHandlers(service, role, resolver, o.leader));
    // Load balancers and probes send nothing for these here; the process itself is alive ('').
    health.setStatus(`fedhpc.v1.${name}`, 'NOT_SERVING');
  }
  health.addToServer(server);
  const listener = await listenTls({ listen: config.listen, tls, server, refusals });
  const host = config.listen.slice(0, config.listen.lastIndexOf(':'));
  const address = `${host}:${listener.port}`;
  logger.info({ address, leader: o.leader() ?? null }, 'standby coordinator answering NOT_LEADER');
  let stopping: Promise<void> | undefined;
  return {
    address,
    stop: () =>
      (stopping ??= (async () => {
        listener.stopAccepting();
        // Nothing here is long-lived (every call fails at once): a forced shutdown loses nothing.
        server.forceShutdown();
        await listener.close();
      })()),
  };
}

/**
 * A handler for every method of `service` that authenticates the caller for `role` and fails with
 * `NOT_LEADER` naming `leader()`; a refused caller gets the authentication error instead.
 */
function notLeaderHandlers(
  service: grpc.ServiceDefinition,
  role: Role,
  resolver: ReturnType<typeof createIdentityResolver>,
  leader: () => string | undefined,
): grpc.UntypedServiceImplementation {
  const answer = (call: AnyCall): ReturnType<typeof toServiceError> => {
    try {
      authenticate(call, resolver, role);
      const named = leader();
      throw new CoordinatorError('NOT_LEADER', named ? `this coordinator is a standby; the leader is ${named}` : 'this coordinator is a standby; no leader is known yet', named ? { leader: named } : {});
    } catch (err) {
      return toServiceError(err);
    }
  };
  const handlers: grpc.UntypedServiceImplementation = {};
  for (const [method, def] of Object.entries(service)) {
    // A method that answers with one message ends through its callback; a streamed answer through 'error'.
    handlers[method] = def.responseStream
      ? (call: AnyCall) => void call.emit('error', answer(call))
      : (call: AnyCall, callback: grpc.sendUnaryData<unknown>) => callback(answer(call));
  }
  return handlers;
}
