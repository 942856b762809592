/**
 * Δ = local − global, computed by the agent itself, streamed tensor by tensor from the two
 * safetensors files (never both models in memory), as little-endian f32 chunks in the global
 * model's tensor order.
 */
import { openSafetensors } from '../aggregation/index.js';
import { openFileSource } from '../common/files.js';
import { SiteAgentError } from './errors.js';

/** A tensor of the global model as the task declares it. */
export interface TaskTensor {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
}

/**
 * Yields the encoded delta in chunks of at most `maxChunkBytes` (a multiple of 4). Throws
 * MODEL_INVALID when the local file's names or shapes differ from the global model's.
 */
export async function* deltaChunks(
  globalPath: string,
  localPath: string,
  tensors: readonly TaskTensor[],
  maxChunkBytes: number,
  signal: AbortSignal,
): AsyncGenerator<Buffer> {
  const gSrc = await openFileSource(globalPath);
  const lSrc = await openFileSource(localPath);
  try {
    const g = await openSafetensors(gSrc);
    const l = await openSafetensors(lSrc);
    const perChunk = Math.max(1, Math.floor(maxChunkBytes / 4));
    for (const t of tensors) {
      const gi = g.tensor(t.name);
      const li = l.tensors.find((x) => x.name === t.name);
      if (!li || li.shape.join() !== gi.shape.join()) {
        throw new SiteAgentError('MODEL_INVALID', `local model's tensor ${t.name} is ${li ? `[${li.shape.join(', ')}]` : 'missing'}, global is [${gi.shape.join(', ')}]`, false);
      }
      for (let start = 0; start < gi.elements; start += perChunk) {
        signal.throwIfAborted();
        const n = Math.min(perChunk, gi.elements - start);
        const global = await g.readF32(t.name, start, n);
        const local = await l.readF32(t.name, start, n);
        for (let i = 0; i < n; i++) local[i] = local[i]! - global[i]!;
        yield Buffer.from(local.buffer, local.byteOffset, n * 4);
      }
    }
    if (l.tensors.length !== tensors.length) {
      throw new SiteAgentError('MODEL_INVALID', `local model has ${l.tensors.length} tensors, global has ${tensors.length}`, false);
    }
  } finally {
    await gSrc.close();
    await lSrc.close();
  }
}

/** Total encoded bytes of a delta over `tensors` (f32). */
export function deltaBytes(tensors: readonly TaskTensor[]): number {
  return tensors.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1) * 4, 0);
}
