/**
 * The WAN stand-in of `npm run bench -- wan`: bytes pass through intact and in order, each way is
 * delayed by at least the configured time, and an end of stream is passed on (after the data).
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startDelayProxy, type DelayProxy } from '../../../bench/tools/delay-proxy.js';

/** A TCP echo server that ends its side when the client ends. */
async function echoServer(): Promise<net.Server> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

describe('delay proxy', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
  });

  async function proxied(oneWayDelayMs: number, bytesPerS?: number): Promise<DelayProxy> {
    const echo = await echoServer();
    const proxy = await startDelayProxy({ target: { host: '127.0.0.1', port: (echo.address() as net.AddressInfo).port }, oneWayDelayMs, ...(bytesPerS ? { bytesPerS } : {}) });
    cleanups.push(async () => {
      await proxy.close();
      await new Promise<void>((r) => echo.close(() => r()));
    });
    return proxy;
  }

  it('echoes 8 MiB intact, in order, and passes the end of stream on after the data', async () => {
    const proxy = await proxied(5);
    const sent = randomBytes(8 * 1024 * 1024);
    const socket = net.connect({ host: '127.0.0.1', port: proxy.port, allowHalfOpen: true });
    const received: Buffer[] = [];
    socket.on('data', (d: Buffer) => received.push(d));
    socket.end(sent);
    await once(socket, 'end');
    expect(Buffer.concat(received).equals(sent)).toBe(true);
    socket.destroy();
  });

  it('adds at least the configured delay in each direction', async () => {
    const proxy = await proxied(25);
    const socket = net.connect({ host: '127.0.0.1', port: proxy.port });
    await once(socket, 'connect');
    const start = performance.now();
    socket.write('ping');
    await once(socket, 'data');
    // Two one-way delays; timers never fire early, so this lower bound holds on any machine.
    expect(performance.now() - start).toBeGreaterThanOrEqual(48);
    socket.destroy();
  });

  it('caps each direction at bytesPerS: 2 MiB at 8 MiB/s takes at least 250 ms, intact', async () => {
    const proxy = await proxied(1, 8 * 1024 * 1024);
    const sent = randomBytes(2 * 1024 * 1024);
    const socket = net.connect({ host: '127.0.0.1', port: proxy.port, allowHalfOpen: true });
    const received: Buffer[] = [];
    socket.on('data', (d: Buffer) => received.push(d));
    const start = performance.now();
    socket.end(sent);
    await once(socket, 'end');
    // The echo passes the link twice (there and back), each at most 8 MiB/s, pipelined: ≥ 250 ms.
    expect(performance.now() - start).toBeGreaterThanOrEqual(245);
    expect(Buffer.concat(received).equals(sent)).toBe(true);
    socket.destroy();
  });
});
