/**
 * Sharded aggregation (issue 22): the leader stages the new checkpoint's files
 * (coordinator/aggregate/staged-checkpoint.ts), each shard steps its part of the model from its
 * slices of the sites' deltas and writes it into them (coordinator/aggregate/shard-part.ts), and
 * the leader hashes and publishes them. The checkpoint, master weights and optimizer state must be
 * the files one process writes from the whole deltas, bit for bit, whatever K.
 */
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  type Dtype,
  type ModelPartition,
  type WireEncoding,
  createOptimizer,
  createSafetensorsWriter,
  encodeInt8Blocks,
  f32ToBf16,
  memorySink,
  partitionModel,
  shardByteRanges,
  unwrap,
  AggregationError,
} from '../../../aggregation/index.js';
import { openFileSource } from '../../../common/files.js';
import { aggregateRound, type SpoolInput } from '../../../coordinator/aggregate/checkpoint-writer.js';
import { KernelPool } from '../../../coordinator/aggregate/kernel-pool.js';
import { isRobust, robustMean, type AggregatorOptions } from '../../../coordinator/aggregate/robust.js';
import { aggregatePart } from '../../../coordinator/aggregate/shard-part.js';
import { shardAggregate } from '../../../coordinator/shards/shard-aggregate.js';
import type { ShardAggregate__Output } from '../../../proto/index.js';
import { commitStagedCheckpoint, discardStagedCheckpoint, stageCheckpoint, type CheckpointStage, type ShardWrites } from '../../../coordinator/aggregate/staged-checkpoint.js';
import { CoordinatorError } from '../../../coordinator/core/errors.js';
import { MASTER_WEIGHTS_SLOT } from '../../../coordinator/state/checkpoint-dtype.js';
import { importInitialModel } from '../../../coordinator/state/model-import.js';
import { LocalStateStore } from '../../../coordinator/state/store.js';
import { seededValues } from '../../helpers/seeded-values.js';

// Mixed dtypes (so the checkpoint keeps f32 master weights), row lengths that do and do not divide
// the 128-value cut alignment, a 1-D tensor shorter than one unit and a one-value tensor.
const TENSORS: readonly { name: string; dtype: Dtype; shape: number[] }[] = [
  { name: 'embed', dtype: 'BF16', shape: [260, 64] },
  { name: 'up', dtype: 'BF16', shape: [40, 96] },
  { name: 'norm', dtype: 'F32', shape: [64] },
  { name: 'scale', dtype: 'F16', shape: [1] },
  { name: 'head', dtype: 'BF16', shape: [130, 64] },
];
const SIZES = TENSORS.map((t) => t.shape.reduce((a, d) => a * d, 1));
const OPTIMIZER = { name: 'diloco', lr: 0.7, momentum: 0.9 } as const;
const SITES: readonly { site: string; weight: number; encoding: WireEncoding }[] = [
  { site: 'a', weight: 3, encoding: 'f32' },
  { site: 'b', weight: 1, encoding: 'bf16' },
  { site: 'c', weight: 5, encoding: 'int8' },
];

let dir: string;
let pool: KernelPool;
const stores: LocalStateStore[] = [];
beforeAll(async () => {
  pool = await KernelPool.start({ threads: 2, subElements: 1024 });
});
afterAll(async () => {
  await pool.close();
});
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fedhpc-shard-aggregate-'));
});
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  await rm(dir, { recursive: true, force: true });
});

const values = seededValues;

/** A state dir holding the same initial model. */
async function storeWithModel(name: string): Promise<{ store: LocalStateStore; sha: string }> {
  const store = await LocalStateStore.open(join(dir, name), () => 0);
  stores.push(store);
  const sink = memorySink();
  const w = await createSafetensorsWriter(sink, TENSORS, { format: 'pt', license: 'Apache-2.0' });
  for (const [k, t] of TENSORS.entries()) await w.writeF32(t.name, values(SIZES[k]!, 10 + k, 1));
  await w.finish();
  const path = join(dir, `${name}-initial.safetensors`);
  await writeFile(path, sink.bytes());
  return { store, sha: (await importInitialModel(store, path, 1000)).sha256 };
}

/** One site's whole delta on the wire: every tensor encoded on its own, in the model's order. */
function wholeDelta(encoding: WireEncoding, seed: number): Buffer {
  return Buffer.concat(
    SIZES.map((n, k) => {
      const delta = values(n, seed + k, 1e-2);
      if (encoding === 'f32') return Buffer.from(delta.buffer);
      if (encoding === 'bf16') return Buffer.from(f32ToBf16(delta).buffer);
      return Buffer.from(encodeInt8Blocks(delta));
    }),
  );
}

/** The sites' whole deltas of server step `step`, each with its encoding and weight. */
function deltasOf(step: number): { input: Omit<SpoolInput, 'path'>; bytes: Buffer }[] {
  return SITES.map((s, k) => ({ input: { site: s.site, weight: s.weight, encoding: s.encoding }, bytes: wholeDelta(s.encoding, 1000 * step + 100 * k) }));
}

interface StepRun {
  readonly step: number;
  readonly global: string;
  readonly previous: string | undefined;
  /** How the deltas combine (default the weighted mean). */
  readonly aggregator?: AggregatorOptions;
}

/** The server step in one process, from the whole deltas. */
async function wholeStep(store: LocalStateStore, run: StepRun): Promise<string> {
  const spools = await store.spoolDir(run.step, 0);
  const inputs: SpoolInput[] = [];
  for (const d of deltasOf(run.step)) {
    const path = join(spools, `${d.input.site}.delta`);
    await writeFile(path, d.bytes);
    inputs.push({ ...d.input, path });
  }
  const robust = run.aggregator && isRobust(run.aggregator) ? await robustMean(run.aggregator, inputs, SIZES, openFileSource) : undefined;
  const result = await aggregateRound({
    ...(robust ? { mean: robust } : {}),
    store,
    globalSha256: run.global,
    inputs,
    optimizer: createOptimizer(OPTIMIZER),
    step: run.step,
    previousStateSha256: run.previous,
    sliceElements: 1000,
    openSpool: openFileSource,
    metadata: { fedhpc_round: String(run.step) },
  });
  return result.modelSha256;
}

/**
 * Each shard's slice of each whole delta: written as that shard's own spools (as sites will upload
 * parts to shards), or `inPlace`, read from the whole delta's spool at the slice's offset.
 */
async function partSpools(store: LocalStateStore, partition: ModelPartition, shard: number, step: number, inPlace = false): Promise<SpoolInput[]> {
  const spools = await store.spoolDir(step, shard);
  const inputs: SpoolInput[] = [];
  for (const d of deltasOf(step)) {
    const ranges = shardByteRanges(partition, shard, d.input.encoding);
    const [start, end] = [ranges[0]!.start, ranges[ranges.length - 1]!.end];
    const path = join(spools, `${d.input.site}.${inPlace ? 'delta' : 'part'}`);
    await writeFile(path, inPlace ? d.bytes : d.bytes.subarray(start, end));
    inputs.push({ ...d.input, path, ...(inPlace ? { offset: start } : {}) });
  }
  return inputs;
}

/** The leader's stage of step `run.step`'s checkpoint. */
const stageFor = (store: LocalStateStore, run: StepRun): Promise<CheckpointStage> =>
  stageCheckpoint({ store, globalSha256: run.global, optimizer: createOptimizer(OPTIMIZER), step: run.step, metadata: { fedhpc_round: String(run.step) } });

/** Shard `shard`'s step into `stage`. */
async function shardStep(store: LocalStateStore, partition: ModelPartition, stage: CheckpointStage, shard: number, run: StepRun, o: { pool?: KernelPool; sliceElements?: number; inPlace?: boolean } = {}): Promise<ShardWrites> {
  return aggregatePart({
    store,
    stage,
    partition,
    shard,
    globalSha256: run.global,
    inputs: await partSpools(store, partition, shard, run.step, o.inPlace),
    ...(run.aggregator ? { aggregator: run.aggregator } : {}),
    optimizer: createOptimizer(OPTIMIZER),
    step: run.step,
    previousStateSha256: run.previous,
    sliceElements: o.sliceElements ?? 777,
    openSpool: openFileSource,
    ...(o.pool ? { pool: o.pool } : {}),
  });
}

/** The server step over K shards writing into the files the leader staged, which it then publishes. */
async function shardedStep(store: LocalStateStore, partition: ModelPartition, run: StepRun, withPool: boolean, inPlace: boolean): Promise<string> {
  const stage = await stageFor(store, run);
  const written: ShardWrites[] = [];
  for (let shard = 0; shard < partition.shards.length; shard++) written.push(await shardStep(store, partition, stage, shard, run, { ...(withPool ? { pool } : {}), inPlace }));
  const result = await commitStagedCheckpoint({ store, stage, partition, written });
  return result.modelSha256;
}

const partitionOf = (k: number): ModelPartition => unwrap(partitionModel(TENSORS, k), AggregationError, 'partition');
const fileBytes = (store: LocalStateStore, sub: string, name: string): Promise<Buffer> => readFile(join(store.dir, sub, name));

describe('sharded aggregation: shards step their parts into the files the leader staged', () => {
  it.each([
    [1, false, false],
    [2, false, false],
    [3, true, false],
    [2, false, true],
    [3, true, true],
  ])('K = %i (worker pool: %s, slices read in place from whole spools: %s): two DiLoCo steps over f32, bf16 and int8 deltas give the checkpoint, master and momentum of one process, bit for bit', async (k, withPool, inPlace) => {
    const whole = await storeWithModel('whole');
    const sharded = await storeWithModel('sharded');
    expect(sharded.sha).toBe(whole.sha);
    const partition = partitionOf(k);
    expect(partition.shards.length).toBe(k);
    let global = whole.sha;
    let previous: string | undefined;
    for (const step of [1, 2]) {
      const run = { step, global, previous };
      const expected = await wholeStep(whole.store, run);
      const got = await shardedStep(sharded.store, partition, run, withPool, inPlace);
      expect(got).toBe(expected);
      expect(await fileBytes(sharded.store, 'models', `${got}.safetensors`)).toEqual(await fileBytes(whole.store, 'models', `${expected}.safetensors`));
      for (const slot of ['momentum', MASTER_WEIGHTS_SLOT]) {
        const name = `${got}.${slot}.safetensors`;
        expect(await fileBytes(sharded.store, 'optimizer', name), slot).toEqual(await fileBytes(whole.store, 'optimizer', name));
      }
      // Nothing staged is left once published.
      expect(await readdir(sharded.store.stagingDir)).toEqual([]);
      global = expected;
      previous = expected;
    }
  });

  it.each([
    [{ name: 'median' } as const, 3, true],
    // ⌊0.2 · 3⌋ = 0 values trimmed: the unweighted mean, which is neither the median nor the weighted mean.
    [{ name: 'trimmed-mean', trim: 0.2 } as const, 2, false],
  ])('robust aggregator %o over K = %i shards (in place: %s): two DiLoCo steps give the files of one process, bit for bit, and not those of the other aggregators', async (aggregator, k, inPlace) => {
    const whole = await storeWithModel('whole');
    const sharded = await storeWithModel('sharded');
    const partition = partitionOf(k);
    const others: AggregatorOptions[] = [{ name: 'mean' as const }, { name: 'median' as const }].filter((a) => a.name !== aggregator.name);
    let global = whole.sha;
    let previous: string | undefined;
    for (const step of [1, 2]) {
      const run = { step, global, previous, aggregator };
      const expected = await wholeStep(whole.store, run);
      const got = await shardedStep(sharded.store, partition, run, false, inPlace);
      expect(got).toBe(expected);
      for (const slot of ['momentum', MASTER_WEIGHTS_SLOT]) {
        const name = `${got}.${slot}.safetensors`;
        expect(await fileBytes(sharded.store, 'optimizer', name), slot).toEqual(await fileBytes(whole.store, 'optimizer', name));
      }
      // From the same model and state, the other aggregators step elsewhere: the shards used this one.
      for (const other of others) expect(await wholeStep(whole.store, { step, global, previous, aggregator: other }), other.name).not.toBe(expected);
      global = expected;
      previous = expected;
    }
  });

  it('refuses to publish what a shard of another partition wrote: nothing is published, and the stage is discarded', async () => {
    const { store, sha } = await storeWithModel('state');
    const two = partitionOf(2);
    const three = partitionOf(3);
    const run = { step: 1, global: sha, previous: undefined };
    const stage = await stageFor(store, run);
    // Shard 0 of a 3-way cut owns fewer values than shard 0 of the 2-way cut it is published with.
    const written = [await shardStep(store, three, stage, 0, run), await shardStep(store, two, stage, 1, run)];
    const models = await readdir(join(store.dir, 'models'));
    const err = await commitStagedCheckpoint({ store, stage, partition: two, written }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CoordinatorError);
    expect((err as CoordinatorError).code).toBe('STATE_CORRUPT');
    expect((err as CoordinatorError).message).toMatch(/^shard 0 wrote \d+ bytes of the staged model file, its part is \d+$/);
    expect(await readdir(join(store.dir, 'models'))).toEqual(models);
    expect(await readdir(join(store.dir, 'optimizer'))).toEqual([]);
    expect((await readdir(store.stagingDir)).length).toBe(3); // model, momentum, master: still staged
    await discardStagedCheckpoint(stage);
    expect(await readdir(store.stagingDir)).toEqual([]);
  });

  it('refuses a partition of another model before reading a delta or writing a byte', async () => {
    const { store, sha } = await storeWithModel('state');
    const other = unwrap(partitionModel([...TENSORS.slice(0, 4), { name: 'head', shape: [129, 64] }], 2), AggregationError, 'partition');
    const run = { step: 1, global: sha, previous: undefined };
    const stage = await stageFor(store, run);
    const before = await Promise.all(stage.files.map((f) => readFile(f.path)));
    const err = await shardStep(store, other, stage, 1, run).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CoordinatorError);
    expect((err as CoordinatorError).code).toBe('BAD_REQUEST');
    expect((err as CoordinatorError).message).toContain(`the partition does not describe checkpoint ${sha}: tensor 4 is "head" of 129 × 64 values there, "head" of shape [130, 64] in the model`);
    expect(await Promise.all(stage.files.map((f) => readFile(f.path)))).toEqual(before);
    await discardStagedCheckpoint(stage);
  });

  it('stops between slices when aborted: the shard rejects with the reason', async () => {
    const { store, sha } = await storeWithModel('state');
    const partition = partitionOf(2);
    const run = { step: 1, global: sha, previous: undefined };
    const stage = await stageFor(store, run);
    const inputs = await partSpools(store, partition, 0, 1);
    const controller = new AbortController();
    let reads = 0;
    const err = await aggregatePart({
      store,
      stage,
      partition,
      shard: 0,
      globalSha256: sha,
      inputs,
      optimizer: createOptimizer(OPTIMIZER),
      step: 1,
      previousStateSha256: undefined,
      sliceElements: 100,
      openSpool: async (path) => {
        const src = await openFileSource(path);
        return {
          ...src,
          read: (offset, length) => {
            if (++reads === 20) controller.abort(new Error('attempt aborted'));
            return src.read(offset, length);
          },
          close: () => src.close(),
        };
      },
      signal: controller.signal,
    }).catch((e: unknown) => e);
    expect(String(err)).toContain('attempt aborted');
    expect(reads).toBeGreaterThanOrEqual(20);
    expect(reads).toBeLessThan(200);
    await discardStagedCheckpoint(stage);
    expect(await readdir(store.stagingDir)).toEqual([]);
  });

  it('a shard process refuses a request for another run or model, and a path outside the checkpoint storage', async () => {
    const { store, sha } = await storeWithModel('state');
    const assignment = { runId: 'r', globalModelSha256: sha, shardIndex: 0, shardCount: 2, alignValues: 128, firstValue: '0', endValue: '1', totalValues: '2' };
    const request: ShardAggregate__Output = {
      runId: 'r',
      round: '1',
      attempt: 0,
      globalModelSha256: sha,
      previousStateSha256: '',
      optimizerJson: JSON.stringify(OPTIMIZER),
      step: '1',
      inputs: [{ siteId: 'a', weight: 1, path: '../../../etc/passwd', encoding: 'f32', onShard: false }],
      files: [],
      sliceElements: 4096,
      unmask: null,
      aggregatorJson: '{"name":"mean"}',
    };
    const refused = (r: ShardAggregate__Output, a: typeof assignment | undefined): Promise<CoordinatorError> =>
      shardAggregate(store.dir, a, r).then(
        () => {
          throw new Error('accepted');
        },
        (e: unknown) => e as CoordinatorError,
      );
    expect((await refused(request, assignment)).message).toBe('path "../../../etc/passwd" is not inside the checkpoint storage');
    expect((await refused({ ...request, runId: 'other' }, assignment)).message).toMatch(/^asked to aggregate run other from model [0-9a-f]{64}, assigned run r from/);
    expect((await refused(request, undefined)).code).toBe('BAD_REQUEST');
    expect((await refused({ ...request, optimizerJson: '{"name":"sgd"}' }, assignment)).message).toMatch(/^optimizer_json: /);
    // The aggregator is checked as the run config checks it; a secure round is the mean's.
    expect((await refused({ ...request, aggregatorJson: '{"name":"krum"}' }, assignment)).message).toMatch(/^aggregator_json: name: Invalid discriminator value/);
    expect((await refused({ ...request, aggregatorJson: '{"name":"trimmed-mean","trim":0.5}' }, assignment)).message).toMatch(/^aggregator_json: trim: /);
    expect((await refused({ ...request, aggregatorJson: '' }, assignment)).message).toBe('aggregator_json "" is not JSON');
    const secure = { ...request, aggregatorJson: '{"name":"median"}', unmask: { selfSeeds: [], droppedPairs: [], clip: 1, quantBits: 16, modulusBits: 32, weightSum: 1 } };
    expect((await refused(secure, assignment)).message).toBe('a secure round aggregates by the mean, not median');
  });
});

