/**
 * What each dashboard page shows, as JSON: the run, the rounds, the sites, the transfers and the
 * audit chain. Each view is read from what the admin API reads — the journal (through `roundsOf`
 * of admin-rounds.ts), the round driver (`runSnapshot` of run-metrics.ts), the site registry, the
 * round timeline, `verifyAudit` — so the dashboard and `fedhpc admin` cannot disagree.
 */
import { gpuHours } from '../../common/usage.js';
import { usageRows, type UsageRow } from '../audit/usage.js';
import type { X509Certificate } from 'node:crypto';
import type { BudgetUsage } from '../upload/budget.js';
import type { AdminRoundPort } from '../shell/ports.js';
import type { RoundTimeline } from '../shell/timeline.js';
import type { SiteRegistry } from '../sites/registry.js';
import type { JournalRecord } from '../state/journal.js';
import { isRecordOf, recordsOf } from '../state/records.js';
import type { RunState } from '../round/types.js';
import { runSnapshot } from '../observe/run-metrics.js';
import type { OpenAttemptUploads } from '../observe/uploads.js';
import { roundsOf } from '../service/admin-rounds.js';
import { verifyAudit, type AuditReport } from '../audit/verify.js';
import type { FailureBook } from './failures.js';
import type { ShardView } from '../shards/registry.js';

/** Rounds sent to the rounds page at most (the newest); the journal and `fedhpc admin rounds` have all. */
export const MAX_ROUNDS_SHOWN = 2000;
/** Committed rounds listed with their receipts on the audit page (the newest). */
export const MAX_AUDIT_ROUNDS = 200;

/** Where the views read from: the coordinator's own objects, read-only. */
export interface DashboardSources {
  readonly federation: string;
  readonly version: string;
  readonly driver: AdminRoundPort;
  readonly registry: SiteRegistry;
  readonly records: () => readonly JournalRecord[];
  readonly timeline: RoundTimeline;
  readonly isRevoked: (site: string) => boolean;
  readonly members: () => readonly string[];
  readonly uploadBudget: () => BudgetUsage;
  readonly uploads: OpenAttemptUploads;
  readonly failures: FailureBook;
  /** The federation CA: the audit view checks receipt certificates against it. */
  readonly ca: X509Certificate;
  /** The aggregator shards the config names (issue 22), as `admin status` shows them. */
  readonly shards?: () => readonly ShardView[];
  readonly now: () => number;
}

/**
 * This coordinator's place in the federation. Standby coordinators (issue 19) do not exist yet:
 * when they do, a standby answers `{ kind: 'standby', leaderUrl }` here, and the pages show a
 * banner linking to the leader instead of presenting the standby's state as the run's.
 */
export type CoordinatorRole = { readonly kind: 'leader' } | { readonly kind: 'standby'; readonly leaderUrl: string };

/** The run page: phase, round, deadline, strategy, secure aggregation, the open attempt's sites. */
export function overviewView(s: DashboardSources, role: CoordinatorRole = { kind: 'leader' }) {
  const snap = runSnapshot(s.driver, s.records);
  const ctx = s.driver.runContext;
  const started = snap ? recordsOf(s.records().map((r) => r.body), snap.runId, 'run-started').at(-1) : undefined;
  const secureConfig = objectAt(started?.config, 'run', 'secureAggregation');
  const runConfig = objectAt(started?.config, 'run');
  return {
    federation: s.federation,
    coordinatorVersion: s.version,
    role,
    serverNowMs: s.now(),
    uptimeMs: s.driver.uptimeMs,
    sites: { connected: s.registry.connected().length, known: s.registry.list().length, members: s.members().length },
    uploadBudget: s.uploadBudget(),
    shards: (s.shards?.() ?? []).map((x) => ({
      shard: x.shardId,
      endpoint: x.endpoint,
      index: x.shardIndex,
      state: x.state,
      sinceMs: Number(x.sinceMs),
      firstValue: Number(x.firstValue),
      endValue: Number(x.endValue),
      freeBytes: Number(x.freeBytes),
      uploadsAdmitted: x.uploadsAdmitted,
      uploadsReceived: x.uploadsReceived,
      bytesReceived: Number(x.bytesReceived),
      downloadsAdmitted: x.downloadsAdmitted,
      downloadsServed: x.downloadsServed,
      bytesSent: Number(x.bytesSent),
      problem: x.problem,
    })),
    run:
      snap && ctx
        ? {
            ...snap,
            paused: s.driver.paused,
            globalModelSha256: ctx.globalSha256,
            modelRound: ctx.modelRound,
            minSites: ctx.plan.minSites,
            expectedSites: [...ctx.plan.expectedSites],
            maxAttempts: ctx.plan.maxAttempts,
            strategy: started?.strategy ?? null,
            weighting: started?.weighting ?? '',
            encoding: started?.encoding ?? '',
            aggregator: runConfig?.['aggregator'] ?? null,
            secure: ctx.plan.secure
              ? {
                  threshold: ctx.plan.secure.threshold,
                  quantBits: secureConfig?.['quantBits'] ?? null,
                  modulusBits: secureConfig?.['modulusBits'] ?? null,
                  clip: secureConfig?.['clip'] ?? null,
                  maxSites: secureConfig?.['maxSites'] ?? null,
                }
              : null,
            openAttempt: attemptView(s.driver.scheduler.run),
          }
        : null,
  };
}

/** A nested object of `value` (a journaled config), or undefined. */
function objectAt(value: unknown, ...path: string[]): Record<string, unknown> | undefined {
  let v = value;
  for (const key of path) v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[key] : undefined;
  return v !== null && typeof v === 'object' ? (v as Record<string, unknown>) : undefined;
}

/** Where each site stands in the open attempt, as the scheduler's phase records it. */
function attemptView(run: RunState): { step?: string; sites: { site: string; status: string; detail?: string }[] } {
  switch (run.phase) {
    case 'keys':
    case 'shares':
      return { sites: Object.entries(run.exchange).map(([site, status]) => ({ site, status })) };
    case 'training':
    case 'upload':
      return {
        sites: Object.entries(run.roster).map(([site, p]) => ({ site, status: p.status, ...(p.status === 'dropped' ? { detail: p.reason } : {}) })),
      };
    case 'unmask':
      return {
        step: run.step,
        sites: run.participants.map(({ site }) => ({
          site,
          status: run.gone.includes(site) ? 'gone' : (run.step === 'consistency' ? run.signed : run.revealed).includes(site) ? 'done' : 'waiting',
        })),
      };
    case 'aggregate':
    case 'commit':
      return { sites: run.participants.map(({ site }) => ({ site, status: 'in the sum' })) };
    default:
      return { sites: [] };
  }
}

/** The rounds page: every attempt with its evaluation (global and per site), bytes and phase timings. */
export function roundsView(s: DashboardSources) {
  const runId = s.driver.runContext?.plan.runId ?? '';
  const r = roundsOf(s.records(), runId, s.driver.evals);
  const all = r.rounds ?? [];
  const rounds = all.slice(-MAX_ROUNDS_SHOWN).map((x) => ({
    ...x,
    phases: s.timeline.phases(runId, Number(x.round), Number(x.attempt)).map((p) => ({ phase: p.phase, startedMs: p.startedMs, durationMs: p.endedMs === undefined ? null : p.endedMs - p.startedMs })),
  }));
  return {
    runId,
    truncated: all.length > rounds.length,
    // The baselines this run knows: its initial model's evaluation, overall and per site.
    baseline: r.hasInitialEval ? { loss: r.initialEvalLoss, sites: r.initialEvals } : null,
    rounds,
  };
}

/** The sites page: state, version, heartbeat, busy fraction, bytes, failures, certificate, usage. */
export function sitesView(s: DashboardSources) {
  const known = s.registry.list();
  const runId = s.driver.runContext?.plan.runId;
  const usage = new Map(runId === undefined ? [] : usageRows(s.records()).filter((r) => r.runId === runId).map((r) => [r.site, siteUsage(r)]));
  const expected = s.driver.runContext?.plan.expectedSites ?? [];
  const never = [...new Set([...expected, ...s.members()])].filter((id) => !s.registry.get(id)).sort();
  return {
    nowMs: s.now(),
    sites: [
      ...known.map((r) => ({
        id: r.id,
        state: s.isRevoked(r.id) ? 'revoked' : r.deliver === undefined ? 'disconnected' : 'connected',
        activity: r.activity,
        progress: r.progress,
        agentVersion: r.agentVersion,
        joinedAtMs: r.joinedAtMs,
        lastHeartbeatMs: r.lastSeenMs,
        bytesUp: r.bytesUp,
        bytesDown: r.bytesDown,
        roundsContributed: r.roundsContributed,
        lastRound: r.lastRound ?? null,
        busyFraction: r.lastRound?.busyFraction ?? null,
        certificate: { fingerprint: r.fingerprint, notAfterMs: r.certificateNotAfterMs ?? null },
        failures: s.failures.of(r.id),
        // The run's GPU-hours the site signed into its receipts; null before its first committed round.
        usage: usage.get(r.id) ?? null,
      })),
      ...never.map((id) => ({ id, state: 'never joined', usage: null, failures: s.failures.of(id) })),
    ],
  };
}

/** A site's usage in the current run as the sites page shows it: GPU-hours, and what is not summed. */
function siteUsage(r: UsageRow) {
  const unknown = r.perRound.filter((p) => p.usage?.source === 'unknown').at(-1)?.usage?.reason;
  return {
    rounds: r.rounds,
    allocatedGpuHours: gpuHours(r.allocatedGpuMs),
    trainingGpuHours: gpuHours(r.trainingGpuMs),
    roundsUnknown: r.roundsUnknown,
    unknownReason: unknown ?? null,
    roundsWithoutReceipt: r.roundsWithoutReceipt,
    sources: r.sources,
  };
}

/** The transfers page: each site's transfer in progress, as its heartbeats and the coordinator see it. */
export function transfersView(s: DashboardSources) {
  const received = new Map(s.uploads.list().map((u) => [u.site, u]));
  const transfers: {
    site: string;
    direction: string;
    bytes: number;
    totalBytes: number;
    rateBytesPerS: number | null;
    etaS: number | null;
    receivedBytes: number | null;
    source: string;
  }[] = [];
  for (const r of s.registry.list()) {
    const t = r.transfer;
    if (t === undefined) continue;
    const up = t.direction === 'upload' ? received.get(r.id) : undefined;
    transfers.push({ site: r.id, direction: t.direction, bytes: t.bytes, totalBytes: t.total, rateBytesPerS: t.rateBytesPerS, etaS: t.etaS, receivedBytes: up?.bytes ?? null, source: 'heartbeat' });
  }
  for (const u of received.values()) {
    if (u.done || transfers.some((t) => t.site === u.site && t.direction === 'upload')) continue;
    transfers.push({ site: u.site, direction: 'upload', bytes: u.bytes, totalBytes: u.totalBytes, rateBytesPerS: null, etaS: null, receivedBytes: u.bytes, source: 'coordinator' });
  }
  return { nowMs: s.now(), uploadBudget: s.uploadBudget(), transfers };
}

/** How often the audit view verifies the journal again at most, when it has grown. */
export const AUDIT_REVERIFY_MS = 2_000;

/**
 * The audit view, verified again only when the journal has grown and at most every
 * {@link AUDIT_REVERIFY_MS}: a verification reads every record, and a page may ask on each event.
 */
export class AuditCache {
  private last: { length: number; at: number; report: AuditReport } | undefined;
  constructor(private readonly s: DashboardSources) {}

  /** The audit page: head hash, verified up to, breaks, receipts per committed round. */
  view() {
    const records = this.s.records();
    const now = this.s.now();
    if (this.last === undefined || (this.last.length !== records.length && now - this.last.at >= AUDIT_REVERIFY_MS)) {
      this.last = { length: records.length, at: now, report: verifyAudit(records.map((record) => ({ ok: true as const, record })), { ca: [this.s.ca] }) };
    }
    const report = this.last.report;
    const verifiedSeq = report.firstBroken ? report.firstBroken.index : report.records;
    return {
      ok: report.ok,
      records: this.last.length,
      head: report.head,
      verifiedUpTo: { seq: verifiedSeq, hash: report.head },
      firstBroken: report.firstBroken ?? null,
      caChecked: report.caChecked,
      committedRounds: report.committedRounds,
      receipts: report.receipts,
      missingReceipts: report.missingReceipts.length,
      rounds: receiptsPerRound(records).slice(-MAX_AUDIT_ROUNDS),
    };
  }
}

/** Per committed round: its participants and which of them have a journaled receipt. */
function receiptsPerRound(records: readonly JournalRecord[]) {
  const rounds = new Map<string, { runId: string; round: number; attempt: number; hash: string; participants: string[]; receipts: string[] }>();
  for (const r of records) {
    const b = r.body;
    if (isRecordOf(b, 'round-committed')) {
      rounds.set(r.hash, { runId: b.runId, round: b.round, attempt: b.attempt, hash: r.hash, participants: b.participants.map((p) => p.site), receipts: [] });
    } else if (isRecordOf(b, 'receipt')) {
      rounds.get(b.committedHash)?.receipts.push(b.site);
    }
  }
  return [...rounds.values()].map((x) => ({ ...x, missing: x.participants.filter((p) => !x.receipts.includes(p)) }));
}
