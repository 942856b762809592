/**
 * The append-only, hash-chained journal (`journal.jsonl`). Each record carries the hash of the
 * previous one; a record is durable once `append` resolves (written and fdatasync'ed). On open, a
 * torn last line (a crash mid-append, never acknowledged) is cut off; any other damage is an error
 * that names the line. The record format, its hash and the term rule are shared with the replicated
 * journal (`jetstream-journal.ts`), whose records carry the writer's leadership term.
 */
import { createHash } from 'node:crypto';
import { open, readFile, truncate, type FileHandle } from 'node:fs/promises';
import { CoordinatorError } from '../core/errors.js';

/** Hash of the (virtual) record before the first one. */
export const GENESIS_HASH = '0'.repeat(64);

/** A stored record: the caller's body plus sequence number, time and the chain. */
export interface JournalRecord<B extends JournalBody = JournalBody> {
  readonly seq: number;
  readonly ts: number;
  readonly prev: string;
  readonly hash: string;
  /**
   * The leadership term of the coordinator that wrote it (the lease revision; protocol version 7).
   * Absent in a state dir's journal and in records imported from one.
   */
  readonly term?: number;
  readonly body: B;
}

/** What callers append: a JSON object with a `type`. */
export interface JournalBody {
  readonly type: string;
  readonly [key: string]: unknown;
}

/** Canonical JSON: object keys sorted, so a hash never depends on insertion order. */
export function canonicalJson(value: unknown): string {
  // Array holes and undefined become null, exactly as JSON.stringify writes them to disk.
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.keys(value as Record<string, unknown>)
      .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * The hash of a record: SHA-256 over the canonical JSON of everything but the hash itself,
 * `{seq, ts, prev, term, body}`. A record without a term hashes exactly as before terms existed
 * (canonical JSON leaves undefined members out), so every existing journal keeps verifying.
 */
export function recordHash(r: Omit<JournalRecord, 'hash'>): string {
  return createHash('sha256').update(canonicalJson({ seq: r.seq, ts: r.ts, prev: r.prev, term: r.term, body: r.body })).digest('hex');
}

/**
 * What is wrong with `r`'s term after `before` (the record preceding it, if any), or undefined.
 * A chain is term-less records (a state dir's journal, imported) followed by termed ones whose term
 * never decreases: a term is a positive integer, and once a record has one, every later record does.
 */
export function termProblem(before: Pick<JournalRecord, 'term'> | undefined, r: Pick<JournalRecord, 'term'>): string | undefined {
  if (r.term !== undefined && !(Number.isSafeInteger(r.term) && r.term > 0)) return `term ${String(r.term)} is not a positive integer`;
  const last = before?.term;
  if (last === undefined) return undefined;
  if (r.term === undefined) return `no term after a record of term ${last}`;
  if (r.term < last) return `term is ${r.term}, below the previous record's ${last}`;
  return undefined;
}

/** Result of checking a chain: the first broken record, if any. */
export type ChainCheck = { ok: true; records: number } | { ok: false; line: number; reason: string };

/** Verifies seq, prev links, terms ({@link termProblem}) and hashes of parsed records. */
export function verifyChain(records: readonly JournalRecord[]): ChainCheck {
  let prev = GENESIS_HASH;
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    if (r.seq !== i + 1) return { ok: false, line: i + 1, reason: `seq is ${r.seq}, expected ${i + 1}` };
    if (r.prev !== prev) return { ok: false, line: i + 1, reason: 'prev does not match the previous record' };
    const term = termProblem(records[i - 1], r);
    if (term !== undefined) return { ok: false, line: i + 1, reason: term };
    if (recordHash(r) !== r.hash) return { ok: false, line: i + 1, reason: 'hash does not match the record' };
    prev = r.hash;
  }
  return { ok: true, records: records.length };
}

/** An open journal: all records in memory (they are small), appends serialized and durable. */
export class Journal {
  private tail: Promise<unknown> = Promise.resolve();
  private constructor(
    private readonly handle: FileHandle,
    private readonly entries: JournalRecord[],
    private readonly now: () => number,
    /** Bytes of a torn last line cut off when the journal was opened (0 when none). */
    readonly repairedBytes: number,
  ) {}

  /** Opens (creating if missing) and verifies the journal at `path`. */
  static async open(path: string, now: () => number = Date.now): Promise<Journal> {
    let repairedBytes = 0;
    const records = await readJournal(path, { repairTornTail: true, onRepair: (n) => (repairedBytes = n) });
    const handle = await open(path, 'a');
    return new Journal(handle, records, now, repairedBytes);
  }

  /** Every record, oldest first. */
  records(): readonly JournalRecord[] {
    return this.entries;
  }

  /** Appends a record and resolves once it is on disk. Appends are applied in call order. */
  append<B extends { readonly type: string }>(body: B): Promise<JournalRecord<B & JournalBody>> {
    const run = async (): Promise<JournalRecord<B & JournalBody>> => {
      const last = this.entries[this.entries.length - 1];
      // Stored and hashed exactly as it will read back (NaN → null, Dates → strings, …).
      const stored = JSON.parse(JSON.stringify(body)) as B & JournalBody;
      const partial = { seq: (last?.seq ?? 0) + 1, ts: this.now(), prev: last?.hash ?? GENESIS_HASH, body: stored };
      const record: JournalRecord<B & JournalBody> = { ...partial, hash: recordHash(partial) };
      await this.handle.write(`${JSON.stringify(record)}\n`);
      await this.handle.datasync();
      this.entries.push(record);
      return record;
    };
    const result = this.tail.then(run, run);
    this.tail = result.catch(() => undefined);
    return result;
  }

  async close(): Promise<void> {
    await this.tail;
    await this.handle.close();
  }
}

/**
 * Reads and verifies a journal file. With `repairTornTail`, an unparsable final line without a
 * newline (an append cut by a crash) is removed from the file; without it, it is an error.
 */
export async function readJournal(
  path: string,
  options: { repairTornTail: boolean; onRepair?: (bytesCut: number) => void },
): Promise<JournalRecord[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const lines = text.split('\n');
  const complete = text.endsWith('\n') || text.length === 0;
  const torn = complete ? undefined : lines.pop();
  if (complete) lines.pop();
  const records: JournalRecord[] = [];
  for (let i = 0; i < lines.length; i++) {
    try {
      records.push(JSON.parse(lines[i]!) as JournalRecord);
    } catch (cause) {
      throw new CoordinatorError('STATE_CORRUPT', `${path}: line ${i + 1} is not valid JSON`, { line: i + 1 }, { cause });
    }
  }
  if (torn !== undefined) {
    if (!options.repairTornTail) {
      throw new CoordinatorError('STATE_CORRUPT', `${path}: line ${lines.length + 1} is incomplete`, { line: lines.length + 1 });
    }
    await truncate(path, Buffer.byteLength(text) - Buffer.byteLength(torn));
    options.onRepair?.(Buffer.byteLength(torn));
  }
  const check = verifyChain(records);
  if (!check.ok) throw new CoordinatorError('STATE_CORRUPT', `${path}: line ${check.line}: ${check.reason}`, { line: check.line });
  return records;
}
