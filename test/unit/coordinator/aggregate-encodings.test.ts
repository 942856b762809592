/**
 * The plain mean over bf16 and int8 spools (aggregation/kernels/encoding.ts), decoded slice by
 * slice, in this thread and in the kernel worker pool.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  type WireEncoding,
  bf16ToF32,
  createOptimizer,
  createSafetensorsWriter,
  decodeInt8Blocks,
  encodeInt8Blocks,
  f32ToBf16,
  memorySink,
  openSafetensors,
} from '../../../aggregation/index.js';
import { openFileSource } from '../../../common/files.js';
import { aggregateRound, type SpoolInput } from '../../../coordinator/aggregate/checkpoint-writer.js';
import { CoordinatorError } from '../../../coordinator/core/errors.js';
import { KernelPool } from '../../../coordinator/aggregate/kernel-pool.js';
import { importInitialModel } from '../../../coordinator/state/model-import.js';
import { LocalStateStore } from '../../../coordinator/state/store.js';
import { seededValues } from '../../helpers/seeded-values.js';

// Sizes around the int8 block of 128: short last blocks, a one-value tensor, several blocks.
const TENSORS = [
  { name: 'emb', shape: [3, 129] },
  { name: 'one', shape: [1] },
  { name: 'proj', shape: [389] },
  { name: 'norm', shape: [128] },
] as const;
const SIZES = TENSORS.map((t) => t.shape.reduce<number>((a, d) => a * d, 1));

let dir: string;
let store: LocalStateStore;
let pool: KernelPool;
beforeAll(async () => {
  pool = await KernelPool.start({ threads: 2, subElements: 1024 });
});
afterAll(async () => {
  await pool.close();
});
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fedhpc-aggregate-enc-'));
  store = await LocalStateStore.open(join(dir, 'state'), () => 0);
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const values = seededValues;

async function importGlobal(): Promise<{ sha: string; tensors: Float32Array[] }> {
  const tensors = SIZES.map((n, k) => values(n, 10 + k, 1));
  const sink = memorySink();
  const w = await createSafetensorsWriter(sink, TENSORS.map((t) => ({ name: t.name, dtype: 'F32' as const, shape: [...t.shape] })), { format: 'pt' });
  for (const [k, t] of TENSORS.entries()) await w.writeF32(t.name, tensors[k]!);
  await w.finish();
  const path = join(dir, 'global.safetensors');
  await writeFile(path, sink.bytes());
  return { sha: (await importInitialModel(store, path, 1024)).sha256, tensors };
}

/** Wire bytes of one tensor in `encoding`, and the values the coordinator will decode from them. */
function encode(delta: Float32Array, encoding: WireEncoding): { wire: Uint8Array; decoded: Float32Array } {
  if (encoding === 'f32') return { wire: new Uint8Array(delta.buffer.slice(0)), decoded: delta };
  if (encoding === 'bf16') {
    const halves = f32ToBf16(delta);
    return { wire: new Uint8Array(halves.buffer), decoded: bf16ToF32(halves) };
  }
  const wire = encodeInt8Blocks(delta);
  return { wire, decoded: decodeInt8Blocks(wire, delta.length) };
}

/** Writes a spool (tensors in order, each encoded on its own); returns the decoded deltas too. */
async function writeSpool(site: string, encoding: WireEncoding, seed: number): Promise<{ path: string; decoded: Float32Array[] }> {
  const parts = SIZES.map((n, k) => encode(values(n, seed + k, 1e-2), encoding));
  const path = join(await store.spoolDir(1, 0), `${site}.delta`);
  await writeFile(path, Buffer.concat(parts.map((p) => p.wire)));
  return { path, decoded: parts.map((p) => p.decoded) };
}

async function aggregate(globalSha: string, inputs: readonly SpoolInput[], sliceElements: number, withPool: boolean): Promise<string> {
  const result = await aggregateRound({
    store,
    globalSha256: globalSha,
    inputs,
    optimizer: createOptimizer({ name: 'fedavg', lr: 1 }),
    step: 1,
    previousStateSha256: undefined,
    sliceElements,
    openSpool: openFileSource,
    metadata: {},
    ...(withPool ? { pool } : {}),
  });
  return result.modelSha256;
}

async function readModel(sha: string): Promise<Float32Array[]> {
  const src = await store.openModel(sha);
  try {
    const file = await openSafetensors(src);
    return Promise.all(file.tensors.map((t) => file.readF32(t.name, 0, t.elements)));
  } finally {
    await src.close();
  }
}

describe('aggregateRound over bf16 and int8 spools', () => {
  it('takes the weighted mean of f32, bf16 and int8 spools, each decoded by its own encoding', async () => {
    const global = await importGlobal();
    const a = await writeSpool('a', 'f32', 100);
    const b = await writeSpool('b', 'bf16', 200);
    const c = await writeSpool('c', 'int8', 300);
    const inputs: SpoolInput[] = [
      { site: 'a', weight: 1, path: a.path, encoding: 'f32' },
      { site: 'b', weight: 2, path: b.path, encoding: 'bf16' },
      { site: 'c', weight: 5, path: c.path, encoding: 'int8' },
    ];
    const model = await readModel(await aggregate(global.sha, inputs, 100, false));
    model.forEach((theta, k) => {
      for (let i = 0; i < theta.length; i++) {
        const mean = (a.decoded[k]![i]! + 2 * b.decoded[k]![i]! + 5 * c.decoded[k]![i]!) / 8;
        expect(theta[i]! - global.tensors[k]![i]!).toBeCloseTo(mean, 6);
      }
    });
  });

  it.each<WireEncoding>(['f32', 'bf16', 'int8'])('gives the same %s checkpoint bit for bit in this thread and in the worker pool, whatever the slice', async (encoding) => {
    const global = await importGlobal();
    const x = await writeSpool('x', encoding, 400);
    const y = await writeSpool('y', encoding, 500);
    const inputs: SpoolInput[] = [
      { site: 'x', weight: 3, path: x.path, encoding },
      { site: 'y', weight: 4, path: y.path, encoding },
    ];
    const reference = await aggregate(global.sha, inputs, 1 << 20, false);
    // 1 and 100 cut int8 blocks mid-way; 128 is block-aligned only in the first tensor.
    for (const slice of [1, 100, 128]) {
      expect(await aggregate(global.sha, inputs, slice, false)).toBe(reference);
      expect(await aggregate(global.sha, inputs, slice, true)).toBe(reference);
    }
  });

  it('rejects an int8 spool one byte short with RangeError, in the pool as in this thread', async () => {
    const global = await importGlobal();
    const s = await writeSpool('s', 'int8', 600);
    await writeFile(s.path, (await readFile(s.path)).subarray(0, -1));
    const inputs: SpoolInput[] = [{ site: 's', weight: 1, path: s.path, encoding: 'int8' }];
    await expect(aggregate(global.sha, inputs, 1000, false)).rejects.toThrow(RangeError);
    await expect(aggregate(global.sha, inputs, 1000, true)).rejects.toThrow(RangeError);
  });

  it('refuses a spool without a known encoding (BAD_REQUEST) instead of reading it as f32', async () => {
    const global = await importGlobal();
    const s = await writeSpool('s', 'f32', 700);
    const inputs = [{ site: 's', weight: 1, path: s.path }] as unknown as SpoolInput[];
    const err = await aggregate(global.sha, inputs, 1000, false).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CoordinatorError);
    expect((err as CoordinatorError).code).toBe('BAD_REQUEST');
  });
});
