/**
 * Δ = local − global, computed by the agent itself: see `encode.ts` for the wire encodings. This
 * module keeps the plain f32 helpers other parts (simulation, tests) use.
 */
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
