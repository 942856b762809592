/**
 * Bringing a run's initial model into the state dir. Every F32/BF16/F16 safetensors file is
 * rewritten as an F32 checkpoint (the global model is kept in F32), tensor by tensor in slices.
 */
import { createSafetensorsWriter, openSafetensors } from '../../aggregation/index.js';
import { openFileSource } from '../../common/files.js';
import type { StateStore } from './store.js';

/** Imports `path` and returns the content hash of the F32 checkpoint in the store. */
export async function importInitialModel(store: StateStore, path: string, sliceElements: number): Promise<{ sha256: string }> {
  const src = await openFileSource(path);
  const out = await store.createModel();
  try {
    const file = await openSafetensors(src);
    const specs = file.tensors.map((t) => ({ name: t.name, dtype: 'F32' as const, shape: t.shape }));
    const writer = await createSafetensorsWriter(out, specs, { format: 'pt', ...file.metadata });
    for (const t of file.tensors) {
      for (let start = 0; start < t.elements; start += sliceElements) {
        const n = Math.min(sliceElements, t.elements - start);
        await writer.writeF32(t.name, await file.readF32(t.name, start, n));
      }
    }
    await writer.finish();
    return await out.commit();
  } catch (err) {
    await out.discard();
    throw err;
  } finally {
    await src.close();
  }
}
