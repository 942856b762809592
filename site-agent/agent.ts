/**
 * The site agent's connection loop: dials out to the coordinator, joins, follows its task stream
 * and heartbeats, and reconnects with jittered backoff (also, between rounds, to take a renewed
 * certificate into use); refusals that no retry can fix end the agent. Tasks arrive decoded by the
 * wire edge (wire.ts) and go to their workers: train and eval-only tasks to the round jobs
 * (round-job.ts), secure-aggregation stages to secure/stages.ts.
 */
import type * as grpc from '@grpc/grpc-js';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { invariant, nativeKeystreamUnavailable } from '../aggregation/index.js';
import { backoffDelay, sleep } from '../common/backoff.js';
import type { Logger } from '../common/logger.js';
import { readTlsFiles } from '../common/tls.js';
import { PROTOCOL_VERSION } from '../proto/index.js';
import { SiteActivity } from './activity.js';
import { checkCertificateDates, watchCertificate } from './cert-reload.js';
import { createSiteClient } from './client.js';
import { coordinatorAddresses, type ResolvedSiteConfig } from './config.js';
import { SiteAgentError } from './errors.js';
import { faultPoint, type DropPhase } from './faults.js';
import { CoordinatorLink, type TaskStream } from './link.js';
import type { AgentMetrics } from './metrics.js';
import { ReceiptSigner } from './receipt.js';
import { classifyFailure, firstCoordinator, nextCoordinator, type CoordinatorCursor } from './retry.js';
import { clearUploadedShards } from './missed-work.js';
import { RoundJobs } from './round-job.js';
import type { Runner } from './runners/runner.js';
import { SecureStages } from './secure/stages.js';
import { UsageMeter } from './usage.js';
import { wireError, type DecodedTask } from './wire.js';

/** Version the agent reports at `Join`. */
export const AGENT_VERSION = '0.1.0';

/** How often the agent tells the coordinator it is alive, and what it is doing. */
/** Heartbeats when the coordinator names no interval; one it names is followed within the bounds below. */
const HEARTBEAT_INTERVAL_MS = 2_000;
/** A coordinator cannot make a site heartbeat more often than this, nor less often than the next. */
export const HEARTBEAT_BOUNDS_MS = { min: 500, max: 60_000 } as const;

/** The interval to heartbeat at: the coordinator's, within {@link HEARTBEAT_BOUNDS_MS}, else the default. */
export function heartbeatInterval(askedMs: number): number {
  if (!(askedMs > 0)) return HEARTBEAT_INTERVAL_MS;
  return Math.min(HEARTBEAT_BOUNDS_MS.max, Math.max(HEARTBEAT_BOUNDS_MS.min, askedMs));
}

/** What a site agent is made of. */
export interface SiteAgentOptions {
  readonly config: ResolvedSiteConfig;
  readonly runner: Runner;
  readonly logger: Logger;
  readonly random?: () => number;
  /** Protocol version to announce (tests use another to check refusal). */
  readonly protocolVersion?: number;
  /**
   * Fault injection for simulations (`fedhpc simulate --drop SITE@PHASE`): the agent kills its own
   * process with SIGKILL when it reaches this phase, as a crashed node would.
   */
  readonly dieAt?: DropPhase | undefined;
  /** Prometheus metrics of this agent (served by the CLI when configured). */
  readonly metrics?: AgentMetrics | undefined;
}

/** How the loop stands with the coordinator across connections, for backoff, giving up, and which address to dial. */
interface Reach {
  failures: number;
  lastContact: number;
  readonly random: () => number;
  /** The coordinator to dial next, among the configured ones or a leader a standby named. */
  cursor: CoordinatorCursor;
}

/** One site's agent. `run` resolves when `signal` aborts and rejects on a permanent refusal. */
export class SiteAgent {
  /** The latest connection (kept after it closes: work still finishing reports on the newest). */
  private link: CoordinatorLink | undefined;
  /** The heartbeat interval of the current connection (the coordinator's, as {@link heartbeatInterval} bounds it). */
  private heartbeatMs = HEARTBEAT_INTERVAL_MS;
  private readonly activity = new SiteActivity();
  private readonly log: Logger;
  private readonly cacheDir: string;
  private tls: { key: string; ca: string };
  /** The open task stream, and whether it is being closed to reconnect on purpose. */
  private tasks: TaskStream | undefined;
  private certificateChanged = false;
  private recycling = false;
  /** Aborted when the current connection ends: work started for it (an eval-only task) stops then. */
  private connection = new AbortController();
  /** Signs receipts of committed rounds this site contributed to (audit trail). */
  private readonly receipts: ReceiptSigner;
  private readonly jobs: RoundJobs;
  private readonly stages: SecureStages;

  constructor(private readonly o: SiteAgentOptions) {
    this.log = o.logger.child({ site: o.config.site });
    const why = nativeKeystreamUnavailable();
    if (why !== undefined) this.log.info({ why }, 'secure aggregation masks use node:crypto, not the native keystream (the same bytes, about twice the keystream CPU)');
    this.cacheDir = join(o.config.workDir, 'models');
    const tls = readTlsFiles(o.config.tls);
    this.tls = { key: tls.key.toString('utf8'), ca: tls.ca.toString('utf8') };
    const meter = new UsageMeter({
      accounting: (jobs, signal) => (o.runner.accounting ? o.runner.accounting(jobs, signal) : Promise.reject(new Error(`the ${o.runner.kind} runner has no scheduler accounting`))),
    });
    this.receipts = new ReceiptSigner({
      measure: (allocation, folded, final, signal) => meter.measureAll(allocation, folded, final, signal),
      site: o.config.site,
      certificatePem: tls.cert.toString('utf8'),
      keyPem: this.tls.key,
      logger: this.log,
      client: () => this.link?.openClient,
      // A receipt's verdict settles kept work its upload folded: done when counted, kept again when not.
      onVerdict: (c, counted) => void this.jobs.kept().then((k) => k.settle(c, counted)).catch((err: unknown) => this.log.warn({ err: { message: (err as Error).message } }, 'kept work not settled')),
    });
    const link = (): CoordinatorLink => this.currentLink();
    const fault = faultPoint(o.dieAt, this.log);
    const rejoinIfForgotten = (err: unknown, during: string): boolean => this.rejoinIfForgotten(err, during);
    const betweenRounds = (): void => this.maybeReconnectForCertificate();
    this.stages = new SecureStages({
      site: o.config.site,
      log: this.log,
      link,
      tls: () => this.tls,
      readCertificate: () => readTlsFiles(o.config.tls).cert.toString('utf8'),
      fault,
      rejoinIfForgotten,
      onAttemptDone: betweenRounds,
    });
    this.jobs = new RoundJobs({
      config: o.config,
      runner: o.runner,
      log: this.log,
      cacheDir: this.cacheDir,
      activity: this.activity,
      metrics: o.metrics,
      link,
      contributed: (c) => this.receipts.contributed(c),
      secureAttempt: (a) => this.stages.session(a),
      fault,
      rejoinIfForgotten,
      onIdle: betweenRounds,
      receiptsSettled: () => this.receipts.settled(),
    });
  }

  /** Connects, and again after each break, until `signal` aborts or the coordinator refuses for good. */
  async run(signal: AbortSignal): Promise<void> {
    await mkdir(this.cacheDir, { recursive: true });
    // Kept work an earlier run of the agent folded waits for its round's receipt, as if just uploaded.
    for (const c of await (await this.jobs.kept()).pendingContributions()) this.receipts.contributed(c);
    const reach: Reach = { failures: 0, lastContact: Date.now(), random: this.o.random ?? Math.random, cursor: firstCoordinator(coordinatorAddresses(this.o.config)) };
    const watcher = watchCertificate(this.o.config.tls.cert, this.o.config.tls.key, () => {
      this.log.info({ cert: this.o.config.tls.cert }, 'site certificate file changed: reconnecting with it between rounds');
      this.certificateChanged = true;
      this.maybeReconnectForCertificate();
    }, (why) => this.log.warn({ why }, 'certificate file changed but cannot be used; keeping the current one'));
    try {
      while (!signal.aborted) {
        const retryInMs = await this.connectOnce(signal, reach);
        if (retryInMs === undefined) break;
        await sleep(retryInMs, signal).catch(() => undefined);
      }
    } finally {
      // Also on a refusal that ends the agent: no watcher, and no shard finishing for a keep, outlives run().
      watcher.close();
      await this.jobs.stopAll('the agent is stopping');
    }
  }

  /**
   * One connection, from Join to the end of its task stream. Returns how long to wait before the
   * next one (undefined: `signal` aborted, stop); throws when no retry can help.
   */
  private async connectOnce(signal: AbortSignal, reach: Reach): Promise<number | undefined> {
    // Each connection reads the TLS files afresh: a renewed certificate is used from here on.
    const tls = readTlsFiles(this.o.config.tls);
    checkCertificateDates(tls.cert, this.o.config.tls.cert);
    let retryInMs = backoffDelay(this.o.config.reconnect, reach.failures, reach.random);
    this.tls = { key: tls.key.toString('utf8'), ca: tls.ca.toString('utf8') };
    // The address being dialled is the TLS server name checked (unless `serverName` says otherwise):
    // a leader a standby named is usable only with a coordinator certificate of the federation for it.
    const address = reach.cursor.current;
    const link = new CoordinatorLink(createSiteClient({ ...this.o.config, coordinator: address }), address);
    this.link = link;
    this.connection = new AbortController();
    try {
      await this.join(link, signal, address);
      this.o.metrics?.connected(true);
      reach.failures = 0;
      reach.lastContact = Date.now();
      // A leader reached by a hint is followed at once again when a later standby names another.
      reach.cursor = { ...reach.cursor, followed: false };
      await this.followTasks(link, signal);
    } catch (err) {
      if (signal.aborted) return undefined;
      retryInMs = this.retryDelay(err, reach);
    } finally {
      this.o.metrics?.connected(false);
      this.jobs.stop('disconnected');
      this.connection.abort(new SiteAgentError('CANCELLED', 'disconnected', false));
      link.close();
    }
    return retryInMs;
  }

  /** After a failed connection: the wait before the next try, or the error that ends the agent. */
  private retryDelay(err: unknown, reach: Reach): number {
    const code = (err as grpc.ServiceError).code;
    this.o.metrics?.failed((err as { code?: string | number }).code);
    // The coordinator's verdict decides (site-agent/retry.ts): NOT_JOINED is retried by joining
    // again, which the next connection does; PROTOCOL_VERSION and the like end the agent.
    const verdict = classifyFailure(err);
    if (!verdict.retryable) {
      if (err instanceof SiteAgentError) throw err;
      throw new SiteAgentError('REFUSED', `coordinator refused this agent: ${verdict.reason}`, false, { code: verdict.code }, { cause: err });
    }
    const giveUp = this.o.config.giveUpAfterS;
    if (giveUp > 0 && Date.now() - reach.lastContact > giveUp * 1000) {
      throw new SiteAgentError('UNREACHABLE', `no contact with ${reach.cursor.addresses.join(', ')} for ${giveUp} s: ${(err as Error).message}`, false);
    }
    // Which coordinator next: a leader a standby named, the next configured one, or the same (retry.ts).
    const from = reach.cursor.current;
    const next = nextCoordinator(reach.cursor, verdict);
    reach.cursor = next.cursor;
    if (next.cursor.current !== from) {
      this.log.info({ phase: 'join', coordinator: next.cursor.current, from, why: next.why, code: verdict.code, waitsBackoff: next.wait === 'backoff' }, next.why.startsWith('leader-named') ? `following the leader ${from} named: ${next.cursor.current}` : `trying the next coordinator address: ${next.cursor.current}`);
    }
    if (next.wait === 'none') return 0;
    let retryInMs = backoffDelay(this.o.config.reconnect, reach.failures++, reach.random);
    // Never sleep past the give-up point: one last try there, then the agent says so and exits.
    if (giveUp > 0) retryInMs = Math.max(0, Math.min(retryInMs, reach.lastContact + giveUp * 1000 - Date.now()));
    this.log.warn({ coordinator: from, next: next.cursor.current, err: { message: (err as Error).message, code }, retryInMs }, 'connection to coordinator lost');
    return retryInMs;
  }

  private async join(link: CoordinatorLink, signal: AbortSignal, coordinator: string): Promise<void> {
    const hello = { protocolVersion: this.o.protocolVersion ?? PROTOCOL_VERSION, siteId: this.o.config.site, agentVersion: AGENT_VERSION };
    const joined = await link.join(hello, signal);
    this.heartbeatMs = heartbeatInterval(joined.heartbeatIntervalMs);
    this.log.info({ phase: 'join', coordinator, federation: joined.federation, coordinatorVersion: joined.coordinatorVersion, heartbeatMs: this.heartbeatMs }, 'joined federation');
  }

  /** Follows the task stream until it ends; heartbeats meanwhile. Resolves only when closed on purpose. */
  private async followTasks(link: CoordinatorLink, signal: AbortSignal): Promise<void> {
    const stream = link.openTasks((task) => this.onTask(task));
    this.tasks = stream;
    const heartbeat = setInterval(() => this.heartbeat(), this.heartbeatMs);
    const onAbort = (): void => stream.cancel();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      const end = await stream.closed;
      if (end.how === 'error' && this.recycling) return;
      throw end.how === 'error' ? end.error : new Error('coordinator closed the task stream');
    } finally {
      this.recycling = false;
      this.tasks = undefined;
      clearInterval(heartbeat);
      signal.removeEventListener('abort', onAbort);
    }
  }

  /**
   * A renewed certificate is taken into use by reconnecting, but only between rounds (nothing to
   * train, upload or unmask), so no round loses this site for it.
   */
  private maybeReconnectForCertificate(): void {
    if (!this.certificateChanged || !this.tasks || this.activity.activity !== 'idle' || this.stages.active) return;
    this.certificateChanged = false;
    this.recycling = true;
    this.log.info('site certificate renewed on disk: reconnecting with it');
    this.tasks.cancel();
  }

  /**
   * Reacts to a failure the coordinator answered NOT_JOINED: it no longer knows this session (it
   * restarted, say), so nothing sent on it can succeed. The agent reconnects and joins again, and
   * the new task stream brings whatever the coordinator still wants from this site. Returns whether
   * it did (false: another verdict, for the caller to handle).
   */
  private rejoinIfForgotten(err: unknown, during: string): boolean {
    const verdict = classifyFailure(err);
    if (!verdict.rejoin) return false;
    this.log.warn({ during, err: { code: verdict.code, message: verdict.reason } }, 'the coordinator does not know this session: joining again');
    // No open stream: the run loop is already reconnecting, and that joins again.
    if (this.tasks) {
      this.recycling = true;
      this.tasks.cancel();
    }
    return true;
  }

  private heartbeat(): void {
    this.maybeReconnectForCertificate();
    this.link?.heartbeat(this.activity.report(), () => this.o.metrics?.contact());
  }

  private onTask(decoded: DecodedTask): void {
    if (!decoded.ok) return this.refuseTask(decoded);
    const task = decoded.value;
    // A kind this agent does not know (a newer coordinator's) is ignored, as proto3 intends.
    if (!task) return;
    // A task's global model is what round `modelRound` committed: time to sign our receipt of it.
    // The run's final round is signed once the run has ended here: a persistent trainer's job then
    // has ended too, and its tail after the last snapshot is that round's usage.
    if (task.kind === 'train') this.receipts.committed(task.runId, task.modelRound, task.globalModel.sha256);
    switch (task.kind) {
      case 'train':
        return this.jobs.start(task);
      case 'eval':
        this.receipts.committed(task.runId, task.modelRound, task.model.sha256, true, this.endRun(task.runId));
        return void this.jobs.evaluateFinal(task, this.connection.signal);
      case 'finished':
        return this.receipts.committed(task.runId, task.modelRound, task.model.sha256, true, this.endRun(task.runId));
      case 'cancel':
        this.stages.cancel(task);
        return this.jobs.cancel(task);
      default:
        return void this.stages.run(task);
    }
  }

  /** The run is over (its final evaluation or `finished` task): its uploaded shards go, and a job submitted ahead for a next round will get no model. */
  private endRun(runId: string): Promise<void> {
    const cleared = clearUploadedShards(this.o.config.workDir, runId);
    return Promise.all([cleared, this.o.runner.endRun?.(runId)]).then(() => undefined).catch((err: unknown) => this.log.warn({ err: { message: (err as Error).message } }, 'could not end the run\'s work (a job submitted ahead, a persistent trainer)'));
  }

  /** A task that breaks the wire contract: refused, and reported when the coordinator waits on its attempt. */
  private refuseTask(refusal: Extract<DecodedTask, { ok: false }>): void {
    const { attempt } = refusal;
    const error = wireError(refusal);
    this.log.error({ round: attempt?.round, err: { code: error.code, message: error.message } }, 'task refused: it breaks the wire contract');
    if (attempt) this.currentLink().reportFailure(attempt, { code: error.code, message: error.message, retryable: error.retryable });
  }

  private currentLink(): CoordinatorLink {
    invariant(this.link !== undefined, 'work for the coordinator starts only once a connection is open');
    return this.link;
  }
}
