/**
 * Client credentials for fedhpc's mutual TLS that check the coordinator's name themselves, so that
 * a coordinator dialled by IP address gets no TLS server name. grpc-js 1.14 sets the server name to
 * the target's host, IP or not, and Node warns once per process (DEP0123: RFC 6066 forbids an IP
 * in SNI), so every admin command against a coordinator provisioned with an IP printed it. Here the
 * expected name — the config's `serverName`, else the host of the coordinator's address — is sent
 * as SNI only when it is a DNS name, and the certificate is checked against it either way (an IP
 * against the certificate's IP SANs), as grpc-js's own credentials do.
 */
import * as grpc from '@grpc/grpc-js';
import { isIP, type Socket } from 'node:net';
import * as tls from 'node:tls';
import type { TlsMaterial } from './tls.js';

/** The host of a gRPC target (`host:port`, `[v6]:port`, with or without a `dns:`/`ipv4:`/`ipv6:` scheme). */
export function targetHost(target: string): string {
  const bare = target.replace(/^(?:dns:(?:\/\/[^/]*\/)?|ipv4:|ipv6:)/, '');
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(bare);
  if (bracketed) return bracketed[1]!;
  const colon = bare.lastIndexOf(':');
  // One colon: host:port. Several: a bare IPv6 address, without a port.
  return colon >= 0 && bare.indexOf(':') === colon ? bare.slice(0, colon) : bare;
}

class MutualTlsCredentials extends grpc.ChannelCredentials {
  constructor(
    private readonly context: tls.SecureContext,
    private readonly name: string,
  ) {
    super();
  }

  _isSecure(): boolean {
    return true;
  }

  _equals(other: grpc.ChannelCredentials): boolean {
    return other === this;
  }

  _createSecureConnector(_target: unknown, _options: grpc.ChannelOptions, callCredentials?: grpc.CallCredentials): grpc.experimental.SecureConnector {
    const { context, name } = this;
    return {
      connect: (socket: Socket) =>
        new Promise<grpc.experimental.SecureConnectResult>((resolve, reject) => {
          const secured = tls.connect(
            {
              socket,
              secureContext: context,
              ALPNProtocols: ['h2'],
              host: name,
              ...(isIP(name) === 0 ? { servername: name } : {}),
              checkServerIdentity: (_host, cert) => tls.checkServerIdentity(name, cert),
            },
            () => (secured.authorized ? resolve({ socket: secured, secure: true }) : reject(secured.authorizationError)),
          );
          secured.on('error', reject);
        }),
      waitForReady: () => Promise.resolve(),
      getCallCredentials: () => callCredentials ?? grpc.credentials.createEmpty(),
      destroy: () => undefined,
    };
  }
}

/**
 * Credentials for a client certificate and the federation CA, dialling `target`; the coordinator's
 * certificate must name `serverName` if given, else the target's host.
 */
export function mutualTlsCredentials(material: TlsMaterial, o: { readonly target: string; readonly serverName?: string | undefined }): grpc.ChannelCredentials {
  const context = tls.createSecureContext({ ca: material.ca, cert: material.cert, key: material.key });
  return new MutualTlsCredentials(context, o.serverName || targetHost(o.target));
}
