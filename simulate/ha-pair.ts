/**
 * `fedhpc simulate --coordinators 2 --nats-cluster 3` (issue 19): a standby coordinator pair on one
 * machine — a 3-node NATS JetStream cluster on loopback, two coordinator processes with `ha` sharing
 * one checkpoint dir (the shared filesystem a real pair needs) — and, with a kill point armed in the
 * first leader (coordinator/core/crash-points.ts, the coordinator's counterpart of a site's
 * `--die-at`), the failover it shows: when the leader was killed, how long until the standby served,
 * and from the replicated journal, that no committed round was lost or repeated.
 */
import type { ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { connect } from '@nats-io/transport-node';
import { journalStreamName, journalSubject, noLeaderAnswered, readJournalChain, type AdminClient, type CrashPoint, type LeaseOptions } from '../coordinator/index.js';
import { freeLoopbackPort } from '../common/net.js';
import type { CoordinatorEndpoint } from './federation-files.js';
import { startNatsCluster, type NatsCluster } from './nats-cluster.js';

/** The pair's lease: TTL, renewal interval and the margin a leader stops serving before the TTL. */
export type PairLease = Pick<LeaseOptions, 'ttlMs' | 'renewMs' | 'marginMs'>;

/** A lease short enough for a demo (the product's default TTL is 20 s): a failover in about 5 s. */
export const DEMO_LEASE: PairLease = { ttlMs: 4000, renewMs: 500, marginMs: 1500 };

/** A standby pair for `simulate`. */
export interface PairOptions {
  /** The NATS cluster's size: 3, a quorum that survives the loss of one node. */
  readonly natsNodes: 3;
  /** The kill point armed in the first leader (`phase.upload`, `commit.before-journal`, …); none: no failover. */
  readonly killLeaderAt?: CrashPoint | undefined;
  /** Default {@link DEMO_LEASE}. */
  readonly lease?: PairLease | undefined;
  /**
   * The sites' uploads: chunk size and rate per site (their config's `transfer`), so a small
   * model's upload lasts long enough for `upload.half` to cut it (the failover bench).
   */
  readonly siteTransfer?: { readonly chunkBytes: number; readonly uploadRateBytesPerS: number } | undefined;
}

/** A change of leader, as `simulate` reports it (`--json`: one `{"type":"leader",…}` line each). */
export interface LeaderChange {
  readonly type: 'leader';
  /** The coordinator now leading, its lease term and the address it serves. */
  readonly holder: string;
  readonly term: number;
  /** The leader it replaced, where it had one. */
  readonly previous?: string;
  /** The kill point the previous leader died at, and the last round opened before it did. */
  readonly killedAt?: string;
  readonly round?: number;
  /** Seconds from the previous leader's death to the first admin call the new one answered. */
  readonly failoverS?: number;
  readonly leaseTtlS: number;
}

/** What the replicated journal says about the run, at its end. */
export interface PairSummary {
  readonly leaderChanges: number;
  readonly failoverS: number | undefined;
  /** Round numbers of the chain's `round-committed` records, in order. */
  readonly committedRounds: number[];
  /** Rounds announced committed (events) that the chain does not hold. */
  readonly committedRoundsLost: number;
  /** `round-committed` records beyond the first for their round. */
  readonly roundsRepeated: number;
  readonly leaseTtlS: number;
  /** Upload bytes a new attempt kept from an interrupted one (the chain's `bytesReused`, summed). */
  readonly bytesReused: number;
  /** Upload bytes the first leader had received when it died at `upload.half` (its last log line says); undefined otherwise. */
  readonly bytesBeforeKill: number | undefined;
}

/** The two coordinators' endpoints on free loopback ports: `coord-a` leads first. */
export async function pairEndpoints(): Promise<CoordinatorEndpoint[]> {
  const out: CoordinatorEndpoint[] = [];
  for (const name of ['coord-a', 'coord-b']) {
    const port = await freeLoopbackPort();
    out.push({ name, address: `localhost:${port}`, listen: `127.0.0.1:${port}` });
  }
  return out;
}

/**
 * Starts the NATS cluster and adds `nats` and `ha` to each coordinator's config, every one with
 * `stateDir` the same folder (checkpoints and spools on shared storage; the journal in JetStream),
 * and the pair's `siteTransfer` to each site's.
 */
export async function configurePair(o: {
  configs: ReadonlyMap<string, string>;
  endpoints: readonly CoordinatorEndpoint[];
  stateDir: string;
  lease: PairLease;
  /** With `siteTransfer`, each site's config gets it as its `transfer`. */
  siteConfigs?: ReadonlyMap<string, string>;
  siteTransfer?: PairOptions['siteTransfer'];
}): Promise<NatsCluster> {
  for (const file of o.siteTransfer ? (o.siteConfigs?.values() ?? []) : []) {
    const config = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    await writeFile(file, `${JSON.stringify({ ...config, transfer: { ...(config['transfer'] as object | undefined), ...o.siteTransfer } }, null, 2)}\n`, { mode: 0o600 });
  }
  const cluster = await startNatsCluster(3);
  try {
    for (const e of o.endpoints) {
      const file = o.configs.get(e.name);
      if (file === undefined) throw new Error(`no config written for coordinator ${e.name}`);
      const config = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
      const ha = { name: e.name, advertise: e.address, lease: o.lease, replicas: 3 };
      await writeFile(file, `${JSON.stringify({ ...config, stateDir: o.stateDir, nats: { url: cluster.urls.join(',') }, ha }, null, 2)}\n`, { mode: 0o600 });
    }
    return cluster;
  } catch (err) {
    await cluster.stop();
    throw err;
  }
}

/**
 * Resolves once a coordinator answers `admin.status()` as the leader (no later than `deadlineMs`),
 * retrying every 100 ms: a failover has no event to wait for, its end is the first call served.
 */
export async function waitForLeader(admin: AdminClient, deadlineMs: number, signal: AbortSignal): Promise<void> {
  for (;;) {
    signal.throwIfAborted();
    try {
      const s = await admin.status();
      if (s.runId) return;
    } catch (err) {
      if (!noLeaderAnswered(err)) throw err;
    }
    if (Date.now() > deadlineMs) throw new Error('no coordinator of the pair answered as the leader before the deadline');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The leader records and committed rounds of the federation's replicated journal. */
export async function readPairJournal(urls: readonly string[], federation: string): Promise<{ leaders: { holder: string; term: number }[]; committed: number[]; bytesReused: number }> {
  const nc = await connect({ servers: [...urls] });
  try {
    const { records } = await readJournalChain(nc, { stream: journalStreamName(federation), subject: journalSubject(federation), timeoutMs: 20_000 });
    const leaders = records.filter((r) => r.body.type === 'leader').map((r) => ({ holder: String(r.body['holder']), term: Number(r.body['term']) }));
    const commits = records.filter((r) => r.body.type === 'round-committed');
    const committed = commits.map((r) => Number(r.body['round']));
    return { leaders, committed, bytesReused: commits.reduce((sum, r) => sum + Number(r.body['bytesReused'] ?? 0), 0) };
  } finally {
    await nc.close();
  }
}

/** Counts rounds lost (announced, not in the chain) and repeated (committed twice) against the chain. */
export function pairSummary(o: {
  committed: readonly number[];
  announced: ReadonlySet<number>;
  leaders: number;
  failoverS: number | undefined;
  lease: PairLease;
  bytesReused: number;
  bytesBeforeKill: number | undefined;
}): PairSummary {
  const inChain = new Set(o.committed);
  return {
    leaderChanges: Math.max(0, o.leaders - 1),
    failoverS: o.failoverS,
    committedRounds: [...o.committed],
    committedRoundsLost: [...o.announced].filter((r) => !inChain.has(r)).length,
    roundsRepeated: o.committed.length - inChain.size,
    leaseTtlS: o.lease.ttlMs / 1000,
    bytesReused: o.bytesReused,
    bytesBeforeKill: o.bytesBeforeKill,
  };
}

/** A coordinator process of the pair, as `simulate` started it. */
export interface PairPart {
  readonly name: string;
  readonly child: ChildProcess;
  readonly log: string;
}

export interface PairSupervisorOptions {
  readonly endpoints: readonly CoordinatorEndpoint[];
  readonly configs: ReadonlyMap<string, string>;
  readonly federation: string;
  readonly natsUrls: readonly string[];
  readonly pair: PairOptions;
  readonly lease: PairLease;
  /** A client given both coordinators' addresses. */
  readonly admin: AdminClient;
  /** Starts `fedhpc coordinator --config FILE` as a part named `name`, with `env` added. */
  readonly start: (name: string, config: string, env: Readonly<Record<string, string>>) => Promise<PairPart>;
  readonly emit: (change: LeaderChange) => void;
  /** Makes the error `died` rejects with. */
  readonly error: (message: string) => Error;
  readonly signal: AbortSignal;
}

/**
 * Starts the pair — the first coordinator, armed with the kill point, then once it leads the second
 * — and plays the supervisor a real pair has: the leader killed at its kill point is restarted, as
 * a standby. Any other exit of a coordinator rejects `died`.
 */
export class PairSupervisor {
  readonly parts: PairPart[] = [];
  /** Rejects when a coordinator exits other than at the armed kill point. */
  readonly died: Promise<never>;
  private fail: (err: Error) => void = () => undefined;
  private killed = false;
  private stopping = false;
  private failoverS: number | undefined;
  private bytesBeforeKill: number | undefined;
  private lastRound: number | undefined;
  private readonly announced = new Set<number>();

  private constructor(private readonly o: PairSupervisorOptions) {
    this.died = new Promise<never>((_, reject) => (this.fail = reject));
    this.died.catch(() => undefined);
  }

  /** Starts both coordinators; resolves once the first leads and the second stands by. */
  static async start(o: PairSupervisorOptions): Promise<PairSupervisor> {
    const s = new PairSupervisor(o);
    const [first, second] = o.endpoints;
    if (!first || !second) throw o.error('a pair has two coordinators');
    const armed: Record<string, string> = o.pair.killLeaderAt ? { FEDHPC_CRASH_AT: o.pair.killLeaderAt } : {};
    try {
      await s.spawn(first.name, first.name, armed);
      await Promise.race([waitForLeader(o.admin, Date.now() + 60_000, o.signal), s.died]);
      await s.announceLeader({});
      await s.spawn(second.name, second.name, {});
      return s;
    } catch (err) {
      // The caller never gets the parts to stop: stop them here.
      s.stop();
      for (const p of s.parts) p.child.kill('SIGKILL');
      throw err;
    }
  }

  /** Follows the run's events: the round a kill falls in, and the rounds announced committed. */
  onEvent(kind: string, body: Record<string, unknown>): void {
    if (kind === 'round.opened') this.lastRound = Number(body['round']);
    if (kind === 'round.committed') this.announced.add(Number(body['round']));
  }

  /** No exit is a failure from now on: the simulation is stopping its parts. */
  stop(): void {
    this.stopping = true;
  }

  /** Reads the replicated journal: leader changes, and committed rounds lost or repeated. */
  async summary(): Promise<PairSummary> {
    const j = await readPairJournal(this.o.natsUrls, this.o.federation);
    return pairSummary({ committed: j.committed, announced: this.announced, leaders: j.leaders.length, failoverS: this.failoverS, lease: this.o.lease, bytesReused: j.bytesReused, bytesBeforeKill: this.bytesBeforeKill });
  }

  private async spawn(name: string, endpoint: string, env: Readonly<Record<string, string>>): Promise<void> {
    const config = this.o.configs.get(endpoint);
    if (config === undefined) throw this.o.error(`no config for coordinator ${endpoint}`);
    const part = await this.o.start(name, config, env);
    this.parts.push(part);
    const armed = env['FEDHPC_CRASH_AT'] !== undefined;
    part.child.once('exit', (code, sig) => {
      if (this.stopping) return;
      if (armed && sig === 'SIGKILL' && !this.killed) {
        this.killed = true;
        void bytesAtKill(part.log).then((n) => (this.bytesBeforeKill = n));
        this.failover(endpoint, Date.now()).catch((err: unknown) => this.fail(err instanceof Error ? err : this.o.error(String(err))));
        return;
      }
      this.fail(this.o.error(`coordinator ${name} exited (${code ?? sig}); see ${part.log}`));
    });
  }

  /** The leader died at its kill point: time the standby's takeover, then restart the dead one as a standby. */
  private async failover(dead: string, killedAtMs: number): Promise<void> {
    // Round 1 may open before the event stream does: a committed round's successor is open too.
    const round = Math.max(this.lastRound ?? 1, Math.max(0, ...this.announced) + 1);
    await waitForLeader(this.o.admin, killedAtMs + this.o.lease.ttlMs + 60_000, this.o.signal);
    this.failoverS = (Date.now() - killedAtMs) / 1000;
    await this.announceLeader({ previous: dead, killedAt: this.o.pair.killLeaderAt, round, failoverS: this.failoverS });
    await this.spawn(`${dead}-restarted`, dead, {});
  }

  private async announceLeader(extra: Partial<LeaderChange>): Promise<void> {
    const { leaders } = await readPairJournal(this.o.natsUrls, this.o.federation);
    const last = leaders.at(-1);
    if (!last) throw this.o.error('a coordinator leads but the replicated journal holds no leader record');
    this.o.emit({ type: 'leader', holder: last.holder, term: last.term, ...extra, leaseTtlS: this.o.lease.ttlMs / 1000 });
  }
}

/** The upload bytes a coordinator killed at `upload.half` had received: its log's last word before the kill. */
async function bytesAtKill(log: string): Promise<number | undefined> {
  const text = await readFile(log, 'utf8').catch(() => '');
  const line = text.split('\n').find((l) => l.includes('"kill point upload.half reached"'));
  if (line === undefined) return undefined;
  const bytes = (JSON.parse(line) as { bytesUp?: unknown }).bytesUp;
  return typeof bytes === 'number' ? bytes : undefined;
}
