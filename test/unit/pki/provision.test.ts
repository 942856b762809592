import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PkiError, PkiErrorCode, identityFromCertificate, provisionFederation } from '../../../coordinator/pki/index.js';

let outDir: string;
beforeEach(async () => {
  outDir = await mkdtemp(join(tmpdir(), 'fedhpc-pki-'));
});
afterEach(async () => {
  await rm(outDir, { recursive: true, force: true });
});

async function rejection(promise: Promise<unknown>): Promise<PkiError> {
  const error: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(PkiError);
  return error as PkiError;
}

describe('provisionFederation', () => {
  it('writes the CA, coordinator, sites and admins with keys at mode 0600', async () => {
    const manifest = await provisionFederation({ federation: 'eurohpc', sites: ['hlrs', 'cineca'], admins: ['alice'], outDir });
    expect(manifest.ca).toEqual({ certPath: join(outDir, 'ca/ca.crt'), keyPath: join(outDir, 'ca/ca.key') });
    expect(manifest.coordinator).toEqual({
      id: 'coordinator',
      role: 'coordinator',
      certPath: join(outDir, 'coordinator/coordinator.crt'),
      keyPath: join(outDir, 'coordinator/coordinator.key'),
      caPath: join(outDir, 'coordinator/ca.crt'),
    });
    expect(manifest.sites.map((s) => s.certPath)).toEqual([join(outDir, 'sites/hlrs/site.crt'), join(outDir, 'sites/cineca/site.crt')]);
    expect(manifest.admins[0]?.keyPath).toBe(join(outDir, 'admins/alice/admin.key'));

    const caCert = new X509Certificate(await readFile(manifest.ca.certPath));
    const members = [manifest.coordinator, ...manifest.sites, ...manifest.admins];
    for (const member of members) {
      const cert = new X509Certificate(await readFile(member.certPath));
      expect(cert.checkIssued(caCert)).toBe(true);
      expect(await readFile(member.caPath, 'utf8')).toBe(await readFile(manifest.ca.certPath, 'utf8'));
      expect((await stat(member.keyPath)).mode & 0o777).toBe(0o600);
      expect(identityFromCertificate(cert.raw)).toMatchObject({ ok: true, value: { role: member.role, id: member.id, federation: 'eurohpc' } });
    }
    expect((await stat(manifest.ca.keyPath)).mode & 0o777).toBe(0o600);
  });

  it('puts the given coordinator hosts in its SAN, splitting DNS names from IPs', async () => {
    const manifest = await provisionFederation({
      federation: 'eurohpc', sites: [], admins: [], outDir, coordinatorHosts: ['coord.example.eu', '10.1.2.3', 'fd00::1'],
    });
    const cert = new X509Certificate(await readFile(manifest.coordinator.certPath));
    expect(cert.subjectAltName).toBe('DNS:coord.example.eu, IP Address:10.1.2.3, IP Address:FD00:0:0:0:0:0:0:1');
  });

  it('refuses to overwrite an existing CA unless forced', async () => {
    await provisionFederation({ federation: 'eurohpc', sites: ['a'], admins: [], outDir });
    const before = await readFile(join(outDir, 'ca/ca.key'), 'utf8');
    const error = await rejection(provisionFederation({ federation: 'eurohpc', sites: ['a'], admins: [], outDir }));
    expect(error.code).toBe(PkiErrorCode.OutputExists);
    expect(await readFile(join(outDir, 'ca/ca.key'), 'utf8')).toBe(before);

    await provisionFederation({ federation: 'eurohpc', sites: ['a'], admins: [], outDir, force: true });
    expect(await readFile(join(outDir, 'ca/ca.key'), 'utf8')).not.toBe(before);
  });

  it('keeps key mode 0600 when forced over a key file with looser permissions', async () => {
    await mkdir(join(outDir, 'sites/a'), { recursive: true });
    await writeFile(join(outDir, 'sites/a/site.key'), 'old', { mode: 0o644 });
    const manifest = await provisionFederation({ federation: 'eurohpc', sites: ['a'], admins: [], outDir, force: true });
    expect((await stat(manifest.sites[0]?.keyPath ?? '')).mode & 0o777).toBe(0o600);
  });

  it('rejects duplicate site ids before writing anything', async () => {
    const error = await rejection(provisionFederation({ federation: 'eurohpc', sites: ['a', 'b', 'a'], admins: [], outDir }));
    expect(error.code).toBe(PkiErrorCode.DuplicateId);
    expect(error.message).toContain('"a"');
    await expect(stat(join(outDir, 'ca'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('rejects a bad site id, naming it', async () => {
    const error = await rejection(provisionFederation({ federation: 'eurohpc', sites: ['ok', 'Bad_Site'], admins: [], outDir }));
    expect(error.code).toBe(PkiErrorCode.InvalidId);
    expect(error.message).toContain('"Bad_Site"');
  });

  it('stops when aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    const error = await rejection(provisionFederation({ federation: 'eurohpc', sites: ['a'], admins: [], outDir, signal: controller.signal }));
    expect(error.code).toBe(PkiErrorCode.Aborted);
  });
});
