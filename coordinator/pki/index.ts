/**
 * Public surface of the federation PKI: CA and certificate issuance, the CSR flow, provisioning to
 * disk, and reading a peer's identity from its mTLS certificate.
 */
export { PkiError, PkiErrorCode, type PkiErrorContext } from './errors.js';
export { ID_PATTERN, ROLES, type Role, identityUri, isRole } from './names.js';
export {
  DEFAULT_COORDINATOR_DNS_NAMES,
  DEFAULT_COORDINATOR_IP_ADDRESSES,
  NOT_BEFORE_SKEW_MS,
  type CertificateAndKey,
  type CreateCaOptions,
  type IssueCertificateOptions,
  type IssuedCertificate,
  type RandomBytes,
  createCa,
  issueCertificate,
} from './certificates.js';
export { type CreateCsrOptions, type CsrAndKey, type SignCsrOptions, createCsr, signCsr } from './csr.js';
export {
  type AuthContextLike,
  type IdentityIssue,
  IdentityIssueCode,
  type IdentityResolver,
  type IdentityResolverOptions,
  type IdentityResult,
  type PeerIdentity,
  createIdentityResolver,
  identityFromAuthContext,
  identityFromCertificate,
} from './identity.js';
export { DEFAULT_VALIDITY_DAYS, type ProvisionFederationOptions, type ProvisionManifest, type ProvisionedMember, provisionFederation } from './provision.js';
export { type EnrolFiles, enrolSite, loadCaFiles, renewalCsr, signSiteCsr, writeAtomic } from './enrol.js';
