/**
 * The chain rule of a replicated journal (coordinator/state/chain-rule.ts): read in stream order,
 * the first message that extends the head is on the chain, every other one is ignored with why.
 */
import { describe, expect, it } from 'vitest';
import { chainOf, chainStep, parseRecord, type StreamMessage } from '../../../coordinator/state/chain-rule.js';
import { GENESIS_HASH, recordHash, verifyChain, type JournalRecord } from '../../../coordinator/state/journal.js';

/** A record on `head` (undefined: the first), of `term`, with body `{type: 'test', n}`. */
function recordOn(head: JournalRecord | undefined, term: number | undefined, n: number): JournalRecord {
  const partial = { seq: (head?.seq ?? 0) + 1, ts: 1_000 + n, prev: head?.hash ?? GENESIS_HASH, term, body: { type: 'test', n } };
  return { ...partial, hash: recordHash(partial) };
}

/** Messages in stream order from records or raw payloads, numbered from 1. */
const stream = (...items: (JournalRecord | string)[]): StreamMessage[] =>
  items.map((x, i) => ({ streamSeq: i + 1, data: typeof x === 'string' ? x : Buffer.from(JSON.stringify(x)) }));

describe('the chain rule', () => {
  it('takes the first of two records that extend the same head and ignores the other, and everything built on it', () => {
    const a1 = recordOn(undefined, 1, 1);
    const a2 = recordOn(a1, 1, 2);
    const b2 = recordOn(a1, 2, 3);
    const b3 = recordOn(b2, 2, 4);
    const a3 = recordOn(a2, 1, 5);
    const { records, ignored } = chainOf(stream(a1, a2, b2, b3, a3));
    expect(records).toEqual([a1, a2, a3]);
    expect(ignored).toEqual([
      { streamSeq: 3, seq: 2, hash: b2.hash, term: 2, reason: "seq is 2, the chain's next is 3" },
      { streamSeq: 4, seq: 3, hash: b3.hash, term: 2, reason: 'prev is not the hash of the chain\'s head (seq 2)' },
    ]);
    expect(verifyChain(records).ok).toBe(true);
  });

  it("ignores an old leader's record of a lower term after a higher term's, and the new leader's next extends the chain", () => {
    const n1 = recordOn(undefined, 5, 1);
    const old = recordOn(n1, 3, 2);
    const n2 = recordOn(n1, 5, 3);
    const { records, ignored } = chainOf(stream(n1, old, n2));
    expect(records).toEqual([n1, n2]);
    expect(ignored).toEqual([{ streamSeq: 2, seq: 2, hash: old.hash, term: 3, reason: "term is 3, below the previous record's 5" }]);
  });

  it('continues a term-less (imported) chain with terms, but no term-less record after a termed one', () => {
    const i1 = recordOn(undefined, undefined, 1);
    const t2 = recordOn(i1, 7, 2);
    const late = recordOn(t2, undefined, 3);
    const { records, ignored } = chainOf(stream(i1, t2, late));
    expect(records).toEqual([i1, t2]);
    expect(ignored.map((m) => m.reason)).toEqual(['no term after a record of term 7']);
  });

  it('ignores garbage, records with a member outside the hash, forged bodies and replays, naming each', () => {
    const r1 = recordOn(undefined, 1, 1);
    const r2 = recordOn(r1, 1, 2);
    const { records, ignored } = chainOf(
      stream(r1, 'garbage', 'null', '{"seq":2}', JSON.stringify({ ...r2, extra: true }), JSON.stringify({ ...r2, body: { type: 'test', n: 99 } }), r1, JSON.stringify({ ...r2, term: 0 }), r2),
    );
    expect(records).toEqual([r1, r2]);
    expect(ignored.map((m) => [m.streamSeq, m.reason])).toEqual([
      [2, 'not valid JSON'],
      [3, 'not a JSON object'],
      [4, 'not a journal record: ts is not a number'],
      [5, 'not a journal record: unexpected member "extra"'],
      [6, 'hash does not match the record'],
      [7, "seq is 1, the chain's next is 2"],
      [8, 'term 0 is not a positive integer'],
    ]);
  });

  it('reads one message at a time the same way (chainStep), payloads as bytes or text', () => {
    const r1 = recordOn(undefined, 2, 1);
    expect(chainStep(undefined, { streamSeq: 9, data: JSON.stringify(r1) })).toEqual({ ok: true, record: r1 });
    expect(chainStep(r1, { streamSeq: 10, data: Buffer.from(JSON.stringify(r1)) })).toMatchObject({ ok: false, ignored: { streamSeq: 10, seq: 1 } });
    expect(parseRecord('{"seq":1,"ts":1,"prev":"x","hash":"y","body":{"type":"t"}}')).toEqual({ ok: false, reason: 'not a journal record: prev is not a SHA-256' });
  });
});
