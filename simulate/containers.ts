/**
 * Federations whose parts run in containers: the file layout they share with a plain local
 * federation, and the launcher `fedhpc simulate --containers` uses (one `docker run` per part on a
 * user-defined network, the coordinator reached by its container hostname).
 *
 * Each container sees only its own member folder, mounted at the same absolute path as on the host
 * so the configs' paths need no translation: the coordinator its certificate, state dir and the
 * initial model; a site its certificate and work dir; an aggregator shard its certificate and the
 * coordinator's state dir, the checkpoint storage they share. The CA key is never mounted.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { provisionFederation } from '../coordinator/index.js';
import { freeLoopbackPort } from '../common/net.js';
import { writeFederationFiles, type FederationFiles, type FederationFilesOptions } from './federation-files.js';
import { docker, DockerError } from './images.js';

/** The coordinator's hostname on the federation's network, and the port it listens on there. */
export const COORDINATOR_HOST = 'coordinator';
export const COORDINATOR_PORT = 7443;
/** The port an aggregator shard's address names (sites do not dial shards yet; it is their endpoint in `aggregators`). */
export const SHARD_PORT = 7450;

/** Options of {@link writeContainerFederation}: those of a local federation, less the addresses. */
export type ContainerFederationFilesOptions = Omit<FederationFilesOptions, 'coordinatorAddress' | 'listen' | 'force'>;

/**
 * Provisions a federation whose coordinator certificate names {@link COORDINATOR_HOST} (and
 * localhost, for health checks and admins on the host) and writes configs in which sites dial
 * `coordinator:7443` and check the certificate against that name — no `serverName` override.
 */
export async function writeContainerFederation(o: ContainerFederationFilesOptions): Promise<FederationFiles> {
  // A state dir from an earlier run keeps its federation (`simulate` continues the run found there).
  const provisioned = await stat(join(o.dir, 'ca', 'ca.crt')).then(() => true, () => false);
  if (!provisioned) await provisionFederation({
    federation: o.federation,
    sites: [...o.sites],
    admins: [...o.admins],
    outDir: o.dir,
    coordinatorHosts: [COORDINATOR_HOST, 'localhost', '127.0.0.1'],
    // A shard's certificate names its container's hostname, its part name.
    aggregators: (o.aggregators ?? []).map((a) => ({ name: a.name, hosts: [a.name] })),
  });
  // The CA now exists, so this keeps the certificates above and writes models and configs.
  const files = await writeFederationFiles({ ...o, coordinatorAddress: `${COORDINATOR_HOST}:${COORDINATOR_PORT}`, listen: `0.0.0.0:${COORDINATOR_PORT}` });
  // Made by this user now: a bind mount docker had to create would belong to root.
  if (files.aggregatorConfigs.size > 0) await mkdir(join(o.dir, 'coordinator', 'state'), { recursive: true });
  for (const file of [...files.siteConfigs.values(), ...files.adminConfigs.values(), ...files.aggregatorConfigs.values()]) {
    const cfg = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    delete cfg['serverName'];
    await writeFile(file, `${JSON.stringify(cfg, null, 2)}\n`, { mode: 0o600 });
  }
  return files;
}

/** Host folders (and files) a part's container mounts, at the same paths. */
export function memberMounts(files: FederationFiles, dir: string, part: string): string[] {
  if (part === COORDINATOR_HOST) return [join(dir, 'coordinator'), files.initialModel];
  // An aggregator shard: its folder and the checkpoint storage it shares with the coordinator.
  if (files.aggregatorConfigs.has(part)) return [join(dir, 'aggregators', part), join(dir, 'coordinator', 'state')];
  // `simulate` names a revived site `<site>-restarted`; it mounts the same site folder.
  return [join(dir, 'sites', part.replace(/-restarted$/, ''))];
}

/** How `simulate` starts its parts and where it finds the coordinator. */
export interface SimulateLayout {
  /** What sites dial, and what the coordinator binds. */
  readonly coordinatorAddress: string;
  readonly listen: string;
  /** What the admin client on this machine dials, and the TLS name it checks. */
  readonly adminAddress: string;
  readonly adminServerName?: string | undefined;
  /** Writes the federation's files (certificates, models, configs). */
  writeFiles(o: ContainerFederationFilesOptions): Promise<FederationFiles>;
  /** The program and arguments that run `fedhpc <args>` as the part `name`. */
  command(name: string, args: readonly string[], files: FederationFiles, dir: string): { file: string; args: string[] };
  /** Removes whatever the layout created (containers, network). */
  close(): Promise<void>;
}

/** Options of {@link containerLayout}. */
export interface ContainerLayoutOptions {
  /** The fedhpc image (see buildFedhpcImage). */
  readonly image: string;
  readonly signal?: AbortSignal;
}

/**
 * A layout where each part is a container on a new user-defined network: `docker run` in the
 * foreground, so the part's process is the docker client (its output is the container's log, its
 * exit the container's, SIGTERM is forwarded). The coordinator's port is published on 127.0.0.1.
 */
export async function containerLayout(o: ContainerLayoutOptions): Promise<SimulateLayout> {
  const id = randomBytes(4).toString('hex');
  const network = `fedhpc-sim-${id}`;
  const label = `fedhpc.simulation=${id}`;
  const hostPort = await freeLoopbackPort();
  const user = typeof process.getuid === 'function' ? `${process.getuid()}:${process.getgid?.() ?? 0}` : '1000:1000';
  let serial = 0;
  return {
    coordinatorAddress: `${COORDINATOR_HOST}:${COORDINATOR_PORT}`,
    listen: `0.0.0.0:${COORDINATOR_PORT}`,
    adminAddress: `127.0.0.1:${hostPort}`,
    adminServerName: COORDINATOR_HOST,
    // The network is made once the files are written: a failure before that leaves nothing behind.
    async writeFiles(f) {
      const files = await writeContainerFederation(f);
      await docker(['network', 'create', '--label', label, network], { signal: o.signal });
      return files;
    },
    command(name, args, files, dir) {
      const coordinator = name === COORDINATOR_HOST;
      const mounts = memberMounts(files, dir, name).flatMap((m) => ['--volume', `${m}:${m}`]);
      const argv = ['run', '--rm', '--name', `${network}-${name}-${serial++}`, '--label', label, '--network', network, '--user', user, ...mounts];
      if (coordinator) argv.push('--network-alias', COORDINATOR_HOST, '--publish', `127.0.0.1:${hostPort}:${COORDINATOR_PORT}`);
      else argv.push('--hostname', name);
      return { file: 'docker', args: [...argv, o.image, ...args] };
    },
    async close() {
      const ids = (await docker(['ps', '--all', '--quiet', '--filter', `label=${label}`])).split('\n').filter(Boolean);
      if (ids.length > 0) await docker(['rm', '--force', ...ids]).catch(() => undefined);
      const made = (await docker(['network', 'ls', '--quiet', '--filter', `label=${label}`])).trim() !== '';
      if (made) {
        await docker(['network', 'rm', network]).catch((err: unknown) => {
          throw new DockerError(`could not remove network ${network}`, { cause: err });
        });
      }
    },
  };
}
