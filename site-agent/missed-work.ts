/**
 * The round job's dealings with kept work (issue 16; docs/protocol.md, "Bases, staleness and folded
 * work"): the upload step that folds kept parts into the fresh delta — and, when the coordinator
 * refuses the parts, drops them and sends the fresh delta alone while the window allows — and the
 * sweep that keeps a shard an earlier run of the agent trained but never uploaded.
 */
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../common/logger.js';
import { SiteAgentError } from './errors.js';
import { planFold, writeFoldedDelta, type FoldPlan, type FoldTerms } from './fold.js';
import type { KeptPart, KeptWork } from './kept-work.js';
import { afterUploadFailure, classifyFailure } from './retry.js';
import { savedShard, uploadRoundDelta, type RoundUploadInput } from './round-upload.js';
import { cachedModelPath } from './download.js';
import type { TrainTask } from './wire.js';
import type { UploadOutcome } from './wire.js';

/** The file of a folded upload's mixed delta, in the round directory. */
const FOLDED_DELTA_FILE = 'folded-delta.safetensors';

/** The upload step with kept work. */
export interface KeptWorkUploadInput extends Omit<RoundUploadInput, 'fold'> {
  readonly kept: KeptWork;
  /** How folded work is weighed; undefined: nothing is folded (a plain round without the run's weighting). */
  readonly terms: FoldTerms | undefined;
  readonly roundDir: string;
}

/** An accepted upload and the kept parts it folded. */
export interface KeptWorkUpload {
  readonly outcome: UploadOutcome;
  readonly folded: readonly KeptPart[];
}

/**
 * Uploads the fresh delta with whatever kept work the task allows folding (`planFold`); parts
 * that can never be sent are dropped first. When the coordinator refuses the folded parts
 * (`afterUploadFailure` says `fresh-only`), they are dropped and the fresh delta goes alone, unless
 * the task's upload window has passed: then DEADLINE_PASSED, and the round job keeps the fresh work.
 */
export async function uploadWithKeptWork(i: KeptWorkUploadInput): Promise<KeptWorkUpload> {
  const t = i.task;
  const plan = planFold(t, { samples: i.result.samples, tokens: i.result.tokens }, await i.kept.parts(), i.terms);
  for (const [why, parts] of groupByWhy(plan.dropped)) await i.kept.drop(parts, why);
  if (plan.notNow) i.log.info({ phase: 'upload' }, `kept work not folded into this upload: ${plan.notNow}`);
  if (plan.parts.length === 0) return { outcome: await uploadRoundDelta(i), folded: [] };

  const deltaPath = join(i.roundDir, FOLDED_DELTA_FILE);
  await writeFoldedDelta({ globalPath: i.globalPath, localPath: i.result.outPath, tensors: t.tensors, plan, clip: i.terms?.clip, outPath: deltaPath, signal: i.signal });
  i.log.info({ phase: 'upload', ...weighed(plan) }, 'folding kept work into this upload');
  try {
    return { outcome: await uploadRoundDelta({ ...i, fold: { plan, deltaPath } }), folded: plan.parts.map((p) => p.part) };
  } catch (err) {
    if (afterUploadFailure(err, { folded: true, stoppedToKeep: false }) !== 'fresh-only') throw err;
    const verdict = classifyFailure(err);
    await i.kept.drop(plan.parts.map((p) => p.part), `the coordinator refused the folded parts (${verdict.code}: ${verdict.reason})`);
    if (t.uploadDeadlineMs !== undefined && Date.now() >= t.uploadDeadlineMs) {
      throw new SiteAgentError('DEADLINE_PASSED', `the upload window of round ${t.round} passed after the coordinator refused the folded parts`, false, { round: t.round }, { cause: err });
    }
    i.log.warn({ phase: 'upload', code: verdict.code }, 'the coordinator refused the folded parts: uploading the fresh delta alone');
    return { outcome: await uploadRoundDelta(i), folded: [] };
  } finally {
    await rm(deltaPath, { force: true });
  }
}

/** What a fold weighs, for its log line. */
function weighed(plan: FoldPlan): Record<string, unknown> {
  return {
    weight: plan.weight,
    fresh: plan.fresh,
    foldScale: plan.foldScale,
    parts: plan.parts.map((p) => ({ base: p.part.baseModelSha256.slice(0, 12), round: p.part.round, staleness: p.staleness, count: p.count })),
  };
}

function groupByWhy(dropped: FoldPlan['dropped']): Map<string, KeptPart[]> {
  const by = new Map<string, KeptPart[]>();
  for (const d of dropped) by.set(d.why, [...(by.get(d.why) ?? []), d.part]);
  return by;
}

/** What {@link sweepSavedShards} needs. */
export interface SweepInput {
  readonly workDir: string;
  readonly cacheDir: string;
  readonly task: TrainTask;
  readonly kept: KeptWork;
  readonly log: Logger;
  readonly signal: AbortSignal;
}

/**
 * Keeps the shards earlier runs of the agent trained but never got counted (a crash or a lost
 * connection after training, a task that never came back): every `round-*` directory of the work
 * dir whose saved shard was trained from another model of this run than `task`'s becomes kept
 * work, and the directory goes. A shard of another run, or one already uploaded, is removed;
 * directories without a saved shard (a Slurm job's record, a shard still training) are left alone.
 */
export async function sweepSavedShards(i: SweepInput): Promise<void> {
  const t = i.task;
  const dirs = (await readdir(i.workDir, { withFileTypes: true })).filter((d) => d.isDirectory() && /^round-\d+$/.test(d.name));
  for (const d of dirs) {
    const dir = join(i.workDir, d.name);
    const saved = await savedShard(dir);
    const task = saved?.task;
    if (!saved || !task || task.baseModelSha256 === t.globalModel.sha256) continue;
    // An uploaded shard was counted in its round or lost with its attempt: either way not missed work.
    if (task.runId === t.runId && !saved.uploaded) {
      try {
        await i.kept.keep({ ...task, baseModelRound: task.modelRound, basePath: cachedModelPath(i.cacheDir, task.baseModelSha256), result: saved.result, tensors: t.tensors }, i.signal);
      } catch (err) {
        if (i.signal.aborted) throw err;
        i.log.warn({ dir, err: { message: (err as Error).message } }, 'a shard trained earlier could not be kept: removed');
      }
    }
    await rm(dir, { recursive: true, force: true });
  }
}

/** Removes the shards of run `runId` whose uploads were verified: the run is over, no attempt will send them again. */
export async function clearUploadedShards(workDir: string, runId: string): Promise<void> {
  const dirs = (await readdir(workDir, { withFileTypes: true }).catch(() => [])).filter((d) => d.isDirectory() && /^round-\d+$/.test(d.name));
  for (const d of dirs) {
    const dir = join(workDir, d.name);
    const saved = await savedShard(dir);
    if (saved?.uploaded && saved.task?.runId === runId) await rm(dir, { recursive: true, force: true });
  }
}
