/**
 * The value checks the coordinator makes on delta bytes as they arrive (the layout itself is
 * aggregation/wire-layout.ts, shared with the site agent).
 */
import { checkFinite, checkFiniteBf16, segmentAt, type DeltaEncoding, type Segment } from '../../aggregation/index.js';
import { CoordinatorError } from '../core/errors.js';

/**
 * Checks the values of `data` (delta bytes from `offset`, unit-aligned) that the coordinator can
 * judge: f32 and bf16 values must be finite, int8 block scales finite and not negative. Masked
 * words are uniformly random by design and cannot be checked.
 */
export function checkValues(encoding: DeltaEncoding, segments: readonly Segment[], offset: number, data: Buffer): void {
  if (encoding === 'f32') {
    // A view when the chunk's bytes are 4-aligned (they are, as gRPC hands them over); a copy otherwise.
    const values = data.byteOffset % 4 === 0 ? new Float32Array(data.buffer, data.byteOffset, data.length / 4) : new Float32Array(Uint8Array.prototype.slice.call(data).buffer);
    const bad = checkFinite(values);
    if (bad >= 0) throw nonFinite(offset + bad * 4, 'value');
  } else if (encoding === 'bf16') {
    const bad = checkFiniteBf16(data);
    if (bad >= 0) throw nonFinite(offset + 2 * bad, 'bf16 value');
  } else if (encoding === 'int8') {
    const end = offset + data.length;
    for (let k = segmentAt(segments, offset); k < segments.length && segments[k]!.start < end; k++) {
      const s = segments[k]!;
      const first = Math.max(s.start, offset);
      for (let b = first + ((s.start - first) % s.unit + s.unit) % s.unit; b < Math.min(s.end, end); b += s.unit) {
        const scale = data.readFloatLE(b - offset);
        if (!Number.isFinite(scale) || scale < 0) throw nonFinite(b, 'int8 block scale');
      }
    }
  }
}

function nonFinite(byte: number, what: string): CoordinatorError {
  return new CoordinatorError('NON_FINITE', `delta ${what} at byte ${byte} is NaN, infinite or invalid`, { byte });
}
