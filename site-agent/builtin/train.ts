/**
 * Local training for one site: Adam (Kingma & Ba 2015) over minibatches of random positions of a
 * shard. The returned Adam state can be fed back next round, which is DiLoCo's persistent inner
 * optimizer (Douillard et al. 2023, Algorithm 1); passing none starts fresh, as in FedAvg.
 */
import { BuiltinErrorCode, BuiltinTrainerError, TrainingAbortedError } from './errors.js';
import {
  type BuiltinParams,
  BuiltinWorkspace,
  type ResolvedBuiltinConfig,
  checkDataLength,
  checkParams,
  checkTokens,
  cloneParams,
  runBatch,
} from './model.js';
import type { Rng } from './rng.js';

/** Adam moment estimates and step count; tensors keyed like the parameters. */
export interface AdamState {
  /** Number of Adam updates applied so far (drives bias correction). */
  readonly step: number;
  /** First-moment estimates. */
  readonly m: ReadonlyMap<string, Float32Array>;
  /** Second-moment estimates. */
  readonly v: ReadonlyMap<string, Float32Array>;
}

/** Options of {@link trainShard}. */
export interface TrainShardOptions {
  /** Starting parameters; never mutated. */
  readonly params: BuiltinParams;
  readonly config: ResolvedBuiltinConfig;
  /** Encoded training text (at least contextLength + 1 tokens). */
  readonly data: Uint8Array;
  /** Number of optimizer steps (0 returns a copy of the inputs). */
  readonly steps: number;
  /** Positions per minibatch. */
  readonly batchSize: number;
  /** Adam learning rate. */
  readonly lr: number;
  /** Draws the minibatch positions; advanced by the call. */
  readonly rng: Rng;
  /** Adam state to continue from; never mutated. Undefined starts with zero moments. */
  readonly optimizerState?: AdamState | undefined;
  /** Clip the global gradient norm to this value; undefined means no clipping. */
  readonly gradClip?: number | undefined;
  /** Called with (steps done, mean loss since the previous call) every `progressEvery` steps. */
  readonly onProgress?: ((step: number, loss: number) => void) | undefined;
  /** Steps between `onProgress` calls; default 10. */
  readonly progressEvery?: number | undefined;
  /** Checked before every step; when aborted, throws {@link TrainingAbortedError}. */
  readonly signal?: AbortSignal | undefined;
}

/** Result of {@link trainShard}. */
export interface TrainShardResult {
  /** New parameters after training. */
  readonly params: Map<string, Float32Array>;
  /** Mean minibatch training loss over all steps (nats per char), measured before each update. */
  readonly loss: number;
  /** Positions trained on: steps × batchSize. */
  readonly samples: number;
  readonly steps: number;
  /** Adam state after the last step, to pass to the next call. */
  readonly optimizerState: AdamState;
}

const BETA1 = 0.9;
const BETA2 = 0.999;
const EPS = 1e-8;

function invalid(message: string, context: Record<string, number>): BuiltinTrainerError {
  return new BuiltinTrainerError(BuiltinErrorCode.InvalidArgument, message, context);
}

function freshMoments(params: BuiltinParams): Map<string, Float32Array> {
  return new Map([...params].map(([name, t]) => [name, new Float32Array(t.length)]));
}

function copyMoments(params: BuiltinParams, source: ReadonlyMap<string, Float32Array>, which: string): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [name, t] of params) {
    const s = source.get(name);
    if (!(s instanceof Float32Array) || s.length !== t.length) {
      throw new BuiltinTrainerError(BuiltinErrorCode.ParamShapeMismatch, `optimizer state ${which}[${name}] does not match the parameter of ${t.length} elements`, { name, expected: t.length, actual: s?.length ?? -1 });
    }
    out.set(name, s.slice());
  }
  return out;
}

/**
 * Trains a copy of `params` on `data` for `steps` Adam steps of `batchSize` uniformly drawn
 * positions. Inputs (parameters, optimizer state, data) are not mutated; only `rng` advances, so
 * the same seed gives bit-identical results.
 */
export function trainShard(options: TrainShardOptions): TrainShardResult {
  const { data, rng } = options;
  return runAdam(options, () => rng.int(data.length));
}

/**
 * The Adam loop behind {@link trainShard}, with the minibatch position sampler supplied by the
 * caller (centralised training samples across several concatenated datasets).
 * @internal
 */
export function runAdam(options: TrainShardOptions, drawPosition: () => number): TrainShardResult {
  const { config, data, steps, batchSize, lr, gradClip, onProgress, signal } = options;
  const progressEvery = options.progressEvery ?? 10;
  if (!Number.isSafeInteger(steps) || steps < 0) throw invalid(`steps must be a non-negative integer, got ${steps}`, { steps });
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw invalid(`batchSize must be a positive integer, got ${batchSize}`, { batchSize });
  if (!(lr > 0 && Number.isFinite(lr))) throw invalid(`lr must be a positive finite number, got ${lr}`, { lr });
  if (gradClip !== undefined && !(gradClip > 0)) throw invalid(`gradClip must be positive, got ${gradClip}`, { gradClip });
  if (!Number.isSafeInteger(progressEvery) || progressEvery < 1) throw invalid(`progressEvery must be a positive integer, got ${progressEvery}`, { progressEvery });
  checkParams(options.params, config);
  checkDataLength(data, config, 'training shard');
  checkTokens(data);

  const params = cloneParams(options.params);
  const m = options.optimizerState ? copyMoments(params, options.optimizerState.m, 'm') : freshMoments(params);
  const v = options.optimizerState ? copyMoments(params, options.optimizerState.v, 'v') : freshMoments(params);
  let t = options.optimizerState?.step ?? 0;
  const ws = new BuiltinWorkspace(config);
  const positions = new Int32Array(batchSize);
  const names = [...params.keys()];
  let lossSum = 0;
  let windowSum = 0;
  let windowSteps = 0;

  for (let step = 0; step < steps; step++) {
    if (signal?.aborted) throw new TrainingAbortedError(step, signal.reason);
    for (let i = 0; i < batchSize; i++) positions[i] = drawPosition();
    const loss = runBatch(params, ws, data, positions, batchSize, true);
    if (!Number.isFinite(loss)) {
      throw new BuiltinTrainerError(BuiltinErrorCode.NonFiniteLoss, `training loss became ${loss} at step ${step}; lower lr or enable gradClip`, { step, lr });
    }
    lossSum += loss;
    windowSum += loss;
    windowSteps++;

    let clipScale = 1;
    if (gradClip !== undefined) {
      let sq = 0;
      for (const g of ws.gradients.values()) for (let i = 0; i < g.length; i++) sq += g[i]! * g[i]!;
      const norm = Math.sqrt(sq);
      if (norm > gradClip) clipScale = gradClip / norm;
    }
    t++;
    const stepSize = lr / (1 - BETA1 ** t);
    const bias2 = 1 / (1 - BETA2 ** t);
    for (const name of names) {
      const p = params.get(name)!;
      const g = ws.gradients.get(name)!;
      const mt = m.get(name)!;
      const vt = v.get(name)!;
      for (let i = 0; i < p.length; i++) {
        const gi = g[i]! * clipScale;
        const mi = BETA1 * mt[i]! + (1 - BETA1) * gi;
        const vi = BETA2 * vt[i]! + (1 - BETA2) * gi * gi;
        mt[i] = mi;
        vt[i] = vi;
        p[i] = p[i]! - (stepSize * mi) / (Math.sqrt(vi * bias2) + EPS);
      }
    }
    if (onProgress && (step + 1) % progressEvery === 0) {
      onProgress(step + 1, windowSum / windowSteps);
      windowSum = 0;
      windowSteps = 0;
    }
  }
  return {
    params,
    loss: steps > 0 ? lossSum / steps : Number.NaN,
    samples: steps * batchSize,
    steps,
    optimizerState: { step: t, m, v },
  };
}
