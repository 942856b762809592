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
} from '../aggregation/index.js';
import type { FileSource } from '../common/files.js';
import { CoordinatorError } from './errors.js';
import type { PendingFile, StateStore } from './state/store.js';

/** One verified upload to fold into the mean. */
export interface SpoolInput {
  readonly site: string;
  readonly weight: number;
  /** Raw little-endian f32 delta, tensors in the global model's order. */
  readonly path: string;
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
  readonly metadata: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal;
}

export interface AggregateResult {
  readonly modelSha256: string;
  readonly modelBytes: number;
}

/** Runs one aggregation and returns the new checkpoint's hash. Cleans up partial files on failure. */
export async function aggregateRound(o: AggregateOptions): Promise<AggregateResult> {
  const opened: FileSource[] = [];
  const pending: PendingFile[] = [];
  const mean = o.mean ?? (await plainMean(o.inputs, o.openSpool));
  try {
    const globalSrc = await o.store.openModel(o.globalSha256);
    opened.push(globalSrc);
    const global = await openSafetensors(globalSrc);
    const prevState = await openPreviousState(o, opened);
    const specs = global.tensors.map((t) => ({ name: t.name, dtype: 'F32' as const, shape: t.shape }));
    const modelFile = await o.store.createModel();
    pending.push(modelFile);
    const model = await createSafetensorsWriter(modelFile, specs, { format: 'pt', ...o.metadata });
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
        for (const [slotIndex, slot] of o.optimizer.stateSlots.entries()) await stateWriters[slotIndex]!.writeF32(t.name, state[slot]!);
      }
      flatOffset += t.elements;
    }
    const { bytesWritten } = await model.finish();
    for (const w of stateWriters) await w.finish();
    const { sha256 } = await modelFile.commit();
    for (const [slotIndex, slot] of o.optimizer.stateSlots.entries()) await stateFiles[slotIndex]!.commit(`${sha256}.${slot}`);
    pending.length = 0;
    return { modelSha256: sha256, modelBytes: bytesWritten };
  } finally {
    for (const p of pending) await p.discard();
    for (const f of opened) await f.close();
    await mean.close();
  }
}

/**
 * The weighted mean of plain f32 spools with normalised weights wᵢ/W: a single participant's
 * delta passes through exactly (w/W = 1).
 */
async function plainMean(inputs: readonly SpoolInput[], openSpool: (path: string) => Promise<FileSource>): Promise<MeanSource> {
  const totalWeight = inputs.reduce((s, i) => s + i.weight, 0);
  if (!(totalWeight > 0)) throw new Error('aggregation needs a positive total weight');
  const spools = await Promise.all(inputs.map((i) => openSpool(i.path)));
  const weights = inputs.map((i) => i.weight / totalWeight);
  return {
    async read(elemOffset, count) {
      const mean = new Float32Array(count);
      for (let k = 0; k < spools.length; k++) {
        const bytes = await spools[k]!.read(elemOffset * 4, count * 4);
        const delta = new Float32Array(bytes.buffer, bytes.byteOffset, count);
        const w = weights[k]!;
        for (let i = 0; i < count; i++) mean[i]! += w * delta[i]!;
      }
      return mean;
    },
    async close() {
      for (const s of spools) await s.close();
    },
  };
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
