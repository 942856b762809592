/**
 * The end of a round attempt: aggregating its verified uploads into a candidate model (on the
 * kernel worker pool when it starts), then committing that model to the journal. Both report back
 * to the scheduler through the driver's `RoundContext`.
 */
import { relative } from 'node:path';
import { invariant, openSafetensors, type ModelPartition } from '../../aggregation/index.js';
import { openFileSource } from '../../common/files.js';
import { aggregateRound, type AggregateResult, type SpoolInput } from '../aggregate/checkpoint-writer.js';
import { commitStagedCheckpoint, discardStagedCheckpoint, stageCheckpoint } from '../aggregate/staged-checkpoint.js';
import type { ShardAggregationPort } from './ports.js';
import { busyFraction, finishesOf } from '../observe/busy.js';
import { crashPoint } from '../core/crash-points.js';
import { CoordinatorError } from '../core/errors.js';
import { KernelPool } from '../aggregate/kernel-pool.js';
import { isRobust, robustMean, type AggregatorOptions } from '../aggregate/robust.js';
import type { AttemptContext, RoundContext } from './context.js';
import type { LayoutTensor } from '../upload/header.js';
import { recordsOf, type ParticipantRecord } from '../state/records.js';
import { SUM_CHECK_CODES, type UnmaskPlan } from '../secure/unmask.js';
import type { StateStore } from '../state/store.js';

/** Size and tensor layout of the model stored under `sha256`. */
export async function describeModel(store: StateStore, sha256: string): Promise<{ bytes: number; tensors: LayoutTensor[] }> {
  const src = await store.openModel(sha256);
  try {
    const file = await openSafetensors(src);
    return {
      bytes: src.size,
      tensors: file.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: [...t.shape], elements: t.elements })),
    };
  } finally {
    await src.close();
  }
}

/** Aggregates and commits round attempts of the driven run; owns the kernel worker pool. */
export class RoundCommitter {
  /** Worker threads that decode and sum spools, started at the first aggregation; undefined inside: in-thread kernels. */
  private kernelPool: Promise<KernelPool | undefined> | undefined;
  /** The aggregation running now, so that the end of its attempt can stop it. */
  private running: { readonly round: number; readonly attempt: number; readonly controller: AbortController } | undefined;

  constructor(private readonly ctx: RoundContext) {}

  /**
   * Sums the verified uploads of `sites` into a candidate model; reports `aggregated` or
   * `aggregationFailed`. Stopped by {@link abortAggregation}, it reports nothing (the scheduler
   * has already left the attempt), leaves no checkpoint and frees the kernel pool for the next one.
   */
  async aggregate(att: AttemptContext, round: number, attempt: number, sites: readonly string[]): Promise<void> {
    const run = this.ctx.run();
    const controller = new AbortController();
    const { signal } = controller;
    this.running = { round, attempt, controller };
    try {
      // A site revoked after its upload: plain rounds leave it out; a masked input cannot be taken
      // out of a secure sum, so that attempt restarts (fresh keys) without the site.
      const revoked = sites.filter((site) => this.ctx.control.excluded.has(site));
      if (revoked.length > 0 && this.ctx.secure()) {
        throw new CoordinatorError('REVOKED_IN_SUM', `revoked site(s) ${revoked.join(', ')} in the masked sum`, { round, attempt, sites: revoked.join(',') });
      }
      sites = sites.filter((site) => !this.ctx.control.excluded.has(site));
      for (const site of revoked) this.ctx.control.leftOut.add(site);
      if (sites.length < run.plan.minSites) {
        throw new CoordinatorError('TOO_FEW_UPLOADS', `only ${sites.length} of ${run.plan.minSites} required uploads remain after revocation`, { round, attempt, uploads: sites.length, needed: run.plan.minSites });
      }
      const inputs = sites.map((site) => {
        const u = att.uploads.get(site);
        invariant(u !== undefined, 'each site the scheduler aggregates has a verified upload in the attempt');
        // The spool holds the raw wire bytes: aggregation decodes them by the run's plain encoding
        // (a secure round passes its unmasked `mean` instead and never decodes these).
        return { site, weight: u.intent.weight, path: u.spool.path, encoding: this.ctx.config().run.encoding };
      });
      const t0 = this.ctx.o.clock.now();
      const elements = run.tensors.reduce((n, t) => n + t.elements, 0);
      const aggregator = this.ctx.config().run.aggregator;
      const secure = this.ctx.secure();
      const metadata = { fedhpc_run: run.plan.runId, fedhpc_round: String(round) };
      const pool = await this.kernels();
      // A secure round's sum is checked against the weights the survivors declared in their headers.
      const declared = new Map(inputs.map((i) => [i.site, i.weight]));
      // Aggregator shards (issue 22) aggregate when every one of them is ready (the mean or a robust
      // aggregator, each coordinate-wise over its range); otherwise the coordinator aggregates alone.
      const partition = this.ctx.o.shards?.readyPartition();
      // Sites that uploaded their parts to the shards (issue 22): only the shards hold their bytes.
      const onShards = new Set(sites.filter((site) => att.uploads.get(site)?.spool.parts !== undefined));
      if (onShards.size > 0 && !partition) {
        throw new CoordinatorError('SHARD_FAILED', `the parts of ${[...onShards].join(', ')} are held by aggregator shards that are not all ready`, { round, attempt });
      }
      if (partition && this.ctx.o.shards) {
        // The leader unmasks Σw only, from each survivor's masked weight word.
        const unmask = secure ? secure.shardUnmask(round, attempt, await maskedWeightWords(att, sites), declared, elements) : undefined;
        const result = await this.aggregateOnShards(this.ctx.o.shards, partition, inputs, onShards, { round, attempt, metadata, unmask, aggregator }, signal);
        this.ctx.log.info({ round, attempt, phase: 'aggregate', ms: this.ctx.o.clock.now() - t0, model: result.modelSha256, shards: partition.shards.length }, 'aggregated on the shards');
        this.ctx.dispatch({ type: 'aggregated', round, attempt, modelSha256: result.modelSha256 });
        return;
      }
      // Without shards every spool is a whole delta on disk (uploads in parts need every shard ready).
      const mean = secure
        ? await secure.mean(round, attempt, inputs.map((i) => i.path), declared, elements, openFileSource, { ...(pool ? { pool } : {}), signal })
        : isRobust(aggregator)
          ? await robustMean(aggregator, inputs, run.tensors.map((t) => t.elements), openFileSource, signal)
          : undefined;
      const result = await aggregateRound({
        ...(mean ? { mean } : {}),
        ...(pool ? { pool } : {}),
        signal,
        store: this.ctx.o.store,
        globalSha256: run.globalSha256,
        inputs,
        optimizer: run.optimizer,
        step: run.serverSteps + 1,
        previousStateSha256: run.stateSha256,
        sliceElements: this.ctx.o.config.limits.sliceElements,
        openSpool: openFileSource,
        metadata,
      });
      this.ctx.log.info({ round, attempt, phase: 'aggregate', ms: this.ctx.o.clock.now() - t0, model: result.modelSha256 }, 'aggregated');
      this.ctx.dispatch({ type: 'aggregated', round, attempt, modelSha256: result.modelSha256 });
    } catch (err) {
      if (signal.aborted) {
        this.ctx.log.info({ round, attempt, phase: 'aggregate', reason: String(signal.reason) }, 'aggregation stopped');
        return;
      }
      this.ctx.log.error({ round, attempt, phase: 'aggregate', err }, 'aggregation failed');
      const coded = err instanceof CoordinatorError ? err : undefined;
      // A journal that cannot be written is fatal, as it is for every effect.
      if (coded && SUM_CHECK_CODES.includes(coded.code)) await this.sumCheckFailed(att, round, attempt, sites, coded).catch((e: unknown) => this.ctx.o.onFatal(e));
      // The reason starts with the code, so the journal and `admin rounds` name it.
      this.ctx.dispatch({ type: 'aggregationFailed', round, attempt, reason: coded ? `${coded.code}: ${coded.message}` : (err as Error).message });
    } finally {
      if (this.running?.controller === controller) this.running = undefined;
    }
  }

  /**
   * Journals a failed check of a secure sum with the attempt's participants and the counts they
   * declared — the sum cannot say which of them sent the words, so an admin gets them all — and
   * pauses the run once two attempts of the same round have failed a check, as `fedhpc admin pause`
   * does: the round may still commit, no later round opens until an admin resumes.
   */
  private async sumCheckFailed(att: AttemptContext, round: number, attempt: number, sites: readonly string[], err: CoordinatorError): Promise<void> {
    const runId = this.ctx.run().plan.runId;
    const participants = sites.map((site) => ({ site, weight: att.uploads.get(site)?.intent.weight ?? 0 }));
    await this.ctx.o.store.append({ type: 'sum-check-failed', runId, round, attempt, code: err.code, message: err.message, participants });
    const failed = recordsOf(this.ctx.o.store.records().map((r) => r.body), runId, 'sum-check-failed').filter((r) => r.round === round);
    if (failed.length < 2) return;
    const attempts = failed.map((f) => `${f.attempt} (${f.code}: ${f.participants.map((p) => p.site).join(', ')})`).join(', ');
    await this.ctx.pause(`the secure sum of round ${round} failed its checks in attempts ${attempts}: one of those sites sends words its header does not match`);
  }

  /**
   * Stops the aggregation of `round`.`attempt` if it still runs (its deadline passed, an admin
   * aborted the run, or the attempt failed otherwise): a result nobody will commit must not hold
   * the kernel pool the next attempt needs, nor leave a checkpoint behind. `reason` is what its
   * pool jobs and `aggregateRound` reject with. Another attempt's aggregation is left alone.
   */
  abortAggregation(round: number, attempt: number, reason: Error): void {
    const r = this.running;
    if (r !== undefined && r.round === round && r.attempt === attempt) r.controller.abort(reason);
  }

  /** Journals the candidate as the round's model (the commit point), moves the run onto it and feeds `committed`. */
  async commit(att: AttemptContext, round: number, attempt: number, allSites: readonly string[], allDropped: readonly string[], modelSha256: string): Promise<void> {
    const run = this.ctx.run();
    // Only uploads left out of the sum are dropped here: a site revoked once aggregation had
    // started is in this round's model, and the record says so.
    const sites = allSites.filter((site) => !this.ctx.control.leftOut.has(site));
    const dropped = [...new Set([...allDropped, ...allSites.filter((site) => this.ctx.control.leftOut.has(site))])].sort();
    const participants: ParticipantRecord[] = sites.map((site) => {
      const u = att.uploads.get(site);
      invariant(u !== undefined, 'each participant of a committed round has a verified upload in the attempt');
      return {
        site,
        weight: u.intent.weight,
        samples: u.intent.samples,
        tokens: u.intent.tokens,
        steps: u.intent.steps,
        trainLoss: Number.isFinite(u.intent.trainLoss) ? u.intent.trainLoss : -1,
        deltaSha256: u.spool.sha256,
        dataManifestSha256: u.intent.dataManifestSha256,
        baseModelSha256: u.intent.baseModelSha256,
        staleness: u.intent.staleness,
        folded: u.intent.folded.map((f) => ({ ...f })),
        trainStartedMs: u.intent.trainStartedMs,
        trainFinishedMs: u.intent.trainFinishedMs,
        appliedStaleness: u.intent.appliedStaleness,
        busyMs: u.intent.busyMs,
      };
    });
    // Where each site's work counted in the previous round ended: its busy fraction measures from there.
    const previousFinishes = finishesOf(this.ctx.o.store.records(), run.plan.runId, round - 1);
    const parentSha256 = run.globalSha256;
    const model = await describeModel(this.ctx.o.store, modelSha256);
    // The journal append is the commit point: the checkpoint is already on disk under its hash.
    crashPoint('commit.before-journal', round);
    await this.ctx.o.store.append({
      type: 'round-committed',
      runId: run.plan.runId,
      round,
      attempt,
      participants,
      dropped: [...dropped],
      parentSha256,
      modelSha256,
      strategy: this.ctx.config().run.strategy,
      serverStep: run.serverSteps + 1,
      bytesUp: att.bytesUp,
      bytesDown: att.bytesDown,
      ...(att.bytesReused > 0 ? { bytesReused: att.bytesReused } : {}),
      startedMs: att.startedMs,
    });
    crashPoint('commit.after-journal', round);
    run.bases.recordCommit(round, modelSha256, parentSha256, participants);
    run.globalSha256 = modelSha256;
    run.globalBytes = model.bytes;
    run.modelRound = round;
    run.stateSha256 = modelSha256;
    run.serverSteps += 1;
    const now = this.ctx.o.clock.now();
    for (const p of participants) {
      const rec = this.ctx.o.registry.get(p.site);
      if (!rec) continue;
      rec.roundsContributed += 1;
      rec.lastRound = {
        round,
        tokens: p.tokens,
        steps: p.steps,
        staleness: p.staleness ?? 0,
        foldedParts: p.folded?.length ?? 0,
        foldedCount: (p.folded ?? []).reduce((a, f) => a + f.count, 0),
        appliedStaleness: p.appliedStaleness ?? 0,
        busyFraction: busyFraction(p, att.startedMs, now, previousFinishes.get(p.site)),
      };
    }
    await this.ctx.o.store.pruneSpools();
    await this.ctx.o.afterCommit?.();
    const seconds = (this.ctx.o.clock.now() - att.startedMs) / 1000;
    this.ctx.log.info({ round, attempt, phase: 'commit', participants: sites, dropped, model: modelSha256, seconds }, 'round committed');
    this.ctx.o.bus.emit('round.committed', {
      runId: run.plan.runId,
      round,
      attempt,
      participants: [...sites],
      dropped: [...dropped],
      modelSha256,
      bytesUp: att.bytesUp,
      bytesDown: att.bytesDown,
      seconds,
    });
    this.ctx.advance({ type: 'committed', round, attempt });
  }

  /** Stops a running aggregation and the kernel worker pool once it has started. */
  close(): void {
    this.running?.controller.abort(new CoordinatorError('ROUND_CLOSED', 'the coordinator is stopping'));
    void this.kernelPool?.then((pool) => pool?.close());
  }

  /**
   * The attempt's aggregation (plain, secure with the leader's checked unmasking, or robust) and
   * server step run by the aggregator shards: the leader stages the new checkpoint's files, every
   * shard writes its part into them, and the leader checks, hashes and publishes them. A shard that fails or goes away fails the aggregation (`SHARD_FAILED`; the
   * attempt is retried) and the stage is discarded: no part of a checkpoint is ever published alone.
   */
  private async aggregateOnShards(
    shards: ShardAggregationPort,
    partition: ModelPartition,
    inputs: readonly SpoolInput[],
    onShards: ReadonlySet<string>,
    at: {
      readonly round: number;
      readonly attempt: number;
      readonly metadata: Readonly<Record<string, string>>;
      readonly unmask: { readonly plan: UnmaskPlan; readonly weightSum: number } | undefined;
      readonly aggregator: AggregatorOptions;
    },
    signal: AbortSignal,
  ): Promise<AggregateResult> {
    const run = this.ctx.run();
    const store = this.ctx.o.store;
    const step = run.serverSteps + 1;
    const stage = await stageCheckpoint({ store, globalSha256: run.globalSha256, optimizer: run.optimizer, step, metadata: at.metadata });
    try {
      // Shards reach the same storage under their own path: everything they are sent is relative to the state dir.
      const rel = (path: string): string => relative(store.dir, path);
      const written = await shards.aggregate(
        {
          runId: run.plan.runId,
          round: at.round,
          attempt: at.attempt,
          globalModelSha256: run.globalSha256,
          previousStateSha256: run.stateSha256,
          optimizer: { name: run.optimizer.name, params: run.optimizer.params },
          step,
          // A secure round's spools hold masked words; a plain round's, the run's plain encoding.
          inputs: inputs.map((i) => ({
            site: i.site,
            weight: i.weight,
            ...(onShards.has(i.site) ? { path: '', onShard: true } : { path: rel(i.path), onShard: false }),
            encoding: at.unmask ? `secagg${at.unmask.plan.modulusBits}` : i.encoding,
          })),
          stage: { files: stage.files.map((f) => ({ ...f, path: rel(f.path) })) },
          sliceElements: this.ctx.o.config.limits.sliceElements,
          unmask: at.unmask,
          aggregator: at.aggregator,
        },
        signal,
      );
      return await commitStagedCheckpoint({ store, stage, partition, written, signal });
    } catch (err) {
      await discardStagedCheckpoint(stage);
      throw err;
    }
  }

  private kernels(): Promise<KernelPool | undefined> {
    this.kernelPool ??= KernelPool.start().catch((err: unknown) => {
      this.ctx.log.warn({ phase: 'aggregate', err }, 'kernel worker pool unavailable; aggregating in the event-loop thread');
      return undefined;
    });
    return this.kernelPool;
  }
}

/**
 * Each site's masked weight word, in `sites` order: as the aggregator shard holding its last part
 * reported it (an upload in parts), or read from the end of its whole spool here.
 */
async function maskedWeightWords(att: AttemptContext, sites: readonly string[]): Promise<Uint8Array[]> {
  return Promise.all(
    sites.map(async (site) => {
      const u = att.uploads.get(site);
      invariant(u !== undefined, 'each site of a secure sum has a verified upload in the attempt');
      if (u.spool.weightWord) return u.spool.weightWord;
      const word = u.intent.segments.at(-1);
      invariant(word !== undefined, 'a masked upload ends with its weight word');
      const source = await openFileSource(u.spool.path);
      try {
        return await source.read(word.start, word.end - word.start);
      } finally {
        await source.close();
      }
    }),
  );
}
