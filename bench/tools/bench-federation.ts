/**
 * One round of a real federation for the benchmarks: a coordinator and N site agents, each a
 * separate process of the built CLI (started as `bin/fedhpc` starts them, with the allocator
 * settings of common/malloc.ts and the Node options of common/gc-tuning.ts) talking gRPC over mTLS on loopback, training through the `command`
 * runner with a fixture trainer. Measures the round on the coordinator's clock (its event stream),
 * from the moment it leaves `open` to `round.committed`, so process start-up is not counted; CPU
 * seconds per process from `/proc/<pid>/stat` over the same span; the coordinator's peak RSS.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, open, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NODE_HEAP_OPTIONS } from '../../common/gc-tuning.js';
import { withMallocTuning } from '../../common/malloc.js';
import { freeLoopbackPort } from '../../common/net.js';
import { AdminClient, type AdminEvent } from '../../coordinator/index.js';
import type { RoundInfo__Output } from '../../proto/index.js';
import { writeFederationFiles } from '../../simulate/index.js';

const CLI = fileURLToPath(new URL('../../cli/main.js', import.meta.url));

const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU seconds of a live process: its own (utime + stime) and its reaped children's (cutime + cstime). */
export interface CpuSample {
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

/** Peak resident set size of a live process (VmHWM), in bytes; 0 once it is gone. */
export function peakRssBytes(pid: number): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * The live child processes of `pid` (a coordinator's local aggregator shards): the kernel's list
 * per thread (`/proc/<pid>/task/<tid>/children`), a few small reads rather than a scan of every
 * process on each 200 ms sample, which would take CPU from the processes being measured.
 */
export function childPids(pid: number): number[] {
  const found: number[] = [];
  let threads: string[];
  try {
    threads = readdirSync(`/proc/${pid}/task`);
  } catch {
    return found; // gone
  }
  for (const tid of threads) {
    try {
      for (const child of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ')) if (child.trim() !== '') found.push(Number(child));
    } catch {
      // the thread ended meanwhile
    }
  }
  return found;
}

/**
 * Polls /proc so a process that dies (a dropped site) keeps its last reading; keeps every sample
 * with its time, so that the CPU of a window known only afterwards can be read (`cpuBetween`).
 */
class CpuWatch {
  private readonly last = new Map<number, CpuSample>();
  private readonly history: { readonly ms: number; readonly cpu: Map<number, CpuSample> }[] = [];
  private readonly timer: NodeJS.Timeout;
  constructor(private readonly pids: () => number[]) {
    this.timer = setInterval(() => this.sample(), 200);
  }
  sample(): Map<number, CpuSample> {
    for (const pid of this.pids()) {
      const s = readCpu(pid);
      if (s) this.last.set(pid, s);
    }
    const cpu = new Map(this.last);
    this.history.push({ ms: Date.now(), cpu });
    return cpu;
  }
  /** `pid`'s own CPU seconds between the samples nearest to `fromMs` and `toMs` (200 ms apart). */
  cpuBetween(pid: number, fromMs: number, toMs: number): number {
    if (this.history.length === 0) return Number.NaN;
    const at = (ms: number): number => this.history.reduce((best, h) => (Math.abs(h.ms - ms) < Math.abs(best.ms - ms) ? h : best), this.history[0]!).cpu.get(pid)?.self ?? 0;
    return at(toMs) - at(fromMs);
  }
  stop(): void {
    clearInterval(this.timer);
  }
}

export interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly log: string;
  readonly exited: Promise<number | string>;
}

export async function startProc(name: string, args: string[], logDir: string, nodeArgs: string[]): Promise<Proc> {
  const log = join(logDir, `${name}.log`);
  const fh = await open(log, 'a');
  const child = spawn(process.execPath, [...NODE_HEAP_OPTIONS, ...nodeArgs, CLI, ...args], { stdio: ['ignore', fh.fd, fh.fd], env: withMallocTuning(process.env) });
  const exited = new Promise<number | string>((res) =>
    child.once('exit', (code, sig) => {
      void fh.close().catch(() => undefined);
      res(code ?? sig ?? -1);
    }),
  );
  return { name, child, log, exited };
}

export async function stopProc(p: Proc): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  // Generous: a profiled process writes its profile on the way out.
  const timer = setTimeout(() => p.child.kill('SIGKILL'), 15_000);
  await p.exited;
  clearTimeout(timer);
}

/** Rewrites a JSON config file in place. */
export async function patchJson(file: string, patch: (cfg: Record<string, unknown>) => Record<string, unknown>): Promise<void> {
  const cfg = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  await writeFile(file, `${JSON.stringify(patch(cfg), null, 2)}\n`, { mode: 0o600 });
}

/** What one benchmark round runs. */
export interface BenchRoundOptions {
  /** Names the round in messages and its folder under `root`. */
  readonly name: string;
  readonly root: string;
  readonly sites: readonly string[];
  /** The initial global model (F32 safetensors). */
  readonly modelPath: string;
  /** The coordinator config's `run` (one round; `expectedSites` and `id` are filled in). */
  readonly run: Record<string, unknown> & { readonly minSites: number };
  /** Changes to a site's config, e.g. its runner. */
  readonly site: (cfg: Record<string, unknown>, site: string, index: number) => Record<string, unknown> | Promise<Record<string, unknown>>;
  /** Changes to the coordinator's config beyond the initial model. */
  readonly coordinator?: (cfg: Record<string, unknown>) => Record<string, unknown>;
  /**
   * Aggregator shards `shard-1` … (issue 22) as processes of their own, provisioned with the
   * federation and listening on loopback for the sites' part uploads; started and awaited ready
   * before any site.
   */
  readonly aggregators?: number;
  /**
   * Local aggregator shards (`localShards`: the coordinator's own child processes), provisioned
   * with certificates of their own so that they take the sites' parts on the ports after the
   * coordinator's (`provision --local-shards`).
   */
  readonly localShards?: number;
  /** Site started with `--die-at upload`. */
  readonly dropSite?: string;
  /** Runs once the coordinator answers (its initial model imported), before any site starts. */
  readonly beforeSites?: (paths: FederationPaths) => Promise<void>;
  readonly nodeArgs?: (process: string) => string[];
  readonly timeoutS: number;
  readonly log: (line: string) => void;
}

/** Where the federation's processes keep their state. */
export interface FederationPaths {
  readonly coordinatorStateDir: string;
  /** Each site's `workDir` (its model cache is `<workDir>/models`). */
  readonly siteWorkDirs: ReadonlyMap<string, string>;
}

/** A config's folder-relative path field, resolved. */
async function configPath(file: string, field: string): Promise<string> {
  const cfg = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  return resolve(dirname(file), String(cfg[field]));
}

/** Figures of one committed benchmark round. */
export interface RoundFigures {
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
  /**
   * The coordinator's CPU from leaving `open` (`keys` for a secure round) to entering `unmask` or
   * `aggregate`: taking in every upload (a site may upload before `upload` opens, so `training` is
   * counted too; the coordinator does little else then).
   */
  readonly coordinatorIngestCpuS: number;
  readonly coordinatorPeakRssBytes: number;
  /**
   * The aggregator shards — the coordinator's child processes (`localShards`) or the configured
   * ones (`aggregators`) — each one's CPU over the round, its CPU while the uploads came in (as
   * `coordinatorIngestCpuS`), and its peak RSS.
   */
  readonly shards: readonly { readonly cpuS: number; readonly ingestCpuS: number; readonly peakRssBytes: number }[];
  /** Each surviving site's upload, from its log's `upload finished`: when it started and ended (ms) and its bytes. */
  readonly uploads: readonly { readonly startMs: number; readonly endMs: number; readonly bytes: number }[];
  /**
   * CPU seconds while the uploads ran (the first one's start to the last one's end, as the agents
   * log them): the coordinator's, and each shard's in `shards` order.
   */
  readonly uploadWindowCpuS: { readonly coordinator: number; readonly shards: readonly number[] };
  /** Per surviving site agent over the round (its own CPU, not the trainer's). */
  readonly siteCpuS: number[];
  /** Per surviving site: its trainer's CPU (reaped children of the agent). */
  readonly trainerCpuS: number[];
  readonly dir: string;
}

/** Runs one round of a fresh federation and returns its figures; every process is stopped after. */
export async function runBenchRound(o: BenchRoundOptions): Promise<RoundFigures> {
  const dir = join(o.root, o.name);
  const logDir = join(dir, 'logs');
  await mkdir(logDir, { recursive: true });
  const port = await freeLoopbackPort();
  const address = `localhost:${port}`;
  const files = await writeFederationFiles({
    dir: join(dir, 'federation'),
    federation: 'bench',
    sites: [...o.sites],
    admins: ['admin'],
    coordinatorAddress: address,
    listen: `127.0.0.1:${port}`,
    run: { id: `bench-${o.name}`, rounds: 1, expectedSites: [...o.sites], ...o.run },
    ...(o.localShards ? { localShards: o.localShards } : {}),
    aggregators: await Promise.all(
      Array.from({ length: o.aggregators ?? 0 }, async (_, i) => {
        const shardPort = await freeLoopbackPort();
        return { name: `shard-${i + 1}`, address: `localhost:${shardPort}`, listen: `127.0.0.1:${shardPort}` };
      }),
    ),
  });
  await patchJson(files.coordinatorConfig, (c) => (o.coordinator ?? ((x) => x))({ ...c, model: { initial: o.modelPath } }));
  for (const [i, site] of o.sites.entries()) {
    const cfg = JSON.parse(await readFile(files.siteConfigs.get(site)!, 'utf8')) as Record<string, unknown>;
    await writeFile(files.siteConfigs.get(site)!, `${JSON.stringify(await o.site(cfg, site, i), null, 2)}\n`, { mode: 0o600 });
  }
  const procs: Proc[] = [];
  const shardProcs: Proc[] = [];
  const adminDir = join(dir, 'federation', 'admins', 'admin');
  const admin = new AdminClient({ coordinator: address, tls: { ca: join(adminDir, 'ca.crt'), cert: join(adminDir, 'admin.crt'), key: join(adminDir, 'admin.key') } });
  const stop = new AbortController();
  // The coordinator's children (local aggregator shards) are watched too.
  const watch = new CpuWatch(() => {
    const pids = [...procs, ...shardProcs].map((p) => p.child.pid).filter((pid): pid is number => pid !== undefined);
    return pids.length > 0 ? [...pids, ...childPids(pids[0]!)] : pids;
  });
  const nodeArgs = o.nodeArgs ?? (() => []);
  try {
    const coordinator = await startProc('coordinator', ['coordinator', '--config', files.coordinatorConfig], logDir, nodeArgs('coordinator'));
    procs.push(coordinator);
    const died = coordinator.exited.then((code) => {
      throw new Error(`bench ${o.name}: the coordinator exited (${code}); see ${coordinator.log}`);
    });
    died.catch(() => undefined);
    await Promise.race([admin.waitForReady(Date.now() + 600_000), died]);
    for (const [name, config] of files.aggregatorConfigs) shardProcs.push(await startProc(name, ['aggregator', '--config', config], logDir, nodeArgs(name)));
    if (shardProcs.length > 0) await shardsReady(admin, o.name, logDir);
    if (o.beforeSites) {
      const siteWorkDirs = new Map<string, string>();
      for (const site of o.sites) siteWorkDirs.set(site, await configPath(files.siteConfigs.get(site)!, 'workDir'));
      await o.beforeSites({ coordinatorStateDir: await configPath(files.coordinatorConfig, 'stateDir'), siteWorkDirs });
    }

    const phases: { phase: string; ts: number }[] = [];
    let leftOpen: Map<number, CpuSample> | undefined;
    let ingested: Map<number, CpuSample> | undefined;
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
        if ((phase === 'unmask' || phase === 'aggregate') && ingested === undefined) ingested = watch.sample();
        phases.push({ phase, ts: e.ts });
        o.log(`  ${o.name}: phase ${phase}`);
      } else if (e.kind === 'round.committed' && round === 1) {
        resolveCommitted(e);
      } else if (e.kind === 'round.aborted' || e.kind === 'run.failed') {
        rejectRound(new Error(`bench ${o.name}: ${e.kind}: ${String(e.body['reason'])}; logs in ${logDir}`));
      }
    }, stop.signal);
    following.catch((err: unknown) => rejectRound(err as Error));
    await new Promise((r) => setTimeout(r, 300)); // the event stream is open before any site joins

    for (const site of o.sites) {
      const dieAt = site === o.dropSite ? ['--die-at', 'upload'] : [];
      procs.push(await startProc(site, ['site', '--config', files.siteConfigs.get(site)!, ...dieAt], logDir, nodeArgs(site)));
    }
    const timeout = new Promise<never>((_, rej) => {
      const t = setTimeout(() => rej(new Error(`bench ${o.name}: no commit after ${o.timeoutS} s; logs in ${logDir}`)), o.timeoutS * 1000);
      stop.signal.addEventListener('abort', () => clearTimeout(t), { once: true });
    });
    timeout.catch(() => undefined);
    const done = await Promise.race([committed, died, timeout]);
    const end = watch.sample();
    const coordinatorPeakRssBytes = peakRssBytes(coordinator.child.pid ?? -1);
    const shardPids = shardProcs.length > 0 ? shardProcs.map((p) => p.child.pid ?? -1) : childPids(coordinator.child.pid ?? -1);
    const shardPeaks = shardPids.map(peakRssBytes);
    const start = leftOpen;
    if (!start) throw new Error(`bench ${o.name}: the round committed without leaving open?`);

    const rounds = await admin.rounds();
    const info: RoundInfo__Output | undefined = rounds.rounds.find((r) => r.round === '1' && r.outcome === 'committed');
    if (!info) throw new Error(`bench ${o.name}: round 1 is not in the admin API's rounds`);
    const firstAfterOpen = phases.find((p) => p.phase !== 'open')!;
    const after = phases.filter((p) => p.ts >= firstAfterOpen.ts);
    const phaseSeconds: [string, number][] = after.map((p, i) => [p.phase, ((after[i + 1]?.ts ?? done.ts) - p.ts) / 1000]);

    const cpu = (pid: number | undefined, key: keyof CpuSample): number => {
      if (pid === undefined) return 0;
      return (end.get(pid)?.[key] ?? 0) - (start.get(pid)?.[key] ?? 0);
    };
    const survivors = procs.slice(1).filter((p) => p.name !== o.dropSite);
    const uploads = await Promise.all(survivors.map((p) => uploadSpan(p.log)));
    const uploadsFrom = Math.min(...uploads.map((u) => u.startMs));
    const uploadsTo = Math.max(...uploads.map((u) => u.endMs));
    const ingestCpu = (pid: number | undefined): number => (ingested && pid !== undefined ? (ingested.get(pid)?.self ?? 0) - (start.get(pid)?.self ?? 0) : Number.NaN);
    return {
      roundS: (done.ts - firstAfterOpen.ts) / 1000,
      adminRoundS: (Number(info.finishedMs) - Number(info.startedMs)) / 1000,
      phases: phaseSeconds,
      participants: info.participants.length,
      dropped: info.dropped,
      bytesUp: Number(info.bytesUp),
      bytesDown: Number(info.bytesDown),
      coordinatorCpuS: cpu(coordinator.child.pid, 'self'),
      coordinatorIngestCpuS: ingestCpu(coordinator.child.pid),
      coordinatorPeakRssBytes,
      shards: shardPids.map((pid, i) => ({ cpuS: cpu(pid, 'self'), ingestCpuS: ingestCpu(pid), peakRssBytes: shardPeaks[i]! })),
      uploads,
      uploadWindowCpuS: {
        coordinator: watch.cpuBetween(coordinator.child.pid ?? -1, uploadsFrom, uploadsTo),
        shards: shardPids.map((pid) => watch.cpuBetween(pid, uploadsFrom, uploadsTo)),
      },
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
    for (const p of shardProcs) await stopProc(p);
    if (procs[0]) await stopProc(procs[0]);
  }
}

/** The benchmarks' stand-in trainer (`bench/fixtures/sleep-trainer.mjs`), from the sources or the build; `bench` names who asks in the error. */
export function sleepTrainerPath(bench: string): string {
  const candidates = [new URL('../fixtures/sleep-trainer.mjs', import.meta.url), new URL('../../../bench/fixtures/sleep-trainer.mjs', import.meta.url)].map((u) => fileURLToPath(u));
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`${bench}: sleep-trainer.mjs not found (looked at ${candidates.join(', ')})`);
  return found;
}

/** Waits until `admin status` shows every configured shard ready. */
async function shardsReady(admin: AdminClient, name: string, logDir: string): Promise<void> {
  for (let waited = 0; ; waited++) {
    const shards = (await admin.status()).shards;
    if (shards.length > 0 && shards.every((s) => s.state === 'ready')) return;
    if (waited > 600) throw new Error(`bench ${name}: the aggregator shards are not ready (${shards.map((s) => `${s.shardId} ${s.state} ${s.problem}`).join(', ')}); logs in ${logDir}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A site's upload as its log's `upload finished` line says: started (its time less the seconds it took), ended, and bytes. */
async function uploadSpan(log: string): Promise<{ startMs: number; endMs: number; bytes: number }> {
  const line = (await readFile(log, 'utf8'))
    .split('\n')
    .filter((l) => l.includes('"msg":"upload finished"'))
    .map((l) => JSON.parse(l) as { time: number; seconds: number; bytes: number })
    .at(-1);
  if (!line) throw new Error(`no "upload finished" line in ${log}`);
  return { startMs: line.time - line.seconds * 1000, endMs: line.time, bytes: line.bytes };
}

/** "phase seconds, …" of a round, for log lines. */
export const phaseLine = (r: RoundFigures): string => r.phases.map(([p, sec]) => `${p} ${sec.toFixed(2)}`).join(', ');
