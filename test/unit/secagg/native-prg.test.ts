import { createCipheriv } from 'node:crypto';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { nativePrg, nativePrgUnavailable } from '../../../aggregation/secagg/native-prg.js';
import { Keystream, PRG_CHUNK_BYTES } from '../../../aggregation/secagg/prg.js';
import { skipUnless } from '../../helpers/components.js';
import { seededRandomBytes } from './helpers.js';

/** node:crypto's aes-256-ctr keystream: bytes [byteOffset, byteOffset + n) with IV 0 ‖ block. */
function opensslKeystream(key: Uint8Array, byteOffset: number, n: number): Buffer {
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64BE(BigInt(Math.floor(byteOffset / 16)), 8);
  return createCipheriv('aes-256-ctr', key, iv).update(Buffer.alloc((byteOffset % 16) + n)).subarray(byteOffset % 16);
}

/** The native module's keystream for the same bytes, by its widest loop or (`narrow`) by AES-NI alone. */
function nativeKeystream(key: Uint8Array, byteOffset: number, n: number, narrow = false): Buffer {
  const out = new Uint8Array(n);
  const block = Math.floor(byteOffset / 16);
  nativePrg!.aes256CtrInto(key, Math.floor(block / 2 ** 32), block % 2 ** 32, byteOffset % 16, out, narrow);
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

describe.skipIf(skipUnless('native-prg', nativePrgUnavailable))('native AES-256-CTR keystream (native/prg.c)', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
    vi.resetModules();
  });

  it.each([
    ['its widest loop', false],
    ['the AES-NI loop alone', true],
  ])('writes the bytes node:crypto aes-256-ctr makes, from any byte of any block, for any length, by %s', (_, narrow) => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.nat(2 ** 44), fc.nat(5000), (key, byteOffset, n) => {
        expect(nativeKeystream(key, byteOffset, n, narrow).equals(opensslKeystream(key, byteOffset, n))).toBe(true);
      }),
      { numRuns: 400 },
    );
  });

  it('carries the counter across the 2^32-block boundary, where the JS caller splits the block index', () => {
    const key = seededRandomBytes('native carry')(32);
    const at = (2 ** 32 - 3) * 16 + 5;
    for (const narrow of [false, true]) expect(nativeKeystream(key, at, 16 * 16 * 3, narrow).equals(opensslKeystream(key, at, 16 * 16 * 3))).toBe(true);
  });

  it('refuses a key that is not 32 bytes, an output that is not a Uint8Array, and a skip past the block', () => {
    const out = new Uint8Array(16);
    expect(() => nativePrg!.aes256CtrInto(new Uint8Array(16), 0, 0, 0, out)).toThrow(/32-byte/);
    expect(() => nativePrg!.aes256CtrInto(new Uint8Array(32), 0, 0, 0, new Uint32Array(4) as unknown as Uint8Array)).toThrow(/Uint8Array/);
    expect(() => nativePrg!.aes256CtrInto(new Uint8Array(32), 0, 0, 16, out)).toThrow(/skip/);
    expect(() => nativePrg!.aes256CtrInto(new Uint8Array(32), 2 ** 32, 0, 0, out)).toThrow(/blockHi/);
  });

  it('gives Keystream the same words as node:crypto does, by take, into and next, from an odd offset', async () => {
    vi.stubEnv('FEDHPC_NATIVE_PRG', 'off');
    vi.resetModules();
    const viaNode = await import('../../../aggregation/secagg/prg.js');
    expect((await import('../../../aggregation/secagg/native-prg.js')).nativePrgUnavailable).toBe('FEDHPC_NATIVE_PRG=off');
    const seed = seededRandomBytes('native keystream')(32);
    for (const bits of [16, 32] as const) {
      const wordOffset = 1_000_003;
      const total = (3 * PRG_CHUNK_BYTES) / (bits / 8) + 77;
      const expected = drain(new viaNode.Keystream(seed, wordOffset, total, bits), total, 32 * 1024, 'take');
      expect(expected.equals(opensslKeystream(seed, wordOffset * (bits / 8), total * (bits / 8)))).toBe(true);
      for (const how of ['take', 'into', 'next'] as const) {
        expect(drain(new Keystream(seed, wordOffset, total, bits), total, 32 * 1024 - 5, how).equals(expected), `${how}, ${bits} bits`).toBe(true);
      }
    }
  });

  it('refuses a slice past the words asked for, whichever way it is taken', () => {
    const ks = new Keystream(seededRandomBytes('native bounds')(32), 0, 10, 32);
    expect(() => ks.into(new Uint8Array(44))).toThrow(/within the words asked for/);
    ks.into(new Uint8Array(40));
    expect(() => ks.take(1)).toThrow(/within the words asked for/);
  });
});
