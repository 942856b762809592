/**
 * The checkpoint dtype and the f32 master weights (coordinator/state/checkpoint-dtype.ts): the
 * import keeps or converts the initial model's dtypes, the checkpoint writer steps the master and
 * writes the checkpoint rounded to nearest even, and refuses what it cannot write faithfully.
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  bf16ToF32,
  createOptimizer,
  createSafetensorsWriter,
  f32ToBf16,
  memorySink,
  openSafetensors,
  type Dtype,
  type FloatDtype,
  type OptimizerOptions,
} from '../../../aggregation/index.js';
import { openFileSource, type FileSource } from '../../../common/files.js';
import { aggregateRound } from '../../../coordinator/aggregate/checkpoint-writer.js';
import { coordinatorConfigSchema, runSchema, type RunningConfig } from '../../../coordinator/config.js';
import { CoordinatorError } from '../../../coordinator/core/errors.js';
import { journalRunStart } from '../../../coordinator/shell/run-start.js';
import { MASTER_WEIGHTS_SLOT } from '../../../coordinator/state/checkpoint-dtype.js';
import { importInitialModel } from '../../../coordinator/state/model-import.js';
import { LocalStateStore } from '../../../coordinator/state/store.js';

let dir: string;
let store: LocalStateStore;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fedhpc-checkpoint-dtype-'));
  store = await LocalStateStore.open(join(dir, 'state'), () => 0);
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

interface Tensor {
  readonly name: string;
  readonly dtype: Dtype;
  readonly values: Float32Array;
}

const METADATA = { format: 'pt', license: 'Apache-2.0' };

async function initialFile(tensors: readonly Tensor[]): Promise<string> {
  const sink = memorySink();
  const w = await createSafetensorsWriter(sink, tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: [t.values.length] })), METADATA);
  for (const t of tensors) await w.writeF32(t.name, t.values);
  await w.finish();
  const path = join(dir, 'initial.safetensors');
  await writeFile(path, sink.bytes());
  return path;
}

async function importFile(tensors: readonly Tensor[], dtype?: FloatDtype): Promise<string> {
  return (await importInitialModel(store, await initialFile(tensors), 2, dtype)).sha256;
}

async function read(open: Promise<FileSource>): Promise<{ metadata: Record<string, string>; tensors: Map<string, { dtype: string; values: Float32Array }> }> {
  const src = await open;
  try {
    const file = await openSafetensors(src);
    const tensors = new Map<string, { dtype: string; values: Float32Array }>();
    for (const t of file.tensors) tensors.set(t.name, { dtype: t.dtype, values: await file.readF32(t.name, 0, t.elements) });
    return { metadata: { ...file.metadata }, tensors };
  } finally {
    await src.close();
  }
}

const model = (sha: string): ReturnType<typeof read> => read(store.openModel(sha));
const master = (sha: string): ReturnType<typeof read> => read(store.openOptimizerState(sha, MASTER_WEIGHTS_SLOT));
const files = async (sub: string): Promise<string[]> => (await readdir(join(dir, 'state', sub))).sort();

/** One aggregation of a single site's f32 delta (`deltas` in the model's tensor order). */
async function step(globalSha256: string, deltas: readonly Float32Array[], o: { step: number; previous?: string; strategy?: OptimizerOptions }): Promise<string> {
  const path = join(await store.spoolDir(o.step, 0), 'a.delta');
  await writeFile(path, Buffer.concat(deltas.map((d) => Buffer.from(d.buffer, d.byteOffset, d.byteLength))));
  const result = await aggregateRound({
    store,
    globalSha256,
    inputs: [{ site: 'a', weight: 1, path, encoding: 'f32' }],
    optimizer: createOptimizer(o.strategy ?? { name: 'fedavg', lr: 1 }),
    step: o.step,
    previousStateSha256: o.previous,
    sliceElements: 2,
    openSpool: openFileSource,
    metadata: { fedhpc_round: String(o.step) },
  });
  return result.modelSha256;
}

describe('importInitialModel and the checkpoint dtype', () => {
  it("keeps each tensor's own dtype by default, values and metadata unchanged, with no master (nothing was rounded)", async () => {
    const tensors: Tensor[] = [
      { name: 'emb', dtype: 'BF16', values: Float32Array.of(1.5, -2, 0.15625) },
      { name: 'norm', dtype: 'F16', values: Float32Array.of(1, 0.000244140625, -65504) },
      { name: 'head', dtype: 'F32', values: Float32Array.of(0.1, -0.2) },
    ];
    const sha = await importFile(tensors);
    const m = await model(sha);
    expect(m.metadata).toEqual(METADATA);
    for (const t of tensors) expect(m.tensors.get(t.name)).toEqual({ dtype: t.dtype, values: t.values });
    expect(await files('optimizer')).toEqual([]);
  });

  it('narrows an F32 model to BF16 (round to nearest even) and keeps its exact values as the f32 master', async () => {
    const values = Float32Array.of(1 + 2 ** -8, 1 + 3 * 2 ** -8, 0.1, -3.3);
    const sha = await importFile([{ name: 'w', dtype: 'F32', values }], 'BF16');
    expect((await model(sha)).tensors.get('w')).toEqual({ dtype: 'BF16', values: bf16ToF32(f32ToBf16(values)) });
    expect((await master(sha)).tensors.get('w')).toEqual({ dtype: 'F32', values });
    expect(await files('optimizer')).toEqual([`${sha}.master.safetensors`]);
  });

  it('writes F32 checkpoints from a BF16 model when the run sets checkpointDtype f32, journaled with the run, and no master beside them', async () => {
    const values = Float32Array.of(1.5, -2, 0.15625, 3072);
    const config: RunningConfig = {
      ...coordinatorConfigSchema.parse({
        federation: 'fed-1',
        listen: '127.0.0.1:7443',
        tls: { ca: 'ca.pem', cert: 'c.pem', key: 'c.key' },
        stateDir: join(dir, 'state'),
        model: { initial: await initialFile([{ name: 'w', dtype: 'BF16', values }]) },
      }),
      run: runSchema.parse({ id: 'run-1', rounds: 1, minSites: 1, maxSiteWeight: 1, checkpointDtype: 'f32' }),
    };
    const started = await journalRunStart(store, config);
    expect(started.started.checkpointDtype).toBe('f32');
    const sha = started.globalSha256;
    expect((await model(sha)).tensors.get('w')).toEqual({ dtype: 'F32', values });
    const round1 = await step(sha, [Float32Array.of(2 ** -12, 0, 0, 0)], { step: 1 });
    const m = await model(round1);
    expect(m.tensors.get('w')).toEqual({ dtype: 'F32', values: Float32Array.of(1.5 + 2 ** -12, -2, 0.15625, 3072) });
    expect(m.metadata).toEqual({ ...METADATA, fedhpc_round: '1' });
    expect(await files('optimizer')).toEqual([]);
  });

  it('refuses a value the checkpoint dtype cannot hold with CHECKPOINT_OVERFLOW and leaves no file', async () => {
    const refused = await importFile([{ name: 'w', dtype: 'F32', values: Float32Array.of(1, 2, 70_000) }], 'F16').catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(CoordinatorError);
    expect(refused).toMatchObject({ code: 'CHECKPOINT_OVERFLOW', context: { tensor: 'w', element: 2, dtype: 'F16' } });
    expect([await files('models'), await files('optimizer'), await files('tmp')]).toEqual([[], [], []]);
  });
});

describe('aggregateRound with a checkpoint narrower than F32', () => {
  const ones = Float32Array.of(1, 1, -1);
  const nudge = Float32Array.of(2 ** -10, 2 ** -10, -(2 ** -10));

  it('keeps updates below half a bf16 step in the f32 master until they move the checkpoint; optimizer state stays F32', async () => {
    let sha = await importFile([{ name: 'w', dtype: 'BF16', values: ones }]);
    let previous: string | undefined;
    const shas: string[] = [];
    for (let r = 1; r <= 5; r++) {
      sha = await step(sha, [nudge], { step: r, previous, strategy: { name: 'fedavgm', lr: 1, momentum: 0 } });
      previous = sha;
      shas.push(sha);
    }
    // 1 + 4·2^-10 is the tie between bf16 1 and 1 + 2^-7: to even (1). One more nudge crosses it.
    for (const [i, sha] of shas.entries()) {
      const m = await model(sha);
      expect(m.tensors.get('w')!.dtype).toBe('BF16');
      expect(m.metadata).toEqual({ ...METADATA, fedhpc_round: String(i + 1) });
      expect((await master(sha)).tensors.get('w')).toEqual({ dtype: 'F32', values: ones.map((x) => x + Math.sign(x) * (i + 1) * 2 ** -10) });
    }
    expect((await model(shas[3]!)).tensors.get('w')!.values).toEqual(ones);
    expect((await model(shas[4]!)).tensors.get('w')!.values).toEqual(ones.map((x) => x + Math.sign(x) * 2 ** -7));
    const momentum = await read(store.openOptimizerState(shas[4]!, 'momentum'));
    expect(momentum.tensors.get('w')).toEqual({ dtype: 'F32', values: nudge.map((x) => -x) });
  });

  it('steps round 1 from the master the import kept, not from the rounded file', async () => {
    const values = Float32Array.of(1 + 2 ** -9, 0.1);
    const sha = await importFile([{ name: 'w', dtype: 'F32', values }], 'BF16');
    const round1 = await step(sha, [Float32Array.of(2 ** -9, 0)], { step: 1 });
    // From the rounded file (1) this would be 1 + 2^-9, which rounds to bf16 1.
    expect((await master(round1)).tensors.get('w')!.values).toEqual(Float32Array.of(1 + 2 ** -8, 0.1));
    expect((await model(round1)).tensors.get('w')!.values).toEqual(bf16ToF32(f32ToBf16(Float32Array.of(1 + 2 ** -8, 0.1))));
  });

  it("refuses to step from a committed BF16 checkpoint whose master is gone (STATE_CORRUPT), as for lost momentum", async () => {
    const sha = await importFile([{ name: 'w', dtype: 'BF16', values: ones }]);
    const round1 = await step(sha, [nudge], { step: 1 });
    await rm(join(dir, 'state', 'optimizer', `${round1}.master.safetensors`));
    const refused = await step(round1, [nudge], { step: 2, previous: round1 }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(CoordinatorError);
    expect(refused).toMatchObject({ code: 'STATE_CORRUPT', context: { slot: 'master' } });
    expect(await files('models')).toEqual([`${round1}.safetensors`, `${sha}.safetensors`].sort());
  });

  it('refuses an update that overflows an F16 checkpoint with CHECKPOINT_OVERFLOW and commits nothing', async () => {
    const sha = await importFile([{ name: 'w', dtype: 'F16', values: Float32Array.of(65_000, 1) }]);
    const refused = await step(sha, [Float32Array.of(1_000, 0)], { step: 1 }).catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: 'CHECKPOINT_OVERFLOW', context: { tensor: 'w', element: 0, dtype: 'F16' } });
    expect([await files('models'), await files('optimizer'), await files('tmp')]).toEqual([[`${sha}.safetensors`], [], []]);
  });
});
