import { createCipheriv, createHash } from 'node:crypto';
import { SecAggError, type RandomBytes } from '../../../aggregation/secagg/index.js';
import { thrownBy } from '../../helpers/thrown.js';

/** A deterministic RandomBytes: AES-256-CTR keyed by SHA-256(label), independent of the PRG under test. */
export function seededRandomBytes(label: string): RandomBytes {
  const cipher = createCipheriv('aes-256-ctr', createHash('sha256').update(label).digest(), Buffer.alloc(16));
  return (n: number) => new Uint8Array(cipher.update(Buffer.alloc(n)));
}

/** The code of the SecAggError `f` throws ('other' for another error, undefined if none). */
export function codeOf(f: () => unknown): string | undefined {
  const error = thrownBy(f);
  if (error === undefined) return undefined;
  return error instanceof SecAggError ? error.code : `other: ${String(error)}`;
}

/** Pearson χ² statistic of `counts` against the uniform distribution. */
export function chiSquared(counts: ArrayLike<number>): number {
  let total = 0;
  for (let i = 0; i < counts.length; i++) total += counts[i]!;
  const expected = total / counts.length;
  let chi = 0;
  for (let i = 0; i < counts.length; i++) chi += (counts[i]! - expected) ** 2 / expected;
  return chi;
}

/**
 * Upper critical value of χ² with `df` degrees of freedom at significance α = 1e-4
 * (Wilson–Hilferty approximation, z = 3.719).
 */
export function chiSquaredCritical(df: number): number {
  const z = 3.719;
  return df * (1 - 2 / (9 * df) + z * Math.sqrt(2 / (9 * df))) ** 3;
}
