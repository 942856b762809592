/**
 * `npm run bench -- convergence-torch --heterogeneous 1,2,3 [--seeds 3] [--rounds R] [--steps H] …`
 * (issue 16): sites of unequal speed trained to token budgets, against fixed-step DiLoCo at equal
 * total tokens, both through the real federation with token weighting and secure aggregation (unless
 * `--no-secure`), and both against centralised AdamW on the union.
 *
 * On this machine every site trains at the same speed, so speeds are expressed as token budgets:
 * the run's budget T (`run.train.budget.tokens`) is the fastest site's H steps of batch × seq_len
 * tokens, and site i trains ⌊T · speed_i / max(speed) + ½⌋ tokens — torch_shard.py's
 * `data.token_budget_scale`, passed through each site's runner `data` (simulate's `siteData`), a
 * benchmark stand-in for a slower accelerator. No site declares more than T, so the coordinator's
 * checks (maxSiteWeight and the cap of T plus one batch) hold as they are.
 *
 * Per seed, with the same rounds, start, data and settings:
 * - budgeted: each site trains its scaled budget a round (speeds 1:2:3 at H 24: 8, 16, 24 steps);
 * - fixed: every site trains the mean of those steps (16), so both runs train the same tokens;
 * - central: `central_torch.py` on the union, rounds × that mean steps × batch N·B: the same tokens
 *   again. Its lr sweep (`--central-lr`) runs on the first seed only; its best serves the others.
 * The benchmark checks every committed round's tokens per site against the plan.
 *
 * Seeds: seed k gives the sites the data seeds (k−1)·N + 1 … k·N (seed 1 is the default mode's
 * data): each site's training and held-out text, its blocks of languages and with them the
 * shuffled window order (keyed by the file's SHA-256). The pretrained starting model (public text
 * and initial weights) is one for all seeds, pretrained once.
 *
 * `--overlap` adds a third federation per seed (issue 17): the budgeted run with persistent
 * trainers (`train.overlap`), which train on through each sync; a sync whose global comes back
 * late carries more than its budget, so this run trains more tokens in its rounds (reported).
 *
 * Figures (means over seeds, with each seed's value and the spread):
 * - `budgetOverFixedLoss`: final held-out loss of the budgeted run ÷ the fixed-step run's.
 * - `dilocoOverCentralLoss`: the budgeted run's ÷ central's (`fixedOverCentralLoss`: the fixed one's).
 * - `overlapOverSyncLoss` (`--overlap`): the overlapped run's ÷ the budgeted run's, with its tokens
 *   and wall time over the budgeted run's and the largest applied staleness.
 */
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultSiteLanguages } from '../site-agent/index.js';
import type { HeterogeneousPlan, Settings } from './convergence-torch-args.js';
import { centralSweep, dilocoRun, siteData, startingModel, unionEvalLoss, type CentralResult, type DilocoVariant, type RoundLine } from './convergence-torch-runs.js';

type Figures = Record<string, number | string | boolean>;

/** An overlapped sync may carry at most this many budgets' tokens (`run.maxSiteWeight`). */
const OVERLAP_WEIGHT_BUDGETS = 40;

/** One seed's final held-out losses. */
interface SeedResult {
  readonly seed: number;
  readonly budgeted: number;
  readonly fixed: number;
  readonly central: CentralResult;
  readonly startEvalLoss: number;
  readonly budgetedSeconds: number;
  readonly fixedSeconds: number;
  /** `--overlap`: the overlapped run's final loss, its seconds, its tokens ÷ the budgeted run's, its largest applied staleness. */
  readonly overlapped?: { readonly loss: number; readonly seconds: number; readonly tokensOverBudgeted: number; readonly maxAppliedStaleness: number };
}

/** The two federation runs of a seed: run.train and per-site data of each. */
function variants(s: Settings, plan: HeterogeneousPlan): { budgeted: DilocoVariant; fixed: DilocoVariant; overlapped: DilocoVariant } {
  // torch_shard.py's settings as in the default mode, without a cosine (sites take different steps).
  const common = { lr: s.lr, batch_size: s.batch, seq_len: s.seqLen, weight_decay: 0, warmup_steps: 0, data_order: s.dataOrder };
  return {
    budgeted: {
      label: 'budgeted',
      train: { ...common, budget: { tokens: plan.budgetTokens } },
      weighting: 'tokens',
      siteData: plan.scales.map((f) => ({ token_budget_scale: f })),
    },
    fixed: { label: 'fixed', train: { ...common, max_steps: plan.fixedSteps }, weighting: 'tokens' },
    // The budgeted run with persistent trainers that train on through each sync (issue 17): a sync
    // whose global comes back late carries more than its budget, so the weight cap is the run's
    // budget many times over (a sync on these CPUs takes several budgets' time).
    overlapped: {
      label: 'overlapped',
      train: { ...common, budget: { tokens: plan.budgetTokens }, overlap: { mode: 'whole-model' } },
      weighting: 'tokens',
      siteData: plan.scales.map((f) => ({ token_budget_scale: f })),
      maxSiteWeight: OVERLAP_WEIGHT_BUDGETS * plan.budgetTokens,
    },
  };
}

/** Refuses a run whose committed rounds did not train the planned tokens per site. */
/** Tokens committed over a run's rounds, all sites. */
function tokensOf(rounds: readonly RoundLine[]): number {
  return rounds.reduce((sum, r) => sum + Object.values(r.work).reduce((a, w) => a + w.tokens, 0), 0);
}

/** Refuses an overlapped run a sync of which trained less than its site's budget. */
function checkAtLeast(label: string, rounds: readonly RoundLine[], budgets: readonly number[]): void {
  for (const r of rounds) {
    const seen = budgets.map((_, i) => r.work[`site-${i + 1}`]?.tokens ?? 0);
    if (seen.some((t, i) => t < budgets[i]!)) throw new Error(`convergence-torch: ${label} round ${r.round} trained ${seen.join(', ')} tokens per site, below the budgets ${budgets.join(', ')}`);
  }
}

function checkTokens(label: string, rounds: readonly RoundLine[], expected: readonly number[]): void {
  for (const r of rounds) {
    const seen = expected.map((_, i) => r.work[`site-${i + 1}`]?.tokens);
    if (seen.some((t, i) => t !== expected[i])) {
      throw new Error(`convergence-torch: ${label} round ${r.round} trained ${seen.join(', ')} tokens per site, planned ${expected.join(', ')}`);
    }
  }
}

/** Mean, sample standard deviation, min and max. */
function spread(values: readonly number[]): { mean: number; std: number; min: number; max: number } {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const variance = values.length > 1 ? values.reduce((a, v) => a + (v - mean) ** 2, 0) / (values.length - 1) : 0;
  return { mean, std: Math.sqrt(variance), min: Math.min(...values), max: Math.max(...values) };
}

const bySeed = (results: readonly SeedResult[], f: (r: SeedResult) => number): string => results.map((r) => `${r.seed}:${f(r).toFixed(4)}`).join(',');

/** Runs the heterogeneous mode: per seed a budgeted and a fixed-step federation and central AdamW. */
export async function heterogeneousConvergence(s: Settings, h: { readonly plan: HeterogeneousPlan; readonly seeds: number; readonly overlap?: boolean }, log: (line: string) => void): Promise<Figures> {
  const t0 = Date.now();
  const { plan, seeds } = h;
  const siteLanguages = defaultSiteLanguages(s.sites);
  const languages = [...new Set(siteLanguages)];
  const centralSteps = s.rounds * plan.fixedSteps;
  const totalTokens = centralSteps * s.sites * plan.stepTokens;
  const budgets = plan.budgetedSteps.map((n) => n * plan.stepTokens);
  log(
    `convergence-torch --heterogeneous: ${s.sites} sites (${siteLanguages.join(', ')}; own language ${s.share}) at speeds ${plan.speeds.join(':')}, ${seeds} seeds; ` +
      `${s.rounds} rounds; run budget ${plan.budgetTokens} tokens (${s.steps} steps × batch ${s.batch} × seq ${s.seqLen}); ` +
      `budgeted: ${plan.budgetedSteps.join(' / ')} steps (scales ${plan.scales.map((f) => f.toFixed(3)).join(' / ')}), fixed: ${plan.fixedSteps} steps each; ` +
      `token weighting, inner AdamW lr ${s.lr}, outer ${s.outerLr} / ${s.outerMomentum}, secure aggregation ${s.secure ? 'on' : 'off'}; ` +
      `central ${centralSteps} steps × batch ${s.sites * s.batch}, lr ${s.centralLrs.join(' / ')} on seed 1; ${totalTokens} tokens each`,
  );
  const root = await mkdtemp(join(tmpdir(), 'fedhpc-bench-torch-hetero-'));
  let t = Date.now();
  const start = await startingModel(s, join(root, 'start', 'federation'), languages, log);
  const pretrainSeconds = (Date.now() - t) / 1000;
  const runs = variants(s, plan);
  const results: SeedResult[] = [];
  let centralLrs: readonly number[] = s.centralLrs;
  for (let seed = 1; seed <= seeds; seed++) {
    const firstSeed = (seed - 1) * s.sites + 1;
    const seedDir = join(root, `seed-${seed}`);
    const runOne = async (v: DilocoVariant, expected: readonly number[] | undefined) => {
      const stateDir = join(seedDir, v.label);
      const fed = join(stateDir, 'federation');
      // The shared start where simulate() finds and keeps it, and this seed's data.
      await mkdir(join(fed, 'torch-init'), { recursive: true });
      await copyFile(start.model, join(fed, 'torch-init', 'model.safetensors'));
      await copyFile(start.config, join(fed, 'torch-init', 'config.json'));
      const data = await siteData(s, fed, languages, firstSeed);
      const began = Date.now();
      const run = await dilocoRun(s, stateDir, log, v);
      // An overlapped sync trains at least its budget, more when its global comes late.
      if (expected) checkTokens(`seed ${seed} ${v.label}`, run.rounds, expected);
      else checkAtLeast(`seed ${seed} ${v.label}`, run.rounds, budgets);
      return { ...run, data, seconds: (Date.now() - began) / 1000 };
    };
    log(`seed ${seed}: site data seeds ${firstSeed}..${firstSeed + s.sites - 1}`);
    const budgeted = await runOne(runs.budgeted, budgets);
    const fixed = await runOne(runs.fixed, plan.budgetedSteps.map(() => plan.fixedSteps * plan.stepTokens));
    const overlapped = h.overlap ? await runOne(runs.overlapped, undefined) : undefined;
    const sites = budgeted.data.files;
    const startEvalLoss = await unionEvalLoss(s.python, start.model, start.config, sites);
    for (const [label, run] of [['budgeted', budgeted], ['fixed', fixed], ...(overlapped ? [['overlapped', overlapped] as const] : [])] as const) {
      if (Math.abs(run.summary.initialEvalLoss - startEvalLoss) > 1e-9 * startEvalLoss) {
        throw new Error(`convergence-torch: seed ${seed}'s ${label} federation scored the starting model ${run.summary.initialEvalLoss}, the benchmark ${startEvalLoss}: evaluations or data differ`);
      }
    }
    t = Date.now();
    const central = await centralSweep(s, seedDir, start, sites, log, { lrs: centralLrs, steps: centralSteps });
    const best = central.reduce((a, b) => (b.evalLoss < a.evalLoss ? b : a));
    centralLrs = [best.lr]; // the first seed's sweep chooses for the others
    const r: SeedResult = {
      seed,
      budgeted: budgeted.summary.finalEvalLoss,
      fixed: fixed.summary.finalEvalLoss,
      central: { ...best, seconds: (Date.now() - t) / 1000 },
      startEvalLoss,
      budgetedSeconds: budgeted.seconds,
      fixedSeconds: fixed.seconds,
      ...(overlapped
        ? {
            overlapped: {
              loss: overlapped.summary.finalEvalLoss,
              seconds: overlapped.seconds,
              tokensOverBudgeted: tokensOf(overlapped.rounds) / tokensOf(budgeted.rounds),
              maxAppliedStaleness: Math.max(0, ...overlapped.rounds.flatMap((x) => Object.values(x.work).map((w) => w.appliedStaleness ?? 0))),
            },
          }
        : {}),
    };
    results.push(r);
    log(
      `seed ${seed}: budgeted ${r.budgeted.toFixed(4)}, fixed ${r.fixed.toFixed(4)} (÷ ${(r.budgeted / r.fixed).toFixed(4)}), central ${best.evalLoss.toFixed(4)} (lr ${best.lr}); ` +
        `start ${startEvalLoss.toFixed(4)}; ${budgeted.seconds.toFixed(0)} s + ${fixed.seconds.toFixed(0)} s + ${r.central.seconds.toFixed(0)} s`,
    );
  }
  const ratio = spread(results.map((r) => r.budgeted / r.fixed));
  const overCentral = spread(results.map((r) => r.budgeted / r.central.evalLoss));
  const fixedOverCentral = spread(results.map((r) => r.fixed / r.central.evalLoss));
  const seconds = (Date.now() - t0) / 1000;
  log(
    `budgetOverFixedLoss ${ratio.mean.toFixed(4)} (min ${ratio.min.toFixed(4)}, max ${ratio.max.toFixed(4)}, std ${ratio.std.toFixed(4)}); ` +
      `budgeted ÷ central ${overCentral.mean.toFixed(4)}, fixed ÷ central ${fixedOverCentral.mean.toFixed(4)}; total ${seconds.toFixed(0)} s`,
  );
  const withOverlap = results.filter((r) => r.overlapped !== undefined);
  const overlapFigures: Figures = {};
  if (withOverlap.length > 0) {
    const o = spread(withOverlap.map((r) => r.overlapped!.loss / r.budgeted));
    Object.assign(overlapFigures, {
      overlapOverSyncLoss: o.mean,
      overlapOverSyncLossMin: o.min,
      overlapOverSyncLossMax: o.max,
      overlapOverSyncLossStd: o.std,
      overlapOverSyncLossBySeed: bySeed(withOverlap, (r) => r.overlapped!.loss / r.budgeted),
      overlapTokensOverSyncBySeed: bySeed(withOverlap, (r) => r.overlapped!.tokensOverBudgeted),
      overlapSecondsOverSyncBySeed: bySeed(withOverlap, (r) => r.overlapped!.seconds / r.budgetedSeconds),
      overlapMaxAppliedStaleness: Math.max(...withOverlap.map((r) => r.overlapped!.maxAppliedStaleness)),
      overlappedEvalLossBySeed: bySeed(withOverlap, (r) => r.overlapped!.loss),
    });
    log(
      `overlapOverSyncLoss ${o.mean.toFixed(4)} (min ${o.min.toFixed(4)}, max ${o.max.toFixed(4)}, std ${o.std.toFixed(4)}; target ≤ 1.02); ` +
        `tokens overlapped ÷ budgeted ${String(overlapFigures['overlapTokensOverSyncBySeed'])}, wall ${String(overlapFigures['overlapSecondsOverSyncBySeed'])}, ` +
        `largest applied staleness ${String(overlapFigures['overlapMaxAppliedStaleness'])} steps`,
    );
  }
  if (!s.keep) await rm(root, { recursive: true, force: true });
  return {
    mode: 'heterogeneous',
    ...overlapFigures,
    budgetOverFixedLoss: ratio.mean,
    budgetOverFixedLossMin: ratio.min,
    budgetOverFixedLossMax: ratio.max,
    budgetOverFixedLossStd: ratio.std,
    budgetOverFixedLossBySeed: bySeed(results, (r) => r.budgeted / r.fixed),
    dilocoOverCentralLoss: overCentral.mean,
    dilocoOverCentralLossMax: overCentral.max,
    dilocoOverCentralLossBySeed: bySeed(results, (r) => r.budgeted / r.central.evalLoss),
    fixedOverCentralLoss: fixedOverCentral.mean,
    fixedOverCentralLossBySeed: bySeed(results, (r) => r.fixed / r.central.evalLoss),
    budgetedEvalLossBySeed: bySeed(results, (r) => r.budgeted),
    fixedEvalLossBySeed: bySeed(results, (r) => r.fixed),
    centralEvalLossBySeed: bySeed(results, (r) => r.central.evalLoss),
    startEvalLossBySeed: bySeed(results, (r) => r.startEvalLoss),
    centralLr: results[0]?.central.lr ?? 0,
    centralLrsSwept: s.centralLrs.join(','),
    speeds: plan.speeds.join(','),
    seeds,
    siteDataSeeds: results.map((r) => `${(r.seed - 1) * s.sites + 1}-${r.seed * s.sites}`).join(','),
    budgetTokens: plan.budgetTokens,
    budgetedSteps: plan.budgetedSteps.join(','),
    fixedSteps: plan.fixedSteps,
    weighting: 'tokens',
    secureAggregation: s.secure,
    sites: s.sites,
    rounds: s.rounds,
    batchSize: s.batch,
    seqLen: s.seqLen,
    innerLr: s.lr,
    dilocoOuterLr: s.outerLr,
    dilocoOuterMomentum: s.outerMomentum,
    ownLanguageShare: s.share,
    pretrainSteps: s.pretrainSteps,
    dataOrder: s.dataOrder,
    centralSteps,
    centralBatchSize: s.sites * s.batch,
    totalTokens,
    pretrainSeconds,
    federationSeconds: results.reduce((n, r) => n + r.budgetedSeconds + r.fixedSeconds, 0),
    centralSeconds: results.reduce((n, r) => n + r.central.seconds, 0),
    seconds,
  };
}
