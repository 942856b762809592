/**
 * The coordinator's checks of an unmasked sum, inside `secureMean` (coordinator/secure/unmask.ts):
 * a whole attempt runs in process (the agent's `SecureSession` and `DeltaEncoder`, the
 * coordinator's `SecureRound`), then one survivor's spooled masked vector is changed as a site
 * that bypasses its encoder would send it. The property tests of the checks themselves are in
 * test/unit/secagg/bounds.test.ts.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { CoordinatorError } from '../../../coordinator/core/errors.js';
import { InProcessSecAgg, makeIdentities, pseudoGradient, type Identities } from '../../helpers/secure-protocol.js';

const SITES = ['site-a', 'site-b', 'site-c', 'site-d'];
const ELEMENTS = 4099;
const CLIP = 0.25;
const MAX_SITE_WEIGHT = 1000;
const SAMPLES: Record<string, number> = { 'site-a': 1000, 'site-b': 500, 'site-c': 1, 'site-d': 640 };

let ids: Identities;
beforeAll(async () => {
  ids = await makeIdentities(SITES);
});

/**
 * One attempt of four sites whose deltas reach 3c (clipped before weighting); `tamper` may rewrite
 * one survivor's masked vector (32-bit words, the weight word last) before the coordinator sums.
 */
async function attempt(label: string, tamper?: (words: Uint32Array) => void): Promise<Float32Array> {
  const p = new InProcessSecAgg(ids, { threshold: 3, clip: CLIP, maxSiteWeight: MAX_SITE_WEIGHT, seed: label });
  try {
    p.keys();
    p.shares();
    p.deliverShares();
    for (const s of SITES) await p.upload(s, pseudoGradient(ELEMENTS, CLIP, 3 * CLIP, `${label}/${s}`), SAMPLES[s]!);
    if (tamper) {
      const path = p.spools.get('site-b')!;
      // A fresh (unpooled) buffer: its words are 4-byte aligned.
      const file = await readFile(path);
      const bytes = Buffer.alloc(file.length);
      file.copy(bytes);
      const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
      tamper(words);
      await writeFile(path, bytes);
    }
    p.consistency(SITES, []);
    p.reveal();
    return await p.mean(ELEMENTS);
  } finally {
    await p.cleanup();
  }
}

async function refusal(label: string, tamper: (words: Uint32Array) => void): Promise<CoordinatorError> {
  const err = await attempt(label, tamper).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CoordinatorError);
  return err as CoordinatorError;
}

describe('secureMean checks the unmasked sum before any value leaves it', () => {
  it('passes honest sites whose deltas exceed the clip, with counts from 1 to maxSiteWeight; the mean stays within ±c', async () => {
    const mean = await attempt('honest');
    const weightSum = SITES.reduce((s, site) => s + Math.fround(SAMPLES[site]! / MAX_SITE_WEIGHT), 0);
    const edge = CLIP + (SITES.length * 2 * CLIP) / (2 ** 24 - 1) / weightSum;
    expect(Math.max(...Array.from(mean, Math.abs))).toBeLessThanOrEqual(edge);
    expect(Math.max(...Array.from(mean, Math.abs))).toBeGreaterThan(CLIP / 4);
  });

  it("refuses a sum whose weight word was lowered (issue 14: Σw near 1e-6 while the header says 500 samples) with WEIGHT_SUM_MISMATCH, naming every survivor", async () => {
    const e = await refusal('lowered-weight', (words) => {
      // site-b's weight word carries w = 0.5: ⌊(w + 1)/2·L⌉ above its masks. Take w·L/2 levels off.
      words[ELEMENTS] = words[ELEMENTS]! - Math.round(0.5 * ((2 ** 24 - 1) / 2)) + 8;
    });
    expect(e.code).toBe('WEIGHT_SUM_MISMATCH');
    expect(e.retryable).toBe(true);
    expect(e.message).toMatch(/^the unmasked sum of weights is [\d.e-]+, the 4 declared weights add up to 2\.14\d* \(tolerance [\d.e-]+\); the survivors were site-a, site-b, site-c, site-d \(the sum cannot say which of them sent it\)$/);
    expect(e.context).toMatchObject({ round: 1, attempt: 0, survivors: 'site-a,site-b,site-c,site-d', sites: 4 });
  });

  it('refuses a sum with a coordinate beyond Σwᵢ·c + n·c/(2^(q−1) − 1) with SUM_OUT_OF_RANGE, naming the coordinate', async () => {
    const e = await refusal('out-of-range', (words) => {
      // 2^30 levels of 2c/(2^24 − 1) each: about 32 in value, where the honest sum stays within ±0.54.
      words[17] = words[17]! + 2 ** 30;
    });
    expect(e.code).toBe('SUM_OUT_OF_RANGE');
    expect(e.message).toMatch(/^coordinate 17 of the unmasked sum is [\d.]+, beyond ±0\.53\d*; the survivors were site-a, site-b, site-c, site-d/);
    expect(e.context).toMatchObject({ index: 17, round: 1, attempt: 0 });
  });
});
