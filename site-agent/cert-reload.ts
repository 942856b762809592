/**
 * Certificate renewal without stopping the agent: the site's certificate file is watched, and a
 * changed one (a renewed certificate written by the operator) is taken into use by reconnecting
 * once the agent is between rounds. Every (re)connection reads the TLS files afresh anyway.
 */
import { unwatchFile, watchFile, type Stats } from 'node:fs';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { SiteAgentError } from './errors.js';

/** How often the certificate file is checked. */
export const CERT_POLL_MS = 1_000;

/** Watches `certPath`; calls `onChange` when it holds a readable certificate matching `keyPath`. */
export function watchCertificate(certPath: string, keyPath: string, onChange: () => void, onInvalid: (why: string) => void): { close(): void } {
  const listener = (curr: Stats, prev: Stats): void => {
    if (curr.mtimeMs === prev.mtimeMs && curr.size === prev.size) return;
    // A half-written or mismatched file must not tear down a working connection.
    try {
      const cert = new X509Certificate(readFileSync(certPath));
      if (!cert.checkPrivateKey(createPrivateKey(readFileSync(keyPath)))) return onInvalid(`${certPath} does not match the key ${keyPath}`);
    } catch (err) {
      return onInvalid(`${certPath} is not a readable certificate: ${(err as Error).message}`);
    }
    onChange();
  };
  watchFile(certPath, { interval: CERT_POLL_MS, persistent: false }, listener);
  return { close: () => unwatchFile(certPath, listener) };
}

/**
 * Refuses a certificate outside its validity period. The coordinator's TLS handshake would refuse
 * it too, but the agent would only see a reset connection and retry for ever; this names the
 * problem and what to do about it, before any connection is tried.
 */
export function checkCertificateDates(certPem: Buffer, certPath: string, now = Date.now()): void {
  const cert = new X509Certificate(certPem);
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  if (now < from || now >= to) {
    throw new SiteAgentError(
      'CERTIFICATE_INVALID',
      `certificate ${certPath} is valid from ${new Date(from).toISOString()} to ${new Date(to).toISOString()}: ` +
        `it ${now >= to ? 'has expired' : 'is not valid yet'}; ask the federation admin for a new one (fedhpc site renew, then fedhpc admin approve)`,
      false,
    );
  }
}
