/**
 * The journal in a replicated JetStream stream (issue 19): the same surface as `Journal`
 * (`records()`, `append(body)`, `close()`), for coordinators that must outlive their host. One
 * stream per federation (`FEDHPC_JOURNAL_<FEDERATION>`, subject `fedhpc.<federation>.journal`),
 * file storage, replicated (3 in production), never discarding a message.
 *
 * Fencing does not rely on conditional publish (on nats-server 2.9 two racing conditional
 * publishes can both succeed). Every record carries its writer's leadership term in its hash; the
 * chain is what the chain rule (`chain-rule.ts`) reads from the stream, in stream order; and an
 * append resolves only once the writer has followed the stream past its own message and found that
 * very record on the chain. Until then nothing may be acknowledged to anyone. An instance follows
 * the stream continuously (an ordered consumer), so a reader's `records()` stays current.
 */
import { DeliverPolicy, jetstream, jetstreamManager, type ConsumerMessages, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { invariant } from '../../aggregation/index.js';
import { backoffDelay, sleep } from '../../common/backoff.js';
import type { Logger } from '../../common/logger.js';
import { CoordinatorError } from '../core/errors.js';
import { chainStep, type IgnoredMessage } from './chain-rule.js';
import { GENESIS_HASH, recordHash, verifyChain, type JournalBody, type JournalRecord } from './journal.js';
import {
  RETRY,
  ensureJournalStream,
  jetStreamJournalSchema,
  journalStreamSchema,
  publishRecord,
  retrying,
  type JetStreamJournalConfig,
  type JournalStreamOptions,
  type ResolvedJetStreamJournal,
} from './journal-stream.js';

export {
  ensureJournalStream,
  jetStreamJournalSchema,
  journalStreamName,
  journalStreamSchema,
  journalSubject,
  type JetStreamJournalConfig,
  type JournalStreamOptions,
  type ResolvedJetStreamJournal,
  type ResolvedJournalStream,
} from './journal-stream.js';

/** What a journal needs besides its config: the connection (the caller's; never closed here), a logger, time and randomness. */
export interface JetStreamJournalOptions extends JetStreamJournalConfig {
  readonly nc: NatsConnection;
  /** Ignored messages are logged at warn with `phase: 'journal'`. */
  readonly logger?: Logger;
  readonly now?: () => number;
  readonly random?: () => number;
}

/** Ignored messages kept for `ignored()`; beyond it the oldest are dropped (the count goes on). */
const IGNORED_KEPT = 1_000;
/** Messages pulled at once by the follower; refilled at 75 %. */
const FOLLOW_WINDOW = 256;
/**
 * How long an append waits for the follower to deliver its own message before reading the stream
 * up to it directly: a follower whose consumer died with a NATS node may take seconds to return,
 * while the stream's leader that just acknowledged the record answers at once.
 */
const READ_BACK_GRACE_MS = 250;
/**
 * Every so often the follower is checked against the stream's last sequence: one that made no
 * progress while behind is started again. An ordered consumer whose only replica died with its
 * NATS node waits forever for an answer about it, without a word (nats.js 3.4).
 */
const WATCH_MS = 2_000;

/** The journal in a JetStream stream; see the module comment. */
export class JetStreamJournal {
  private readonly entries: JournalRecord[] = [];
  private readonly dropped: IgnoredMessage[] = [];
  private ignoredTotal = 0;
  /** Stream sequence of the last message the follower processed (0: none). */
  private processed = 0;
  private readonly waiters = new Set<{ seq: number; resolve: () => void; reject: (err: unknown) => void }>();
  /** Set once closed: waits end with it. */
  private failure: unknown;
  private readonly closing = new AbortController();
  private messages: ConsumerMessages | undefined;
  private readonly watchdog: NodeJS.Timeout;
  /** What `processed` was at the watchdog's previous check. */
  private processedAtWatch = 0;
  private watching = false;
  private following: Promise<void> = Promise.resolve();
  private tail: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly o: ResolvedJetStreamJournal,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly log: Logger | undefined,
    private readonly now: () => number,
    private readonly random: () => number,
  ) {
    this.watchdog = setInterval(() => void this.watch(), WATCH_MS).unref();
  }

  /**
   * Opens the journal in `stream` (created when missing) and follows it; resolves once every
   * message the stream held at open is read, so `records()` is the chain as of then.
   */
  static async open(options: JetStreamJournalOptions): Promise<JetStreamJournal> {
    const { nc, logger, now, random, ...config } = options;
    const o = jetStreamJournalSchema.parse(config);
    const signal = AbortSignal.timeout(o.timeoutMs);
    const rnd = random ?? Math.random;
    // A NATS node lost or a leader being elected answers nothing for a few seconds: retry until the deadline.
    const { js, jsm } = await retrying(signal, rnd, async () => {
      const manager = await jetstreamManager(nc, { timeout: o.ackTimeoutMs });
      await ensureJournalStream(manager, o);
      return { js: jetstream(nc, { timeout: o.ackTimeoutMs }), jsm: manager };
    });
    const log = logger?.child({ component: 'journal', phase: 'journal', stream: o.stream });
    const journal = new JetStreamJournal(o, js, jsm, log, now ?? Date.now, rnd);
    journal.following = journal.follow();
    try {
      await journal.catchUp(signal);
    } catch (err) {
      await journal.close();
      throw err;
    }
    return journal;
  }

  /** The chain, oldest first. */
  records(): readonly JournalRecord[] {
    return this.entries;
  }

  /** The latest messages not on the chain (at most 1,000), each with why; `ignoredCount` counts them all. */
  ignored(): readonly IgnoredMessage[] {
    return this.dropped;
  }

  get ignoredCount(): number {
    return this.ignoredTotal;
  }

  /** The writer's term, or undefined for a reader. */
  get term(): number | undefined {
    return this.o.term;
  }

  /**
   * Appends a record on the chain's head and resolves once it has been read back on the chain:
   * only then is it committed. Rejects with `JOURNAL_FENCED` when another writer extended the chain
   * (the caller has lost leadership; the record never will be on the chain), and with
   * `JOURNAL_UNAVAILABLE` when the stream gave no verdict in time. Appends run in call order.
   */
  append<B extends { readonly type: string }>(body: B): Promise<JournalRecord<B & JournalBody>> {
    const run = () => this.appendNow(body);
    const result = this.tail.then(run, run);
    this.tail = result.catch(() => undefined);
    return result;
  }

  /** Stops following the stream once pending appends are done. The connection stays open (it is the caller's). */
  async close(): Promise<void> {
    await this.tail;
    this.closing.abort(new CoordinatorError('JOURNAL_UNAVAILABLE', `journal ${this.o.stream} is closed`));
    clearInterval(this.watchdog);
    await this.messages?.close();
    await this.following;
  }

  private async appendNow<B extends { readonly type: string }>(body: B): Promise<JournalRecord<B & JournalBody>> {
    const term = this.o.term;
    invariant(term !== undefined, 'only a journal opened with a term appends');
    const signal = AbortSignal.timeout(this.o.timeoutMs);
    // Stored and hashed exactly as it will read back (NaN → null, Dates → strings, …).
    const stored = JSON.parse(JSON.stringify(body)) as B & JournalBody;
    for (;;) {
      const head = this.entries[this.entries.length - 1];
      const partial = { seq: (head?.seq ?? 0) + 1, ts: this.now(), prev: head?.hash ?? GENESIS_HASH, term, body: stored };
      const record: JournalRecord<B & JournalBody> = { ...partial, hash: recordHash(partial) };
      if (head?.term !== undefined && head.term > term) throw this.fenced(record, head);
      try {
        signal.throwIfAborted();
        const published = await publishRecord(this.js, { ...this.o, random: this.random, log: this.log }, record, this.o.conditionalPublish ? this.processed : undefined, signal);
        if (published.kind === 'stored') await this.readBack(published.streamSeq, signal);
        else await this.catchUp(signal);
      } catch (err) {
        if (err instanceof CoordinatorError) throw err;
        throw this.unavailable(record, err);
      }
      const at = this.entries[record.seq - 1];
      if (at?.hash === record.hash) return record;
      if (at !== undefined) throw this.fenced(record, at);
      // Refused as moved, yet the chain did not grow: what moved the subject was no record. Build again on the same head.
    }
  }

  /**
   * Follows the stream in order, feeding every message through the chain rule, until closed. An
   * ordered consumer recreates itself after most failures; when it gives up (its node and the
   * stream's leader lost together), a new one starts after the last message processed.
   */
  private async follow(): Promise<void> {
    const stop = this.closing.signal;
    for (let attempt = 0; !stop.aborted; attempt++) {
      try {
        // The stream holds only the journal's subject (ensureJournalStream): no filter (nats-server 2.9 has no filter_subjects).
        const consumer = await this.js.consumers.get(this.o.stream, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: this.processed + 1 });
        // Short pulls and heartbeats: a consumer lost with a NATS node is noticed within seconds.
        const messages = await consumer.consume({ max_messages: FOLLOW_WINDOW, expires: 2_000, idle_heartbeat: 1_000 });
        this.messages = messages;
        if (stop.aborted) await messages.close();
        for await (const m of messages) {
          this.take(m.seq, m.data);
          attempt = 0;
        }
        const why = await messages.closed();
        if (!stop.aborted) this.log?.debug({ err: why }, 'journal stream consumer stopped; following again');
      } catch (err) {
        if (!stop.aborted) this.log?.debug({ err }, 'journal stream not followed; trying again');
      }
      await sleep(backoffDelay(RETRY, attempt, this.random), stop).catch(() => undefined);
    }
    this.failure = stop.reason;
    for (const w of this.waiters) w.reject(this.failure);
    this.waiters.clear();
  }

  private take(streamSeq: number, data: Uint8Array): void {
    // The follower and a read-back may both deliver a message: each counts once.
    if (streamSeq <= this.processed) return;
    const step = chainStep(this.entries[this.entries.length - 1], { streamSeq, data });
    if (step.ok) {
      this.entries.push(step.record);
    } else {
      this.ignoredTotal += 1;
      if (this.dropped.length >= IGNORED_KEPT) this.dropped.shift();
      this.dropped.push(step.ignored);
      this.log?.warn({ ...step.ignored }, `journal stream message ${streamSeq} ignored: ${step.ignored.reason}`);
    }
    this.skip(streamSeq);
  }

  /** Marks stream sequence `streamSeq` processed and wakes whoever waited for it. */
  private skip(streamSeq: number): void {
    this.processed = streamSeq;
    for (const w of this.waiters) if (w.seq <= streamSeq) w.resolve();
  }

  /** Resolves once the follower has processed stream sequence `seq`. */
  private reached(seq: number, signal: AbortSignal): Promise<void> {
    if (this.processed >= seq) return Promise.resolve();
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const done = (): void => {
        this.waiters.delete(waiter);
        signal.removeEventListener('abort', onAbort);
      };
      const waiter = { seq, resolve: () => (done(), resolve()), reject: (err: unknown) => (done(), reject(err)) };
      const onAbort = (): void => waiter.reject(signal.reason);
      this.waiters.add(waiter);
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Resolves once stream sequence `seq` is processed: delivered by the follower, or, when it is
   * late, read message by message from the stream (each message still counts once, in order).
   */
  private async readBack(seq: number, signal: AbortSignal): Promise<void> {
    const before = this.processed;
    try {
      return await this.reached(seq, AbortSignal.any([signal, AbortSignal.timeout(READ_BACK_GRACE_MS)]));
    } catch (err) {
      if (signal.aborted || this.closing.signal.aborted) throw err;
      // Slow is not dead: only a follower that delivered nothing meanwhile is started again.
      if (this.processed === before) this.restartFollower('it delivered nothing of a record the stream acknowledged');
    }
    while (this.processed < seq) {
      const next = this.processed + 1;
      const m = await retrying(signal, this.random, () => this.jsm.streams.getMessage(this.o.stream, { seq: next }), this.log);
      // A sequence not found (deleted by an operator, or a new leader still applying) is never
      // assumed away: the follower, which delivers past deleted messages, decides.
      if (m === null) return this.reached(seq, signal);
      this.take(next, m.data);
    }
  }

  /** The watchdog's check; see {@link WATCH_MS}. */
  private async watch(): Promise<void> {
    if (this.watching) return;
    this.watching = true;
    try {
      const before = this.processedAtWatch;
      this.processedAtWatch = this.processed;
      const last = (await this.jsm.streams.info(this.o.stream)).state.last_seq;
      if (last > this.processed && this.processed === before) this.restartFollower(`it is stuck at ${this.processed} of ${last}`);
    } catch (err) {
      // The stream does not answer (a leader being elected): nothing to compare with this time.
      this.log?.debug({ err }, 'journal watchdog: no stream state');
    } finally {
      this.watching = false;
    }
  }

  /** Ends the follower's consumer; `follow` starts a new one after the last message processed. */
  private restartFollower(why: string): void {
    const messages = this.messages;
    if (messages === undefined || this.closing.signal.aborted) return;
    this.messages = undefined;
    this.log?.debug({ processed: this.processed }, `journal follower started again: ${why}`);
    void messages.close().catch(() => undefined);
  }

  /** Resolves once the follower has processed the subject's last message as of now. */
  private async catchUp(signal: AbortSignal): Promise<void> {
    const last = await retrying(signal, this.random, () => this.jsm.streams.getMessage(this.o.stream, { last_by_subj: this.o.subject }));
    await this.reached(last?.seq ?? 0, signal);
  }

  /** `record` is not on the chain and never will be: `at` holds its place (or, before publishing, a higher term leads). */
  private fenced(record: JournalRecord, at: JournalRecord): CoordinatorError {
    const theirs = at.term ?? 0;
    const ours = record.term ?? 0;
    // A lower term got in first: an old leader wrote before it saw this one's term. Not a lost
    // leadership, but this writer's view of the chain was wrong all the same: read it again.
    const what = theirs < ours ? `an older leader (term ${theirs}) got a record in first; read the chain again before writing` : 'this coordinator has lost leadership';
    return new CoordinatorError(
      'JOURNAL_FENCED',
      `journal ${this.o.stream}: record ${record.seq} of term ${ours} is not committed: another writer extended the chain (its record ${at.seq} is of term ${theirs}); ${what}`,
      { seq: record.seq, hash: record.hash, term: ours, chainSeq: at.seq, chainTerm: theirs, chainHash: at.hash },
    );
  }

  private unavailable(record: JournalRecord, cause: unknown): CoordinatorError {
    return new CoordinatorError(
      'JOURNAL_UNAVAILABLE',
      `journal ${this.o.stream}: no verdict on record ${record.seq} within ${this.o.timeoutMs} ms; it may still reach the chain`,
      { seq: record.seq, hash: record.hash, term: record.term ?? 0 },
      { cause },
    );
  }
}

/** A stream's chain as of now and what it ignored: a one-off read (an auditor's), through the same chain rule. */
export async function readJournalChain(nc: NatsConnection, o: JournalStreamOptions): Promise<{ records: JournalRecord[]; ignored: IgnoredMessage[]; ignoredCount: number }> {
  const reader = await JetStreamJournal.open({ ...o, nc });
  try {
    return { records: [...reader.records()], ignored: [...reader.ignored()], ignoredCount: reader.ignoredCount };
  } finally {
    await reader.close();
  }
}

/**
 * Publishes a state dir's journal (term-less records, verified first) into an EMPTY journal stream
 * with its chain intact, then reads it back through the chain rule; refuses a stream that holds
 * anything. Resolves with the number of records and the chain's head.
 */
export async function importJournal(
  records: readonly JournalRecord[],
  options: JournalStreamOptions & { readonly nc: NatsConnection; readonly random?: () => number },
): Promise<{ records: number; head: string }> {
  const { nc, random, ...config } = options;
  const o = journalStreamSchema.parse(config);
  const check = verifyChain(records);
  if (!check.ok) throw new CoordinatorError('STATE_CORRUPT', `journal to import: record ${check.line}: ${check.reason}`, { line: check.line });
  const termed = records.find((r) => r.term !== undefined);
  if (termed) throw new CoordinatorError('BAD_REQUEST', `journal to import: record ${termed.seq} has a term: only a state dir's journal is imported`, { seq: termed.seq });
  const jsm = await jetstreamManager(nc, { timeout: o.ackTimeoutMs });
  await ensureJournalStream(jsm, o);
  const held = (await jsm.streams.info(o.stream)).state.messages;
  if (held > 0) throw new CoordinatorError('BAD_REQUEST', `stream ${o.stream} already holds ${held} message(s): a journal is imported only into an empty stream`, { stream: o.stream, messages: held });
  const js = jetstream(nc, { timeout: o.ackTimeoutMs });
  const signal = AbortSignal.timeout(o.timeoutMs + records.length * o.ackTimeoutMs);
  let after = 0;
  for (const r of records) {
    const published = await publishRecord(js, { ...o, random: random ?? Math.random }, r, after, signal);
    if (published.kind === 'moved') throw new CoordinatorError('STATE_CORRUPT', `stream ${o.stream}: another writer published during the import (at record ${r.seq})`, { seq: r.seq });
    after = published.streamSeq;
  }
  const back = await readJournalChain(nc, o);
  const same = back.records.length === records.length && back.records.every((r, i) => r.hash === records[i]!.hash) && back.ignoredCount === 0;
  if (!same) {
    throw new CoordinatorError('STATE_CORRUPT', `stream ${o.stream}: the import read back as ${back.records.length} record(s) on the chain and ${back.ignoredCount} ignored, not the ${records.length} published`, { stream: o.stream });
  }
  return { records: records.length, head: records[records.length - 1]?.hash ?? GENESIS_HASH };
}
