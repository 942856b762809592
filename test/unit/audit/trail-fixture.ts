/** A small, real audit trail for unit tests: a journal with two committed rounds and every receipt. */
import { X509Certificate, createHash } from 'node:crypto';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { signReceipt } from '../../../common/receipt.js';
import { createCa, issueCertificate, type CertificateAndKey } from '../../../coordinator/pki/index.js';
import { Journal, recordHash, GENESIS_HASH, type JournalRecord } from '../../../coordinator/state/journal.js';
import type { ReceiptRecord } from '../../../coordinator/state/records.js';

export const FEDERATION = 'auditfed';
export const SITES = ['site-a', 'site-b'] as const;

export interface Trail {
  readonly dir: string;
  readonly path: string;
  readonly text: string;
  readonly records: JournalRecord[];
  readonly ca: CertificateAndKey;
  readonly sites: Map<string, CertificateAndKey>;
}

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

/** Issues a CA and site certificates (valid from a minute ago). */
export async function federationPki(federation = FEDERATION): Promise<{ ca: CertificateAndKey; sites: Map<string, CertificateAndKey> }> {
  const now = new Date(Date.now() - 60_000);
  const ca = await createCa({ federation, validityDays: 30, now });
  const sites = new Map<string, CertificateAndKey>();
  for (const id of SITES) {
    const c = await issueCertificate({ ca, role: 'site', id, federation, validityDays: 30, now });
    sites.set(id, { certPem: c.certPem, keyPem: c.keyPem! });
  }
  return { ca, sites };
}

/** A receipt record of `site` for a committed record, signed with `key`. */
export function receiptFor(committed: JournalRecord, site: string, cert: CertificateAndKey, federation = FEDERATION): ReceiptRecord {
  const b = committed.body as unknown as { runId: string; round: number; parentSha256: string; modelSha256: string; participants: { site: string; dataManifestSha256: string }[] };
  const p = b.participants.find((x) => x.site === site)!;
  const fields = { federation, runId: b.runId, round: b.round, site, parentSha256: b.parentSha256, modelSha256: b.modelSha256, dataManifestSha256: p.dataManifestSha256 };
  return {
    type: 'receipt',
    ...fields,
    committedHash: committed.hash,
    certificatePem: cert.certPem,
    fingerprint: new X509Certificate(cert.certPem).fingerprint256,
    signature: signReceipt(fields, cert.keyPem).toString('base64'),
  };
}

/** Writes a journal: run started, two sites joined, rounds 1 and 2 committed with both receipts each. */
export async function writeTrail(): Promise<Trail> {
  const { ca, sites } = await federationPki();
  const dir = await mkdtemp(join(tmpdir(), 'fedhpc-audit-'));
  const path = join(dir, 'journal.jsonl');
  const journal = await Journal.open(path);
  await journal.append({ type: 'run-started', runId: 'r1', initialModelSha256: sha('m0'), config: { federation: FEDERATION } });
  for (const s of SITES) await journal.append({ type: 'site-joined', site: s, fingerprint: new X509Certificate(sites.get(s)!.certPem).fingerprint256, agentVersion: '0.1.0' });
  let parent = sha('m0');
  for (const round of [1, 2]) {
    await journal.append({ type: 'round-opened', runId: 'r1', round, attempt: 0 });
    const model = sha(`m${round}`);
    const committed = await journal.append({
      type: 'round-committed',
      runId: 'r1',
      round,
      attempt: 0,
      participants: SITES.map((site) => ({ site, weight: 1, samples: 10, tokens: 100, steps: 5, trainLoss: 1, deltaSha256: sha(`d${round}${site}`), dataManifestSha256: sha(`data-${site}`) })),
      dropped: [],
      parentSha256: parent,
      modelSha256: model,
      strategy: { name: 'fedavg', lr: 1 },
    });
    for (const site of SITES) await journal.append(receiptFor(committed, site, sites.get(site)!));
    parent = model;
  }
  await journal.close();
  const text = await readFile(path, 'utf8');
  return { dir, path, text, records: text.trim().split('\n').map((l) => JSON.parse(l) as JournalRecord), ca, sites };
}

/** Re-links records after an edit, as a coordinator rewriting history would: every seq, prev and hash recomputed. */
export function rechain(records: readonly JournalRecord[]): JournalRecord[] {
  let prev = GENESIS_HASH;
  return records.map((r, i) => {
    const partial = { seq: i + 1, ts: r.ts, prev, body: r.body };
    const out = { ...partial, hash: recordHash(partial) };
    prev = out.hash;
    return out;
  });
}

/** JSON lines of records. */
export function toText(records: readonly JournalRecord[]): string {
  return records.map((r) => `${JSON.stringify(r)}\n`).join('');
}
