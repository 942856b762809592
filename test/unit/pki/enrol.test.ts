import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PkiError, PkiErrorCode, createCsr, enrolSite, loadCaFiles, renewalCsr, signSiteCsr } from '../../../coordinator/pki/index.js';
import { NOW, caFor } from './fixtures.js';

async function rejection(promise: Promise<unknown>): Promise<PkiError> {
  const error: unknown = await promise.then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(PkiError);
  return error as PkiError;
}

describe('enrolment files', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fedhpc-enrol-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes the site key with mode 0600 beside its CSR, and never replaces a key', async () => {
    const files = await enrolSite({ site: 'cineca', federation: 'eurohpc', outDir: dir });
    expect((await stat(files.keyPath)).mode & 0o777).toBe(0o600);
    expect(await readFile(files.csrPath, 'utf8')).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----/);
    const again = await rejection(enrolSite({ site: 'cineca', federation: 'eurohpc', outDir: dir }));
    expect(again.code).toBe(PkiErrorCode.OutputExists);
  });

  it('signs a CSR for the named site only', async () => {
    const ca = await caFor('eurohpc');
    const { csrPem, keyPem } = await createCsr({ id: 'cineca', federation: 'eurohpc', role: 'site' });
    const certPem = await signSiteCsr({ ca, csrPem, site: 'cineca', validityDays: 30, now: NOW });
    expect(new X509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem))).toBe(true);
    const other = await rejection(signSiteCsr({ ca, csrPem, site: 'bsc', validityDays: 30, now: NOW }));
    expect(other.code).toBe(PkiErrorCode.InvalidCsr);
    expect(other.message).toBe('CSR asks for site "cineca", not "bsc"');
  });

  it('makes a renewal CSR with the site key, which certifies the same key again', async () => {
    const ca = await caFor('eurohpc');
    const { csrPem, keyPem } = await createCsr({ id: 'cineca', federation: 'eurohpc', role: 'site' });
    const first = await signSiteCsr({ ca, csrPem, site: 'cineca', validityDays: 30, now: NOW });
    const renewal = await renewalCsr({ certPem: first, keyPem });
    const second = await signSiteCsr({ ca, csrPem: renewal, site: 'cineca', validityDays: 30, now: new Date(NOW.getTime() + 86_400_000) });
    const [a, b] = [new X509Certificate(first), new X509Certificate(second)];
    expect(b.fingerprint256).not.toBe(a.fingerprint256);
    expect(b.publicKey.export({ type: 'spki', format: 'der' }).equals(a.publicKey.export({ type: 'spki', format: 'der' }))).toBe(true);
    expect(b.subject).toBe(a.subject);
  });

  it('refuses a renewal whose key does not match the certificate', async () => {
    const ca = await caFor('eurohpc');
    const site = await createCsr({ id: 'cineca', federation: 'eurohpc', role: 'site' });
    const other = await createCsr({ id: 'cineca', federation: 'eurohpc', role: 'site' });
    const certPem = await signSiteCsr({ ca, csrPem: site.csrPem, site: 'cineca', validityDays: 30, now: NOW });
    const err = await rejection(renewalCsr({ certPem, keyPem: other.keyPem }));
    expect(err.code).toBe(PkiErrorCode.InvalidKey);
  });

  it('says where the CA key was looked for when it is missing', async () => {
    const ca = await caFor('eurohpc');
    await writeFile(join(dir, 'ca.crt'), ca.certPem);
    const err = await rejection(loadCaFiles(dir));
    expect(err.code).toBe(PkiErrorCode.CaKeyMissing);
    expect(err.message).toContain(join(dir, 'ca.key'));
  });
});
