/**
 * Shamir secret sharing of 32-byte secrets over the prime field p = 2^521 − 1 (a Mersenne prime,
 * larger than the 256-bit secrets), as used by Bonawitz et al. 2017, round 1 (sites share their
 * s-key private scalar and self-mask seed) and round 4 (the coordinator rebuilds them from t shares).
 */
import { randomBytes as nodeRandomBytes } from 'node:crypto';
import { assertBytes, SecAggError, type SecAggErrorCode } from './errors.js';
import { type Result, err, ok, unwrap } from '../result.js';
import type { RandomBytes } from './encoding.js';

/** The field prime 2^521 − 1. */
export const FIELD_PRIME = (1n << 521n) - 1n;
/** Bytes of a share's y value (big-endian, ⌈521/8⌉). */
export const SHAMIR_SHARE_BYTES = 66;
/** Bytes of a shared secret. */
export const SHAMIR_SECRET_BYTES = 32;
/** Largest x-coordinate (x fits a 32-bit unsigned field on the wire). */
export const SHAMIR_MAX_X = 0xffffffff;

/** One Shamir share: the point (x, f(x)) with y as 66 big-endian bytes. */
export interface ShamirShare {
  readonly x: number;
  readonly y: Uint8Array;
}

/**
 * Splits a 32-byte secret into `n` shares with x = 1..n, any `t` of which rebuild it while any
 * t − 1 are independent of it (Shamir 1979; Bonawitz et al. 2017, round 1). The t − 1 random
 * coefficients are uniform field elements drawn from `randomBytes` by rejection sampling.
 */
export function split(secret: Uint8Array, t: number, n: number, randomBytes: RandomBytes = nodeRandomBytes): ShamirShare[] {
  assertBytes(secret, SHAMIR_SECRET_BYTES, 'secret');
  if (!Number.isInteger(n) || n < 1 || n > SHAMIR_MAX_X) throw new SecAggError('INVALID_ARGUMENT', 'n must be an integer in 1..2^32-1', { n });
  if (!Number.isInteger(t) || t < 1 || t > n) throw new SecAggError('INVALID_ARGUMENT', 'threshold t must be an integer in 1..n', { t, n });
  const coefficients = [bytesToBigInt(secret)];
  for (let i = 1; i < t; i++) coefficients.push(randomFieldElement(randomBytes));
  const shares: ShamirShare[] = [];
  for (let x = 1; x <= n; x++) {
    const bx = BigInt(x);
    let y = 0n;
    for (let i = coefficients.length - 1; i >= 0; i--) y = (y * bx + coefficients[i]!) % FIELD_PRIME;
    shares.push({ x, y: bigIntToBytes(y, SHAMIR_SHARE_BYTES) });
  }
  return shares;
}

/** Options of {@link combine}. */
export interface CombineOptions {
  /** The threshold t: fewer shares are refused, and shares beyond the first t are checked against them. */
  readonly threshold?: number;
}

/**
 * Rebuilds the secret by Lagrange interpolation at 0 (Bonawitz et al. 2017, round 4). Refusals:
 * `SHAMIR_DUPLICATE_X`, `SHAMIR_TOO_FEW_SHARES` (fewer than `threshold`), `SHAMIR_OUT_OF_FIELD`
 * (y ≥ p, x out of range, bad length), `SHAMIR_INCONSISTENT` (extra shares off the polynomial, or
 * a result that is not a 256-bit secret — the mark of a forged or mixed share).
 */
export function tryCombine(shares: readonly ShamirShare[], options: CombineOptions = {}): Result<Uint8Array, SecAggErrorCode> {
  const { threshold } = options;
  if (threshold !== undefined && (!Number.isInteger(threshold) || threshold < 1)) {
    throw new SecAggError('INVALID_ARGUMENT', 'threshold must be a positive integer', { threshold });
  }
  const points: Point[] = [];
  const seen = new Set<number>();
  for (const share of shares) {
    if (!Number.isInteger(share.x) || share.x < 1 || share.x > SHAMIR_MAX_X) return err('SHAMIR_OUT_OF_FIELD', 'share x must be in 1..2^32-1', { x: share.x });
    if (seen.has(share.x)) return err('SHAMIR_DUPLICATE_X', 'two shares have the same x', { x: share.x });
    seen.add(share.x);
    if (!(share.y instanceof Uint8Array) || share.y.length !== SHAMIR_SHARE_BYTES) return err('SHAMIR_OUT_OF_FIELD', 'share y must be 66 bytes', { x: share.x });
    const y = bytesToBigInt(share.y);
    if (y >= FIELD_PRIME) return err('SHAMIR_OUT_OF_FIELD', 'share y is not below the field prime', { x: share.x });
    points.push({ x: BigInt(share.x), y });
  }
  const needed = threshold ?? points.length;
  if (points.length === 0 || points.length < needed) {
    return err('SHAMIR_TOO_FEW_SHARES', 'fewer shares than the threshold', { shares: points.length, threshold: needed });
  }
  const basis = points.slice(0, needed);
  for (const extra of points.slice(needed)) {
    if (interpolateAt(basis, extra.x) !== extra.y) return err('SHAMIR_INCONSISTENT', 'a share lies off the polynomial of the others', { x: Number(extra.x) });
  }
  const secret = interpolateAt(basis, 0n);
  if (secret >> BigInt(8 * SHAMIR_SECRET_BYTES) !== 0n) {
    return err('SHAMIR_INCONSISTENT', 'shares do not rebuild a 256-bit secret (forged or mixed shares)', { shares: basis.length });
  }
  return ok(bigIntToBytes(secret, SHAMIR_SECRET_BYTES));
}

/** {@link tryCombine} that throws a {@link SecAggError} with the refusal's code. */
export function combine(shares: readonly ShamirShare[], options: CombineOptions = {}): Uint8Array {
  return unwrap(tryCombine(shares, options), SecAggError);
}

/** A point of a polynomial over the field. */
export interface Point {
  readonly x: bigint;
  readonly y: bigint;
}

/**
 * Value at `z` of the unique polynomial of degree < points.length through `points` (distinct x),
 * with one field inversion for all Lagrange denominators (Montgomery's batch trick).
 */
export function interpolateAt(points: readonly Point[], z: bigint): bigint {
  const k = points.length;
  const numerators: bigint[] = [];
  const denominators: bigint[] = [];
  for (let i = 0; i < k; i++) {
    let num = 1n;
    let den = 1n;
    const xi = points[i]!.x;
    for (let j = 0; j < k; j++) {
      if (j === i) continue;
      const xj = points[j]!.x;
      num = (num * mod(z - xj)) % FIELD_PRIME;
      den = (den * mod(xi - xj)) % FIELD_PRIME;
    }
    numerators.push(num);
    denominators.push(den);
  }
  const inverses = batchInverse(denominators);
  let sum = 0n;
  for (let i = 0; i < k; i++) sum = (sum + points[i]!.y * ((numerators[i]! * inverses[i]!) % FIELD_PRIME)) % FIELD_PRIME;
  return sum;
}

/** a mod p in [0, p). */
export function mod(a: bigint): bigint {
  const r = a % FIELD_PRIME;
  return r < 0n ? r + FIELD_PRIME : r;
}

/** Multiplicative inverse mod p by the extended Euclidean algorithm; `a` must be non-zero mod p. */
export function inverse(a: bigint): bigint {
  let [r0, r1] = [FIELD_PRIME, mod(a)];
  let [s0, s1] = [0n, 1n];
  if (r1 === 0n) throw new SecAggError('INVALID_ARGUMENT', 'zero has no inverse');
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  return mod(s0);
}

function batchInverse(values: readonly bigint[]): bigint[] {
  const prefix: bigint[] = [];
  let acc = 1n;
  for (const v of values) {
    prefix.push(acc);
    acc = (acc * v) % FIELD_PRIME;
  }
  let inv = inverse(acc);
  const out = new Array<bigint>(values.length);
  for (let i = values.length - 1; i >= 0; i--) {
    out[i] = (inv * prefix[i]!) % FIELD_PRIME;
    inv = (inv * values[i]!) % FIELD_PRIME;
  }
  return out;
}

/** A uniform field element: 521 random bits, redrawn in the (1 in 2^521) case they equal p. */
function randomFieldElement(randomBytes: RandomBytes): bigint {
  for (;;) {
    const raw = new Uint8Array(randomBytes(SHAMIR_SHARE_BYTES));
    assertBytes(raw, SHAMIR_SHARE_BYTES, 'randomBytes output');
    raw[0] = raw[0]! & 0x01;
    const v = bytesToBigInt(raw);
    if (v < FIELD_PRIME) return v;
  }
}

/** Big-endian bytes → bigint. */
export function bytesToBigInt(bytes: Uint8Array): bigint {
  let hex = '';
  for (const b of bytes) hex += b.toString(16).padStart(2, '0');
  return hex.length === 0 ? 0n : BigInt(`0x${hex}`);
}

/** bigint → `length` big-endian bytes (the value must fit). */
export function bigIntToBytes(value: bigint, length: number): Uint8Array {
  const hex = value.toString(16).padStart(2 * length, '0');
  if (hex.length > 2 * length || value < 0n) throw new SecAggError('INVALID_ARGUMENT', 'value does not fit the byte length', { length });
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}
