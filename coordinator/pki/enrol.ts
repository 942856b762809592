/**
 * Enrolment and renewal on disk, for `fedhpc site enroll|renew` and `fedhpc admin approve`. The
 * site makes its key and CSR locally (the key never leaves the site); the admin signs the CSR
 * with the CA key held by the admin's tooling (never by the coordinator); a renewal CSR is signed
 * by the site's current key, so the new certificate keeps that key.
 *
 * ```
 * fedhpc site enroll  → DIR/site.key (0600), DIR/site.csr
 * fedhpc admin approve SITE --csr DIR/site.csr --ca CA_DIR → DIR/site.crt, DIR/ca.crt, DIR/site.json
 * fedhpc site renew   → <cert dir>/site-renew.csr (same key)
 * ```
 */
import { createPrivateKey, createPublicKey, webcrypto } from 'node:crypto';
import { readFile, rename, writeFile, chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { pathExists } from '../../common/files.js';
import { signCsr, createCsr } from './csr.js';
import { PkiError, PkiErrorCode } from './errors.js';
import { EC_KEY_ALGORITHM, EC_SIGNING_ALGORITHM, assertValidFederation, assertValidId } from './names.js';

/** Files written by {@link enrolSite}. */
export interface EnrolFiles {
  readonly keyPath: string;
  readonly csrPath: string;
}

/** Writes `content` to `path` through a temp file and a rename, so a reader never sees half of it. */
export async function writeAtomic(path: string, content: string, mode: number): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, content, { mode });
  await chmod(tmp, mode);
  await rename(tmp, path);
}

/**
 * Makes the site's key and CSR in `outDir`. Refuses to replace an existing key: losing it would
 * orphan the site's certificate.
 *
 * @throws {PkiError} `PKI_OUTPUT_EXISTS`, `PKI_INVALID_ID`, `PKI_INVALID_FEDERATION`.
 */
export async function enrolSite(o: { site: string; federation: string; outDir: string }): Promise<EnrolFiles> {
  assertValidId(o.site, 'site');
  assertValidFederation(o.federation);
  const files = { keyPath: join(o.outDir, 'site.key'), csrPath: join(o.outDir, 'site.csr') };
  if (await pathExists(files.keyPath)) {
    throw new PkiError(PkiErrorCode.OutputExists, `${files.keyPath} already exists; enrol into an empty folder (a renewal uses fedhpc site renew)`, { path: files.keyPath });
  }
  const { csrPem, keyPem } = await createCsr({ id: o.site, federation: o.federation, role: 'site' });
  await mkdir(o.outDir, { recursive: true, mode: 0o700 });
  await writeAtomic(files.keyPath, keyPem, 0o600);
  await writeAtomic(files.csrPath, csrPem, 0o644);
  return files;
}

/**
 * A renewal CSR: the subject of the current certificate, signed by the site's current key.
 *
 * @throws {PkiError} `PKI_INVALID_KEY` when the key does not match the certificate.
 */
export async function renewalCsr(o: { certPem: string; keyPem: string }): Promise<string> {
  const cert = new x509.X509Certificate(o.certPem);
  let privateKeyObject;
  try {
    privateKeyObject = createPrivateKey(o.keyPem);
  } catch (cause) {
    throw new PkiError(PkiErrorCode.InvalidKey, 'site key is not a readable PEM private key', {}, { cause });
  }
  const spki = createPublicKey(privateKeyObject).export({ type: 'spki', format: 'der' });
  if (!Buffer.from(cert.publicKey.rawData).equals(spki)) throw new PkiError(PkiErrorCode.InvalidKey, 'site key does not match the site certificate');
  const pkcs8 = privateKeyObject.export({ type: 'pkcs8', format: 'der' });
  const keys = {
    privateKey: (await webcrypto.subtle.importKey('pkcs8', pkcs8, EC_KEY_ALGORITHM, false, ['sign'])) as CryptoKey,
    publicKey: (await webcrypto.subtle.importKey('spki', spki, EC_KEY_ALGORITHM, true, ['verify'])) as CryptoKey,
  };
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: cert.subjectName.toString(), keys, signingAlgorithm: EC_SIGNING_ALGORITHM });
  return csr.toString('pem');
}

/** The CA files of the admin's tooling: `caDir/ca.crt` and `caDir/ca.key`. */
export async function loadCaFiles(caDir: string): Promise<{ certPem: string; keyPem: string }> {
  const certPath = join(caDir, 'ca.crt');
  const keyPath = join(caDir, 'ca.key');
  const read = (path: string, what: string) =>
    readFile(path, 'utf8').catch((cause: unknown) => {
      throw new PkiError(PkiErrorCode.CaKeyMissing, `approve needs the ${what} at ${path} (the CA folder written by fedhpc provision; the coordinator never holds the CA key): ${(cause as Error).message}`, { path }, { cause });
    });
  return { certPem: await read(certPath, 'CA certificate'), keyPem: await read(keyPath, 'CA key') };
}

/**
 * Signs a site's CSR with the CA, after checking that it asks for `site`.
 *
 * @throws {PkiError} `PKI_INVALID_CSR` (another site, a bad signature), `PKI_INVALID_CA`.
 */
export async function signSiteCsr(o: { ca: { certPem: string; keyPem: string }; csrPem: string; site: string; validityDays: number; now: Date }): Promise<string> {
  let cn: string | undefined;
  try {
    cn = new x509.Pkcs10CertificateRequest(o.csrPem).subjectName.getField('CN')[0];
  } catch (cause) {
    throw new PkiError(PkiErrorCode.InvalidCsr, 'CSR is not a readable PEM PKCS#10 request', {}, { cause });
  }
  if (cn !== o.site) throw new PkiError(PkiErrorCode.InvalidCsr, `CSR asks for site ${JSON.stringify(cn)}, not ${JSON.stringify(o.site)}`, { id: o.site });
  const { certPem } = await signCsr({ ca: o.ca, csrPem: o.csrPem, role: 'site', validityDays: o.validityDays, now: o.now });
  return certPem;
}
