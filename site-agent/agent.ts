/**
 * The site agent: dials out to the coordinator, joins, follows its task stream, and for each
 * round downloads the global model, scores it, trains a shard through its runner, and uploads the
 * delta. Reconnects with jittered backoff; refusals that no retry can fix end the agent.
 */
import * as grpc from '@grpc/grpc-js';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { backoffDelay, sleep } from '../common/backoff.js';
import type { Logger } from '../common/logger.js';
import { readTlsFiles } from '../common/tls.js';
import {
  PROTOCOL_VERSION,
  type ConsistencyTask__Output,
  type EvalTask__Output,
  type KeysTask__Output,
  type SharesTask__Output,
  type SiteServiceClient,
  type Task__Output,
  type TrainTask__Output,
  type UnmaskTask__Output,
} from '../proto/index.js';
import { SecureSession, type SecureParams } from './secure/session.js';
import { createSiteClient } from './client.js';
import type { ResolvedSiteConfig } from './config.js';
import { SiteAgentError } from './errors.js';
import { ReceiptSigner } from './receipt.js';
import { classifyFailure } from './retry.js';
import type { Runner } from './runners/runner.js';
import { TransferMeter, stderrSink, wireProgress } from './progress.js';
import { saveTrainedResult, trainedResult, uploadRoundDelta } from './round-upload.js';
import { downloadModel, type TransferPolicy } from './transfer.js';
import { checkCertificateDates, watchCertificate } from './cert-reload.js';
import type { AgentMetrics } from './metrics.js';

/** Version the agent reports at `Join`. */
export const AGENT_VERSION = '0.1.0';

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

/**
 * How long an eval-only task may take when the coordinator names no deadline (the coordinator's
 * default `deadlines.evalS`): no evaluation is waited for without a bound.
 */
const EVAL_DEADLINE_FALLBACK_MS = 600_000;

/** Phases at which `dieAt` can kill the agent. */
export const DROP_PHASES = ['keys', 'shares', 'upload', 'unmask'] as const;
export type DropPhase = (typeof DROP_PHASES)[number];

interface Job {
  readonly key: string;
  readonly abort: AbortController;
  readonly done: Promise<void>;
}

/** One site's agent. `run` resolves when `signal` aborts and rejects on a permanent refusal. */
export class SiteAgent {
  private client: SiteServiceClient | undefined;
  private job: Job | undefined;
  private activity = 'idle';
  private progress = -1;
  /** The transfer in progress, reported with heartbeats. */
  private meter: TransferMeter | undefined;
  private trainLoss = 0;
  private round = 0;
  private readonly log: Logger;
  private readonly cacheDir: string;
  /** Secure-aggregation state of the current attempt only; secrets are never written anywhere. */
  private secure: { key: string; session: SecureSession; params: SecureParams } | undefined;
  private tls: { key: string; ca: string };
  /** The open task stream, and whether it is being closed to reconnect with a renewed certificate. */
  private tasksCall: { cancel(): void } | undefined;
  private certificateChanged = false;
  private recycling = false;
  /** Aborted when the current connection ends: work started for it (an eval-only task) stops then. */
  private connection = new AbortController();
  /** Signs receipts of committed rounds this site contributed to (audit trail). */
  private readonly receipts: ReceiptSigner;

  constructor(private readonly o: SiteAgentOptions) {
    this.log = o.logger.child({ site: o.config.site });
    this.cacheDir = join(o.config.workDir, 'models');
    const tls = readTlsFiles(o.config.tls);
    this.tls = { key: tls.key.toString('utf8'), ca: tls.ca.toString('utf8') };
    this.receipts = new ReceiptSigner({ site: o.config.site, certificatePem: tls.cert.toString('utf8'), keyPem: this.tls.key, logger: this.log, client: () => this.client });
  }

  async run(signal: AbortSignal): Promise<void> {
    await mkdir(this.cacheDir, { recursive: true });
    const random = this.o.random ?? Math.random;
    let failures = 0;
    let lastContact = Date.now();
    const watcher = watchCertificate(this.o.config.tls.cert, this.o.config.tls.key, () => {
      this.log.info({ cert: this.o.config.tls.cert }, 'site certificate file changed: reconnecting with it between rounds');
      this.certificateChanged = true;
      this.maybeReconnectForCertificate();
    }, (why) => this.log.warn({ why }, 'certificate file changed but cannot be used; keeping the current one'));
    try {
      while (!signal.aborted) {
        // Each connection reads the TLS files afresh: a renewed certificate is used from here on.
        const tls = readTlsFiles(this.o.config.tls);
        checkCertificateDates(tls.cert, this.o.config.tls.cert);
        let retryInMs = backoffDelay(this.o.config.reconnect, failures, random);
        this.tls = { key: tls.key.toString('utf8'), ca: tls.ca.toString('utf8') };
        this.client = createSiteClient(this.o.config);
        this.connection = new AbortController();
        try {
          await this.join(signal);
          this.o.metrics?.connected(true);
          failures = 0;
          lastContact = Date.now();
          await this.followTasks(signal);
        } catch (err) {
          if (signal.aborted) break;
          const code = (err as grpc.ServiceError).code;
          this.o.metrics?.failed((err as { code?: string | number }).code);
          // The coordinator's verdict decides (site-agent/retry.ts): NOT_JOINED is retried by
          // joining again, which the next turn of this loop does; PROTOCOL_VERSION and the like end it.
          const verdict = classifyFailure(err);
          if (!verdict.retryable) {
            if (err instanceof SiteAgentError) throw err;
            throw new SiteAgentError('REFUSED', `coordinator refused this agent: ${verdict.reason}`, false, { code: verdict.code }, { cause: err });
          }
          const giveUp = this.o.config.giveUpAfterS;
          if (giveUp > 0 && Date.now() - lastContact > giveUp * 1000) {
            throw new SiteAgentError('UNREACHABLE', `no contact with ${this.o.config.coordinator} for ${giveUp} s: ${(err as Error).message}`, false);
          }
          retryInMs = backoffDelay(this.o.config.reconnect, failures++, random);
          // Never sleep past the give-up point: one last try there, then the agent says so and exits.
          if (giveUp > 0) retryInMs = Math.max(0, Math.min(retryInMs, lastContact + giveUp * 1000 - Date.now()));
          this.log.warn({ err: { message: (err as Error).message, code }, retryInMs }, 'connection to coordinator lost');
        } finally {
          this.o.metrics?.connected(false);
          this.stopJob('disconnected');
          this.connection.abort(new SiteAgentError('CANCELLED', 'disconnected', false));
          this.client.close();
        }
        await sleep(retryInMs, signal).catch(() => undefined);
      }
    } finally {
      // Also on a refusal that ends the agent: no watcher outlives run().
      watcher.close();
    }
  }

  private join(signal: AbortSignal): Promise<void> {
    // The lifetime signal outlives every connection: a listener left on it per Join leaked one
    // closure per reconnect (and Node warned after ten), so it goes when the call settles.
    let onAbort: (() => void) | undefined;
    return new Promise<void>((resolve, reject) => {
      signal.throwIfAborted();
      const deadline = Date.now() + 15_000;
      this.client!.Join(
        { protocolVersion: this.o.protocolVersion ?? PROTOCOL_VERSION, siteId: this.o.config.site, agentVersion: AGENT_VERSION },
        { deadline },
        (err, res) => {
          if (err || !res) return reject(err ?? new Error('empty Join response'));
          this.log.info({ federation: res.federation, coordinatorVersion: res.coordinatorVersion }, 'joined federation');
          resolve();
        },
      );
      onAbort = () => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
    }).finally(() => {
      if (onAbort) signal.removeEventListener('abort', onAbort);
    });
  }

  /** Follows the task stream until it ends; heartbeats meanwhile. */
  private followTasks(signal: AbortSignal): Promise<void> {
    const call = this.client!.Tasks({}, { deadline: Infinity });
    this.tasksCall = call;
    const heartbeat = setInterval(() => this.heartbeat(), 2_000);
    const onAbort = (): void => call.cancel();
    signal.addEventListener('abort', onAbort, { once: true });
    return new Promise<void>((resolve, reject) => {
      call.on('data', (task: Task__Output) => this.onTask(task));
      call.on('error', (err) => (this.recycling ? resolve() : reject(err)));
      call.on('end', () => reject(new Error('coordinator closed the task stream')));
    }).finally(() => {
      this.recycling = false;
      this.tasksCall = undefined;
      clearInterval(heartbeat);
      signal.removeEventListener('abort', onAbort);
    });
  }

  /**
   * A renewed certificate is taken into use by reconnecting, but only between rounds (nothing to
   * train, upload or unmask), so no round loses this site for it.
   */
  private maybeReconnectForCertificate(): void {
    if (!this.certificateChanged || !this.tasksCall || this.activity !== 'idle' || this.secure) return;
    this.certificateChanged = false;
    this.recycling = true;
    this.log.info('site certificate renewed on disk: reconnecting with it');
    this.tasksCall.cancel();
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
    if (this.tasksCall) {
      this.recycling = true;
      this.tasksCall.cancel();
    }
    return true;
  }

  private heartbeat(): void {
    this.maybeReconnectForCertificate();
    this.client?.Heartbeat(
      { activity: this.activity, round: this.round, progress: this.progress, trainLoss: this.trainLoss, transfer: this.meter ? wireProgress(this.meter.snapshot()) : null },
      { deadline: Date.now() + 5_000 },
      (err) => (err ? undefined : this.o.metrics?.contact()),
    );
  }

  private onTask(task: Task__Output): void {
    // A task's global model is what round `modelRound` committed: time to sign our receipt of it.
    const announced = task.train ? { ...task.train, model: task.train.globalModel } : task.eval;
    if (announced) this.receipts.committed(announced.runId, Number(announced.modelRound), announced.model?.sha256 ?? '');
    if (task.kind === 'train' && task.train) {
      const t = task.train;
      const key = `${t.runId}/${t.round}.${t.attempt}`;
      if (this.job?.key === key) return;
      this.stopJob('superseded by a new round task');
      const abort = new AbortController();
      const done = this.trainRound(t, abort.signal).catch((err) => this.reportFailure(t, err, abort.signal));
      this.job = { key, abort, done };
    } else if (task.kind === 'eval' && task.eval) {
      void this.evaluateFinal(task.eval);
    } else if (task.kind === 'cancel' && task.cancel) {
      const c = task.cancel;
      const key = `${c.runId}/${c.round}.${c.attempt}`;
      if (this.secure?.key === key) this.secure = undefined;
      if (this.job?.key === key) {
        this.log.warn({ round: Number(c.round), reason: c.reason }, 'round cancelled by the coordinator');
        this.stopJob(c.reason);
      }
    } else if (task.kind === 'keys' && task.keys) {
      void this.secureStage(task.keys, () => this.onKeys(task.keys!));
    } else if (task.kind === 'shares' && task.shares) {
      void this.secureStage(task.shares, () => this.onShares(task.shares!));
    } else if (task.kind === 'consistency' && task.consistency) {
      void this.secureStage(task.consistency, () => this.onConsistency(task.consistency!));
    } else if (task.kind === 'unmask' && task.unmask) {
      void this.secureStage(task.unmask, () => this.onUnmask(task.unmask!));
    }
  }

  /** Runs one secure stage; a failure is reported so the coordinator drops this site at once. */
  private async secureStage(t: { runId: string; round: string; attempt: number }, fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      if (this.rejoinIfForgotten(err, `secure aggregation step of round ${t.round}`)) return;
      const e = err instanceof SiteAgentError ? err : undefined;
      this.log.error({ round: Number(t.round), err: { code: e?.code ?? (err as grpc.ServiceError).code, message: (err as Error).message } }, 'secure aggregation step failed');
      this.client?.ReportFailure(
        { runId: t.runId, round: t.round, attempt: t.attempt, code: e?.code ?? 'SECURE_STEP_FAILED', message: (err as Error).message, retryable: false },
        { deadline: Date.now() + 10_000 },
        () => undefined,
      );
    }
  }

  private maybeDie(phase: DropPhase): void {
    if (this.o.dieAt !== phase) return;
    this.log.warn({ phase }, 'fault injection: killing this agent');
    process.kill(process.pid, 'SIGKILL');
  }

  private unary(call: (cb: (err: grpc.ServiceError | null) => void) => void): Promise<void> {
    return new Promise((resolve, reject) => call((err) => (err ? reject(err) : resolve())));
  }

  /** Round 0: fresh key pairs for this attempt, advertised with the certificate's signature. */
  private async onKeys(t: KeysTask__Output): Promise<void> {
    this.maybeDie('keys');
    const p = t.params!;
    const params: SecureParams = {
      threshold: p.threshold,
      quantBits: p.quantBits,
      modulusBits: p.modulusBits === 16 ? 16 : 32,
      clip: p.clip,
      maxWeight: p.maxWeight,
      graphSeed: p.graphSeed,
      degree: p.degree,
      roster: p.roster,
    };
    const round = Number(t.round);
    const session = new SecureSession({ site: this.o.config.site, runId: t.runId, round, attempt: t.attempt, params, certificateKey: this.tls.key, caPem: this.tls.ca, now: () => new Date() });
    this.secure = { key: `${t.runId}/${round}.${t.attempt}`, session, params };
    const ad = session.advertisement();
    const cert = readTlsFiles(this.o.config.tls).cert.toString('utf8');
    await this.unary((cb) =>
      this.client!.AdvertiseKeys(
        { runId: t.runId, round: t.round, attempt: t.attempt, siteId: this.o.config.site, cPublicKey: ad.cPk, sPublicKey: ad.sPk, signature: ad.signature, certificatePem: cert },
        { deadline: Date.now() + 15_000 },
        cb,
      ),
    );
    this.log.info({ round, attempt: t.attempt, phase: 'keys' }, 'keys advertised');
  }

  private sessionFor(t: { runId: string; round: string; attempt: number }): SecureSession {
    const key = `${t.runId}/${Number(t.round)}.${t.attempt}`;
    if (this.secure?.key !== key) throw new SiteAgentError('REFUSED', `no secure session for ${key} (keys were never made here)`, false);
    return this.secure.session;
  }

  /** Round 1: checks every neighbour's advertisement and sends sealed shares. */
  private async onShares(t: SharesTask__Output): Promise<void> {
    this.maybeDie('shares');
    const session = this.sessionFor(t);
    const shares = session.shares(
      t.advertisements.map((a) => ({ site: a.siteId, cPk: a.cPublicKey, sPk: a.sPublicKey, signature: a.signature, certificatePem: a.certificatePem })),
    );
    await this.unary((cb) =>
      this.client!.SubmitShares(
        { runId: t.runId, round: t.round, attempt: t.attempt, shares: shares.map((x) => ({ fromSite: x.from, toSite: x.to, nonce: x.nonce, ciphertext: x.ciphertext })) },
        { deadline: Date.now() + 15_000 },
        cb,
      ),
    );
    this.log.info({ round: Number(t.round), attempt: t.attempt, phase: 'shares', shares: shares.length }, 'shares sent');
  }

  /** Consistency check: sign the survivor list, after checking it. */
  private async onConsistency(t: ConsistencyTask__Output): Promise<void> {
    this.maybeDie('unmask');
    const signature = this.sessionFor(t).signSurvivors(t.survivors, t.dropped);
    await this.unary((cb) =>
      this.client!.SignSurvivors({ runId: t.runId, round: t.round, attempt: t.attempt, siteId: this.o.config.site, signature }, { deadline: Date.now() + 15_000 }, cb),
    );
  }

  /** Round 3: reveal shares, once, after t matching signatures. */
  private async onUnmask(t: UnmaskTask__Output): Promise<void> {
    const shares = this.sessionFor(t).reveal(
      t.survivors,
      t.dropped,
      t.signatures.map((x) => ({ site: x.siteId, signature: x.signature })),
    );
    await this.unary((cb) =>
      this.client!.RevealShares({ runId: t.runId, round: t.round, attempt: t.attempt, shares }, { deadline: Date.now() + 15_000 }, cb),
    );
    this.log.info({ round: Number(t.round), attempt: t.attempt, phase: 'unmask', shares: shares.length }, 'shares revealed');
    // The attempt's secrets have served their purpose (Bonawitz et al. 2017, round 3 is the last).
    if (this.secure?.key === `${t.runId}/${Number(t.round)}.${t.attempt}`) this.secure = undefined;
    this.maybeReconnectForCertificate();
  }

  private stopJob(reason: string): void {
    if (!this.job) return;
    this.job.abort.abort(new SiteAgentError('CANCELLED', reason, false));
    this.job = undefined;
    this.activity = 'idle';
  }

  /**
   * The eval-only task after the last round. It belongs to no round job, so nothing else stops it:
   * it is bounded by the task's deadline and by this connection. An evaluation still running at the
   * deadline is abandoned (the runner is told to stop; the agent stops waiting even if it does not)
   * and the coordinator, which stops waiting then too, goes on without this site's score.
   */
  private async evaluateFinal(e: EvalTask__Output): Promise<void> {
    const modelRound = Number(e.modelRound);
    const deadlineMs = Number(e.deadlineMs) > 0 ? Number(e.deadlineMs) : Date.now() + EVAL_DEADLINE_FALLBACK_MS;
    const deadline = new AbortController();
    const timer = setTimeout(
      () => deadline.abort(new SiteAgentError('DEADLINE_PASSED', `the evaluation of round ${modelRound}'s model passed its deadline`, false, { modelRound, deadlineMs })),
      Math.max(0, deadlineMs - Date.now()),
    );
    const connection = this.connection.signal;
    const signal = AbortSignal.any([connection, deadline.signal]);
    try {
      await stopWaitingOnAbort(this.evaluate(e.runId, e.model?.sha256 ?? '', Number(e.model?.sizeBytes ?? 0), modelRound, signal), signal);
    } catch (err) {
      if (deadline.signal.aborted) {
        this.log.warn({ modelRound, deadlineMs, activity: this.activity }, 'evaluation abandoned at the coordinator\'s deadline');
      } else if (connection.aborted) {
        this.log.info({ modelRound }, 'evaluation stopped: the connection closed (the coordinator asks again after the next Join)');
      } else if (!this.rejoinIfForgotten(err, 'evaluation')) {
        this.log.warn({ modelRound, err: { message: (err as Error).message } }, 'evaluation failed');
      }
    } finally {
      clearTimeout(timer);
    }
  }

  private async evaluate(runId: string, sha256: string, size: number, modelRound: number, signal: AbortSignal): Promise<void> {
    const log = this.log.child({ round: modelRound, phase: 'training' });
    const { path } = await downloadModel(this.client!, sha256, size, this.cacheDir, signal, () => undefined);
    const r = await this.o.runner.evaluate(path, signal);
    // A runner that finished after all must not report a score the caller has given up on.
    signal.throwIfAborted();
    await new Promise<void>((resolve, reject) =>
      this.client!.ReportEval({ runId, modelRound, modelSha256: sha256, loss: r.loss, samples: r.samples }, { deadline: Date.now() + 15_000 }, (err) =>
        err ? reject(err) : resolve(),
      ),
    );
    log.info({ modelRound, loss: r.loss, samples: r.samples }, 'evaluation reported');
  }

  /** Downloads a model with progress (TTY line or log lines, and heartbeats). */
  private async download(sha256: string, size: number, signal: AbortSignal, log: Logger): Promise<{ path: string; bytes: number }> {
    const meter = new TransferMeter('download', size, log.child({ phase: 'download' }), stderrSink());
    this.meter = meter;
    const policy: TransferPolicy = { idleMs: this.o.config.transfer.idleTimeoutS * 1000, retry: this.o.config.reconnect };
    try {
      const dl = await downloadModel(this.client!, sha256, size, this.cacheDir, signal, (done, total) => {
        this.progress = done / total;
        meter.update(done);
      }, policy);
      if (dl.bytes > 0) meter.finish();
      this.o.metrics?.moved('down', dl.bytes);
      return dl;
    } finally {
      if (this.meter === meter) this.meter = undefined;
    }
  }

  private async trainRound(t: TrainTask__Output, signal: AbortSignal): Promise<void> {
    const round = Number(t.round);
    this.round = round;
    const log = this.log.child({ round, attempt: t.attempt });
    const sha256 = t.globalModel?.sha256 ?? '';
    const size = Number(t.globalModel?.sizeBytes ?? 0);
    this.activity = 'download';
    const dl = await this.download(sha256, size, signal, log);
    log.info({ phase: 'training', bytes: dl.bytes, cached: dl.bytes === 0 }, dl.bytes === 0 ? 'global model already held' : 'global model downloaded');
    if (t.evaluate) await this.evaluate(t.runId, sha256, size, Number(t.modelRound), signal);

    const secure = t.encoding?.name?.startsWith('secagg') ? this.sessionFor(t) : undefined;
    secure?.receiveShares(
      t.shares.map((x) => ({ from: x.fromSite, to: x.toSite, nonce: x.nonce, ciphertext: x.ciphertext })),
      t.shareHolders,
    );

    this.activity = 'training';
    const roundDir = join(this.o.config.workDir, `round-${round}`);
    // A shard trained for this very task (the agent restarted mid-upload) is uploaded, not retrained.
    const kept = secure ? undefined : await trainedResult(roundDir, t);
    // A Slurm shard's job record lives in its round dir: a restarted agent re-attaches to it.
    if (!kept && this.o.runner.kind !== 'slurm') await rm(roundDir, { recursive: true, force: true });
    await mkdir(join(roundDir, 'out'), { recursive: true });
    const t0 = Date.now();
    const result = kept ?? await this.o.runner.train({
      runId: t.runId,
      round,
      attempt: t.attempt,
      globalPath: dl.path,
      globalSha256: sha256,
      roundDir,
      train: JSON.parse(t.trainConfigJson || '{}') as Record<string, unknown>,
      signal,
      deadlineMs: Number(t.trainingDeadlineMs) || undefined,
      onProgress: (p) => {
        this.progress = p.step / p.steps;
        this.trainLoss = p.loss;
      },
    });
    if (kept) log.info({ phase: 'training', steps: result.steps }, 'shard already trained for this task: uploading it');
    else {
      await saveTrainedResult(roundDir, t, result);
      log.info({ phase: 'training', steps: result.steps, loss: result.trainLoss, seconds: (Date.now() - t0) / 1000 }, 'shard trained');
    }

    this.activity = 'upload';
    const res = await uploadRoundDelta({
      client: this.client!,
      config: this.o.config,
      task: t,
      globalPath: dl.path,
      result,
      secure: secure && this.secure ? { session: secure, params: this.secure.params } : undefined,
      log,
      signal,
      onMeter: (m) => (this.meter = m),
      onProgress: (done, total) => {
        this.progress = done / total;
        if (done >= total / 2) this.maybeDie('upload');
      },
    });
    log.info({ phase: 'upload', bytes: Number(res.receivedBytes) }, 'delta uploaded');
    this.o.metrics?.moved('up', Number(res.receivedBytes));
    this.o.metrics?.roundTrained();
    this.receipts.contributed({ runId: t.runId, round, parentSha256: sha256, dataManifestSha256: result.dataManifestSha256 });
    this.activity = 'idle';
    this.progress = -1;
    await rm(roundDir, { recursive: true, force: true });
    this.maybeReconnectForCertificate();
  }

  private async reportFailure(t: TrainTask__Output, err: unknown, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return; // cancelled by the coordinator or by a disconnect: nothing to report
    // A report on a forgotten session would be refused too; after the new Join the coordinator decides.
    if (this.rejoinIfForgotten(err, `round ${t.round}`)) return;
    const verdict = classifyFailure(err);
    const e = err instanceof SiteAgentError ? err : undefined;
    const message = (err as Error).message;
    this.log.error({ round: Number(t.round), err: { code: e?.code ?? (err as grpc.ServiceError).code, message } }, 'round failed at this site');
    this.o.metrics?.failed(e?.code ?? (err as grpc.ServiceError).code);
    this.activity = 'idle';
    this.client?.ReportFailure(
      { runId: t.runId, round: t.round, attempt: t.attempt, code: e?.code ?? 'TRAINING_FAILED', message, retryable: verdict.retryable },
      { deadline: Date.now() + 10_000 },
      () => undefined,
    );
  }
}

/**
 * Settles with `work`, or rejects with the signal's reason as soon as it aborts: a runner that
 * ignores its signal cannot hold the caller past a deadline. A late outcome of `work` is dropped.
 */
function stopWaitingOnAbort<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    void work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
