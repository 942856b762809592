/**
 * The value checks the coordinator makes on delta bytes as they arrive (the layout itself is
 * aggregation/wire-layout.ts, shared with the site agent).
 */
import { checkFinite, segmentAt, type DeltaEncoding, type Segment } from '../../aggregation/index.js';
import { CoordinatorError } from '../core/errors.js';

/**
 * Checks the values of `data` (delta bytes from `offset`, unit-aligned) that the coordinator can
 * judge: f32 and bf16 values must be finite, int8 block scales finite and not negative. Masked
 * words are uniformly random by design and cannot be checked.
 */
export function checkValues(encoding: DeltaEncoding, segments: readonly Segment[], offset: number, data: Buffer): void {
  if (encoding === 'f32') {
    const copy = new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.length));
    const bad = checkFinite(copy);
    if (bad >= 0) throw nonFinite(offset + bad * 4, 'value');
  } else if (encoding === 'bf16') {
    for (let i = 0; i < data.length; i += 2) {
      // bf16 keeps f32's exponent: all ones means infinite or NaN.
      if ((data.readUInt16LE(i) & 0x7f80) === 0x7f80) throw nonFinite(offset + i, 'bf16 value');
    }
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
