/**
 * Bengio-style character MLP language model (Bengio et al. 2003): the previous C characters are
 * embedded, concatenated, passed through one ReLU hidden layer and a softmax over the vocabulary.
 * Everything is hand-written loops over typed arrays with preallocated scratch buffers, so a
 * training step allocates nothing per sample. Activations and gradients are accumulated in float64;
 * parameters are stored as float32 (the wire format).
 */
import { z } from 'zod';
import { PAD_TOKEN, VOCAB_SIZE } from './corpus.js';
import { BuiltinErrorCode, BuiltinTrainerError } from './errors.js';
import { createRng } from './rng.js';

/** Model hyper-parameters. Vocabulary size is fixed by the corpus CHARSET. */
export const builtinConfigSchema = z
  .object({
    /** Number of previous characters the model sees. */
    contextLength: z.number().int().min(1).max(64).default(6),
    /** Embedding width per character. */
    embedDim: z.number().int().min(1).max(256).default(16),
    /** Hidden-layer width. */
    hidden: z.number().int().min(1).max(4096).default(128),
  })
  .strict();

/** Model options as a caller writes them (all optional). */
export type BuiltinConfigOptions = z.input<typeof builtinConfigSchema>;

/** Parsed, defaulted and frozen model configuration. */
export type ResolvedBuiltinConfig = Readonly<z.output<typeof builtinConfigSchema>>;

/** Parses and freezes a model configuration; throws zod's error on invalid input. */
export function resolveBuiltinConfig(options: BuiltinConfigOptions = {}): ResolvedBuiltinConfig {
  return Object.freeze(builtinConfigSchema.parse(options));
}

/** Named parameter tensors, keyed by the names in {@link BUILTIN_TENSOR_NAMES}. */
export type BuiltinParams = ReadonlyMap<string, Float32Array>;

/** Fixed tensor names, in the order {@link builtinTensorSpecs} lists them. */
export const BUILTIN_TENSOR_NAMES = ['embed.weight', 'hidden.weight', 'hidden.bias', 'out.weight', 'out.bias'] as const;

/** Name, element type and shape of one parameter tensor. */
export interface BuiltinTensorSpec {
  readonly name: (typeof BUILTIN_TENSOR_NAMES)[number];
  readonly dtype: 'F32';
  readonly shape: readonly number[];
}

/**
 * Lists the model's tensors in fixed order: `embed.weight [V,E]`, `hidden.weight [H,C*E]`,
 * `hidden.bias [H]`, `out.weight [V,H]`, `out.bias [V]`. All row-major float32.
 */
export function builtinTensorSpecs(config: ResolvedBuiltinConfig): BuiltinTensorSpec[] {
  const { contextLength: C, embedDim: E, hidden: H } = config;
  const V = VOCAB_SIZE;
  return [
    { name: 'embed.weight', dtype: 'F32', shape: [V, E] },
    { name: 'hidden.weight', dtype: 'F32', shape: [H, C * E] },
    { name: 'hidden.bias', dtype: 'F32', shape: [H] },
    { name: 'out.weight', dtype: 'F32', shape: [V, H] },
    { name: 'out.bias', dtype: 'F32', shape: [V] },
  ];
}

function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Creates fresh parameters, deterministic given `seed`. Embeddings ~ N(0,1), hidden weights use
 * He initialisation for ReLU, output weights are small so the initial loss is close to ln(V).
 */
export function initBuiltinModel(config: ResolvedBuiltinConfig, seed: number | bigint): Map<string, Float32Array> {
  const rng = createRng(seed);
  const D = config.contextLength * config.embedDim;
  const scale: Record<BuiltinTensorSpec['name'], number> = {
    'embed.weight': 1,
    'hidden.weight': Math.sqrt(2 / D),
    'hidden.bias': 0,
    'out.weight': 0.05 / Math.sqrt(config.hidden),
    'out.bias': 0,
  };
  const params = new Map<string, Float32Array>();
  for (const spec of builtinTensorSpecs(config)) {
    const t = new Float32Array(elementCount(spec.shape));
    const s = scale[spec.name];
    if (s !== 0) for (let i = 0; i < t.length; i++) t[i] = rng.normal() * s;
    params.set(spec.name, t);
  }
  return params;
}

/** Copies every tensor into a new map; the input is not touched. */
export function cloneParams(params: BuiltinParams): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [name, t] of params) out.set(name, t.slice());
  return out;
}

interface ParamViews {
  readonly emb: Float32Array;
  readonly w1: Float32Array;
  readonly b1: Float32Array;
  readonly w2: Float32Array;
  readonly b2: Float32Array;
}

/** Looks up and shape-checks every tensor; throws `BUILTIN_PARAM_SHAPE_MISMATCH`. */
export function checkParams(params: BuiltinParams, config: ResolvedBuiltinConfig): void {
  viewParams(params, config);
}

function viewParams(params: BuiltinParams, config: ResolvedBuiltinConfig): ParamViews {
  const get = (spec: BuiltinTensorSpec): Float32Array => {
    const t = params.get(spec.name);
    const expected = elementCount(spec.shape);
    if (!(t instanceof Float32Array) || t.length !== expected) {
      throw new BuiltinTrainerError(
        BuiltinErrorCode.ParamShapeMismatch,
        `tensor ${spec.name} must be a Float32Array of ${expected} elements [${spec.shape.join(', ')}], got ${t === undefined ? 'nothing' : `${t.constructor.name}(${t.length})`}`,
        { name: spec.name, expected, actual: t?.length ?? -1 },
      );
    }
    return t;
  };
  const [emb, w1, b1, w2, b2] = builtinTensorSpecs(config).map(get);
  if (!emb || !w1 || !b1 || !w2 || !b2) throw new Error('unreachable: five tensor specs');
  return { emb, w1, b1, w2, b2 };
}

/**
 * Preallocated scratch and gradient buffers for one configuration. Reuse one per trainer: a step
 * then allocates nothing. Gradients are float64 and overwritten by every call that fills them.
 */
export class BuiltinWorkspace {
  readonly config: ResolvedBuiltinConfig;
  /** Gradient of the mean minibatch loss, keyed like the parameters. */
  readonly gradients: ReadonlyMap<string, Float64Array>;
  /** @internal scratch: concatenated context embeddings, hidden activations, logits and their gradients. */
  readonly x: Float64Array;
  readonly h: Float64Array;
  readonly logits: Float64Array;
  readonly dx: Float64Array;
  readonly dh: Float64Array;
  readonly ctx: Int32Array;

  constructor(config: ResolvedBuiltinConfig) {
    this.config = config;
    const D = config.contextLength * config.embedDim;
    this.x = new Float64Array(D);
    this.dx = new Float64Array(D);
    this.h = new Float64Array(config.hidden);
    this.dh = new Float64Array(config.hidden);
    this.logits = new Float64Array(VOCAB_SIZE);
    this.ctx = new Int32Array(config.contextLength);
    this.gradients = new Map(builtinTensorSpecs(config).map((s) => [s.name, new Float64Array(elementCount(s.shape))]));
  }
}

/** Throws unless every token of `data` is a valid vocabulary index. */
export function checkTokens(data: Uint8Array): void {
  for (let i = 0; i < data.length; i++) {
    if (data[i]! >= VOCAB_SIZE) {
      throw new BuiltinTrainerError(BuiltinErrorCode.TokenOutOfRange, `token ${data[i]} at offset ${i} is outside the vocabulary of ${VOCAB_SIZE}`, { offset: i, token: data[i]! });
    }
  }
}

/** Throws `BUILTIN_DATASET_TOO_SHORT` unless `data` holds at least one full context window plus a target. */
export function checkDataLength(data: Uint8Array, config: ResolvedBuiltinConfig, what: string): void {
  if (data.length < config.contextLength + 1) {
    throw new BuiltinTrainerError(
      BuiltinErrorCode.DatasetTooShort,
      `${what} has ${data.length} token(s); the builtin model needs at least contextLength + 1 = ${config.contextLength + 1}`,
      { length: data.length, required: config.contextLength + 1 },
    );
  }
}

/** Dot product of `w[off..off+n)` with `x[0..n)`; four accumulators break the add-latency chain. */
function dot(w: Float32Array, off: number, x: Float64Array, n: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let k = 0;
  for (; k + 3 < n; k += 4) {
    s0 += w[off + k]! * x[k]!;
    s1 += w[off + k + 1]! * x[k + 1]!;
    s2 += w[off + k + 2]! * x[k + 2]!;
    s3 += w[off + k + 3]! * x[k + 3]!;
  }
  for (; k < n; k++) s0 += w[off + k]! * x[k]!;
  return s0 + s1 + s2 + s3;
}

/**
 * Core kernel: mean cross-entropy (nats) of predicting `data[t]` from the C tokens before it
 * (padded with '\n' before offset 0) over `positions[0..count)`, and, if `withGrad`, the gradient
 * of that mean written into `ws.gradients`. Inputs are assumed validated.
 */
export function runBatch(
  params: BuiltinParams,
  ws: BuiltinWorkspace,
  data: Uint8Array,
  positions: ArrayLike<number>,
  count: number,
  withGrad: boolean,
): number {
  const { contextLength: C, embedDim: E, hidden: H } = ws.config;
  const V = VOCAB_SIZE;
  const D = C * E;
  const { emb, w1, b1, w2, b2 } = viewParams(params, ws.config);
  const { x, h, logits, dx, dh, ctx } = ws;
  const g = ws.gradients;
  const gEmb = g.get('embed.weight')!;
  const gW1 = g.get('hidden.weight')!;
  const gB1 = g.get('hidden.bias')!;
  const gW2 = g.get('out.weight')!;
  const gB2 = g.get('out.bias')!;
  if (withGrad) for (const t of g.values()) t.fill(0);
  const inv = 1 / count;
  let total = 0;
  for (let n = 0; n < count; n++) {
    const t = positions[n]!;
    const target = data[t]!;
    // Gather the context embeddings into x.
    for (let c = 0; c < C; c++) {
      const src = t - C + c;
      const tok = src >= 0 ? data[src]! : PAD_TOKEN;
      ctx[c] = tok;
      const eo = tok * E;
      const xo = c * E;
      for (let e = 0; e < E; e++) x[xo + e] = emb[eo + e]!;
    }
    // Hidden layer: h = relu(W1 x + b1), W1 rows contiguous.
    for (let j = 0; j < H; j++) {
      const row = j * D;
      const s = b1[j]! + dot(w1, row, x, D);
      h[j] = s > 0 ? s : 0;
    }
    // Output logits and a numerically stable log-softmax.
    let max = -Infinity;
    for (let v = 0; v < V; v++) {
      const s = b2[v]! + dot(w2, v * H, h, H);
      logits[v] = s;
      if (s > max) max = s;
    }
    const targetLogit = logits[target]!;
    let sum = 0;
    for (let v = 0; v < V; v++) {
      const ev = Math.exp(logits[v]! - max);
      logits[v] = ev;
      sum += ev;
    }
    total += Math.log(sum) + max - targetLogit;
    if (!withGrad) continue;
    // d(loss)/d(logits) = softmax - onehot, scaled for the batch mean.
    const invSum = 1 / sum;
    dh.fill(0);
    for (let v = 0; v < V; v++) {
      const dl = (logits[v]! * invSum - (v === target ? 1 : 0)) * inv;
      gB2[v] = gB2[v]! + dl;
      const row = v * H;
      for (let j = 0; j < H; j++) {
        gW2[row + j] = gW2[row + j]! + dl * h[j]!;
        dh[j] = dh[j]! + dl * w2[row + j]!;
      }
    }
    dx.fill(0);
    for (let j = 0; j < H; j++) {
      if (h[j]! <= 0) continue; // ReLU gate: inactive units pass no gradient, which halves the work.
      const d = dh[j]!;
      gB1[j] = gB1[j]! + d;
      const row = j * D;
      for (let k = 0; k < D; k++) {
        gW1[row + k] = gW1[row + k]! + d * x[k]!;
        dx[k] = dx[k]! + d * w1[row + k]!;
      }
    }
    for (let c = 0; c < C; c++) {
      const eo = ctx[c]! * E;
      const xo = c * E;
      for (let e = 0; e < E; e++) gEmb[eo + e] = gEmb[eo + e]! + dx[xo + e]!;
    }
  }
  return total * inv;
}

/** Result of {@link evaluate}: mean loss in nats per character over `samples` predicted positions. */
export interface EvalResult {
  readonly loss: number;
  readonly samples: number;
}

/**
 * Mean cross-entropy (nats per char) of the model on `data`, predicting every token from the C
 * before it (padded with '\n'). With `maxPositions` below `data.length`, evaluates that many
 * evenly spaced positions instead. Throws `BUILTIN_DATASET_TOO_SHORT` when `data` is shorter than
 * contextLength + 1, `BUILTIN_PARAM_SHAPE_MISMATCH` on wrong tensors.
 */
export function evaluate(
  params: BuiltinParams,
  config: ResolvedBuiltinConfig,
  data: Uint8Array,
  maxPositions?: number,
  workspace: BuiltinWorkspace = new BuiltinWorkspace(config),
): EvalResult {
  checkDataLength(data, config, 'evaluation data');
  checkTokens(data);
  checkParams(params, config);
  if (maxPositions !== undefined && (!Number.isSafeInteger(maxPositions) || maxPositions < 1)) {
    throw new BuiltinTrainerError(BuiltinErrorCode.InvalidArgument, `maxPositions must be a positive integer, got ${maxPositions}`, { maxPositions });
  }
  const n = Math.min(data.length, maxPositions ?? data.length);
  const positions = new Int32Array(n);
  for (let i = 0; i < n; i++) positions[i] = Math.floor((i * data.length) / n);
  // Chunked so float64 accumulation of per-chunk means stays exact enough and memory stays flat.
  const chunk = 4096;
  let total = 0;
  for (let start = 0; start < n; start += chunk) {
    const count = Math.min(chunk, n - start);
    total += runBatch(params, workspace, data, positions.subarray(start, start + count), count, false) * count;
  }
  return { loss: total / n, samples: n };
}

/** Alias of {@link evaluate}: the forward pass only, returning the mean loss. */
export const forwardLoss = evaluate;

/** Result of {@link forwardBackward}. */
export interface ForwardBackwardResult {
  /** Mean loss over the minibatch, in nats per char. */
  readonly loss: number;
  /** Number of positions in the minibatch. */
  readonly samples: number;
  /** Gradient of the mean loss; owned by the workspace and overwritten by its next use. */
  readonly gradients: ReadonlyMap<string, Float64Array>;
}

/**
 * Fused forward and backward pass over the minibatch `positions` (indices into `data` of the
 * tokens to predict). Validates its inputs; the training loop calls {@link runBatch} directly.
 */
export function forwardBackward(
  params: BuiltinParams,
  config: ResolvedBuiltinConfig,
  data: Uint8Array,
  positions: ArrayLike<number>,
  workspace: BuiltinWorkspace = new BuiltinWorkspace(config),
): ForwardBackwardResult {
  checkDataLength(data, config, 'training data');
  checkTokens(data);
  checkParams(params, config);
  if (positions.length === 0) {
    throw new BuiltinTrainerError(BuiltinErrorCode.InvalidArgument, 'minibatch is empty', {});
  }
  for (let i = 0; i < positions.length; i++) {
    const p = positions[i]!;
    if (!Number.isInteger(p) || p < 0 || p >= data.length) {
      throw new BuiltinTrainerError(BuiltinErrorCode.InvalidArgument, `position ${p} is outside the data (length ${data.length})`, { position: p, length: data.length });
    }
  }
  if (workspace.config !== config && JSON.stringify(workspace.config) !== JSON.stringify(config)) {
    throw new BuiltinTrainerError(BuiltinErrorCode.InvalidArgument, 'workspace was built for a different config', {});
  }
  const loss = runBatch(params, workspace, data, positions, positions.length, true);
  return { loss, samples: positions.length, gradients: workspace.gradients };
}
