/**
 * Enrolment from the command line: `fedhpc site enroll|renew` on the site's side (the key is made
 * and kept there) and `fedhpc admin approve` on the admin's (the CA key is read from the admin's
 * CA folder, never from or by the coordinator).
 */
import { readFile, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { DEFAULT_VALIDITY_DAYS, enrolSite, loadCaFiles, renewalCsr, signSiteCsr, writeAtomic, type AdminClient } from '../coordinator/index.js';
import { loadSiteConfig } from '../site-agent/index.js';
import type { AdminArgs, AdminConfig } from './admin.js';
import { UsageError } from './usage-error.js';
import { formatTable } from './table.js';

const readText = (path: string, what: string): Promise<string> =>
  readFile(path, 'utf8').catch((err: unknown) => {
    throw new UsageError(`cannot read ${what} ${path}: ${(err as Error).message}`);
  });

/**
 * `fedhpc admin approve SITE --csr FILE --ca DIR`: signs the CSR, has the coordinator record the
 * approval (it checks the certificate and the site's key; journaled, event `site.approved`), then
 * writes `site.crt`, `ca.crt` and, unless one exists, a ready `site.json` beside the CSR.
 */
export async function approveCommand(client: AdminClient, cfg: AdminConfig, a: AdminArgs, print: (v: unknown, human: () => string) => number): Promise<number> {
  const site = a.target;
  if (!site) throw new UsageError('admin approve needs a site id: fedhpc admin approve SITE --csr FILE --ca DIR --config ADMIN.json');
  if (!a.csr) throw new UsageError('admin approve needs --csr FILE (the request made by fedhpc site enroll or renew)');
  if (!a.ca) throw new UsageError('admin approve needs --ca DIR (the CA folder of fedhpc provision, holding ca.crt and ca.key)');
  const csrPath = resolve(a.csr);
  const csrPem = await readText(csrPath, 'CSR');
  const ca = await loadCaFiles(resolve(a.ca));
  const certPem = await signSiteCsr({ ca, csrPem, site, validityDays: a.validityDays ?? DEFAULT_VALIDITY_DAYS, now: new Date() });
  // The coordinator's word first: a refused certificate is never written anywhere.
  const r = await client.approveSite(site, certPem);
  const outDir = resolve(a.out ?? dirname(csrPath));
  const certFile = join(outDir, 'site.crt');
  await writeAtomic(certFile, certPem, 0o644);
  await writeAtomic(join(outDir, 'ca.crt'), ca.certPem, 0o644);
  const configFile = join(outDir, 'site.json');
  const wroteConfig = !(await stat(configFile).then(() => true, () => false));
  if (wroteConfig) {
    const siteConfig = {
      site,
      // The admin's coordinators are the site's: one, or the leader and its standbys.
      ...(cfg.coordinators ? { coordinators: cfg.coordinators } : { coordinator: cfg.coordinator }),
      ...(cfg.serverName ? { serverName: cfg.serverName } : {}),
      tls: { ca: 'ca.crt', cert: 'site.crt', key: 'site.key' },
      workDir: 'work',
      runner: { kind: 'builtin', language: a.language ?? 'en' },
    };
    await writeAtomic(configFile, `${JSON.stringify(siteConfig, null, 2)}\n`, 0o600);
  }
  const result = { ...r, notAfterMs: Number(r.notAfterMs), certificate: certFile, config: wroteConfig ? configFile : undefined };
  return print(result, () =>
    formatTable(['site', 'kind', 'fingerprint', 'valid until', 'certificate', 'config'], [
      [site, r.renewal ? 'renewal' : 'enrolment', r.certificateFingerprint.slice(0, 23), new Date(Number(r.notAfterMs)).toISOString().slice(0, 10), certFile, wroteConfig ? configFile : '(kept)'],
    ]),
  );
}

/** `fedhpc site enroll --site ID --federation NAME --out DIR`: the key and CSR, made here. */
export async function enrolCommand(o: { site: string; federation: string; out: string; json: boolean }, out: (s: string) => void): Promise<number> {
  const files = await enrolSite({ site: o.site, federation: o.federation, outDir: resolve(o.out) });
  if (o.json) out(JSON.stringify(files));
  else out(`key (stays here, mode 0600): ${files.keyPath}\nCSR (send it to the federation admin): ${files.csrPath}`);
  return 0;
}

/** `fedhpc site renew --config SITE.json [--out FILE]`: a CSR for a new certificate with the same key. */
export async function renewCommand(o: { config: string; out: string | undefined; json: boolean }, out: (s: string) => void): Promise<number> {
  const cfg = loadSiteConfig(o.config);
  const csrPem = await renewalCsr({ certPem: await readText(cfg.tls.cert, 'site certificate'), keyPem: await readText(cfg.tls.key, 'site key') });
  const csrPath = resolve(o.out ?? join(dirname(cfg.tls.cert), 'site-renew.csr'));
  await writeAtomic(csrPath, csrPem, 0o644);
  if (o.json) out(JSON.stringify({ site: cfg.site, csrPath }));
  else out(`renewal CSR for ${cfg.site} (same key; send it to the federation admin): ${csrPath}`);
  return 0;
}
