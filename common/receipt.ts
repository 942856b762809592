/**
 * The bytes a site signs to acknowledge a committed round (the audit trail's receipts). Shared by
 * the site agent, which signs, and the coordinator and auditors, which verify: one encoding, here.
 */
import { createHash, createPrivateKey, sign, verify, type KeyObject } from 'node:crypto';
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
  /**
   * The delta the site's upload was recorded under (protocol version 12): present, a
   * `fedhpc-receipt-v3` payload (with `usage`), which names it after the manifest.
   */
  readonly delta?: ReceiptDelta | undefined;
}

/** One part of a delta uploaded in parts: bytes [start, end), and the SHA-256 its aggregator shard verified them under. */
export interface DeltaPartHash {
  readonly start: number;
  readonly end: number;
  readonly sha256: string;
}

/** What a receipt says of the site's upload: the journal's `deltaSha256`, and the parts' hashes of one uploaded in parts. */
export interface ReceiptDelta {
  /** The delta's SHA-256; of one uploaded in parts, {@link partsSha256} of `parts`. */
  readonly sha256: string;
  /** The parts, in order, tiling the delta from byte 0; empty for a delta uploaded whole. */
  readonly parts: readonly DeltaPartHash[];
}

/**
 * The SHA-256 a delta uploaded in parts is recorded under: that of one line per part, in order,
 * `<start>-<end> <part SHA-256>\n` (docs/protocol.md, "Part uploads"). No one holds the whole
 * delta's bytes to hash them; this names exactly the bytes each shard verified.
 */
export function partsSha256(parts: readonly DeltaPartHash[]): string {
  return createHash('sha256')
    .update(parts.map((p) => `${p.start}-${p.end} ${p.sha256}\n`).join(''))
    .digest('hex');
}

const FIELD = /^[\x21-\x7e]*$/;
const SHA256 = /^[0-9a-f]{64}$/;

/**
 * The signed payload: a version line and one field per line. Every field must be printable ASCII
 * without spaces, so no value can smuggle a newline and shift the others — except the usage's
 * reason, the last line, which may hold spaces (0x20–0x7e) and still no newline. Version 2 adds the
 * usage after the manifest: source, gpus, wall ms, allocated GPU-ms, training GPU-ms, jobs, reason.
 * Version 3 adds, between the manifest and the usage, the delta's SHA-256 and its parts, each
 * `<start>-<end>:<SHA-256>`, comma-separated (an empty line for a delta uploaded whole).
 */
export function receiptPayload(f: ReceiptFields): Buffer {
  const values = [f.federation, f.runId, String(f.round), f.site, f.parentSha256, f.modelSha256, f.dataManifestSha256];
  if (!Number.isSafeInteger(f.round) || f.round < 1) throw new RangeError(`receipt round must be a positive integer, got ${f.round}`);
  for (const v of values) if (!FIELD.test(v)) throw new RangeError(`receipt field ${JSON.stringify(v)} is not printable ASCII without spaces`);
  if (f.usage === undefined) {
    if (f.delta !== undefined) throw new RangeError('receipt names a delta without a usage: version 3 carries both');
    return Buffer.from(`fedhpc-receipt-v1\n${values.join('\n')}\n`, 'utf8');
  }
  const u = f.usage;
  const problem = usageProblem(u);
  if (problem !== undefined) throw new RangeError(`receipt ${problem}`);
  const usage = [u.source, String(u.gpus), String(u.wallMs), String(u.allocatedGpuMs), String(u.trainingGpuMs), u.jobs, u.reason];
  if (f.delta === undefined) return Buffer.from(`fedhpc-receipt-v2\n${[...values, ...usage].join('\n')}\n`, 'utf8');
  const problem3 = deltaProblem(f.delta);
  if (problem3 !== undefined) throw new RangeError(`receipt ${problem3}`);
  const parts = f.delta.parts.map((p) => `${p.start}-${p.end}:${p.sha256}`).join(',');
  return Buffer.from(`fedhpc-receipt-v3\n${[...values, f.delta.sha256, parts, ...usage].join('\n')}\n`, 'utf8');
}

/** Why a receipt may not name `d`: a hash that is none, parts that do not tile from 0, or a delta hash that is not the parts'. */
export function deltaProblem(d: ReceiptDelta): string | undefined {
  if (!SHA256.test(d.sha256)) return `delta SHA-256 ${JSON.stringify(d.sha256.slice(0, 80))} is not lowercase hex of 64 digits`;
  let at = 0;
  for (const p of d.parts) {
    const bounds = Number.isSafeInteger(p.start) && Number.isSafeInteger(p.end) && p.start === at && p.end > p.start;
    if (!bounds) return `delta part [${p.start}, ${p.end}) does not follow byte ${at}: the parts must tile the delta from byte 0`;
    if (!SHA256.test(p.sha256)) return `delta part [${p.start}, ${p.end}) has SHA-256 ${JSON.stringify(p.sha256.slice(0, 80))}, not lowercase hex of 64 digits`;
    at = p.end;
  }
  if (d.parts.length > 0 && partsSha256(d.parts) !== d.sha256) return `delta SHA-256 ${d.sha256} is not that of its parts, ${partsSha256(d.parts)}`;
  return undefined;
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
