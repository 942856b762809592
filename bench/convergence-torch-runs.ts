/**
 * The parts of `npm run bench -- convergence-torch` both its modes run (bench/convergence-torch.ts
 * has the protocol): the starting model, the sites' data, DiLoCo through the real federation,
 * centralised AdamW on the union and the evaluation that scores both alike.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, open, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { simulate, type SimulateOptions, type SimulateRecord, dominantMix, mixedTokens, TORCH_TRAIN, TORCH_TRAINER, torchInitialModel, writeMixedSiteTokens } from '../simulate/index.js';
import { bigramEvalLoss, VOCAB_SIZE, type Language } from '../site-agent/index.js';
import type { DataOrder, Settings } from './convergence-torch-args.js';

const exec = promisify(execFile);

/** Seed of the public pretraining text; the sites' seeds are 1..sites (and on, for more seeds). */
const PUBLIC_SEED = 1000;

/** The centralised trainer, beside this module in the source tree or two levels up from dist/bench. */
export function centralScript(): string {
  for (const rel of ['./fixtures/central_torch.py', '../../bench/fixtures/central_torch.py']) {
    const path = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(path)) return path;
  }
  throw new Error('convergence-torch: bench/fixtures/central_torch.py not found');
}

/** Number of parameters in a safetensors file (from its header). */
export async function safetensorsParams(path: string): Promise<number> {
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

export interface SiteFiles {
  readonly train: string;
  readonly heldout: string;
}

/** Held-out loss of the union as the federation scores it: each site's `--eval`, sample-weighted. */
export async function unionEvalLoss(python: string, model: string, config: string, sites: readonly SiteFiles[]): Promise<number> {
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

export type Summary = Extract<SimulateRecord, { type: 'summary' }>;
export type RoundLine = Extract<SimulateRecord, { type: 'round' }>;

/** Runs central_torch.py; returns its report after checking the tokens it trained on. */
export async function centralRun(
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
export async function startingModel(s: Settings, fed: string, languages: readonly Language[], log: (line: string) => void): Promise<{ model: string; config: string }> {
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

/**
 * Each site's token files, its own language dominant (`share`), the rest split evenly; site i's
 * text from seed `firstSeed + i` (1-based sites from seed 1 unless told otherwise).
 */
export async function siteData(s: Settings, fed: string, languages: readonly Language[], firstSeed = 1): Promise<{ files: SiteFiles[]; bigram: number }> {
  const files: SiteFiles[] = [];
  const train: Uint8Array[] = [];
  const heldout: Uint8Array[] = [];
  for (let i = 0; i < s.sites; i++) {
    const dir = join(fed, 'sites', `site-${i + 1}`);
    const tokens = await writeMixedSiteTokens(dir, languages, dominantMix(languages.length, i % languages.length, s.share), firstSeed + i);
    train.push(tokens.train);
    heldout.push(tokens.heldout);
    files.push({ train: join(dir, 'data', 'train.u32'), heldout: join(dir, 'data', 'heldout.u32') });
  }
  return { files, bigram: bigramEvalLoss(train, heldout, VOCAB_SIZE) };
}

/**
 * A DiLoCo run other than the default mode's: its name in the log, its `run.train`, weighting and
 * per-site data fields (simulate's `siteData`).
 */
export interface DilocoVariant {
  readonly label: string;
  readonly train: Readonly<Record<string, unknown>>;
  readonly weighting: SimulateOptions['weighting'];
  readonly siteData?: SimulateOptions['siteData'];
  /** The most tokens a site may declare a round (an overlapped sync may carry more than its budget). */
  readonly maxSiteWeight?: number;
}

/** DiLoCo through the real federation; returns its summary and committed rounds. */
export async function dilocoRun(s: Settings, stateDir: string, log: (line: string) => void, variant?: DilocoVariant): Promise<{ summary: Summary; rounds: RoundLine[] }> {
  const rounds: RoundLine[] = [];
  const label = variant?.label ?? 'diloco';
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
    train: variant?.train ?? { max_steps: s.steps, lr: s.lr, batch_size: s.batch, seq_len: s.seqLen, weight_decay: 0, warmup_steps: 0, decay_steps: s.rounds * s.steps, min_lr_ratio: s.minLrRatio, data_order: s.dataOrder },
    ...(variant ? { weighting: variant.weighting, siteData: variant.siteData, maxSiteWeight: variant.maxSiteWeight } : {}),
    secure: s.secure,
    cliPath: resolve('dist/cli/main.js'),
    timeoutS: 3600,
    emit: (r) => {
      if (r.type === 'start') log(`${label}: ${r.sites} sites, ${r.rounds} rounds; state in ${r.stateDir}`);
      if (r.type !== 'round') return;
      rounds.push(r);
      const note = r.dropped.length > 0 ? `; dropped ${r.dropped.join(', ')}` : '';
      const work = variant ? `, tokens ${Object.entries(r.work).map(([site, w]) => `${site} ${w.tokens}`).join(' ')}` : '';
      log(
        `  ${label} round ${String(r.round).padStart(2)}/${s.rounds}: eval ${r.evalLoss.toFixed(4)} (${r.participants.length} sites${work}, ` +
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

export interface CentralResult {
  readonly lr: number;
  readonly evalLoss: number;
  readonly trainLoss: number;
  readonly seconds: number;
}

/**
 * Centralised AdamW on the union from the federation's starting model, once per learning rate
 * (`s.centralLrs` unless `o.lrs`), rounds × steps steps (`o.steps` of them when given).
 */
export async function centralSweep(
  s: Settings,
  stateDir: string,
  start: { model: string; config: string },
  sites: readonly SiteFiles[],
  log: (line: string) => void,
  o: { readonly lrs?: readonly number[]; readonly steps?: number } = {},
): Promise<CentralResult[]> {
  const out: CentralResult[] = [];
  for (const lr of o.lrs ?? s.centralLrs) {
    const dir = join(stateDir, `central-${lr}`);
    const started = Date.now();
    const r = await centralRun(s.python, start.model, start.config, sites.map((x) => x.train), { steps: o.steps ?? s.rounds * s.steps, batchPerFile: s.batch, seqLen: s.seqLen, lr, dataOrder: s.dataOrder, out: dir, minLrRatio: s.minLrRatio });
    const evalLoss = await unionEvalLoss(s.python, join(dir, 'model.safetensors'), start.config, sites);
    const seconds = (Date.now() - started) / 1000;
    out.push({ lr, evalLoss, trainLoss: r.trainLoss, seconds });
    log(`central: ${r.steps} steps × batch ${s.sites * s.batch}, lr ${lr}: eval ${evalLoss.toFixed(4)} (${seconds.toFixed(0)} s)`);
  }
  return out;
}

