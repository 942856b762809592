/**
 * Receiving one site's delta: header checks against the open round and the global model, chunks
 * spooled to disk in order with bounds and finiteness checks, and the trailer's SHA-256 verified.
 * A delta joins the sum only once it is complete and verified (DESIGN.md, "Decisions").
 */
import { createHash } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { aligned, checkFinite } from '../../aggregation/index.js';
import type { UploadHeader__Output, UploadMessage__Output } from '../../proto/index.js';
import { CoordinatorError } from '../errors.js';

/** One tensor of the global model as uploads must declare it. */
export interface LayoutTensor {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly elements: number;
}

/** What an upload is checked against: the round that is open now. */
export interface UploadExpectation {
  readonly runId: string;
  readonly round: number;
  readonly attempt: number;
  readonly globalSha256: string;
  readonly tensors: readonly LayoutTensor[];
  /** `f32` for plain rounds; masked fixed point (`secagg32`, `secagg16`) for secure ones. */
  readonly encoding: 'f32' | 'secagg32' | 'secagg16';
  readonly maxChunkBytes: number;
  readonly weighting: 'samples' | 'tokens' | 'uniform';
}

/** A validated upload header in domain terms. */
export interface UploadIntent {
  readonly round: number;
  readonly attempt: number;
  readonly totalBytes: number;
  readonly weight: number;
  readonly samples: number;
  readonly tokens: number;
  readonly steps: number;
  readonly trainLoss: number;
  readonly dataManifestSha256: string;
}

const U64 = /^\d{1,16}$/;
function u64(value: string, field: string): number {
  if (!U64.test(value) || !Number.isSafeInteger(Number(value))) {
    throw new CoordinatorError('UPLOAD_INVALID', `${field} is not a valid integer: ${JSON.stringify(value)}`);
  }
  return Number(value);
}

/** Bytes per value of an upload encoding. */
export function wordBytes(encoding: UploadExpectation['encoding']): number {
  return encoding === 'secagg16' ? 2 : 4;
}

/** Checks a header against the open round and the global model's tensors. */
export function validateHeader(h: UploadHeader__Output, exp: UploadExpectation): UploadIntent {
  const round = u64(h.round, 'round');
  if (h.runId !== exp.runId || round !== exp.round || h.attempt !== exp.attempt) {
    throw new CoordinatorError(
      'ROUND_CLOSED',
      `upload for run ${h.runId} round ${round}.${h.attempt}, but the open round is ${exp.runId} ${exp.round}.${exp.attempt}`,
      { round, attempt: h.attempt },
    );
  }
  if (h.baseModelSha256 !== exp.globalSha256) {
    throw new CoordinatorError('TENSOR_MISMATCH', `delta computed against model ${h.baseModelSha256}, the round's global model is ${exp.globalSha256}`);
  }
  if (h.encoding?.name !== exp.encoding) {
    throw new CoordinatorError('UPLOAD_INVALID', `encoding ${JSON.stringify(h.encoding?.name)} was not negotiated for this run (expected ${exp.encoding})`);
  }
  if (h.tensors.length !== exp.tensors.length) {
    throw new CoordinatorError('TENSOR_MISMATCH', `delta declares ${h.tensors.length} tensors, the global model has ${exp.tensors.length}`);
  }
  let expectedBytes = 0;
  exp.tensors.forEach((t, i) => {
    const got = h.tensors[i]!;
    const shape = got.shape.map((d) => u64(d, `tensors[${i}].shape`));
    if (got.name !== t.name) {
      throw new CoordinatorError('TENSOR_MISMATCH', `tensor ${i} is ${JSON.stringify(got.name)}, expected ${JSON.stringify(t.name)}`, { index: i });
    }
    if (got.dtype !== t.dtype) {
      throw new CoordinatorError('TENSOR_MISMATCH', `tensor ${t.name} has dtype ${got.dtype}, the global model's is ${t.dtype}`, { tensor: t.name });
    }
    if (shape.length !== t.shape.length || shape.some((d, j) => d !== t.shape[j])) {
      throw new CoordinatorError('TENSOR_MISMATCH', `tensor ${t.name} has shape [${shape.join(', ')}], expected [${t.shape.join(', ')}]`, { tensor: t.name });
    }
    expectedBytes += t.elements * wordBytes(exp.encoding);
  });
  // A masked upload carries one more word: the masked weight.
  if (exp.encoding !== 'f32') expectedBytes += wordBytes(exp.encoding);
  const totalBytes = u64(h.totalBytes, 'totalBytes');
  if (totalBytes !== expectedBytes) {
    throw new CoordinatorError('UPLOAD_INVALID', `totalBytes is ${totalBytes}, the declared tensors need ${expectedBytes}`);
  }
  const samples = u64(h.samples, 'samples');
  const tokens = u64(h.tokens, 'tokens');
  const weight = exp.weighting === 'uniform' ? 1 : exp.weighting === 'samples' ? samples : tokens;
  if (!(weight > 0)) throw new CoordinatorError('UPLOAD_INVALID', `weighting by ${exp.weighting} needs a positive count, got ${weight}`);
  if (!/^([0-9a-f]{64})?$/.test(h.dataManifestSha256)) throw new CoordinatorError('UPLOAD_INVALID', 'dataManifestSha256 is not a SHA-256');
  return {
    round,
    attempt: h.attempt,
    totalBytes,
    weight,
    samples,
    tokens,
    steps: u64(h.steps, 'steps'),
    trainLoss: Number.isFinite(h.trainLoss) ? h.trainLoss : Number.NaN,
    dataManifestSha256: h.dataManifestSha256,
  };
}

/** Result of a complete, verified upload. */
export interface SpooledUpload {
  readonly path: string;
  readonly bytes: number;
  readonly sha256: string;
}

/**
 * Spools the chunks that follow a header to `<dir>/<site>.delta`, enforcing order, size and
 * finiteness, and verifies the trailer. Reading the next message only after the previous one is
 * on disk is the backpressure: grpc-js stops granting HTTP/2 window while we do not read.
 */
export async function spoolChunks(
  messages: AsyncIterator<UploadMessage__Output>,
  site: string,
  dir: string,
  intent: UploadIntent,
  exp: UploadExpectation,
  onBytes: (n: number) => void,
): Promise<SpooledUpload> {
  const path = join(dir, `${site}.delta`);
  const file = await open(path, 'w', 0o600);
  const hash = createHash('sha256');
  let received = 0;
  let done = false;
  try {
    for (;;) {
      const next = await messages.next();
      if (next.done) throw new CoordinatorError('UPLOAD_INTERRUPTED', `upload ended after ${received} of ${intent.totalBytes} bytes without a trailer`);
      const msg = next.value;
      if (msg.kind === 'chunk' && msg.chunk) {
        const offset = u64(msg.chunk.offset, 'chunk.offset');
        const data = msg.chunk.data;
        if (offset !== received) {
          throw new CoordinatorError('CHUNK_OUT_OF_RANGE', `chunk at offset ${offset}, expected ${received}`, { offset, expected: received });
        }
        if (data.length === 0 || data.length > exp.maxChunkBytes) {
          throw new CoordinatorError('CHUNK_OUT_OF_RANGE', `chunk of ${data.length} bytes (allowed 1..${exp.maxChunkBytes})`, { bytes: data.length });
        }
        if (offset + data.length > intent.totalBytes) {
          throw new CoordinatorError('CHUNK_OUT_OF_RANGE', `chunk ends at ${offset + data.length}, past the declared ${intent.totalBytes} bytes`, {
            end: offset + data.length,
            total: intent.totalBytes,
          });
        }
        const word = wordBytes(exp.encoding);
        if (data.length % word !== 0) throw new CoordinatorError('UPLOAD_INVALID', `${exp.encoding} chunk of ${data.length} bytes is not a whole number of values`);
        if (exp.encoding === 'f32') {
          const bytes = aligned(data, 4);
          const bad = checkFinite(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4));
          if (bad >= 0) {
            throw new CoordinatorError('NON_FINITE', `delta value at byte ${offset + bad * 4} is NaN or infinite`, { byte: offset + bad * 4 });
          }
        }
        hash.update(data);
        await file.write(data, 0, data.length, offset);
        received += data.length;
        onBytes(data.length);
      } else if (msg.kind === 'trailer' && msg.trailer) {
        if (received !== intent.totalBytes) {
          throw new CoordinatorError('UPLOAD_INVALID', `trailer after ${received} of ${intent.totalBytes} bytes`);
        }
        const sha256 = hash.digest('hex');
        if (msg.trailer.sha256 !== sha256) {
          throw new CoordinatorError('CHECKSUM_MISMATCH', `delta SHA-256 is ${sha256}, the trailer says ${msg.trailer.sha256}`);
        }
        const extra = await messages.next();
        if (!extra.done) throw new CoordinatorError('UPLOAD_INVALID', 'messages after the trailer');
        done = true;
        return { path, bytes: received, sha256 };
      } else {
        throw new CoordinatorError('UPLOAD_INVALID', `unexpected ${msg.kind ?? 'empty'} message after the header`);
      }
    }
  } finally {
    await file.close();
    if (!done) await rm(path, { force: true });
  }
}
