/**
 * The `standin` runner: a stand-in for a GPU trainer, for `fedhpc simulate --site-speeds` and the
 * heterogeneity benchmark. It spends a shard's time as an accelerator would, without the CPU: each
 * step is a sleep of `stepMs / speed`, paced against the clock, so sites of speeds 1:2:3 take
 * steps at exactly those rates however loaded the machine is. It honours the run's step count and
 * budget as the real trainers do, writes `progress.jsonl` with real timestamps (the trainer
 * contract's lines), counts tokens (batch × sequence length per step), and writes a real local
 * model: the global one moved toward this site's target of a quadratic stand-in objective
 * (`standin-model.ts`), in one pass over the weights. Its losses are that objective's, not a
 * language model's; nothing it reports is a training result.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import { formatZodIssues } from '../../common/config-file.js';
import { USAGE_GPUS_MAX } from '../../common/usage.js';
import { SiteAgentError } from '../errors.js';
import type { Allocation } from '../usage.js';
import { budgetAllows, plannedShardSteps, stepsEstimate, trainBudgetSchema, type TrainBudget } from './budget.js';
import type { EvalResult, Runner, TrainRequest, TrainResult } from './runner.js';
import { writeJsonAtomic } from './round-dir.js';
import type { PersistentCapable, PersistentLaunch, PersistentTrainer, SessionWindow } from './persistent.js';
import { standinLoss, writeStandinModel, type StandinObjective } from './standin-model.js';
import { startStandinPersistent, until } from './standin-persistent.js';

/** Site config of the stand-in runner (`runner.kind = "standin"`). */
export const standinRunnerSchema = z
  .object({
    kind: z.literal('standin'),
    /** Relative speed of this site: a step takes `stepMs / speed`. */
    speed: z.number().positive().finite().max(1000).default(1),
    /** Milliseconds one step takes at speed 1. */
    stepMs: z.number().positive().max(3_600_000).default(100),
    /** Milliseconds one evaluation takes at speed 1 (slept too). */
    evalMs: z.number().min(0).max(3_600_000).default(0),
    /** GPUs the stand-in stands for: its rounds' usage is wall-clock × gpus (receipts). */
    gpus: z.number().int().min(0).max(USAGE_GPUS_MAX).default(0),
    /** Seed of this site's target in the stand-in objective. */
    seed: z.number().int().min(0).max(2 ** 31 - 1).default(1),
    /** Share of the distance to the site's target one step closes. */
    pull: z.number().gt(0).lt(1).default(0.01),
    /** Scale of the targets' coordinates. */
    targetScale: z.number().positive().finite().default(0.02),
    /** How far the sites' targets differ, relative to their shared part (0: one target for all). */
    heterogeneity: z.number().min(0).max(100).default(0.5),
    /** Coordinates of each tensor an evaluation scores (its first ones). */
    evalElements: z.number().int().positive().max(1 << 24).default(4096),
    /** The dtype of the local model it writes, as a GPU trainer's `outputDtype` (BF16: half the bytes). */
    outputDtype: z.enum(['F32', 'BF16']).default('F32'),
  })
  .strict();

export type StandinRunnerOptions = z.input<typeof standinRunnerSchema>;
export type ResolvedStandinRunner = z.output<typeof standinRunnerSchema>;

const count = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);

/**
 * What the stand-in reads of any trainer's `run.train`: the steps (`max_steps` or `steps`), the
 * batch (`batch_size` or `batchSize`), `seq_len` (1 when absent: one token per sample) and the
 * budget. Everything else (learning rates, data order) belongs to the trainer it stands in for.
 */
const standinTrainSchema = z
  .object({
    max_steps: count.optional(),
    steps: count.optional(),
    batch_size: count.optional(),
    batchSize: count.optional(),
    seq_len: count.default(1),
    budget: trainBudgetSchema.optional(),
  })
  .passthrough()
  .transform((t, ctx): StandinTrain => {
    const batch = t.batch_size ?? t.batchSize;
    const maxSteps = t.max_steps ?? t.steps;
    if (batch === undefined) ctx.addIssue({ code: 'custom', message: 'batch_size (or batchSize) is required', path: ['batch_size'] });
    if (maxSteps === undefined && t.budget === undefined) ctx.addIssue({ code: 'custom', message: 'give max_steps (or steps), a budget, or both', path: ['max_steps'] });
    return batch === undefined ? z.NEVER : { maxSteps, batch, seqLen: t.seq_len, budget: t.budget };
  });

interface StandinTrain {
  readonly maxSteps: number | undefined;
  readonly batch: number;
  readonly seqLen: number;
  readonly budget: TrainBudget | undefined;
}

function readTrain(train: Readonly<Record<string, unknown>>): StandinTrain {
  const parsed = standinTrainSchema.safeParse(train);
  if (!parsed.success) throw new SiteAgentError('SPEC_INVALID', `run.train is not valid for the stand-in runner: ${formatZodIssues(parsed.error).join('; ')}`, false);
  return parsed.data;
}

/** A stand-in for a GPU trainer: paced sleeps, real progress lines and a real local model. */
export class StandinRunner implements Runner, PersistentCapable {
  readonly kind = 'standin';
  /** The loop runs in the agent's process: a failure of it is not a crash a restart would mend. */
  readonly persistentRetries = 0;
  private readonly objective: StandinObjective;
  private readonly manifestSha256: string;

  constructor(private readonly o: ResolvedStandinRunner) {
    this.objective = { seed: o.seed, targetScale: o.targetScale, heterogeneity: o.heterogeneity };
    this.manifestSha256 = createHash('sha256').update(`fedhpc stand-in trainer, seed ${o.seed}: no data is read`).digest('hex');
  }

  async train(req: TrainRequest): Promise<TrainResult> {
    req.signal.throwIfAborted();
    const t = readTrain(req.train);
    const tokensPerStep = t.batch * t.seqLen;
    const planned = plannedShardSteps(t.budget, t.maxSteps, tokensPerStep);
    // The loss the steps will reach, exactly, on the coordinates an evaluation scores.
    const initial = await standinLoss(req.globalPath, this.objective, this.o.evalElements);
    await mkdir(join(req.roundDir, 'out'), { recursive: true });
    const progress = await open(join(req.roundDir, 'progress.jsonl'), 'w');
    const stepMs = this.o.stepMs / this.o.speed;
    // Unix ms from the monotonic clock: progress timestamps never go backwards.
    const wall0 = Date.now() - performance.now();
    const t0 = performance.now();
    let done = 0;
    let lossSum = 0;
    let finished = t0;
    try {
      while (budgetAllows(t.budget, planned, done, performance.now() - t0)) {
        // Paced against the start, not the last wake-up: timer lateness does not slow the site down.
        await until(t0 + (done + 1) * stepMs, req.signal);
        done += 1;
        finished = performance.now();
        const loss = initial.loss * (1 - this.o.pull) ** (2 * done);
        lossSum += loss;
        const steps = stepsEstimate(t.budget, planned, done, finished - t0);
        await line(progress, { step: done, steps, loss, tokens: done * tokensPerStep, ts: Math.round(wall0 + finished) });
        req.onProgress({ step: done, steps, loss });
      }
    } finally {
      await progress.close();
    }
    const outPath = join(req.roundDir, 'out', 'model.safetensors');
    await writeStandinModel(req.globalPath, outPath, this.objective, this.o.pull, done, req.signal, this.o.outputDtype);
    return {
      outPath,
      samples: done * t.batch,
      tokens: done * tokensPerStep,
      steps: done,
      trainLoss: lossSum / done,
      dataManifestSha256: this.manifestSha256,
      trainStartedMs: Math.round(wall0 + t0),
      trainFinishedMs: Math.round(wall0 + finished),
      allocation: { kind: 'wall-clock', gpus: this.o.gpus, startedMs: Math.round(wall0 + t0), endedMs: Date.now(), busyMs: Math.round(finished - t0) },
    };
  }

  get outputDtype(): 'F32' | 'BF16' {
    return this.o.outputDtype;
  }

  /** A persistent stand-in's share: this process's clock between the snapshots × its GPUs. */
  sessionAllocation(w: SessionWindow): Promise<Allocation> {
    return Promise.resolve({ kind: 'wall-clock', gpus: this.o.gpus, startedMs: w.fromMs ?? w.sessionStartedMs, endedMs: w.toMs, busyMs: w.busyMs });
  }

  /** The persistent trainer of an overlapped run, in this process (standin-persistent.ts). */
  async startPersistent(launch: PersistentLaunch): Promise<PersistentTrainer> {
    const t = readTrain({ ...(launch.spec['train'] as Record<string, unknown>), budget: launch.spec['budget'] });
    const budget = launch.spec['budget'] as TrainBudget;
    const overlap = launch.spec['overlap'] as { alpha: number };
    await writeJsonAtomic(join(launch.dir, 'spec.json'), { ...launch.spec, seed: this.o.seed, output_dtype: this.o.outputDtype, data: {} });
    return startStandinPersistent(launch, {
      stepMs: this.o.stepMs / this.o.speed,
      pull: this.o.pull,
      evalElements: this.o.evalElements,
      outputDtype: this.o.outputDtype,
      objective: this.objective,
      manifestSha256: this.manifestSha256,
      batch: t.batch,
      seqLen: t.seqLen,
      maxSteps: t.maxSteps,
      budget,
      alpha: overlap.alpha,
    });
  }

  async evaluate(modelPath: string, signal: AbortSignal): Promise<EvalResult> {
    await until(performance.now() + this.o.evalMs / this.o.speed, signal);
    return standinLoss(modelPath, this.objective, this.o.evalElements);
  }
}

async function line(file: FileHandle, record: Record<string, number>): Promise<void> {
  await file.write(`${JSON.stringify(record)}\n`);
}
