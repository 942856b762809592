/**
 * `npm run bench -- convergence-torch [--rounds R] [--steps H] [--batch B] [--seq-len L] [--lr LR]
 * [--central-lr LR[,LR…]] [--outer-lr A] [--outer-momentum M] [--sites N] [--share S]
 * [--pretrain-steps P] [--pretrain-lr LR] [--data-order shuffled|sequential] [--python PY]
 * [--no-secure] [--keep] [--heterogeneous SPEEDS [--seeds N]]`: DiLoCo with the
 * PyTorch reference trainer (`torch_shard.py`) on non-IID sites, against centralised AdamW on the
 * union of their data with the same total tokens, and the communication DiLoCo saves over per-step
 * synchronous data parallelism. `--heterogeneous 1,2,3` runs the other mode instead: sites of
 * unequal speed on token budgets against fixed-step DiLoCo (bench/convergence-torch-hetero.ts);
 * the options and defaults are in bench/convergence-torch-args.ts, the shared runs in
 * bench/convergence-torch-runs.ts.
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
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultSiteLanguages } from '../site-agent/index.js';
import { parseConvergenceTorchArgs } from './convergence-torch-args.js';
import { heterogeneousConvergence } from './convergence-torch-hetero.js';
import { centralSweep, dilocoRun, safetensorsParams, siteData, startingModel, unionEvalLoss } from './convergence-torch-runs.js';
import type { Benchmark } from './registry.js';

export const convergenceTorch: Benchmark = {
  async run(args, log) {
    const s = parseConvergenceTorchArgs(args);
    if (s.heterogeneous) return heterogeneousConvergence(s, s.heterogeneous, log);
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
