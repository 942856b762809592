/**
 * The upload step of a round, as the agent runs it: the trained shard's result kept beside the round
 * (so an agent restarted mid-upload resumes the same bytes instead of training again), the delta
 * encoded in the task's encoding and sent over the allowed number of streams, with progress. A
 * folded upload (fold.ts) sends the mixed delta from its file, names its parts in the header and
 * weighs with W, the weight word included.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { declaredCount } from '../aggregation/index.js';
import type { Logger } from '../common/logger.js';
import type { SiteServiceClient } from '../proto/index.js';
import type { ResolvedSiteConfig } from './config.js';
import { DeltaEncoder, type MaskedInputs } from './encode.js';
import type { FoldPlan } from './fold.js';
import { stderrSink, TransferMeter, type ProgressSink } from './progress.js';
import type { TrainResult } from './runners/runner.js';
import type { SecureParams, SecureSession } from './secure/session.js';
import { transferPolicy, uploadDelta } from './transfer.js';
import { shardClients } from './client.js';
import { attemptKey, type TrainTask, type UploadOutcome, type UploadQueue } from './wire.js';

const RESULT_FILE = 'trained.json';

/** The task a saved shard was trained for: enough to keep it as missed work (kept-work.ts) when its task is gone. */
export interface SavedShardTask {
  readonly runId: string;
  readonly round: number;
  readonly attempt: number;
  readonly baseModelSha256: string;
  readonly modelRound: number;
}

/** A finished shard a run of the agent left in a round directory. */
export interface SavedShard {
  readonly key: string;
  /** Absent in a file an agent before issue 16 wrote. */
  readonly task?: SavedShardTask;
  readonly result: TrainResult;
  /**
   * The coordinator verified its upload. It stays until the next round's sweep (a later attempt
   * of its round uploads it again, mostly carried over), and is never kept as missed work.
   */
  readonly uploaded?: boolean;
}

/** The shard saved in `roundDir` whose local model still exists, whatever task it was for. */
export async function savedShard(roundDir: string): Promise<SavedShard | undefined> {
  try {
    const saved = JSON.parse(await readFile(join(roundDir, RESULT_FILE), 'utf8')) as SavedShard;
    await stat(saved.result.outPath);
    return saved;
  } catch {
    return undefined;
  }
}

/**
 * A shard already trained for `t`'s work, when an earlier run of the agent left it complete: one
 * trained for this very task, or for an earlier attempt of the same round from the same model (a
 * coordinator restart or failover opened the round again; the work is the same, and its upload may
 * carry over: docs/protocol.md, "Reuse across attempts"). Plain rounds only: the caller asks.
 */
export async function trainedResult(roundDir: string, t: TrainTask): Promise<{ result: TrainResult; attempt: number } | undefined> {
  const saved = await savedShard(roundDir);
  if (!saved) return undefined;
  if (saved.key === taskKey(t)) return { result: saved.result, attempt: t.attempt };
  const s = saved.task;
  const earlier = s !== undefined && s.runId === t.runId && s.round === t.round && s.attempt < t.attempt && s.baseModelSha256 === t.globalModel.sha256;
  return earlier ? { result: saved.result, attempt: s.attempt } : undefined;
}

/** A fresh shard's result as it is saved: named, so its upload can be reused by a later attempt. */
export function namedShard(result: TrainResult): TrainResult {
  return { ...result, shardId: randomBytes(16).toString('hex') };
}

/**
 * The upload's `contentId`: the SHA-256 of what makes its bytes — the named shard, the encoding and
 * the folded parts with their weights — so a later attempt sending the same bytes names them the
 * same. '' for a masked upload (its bytes belong to the attempt) or an unnamed shard.
 */
export function uploadContentId(result: TrainResult, encoding: string, fold: FoldPlan | undefined, masked: boolean): string {
  if (masked || !result.shardId) return '';
  const parts = (fold?.parts ?? []).map((p) => [p.part.baseModelSha256, p.part.samples, p.part.tokens, p.part.steps, p.count]);
  return createHash('sha256').update(JSON.stringify([result.shardId, encoding, fold?.weight ?? null, parts])).digest('hex');
}

/** Records a finished shard, atomically, so a restart can upload it without training again. */
export async function saveTrainedResult(roundDir: string, t: TrainTask, result: TrainResult): Promise<void> {
  const task: SavedShardTask = { runId: t.runId, round: t.round, attempt: t.attempt, baseModelSha256: t.globalModel.sha256, modelRound: t.modelRound };
  await writeSavedShard(roundDir, { key: taskKey(t), task, result });
}

/** Marks the shard in `roundDir` uploaded (see {@link SavedShard.uploaded}). */
export async function markUploaded(roundDir: string): Promise<void> {
  const saved = await savedShard(roundDir);
  if (saved) await writeSavedShard(roundDir, { ...saved, uploaded: true });
}

async function writeSavedShard(roundDir: string, saved: SavedShard): Promise<void> {
  const tmp = join(roundDir, `${RESULT_FILE}.tmp`);
  await writeFile(tmp, JSON.stringify(saved), { mode: 0o600 });
  await rename(tmp, join(roundDir, RESULT_FILE));
}

function taskKey(t: TrainTask): string {
  return `${attemptKey(t)}/${t.globalModel.sha256}`;
}

/** What the agent hands the upload step. */
export interface RoundUploadInput {
  readonly client: SiteServiceClient;
  /** The address `client` dials: the host of shards the coordinator runs on its own host (round-upload's shard clients). */
  readonly coordinator: string;
  readonly config: ResolvedSiteConfig;
  readonly task: TrainTask;
  readonly globalPath: string;
  readonly result: TrainResult;
  readonly secure: { session: SecureSession; params: SecureParams } | undefined;
  readonly log: Logger;
  readonly signal: AbortSignal;
  /** Called with the meter while the upload runs (heartbeats report it), then with undefined. */
  readonly onMeter: (meter: TransferMeter | undefined) => void;
  readonly onProgress?: (done: number, total: number) => void;
  readonly sink?: ProgressSink;
  /** A folded upload: the plan (its parts and W) and the file holding the mixed delta. */
  readonly fold?: { readonly plan: FoldPlan; readonly deltaPath: string } | undefined;
}

/**
 * The stochastic rounding's seed of one masked upload: random, except in tests that compare two
 * secure runs bit for bit (issue 22: a federation with aggregator shards against one without), which
 * set `FEDHPC_TEST_ROUNDING_SEED` so that each site rounds the same way in the same round. The
 * rounding stays unbiased either way; only its repeatability changes, so this is for tests only.
 */
function roundingSeed(site: string, round: number, attempt: number): Uint8Array {
  const fixed = process.env['FEDHPC_TEST_ROUNDING_SEED'];
  if (fixed === undefined || fixed === '') return randomBytes(32);
  return createHash('sha256').update(`fedhpc-test-rounding/${fixed}/${site}/${round}/${attempt}`).digest();
}

/** Encodes and uploads the round's delta; resolves with the coordinator's verdict. */
export async function uploadRoundDelta(i: RoundUploadInput): Promise<UploadOutcome> {
  const t = i.task;
  const { tensors, encoding } = t;
  const counts = { samples: i.result.samples, tokens: i.result.tokens };
  const fold = i.fold;
  // The weight word carries W of a folded upload, what the coordinator recomputes from the header's parts.
  const masked: MaskedInputs | undefined = i.secure
    ? { ...i.secure, count: fold?.plan.weight ?? declaredCount(i.secure.params.weighting, counts), roundingSeed: roundingSeed(i.config.site, t.round, t.attempt) }
    : undefined;
  const encoder = fold
    ? await DeltaEncoder.openDelta(fold.deltaPath, tensors, encoding, masked)
    : await DeltaEncoder.open(i.globalPath, i.result.outPath, tensors, encoding, masked);
  const meter = new TransferMeter('upload', encoder.totalBytes, i.log.child({ phase: 'upload' }), i.sink ?? stderrSink());
  i.onMeter(meter);
  const cfg = i.config.transfer;
  const allowed = t.maxChunkBytes ?? 1 << 20;
  const policy = transferPolicy(i.config);
  try {
    const res = await uploadDelta(
      i.client,
      {
        runId: t.runId,
        round: t.round,
        attempt: t.attempt,
        baseModelSha256: t.globalModel.sha256,
        encoding,
        tensors,
        samples: i.result.samples,
        tokens: i.result.tokens,
        steps: i.result.steps,
        trainLoss: i.result.trainLoss,
        dataManifestSha256: i.result.dataManifestSha256,
        // The busy span travels as the runner reported it; the coordinator shows it, never weighs by it.
        trainStartedMs: i.result.trainStartedMs ?? 0,
        trainFinishedMs: i.result.trainFinishedMs ?? 0,
        appliedStalenessSteps: i.result.appliedStaleness ?? 0,
        busyMs: i.result.busyMs ?? 0,
        folded: (fold?.plan.parts ?? []).map(({ part: p }) => ({ baseModelSha256: p.baseModelSha256, samples: p.samples, tokens: p.tokens, steps: p.steps })),
        contentId: uploadContentId(i.result, encoding, fold?.plan, masked !== undefined),
      },
      encoder,
      i.signal,
      (done, total) => {
        meter.update(done);
        i.onProgress?.(done, total);
      },
      {
        chunkBytes: Math.min(allowed, cfg.chunkBytes),
        streams: Math.min(cfg.parallelStreams, Math.max(1, t.maxStreams)),
        rateBytesPerS: cfg.uploadRateBytesPerS,
        policy,
        onQueued: queuedOnce(i.log),
        // Parts go to the aggregator shards the coordinator names, each checked for the `aggregator` role.
        shardClient: shardClients(i.config, i.coordinator),
      },
    );
    meter.finish();
    return res;
  } finally {
    i.onMeter(undefined);
    await encoder.close();
  }
}

/** Logs the first time the coordinator holds a stream back for its shared in-flight budget. */
function queuedOnce(log: Logger): (q: UploadQueue) => void {
  let told = false;
  return (q) => {
    if (told) return;
    told = true;
    log.info({ phase: 'upload', budgetBytes: q.budgetBytes, usedBytes: q.usedBytes, waitingStreams: q.waitingStreams }, 'upload queued: the coordinator\'s in-flight budget is in use, waiting for room');
  };
}
