/**
 * The `aggregate` phase: the weighted mean of the participants' spooled deltas, one bounded slice
 * at a time, fed to the server optimizer; the new global model (in the run's checkpoint dtype),
 * its f32 master weights and the optimizer state are streamed to new content-addressed files.
 * Memory: a few slices, never a whole tensor.
 */
import {
  createSafetensorsWriter,
  type Dtype,
  encodeFromF32,
  type FloatDtype,
  isFloatDtype,
  openSafetensors,
  type SafetensorsFile,
  type SafetensorsTensorSpec,
  type SafetensorsWriter,
  type ServerOptimizer,
  type WireEncoding,
  invariant,
} from '../../aggregation/index.js';
import type { FileSource } from '../../common/files.js';
import { CoordinatorError } from '../core/errors.js';
import type { KernelPool } from './kernel-pool.js';
import { openWeightedSpools } from './kernel-spools.js';
import { checkFitsDtype, MASTER_WEIGHTS_SLOT, needsMasterWeights } from '../state/checkpoint-dtype.js';
import type { PendingFile, PendingNamedFile, StagedWrite, StateStore } from '../state/store.js';

/** One verified upload to fold into the mean. */
export interface SpoolInput {
  readonly site: string;
  readonly weight: number;
  /**
   * The delta's wire bytes, tensors in the global model's order, each tensor in `encoding`
   * (aggregation/kernels/encoding.ts: f32, bf16, or int8 blocks with per-block scales).
   */
  readonly path: string;
  /** How the spool is encoded; required, so a bf16 or int8 spool is never read as f32. */
  readonly encoding: WireEncoding;
  /** Where its values start in the file, in bytes (default 0: the whole delta). */
  readonly offset?: number;
}

/** Where the mean delta comes from, slice by slice over the flattened model (tensors in order). */
export interface MeanSource {
  /** The mean of values [elemOffset, elemOffset + count): into `into` when given (`count` long), else a fresh array. */
  read(elemOffset: number, count: number, into?: Float32Array): Promise<Float32Array>;
  close(): Promise<void>;
}

export interface AggregateOptions {
  readonly store: StateStore;
  readonly globalSha256: string;
  /** Plain rounds: verified f32 spools and their weights. */
  readonly inputs: readonly SpoolInput[];
  /** Secure rounds: the unmasked, dequantized mean instead of `inputs`. */
  readonly mean?: MeanSource;
  readonly optimizer: ServerOptimizer;
  /** 1-based server step this aggregation makes. */
  readonly step: number;
  /** Checkpoint whose optimizer state to continue from; undefined starts from zeros. */
  readonly previousStateSha256: string | undefined;
  readonly sliceElements: number;
  readonly openSpool: (path: string) => Promise<FileSource>;
  /** Entries added to the checkpoint's `__metadata__`, on top of the global model's own. */
  readonly metadata: Readonly<Record<string, string>>;
  /**
   * Stops the aggregation between slices and its kernel pool jobs mid-way: it then rejects with
   * the signal's reason, and its partial checkpoint and optimizer state files are removed.
   */
  readonly signal?: AbortSignal;
  /** Worker threads for decoding and summing spools; absent: the same kernels in this thread. */
  readonly pool?: KernelPool;
}

export interface AggregateResult {
  readonly modelSha256: string;
  readonly modelBytes: number;
}

/** The files one aggregation writes: the checkpoint, the optimizer state slots and the f32 master. */
interface CheckpointWriters {
  readonly model: SafetensorsWriter;
  readonly modelFile: PendingFile;
  /** One per optimizer state slot, in `stateSlots` order. */
  readonly state: readonly { readonly slot: string; readonly file: PendingNamedFile; readonly writer: SafetensorsWriter }[];
  /** The f32 master weights, when the checkpoint has a tensor narrower than F32. */
  readonly master: { readonly file: PendingNamedFile; readonly writer: SafetensorsWriter } | undefined;
}

/**
 * Runs one aggregation and returns the new checkpoint's hash. Cleans up partial files on failure.
 * The optimizer steps the f32 master weights of the global model (its file widened where it has
 * none); the checkpoint keeps each tensor's dtype, rounded to nearest even, and a checkpoint
 * narrower than F32 gets the new master beside it.
 */
export async function aggregateRound(o: AggregateOptions): Promise<AggregateResult> {
  const opened: FileSource[] = [];
  const pending: StagedWrite[] = [];
  const mean = o.mean ?? (await plainMean(o, await tensorElements(o.store, o.globalSha256)));
  try {
    const sources = await openStepSources(o, mean, opened);
    const out = await createCheckpointWriters(o, sources.global, pending);
    const buffers = new SliceBuffers(sliceLength(o.sliceElements, sources.global.tensors.map((t) => t.elements)), o.optimizer.stateSlots.length);
    let flatOffset = 0;
    for (const t of sources.global.tensors) {
      const dtype = floatDtype(t);
      for (let start = 0; start < t.elements; start += o.sliceElements) {
        o.signal?.throwIfAborted();
        const n = Math.min(o.sliceElements, t.elements - start);
        const { theta, state } = await stepSlice(sources, t, start, n, flatOffset + start, buffers);
        await out.model.writeTensorBytes(t.name, encodeFromF32(theta, dtype, buffers.narrow));
        await out.master?.writer.writeF32(t.name, theta);
        for (const [k, { writer }] of out.state.entries()) {
          const values = state[k];
          invariant(values !== undefined, "each optimizer state slot has this slice's values");
          await writer.writeF32(t.name, values);
        }
      }
      flatOffset += t.elements;
    }
    const { bytesWritten } = await out.model.finish();
    for (const { writer } of out.state) await writer.finish();
    await out.master?.writer.finish();
    // Last chance: once committed, an aborted attempt's checkpoint would stay behind as an orphan.
    o.signal?.throwIfAborted();
    const { sha256 } = await out.modelFile.commit();
    for (const { slot, file } of out.state) await file.commit(`${sha256}.${slot}`);
    await out.master?.file.commit(`${sha256}.${MASTER_WEIGHTS_SLOT}`);
    pending.length = 0;
    return { modelSha256: sha256, modelBytes: bytesWritten };
  } finally {
    for (const p of pending) await p.discard();
    for (const f of opened) await f.close();
    await mean.close();
  }
}

/** The checkpoints a server step reads: the global model, its master weights, the optimizer state. */
export type CheckpointReader = Pick<StateStore, 'openModel' | 'hasOptimizerState' | 'openOptimizerState'>;

/** What {@link openStepSources} needs to know of one aggregation. */
export interface StepInputs {
  readonly store: CheckpointReader;
  readonly globalSha256: string;
  readonly previousStateSha256: string | undefined;
  readonly optimizer: ServerOptimizer;
  readonly step: number;
}

/** Everything one server step reads, opened. */
export interface StepSources {
  readonly global: SafetensorsFile;
  /** The f32 values the optimizer steps: the master weights, or the global model where exact. */
  readonly theta: SafetensorsFile;
  readonly mean: MeanSource;
  /** The previous optimizer state per slot, in `optimizer.stateSlots` order; undefined starts from zeros. */
  readonly state: readonly (SafetensorsFile | undefined)[];
  readonly optimizer: ServerOptimizer;
  readonly step: number;
}

/** Opens the global model, its master weights and the previous optimizer state; each file opened is added to `opened`. */
export async function openStepSources(o: StepInputs, mean: MeanSource, opened: FileSource[]): Promise<StepSources> {
  invariant(!o.optimizer.stateSlots.includes(MASTER_WEIGHTS_SLOT), 'no optimizer state slot is named like the master weights');
  const globalSrc = await o.store.openModel(o.globalSha256);
  opened.push(globalSrc);
  const global = await openSafetensors(globalSrc);
  const master = await openMasterWeights(o, global, opened);
  const state = await openPreviousState(o, opened);
  return { global, theta: master ?? global, mean, state, optimizer: o.optimizer, step: o.step };
}

/**
 * The arrays one slice of a server step is read into and stepped in, made once per aggregation
 * and used by one step at a time: {@link stepSlice}'s results are views of them, valid until its
 * next call. A fresh 16 MB array per value kind per slice cost a first touch of every page and, as
 * external memory, a mark-compact per slice (bench/RESULTS.md, issue 18, session 23).
 */
export class SliceBuffers {
  /** The f32 master weights of the slice, stepped in place. */
  readonly theta: Float32Array;
  /** The slice's mean delta. */
  readonly delta: Float32Array;
  /** One per optimizer state slot, in slot order: read (or zeroed at step 1) and stepped in place. */
  readonly state: readonly Float32Array[];
  /** Room for a slice narrowed to bf16 or f16 ({@link encodeFromF32}'s scratch). */
  readonly narrow: Uint16Array;

  /** Arrays of `sliceElements` values ({@link sliceLength}) for an optimizer with `stateSlots` slots. */
  constructor(sliceElements: number, stateSlots: number) {
    this.theta = new Float32Array(sliceElements);
    this.delta = new Float32Array(sliceElements);
    this.state = Array.from({ length: stateSlots }, () => new Float32Array(sliceElements));
    this.narrow = new Uint16Array(sliceElements);
  }
}

/** The longest slice a step over runs of these lengths takes: no more than the longest run. */
export function sliceLength(sliceElements: number, runs: readonly number[]): number {
  return Math.min(sliceElements, runs.reduce((longest, n) => Math.max(longest, n), 0));
}

/** `t`'s dtype as a float one; throws `BAD_REQUEST` for any other, which cannot be aggregated. */
export function floatDtype(t: { readonly name: string; readonly dtype: Dtype }): FloatDtype {
  if (!isFloatDtype(t.dtype)) throw new CoordinatorError('BAD_REQUEST', `tensor ${t.name} is ${t.dtype}, not a float dtype: it cannot be aggregated`, { tensor: t.name, dtype: t.dtype });
  return t.dtype;
}

/**
 * The server step on values [start, start + n) of tensor `t`, whose mean delta is at
 * `meanOffset` of `s.mean`: the new θ (checked against the checkpoint dtype) and the new value of
 * each optimizer state slot, in slot order, in `buffers` (valid until the next step with them).
 * Element-wise, so any cut of the model into slices — or into shards' parts — gives the same bits.
 */
export async function stepSlice(
  s: StepSources,
  t: { readonly name: string; readonly dtype: Dtype },
  start: number,
  n: number,
  meanOffset: number,
  buffers: SliceBuffers,
): Promise<{ theta: Float32Array; state: Float32Array[] }> {
  const theta = await s.theta.readF32(t.name, start, n, buffers.theta.subarray(0, n));
  const delta = await s.mean.read(meanOffset, n, buffers.delta.subarray(0, n));
  const slots: Record<string, Float32Array> = {};
  for (const [k, slot] of s.optimizer.stateSlots.entries()) {
    const prev = s.state[k];
    const into = buffers.state[k]?.subarray(0, n);
    invariant(into !== undefined, 'the slice buffers have a slot for each optimizer state slot');
    slots[slot] = prev ? await prev.readF32(t.name, start, n, into) : into.fill(0);
  }
  s.optimizer.apply(theta, delta, slots, s.step);
  checkFitsDtype(theta, t.dtype, t.name, start);
  return {
    theta,
    state: s.optimizer.stateSlots.map((slot) => {
      const values = slots[slot];
      invariant(values !== undefined, 'the optimizer keeps every state slot it names');
      return values;
    }),
  };
}

/** One file of a new checkpoint: what it is, its tensors and its metadata. */
export interface CheckpointFilePlan {
  /** `model`, an optimizer state slot, or the master weights' slot ({@link MASTER_WEIGHTS_SLOT}). */
  readonly slot: string;
  readonly tensors: readonly SafetensorsTensorSpec[];
  readonly metadata: Readonly<Record<string, string>>;
}

/**
 * The files a server step writes, in this order: the checkpoint (the global model's tensors and
 * dtypes, its metadata with this round's entries on top), one F32 file per optimizer state slot,
 * and the F32 master when the checkpoint is narrower.
 */
export function checkpointFiles(o: Pick<AggregateOptions, 'optimizer' | 'step' | 'metadata'>, global: SafetensorsFile): CheckpointFilePlan[] {
  const f32 = global.tensors.map((t) => ({ name: t.name, dtype: 'F32' as const, shape: t.shape }));
  // The user's metadata (licence, source, …) travels from the initial model into every checkpoint;
  // this round's entries are added on top.
  const files: CheckpointFilePlan[] = [
    { slot: 'model', tensors: global.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape })), metadata: { format: 'pt', ...global.metadata, ...o.metadata } },
  ];
  for (const slot of o.optimizer.stateSlots) files.push({ slot, tensors: f32, metadata: { format: 'pt', optimizer: o.optimizer.name, step: String(o.step) } });
  if (needsMasterWeights(global.tensors)) files.push({ slot: MASTER_WEIGHTS_SLOT, tensors: f32, metadata: { format: 'pt', master: 'f32', step: String(o.step) } });
  return files;
}

/** Stages the files of {@link checkpointFiles} with their writers; every staged file is added to `pending`. */
async function createCheckpointWriters(
  o: Pick<AggregateOptions, 'store' | 'optimizer' | 'step' | 'metadata'>,
  global: SafetensorsFile,
  pending: StagedWrite[],
): Promise<CheckpointWriters> {
  const stage = async <F extends StagedWrite>(create: () => Promise<F>): Promise<F> => {
    const file = await create();
    pending.push(file);
    return file;
  };
  const [modelPlan, ...rest] = checkpointFiles(o, global);
  invariant(modelPlan !== undefined, 'a checkpoint has its model file');
  const modelFile = await stage(() => o.store.createModel());
  const model = await createSafetensorsWriter(modelFile, modelPlan.tensors, modelPlan.metadata);
  const state: CheckpointWriters['state'][number][] = [];
  let master: CheckpointWriters['master'];
  for (const plan of rest) {
    const file = await stage(() => o.store.createOptimizerState());
    const writer = await createSafetensorsWriter(file, plan.tensors, plan.metadata);
    if (plan.slot === MASTER_WEIGHTS_SLOT) master = { file, writer };
    else state.push({ slot: plan.slot, file, writer });
  }
  return { model, modelFile, state, master };
}

/**
 * The f32 master weights of the global model, or undefined where its own file is exact (an F32
 * checkpoint, or an initial model the import did not narrow). A committed checkpoint narrower
 * than F32 without its master is refused: stepping from the rounded file would silently drop
 * what the rounding took, as a momentum reset to zero would change the run.
 */
async function openMasterWeights(o: StepInputs, global: SafetensorsFile, opened: FileSource[]): Promise<SafetensorsFile | undefined> {
  if (!(await o.store.hasOptimizerState(o.globalSha256, MASTER_WEIGHTS_SLOT))) {
    if (o.previousStateSha256 !== undefined && needsMasterWeights(global.tensors)) {
      throw new CoordinatorError('STATE_CORRUPT', `the f32 master weights of checkpoint ${o.globalSha256} are missing`, { slot: MASTER_WEIGHTS_SLOT });
    }
    return undefined;
  }
  const src = await o.store.openOptimizerState(o.globalSha256, MASTER_WEIGHTS_SLOT);
  opened.push(src);
  const master = await openSafetensors(src);
  const layout = (f: SafetensorsFile): string => JSON.stringify(f.tensors.map((t) => [t.name, t.shape]));
  if (layout(master) !== layout(global) || master.tensors.some((t) => t.dtype !== 'F32')) {
    throw new CoordinatorError('STATE_CORRUPT', `the master weights of checkpoint ${o.globalSha256} do not match its tensors`, { slot: MASTER_WEIGHTS_SLOT });
  }
  return master;
}

/**
 * The weighted mean of plain spools (f32, bf16 or int8, decoded slice by slice) with normalised
 * weights f32(wᵢ/W), added in input order: a single participant's delta passes through exactly
 * (w/W = 1). Runs in `o.pool`'s workers when given. `tensorElements`: the values of each tensor
 * in a spool, in order — the global model's tensors, or one shard's parts of them.
 */
export async function plainMean(o: Pick<AggregateOptions, 'inputs' | 'openSpool' | 'pool' | 'signal'>, tensorElements: readonly number[]): Promise<MeanSource> {
  const totalWeight = o.inputs.reduce((s, i) => s + i.weight, 0);
  if (!(totalWeight > 0)) {
    throw new CoordinatorError('ZERO_WEIGHT', 'aggregation needs a positive total weight', { inputs: o.inputs.length, totalWeight });
  }
  const spools = o.inputs.map((i) => ({ path: i.path, encoding: i.encoding, weight: i.weight / totalWeight, ...(i.offset ? { offset: i.offset } : {}) }));
  return openWeightedSpools(spools, tensorElements, { openSpool: o.openSpool, ...(o.pool ? { pool: o.pool } : {}), ...(o.signal ? { signal: o.signal } : {}) });
}

/** Value counts of the global model's tensors, in order: where each tensor starts in a spool. */
async function tensorElements(store: CheckpointReader, globalSha256: string): Promise<number[]> {
  const src = await store.openModel(globalSha256);
  try {
    return (await openSafetensors(src)).tensors.map((t) => t.elements);
  } finally {
    await src.close();
  }
}

async function openPreviousState(o: StepInputs, opened: FileSource[]): Promise<(SafetensorsFile | undefined)[]> {
  const prev = o.previousStateSha256;
  return Promise.all(
    o.optimizer.stateSlots.map(async (slot) => {
      if (prev === undefined) return undefined;
      // Momentum silently reset to zero after a restart would change the run: refuse instead.
      if (!(await o.store.hasOptimizerState(prev, slot))) {
        throw new CoordinatorError('STATE_CORRUPT', `optimizer state ${slot} of checkpoint ${prev} is missing`, { slot });
      }
      const src = await o.store.openOptimizerState(prev, slot);
      opened.push(src);
      return openSafetensors(src);
    }),
  );
}
