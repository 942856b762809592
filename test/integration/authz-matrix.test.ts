/**
 * The authorization matrix: every RPC of every service in the proto, called by every kind of
 * caller (no certificate, another CA's, a site's, a revoked site's, an admin's, an aggregator
 * shard's), answers with the status its role allows. RPCs are enumerated from the loaded package definition, so one added to
 * the proto is covered without editing this file.
 */
import * as grpc from '@grpc/grpc-js';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CoordinatorHandle } from '../../coordinator/index.js';
import { createCa, issueCertificate, loadCaFiles } from '../../coordinator/pki/index.js';
import { PROTOCOL_VERSION } from '../../proto/index.js';
import { createTestFederation, startCoordinatorInProcess, type TestFederation } from '../helpers/federation.js';
import { adminCertFiles, siteCertFiles, type CertFiles } from '../helpers/raw-site.js';
import { RawRpcClient, allRpcs, encodeRequest, type RawOutcome, type RpcInfo } from '../helpers/raw-rpc.js';

/** The certificate role each service requires. A new service must be added here, deliberately. */
const SERVICE_ROLE: Record<string, 'site' | 'admin' | 'aggregator'> = { SiteService: 'site', AdminService: 'admin', AggregatorService: 'aggregator' };

/** Codes that mean "you may not call this" (or could not reach it at all). */
const REFUSED = new Set([grpc.status.UNAUTHENTICATED, grpc.status.PERMISSION_DENIED, grpc.status.UNAVAILABLE, grpc.status.UNIMPLEMENTED]);

const DEADLINE_MS = 2_000;
const rpcs = allRpcs();

function label(o: RawOutcome): string {
  return `${grpc.status[o.code]} ${o.details}`;
}

/** Calls every RPC with an empty request as `files`; resolves to outcomes keyed by `Service/Method`. */
async function callAll(address: string, files: CertFiles | { ca: string }): Promise<Map<string, RawOutcome>> {
  const client = new RawRpcClient(address, files);
  try {
    const out = new Map<string, RawOutcome>();
    for (const rpc of rpcs) out.set(key(rpc), await client.call(rpc, [Buffer.alloc(0)], DEADLINE_MS));
    return out;
  } finally {
    client.close();
  }
}

const key = (rpc: RpcInfo): string => `${rpc.service}/${rpc.method}`;

describe('authorization matrix: every RPC × every kind of caller', () => {
  let fed: TestFederation;
  let coordinator: CoordinatorHandle;
  let foreign: CertFiles;
  let shard: CertFiles;

  beforeAll(async () => {
    fed = await createTestFederation({ sites: 3, run: { rounds: 1, minSites: 3 } });
    // The admin probes abort the run and revoke a site, and the probes without a certificate, with
    // another CA's or with a revoked one are refused: the coordinator says so, as it should.
    coordinator = await startCoordinatorInProcess(fed, {
      expectLogs: [/^round attempt aborted$/, /^run aborted by an admin$/, /^run failed$/, /^site revoked$/, /^caller refused$/],
    });
    // Same federation name and site id, signed by a CA the coordinator never trusted.
    const now = new Date();
    const otherCa = await createCa({ federation: 'testfed', validityDays: 1, now });
    const forged = await issueCertificate({ ca: otherCa, role: 'site', id: 'site-1', federation: 'testfed', validityDays: 1, now });
    const dir = join(fed.dir, 'foreign');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'site.crt'), forged.certPem);
    await writeFile(join(dir, 'site.key'), forged.keyPem!, { mode: 0o600 });
    foreign = { ca: siteCertFiles(fed, 'site-1').ca, cert: join(dir, 'site.crt'), key: join(dir, 'site.key') };
    // An aggregator shard of this federation that the coordinator's config does not list.
    const issued = await issueCertificate({ ca: await loadCaFiles(join(fed.dir, 'ca')), role: 'aggregator', id: 'shard-x', federation: 'testfed', validityDays: 1, now });
    await writeFile(join(dir, 'aggregator.crt'), issued.certPem);
    await writeFile(join(dir, 'aggregator.key'), issued.keyPem!, { mode: 0o600 });
    shard = { ca: siteCertFiles(fed, 'site-1').ca, cert: join(dir, 'aggregator.crt'), key: join(dir, 'aggregator.key') };
  });

  afterAll(async () => {
    await coordinator?.stop();
    await fed?.cleanup();
  });

  it('enumerates the services from the proto, and knows the role of every service', () => {
    const services = new Set(rpcs.map((r) => r.service));
    expect([...services].sort()).toEqual(expect.arrayContaining(['AdminService', 'AggregatorService', 'SiteService']));
    for (const s of services) expect(SERVICE_ROLE[s], `no expected role for service ${s}`).toBeDefined();
    expect(rpcs.length).toBeGreaterThanOrEqual(15);
  });

  it('refuses a caller without a client certificate at the TLS handshake: UNAVAILABLE on every RPC', async () => {
    const outcomes = await callAll(fed.address, { ca: siteCertFiles(fed, 'site-1').ca });
    for (const rpc of rpcs) expect(outcomes.get(key(rpc))!.code, `${key(rpc)}: ${label(outcomes.get(key(rpc))!)}`).toBe(grpc.status.UNAVAILABLE);
  });

  it("refuses another CA's certificate at the TLS handshake: UNAVAILABLE on every RPC", async () => {
    const outcomes = await callAll(fed.address, foreign);
    for (const rpc of rpcs) expect(outcomes.get(key(rpc))!.code, `${key(rpc)}: ${label(outcomes.get(key(rpc))!)}`).toBe(grpc.status.UNAVAILABLE);
  });

  it('lets a site certificate through to site RPCs only; admin RPCs answer PERMISSION_DENIED', async () => {
    const outcomes = await callAll(fed.address, siteCertFiles(fed, 'site-1'));
    for (const rpc of rpcs) {
      const o = outcomes.get(key(rpc))!;
      if (SERVICE_ROLE[rpc.service] === 'site') {
        expect(REFUSED.has(o.code), `${key(rpc)} refused a site: ${label(o)}`).toBe(false);
      } else {
        expect(o.code, `${key(rpc)}: ${label(o)}`).toBe(grpc.status.PERMISSION_DENIED);
        expect(o.fedhpcCode).toBe('PERMISSION_DENIED');
      }
    }
  });

  it('lets an admin certificate through to admin RPCs only; site RPCs answer PERMISSION_DENIED', async () => {
    const outcomes = await callAll(fed.address, adminCertFiles(fed));
    for (const rpc of rpcs) {
      const o = outcomes.get(key(rpc))!;
      if (SERVICE_ROLE[rpc.service] === 'admin') {
        expect(REFUSED.has(o.code), `${key(rpc)} refused an admin: ${label(o)}`).toBe(false);
      } else {
        expect(o.code, `${key(rpc)}: ${label(o)}`).toBe(grpc.status.PERMISSION_DENIED);
        expect(o.fedhpcCode).toBe('PERMISSION_DENIED');
      }
    }
  });

  it("refuses an aggregator certificate on site and admin RPCs (PERMISSION_DENIED), and one the coordinator does not list at Attach (NOT_MEMBER)", async () => {
    const outcomes = await callAll(fed.address, shard);
    for (const rpc of rpcs) {
      const o = outcomes.get(key(rpc))!;
      expect(o.code, `${key(rpc)}: ${label(o)}`).toBe(grpc.status.PERMISSION_DENIED);
      expect(o.fedhpcCode, `${key(rpc)}: ${label(o)}`).toBe(SERVICE_ROLE[rpc.service] === 'aggregator' ? 'NOT_MEMBER' : 'PERMISSION_DENIED');
    }
  });

  it('refuses a revoked site certificate on every RPC: PERMISSION_DENIED (SITE_REVOKED)', async (ctx) => {
    const revoke = rpcs.find((r) => r.service === 'AdminService' && r.method === 'RevokeSite');
    if (!revoke) return ctx.skip();
    // site-3 joins first, so the coordinator has seen the certificate it then revokes.
    const join = rpcs.find((r) => r.service === 'SiteService' && r.method === 'Join')!;
    const site = new RawRpcClient(fed.address, siteCertFiles(fed, 'site-3'));
    const joined = await site.call(join, [encodeRequest(join, { siteId: 'site-3', protocolVersion: PROTOCOL_VERSION })], DEADLINE_MS);
    site.close();
    expect(joined.code, label(joined)).toBe(grpc.status.OK);
    const admin = new RawRpcClient(fed.address, adminCertFiles(fed));
    const revoked = await admin.call(revoke, [encodeRequest(revoke, { siteId: 'site-3', reason: 'authz matrix' })], DEADLINE_MS);
    admin.close();
    expect(revoked.code, label(revoked)).toBe(grpc.status.OK);
    const outcomes = await callAll(fed.address, siteCertFiles(fed, 'site-3'));
    for (const rpc of rpcs) {
      const o = outcomes.get(key(rpc))!;
      expect(o.code, `${key(rpc)}: ${label(o)}`).toBe(grpc.status.PERMISSION_DENIED);
      expect(o.fedhpcCode, `${key(rpc)}: ${label(o)}`).toBe('SITE_REVOKED');
    }
  });
});
