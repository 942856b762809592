/**
 * The coordinator's own TLS listener: a gRPC server behind it serves authenticated clients as if it
 * had accepted them itself (auth context, peer certificate), and every refused handshake — another
 * CA's certificate, an expired one, none at all — is reported with its cause and, when the peer sent
 * a certificate, its fingerprint. Real sockets on loopback.
 */
import * as grpc from '@grpc/grpc-js';
import { X509Certificate } from 'node:crypto';
import { connect } from 'node:net';
import * as tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_FLOW_CONTROL_WINDOW_BYTES, FLOW_CONTROL_WINDOW_OPTION, createGrpcServer } from '../../../common/grpc-window.js';
import type { Refusal } from '../../../coordinator/observe/refusals.js';
import { type CertificateAndKey, createCa, issueCertificate } from '../../../coordinator/pki/index.js';
import { listenTls, type TlsListener } from '../../../coordinator/service/tls-listener.js';
import { waitFor } from '../../helpers/wait.js';
import { NOW } from '../pki/fixtures.js';
import { CHANNEL_OPTIONS, EchoClient, echoService } from '../../helpers/echo-service.js';


let ca: CertificateAndKey;
let server: grpc.Server;
let listener: TlsListener;
const refusals: Refusal[] = [];

beforeAll(async () => {
  ca = await createCa({ federation: 'eurohpc', validityDays: 1, now: NOW });
  const coordinator = await issueCertificate({ ca, role: 'coordinator', id: 'coordinator', federation: 'eurohpc', validityDays: 1, now: NOW });
  server = createGrpcServer({ [FLOW_CONTROL_WINDOW_OPTION]: DEFAULT_FLOW_CONTROL_WINDOW_BYTES });
  server.addService(echoService, {
    whoAmI: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      const raw = call.getAuthContext().sslPeerCertificate?.raw;
      callback(null, Buffer.from(raw ? `${new X509Certificate(raw).subject.replace(/\n/g, ',')} from ${call.getPeer()}` : 'anonymous'));
    },
  });
  listener = await listenTls({
    listen: '127.0.0.1:0',
    tls: { ca: Buffer.from(ca.certPem), cert: Buffer.from(coordinator.certPem), key: Buffer.from(coordinator.keyPem ?? '') },
    server,
    refusals: { refused: (r) => refusals.push(r) },
  });
});

afterAll(async () => {
  listener?.stopAccepting();
  await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
  await listener?.close();
});

function call(client: grpc.Client): Promise<{ ok: true; reply: string } | { ok: false; error: grpc.ServiceError }> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(echoService.whoAmI.path, (v: Buffer) => v, (v: Buffer) => v, Buffer.alloc(0), { deadline: Date.now() + 5_000 }, (error: grpc.ServiceError | null, reply?: Buffer) =>
      resolve(error ? { ok: false, error } : { ok: true, reply: reply?.toString() ?? '' }),
    );
  });
}

function clientFor(leaf?: { certPem: string; keyPem?: string }): grpc.Client {
  const credentials = leaf
    ? grpc.credentials.createSsl(Buffer.from(ca.certPem), Buffer.from(leaf.keyPem ?? ''), Buffer.from(leaf.certPem))
    : grpc.credentials.createSsl(Buffer.from(ca.certPem));
  return new EchoClient(`127.0.0.1:${listener.port}`, credentials, CHANNEL_OPTIONS);
}

/**
 * A member's raw TLS connection: offering `session` back, closed once connected, or else closed
 * once the server sent a session to offer back later.
 */
async function memberTls(leaf: { cert: string; key: string }, session?: Buffer): Promise<{ session: Buffer | undefined; reused: boolean }> {
  let kept: Buffer | undefined;
  const socket = tls.connect({ host: '127.0.0.1', port: listener.port, ca: ca.certPem, ...leaf, servername: 'localhost', ALPNProtocols: ['h2'], ...(session ? { session } : {}) });
  socket.on('session', (s: Buffer) => (kept = s));
  socket.on('error', () => undefined);
  await new Promise((resolve) => socket.once('secureConnect', resolve));
  const reused = socket.isSessionReused();
  if (!session) await waitFor('a session from the server', () => kept, 5_000, 10);
  socket.destroy();
  return { session: kept, reused };
}

/** Calls once as `leaf` and expects the call refused (UNAVAILABLE) and one refusal reported. */
async function refusedAs(leaf?: { certPem: string; keyPem?: string }): Promise<Refusal> {
  const before = refusals.length;
  const client = clientFor(leaf);
  try {
    const result = await call(client);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error.code).toBe(grpc.status.UNAVAILABLE);
  } finally {
    client.close();
  }
  return waitFor('the refusal reported', () => refusals[before]);
}

describe('the coordinator TLS listener', () => {
  it('hands an authenticated client to the gRPC server, which sees its certificate and address', async () => {
    const site = await issueCertificate({ ca, role: 'site', id: 'hlrs', federation: 'eurohpc', validityDays: 1, now: NOW });
    const client = clientFor(site);
    try {
      const result = await call(client);
      expect(result).toMatchObject({ ok: true });
      if (result.ok) expect(result.reply).toMatch(/CN=hlrs.* from 127\.0\.0\.1:\d+$/);
      expect(refusals).toEqual([]);
    } finally {
      client.close();
    }
  });

  it("reports another CA's certificate as a refused handshake, with OpenSSL's cause and the certificate's fingerprint", async () => {
    const rogueCa = await createCa({ federation: 'eurohpc', validityDays: 1, now: NOW });
    const rogue = await issueCertificate({ ca: rogueCa, role: 'site', id: 'hlrs', federation: 'eurohpc', validityDays: 1, now: NOW });
    const r = await refusedAs(rogue);
    expect(r).toMatchObject({ reason: 'tls_handshake', fingerprint: new X509Certificate(rogue.certPem).fingerprint256 });
    expect(r.cause).toMatch(/^(UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY|UNABLE_TO_GET_ISSUER_CERT)$/);
    expect(r.peer).toMatch(/^127\.0\.0\.1:\d+$/);
  });

  it('reports an expired certificate with its cause', async () => {
    const expired = await issueCertificate({ ca, role: 'site', id: 'hlrs', federation: 'eurohpc', validityDays: 1, now: new Date(NOW.getTime() - 3 * 86_400_000) });
    const r = await refusedAs(expired);
    expect(r).toMatchObject({ reason: 'tls_handshake', cause: 'CERT_HAS_EXPIRED', fingerprint: new X509Certificate(expired.certPem).fingerprint256 });
  });

  it('reports a client without a certificate, with no fingerprint', async () => {
    const r = await refusedAs();
    expect(r.reason).toBe('tls_handshake');
    expect(r.fingerprint).toBeUndefined();
    expect(r.cause).toBe('UNABLE_TO_GET_ISSUER_CERT');
  });

  it('resumes no TLS session, so that no peer skips the certificate check by resuming one', async () => {
    // Node counts a resumed TLS 1.3 session without a certificate as verified; the listener verifies
    // outside OpenSSL, so it must never resume. A member's session offered back is not resumed.
    const site = await issueCertificate({ ca, role: 'site', id: 'hlrs', federation: 'eurohpc', validityDays: 1, now: NOW });
    const leaf = { cert: site.certPem, key: site.keyPem ?? '' };
    const first = await memberTls(leaf);
    expect(first.reused).toBe(false);
    expect(first.session, 'the client kept a session to offer back').toBeDefined();
    const again = await memberTls(leaf, first.session);
    expect(again.reused).toBe(false);
  });

  it('keeps the certificate a member presented for the whole connection: every call sees it, and TLS 1.2 renegotiation is refused', async () => {
    const site = await issueCertificate({ ca, role: 'site', id: 'hlrs', federation: 'eurohpc', validityDays: 1, now: NOW });
    const client = clientFor(site);
    try {
      const replies = await Promise.all([call(client), call(client), call(client)]);
      expect(replies.map((r) => (r.ok ? r.reply.replace(/ from .*/, '') : r.error.message))).toEqual(Array(3).fill(expect.stringMatching(/CN=hlrs/)));
    } finally {
      client.close();
    }
    // A member on TLS 1.2 that asks to renegotiate (it could present another certificate) is cut off.
    const socket = tls.connect({ host: '127.0.0.1', port: listener.port, ca: ca.certPem, cert: site.certPem, key: site.keyPem ?? '', servername: 'localhost', ALPNProtocols: ['h2'], maxVersion: 'TLSv1.2' });
    socket.on('error', () => undefined);
    await new Promise((resolve) => socket.once('secureConnect', resolve));
    expect(socket.getProtocol()).toBe('TLSv1.2');
    const closed = new Promise((resolve) => socket.once('close', resolve));
    // Reading, so that the client sees the server close the connection.
    socket.resume();
    socket.renegotiate({ rejectUnauthorized: true }, () => undefined);
    await closed;
    expect(socket.destroyed).toBe(true);
  });

  it('reports a peer that connects and leaves without a handshake, and one that speaks no TLS', async () => {
    // The earlier tests' clients, closed, may still be reported: wait until they all are.
    let seen = -1;
    await waitFor('earlier refusals reported', () => (refusals.length === seen ? true : ((seen = refusals.length), undefined)), 5_000, 200);
    const probe = connect(listener.port, '127.0.0.1');
    await new Promise((resolve) => probe.once('connect', resolve));
    probe.destroy();
    const left = await waitFor('the probe reported', () => refusals[seen]);
    expect(left).toMatchObject({ reason: 'tls_handshake', cause: 'ECONNRESET' });
    expect(left.fingerprint).toBeUndefined();
    const socket = connect(listener.port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    const peer = `127.0.0.1:${socket.localPort}`;
    socket.end('not TLS\r\n\r\n');
    const r = await waitFor('the refusal reported', () => refusals.find((x) => x.peer === peer));
    expect(r).toMatchObject({ reason: 'tls_handshake', cause: 'ERR_SSL_WRONG_VERSION_NUMBER' });
    expect(r.fingerprint).toBeUndefined();
    socket.destroy();
  });
});
