import { createCa, type CertificateAndKey } from '../../../coordinator/pki/index.js';

/** Fixed issuance time so tests do not depend on the wall clock. */
export const NOW = new Date();

const cache = new Map<string, Promise<CertificateAndKey>>();

/** One CA per federation name per test file (key generation is cheap, but not free). */
export function caFor(federation: string): Promise<CertificateAndKey> {
  let ca = cache.get(federation);
  if (ca === undefined) {
    ca = createCa({ federation, validityDays: 30, now: NOW });
    cache.set(federation, ca);
  }
  return ca;
}
