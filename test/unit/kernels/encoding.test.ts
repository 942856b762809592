import { describe, expect, it } from 'vitest';
import {
  AggregationError,
  SpoolLayout,
  decodeInt8Blocks,
  encodeInt8Blocks,
  encodedBytes,
  encodedRange,
  int8Bytes,
} from '../../../aggregation/index.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(AggregationError);
    return (e as AggregationError).code;
  }
  return undefined;
}

describe('int8 blocks (the wire format sites encode)', () => {
  it('takes ⌈n/128⌉·4 + n bytes', () => {
    expect([0, 1, 127, 128, 129, 256, 1000].map(int8Bytes)).toEqual([0, 5, 131, 132, 137, 264, 1032]);
    expect(encodedBytes('f32', 10)).toBe(40);
    expect(encodedBytes('bf16', 10)).toBe(20);
    expect(encodedBytes('int8', 10)).toBe(14);
  });

  it('lays out each block as a little-endian f32 scale = absmax/127, then q rounded half away from zero', () => {
    // absmax 127 → scale 1: 2.5 → 3, −2.5 → −3, 0.49 → 0, −127 → −127.
    const bytes = encodeInt8Blocks(Float32Array.of(2.5, -2.5, 0.49, -127, 127));
    const view = new DataView(bytes.buffer);
    expect(bytes.length).toBe(9);
    expect(view.getFloat32(0, true)).toBe(1);
    expect(Array.from(new Int8Array(bytes.buffer, 4, 5))).toEqual([3, -3, 0, -127, 127]);
  });

  it('gives an all-zero block scale 0 and decodes it to zeros', () => {
    const bytes = encodeInt8Blocks(new Float32Array(130).fill(0, 0, 128).fill(1, 128));
    expect(new DataView(bytes.buffer).getFloat32(0, true)).toBe(0);
    const decoded = decodeInt8Blocks(bytes, 130);
    expect(Array.from(decoded.subarray(0, 128)).every((v) => v === 0)).toBe(true);
    expect(Array.from(decoded.subarray(128))).toEqual([1, 1]);
  });

  it('round-trips within half a step (absmax/254) per block', () => {
    const n = 1000;
    const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i) * (1 + (i % 300)) * 1e-3);
    const y = decodeInt8Blocks(encodeInt8Blocks(x), n);
    for (let b = 0; b < n; b += 128) {
      const block = x.subarray(b, b + 128);
      const step = Math.max(...Array.from(block, Math.abs)) / 127;
      for (let i = b; i < Math.min(n, b + 128); i++) expect(Math.abs(y[i]! - x[i]!)).toBeLessThanOrEqual(step / 2 + 1e-9);
    }
  });

  it('refuses NaN or ±Inf input (NON_FINITE) and a buffer of the wrong size (TENSOR_MISMATCH)', () => {
    expect(codeOf(() => encodeInt8Blocks(Float32Array.of(1, Number.NaN)))).toBe('NON_FINITE');
    expect(codeOf(() => encodeInt8Blocks(Float32Array.of(Infinity)))).toBe('NON_FINITE');
    expect(codeOf(() => decodeInt8Blocks(new Uint8Array(10), 7))).toBe('TENSOR_MISMATCH');
  });
});

describe('element → byte ranges', () => {
  it('maps an int8 range to whole blocks from the scale of its first block, with the values to skip', () => {
    expect(encodedRange('int8', 0, 128)).toEqual({ byteOffset: 0, byteLength: 132, skip: 0 });
    expect(encodedRange('int8', 130, 10)).toEqual({ byteOffset: 132, byteLength: 16, skip: 2 });
    expect(encodedRange('int8', 120, 20)).toEqual({ byteOffset: 0, byteLength: 132 + 4 + 12, skip: 120 });
    expect(encodedRange('bf16', 3, 5)).toEqual({ byteOffset: 6, byteLength: 10, skip: 0 });
  });

  it('splits a flat range into per-tensor segments with their byte offsets in the spool', () => {
    const layout = new SpoolLayout('int8', [200, 0, 5, 130]);
    expect(layout.elements).toBe(335);
    expect(layout.bytes).toBe(int8Bytes(200) + int8Bytes(5) + int8Bytes(130));
    const segs = layout.segments(190, 20);
    expect(segs.map((s) => [s.tensor, s.elemInTensor, s.count, s.outOffset, s.byteOffset, s.byteLength, s.skip])).toEqual([
      [0, 190, 10, 0, 132, int8Bytes(200) - 132, 62],
      [2, 0, 5, 10, int8Bytes(200), 9, 0],
      [3, 0, 5, 15, int8Bytes(200) + 9, 9, 0],
    ]);
    expect(new SpoolLayout('f32', [4, 4]).segments(3, 2).map((s) => [s.byteOffset, s.byteLength])).toEqual([
      [12, 4],
      [16, 4],
    ]);
  });

  it('refuses a range past the model (OUT_OF_RANGE) and an unknown encoding (INVALID_ARGUMENT)', () => {
    expect(codeOf(() => new SpoolLayout('f32', [4]).segments(2, 3))).toBe('OUT_OF_RANGE');
    expect(codeOf(() => encodedBytes('f16' as 'f32', 1))).toBe('INVALID_ARGUMENT');
  });
});
