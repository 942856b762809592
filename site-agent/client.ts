/** The agent's gRPC client: mTLS credentials and channel options for large, long-lived streams. */
import * as grpc from '@grpc/grpc-js';
import { clientWindowOptions } from '../common/grpc-window.js';
import { mutualTlsCredentials, type ServerRole } from '../common/grpc-tls.js';
import { readTlsFiles } from '../common/tls.js';
import { MAX_MESSAGE_BYTES, loadProto, type SiteServiceClient } from '../proto/index.js';
import type { ResolvedSiteConfig } from './config.js';
import { proxiedTarget } from './proxy.js';

/**
 * Creates a SiteService client for `config.coordinator` — the one address being dialled, whose host
 * is the TLS server name checked unless `serverName` is set — authenticated by the site certificate.
 * The server's certificate must carry `role`: the coordinator's, or `aggregator` for a shard's
 * endpoint that takes part uploads.
 */
export function createSiteClient(config: { readonly coordinator: string } & Pick<ResolvedSiteConfig, 'serverName' | 'tls' | 'proxy'>, role: ServerRole = 'coordinator'): SiteServiceClient {
  const tls = readTlsFiles(config.tls);
  // The coordinator's name is checked by these credentials; an IP address is not sent as SNI (common/grpc-tls.ts).
  const credentials = mutualTlsCredentials(tls, { target: config.coordinator, serverName: config.serverName, role });
  const options: grpc.ChannelOptions = {
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    'grpc.keepalive_time_ms': 10_000,
    // 20 s (gRPC's default), not less: a PING answer queues behind up to a window of upload
    // data (common/grpc-window.ts), and a short timeout dropped busy uploads under load.
    'grpc.keepalive_timeout_ms': 20_000,
    'grpc.keepalive_permit_without_calls': 1,
    // Reconnection is the agent's job (jittered backoff), so keep the channel's own short.
    'grpc.initial_reconnect_backoff_ms': 200,
    'grpc.max_reconnect_backoff_ms': 2_000,
    // Downloads of the global model need a receive window larger than HTTP/2's 64 KiB too.
    ...clientWindowOptions(),
    // Retrying is the agent's job too (it resumes a stripe from the coordinator's offset). And with
    // no retry buffer grpc-js calls a message's write callback only once HTTP/2 has written it —
    // a message kept for a retry is called back at once, before it is sent — which is when the
    // upload sender hands a chunk's buffer back for a later chunk (proto/upload-codec.ts).
    'grpc.enable_retries': 0,
    'grpc.per_rpc_retry_buffer_size': 0,
  };
  if (config.serverName) options['grpc.default_authority'] = config.serverName;
  const { SiteService } = loadProto().fedhpc.v1;
  const via = config.proxy ? proxiedTarget(config.coordinator, config.proxy) : undefined;
  const client = via
    ? new SiteService(via.target, credentials, { ...options, ...via.options, ...(config.serverName ? { 'grpc.default_authority': config.serverName } : {}) })
    : new SiteService(config.coordinator, credentials, options);
  calledBackAfterWrite.add(client);
  return client;
}

/**
 * Clients for aggregator shards' endpoints (part uploads and downloads), each checked for the
 * `aggregator` role: a shard's name is its endpoint's host. An endpoint without a host (`:7444`, a
 * shard the coordinator runs on its own host) is on the host of `coordinator`, the address this
 * agent dials the coordinator at, and is checked under the coordinator's TLS name.
 */
export function shardClients(config: Pick<ResolvedSiteConfig, 'tls' | 'proxy' | 'serverName'>, coordinator: string): (endpoint: string) => SiteServiceClient {
  return (endpoint) => {
    const local = endpoint.startsWith(':');
    const address = local ? `${coordinator.slice(0, coordinator.lastIndexOf(':'))}${endpoint}` : endpoint;
    return createSiteClient({ coordinator: address, tls: config.tls, proxy: config.proxy, serverName: local ? config.serverName : undefined }, 'aggregator');
  };
}

/** Clients made by {@link createSiteClient}, whose channel options are set as recycling needs. */
const calledBackAfterWrite = new WeakSet<object>();

/**
 * Whether grpc-js calls back a message written on `client`'s streams only once HTTP/2 has written
 * it (a client of {@link createSiteClient}), so that the message's memory may then be used again.
 */
export function callsBackAfterWrite(client: object): boolean {
  return calledBackAfterWrite.has(client);
}
