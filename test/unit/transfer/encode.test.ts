/**
 * The site's delta encoder on real safetensors files: any byte range re-encodes to exactly the
 * bytes of the whole encoding (what resuming relies on), bf16 rounds to nearest even, int8 is the
 * fixed block format, and stripes fall on value and block boundaries.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeDeltaFiles, type DeltaFiles } from '../../helpers/delta-files.js';
import { bf16ToF32, createSafetensorsWriter, declaredCount, decodeInt8Blocks, encodeInt8Blocks, f32ToBf16, memorySink } from '../../../aggregation/index.js';
import { isUnitBoundary } from '../../../aggregation/index.js';
import { DeltaEncoder, type MaskedInputs } from '../../../site-agent/encode.js';
import { InProcessSecAgg, makeIdentities } from '../../helpers/secure-protocol.js';
import { planStripes } from '../../../site-agent/transfer.js';

const SHAPES = [[3, 100], [7], [1, 130]] as const;
const tensors = SHAPES.map((shape, k) => ({ name: `t${k}`, dtype: 'F32', shape: [...shape] }));
const n = (k: number): number => SHAPES[k]!.reduce<number>((a, b) => a * b, 1);
const deltaValue = (k: number, i: number): number => Math.fround(Math.sin(k * 31 + i) * 0.01 * (k + 1));

let files: DeltaFiles;
let dir: string;
let globalPath: string;
let localPath: string;

beforeAll(async () => {
  // Global values are small integers, so local − global is exactly the intended delta in f32.
  files = await writeDeltaFiles(SHAPES, (k, i) => (i % 5) - 2, deltaValue);
  ({ dir, globalPath, localPath } = files);
});
afterAll(() => files.remove());

async function collect(enc: DeltaEncoder, start: number, end: number, chunk: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of enc.range(start, end, chunk, new AbortController().signal)) parts.push(c.data);
  return Buffer.concat(parts);
}

/**
 * The masked inputs of one attempt of a 3-site secure round, through keys and shares, with a fixed
 * rounding seed as the agent fixes it per attempt.
 */
async function maskedInputs(modulusBits: 16 | 32): Promise<{ inputs: MaskedInputs; done: () => Promise<void> }> {
  const sites = ['site-a', 'site-b', 'site-c'];
  const p = new InProcessSecAgg(await makeIdentities(sites), { threshold: 2, modulusBits, quantBits: modulusBits === 16 ? 12 : 24, seed: `stripes-${modulusBits}` });
  p.keys();
  p.shares();
  p.deliverShares();
  const inputs = { session: p.sessions.get('site-b')!, params: p.params, count: declaredCount(p.params.weighting, { samples: 500, tokens: 5000 }), roundingSeed: new Uint8Array(32).fill(7) };
  return { inputs, done: () => p.cleanup() };
}

describe('DeltaEncoder', () => {
  for (const encoding of ['f32', 'bf16', 'int8', 'secagg32', 'secagg16'] as const) {
    it(`re-encodes any stripe of a ${encoding} delta to the same bytes as the whole`, async () => {
      const secure = encoding.startsWith('secagg') ? await maskedInputs(encoding === 'secagg16' ? 16 : 32) : undefined;
      const enc = await DeltaEncoder.open(globalPath, localPath, tensors, encoding, secure?.inputs);
      try {
        const whole = await collect(enc, 0, enc.totalBytes, 1 << 20);
        expect(whole.length).toBe(enc.totalBytes);
        for (const stripes of [2, 3, 5]) {
          const plan = planStripes(enc, stripes);
          expect(plan[0]!.start).toBe(0);
          expect(plan[plan.length - 1]!.end).toBe(enc.totalBytes);
          for (const s of plan) {
            expect(isUnitBoundary(enc.segments, s.start)).toBe(true);
            const part = await collect(enc, s.start, s.end, 264);
            expect(part.equals(whole.subarray(s.start, s.end))).toBe(true);
          }
        }
        if (secure) {
          // Masked words are not the delta: every tensor's words plus the weight word, masked.
          const words = [0, 1, 2].reduce((a, k) => a + n(k), 0) + 1;
          expect(enc.totalBytes).toBe(words * (encoding === 'secagg16' ? 2 : 4));
          expect(enc.segments).toHaveLength(tensors.length + 1);
        }
      } finally {
        await enc.close();
        await secure?.done();
      }
    });
  }

  it('encodes bf16 as the upper half of the f32 delta, rounded to nearest even', async () => {
    const enc = await DeltaEncoder.open(globalPath, localPath, tensors, 'bf16');
    try {
      const bytes = await collect(enc, 0, enc.totalBytes, 4096);
      const got = bf16ToF32(new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2));
      const f32 = new Float32Array([deltaValue(0, 1)]);
      const bits = new Uint32Array(f32.buffer)[0]!;
      const rne = (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16;
      expect(new Uint16Array(bytes.buffer, bytes.byteOffset, 2)[1]).toBe(rne);
      for (let i = 0; i < n(0); i++) expect(Math.abs(got[i]! - deltaValue(0, i))).toBeLessThanOrEqual(Math.abs(deltaValue(0, i)) / 128);
    } finally {
      await enc.close();
    }
  });

  it('makes the same bf16, f32 and int8 bytes fused from F32 and BF16 files as from the f32 delta, for every pairing of dtypes', async () => {
    const seeded = (seed: number) => (k: number, i: number) => Math.sin(seed * 1e3 + k * 7919 + i) * (1 + (i % 9)) * 1e-2;
    for (const [gd, ld] of [['F32', 'BF16'], ['BF16', 'BF16'], ['BF16', 'F32']] as const) {
      const g = join(dir, `g-${gd}.safetensors`);
      const l = join(dir, `l-${ld}.safetensors`);
      const writeAs = async (path: string, dtype: 'F32' | 'BF16', f: (k: number, i: number) => number): Promise<Float32Array[]> => {
        const sink = memorySink();
        const w = await createSafetensorsWriter(sink, tensors.map((t) => ({ name: t.name, dtype, shape: t.shape })));
        const held: Float32Array[] = [];
        for (let k = 0; k < tensors.length; k++) {
          const v = Float32Array.from({ length: n(k) }, (_, i) => f(k, i));
          await w.writeF32(`t${k}`, v);
          held.push(dtype === 'F32' ? v : bf16ToF32(f32ToBf16(v)));
        }
        await w.finish();
        await writeFile(path, sink.bytes());
        return held;
      };
      const gv = await writeAs(g, gd, seeded(1));
      const lv = await writeAs(l, ld, (k, i) => seeded(1)(k, i) + seeded(2)(k, i) * 1e-2);
      const deltas = lv.map((t, k) => Float32Array.from(t, (x, i) => x - gv[k]![i]!));
      const wants = {
        bf16: Buffer.concat(deltas.map((d) => Buffer.from(f32ToBf16(d).buffer))),
        f32: Buffer.concat(deltas.map((d) => Buffer.from(d.buffer))),
        int8: Buffer.concat(deltas.map((d) => Buffer.from(encodeInt8Blocks(d)))),
      };
      for (const encoding of ['bf16', 'f32', 'int8'] as const) {
        const enc = await DeltaEncoder.open(g, l, tensors.map((t) => ({ ...t, dtype: gd })), encoding);
        try {
          expect((await collect(enc, 0, enc.totalBytes, 4096)).equals(wants[encoding])).toBe(true);
        } finally {
          await enc.close();
        }
      }
    }
  });

  it('encodes int8 as blocks of 128 values with one f32 scale each, never straddling tensors', async () => {
    const enc = await DeltaEncoder.open(globalPath, localPath, tensors, 'int8');
    try {
      const bytes = await collect(enc, 0, enc.totalBytes, 4096);
      expect(enc.totalBytes).toBe([0, 1, 2].reduce((s, k) => s + Math.ceil(n(k) / 128) * 4 + n(k), 0));
      const t2 = enc.segments[2]!;
      const values = decodeInt8Blocks(bytes.subarray(t2.start, t2.end), n(2));
      const absmax = Math.max(...Array.from({ length: 128 }, (_, i) => Math.abs(deltaValue(2, i))));
      expect(bytes.readFloatLE(t2.start)).toBeCloseTo(absmax / 127, 9);
      for (let i = 0; i < n(2); i++) expect(Math.abs(values[i]! - deltaValue(2, i))).toBeLessThanOrEqual(absmax / 127);
    } finally {
      await enc.close();
    }
  });

  // The header parser's own cases are in test/unit/aggregation/safetensors-header.test.ts; here the
  // data plane: a trained (local) file whose header lies never becomes a delta.
  for (const [lie, code, edit] of [
    ['overlapping offsets', 'SAFETENSORS_OFFSETS_INVALID', (h: Record<string, { data_offsets: number[] }>) => void (h['t1']!.data_offsets[0]! -= 4)],
    ['an offset past the data', 'SAFETENSORS_OFFSETS_INVALID', (h: Record<string, { data_offsets: number[] }>) => void (h['t2']!.data_offsets[1]! += 4)],
    ['an unknown dtype', 'SAFETENSORS_DTYPE_UNSUPPORTED', (h: Record<string, { dtype: string }>) => void (h['t0']!.dtype = 'F8_E4M3')],
    ['a header length past the file', 'SAFETENSORS_TRUNCATED', undefined],
  ] as const) {
    it(`refuses a local model whose header lies (${lie}) with ${code}`, async () => {
      const file = Buffer.from(await readFile(localPath));
      const len = Number(file.readBigUInt64LE(0));
      let out: Buffer;
      if (edit) {
        const header = JSON.parse(file.subarray(8, 8 + len).toString('utf8')) as Record<string, never>;
        (edit as (h: Record<string, never>) => void)(header);
        const json = Buffer.from(JSON.stringify(header).padEnd(len, ' '));
        expect(json.length).toBe(len);
        out = Buffer.concat([file.subarray(0, 8), json, file.subarray(8 + len)]);
      } else {
        out = Buffer.from(file);
        out.writeBigUInt64LE(BigInt(file.length), 0);
      }
      const lying = join(dir, `lying-${code}.safetensors`);
      await writeFile(lying, out);
      await expect(DeltaEncoder.open(globalPath, lying, tensors, 'f32')).rejects.toMatchObject({ name: 'AggregationError', code });
    });
  }

  it('refuses a local model whose tensors differ, and an unknown encoding', async () => {
    await expect(DeltaEncoder.open(globalPath, localPath, [...tensors.slice(0, 2), { name: 'other', dtype: 'F32', shape: [130] }], 'f32')).rejects.toThrow(/other/);
    await expect(DeltaEncoder.open(globalPath, localPath, tensors, 'fp4')).rejects.toMatchObject({ code: 'MODEL_INVALID' });
  });
});
