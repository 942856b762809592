/**
 * A global model and a local one on disk for the delta encoder's tests: F32 tensors `t0`, `t1`, …
 * of the given shapes, the global at `globalValue(k, i)` and the local at global + `deltaValue(k, i)`.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSafetensorsWriter, memorySink } from '../../aggregation/index.js';

/** The pair of files, their tensors as a task declares them, and a way to remove them. */
export interface DeltaFiles {
  readonly tensors: { name: string; dtype: string; shape: number[] }[];
  readonly dir: string;
  readonly globalPath: string;
  readonly localPath: string;
  /** Elements of tensor k. */
  n(k: number): number;
  remove(): Promise<void>;
}

type Values = (k: number, i: number) => number;

/** Writes the two files into a fresh temporary folder. */
export async function writeDeltaFiles(shapes: readonly (readonly number[])[], globalValue: Values, deltaValue: Values): Promise<DeltaFiles> {
  const tensors = shapes.map((shape, k) => ({ name: `t${k}`, dtype: 'F32', shape: [...shape] }));
  const n = (k: number): number => shapes[k]!.reduce((a, b) => a * b, 1);
  const dir = await mkdtemp(join(tmpdir(), 'fedhpc-delta-files-'));
  const write = async (path: string, f: Values): Promise<void> => {
    const sink = memorySink();
    const w = await createSafetensorsWriter(sink, tensors.map((t) => ({ name: t.name, dtype: 'F32' as const, shape: t.shape })));
    for (let k = 0; k < tensors.length; k++) await w.writeF32(`t${k}`, Float32Array.from({ length: n(k) }, (_, i) => f(k, i)));
    await w.finish();
    await writeFile(path, sink.bytes());
  };
  const globalPath = join(dir, 'global.safetensors');
  const localPath = join(dir, 'local.safetensors');
  await write(globalPath, globalValue);
  await write(localPath, (k, i) => globalValue(k, i) + deltaValue(k, i));
  return { tensors, dir, globalPath, localPath, n, remove: () => rm(dir, { recursive: true, force: true }) };
}
