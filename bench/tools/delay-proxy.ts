/**
 * A TCP proxy that adds a fixed one-way delay in each direction, standing in for a WAN link on a
 * machine without netem. Every block read from one side is stamped on arrival and written to the
 * other side once its delay has passed, so the delay adds latency without capping throughput: many
 * blocks are in flight at once, as on a long fat pipe. The queue of delayed bytes is bounded; when
 * it is full the proxy stops reading, which TCP turns into back-pressure on the sender. With
 * `bytesPerS` the link also has a bandwidth: a block leaves no earlier than its delay and no
 * earlier than the previous block's departure plus its own bytes at that rate (a token bucket of
 * one block), so a sender gets at most that rate, as through a WAN link it shares with no one.
 */
import { once } from 'node:events';
import * as net from 'node:net';

/** Options of {@link startDelayProxy}. */
export interface DelayProxyOptions {
  /** Where connections are forwarded. */
  readonly target: { readonly host: string; readonly port: number };
  /** Delay added to every block, each way, in milliseconds (15 ms each way: 30 ms round trip). */
  readonly oneWayDelayMs: number;
  /** Bytes queued per direction before reading pauses. Default 256 MiB, far above 1 GB/s × delay. */
  readonly maxQueuedBytes?: number;
  /** Bandwidth of each direction in bytes per second; default unlimited. */
  readonly bytesPerS?: number;
}

/** A listening proxy. */
export interface DelayProxy {
  readonly port: number;
  close(): Promise<void>;
}

/** One direction of a proxied connection: blocks wait in arrival order until they are due. */
function delayLine(from: net.Socket, to: net.Socket, delayMs: number, maxQueuedBytes: number, bytesPerS = Infinity): void {
  const queue: { due: number; data: Buffer | null }[] = [];
  let queued = 0;
  // When the link is free again: the last block's departure plus its transmission time.
  let linkFreeAt = 0;
  const dueOf = (bytes: number): number => {
    const due = Math.max(performance.now() + delayMs, linkFreeAt);
    linkFreeAt = due + (bytes * 1000) / bytesPerS;
    return due;
  };
  let timer: NodeJS.Timeout | undefined;
  // Bytes held here (waiting for their time, or written but not yet taken by the kernel).
  const held = (): number => queued + to.writableLength;
  const resumeIfRoom = (): void => {
    if (from.isPaused() && !from.destroyed && held() < maxQueuedBytes / 2) from.resume();
  };
  const schedule = (): void => {
    if (timer === undefined && queue.length > 0) timer = setTimeout(flush, Math.max(0, queue[0]!.due - performance.now()));
  };
  function flush(): void {
    timer = undefined;
    const now = performance.now();
    // Everything due leaves in one write: a sender of small frames would otherwise cost a
    // system call per block here and make the proxy, not the link, the bottleneck.
    to.cork();
    while (queue.length > 0 && queue[0]!.due <= now) {
      const { data } = queue.shift()!;
      if (data === null) {
        to.end();
        break;
      }
      queued -= data.length;
      to.write(data);
    }
    to.uncork();
    resumeIfRoom();
    schedule();
  }
  to.on('drain', resumeIfRoom);
  from.on('data', (data: Buffer) => {
    queue.push({ due: dueOf(data.length), data });
    queued += data.length;
    if (held() >= maxQueuedBytes) from.pause();
    schedule();
  });
  from.on('end', () => {
    queue.push({ due: dueOf(0), data: null });
    schedule();
  });
  // Blocks still due when the receiving side is gone have nowhere to go.
  to.on('close', () => {
    if (timer !== undefined) clearTimeout(timer);
    queue.length = 0;
  });
}

/** Starts a proxy on a free loopback port. */
export async function startDelayProxy(options: DelayProxyOptions): Promise<DelayProxy> {
  const maxQueued = options.maxQueuedBytes ?? 256 * 1024 * 1024;
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ noDelay: true, allowHalfOpen: true }, (client) => {
    const upstream = net.connect({ host: options.target.host, port: options.target.port, noDelay: true, allowHalfOpen: true });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      // One side failing ends both, as a broken link would.
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    delayLine(client, upstream, options.oneWayDelayMs, maxQueued, options.bytesPerS);
    delayLine(upstream, client, options.oneWayDelayMs, maxQueued, options.bytesPerS);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
