/**
 * The byte layout of encoded deltas both sides agree on: tensor sizes per encoding, where chunks
 * may start and end, stripe pieces, and the value checks the coordinator makes as bytes arrive.
 */
import { describe, expect, it } from 'vitest';
import { CoordinatorError } from '../../../coordinator/core/errors.js';
import { checkFiniteBf16, deltaSegments, encodedTensorBytes, isUnitBoundary, stripePieces } from '../../../aggregation/index.js';
import { checkValues } from '../../../coordinator/upload/value-checks.js';

describe('wire layout', () => {
  it('sizes a tensor of n values per encoding (int8: ceil(n/128) scales + n values)', () => {
    expect(encodedTensorBytes('f32', 300)).toBe(1200);
    expect(encodedTensorBytes('bf16', 300)).toBe(600);
    expect(encodedTensorBytes('int8', 300)).toBe(3 * 4 + 300);
    expect(encodedTensorBytes('int8', 256)).toBe(2 * 4 + 256);
    expect(encodedTensorBytes('secagg16', 300)).toBe(600);
  });

  it('ends a masked delta with one weight word, as its own segment', () => {
    const s = deltaSegments('secagg32', [3, 2]);
    expect(s.map((x) => [x.index, x.start, x.end])).toEqual([[0, 0, 12], [1, 12, 20], [2, 20, 24]]);
    expect(deltaSegments('f32', [3, 2])).toHaveLength(2);
  });

  it('lets chunks start and end only between values, and between whole int8 blocks', () => {
    const f32 = deltaSegments('f32', [3, 2]);
    expect([0, 4, 12, 16, 20].every((o) => isUnitBoundary(f32, o))).toBe(true);
    expect([2, 13, 21, -4].some((o) => isUnitBoundary(f32, o))).toBe(false);
    const int8 = deltaSegments('int8', [200, 10]); // 2 blocks (132 + 76 bytes), then 1 block of 14
    expect([0, 132, 208, 222].every((o) => isUnitBoundary(int8, o))).toBe(true);
    expect([4, 131, 140, 212].some((o) => isUnitBoundary(int8, o))).toBe(false);
  });

  it('cuts tensors into the pieces of a stripe, each with its own digest', () => {
    const s = deltaSegments('f32', [3, 2, 4]);
    expect(stripePieces(s, 8, 24)).toEqual([
      { tensor: 0, start: 8, end: 12 },
      { tensor: 1, start: 12, end: 20 },
      { tensor: 2, start: 20, end: 24 },
    ]);
  });

  it('refuses non-finite f32 and bf16 values and bad int8 scales, naming the byte', () => {
    const f32 = Buffer.alloc(8);
    f32.writeFloatLE(Number.NaN, 4);
    expect(() => checkValues('f32', deltaSegments('f32', [2]), 100, f32)).toThrow(/byte 104/);
    const bf16 = Buffer.from([0x80, 0x3f, 0x80, 0x7f]); // 1.0, +Inf
    const err = (() => {
      try {
        checkValues('bf16', deltaSegments('bf16', [2]), 0, bf16);
      } catch (e) {
        return e as CoordinatorError;
      }
      return undefined;
    })();
    expect(err?.code).toBe('NON_FINITE');
    expect(err?.message).toContain('byte 2');
    const seg = deltaSegments('int8', [130]);
    const int8 = Buffer.alloc(encodedTensorBytes('int8', 130));
    int8.writeFloatLE(0.5, 0);
    int8.writeFloatLE(-1, 132);
    expect(() => checkValues('int8', seg, 0, int8)).toThrow(/int8 block scale at byte 132/);
    int8.writeFloatLE(0.25, 132);
    expect(() => checkValues('int8', seg, 0, int8)).not.toThrow();
    // Masked words are uniformly random: nothing to check.
    expect(() => checkValues('secagg32', deltaSegments('secagg32', [2]), 0, Buffer.from(f32))).not.toThrow();
  });

  it('finds the first non-finite bf16 value at every alignment and position, as the per-value check does', () => {
    // The byte of the first bad value, as checkValues names it (-1: none).
    const firstNonFiniteBf16 = (b: Uint8Array): number => {
      const at = checkFiniteBf16(b);
      return at < 0 ? -1 : 2 * at;
    };
    const obvious = (b: Uint8Array): number => {
      for (let i = 0; i + 1 < b.length; i += 2) if (((b[i]! | (b[i + 1]! << 8)) & 0x7f80) === 0x7f80) return i;
      return -1;
    };
    const backing = new Uint8Array(64 + 8);
    for (let i = 0; i < backing.length; i += 2) backing.set([0x80, 0x3f], i); // 1.0 everywhere
    const bads = [[0x80, 0x7f], [0x80, 0xff], [0xc1, 0x7f], [0x80, 0x7f]]; // +Inf, -Inf, NaN
    for (let shift = 0; shift < 4; shift++) {
      for (let length = 0; length <= 40; length += 2) {
        const clean = backing.subarray(shift, shift + length);
        expect(firstNonFiniteBf16(clean)).toBe(-1);
        for (let at = 0; at + 1 < length; at += 2) {
          for (const [lo, hi] of bads) {
            const copy = new Uint8Array(backing);
            const view = copy.subarray(shift, shift + length);
            view.set([lo!, hi!], at);
            if (at + 6 < length) view.set([0x80, 0x7f], at + 4); // a later bad value must not win
            expect(firstNonFiniteBf16(view)).toBe(obvious(view));
            expect(firstNonFiniteBf16(view)).toBe(at);
          }
        }
      }
    }
    // A whole chunk goes through the SIMD kernel: the same answer, in bytes.
    const chunk = Buffer.alloc(1 << 16);
    for (let i = 0; i < chunk.length; i += 2) chunk.writeUInt16LE(0x3f80, i);
    expect(firstNonFiniteBf16(chunk)).toBe(-1);
    chunk.writeUInt16LE(0xff80, 40_002); // -Inf
    chunk.writeUInt16LE(0x7fc0, 50_000);
    expect(firstNonFiniteBf16(chunk)).toBe(40_002);
    expect(() => checkValues('bf16', deltaSegments('bf16', [chunk.length / 2]), 1000, chunk)).toThrow(/bf16 value at byte 41002/);
    expect(firstNonFiniteBf16(chunk.subarray(1, 40_001))).toBe(-1);
    // Largest finite magnitude and subnormals pass; every exponent-all-ones pattern fails.
    expect(firstNonFiniteBf16(new Uint8Array([0x7f, 0x7f, 0x01, 0x00, 0x7f, 0xff]))).toBe(-1);
  });
});
