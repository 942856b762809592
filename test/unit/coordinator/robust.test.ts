import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openFileSource } from '../../../common/files.js';
import type { SpoolInput } from '../../../coordinator/aggregate/checkpoint-writer.js';
import { CoordinatorError } from '../../../coordinator/core/errors.js';
import { robustMean, trimCount, type AggregatorOptions } from '../../../coordinator/aggregate/robust.js';

/** Two tensors of 5 and 300 values, so slices cross a tensor boundary. */
const TENSORS = [5, 300];
const N = TENSORS[0]! + TENSORS[1]!;

async function spool(dir: string, site: string, values: Float32Array, encoding: 'f32' | 'bf16'): Promise<SpoolInput> {
  const path = join(dir, `${site}.delta`);
  if (encoding === 'f32') await writeFile(path, Buffer.from(values.buffer));
  else {
    // bf16: the upper half of each f32 (the test values are exact in bf16).
    const words = new Uint32Array(values.buffer);
    await writeFile(path, Buffer.from(Uint16Array.from(words, (w) => w >>> 16).buffer));
  }
  return { site, weight: 1, path, encoding };
}

async function readAll(aggregator: AggregatorOptions, inputs: SpoolInput[], slice: number): Promise<Float32Array> {
  const src = await robustMean(aggregator, inputs, TENSORS, (p) => openFileSource(p));
  const out = new Float32Array(N);
  for (let at = 0; at < N; at += slice) out.set(await src.read(at, Math.min(slice, N - at)), at);
  await src.close();
  return out;
}

describe('robust aggregators', () => {
  it('refuse the plain mean (BAD_REQUEST) and an aggregation without uploads (TOO_FEW_UPLOADS)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fedhpc-robust-'));
    const one = [await spool(dir, 'a', new Float32Array(N), 'f32')];
    const mean = await robustMean({ name: 'mean' }, one, TENSORS, (p) => openFileSource(p)).catch((e: unknown) => e);
    expect(mean).toBeInstanceOf(CoordinatorError);
    expect(mean).toMatchObject({ code: 'BAD_REQUEST' });
    const none = await robustMean({ name: 'median' }, [], TENSORS, (p) => openFileSource(p)).catch((e: unknown) => e);
    expect(none).toBeInstanceOf(CoordinatorError);
    expect(none).toMatchObject({ code: 'TOO_FEW_UPLOADS', retryable: true, context: { uploads: 0, needed: 1 } });
  });

  it('keep one site that uploads huge values from moving the model: median and trimmed mean per coordinate', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fedhpc-robust-'));
    // Honest sites k = 0..3 upload (k + 1) / 8 · sign(i); the attacker uploads 1e6 everywhere.
    const honest = [0, 1, 2, 3].map((k) => Float32Array.from({ length: N }, (_, i) => ((k + 1) / 8) * (i % 2 === 0 ? 1 : -1)));
    const inputs = [
      ...(await Promise.all(honest.map((v, k) => spool(dir, `site-${k}`, v, k % 2 === 0 ? 'f32' : 'bf16')))),
      await spool(dir, 'attacker', new Float32Array(N).fill(1e6), 'f32'),
    ];
    for (const slice of [7, 64, N]) {
      const median = await readAll({ name: 'median' }, inputs, slice);
      const trimmed = await readAll({ name: 'trimmed-mean', trim: 0.2 }, inputs, slice);
      for (let i = 0; i < N; i++) {
        const sorted = [...honest.map((v) => v[i]!), 1e6].sort((a, b) => a - b);
        expect(median[i]).toBe(sorted[2]); // odd n: the middle value
        expect(trimmed[i]).toBeCloseTo((sorted[1]! + sorted[2]! + sorted[3]!) / 3, 6); // ⌊0.2·5⌋ = 1 off each end
        expect(Math.abs(median[i]!)).toBeLessThanOrEqual(0.5);
      }
    }
  });

  it('averages the two middle values for an even number of sites, and trims nothing when ⌊trim·n⌋ is 0', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fedhpc-robust-'));
    const inputs = await Promise.all([1, 2, 4, 8].map((x, k) => spool(dir, `s${k}`, new Float32Array(N).fill(x), 'f32')));
    expect((await readAll({ name: 'median' }, inputs, 100))[0]).toBe(3);
    expect(trimCount({ name: 'trimmed-mean', trim: 0.2 }, 4)).toBe(0);
    expect((await readAll({ name: 'trimmed-mean', trim: 0.2 }, inputs, 100))[N - 1]).toBe(15 / 4);
  });

  it('refuses a short spool instead of reading past its end', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fedhpc-robust-'));
    const good = await spool(dir, 'a', new Float32Array(N), 'f32');
    const short = await spool(dir, 'b', new Float32Array(N - 3), 'f32');
    await expect(readAll({ name: 'median' }, [good, short, good], N)).rejects.toThrow();
  });
});
