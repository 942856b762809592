import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CoordinatorError } from '../../../coordinator/core/errors.js';
import {
  GENESIS_HASH,
  Journal,
  type JournalRecord,
  canonicalJson,
  readJournal,
  recordHash,
  verifyChain,
} from '../../../coordinator/state/journal.js';

let dir: string;
let path: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fedhpc-journal-'));
  path = join(dir, 'journal.jsonl');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A fake clock: 1000, 1001, 1002, … */
function fakeClock(start = 1000): () => number {
  let t = start;
  return () => t++;
}

async function writeRecords(n: number): Promise<JournalRecord[]> {
  const j = await Journal.open(path, fakeClock());
  for (let i = 1; i <= n; i++) await j.append({ type: 'test', i });
  const records = [...j.records()];
  await j.close();
  return records;
}

async function lines(): Promise<string[]> {
  const text = await readFile(path, 'utf8');
  return text.split('\n');
}

async function expectCorrupt(promise: Promise<unknown>, line: number): Promise<CoordinatorError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(CoordinatorError);
  const e = error as CoordinatorError;
  expect(e.code).toBe('STATE_CORRUPT');
  expect(e.context.line).toBe(line);
  expect(e.message).toContain(path);
  return e;
}

describe('journal append and read', () => {
  it('chains records by prev/hash with 1-based seq and the injected clock', async () => {
    const j = await Journal.open(path, fakeClock());
    const a = await j.append({ type: 'a', x: 1 });
    const b = await j.append({ type: 'b', nested: { z: [1, 2], y: 'q' } });
    expect(a).toMatchObject({ seq: 1, ts: 1000, prev: GENESIS_HASH, body: { type: 'a', x: 1 } });
    expect(b).toMatchObject({ seq: 2, ts: 1001, prev: a.hash });
    expect(a.hash).toBe(recordHash(a));
    expect(b.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(j.records()).toEqual([a, b]);
    await j.close();
  });

  it('writes one JSON line per record, durable and readable by readJournal', async () => {
    const written = await writeRecords(3);
    const text = await readFile(path, 'utf8');
    expect(text.endsWith('\n')).toBe(true);
    expect(text.split('\n').slice(0, -1).map((l) => JSON.parse(l) as unknown)).toEqual(written);
    expect(await readJournal(path, { repairTornTail: false })).toEqual(written);
  });

  it('keeps every record across close and reopen, and continues the chain', async () => {
    const written = await writeRecords(3);
    const j = await Journal.open(path, fakeClock(5000));
    expect(j.records()).toEqual(written);
    const next = await j.append({ type: 'test', i: 4 });
    expect(next.seq).toBe(4);
    expect(next.prev).toBe(written[2]!.hash);
    await j.close();
    expect(verifyChain(await readJournal(path, { repairTornTail: false }))).toEqual({ ok: true, records: 4 });
  });

  it('opens a missing journal as empty and creates the file', async () => {
    const j = await Journal.open(path);
    expect(j.records()).toEqual([]);
    await j.close();
    expect(await readFile(path, 'utf8')).toBe('');
    expect(await readJournal(join(dir, 'nope.jsonl'), { repairTornTail: false })).toEqual([]);
  });

  it('applies concurrent appends in call order', async () => {
    const j = await Journal.open(path, fakeClock());
    const results = await Promise.all(Array.from({ length: 25 }, (_, i) => j.append({ type: 'c', i })));
    expect(results.map((r) => r.seq)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
    expect(results.map((r) => r.body.i)).toEqual(Array.from({ length: 25 }, (_, i) => i));
    expect(j.records().map((r) => r.body.i)).toEqual(Array.from({ length: 25 }, (_, i) => i));
    await j.close();
    const reread = await readJournal(path, { repairTornTail: false });
    expect(reread.map((r) => r.body.i)).toEqual(Array.from({ length: 25 }, (_, i) => i));
    expect(verifyChain(reread).ok).toBe(true);
  });

  it('reopens a record whose arrays contain undefined (stored as null by JSON)', async () => {
    // A record that append acknowledged must never make the journal unopenable afterwards.
    const j = await Journal.open(path, fakeClock());
    await j.append({ type: 'sparse', values: [1, undefined, 3] });
    await j.close();
    const reopened = await Journal.open(path);
    expect(reopened.records()).toHaveLength(1);
    await reopened.close();
  });
});

describe('verifyChain', () => {
  it('accepts an intact chain and an empty one', async () => {
    const records = await writeRecords(4);
    expect(verifyChain(records)).toEqual({ ok: true, records: 4 });
    expect(verifyChain([])).toEqual({ ok: true, records: 0 });
  });

  it('names the record whose body was edited', async () => {
    const records = await writeRecords(4);
    const edited = records.map((r, i) => (i === 1 ? { ...r, body: { ...r.body, i: 99 } } : r));
    expect(verifyChain(edited)).toEqual({ ok: false, line: 2, reason: 'hash does not match the record' });
  });

  it('names the record after a deleted one', async () => {
    const records = await writeRecords(4);
    const check = verifyChain([records[0]!, records[2]!, records[3]!]);
    expect(check).toMatchObject({ ok: false, line: 2 });
    expect(check.ok ? '' : check.reason).toContain('seq is 3, expected 2');
  });

  it('names a deleted record even when the survivors were renumbered', async () => {
    const records = await writeRecords(4);
    const renumbered = [records[0]!, { ...records[2]!, seq: 2 }, { ...records[3]!, seq: 3 }];
    expect(verifyChain(renumbered)).toEqual({ ok: false, line: 2, reason: 'prev does not match the previous record' });
  });

  it('names the record with a wrong seq', async () => {
    const records = await writeRecords(4);
    const wrong = records.map((r, i) => (i === 2 ? { ...r, seq: 7 } : r));
    expect(verifyChain(wrong)).toEqual({ ok: false, line: 3, reason: 'seq is 7, expected 3' });
  });

  it('refuses a first record that does not start from the genesis hash', async () => {
    const records = await writeRecords(2);
    expect(verifyChain([{ ...records[0]!, prev: 'f'.repeat(64) }])).toMatchObject({ ok: false, line: 1 });
  });
});

/** `records` continued by records of the given terms (undefined: none), each chained and hashed. */
function extendWithTerms(records: readonly JournalRecord[], terms: readonly (number | undefined)[]): JournalRecord[] {
  const out = [...records];
  for (const term of terms) {
    const last = out[out.length - 1];
    const partial = { seq: (last?.seq ?? 0) + 1, ts: (last?.ts ?? 0) + 1, prev: last?.hash ?? GENESIS_HASH, term, body: { type: 'test', term } };
    out.push({ ...partial, hash: recordHash(partial) });
  }
  return out;
}

describe('leadership terms (protocol version 7)', () => {
  it('hashes a record without a term exactly as before terms existed: SHA-256 of the canonical {seq, ts, prev, body}', async () => {
    for (const r of await writeRecords(3)) {
      expect(r).not.toHaveProperty('term');
      expect(createHash('sha256').update(canonicalJson({ seq: r.seq, ts: r.ts, prev: r.prev, body: r.body })).digest('hex')).toBe(r.hash);
      expect(recordHash({ ...r, term: undefined })).toBe(r.hash);
    }
  });

  it('puts a term in the hash input: the same record with another term hashes differently', () => {
    const base = { seq: 1, ts: 5, prev: GENESIS_HASH, body: { type: 'x' } };
    expect(recordHash({ ...base, term: 3 })).toBe(createHash('sha256').update(canonicalJson({ ...base, term: 3 })).digest('hex'));
    expect(recordHash({ ...base, term: 3 })).not.toBe(recordHash({ ...base, term: 4 }));
    expect(recordHash({ ...base, term: 3 })).not.toBe(recordHash(base));
  });

  it('accepts term-less records followed by termed ones whose term never decreases', async () => {
    const chain = extendWithTerms(await writeRecords(3), [1, 1, 4, 9, 9]);
    expect(verifyChain(chain)).toEqual({ ok: true, records: 8 });
    expect(verifyChain(extendWithTerms([], [2, 2, 3]))).toEqual({ ok: true, records: 3 });
  });

  it('names a term that decreases, a record without a term after a termed one, and a term that is no positive integer', async () => {
    const start = await writeRecords(2);
    expect(verifyChain(extendWithTerms(start, [5, 4]))).toEqual({ ok: false, line: 4, reason: "term is 4, below the previous record's 5" });
    expect(verifyChain(extendWithTerms(start, [5, undefined]))).toEqual({ ok: false, line: 4, reason: 'no term after a record of term 5' });
    expect(verifyChain(extendWithTerms(start, [0]))).toEqual({ ok: false, line: 3, reason: 'term 0 is not a positive integer' });
    expect(verifyChain(extendWithTerms(start, [1.5]))).toEqual({ ok: false, line: 3, reason: 'term 1.5 is not a positive integer' });
  });
});

describe('opening a damaged journal', () => {
  it('cuts off a torn last line and continues the chain after it', async () => {
    const written = await writeRecords(3);
    const whole = (await readFile(path, 'utf8')).length;
    await appendFile(path, '{"seq":4,"ts":1003,"prev":"ab'); // crash mid-append: no newline
    const j = await Journal.open(path, fakeClock(2000));
    expect(j.records()).toEqual(written);
    expect((await readFile(path, 'utf8')).length).toBe(whole);
    const next = await j.append({ type: 'test', i: 4 });
    expect(next).toMatchObject({ seq: 4, prev: written[2]!.hash });
    await j.close();
    const reread = await readJournal(path, { repairTornTail: false });
    expect(reread).toHaveLength(4);
    expect(verifyChain(reread)).toEqual({ ok: true, records: 4 });
  });

  it('cuts off a torn first line of an otherwise empty journal', async () => {
    await writeFile(path, '{"seq":1,');
    const j = await Journal.open(path, fakeClock());
    expect(j.records()).toEqual([]);
    expect((await j.append({ type: 'a' })).prev).toBe(GENESIS_HASH);
    await j.close();
  });

  it('refuses a torn last line without repair, naming the line', async () => {
    await writeRecords(2);
    await appendFile(path, '{"seq":3');
    await expectCorrupt(readJournal(path, { repairTornTail: false }), 3);
    expect((await lines()).at(-1)).toBe('{"seq":3'); // nothing was cut
  });

  it('refuses a garbage middle line with STATE_CORRUPT naming the line', async () => {
    await writeRecords(3);
    const l = await lines();
    l[1] = 'this is not json';
    await writeFile(path, l.join('\n'));
    const e = await expectCorrupt(Journal.open(path), 2);
    expect(e.message).toContain('line 2');
  });

  it('refuses a journal whose middle record was edited on disk, naming the record', async () => {
    await writeRecords(3);
    const l = await lines();
    const r = JSON.parse(l[1]!) as JournalRecord;
    l[1] = JSON.stringify({ ...r, body: { ...r.body, i: 42 } });
    await writeFile(path, l.join('\n'));
    const e = await expectCorrupt(Journal.open(path), 2);
    expect(e.message).toContain('hash does not match');
  });

  it('refuses a journal with a record deleted on disk', async () => {
    await writeRecords(3);
    const l = await lines();
    l.splice(1, 1);
    await writeFile(path, l.join('\n'));
    await expectCorrupt(Journal.open(path), 2);
  });
});

describe('canonicalJson', () => {
  it('does not depend on key order, at any depth', () => {
    const a = { type: 't', b: 1, a: { y: [1, { q: 1, p: 2 }], x: 's' } };
    const b = { a: { x: 's', y: [1, { p: 2, q: 1 }] }, b: 1, type: 't' };
    expect(canonicalJson(a)).toBe(canonicalJson(b));
    expect(canonicalJson(a)).toBe('{"a":{"x":"s","y":[1,{"p":2,"q":1}]},"b":1,"type":"t"}');
  });

  it('drops undefined fields like JSON does', () => {
    expect(canonicalJson({ a: 1, b: undefined })).toBe(canonicalJson({ a: 1 }));
  });

  it('keeps array order and distinguishes values', () => {
    expect(canonicalJson([2, 1])).not.toBe(canonicalJson([1, 2]));
    expect(canonicalJson({ a: '1' })).not.toBe(canonicalJson({ a: 1 }));
    expect(canonicalJson(null)).toBe('null');
  });

  it('gives the same record hash whatever the body key order', () => {
    const base = { seq: 1, ts: 5, prev: GENESIS_HASH };
    expect(recordHash({ ...base, body: { type: 'x', a: 1, b: 2 } })).toBe(recordHash({ ...base, body: { b: 2, a: 1, type: 'x' } }));
  });
});
