/**
 * Δ = local − global, computed by the agent itself: see `encode.ts` for the wire encodings. This
 * module keeps the plain f32 helpers other parts (simulation, tests, kept and folded work) use.
 */
import { dirname } from 'node:path';
import { createSafetensorsWriter } from '../aggregation/index.js';
import { AtomicFile } from '../common/files.js';
import { DeltaEncoder, type TaskTensor } from './encode.js';
export type { TaskTensor } from './encode.js';

/**
 * Yields the f32 delta in chunks of at most `maxChunkBytes`. Throws MODEL_INVALID when the local
 * file's names or shapes differ from the global model's.
 */
export async function* deltaChunks(
  globalPath: string,
  localPath: string,
  tensors: readonly TaskTensor[],
  maxChunkBytes: number,
  signal: AbortSignal,
): AsyncGenerator<Buffer> {
  const enc = await DeltaEncoder.open(globalPath, localPath, tensors, 'f32');
  try {
    for await (const c of enc.range(0, enc.totalBytes, maxChunkBytes, signal)) yield c.data;
  } finally {
    await enc.close();
  }
}

/** Total encoded bytes of a delta over `tensors` (f32). */
export function deltaBytes(tensors: readonly TaskTensor[]): number {
  return tensors.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1) * 4, 0);
}

/** Elements read and written at a time when a delta file is made: 256 KiB of f32. */
const FILE_CHUNK_ELEMENTS = 1 << 16;

/**
 * Writes an F32 safetensors file of `tensors` (names and shapes as the task declares them) whose
 * values `values(name, first, count)` produces chunk by chunk, never a whole model in memory.
 * Atomic: written under a temporary name beside `path`, fsynced, then renamed; a failure leaves
 * nothing at `path`. Returns the file's SHA-256.
 */
export async function writeF32File(
  path: string,
  tensors: readonly TaskTensor[],
  values: (name: string, first: number, count: number) => Promise<Float32Array>,
  signal: AbortSignal,
): Promise<string> {
  const file = await AtomicFile.create(dirname(path));
  try {
    const writer = await createSafetensorsWriter(file, tensors.map((t) => ({ name: t.name, dtype: 'F32' as const, shape: t.shape })));
    for (const t of tensors) {
      const n = t.shape.reduce((a, b) => a * b, 1);
      for (let first = 0; first < n; first += FILE_CHUNK_ELEMENTS) {
        signal.throwIfAborted();
        await writer.writeF32(t.name, await values(t.name, first, Math.min(FILE_CHUNK_ELEMENTS, n - first)));
      }
    }
    await writer.finish();
    return (await file.commit(path)).sha256;
  } catch (err) {
    await file.discard();
    throw err;
  }
}
