import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  IdentityIssueCode,
  createCa,
  createIdentityResolver,
  identityFromAuthContext,
  identityFromCertificate,
  issueCertificate,
} from '../../../coordinator/pki/index.js';
import { NOW, caFor } from './fixtures.js';

async function siteCert(id: string, federation = 'eurohpc'): Promise<Buffer> {
  const ca = await caFor(federation);
  return new X509Certificate((await issueCertificate({ ca, role: 'site', id, federation, validityDays: 1, now: NOW })).certPem).raw;
}

describe('identityFromCertificate', () => {
  it('returns a not-a-certificate issue for garbage, never throwing', () => {
    expect(identityFromCertificate(Buffer.from('nonsense'))).toMatchObject({ ok: false, issues: [{ code: IdentityIssueCode.NotACertificate }] });
    expect(identityFromCertificate('no pem here')).toMatchObject({ ok: false, issues: [{ code: IdentityIssueCode.NotACertificate }] });
  });

  it('refuses a CA certificate, which has no role', async () => {
    const ca = await caFor('eurohpc');
    expect(identityFromCertificate(ca.certPem)).toMatchObject({ ok: false, issues: [{ code: IdentityIssueCode.MissingField }] });
  });
});

describe('identityFromAuthContext', () => {
  it('reads the identity from the raw peer certificate of a TLS auth context', async () => {
    const raw = await siteCert('site-a');
    expect(identityFromAuthContext({ transportSecurityType: 'ssl', sslPeerCertificate: { raw } })).toMatchObject({
      ok: true,
      value: { role: 'site', id: 'site-a' },
    });
  });

  it('reports no-peer-certificate for the empty context grpc-js gives an unauthorized or plaintext call', () => {
    expect(identityFromAuthContext({})).toMatchObject({ ok: false, issues: [{ code: IdentityIssueCode.NoPeerCertificate }] });
    expect(identityFromAuthContext(null)).toMatchObject({ ok: false, issues: [{ code: IdentityIssueCode.NoPeerCertificate }] });
  });
});

describe('createIdentityResolver', () => {
  it('returns the same frozen result for the same certificate without reparsing', async () => {
    const resolver = createIdentityResolver({ capacity: 4 });
    const raw = await siteCert('site-a');
    const first = resolver.resolve(raw);
    const second = resolver.resolve(Buffer.from(raw));
    expect(second).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);
    expect(resolver.size).toBe(1);
    expect(first).toEqual(identityFromCertificate(raw));
  });

  it('evicts the least recently used certificate beyond its capacity', async () => {
    const resolver = createIdentityResolver({ capacity: 2 });
    const [a, b, c] = await Promise.all([siteCert('a'), siteCert('b'), siteCert('c')]);
    // Copies each time: the bytes, not the object, are what the LRU remembers.
    const resultA = resolver.resolve(Buffer.from(a!));
    resolver.resolve(Buffer.from(b!));
    resolver.resolve(Buffer.from(a!)); // a is now most recent; b is evicted next
    resolver.resolve(Buffer.from(c!));
    expect(resolver.size).toBe(2);
    expect(resolver.resolve(Buffer.from(a!))).toBe(resultA);
    resolver.clear();
    expect(resolver.size).toBe(0);
  });

  it('answers the same bytes object again without the LRU (a connection\'s certificate), until cleared', async () => {
    const resolver = createIdentityResolver({ capacity: 1 });
    const [a, b] = await Promise.all([siteCert('a'), siteCert('b')]);
    const resultA = resolver.resolve(a);
    resolver.resolve(b); // a leaves the LRU
    expect(resolver.resolve(a)).toBe(resultA);
    expect(resolver.resolve(Buffer.from(a))).not.toBe(resultA);
    // clear() forgets both caches: nothing it answered before is answered again.
    resolver.clear();
    const again = resolver.resolve(a);
    expect(again).not.toBe(resultA);
    expect(again).toEqual(resultA);
  });

  it('refuses a certificate of another federation when pinned to one', async () => {
    const resolver = createIdentityResolver({ federation: 'eurohpc' });
    await createCa({ federation: 'otherfed', validityDays: 1, now: NOW });
    expect(resolver.resolve(await siteCert('site-a', 'otherfed'))).toMatchObject({
      ok: false,
      issues: [{ code: IdentityIssueCode.WrongFederation }],
    });
    expect(resolver.resolve(await siteCert('site-a'))).toMatchObject({ ok: true });
  });

  it('rejects a non-positive capacity', () => {
    expect(() => createIdentityResolver({ capacity: 0 })).toThrow(RangeError);
  });
});
