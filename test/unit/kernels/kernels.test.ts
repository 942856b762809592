import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  AggregationError,
  type Kernels,
  type WireEncoding,
  createKernels,
  encodeInt8Blocks,
  encodedRange,
  f32ToBf16,
  kernelWasmBytes,
  referenceKernels,
  wasmKernelsSupported,
} from '../../../aggregation/index.js';
import { nativeKernels } from '../../../aggregation/native.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const wasm = createKernels();
/** The WebAssembly kernels with their own delta, not the native module's. */
const wasmOnly = createKernels({ native: false });
/** Whether {@link wasm}'s delta is the native module's: the module is loaded (test/setup/native.ts) and the CPU has AVX-512. */
const nativeDelta = nativeKernels()?.delta !== undefined;
if (nativeKernels() !== undefined && !nativeDelta) process.stdout.write('skipping the native delta tests: this CPU lacks AVX-512\n');
const ref = referenceKernels;

/** Deterministic xorshift32 stream. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

const SPECIALS = [Number.NaN, Infinity, -Infinity, -0, 0, 1e-45, -1e-45, 3.4e38, -3.4e38, 1.1754942e-38];

/** f32 values of mixed magnitudes with NaN, ±Inf, ±0 and subnormals sprinkled in. */
function randomF32(n: number, seed: number, specials = true): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => {
    const u = r();
    if (specials && u < 0.05) return SPECIALS[Math.floor(r() * SPECIALS.length)]!;
    return (r() * 2 - 1) * 2 ** Math.floor(r() * 40 - 20);
  });
}

/** Bits with every NaN folded to one pattern: WebAssembly leaves NaN payloads unspecified. */
function bits(a: Float32Array): number[] {
  return Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length), (b, i) => (Number.isNaN(a[i]) ? 0x7fc00000 : b));
}

/** `bytes` copied to an odd offset of a larger buffer: an unaligned start. */
function unaligned(bytes: Uint8Array, shift: number): Uint8Array {
  const big = new Uint8Array(bytes.length + shift);
  big.set(bytes, shift);
  return big.subarray(shift);
}

const LENGTHS = [0, 1, 3, 15, 16, 17, 63, 64, 65, 127, 128, 129, 1000, 16383, 16384, 16385, 40_001];

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function both(run: (k: Kernels) => Float32Array): [Float32Array, Float32Array] {
  return [run(wasm), run(ref)];
}

describe('kernels.wasm', () => {
  it('runs WebAssembly SIMD on this Node (the reference is the fallback only)', () => {
    expect(wasmKernelsSupported()).toBe(true);
    expect(wasm.simd).toBe(true);
    expect(ref.simd).toBe(false);
  });

  it('is what scripts/build-wasm.mjs makes of kernels.wat, and the embedded copy is the same bytes', () => {
    execFileSync(process.execPath, [join(ROOT, 'scripts/build-wasm.mjs'), '--check'], { cwd: ROOT });
    expect(Buffer.from(kernelWasmBytes()).equals(readFileSync(join(ROOT, 'aggregation/kernels/kernels.wasm')))).toBe(true);
  });
});

describe('weighted accumulation: WebAssembly SIMD equals the JS reference bit for bit', () => {
  const weights = [1, 0.25, -0.7, 1e-3, 3];

  it.each(LENGTHS)('accF32 over %i values', (n) => {
    for (const [k, w] of weights.entries()) {
      const acc0 = randomF32(n, 100 + n + k);
      const src = randomF32(n, 200 + n + k);
      const [a, b] = both((kern) => {
        const acc = acc0.slice();
        kern.accF32(acc, src, w);
        return acc;
      });
      expect(bits(a)).toEqual(bits(b));
    }
  });

  it.each(LENGTHS)('accBf16 over %i values', (n) => {
    for (const [k, w] of weights.entries()) {
      const acc0 = randomF32(n, 300 + n + k);
      const src = f32ToBf16(randomF32(n, 400 + n + k));
      const [a, b] = both((kern) => {
        const acc = acc0.slice();
        kern.accBf16(acc, src, w);
        return acc;
      });
      expect(bits(a)).toEqual(bits(b));
    }
  });

  it.each(LENGTHS)('accInt8 over %i values, from every kind of block start', (n) => {
    const r = rng(500 + n);
    const bytes = Uint8Array.from({ length: encodedRange('int8', 127, n + 128).byteLength + 132 }, () => Math.floor(r() * 256));
    for (const skip of [0, 1, 64, 127]) {
      const acc0 = randomF32(n, 600 + n + skip);
      const [a, b] = both((kern) => {
        const acc = acc0.slice();
        kern.accInt8(acc, bytes, 0.3, skip);
        return acc;
      });
      expect(bits(a)).toEqual(bits(b));
    }
  });

  it.each<WireEncoding>(['f32', 'bf16', 'int8'])('accEncoded %s reads wire bytes at unaligned starts', (encoding) => {
    const n = 1031;
    const values = randomF32(n, 77, encoding !== 'int8');
    const wire = encoding === 'f32' ? bytesOf(values) : encoding === 'bf16' ? bytesOf(f32ToBf16(values)) : encodeInt8Blocks(values);
    for (const shift of [1, 2, 3]) {
      const src = unaligned(wire, shift);
      const acc0 = randomF32(n, 78 + shift, false);
      const [a, b] = both((kern) => {
        const acc = acc0.slice();
        kern.accEncoded(acc, src, encoding, 0.5);
        return acc;
      });
      expect(bits(a)).toEqual(bits(b));
    }
  });

  it('keeps the sign of zero as IEEE addition does (−0 + −0 = −0, +0 + −0 = +0)', () => {
    for (const kern of [wasm, ref]) {
      const acc = Float32Array.of(-0, 0, -0, 0);
      kern.accF32(acc, Float32Array.of(-0, -0, 0, 0), 1);
      expect(Array.from(acc).map((v) => Object.is(v, -0))).toEqual([true, false, false, false]);
    }
  });

  it('refuses a source shorter than the accumulator with INVALID_ARGUMENT', () => {
    for (const kern of [wasm, ref]) {
      const err = (() => {
        try {
          kern.accEncoded(new Float32Array(10), new Uint8Array(39), 'f32', 1);
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err).toBeInstanceOf(AggregationError);
      expect((err as AggregationError).code).toBe('INVALID_ARGUMENT');
    }
  });
});

describe('modular addition of masked words', () => {
  it.each(LENGTHS)('add/sub mod 2^32 and 2^16 over %i words equal the reference', (n) => {
    const r = rng(900 + n);
    const a32 = Uint32Array.from({ length: n }, () => Math.floor(r() * 2 ** 32));
    const b32 = Uint32Array.from({ length: n }, () => Math.floor(r() * 2 ** 32));
    const a16 = Uint16Array.from({ length: n }, () => Math.floor(r() * 2 ** 16));
    const b16 = Uint16Array.from({ length: n }, () => Math.floor(r() * 2 ** 16));
    for (const op of ['addModU32', 'subModU32'] as const) {
      const x = a32.slice();
      const y = a32.slice();
      wasm[op](x, b32);
      ref[op](y, b32);
      expect(x).toEqual(y);
    }
    for (const op of ['addModU16', 'subModU16'] as const) {
      const x = a16.slice();
      const y = a16.slice();
      wasm[op](x, b16);
      ref[op](y, b16);
      expect(x).toEqual(y);
    }
  });

  it('wraps: 0xffffffff + 2 = 1 and 0 − 1 = 0xffff', () => {
    for (const kern of [wasm, ref]) {
      const a = Uint32Array.of(0xffffffff);
      kern.addModU32(a, Uint32Array.of(2));
      expect(a[0]).toBe(1);
      const b = Uint16Array.of(0);
      kern.subModU16(b, Uint16Array.of(1));
      expect(b[0]).toBe(0xffff);
    }
  });
});

describe('findNonFinite', () => {
  it.each(LENGTHS.filter((n) => n > 0))('finds the first NaN or ±Inf in %i values wherever it sits', (n) => {
    const values = randomF32(n, 1200 + n, false);
    expect(wasm.findNonFinite(values)).toBe(-1);
    for (const at of [0, n >> 1, n - 1]) {
      for (const bad of [Number.NaN, Infinity, -Infinity]) {
        const v = values.slice();
        v[at] = bad;
        if (at + 1 < n) v[n - 1] = Number.NaN; // a later one must not win
        expect(wasm.findNonFinite(v)).toBe(at);
        expect(ref.findNonFinite(v)).toBe(at);
      }
    }
  });

  it('treats the largest finite f32 and subnormals as finite', () => {
    const v = Float32Array.of(3.4028234663852886e38, -3.4028234663852886e38, 1e-45, -0);
    expect(wasm.findNonFinite(v)).toBe(-1);
    expect(ref.findNonFinite(v)).toBe(-1);
  });
});

describe('deltaToBf16 and deltaToF32: a site delta, WebAssembly SIMD equals the JS reference and the encoder', () => {
  /** The encoder's own composition: widen, subtract in f32, f32ToBf16. */
  function composed(local: Float32Array, global: Float32Array): Uint16Array {
    const d = new Float32Array(local.length);
    for (let i = 0; i < d.length; i++) d[i] = local[i]! - global[i]!;
    return f32ToBf16(d);
  }
  /** `x` as it would be stored in `dtype`: the bytes, and the f32 values they hold. */
  function stored(x: Float32Array, dtype: 'F32' | 'BF16'): { bytes: Uint8Array; values: Float32Array } {
    if (dtype === 'F32') return { bytes: bytesOf(x), values: x };
    const halves = f32ToBf16(x);
    return { bytes: bytesOf(halves), values: new Float32Array(Uint32Array.from(halves, (h) => h << 16).buffer) };
  }
  /** bf16 bits with every NaN folded to one pattern (payloads are unspecified). */
  const folded = (h: Uint16Array): number[] => Array.from(h, (b) => ((b & 0x7f80) === 0x7f80 && (b & 0x7f) !== 0 ? 0x7fc0 : b));

  // The WebAssembly kernel, and the native module's (AVX-512) where this machine runs it.
  const kinds = [['WebAssembly', wasmOnly], ...(nativeDelta ? [['native', wasm] as const] : [])] as const;
  for (const [ld, gd] of [['F32', 'F32'], ['BF16', 'BF16'], ['F32', 'BF16'], ['BF16', 'F32']] as const) {
    it.each(kinds)(`${ld} local − ${gd} global, every length around the SIMD width and the window, at odd offsets (%s)`, (_, kernels) => {
      for (const n of LENGTHS) {
        const global = randomF32(n, 7 + n);
        const local = Float32Array.from(global, (g, i) => (i % 7 === 0 ? randomF32(1, i + 1)[0]! : g + (g * 1e-3 * ((i % 5) - 2)) / 2));
        const l = stored(local, ld);
        const g = stored(global, gd);
        const want = folded(composed(l.values, g.values));
        const a = new Uint16Array(n);
        const b = new Uint16Array(n);
        kernels.deltaToBf16(a, unaligned(l.bytes, 3), ld, unaligned(g.bytes, 1), gd);
        ref.deltaToBf16(b, l.bytes, ld, g.bytes, gd);
        expect(folded(a)).toEqual(want);
        expect(folded(b)).toEqual(want);
        // Without the rounding: the f32 difference itself.
        const d = Float32Array.from(l.values, (x, i) => x - g.values[i]!);
        const fa = new Float32Array(n);
        const fb = new Float32Array(n);
        kernels.deltaToF32(fa, unaligned(l.bytes, 2), ld, unaligned(g.bytes, 3), gd);
        ref.deltaToF32(fb, l.bytes, ld, g.bytes, gd);
        expect(bits(fa)).toEqual(bits(d));
        expect(bits(fb)).toEqual(bits(d));
      }
    });
  }

  it.each(kinds)('keeps a NaN a NaN in bf16 whatever its payload, where rounding would carry it into the sign (%s)', (_, kernels) => {
    // F32 NaNs whose low half would round up into the exponent, or past it into the sign bit.
    const local = Uint32Array.of(0x7fffffff, 0xffffffff, 0x7f80ffff, 0xff800001, 0x7fc00000, 0x3f800000);
    const n = local.length;
    const out = new Uint16Array(n);
    const want = new Uint16Array(n);
    kernels.deltaToBf16(out, bytesOf(local), 'F32', new Uint8Array(n * 4), 'F32');
    ref.deltaToBf16(want, bytesOf(local), 'F32', new Uint8Array(n * 4), 'F32');
    const isNaN = (h: number): boolean => (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;
    expect(Array.from(out, isNaN)).toEqual([true, true, true, true, true, false]);
    expect(Array.from(want, isNaN)).toEqual([true, true, true, true, true, false]);
    expect(out[5]).toBe(0x3f80);
  });

  it('refuses a source shorter than the output', () => {
    expect(() => wasm.deltaToBf16(new Uint16Array(4), new Uint8Array(16), 'F32', new Uint8Array(12), 'F32')).toThrow(AggregationError);
    expect(() => wasmOnly.deltaToBf16(new Uint16Array(4), new Uint8Array(16), 'F32', new Uint8Array(12), 'F32')).toThrow(AggregationError);
    expect(() => ref.deltaToBf16(new Uint16Array(4), new Uint8Array(7), 'BF16', new Uint8Array(8), 'BF16')).toThrow(AggregationError);
    expect(() => wasm.deltaToF32(new Float32Array(4), new Uint8Array(16), 'F32', new Uint8Array(7), 'BF16')).toThrow(AggregationError);
  });
});

describe('findNonFiniteBf16: WebAssembly SIMD equals the JS reference', () => {
  it('finds the first bf16 NaN or infinity at every length around the SIMD step and the window, at odd offsets', () => {
    for (const n of LENGTHS) {
      const clean = f32ToBf16(randomF32(n, 3 + n, false));
      expect(wasm.findNonFiniteBf16(unaligned(bytesOf(clean), 1))).toBe(-1);
      expect(ref.findNonFiniteBf16(bytesOf(clean))).toBe(-1);
      for (const at of [0, Math.floor(n / 2), n - 1].filter((i) => i >= 0 && i < n)) {
        for (const bad of [0x7f80, 0xff80, 0x7fc1]) {
          const h = Uint16Array.from(clean);
          h[at] = bad;
          if (at + 3 < n) h[at + 3] = 0x7f80; // a later one must not win
          expect(wasm.findNonFiniteBf16(unaligned(bytesOf(h), 3))).toBe(at);
          expect(ref.findNonFiniteBf16(bytesOf(h))).toBe(at);
        }
      }
    }
  });
});
