/**
 * A shard's `aggregate` (issue 22): the leader's `ShardAggregate` checked and turned into the
 * shard's step (coordinator/aggregate/shard-part.ts) over the coordinator's checkpoint storage —
 * its global model and optimizer state read, the sites' spools read at the shard's slice, its
 * values written into the checkpoint the leader staged. Every path the leader names must lie inside
 * that storage; the part is that of the shard's assignment, recomputed from the model it reads.
 */
import { isAbsolute, relative, resolve } from 'node:path';
import {
  AggregationError,
  type Dtype,
  WIRE_ENCODINGS,
  type WireEncoding,
  createOptimizer,
  isDtype,
  openSafetensors,
  partitionModel,
  shardByteRanges,
  unwrap,
} from '../../aggregation/index.js';
import { openFileSource } from '../../common/files.js';
import type { ShardAggregate__Output, ShardAssignment__Output, ShardUnmask__Output } from '../../proto/index.js';
import { type UnmaskPlan, unmaskedMean } from '../secure/unmask.js';
import type { KernelPool } from '../aggregate/kernel-pool.js';
import type { AggregatorOptions } from '../aggregate/robust.js';
import { aggregatePart } from '../aggregate/shard-part.js';
import { aggregatorSchema } from '../config.js';
import type { CheckpointStage, ShardWrites } from '../aggregate/staged-checkpoint.js';
import { CoordinatorError } from '../core/errors.js';
import { CheckpointDir } from '../state/store.js';

/** The plain encodings a shard sums (a secure round's inputs are masked words: `secagg32`, `secagg16`). */
const PLAIN: readonly WireEncoding[] = ['f32', 'bf16', 'int8'];

/** Runs the leader's `request` for this shard's `assignment` on the storage at `checkpoints`. */
export async function shardAggregate(
  checkpoints: string,
  assignment: ShardAssignment__Output | undefined,
  request: ShardAggregate__Output,
  o: {
    readonly pool?: KernelPool;
    readonly signal?: AbortSignal;
    /** The shard's own spool of a site's part upload in the request's attempt (`on_shard` inputs); absent: a shard without a state dir. */
    readonly ownSpool?: (site: string, round: number, attempt: number) => string;
  } = {},
): Promise<ShardWrites> {
  if (!assignment || assignment.runId !== request.runId || assignment.globalModelSha256 !== request.globalModelSha256) {
    throw new CoordinatorError('BAD_REQUEST', `asked to aggregate run ${request.runId} from model ${request.globalModelSha256}, assigned ${assignment ? `run ${assignment.runId} from ${assignment.globalModelSha256}` : 'nothing'}`);
  }
  const store = new CheckpointDir(checkpoints);
  const src = await store.openModel(request.globalModelSha256);
  let tensors;
  try {
    tensors = (await openSafetensors(src)).tensors;
  } finally {
    await src.close();
  }
  const partition = partitionModel(tensors, assignment.shardCount, { alignValues: assignment.alignValues });
  if (!partition.ok) throw new CoordinatorError('BAD_REQUEST', `the model cannot be cut into ${assignment.shardCount} shards: ${partition.issues.join('; ')}`);
  let strategy: unknown;
  try {
    strategy = JSON.parse(request.optimizerJson);
  } catch {
    throw new CoordinatorError('BAD_REQUEST', 'optimizer_json is not JSON');
  }
  const optimizer = (() => {
    try {
      return createOptimizer(strategy as Parameters<typeof createOptimizer>[0]);
    } catch (err) {
      throw new CoordinatorError('BAD_REQUEST', `optimizer_json: ${err instanceof AggregationError ? err.message : String(err)}`);
    }
  })();
  const aggregator = aggregatorOf(request.aggregatorJson);
  if (request.unmask && aggregator.name !== 'mean') throw new CoordinatorError('BAD_REQUEST', `a secure round aggregates by the mean, not ${aggregator.name}`);
  const inside = (path: string): string => insideStorage(checkpoints, path);
  // A site that uploaded its part here: the shard's own spool, in the whole delta's layout.
  const spoolOf = (i: ShardAggregate__Output['inputs'][number]): string => {
    if (!i.onShard) return inside(i.path);
    if (!o.ownSpool) throw new CoordinatorError('BAD_REQUEST', `input of ${i.siteId} is on the shard, which keeps no spools (no stateDir)`);
    return o.ownSpool(i.siteId, Number(request.round), request.attempt);
  };
  const stage: CheckpointStage = {
    files: request.files.map((f) => ({
      slot: f.slot,
      path: inside(f.path),
      size: Number(f.size),
      tensors: f.tensors.map((t) => ({ byteOffset: Number(t.byteOffset), dtype: dtypeOf(t.dtype) })),
    })),
  };
  const cut = unwrap(partition, AggregationError, 'partition');
  const unmask = request.unmask;
  for (const i of unmask ? request.inputs : []) {
    if (i.encoding !== `secagg${unmask?.modulusBits}`) throw new CoordinatorError('BAD_REQUEST', `input of ${i.siteId} has encoding ${JSON.stringify(i.encoding)}, not secagg${unmask?.modulusBits}`);
  }
  const inputs = (unmask ? [] : request.inputs).map((i) => {
    const encoding = i.encoding as WireEncoding;
    if (!WIRE_ENCODINGS.includes(encoding) || !PLAIN.includes(encoding)) throw new CoordinatorError('BAD_REQUEST', `input of ${i.siteId} has encoding ${JSON.stringify(i.encoding)}, not a plain one`);
    // A whole delta's spool: this shard's values start where its first part's bytes do.
    const offset = shardByteRanges(cut, assignment.shardIndex, encoding)[0]?.start ?? 0;
    return { site: i.siteId, weight: i.weight, path: spoolOf(i), encoding, offset };
  });
  const previous = request.previousStateSha256;
  const first = cut.bounds[assignment.shardIndex] ?? 0;
  // A secure round: the unmasked mean of the shard's range of the survivors' whole masked spools.
  const masked = request.inputs.map(spoolOf);
  const mean = unmask ? await unmaskedMean(unmaskPlanOf(unmask, masked.length), masked, first, unmask.weightSum, openFileSource, { ...(o.pool ? { pool: o.pool } : {}), ...(o.signal ? { signal: o.signal } : {}) }) : undefined;
  return aggregatePart({
    // A secure round's masked spools are read by the unmasking mean, never decoded as plain values.
    ...(mean ? { mean } : {}),
    aggregator,
    inputs,
    store,
    stage,
    partition: cut,
    shard: assignment.shardIndex,
    globalSha256: request.globalModelSha256,
    optimizer,
    step: Number(request.step),
    previousStateSha256: previous === '' ? undefined : previous,
    sliceElements: Math.max(1024, request.sliceElements),
    openSpool: openFileSource,
    ...(o.pool ? { pool: o.pool } : {}),
    ...(o.signal ? { signal: o.signal } : {}),
  });
}

/** The run's aggregator as the leader sent it (`aggregator_json`), checked as the run config checks it. */
function aggregatorOf(json: string): AggregatorOptions {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    throw new CoordinatorError('BAD_REQUEST', `aggregator_json ${JSON.stringify(json.slice(0, 64))} is not JSON`);
  }
  const parsed = aggregatorSchema.safeParse(value);
  if (!parsed.success) throw new CoordinatorError('BAD_REQUEST', `aggregator_json: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'value'}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

/** The unmasking the leader sent, checked: seeds of 32 bytes, a modulus of 16 or 32 bits. */
function unmaskPlanOf(u: ShardUnmask__Output, survivors: number): UnmaskPlan {
  const seed = (b: Buffer): Uint8Array => {
    if (b.length !== 32) throw new CoordinatorError('BAD_REQUEST', `a mask seed of ${b.length} bytes, not 32`);
    return new Uint8Array(b);
  };
  if (u.modulusBits !== 16 && u.modulusBits !== 32) throw new CoordinatorError('BAD_REQUEST', `modulus_bits ${u.modulusBits}, not 16 or 32`);
  if (u.selfSeeds.length !== survivors) throw new CoordinatorError('BAD_REQUEST', `${u.selfSeeds.length} self seeds for ${survivors} survivors' spools`);
  if (!(u.weightSum > 0)) throw new CoordinatorError('BAD_REQUEST', `weight_sum ${u.weightSum}, not positive`);
  return {
    survivors,
    selfSeeds: u.selfSeeds.map(seed),
    droppedPairs: u.droppedPairs.map((p) => ({ survivor: p.survivor, dropped: p.dropped, seed: seed(p.seed) })),
    clip: u.clip,
    quantBits: u.quantBits,
    modulusBits: u.modulusBits,
  };
}

/** `path` (relative to the storage) resolved inside `root`; `BAD_REQUEST` for one that leaves it. */
function insideStorage(root: string, path: string): string {
  const full = resolve(root, path);
  const rel = relative(resolve(root), full);
  if (isAbsolute(path) || rel === '' || rel.startsWith('..') || isAbsolute(rel)) throw new CoordinatorError('BAD_REQUEST', `path ${JSON.stringify(path)} is not inside the checkpoint storage`);
  return full;
}

function dtypeOf(dtype: string): Dtype {
  if (!isDtype(dtype)) throw new CoordinatorError('BAD_REQUEST', `unknown dtype ${JSON.stringify(dtype)} in a staged file`);
  return dtype;
}
