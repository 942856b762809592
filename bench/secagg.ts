/**
 * `npm run bench -- secagg [--sites N] [--params P] [--sleep S] [--only plain,secure,drop]
 * [--profile DIR] [--skip-prg] [--keep]`: what secure aggregation (SecAgg+) costs.
 *
 * 1. The site's kernels on one core — the mask PRG beside `openssl speed` in the same run, plus
 *    expandMaskInto, applyMask and quantize — in child processes started as agents are
 *    (bench/secagg-kernels.ts says how and why).
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
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createSafetensorsWriter } from '../aggregation/index.js';
import { AtomicFile } from '../common/files.js';
import { AdminClient, type AdminEvent } from '../coordinator/index.js';
import type { RoundInfo__Output } from '../proto/index.js';
import { writeFederationFiles } from '../simulate/federation-files.js';
import type { Benchmark } from './registry.js';
import { secaggKernelFigures } from './secagg-kernels.js';
import { freeLoopbackPort } from '../common/net.js';
import { withMallocTuning } from '../common/malloc.js';

const exec = promisify(execFile);

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

// ------------------------------------------------------------------ the synthetic model

interface ModelLayout {
  readonly tensors: { name: string; shape: number[] }[];
  readonly params: number;
}

/** A few tensors adding up to exactly `params` F32 values. */
function modelLayout(params: number): ModelLayout {
  const rows = Math.floor(params / 4 / 1000);
  const rest = params - 3 * rows * 1000;
  const tensors = [
    { name: 'embed.weight', shape: [rows, 1000] },
    { name: 'layers.0.attn.weight', shape: [rows, 1000] },
    { name: 'layers.0.mlp.weight', shape: [rows, 1000] },
    { name: 'lm_head.weight', shape: rest % 1000 === 0 ? [rest / 1000, 1000] : [rest] },
  ];
  return { tensors, params };
}

/** Writes the initial model with the repo's safetensors writer: uniform values in ±0.05, seeded. */
async function writeInitialModel(path: string, layout: ModelLayout): Promise<void> {
  const file = await AtomicFile.create(join(path, '..'));
  try {
    const writer = await createSafetensorsWriter(
      file,
      layout.tensors.map((t) => ({ name: t.name, dtype: 'F32' as const, shape: t.shape })),
      { format: 'pt', model: 'fedhpc-bench-secagg' },
    );
    let state = 0x2545f491;
    const slice = new Float32Array(1 << 20);
    for (const t of layout.tensors) {
      let left = t.shape.reduce((a, b) => a * b, 1);
      while (left > 0) {
        const n = Math.min(left, slice.length);
        for (let i = 0; i < n; i++) {
          state ^= state << 13;
          state ^= state >>> 17;
          state ^= state << 5;
          slice[i] = ((state >>> 0) / 4294967296 - 0.5) * 0.1;
        }
        await writer.writeF32(t.name, slice.subarray(0, n));
        left -= n;
      }
    }
    await writer.finish();
    await file.commit(path);
  } catch (err) {
    await file.discard();
    throw err;
  }
}

// ------------------------------------------------------------------ processes and /proc

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));

/** The trainer fixture: beside this file when run from the source tree, else in the repo's bench/. */
function trainerPath(): string {
  const candidates = [new URL('./fixtures/sleep-trainer.mjs', import.meta.url), new URL('../../bench/fixtures/sleep-trainer.mjs', import.meta.url)].map((u) => fileURLToPath(u));
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`secagg: sleep-trainer.mjs not found (looked at ${candidates.join(', ')})`);
  return found;
}

const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU seconds of a live process: its own (utime + stime) and its reaped children's (cutime + cstime). */
interface CpuSample {
  readonly self: number;
  readonly children: number;
}

function readCpu(pid: number): CpuSample | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm)": state is field 3, utime 14, stime 15, cutime 16, cstime 17.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
    return { self: (f[11]! + f[12]!) / CLOCK_TICKS, children: (f[13]! + f[14]!) / CLOCK_TICKS };
  } catch {
    return undefined; // gone
  }
}

/** Polls /proc so a process that dies (a dropped site) keeps its last reading. */
class CpuWatch {
  private readonly last = new Map<number, CpuSample>();
  private readonly timer: NodeJS.Timeout;
  constructor(private readonly pids: () => number[]) {
    this.timer = setInterval(() => this.sample(), 200);
  }
  sample(): Map<number, CpuSample> {
    for (const pid of this.pids()) {
      const s = readCpu(pid);
      if (s) this.last.set(pid, s);
    }
    return new Map(this.last);
  }
  stop(): void {
    clearInterval(this.timer);
  }
}

interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly log: string;
  readonly exited: Promise<number | string>;
}

async function startProc(name: string, args: string[], logDir: string, nodeArgs: string[]): Promise<Proc> {
  const log = join(logDir, `${name}.log`);
  const fh = await open(log, 'a');
  const child = spawn(process.execPath, [...nodeArgs, CLI, ...args], { stdio: ['ignore', fh.fd, fh.fd], env: withMallocTuning(process.env) });
  const exited = new Promise<number | string>((res) =>
    child.once('exit', (code, sig) => {
      void fh.close().catch(() => undefined);
      res(code ?? sig ?? -1);
    }),
  );
  return { name, child, log, exited };
}

async function stopProc(p: Proc): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  // Generous: a profiled process writes its profile on the way out.
  const timer = setTimeout(() => p.child.kill('SIGKILL'), 15_000);
  await p.exited;
  clearTimeout(timer);
}


// ------------------------------------------------------------------ one federation, one round

interface Scenario {
  readonly name: ScenarioName;
  readonly secure: boolean;
  /** Site started with `--die-at upload`. */
  readonly dropSite?: string;
}

interface RoundFigures {
  /** Leaving `open` → `round.committed`, coordinator clock. */
  readonly roundS: number;
  /** Admin API startedMs → finishedMs (includes the sites' start-up). */
  readonly adminRoundS: number;
  /** Seconds spent in each phase after `open`, in order. */
  readonly phases: [string, number][];
  readonly participants: number;
  readonly dropped: readonly string[];
  readonly bytesUp: number;
  readonly bytesDown: number;
  readonly coordinatorCpuS: number;
  /** Per surviving site agent over the round (its own CPU, not the trainer's). */
  readonly siteCpuS: number[];
  /** Per surviving site: its trainer's CPU (reaped children of the agent). */
  readonly trainerCpuS: number[];
  readonly dir: string;
}

interface RunContext {
  readonly root: string;
  readonly modelPath: string;
  readonly trainer: string;
  readonly s: Settings;
  readonly log: (line: string) => void;
}

async function patchJson(file: string, patch: (cfg: Record<string, unknown>) => Record<string, unknown>): Promise<void> {
  const cfg = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  await writeFile(file, `${JSON.stringify(patch(cfg), null, 2)}\n`, { mode: 0o600 });
}

async function runRound(sc: Scenario, ctx: RunContext): Promise<RoundFigures> {
  const { s, log } = ctx;
  const dir = join(ctx.root, sc.name);
  const logDir = join(dir, 'logs');
  await mkdir(logDir, { recursive: true });
  const sites = Array.from({ length: s.sites }, (_, i) => `site-${i + 1}`);
  const port = await freeLoopbackPort();
  const address = `localhost:${port}`;
  const files = await writeFederationFiles({
    dir: join(dir, 'federation'),
    federation: 'secagg-bench',
    sites,
    admins: ['admin'],
    coordinatorAddress: address,
    listen: `127.0.0.1:${port}`,
    run: {
      id: `secagg-bench-${sc.name}`,
      rounds: 1,
      minSites: s.sites - 1,
      expectedSites: sites,
      strategy: { name: 'fedavg' },
      evaluate: false,
      secureAggregation: { enabled: sc.secure },
      train: { sleep_s: s.sleep, noise: 1e-3 },
      deadlines: { openS: 300, keysS: 120, sharesS: 120, trainingS: 600, uploadS: 600, unmaskS: 300, aggregateS: 600, commitS: 300, evalS: 60 },
    },
  });
  await patchJson(files.coordinatorConfig, (c) => ({ ...c, model: { initial: ctx.modelPath } }));
  for (const [i, site] of sites.entries()) {
    await patchJson(files.siteConfigs.get(site)!, (c) => ({ ...c, runner: { kind: 'command', command: [process.execPath, ctx.trainer], seed: i + 1, maxRetries: 0 } }));
  }

  const nodeArgs = (name: string): string[] =>
    s.profile ? ['--cpu-prof', '--cpu-prof-dir', join(s.profile, sc.name), '--cpu-prof-name', `${name}.cpuprofile`] : [];
  const procs: Proc[] = [];
  const adminDir = join(dir, 'federation', 'admins', 'admin');
  const admin = new AdminClient({ coordinator: address, tls: { ca: join(adminDir, 'ca.crt'), cert: join(adminDir, 'admin.crt'), key: join(adminDir, 'admin.key') } });
  const stop = new AbortController();
  const watch = new CpuWatch(() => procs.map((p) => p.child.pid).filter((pid): pid is number => pid !== undefined));
  try {
    const coordinator = await startProc('coordinator', ['coordinator', '--config', files.coordinatorConfig], logDir, nodeArgs('coordinator'));
    procs.push(coordinator);
    const died = coordinator.exited.then((code) => {
      throw new Error(`secagg ${sc.name}: the coordinator exited (${code}); see ${coordinator.log}`);
    });
    died.catch(() => undefined);
    await Promise.race([admin.waitForReady(Date.now() + 60_000), died]);

    const phases: { phase: string; ts: number }[] = [];
    let leftOpen: Map<number, CpuSample> | undefined;
    let resolveCommitted: (e: AdminEvent) => void = () => undefined;
    let rejectRound: (err: Error) => void = () => undefined;
    const committed = new Promise<AdminEvent>((res, rej) => {
      resolveCommitted = res;
      rejectRound = rej;
    });
    const following = admin.events((e) => {
      const round = Number(e.body['round']);
      if (e.kind === 'phase.changed' && round === 1) {
        const phase = String(e.body['phase']);
        if (phase !== 'open' && leftOpen === undefined) leftOpen = watch.sample();
        phases.push({ phase, ts: e.ts });
      } else if (e.kind === 'round.committed' && round === 1) {
        resolveCommitted(e);
      } else if (e.kind === 'round.aborted' || e.kind === 'run.failed') {
        rejectRound(new Error(`secagg ${sc.name}: ${e.kind}: ${String(e.body['reason'])}; logs in ${logDir}`));
      }
    }, stop.signal);
    following.catch((err: unknown) => rejectRound(err as Error));
    await new Promise((r) => setTimeout(r, 300)); // the event stream is open before any site joins

    for (const site of sites) {
      const dieAt = site === sc.dropSite ? ['--die-at', 'upload'] : [];
      procs.push(await startProc(site, ['site', '--config', files.siteConfigs.get(site)!, ...dieAt], logDir, nodeArgs(site)));
    }
    const timeout = new Promise<never>((_, rej) => {
      const t = setTimeout(() => rej(new Error(`secagg ${sc.name}: no commit after 900 s; logs in ${logDir}`)), 900_000);
      stop.signal.addEventListener('abort', () => clearTimeout(t), { once: true });
    });
    timeout.catch(() => undefined);
    const done = await Promise.race([committed, died, timeout]);
    const end = watch.sample();
    const start = leftOpen;
    if (!start) throw new Error(`secagg ${sc.name}: the round committed without leaving open?`);

    const rounds = await admin.rounds();
    const info: RoundInfo__Output | undefined = rounds.rounds.find((r) => r.round === '1' && r.outcome === 'committed');
    if (!info) throw new Error(`secagg ${sc.name}: round 1 is not in the admin API's rounds`);
    const firstAfterOpen = phases.find((p) => p.phase !== 'open')!;
    const after = phases.filter((p) => p.ts >= firstAfterOpen.ts);
    const phaseSeconds: [string, number][] = after.map((p, i) => [p.phase, ((after[i + 1]?.ts ?? done.ts) - p.ts) / 1000]);

    const cpu = (pid: number | undefined, key: keyof CpuSample): number => {
      if (pid === undefined) return 0;
      return (end.get(pid)?.[key] ?? 0) - (start.get(pid)?.[key] ?? 0);
    };
    const survivors = procs.slice(1).filter((p) => p.name !== sc.dropSite);
    return {
      roundS: (done.ts - firstAfterOpen.ts) / 1000,
      adminRoundS: (Number(info.finishedMs) - Number(info.startedMs)) / 1000,
      phases: phaseSeconds,
      participants: info.participants.length,
      dropped: info.dropped,
      bytesUp: Number(info.bytesUp),
      bytesDown: Number(info.bytesDown),
      coordinatorCpuS: cpu(coordinator.child.pid, 'self'),
      siteCpuS: survivors.map((p) => cpu(p.child.pid, 'self')),
      trainerCpuS: survivors.map((p) => cpu(p.child.pid, 'children')),
      dir,
    };
  } finally {
    watch.stop();
    stop.abort();
    admin.close();
    // Sites first, so none reports the coordinator's shutdown as a failure.
    for (const p of procs.slice(1).reverse()) await stopProc(p);
    if (procs[0]) await stopProc(procs[0]);
  }
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
const phaseLine = (r: RoundFigures): string => r.phases.map(([p, sec]) => `${p} ${sec.toFixed(2)}`).join(', ');

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
    const layout = modelLayout(s.params);
    const modelPath = join(root, 'initial-model.safetensors');
    await writeInitialModel(modelPath, layout);
    log(`model: ${layout.tensors.map((t) => `${t.name} [${t.shape.join('×')}]`).join(', ')} = ${layout.params} F32 parameters; state in ${root}`);
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
