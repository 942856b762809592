import { createCipheriv, createHash } from 'node:crypto';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { crc32c as crc32cPortable } from '@node-rs/crc32';
import { checkFinite, checkFiniteBf16, Sha256 } from '../../../aggregation/index.js';
import { findNonFiniteBf16Ref, findNonFiniteRef } from '../../../aggregation/kernels/reference.js';
import { type KeystreamWidth, nativeKernels, nativeKeystreamUnavailable, nativeUnavailable, useNativeKernels } from '../../../aggregation/native.js';
import { loadNativeModule } from '../../../common/native.js';
import { Keystream, PRG_CHUNK_BYTES } from '../../../aggregation/secagg/prg.js';
import { quantizeRange } from '../../../aggregation/secagg/quantize.js';
import { skipUnless } from '../../helpers/components.js';
import { seededRandomBytes } from '../secagg/helpers.js';

/** node:crypto's aes-256-ctr keystream: bytes [byteOffset, byteOffset + n) with IV 0 ‖ block. */
function opensslKeystream(key: Uint8Array, byteOffset: number, n: number): Buffer {
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64BE(BigInt(Math.floor(byteOffset / 16)), 8);
  return createCipheriv('aes-256-ctr', key, iv).update(Buffer.alloc((byteOffset % 16) + n)).subarray(byteOffset % 16);
}

/** The native module's keystream for the same bytes, by its loop of registers of at most `width` bits. */
function nativeKeystream(key: Uint8Array, byteOffset: number, n: number, width?: KeystreamWidth): Buffer {
  const out = new Uint8Array(n);
  const block = Math.floor(byteOffset / 16);
  native!.aes256CtrInto!(key, Math.floor(block / 2 ** 32), block % 2 ** 32, byteOffset % 16, out, width);
  return Buffer.from(out);
}

/** Every word of a keystream, taken in slices of `words` by one of Keystream's three ways. */
function drain(ks: Keystream, total: number, words: number, how: 'take' | 'into' | 'next'): Buffer {
  const parts: Buffer[] = [];
  if (how === 'next') {
    for (let c = ks.next(); c !== undefined; c = ks.next()) parts.push(Buffer.from(c));
    return Buffer.concat(parts);
  }
  for (let at = 0; at < total; at += words) {
    const n = Math.min(words, total - at);
    if (how === 'take') parts.push(Buffer.from(ks.take(n)));
    else {
      const dst = new Uint8Array(n * ks.wordBytes);
      ks.into(dst);
      parts.push(Buffer.from(dst));
    }
  }
  return Buffer.concat(parts);
}

/** Each loop of the native keystream, widest first (the CPU's own limit caps the wider ones). */
const WIDTHS = [512, 256, 128] as const;

// The module must load where FEDHPC_REQUIRE names `native`; a kernel this CPU cannot run is absent
// from it, and its tests skip and say so whatever FEDHPC_REQUIRE says (the fallback is then right).
const native = nativeKernels();
const moduleMissing = skipUnless('native', nativeUnavailable());
if (native?.aesni === true && !native.vaes512) process.stdout.write('the 512-bit keystream loop is not tested: this CPU lacks VAES with AVX-512 (the 256-bit or AES-NI loop runs in its place)\n');
function lacks(feature: string, present: unknown): boolean {
  if (moduleMissing || present !== undefined) return moduleMissing;
  process.stdout.write(`skipping the native ${feature} tests: this CPU lacks it\n`);
  return true;
}

describe.skipIf(lacks('AES-NI', native?.aes256CtrInto))('native AES-256-CTR keystream (native/prg.c)', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
    useNativeKernels(loadNativeModule());
  });

  it.each([
    ['its widest loop', undefined],
    ['the 256-bit VAES loop', 256],
    ['the AES-NI loop alone', 128],
  ] as const)('writes the bytes node:crypto aes-256-ctr makes, from any byte of any block, for any length, by %s', (_, width) => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.nat(2 ** 44), fc.nat(5000), (key, byteOffset, n) => {
        expect(nativeKeystream(key, byteOffset, n, width).equals(opensslKeystream(key, byteOffset, n))).toBe(true);
      }),
      { numRuns: 400 },
    );
  });

  it('carries the counter across the 2^32-block boundary, where the JS caller splits the block index', () => {
    const key = seededRandomBytes('native carry')(32);
    const at = (2 ** 32 - 3) * 16 + 5;
    for (const width of WIDTHS) expect(nativeKeystream(key, at, 16 * 16 * 3, width).equals(opensslKeystream(key, at, 16 * 16 * 3))).toBe(true);
  });

  it('carries the counter from its low 64 bits into its high ones, as aes-256-ctr does: runs that end at 2^64, cross it, and start past it', () => {
    const key = seededRandomBytes('native 2^64 carry')(32);
    // Runs that cross 2^64 in their first, middle and last block of the wide loop's 256-byte runs.
    // 64 blocks before 2^64: the wide loop runs right up to it. A skip into the last block before
    // it starts the wide loop past the carry. The rest cross it, in the block-at-a-time loop.
    for (const [before, skip] of [[64, 0], [1, 0], [1, 5], [8, 0], [16, 0], [40, 3]] as const) {
      const iv = Buffer.alloc(16);
      iv.writeBigUInt64BE(2n ** 64n - BigInt(before), 8);
      const expected = createCipheriv('aes-256-ctr', key, iv).update(Buffer.alloc(16 * 64)).subarray(skip);
      for (const width of WIDTHS) {
        const out = new Uint8Array(16 * 64 - skip);
        native!.aes256CtrInto!(key, 2 ** 32 - 1, 2 ** 32 - before, skip, out, width);
        expect(Buffer.from(out).equals(expected), `${before} blocks before 2^64, skip ${skip}, width ${width}`).toBe(true);
      }
    }
  });

  it('refuses a key that is not 32 bytes, an output that is not a Uint8Array, and a skip past the block', () => {
    const out = new Uint8Array(16);
    expect(() => native!.aes256CtrInto!(new Uint8Array(16), 0, 0, 0, out)).toThrow(/32-byte/);
    expect(() => native!.aes256CtrInto!(new Uint8Array(32), 0, 0, 0, new Uint32Array(4) as unknown as Uint8Array)).toThrow(/Uint8Array/);
    expect(() => native!.aes256CtrInto!(new Uint8Array(32), 0, 0, 16, out)).toThrow(/skip/);
    expect(() => native!.aes256CtrInto!(new Uint8Array(32), 2 ** 32, 0, 0, out)).toThrow(/blockHi/);
  });

  it('gives Keystream the same words as node:crypto does, by take, into and next, from an odd offset', () => {
    const on = loadNativeModule();
    vi.stubEnv('FEDHPC_NATIVE', 'off');
    const off = loadNativeModule();
    expect(off).toEqual({ why: 'FEDHPC_NATIVE=off' });
    const seed = seededRandomBytes('native keystream')(32);
    for (const bits of [16, 32] as const) {
      const wordOffset = 1_000_003;
      const total = (3 * PRG_CHUNK_BYTES) / (bits / 8) + 77;
      const expected = opensslKeystream(seed, wordOffset * (bits / 8), total * (bits / 8));
      for (const how of ['take', 'into', 'next'] as const) {
        // A keystream keeps the generator it was made with: node:crypto while none is installed.
        useNativeKernels(off);
        const viaNode = new Keystream(seed, wordOffset, total, bits);
        expect(nativeKeystreamUnavailable()).toBe('FEDHPC_NATIVE=off');
        useNativeKernels(on);
        expect(nativeKeystreamUnavailable()).toBeUndefined();
        const viaNative = new Keystream(seed, wordOffset, total, bits);
        expect(drain(viaNode, total, 32 * 1024, how).equals(expected), `node:crypto, ${how}, ${bits} bits`).toBe(true);
        expect(drain(viaNative, total, 32 * 1024 - 5, how).equals(expected), `native, ${how}, ${bits} bits`).toBe(true);
      }
    }
  });

  it('refuses a module that is not native/module.c, and says why there are then no kernels', () => {
    useNativeKernels({ module: { aes256CtrInto: () => undefined } });
    expect(nativeKernels()).toBeUndefined();
    expect(nativeUnavailable()).toMatch(/not native\/module.c/);
    useNativeKernels({ why: 'built without a compiler' });
    expect(nativeKeystreamUnavailable()).toBe('built without a compiler');
  });

  it('refuses a slice past the words asked for, whichever way it is taken', () => {
    const ks = new Keystream(seededRandomBytes('native bounds')(32), 0, 10, 32);
    expect(() => ks.into(new Uint8Array(44))).toThrow(/within the words asked for/);
    ks.into(new Uint8Array(40));
    expect(() => ks.take(1)).toThrow(/within the words asked for/);
  });
});

describe.skipIf(lacks('SSE4.2', native?.crc32c))('native CRC32C and finiteness checks (native/checks.c)', () => {
  it('gives the CRC32C @node-rs/crc32 gives, for every length and byte offset, across its three-way runs', () => {
    const bytes = seededRandomBytes('native crc')(200_000);
    for (const n of [0, 1, 7, 8, 9, 24_575, 24_576, 24_577, 49_153, 199_999]) {
      for (const at of [0, 1, 3]) {
        const data = bytes.subarray(at, Math.min(bytes.length, at + n));
        expect(native!.crc32c!(data), `${data.length} bytes from ${at}`).toBe(crc32cPortable(data));
      }
    }
    fc.assert(fc.property(fc.uint8Array({ maxLength: 100_000 }), (data) => native!.crc32c!(data) === crc32cPortable(data)), { numRuns: 200 });
  });

  it('finds the first NaN or infinity of bf16 and f32 values where the reference does, at any byte offset', () => {
    const specials = [0x7f80, 0xff80, 0x7fc0, 0x7f81, 0xffff];
    for (const n of [1, 7, 8, 9, 100, 4097]) {
      for (let bad = -1; bad < n; bad += Math.max(1, Math.floor(n / 5))) {
        const halves = new Uint16Array(n + 1);
        for (let i = 0; i < halves.length; i++) halves[i] = (0x3f80 + i * 13) & 0x7f7f; // finite: exponent never all ones
        if (bad >= 0) halves[bad + 1] = specials[bad % specials.length]!;
        const bytes = new Uint8Array(halves.buffer).subarray(2, 2 + 2 * n);
        expect(native!.findNonFiniteBf16!(bytes)).toBe(findNonFiniteBf16Ref(bytes));
        expect(native!.findNonFiniteBf16!(bytes)).toBe(bad);
        // The same values as f32 (bf16 is f32's upper half), read from an odd byte offset.
        const f32 = new Float32Array(n);
        for (let i = 0; i < n; i++) f32[i] = new Float32Array(Uint32Array.of(halves[i + 1]! << 16).buffer)[0]!;
        const odd = new Uint8Array(4 * n + 1);
        odd.set(new Uint8Array(f32.buffer), 1);
        expect(native!.findNonFiniteF32!(odd.subarray(1))).toBe(findNonFiniteRef(f32));
        expect(native!.findNonFiniteF32!(odd.subarray(1))).toBe(bad);
      }
    }
  });

  it('is what checkFinite and checkFiniteBf16 answer with for large inputs', () => {
    const values = new Float32Array(100_000).fill(0.5);
    values[77_777] = Number.NaN;
    expect(checkFinite(values)).toBe(77_777);
    const halves = new Uint16Array(100_000).fill(0x3f00);
    halves[99_998] = 0xff80;
    expect(checkFiniteBf16(new Uint8Array(halves.buffer))).toBe(99_998);
  });

  it('refuses bytes that are not whole values, and what is not a Uint8Array', () => {
    expect(() => native!.findNonFiniteBf16!(new Uint8Array(3))).toThrow(/whole number of values/);
    expect(() => native!.findNonFiniteF32!(new Uint8Array(6))).toThrow(/whole number of values/);
    expect(() => native!.crc32c!('abc' as unknown as Uint8Array)).toThrow(/Uint8Array/);
  });
});

describe.skipIf(lacks('SHA extensions', native?.sha256Update2))('native SHA-256 (native/sha256.c)', () => {
  const sha = (...parts: Uint8Array[]): string => {
    const h = createHash('sha256');
    for (const p of parts) h.update(p);
    return h.digest('hex');
  };

  it('gives node:crypto\'s digest for any split of any message, padding at every length near a block', () => {
    const bytes = seededRandomBytes('native sha')(70_000);
    for (const n of [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000, 69_999]) {
      for (const cut of [0, 1, 63, Math.floor(n / 2)]) {
        const at = Math.min(cut, n);
        const h = new Sha256().update(bytes.subarray(0, at)).update(bytes.subarray(at, n));
        expect(h.digest('hex'), `${n} bytes cut at ${at}`).toBe(sha(bytes.subarray(0, n)));
      }
    }
  });

  it('feeds two hashes the same bytes in one pass, whatever each held before (updateBoth)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 130 }), fc.uint8Array({ maxLength: 130 }), fc.uint8Array({ maxLength: 5000 }), fc.nat(200), (before, other, data, tail) => {
        const a = new Sha256().update(before);
        const b = new Sha256().update(other);
        Sha256.updateBoth(a, b, data);
        Sha256.updateBoth(a, b, data.subarray(0, tail));
        expect(a.digest('hex')).toBe(sha(before, data, data.subarray(0, tail)));
        expect(b.digest('hex')).toBe(sha(other, data, data.subarray(0, tail)));
      }),
      { numRuns: 300 },
    );
  });

  it('gives each chunk\'s CRC32C from the pass that hashes it, whatever the hash held before and wherever the chunk starts (updateCrc32c)', () => {
    expect(native!.sha256UpdateCrc32c, 'the fused pass needs SSE4.2 beside the SHA extensions').toBeTypeOf('function');
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 130 }), fc.uint8Array({ maxLength: 5000 }), fc.nat(7), fc.nat(200), (before, data, from, tail) => {
        const h = new Sha256().update(before);
        const chunk = data.subarray(Math.min(from, data.length));
        // The fallback CRC must not be asked: the native pass gives it.
        expect(h.updateCrc32c(chunk, () => Number.NaN)).toBe(crc32cPortable(Buffer.from(chunk)));
        expect(h.updateCrc32c(chunk.subarray(0, tail), () => Number.NaN)).toBe(crc32cPortable(Buffer.from(chunk.subarray(0, tail))));
        expect(h.digest('hex')).toBe(sha(before, chunk, chunk.subarray(0, tail)));
      }),
      { numRuns: 300 },
    );
  });

  it('copies a state that then goes its own way, as node:crypto\'s copy does', () => {
    const bytes = seededRandomBytes('native sha copy')(300);
    const h = new Sha256().update(bytes.subarray(0, 100));
    const c = h.copy();
    h.update(bytes.subarray(100, 200));
    c.update(bytes.subarray(200, 300));
    expect(h.digest('hex')).toBe(sha(bytes.subarray(0, 200)));
    expect(c.digest('hex')).toBe(sha(bytes.subarray(0, 100), bytes.subarray(200, 300)));
    expect(() => h.copy()).toThrow(/takes no more bytes/);
  });

  it('takes nothing after its digest, as node:crypto\'s hash does', () => {
    const h = new Sha256().update(new Uint8Array(3));
    expect(h.digest('hex')).toBe(sha(new Uint8Array(3)));
    expect(() => h.update(new Uint8Array(1))).toThrow(/takes no more bytes/);
    expect(() => h.digest('hex')).toThrow(/takes no more bytes/);
    expect(() => Sha256.updateBoth(new Sha256(), h, new Uint8Array(1))).toThrow(/takes no more bytes/);
  });

  it('refuses one hash fed twice as both, and a state that is not one', () => {
    const h = new Sha256();
    expect(() => Sha256.updateBoth(h, h, new Uint8Array(1))).toThrow(/two distinct/);
    expect(() => native!.sha256Update!(new Uint8Array(8), new Uint8Array(1))).toThrow(/SHA-256 state/);
  });
});

describe.skipIf(lacks('AVX-512', native?.quantizeF32))('native quantiser (native/mask.c)', () => {
  const NO_SOURCES = new Uint8Array(0);
  const q = { clip: 2e-3, zero: 2 ** 15 - 1, scale: (2 ** 15 - 1) / 2e-3, weight: 0.625 };

  it('makes quantizeRange\'s words bit for bit: both widths, any q, clip and weight, any length (the eight-value steps and the tail)', () => {
    const params = fc.record({
      wide: fc.boolean(),
      quantBits: fc.integer({ min: 2, max: 32 }),
      clip: fc.constantFrom(1, 1.5, 2e-3, 3e-7),
      weight: fc.oneof(fc.constantFrom(0, 1, 0.625), fc.double({ min: 0, max: 1, noNaN: true })),
    });
    fc.assert(
      fc.property(fc.array(fc.float({ noNaN: true, noDefaultInfinity: true }), { maxLength: 67 }), params, fc.double({ min: -4, max: 4, noNaN: true }), (values, r, spread) => {
        const quantBits = r.wide ? r.quantBits : Math.min(16, r.quantBits);
        const zero = 2 ** (quantBits - 1) - 1;
        const p = { clip: r.clip, zero, scale: zero / r.clip, weight: r.weight };
        const x = Float32Array.from(values, (v) => v * r.clip * spread * 1e-30);
        x.set(values.slice(0, 9).map((v) => Math.fround(Math.tanh(v) * r.clip * spread)));
        const u = new Uint32Array(new Uint8Array(seededRandomBytes(`q ${values.length} ${quantBits}`)(4 * x.length)).buffer);
        const expected = r.wide ? new Uint32Array(x.length) : new Uint16Array(x.length);
        quantizeRange(x, 0, x.length, u, expected, 0, p, 0);
        const out = new Uint8Array(expected.byteLength);
        expect(native!.quantizeF32!(out, new Uint8Array(x.buffer), new Uint8Array(u.buffer), NO_SOURCES, 0, 0, 0, p.clip, p.zero, p.scale, p.weight, r.wide)).toBe(0);
        expect(Buffer.from(out).equals(Buffer.from(expected.buffer))).toBe(true);
      }),
      { numRuns: 400 },
    );
  });

  it('holds each word to [0, 2Z] where t passes ±Z: the rounding word carries ±clip over, or clip · (Z / clip) rounds past Z', () => {
    // At q = 32 and clip 1, t = Z exactly, and Z + (2^32 − 1) / 2^32 rounds to Z + 1 in float64; at
    // q = 16 and clip 0.0025, clip · (Z / clip) is above Z, so −clip with u = 0 floors to −Z − 1.
    for (const { quantBits, clip, wide } of [
      { quantBits: 32, clip: 1, wide: true },
      { quantBits: 16, clip: Math.fround(0.0025), wide: false },
      { quantBits: 16, clip: Math.fround(0.0025), wide: true },
    ]) {
      const zero = 2 ** (quantBits - 1) - 1;
      const p = { clip, zero, scale: zero / clip, weight: 1 };
      // Nine values, so the eight-value step and the tail each meet both edges.
      const x = Float32Array.from({ length: 9 }, (_, i) => (i % 2 === 0 ? clip : -clip));
      const u = Uint32Array.from({ length: 9 }, (_, i) => (i % 2 === 0 ? 2 ** 32 - 1 : 0));
      const unheld = Array.from(x, (v, i) => Math.floor(p.weight * v * p.scale + u[i]! / 2 ** 32));
      expect(unheld.some((k) => k > zero || k < -zero), `q = ${quantBits}: the case reaches past ±Z`).toBe(true);
      const expected = wide ? new Uint32Array(x.length) : new Uint16Array(x.length);
      quantizeRange(x, 0, x.length, u, expected, 0, p, 0);
      expect(Array.from(expected).every((w) => w >= 0 && w <= 2 * zero)).toBe(true);
      const out = new Uint8Array(expected.byteLength);
      expect(native!.quantizeF32!(out, new Uint8Array(x.buffer), new Uint8Array(u.buffer), NO_SOURCES, 0, 0, 0, p.clip, p.zero, p.scale, p.weight, wide)).toBe(0);
      expect(Buffer.from(out).equals(Buffer.from(expected.buffer)), `q = ${quantBits}, wide ${wide}`).toBe(true);
    }
  });

  it('answers 1 for a NaN or infinity in the steps or the tail, and refuses buffers of the wrong sizes', () => {
    for (const at of [3, 8, 17]) {
      const x = new Float32Array(18).fill(1e-4);
      x[at] = at === 8 ? Number.NaN : -Infinity;
      expect(native!.quantizeF32!(new Uint8Array(72), new Uint8Array(x.buffer), new Uint8Array(72), NO_SOURCES, 0, 0, 0, q.clip, q.zero, q.scale, q.weight, true)).toBe(1);
    }
    expect(() => native!.quantizeF32!(new Uint8Array(8), new Uint8Array(16), new Uint8Array(16), NO_SOURCES, 0, 0, 0, q.clip, q.zero, q.scale, q.weight, true)).toThrow(/n output words/);
    expect(() => native!.quantizeF32!(new Uint8Array(8), new Uint8Array(16), new Uint8Array(12), NO_SOURCES, 0, 0, 0, q.clip, q.zero, q.scale, q.weight, false)).toThrow(/n rounding words/);
  });

  it('folds up to four keystreams of either sign into each word before storing it, and foldWords folds them into words in place: both widths, any length', () => {
    const case_ = fc.record({ wide: fc.boolean(), n: fc.nat(80), count: fc.integer({ min: 0, max: 4 }), negative: fc.nat(15), gap: fc.nat(40) });
    fc.assert(
      fc.property(case_, ({ wide, n, count, negative, gap }) => {
        const random = seededRandomBytes(`fold ${wide} ${n} ${count} ${negative} ${gap}`);
        const zero = wide ? 2 ** 23 - 1 : 2 ** 13 - 1;
        const p = { clip: 1.5, zero, scale: zero / 1.5, weight: 0.625 };
        const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.7) * 2);
        const u = new Uint32Array(new Uint8Array(random(4 * n)).buffer);
        const wordBytes = wide ? 4 : 2;
        const stride = n * wordBytes + 2 * gap;
        const sources = random(Math.max(0, count - 1) * stride + n * wordBytes + gap);
        const words = (bytes: Uint8Array): Uint32Array | Uint16Array => (wide ? new Uint32Array(new Uint8Array(bytes).buffer) : new Uint16Array(new Uint8Array(bytes).buffer));
        // The reference: quantizeRange's words, then each source added or subtracted, mod 2^b.
        const expected = wide ? new Uint32Array(n) : new Uint16Array(n);
        quantizeRange(x, 0, n, u, expected, 0, p, 0);
        const quantized = expected.slice();
        for (let j = 0; j < count; j++) {
          const s = words(sources.subarray(j * stride, j * stride + n * wordBytes));
          for (let i = 0; i < n; i++) expected[i] = (negative >> j) & 1 ? expected[i]! - s[i]! : expected[i]! + s[i]!;
        }
        const out = new Uint8Array(n * wordBytes);
        expect(native!.quantizeF32!(out, new Uint8Array(x.buffer), new Uint8Array(u.buffer), sources, stride, count, negative, p.clip, p.zero, p.scale, p.weight, wide)).toBe(0);
        expect(Buffer.from(out).equals(Buffer.from(expected.buffer))).toBe(true);
        if (count === 0) return;
        const folded = new Uint8Array(quantized.buffer.slice(0));
        native!.foldWords!(folded, sources, stride, count, negative, wide);
        expect(Buffer.from(folded).equals(Buffer.from(expected.buffer))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('refuses keystream sources that are too few, too short or too many', () => {
    const x = new Uint8Array(64);
    const u = new Uint8Array(64);
    const quantizeWith = (src: Uint8Array, stride: number, count: number, negative = 0) => native!.quantizeF32!(new Uint8Array(32), x, u, src, stride, count, negative, q.clip, q.zero, q.scale, q.weight, false);
    expect(() => quantizeWith(new Uint8Array(64), 32, 3)).toThrow(/within the sources/);
    expect(() => quantizeWith(new Uint8Array(64), 16, 2)).toThrow(/as many words as dst/);
    expect(() => quantizeWith(new Uint8Array(256), 32, 5)).toThrow(/count must be an integer in \[0, 4\]/);
    expect(() => quantizeWith(new Uint8Array(256), 32, 2, 16)).toThrow(/bit mask/);
    expect(() => quantizeWith(new Uint8Array(256), -32, 2)).toThrow(/non-negative integer/);
    expect(() => quantizeWith(new Uint8Array(256), 32.5, 2)).toThrow(/non-negative integer/);
    expect(() => native!.foldWords!(new Uint8Array(32), new Uint8Array(64), 32, 0, 0, false)).toThrow(/\[1, 4\]/);
    expect(() => native!.foldWords!(new Uint8Array(6), new Uint8Array(64), 32, 1, 0, true)).toThrow(/whole words/);
  });
});

