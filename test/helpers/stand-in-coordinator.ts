/**
 * A coordinator stand-in for site-agent tests: a `SiteService` over real gRPC with mTLS (the
 * federation's own certificates) whose handlers the test writes, and a `SiteAgent` run in the test
 * process against it, with a logger whose lines the test reads. For agent behaviour a real
 * coordinator cannot be made to show on demand (a Join refused fifteen times in a row, a session
 * forgotten mid-round, a final eval that never ends).
 */
import * as grpc from '@grpc/grpc-js';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { freeLoopbackPort } from '../../common/net.js';
import { loadProto, type SiteServiceHandlers } from '../../proto/index.js';
import { loadSiteConfig, SiteAgent, type ResolvedSiteConfig, type Runner } from '../../site-agent/index.js';
import type { TestFederation } from './federation.js';

/** A running stand-in: the address agents dial, and how often each method was called. */
export interface SiteStandIn {
  readonly address: string;
  readonly calls: Readonly<Record<string, number>>;
  /** Heartbeats received by the default handlers: `Heartbeat` calls and messages on `Heartbeats` streams. */
  heartbeats(): number;
  close(): void;
}

/**
 * Serves `handlers` as the federation's coordinator (its certificate, client certificates
 * required). Every call is counted; a method the test does not write answers UNIMPLEMENTED, except
 * `Heartbeat` and `Heartbeats`, which answer as a coordinator would.
 */
export async function serveSiteStandIn(fed: TestFederation, handlers: Partial<SiteServiceHandlers>): Promise<SiteStandIn> {
  const { SiteService } = loadProto().fedhpc.v1;
  const calls: Record<string, number> = {};
  let beats = 0;
  const all: Partial<SiteServiceHandlers> = {
    Heartbeat: (_call, cb) => {
      beats++;
      cb(null, { serverTimeMs: Date.now() });
    },
    Heartbeats: (call) => {
      call.on('data', () => {
        beats++;
        call.write({ serverTimeMs: Date.now() });
      });
      call.on('end', () => call.end());
    },
    ...handlers,
  };
  const counted: grpc.UntypedServiceImplementation = {};
  for (const [name, fn] of Object.entries(all)) {
    counted[name] = (call: unknown, cb?: unknown): void => {
      calls[name] = (calls[name] ?? 0) + 1;
      (fn as (c: unknown, b?: unknown) => void)(call, cb);
    };
  }
  const server = new grpc.Server();
  server.addService(SiteService.service, counted);
  const dir = fed.member('coordinator');
  const creds = grpc.ServerCredentials.createSsl(
    await readFile(join(dir, 'ca.crt')),
    [{ private_key: await readFile(join(dir, 'coordinator.key')), cert_chain: await readFile(join(dir, 'coordinator.crt')) }],
    true,
  );
  const port = await freeLoopbackPort();
  await new Promise<void>((res, rej) => server.bindAsync(`127.0.0.1:${port}`, creds, (err) => (err ? rej(err) : res())));
  return { address: `localhost:${port}`, calls, heartbeats: () => beats, close: () => server.forceShutdown() };
}

/** One log line of the agent under test. */
export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly time: number;
  readonly [key: string]: unknown;
}

/** pino's number for `warn`. */
export const WARN = 40;

/** A `SiteAgent` running in this process. */
export interface AgentUnderTest {
  readonly agent: SiteAgent;
  readonly config: ResolvedSiteConfig;
  /** The lifetime signal given to `run`. */
  readonly signal: AbortSignal;
  readonly logs: LogLine[];
  /** How `run` ended ('resolved' or its error), once it has; undefined while it runs. */
  outcome(): 'resolved' | Error | undefined;
  /** Aborts the lifetime signal and waits for `run` to settle. */
  stop(): Promise<void>;
}

/** Options of {@link startAgentInProcess}; fields left out keep the site's provisioned config. */
export interface AgentUnderTestOptions {
  readonly runner: Runner;
  readonly reconnect?: { readonly initialMs: number; readonly maxMs: number };
  readonly configure?: (c: ResolvedSiteConfig) => ResolvedSiteConfig;
}

/** Starts site `site` of `fed` in this process, dialling `address` (a stand-in). */
export function startAgentInProcess(fed: TestFederation, site: string, address: string, o: AgentUnderTestOptions): AgentUnderTest {
  const base = loadSiteConfig(fed.files.siteConfigs.get(site)!);
  const patched: ResolvedSiteConfig = { ...base, coordinator: address, ...(o.reconnect ? { reconnect: o.reconnect } : {}) };
  const config = o.configure ? o.configure(patched) : patched;
  const logs: LogLine[] = [];
  const logger: Logger = pino({ level: 'debug' }, { write: (s: string) => void logs.push(JSON.parse(s) as LogLine) });
  const agent = new SiteAgent({ config, runner: o.runner, logger });
  const lifetime = new AbortController();
  let outcome: 'resolved' | Error | undefined;
  const done = agent.run(lifetime.signal).then(
    () => void (outcome = 'resolved'),
    (err: unknown) => void (outcome = err instanceof Error ? err : new Error(String(err))),
  );
  return {
    agent,
    config,
    signal: lifetime.signal,
    logs,
    outcome: () => outcome,
    async stop() {
      lifetime.abort();
      await done;
    },
  };
}

/** A runner for agents that must never get as far as training or evaluating. */
export const UNUSED_RUNNER: Runner = {
  kind: 'unused',
  train: () => Promise.reject(new Error('this test never trains')),
  evaluate: () => Promise.reject(new Error('this test never evaluates')),
};
