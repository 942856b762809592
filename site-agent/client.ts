/** The agent's gRPC client: mTLS credentials and channel options for large, long-lived streams. */
import * as grpc from '@grpc/grpc-js';
import { readTlsFiles } from '../common/tls.js';
import { MAX_MESSAGE_BYTES, loadProto, type SiteServiceClient } from '../proto/index.js';
import type { ResolvedSiteConfig } from './config.js';

/** Creates a SiteService client for `config.coordinator`, authenticated by the site certificate. */
export function createSiteClient(config: Pick<ResolvedSiteConfig, 'coordinator' | 'serverName' | 'tls'>): SiteServiceClient {
  const tls = readTlsFiles(config.tls);
  const credentials = grpc.credentials.createSsl(tls.ca, tls.key, tls.cert);
  const options: grpc.ChannelOptions = {
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    'grpc.keepalive_time_ms': 10_000,
    'grpc.keepalive_timeout_ms': 5_000,
    'grpc.keepalive_permit_without_calls': 1,
    // Reconnection is the agent's job (jittered backoff), so keep the channel's own short.
    'grpc.initial_reconnect_backoff_ms': 200,
    'grpc.max_reconnect_backoff_ms': 2_000,
  };
  if (config.serverName) {
    options['grpc.ssl_target_name_override'] = config.serverName;
    options['grpc.default_authority'] = config.serverName;
  }
  const { SiteService } = loadProto().fedhpc.v1;
  return new SiteService(config.coordinator, credentials, options);
}
