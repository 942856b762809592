/**
 * What the failover bench's load mode watches in a standby pair while its sites upload (issue 19),
 * each from outside the coordinators so that a stalled leader cannot hide its own stall:
 * - the leader's `admin status` every {@link SAMPLE_MS}: its term and the age of its lease's last
 *   acknowledged renewal (the `ha` block), and how long the call took;
 * - the lease key in the NATS bucket, through a KV watch: every renewal the leader's writes store,
 *   so the gaps between renewals and how long each took to be stored (the key's store time minus
 *   the renewal's own stamp, one clock on loopback);
 * - each coordinator's Prometheus endpoint every {@link SAMPLE_MS}: its event-loop delay (prom-client's
 *   `monitorEventLoopDelay` histogram, reset at each scrape, so each sample is its own interval) and
 *   the upload bytes it counted;
 * - the admin event stream: phases, committed rounds and `leader.elected`;
 * - afterwards, the sites' own logs: when each upload ran ({@link siteUploads}).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { leaseBucket, type AdminClient, type AdminEvent, type LeaseHolder } from '../../coordinator/index.js';
import { followEvents } from '../../coordinator/index.js';
import { waitForLeader } from '../../simulate/index.js';

/** How often status and metrics are sampled. */
export const SAMPLE_MS = 2_000;

/** A renewal of the lease key as the bucket stored it. */
export interface RenewalSeen {
  readonly holder: string;
  readonly term: number;
  /** The holder's stamp when it sent the renewal, and the bucket's store time, ms since the epoch. */
  readonly sentMs: number;
  readonly storedMs: number;
}

/** A committed round as its event reported it. */
export interface RoundSeen {
  readonly round: number;
  readonly atMs: number;
  readonly bytesUp: number;
  readonly bytesDown: number;
}

/** A phase the leader entered. */
export interface PhaseSeen {
  readonly round: number;
  readonly phase: string;
  readonly atMs: number;
}

/** The extremes and counts seen so far. */
export interface PairWatchFigures {
  readonly statusSamples: number;
  /** Samples whose call failed (no leader answered within the admin client's deadline). */
  readonly statusFailures: number;
  readonly maxLeaseAgeMs: number;
  readonly maxStatusMs: number;
  /** Every (holder, term) the status samples named, in order of first sight. */
  readonly statusLeaders: string[];
  /** Terms announced by `leader.elected` (each event stream opens with the current one). */
  readonly electedTerms: number[];
  readonly renewals: readonly RenewalSeen[];
  readonly committed: readonly RoundSeen[];
  /** Every phase entered, in order (a phase ends where the next begins). */
  readonly phases: readonly PhaseSeen[];
  /** Per coordinator: the largest event-loop delay and the largest per-interval p99, seconds. */
  readonly loopLagMaxS: ReadonlyMap<string, number>;
  readonly loopLagP99MaxS: ReadonlyMap<string, number>;
  readonly metricsScrapes: number;
}

/** The value of a metric line `name{labels} value` whose labels contain `label` (any when absent). */
export function metricValue(text: string, name: string, label?: string): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (label !== undefined && !line.includes(label)) continue;
    const v = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(v)) return v;
  }
  return undefined;
}

/** Follows one pair until stopped; {@link figures} reads what it saw. */
export class PairWatch {
  private readonly stop = new AbortController();
  private readonly tasks: Promise<void>[] = [];
  private statusSamples = 0;
  private statusFailures = 0;
  private maxLeaseAgeMs = 0;
  private maxStatusMs = 0;
  private readonly statusLeaders: string[] = [];
  private readonly electedTerms: number[] = [];
  private readonly renewals: RenewalSeen[] = [];
  private readonly committed: RoundSeen[] = [];
  private readonly phases: PhaseSeen[] = [];
  private readonly lagMax = new Map<string, number>();
  private readonly lagP99 = new Map<string, number>();
  private metricsScrapes = 0;
  /** Per coordinator, the last upload-byte count its endpoint gave. */
  readonly bytesUp = new Map<string, number>();

  constructor(
    private readonly o: {
      readonly admin: AdminClient;
      readonly nc: NatsConnection;
      readonly federation: string;
      /** Each coordinator's metrics port, by name. */
      readonly metricsPorts: ReadonlyMap<string, number>;
      readonly onEvent: (e: AdminEvent) => void;
      readonly log: (line: string) => void;
    },
  ) {}

  /** Starts every watcher; resolves once the lease key's watch is open. */
  async start(): Promise<void> {
    const signal = this.stop.signal;
    const kv = await new Kvm(this.o.nc).open(leaseBucket(this.o.federation));
    const renewals = await kv.watch({ key: 'leader' });
    signal.addEventListener('abort', () => renewals.stop(), { once: true });
    this.tasks.push(
      (async () => {
        for await (const e of renewals) {
          if (e.operation !== 'PUT' || e.length === 0) continue;
          const held = e.json<LeaseHolder>();
          this.renewals.push({ holder: held.holder, term: held.term === 0 ? e.revision : held.term, sentMs: held.renewedMs, storedMs: e.created.getTime() });
        }
      })(),
    );
    const reconnect = (): Promise<void> => waitForLeader(this.o.admin, Date.now() + 120_000, signal);
    this.tasks.push(followEvents(this.o.admin, (e) => this.onEvent(e), reconnect, signal).catch((err: unknown) => this.o.log(`  event stream ended: ${(err as Error).message}`)));
    this.tasks.push(this.every(() => this.sampleStatus()));
    this.tasks.push(this.every(() => this.scrapeAll()));
  }

  /** Runs `sample` now and every {@link SAMPLE_MS} until stopped, one at a time. */
  private async every(sample: () => Promise<void>): Promise<void> {
    const signal = this.stop.signal;
    while (!signal.aborted) {
      const next = Date.now() + SAMPLE_MS;
      await sample();
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, Math.max(0, next - Date.now()));
        function done(): void {
          clearTimeout(t);
          signal.removeEventListener('abort', done);
          resolve();
        }
        signal.addEventListener('abort', done, { once: true });
      });
    }
  }

  /** One status sample: who leads, its lease's age, the call's latency. */
  async sampleStatus(): Promise<void> {
    const t0 = Date.now();
    try {
      const s = await this.o.admin.status();
      const ms = Date.now() - t0;
      this.statusSamples++;
      this.maxStatusMs = Math.max(this.maxStatusMs, ms);
      if (!s.ha) return;
      const leader = `${s.ha.name}@${s.ha.term}`;
      if (!this.statusLeaders.includes(leader)) this.statusLeaders.push(leader);
      this.maxLeaseAgeMs = Math.max(this.maxLeaseAgeMs, Number(s.ha.leaseAgeMs));
    } catch (err) {
      this.statusFailures++;
      this.o.log(`  status failed after ${Date.now() - t0} ms: ${(err as Error).message}`);
    }
  }

  /** Scrapes every coordinator's metrics (a standby serves none: its failure is expected). */
  async scrapeAll(): Promise<void> {
    await Promise.all(
      [...this.o.metricsPorts].map(async ([name, port]) => {
        const text = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(SAMPLE_MS) }).then(
          (r) => (r.ok ? r.text() : undefined),
          () => undefined,
        );
        if (text === undefined) return;
        this.metricsScrapes++;
        const max = metricValue(text, 'nodejs_eventloop_lag_max_seconds');
        const p99 = metricValue(text, 'nodejs_eventloop_lag_p99_seconds');
        const up = metricValue(text, 'fedhpc_bytes_total', 'direction="up"');
        if (max !== undefined) this.lagMax.set(name, Math.max(this.lagMax.get(name) ?? 0, max));
        if (p99 !== undefined) this.lagP99.set(name, Math.max(this.lagP99.get(name) ?? 0, p99));
        if (up !== undefined) this.bytesUp.set(name, up);
      }),
    );
  }

  private onEvent(e: AdminEvent): void {
    const round = Number(e.body['round']);
    if (e.kind === 'leader.elected') {
      const term = Number(e.body['term']);
      if (!this.electedTerms.includes(term)) this.electedTerms.push(term);
    } else if (e.kind === 'phase.changed') {
      this.phases.push({ round, phase: String(e.body['phase']), atMs: e.ts });
    } else if (e.kind === 'round.committed') {
      this.committed.push({ round, atMs: e.ts, bytesUp: Number(e.body['bytesUp']), bytesDown: Number(e.body['bytesDown']) });
    }
    this.o.onEvent(e);
  }

  /** What was seen so far. */
  figures(): PairWatchFigures {
    return {
      statusSamples: this.statusSamples,
      statusFailures: this.statusFailures,
      maxLeaseAgeMs: this.maxLeaseAgeMs,
      maxStatusMs: this.maxStatusMs,
      statusLeaders: [...this.statusLeaders],
      electedTerms: [...this.electedTerms],
      renewals: [...this.renewals],
      committed: [...this.committed],
      phases: [...this.phases],
      loopLagMaxS: new Map(this.lagMax),
      loopLagP99MaxS: new Map(this.lagP99),
      metricsScrapes: this.metricsScrapes,
    };
  }

  /** Stops every watcher and waits for them. */
  async close(): Promise<void> {
    this.stop.abort();
    await Promise.all(this.tasks.map((t) => t.catch(() => undefined)));
  }
}

/** The renewals' gaps (between consecutive renewals of one term) and store latencies, in ms. */
export function renewalGaps(renewals: readonly RenewalSeen[]): { gapsMs: number[]; storeMs: number[] } {
  const gapsMs: number[] = [];
  const storeMs: number[] = [];
  for (const [i, r] of renewals.entries()) {
    storeMs.push(r.storedMs - r.sentMs);
    const prev = renewals[i - 1];
    if (prev && prev.term === r.term) gapsMs.push(r.sentMs - prev.sentMs);
  }
  return { gapsMs, storeMs };
}

/** One upload as its site logged it: when it ended, how long it ran, its bytes. */
export interface SiteUpload {
  readonly site: string;
  readonly endMs: number;
  readonly seconds: number;
  readonly bytes: number;
}

/**
 * The uploads the sites' logs (`<logDir>/<site>.log`, the agent's JSON lines) record as finished:
 * the agent times each one itself, from its first byte sent to its last acknowledgement.
 */
export async function siteUploads(logDir: string, sites: readonly string[]): Promise<SiteUpload[]> {
  const out: SiteUpload[] = [];
  for (const site of sites) {
    const text = await readFile(join(logDir, `${site}.log`), 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      if (!line.includes('"upload finished"')) continue;
      let j: { time?: unknown; seconds?: unknown; bytes?: unknown; msg?: unknown };
      try {
        j = JSON.parse(line) as typeof j;
      } catch {
        continue;
      }
      if (j.msg === 'upload finished' && typeof j.time === 'number' && typeof j.seconds === 'number' && typeof j.bytes === 'number') out.push({ site, endMs: j.time, seconds: j.seconds, bytes: j.bytes });
    }
  }
  return out;
}

/**
 * Over the window [fromMs, toMs]: how long at least one site was uploading (the union of the
 * uploads' spans), how long all `sites` were at once, and the bytes of the uploads inside it
 * (an upload cut by the window's edge counts in proportion).
 */
export function uploadCover(uploads: readonly SiteUpload[], sites: number, fromMs: number, toMs: number): { anyS: number; allS: number; bytes: number } {
  const edges: { t: number; d: number }[] = [];
  let bytes = 0;
  for (const u of uploads) {
    const start = u.endMs - u.seconds * 1000;
    const a = Math.max(start, fromMs);
    const b = Math.min(u.endMs, toMs);
    if (b <= a) continue;
    bytes += u.seconds > 0 ? (u.bytes * (b - a)) / (u.seconds * 1000) : u.bytes;
    edges.push({ t: a, d: 1 }, { t: b, d: -1 });
  }
  edges.sort((x, y) => x.t - y.t || x.d - y.d);
  let open = 0;
  let anyMs = 0;
  let allMs = 0;
  for (const [i, e] of edges.entries()) {
    open += e.d;
    const next = edges[i + 1];
    if (!next) break;
    if (open > 0) anyMs += next.t - e.t;
    if (open >= sites) allMs += next.t - e.t;
  }
  return { anyS: anyMs / 1000, allS: allMs / 1000, bytes };
}
