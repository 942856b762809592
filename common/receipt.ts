/**
 * The bytes a site signs to acknowledge a committed round (the audit trail's receipts). Shared by
 * the site agent, which signs, and the coordinator and auditors, which verify: one encoding, here.
 */
import { createPrivateKey, sign, verify, type KeyObject } from 'node:crypto';
import { usageProblem, type RoundUsage } from './usage.js';

/** What a receipt binds: the round, the site, and only facts the site can check by itself. */
export interface ReceiptFields {
  readonly federation: string;
  readonly runId: string;
  readonly round: number;
  readonly site: string;
  /** The global model the site trained on. */
  readonly parentSha256: string;
  /** The model the round produced (announced by the coordinator's next task). */
  readonly modelSha256: string;
  /** The site's own data manifest hash for this round, as its DONE.json reported it. */
  readonly dataManifestSha256: string;
  /**
   * The compute the round cost the site (common/usage.ts), its own declaration. Present: a
   * `fedhpc-receipt-v2` payload (protocol version 6); absent: `fedhpc-receipt-v1`, which receipts
   * journaled before version 6 keep, so old trails still verify.
   */
  readonly usage?: RoundUsage | undefined;
}

const FIELD = /^[\x21-\x7e]*$/;

/**
 * The signed payload: a version line and one field per line. Every field must be printable ASCII
 * without spaces, so no value can smuggle a newline and shift the others — except the usage's
 * reason, the last line, which may hold spaces (0x20–0x7e) and still no newline. Version 2 adds the
 * usage after the manifest: source, gpus, wall ms, allocated GPU-ms, training GPU-ms, jobs, reason.
 */
export function receiptPayload(f: ReceiptFields): Buffer {
  const values = [f.federation, f.runId, String(f.round), f.site, f.parentSha256, f.modelSha256, f.dataManifestSha256];
  if (!Number.isSafeInteger(f.round) || f.round < 1) throw new RangeError(`receipt round must be a positive integer, got ${f.round}`);
  for (const v of values) if (!FIELD.test(v)) throw new RangeError(`receipt field ${JSON.stringify(v)} is not printable ASCII without spaces`);
  if (f.usage === undefined) return Buffer.from(`fedhpc-receipt-v1\n${values.join('\n')}\n`, 'utf8');
  const u = f.usage;
  const problem = usageProblem(u);
  if (problem !== undefined) throw new RangeError(`receipt ${problem}`);
  const usage = [u.source, String(u.gpus), String(u.wallMs), String(u.allocatedGpuMs), String(u.trainingGpuMs), u.jobs, u.reason];
  return Buffer.from(`fedhpc-receipt-v2\n${[...values, ...usage].join('\n')}\n`, 'utf8');
}

/** Signs a receipt with a site's private key (PEM or KeyObject): ECDSA with SHA-256, DER signature. */
export function signReceipt(f: ReceiptFields, privateKey: string | KeyObject): Buffer {
  const key = typeof privateKey === 'string' ? createPrivateKey(privateKey) : privateKey;
  return sign('sha256', receiptPayload(f), key);
}

/** Whether `signature` is a valid signature of the receipt under `publicKey`. Never throws for bad bytes. */
export function verifyReceipt(f: ReceiptFields, signature: Uint8Array, publicKey: KeyObject): boolean {
  try {
    return verify('sha256', receiptPayload(f), publicKey, signature);
  } catch {
    return false;
  }
}
