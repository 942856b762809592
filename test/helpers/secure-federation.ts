/**
 * Secure federations for integration tests: a provisioned federation whose coordinator runs secure
 * aggregation (FedAvg with lr 1, so a committed model is exactly parent + mean delta), raw secure
 * sites with known deltas, and the arithmetic to check that what was committed is the plain
 * weighted mean of the participants' deltas within the quantization bound — never a wrong sum.
 */
import { join } from 'node:path';
import { expect } from 'vitest';
import { openSafetensors } from '../../aggregation/index.js';
import { openFileSource } from '../../common/files.js';
import type { AdminClient, CoordinatorHandle, CoordinatorOptions } from '../../coordinator/index.js';
import type { RoundInfo__Output, TrainTask__Output } from '../../proto/index.js';
import { createTestFederation, startCoordinatorInProcess, type TestFederation } from './federation.js';
import { coordinatorStateDir } from './faults.js';
import { SecureRawSite, type Behaviour } from './secure-raw-site.js';

/** maxSiteWeight of the test runs: raw sites declare at most 1000 samples (a weight of 1). */
export const MAX_WEIGHT = 1000;

/** Run settings of a secure test run; `run` overrides them. */
export function secureRun(overrides: Partial<CoordinatorOptions['run']> = {}): Partial<CoordinatorOptions['run']> {
  return {
    rounds: 1,
    strategy: { name: 'fedavg', lr: 1 },
    evaluate: false,
    maxSiteWeight: MAX_WEIGHT,
    deadlines: { openS: 30, trainingS: 60, uploadS: 60, aggregateS: 30, commitS: 30, evalS: 15, keysS: 20, sharesS: 20, unmaskS: 20 },
    ...overrides,
  };
}

/** A federation with an in-process coordinator and one raw secure site per site, all connected. */
export interface RawSecureFederation {
  readonly fed: TestFederation;
  readonly coordinator: CoordinatorHandle;
  readonly admin: AdminClient;
  readonly sites: Map<string, SecureRawSite>;
  close(): Promise<void>;
}

export async function rawSecureFederation(sites: number, run: Partial<CoordinatorOptions['run']> = {}): Promise<RawSecureFederation> {
  const fed = await createTestFederation({ sites, run: secureRun(run) });
  const coordinator = await startCoordinatorInProcess(fed);
  const admin = fed.admin();
  await admin.waitForReady(Date.now() + 15_000);
  const raw = new Map<string, SecureRawSite>();
  for (const s of fed.sites) {
    const site = new SecureRawSite(fed, s);
    await site.connect();
    raw.set(s, site);
  }
  return {
    fed,
    coordinator,
    admin,
    sites: raw,
    async close() {
      for (const s of raw.values()) s.close();
      await coordinator.stop();
      await fed.cleanup();
    },
  };
}

/**
 * Site i's delta (f32, task tensor order): distinct per site and round, small and finite; every
 * seventh coordinate is one no site trained (exactly 0 everywhere), as a frozen weight would be.
 */
export function siteDelta(site: string, round: number): (t: TrainTask__Output) => Float32Array {
  const k = Number(site.replace(/\D+/g, '')) || 1;
  return (t) => {
    const n = t.tensors.reduce((a, x) => a + x.shape.reduce((b, d) => b * Number(d), 1), 0);
    const v = new Float32Array(n);
    for (let i = 0; i < n; i++) v[i] = i % 7 === 0 ? 0 : (((i * k + round) % 11) - 5) * 1e-4 * k;
    return v;
  };
}

/**
 * An honest raw site's behaviour for `round`: it declares `samples` and uploads its `siteDelta`,
 * recording in `uploaded` what it sent (the test's own expected mean is computed from it).
 */
export function honestSite(site: string, round: number, samples: number, uploaded: Map<string, Float32Array>, extra: Partial<Behaviour> = {}): Behaviour {
  const delta = siteDelta(site, round);
  return {
    samples,
    delta: (t: TrainTask__Output) => {
      const d = delta(t);
      uploaded.set(site, d);
      return d;
    },
    ...extra,
  };
}

/** All values of a model in the state dir, tensors in file order, as f64. */
export async function modelValues(fed: TestFederation, sha256: string): Promise<Float64Array> {
  const src = await openFileSource(join(coordinatorStateDir(fed), 'models', `${sha256}.safetensors`));
  try {
    const file = await openSafetensors(src);
    const total = file.tensors.reduce((n, t) => n + t.elements, 0);
    const out = new Float64Array(total);
    let at = 0;
    for (const t of file.tensors) {
      out.set(await file.readF32(t.name, 0, t.elements), at);
      at += t.elements;
    }
    return out;
  } finally {
    await src.close();
  }
}

/**
 * Asserts a committed FedAvg (lr 1) round moved the model by the plain weighted mean of the
 * participants' clipped deltas, Σ wᵢ·clip(Δᵢ) / Σ wᵢ with wᵢ = f32(countᵢ / maxWeight) (`samples`
 * holds each count in the run's unit; `maxWeight` is the run's maxSiteWeight), within
 * the quantization bound n·c/((2^(q−1) − 1)·Σw) per element (c = 1, q = 24 by default) plus f32
 * rounding of the stored models — the bound `admin rounds` reports — and left every coordinate
 * that all participants left at zero exactly where it was (zero is a level of the quantizer).
 */
export async function expectCommittedMean(
  fed: TestFederation,
  info: RoundInfo__Output,
  deltas: ReadonlyMap<string, Float32Array>,
  samples: ReadonlyMap<string, number>,
  q = { clip: 1, quantBits: 24 },
  maxWeight = MAX_WEIGHT,
): Promise<void> {
  expect(info.outcome).toBe('committed');
  const parent = await modelValues(fed, info.parentSha256);
  const model = await modelValues(fed, info.modelSha256);
  const participants = [...info.participants];
  const n = participants.length;
  let weightSum = 0;
  const mean = new Float64Array(parent.length);
  for (const s of participants) {
    const w = Math.fround(samples.get(s)! / maxWeight);
    weightSum += w;
    const d = deltas.get(s)!;
    expect(d.length).toBe(parent.length);
    for (let i = 0; i < d.length; i++) mean[i]! += w * Math.max(-q.clip, Math.min(q.clip, d[i]!));
  }
  const quantBound = (n * q.clip) / (2 ** (q.quantBits - 1) - 1) / weightSum;
  expect(info.quantizationBound / quantBound, 'admin rounds shows the bound of this round').toBeCloseTo(1, 9);
  let worst = -Infinity;
  let untouched = 0;
  for (let i = 0; i < mean.length; i++) {
    const m = mean[i]! / weightSum;
    const bound = quantBound + (Math.abs(parent[i]!) + Math.abs(m)) * 2 ** -22;
    worst = Math.max(worst, Math.abs(model[i]! - parent[i]! - m) - bound);
    if (participants.every((s) => deltas.get(s)![i] === 0)) {
      untouched++;
      expect(model[i], `round ${info.round}: coordinate ${i}, left at zero by every participant, moved`).toBe(parent[i]);
    }
  }
  expect(untouched, 'the deltas leave some coordinates untrained').toBeGreaterThan(0);
  expect(worst, `round ${info.round}.${info.attempt}: committed update differs from the plain weighted mean of ${participants.join(', ')}`).toBeLessThanOrEqual(0);
}
