/**
 * The masked upload of a secure round: each f32 delta chunk is clipped, weighted, quantized with
 * stochastic rounding into Z_2^b and masked (self mask plus pairwise masks), chunk by chunk at its
 * word offset; one last word carries the masked weight, so the coordinator learns only Σw·Δ and Σw.
 */
import { maskVector, quantize } from '../../aggregation/index.js';
import type { SecureParams, SecureSession } from './session.js';

/** Bytes per word of a masked vector. */
export function wordBytes(params: Pick<SecureParams, 'modulusBits'>): number {
  return params.modulusBits / 8;
}

/** Total bytes of a masked upload over `elements` values: one word each plus the weight word. */
export function maskedBytes(elements: number, params: Pick<SecureParams, 'modulusBits'>): number {
  return (elements + 1) * wordBytes(params);
}

/** Turns f32 delta chunks (in order) into masked words. */
export async function* maskedChunks(
  deltas: AsyncIterable<Buffer>,
  elements: number,
  session: SecureSession,
  params: SecureParams,
  samples: number,
): AsyncGenerator<Buffer> {
  const weight = session.weight(samples);
  const masks = session.masks();
  const q = { clip: params.clip, quantBits: params.quantBits, modulusBits: params.modulusBits };
  let offset = 0;
  for await (const chunk of deltas) {
    const x = new Float32Array(chunk.buffer, chunk.byteOffset, chunk.length / 4);
    const masked = maskVector(quantize(x, q, { weight, wordOffset: offset }), { ...masks, wordOffset: offset });
    offset += x.length;
    yield Buffer.from(masked.buffer, masked.byteOffset, masked.byteLength);
  }
  const w = maskVector(quantize(new Float32Array([weight]), { ...q, clip: 1 }, { wordOffset: elements }), { ...masks, wordOffset: elements });
  yield Buffer.from(w.buffer, w.byteOffset, w.byteLength);
}
