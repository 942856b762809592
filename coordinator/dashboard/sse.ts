/**
 * The dashboard's live updates: server-sent events fed by the event bus (the events NATS gets),
 * plus the transfers in progress once a second while any runs (heartbeats are no bus events).
 * Bounded: at most `maxStreams` readers, and a reader that lets more than
 * {@link MAX_BUFFERED_BYTES} pile up is ended (its browser reconnects and reads the pages again).
 */
import type { ServerResponse } from 'node:http';
import type { EventBus } from '../observe/events.js';

/** Bytes an event stream may leave unsent before it is ended. */
export const MAX_BUFFERED_BYTES = 1024 * 1024;
/** A comment line this often keeps proxies and the browser from closing an idle stream. */
const KEEPALIVE_MS = 15_000;
/** How often the transfers in progress are pushed while there are any. */
const TRANSFERS_MS = 1_000;

export interface EventStreamsOptions {
  readonly bus: EventBus;
  readonly maxStreams: number;
  /** The transfers view (transfersView), pushed while it lists any. */
  readonly transfers: () => { readonly transfers: readonly unknown[] };
}

/** Open event streams and what feeds them. */
export class EventStreams {
  /** Each open stream, and whether its viewer's credential still holds. */
  private readonly streams = new Map<ServerResponse, () => boolean>();
  private readonly unsubscribe: () => void;
  private readonly keepalive: NodeJS.Timeout;
  private readonly ticker: NodeJS.Timeout;
  private lastTransfers = 0;

  constructor(private readonly o: EventStreamsOptions) {
    this.unsubscribe = o.bus.subscribe((e) => this.send(e.kind, JSON.stringify({ ts: e.ts, body: e.body })));
    this.keepalive = setInterval(() => this.write(': keepalive\n\n'), KEEPALIVE_MS);
    this.keepalive.unref();
    this.ticker = setInterval(() => this.pushTransfers(), TRANSFERS_MS);
    this.ticker.unref();
  }

  /**
   * Takes `res` as a new stream, ended once `valid` says its credential no longer holds; false
   * when the bound is reached (the caller answers 503).
   */
  open(res: ServerResponse, valid: () => boolean): boolean {
    if (this.streams.size >= this.o.maxStreams) return false;
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    // Reconnect after 2 s when the stream breaks.
    res.write('retry: 2000\n\n');
    this.streams.set(res, valid);
    res.on('close', () => this.streams.delete(res));
    return true;
  }

  get size(): number {
    return this.streams.size;
  }

  /** Ends every stream and stops feeding them. */
  close(): void {
    this.unsubscribe();
    clearInterval(this.keepalive);
    clearInterval(this.ticker);
    for (const res of this.streams.keys()) res.end();
    this.streams.clear();
  }

  private pushTransfers(): void {
    if (this.streams.size === 0) return;
    const view = this.o.transfers();
    // Pushed while transfers run, and once more when the last one ends (the page empties its list).
    if (view.transfers.length === 0 && this.lastTransfers === 0) return;
    this.lastTransfers = view.transfers.length;
    this.send('transfers', JSON.stringify(view));
  }

  private send(event: string, json: string): void {
    // JSON.stringify leaves no raw newline in `json`: one data line per event.
    this.write(`event: ${event}\ndata: ${json}\n\n`);
  }

  private write(chunk: string): void {
    for (const [res, valid] of this.streams) {
      if (!valid()) {
        // Signed out or expired: the browser reconnects, is refused, and goes to the sign-in page.
        this.streams.delete(res);
        res.end();
      } else if (res.writableLength > MAX_BUFFERED_BYTES) {
        this.streams.delete(res);
        res.destroy();
      } else {
        res.write(chunk);
      }
    }
  }
}
