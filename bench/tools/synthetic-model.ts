/**
 * Synthetic models for the benchmarks: any list of F32 (or BF16) tensors written with the repo's
 * streaming safetensors writer, filled with seeded uniform values in ±0.05 one 4 MiB slice at a time, so a
 * 9 GB model never sits in memory.
 */
import { join } from 'node:path';
import { createSafetensorsWriter } from '../../aggregation/index.js';
import { AtomicFile } from '../../common/files.js';

/** One tensor of a synthetic model. */
export interface SyntheticTensor {
  readonly name: string;
  readonly shape: readonly number[];
}

/** Number of values in a tensor. */
export const elementsOf = (t: SyntheticTensor): number => t.shape.reduce((a, b) => a * b, 1);

/** A few tensors adding up to exactly `params` F32 values (the secagg benchmark's model). */
export function blockModel(params: number): SyntheticTensor[] {
  const rows = Math.floor(params / 4 / 1000);
  const rest = params - 3 * rows * 1000;
  return [
    { name: 'embed.weight', shape: [rows, 1000] },
    { name: 'layers.0.attn.weight', shape: [rows, 1000] },
    { name: 'layers.0.mlp.weight', shape: [rows, 1000] },
    { name: 'lm_head.weight', shape: rest % 1000 === 0 ? [rest / 1000, 1000] : [rest] },
  ];
}

/**
 * Salamandra-2B's tensors as Hugging Face's LlamaForCausalLM names them (REFERENCE.md): hidden 2048,
 * 24 layers, 16 heads (and 16 KV heads), intermediate 5440, vocab 256,000, untied embeddings;
 * 2,253,490,176 parameters.
 */
export function salamandra2bModel(): SyntheticTensor[] {
  const hidden = 2048;
  const inter = 5440;
  const vocab = 256_000;
  const tensors: SyntheticTensor[] = [{ name: 'model.embed_tokens.weight', shape: [vocab, hidden] }];
  for (let i = 0; i < 24; i++) {
    const p = `model.layers.${i}`;
    for (const proj of ['q', 'k', 'v', 'o']) tensors.push({ name: `${p}.self_attn.${proj}_proj.weight`, shape: [hidden, hidden] });
    tensors.push({ name: `${p}.mlp.gate_proj.weight`, shape: [inter, hidden] });
    tensors.push({ name: `${p}.mlp.up_proj.weight`, shape: [inter, hidden] });
    tensors.push({ name: `${p}.mlp.down_proj.weight`, shape: [hidden, inter] });
    tensors.push({ name: `${p}.input_layernorm.weight`, shape: [hidden] });
    tensors.push({ name: `${p}.post_attention_layernorm.weight`, shape: [hidden] });
  }
  tensors.push({ name: 'model.norm.weight', shape: [hidden] });
  tensors.push({ name: 'lm_head.weight', shape: [vocab, hidden] });
  return tensors;
}

/** Writes `tensors` as a safetensors file of `dtype` at `path` (atomically), seeded uniform values in ±0.05. */
export async function writeSyntheticModel(path: string, tensors: readonly SyntheticTensor[], model: string, dtype: 'F32' | 'BF16' = 'F32'): Promise<void> {
  const file = await AtomicFile.create(join(path, '..'));
  try {
    const writer = await createSafetensorsWriter(
      file,
      tensors.map((t) => ({ name: t.name, dtype, shape: [...t.shape] })),
      { format: 'pt', model },
    );
    let state = 0x2545f491;
    const slice = new Float32Array(1 << 20);
    for (const t of tensors) {
      let left = elementsOf(t);
      while (left > 0) {
        const n = Math.min(left, slice.length);
        for (let i = 0; i < n; i++) {
          state ^= state << 13;
          state ^= state >>> 17;
          state ^= state << 5;
          slice[i] = ((state >>> 0) / 4294967296 - 0.5) * 0.1;
        }
        await writer.writeF32(t.name, slice.subarray(0, n));
        left -= n;
      }
    }
    await writer.finish();
    await file.commit(path);
  } catch (err) {
    await file.discard();
    throw err;
  }
}
