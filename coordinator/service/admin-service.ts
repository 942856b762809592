/**
 * `AdminService`: status, sites, rounds, the live event stream, run control (start, pause, resume,
 * abort), site approval and revocation, and each site's recent log, for the `fedhpc admin` CLI.
 * Every RPC needs an admin certificate; rounds are read from the journal, the source of truth.
 */
import type * as grpc from '@grpc/grpc-js';
import { X509Certificate } from 'node:crypto';
import { ConfigError, parseConfig } from '../../common/config-file.js';
import type { Logger } from '../../common/logger.js';
import type { AdminServiceHandlers, ApproveSiteRequest__Output, HaStatus } from '../../proto/index.js';
import type { BudgetUsage } from '../upload/budget.js';
import { runSchema } from '../config.js';
import type { AdminRoundPort } from '../shell/ports.js';
import { CoordinatorError, toServiceError } from '../core/errors.js';
import type { EventBus } from '../observe/events.js';
import { ID_PATTERN, identityFromCertificate, type PeerIdentity } from '../pki/index.js';
import type { SiteRegistry } from '../sites/registry.js';
import { certificateKeys, type AccessResolver, type SiteAccess, type SiteApprovedRecord, type SiteRevokedRecord } from '../sites/revocation.js';
import type { RoundTimeline } from '../shell/timeline.js';
import type { SiteLogBook } from '../sites/site-logs.js';
import type { Membership } from '../sites/membership.js';
import type { RefusalMonitor } from '../observe/refusals.js';
import { committedSummary, type CommittedSummary } from '../observe/run-metrics.js';
import { usageRows } from '../audit/usage.js';
import type { StateStore } from '../state/store.js';
import type { HaSnapshot, HaView } from '../ha/view.js';
import type { ShardRegistry } from '../shards/registry.js';
import { roundDetail, roundsOf } from './admin-rounds.js';
import { authenticate } from './auth.js';
import { lineFromWire, u64, usageRowToWire } from './wire.js';

export interface AdminServiceOptions {
  readonly federation: string;
  readonly version: string;
  /** The run, as the admin RPCs see and steer it. */
  readonly driver: AdminRoundPort;
  readonly registry: SiteRegistry;
  readonly store: StateStore & { sizeBytes(): Promise<number> };
  readonly bus: EventBus;
  readonly resolver: AccessResolver;
  readonly access: SiteAccess;
  readonly logs: SiteLogBook;
  readonly timeline: RoundTimeline;
  /** The federation CA certificate (PEM): approved certificates must chain to it. */
  readonly caPem: string;
  readonly logger: Logger;
  /** Most events buffered for a slow `Events` reader before its stream is ended. */
  readonly maxBufferedEvents: number;
  /** How full the shared in-flight upload budget is. */
  readonly uploadBudget: () => BudgetUsage;
  /** The federation's members; an approval admits its site. */
  readonly membership: Pick<Membership, 'approved' | 'size'>;
  /** Recent refused callers, per reason, for `status`. */
  readonly refusals: Pick<RefusalMonitor, 'recent' | 'windowMs'>;
  /** A standby pair's leader: its leadership, standbys and NATS health for `status` (absent without `ha`). */
  readonly ha?: HaView | undefined;
  /** The aggregator shards the config names (issue 22), for `status`. */
  readonly shards?: Pick<ShardRegistry, 'list'> | undefined;
}

/** The committed rounds as `Status` names them. */
function statusOfCommitted(c: CommittedSummary): { roundsCommitted: number; maxAppliedStalenessSteps: number; appliedStalenessLimit: number; lastRoundBytesUp: number } {
  return { roundsCommitted: c.roundsCommitted, maxAppliedStalenessSteps: c.maxAppliedStaleness, appliedStalenessLimit: c.appliedStalenessLimit, lastRoundBytesUp: c.lastRoundBytesUp };
}

/** The pair's view as `HaStatus` (the wire's lists are mutable copies). */
function haToWire(h: HaSnapshot): HaStatus {
  return { ...h, standbys: [...h.standbys] };
}

function budgetFields(u: BudgetUsage): { uploadBudgetBytes: number; uploadBudgetUsedBytes: number; uploadStreamsQueued: number } {
  return { uploadBudgetBytes: u.totalBytes, uploadBudgetUsedBytes: u.usedBytes, uploadStreamsQueued: u.waiting };
}

/** Builds the handlers of `AdminService`. */
export function adminServiceHandlers(o: AdminServiceOptions): AdminServiceHandlers {
  const unary =
    <Req, Res>(fn: (req: Req, admin: PeerIdentity) => Res | Promise<Res>) =>
    (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>): void => {
      Promise.resolve()
        .then(() => fn(call.request, authenticate(call, o.resolver, 'admin')))
        .then((res) => callback(null, res), (err: unknown) => callback(toServiceError(err)));
    };
  const runId = (): string => o.driver.runContext?.plan.runId ?? '';
  const stateSize = cachedSize(o.store, 2_000);

  return {
    Status: unary(async () => {
      const s = o.driver.scheduler.run;
      const run = o.driver.runContext;
      const inRound = 'round' in s ? s : undefined;
      return {
        federation: o.federation,
        coordinatorVersion: o.version,
        runId: runId(),
        runState: run ? o.driver.runState : 'idle',
        round: inRound?.round ?? 0,
        attempt: inRound?.attempt ?? 0,
        phase: inRound ? s.phase : '',
        ...statusOfCommitted(committedSummary(o.store.records(), runId())),
        roundsTotal: run?.plan.rounds ?? 0,
        globalModelSha256: run?.globalSha256 ?? '',
        sitesConnected: o.registry.connected().length,
        sitesKnown: o.registry.list().length,
        phaseDeadlineMs: inRound?.deadline ?? 0,
        uptimeMs: o.driver.uptimeMs,
        paused: o.driver.paused,
        stateDirBytes: await stateSize(),
        sitesRevoked: o.access.revokedCount,
        sitesMembers: o.membership.size,
        recentRefusals: o.refusals.recent(),
        refusalsWindowS: Math.round(o.refusals.windowMs / 1000),
        ...budgetFields(o.uploadBudget()),
        ...(o.ha ? { ha: haToWire(o.ha.snapshot()) } : {}),
        shards: o.shards?.list() ?? [],
      };
    }),

    Sites: unary(() => ({
      sites: o.registry.list().map((s) => {
        const t = s.transfer;
        return {
          siteId: s.id,
          connected: s.deliver !== undefined,
          lastSeenMs: s.lastSeenMs,
          activity: s.activity,
          progress: s.progress,
          agentVersion: s.agentVersion,
          bytesUp: s.bytesUp,
          bytesDown: s.bytesDown,
          roundsContributed: s.roundsContributed,
          certificateFingerprint: s.fingerprint,
          revoked: o.access.isRevoked(s.id),
          ...(s.lastRound
            ? {
                lastRound: s.lastRound.round,
                lastTokens: s.lastRound.tokens,
                lastSteps: s.lastRound.steps,
                lastStaleness: s.lastRound.staleness,
                lastFoldedParts: s.lastRound.foldedParts,
                lastAppliedStaleness: s.lastRound.appliedStaleness,
                busyFraction: s.lastRound.busyFraction ?? -1,
              }
            : { busyFraction: -1 }),
          ...(t
            ? { transferDirection: t.direction, transferBytes: t.bytes, transferTotal: t.total, transferRateBytesPerS: t.rateBytesPerS, transferEtaS: t.etaS }
            : {}),
        };
      }),
    })),

    Rounds: unary(() => roundsOf(o.store.records(), runId(), o.driver.evals)),

    Round: unary((req) => {
      const round = Number(req.round);
      const detail = roundDetail(o.store.records(), runId(), round, o.driver.evals, o.timeline);
      if (!detail) throw new CoordinatorError('BAD_REQUEST', `run ${JSON.stringify(runId())} has no round ${round} (yet)`, { round });
      return detail;
    }),

    StartRun: unary(async (req, admin) => {
      const source = lineFromWire(req.source, 'source') || 'run file';
      let json: unknown;
      try {
        json = JSON.parse(req.runJson);
      } catch (err) {
        throw new CoordinatorError('BAD_REQUEST', `${source}: not valid JSON: ${(err as Error).message}`);
      }
      let run;
      try {
        run = parseConfig(source, json, runSchema);
      } catch (err) {
        // One line per refusal: the details travel as one line and are printed as one.
        if (err instanceof ConfigError) throw new CoordinatorError('BAD_REQUEST', `invalid run ${source}: ${err.issues.join('; ')}`);
        throw err;
      }
      await o.driver.startRun(run, json, admin.id);
      o.logger.info({ runId: run.id, admin: admin.id }, 'run started by an admin');
      return { runId: run.id, runState: o.driver.runState, message: `run ${run.id} started (${run.rounds} rounds)` };
    }),

    PauseRun: unary(async (req, admin) => {
      const reason = lineFromWire(req.reason, 'reason');
      const state = await o.driver.setPaused(true, admin.id);
      o.logger.info({ runId: runId(), admin: admin.id, reason }, 'run paused by an admin');
      return { runId: runId(), runState: state, message: state === 'paused' ? 'paused' : 'pausing: the open round completes, then no new round opens' };
    }),

    ResumeRun: unary(async (_req, admin) => {
      const state = await o.driver.setPaused(false, admin.id);
      o.logger.info({ runId: runId(), admin: admin.id }, 'run resumed by an admin');
      return { runId: runId(), runState: state, message: 'resumed' };
    }),

    AbortRun: unary(async (req, admin) => {
      const reason = lineFromWire(req.reason, 'reason');
      await o.driver.abortRun(admin.id, reason);
      o.logger.warn({ runId: runId(), admin: admin.id, reason }, 'run aborted by an admin');
      return { runId: runId(), runState: 'aborted', message: 'the open round was aborted and the run ended' };
    }),

    ApproveSite: unary((req, admin) => approve(o, req, admin)),

    RevokeSite: unary(async (req, admin) => {
      const site = req.siteId;
      if (!ID_PATTERN.test(site)) throw new CoordinatorError('BAD_REQUEST', `invalid site id ${JSON.stringify(site)}`);
      const reason = lineFromWire(req.reason, 'reason');
      const known = o.access.identify(site);
      const registered = o.registry.get(site)?.fingerprint;
      const fingerprints = [...new Set([...known.fingerprints, ...(registered ? [registered] : [])])].sort();
      const record: SiteRevokedRecord = { type: 'site-revoked', site, fingerprints, keySha256s: known.keySha256s, reason, admin: admin.id };
      await o.store.append(record);
      o.access.applyRevoked(record);
      o.bus.emit('site.revoked', { site, fingerprint: fingerprints[0] ?? '', admin: admin.id, reason });
      o.logger.warn({ site, admin: admin.id, reason, fingerprints }, 'site revoked');
      // Refused from its next call on; what it holds open now is closed, and the round goes on without it.
      const rec = o.registry.get(site);
      for (const upload of rec?.uploads ?? []) upload.abort(new CoordinatorError('SITE_REVOKED', `site ${site} was revoked`));
      rec?.close?.();
      const droppedFromRound = o.driver.dropRevokedSite(site, `revoked by admin ${admin.id}${reason ? `: ${reason}` : ''}`);
      return { siteId: site, certificateFingerprints: fingerprints, droppedFromRound };
    }),

    SiteLogs: unary((req) => {
      if (!o.logs.has(req.siteId) && !o.registry.get(req.siteId)) {
        throw new CoordinatorError('UNKNOWN_SITE', `no site ${JSON.stringify(req.siteId)} has been seen by this coordinator`);
      }
      return { siteId: req.siteId, lines: o.logs.recent(req.siteId, req.limit).map((l) => ({ tsMs: l.ts, kind: l.kind, message: l.message })) };
    }),

    Usage: unary((req) => {
      const site = req.siteId === '' ? undefined : req.siteId;
      if (site !== undefined && !ID_PATTERN.test(site)) throw new CoordinatorError('BAD_REQUEST', `site ${JSON.stringify(site.slice(0, 80))} is not a site id`);
      const ms = (v: string, field: string): number | undefined => (v === '0' ? undefined : u64(v, field));
      const fromMs = ms(req.fromMs, 'fromMs');
      const toMs = ms(req.toMs, 'toMs');
      if (fromMs !== undefined && toMs !== undefined && toMs <= fromMs) throw new CoordinatorError('BAD_REQUEST', `usage window ends (${toMs}) before it starts (${fromMs})`);
      return { rows: usageRows(o.store.records(), { site, fromMs, toMs }).map(usageRowToWire) };
    }),

    Events: (call) => {
      try {
        authenticate(call, o.resolver, 'admin');
      } catch (err) {
        call.emit('error', toServiceError(err));
        return;
      }
      const led = o.bus.leadership;
      if (led) call.write({ kind: led.kind, tsMs: led.ts, json: JSON.stringify(led.body) });
      const unsubscribe = o.bus.subscribe((event) => {
        if (call.writableLength > o.maxBufferedEvents) {
          unsubscribe();
          call.emit('error', { code: 8, details: 'RESOURCE_EXHAUSTED: event reader too slow; reconnect and re-read state' });
          return;
        }
        call.write({ kind: event.kind, tsMs: event.ts, json: JSON.stringify(event.body) });
      });
      const stop = (): void => {
        unsubscribe();
      };
      call.on('cancelled', stop);
      call.on('close', stop);
      call.on('error', stop);
    },
  };
}

/**
 * Records a certificate the admin's tooling signed from a site's CSR: it must be a site
 * certificate of this federation's CA, for `siteId`, still valid, and keep the site's key unless
 * the site was revoked. The coordinator never signs anything itself.
 */
async function approve(o: AdminServiceOptions, req: ApproveSiteRequest__Output, admin: PeerIdentity) {
  const refuse = (why: string): never => {
    throw new CoordinatorError('ENROLMENT_REFUSED', `certificate for ${JSON.stringify(req.siteId)} refused: ${why}`, { site: req.siteId });
  };
  let keys: ReturnType<typeof certificateKeys>;
  try {
    keys = certificateKeys(req.certificatePem);
  } catch {
    throw new CoordinatorError('BAD_REQUEST', 'certificate_pem is not a readable PEM certificate');
  }
  const ca = new X509Certificate(o.caPem);
  if (!keys.cert.checkIssued(ca) || !keys.cert.verify(ca.publicKey)) refuse('it is not signed by this federation CA');
  const identity = identityFromCertificate(req.certificatePem);
  if (!identity.ok) refuse(identity.issues.map((i) => i.message).join('; '));
  const id = identity.ok ? identity.value : undefined;
  if (id?.role !== 'site' || id.id !== req.siteId || id.federation !== o.federation) {
    refuse(`it names ${id?.role ?? '?'} ${JSON.stringify(id?.id)} of federation ${JSON.stringify(id?.federation)}`);
  }
  if (keys.notAfterMs <= Date.now()) refuse('it has expired');
  const { renewal } = o.access.checkApproval({ site: req.siteId, fingerprint: keys.fingerprint, keySha256: keys.keySha256 });
  const lockedOut = o.access.isLockedOut(req.siteId);
  const record: SiteApprovedRecord = {
    type: 'site-approved',
    site: req.siteId,
    fingerprint: keys.fingerprint,
    keySha256: keys.keySha256,
    notAfterMs: keys.notAfterMs,
    renewal,
    admin: admin.id,
  };
  await o.store.append(record);
  o.access.applyApproved(record);
  // The journaled approval is the membership record: the site is a member from now on (a renewal keeps it one).
  o.membership.approved(record);
  // Re-enrolled after a revocation: it can connect again, so rounds that expect it wait for it again.
  if (lockedOut) o.driver.excuseSite(req.siteId, false);
  o.bus.emit('site.approved', { site: req.siteId, fingerprint: keys.fingerprint, admin: admin.id });
  o.logger.info({ site: req.siteId, admin: admin.id, renewal, fingerprint: keys.fingerprint }, renewal ? 'site certificate renewed' : 'site enrolment approved');
  return { siteId: req.siteId, certificateFingerprint: keys.fingerprint, renewal, notAfterMs: keys.notAfterMs };
}

/**
 * The state dir's size, walked at most every `maxAgeMs`. Once one walk has finished, `status`
 * answers with the last size at once while the next walk runs: under upload load a walk's stat
 * calls queue behind the spool writes in libuv's thread pool, and `status` took 3 s waiting for it.
 */
function cachedSize(store: { sizeBytes(): Promise<number> }, maxAgeMs: number): () => Promise<number> {
  let last: number | undefined;
  let walk: { at: number; bytes: Promise<number> } | undefined;
  return () => {
    if (!walk || Date.now() - walk.at > maxAgeMs) {
      const bytes = store.sizeBytes();
      walk = { at: Date.now(), bytes };
      void bytes.then((n) => (last = n), () => undefined);
    }
    return last === undefined ? walk.bytes : Promise.resolve(last);
  };
}
