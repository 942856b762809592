/**
 * Reaching the coordinator through an outbound HTTP CONNECT proxy (common at HPC centres). With
 * `proxy` in the site config, the channel dials the proxy and asks it for a tunnel to the
 * coordinator; TLS (and the mTLS identity check) still runs end to end, inside the tunnel, against
 * the coordinator's name. Without it, grpc-js honours `grpc_proxy`/`https_proxy`/`http_proxy` and
 * `no_grpc_proxy`/`no_proxy` from the environment by itself.
 */
import type * as grpc from '@grpc/grpc-js';

/** Where the channel dials and the options that make it tunnel to the coordinator. */
export interface ProxiedTarget {
  readonly target: string;
  readonly options: grpc.ChannelOptions;
}

/**
 * The channel target and options for `coordinator` (`host:port`) through `proxy`
 * (`http://[user[:password]@]host:port`). The proxy URL is validated by the config schema.
 */
export function proxiedTarget(coordinator: string, proxy: string): ProxiedTarget {
  const url = new URL(proxy);
  const port = url.port === '' ? '80' : url.port;
  const options: grpc.ChannelOptions = {
    // grpc-js's own CONNECT support: the real target travels in this option, the proxy is dialled.
    'grpc.http_connect_target': `dns:///${coordinator}`,
    // The configured proxy wins over the environment's.
    'grpc.enable_http_proxy': 0,
    'grpc.default_authority': coordinator,
  };
  if (url.username) {
    const user = decodeURIComponent(url.username);
    options['grpc.http_connect_creds'] = url.password ? `${user}:${decodeURIComponent(url.password)}` : user;
  }
  return { target: `${url.hostname}:${port}`, options };
}
