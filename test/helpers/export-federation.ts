/**
 * A short real federation for the export tests: a coordinator in this process, real site agents
 * with a stand-in trainer that adds a small fixed Δ to whatever model it gets (any tensor names),
 * so a run commits checkpoints of a Llama-shaped model (the tiny config torch_shard.py trains) or
 * of the builtin character model in seconds, without PyTorch.
 */
import { createHash } from 'node:crypto';
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createSafetensorsWriter, openSafetensors } from '../../aggregation/index.js';
import { openFileSource } from '../../common/files.js';
import type { CoordinatorOptions } from '../../coordinator/index.js';
import { loadSiteConfig, SiteAgent } from '../../site-agent/index.js';
import type { EvalResult, Runner, TrainRequest, TrainResult } from '../../site-agent/runners/runner.js';
import { createTestFederation, startCoordinatorInProcess, waitForCommitted } from './federation.js';
import { testLogger } from './logger.js';

/** Writes `tensors` (name → shape) as safetensors (F32 unless `dtype`) with seeded values in [-0.05, 0.05]. */
export async function writeSeededModel(path: string, tensors: ReadonlyMap<string, readonly number[]>, seed: number, dtype: 'F32' | 'BF16' = 'F32'): Promise<void> {
  const h = await open(path, 'w');
  try {
    const sink = { write: async (b: Uint8Array): Promise<void> => void (await h.write(b)) };
    const w = await createSafetensorsWriter(sink, [...tensors].map(([name, shape]) => ({ name, dtype, shape })));
    let x = seed >>> 0;
    for (const [name, shape] of tensors) {
      const v = new Float32Array(shape.reduce((a, d) => a * d, 1));
      for (let i = 0; i < v.length; i++) {
        x = (Math.imul(x, 1664525) + 1013904223) >>> 0; // an LCG: the same bytes everywhere
        v[i] = (x / 2 ** 32 - 0.5) * 0.1;
      }
      await w.writeF32(name, v);
    }
    await w.finish();
  } finally {
    await h.close();
  }
}

/** A stand-in trainer: local = global + a Δ fixed by site, round and coordinate; every tensor F32. */
class FixedDeltaRunner implements Runner {
  readonly kind = 'fixed-delta';
  constructor(private readonly k: number) {}

  async train(r: TrainRequest): Promise<TrainResult> {
    const src = await openFileSource(r.globalPath);
    const outPath = join(r.roundDir, 'out', 'model.safetensors');
    const h = await open(outPath, 'w');
    try {
      const file = await openSafetensors(src);
      const sink = { write: async (b: Uint8Array): Promise<void> => void (await h.write(b)) };
      const w = await createSafetensorsWriter(sink, file.tensors.map((t) => ({ name: t.name, dtype: 'F32' as const, shape: t.shape })));
      for (const t of file.tensors) {
        const v = await file.readF32(t.name, 0, t.elements);
        for (let i = 0; i < v.length; i++) v[i] = Math.fround(v[i]! + (((i * this.k + 3 * r.round) % 13) - 6) * 1e-3);
        await w.writeF32(t.name, v);
      }
      await w.finish();
    } finally {
      await h.close();
      await src.close();
    }
    r.onProgress({ step: 4, steps: 4, loss: 1.5 });
    const now = Date.now();
    const manifest = createHash('sha256').update(`fixed-delta:site-${this.k}:${r.round}`).digest('hex');
    return { outPath, samples: 100 + this.k, tokens: 800, steps: 4, trainLoss: 1.5, dataManifestSha256: manifest, trainStartedMs: now - 5, trainFinishedMs: now };
  }

  evaluate(): Promise<EvalResult> {
    return Promise.resolve({ loss: 2, samples: 20 });
  }
}

export interface ExportRunOptions {
  /** Writes the initial model at the path given; absent: the builtin character model the federation files hold. */
  readonly initialModel?: (path: string) => Promise<void>;
  readonly rounds: number;
  readonly run?: Partial<CoordinatorOptions['run']>;
  readonly retention?: { keepLast: number; keepEvery: number };
}

/** Runs a two-site federation to `rounds` committed rounds; returns its state dir (cleanup: `cleanup()`). */
export async function runExportFederation(o: ExportRunOptions): Promise<{ stateDir: string; dir: string; cleanup: () => Promise<void> }> {
  const fed = await createTestFederation({
    sites: 2,
    run: { rounds: o.rounds, minSites: 2, evaluate: false, strategy: { name: 'fedavg', lr: 1 }, ...o.run },
  });
  try {
    if (o.initialModel) await o.initialModel(fed.files.initialModel);
    if (o.retention) await fed.patchCoordinatorConfig((c) => ({ ...c, retention: o.retention }));
    const coordinator = await startCoordinatorInProcess(fed);
    const lifetime = new AbortController();
    const agents = fed.sites.map((site, i) => {
      const config = loadSiteConfig(fed.files.siteConfigs.get(site)!);
      return new SiteAgent({ config, runner: new FixedDeltaRunner(i + 1), logger: testLogger({ level: 'info' }).logger, random: () => 0.5 }).run(lifetime.signal);
    });
    try {
      await waitForCommitted(fed.admin(), o.rounds, 60_000);
    } finally {
      lifetime.abort();
      await Promise.all(agents);
      await coordinator.stop();
    }
    return { stateDir: join(fed.dir, 'coordinator', 'state'), dir: fed.dir, cleanup: () => fed.cleanup() };
  } catch (e) {
    await fed.cleanup();
    throw e;
  }
}

/** Writes `text` to `path` and returns its SHA-256 (a pinned file). */
export async function writePinned(path: string, text: string): Promise<string> {
  await writeFile(path, text);
  return createHash('sha256').update(text).digest('hex');
}
