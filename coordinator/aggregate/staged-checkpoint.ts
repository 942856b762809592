/**
 * A new checkpoint written by aggregator shards in place (issue 22). A safetensors file is its
 * header followed by its tensors' data in order, so the leader can lay every file of the new
 * checkpoint out before any value is known — the header written, the file sized — and each shard
 * writes the bytes of its part of the model straight into every file at their offsets
 * (./shard-part.ts). The leader then only reads the checkpoint to hash it (its SHA-256 stays the
 * hash of the whole file) and publishes the files; it copies nothing.
 *
 * Why not parts assembled by the leader: measured in `bench shard-aggregate`, copying the parts
 * into whole files cost the leader about 2.2 CPU-s per GB written on this machine (the kernel's
 * page-cache copy on write), as much as the files cost one process to write today, so the leader
 * would have spent per round what sharding was meant to take off it. The staged files live in the
 * store's staging folder, on the storage every shard and coordinator reaches.
 */
import { randomBytes } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { AggregationError, type Dtype, type ModelPartition, dtypeSize, invariant, openSafetensors, planSafetensors, unwrap } from '../../aggregation/index.js';
import { CoordinatorError } from '../core/errors.js';
import type { StateStore } from '../state/store.js';
import { type AggregateOptions, type AggregateResult, checkpointFiles } from './checkpoint-writer.js';

/** One file of a staged checkpoint: where it lies and where each tensor's data starts in it. */
export interface StagedCheckpointFile {
  /** `model`, an optimizer state slot, or the master weights' slot. */
  readonly slot: string;
  readonly path: string;
  /** Per tensor of the model, in order: the absolute offset of its data in this file and its dtype here. */
  readonly tensors: readonly { readonly byteOffset: number; readonly dtype: Dtype }[];
  readonly size: number;
}

/** A new checkpoint laid out in full, which shards fill and the leader publishes. Plain data (sent to shards). */
export interface CheckpointStage {
  readonly files: readonly StagedCheckpointFile[];
}

export type StageOptions = Pick<AggregateOptions, 'store' | 'globalSha256' | 'optimizer' | 'step' | 'metadata'>;

/**
 * Lays out the files `aggregateRound` would write for this step — the same headers, so the same
 * bytes once filled — in the store's staging folder, each written up to its header and sized.
 */
export async function stageCheckpoint(o: StageOptions): Promise<CheckpointStage> {
  const src = await o.store.openModel(o.globalSha256);
  let plans;
  try {
    plans = checkpointFiles(o, await openSafetensors(src));
  } finally {
    await src.close();
  }
  const files: StagedCheckpointFile[] = [];
  try {
    for (const plan of plans) {
      const layout = unwrap(planSafetensors(plan.tensors, plan.metadata), AggregationError, `checkpoint file ${plan.slot}`);
      const path = join(o.store.stagingDir, `.stage-${randomBytes(8).toString('hex')}-${plan.slot}`);
      const handle = await open(path, 'wx', 0o600);
      files.push({ slot: plan.slot, path, tensors: layout.header.tensors.map((t) => ({ byteOffset: t.byteOffset, dtype: t.dtype })), size: layout.fileSize });
      try {
        await handle.write(layout.headerBytes, 0, layout.headerBytes.length, 0);
        await handle.truncate(layout.fileSize);
        // Durable now, header and size: the shards sync the bytes they write, so at the commit
        // nothing is left to sync and the files need not be opened again.
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
    return { files };
  } catch (err) {
    await discardStagedCheckpoint({ files });
    throw err;
  }
}

/** What each shard wrote into each staged file, as its step reports it: bytes per file, in the stage's order. */
export type ShardWrites = readonly number[];

/**
 * Publishes a staged checkpoint every shard has filled: checks that each shard wrote exactly its
 * part of every file (`STATE_CORRUPT` otherwise: a shard of another partition or a step cut short),
 * hashes the checkpoint and publishes it under its SHA-256, the master and the optimizer state
 * beside it (the files are durable already: synced when staged, each part synced by its shard).
 * On failure the staged files are left for the caller to discard.
 */
export async function commitStagedCheckpoint(o: {
  readonly store: StateStore;
  readonly stage: CheckpointStage;
  readonly partition: ModelPartition;
  /** Each shard's writes, in shard order. */
  readonly written: readonly ShardWrites[];
  readonly signal?: AbortSignal;
}): Promise<AggregateResult> {
  if (o.written.length !== o.partition.shards.length) {
    throw new CoordinatorError('STATE_CORRUPT', `${o.written.length} shards reported writes for a partition of ${o.partition.shards.length}`, { shards: o.written.length });
  }
  for (const [k, file] of o.stage.files.entries()) {
    for (const [shard, writes] of o.written.entries()) {
      const expected = partBytes(o.partition, shard, file);
      if (writes[k] !== expected) {
        throw new CoordinatorError('STATE_CORRUPT', `shard ${shard} wrote ${writes[k] ?? 0} bytes of the staged ${file.slot} file, its part is ${expected}`, { shard, file: file.slot, expected });
      }
    }
  }
  o.signal?.throwIfAborted();
  const [model, ...rest] = o.stage.files;
  invariant(model !== undefined && model.slot === 'model', 'a staged checkpoint starts with its model file');
  const { sha256 } = await o.store.publishStagedModel(model.path, o.signal);
  for (const file of rest) await o.store.publishStagedOptimizerState(file.path, sha256, file.slot);
  return { modelSha256: sha256, modelBytes: model.size };
}

/** Removes what is left of a staged checkpoint (an aborted or failed attempt). */
export async function discardStagedCheckpoint(stage: CheckpointStage): Promise<void> {
  for (const file of stage.files) await rm(file.path, { force: true });
}

/** Bytes of `file` that belong to shard `shard`'s part. */
export function partBytes(partition: ModelPartition, shard: number, file: StagedCheckpointFile): number {
  return (partition.shards[shard] ?? []).reduce((n, part) => {
    const t = partition.tensors[part.tensor];
    const dtype = file.tensors[part.tensor]?.dtype;
    invariant(t !== undefined && dtype !== undefined, 'a staged file holds every tensor of the partition');
    return n + part.rows * t.rowValues * dtypeSize(dtype);
  }, 0);
}
