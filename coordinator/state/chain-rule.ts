/**
 * The chain rule of a replicated journal (docs/protocol.md, "The journal hash chain"). A JetStream
 * stream may hold records that do not extend the chain: two writers raced (the stream's
 * expected-last-sequence check is no fence: on nats-server 2.9 it runs on the stream leader outside
 * Raft), an old leader wrote after a new one, or someone published garbage. Read in stream order, a
 * message is ON the chain iff it parses as a record, its `seq` is the head's + 1, its `prev` is the
 * head's hash, its term is allowed after the head's ({@link termProblem}) and its hash verifies;
 * every other message is ignored, and reported. Replay, standbys and `audit verify` all read a
 * stream through {@link chainStep}, so they agree on one chain.
 */
import { GENESIS_HASH, recordHash, termProblem, type JournalRecord } from './journal.js';

/** One message of the stream: its stream sequence and its payload as stored. */
export interface StreamMessage {
  readonly streamSeq: number;
  readonly data: Uint8Array | string;
}

/** A message that is not on the chain, and why; what it claimed to be, where it parsed as a record. */
export interface IgnoredMessage {
  readonly streamSeq: number;
  readonly reason: string;
  readonly seq?: number;
  readonly hash?: string;
  readonly term?: number;
}

/** What the chain rule says of one message. */
export type ChainStep = { readonly ok: true; readonly record: JournalRecord } | { readonly ok: false; readonly ignored: IgnoredMessage };

const RECORD_KEYS = new Set(['seq', 'ts', 'prev', 'hash', 'term', 'body']);
const HEX64 = /^[0-9a-f]{64}$/;

/** Parses a stored message as a journal record: exactly the record's members, each of its type. */
export function parseRecord(data: Uint8Array | string): { ok: true; record: JournalRecord } | { ok: false; reason: string } {
  let value: unknown;
  try {
    value = JSON.parse(typeof data === 'string' ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
  } catch {
    return { ok: false, reason: 'not valid JSON' };
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) return { ok: false, reason: 'not a JSON object' };
  const r = value as Record<string, unknown>;
  const extra = Object.keys(r).find((k) => !RECORD_KEYS.has(k));
  // A member outside the hash input could say anything: such a message is no record.
  if (extra !== undefined) return { ok: false, reason: `not a journal record: unexpected member ${JSON.stringify(extra)}` };
  if (!Number.isSafeInteger(r['seq']) || (r['seq'] as number) < 1) return { ok: false, reason: 'not a journal record: seq is not a positive integer' };
  if (typeof r['ts'] !== 'number' || !Number.isFinite(r['ts'])) return { ok: false, reason: 'not a journal record: ts is not a number' };
  if (typeof r['prev'] !== 'string' || !HEX64.test(r['prev'])) return { ok: false, reason: 'not a journal record: prev is not a SHA-256' };
  if (typeof r['hash'] !== 'string' || !HEX64.test(r['hash'])) return { ok: false, reason: 'not a journal record: hash is not a SHA-256' };
  const body = r['body'] as Record<string, unknown> | null | undefined;
  if (!body || typeof body !== 'object' || Array.isArray(body) || typeof body['type'] !== 'string') {
    return { ok: false, reason: 'not a journal record: no body with a type' };
  }
  return { ok: true, record: r as unknown as JournalRecord };
}

/**
 * The chain rule for one message: whether it extends the chain whose last record is `head`
 * (undefined: the chain is empty). The one place the rule is written; see the module comment.
 */
export function chainStep(head: JournalRecord | undefined, message: StreamMessage): ChainStep {
  const parsed = parseRecord(message.data);
  if (!parsed.ok) return { ok: false, ignored: { streamSeq: message.streamSeq, reason: parsed.reason } };
  const r = parsed.record;
  const ignore = (reason: string): ChainStep => ({
    ok: false,
    ignored: { streamSeq: message.streamSeq, reason, seq: r.seq, hash: r.hash, ...(typeof r.term === 'number' ? { term: r.term } : {}) },
  });
  const next = (head?.seq ?? 0) + 1;
  if (r.seq !== next) return ignore(`seq is ${r.seq}, the chain's next is ${next}`);
  if (r.prev !== (head?.hash ?? GENESIS_HASH)) return ignore(`prev is not the hash of the chain's head (seq ${head?.seq ?? 0})`);
  const term = termProblem(head, r);
  if (term !== undefined) return ignore(term);
  if (recordHash(r) !== r.hash) return ignore('hash does not match the record');
  return { ok: true, record: r };
}

/** The chain a stream's messages (in stream order) hold, and every message ignored with why. */
export function chainOf(messages: Iterable<StreamMessage>): { records: JournalRecord[]; ignored: IgnoredMessage[] } {
  const records: JournalRecord[] = [];
  const ignored: IgnoredMessage[] = [];
  for (const m of messages) {
    const step = chainStep(records[records.length - 1], m);
    if (step.ok) records.push(step.record);
    else ignored.push(step.ignored);
  }
  return { records, ignored };
}
