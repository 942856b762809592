/**
 * Client credentials for fedhpc's mutual TLS that check the coordinator's name themselves, so that
 * a coordinator dialled by IP address gets no TLS server name. grpc-js 1.14 sets the server name to
 * the target's host, IP or not, and Node warns once per process (DEP0123: RFC 6066 forbids an IP
 * in SNI), so every admin command against a coordinator provisioned with an IP printed it. Here the
 * expected name — the config's `serverName`, else the host of the coordinator's address — is sent
 * as SNI only when it is a DNS name, and the certificate is checked against it either way (an IP
 * against the certificate's IP SANs), as grpc-js's own credentials do. The server's certificate must
 * also carry the role the client dials (its subject's OU): the coordinator's, or an aggregator
 * shard's (issue 22) — every member's certificate comes from the one federation CA, so the name alone
 * would let a shard's certificate, which names hosts too, answer as the coordinator.
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

/** The server roles a member dials. */
export type ServerRole = 'coordinator' | 'aggregator';

/** Why `cert` may not serve as `role` (its subject's OU is another role), or undefined. */
export function serverRoleProblem(cert: tls.PeerCertificate, role: ServerRole): Error | undefined {
  const ou = cert.subject?.OU as string | string[] | undefined;
  const roles = ou === undefined ? [] : Array.isArray(ou) ? ou : [ou];
  if (roles.length === 1 && roles[0] === role) return undefined;
  const held = roles.length === 0 ? 'no role' : `role ${roles.map((r) => JSON.stringify(r)).join(', ')}`;
  return Object.assign(new Error(`the server's certificate (CN ${JSON.stringify(cert.subject?.CN ?? '')}) has ${held} in its OU, not ${JSON.stringify(role)}: it may not serve as the ${role === 'coordinator' ? 'coordinator' : 'aggregator shard'}`), {
    code: 'ERR_FEDHPC_SERVER_ROLE',
  });
}

class MutualTlsCredentials extends grpc.ChannelCredentials {
  constructor(
    private readonly context: tls.SecureContext,
    private readonly name: string,
    private readonly role: ServerRole,
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
    const { context, name, role } = this;
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
              checkServerIdentity: (_host, cert) => tls.checkServerIdentity(name, cert) ?? serverRoleProblem(cert, role),
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
 * Credentials for a client certificate and the federation CA, dialling `target`; the server's
 * certificate must name `serverName` if given, else the target's host, and carry `role`
 * (default the coordinator's).
 */
export function mutualTlsCredentials(
  material: TlsMaterial,
  o: { readonly target: string; readonly serverName?: string | undefined; readonly role?: ServerRole },
): grpc.ChannelCredentials {
  const context = tls.createSecureContext({ ca: material.ca, cert: material.cert, key: material.key });
  return new MutualTlsCredentials(context, o.serverName || targetHost(o.target), o.role ?? 'coordinator');
}
