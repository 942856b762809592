/**
 * `npm run bench -- memory [--sites-low N] [--sites-high M] [--secure] [--json]`: the coordinator's
 * peak RSS over one round of a 1 GiB (F32) model with 2 and with 16 sites uploading at once, as
 * separate processes over gRPC and mTLS. Memory that grows with the number of sites would show as
 * the difference (target: RSS(16) − RSS(2) ≤ 256 MiB); the coordinator's shared in-flight budget
 * and its sliced aggregation are what keep it flat. Sites hold the initial model already (a hard
 * link in their caches, as in `salamandra-2b`) and write BF16 local weights (global + noise) with
 * the stand-in trainer, so the disk holds one model per site and one spool per site.
 */
import { existsSync } from 'node:fs';
import { link, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { sha256File } from '../common/files.js';
import type { Benchmark } from './registry.js';
import { phaseLine, runBenchRound, type FederationPaths } from './tools/bench-federation.js';
import { blockModel, writeSyntheticModel } from './tools/synthetic-model.js';

const PARAMS = 268_435_456; // 1 GiB of F32
const MiB = 1024 * 1024;

function trainerPath(): string {
  const candidates = [new URL('./fixtures/sleep-trainer.mjs', import.meta.url), new URL('../../bench/fixtures/sleep-trainer.mjs', import.meta.url)].map((u) => fileURLToPath(u));
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`memory: sleep-trainer.mjs not found (looked at ${candidates.join(', ')})`);
  return found;
}

/** Hard-links the coordinator's imported initial model into every site's cache, once it exists. */
async function seedSiteCaches(paths: FederationPaths, sha256: string): Promise<void> {
  const stored = join(paths.coordinatorStateDir, 'models', `${sha256}.safetensors`);
  for (let waited = 0; !existsSync(stored); waited++) {
    if (waited > 600) throw new Error(`memory: the coordinator has not imported the initial model as ${stored}`);
    await sleep(1000);
  }
  for (const work of paths.siteWorkDirs.values()) {
    await mkdir(join(work, 'models'), { recursive: true });
    await link(stored, join(work, 'models', `${sha256}.safetensors`));
  }
}

function intArg(args: readonly string[], name: string, fallback: number): number {
  const at = args.indexOf(name);
  if (at < 0) return fallback;
  const n = Number(args[at + 1]);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`memory: ${name} takes a positive integer`);
  return n;
}

export const memory: Benchmark = {
  async run(args, log) {
    const low = intArg(args, '--sites-low', 2);
    const high = intArg(args, '--sites-high', 16);
    const secure = args.includes('--secure');
    const t0 = Date.now();
    const root = await mkdtemp(join(tmpdir(), 'fedhpc-bench-memory-'));
    const figures: Record<string, number | string | boolean> = { machine: `${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}` };
    try {
      const modelPath = join(root, 'initial-model.safetensors');
      await writeSyntheticModel(modelPath, blockModel(PARAMS), 'fedhpc-bench-memory');
      const sha256 = await sha256File(modelPath);
      const peaks = new Map<number, number>();
      for (const n of [low, high]) {
        const sites = Array.from({ length: n }, (_, i) => `site-${String(i + 1).padStart(2, '0')}`);
        log(`memory: ${n} sites × 1 GiB F32 deltas at once, ${secure ? 'secure aggregation' : 'plain f32'}`);
        const r = await runBenchRound({
          name: `sites-${n}`,
          root,
          sites,
          modelPath,
          run: {
            minSites: n,
            strategy: { name: 'fedavg' },
            evaluate: false,
            secureAggregation: secure ? { enabled: true, maxSites: Math.max(high, 2) } : { enabled: false },
            // The sleep trainer declares 64 samples and names no steps or batch size.
            maxSiteWeight: 64,
            train: { sleep_s: 0, noise: 1e-3 },
            deadlines: { openS: 900, keysS: 300, sharesS: 300, trainingS: 1800, uploadS: 1800, unmaskS: 900, aggregateS: 1800, commitS: 900, evalS: 60 },
          },
          site: (c, _site, i) => ({ ...c, runner: { kind: 'command', command: [process.execPath, trainerPath()], seed: i + 1, maxRetries: 0, outputDtype: 'BF16' } }),
          beforeSites: (paths) => seedSiteCaches(paths, sha256),
          timeoutS: 3600,
          log: () => undefined,
        });
        if (r.participants !== n) throw new Error(`memory: the round committed with ${r.participants} of ${n} sites`);
        peaks.set(n, r.coordinatorPeakRssBytes);
        log(`  ${n} sites: coordinator peak RSS ${(r.coordinatorPeakRssBytes / MiB).toFixed(0)} MiB; round ${r.roundS.toFixed(1)} s (${phaseLine(r)})`);
        figures[`rss${n}MiB`] = Math.round(r.coordinatorPeakRssBytes / MiB);
        figures[`round${n}S`] = Math.round(r.roundS * 10) / 10;
        await rm(join(root, `sites-${n}`), { recursive: true, force: true });
      }
      const growth = (peaks.get(high)! - peaks.get(low)!) / MiB;
      figures['rssGrowth16over2MiB'] = Math.round(growth);
      figures['secure'] = secure;
      figures['seconds'] = Math.round((Date.now() - t0) / 1000);
      log(`RSS(${high}) − RSS(${low}) = ${growth.toFixed(0)} MiB (target ≤ 256)${growth <= 256 ? '' : '  ABOVE TARGET'}`);
      return figures;
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  },
};
