/**
 * `npm run bench -- secagg [--sites N] [--params P] [--sleep S] [--only plain,secure,drop]
 * [--profile DIR] [--skip-prg] [--keep]`: what secure aggregation (SecAgg+) costs.
 *
 * 1. The site's kernels on one core — the mask PRG beside `openssl speed` in the same run, plus
 *    expandMaskInto, applyMask and quantize — and the CPU-seconds of a site's whole masking encoder
 *    (`siteMaskCpuS`) and of the coordinator's unmask + dequantise (`coordinatorUnmaskCpuS`), in
 *    child processes started as agents are (bench/secagg-kernels.ts says how and why; `--skip-prg`
 *    skips all of them).
 * 2. Whole rounds: N sites × P parameters (F32), each site a separate process of the built CLI
 *    talking gRPC over mTLS on loopback to a coordinator process, training through the `command`
 *    runner with `bench/fixtures/sleep-trainer.mjs`, which sleeps S seconds without using the CPU
 *    (as a site whose GPUs train would) and returns global + small noise. One round plain, one
 *    secure, one secure with a site killed half-way through its upload (`fedhpc site --die-at
 *    upload`); the round must commit with N − 1.
 *
 * Round wall time is measured on the coordinator's clock (its event stream) from the moment the
 * round leaves `open` — every site connected; `keys` for a secure round, `training` for a plain
 * one — to `round.committed`, so site process start-up is not counted. The admin API's
 * `startedMs`→`finishedMs` (which does include start-up: a run's first round opens with the
 * coordinator) is reported beside it. CPU seconds are utime + stime from `/proc/<pid>/stat` over
 * the same span, for the coordinator and each site agent; the trainer (a child of the agent,
 * reaped when it exits) shows up in the agent's cutime + cstime. Wire bytes are the committed
 * round's `bytesUp` / (participants × parameters).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Benchmark } from './registry.js';
import { secaggKernelFigures } from './secagg-kernels.js';
import { phaseLine, runBenchRound, type RoundFigures } from './tools/bench-federation.js';
import { blockModel, writeSyntheticModel } from './tools/synthetic-model.js';

const DEFAULTS = { sites: 8, params: 10_000_000, sleep: 5 } as const;
const SCENARIOS = ['plain', 'secure', 'drop'] as const;
type ScenarioName = (typeof SCENARIOS)[number];

interface Settings {
  sites: number;
  params: number;
  sleep: number;
  only: Set<ScenarioName>;
  profile: string | undefined;
  skipPrg: boolean;
  keep: boolean;
}

function parseArgs(args: readonly string[]): Settings {
  const s: Settings = { ...DEFAULTS, only: new Set(SCENARIOS), profile: undefined, skipPrg: false, keep: false };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const [flag, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = (): string => {
      const v = inline ?? args[++i];
      if (v === undefined) throw new Error(`secagg: ${flag} needs a value`);
      return v;
    };
    const positive = (integer: boolean): number => {
      const text = value();
      const n = Number(text);
      if (!(Number.isFinite(n) && n > 0) || (integer && !Number.isSafeInteger(n))) throw new Error(`secagg: ${flag} needs a positive ${integer ? 'integer' : 'number'}, got ${text}`);
      return n;
    };
    switch (flag) {
      case '--sites':
        s.sites = positive(true);
        if (s.sites < 3) throw new Error('secagg: --sites must be at least 3 (one is dropped, the threshold is at least 2)');
        break;
      case '--params':
        s.params = positive(true);
        if (s.params < 4000) throw new Error('secagg: --params must be at least 4000');
        break;
      case '--sleep':
        s.sleep = positive(false);
        break;
      case '--only': {
        const names = value().split(',');
        const bad = names.filter((n) => !(SCENARIOS as readonly string[]).includes(n));
        if (bad.length > 0 || names.length === 0) throw new Error(`secagg: --only takes ${SCENARIOS.join(',')}, got ${bad.join(',')}`);
        s.only = new Set(names as ScenarioName[]);
        break;
      }
      case '--profile':
        s.profile = value();
        break;
      case '--skip-prg':
        s.skipPrg = true;
        break;
      case '--keep':
        s.keep = true;
        break;
      default:
        throw new Error(`secagg: unknown option ${arg} (known: --sites, --params, --sleep, --only, --profile, --skip-prg, --keep)`);
    }
  }
  return s;
}

// ------------------------------------------------------------------ single-core kernels

// ------------------------------------------------------------------ one federation, one round

/** The trainer fixture: beside this file when run from the source tree, else in the repo's bench/. */
function trainerPath(): string {
  const candidates = [new URL('./fixtures/sleep-trainer.mjs', import.meta.url), new URL('../../bench/fixtures/sleep-trainer.mjs', import.meta.url)].map((u) => fileURLToPath(u));
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`secagg: sleep-trainer.mjs not found (looked at ${candidates.join(', ')})`);
  return found;
}

interface Scenario {
  readonly name: ScenarioName;
  readonly secure: boolean;
  /** Site started with `--die-at upload`. */
  readonly dropSite?: string;
}

interface RunContext {
  readonly root: string;
  readonly modelPath: string;
  readonly trainer: string;
  readonly s: Settings;
  readonly log: (line: string) => void;
}

function runRound(sc: Scenario, ctx: RunContext): Promise<RoundFigures> {
  const { s } = ctx;
  return runBenchRound({
    name: sc.name,
    root: ctx.root,
    sites: Array.from({ length: s.sites }, (_, i) => `site-${i + 1}`),
    modelPath: ctx.modelPath,
    run: {
      minSites: s.sites - 1,
      strategy: { name: 'fedavg' },
      evaluate: false,
      secureAggregation: { enabled: sc.secure },
      // The sleep trainer declares 64 samples and names no steps or batch size.
      maxSiteWeight: 64,
      train: { sleep_s: s.sleep, noise: 1e-3 },
      deadlines: { openS: 300, keysS: 120, sharesS: 120, trainingS: 600, uploadS: 600, unmaskS: 300, aggregateS: 600, commitS: 300, evalS: 60 },
    },
    site: (c, _site, i) => ({ ...c, runner: { kind: 'command', command: [process.execPath, ctx.trainer], seed: i + 1, maxRetries: 0 } }),
    ...(sc.dropSite ? { dropSite: sc.dropSite } : {}),
    nodeArgs: (name) => (s.profile ? ['--cpu-prof', '--cpu-prof-dir', join(s.profile, sc.name), '--cpu-prof-name', `${name}.cpuprofile`] : []),
    timeoutS: 900,
    log: () => undefined,
  });
}

// ------------------------------------------------------------------ the benchmark

const mean = (xs: readonly number[]): number => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);
const round3 = (x: number): number => Math.round(x * 1000) / 1000;
const round5 = (x: number): number => Math.round(x * 1e5) / 1e5;
/** Seconds from the end of the upload phase to the commit. */
const afterUploadS = (r: RoundFigures): number => {
  const at = r.phases.findIndex(([p]) => p === 'upload');
  return r.phases.slice(at + 1).reduce((a, [, sec]) => a + sec, 0);
};

export const secagg: Benchmark = {
  async run(args, log) {
    const s = parseArgs(args);
    const t0 = Date.now();
    const figures: Record<string, number | string | boolean> = {};
    const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}`;
    log(`secagg: ${machine}`);
    figures['machine'] = machine;

    if (!s.skipPrg) Object.assign(figures, await secaggKernelFigures(log));

    const root = await mkdtemp(join(tmpdir(), 'fedhpc-bench-secagg-'));
    const tensors = blockModel(s.params);
    const modelPath = join(root, 'initial-model.safetensors');
    await writeSyntheticModel(modelPath, tensors, 'fedhpc-bench-secagg');
    log(`model: ${tensors.map((t) => `${t.name} [${t.shape.join('×')}]`).join(', ')} = ${s.params} F32 parameters; state in ${root}`);
    const ctx: RunContext = { root, modelPath, trainer: trainerPath(), s, log };
    const scenarios: Scenario[] = [
      { name: 'plain', secure: false },
      { name: 'secure', secure: true },
      { name: 'drop', secure: true, dropSite: `site-${s.sites}` },
    ];
    const results = new Map<ScenarioName, RoundFigures>();
    for (const sc of scenarios.filter((x) => s.only.has(x.name))) {
      log(`${sc.name}: ${s.sites} sites × ${s.params} parameters, ${sc.secure ? 'secure aggregation' : 'plain f32'}${sc.dropSite ? `, ${sc.dropSite} dies half-way through its upload` : ''}; trainer sleeps ${s.sleep} s`);
      const r = await runRound(sc, ctx);
      results.set(sc.name, r);
      const perSite = `${mean(r.siteCpuS).toFixed(2)} (max ${Math.max(...r.siteCpuS).toFixed(2)})`;
      log(
        `  ${sc.name}: round ${r.roundS.toFixed(2)} s (admin startedMs→finishedMs ${r.adminRoundS.toFixed(2)} s); ${r.participants} participants` +
          `${r.dropped.length ? `, dropped ${r.dropped.join(',')}` : ''}; up ${(r.bytesUp / 1e6).toFixed(1)} MB, down ${(r.bytesDown / 1e6).toFixed(1)} MB`,
      );
      log(`  ${sc.name}: CPU s — coordinator ${r.coordinatorCpuS.toFixed(2)}, per site agent ${perSite}, per trainer ${mean(r.trainerCpuS).toFixed(2)}`);
      log(`  ${sc.name}: phases (s): ${phaseLine(r)}`);
      const cap = sc.name[0]!.toUpperCase() + sc.name.slice(1);
      Object.assign(figures, {
        [`round${cap}S`]: round3(r.roundS),
        [`round${cap}AdminS`]: round3(r.adminRoundS),
        [`coordinatorCpuS${cap}`]: round3(r.coordinatorCpuS),
        [`siteCpuS${cap}`]: round3(mean(r.siteCpuS)),
        [`siteCpuMaxS${cap}`]: round3(Math.max(...r.siteCpuS)),
        [`trainerCpuS${cap}`]: round3(mean(r.trainerCpuS)),
        [`participants${cap}`]: r.participants,
        [`phases${cap}`]: phaseLine(r),
      });
    }

    const plain = results.get('plain');
    const secure = results.get('secure');
    const drop = results.get('drop');
    if (plain) figures['bytesPerParamPlain'] = round5(plain.bytesUp / (plain.participants * s.params));
    if (secure) figures['bytesPerParamSecure'] = round5(secure.bytesUp / (secure.participants * s.params));
    if (plain && secure) {
      const ratio = secure.roundS / plain.roundS;
      figures['secureOverPlainWall'] = round3(ratio);
      log(`secure / plain round wall = ${ratio.toFixed(3)} (target ≤ 1.5)${ratio <= 1.5 ? '' : '  ABOVE TARGET'}`);
    }
    if (drop) {
      if (drop.participants !== s.sites - 1) throw new Error(`secagg drop: the round committed with ${drop.participants} sites, expected ${s.sites - 1}`);
      if (secure) {
        // The whole-round difference also holds one upload fewer and whatever else the machine did
        // meanwhile; the time after the uploads (unmask, aggregate, commit) is where recovery works.
        const postUpload = afterUploadS(drop) - afterUploadS(secure);
        figures['dropRecoveryS'] = round3(drop.roundS - secure.roundS);
        figures['dropRecoveryPostUploadS'] = round3(postUpload);
        figures['coordinatorCpuDropExtraS'] = round3(drop.coordinatorCpuS - secure.coordinatorCpuS);
        log(`drop at upload: ${drop.roundS.toFixed(2)} s, ${(drop.roundS - secure.roundS).toFixed(2)} s more than the secure round without a drop`);
        log(`  after the uploads (unmask + aggregate + commit): ${afterUploadS(drop).toFixed(2)} s vs ${afterUploadS(secure).toFixed(2)} s, ${postUpload.toFixed(2)} s more`);
      }
    }
    if (plain && secure) log(`wire: ${figures['bytesPerParamSecure']} B/param secure, ${figures['bytesPerParamPlain']} B/param plain`);
    Object.assign(figures, { sites: s.sites, params: s.params, trainerSleepS: s.sleep, seconds: round3((Date.now() - t0) / 1000) });
    if (s.profile) log(`CPU profiles in ${s.profile}/<scenario>/<process>.cpuprofile`);
    if (!s.keep) await rm(root, { recursive: true, force: true });
    else log(`kept ${root}`);
    return figures;
  },
};
