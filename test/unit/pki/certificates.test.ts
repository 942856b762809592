import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  PkiError,
  PkiErrorCode,
  createCa,
  identityFromCertificate,
  issueCertificate,
  type Role,
} from '../../../coordinator/pki/index.js';
import { NOW, caFor } from './fixtures.js';

async function expectPkiError(promise: Promise<unknown>, code: PkiErrorCode, messagePart?: string): Promise<void> {
  const error: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(PkiError);
  expect((error as PkiError).code).toBe(code);
  if (messagePart !== undefined) expect((error as PkiError).message).toContain(messagePart);
}

describe('createCa', () => {
  it('makes a self-signed P-256 CA with critical CA basicConstraints and the federation subject', async () => {
    const ca = await caFor('eurohpc');
    const cert = new X509Certificate(ca.certPem);
    expect(cert.ca).toBe(true);
    expect(cert.subject).toBe('CN=fedhpc eurohpc CA\nO=eurohpc');
    expect(cert.checkIssued(cert)).toBe(true);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(ca.keyPem).toContain('-----BEGIN PRIVATE KEY-----');
    const text = cert.toLegacyObject();
    expect(text.serialNumber).toMatch(/^[0-9A-F]{32}$/);
  });

  it('rejects a federation name that is not a valid id', async () => {
    await expectPkiError(createCa({ federation: 'Euro HPC', validityDays: 1, now: NOW }), PkiErrorCode.InvalidFederation, '"Euro HPC"');
  });

  it('rejects a non-positive validity', async () => {
    await expectPkiError(createCa({ federation: 'eurohpc', validityDays: 0, now: NOW }), PkiErrorCode.InvalidOptions);
  });
});

describe('issueCertificate', () => {
  it.each<Role>(['site', 'admin', 'coordinator'])('issues a %s certificate that chains to the CA and round-trips its identity', async (role) => {
    const ca = await caFor('eurohpc');
    const issued = await issueCertificate({ ca, role, id: 'hlrs-stuttgart', federation: 'eurohpc', validityDays: 10, now: NOW });
    const leaf = new X509Certificate(issued.certPem);
    const caCert = new X509Certificate(ca.certPem);
    expect(leaf.checkIssued(caCert)).toBe(true);
    expect(leaf.verify(caCert.publicKey)).toBe(true);
    expect(leaf.ca).toBe(false);
    expect(leaf.subject).toBe(`CN=hlrs-stuttgart\nOU=${role}\nO=eurohpc`);
    expect(issued.keyPem).toContain('-----BEGIN PRIVATE KEY-----');

    const identity = identityFromCertificate(leaf.raw);
    expect(identity).toEqual({
      ok: true,
      value: { role, id: 'hlrs-stuttgart', federation: 'eurohpc', fingerprint256: leaf.fingerprint256 },
    });
    expect(identityFromCertificate(issued.certPem)).toEqual(identity);
  });

  it('puts serverAuth and the given hosts in a coordinator certificate, defaulting to localhost', async () => {
    const ca = await caFor('eurohpc');
    const byDefault = new X509Certificate(
      (await issueCertificate({ ca, role: 'coordinator', id: 'coordinator', federation: 'eurohpc', validityDays: 1, now: NOW })).certPem,
    );
    expect(byDefault.subjectAltName).toBe('DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
    expect(byDefault.keyUsage).toEqual(expect.arrayContaining(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']));
    expect(byDefault.checkHost('localhost')).toBe('localhost');
    expect(byDefault.checkIP('127.0.0.1')).toBe('127.0.0.1');

    const custom = new X509Certificate(
      (
        await issueCertificate({
          ca, role: 'coordinator', id: 'coordinator', federation: 'eurohpc', validityDays: 1, now: NOW,
          dnsNames: ['coord.example.eu'], ipAddresses: ['10.0.0.7'],
        })
      ).certPem,
    );
    expect(custom.subjectAltName).toBe('DNS:coord.example.eu, IP Address:10.0.0.7');
  });

  it('gives a site certificate clientAuth only and its fedhpc:// SAN URI', async () => {
    const ca = await caFor('eurohpc');
    const cert = new X509Certificate(
      (await issueCertificate({ ca, role: 'site', id: 'cineca', federation: 'eurohpc', validityDays: 1, now: NOW })).certPem,
    );
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(cert.subjectAltName).toBe('URI:fedhpc://eurohpc/site/cineca');
  });

  it('uses a fresh random 16-byte serial per certificate', async () => {
    const ca = await caFor('eurohpc');
    const serials = await Promise.all(
      [1, 2, 3].map(async () =>
        new X509Certificate((await issueCertificate({ ca, role: 'site', id: 'a', federation: 'eurohpc', validityDays: 1, now: NOW })).certPem).serialNumber,
      ),
    );
    expect(new Set(serials).size).toBe(3);
    for (const serial of serials) expect(serial).toMatch(/^[0-9A-F]{32}$/);
  });

  it('makes a certificate from another CA fail to verify against ours', async () => {
    const ours = new X509Certificate((await caFor('eurohpc')).certPem);
    const rogueCa = await createCa({ federation: 'eurohpc', validityDays: 1, now: NOW });
    const rogue = new X509Certificate(
      (await issueCertificate({ ca: rogueCa, role: 'site', id: 'cineca', federation: 'eurohpc', validityDays: 1, now: NOW })).certPem,
    );
    expect(rogue.verify(ours.publicKey)).toBe(false);
  });

  it.each(['Site-A', 'site_a', '-site', '', 'a'.repeat(64), 'site a', '../etc', 'sité'])('rejects the id %j, naming it', async (id) => {
    const ca = await caFor('eurohpc');
    await expectPkiError(
      issueCertificate({ ca, role: 'site', id, federation: 'eurohpc', validityDays: 1, now: NOW }),
      PkiErrorCode.InvalidId,
      JSON.stringify(id),
    );
  });

  it('accepts the longest valid id (63 characters)', async () => {
    const ca = await caFor('eurohpc');
    const id = 'a'.repeat(63);
    const issued = await issueCertificate({ ca, role: 'admin', id, federation: 'eurohpc', validityDays: 1, now: NOW });
    expect(identityFromCertificate(issued.certPem)).toMatchObject({ ok: true, value: { id, role: 'admin' } });
  });

  it('refuses a CA whose key does not match its certificate', async () => {
    const ca = await caFor('eurohpc');
    const other = await createCa({ federation: 'eurohpc', validityDays: 1, now: NOW });
    await expectPkiError(
      issueCertificate({ ca: { certPem: ca.certPem, keyPem: other.keyPem }, role: 'site', id: 'a', federation: 'eurohpc', validityDays: 1, now: NOW }),
      PkiErrorCode.InvalidCa,
    );
  });

  it('refuses to issue for a federation other than the CA\'s', async () => {
    const ca = await caFor('eurohpc');
    await expectPkiError(
      issueCertificate({ ca, role: 'site', id: 'a', federation: 'otherfed', validityDays: 1, now: NOW }),
      PkiErrorCode.InvalidCa,
      '"otherfed"',
    );
  });

  it('refuses a leaf certificate as the CA', async () => {
    const ca = await caFor('eurohpc');
    const leaf = await issueCertificate({ ca, role: 'site', id: 'a', federation: 'eurohpc', validityDays: 1, now: NOW });
    await expectPkiError(
      issueCertificate({ ca: { certPem: leaf.certPem, keyPem: leaf.keyPem ?? '' }, role: 'site', id: 'b', federation: 'eurohpc', validityDays: 1, now: NOW }),
      PkiErrorCode.InvalidCa,
    );
  });

  it('refuses SAN hosts on a site certificate', async () => {
    const ca = await caFor('eurohpc');
    await expectPkiError(
      issueCertificate({ ca, role: 'site', id: 'a', federation: 'eurohpc', validityDays: 1, now: NOW, dnsNames: ['x.eu'] }),
      PkiErrorCode.InvalidOptions,
    );
  });

  it('rejects a public key that is not ECDSA P-256', async () => {
    const { generateKeyPairSync } = await import('node:crypto');
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
    const ca = await caFor('eurohpc');
    await expectPkiError(
      issueCertificate({
        ca, role: 'site', id: 'a', federation: 'eurohpc', validityDays: 1, now: NOW,
        publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      }),
      PkiErrorCode.InvalidKey,
    );
  });
});
