/**
 * The JetStream side of the audit trail: the stream (created if missing, file storage), where the
 * stream's copy of the journal ends, and publishing one record with its hash as message id (so a
 * record sent twice is stored once).
 */
import {
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type JetStreamClient,
  type JetStreamManager,
} from '@nats-io/jetstream';
import type { JournalRecord } from '../state/journal.js';

/** Where the audit records of one journal go. */
export interface AuditTarget {
  readonly stream: string;
  readonly subject: string;
}

/** Creates the stream when missing, or adds `subject` to an existing stream that lacks it. */
export async function ensureAuditStream(jsm: JetStreamManager, t: AuditTarget): Promise<void> {
  try {
    const info = await jsm.streams.info(t.stream);
    const subjects = info.config.subjects ?? [];
    if (!subjects.includes(t.subject)) await jsm.streams.update(t.stream, { subjects: [...subjects, t.subject] });
  } catch (err) {
    if (!(err instanceof JetStreamApiError) || err.code !== JetStreamApiCodes.StreamNotFound) throw err;
    // Audit records are never discarded by age or count: limits retention with no limits set.
    await jsm.streams.add({ name: t.stream, subjects: [t.subject], storage: StorageType.File, retention: RetentionPolicy.Limits });
  }
}

/** The last record the stream holds on `subject` (its `seq` and `hash`), or undefined when none. */
export async function lastAuditRecord(jsm: JetStreamManager, t: AuditTarget): Promise<{ seq: number; hash: string } | undefined> {
  const msg = await jsm.streams.getMessage(t.stream, { last_by_subj: t.subject });
  if (!msg) return undefined;
  const r = msg.json<Partial<JournalRecord>>();
  if (typeof r.seq !== 'number' || typeof r.hash !== 'string') throw new Error(`stream ${t.stream} message ${msg.seq} is not an audit record`);
  return { seq: r.seq, hash: r.hash };
}

/**
 * Index of the first journal record the stream does not hold yet: 0 when it holds none; after the
 * record it ends with when the journal holds that record; undefined when it does not (the stream
 * holds another journal's records).
 */
export function replayFrom(records: readonly JournalRecord[], last: { seq: number; hash: string } | undefined): number | undefined {
  if (!last) return 0;
  if (records[last.seq - 1]?.hash === last.hash) return last.seq;
  const i = records.findIndex((r) => r.hash === last.hash);
  return i < 0 ? undefined : i + 1;
}

/** Publishes one record as JSON, message id = record hash; resolves on the stream's acknowledgement. */
export async function publishAuditRecord(js: JetStreamClient, t: AuditTarget, r: JournalRecord, timeoutMs: number): Promise<void> {
  await js.publish(t.subject, JSON.stringify(r), { msgID: r.hash, timeout: timeoutMs });
}
