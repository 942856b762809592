/**
 * Test harness for real federations: provisioned certificates and configs in a temp folder, the
 * coordinator and site agents as real OS processes (the built CLI) or the coordinator in-process,
 * and an admin client to watch rounds. Everything talks gRPC over mTLS on loopback.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { AdminClient, loadCoordinatorConfig, startCoordinator, type CoordinatorHandle, type CoordinatorOptions } from '../../coordinator/index.js';
import { testLogger, type ExpectedLog } from './logger.js';
import { waitFor } from './wait.js';

export { waitFor } from './wait.js';
import { writeFederationFiles, type FederationFiles } from '../../simulate/federation-files.js';
import { freeLoopbackPort } from '../../common/net.js';
import { NODE_HEAP_OPTIONS } from '../../common/gc-tuning.js';

/** The built CLI; `npm test` builds before running vitest. */
export const CLI = resolve('dist/cli/main.js');

/** A free loopback port (kept as a name for the tests that import it). */
export const freePort = freeLoopbackPort;

export interface TestFederation {
  readonly dir: string;
  readonly port: number;
  readonly address: string;
  readonly files: FederationFiles;
  readonly sites: readonly string[];
  /** Member folder (certificates) of a site or admin. */
  member(kind: 'sites' | 'admins' | 'coordinator', id?: string): string;
  admin(): AdminClient;
  /** Edits a site's config file (e.g. a slower upload). */
  patchSiteConfig(site: string, patch: (cfg: Record<string, unknown>) => Record<string, unknown>): Promise<void>;
  /** Edits the coordinator's config file (limits, metrics, …) before it starts. */
  patchCoordinatorConfig(patch: (cfg: Record<string, unknown>) => Record<string, unknown>): Promise<void>;
  cleanup(): Promise<void>;
}

export interface TestFederationOptions {
  readonly sites?: number;
  readonly run?: Partial<CoordinatorOptions['run']>;
  /** Aggregator shards `shard-1` … (issue 22), each listening for part uploads on a loopback port. */
  readonly aggregators?: number;
}

/** Rewrites a JSON config file through `patch`. */
export async function patchJsonFile(file: string, patch: (cfg: Record<string, unknown>) => Record<string, unknown>): Promise<void> {
  const cfg = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  await writeFile(file, JSON.stringify(patch(cfg), null, 2));
}

/** Provisions a federation with `sites` builtin sites in a new temp folder. */
export async function createTestFederation(o: TestFederationOptions = {}): Promise<TestFederation> {
  const dir = await mkdtemp(join(tmpdir(), 'fedhpc-test-'));
  const sites = Array.from({ length: o.sites ?? 3 }, (_, i) => `site-${i + 1}`);
  const port = await freePort();
  const address = `localhost:${port}`;
  const files = await writeFederationFiles({
    dir,
    federation: 'testfed',
    sites,
    admins: ['admin'],
    coordinatorAddress: address,
    listen: `127.0.0.1:${port}`,
    aggregators: await Promise.all(
      Array.from({ length: o.aggregators ?? 0 }, async (_, i) => {
        const shardPort = await freePort();
        return { name: `shard-${i + 1}`, address: `localhost:${shardPort}`, listen: `127.0.0.1:${shardPort}` };
      }),
    ),
    run: {
      id: 'test-run',
      rounds: 3,
      minSites: Math.max(1, sites.length - 1),
      expectedSites: sites,
      strategy: { name: 'diloco' },
      train: { steps: 20, batchSize: 32, lr: 0.01 },
      deadlines: { openS: 30, trainingS: 60, uploadS: 60, aggregateS: 30, commitS: 30, evalS: 15 },
      ...o.run,
    },
  });
  const member = (kind: 'sites' | 'admins' | 'coordinator', id?: string): string => (kind === 'coordinator' ? join(dir, 'coordinator') : join(dir, kind, id!));
  const admins: AdminClient[] = [];
  return {
    dir,
    port,
    address,
    files,
    sites,
    member,
    admin() {
      const m = member('admins', 'admin');
      const c = new AdminClient({ coordinator: address, tls: { ca: join(m, 'ca.crt'), cert: join(m, 'admin.crt'), key: join(m, 'admin.key') } });
      admins.push(c);
      return c;
    },
    patchSiteConfig: (site, patch) => patchJsonFile(files.siteConfigs.get(site)!, patch),
    patchCoordinatorConfig: (patch) => patchJsonFile(files.coordinatorConfig, patch),
    async cleanup() {
      for (const a of admins) a.close();
      // FEDHPC_KEEP_TEST_DIRS=1 keeps the federation's directory (logs, state dir) for a post-mortem.
      if (process.env['FEDHPC_KEEP_TEST_DIRS']) return;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A child process of the CLI with its log file. */
export interface Proc {
  readonly child: ChildProcess;
  readonly log: string;
  /** Resolves with the exit code (or signal name) once the process ends. */
  readonly exited: Promise<number | string>;
  stop(signal?: NodeJS.Signals): Promise<number | string>;
  logText(): Promise<string>;
}

/** Starts `fedhpc <args>` as a separate process (environment `env`; Node's options as `bin/fedhpc` gives them), logging to `<logDir>/<name>.log`. */
export async function startCli(name: string, args: string[], logDir: string, env: NodeJS.ProcessEnv = process.env): Promise<Proc> {
  const log = join(logDir, `${name}.log`);
  const fh = await open(log, 'a');
  const child = spawn(process.execPath, [...NODE_HEAP_OPTIONS, CLI, ...args], { stdio: ['ignore', fh.fd, fh.fd], env });
  const exited = new Promise<number | string>((res) =>
    child.once('exit', (code, sig) => {
      void fh.close().catch(() => undefined);
      res(code ?? sig ?? -1);
    }),
  );
  return {
    child,
    log,
    exited,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      const r = await exited;
      clearTimeout(timer);
      return r;
    },
    logText: () => readFile(log, 'utf8'),
  };
}

export function startCoordinatorProcess(fed: TestFederation, name = 'coordinator'): Promise<Proc> {
  return startCli(name, ['coordinator', '--config', fed.files.coordinatorConfig], fed.dir);
}

export function startSiteProcess(fed: TestFederation, site: string): Promise<Proc> {
  return startCli(site, ['site', '--config', fed.files.siteConfigs.get(site)!], fed.dir);
}

/**
 * Starts the coordinator of `fed` inside the test process (for tests that poke its services). Its
 * warnings and errors fail the test unless listed in `expectLogs`.
 */
export async function startCoordinatorInProcess(fed: TestFederation, o: { expectLogs?: readonly ExpectedLog[] } = {}): Promise<CoordinatorHandle> {
  const config = loadCoordinatorConfig(fed.files.coordinatorConfig);
  return startCoordinator({
    config,
    logger: testLogger({ expect: o.expectLogs ?? [], level: 'info' }).logger,
    onFatal: (err) => {
      throw err;
    },
  });
}

/** Waits until `n` rounds are committed; returns the admin rounds response. */
export async function waitForCommitted(admin: AdminClient, n: number, timeoutMs = 90_000) {
  return waitFor(`${n} committed rounds`, async () => {
    const r = await admin.rounds();
    return r.rounds.filter((x) => x.outcome === 'committed').length >= n ? r : undefined;
  }, timeoutMs);
}
