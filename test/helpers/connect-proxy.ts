/**
 * A real HTTP CONNECT proxy for tests: a node http server that opens the requested tunnel and
 * records every target and the bytes it carried, or refuses every CONNECT with a fixed status.
 */
import { createServer, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';

/** A running test proxy. */
export interface TestProxy {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** `host:port` of every CONNECT request, in order. */
  readonly targets: string[];
  /** Bytes carried from the client to the target and back, over all tunnels. */
  readonly bytes: { up: number; down: number };
  close(): Promise<void>;
}

/** Starts a proxy on a free loopback port; with `refuse`, answers every CONNECT with that status. */
export async function startConnectProxy(refuse?: { status: number; text: string }): Promise<TestProxy> {
  const targets: string[] = [];
  const bytes = { up: 0, down: 0 };
  const sockets = new Set<Socket>();
  const server: Server = createServer((_req, res) => res.writeHead(405).end());
  server.on('connect', (req, client: Socket, head: Buffer) => {
    const target = req.url ?? '';
    targets.push(target);
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => client.destroy());
    if (refuse) {
      client.end(`HTTP/1.1 ${refuse.status} ${refuse.text}\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
    const upstream = connect(port, host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      client.on('data', (d: Buffer) => (bytes.up += d.length));
      upstream.on('data', (d: Buffer) => (bytes.down += d.length));
      client.pipe(upstream);
      upstream.pipe(client);
    });
    sockets.add(upstream);
    upstream.on('close', () => {
      sockets.delete(upstream);
      client.destroy();
    });
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    targets,
    bytes,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
