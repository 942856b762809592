/**
 * The coordinator's side of receipts: a participant submits its signed receipt of a committed
 * round; it is checked against the committed record and the caller's certificate, then journaled
 * (once per site and round), so the audit trail holds the sites' own signatures.
 */
import type { X509Certificate } from 'node:crypto';
import type { Logger } from '../../common/logger.js';
import { verifyReceipt, type ReceiptDelta, type ReceiptFields } from '../../common/receipt.js';
import type { RoundUsage } from '../../common/usage.js';
import { CoordinatorError } from '../core/errors.js';
import type { PeerIdentity } from '../pki/index.js';
import type { JournalRecord } from '../state/journal.js';
import type { ReceiptRecord, RoundCommittedRecord } from '../state/records.js';
import type { StateStore } from '../state/store.js';

export interface ReceiptDeskOptions {
  readonly federation: string;
  readonly store: Pick<StateStore, 'records' | 'append'>;
  readonly logger: Logger;
}

/** A receipt as it came off the wire, converted to domain values (coordinator/service/wire.ts). */
export interface SubmittedReceipt {
  readonly runId: string;
  readonly round: number;
  readonly parentSha256: string;
  readonly modelSha256: string;
  readonly dataManifestSha256: string;
  readonly signature: Buffer;
  /** The site's declared usage of the round (checked in shape on arrival; signed). */
  readonly usage: RoundUsage;
  /** The delta the site says its upload was recorded under (version 3; checked in shape on arrival); absent: version 2. */
  readonly delta?: ReceiptDelta;
}

/** Checks and journals receipts; submissions are handled one at a time (no duplicate records). */
export class ReceiptDesk {
  private tail: Promise<unknown> = Promise.resolve();
  constructor(private readonly o: ReceiptDeskOptions) {}

  /**
   * Runs submissions one at a time (no duplicate records): `read` identifies the caller and converts
   * its receipt (throwing refuses it), then the receipt is checked and journaled.
   */
  enqueue(read: () => { id: PeerIdentity; certificate: X509Certificate; receipt: SubmittedReceipt }): Promise<'recorded' | 'duplicate'> {
    const run = async (): Promise<'recorded' | 'duplicate'> => {
      const { id, certificate, receipt } = read();
      return this.submit(id, certificate, receipt);
    };
    const result = this.tail.then(run, run);
    this.tail = result.catch(() => undefined);
    return result;
  }

  /** Checks one receipt and journals it; a repeat of a journaled (site, run, round) is accepted as is. */
  async submit(id: PeerIdentity, cert: X509Certificate, r: SubmittedReceipt): Promise<'recorded' | 'duplicate'> {
    const records = this.o.store.records();
    const committed = findCommitted(records, r.runId, r.round);
    if (!committed) throw new CoordinatorError('BAD_REQUEST', `round ${r.round} of run ${r.runId} is not committed`, { runId: r.runId, round: r.round });
    const participant = committed.body.participants.find((p) => p.site === id.id);
    if (!participant) throw new CoordinatorError('NOT_INVITED', `site ${id.id} did not take part in round ${r.round} of run ${r.runId}`);
    const expected = { parentSha256: committed.body.parentSha256, modelSha256: committed.body.modelSha256, dataManifestSha256: participant.dataManifestSha256 };
    for (const [k, v] of Object.entries(expected)) {
      if (r[k as keyof typeof expected] !== v) {
        throw new CoordinatorError('BAD_REQUEST', `receipt ${k} ${r[k as keyof typeof expected]} differs from the committed round's ${v}`, { field: k });
      }
    }
    if (r.delta !== undefined && r.delta.sha256 !== participant.deltaSha256) {
      throw new CoordinatorError('BAD_REQUEST', `receipt delta SHA-256 ${r.delta.sha256} differs from the committed round's ${participant.deltaSha256}`, { field: 'deltaSha256' });
    }
    const fields: ReceiptFields = { federation: this.o.federation, runId: r.runId, round: r.round, site: id.id, ...expected, usage: r.usage, ...(r.delta ? { delta: r.delta } : {}) };
    if (!verifyReceipt(fields, r.signature, cert.publicKey)) {
      throw new CoordinatorError('BAD_REQUEST', `receipt signature of site ${id.id} does not verify with its certificate`);
    }
    const already = records.some((x) => x.body.type === 'receipt' && x.body['runId'] === r.runId && x.body['round'] === r.round && x.body['site'] === id.id);
    if (already) return 'duplicate';
    const record: ReceiptRecord = {
      type: 'receipt',
      ...fields,
      usage: r.usage,
      committedHash: committed.hash,
      certificatePem: cert.toString(),
      fingerprint: cert.fingerprint256,
      signature: r.signature.toString('base64'),
    };
    await this.o.store.append(record);
    this.o.logger.info({ site: id.id, round: r.round, phase: 'commit', runId: r.runId }, 'receipt journaled');
    return 'recorded';
  }
}

function findCommitted(records: readonly JournalRecord[], runId: string, round: number): JournalRecord<RoundCommittedRecord & { type: string; [k: string]: unknown }> | undefined {
  for (let i = records.length - 1; i >= 0; i--) {
    const b = records[i]!.body;
    if (b.type === 'round-committed' && b['runId'] === runId && b['round'] === round) return records[i] as JournalRecord<RoundCommittedRecord & { type: string; [k: string]: unknown }>;
  }
  return undefined;
}
