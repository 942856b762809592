/**
 * A minimal Prometheus scrape endpoint: `GET /metrics` answers the text exposition, anything else
 * 404. Binds 127.0.0.1 unless told otherwise, so metrics are never exposed by accident.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';

/** A listening metrics endpoint. */
export interface MetricsEndpoint {
  /** `http://host:port/metrics`. */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Serves `text()` at `/metrics` on `host:port` (port 0 picks a free one). */
export async function serveMetrics(o: { host: string; port: number; contentType: string; text: () => Promise<string> }): Promise<MetricsEndpoint> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: scrape /metrics\n');
      return;
    }
    o.text().then(
      (body) => res.writeHead(200, { 'content-type': o.contentType }).end(body),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${(err as Error).message}\n`),
    );
  });
  server.listen(o.port, o.host);
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  const host = o.host.includes(':') ? `[${o.host}]` : o.host;
  return {
    url: `http://${host}:${port}/metrics`,
    port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
