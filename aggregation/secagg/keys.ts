/**
 * Per-round X25519 key agreement and HKDF-SHA256 key derivation (Bonawitz et al. 2017, round 0
 * "advertise keys": each site makes two key pairs, c for share encryption and s for pairwise masks).
 */
import { Buffer } from 'node:buffer';
import { type KeyObject, createPrivateKey, createPublicKey, diffieHellman, hkdfSync, randomBytes as nodeRandomBytes } from 'node:crypto';
import { assertBytes, SecAggError } from './errors.js';
import { type RandomBytes, assertId, assertRound, compareSiteIds, encodeFields } from './encoding.js';

/** Length of raw X25519 public keys, private keys and shared secrets. */
export const X25519_KEY_BYTES = 32;

/** HKDF label of the pairwise mask seed s_{u,v} (Bonawitz et al. 2017, round 2). */
export const PAIRWISE_MASK_SEED_LABEL = 'fedhpc/secagg/v1/pairwise-mask-seed';
/** HKDF label of the AES-GCM key that encrypts shares from one site to another (round 1). */
export const SHARE_ENCRYPTION_LABEL = 'fedhpc/secagg/v1/share-encryption';

// DER prefixes of an X25519 PKCS#8 private key and SPKI public key (RFC 8410), followed by 32 raw bytes.
const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

/** An X25519 key pair: the raw public key to advertise and the private key, kept as a KeyObject. */
export interface X25519KeyPair {
  readonly publicKey: Uint8Array;
  readonly privateKey: KeyObject;
}

/**
 * Makes a fresh X25519 key pair from 32 bytes of `randomBytes` (Bonawitz et al. 2017, round 0).
 * Injecting the randomness lets tests be seeded; production uses node:crypto's.
 */
export function generateX25519KeyPair(randomBytes: RandomBytes = nodeRandomBytes): X25519KeyPair {
  const raw = randomBytes(X25519_KEY_BYTES);
  assertBytes(raw, X25519_KEY_BYTES, 'randomBytes output');
  const privateKey = importX25519PrivateKey(raw);
  return { publicKey: exportX25519PublicKey(privateKey), privateKey };
}

/** Raw 32-byte public key of an X25519 private or public KeyObject (from its JWK `x`). */
export function exportX25519PublicKey(key: KeyObject): Uint8Array {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  if (pub.asymmetricKeyType !== 'x25519') throw new SecAggError('KEY_INVALID', 'key is not an X25519 key', { type: pub.asymmetricKeyType });
  const x = pub.export({ format: 'jwk' }).x;
  if (typeof x !== 'string') throw new SecAggError('KEY_INVALID', 'X25519 key has no public component');
  return new Uint8Array(Buffer.from(x, 'base64url'));
}

/** Imports a raw 32-byte X25519 public key (as advertised) into a KeyObject via SPKI DER. */
export function importX25519PublicKey(raw: Uint8Array): KeyObject {
  if (!(raw instanceof Uint8Array) || raw.length !== X25519_KEY_BYTES) {
    throw new SecAggError('KEY_INVALID', 'X25519 public key must be 32 bytes', { got: raw instanceof Uint8Array ? raw.length : typeof raw });
  }
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

/**
 * Raw 32-byte private scalar of an X25519 private key: the secret a site Shamir-shares so that
 * survivors can rebuild a dropped site's pairwise masks (Bonawitz et al. 2017, round 1).
 */
export function exportX25519PrivateKey(key: KeyObject): Uint8Array {
  if (key.type !== 'private' || key.asymmetricKeyType !== 'x25519') throw new SecAggError('KEY_INVALID', 'key is not an X25519 private key');
  const d = key.export({ format: 'jwk' }).d;
  if (typeof d !== 'string') throw new SecAggError('KEY_INVALID', 'X25519 key has no private component');
  return new Uint8Array(Buffer.from(d, 'base64url'));
}

/** Imports a raw 32-byte X25519 private key (e.g. one rebuilt from Shamir shares). */
export function importX25519PrivateKey(raw: Uint8Array): KeyObject {
  if (!(raw instanceof Uint8Array) || raw.length !== X25519_KEY_BYTES) {
    throw new SecAggError('KEY_INVALID', 'X25519 private key must be 32 bytes', { got: raw instanceof Uint8Array ? raw.length : typeof raw });
  }
  return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, raw]), format: 'der', type: 'pkcs8' });
}

/**
 * X25519 Diffie–Hellman: the 32-byte shared secret of our private key and a peer's raw public key.
 * Refuses low-order peer keys (all-zero secret) with `KEY_INVALID`.
 */
export function sharedSecret(privateKey: KeyObject, peerPublicKey: Uint8Array): Uint8Array {
  const publicKey = importX25519PublicKey(peerPublicKey);
  let secret: Buffer;
  try {
    secret = diffieHellman({ privateKey, publicKey });
  } catch (cause) {
    throw new SecAggError('KEY_INVALID', 'X25519 agreement failed (low-order or invalid peer key)', {}, { cause });
  }
  if (secret.every((b) => b === 0)) throw new SecAggError('KEY_INVALID', 'X25519 agreement gave the all-zero secret (low-order peer key)');
  return new Uint8Array(secret);
}

/** Identifies a run and round; every derived key is bound to both. */
export interface RoundContext {
  readonly run: string;
  readonly round: number;
}

/**
 * Derives the 32-byte pairwise mask seed s_{u,v} from the s-key agreement (Bonawitz et al. 2017,
 * round 2). Symmetric: both sites get the same seed whatever the argument order, since the ids
 * enter in canonical order.
 */
export function derivePairwiseMaskSeed(shared: Uint8Array, context: RoundContext & { readonly siteA: string; readonly siteB: string }): Uint8Array {
  assertBytes(shared, X25519_KEY_BYTES, 'shared secret');
  assertRound(context.round);
  assertId(context.run, 'run');
  assertId(context.siteA, 'siteA');
  assertId(context.siteB, 'siteB');
  if (context.siteA === context.siteB) throw new SecAggError('INVALID_ARGUMENT', 'a pairwise seed needs two distinct sites', { site: context.siteA });
  const [lo, hi] = compareSiteIds(context.siteA, context.siteB) < 0 ? [context.siteA, context.siteB] : [context.siteB, context.siteA];
  return hkdf(shared, PAIRWISE_MASK_SEED_LABEL, [context.run, context.round, lo, hi]);
}

/**
 * Derives the 32-byte AES-256-GCM key for shares sent `from` → `to` from the c-key agreement
 * (Bonawitz et al. 2017, round 1). Directional: the key for `to` → `from` differs.
 */
export function deriveShareEncryptionKey(shared: Uint8Array, context: RoundContext & { readonly from: string; readonly to: string }): Uint8Array {
  assertBytes(shared, X25519_KEY_BYTES, 'shared secret');
  assertRound(context.round);
  assertId(context.run, 'run');
  assertId(context.from, 'from');
  assertId(context.to, 'to');
  return hkdf(shared, SHARE_ENCRYPTION_LABEL, [context.run, context.round, context.from, context.to]);
}

// node:crypto's hkdfSync refuses info over 1024 bytes.
const HKDF_MAX_INFO_BYTES = 1024;

function hkdf(ikm: Uint8Array, label: string, fields: readonly (string | number)[]): Uint8Array {
  // Salt and info both carry the label; info also binds run, round and the site ids.
  const salt = encodeFields(label, []);
  const info = encodeFields(label, fields);
  if (info.length > HKDF_MAX_INFO_BYTES) throw new SecAggError('INVALID_ARGUMENT', 'run or site ids too long for HKDF info', { bytes: info.length });
  return new Uint8Array(hkdfSync('sha256', ikm, salt, info, X25519_KEY_BYTES));
}
