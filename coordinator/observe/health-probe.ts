/**
 * `grpc.health.v1` for probes that cannot present a client certificate (Kubernetes' gRPC probes,
 * `grpc_health_probe` without TLS flags, a load balancer's check): a gRPC server holding only the
 * health service — the coordinator's own HealthImplementation, so both answer the same status — fed
 * the cleartext HTTP/2 connections of the metrics listener (common/metrics-http.ts). It binds no
 * port of its own and serves nothing else: no fedhpc service, no reflection.
 */
import * as grpc from '@grpc/grpc-js';
import type { HealthImplementation } from 'grpc-health-check';
import type { Socket } from 'node:net';

/** Takes connections from the metrics listener; `close` ends them. */
export interface HealthProbe {
  readonly accept: (socket: Socket) => void;
  close(): void;
}

/** A health-only gRPC server behind a connection injector (grpc-js 1.14's public API for that). */
export function healthProbe(health: HealthImplementation): HealthProbe {
  const server = new grpc.Server();
  health.addToServer(server);
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  return {
    accept: (socket) => injector.injectConnection(socket),
    close() {
      injector.destroy();
      server.forceShutdown();
    },
  };
}
