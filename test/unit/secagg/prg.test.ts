import { execFileSync } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyMask, expandMask, forEachKeystreamChunk, PRG_CHUNK_BYTES } from '../../../aggregation/secagg/index.js';
import { codeOf, seededRandomBytes } from './helpers.js';

const seed = Uint8Array.from({ length: 32 }, (_, i) => i * 7 + 1);

/** The keystream by an independent construction: AES-256-ECB of big-endian counter blocks. */
function ecbKeystream(key: Uint8Array, blocks: number): Buffer {
  const counters = Buffer.alloc(16 * blocks);
  for (let i = 0; i < blocks; i++) counters.writeBigUInt64BE(BigInt(i), 16 * i + 8);
  const ecb = createCipheriv('aes-256-ecb', key, null).setAutoPadding(false);
  return Buffer.concat([ecb.update(counters), ecb.final()]);
}

function opensslAvailable(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

describe('AES-256-CTR mask PRG', () => {
  it('reads words little-endian from the AES-CTR keystream (IV 0), as ECB of the counters gives', () => {
    const ks = ecbKeystream(seed, 64);
    const words = expandMask(seed, 0, 256, 32);
    for (let i = 0; i < 256; i++) expect(words[i]).toBe(ks.readUInt32LE(4 * i));
    const halves = expandMask(seed, 0, 512, 16);
    for (let i = 0; i < 512; i++) expect(halves[i]).toBe(ks.readUInt16LE(2 * i));
  });

  it.runIf(opensslAvailable())('matches `openssl enc -aes-256-ctr` on zeros (known answer)', () => {
    const bytes = 200_000; // spans several 64 KiB chunks
    const out = execFileSync('openssl', ['enc', '-aes-256-ctr', '-K', Buffer.from(seed).toString('hex'), '-iv', '00'.repeat(16), '-nosalt'], {
      input: Buffer.alloc(bytes),
      maxBuffer: 1 << 22,
    });
    const words = expandMask(seed, 0, bytes / 4, 32);
    expect(Buffer.from(words.buffer, words.byteOffset, words.byteLength).equals(out)).toBe(true);
  });

  it('expands chunks independently: any split at any word offset equals the whole', () => {
    const whole32 = expandMask(seed, 0, 70_000, 32);
    const whole16 = expandMask(seed, 0, 140_000, 16);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 69_999 }), fc.integer({ min: 0, max: 40_000 }), (a, len) => {
        const n = Math.min(len, 70_000 - a);
        expect(Array.from(expandMask(seed, a, n, 32))).toEqual(Array.from(whole32.subarray(a, a + n)));
        const b = 2 * a + 1; // odd offsets: half-word alignment within AES blocks
        const m = Math.min(len, 140_000 - b);
        expect(Array.from(expandMask(seed, b, m, 16))).toEqual(Array.from(whole16.subarray(b, b + m)));
      }),
      { numRuns: 40 },
    );
  });

  it('adds and subtracts masks modulo 2^b in place', () => {
    const base = Uint32Array.from({ length: 1000 }, (_, i) => (i * 2654435761) >>> 0);
    const t = base.slice();
    applyMask(t, seed, 13, 1);
    const m = expandMask(seed, 13, 1000, 32);
    for (let i = 0; i < 1000; i++) expect(t[i]).toBe((base[i]! + m[i]!) >>> 0);
    applyMask(t, seed, 13, -1);
    expect(Array.from(t)).toEqual(Array.from(base));
    const h = new Uint16Array(100).fill(0xffff);
    applyMask(h, seed, 0, 1);
    const m16 = expandMask(seed, 0, 100, 16);
    for (let i = 0; i < 100; i++) expect(h[i]).toBe((0xffff + m16[i]!) & 0xffff);
  });

  it('gives unrelated streams for different seeds and refuses bad arguments', () => {
    const other = seededRandomBytes('other')(32);
    expect(Array.from(expandMask(other, 0, 8, 32))).not.toEqual(Array.from(expandMask(seed, 0, 8, 32)));
    expect(codeOf(() => expandMask(new Uint8Array(16), 0, 8, 32))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => expandMask(seed, -1, 8, 32))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => expandMask(seed, 0.5, 8, 32))).toBe('INVALID_ARGUMENT');
    expect(expandMask(seed, 5, 0, 16)).toHaveLength(0);
  });

  it('hands out the keystream in chunks of at most PRG_CHUNK_BYTES that concatenate to expandMask', () => {
    for (const [offset, count, bits] of [
      [3, 40_000, 32],
      [0, 100_001, 16],
      [PRG_CHUNK_BYTES / 4 - 1, PRG_CHUNK_BYTES / 2, 32],
    ] as const) {
      const parts: Buffer[] = [];
      const firsts: number[] = [];
      forEachKeystreamChunk(seed, offset, count, bits, (bytes, firstWord) => {
        expect(bytes.length).toBeLessThanOrEqual(PRG_CHUNK_BYTES);
        firsts.push(firstWord);
        parts.push(Buffer.from(bytes));
      });
      const whole = Buffer.concat(parts);
      const expected = expandMask(seed, offset, count, bits);
      expect(whole.equals(Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength))).toBe(true);
      // Each chunk's first-word index is the number of words handed out before it.
      let words = 0;
      parts.forEach((p, i) => {
        expect(firsts[i]).toBe(words);
        words += p.length / (bits / 8);
      });
    }
    expect(codeOf(() => forEachKeystreamChunk(seed, 0, 4, 8 as 16, () => undefined))).toBe('INVALID_ARGUMENT');
  });
});
