import { X509Certificate } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportLines, parseAuditLines, verifyAudit } from '../../../coordinator/audit/index.js';
import { createCa, issueCertificate } from '../../../coordinator/pki/index.js';
import { recordHash, type JournalRecord } from '../../../coordinator/state/journal.js';
import { FEDERATION, rechain, receiptFor, toText, writeTrail, type Trail } from './trail-fixture.js';

let trail: Trail;
let ca: X509Certificate[];
beforeAll(async () => {
  trail = await writeTrail();
  ca = [new X509Certificate(trail.ca.certPem)];
});

const verify = (text: string, requireReceipts = false) => verifyAudit(parseAuditLines(text), { ca, requireReceipts });
const indexOf = (records: readonly JournalRecord[], type: string, nth = 0): number => records.map((r, i) => [r, i] as const).filter(([r]) => r.body.type === type)[nth]![1];
const clone = (): JournalRecord[] => JSON.parse(JSON.stringify(trail.records)) as JournalRecord[];

describe('audit verify', () => {
  it('accepts an intact trail: chain, two committed rounds and all four receipts checked against the CA', () => {
    const r = verify(trail.text, true);
    expect(r).toMatchObject({ ok: true, records: trail.records.length, committedRounds: 2, receipts: 4, missingReceipts: [], caChecked: true });
    expect(r.head).toBe(trail.records.at(-1)!.hash);
    expect(r.firstBroken).toBeUndefined();
  });

  it('names a record whose field was changed: its index, hash and "hash does not match"', () => {
    const records = clone();
    const i = indexOf(records, 'round-committed', 1);
    Object.assign(records[i]!.body, { modelSha256: 'f'.repeat(64) });
    const r = verify(toText(records));
    expect(r.ok).toBe(false);
    expect(r.firstBroken).toMatchObject({ index: i, seq: i + 1, hash: trail.records[i]!.hash, type: 'round-committed' });
    expect(r.firstBroken!.reason).toMatch(/hash does not match/);
    expect(r.records).toBe(i);
  });

  it('names the record after a deleted one (seq and prev no longer follow)', () => {
    const records = clone();
    const i = indexOf(records, 'round-opened', 1);
    records.splice(i, 1);
    const r = verify(toText(records));
    expect(r.firstBroken).toMatchObject({ index: i, seq: i + 2, hash: trail.records[i + 1]!.hash });
    expect(r.firstBroken!.reason).toMatch(/seq is .*expected/);
  });

  it('catches history rewritten and re-chained by the coordinator: the receipts no longer match the committed model', () => {
    const records = clone();
    const i = indexOf(records, 'round-committed', 0);
    Object.assign(records[i]!.body, { modelSha256: 'e'.repeat(64) });
    // A thorough forger also points the receipts at the rewritten record; only the signatures stay.
    const relinked = rechain(records);
    for (const x of relinked) if (x.body.type === 'receipt' && x.body['round'] === 1) Object.assign(x.body, { committedHash: relinked[i]!.hash });
    const rewritten = rechain(relinked);
    const r = verify(toText(rewritten));
    const first = indexOf(rewritten, 'receipt', 0);
    expect(r.firstBroken).toMatchObject({ index: first, type: 'receipt', hash: rewritten[first]!.hash });
    expect(r.firstBroken!.reason).toMatch(/receipt model .* differs from the committed/);
  });

  it('rejects a receipt forged with a certificate from another CA, and one whose signature bytes were altered', async () => {
    const other = await createCa({ federation: FEDERATION, validityDays: 30, now: new Date(Date.now() - 60_000) });
    const forgedCert = await issueCertificate({ ca: other, role: 'site', id: 'site-b', federation: FEDERATION, validityDays: 30, now: new Date(Date.now() - 60_000) });
    const records = clone();
    const i = indexOf(records, 'receipt', 1);
    const committed = records[indexOf(records, 'round-committed', 0)]!;
    records[i] = { ...records[i]!, body: { ...receiptFor(committed, 'site-b', { certPem: forgedCert.certPem, keyPem: forgedCert.keyPem! }) } };
    const forged = rechain(records);
    const r = verify(toText(forged));
    expect(r.firstBroken).toMatchObject({ index: i, type: 'receipt' });
    expect(r.firstBroken!.reason).toBe('receipt certificate was not issued by the federation CA');

    const records2 = clone();
    const body = records2[i]!.body;
    const sig = Buffer.from(String(body['signature']), 'base64');
    sig[sig.length - 1]! ^= 0x01;
    Object.assign(body, { signature: sig.toString('base64') });
    const r2 = verify(toText(rechain(records2)));
    expect(r2.firstBroken).toMatchObject({ index: i, type: 'receipt' });
    expect(r2.firstBroken!.reason).toMatch(/signature of site site-b does not verify/);
  });

  it('rejects a receipt signed by one site but filed under another', () => {
    const records = clone();
    const i = indexOf(records, 'receipt', 0);
    const committed = records[indexOf(records, 'round-committed', 0)]!;
    const wrong = receiptFor(committed, 'site-a', trail.sites.get('site-b')!);
    records[i] = { ...records[i]!, body: { ...wrong } };
    const r = verify(toText(rechain(records)));
    expect(r.firstBroken!.reason).toMatch(/certificate is for site site-b of auditfed, not site site-a/);
  });

  it('lists participants without a receipt, and fails on them only with requireReceipts', () => {
    const records = clone();
    records.splice(indexOf(records, 'receipt', 3), 1);
    const text = toText(rechain(records));
    const lenient = verify(text);
    expect(lenient.ok).toBe(true);
    expect(lenient.missingReceipts).toEqual([{ runId: 'r1', round: 2, site: 'site-b' }]);
    const strict = verify(text, true);
    expect(strict.ok).toBe(false);
    expect(strict.firstBroken!.reason).toMatch(/1 receipt\(s\) missing, first: site site-b for round 2/);
  });

  it('accepts a trail that goes on from term-less records with terms that never decrease, and names a term that does', () => {
    const records = clone();
    const extend = (term: number | undefined): void => {
      const last = records[records.length - 1]!;
      const partial = { seq: last.seq + 1, ts: last.ts + 1, prev: last.hash, term, body: { type: 'leader', term } };
      records.push({ ...partial, hash: recordHash(partial) });
    };
    for (const term of [4, 4, 9]) extend(term);
    expect(verify(toText(records))).toMatchObject({ ok: true, records: trail.records.length + 3 });
    extend(8);
    expect(verify(toText(records)).firstBroken).toMatchObject({ index: trail.records.length + 3, reason: "term is 8, below the previous record's 9" });
    records.pop();
    extend(undefined);
    expect(verify(toText(records)).firstBroken).toMatchObject({ index: trail.records.length + 3, reason: 'no term after a record of term 9' });
  });

  it('names a line that is not JSON and a torn last line', () => {
    const lines = trail.text.split('\n');
    lines[2] = '{"seq": 3, broken';
    expect(verify(lines.join('\n')).firstBroken).toMatchObject({ index: 2, reason: 'line is not valid JSON' });
    const torn = trail.text.slice(0, -10);
    expect(verify(torn).firstBroken).toMatchObject({ index: trail.records.length - 1 });
    expect(verify(torn).firstBroken!.reason).toMatch(/incomplete/);
  });

  it('without a CA still checks signatures and identities but says the certificates were not checked', () => {
    const r = verifyAudit(parseAuditLines(trail.text));
    expect(r).toMatchObject({ ok: true, caChecked: false, receipts: 4 });
  });

  it('exports the trail as JSON lines that read back to the same bytes', () => {
    expect(exportLines(parseAuditLines(trail.text))).toBe(trail.text);
  });
});

afterAll(async () => {
  await rm(trail.dir, { recursive: true, force: true });
});
