/**
 * Streaming safetensors writer: the header is computed from the declared tensors and written
 * first, then each tensor's data is streamed in pieces, strictly in declared order.
 */
import { AggregationError } from '../errors.js';
import { unwrap } from '../result.js';
import type { ByteSink } from './byte-io.js';
import { encodeFromF32, isFloatDtype } from './dtype.js';
import { type SafetensorsHeader, type SafetensorsTensorSpec, planSafetensors } from './header.js';

/** Writes one safetensors file to a {@link ByteSink}. Calls must be awaited one at a time. */
export interface SafetensorsWriter {
  /** The header that was written (offsets of every tensor). */
  readonly header: SafetensorsHeader;
  /** Total size of the file once finished. */
  readonly fileSize: number;
  /**
   * Appends the next piece of tensor `name`'s little-endian data. `name` must be the first tensor
   * not yet complete (`WRITER_ORDER`); pieces may not exceed its length (`WRITER_OVERFLOW`).
   */
  writeTensorBytes(name: string, bytes: Uint8Array): Promise<void>;
  /** Like {@link writeTensorBytes}, converting f32 values to the tensor's F32/BF16/F16 dtype. */
  writeF32(name: string, values: Float32Array): Promise<void>;
  /** Checks every tensor was written in full (`WRITER_INCOMPLETE` otherwise) and closes the writer. */
  finish(): Promise<{ bytesWritten: number }>;
}

/**
 * Plans the file, writes the header to `sink` and returns a writer for the data. `metadata`
 * defaults to `{ format: 'pt' }`. Throws `INVALID_ARGUMENT` for repeated names, unknown dtypes or
 * bad shapes.
 */
export async function createSafetensorsWriter(
  sink: ByteSink,
  tensors: readonly SafetensorsTensorSpec[],
  metadata?: Readonly<Record<string, string>>,
): Promise<SafetensorsWriter> {
  const plan = unwrap(planSafetensors(tensors, metadata), AggregationError, 'invalid safetensors declaration');
  const infos = plan.header.tensors;
  let index = 0; // first tensor not yet complete
  let written = 0; // bytes of tensor `index` written so far
  let bytesWritten = 0;
  let busy = false;
  let closed = false;

  const skipComplete = (): void => {
    while (index < infos.length && written === infos[index]!.byteLength) {
      index += 1;
      written = 0;
    }
  };

  const send = async (bytes: Uint8Array): Promise<void> => {
    busy = true;
    try {
      await sink.write(bytes);
      bytesWritten += bytes.length;
    } catch (error) {
      closed = true; // the sink's state is unknown: refuse further writes
      throw error;
    } finally {
      busy = false;
    }
  };

  const guard = (): void => {
    if (closed) throw new AggregationError('WRITER_CLOSED', 'writer is closed');
    if (busy) throw new AggregationError('WRITER_ORDER', 'previous write still pending');
  };

  await send(plan.headerBytes);
  skipComplete();

  const writeTensorBytes = async (name: string, bytes: Uint8Array): Promise<void> => {
    guard();
    const current = infos[index];
    if (current === undefined || current.name !== name) {
      throw new AggregationError('WRITER_ORDER', `got data for ${JSON.stringify(name)}, expected ${current === undefined ? 'none' : JSON.stringify(current.name)}`, {
        tensor: name,
        expected: current?.name,
      });
    }
    if (written + bytes.length > current.byteLength) {
      throw new AggregationError('WRITER_OVERFLOW', `tensor ${JSON.stringify(name)} would get ${written + bytes.length} of ${current.byteLength} bytes`, {
        tensor: name,
        written,
        piece: bytes.length,
        byteLength: current.byteLength,
      });
    }
    await send(bytes);
    written += bytes.length;
    skipComplete();
  };

  const writeF32 = async (name: string, values: Float32Array): Promise<void> => {
    const info = infos[index];
    const dtype = info !== undefined && info.name === name ? info.dtype : undefined;
    if (dtype !== undefined && !isFloatDtype(dtype)) {
      throw new AggregationError('SAFETENSORS_DTYPE_UNSUPPORTED', `tensor ${JSON.stringify(name)} is ${dtype}, not a float dtype`, { tensor: name, dtype });
    }
    // An undefined dtype means a wrong name: let writeTensorBytes report the order error.
    return writeTensorBytes(name, dtype === undefined ? new Uint8Array(0) : encodeFromF32(values, dtype));
  };

  const finish = async (): Promise<{ bytesWritten: number }> => {
    guard();
    if (index < infos.length) {
      const missing = infos.slice(index).map((t) => t.name);
      throw new AggregationError('WRITER_INCOMPLETE', `tensors not fully written: ${missing.join(', ')}`, { missing });
    }
    closed = true;
    return { bytesWritten };
  };

  return { header: plan.header, fileSize: plan.fileSize, writeTensorBytes, writeF32, finish };
}
