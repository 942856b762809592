/**
 * The native masker (`maskDelta`, native/mask.c): a site's masked words made straight from the two
 * models' bytes, block by block. It must make the words of quantizeAndMask over Δ computed apart,
 * bit for bit, wherever the range starts in the whole vector (the blocks follow the vector's word
 * index, not the range's), for any number of masks of either sign, and name the first non-finite
 * value of Δ as quantizeAndMask does.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { referenceKernels } from '../../../aggregation/index.js';
import { nativeKernels, useNativeKernels } from '../../../aggregation/native.js';
import {
  type DeltaSources,
  type MaskBits,
  type MaskedEncodeInput,
  MaskWorkspace,
  type QuantizeOptions,
  maskDelta,
  maskDeltaAvailable,
  quantizeAndMask,
  SecAggError,
} from '../../../aggregation/secagg/index.js';
import { loadNativeModule } from '../../../common/native.js';
import { skipUnless } from '../../helpers/components.js';
import { thrownBy } from '../../helpers/thrown.js';
import { codeOf, seededRandomBytes } from './helpers.js';

type Dtype = 'F32' | 'BF16';

/** A model's bytes of `values`: F32 as they are, BF16 by keeping each value's upper half (any bf16 pattern will do). */
function modelBytes(values: Float32Array, dtype: Dtype): Uint8Array {
  const f32 = new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
  if (dtype === 'F32') return f32;
  const bf16 = new Uint16Array(values.length);
  const words = new Uint32Array(f32.buffer);
  for (let i = 0; i < values.length; i++) bf16[i] = words[i]! >>> 16;
  return new Uint8Array(bf16.buffer);
}

interface Case {
  readonly global: Float32Array;
  readonly local: Float32Array;
  readonly dtypes: readonly [Dtype, Dtype];
  readonly bits: MaskBits;
  readonly input: MaskedEncodeInput;
}

function sourcesOf(c: Case): DeltaSources {
  const [gd, ld] = c.dtypes;
  return { local: modelBytes(c.local, ld), localBf16: ld === 'BF16', global: modelBytes(c.global, gd), globalBf16: gd === 'BF16' };
}

function options(bits: MaskBits): QuantizeOptions {
  return { clip: 2e-3, quantBits: bits === 32 ? 24 : 13, modulusBits: bits };
}

/** quantizeAndMask over Δ computed apart by the reference delta kernel, in the plain-JS workspace. */
function expectedWords(c: Case): Uint8Array {
  const s = sourcesOf(c);
  const delta = new Float32Array(c.local.length);
  referenceKernels.deltaToF32(delta, s.local, s.localBf16 ? 'BF16' : 'F32', s.global, s.globalBf16 ? 'BF16' : 'F32');
  const words = quantizeAndMask(delta, options(c.bits), c.input, new MaskWorkspace({ reference: true }));
  return new Uint8Array(words.buffer, words.byteOffset, words.byteLength);
}

function maskedWords(c: Case): Uint8Array {
  const out = c.bits === 32 ? new Uint32Array(c.local.length) : new Uint16Array(c.local.length);
  expect(maskDelta(sourcesOf(c), options(c.bits), c.input, out)).toBe(true);
  return new Uint8Array(out.buffer);
}

function makeCase(label: string, n: number, dtypes: readonly [Dtype, Dtype], bits: MaskBits, masks: number, wordOffset: number, weight = 0.625): Case {
  const random = seededRandomBytes(label);
  const global = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37) * 0.05);
  const local = global.map((g, i) => g + (i % 13 === 0 ? 4e-3 : Math.cos(i) * 8e-4));
  const pairwise = Array.from({ length: masks }, (_, j) => ({ peer: `peer-${j}`, seed: random(32), sign: (j % 3 === 1 ? -1 : 1) as 1 | -1 }));
  return { global, local, dtypes, bits, input: { selfSeed: random(32), pairwise, roundingSeed: random(32), weight, wordOffset } };
}

const moduleMissing = skipUnless('native', nativeKernels() === undefined ? 'the native module is not loaded' : undefined);
const noMasker = !moduleMissing && !maskDeltaAvailable();
if (noMasker) process.stdout.write('skipping the native masker tests: this CPU lacks AVX-512 or AES-NI\n');

describe.skipIf(moduleMissing || noMasker)('the native masker (maskDelta, native/mask.c)', () => {
  afterEach(() => useNativeKernels(loadNativeModule()));

  it('makes quantizeAndMask\'s words of Δ bit for bit: any dtypes, both widths, 0 to 9 masks of either sign, any length and any word offset', () => {
    const dtype = fc.constantFrom<Dtype>('F32', 'BF16');
    fc.assert(
      fc.property(
        fc.record({
          n: fc.oneof(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 500, max: 2100 })),
          dtypes: fc.tuple(dtype, dtype),
          bits: fc.constantFrom<MaskBits>(16, 32),
          masks: fc.integer({ min: 0, max: 9 }),
          wordOffset: fc.oneof(fc.integer({ min: 0, max: 1100 }), fc.integer({ min: 0, max: 2 ** 40 })),
          weight: fc.constantFrom(0, 1, 0.625, 0.3),
        }),
        (r) => {
          const c = makeCase(`p ${JSON.stringify(r)}`, r.n, r.dtypes, r.bits, r.masks, r.wordOffset, r.weight);
          expect(Buffer.from(maskedWords(c)).equals(Buffer.from(expectedWords(c)))).toBe(true);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('gives a whole range\'s words when the range is cut anywhere and each part masked from its own word offset (a resumed stripe)', () => {
    const whole = makeCase('cut', 5000, ['BF16', 'BF16'], 16, 3, 1_000_003);
    const expected = expectedWords(whole);
    const got = new Uint8Array(expected.length);
    const cuts = [0, 1, 511, 512, 1537, 4999, 5000];
    for (let k = 0; k + 1 < cuts.length; k++) {
      const [a, b] = [cuts[k]!, cuts[k + 1]!];
      const part: Case = { ...whole, global: whole.global.subarray(a, b), local: whole.local.subarray(a, b), input: { ...whole.input, wordOffset: 1_000_003 + a } };
      got.set(maskedWords(part), a * 2);
    }
    expect(Buffer.from(got).equals(Buffer.from(expected))).toBe(true);
  });

  it('names the first NaN or ±Infinity of Δ by its index in the whole vector, as quantizeAndMask does: in a block\'s steps, its tail, a later block, or by overflow', () => {
    for (const [at, how] of [[0, 'nan'], [9, 'inf'], [600, 'nan'], [1530, 'overflow'], [2047, 'nan']] as const) {
      const c = makeCase(`nf ${at}`, 2048, ['F32', 'F32'], 32, 2, 77);
      if (how === 'nan') c.local[at] = Number.NaN;
      else if (how === 'inf') c.local[at] = Number.NEGATIVE_INFINITY;
      else [c.local[at], c.global[at]] = [3.4e38, -3.4e38];
      c.local[at + 1 < 2048 ? at + 1 : 0] = Number.NaN; // a later (or earlier, already named) one must not be named instead
      const native = thrownBy(() => maskedWords(c));
      const reference = thrownBy(() => expectedWords(c));
      expect(native).toBeInstanceOf(SecAggError);
      expect([(native as SecAggError).code, (native as SecAggError).context]).toEqual([(reference as SecAggError).code, (reference as SecAggError).context]);
      expect((native as SecAggError).context).toMatchObject({ index: 77 + (how === 'nan' && at === 2047 ? 0 : at) });
    }
  });

  it('refuses what quantizeAndMask refuses, with the same codes, messages and details, and sources of different lengths', () => {
    const c = makeCase('refuse', 64, ['BF16', 'F32'], 16, 2, 5);
    const s = sourcesOf(c);
    const q = options(16);
    const out = new Uint16Array(64);
    expect(codeOf(() => maskDelta(s, q, c.input, new Uint16Array(63)))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => maskDelta(s, q, c.input, new Uint32Array(64)))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => maskDelta({ ...s, global: s.global.subarray(2) }, q, c.input, out))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => maskDelta({ ...s, local: s.local.subarray(1) }, q, c.input, out))).toBe('INVALID_ARGUMENT');
    const peer = c.input.pairwise[0]!;
    for (const input of [
      { ...c.input, pairwise: [peer, peer] },
      { ...c.input, selfSeed: new Uint8Array(31) },
      { ...c.input, roundingSeed: new Uint8Array(16) },
      { ...c.input, wordOffset: -1 },
      { ...c.input, wordOffset: 2 ** 52 },
      { ...c.input, weight: 1.5 },
    ]) {
      const x = new Float32Array(64);
      const [native, reference] = [thrownBy(() => maskDelta(s, q, input, out)), thrownBy(() => quantizeAndMask(x, q, input, undefined, out))];
      const said = (e: unknown) => (e instanceof SecAggError ? [e.code, e.message, e.context] : e);
      expect([input, said(native)]).toEqual([input, said(reference)]);
      expect(codeOf(() => maskDelta(s, q, input, out))).toBe('INVALID_ARGUMENT');
    }
    expect(codeOf(() => maskDelta(s, { ...q, quantBits: 17 }, c.input, out))).toBe('INVALID_ARGUMENT');
  });

  it('refuses, in the module itself, buffers that do not agree and an offset whose stream bytes pass 2^53', () => {
    const k = nativeKernels()!.maskDelta!;
    const p = [2e-3, 4095, 4095 / 2e-3, 1] as const;
    const bytes = (n: number) => new Uint8Array(n);
    expect(() => k(bytes(8), bytes(8), true, bytes(8), true, bytes(64), bytes(1), 0, ...p, false)).not.toThrow();
    expect(() => k(bytes(8), bytes(6), true, bytes(8), true, bytes(64), bytes(1), 0, ...p, false)).toThrow(/n values in each source/);
    expect(() => k(bytes(8), bytes(8), true, bytes(8), true, bytes(63), bytes(1), 0, ...p, false)).toThrow(/32-byte key/);
    expect(() => k(bytes(8), bytes(8), true, bytes(8), true, bytes(64), bytes(1), 2 ** 51, ...p, false)).toThrow(/word offset/);
    expect(() => k(bytes(8), bytes(8), true, bytes(8), true, bytes(64), bytes(1), 0.5, ...p, false)).toThrow(/word offset/);
  });

  it('does nothing and says so where the process has no native masker: the encoder then takes slices of Δ', () => {
    const loaded = loadNativeModule();
    useNativeKernels({ module: { ...loaded.module, maskDelta: undefined } });
    expect(maskDeltaAvailable()).toBe(false);
    const c = makeCase('absent', 16, ['BF16', 'BF16'], 16, 1, 0);
    const out = new Uint16Array(16).fill(7);
    expect(maskDelta(sourcesOf(c), options(16), c.input, out)).toBe(false);
    expect(Array.from(out).every((w) => w === 7)).toBe(true);
  });
});
