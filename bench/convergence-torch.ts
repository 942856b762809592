/**
 * `npm run bench -- convergence-torch [--rounds R] [--steps H] [--batch B] [--seq-len L] [--lr LR]
 * [--central-lr LR[,LR…]] [--outer-lr A] [--outer-momentum M] [--sites N] [--share S]
 * [--pretrain-steps P] [--pretrain-lr LR] [--data-order shuffled|sequential] [--python PY]
 * [--no-secure] [--keep]`: DiLoCo with the
 * PyTorch reference trainer (`torch_shard.py`) on non-IID sites, against centralised AdamW on the
 * union of their data with the same total tokens, and the communication DiLoCo saves over per-step
 * synchronous data parallelism.
 *
 * Protocol (the issue's "centralized AdamW on the union with the same total tokens"):
 * - Data: site i's text is dominated by its own language (share S, default 0.7; the other
 *   languages split the rest evenly), in blocks of 512 characters (`mixedTokens`); its held-out
 *   text is the same mix from other seeds. S = 1 gives one language per site, S = 1/4 IID sites.
 * - Start: as in the DiLoCo paper, both runs start from the same briefly pretrained model: the
 *   seeded `--init` weights trained P steps (default 300) × batch N·B by `central_torch.py` on a
 *   public text in which every language has an equal share and which no site holds. P = 0 starts
 *   from the seeded weights.
 * - DiLoCo is the real federation: `simulate()` starts the coordinator and the site agents as
 *   processes of the built CLI, gRPC over mTLS, secure aggregation on unless `--no-secure`; every
 *   site trains H steps per round with `torch_shard.py` through the `command` runner, keeping its
 *   inner AdamW state across rounds; the coordinator applies DiLoCo's outer Nesterov step.
 * - Central (`bench/fixtures/central_torch.py`) is per-step synchronous data parallelism: R × H
 *   AdamW steps (torch_shard.py's settings), each on the union batch N × B (B windows from every
 *   site's file, in the order the site's shards read them: `--data-order`, shuffled unless told
 *   otherwise, for pretraining, sites and central alike): the same steps as each site, the same
 *   tokens (N × R × H × B × L), the very same windows. It runs once per `--central-lr` value and the
 *   best counts: the baseline gets its own tuned learning rate.
 * - Both models are scored by `torch_shard.py --eval` on each site's held-out tokens, combined as
 *   the coordinator combines them (sample-weighted mean); the benchmark checks that by scoring the
 *   starting model and comparing with the federation's initial evaluation.
 *
 * Figures:
 * - `dilocoOverCentralLoss`: DiLoCo's final held-out loss ÷ the best centralised one.
 * - `commReduction`: bytes a per-step synchronous data-parallel run would move — every step each
 *   site sends its full F32 gradient and receives the averaged one, 2 × params × 4 B × sites × R × H
 *   — ÷ the bytes the federation moved, Σ bytesUp + bytesDown of the committed rounds as the
 *   coordinator's transport counted them (`admin rounds`: model downloads and masked uploads).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { simulate, type SimulateRecord, dominantMix, mixedTokens, TORCH_TRAIN, TORCH_TRAINER, torchInitialModel, writeMixedSiteTokens } from '../simulate/index.js';
import { bigramEvalLoss, LANGUAGES, VOCAB_SIZE, type Language, defaultSiteLanguages } from '../site-agent/index.js';
import type { Benchmark } from './registry.js';

const exec = promisify(execFile);

/**
 * Defaults, chosen with an in-process PyTorch replica of the rounds (torch_shard.py's model and
 * AdamW, the same data order, kept inner state and outer Nesterov step, no secure aggregation),
 * 8 rounds × H 50, best central lr of each setting (bench/RESULTS.md has the table):
 * - From seeded weights, one language per site: DiLoCo 1.78 × central (0.7 / 0.9; the old default
 *   1.0 / 0.3 gave about the same); share 0.7: 1.40 ×. Eight outer steps from scratch cannot follow 400
 *   synchronous ones.
 * - From the 300-step pretrained model: one language per site 1.48 × (the first round raises the
 *   loss: 50 steps on one language make each site forget the others); share 0.7: 1.08 ×.
 * - Inner lr from the pretrained model, share 0.7: 1e-3 1.06 × (0.954), 3e-3 1.08 × (0.970); the
 *   lower lr drifts less from the other languages within a round. Central: 3e-3 0.897, 1e-3 0.922.
 * - Federation, pretrained, share 0.7, sequential windows: 8 rounds (lr 3e-3) 1.087 ×, 12 rounds
 *   (lr 1e-3) 1.062 ×, 16 rounds 1.060 ×: more rounds barely help at a constant lr.
 * - Shuffled windows (the trainer's default since), 12 rounds, replica: inner 1e-3 1.057 ×,
 *   1.5e-3 1.037 ×, 2e-3 1.027 × (1.028 × with another permutation), 3e-3 1.026 ×; outer 0.5 / 0.9
 *   and 0.7 / 0.8 worse than 0.7 / 0.9. A sequential batch was one 512-character block, one
 *   language: a site's every step pulled towards one language. Central gains too (0.832 → 0.820).
 */
const DEFAULTS = {
  sites: 4,
  rounds: 12,
  steps: 50,
  batch: 8,
  seqLen: TORCH_TRAIN.seq_len,
  lr: 2e-3,
  outerLr: 0.7,
  outerMomentum: 0.9,
  share: 0.7,
  pretrainSteps: 300,
  pretrainLr: 3e-3,
  /**
   * Both sides' lr decays by cosine to this fraction of itself over the run; 1 (the default) keeps
   * it constant. Measured with 0.1: central gains more than DiLoCo (0.800 vs 0.891, 1.113 ×).
   */
  minLrRatio: 1,
} as const;
/** Seed of the public pretraining text; the sites' seeds are 1..sites. */
const PUBLIC_SEED = 1000;
/** Central's sweep: its best of these counts (shuffled: 2e-3 0.826, 3e-3 0.824, 5e-3 0.822). */
const DEFAULT_CENTRAL_LRS = [2e-3, 3e-3, 5e-3, 7e-3] as const;

/** How the trainers read their token files: torch_shard.py's `train.data_order`, central's `--data-order`. */
const DATA_ORDERS = ['shuffled', 'sequential'] as const;
type DataOrder = (typeof DATA_ORDERS)[number];

type Settings = { -readonly [K in keyof typeof DEFAULTS]: number } & {
  dataOrder: DataOrder;
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
  '--share': 'share',
  '--pretrain-steps': 'pretrainSteps',
  '--pretrain-lr': 'pretrainLr',
  '--min-lr-ratio': 'minLrRatio',
};
const INTEGER_SETTINGS = new Set<keyof typeof DEFAULTS>(['sites', 'rounds', 'steps', 'batch', 'seqLen', 'pretrainSteps']);

function positive(flag: string, text: string | undefined, integer: boolean, zero = false): number {
  const value = Number(text);
  const valid =
    text !== undefined && text.trim() !== '' && Number.isFinite(value) && (value > 0 || (zero && value === 0)) && (!integer || Number.isSafeInteger(value));
  if (!valid) throw new Error(`convergence-torch: ${flag} needs a ${zero ? 'non-negative' : 'positive'} ${integer ? 'integer' : 'number'}, got ${text ?? 'nothing'}`);
  return value;
}

function parseArgs(args: readonly string[]): Settings {
  const s: Settings = { ...DEFAULTS, dataOrder: 'shuffled', centralLrs: [...DEFAULT_CENTRAL_LRS], python: '/usr/bin/python3', secure: true, keep: false };
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
    if (flag === '--data-order') {
      const value = text();
      if (!DATA_ORDERS.includes(value as DataOrder)) throw new Error(`convergence-torch: --data-order must be one of ${DATA_ORDERS.join(', ')}, got ${value ?? 'nothing'}`);
      s.dataOrder = value as DataOrder;
      continue;
    }
    if (flag === '--central-lr') {
      const value = text();
      s.centralLrs = (value ?? '').split(',').map((v) => positive(flag, v, false));
      continue;
    }
    const key = FLAGS[flag];
    if (key === undefined) {
      throw new Error(`convergence-torch: unknown option ${arg} (known: ${[...Object.keys(FLAGS), '--data-order', '--central-lr', '--python', '--no-secure', '--keep'].join(', ')})`);
    }
    s[key] = positive(flag, text(), INTEGER_SETTINGS.has(key), key === 'pretrainSteps');
  }
  if (s.minLrRatio > 1) throw new Error(`convergence-torch: --min-lr-ratio must be at most 1, got ${s.minLrRatio}`);
  if (s.outerMomentum >= 1) throw new Error(`convergence-torch: --outer-momentum must be below 1, got ${s.outerMomentum}`);
  const languages = Math.min(s.sites, LANGUAGES.length);
  if (s.share > 1 || s.share < 1 / languages) throw new Error(`convergence-torch: --share must lie in [1/${languages}, 1], got ${s.share}`);
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

/** Runs central_torch.py; returns its report after checking the tokens it trained on. */
async function centralRun(
  python: string,
  model: string,
  config: string,
  tokens: readonly string[],
  o: { steps: number; batchPerFile: number; seqLen: number; lr: number; dataOrder: DataOrder; out: string; minLrRatio?: number },
): Promise<{ steps: number; tokens: number; trainLoss: number }> {
  const args = [centralScript(), '--trainer', TORCH_TRAINER, '--model', model, '--config', config, '--tokens', ...tokens];
  args.push('--steps', String(o.steps), '--batch-per-site', String(o.batchPerFile), '--seq-len', String(o.seqLen), '--lr', String(o.lr));
  // torch_shard.py's defaults in the sites' spec: no weight decay, no warmup, clip 1.0.
  args.push('--weight-decay', '0', '--warmup-steps', '0', '--data-order', o.dataOrder, '--out', o.out);
  // The sites' schedule too: cosine decay over all of this run's steps (none for pretraining).
  if (o.minLrRatio !== undefined) args.push('--decay-steps', String(o.steps), '--min-lr-ratio', String(o.minLrRatio));
  const { stdout } = await exec(python, args, { timeout: 3_600_000 });
  const r = JSON.parse(stdout.trim().split('\n').pop()!) as { steps: number; tokens: number; trainLoss: number };
  const expected = o.steps * o.batchPerFile * tokens.length * o.seqLen;
  if (r.tokens !== expected) throw new Error(`convergence-torch: central_torch.py trained on ${r.tokens} tokens, expected ${expected}`);
  return r;
}

/**
 * The federation's starting point in `fed/torch-init/`, where simulate() finds and keeps it: the
 * seeded `--init` weights, then, with `pretrainSteps`, that many central AdamW steps on a public
 * corpus (every language in equal parts, its own seed: text no site holds).
 */
async function startingModel(s: Settings, fed: string, languages: readonly Language[], log: (line: string) => void): Promise<{ model: string; config: string }> {
  const init = await torchInitialModel(fed, s.python);
  if (s.pretrainSteps === 0) return init;
  const dir = join(fed, '..', 'pretrain');
  await mkdir(dir, { recursive: true });
  const corpus = join(dir, 'public.u32');
  const uniform = languages.map(() => 1 / languages.length);
  const batch = s.sites * s.batch;
  const chars = s.pretrainSteps * batch * s.seqLen + 1; // read once: no window repeats
  await writeFile(corpus, Buffer.from(Uint32Array.from(mixedTokens(languages, uniform, chars, PUBLIC_SEED)).buffer));
  const r = await centralRun(s.python, init.model, init.config, [corpus], { steps: s.pretrainSteps, batchPerFile: batch, seqLen: s.seqLen, lr: s.pretrainLr, dataOrder: s.dataOrder, out: dir });
  // Replaces the seeded weights in place: the federation and central start from these bytes.
  await copyFile(join(dir, 'model.safetensors'), init.model);
  log(`pretrained: ${r.steps} steps × batch ${batch} on ${chars} public tokens, lr ${s.pretrainLr}: train loss ${r.trainLoss.toFixed(4)}`);
  return init;
}

/** Each site's token files, its own language dominant (`share`), the rest split evenly. */
async function siteData(s: Settings, fed: string, languages: readonly Language[]): Promise<{ files: SiteFiles[]; bigram: number }> {
  const files: SiteFiles[] = [];
  const train: Uint8Array[] = [];
  const heldout: Uint8Array[] = [];
  for (let i = 0; i < s.sites; i++) {
    const dir = join(fed, 'sites', `site-${i + 1}`);
    const tokens = await writeMixedSiteTokens(dir, languages, dominantMix(languages.length, i % languages.length, s.share), i + 1);
    train.push(tokens.train);
    heldout.push(tokens.heldout);
    files.push({ train: join(dir, 'data', 'train.u32'), heldout: join(dir, 'data', 'heldout.u32') });
  }
  return { files, bigram: bigramEvalLoss(train, heldout, VOCAB_SIZE) };
}

/** DiLoCo through the real federation; returns its summary and committed rounds. */
async function dilocoRun(s: Settings, stateDir: string, log: (line: string) => void): Promise<{ summary: Summary; rounds: RoundLine[] }> {
  const rounds: RoundLine[] = [];
  const summary = await simulate({
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
    // decay_steps: the inner lr follows one cosine over the whole run (rounds × H steps), as central's does.
    train: { max_steps: s.steps, lr: s.lr, batch_size: s.batch, seq_len: s.seqLen, weight_decay: 0, warmup_steps: 0, decay_steps: s.rounds * s.steps, min_lr_ratio: s.minLrRatio, data_order: s.dataOrder },
    secure: s.secure,
    cliPath: resolve('dist/cli/main.js'),
    timeoutS: 3600,
    emit: (r) => {
      if (r.type === 'start') log(`diloco: ${r.sites} sites, ${r.rounds} rounds; state in ${r.stateDir}`);
      if (r.type !== 'round') return;
      rounds.push(r);
      const note = r.dropped.length > 0 ? `; dropped ${r.dropped.join(', ')}` : '';
      log(
        `  diloco round ${String(r.round).padStart(2)}/${s.rounds}: eval ${r.evalLoss.toFixed(4)} (${r.participants.length} sites, ` +
          `${(r.bytesUp / 1e6).toFixed(2)} MB up, ${(r.bytesDown / 1e6).toFixed(2)} MB down, ${r.seconds.toFixed(1)} s${note})`,
      );
    },
  });
  const dropped = rounds.reduce((n, r) => n + r.dropped.length, 0);
  if (dropped > 0) throw new Error(`convergence-torch: ${dropped} site contributions were dropped; logs in ${stateDir}/logs`);
  if (rounds.length !== s.rounds || rounds.some((r) => r.participants.length !== s.sites)) {
    throw new Error(`convergence-torch: expected ${s.rounds} committed rounds of ${s.sites} sites, saw ${rounds.map((r) => `${r.round}:${r.participants.length}`).join(' ')}`);
  }
  return { summary, rounds };
}

interface CentralResult {
  readonly lr: number;
  readonly evalLoss: number;
  readonly trainLoss: number;
  readonly seconds: number;
}

/** Centralised AdamW on the union from the federation's starting model, once per learning rate. */
async function centralSweep(s: Settings, stateDir: string, start: { model: string; config: string }, sites: readonly SiteFiles[], log: (line: string) => void): Promise<CentralResult[]> {
  const out: CentralResult[] = [];
  for (const lr of s.centralLrs) {
    const dir = join(stateDir, `central-${lr}`);
    const started = Date.now();
    const r = await centralRun(s.python, start.model, start.config, sites.map((x) => x.train), { steps: s.rounds * s.steps, batchPerFile: s.batch, seqLen: s.seqLen, lr, dataOrder: s.dataOrder, out: dir, minLrRatio: s.minLrRatio });
    const evalLoss = await unionEvalLoss(s.python, join(dir, 'model.safetensors'), start.config, sites);
    const seconds = (Date.now() - started) / 1000;
    out.push({ lr, evalLoss, trainLoss: r.trainLoss, seconds });
    log(`central: ${r.steps} steps × batch ${s.sites * s.batch}, lr ${lr}: eval ${evalLoss.toFixed(4)} (${seconds.toFixed(0)} s)`);
  }
  return out;
}

export const convergenceTorch: Benchmark = {
  async run(args, log) {
    const s = parseArgs(args);
    const t0 = Date.now();
    const siteLanguages = defaultSiteLanguages(s.sites);
    const languages = [...new Set(siteLanguages)];
    const totalTokens = s.sites * s.rounds * s.steps * s.batch * s.seqLen;
    log(
      `convergence-torch: ${s.sites} sites (${siteLanguages.join(', ')}; own language ${s.share}, others ${((1 - s.share) / Math.max(1, languages.length - 1)).toFixed(3)} each), ` +
        `torch_shard.py tiny model on CPU, ${s.pretrainSteps > 0 ? `pretrained ${s.pretrainSteps} steps on public text` : 'from seeded weights'}; ` +
        `${s.rounds} rounds × H ${s.steps} steps × batch ${s.batch} × seq ${s.seqLen}, inner AdamW lr ${s.lr}; DiLoCo outer lr ${s.outerLr}, Nesterov momentum ${s.outerMomentum}; ` +
        `secure aggregation ${s.secure ? 'on' : 'off'}; central: ${s.rounds * s.steps} steps × batch ${s.sites * s.batch}, lr ${s.centralLrs.join(' / ')}; ${totalTokens} tokens each`,
    );

    // The starting model and the sites' data, written where simulate() finds and keeps them.
    const stateDir = await mkdtemp(join(tmpdir(), 'fedhpc-bench-torch-'));
    const fed = join(stateDir, 'federation');
    let t = Date.now();
    const start = await startingModel(s, fed, languages, log);
    const pretrainSeconds = (Date.now() - t) / 1000;
    const { files: sites, bigram } = await siteData(s, fed, languages);

    t = Date.now();
    const { summary, rounds } = await dilocoRun(s, stateDir, log);
    const dilocoSeconds = (Date.now() - t) / 1000;
    const initialLoss = await unionEvalLoss(s.python, start.model, start.config, sites);
    if (Math.abs(summary.initialEvalLoss - initialLoss) > 1e-9 * initialLoss) {
      throw new Error(`convergence-torch: the federation scored the starting model ${summary.initialEvalLoss}, the benchmark ${initialLoss}: evaluations or data differ`);
    }

    t = Date.now();
    const central = await centralSweep(s, stateDir, start, sites, log);
    const centralSeconds = (Date.now() - t) / 1000;
    const best = central.reduce((a, b) => (b.evalLoss < a.evalLoss ? b : a));

    // Communication: what DiLoCo's transport counted, against per-step synchronous data parallelism.
    const params = await safetensorsParams(start.model);
    const bytesUp = rounds.reduce((n, r) => n + r.bytesUp, 0);
    const bytesDown = rounds.reduce((n, r) => n + r.bytesDown, 0);
    const dilocoBytes = bytesUp + bytesDown;
    const syncDpBytes = 2 * params * 4 * s.sites * s.rounds * s.steps;
    const commReduction = syncDpBytes / dilocoBytes;

    const dilocoOverCentralLoss = summary.finalEvalLoss / best.evalLoss;
    const seconds = (Date.now() - t0) / 1000;
    log(`starting eval ${initialLoss.toFixed(4)} (the federation's own: ${summary.initialEvalLoss.toFixed(4)}); bigram baseline on the sites' data ${bigram.toFixed(4)}`);
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
      dilocoEvalLossByRound: rounds.map((r) => r.evalLoss.toFixed(4)).join(','),
      startEvalLoss: initialLoss,
      bigramEvalLoss: bigram,
      ownLanguageShare: s.share,
      pretrainSteps: s.pretrainSteps,
      pretrainLr: s.pretrainLr,
      dilocoBytesUp: bytesUp,
      dilocoBytesDown: bytesDown,
      syncDataParallelBytes: syncDpBytes,
      modelParams: params,
      secureAggregation: s.secure,
      sites: s.sites,
      rounds: s.rounds,
      innerSteps: s.steps,
      batchSize: s.batch,
      centralBatchSize: s.sites * s.batch,
      centralSteps: s.rounds * s.steps,
      seqLen: s.seqLen,
      innerLr: s.lr,
      minLrRatio: s.minLrRatio,
      dataOrder: s.dataOrder,
      dilocoOuterLr: s.outerLr,
      dilocoOuterMomentum: s.outerMomentum,
      totalTokens,
      pretrainSeconds,
      dilocoSeconds,
      centralSeconds,
      seconds,
    };
  },
};
