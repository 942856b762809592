/**
 * Certificate authority and certificate issuance for a federation (ECDSA P-256, SHA-256), built on
 * `@peculiar/x509` over Node's WebCrypto. The CA key is only ever needed here, in admin tooling; the
 * running coordinator holds its own certificate and the CA certificate, never the CA key.
 */
import { X509Certificate as NodeX509Certificate, randomBytes as nodeRandomBytes } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { PkiError, PkiErrorCode } from './errors.js';
import {
  EC_SIGNING_ALGORITHM,
  type Role,
  assertValidFederation,
  assertValidId,
  assertValidRole,
  assertValidity,
  exportPrivateKeyPem,
  generateKeyPair,
  identityUri,
  importSigningKey,
  publicKeySpki,
} from './names.js';

/** Clock skew tolerated between the issuer and the peers: certificates are valid from `now - 5 min`. */
export const NOT_BEFORE_SKEW_MS = 5 * 60 * 1000;

/** DNS names put in a coordinator certificate when none are given. */
export const DEFAULT_COORDINATOR_DNS_NAMES: readonly string[] = ['localhost'];

/** IP addresses put in a coordinator certificate when none are given. */
export const DEFAULT_COORDINATOR_IP_ADDRESSES: readonly string[] = ['127.0.0.1', '::1'];

const DAY_MS = 24 * 60 * 60 * 1000;

/** A certificate with its PEM private key. */
export interface CertificateAndKey {
  /** PEM certificate (`-----BEGIN CERTIFICATE-----`). */
  readonly certPem: string;
  /** PEM PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`). Write it with file mode 0600. */
  readonly keyPem: string;
}

/** Source of random bytes, injectable for tests; defaults to `crypto.randomBytes`. */
export type RandomBytes = (size: number) => Uint8Array;

/** Options of {@link createCa}. */
export interface CreateCaOptions {
  /** Federation name; must match `ID_PATTERN`. Becomes the subject's O. */
  readonly federation: string;
  /** Validity from `now`, in whole days. */
  readonly validityDays: number;
  /** Issuance time (the injected clock). */
  readonly now: Date;
  /** Random source for the serial number. */
  readonly randomBytes?: RandomBytes;
}

/** Options of {@link issueCertificate}. */
export interface IssueCertificateOptions {
  /** The issuing CA's certificate and key. */
  readonly ca: CertificateAndKey;
  /** Role of the subject, written to the subject's OU. */
  readonly role: Role;
  /** Subject id (CN); must match `ID_PATTERN`. */
  readonly id: string;
  /** Federation name (O); must equal the CA's O. */
  readonly federation: string;
  /** Servers (coordinator, aggregator) only: DNS names in the SAN. Defaults to {@link DEFAULT_COORDINATOR_DNS_NAMES}. */
  readonly dnsNames?: readonly string[];
  /** Servers (coordinator, aggregator) only: IP addresses in the SAN. Defaults to {@link DEFAULT_COORDINATOR_IP_ADDRESSES}. */
  readonly ipAddresses?: readonly string[];
  /** Validity from `now`, in whole days. */
  readonly validityDays: number;
  /** Issuance time (the injected clock). */
  readonly now: Date;
  /** CSR flow: certify this PEM (SPKI) P-256 public key instead of generating a key pair. */
  readonly publicKeyPem?: string;
  /** Random source for the serial number. */
  readonly randomBytes?: RandomBytes;
}

/** Result of {@link issueCertificate}: `keyPem` is present only when the key was generated here. */
export interface IssuedCertificate {
  readonly certPem: string;
  readonly keyPem?: string;
}

/** A positive, non-zero 16-byte serial in hex (RFC 5280 §4.1.2.2 allows up to 20 octets). */
function serialNumber(randomBytes: RandomBytes): string {
  const bytes = Buffer.from(randomBytes(16));
  if (bytes.length !== 16) throw new PkiError(PkiErrorCode.InvalidOptions, 'randomBytes(16) must return 16 bytes');
  // Clear the top bit so the DER INTEGER is positive; set a low bit so it is never zero.
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x01;
  return bytes.toString('hex');
}

function validityWindow(now: Date, validityDays: number): { notBefore: Date; notAfter: Date } {
  return {
    notBefore: new Date(now.getTime() - NOT_BEFORE_SKEW_MS),
    notAfter: new Date(now.getTime() + validityDays * DAY_MS),
  };
}

/**
 * Creates a self-signed federation CA: subject `CN=fedhpc <federation> CA, O=<federation>`,
 * basicConstraints CA:true (path length 0) critical, keyUsage keyCertSign|cRLSign critical.
 *
 * @throws {PkiError} `PKI_INVALID_FEDERATION` or `PKI_INVALID_OPTIONS` for bad options.
 */
export async function createCa(options: CreateCaOptions): Promise<CertificateAndKey> {
  assertValidFederation(options.federation);
  assertValidity(options.validityDays, options.now);
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(options.randomBytes ?? nodeRandomBytes),
    name: [{ CN: [`fedhpc ${options.federation} CA`] }, { O: [options.federation] }],
    keys,
    signingAlgorithm: EC_SIGNING_ALGORITHM,
    ...validityWindow(options.now, options.validityDays),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await exportPrivateKeyPem(keys.privateKey) };
}

/** A CA loaded for signing: its parsed certificate, signing key and federation. */
interface LoadedCa {
  readonly cert: x509.X509Certificate;
  readonly signingKey: CryptoKey;
  readonly federation: string;
}

/** Parses and checks the CA: it must be a CA certificate whose public key matches `keyPem`. */
async function loadCa(ca: CertificateAndKey): Promise<LoadedCa> {
  let nodeCert: NodeX509Certificate;
  let cert: x509.X509Certificate;
  try {
    nodeCert = new NodeX509Certificate(ca.certPem);
    cert = new x509.X509Certificate(ca.certPem);
  } catch (cause) {
    throw new PkiError(PkiErrorCode.InvalidCa, 'CA certificate is not a readable PEM certificate', {}, { cause });
  }
  if (!nodeCert.ca) throw new PkiError(PkiErrorCode.InvalidCa, `certificate ${cert.subject} is not a CA (basicConstraints CA:false)`);
  const { key, spkiDer } = await importSigningKey(ca.keyPem, 'CA key');
  if (!Buffer.from(cert.publicKey.rawData).equals(spkiDer)) {
    throw new PkiError(PkiErrorCode.InvalidCa, 'CA key does not match the CA certificate');
  }
  const federation = cert.subjectName.getField('O')[0];
  if (federation === undefined) throw new PkiError(PkiErrorCode.InvalidCa, 'CA certificate has no O (federation) in its subject');
  return { cert, signingKey: key, federation };
}

/** Roles whose members serve (sites dial them): their certificates name hosts and may authenticate servers. */
const isServerRole = (role: Role): boolean => role === 'coordinator' || role === 'aggregator';

function subjectAltNames(options: IssueCertificateOptions): x509.JsonGeneralNames {
  const identity = { type: 'url' as const, value: identityUri(options.federation, options.role, options.id) };
  if (isServerRole(options.role)) {
    const dns = options.dnsNames ?? DEFAULT_COORDINATOR_DNS_NAMES;
    const ips = options.ipAddresses ?? DEFAULT_COORDINATOR_IP_ADDRESSES;
    if (dns.length + ips.length === 0) {
      throw new PkiError(PkiErrorCode.InvalidOptions, `${options.role} certificates need at least one DNS name or IP address`);
    }
    const hosts = [...dns.map((value) => ({ type: 'dns' as const, value })), ...ips.map((value) => ({ type: 'ip' as const, value }))];
    // A coordinator's certificate has carried its hosts alone since the start; an aggregator's also
    // names it, as a site's or admin's does, so the coordinator can read which shard dialled it.
    return options.role === 'aggregator' ? [...hosts, identity] : hosts;
  }
  if (options.dnsNames !== undefined || options.ipAddresses !== undefined) {
    throw new PkiError(PkiErrorCode.InvalidOptions, `dnsNames and ipAddresses apply only to coordinator and aggregator certificates, not ${options.role}`, {
      role: options.role,
      id: options.id,
    });
  }
  return [identity];
}

/**
 * Issues a certificate signed by the CA, subject `CN=<id>, OU=<role>, O=<federation>`.
 *
 * Coordinator certificates get extKeyUsage serverAuth+clientAuth and a SAN of the given DNS names and
 * IPs; aggregator certificates the same plus the SAN URI {@link identityUri}; site and admin
 * certificates get clientAuth and that URI alone. With
 * `publicKeyPem` (the CSR flow) the given key is certified and no private key is returned.
 *
 * @throws {PkiError} `PKI_INVALID_ID`, `PKI_INVALID_FEDERATION`, `PKI_INVALID_ROLE`,
 *   `PKI_INVALID_OPTIONS`, `PKI_INVALID_KEY` or `PKI_INVALID_CA`.
 */
export async function issueCertificate(options: IssueCertificateOptions): Promise<IssuedCertificate> {
  assertValidRole(options.role);
  assertValidId(options.id, options.role);
  assertValidFederation(options.federation);
  assertValidity(options.validityDays, options.now);
  const sans = subjectAltNames(options);
  const ca = await loadCa(options.ca);
  if (ca.federation !== options.federation) {
    throw new PkiError(
      PkiErrorCode.InvalidCa,
      `CA belongs to federation ${JSON.stringify(ca.federation)}, not ${JSON.stringify(options.federation)}`,
      { federation: options.federation },
    );
  }
  const generated = options.publicKeyPem === undefined ? await generateKeyPair() : undefined;
  const publicKey: x509.PublicKeyType = generated?.publicKey ?? new Uint8Array(publicKeySpki(options.publicKeyPem ?? '', 'public key'));
  const usages = isServerRole(options.role) ? [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth] : [x509.ExtendedKeyUsage.clientAuth];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(options.randomBytes ?? nodeRandomBytes),
    subject: [{ CN: [options.id] }, { OU: [options.role] }, { O: [options.federation] }],
    issuer: ca.cert.subjectName,
    publicKey,
    signingKey: ca.signingKey,
    signingAlgorithm: EC_SIGNING_ALGORITHM,
    ...validityWindow(options.now, options.validityDays),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension(usages, false),
      new x509.SubjectAlternativeNameExtension(sans, false),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert.publicKey),
    ],
  });
  const certPem = cert.toString('pem');
  if (generated === undefined) return { certPem };
  return { certPem, keyPem: await exportPrivateKeyPem(generated.privateKey) };
}
