import { describe, expect, it } from 'vitest';
import {
  PAIRWISE_MASK_SEED_LABEL,
  SHARE_ENCRYPTION_LABEL,
  derivePairwiseMaskSeed,
  deriveShareEncryptionKey,
  exportX25519PrivateKey,
  exportX25519PublicKey,
  generateX25519KeyPair,
  importX25519PrivateKey,
  importX25519PublicKey,
  sharedSecret,
} from '../../../aggregation/secagg/index.js';
import { codeOf, seededRandomBytes } from './helpers.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('X25519 keys', () => {
  it('makes 32-byte public keys, deterministic under a seeded randomBytes', () => {
    const a = generateX25519KeyPair(seededRandomBytes('k'));
    const b = generateX25519KeyPair(seededRandomBytes('k'));
    expect(a.publicKey).toHaveLength(32);
    expect(hex(a.publicKey)).toBe(hex(b.publicKey));
    expect(hex(generateX25519KeyPair().publicKey)).not.toBe(hex(a.publicKey));
  });

  it('matches the RFC 7748 §6.1 test vector', () => {
    const alice = importX25519PrivateKey(Buffer.from('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a', 'hex'));
    const bobPublic = Buffer.from('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f', 'hex');
    expect(hex(exportX25519PublicKey(alice))).toBe('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
    expect(hex(sharedSecret(alice, bobPublic))).toBe('4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742');
  });

  it('round-trips raw public and private keys', () => {
    const pair = generateX25519KeyPair(seededRandomBytes('rt'));
    expect(hex(exportX25519PublicKey(importX25519PublicKey(pair.publicKey)))).toBe(hex(pair.publicKey));
    const raw = exportX25519PrivateKey(pair.privateKey);
    expect(hex(exportX25519PublicKey(importX25519PrivateKey(raw)))).toBe(hex(pair.publicKey));
  });

  it('agrees on the same shared secret from both sides', () => {
    const a = generateX25519KeyPair(seededRandomBytes('a'));
    const b = generateX25519KeyPair(seededRandomBytes('b'));
    expect(hex(sharedSecret(a.privateKey, b.publicKey))).toBe(hex(sharedSecret(b.privateKey, a.publicKey)));
  });

  it('refuses malformed and low-order peer keys with KEY_INVALID', () => {
    const a = generateX25519KeyPair(seededRandomBytes('a'));
    expect(codeOf(() => sharedSecret(a.privateKey, new Uint8Array(31)))).toBe('KEY_INVALID');
    expect(codeOf(() => sharedSecret(a.privateKey, new Uint8Array(32)))).toBe('KEY_INVALID');
    expect(codeOf(() => importX25519PrivateKey(new Uint8Array(16)))).toBe('KEY_INVALID');
  });
});

describe('HKDF derivations', () => {
  const shared = new Uint8Array(32).fill(7);
  const ctx = { run: 'run-1', round: 3 };

  it('uses distinct labels per purpose', () => {
    expect(PAIRWISE_MASK_SEED_LABEL).toBe('fedhpc/secagg/v1/pairwise-mask-seed');
    expect(SHARE_ENCRYPTION_LABEL).toBe('fedhpc/secagg/v1/share-encryption');
    const seed = derivePairwiseMaskSeed(shared, { ...ctx, siteA: 'a', siteB: 'b' });
    const key = deriveShareEncryptionKey(shared, { ...ctx, from: 'a', to: 'b' });
    expect(seed).toHaveLength(32);
    expect(hex(seed)).not.toBe(hex(key));
  });

  it('gives the same pairwise seed whichever site derives it', () => {
    expect(hex(derivePairwiseMaskSeed(shared, { ...ctx, siteA: 'a', siteB: 'b' }))).toBe(hex(derivePairwiseMaskSeed(shared, { ...ctx, siteA: 'b', siteB: 'a' })));
  });

  it('binds run, round and sites into every derived key', () => {
    const base = hex(derivePairwiseMaskSeed(shared, { ...ctx, siteA: 'a', siteB: 'b' }));
    expect(hex(derivePairwiseMaskSeed(shared, { run: 'run-2', round: 3, siteA: 'a', siteB: 'b' }))).not.toBe(base);
    expect(hex(derivePairwiseMaskSeed(shared, { run: 'run-1', round: 4, siteA: 'a', siteB: 'b' }))).not.toBe(base);
    expect(hex(derivePairwiseMaskSeed(shared, { ...ctx, siteA: 'a', siteB: 'c' }))).not.toBe(base);
    const ab = hex(deriveShareEncryptionKey(shared, { ...ctx, from: 'a', to: 'b' }));
    expect(hex(deriveShareEncryptionKey(shared, { ...ctx, from: 'b', to: 'a' }))).not.toBe(ab);
    expect(hex(deriveShareEncryptionKey(shared, { ...ctx, round: 4, from: 'a', to: 'b' }))).not.toBe(ab);
  });

  it('refuses a pairwise seed of a site with itself and a short secret', () => {
    expect(codeOf(() => derivePairwiseMaskSeed(shared, { ...ctx, siteA: 'a', siteB: 'a' }))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => deriveShareEncryptionKey(new Uint8Array(8), { ...ctx, from: 'a', to: 'b' }))).toBe('INVALID_ARGUMENT');
  });
});
