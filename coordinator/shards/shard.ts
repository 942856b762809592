/**
 * An aggregator shard's process (`fedhpc aggregator`, issue 22): it dials the leader with its
 * `aggregator` certificate, holds one `Attach` stream, and answers each assignment with whether it
 * can serve its part (./readiness.ts); asked to aggregate, it steps its part of the model into the
 * checkpoint the leader staged (./shard-aggregate.ts) and reports what it wrote. It follows the leadership terms the leader's instructions
 * carry: an instruction of a term below the highest it has followed is refused and the shard dials
 * on, so a deposed leader that still talks cannot direct it; with a `stateDir` the highest term
 * survives a restart (./term-file.ts). It finds the leader as sites do
 * (docs/protocol.md, "Standby coordinators and NOT_LEADER"): the configured addresses in order, a
 * standby's `NOT_LEADER` hint first, jittered backoff once every address has been tried.
 */
import * as grpc from '@grpc/grpc-js';
import { backoffDelay, sleep } from '../../common/backoff.js';
import { droppedConnection, firstCoordinator, nextCoordinator, readGrpcRefusal, type GrpcRefusal } from '../../common/coordinator-verdict.js';
import { mutualTlsCredentials } from '../../common/grpc-tls.js';
import type { Logger } from '../../common/logger.js';
import { readTlsFiles, type TlsMaterial } from '../../common/tls.js';
import {
  MAX_MESSAGE_BYTES,
  PROTOCOL_VERSION,
  loadProto,
  type ShardAggregate__Output,
  type ShardAssignment__Output,
  type ShardInstruction__Output,
  type ShardReceived,
  type ShardSent,
  type ShardReport,
} from '../../proto/index.js';
import { join } from 'node:path';
import { KernelPool } from '../aggregate/kernel-pool.js';
import { COORDINATOR_VERSION } from '../coordinator.js';
import { CoordinatorError } from '../core/errors.js';
import { printable } from '../../common/text.js';
import type { ResolvedShardConfig } from './config.js';
import { checkAssignment } from './readiness.js';
import { shardAggregate } from './shard-aggregate.js';
import { keepTerm, readKeptTerm } from './term-file.js';
import { ID_PATTERN } from '../pki/names.js';
import { ShardAdmissions, serveShardTransfers, shardSpools } from './shard-uploads.js';
import { ShardDownloads } from './shard-downloads.js';
import { spoolFolder } from '../state/store.js';
import { RefusalMonitor } from '../observe/refusals.js';
import { systemClock } from '../core/clock.js';

/** A refusal no retry can mend: the shard stops (its certificate, its name or its version is wrong). */
export class ShardRefusedError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ShardRefusedError';
  }
}

/** Codes with which a leader refuses a shard for good. */
const FINAL_CODES = new Set(['NOT_MEMBER', 'PERMISSION_DENIED', 'UNAUTHENTICATED', 'PROTOCOL_VERSION', 'SITE_MISMATCH']);

/**
 * Whether a shard that has followed term `highest` may act on an instruction of term `term`: only
 * when it is not older. A newer term is followed from then on.
 */
export function termAllows(highest: bigint, term: bigint): boolean {
  return term >= highest;
}

/** What the shard is doing, for tests and logs. */
export interface ShardState {
  readonly term: bigint;
  readonly coordinator: string | undefined;
  readonly assignment: ShardAssignment__Output | undefined;
}

export interface RunShardOptions {
  readonly config: ResolvedShardConfig;
  readonly logger: Logger;
  /** Stops the shard: it ends its stream and resolves. */
  readonly signal: AbortSignal;
  readonly random?: () => number;
  /** Called with every change of what the shard follows (tests). */
  readonly onState?: (state: ShardState) => void;
}

/** How one Attach stream ended. */
type StreamEnd =
  | { readonly kind: 'ended'; readonly attached: boolean }
  | { readonly kind: 'refused'; readonly attached: boolean; readonly refusal: GrpcRefusal | undefined; readonly error: unknown }
  | { readonly kind: 'older-term'; readonly attached: boolean };

/**
 * Runs the shard until `signal` aborts (resolves) or a coordinator refuses it for good (rejects
 * with {@link ShardRefusedError}).
 */
export async function runShard(o: RunShardOptions): Promise<void> {
  const { config, logger } = o;
  const random = o.random ?? Math.random;
  const tls = readTlsFiles(config.tls);
  const { AggregatorService } = loadProto().fedhpc.v1;
  // The term followed before a restart, when the shard keeps one (its `stateDir`).
  let state: ShardState = { term: config.stateDir ? readKeptTerm(config.stateDir) : 0n, coordinator: undefined, assignment: undefined };
  if (state.term > 0n) logger.info({ term: String(state.term) }, 'following the leadership term kept before the restart');
  const update = (patch: Partial<ShardState>): void => {
    state = { ...state, ...patch };
    o.onState?.(state);
  };
  // Sites' part uploads (./shard-uploads.ts): served while the shard runs, reported on whichever
  // Attach stream is open (a report made while none is, is sent on the next one).
  const siteTls = config.siteTls ? readTlsFiles(config.siteTls) : tls;
  const uploads = config.listen !== undefined && config.stateDir !== undefined ? await startUploads(o, siteTls, config.listen, config.stateDir) : undefined;
  // Started at the first aggregation, kept for the next ones (the coordinator keeps its pool too).
  let pool: Promise<KernelPool | undefined> | undefined;
  const kernels = (): Promise<KernelPool | undefined> =>
    (pool ??= KernelPool.start().catch((err: unknown) => {
      logger.warn({ err, phase: 'aggregate' }, 'kernel worker pool unavailable; aggregating in the event-loop thread');
      return undefined;
    }));
  // Which coordinator to dial: the sites' rule (common/coordinator-verdict.ts `nextCoordinator`).
  let cursor = firstCoordinator(config.coordinators);
  let failures = 0;
  try {
    while (!o.signal.aborted) {
      const target = cursor.current;
      const client = new AggregatorService(target, mutualTlsCredentials(tls, { target, serverName: config.serverName }), {
        'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
        'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
        'grpc.keepalive_time_ms': 10_000,
        'grpc.keepalive_timeout_ms': 20_000,
        'grpc.keepalive_permit_without_calls': 1,
        ...(config.serverName ? { 'grpc.default_authority': config.serverName } : {}),
      });
      const log = logger.child({ coordinator: target, phase: 'attach' });
      let end: StreamEnd;
      try {
        end = await attachOnce(client, target, o, log, () => state, update, kernels, uploads);
      } finally {
        client.close();
      }
      update({ coordinator: undefined });
      if (o.signal.aborted) break;
      if (end.attached) failures = 0;
      const r = end.kind === 'refused' ? end.refusal : undefined;
      const code = r?.said?.code ?? r?.statusName;
      if (end.kind === 'refused' && code !== undefined && FINAL_CODES.has(code) && r?.said?.retryable !== true) {
        throw new ShardRefusedError(code, `coordinator ${target} refused shard ${config.name}: ${r?.reason ?? String(end.error)}`);
      }
      // A stream that ended, an older term or a coordinator not there: the next address, as a site moves on.
      const next = nextCoordinator(cursor, { code: end.kind === 'refused' && code !== undefined ? code : 'UNAVAILABLE', leader: r?.leader, dropped: end.kind === 'refused' && droppedConnection(end.error) });
      if (next.why.startsWith('leader-named')) log.info({ leader: next.cursor.current }, 'a standby named the leader');
      else if (end.kind === 'refused') log.warn({ reason: r?.reason ?? String(end.error) }, 'coordinator unavailable');
      cursor = next.cursor;
      if (next.wait === 'backoff') {
        const ms = backoffDelay({ initialMs: config.reconnect.initialMs, maxMs: config.reconnect.maxMs }, failures++, random);
        await sleep(ms, o.signal).catch(() => undefined);
      }
    }
  } finally {
    // Refused for good or stopped: nothing may keep the process alive.
    try {
      await (await pool)?.close();
    } finally {
      await uploads?.stop();
    }
  }
}

/** The shard's part uploads and downloads: their admissions, the reports not yet sent, and the server. */
interface ShardUploads {
  readonly admissions: ShardAdmissions;
  readonly downloads: ShardDownloads;
  readonly stateDir: string;
  /** Where reports go while a stream is attached (undefined: kept until one is). */
  sink: ((r: ShardReport) => void) | undefined;
  /** The current attempt's reports, sent again on every new stream (the leader ignores repeats). */
  readonly reports: Omit<ShardReceived, 'term'>[];
  /** Download reports made while no stream was attached, sent on the next one (at most {@link UNSENT_KEPT}). */
  readonly unsent: Omit<ShardSent, 'term'>[];
  stop(): Promise<void>;
}

/** Download reports kept while no leader is attached: the bytes of calls beyond these go uncounted. */
const UNSENT_KEPT = 1_000;

async function startUploads(o: RunShardOptions, tls: TlsMaterial, listen: string, stateDir: string): Promise<ShardUploads> {
  const { config, logger } = o;
  const clock = systemClock;
  const refusals = new RefusalMonitor({ logger, now: () => clock.now() });
  const spools = shardSpools(stateDir);
  const u: ShardUploads = {
    stateDir,
    sink: undefined,
    reports: [],
    admissions: new ShardAdmissions((r) => {
      // One attempt's reports are kept: those of an older one are of no use to the leader.
      if (u.reports.some((k) => k.round !== r.round || k.attempt !== r.attempt)) u.reports.length = 0;
      u.reports.push(r);
      u.sink?.({ received: { term: '0', ...r } });
    }, logger, (at) => {
      // The older attempts' parts were aggregated (or their attempt abandoned): they go.
      spools.prune(at).catch((err: unknown) => logger.warn({ err, round: at.round, phase: 'upload' }, 'could not delete the spools of older attempts'));
    }),
    downloads: new ShardDownloads(config.checkpoints, (r) => {
      if (u.sink) u.sink({ sent: { term: '0', ...r } });
      else if (u.unsent.length < UNSENT_KEPT) u.unsent.push(r);
    }, logger),
    unsent: [],
    stop: async () => undefined,
  };
  const server = await serveShardTransfers({ listen, federation: config.federation, tls, stateDir, uploadBudgetBytes: config.uploadBudgetBytes, limits: config.limits, admissions: u.admissions, downloads: u.downloads, refusals, clock, logger });
  u.stop = () => server.stop();
  return u;
}

/** A site's own spool at this shard (a part upload), for the aggregation; site names are those of certificates. */
function ownSpool(stateDir: string): (site: string, round: number, attempt: number) => string {
  return (site, round, attempt) => {
    if (!ID_PATTERN.test(site)) throw new CoordinatorError('BAD_REQUEST', `${JSON.stringify(site.slice(0, 70))} is no site name`);
    return join(spoolFolder(stateDir, round, attempt), `${site}.delta`);
  };
}

/** Holds one Attach stream to `client` until it ends, is refused, or sends an older term. */
function attachOnce(
  client: InstanceType<ReturnType<typeof loadProto>['fedhpc']['v1']['AggregatorService']>,
  target: string,
  o: RunShardOptions,
  log: Logger,
  state: () => ShardState,
  update: (patch: Partial<ShardState>) => void,
  kernels: () => Promise<KernelPool | undefined>,
  uploads: ShardUploads | undefined,
): Promise<StreamEnd> {
  const { config } = o;
  return new Promise<StreamEnd>((resolve) => {
    const call = client.Attach();
    let attached = false;
    let settled = false;
    /** Each assignment's number: a readiness check that finishes after a newer assignment is not sent. */
    let latest = 0;
    /** The aggregation under way, if any: one at a time, stopped by a cancel or the stream's end. */
    let job: { readonly round: string; readonly attempt: number; readonly controller: AbortController } | undefined;
    const settle = (end: StreamEnd): void => {
      if (settled) return;
      settled = true;
      job?.controller.abort(new Error('the stream to the leader ended'));
      if (uploads?.sink === sendReceived) uploads.sink = undefined;
      o.signal.removeEventListener('abort', onAbort);
      call.cancel();
      resolve(end);
    };
    const onAbort = (): void => settle({ kind: 'ended', attached });
    // Part-upload and download reports carry the term this stream follows.
    const sendReceived = (r: ShardReport): void => {
      if (settled) return;
      if (r.received) call.write({ received: { ...r.received, term: String(state().term) } } satisfies ShardReport);
      else if (r.sent) call.write({ sent: { ...r.sent, term: String(state().term) } } satisfies ShardReport);
    };
    o.signal.addEventListener('abort', onAbort, { once: true });
    /** Steps the shard's part of the leader's aggregation and answers it; one at a time, a newer one replaces it. */
    const onAggregate = (term: string, req: ShardAggregate__Output): void => {
      const glog = log.child({ phase: 'aggregate', round: Number(req.round), attempt: req.attempt });
      job?.controller.abort(new Error('a newer aggregation replaced it'));
      const mine = { round: req.round, attempt: req.attempt, controller: new AbortController() };
      job = mine;
      const t0 = performance.now();
      glog.info({ inputs: req.inputs.length, files: req.files.length, secure: req.unmask !== null }, "aggregating the shard's part");
      const reply = (body: Omit<NonNullable<ShardReport['aggregated']>, 'term' | 'round' | 'attempt'>): void => {
        if (job === mine) job = undefined;
        if (!settled) call.write({ aggregated: { term, round: req.round, attempt: req.attempt, ...body } } satisfies ShardReport);
      };
      void kernels()
        .then((pool) =>
          shardAggregate(config.checkpoints, state().assignment, req, { ...(pool ? { pool } : {}), signal: mine.controller.signal, ...(uploads ? { ownSpool: ownSpool(uploads.stateDir) } : {}) }),
        )
        .then(
          (written) => {
            glog.info({ seconds: (performance.now() - t0) / 1000, written }, "aggregated the shard's part");
            reply({ ok: true, written: written.map(String) });
          },
          (err: unknown) => {
            const code = err instanceof CoordinatorError ? err.code : 'INTERNAL';
            glog.warn({ code, err }, "aggregation of the shard's part failed");
            reply({ ok: false, code, message: printable(err instanceof Error ? err.message : String(err)).slice(0, 512) });
          },
        );
    };
    /** Takes a new part and answers whether the checkpoint storage serves it. */
    const onAssignment = (term: string, a: ShardAssignment__Output): void => {
      const n = ++latest;
      update({ assignment: a });
      const alog = log.child({ phase: 'assign', runId: a.runId, shardIndex: a.shardIndex });
      alog.info({ first: a.firstValue, end: a.endValue, of: a.totalValues, model: a.globalModelSha256 }, 'assigned a part of the model');
      void checkAssignment(config.checkpoints, a).then((r) => {
        if (settled || n !== latest) return;
        if (r.ready) alog.info({ freeBytes: r.freeBytes }, 'ready');
        else alog.warn({ problem: r.problem }, 'not ready');
        const report: ShardReport = { readiness: { term, runId: a.runId, globalModelSha256: a.globalModelSha256, ready: r.ready, problem: r.problem, freeBytes: String(r.freeBytes) } };
        call.write(report);
      });
    };
    call.on('data', (instruction: ShardInstruction__Output) => {
      const term = BigInt(instruction.term);
      const highest = state().term;
      if (!termAllows(highest, term)) {
        log.error({ term: instruction.term, following: String(highest) }, 'refused an instruction of an older leadership term: a newer leader exists; dialling on');
        settle({ kind: 'older-term', attached });
        return;
      }
      if (term > highest) {
        // Kept before it is acted on: a restart must not forget a term the shard has obeyed.
        try {
          if (config.stateDir) keepTerm(config.stateDir, term);
        } catch (err) {
          log.error({ term: instruction.term, err }, 'cannot keep the leadership term in the state dir: not following it; dialling on');
          settle({ kind: 'ended', attached });
          return;
        }
        log.info({ term: instruction.term }, 'following leadership term');
      }
      if (!attached) {
        log.info({ term: instruction.term }, 'attached to the leader');
        if (uploads) {
          uploads.sink = sendReceived;
          for (const r of uploads.reports) sendReceived({ received: { term: '0', ...r } });
          for (const r of uploads.unsent.splice(0)) sendReceived({ sent: { term: '0', ...r } });
        }
      }
      attached = true;
      update({ term, coordinator: target });
      const { cancel, aggregate, assignment, admit, admitDownload, drop } = instruction;
      if (instruction.kind === 'drop' && drop) {
        const reason = printable(drop.reason).slice(0, 512);
        uploads?.admissions.drop(drop.siteId, reason);
        uploads?.downloads.drop(drop.siteId, reason);
        log.warn({ site: drop.siteId, reason }, 'site dropped by the leader: its admissions and streams here end');
      } else if ((instruction.kind === 'admit' && admit) || (instruction.kind === 'admitDownload' && admitDownload)) {
        try {
          if (!uploads) throw new CoordinatorError('BAD_REQUEST', 'this shard serves no sites (no listen)');
          if (admit) uploads.admissions.admit(admit);
          else if (admitDownload) uploads.downloads.admit(admitDownload);
        } catch (err) {
          log.warn({ site: (admit ?? admitDownload)?.siteId, err }, 'an admission from the leader was not taken');
        }
      } else if (instruction.kind === 'cancel' && cancel) {
        if (job?.round === cancel.round && job.attempt === cancel.attempt) job.controller.abort(new Error('the leader cancelled the aggregation'));
      } else if (instruction.kind === 'aggregate' && aggregate) {
        onAggregate(instruction.term, aggregate);
      } else if (instruction.kind === 'assignment' && assignment) {
        onAssignment(instruction.term, assignment);
      }
    });
    call.on('error', (error: unknown) => {
      if ((error as { code?: unknown }).code === grpc.status.CANCELLED && settled) return;
      settle({ kind: 'refused', attached, refusal: readGrpcRefusal(error), error });
    });
    call.on('end', () => settle({ kind: 'ended', attached }));
    const hello: ShardReport = { hello: { protocolVersion: PROTOCOL_VERSION, shardId: config.name, term: String(state().term), shardVersion: COORDINATOR_VERSION, servesUploads: uploads !== undefined } };
    call.write(hello);
  });
}
