/**
 * The agent's masked encoding makes Δ and masks it in small pieces while they are in cache: the
 * native masker block by block in L1 (`maskDelta`, native/mask.c), or, without it, a slice of Δ at
 * a time (site-agent/encode.ts, `maskedFromBytes`). Whatever the chunk size, and so however a
 * chunk falls into blocks or slices, the words must be those of quantizeAndMask over the whole Δ at once: a
 * resumed stripe re-encodes exactly what it sent, and the coordinator's unmasking assumes nothing else.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createSafetensorsWriter, maskDeltaAvailable, memorySink, quantizeAndMask, referenceKernels } from '../../../aggregation/index.js';
import { useNativeKernels } from '../../../aggregation/native.js';
import { loadNativeModule } from '../../../common/native.js';
import { DeltaEncoder } from '../../../site-agent/encode.js';
import { InProcessSecAgg, makeIdentities, pseudoGradient, type Identities } from '../../helpers/secure-protocol.js';
import { seededRandomBytes } from '../secagg/helpers.js';

const SITES = ['site-a', 'site-b', 'site-c', 'site-d'];
/** Values: two whole slices of 128 Ki, a part of a third, and an odd tail. */
const N = 2 * 131_072 + 70_001;
let ids: Identities;
let dir: string;
const attempts: InProcessSecAgg[] = [];
beforeAll(async () => {
  ids = await makeIdentities(SITES);
  dir = await mkdtemp(join(tmpdir(), 'fedhpc-slices-'));
});
afterAll(async () => {
  for (const p of attempts) await p.cleanup();
  await rm(dir, { recursive: true, force: true });
});

async function writeModel(path: string, dtype: 'F32' | 'BF16', values: Float32Array): Promise<Uint8Array> {
  const sink = memorySink();
  const w = await createSafetensorsWriter(sink, [{ name: 'w', dtype, shape: [values.length] }]);
  await w.writeF32('w', values);
  await w.finish();
  const bytes = sink.bytes();
  await writeFile(path, bytes);
  return bytes.subarray(bytes.length - values.length * (dtype === 'F32' ? 4 : 2));
}

/** Makes this process's native kernels those of the module without its masker, so the encoder takes slices of Δ. */
function withoutNativeMasker(): void {
  const loaded = loadNativeModule();
  useNativeKernels(loaded.module === undefined ? loaded : { module: { ...loaded.module, maskDelta: undefined } });
}

const hasMasker = maskDeltaAvailable();
if (!hasMasker) process.stdout.write('skipping the native masker\'s cases of the masked encoding: this process has no maskDelta (AVX-512 and AES-NI)\n');

describe('the masked encoding, by the native masker or a slice of Δ at a time', () => {
  afterEach(() => useNativeKernels(loadNativeModule()));
  for (const [how, setUp] of [['the native masker', undefined], ['slices of Δ', withoutNativeMasker]] as const) {
    for (const bits of [16, 32] as const) {
      for (const [dtype, trainedDtype] of [['BF16', 'BF16'], ['F32', 'F32'], ['BF16', 'F32']] as const) {
        it.skipIf(setUp === undefined && !hasMasker)(`gives the words of the whole Δ masked at once, for chunks of any size, by ${how}: Z_2^${bits}, ${dtype} global and ${trainedDtype} trained models`, async () => {
          setUp?.();
          expect(maskDeltaAvailable()).toBe(setUp === undefined);
          const p = new InProcessSecAgg(ids, { threshold: 3, modulusBits: bits, quantBits: bits === 32 ? 24 : 13, clip: 2e-3, seed: `slices-${bits}-${dtype}-${trainedDtype}` });
          attempts.push(p);
          p.keys();
          p.shares();
          p.deliverShares();
          const session = p.sessions.get('site-c')!;
          const global = pseudoGradient(N, 0.02, 0.06, `global-${dtype}`);
          const trained = global.map((g, i) => g + (i % 11 === 0 ? 5e-3 : Math.sin(i) * 8e-4));
          const [gPath, lPath] = [join(dir, `g-${bits}-${dtype}-${trainedDtype}`), join(dir, `l-${bits}-${dtype}-${trainedDtype}`)];
          const gBytes = await writeModel(gPath, dtype, global);
          const lBytes = await writeModel(lPath, trainedDtype, trained);
          const masked = { session, params: p.params, count: 500, roundingSeed: seededRandomBytes(`rounding-${bits}-${dtype}-${trainedDtype}`)(32) };

          // The reference: Δ of the whole tensors, then quantised, weighed and masked in one call.
          const delta = new Float32Array(N);
          referenceKernels.deltaToF32(delta, lBytes, trainedDtype, gBytes, dtype);
          const expected = quantizeAndMask(delta, { clip: p.params.clip, quantBits: p.params.quantBits, modulusBits: bits }, { ...session.masks(), weight: session.weight(500), roundingSeed: masked.roundingSeed, wordOffset: 0 });

          const tensors = [{ name: 'w', dtype, shape: [N] }];
          const encoder = await DeltaEncoder.open(gPath, lPath, tensors, `secagg${bits}`, masked);
          try {
            // One chunk of all of it (several slices and a tail), chunks that cut slices anywhere, and small ones.
            for (const words of [N, 150_001, 4_096]) {
              const parts: Buffer[] = [];
              for await (const c of encoder.range(0, N * (bits / 8), words * (bits / 8), new AbortController().signal)) parts.push(Buffer.from(c.data));
              const got = Buffer.concat(parts);
              expect(got.length).toBe(expected.byteLength);
              expect(got.equals(Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength)), `${words}-word chunks`).toBe(true);
            }
          } finally {
            await encoder.close();
          }
        });
      }
    }
  }
});
