/**
 * A NATS JetStream cluster on loopback: `n` nats-server processes routed to each other, JetStream
 * replicated by Raft across them — the topology a standby coordinator needs (issue 19), run on one
 * machine for tests, benchmarks and `fedhpc simulate`. Debian's nats-server (2.9) is used.
 */
import { jetstreamManager, StorageType } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freeLoopbackPort } from '../common/net.js';

/** The nats-server binary: on PATH or Debian's /usr/sbin; undefined when neither runs. */
export function natsServerBinary(): string | undefined {
  for (const candidate of ['nats-server', '/usr/sbin/nats-server']) {
    const r = spawnSync(candidate, ['--version'], { encoding: 'utf8', timeout: 10_000 });
    if (r.status === 0) return candidate;
  }
  return undefined;
}

/** Whether something accepts TCP connections on loopback `port`. */
export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** One server of a local cluster. */
export interface NatsClusterNode {
  /** Its `--server_name`, as JetStream names it (e.g. a stream's leader). */
  readonly name: string;
  readonly url: string;
  readonly storeDir: string;
  /** Whether its process is running. */
  running(): boolean;
  /** What it printed (its log), for a test's failure message. */
  output(): string;
  /** SIGKILLs it: a crash, no goodbye to its routes. */
  kill(): Promise<void>;
  /**
   * Starts it again after {@link kill}, on the same ports, store dir and name: a node that comes
   * back (its JetStream state catches up from its peers). Resolves once it accepts connections;
   * a no-op while it runs.
   */
  restart(timeoutMs?: number): Promise<void>;
}

/** A cluster of `nats-server -js` processes routed to each other on loopback. */
export interface NatsCluster {
  readonly nodes: readonly NatsClusterNode[];
  /** Every node's client URL, for a client that must survive the loss of one. */
  readonly urls: readonly string[];
  /** Kills every node and deletes their store dirs. */
  stop(): Promise<void>;
}

/**
 * Starts `n` nats-servers with JetStream, each with its own client port, route port, store dir and
 * server name, routed in a full mesh under one cluster name. Resolves once JetStream has a meta
 * leader and a stream replicated on all `n` nodes can be created (a probe stream, deleted again).
 */
export async function startNatsCluster(n: number, timeoutMs = 60_000): Promise<NatsCluster> {
  const bin = natsServerBinary();
  if (!bin) throw new Error('nats-server is not installed');
  const ports: { client: number; route: number }[] = [];
  for (let i = 0; i < n; i++) ports.push({ client: await freeLoopbackPort(), route: await freeLoopbackPort() });
  const routes = ports.map((p) => `nats://127.0.0.1:${p.route}`).join(',');
  const cluster = `fedhpc-local-${ports[0]!.client}`;
  const nodes: NatsClusterNode[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(nodes.map((node) => node.kill()));
    await Promise.all(nodes.map((node) => rm(node.storeDir, { recursive: true, force: true })));
  };
  try {
    for (let i = 0; i < n; i++) {
      const { client, route } = ports[i]!;
      const name = `n${i + 1}`;
      const storeDir = await mkdtemp(join(tmpdir(), `fedhpc-nats-${name}-`));
      const args = ['-a', '127.0.0.1', '-p', String(client), '-js', '-sd', storeDir, '--server_name', name];
      args.push('--cluster_name', cluster, '--cluster', `nats://127.0.0.1:${route}`, '--routes', routes);
      let proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      const capture = (): void => {
        proc.stdout?.on('data', (d: Buffer) => (output += d.toString()));
        proc.stderr?.on('data', (d: Buffer) => (output += d.toString()));
      };
      capture();
      const running = (): boolean => proc.exitCode === null && proc.signalCode === null;
      nodes.push({
        name,
        url: `nats://127.0.0.1:${client}`,
        storeDir,
        output: () => output,
        running,
        async kill() {
          if (!running()) return;
          const exited = new Promise((r) => proc.once('exit', r));
          proc.kill('SIGKILL');
          await exited;
        },
        async restart(restartTimeoutMs = 20_000) {
          if (running()) return;
          proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
          capture();
          await waitListening(name, client, running, () => output, Date.now() + restartTimeoutMs);
        },
      });
    }
    const deadline = Date.now() + timeoutMs;
    for (const node of nodes) await waitListening(node.name, Number(new URL(node.url).port), node.running, node.output, deadline);
    await waitForReplicatedStream(nodes.map((node) => node.url), n, deadline);
  } catch (err) {
    // What each node said (its routes, its JetStream peers) is what tells a slow start from a stuck one.
    const said = nodes.map((node) => `--- nats-server ${node.name}:\n${node.output().slice(-3000)}`).join('\n');
    await stop();
    throw new Error(`${(err as Error).message}\n${said}`, { cause: err });
  }
  return { nodes, urls: nodes.map((node) => node.url), stop };
}

/** Waits until a node accepts connections on `port`; fails at once when it has exited. */
async function waitListening(name: string, port: number, running: () => boolean, output: () => string, deadline: number): Promise<void> {
  while (!(await accepts(port))) {
    if (!running()) throw new Error(`nats-server ${name} exited:\n${output()}`);
    if (Date.now() > deadline) throw new Error(`nats-server ${name} did not listen by its deadline:\n${output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Creates and deletes an R=`replicas` probe stream until that works (by `deadline`, ms since the
 * epoch): the meta leader is elected and every peer is known. Any cluster: this one, or nodes in
 * containers reached through published ports.
 */
export async function waitForReplicatedStream(urls: readonly string[], replicas: number, deadline: number): Promise<void> {
  const nc = await connect({ servers: [...urls], timeout: 5_000 });
  try {
    let last: unknown;
    while (Date.now() < deadline) {
      try {
        // Without a meta leader even the account info that jetstreamManager asks for times out.
        const jsm = await jetstreamManager(nc, { timeout: 2_000 });
        await jsm.streams.add({ name: 'FEDHPC_CLUSTER_PROBE', subjects: ['fedhpc.cluster-probe'], storage: StorageType.Memory, num_replicas: replicas });
        await jsm.streams.delete('FEDHPC_CLUSTER_PROBE');
        return;
      } catch (err) {
        last = err;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    throw new Error(`the NATS cluster never accepted an R=${replicas} stream (last error: ${(last as Error | undefined)?.message ?? 'none'})`);
  } finally {
    await nc.close();
  }
}
