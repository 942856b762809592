/**
 * `npm run bench -- heterogeneity [--json] [--params 100000000] [--rounds 3] [--speeds 1,2,3]
 * [--steps 20] [--step-ms 1000] [--mbps 100] [--delay-ms 15] [--checkpoint-dtype bf16] [--profile DIR]`: what budgeted rounds save on sites of
 * unequal speed (issue 16). A real federation — the coordinator and one agent per site, each a
 * process of the built CLI, gRPC over mTLS — on a synthetic model of `--params` F32 parameters (so
 * downloading, uploading and aggregating it costs real time), each site behind its own link of
 * `--mbps` MB/s each way with `--delay-ms` one-way delay (bench/tools/delay-proxy.ts in its own
 * process: a WAN stand-in on a machine without netem). The sites train with the `standin` runner,
 * which spends its steps sleeping (`--step-ms` ÷ speed each), as a GPU would leave the CPU, and
 * writes real progress timestamps; plain bf16 uploads. The run keeps its checkpoints in bf16 by
 * default (`--checkpoint-dtype`; the coordinator's f32 master weights stay beside them) and the
 * stand-ins write BF16 local models, as a federation of language models would: every site
 * downloads, writes and reads half the bytes of an f32 model.
 *
 * Two runs in one process, the same federation settings:
 * - fixed: every site trains `--steps` steps per round (today's lock-step rounds);
 * - budget: every site trains for `--steps` × `--step-ms` ms per round (`train.budget.seconds`),
 *   the time the slowest site (speed 1) needs for the fixed steps, so both runs wait equally long
 *   for their slowest site.
 *
 * Figures, over rounds 2.. of each run (round 1 also pays the agents' start-up):
 * - `minBusyFractionFixed`, `minBusyFractionBudget`: the least busy site's mean busy fraction
 *   (first to last training step ÷ the round's wall time, as the coordinator reports it);
 * - `tokensPerSBudgetOverFixed`: whole-federation tokens per wall second, budget ÷ fixed. With
 *   speeds 1:2:3 and a free sync it would be exactly (1+2+3)/(3·1) = 2.0.
 *
 * A third run, overlap (issue 17): the budget run's settings with `train.overlap` — persistent
 * stand-in trainers that train on through each sync (docs/protocol.md, "The persistent trainer").
 * - `minBusyFractionOverlap`: the least busy site's busy fraction from its trainer's own step
 *   timestamps (Σ step durations in progress.jsonl ÷ wall time, rounds 2..);
 * - `tokensPerSOverlapOverFixed`: tokens per wall second, overlap ÷ fixed (target ≥ 2.0);
 * - `maxAppliedStaleness`: the most steps a sync's global was applied late, against τ, the steps of
 *   one budget at the fastest site's pace.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { freeLoopbackPort } from '../common/net.js';
import { AdminClient } from '../coordinator/index.js';
import { writeFederationFiles } from '../simulate/index.js';
import type { Benchmark } from './registry.js';
import { patchJson, startProc, stopProc, type Proc } from './tools/bench-federation.js';
import { startProxyPeer } from './tools/peers.js';
import { blockModel, writeSyntheticModel } from './tools/synthetic-model.js';
import { fixed, intArg, textArg } from './tools/upload-setup.js';

const BATCH = 8;
const SEQ_LEN = 512;

interface RunFigures {
  /** Per site: mean busy fraction over the measured rounds. */
  readonly busy: Map<string, number>;
  readonly tokens: number;
  readonly wallS: number;
  /** Per site: mean tokens per measured round. */
  readonly siteTokens: Map<string, number>;
  readonly roundS: number[];
  /** The largest applied staleness a committed upload reported (overlapped runs; 0 otherwise). */
  readonly maxAppliedStaleness: number;
  /**
   * Per site: busy fraction from its trainer's own step timestamps over the measured rounds (Σ
   * step durations ÷ wall time), read from a persistent trainer's progress.jsonl; empty otherwise.
   */
  readonly stepBusy: Map<string, number>;
}

interface Setup {
  readonly root: string;
  readonly modelPath: string;
  readonly sites: readonly string[];
  readonly speeds: readonly number[];
  readonly rounds: number;
  readonly steps: number;
  readonly stepMs: number;
  readonly bytesPerS: number;
  readonly delayMs: number;
  /** The run's checkpoint dtype (`--checkpoint-dtype`): what every site downloads each round. */
  readonly checkpointDtype: 'f32' | 'bf16';
  /** `--profile DIR`: every process of the run writes a V8 CPU profile under DIR/<run>/. */
  readonly profileDir: string | undefined;
  readonly log: (line: string) => void;
}

/** One run of `rounds` rounds with `train`; returns the figures of rounds 2.. . */
async function runFederation(s: Setup, name: string, train: Record<string, unknown>, maxSiteWeight: number): Promise<RunFigures> {
  const dir = join(s.root, name);
  const logDir = join(dir, 'logs');
  await mkdir(logDir, { recursive: true });
  const port = await freeLoopbackPort();
  const files = await writeFederationFiles({
    dir: join(dir, 'federation'),
    federation: 'bench',
    sites: [...s.sites],
    admins: ['admin'],
    coordinatorAddress: `localhost:${port}`,
    listen: `127.0.0.1:${port}`,
    run: {
      id: `heterogeneity-${name}`,
      rounds: s.rounds,
      minSites: s.sites.length,
      expectedSites: [...s.sites],
      strategy: { name: 'fedavg', lr: 1 },
      weighting: 'tokens',
      maxSiteWeight,
      encoding: 'bf16',
      checkpointDtype: s.checkpointDtype,
      evaluate: false,
      secureAggregation: { enabled: false },
      train,
      deadlines: { openS: 120, trainingS: 600, uploadS: 600, aggregateS: 600, commitS: 600 },
    },
  });
  await patchJson(files.coordinatorConfig, (c) => ({ ...c, model: { initial: s.modelPath } }));
  const proxies: { stop(): void }[] = [];
  const procs: Proc[] = [];
  const workDirs = new Map<string, string>();
  const adminDir = join(dir, 'federation', 'admins', 'admin');
  const admin = new AdminClient({ coordinator: `localhost:${port}`, tls: { ca: join(adminDir, 'ca.crt'), cert: join(adminDir, 'admin.crt'), key: join(adminDir, 'admin.key') } });
  try {
    for (const [i, site] of s.sites.entries()) {
      const proxy = await startProxyPeer(port, s.delayMs, s.bytesPerS);
      proxies.push(proxy);
      const file = files.siteConfigs.get(site)!;
      const cfg = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
      workDirs.set(site, resolve(dirname(file), String(cfg['workDir'])));
      // BF16 local models, as a GPU trainer of a language model writes them (outputDtype).
      const runner = { kind: 'standin', speed: s.speeds[i]!, stepMs: s.stepMs, seed: i + 1, outputDtype: 'BF16' };
      await writeFile(file, `${JSON.stringify({ ...cfg, coordinator: `localhost:${proxy.port}`, runner }, null, 2)}\n`, { mode: 0o600 });
    }
    const nodeArgs = s.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${join(s.profileDir, name)}`] : [];
    const coordinator = await startProc('coordinator', ['coordinator', '--config', files.coordinatorConfig], logDir, nodeArgs);
    procs.push(coordinator);
    await admin.waitForReady(Date.now() + 600_000);
    for (const site of s.sites) procs.push(await startProc(site, ['site', '--config', files.siteConfigs.get(site)!], logDir, nodeArgs));
    const deadline = Date.now() + (s.rounds * (s.steps * s.stepMs + 300_000) + 300_000);
    for (;;) {
      const st = await admin.status();
      if (st.runState === 'finished') break;
      if (st.runState === 'failed' || st.runState === 'aborted') throw new Error(`heterogeneity ${name}: the run ${st.runState}; logs in ${logDir}`);
      if (Date.now() > deadline) throw new Error(`heterogeneity ${name}: not finished in time; logs in ${logDir}`);
      if (coordinator.child.exitCode !== null) throw new Error(`heterogeneity ${name}: the coordinator exited; logs in ${logDir}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    const { rounds } = await admin.rounds();
    const committed = rounds.filter((r) => r.outcome === 'committed').sort((a, b) => Number(a.round) - Number(b.round));
    const busy = new Map<string, number[]>();
    const siteTokens = new Map<string, number[]>();
    let tokens = 0;
    let maxAppliedStaleness = 0;
    const roundS: number[] = [];
    for (let i = 1; i < committed.length; i++) {
      const r = committed[i]!;
      const wall = (Number(r.finishedMs) - Number(committed[i - 1]!.finishedMs)) / 1000;
      roundS.push(wall);
      const detail = await admin.round(Number(r.round));
      const attempt = detail.attempts.find((a) => a.outcome === 'committed')!;
      for (const p of attempt.participants) {
        tokens += Number(p.tokens);
        maxAppliedStaleness = Math.max(maxAppliedStaleness, p.appliedStaleness ?? 0);
        (busy.get(p.siteId) ?? busy.set(p.siteId, []).get(p.siteId)!).push(p.busyFraction);
        (siteTokens.get(p.siteId) ?? siteTokens.set(p.siteId, []).get(p.siteId)!).push(Number(p.tokens));
      }
      const phases = attempt.phases.map((p) => `${p.phase} ${(Number(p.durationMs) / 1000).toFixed(1)}`).join(', ');
      s.log(`  ${name} round ${r.round}: ${wall.toFixed(1)} s (${phases}); ${attempt.participants.map((p) => `${p.siteId} ${p.tokens} tok busy ${(p.busyFraction * 100).toFixed(0)}%`).join(', ')}`);
    }
    const mean = (v: readonly number[]): number => v.reduce((a, b) => a + b, 0) / v.length;
    const from = Number(committed[0]!.finishedMs);
    const to = Number(committed[committed.length - 1]!.finishedMs);
    const stepBusy = new Map<string, number>();
    for (const site of s.sites) {
      const lines = await readFile(join(workDirs.get(site)!, 'persistent', `heterogeneity-${name}`, 'progress.jsonl'), 'utf8').catch(() => undefined);
      if (lines === undefined) continue;
      let busyMs = 0;
      for (const l of lines.trim().split('\n')) {
        const p = JSON.parse(l) as { ts: number; stepMs: number };
        if (p.ts > from && p.ts <= to) busyMs += p.stepMs;
      }
      stepBusy.set(site, busyMs / (to - from));
    }
    return {
      maxAppliedStaleness,
      stepBusy,
      busy: new Map([...busy].map(([k, v]) => [k, mean(v)])),
      siteTokens: new Map([...siteTokens].map(([k, v]) => [k, mean(v)])),
      tokens,
      wallS: roundS.reduce((a, b) => a + b, 0),
      roundS,
    };
  } finally {
    admin.close();
    for (const p of procs.slice(1).reverse()) await stopProc(p);
    if (procs[0]) await stopProc(procs[0]);
    for (const p of proxies) p.stop();
  }
}

export const heterogeneity: Benchmark = {
  async run(args, log) {
    const params = intArg(args, 'params', 100_000_000);
    const rounds = intArg(args, 'rounds', 3);
    const steps = intArg(args, 'steps', 20);
    const stepMs = intArg(args, 'step-ms', 1000);
    const mbps = intArg(args, 'mbps', 100);
    const delayMs = intArg(args, 'delay-ms', 15);
    const speeds = textArg(args, 'speeds')?.split(',').map(Number) ?? [1, 2, 3];
    if (speeds.some((v) => !(v > 0)) || rounds < 2) throw new Error('--speeds must be positive numbers and --rounds at least 2');
    const profileDir = textArg(args, 'profile');
    const dtypeArg = textArg(args, 'checkpoint-dtype') ?? 'bf16';
    if (dtypeArg !== 'f32' && dtypeArg !== 'bf16') throw new Error('--checkpoint-dtype takes f32 or bf16');
    const sites = speeds.map((_, i) => `site-${i + 1}`);
    const root = await mkdtemp(join(tmpdir(), 'fedhpc-bench-heterogeneity-'));
    try {
      const modelPath = join(root, 'model.safetensors');
      await writeSyntheticModel(modelPath, blockModel(params), 'heterogeneity');
      const setup: Setup = { root, modelPath, sites, speeds, rounds, steps, stepMs, bytesPerS: mbps * 1e6, delayMs, checkpointDtype: dtypeArg, profileDir, log };
      const tokensPerStep = BATCH * SEQ_LEN;
      const fastest = Math.max(...speeds);
      log(
        `heterogeneity: ${sites.length} sites at speeds ${speeds.join(':')}, ${params / 1e6} M F32 parameters (bf16 uploads, ${dtypeArg} checkpoints), ${mbps} MB/s and ${delayMs} ms each way per site, ` +
          `${rounds} rounds per run, ${steps} steps × ${stepMs} ms at speed 1; stand-in trainers (sleeping steps)`,
      );
      const base = { batch_size: BATCH, seq_len: SEQ_LEN };
      const fixedRun = await runFederation(setup, 'fixed', { ...base, max_steps: steps }, steps * tokensPerStep);
      const budgetS = (steps * stepMs) / 1000;
      // A time budget needs maxSiteWeight: the fastest site's tokens in the budget, plus a step of margin.
      const budgetMax = Math.ceil(budgetS * 1000 / (stepMs / fastest) + 2) * tokensPerStep;
      const budgetRun = await runFederation(setup, 'budget', { ...base, budget: { seconds: budgetS } }, budgetMax);
      // Overlapped: the same budget per sync, persistent trainers; a sync whose global comes late trains on.
      const overlapRun = await runFederation(setup, 'overlap', { ...base, budget: { seconds: budgetS }, overlap: { mode: 'whole-model' } }, 2 * budgetMax);
      const minBusy = (r: RunFigures): number => Math.min(...r.busy.values());
      const tps = (r: RunFigures): number => r.tokens / r.wallS;
      const ratio = tps(budgetRun) / tps(fixedRun);
      const overlapRatio = tps(overlapRun) / tps(fixedRun);
      const minStepBusy = Math.min(...overlapRun.stepBusy.values());
      // τ of a whole-model sync: the steps of one budget at the fastest site's pace.
      const tau = Math.ceil((budgetS * 1000) / (stepMs / fastest));
      const ideal = speeds.reduce((a, b) => a + b, 0) / (speeds.length * Math.min(...speeds));
      log(
        `heterogeneity: fixed ${fixed(tps(fixedRun) / 1000, 1)} k tok/s (rounds ${fixedRun.roundS.map((x) => x.toFixed(1)).join(', ')} s), min busy ${fixed(minBusy(fixedRun), 3)}; ` +
          `budget ${fixed(tps(budgetRun) / 1000, 1)} k tok/s (rounds ${budgetRun.roundS.map((x) => x.toFixed(1)).join(', ')} s), min busy ${fixed(minBusy(budgetRun), 3)}; ` +
          `tokens/s budget ÷ fixed ${fixed(ratio, 3)} (free sync: ${fixed(ideal, 3)}; target ≥ 1.8); ` +
          `overlap ${fixed(tps(overlapRun) / 1000, 1)} k tok/s (rounds ${overlapRun.roundS.map((x) => x.toFixed(1)).join(', ')} s), min busy from step timestamps ${fixed(minStepBusy, 3)} (target ≥ 0.95), ` +
          `tokens/s overlap ÷ fixed ${fixed(overlapRatio, 3)} (target ≥ 2.0), max applied staleness ${overlapRun.maxAppliedStaleness} steps (τ ${tau})`,
      );
      return {
        minBusyFractionFixed: fixed(minBusy(fixedRun), 3),
        minBusyFractionBudget: fixed(minBusy(budgetRun), 3),
        tokensPerSBudgetOverFixed: fixed(ratio, 3),
        tokensPerSFreeSync: fixed(ideal, 3),
        minBusyFractionOverlap: fixed(minStepBusy, 3),
        tokensPerSOverlapOverFixed: fixed(overlapRatio, 3),
        maxAppliedStaleness: overlapRun.maxAppliedStaleness,
        tau,
        tokensPerSOverlap: fixed(tps(overlapRun), 0),
        meanRoundSOverlap: fixed(overlapRun.wallS / overlapRun.roundS.length, 2),
        tokensPerSFixed: fixed(tps(fixedRun), 0),
        tokensPerSBudget: fixed(tps(budgetRun), 0),
        meanRoundSFixed: fixed(fixedRun.wallS / fixedRun.roundS.length, 2),
        meanRoundSBudget: fixed(budgetRun.wallS / budgetRun.roundS.length, 2),
        params,
        speeds: speeds.join(':'),
        linkMBs: mbps,
        checkpointDtype: dtypeArg,
        budgetS,
      };
    } finally {
      if (!args.includes('--keep')) await rm(root, { recursive: true, force: true });
      else log(`kept ${root}`);
    }
  },
};
