/**
 * Typed errors for the federation PKI. Every error carries a stable `code` that callers and tests
 * match on; the message is for humans and may change.
 */

/** Stable codes of {@link PkiError}. */
export const PkiErrorCode = {
  /** A site, admin or coordinator id does not match {@link ID_PATTERN}. */
  InvalidId: 'PKI_INVALID_ID',
  /** A federation name does not match {@link ID_PATTERN}. */
  InvalidFederation: 'PKI_INVALID_FEDERATION',
  /** A role is not one of `coordinator`, `site`, `admin`. */
  InvalidRole: 'PKI_INVALID_ROLE',
  /** Numeric or date options are out of range (validity days, `now`). */
  InvalidOptions: 'PKI_INVALID_OPTIONS',
  /** A PEM key or certificate could not be parsed, or is not an ECDSA P-256 key. */
  InvalidKey: 'PKI_INVALID_KEY',
  /** The CA certificate is not a CA, or its key does not match it. */
  InvalidCa: 'PKI_INVALID_CA',
  /** A CSR is malformed, its signature does not verify, or its subject disagrees with the request. */
  InvalidCsr: 'PKI_INVALID_CSR',
  /** Two sites (or two admins) share an id. */
  DuplicateId: 'PKI_DUPLICATE_ID',
  /** Provisioning would overwrite an existing CA without `force: true`. */
  OutputExists: 'PKI_OUTPUT_EXISTS',
  /** The operation was cancelled through its `AbortSignal`. */
  Aborted: 'PKI_ABORTED',
  /** The CA key needed to sign is not where the admin said (it is never with the coordinator). */
  CaKeyMissing: 'PKI_CA_KEY_MISSING',
} as const;

/** Union of the values of {@link PkiErrorCode}. */
export type PkiErrorCode = (typeof PkiErrorCode)[keyof typeof PkiErrorCode];

/** Context attached to a {@link PkiError}; which fields are set depends on the code. */
export interface PkiErrorContext {
  readonly id?: string;
  readonly federation?: string;
  readonly role?: string;
  readonly path?: string;
}

/**
 * Error thrown by the PKI for invalid input or refused operations. PKI errors never travel over the
 * wire (they happen in admin tooling), so they carry no retry hint.
 */
export class PkiError extends Error {
  override readonly name = 'PkiError';
  readonly code: PkiErrorCode;
  readonly context: PkiErrorContext;

  constructor(code: PkiErrorCode, message: string, context: PkiErrorContext = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.context = context;
  }
}
