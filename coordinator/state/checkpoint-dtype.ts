/**
 * The dtype of a run's checkpoints and the f32 master weights kept beside them. A checkpoint is
 * what sites download, in the run's checkpoint dtype; the server optimizer steps an f32 copy, so
 * an update smaller than half a bf16 step is carried to the next round instead of rounded away
 * (DESIGN.md: "a bf16 master would swallow small updates"). See docs/decisions.md, 2026-12-05.
 */
import { isFloatDtype, narrowingOverflow, type Dtype, type FloatDtype, type SafetensorsTensorInfo } from '../../aggregation/index.js';
import { CoordinatorError } from '../core/errors.js';

/** `run.checkpointDtype` values and the safetensors dtype each writes. */
export const CHECKPOINT_DTYPES = { f32: 'F32', bf16: 'BF16', f16: 'F16' } as const satisfies Record<string, FloatDtype>;

/** A value of `run.checkpointDtype`. */
export type CheckpointDtype = keyof typeof CHECKPOINT_DTYPES;

/**
 * The optimizer-state slot (`optimizer/<sha256>.master.safetensors`) that holds a checkpoint's
 * weights in F32, present beside every checkpoint with a tensor narrower than F32 that a round
 * committed, and beside an initial model the import narrowed.
 */
export const MASTER_WEIGHTS_SLOT = 'master';

/** Whether a checkpoint with these tensors is rounded when written from f32, so needs a master beside it. */
export function needsMasterWeights(tensors: readonly Pick<SafetensorsTensorInfo, 'dtype'>[]): boolean {
  return tensors.some((t) => t.dtype !== 'F32');
}

/**
 * Refuses a slice of f32 values that `dtype` cannot hold: a finite value that narrowing would
 * turn into ±Inf (f16 beyond 65504) throws CHECKPOINT_OVERFLOW, naming the tensor and element,
 * rather than a checkpoint whose infinities every site's next delta would turn into NaN.
 */
export function checkFitsDtype(values: Float32Array, dtype: Dtype, tensor: string, elemOffset: number): void {
  if (!isFloatDtype(dtype)) return; // the server step refuses a non-float tensor itself (floatDtype)
  const at = narrowingOverflow(values, dtype);
  if (at < 0) return;
  throw new CoordinatorError('CHECKPOINT_OVERFLOW', `tensor ${tensor} element ${elemOffset + at} is ${values[at]}, beyond the range of the checkpoint dtype ${dtype}`, {
    tensor,
    element: elemOffset + at,
    dtype,
  });
}
