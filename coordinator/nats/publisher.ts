/**
 * Publishes the coordinator's events and audit records to NATS. Events go to
 * `<prefix>.events.<kind>` (core NATS, fire and forget); while NATS is unreachable they wait in a
 * bounded buffer whose overflow is reported as a gap. Audit records go to the JetStream stream from
 * the journal itself: after every (re)connect the publisher asks the stream for its last record and
 * sends every later journal record in order, each with its hash as message id. The federation never
 * waits on NATS: no method here blocks a round.
 */
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { invariant } from '../../aggregation/index.js';
import { backoffDelay, sleep } from '../../common/backoff.js';
import type { Logger } from '../../common/logger.js';
import { NATS_GAP_KIND, eventBodySchemas, type BusEvent, type EventBus, type NatsGapBody } from '../observe/events.js';
import type { JournalRecord } from '../state/journal.js';
import { ensureAuditStream, lastAuditRecord, publishAuditRecord, replayFrom, type AuditTarget } from './audit-stream.js';
import { EventBuffer } from './event-buffer.js';
import { natsConnectOptions, subjectPrefix, type ResolvedNats } from './options.js';

export interface NatsPublisherOptions {
  readonly nats: ResolvedNats;
  readonly federation: string;
  readonly bus: EventBus;
  /** The journal, oldest first (the publisher only reads it). */
  readonly records: () => readonly JournalRecord[];
  readonly logger: Logger;
  readonly now?: () => number;
  readonly random?: () => number;
}

const RETRY = { initialMs: 250, maxMs: 10_000 };

/** Publishes events and audit records to NATS; see the module comment. */
export class NatsPublisher {
  private readonly log: Logger;
  private readonly buffer: EventBuffer<BusEvent>;
  private readonly prefix: string;
  private readonly audit: AuditTarget;
  private readonly abort = new AbortController();
  private nc: NatsConnection | undefined;
  private js: { client: JetStreamClient; manager: JetStreamManager } | undefined;
  private connected = false;
  /** Index of the next journal record to publish. */
  private cursor = 0;
  /** Whether to ask the stream where it ends before publishing (after a connect or a failure). */
  private resyncNeeded = true;
  private pumping: Promise<void> | undefined;
  private pumpAgain = false;
  private auditFailures = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private loop: Promise<void> | undefined;

  constructor(private readonly o: NatsPublisherOptions) {
    this.log = o.logger.child({ component: 'nats' });
    this.buffer = new EventBuffer(o.nats.bufferEvents);
    this.prefix = subjectPrefix(o.nats, o.federation);
    this.audit = { stream: o.nats.auditStream, subject: `${this.prefix}.audit` };
  }

  /** Subject of events of `kind`. */
  eventSubject(kind: string): string {
    return `${this.prefix}.events.${kind}`;
  }

  /** Subject and stream of the audit records. */
  get auditTarget(): AuditTarget {
    return this.audit;
  }

  /** Starts listening to the bus and connecting in the background; returns at once. */
  start(): void {
    this.unsubscribe = this.o.bus.subscribe((event) => this.onEvent(event));
    this.loop = this.connectLoop(this.abort.signal);
    this.log.info({ url: this.o.nats.url, prefix: this.prefix, stream: this.audit.stream }, 'publishing events and audit records to NATS');
  }

  /** A journal record was appended: publish it (and anything before it not yet in the stream). */
  recordAppended(): void {
    this.kickAudit();
  }

  /** Stops: lets an audit publish in flight finish (bounded), then drains and closes the connection. */
  async stop(): Promise<void> {
    this.unsubscribe?.();
    this.abort.abort(new Error('coordinator stopping'));
    clearTimeout(this.retryTimer);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.o.nats.timeoutMs)));
    try {
      await Promise.race([this.pumping ?? Promise.resolve(), deadline]);
      const nc = this.nc;
      this.connected = false;
      if (nc && !nc.isClosed()) await Promise.race([nc.drain().catch(() => nc.close()), deadline]);
      if (nc && !nc.isClosed()) await nc.close();
      await Promise.race([this.loop, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  // ---------------------------------------------------------------- connection

  private async connectLoop(signal: AbortSignal): Promise<void> {
    let failures = 0;
    const random = this.o.random ?? Math.random;
    while (!signal.aborted) {
      let nc: NatsConnection;
      try {
        nc = await connect(natsConnectOptions(this.o.nats, `fedhpc-coordinator-${this.o.federation}`));
      } catch (err) {
        if (failures === 0) this.log.warn({ err: { message: (err as Error).message } }, 'NATS unreachable; events are buffered and audit records wait in the journal');
        await sleep(backoffDelay(RETRY, failures++, random), signal).catch(() => undefined);
        continue;
      }
      if (signal.aborted) {
        await nc.close();
        return;
      }
      failures = 0;
      this.nc = nc;
      this.js = { client: jetstream(nc, { timeout: this.o.nats.timeoutMs }), manager: await jetstreamManager(nc, { timeout: this.o.nats.timeoutMs, checkAPI: false }) };
      void this.watchStatus(nc);
      this.onConnected();
      const closed = await nc.closed();
      this.connected = false;
      this.nc = undefined;
      if (closed && !signal.aborted) this.log.warn({ err: { message: closed.message } }, 'NATS connection closed; reconnecting');
    }
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        this.connected = false;
        this.log.warn({ server: s.server }, 'NATS disconnected; buffering events');
      } else if (s.type === 'reconnect') {
        this.onConnected();
      }
    }
  }

  private onConnected(): void {
    this.connected = true;
    const { items, gap } = this.buffer.drain();
    if (gap) {
      this.log.warn({ dropped: gap.dropped, fromTs: gap.fromTs, toTs: gap.toTs, buffered: items.length }, 'NATS event gap: events dropped while NATS was unreachable');
      const body: NatsGapBody = { ...gap, buffered: items.length };
      this.publishJson(this.eventSubject(NATS_GAP_KIND), { kind: NATS_GAP_KIND, ts: (this.o.now ?? Date.now)(), federation: this.o.federation, body });
    }
    this.log.info({ buffered: items.length }, 'NATS connected; publishing');
    for (const e of items) this.onEvent(e);
    // The stream may have lost or gained records while we were away: ask it where it ends.
    this.resyncNeeded = true;
    this.kickAudit();
  }

  // ---------------------------------------------------------------- events

  private onEvent(event: BusEvent): void {
    if (!this.connected) return this.buffer.push(event);
    const checked = eventBodySchemas[event.kind].safeParse(event.body);
    if (!checked.success) {
      // A bug in an emitter: never publish what the schema does not promise.
      this.log.error({ kind: event.kind, issues: checked.error.issues }, 'event does not match its schema; not published');
      return;
    }
    if (!this.publishJson(this.eventSubject(event.kind), { kind: event.kind, ts: event.ts, federation: this.o.federation, body: event.body })) {
      this.buffer.push(event);
    }
  }

  private publishJson(subject: string, value: unknown): boolean {
    const nc = this.nc;
    if (nc === undefined) {
      // The connection closed meanwhile: the caller buffers; the reconnect path flushes.
      this.connected = false;
      return false;
    }
    try {
      nc.publish(subject, JSON.stringify(value));
      return true;
    } catch {
      // Closed or draining: the caller buffers; the reconnect path flushes.
      this.connected = false;
      return false;
    }
  }

  // ---------------------------------------------------------------- audit

  private kickAudit(): void {
    if (!this.connected || this.abort.signal.aborted) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = this.pump().finally(() => (this.pumping = undefined));
  }

  /**
   * Sends journal records the stream lacks, one at a time in journal order: a record is sent only
   * after the previous one was acknowledged, so the stream never holds a record without the ones
   * before it, and its last record tells where to resume.
   */
  private async pump(): Promise<void> {
    try {
      do {
        this.pumpAgain = false;
        const js = this.js;
        invariant(js !== undefined, 'audit records are pumped only once JetStream was reached');
        if (this.resyncNeeded) {
          this.resyncNeeded = false;
          this.cursor = await this.resync(js.manager);
        }
        const records = this.o.records();
        let next = this.cursor;
        // A reconnect meanwhile sets resyncNeeded: go round again and ask the stream first.
        while (next < records.length && this.connected && !this.resyncNeeded) {
          await publishAuditRecord(js.client, this.audit, records[next]!, this.o.nats.timeoutMs);
          next += 1;
          this.cursor = next;
        }
        if (this.resyncNeeded) this.pumpAgain = true;
      } while (this.pumpAgain && this.connected);
      this.auditFailures = 0;
    } catch (err) {
      this.resyncNeeded = true;
      if (this.abort.signal.aborted) return;
      const delay = backoffDelay(RETRY, this.auditFailures++, this.o.random ?? Math.random);
      this.log.warn({ err: { message: (err as Error).message }, retryInMs: delay }, 'audit records not published yet; they stay in the journal');
      this.retryTimer = setTimeout(() => this.kickAudit(), delay);
    }
  }

  private async resync(jsm: JetStreamManager): Promise<number> {
    await ensureAuditStream(jsm, this.audit);
    const last = await lastAuditRecord(jsm, this.audit);
    const records = this.o.records();
    const from = replayFrom(records, last);
    if (from === undefined) {
      this.log.error({ stream: this.audit.stream, subject: this.audit.subject, last }, 'the audit stream ends with a record this journal does not hold; publishing this journal from its first record');
      return 0;
    }
    if (from < records.length) this.log.info({ from: from + 1, to: records.length }, 'replaying journal records into the audit stream');
    return from;
  }
}
