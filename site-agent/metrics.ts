/**
 * The site agent's Prometheus metrics, on a registry of its own: connection state and contact
 * age, rounds trained, bytes moved, and errors by code. Served over HTTP
 * only when the site config has `metrics` (see common/metrics-http.ts).
 */
import { Counter, Gauge, Registry } from 'prom-client';

/** Metric families of one agent; the agent calls the methods where things happen. */
export class AgentMetrics {
  readonly registry = new Registry();
  private readonly connectedGauge: Gauge;
  private readonly rounds: Counter;
  private readonly bytes: Counter<'direction'>;
  private readonly errors: Counter<'code'>;
  private readonly modelWait: Counter;
  private lastContactMs: number | undefined;

  constructor(site: string, private readonly now: () => number = Date.now) {
    this.registry.setDefaultLabels({ site });
    const registers = [this.registry];
    this.connectedGauge = new Gauge({ name: 'fedhpc_agent_connected', help: '1 while the agent holds its task stream', registers });
    this.rounds = new Counter({ name: 'fedhpc_agent_rounds_trained_total', help: 'Round shards trained and uploaded', registers });
    this.bytes = new Counter({ name: 'fedhpc_agent_bytes_total', help: 'Model bytes moved, by direction', labelNames: ['direction'] as const, registers });
    this.errors = new Counter({ name: 'fedhpc_agent_errors_total', help: 'Failures, by code', labelNames: ['code'] as const, registers });
    this.modelWait = new Counter({
      name: 'fedhpc_agent_model_wait_seconds_total',
      help: 'Seconds training allocations held their nodes idle waiting for the global model (Slurm jobs submitted ahead)',
      registers,
    });
    const self = this;
    new Gauge({
      name: 'fedhpc_agent_last_contact_age_seconds',
      help: 'Seconds since the coordinator last answered (-1: never)',
      registers,
      collect() {
        this.set(self.lastContactMs === undefined ? -1 : (self.now() - self.lastContactMs) / 1000);
      },
    });
    this.bytes.inc({ direction: 'up' }, 0);
    this.bytes.inc({ direction: 'down' }, 0);
  }

  connected(on: boolean): void {
    this.connectedGauge.set(on ? 1 : 0);
    if (on) this.contact();
  }

  contact(): void {
    this.lastContactMs = this.now();
  }

  roundTrained(): void {
    this.rounds.inc();
  }

  moved(direction: 'up' | 'down', bytes: number): void {
    if (bytes > 0) this.bytes.inc({ direction }, bytes);
  }

  /** A shard's job waited `ms` for its model before training (idle, not busy). */
  modelWaited(ms: number): void {
    if (ms > 0) this.modelWait.inc(ms / 1000);
  }

  failed(code: string | number | undefined): void {
    this.errors.inc({ code: String(code ?? 'UNKNOWN') });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
