/**
 * The coordinator's own TLS listener in front of the gRPC server, so that refused handshakes are
 * seen. grpc-js 1.14 terminates TLS itself and swallows every handshake error (trace output only),
 * and Node's TLS server with `rejectUnauthorized` destroys a socket whose certificate fails
 * verification without any event. Here a `node:tls` server with the same CA, certificate and key
 * verifies each client itself (`rejectUnauthorized: false`, then `socket.authorized`): a peer that
 * fails — no certificate, another CA, expired, no HTTP/2 — is reported to the refusal sink with its
 * address, OpenSSL's cause and the certificate's fingerprint, and closed; an authenticated socket is
 * handed to the gRPC server through its public connection injector (`createConnectionInjector`), so
 * grpc-js runs HTTP/2 on it exactly as on a socket it accepted (the call's auth context, the HTTP/2
 * window of common/grpc-window.ts, keepalive). Handshakes that fail before verification (a client
 * that refuses the coordinator's certificate, a protocol error, a peer gone mid-handshake) arrive
 * as `tlsClientError` and are reported the same way. Since verification happens outside OpenSSL,
 * no TLS session is ever resumed (a resumed TLS 1.3 session without a certificate would count as
 * verified), and none renegotiated: each connection's peer certificate is read once.
 */
import * as grpc from '@grpc/grpc-js';
import { constants } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import type { Socket } from 'node:net';
import * as tls from 'node:tls';
import type { TlsMaterial } from '../../common/tls.js';
import type { RefusalSink } from '../observe/refusals.js';

export interface TlsListenerOptions {
  /** `host:port` or `[v6]:port`, as in the config; port 0 picks a free port. */
  readonly listen: string;
  readonly tls: TlsMaterial;
  /** The gRPC server that serves authenticated connections (it binds no port of its own). */
  readonly server: grpc.Server;
  readonly refusals: RefusalSink;
}

/** A bound listener. */
export interface TlsListener {
  readonly port: number;
  /** Stops accepting connections; those open go on (the gRPC server's shutdown ends them). */
  stopAccepting(): void;
  /** Stops accepting and ends every socket still open: call after the gRPC server has shut down. */
  close(): Promise<void>;
}

/**
 * Binds `listen` (every address a host name resolves to, as grpc-js does) and serves the gRPC
 * server behind it. Rejects when no address can be bound.
 */
export async function listenTls(o: TlsListenerOptions): Promise<TlsListener> {
  const injector = o.server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const sockets = new Set<Socket>();
  const servers: tls.Server[] = [];
  const make = (): tls.Server => {
    const server = tls.createServer({
      ca: o.tls.ca,
      cert: o.tls.cert,
      key: o.tls.key,
      requestCert: true,
      // Verified below, so that a refused certificate is seen (Node would destroy it silently).
      rejectUnauthorized: false,
      ALPNProtocols: ['h2'],
      minVersion: 'TLSv1.2',
      // No tickets, and no session cache (Node keeps none unless asked): no session is resumed,
      // so no peer refused below comes back by resuming one. No renegotiation: a peer's
      // certificate is the one it verified with for as long as the connection lasts.
      secureOptions: constants.SSL_OP_NO_TICKET | constants.SSL_OP_NO_RENEGOTIATION,
    });
    server.on('connection', (socket: Socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
    server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
      const cause = (err as NodeJS.ErrnoException).code ?? 'TLS_ERROR';
      o.refusals.refused({ reason: 'tls_handshake', peer: peerOf(socket), cause, fingerprint: fingerprintOf(socket) });
    });
    server.on('secureConnection', (socket: tls.TLSSocket) => {
      // Errors after the handshake (a reset) end the socket; HTTP/2 reports them to grpc-js.
      socket.on('error', () => undefined);
      // Read once here, for the checks below and for every call the connection carries.
      fixPeerCertificate(socket);
      const refused = whyRefused(socket);
      if (refused !== undefined) {
        o.refusals.refused({ reason: 'tls_handshake', peer: peerOf(socket), cause: refused, fingerprint: fingerprintOf(socket) });
        socket.destroy();
        return;
      }
      injector.injectConnection(socket);
    });
    return server;
  };

  const { host, port } = splitListen(o.listen);
  const addresses = host === '' || isIp(host) ? [host] : (await lookup(host, { all: true })).map((a) => a.address);
  // As grpc-js does: every address that can be bound is (port 0 picks one port for all); only
  // when none can be is it an error.
  let bound = port;
  const failures: unknown[] = [];
  for (const address of [...new Set(addresses)]) {
    const server = make();
    try {
      bound = await listen(server, address, bound);
      servers.push(server);
    } catch (err) {
      failures.push(err);
    }
  }
  if (servers.length === 0) {
    injector.destroy();
    throw failures[0] ?? new Error(`no address to listen on in ${o.listen}`);
  }
  let closing: Promise<unknown> | undefined;
  const closed = (): Promise<unknown> => (closing ??= Promise.all(servers.map(closeServer)));
  return {
    port: bound,
    stopAccepting: () => void closed(),
    async close() {
      const done = closed();
      for (const s of sockets) s.destroy();
      await done;
      injector.destroy();
    },
  };
}

/** Splits `host:port` or `[v6]:port`. */
function splitListen(listen: string): { host: string; port: number } {
  const colon = listen.lastIndexOf(':');
  const host = listen.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(listen.slice(colon + 1)) };
}

function isIp(host: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(host) || host.includes(':');
}

function listen(server: tls.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: host || undefined, port }, () => {
      server.off('error', reject);
      resolve((server.address() as { port: number }).port);
    });
  });
}

/** Stops `server` listening; resolves once its sockets are gone. */
function closeServer(server: tls.Server): Promise<void> {
  return new Promise((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
}

/**
 * Why a completed handshake is refused, or undefined: the certificate must verify against the
 * federation CA (OpenSSL's code otherwise), be there at all, and the peer must speak HTTP/2.
 */
function whyRefused(socket: tls.TLSSocket): string | undefined {
  if (!socket.authorized) return String(socket.authorizationError ?? 'UNAUTHORIZED');
  const cert = socket.getPeerCertificate();
  if (!cert || !('raw' in cert) || !Buffer.isBuffer(cert.raw)) return 'NO_PEER_CERTIFICATE';
  if (socket.alpnProtocol !== 'h2') return 'ALPN_NOT_H2';
  return undefined;
}

/**
 * Makes an accepted socket's peer certificate the one it presented at the handshake, read once:
 * renegotiation is refused (TLS 1.2's; TLS 1.3 has none), so the certificate cannot change while
 * the connection lasts, and every call's auth context — grpc-js asks the socket on each call, and
 * the call limits and `authenticate` each read it — gets that one object instead of Node building
 * it again with its three fingerprints (a site's heartbeat every 2 s, each stream of its uploads).
 */
function fixPeerCertificate(socket: tls.TLSSocket): void {
  socket.disableRenegotiation();
  // Node reports a refused renegotiation as an error on the socket, and leaves it open: close it.
  socket.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'ERR_TLS_RENEGOTIATION_DISABLED') socket.destroy();
  });
  const read = socket.getPeerCertificate.bind(socket);
  const presented = Object.freeze(read());
  socket.getPeerCertificate = ((detailed?: boolean) => (detailed ? read(true) : presented)) as tls.TLSSocket['getPeerCertificate'];
}

/** `host:port` of a socket's peer. */
function peerOf(socket: Socket): string {
  const host = socket.remoteAddress;
  if (host === undefined) return 'unknown';
  return host.includes(':') ? `[${host}]:${socket.remotePort}` : `${host}:${socket.remotePort}`;
}

/** The fingerprint of the certificate a peer presented, if any. */
function fingerprintOf(socket: tls.TLSSocket): string | undefined {
  try {
    const cert = socket.getPeerCertificate();
    return cert && 'fingerprint256' in cert && cert.fingerprint256 ? cert.fingerprint256 : undefined;
  } catch {
    // A socket torn down mid-handshake has no TLS handle left to ask.
    return undefined;
  }
}
