/**
 * The upload step of a round, as the agent runs it: the trained shard's result kept beside the round
 * (so an agent restarted mid-upload resumes the same bytes instead of training again), the delta
 * encoded in the task's encoding and sent over the allowed number of streams, with progress.
 */
import { randomBytes } from 'node:crypto';
import { readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../common/logger.js';
import type { SiteServiceClient } from '../proto/index.js';
import type { ResolvedSiteConfig } from './config.js';
import { DeltaEncoder, type MaskedInputs } from './encode.js';
import { stderrSink, TransferMeter, type ProgressSink } from './progress.js';
import type { TrainResult } from './runners/runner.js';
import type { SecureParams, SecureSession } from './secure/session.js';
import { transferPolicy, uploadDelta } from './transfer.js';
import { attemptKey, type TrainTask, type UploadOutcome, type UploadQueue } from './wire.js';

const RESULT_FILE = 'trained.json';

/** The training result of this exact task, when a previous run of the agent left it complete. */
export async function trainedResult(roundDir: string, t: TrainTask): Promise<TrainResult | undefined> {
  try {
    const saved = JSON.parse(await readFile(join(roundDir, RESULT_FILE), 'utf8')) as { key: string; result: TrainResult };
    if (saved.key !== taskKey(t)) return undefined;
    await stat(saved.result.outPath);
    return saved.result;
  } catch {
    return undefined;
  }
}

/** Records a finished shard, atomically, so a restart can upload it without training again. */
export async function saveTrainedResult(roundDir: string, t: TrainTask, result: TrainResult): Promise<void> {
  const tmp = join(roundDir, `${RESULT_FILE}.tmp`);
  await writeFile(tmp, JSON.stringify({ key: taskKey(t), result }), { mode: 0o600 });
  await rename(tmp, join(roundDir, RESULT_FILE));
}

function taskKey(t: TrainTask): string {
  return `${attemptKey(t)}/${t.globalModel.sha256}`;
}

/** What the agent hands the upload step. */
export interface RoundUploadInput {
  readonly client: SiteServiceClient;
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
}

/** Encodes and uploads the round's delta; resolves with the coordinator's verdict. */
export async function uploadRoundDelta(i: RoundUploadInput): Promise<UploadOutcome> {
  const t = i.task;
  const { tensors, encoding } = t;
  const counts = { samples: i.result.samples, tokens: i.result.tokens };
  const masked: MaskedInputs | undefined = i.secure ? { ...i.secure, counts, roundingSeed: randomBytes(32) } : undefined;
  const encoder = await DeltaEncoder.open(i.globalPath, i.result.outPath, tensors, encoding, masked);
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
