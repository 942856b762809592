/**
 * What the tests of folded work check against: the journal's participant records, a folded
 * upload's delta as the protocol defines it (computed here on its own, not with the agent's code),
 * and a committed plain FedAvg (lr 1) round as parent + the weighted mean of its uploads.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'vitest';
import { openSafetensors } from '../../aggregation/index.js';
import { openFileSource } from '../../common/files.js';
import type { RoundCommittedRecord } from '../../coordinator/state/records.js';
import { coordinatorStateDir } from './faults.js';
import type { TestFederation } from './federation.js';

/** Every (round, part) in which the journal counted `site`'s work trained from `base`, fresh or folded. */
export function countedWork(commits: readonly RoundCommittedRecord[], site: string, base: string): { round: number; as: 'fresh' | 'folded' }[] {
  const out: { round: number; as: 'fresh' | 'folded' }[] = [];
  for (const c of commits) {
    for (const p of c.participants.filter((x) => x.site === site)) {
      if ((p.baseModelSha256 ?? c.parentSha256) === base) out.push({ round: c.round, as: 'fresh' });
      for (const f of p.folded ?? []) if (f.baseModelSha256 === base) out.push({ round: c.round, as: 'folded' });
    }
  }
  return out;
}

/** A model of the state dir, by tensor name, as f64. */
export async function modelTensors(fed: TestFederation, sha256: string): Promise<Map<string, Float64Array>> {
  const src = await openFileSource(join(coordinatorStateDir(fed), 'models', `${sha256}.safetensors`));
  try {
    const file = await openSafetensors(src);
    const out = new Map<string, Float64Array>();
    for (const t of file.tensors) out.set(t.name, Float64Array.from(await file.readF32(t.name, 0, t.elements)));
    return out;
  } finally {
    await src.close();
  }
}

/** A delta by tensor name. */
export type Delta = ReadonlyMap<string, ArrayLike<number>>;

/**
 * The one delta a folded upload sends, from docs/protocol.md: f32((F·clip(Δ_f) + Σ c_i·clip(Δ_i)) / W)
 * with c_i the part's count as journaled (λ·S_i); no clip when `clip` is undefined (plain rounds).
 */
export function foldedDelta(fresh: Delta, freshCount: number, parts: readonly { delta: Delta; count: number }[], weight: number, clip?: number): Map<string, Float32Array> {
  const cl = (x: number): number => (clip === undefined ? x : Math.max(-clip, Math.min(clip, x)));
  const out = new Map<string, Float32Array>();
  for (const [name, f] of fresh) {
    const v = new Float32Array(f.length);
    for (let j = 0; j < f.length; j++) {
      let acc = freshCount * cl(f[j]!);
      for (const p of parts) acc += p.count * cl(p.delta.get(name)![j]!);
      v[j] = acc / weight;
    }
    out.set(name, v);
  }
  return out;
}

/**
 * Asserts a committed plain FedAvg (lr 1) round moved its parent by Σ Wᵢ·Δᵢ / Σ Wᵢ over the
 * participants (W from the journal, Δ from `deltas`), up to f32 rounding of the stored models and of
 * the coordinator's f32 sum.
 */
export async function expectPlainMean(fed: TestFederation, c: RoundCommittedRecord, deltas: ReadonlyMap<string, Delta>): Promise<void> {
  const parent = await modelTensors(fed, c.parentSha256);
  const model = await modelTensors(fed, c.modelSha256);
  const total = c.participants.reduce((s, p) => s + p.weight, 0);
  let worst = 0;
  for (const [name, before] of parent) {
    const after = model.get(name)!;
    for (let j = 0; j < before.length; j++) {
      let mean = 0;
      for (const p of c.participants) mean += (p.weight * deltas.get(p.site)!.get(name)![j]!) / total;
      const bound = (Math.abs(before[j]!) + Math.abs(mean)) * 2 ** -22 + 2 ** -40;
      worst = Math.max(worst, Math.abs(after[j]! - before[j]! - mean) / bound);
    }
  }
  expect(worst, `round ${c.round}: the committed update is not the weighted mean of ${c.participants.map((p) => p.site).join(', ')}`).toBeLessThanOrEqual(1);
}

/** The kept work files of a site's work dir (`<workDir>/kept/`). */
export async function keptFiles(workDir: string): Promise<string[]> {
  return (await readdir(join(workDir, 'kept')).catch(() => [] as string[])).filter((n) => !n.startsWith('.tmp-')).sort();
}
