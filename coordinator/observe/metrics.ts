/**
 * The coordinator's Prometheus metrics, on a registry of its own (never prom-client's global
 * default, so two coordinators in one process never mix): rounds committed and aborted, phase
 * durations, bytes up and down, active streams, each site's heartbeat age, errors by code, and
 * refused callers by reason.
 * Served over HTTP only when `metrics` is configured (see common/metrics-http.ts).
 */
import * as grpc from '@grpc/grpc-js';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { EventBus } from './events.js';
import type { SiteRegistry } from '../sites/registry.js';
import type { RoundTimeline } from '../shell/timeline.js';
import type { BudgetUsage } from '../upload/budget.js';
import { REFUSAL_REASONS, type RefusalReason } from './refusals.js';

/** The metric families and the gRPC interceptor that counts streams and errors. */
/** The states a shard may be in (coordinator/shards/registry.ts), each a series of the state set. */
const SHARD_STATES = ['detached', 'attached', 'ready', 'not_ready'] as const;

/**
 * `fedhpc_shard_state{shard, state}`: 1 for each aggregator shard's current state, 0 for its
 * others (a Prometheus state set), so an alert can fire on a shard not `ready`.
 */
export function registerShardMetrics(
  registry: Registry,
  shards: () => readonly { readonly shardId: string; readonly state: string; readonly uploadsAdmitted: number; readonly uploadsReceived: number; readonly bytesReceived: string; readonly bytesSent: string }[],
): void {
  new Gauge({
    name: 'fedhpc_shard_part_uploads',
    help: "The open attempt's part uploads at each aggregator shard: admitted to it, and verified by it",
    labelNames: ['shard', 'stage'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const s of shards()) {
        this.set({ shard: s.shardId, stage: 'admitted' }, s.uploadsAdmitted);
        this.set({ shard: s.shardId, stage: 'received' }, s.uploadsReceived);
      }
    },
  });
  new Gauge({
    name: 'fedhpc_shard_received_bytes',
    help: "Bytes of the open attempt's part uploads each aggregator shard has verified",
    labelNames: ['shard'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const s of shards()) this.set({ shard: s.shardId }, Number(s.bytesReceived));
    },
  });
  new Gauge({
    name: 'fedhpc_shard_sent_bytes',
    help: 'Bytes of model parts each aggregator shard has sent sites since the coordinator started',
    labelNames: ['shard'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const s of shards()) this.set({ shard: s.shardId }, Number(s.bytesSent));
    },
  });
  new Gauge({
    name: 'fedhpc_shard_state',
    help: "Each aggregator shard's state at the leader: 1 for the current one (detached, attached, ready, not_ready)",
    labelNames: ['shard', 'state'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const s of shards()) for (const state of SHARD_STATES) this.set({ shard: s.shardId, state }, s.state === state ? 1 : 0);
    },
  });
}

/**
 * How often the event-loop lag histogram samples, in ms. prom-client's default, 10 ms, wakes the
 * process 100 times a second whatever it is doing: 0.76 % of a core for an idle Node 20 process on
 * a 2-vCPU EPYC, about half of what the leader spends while its sites upload to aggregator shards
 * (bench/RESULTS.md, issue 22). Lags that matter to a coordinator — a blocked loop delaying
 * heartbeats, acks and deadlines — last hundreds of milliseconds and are still caught whole; only
 * the histogram's resolution below this is given up.
 */
export const EVENT_LOOP_SAMPLE_MS = 100;

export class CoordinatorMetrics {
  readonly registry = new Registry();
  private readonly activeStreams: Gauge<'method'>;
  private readonly errors: Counter<'status' | 'code'>;
  private readonly refused: Counter<'reason'>;

  constructor(o: { bus: EventBus; sites: SiteRegistry; timeline: RoundTimeline; now: () => number; federation: string; budget?: () => BudgetUsage }) {
    this.registry.setDefaultLabels({ federation: o.federation });
    // Node's process metrics (CPU, memory, event-loop lag, GC, handles), prom-client's standard names.
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
    const registers = [this.registry];
    const rounds = new Counter({ name: 'fedhpc_rounds_total', help: 'Round attempts that ended, by outcome', labelNames: ['outcome'] as const, registers });
    const phases = new Histogram({
      name: 'fedhpc_phase_duration_seconds',
      help: 'Duration of round phases',
      labelNames: ['phase'] as const,
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600],
      registers,
    });
    const bytes = new Counter({ name: 'fedhpc_bytes_total', help: 'Model bytes moved between the coordinator and sites', labelNames: ['direction'] as const, registers });
    const reused = new Counter({
      name: 'fedhpc_upload_reused_bytes_total',
      help: 'Upload bytes verified in an earlier attempt of a round and kept for a later one instead of being sent again',
      registers,
    });
    this.activeStreams = new Gauge({ name: 'fedhpc_active_streams', help: 'Open streaming calls, by method', labelNames: ['method'] as const, registers });
    this.errors = new Counter({ name: 'fedhpc_errors_total', help: 'Calls that ended with an error, by gRPC status and fedhpc code', labelNames: ['status', 'code'] as const, registers });
    this.refused = new Counter({
      name: 'fedhpc_refused_total',
      help: 'Callers refused: a failed TLS handshake, a site that is not a member, a revoked certificate',
      labelNames: ['reason'] as const,
      registers,
    });
    for (const reason of REFUSAL_REASONS) this.refused.inc({ reason }, 0);
    new Gauge({
      name: 'fedhpc_site_heartbeat_age_seconds',
      help: 'Seconds since each known site was last heard from',
      labelNames: ['site', 'connected'] as const,
      registers,
      collect() {
        this.reset();
        for (const s of o.sites.list()) this.set({ site: s.id, connected: String(s.deliver !== undefined) }, (o.now() - s.lastSeenMs) / 1000);
      },
    });
    const budget = o.budget;
    if (budget) {
      new Gauge({
        name: 'fedhpc_upload_budget_bytes',
        help: 'The shared budget of in-flight upload bytes: its size, the part reserved by open streams',
        labelNames: ['kind'] as const,
        registers,
        collect() {
          const u = budget();
          this.set({ kind: 'total' }, u.totalBytes);
          this.set({ kind: 'used' }, u.usedBytes);
        },
      });
      new Gauge({
        name: 'fedhpc_upload_streams_queued',
        help: 'Upload streams waiting for their window from the shared budget',
        registers,
        collect() {
          this.set(budget().waiting);
        },
      });
    }
    new Gauge({
      name: 'fedhpc_sites_connected',
      help: 'Sites holding an open task stream',
      registers,
      collect() {
        this.set(o.sites.connected().length);
      },
    });
    // Bytes are counted where they move (the registry's per-site totals); the counter follows them.
    let seen = { up: 0, down: 0, reused: 0 };
    const syncBytes = (): void => {
      const now = { up: 0, down: 0, reused: 0 };
      for (const s of o.sites.list()) {
        now.up += s.bytesUp;
        now.down += s.bytesDown;
        now.reused += s.bytesReused;
      }
      if (now.up > seen.up) bytes.inc({ direction: 'up' }, now.up - seen.up);
      if (now.down > seen.down) bytes.inc({ direction: 'down' }, now.down - seen.down);
      if (now.reused > seen.reused) reused.inc(now.reused - seen.reused);
      seen = { up: Math.max(seen.up, now.up), down: Math.max(seen.down, now.down), reused: Math.max(seen.reused, now.reused) };
    };
    bytes.inc({ direction: 'up' }, 0);
    bytes.inc({ direction: 'down' }, 0);
    rounds.inc({ outcome: 'committed' }, 0);
    rounds.inc({ outcome: 'aborted' }, 0);
    o.bus.subscribe((e) => {
      if (e.kind === 'round.committed') rounds.inc({ outcome: 'committed' });
      else if (e.kind === 'round.aborted') rounds.inc({ outcome: 'aborted' });
      if (e.kind === 'round.committed' || e.kind === 'upload.done') syncBytes();
    });
    o.timeline.onPhaseEnded((span) => phases.observe({ phase: span.phase }, ((span.endedMs ?? span.startedMs) - span.startedMs) / 1000));
    this.syncBytes = syncBytes;
  }

  private readonly syncBytes: () => void;

  /** Counts one refused caller (coordinator/observe/refusals.ts reports them). */
  countRefused(reason: RefusalReason): void {
    this.refused.inc({ reason });
  }

  /** The text exposition of every metric. */
  async text(): Promise<string> {
    this.syncBytes();
    return this.registry.metrics();
  }

  /** A server interceptor counting open streams and calls that end in an error status. */
  readonly interceptor: grpc.ServerInterceptor = (method, call) => {
    const streaming = method.requestStream || method.responseStream;
    const name = method.path.slice(method.path.lastIndexOf('/') + 1);
    let open = false;
    const finish = (): void => {
      if (open) this.activeStreams.dec({ method: name });
      open = false;
    };
    return new grpc.ServerInterceptingCall(call, {
      start: (next) => {
        if (streaming) {
          open = true;
          this.activeStreams.inc({ method: name });
        }
        next({
          onCancel: () => finish(),
        });
      },
      sendStatus: (status, next) => {
        if (status.code !== undefined && status.code !== grpc.status.OK) {
          // Coordinator errors carry their fedhpc code as the details' prefix (errors.ts).
          const code = /^([A-Z_]+): /.exec(status.details ?? '')?.[1] ?? 'NONE';
          this.errors.inc({ status: grpc.status[status.code] ?? String(status.code), code });
        }
        finish();
        next(status);
      },
    });
  };
}
