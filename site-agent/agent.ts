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
import { PROTOCOL_VERSION, type SiteServiceClient, type Task__Output, type TrainTask__Output } from '../proto/index.js';
import { createSiteClient } from './client.js';
import type { ResolvedSiteConfig } from './config.js';
import { deltaBytes, deltaChunks } from './delta.js';
import { SiteAgentError } from './errors.js';
import type { Runner } from './runners/runner.js';
import { downloadModel, uploadDelta } from './transfer.js';

/** Version the agent reports at `Join`. */
export const AGENT_VERSION = '0.1.0';

export interface SiteAgentOptions {
  readonly config: ResolvedSiteConfig;
  readonly runner: Runner;
  readonly logger: Logger;
  readonly random?: () => number;
  /** Protocol version to announce (tests use another to check refusal). */
  readonly protocolVersion?: number;
}

interface Job {
  readonly key: string;
  readonly abort: AbortController;
  readonly done: Promise<void>;
}

/** gRPC codes after which retrying the same call cannot succeed. */
const PERMANENT = new Set<grpc.status>([grpc.status.PERMISSION_DENIED, grpc.status.UNAUTHENTICATED]);

/** One site's agent. `run` resolves when `signal` aborts and rejects on a permanent refusal. */
export class SiteAgent {
  private client: SiteServiceClient | undefined;
  private job: Job | undefined;
  private activity = 'idle';
  private progress = -1;
  private trainLoss = 0;
  private round = 0;
  private readonly log: Logger;
  private readonly cacheDir: string;

  constructor(private readonly o: SiteAgentOptions) {
    this.log = o.logger.child({ site: o.config.site });
    this.cacheDir = join(o.config.workDir, 'models');
  }

  async run(signal: AbortSignal): Promise<void> {
    await mkdir(this.cacheDir, { recursive: true });
    const random = this.o.random ?? Math.random;
    let failures = 0;
    let lastContact = Date.now();
    while (!signal.aborted) {
      this.client = createSiteClient(this.o.config);
      try {
        await this.join(signal);
        failures = 0;
        lastContact = Date.now();
        await this.followTasks(signal);
      } catch (err) {
        if (signal.aborted) break;
        const code = (err as grpc.ServiceError).code;
        if (err instanceof SiteAgentError && !err.retryable) throw err;
        if (PERMANENT.has(code) || (code === grpc.status.FAILED_PRECONDITION && /PROTOCOL_VERSION/.test((err as Error).message))) {
          throw new SiteAgentError('REFUSED', `coordinator refused this agent: ${(err as grpc.ServiceError).details ?? (err as Error).message}`, false, {}, { cause: err });
        }
        const giveUp = this.o.config.giveUpAfterS;
        if (giveUp > 0 && Date.now() - lastContact > giveUp * 1000) {
          throw new SiteAgentError('UNREACHABLE', `no contact with ${this.o.config.coordinator} for ${giveUp} s: ${(err as Error).message}`, false);
        }
        const delay = backoffDelay(this.o.config.reconnect, failures++, random);
        this.log.warn({ err: { message: (err as Error).message, code }, retryInMs: delay }, 'connection to coordinator lost');
      } finally {
        this.stopJob('disconnected');
        this.client.close();
      }
      await sleep(backoffDelay(this.o.config.reconnect, failures, random), signal).catch(() => undefined);
    }
  }

  private join(signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
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
      signal.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
  }

  /** Follows the task stream until it ends; heartbeats meanwhile. */
  private followTasks(signal: AbortSignal): Promise<void> {
    const call = this.client!.Tasks({}, { deadline: Infinity });
    const heartbeat = setInterval(() => this.heartbeat(), 2_000);
    const onAbort = (): void => call.cancel();
    signal.addEventListener('abort', onAbort, { once: true });
    return new Promise<void>((resolve, reject) => {
      call.on('data', (task: Task__Output) => this.onTask(task));
      call.on('error', (err) => reject(err));
      call.on('end', () => reject(new Error('coordinator closed the task stream')));
    }).finally(() => {
      clearInterval(heartbeat);
      signal.removeEventListener('abort', onAbort);
    });
  }

  private heartbeat(): void {
    this.client?.Heartbeat(
      { activity: this.activity, round: this.round, progress: this.progress, trainLoss: this.trainLoss },
      { deadline: Date.now() + 5_000 },
      () => undefined,
    );
  }

  private onTask(task: Task__Output): void {
    if (task.kind === 'train' && task.train) {
      const t = task.train;
      const key = `${t.runId}/${t.round}.${t.attempt}`;
      if (this.job?.key === key) return;
      this.stopJob('superseded by a new round task');
      const abort = new AbortController();
      const done = this.trainRound(t, abort.signal).catch((err) => this.reportFailure(t, err, abort.signal));
      this.job = { key, abort, done };
    } else if (task.kind === 'eval' && task.eval) {
      const e = task.eval;
      void this.evaluate(e.runId, e.model?.sha256 ?? '', Number(e.model?.sizeBytes ?? 0), Number(e.modelRound), new AbortController().signal).catch((err) =>
        this.log.warn({ err: { message: (err as Error).message } }, 'evaluation failed'),
      );
    } else if (task.kind === 'cancel' && task.cancel) {
      const c = task.cancel;
      if (this.job?.key === `${c.runId}/${c.round}.${c.attempt}`) {
        this.log.warn({ round: Number(c.round), reason: c.reason }, 'round cancelled by the coordinator');
        this.stopJob(c.reason);
      }
    }
  }

  private stopJob(reason: string): void {
    if (!this.job) return;
    this.job.abort.abort(new SiteAgentError('CANCELLED', reason, false));
    this.job = undefined;
    this.activity = 'idle';
  }

  private async evaluate(runId: string, sha256: string, size: number, modelRound: number, signal: AbortSignal): Promise<void> {
    const log = this.log.child({ round: modelRound, phase: 'training' });
    const { path } = await downloadModel(this.client!, sha256, size, this.cacheDir, signal, () => undefined);
    const r = await this.o.runner.evaluate(path, signal);
    await new Promise<void>((resolve, reject) =>
      this.client!.ReportEval({ runId, modelRound, modelSha256: sha256, loss: r.loss, samples: r.samples }, { deadline: Date.now() + 15_000 }, (err) =>
        err ? reject(err) : resolve(),
      ),
    );
    log.info({ modelRound, loss: r.loss, samples: r.samples }, 'evaluation reported');
  }

  private async trainRound(t: TrainTask__Output, signal: AbortSignal): Promise<void> {
    const round = Number(t.round);
    this.round = round;
    const log = this.log.child({ round, attempt: t.attempt });
    const sha256 = t.globalModel?.sha256 ?? '';
    const size = Number(t.globalModel?.sizeBytes ?? 0);
    this.activity = 'download';
    const dl = await downloadModel(this.client!, sha256, size, this.cacheDir, signal, (done, total) => (this.progress = done / total));
    log.info({ phase: 'training', bytes: dl.bytes, cached: dl.bytes === 0 }, dl.bytes === 0 ? 'global model already held' : 'global model downloaded');
    if (t.evaluate) await this.evaluate(t.runId, sha256, size, Number(t.modelRound), signal);

    this.activity = 'training';
    const roundDir = join(this.o.config.workDir, `round-${round}`);
    await rm(roundDir, { recursive: true, force: true });
    await mkdir(join(roundDir, 'out'), { recursive: true });
    const t0 = Date.now();
    const result = await this.o.runner.train({
      runId: t.runId,
      round,
      attempt: t.attempt,
      globalPath: dl.path,
      globalSha256: sha256,
      roundDir,
      train: JSON.parse(t.trainConfigJson || '{}') as Record<string, unknown>,
      signal,
      onProgress: (p) => {
        this.progress = p.step / p.steps;
        this.trainLoss = p.loss;
      },
    });
    log.info({ phase: 'training', steps: result.steps, loss: result.trainLoss, seconds: (Date.now() - t0) / 1000 }, 'shard trained');

    this.activity = 'upload';
    const tensors = t.tensors.map((x) => ({ name: x.name, dtype: x.dtype, shape: x.shape.map(Number) }));
    const allowed = t.maxChunkBytes > 0 ? t.maxChunkBytes : 1 << 20;
    const maxChunk = Math.min(allowed, this.o.config.transfer.chunkBytes);
    const totalBytes = deltaBytes(tensors);
    const res = await uploadDelta(
      this.client!,
      {
        runId: t.runId,
        round,
        attempt: t.attempt,
        baseModelSha256: sha256,
        encoding: t.encoding?.name ?? 'f32',
        tensors,
        totalBytes,
        samples: result.samples,
        tokens: result.tokens,
        steps: result.steps,
        trainLoss: result.trainLoss,
        dataManifestSha256: result.dataManifestSha256,
      },
      deltaChunks(dl.path, result.outPath, tensors, maxChunk, signal),
      signal,
      (done, total) => (this.progress = done / total),
      this.o.config.transfer.uploadRateBytesPerS,
    );
    log.info({ phase: 'upload', bytes: Number(res.receivedBytes) }, 'delta uploaded');
    this.activity = 'idle';
    this.progress = -1;
    await rm(roundDir, { recursive: true, force: true });
  }

  private async reportFailure(t: TrainTask__Output, err: unknown, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return; // cancelled by the coordinator or by a disconnect: nothing to report
    const e = err instanceof SiteAgentError ? err : undefined;
    const message = (err as Error).message;
    this.log.error({ round: Number(t.round), err: { code: e?.code ?? (err as grpc.ServiceError).code, message } }, 'round failed at this site');
    this.activity = 'idle';
    this.client?.ReportFailure(
      { runId: t.runId, round: t.round, attempt: t.attempt, code: e?.code ?? 'TRAINING_FAILED', message, retryable: e?.retryable ?? true },
      { deadline: Date.now() + 10_000 },
      () => undefined,
    );
  }
}
