/**
 * Local aggregator shards (issue 22, `localShards: K` in coordinator.json): the coordinator starts
 * `fedhpc aggregator` K times as its own child processes, so one big host aggregates on several
 * cores with nothing else to provision. A local shard is the coordinator in another process: it
 * presents the coordinator's own certificate (the leader accepts that certificate as a shard only
 * for the names `local-1` … `local-K`, see service/aggregator-service.ts), dials the coordinator on
 * loopback and steps its part in the coordinator's own `stateDir`. Where `provision --local-shards`
 * gave it an `aggregator` certificate beside the coordinator's, it also serves sites — their part
 * uploads and downloads — on the coordinator's port plus its number ({@link localShardServing}). Each child is restarted with
 * backoff if it exits while the coordinator runs, and stopped (SIGTERM, then SIGKILL) with it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { localShardDir, localShardName } from '../pki/provision.js';
import { fileURLToPath } from 'node:url';
import { backoffDelay, sleep } from '../../common/backoff.js';
import { NODE_HEAP_OPTIONS } from '../../common/gc-tuning.js';
import type { Logger } from '../../common/logger.js';
import { CoordinatorError } from '../core/errors.js';
import type { ShardConfigInput } from './config.js';
import type { CallLimits } from '../service/limits.js';

/** A shard's log level: the coordinator's own, handed down. */
type ShardLogLevel = NonNullable<NonNullable<ShardConfigInput['log']>['level']>;

/** The names of K local shards, in shard order. */
export function localShardNames(count: number): string[] {
  return Array.from({ length: count }, (_, i) => localShardName(i + 1));
}

/** Where a local shard serves sites, and with which certificate. */
export interface LocalShardServing {
  /** What it binds: the coordinator's host, and the coordinator's port plus the shard's number. */
  readonly listen: string;
  /** What sites are told: `:<port>`, the port on the host they reach the coordinator at. */
  readonly endpoint: string;
  readonly tls: { readonly ca: string; readonly cert: string; readonly key: string };
}

/**
 * Where local shard `name` (number `n`, from 1) serves sites: when the coordinator's folder holds
 * its `aggregator` certificate (`fedhpc provision --local-shards K`) and the coordinator listens on
 * a fixed port, it listens on that port plus `n` on the coordinator's host. Undefined otherwise: the
 * shard aggregates only, and sites send their deltas whole to the coordinator.
 */
export function localShardServing(coordinatorCert: string, coordinatorListen: string, name: string, n: number): LocalShardServing | undefined {
  const dir = localShardDir(dirname(resolve(coordinatorCert)), name);
  const cert = join(dir, 'aggregator.crt');
  const colon = coordinatorListen.lastIndexOf(':');
  const port = Number(coordinatorListen.slice(colon + 1)) + n;
  if (!existsSync(cert) || !(port > n && port <= 65_535)) return undefined;
  return { listen: `${coordinatorListen.slice(0, colon)}:${port}`, endpoint: `:${port}`, tls: { ca: join(dir, 'ca.crt'), cert, key: join(dir, 'aggregator.key') } };
}

/** What {@link startLocalShards} needs of the coordinator that starts them. */
export interface LocalShardsOptions {
  readonly count: number;
  readonly federation: string;
  /** Where the coordinator listens (its bound `host:port`); an unspecified host is dialled on loopback. */
  readonly address: string;
  /** The coordinator's own TLS files, which the local shards present. */
  readonly tls: { readonly ca: string; readonly cert: string; readonly key: string };
  /** The coordinator's PEM certificate: the name the shards expect it to carry is read from it. */
  readonly certPem: Buffer;
  /** The coordinator's `stateDir`: its checkpoint storage, and where the shards' configs are written. */
  readonly stateDir: string;
  /** The coordinator's `listen`: local shards that have a certificate serve sites on the ports after it. */
  readonly listen: string;
  readonly logLevel: ShardLogLevel;
  /** The coordinator's call limits and upload budget, which its local shards apply to the sites' calls alike. */
  readonly limits: CallLimits & { readonly uploadBudgetBytes: number };
  readonly logger: Logger;
  /** The `fedhpc` CLI script run by Node (default: this build's dist/cli/main.js). */
  readonly cli?: string;
  readonly random?: () => number;
}

/** The local shards started, and how to stop them. */
export interface LocalShards {
  readonly names: readonly string[];
  /** Stops every child (SIGTERM, SIGKILL after 5 s) and resolves once all have exited. */
  stop(): Promise<void>;
}

/**
 * Set in a local shard's environment: `fedhpc aggregator` then stops when its stdin closes, which
 * happens when the coordinator that started it exits for any reason.
 */
export const EXIT_WITH_STDIN = 'FEDHPC_EXIT_WITH_STDIN';

/** How long a child has to exit after SIGTERM. */
const STOP_GRACE_MS = 5_000;
/** A child that ran this long before exiting restarts from the first backoff step again. */
const STEADY_MS = 60_000;

/** Writes each local shard's config and starts the children; they attach on their own. */
export async function startLocalShards(o: LocalShardsOptions): Promise<LocalShards> {
  const names = localShardNames(o.count);
  const cli = o.cli ?? localShardCli();
  const dir = join(o.stateDir, 'local-shards');
  await mkdir(dir, { recursive: true });
  const target = loopbackTarget(o.address);
  const serverName = certificateName(o.certPem);
  const files = await Promise.all(
    names.map(async (name, i) => {
      const serving = localShardServing(o.tls.cert, o.listen, name, i + 1);
      const config: ShardConfigInput = {
        federation: o.federation,
        name,
        coordinators: [target],
        ...(serverName ? { serverName } : {}),
        // Absolute: a shard's config resolves relative paths against its own folder.
        tls: { ca: resolve(o.tls.ca), cert: resolve(o.tls.cert), key: resolve(o.tls.key) },
        checkpoints: resolve(o.stateDir),
        stateDir: resolve(dir, name),
        ...(serving ? { listen: serving.listen, siteTls: { ca: resolve(serving.tls.ca), cert: resolve(serving.tls.cert), key: resolve(serving.tls.key) } } : {}),
        uploadBudgetBytes: o.limits.uploadBudgetBytes,
        limits: { requestsPerS: o.limits.requestsPerS, burst: o.limits.burst, maxConcurrentCallsPerSite: o.limits.maxConcurrentCallsPerSite },
        reconnect: { initialMs: 200, maxMs: 2_000 },
        log: { level: o.logLevel },
      };
      const file = join(dir, `${name}.json`);
      await writeFile(file, `${JSON.stringify(config, null, 2)}\n`);
      return { name, file };
    }),
  );
  const stopping = new AbortController();
  const runs = files.map(({ name, file }) =>
    supervise(name, [cli, 'aggregator', '--config', file], o, stopping.signal).catch((err: unknown) => {
      o.logger.error({ shard: name, err }, 'local aggregator shard supervisor failed: the shard is not restarted');
    }),
  );
  o.logger.info({ shards: names, coordinator: target }, 'started local aggregator shards');
  return {
    names,
    async stop() {
      stopping.abort();
      await Promise.all(runs);
    },
  };
}

/** Runs one child until `signal` aborts, restarting it with backoff whenever it exits. */
async function supervise(name: string, args: string[], o: LocalShardsOptions, signal: AbortSignal): Promise<void> {
  const log = o.logger.child({ shard: name, phase: 'local-shard' });
  let failures = 0;
  while (!signal.aborted) {
    const startedAt = Date.now();
    // The child's pino lines go to the coordinator's own stdout and stderr, each naming its shard.
    // Its stdin is a pipe it watches: a coordinator gone, even SIGKILLed, leaves no shard behind.
    let exit: Awaited<ReturnType<typeof waitForExit>>;
    try {
      const child = spawn(process.execPath, [...NODE_HEAP_OPTIONS, ...args], { stdio: ['pipe', 'inherit', 'inherit'], env: { ...process.env, [EXIT_WITH_STDIN]: '1' } });
      exit = await waitForExit(child, signal);
    } catch (err) {
      // spawn throws at once for some failures (E2BIG, ENOMEM): counted as an exit, tried again later.
      exit = { code: null, signal: null, error: err instanceof Error ? err.message : String(err) };
    }
    if (signal.aborted) return;
    if (Date.now() - startedAt >= STEADY_MS) failures = 0;
    const ms = backoffDelay({ initialMs: 500, maxMs: 30_000 }, failures++, o.random ?? Math.random);
    log.warn({ ...exit, restartInMs: Math.round(ms) }, 'local aggregator shard exited; restarting it');
    await sleep(ms, signal).catch(() => undefined);
  }
}

/** Resolves when the child exits; once `signal` aborts, asks it to stop and kills it if it lingers. */
function waitForExit(child: ChildProcess, signal: AbortSignal): Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: string }> {
  return new Promise((resolve) => {
    let killer: NodeJS.Timeout | undefined;
    const onAbort = (): void => {
      child.kill('SIGTERM');
      killer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    let error: string | undefined;
    child.once('error', (err) => (error = err.message));
    child.once('close', (code, sig) => {
      clearTimeout(killer);
      signal.removeEventListener('abort', onAbort);
      resolve({ code, signal: sig, ...(error ? { error } : {}) });
    });
  });
}

/**
 * The CLI the local shards run: this build's, beside the compiled coordinator, or under dist/ when
 * running from sources. `INTERNAL` when it is not there (an installation without its build; checked before the coordinator listens).
 */
export function localShardCli(): string {
  const fromSources = import.meta.url.endsWith('.ts');
  const cli = fileURLToPath(new URL(fromSources ? '../../dist/cli/main.js' : '../../cli/main.js', import.meta.url));
  if (!existsSync(cli)) throw new CoordinatorError('INTERNAL', `localShards: the fedhpc CLI the local shards run is not built at ${cli} (npm run build)`, { path: cli });
  return cli;
}

/** `host:port` to dial a coordinator bound at `address`: an unspecified host becomes loopback. */
export function loopbackTarget(address: string): string {
  const colon = address.lastIndexOf(':');
  const host = address.slice(0, colon);
  const port = address.slice(colon + 1);
  if (host === '0.0.0.0' || host === '') return `127.0.0.1:${port}`;
  if (host === '[::]' || host === '::') return `[::1]:${port}`;
  return address;
}

/** The first DNS name (else IP address) the certificate names: what a dialling shard checks. */
function certificateName(pem: Buffer): string | undefined {
  const sans = new X509Certificate(pem).subjectAltName?.split(', ') ?? [];
  const dns = sans.find((s) => s.startsWith('DNS:'));
  if (dns) return dns.slice(4);
  const ip = sans.find((s) => s.startsWith('IP Address:'));
  return ip?.slice('IP Address:'.length);
}
