/**
 * The leader's side of part downloads (issue 22, protocol version 12): a site asks `AdmitDownload`
 * for a model; when every aggregator shard is attached and serves sites, the leader answers one
 * byte range of the model file per shard — the bytes of the shard's part of the model
 * (`shardFileRanges` of the run's journaled partition), which the shard itself wrote into the
 * checkpoint — and admits the site's download of that range at each shard (`ShardAdmitDownload`).
 * Otherwise, or for a model whose tensors are not the partition's, no parts: the site downloads the
 * whole file from the coordinator, as before. The shards report the bytes they send (`ShardSent`),
 * counted as the coordinator counts its own.
 */
import { AggregationError, dtypeSize, openSafetensors, shardFileRanges } from '../../aggregation/index.js';
import type { Logger } from '../../common/logger.js';
import type { ShardSent__Output, TransferPart } from '../../proto/index.js';
import { requireModel } from '../service/model-download.js';
import type { TransferLimits } from '../shell/ports.js';
import type { StateStore } from '../state/store.js';
import type { ShardRegistry } from './registry.js';

/** How many models' ranges are kept (a few: each costs a header read to compute again). */
const RANGES_KEPT = 4;

export interface PartDownloadsOptions {
  /** The aggregator shards; absent: none are configured, every model comes whole from the coordinator. */
  readonly shards: Pick<ShardRegistry, 'downloadShards' | 'admitDownload'> | undefined;
  readonly store: Pick<StateStore, 'hasModel' | 'openModel'>;
  readonly limits: () => TransferLimits;
  readonly maxChunkBytes: number;
  /** Counts bytes a shard sent a site, as the coordinator counts its own downloads. */
  readonly countDown: (site: string, bytes: number) => void;
  readonly logger: Logger;
}

export class PartDownloads {
  /** Each model's shard ranges (by SHA-256; undefined: the model cannot be cut, it goes whole). */
  private readonly ranges = new Map<string, { start: number; end: number }[] | undefined>();

  constructor(private readonly o: PartDownloadsOptions) {}

  /** Where `site`'s download of model `sha256` comes from: one part per shard, or none (whole, from the coordinator). */
  async admit(site: string, sha256: string): Promise<TransferPart[]> {
    await requireModel(this.o.store, sha256);
    const registry = this.o.shards;
    const shards = registry?.downloadShards();
    if (registry === undefined || shards === undefined) return [];
    const ranges = await this.rangesOf(sha256, shards.partition);
    if (ranges === undefined) return [];
    const limits = this.o.limits();
    const parts = shards.shards.map((s, i) => ({ shard: s.name, endpoint: s.endpoint, start: ranges[i]!.start, end: ranges[i]!.end }));
    for (const p of parts) {
      registry.admitDownload(p.shard, { siteId: site, sha256, start: String(p.start), end: String(p.end), maxChunkBytes: this.o.maxChunkBytes, idleMs: limits.idleMs });
    }
    this.o.logger.info({ site, phase: 'download', model: sha256, parts: parts.map((p) => `${p.shard}:[${p.start},${p.end})`) }, 'download admitted in parts from the aggregator shards');
    return parts.map((p) => ({ shard: p.shard, endpoint: p.endpoint, start: String(p.start), end: String(p.end) }));
  }

  /** A shard's report of the bytes one Download call sent a site. */
  sent(shard: string, r: ShardSent__Output): void {
    const bytes = Number(r.bytes);
    if (!Number.isSafeInteger(bytes) || bytes <= 0) return;
    this.o.countDown(r.siteId, bytes);
    if (r.complete) this.o.logger.info({ site: r.siteId, shard, phase: 'download', model: r.sha256, start: r.start, end: r.end }, 'a shard sent its part of the model');
  }

  private async rangesOf(sha256: string, partition: Parameters<typeof shardFileRanges>[0]): Promise<{ start: number; end: number }[] | undefined> {
    if (this.ranges.has(sha256)) return this.ranges.get(sha256);
    let ranges: { start: number; end: number }[] | undefined;
    const source = await this.o.store.openModel(sha256);
    try {
      const file = await openSafetensors(source);
      const names = file.tensors.map((t) => t.name);
      if (names.some((n, i) => partition.tensors[i]?.name !== n)) throw new AggregationError('INVALID_ARGUMENT', 'its tensors are not the run\'s partition\'s');
      ranges = shardFileRanges(partition, file.tensors.map((t) => ({ byteOffset: t.byteOffset, valueBytes: dtypeSize(t.dtype) })), source.size);
    } catch (err) {
      if (!(err instanceof AggregationError)) throw err;
      this.o.logger.warn({ phase: 'download', model: sha256, err: { message: err.message } }, 'a model the shards cannot serve in parts: sites download it whole from the coordinator');
    } finally {
      await source.close();
    }
    this.ranges.set(sha256, ranges);
    while (this.ranges.size > RANGES_KEPT) this.ranges.delete(this.ranges.keys().next().value!);
    return ranges;
  }
}
