/**
 * `npm run bench -- load [--sites N] [--uploaders K] [--json]`: a coordinator (its own process)
 * with N sites joined over real gRPC mTLS — N−K lightweight in-process sites, each with its own
 * certificate, heartbeating and holding their task stream open, and K real site agents that train
 * and upload with the real Upload RPC. Measures the p99 latency of admin `Status` while the K
 * upload (target < 100 ms), and the coordinator's CPU per idle site against its own idle baseline
 * measured in the same run.
 */
import * as grpc from '@grpc/grpc-js';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { NODE_HEAP_OPTIONS } from '../common/gc-tuning.js';
import { freeLoopbackPort } from '../common/net.js';
import { AdminClient } from '../coordinator/index.js';
import { PROTOCOL_VERSION, loadProto, type HeartbeatRequest, type SiteServiceClient } from '../proto/index.js';
import { writeFederationFiles } from '../simulate/index.js';
import type { Benchmark } from './registry.js';

const CLI = resolve('dist/cli/main.js');
const HEARTBEAT_MS = 2_000;

function flag(args: string[], name: string, def: number): number {
  const i = args.indexOf(`--${name}`);
  const v = i >= 0 ? Number(args[i + 1]) : def;
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} needs a positive integer`);
  return v;
}

/** Seconds of CPU (user + system) a process has used, from /proc (Linux). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  // utime and stime are fields 14 and 15 of stat; after the ") " split they are at 11 and 12.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Percent of one core `pid` used over `ms`. */
async function cpuPercent(pid: number, ms: number): Promise<number> {
  const c0 = cpuSeconds(pid);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, ms));
  return ((cpuSeconds(pid) - c0) / ((performance.now() - t0) / 1000)) * 100;
}

/** A lightweight site: joins, opens its task stream (and ignores the tasks), heartbeats on a stream. */
class LightSite {
  private readonly client: SiteServiceClient;
  private timer: NodeJS.Timeout | undefined;
  private tasks: grpc.ClientReadableStream<unknown> | undefined;
  private beats: grpc.ClientDuplexStream<HeartbeatRequest, unknown> | undefined;
  errors = 0;

  constructor(address: string, dir: string, readonly site: string) {
    const creds = grpc.credentials.createSsl(readFileSync(join(dir, 'ca.crt')), readFileSync(join(dir, 'site.key')), readFileSync(join(dir, 'site.crt')));
    this.client = new (loadProto().fedhpc.v1.SiteService)(address, creds, { 'grpc.enable_http_proxy': 0 });
  }

  async start(): Promise<void> {
    await new Promise<void>((res, rej) =>
      this.client.Join({ siteId: this.site, protocolVersion: PROTOCOL_VERSION, agentVersion: 'bench-load' }, { deadline: Date.now() + 30_000 }, (err) => (err ? rej(err) : res())),
    );
    this.tasks = this.client.Tasks({});
    this.tasks.on('data', () => undefined);
    this.tasks.on('error', () => undefined);
    // On one Heartbeats stream, as the agent sends them (reopened after an error, counted).
    this.timer = setInterval(() => {
      if (!this.beats) {
        const beats = this.client.Heartbeats();
        beats.on('data', () => undefined);
        beats.on('error', () => {
          this.errors += 1;
          if (this.beats === beats) this.beats = undefined;
        });
        this.beats = beats;
      }
      this.beats.write({ activity: 'idle', progress: -1 });
    }, HEARTBEAT_MS);
  }

  close(): void {
    clearInterval(this.timer);
    this.beats?.cancel();
    this.tasks?.cancel();
    this.client.close();
  }
}

async function startProcess(args: string[], log: string): Promise<ChildProcess> {
  const fh = await open(log, 'a');
  const child = spawn(process.execPath, [...NODE_HEAP_OPTIONS, CLI, ...args], { stdio: ['ignore', fh.fd, fh.fd] });
  child.once('exit', () => void fh.close().catch(() => undefined));
  return child;
}

function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? NaN;
}

/** Samples `Status` latency every `everyMs` until `done()` or `timeoutMs`. */
async function sampleStatus(admin: AdminClient, everyMs: number, done: () => Promise<boolean>, timeoutMs: number): Promise<number[]> {
  const samples: number[] = [];
  const end = Date.now() + timeoutMs;
  let n = 0;
  while (Date.now() < end) {
    const t0 = performance.now();
    await admin.status();
    samples.push(performance.now() - t0);
    if (++n % 10 === 0 && (await done())) break;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return samples;
}

export const load: Benchmark = {
  async run(args, log) {
    const sites = flag(args, 'sites', 64);
    const uploaders = flag(args, 'uploaders', 8);
    const dir = await mkdtemp(join(tmpdir(), 'fedhpc-bench-load-'));
    const children: ChildProcess[] = [];
    const light: LightSite[] = [];
    try {
      const port = await freeLoopbackPort();
      const address = `localhost:${port}`;
      const names = Array.from({ length: sites }, (_, i) => `site-${i + 1}`);
      const real = names.slice(0, uploaders);
      const files = await writeFederationFiles({
        dir,
        federation: 'loadfed',
        sites: names,
        admins: ['admin'],
        coordinatorAddress: address,
        listen: `127.0.0.1:${port}`,
        run: {
          id: 'load',
          rounds: 1,
          minSites: uploaders,
          // The round opens once the real agents are in; every connected site is invited.
          expectedSites: real,
          evaluate: false,
          train: { steps: 5, batchSize: 16, lr: 0.01 },
          deadlines: { openS: 600, trainingS: 300, uploadS: 300 },
        },
      });
      // Heartbeats and joins of 64 sites are well under the default per-site limits; the admin polls fast.
      const cfgText = JSON.parse(await readFile(files.coordinatorConfig, 'utf8')) as Record<string, unknown>;
      await writeFile(files.coordinatorConfig, JSON.stringify({ ...cfgText, heartbeatIntervalMs: HEARTBEAT_MS, limits: { requestsPerS: 1000, burst: 1000 } }, null, 2));
      // Throttled so each upload lasts about 8 s: Status is sampled while they run.
      const uploadRate = Math.max(1024, Math.floor((await stat(files.initialModel)).size / 8));
      for (const s of real) {
        const f = files.siteConfigs.get(s)!;
        const c = JSON.parse(await readFile(f, 'utf8')) as Record<string, unknown>;
        await writeFile(f, JSON.stringify({ ...c, transfer: { uploadRateBytesPerS: uploadRate } }, null, 2));
      }
      const coordinator = await startProcess(['coordinator', '--config', files.coordinatorConfig], join(dir, 'coordinator.log'));
      children.push(coordinator);
      const adminDir = join(dir, 'admins', 'admin');
      const admin = new AdminClient({ coordinator: address, tls: { ca: join(adminDir, 'ca.crt'), cert: join(adminDir, 'admin.crt'), key: join(adminDir, 'admin.key') } });
      await admin.waitForReady(Date.now() + 30_000);

      await new Promise((r) => setTimeout(r, 2_000));
      const idleBaselinePct = await cpuPercent(coordinator.pid!, 10_000);
      log(`coordinator idle, no sites: ${idleBaselinePct.toFixed(2)} % of a core`);
      for (const s of names.slice(uploaders)) {
        const site = new LightSite(address, join(dir, 'sites', s), s);
        await site.start();
        light.push(site);
      }
      await new Promise((r) => setTimeout(r, HEARTBEAT_MS * 2));
      const withIdlePct = await cpuPercent(coordinator.pid!, 10_000);
      const cpuPerIdleSitePct = (withIdlePct - idleBaselinePct) / light.length;
      log(`coordinator with ${light.length} idle sites: ${withIdlePct.toFixed(2)} % (${cpuPerIdleSitePct.toFixed(3)} % per idle site)`);

      for (const s of real) children.push(await startProcess(['site', '--config', files.siteConfigs.get(s)!], join(dir, `${s}.log`)));
      // Sample Status from the agents' start (joins, downloads, training) to the first upload, then
      // while the uploads run, until the round is committed.
      const uploading = async (): Promise<boolean> => (await admin.sites()).sites.some((x) => /upload/.test(x.activity));
      const committed = async (): Promise<boolean> => (await admin.rounds()).rounds.some((r) => r.outcome === 'committed');
      const idleLatency = await sampleStatus(admin, 20, async () => (await uploading()) || (await committed()), 240_000);
      const t0 = Date.now();
      const busy = await sampleStatus(admin, 20, committed, 300_000);
      const uploadWindowS = (Date.now() - t0) / 1000;
      const status = await admin.status();
      const statusP99Ms = percentile(busy, 99);
      log(`Status while agents start and train: p99 ${percentile(idleLatency, 99).toFixed(1)} ms over ${idleLatency.length} calls`);
      log(`Status during ${uploaders} uploads until commit (${uploadWindowS.toFixed(1)} s): p50 ${percentile(busy, 50).toFixed(1)} ms, p99 ${statusP99Ms.toFixed(1)} ms over ${busy.length} calls (target < 100 ms)`);
      admin.close();
      return {
        sites,
        uploaders,
        statusP99Ms: Number(statusP99Ms.toFixed(2)),
        statusP50Ms: Number(percentile(busy, 50).toFixed(2)),
        statusCalls: busy.length,
        statusP99TrainingMs: Number(percentile(idleLatency, 99).toFixed(2)),
        uploadWindowS: Number(uploadWindowS.toFixed(1)),
        phaseAfter: status.phase || status.runState,
        idleBaselineCpuPct: Number(idleBaselinePct.toFixed(3)),
        idleSitesCpuPct: Number(withIdlePct.toFixed(3)),
        cpuPerIdleSitePct: Number(cpuPerIdleSitePct.toFixed(4)),
        heartbeatErrors: light.reduce((n, s) => n + s.errors, 0),
        statusTargetMet: statusP99Ms < 100,
      };
    } finally {
      for (const s of light) s.close();
      for (const c of children.reverse()) c.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 500));
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  },
};
