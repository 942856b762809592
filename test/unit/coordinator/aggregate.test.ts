import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type Dtype,
  type OptimizerOptions,
  createOptimizer,
  createSafetensorsWriter,
  memorySink,
  openSafetensors,
} from '../../../aggregation/index.js';
import { type FileSource, openFileSource } from '../../../common/files.js';
import { aggregateRound, type MeanSource, type SpoolInput } from '../../../coordinator/aggregate/checkpoint-writer.js';
import { robustMean } from '../../../coordinator/aggregate/robust.js';
import { CoordinatorError } from '../../../coordinator/core/errors.js';
import { importInitialModel } from '../../../coordinator/state/model-import.js';
import { LocalStateStore } from '../../../coordinator/state/store.js';

interface TensorValues {
  readonly name: string;
  readonly shape: number[];
  readonly values: Float32Array;
}

let dir: string;
let store: LocalStateStore;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fedhpc-aggregate-'));
  store = await LocalStateStore.open(join(dir, 'state'), () => 0);
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

/** Writes a safetensors file with every tensor in `dtype` (values must be exact in it). */
async function writeModelFile(name: string, tensors: readonly TensorValues[], dtype: Dtype = 'F32'): Promise<string> {
  const sink = memorySink();
  const w = await createSafetensorsWriter(
    sink,
    tensors.map((t) => ({ name: t.name, dtype, shape: t.shape })),
    { format: 'pt', origin: 'test' },
  );
  for (const t of tensors) await w.writeF32(t.name, t.values);
  await w.finish();
  const path = join(dir, name);
  await writeFile(path, sink.bytes());
  return path;
}

async function importModel(tensors: readonly TensorValues[], dtype: Dtype = 'F32'): Promise<string> {
  return (await importInitialModel(store, await writeModelFile('initial.safetensors', tensors, dtype), 1024)).sha256;
}

/** A spool: raw little-endian f32 deltas, tensors in the global model's order. */
async function writeSpool(site: string, deltas: readonly Float32Array[]): Promise<string> {
  const total = deltas.reduce((s, d) => s + d.length, 0);
  const buf = Buffer.alloc(total * 4);
  let at = 0;
  for (const d of deltas) for (const v of d) at = buf.writeFloatLE(v, at);
  const path = join(await store.spoolDir(1, 0), `${site}.delta`);
  await writeFile(path, buf);
  return path;
}

async function readTensors(open: Promise<FileSource>): Promise<Map<string, { dtype: string; values: Float32Array }>> {
  const src = await open;
  try {
    const file = await openSafetensors(src);
    const out = new Map<string, { dtype: string; values: Float32Array }>();
    for (const t of file.tensors) out.set(t.name, { dtype: t.dtype, values: await file.readF32(t.name, 0, t.elements) });
    return out;
  } finally {
    await src.close();
  }
}

const readModel = (sha: string): ReturnType<typeof readTensors> => readTensors(store.openModel(sha));

async function aggregate(
  globalSha256: string,
  inputs: readonly SpoolInput[],
  strategy: OptimizerOptions,
  extra: { step?: number; previousStateSha256?: string; sliceElements?: number; mean?: MeanSource } = {},
): Promise<string> {
  const result = await aggregateRound({
    store,
    globalSha256,
    inputs,
    ...(extra.mean ? { mean: extra.mean } : {}),
    optimizer: createOptimizer(strategy),
    step: extra.step ?? 1,
    previousStateSha256: extra.previousStateSha256,
    sliceElements: extra.sliceElements ?? 1024,
    openSpool: openFileSource,
    metadata: { round: String(extra.step ?? 1) },
  });
  const written = await store.openModel(result.modelSha256);
  await written.close();
  expect(result.modelBytes).toBe(written.size);
  return result.modelSha256;
}

const bits = (a: Float32Array): number[] => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

/** Deterministic f32 values in roughly [-2, 2]. */
function values(n: number, seed: number): Float32Array {
  let x = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return Math.fround((x / 2 ** 32) * 4 - 2);
  });
}

// Tensors of different shapes; sizes that are not multiples of small slice sizes.
const GLOBAL: readonly TensorValues[] = [
  { name: 'layer.weight', shape: [2, 3], values: values(6, 1) },
  { name: 'layer.bias', shape: [4], values: values(4, 2) },
  { name: 'scale', shape: [1], values: Float32Array.of(0.5) },
];

describe('aggregateRound', () => {
  it('FedAvg lr 1 with one participant reproduces the site’s local weights bit for bit', async () => {
    const globalSha = await importModel(GLOBAL);
    // Local weights close to global, as trained weights are: local − global is exact in f32.
    const local = GLOBAL.map((t, k) => values(t.values.length, 10 + k).map((r, i) => Math.fround(t.values[i]! + r * 1e-3)));
    const deltas = local.map((l, k) => l.map((v, i) => v - GLOBAL[k]!.values[i]!));
    deltas.forEach((d, k) => d.forEach((v, i) => expect(v).toBe(local[k]![i]! - GLOBAL[k]!.values[i]!)));
    const path = await writeSpool('site-a', deltas);
    const sha = await aggregate(globalSha, [{ site: 'site-a', weight: 7, path, encoding: 'f32' }], { name: 'fedavg', lr: 1 });
    const model = await readModel(sha);
    expect([...model.keys()]).toEqual(GLOBAL.map((t) => t.name));
    GLOBAL.forEach((t, k) => {
      expect(model.get(t.name)!.dtype).toBe('F32');
      expect(bits(model.get(t.name)!.values)).toEqual(bits(local[k]!));
    });
    expect(sha).not.toBe(globalSha);
    expect(await readdir(join(dir, 'state', 'optimizer'))).toEqual([]); // FedAvg has no state
    expect(await readdir(join(dir, 'state', 'tmp'))).toEqual([]);
  });

  it('takes the weighted mean of two participants (weights 1 and 3)', async () => {
    const globalSha = await importModel(GLOBAL);
    // Multiples of 1/8: the weighted mean is exact and can be checked by hand.
    const d1 = GLOBAL.map((t) => Float32Array.from({ length: t.values.length }, (_, i) => (i + 1) / 8));
    const d2 = GLOBAL.map((t) => Float32Array.from({ length: t.values.length }, (_, i) => -i / 4));
    const p1 = await writeSpool('a', d1);
    const p2 = await writeSpool('b', d2);
    const sha = await aggregate(
      globalSha,
      [
        { site: 'a', weight: 1, path: p1, encoding: 'f32' },
        { site: 'b', weight: 3, path: p2, encoding: 'f32' },
      ],
      { name: 'fedavg' },
    );
    const model = await readModel(sha);
    GLOBAL.forEach((t, k) => {
      const expected = t.values.map((g, i) => g + (1 * d1[k]![i]! + 3 * d2[k]![i]!) / 4);
      expect(Array.from(model.get(t.name)!.values)).toEqual(Array.from(expected));
    });
    // e.g. layer.bias[1]: (1·2/8 + 3·(−1/4)) / 4 = −0.125
    expect(model.get('layer.bias')!.values[1]).toBe(Math.fround(GLOBAL[1]!.values[1]! - 0.125));
  });

  it('carries DiLoCo momentum across two steps through the state saved beside the checkpoint', async () => {
    const initial: TensorValues[] = [
      { name: 'w', shape: [3], values: Float32Array.of(1, -2, 0.5) },
      { name: 'b', shape: [2], values: Float32Array.of(0, 4) },
    ];
    const globalSha = await importModel(initial);
    const step1 = [Float32Array.of(0.5, 0.25, -1), Float32Array.of(0.125, -0.5)];
    const step2 = [Float32Array.of(-0.25, 0.5, 0.75), Float32Array.of(0, 1)];
    const sha1 = await aggregate(globalSha, [{ site: 'a', weight: 1, path: await writeSpool('a', step1), encoding: 'f32' }], { name: 'diloco' });
    expect(await store.hasOptimizerState(sha1, 'momentum')).toBe(true);
    const sha2 = await aggregate(sha1, [{ site: 'a', weight: 1, path: await writeSpool('a', step2), encoding: 'f32' }], { name: 'diloco' }, {
      step: 2,
      previousStateSha256: sha1,
    });

    // By hand, per element: g = −Δ; v ← 0.9·v + g; θ ← θ − 0.7·(g + 0.9·v); stored as f32.
    const lr = 0.7;
    const mu = 0.9;
    const expected = initial.map((t, k) => {
      const theta = Array.from(t.values);
      const v = theta.map(() => 0);
      const thetas: number[][] = [];
      const vs: number[][] = [];
      for (const deltas of [step1, step2]) {
        for (let i = 0; i < theta.length; i++) {
          const g = -deltas[k]![i]!;
          const vi = mu * v[i]! + g;
          v[i] = Math.fround(vi);
          theta[i] = Math.fround(theta[i]! - lr * (g + mu * vi));
        }
        thetas.push([...theta]);
        vs.push([...v]);
      }
      return { thetas, vs };
    });
    const m1 = await readModel(sha1);
    const m2 = await readModel(sha2);
    const v1 = await readTensors(store.openOptimizerState(sha1, 'momentum'));
    const v2 = await readTensors(store.openOptimizerState(sha2, 'momentum'));
    initial.forEach((t, k) => {
      expect(Array.from(m1.get(t.name)!.values)).toEqual(expected[k]!.thetas[0]);
      expect(Array.from(v1.get(t.name)!.values)).toEqual(expected[k]!.vs[0]);
      expect(Array.from(m2.get(t.name)!.values)).toEqual(expected[k]!.thetas[1]);
      expect(Array.from(v2.get(t.name)!.values)).toEqual(expected[k]!.vs[1]);
    });
    // First element worked out: g₁ = −0.5, v₁ = −0.5, θ₁ = 1 + 0.7·(0.5 + 0.45) = 1.665;
    // g₂ = 0.25, v₂ = −0.45 + 0.25 = −0.2, θ₂ = 1.665 − 0.7·(0.25 − 0.18) = 1.616.
    expect(m1.get('w')!.values[0]).toBeCloseTo(1.665, 6);
    expect(v2.get('w')!.values[0]).toBeCloseTo(-0.2, 6);
    expect(m2.get('w')!.values[0]).toBeCloseTo(1.616, 5);
  });

  it('gives the same checkpoint and state whatever the slice size', async () => {
    const globalSha = await importModel(GLOBAL);
    const deltas = GLOBAL.map((t, k) => values(t.values.length, 30 + k).map((v) => Math.fround(v * 1e-2)));
    const path = await writeSpool('a', deltas);
    const other = await writeSpool('b', deltas.map((d) => d.map((v) => -v / 2)));
    const inputs = [
      { site: 'a', weight: 2, path, encoding: 'f32' },
      { site: 'b', weight: 5, path: other, encoding: 'f32' },
    ] as const;
    const shaLarge = await aggregate(globalSha, inputs, { name: 'diloco' }, { sliceElements: 1 << 20 });
    const stateLarge = await readTensors(store.openOptimizerState(shaLarge, 'momentum'));
    for (const sliceElements of [1, 3]) {
      const sha = await aggregate(globalSha, inputs, { name: 'diloco' }, { sliceElements });
      expect(sha).toBe(shaLarge);
    }
    expect(await readTensors(store.openOptimizerState(shaLarge, 'momentum'))).toEqual(stateLarge);
  });

  // The step reads each slice into arrays it keeps for the whole aggregation: a slice must not see
  // what the one before left there, in the optimizer's state at step 1 or in a robust mean.
  it('gives the same checkpoint whatever the slice size with FedAdam\'s two state slots and with a median of three sites', async () => {
    const globalSha = await importModel(GLOBAL);
    const deltas = (seed: number, scale: number) => GLOBAL.map((t, k) => values(t.values.length, seed + k).map((v) => Math.fround(v * scale)));
    const inputs: SpoolInput[] = [];
    for (const [i, site] of ['a', 'b', 'c'].entries()) inputs.push({ site, weight: i + 1, path: await writeSpool(site, deltas(40 + 10 * i, 1e-2)), encoding: 'f32' });
    const elements = GLOBAL.map((t) => t.values.length);
    const median = () => robustMean({ name: 'median' }, inputs, elements, openFileSource);
    const adam = { name: 'fedadam' } as const;
    const large = { adam: await aggregate(globalSha, inputs, adam, { sliceElements: 1 << 20 }), median: await aggregate(globalSha, inputs, adam, { sliceElements: 1 << 20, mean: await median() }) };
    expect(large.median).not.toBe(large.adam);
    for (const sliceElements of [1, 3, 5]) {
      expect(await aggregate(globalSha, inputs, adam, { sliceElements })).toBe(large.adam);
      expect(await aggregate(globalSha, inputs, adam, { sliceElements, mean: await median() })).toBe(large.median);
    }
  });

  it('cleans up and keeps the global model when a spool is short', async () => {
    const globalSha = await importModel(GLOBAL);
    const path = await writeSpool('a', [Float32Array.of(1, 2)]);
    await expect(aggregate(globalSha, [{ site: 'a', weight: 1, path, encoding: 'f32' }], { name: 'diloco' })).rejects.toThrow(RangeError);
    expect(await readdir(join(dir, 'state', 'models'))).toEqual([`${globalSha}.safetensors`]);
    expect(await readdir(join(dir, 'state', 'optimizer'))).toEqual([]);
    expect(await readdir(join(dir, 'state', 'tmp'))).toEqual([]);
  });

  it('refuses uploads without a positive total weight with ZERO_WEIGHT and writes no checkpoint', async () => {
    const globalSha = await importModel(GLOBAL);
    const path = await writeSpool('a', GLOBAL.map((t) => new Float32Array(t.values.length)));
    const refused = await aggregate(globalSha, [{ site: 'a', weight: 0, path, encoding: 'f32' }], { name: 'fedavg', lr: 1 }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(CoordinatorError);
    expect(refused).toMatchObject({ code: 'ZERO_WEIGHT', retryable: false, context: { inputs: 1, totalWeight: 0 } });
    expect(await readdir(join(dir, 'state', 'models'))).toEqual([`${globalSha}.safetensors`]);
  });
});

describe('importInitialModel', () => {
  it("keeps the initial model's __metadata__ in every committed checkpoint, with this round's entries added", async () => {
    const globalSha = await importModel(GLOBAL);
    const deltas = GLOBAL.map((t, k) => values(t.values.length, 30 + k).map((v) => v * 1e-3));
    const first = await aggregate(globalSha, [{ site: 'a', weight: 1, path: await writeSpool('a', deltas), encoding: 'f32' }], { name: 'fedavg', lr: 1 });
    const second = await aggregate(first, [{ site: 'a', weight: 1, path: await writeSpool('a2', deltas), encoding: 'f32' }], { name: 'fedavg', lr: 1 }, { step: 2 });
    for (const [sha, round] of [[first, '1'], [second, '2']] as const) {
      const src = await store.openModel(sha);
      const file = await openSafetensors(src);
      expect(file.metadata).toEqual({ format: 'pt', origin: 'test', round });
      await src.close();
    }
  });

  it('imports a BF16 model as an F32 checkpoint with the same values when the run asks for f32', async () => {
    // Values exact in BF16 (8 significant bits).
    const tensors: TensorValues[] = [
      { name: 'emb', shape: [2, 2], values: Float32Array.of(1.5, -2, 0.15625, 3072) },
      { name: 'norm', shape: [3], values: Float32Array.of(1, 0, -0.0078125) },
    ];
    const path = await writeModelFile('bf16.safetensors', tensors, 'BF16');
    const { sha256 } = await importInitialModel(store, path, 3, 'F32');
    const src = await store.openModel(sha256);
    const file = await openSafetensors(src);
    expect(file.tensors.map((t) => [t.name, t.dtype, t.shape])).toEqual([
      ['emb', 'F32', [2, 2]],
      ['norm', 'F32', [3]],
    ]);
    expect(file.metadata).toMatchObject({ format: 'pt', origin: 'test' });
    for (const t of tensors) expect(Array.from(await file.readF32(t.name, 0, t.values.length))).toEqual(Array.from(t.values));
    await src.close();
  });

  it('gives an F32 model the same hash whatever the slice size', async () => {
    const path = await writeModelFile('f32.safetensors', GLOBAL);
    const a = await importInitialModel(store, path, 1);
    const b = await importInitialModel(store, path, 1 << 20);
    expect(a.sha256).toBe(b.sha256);
  });
});
