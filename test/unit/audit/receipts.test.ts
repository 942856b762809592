import { X509Certificate } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { partsSha256, receiptPayload, signReceipt, type ReceiptDelta } from '../../../common/receipt.js';
import { unknownUsage, usageToWire, type RoundUsage } from '../../../common/usage.js';
import { ReceiptDesk, parseAuditLines, verifyAudit } from '../../../coordinator/audit/index.js';
import { receiptFromWire } from '../../../coordinator/service/wire.js';
import { CoordinatorError } from '../../../coordinator/core/errors.js';
import type { PeerIdentity } from '../../../coordinator/pki/index.js';
import { Journal, type JournalRecord } from '../../../coordinator/state/journal.js';
import { testLogger } from '../../helpers/logger.js';
import { FEDERATION, rechain, toText, writeTrail, type Trail } from './trail-fixture.js';

let trail: Trail;
let journal: Journal;
let desk: ReceiptDesk;
beforeEach(async () => {
  trail = await writeTrail();
  // Only the commits: the receipts are what this test submits.
  const path = join(trail.dir, 'fresh.jsonl');
  await writeFile(path, toText(rechain(trail.records.filter((r) => r.body.type !== 'receipt'))));
  journal = await Journal.open(path);
  desk = new ReceiptDesk({ federation: FEDERATION, store: journal, logger: testLogger().logger });
});
afterEach(async () => {
  await journal.close();
  await rm(trail.dir, { recursive: true, force: true });
});

const committed = (round: number): JournalRecord => journal.records().find((r) => r.body.type === 'round-committed' && r.body['round'] === round)!;
const id = (site: string): PeerIdentity => ({ role: 'site', id: site, federation: FEDERATION, fingerprint256: '' });

/** What a site on a Slurm cluster with accounting declares: 2 GPUs for 100 s, 80 s of them training. */
const USAGE: RoundUsage = { source: 'slurm-sacct', gpus: 2, wallMs: 100_000, allocatedGpuMs: 200_000, trainingGpuMs: 160_000, jobs: '4711', reason: '' };

function receipt(site: string, round: number, over: Partial<{ modelSha256: string; dataManifestSha256: string; key: string; usage: RoundUsage; delta: ReceiptDelta }> = {}) {
  const b = committed(round).body as unknown as { runId: string; parentSha256: string; modelSha256: string; participants: { site: string; dataManifestSha256: string }[] };
  const fields = {
    federation: FEDERATION,
    runId: b.runId,
    round,
    site,
    parentSha256: b.parentSha256,
    modelSha256: over.modelSha256 ?? b.modelSha256,
    dataManifestSha256: over.dataManifestSha256 ?? b.participants.find((p) => p.site === site)?.dataManifestSha256 ?? '',
    usage: over.usage ?? USAGE,
    ...(over.delta ? { delta: over.delta } : {}),
  };
  return { ...fields, signature: signReceipt(fields, over.key ?? trail.sites.get(site)!.keyPem) };
}

const cert = (site: string): X509Certificate => new X509Certificate(trail.sites.get(site)!.certPem);

async function expectRefused(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(CoordinatorError);
  expect((err as CoordinatorError).code).toBe(code);
  expect((err as CoordinatorError).message).toMatch(message);
}

describe('receipts submitted by sites', () => {
  it('journals a valid receipt once, with the certificate, so the trail verifies offline', async () => {
    const before = journal.records().length;
    expect(await desk.submit(id('site-a'), cert('site-a'), receipt('site-a', 2))).toBe('recorded');
    expect(await desk.submit(id('site-a'), cert('site-a'), receipt('site-a', 2))).toBe('duplicate');
    const added = journal.records().slice(before);
    expect(added.map((r) => r.body.type)).toEqual(['receipt']);
    expect(added[0]!.body).toMatchObject({ site: 'site-a', round: 2, committedHash: committed(2).hash, fingerprint: cert('site-a').fingerprint256 });
    const text = journal.records().map((r) => `${JSON.stringify(r)}\n`).join('');
    expect(verifyAudit(parseAuditLines(text), { ca: [new X509Certificate(trail.ca.certPem)] }).ok).toBe(true);
  });

  it('refuses a receipt whose signature was made with another site\'s key', async () => {
    await expectRefused(desk.submit(id('site-a'), cert('site-a'), receipt('site-a', 1, { key: trail.sites.get('site-b')!.keyPem })), 'BAD_REQUEST', /signature of site site-a does not verify/);
  });

  it('refuses a receipt of a model the round did not commit, and of a round not committed', async () => {
    await expectRefused(desk.submit(id('site-a'), cert('site-a'), receipt('site-a', 1, { modelSha256: 'a'.repeat(64) })), 'BAD_REQUEST', /receipt modelSha256 a+ differs/);
    await expectRefused(desk.submit(id('site-a'), cert('site-a'), { ...receipt('site-a', 1), round: 9 }), 'BAD_REQUEST', /round 9 of run r1 is not committed/);
  });

  it('refuses a receipt from a site that did not take part', async () => {
    await expectRefused(desk.submit(id('site-c'), cert('site-a'), receipt('site-c', 1, { key: trail.sites.get('site-a')!.keyPem })), 'NOT_INVITED', /site site-c did not take part in round 1/);
  });

  it('validates wire receipts before use, their usage included', () => {
    const ok = { runId: 'r1', round: '1', parentSha256: 'a'.repeat(64), modelSha256: 'b'.repeat(64), dataManifestSha256: '', signature: Buffer.alloc(70, 1), usage: usageToWire(USAGE), deltaSha256: '', deltaParts: [] };
    expect(receiptFromWire(ok)).toMatchObject({ round: 1, usage: USAGE });
    expect(receiptFromWire({ ...ok, usage: usageToWire(unknownUsage('sacct: Slurm accounting storage is disabled')) }).usage.reason).toBe('sacct: Slurm accounting storage is disabled');
    const usage = (over: Partial<ReturnType<typeof usageToWire>>) => ({ ...ok, usage: { ...ok.usage, ...over } });
    for (const [bad, msg] of [
      [{ ...ok, round: '0' }, /round must be a positive integer/],
      [{ ...ok, runId: 'a b' }, /is not a run id/],
      [{ ...ok, modelSha256: 'xyz' }, /modelSha256 is not a SHA-256/],
      [{ ...ok, dataManifestSha256: 'nope' }, /dataManifestSha256 is not a SHA-256/],
      [{ ...ok, signature: Buffer.alloc(0) }, /signature must be 1..256 bytes/],
      [{ ...ok, usage: null }, /carries no usage/],
      [usage({ source: 'guess' }), /usage source "guess" is not one of/],
      [usage({ trainingGpuMs: '200001' }), /trainingGpuMs 200001 is above allocatedGpuMs 200000/],
      [usage({ allocatedGpuMs: '200001', trainingGpuMs: '0' }), /above wallMs × gpus/],
      [usage({ wallMs: '-1' }), /usage.wallMs is not a valid integer/],
      [usage({ wallMs: '9007199254740993' }), /usage.wallMs is not a valid integer/],
      [usage({ reason: 'why' }), /known usage carries no reason/],
      [usage({ source: 'unknown', reason: '' }), /unknown usage must say why/],
      [usage({ source: 'unknown', reason: 'no sacct' }), /unknown usage carries no figures/],
      [usage({ source: 'unknown', gpus: 0, wallMs: '0', allocatedGpuMs: '0', trainingGpuMs: '0', jobs: '', reason: 'line\nbreak' }), /printable ASCII/],
      [usage({ jobs: '1;rm -rf' }), /comma-separated job ids/],
    ] as const) {
      expect(() => receiptFromWire(bad)).toThrow(CoordinatorError);
      expect(() => receiptFromWire(bad)).toThrow(msg);
    }
  });

  it('journals the usage the site signed; a usage changed afterwards fails audit verify', async () => {
    await desk.submit(id('site-a'), cert('site-a'), receipt('site-a', 2));
    const records = journal.records();
    const ca = { ca: [new X509Certificate(trail.ca.certPem)] };
    expect(records.at(-1)!.body['usage']).toEqual(USAGE);
    expect(verifyAudit(parseAuditLines(toText(records)), ca).ok).toBe(true);
    // Whoever runs the coordinator rewrites the figures and re-chains the journal: the site's signature no longer holds.
    const inflated = records.map((r) => (r.body.type === 'receipt' ? { ...r, body: { ...r.body, usage: { ...USAGE, allocatedGpuMs: 400_000, gpus: 4 } } } : r));
    const report = verifyAudit(parseAuditLines(toText(rechain(inflated))), ca);
    expect(report.ok).toBe(false);
    expect(JSON.stringify(report)).toMatch(/receipt signature of site site-a does not verify/);
    // Dropping the usage (passing it off as a pre-version-6 receipt) fails the same way.
    const dropped = records.map((r) => (r.body.type === 'receipt' ? { ...r, body: { ...r.body, usage: undefined } } : r));
    expect(verifyAudit(parseAuditLines(toText(rechain(dropped))), ca).ok).toBe(false);
  });

  it('journals a version 3 receipt naming the delta the round recorded; one naming another delta is refused, and a delta changed afterwards fails audit verify', async () => {
    const b = committed(2).body as unknown as { participants: { site: string; deltaSha256: string }[] };
    const recorded = b.participants.find((p) => p.site === 'site-a')!.deltaSha256;
    await expectRefused(desk.submit(id('site-a'), cert('site-a'), receipt('site-a', 2, { delta: { sha256: 'e'.repeat(64), parts: [] } })), 'BAD_REQUEST', /receipt delta SHA-256 e+ differs from the committed round's/);
    expect(await desk.submit(id('site-a'), cert('site-a'), receipt('site-a', 2, { delta: { sha256: recorded, parts: [] } }))).toBe('recorded');
    const records = journal.records();
    expect(records.at(-1)!.body['delta']).toEqual({ sha256: recorded, parts: [] });
    const ca = { ca: [new X509Certificate(trail.ca.certPem)] };
    expect(verifyAudit(parseAuditLines(toText(records)), ca).ok).toBe(true);
    // Whoever runs the coordinator rewrites site-a's delta in round 2's record and re-chains the
    // journal (the receipt pointed at the new record): the receipt no longer matches it, and a
    // receipt rewritten to match no longer verifies.
    const other = 'f'.repeat(64);
    const rewrite = (receiptDelta: string) => {
      const moved = rechain(
        records.map((r) =>
          r.body.type === 'round-committed' && r.body['round'] === 2 ? { ...r, body: { ...r.body, participants: (r.body['participants'] as { site: string }[]).map((p) => (p.site === 'site-a' ? { ...p, deltaSha256: other } : p)) } } : r,
        ),
      );
      const newHash = moved.find((r) => r.body.type === 'round-committed' && r.body['round'] === 2)!.hash;
      return rechain(moved.map((r) => (r.body.type === 'receipt' ? { ...r, body: { ...r.body, committedHash: newHash, delta: { sha256: receiptDelta, parts: [] } } } : r)));
    };
    expect(JSON.stringify(verifyAudit(parseAuditLines(toText(rewrite(recorded))), ca))).toMatch(/receipt delta [0-9a-f]+ differs from the committed f+/);
    expect(JSON.stringify(verifyAudit(parseAuditLines(toText(rewrite(other))), ca))).toMatch(/receipt signature of site site-a does not verify/);
  });

  it('signs version 3 with the delta and its parts between the manifest and the usage, and refuses parts that do not tile or hash', () => {
    const f = { federation: 'f', runId: 'r', round: 1, site: 's', parentSha256: 'p', modelSha256: 'm', dataManifestSha256: '', usage: USAGE };
    const parts = [{ start: 0, end: 100, sha256: 'a'.repeat(64) }, { start: 100, end: 250, sha256: 'b'.repeat(64) }];
    const delta = { sha256: partsSha256(parts), parts };
    expect(receiptPayload({ ...f, delta }).toString()).toBe(`fedhpc-receipt-v3\nf\nr\n1\ns\np\nm\n\n${delta.sha256}\n0-100:${'a'.repeat(64)},100-250:${'b'.repeat(64)}\nslurm-sacct\n2\n100000\n200000\n160000\n4711\n\n`);
    expect(receiptPayload({ ...f, delta: { sha256: 'c'.repeat(64), parts: [] } }).toString()).toContain(`\n${'c'.repeat(64)}\n\nslurm-sacct\n`);
    expect(() => receiptPayload({ ...f, delta: { ...delta, sha256: 'c'.repeat(64) } })).toThrow(/is not that of its parts/);
    expect(() => receiptPayload({ ...f, delta: { sha256: partsSha256(parts.slice(1)), parts: parts.slice(1) } })).toThrow(/must tile the delta from byte 0/);
    expect(() => receiptPayload({ ...f, delta: { sha256: 'C'.repeat(64), parts: [] } })).toThrow(/not lowercase hex/);
    expect(() => receiptPayload({ ...f, usage: undefined, delta })).toThrow(/without a usage/);
    // On the wire: the same checks, and parts without the delta's hash.
    const ok = { runId: 'r1', round: '1', parentSha256: 'a'.repeat(64), modelSha256: 'b'.repeat(64), dataManifestSha256: '', signature: Buffer.alloc(70, 1), usage: usageToWire(USAGE) };
    const wireParts = parts.map((p) => ({ start: String(p.start), end: String(p.end), sha256: p.sha256 }));
    expect(receiptFromWire({ ...ok, deltaSha256: delta.sha256, deltaParts: wireParts }).delta).toEqual(delta);
    expect(() => receiptFromWire({ ...ok, deltaSha256: '', deltaParts: wireParts })).toThrow(/delta parts without the delta SHA-256/);
    expect(() => receiptFromWire({ ...ok, deltaSha256: 'c'.repeat(64), deltaParts: wireParts })).toThrow(/is not that of its parts/);
  });

  it('signs a payload in which no field can contain a newline', () => {
    const f = { federation: 'f', runId: 'r', round: 1, site: 's', parentSha256: 'p', modelSha256: 'm', dataManifestSha256: '' };
    expect(receiptPayload(f).toString()).toBe('fedhpc-receipt-v1\nf\nr\n1\ns\np\nm\n\n');
    expect(() => receiptPayload({ ...f, runId: 'r\nx' })).toThrow(RangeError);
    expect(() => receiptPayload({ ...f, round: 0 })).toThrow(RangeError);
  });

  it('signs version 2 with the usage after the manifest; only the reason, the last line, may hold spaces', () => {
    const f = { federation: 'f', runId: 'r', round: 1, site: 's', parentSha256: 'p', modelSha256: 'm', dataManifestSha256: '' };
    expect(receiptPayload({ ...f, usage: USAGE }).toString()).toBe('fedhpc-receipt-v2\nf\nr\n1\ns\np\nm\n\nslurm-sacct\n2\n100000\n200000\n160000\n4711\n\n');
    expect(receiptPayload({ ...f, usage: unknownUsage('no accounting here') }).toString()).toBe('fedhpc-receipt-v2\nf\nr\n1\ns\np\nm\n\nunknown\n0\n0\n0\n0\n\nno accounting here\n');
    expect(() => receiptPayload({ ...f, usage: { ...USAGE, jobs: '1 2' } })).toThrow(RangeError);
    expect(() => receiptPayload({ ...f, usage: { ...unknownUsage('x'), reason: 'a\nb' } })).toThrow(RangeError);
    expect(unknownUsage('a\nb\u001b[31m').reason).toBe('a b [31m');
  });
});
