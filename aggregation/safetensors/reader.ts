/**
 * Streaming safetensors reader: reads the header once, then only the byte ranges asked for.
 */
import { AggregationError } from '../errors.js';
import { unwrap } from '../result.js';
import { type ByteSource, readExactly } from './byte-io.js';
import { DTYPE_SIZES, decodeToF32, isFloatDtype } from './dtype.js';
import { bytesOf } from '../native.js';
import { type SafetensorsTensorInfo, parseHeaderJson, parseHeaderLength } from './header.js';

/** An opened safetensors file. Holds only the header in memory. */
export interface SafetensorsFile {
  /** Tensors in data order. */
  readonly tensors: readonly SafetensorsTensorInfo[];
  /** `__metadata__` (empty object when absent). */
  readonly metadata: Readonly<Record<string, string>>;
  /** Absolute offset of the data buffer. */
  readonly dataOffset: number;
  /** The tensor called `name`; throws `TENSOR_UNKNOWN` if there is none. */
  tensor(name: string): SafetensorsTensorInfo;
  /** Raw little-endian bytes `[byteOffset, byteOffset + byteLength)` of a tensor's data (offsets relative to the tensor). */
  readBytes(name: string, byteOffset: number, byteLength: number): Promise<Uint8Array>;
  /** {@link readBytes} into `target` (all of it): a source that can fill a caller's buffer does, no new one. */
  readBytesInto(name: string, byteOffset: number, target: Uint8Array): Promise<Uint8Array>;
  /**
   * Elements `[elemOffset, elemOffset + elemCount)` of an F32, BF16 or F16 tensor as f32: into
   * `into` when given (`elemCount` long), else a fresh Float32Array; other dtypes throw
   * `SAFETENSORS_DTYPE_UNSUPPORTED`. A caller stepping a model slice by slice keeps one array.
   */
  readF32(name: string, elemOffset: number, elemCount: number, into?: Float32Array): Promise<Float32Array>;
}

function checkRange(name: string, offset: number, count: number, limit: number, unit: string): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(count) || offset < 0 || count < 0 || offset + count > limit) {
    throw new AggregationError('OUT_OF_RANGE', `${unit} range [${offset}, +${count}) outside tensor ${JSON.stringify(name)} of ${limit} ${unit}`, {
      tensor: name,
      offset,
      count,
      limit,
    });
  }
}

/**
 * Opens a safetensors file by reading and validating its header only (two reads: the 8-byte
 * prefix, then the JSON). Throws an {@link AggregationError} with the validation code
 * (`SAFETENSORS_HEADER_INVALID`, `SAFETENSORS_OFFSETS_INVALID`, `SAFETENSORS_DTYPE_UNSUPPORTED`,
 * `SAFETENSORS_TRUNCATED`) and `context.issues` when the file is malformed.
 */
export async function openSafetensors(source: ByteSource): Promise<SafetensorsFile> {
  const prefix = await readExactly(source, 0, Math.min(8, source.size));
  const length = unwrap(parseHeaderLength(prefix, source.size), AggregationError, 'invalid safetensors header');
  const json = await readExactly(source, 8, length);
  const header = unwrap(parseHeaderJson(json, source.size), AggregationError, 'invalid safetensors header');
  const byName = new Map(header.tensors.map((t) => [t.name, t]));

  const tensor = (name: string): SafetensorsTensorInfo => {
    const info = byName.get(name);
    if (info === undefined) throw new AggregationError('TENSOR_UNKNOWN', `no tensor ${JSON.stringify(name)} in file`, { tensor: name });
    return info;
  };

  const readBytes = async (name: string, byteOffset: number, byteLength: number): Promise<Uint8Array> => {
    const info = tensor(name);
    checkRange(name, byteOffset, byteLength, info.byteLength, 'bytes');
    return readExactly(source, info.byteOffset + byteOffset, byteLength);
  };

  const readBytesInto = async (name: string, byteOffset: number, target: Uint8Array): Promise<Uint8Array> => {
    const info = tensor(name);
    checkRange(name, byteOffset, target.length, info.byteLength, 'bytes');
    if (source.readInto) return source.readInto(info.byteOffset + byteOffset, target);
    target.set(await readExactly(source, info.byteOffset + byteOffset, target.length));
    return target;
  };

  const readF32 = async (name: string, elemOffset: number, elemCount: number, into?: Float32Array): Promise<Float32Array> => {
    const info = tensor(name);
    if (!isFloatDtype(info.dtype)) {
      throw new AggregationError('SAFETENSORS_DTYPE_UNSUPPORTED', `tensor ${JSON.stringify(name)} is ${info.dtype}, not a float dtype`, {
        tensor: name,
        dtype: info.dtype,
      });
    }
    checkRange(name, elemOffset, elemCount, info.elements, 'elements');
    if (into !== undefined && into.length !== elemCount) {
      throw new AggregationError('TENSOR_MISMATCH', `readF32 of ${elemCount} elements into an array of ${into.length}`, { tensor: name, elemCount, into: into.length });
    }
    const size = DTYPE_SIZES[info.dtype];
    const at = info.byteOffset + elemOffset * size;
    if (into === undefined) return decodeToF32(await readExactly(source, at, elemCount * size), info.dtype);
    // F32 goes straight into the caller's array where the source can fill a buffer.
    if (info.dtype === 'F32' && source.readInto) {
      const target = bytesOf(into);
      const got = await source.readInto(at, target);
      if (got.length !== target.length) {
        throw new AggregationError('SAFETENSORS_TRUNCATED', `read of ${target.length} bytes at ${at} returned ${got.length}`, { tensor: name, offset: at, length: target.length });
      }
      // A source may hand back bytes of its own rather than fill the target.
      if (got !== target) target.set(got);
      return into;
    }
    return decodeToF32(await readExactly(source, at, elemCount * size), info.dtype, into);
  };

  return { tensors: header.tensors, metadata: header.metadata, dataOffset: header.dataOffset, tensor, readBytes, readBytesInto, readF32 };
}
