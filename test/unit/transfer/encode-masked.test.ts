/**
 * The site's masked delta encoder against the composition it replaced: Δ = local − global,
 * `quantize` with the upload's weight, `maskVector` with the attempt's masks, and the weight word
 * (quantize of w with clip 1 and weight 1, masked at word offset `elements`) at the end — the
 * fused encoder must send exactly those bytes, in any chunking.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeDeltaFiles, type DeltaFiles } from '../../helpers/delta-files.js';
import { declaredCount, maskVector, quantize } from '../../../aggregation/index.js';
import { DeltaEncoder } from '../../../site-agent/encode.js';
import { InProcessSecAgg, makeIdentities } from '../../helpers/secure-protocol.js';

// Two tensors, one longer than a mask slice (32 Ki words) and not a multiple of 8 words.
const SHAPES = [[3, 11_001], [257]] as const;
const tensors = SHAPES.map((shape, k) => ({ name: `t${k}`, dtype: 'F32', shape: [...shape] }));
const n = (k: number): number => SHAPES[k]!.reduce<number>((a, b) => a * b, 1);
const deltaValue = (k: number, i: number): number => Math.fround(Math.sin(k * 31 + i) * 0.01 * (k + 1) * (i % 97 === 0 ? 300 : 1));

const globalValue = (i: number): number => (i % 5) - 2;

let files: DeltaFiles;
let globalPath: string;
let localPath: string;

beforeAll(async () => {
  files = await writeDeltaFiles(SHAPES, (k, i) => globalValue(i), deltaValue);
  ({ globalPath, localPath } = files);
});
afterAll(() => files.remove());

describe('DeltaEncoder, masked', () => {
  for (const modulusBits of [32, 16] as const) {
    it(`sends the words of quantize + maskVector and the masked weight word (secagg${modulusBits}), whatever the chunk size`, async () => {
      const sites = ['site-a', 'site-b', 'site-c', 'site-d'];
      const p = new InProcessSecAgg(await makeIdentities(sites), { threshold: 2, modulusBits, quantBits: modulusBits === 16 ? 12 : 24, seed: `fused-${modulusBits}` });
      try {
        p.keys();
        p.shares();
        p.deliverShares();
        const session = p.sessions.get('site-b')!;
        const inputs = { session, params: p.params, count: declaredCount(p.params.weighting, { samples: 500, tokens: 5000 }), roundingSeed: new Uint8Array(32).fill(9) };
        const weight = session.weight(inputs.count);
        const q = { clip: p.params.clip, quantBits: p.params.quantBits, modulusBits };
        // The reference: the whole Δ quantized and masked in one piece, then the weight word.
        const delta = Float32Array.from(tensors.flatMap((_, k) => Array.from({ length: n(k) }, (_v, i) => Math.fround(Math.fround(globalValue(i) + deltaValue(k, i)) - globalValue(i)))));
        const masks = session.masks();
        const words = maskVector(quantize(delta, q, { weight, roundingSeed: inputs.roundingSeed }), masks);
        const weightWord = maskVector(quantize(new Float32Array([weight]), { ...q, clip: 1 }, { wordOffset: delta.length, roundingSeed: inputs.roundingSeed }), { ...masks, wordOffset: delta.length });
        const expected = Buffer.concat([Buffer.from(words.buffer, words.byteOffset, words.byteLength), Buffer.from(weightWord.buffer, weightWord.byteOffset, weightWord.byteLength)]);

        const enc = await DeltaEncoder.open(globalPath, localPath, tensors, `secagg${modulusBits}`, inputs);
        try {
          for (const chunk of [1 << 20, 40_004, 264]) {
            const parts: Buffer[] = [];
            for await (const c of enc.range(0, enc.totalBytes, chunk, new AbortController().signal)) parts.push(c.data);
            const got = Buffer.concat(parts);
            expect(got.length).toBe(expected.length);
            expect(got.equals(expected)).toBe(true);
          }
        } finally {
          await enc.close();
        }
      } finally {
        await p.cleanup();
      }
    });
  }
});
