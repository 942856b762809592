/**
 * Secure aggregation, sharded (issue 22): masks are per coordinate, so each aggregator shard
 * unmasks its own range of the survivors' masked words with the secrets the leader rebuilt
 * (`unmaskPlan`), the keystream seeking to its first word; one designated shard — the last, whose
 * part the weight word follows — holds the weight words and reports them, and the leader unmasks
 * Σw from them, checks it (`checkedWeightSum`) and hands it to every shard. The means the shards serve must be the mean one process serves (`secureMean`),
 * bit for bit, and each shard's range check must catch a bad word in its own range. The sites'
 * side (`SecureSession`, the agent's `DeltaEncoder`) and the coordinator's run in process; masked
 * spools are files, each shard's parts cut from them as the partition says.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { AggregationError, partitionModel, unwrap } from '../../../aggregation/index.js';
import { openFileSource } from '../../../common/files.js';
import { CoordinatorError } from '../../../coordinator/core/errors.js';
import { checkedUnmaskingOfWords, checkedWeightSum, unmaskPlan, unmaskWeightWord, unmaskedMean, type UnmaskPlan } from '../../../coordinator/secure/unmask.js';
import { InProcessSecAgg, makeIdentities, pseudoGradient, type Identities } from '../../helpers/secure-protocol.js';

const SITES = ['site-a', 'site-b', 'site-c', 'site-d', 'site-e'];
const ELEMENTS = 10_007;
const SAMPLES: Record<string, number> = { 'site-a': 1000, 'site-b': 700, 'site-c': 400, 'site-d': 250, 'site-e': 900 };

let identities: Identities;
beforeAll(async () => {
  identities = await makeIdentities(SITES);
});

interface Attempt {
  readonly p: InProcessSecAgg;
  /** The survivors' masked spools, in survivor order. */
  readonly paths: string[];
  readonly whole: Float32Array;
}

/** A secure attempt with `dropped` gone after sharing its keys; the mean one process unmasks. */
async function attempt(label: string, modulusBits: 16 | 32, quantBits: number, dropped: readonly string[]): Promise<Attempt> {
  const p = new InProcessSecAgg(identities, { threshold: 3, modulusBits, quantBits, clip: 0.25, maxSiteWeight: 1000, seed: label });
  p.keys();
  p.shares();
  p.deliverShares();
  const survivors = p.sites.filter((s) => !dropped.includes(s));
  for (const s of survivors) await p.upload(s, pseudoGradient(ELEMENTS, 0.06, 0.4, s), SAMPLES[s]!);
  p.consistency(survivors, dropped);
  p.reveal();
  const whole = await p.mean(ELEMENTS);
  return { p, paths: p.coordinator.survivors.map((s) => p.spools.get(s)!), whole };
}

/** Each shard's parts of the survivors' spools: words [b_s, b_{s+1}), the last shard's with the weight word. */
async function partSpools(a: Attempt, bounds: readonly number[], size: number): Promise<string[][]> {
  const k = bounds.length - 1;
  return Promise.all(
    Array.from({ length: k }, (_, s) =>
      Promise.all(
        a.paths.map(async (path) => {
          const bytes = await readFile(path);
          const end = s === k - 1 ? (ELEMENTS + 1) * size : bounds[s + 1]! * size;
          const part = `${path}.shard-${s}`;
          await writeFile(part, bytes.subarray(bounds[s]! * size, end));
          return part;
        }),
      ),
    ),
  );
}

/** Shard `s`'s mean over its part, read whole. */
async function shardMean(plan: UnmaskPlan, paths: readonly string[], base: number, count: number, weightSum: number): Promise<Float32Array> {
  const source = await unmaskedMean(plan, paths, base, weightSum, openFileSource, { base });
  try {
    return await source.read(0, count);
  } finally {
    await source.close();
  }
}

describe('secure aggregation over aggregator shards', () => {
  it.each([
    ['Z_2^32, q = 24, one dropout, K = 3', 32, 24, ['site-c'], 3],
    ['Z_2^16, q = 13, two dropouts, K = 2', 16, 13, ['site-a', 'site-d'], 2],
  ] as const)('%s: the shards’ means are the one process’s, bit for bit', async (label, bits, q, dropped, k) => {
    const a = await attempt(label, bits, q, dropped);
    try {
      const partition = unwrap(partitionModel([{ name: 'delta', shape: [ELEMENTS] }], k), AggregationError, 'partition');
      const bounds = partition.bounds;
      const parts = await partSpools(a, bounds, bits / 8);
      // The leader: secrets once; the designated (last) shard: Σw; the leader checks it.
      const plan = unmaskPlan(a.p.coordinator);
      const unmasked = await unmaskWeightWord(plan, parts[k - 1]!, bounds[k - 1]!, ELEMENTS, openFileSource);
      const weightSum = checkedWeightSum(a.p.coordinator, a.p.declared, unmasked);
      // What the leader holds of uploads in parts: each survivor's masked weight word, as the last
      // shard reports it; unmasked from those words alone, Σw is the same.
      const words = await Promise.all(a.paths.map(async (path) => (await readFile(path)).subarray(ELEMENTS * (bits / 8))));
      expect(words.every((w) => w.length === bits / 8)).toBe(true);
      expect(checkedUnmaskingOfWords(a.p.coordinator, words, a.p.declared, ELEMENTS).weightSum).toBe(weightSum);
      // One survivor's word off by a quarter of the modulus: the words no longer sum to the declared Σw.
      const off = Buffer.from(words[0]!);
      off.writeUInt8(off.readUInt8(off.length - 1) ^ 0x40, off.length - 1);
      expect(() => checkedUnmaskingOfWords(a.p.coordinator, [off, ...words.slice(1)], a.p.declared, ELEMENTS)).toThrow(/WEIGHT_SUM_MISMATCH|unmasked sum of weights/);
      const sharded = new Float32Array(ELEMENTS);
      for (let s = 0; s < k; s++) sharded.set(await shardMean(plan, parts[s]!, bounds[s]!, bounds[s + 1]! - bounds[s]!, weightSum), bounds[s]!);
      expect(Buffer.from(sharded.buffer).equals(Buffer.from(a.whole.buffer))).toBe(true);
      // The same, each shard reading its range of the whole spools in place (base 0).
      const inPlace = new Float32Array(ELEMENTS);
      for (let s = 0; s < k; s++) {
        const source = await unmaskedMean(plan, a.paths, bounds[s]!, weightSum, openFileSource);
        inPlace.set(await source.read(0, bounds[s + 1]! - bounds[s]!), bounds[s]!);
        await source.close();
      }
      expect(Buffer.from(inPlace.buffer).equals(Buffer.from(a.whole.buffer))).toBe(true);
    } finally {
      await a.p.cleanup();
    }
  });

  it('a bad word fails the range check of the shard that holds it, naming its global coordinate; a bad weight word fails the leader’s Σw check', async () => {
    const a = await attempt('bad words', 32, 24, []);
    try {
      const partition = unwrap(partitionModel([{ name: 'delta', shape: [ELEMENTS] }], 2), AggregationError, 'partition');
      const [, middle] = partition.bounds;
      const parts = await partSpools(a, partition.bounds, 4);
      const plan = unmaskPlan(a.p.coordinator);
      const weightSum = checkedWeightSum(a.p.coordinator, a.p.declared, await unmaskWeightWord(plan, parts[1]!, middle!, ELEMENTS, openFileSource));
      // Shard 1's word at global coordinate middle + 17, in the second survivor's part, moved by 2^31.
      const bytes = await readFile(parts[1]![1]!);
      bytes.writeUInt32LE((bytes.readUInt32LE(17 * 4) + 2 ** 31) % 2 ** 32, 17 * 4);
      await writeFile(parts[1]![1]!, bytes);
      const err = await shardMean(plan, parts[1]!, middle!, ELEMENTS - middle!, weightSum).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CoordinatorError);
      expect((err as CoordinatorError).code).toBe('SUM_OUT_OF_RANGE');
      expect((err as CoordinatorError).message).toContain(`coordinate ${middle! + 17} of the unmasked sum`);
      // Shard 0 is untouched and passes.
      expect(await shardMean(plan, parts[0]!, 0, middle!, weightSum)).toEqual(a.whole.subarray(0, middle!));
      // The weight word (the last word of the last shard's part) moved: the leader's Σw check refuses it.
      const last = await readFile(parts[1]![0]!);
      const at = (ELEMENTS - middle!) * 4;
      last.writeUInt32LE((last.readUInt32LE(at) + 2 ** 30) % 2 ** 32, at);
      await writeFile(parts[1]![0]!, last);
      const unmasked = await unmaskWeightWord(plan, parts[1]!, middle!, ELEMENTS, openFileSource);
      expect(() => checkedWeightSum(a.p.coordinator, a.p.declared, unmasked)).toThrow(/WEIGHT_SUM_MISMATCH|unmasked sum of weights/);
    } finally {
      await a.p.cleanup();
    }
  });
});
