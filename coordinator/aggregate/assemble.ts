/**
 * The leader's half of a sharded `aggregate` phase (issue 22): every shard has written its parts of
 * the new checkpoint (./shard-part.ts); the leader streams them, shard after shard, into the whole
 * files — the checkpoint under the same header `aggregateRound` writes, so its SHA-256 is the hash
 * of the whole file as with one process, the f32 master and the optimizer state beside it — and
 * commits them as `aggregateRound` does. No arithmetic: a sequential copy, hashed once by the
 * checkpoint's own content addressing.
 *
 * A part is trusted by its name: shards are inside the coordinator operator's trust boundary and
 * write parts through the same atomic, content-addressed files as checkpoints, so a part under its
 * hash is complete. Its length is checked against the partition before a byte is copied, so a part
 * of another partition, dtype or optimizer is refused (`STATE_CORRUPT`), never half-assembled.
 * Memory: one chunk.
 */
import { type Dtype, type ModelPartition, type SafetensorsWriter, dtypeSize, invariant, openSafetensors } from '../../aggregation/index.js';
import type { FileSource } from '../../common/files.js';
import { CoordinatorError } from '../core/errors.js';
import { MASTER_WEIGHTS_SLOT } from '../state/checkpoint-dtype.js';
import type { PartStore, PendingFile } from '../state/store.js';
import { type AggregateOptions, type AggregateResult, createCheckpointWriters } from './checkpoint-writer.js';
import { partitionMismatch, type CheckpointParts, type PartFile } from './shard-part.js';

/** Bytes copied per read. */
const CHUNK_BYTES = 8 << 20;

export interface AssembleOptions extends Pick<AggregateOptions, 'store' | 'globalSha256' | 'optimizer' | 'step' | 'metadata' | 'signal'> {
  readonly parts: PartStore;
  readonly partition: ModelPartition;
  /** Every shard's parts, in shard order. */
  readonly shards: readonly CheckpointParts[];
}

/** One file to assemble: its writer, and each shard's part of it with the part's values' dtype. */
interface Assembly {
  readonly what: string;
  readonly writer: SafetensorsWriter;
  readonly partOf: (shard: CheckpointParts) => PartFile | undefined;
  readonly dtypeOf: (tensor: number) => Dtype;
}

/**
 * Assembles and commits the new checkpoint, its master weights and optimizer state from the
 * shards' parts, then deletes the parts. Partial files are removed on failure or abort, and the
 * parts are then kept (an attempt may assemble again).
 */
export async function assembleCheckpoint(o: AssembleOptions): Promise<AggregateResult> {
  if (o.shards.length !== o.partition.shards.length) {
    throw new CoordinatorError('STATE_CORRUPT', `${o.shards.length} shards' parts for a partition of ${o.partition.shards.length}`, { shards: o.shards.length });
  }
  const opened: FileSource[] = [];
  const pending: PendingFile[] = [];
  try {
    const globalSrc = await o.store.openModel(o.globalSha256);
    opened.push(globalSrc);
    const global = await openSafetensors(globalSrc);
    const mismatch = partitionMismatch(o.partition, global.tensors);
    if (mismatch !== undefined) throw new CoordinatorError('STATE_CORRUPT', `the partition does not describe checkpoint ${o.globalSha256}: ${mismatch}`, { model: o.globalSha256 });
    const out = await createCheckpointWriters(o, global, pending);
    const dtypeOf = (tensor: number): Dtype => {
      const t = global.tensors[tensor];
      invariant(t !== undefined, 'a checked partition names only the model’s tensors');
      return t.dtype;
    };
    const files: Assembly[] = [{ what: 'model', writer: out.model, partOf: (s) => s.model, dtypeOf }];
    if (out.master) files.push({ what: MASTER_WEIGHTS_SLOT, writer: out.master.writer, partOf: (s) => s.master, dtypeOf: () => 'F32' });
    for (const [k, { slot, writer }] of out.state.entries()) {
      files.push({ what: slot, writer, partOf: (s) => (s.state[k]?.slot === slot ? s.state[k]?.part : undefined), dtypeOf: () => 'F32' });
    }
    for (const file of files) await assembleFile(o, file, opened);
    const { bytesWritten } = await out.model.finish();
    for (const { writer } of out.state) await writer.finish();
    await out.master?.writer.finish();
    o.signal?.throwIfAborted();
    const { sha256 } = await out.modelFile.commit();
    for (const { slot, file } of out.state) await file.commit(`${sha256}.${slot}`);
    await out.master?.file.commit(`${sha256}.${MASTER_WEIGHTS_SLOT}`);
    pending.length = 0;
    for (const f of opened.splice(0)) await f.close();
    for (const shard of o.shards) {
      for (const part of [shard.model, shard.master, ...shard.state.map((s) => s.part)]) if (part) await o.parts.deletePart(part.sha256);
    }
    return { modelSha256: sha256, modelBytes: bytesWritten };
  } finally {
    for (const p of pending) await p.discard();
    for (const f of opened) await f.close();
  }
}

/** Copies every shard's part of one file into its writer, each checked for its length first. */
async function assembleFile(o: AssembleOptions, file: Assembly, opened: FileSource[]): Promise<void> {
  for (const [shard, parts] of o.partition.shards.entries()) {
    const shardParts = o.shards[shard];
    invariant(shardParts !== undefined, 'one set of parts per shard, checked');
    const part = file.partOf(shardParts);
    const ranges = parts.map((p) => {
      const t = o.partition.tensors[p.tensor];
      invariant(t !== undefined, 'a checked partition names only its tensors');
      return { name: t.name, bytes: p.rows * t.rowValues * dtypeSize(file.dtypeOf(p.tensor)) };
    });
    const expected = ranges.reduce((n, r) => n + r.bytes, 0);
    if (part === undefined) throw new CoordinatorError('STATE_CORRUPT', `shard ${shard} sent no ${file.what} part`, { shard, file: file.what });
    const src = await o.parts.openPart(part.sha256);
    opened.push(src);
    if (src.size !== expected || part.bytes !== expected) {
      throw new CoordinatorError('STATE_CORRUPT', `shard ${shard}'s ${file.what} part ${part.sha256} holds ${src.size} bytes, its range ${expected}`, {
        shard,
        file: file.what,
        bytes: src.size,
        expected,
      });
    }
    let at = 0;
    for (const range of ranges) {
      for (let done = 0; done < range.bytes; ) {
        o.signal?.throwIfAborted();
        const n = Math.min(CHUNK_BYTES, range.bytes - done);
        await file.writer.writeTensorBytes(range.name, await src.read(at, n));
        at += n;
        done += n;
      }
    }
    opened.splice(opened.indexOf(src), 1);
    await src.close();
  }
}
