/**
 * The leader's side of part uploads (issue 22): a site asks `AdmitUpload` with the header it would
 * send; the leader checks it exactly as an `Upload`'s first message (the round, the model, the
 * run's policy, the site's standing), and when every shard is ready and serves uploads it answers
 * the parts — one byte range of the delta per shard, from the run's journaled partition — and tells
 * each shard, on its `Attach` stream, the header it may accept from that site with its part. The
 * site's upload is complete when every shard has reported its part verified; a part a shard refuses
 * drops the site from the attempt. A secure upload's masked weight word goes with the last shard's
 * part, and that shard reports the word: the leader unmasks Σw from the words as it does from the
 * spools it holds.
 */
import type { Logger } from '../../common/logger.js';
import type { ShardReceived__Output, UploadHeader as WireUploadHeader, TransferPart } from '../../proto/index.js';
import { canonicalJson } from '../state/journal.js';
import type { TransferLimits, UploadRoundPort } from '../shell/ports.js';
import type { UploadHeader } from '../upload/frames.js';
import { partBytes, type UploadIntent } from '../upload/header.js';
import { partsSha256 } from '../../common/receipt.js';
import { refused } from '../upload/service.js';
import type { ShardPart, ShardRegistry } from './registry.js';
import { printable } from '../../common/text.js';
import { CoordinatorError } from '../core/errors.js';
import { invariant, isSecureEncoding } from '../../aggregation/index.js';

/** One site's upload in parts in the open attempt. */
interface SiteParts {
  readonly intent: UploadIntent;
  /** The header as admitted, stripe fields aside: a repeated AdmitUpload of it gets the same parts. */
  readonly key: string;
  readonly parts: (ShardPart & { sha256: string | undefined })[];
  /** A secure upload's masked weight word, from the report of the part that ends with it. */
  weightWord: Uint8Array | undefined;
  done: boolean;
}

export interface PartUploadsOptions {
  /** The aggregator shards; absent: none are configured, every delta goes whole to the coordinator. */
  readonly shards: Pick<ShardRegistry, 'uploadParts' | 'admit'> | undefined;
  readonly driver: UploadRoundPort;
  readonly limits: () => TransferLimits;
  readonly maxChunkBytes: number;
  readonly logger: Logger;
}

/** The leader's bookkeeping of part uploads in the open attempt. */
export class PartUploads {
  private readonly sites = new Map<string, SiteParts>();

  constructor(private readonly o: PartUploadsOptions) {}

  /**
   * Admits `site`'s upload of `header` (a stream's header without its stripe); resolves where its
   * parts go, or none (the delta goes whole to the coordinator). Throws the header's refusal.
   */
  admit(site: string, header: UploadHeader, wire: WireUploadHeader): TransferPart[] {
    try {
      return this.parts(site, header, wire);
    } catch (err) {
      const e = err instanceof CoordinatorError ? err : new CoordinatorError('INTERNAL', (err as Error).message, {}, { cause: err });
      refused(this.o.driver, this.o.logger, site, e, true);
      throw e;
    }
  }

  private parts(site: string, header: UploadHeader, wire: WireUploadHeader): TransferPart[] {
    const whole = { ...header, stripeOffset: 0, stripeBytes: 0, stripeCount: 0, chunkBytes: 0 };
    if (header.partStart !== 0 || header.partEnd !== 0) {
      throw new CoordinatorError('UPLOAD_INVALID', 'AdmitUpload takes the header of the whole delta (part_start and part_end 0): the coordinator names the parts');
    }
    const intent = this.o.driver.checkUpload(whole, site);
    const key = canonicalJson(whole);
    const known = this.sites.get(site);
    if (known && known.intent.round === intent.round && known.intent.attempt === intent.attempt && known.key === key && !known.done) return known.parts.map(toWire);
    const shards = this.o.shards;
    const parts = shards?.uploadParts(intent.encoding, intent.totalBytes);
    if (shards === undefined || parts === undefined) return [];
    this.o.driver.beginUpload(site, intent);
    const entry: SiteParts = { intent, key, parts: parts.map((p) => ({ ...p, sha256: undefined })), weightWord: undefined, done: false };
    this.sites.set(site, entry);
    const limits = this.o.limits();
    for (const p of parts) {
      shards.admit(p.shard, {
        siteId: site,
        header: { ...wire, stripeOffset: '0', stripeBytes: '0', stripeCount: 0, chunkBytes: 0, partStart: String(p.start), partEnd: String(p.end) },
        weight: intent.weight,
        maxChunkBytes: this.o.maxChunkBytes,
        idleMs: limits.idleMs,
        maxStreams: limits.maxStreamsPerSite,
        windowBytes: String(limits.windowBytes),
      });
    }
    this.o.logger.info({ site, round: intent.round, attempt: intent.attempt, phase: 'upload', parts: parts.map((p) => `${p.shard}:[${p.start},${p.end})`) }, 'upload admitted in parts to the aggregator shards');
    return entry.parts.map(toWire);
  }

  /** A shard's report of a site's part: verified (the upload completes with its last part) or refused (the site is dropped). */
  received(shard: string, r: ShardReceived__Output): void {
    const entry = this.sites.get(r.siteId);
    const round = Number(r.round);
    if (!entry || entry.done || entry.intent.round !== round || entry.intent.attempt !== r.attempt) return;
    const part = entry.parts.find((p) => p.shard === shard && String(p.start) === r.start && String(p.end) === r.end);
    if (!part) {
      this.o.logger.warn({ site: r.siteId, shard, round, start: r.start, end: r.end, phase: 'upload' }, 'a shard reported a part it was not admitted: ignored');
      return;
    }
    const log = { site: r.siteId, round, attempt: r.attempt, phase: 'upload', shard };
    if (r.refused !== '') {
      entry.done = true;
      this.o.driver.failSite(r.siteId, round, r.attempt, `UPLOAD_INVALID: aggregator shard ${shard} refused the part [${r.start}, ${r.end}): ${printable(r.refused).slice(0, 512)}`);
      return;
    }
    if (!/^[0-9a-f]{64}$/.test(r.sha256)) {
      this.o.logger.warn({ ...log, sha256: printable(r.sha256).slice(0, 80) }, 'a shard reported a part without a SHA-256: ignored');
      return;
    }
    const secure = isSecureEncoding(entry.intent.encoding);
    if (secure && part.end === entry.intent.totalBytes) {
      // The last word of a secure upload is its masked weight word: the leader unmasks Σw from them.
      const word = entry.intent.segments.at(-1)!;
      if (r.weightWord.length !== word.end - word.start) {
        entry.done = true;
        this.o.driver.failSite(r.siteId, round, r.attempt, `UPLOAD_INVALID: aggregator shard ${shard} reported the part [${r.start}, ${r.end}) without its ${word.end - word.start}-byte masked weight word`);
        return;
      }
      entry.weightWord = Uint8Array.from(r.weightWord);
    }
    if (part.sha256 === undefined) {
      part.sha256 = r.sha256;
      // The round's bytes up count what the federation took in, wherever it was spooled — of a
      // site still in the attempt (a dropped site's parts are wasted, never counted).
      if (this.o.driver.siteStatus(r.siteId) === 'uploading') this.o.driver.countBytes('up', part.end - part.start);
    }
    if (entry.parts.some((p) => p.sha256 === undefined)) return;
    entry.done = true;
    const parts = entry.parts.map((p) => {
      invariant(p.sha256 !== undefined, 'every part is verified once none is missing');
      return { shard: p.shard, start: p.start, end: p.end, sha256: p.sha256 };
    });
    const bytes = parts.reduce((n, p) => n + partBytes({ part: p }), 0);
    const weightWord = entry.weightWord;
    const accepted = this.o.driver.completeUpload(r.siteId, entry.intent, { path: '', bytes, sha256: partsSha256(parts), parts, ...(weightWord ? { weightWord } : {}) });
    if (accepted) this.o.logger.info({ ...log, bytes, shards: parts.length }, 'upload verified: every shard holds its part');
  }
}

function toWire(p: ShardPart): TransferPart {
  return { shard: p.shard, endpoint: p.endpoint, start: String(p.start), end: String(p.end) };
}
