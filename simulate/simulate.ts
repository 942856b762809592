/**
 * `fedhpc simulate`: a whole federation on one machine. Provisions a temporary federation, starts
 * the coordinator and N site agents as separate OS processes talking gRPC over mTLS on loopback,
 * follows the run through the admin API, and reports one line per round and a summary. With
 * `pair`, two coordinators over a 3-node NATS cluster instead of one (simulate/ha-pair.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, open, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { AdminClient, createDashboardToken, followEvents, noLeaderAnswered, type AdminEvent, type CoordinatorOptions } from '../coordinator/index.js';
import type { RoundsResponse__Output } from '../proto/index.js';
import { bigramEvalLoss, defaultSiteLanguages, siteDataset, VOCAB_SIZE, type DropPhase } from '../site-agent/index.js';
import { DEMO_TRAIN, writeFederationFiles } from './federation-files.js';
import { DEMO_DATA } from './demo.js';
import { TORCH_TRAIN, type JobRunnerKind } from './torch-sites.js';
import { STANDIN_STEP_MS, STANDIN_TRAIN, simulatedTraining, type StandinSites } from './standin-sites.js';
import { freeLoopbackPort } from '../common/net.js';
import { sleep } from '../common/backoff.js';
import { SHARD_PORT, type SimulateLayout } from './containers.js';
import { NODE_HEAP_OPTIONS } from '../common/gc-tuning.js';
import { withMallocTuning } from '../common/malloc.js';
import { configurePair, DEMO_LEASE, pairEndpoints, PairSupervisor, waitForLeader, type LeaderChange, type PairOptions, type PairSummary } from './ha-pair.js';
import type { NatsCluster } from './nats-cluster.js';

export const SIMULATE_STRATEGIES = ['fedavg', 'diloco', 'fedadam'] as const;
export type SimulateStrategy = (typeof SIMULATE_STRATEGIES)[number];

export interface SimulateOptions {
  readonly sites: number;
  readonly rounds: number;
  readonly strategy: SimulateStrategy;
  /** Keeps state here (and continues a run found there); default a new temporary folder. */
  readonly stateDir?: string | undefined;
  /** Contributions needed per round; default: all sites but one (at least 1). */
  readonly minSites?: number | undefined;
  /** Training settings per shard (`run.train`, read by the sites' runner); default per runner. */
  readonly train?: Readonly<Record<string, unknown>> | undefined;
  /** Strategy hyper-parameters (e.g. `{ lr: 0.7, momentum: 0.9 }` for DiLoCo's outer step). */
  readonly strategyParams?: Readonly<Record<string, number>> | undefined;
  /**
   * How sites train: `builtin` (default), torch_shard.py through the `command` or `slurm` runner,
   * or `standin`: stand-in trainers that sleep as a GPU computes (the default with `siteSpeeds`).
   */
  readonly runner?: 'builtin' | 'standin' | JobRunnerKind | undefined;
  /** Relative speeds of the stand-in trainers, one per site (all 1 when absent). */
  readonly siteSpeeds?: readonly number[] | undefined;
  /** A time budget per round in seconds (`run.train.budget.seconds`); builtin and stand-in sites. */
  readonly budgetS?: number | undefined;
  /** Overlapped rounds (`run.train.overlap`): persistent stand-in trainers; needs `budgetS`. */
  readonly overlap?: boolean | undefined;
  /** `run.maxSiteWeight`, instead of what the budget sizes (a token budget's default: T plus one batch). */
  readonly maxSiteWeight?: number | undefined;
  /**
   * How the coordinator weighs deltas (`run.weighting`); default: tokens with `budgetS`, else the
   * coordinator's default. A token budget in `train` needs `tokens`.
   */
  readonly weighting?: NonNullable<CoordinatorOptions['run']>['weighting'];
  /**
   * Job runners only: extra fields of each site's `data` (spec.json `data`), one object per site in
   * site order — e.g. torch_shard.py's `token_budget_scale`, a benchmark's stand-in for a slower site.
   */
  readonly siteData?: readonly Readonly<Record<string, unknown>>[] | undefined;
  /** Python with torch for the job runners (Debian's is not the first python3 on PATH). */
  readonly python?: string | undefined;
  /** Secure aggregation (SecAgg+); on by default. */
  readonly secure?: boolean | undefined;
  /** Sites to kill when they reach a phase (each once; restarted after that round ends). */
  readonly drop?: readonly { readonly site: string; readonly phase: DropPhase }[] | undefined;
  /** A standby pair over a NATS cluster instead of one coordinator (process layout only). */
  readonly pair?: PairOptions | undefined;
  /**
   * Aggregator shards (issue 22) beside the one coordinator (default 0): local processes, or with a
   * container layout a container each sharing the coordinator's state dir; rounds aggregate on them.
   * Refused with a pair (not built).
   */
  readonly shards?: number | undefined;
  /** Path of the CLI entry to start the parts with (`node <cli> coordinator …`). */
  readonly cliPath: string;
  /** Give up after this long. */
  readonly timeoutS: number;
  /** Receives each output record (round lines and the summary). */
  readonly emit: (record: SimulateRecord) => void;
  readonly signal?: AbortSignal;
  /** Where the parts run: OS processes on loopback by default; `containerLayout()` for containers. Closed at the end. */
  readonly layout?: SimulateLayout | undefined;
}

export interface SiteEvalLine {
  readonly site: string;
  readonly loss: number;
}

/**
 * What one site did in a committed round, as `admin round N` reports its upload: tokens and steps,
 * the staleness of its base, and its busy fraction (first to last training step ÷ the round's wall
 * time; absent when the coordinator could not compute it).
 */
export interface SiteRoundWork {
  readonly tokens: number;
  readonly steps: number;
  readonly staleness: number;
  readonly busyFraction?: number;
  /** Overlapped rounds: steps between the site's previous snapshot and the one that applied this round's global. */
  readonly appliedStaleness?: number;
}

export type SimulateRecord =
  | {
      type: 'start';
      stateDir: string;
      sites: number;
      rounds: number;
      strategy: string;
      coordinator: string;
      /** The dashboard's sign-in link (with a token of the simulation's admin), when it runs. */
      dashboard?: string;
    }
  | {
      type: 'round';
      round: number;
      secure: boolean;
      participants: string[];
      dropped: string[];
      evalLoss: number;
      siteEvalLoss: Record<string, number>;
      /** Per participant: tokens and steps trained this round. */
      work: Record<string, SiteRoundWork>;
      bytesUp: number;
      bytesDown: number;
      seconds: number;
    }
  | LeaderChange
  | {
      type: 'summary';
      rounds: number;
      sites: number;
      initialEvalLoss: number;
      finalEvalLoss: number;
      bigramEvalLoss: number;
      modelSha256: string;
      seconds: number;
      stateDir: string;
      /** With a pair: leader changes, failover time, and the replicated journal's committed rounds. */
      ha?: PairSummary;
      /** With aggregator shards: how many, and the rounds they aggregated (the others the coordinator did alone). */
      shards?: { readonly count: number; readonly roundsAggregated: number };
    };

/** Why a simulation did not finish. */
export class SimulateError extends Error {
  readonly code = 'SIMULATE_FAILED';
}


interface Part {
  readonly name: string;
  readonly child: ChildProcess;
  readonly log: string;
}

async function startPart(name: string, command: { file: string; args: string[] }, logDir: string, env: Readonly<Record<string, string>> = {}): Promise<Part> {
  const log = join(logDir, `${name}.log`);
  const fh = await open(log, 'a');
  const child = spawn(command.file, command.args, { stdio: ['ignore', fh.fd, fh.fd], env: withMallocTuning({ ...process.env, ...env }) });
  child.once('exit', () => void fh.close().catch(() => undefined));
  return { name, child, log };
}

async function stopPart(p: Part): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  const exited = once(p.child, 'exit');
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

/** Runs a simulated federation to the end of its rounds; resolves with the summary. */
export async function simulate(o: SimulateOptions): Promise<Extract<SimulateRecord, { type: 'summary' }>> {
  const t0 = Date.now();
  const runner = o.runner ?? (o.siteSpeeds ? 'standin' : 'builtin');
  const jobs = runner === 'command' || runner === 'slurm';
  if (o.siteData !== undefined && (!jobs || o.siteData.length !== o.sites)) {
    throw new SimulateError(`siteData needs a job runner (command or slurm) and one object per site: ${o.siteData.length} for ${o.sites} sites with runner ${runner}`);
  }
  const stateDir = resolve(o.stateDir ?? (await mkdtemp(join(tmpdir(), 'fedhpc-sim-'))));
  const logDir = join(stateDir, 'logs');
  await mkdir(logDir, { recursive: true });
  const sites = Array.from({ length: o.sites }, (_, i) => `site-${i + 1}`);
  const layout = o.layout;
  if (o.pair && layout) throw new SimulateError('a standby pair runs as local processes, not in containers');
  const shardCount = o.shards ?? 0;
  if (shardCount > 0 && o.pair) throw new SimulateError('aggregator shards run beside one coordinator (not with a standby pair, yet)');
  // In containers a shard is reached by its container's hostname, as the coordinator is; it takes
  // the sites' part uploads (plain rounds) on that address.
  const shards = await Promise.all(
    Array.from({ length: shardCount }, async (_, i) => {
      const name = `shard-${i + 1}`;
      if (layout) return { name, address: `${name}:${SHARD_PORT}`, listen: `0.0.0.0:${SHARD_PORT}` };
      const shardPort = await freeLoopbackPort();
      return { name, address: `localhost:${shardPort}`, listen: `127.0.0.1:${shardPort}` };
    }),
  );
  const endpoints = o.pair ? await pairEndpoints() : undefined;
  const port = layout || endpoints ? 0 : await freeLoopbackPort();
  const address = layout?.coordinatorAddress ?? endpoints?.map((e) => e.address).join(',') ?? `localhost:${port}`;
  const fedDir = join(stateDir, 'federation');
  // The dashboard on loopback (one coordinator's process layout only: a container's port is not this machine's).
  const dashboardPort = layout || endpoints ? undefined : await freeLoopbackPort();
  const dashboard = dashboardPort === undefined ? undefined : { listen: `127.0.0.1:${dashboardPort}`, url: `http://127.0.0.1:${dashboardPort}` };
  const write = layout
    ? (f: Parameters<SimulateLayout['writeFiles']>[0]) => layout.writeFiles({ ...f, aggregators: shards })
    : endpoints
      ? (f: Parameters<SimulateLayout['writeFiles']>[0]) => writeFederationFiles({ ...f, coordinators: endpoints })
      : (f: Parameters<SimulateLayout['writeFiles']>[0]) => writeFederationFiles({ ...f, coordinatorAddress: address, listen: `127.0.0.1:${port}`, dashboard, aggregators: shards });
  const standin: StandinSites | undefined = runner === 'standin' ? { speeds: o.siteSpeeds ?? sites.map(() => 1), stepMs: STANDIN_STEP_MS } : undefined;
  if (o.overlap && (!standin || o.budgetS === undefined)) throw new SimulateError('overlapped rounds need stand-in trainers (siteSpeeds or runner standin) and a time budget (budgetS)');
  const training = simulatedTraining(o.train ?? (jobs ? TORCH_TRAIN : standin ? STANDIN_TRAIN : DEMO_TRAIN), o.budgetS, standin, o.overlap === true);
  const weighting = o.weighting ?? training.weighting;
  const files = await write({
    dir: fedDir,
    federation: 'simulation',
    sites,
    admins: ['admin'],
    trainer: jobs ? { kind: runner, python: o.python ?? '/usr/bin/python3', ...(o.siteData ? { siteData: o.siteData } : {}) } : undefined,
    standin,
    run: {
      id: 'simulation',
      rounds: o.rounds,
      minSites: o.minSites ?? Math.max(1, o.sites - 1),
      expectedSites: sites,
      strategy: { name: o.strategy, ...o.strategyParams },
      secureAggregation: { enabled: o.secure ?? true },
      train: training.train,
      ...(weighting ? { weighting } : {}),
      ...((o.maxSiteWeight ?? training.maxSiteWeight) !== undefined ? { maxSiteWeight: o.maxSiteWeight ?? training.maxSiteWeight } : {}),
      deadlines: { openS: 60, trainingS: training.trainingS, uploadS: 60, aggregateS: 60, commitS: 30, evalS: 30 },
    },
    // On one machine a site that went away is gone: drop it (and its partial upload) after 10 s
    // without progress rather than holding its place for a WAN-sized minute.
    limits: { idleTimeoutS: 10 },
  });
  o.emit({ type: 'start', stateDir, sites: o.sites, rounds: o.rounds, strategy: o.strategy, coordinator: address, ...(dashboard ? { dashboard: await dashboardLink(stateDir, dashboard.url, o.timeoutS) } : {}) });

  const parts: Part[] = [];
  const command = (name: string, args: string[]): { file: string; args: string[] } =>
    layout ? layout.command(name, args, files, fedDir) : { file: process.execPath, args: [...NODE_HEAP_OPTIONS, o.cliPath, ...args] };
  const admin = new AdminClient({
    ...(endpoints ? { coordinators: endpoints.map((e) => e.address) } : { coordinator: layout?.adminAddress ?? address }),
    serverName: layout?.adminServerName,
    tls: {
      ca: join(stateDir, 'federation/admins/admin/ca.crt'),
      cert: join(stateDir, 'federation/admins/admin/admin.crt'),
      key: join(stateDir, 'federation/admins/admin/admin.key'),
    },
  });
  const stop = new AbortController();
  const onOuterAbort = (): void => stop.abort(o.signal?.reason);
  o.signal?.addEventListener('abort', onOuterAbort, { once: true });
  let cluster: NatsCluster | undefined;
  let pair: PairSupervisor | undefined;
  try {
    let died: Promise<never>;
    const coordinatorLog = join(logDir, endpoints ? 'coord-*.log' : 'coordinator.log');
    if (o.pair && endpoints) {
      const lease = o.pair.lease ?? DEMO_LEASE;
      // Checkpoints and spools on storage both reach (here one folder); the journal goes to JetStream.
      const shared = join(stateDir, 'coordinator-state');
      await mkdir(shared, { recursive: true });
      cluster = await configurePair({ configs: files.coordinatorConfigs, siteConfigs: files.siteConfigs, endpoints, stateDir: shared, lease, siteTransfer: o.pair.siteTransfer });
      pair = await PairSupervisor.start({
        endpoints,
        configs: files.coordinatorConfigs,
        federation: 'simulation',
        natsUrls: cluster.urls,
        pair: o.pair,
        lease,
        admin,
        start: (name, config, env) => startPart(name, command(name, ['coordinator', '--config', config]), logDir, env),
        emit: o.emit,
        error: (m) => new SimulateError(m),
        signal: stop.signal,
      });
      died = pair.died;
    } else {
      const coordinator = await startPart('coordinator', command('coordinator', ['coordinator', '--config', files.coordinatorConfig]), logDir);
      parts.push(coordinator);
      died = new Promise<never>((_, reject) =>
        coordinator.child.once('exit', (code, sig) => reject(new SimulateError(`coordinator exited (${code ?? sig}); see ${coordinator.log}`))),
      );
      died.catch(() => undefined);
      await Promise.race([admin.waitForReady(Date.now() + 30_000), died]);
    }

    // Rounds committed by an earlier invocation on this state dir are not reported again.
    const before = await admin.rounds();
    const printed = new Set<number>(before.rounds.filter((r) => r.outcome === 'committed' && r.hasEval).map((r) => Number(r.round)));
    let done: (summary: Extract<SimulateRecord, { type: 'summary' }>) => void = () => undefined;
    const finished = new Promise<Extract<SimulateRecord, { type: 'summary' }>>((r) => (done = r));
    let checking = Promise.resolve();
    const check = (): void => {
      checking = checking.then(async () => {
        const rounds = await admin.rounds();
        for (const line of await roundLines(admin, rounds, printed, o.secure ?? true)) o.emit(line);
        const status = await admin.status();
        if (status.runState === 'failed') throw new SimulateError(`the run failed; see ${coordinatorLog}`);
        const final = rounds.rounds.find((r) => r.outcome === 'committed' && r.round === String(o.rounds));
        if (status.runState === 'finished' && final?.hasEval && rounds.hasInitialEval) {
          done({
            type: 'summary',
            rounds: o.rounds,
            sites: o.sites,
            initialEvalLoss: rounds.initialEvalLoss,
            finalEvalLoss: final.evalLoss,
            bigramEvalLoss: bigramBaseline(o.sites),
            modelSha256: status.globalModelSha256,
            seconds: (Date.now() - t0) / 1000,
            stateDir,
            ...(pair ? { ha: await pair.summary() } : {}),
            ...(shards.length > 0 ? { shards: { count: shards.length, roundsAggregated: await roundsOnShards(join(logDir, 'coordinator.log')) } } : {}),
          });
        }
      });
      // During a failover no coordinator answers: the new leader's event stream brings the next check.
      checking = checking.catch((err: unknown) => {
        if (!pair || !noLeaderAnswered(err)) stop.abort(err);
      });
    };
    let reviveOnRoundEnd: () => void = () => undefined;
    const onEvent = (e: AdminEvent): void => {
      pair?.onEvent(e.kind, e.body);
      if (e.kind === 'round.committed' || e.kind === 'round.aborted') reviveOnRoundEnd();
      if (e.kind === 'round.evaluated' || e.kind === 'run.finished' || e.kind === 'run.failed' || e.kind === 'round.committed') check();
    };
    const following = followEvents(admin, onEvent, pair ? () => waitForLeader(admin, Date.now() + 120_000, stop.signal).then(check) : undefined, stop.signal);
    following.catch((err: unknown) => stop.abort(err));

    // Aggregator shards attach before the sites start, so that the first round can aggregate on them.
    for (const shard of shards) parts.push(await startPart(shard.name, command(shard.name, ['aggregator', '--config', files.aggregatorConfigs.get(shard.name)!]), logDir));
    if (shards.length > 0) {
      await Promise.race([
        waitForShards(admin, Date.now() + 30_000, stop.signal).catch((err: unknown) => {
          throw new SimulateError(`the aggregator shards did not become ready: ${(err as Error).message}; logs in ${logDir}`);
        }),
        died,
      ]);
    }
    const siteArgs = (site: string, dieAt?: DropPhase): string[] => ['site', '--config', files.siteConfigs.get(site)!, ...(dieAt ? ['--die-at', dieAt] : [])];
    const doomed = new Map((o.drop ?? []).map((d) => [d.site, d.phase]));
    const killed = new Set<string>();
    for (const site of sites) {
      const part = await startPart(site, command(site, siteArgs(site, doomed.get(site))), logDir);
      if (doomed.has(site)) part.child.once('exit', () => killed.add(site));
      parts.push(part);
    }
    // A site killed by --drop comes back once the round it died in has ended, to rejoin the next.
    const revive = (): void => {
      for (const site of [...killed]) {
        killed.delete(site);
        void startPart(`${site}-restarted`, command(`${site}-restarted`, siteArgs(site)), logDir).then((p) => parts.push(p));
      }
    };
    reviveOnRoundEnd = revive;
    check(); // a run found finished in the state dir reports at once
    const timeout = setTimeout(() => stop.abort(new SimulateError(`no result after ${o.timeoutS} s; logs in ${logDir}`)), o.timeoutS * 1000);
    const aborted = new Promise<never>((_, reject) => stop.signal.addEventListener('abort', () => reject(stop.signal.reason), { once: true }));
    try {
      const summary = { ...(await Promise.race([finished, aborted, died])), seconds: (Date.now() - t0) / 1000 };
      o.emit(summary);
      return summary;
    } finally {
      clearTimeout(timeout);
    }
  } finally {
    o.signal?.removeEventListener('abort', onOuterAbort);
    stop.abort(new SimulateError('simulation over'));
    admin.close();
    // Sites first, so none reports the coordinator's shutdown as a failure.
    pair?.stop();
    const coordinators = pair ? pair.parts : parts.slice(0, 1);
    for (const p of parts.slice(pair ? 0 : 1).reverse()) await stopPart(p);
    for (const p of coordinators) await stopPart(p);
    await cluster?.stop();
    await layout?.close();
  }
}

/** Resolves once every aggregator shard the coordinator names is ready; rejects at `deadlineMs`. */
async function waitForShards(admin: AdminClient, deadlineMs: number, signal: AbortSignal): Promise<void> {
  for (;;) {
    const status = await admin.status().catch(() => undefined);
    if (status && status.shards.length > 0 && status.shards.every((s) => s.state === 'ready')) return;
    if (Date.now() > deadlineMs) {
      throw new Error(status ? status.shards.map((s) => `${s.shardId} ${s.state}${s.problem ? ` (${s.problem})` : ''}`).join(', ') : 'the coordinator did not answer');
    }
    await sleep(200, signal);
  }
}

/** Rounds the coordinator's log says it aggregated on the shards. */
async function roundsOnShards(coordinatorLog: string): Promise<number> {
  const text = await readFile(coordinatorLog, 'utf8').catch(() => '');
  return text.split('\n').filter((line) => line.includes('"msg":"aggregated on the shards"')).length;
}

/**
 * A sign-in link to the simulation's dashboard: a token of its admin, valid for the simulation's
 * timeout (at least an hour, at most the dashboard's default cap of a day).
 */
async function dashboardLink(stateDir: string, url: string, timeoutS: number): Promise<string> {
  const dir = join(stateDir, 'federation/admins/admin');
  const [certPem, keyPem] = await Promise.all([readFile(join(dir, 'admin.crt'), 'utf8'), readFile(join(dir, 'admin.key'), 'utf8')]);
  const validS = Math.min(24 * 3600, Math.max(3600, timeoutS));
  return `${url}/login#token=${createDashboardToken({ certPem, keyPem, validMs: validS * 1000 }).token}`;
}

/** Round records for committed rounds whose evaluation is known and that were not printed yet. */
async function roundLines(admin: AdminClient, r: RoundsResponse__Output, printed: Set<number>, secure: boolean): Promise<SimulateRecord[]> {
  const out: SimulateRecord[] = [];
  for (const info of r.rounds) {
    const round = Number(info.round);
    if (info.outcome !== 'committed' || !info.hasEval || printed.has(round)) continue;
    printed.add(round);
    out.push({
      type: 'round',
      round,
      secure,
      participants: info.participants,
      dropped: info.dropped,
      evalLoss: info.evalLoss,
      siteEvalLoss: Object.fromEntries(info.evals.map((e) => [e.siteId, e.loss])),
      work: await roundWork(admin, round),
      bytesUp: Number(info.bytesUp),
      bytesDown: Number(info.bytesDown),
      seconds: (Number(info.finishedMs) - Number(info.startedMs)) / 1000,
    });
  }
  return out;
}

/** Each participant's tokens and steps in committed round `round`, from its journaled upload counts. */
async function roundWork(admin: AdminClient, round: number): Promise<Record<string, SiteRoundWork>> {
  const detail = await admin.round(round);
  const committed = detail.attempts.find((a) => a.outcome === 'committed');
  return Object.fromEntries(
    (committed?.participants ?? []).map((p) => [
      p.siteId,
      // A busy fraction below 0 is one the coordinator could not compute (no span reported).
      {
        tokens: Number(p.tokens),
        steps: Number(p.steps),
        staleness: p.staleness,
        ...(p.busyFraction >= 0 ? { busyFraction: p.busyFraction } : {}),
        ...(p.appliedStaleness > 0 ? { appliedStaleness: p.appliedStaleness } : {}),
      },
    ]),
  );
}

/** Held-out loss of a character bigram model fitted to the union of the sites' training data. */
export function bigramBaseline(sites: number): number {
  const languages = defaultSiteLanguages(sites);
  const data = languages.map((language, i) => siteDataset({ language, ...DEMO_DATA, seed: i + 1 }));
  return bigramEvalLoss(
    data.map((d) => d.train),
    data.map((d) => d.heldout),
    VOCAB_SIZE,
  );
}
