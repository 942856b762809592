/**
 * Centralised baseline: the same model trained on the union of all sites' data with the same
 * sample budget, used by the convergence benchmark (federated ÷ centralised held-out loss).
 */
import { PAD_TOKEN } from './corpus.js';
import { BuiltinErrorCode, BuiltinTrainerError } from './errors.js';
import { type ResolvedBuiltinConfig, initBuiltinModel } from './model.js';
import { createRng } from './rng.js';
import { runAdam } from './train.js';

/** Options of {@link trainCentral}. */
export interface TrainCentralOptions {
  readonly config: ResolvedBuiltinConfig;
  /** Every site's training text; sampling is uniform over the union of their positions. */
  readonly datasets: readonly Uint8Array[];
  /** Training positions in total; rounded to whole minibatches. */
  readonly totalSamples: number;
  readonly batchSize: number;
  /** Adam learning rate. */
  readonly lr: number;
  /** Seeds both the initial parameters and the minibatch sampling. */
  readonly seed: number | bigint;
  /** Clip the global gradient norm; undefined means no clipping. */
  readonly gradClip?: number | undefined;
  /** Starting parameters; default `initBuiltinModel(config, seed)`. Never mutated. */
  readonly initialParams?: ReadonlyMap<string, Float32Array> | undefined;
}

/** Result of {@link trainCentral}. */
export interface TrainCentralResult {
  readonly params: Map<string, Float32Array>;
  /** Mean minibatch training loss over the run. */
  readonly loss: number;
  readonly samples: number;
  readonly steps: number;
}

/**
 * Trains one model with Adam on all datasets at once. Texts are joined with C '\n' tokens between
 * them and only real positions are sampled, so no context window spans two languages and each
 * text starts with the same padding the per-site models see.
 */
export function trainCentral(options: TrainCentralOptions): TrainCentralResult {
  const { config, datasets, totalSamples, batchSize } = options;
  const C = config.contextLength;
  if (datasets.length === 0) {
    throw new BuiltinTrainerError(BuiltinErrorCode.DatasetTooShort, 'trainCentral needs at least one dataset', { length: 0, required: 1 });
  }
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) {
    throw new BuiltinTrainerError(BuiltinErrorCode.InvalidArgument, `batchSize must be a positive integer, got ${batchSize}`, { batchSize });
  }
  if (!Number.isSafeInteger(totalSamples) || totalSamples < 0) {
    throw new BuiltinTrainerError(BuiltinErrorCode.InvalidArgument, `totalSamples must be a non-negative integer, got ${totalSamples}`, { totalSamples });
  }
  const joined = new Uint8Array(datasets.reduce((n, d) => n + C + d.length, 0)).fill(PAD_TOKEN);
  // realStart[i] = offset in `joined` of dataset i; cumulative[i] = real positions before it.
  const realStart = new Float64Array(datasets.length);
  const cumulative = new Float64Array(datasets.length + 1);
  let offset = 0;
  datasets.forEach((d, i) => {
    offset += C;
    joined.set(d, offset);
    realStart[i] = offset;
    cumulative[i + 1] = cumulative[i]! + d.length;
    offset += d.length;
  });
  const realTotal = cumulative[datasets.length]!;
  const rng = createRng(options.seed);
  const params = options.initialParams ?? initBuiltinModel(config, options.seed);
  const steps = Math.round(totalSamples / batchSize);
  const drawPosition = (): number => {
    const r = rng.int(realTotal);
    let i = 0;
    while (r >= cumulative[i + 1]!) i++;
    return realStart[i]! + (r - cumulative[i]!);
  };
  const result = runAdam(
    { params, config, data: joined, steps, batchSize, lr: options.lr, rng, gradClip: options.gradClip },
    drawPosition,
  );
  return { params: result.params, loss: result.loss, samples: result.samples, steps: result.steps };
}
