/**
 * Where a replicated journal lives (issue 19): the stream and subject of a federation, the stream's
 * creation (file storage, replicated, never discarding), and publishing one record (message id =
 * its hash, resent until acknowledged). The journal itself is `jetstream-journal.ts`.
 */
import { DiscardPolicy, JetStreamApiCodes, JetStreamApiError, RetentionPolicy, StorageType, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { z } from 'zod';
import { backoffDelay, sleep } from '../../common/backoff.js';
import type { Logger } from '../../common/logger.js';
import { CoordinatorError } from '../core/errors.js';
import type { JournalRecord } from './journal.js';

/** The journal stream of a federation: `FEDHPC_JOURNAL_<FEDERATION>` (letters upper-cased, `-` as `_`). */
export function journalStreamName(federation: string): string {
  return `FEDHPC_JOURNAL_${federation.toUpperCase().replace(/-/g, '_')}`;
}

/** The subject of a federation's journal records: `fedhpc.<federation>.journal`. */
export function journalSubject(federation: string): string {
  return `fedhpc.${federation}.journal`;
}

/** Where a journal lives and how its stream is made when missing. */
export const journalStreamSchema = z
  .object({
    /** The stream's name, e.g. {@link journalStreamName}. */
    stream: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
    /** The one subject it holds, e.g. {@link journalSubject}. */
    subject: z.string().regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/),
    /** Replicas of the stream when it is created: 3 in production (tolerates one lost node), 1 for a one-node test. */
    replicas: z.number().int().min(1).max(5).default(3),
    /** Deadline of opening, of one append (publish, retries, read-back) and of an import's read-back. */
    timeoutMs: z.number().int().min(100).max(600_000).default(30_000),
    /** Deadline of one publish acknowledgement; a publish without one is sent again (same message id). */
    ackTimeoutMs: z.number().int().min(100).max(60_000).default(2_000),
  })
  .strict();

/** A journal's options: where, its writer's term (none: a reader), and whether to publish conditionally. */
export const jetStreamJournalSchema = journalStreamSchema
  .extend({
    /** The writer's leadership term (the lease revision); without, the instance only reads (a standby, an auditor). */
    term: z.number().int().positive().max(Number.MAX_SAFE_INTEGER).optional(),
    /**
     * Send the expected last subject sequence with each publish, so the stream refuses most records
     * of a writer that lost a race. An optimisation only: correctness comes from the chain rule.
     */
    conditionalPublish: z.boolean().default(true),
  })
  .strict();

/** Where a journal lives, as a caller writes it. */
export type JournalStreamOptions = z.input<typeof journalStreamSchema>;
/** {@link JournalStreamOptions} parsed, with defaults. */
export type ResolvedJournalStream = z.output<typeof journalStreamSchema>;
/** A journal's settings, as a caller writes them (besides the connection and logger). */
export type JetStreamJournalConfig = z.input<typeof jetStreamJournalSchema>;
/** {@link JetStreamJournalConfig} parsed, with defaults. */
export type ResolvedJetStreamJournal = z.output<typeof jetStreamJournalSchema>;

/** Creates the journal stream when missing; refuses an existing one that could lose or mix records. */
export async function ensureJournalStream(jsm: JetStreamManager, o: Pick<ResolvedJournalStream, 'stream' | 'subject' | 'replicas'>): Promise<void> {
  try {
    const { config } = await jsm.streams.info(o.stream);
    const subjects = config.subjects ?? [];
    const limited = config.max_msgs > 0 || config.max_bytes > 0 || config.max_age > 0 || (config.max_msgs_per_subject ?? 0) > 0;
    if (subjects.length !== 1 || subjects[0] !== o.subject || limited || config.retention !== RetentionPolicy.Limits) {
      throw new CoordinatorError(
        'STATE_CORRUPT',
        `stream ${o.stream} is no journal stream: it must hold only ${o.subject}, with limits retention and no limits (it has ${JSON.stringify(subjects)}, retention ${config.retention})`,
        { stream: o.stream },
      );
    }
  } catch (err) {
    if (!(err instanceof JetStreamApiError) || err.code !== JetStreamApiCodes.StreamNotFound) throw err;
    // No limits: a journal record is never deleted, whatever its age or the stream's size.
    await jsm.streams.add({
      name: o.stream,
      subjects: [o.subject],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      num_replicas: o.replicas,
    });
  }
}

/** Backoff between tries of a request to the stream: short, since a leader election is over in seconds. */
export const RETRY = { initialMs: 50, maxMs: 250 };

/** Runs `fn` until it succeeds, backing off between tries; a refusal that is no timeout (a `CoordinatorError`) ends it at once. */
export async function retrying<T>(signal: AbortSignal, random: () => number, fn: () => Promise<T>, log?: Logger): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof CoordinatorError || signal.aborted) throw err;
      log?.debug({ err, attempt }, 'no answer from the journal stream; asking again');
      await sleep(backoffDelay(RETRY, attempt, random), signal).catch(() => {
        throw err;
      });
    }
  }
}

/** The outcome of publishing one record: stored at a stream sequence, or refused because the subject moved on. */
export type Published = { readonly kind: 'stored'; readonly streamSeq: number } | { readonly kind: 'moved' };

/**
 * Publishes `record` (message id = its hash, so a resend is stored once) until the stream
 * acknowledges it or `signal` aborts. With `after`, the stream refuses it when the subject's last
 * message is another (`moved`).
 */
export async function publishRecord(
  js: JetStreamClient,
  o: { subject: string; ackTimeoutMs: number; random: () => number; log?: Logger | undefined },
  record: JournalRecord,
  after: number | undefined,
  signal: AbortSignal,
): Promise<Published> {
  const payload = JSON.stringify(record);
  for (let attempt = 0; ; attempt++) {
    try {
      const ack = await js.publish(o.subject, payload, { msgID: record.hash, timeout: o.ackTimeoutMs, ...(after === undefined ? {} : { expect: { lastSubjectSequence: after } }) });
      return { kind: 'stored', streamSeq: ack.seq };
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamWrongLastSequence) return { kind: 'moved' };
      // No acknowledgement (a node lost, a leader being elected): the same message id again is stored at most once.
      o.log?.debug({ err, seq: record.seq, attempt }, 'journal record not acknowledged; publishing it again');
      // At the deadline the last refusal is what the caller reports, not the deadline itself.
      await sleep(backoffDelay(RETRY, attempt, o.random), signal).catch(() => {
        throw err;
      });
    }
  }
}
