/**
 * Kept work (site-agent/kept-work.ts) and folding it (site-agent/fold.ts): what a kept part holds
 * on disk and how it survives a restart, its states, which parts a task folds and with what
 * weights, and the folded delta written as docs/protocol.md defines it.
 */
import type { Allocation } from '../../../site-agent/usage.js';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createSafetensorsWriter, memorySink, openSafetensors } from '../../../aggregation/index.js';
import { openFileSource } from '../../../common/files.js';
import { mixDeltas, planFold, writeFoldedDelta, type FoldTerms } from '../../../site-agent/fold.js';
import { KeptWork, type KeptPart } from '../../../site-agent/kept-work.js';
import type { TrainTask } from '../../../site-agent/wire.js';
import { testLogger } from '../../helpers/logger.js';
import { tempDirEachTest } from '../../helpers/temp-dir.js';

const N = 40;
const TENSORS = [
  { name: 'a', dtype: 'F32', shape: [4, 5] },
  { name: 'b', dtype: 'F32', shape: [N - 20] },
];
const sha = (c: string): string => c.repeat(64);

const dir = tempDirEachTest('fedhpc-kept-');

/** A model file whose value i (over both tensors, in order) is f(i). */
async function model(name: string, f: (i: number) => number): Promise<string> {
  const sink = memorySink();
  const w = await createSafetensorsWriter(sink, TENSORS.map((t) => ({ name: t.name, dtype: 'F32' as const, shape: t.shape })));
  await w.writeF32('a', Float32Array.from({ length: 20 }, (_, i) => f(i)));
  await w.writeF32('b', Float32Array.from({ length: N - 20 }, (_, i) => f(20 + i)));
  await w.finish();
  const path = join(dir(), name);
  await writeFile(path, sink.bytes());
  return path;
}

async function values(path: string): Promise<Float32Array> {
  const src = await openFileSource(path);
  const f = await openSafetensors(src);
  const out = Float32Array.from([...(await f.readF32('a', 0, 20)), ...(await f.readF32('b', 0, N - 20))]);
  await src.close();
  return out;
}

function task(patch: Partial<TrainTask> = {}): TrainTask {
  return {
    kind: 'train',
    runId: 'run-1',
    round: 5,
    attempt: 0,
    globalModel: { sha256: sha('4'), sizeBytes: 0 },
    modelRound: 4,
    tensors: TENSORS,
    encoding: 'f32',
    trainConfig: {},
    trainingDeadlineMs: undefined,
    maxStaleness: 2,
    maxChunkBytes: undefined,
    maxStreams: 1,
    evaluate: false,
    shares: [],
    shareHolders: [],
    ...patch,
  };
}

/** Keeps work trained from base `c` (model round `r`) with `samples`; its Δ is local − base. */
async function keepWork(store: KeptWork, c: string, r: number, samples: number, runId = 'run-1', allocation?: Allocation): Promise<KeptPart> {
  const base = await model(`base-${c}`, (i) => i / 10);
  const local = await model(`local-${c}`, (i) => i / 10 + (i % 3) * 1e-3 * r);
  const result = { outPath: local, samples, tokens: samples * 8, steps: 3, trainLoss: 1.25, dataManifestSha256: sha('d'), ...(allocation ? { allocation } : {}) };
  return store.keep({ runId, round: r + 1, attempt: 0, baseModelSha256: sha(c), baseModelRound: r, basePath: base, result, tensors: TENSORS }, AbortSignal.timeout(5_000));
}

describe('kept work on disk', () => {
  it('keeps Δ = local − base in f32 beside its record, reads both back after a restart, and moves kept → folded-pending → done', async () => {
    const log = testLogger();
    const store = await KeptWork.open(join(dir(), 'kept'), log.logger);
    const part = await keepWork(store, '3', 3, 600);
    const base = await values(join(dir(), 'base-3'));
    const local = await values(join(dir(), 'local-3'));
    expect(await values(part.deltaPath)).toEqual(Float32Array.from(local, (v, i) => v - base[i]!));
    expect(JSON.parse(await readFile(join(dir(), 'kept', `${sha('3')}.json`), 'utf8'))).toMatchObject({ version: 1, baseModelRound: 3, samples: 600, tokens: 4800, steps: 3, state: 'kept' });

    const foldedIn = { runId: 'run-1', round: 5, attempt: 0, parentSha256: sha('4'), dataManifestSha256: sha('e') };
    await store.markFolded([part], foldedIn);
    const again = await KeptWork.open(join(dir(), 'kept'), log.logger);
    expect(await again.parts()).toMatchObject([{ baseModelSha256: sha('3'), state: 'folded-pending', foldedIn }]);
    expect(await again.pendingContributions()).toEqual([{ runId: 'run-1', round: 5, parentSha256: sha('4'), dataManifestSha256: sha('e') }]);
    // The round committed without this site: kept again; then folded and counted: gone.
    await again.settle({ runId: 'run-1', round: 5, parentSha256: sha('4'), dataManifestSha256: sha('e') }, false);
    expect(await again.parts()).toMatchObject([{ state: 'kept' }]);
    expect((await again.parts())[0]!.foldedIn).toBeUndefined();
    await again.markFolded(await again.parts(), foldedIn);
    await again.settle({ runId: 'run-1', round: 5, parentSha256: sha('4'), dataManifestSha256: sha('e') }, true);
    expect(await again.parts()).toEqual([]);
    await expect((await KeptWork.open(join(dir(), 'kept'), log.logger)).pendingContributions()).resolves.toEqual([]);
  });

  it('keeps the part\'s allocation through a restart and a settle, so the upload that folds it can count its GPU time', async () => {
    const log = testLogger();
    const allocation: Allocation = { kind: 'slurm-jobs', jobs: ['4711'], busyMs: 9000 };
    await keepWork(await KeptWork.open(join(dir(), 'kept'), log.logger), '3', 3, 600, 'run-1', allocation);
    const again = await KeptWork.open(join(dir(), 'kept'), log.logger);
    expect((await again.parts())[0]!.allocation).toEqual(allocation);
    const foldedIn = { runId: 'run-1', round: 5, attempt: 0, parentSha256: sha('4'), dataManifestSha256: sha('e') };
    await again.markFolded(await again.parts(), foldedIn);
    await again.settle({ runId: 'run-1', round: 5, parentSha256: sha('4'), dataManifestSha256: sha('e') }, false);
    expect((await again.parts())[0]!.allocation).toEqual(allocation);
  });

  it('removes a record that does not parse, with a warning, and keeps reading the rest', async () => {
    const log = testLogger({ expect: [/kept work unreadable/] });
    const store = await KeptWork.open(join(dir(), 'kept'), log.logger);
    await keepWork(store, '2', 2, 100);
    await writeFile(join(dir(), 'kept', `${sha('9')}.json`), '{"version": 7}');
    expect((await store.parts()).map((p) => p.baseModelSha256)).toEqual([sha('2')]);
    expect(log.warnings().map((l) => l.msg)).toEqual(['kept work unreadable: removed']);
  });
});

describe('planFold', () => {
  const terms: FoldTerms = { weighting: 'samples', maxSiteWeight: 1000, clip: undefined };

  it('drops parts of another run, of the task\'s own model, older than max_staleness or counting nothing; folds the rest freshest first', async () => {
    const store = await KeptWork.open(join(dir(), 'kept'), testLogger().logger);
    await keepWork(store, '3', 3, 300);
    await keepWork(store, '2', 2, 200);
    await keepWork(store, '1', 1, 500);
    await keepWork(store, '4', 4, 500);
    await keepWork(store, '5', 3, 1, 'run-0');
    const parts = await store.parts();
    const plan = planFold(task(), { samples: 400, tokens: 3200 }, parts, terms);
    expect(plan.parts.map((p) => [p.part.baseModelSha256[0], p.staleness, p.discounted, p.count])).toEqual([
      ['3', 1, 150, 150],
      ['2', 2, 66, 66],
    ]);
    expect(plan).toMatchObject({ weight: 616, fresh: 400, foldScale: 1, notNow: undefined });
    expect(plan.dropped.map((d) => [d.part.baseModelSha256[0], d.why]).sort()).toEqual([
      ['1', '3 rounds old, more than max_staleness 2'],
      ['4', 'superseded: this task trains from the same model or a newer one'],
      ['5', 'trained for run run-0, not run-1'],
    ]);
    // Uniform weighting: a stale part of count 1 counts ⌊1/2⌋ = 0, for good.
    const uniform = planFold(task(), { samples: 400, tokens: 3200 }, parts.filter((p) => p.runId === 'run-1' && p.baseModelRound >= 2 && p.baseModelRound < 4), { ...terms, weighting: 'uniform' });
    expect(uniform.parts).toEqual([]);
    expect(uniform.dropped.map((d) => d.why[0])).toEqual(['c', 'c']);
  });

  it('scales the folded parts together to fit maxSiteWeight (λ), folds nothing when the fresh part fills it or no terms are known', async () => {
    const store = await KeptWork.open(join(dir(), 'kept'), testLogger().logger);
    await keepWork(store, '3', 3, 600);
    await keepWork(store, '2', 2, 900);
    const parts = await store.parts();
    const scaled = planFold(task(), { samples: 500, tokens: 0 }, parts, { ...terms, maxSiteWeight: 800 });
    // F = 500, S = 300 + 300, room 300: λ = ½.
    expect(scaled).toMatchObject({ weight: 800, fresh: 500, foldScale: 0.5 });
    expect(scaled.parts.map((p) => p.count)).toEqual([150, 150]);
    expect(planFold(task(), { samples: 800, tokens: 0 }, parts, { ...terms, maxSiteWeight: 800 })).toMatchObject({ parts: [], notNow: expect.stringContaining('no room') });
    expect(planFold(task(), { samples: 900, tokens: 0 }, parts, { ...terms, maxSiteWeight: 800 })).toMatchObject({ parts: [], notNow: expect.stringContaining('out of range') });
    expect(planFold(task(), { samples: 500, tokens: 0 }, parts, undefined)).toMatchObject({ parts: [], dropped: [], notNow: expect.stringContaining('does not say the run') });
    expect(planFold(task({ maxStaleness: 0 }), { samples: 500, tokens: 0 }, parts, terms).dropped).toHaveLength(2);
  });
});

describe('writeFoldedDelta', () => {
  for (const clip of [undefined, 0.0015]) {
    it(`writes f32((F·clip(Δ_f) + Σ λS_i·clip(Δ_i)) / W), computed in float64 (${clip === undefined ? 'plain: no clip' : `clip ${clip}`})`, async () => {
      const store = await KeptWork.open(join(dir(), 'kept'), testLogger().logger);
      await keepWork(store, '3', 3, 600);
      await keepWork(store, '2', 2, 900);
      const global = await model('global', (i) => i / 10 - 1);
      const local = await model('local', (i) => i / 10 - 1 + ((i % 5) - 2) * 7e-4);
      const plan = planFold(task(), { samples: 500, tokens: 0 }, await store.parts(), { weighting: 'samples', maxSiteWeight: 800, clip });
      const outPath = join(dir(), 'folded.safetensors');
      await writeFoldedDelta({ globalPath: global, localPath: local, tensors: TENSORS, plan, clip, outPath, signal: AbortSignal.timeout(5_000) });
      const g = await values(global);
      const l = await values(local);
      const kept = await Promise.all(plan.parts.map((p) => values(p.part.deltaPath)));
      const c = (x: number): number => (clip === undefined ? x : Math.max(-clip, Math.min(clip, x)));
      const expected = Float32Array.from(g, (gv, i) => (500 * c(Math.fround(l[i]! - gv)) + 150 * c(kept[0]![i]!) + 150 * c(kept[1]![i]!)) / 800);
      expect(await values(outPath)).toEqual(expected);
      if (clip !== undefined) expect(Math.max(...(await values(outPath)).map(Math.abs))).toBeLessThanOrEqual(clip);
    });
  }
});

describe('mixDeltas', () => {
  it('matches proto/vectors/folded-weight.json bit for bit, clipped (secure) and not (plain)', async () => {
    interface Case { readonly name: string; readonly freshCount: number; readonly counts: readonly number[]; readonly weight: number }
    const v = JSON.parse(await readFile(join('proto', 'vectors', 'folded-weight.json'), 'utf8')) as {
      cases: Case[];
      mix: { weights: string; fresh: number[]; parts: number[][]; secure: { clip: number; mixed: number[] }; plain: { mixed: number[] } };
    };
    const c = v.cases.find((x) => x.name === v.mix.weights)!;
    const fresh = Float32Array.from(v.mix.fresh);
    const parts = v.mix.parts.map((p) => Float32Array.from(p));
    const mix = (clip: number | undefined): Float32Array => mixDeltas(new Float32Array(fresh.length), fresh, parts, { fresh: c.freshCount, parts: c.counts, total: c.weight, clip });
    expect(mix(v.mix.secure.clip)).toEqual(Float32Array.from(v.mix.secure.mixed));
    expect(mix(undefined)).toEqual(Float32Array.from(v.mix.plain.mixed));
  });
});
