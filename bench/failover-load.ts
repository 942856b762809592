/**
 * The failover bench's load mode (issue 19: "under the 8-site upload load of the transport bench
 * for 10 minutes: zero leadership changes"): `npm run bench -- failover --load-minutes M
 * [--sites 8] [--params 50000000] [--ttl-ms MS] [--keep] [--json]`.
 *
 * A standby pair — two coordinator processes with `ha`, the lease in a JetStream KV bucket and the
 * journal in a stream, both R=3 on a 3-node nats-server cluster on loopback (simulate/ha-pair.ts),
 * the product's lease unless `--ttl-ms` says otherwise — and `--sites` site agent processes given
 * both coordinators' addresses. Plain rounds (no secure aggregation, no evaluation) on a synthetic
 * model of `--params` F32 parameters (bench/tools/synthetic-model.ts) whose checkpoints the sites
 * download in bf16 and whose deltas they upload in f32, so a round moves 4 bytes up per parameter
 * and site for 2 down; stand-in trainers that take one 10 ms sleeping step, so training costs
 * nothing but writing the local model. The run has more rounds than any window commits; the load
 * starts when round 1 leaves `open` (every site connected) and is stopped after `M` minutes.
 *
 * Watched from outside the coordinators (bench/tools/pair-watch.ts): the leader's `admin status`
 * every 2 s (its term and lease age), every renewal the lease key stores (gaps between renewals,
 * time to store), each coordinator's event-loop delay and upload bytes from its Prometheus endpoint,
 * and the event stream's phases, uploads, commits and `leader.elected`. At the end the replicated
 * journal is read (readJournalChain): its `leader` records after the first are the leadership
 * changes. A coordinator that exits is started again as a standby, as a real pair's supervisor
 * would, so a change does not end the run early; any leadership change fails the bench.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { invariant } from '../aggregation/index.js';
import { freeLoopbackPort } from '../common/net.js';
import { AdminClient, type AdminEvent } from '../coordinator/index.js';
import { configurePair, pairEndpoints, readPairJournal, waitForLeader, writeFederationFiles, type CoordinatorEndpoint, type FederationFiles, type NatsCluster, type PairLease } from '../simulate/index.js';
import { patchJson, startProc, stopProc, type Proc } from './tools/bench-federation.js';
import { PairWatch, renewalGaps, siteUploads, uploadCover, type PairWatchFigures, type SiteUpload } from './tools/pair-watch.js';
import { blockModel, writeSyntheticModel } from './tools/synthetic-model.js';
import { fixed } from './tools/upload-setup.js';

const FEDERATION = 'bench';
/** More rounds than any window commits: the run is stopped, never finished. */
const ROUNDS = 1_000_000;
/** A stand-in step: nearly free, the sleep of a GPU that is not there. */
const STEP_MS = 10;
/** Default `--params`: 200 MB of f32 delta per site and round, uploads of about 20 s here, longer than the lease's grace. */
export const LOAD_PARAMS = 50_000_000;
/** How long the sites may take to connect and round 1 to leave `open`. */
const LOAD_START_MS = 300_000;

/** What the load mode runs. */
export interface FailoverLoadOptions {
  readonly minutes: number;
  readonly sites: number;
  readonly params: number;
  readonly lease: PairLease;
  /** Keep the federation's folder (logs, state) afterwards; it is always kept when the bench fails. */
  readonly keep: boolean;
  readonly log: (line: string) => void;
}

/** How often one process is started again before the bench stops trying. */
const MAX_RESTARTS = 3;

/** Processes started again when they exit, as a supervisor (systemd, a restart policy) would; every exit recorded. */
class Supervised {
  readonly exits: { readonly name: string; readonly atMs: number; readonly code: number | string; readonly log: string }[] = [];
  private readonly procs = new Map<string, Proc>();
  private stopping = false;

  constructor(private readonly o: { readonly logDir: string; readonly log: (line: string) => void }) {}

  async start(name: string, args: string[]): Promise<void> {
    const p = await startProc(name, args, this.o.logDir, []);
    this.procs.set(name, p);
    void p.exited.then((code) => {
      if (this.stopping) return;
      this.exits.push({ name, atMs: Date.now(), code, log: p.log });
      const again = this.exits.filter((e) => e.name === name).length <= MAX_RESTARTS;
      this.o.log(`  ${name} exited (${code}; see ${p.log})${again ? ': started again' : `: not started again (${MAX_RESTARTS} restarts)`}`);
      if (again) this.start(name, args).catch((err: unknown) => this.o.log(`  could not start ${name} again: ${(err as Error).message}`));
    });
  }

  /** Stops every process, `last` after the others. */
  async stop(last?: string): Promise<void> {
    this.stopping = true;
    const order = [...this.procs.keys()].sort((a, b) => Number(a === last) - Number(b === last));
    for (const name of order) await stopProc(this.procs.get(name)!);
  }
}

interface LoadFederation {
  readonly files: FederationFiles;
  readonly endpoints: readonly CoordinatorEndpoint[];
  readonly sites: readonly string[];
  readonly metricsPorts: ReadonlyMap<string, number>;
  readonly cluster: NatsCluster;
  readonly logDir: string;
}

/** Writes the model and the federation's files, starts the NATS cluster and configures the pair on it. */
async function writeLoadFederation(root: string, o: FailoverLoadOptions): Promise<LoadFederation> {
  const modelPath = join(root, 'model.safetensors');
  await writeSyntheticModel(modelPath, blockModel(o.params), 'failover-load');
  const sites = Array.from({ length: o.sites }, (_, i) => `site-${i + 1}`);
  const endpoints = await pairEndpoints();
  const files = await writeFederationFiles({
    dir: join(root, 'federation'),
    federation: FEDERATION,
    sites,
    admins: ['admin'],
    coordinators: endpoints,
    standin: { speeds: sites.map(() => 1), stepMs: STEP_MS },
    run: {
      id: 'failover-load',
      rounds: ROUNDS,
      minSites: o.sites,
      expectedSites: sites,
      strategy: { name: 'fedavg', lr: 1 },
      encoding: 'f32',
      checkpointDtype: 'bf16',
      evaluate: false,
      secureAggregation: { enabled: false },
      train: { max_steps: 1, batch_size: 1 },
      deadlines: { openS: 300, trainingS: 600, uploadS: 600, aggregateS: 600, commitS: 600 },
    },
  });
  const metricsPorts = new Map<string, number>();
  for (const e of endpoints) {
    const port = await freeLoopbackPort();
    metricsPorts.set(e.name, port);
    const file = files.coordinatorConfigs.get(e.name);
    invariant(file !== undefined, 'every coordinator of the pair has a config');
    // Two checkpoints kept: a long run must not fill the disk with a model per round.
    await patchJson(file, (c) => ({ ...c, model: { initial: modelPath }, retention: { keepLast: 2 }, metrics: { port } }));
  }
  // BF16 local models, as a GPU trainer of a language model writes them.
  for (const site of sites) await patchJson(files.siteConfigs.get(site)!, (c) => ({ ...c, runner: { ...(c['runner'] as object), outputDtype: 'BF16' } }));
  const shared = join(root, 'coordinator-state');
  await mkdir(shared, { recursive: true });
  const logDir = join(root, 'logs');
  await mkdir(logDir, { recursive: true });
  const cluster = await configurePair({ configs: files.coordinatorConfigs, endpoints, stateDir: shared, lease: o.lease });
  return { files, endpoints, sites, metricsPorts, cluster, logDir };
}

/**
 * `started` resolves (with the event's time) at the first phase after round 1's `open` — every site
 * connected, the load begins — or rejects once `deadlineMs` has passed; `onEvent` takes the events.
 */
function loadStart(deadlineMs: number, logDir: string): { onEvent: (e: AdminEvent) => void; started: Promise<number> } {
  let resolve: (ms: number) => void = () => undefined;
  let timer: NodeJS.Timeout | undefined;
  const started = new Promise<number>((res, reject) => {
    resolve = res;
    timer = setTimeout(() => reject(new Error(`round 1 did not leave open within ${deadlineMs / 1000} s; logs in ${logDir}`)), deadlineMs).unref();
  }).finally(() => clearTimeout(timer));
  const onEvent = (e: AdminEvent): void => {
    if (e.kind === 'phase.changed' && e.body['phase'] !== 'open') resolve(e.ts);
  };
  return { onEvent, started };
}

/** Waits `ms`, logging a progress line every minute. */
async function runWindow(ms: number, watch: PairWatch, startMs: number, log: (line: string) => void): Promise<void> {
  const endMs = startMs + ms;
  for (let minute = 1; Date.now() < endMs; minute++) {
    await new Promise((r) => setTimeout(r, Math.max(0, Math.min(endMs, startMs + minute * 60_000) - Date.now())));
    const f = watch.figures();
    const up = [...watch.bytesUp.values()].reduce((a, b) => a + b, 0);
    const gaps = renewalGaps(f.renewals).gapsMs;
    const s = (Date.now() - startMs) / 1000;
    log(
      `  ${(s / 60).toFixed(1)} min: ${f.committed.length} rounds committed, ${(up / 1e9).toFixed(2)} GB up (${fixed(up / 1e6 / s)} MB/s), ` +
        `lease age ≤ ${(f.maxLeaseAgeMs / 1000).toFixed(1)} s, renewal gaps ≤ ${(Math.max(0, ...gaps) / 1000).toFixed(1)} s, ` +
        `event loop ≤ ${(Math.max(0, ...f.loopLagMaxS.values()) * 1000).toFixed(0)} ms, status ≤ ${f.maxStatusMs} ms; leaders ${f.statusLeaders.join(' ')}`,
    );
  }
}

/** Runs the load mode; resolves with its figures, or throws (after logging them) on any leadership change. */
export async function runFailoverLoad(o: FailoverLoadOptions): Promise<Record<string, number | string | boolean>> {
  const root = await mkdtemp(join(tmpdir(), 'fedhpc-bench-failover-load-'));
  let keep = o.keep;
  try {
    const fed = await writeLoadFederation(root, o);
    const adminDir = join(root, 'federation', 'admins', 'admin');
    const admin = new AdminClient({ coordinators: fed.endpoints.map((e) => e.address), tls: { ca: join(adminDir, 'ca.crt'), cert: join(adminDir, 'admin.crt'), key: join(adminDir, 'admin.key') } });
    const nc = await connect({ servers: [...fed.cluster.urls] });
    const coordinators = new Supervised({ logDir: fed.logDir, log: o.log });
    const sites = new Supervised({ logDir: fed.logDir, log: o.log });
    const stop = new AbortController();
    const load = loadStart(LOAD_START_MS, fed.logDir);
    load.started.catch(() => undefined);
    const watch = new PairWatch({ admin, nc, federation: FEDERATION, metricsPorts: fed.metricsPorts, onEvent: load.onEvent, log: o.log });
    let leader: string | undefined;
    try {
      const [first, second] = fed.endpoints;
      invariant(first !== undefined && second !== undefined, 'a pair has two coordinators');
      const coordinatorArgs = (name: string): string[] => ['coordinator', '--config', fed.files.coordinatorConfigs.get(name)!];
      await coordinators.start(first.name, coordinatorArgs(first.name));
      await waitForLeader(admin, Date.now() + 120_000, stop.signal);
      await coordinators.start(second.name, coordinatorArgs(second.name));
      await watch.start();
      for (const site of fed.sites) await sites.start(site, ['site', '--config', fed.files.siteConfigs.get(site)!]);
      const startMs = await load.started;
      o.log(`  load started (round 1 left open); running ${o.minutes} min`);
      await runWindow(o.minutes * 60_000, watch, startMs, o.log);
      const endMs = Date.now();
      await Promise.all([watch.sampleStatus(), watch.scrapeAll()]);
      const journal = await readPairJournal(fed.cluster.urls, FEDERATION);
      leader = journal.leaders.at(-1)?.holder;
      const uploads = await siteUploads(fed.logDir, fed.sites);
      const figures = loadFigures({ watch: watch.figures(), bytesUp: [...watch.bytesUp.values()].reduce((a, b) => a + b, 0), uploads, journal, startMs, endMs, o });
      const exits = [...coordinators.exits, ...sites.exits];
      const result = { ...figures, processExits: exits.length };
      o.log(`figures: ${JSON.stringify(result)}`);
      const changes = Math.max(figures.leaderChanges, figures.leadersElected - 1, figures.leadersSeenByStatus - 1);
      for (const e of exits) o.log(`  exit: ${e.name} at +${((e.atMs - startMs) / 1000).toFixed(1)} s (${e.code}), log ${e.log}`);
      if (changes > 0 || coordinators.exits.length > 0) {
        keep = true;
        const why = `${changes} leadership change(s), ${coordinators.exits.length} coordinator exit(s)`;
        throw new Error(`${why} under load (journal leaders ${figures.leaders}); logs kept in ${fed.logDir}`);
      }
      return result;
    } finally {
      stop.abort();
      await watch.close();
      await sites.stop();
      // The standby first: the leader's clean stop hands the lease over, and nobody should take it.
      await coordinators.stop(leader);
      admin.close();
      await nc.close();
      await fed.cluster.stop();
    }
  } finally {
    if (keep) o.log(`kept ${root}`);
    else await rm(root, { recursive: true, force: true });
  }
}

/** The bench's figures from what the watch saw and the journal holds, over the window [startMs, endMs]. */
function loadFigures(a: {
  watch: PairWatchFigures;
  bytesUp: number;
  uploads: readonly SiteUpload[];
  journal: { leaders: { holder: string; term: number }[]; committed: number[] };
  startMs: number;
  endMs: number;
  o: FailoverLoadOptions;
}) {
  const w = a.watch;
  const windowS = (a.endMs - a.startMs) / 1000;
  const { gapsMs, storeMs } = renewalGaps(w.renewals.filter((r) => r.sentMs >= a.startMs - 60_000));
  const cover = uploadCover(a.uploads, a.o.sites, a.startMs, a.endMs);
  const inWindow = a.uploads.filter((u) => u.endMs - u.seconds * 1000 >= a.startMs && u.endMs <= a.endMs);
  const phaseS = new Map<string, number>();
  for (const [i, p] of w.phases.entries()) {
    const from = Math.max(p.atMs, a.startMs);
    const to = Math.min(w.phases[i + 1]?.atMs ?? a.endMs, a.endMs);
    if (to > from) phaseS.set(p.phase, (phaseS.get(p.phase) ?? 0) + (to - from) / 1000);
  }
  const max = (m: ReadonlyMap<string, number>): number => Math.max(0, ...m.values());
  const p99 = (v: number[]): number => [...v].sort((x, y) => x - y)[Math.max(0, Math.ceil(v.length * 0.99) - 1)] ?? NaN;
  return {
    sites: a.o.sites,
    params: a.o.params,
    leaseTtlS: a.o.lease.ttlMs / 1000,
    loadMinutes: a.o.minutes,
    windowS: fixed(windowS),
    leaderChanges: Math.max(0, a.journal.leaders.length - 1),
    leadersElected: w.electedTerms.length,
    leadersSeenByStatus: w.statusLeaders.length,
    leaders: a.journal.leaders.map((l) => `${l.holder}@${l.term}`).join(','),
    roundsCommitted: a.journal.committed.length,
    meanRoundS: fixed(windowS / Math.max(1, w.committed.length), 2),
    uploadBytes: a.bytesUp,
    uploadMBs: fixed(a.bytesUp / 1e6 / windowS),
    committedUploadBytes: w.committed.reduce((t, r) => t + r.bytesUp, 0),
    committedDownloadBytes: w.committed.reduce((t, r) => t + r.bytesDown, 0),
    // While at least one site uploads (the sites' own upload timings): the rate and the share of the window.
    uploadingMBs: fixed(cover.bytes / 1e6 / Math.max(cover.anyS, 1e-3)),
    uploadingShare: fixed(cover.anyS / windowS, 3),
    allSitesUploadingShare: fixed(cover.allS / windowS, 3),
    siteUploadMeanMBs: fixed(inWindow.reduce((t, u) => t + u.bytes / u.seconds, 0) / Math.max(1, inWindow.length) / 1e6),
    phaseShares: [...phaseS].map(([p, s]) => `${p} ${fixed(s / windowS, 3)}`).join(', '),
    maxLeaseAgeMs: w.maxLeaseAgeMs,
    statusSamples: w.statusSamples,
    statusFailures: w.statusFailures,
    maxStatusMs: w.maxStatusMs,
    renewalsSeen: gapsMs.length + 1,
    maxRenewalGapMs: Math.max(0, ...gapsMs),
    p99RenewalGapMs: p99(gapsMs),
    maxRenewalStoreMs: Math.max(0, ...storeMs),
    p99RenewalStoreMs: p99(storeMs),
    maxEventLoopLagMs: fixed(max(w.loopLagMaxS) * 1000),
    maxEventLoopLagP99Ms: fixed(max(w.loopLagP99MaxS) * 1000),
    metricsScrapes: w.metricsScrapes,
  };
}
