/**
 * `npm run bench -- convergence-torch [--rounds R] [--steps H] [--batch B] [--seq-len L] [--lr LR]
 * [--central-lr LR[,LR…]] [--outer-lr A] [--outer-momentum M] [--sites N] [--python PY]
 * [--no-secure] [--keep]`: DiLoCo with the PyTorch reference trainer (`torch_shard.py`) on non-IID
 * sites (one language each), against centralised AdamW on the union of their data, and the
 * communication DiLoCo saves over per-step synchronous data parallelism.
 *
 * The federation is real: `simulate()` starts the coordinator and the site agents as processes of
 * the built CLI, talking gRPC over mTLS, with secure aggregation on unless `--no-secure`; every
 * site trains H steps per round with `torch_shard.py` through the `command` runner, keeping its
 * inner AdamW state across rounds. The centralised baseline (`bench/fixtures/central_torch.py`)
 * trains torch_shard.py's model with its AdamW settings (betas 0.9/0.95, eps 1e-8, clip 1.0) from
 * the same `--init` weights, on the federation's own token files: R × H steps, each on B windows
 * from every site's file, read in the order the site's shards read them across rounds. That is the
 * same total tokens (sites × R × H × B × L), the very same tokens, and the step a synchronous
 * data-parallel run with one replica per site would make. Both models are scored by
 * `torch_shard.py --eval` on each site's held-out tokens with the sites' own arguments, combined as
 * the coordinator combines them (sample-weighted mean); the benchmark checks that by scoring the
 * initial model and comparing with the federation's initial evaluation.
 *
 * Figures:
 * - `dilocoOverCentralLoss`: DiLoCo's final held-out loss ÷ the centralised one (the best of the
 *   `--central-lr` values: the baseline gets its own learning rate, not the sites').
 * - `commReduction`: bytes a per-step synchronous data-parallel run would move — every step each
 *   site sends its full F32 gradient and receives the averaged one, 2 × params × 4 B × sites × R × H
 *   — ÷ the bytes the federation moved, Σ bytesUp + bytesDown of the committed rounds as the
 *   coordinator's transport counted them (`admin rounds`: model downloads and masked uploads).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { simulate, type SimulateRecord } from '../simulate/simulate.js';
import { TORCH_TRAIN, TORCH_TRAINER } from '../simulate/torch-sites.js';
import { defaultSiteLanguages } from '../site-agent/index.js';
import type { Benchmark } from './registry.js';

const exec = promisify(execFile);

/**
 * Defaults (≈5 minutes on a 2-core CPU), chosen with an in-process PyTorch replica of the rounds
 * (same shards, data order and outer step; it tracks the federation's losses to ≈0.5 %), 8 rounds:
 *
 * - Outer step: the paper's 0.7 / 0.9 reached 1.86 (federation: 1.80) against central 0.952; 1.0 / 0
 *   (FedAvg) 1.66, 1.0 / 0.3 1.69 (federation: 1.69), 1.0 / 0.5 1.71, 1.4 / 0 1.71, 0.4 / 0.8 (inner
 *   lr 6e-3) 2.13. 1.0 / 0.3 keeps a Nesterov outer step at the cost of noise-level loss.
 * - Inner lr 3e-3 (torch-sites' demo lr): 1e-3 gave 1.74 (1.0 / 0) and 1.91 (0.7 / 0.9), 5e-3 1.72
 *   (1.0 / 0), 1e-2 2.19 (0.7 / 0.9). Resetting the inner AdamW each round (1.0 / 0): 1.75.
 * - Central lr: 3e-3 0.952, 1.5e-3 1.006, 6e-3 1.230; the benchmark tries 1.5e-3 and 3e-3.
 *
 * The gap is not closed by this budget: the same DiLoCo with IID sites (each drawing from every
 * language) reaches 1.16 (1.21 × central), and at 16 rounds non-IID DiLoCo (1.0 / 0) is still
 * 1.69 × central. See `bench/results-convergence-torch.md`.
 */
const DEFAULTS = {
  sites: 4,
  rounds: 8,
  steps: 50,
  batch: 8,
  seqLen: TORCH_TRAIN.seq_len,
  lr: 3e-3,
  outerLr: 1.0,
  outerMomentum: 0.3,
} as const;
const DEFAULT_CENTRAL_LRS = [1.5e-3, 3e-3] as const;

type Settings = { -readonly [K in keyof typeof DEFAULTS]: number } & {
  centralLrs: number[];
  python: string;
  secure: boolean;
  keep: boolean;
};

const FLAGS: Record<string, keyof typeof DEFAULTS> = {
  '--sites': 'sites',
  '--rounds': 'rounds',
  '--steps': 'steps',
  '--batch': 'batch',
  '--seq-len': 'seqLen',
  '--lr': 'lr',
  '--outer-lr': 'outerLr',
  '--outer-momentum': 'outerMomentum',
};
const INTEGER_SETTINGS = new Set<keyof typeof DEFAULTS>(['sites', 'rounds', 'steps', 'batch', 'seqLen']);

function positive(flag: string, text: string | undefined, integer: boolean): number {
  const value = Number(text);
  const valid = text !== undefined && text.trim() !== '' && Number.isFinite(value) && value > 0 && (!integer || Number.isSafeInteger(value));
  if (!valid) throw new Error(`convergence-torch: ${flag} needs a positive ${integer ? 'integer' : 'number'}, got ${text ?? 'nothing'}`);
  return value;
}

function parseArgs(args: readonly string[]): Settings {
  const s: Settings = { ...DEFAULTS, centralLrs: [...DEFAULT_CENTRAL_LRS], python: '/usr/bin/python3', secure: true, keep: false };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--keep' || arg === '--no-secure') {
      if (arg === '--keep') s.keep = true;
      else s.secure = false;
      continue;
    }
    const [flag, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const text = (): string | undefined => inline ?? args[++i];
    if (flag === '--python') {
      const value = text();
      if (!value) throw new Error('convergence-torch: --python needs a path');
      s.python = value;
      continue;
    }
    if (flag === '--central-lr') {
      const value = text();
      s.centralLrs = (value ?? '').split(',').map((v) => positive(flag, v, false));
      continue;
    }
    const key = FLAGS[flag];
    if (key === undefined) {
      throw new Error(`convergence-torch: unknown option ${arg} (known: ${[...Object.keys(FLAGS), '--central-lr', '--python', '--no-secure', '--keep'].join(', ')})`);
    }
    s[key] = positive(flag, text(), INTEGER_SETTINGS.has(key));
  }
  if (s.outerMomentum >= 1) throw new Error(`convergence-torch: --outer-momentum must be below 1, got ${s.outerMomentum}`);
  return s;
}

/** The centralised trainer, beside this module in the source tree or two levels up from dist/bench. */
function centralScript(): string {
  for (const rel of ['./fixtures/central_torch.py', '../../bench/fixtures/central_torch.py']) {
    const path = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(path)) return path;
  }
  throw new Error('convergence-torch: bench/fixtures/central_torch.py not found');
}

/** Number of parameters in a safetensors file (from its header). */
async function safetensorsParams(path: string): Promise<number> {
  const fh = await open(path, 'r');
  try {
    const len = Buffer.alloc(8);
    await fh.read(len, 0, 8, 0);
    const n = Number(len.readBigUInt64LE(0));
    const header = Buffer.alloc(n);
    await fh.read(header, 0, n, 8);
    const tensors = JSON.parse(header.toString('utf8')) as Record<string, { shape?: number[] }>;
    let params = 0;
    for (const [name, info] of Object.entries(tensors)) if (name !== '__metadata__') params += (info.shape ?? []).reduce((a, b) => a * b, 1);
    return params;
  } finally {
    await fh.close();
  }
}

interface SiteFiles {
  readonly train: string;
  readonly heldout: string;
}

/** Held-out loss of the union as the federation scores it: each site's `--eval`, sample-weighted. */
async function unionEvalLoss(python: string, model: string, config: string, sites: readonly SiteFiles[]): Promise<number> {
  let lossSum = 0;
  let samples = 0;
  for (const site of sites) {
    // The sites' evalArgs (simulate/torch-sites.ts): --seq-len is the demo's, the batch size the trainer's default.
    const { stdout } = await exec(python, [TORCH_TRAINER, '--eval', '--model', model, '--config', config, '--tokens', site.heldout, '--seq-len', String(TORCH_TRAIN.seq_len)], {
      timeout: 300_000,
    });
    const r = JSON.parse(stdout.trim().split('\n').pop()!) as { loss: number; samples: number };
    lossSum += r.loss * r.samples;
    samples += r.samples;
  }
  return lossSum / samples;
}

type Summary = Extract<SimulateRecord, { type: 'summary' }>;
type RoundLine = Extract<SimulateRecord, { type: 'round' }>;

export const convergenceTorch: Benchmark = {
  async run(args, log) {
    const s = parseArgs(args);
    const t0 = Date.now();
    const languages = defaultSiteLanguages(s.sites);
    const totalTokens = s.sites * s.rounds * s.steps * s.batch * s.seqLen;
    log(
      `convergence-torch: ${s.sites} sites (${languages.join(', ')}), torch_shard.py tiny model on CPU, ${s.rounds} rounds × H ${s.steps} steps × batch ${s.batch} × seq ${s.seqLen}, ` +
        `inner AdamW lr ${s.lr}; DiLoCo outer lr ${s.outerLr}, Nesterov momentum ${s.outerMomentum}; secure aggregation ${s.secure ? 'on' : 'off'}; ` +
        `central: ${s.rounds * s.steps} steps × batch ${s.sites * s.batch}, lr ${s.centralLrs.join(' / ')}; ${totalTokens} tokens each`,
    );

    // DiLoCo, federated.
    const stateDir = await mkdtemp(join(tmpdir(), 'fedhpc-bench-torch-'));
    const rounds: RoundLine[] = [];
    let t = Date.now();
    const train = { max_steps: s.steps, lr: s.lr, batch_size: s.batch, seq_len: s.seqLen, weight_decay: 0, warmup_steps: 0 };
    const summary: Summary = await simulate({
      runner: 'command',
      python: s.python,
      sites: s.sites,
      rounds: s.rounds,
      strategy: 'diloco',
      strategyParams: { lr: s.outerLr, momentum: s.outerMomentum },
      stateDir,
      // Every round needs every site: a round without a language would not be the run we compare.
      minSites: s.sites,
      // torch_shard.py's spec fields (the run's train settings are opaque to the coordinator).
      train,
      secure: s.secure,
      cliPath: resolve('dist/cli/main.js'),
      timeoutS: 3600,
      emit: (r) => {
        if (r.type === 'start') log(`diloco: ${r.sites} sites, ${r.rounds} rounds; state in ${r.stateDir}`);
        if (r.type === 'round') {
          rounds.push(r);
          const note = r.dropped.length > 0 ? `; dropped ${r.dropped.join(', ')}` : '';
          log(
            `  diloco round ${String(r.round).padStart(2)}/${s.rounds}: eval ${r.evalLoss.toFixed(4)} (${r.participants.length} sites, ` +
              `${(r.bytesUp / 1e6).toFixed(2)} MB up, ${(r.bytesDown / 1e6).toFixed(2)} MB down, ${r.seconds.toFixed(1)} s${note})`,
          );
        }
      },
    });
    const dilocoSeconds = (Date.now() - t) / 1000;
    const dropped = rounds.reduce((n, r) => n + r.dropped.length, 0);
    if (dropped > 0) throw new Error(`convergence-torch: ${dropped} site contributions were dropped; logs in ${stateDir}/logs`);
    if (rounds.length !== s.rounds || rounds.some((r) => r.participants.length !== s.sites)) {
      throw new Error(`convergence-torch: expected ${s.rounds} committed rounds of ${s.sites} sites, saw ${rounds.map((r) => `${r.round}:${r.participants.length}`).join(' ')}`);
    }

    // The federation's own files: its initial model, and each site's train and held-out tokens.
    const fed = join(stateDir, 'federation');
    const initModel = join(fed, 'torch-init', 'model.safetensors');
    const modelConfig = join(fed, 'torch-init', 'config.json');
    const sites: SiteFiles[] = Array.from({ length: s.sites }, (_, i) => ({
      train: join(fed, 'sites', `site-${i + 1}`, 'data', 'train.u32'),
      heldout: join(fed, 'sites', `site-${i + 1}`, 'data', 'heldout.u32'),
    }));

    const initialLoss = await unionEvalLoss(s.python, initModel, modelConfig, sites);
    if (Math.abs(summary.initialEvalLoss - initialLoss) > 1e-9 * initialLoss) {
      throw new Error(`convergence-torch: the federation scored the initial model ${summary.initialEvalLoss}, the benchmark ${initialLoss}: evaluations differ`);
    }

    // Centralised AdamW on the union, once per learning rate; the best counts.
    t = Date.now();
    const central: { lr: number; evalLoss: number; trainLoss: number; seconds: number }[] = [];
    for (const lr of s.centralLrs) {
      const out = join(stateDir, `central-${lr}`);
      const started = Date.now();
      const { stdout } = await exec(
        s.python,
        [
          centralScript(),
          '--trainer', TORCH_TRAINER,
          '--model', initModel,
          '--config', modelConfig,
          '--tokens', ...sites.map((x) => x.train),
          '--steps', String(s.rounds * s.steps),
          '--batch-per-site', String(s.batch),
          '--seq-len', String(s.seqLen),
          '--lr', String(lr),
          '--weight-decay', String(train.weight_decay),
          '--warmup-steps', String(train.warmup_steps),
          '--out', out,
        ],
        { timeout: 3_600_000 },
      );
      const r = JSON.parse(stdout.trim().split('\n').pop()!) as { steps: number; tokens: number; trainLoss: number };
      if (r.tokens !== totalTokens) throw new Error(`convergence-torch: central trained on ${r.tokens} tokens, the federation on ${totalTokens}`);
      const evalLoss = await unionEvalLoss(s.python, join(out, 'model.safetensors'), modelConfig, sites);
      const seconds = (Date.now() - started) / 1000;
      central.push({ lr, evalLoss, trainLoss: r.trainLoss, seconds });
      log(`central: ${r.steps} steps × batch ${s.sites * s.batch}, lr ${lr}: eval ${evalLoss.toFixed(4)} (${seconds.toFixed(0)} s)`);
    }
    const centralSeconds = (Date.now() - t) / 1000;
    const best = central.reduce((a, b) => (b.evalLoss < a.evalLoss ? b : a));

    // Communication: what DiLoCo's transport counted, against per-step synchronous data parallelism.
    const params = await safetensorsParams(initModel);
    const bytesUp = rounds.reduce((n, r) => n + r.bytesUp, 0);
    const bytesDown = rounds.reduce((n, r) => n + r.bytesDown, 0);
    const dilocoBytes = bytesUp + bytesDown;
    const syncDpBytes = 2 * params * 4 * s.sites * s.rounds * s.steps;
    const commReduction = syncDpBytes / dilocoBytes;

    const dilocoOverCentralLoss = summary.finalEvalLoss / best.evalLoss;
    const seconds = (Date.now() - t0) / 1000;
    log(`initial eval ${initialLoss.toFixed(4)} (the federation's own: ${summary.initialEvalLoss.toFixed(4)}); bigram baseline ${summary.bigramEvalLoss.toFixed(4)}`);
    log(`central ${best.evalLoss.toFixed(4)} (lr ${best.lr}); diloco ${summary.finalEvalLoss.toFixed(4)}: ${dilocoOverCentralLoss.toFixed(3)} × central (${dilocoSeconds.toFixed(0)} s)`);
    log(
      `bytes: diloco moved ${(dilocoBytes / 1e6).toFixed(2)} MB (${(bytesUp / 1e6).toFixed(2)} up, ${(bytesDown / 1e6).toFixed(2)} down); ` +
        `per-step sync DP would move 2 × ${params} params × 4 B × ${s.sites} sites × ${s.rounds * s.steps} steps = ${(syncDpBytes / 1e6).toFixed(1)} MB: ${commReduction.toFixed(1)}× less`,
    );
    log(`total ${seconds.toFixed(0)} s`);
    if (!s.keep) await rm(stateDir, { recursive: true, force: true });
    return {
      dilocoOverCentralLoss,
      commReduction,
      dilocoEvalLoss: summary.finalEvalLoss,
      centralEvalLoss: best.evalLoss,
      centralLr: best.lr,
      centralEvalLossByLr: central.map((c) => `${c.lr}:${c.evalLoss.toFixed(4)}`).join(','),
      initialEvalLoss: initialLoss,
      bigramEvalLoss: summary.bigramEvalLoss,
      dilocoBytesUp: bytesUp,
      dilocoBytesDown: bytesDown,
      syncDataParallelBytes: syncDpBytes,
      modelParams: params,
      secureAggregation: s.secure,
      sites: s.sites,
      rounds: s.rounds,
      innerSteps: s.steps,
      batchSize: s.batch,
      seqLen: s.seqLen,
      innerLr: s.lr,
      dilocoOuterLr: s.outerLr,
      dilocoOuterMomentum: s.outerMomentum,
      totalTokens,
      dilocoSeconds,
      centralSeconds,
      seconds,
    };
  },
};
