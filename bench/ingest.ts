/**
 * `npm run bench -- ingest [--sites N] [--params P] [--shards K] [--dir DIR] [--keep] [--profile DIR] [--json]`
 * (issue 22): N sites (default 8) upload a bf16 delta of P parameters (default 2^29: 1 GiB each)
 * at once, in one plain FedAvg round of separate processes over gRPC and mTLS — first to the
 * coordinator alone (K = 0), then with K aggregator shards (default 2) of their own, to which the
 * sites upload their parts. Figures, both runs on this machine:
 * - `shardReceiveCpuPerGbOverSingle`: the busiest shard's CPU while the uploads ran (the first
 *   site's upload start to the last one's end, as the agents log them), per GB of its 1/K share
 *   (the parts are balanced by bytes), over the coordinator's per GB in the same window at K = 0
 *   (target ≤ 1.1: a shard receives as cheaply);
 * - `leaderCpuPerGbSharded`: the coordinator's CPU in that window at K, per GB the sites uploaded
 *   (target ≤ 0.05: the bytes do not pass through it); the same figures over the whole window
 *   from leaving `open` to `aggregate` (training included) are reported beside them (`…Phase…`);
 * - `ingestK${K}OverK0`: the GB per second of the uploads at K over K = 0, the window from the
 *   first site's upload start to the last one's end as the agents log them (target ≥ 0.95 here:
 *   two cores shared by the senders and receivers cannot show scaling, only that nothing regressed).
 * The sites' stand-in trainer (`bench/fixtures/sleep-trainer.mjs`) writes its local model as global
 * + noise; the initial model is hard-linked into every site's cache, as in `salamandra-2b`.
 */
import { existsSync } from 'node:fs';
import { link, mkdir, mkdtemp, rm, statfs } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { sha256File } from '../common/files.js';
import type { Benchmark } from './registry.js';
import { phaseLine, runBenchRound, sleepTrainerPath, type FederationPaths, type RoundFigures } from './tools/bench-federation.js';
import { blockModel, elementsOf, writeSyntheticModel } from './tools/synthetic-model.js';

interface IngestOptions {
  readonly sites: number;
  readonly params: number;
  readonly shards: number;
  readonly dir: string;
  readonly keep: boolean;
  /** Where the coordinator's and shards' CPU profiles go (`--cpu-prof`), if anywhere. */
  readonly profile: string | undefined;
}

function parse(args: readonly string[]): IngestOptions {
  const o: { -readonly [K in keyof IngestOptions]: IngestOptions[K] } = { sites: 8, params: 2 ** 29, shards: 2, dir: tmpdir(), keep: false, profile: undefined };
  const whole = (name: string, v: string | undefined, min: number, max: number): number => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < min || n > max) throw new Error(`ingest: --${name} takes a whole number from ${min} to ${max}, got ${JSON.stringify(v ?? '')}`);
    return n;
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--sites') o.sites = whole('sites', args[++i], 1, 64);
    else if (a === '--params') o.params = whole('params', args[++i], 4000, 2 ** 33);
    else if (a === '--shards') o.shards = whole('shards', args[++i], 1, 16);
    else if (a === '--dir' && args[i + 1]) o.dir = args[++i]!;
    else if (a === '--keep') o.keep = true;
    else if (a === '--profile' && args[i + 1]) o.profile = args[++i]!;
    else throw new Error(`ingest: unknown option ${a} (known: --sites N, --params P, --shards K, --dir DIR, --keep, --profile DIR)`);
  }
  return o;
}


/** Hard-links the coordinator's imported initial model into every site's cache (no download). */
async function seedSiteCaches(paths: FederationPaths, sha256: string): Promise<void> {
  const stored = join(paths.coordinatorStateDir, 'models', `${sha256}.safetensors`);
  for (let waited = 0; !existsSync(stored); waited++) {
    if (waited > 600) throw new Error(`ingest: the coordinator has not imported the initial model as ${stored}`);
    await sleep(1000);
  }
  for (const work of paths.siteWorkDirs.values()) {
    await mkdir(join(work, 'models'), { recursive: true });
    await link(stored, join(work, 'models', `${sha256}.safetensors`));
  }
}

/** Node's arguments that profile the coordinator and the shards (not the sites) into `dir`/`arm`, if profiling. */
function profileArgs(dir: string | undefined, arm: string): { nodeArgs?: (name: string) => string[] } {
  if (dir === undefined) return {};
  return { nodeArgs: (name) => (name.startsWith('site-') ? [] : ['--cpu-prof', '--cpu-prof-dir', join(dir, arm), '--cpu-prof-name', `${name}.cpuprofile`]) };
}

/** One round of `sites` uploading at once, with `shards` aggregator shards (0: the coordinator alone). */
function round(o: IngestOptions, root: string, modelPath: string, sha256: string, shards: number, log: (l: string) => void): Promise<RoundFigures> {
  const sites = Array.from({ length: o.sites }, (_, i) => `site-${i + 1}`);
  return runBenchRound({
    name: `k${shards}`,
    root,
    sites,
    modelPath,
    aggregators: shards,
    run: {
      minSites: o.sites,
      strategy: { name: 'fedavg', lr: 1 },
      evaluate: false,
      encoding: 'bf16',
      secureAggregation: { enabled: false },
      // The sleep trainer declares 64 samples.
      maxSiteWeight: 64,
      train: { sleep_s: 0, noise: 1e-3 },
      deadlines: { openS: 1800, trainingS: 3600, uploadS: 3600, aggregateS: 3600, commitS: 1800, evalS: 60 },
    },
    site: (c, _site, i) => ({ ...c, runner: { kind: 'command', command: [process.execPath, sleepTrainerPath('ingest')], seed: i + 1, maxRetries: 0, outputDtype: 'BF16' } }),
    beforeSites: (paths) => seedSiteCaches(paths, sha256),
    timeoutS: 3600,
    log,
    ...profileArgs(o.profile, `k${shards}`),
  });
}

/** GB the sites uploaded, and their uploads' window: the first start to the last end. */
function ingest(r: RoundFigures): { gb: number; seconds: number } {
  const gb = r.uploads.reduce((n, u) => n + u.bytes, 0) / 1e9;
  const seconds = (Math.max(...r.uploads.map((u) => u.endMs)) - Math.min(...r.uploads.map((u) => u.startMs))) / 1000;
  return { gb, seconds };
}

const round2 = (x: number): number => Math.round(x * 100) / 100;

export const ingestBench: Benchmark = {
  async run(args, log) {
    const o = parse(args);
    const t0 = Date.now();
    const tensors = blockModel(o.params);
    const params = tensors.reduce((n, t) => n + elementsOf(t), 0);
    // The model (F32), each site's local model (BF16) and the spools (bf16), with room for the checkpoint.
    const needed = params * (4 + o.sites * 2 * 2 + 12);
    const fs = await statfs(o.dir);
    if (fs.bavail * fs.bsize < needed) throw new Error(`ingest: ${((fs.bavail * fs.bsize) / 1e9).toFixed(0)} GB free in ${o.dir}, the benchmark needs about ${(needed / 1e9).toFixed(1)} GB (pass --dir)`);
    const root = await mkdtemp(join(o.dir, 'fedhpc-bench-ingest-'));
    try {
      const modelPath = join(root, 'initial-model.safetensors');
      log(`ingest: ${o.sites} sites × a bf16 delta of ${params.toLocaleString('en')} parameters (${((params * 2) / 2 ** 30).toFixed(2)} GiB each), K = 0 then K = ${o.shards}`);
      await writeSyntheticModel(modelPath, tensors, 'synthetic-ingest', 'F32');
      const sha256 = await sha256File(modelPath);
      const runs: RoundFigures[] = [];
      for (const k of [0, o.shards]) {
        const r = await round(o, root, modelPath, sha256, k, log);
        const onShards = k === 0 || r.shards.length === k;
        if (!onShards) throw new Error(`ingest: the round with ${k} shards saw ${r.shards.length} shard processes; logs in ${r.dir}`);
        const i = ingest(r);
        log(
          `  K = ${k}: ${i.gb.toFixed(2)} GB uploaded in ${i.seconds.toFixed(1)} s (${(i.gb / i.seconds).toFixed(3)} GB/s); coordinator CPU ${r.uploadWindowCpuS.coordinator.toFixed(1)} s while the uploads ran (${r.coordinatorIngestCpuS.toFixed(1)} s from leaving open to aggregate)` +
            (k > 0 ? `; shards' CPU ${r.uploadWindowCpuS.shards.map((x) => x.toFixed(1)).join(', ')} s (${r.shards.map((x) => x.ingestCpuS.toFixed(1)).join(', ')} s), peak RSS ${r.shards.map((x) => (x.peakRssBytes / 1e9).toFixed(2)).join(', ')} GB` : '') +
            `; phases ${phaseLine(r)}`,
        );
        runs.push(r);
        if (!o.keep) await rm(r.dir, { recursive: true, force: true });
      }
      const [alone, sharded] = runs as [RoundFigures, RoundFigures];
      const a = ingest(alone);
      const s = ingest(sharded);
      const singlePerGb = alone.uploadWindowCpuS.coordinator / a.gb;
      const shardPerGb = Math.max(...sharded.uploadWindowCpuS.shards) / (s.gb / o.shards);
      const phaseSinglePerGb = alone.coordinatorIngestCpuS / a.gb;
      const phaseShardPerGb = Math.max(...sharded.shards.map((x) => x.ingestCpuS)) / (s.gb / o.shards);
      const figures = {
        machine: `${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}`,
        sites: o.sites,
        params,
        shards: o.shards,
        gbPerRun: round2(a.gb),
        singleCoordinatorCpuPerGb: round2(singlePerGb),
        shardCpuPerGb: round2(shardPerGb),
        shardReceiveCpuPerGbOverSingle: round2(shardPerGb / singlePerGb),
        leaderCpuPerGbSharded: Math.round((sharded.uploadWindowCpuS.coordinator / s.gb) * 1000) / 1000,
        phaseShardReceiveCpuPerGbOverSingle: round2(phaseShardPerGb / phaseSinglePerGb),
        phaseLeaderCpuPerGbSharded: Math.round((sharded.coordinatorIngestCpuS / s.gb) * 1000) / 1000,
        ingestK0GBps: Math.round((a.gb / a.seconds) * 1000) / 1000,
        [`ingestK${o.shards}GBps`]: Math.round((s.gb / s.seconds) * 1000) / 1000,
        [`ingestK${o.shards}OverK0`]: round2(s.gb / s.seconds / (a.gb / a.seconds)),
        shardPeakRssGB: round2(Math.max(...sharded.shards.map((x) => x.peakRssBytes)) / 1e9),
        seconds: Math.round((Date.now() - t0) / 1000),
      };
      log(
        `ingest: a shard's receive CPU per GB over the coordinator's alone ×${figures.shardReceiveCpuPerGbOverSingle} (target ≤ 1.1); the leader's CPU per GB with shards ${figures.leaderCpuPerGbSharded} (target ≤ 0.05); ingest K = ${o.shards} over K = 0 ×${figures[`ingestK${o.shards}OverK0`]} (target ≥ 0.95)`,
      );
      return figures;
    } finally {
      if (!o.keep) await rm(root, { recursive: true, force: true });
      else log(`kept ${root}`);
    }
  },
};
