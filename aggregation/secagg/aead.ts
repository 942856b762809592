/**
 * AES-256-GCM encryption of Shamir shares between sites (Bonawitz et al. 2017, round 1 "share
 * keys"): the coordinator relays the ciphertexts but cannot read or redirect them, since the
 * associated data binds (run, round, from, to).
 */
import { Buffer } from 'node:buffer';
import { createCipheriv, createDecipheriv, randomBytes as nodeRandomBytes } from 'node:crypto';
import { assertBytes, SecAggError, type SecAggErrorCode } from './errors.js';
import { type Result, err, ok } from '../result.js';
import { type RandomBytes, assertId, assertRound, encodeFields } from './encoding.js';
import { SHAMIR_SHARE_BYTES } from './shamir.js';

/** Domain-separation label of the associated data of a share ciphertext. */
export const SHARE_AAD_LABEL = 'fedhpc/secagg/v1/share-aad';
/** GCM nonce length (random per message; a key encrypts one message per round). */
export const GCM_NONCE_BYTES = 12;
/** GCM tag length. */
export const GCM_TAG_BYTES = 16;

/** Who sends a share to whom, in which run and round. */
export interface ShareContext {
  readonly run: string;
  readonly round: number;
  readonly from: string;
  readonly to: string;
}

/** A sealed share payload: the context in clear (bound as AAD), nonce, ciphertext and tag. */
export interface SealedShare {
  readonly context: ShareContext;
  readonly nonce: Uint8Array;
  readonly ciphertext: Uint8Array;
  readonly tag: Uint8Array;
}

/** Canonical associated data of a share: label, run, round, from, to. */
export function shareAssociatedData(context: ShareContext): Uint8Array {
  assertId(context.run, 'run');
  assertRound(context.round);
  assertId(context.from, 'from');
  assertId(context.to, 'to');
  return encodeFields(SHARE_AAD_LABEL, [context.run, context.round, context.from, context.to]);
}

/**
 * Encrypts `plaintext` under a 32-byte key (from {@link deriveShareEncryptionKey}) with a fresh
 * 12-byte nonce from `randomBytes` (Bonawitz et al. 2017, round 1).
 */
export function sealShare(key: Uint8Array, context: ShareContext, plaintext: Uint8Array, randomBytes: RandomBytes = nodeRandomBytes): SealedShare {
  assertBytes(key, 32, 'share encryption key');
  const aad = shareAssociatedData(context);
  const nonce = new Uint8Array(randomBytes(GCM_NONCE_BYTES));
  assertBytes(nonce, GCM_NONCE_BYTES, 'randomBytes output');
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: GCM_TAG_BYTES });
  cipher.setAAD(aad);
  const ciphertext = new Uint8Array(Buffer.concat([cipher.update(plaintext), cipher.final()]));
  return { context: { ...context }, nonce, ciphertext, tag: new Uint8Array(cipher.getAuthTag()) };
}

/**
 * Decrypts a sealed share for the `expected` context (the receiver's own view of run, round,
 * sender and itself), which is what enters the AAD. Refusals: `SHARE_MALFORMED` (sizes),
 * `SHARE_CONTEXT_MISMATCH` (the clear context differs from the expected one), `SHARE_AUTH_FAILED`
 * (tag check failed: wrong key, tampered bytes, or a context rewritten in transit).
 */
export function openShare(key: Uint8Array, sealed: SealedShare, expected: ShareContext): Result<Uint8Array, SecAggErrorCode> {
  assertBytes(key, 32, 'share encryption key');
  const where = { from: expected.from, to: expected.to, round: expected.round };
  if (!(sealed.nonce instanceof Uint8Array) || sealed.nonce.length !== GCM_NONCE_BYTES || !(sealed.tag instanceof Uint8Array) || sealed.tag.length !== GCM_TAG_BYTES || !(sealed.ciphertext instanceof Uint8Array)) {
    return err('SHARE_MALFORMED', 'sealed share has a bad nonce, tag or ciphertext', where);
  }
  const c = sealed.context;
  if (c.run !== expected.run || c.round !== expected.round || c.from !== expected.from || c.to !== expected.to) {
    return err('SHARE_CONTEXT_MISMATCH', 'sealed share is addressed to another run, round or pair of sites', { ...where, sealedFrom: c.from, sealedTo: c.to, sealedRound: c.round });
  }
  const decipher = createDecipheriv('aes-256-gcm', key, sealed.nonce, { authTagLength: GCM_TAG_BYTES });
  decipher.setAAD(shareAssociatedData(expected));
  decipher.setAuthTag(sealed.tag);
  const head = decipher.update(sealed.ciphertext);
  try {
    return ok(new Uint8Array(Buffer.concat([head, decipher.final()])));
  } catch {
    head.fill(0);
    return err('SHARE_AUTH_FAILED', 'share failed authentication (wrong key, tampered ciphertext or associated data)', where);
  }
}

/** The plaintext a site seals for one neighbour: its shares of s^SK and of the self-mask seed b. */
export interface SharePayload {
  /** Shamir x-coordinate of the receiving neighbour. */
  readonly x: number;
  /** Share of the sender's s-key private scalar (pairwise masks), 66 bytes. */
  readonly maskKeyShare: Uint8Array;
  /** Share of the sender's self-mask seed b, 66 bytes. */
  readonly selfSeedShare: Uint8Array;
}

/** Fixed length of an encoded {@link SharePayload}: x (4, BE) ‖ two 66-byte shares. */
export const SHARE_PAYLOAD_BYTES = 4 + 2 * SHAMIR_SHARE_BYTES;

/** Encodes a {@link SharePayload} (Bonawitz et al. 2017, round 1 message body). */
export function encodeSharePayload(payload: SharePayload): Uint8Array {
  if (!Number.isInteger(payload.x) || payload.x < 1 || payload.x > 0xffffffff) throw new SecAggError('INVALID_ARGUMENT', 'share x must be in 1..2^32-1', { x: payload.x });
  assertBytes(payload.maskKeyShare, SHAMIR_SHARE_BYTES, 'maskKeyShare');
  assertBytes(payload.selfSeedShare, SHAMIR_SHARE_BYTES, 'selfSeedShare');
  const out = Buffer.alloc(SHARE_PAYLOAD_BYTES);
  out.writeUInt32BE(payload.x, 0);
  out.set(payload.maskKeyShare, 4);
  out.set(payload.selfSeedShare, 4 + SHAMIR_SHARE_BYTES);
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

/** Decodes a {@link SharePayload}; `SHARE_MALFORMED` for a wrong length or x = 0. */
export function decodeSharePayload(bytes: Uint8Array): Result<SharePayload, SecAggErrorCode> {
  if (!(bytes instanceof Uint8Array) || bytes.length !== SHARE_PAYLOAD_BYTES) return err('SHARE_MALFORMED', `share payload must be ${SHARE_PAYLOAD_BYTES} bytes`);
  const x = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).readUInt32BE(0);
  if (x === 0) return err('SHARE_MALFORMED', 'share x must not be 0');
  return ok({
    x,
    maskKeyShare: bytes.slice(4, 4 + SHAMIR_SHARE_BYTES),
    selfSeedShare: bytes.slice(4 + SHAMIR_SHARE_BYTES),
  });
}
