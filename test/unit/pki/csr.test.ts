import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { PkiError, PkiErrorCode, createCa, createCsr, identityFromCertificate, signCsr } from '../../../coordinator/pki/index.js';
import { NOW, caFor } from './fixtures.js';

async function rejection(promise: Promise<unknown>): Promise<PkiError> {
  const error: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(PkiError);
  return error as PkiError;
}

function pemToDer(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
}

function derToPem(der: Buffer, label: string): string {
  return `-----BEGIN ${label}-----\n${der.toString('base64').match(/.{1,64}/g)?.join('\n') ?? ''}\n-----END ${label}-----\n`;
}

describe('CSR flow', () => {
  it('certifies the site key without the key ever leaving the site', async () => {
    const ca = await caFor('eurohpc');
    const { csrPem, keyPem } = await createCsr({ id: 'juelich', federation: 'eurohpc', role: 'site' });
    expect(csrPem).not.toContain('PRIVATE KEY');

    const signed = await signCsr({ ca, csrPem, role: 'site', validityDays: 5, now: NOW });
    expect(Object.keys(signed)).toEqual(['certPem']);
    expect(signed.certPem).not.toContain('PRIVATE KEY');

    const cert = new X509Certificate(signed.certPem);
    expect(cert.checkIssued(new X509Certificate(ca.certPem))).toBe(true);
    expect(cert.checkPrivateKey((await import('node:crypto')).createPrivateKey(keyPem))).toBe(true);
    expect(identityFromCertificate(cert.raw)).toMatchObject({ ok: true, value: { role: 'site', id: 'juelich', federation: 'eurohpc' } });
  });

  it('rejects a CSR whose subject was altered after signing', async () => {
    const ca = await caFor('eurohpc');
    const { csrPem } = await createCsr({ id: 'site-a', federation: 'eurohpc', role: 'site' });
    const der = pemToDer(csrPem);
    const at = der.indexOf(Buffer.from('site-a'));
    expect(at).toBeGreaterThan(0);
    der.write('site-b', at);
    const error = await rejection(signCsr({ ca, csrPem: derToPem(der, 'CERTIFICATE REQUEST'), role: 'site', validityDays: 1, now: NOW }));
    expect(error.code).toBe(PkiErrorCode.InvalidCsr);
  });

  it('rejects garbage instead of a CSR', async () => {
    const ca = await caFor('eurohpc');
    const error = await rejection(signCsr({ ca, csrPem: 'not a csr', role: 'site', validityDays: 1, now: NOW }));
    expect(error.code).toBe(PkiErrorCode.InvalidCsr);
  });

  it('rejects a CSR asking for a different role than the signer grants', async () => {
    const ca = await caFor('eurohpc');
    const { csrPem } = await createCsr({ id: 'mallory', federation: 'eurohpc', role: 'admin' });
    const error = await rejection(signCsr({ ca, csrPem, role: 'site', validityDays: 1, now: NOW }));
    expect(error.code).toBe(PkiErrorCode.InvalidCsr);
    expect(error.message).toContain('"admin"');
  });

  it('rejects a CSR for another federation', async () => {
    const ca = await caFor('eurohpc');
    const { csrPem } = await createCsr({ id: 'site-a', federation: 'otherfed', role: 'site' });
    const error = await rejection(signCsr({ ca, csrPem, role: 'site', validityDays: 1, now: NOW }));
    expect(error.code).toBe(PkiErrorCode.InvalidCsr);
    expect(error.message).toContain('"otherfed"');
  });

  it('rejects a CSR whose CN is not a valid id, naming it', async () => {
    const x509 = await import('@peculiar/x509');
    const { webcrypto } = await import('node:crypto');
    const keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as CryptoKeyPair;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=Evil Site, OU=site, O=eurohpc',
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    });
    const ca = await caFor('eurohpc');
    const error = await rejection(signCsr({ ca, csrPem: csr.toString('pem'), role: 'site', validityDays: 1, now: NOW }));
    expect(error.code).toBe(PkiErrorCode.InvalidId);
    expect(error.message).toContain('"Evil Site"');
  });

  it('rejects a bad id when creating a CSR', async () => {
    const error = await rejection(createCsr({ id: 'UPPER', federation: 'eurohpc', role: 'site' }));
    expect(error.code).toBe(PkiErrorCode.InvalidId);
    expect(error.message).toContain('"UPPER"');
  });

  it('a certificate signed by another CA does not chain to ours', async () => {
    const ours = new X509Certificate((await caFor('eurohpc')).certPem);
    const rogueCa = await createCa({ federation: 'eurohpc', validityDays: 1, now: NOW });
    const { csrPem } = await createCsr({ id: 'site-a', federation: 'eurohpc', role: 'site' });
    const rogue = new X509Certificate((await signCsr({ ca: rogueCa, csrPem, role: 'site', validityDays: 1, now: NOW })).certPem);
    expect(rogue.verify(ours.publicKey)).toBe(false);
  });
});
