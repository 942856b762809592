/**
 * Byte layout of an encoded delta on the wire, shared by the site that sends it and the
 * coordinator that receives it: where each tensor's bytes lie for an encoding, which offsets a
 * chunk may start or end at (whole values, whole int8 blocks), and how a stripe of the delta cuts
 * into per-tensor pieces (DESIGN.md "Tensors"; docs/decisions.md, resumable uploads).
 */
import { invariant } from './invariant.js';
import { INT8_BLOCK_BYTES, int8Bytes, type WireEncoding } from './kernels/encoding.js';

/** Encodings a delta may travel in: plain (`f32`, `bf16`, `int8`) or masked fixed point. */
export type DeltaEncoding = WireEncoding | 'secagg32' | 'secagg16';

/** Whether `encoding` is a masked one of secure aggregation, whose last word is the masked weight word. */
export function isSecureEncoding(encoding: DeltaEncoding): encoding is 'secagg32' | 'secagg16' {
  return encoding === 'secagg32' || encoding === 'secagg16';
}

/** Bytes of one tensor of `n` values in `encoding`. */
export function encodedTensorBytes(encoding: DeltaEncoding, n: number): number {
  switch (encoding) {
    case 'f32':
    case 'secagg32':
      return n * 4;
    case 'bf16':
    case 'secagg16':
      return n * 2;
    case 'int8':
      return int8Bytes(n);
  }
}

/** One contiguous byte range of the delta: a tensor, or the masked weight word of a secure upload. */
export interface Segment {
  readonly index: number;
  readonly start: number;
  readonly end: number;
  /** Bytes of one unit a chunk may not split: a value, or a whole int8 block (the last may be shorter). */
  readonly unit: number;
}

/** The delta's segments in order; secure encodings end with one weight word. */
export function deltaSegments(encoding: DeltaEncoding, elements: readonly number[]): Segment[] {
  const unit = encoding === 'int8' ? INT8_BLOCK_BYTES : encoding === 'bf16' || encoding === 'secagg16' ? 2 : 4;
  const out: Segment[] = [];
  let at = 0;
  elements.forEach((n, index) => {
    const bytes = encodedTensorBytes(encoding, n);
    out.push({ index, start: at, end: at + bytes, unit });
    at += bytes;
  });
  if (encoding === 'secagg32' || encoding === 'secagg16') out.push({ index: elements.length, start: at, end: at + unit, unit });
  return out;
}

/** Total bytes of the delta. */
export function segmentsBytes(segments: readonly Segment[]): number {
  return segments.length === 0 ? 0 : segments[segments.length - 1]!.end;
}

/** Index of the segment holding byte `offset` (the last one when `offset` is the end). */
export function segmentAt(segments: readonly Segment[], offset: number): number {
  let lo = 0;
  let hi = segments.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (segments[mid]!.start <= offset) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** Whether a chunk may start or end at `offset`: between whole values (whole blocks for int8). */
export function isUnitBoundary(segments: readonly Segment[], offset: number): boolean {
  const total = segmentsBytes(segments);
  if (offset === 0 || offset === total) return true;
  if (offset < 0 || offset > total) return false;
  const s = segments[segmentAt(segments, offset)];
  invariant(s !== undefined, 'an offset inside a non-empty delta lies in one of its segments');
  return (offset - s.start) % s.unit === 0;
}

/** A tensor's bytes within one stripe; its SHA-256 travels after its last chunk. */
export interface Piece {
  readonly tensor: number;
  readonly start: number;
  readonly end: number;
}

/** The pieces of stripe [start, end): every segment cut to the stripe. */
export function stripePieces(segments: readonly Segment[], start: number, end: number): Piece[] {
  const out: Piece[] = [];
  for (const s of segments) {
    const a = Math.max(s.start, start);
    const b = Math.min(s.end, end);
    if (a < b) out.push({ tensor: s.index, start: a, end: b });
  }
  return out;
}
