/**
 * The leader's view of its aggregator shards (issue 22): the shards the config names, in shard
 * order; which of them holds an `Attach` stream; the part of the run's model each owns
 * (aggregation/partition.ts, K = the number of configured shards, as the run journaled it) and what each last said of its
 * readiness. The registry sends every attached shard its assignment when it attaches and again when
 * the run or its global model changes, and runs an aggregation on the shards when every one is ready
 * (`aggregate`); every instruction carries the leader's term.
 */
import { type DeltaEncoding, type ModelPartition, PARTITION_ALIGN_VALUES, isSecureEncoding, shardByteRanges } from '../../aggregation/index.js';
import { printable } from '../../common/text.js';
import type { ShardAdmit, ShardAdmitDownload, ShardDrop, ShardAggregated__Output, ShardAssignment, ShardReadiness__Output, ShardReceived__Output, ShardSent__Output } from '../../proto/index.js';
import type { ShardAggregation } from '../shell/ports.js';
import { admitLatest } from './shard-downloads.js';
import { CoordinatorError } from '../core/errors.js';

/** The codes of a shard's failure that name the sum, not the shard: they keep their code at the leader. */
const SHARD_CHECK_CODES = ['SUM_OUT_OF_RANGE', 'CHECKPOINT_OVERFLOW'] as const;

/** A shard's state as `admin status` shows it. */
export type ShardState = 'detached' | 'attached' | 'ready' | 'not_ready';

/** One shard as `admin status`, the metrics and the dashboard show it (the wire's `ShardStatus`, 64-bit numbers as strings). */
export interface ShardView {
  readonly shardId: string;
  readonly endpoint: string;
  readonly state: ShardState;
  readonly sinceMs: string;
  readonly shardIndex: number;
  readonly firstValue: string;
  readonly endValue: string;
  readonly problem: string;
  readonly freeBytes: string;
  readonly peer: string;
  /** The open attempt's part uploads: admitted to the shard, verified by it, and their bytes. */
  readonly uploadsAdmitted: number;
  readonly uploadsReceived: number;
  readonly bytesReceived: string;
  /** Downloads of the run's global model admitted to the shard and served whole by it, and the bytes it sent since the leader started. */
  readonly downloadsAdmitted: number;
  readonly downloadsServed: number;
  readonly bytesSent: string;
}

/** What the registry needs to know of the run: its id, global model and tensors; undefined before a run. */
export interface ShardPlanSource {
  readonly runId: string;
  readonly globalSha256: string;
  /** The run's partition as journaled (coordinator/shell/run-start.ts `journalPartition`), or why there is none. */
  readonly shards: { readonly partition: ModelPartition | undefined; readonly problem: string };
}

/** One part of a delta in part uploads: bytes [start, end), to shard `shard` at `endpoint`. */
export interface ShardPart {
  readonly shard: string;
  readonly endpoint: string;
  readonly start: number;
  readonly end: number;
}

/** One shard's attached stream, as the service hands it to the registry. */
export interface ShardLink {
  readonly peer: string;
  /** The shard serves sites' part uploads (its hello said so). */
  readonly servesUploads: boolean;
  /** Sends one instruction on the stream (the service adds the leader's term). */
  send(
    instruction:
      | { readonly assignment: ShardAssignment }
      | { readonly aggregate: ShardAggregation }
      | { readonly cancel: { readonly round: number; readonly attempt: number } }
      | { readonly admit: ShardAdmit }
      | { readonly admitDownload: ShardAdmitDownload }
      | { readonly drop: ShardDrop },
  ): void;
  /** Ends the stream (a newer stream of the same shard replaces it). */
  close(reason: string): void;
}

interface ShardRecord {
  readonly name: string;
  readonly endpoint: string;
  readonly index: number;
  state: ShardState;
  sinceMs: number;
  link: ShardLink | undefined;
  /** The assignment last sent, to match its readiness report and to send only changes. */
  sent: ShardAssignment | undefined;
  problem: string;
  freeBytes: number;
  /** The aggregation it was asked for and has not answered. */
  pending: PendingAggregation | undefined;
  /** The part uploads admitted to it in the open attempt, by site: sent again when it attaches again. */
  readonly admitted: Map<string, ShardAdmit>;
  /** Of those, the ones it reported verified, with their bytes. */
  readonly received: Map<string, number>;
  /** The downloads admitted to it, by site and model (of the latest models only): sent again when it attaches again. */
  readonly downloads: Map<string, ShardAdmitDownload>;
  /** Of those, the ones it reported sent whole. */
  readonly served: Set<string>;
  bytesSent: number;
}

/** One shard's part of an aggregation under way. */
interface PendingAggregation {
  readonly round: number;
  readonly attempt: number;
  resolve(written: number[]): void;
  reject(err: unknown): void;
}

export interface ShardRegistryOptions {
  readonly shards: readonly { readonly name: string; readonly endpoint: string }[];
  /** The run being driven, or undefined while there is none. */
  readonly plan: () => ShardPlanSource | undefined;
  readonly now: () => number;
  /** A shard's report of a site's part, verified or refused (./part-uploads.ts takes it). */
  readonly onReceived?: (shard: string, report: ShardReceived__Output) => void;
  /** A shard's report of the bytes a Download call sent a site (./part-downloads.ts takes it). */
  readonly onSent?: (shard: string, report: ShardSent__Output) => void;
  /** Called on every change of a shard's state (the coordinator emits `shard.state`). */
  readonly onState?: (change: { readonly shard: string; readonly index: number; readonly state: ShardState; readonly problem: string }) => void;
}

export class ShardRegistry {
  private readonly records: ShardRecord[];
  /** Sites revoked since the leader started, told to every shard that attaches before any admission. */
  private readonly drops = new Map<string, ShardDrop>();

  constructor(private readonly o: ShardRegistryOptions) {
    this.records = o.shards.map((s, index) => ({ name: s.name, endpoint: s.endpoint, index, state: 'detached', sinceMs: 0, link: undefined, sent: undefined, problem: '', freeBytes: 0, pending: undefined, admitted: new Map(), received: new Map(), downloads: new Map(), served: new Set(), bytesSent: 0 }));
  }

  /** The configured shards' names, in shard order. */
  get names(): readonly string[] {
    return this.records.map((r) => r.name);
  }

  /** Whether the config names shard `name`. */
  has(name: string): boolean {
    return this.records.some((r) => r.name === name);
  }

  get size(): number {
    return this.records.length;
  }

  /** Registers `name`'s stream (ending an older one) and sends it its assignment. */
  attach(name: string, link: ShardLink): void {
    const r = this.record(name);
    r.link?.close('a newer Attach stream of this shard replaced it');
    r.link = link;
    r.sent = undefined;
    this.enter(r, 'attached');
    this.sendAssignment(r);
    for (const drop of this.drops.values()) link.send({ drop });
    for (const admit of r.admitted.values()) link.send({ admit });
    for (const admitDownload of r.downloads.values()) link.send({ admitDownload });
  }

  /**
   * Where a site's upload of `encoding` (of `totalBytes`) goes, one part per shard in shard order:
   * when every shard is ready for the run's model and serves uploads. A secure upload's masked
   * weight word, which follows every value, goes with the last shard's part. Undefined otherwise:
   * the delta goes whole to the coordinator.
   */
  uploadParts(encoding: DeltaEncoding, totalBytes: number): ShardPart[] | undefined {
    const partition = this.readyPartition();
    if (partition === undefined || !this.records.every((r) => r.link?.servesUploads === true)) return undefined;
    return this.records.map((r, i) => {
      const ranges = shardByteRanges(partition, r.index, encoding);
      const last = i === this.records.length - 1 && isSecureEncoding(encoding);
      return { shard: r.name, endpoint: r.endpoint, start: ranges[0]?.start ?? 0, end: last ? totalBytes : (ranges.at(-1)?.end ?? 0) };
    });
  }

  /** Tells shard `name` of a site's admitted part upload (again when it attaches again, until the next attempt's). */
  admit(name: string, admit: ShardAdmit): void {
    const r = this.record(name);
    const h = admit.header;
    const stale = [...r.admitted.values()].some((a) => a.header?.round !== h?.round || a.header?.attempt !== h?.attempt);
    if (stale) {
      r.admitted.clear();
      r.received.clear();
    }
    r.admitted.set(admit.siteId ?? '', admit);
    r.link?.send({ admit });
  }

  /**
   * The shards a site downloads a model's parts from, in shard order, with the run's partition:
   * when every shard is attached and serves sites. Undefined otherwise: the model comes whole from
   * the coordinator. (Readiness is not needed: a shard reads the committed files it wrote.)
   */
  downloadShards(): { readonly partition: ModelPartition; readonly shards: readonly { readonly name: string; readonly endpoint: string }[] } | undefined {
    const { partition } = this.partition();
    if (partition === undefined || this.records.length === 0 || !this.records.every((r) => r.link?.servesUploads === true)) return undefined;
    return { partition, shards: this.records.map((r) => ({ name: r.name, endpoint: r.endpoint })) };
  }

  /**
   * Tells shard `name` of a site's admitted download of a part of a model (again when it attaches
   * again). Admissions of the latest models are kept, as the shard keeps them ({@link admitLatest}).
   */
  admitDownload(name: string, admit: ShardAdmitDownload): void {
    const r = this.record(name);
    admitLatest(r.downloads, `${admit.siteId ?? ''} ${admit.sha256 ?? ''}`, admit, (a) => a.sha256 ?? '');
    r.link?.send({ admitDownload: admit });
  }

  /**
   * A revoked site: every shard forgets its admissions and cuts its streams, now if attached and
   * when it attaches otherwise; the leader forgets them too (a re-approved site is admitted anew).
   */
  drop(site: string, reason: string): void {
    const drop: ShardDrop = { siteId: site, reason };
    this.drops.set(site, drop);
    for (const r of this.records) {
      r.admitted.delete(site);
      r.received.delete(site);
      for (const [k, a] of r.downloads) if (a.siteId === site) r.downloads.delete(k);
      r.link?.send({ drop });
    }
  }

  /** A site approved again: shards that attach from now on are not told to drop it; its new admissions reach every shard as usual. */
  undrop(site: string): void {
    this.drops.delete(site);
  }

  /** A shard's report of a Download call's bytes; ignored unless it comes on the shard's current stream. */
  sent(name: string, link: ShardLink, report: ShardSent__Output): void {
    const r = this.record(name);
    if (r.link !== link) return;
    const key = `${report.siteId} ${report.sha256}`;
    if (!r.downloads.has(key)) return;
    r.bytesSent += Number(report.bytes) || 0;
    if (report.complete) r.served.add(key);
    this.o.onSent?.(name, report);
  }

  /** A shard's report of a site's part; ignored unless it comes on the shard's current stream. */
  received(name: string, link: ShardLink, report: ShardReceived__Output): void {
    const r = this.record(name);
    if (r.link !== link) return;
    const admitted = r.admitted.get(report.siteId)?.header;
    if (report.refused === '' && admitted?.round === report.round && admitted.attempt === report.attempt) r.received.set(report.siteId, Number(report.end) - Number(report.start));
    this.o.onReceived?.(name, report);
  }

  /** Forgets `link` if it is still `name`'s stream. */
  detach(name: string, link: ShardLink): void {
    const r = this.record(name);
    if (r.link !== link) return;
    r.link = undefined;
    r.sent = undefined;
    this.enter(r, 'detached');
    this.settle(r, undefined, new CoordinatorError('SHARD_FAILED', `aggregator shard ${name} went away before it answered`, { shard: name }));
  }

  /**
   * The run's partition over the configured shards, when every one of them is attached and ready
   * for the run's current model: an aggregation may then run on them. Undefined otherwise.
   */
  readyPartition(): ModelPartition | undefined {
    const { partition } = this.partition();
    const plan = this.o.plan();
    const ready = (r: ShardRecord): boolean => r.state === 'ready' && r.link !== undefined && r.sent?.globalModelSha256 === plan?.globalSha256;
    return partition !== undefined && this.records.length > 0 && this.records.every(ready) ? partition : undefined;
  }

  /**
   * Asks every shard to step its part into the staged checkpoint `request` names and resolves with
   * each one's writes (bytes per staged file), in shard order. Rejects with `SHARD_FAILED` when a
   * shard fails or goes away first; `signal` cancels every shard's part and rejects with its reason.
   */
  async aggregate(request: ShardAggregation, signal: AbortSignal): Promise<number[][]> {
    const { round, attempt } = request;
    const parts = this.records.map(
      (r) =>
        new Promise<number[]>((resolve, reject) => {
          if (!r.link) throw new CoordinatorError('SHARD_FAILED', `aggregator shard ${r.name} is not attached`, { shard: r.name });
          r.pending?.reject(new CoordinatorError('SHARD_FAILED', 'a newer aggregation replaced it'));
          r.pending = { round, attempt, resolve, reject };
          r.link.send({ aggregate: request });
        }),
    );
    const onAbort = (): void => {
      for (const r of this.records) {
        if (r.pending?.round !== round || r.pending.attempt !== attempt) continue;
        r.link?.send({ cancel: { round, attempt } });
        this.settle(r, undefined, signal.reason);
      }
    };
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      return await Promise.all(parts);
    } catch (err) {
      onAbort(); // the others' parts are of no use now
      throw err;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** A shard's answer to its aggregation; ignored unless it answers the one pending on its current stream. */
  aggregated(name: string, link: ShardLink, report: ShardAggregated__Output): void {
    const r = this.record(name);
    if (r.link !== link || String(r.pending?.round) !== report.round || r.pending?.attempt !== report.attempt) return;
    if (report.ok) {
      this.settle(r, report.written.map(Number));
      return;
    }
    const message = `aggregator shard ${name} failed its part: ${printable(report.code)}: ${printable(report.message).slice(0, 512)}`;
    // A failed check of the secure sum keeps its own code, so the attempt is handled as one (journaled, paused after two).
    const code = (SHARD_CHECK_CODES as readonly string[]).includes(report.code) ? (report.code as (typeof SHARD_CHECK_CODES)[number]) : 'SHARD_FAILED';
    this.settle(r, undefined, new CoordinatorError(code, message, { shard: name }));
  }

  private settle(r: ShardRecord, written: number[] | undefined, err?: unknown): void {
    const p = r.pending;
    if (!p) return;
    r.pending = undefined;
    if (written) p.resolve(written);
    else p.reject(err);
  }

  /**
   * A shard's readiness for the assignment it names; ignored unless it answers the assignment last
   * sent on its current stream (an answer to an older run or model is stale).
   */
  readiness(name: string, link: ShardLink, report: ShardReadiness__Output, term: string): void {
    const r = this.record(name);
    const sent = r.sent;
    if (r.link !== link || sent === undefined) return;
    if (report.term !== term || report.runId !== sent.runId || report.globalModelSha256 !== sent.globalModelSha256) return;
    // The shard's words are shown to admins: printable, bounded.
    r.problem = report.ready ? '' : printable(report.problem).slice(0, 512);
    r.freeBytes = Number(report.freeBytes);
    this.enter(r, report.ready ? 'ready' : 'not_ready');
  }

  /** Sends each attached shard its assignment where the run or its global model changed. */
  refresh(): void {
    for (const r of this.records) if (r.link) this.sendAssignment(r);
  }

  /** Every configured shard, in shard order, for `admin status`. */
  list(): ShardView[] {
    const partition = this.partition();
    const plan = this.o.plan();
    return this.records.map((r) => ({
      shardId: r.name,
      endpoint: r.endpoint,
      state: r.state,
      sinceMs: String(r.sinceMs),
      shardIndex: r.index,
      firstValue: String(partition.partition?.bounds[r.index] ?? 0),
      endValue: String(partition.partition?.bounds[r.index + 1] ?? 0),
      problem: r.problem || partition.problem,
      freeBytes: String(r.freeBytes),
      peer: r.link?.peer ?? '',
      uploadsAdmitted: r.admitted.size,
      uploadsReceived: r.received.size,
      bytesReceived: String([...r.received.values()].reduce((n, b) => n + b, 0)),
      downloadsAdmitted: [...r.downloads.values()].filter((a) => a.sha256 === plan?.globalSha256).length,
      downloadsServed: [...r.served].filter((k) => r.downloads.get(k)?.sha256 === plan?.globalSha256).length,
      bytesSent: String(r.bytesSent),
    }));
  }

  /** Ends every stream (the coordinator stops). */
  close(): void {
    for (const r of this.records) {
      r.link?.close('the coordinator is stopping');
      r.link = undefined;
    }
  }

  private sendAssignment(r: ShardRecord): void {
    const a = this.assignment(r);
    const same = r.sent !== undefined && r.sent.runId === a.runId && r.sent.globalModelSha256 === a.globalModelSha256;
    if (same || !r.link) return;
    r.sent = a;
    if (r.state !== 'attached') this.enter(r, 'attached');
    r.link.send({ assignment: a });
  }

  private assignment(r: ShardRecord): ShardAssignment {
    const plan = this.o.plan();
    const { partition } = this.partition();
    return {
      runId: plan?.runId ?? '',
      globalModelSha256: plan?.globalSha256 ?? '',
      shardIndex: r.index,
      shardCount: this.records.length,
      alignValues: partition?.alignValues ?? PARTITION_ALIGN_VALUES,
      firstValue: String(partition?.bounds[r.index] ?? 0),
      endValue: String(partition?.bounds[r.index + 1] ?? 0),
      totalValues: String(partition?.totalValues ?? 0),
    };
  }

  /** The run's partition over the configured shards, as the run journaled it; a model that cannot be cut says why. */
  private partition(): { readonly partition: ModelPartition | undefined; readonly problem: string } {
    const plan = this.o.plan();
    if (plan === undefined || this.records.length === 0) return { partition: undefined, problem: '' };
    return plan.shards;
  }

  private enter(r: ShardRecord, state: ShardState): void {
    if (r.state === state) return;
    r.state = state;
    r.sinceMs = this.o.now();
    this.o.onState?.({ shard: r.name, index: r.index, state, problem: state === 'not_ready' ? r.problem : '' });
  }

  private record(name: string): ShardRecord {
    const r = this.records.find((x) => x.name === name);
    if (r === undefined) throw new Error(`no shard ${name}`);
    return r;
  }
}
