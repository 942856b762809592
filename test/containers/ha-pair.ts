/**
 * A standby coordinator pair in containers (issue 19), every part in its own container on one
 * user-defined network: three NATS nodes forming a JetStream cluster (routed to each other by
 * container name), coordinators `coord-a` and `coord-b` (each its own certificate and `ha` config
 * with a short lease, both mounting one checkpoint folder: the shared filesystem a pair needs), and
 * site agents configured with both coordinators' addresses. The coordinators run under a restart
 * policy (`on-failure`): the supervisor a pair's coordinator exits for when it loses its lease;
 * `docker kill` is a crash that no policy undoes. The test reaches each coordinator and each NATS
 * node through its port published on 127.0.0.1.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { GenericContainer, Network, Wait, type StartedNetwork, type StartedTestContainer } from 'testcontainers';
import { AdminClient, journalStreamName, journalSubject, readJournalChain, type JournalRecord } from '../../coordinator/index.js';
import { freeLoopbackPort } from '../../common/net.js';
import type { StatusResponse__Output } from '../../proto/index.js';
import { COORDINATOR_PORT } from '../../simulate/containers.js';
import { docker } from '../../simulate/images.js';
import { waitForReplicatedStream, writeFederationFiles, type FederationFiles } from '../../simulate/index.js';
import { patchJsonFile } from '../helpers/federation.js';
import { TEST_LEASE } from '../helpers/ha-pair.js';
import { USER, containerLogs, containerState, testImages } from './harness.js';

/** The NATS nodes: server names, and hostnames on the network. */
export const NATS_NODES = ['nats-1', 'nats-2', 'nats-3'] as const;
export type NatsNode = (typeof NATS_NODES)[number];

/** The pair's coordinators: `ha.name`, certificate CN and hostname on the network. */
export const PAIR = ['coord-a', 'coord-b'] as const;
export type PairMember = (typeof PAIR)[number];

/** The federation (and so the journal stream's) name. */
export const PAIR_FEDERATION = 'containers';

export interface ContainerPairOptions {
  readonly sites: number;
  readonly rounds: number;
}

/** The pair's member other than `name`. */
export function otherMember(name: PairMember): PairMember {
  return name === 'coord-a' ? 'coord-b' : 'coord-a';
}

/** One standby pair of containers; see the module comment. */
export class ContainerPair {
  readonly sites: readonly string[];
  private readonly natsPorts = new Map<NatsNode, number>();
  private readonly killedNats = new Set<NatsNode>();
  private readonly coordinatorPorts = new Map<PairMember, number>();
  private readonly admins = new Map<PairMember, AdminClient>();
  private readonly containers = new Map<string, StartedTestContainer>();

  private constructor(
    readonly dir: string,
    readonly files: FederationFiles,
    readonly network: StartedNetwork,
    readonly images: { fedhpc: string; nats: string },
    readonly id: string,
  ) {
    this.sites = [...files.siteConfigs.keys()];
  }

  /** Provisions, creates the network and starts the NATS cluster (JetStream accepting R=3); no coordinators yet. */
  static async start(o: ContainerPairOptions): Promise<ContainerPair> {
    const images = await testImages({ nats: true });
    const dir = await mkdtemp(join(tmpdir(), 'fedhpc-ct-ha-'));
    const sites = Array.from({ length: o.sites }, (_, i) => `site-${i + 1}`);
    const files = await writeFederationFiles({
      dir,
      federation: PAIR_FEDERATION,
      sites,
      admins: ['admin'],
      coordinators: PAIR.map((name) => ({ name, address: `${name}:${COORDINATOR_PORT}`, listen: `0.0.0.0:${COORDINATOR_PORT}` })),
      run: {
        id: 'containers-ha',
        rounds: o.rounds,
        minSites: o.sites,
        expectedSites: sites,
        strategy: { name: 'diloco' },
        secureAggregation: { enabled: false },
        train: { steps: 20, batchSize: 32, lr: 0.01 },
        deadlines: { openS: 30, trainingS: 30, uploadS: 30, aggregateS: 30, commitS: 30, evalS: 15 },
      },
    });
    const stateDir = join(dir, 'state');
    await mkdir(stateDir, { recursive: true });
    const natsUrl = NATS_NODES.map((n) => `nats://${n}:4222`).join(',');
    for (const name of PAIR) {
      const ha = { name, advertise: `${name}:${COORDINATOR_PORT}`, lease: TEST_LEASE, replicas: 3 };
      await patchJsonFile(files.coordinatorConfigs.get(name)!, (c) => ({ ...c, stateDir, nats: { url: natsUrl }, ha }));
    }
    const network = await new Network().start();
    const pair = new ContainerPair(dir, files, network, images, network.getName().slice(-8));
    try {
      for (const n of NATS_NODES) pair.natsPorts.set(n, await freeLoopbackPort());
      await Promise.all(NATS_NODES.map((n) => pair.startNatsNode(n)));
      await waitForReplicatedStream(pair.natsUrls(), NATS_NODES.length, Date.now() + 60_000);
      return pair;
    } catch (err) {
      await pair.close();
      throw err;
    }
  }

  private track(c: StartedTestContainer): StartedTestContainer {
    this.containers.set(c.getName(), c);
    return c;
  }

  private async startNatsNode(node: NatsNode): Promise<void> {
    const store = join(this.dir, 'nats', node);
    await mkdir(store, { recursive: true });
    const routes = NATS_NODES.map((n) => `nats://${n}:6222`).join(',');
    const args = ['--jetstream', '--store_dir', '/data', '--server_name', node];
    args.push('--cluster_name', `fedhpc-ct-${this.id}`, '--cluster', 'nats://0.0.0.0:6222', '--routes', routes);
    const c = await new GenericContainer(this.images.nats)
      .withName(this.containerName(node))
      .withNetwork(this.network)
      .withNetworkAliases(node)
      .withUser(USER)
      .withBindMounts([{ source: store, target: '/data', mode: 'rw' }])
      .withCommand(args)
      .withExposedPorts({ container: 4222, host: this.natsPorts.get(node)! })
      // No shell in the image, so no port probe from inside: wait for the server's own line.
      .withWaitStrategy(Wait.forLogMessage(/Server is ready/))
      .withStartupTimeout(30_000)
      .start();
    this.track(c);
  }

  /** The container name of a part (`nats-1`, `coord-a`, `site-1`, …). */
  containerName(part: string): string {
    return `fedhpc-ct-${this.id}-${part}`;
  }

  /**
   * Starts a coordinator's container, under a restart policy; resolves once it stands by (every
   * coordinator of a pair does before it takes the lease).
   */
  async startCoordinator(name: PairMember): Promise<void> {
    const port = await freeLoopbackPort();
    this.coordinatorPorts.set(name, port);
    const mounts = [join(this.dir, 'coordinators', name), join(this.dir, 'state'), this.files.initialModel];
    // testcontainers removes a container that never printed its line: keep its output for the error.
    let output = '';
    const c = await new GenericContainer(this.images.fedhpc)
      .withName(this.containerName(name))
      .withNetwork(this.network)
      .withNetworkAliases(name)
      .withUser(USER)
      .withBindMounts(mounts.map((m) => ({ source: m, target: m, mode: 'rw' as const })))
      .withCommand(['coordinator', '--config', this.files.coordinatorConfigs.get(name)!])
      .withExposedPorts({ container: COORDINATOR_PORT, host: port })
      .withWaitStrategy(Wait.forLogMessage(/standing by: answering NOT_LEADER/))
      .withStartupTimeout(60_000)
      .withLogConsumer((stream) => stream.on('data', (d: Buffer | string) => void (output = `${output}${String(d)}`.slice(-20_000))))
      .start()
      .catch((err: unknown) => {
        throw new Error(`coordinator ${name} did not stand by (${(err as Error).message}); its output:\n${output}`, { cause: err });
      });
    this.track(c);
    // testcontainers sets no restart policy; a coordinator that lost its lease exits 3 for it.
    await docker(['update', '--restart', 'on-failure:5', c.getName()]);
  }

  /** Starts a site's container (configured with both coordinators); started once it printed its configuration. */
  async startSite(site: string): Promise<void> {
    const folder = join(this.dir, 'sites', site);
    const c = await new GenericContainer(this.images.fedhpc)
      .withName(this.containerName(site))
      .withNetwork(this.network)
      .withNetworkAliases(site)
      .withUser(USER)
      .withBindMounts([{ source: folder, target: folder, mode: 'rw' }])
      .withCommand(['site', '--config', this.files.siteConfigs.get(site)!])
      .withWaitStrategy(Wait.forLogMessage(/"msg":"configuration"/))
      .withStartupTimeout(30_000)
      .start();
    this.track(c);
  }

  /** An admin client of one coordinator only, through its published port, checking its name. */
  admin(name: PairMember): AdminClient {
    const known = this.admins.get(name);
    if (known) return known;
    const port = this.coordinatorPorts.get(name);
    if (port === undefined) throw new Error(`coordinator ${name} was not started`);
    const m = join(this.dir, 'admins', 'admin');
    const a = new AdminClient({ coordinator: `127.0.0.1:${port}`, serverName: name, tls: { ca: join(m, 'ca.crt'), cert: join(m, 'admin.crt'), key: join(m, 'admin.key') }, timeoutMs: 5_000 });
    this.admins.set(name, a);
    return a;
  }

  /** `name`'s status when it answers as the leader; undefined while it stands by or is down. */
  async leading(name: PairMember): Promise<StatusResponse__Output | undefined> {
    if (!this.coordinatorPorts.has(name)) return undefined;
    const s = await this.admin(name).status().catch(() => undefined);
    return s?.ha?.role === 'leader' && s.ha.name === name ? s : undefined;
  }

  /** The coordinator leading now and its status, if one answers as the leader. */
  async leader(): Promise<{ name: PairMember; status: StatusResponse__Output } | undefined> {
    for (const name of PAIR) {
      const status = await this.leading(name);
      if (status) return { name, status };
    }
    return undefined;
  }

  /** SIGKILLs a part's container (a crashed node: no restart policy brings it back). */
  async kill(part: PairMember | NatsNode): Promise<void> {
    await docker(['kill', '--signal', 'KILL', this.containerName(part)]);
    if ((NATS_NODES as readonly string[]).includes(part)) this.killedNats.add(part as NatsNode);
  }

  /** Whether a part's container runs, and how often Docker restarted it. */
  async state(part: string): Promise<{ running: boolean; restarts: number }> {
    const { running } = await containerState(this.containerName(part));
    const restarts = Number((await docker(['inspect', '--format', '{{.RestartCount}}', this.containerName(part)])).trim());
    return { running, restarts };
  }

  /** The last `lines` lines of each coordinator's log (for a failing test's output). */
  async coordinatorLogs(lines = 40): Promise<string> {
    const out: string[] = [];
    for (const name of PAIR) {
      if (!this.coordinatorPorts.has(name)) continue;
      const log = await containerLogs(this.containerName(name)).catch((err: unknown) => `(no log: ${(err as Error).message})`);
      out.push(`--- ${name}`, ...log.split('\n').slice(-lines).map((l) => l.slice(0, 400)));
    }
    return out.join('\n');
  }

  /** The NATS nodes still running, as URLs on this host. */
  natsUrls(): string[] {
    return NATS_NODES.filter((n) => !this.killedNats.has(n)).map((n) => `nats://127.0.0.1:${this.natsPorts.get(n)!}`);
  }

  private async withNats<T>(use: (nc: NatsConnection) => Promise<T>): Promise<T> {
    // The nodes advertise addresses on the Docker network; this host dials the published ports only.
    const nc = await connect({ servers: this.natsUrls(), timeout: 5_000, ignoreClusterUpdates: true });
    try {
      return await use(nc);
    } finally {
      await nc.close();
    }
  }

  /** The NATS node leading the journal stream's Raft group. */
  journalLeader(): Promise<NatsNode> {
    return this.withNats(async (nc) => {
      const info = await (await jetstreamManager(nc, { timeout: 5_000 })).streams.info(journalStreamName(PAIR_FEDERATION));
      const leader = info.cluster?.leader;
      if (!(NATS_NODES as readonly (string | undefined)[]).includes(leader)) throw new Error(`the journal stream names no known leader (${String(leader)})`);
      return leader as NatsNode;
    });
  }

  /** The replicated journal's chain as of now, read through the surviving nodes. */
  readChain(): Promise<JournalRecord[]> {
    return this.withNats(async (nc) => {
      const { records } = await readJournalChain(nc, { stream: journalStreamName(PAIR_FEDERATION), subject: journalSubject(PAIR_FEDERATION), timeoutMs: 20_000 });
      return records;
    });
  }

  /** Removes every container, the network and the files. */
  async close(): Promise<void> {
    for (const a of this.admins.values()) a.close();
    for (const name of [...this.containers.keys()].reverse()) await docker(['rm', '--force', name]).catch(() => undefined);
    await this.network.stop().catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
  }
}
