/** The agent's gRPC client: mTLS credentials and channel options for large, long-lived streams. */
import * as grpc from '@grpc/grpc-js';
import { clientWindowOptions } from '../common/grpc-window.js';
import { mutualTlsCredentials } from '../common/grpc-tls.js';
import { readTlsFiles } from '../common/tls.js';
import { MAX_MESSAGE_BYTES, loadProto, type SiteServiceClient } from '../proto/index.js';
import type { ResolvedSiteConfig } from './config.js';
import { proxiedTarget } from './proxy.js';

/**
 * Creates a SiteService client for `config.coordinator` — the one address being dialled, whose host
 * is the TLS server name checked unless `serverName` is set — authenticated by the site certificate.
 */
export function createSiteClient(config: { readonly coordinator: string } & Pick<ResolvedSiteConfig, 'serverName' | 'tls' | 'proxy'>): SiteServiceClient {
  const tls = readTlsFiles(config.tls);
  // The coordinator's name is checked by these credentials; an IP address is not sent as SNI (common/grpc-tls.ts).
  const credentials = mutualTlsCredentials(tls, { target: config.coordinator, serverName: config.serverName });
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
  };
  if (config.serverName) options['grpc.default_authority'] = config.serverName;
  const { SiteService } = loadProto().fedhpc.v1;
  if (config.proxy) {
    const via = proxiedTarget(config.coordinator, config.proxy);
    return new SiteService(via.target, credentials, { ...options, ...via.options, ...(config.serverName ? { 'grpc.default_authority': config.serverName } : {}) });
  }
  return new SiteService(config.coordinator, credentials, options);
}
