/**
 * The `aggregate` phase: the weighted mean of the participants' spooled deltas, one bounded slice
 * at a time, fed to the server optimizer; the new global model and optimizer state are streamed
 * to new content-addressed files. Memory: a few slices, never a whole tensor.
 */
import {
  createSafetensorsWriter,
  openSafetensors,
  type SafetensorsFile,
  type ServerOptimizer,
  type WireEncoding,
  invariant,
} from '../../aggregation/index.js';
import type { FileSource } from '../../common/files.js';
import { CoordinatorError } from '../core/errors.js';
import type { KernelPool } from './kernel-pool.js';
import { openWeightedSpools } from './kernel-spools.js';
import type { PendingFile, StateStore } from '../state/store.js';

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
}

/** Where the mean delta comes from, slice by slice over the flattened model (tensors in order). */
export interface MeanSource {
  read(elemOffset: number, count: number): Promise<Float32Array>;
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

/** Runs one aggregation and returns the new checkpoint's hash. Cleans up partial files on failure. */
export async function aggregateRound(o: AggregateOptions): Promise<AggregateResult> {
  const opened: FileSource[] = [];
  const pending: PendingFile[] = [];
  const mean = o.mean ?? (await plainMean(o));
  try {
    const globalSrc = await o.store.openModel(o.globalSha256);
    opened.push(globalSrc);
    const global = await openSafetensors(globalSrc);
    const prevState = await openPreviousState(o, opened);
    const specs = global.tensors.map((t) => ({ name: t.name, dtype: 'F32' as const, shape: t.shape }));
    const modelFile = await o.store.createModel();
    pending.push(modelFile);
    // The user's metadata (licence, source, …) travels from the initial model into every checkpoint;
    // this round's entries are added on top.
    const model = await createSafetensorsWriter(modelFile, specs, { format: 'pt', ...global.metadata, ...o.metadata });
    const stateFiles = await Promise.all(o.optimizer.stateSlots.map(() => o.store.createOptimizerState()));
    pending.push(...stateFiles);
    const stateWriters = await Promise.all(
      stateFiles.map((f) => createSafetensorsWriter(f, specs, { format: 'pt', optimizer: o.optimizer.name, step: String(o.step) })),
    );
    let flatOffset = 0;
    for (const t of global.tensors) {
      for (let start = 0; start < t.elements; start += o.sliceElements) {
        o.signal?.throwIfAborted();
        const n = Math.min(o.sliceElements, t.elements - start);
        const theta = await global.readF32(t.name, start, n);
        const delta = await mean.read(flatOffset + start, n);
        const state: Record<string, Float32Array> = {};
        for (const [slotIndex, slot] of o.optimizer.stateSlots.entries()) {
          state[slot] = prevState[slotIndex] ? await prevState[slotIndex].readF32(t.name, start, n) : new Float32Array(n);
        }
        o.optimizer.apply(theta, delta, state, o.step);
        await model.writeF32(t.name, theta);
        for (const [slotIndex, slot] of o.optimizer.stateSlots.entries()) {
          const writer = stateWriters[slotIndex];
          const values = state[slot];
          invariant(writer !== undefined && values !== undefined, "each optimizer state slot has a writer and this slice's values");
          await writer.writeF32(t.name, values);
        }
      }
      flatOffset += t.elements;
    }
    const { bytesWritten } = await model.finish();
    for (const w of stateWriters) await w.finish();
    // Last chance: once committed, an aborted attempt's checkpoint would stay behind as an orphan.
    o.signal?.throwIfAborted();
    const { sha256 } = await modelFile.commit();
    for (const [slotIndex, slot] of o.optimizer.stateSlots.entries()) {
      const file = stateFiles[slotIndex];
      invariant(file !== undefined, 'each optimizer state slot has a staged file');
      await file.commit(`${sha256}.${slot}`);
    }
    pending.length = 0;
    return { modelSha256: sha256, modelBytes: bytesWritten };
  } finally {
    for (const p of pending) await p.discard();
    for (const f of opened) await f.close();
    await mean.close();
  }
}

/**
 * The weighted mean of plain spools (f32, bf16 or int8, decoded slice by slice) with normalised
 * weights f32(wᵢ/W), added in input order: a single participant's delta passes through exactly
 * (w/W = 1). Runs in `o.pool`'s workers when given.
 */
async function plainMean(o: AggregateOptions): Promise<MeanSource> {
  const totalWeight = o.inputs.reduce((s, i) => s + i.weight, 0);
  if (!(totalWeight > 0)) {
    throw new CoordinatorError('ZERO_WEIGHT', 'aggregation needs a positive total weight', { inputs: o.inputs.length, totalWeight });
  }
  const spools = o.inputs.map((i) => ({ path: i.path, encoding: i.encoding, weight: i.weight / totalWeight }));
  return openWeightedSpools(spools, await tensorElements(o), { openSpool: o.openSpool, ...(o.pool ? { pool: o.pool } : {}), ...(o.signal ? { signal: o.signal } : {}) });
}

/** Value counts of the global model's tensors, in order: where each tensor starts in a spool. */
async function tensorElements(o: AggregateOptions): Promise<number[]> {
  const src = await o.store.openModel(o.globalSha256);
  try {
    return (await openSafetensors(src)).tensors.map((t) => t.elements);
  } finally {
    await src.close();
  }
}

async function openPreviousState(o: AggregateOptions, opened: FileSource[]): Promise<(SafetensorsFile | undefined)[]> {
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
