/**
 * The Python agent of test/interop/ in plain rounds, in the compact encodings it writes from the
 * page alone (bf16 and int8 blocks, docs/protocol.md "Delta encodings"), beside a TypeScript
 * SiteAgent: each committed update must be the weighted mean of what each site's delta decodes to,
 * coordinates both left at zero must not move, and every receipt must verify (the int8 run evaluates
 * nothing, so the last round's receipts come from the FinishedTask).
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeInt8Blocks, encodeInt8Blocks, f32ToBf16, openSafetensors } from '../../aggregation/index.js';
import { openFileSource } from '../../common/files.js';
import { readStateDirTrail, verifyAudit } from '../../coordinator/audit/index.js';
import type { RoundInfo__Output } from '../../proto/index.js';
import { skipUnless } from '../helpers/components.js';
import { coordinatorStateDir, journalBodies, journalPath } from '../helpers/faults.js';
import { partsSha256 } from '../../common/receipt.js';
import { siteCertFiles } from '../helpers/raw-site.js';
import { waitFor } from '../helpers/federation.js';
import { modelValues } from '../helpers/secure-federation.js';
import { InteropFederation, type PythonAgent } from './harness.js';
import { pythonInteropUnavailable } from './python.js';

const skip = skipUnless('python-interop', pythonInteropUnavailable());
const PY = 'site-2';

/** Element counts of the tensors of a model in the state dir, in file order. */
async function tensorSizes(f: InteropFederation, sha256: string): Promise<number[]> {
  const src = await openFileSource(join(coordinatorStateDir(f.fed), 'models', `${sha256}.safetensors`));
  try {
    return (await openSafetensors(src)).tensors.map((t) => t.elements);
  } finally {
    await src.close();
  }
}

/** What the coordinator reads back from `delta` sent in `encoding`, tensor by tensor. */
function decoded(delta: Float32Array, encoding: 'bf16' | 'int8', sizes: readonly number[]): Float32Array {
  if (encoding === 'bf16') return new Float32Array(Uint32Array.from(f32ToBf16(delta), (b) => b << 16).buffer);
  const out = new Float32Array(delta.length);
  let at = 0;
  for (const n of sizes) {
    out.set(decodeInt8Blocks(encodeInt8Blocks(delta.subarray(at, at + n)), n), at);
    at += n;
  }
  return out;
}

/** The committed model moved by the samples-weighted mean of the decoded deltas (FedAvg, lr 1). */
async function expectPlainMean(f: InteropFederation, info: RoundInfo__Output, encoding: 'bf16' | 'int8', python: ReadonlyMap<string, PythonAgent>): Promise<void> {
  const parent = await modelValues(f.fed, info.parentSha256);
  const model = await modelValues(f.fed, info.modelSha256);
  const sizes = await tensorSizes(f, info.parentSha256);
  const { deltas, samples } = f.deltas(info, python);
  let total = 0;
  const sum = new Float64Array(parent.length);
  const magnitude = new Float64Array(parent.length);
  for (const site of info.participants) {
    const n = samples.get(site)!;
    total += n;
    const d = decoded(deltas.get(site)!, encoding, sizes);
    for (let i = 0; i < d.length; i++) {
      sum[i]! += n * d[i]!;
      magnitude[i]! += n * Math.abs(d[i]!);
    }
  }
  let worst = -Infinity;
  let untouched = 0;
  for (let i = 0; i < sum.length; i++) {
    const m = sum[i]! / total;
    // f32 rounding of the models, and of the f32 terms the kernels add (each weighted delta).
    const bound = (Math.abs(parent[i]!) + Math.abs(m)) * 2 ** -22 + (magnitude[i]! / total) * 2 ** -21;
    worst = Math.max(worst, Math.abs(model[i]! - parent[i]! - m) - bound);
    if (i % 7 === 3) {
      untouched++;
      expect(model[i], `coordinate ${i}, left at zero by every site, moved`).toBe(parent[i]);
    }
  }
  expect(untouched).toBeGreaterThan(0);
  expect(worst, `round ${info.round}: the committed update differs from the weighted mean of ${info.participants.join(', ')}`).toBeLessThanOrEqual(0);
}

describe.skipIf(skip)('the Python site agent in plain rounds', () => {
  let f: InteropFederation | undefined;
  afterEach(async () => {
    await f?.close();
    f = undefined;
  });

  for (const encoding of ['bf16', 'int8'] as const) {
    it(`uploads ${encoding} deltas the coordinator averages exactly as a TypeScript agent's, striped over a small window, and signs its receipts`, async () => {
      // The int8 run evaluates nothing: its last round's receipts are signed on the FinishedTask.
      const run = { rounds: 2, minSites: 2, evaluate: encoding === 'bf16', encoding, secureAggregation: { enabled: false }, strategy: { name: 'fedavg' as const, lr: 1 }, maxSiteWeight: 1000 };
      f = await InteropFederation.start(2, run);
      f.startTsAgent('site-1');
      const python = f.startPython(PY, ['--min-stripe-bytes', String(64 * 1024)]);
      const committed = await f.completed(2);
      for (const info of committed) {
        expect([...info.participants].sort()).toEqual(['site-1', PY]);
        await expectPlainMean(f, info, encoding, new Map([[PY, python]]));
      }
      const uploads = python.events().filter((e) => e.event === 'uploading');
      expect(uploads.map((e) => (e['stripes'] as unknown[]).length > 1)).toEqual([true, true]);
      const ca = new X509Certificate(readFileSync(siteCertFiles(f.fed, PY).ca, 'utf8'));
      const report = verifyAudit(await readStateDirTrail(coordinatorStateDir(f.fed)), { ca: [ca], requireReceipts: true });
      expect(report).toMatchObject({ ok: true, committedRounds: 2, receipts: 4, missingReceipts: [] });
      // The agent says `finished` once its last receipt's call has returned, which may be after the journal has the receipt.
      if (encoding === 'int8') expect(await waitFor('the Python agent finished', () => python.events().find((e) => e.event === 'finished'), 30_000, 100)).toMatchObject({ model_round: 2 });
    }, 90_000);
  }

  it('uploads its bf16 deltas in parts to two aggregator shards, which take them as the coordinator would: the same weighted mean, and the journal names the parts the shards verified; it downloads each global model in parts from the shards', async () => {
    const run = { rounds: 2, minSites: 2, evaluate: false, encoding: 'bf16' as const, secureAggregation: { enabled: false }, strategy: { name: 'fedavg' as const, lr: 1 }, maxSiteWeight: 1000 };
    f = await InteropFederation.start(2, run, { shards: 2 });
    f.startTsAgent('site-1');
    const python = f.startPython(PY, ['--min-stripe-bytes', String(64 * 1024)]);
    const committed = await f.completed(2);
    const records = await journalBodies(journalPath(f.fed), 'round-committed');
    for (const info of committed) {
      expect([...info.participants].sort()).toEqual(['site-1', PY]);
      await expectPlainMean(f, info, 'bf16', new Map([[PY, python]]));
      // Two parts that tile the delta, each verified by its shard under the SHA-256 the agent computed.
      const uploaded = python.events().find((e) => e.event === 'uploaded' && e.round === Number(info.round))!;
      const uploading = python.events().find((e) => e.event === 'uploading' && e.round === Number(info.round))!;
      const bounds = uploading['parts'] as [number, number][];
      expect(bounds).toHaveLength(2);
      expect(bounds[0]![0]).toBe(0);
      expect(bounds[1]![0]).toBe(bounds[0]![1]);
      expect(bounds[1]![1]).toBe(uploading['bytes']);
      const parts = (uploaded['parts'] as { sha256: string }[]).map((p, i) => ({ start: bounds[i]![0], end: bounds[i]![1], sha256: p.sha256 }));
      const participant = records.find((r) => r['round'] === Number(info.round))!['participants'] as { site: string; deltaSha256: string }[];
      expect(participant.find((p) => p.site === PY)?.deltaSha256).toBe(partsSha256(parts));
    }
    // Both sites' receipts of round 1 (version 3) name the delta the round recorded, part by part:
    // the Python agent's its own SHA-256s, the TypeScript agent's those its shards reported.
    const receipts = await waitFor('both receipts of round 1', async () => {
      const r = (await journalBodies(journalPath(f!.fed), 'receipt')).filter((b) => b['round'] === 1);
      return r.length === 2 ? r : undefined;
    }, 30_000, 100);
    const round1 = records.find((r) => r['round'] === 1)!['participants'] as { site: string; deltaSha256: string }[];
    for (const r of receipts) {
      const delta = r['delta'] as { sha256: string; parts: { start: number; end: number; sha256: string }[] };
      expect(delta.parts).toHaveLength(2);
      expect(delta.sha256).toBe(round1.find((p) => p.site === r['site'])!.deltaSha256);
      expect(partsSha256(delta.parts)).toBe(delta.sha256);
    }
    const ca = new X509Certificate(readFileSync(siteCertFiles(f.fed, PY).ca, 'utf8'));
    expect(verifyAudit(await readStateDirTrail(coordinatorStateDir(f.fed)), { ca: [ca] })).toMatchObject({ ok: true });
    // Each global model it trained from came in two parts that tile the file, one from each shard,
    // and hashed to the model's SHA-256 (the agent checks it before it trains).
    const downloads = python.events().filter((e) => e.event === 'downloaded');
    expect(downloads.length).toBeGreaterThanOrEqual(2);
    for (const d of downloads) {
      const bounds = d['parts'] as [number, number][];
      expect(bounds).toHaveLength(2);
      expect([bounds[0]![0], bounds[1]![0], bounds[1]![1]]).toEqual([0, bounds[0]![1], d['bytes']]);
    }
    // Its heartbeats reached the coordinator: the site list shows an activity it reported, not the
    // one Join recorded. The agent sends them only on a Heartbeats stream (version 13).
    const activity = await waitFor('a heartbeat of the Python site', async () => {
      const site = (await f!.fed.admin().sites()).sites.find((s) => s.siteId === PY);
      return site && site.activity !== 'joined' ? site.activity : undefined;
    }, 10_000, 200);
    expect(['idle', 'download', 'training', 'upload']).toContain(activity);
  }, 90_000);
});
