/**
 * Verifying an audit trail (a journal, from the state dir or from JetStream): the hash chain over
 * every record, and every receipt — its signature, its certificate (issued by the federation CA to
 * that site), and its agreement with the committed round it acknowledges. Names the first broken
 * record. Pure: callers read the records (see `source.ts`).
 */
import { X509Certificate, type KeyObject } from 'node:crypto';
import { verifyReceipt } from '../../common/receipt.js';
import { identityFromCertificate } from '../pki/index.js';
import { GENESIS_HASH, recordHash, termProblem, type JournalRecord } from '../state/journal.js';
import { isRecordOf, type ReceiptRecord, type RoundCommittedRecord } from '../state/records.js';

/** One line of a trail as read: a parsed record, or why it is not one. */
export type AuditLine = { readonly ok: true; readonly record: JournalRecord } | { readonly ok: false; readonly reason: string };

/** The first broken record: its 0-based index, its hash (as stored, if any), type and what is wrong. */
export interface AuditBreak {
  readonly index: number;
  readonly seq: number | undefined;
  readonly hash: string | undefined;
  readonly type: string | undefined;
  readonly reason: string;
}

/** A participant of a committed round without a valid receipt. */
export interface MissingReceipt {
  readonly runId: string;
  readonly round: number;
  readonly site: string;
}

/** What verification found. `ok` is false from the first broken record on (later ones are not read). */
export interface AuditReport {
  readonly ok: boolean;
  readonly records: number;
  readonly committedRounds: number;
  readonly receipts: number;
  readonly missingReceipts: readonly MissingReceipt[];
  /** Whether receipt certificates were checked against a CA (`--ca`). */
  readonly caChecked: boolean;
  /** Hash of the last record checked (the trail's head), or the genesis hash when empty. */
  readonly head: string;
  readonly firstBroken?: AuditBreak;
}

export interface VerifyAuditOptions {
  /** Federation CA certificate(s); without, receipt certificates are checked for identity and signature only. */
  readonly ca?: readonly X509Certificate[];
  /** Count a committed participant without a receipt as a break (at the end of the trail). */
  readonly requireReceipts?: boolean;
}

type Committed = RoundCommittedRecord & { readonly hash: string };

/** Verifies a trail; see the module comment. */
export function verifyAudit(lines: readonly AuditLine[], options: VerifyAuditOptions = {}): AuditReport {
  const committed = new Map<string, Committed>();
  const expected = new Map<string, MissingReceipt>();
  const certs = new CertificateCache(options.ca);
  let prev = GENESIS_HASH;
  let receipts = 0;
  const report = (n: number, brk?: AuditBreak): AuditReport => ({
    ok: brk === undefined,
    records: n,
    committedRounds: committed.size,
    receipts,
    missingReceipts: [...expected.values()],
    caChecked: options.ca !== undefined && options.ca.length > 0,
    head: prev,
    ...(brk ? { firstBroken: brk } : {}),
  });
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (!line.ok) return report(i, { index: i, seq: undefined, hash: undefined, type: undefined, reason: line.reason });
    const r = line.record;
    const fail = (reason: string): AuditReport => report(i, { index: i, seq: r.seq, hash: r.hash, type: r.body?.type, reason });
    const shape = shapeProblem(r);
    if (shape) return fail(shape);
    if (r.seq !== i + 1) return fail(`seq is ${r.seq}, expected ${i + 1} (a record before it is missing or out of order)`);
    if (r.prev !== prev) return fail(`prev ${r.prev} is not the hash of the record before it (${prev})`);
    // A trail may begin term-less (a state dir's journal, imported) and go on with leadership terms (protocol version 7).
    const before = lines[i - 1];
    const term = termProblem(before?.ok ? before.record : undefined, r);
    if (term !== undefined) return fail(term);
    if (recordHash(r) !== r.hash) return fail('hash does not match the record (a field was changed)');
    prev = r.hash;
    if (isRecordOf(r.body, 'round-committed')) {
      const c = { ...r.body, hash: r.hash };
      committed.set(r.hash, c);
      for (const p of c.participants ?? []) expected.set(key(c.runId, c.round, p.site), { runId: c.runId, round: c.round, site: p.site });
    } else if (isRecordOf(r.body, 'receipt')) {
      const receipt = r.body;
      const problem = receiptProblem(receipt, r.ts, committed, certs);
      if (problem) return fail(problem);
      receipts += 1;
      expected.delete(key(receipt.runId, receipt.round, receipt.site));
    }
  }
  if (options.requireReceipts && expected.size > 0) {
    const m = [...expected.values()][0]!;
    const last = lines.length - 1;
    const tail = last >= 0 ? lines[last]! : undefined;
    const r = tail?.ok ? tail.record : undefined;
    return report(lines.length, {
      index: lines.length,
      seq: undefined,
      hash: r?.hash,
      type: undefined,
      reason: `${expected.size} receipt(s) missing, first: site ${m.site} for round ${m.round} of run ${m.runId}`,
    });
  }
  return report(lines.length);
}

function key(runId: string, round: number, site: string): string {
  return `${runId}\u0000${round}\u0000${site}`;
}

function shapeProblem(r: JournalRecord): string | undefined {
  if (!r || typeof r !== 'object') return 'not a JSON object';
  if (typeof r.seq !== 'number' || typeof r.ts !== 'number' || typeof r.prev !== 'string' || typeof r.hash !== 'string') {
    return 'not a journal record (seq, ts, prev, hash)';
  }
  if (!r.body || typeof r.body !== 'object' || typeof r.body.type !== 'string') return 'record has no body with a type';
  return undefined;
}

function receiptProblem(x: ReceiptRecord, ts: number, committed: ReadonlyMap<string, Committed>, certs: CertificateCache): string | undefined {
  const c = committed.get(x.committedHash);
  if (!c) return `receipt refers to ${x.committedHash}, which is no earlier round-committed record`;
  if (c.runId !== x.runId || c.round !== x.round) return `receipt is for round ${x.round} of run ${x.runId}, but the record it refers to is round ${c.round} of run ${c.runId}`;
  const p = c.participants.find((q) => q.site === x.site);
  if (!p) return `receipt of site ${x.site}, which is no participant of round ${c.round}`;
  if (x.parentSha256 !== c.parentSha256) return `receipt parent model ${x.parentSha256} differs from the committed ${c.parentSha256}`;
  if (x.modelSha256 !== c.modelSha256) return `receipt model ${x.modelSha256} differs from the committed ${c.modelSha256}`;
  if (x.dataManifestSha256 !== p.dataManifestSha256) return `receipt data manifest ${x.dataManifestSha256} differs from the committed ${p.dataManifestSha256}`;
  if (x.delta !== undefined && x.delta.sha256 !== p.deltaSha256) return `receipt delta ${x.delta.sha256} differs from the committed ${p.deltaSha256}`;
  const cert = certs.check(x.certificatePem, x.site, x.federation, ts);
  if (typeof cert === 'string') return cert;
  if (cert.fingerprint !== x.fingerprint) return `receipt fingerprint ${x.fingerprint} is not its certificate's (${cert.fingerprint})`;
  let signature: Buffer;
  try {
    signature = Buffer.from(x.signature, 'base64');
  } catch {
    return 'receipt signature is not base64';
  }
  const fields = { federation: x.federation, runId: x.runId, round: x.round, site: x.site, parentSha256: x.parentSha256, modelSha256: x.modelSha256, dataManifestSha256: x.dataManifestSha256, usage: x.usage, delta: x.delta };
  try {
    if (!verifyReceipt(fields, signature, cert.publicKey)) return `receipt signature of site ${x.site} does not verify with its certificate`;
  } catch (err) {
    return `receipt cannot be checked: ${(err as Error).message}`;
  }
  return undefined;
}

/** A parsed receipt certificate with what each receipt needs from it, computed once. */
interface CheckedCertificate {
  readonly publicKey: KeyObject;
  readonly fingerprint: string;
  readonly role: string;
  readonly id: string;
  readonly federation: string;
  readonly validFromMs: number;
  readonly validToMs: number;
}

/** Parses and checks each receipt certificate once (a trail repeats a few certificates many times). */
class CertificateCache {
  private readonly parsed = new Map<string, CheckedCertificate | string>();
  constructor(private readonly ca: readonly X509Certificate[] | undefined) {}

  /** The certificate, or why it cannot vouch for `site` of `federation` at time `ts`. */
  check(pem: string, site: string, federation: string, ts: number): CheckedCertificate | string {
    let entry = this.parsed.get(pem);
    if (entry === undefined) {
      entry = this.load(pem);
      this.parsed.set(pem, entry);
    }
    if (typeof entry === 'string') return entry;
    if (entry.role !== 'site' || entry.id !== site || entry.federation !== federation) {
      return `receipt certificate is for ${entry.role} ${entry.id} of ${entry.federation}, not site ${site} of ${federation}`;
    }
    if (ts < entry.validFromMs || ts > entry.validToMs) return 'receipt certificate was not valid when the receipt was journaled';
    return entry;
  }

  private load(pem: string): CheckedCertificate | string {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(pem);
    } catch {
      return 'receipt certificate is not a parsable X.509 certificate';
    }
    if (this.ca && this.ca.length > 0 && !this.ca.some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey))) {
      return 'receipt certificate was not issued by the federation CA';
    }
    const id = identityFromCertificate(cert.raw);
    if (!id.ok) return `receipt certificate names no federation identity: ${id.issues.map((i) => i.message).join('; ')}`;
    return {
      publicKey: cert.publicKey,
      fingerprint: cert.fingerprint256,
      role: id.value.role,
      id: id.value.id,
      federation: id.value.federation,
      validFromMs: Date.parse(cert.validFrom),
      validToMs: Date.parse(cert.validTo),
    };
  }
}
