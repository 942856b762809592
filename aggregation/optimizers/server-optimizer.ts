/**
 * Server optimizers: turn the weighted mean delta of a round into a new global model. All are
 * elementwise, so they run over bounded slices of tensors of any size.
 */
import { AggregationError } from '../errors.js';
import { invariant } from '../invariant.js';
import { bytesOf, nativeKernels } from '../native.js';
import { unwrap } from '../result.js';
import { type OptimizerName, type OptimizerOptions, type ResolvedOptimizerOptions, parseOptimizerOptions } from './options.js';

/**
 * One server optimizer. The pseudo-gradient is g = −meanDelta, where Δ = local − global
 * (Douillard et al. 2023; Reddi et al. 2021 write the same rules in terms of Δ).
 */
export interface ServerOptimizer {
  readonly name: OptimizerName;
  /** Resolved hyper-parameters, for audit logs. */
  readonly params: Readonly<Record<string, number>>;
  /** Names of the per-tensor state buffers `apply` needs (e.g. `['momentum']`, `['m', 'v']`). */
  readonly stateSlots: readonly string[];
  /**
   * Updates `global` in place for one slice given the weighted mean delta of the same slice.
   * `state[slot]` are slices of the same length, updated in place (zero at step 1). `step` is the
   * 1-based count of server steps including this one. Arithmetic is f64 per element, stored as f32.
   */
  apply(global: Float32Array, meanDelta: Float32Array, state: Record<string, Float32Array>, step: number): void;
}

type Update = (global: Float32Array, delta: Float32Array, state: Record<string, Float32Array>) => void;

function slot(state: Record<string, Float32Array>, name: string): Float32Array {
  const buffer = state[name];
  invariant(buffer !== undefined, 'each state slot of the optimizer is present (checkShapes runs before any update)');
  return buffer;
}

function checkShapes(
  slots: readonly string[],
  global: Float32Array,
  delta: Float32Array,
  state: Record<string, Float32Array>,
  step: number,
): void {
  if (!Number.isSafeInteger(step) || step < 1) throw new AggregationError('OUT_OF_RANGE', `step ${step} must be an integer >= 1`, { step });
  if (delta.length !== global.length) {
    throw new AggregationError('TENSOR_MISMATCH', `meanDelta has ${delta.length} elements, global ${global.length}`, { global: global.length, delta: delta.length });
  }
  for (const name of slots) {
    const buffer = state[name];
    if (buffer === undefined || buffer.length !== global.length) {
      throw new AggregationError('TENSOR_MISMATCH', `state slot ${name} is ${buffer === undefined ? 'missing' : `${buffer.length} elements`}, need ${global.length}`, {
        slot: name,
        need: global.length,
        got: buffer?.length,
      });
    }
  }
}

function fedavg(lr: number): Update {
  return (theta, delta) => {
    const native = nativeKernels()?.momentumStep;
    if (native !== undefined) return native(bytesOf(theta), bytesOf(delta), null, lr, 0, false);
    for (let i = 0; i < theta.length; i++) theta[i] = theta[i]! - lr * -delta[i]!;
  };
}

/** Heavy-ball momentum (FedAvgM) or, with `nesterov`, DiLoCo's outer Nesterov step. */
function momentumUpdate(lr: number, mu: number, nesterov: boolean): Update {
  return (theta, delta, state) => {
    const v = slot(state, 'momentum');
    const native = nativeKernels()?.momentumStep;
    if (native !== undefined) return native(bytesOf(theta), bytesOf(delta), bytesOf(v), lr, mu, nesterov);
    for (let i = 0; i < theta.length; i++) {
      const g = -delta[i]!;
      const vi = mu * v[i]! + g;
      v[i] = vi;
      theta[i] = theta[i]! - lr * (nesterov ? g + mu * vi : vi);
    }
  };
}

type SecondMoment = 'adam' | 'yogi' | 'adagrad';

/** Reddi et al. 2021, Algorithm 2 (no bias correction); the variants differ only in v's update. */
function adaptive(kind: SecondMoment, lr: number, beta1: number, beta2: number, tau: number): Update {
  return (theta, delta, state) => {
    const m = slot(state, 'm');
    const v = slot(state, 'v');
    for (let i = 0; i < theta.length; i++) {
      const g = -delta[i]!;
      const g2 = g * g;
      const mi = beta1 * m[i]! + (1 - beta1) * g;
      const vOld = v[i]!;
      const vi =
        kind === 'adam' ? beta2 * vOld + (1 - beta2) * g2 : kind === 'yogi' ? vOld - (1 - beta2) * g2 * Math.sign(vOld - g2) : vOld + g2;
      m[i] = mi;
      v[i] = vi;
      theta[i] = theta[i]! - (lr * mi) / (Math.sqrt(vi) + tau);
    }
  };
}

function build(o: ResolvedOptimizerOptions): { slots: readonly string[]; update: Update } {
  switch (o.name) {
    case 'fedavg':
      return { slots: [], update: fedavg(o.lr) };
    case 'fedavgm':
      return { slots: ['momentum'], update: momentumUpdate(o.lr, o.momentum, false) };
    case 'diloco':
      return { slots: ['momentum'], update: momentumUpdate(o.lr, o.momentum, true) };
    case 'fedadam':
      return { slots: ['m', 'v'], update: adaptive('adam', o.lr, o.beta1, o.beta2, o.tau) };
    case 'fedyogi':
      return { slots: ['m', 'v'], update: adaptive('yogi', o.lr, o.beta1, o.beta2, o.tau) };
    case 'fedadagrad':
      return { slots: ['m', 'v'], update: adaptive('adagrad', o.lr, o.beta1, 0, o.tau) };
  }
}

/**
 * Creates a server optimizer from options (defaults: see {@link optimizerDefaults}). Throws
 * `OPTIONS_INVALID` with `context.issues` naming each bad field. The caller's object is not kept.
 */
export function createOptimizer(options: OptimizerOptions): ServerOptimizer {
  const resolved = unwrap(parseOptimizerOptions(options), AggregationError, 'invalid optimizer options');
  const { name, ...params } = resolved;
  const { slots, update } = build(resolved);
  return Object.freeze({
    name,
    params: Object.freeze(params as Record<string, number>),
    stateSlots: Object.freeze([...slots]),
    apply(global: Float32Array, meanDelta: Float32Array, state: Record<string, Float32Array>, step: number): void {
      checkShapes(slots, global, meanDelta, state, step);
      update(global, meanDelta, state);
    },
  });
}
