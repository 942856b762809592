/**
 * An aggregator shard's share of the `aggregate` phase (issue 22): the server step on the values
 * the run's partition (aggregation/partition.ts) gives one shard, written as *parts* — for each
 * file of the checkpoint (the model in its dtypes, the f32 master weights where the model is
 * narrower, each optimizer state slot) the raw bytes of the shard's tensor ranges, in order,
 * content-addressed in the {@link PartStore}. The leader then assembles the whole files from every
 * shard's parts (./assemble.ts). The mean and the server step are element-wise, so the assembled
 * checkpoint is bit for bit the one `aggregateRound` writes from the whole deltas.
 * Memory: a few slices, as for the whole model.
 */
import {
  type ModelPartition,
  type SafetensorsFile,
  type SafetensorsTensorInfo,
  encodeFromF32,
  invariant,
  isFloatDtype,
} from '../../aggregation/index.js';
import type { FileSource } from '../../common/files.js';
import { CoordinatorError } from '../core/errors.js';
import { needsMasterWeights } from '../state/checkpoint-dtype.js';
import type { PartStore, PendingFile } from '../state/store.js';
import {
  type AggregateOptions,
  type MeanSource,
  type StepInputs,
  type StepSources,
  openStepSources,
  plainMean,
  stepSlice,
} from './checkpoint-writer.js';

/** One part written: its content hash (its name in the part store) and length. */
export interface PartFile {
  readonly sha256: string;
  readonly bytes: number;
}

/** One shard's parts of a new checkpoint, file by file. */
export interface CheckpointParts {
  readonly model: PartFile;
  /** The f32 master weights' part, when the checkpoint has a tensor narrower than F32. */
  readonly master: PartFile | undefined;
  /** One per optimizer state slot, in `optimizer.stateSlots` order. */
  readonly state: readonly { readonly slot: string; readonly part: PartFile }[];
}

export interface PartAggregateOptions extends StepInputs, Pick<AggregateOptions, 'sliceElements' | 'openSpool' | 'signal' | 'pool'> {
  readonly parts: PartStore;
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
}

/** A part's tensor range: values [start, start + count) of `tensor`. */
interface PartRange {
  readonly tensor: SafetensorsTensorInfo;
  readonly start: number;
  readonly count: number;
}

/**
 * Runs the server step on shard `o.shard`'s values and writes its parts. Partial parts are
 * removed on failure or abort; the parts written are the caller's (the leader assembles and then
 * deletes them). Throws `BAD_REQUEST` when the partition does not describe the global model.
 */
export async function aggregatePart(o: PartAggregateOptions): Promise<CheckpointParts> {
  const opened: FileSource[] = [];
  const pending: PendingFile[] = [];
  let mean: MeanSource | undefined;
  try {
    const owned = o.partition.shards[o.shard];
    if (owned === undefined) throw new CoordinatorError('BAD_REQUEST', `no shard ${o.shard} in a partition of ${o.partition.shards.length}`, { shard: o.shard });
    const counts = owned.map((part) => part.rows * (o.partition.tensors[part.tensor]?.rowValues ?? 0));
    mean = o.mean ?? (await plainMean(o, counts));
    const sources = await openStepSources(o, mean, opened);
    const ranges = partRanges(o, sources.global);
    const stage = async (): Promise<PendingFile> => {
      const file = await o.parts.createPart();
      pending.push(file);
      return file;
    };
    const model = await stage();
    const master = needsMasterWeights(sources.global.tensors) ? await stage() : undefined;
    const state: PendingFile[] = [];
    for (let k = 0; k < o.optimizer.stateSlots.length; k++) state.push(await stage());
    await stepRanges(o, sources, ranges, { model, master, state });
    o.signal?.throwIfAborted();
    const commit = async (file: PendingFile): Promise<PartFile> => ({ bytes: file.bytesWritten, sha256: (await file.commit()).sha256 });
    const parts: CheckpointParts = {
      model: await commit(model),
      master: master ? await commit(master) : undefined,
      state: await Promise.all(o.optimizer.stateSlots.map(async (slot, k) => ({ slot, part: await commit(state[k]!) }))),
    };
    pending.length = 0;
    return parts;
  } finally {
    for (const p of pending) await p.discard();
    for (const f of opened) await f.close();
    await mean?.close();
  }
}

/** Steps every range slice by slice, appending θ in the tensor's dtype, the f32 master and the state to their parts. */
async function stepRanges(
  o: PartAggregateOptions,
  sources: StepSources,
  ranges: readonly PartRange[],
  out: { readonly model: PendingFile; readonly master: PendingFile | undefined; readonly state: readonly PendingFile[] },
): Promise<void> {
  let meanOffset = 0;
  for (const { tensor, start, count } of ranges) {
    const dtype = tensor.dtype;
    if (!isFloatDtype(dtype)) throw new CoordinatorError('BAD_REQUEST', `tensor ${tensor.name} is ${dtype}, not a float dtype: it cannot be aggregated`, { tensor: tensor.name, dtype });
    for (let at = 0; at < count; at += o.sliceElements) {
      o.signal?.throwIfAborted();
      const n = Math.min(o.sliceElements, count - at);
      const step = await stepSlice(sources, tensor, start + at, n, meanOffset + at);
      await out.model.write(encodeFromF32(step.theta, dtype));
      await out.master?.write(encodeFromF32(step.theta, 'F32'));
      for (const [k, file] of out.state.entries()) {
        const values = step.state[k];
        invariant(values !== undefined, "each optimizer state slot has this slice's values");
        await file.write(encodeFromF32(values, 'F32'));
      }
    }
    meanOffset += count;
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
    return { tensor, start: part.firstRow * info.rowValues, count: part.rows * info.rowValues };
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
