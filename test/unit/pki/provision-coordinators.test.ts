/**
 * `provisionFederation` with several coordinators (issue 19): a key and certificate each under
 * coordinators/<name>/, subject CN the name, SAN its own hosts; names are checked like every id;
 * `coordinators` and `coordinatorHosts` exclude each other.
 */
import { X509Certificate } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PkiError, PkiErrorCode, identityFromCertificate, provisionFederation } from '../../../coordinator/pki/index.js';
import { tempDirEachTest } from '../../helpers/temp-dir.js';

const outDir = tempDirEachTest('fedhpc-pki-');

describe('provisionFederation with several coordinators', () => {
  it('issues one certificate per coordinator, each naming its own hosts, and no coordinator/ folder', async () => {
    const manifest = await provisionFederation({
      federation: 'hafed', sites: ['bsc'], admins: ['alice'], outDir: outDir(),
      coordinators: [{ name: 'coord-a', hosts: ['a.example.org'] }, { name: 'coord-b', hosts: ['b.example.org', '10.0.0.6'] }],
    });
    expect(manifest.coordinators.map((c) => [c.id, c.certPath])).toEqual([
      ['coord-a', join(outDir(), 'coordinators/coord-a/coordinator.crt')],
      ['coord-b', join(outDir(), 'coordinators/coord-b/coordinator.crt')],
    ]);
    expect(manifest.coordinator).toBe(manifest.coordinators[0]);
    const a = new X509Certificate(await readFile(manifest.coordinators[0]!.certPath));
    const b = new X509Certificate(await readFile(manifest.coordinators[1]!.certPath));
    expect(a.subjectAltName).toBe('DNS:a.example.org');
    expect(b.subjectAltName).toBe('DNS:b.example.org, IP Address:10.0.0.6');
    expect(identityFromCertificate(await readFile(manifest.coordinators[1]!.certPath, 'utf8'))).toMatchObject({ ok: true, value: { role: 'coordinator', id: 'coord-b', federation: 'hafed' } });
    expect(((await stat(manifest.coordinators[1]!.keyPath)).mode & 0o777).toString(8)).toBe('600');
    await expect(stat(join(outDir(), 'coordinator'))).rejects.toThrow();
  });

  it('refuses duplicate or invalid names, an empty list, and coordinatorHosts beside coordinators', async () => {
    const refused = async (o: Partial<Parameters<typeof provisionFederation>[0]>): Promise<string> => {
      const err: unknown = await provisionFederation({ federation: 'hafed', sites: ['bsc'], admins: ['alice'], outDir: outDir(), ...o }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(PkiError);
      return (err as PkiError).code;
    };
    expect(await refused({ coordinators: [{ name: 'c', hosts: ['a'] }, { name: 'c', hosts: ['b'] }] })).toBe(PkiErrorCode.DuplicateId);
    expect(await refused({ coordinators: [{ name: 'C_1', hosts: ['a'] }] })).toBe(PkiErrorCode.InvalidId);
    expect(await refused({ coordinators: [] })).toBe(PkiErrorCode.InvalidOptions);
    expect(await refused({ coordinators: [{ name: 'c', hosts: ['a'] }], coordinatorHosts: ['a'] })).toBe(PkiErrorCode.InvalidOptions);
  });
});
