/**
 * An aggregator shard's side of the data path (issue 22): sites upload their part of a delta to the
 * shard that owns it, over the same `SiteService.Upload` stream they use with the coordinator, and
 * the shard serves it with the coordinator's own `UploadService` (stripes, piece digests, resumes,
 * value checks, the in-flight budget). What the coordinator's round decides, the shard takes from
 * its leader: it accepts from a site's certificate only the header the leader admitted for it
 * (`ShardAdmit`, coordinator/upload/header.ts `admittedIntent`), under the leader's transfer limits,
 * and reports each part verified, or refused, on its `Attach` stream (`ShardReceived`). Spools
 * keep the whole delta's layout (only the part's bytes are written, the rest is a hole), so that
 * the shard's aggregation reads its range at the same offsets as in a whole spool.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { isSecureEncoding } from '../../aggregation/index.js';
import { createGrpcServer } from '../../common/grpc-window.js';
import { spoolAttemptsIn, spoolDirIn } from '../state/store.js';
import { join } from 'node:path';
import type { Logger } from '../../common/logger.js';
import type { TlsMaterial } from '../../common/tls.js';
import { loadProto, type ShardAdmit__Output, type ShardReceived } from '../../proto/index.js';
import type { Clock } from '../core/clock.js';
import { CoordinatorError, toServiceError } from '../core/errors.js';
import type { RefusalSink } from '../observe/refusals.js';
import { createIdentityResolver } from '../pki/index.js';
import { authenticate } from '../service/auth.js';
import { SERVER_CHANNEL_OPTIONS } from '../service/channel-options.js';
import { CallLimiter, withCallLimits, type CallLimits } from '../service/limits.js';
import { listenTls, type TlsListener } from '../service/tls-listener.js';
import { uploadHeaderFromWire } from '../service/wire.js';
import type { AttemptAt, TransferLimits, UploadRoundPort } from '../shell/ports.js';
import { TransferBudget } from '../upload/budget.js';
import type { UploadHeader } from '../upload/frames.js';
import { admittedIntent, type AdmittedUpload, type SpooledUpload, type UploadIntent } from '../upload/header.js';
import { UploadService, type UploadSites } from '../upload/service.js';
import { printable } from '../../common/text.js';
import type { DownloadCall } from '../service/model-download.js';
import { droppedByLeader, type ShardDownloads } from './shard-downloads.js';


/** One site's counters at this shard (its streams, so that a drop ends them, and its bytes). */
interface ShardSite {
  readonly uploads: Set<AbortController>;
  bytesUp: number;
  bytesReused: number;
}

/** How long a stopping shard lets upload streams end on their own. */
const STOP_GRACE_MS = 2_000;

/** Until the leader admits anything, streams are held to the coordinator's default limits. */
const DEFAULT_LIMITS: TransferLimits = { idleMs: 60_000, maxStreamsPerSite: 8, windowBytes: 16 << 20 };

/**
 * The round as a shard's uploads see it: the leader's admissions. Implements the port the
 * coordinator's driver implements for `UploadService`.
 */
export class ShardAdmissions implements UploadRoundPort {
  private readonly admitted = new Map<string, AdmittedUpload>();
  /** The latest admission's limits: the leader's, which apply to every stream here. */
  private latestLimits: TransferLimits = DEFAULT_LIMITS;
  private attempt: AttemptAt | undefined;
  private readonly sites = new Map<string, ShardSite>();

  constructor(
    private readonly report: (r: Omit<ShardReceived, 'term'>) => void,
    private readonly logger: Logger,
    /** Called when the first admission of a newer attempt arrives: the older attempts' spools can go. */
    private readonly onNewAttempt: (at: AttemptAt) => void = () => undefined,
  ) {}

  /** Takes the leader's admission of a site's upload; a newer attempt forgets the older ones. */
  admit(a: ShardAdmit__Output): void {
    if (!a.header) throw new CoordinatorError('BAD_REQUEST', 'an admission without a header');
    const header = uploadHeaderFromWire(a.header);
    const at = { round: header.round, attempt: header.attempt };
    if (this.attempt === undefined || at.round > this.attempt.round || (at.round === this.attempt.round && at.attempt > this.attempt.attempt)) {
      this.admitted.clear();
      this.attempt = at;
      this.onNewAttempt(at);
    } else if (at.round !== this.attempt.round || at.attempt !== this.attempt.attempt) {
      return; // an admission of an older attempt: that attempt is over
    }
    this.latestLimits = { idleMs: a.idleMs, maxStreamsPerSite: a.maxStreams, windowBytes: Number(a.windowBytes) };
    this.admitted.set(a.siteId, { header, weight: a.weight, maxChunkBytes: a.maxChunkBytes });
    this.logger.info({ site: a.siteId, round: at.round, attempt: at.attempt, phase: 'upload', start: header.partStart, end: header.partEnd }, 'upload admitted by the leader');
  }

  /** The leader revoked `site`: its admission goes and its upload streams end (`SITE_REVOKED`). */
  drop(site: string, reason: string): void {
    this.admitted.delete(site);
    for (const c of this.sites.get(site)?.uploads ?? []) c.abort(droppedByLeader(site, reason));
  }

  /** The limits of the latest admission (the leader's). */
  limits(): TransferLimits {
    return this.latestLimits;
  }

  /** The per-site records `UploadService` keeps its streams and byte counts in. */
  get registry(): UploadSites {
    return {
      get: (site) => this.sites.get(site),
      touch: (site) => {
        if (!this.sites.has(site)) this.sites.set(site, { uploads: new Set(), bytesUp: 0, bytesReused: 0 });
      },
    };
  }

  checkUpload(header: UploadHeader, site: string): UploadIntent {
    return admittedIntent(header, this.admission(site, header));
  }

  /**
   * `site`'s admission for `at`'s attempt. None: `NOT_ADMITTED` (retryable) — the leader's admission
   * may still be on its way, or be sent again once this shard, restarted, attaches — or
   * `NOT_INVITED` for an attempt older than the one admitted here.
   */
  private admission(site: string, at: { readonly round: number; readonly attempt: number }): AdmittedUpload {
    const a = this.admitted.get(site);
    if (a !== undefined && at.round === a.header.round && at.attempt === a.header.attempt) return a;
    const current = this.attempt;
    if (current !== undefined && (at.round < current.round || (at.round === current.round && at.attempt < current.attempt))) {
      throw new CoordinatorError('NOT_INVITED', `round ${at.round}.${at.attempt} is over at this shard (it takes ${current.round}.${current.attempt})`);
    }
    throw new CoordinatorError('NOT_ADMITTED', `this shard holds no admission of site ${site}'s upload for round ${at.round}.${at.attempt} (yet): ask again`);
  }

  uploadingAttempt(): AttemptAt | undefined {
    return this.attempt;
  }

  siteStatus(site: string): 'uploading' | undefined {
    return this.admitted.has(site) ? 'uploading' : undefined;
  }

  beginUpload(site: string, intent: UploadIntent): void {
    this.admission(site, intent);
  }

  completeUpload(site: string, intent: UploadIntent, spool: SpooledUpload): boolean {
    if (!this.admitted.has(site)) return false;
    const weightWord = maskedWeightWord(intent, spool.path);
    this.report({ siteId: site, round: String(intent.round), attempt: intent.attempt, start: String(intent.part.start), end: String(intent.part.end), sha256: spool.sha256, refused: '', ...(weightWord ? { weightWord } : {}) });
    return true;
  }

  failSite(site: string, round: number, attempt: number, reason: string): void {
    const a = this.admitted.get(site);
    if (a === undefined || a.header.round !== round || a.header.attempt !== attempt) return;
    this.admitted.delete(site);
    this.report({ siteId: site, round: String(round), attempt, start: String(a.header.partStart), end: String(a.header.partEnd), sha256: '', refused: printable(reason).slice(0, 512) });
  }

  /** Nothing to count here: the leader counts a part's bytes when the shard reports it verified. */
  countBytes(): void {}
}

/**
 * The masked weight word of a secure upload whose part ends with it (the last shard's), read from
 * the verified spool: its last word, a few bytes. Undefined for every other part.
 */
function maskedWeightWord(intent: UploadIntent, spoolPath: string): Buffer | undefined {
  const word = intent.segments.at(-1);
  if (!isSecureEncoding(intent.encoding) || word === undefined || intent.part.end !== word.end) return undefined;
  const out = Buffer.alloc(word.end - word.start);
  const fd = openSync(spoolPath, 'r');
  try {
    if (readSync(fd, out, 0, out.length, word.start) !== out.length) throw new CoordinatorError('STATE_CORRUPT', `the spool ${spoolPath} ends before its weight word`);
  } finally {
    closeSync(fd);
  }
  return out;
}

/** The attempts' spools of a shard, under its state dir, laid out as the coordinator's. */
export function shardSpools(stateDir: string): {
  spoolDir(round: number, attempt: number): Promise<string>;
  spoolAttempts(round: number): Promise<{ attempt: number; dir: string }[]>;
  /**
   * Deletes the spools of rounds before `keep`'s: once a newer round is admitted, the older ones
   * were aggregated or abandoned. Earlier attempts of `keep`'s round stay (a named delta's upload
   * may carry over from them), until the next round.
   */
  prune(keep: AttemptAt): Promise<void>;
} {
  const root = join(stateDir, 'spool');
  return {
    async prune(keep) {
      for (const name of await readdir(root).catch(() => [])) {
        const round = Number(/^round-(\d+)\.\d+$/.exec(name)?.[1] ?? Number.NaN);
        if (round < keep.round) await rm(join(root, name), { recursive: true, force: true });
      }
    },
    spoolDir: (round, attempt) => spoolDirIn(stateDir, round, attempt),
    spoolAttempts: (round) => spoolAttemptsIn(stateDir, round),
  };
}

export interface ShardUploadServerOptions {
  readonly listen: string;
  readonly federation: string;
  readonly tls: TlsMaterial;
  readonly stateDir: string;
  readonly uploadBudgetBytes: number;
  /** Per-site call limits, as the coordinator applies its own. */
  readonly limits: CallLimits;
  readonly admissions: ShardAdmissions;
  /** The downloads of model parts the leader admitted here. */
  readonly downloads: ShardDownloads;
  readonly refusals: RefusalSink;
  readonly clock: Clock;
  readonly logger: Logger;
}

/**
 * Serves `SiteService.Upload` and `Download` on `listen` with the shard's `aggregator` certificate;
 * every other site call is UNIMPLEMENTED here (they go to the coordinator). Only site certificates
 * of the federation are served, of those only the transfers the leader admitted, and each site's
 * calls within the shard's call limits (the coordinator's, for a local shard).
 */
export async function serveShardTransfers(o: ShardUploadServerOptions): Promise<{ readonly port: number; stop(): Promise<void> }> {
  const resolver = createIdentityResolver({ federation: o.federation });
  const uploads = new UploadService({
    driver: o.admissions,
    registry: o.admissions.registry,
    store: shardSpools(o.stateDir),
    logger: o.logger,
    limits: () => o.admissions.limits(),
    budget: new TransferBudget(o.uploadBudgetBytes, o.clock),
    clock: o.clock,
  });
  // Built as the coordinator's is (common/grpc-window.ts): a plain grpc-js server would keep a
  // 64 KiB receive window whatever the options say, one window of a site's part per round trip.
  const server = createGrpcServer(SERVER_CHANNEL_OPTIONS);
  const service = loadProto().fedhpc.v1.SiteService.service;
  const limiter = new CallLimiter(o.limits, () => o.clock.now());
  server.addService(service, withCallLimits(service, {
    Upload: (call: Parameters<UploadService['serve']>[0]) => {
      let site: string;
      try {
        site = authenticate(call, resolver, 'site').id;
        o.admissions.registry.touch(site);
      } catch (err) {
        call.emit('error', toServiceError(err));
        return;
      }
      void uploads.serve(call, site);
    },
    Download: (call: DownloadCall) => {
      void (async () => {
        try {
          await o.downloads.serve(call, authenticate(call, resolver, 'site').id);
          call.end();
        } catch (err) {
          call.emit('error', toServiceError(err));
        }
      })();
    },
  }, limiter));
  const listener: TlsListener = await listenTls({ listen: o.listen, tls: o.tls, server, refusals: o.refusals });
  o.logger.info({ port: listener.port, phase: 'upload' }, 'serving part uploads and downloads');
  return {
    port: listener.port,
    async stop() {
      listener.stopAccepting();
      // Streams of sites still uploading get a moment to end; then they are cut (they resume elsewhere or later).
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, STOP_GRACE_MS);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      await listener.close();
    },
  };
}
