/**
 * The files of a local federation: certificates, the initial model and ready-to-use configs for
 * the coordinator, each site and the admin. Used by `fedhpc provision` and `fedhpc simulate`.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { provisionFederation, type CoordinatorOptions, type ProvisionManifest, type ShardConfigInput } from '../coordinator/index.js';
import {
  defaultSiteLanguages,
  initBuiltinModel,
  resolveBuiltinConfig,
  writeBuiltinModel,
  type SiteOptions,
} from '../site-agent/index.js';
import { torchInitialModel, torchRunner, type JobRunnerKind } from './torch-sites.js';
import { standinRunner, type StandinSites } from './standin-sites.js';
import { DEMO_DATA, DEMO_MODEL_SEED } from './demo.js';
import { invariant } from '../aggregation/index.js';
import { targetHost } from '../common/grpc-tls.js';
import { pathExists } from '../common/files.js';

/** Training settings of the demo federation (builtin runner), chosen for ≈1 CPU-second per shard. */
export const DEMO_TRAIN = { steps: 50, batchSize: 256, lr: 0.01 } as const;

export interface FederationFilesOptions {
  readonly dir: string;
  readonly federation: string;
  readonly sites: readonly string[];
  readonly admins: readonly string[];
  /** Address sites dial (`host:port`), with `listen`; or `coordinators`. */
  readonly coordinatorAddress?: string;
  /** Address the coordinator binds. */
  readonly listen?: string;
  /**
   * Several coordinators instead of one (`fedhpc provision --coordinators`, issue 19): a certificate
   * and a config each under `coordinators/<name>/`, and every site and admin config lists their
   * addresses in this order as `coordinators`.
   */
  readonly coordinators?: readonly CoordinatorEndpoint[];
  /**
   * Aggregator shards (issue 22), each named and dialled as a coordinator is: their certificates
   * and configs (`aggregator.json`, its checkpoint storage the first coordinator's state dir) go
   * under `aggregators/<name>/`, and the coordinators' configs list them as `aggregators`. A
   * federation provisioned earlier must hold their certificates already.
   */
  readonly aggregators?: readonly CoordinatorEndpoint[];
  /**
   * Local aggregator shards (issue 22): `localShards` in coordinator.json, and each an `aggregator`
   * certificate under `coordinator/local-shards/<name>/` so that it serves sites. One coordinator only.
   */
  readonly localShards?: number;
  /** Issue the local shards' certificates only, leaving coordinator.json without `localShards` (a test switches it on). */
  readonly localShardCertificatesOnly?: boolean;
  readonly run: CoordinatorOptions['run'];
  /** The coordinator's `limits` (defaults when absent). */
  readonly limits?: CoordinatorOptions['limits'];
  readonly force?: boolean;
  /**
   * How sites train: the builtin TypeScript model (default) or torch_shard.py as a job; `siteData`:
   * extra fields of each site's runner `data` (spec.json `data`), one object per site in order.
   */
  readonly trainer?: { readonly kind: JobRunnerKind; readonly python: string; readonly siteData?: readonly Readonly<Record<string, unknown>>[] } | undefined;
  /** Sites run the stand-in trainer at these speeds instead (on the builtin initial model). */
  readonly standin?: StandinSites | undefined;
  /** The coordinator's web dashboard (off when absent); its URL goes into the admins' configs. */
  readonly dashboard?: { readonly listen: string; readonly url: string } | undefined;
}

/** One of several coordinators: its name (the certificate's CN and its folder), the address members dial, the address it binds. */
export interface CoordinatorEndpoint {
  readonly name: string;
  readonly address: string;
  readonly listen: string;
}

export interface FederationFiles {
  /** The certificates written now; undefined when the folder already held the federation. */
  readonly manifest: ProvisionManifest | undefined;
  readonly initialModel: string;
  /** The coordinator's config; with several coordinators, the first one's. */
  readonly coordinatorConfig: string;
  /** Every coordinator's config by name (`coordinator` alone with one coordinator). */
  readonly coordinatorConfigs: ReadonlyMap<string, string>;
  readonly siteConfigs: ReadonlyMap<string, string>;
  readonly adminConfigs: ReadonlyMap<string, string>;
  /** Every aggregator shard's config by name (empty without shards). */
  readonly aggregatorConfigs: ReadonlyMap<string, string>;
}

/** Admin CLI config: where the coordinator is and which certificate to present. */
export interface AdminConfigFile {
  /** One coordinator's address, or several as `coordinators`. */
  readonly coordinator?: string;
  readonly coordinators?: readonly string[];
  readonly serverName?: string;
  readonly tls: { readonly ca: string; readonly cert: string; readonly key: string };
  /** The coordinator's dashboard, for `fedhpc admin dashboard-token`'s sign-in link. */
  readonly dashboard?: string;
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await writeFile(path, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o600 });
}

/**
 * Provisions certificates (unless `dir/ca` exists already), writes the builtin initial model and
 * config files for every member. Configs use paths relative to their own folder.
 */
export async function writeFederationFiles(o: FederationFilesOptions): Promise<FederationFiles> {
  const several = o.coordinators;
  invariant(
    several === undefined ? o.coordinatorAddress !== undefined && o.listen !== undefined : o.coordinatorAddress === undefined && o.listen === undefined && several.length > 0,
    'a federation has one coordinator (coordinatorAddress and listen) or several (coordinators), not both',
  );
  // An existing federation (a re-run on the same folder) keeps its certificates.
  const provisioned = o.force === true || !(await pathExists(join(o.dir, 'ca', 'ca.crt')));
  // The coordinator's certificate names the host the members dial, so no serverName override is needed.
  const [host = 'localhost'] = (o.coordinatorAddress ?? '').split(':');
  const coordinatorHosts = [...new Set([host, 'localhost', '127.0.0.1', '::1'])];
  // Several: each certificate names its own host, and the loopback names as the one coordinator's does.
  const hostsOf = (address: string): string[] => [...new Set([targetHost(address), 'localhost', '127.0.0.1', '::1'])];
  const coordinators = several?.map((c) => ({ name: c.name, hosts: hostsOf(c.address) }));
  const aggregators = (o.aggregators ?? []).map((a) => ({ name: a.name, hosts: hostsOf(a.address) }));
  // A federation provisioned earlier (a re-run, or a layout that provisions with its own host names) must hold every shard's certificate.
  for (const a of provisioned ? [] : aggregators) {
    if (!(await pathExists(join(o.dir, 'aggregators', a.name, 'aggregator.crt')))) {
      throw new Error(`${o.dir} holds a federation without a certificate for aggregator shard ${a.name}: shard certificates are issued with the federation's (pass force to issue new certificates for all)`);
    }
  }
  const manifest = provisioned
    ? await provisionFederation({
        federation: o.federation,
        sites: [...o.sites],
        admins: [...o.admins],
        outDir: o.dir,
        force: o.force ?? false,
        aggregators,
        ...(o.localShards ? { localShards: o.localShards } : {}),
        ...(coordinators ? { coordinators } : { coordinatorHosts }),
      })
    : undefined;
  if (!provisioned && several) {
    for (const c of several) {
      if (!(await pathExists(join(o.dir, 'coordinators', c.name, 'coordinator.crt')))) {
        throw new Error(`${o.dir} holds a federation without a certificate for coordinator ${c.name}; pass force to issue new certificates for all`);
      }
    }
  }
  let initialModel = join(o.dir, 'initial-model.safetensors');
  let modelConfig: string | undefined;
  if (o.trainer) {
    const init = await torchInitialModel(o.dir, o.trainer.python);
    initialModel = init.model;
    modelConfig = init.config;
  } else if (!(await pathExists(initialModel))) {
    const config = resolveBuiltinConfig({});
    await writeBuiltinModel(initialModel, initBuiltinModel(config, DEMO_MODEL_SEED), config);
  }
  // A federation provisioned by an earlier run may name only localhost (several coordinators: checked above).
  const serverName = provisioned || several || host === 'localhost' ? undefined : 'localhost';
  // Members dial these, in this order; one address is written as `coordinator`, as before.
  const addressing = several ? { coordinators: several.map((c) => c.address) } : { coordinator: o.coordinatorAddress };

  const coordinatorConfigs = new Map<string, string>();
  const endpoints = several?.map((c) => ({ ...c, dir: join(o.dir, 'coordinators', c.name) })) ?? [{ name: 'coordinator', listen: o.listen ?? '', dir: join(o.dir, 'coordinator') }];
  for (const { name, listen, dir: coordDir } of endpoints) {
    const file = join(coordDir, 'coordinator.json');
    const coordinator: CoordinatorOptions = {
      federation: o.federation,
      listen,
      tls: { ca: 'ca.crt', cert: 'coordinator.crt', key: 'coordinator.key' },
      stateDir: 'state',
      model: { initial: relative(coordDir, initialModel) },
      // Every site given a certificate here is a member; others join only when an admin approves them.
      members: [...o.sites],
      run: o.run,
      ...(o.limits ? { limits: o.limits } : {}),
      ...(o.dashboard ? { dashboard: { listen: o.dashboard.listen } } : {}),
      ...(o.aggregators && o.aggregators.length > 0 ? { aggregators: o.aggregators.map((a) => ({ name: a.name, endpoint: a.address })) } : {}),
      ...(o.localShards && !o.localShardCertificatesOnly ? { localShards: o.localShards } : {}),
    };
    await mkdir(coordDir, { recursive: true });
    await writeJson(file, coordinator);
    await mkdir(join(coordDir, 'state'), { recursive: true });
    coordinatorConfigs.set(name, file);
  }
  const coordinatorConfig = coordinatorConfigs.values().next().value;
  invariant(coordinatorConfig !== undefined, 'a federation has a coordinator config');

  const languages = defaultSiteLanguages(o.sites.length);
  const siteConfigs = new Map<string, string>();
  for (const [i, site] of o.sites.entries()) {
    const dir = join(o.dir, 'sites', site);
    const file = join(dir, 'site.json');
    const cfg: SiteOptions = {
      site,
      ...addressing,
      ...(serverName ? { serverName } : {}),
      tls: { ca: 'ca.crt', cert: 'site.crt', key: 'site.key' },
      workDir: 'work',
      runner: o.standin
        ? standinRunner(o.standin, i)
        : o.trainer && modelConfig
          ? await torchRunner(o.trainer.kind, dir, languages[i]!, i + 1, o.trainer.python, modelConfig, o.trainer.siteData?.[i])
          : { kind: 'builtin', language: languages[i]!, ...DEMO_DATA, seed: i + 1 },
    };
    await writeJson(file, cfg);
    siteConfigs.set(site, file);
  }
  const adminConfigs = new Map<string, string>();
  for (const admin of o.admins) {
    const dir = join(o.dir, 'admins', admin);
    const file = join(dir, 'admin.json');
    const cfg: AdminConfigFile = {
      ...addressing,
      ...(serverName ? { serverName } : {}),
      tls: { ca: 'ca.crt', cert: 'admin.crt', key: 'admin.key' },
      ...(o.dashboard ? { dashboard: o.dashboard.url } : {}),
    };
    await writeJson(file, cfg);
    adminConfigs.set(admin, file);
  }
  const aggregatorConfigs = new Map<string, string>();
  // Shards read and write the checkpoints where the coordinators keep them (a pair's shared state dir).
  const checkpoints = join(dirname(coordinatorConfig), 'state');
  for (const shard of o.aggregators ?? []) {
    const dir = join(o.dir, 'aggregators', shard.name);
    const file = join(dir, 'aggregator.json');
    const cfg: ShardConfigInput = {
      federation: o.federation,
      name: shard.name,
      coordinators: several ? several.map((c) => c.address) : [o.coordinatorAddress ?? ''],
      ...(serverName ? { serverName } : {}),
      tls: { ca: 'ca.crt', cert: 'aggregator.crt', key: 'aggregator.key' },
      checkpoints: relative(dir, checkpoints),
      stateDir: 'state',
      // Where it takes sites' part uploads, when the federation gives it an address to listen on.
      ...(shard.listen !== '' ? { listen: shard.listen } : {}),
    };
    await mkdir(dir, { recursive: true });
    await writeJson(file, cfg);
    aggregatorConfigs.set(shard.name, file);
  }
  return { manifest, initialModel, coordinatorConfig, coordinatorConfigs, siteConfigs, adminConfigs, aggregatorConfigs };
}
