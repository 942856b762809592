/**
 * The builtin runner: the TypeScript character model of `site-agent/builtin/`, trained in-process
 * on the site's generated text. Training runs in slices of steps so the event loop (heartbeats,
 * cancellation) keeps turning. A budget (`run.train.budget`) decides the steps as in every
 * trainer: a token budget's ⌈T / batchSize⌉ (one token per sample here), or steps until S seconds
 * of training have elapsed.
 */
import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { z } from 'zod';
import { createSafetensorsWriter, openSafetensors } from '../../aggregation/index.js';
import { AtomicFile, openFileSource } from '../../common/files.js';
import { formatZodIssues } from '../../common/config-file.js';
import {
  BUILTIN_TENSOR_NAMES,
  builtinTensorSpecs,
  createRng,
  evaluate,
  resolveBuiltinConfig,
  siteDataset,
  trainShard,
  type AdamState,
  type ResolvedBuiltinConfig,
} from '../builtin/index.js';
import type { ResolvedBuiltinRunner } from '../config.js';
import { SiteAgentError } from '../errors.js';
import { budgetAllows, plannedShardSteps, stepsEstimate, trainBudgetSchema, type TrainBudget } from './budget.js';
import type { EvalResult, Runner, TrainRequest, TrainResult } from './runner.js';

/** Training settings the builtin runner accepts from the run (`run.train` in the coordinator config). */
export const builtinTrainSchema = z
  .object({
    /** Steps per shard; beside a budget, a cap. */
    steps: z.number().int().positive().max(1_000_000).optional(),
    batchSize: z.number().int().positive().max(65_536),
    lr: z.number().positive().max(1),
    gradClip: z.number().positive().optional(),
    budget: trainBudgetSchema.optional(),
  })
  .strict()
  .refine((t) => t.steps !== undefined || t.budget !== undefined, { message: 'give steps, a budget, or both', path: ['steps'] });

const STEPS_PER_SLICE = 10;

/** Reads a builtin model file into named f32 tensors and infers its configuration from the shapes. */
export async function readBuiltinModel(path: string): Promise<{ params: Map<string, Float32Array>; config: ResolvedBuiltinConfig }> {
  const src = await openFileSource(path);
  try {
    const file = await openSafetensors(src);
    const params = new Map<string, Float32Array>();
    for (const t of file.tensors) params.set(t.name, await file.readF32(t.name, 0, t.elements));
    const embed = file.tensors.find((t) => t.name === 'embed.weight');
    const hidden = file.tensors.find((t) => t.name === 'hidden.weight');
    const names = file.tensors.map((t) => t.name).sort();
    if (!embed || !hidden || names.join() !== [...BUILTIN_TENSOR_NAMES].sort().join()) {
      throw new SiteAgentError('MODEL_INVALID', `${path} is not a builtin model (tensors: ${names.join(', ')})`, false);
    }
    const embedDim = embed.shape[1]!;
    const config = resolveBuiltinConfig({ embedDim, hidden: hidden.shape[0]!, contextLength: hidden.shape[1]! / embedDim });
    return { params, config };
  } finally {
    await src.close();
  }
}

/** Writes builtin parameters as an F32 safetensors file, atomically. Returns its SHA-256. */
export async function writeBuiltinModel(path: string, params: ReadonlyMap<string, Float32Array>, config: ResolvedBuiltinConfig): Promise<string> {
  const dir = join(path, '..');
  await mkdir(dir, { recursive: true });
  const file = await AtomicFile.create(dir);
  try {
    const specs = builtinTensorSpecs(config).map((s) => ({ name: s.name, dtype: 'F32' as const, shape: s.shape }));
    const writer = await createSafetensorsWriter(file, specs, { format: 'pt', model: 'fedhpc-builtin-char-mlp' });
    for (const s of specs) await writer.writeF32(s.name, params.get(s.name)!);
    await writer.finish();
    return (await file.commit(path)).sha256;
  } catch (err) {
    await file.discard();
    throw err;
  }
}

/** Runs shards of the builtin trainer on this site's generated corpus. */
export class BuiltinRunner implements Runner {
  readonly kind = 'builtin';
  private readonly data: { train: Uint8Array; heldout: Uint8Array };
  private readonly manifestSha256: string;
  private innerState: AdamState | undefined;

  constructor(private readonly options: ResolvedBuiltinRunner) {
    this.data = siteDataset({
      language: options.language,
      trainChars: options.trainChars,
      heldoutChars: options.heldoutChars,
      seed: options.seed,
    });
    this.manifestSha256 = createHash('sha256').update(this.data.train).digest('hex');
  }

  async train(req: TrainRequest): Promise<TrainResult> {
    const parsed = builtinTrainSchema.safeParse(req.train);
    if (!parsed.success) {
      throw new SiteAgentError('SPEC_INVALID', `run.train is not valid for the builtin runner: ${formatZodIssues(parsed.error).join('; ')}`, false);
    }
    const spec = parsed.data;
    const { params: start, config } = await readBuiltinModel(req.globalPath);
    // A fresh, reproducible stream per round and attempt: same inputs, same shard.
    const rng = createRng(BigInt(this.options.seed) * 1_000_003n + BigInt(req.round) * 1009n + BigInt(req.attempt));
    let params: ReadonlyMap<string, Float32Array> = start;
    let state = this.options.keepOptimizerState ? this.innerState : undefined;
    let lossSum = 0;
    let done = 0;
    const planned = plannedShardSteps(spec.budget, spec.steps, spec.batchSize);
    const startedMs = Date.now();
    let finishedMs = startedMs;
    // A time budget is spent by training, so it is measured to the end of the last slice: the
    // yield between slices is not training, and counting it once stopped a shard short of its
    // budget (the busy span it reports ends with that slice).
    while (budgetAllows(spec.budget, planned, done, finishedMs - startedMs)) {
      req.signal.throwIfAborted();
      const steps = this.sliceSteps(spec.budget, planned, done, finishedMs - startedMs);
      const r = trainShard({ params, config, data: this.data.train, steps, batchSize: spec.batchSize, lr: spec.lr, rng, optimizerState: state, gradClip: spec.gradClip });
      params = r.params;
      state = r.optimizerState;
      lossSum += r.loss * steps;
      done += steps;
      finishedMs = Date.now();
      req.onProgress({ step: done, steps: stepsEstimate(spec.budget, planned, done, finishedMs - startedMs), loss: r.loss });
      await yieldToLoop();
    }
    if (this.options.keepOptimizerState) this.innerState = state;
    const outPath = join(req.roundDir, 'out', 'model.safetensors');
    await writeBuiltinModel(outPath, params, config);
    const samples = done * spec.batchSize;
    return {
      outPath,
      samples,
      tokens: samples,
      steps: done,
      trainLoss: lossSum / done,
      dataManifestSha256: this.manifestSha256,
      trainStartedMs: startedMs,
      trainFinishedMs: finishedMs,
      // The builtin trainer runs on this process's CPU: no GPU time to declare.
      allocation: { kind: 'wall-clock', gpus: 0, startedMs, endedMs: Date.now(), busyMs: finishedMs - startedMs },
    };
  }

  /**
   * Steps of the next slice: up to {@link STEPS_PER_SLICE} and the planned steps left; under a time
   * budget only as many as fit the time left at the pace so far (one to begin with), so the budget
   * stops the shard within about one step, as it stops the other trainers.
   */
  private sliceSteps(budget: TrainBudget | undefined, planned: number | undefined, done: number, elapsedMs: number): number {
    let steps = Math.min(STEPS_PER_SLICE, planned === undefined ? STEPS_PER_SLICE : planned - done);
    if (budget !== undefined && 'seconds' in budget) {
      const left = budget.seconds * 1000 - elapsedMs;
      steps = done === 0 ? 1 : Math.max(1, Math.min(steps, Math.floor(left / (elapsedMs / done))));
    }
    return steps;
  }

  async evaluate(modelPath: string, signal: AbortSignal): Promise<EvalResult> {
    signal.throwIfAborted();
    const { params, config } = await readBuiltinModel(modelPath);
    const r = evaluate(params, config, this.data.heldout, this.options.evalPositions);
    return { loss: r.loss, samples: r.samples };
  }
}
