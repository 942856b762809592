/**
 * The CSR flow: a site makes its key and a certificate signing request locally, sends only the CSR
 * to the federation admin, and gets back a certificate. The private key never leaves the site.
 */
import * as x509 from '@peculiar/x509';
import { PkiError, PkiErrorCode } from './errors.js';
import { type CertificateAndKey, type RandomBytes, issueCertificate } from './certificates.js';
import {
  EC_SIGNING_ALGORITHM,
  type Role,
  assertValidFederation,
  assertValidId,
  assertValidRole,
  exportPrivateKeyPem,
  generateKeyPair,
  toPem,
} from './names.js';

/** Options of {@link createCsr}. */
export interface CreateCsrOptions {
  /** Requested id (CN); must match `ID_PATTERN`. */
  readonly id: string;
  /** Federation the requester joins (O). */
  readonly federation: string;
  /** Requested role (OU); the signer must sign with the same role. */
  readonly role: Role;
}

/** A CSR and the private key that stays with the requester. */
export interface CsrAndKey {
  /** PEM PKCS#10 request (`-----BEGIN CERTIFICATE REQUEST-----`): safe to send. */
  readonly csrPem: string;
  /** PEM PKCS#8 private key: keep it local, file mode 0600. */
  readonly keyPem: string;
}

/** Options of {@link signCsr}. */
export interface SignCsrOptions {
  /** The issuing CA's certificate and key; the federation is the CA's O. */
  readonly ca: CertificateAndKey;
  /** PEM PKCS#10 request from {@link createCsr} (or any P-256 CSR with a valid CN). */
  readonly csrPem: string;
  /** Role to certify; must equal the CSR's OU when it has one. */
  readonly role: Role;
  /** Validity from `now`, in whole days. */
  readonly validityDays: number;
  /** Issuance time (the injected clock). */
  readonly now: Date;
  /** Coordinator only: DNS names for the SAN. */
  readonly dnsNames?: readonly string[];
  /** Coordinator only: IP addresses for the SAN. */
  readonly ipAddresses?: readonly string[];
  /** Random source for the serial number. */
  readonly randomBytes?: RandomBytes;
}

/**
 * Makes a P-256 key pair and a CSR with subject `CN=<id>, OU=<role>, O=<federation>`, signed by that
 * key (proof of possession).
 *
 * @throws {PkiError} `PKI_INVALID_ID`, `PKI_INVALID_FEDERATION` or `PKI_INVALID_ROLE`.
 */
export async function createCsr(options: CreateCsrOptions): Promise<CsrAndKey> {
  assertValidRole(options.role);
  assertValidId(options.id, options.role);
  assertValidFederation(options.federation);
  const keys = await generateKeyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: [{ CN: [options.id] }, { OU: [options.role] }, { O: [options.federation] }],
    keys,
    signingAlgorithm: EC_SIGNING_ALGORITHM,
  });
  return { csrPem: csr.toString('pem'), keyPem: await exportPrivateKeyPem(keys.privateKey) };
}

function invalidCsr(message: string, cause?: unknown): PkiError {
  return new PkiError(PkiErrorCode.InvalidCsr, message, {}, cause === undefined ? undefined : { cause });
}

function singleField(name: x509.Name, field: string): string | undefined {
  const values = name.getField(field);
  if (values.length > 1) throw invalidCsr(`CSR subject has ${values.length} ${field} values; expected at most one`);
  return values[0];
}

/**
 * Verifies a CSR's signature and signs its public key with the CA. The id is the CSR's CN (validated
 * against `ID_PATTERN`); the federation is the CA's O, and the CSR's O and OU, when present, must
 * agree with it and with `role`. The output holds only a certificate, never a private key.
 *
 * @throws {PkiError} `PKI_INVALID_CSR` for a malformed, tampered or inconsistent CSR; `PKI_INVALID_ID`
 *   for a bad CN; `PKI_INVALID_KEY` for a key that is not ECDSA P-256; `PKI_INVALID_CA` for a bad CA.
 */
export async function signCsr(options: SignCsrOptions): Promise<{ readonly certPem: string }> {
  assertValidRole(options.role);
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(options.csrPem);
  } catch (cause) {
    throw invalidCsr('CSR is not a readable PEM PKCS#10 request', cause);
  }
  let signatureOk: boolean;
  try {
    signatureOk = await csr.verify();
  } catch (cause) {
    throw invalidCsr('CSR signature could not be checked (unsupported or malformed key)', cause);
  }
  if (!signatureOk) throw invalidCsr('CSR signature does not verify: the request was altered or not signed by its key');

  const id = singleField(csr.subjectName, 'CN');
  if (id === undefined) throw invalidCsr('CSR subject has no CN (the requested id)');
  assertValidId(id, options.role);
  const requestedRole = singleField(csr.subjectName, 'OU');
  if (requestedRole !== undefined && requestedRole !== options.role) {
    throw new PkiError(PkiErrorCode.InvalidCsr, `CSR for ${JSON.stringify(id)} asks for role ${JSON.stringify(requestedRole)}, not ${options.role}`, {
      id,
      role: options.role,
    });
  }
  let caCert: x509.X509Certificate;
  try {
    caCert = new x509.X509Certificate(options.ca.certPem);
  } catch (cause) {
    throw new PkiError(PkiErrorCode.InvalidCa, 'CA certificate is not a readable PEM certificate', {}, { cause });
  }
  const federation = caCert.subjectName.getField('O')[0];
  if (federation === undefined) throw new PkiError(PkiErrorCode.InvalidCa, 'CA certificate has no O (federation) in its subject');
  const requestedFederation = singleField(csr.subjectName, 'O');
  if (requestedFederation !== undefined && requestedFederation !== federation) {
    throw new PkiError(
      PkiErrorCode.InvalidCsr,
      `CSR for ${JSON.stringify(id)} names federation ${JSON.stringify(requestedFederation)}, but this CA is ${JSON.stringify(federation)}`,
      { id, federation },
    );
  }
  const issued = await issueCertificate({
    ca: options.ca,
    role: options.role,
    id,
    federation,
    validityDays: options.validityDays,
    now: options.now,
    publicKeyPem: toPem(csr.publicKey.rawData, 'PUBLIC KEY'),
    ...(options.dnsNames === undefined ? {} : { dnsNames: options.dnsNames }),
    ...(options.ipAddresses === undefined ? {} : { ipAddresses: options.ipAddresses }),
    ...(options.randomBytes === undefined ? {} : { randomBytes: options.randomBytes }),
  });
  return { certPem: issued.certPem };
}
