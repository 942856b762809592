/**
 * The mask generator: a cryptographic PRG expanding a 32-byte seed into words of Z_2^b with
 * AES-256-CTR (key = seed, IV = 0, encrypting zeros), as Google's production SecAgg does
 * (Bonawitz et al. 2017, round 2 "masked input collection": PRG(b_u) and PRG(s_{u,v})).
 *
 * Words are read little-endian from the keystream, so word i of a mask is always keystream bytes
 * [i·w, (i+1)·w) for w = b/8: a chunk starting at any word offset can be expanded on its own.
 */
import { Buffer } from 'node:buffer';
import { type Cipher, createCipheriv } from 'node:crypto';
import { assertBytes, SecAggError } from './errors.js';
import { invariant } from '../invariant.js';
import { type NativeKernels, nativeKernels } from '../native.js';

/** Word widths of the masking ring Z_2^b. */
export type MaskBits = 16 | 32;
/** A vector of Z_2^b words. */
export type MaskWords = Uint32Array | Uint16Array;

/**
 * Bytes of keystream made per cipher call. Node 20's `cipher.update` allocates its output on every
 * call, so the per-call cost is amortised over 256 KiB (measured: 64 KiB reaches ~64% of `openssl
 * speed`, 256 KiB ~72%; 1 MiB falls back to ~40%, as glibc then maps fresh pages for every output).
 */
export const PRG_CHUNK_BYTES = 256 * 1024;
/**
 * The plaintext AES-CTR encrypts: zeros, shared by every keystream and never written; one AES
 * block longer than a chunk, so a chunk that starts mid-block (the skipped bytes) still fits.
 */
const ZEROS = Buffer.alloc(PRG_CHUNK_BYTES + 16);
const AES_BLOCK = 16;
const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/**
 * Expands `seed` into `count` words of `bits` bits, starting at word `wordOffset` of the infinite
 * keystream (CTR counter = ⌊offset·w/16⌋, skipping the first offset·w mod 16 bytes of that block).
 * expandMask(s, a, n) ‖ expandMask(s, a+n, m) equals expandMask(s, a, n+m).
 */
export function expandMask(seed: Uint8Array, wordOffset: number, count: number, bits: 32): Uint32Array;
export function expandMask(seed: Uint8Array, wordOffset: number, count: number, bits: 16): Uint16Array;
export function expandMask(seed: Uint8Array, wordOffset: number, count: number, bits: MaskBits): MaskWords;
export function expandMask(seed: Uint8Array, wordOffset: number, count: number, bits: MaskBits): MaskWords {
  checkCount(count);
  if (bits !== 32 && bits !== 16) throw new SecAggError('INVALID_ARGUMENT', 'mask bits must be 16 or 32', { bits });
  const out = bits === 32 ? new Uint32Array(count) : new Uint16Array(count);
  expandMaskInto(out, seed, wordOffset);
  return out;
}

/**
 * {@link expandMask} into a caller-owned buffer (its length is the word count, its type the word
 * width), so hot loops can reuse one buffer instead of allocating a mask per chunk.
 */
export function expandMaskInto(out: MaskWords, seed: Uint8Array, wordOffset: number): void {
  const stream = new Keystream(seed, wordOffset, out.length, bitsOf(out));
  const bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  for (let chunk = stream.next(); chunk !== undefined; chunk = stream.next()) bytes.set(chunk, stream.wordsBefore * stream.wordBytes);
  if (!LITTLE_ENDIAN) swapToLittleEndian(bytes, stream.wordBytes);
}

/**
 * Walks the keystream for words [wordOffset, wordOffset + count) in chunks of at most
 * {@link PRG_CHUNK_BYTES}, handing each to `visit` with the index (relative to `wordOffset`) of its
 * first word. The bytes are valid only during the call. This is the generator itself, with nothing
 * copied: {@link applyMask} folds each chunk into its target, and the benchmark measures it beside
 * `openssl speed`, which likewise discards what it encrypts.
 */
export function forEachKeystreamChunk(
  seed: Uint8Array,
  wordOffset: number,
  count: number,
  bits: MaskBits,
  visit: (bytes: Uint8Array, firstWord: number) => void,
): void {
  if (bits !== 32 && bits !== 16) throw new SecAggError('INVALID_ARGUMENT', 'mask bits must be 16 or 32', { bits });
  const stream = new Keystream(seed, wordOffset, count, bits);
  for (let chunk = stream.next(); chunk !== undefined; chunk = stream.next()) visit(chunk, stream.wordsBefore);
}

/**
 * Adds (`sign` = +1) or subtracts (−1) PRG(seed) to `target` in place, modulo 2^b, where word i
 * of `target` meets word `wordOffset + i` of the keystream. Streams the keystream in 256 KiB
 * chunks, so no mask-sized buffer is allocated.
 */
export function applyMask(target: MaskWords, seed: Uint8Array, wordOffset: number, sign: 1 | -1): void {
  if (sign !== 1 && sign !== -1) throw new SecAggError('INVALID_ARGUMENT', 'mask sign must be +1 or -1', { sign });
  const stream = new Keystream(seed, wordOffset, target.length, bitsOf(target));
  for (let chunk = stream.next(); chunk !== undefined; chunk = stream.next()) {
    const at = stream.wordsBefore;
    // Separate monomorphic loops per word type and sign keep V8 on its fast typed-array path.
    if (target instanceof Uint32Array) {
      const words = stream.words32(chunk);
      if (sign === 1) add32(target, words, at);
      else sub32(target, words, at);
    } else {
      const words = stream.words16(chunk);
      if (sign === 1) add16(target, words, at);
      else sub16(target, words, at);
    }
  }
}

// Stores into Uint32Array/Uint16Array reduce mod 2^b (ToUint32/ToUint16), so plain + and − wrap.
// Unrolled by four: ~25% faster in V8 than the plain loop, which otherwise bounds the mask rate.
// Exported for the plain-JS path of MaskWorkspace (mask-workspace.ts), not from the index.
/** t[at + i] += w[i] mod 2^32. */
export function add32(t: Uint32Array, w: Uint32Array, at: number): void {
  const n = w.length;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    t[at + i] = t[at + i]! + w[i]!;
    t[at + i + 1] = t[at + i + 1]! + w[i + 1]!;
    t[at + i + 2] = t[at + i + 2]! + w[i + 2]!;
    t[at + i + 3] = t[at + i + 3]! + w[i + 3]!;
  }
  for (; i < n; i++) t[at + i] = t[at + i]! + w[i]!;
}
/** t[at + i] −= w[i] mod 2^32. */
export function sub32(t: Uint32Array, w: Uint32Array, at: number): void {
  const n = w.length;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    t[at + i] = t[at + i]! - w[i]!;
    t[at + i + 1] = t[at + i + 1]! - w[i + 1]!;
    t[at + i + 2] = t[at + i + 2]! - w[i + 2]!;
    t[at + i + 3] = t[at + i + 3]! - w[i + 3]!;
  }
  for (; i < n; i++) t[at + i] = t[at + i]! - w[i]!;
}
/** t[at + i] += w[i] mod 2^16. */
export function add16(t: Uint16Array, w: Uint16Array, at: number): void {
  const n = w.length;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    t[at + i] = t[at + i]! + w[i]!;
    t[at + i + 1] = t[at + i + 1]! + w[i + 1]!;
    t[at + i + 2] = t[at + i + 2]! + w[i + 2]!;
    t[at + i + 3] = t[at + i + 3]! + w[i + 3]!;
  }
  for (; i < n; i++) t[at + i] = t[at + i]! + w[i]!;
}
/** t[at + i] −= w[i] mod 2^16. */
export function sub16(t: Uint16Array, w: Uint16Array, at: number): void {
  const n = w.length;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    t[at + i] = t[at + i]! - w[i]!;
    t[at + i + 1] = t[at + i + 1]! - w[i + 1]!;
    t[at + i + 2] = t[at + i + 2]! - w[i + 2]!;
    t[at + i + 3] = t[at + i + 3]! - w[i + 3]!;
  }
  for (; i < n; i++) t[at + i] = t[at + i]! - w[i]!;
}

function bitsOf(words: MaskWords): MaskBits {
  if (words instanceof Uint32Array) return 32;
  if (words instanceof Uint16Array) return 16;
  throw new SecAggError('INVALID_ARGUMENT', 'masked vectors must be Uint32Array or Uint16Array');
}

function checkCount(count: number): void {
  if (!Number.isSafeInteger(count) || count < 0) throw new SecAggError('INVALID_ARGUMENT', 'word count must be a non-negative safe integer', { count });
}

/**
 * Throws unless `seed` is 32 bytes and words [wordOffset, wordOffset + count) of `bits` bits lie at
 * byte offsets that are safe integers: what a {@link Keystream} over them checks, for callers that
 * hand the seed to the native masker instead.
 */
export function checkStream(seed: Uint8Array, wordOffset: number, count: number, bits: MaskBits): void {
  assertBytes(seed, 32, 'mask seed');
  checkCount(count);
  if (!Number.isSafeInteger(wordOffset) || wordOffset < 0 || !Number.isSafeInteger((wordOffset + count) * (bits / 8))) {
    throw new SecAggError('INVALID_ARGUMENT', 'word offset must be a non-negative safe integer', { wordOffset });
  }
}

/**
 * Keystream bytes for words [offset, offset + count), handed out in chunks of at most
 * PRG_CHUNK_BYTES ({@link next}), of as many words as asked ({@link take}), or written into the
 * caller's memory ({@link into}). With the native keystream (aggregation/native.ts) the bytes are written
 * where they are wanted and nothing is allocated per call; otherwise one node:crypto cipher per
 * keystream, so fused loops over slices keep one per seed and pay for no other set-up.
 */
export class Keystream {
  readonly wordBytes: number;
  /** Words handed out before the chunk last returned by {@link next}. */
  wordsBefore = 0;
  private nextWord = 0;
  private readonly key: Uint8Array;
  /** The native keystream (aggregation/native.ts), or undefined where node:crypto makes it. */
  private readonly generate: NativeKernels['aes256CtrInto'];
  /** The node:crypto cipher, where the native keystream is unavailable. */
  private readonly cipher: Cipher | undefined;
  private scratch: Uint8Array | undefined;
  /** The native keystream's buffer for {@link next} and {@link take}. */
  private made: Uint8Array | undefined;
  /** Keystream byte (from the stream's start) of the next byte handed out. */
  private byteAt: number;
  /** Bytes of the first block before the first word (node:crypto path: not yet skipped). */
  private skip: number;
  /** Bytes left to hand out, the skipped ones included. */
  private remaining: number;

  constructor(seed: Uint8Array, wordOffset: number, count: number, bits: MaskBits) {
    checkStream(seed, wordOffset, count, bits);
    this.wordBytes = bits / 8;
    const byteOffset = wordOffset * this.wordBytes;
    this.key = Uint8Array.from(seed);
    this.byteAt = byteOffset;
    this.generate = nativeKernels()?.aes256CtrInto;
    if (this.generate === undefined) {
      const iv = Buffer.alloc(AES_BLOCK);
      iv.writeBigUInt64BE(BigInt(Math.floor(byteOffset / AES_BLOCK)), 8);
      this.cipher = createCipheriv('aes-256-ctr', this.key, iv);
    }
    this.skip = byteOffset % AES_BLOCK; // a multiple of wordBytes, since AES_BLOCK is
    this.remaining = this.skip + count * this.wordBytes;
  }

  /** The next chunk of keystream bytes (a whole number of words), or undefined at the end. */
  next(): Uint8Array | undefined {
    if (this.remaining === 0) return undefined;
    const bytes = this.produce(Math.min(PRG_CHUNK_BYTES, this.remaining) - this.skip);
    this.wordsBefore = this.nextWord;
    this.nextWord += bytes.length / this.wordBytes;
    return bytes;
  }

  /**
   * The next `words` words' keystream bytes (at most PRG_CHUNK_BYTES of them, no more than are
   * left), valid until the next call on this keystream.
   */
  take(words: number): Uint8Array {
    const bytes = this.produce(this.checkedBytes(words));
    this.wordsBefore = this.nextWord;
    this.nextWord += words;
    return bytes;
  }

  /**
   * Writes the next `dst.length / wordBytes` words' keystream bytes into `dst` (at most
   * PRG_CHUNK_BYTES, no more than are left): {@link take} without the bytes in between.
   */
  into(dst: Uint8Array): void {
    const words = dst.length / this.wordBytes;
    const n = this.checkedBytes(words);
    if (this.cipher === undefined) this.native(dst);
    else dst.set(this.produce(n));
    this.wordsBefore = this.nextWord;
    this.nextWord += words;
  }

  private checkedBytes(words: number): number {
    const n = words * this.wordBytes;
    if (!(Number.isSafeInteger(words) && words > 0 && n <= PRG_CHUNK_BYTES && n <= this.remaining - this.skip)) {
      throw new SecAggError('INVALID_ARGUMENT', 'keystream slice must be 1..PRG_CHUNK_BYTES bytes and within the words asked for', { words });
    }
    return n;
  }

  /** The next `n` bytes after any skipped ones. */
  private produce(n: number): Uint8Array {
    if (this.cipher === undefined) {
      this.made ??= new Uint8Array(PRG_CHUNK_BYTES);
      const out = this.made.subarray(0, n);
      this.native(out);
      return out;
    }
    const bytes = this.cipher.update(ZEROS.subarray(0, this.skip + n)).subarray(this.skip);
    this.remaining -= this.skip + n;
    this.skip = 0;
    return bytes;
  }

  /** Fills `out` with the native keystream from {@link byteAt}. */
  private native(out: Uint8Array): void {
    invariant(this.generate !== undefined, 'a keystream without a cipher has the native one');
    const block = Math.floor(this.byteAt / AES_BLOCK);
    this.generate(this.key, Math.floor(block / 2 ** 32), block % 2 ** 32, this.byteAt % AES_BLOCK, out);
    this.byteAt += out.length;
    this.remaining -= this.skip + out.length;
    this.skip = 0;
  }

  /** `chunk` as little-endian 32-bit words (copied only if misaligned or on a big-endian host). */
  words32(chunk: Uint8Array): Uint32Array {
    const b = this.aligned(chunk);
    return new Uint32Array(b.buffer, b.byteOffset, b.length / 4);
  }

  /** `chunk` as little-endian 16-bit words. */
  words16(chunk: Uint8Array): Uint16Array {
    const b = this.aligned(chunk);
    return new Uint16Array(b.buffer, b.byteOffset, b.length / 2);
  }

  private aligned(chunk: Uint8Array): Uint8Array {
    if (chunk.byteOffset % this.wordBytes === 0 && LITTLE_ENDIAN) return chunk;
    this.scratch ??= new Uint8Array(PRG_CHUNK_BYTES);
    const copy = this.scratch.subarray(0, chunk.length);
    copy.set(chunk);
    if (!LITTLE_ENDIAN) swapToLittleEndian(copy, this.wordBytes);
    return copy;
  }
}

function swapToLittleEndian(bytes: Uint8Array, wordBytes: number): void {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  if (wordBytes === 4) b.swap32();
  else b.swap16();
}
