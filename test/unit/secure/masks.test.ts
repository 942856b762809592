/**
 * Guarantee 4, in process: what a site uploads looks uniformly random whatever it masks. Masked
 * words come out of the agent's own `DeltaEncoder` over a `SecureSession` that went through keys
 * and shares; a zero vector and a constant one are masked, and the bytes and words pass Pearson's
 * χ² test against the uniform distribution (α = 1e-4). The same check on words captured in the
 * coordinator's spool during a real secure round is in `test/integration/secure-federation.test.ts`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chiSquared, chiSquaredCritical } from '../secagg/helpers.js';
import { InProcessSecAgg, encodeMasked, makeIdentities, type Identities } from '../../helpers/secure-protocol.js';
import { quantize } from '../../../aggregation/index.js';

const SITES = ['site-a', 'site-b', 'site-c'];
const N = 1 << 15;
let ids: Identities;
const attempts: InProcessSecAgg[] = [];
beforeAll(async () => {
  ids = await makeIdentities(SITES);
});
afterAll(async () => {
  for (const p of attempts) await p.cleanup();
});

async function maskedOf(bits: 16 | 32, x: Float32Array, seed: string): Promise<Map<string, Buffer>> {
  const p = new InProcessSecAgg(ids, { threshold: 2, modulusBits: bits, quantBits: bits === 32 ? 24 : 12, seed });
  attempts.push(p);
  p.keys();
  p.shares();
  p.deliverShares();
  const out = new Map<string, Buffer>();
  for (const s of SITES) out.set(s, await encodeMasked(x, p.sessions.get(s)!, p.params, 500, { chunkBytes: 4096 * (p.params.modulusBits / 8) }));
  return out;
}

function byteCounts(bytes: Buffer): Uint32Array {
  const counts = new Uint32Array(256);
  for (const b of bytes) counts[b]! += 1;
  return counts;
}

/** Counts of the top `bits` bits of each word (the bits a small quantized value would leave at 0 or 1). */
function highBitCounts(bytes: Buffer, wordBits: 16 | 32, bins: number): Uint32Array {
  const counts = new Uint32Array(1 << bins);
  const words = wordBits === 32 ? new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4) : new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2);
  for (const w of words) counts[w >>> (wordBits - bins)]! += 1;
  return counts;
}

describe('masked uploads pass χ² uniformity tests', () => {
  for (const bits of [32, 16] as const) {
    it(`a masked zero vector in Z_2^${bits}: bytes and high bits of words are uniform at every site`, async () => {
      const masked = await maskedOf(bits, new Float32Array(N), `zero-${bits}`);
      for (const [site, bytes] of masked) {
        expect(bytes.length, site).toBe((N + 1) * (bits / 8));
        expect(chiSquared(byteCounts(bytes)), `${site} bytes`).toBeLessThan(chiSquaredCritical(255));
        expect(chiSquared(highBitCounts(bytes, bits, 8)), `${site} high bits`).toBeLessThan(chiSquaredCritical(255));
      }
    });
  }

  it('a constant vector masked by two sites gives unrelated words (the difference is uniform too)', async () => {
    const masked = await maskedOf(32, new Float32Array(N).fill(0.5), 'constant');
    const a = masked.get('site-a')!;
    const b = masked.get('site-b')!;
    const diff = Buffer.alloc(a.length);
    for (let i = 0; i < a.length; i++) diff[i] = (a[i]! - b[i]!) & 0xff;
    expect(chiSquared(byteCounts(a))).toBeLessThan(chiSquaredCritical(255));
    expect(chiSquared(byteCounts(diff))).toBeLessThan(chiSquaredCritical(255));
  });

  it('the same input masked in two attempts shares no word pattern (fresh keys and seeds per attempt)', async () => {
    const x = new Float32Array(N);
    const first = (await maskedOf(32, x, 'attempt-0')).get('site-a')!;
    const second = (await maskedOf(32, x, 'attempt-1')).get('site-a')!;
    let equal = 0;
    for (let i = 0; i < first.length; i += 4) if (first.readUInt32LE(i) === second.readUInt32LE(i)) equal += 1;
    // Two independent uniform 32-bit words collide with probability 2^-32.
    expect(equal).toBeLessThanOrEqual(1);
  });

  it('the χ² test has power: the same zero vector quantized but not masked fails it', () => {
    const q = quantize(new Float32Array(N), { clip: 1, quantBits: 24, modulusBits: 32 });
    const bytes = Buffer.from(q.buffer, q.byteOffset, q.byteLength);
    expect(chiSquared(byteCounts(bytes))).toBeGreaterThan(chiSquaredCritical(255));
  });
});
