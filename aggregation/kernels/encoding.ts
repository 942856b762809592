/**
 * Plain-mode wire encodings of a delta and where an element range lives in their bytes.
 *
 * A spool (or an upload) is the raw wire bytes of all tensors in the global model's order, each
 * tensor encoded on its own:
 * - `f32`: 4 bytes per value, little-endian;
 * - `bf16`: 2 bytes per value, the high half of the f32;
 * - `int8`: blocks of {@link INT8_BLOCK} values (the tensor's last block may be shorter), each a
 *   little-endian f32 scale followed by its int8 values; value = scale · q. Blocks never straddle
 *   tensors, so a tensor of n values takes ⌈n/128⌉·4 + n bytes.
 */
import { AggregationError } from '../errors.js';
import { invariant } from '../invariant.js';

/** The plain-mode wire encodings of a delta. */
export type WireEncoding = 'f32' | 'bf16' | 'int8';

/** Every {@link WireEncoding}, for validation. */
export const WIRE_ENCODINGS: readonly WireEncoding[] = ['f32', 'bf16', 'int8'];

/** Values per int8 block (each block carries one f32 scale). */
export const INT8_BLOCK = 128;
/** Bytes of one full int8 block: scale + values. */
export const INT8_BLOCK_BYTES = 4 + INT8_BLOCK;

/** Bytes of a tensor of `n` values in the int8 block encoding: ⌈n/128⌉·4 + n. */
export function int8Bytes(n: number): number {
  checkCount(n, 'n');
  return Math.ceil(n / INT8_BLOCK) * 4 + n;
}

/** Bytes of a tensor of `n` values in `encoding`. */
export function encodedBytes(encoding: WireEncoding, n: number): number {
  checkCount(n, 'n');
  switch (encoding) {
    case 'f32':
      return 4 * n;
    case 'bf16':
      return 2 * n;
    case 'int8':
      return int8Bytes(n);
    default:
      throw new AggregationError('INVALID_ARGUMENT', `unknown wire encoding ${JSON.stringify(encoding)}`, { encoding });
  }
}

/**
 * Bytes to read, relative to the start of a tensor's encoding, to decode its values
 * [elemStart, elemStart + count): for int8 the read starts at the scale of the block holding
 * `elemStart`, and `skip` values of that block precede `elemStart`; for f32 and bf16 `skip` is 0.
 */
export interface EncodedRange {
  readonly byteOffset: number;
  readonly byteLength: number;
  readonly skip: number;
}

/** The byte range of values [elemStart, elemStart + count) within one tensor's encoding. */
export function encodedRange(encoding: WireEncoding, elemStart: number, count: number): EncodedRange {
  checkCount(elemStart, 'elemStart');
  checkCount(count, 'count');
  if (encoding !== 'int8') {
    const size = encodedBytes(encoding, 1); // 4 or 2; refuses an unknown encoding
    return { byteOffset: elemStart * size, byteLength: count * size, skip: 0 };
  }
  const block = Math.floor(elemStart / INT8_BLOCK);
  const byteOffset = block * INT8_BLOCK_BYTES;
  // Bytes of the first elemStart + count values, cut after the last one: ⌈e/128⌉·4 + e.
  return { byteOffset, byteLength: count === 0 ? 0 : int8Bytes(elemStart + count) - byteOffset, skip: elemStart - block * INT8_BLOCK };
}

/** One tensor's share of a flat element range, with its bytes in a spool of one encoding. */
export interface SpoolSegment {
  /** Index of the tensor in the layout. */
  readonly tensor: number;
  /** First value of the segment within the tensor. */
  readonly elemInTensor: number;
  /** Values in the segment. */
  readonly count: number;
  /** Position of the segment's first value within the requested flat range. */
  readonly outOffset: number;
  /** Byte offset of the tensor's encoding in the spool. */
  readonly tensorByteOffset: number;
  /** Bytes to read from the spool: [byteOffset, byteOffset + byteLength), absolute. */
  readonly byteOffset: number;
  readonly byteLength: number;
  /** Values of the first int8 block before `elemInTensor` (0 for f32 and bf16). */
  readonly skip: number;
}

/**
 * Maps flat element ranges of a model (its tensors' values concatenated in order) to byte ranges
 * of a spool in one encoding. Construction is O(tensors); each lookup is a binary search.
 */
export class SpoolLayout {
  private readonly elemStarts: number[] = [];
  private readonly byteStarts: number[] = [];
  /** Values in the whole model. */
  readonly elements: number;
  /** Bytes of the whole spool. */
  readonly bytes: number;

  /** `tensorElements[i]` is the value count of tensor i, in the global model's order. */
  constructor(
    readonly encoding: WireEncoding,
    readonly tensorElements: readonly number[],
  ) {
    let elems = 0;
    let bytes = 0;
    for (const n of tensorElements) {
      this.elemStarts.push(elems);
      this.byteStarts.push(bytes);
      elems += n;
      bytes += encodedBytes(encoding, n);
    }
    this.elements = elems;
    this.bytes = bytes;
  }

  /** Byte offset in the spool where tensor `index` starts. */
  tensorByteOffset(index: number): number {
    const at = this.byteStarts[index];
    if (at === undefined) throw new AggregationError('OUT_OF_RANGE', `no tensor ${index} in a layout of ${this.byteStarts.length}`, { index });
    return at;
  }

  /** The per-tensor segments of flat values [elemOffset, elemOffset + count), in order. */
  segments(elemOffset: number, count: number): SpoolSegment[] {
    checkCount(elemOffset, 'elemOffset');
    checkCount(count, 'count');
    if (elemOffset + count > this.elements) {
      throw new AggregationError('OUT_OF_RANGE', `values [${elemOffset}, +${count}) outside a model of ${this.elements}`, { elemOffset, count, elements: this.elements });
    }
    const out: SpoolSegment[] = [];
    let tensor = this.tensorAt(elemOffset);
    for (let done = 0; done < count; tensor++) {
      const n = this.tensorElements[tensor];
      const elemStart = this.elemStarts[tensor];
      const tensorByteOffset = this.byteStarts[tensor];
      invariant(n !== undefined && elemStart !== undefined && tensorByteOffset !== undefined, 'values inside the model lie in one of its tensors');
      const elemInTensor = elemOffset + done - elemStart;
      const take = Math.min(n - elemInTensor, count - done);
      if (take === 0) continue; // empty tensors hold no values
      const range = encodedRange(this.encoding, elemInTensor, take);
      out.push({ tensor, elemInTensor, count: take, outOffset: done, tensorByteOffset, byteOffset: tensorByteOffset + range.byteOffset, byteLength: range.byteLength, skip: range.skip });
      done += take;
    }
    return out;
  }

  /** The last tensor whose first value is at or before `elem`. */
  private tensorAt(elem: number): number {
    let lo = 0;
    let hi = this.elemStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.elemStarts[mid]! <= elem) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

/**
 * Encodes f32 values as int8 blocks (symmetric): per block scale = f32(absmax / 127) and
 * q = round-half-away-from-zero(x / scale) in [−127, 127]; an all-zero block (or one whose scale
 * underflows to 0) gets scale 0 and all q = 0. Non-finite input is refused (`NON_FINITE`).
 */
export function encodeInt8Blocks(values: Float32Array): Uint8Array {
  const out = new Uint8Array(int8Bytes(values.length));
  const view = new DataView(out.buffer);
  let at = 0;
  for (let start = 0; start < values.length; start += INT8_BLOCK) {
    const end = Math.min(start + INT8_BLOCK, values.length);
    let absmax = 0;
    for (let i = start; i < end; i++) {
      const v = values[i]!;
      if (v - v !== 0) throw new AggregationError('NON_FINITE', `value ${i} is ${v}: int8 blocks encode finite values only`, { index: i });
      absmax = Math.max(absmax, Math.abs(v));
    }
    const scale = Math.fround(absmax / 127);
    view.setFloat32(at, scale, true);
    at += 4;
    for (let i = start; i < end; i++, at++) {
      if (scale === 0) continue; // the buffer is zeroed
      const r = values[i]! / scale;
      const q = Math.min(127, Math.max(-127, Math.sign(r) * Math.round(Math.abs(r))));
      out[at] = q & 0xff;
    }
  }
  return out;
}

/** Decodes `n` values from int8 blocks: value = f32(scale · q). Refuses a buffer of the wrong size. */
export function decodeInt8Blocks(bytes: Uint8Array, n: number): Float32Array {
  if (bytes.length !== int8Bytes(n)) {
    throw new AggregationError('TENSOR_MISMATCH', `${bytes.length} bytes is not the int8 encoding of ${n} values (${int8Bytes(n)} bytes)`, { byteLength: bytes.length, n });
  }
  const out = new Float32Array(n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  for (let start = 0; start < n; start += INT8_BLOCK) {
    const scale = view.getFloat32(at, true);
    at += 4;
    const end = Math.min(start + INT8_BLOCK, n);
    for (let i = start; i < end; i++, at++) out[i] = scale * view.getInt8(at);
  }
  return out;
}

function checkCount(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new AggregationError('INVALID_ARGUMENT', `${what} must be a non-negative safe integer, got ${n}`, { [what]: n });
}
