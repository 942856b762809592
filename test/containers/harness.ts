/**
 * Container federations for tests: the local images (built once per content hash), a user-defined
 * Docker network, the coordinator, NATS and each site agent as separate containers (testcontainers),
 * each with only its own certificate mounted, an admin client on the host through the published
 * port, and the coordinator's event stream recorded with timestamps for the fault figures.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { appendFile, mkdir, mkdtemp, readdir, rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GenericContainer, Network, Wait, type StartedNetwork, type StartedTestContainer } from 'testcontainers';
import { AdminClient, type AdminEvent, type CoordinatorOptions } from '../../coordinator/index.js';
import { freeLoopbackPort } from '../../common/net.js';
import type { RoundsResponse__Output } from '../../proto/index.js';
import { COORDINATOR_HOST, COORDINATOR_PORT, memberMounts, writeContainerFederation } from '../../simulate/containers.js';
import type { FederationFiles } from '../../simulate/federation-files.js';
import { buildFedhpcImage, buildNatsImage, docker, dockerUnavailable } from '../../simulate/images.js';
import { skipUnless } from '../helpers/components.js';
import { patchJsonFile, waitFor } from '../helpers/federation.js';

process.env['TESTCONTAINERS_RYUK_DISABLED'] ??= 'true';

/** True when the container tests must skip (no Docker engine, and FEDHPC_REQUIRE lacks `docker`). */
export async function skipWithoutDocker(): Promise<boolean> {
  return skipUnless('docker', await dockerUnavailable());
}

/**
 * The images (NATS only when asked: it needs Debian's nats-server), built once per content hash; a
 * lock keeps two test files from building at once.
 */
export async function testImages(o: { nats?: boolean } = {}): Promise<{ fedhpc: string; nats: string; buildSeconds: number }> {
  const lock = join(tmpdir(), 'fedhpc-image-build.lock');
  await waitFor('the image build lock', () => mkdir(lock).then(() => true, () => undefined), 600_000, 500);
  try {
    const fedhpc = await buildFedhpcImage();
    const nats = o.nats ? await buildNatsImage() : undefined;
    return { fedhpc: fedhpc.tag, nats: nats?.tag ?? '', buildSeconds: fedhpc.seconds + (nats?.seconds ?? 0) };
  } finally {
    await rmdir(lock);
  }
}

/** Where the suite's figures go (one JSON object per line), recorded in bench/RESULTS.md. */
export const FIGURES_FILE = process.env['FEDHPC_CONTAINER_FIGURES'] ?? join(tmpdir(), 'fedhpc-container-figures.jsonl');

/** Appends one figure record. */
export async function recordFigure(figure: Record<string, unknown>): Promise<void> {
  await appendFile(FIGURES_FILE, `${JSON.stringify({ ...figure, at: new Date().toISOString() })}\n`);
}

/** The user the containers run as: this process's, so they can read the mounted keys it wrote. */
export const USER = `${process.getuid?.() ?? 1000}:${process.getgid?.() ?? 1000}`;

/** stdout and stderr of a container (`docker logs`). */
export function containerLogs(name: string): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile('docker', ['logs', name], { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => (err ? reject(err) : resolve(stdout + stderr))),
  );
}

/** State of a container: running or exited, exit code, health. */
export async function containerState(name: string): Promise<{ running: boolean; exitCode: number; health: string }> {
  const out = await docker(['inspect', '--format', '{{.State.Running}} {{.State.ExitCode}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}', name]);
  const [running, code, health] = out.trim().split(' ');
  return { running: running === 'true', exitCode: Number(code), health: health ?? 'none' };
}

/** SHA-256 of a file's contents. */
export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

export interface ContainerFederationOptions {
  readonly sites: number;
  readonly rounds: number;
  readonly minSites?: number;
  readonly secure?: boolean;
  readonly deadlines?: NonNullable<CoordinatorOptions['run']>['deadlines'];
  /** Starts NATS (hostname `nats`) before the coordinator; `coordinatorPatch` can point it there. */
  readonly nats?: boolean;
  /** Edits the coordinator's config before it starts (e.g. a NATS section). */
  readonly coordinatorPatch?: (cfg: Record<string, unknown>) => Record<string, unknown>;
}

/** One federation of containers on its own network. */
export class ContainerFederation {
  readonly events: AdminEvent[] = [];
  coordinator!: StartedTestContainer;
  nats: StartedTestContainer | undefined;
  /** NATS's client port on this host (fixed, so it survives a `docker stop`/`start`). */
  natsHostPort = 0;
  private readonly containers: StartedTestContainer[] = [];
  private readonly admins: AdminClient[] = [];
  private readonly following = new AbortController();
  private serial = 0;

  private constructor(
    readonly dir: string,
    readonly files: FederationFiles,
    readonly network: StartedNetwork,
    readonly images: { fedhpc: string; nats: string },
    readonly hostPort: number,
    readonly id: string,
  ) {}

  /** Provisions, creates the network, starts NATS (if asked) and the coordinator; no sites yet. */
  static async start(o: ContainerFederationOptions): Promise<ContainerFederation> {
    const images = await testImages({ nats: o.nats === true });
    const dir = await mkdtemp(join(tmpdir(), 'fedhpc-ct-'));
    const sites = Array.from({ length: o.sites }, (_, i) => `site-${i + 1}`);
    const files = await writeContainerFederation({
      dir,
      federation: 'containers',
      sites,
      admins: ['admin'],
      run: {
        id: 'containers',
        rounds: o.rounds,
        minSites: o.minSites ?? Math.max(1, o.sites - 1),
        expectedSites: sites,
        strategy: { name: 'diloco' },
        secureAggregation: { enabled: o.secure ?? true },
        train: { steps: 20, batchSize: 32, lr: 0.01 },
        deadlines: o.deadlines ?? { openS: 20, keysS: 15, sharesS: 15, trainingS: 30, uploadS: 30, unmaskS: 15, aggregateS: 30, commitS: 30, evalS: 15 },
      },
    });
    if (o.coordinatorPatch) await patchJsonFile(files.coordinatorConfig, o.coordinatorPatch);
    const network = await new Network().start();
    const fed = new ContainerFederation(dir, files, network, images, await freeLoopbackPort(), network.getName().slice(-8));
    if (o.nats) await fed.startNats();
    await fed.startCoordinator();
    return fed;
  }

  private mounts(part: string): { source: string; target: string; mode: 'rw' }[] {
    return memberMounts(this.files, this.dir, part).map((m) => ({ source: m, target: m, mode: 'rw' as const }));
  }

  /** NATS with JetStream, its store on a host folder so a restart keeps the stream. */
  async startNats(): Promise<void> {
    const store = join(this.dir, 'nats');
    await mkdir(store, { recursive: true });
    this.natsHostPort = await freeLoopbackPort();
    this.nats = await new GenericContainer(this.images.nats)
      .withName(`fedhpc-ct-${this.id}-nats`)
      .withNetwork(this.network)
      .withNetworkAliases('nats')
      .withUser(USER)
      .withBindMounts([{ source: store, target: '/data', mode: 'rw' }])
      .withCommand(['--jetstream', '--store_dir', '/data', '--name', 'fedhpc-test'])
      .withExposedPorts({ container: 4222, host: this.natsHostPort })
      // No shell in the image, so no port probe from inside: wait for the server's own line.
      .withWaitStrategy(Wait.forLogMessage(/Server is ready/))
      .withStartupTimeout(30_000)
      .start();
    this.containers.push(this.nats);
  }

  async startCoordinator(): Promise<void> {
    this.coordinator = await new GenericContainer(this.images.fedhpc)
      .withName(`fedhpc-ct-${this.id}-coordinator`)
      .withNetwork(this.network)
      .withNetworkAliases(COORDINATOR_HOST)
      .withUser(USER)
      .withBindMounts(this.mounts(COORDINATOR_HOST))
      .withCommand(['coordinator', '--config', this.files.coordinatorConfig])
      .withExposedPorts({ container: COORDINATOR_PORT, host: this.hostPort })
      .withWaitStrategy(Wait.forLogMessage(/coordinator listening/))
      .withStartupTimeout(60_000)
      .start();
    this.containers.push(this.coordinator);
    this.followEvents();
  }

  /**
   * Starts a site's container. `config` and `mounts` replace its config file and member folder
   * (bad-input tests); the container counts as started once the agent printed its configuration.
   */
  async startSite(site: string, o: { config?: string; mounts?: string[] } = {}): Promise<StartedTestContainer> {
    const config = o.config ?? this.files.siteConfigs.get(site)!;
    const extra = (o.mounts ?? []).map((m) => ({ source: m, target: m, mode: 'rw' as const }));
    const c = await new GenericContainer(this.images.fedhpc)
      .withName(`fedhpc-ct-${this.id}-${site}-${this.serial++}`)
      .withNetwork(this.network)
      .withNetworkAliases(site)
      .withUser(USER)
      .withBindMounts(o.mounts ? extra : this.mounts(site))
      .withCommand(['site', '--config', config])
      .withWaitStrategy(Wait.forLogMessage(/"msg":"configuration"|fedhpc: /))
      .withStartupTimeout(30_000)
      .start();
    this.containers.push(c);
    return c;
  }

  /** An admin client on the host, through the published port, checking the name `coordinator`. */
  admin(): AdminClient {
    const m = join(this.dir, 'admins', 'admin');
    const a = new AdminClient({
      coordinator: `127.0.0.1:${this.hostPort}`,
      serverName: COORDINATOR_HOST,
      tls: { ca: join(m, 'ca.crt'), cert: join(m, 'admin.crt'), key: join(m, 'admin.key') },
    });
    this.admins.push(a);
    return a;
  }

  /** Records every coordinator event; re-subscribes after the stream breaks (a restart). */
  private followEvents(): void {
    const admin = this.admin();
    const loop = async (): Promise<void> => {
      while (!this.following.signal.aborted) {
        await admin.events((e) => this.events.push(e), this.following.signal).catch(() => undefined);
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    void loop();
  }

  /** Events of one kind, in arrival order (a restart may repeat none: they are not replayed). */
  eventsOf(kind: string): AdminEvent[] {
    return this.events.filter((e) => e.kind === kind);
  }

  /** Waits until `n` rounds are committed and the run is finished. */
  async waitForRun(n: number, timeoutMs = 120_000): Promise<{ rounds: RoundsResponse__Output; modelSha256: string }> {
    const admin = this.admin();
    return waitFor(`${n} committed rounds and a finished run`, async () => {
      const status = await admin.status();
      if (status.runState === 'failed') throw new Error('the run failed');
      if (status.runState !== 'finished') return undefined;
      const rounds = await admin.rounds();
      return rounds.rounds.filter((r) => r.outcome === 'committed').length >= n ? { rounds, modelSha256: status.globalModelSha256 } : undefined;
    }, timeoutMs, 250);
  }

  /**
   * The model a site holds: the files in its agent's content-addressed cache (on the mounted
   * volume), each checked against its name. Waits until `sha256` is among them.
   */
  async siteHolds(site: string, sha256: string, timeoutMs = 30_000): Promise<string> {
    const cache = join(this.dir, 'sites', site, 'work', 'models');
    return waitFor(`${site} to hold model ${sha256.slice(0, 12)}`, async () => {
      const names = (await readdir(cache)).filter((f) => f === `${sha256}.safetensors`);
      if (names.length === 0) return undefined;
      return sha256File(join(cache, names[0]!));
    }, timeoutMs, 250);
  }

  /** SIGKILLs a container (a crashed node). */
  kill(c: StartedTestContainer): Promise<string> {
    return docker(['kill', '--signal', 'KILL', c.getName()]);
  }

  /** Cuts a container off the federation's network, or puts it back under the same alias. */
  disconnect(c: StartedTestContainer): Promise<string> {
    return docker(['network', 'disconnect', '--force', this.network.getName(), c.getName()]);
  }

  connect(c: StartedTestContainer, alias: string): Promise<string> {
    return docker(['network', 'connect', '--alias', alias, this.network.getName(), c.getName()]);
  }

  /** Removes every container, the network and the files. */
  async close(): Promise<void> {
    this.following.abort();
    for (const a of this.admins) a.close();
    for (const c of this.containers.reverse()) await docker(['rm', '--force', c.getName()]).catch(() => undefined);
    await this.network.stop().catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
  }
}
