/**
 * A minimal Prometheus scrape endpoint: `GET /metrics` answers the text exposition, anything else
 * 404. Binds 127.0.0.1 unless told otherwise, so metrics are never exposed by accident.
 *
 * Optionally the same port also speaks cleartext HTTP/2 (h2c with prior knowledge, as gRPC clients
 * and orchestrators' gRPC probes dial): a connection whose first bytes are the HTTP/2 preface is
 * handed to `http2` (the coordinator serves `grpc.health.v1` there), any other to the HTTP/1.1
 * server. One port, no client certificate: a probe that cannot present one can still ask.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer, type Socket } from 'node:net';

/** A listening metrics endpoint. */
export interface MetricsEndpoint {
  /** `http://host:port/metrics`. */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

export interface MetricsEndpointOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly contentType: string;
  readonly text: () => Promise<string>;
  /** Takes the connections that open with the HTTP/2 preface (their first bytes are unread again). */
  readonly http2?: (socket: Socket) => void;
}

/** The client connection preface of HTTP/2 (RFC 9113, section 3.4). */
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
/** How long a connection may stay silent before it says which protocol it speaks. */
const FIRST_BYTES_TIMEOUT_MS = 10_000;

/** Serves `text()` at `/metrics` on `host:port` (and HTTP/2 connections to `http2`, if given). */
export async function serveMetrics(o: MetricsEndpointOptions): Promise<MetricsEndpoint> {
  const http: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: scrape /metrics\n');
      return;
    }
    o.text().then(
      (body) => res.writeHead(200, { 'content-type': o.contentType }).end(body),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${(err as Error).message}\n`),
    );
  });
  const sockets = new Set<Socket>();
  const http2 = o.http2;
  const server = http2
    ? createNetServer((socket) => {
        sockets.add(socket);
        socket.once('close', () => sockets.delete(socket));
        route(socket, http, http2);
      })
    : http;
  server.listen(o.port, o.host);
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  const host = o.host.includes(':') ? `[${o.host}]` : o.host;
  return {
    url: `http://${host}:${port}/metrics`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Open probe connections (an HTTP/2 health Watch never ends by itself) must not hold it up.
        for (const s of sockets) s.destroy();
        http.closeAllConnections();
      }),
  };
}

/**
 * Reads a connection's first bytes and hands it on: the HTTP/2 preface to `http2`, anything else to
 * the HTTP/1.1 server. The bytes read are put back (`unshift`) first, so either sees the stream
 * from its start.
 */
function route(socket: Socket, http: Server, http2: (socket: Socket) => void): void {
  let seen = Buffer.alloc(0);
  const fail = (): void => void socket.destroy();
  socket.on('error', fail);
  socket.setTimeout(FIRST_BYTES_TIMEOUT_MS, fail);
  const onData = (chunk: Buffer): void => {
    seen = Buffer.concat([seen, chunk]);
    const n = Math.min(seen.length, PREFACE.length);
    const h2 = seen.subarray(0, n).equals(PREFACE.subarray(0, n));
    if (h2 && seen.length < PREFACE.length) return; // a prefix of the preface: not decided yet
    socket.off('data', onData);
    socket.off('error', fail);
    socket.setTimeout(0);
    // Paused, so that the bytes put back wait for the new owner. Node's HTTP/2 session takes them
    // with the socket and reads the rest natively (resuming here would feed them to nobody); the
    // HTTP/1.1 server reads through the stream, which must flow again.
    socket.pause();
    socket.unshift(seen);
    if (h2) {
      http2(socket);
    } else {
      http.emit('connection', socket);
      socket.resume();
    }
  };
  socket.on('data', onData);
}
