import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CertificateAndKey,
  type IdentityResult,
  createCa,
  createIdentityResolver,
  identityFromAuthContext,
  issueCertificate,
} from '../../../coordinator/pki/index.js';
import { NOW } from './fixtures.js';
import { CHANNEL_OPTIONS, EchoClient, echoService } from '../../helpers/echo-service.js';


interface Observed {
  transportSecurityType: string | undefined;
  hasRaw: boolean;
  identity: IdentityResult;
}

let ca: CertificateAndKey;
let server: grpc.Server;
let port: number;
const observed: Observed[] = [];
const resolver = createIdentityResolver({ federation: 'eurohpc' });

beforeAll(async () => {
  ca = await createCa({ federation: 'eurohpc', validityDays: 1, now: NOW });
  const coordinator = await issueCertificate({ ca, role: 'coordinator', id: 'coordinator', federation: 'eurohpc', validityDays: 1, now: NOW });
  server = new grpc.Server();
  server.addService(echoService, {
    whoAmI: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      const authContext = call.getAuthContext();
      const identity = identityFromAuthContext(authContext, (raw) => resolver.resolve(raw));
      observed.push({ transportSecurityType: authContext.transportSecurityType, hasRaw: Buffer.isBuffer(authContext.sslPeerCertificate?.raw), identity });
      if (!identity.ok) {
        callback({ code: grpc.status.UNAUTHENTICATED, details: identity.issues.map((i) => i.message).join('; ') });
        return;
      }
      callback(null, Buffer.from(`${identity.value.role}/${identity.value.id}`));
    },
  });
  const credentials = grpc.ServerCredentials.createSsl(
    Buffer.from(ca.certPem),
    [{ cert_chain: Buffer.from(coordinator.certPem), private_key: Buffer.from(coordinator.keyPem ?? '') }],
    true,
  );
  port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', credentials, (error, boundPort) => (error ? reject(error) : resolve(boundPort)));
  });
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
});

function call(client: grpc.Client): Promise<{ ok: true; reply: string } | { ok: false; error: grpc.ServiceError }> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      echoService.whoAmI.path,
      echoService.whoAmI.requestSerialize,
      echoService.whoAmI.responseDeserialize,
      Buffer.alloc(0),
      { deadline: Date.now() + 5_000 },
      (error: grpc.ServiceError | null, reply?: Buffer) => {
        resolve(error ? { ok: false, error } : { ok: true, reply: reply?.toString() ?? '' });
      },
    );
  });
}

async function clientFor(trustedCa: CertificateAndKey, leaf: { certPem: string; keyPem?: string }): Promise<grpc.Client> {
  const credentials = grpc.credentials.createSsl(Buffer.from(trustedCa.certPem), Buffer.from(leaf.keyPem ?? ''), Buffer.from(leaf.certPem));
  return new EchoClient(`127.0.0.1:${port}`, credentials, CHANNEL_OPTIONS);
}

describe('mTLS with grpc-js', () => {
  it('accepts a site certificate and the handler resolves the peer to that site', async () => {
    const site = await issueCertificate({ ca, role: 'site', id: 'hlrs', federation: 'eurohpc', validityDays: 1, now: NOW });
    const client = await clientFor(ca, site);
    try {
      const first = await call(client);
      expect(first).toEqual({ ok: true, reply: 'site/hlrs' });
      const last = observed.at(-1);
      expect(last?.transportSecurityType).toBe('ssl');
      expect(last?.hasRaw).toBe(true);
      expect(last?.identity).toMatchObject({ ok: true, value: { role: 'site', id: 'hlrs', federation: 'eurohpc' } });
      // A second call on the same connection hits the identity cache.
      expect(await call(client)).toEqual({ ok: true, reply: 'site/hlrs' });
      expect(observed.at(-1)?.identity).toBe(last?.identity);
    } finally {
      client.close();
    }
  });

  it('refuses a client certificate from another CA with UNAVAILABLE before any handler runs', async () => {
    const rogueCa = await createCa({ federation: 'eurohpc', validityDays: 1, now: NOW });
    const rogue = await issueCertificate({ ca: rogueCa, role: 'site', id: 'hlrs', federation: 'eurohpc', validityDays: 1, now: NOW });
    const handled = observed.length;
    const client = await clientFor(ca, rogue);
    try {
      const result = await call(client);
      expect(result.ok).toBe(false);
      if (!result.ok) expect(result.error.code).toBe(grpc.status.UNAVAILABLE);
      expect(observed.length).toBe(handled);
    } finally {
      client.close();
    }
  });

  it('refuses a client that presents no certificate with UNAVAILABLE', async () => {
    const client = new EchoClient(`127.0.0.1:${port}`, grpc.credentials.createSsl(Buffer.from(ca.certPem)), CHANNEL_OPTIONS);
    try {
      const result = await call(client);
      expect(result.ok).toBe(false);
      if (!result.ok) expect(result.error.code).toBe(grpc.status.UNAVAILABLE);
    } finally {
      client.close();
    }
  });
});
