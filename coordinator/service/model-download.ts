/**
 * Serving a model file's bytes on a `Download` stream, as the coordinator serves a whole global
 * model and an aggregator shard the part of it the leader admitted (protocol version 12): chunks of
 * at most the largest chunk, each with its CRC32C, from the asked offset to the asked end (the
 * file's end for 0), with the stream's backpressure; a reader that takes nothing for the idle
 * timeout is stalled and the download ends.
 */
import type * as grpc from '@grpc/grpc-js';
import { open } from 'node:fs/promises';
import type { DownloadRequest__Output, ModelChunk } from '../../proto/index.js';
import { isSha256 } from '../../common/files.js';
import { CoordinatorError } from '../core/errors.js';
import type { StateStore } from '../state/store.js';
import { writeWithBackpressure } from './streams.js';
import { crc32c } from './wire.js';

export type DownloadCall = grpc.ServerWritableStream<DownloadRequest__Output, ModelChunk>;

/** Refuses a download of what is not a model of `store`: `BAD_REQUEST` for a malformed hash, `MODEL_NOT_FOUND`. */
export async function requireModel(store: Pick<StateStore, 'hasModel'>, sha256: string): Promise<void> {
  if (!isSha256(sha256)) throw new CoordinatorError('BAD_REQUEST', `not a SHA-256: ${JSON.stringify(sha256)}`);
  if (!(await store.hasModel(sha256))) throw new CoordinatorError('MODEL_NOT_FOUND', `no model ${sha256}`);
}

export interface ModelRangeOptions {
  /** The model file. */
  readonly path: string;
  readonly maxChunkBytes: number;
  readonly idleMs: number;
  /** The bytes a caller may ask for at all (a shard's admitted part); absent: the whole file. */
  readonly within?: { readonly start: number; readonly end: number };
  /** Called after each chunk is handed to the stream. */
  readonly onBytes: (n: number) => void;
  /** Ends the sending with its reason (a shard's site revoked). */
  readonly signal?: AbortSignal;
}

/**
 * Sends bytes [offset, end) of the file the request asks for. `CHUNK_OUT_OF_RANGE` for a range
 * outside the file (or outside `within`). Resolves with the bytes sent and whether the range's
 * last byte was among them; the caller ends the call.
 */
export async function sendModelRange(call: DownloadCall, o: ModelRangeOptions): Promise<{ readonly bytes: number; readonly complete: boolean }> {
  const file = await open(o.path, 'r');
  try {
    const { size } = await file.stat();
    const within = o.within ?? { start: 0, end: size };
    let offset = Number(call.request.offset);
    const asked = Number(call.request.end);
    const end = asked === 0 ? within.end : asked;
    const fits = [offset, end].every((x) => Number.isSafeInteger(x)) && within.start <= offset && offset <= end && end <= within.end && within.end <= size;
    if (!fits) {
      const what = o.within ? `the admitted part [${within.start}, ${within.end})` : `the model of ${size} bytes`;
      throw new CoordinatorError('CHUNK_OUT_OF_RANGE', `bytes [${call.request.offset}, ${call.request.end || 'end'}) are outside ${what}`);
    }
    let bytes = 0;
    while (offset < end && !call.cancelled) {
      o.signal?.throwIfAborted();
      const n = Math.min(o.maxChunkBytes, end - offset);
      const buf = Buffer.allocUnsafe(n);
      const { bytesRead } = await file.read(buf, 0, n, offset);
      if (bytesRead === 0) throw new CoordinatorError('STATE_CORRUPT', `the model file ended at byte ${offset}, before ${end}`);
      const data = buf.subarray(0, bytesRead);
      // A reader that takes nothing for the idle timeout is stalled; a drop ends the wait too.
      const wait = AbortSignal.timeout(o.idleMs);
      await writeWithBackpressure(call, { offset, data, totalBytes: size, crc32c: crc32c(data) }, o.signal ? AbortSignal.any([o.signal, wait]) : wait);
      offset += bytesRead;
      bytes += bytesRead;
      o.onBytes(bytesRead);
    }
    return { bytes, complete: offset === end };
  } finally {
    await file.close();
  }
}
