import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { aligned, bf16ToF32, decodeToF32, dtypeSize, f16ToF32, f32ToBf16, f32ToF16, narrowingOverflow } from '../../../aggregation/index.js';

describe('dtype conversions', () => {
  it('knows the size of every dtype', () => {
    expect([dtypeSize('F64'), dtypeSize('F32'), dtypeSize('BF16'), dtypeSize('F16'), dtypeSize('I8'), dtypeSize('BOOL')]).toEqual([8, 4, 2, 2, 1, 1]);
  });

  it('rounds f32 to bf16 to nearest, ties to even', () => {
    // 1 + 2^-8 is exactly halfway between bf16 1 and 1 + 2^-7: ties to the even mantissa (1).
    // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: goes up.
    const out = f32ToBf16(Float32Array.from([1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -2.5, 3.4e38]));
    expect(Array.from(out)).toEqual([0x3f80, 0x3f80, 0x3f82, 0x3f81, 0xc020, 0x7f80]);
  });

  it('keeps NaN a NaN and infinities infinite through bf16', () => {
    // A signalling NaN whose payload sits in the low 16 bits would truncate to Inf without care.
    const src = new Float32Array(new Uint32Array([0x7f800001, 0x7f800000, 0xff800000]).buffer);
    const back = bf16ToF32(f32ToBf16(src));
    expect(Number.isNaN(back[0])).toBe(true);
    expect([back[1], back[2]]).toEqual([Infinity, -Infinity]);
  });

  it('bf16 round trip is exact for values already representable', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff }), (h) => {
        fc.pre((h & 0x7f80) !== 0x7f80); // skip Inf/NaN patterns
        const halves = Uint16Array.of(h);
        expect(f32ToBf16(bf16ToF32(halves))[0]).toBe(h);
      }),
    );
  });

  it('converts f16 to f32 exactly, subnormals and specials included', () => {
    const out = f16ToF32(Uint16Array.from([0x3c00, 0xc000, 0x7bff, 0x0001, 0x0400, 0x8000, 0x7c00, 0xfc00, 0x3555]));
    expect(Array.from(out.slice(0, 8))).toEqual([1, -2, 65504, 2 ** -24, 2 ** -14, -0, Infinity, -Infinity]);
    expect(out[8]).toBe(Math.fround(0.333251953125));
    expect(Number.isNaN(f16ToF32(Uint16Array.of(0x7e00))[0])).toBe(true);
  });

  it('rounds f32 to f16 to nearest even, with overflow and subnormals', () => {
    const out = f32ToF16(Float32Array.from([1, 65504, 65519, 65520, -1e9, 2 ** -24, 2 ** -25, 3 * 2 ** -25, 2 ** -14 - 2 ** -26, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 0]));
    expect(Array.from(out)).toEqual([0x3c00, 0x7bff, 0x7bff, 0x7c00, 0xfc00, 0x0001, 0x0000, 0x0002, 0x0400, 0x3c00, 0x3c02, 0]);
    expect(f32ToF16(Float32Array.of(NaN))[0]! & 0x7e00).toBe(0x7e00);
  });

  it('f16 round trip is exact for every finite f16 value', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = f32ToF16(f16ToF32(all));
    for (let h = 0; h < 65536; h++) {
      if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) continue; // NaN payloads
      if (back[h] !== h) throw new Error(`f16 ${h.toString(16)} came back as ${back[h]!.toString(16)}`);
    }
  });

  it('decodes misaligned views by copying', () => {
    const raw = new Uint8Array(9);
    new Uint8Array(Float32Array.of(1.5, -2).buffer).forEach((b, i) => (raw[i + 1] = b));
    expect(Array.from(decodeToF32(raw.subarray(1), 'F32'))).toEqual([1.5, -2]);
    const halves = new Uint8Array(5);
    halves.set([0xc0, 0x3f, 0x00, 0xc0], 1); // bf16 1.5, -2
    expect(Array.from(decodeToF32(halves.subarray(1), 'BF16'))).toEqual([1.5, -2]);
    expect(aligned(halves.subarray(1), 2).byteOffset % 2).toBe(0);
  });

  it('finds the first finite value that narrowing makes infinite, exactly where the converters do', () => {
    const f32 = (bits: number): number => new Float32Array(Uint32Array.of(bits).buffer)[0]!;
    // f16: 65519.99… stays 65504, 65520 (the tie past it) rounds to Inf; bf16: the same next to f32's limit.
    expect(narrowingOverflow(Float32Array.of(1, -65504, f32(0x477fefff), -65520, 65520), 'F16')).toBe(3);
    expect(narrowingOverflow(Float32Array.of(f32(0x7f7f7fff), f32(0xff7f8000)), 'BF16')).toBe(1);
    // Already infinite or NaN is not an overflow, and F32 never narrows.
    expect(narrowingOverflow(Float32Array.of(Infinity, -Infinity, NaN, 1e38), 'F16')).toBe(3);
    expect(narrowingOverflow(Float32Array.of(3.4e38, 1e30), 'F32')).toBe(-1);
    for (const [dtype, convert] of [['F16', f32ToF16], ['BF16', f32ToBf16]] as const) {
      fc.assert(
        // Any finite magnitude, and many near each limit.
        fc.property(fc.oneof(fc.integer({ min: 0, max: 0x7f7fffff }), fc.integer({ min: 0x477fe000, max: 0x47800fff }), fc.integer({ min: 0x7f7f0000, max: 0x7f7fffff })), (bits) => {
          const value = Float32Array.of(f32(bits));
          const inf = ((convert(value)[0]! & 0x7fff) === (dtype === 'F16' ? 0x7c00 : 0x7f80));
          expect(narrowingOverflow(value, dtype)).toBe(inf ? 0 : -1);
        }),
      );
    }
  });

  it('keeps a 1M-element bf16 round trip within half a bf16 ulp', () => {
    const values = new Float32Array(1 << 20).map((_, i) => Math.sin(i));
    const back = bf16ToF32(f32ToBf16(values));
    let worst = 0;
    for (let i = 0; i < values.length; i++) worst = Math.max(worst, Math.abs(back[i]! - values[i]!));
    expect(worst).toBeLessThanOrEqual(2 ** -9);
  });
});
