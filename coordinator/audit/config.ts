/** What of the coordinator config goes into the audit trail: everything but secrets. */

/** Keys whose values are secrets or point at them (private keys, credentials), anywhere in the tree. */
const SECRET_KEYS = new Set(['key', 'creds', 'password', 'pass', 'token']);

/**
 * A deep copy of a resolved config with secrets removed, for the `run-started` record: a reader of
 * the journal learns every setting the run used, but never where a private key or credential is.
 */
export function auditedConfig(config: object): Record<string, unknown> {
  return strip(config) as Record<string, unknown>;
}

function strip(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(strip);
  if (!value || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) if (!SECRET_KEYS.has(k.toLowerCase())) out[k] = strip(v);
  return out;
}
