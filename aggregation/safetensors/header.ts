/**
 * Parsing and building safetensors headers (https://github.com/huggingface/safetensors, format
 * section): 8-byte little-endian length N, N bytes of UTF-8 JSON padded with spaces, then one data
 * buffer in which tensors lie contiguously, without overlap or holes.
 */
import type { AggregationErrorCode } from '../errors.js';
import { invariant } from '../invariant.js';
import { type Result, err, ok } from '../result.js';
import { type Dtype, DTYPE_SIZES, isDtype } from './dtype.js';

/** Largest header accepted, as in the reference implementation (100 MB). */
export const SAFETENSORS_MAX_HEADER_BYTES = 100_000_000;

/** One tensor of a safetensors file, as located by its header. */
export interface SafetensorsTensorInfo {
  readonly name: string;
  readonly dtype: Dtype;
  readonly shape: readonly number[];
  /** Absolute offset of the tensor's first byte in the file. */
  readonly byteOffset: number;
  readonly byteLength: number;
  /** Product of `shape` (1 for a scalar). */
  readonly elements: number;
}

/** A validated safetensors header. */
export interface SafetensorsHeader {
  /** N, the JSON length. The data buffer starts at `8 + headerLength`. */
  readonly headerLength: number;
  /** Absolute offset of the data buffer. */
  readonly dataOffset: number;
  /** Length of the data buffer (end of the last tensor). */
  readonly dataLength: number;
  /** Tensors in data order (ascending offsets). */
  readonly tensors: readonly SafetensorsTensorInfo[];
  /** `__metadata__`, or an empty object when absent. */
  readonly metadata: Readonly<Record<string, string>>;
}

type Issue = { code: AggregationErrorCode; message: string };

function failWith(issues: readonly Issue[]): Result<never, AggregationErrorCode> {
  const first = issues[0];
  invariant(first !== undefined, 'a failed header check has at least one issue');
  return err(first.code, issues.map((i) => i.message));
}

/**
 * Validates the 8-byte length prefix: N must fit the 100 MB limit and, when the file size is known,
 * the file must hold 8 + N bytes.
 */
export function parseHeaderLength(prefix: Uint8Array, fileSize?: number): Result<number, AggregationErrorCode> {
  if (prefix.length < 8) return err('SAFETENSORS_TRUNCATED', `file has ${prefix.length} bytes, fewer than the 8-byte length prefix`);
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(SAFETENSORS_MAX_HEADER_BYTES)) {
    return err('SAFETENSORS_HEADER_INVALID', `header length ${n} exceeds ${SAFETENSORS_MAX_HEADER_BYTES} bytes`);
  }
  const length = Number(n);
  if (fileSize !== undefined && 8 + length > fileSize) {
    return err('SAFETENSORS_TRUNCATED', `header length ${length} runs past the end of a ${fileSize}-byte file`);
  }
  return ok(length);
}

/**
 * Parses and validates a safetensors header. `headerBytes` starts at file offset 0 and holds at
 * least the 8 + N header bytes (it may hold the whole file); `fileSize`, when known, must equal the
 * end of the data buffer. Every problem found is listed; `code` is that of the first.
 */
export function parseSafetensorsHeader(headerBytes: Uint8Array, fileSize?: number): Result<SafetensorsHeader, AggregationErrorCode> {
  const length = parseHeaderLength(headerBytes, fileSize);
  if (!length.ok) return length;
  if (headerBytes.length < 8 + length.value) {
    return err('SAFETENSORS_TRUNCATED', `given ${headerBytes.length} bytes, header needs ${8 + length.value}`);
  }
  return parseHeaderJson(headerBytes.subarray(8, 8 + length.value), fileSize);
}

/** Validates the JSON part of a header (N bytes); see {@link parseSafetensorsHeader}. */
export function parseHeaderJson(json: Uint8Array, fileSize?: number): Result<SafetensorsHeader, AggregationErrorCode> {
  const headerLength = json.length;
  let parsed: unknown;
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(json);
    if (!text.startsWith('{')) return err('SAFETENSORS_HEADER_INVALID', 'header JSON must start with "{"');
    parsed = JSON.parse(text);
  } catch (error) {
    return err('SAFETENSORS_HEADER_INVALID', `header is not UTF-8 JSON: ${String(error)}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return err('SAFETENSORS_HEADER_INVALID', 'header JSON is not an object');
  }
  const issues: Issue[] = [];
  const metadata: Record<string, string> = {};
  const tensors: SafetensorsTensorInfo[] = [];
  const dataOffset = 8 + headerLength;
  for (const [name, entry] of Object.entries(parsed as Record<string, unknown>)) {
    if (name === '__metadata__') {
      parseMetadata(entry, metadata, issues);
      continue;
    }
    const info = parseTensorEntry(name, entry, dataOffset, issues);
    if (info !== undefined) tensors.push(info);
  }
  if (issues.length > 0) return failWith(issues);
  tensors.sort((a, b) => a.byteOffset - b.byteOffset || a.byteLength - b.byteLength);
  let end = dataOffset;
  for (const t of tensors) {
    if (t.byteOffset < end) {
      issues.push({ code: 'SAFETENSORS_OFFSETS_INVALID', message: `tensor ${JSON.stringify(t.name)} overlaps the tensor before it` });
    } else if (t.byteOffset > end) {
      issues.push({ code: 'SAFETENSORS_OFFSETS_INVALID', message: `hole of ${t.byteOffset - end} bytes before tensor ${JSON.stringify(t.name)}` });
    }
    end = Math.max(end, t.byteOffset + t.byteLength);
  }
  const dataLength = end - dataOffset;
  if (fileSize !== undefined && end !== fileSize) {
    issues.push({
      code: 'SAFETENSORS_OFFSETS_INVALID',
      message: end > fileSize ? `tensors end at ${end}, past the end of a ${fileSize}-byte file` : `${fileSize - end} bytes after the last tensor`,
    });
  }
  if (issues.length > 0) return failWith(issues);
  return ok({ headerLength, dataOffset, dataLength, tensors, metadata });
}

function parseMetadata(entry: unknown, into: Record<string, string>, issues: Issue[]): void {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
    issues.push({ code: 'SAFETENSORS_HEADER_INVALID', message: '__metadata__ is not an object' });
    return;
  }
  for (const [key, value] of Object.entries(entry as Record<string, unknown>)) {
    if (typeof value !== 'string') {
      issues.push({ code: 'SAFETENSORS_HEADER_INVALID', message: `__metadata__.${key} is not a string` });
    } else {
      into[key] = value;
    }
  }
}

const TENSOR_KEYS = new Set(['dtype', 'shape', 'data_offsets']);

function parseTensorEntry(name: string, entry: unknown, dataOffset: number, issues: Issue[]): SafetensorsTensorInfo | undefined {
  const where = `tensor ${JSON.stringify(name)}`;
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
    issues.push({ code: 'SAFETENSORS_HEADER_INVALID', message: `${where} is not an object` });
    return undefined;
  }
  const e = entry as Record<string, unknown>;
  const extra = Object.keys(e).filter((k) => !TENSOR_KEYS.has(k));
  if (extra.length > 0) {
    issues.push({ code: 'SAFETENSORS_HEADER_INVALID', message: `${where} has unknown fields ${extra.join(', ')}` });
    return undefined;
  }
  const { dtype, shape, data_offsets: offsets } = e;
  if (!isDtype(dtype)) {
    issues.push({ code: 'SAFETENSORS_DTYPE_UNSUPPORTED', message: `${where} has unsupported dtype ${JSON.stringify(dtype)}` });
    return undefined;
  }
  if (!Array.isArray(shape) || !shape.every((d): d is number => Number.isSafeInteger(d) && d >= 0)) {
    issues.push({ code: 'SAFETENSORS_HEADER_INVALID', message: `${where} shape must be an array of non-negative integers` });
    return undefined;
  }
  const elements = shape.reduce((a, d) => a * d, 1);
  const expected = elements * DTYPE_SIZES[dtype];
  if (!Number.isSafeInteger(expected)) {
    issues.push({ code: 'SAFETENSORS_HEADER_INVALID', message: `${where} is too large` });
    return undefined;
  }
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o): o is number => Number.isSafeInteger(o) && o >= 0) ||
    (offsets[1] as number) < (offsets[0] as number)
  ) {
    issues.push({ code: 'SAFETENSORS_OFFSETS_INVALID', message: `${where} data_offsets must be [begin, end] integers with 0 <= begin <= end` });
    return undefined;
  }
  const [begin, end] = offsets as [number, number];
  if (end - begin !== expected) {
    issues.push({
      code: 'SAFETENSORS_OFFSETS_INVALID',
      message: `${where} spans ${end - begin} bytes but ${dtype}${JSON.stringify(shape)} needs ${expected}`,
    });
    return undefined;
  }
  return { name, dtype, shape: [...shape], byteOffset: dataOffset + begin, byteLength: expected, elements };
}

/** A tensor declaration for a file to be written. */
export interface SafetensorsTensorSpec {
  readonly name: string;
  readonly dtype: Dtype;
  readonly shape: readonly number[];
}

/** The planned layout of a file: header bytes (prefix included) and where each tensor lands. */
export interface SafetensorsPlan {
  readonly headerBytes: Uint8Array;
  readonly header: SafetensorsHeader;
  /** Total file size in bytes. */
  readonly fileSize: number;
}

/**
 * Lays tensors out contiguously in the given order and serialises the header (JSON padded with
 * spaces so that the data buffer starts on an 8-byte boundary). `metadata` defaults to
 * `{ format: 'pt' }`, which transformers expects.
 */
export function planSafetensors(
  tensors: readonly SafetensorsTensorSpec[],
  metadata: Readonly<Record<string, string>> = { format: 'pt' },
): Result<SafetensorsPlan, AggregationErrorCode> {
  const issues: string[] = [];
  const seen = new Set<string>();
  for (const [key, value] of Object.entries(metadata)) {
    if (typeof value !== 'string') issues.push(`metadata ${key} is not a string`);
  }
  const entries: string[] = [`"__metadata__":${JSON.stringify(metadata)}`];
  const located: Array<Omit<SafetensorsTensorInfo, 'byteOffset'> & { begin: number }> = [];
  let at = 0;
  for (const t of tensors) {
    if (t.name === '__metadata__' || seen.has(t.name)) issues.push(`tensor name ${JSON.stringify(t.name)} is reserved or repeated`);
    seen.add(t.name);
    if (!isDtype(t.dtype)) issues.push(`tensor ${JSON.stringify(t.name)} has unsupported dtype ${JSON.stringify(t.dtype)}`);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) issues.push(`tensor ${JSON.stringify(t.name)} has an invalid shape`);
    if (issues.length > 0) continue;
    const elements = t.shape.reduce((a, d) => a * d, 1);
    const byteLength = elements * DTYPE_SIZES[t.dtype];
    // Build JSON by hand: object key order would put integer-like tensor names first.
    entries.push(`${JSON.stringify(t.name)}:${JSON.stringify({ dtype: t.dtype, shape: t.shape, data_offsets: [at, at + byteLength] })}`);
    located.push({ name: t.name, dtype: t.dtype, shape: [...t.shape], byteLength, elements, begin: at });
    at += byteLength;
  }
  if (issues.length > 0) return err('INVALID_ARGUMENT', issues);
  const json = new TextEncoder().encode(`{${entries.join(',')}}`);
  const headerLength = Math.ceil(json.length / 8) * 8;
  const headerBytes = new Uint8Array(8 + headerLength).fill(0x20);
  new DataView(headerBytes.buffer).setBigUint64(0, BigInt(headerLength), true);
  headerBytes.set(json, 8);
  const dataOffset = 8 + headerLength;
  const infos = located.map(({ begin, ...rest }) => ({ ...rest, byteOffset: dataOffset + begin }));
  return ok({
    headerBytes,
    header: { headerLength, dataOffset, dataLength: at, tensors: infos, metadata: { ...metadata } },
    fileSize: dataOffset + at,
  });
}
