/**
 * Canonical byte encodings of protocol contexts: a domain-separation label followed by
 * length-prefixed fields, so no two distinct tuples (or purposes) encode to the same bytes.
 */
import { Buffer } from 'node:buffer';
import { SecAggError } from './errors.js';

/** Injected source of cryptographic randomness (node:crypto's `randomBytes` by default). */
export type RandomBytes = (n: number) => Uint8Array;

/** A field of a canonical encoding: UTF-8 text, a non-negative safe integer, or raw bytes. */
export type Field = string | number | Uint8Array;

const TAG_TEXT = 1;
const TAG_UINT = 2;
const TAG_BYTES = 3;

/**
 * Encodes `label` and `fields` as `tag(1) ‖ length(4, BE) ‖ bytes` each; integers are 8-byte BE.
 * The label comes first, so encodings made for different purposes never collide.
 */
export function encodeFields(label: string, fields: readonly Field[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const field of [label, ...fields]) {
    let tag: number;
    let body: Uint8Array;
    if (typeof field === 'string') {
      tag = TAG_TEXT;
      body = Buffer.from(field, 'utf8');
    } else if (typeof field === 'number') {
      if (!Number.isSafeInteger(field) || field < 0) {
        throw new SecAggError('INVALID_ARGUMENT', 'encoded integers must be non-negative safe integers', { value: field });
      }
      tag = TAG_UINT;
      body = Buffer.alloc(8);
      Buffer.from(body.buffer, body.byteOffset, 8).writeBigUInt64BE(BigInt(field));
    } else {
      tag = TAG_BYTES;
      body = field;
    }
    const head = Buffer.alloc(5);
    head.writeUInt8(tag, 0);
    head.writeUInt32BE(body.length, 1);
    parts.push(head, body);
  }
  return new Uint8Array(Buffer.concat(parts));
}

/** Orders site ids canonically (UTF-16 code units, i.e. byte order for ASCII ids). */
export function compareSiteIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Throws `INVALID_ARGUMENT` unless `value` is a non-empty string. */
export function assertId(value: unknown, what: string): asserts value is string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new SecAggError('INVALID_ARGUMENT', `${what} must be a non-empty string`, { what });
  }
}

/** Throws `INVALID_ARGUMENT` unless `value` is a non-negative safe integer. */
export function assertRound(value: unknown, what = 'round'): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new SecAggError('INVALID_ARGUMENT', `${what} must be a non-negative safe integer`, { what, value: String(value) });
  }
}
