/**
 * Byte sources and sinks: how callers hand files, sockets or buffers to the aggregation library,
 * which itself never opens a file or a socket.
 */
import { AggregationError } from '../errors.js';

/**
 * Random-access bytes of known size (a file, an object in a store, a buffer).
 * `read` must resolve to exactly `length` bytes; the result may be a view the caller must not keep
 * beyond its next use if the source reuses buffers.
 */
export interface ByteSource {
  readonly size: number;
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Optional: fills all of `target` from `offset` and resolves to it (a reader that reuses its buffers). */
  readInto?(offset: number, target: Uint8Array): Promise<Uint8Array>;
}

/**
 * Sequential byte consumer. `write` resolves once the sink no longer needs `bytes` (it has copied
 * or flushed them), so the caller may reuse the buffer; resolving late is how a sink applies
 * back-pressure.
 */
export interface ByteSink {
  write(bytes: Uint8Array): Promise<void>;
}

/** A {@link ByteSource} over bytes in memory; reads return views of `bytes` (no copy). */
export function memorySource(bytes: Uint8Array): ByteSource {
  return {
    size: bytes.length,
    read(offset: number, length: number): Promise<Uint8Array> {
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
        return Promise.reject(
          new AggregationError('OUT_OF_RANGE', `invalid read (${offset}, ${length})`, { offset, length }),
        );
      }
      if (offset + length > bytes.length) {
        return Promise.reject(
          new AggregationError('SAFETENSORS_TRUNCATED', `read past end: ${offset}+${length} > ${bytes.length}`, {
            offset,
            length,
            size: bytes.length,
          }),
        );
      }
      return Promise.resolve(bytes.subarray(offset, offset + length));
    },
  };
}

/** A {@link ByteSink} collecting copies of everything written, for tests and small models. */
export interface MemorySink extends ByteSink {
  /** Bytes written so far. */
  readonly size: number;
  /** Everything written so far, concatenated into one fresh buffer. */
  bytes(): Uint8Array;
}

/** Creates a {@link MemorySink}. */
export function memorySink(): MemorySink {
  const chunks: Uint8Array[] = [];
  let size = 0;
  return {
    get size() {
      return size;
    },
    write(bytes: Uint8Array): Promise<void> {
      chunks.push(bytes.slice());
      size += bytes.length;
      return Promise.resolve();
    },
    bytes(): Uint8Array {
      const out = new Uint8Array(size);
      let at = 0;
      for (const chunk of chunks) {
        out.set(chunk, at);
        at += chunk.length;
      }
      return out;
    },
  };
}

/**
 * Reads exactly `length` bytes from `source`, turning a short or oversized answer into a typed
 * `SAFETENSORS_TRUNCATED` error instead of silently misreading.
 */
export async function readExactly(source: ByteSource, offset: number, length: number): Promise<Uint8Array> {
  if (offset + length > source.size) {
    throw new AggregationError('SAFETENSORS_TRUNCATED', `read past end: ${offset}+${length} > ${source.size}`, {
      offset,
      length,
      size: source.size,
    });
  }
  const bytes = await source.read(offset, length);
  if (bytes.length !== length) {
    throw new AggregationError('SAFETENSORS_TRUNCATED', `source returned ${bytes.length} bytes, wanted ${length}`, {
      offset,
      length,
      got: bytes.length,
    });
  }
  return bytes;
}
