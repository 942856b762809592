import { describe, expect, it } from 'vitest';
import {
  SHAMIR_SHARE_BYTES,
  type SealedShare,
  decodeSharePayload,
  encodeSharePayload,
  openShare,
  sealShare,
} from '../../../aggregation/secagg/index.js';
import { codeOf, seededRandomBytes } from './helpers.js';

const key = new Uint8Array(32).fill(3);
const context = { run: 'run-1', round: 2, from: 'site-a', to: 'site-b' };
const secretText = new TextEncoder().encode('share-bytes-that-must-stay-secret');
const codeOfResult = (r: { ok: boolean; code?: string }): string => (r.ok ? 'ok' : (r.code ?? '?'));

describe('share encryption (AES-256-GCM)', () => {
  it('round-trips with a random 12-byte nonce and 16-byte tag', () => {
    const sealed = sealShare(key, context, secretText, seededRandomBytes('n'));
    expect(sealed.nonce).toHaveLength(12);
    expect(sealed.tag).toHaveLength(16);
    const opened = openShare(key, sealed, context);
    expect(opened.ok && Buffer.from(opened.value).equals(secretText)).toBe(true);
    expect(Buffer.from(sealShare(key, context, secretText).nonce).equals(sealed.nonce)).toBe(false);
  });

  it('refuses a wrong key with SHARE_AUTH_FAILED', () => {
    const sealed = sealShare(key, context, secretText);
    expect(codeOfResult(openShare(new Uint8Array(32).fill(4), sealed, context))).toBe('SHARE_AUTH_FAILED');
  });

  it('refuses tampered ciphertext, tag or nonce with SHARE_AUTH_FAILED', () => {
    const sealed = sealShare(key, context, secretText);
    const flip = (b: Uint8Array): Uint8Array => {
      const c = new Uint8Array(b);
      c[0] = c[0]! ^ 0x80;
      return c;
    };
    for (const tampered of [
      { ...sealed, ciphertext: flip(sealed.ciphertext) },
      { ...sealed, tag: flip(sealed.tag) },
      { ...sealed, nonce: flip(sealed.nonce) },
    ] satisfies SealedShare[]) {
      expect(codeOfResult(openShare(key, tampered, context))).toBe('SHARE_AUTH_FAILED');
    }
  });

  it('refuses a share for another context with SHARE_CONTEXT_MISMATCH, or SHARE_AUTH_FAILED when its clear context was rewritten', () => {
    const sealed = sealShare(key, context, secretText);
    for (const other of [{ ...context, round: 3 }, { ...context, to: 'site-c' }, { ...context, from: 'site-c' }, { ...context, run: 'run-2' }]) {
      expect(codeOfResult(openShare(key, sealed, other))).toBe('SHARE_CONTEXT_MISMATCH');
      // A coordinator rewriting the clear header to match is caught by the AAD.
      expect(codeOfResult(openShare(key, { ...sealed, context: other }, other))).toBe('SHARE_AUTH_FAILED');
    }
  });

  it('refuses malformed envelopes with SHARE_MALFORMED and never echoes plaintext or key', () => {
    const sealed = sealShare(key, context, secretText);
    const bad = openShare(key, { ...sealed, nonce: new Uint8Array(8) }, context);
    expect(codeOfResult(bad)).toBe('SHARE_MALFORMED');
    const failed = openShare(new Uint8Array(32), sealed, context);
    expect(JSON.stringify(failed)).not.toContain('share-bytes');
    expect(codeOf(() => sealShare(new Uint8Array(16), context, secretText))).toBe('INVALID_ARGUMENT');
  });

  it('encodes and decodes share payloads of fixed length', () => {
    const payload = { x: 7, maskKeyShare: new Uint8Array(SHAMIR_SHARE_BYTES).fill(1), selfSeedShare: new Uint8Array(SHAMIR_SHARE_BYTES).fill(2) };
    const decoded = decodeSharePayload(encodeSharePayload(payload));
    expect(decoded.ok && decoded.value.x).toBe(7);
    expect(decoded.ok && Buffer.from(decoded.value.selfSeedShare).equals(payload.selfSeedShare)).toBe(true);
    expect(codeOfResult(decodeSharePayload(new Uint8Array(10)))).toBe('SHARE_MALFORMED');
    expect(codeOf(() => encodeSharePayload({ ...payload, x: 0 }))).toBe('INVALID_ARGUMENT');
  });
});
