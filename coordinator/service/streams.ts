/** Small helpers for grpc-js streams: backpressure-aware writes and cancellable reads. */
import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import { CoordinatorError } from '../errors.js';

/** Writes one message, waiting for 'drain' when the stream's buffer is full. */
export async function writeWithBackpressure<T>(stream: Writable, message: T, signal?: AbortSignal): Promise<void> {
  if (stream.write(message)) return;
  await once(stream, 'drain', signal ? { signal } : {});
}

/**
 * Iterates the messages of a client stream. The iteration throws when the client cancels, when
 * `signal` aborts (with its reason), or when no message arrives for `idleMs` (no progress).
 */
export function readMessages<T>(
  stream: Readable & { on(event: 'cancelled', fn: () => void): unknown },
  signal: AbortSignal,
  idleMs: number,
): AsyncIterator<T> & { dispose(): void } {
  let timer: NodeJS.Timeout | undefined;
  const fail = (err: Error): void => {
    if (!stream.destroyed) stream.destroy(err);
  };
  const arm = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => fail(new CoordinatorError('UPLOAD_INTERRUPTED', `no data for ${idleMs / 1000} s`)), idleMs);
  };
  const onAbort = (): void => fail(signal.reason instanceof Error ? signal.reason : new CoordinatorError('ROUND_CLOSED', String(signal.reason)));
  signal.addEventListener('abort', onAbort, { once: true });
  stream.on('cancelled', () => fail(new CoordinatorError('UPLOAD_INTERRUPTED', 'the client cancelled the stream')));
  const inner = stream[Symbol.asyncIterator]() as AsyncIterator<T>;
  arm();
  return {
    async next() {
      const r = await inner.next();
      arm();
      return r;
    },
    dispose() {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    },
  };
}
