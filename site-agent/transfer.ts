/**
 * Moving models and deltas: downloads into a content-addressed cache (skipped when the model is
 * already held, resumed from a partial file, verified by SHA-256) and chunked uploads with
 * backpressure and a trailer hash.
 */
import type * as grpc from '@grpc/grpc-js';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { sleep } from '../common/backoff.js';
import { fsyncDir, sha256File } from '../common/files.js';
import type { ModelChunk__Output, SiteServiceClient, UploadMessage, UploadResult__Output } from '../proto/index.js';
import { SiteAgentError } from './errors.js';

/** Bytes moved, for progress reports. */
export type TransferProgress = (done: number, total: number) => void;

/** Local path of a cached model. */
export function cachedModelPath(cacheDir: string, sha256: string): string {
  return join(cacheDir, `${sha256}.safetensors`);
}

/**
 * Ensures model `sha256` is in `cacheDir`, downloading what is missing. Returns its path and the
 * bytes actually transferred (0 when it was already held).
 */
export async function downloadModel(
  client: SiteServiceClient,
  sha256: string,
  sizeBytes: number,
  cacheDir: string,
  signal: AbortSignal,
  onProgress: TransferProgress,
): Promise<{ path: string; bytes: number }> {
  await mkdir(cacheDir, { recursive: true });
  const path = cachedModelPath(cacheDir, sha256);
  if (await exists(path)) return { path, bytes: 0 };
  const partial = `${path}.partial`;
  let offset = (await exists(partial)) ? (await stat(partial)).size : 0;
  if (offset > sizeBytes) {
    await rm(partial);
    offset = 0;
  }
  const file = await open(partial, offset > 0 ? 'r+' : 'w', 0o600);
  let received = 0;
  try {
    const call = client.Download({ sha256, offset }, { deadline: Infinity });
    const abort = (): void => call.cancel();
    signal.addEventListener('abort', abort, { once: true });
    try {
      for await (const chunk of call as AsyncIterable<ModelChunk__Output>) {
        const at = Number(chunk.offset);
        if (at !== offset + received) throw new SiteAgentError('MODEL_CHECKSUM', `download chunk at ${at}, expected ${offset + received}`, true);
        await file.write(chunk.data, 0, chunk.data.length, at);
        received += chunk.data.length;
        onProgress(offset + received, sizeBytes);
      }
    } finally {
      signal.removeEventListener('abort', abort);
    }
    await file.sync();
  } finally {
    await file.close();
  }
  signal.throwIfAborted();
  const actual = await sha256File(partial, signal);
  if (actual !== sha256) {
    await rm(partial, { force: true });
    throw new SiteAgentError('MODEL_CHECKSUM', `downloaded model hashes to ${actual}, expected ${sha256}`, true);
  }
  await rename(partial, path);
  await fsyncDir(cacheDir);
  return { path, bytes: received };
}

/** What an upload declares before its bytes. */
export interface UploadHeaderFields {
  readonly runId: string;
  readonly round: number;
  readonly attempt: number;
  readonly baseModelSha256: string;
  readonly encoding: string;
  readonly tensors: readonly { name: string; dtype: string; shape: readonly number[] }[];
  readonly totalBytes: number;
  readonly samples: number;
  readonly tokens: number;
  readonly steps: number;
  readonly trainLoss: number;
  readonly dataManifestSha256: string;
}

/**
 * Streams one delta: header, chunks (waiting for 'drain' when the HTTP/2 window is full), trailer
 * with the SHA-256 of all bytes. Resolves with the coordinator's verdict.
 */
export async function uploadDelta(
  client: SiteServiceClient,
  header: UploadHeaderFields,
  chunks: AsyncIterable<Buffer>,
  signal: AbortSignal,
  onProgress: TransferProgress,
  rateBytesPerS = 0,
): Promise<UploadResult__Output> {
  let call!: grpc.ClientWritableStream<UploadMessage>;
  const result = new Promise<UploadResult__Output>((resolve, reject) => {
    call = client.Upload({ deadline: Infinity }, (err, res) => (err || !res ? reject(err ?? new Error('empty upload result')) : resolve(res)));
  });
  // Settle `result` early on a failed call, so a write loop blocked on 'drain' does not hang.
  const failed = result.then(
    () => new Promise<never>(() => undefined),
    (err: unknown) => Promise.reject(err),
  );
  failed.catch(() => undefined); // observed by the races below; never an unhandled rejection
  const abort = (): void => call.cancel();
  signal.addEventListener('abort', abort, { once: true });
  try {
    const send = async (msg: UploadMessage): Promise<void> => {
      if (!call.write(msg)) await Promise.race([once(call, 'drain'), failed]);
    };
    await send({
      header: {
        ...header,
        tensors: header.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: [...t.shape] })),
        encoding: { name: header.encoding },
      },
    });
    const hash = createHash('sha256');
    let offset = 0;
    const started = Date.now();
    for await (const data of chunks) {
      hash.update(data);
      await send({ chunk: { offset, data } });
      offset += data.length;
      onProgress(offset, header.totalBytes);
      if (rateBytesPerS > 0) {
        // Pace to the limit: never ahead of rate × elapsed.
        const ahead = (offset / rateBytesPerS) * 1000 - (Date.now() - started);
        if (ahead > 0) await Promise.race([sleep(ahead, signal), failed]);
      }
    }
    await send({ trailer: { sha256: hash.digest('hex') } });
    call.end();
    return await result;
  } catch (err) {
    call.cancel();
    await result.catch(() => undefined);
    throw err;
  } finally {
    signal.removeEventListener('abort', abort);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
