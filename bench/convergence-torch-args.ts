/**
 * The options of `npm run bench -- convergence-torch` (bench/convergence-torch.ts has the protocol),
 * parsed once into {@link Settings}, and the heterogeneous mode's plan: how speeds 1:2:3 become
 * token budgets on a machine where every site trains at the same speed.
 */
import { TORCH_TRAIN } from '../simulate/index.js';
import { LANGUAGES } from '../site-agent/index.js';

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
export const DEFAULTS = {
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

/** Central's sweep: its best of these counts (shuffled: 2e-3 0.826, 3e-3 0.824, 5e-3 0.822). */
export const DEFAULT_CENTRAL_LRS = [2e-3, 3e-3, 5e-3, 7e-3] as const;

/**
 * What `--heterogeneous` changes unless told otherwise: 8 rounds of the fastest site's 24 steps (2
 * federations and a central run per seed, 3 seeds: 13 minutes on 2 cores at load 2–7; 24 steps
 * split 8:16:24 at speeds 1:2:3), and central's sweep, run on the first seed only (its best serves
 * the others), around its best lr for this short run from the pretrained start. Measured on seed 1
 * (128 steps × batch 24, bench/RESULTS.md "After issue 16: heterogeneous budgets"): 5e-4 0.9030,
 * 7e-4 0.8960, 1e-3 0.8915, 2e-3 0.8952, 3e-3 0.9183, 5e-3 0.9369, 7e-3 1.0114 — lower than the
 * default mode's best (5e-3 over 600 steps).
 */
export const HETEROGENEOUS_DEFAULTS = { rounds: 8, steps: 24, seeds: 3, centralLrs: [7e-4, 1e-3, 2e-3] } as const;

/** How the trainers read their token files: torch_shard.py's `train.data_order`, central's `--data-order`. */
export const DATA_ORDERS = ['shuffled', 'sequential'] as const;
export type DataOrder = (typeof DATA_ORDERS)[number];

/**
 * The heterogeneous mode's sites: speeds expressed as token budgets. The run's budget T is the
 * fastest site's `steps` batches; site i trains the tokens its speed reaches meanwhile,
 * ⌊T · speed_i / max(speed) + ½⌋ (torch_shard.py's `data.token_budget_scale`), in ⌈tokens / batch⌉
 * steps. The fixed-step run gives every site the same steps, their mean, so both runs train the
 * same total tokens.
 */
export interface HeterogeneousPlan {
  readonly speeds: readonly number[];
  /** speed_i / max(speed): each site's `data.token_budget_scale`. */
  readonly scales: readonly number[];
  /** The run's token budget (`run.train.budget.tokens`): the fastest site's. */
  readonly budgetTokens: number;
  /** Steps each site takes a round under its scaled budget. */
  readonly budgetedSteps: readonly number[];
  /** Steps every site takes a round in the fixed-step run. */
  readonly fixedSteps: number;
  /** Tokens of one step, batch × seq_len. */
  readonly stepTokens: number;
}

export type PlanResult = { readonly ok: true; readonly value: HeterogeneousPlan } | { readonly ok: false; readonly issues: readonly string[] };

/** The plan of {@link HeterogeneousPlan} for `speeds` and the fastest site's `steps` a round. */
export function heterogeneousPlan(speeds: readonly number[], steps: number, batch: number, seqLen: number): PlanResult {
  const issues: string[] = [];
  if (speeds.length < 2) issues.push(`heterogeneous sites need at least 2 speeds, got ${speeds.length}`);
  if (speeds.some((v) => !(v > 0 && Number.isFinite(v)))) issues.push(`every speed must be a positive number, got ${speeds.join(',')}`);
  if (issues.length > 0) return { ok: false, issues };
  const fastest = Math.max(...speeds);
  const stepTokens = batch * seqLen;
  const budgetTokens = steps * stepTokens;
  const scales = speeds.map((v) => v / fastest);
  // torch_shard.py's rule for a scaled token budget, then its ⌈T / tokens a step⌉.
  const budgetedSteps = scales.map((f) => Math.ceil(Math.max(1, Math.floor(budgetTokens * f + 0.5)) / stepTokens));
  const total = budgetedSteps.reduce((a, b) => a + b, 0);
  if (total % speeds.length !== 0) {
    return {
      ok: false,
      issues: [`at ${steps} steps for the fastest site, speeds ${speeds.join(':')} give ${budgetedSteps.join('+')} = ${total} steps a round, which ${speeds.length} sites cannot share equally: choose --steps so that they can (e.g. a multiple of ${speeds.length})`],
    };
  }
  return { ok: true, value: { speeds, scales, budgetTokens, budgetedSteps, fixedSteps: total / speeds.length, stepTokens } };
}

export type Settings = { -readonly [K in keyof typeof DEFAULTS]: number } & {
  dataOrder: DataOrder;
  centralLrs: number[];
  python: string;
  secure: boolean;
  keep: boolean;
  /** `--heterogeneous SPEEDS`: budgeted against fixed-step runs over `seeds` seeds; undefined in the default mode. */
  heterogeneous: { readonly plan: HeterogeneousPlan; readonly seeds: number; readonly overlap: boolean } | undefined;
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
const OTHER_FLAGS = ['--data-order', '--central-lr', '--heterogeneous', '--seeds', '--overlap', '--python', '--no-secure', '--keep'];

/** A usage error of the benchmark's options. */
export class ConvergenceTorchUsageError extends Error {
  readonly code = 'BENCH_USAGE';
}

function usage(message: string): ConvergenceTorchUsageError {
  return new ConvergenceTorchUsageError(`convergence-torch: ${message}`);
}

function positive(flag: string, text: string | undefined, integer: boolean, zero = false): number {
  const value = Number(text);
  const valid =
    text !== undefined && text.trim() !== '' && Number.isFinite(value) && (value > 0 || (zero && value === 0)) && (!integer || Number.isSafeInteger(value));
  if (!valid) throw usage(`${flag} needs a ${zero ? 'non-negative' : 'positive'} ${integer ? 'integer' : 'number'}, got ${text ?? 'nothing'}`);
  return value;
}

/** Parses the benchmark's arguments (without `--json`); throws {@link ConvergenceTorchUsageError} for bad ones. */
export function parseConvergenceTorchArgs(args: readonly string[]): Settings {
  const s: Settings = { ...DEFAULTS, dataOrder: 'shuffled', centralLrs: [...DEFAULT_CENTRAL_LRS], python: '/usr/bin/python3', secure: true, keep: false, heterogeneous: undefined };
  const given = new Set<string>();
  let speeds: number[] | undefined;
  let seeds: number | undefined;
  let overlap = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--keep' || arg === '--no-secure' || arg === '--overlap') {
      if (arg === '--keep') s.keep = true;
      else if (arg === '--overlap') overlap = true;
      else s.secure = false;
      continue;
    }
    const [flag, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const text = (): string | undefined => inline ?? args[++i];
    given.add(flag);
    if (flag === '--python') {
      const value = text();
      if (!value) throw usage('--python needs a path');
      s.python = value;
      continue;
    }
    if (flag === '--data-order') {
      const value = text();
      if (!DATA_ORDERS.includes(value as DataOrder)) throw usage(`--data-order must be one of ${DATA_ORDERS.join(', ')}, got ${value ?? 'nothing'}`);
      s.dataOrder = value as DataOrder;
      continue;
    }
    if (flag === '--central-lr') {
      const value = text();
      s.centralLrs = (value ?? '').split(',').map((v) => positive(flag, v, false));
      continue;
    }
    if (flag === '--heterogeneous') {
      const value = text();
      speeds = (value ?? '').split(',').map((v) => positive(flag, v, false));
      continue;
    }
    if (flag === '--seeds') {
      seeds = positive(flag, text(), true);
      continue;
    }
    const key = FLAGS[flag];
    if (key === undefined) throw usage(`unknown option ${arg} (known: ${[...Object.keys(FLAGS), ...OTHER_FLAGS].join(', ')})`);
    s[key] = positive(flag, text(), INTEGER_SETTINGS.has(key), key === 'pretrainSteps');
  }
  if (speeds !== undefined) {
    if (given.has('--sites') && s.sites !== speeds.length) throw usage(`--sites ${s.sites} disagrees with ${speeds.length} speeds in --heterogeneous`);
    // A cosine over the run counts each site's steps a round, which differ here: the lr stays constant.
    if (given.has('--min-lr-ratio')) throw usage('--min-lr-ratio does not apply with --heterogeneous (its sites take different steps a round; the lr stays constant)');
    s.sites = speeds.length;
    if (!given.has('--rounds')) s.rounds = HETEROGENEOUS_DEFAULTS.rounds;
    if (!given.has('--steps')) s.steps = HETEROGENEOUS_DEFAULTS.steps;
    if (!given.has('--central-lr')) s.centralLrs = [...HETEROGENEOUS_DEFAULTS.centralLrs];
    const plan = heterogeneousPlan(speeds, s.steps, s.batch, s.seqLen);
    if (!plan.ok) throw usage(plan.issues.join('; '));
    s.heterogeneous = { plan: plan.value, seeds: seeds ?? HETEROGENEOUS_DEFAULTS.seeds, overlap };
  } else if (seeds !== undefined) {
    throw usage('--seeds needs --heterogeneous (the default mode runs one seed)');
  } else if (overlap) {
    throw usage('--overlap needs --heterogeneous (the overlapped run is compared with its budgeted run)');
  }
  if (s.minLrRatio > 1) throw usage(`--min-lr-ratio must be at most 1, got ${s.minLrRatio}`);
  if (s.outerMomentum >= 1) throw usage(`--outer-momentum must be below 1, got ${s.outerMomentum}`);
  const languages = Math.min(s.sites, LANGUAGES.length);
  if (s.share > 1 || s.share < 1 / languages) throw usage(`--share must lie in [1/${languages}, 1], got ${s.share}`);
  return s;
}
