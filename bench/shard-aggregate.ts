/**
 * `npm run bench -- shard-aggregate [--params P] [--sites N] [--shards K] [--dtype BF16|F32] [--keep]`:
 * what sharded aggregation costs against one process (issue 22), in one process on one machine.
 *
 * A synthetic model of P values (default 200 M, the checkpoint in `--dtype`, BF16 by default with
 * its f32 master) and N sites' bf16 deltas (default 4) are aggregated with DiLoCo's outer step:
 * once whole (`aggregateRound`, the baseline), once by K shards (`aggregatePart` each, their spools
 * being each delta's slice as `shardByteRanges` cuts it) writing into the files the leader staged
 * (`stageCheckpoint`), which the leader then hashes and publishes (`commitStagedCheckpoint`). Both
 * run on the same kernel pool; the checkpoints must be identical (their SHA-256). Reported: each
 * side's CPU-seconds and wall time, the leader's share per uploaded GB (the issue's
 * `leaderCpuPerGbSharded` counts all of the leader's work per uploaded GB; this is its aggregation
 * part) and per GB of checkpoint files, and two floors for the same bytes: a kernel copy of the
 * files (`fs.copyFile`) and Node's SHA-256 of the checkpoint.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, mkdtemp, open, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AggregationError, type ModelPartition, createOptimizer, f32ToBf16, partitionModel, shardByteRanges, unwrap } from '../aggregation/index.js';
import { openFileSource } from '../common/files.js';
import {
  KernelPool,
  LocalStateStore,
  aggregatePart,
  aggregateRound,
  commitStagedCheckpoint,
  importInitialModel,
  stageCheckpoint,
  type ShardWrites,
  type SpoolInput,
} from '../coordinator/index.js';
import type { Benchmark } from './registry.js';
import { blockModel, elementsOf, writeSyntheticModel } from './tools/synthetic-model.js';

interface Settings {
  params: number;
  sites: number;
  shards: number;
  dtype: 'BF16' | 'F32';
  keep: boolean;
}

function parseArgs(args: readonly string[]): Settings {
  const s: Settings = { params: 200_000_000, sites: 4, shards: 2, dtype: 'BF16', keep: false };
  for (let i = 0; i < args.length; i++) {
    const flag = args[i]!;
    if (flag === '--keep') {
      s.keep = true;
    } else if (flag === '--dtype') {
      const v = args[++i];
      if (v !== 'BF16' && v !== 'F32') throw new Error(`shard-aggregate: --dtype takes BF16 or F32, got ${JSON.stringify(v)}`);
      s.dtype = v;
    } else {
      const key = ({ '--params': 'params', '--sites': 'sites', '--shards': 'shards' } as const)[flag as '--params'];
      const n = Number(args[++i]);
      if (key === undefined || !Number.isSafeInteger(n) || n < 1) throw new Error(`shard-aggregate: unknown flag or bad value: ${flag} ${args[i] ?? ''}`);
      s[key] = n;
    }
  }
  return s;
}

const OPTIMIZER = { name: 'diloco', lr: 0.7, momentum: 0.9 } as const;
const SLICE = 4 * 1024 * 1024;

/**
 * CPU-seconds (all threads; `systemS` of them in the kernel) and wall seconds of `work`. Dirty pages
 * of earlier steps are written back first (`sync`): the kernel charges their writeback to whichever
 * process writes next (measured: 0.5 GB copied in 1.3 kernel CPU-s after 3 GB of fresh writes, 0.2
 * once they were flushed).
 */
async function measured<T>(work: () => Promise<T>): Promise<{ value: T; cpuS: number; systemS: number; wallS: number }> {
  execFileSync('sync');
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const value = await work();
  const c = process.cpuUsage(c0);
  return { value, cpuS: (c.user + c.system) / 1e6, systemS: c.system / 1e6, wallS: (performance.now() - t0) / 1000 };
}

/** A bf16 delta of the model's values, written slice by slice (seeded, small values). */
async function writeDelta(path: string, values: number, seed: number): Promise<void> {
  const file = await open(path, 'w');
  try {
    let x = seed >>> 0;
    const slice = new Float32Array(1 << 20);
    for (let left = values; left > 0; ) {
      const n = Math.min(slice.length, left);
      for (let i = 0; i < n; i++) {
        x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
        slice[i] = ((x / 2 ** 32) * 2 - 1) * 1e-3;
      }
      await file.write(new Uint8Array(f32ToBf16(slice.subarray(0, n)).buffer));
      left -= n;
    }
  } finally {
    await file.close();
  }
}

export const shardAggregate: Benchmark = {
  async run(args, log) {
    const s = parseArgs(args);
    const dir = await mkdtemp(join(tmpdir(), 'fedhpc-bench-shards-'));
    const pool = await KernelPool.start({ threads: 2, subElements: 1 << 20 });
    try {
      const tensors = blockModel(s.params);
      const values = tensors.reduce((n, t) => n + elementsOf(t), 0);
      const initial = join(dir, 'initial.safetensors');
      await writeSyntheticModel(initial, tensors, 'shard-bench', 'F32');
      const whole = await LocalStateStore.open(join(dir, 'whole'), () => 0);
      const sharded = await LocalStateStore.open(join(dir, 'sharded'), () => 0);
      try {
        const global = (await importInitialModel(whole, initial, SLICE, s.dtype)).sha256;
        await importInitialModel(sharded, initial, SLICE, s.dtype);
        const deltas: SpoolInput[] = [];
        for (let k = 0; k < s.sites; k++) {
          const path = join(dir, `site-${k}.delta`);
          await writeDelta(path, values, 1000 + k);
          deltas.push({ site: `site-${k}`, weight: 1 + k, path, encoding: 'bf16' });
        }
        const uploadedBytes = values * 2 * s.sites;
        log(`model ${values} values (${s.dtype}), ${s.sites} bf16 deltas of ${(values * 2) / 1e9} GB, K = ${s.shards}`);

        const common = { optimizer: createOptimizer(OPTIMIZER), step: 1, previousStateSha256: undefined, sliceElements: SLICE, openSpool: openFileSource, pool };
        const base = await measured(() => aggregateRound({ ...common, store: whole, globalSha256: global, inputs: deltas, metadata: { fedhpc_round: '1' } }));
        log(`one process: ${base.cpuS.toFixed(2)} CPU-s (${base.systemS.toFixed(2)} in the kernel), ${base.wallS.toFixed(2)} s`);

        const partition: ModelPartition = unwrap(partitionModel(tensors, s.shards), AggregationError, 'partition');
        const staged = await measured(() => stageCheckpoint({ store: sharded, globalSha256: global, optimizer: createOptimizer(OPTIMIZER), step: 1, metadata: { fedhpc_round: '1' } }));
        const stage = staged.value;
        const written: ShardWrites[] = [];
        const shardCpu: number[] = [];
        for (let shard = 0; shard < s.shards; shard++) {
          const ranges = shardByteRanges(partition, shard, 'bf16');
          const start = ranges[0]!.start;
          const end = ranges[ranges.length - 1]!.end;
          const inputs: SpoolInput[] = [];
          for (const d of deltas) {
            const path = `${d.path}.shard-${shard}`;
            const fh = await open(d.path, 'r');
            const bytes = Buffer.allocUnsafe(end - start);
            await fh.read(bytes, 0, bytes.length, start);
            await fh.close();
            await writeFile(path, bytes);
            inputs.push({ ...d, path });
          }
          const step = await measured(() => aggregatePart({ ...common, store: sharded, stage, partition, shard, globalSha256: global, inputs }));
          written.push(step.value);
          shardCpu.push(step.cpuS);
          log(`shard ${shard}: ${step.cpuS.toFixed(2)} CPU-s (${step.systemS.toFixed(2)} in the kernel), ${step.wallS.toFixed(2)} s`);
        }
        const assembledBytes = stage.files.reduce((n, f) => n + f.size, 0);
        const committed = await measured(() => commitStagedCheckpoint({ store: sharded, stage, partition, written }));
        const assembly = { value: committed.value, cpuS: staged.cpuS + committed.cpuS, systemS: staged.systemS + committed.systemS, wallS: staged.wallS + committed.wallS };
        const identical = assembly.value.modelSha256 === base.value.modelSha256;
        log(`leader (stage + hash + publish): ${assembly.cpuS.toFixed(2)} CPU-s (${assembly.systemS.toFixed(2)} in the kernel), ${assembly.wallS.toFixed(2)} s for ${(assembledBytes / 1e9).toFixed(2)} GB of files; identical: ${identical}`);

        // Floors for the same bytes: a kernel copy of the assembled files, and hashing the checkpoint.
        const files = [sharded.modelPath(assembly.value.modelSha256), join(sharded.dir, 'optimizer', `${assembly.value.modelSha256}.momentum.safetensors`)];
        if (s.dtype !== 'F32') files.push(join(sharded.dir, 'optimizer', `${assembly.value.modelSha256}.master.safetensors`));
        const copy = await measured(async () => {
          for (const [i, f] of files.entries()) await copyFile(f, join(dir, `copy-${i}`));
        });
        const hash = await measured(async () => {
          const h = createHash('sha256');
          const fh = await open(files[0]!, 'r');
          const buf = Buffer.allocUnsafe(8 << 20);
          for (;;) {
            const { bytesRead } = await fh.read(buf, 0, buf.length, null);
            if (bytesRead === 0) break;
            h.update(buf.subarray(0, bytesRead));
          }
          await fh.close();
          return h.digest('hex');
        });
        if (hash.value !== assembly.value.modelSha256) throw new Error('shard-aggregate: the checkpoint does not hash to its name');
        const modelBytes = (await stat(files[0]!)).size;
        return {
          params: values,
          dtype: s.dtype,
          sites: s.sites,
          shards: s.shards,
          uploadedGb: uploadedBytes / 1e9,
          identical,
          wholeCpuS: round(base.cpuS),
          wholeSystemCpuS: round(base.systemS),
          wholeWallS: round(base.wallS),
          shardStepCpuS: round(shardCpu.reduce((a, b) => a + b, 0)),
          shardStepMaxCpuS: round(Math.max(...shardCpu)),
          leaderCpuS: round(assembly.cpuS),
          leaderSystemCpuS: round(assembly.systemS),
          leaderWallS: round(assembly.wallS),
          checkpointFilesGb: round(assembledBytes / 1e9),
          leaderCpuPerUploadedGb: round(assembly.cpuS / (uploadedBytes / 1e9), 4),
          leaderCpuPerCheckpointGb: round(assembly.cpuS / (assembledBytes / 1e9), 4),
          shardedOverWholeCpu: round((shardCpu.reduce((a, b) => a + b, 0) + assembly.cpuS) / base.cpuS),
          copyFileCpuS: round(copy.cpuS),
          sha256ModelCpuS: round(hash.cpuS),
          sha256ModelGBs: round(modelBytes / 1e9 / hash.cpuS),
        };
      } finally {
        await whole.close();
        await sharded.close();
      }
    } finally {
      await pool.close();
      if (!s.keep) await rm(dir, { recursive: true, force: true });
      else log(`kept ${dir}`);
    }
  },
};

const round = (x: number, digits = 3): number => Number(x.toFixed(digits));

