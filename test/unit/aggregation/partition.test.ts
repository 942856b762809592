/**
 * The partition of a model over aggregator shards (aggregation/partition.ts): Salamandra-2B's real
 * tensor list at K = 1, 2, 4, 8, the refusals, and properties over random shapes. Coverage,
 * balance and alignment are checked against oracles written here from the shapes alone, not
 * against the module's own bookkeeping (`bounds`, `tensors`).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AggregationError,
  type DeltaEncoding,
  INT8_BLOCK,
  type ModelPartition,
  type PartitionOptions,
  checkShardRangesTile,
  deltaSegments,
  encodeInt8Blocks,
  partitionModel,
  segmentsBytes,
  shardByteRanges,
  shardFileRanges,
  unwrap,
} from '../../../aggregation/index.js';

interface Tensor {
  readonly name: string;
  readonly shape: readonly number[];
}

/** Salamandra-2B as REFERENCE.md gives it: hidden 2048, MLP 5440, 24 layers, 16 KV heads, vocab 256,000, untied lm_head. */
function salamandra2b(): Tensor[] {
  const [h, mlp, vocab] = [2048, 5440, 256_000];
  const out: Tensor[] = [{ name: 'model.embed_tokens.weight', shape: [vocab, h] }];
  for (let i = 0; i < 24; i++) {
    const p = `model.layers.${i}.`;
    for (const x of ['q', 'k', 'v', 'o']) out.push({ name: `${p}self_attn.${x}_proj.weight`, shape: [h, h] });
    out.push({ name: `${p}mlp.gate_proj.weight`, shape: [mlp, h] }, { name: `${p}mlp.up_proj.weight`, shape: [mlp, h] });
    out.push({ name: `${p}mlp.down_proj.weight`, shape: [h, mlp] });
    out.push({ name: `${p}input_layernorm.weight`, shape: [h] }, { name: `${p}post_attention_layernorm.weight`, shape: [h] });
  }
  out.push({ name: 'model.norm.weight', shape: [h] }, { name: 'lm_head.weight', shape: [vocab, h] });
  return out;
}

const rowsOf = (t: Tensor): number => (t.shape.length === 0 ? 1 : t.shape[0]!);
const rowValuesOf = (t: Tensor): number => t.shape.slice(1).reduce((a, d) => a * d, 1);
const valuesOf = (t: Tensor): number => rowsOf(t) * rowValuesOf(t);
const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/** The largest stretch of values between two allowed cuts, from the shapes: U of the bound. */
function largestUnit(tensors: readonly Tensor[], align: number): number {
  return Math.max(0, ...tensors.filter((t) => valuesOf(t) > 0).map((t) => Math.min((rowValuesOf(t) * align) / gcd(rowValuesOf(t), align), valuesOf(t))));
}

/** Cuts the model could be split into: Σ ⌈values / unit⌉. */
function unitCount(tensors: readonly Tensor[], align: number): number {
  return tensors.filter((t) => valuesOf(t) > 0).reduce((a, t) => a + Math.ceil(valuesOf(t) / Math.min((rowValuesOf(t) * align) / gcd(rowValuesOf(t), align), valuesOf(t))), 0);
}

/**
 * Checks from the shapes that every row of every tensor is in exactly one part, that a tensor's
 * parts are consecutive row ranges in shard order, a shard's parts in model order, and every cut
 * inside a tensor on a multiple of `align` values. Returns each shard's values.
 */
function checkCoverage(tensors: readonly Tensor[], p: ModelPartition, align: number): number[] {
  const next = tensors.map(() => 0);
  const seen = tensors.map(() => 0);
  const loads = p.shards.map((parts) => {
    let previous = -1;
    let load = 0;
    for (const part of parts) {
      const t = tensors[part.tensor]!;
      expect(part.name, 'a part names its tensor').toBe(t.name);
      expect(part.tensor, "a shard's parts are in model order, each tensor once").toBeGreaterThan(previous);
      previous = part.tensor;
      expect(part.firstRow, `${t.name}: parts are consecutive row ranges in shard order`).toBe(next[part.tensor]);
      const [first, stop] = [part.firstRow * rowValuesOf(t), (part.firstRow + part.rows) * rowValuesOf(t)];
      expect(first % align === 0 && (stop % align === 0 || stop === valuesOf(t)), `${t.name}: cut on a multiple of ${align} values`).toBe(true);
      next[part.tensor]! += part.rows;
      seen[part.tensor]! += 1;
      load += part.rows * rowValuesOf(t);
    }
    return load;
  });
  tensors.forEach((t, i) => {
    expect(next[i], `${t.name}: every row owned`).toBe(rowsOf(t));
    expect(seen[i], `${t.name}: owned by some shard`).toBeGreaterThan(0);
  });
  return loads;
}

/** max_s |L_s − N/K|, in values. */
function imbalance(loads: readonly number[]): number {
  const total = loads.reduce((a, b) => a + b, 0);
  return Math.max(...loads.map((l) => Math.abs(l - total / loads.length)));
}

function partition(tensors: readonly Tensor[], k: number, options?: PartitionOptions): ModelPartition {
  return unwrap(partitionModel(tensors, k, options), AggregationError);
}

/** Every shard's byte ranges, in shard order, for `encoding`. */
function allRanges(p: ModelPartition, encoding: DeltaEncoding): { start: number; end: number }[] {
  return p.shards.flatMap((_, s) => shardByteRanges(p, s, encoding));
}

describe('partitionModel on Salamandra-2B', () => {
  const model = salamandra2b();
  const total = model.reduce((a, t) => a + valuesOf(t), 0);
  const unit = largestUnit(model, INT8_BLOCK);

  it('is the reference model: 219 tensors, 2,253,490,176 values, largest unit 10,880 values (two down_proj rows)', () => {
    expect(model).toHaveLength(219);
    expect(total).toBe(2_253_490_176);
    expect(unit).toBe(10_880);
  });

  it('gives one shard everything at K = 1, each tensor whole', () => {
    const p = partition(model, 1);
    expect(p.shards).toHaveLength(1);
    expect(p.shards[0]).toEqual(model.map((t, tensor) => ({ tensor, name: t.name, firstRow: 0, rows: rowsOf(t) })));
  });

  // The figures are computed here so that the test names print them.
  for (const k of [2, 4, 8]) {
    const p = partition(model, k);
    const loads = p.shards.map((parts) => parts.reduce((a, part) => a + part.rows * rowValuesOf(model[part.tensor]!), 0));
    const off = imbalance(loads);
    const relative = (off / (total / k)).toExponential(2);
    it(`K = ${k}: every row in exactly one shard, loads N/K ± ${off} values (${relative} of N/K; bound ${k === 2 ? unit / 2 : unit})`, () => {
      expect(checkCoverage(model, p, INT8_BLOCK)).toEqual(loads);
      expect(off, `imbalance ${off} values at K = ${k}`).toBeLessThanOrEqual(k === 2 ? unit / 2 : unit);
      expect(p.maxUnitValues).toBe(unit);
      // The embedding alone is 524,288,000 values, 23 % of the model: whole tensors could not balance.
      expect(p.shards.every((parts) => parts.length > 0)).toBe(true);
    });

    it(`K = ${k}: the shards' byte ranges tile the f32, bf16 and int8 deltas, and secagg's up to the weight word`, () => {
      for (const encoding of ['f32', 'bf16', 'int8', 'secagg32', 'secagg16'] as const) {
        const segments = deltaSegments(encoding, model.map(valuesOf));
        const word = encoding.startsWith('secagg') ? segments[segments.length - 1]!.end - segments[segments.length - 1]!.start : 0;
        const ranges = allRanges(p, encoding);
        ranges.forEach((r, i) => expect(r.start, `${encoding}: range ${i} starts where the one before ends`).toBe(i === 0 ? 0 : ranges[i - 1]!.end));
        expect(ranges[ranges.length - 1]!.end).toBe(segmentsBytes(segments) - word);
        expect(checkShardRangesTile(p, encoding)).toEqual({ ok: true, value: { bytes: segmentsBytes(segments) - word } });
      }
      // int8 bytes follow values: 33/32 of them, Salamandra's tensors being whole blocks.
      for (let s = 0; s < k; s++) {
        const bytes = shardByteRanges(p, s, 'int8').reduce((a, r) => a + r.end - r.start, 0);
        expect(bytes).toBe((loads[s]! * 33) / 32);
      }
    });
  }

  it('is deterministic: the same list twice, or with other keys in another order, gives the same partition', () => {
    const shuffled = model.map((t) => ({ dtype: 'BF16', shape: [...t.shape], name: t.name }));
    const a = partition(model, 4);
    expect(partition(model, 4)).toEqual(a);
    expect(JSON.stringify(partition(shuffled, 4))).toBe(JSON.stringify(a));
  });

  it('refuses more shards than the model has units, naming the count', () => {
    const units = unitCount(model, INT8_BLOCK);
    expect(units).toBe(995_088);
    const refused = partitionModel(model, units + 1);
    expect(refused.ok).toBe(false);
    if (refused.ok) return;
    expect(refused.code).toBe('OUT_OF_RANGE');
    expect(refused.issues[0]).toContain(`only ${units} units (1119232 rows`);
  });
});

describe('partitionModel refusals', () => {
  const small: Tensor[] = [
    { name: 'a', shape: [3, 2] },
    { name: 'b', shape: [4] },
  ];

  it.each([0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])('refuses K = %s (OPTIONS_INVALID)', (k) => {
    expect(partitionModel(small, k)).toMatchObject({ ok: false, code: 'OPTIONS_INVALID' });
  });

  it.each([0, 2.5, -128])('refuses alignValues %s (OPTIONS_INVALID)', (alignValues) => {
    expect(partitionModel(small, 1, { alignValues })).toMatchObject({ ok: false, code: 'OPTIONS_INVALID' });
  });

  it('cuts at any row with alignValues 1: K up to the rows of the model, one row each, and no more', () => {
    const even: Tensor[] = [small[0]!, { name: 'b', shape: [2, 2] }];
    const p = partition(even, 5, { alignValues: 1 });
    expect(p.shards.map((parts) => parts.map((x) => `${x.name}${x.firstRow}+${x.rows}`).join())).toEqual(['a0+1', 'a1+1', 'a2+1', 'b0+1', 'b1+1']);
    expect(partitionModel(even, 6, { alignValues: 1 })).toMatchObject({ ok: false, code: 'OUT_OF_RANGE', context: { units: 5, rows: 5 } });
    expect(partitionModel(small, 8, { alignValues: 1 })).toMatchObject({ ok: false, code: 'OUT_OF_RANGE', context: { units: 7, rows: 7 } });
    // Aligned to int8 blocks each of these tensors is one unit.
    expect(partitionModel(small, 3)).toMatchObject({ ok: false, code: 'OUT_OF_RANGE' });
  });

  it('refuses a K at which a shard would own nothing (two boundaries nearest one cut)', () => {
    const lumpy: Tensor[] = [
      { name: 'big', shape: [2, 1000] },
      { name: 'tiny', shape: [1] },
    ];
    // Cuts at 0, 1000, 2000, 2001: s·N/K = 667 and 1334 are both nearest 1000. N/U = 2.001.
    const refused = partitionModel(lumpy, 3, { alignValues: 1 });
    expect(refused).toMatchObject({ ok: false, code: 'OUT_OF_RANGE', context: { shard: 1 } });
    expect(refused.ok ? '' : refused.issues[0]).toContain('every K ≤ 2 is accepted');
    expect(partitionModel(lumpy, 2, { alignValues: 1 }).ok).toBe(true);
  });

  it('refuses tensors without a name, repeated, or with a bad shape (INVALID_ARGUMENT)', () => {
    for (const tensors of [
      [{ name: '', shape: [2] }],
      [small[0]!, small[0]!],
      [{ name: 'x', shape: [2, -1] }],
      [{ name: 'x', shape: [2.5] }],
      [{ name: 'x', shape: [2 ** 30, 2 ** 30, 2 ** 30] }],
    ]) {
      expect(partitionModel(tensors, 1), JSON.stringify(tensors)).toMatchObject({ ok: false, code: 'INVALID_ARGUMENT' });
    }
  });

  it('gives scalars one row and tensors of no values an owner', () => {
    const p = partition(
      [
        { name: 's', shape: [] },
        { name: 'none', shape: [0, 4] },
        { name: 'v', shape: [300] },
        { name: 'last', shape: [5, 0] },
      ],
      2,
    );
    expect(p.shards).toEqual([
      [
        { tensor: 0, name: 's', firstRow: 0, rows: 1 },
        { tensor: 1, name: 'none', firstRow: 0, rows: 0 },
        { tensor: 2, name: 'v', firstRow: 0, rows: 128 },
      ],
      [
        { tensor: 2, name: 'v', firstRow: 128, rows: 172 },
        { tensor: 3, name: 'last', firstRow: 0, rows: 5 },
      ],
    ]);
  });

  it('refuses byte ranges of a shard it does not have, and int8 ranges of a cut inside a block', () => {
    const p = partition(small, 2, { alignValues: 1 });
    expect(() => shardByteRanges(p, 2, 'f32')).toThrow(expect.objectContaining({ code: 'OUT_OF_RANGE' }));
    expect(() => shardByteRanges(p, 0, 'int8')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(checkShardRangesTile(p, 'int8')).toMatchObject({ ok: false, code: 'INVALID_ARGUMENT' });
    expect(checkShardRangesTile(p, 'f32')).toEqual({ ok: true, value: { bytes: 40 } });
  });

  it('finds a gap, an overlap or a renamed tensor in a partition read back', () => {
    const p = partition(salamandra2b(), 4);
    const tamper = (s: number, i: number, change: object): ModelPartition => ({
      ...p,
      shards: p.shards.map((parts, at) => (at === s ? parts.map((x, j) => (j === i ? { ...x, ...change } : x)) : parts)),
    });
    const first = p.shards[1]![0]!;
    expect(checkShardRangesTile(tamper(1, 0, { firstRow: first.firstRow + 1, rows: first.rows - 1 }), 'f32')).toMatchObject({ ok: false, code: 'INVALID_ARGUMENT' });
    expect(checkShardRangesTile(tamper(1, 0, { firstRow: first.firstRow - 2, rows: first.rows + 2 }), 'bf16')).toMatchObject({ ok: false, code: 'INVALID_ARGUMENT' });
    expect(checkShardRangesTile(tamper(1, 0, { name: 'other' }), 'f32')).toMatchObject({ ok: false, code: 'INVALID_ARGUMENT' });
    const lastParts = p.shards[3]!;
    expect(checkShardRangesTile({ ...p, shards: [...p.shards.slice(0, 3), lastParts.slice(0, -1)] }, 'f32')).toMatchObject({ ok: false, code: 'INVALID_ARGUMENT' });
  });
});

describe('partitionModel properties', () => {
  const dim = fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 12 }) }, { weight: 2, arbitrary: fc.integer({ min: 100, max: 700 }) }, { weight: 1, arbitrary: fc.constant(0) });
  const model = fc
    .array(fc.array(dim, { maxLength: 3 }), { minLength: 1, maxLength: 10 })
    .map((shapes) => shapes.map((shape, i): Tensor => ({ name: `t${i}`, shape })));
  const align = fc.constantFrom(1, 2, 3, 64, 128, 256);
  // Small enough to encode: rank ≤ 2, at most 6 tensors.
  const smallDim = fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 1, max: 12 }) }, { weight: 2, arbitrary: fc.integer({ min: 100, max: 260 }) });
  const smallModel = fc
    .array(fc.array(smallDim, { maxLength: 2 }), { minLength: 1, maxLength: 6 })
    .map((shapes) => shapes.map((shape, i): Tensor => ({ name: `t${i}`, shape })));

  it('covers every row once in consecutive parts, N/K ± U values per shard, each boundary within U/2 of s·N/K', () => {
    fc.assert(
      fc.property(model, fc.integer({ min: 1, max: 12 }), align, (tensors, k, a) => {
        const result = partitionModel(tensors, k, { alignValues: a });
        const total = tensors.reduce((s, t) => s + valuesOf(t), 0);
        const u = largestUnit(tensors, a);
        if (!result.ok) {
          expect(result.code).toBe('OUT_OF_RANGE');
          // Refused only for too many shards, or where a unit is not small against N/K.
          expect(k > unitCount(tensors, a) || u * k >= total).toBe(true);
          return;
        }
        const loads = checkCoverage(tensors, result.value, a);
        expect(loads.every((l) => l > 0)).toBe(true);
        for (const l of loads) expect(Math.abs(l * k - total)).toBeLessThanOrEqual(u * k);
        let b = 0;
        loads.forEach((l, s) => {
          expect(Math.abs(2 * k * b - 2 * s * total), `boundary ${s}`).toBeLessThanOrEqual(u * k);
          b += l;
        });
        expect(partitionModel(tensors, k, { alignValues: a })).toEqual(result);
      }),
      { numRuns: 300 },
    );
  });

  it('lets each shard encode its parts alone: their bytes are its slice of the whole delta, in f32, bf16 and int8', () => {
    fc.assert(
      fc.property(smallModel, fc.integer({ min: 1, max: 6 }), fc.integer(), (tensors, k, seed) => {
        const result = partitionModel(tensors, k);
        if (!result.ok) return;
        const p = result.value;
        let state = seed >>> 0;
        const values = tensors.map((t) =>
          Float32Array.from({ length: valuesOf(t) }, () => {
            state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
            return (state / 2 ** 32 - 0.5) * 0.01;
          }),
        );
        const encoders: Record<'f32' | 'bf16' | 'int8', (v: Float32Array) => Uint8Array> = {
          f32: (v) => new Uint8Array(v.slice().buffer),
          bf16: (v) => {
            const u = new Uint32Array(v.slice().buffer);
            const out = new Uint8Array(v.length * 2);
            u.forEach((x, i) => out.set([(x >>> 16) & 0xff, x >>> 24], i * 2));
            return out;
          },
          int8: encodeInt8Blocks,
        };
        for (const [encoding, encode] of Object.entries(encoders) as ['f32' | 'bf16' | 'int8', (v: Float32Array) => Uint8Array][]) {
          const whole = Buffer.concat(values.map(encode));
          expect(checkShardRangesTile(p, encoding)).toEqual({ ok: true, value: { bytes: whole.length } });
          p.shards.forEach((parts, s) => {
            const ranges = shardByteRanges(p, s, encoding);
            parts.forEach((part, i) => {
              const w = rowValuesOf(tensors[part.tensor]!);
              const alone = encode(values[part.tensor]!.subarray(part.firstRow * w, (part.firstRow + part.rows) * w));
              expect(Buffer.from(alone).equals(whole.subarray(ranges[i]!.start, ranges[i]!.end)), `${encoding} shard ${s} part ${i}`).toBe(true);
            });
          });
        }
      }),
      { numRuns: 40 },
    );
  });

  it("gives each shard the bytes of a model file that hold its parts, whatever each tensor's dtype: the ranges tile the file, the header the first shard's", () => {
    fc.assert(
      fc.property(model, fc.integer({ min: 1, max: 6 }), align, fc.integer({ min: 8, max: 400 }), fc.array(fc.constantFrom(1, 2, 4), { minLength: 10, maxLength: 10 }), (tensors, k, a, header, sizes) => {
        const made = partitionModel(tensors, k, { alignValues: a });
        // Models that cannot be cut into k are the refusal tests' business.
        fc.pre(made.ok);
        const p = made.value;
        let at = header;
        const file = tensors.map((t, i) => {
          const f = { byteOffset: at, valueBytes: sizes[i]! };
          at += valuesOf(t) * f.valueBytes;
          return f;
        });
        const ranges = shardFileRanges(p, file, at);
        expect(ranges[0]!.start).toBe(0);
        expect(ranges.at(-1)!.end).toBe(at);
        ranges.forEach((r, s) => {
          if (s > 0) expect(r.start, `shard ${s} starts where shard ${s - 1} ends`).toBe(ranges[s - 1]!.end);
          // The oracle, from the parts alone: the bytes of each part's rows in its tensor's dtype.
          for (const part of p.shards[s]!) {
            const w = rowValuesOf(tensors[part.tensor]!) * file[part.tensor]!.valueBytes;
            const [first, stop] = [file[part.tensor]!.byteOffset + part.firstRow * w, file[part.tensor]!.byteOffset + (part.firstRow + part.rows) * w];
            if (stop > first) expect(first >= r.start && stop <= r.end, `shard ${s}'s part of ${part.name} lies in its range`).toBe(true);
          }
        });
      }),
      { numRuns: 200 },
    );
  });

  it('refuses a file whose tensors are not the partition\'s, or whose data is not back to back', () => {
    const tensors = [{ name: 'a', shape: [4, 3] }, { name: 'b', shape: [5] }];
    const p = partition(tensors, 2, { alignValues: 1 });
    expect(() => shardFileRanges(p, [{ byteOffset: 100, valueBytes: 4 }], 200)).toThrow(/2 tensors|1 tensors/);
    expect(() => shardFileRanges(p, [{ byteOffset: 100, valueBytes: 4 }, { byteOffset: 152, valueBytes: 2 }], 162)).toThrow(/not where the next data starts/);
    expect(() => shardFileRanges(p, [{ byteOffset: 100, valueBytes: 4 }, { byteOffset: 148, valueBytes: 2 }], 170)).toThrow(/not where the next data starts/);
    expect(shardFileRanges(p, [{ byteOffset: 100, valueBytes: 4 }, { byteOffset: 148, valueBytes: 2 }], 158)).toEqual([{ start: 0, end: 100 + p.bounds[1]! * 4 }, { start: 100 + p.bounds[1]! * 4, end: 158 }]);
  });
});
