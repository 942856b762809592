/**
 * Guarantee 5, end to end: the quantization error of a realistic pseudo-gradient (RMS 5e-4,
 * absmax 1.6e-3, REFERENCE.md's Salamandra figures) after the whole path — the agent's
 * `DeltaEncoder` (clip, weight, stochastic rounding, masks) and the coordinator's `secureMean`
 * (sum of spools, unmask, check, dequantize, divide by the declared Σw) — against the plain weighted mean.
 * The library-level figures for a sum (16 sites, c = 2e-3, q = 28 / 12) are in
 * `test/unit/secagg/quantize.test.ts` ("realistic pseudo-gradients").
 *
 * Stochastic rounding to a grid of step Δ = c/(2^(q−1) − 1) errs by Δ·(1 − f) or −Δ·f (f the fraction),
 * variance Δ²·f(1 − f), on average Δ²/6; over n sites with weights wᵢ the mean errs by about
 * Δ·√(n/6) / Σw (RMS). So the error relative to the gradient's RMS is Δ·√(n/6) / (Σw · 5e-4).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { InProcessSecAgg, makeIdentities, pseudoGradient, rmsOf, type Identities } from '../../helpers/secure-protocol.js';

const SITES = ['site-a', 'site-b', 'site-c', 'site-d'];
const LEN = 1 << 16;
const RMS = 5e-4;
const ABSMAX = 1.6e-3;
let ids: Identities;
const grads = new Map<string, Float32Array>();
beforeAll(async () => {
  ids = await makeIdentities(SITES);
  for (const s of SITES) grads.set(s, pseudoGradient(LEN, RMS, ABSMAX, `salamandra-${s}`));
});

interface Setting {
  readonly modulusBits: 16 | 32;
  readonly quantBits: number;
  readonly clip: number;
  readonly maxSiteWeight: number;
  readonly samples: number;
}

/** RMS error of the unmasked mean against the plain weighted mean, relative to the gradient RMS; and the prediction. */
async function relativeError(s: Setting, seed: string): Promise<{ measured: number; predicted: number }> {
  const p = new InProcessSecAgg(ids, { threshold: 3, seed, ...s });
  try {
    p.keys();
    p.shares();
    p.deliverShares();
    for (const site of SITES) await p.upload(site, grads.get(site)!, s.samples, 1 << 14);
    p.consistency(SITES, []);
    p.reveal();
    const mean = await p.mean(LEN);
    const w = Math.fround(s.samples / s.maxSiteWeight);
    const err = new Float64Array(LEN);
    for (let i = 0; i < LEN; i++) {
      let plain = 0;
      for (const site of SITES) plain += w * Math.max(-s.clip, Math.min(s.clip, grads.get(site)![i]!));
      err[i] = mean[i]! - plain / (w * SITES.length);
    }
    const step = s.clip / (2 ** (s.quantBits - 1) - 1);
    return { measured: rmsOf(err) / RMS, predicted: (step * Math.sqrt(SITES.length / 6)) / (w * SITES.length) / RMS };
  } finally {
    await p.cleanup();
  }
}

describe('quantization error of a realistic pseudo-gradient through the agent DeltaEncoder and secureMean (4 sites)', () => {
  it('stays below 1% of the RMS in Z_2^32 with the default encoding (q = 24, c = 1, weight 1): ≈ 0.005%', async () => {
    const { measured, predicted } = await relativeError({ modulusBits: 32, quantBits: 24, clip: 1, maxSiteWeight: 1000, samples: 1000 }, 'z32-default');
    expect(measured).toBeLessThan(0.01);
    expect(measured).toBeLessThan(1e-4);
    expect(measured / predicted).toBeGreaterThan(0.8);
    expect(measured / predicted).toBeLessThan(1.25);
  });

  it('Z_2^32 with c fitted to the data (c = 2e-3, q = 24): ≈ 1e-7 of the RMS', async () => {
    const { measured } = await relativeError({ modulusBits: 32, quantBits: 24, clip: 2e-3, maxSiteWeight: 1000, samples: 1000 }, 'z32-fitted');
    expect(measured).toBeLessThan(1e-6);
  });

  it('Z_2^16 with c fitted (c = 2e-3) and q = 12 (maxSites 16): ≈ 0.04% of the RMS, below 1%', async () => {
    const { measured, predicted } = await relativeError({ modulusBits: 16, quantBits: 12, clip: 2e-3, maxSiteWeight: 1000, samples: 1000 }, 'z16-fitted');
    expect(measured).toBeLessThan(0.01);
    expect(measured / predicted).toBeGreaterThan(0.8);
    expect(measured / predicted).toBeLessThan(1.25);
  });

  it('Z_2^16 with the default clip c = 1 and q = 10 (maxSites 64) is useless for such gradients: error > 50% of the RMS', async () => {
    const { measured } = await relativeError({ modulusBits: 16, quantBits: 10, clip: 1, maxSiteWeight: 1000, samples: 1000 }, 'z16-default');
    expect(measured).toBeGreaterThan(0.5);
  });

  // The weight w = samples / maxSiteWeight multiplies the clipped update before it is quantized,
  // so a site whose weight is small uses a small part of the grid: the error relative to the mean
  // grows as 1/Σw. With maxSiteWeight 10^6 and 1000 samples per site (w = 10^-3) the default
  // Z_2^32 encoding errs by ≈ 5% of the RMS — why maxSiteWeight defaults to what an honest site
  // declares (steps × batch size) rather than a generous constant.
  it('grows as 1/Σw: maxSiteWeight 10^6 with 1000 samples per site errs by ≈ 5% of the RMS, as predicted', async () => {
    const { measured, predicted } = await relativeError({ modulusBits: 32, quantBits: 24, clip: 1, maxSiteWeight: 1_000_000, samples: 1000 }, 'z32-small-weight');
    expect(measured / predicted).toBeGreaterThan(0.8);
    expect(measured / predicted).toBeLessThan(1.25);
    expect(measured).toBeGreaterThan(0.01);
  });
});
