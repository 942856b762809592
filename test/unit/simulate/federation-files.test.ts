import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeFederationFiles } from '../../../simulate/federation-files.js';

describe('provisioned federation files', () => {
  it('name the host sites dial in the coordinator certificate, so no serverName override is written', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fedhpc-fedfiles-'));
    const files = await writeFederationFiles({
      dir,
      federation: 'eurofed',
      sites: ['bsc'],
      admins: ['alice'],
      coordinatorAddress: 'fl.example.eu:7443',
      listen: '0.0.0.0:7443',
      run: { id: 'run-1', rounds: 1, minSites: 1 },
    });
    const cert = new X509Certificate(await readFile(join(dir, 'coordinator', 'coordinator.crt')));
    expect(cert.subjectAltName).toContain('DNS:fl.example.eu');
    expect(cert.subjectAltName).toContain('DNS:localhost');
    const site = JSON.parse(await readFile(files.siteConfigs.get('bsc')!, 'utf8')) as Record<string, unknown>;
    const admin = JSON.parse(await readFile(files.adminConfigs.get('alice')!, 'utf8')) as Record<string, unknown>;
    expect(site['coordinator']).toBe('fl.example.eu:7443');
    expect(site['serverName']).toBeUndefined();
    expect(admin['serverName']).toBeUndefined();
  });
});
