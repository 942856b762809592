/**
 * Whether an aggregator shard can serve the part the leader assigned it (issue 22): the assignment's
 * global model must be readable in the shard's checkpoint storage, and cutting it by the partition
 * rule (aggregation/partition.ts) with the assignment's K and alignment must give the same part.
 * A shard whose storage is not the leader's (a wrong mount, a stale copy) says so before its first
 * round instead of failing one.
 */
import { statfs } from 'node:fs/promises';
import { openSafetensors, partitionModel } from '../../aggregation/index.js';
import { openFileSource } from '../../common/files.js';
import { printable } from '../../common/text.js';
import type { ShardAssignment__Output } from '../../proto/index.js';
import { checkpointPath } from '../state/store.js';

/** What the shard reports of one assignment. */
export interface Readiness {
  readonly ready: boolean;
  /** Why not; '' when ready. */
  readonly problem: string;
  /** Free bytes in the checkpoint storage (0 when it cannot be read). */
  readonly freeBytes: number;
}

/** Problems are reported in at most this many characters (the wire's limit). */
const MAX_PROBLEM_CHARS = 512;

/** Checks `a` against the checkpoint storage at `checkpoints` (the coordinator's state dir). */
export async function checkAssignment(checkpoints: string, a: ShardAssignment__Output): Promise<Readiness> {
  let freeBytes = 0;
  try {
    const fs = await statfs(checkpoints);
    freeBytes = Number(fs.bavail) * Number(fs.bsize);
  } catch (err) {
    return notReady(`the checkpoint storage ${checkpoints} cannot be read: ${(err as Error).message}`, 0);
  }
  if (a.runId === '') return { ready: true, problem: '', freeBytes };
  let tensors: { readonly name: string; readonly shape: readonly number[] }[];
  try {
    const src = await openFileSource(checkpointPath(checkpoints, a.globalModelSha256));
    try {
      tensors = [...(await openSafetensors(src)).tensors];
    } finally {
      await src.close();
    }
  } catch (err) {
    return notReady(`global model ${a.globalModelSha256} of run ${a.runId} cannot be read from ${checkpoints}: ${(err as Error).message}`, freeBytes);
  }
  const cut = partitionModel(tensors, a.shardCount, { alignValues: a.alignValues });
  if (!cut.ok) return notReady(`the global model cannot be cut into ${a.shardCount} shards here: ${cut.issues.join('; ')}`, freeBytes);
  const p = cut.value;
  const first = p.bounds[a.shardIndex];
  const end = p.bounds[a.shardIndex + 1];
  if (first === undefined || end === undefined) return notReady(`shard index ${a.shardIndex} is outside a partition of ${a.shardCount}`, freeBytes);
  if (String(first) !== a.firstValue || String(end) !== a.endValue || String(p.totalValues) !== a.totalValues) {
    return notReady(
      `the part assigned, values [${a.firstValue}, ${a.endValue}) of ${a.totalValues}, is not the part this shard cuts from the model it reads, [${first}, ${end}) of ${p.totalValues}`,
      freeBytes,
    );
  }
  return { ready: true, problem: '', freeBytes };
}

function notReady(problem: string, freeBytes: number): Readiness {
  return { ready: false, problem: printable(problem).slice(0, MAX_PROBLEM_CHARS), freeBytes };
}
