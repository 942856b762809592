/**
 * A standby coordinator pair for integration tests (issue 19): a real 3-node NATS JetStream cluster
 * on loopback, a test federation whose coordinator config becomes coordinator a's and a copy with
 * its own name, port and address coordinator b's (both with `ha`, a short lease), sites configured
 * and the admin CLI's config with both addresses, and admin clients. Processes are started by the test through the pair, and
 * `cleanup()` stops everything it started, in reverse.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AdminClient } from '../../coordinator/index.js';
import { startStandbyServer, type StandbyServer } from '../../coordinator/ha/standby-server.js';
import { testLogger } from './logger.js';
import { createTestFederation, freePort, patchJsonFile, startCli, startSiteProcess, waitFor, type Proc, type TestFederation, type TestFederationOptions } from './federation.js';
import { startNatsCluster, type TestNatsCluster } from './nats.js';

/** A lease short enough for quick failovers in tests (the defaults are TTL 20 s). */
export const TEST_LEASE = { ttlMs: 4000, renewMs: 500, marginMs: 1500 } as const;

export interface HaPairOptions {
  /** Sites (default 2) and the run of the federation. */
  readonly sites?: number;
  readonly run?: TestFederationOptions['run'];
  readonly lease?: { readonly ttlMs: number; readonly renewMs: number; readonly marginMs: number };
  /** Coordinator a's `nats.url` (e.g. a proxy the test controls); default the cluster's URLs. */
  readonly natsUrlOfA?: (cluster: TestNatsCluster) => string | Promise<string>;
}

export interface TestHaPair {
  readonly cluster: TestNatsCluster;
  readonly fed: TestFederation;
  /** Where sites and admins reach a and b. */
  readonly addresses: readonly [string, string];
  /** a's and b's coordinator config files. */
  readonly configs: readonly [string, string];
  /** The admin CLI's config (`fedhpc admin … --config`), listing both addresses. */
  readonly adminConfig: string;
  /** An admin client of one address (closed by `cleanup`). */
  admin(address: string): AdminClient;
  /** Starts coordinator a (0) or b (1) as a process. */
  startCoordinator(i: 0 | 1, env?: NodeJS.ProcessEnv, name?: string): Promise<Proc>;
  /** a leads (its run started), then b stands by and the sites join; each with its own environment. */
  start(envA?: NodeJS.ProcessEnv, envB?: NodeJS.ProcessEnv): Promise<{ a: Proc; b: Proc }>;
  /** Adds a process for `cleanup` to stop. */
  track(p: Proc): Proc;
  /** Stops every process and client, then the federation's files and the cluster. */
  cleanup(): Promise<void>;
}

/** Sets up (but does not start) a pair; see the module comment. */
export async function startHaPair(o: HaPairOptions = {}): Promise<TestHaPair> {
  const cluster = await startNatsCluster(3);
  const procs: Proc[] = [];
  const admins: AdminClient[] = [];
  let fed: TestFederation | undefined;
  const cleanup = async (): Promise<void> => {
    for (const a of admins.splice(0)) a.close();
    for (const p of procs.splice(0).reverse()) await p.stop();
    await fed?.cleanup();
    await cluster.stop();
  };
  try {
    fed = await createTestFederation({ sites: o.sites ?? 2, run: o.run });
    const f = fed;
    const portB = await freePort();
    const addresses = [`localhost:${f.port}`, `localhost:${portB}`] as const;
    const base = JSON.parse(await readFile(f.files.coordinatorConfig, 'utf8')) as Record<string, unknown>;
    const withHa = (name: string, port: number, url: string): Record<string, unknown> => ({
      ...base,
      listen: `127.0.0.1:${port}`,
      nats: { url },
      ha: { name, advertise: `localhost:${port}`, lease: o.lease ?? TEST_LEASE, replicas: 3 },
    });
    const configs = [f.files.coordinatorConfig, join(f.dir, 'coordinator', 'coordinator-b.json')] as const;
    const urls = cluster.urls.join(',');
    await writeFile(configs[0], JSON.stringify(withHa('coord-a', f.port, o.natsUrlOfA ? await o.natsUrlOfA(cluster) : urls), null, 2));
    await writeFile(configs[1], JSON.stringify(withHa('coord-b', portB, urls), null, 2));
    for (const site of f.sites) {
      await f.patchSiteConfig(site, (c) => {
        const { coordinator: _, ...rest } = c;
        return { ...rest, coordinators: [...addresses] };
      });
    }
    const adminConfig = f.files.adminConfigs.get('admin');
    if (adminConfig === undefined) throw new Error('the test federation has no admin config');
    await patchJsonFile(adminConfig, (c) => {
      const { coordinator: _, ...rest } = c;
      return { ...rest, coordinators: [...addresses] };
    });
    const m = f.member('admins', 'admin');
    const track = (p: Proc): Proc => (procs.push(p), p);
    const admin = (address: string): AdminClient => {
      const c = new AdminClient({ coordinator: address, tls: { ca: join(m, 'ca.crt'), cert: join(m, 'admin.crt'), key: join(m, 'admin.key') } });
      admins.push(c);
      return c;
    };
    const startCoordinator = async (i: 0 | 1, env: NodeJS.ProcessEnv = process.env, name = `coord-${'ab'[i]}`): Promise<Proc> =>
      track(await startCli(name, ['coordinator', '--config', configs[i]], f.dir, env));
    return {
      cluster,
      fed: f,
      addresses,
      configs,
      adminConfig,
      admin,
      startCoordinator,
      track,
      cleanup,
      async start(envA = process.env, envB = process.env) {
        const a = await startCoordinator(0, envA);
        const adminA = admin(addresses[0]);
        await waitFor('coordinator a to lead', () => adminA.status().then((s) => (s.runId ? s : undefined), () => undefined), 60_000);
        const b = await startCoordinator(1, envB);
        for (const s of f.sites) track(await startSiteProcess(f, s));
        return { a, b };
      },
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** A standby responder as tests start it, and the address members dial it by. */
export interface TestStandby extends StandbyServer {
  /** `localhost:port`: the name its certificate (the federation's coordinator certificate) holds. */
  readonly dial: string;
}

/**
 * A standby responder (coordinator/ha/standby-server.ts) with `fed`'s coordinator certificate on a
 * free loopback port, answering every call NOT_LEADER and naming `leader()`.
 */
export async function startTestStandby(fed: Pick<TestFederation, 'member'>, leader: () => string | undefined, level: 'info' | 'warn' = 'info'): Promise<TestStandby> {
  const dir = fed.member('coordinator');
  const server = await startStandbyServer({
    config: { federation: 'testfed', listen: '127.0.0.1:0', tls: { ca: join(dir, 'ca.crt'), cert: join(dir, 'coordinator.crt'), key: join(dir, 'coordinator.key') } },
    leader,
    logger: testLogger({ level }).logger,
  });
  return { address: server.address, dial: server.address.replace('127.0.0.1', 'localhost'), stop: () => server.stop() };
}
