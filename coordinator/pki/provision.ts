/**
 * Writes a federation's certificates to disk: the CA, the coordinator, every site and every admin.
 * Layout (keys are written with mode 0600, their folders with 0700):
 *
 * ```
 * outDir/ca/ca.crt, ca/ca.key                       (the CA key stays with the admin's tooling)
 * outDir/coordinator/coordinator.crt, coordinator.key, ca.crt   (one coordinator, `coordinatorHosts`)
 * outDir/coordinators/<name>/coordinator.crt, coordinator.key, ca.crt   (several, `coordinators`)
 * outDir/sites/<id>/site.crt, site.key, ca.crt
 * outDir/admins/<name>/admin.crt, admin.key, ca.crt
 * outDir/aggregators/<name>/aggregator.crt, aggregator.key, ca.crt   (aggregator shards, `aggregators`)
 * outDir/coordinator/local-shards/local-<i>/aggregator.crt, …       (local shards, `localShards`)
 * ```
 */
import { chmod, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { invariant } from '../../aggregation/index.js';
import { PkiError, PkiErrorCode } from './errors.js';
import { type CertificateAndKey, type RandomBytes, createCa, issueCertificate } from './certificates.js';
import { type Role, assertValidFederation, assertValidId, assertValidity } from './names.js';

/** Options of {@link provisionFederation}. */

/** Validity of certificates `fedhpc provision` and `admin approve` issue when none is given, in days. */
export const DEFAULT_VALIDITY_DAYS = 365;

export interface ProvisionFederationOptions {
  /** Federation name; must match `ID_PATTERN`. */
  readonly federation: string;
  /** Site ids; each must match `ID_PATTERN` and be unique. */
  readonly sites: readonly string[];
  /** Admin names; each must match `ID_PATTERN` and be unique. */
  readonly admins: readonly string[];
  /** Folder to write into; created if missing. */
  readonly outDir: string;
  /** DNS names and IP addresses for the coordinator's SAN. Default `localhost`, `127.0.0.1`, `::1`. */
  readonly coordinatorHosts?: readonly string[];
  /**
   * Several coordinators (a leader and its standbys, issue 19) instead of the one of
   * `coordinatorHosts`: each gets its own key and certificate, subject CN its `name`, SAN its
   * `hosts`, under `coordinators/<name>/`.
   */
  readonly coordinators?: readonly { readonly name: string; readonly hosts: readonly string[] }[];
  /**
   * Aggregator shards (issue 22): each gets a key and a certificate of the `aggregator` role,
   * subject CN its `name`, SAN its `hosts` (what sites dial) and its identity URI, under
   * `aggregators/<name>/`. Default none.
   */
  readonly aggregators?: readonly { readonly name: string; readonly hosts: readonly string[] }[];
  /**
   * Local aggregator shards (`localShards` in coordinator.json, issue 22): `local-1` … `local-K` each
   * get an `aggregator` certificate naming the coordinator's own hosts, under
   * `coordinator/local-shards/<name>/`, so that the shards the coordinator starts on its host can
   * serve sites. One coordinator only (not with `coordinators`). Default 0.
   */
  readonly localShards?: number;
  /** Validity of every certificate, in days. Default {@link DEFAULT_VALIDITY_DAYS}. */
  readonly validityDays?: number;
  /** Issuance time. Default `new Date()`. */
  readonly now?: Date;
  /** Overwrite an existing non-empty `outDir/ca`. Default false. */
  readonly force?: boolean;
  /** Random source for serial numbers. */
  readonly randomBytes?: RandomBytes;
  /** Cancels provisioning between certificates. */
  readonly signal?: AbortSignal;
}

/** Paths of one issued certificate, its key and the CA certificate beside them. */
export interface ProvisionedMember {
  readonly id: string;
  readonly role: Role;
  readonly certPath: string;
  readonly keyPath: string;
  readonly caPath: string;
}

/** Every path {@link provisionFederation} wrote, all absolute. */
export interface ProvisionManifest {
  readonly federation: string;
  readonly outDir: string;
  readonly ca: { readonly certPath: string; readonly keyPath: string };
  /** The coordinator; with `coordinators`, the first of them. */
  readonly coordinator: ProvisionedMember;
  /** Every coordinator, in the order given (the one of `coordinator` alone without `coordinators`). */
  readonly coordinators: readonly ProvisionedMember[];
  readonly sites: readonly ProvisionedMember[];
  readonly admins: readonly ProvisionedMember[];
  /** Every aggregator shard, in the order given (empty without `aggregators`). */
  readonly aggregators: readonly ProvisionedMember[];
  /** The local shards' serving certificates, `local-1` first (empty without `localShards`). */
  readonly localShards: readonly ProvisionedMember[];
}

/** The hosts one coordinator's certificate names when none are given. */
const DEFAULT_HOSTS = ['localhost', '127.0.0.1', '::1'];

const IP_ADDRESS = /^(\d{1,3}(\.\d{1,3}){3}|[0-9a-fA-F:]*:[0-9a-fA-F:.]*)$/;

function assertUnique(ids: readonly string[], role: Role): void {
  const seen = new Set<string>();
  for (const id of ids) {
    assertValidId(id, role);
    if (seen.has(id)) throw new PkiError(PkiErrorCode.DuplicateId, `duplicate ${role} id ${JSON.stringify(id)}`, { id, role });
    seen.add(id);
  }
}

async function isNonEmptyDir(path: string): Promise<boolean> {
  try {
    return (await readdir(path)).length > 0;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

async function writeCert(path: string, pem: string): Promise<void> {
  await writeFile(path, pem, { mode: 0o644 });
  await chmod(path, 0o644);
}

async function writeKey(path: string, pem: string): Promise<void> {
  // `mode` applies only when the file is created; chmod covers an overwrite under `force`.
  await writeFile(path, pem, { mode: 0o600 });
  await chmod(path, 0o600);
}

async function writeMember(
  dir: string,
  stem: string,
  role: Role,
  id: string,
  issued: { certPem: string; keyPem?: string },
  caPem: string,
): Promise<ProvisionedMember> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const member = { id, role, certPath: join(dir, `${stem}.crt`), keyPath: join(dir, `${stem}.key`), caPath: join(dir, 'ca.crt') };
  await writeCert(member.certPath, issued.certPem);
  await writeKey(member.keyPath, issued.keyPem ?? '');
  await writeCert(member.caPath, caPem);
  return member;
}

function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new PkiError(PkiErrorCode.Aborted, 'provisioning was aborted', {}, { cause: signal.reason });
}

/**
 * Creates a CA and issues the coordinator, site, admin and aggregator certificates, writing them under
 * `outDir`. All ids are checked before anything is written. With `force`, existing files are
 * overwritten; files of members no longer listed are left in place.
 *
 * @throws {PkiError} `PKI_INVALID_ID`, `PKI_DUPLICATE_ID`, `PKI_INVALID_FEDERATION`,
 *   `PKI_INVALID_OPTIONS`, `PKI_OUTPUT_EXISTS` (non-empty `outDir/ca` without `force`), `PKI_ABORTED`.
 */
export async function provisionFederation(options: ProvisionFederationOptions): Promise<ProvisionManifest> {
  const { federation, sites, admins } = options;
  const validityDays = options.validityDays ?? DEFAULT_VALIDITY_DAYS;
  const now = options.now ?? new Date();
  assertValidFederation(federation);
  assertValidity(validityDays, now);
  assertUnique(sites, 'site');
  assertUnique(admins, 'admin');
  if (options.coordinators !== undefined && options.coordinatorHosts !== undefined) {
    throw new PkiError(PkiErrorCode.InvalidOptions, 'give coordinatorHosts (one coordinator) or coordinators (several), not both');
  }
  const several = options.coordinators;
  if (several !== undefined) {
    if (several.length === 0) throw new PkiError(PkiErrorCode.InvalidOptions, 'coordinators lists no coordinator');
    assertUnique(several.map((c) => c.name), 'coordinator');
  }
  const localShards = options.localShards ?? 0;
  if (!Number.isSafeInteger(localShards) || localShards < 0 || localShards > 64) {
    throw new PkiError(PkiErrorCode.InvalidOptions, `localShards must be a whole number from 0 to 64, got ${String(localShards)}`);
  }
  if (localShards > 0 && several !== undefined) throw new PkiError(PkiErrorCode.InvalidOptions, 'local shards run beside one coordinator: not with coordinators');
  const shards = options.aggregators ?? [];
  assertUnique(shards.map((a) => a.name), 'aggregator');
  for (const { name, hosts } of shards) {
    if (hosts.length === 0) throw new PkiError(PkiErrorCode.InvalidOptions, `aggregator ${JSON.stringify(name)} names no host for sites to dial`, { id: name, role: 'aggregator' });
  }
  const sansOf = (hosts: readonly string[]): { dnsNames: string[]; ipAddresses: string[] } => ({
    dnsNames: hosts.filter((host) => !IP_ADDRESS.test(host)),
    ipAddresses: hosts.filter((host) => IP_ADDRESS.test(host)),
  });

  const outDir = resolve(options.outDir);
  const caDir = join(outDir, 'ca');
  if (options.force !== true && (await isNonEmptyDir(caDir))) {
    throw new PkiError(PkiErrorCode.OutputExists, `${caDir} already holds a CA; pass force: true to replace it`, { path: caDir });
  }
  checkAborted(options.signal);
  const random = options.randomBytes === undefined ? {} : { randomBytes: options.randomBytes };
  const ca: CertificateAndKey = await createCa({ federation, validityDays, now, ...random });
  await mkdir(caDir, { recursive: true, mode: 0o700 });
  const caPaths = { certPath: join(caDir, 'ca.crt'), keyPath: join(caDir, 'ca.key') };
  await writeCert(caPaths.certPath, ca.certPem);
  await writeKey(caPaths.keyPath, ca.keyPem);

  const issue = async (role: Role, id: string, hosts?: readonly string[]): Promise<{ certPem: string; keyPem?: string }> => {
    checkAborted(options.signal);
    const sans = hosts === undefined ? {} : sansOf(hosts);
    return issueCertificate({ ca, role, id, federation, validityDays, now, ...sans, ...random });
  };
  const coordinators: ProvisionedMember[] = [];
  for (const { name, hosts } of several ?? [{ name: 'coordinator', hosts: options.coordinatorHosts ?? DEFAULT_HOSTS }]) {
    const dir = several === undefined ? join(outDir, 'coordinator') : join(outDir, 'coordinators', name);
    coordinators.push(await writeMember(dir, 'coordinator', 'coordinator', name, await issue('coordinator', name, hosts), ca.certPem));
  }
  const coordinator = coordinators[0];
  invariant(coordinator !== undefined, 'provisioning issues at least one coordinator certificate');
  const siteMembers: ProvisionedMember[] = [];
  for (const id of sites) {
    siteMembers.push(await writeMember(join(outDir, 'sites', id), 'site', 'site', id, await issue('site', id), ca.certPem));
  }
  const adminMembers: ProvisionedMember[] = [];
  for (const id of admins) {
    adminMembers.push(await writeMember(join(outDir, 'admins', id), 'admin', 'admin', id, await issue('admin', id), ca.certPem));
  }
  const aggregators: ProvisionedMember[] = [];
  for (const { name, hosts } of shards) {
    aggregators.push(await writeMember(join(outDir, 'aggregators', name), 'aggregator', 'aggregator', name, await issue('aggregator', name, hosts), ca.certPem));
  }
  const locals: ProvisionedMember[] = [];
  for (let i = 1; i <= localShards; i++) {
    const name = localShardName(i);
    locals.push(await writeMember(localShardDir(join(outDir, 'coordinator'), name), 'aggregator', 'aggregator', name, await issue('aggregator', name, options.coordinatorHosts ?? DEFAULT_HOSTS), ca.certPem));
  }
  return Object.freeze({ federation, outDir, ca: caPaths, coordinator, coordinators, sites: siteMembers, admins: adminMembers, aggregators, localShards: locals });
}

/** The name of local shard `i` (from 1): `local-<i>`. */
export function localShardName(i: number): string {
  return `local-${i}`;
}

/** Where local shard `name`'s serving certificate lies: beside the coordinator's, under `local-shards/<name>/`. */
export function localShardDir(coordinatorDir: string, name: string): string {
  return join(coordinatorDir, 'local-shards', name);
}
