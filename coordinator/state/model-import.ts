/**
 * Bringing a run's initial model into the state dir as its first checkpoint, tensor by tensor in
 * slices: every F32/BF16/F16 tensor in the run's checkpoint dtype, or in its own dtype when the run
 * sets none. Where that narrows a tensor (F32 → BF16, …), the exact values are kept beside the
 * checkpoint as its f32 master weights, which round 1 steps from.
 */
import { createSafetensorsWriter, openSafetensors, type FloatDtype, type SafetensorsWriter } from '../../aggregation/index.js';
import { openFileSource } from '../../common/files.js';
import { checkFitsDtype, MASTER_WEIGHTS_SLOT } from './checkpoint-dtype.js';
import type { PendingNamedFile, StagedWrite, StateStore } from './store.js';

/**
 * Imports `path` and returns the content hash of the checkpoint in the store. `checkpointDtype`
 * applies to every tensor; absent, each tensor keeps its dtype. A value the dtype cannot hold is
 * refused (CHECKPOINT_OVERFLOW).
 */
export async function importInitialModel(store: StateStore, path: string, sliceElements: number, checkpointDtype?: FloatDtype): Promise<{ sha256: string }> {
  const src = await openFileSource(path);
  const pending: StagedWrite[] = [];
  try {
    const file = await openSafetensors(src);
    const specs = file.tensors.map((t) => ({ name: t.name, dtype: checkpointDtype ?? t.dtype, shape: t.shape }));
    const out = await store.createModel();
    pending.push(out);
    const writer = await createSafetensorsWriter(out, specs, { format: 'pt', ...file.metadata });
    // Widening is exact; only a narrowed tensor loses what the master keeps.
    const narrowed = specs.some((s, i) => s.dtype !== 'F32' && s.dtype !== file.tensors[i]?.dtype);
    let master: { file: PendingNamedFile; writer: SafetensorsWriter } | undefined;
    if (narrowed) {
      const masterFile = await store.createOptimizerState();
      pending.push(masterFile);
      const f32 = specs.map((s) => ({ ...s, dtype: 'F32' as const }));
      master = { file: masterFile, writer: await createSafetensorsWriter(masterFile, f32, { format: 'pt', master: 'f32', step: '0' }) };
    }
    for (const [i, t] of file.tensors.entries()) {
      const dtype = specs[i]?.dtype ?? t.dtype;
      for (let start = 0; start < t.elements; start += sliceElements) {
        const n = Math.min(sliceElements, t.elements - start);
        const values = await file.readF32(t.name, start, n);
        checkFitsDtype(values, dtype, t.name, start);
        await writer.writeF32(t.name, values);
        await master?.writer.writeF32(t.name, values);
      }
    }
    await writer.finish();
    await master?.writer.finish();
    const { sha256 } = await out.commit();
    await master?.file.commit(`${sha256}.${MASTER_WEIGHTS_SLOT}`);
    pending.length = 0;
    return { sha256 };
  } finally {
    for (const p of pending) await p.discard();
    await src.close();
  }
}
