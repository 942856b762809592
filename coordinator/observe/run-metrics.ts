/**
 * The run view of the coordinator's Prometheus metrics: what `fedhpc admin status` and `admin sites`
 * show, as series a dashboard can graph and alert on — the current run, its round, attempt and
 * phase, each site's state, bytes and transfer, the open attempt's uploads as the coordinator
 * receives them, and the latest federated evaluation. Registered beside the families of
 * metrics.ts, on the same registry (so with its `federation` label).
 *
 * Gauges read the coordinator's state at scrape time (`collect`), except the uploads and the
 * evaluation, which follow the event bus: per site, the open attempt's upload (cleared when the
 * next attempt opens), and the last evaluation since this process started.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { trainOverlap } from '../config.js';
import { SECURE_PHASES } from '../round/types.js';
import type { AdminRoundPort } from '../shell/ports.js';
import type { JournalRecord } from '../state/journal.js';
import { isRecordOf } from '../state/records.js';
import type { SiteRegistry } from '../sites/registry.js';
import { type EventBus, eventBody } from './events.js';
import { OpenAttemptUploads } from './uploads.js';

/** The run as `admin status` shows it. */
export interface RunSnapshot {
  readonly runId: string;
  /** running, pausing, paused, finished, failed or aborted. */
  readonly state: string;
  /** 0 between rounds. */
  readonly round: number;
  readonly attempt: number;
  /** '' between rounds. */
  readonly phase: string;
  /** Epoch ms; 0 when the phase has no deadline. */
  readonly phaseDeadlineMs: number;
  readonly roundsPlanned: number;
  readonly roundsCommitted: number;
  /** Overlapped rounds: the largest applied staleness of any participant of the committed rounds, inner steps. */
  readonly maxAppliedStaleness: number;
  /** Overlapped rounds: the run's bound on it (`run.train.overlap.maxAppliedSteps`); 0: none. */
  readonly appliedStalenessLimit: number;
  /** Bytes the sites uploaded in the last committed round (an overlapped run's bytes per sync; 0: none yet). */
  readonly lastRoundBytesUp: number;
}

/** What the journal says of `runId`'s committed rounds, and the applied staleness bound it started with. */
export type CommittedSummary = Pick<RunSnapshot, 'roundsCommitted' | 'maxAppliedStaleness' | 'appliedStalenessLimit' | 'lastRoundBytesUp'>;

/** {@link CommittedSummary} of `runId`, from the journal. */
export function committedSummary(records: readonly JournalRecord[], runId: string): CommittedSummary {
  const s = { roundsCommitted: 0, maxAppliedStaleness: 0, appliedStalenessLimit: 0, lastRoundBytesUp: 0 };
  for (const r of records) {
    const b = r.body;
    if (b['runId'] !== runId) continue;
    if (isRecordOf(b, 'run-started')) s.appliedStalenessLimit = trainOverlap(b.train)?.maxAppliedSteps ?? 0;
    if (!isRecordOf(b, 'round-committed')) continue;
    s.roundsCommitted += 1;
    s.lastRoundBytesUp = b.bytesUp;
    for (const p of b.participants) s.maxAppliedStaleness = Math.max(s.maxAppliedStaleness, p.appliedStaleness ?? 0);
  }
  return s;
}

export interface RunMetricsOptions {
  readonly registry: Registry;
  readonly bus: EventBus;
  readonly sites: SiteRegistry;
  /** The run now; undefined while the coordinator idles without one. */
  readonly run: () => RunSnapshot | undefined;
}

/** The run of `driver` as `admin status` shows it; undefined without one. */
export function runSnapshot(driver: Pick<AdminRoundPort, 'scheduler' | 'runContext' | 'runState'>, records: () => readonly JournalRecord[]): RunSnapshot | undefined {
  const run = driver.runContext;
  if (run === undefined) return undefined;
  const s = driver.scheduler.run;
  const inRound = 'round' in s ? s : undefined;
  const runId = run.plan.runId;
  return {
    runId,
    state: driver.runState,
    round: inRound?.round ?? 0,
    attempt: inRound?.attempt ?? 0,
    phase: inRound ? s.phase : '',
    phaseDeadlineMs: inRound?.deadline ?? 0,
    roundsPlanned: run.plan.rounds,
    ...committedSummary(records(), runId),
  };
}

/** Registers the run view's families on `o.registry`. */
export function registerRunMetrics(o: RunMetricsOptions): void {
  const registers = [o.registry];
  new Gauge({
    name: 'fedhpc_run_info',
    help: 'The run being driven (1), by run id and state; run_id "" and state "idle" without one',
    labelNames: ['run_id', 'state'] as const,
    registers,
    collect() {
      this.reset();
      const run = o.run();
      this.set({ run_id: run?.runId ?? '', state: run?.state ?? 'idle' }, 1);
    },
  });
  new Gauge({
    name: 'fedhpc_run_rounds',
    help: 'Rounds of the current run: planned, and committed so far',
    labelNames: ['kind'] as const,
    registers,
    collect() {
      const run = o.run();
      this.set({ kind: 'planned' }, run?.roundsPlanned ?? 0);
      this.set({ kind: 'committed' }, run?.roundsCommitted ?? 0);
    },
  });
  new Gauge({
    name: 'fedhpc_round',
    help: 'The round in progress (0 between rounds)',
    registers,
    collect() {
      this.set(o.run()?.round ?? 0);
    },
  });
  new Gauge({
    name: 'fedhpc_round_attempt',
    help: 'The attempt of the round in progress (0 between rounds)',
    registers,
    collect() {
      this.set(o.run()?.attempt ?? 0);
    },
  });
  new Gauge({
    name: 'fedhpc_round_phase',
    help: 'The phase of the round in progress: 1 for the current phase, 0 for the others',
    labelNames: ['phase'] as const,
    registers,
    collect() {
      const phase = o.run()?.phase ?? '';
      for (const p of SECURE_PHASES) this.set({ phase: p }, p === phase ? 1 : 0);
    },
  });
  new Gauge({
    name: 'fedhpc_max_applied_staleness_steps',
    help: "Overlapped rounds: the largest applied staleness, in inner steps, of any participant of the current run's committed rounds",
    registers,
    collect() {
      this.set(o.run()?.maxAppliedStaleness ?? 0);
    },
  });
  new Gauge({
    name: 'fedhpc_round_phase_deadline_timestamp_seconds',
    help: 'When the current phase times out, in seconds since the epoch (0: no deadline)',
    registers,
    collect() {
      this.set((o.run()?.phaseDeadlineMs ?? 0) / 1000);
    },
  });
  registerSiteMetrics(o);
  registerUploadMetrics(o);
  registerEvalMetrics(o);
}

/** Per site, read from the registry at scrape time. */
function registerSiteMetrics(o: RunMetricsOptions): void {
  const registers = [o.registry];
  new Gauge({
    name: 'fedhpc_site_connected',
    help: 'Whether each known site holds an open task stream',
    labelNames: ['site'] as const,
    registers,
    collect() {
      this.reset();
      for (const s of o.sites.list()) this.set({ site: s.id }, s.deliver === undefined ? 0 : 1);
    },
  });
  new Gauge({
    name: 'fedhpc_site_activity',
    help: "Each site's activity as its last heartbeat reported it (1, labelled with the activity)",
    labelNames: ['site', 'activity'] as const,
    registers,
    collect() {
      this.reset();
      for (const s of o.sites.list()) this.set({ site: s.id, activity: s.activity }, 1);
    },
  });
  new Gauge({
    name: 'fedhpc_site_progress_ratio',
    help: "Each site's progress in its current activity, 0 to 1 (-1: not reported)",
    labelNames: ['site'] as const,
    registers,
    collect() {
      this.reset();
      for (const s of o.sites.list()) this.set({ site: s.id }, s.progress);
    },
  });
  new Counter({
    name: 'fedhpc_site_bytes_total',
    help: 'Model bytes moved between the coordinator and each site since the coordinator started',
    labelNames: ['site', 'direction'] as const,
    registers,
    collect() {
      // The registry's per-site totals only grow: the counter is set to them at each scrape.
      this.reset();
      for (const s of o.sites.list()) {
        this.inc({ site: s.id, direction: 'up' }, s.bytesUp);
        this.inc({ site: s.id, direction: 'down' }, s.bytesDown);
      }
    },
  });
  new Gauge({
    name: 'fedhpc_site_rounds_contributed',
    help: 'Rounds each site contributed to since the coordinator started',
    labelNames: ['site'] as const,
    registers,
    collect() {
      this.reset();
      for (const s of o.sites.list()) this.set({ site: s.id }, s.roundsContributed);
    },
  });
  new Gauge({
    name: 'fedhpc_site_round_work',
    help: 'What each site did in the last committed round it took part in: tokens, steps, staleness (rounds its base lay behind), folded parts',
    labelNames: ['site', 'kind'] as const,
    registers,
    collect() {
      this.reset();
      for (const s of o.sites.list()) {
        const l = s.lastRound;
        if (l === undefined) continue;
        this.set({ site: s.id, kind: 'tokens' }, l.tokens);
        this.set({ site: s.id, kind: 'steps' }, l.steps);
        this.set({ site: s.id, kind: 'staleness' }, l.staleness);
        this.set({ site: s.id, kind: 'folded_parts' }, l.foldedParts);
      }
    },
  });
  new Gauge({
    name: 'fedhpc_site_applied_staleness_steps',
    help: "Overlapped rounds: each site's applied staleness in the last committed round it took part in, inner steps between its previous snapshot and the step that applied the round's model",
    labelNames: ['site'] as const,
    registers,
    collect() {
      this.reset();
      for (const s of o.sites.list()) if (s.lastRound !== undefined) this.set({ site: s.id }, s.lastRound.appliedStaleness);
    },
  });
  new Gauge({
    name: 'fedhpc_site_busy_ratio',
    help: "Each site's busy fraction in the last committed round it took part in: time training over the time it had (its busy time since its previous round's work ended, or first to last step over the round's wall time)",
    labelNames: ['site'] as const,
    registers,
    collect() {
      this.reset();
      for (const s of o.sites.list()) if (s.lastRound?.busyFraction !== undefined) this.set({ site: s.id }, s.lastRound.busyFraction);
    },
  });
  new Gauge({
    name: 'fedhpc_site_transfer_bytes',
    help: "The transfer each site reports in its heartbeats, while one runs: bytes done and the transfer's size",
    labelNames: ['site', 'direction', 'kind'] as const,
    registers,
    collect() {
      this.reset();
      for (const s of o.sites.list()) {
        const t = s.transfer;
        if (t === undefined) continue;
        this.set({ site: s.id, direction: t.direction, kind: 'done' }, t.bytes);
        this.set({ site: s.id, direction: t.direction, kind: 'total' }, t.total);
      }
    },
  });
}

/** The open attempt's uploads, as the coordinator receives them (events), per site. */
function registerUploadMetrics(o: RunMetricsOptions): void {
  const uploads = new OpenAttemptUploads(o.bus);
  new Gauge({
    name: 'fedhpc_upload_received_bytes',
    help: "Bytes of each site's upload of the open attempt received so far",
    labelNames: ['site'] as const,
    registers: [o.registry],
    collect() {
      this.reset();
      for (const u of uploads.list()) this.set({ site: u.site }, u.bytes);
    },
  });
  new Gauge({
    name: 'fedhpc_upload_size_bytes',
    help: "Size of each site's upload of the open attempt, as its header declared",
    labelNames: ['site'] as const,
    registers: [o.registry],
    collect() {
      this.reset();
      for (const u of uploads.list()) this.set({ site: u.site }, u.totalBytes);
    },
  });
}

/** The latest federated evaluation (events): overall loss, its model's round, per-site losses. */
function registerEvalMetrics(o: RunMetricsOptions): void {
  const loss = new Gauge({ name: 'fedhpc_eval_loss', help: 'Sample-weighted loss of the latest evaluated global model', registers: [o.registry] });
  const modelRound = new Gauge({ name: 'fedhpc_eval_model_round', help: 'The round whose global model was evaluated last (0: the initial model)', registers: [o.registry] });
  const samples = new Gauge({ name: 'fedhpc_eval_samples', help: 'Samples the latest evaluation rests on, all sites together', registers: [o.registry] });
  const siteLoss = new Gauge({ name: 'fedhpc_site_eval_loss', help: "Each site's loss in the latest evaluation", labelNames: ['site'] as const, registers: [o.registry] });
  o.bus.subscribe((e) => {
    const b = eventBody(e, 'round.evaluated');
    if (!b) return;
    loss.set(b.loss);
    modelRound.set(b.modelRound);
    samples.set(b.samples);
    siteLoss.reset();
    for (const s of b.sites) siteLoss.set({ site: s.site }, s.loss);
  });
}

