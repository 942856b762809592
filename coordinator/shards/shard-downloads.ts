/**
 * An aggregator shard's side of model downloads (issue 22, protocol version 12): a site downloads
 * the byte range of the global model file that holds the shard's part of the model — the bytes this
 * shard wrote into the checkpoint — from the shard itself, over the same `SiteService.Download`
 * stream it uses with the coordinator. The shard serves only what its leader admitted
 * (`ShardAdmitDownload`): that site, that model, that range, under the leader's chunk size and idle
 * timeout; it reads the file from the checkpoint storage it shares with the coordinators, and
 * reports each call's bytes (`ShardSent`) so the leader counts them as its own.
 */
import { isSha256 } from '../../common/files.js';
import type { Logger } from '../../common/logger.js';
import type { ShardAdmitDownload__Output, ShardSent } from '../../proto/index.js';
import { CoordinatorError } from '../core/errors.js';
import { type DownloadCall, sendModelRange } from '../service/model-download.js';
import { checkpointPath } from '../state/store.js';

/** Download admissions are kept for this many models (the round's global model and the one before), at the shard and the leader alike. */
const MODELS_KEPT = 2;

/**
 * Records `value` under `key` as the newest download admission of `admitted` (by site and model,
 * in the order admitted), and forgets the admissions of all but the {@link MODELS_KEPT} newest
 * models (`model` names a value's).
 */
export function admitLatest<T>(admitted: Map<string, T>, key: string, value: T, model: (v: T) => string): void {
  admitted.delete(key); // set again last: the map's order is the admissions' order
  admitted.set(key, value);
  const models = [...new Set([...admitted.values()].map(model))];
  for (const old of models.slice(0, Math.max(0, models.length - MODELS_KEPT))) {
    for (const [k, v] of admitted) if (model(v) === old) admitted.delete(k);
  }
}

/** Why a site's transfers at a shard end when its leader drops it: final, the site is revoked. */
export function droppedByLeader(site: string, reason: string): CoordinatorError {
  return new CoordinatorError('SITE_REVOKED', `site ${site} was dropped by the leader: ${reason}`);
}

interface AdmittedDownload {
  readonly start: number;
  readonly end: number;
  readonly maxChunkBytes: number;
  readonly idleMs: number;
}

/** The downloads the leader admitted at this shard, and the serving of them. */
export class ShardDownloads {
  /** By `<site> <sha256>`, in the order admitted. */
  private readonly admitted = new Map<string, AdmittedDownload & { readonly sha256: string }>();
  /** The calls being served, by site: a dropped site's are ended. */
  private readonly serving = new Map<string, Set<AbortController>>();

  constructor(
    /** The checkpoint storage (the coordinator's state dir) as this host reaches it. */
    private readonly checkpoints: string,
    private readonly report: (r: Omit<ShardSent, 'term'>) => void,
    private readonly logger: Logger,
  ) {}

  /** Takes the leader's admission of a site's download of a range of a model. */
  admit(a: ShardAdmitDownload__Output): void {
    const start = Number(a.start);
    const end = Number(a.end);
    if (!isSha256(a.sha256)) throw new CoordinatorError('BAD_REQUEST', `a download admission of ${JSON.stringify(a.sha256.slice(0, 70))}, not a SHA-256`);
    if (!(Number.isSafeInteger(start) && Number.isSafeInteger(end) && start >= 0 && start < end)) throw new CoordinatorError('BAD_REQUEST', `a download admission of bytes [${a.start}, ${a.end})`);
    if (!(a.maxChunkBytes > 0 && a.idleMs > 0)) throw new CoordinatorError('BAD_REQUEST', `a download admission with chunks of ${a.maxChunkBytes} bytes and an idle timeout of ${a.idleMs} ms`);
    admitLatest(this.admitted, `${a.siteId} ${a.sha256}`, { sha256: a.sha256, start, end, maxChunkBytes: a.maxChunkBytes, idleMs: a.idleMs }, (d) => d.sha256);
    this.logger.info({ site: a.siteId, phase: 'download', model: a.sha256, start, end }, 'download admitted by the leader');
  }

  /** The leader revoked `site`: its admissions go and the calls it has open end (`SITE_REVOKED`). */
  drop(site: string, reason: string): void {
    // Keys are `<site> <sha256>`; a site id holds no space.
    for (const k of this.admitted.keys()) if (k.startsWith(`${site} `)) this.admitted.delete(k);
    for (const c of this.serving.get(site) ?? []) c.abort(droppedByLeader(site, reason));
  }

  /**
   * Serves one `Download` call of `site`: `NOT_ADMITTED` (retryable) for a model this shard holds
   * no admission of for the site (yet: the leader's admission may be on its way, or be sent again
   * once a restarted shard attaches), `CHUNK_OUT_OF_RANGE` for bytes outside the admitted range.
   */
  async serve(call: DownloadCall, site: string): Promise<void> {
    const { sha256 } = call.request;
    const a = this.admitted.get(`${site} ${sha256}`);
    if (a === undefined) {
      throw new CoordinatorError('NOT_ADMITTED', `this shard holds no admission of site ${site}'s download of ${isSha256(sha256) ? sha256 : JSON.stringify(sha256.slice(0, 70))} (yet): ask again`);
    }
    // The end asked for: 0 is the admitted range's.
    const end = Number(call.request.end) || a.end;
    let bytes = 0;
    let complete = false;
    const controller = new AbortController();
    const calls = this.serving.get(site) ?? new Set();
    this.serving.set(site, calls.add(controller));
    try {
      const r = await sendModelRange(call, {
        path: checkpointPath(this.checkpoints, sha256),
        maxChunkBytes: a.maxChunkBytes,
        idleMs: a.idleMs,
        within: a,
        signal: controller.signal,
        onBytes: (n) => {
          bytes += n;
        },
      });
      complete = r.complete && end === a.end;
    } finally {
      calls.delete(controller);
      if (calls.size === 0) this.serving.delete(site);
      if (bytes > 0) this.report({ siteId: site, sha256, start: call.request.offset, end: String(end), bytes: String(bytes), complete });
    }
  }
}
