import { createCipheriv } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { nativeKernels } from '../../../aggregation/native.js';
import {
  MASK_SLICE_WORDS,
  type MaskBits,
  type MaskWords,
  MaskWorkspace,
  type PairwiseMask,
  type QuantizeOptions,
  dequantizeSum,
  maskVector,
  pairwiseSign,
  quantize,
  quantizeAndMask,
  SecAggError,
  unmaskDequantize,
  unmaskSum,
  unmaskSumInPlace,
} from '../../../aggregation/secagg/index.js';
import { codeOf, seededRandomBytes } from './helpers.js';

// The reference: the simple composition the fused path replaced, written from the spec alone
// (prg.ts module comment, quantize.ts module comment, mask.ts), with its own keystream straight
// from node:crypto. quantize + mask + unmask + dequantise, one whole-vector pass at a time.

/** Words [offset, offset + count) of AES-256-CTR(seed, IV = 0) over zeros, little-endian. */
function refWords(seed: Uint8Array, offset: number, count: number, bits: MaskBits): number[] {
  const w = bits / 8;
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64BE(BigInt(Math.floor((offset * w) / 16)), 8);
  const skip = (offset * w) % 16;
  const bytes = createCipheriv('aes-256-ctr', seed, iv).update(Buffer.alloc(skip + count * w)).subarray(skip);
  return Array.from({ length: count }, (_, i) => (bits === 32 ? bytes.readUInt32LE(i * 4) : bytes.readUInt16LE(i * 2)));
}

function refQuantize(x: Float32Array, q: QuantizeOptions, weight: number, seed: Uint8Array, offset: number): number[] {
  const Z = 2 ** (q.quantBits - 1) - 1;
  const u = refWords(seed, offset, x.length, 32);
  return Array.from(x, (xi, i) => {
    const clipped = xi < -q.clip ? -q.clip : xi > q.clip ? q.clip : xi;
    const k = Math.floor(weight * clipped * (Z / q.clip) + u[i]! / 2 ** 32);
    return Z + (k > Z ? Z : k < -Z ? -Z : k);
  });
}

/** words + Σ sign·PRG(seed) mod 2^b. */
function refFold(words: readonly number[], terms: readonly { seed: Uint8Array; sign: 1 | -1 }[], offset: number, bits: MaskBits): number[] {
  const mod = 2 ** bits;
  const streams = terms.map((t) => ({ words: refWords(t.seed, offset, words.length, bits), sign: t.sign }));
  return words.map((v, i) => {
    let acc = v;
    for (const s of streams) acc = (((acc + s.sign * s.words[i]!) % mod) + mod) % mod;
    return acc;
  });
}

/** The first index where `got` differs from `want` (or the shorter length), −1 when they are equal: a cheap failure on long vectors. */
function firstDifference(got: ArrayLike<number>, want: ArrayLike<number>): number {
  const n = Math.min(got.length, want.length);
  for (let i = 0; i < n; i++) if (!Object.is(got[i], want[i])) return i;
  return got.length === want.length ? -1 : n;
}

const SITES = ['site-1', 'site-2', 'site-3', 'site-4', 'site-5', 'site-6', 'site-7', 'site-8', 'site-9', 'site-a'];

interface Case {
  readonly name: string;
  readonly bits: MaskBits;
  readonly quantBits: number;
  readonly length: number;
  readonly offset: number;
  /** This site's index in SITES, and how many of the others are its neighbours. */
  readonly self: number;
  readonly peers: number;
}

// Lengths around the slice size and the kernels' 8- and 16-word steps; offsets off the AES block;
// peer counts that leave groups of four (of one sign and of both) and singles of each sign.
const CASES: readonly Case[] = [
  { name: 'one word at offset 0, no peers', bits: 32, quantBits: 24, length: 1, offset: 0, self: 0, peers: 0 },
  { name: 'odd length mid-block, 3 peers of both signs', bits: 32, quantBits: 24, length: 1013, offset: 3, self: 2, peers: 3 },
  { name: 'two and a half slices, 7 peers all added (lowest id)', bits: 32, quantBits: 24, length: 2 * MASK_SLICE_WORDS + 16387, offset: 1_000_003, self: 0, peers: 7 },
  { name: 'a slice and a bit, 7 peers all subtracted (highest id)', bits: 32, quantBits: 24, length: MASK_SLICE_WORDS + 9, offset: 5, self: 7, peers: 7 },
  { name: 'mixed signs, 9 peers', bits: 32, quantBits: 20, length: 40_001, offset: 77, self: 4, peers: 9 },
  { name: '16-bit words, 5 peers', bits: 16, quantBits: 13, length: MASK_SLICE_WORDS + 1001, offset: 11, self: 3, peers: 5 },
  { name: '16-bit words, odd length mid-block, 3 peers of both signs', bits: 16, quantBits: 14, length: 1013, offset: 3, self: 2, peers: 3 },
  { name: '16-bit words, 3 peers all added (lowest id)', bits: 16, quantBits: 14, length: 1013, offset: 7, self: 0, peers: 3 },
];

function inputs(c: Case): { x: Float32Array; pairwise: PairwiseMask[]; selfSeed: Uint8Array; roundingSeed: Uint8Array; q: QuantizeOptions } {
  const random = seededRandomBytes(`fused ${c.name}`);
  const x = new Float32Array(c.length);
  for (let i = 0; i < x.length; i++) x[i] = i % 17 === 0 ? 0 : i % 29 === 0 ? 5 * (i % 2 ? 1 : -1) : Math.sin(i * 0.37) * 0.8;
  const self = SITES[c.self]!;
  const pairwise = SITES.filter((s) => s !== self)
    .slice(0, c.peers)
    .map((peer) => ({ peer, seed: random(32), sign: pairwiseSign(self, peer) }));
  return { x, pairwise, selfSeed: random(32), roundingSeed: random(32), q: { clip: 1.5, quantBits: c.quantBits, modulusBits: c.bits } };
}

const workspaces = [
  { kind: 'WebAssembly SIMD', ws: new MaskWorkspace({ native: false }) },
  { kind: 'plain JS', ws: new MaskWorkspace({ reference: true }) },
  // The native AVX-512 quantiser where it is built (test/unit/aggregation/native.test.ts says whether).
  { kind: 'native quantiser', ws: new MaskWorkspace() },
];

describe('fused masking (quantise, weight and mask per slice; unmask and decode per slice)', () => {
  it('runs in WebAssembly SIMD here, and in plain JS when asked', () => {
    expect(workspaces[0]!.ws.simd).toBe(true);
    expect(workspaces[1]!.ws.simd).toBe(false);
    expect(workspaces[2]!.ws.simd).toBe(true);
    // The third quantises natively wherever the native module offers it, and only the third.
    expect(workspaces[2]!.ws.nativeQuantize).toBe(nativeKernels()?.quantizeF32 !== undefined && nativeKernels()?.foldWords !== undefined);
    expect(workspaces[0]!.ws.nativeQuantize).toBe(false);
  });

  for (const c of CASES) {
    for (const { kind, ws } of workspaces) {
      it(`makes the reference composition's words bit for bit: ${c.name} (${kind})`, () => {
        const { x, pairwise, selfSeed, roundingSeed, q } = inputs(c);
        const weight = 0.625;
        const quantized = refQuantize(x, q, weight, roundingSeed, c.offset);
        const expected = refFold(quantized, [{ seed: selfSeed, sign: 1 }, ...pairwise], c.offset, c.bits);
        const fused = quantizeAndMask(x, q, { weight, roundingSeed, selfSeed, pairwise, wordOffset: c.offset }, ws);
        expect(fused).toBeInstanceOf(c.bits === 32 ? Uint32Array : Uint16Array);
        expect(firstDifference(fused, expected)).toBe(-1);
        // The library's unfused forms agree too.
        const words = quantize(x, q, { weight, roundingSeed, wordOffset: c.offset });
        expect(firstDifference(words, quantized)).toBe(-1);
        expect(firstDifference(maskVector(words, { selfSeed, pairwise, wordOffset: c.offset }, ws), expected)).toBe(-1);
      });

      it(`unmasks and decodes as the reference does, bit for bit: ${c.name} (${kind})`, () => {
        const { pairwise, selfSeed } = inputs(c);
        const random = seededRandomBytes(`sum ${c.name}`);
        const sum: MaskWords = c.bits === 32 ? new Uint32Array(c.length) : new Uint16Array(c.length);
        const raw = random(sum.byteLength);
        new Uint8Array(sum.buffer).set(raw);
        const before = Array.from(sum);
        const self = SITES[c.self]!;
        const droppedPairs = pairwise.map((p) => ({ survivor: p.peer, dropped: self, seed: p.seed }));
        const survivorSelfSeeds = [selfSeed, random(32), random(32)];
        const options = { survivorSelfSeeds, droppedPairs, wordOffset: c.offset };
        const terms = [...survivorSelfSeeds.map((seed) => ({ seed, sign: -1 as const })), ...droppedPairs.map((d) => ({ seed: d.seed, sign: pairwiseSign(d.survivor, d.dropped) === 1 ? (-1 as const) : (1 as const) }))];
        const expected = refFold(before, terms, c.offset, c.bits);
        expect(firstDifference(unmaskSum(sum, options, ws), expected)).toBe(-1);
        const q = { clip: 1.5, quantBits: c.quantBits, modulusBits: c.bits };
        const sites = 3;
        const unmasked = c.bits === 32 ? Uint32Array.from(expected) : Uint16Array.from(expected);
        const decoded = unmaskDequantize(sum, sites, q, options, ws);
        expect(firstDifference(decoded, dequantizeSum(unmasked, sites, q))).toBe(-1);
        expect(firstDifference(sum, before)).toBe(-1);
        unmaskSumInPlace(sum, options, ws);
        expect(firstDifference(sum, expected)).toBe(-1);
      });
    }
  }

  // The quantiser's own edges, where a kernel that rounds, clips or converts otherwise than the JS
  // formula would differ: values at and just past ±clip, −0, subnormals, f32's largest, products
  // that land on whole numbers, weights 0 and 1, q = b (Z = 2^(b−1) − 1, the widest clamp).
  const edgeValues = (clip: number): Float32Array => {
    const f = (v: number) => Math.fround(v);
    const edges = [0, -0, clip, -clip, f(clip * (1 + 2 ** -20)), -f(clip * (1 + 2 ** -20)), f(clip * (1 - 2 ** -20)), 1e-45, -1e-45, 3.4e38, -3.4e38, 0.5, -0.5, 0.25, 1, -1];
    const x = new Float32Array(4099);
    for (let i = 0; i < x.length; i++) x[i] = i < edges.length ? edges[i]! : i % 3 === 0 ? f(((i % 64) - 32) / 16) : Math.cos(i) * clip * 1.2;
    return x;
  };
  for (const { bits, quantBits, clip } of [
    { bits: 32, quantBits: 32, clip: 1 },
    { bits: 32, quantBits: 24, clip: 2.0e-3 },
    { bits: 16, quantBits: 16, clip: 1.5 },
    { bits: 16, quantBits: 14, clip: 2.0e-3 },
  ] as const) {
    it(`quantises the edge values the plain-JS way in WebAssembly SIMD and natively: b = ${bits}, q = ${quantBits}, clip ${clip}`, () => {
      const random = seededRandomBytes(`edges ${bits} ${quantBits}`);
      const x = edgeValues(clip);
      const q = { clip, quantBits, modulusBits: bits };
      for (const weight of [0, 1, 0.3, 0.625]) {
        for (const [from, to] of [[0, x.length], [1, 2050], [3, 4]] as const) {
          const input = { weight, roundingSeed: random(32), selfSeed: random(32), pairwise: [], wordOffset: from + 7 };
          const part = x.subarray(from, to);
          const plain = quantizeAndMask(part, q, input, workspaces[1]!.ws);
          const reference = refFold(refQuantize(part, q, weight, input.roundingSeed, input.wordOffset), [{ seed: input.selfSeed, sign: 1 }], input.wordOffset, bits);
          expect([weight, from, firstDifference(plain, reference)]).toEqual([weight, from, -1]);
          for (const { kind, ws } of [workspaces[0]!, workspaces[2]!]) {
            expect([kind, weight, from, firstDifference(quantizeAndMask(part, q, input, ws), reference)]).toEqual([kind, weight, from, -1]);
          }
        }
      }
    });
  }

  it('names the first NaN or ±Infinity in either workspace, wherever it falls in the kernel\'s steps', () => {
    const { pairwise, selfSeed, roundingSeed, q } = inputs(CASES[1]!);
    const input = { weight: 0.5, roundingSeed, selfSeed, pairwise, wordOffset: 100 };
    // Even and odd places, the odd length's last value (the kernel's scalar tail), a second slice.
    for (const [length, at, bad] of [[1013, 700, Number.NaN], [1013, 701, Infinity], [1013, 1012, -Infinity], [MASK_SLICE_WORDS + 3, MASK_SLICE_WORDS + 2, Number.NaN]] as const) {
      const x = new Float32Array(length).fill(0.25);
      x[at] = bad;
      x[length - 1] = x[length - 1] === 0.25 ? -Infinity : x[length - 1]!;
      for (const { kind, ws } of workspaces) {
        let thrown: unknown;
        try {
          quantizeAndMask(x, q, input, ws);
        } catch (error) {
          thrown = error;
        }
        expect([kind, length, at, thrown instanceof SecAggError ? [thrown.code, thrown.context['index']] : thrown]).toEqual([kind, length, at, ['NON_FINITE', 100 + at]]);
      }
    }
  });

  it('writes into a caller\'s buffer of the modulus\'s width, a view at any offset of a larger one, and refuses one of another size or width', () => {
    const { x, pairwise, selfSeed, roundingSeed, q } = inputs(CASES[1]!);
    const input = { weight: 0.5, roundingSeed, selfSeed, pairwise, wordOffset: 3 };
    const expected = quantizeAndMask(x, q, input, workspaces[1]!.ws);
    for (const { kind, ws } of workspaces) {
      // As the agent's chunks are: words in a pooled buffer, after a message's header bytes.
      const pool = Buffer.alloc(12 + x.length * 4 + 8, 0xab);
      const out = new Uint32Array(pool.buffer, pool.byteOffset + 12, x.length);
      expect(quantizeAndMask(x, q, input, ws, out), kind).toBe(out);
      expect(firstDifference(out, expected), kind).toBe(-1);
      expect([pool.subarray(0, 12).every((b) => b === 0xab), pool.subarray(12 + x.length * 4).every((b) => b === 0xab)], kind).toEqual([true, true]);
    }
    expect(codeOf(() => quantizeAndMask(x, q, input, undefined, new Uint32Array(x.length - 1)))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => quantizeAndMask(x, q, input, undefined, new Uint16Array(x.length)))).toBe('INVALID_ARGUMENT');
  });

  it('refuses what quantize and maskVector refuse, with the same codes', () => {
    const { x, pairwise, selfSeed, roundingSeed, q } = inputs(CASES[1]!);
    const input = { weight: 0.5, roundingSeed, selfSeed, pairwise };
    x[700] = Number.NaN;
    expect(codeOf(() => quantizeAndMask(x, q, input))).toBe('NON_FINITE');
    expect(codeOf(() => quantize(x, q, input))).toBe('NON_FINITE');
    x[700] = 0;
    expect(codeOf(() => quantizeAndMask(x, q, { ...input, weight: 1.5 }))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => quantizeAndMask(x, q, { ...input, pairwise: [...pairwise, pairwise[0]!] }))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => quantizeAndMask(x, q, { ...input, selfSeed: selfSeed.subarray(0, 16) }))).toBe('INVALID_ARGUMENT');
    const sum = new Uint32Array(10);
    expect(codeOf(() => unmaskDequantize(sum, 2, { ...q, modulusBits: 16, quantBits: 13 }, { survivorSelfSeeds: [selfSeed], droppedPairs: [] }))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => unmaskDequantize(sum, 2 ** 10, q, { survivorSelfSeeds: [selfSeed], droppedPairs: [] }))).toBe('OVERFLOW_POSSIBLE');
  });
});
