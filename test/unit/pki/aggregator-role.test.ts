/**
 * The aggregator role (issue 22): `provisionFederation` issues shard certificates that name their
 * hosts and their identity; a member dialling the coordinator refuses a shard's certificate, one
 * dialling a shard refuses the coordinator's, and the coordinator's APIs refuse a shard as caller.
 * Real grpc-js servers and clients over mTLS on loopback.
 */
import * as grpc from '@grpc/grpc-js';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mutualTlsCredentials, type ServerRole } from '../../../common/grpc-tls.js';
import { PkiError, createIdentityResolver, identityFromAuthContext, provisionFederation, type ProvisionManifest } from '../../../coordinator/pki/index.js';
import { authenticate } from '../../../coordinator/service/auth.js';
import { CoordinatorError } from '../../../coordinator/core/errors.js';
import { EchoClient, echoService } from '../../helpers/echo-service.js';
import { NOW } from './fixtures.js';

let manifest: ProvisionManifest;
const servers: grpc.Server[] = [];
const ports = new Map<ServerRole, number>();
const resolver = createIdentityResolver({ federation: 'eurohpc' });
const dirs: string[] = [];
const tempDir = async (prefix: string): Promise<string> => {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
};

const files = async (m: { certPath: string; keyPath: string; caPath: string }): Promise<{ ca: Buffer; cert: Buffer; key: Buffer }> => ({
  ca: await readFile(m.caPath),
  cert: await readFile(m.certPath),
  key: await readFile(m.keyPath),
});

beforeAll(async () => {
  const dir = await tempDir('fedhpc-aggregator-role-');
  manifest = await provisionFederation({
    federation: 'eurohpc',
    sites: ['bsc'],
    admins: ['ops'],
    outDir: dir,
    now: NOW,
    aggregators: [
      { name: 'shard-a', hosts: ['127.0.0.1', 'shard-a.example.org'] },
      { name: 'shard-b', hosts: ['127.0.0.2'] },
    ],
  });
  // One echo server per server role, each answering with the caller's identity as the coordinator reads it.
  for (const [role, member] of [['coordinator', manifest.coordinator], ['aggregator', manifest.aggregators[0]!]] as const) {
    const { ca, cert, key } = await files(member);
    const server = new grpc.Server();
    server.addService(echoService, {
      whoAmI: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        const id = identityFromAuthContext(call.getAuthContext(), (raw) => resolver.resolve(raw));
        callback(null, Buffer.from(id.ok ? `${id.value.role}/${id.value.id}` : 'unknown'));
      },
    });
    const credentials = grpc.ServerCredentials.createSsl(ca, [{ cert_chain: cert, private_key: key }], true);
    ports.set(role, await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', credentials, (err, port) => (err ? reject(err) : resolve(port)))));
    servers.push(server);
  }
});

afterAll(async () => {
  servers.forEach((s) => s.forceShutdown());
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** Calls WhoAmI on the `server` role's echo server as `as`, expecting the server to hold `expect`. */
async function dial(server: ServerRole, as: { certPath: string; keyPath: string; caPath: string }, expectRole?: ServerRole): Promise<{ reply?: string; error?: grpc.ServiceError }> {
  const target = `127.0.0.1:${ports.get(server)}`;
  const client = new EchoClient(target, mutualTlsCredentials(await files(as), { target, ...(expectRole ? { role: expectRole } : {}) }));
  try {
    return await new Promise((resolve) => {
      client.makeUnaryRequest(echoService.whoAmI.path, (v: Buffer) => v, (v: Buffer) => v, Buffer.alloc(0), { deadline: Date.now() + 5_000 }, (error: grpc.ServiceError | null, reply?: Buffer) =>
        resolve(error ? { error } : { reply: reply?.toString() ?? '' }),
      );
    });
  } finally {
    client.close();
  }
}

describe('aggregator shard certificates', () => {
  it('are issued by provision with the aggregator role, server and client use, their hosts and their identity URI', async () => {
    expect(manifest.aggregators.map((a) => [a.id, a.role])).toEqual([
      ['shard-a', 'aggregator'],
      ['shard-b', 'aggregator'],
    ]);
    const a = manifest.aggregators[0]!;
    expect(a.certPath).toBe(join(manifest.outDir, 'aggregators', 'shard-a', 'aggregator.crt'));
    expect((await stat(a.keyPath)).mode & 0o777).toBe(0o600);
    const cert = new X509Certificate(await readFile(a.certPath));
    expect(cert.subject.split('\n')).toEqual(expect.arrayContaining(['CN=shard-a', 'OU=aggregator', 'O=eurohpc']));
    expect(cert.subjectAltName?.split(', ').sort()).toEqual(['DNS:shard-a.example.org', 'IP Address:127.0.0.1', 'URI:fedhpc://eurohpc/aggregator/shard-a']);
    expect(cert.checkIssued(new X509Certificate(await readFile(a.caPath)))).toBe(true);
    expect(cert.keyUsage).toEqual(expect.arrayContaining(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']));
  });

  it('refuses a shard with no host, and two shards of one name, before writing anything', async () => {
    const dir = await tempDir('fedhpc-aggregator-bad-');
    for (const aggregators of [[{ name: 'shard-a', hosts: [] }], [{ name: 'shard-a', hosts: ['h1'] }, { name: 'shard-a', hosts: ['h2'] }]]) {
      const err = await provisionFederation({ federation: 'eurohpc', sites: ['bsc'], admins: ['ops'], outDir: dir, now: NOW, aggregators }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PkiError);
      expect((err as Error).message).toMatch(/shard-a/);
      await expect(stat(join(dir, 'ca'))).rejects.toThrow(/ENOENT/);
    }
  });

  it('issues local shards (--local-shards) aggregator certificates naming the coordinator’s hosts, beside its certificate; refuses them with several coordinators', async () => {
    const dir = await tempDir('fedhpc-local-shards-');
    const m = await provisionFederation({ federation: 'eurohpc', sites: ['bsc'], admins: ['ops'], outDir: dir, now: NOW, coordinatorHosts: ['coord.example.org', '10.0.0.5'], localShards: 2 });
    expect(m.localShards.map((l) => [l.id, l.role, l.certPath])).toEqual([
      ['local-1', 'aggregator', join(dir, 'coordinator', 'local-shards', 'local-1', 'aggregator.crt')],
      ['local-2', 'aggregator', join(dir, 'coordinator', 'local-shards', 'local-2', 'aggregator.crt')],
    ]);
    const cert = new X509Certificate(await readFile(m.localShards[1]!.certPath));
    expect(cert.subject.split('\n')).toEqual(expect.arrayContaining(['CN=local-2', 'OU=aggregator']));
    expect(cert.subjectAltName?.split(', ').sort()).toEqual(['DNS:coord.example.org', 'IP Address:10.0.0.5', 'URI:fedhpc://eurohpc/aggregator/local-2']);
    for (const localShards of [2.5, 65]) {
      await expect(provisionFederation({ federation: 'eurohpc', sites: ['bsc'], admins: ['ops'], outDir: await tempDir('fedhpc-local-bad-'), now: NOW, localShards })).rejects.toThrow(/localShards must be a whole number from 0 to 64/);
    }
    const several = provisionFederation({ federation: 'eurohpc', sites: ['bsc'], admins: ['ops'], outDir: await tempDir('fedhpc-local-bad-'), now: NOW, localShards: 1, coordinators: [{ name: 'a', hosts: ['a'] }] });
    await expect(several).rejects.toThrow(/local shards run beside one coordinator/);
  });

  it('a member dialling the coordinator refuses a shard certificate; one dialling a shard refuses the coordinator', async () => {
    const site = manifest.sites[0]!;
    expect(await dial('coordinator', site)).toEqual({ reply: 'site/bsc' });
    expect(await dial('aggregator', site, 'aggregator')).toEqual({ reply: 'site/bsc' });

    const asCoordinator = await dial('aggregator', site);
    expect(asCoordinator.error?.code).toBe(grpc.status.UNAVAILABLE);
    expect(asCoordinator.error?.details).toMatch(/CN "shard-a".*role "aggregator".*not "coordinator"/);

    const asShard = await dial('coordinator', site, 'aggregator');
    expect(asShard.error?.code).toBe(grpc.status.UNAVAILABLE);
    expect(asShard.error?.details).toMatch(/role "coordinator".*not "aggregator"/);
  });

  it("the coordinator reads a shard caller's identity and its site and admin APIs refuse it", async () => {
    const shard = manifest.aggregators[1]!;
    expect(await dial('coordinator', shard)).toEqual({ reply: 'aggregator/shard-b' });
    const cert = new X509Certificate(await readFile(shard.certPath));
    const call = { getAuthContext: () => ({ transportSecurityType: 'ssl', sslPeerCertificate: { raw: cert.raw } }) };
    for (const api of ['site', 'admin'] as const) {
      let err: unknown;
      try {
        authenticate(call, resolver, api);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CoordinatorError);
      expect((err as CoordinatorError).code).toBe('PERMISSION_DENIED');
      expect((err as Error).message).toBe(`an aggregator certificate cannot call the ${api} API`);
    }
  });
});
