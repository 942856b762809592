/**
 * Whole federations of real processes on loopback with the compact wire encodings of plain rounds:
 * bf16 (half the bytes) and int8 blocks (about a quarter). Every round commits with every site and
 * the federated evaluation loss goes down from the initial model's; the int8 sites upload over
 * three parallel streams.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { openSafetensors } from '../../aggregation/index.js';
import { openFileSource } from '../../common/files.js';
import { encodedTensorBytes } from '../../aggregation/index.js';
import { createTestFederation, startCoordinatorProcess, startSiteProcess, waitFor, type Proc, type TestFederation } from '../helpers/federation.js';

describe('plain rounds in the bf16 and int8 wire encodings', () => {
  let fed: TestFederation | undefined;
  const procs: Proc[] = [];
  afterEach(async () => {
    for (const p of procs.splice(0).reverse()) await p.stop();
    await fed?.cleanup();
  });

  for (const encoding of ['bf16', 'int8'] as const) {
    it(`runs three ${encoding} rounds with every site, the loss going down${encoding === 'int8' ? ', over three streams per site' : ''}`, async () => {
      fed = await createTestFederation({ sites: 2, run: { rounds: 3, minSites: 2, encoding, secureAggregation: { enabled: false } } });
      // int8 sites split their delta over three streams: stripes on int8 block boundaries.
      if (encoding === 'int8') for (const s of fed.sites) await fed.patchSiteConfig(s, (c) => ({ ...c, transfer: { parallelStreams: 3, chunkBytes: 8192 } }));
      procs.push(await startCoordinatorProcess(fed));
      for (const s of fed.sites) procs.push(await startSiteProcess(fed, s));
      const admin = fed.admin();
      const rounds = await waitFor('3 committed rounds with their evaluation', async () => {
        const r = await admin.rounds();
        const done = r.rounds.filter((x) => x.outcome === 'committed');
        return done.length >= 3 && done[2]!.hasEval && r.hasInitialEval ? r : undefined;
      }, 120_000);
      const committed = rounds.rounds.filter((r) => r.outcome === 'committed');
      expect(committed.map((r) => Number(r.round))).toEqual([1, 2, 3]);
      for (const r of committed) expect([...r.participants].sort()).toEqual(['site-1', 'site-2']);
      expect(committed[2]!.evalLoss).toBeLessThan(rounds.initialEvalLoss);
      // Exactly the encoded bytes moved up: bf16 half of f32, int8 blocks a little over a quarter.
      const src = await openFileSource(fed.files.initialModel);
      const tensors = (await openSafetensors(src)).tensors;
      await src.close();
      const encoded = tensors.reduce((n, t) => n + encodedTensorBytes(encoding, t.elements), 0);
      const f32 = tensors.reduce((n, t) => n + t.elements * 4, 0);
      expect(Number(committed[0]!.bytesUp)).toBe(2 * encoded);
      expect(encoded / f32).toBeLessThan(encoding === 'bf16' ? 0.51 : 0.27);
    }, 150_000);
  }
});
