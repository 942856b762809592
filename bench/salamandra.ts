/**
 * `npm run bench -- salamandra-2b [--dir DIR] [--only plain,secure] [--keep] [--profile DIR] [--model-dtype BF16|F32] [--shards K] [--json]`:
 * one full DiLoCo round of a synthetic model with Salamandra-2B's real tensor names and shapes
 * (2,253,490,176 parameters, BF16 as Salamandra's checkpoints are; `--model-dtype F32` for the
 * F32 model the figures before session 11 used) across 4 sites on this machine, as separate processes over gRPC and
 * mTLS — once with bf16 deltas (secure aggregation off) and once with secure aggregation on
 * (masked fixed point in Z_2^16: 4 sites × 2^14 levels fit, half the bytes of Z_2^32). Reports the
 * round time, the time in each phase, the coordinator's peak RSS (target ≤ 12 GB) and the CPU
 * each byte costs (issue 18): `salamandraCoordinatorCpuPerGb`, the coordinator's CPU from leaving
 * `open` to `aggregate` ÷ the GB it took in (target ≤ 3), and `salamandraSiteCpuPerGb`, the
 * busiest agent's own CPU over the round ÷ the GB it sent (target ≤ 4), with their `…Secure…`
 * counterparts and the secure ÷ plain ratios (target ≤ 1.3). `--params N` runs the same round on
 * a block model of N parameters instead (a quick profile of the same path; not the figure).
 * `--shards K` (issue 22) runs each kind twice, the coordinator alone and then with `localShards: K`
 * (its own shard processes, provisioned to serve sites: they take the parts and aggregate), and reports the round time of the second over the first
 * (target ≤ 1.05 here) and each process's peak RSS (target ≤ 0.5 GB). Not part of CI: it needs
 * about 65 GB of free disk and a quarter of an hour (twice that with `--shards`).
 *
 * Disk is the constraint, so the sites do not download what they already hold: once the
 * coordinator has imported the initial model into its store, each site's model cache gets a hard
 * link to that very file (the bytes a download would have verified), and the sites' stand-in
 * trainer (`bench/fixtures/sleep-trainer.mjs`, no sleep) streams its local weights straight to
 * BF16 files: global + uniform noise of amplitude 1e-3 (a pseudo-gradient of RMS ≈ 6e-4, as a real
 * Salamandra-2B shard's is ≈ 5e-4).
 */
import { existsSync } from 'node:fs';
import { link, mkdir, mkdtemp, readFile, rm, statfs } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { sha256File } from '../common/files.js';
import type { Benchmark } from './registry.js';
import { phaseLine, runBenchRound, sleepTrainerPath, type FederationPaths, type RoundFigures } from './tools/bench-federation.js';
import { blockModel, elementsOf, salamandra2bModel, writeSyntheticModel } from './tools/synthetic-model.js';

const SITES = ['bsc', 'cineca', 'julich', 'lumi'] as const;
const NEEDED_BYTES = 65e9;
const SALAMANDRA_PARAMS = 2_253_490_176;
const KINDS = ['plain', 'secure'] as const;
type Kind = (typeof KINDS)[number];

function parse(args: readonly string[]): { dir: string; only: Set<Kind>; keep: boolean; profile: string | undefined; params: number | undefined; dtype: 'BF16' | 'F32'; shards: number } {
  let dir = tmpdir();
  let shards = 0;
  let dtype: 'BF16' | 'F32' = 'BF16';
  let profile: string | undefined;
  let params: number | undefined;
  let only = new Set<Kind>(KINDS);
  let keep = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--dir' && args[i + 1]) dir = args[++i]!;
    else if (a === '--only' && args[i + 1]) {
      const names = args[++i]!.split(',');
      if (names.some((n) => !(KINDS as readonly string[]).includes(n))) throw new Error(`salamandra-2b: --only takes ${KINDS.join(',')}`);
      only = new Set(names as Kind[]);
    } else if (a === '--keep') keep = true;
    else if (a === '--profile' && args[i + 1]) profile = args[++i]!;
    else if (a === '--model-dtype') {
      const d = args[++i];
      if (d !== 'BF16' && d !== 'F32') throw new Error(`salamandra-2b: --model-dtype takes BF16 or F32, got ${JSON.stringify(d ?? '')}`);
      dtype = d;
    }
    else if (a === '--shards') {
      shards = Number(args[++i]);
      if (!Number.isSafeInteger(shards) || shards < 1 || shards > 16) throw new Error('salamandra-2b: --shards takes a whole number from 1 to 16');
    } else if (a === '--params' && args[i + 1]) {
      params = Number(args[++i]);
      if (!Number.isSafeInteger(params) || params < 4000) throw new Error('salamandra-2b: --params takes a whole number ≥ 4000');
    } else throw new Error(`salamandra-2b: unknown option ${a} (known: --dir DIR, --only plain,secure, --keep, --profile DIR, --params N, --model-dtype BF16|F32, --shards K)`);
  }
  return { dir, only, keep, profile, params, dtype, shards };
}


/**
 * Waits for the coordinator's imported copy of the initial model, hard-links it into every site's
 * cache, and removes the benchmark's own copy (the next round links it back from this store):
 * a model's size less on disk while the round runs. Returns the store's copy.
 */
async function seedSiteCaches(paths: FederationPaths, sha256: string, modelPath: string): Promise<string> {
  const stored = join(paths.coordinatorStateDir, 'models', `${sha256}.safetensors`);
  for (let waited = 0; !existsSync(stored); waited++) {
    if (waited > 900) throw new Error(`salamandra-2b: the coordinator has not imported the initial model as ${stored}`);
    await sleep(1000);
  }
  for (const work of paths.siteWorkDirs.values()) {
    await mkdir(join(work, 'models'), { recursive: true });
    await link(stored, join(work, 'models', `${sha256}.safetensors`));
  }
  await rm(modelPath);
  return stored;
}

async function run(kind: Kind, root: string, modelPath: string, sha256: string, profile: string | undefined, log: (l: string) => void, shards = 0): Promise<RoundFigures> {
  const secure = kind === 'secure';
  let stored: string | undefined;
  try {
    return await runBenchRound({
      name: shards > 0 ? `${kind}-k${shards}` : kind,
      ...(shards > 0 ? { localShards: shards } : {}),
      root,
      sites: SITES,
      modelPath,
      run: {
        minSites: SITES.length,
        strategy: { name: 'diloco', lr: 0.7, momentum: 0.9 },
        evaluate: false,
        encoding: secure ? 'f32' : 'bf16',
        secureAggregation: secure ? { enabled: true, modulusBits: 16, quantBits: 14, clip: 2e-3, maxSites: SITES.length } : { enabled: false },
        // The sleep trainer declares 64 samples and names no steps or batch size.
        maxSiteWeight: 64,
        train: { sleep_s: 0, noise: 1e-3 },
        deadlines: { openS: 1800, keysS: 600, sharesS: 600, trainingS: 3600, uploadS: 3600, unmaskS: 1800, aggregateS: 3600, commitS: 1800, evalS: 60 },
      },
      site: (c, _site, i) => ({ ...c, runner: { kind: 'command', command: [process.execPath, sleepTrainerPath('salamandra-2b')], seed: i + 1, maxRetries: 0, outputDtype: 'BF16' } }),
      beforeSites: async (paths) => void (stored = await seedSiteCaches(paths, sha256, modelPath)),
      timeoutS: 3600,
      // `--profile DIR`: V8 CPU profiles of the coordinator and every agent, under DIR/<kind>/.
      ...(profile ? { nodeArgs: () => ['--cpu-prof', `--cpu-prof-dir=${join(profile, kind)}`] } : {}),
      log,
    });
  } finally {
    if (stored !== undefined && !existsSync(modelPath)) await link(stored, modelPath);
  }
}

/**
 * The same round with the coordinator's `localShards: K` (issue 22): its round time over the
 * coordinator alone's (`alone`), and the peak RSS of the coordinator and of each shard process.
 */
async function withShards(
  kind: Kind,
  shards: number,
  alone: RoundFigures,
  o: { readonly root: string; readonly modelPath: string; readonly sha256: string; readonly profile: string | undefined; readonly keep: boolean; readonly log: (l: string) => void },
): Promise<Record<string, number | string>> {
  const r = await run(kind, o.root, o.modelPath, o.sha256, o.profile, o.log, shards);
  const onShards = (await readFile(join(r.dir, 'logs', 'coordinator.log'), 'utf8')).includes('"msg":"aggregated on the shards"');
  if (!onShards || r.shards.length !== shards) throw new Error(`salamandra-2b: the ${kind} round with ${shards} local shards did not aggregate on them (${r.shards.length} shard processes seen); logs in ${r.dir}`);
  const cap = kind === 'plain' ? '' : 'Secure';
  const gb = (b: number): number => Math.round(b / 1e7) / 100;
  const aggregateS = (f: RoundFigures): number => f.phases.find(([p]) => p === 'aggregate')?.[1] ?? Number.NaN;
  o.log(
    `  ${kind}, ${shards} local shards: round ${r.roundS.toFixed(1)} s (alone ${alone.roundS.toFixed(1)} s, ×${(r.roundS / alone.roundS).toFixed(2)}; target ≤ 1.05); aggregate ${aggregateS(r).toFixed(1)} s (alone ${aggregateS(alone).toFixed(1)} s); ` +
      `peak RSS coordinator ${gb(r.coordinatorPeakRssBytes)} GB, shards ${r.shards.map((s) => gb(s.peakRssBytes)).join(', ')} GB (target ≤ 0.5); shard CPU s ${r.shards.map((s) => s.cpuS.toFixed(1)).join(', ')}`,
  );
  if (!o.keep) await rm(r.dir, { recursive: true, force: true });
  return {
    [`salamandra${cap}ShardsRoundS`]: Math.round(r.roundS * 10) / 10,
    [`salamandra${cap}ShardsOverAloneRoundS`]: Math.round((r.roundS / alone.roundS) * 100) / 100,
    [`salamandra${cap}ShardsAggregateS`]: Math.round(aggregateS(r) * 10) / 10,
    [`salamandra${cap}AloneAggregateS`]: Math.round(aggregateS(alone) * 10) / 10,
    [`salamandra${cap}ShardsCoordinatorPeakRssGB`]: gb(r.coordinatorPeakRssBytes),
    [`salamandra${cap}ShardPeakRssGB`]: Math.max(...r.shards.map((s) => gb(s.peakRssBytes))),
    [`salamandra${cap}ShardCpuS`]: r.shards.map((s) => s.cpuS.toFixed(1)).join(', '),
    [`salamandra${cap}ShardsPhases`]: phaseLine(r),
  };
}

export const salamandra2b: Benchmark = {
  async run(args, log) {
    const o = parse(args);
    const t0 = Date.now();
    const fs = await statfs(o.dir);
    const free = fs.bavail * fs.bsize;
    const tensors = o.params === undefined ? salamandra2bModel() : blockModel(o.params);
    const needed = NEEDED_BYTES * (tensors.reduce((a, t) => a + elementsOf(t), 0) / SALAMANDRA_PARAMS);
    if (free < needed) throw new Error(`salamandra-2b: ${(free / 1e9).toFixed(0)} GB free in ${o.dir}, the benchmark needs about ${(needed / 1e9).toFixed(1)} GB (pass --dir)`);
    const root = await mkdtemp(join(o.dir, 'fedhpc-bench-salamandra-'));
    const figures: Record<string, number | string | boolean> = { machine: `${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}` };
    try {
      const params = tensors.reduce((a, t) => a + elementsOf(t), 0);
      const modelPath = join(root, 'initial-model.safetensors');
      log(`salamandra-2b: writing the synthetic model (${tensors.length} tensors, ${params.toLocaleString('en')} ${o.dtype} parameters) to ${root}`);
      await writeSyntheticModel(modelPath, tensors, 'synthetic-salamandra-2b', o.dtype);
      const sha256 = await sha256File(modelPath);
      figures['params'] = params;
      figures['modelDtype'] = o.dtype;
      for (const kind of KINDS.filter((k) => o.only.has(k))) {
        log(`${kind}: 4 sites, DiLoCo, ${kind === 'secure' ? 'secure aggregation (Z_2^16, 14-bit quantization, clip ±2e-3)' : 'bf16 deltas, secure aggregation off'}`);
        const r = await run(kind, root, modelPath, sha256, o.profile, log);
        const cap = kind === 'plain' ? '' : 'Secure';
        log(`  ${kind}: round ${r.roundS.toFixed(1)} s; coordinator peak RSS ${(r.coordinatorPeakRssBytes / 1e9).toFixed(2)} GB; up ${(r.bytesUp / 1e9).toFixed(2)} GB (${(r.bytesUp / (r.participants * params)).toFixed(2)} B/param), down ${(r.bytesDown / 1e9).toFixed(2)} GB`);
        log(`  ${kind}: phases (s): ${phaseLine(r)}; CPU s: coordinator ${r.coordinatorCpuS.toFixed(1)}, site agents ${r.siteCpuS.map((x) => x.toFixed(1)).join(' ')}`);
        // Per GB: the coordinator's CPU taking the uploads in ÷ all bytes up; each agent's own CPU
        // over the round (its trainer is a child process, not counted) ÷ the bytes it sent.
        const upGb = r.bytesUp / 1e9;
        const siteGb = upGb / r.participants;
        const coordinatorPerGb = r.coordinatorIngestCpuS / upGb;
        const sitePerGb = Math.max(...r.siteCpuS) / siteGb;
        log(`  ${kind}: CPU s per GB: coordinator ${coordinatorPerGb.toFixed(2)} (${r.coordinatorIngestCpuS.toFixed(1)} CPU-s for ${upGb.toFixed(2)} GB, ${r.uploadWindowCpuS.coordinator.toFixed(1)} of them while the uploads ran; target ≤ 3), largest site ${sitePerGb.toFixed(2)} (target ≤ 4)`);
        Object.assign(figures, {
          [`salamandra${cap}CoordinatorCpuPerGb`]: Math.round(coordinatorPerGb * 100) / 100,
          [`salamandra${cap}SiteCpuPerGb`]: Math.round(sitePerGb * 100) / 100,
          [`salamandra${cap}RoundS`]: Math.round(r.roundS * 10) / 10,
          [`salamandra${cap}PeakRssGB`]: Math.round(r.coordinatorPeakRssBytes / 1e7) / 100,
          [`salamandra${cap}Phases`]: phaseLine(r),
          [`salamandra${cap}BytesPerParam`]: Math.round((r.bytesUp / (r.participants * params)) * 1000) / 1000,
        });
        // Keep the initial model (the coordinator's copy, same bytes) for the next round, drop the rest.
        if (!o.keep) await rm(join(root, kind), { recursive: true, force: true });
        if (o.shards > 0) Object.assign(figures, await withShards(kind, o.shards, r, { root, modelPath, sha256, profile: o.profile, keep: o.keep, log }));
      }
      const peaks = KINDS.filter((k) => o.only.has(k)).map((k) => Number(figures[`salamandra${k === 'plain' ? '' : 'Secure'}PeakRssGB`]));
      figures['salamandraPeakRssGB'] = Math.max(...peaks);
      figures['salamandraRoundS'] = figures['salamandraRoundS'] ?? 0;
      figures['salamandraSecureRoundS'] = figures['salamandraSecureRoundS'] ?? 0;
      if (o.only.size === KINDS.length) {
        // The secure round's per-byte CPU against the plain round's (target: within 1.3×).
        figures['salamandraSecureOverPlainCoordinatorCpuPerGb'] = Math.round((Number(figures['salamandraSecureCoordinatorCpuPerGb']) / Number(figures['salamandraCoordinatorCpuPerGb'])) * 100) / 100;
        figures['salamandraSecureOverPlainSiteCpuPerGb'] = Math.round((Number(figures['salamandraSecureSiteCpuPerGb']) / Number(figures['salamandraSiteCpuPerGb'])) * 100) / 100;
      }
      figures['seconds'] = Math.round((Date.now() - t0) / 1000);
      log(`coordinator peak RSS ${figures['salamandraPeakRssGB']} GB (target ≤ 12)`);
      return figures;
    } finally {
      if (!o.keep) await rm(root, { recursive: true, force: true });
      else log(`kept ${root}`);
    }
  },
};
