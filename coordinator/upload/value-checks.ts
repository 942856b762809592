/**
 * The value checks the coordinator makes on delta bytes as they arrive (the layout itself is
 * aggregation/wire-layout.ts, shared with the site agent).
 */
import { checkFinite, createKernels, segmentAt, type DeltaEncoding, type Kernels, type Segment } from '../../aggregation/index.js';
import { CoordinatorError } from '../core/errors.js';

/**
 * Checks the values of `data` (delta bytes from `offset`, unit-aligned) that the coordinator can
 * judge: f32 and bf16 values must be finite, int8 block scales finite and not negative. Masked
 * words are uniformly random by design and cannot be checked.
 */
export function checkValues(encoding: DeltaEncoding, segments: readonly Segment[], offset: number, data: Buffer): void {
  if (encoding === 'f32') {
    // A view when the chunk's bytes are 4-aligned (they are, as gRPC hands them over); a copy otherwise.
    const values = data.byteOffset % 4 === 0 ? new Float32Array(data.buffer, data.byteOffset, data.length / 4) : new Float32Array(Uint8Array.prototype.slice.call(data).buffer);
    const bad = checkFinite(values);
    if (bad >= 0) throw nonFinite(offset + bad * 4, 'value');
  } else if (encoding === 'bf16') {
    const bad = firstNonFiniteBf16(data);
    if (bad >= 0) throw nonFinite(offset + bad, 'bf16 value');
  } else if (encoding === 'int8') {
    const end = offset + data.length;
    for (let k = segmentAt(segments, offset); k < segments.length && segments[k]!.start < end; k++) {
      const s = segments[k]!;
      const first = Math.max(s.start, offset);
      for (let b = first + ((s.start - first) % s.unit + s.unit) % s.unit; b < Math.min(s.end, end); b += s.unit) {
        const scale = data.readFloatLE(b - offset);
        if (!Number.isFinite(scale) || scale < 0) throw nonFinite(b, 'int8 block scale');
      }
    }
  }
}

/** From this many bytes a chunk's bf16 values are checked by the SIMD kernel, below by the word loop. */
const BF16_KERNEL_MIN_BYTES = 8192;
/** The kernels, made on first use; every call is synchronous. */
let bf16Kernels: Kernels | undefined;

/**
 * Byte index of the first bf16 value of `data` that is infinite or NaN, or -1. bf16 keeps f32's
 * exponent, so all eight exponent bits set means not finite. Two values per 32-bit word: a half
 * is bad when the complement of its exponent bits is zero — three operations for two values,
 * about ten times `readUInt16LE` per value.
 */
export function firstNonFiniteBf16(data: Uint8Array): number {
  if (data.length >= BF16_KERNEL_MIN_BYTES) {
    // A chunk: the SIMD kernel, eight values a compare (about four times the word loop per CPU-second).
    const at = (bf16Kernels ??= createKernels()).findNonFiniteBf16(data);
    return at < 0 ? -1 : 2 * at;
  }
  // An odd address cannot be viewed as words (never seen from gRPC), nor a scrap: the byte loop.
  const head = data.byteOffset % 4;
  if (head % 2 !== 0 || data.length < head + 4) return firstBadHalf(data, 0, data.length);
  const inHead = firstBadHalf(data, 0, head);
  if (inHead >= 0) return inHead;
  const words = Math.floor((data.length - head) / 4);
  const view = new Uint32Array(data.buffer, data.byteOffset + head, words);
  for (let i = 0; i < words; i++) {
    const x = ~view[i]! & 0x7f807f80;
    if ((x & 0xffff) === 0 || x >>> 16 === 0) return firstBadHalf(data, head + 4 * i, head + 4 * i + 4);
  }
  return firstBadHalf(data, head + 4 * words, data.length);
}

/** The slow, obvious check over bytes [from, to) (an odd-aligned buffer, heads and tails). */
function firstBadHalf(data: Uint8Array, from: number, to: number): number {
  for (let i = from; i + 1 < to; i += 2) if (((data[i]! | (data[i + 1]! << 8)) & 0x7f80) === 0x7f80) return i;
  return -1;
}

function nonFinite(byte: number, what: string): CoordinatorError {
  return new CoordinatorError('NON_FINITE', `delta ${what} at byte ${byte} is NaN, infinite or invalid`, { byte });
}
