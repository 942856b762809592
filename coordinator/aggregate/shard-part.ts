/**
 * An aggregator shard's share of the `aggregate` phase (issue 22): the server step on the values
 * the run's partition (aggregation/partition.ts) gives one shard, its results written straight into
 * the new checkpoint's files the leader staged (./staged-checkpoint.ts) — the model in each
 * tensor's dtype, each optimizer state slot and the f32 master — at the offsets of the shard's
 * tensor ranges. The mean and the server step are element-wise, so the filled files are bit for
 * bit the ones `aggregateRound` writes from the whole deltas. Memory: a few slices, as for the
 * whole model.
 */
import { open, type FileHandle } from 'node:fs/promises';
import {
  type ModelPartition,
  type SafetensorsFile,
  type SafetensorsTensorInfo,
  dtypeSize,
  encodeFromF32,
  invariant,
  isFloatDtype,
} from '../../aggregation/index.js';
import type { FileSource } from '../../common/files.js';
import { CoordinatorError } from '../core/errors.js';
import {
  type AggregateOptions,
  type MeanSource,
  type StepInputs,
  type StepSources,
  SliceBuffers,
  floatDtype,
  sliceLength,
  openStepSources,
  plainMean,
  stepSlice,
} from './checkpoint-writer.js';
import { isRobust, robustMean, type AggregatorOptions } from './robust.js';
import type { CheckpointStage, ShardWrites } from './staged-checkpoint.js';

export interface PartAggregateOptions extends StepInputs, Pick<AggregateOptions, 'sliceElements' | 'openSpool' | 'signal' | 'pool'> {
  /** The new checkpoint's files, staged by the leader. */
  readonly stage: CheckpointStage;
  /** The run's partition of the global model, and which of its shards this is. */
  readonly partition: ModelPartition;
  readonly shard: number;
  /**
   * Plain rounds: each verified upload's part, the shard's slice of the whole delta's wire bytes
   * (`shardByteRanges`); its `weight` is the site's, normalised over all inputs as in
   * `aggregateRound`.
   */
  readonly inputs: AggregateOptions['inputs'];
  /** Secure rounds: the unmasked mean of the shard's values instead, offsets from its first value. */
  readonly mean?: MeanSource;
  /** Plain rounds: how the inputs combine (default the weighted mean); a robust one, coordinate-wise over the part. */
  readonly aggregator?: AggregatorOptions;
}

/** A part's tensor range: values [start, start + count) of `tensor`. */
interface PartRange {
  readonly index: number;
  readonly tensor: SafetensorsTensorInfo;
  readonly start: number;
  readonly count: number;
}

/**
 * Runs the server step on shard `o.shard`'s values and writes them into the staged files, synced
 * before it returns; returns the bytes written to each file (the leader checks them). Throws
 * `BAD_REQUEST` when the partition or the stage does not describe the global model.
 */
export async function aggregatePart(o: PartAggregateOptions): Promise<ShardWrites> {
  const opened: FileSource[] = [];
  const handles: FileHandle[] = [];
  let mean: MeanSource | undefined;
  try {
    const owned = o.partition.shards[o.shard];
    if (owned === undefined) throw new CoordinatorError('BAD_REQUEST', `no shard ${o.shard} in a partition of ${o.partition.shards.length}`, { shard: o.shard });
    const counts = owned.map((part) => part.rows * (o.partition.tensors[part.tensor]?.rowValues ?? 0));
    mean = o.mean ?? (o.aggregator && isRobust(o.aggregator) ? await robustMean(o.aggregator, o.inputs, counts, o.openSpool, o.signal) : await plainMean(o, counts));
    const sources = await openStepSources(o, mean, opened);
    const ranges = partRanges(o, sources.global);
    for (const file of o.stage.files) {
      if (file.tensors.length !== sources.global.tensors.length) throw new CoordinatorError('BAD_REQUEST', `the staged ${file.slot} file has ${file.tensors.length} tensors, the model ${sources.global.tensors.length}`);
      handles.push(await open(file.path, 'r+'));
    }
    const written = await stepRanges(o, sources, ranges, handles);
    for (const h of handles) await h.datasync();
    return written;
  } finally {
    for (const h of handles) await h.close();
    for (const f of opened) await f.close();
    await mean?.close();
  }
}

/** Steps every range slice by slice, writing θ, the state slots and the master at their offsets in each staged file. */
async function stepRanges(o: PartAggregateOptions, sources: StepSources, ranges: readonly PartRange[], handles: readonly FileHandle[]): Promise<number[]> {
  const written = o.stage.files.map(() => 0);
  const slots = o.optimizer.stateSlots;
  const buffers = new SliceBuffers(sliceLength(o.sliceElements, ranges.map((r) => r.count)), slots.length);
  let meanOffset = 0;
  for (const { index, tensor, start, count } of ranges) {
    // Refused before any of its slices is read or written.
    floatDtype(tensor);
    for (let at = 0; at < count; at += o.sliceElements) {
      o.signal?.throwIfAborted();
      const n = Math.min(o.sliceElements, count - at);
      const step = await stepSlice(sources, tensor, start + at, n, meanOffset + at, buffers);
      for (const [k, file] of o.stage.files.entries()) {
        const place = file.tensors[index];
        invariant(place !== undefined, 'checked: each staged file holds every tensor');
        const slot = slots.indexOf(file.slot);
        const values = file.slot === 'model' || slot < 0 ? step.theta : step.state[slot];
        invariant(values !== undefined, "each optimizer state slot has this slice's values");
        if (!isFloatDtype(place.dtype)) throw new CoordinatorError('BAD_REQUEST', `the staged ${file.slot} file holds ${tensor.name} as ${place.dtype}`);
        const bytes = encodeFromF32(values, place.dtype, buffers.narrow);
        const position = place.byteOffset + (start + at) * dtypeSize(place.dtype);
        await writeAt(handles[k]!, bytes, position);
        written[k]! += bytes.length;
      }
    }
    meanOffset += count;
  }
  return written;
}

/** Writes all of `bytes` at `position`. */
async function writeAt(handle: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < bytes.length; ) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, position + done);
    done += bytesWritten;
  }
}

/**
 * The shard's parts as tensor ranges of the global model, after checking that the partition
 * describes that model: the same tensors, in the same order, with the same value counts.
 */
function partRanges(o: PartAggregateOptions, global: SafetensorsFile): PartRange[] {
  const mismatch = partitionMismatch(o.partition, global.tensors);
  if (mismatch !== undefined) throw new CoordinatorError('BAD_REQUEST', `the partition does not describe checkpoint ${o.globalSha256}: ${mismatch}`, { model: o.globalSha256 });
  return (o.partition.shards[o.shard] ?? []).map((part) => {
    const info = o.partition.tensors[part.tensor];
    const tensor = global.tensors[part.tensor];
    invariant(info !== undefined && tensor !== undefined, 'a checked partition names only its tensors');
    return { index: part.tensor, tensor, start: part.firstRow * info.rowValues, count: part.rows * info.rowValues };
  });
}

/** Why `partition` is not a partition of `tensors`, or undefined when it is. */
export function partitionMismatch(partition: ModelPartition, tensors: readonly SafetensorsTensorInfo[]): string | undefined {
  if (partition.tensors.length !== tensors.length) return `it has ${partition.tensors.length} tensors, the model ${tensors.length}`;
  for (const [k, t] of tensors.entries()) {
    const p = partition.tensors[k];
    invariant(p !== undefined, 'the lengths are equal');
    const rows = t.shape.length === 0 ? 1 : (t.shape[0] ?? 1);
    if (p.name !== t.name || p.values !== t.elements || p.rows !== rows || p.rows * p.rowValues !== p.values) {
      return `tensor ${k} is ${JSON.stringify(p.name)} of ${p.rows} × ${p.rowValues} values there, ${JSON.stringify(t.name)} of shape [${t.shape.join(', ')}] in the model`;
    }
  }
  return undefined;
}
