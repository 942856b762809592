/**
 * Guarantee 1 of secure aggregation: what the coordinator unmasks is the plain weighted mean of
 * the surviving sites' deltas, up to fixed-point quantization. The sites' side (`SecureSession`,
 * the agent's `DeltaEncoder`) and the coordinator's (`SecureRound`, `secureMean`) run in process
 * and exchange the service messages; masked vectors go through spool files as at the coordinator.
 *
 * The bound. Each site encodes y = w·clip(x, −c, c) with q bits and stochastic rounding, and its
 * weight w = f32(samples / maxSiteWeight) in one extra word with clip 1. Decoding a sum over n
 * sites errs by less than n·c/(2^(q−1) − 1) per element (numerator N); the coordinator checks the
 * unmasked Σw against the declared weights and divides by the declared W = Σ wᵢ, so
 *   |m̂ − m| ≤ n·c/((2^(q−1) − 1)·W)   with m = N/W,
 * i.e. the per-element bound n·c/(2^(q−1) − 1) taken relative to Σw. The mean leaves `secureMean` as
 * f32, which adds |m̂|·2^-24.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { InProcessSecAgg, makeIdentities, pseudoGradient, type Identities } from '../../helpers/secure-protocol.js';

const FIVE = ['site-a', 'site-b', 'site-c', 'site-d', 'site-e'];
const EIGHT = [...FIVE, 'site-f', 'site-g', 'site-h'];
const ELEMENTS = 10_007; // not a multiple of the chunk size: the last chunk is short
const MAX_WEIGHT = 1000;
const SAMPLES: Record<string, number> = { 'site-a': 1000, 'site-b': 700, 'site-c': 400, 'site-d': 250, 'site-e': 900, 'site-f': 950, 'site-g': 120, 'site-h': 610 };

let five: Identities;
let eight: Identities;
beforeAll(async () => {
  five = await makeIdentities(FIVE);
  eight = await makeIdentities(EIGHT);
});

interface Case {
  readonly label: string;
  readonly identities: () => Identities;
  readonly threshold: number;
  readonly modulusBits: 16 | 32;
  readonly quantBits: number;
  readonly clip: number;
  readonly degree: number;
  /** Sites that send shares and then never upload (in U2, not in U3). */
  readonly dropAfterShares: readonly string[];
}

/** Deltas per site: distinct pseudo-gradients, some values beyond the clip range. */
function deltas(sites: readonly string[], clip: number): Map<string, Float32Array> {
  return new Map(sites.map((s) => [s, pseudoGradient(ELEMENTS, clip / 4, clip * 1.5, s)]));
}

/** The plain weighted mean Σ wᵢ·clip(xᵢ, −c, c) / Σ wᵢ the protocol must reproduce, in f64. */
function plainMean(inputs: ReadonlyMap<string, Float32Array>, sites: readonly string[], clip: number): { mean: Float64Array; weightSum: number } {
  const mean = new Float64Array(ELEMENTS);
  let weightSum = 0;
  for (const s of sites) {
    const w = Math.fround(SAMPLES[s]! / MAX_WEIGHT);
    weightSum += w;
    const x = inputs.get(s)!;
    for (let i = 0; i < ELEMENTS; i++) mean[i]! += w * Math.max(-clip, Math.min(clip, x[i]!));
  }
  for (let i = 0; i < ELEMENTS; i++) mean[i]! /= weightSum;
  return { mean, weightSum };
}

async function runAttempt(c: Case): Promise<{ secure: Float32Array; plain: Float64Array; withDropped: Float64Array; bound: (m: number) => number }> {
  const p = new InProcessSecAgg(c.identities(), { threshold: c.threshold, modulusBits: c.modulusBits, quantBits: c.quantBits, clip: c.clip, maxSiteWeight: MAX_WEIGHT, degree: c.degree, seed: c.label });
  try {
    const inputs = deltas(p.sites, c.clip);
    p.keys();
    p.shares();
    p.deliverShares();
    const survivors = p.sites.filter((s) => !c.dropAfterShares.includes(s));
    for (const s of survivors) await p.upload(s, inputs.get(s)!, SAMPLES[s]!);
    p.consistency(survivors, c.dropAfterShares);
    p.reveal();
    const secure = await p.mean(ELEMENTS);
    const { mean: plain, weightSum } = plainMean(inputs, survivors, c.clip);
    const n = survivors.length;
    const zero = 2 ** (c.quantBits - 1) - 1;
    const bound = (m: number): number => (n * c.clip) / zero / weightSum + (Math.abs(m) + 1e-3) * 2 ** -23;
    return { secure, plain, withDropped: plainMean(inputs, p.sites, c.clip).mean, bound };
  } finally {
    await p.cleanup();
  }
}

function maxExcess(secure: Float32Array, plain: Float64Array, bound: (m: number) => number): { worst: number; maxErr: number } {
  let worst = -Infinity;
  let maxErr = 0;
  for (let i = 0; i < plain.length; i++) {
    const err = Math.abs(secure[i]! - plain[i]!);
    maxErr = Math.max(maxErr, err);
    worst = Math.max(worst, err - bound(plain[i]!));
  }
  return { worst, maxErr };
}

const base = { identities: () => five, threshold: 3, modulusBits: 32 as const, quantBits: 24, clip: 0.25, degree: 0 };
const cases: Case[] = [
  { ...base, label: 'no dropout', dropAfterShares: [] },
  { ...base, label: 'one dropout after shares', dropAfterShares: ['site-c'] },
  { ...base, label: 'two dropouts after shares', dropAfterShares: ['site-b', 'site-e'] },
  { ...base, label: 'two dropouts after shares in Z_2^16 (q = 13)', modulusBits: 16, quantBits: 13, dropAfterShares: ['site-a', 'site-d'] },
  { ...base, label: 'SecAgg+ neighbourhoods (8 sites, degree 4), two dropouts', identities: () => eight, degree: 4, dropAfterShares: ['site-c', 'site-g'] },
];

describe('the unmasked mean equals the plain weighted mean of the survivors within the quantization bound', () => {
  for (const c of cases) {
    it(`${c.label}: |m̂ − m| ≤ n·c/((2^(q−1)−1)·Σw) per element`, async () => {
      const { secure, plain, withDropped, bound } = await runAttempt(c);
      expect(secure).toHaveLength(ELEMENTS);
      const { worst, maxErr } = maxExcess(secure, plain, bound);
      expect(worst).toBeLessThanOrEqual(0);
      // The bound is not vacuous: the values themselves are far larger than the error.
      expect(maxErr).toBeLessThan(Math.max(...plain.map(Math.abs)) / 100);
      if (c.dropAfterShares.length > 0) {
        // The dropped sites' deltas are really out of the sum (their masks were removed, not their inputs kept).
        const excluded = maxExcess(secure, withDropped, bound);
        expect(excluded.worst).toBeGreaterThan(0);
      }
    });
  }

  it('leaves a site that advertised keys but never sent shares out of U2: nothing of it needs unmasking', async () => {
    const p = new InProcessSecAgg(five, { threshold: 3, clip: 0.25, maxSiteWeight: MAX_WEIGHT, seed: 'late' });
    try {
      const inputs = deltas(p.sites, 0.25);
      p.keys();
      const holders = FIVE.filter((s) => s !== 'site-d');
      p.shares(holders);
      p.deliverShares(holders);
      for (const s of holders) await p.upload(s, inputs.get(s)!, SAMPLES[s]!);
      p.consistency(holders, []);
      p.reveal();
      const secure = await p.mean(ELEMENTS);
      const { mean, weightSum } = plainMean(inputs, holders, 0.25);
      const zero = 2 ** 23 - 1;
      const bound = (m: number): number => (4 * 0.5) / zero / weightSum + (Math.abs(m) + 1e-3) * 2 ** -23;
      expect(maxExcess(secure, mean, bound).worst).toBeLessThanOrEqual(0);
      // No secret of site-d was asked for: it is neither a survivor nor a dropped share holder.
      const owners = new Set([...p.coordinator.revealed.values()].flat().map((r) => r.owner));
      expect(owners.has('site-d')).toBe(false);
    } finally {
      await p.cleanup();
    }
  });
});
